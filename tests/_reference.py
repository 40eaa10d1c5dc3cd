"""Independent plain numpy/scipy references: explicit loops over paths, no dgmmcore code."""
import itertools

import numpy as np
from scipy.special import logsumexp
from scipy.stats import multivariate_normal


def random_params(layers, D, rng, scale=0.6, bias=1.0, prior="random"):
    """Well-conditioned random nodes: I + noise of spectral norm about 2 * scale."""
    transforms = [np.eye(D) + scale / np.sqrt(D) * rng.standard_normal((n, D, D)) for n in layers]
    biases = [bias * rng.standard_normal((n, D)) for n in layers]
    if prior == "uniform":
        w = np.full(layers, 1.0 / np.prod(layers))
    else:
        w = rng.random(layers) + 0.1
        w /= w.sum()
    return transforms, biases, w


def path_gaussians(transforms, biases, weights):
    """(weights, means, covs) by walking each path explicitly, C order of the paths."""
    layers = [A.shape[0] for A in transforms]
    D = transforms[0].shape[1]
    ws, means, covs = [], [], []
    for path in itertools.product(*[range(n) for n in layers]):
        omega, beta = np.eye(D), np.zeros(D)
        for j, i in enumerate(path):
            omega = transforms[j][i] @ omega
            beta = transforms[j][i] @ beta + biases[j][i]
        ws.append(weights[path])
        means.append(beta)
        covs.append(omega @ omega.T)
    return np.array(ws), np.array(means), np.array(covs)


def component_logpdf(X, transforms, biases, weights):
    """(n, P) log pi_p + log N(x | p) with scipy.stats."""
    ws, means, covs = path_gaussians(transforms, biases, weights)
    with np.errstate(divide="ignore"):
        return np.stack([np.log(w) + np.atleast_1d(multivariate_normal(m, c).logpdf(X))
                         for w, m, c in zip(ws, means, covs)], axis=1).reshape(len(X), -1)


def logpdf(X, transforms, biases, weights):
    return logsumexp(component_logpdf(X, transforms, biases, weights), axis=1)
