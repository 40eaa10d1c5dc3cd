"""The bound that prunes a best-path search (src/_scoring.pyx, TAIL).

For a T x D matrix B of rank T and a path p with covariance Sigma_p,

    (x - mu_p)^T Sigma_p^-1 (x - mu_p) >= (B x - B mu_p)^T (B Sigma_p B^T)^-1 (B x - B mu_p):

the Mahalanobis distance of the marginal of y = B x never exceeds the whole. So
c_p - 1/2 ||T_p (B x - B mu_p)||^2, with upper-triangular T_p^T T_p = (B Sigma_p B^T)^-1,
bounds a path's score at a (T/D)^2 of its cost, and a row skips every path whose bound cannot
beat its best score so far.

The tighter the bound, the fewer rows are scored in full. B spans the T directions of
largest variance of the table's own mixture (its paths weighted by their prior): on a trained
(600, 5, 5) network of BSDS300 patches, the bound with T = 24 keeps 14.8% of (row, path) pairs
there, against 18.9% on the last 24 pixels (T_p then is the trailing block of R_p); 1,000 test
patches, the pairs a search in path order still scores in full.
"""
import numpy as np

from . import _scoring
from ._threads import single_threaded_blas

PATHS_PER_BLOCK = 1024  # paths solved at a time (memory: (block, D, D) float64)
# the heaviest paths, whose mixture the basis is taken from: on the 16M network the bound
# keeps as many pairs with 256 as with all 15,000 (20% of the prior mass)
BASIS_PATHS = 256


def mixture_basis(R, mean, log_weights, active, size):
    """The (size, D) orthonormal rows spanning the ``size`` directions of largest variance of
    the mixture of the BASIS_PATHS heaviest active paths (weighted by their prior): any basis
    gives a bound, this one a tight one, at the cost of one block of inverses."""
    heaviest = active[np.argsort(-log_weights[active], kind="stable")[:BASIS_PATHS]]
    w = np.exp(log_weights[heaviest] - log_weights[heaviest[0]])
    w /= w.sum()
    # sum_p w_p Sigma_p = sum_p (sqrt(w_p) R_p^-1)(sqrt(w_p) R_p^-1)^T
    scaled = np.linalg.inv(np.asarray(R[heaviest], dtype=np.float64)) * np.sqrt(w)[:, None, None]
    cov = np.einsum("pij,pkj->ik", scaled, scaled)
    mu = np.asarray(mean[heaviest], dtype=np.float64)
    centred = mu - w @ mu
    cov += (centred * w[:, None]).T @ centred
    _, vectors = np.linalg.eigh(cov)  # ascending
    return np.ascontiguousarray(vectors[:, R.shape[1] - size:].T)


def tail_factors(R, mean, basis, n_threads=1):
    """(P, T, T) upper-triangular T_p with T_p^T T_p = (B Sigma_p B^T)^-1, and (P, T) B mu_p,
    float64, for B = ``basis`` as given (so a basis rounded to the table's dtype is bounded
    as it is used)."""
    P, D = mean.shape
    T = basis.shape[0]
    B = np.asarray(basis, dtype=np.float64)
    Bt = np.ascontiguousarray(B.T)
    out = np.empty((P, T, T))
    with single_threaded_blas():  # one triangular solve per path, paths in parallel
        for lo in range(0, P, PATHS_PER_BLOCK):
            hi = min(lo + PATHS_PER_BLOCK, P)
            Rb = np.ascontiguousarray(R[lo:hi], dtype=np.float64)
            Y = _scoring.solve_transposed_factors(Rb, Bt, n_threads)  # R_p^-T B^T
            S = np.swapaxes(Y, 1, 2) @ Y                                 # B Sigma_p B^T
            out[lo:hi] = np.swapaxes(np.linalg.cholesky(np.linalg.inv(S)), 1, 2)
    return out, np.asarray(mean, dtype=np.float64) @ B.T


def trailing_bound(R, mean, size):
    """The bound on the last ``size`` coordinates: B = [0 I], T_p the trailing block of R_p
    (exact, no solve): for searches too small to pay for the mixture's, and for tables whose
    mixture basis cannot be factored."""
    D = R.shape[1]
    basis = np.zeros((size, D), dtype=R.dtype)
    basis[:, D - size:] = np.eye(size, dtype=R.dtype)
    return (basis, np.ascontiguousarray(R[:, D - size:, D - size:]),
            np.ascontiguousarray(mean[:, D - size:]))
