"""A pure numpy/scipy Deep GMM trained by hard EM: the "no compiled core" baseline.

The same model and algorithm as dgmmcore (van den Oord & Schrauwen 2014, with biases; the
conventions of DESIGN.md section 1), written independently of the package and without any
compiled code of its own, so the bench suite can show what the Cython/OpenMP core buys:

- exact density / best path: every path folded into ``z = W_p x + w_p``; rows in chunks, one
  dense GEMM ``X_chunk @ [W_1; ...; W_P]^T`` per chunk, squared norms, logsumexp/argmax over
  paths (memory O(chunk x P x D), never O(n x P));
- heuristic E-step (paper section 3.1): coordinate ascent over layers, rows grouped by the
  fixed part of their path and scored against the N_j candidates with one GEMM per group; one
  warm pass from the previous paths plus a random restart for two passes, keep the better;
- per-path statistics: rows sorted by path, one ``Y^T Y`` GEMM per path (centred);
- M-step: layer by layer from layer k down to 1, every node's ``[Q c]`` by scipy L-BFGS-B on
  the per-group objective (paper eq. 11/12 with biases) with the analytic gradient, after the
  same whitening of the quadratic form that dgmmcore uses (so both need similar iteration
  counts); statistics are pushed through each refitted layer in parameter space;
- joint path prior ``N_p / N`` floored at 0.1% of uniform; empty nodes re-seeded from their
  layer's busiest node; k-means initialisation of the widest layer (the last of the widest),
  near-identity layers elsewhere (those on its x side fixing the data mean).

Nodes are optimised one after another; numpy's BLAS may use several threads (the bench fixes
the count with threadpoolctl). Usage mirrors the package:

    model = NumpyDGMM(layers=(10, 5, 5), max_iter=20, random_state=0).fit(X)
    model.score(X_test); model.predict(X_test); model.history_

``NumpyDGMM.from_params(transforms, biases, weights)`` takes dgmmcore's forward parameters,
which lets the bench cross-check the two implementations on the same model.
"""
import math
import time

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

LOG2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------- network algebra
def _fold(Q, c, D=None):
    """(W (P, D, D), w (P, D)) with z = W_p x + w_p for every path, C order of the paths.

    z = Q1 (Q2 (... (Qk x + ck) ...) + c2) + c1, built from layer 1 down: for a prefix map
    z = W u + w with u the input of layer j, u = Q_j v + c_j gives W Q_j and W c_j + w.
    Given a prefix of the layers, the maps of every prefix path (identity for no layers)."""
    D = Q[0].shape[1] if D is None else D
    W = np.eye(D)[None]
    w = np.zeros((1, D))
    for q, cc in zip(Q, c):
        w = (np.einsum("pij,nj->pni", W, cc) + w[:, None]).reshape(-1, D)
        W = np.matmul(W[:, None], q[None]).reshape(-1, D, D)
    return W, w


def _path_logdet(Q, layers):
    total = np.zeros(layers)
    for j, q in enumerate(Q):
        shape = [1] * len(layers)
        shape[j] = layers[j]
        total = total + np.linalg.slogdet(q)[1].reshape(shape)
    return total.ravel()


class _Table:
    """Folded paths and their constants log pi_p + log|det W_p| - D/2 log(2 pi)."""

    def __init__(self, Q, c, log_w, layers):
        self.layers = tuple(layers)
        self.W, self.w = _fold(Q, c)
        self.P, self.D = self.W.shape[0], self.W.shape[1]
        self.const = log_w + _path_logdet(Q, layers) - 0.5 * self.D * LOG2PI
        self.Wt = {}

    def stacked(self, dtype):
        """(D, P*D) so that X @ stacked = [W_1 x, ..., W_P x] row by row."""
        key = np.dtype(dtype).name
        if key not in self.Wt:
            self.Wt[key] = np.ascontiguousarray(
                self.W.reshape(self.P * self.D, self.D).T.astype(dtype))
        return self.Wt[key]

    def scores(self, X, paths=None):
        """(m, len(paths)) log pi_p + log N(x | p) for a block of rows."""
        if paths is None:
            Z = X @ self.stacked(X.dtype)
            Z = Z.reshape(X.shape[0], self.P, self.D)
            Z += self.w.astype(X.dtype, copy=False)[None]
            const = self.const
        else:
            Wc = self.W[paths].reshape(len(paths) * self.D, self.D).astype(X.dtype, copy=False)
            Z = (X @ Wc.T).reshape(X.shape[0], len(paths), self.D)
            Z += self.w[paths].astype(X.dtype, copy=False)[None]
            const = self.const[paths]
        sq = np.einsum("mpd,mpd->mp", Z, Z)
        return const[None] - 0.5 * sq.astype(np.float64, copy=False)


