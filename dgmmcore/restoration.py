"""Image restoration with a Deep GMM patch prior, in the manner of EPLL (Zoran & Weiss 2011).

The model is a prior on 8x8 patches preprocessed as in training: divided by ``scale`` (256),
patch mean removed, last pixel dropped (63 dims). Restoration alternates (half-quadratic
splitting, penalty beta increasing over ``betas``):

1. every overlapping patch P_i x is restored under the prior as if it carried white noise of
   variance 1/beta: its mean (DC) is kept (the prior says nothing about it), its 63 AC
   coordinates a get the Wiener estimate of the best path k,
       z = mu_k + Sigma_k (Sigma_k + N)^{-1} (a - mu_k),   N = (I - 11^T/64) / beta,
   where k is the patch's path with the highest pi_k N(a | mu_k, Sigma_k + N) (scored by the
   compiled kernel; found exhaustively or by the paper's coordinate ascent, see ``denoise``)
   and N is the exact covariance of white pixel noise seen in those coordinates;
2. the image is the weighted average  x = (lambda y + beta sum_i P_i^T z_i) /
   (lambda + beta sum_i P_i^T P_i)  (denoising), or the patch average at the missing pixels
   with the observed ones kept as given (inpainting, the lambda -> infinity limit).
"""
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import _estep
from ._network import PathTable, ravel_paths, unravel_paths
from ._threads import effective_n_threads, limited_blas
from ._validation import check_float, check_n_threads

# Random restarts of the heuristic search at the first beta, and the dtype patches are
# scored in (float32 changes the restorations by far less than their error; see
# bench/experiments/restoration_bsds300.py for the measurements behind the search modes).
COLD_RESTARTS = 4
SCORE_DTYPE = np.float32


def psnr(reference, estimate, peak=255.0):
    """Peak signal-to-noise ratio in dB."""
    reference, estimate = np.asarray(reference, float), np.asarray(estimate, float)
    if reference.shape != estimate.shape:
        raise ValueError(f"psnr compares images of one shape, got {reference.shape} and "
                         f"{estimate.shape}")
    mse = np.mean((reference - estimate) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(peak ** 2 / mse)


def _check_image(model, image, name="image"):
    from .symmetry import SymmetrizedModel
    if isinstance(model, SymmetrizedModel):
        raise TypeError("restoration takes a DeepGMM: a SymmetrizedModel's network is its "
                        ".model (the symmetry layer is not used in restoration)")
    model._check_fitted()
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"{name} must be a 2-D grayscale array, got shape {img.shape}")
    if img.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold numbers, got dtype {img.dtype}")
    side = int(round(math.sqrt(model.n_features_in_ + 1)))
    if side * side != model.n_features_in_ + 1:
        raise ValueError(f"the model has {model.n_features_in_} dims: not a patch model "
                         f"(patch size^2 - 1 dims expected)")
    if img.shape[0] < side or img.shape[1] < side:
        raise ValueError(f"{name} is {img.shape}, smaller than the model's {side}x{side} patch")
    img = img.astype(np.float64)
    if not np.isfinite(img).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return img, side


class _PatchPrior:
    """The prior's paths with white pixel noise of variance c = 1/beta added, for any beta.

    The noise covariance in the 63 AC coordinates is c S with S = I - 11^T/64, so with the
    eigendecomposition S^{-1/2} Sigma_k S^{-1/2} = U_k diag(lam_k) U_k^T (done once):
        (Sigma_k + c S)^{-1}  = B_k^T diag(1/(lam_k + c)) B_k,       B_k = U_k^T S^{-1/2},
        Sigma_k (Sigma_k + c S)^{-1} = A_k diag(lam_k/(lam_k + c)) B_k,   A_k = S^{1/2} U_k,
        log|Sigma_k + c S| = log|S| + sum log(lam_k + c).
    Each beta then costs two batched products and a Cholesky instead of solves and QRs."""

    def __init__(self, model):
        weights, self.means, covs = model._gmm()
        self.layers = tuple(model.layers)
        with np.errstate(divide="ignore"):
            self.log_w = np.log(weights)
        D = self.means.shape[1]
        s_val, s_vec = np.linalg.eigh(np.eye(D) - np.full((D, D), 1.0 / (D + 1)))
        s_half = (s_vec * np.sqrt(s_val)) @ s_vec.T
        s_ihalf = (s_vec / np.sqrt(s_val)) @ s_vec.T
        lam, U = np.linalg.eigh(s_ihalf @ covs @ s_ihalf)
        self.lam = np.maximum(lam, 0.0)
        self.A = s_half @ U
        self.B = np.swapaxes(U, 1, 2) @ s_ihalf
        self.logdet_s = float(np.log(s_val).sum())

    def at(self, beta):
        """Path table of N(mu_k, Sigma_k + S/beta) and the Wiener gains Sigma_k (.)^{-1}."""
        c = 1.0 / beta
        shrink = 1.0 / (self.lam + c)
        precision = np.swapaxes(self.B, 1, 2) @ (shrink[:, :, None] * self.B)
        R = np.swapaxes(np.linalg.cholesky(precision), 1, 2)
        logdet = self.logdet_s - np.log(shrink).sum(axis=1)
        table = PathTable.from_factors(self.log_w, self.means, R, logdet, layers=self.layers)
        gains = self.A @ ((self.lam * shrink)[:, :, None] * self.B)
        return table, gains


