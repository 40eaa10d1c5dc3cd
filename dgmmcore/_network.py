"""Parameter algebra of a Deep GMM network: paths, inverse maps, folded per-path Gaussians.

Conventions (DESIGN.md section 1): layer 1 acts first on z ~ N(0, I), layer k produces x;
paths are numbered in C order of the (N_1, ..., N_k) prior array. Forward node (A, b) maps
h_{j-1} to h_j = A h_{j-1} + b; its inverse (Q, c) = (A^{-1}, -A^{-1} b).
"""
import math

import numpy as np

from . import _bound


def n_paths(layers):
    return int(np.prod(layers, dtype=np.int64))


def unravel_paths(index, layers):
    """Path numbers -> (n, k) node indices."""
    return np.stack(np.unravel_index(np.asarray(index, dtype=np.intp), tuple(layers)), axis=1)


def ravel_paths(paths, layers):
    """(n, k) node indices -> path numbers."""
    paths = np.asarray(paths, dtype=np.intp)
    return np.ravel_multi_index(tuple(paths.T), tuple(layers)).astype(np.intp)


def order_by_path(keys):
    """``np.argsort(keys, kind="stable")`` as intp, for path numbers (or any nonnegative
    integers): through uint16 when every key fits, where numpy's stable sort is a radix sort
    (7.5M keys below 15,000: 0.33 s against 1.34 s on intp), the same order."""
    keys = np.asarray(keys)
    if keys.size and keys.min() >= 0 and keys.max() < 1 << 16:
        keys = keys.astype(np.uint16)
    return np.argsort(keys, kind="stable").astype(np.intp, copy=False)


def invert_nodes(transforms, biases):
    """Forward (A, b) per layer -> inverse (Q, c) per layer."""
    Q = [np.linalg.inv(A) for A in transforms]
    c = [-np.einsum("nij,nj->ni", q, b) for q, b in zip(Q, biases)]
    return Q, c


def forward_nodes(Q, c):
    """Inverse (Q, c) per layer -> forward (A, b) per layer."""
    A = [np.linalg.inv(q) for q in Q]
    b = [-np.einsum("nij,nj->ni", a, cc) for a, cc in zip(A, c)]
    return A, b


def node_logdets(Q):
    """log|det Q| per node, per layer (the only place determinants are taken)."""
    return [np.linalg.slogdet(q)[1] for q in Q]


def path_log_det(Q, layers):
    """sum_j log|det Q[j][p_j]| for every path, as a flat (P,) array in C order."""
    total = np.zeros(tuple(layers))
    for j, ld in enumerate(node_logdets(Q)):
        shape = [1] * len(layers)
        shape[j] = layers[j]
        total = total + ld.reshape(shape)
    return total.ravel()


def fold_paths(Q, transforms, biases):
    """Folded inverse map and mean of every path.

    Returns W (P, D, D) with z = W_p (x - mean_p) and mean (P, D) = h_k at z = 0, built prefix
    by prefix from layer 1 so that the C order of paths comes out directly.
    """
    D = transforms[0].shape[1]
    W = np.eye(D)[None]
    mean = np.zeros((1, D))
    for q, A, b in zip(Q, transforms, biases):
        # prefix-major, node-minor: matches C order of the (N_1, ..., N_k) array
        W = np.matmul(W[:, None], q[None]).reshape(-1, D, D)
        mean = (np.einsum("nij,pj->pni", A, mean) + b[None]).reshape(-1, D)
    return W, mean


def precision_factors(W):
    """Upper-triangular R_p with R_p^T R_p = W_p^T W_p (so ||W_p v|| = ||R_p v||), by QR."""
    return np.linalg.qr(W, mode="r")