def _chunk_rows(P, D, budget_bytes=32 << 20):
    return int(max(16, min(4096, budget_bytes // max(1, P * D * 8))))


def exact(table, X, want_lse=True, want_best=True):
    """log p(x) (logsumexp over paths) and the best path, chunk by chunk."""
    n = X.shape[0]
    lse = np.empty(n) if want_lse else None
    best = np.empty(n, dtype=np.intp) if want_best else None
    best_score = np.empty(n) if want_best else None
    step = _chunk_rows(table.P, table.D)
    for lo in range(0, n, step):
        s = table.scores(X[lo:lo + step])
        if want_lse:
            lse[lo:lo + step] = logsumexp(s, axis=1)
        if want_best:
            a = s.argmax(axis=1)
            best[lo:lo + step] = a
            best_score[lo:lo + step] = s[np.arange(len(a)), a]
    return lse, best, best_score


def _coordinate_ascent(table, X, paths, passes):
    layers = table.layers
    strides = [int(np.prod(layers[j + 1:], dtype=np.int64)) for j in range(len(layers))]
    flat = np.ravel_multi_index(tuple(paths.T), layers).astype(np.intp)
    score = np.empty(X.shape[0])
    for _ in range(passes):
        for j, n_j in enumerate(layers):
            base = flat - strides[j] * ((flat // strides[j]) % n_j)
            order = np.argsort(base, kind="stable")
            keys, starts = np.unique(base[order], return_index=True)
            ends = np.append(starts[1:], len(order))
            for key, lo, hi in zip(keys, starts, ends):
                cand = key + strides[j] * np.arange(n_j)
                step = _chunk_rows(n_j, table.D)
                for a in range(lo, hi, step):
                    rows = order[a:min(hi, a + step)]
                    s = table.scores(X[rows], cand)
                    arg = s.argmax(axis=1)
                    flat[rows] = cand[arg]
                    score[rows] = s[np.arange(len(rows)), arg]
    return flat, score


def heuristic(table, X, prev_flat, rng, warm_passes=1, n_restarts=1, restart_passes=2):
    """Paper protocol; returns (flat paths, scores, switch rate)."""
    n, layers = X.shape[0], table.layers
    best, best_score = None, None
    if prev_flat is not None and warm_passes > 0:
        prev = np.stack(np.unravel_index(prev_flat, layers), axis=1)
        best, best_score = _coordinate_ascent(table, X, prev, warm_passes)
    switched = np.zeros(n, dtype=bool)
    for _ in range(max(n_restarts, 0 if best is not None else 1)):
        start = np.stack([rng.integers(0, n_j, size=n) for n_j in layers], axis=1)
        f, s = _coordinate_ascent(table, X, start, restart_passes)
        if best is None:
            best, best_score = f, s
            continue
        better = s > best_score
        switched |= better
        best[better], best_score[better] = f[better], s[better]
    rate = float(switched.mean()) if prev_flat is not None and warm_passes > 0 else float("nan")
    return best, best_score, rate


# ---------------------------------------------------------------------------- statistics
def path_stats(X, flat, P):
    """counts (P,), means (P, D), centred scatters (P, D, D), one GEMM per path."""
    n, D = X.shape
    counts = np.bincount(flat, minlength=P).astype(np.float64)
    means = np.zeros((P, D))
    scat = np.zeros((P, D, D))
    order = np.argsort(flat, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts.astype(np.intp))])
    for p in np.flatnonzero(counts):
        Y = np.asarray(X[order[bounds[p]:bounds[p + 1]]], dtype=np.float64)
        m = Y.mean(axis=0)
        Y = Y - m
        means[p] = m
        scat[p] = Y.T @ Y
    return counts, means, scat


# ---------------------------------------------------------------------------- M-step
def _upper_factor(S):
    """V upper-triangular with S = V V^T (Cholesky of the index-reversed matrix)."""
    J = S[::-1, ::-1]
    L = np.linalg.cholesky(0.5 * (J + J.T))
    return L[::-1, ::-1]


def _node_objective(Om, S, Lmat, const, N):
    """f(Y) and its gradient for one node in whitened coordinates (everything divided by N):
    f = -log|det Y_Q| + [ 1/2 sum_g tr(Om_g Y S_g Y^T) + <Lmat, Y> + const/2 ] / N."""
    D = Om.shape[1]

    def f(flat):
        Y = flat.reshape(D, D + 1)
        sign, logdet = np.linalg.slogdet(Y[:, :D])
        if sign == 0 or not np.isfinite(logdet):
            return np.inf, np.zeros_like(flat)
        G = np.matmul(np.matmul(Om, Y), S).sum(axis=0)  # sum_g Om_g Y S_g
        val = -logdet + (0.5 * np.vdot(Y, G) + np.vdot(Lmat, Y) + 0.5 * const) / N
        grad = (G + Lmat) / N
        grad[:, :D] -= np.linalg.inv(Y[:, :D]).T
        return val, grad.ravel()
    return f


def mstep(Q, c, counts, means, scat, layers, reg_covar, maxiter, rng):
    D = means.shape[1]
    Q = [q.copy() for q in Q]
    c = [cc.copy() for cc in c]
    means = means.copy()
    scat = scat + (reg_covar * counts)[:, None, None] * np.eye(D)
    nits = 0
    for j in reversed(range(len(layers))):
        Nj = layers[j]
        G = int(np.prod(layers[:j], dtype=np.int64))
        U = int(np.prod(layers[j + 1:], dtype=np.int64))
        cnt = counts.reshape(G, Nj, U)
        mu = means.reshape(G, Nj, U, D)
        C = scat.reshape(G, Nj, U, D, D)
        n_gi = cnt.sum(axis=2)                                   # (G, Nj)
        s1 = np.einsum("giu,giud->gid", cnt, mu)                 # sum v
        s2 = C.sum(axis=2) + np.matmul(np.swapaxes(cnt[..., None] * mu, 2, 3), mu)  # sum v v^T
        R, r = _fold(Q[:j], c[:j], D)
        Om = np.matmul(np.swapaxes(R, 1, 2), R)
        Rr = np.einsum("gki,gk->gi", R, r)
        rr = np.einsum("gk,gk->g", r, r)
        node_n = n_gi.sum(axis=0)
        for i in range(Nj):
            N = node_n[i]
            if N <= 0:
                continue
            live = n_gi[:, i] > 0
            ng = n_gi[live, i]
            Sa = np.empty((int(live.sum()), D + 1, D + 1))
            Sa[:, :D, :D] = s2[live, i]
            Sa[:, :D, D] = s1[live, i]
            Sa[:, D, :D] = s1[live, i]
            Sa[:, D, D] = ng
            sp = np.concatenate([s1[live, i], ng[:, None]], axis=1)
            Lmat = Rr[live].T @ sp
            const = float(ng @ rr[live])
            Omg = Om[live]
            # whitening: Q' = B Y T with B^T mean(Om) B = I, T mean(S') T^T = I, T upper
            om_bar = np.einsum("g,gij->ij", ng, Omg) / N
            B = np.linalg.inv(np.linalg.cholesky(0.5 * (om_bar + om_bar.T))).T
            T = np.linalg.inv(_upper_factor(Sa.sum(axis=0) / N))
            Om_w = np.matmul(np.matmul(B.T, Omg), B)
            S_w = np.matmul(np.matmul(T, Sa), T.T)
            obj = _node_objective(Om_w, S_w, B.T @ Lmat @ T.T, const, N)
            Qp = np.concatenate([Q[j][i], c[j][i][:, None]], axis=1)
            y0 = np.linalg.solve(T.T, np.linalg.solve(B, Qp).T).T.ravel()
            f0, _ = obj(y0)
            res = minimize(obj, y0, jac=True, method="L-BFGS-B", options={"maxiter": maxiter})
            nits += int(res.nit)
            f1, _ = obj(res.x)
            if np.isfinite(f1) and f1 <= f0 and np.all(np.isfinite(res.x)):
                Qp = B @ res.x.reshape(D, D + 1) @ T
                Q[j][i], c[j][i] = Qp[:, :D], Qp[:, D]
        empty = np.flatnonzero(node_n <= 0)
        if len(empty) and node_n.max() > 0:
            src = int(np.argmax(node_n))
            for i in empty:
                Q[j][i] = (np.eye(D) + 0.05 / np.sqrt(D) * rng.standard_normal((D, D))) @ Q[j][src]
                c[j][i] = c[j][src] + 0.05 * rng.standard_normal(D)
        # push the statistics through the refitted layer: v_{j-1} = Q v_j + c
        Qn = Q[j][None, :, None]
        means = (np.einsum("nij,gnuj->gnui", Q[j], mu) + c[j][None, :, None]).reshape(-1, D)
        scat = np.matmul(np.matmul(Qn, C), np.swapaxes(Qn, -1, -2)).reshape(-1, D, D)
    return Q, c, nits


def joint_prior(counts, floor=1e-3):
    w = np.maximum(counts / max(counts.sum(), 1e-300), floor / counts.size)
    return w / w.sum()


# ---------------------------------------------------------------------------- imputation
def impute(table, X, mask, step_values=1 << 22):
    """Posterior-mean imputation of the entries marked in ``mask`` and the log-density of each
    row's observed entries, in batched numpy: per missing pattern, np.linalg on the stack of
    every path's Lambda_mm = W_m^T W_m (Cholesky, solve, inverse); per block of rows, batched
    products. With d = x - mu_p, v = W_o d_o, C C^T = Lambda_mm, w = C^{-1} W_m^T v:
    E_p[x_m | x_o] = mu_m - C^{-T} w and d_o^T Sigma_oo^{-1} d_o = |v|^2 - |w|^2."""
    n, D = X.shape
    out = np.array(X, dtype=np.float64)
    loglik = np.zeros(n)
    keep = np.isfinite(table.const)
    W, const = table.W[keep], table.const[keep]
    means = -np.linalg.solve(W, table.w[keep][:, :, None])[:, :, 0]
    P = len(W)
    uniq, inverse = np.unique(mask, axis=0, return_inverse=True)
    step = max(1, step_values // (P * D))
    for u, pat in enumerate(uniq):
        rows = np.flatnonzero(inverse.ravel() == u)
        o, m = ~pat, pat
        n_m = int(m.sum())
        if n_m == D:
            log_pi = const - np.linalg.slogdet(W)[1]
            out[np.ix_(rows, m)] = np.exp(log_pi - logsumexp(log_pi)) @ means
            continue
        W_o, W_m = W[:, :, o], W[:, :, m]
        score_const = const + 0.5 * n_m * LOG2PI
        if n_m:
            C = np.linalg.cholesky(np.swapaxes(W_m, 1, 2) @ W_m)
            score_const = score_const - np.log(np.diagonal(C, axis1=1, axis2=2)).sum(axis=1)
            G = np.linalg.solve(C, np.swapaxes(W_m, 1, 2))          # w = G v
            Ct_inv = np.swapaxes(np.linalg.inv(C), 1, 2)
        for lo in range(0, len(rows), step):
            r = rows[lo:lo + step]
            v = W_o @ (X[np.ix_(r, o)].T[None] - means[:, o][:, :, None])   # (P, D, c)
            quad = np.einsum("pdc,pdc->cp", v, v)
            if n_m:
                w = G @ v
                quad -= np.einsum("pmc,pmc->cp", w, w)
            score = score_const[None] - 0.5 * quad
            lse = logsumexp(score, axis=1)
            loglik[r] = lse
            if n_m:
                post = np.exp(score - lse[:, None])
                cond = means[:, m][:, :, None] - Ct_inv @ w
                out[np.ix_(r, m)] = np.einsum("cp,pmc->cm", post, cond)
    return out, loglik


# ---------------------------------------------------------------------------- initialisation
def _kmeans(X, k, rng, n_iter=25):
    n = X.shape[0]
    idx = [int(rng.integers(n))]
    d2 = ((X - X[idx[0]]) ** 2).sum(1)
    for _ in range(1, k):
        tot = d2.sum()
        i = int(rng.integers(n)) if tot <= 0 else int(rng.choice(n, p=d2 / tot))
        idx.append(i)
        d2 = np.minimum(d2, ((X - X[i]) ** 2).sum(1))
    C = X[idx].copy()
    labels = np.full(n, -1)
    for _ in range(n_iter):
        new = ((X ** 2).sum(1)[:, None] - 2 * X @ C.T + (C ** 2).sum(1)[None]).argmin(axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for i in range(k):
            if np.any(labels == i):
                C[i] = X[labels == i].mean(0)
    return labels


def initial_params(X, layers, rng, reg_covar, spread=0.1, max_rows=50_000):
    n, D = X.shape
    sub = X if n <= max_rows else X[np.sort(rng.choice(n, max_rows, replace=False))]
    sub = np.asarray(sub, dtype=np.float64)
    gcov = np.cov(sub.T) + reg_covar * np.eye(D)
    at = max(j for j, N in enumerate(layers) if N == max(layers))
    labels = _kmeans(sub, layers[at], rng)
    A_k, b_k = [], []
    for i in range(layers[at]):
        pts = sub[labels == i]
        cov = (np.cov(pts.T) + max(reg_covar, 1e-6 * np.trace(gcov) / D) * np.eye(D)
               if len(pts) > D else gcov)
        A_k.append(np.linalg.cholesky(cov))
        b_k.append(pts.mean(0) if len(pts) else sub.mean(0))
    mean = sub.mean(0)
    A, b = [], []
    for j, N in enumerate(layers):
        if j == at:
            A.append(np.array(A_k))
            b.append(np.array(b_k))
            continue
        Aj = np.eye(D) + spread / np.sqrt(D) * rng.standard_normal((N, D, D))
        A.append(Aj)
        b.append(spread * rng.standard_normal((N, D)) if j < at else mean - Aj @ mean)
    return A, b


def _inverse(A, b):
    Q = [np.linalg.inv(a) for a in A]
    return Q, [-np.einsum("nij,nj->ni", q, bb) for q, bb in zip(Q, b)]


# ---------------------------------------------------------------------------- estimator
class NumpyDGMM:
    """Deep GMM by hard EM in numpy/scipy only (see the module docstring)."""

    def __init__(self, layers=(10, 5, 5), estep="heuristic", max_iter=100, tol=1e-3,
                 lbfgs_maxiter=1000, warm_passes=1, n_restarts=1, restart_passes=2,
                 reg_covar=1e-6, random_state=None, verbose=0):
        self.layers = tuple(int(n) for n in layers)
        self.estep = estep
        self.max_iter = max_iter
        self.tol = tol
        self.lbfgs_maxiter = lbfgs_maxiter
        self.warm_passes = warm_passes
        self.n_restarts = n_restarts
        self.restart_passes = restart_passes
        self.reg_covar = reg_covar
        self.random_state = random_state
        self.verbose = verbose

    @classmethod
    def from_params(cls, transforms, biases, weights, **kw):
        model = cls(layers=tuple(a.shape[0] for a in transforms), **kw)
        model.Q_, model.c_ = _inverse([np.asarray(a, float) for a in transforms],
                                      [np.asarray(b, float) for b in biases])
        model.weights_ = np.asarray(weights, float).reshape(model.layers)
        return model

    def _table(self):
        with np.errstate(divide="ignore"):
            return _Table(self.Q_, self.c_, np.log(self.weights_.ravel()), self.layers)

    def fit(self, X):
        X = np.ascontiguousarray(X, dtype=np.float64)
        rng = np.random.default_rng(self.random_state)
        P = int(np.prod(self.layers))
        A, b = initial_params(X, self.layers, rng, self.reg_covar)
        self.Q_, self.c_ = _inverse(A, b)
        self.weights_ = np.full(self.layers, 1.0 / P)
        self.history_ = []
        prev, flat, self.converged_ = None, None, False
        for it in range(self.max_iter + 1):
            t0 = time.perf_counter()
            table = self._table()
            if self.estep == "full":
                _, flat, score = exact(table, X, want_lse=False)
                switch = float("nan")
            else:
                flat, score, switch = heuristic(table, X, flat, rng, self.warm_passes,
                                                self.n_restarts, self.restart_passes)
            t1 = time.perf_counter()
            counts, means, scat = path_stats(X, flat, P)
            t2 = time.perf_counter()
            obj = float(np.mean(score))
            rec = {"iter": it, "objective": obj, "switch_rate": switch, "search_seconds": t1 - t0,
                   "stats_seconds": t2 - t1, "estep_seconds": t2 - t0}
            if prev is not None and abs(obj - prev) < self.tol:
                self.converged_ = True
            if self.converged_ or it == self.max_iter:
                self.history_.append(rec)
                break
            self.Q_, self.c_, nit = mstep(self.Q_, self.c_, counts, means, scat, self.layers,
                                          self.reg_covar, self.lbfgs_maxiter, rng)
            self.weights_ = joint_prior(counts).reshape(self.layers)
            rec["mstep_seconds"] = time.perf_counter() - t2
            rec["lbfgs_iterations"] = nit
            self.history_.append(rec)
            if self.verbose:
                print(f"numpy iter {it:3d} objective {obj:10.4f} E {rec['estep_seconds']:.2f}s "
                      f"M {rec['mstep_seconds']:.2f}s", flush=True)
            prev = obj
        self.n_iter_ = sum(1 for r in self.history_ if "mstep_seconds" in r)
        self._train_paths = flat
        return self

    def score_samples(self, X):
        lse, _, _ = exact(self._table(), np.ascontiguousarray(X), want_best=False)
        return lse

    def score(self, X):
        return float(np.mean(self.score_samples(X)))

    def predict(self, X):
        _, best, _ = exact(self._table(), np.ascontiguousarray(X), want_lse=False)
        return np.stack(np.unravel_index(best, self.layers), axis=1)

    def n_parameters(self):
        D = self.Q_[0].shape[1]
        return sum(self.layers) * (D * D + D) + int(np.prod(self.layers)) - 1
