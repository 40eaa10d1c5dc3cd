"""Missing values: each path's Gaussian conditioned on a row's observed entries.

For a row with observed entries o and missing entries m, path p contributes
    weight  w_p  proportional to  pi_p N(x_o | mu_p[o], Sigma_p[o, o])
    mean    E_p[x_m | x_o]
and the imputation is sum_p w_p E_p[x_m | x_o]; the log of the normaliser is the marginal
log-density of the observed entries.

Everything comes from the paths' precision factors R_p (R_p^T R_p = Sigma_p^{-1}, the scoring
kernel's table), split by columns into R_o and R_m. With d = x - mu_p and v = R_o d_o:
    Lambda_mm = R_m^T R_m = C C^T            (Cholesky, once per path per missing pattern)
    E_p[x_m | x_o] = mu_m - C^{-T} w,       w = C^{-1} R_m^T v
    (x_o - mu_o)^T Sigma_oo^{-1} (x_o - mu_o) = |v|^2 - |w|^2
    log|Sigma_oo| = log|Sigma| + log|Lambda_mm|
The compiled kernel (src/_conditional.pyx) forms and factors Lambda_mm once per path per missing
pattern (O(P |m|^2 D)) and then costs O(P D^2) per row, in parallel over paths; rows are grouped
by missing pattern to share the factors. Rows whose pattern few other rows share are done
together instead, each factoring its own Lambda_mm (a block of the precision R_p^T R_p) while
path p's arrays stay in cache (condition_rows); a pattern shared by many rows is cheaper
through the covariances (see _shared_pattern).
"""
import math

import numpy as np
from scipy.special import logsumexp

from . import _conditional, _estep
from ._network import PathTable
from ._threads import single_threaded_blas


# A missing pattern shared by at least this many rows goes through the observed entries'
# marginals (_shared_pattern: the scoring kernel on |o| dimensions, then GEMMs) instead of the
# per-path conditional kernel, whose per-row cost is D^2 + D |m| per path.
SHARED_ROWS = 64
SHARED_CHUNK = 2048
# Patterns with fewer rows than this are not worth a pass over every path's factors of their
# own: their rows go through condition_rows together.
OWN_PATTERN_ROWS = 8


def check_mask(mask, shape):
    mask = np.asarray(mask)
    if mask.dtype != bool:
        if mask.dtype.kind not in "iu" or not np.isin(mask, (0, 1)).all():
            raise TypeError("mask must be boolean (True marks a missing entry)")
        mask = mask.astype(bool)
    if mask.shape != shape:
        raise ValueError(f"mask must have the shape of X {shape}, got {mask.shape}")
    return mask


def patterns(mask):
    """(unique patterns (U, D) bool, row index lists) for grouping rows by missing pattern."""
    uniq, inverse = np.unique(mask, axis=0, return_inverse=True)
    order = np.argsort(inverse.ravel(), kind="stable")
    bounds = np.searchsorted(inverse.ravel()[order], np.arange(len(uniq) + 1))
    return uniq, [order[bounds[u]:bounds[u + 1]] for u in range(len(uniq))]


