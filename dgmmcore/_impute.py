"""Missing values: each path's Gaussian conditioned on a row's observed entries.

For a row with observed entries o and missing entries m, path p contributes
    weight  w_p  proportional to  pi_p N(x_o | mu_p[o], Sigma_p[o, o])
    mean    mu_p[m] + Sigma_p[m, o] Sigma_p[o, o]^{-1} (x_o - mu_p[o])
and the imputation is sum_p w_p E_p[x_m | x_o]; the log of the normaliser is the marginal
log-density of the observed entries. Rows are grouped by missing pattern so that the
factorisations (one Cholesky per path per pattern, batched in LAPACK) are shared.
"""
import math

import numpy as np
from scipy.special import logsumexp

# Rows per step inside one pattern: bounds the (rows, P, |o|) residual array.
ROW_CHUNK = 512


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


def impute_rows(X, mask, weights, means, covs):
    """Returns (imputed copy of X, marginal log-density of each row's observed entries)."""
    n, D = X.shape
    out = np.array(X, dtype=np.float64)
    loglik = np.zeros(n)
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)
    active = np.isfinite(log_w)
    log_w, means, covs = log_w[active], means[active], covs[active]
    uniq, groups = patterns(mask)
    for pat, rows in zip(uniq, groups):
        o, m = ~pat, pat
        if not o.any():  # nothing observed: the prior mean, density 1
            out[np.ix_(rows, m)] = np.exp(log_w - logsumexp(log_w)) @ means
            continue
        S_oo = covs[:, o][:, :, o]
        L = np.linalg.cholesky(S_oo)                       # (P, |o|, |o|)
        logdet = 2 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(axis=1)
        const = log_w - 0.5 * (o.sum() * math.log(2 * math.pi) + logdet)
        if m.any():
            # K_p = Sigma_mo Sigma_oo^{-1}, from two triangular solves
            S_mo = covs[:, m][:, :, o]
            K = np.linalg.solve(S_oo, np.swapaxes(S_mo, 1, 2))  # (P, |o|, |m|) = Sigma_oo^-1 Sigma_om
        for lo in range(0, len(rows), ROW_CHUNK):
            r = rows[lo:lo + ROW_CHUNK]
            resid = X[r][:, o][:, None, :] - means[None][:, :, o]          # (c, P, |o|)
            z = np.linalg.solve(L[None], resid[..., None])[..., 0]          # L^{-1} resid
            score = const[None] - 0.5 * np.einsum("cpi,cpi->cp", z, z)
            lse = logsumexp(score, axis=1)
            loglik[r] = lse
            if m.any():
                post = np.exp(score - lse[:, None])
                cond = means[None][:, :, m] + np.einsum("cpi,pim->cpm", resid, K)
                out[np.ix_(r, m)] = np.einsum("cp,cpm->cm", post, cond)
    return out, loglik