def _patch_prior(model):
    return model._cached("patch_prior", _PatchPrior)


SEARCHES = ("tracked", "exact", "heuristic")


def _penalties(betas, default, variance, n_threads):
    """The schedule of penalties beta (``betas`` or ``default``, each divided by
    ``variance``, the noise variance on the model's scale), with the thread count checked:
    every beta must come out a positive finite number."""
    check_n_threads(n_threads)
    if betas is None:
        betas = default
    elif isinstance(betas, (str, bytes)) or np.ndim(betas) != 1 or len(betas) == 0:
        raise ValueError(f"betas must be a non-empty sequence of positive numbers, got "
                         f"{betas!r}")
    betas = [check_float(b, f"betas[{i}]", minimum=0, strict=True)
             for i, b in enumerate(betas)]
    with np.errstate(divide="ignore", over="ignore"):
        betas = [float(np.float64(b) / variance) for b in betas]
    if not all(math.isfinite(b) and b > 0 for b in betas):
        raise ValueError(f"the penalties betas / {variance:.3g} overflow or vanish: sigma or "
                         f"scale is out of range")
    return betas


def _check_search(search):
    if search not in SEARCHES:
        raise ValueError(f"search must be one of {SEARCHES}, got {search!r}")
    return search


def _best_paths(table, a, search, previous, n_threads):
    """Best path per patch, and the paths as (n, k) node indices for the next beta.

    'exact': over all paths at every beta. 'tracked': over all paths at the first beta, then
    one coordinate-ascent pass from the previous beta's path (the E-step's warm start).
    'heuristic': like 'tracked', but the first beta uses random restarts of the coordinate
    ascent instead of the exhaustive search (for networks too large to search once).
    On BSDS300 test images a Deep GMM prior denoises better tracked than exact: re-choosing
    among thousands of paths at every beta fits the noise (bench/experiments/
    restoration_bsds300.py)."""
    layers = table.layers
    if search == "exact" or (search == "tracked" and previous is None):
        _, best, _ = _estep.exact_scores(table, a, n_threads, lse=False)
        return best, unravel_paths(best, layers)
    if previous is None:
        paths, _, _ = _estep.heuristic_estep(table, a, None, 0, n_threads,
                                             n_restarts=COLD_RESTARTS)
    else:
        paths, _ = _estep.coordinate_ascent(table, a, previous, 1, n_threads)
    return ravel_paths(paths, layers), paths


def _restore_patches(prior, patches, beta, n_threads, search="tracked", previous=None):
    """Best-path Wiener estimate of each patch (rows of 64 pixels, scaled). Returns the
    restored patches and the per-layer paths (for the next beta's warm start)."""
    dc = patches.mean(axis=1, keepdims=True)
    ac = patches - dc
    a = np.ascontiguousarray(ac[:, :-1])
    table, gains = prior.at(beta)
    best, paths = _best_paths(table.astype(SCORE_DTYPE), a.astype(SCORE_DTYPE), search,
                              previous, n_threads)
    out = np.empty_like(a)
    order = np.argsort(best, kind="stable")
    bounds = np.searchsorted(best[order], np.arange(len(prior.log_w) + 1))
    for k in np.flatnonzero(np.diff(bounds)):
        rows = order[bounds[k]:bounds[k + 1]]
        out[rows] = prior.means[k] + (a[rows] - prior.means[k]) @ gains[k].T
    full = np.concatenate([out, -out.sum(axis=1, keepdims=True)], axis=1)
    return full + dc, paths


