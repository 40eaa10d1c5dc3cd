"""The M-step's node objective against brute force over data points and finite differences."""
import numpy as np
import pytest

from dgmmcore import _mstep
from dgmmcore._network import invert_nodes, ravel_paths
from dgmmcore._suffstats import hard_stats
from _reference import random_params


def setup_problem(layers=(3, 2, 2), D=4, n=600, seed=0):
    rng = np.random.default_rng(seed)
    A, b, _ = random_params(layers, D, rng)
    Q, c = invert_nodes(A, b)
    X = rng.standard_normal((n, D)) * 2 + 1
    paths = np.stack([rng.integers(0, N, n) for N in layers], axis=1)
    return Q, c, X, paths


def brute_objective(Q, c, X, paths, j, i, Qi, ci):
    """-(1/N) sum over the node's points of [log|det Q| - 1/2 ||z||^2], z by walking layers."""
    sel = paths[:, j] == i
    total = 0.0
    for x, p in zip(X[sel], paths[sel]):
        h = x
        for l in reversed(range(len(Q))):
            q, cc = (Qi, ci) if l == j else (Q[l][p[l]], c[l][p[l]])
            h = q @ h + cc
        total += np.linalg.slogdet(Qi)[1] - 0.5 * h @ h
    return -total / sel.sum()


def node_objectives(Q, c, X, paths, layers, j, method, frame=False):
    """Build the objective of every node of layer j the way mstep() does (no optimisation).
    With ``frame`` in each node's own frame (inputs from their mean o, outputs from the start's
    mean p = c + Q o) as mstep() fits them: the objective then takes (Q, e) for the node
    v -> Q v + p + e - Q o."""
    D = X.shape[1]
    stats = hard_stats(X, ravel_paths(paths, layers), int(np.prod(layers)),
                       np.zeros((int(np.prod(layers)), D)), 1)
    counts, means, scat = stats.counts, stats.means, stats.scatters
    # push statistics up to layer j with the current upper layers
    for l in reversed(range(j + 1, len(layers))):
        G = int(np.prod(layers[:l]))
        m4 = means.reshape(G, layers[l], -1, D)
        C5 = scat.reshape(G, layers[l], -1, D, D)
        Qb = Q[l][None, :, None]
        means = (np.einsum("nij,gnuj->gnui", Q[l], m4) + c[l][None, :, None]).reshape(-1, D)
        scat = np.matmul(np.matmul(Qb, C5), np.swapaxes(Qb, -1, -2)).reshape(-1, D, D)
    G = int(np.prod(layers[:j]))
    origins = _mstep.node_origins(counts, means, G, layers[j]) if frame else None
    n, s1, s2 = _mstep.group_moments(counts, means, scat, G, layers[j], origins)
    R, r = _mstep.lower_folds(Q[:j], c[:j], D)
    omegas = np.matmul(np.swapaxes(R, 1, 2), R)
    out = []
    for i in range(layers[j]):
        p = c[j][i] + Q[j][i] @ origins[i] if frame else None
        S, L, c0 = _mstep.node_terms(n[:, i], s1[:, i], s2[:, i], R, r, p)
        out.append(_mstep.NodeObjective(omegas, S, L, c0, n[:, i].sum(), method))
    return out, origins


@pytest.mark.parametrize("j", [0, 1, 2])
@pytest.mark.parametrize("method", ["groups", "kronecker"])
@pytest.mark.parametrize("frame", [False, True])
def test_node_objective_matches_brute_force(j, method, frame):
    layers = (3, 2, 2)
    Q, c, X, paths = setup_problem(layers)
    objs, origins = node_objectives(Q, c, X, paths, layers, j, method, frame)
    rng = np.random.default_rng(1)
    for i, obj in enumerate(objs):
        for trial in range(2):
            Qi = Q[j][i] + (0.1 * rng.standard_normal(Q[j][i].shape) if trial else 0)
            ci = c[j][i] + (0.1 * rng.standard_normal(c[j][i].shape) if trial else 0)
            # in the node's frame the bias is e = c - p + Q o, p = c_start + Q_start o
            e = ci - (c[j][i] + Q[j][i] @ origins[i]) + Qi @ origins[i] if frame else ci
            got, _ = obj(np.concatenate([Qi, e[:, None]], axis=1).ravel())
            ref = brute_objective(Q, c, X, paths, j, i, Qi, ci)
            np.testing.assert_allclose(got, ref, rtol=1e-10)


