"""Initial parameters for EM, deterministic for a given random generator.

The widest layer (the last of the widest when several tie) starts as a k-means partition of
the data: node i maps N(0, I) to the Gaussian of cluster i (mean and Cholesky factor of its
covariance). Every other layer starts near the identity, A = I + s G / sqrt(D), b = s g (G, g
standard normal, s = ``spread``), so its nodes are distinct small deformations that EM pulls
apart, and the network starts as a k-means "GMM" with near-identity maps before and after it:
the start that ``DeepGMM.deepen`` gives a trained GMM. Putting the clusters in the widest layer
matters: a (100, 5, 5) network with its 5 last nodes as clusters and its 100 first nodes near
the identity ended ~1 nat below the same network grown from a GMM on BSDS300 (README).
"""
import numpy as np

from ._network import invert_nodes


def kmeans(X, k, rng, n_iter=25):
    """Lloyd's algorithm with k-means++ seeding; returns labels of X."""
    # centred, so |x|^2 - 2 x.c + |c|^2 below keeps its digits far from the origin
    X = X - X.mean(axis=0)
    n = X.shape[0]
    centers = [X[rng.integers(n)]]
    d2 = ((X - centers[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        idx = rng.integers(n) if total <= 0 else rng.choice(n, p=d2 / total)
        centers.append(X[idx])
        d2 = np.minimum(d2, ((X - X[idx]) ** 2).sum(1))
    C = np.array(centers)
    x2 = (X ** 2).sum(1)
    labels = np.zeros(n, dtype=np.intp)
    for it in range(n_iter):
        dist = x2[:, None] - 2 * X @ C.T + (C ** 2).sum(1)[None]
        new = dist.argmin(axis=1)
        if it and np.array_equal(new, labels):
            break
        labels = new
        for i in range(k):
            sel = labels == i
            if sel.any():
                C[i] = X[sel].mean(0)
    return labels


# Rows the initialization looks at: a random subset of this size when the data are larger.
MAX_INIT_ROWS = 50_000


def cluster_layer(layers):
    """The layer that starts as the k-means clusters: the widest, the last of them on a tie."""
    return len(layers) - 1 - int(np.argmax(list(layers)[::-1]))


def initialize(sub, layers, rng, reg_covar, at=None, spread=0.1):
    """Forward parameters (A, b), a uniform joint prior and the inverse maps for a fresh fit,
    from the rows ``sub`` (at most MAX_INIT_ROWS of the data). ``at``: the layer that starts
    as the k-means clusters (an index into ``layers``, negative from the end); None: the
    widest."""
    D = sub.shape[1]
    global_cov = np.cov(sub.T).reshape(D, D)
    # a floor relative to the data's scale keeps the Cholesky factors defined for few or
    # degenerate rows whatever their magnitude
    floor = reg_covar + 1e-6 * max(np.trace(global_cov) / D, np.finfo(float).tiny)
    global_cov = global_cov + floor * np.eye(D)
    at = cluster_layer(layers) if at is None else range(len(layers))[at]
    mean = sub.mean(axis=0)
    labels = kmeans(sub, layers[at], rng)
    A_k = np.empty((layers[at], D, D))
    b_k = np.empty((layers[at], D))
    for i in range(layers[at]):
        pts = sub[labels == i]
        if len(pts) > D:
            cov = np.cov(pts.T).reshape(D, D) + floor * np.eye(D)
        else:
            cov = global_cov
        A_k[i] = np.linalg.cholesky(cov)
        b_k[i] = pts.mean(0) if len(pts) else mean
    A, b = [], []
    for j, N in enumerate(layers):
        if j == at:
            A.append(A_k)
            b.append(b_k)
        else:
            Aj = np.eye(D) + spread / np.sqrt(D) * rng.standard_normal((N, D, D))
            A.append(Aj)
            # before the clusters a layer acts on z-space points, where an offset of order
            # spread is small; after them on data points: fix the data's mean, at any scale
            b.append(spread * rng.standard_normal((N, D)) if j < at else mean - Aj @ mean)
    weights = np.full(tuple(layers), 1.0 / np.prod(layers))
    Q, c = invert_nodes(A, b)
    return A, b, weights, Q, c