def _patches(img, side):
    return sliding_window_view(img, (side, side)).reshape(-1, side * side)


def _accumulate(shape, side, patches):
    """sum_i P_i^T z_i and sum_i P_i^T P_i (counts) for all overlapping patches."""
    acc = np.zeros(shape)
    cnt = np.zeros(shape)
    H, W = shape[0] - side + 1, shape[1] - side + 1
    z = patches.reshape(H, W, side, side)
    for dy in range(side):
        for dx in range(side):
            acc[dy:dy + H, dx:dx + W] += z[:, :, dy, dx]
            cnt[dy:dy + H, dx:dx + W] += 1
    return acc, cnt


def _hqs(model, y, observed, lam, betas, init, scale, n_threads, search):
    search = _check_search(search)
    threads = effective_n_threads(n_threads if n_threads is not None else model.n_threads)
    with limited_blas(threads):
        return _hqs_loop(model, y, observed, lam, betas, init, scale, threads, search)


def _hqs_loop(model, y, observed, lam, betas, init, scale, threads, search):
    img = init / scale
    y = y / scale
    side = int(round(math.sqrt(model.n_features_in_ + 1)))
    prior = _patch_prior(model)
    paths = None
    for beta in betas:
        z, paths = _restore_patches(prior, _patches(img, side), beta, threads, search, paths)
        acc, cnt = _accumulate(img.shape, side, z)
        if lam is None:  # hard constraint: observed pixels stay as given
            img = np.where(observed > 0, y, acc / cnt)
        else:
            img = (lam * observed * y + beta * acc) / (lam * observed + beta * cnt)
    return img * scale


def denoise(model, image, sigma, betas=None, scale=256.0, n_threads=None, search="tracked"):
    """Denoise a grayscale image (0..255 scale) with white Gaussian noise of std ``sigma``
    (same scale). ``betas``: the penalty schedule in units of 1/sigma^2 (default
    1, 4, 8, 16, 32, 64, as in Zoran & Weiss). ``search``: how each patch's path is chosen at
    each beta, 'tracked' (all paths at the first beta, then the paper's coordinate ascent from
    the previous beta's path), 'exact' (all paths every time) or 'heuristic' (coordinate
    ascent only). For a 1-layer GMM all three are the exhaustive search. Deterministic."""
    y, side = _check_image(model, image)
    sigma = check_float(sigma, "sigma", minimum=0, strict=True)
    scale = check_float(scale, "scale", minimum=0, strict=True)
    with np.errstate(over="ignore", under="ignore"):  # out of range: refused by _penalties
        s2 = float(np.float64(sigma / scale) ** 2)
    betas = _penalties(betas, (1, 4, 8, 16, 32, 64), s2, n_threads)
    lam = side * side / s2
    return _hqs(model, y, np.ones_like(y), lam, betas, y, scale, n_threads, search)


def inpaint(model, image, mask, betas=None, scale=256.0, n_threads=None, search="tracked"):
    """Fill the pixels where ``mask`` is True (missing) in a grayscale image (0..255 scale);
    observed pixels are kept; values at missing pixels are ignored (NaN is fine), as by
    ``DeepGMM.impute``. Missing pixels start at the mean of the observed ones. ``search`` as
    in :func:`denoise`."""
    image, mask = np.asarray(image), np.asarray(mask)
    if mask.shape == image.shape and image.dtype.kind == "f":
        image = np.where(mask.astype(bool), 0.0, image)
    y, side = _check_image(model, image)
    if mask.shape != y.shape:
        raise ValueError(f"mask must have the image's shape {y.shape}, got {mask.shape}")
    mask = mask.astype(bool)
    if mask.all():
        raise ValueError("mask marks every pixel missing: nothing to inpaint from")
    observed = (~mask).astype(np.float64)
    init = np.where(mask, y[~mask].mean(), y)
    scale = check_float(scale, "scale", minimum=0, strict=True)
    s0 = 50.0 / scale
    betas = _penalties(betas, (1, 2, 4, 8, 16, 32, 64, 128, 256), s0 ** 2, n_threads)
    return _hqs(model, y, observed, None, betas, init, scale, n_threads, search)
