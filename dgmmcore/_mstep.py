"""M-step: refit every node's inverse map (Q, c) with L-BFGS-B, layer by layer.

For a node at layer j, let v = h_j be a point pushed from x up to the node's output and
u = Q v + c its input; the layers below (1..j-1) fold into z = R_g u + r_g for each lower prefix
g = (p_1, ..., p_{j-1}). Writing Q' = [Q c] and v' = [v; 1], the node's hard-EM objective
(DESIGN.md section 5; minimised here, divided by the node's count N) is

    f(Q') = -log|det Q| + 1/(2N) sum_g [ tr(Omega_g Q' S'_g Q'^T) + 2 r_g^T R_g Q' s'_g
                                          + n_g r_g^T r_g ]

with Omega_g = R_g^T R_g, s'_g = sum v', S'_g = sum v' v'^T over the node's points below g.
Everything is computed from per-path statistics in parameter space; no pass over the data.

Each node is fitted in its own frame (inputs from their mean, outputs from the start's mean
output: ``node_origins``, ``node_terms``), so the objective is the same wherever the data sit.

The quadratic term is evaluated per group (paper eq. 11/12) or through the Kronecker sum
K = sum_g Omega_g (x) S'_g (eq. 13/14, assembled by the compiled ``kron_assemble``).
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.optimize import minimize

from . import _stats
from ._threads import single_threaded_blas

# Cost model for mstep='auto': rates measured by bench/bench_mstep.py on the development machine
# (AMD EPYC, 1 thread per node): per-group GEMMs ~16 GFLOP/s, the Kronecker mat-vec ~16 GB/s,
# the assembly GEMM ~25 GFLOP/s.
_GROUP_FLOP_S = 16e9
_KRON_BYTES_S = 16e9
_KRON_BUILD_FLOP_S = 25e9
_EXPECTED_EVALS = 30      # typical L-BFGS-B evaluations per node once EM is warm


class NodeObjective:
    """Value and gradient of f(Q') for one node; ``method`` is 'groups' or 'kronecker'."""

    def __init__(self, omegas, S, L, c0, count, method="groups", n_threads=1):
        self.D = omegas.shape[1]
        self.omegas = np.ascontiguousarray(omegas)
        self.S = np.ascontiguousarray(S)
        self.L = L
        self.c0 = c0
        self.count = count
        self.method = method
        if method == "kronecker":
            E = self.D * (self.D + 1)
            self.K = np.empty((E, E))
            with single_threaded_blas():
                _stats.kron_assemble(self.omegas, self.S, np.ones(len(omegas)), self.K, n_threads)
        elif method != "groups":
            raise ValueError(f"unknown M-step method {method!r}")

    def quadratic(self, Qp):
        """sum_g Omega_g Q' S'_g, a (D, D+1) array."""
        if self.method == "kronecker":
            return (self.K @ Qp.ravel()).reshape(Qp.shape)
        return np.matmul(np.matmul(self.omegas, Qp), self.S).sum(axis=0)

    def __call__(self, flat):
        D = self.D
        Qp = flat.reshape(D, D + 1)
        sign, logdet = np.linalg.slogdet(Qp[:, :D])
        if sign == 0 or not np.isfinite(logdet):
            # outside the barrier: L-BFGS-B backtracks from an infinite value
            return np.inf, np.zeros_like(flat)
        G = self.quadratic(Qp)
        value = -logdet + (0.5 * np.vdot(Qp, G) + np.vdot(self.L, Qp) + 0.5 * self.c0) / self.count
        grad = (G + self.L) / self.count
        grad[:, :D] -= np.linalg.inv(Qp[:, :D]).T
        return value, grad.ravel()


def choose_method(n_groups, D, lbfgs_maxiter):
    """'groups' or 'kronecker', whichever the cost model expects to be faster for this node."""
    evals = min(lbfgs_maxiter, _EXPECTED_EVALS) + 1
    E = D * (D + 1)
    t_groups = evals * 4.0 * n_groups * D ** 3 / _GROUP_FLOP_S
    t_kron = 2.0 * n_groups * E * E / _KRON_BUILD_FLOP_S + evals * 8.0 * E * E / _KRON_BYTES_S
    return "kronecker" if t_kron < t_groups else "groups"


def optimize_node(objective, Q, c, maxiter):
    """L-BFGS-B from the current (Q, c); keeps the start when no finite improvement is found."""
    x0 = np.concatenate([Q, c[:, None]], axis=1).ravel()
    f0, _ = objective(x0)
    res = minimize(objective, x0, jac=True, method="L-BFGS-B", options={"maxiter": maxiter})
    x = res.x
    f1, _ = objective(x)
    if not (np.isfinite(f1) and f1 <= f0 and np.all(np.isfinite(x))):
        x, f1 = x0, f0
    Qp = x.reshape(Q.shape[0], Q.shape[0] + 1)
    return Qp[:, :-1].copy(), Qp[:, -1].copy(), {"f0": f0, "f1": f1, "nit": int(res.nit),
                                                   "nfev": int(res.nfev)}


def preconditioners(omegas, counts, S):
    """B (D, D) and upper-triangular T (D+1, D+1) that whiten the node's quadratic form.

    With Q' = B Y T the objective keeps its form in Y (Omega -> B^T Omega B, S' -> T S' T^T,
    L -> B^T L T^T, and log|det Q| = log|det Y_Q| + const because T is block upper-triangular),
    while B^T mean(Omega) B = I and T mean(S') T^T = I. For a single group the Hessian of the
    quadratic term becomes the identity, so L-BFGS-B needs a handful of iterations instead of
    hundreds.
    """
    total = counts.sum()
    om = np.einsum("g,gij->ij", counts, omegas) / total
    B = np.linalg.inv(np.linalg.cholesky(0.5 * (om + om.T))).T
    Sbar = S.sum(axis=0) / total
    flip = Sbar[::-1, ::-1]
    V = np.linalg.cholesky(0.5 * (flip + flip.T))[::-1, ::-1]  # Sbar = V V^T, V upper
    T = np.linalg.inv(V)
    return B, T


def lower_folds(Q, c, D):
    """z = R_g u + r_g for every prefix g of the given layers (C order); (1, D, D) for none."""
    R = np.eye(D)[None]
    r = np.zeros((1, D))
    for q, cc in zip(Q, c):
        r = (np.einsum("gij,nj->gni", R, cc) + r[:, None]).reshape(-1, D)
        R = np.matmul(R[:, None], q[None]).reshape(-1, D, D)
    return R, r


def node_origins(counts, means, G, Nj):
    """(Nj, D) each node's mean input v over all its points (the origin of its moments)."""
    D = means.shape[-1]
    N = counts.reshape(G, Nj, -1)
    n = N.sum(axis=(0, 2))
    s = np.einsum("giu,giud->id", N, means.reshape(G, Nj, -1, D))
    return s / np.maximum(n, 1e-300)[:, None]


def group_moments(counts, means, scatters, G, Nj, origins=None):
    """Pool path statistics over the upper part of the path: per (lower prefix g, node i) the
    count n, the sum s1 = sum w and the second moment s2 = sum w w^T of w = v - origins[i]
    (no origins: of v itself). About a nearby origin no digits are lost to cancellation:
    sum v v^T at an offset of 1e6 keeps 4 of a unit spread's 16."""
    D = means.shape[-1]
    N = counts.reshape(G, Nj, -1)
    m = means.reshape(G, Nj, -1, D)
    if origins is not None:
        m = m - origins[None, :, None]
    C = scatters.reshape(G, Nj, -1, D, D)
    n = N.sum(axis=2)
    s1 = np.einsum("giu,giud->gid", N, m)
    s2 = C.sum(axis=2) + np.matmul(np.swapaxes(N[..., None] * m, 2, 3), m)
    return n, s1, s2


def augmented_second_moment(n, s1, s2):
    """S' = sum v' v'^T with v' = [v; 1], for a stack of groups."""
    G, D = s1.shape
    S = np.empty((G, D + 1, D + 1))
    S[:, :D, :D] = s2
    S[:, :D, D] = s1
    S[:, D, :D] = s1
    S[:, D, D] = n
    return S


def node_terms(n, s1, s2, R, r, out_origin=None):
    """The terms of one node's f(Q') (module docstring) from its groups' moments n, s1, s2
    and folds R, r: S' (G, D+1, D+1), L (D, D+1) and c0. With ``out_origin`` p the node's
    output is u = p + Q' w' and the folds take p in (z = R_g u' + (r_g + R_g p)): with p the
    start's mean output, offsets of the data's size never meet inside the objective."""
    if out_origin is not None:
        r = r + np.einsum("gij,j->gi", R, out_origin)
    S = augmented_second_moment(n, s1, s2)
    s1p = np.concatenate([s1, n[:, None]], axis=1)
    L = np.einsum("gji,gj->gi", R, r).T @ s1p
    c0 = float(n @ np.einsum("gi,gi->g", r, r))
    return S, L, c0


def mstep(Q, c, stats, layers, *, reg_covar, method, lbfgs_maxiter, rng, n_threads):
    """One M-step sweep from layer k (next to x) down to layer 1. Returns new (Q, c) lists and
    a per-layer list of node reports. Nodes with fewer than min_points(D) points are not
    refitted but re-seeded as splits of busy nodes of their layer; each layer's report ends
    with {"reseeded": n, "splits": [(layer, node, source)]}, which split_prior_counts turns
    into the prior's counts."""
    D = stats.means.shape[1]
    min_count = min_points(D)
    Q = [q.copy() for q in Q]
    c = [cc.copy() for cc in c]
    counts = stats.counts
    means = stats.means.copy()
    scat = stats.scatters + (effective_reg(stats, reg_covar) * counts)[:, None, None] * np.eye(D)
    reports = [None] * len(layers)
    for j in reversed(range(len(layers))):
        Nj = layers[j]
        G = int(np.prod(layers[:j], dtype=np.int64))
        # each node is fitted in its own frame, from its mean input o to its start's mean
        # output p: Q v + c = p + Q (v - o) + e, e fitted from 0. Data at an offset of 1e6
        # make Q v and c of 1e6 each and their sum of 1: about the origin one M-step moved
        # the nodes by 7e-4 at 1e4 and 2e-3 at 1e6, whole fits by up to 1.4 nats at 1e4 and
        # 2.5 at 1e6 (tests/test_mstep.py, test_robustness.py)
        origins = node_origins(counts, means, G, Nj)
        n, s1, s2 = group_moments(counts, means, scat, G, Nj, origins)
        R, r = lower_folds(Q[:j], c[:j], D)
        omegas = np.matmul(np.swapaxes(R, 1, 2), R)
        node_counts = n.sum(axis=0)

        def fit_node(i):
            if node_counts[i] < min_count:
                return None  # starved: re-seeded below
            live = n[:, i] > 0
            p = c[j][i] + Q[j][i] @ origins[i]
            S, L, c0 = node_terms(n[live, i], s1[live, i], s2[live, i], R[live], r[live], p)
            m = method if method != "auto" else choose_method(int(live.sum()), D, lbfgs_maxiter)
            B, T = preconditioners(omegas[live], n[live, i], S)
            # the objective keeps its form in whitened coordinates Q' = B Y T (see below)
            Om_w = np.matmul(np.matmul(B.T[None], omegas[live]), B[None])
            S_w = np.matmul(np.matmul(T[None], S), T.T[None])
            obj = NodeObjective(Om_w, S_w, B.T @ L @ T.T, c0, node_counts[i], m)
            Y0 = np.linalg.solve(B, np.concatenate([Q[j][i], np.zeros((D, 1))], axis=1))
            Y0 = np.linalg.solve(T.T, Y0.T).T
            y, yc, info = optimize_node(obj, Y0[:, :D], Y0[:, D], lbfgs_maxiter)
            Qp = B @ np.concatenate([y, yc[:, None]], axis=1) @ T
            info["method"] = m
            return Qp[:, :D], p + Qp[:, D] - Qp[:, :D] @ origins[i], info

        with single_threaded_blas():
            if n_threads > 1 and Nj > 1:
                with ThreadPoolExecutor(max_workers=min(n_threads, Nj)) as pool:
                    results = list(pool.map(fit_node, range(Nj)))
            else:
                results = [fit_node(i) for i in range(Nj)]
        reports[j] = []
        for i, res in enumerate(results):
            if res is not None:
                Q[j][i], c[j][i], info = res
                reports[j].append(info)
        pairs = reseed_starved_nodes(Q[j], c[j], node_counts, min_count, rng)
        reports[j].append({"reseeded": len(pairs), "splits": [(j, i, s) for i, s in pairs]})
        # push the path statistics through the refitted layer: v_{j-1} = Q v_j + c
        m4 = means.reshape(G, Nj, -1, D)
        C5 = scat.reshape(G, Nj, -1, D, D)
        Qb = Q[j][None, :, None]
        means = (np.einsum("nij,gnuj->gnui", Q[j], m4) + c[j][None, :, None]).reshape(-1, D)
        scat = np.matmul(np.matmul(Qb, C5), np.swapaxes(Qb, -1, -2)).reshape(-1, D, D)
    return Q, c, reports


def effective_reg(stats, reg_covar, relative=1e-9):
    """reg_covar plus a floor of ``relative`` times the data's mean variance, so that the
    regularisation means the same at every data scale (1e-6 alone vanishes for data of size
    1e6). Raises for data without any variance when reg_covar is 0."""
    N = stats.counts.sum()
    mean = stats.counts @ stats.means / N
    dev = stats.means - mean
    total = np.trace(stats.scatters.sum(axis=0)) + stats.counts @ np.einsum("pi,pi->p", dev, dev)
    var = total / (N * stats.means.shape[1])
    if var <= 0 and reg_covar <= 0:
        raise ValueError("the data has no variance (all rows equal) and reg_covar is 0: "
                         "nothing to fit; set reg_covar > 0")
    return reg_covar + relative * var


def min_points(D):
    """Fewest points a node needs: D + 1, the fewest whose scatter has full rank. A node with
    fewer has a Gaussian held up only by reg_covar, collapsed onto a handful of near-identical
    rows; on BSDS300 patches a fifth of a hard-EM GMM's components ended so (GMM-300: 67
    under 64 points; its 79 under 100 were the best component of no validation patch), and
    re-seeding them raised a GMM-100's held-out likelihood by 0.7-0.8 nats (README)."""
    return D + 1


def reseed_starved_nodes(Q, c, node_counts, min_count, rng, jitter=0.05):
    """Turn every node with fewer than ``min_count`` points into a perturbed copy of a busy node
    of its layer (a split), so that no part of the network dies or collapses. Each starved node
    splits the node with the most points left after the splits before it (a split halves
    them); only nodes with at least 2 * min_count points are split, so a layer with more nodes
    than the data supports keeps its extra nodes as they are instead of churning.
    Returns the (starved node, source) pairs: the caller must give each copy half of its
    source's prior mass (split_prior_counts), or the copy, held at the prior floor, never wins
    a point back (seen on grown BSDS300 networks: a fifth of the top layer stayed empty)."""
    starved = np.flatnonzero(node_counts < min_count)
    mass = np.array(node_counts, dtype=np.float64)
    pairs = []
    for i in starved:
        src = int(np.argmax(mass))
        if mass[src] < 2 * min_count:
            break
        mass[src] /= 2
        mass[i] = mass[src]
        Q[i], c[i] = perturbed_copy(Q[src], c[src], rng, jitter)
        pairs.append((int(i), src))
    return pairs


def perturbed_copy(Q, c, rng, jitter):
    """A node near the inverse map (Q, c): its output u = Q v + c made (I + jitter G /
    sqrt(D)) u + jitter g, G and g standard normal. Close enough to share its source's points
    at first, different enough for EM to pull the two apart. The output is perturbed, not Q
    alone: Q v and c may each be 1e6 where u is of order 1 (data far from the origin)."""
    D = Q.shape[0]
    P = np.eye(D) + jitter / np.sqrt(D) * rng.standard_normal((D, D))
    return P @ Q, P @ c + jitter * rng.standard_normal(D)


def split_prior_counts(counts, layers, splits):
    """Path counts for the prior after the M-step's splits: for each (layer j, node i,
    source s), the paths through s in layer j give half their counts to the same paths
    through i. Returns a new flat array; the statistics themselves are left alone."""
    counts = np.array(counts, dtype=np.float64).reshape(layers)
    for j, i, s in splits:
        src = [slice(None)] * len(layers)
        dst = list(src)
        src[j], dst[j] = s, i
        half = counts[tuple(src)] / 2
        counts[tuple(src)] = half
        counts[tuple(dst)] = half
    return counts.reshape(-1)


def path_prior(counts, layers, kind, floor=1e-3):
    """Joint (N_p / N) or factorized (per-layer node frequencies) prior; every weight is floored
    at ``floor`` times the uniform weight, then renormalised, so a path that lost its points
    can win them back. Returns (joint (N_1, ..., N_k), per-layer list or None)."""
    counts = np.asarray(counts, dtype=np.float64).reshape(layers)
    if kind == "factorized":
        per_layer = []
        for j in range(len(layers)):
            f = counts.sum(axis=tuple(a for a in range(len(layers)) if a != j))
            f = np.maximum(f / max(f.sum(), 1e-300), floor / layers[j])
            per_layer.append(f / f.sum())
        joint = per_layer[0]
        for f in per_layer[1:]:
            joint = np.multiply.outer(joint, f)
        return joint.reshape(layers), per_layer
    w = np.maximum(counts / max(counts.sum(), 1e-300), floor / counts.size)
    return w / w.sum(), None