@pytest.mark.parametrize("j", [0, 2])
def test_gradient_matches_finite_differences(j):
    layers = (3, 2, 2)
    Q, c, X, paths = setup_problem(layers, seed=2)
    obj = node_objectives(Q, c, X, paths, layers, j, "groups")[0][1]
    x0 = np.concatenate([Q[j][1], c[j][1][:, None]], axis=1).ravel()
    _, grad = obj(x0)
    eps = 1e-6
    fd = np.array([(obj(x0 + eps * e)[0] - obj(x0 - eps * e)[0]) / (2 * eps)
                   for e in np.eye(len(x0))])
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_kronecker_and_groups_agree():
    layers = (2, 3, 4)
    Q, c, X, paths = setup_problem(layers, D=5, n=2000, seed=3)
    for j in range(3):
        og, _ = node_objectives(Q, c, X, paths, layers, j, "groups", frame=True)
        ok, _ = node_objectives(Q, c, X, paths, layers, j, "kronecker", frame=True)
        rng = np.random.default_rng(j)
        for a, b in zip(og, ok):
            x = rng.standard_normal(5 * 6)
            fa, ga = a(x)
            fb, gb = b(x)
            np.testing.assert_allclose(fa, fb, rtol=1e-11)
            np.testing.assert_allclose(ga, gb, rtol=1e-10, atol=1e-12)


def test_kron_assemble_matches_numpy():
    from dgmmcore import _stats
    rng = np.random.default_rng(0)
    G, A, B = 7, 3, 4
    left = rng.standard_normal((G, A, A))
    right = rng.standard_normal((G, B, B))
    w = rng.random(G)
    ref = sum(wg * np.kron(l, r) for wg, l, r in zip(w, left, right))
    for threads in (1, 2):
        out = np.empty((A * B, A * B))
        _stats.kron_assemble(left, right, w, out, threads)
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


def test_optimize_node_reaches_closed_form_for_one_layer():
    """With one layer and one node the optimum is Q = chol(Sigma)^-1-like: Q^T Q = Sigma^-1
    and c = -Q mu; check the fitted node reproduces the data's Gaussian."""
    rng = np.random.default_rng(4)
    D = 3
    X = rng.standard_normal((5000, D)) @ rng.standard_normal((D, D)) + 2.0
    Q, c = [np.eye(D)[None]], [np.zeros((1, D))]
    stats = hard_stats(X, np.zeros(len(X), dtype=np.intp), 1, np.zeros((1, D)), 1)
    Qn, cn, _ = _mstep.mstep(Q, c, stats, (1,), reg_covar=0.0, method="groups",
                             lbfgs_maxiter=500, rng=rng, n_threads=1)
    cov = np.linalg.inv(Qn[0][0].T @ Qn[0][0])
    mean = -np.linalg.solve(Qn[0][0], cn[0][0])
    np.testing.assert_allclose(cov, np.cov(X.T, bias=True), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(mean, X.mean(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("offset", [1e4, 1e6])
def test_mstep_moves_with_the_data(offset):
    """Data moved by t is fitted by the same nodes with the biases next to x moved by -Q t
    (Q (x + t) + c - Q t = Q x + c): one M-step from the moved start ends there, to rounding.
    In moments about the origin those digits were lost: the nodes moved by 7e-4 at 1e4 and
    2e-3 at 1e6."""
    layers = (3, 2, 2)
    Q, c, X, paths = setup_problem(layers, n=3000, seed=5)
    t = offset * (1 + np.random.default_rng(6).random(X.shape[1]))
    P, k = int(np.prod(layers)), len(layers) - 1
    index = ravel_paths(paths, layers)
    fits = []
    for moved in (0, 1):
        c_start = [cc.copy() for cc in c]
        if moved:
            c_start[k] -= Q[k] @ t
        # statistics about a point near the data, as a fit keeps them (its path means)
        stats = hard_stats(X + moved * t, index, P, np.tile(moved * t, (P, 1)), 1)
        Qn, cn, _ = _mstep.mstep(Q, c_start, stats, layers, reg_covar=0.0, method="groups",
                                 lbfgs_maxiter=200, rng=np.random.default_rng(0), n_threads=1)
        if moved:
            cn[k] = cn[k] + Qn[k] @ t
        fits.append((Qn, cn))
    (Qa, ca), (Qb, cb) = fits
    # the moved rows themselves are rounded at 1e-16 * offset (measured: 5e-9 at 1e4, 2e-7 at
    # 1e6)
    for j in range(len(layers)):
        np.testing.assert_allclose(Qb[j], Qa[j], rtol=0, atol=1e-12 * offset)
        np.testing.assert_allclose(cb[j], ca[j], rtol=0, atol=1e-12 * offset)
