"""EPLL-style denoising and inpainting with a patch prior."""
import numpy as np
import pytest

from dgmmcore import DeepGMM, restoration


@pytest.fixture(scope="module")
def prior():
    """A small patch prior fitted on patches of smooth synthetic images."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:40]
    patches = []
    for _ in range(60):
        f = rng.uniform(0.05, 0.3, 2)
        img = 128 + 60 * np.sin(f[0] * xx + rng.uniform(0, 6)) * np.cos(f[1] * yy)
        w = np.lib.stride_tricks.sliding_window_view(img, (8, 8)).reshape(-1, 64)
        patches.append(w[rng.choice(len(w), 100, replace=False)])
    P = np.concatenate(patches) / 256.0
    P = P + rng.normal(0, 0.5 / 256, P.shape)
    P = (P - P.mean(1, keepdims=True))[:, :63]
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DeepGMM((4, 2), max_iter=5, random_state=0, n_threads=1).fit(P)


def test_denoising_improves_psnr_and_is_deterministic(prior):
    yy, xx = np.mgrid[0:32, 0:32]
    clean = 128 + 60 * np.sin(0.2 * xx) * np.cos(0.15 * yy)
    noisy = clean + 20 * np.random.default_rng(1).standard_normal(clean.shape)
    out = restoration.denoise(prior, noisy, 20)
    assert out.shape == clean.shape
    assert restoration.psnr(clean, out) > restoration.psnr(clean, noisy) + 5
    np.testing.assert_array_equal(out, restoration.denoise(prior, noisy, 20))


def test_inpainting_fills_missing_pixels_and_keeps_observed(prior):
    yy, xx = np.mgrid[0:32, 0:32]
    clean = 128 + 60 * np.sin(0.2 * xx) * np.cos(0.15 * yy)
    mask = np.random.default_rng(2).random(clean.shape) < 0.4
    out = restoration.inpaint(prior, np.where(mask, 0, clean), mask)
    np.testing.assert_allclose(out[~mask], clean[~mask], atol=1e-3)
    flat = np.where(mask, clean[~mask].mean(), clean)
    assert restoration.psnr(clean, out) > restoration.psnr(clean, flat) + 5


def test_psnr_definition():
    a = np.zeros((4, 4))
    assert restoration.psnr(a, a + 1) == pytest.approx(10 * np.log10(255 ** 2))


@pytest.mark.parametrize("image,msg", [(np.zeros((5, 40)), "smaller"), (np.zeros(40), "2-D"),
                                       (np.full((9, 9), np.nan), "NaN")])
def test_bad_images(prior, image, msg):
    with pytest.raises(ValueError, match=msg):
        restoration.denoise(prior, image, 10)


def test_bad_arguments(prior):
    with pytest.raises(ValueError, match="sigma"):
        restoration.denoise(prior, np.zeros((10, 10)), -1)
    with pytest.raises(ValueError, match="shape"):
        restoration.inpaint(prior, np.zeros((10, 10)), np.zeros((9, 10), bool))
    wrong = DeepGMM.from_params([np.stack([np.eye(5)])], [np.zeros((1, 5))], np.ones(1))
    with pytest.raises(ValueError, match="patch"):
        restoration.denoise(wrong, np.zeros((10, 10)), 10)
    with pytest.raises(ValueError, match="search"):
        restoration.denoise(prior, np.zeros((10, 10)), 10, search="greedy")


def test_noisy_prior_matches_direct_computation(prior):
    """The eigendecomposition shortcut gives the tables and gains of Sigma_k + S/beta."""
    from dgmmcore._network import PathTable
    w, mu, cov = prior.to_gmm()
    D = mu.shape[1]
    S = np.eye(D) - 1.0 / (D + 1)
    X = np.random.default_rng(3).normal(0, 0.05, (50, D))
    noisy = restoration._PatchPrior(prior)
    for beta in (30.0, 3e4):
        M = cov + S / beta
        table, gains = noisy.at(beta)
        direct = PathTable.from_gaussians(np.log(w), mu, M)
        for x in X[:5]:
            for k in range(len(w)):
                diff = x - mu[k]
                np.testing.assert_allclose(np.sum((table.R[k] @ diff) ** 2),
                                           diff @ np.linalg.solve(M[k], diff), rtol=1e-7)
        np.testing.assert_allclose(table.const, direct.const, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(gains, cov @ np.linalg.inv(M), rtol=1e-7, atol=1e-10)
        assert np.allclose(np.tril(table.R, -1), 0)


@pytest.mark.parametrize("search", ["tracked", "exact", "heuristic"])
def test_every_path_search_denoises_deterministically(prior, search):
    yy, xx = np.mgrid[0:24, 0:24]
    clean = 128 + 60 * np.sin(0.2 * xx) * np.cos(0.15 * yy)
    noisy = clean + 15 * np.random.default_rng(4).standard_normal(clean.shape)
    out = restoration.denoise(prior, noisy, 15, search=search)
    assert restoration.psnr(clean, out) > restoration.psnr(clean, noisy) + 4
    np.testing.assert_array_equal(out, restoration.denoise(prior, noisy, 15, search=search))


def test_tracked_search_starts_from_the_exhaustive_search(prior):
    """At the first beta 'tracked' takes every patch's best path over all paths; later betas
    move each path by coordinate ascent only, so a path never gets worse than its start."""
    from dgmmcore import _estep
    noisy_prior = restoration._PatchPrior(prior)
    rng = np.random.default_rng(6)
    patches = rng.normal(0.5, 0.05, (400, 64))
    table, _ = noisy_prior.at(300.0)
    a = np.ascontiguousarray((patches - patches.mean(1, keepdims=True))[:, :-1])
    best, paths = restoration._best_paths(table, a, "tracked", None, 1)
    scores = _estep.path_scores(table, a, 1)
    np.testing.assert_array_equal(best, scores.argmax(axis=1))
    table2, _ = noisy_prior.at(3000.0)
    best2, _ = restoration._best_paths(table2, a, "tracked", paths, 1)
    scores2 = _estep.path_scores(table2, a, 1)
    rows = np.arange(len(a))
    assert np.all(scores2[rows, best2] >= scores2[rows, best] - 1e-12)


def test_from_factors_checks_layers():
    from dgmmcore._network import PathTable
    with pytest.raises(ValueError, match="multiply"):
        PathTable.from_factors(np.zeros(4), np.zeros((4, 2)), np.tile(np.eye(2), (4, 1, 1)),
                               np.zeros(4), layers=(3, 2))


@pytest.mark.parametrize("kwargs,error,msg", [
    (dict(sigma=1e300), ValueError, "out of range"),   # the penalties underflow to 0
    (dict(sigma=1e-200), ValueError, "out of range"),  # ... or overflow
    (dict(sigma="10"), TypeError, "sigma"),
    (dict(sigma=None), TypeError, "sigma"),
    (dict(betas=[0]), ValueError, r"betas\[0\]"),
    (dict(betas=[1, -1]), ValueError, r"betas\[1\]"),
    (dict(betas=[np.nan]), ValueError, r"betas\[0\]"),
    (dict(betas=[]), ValueError, "non-empty"),
    (dict(betas=4.0), ValueError, "sequence"),
    (dict(scale=0), ValueError, "scale"),
    (dict(scale=-1), ValueError, "scale"),
    (dict(n_threads=-1), ValueError, "n_threads"),
    (dict(n_threads=1.5), TypeError, "n_threads"),
])
def test_bad_restoration_arguments_are_named(prior, kwargs, error, msg):
    img = np.full((10, 10), 100.0)
    args = dict(sigma=10) | kwargs
    with pytest.raises(error, match=msg):
        restoration.denoise(prior, img, args.pop("sigma"), **args)
    if "sigma" not in kwargs:  # the same checks for inpainting
        with pytest.raises(error, match=msg):
            restoration.inpaint(prior, img, np.eye(10, dtype=bool), **kwargs)


def test_betas_as_an_array_equal_the_list(prior):
    noisy = 128 + 20 * np.random.default_rng(3).standard_normal((12, 12))
    np.testing.assert_array_equal(
        restoration.denoise(prior, noisy, 20, betas=np.array([1.0, 4.0])),
        restoration.denoise(prior, noisy, 20, betas=[1, 4]))


def test_psnr_refuses_images_of_two_shapes():
    with pytest.raises(ValueError, match="one shape"):
        restoration.psnr(np.zeros((4, 4)), np.zeros((4, 5)))


def test_inpainting_ignores_the_values_at_missing_pixels(prior):
    yy, xx = np.mgrid[0:20, 0:20]
    clean = 128 + 60 * np.sin(0.2 * xx) * np.cos(0.15 * yy)
    mask = np.random.default_rng(4).random(clean.shape) < 0.3
    np.testing.assert_array_equal(restoration.inpaint(prior, np.where(mask, np.nan, clean), mask),
                                  restoration.inpaint(prior, np.where(mask, 7.0, clean), mask))
    with pytest.raises(ValueError, match="NaN"):  # NaN where a pixel is observed
        restoration.inpaint(prior, np.where(mask, clean, np.nan), mask)
