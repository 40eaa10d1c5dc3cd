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
so a pattern costs O(P |m|^2 D) and a row O(P D^2) in batched matrix products, with no
per-row factorisation. Rows are grouped by missing pattern to share the factors.
"""
import math

import numpy as np
from scipy.special import logsumexp

# Bounds the (P, D, rows) intermediate of one step to about this many float64 values.
STEP_VALUES = 1 << 22


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


def impute_rows(X, mask, table):
    """Returns (imputed copy of X, marginal log-density of each row's observed entries)
    under the paths of ``table`` (a PathTable)."""
    n, D = X.shape
    out = np.array(X, dtype=np.float64)
    loglik = np.zeros(n)
    act = table.active
    R = np.asarray(table.R[act], dtype=np.float64)
    means = table.mean64[act]
    P = len(act)
    const = table.const[act]  # log pi_p + log|det R_p| - D/2 log 2 pi
    uniq, groups = patterns(mask)
    step = max(1, STEP_VALUES // (P * D))
    for pat, rows in zip(uniq, groups):
        o, m = ~pat, pat
        n_o, n_m = int(o.sum()), int(m.sum())
        if n_o == 0:  # nothing observed: the prior mean, density 1
            log_pi = const - np.log(np.abs(np.diagonal(R, axis1=1, axis2=2))).sum(axis=1)
            out[np.ix_(rows, m)] = np.exp(log_pi - logsumexp(log_pi)) @ means
            continue
        R_o, R_m = R[:, :, o], R[:, :, m]
        score_const = const + 0.5 * n_m * math.log(2 * math.pi)
        if n_m:
            C = np.linalg.cholesky(np.swapaxes(R_m, 1, 2) @ R_m)          # (P, |m|, |m|)
            score_const = score_const - np.log(np.diagonal(C, axis1=1, axis2=2)).sum(axis=1)
            # G = C^{-1} R_m^T: w = G v
            G = np.linalg.solve(C, np.swapaxes(R_m, 1, 2))                 # (P, |m|, D)
            Ct_inv = np.swapaxes(np.linalg.inv(C), 1, 2)                   # C^{-T}
        for lo in range(0, len(rows), step):
            r = rows[lo:lo + step]
            d_o = X[np.ix_(r, o)].T[None] - means[:, o][:, :, None]        # (P, |o|, c)
            v = R_o @ d_o                                                  # (P, D, c)
            quad = np.einsum("pdc,pdc->cp", v, v)
            if n_m:
                w = G @ v                                                  # (P, |m|, c)
                quad -= np.einsum("pmc,pmc->cp", w, w)
            score = score_const[None] - 0.5 * quad
            lse = logsumexp(score, axis=1)
            loglik[r] = lse
            if n_m:
                post = np.exp(score - lse[:, None])                        # (c, P)
                cond = means[:, m][:, :, None] - Ct_inv @ w                # (P, |m|, c)
                out[np.ix_(r, m)] = np.einsum("cp,pmc->cm", post, cond)
    return out, loglik