def impute_rows(X, mask, table, n_threads=1):
    """Returns (imputed copy of X, marginal log-density of each row's observed entries)
    under the paths of ``table`` (a PathTable)."""
    n, D = X.shape
    out = np.array(X, dtype=np.float64)
    loglik = np.zeros(n)
    act = table.active
    R = _derived(table, "R", lambda: np.ascontiguousarray(table.R[act], dtype=np.float64))
    means = np.ascontiguousarray(table.mean64[act])
    const = np.ascontiguousarray(table.const[act])  # log pi_p + log|det R_p| - D/2 log 2 pi
    log_pi = const - np.log(np.abs(np.diagonal(R, axis1=1, axis2=2))).sum(axis=1) \
        + 0.5 * D * math.log(2 * math.pi)
    uniq, groups = patterns(mask)
    own = []  # rows of rare patterns
    for pat, rows in zip(uniq, groups):
        m = np.flatnonzero(pat)
        if len(m) == D:  # nothing observed: the prior mean, density 1
            out[np.ix_(rows, m)] = np.exp(log_pi - logsumexp(log_pi)) @ means
            continue
        if len(m) and len(rows) >= SHARED_ROWS:
            covs = _derived(table, "covs", lambda: _covariances(R))
            fill, loglik[rows] = _shared_pattern(out[np.ix_(rows, np.flatnonzero(~pat))], pat,
                                                 means, covs, log_pi, n_threads)
            out[np.ix_(rows, m)] = fill
            continue
        if len(rows) < OWN_PATTERN_ROWS:
            own.append(rows)
            continue
        fill = np.empty((len(rows), len(m)))
        row_loglik = np.empty(len(rows))
        with single_threaded_blas():  # the kernel calls BLAS from its own threads
            bad = _conditional.condition_pattern(np.ascontiguousarray(out[rows]),
                                                 m.astype(np.intp), R, means, const, fill,
                                                 row_loglik, n_threads)
        _check_singular(bad, "paths")
        loglik[rows] = row_loglik
        out[np.ix_(rows, m)] = fill
    if own:
        rows = np.concatenate(own)
        fill = np.ascontiguousarray(out[rows])
        row_loglik = np.empty(len(rows))
        precisions = _derived(table, "precisions", lambda: np.matmul(np.swapaxes(R, 1, 2), R))
        with single_threaded_blas():
            bad = _conditional.condition_rows(fill.copy(), mask[rows].view(np.uint8), R,
                                              precisions, means, const, fill, row_loglik,
                                              n_threads)
        _check_singular(bad, "(row, path) pairs")
        loglik[rows] = row_loglik
        out[rows] = fill
    return out, loglik


def _derived(table, name, build):
    """An array derived from the active paths of ``table``, built once and kept on it: a
    model drops its table when its parameters change, and repeated calls (EPLL restoration
    imputes every iteration) would rebuild the same (P, D, D) arrays each time."""
    cache = table.__dict__.setdefault("_impute_arrays", {})
    if name not in cache:
        cache[name] = build()
    return cache[name]


def _covariances(R):
    R_inv = np.linalg.inv(R)
    return R_inv @ np.swapaxes(R_inv, 1, 2)


def _check_singular(bad, what):
    if bad:
        raise np.linalg.LinAlgError(f"{bad} {what} have a singular precision on the missing "
                                    "entries")


def _shared_pattern(X_o, pat, means, covs, log_pi, n_threads):
    """(fill, loglik) for rows that share the missing pattern ``pat``, from each path's
    marginal N(mu_o, S_oo) of the observed entries (densities by the scoring kernel) and its
    regression E[x_m | x_o] = mu_m + K (x_o - mu_o), K = S_mo S_oo^{-1}: the posterior-weighted
    sum of the regressions is two GEMMs per chunk of rows."""
    o, m = ~pat, pat
    P, n_m, n_o = len(means), int(m.sum()), int(o.sum())
    S_oo = covs[:, o][:, :, o]
    table_o = PathTable.from_gaussians(log_pi, means[:, o], S_oo)
    K = np.swapaxes(np.linalg.solve(S_oo, covs[:, o][:, :, m]), 1, 2)       # (P, |m|, |o|)
    offset = means[:, m] - np.einsum("pmo,po->pm", K, means[:, o])
    K = K.reshape(P, n_m * n_o)
    fill = np.empty((len(X_o), n_m))
    loglik = np.empty(len(X_o))
    for lo in range(0, len(X_o), SHARED_CHUNK):
        Xc = np.ascontiguousarray(X_o[lo:lo + SHARED_CHUNK])
        post, loglik[lo:lo + len(Xc)] = _estep.path_posteriors(table_o, Xc, n_threads)
        slopes = (post @ K).reshape(len(Xc), n_m, n_o)
        fill[lo:lo + len(Xc)] = post @ offset + np.einsum("cmo,co->cm", slopes, Xc)
    return fill, loglik
