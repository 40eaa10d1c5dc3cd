"""Image restoration with a Deep GMM patch prior, in the manner of EPLL (Zoran & Weiss 2011).

The model is a prior on 8x8 patches preprocessed as in training: divided by ``scale`` (256),
patch mean removed, last pixel dropped (63 dims). Restoration alternates (half-quadratic
splitting, penalty beta increasing over ``betas``):

1. every overlapping patch P_i x is restored under the prior as if it carried white noise of
   variance 1/beta: its mean (DC) is kept (the prior says nothing about it), its 63 AC
   coordinates a get the Wiener estimate of the best path k,
       z = mu_k + Sigma_k (Sigma_k + N)^{-1} (a - mu_k),   N = (I - 11^T/64) / beta,
   where k maximises pi_k N(a | mu_k, Sigma_k + N) (scored by the compiled kernel) and N is
   the exact covariance of white pixel noise seen in those coordinates;
2. the image is the weighted average  x = (lambda y + beta sum_i P_i^T z_i) /
   (lambda + beta sum_i P_i^T P_i)  (denoising), or the patch average at the missing pixels
   with the observed ones kept as given (inpainting, the lambda -> infinity limit).
"""
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import _estep
from ._network import PathTable
from ._threads import effective_n_threads


def psnr(reference, estimate, peak=255.0):
    """Peak signal-to-noise ratio in dB."""
    mse = np.mean((np.asarray(reference, float) - np.asarray(estimate, float)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(peak ** 2 / mse)


def _check_image(model, image, name="image"):
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
    """Per-beta quantities of the prior: a path table of Sigma_k + N, and Wiener gains."""

    def __init__(self, model):
        self.weights, self.means, self.covs = model.to_gmm()
        with np.errstate(divide="ignore"):
            self.log_w = np.log(self.weights)
        self.D = self.means.shape[1]
        n = self.D + 1
        self.noise_shape = np.eye(self.D) - np.full((self.D, self.D), 1.0 / n)

    def at(self, beta):
        M = self.covs + self.noise_shape[None] / beta
        table = PathTable.from_gaussians(self.log_w, self.means, M)
        gains = np.swapaxes(np.linalg.solve(M, self.covs), 1, 2)  # Sigma M^{-1} (M, Sigma symmetric)
        return table, gains


def _restore_patches(prior, patches, beta, n_threads):
    """MAP-path Wiener estimate of each patch (rows of 64 pixels, scaled)."""
    n = patches.shape[0]
    dc = patches.mean(axis=1, keepdims=True)
    ac = patches - dc
    a = np.ascontiguousarray(ac[:, :-1])
    table, gains = prior.at(beta)
    _, best, _ = _estep.exact_scores(table, a, n_threads)
    out = np.empty_like(a)
    order = np.argsort(best, kind="stable")
    bounds = np.searchsorted(best[order], np.arange(len(prior.weights) + 1))
    for k in np.flatnonzero(np.diff(bounds)):
        rows = order[bounds[k]:bounds[k + 1]]
        out[rows] = prior.means[k] + (a[rows] - prior.means[k]) @ gains[k].T
    full = np.concatenate([out, -out.sum(axis=1, keepdims=True)], axis=1)
    return full + dc, best


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


def _hqs(model, y, observed, lam, betas, init, scale, n_threads):
    img = init / scale
    y = y / scale
    side = int(round(math.sqrt(model.n_features_in_ + 1)))
    prior = _PatchPrior(model)
    threads = effective_n_threads(n_threads if n_threads is not None else model.n_threads)
    for beta in betas:
        z, _ = _restore_patches(prior, _patches(img, side), beta, threads)
        acc, cnt = _accumulate(img.shape, side, z)
        if lam is None:  # hard constraint: observed pixels stay as given
            img = np.where(observed > 0, y, acc / cnt)
        else:
            img = (lam * observed * y + beta * acc) / (lam * observed + beta * cnt)
    return img * scale


def denoise(model, image, sigma, betas=None, scale=256.0, n_threads=None):
    """Denoise a grayscale image (0..255 scale) with white Gaussian noise of std ``sigma``
    (same scale). ``betas``: the penalty schedule in units of 1/sigma^2 (default
    1, 4, 8, 16, 32, 64, as in Zoran & Weiss). Deterministic."""
    y, side = _check_image(model, image)
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    s2 = (sigma / scale) ** 2
    betas = [b / s2 for b in (betas or (1, 4, 8, 16, 32, 64))]
    lam = side * side / s2
    return _hqs(model, y, np.ones_like(y), lam, betas, y, scale, n_threads)


def inpaint(model, image, mask, betas=None, scale=256.0, n_threads=None):
    """Fill the pixels where ``mask`` is True (missing) in a grayscale image (0..255 scale);
    observed pixels are kept. Missing pixels start at the mean of the observed ones."""
    y, side = _check_image(model, image)
    mask = np.asarray(mask)
    if mask.shape != y.shape:
        raise ValueError(f"mask must have the image's shape {y.shape}, got {mask.shape}")
    mask = mask.astype(bool)
    if mask.all():
        raise ValueError("mask marks every pixel missing: nothing to inpaint from")
    observed = (~mask).astype(np.float64)
    init = np.where(mask, y[~mask].mean(), y)
    s0 = 50.0 / scale
    betas = [b / s0 ** 2 for b in (betas or (1, 2, 4, 8, 16, 32, 64, 128, 256))]
    return _hqs(model, y, observed, None, betas, init, scale, n_threads)