class PathTable:
    """Every path as (R_p, mean_p, const_p) for the scoring kernel, in one dtype.

    const_p = log pi_p + sum_j log|det Q[j][p_j]| - D/2 log(2 pi); paths with zero prior weight
    have const_p = -inf and are left out of ``active``.
    """

    def __init__(self, transforms, biases, log_weights, dtype=np.float64, Q=None):
        layers = tuple(A.shape[0] for A in transforms)
        D = transforms[0].shape[1]
        if Q is None:
            Q, _ = invert_nodes(transforms, biases)
        W, mean = fold_paths(Q, transforms, biases)
        self.layers = layers
        self.n_features = D
        self.R = np.ascontiguousarray(precision_factors(W), dtype=dtype)
        self.mean = np.ascontiguousarray(mean, dtype=dtype)
        self.mean64 = mean
        log_weights = np.asarray(log_weights, dtype=np.float64).ravel()
        self.log_weights = log_weights
        self.const = np.ascontiguousarray(
            log_weights + path_log_det(Q, layers) - 0.5 * D * math.log(2 * math.pi))
        self.active = np.flatnonzero(np.isfinite(log_weights)).astype(np.intp)

    @classmethod
    def from_gaussians(cls, log_weights, means, covs, dtype=np.float64, layers=None):
        """A table for arbitrary Gaussians (P, D) means, (P, D, D) covariances: R_p from the QR
        of L_p^{-1}, where covs = L L^T, so that ||R_p v||^2 = v^T covs_p^{-1} v. ``layers``
        (product P, default (P,)) lets the heuristic search treat the Gaussians as the paths of
        a network, in C order."""
        D = means.shape[1]
        L = np.linalg.cholesky(covs)
        Linv = np.linalg.solve(L, np.broadcast_to(np.eye(D), covs.shape))
        logdet = 2 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
        return cls.from_factors(log_weights, means, precision_factors(Linv), logdet, dtype, layers)

    @classmethod
    def from_factors(cls, log_weights, means, R, logdet_cov, dtype=np.float64, layers=None):
        """A table from upper-triangular precision factors R_p (R_p^T R_p = covs_p^{-1}) and
        log|det covs_p|."""
        P, D = means.shape
        layers = (P,) if layers is None else tuple(int(n) for n in layers)
        if int(np.prod(layers)) != P:
            raise ValueError(f"layers {layers} do not multiply to the {P} Gaussians")
        table = object.__new__(cls)
        table.layers = layers
        table.n_features = D
        table.R = np.ascontiguousarray(R, dtype=dtype)
        table.mean64 = np.ascontiguousarray(means, dtype=np.float64)
        table.mean = np.ascontiguousarray(means, dtype=dtype)
        log_weights = np.asarray(log_weights, dtype=np.float64)
        table.log_weights = log_weights
        table.const = np.ascontiguousarray(log_weights - 0.5 * np.asarray(logdet_cov)
                                           - 0.5 * D * math.log(2 * math.pi))
        table.active = np.flatnonzero(np.isfinite(log_weights)).astype(np.intp)
        return table

    @property
    def dtype(self):
        return self.R.dtype

    def tail_bound(self, size, n_threads=1, mixture=True):
        """(basis (T, D), factors (P, T, T), means (P, T)) of the bound that prunes a
        best-path search (``_bound``; T = size), in the table's dtype, built once per table:
        with ``mixture`` in the T directions of largest variance of the table's mixture (the
        tighter bound; it costs a triangular solve per path), else on the last T coordinates
        (R_p's trailing blocks) unless the mixture's is already built."""
        size = min(int(size), self.n_features)
        cached = self.__dict__.setdefault("_tails", {})
        if ("mixture", size) in cached:
            return cached["mixture", size]
        if not mixture:
            if ("trailing", size) not in cached:
                cached["trailing", size] = _bound.trailing_bound(self.R, self.mean, size)
            return cached["trailing", size]
        basis = _bound.mixture_basis(self.R, self.mean64, self.log_weights, self.active,
                                     size).astype(self.dtype)
        try:
            factors, means = _bound.tail_factors(self.R, self.mean, basis, n_threads)
        except np.linalg.LinAlgError:  # a path too ill-conditioned to factor its marginal
            bound = _bound.trailing_bound(self.R, self.mean, size)
        else:
            bound = (basis, np.ascontiguousarray(factors, dtype=self.dtype),
                     np.ascontiguousarray(means, dtype=self.dtype))
        cached["mixture", size] = bound
        return bound

    def astype(self, dtype):
        """The same table in another dtype (shares const and active), converted once per
        dtype: a search calls this per block of rows (per symmetry too), and converting R
        costs about 0.3 s for 15,000 paths of 63 features."""
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self
        converted = self.__dict__.setdefault("_converted", {})
        other = converted.get(dtype)
        if other is None:
            other = object.__new__(PathTable)
            # the public attributes only: the caches (_tails, _impute_arrays) hold arrays of
            # this table's dtype and are built afresh from the other's own R
            other.__dict__.update({k: v for k, v in self.__dict__.items()
                                   if not k.startswith("_")})
            other.R = self.R.astype(dtype)
            other.mean = self.mean64.astype(dtype)
            converted[dtype] = other
        return other
