"""Imputation and marginal densities against closed forms and brute force over paths."""
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from dgmmcore import DeepGMM
from _reference import path_gaussians, random_params


def test_single_gaussian_matches_closed_form_conditional():
    rng = np.random.default_rng(0)
    D = 5
    A = rng.standard_normal((1, D, D)) + 2 * np.eye(D)
    b = rng.standard_normal((1, D))
    model = DeepGMM.from_params([A], [b], np.ones(1))
    cov, mu = A[0] @ A[0].T, b[0]
    X, _ = model.sample(20, random_state=1)
    mask = np.zeros_like(X, dtype=bool)
    mask[:, [1, 3]] = True
    filled, ll = model.impute(X, mask, return_loglik=True)
    o, m = [0, 2, 4], [1, 3]
    K = cov[np.ix_(m, o)] @ np.linalg.inv(cov[np.ix_(o, o)])
    expect = mu[m] + (X[:, o] - mu[o]) @ K.T
    np.testing.assert_allclose(filled[:, m], expect, rtol=1e-10)
    np.testing.assert_array_equal(filled[:, o], X[:, o])
    np.testing.assert_allclose(ll, multivariate_normal(mu[o], cov[np.ix_(o, o)]).logpdf(X[:, o]),
                               rtol=1e-10)


def test_mixture_imputation_matches_brute_force():
    rng = np.random.default_rng(1)
    A, b, w = random_params((3, 2), 4, rng)
    model = DeepGMM.from_params(A, b, w)
    X, _ = model.sample(60, random_state=2)
    mask = rng.random(X.shape) < 0.4
    mask[0] = True          # nothing observed
    mask[1] = False         # nothing missing
    Xn = np.where(mask, np.nan, X)
    filled, ll = model.impute(Xn, mask, return_loglik=True)
    ws, means, covs = path_gaussians(A, b, w)
    for i in range(len(X)):
        o, m = ~mask[i], mask[i]
        if not o.any():
            np.testing.assert_allclose(filled[i], ws @ means, rtol=1e-10)
            assert ll[i] == 0
            continue
        comp = np.array([np.log(wp) + multivariate_normal(mu[o], C[np.ix_(o, o)]).logpdf(X[i, o])
                         for wp, mu, C in zip(ws, means, covs)])
        np.testing.assert_allclose(ll[i], logsumexp(comp), rtol=1e-10)
        if m.any():
            post = np.exp(comp - logsumexp(comp))
            cond = np.array([mu[m] + C[np.ix_(m, o)] @ np.linalg.solve(C[np.ix_(o, o)],
                                                                       X[i, o] - mu[o])
                             for mu, C in zip(means, covs)])
            np.testing.assert_allclose(filled[i, m], post @ cond, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ll[1], model.score_samples(X[1:2])[0], rtol=1e-10)
    np.testing.assert_allclose(model.score_samples(Xn, mask=mask), ll, rtol=1e-12)


def test_imputation_beats_the_mean_on_held_out_entries():
    rng = np.random.default_rng(3)
    A, b, w = random_params((4, 3), 6, rng, scale=1.0, bias=2.0)
    model = DeepGMM.from_params(A, b, w)
    X, _ = model.sample(500, random_state=4)
    mask = rng.random(X.shape) < 0.3
    filled = model.impute(X, mask)
    mse = ((filled - X)[mask] ** 2).mean()
    mean_fill = np.where(mask, X.mean(0), X)
    assert mse < 0.8 * ((mean_fill - X)[mask] ** 2).mean()


@pytest.mark.parametrize("mask,err,msg", [
    (np.zeros((3, 4), dtype=bool), ValueError, "shape"),
    (np.full((5, 4), 0.5), TypeError, "boolean"),
])
def test_bad_masks(mask, err, msg):
    model = DeepGMM.from_params([np.stack([np.eye(4)] * 2)], [np.zeros((2, 4))], np.full(2, .5))
    with pytest.raises(err, match=msg):
        model.impute(np.zeros((5, 4)), mask)


def test_nan_in_observed_entries_is_refused():
    model = DeepGMM.from_params([np.stack([np.eye(2)])], [np.zeros((1, 2))], np.ones(1))
    X = np.array([[np.nan, 1.0]])
    with pytest.raises(ValueError, match="NaN"):
        model.impute(X, np.array([[False, True]]))


def test_row_blocks_threads_and_zero_weight_paths_do_not_change_the_result(monkeypatch):
    from dgmmcore import _conditional
    rng = np.random.default_rng(5)
    A, b, w = random_params((4, 3), 5, rng)
    w = np.array(w, dtype=float).reshape(4, 3)
    w[1, 2] = 0.0  # a path the fit left empty
    model = DeepGMM.from_params(A, b, w / w.sum())
    X, _ = model.sample(300, random_state=3)
    mask = np.zeros(X.shape, dtype=bool)
    mask[:, [0, 3]] = True  # one pattern shared by every row
    mask[::7] = rng.random((len(X[::7]), 5)) < 0.5
    model.n_threads = 1
    filled, ll = model.impute(X, mask, return_loglik=True)
    model.n_threads = 2
    filled2, ll2 = model.impute(X, mask, return_loglik=True)
    assert np.array_equal(filled2, filled) and np.array_equal(ll2, ll)
    monkeypatch.setattr(_conditional, "BLOCK_VALUES", 1)  # one row per block, no BLAS
    filled1, ll1 = model.impute(X, mask, return_loglik=True)
    np.testing.assert_allclose(filled1, filled, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(ll1, ll, rtol=1e-13)
    ws, means, covs = path_gaussians(A, b, w / w.sum())
    i = 1
    o = ~mask[i]
    comp = [np.log(wp) + multivariate_normal(mu[o], C[np.ix_(o, o)]).logpdf(X[i, o])
            for wp, mu, C in zip(ws, means, covs) if wp > 0]
    np.testing.assert_allclose(ll[i], logsumexp(comp), rtol=1e-10)


def test_shared_pattern_route_matches_the_conditional_kernel(monkeypatch):
    """Patterns shared by many rows go through the marginal covariances and GEMMs; the
    per-path conditional kernel must give the same imputations and densities."""
    from dgmmcore import _impute
    rng = np.random.default_rng(8)
    A, b, w = random_params((3, 2, 2), 6, rng)
    model = DeepGMM.from_params(A, b, w, n_threads=2)
    X, _ = model.sample(400, random_state=2)
    mask = np.zeros(X.shape, dtype=bool)
    mask[:150, [1, 4]] = True
    mask[150:300, 3:] = True
    mask[300:] = rng.random((100, 6)) < 0.4
    monkeypatch.setattr(_impute, "SHARED_ROWS", 10**9)
    kernel_fill, kernel_ll = model.impute(X, mask, return_loglik=True)
    monkeypatch.setattr(_impute, "SHARED_ROWS", 1)
    monkeypatch.setattr(_impute, "SHARED_CHUNK", 64)
    shared_fill, shared_ll = model.impute(X, mask, return_loglik=True)
    np.testing.assert_allclose(shared_fill, kernel_fill, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(shared_ll, kernel_ll, rtol=1e-10)


def test_rows_with_their_own_patterns_match_the_per_pattern_kernel(monkeypatch):
    """Rows of rare patterns are conditioned together, each with its own factors
    (condition_rows); per pattern (condition_pattern) must give the same answers, in blocks of
    any size and on any number of threads."""
    from dgmmcore import _conditional, _impute
    rng = np.random.default_rng(9)
    A, b, w = random_params((3, 4), 7, rng)
    w = np.array(w, dtype=float).reshape(3, 4)
    w[2, 1] = 0.0  # an empty path
    model = DeepGMM.from_params(A, b, w / w.sum(), n_threads=1)
    X, _ = model.sample(120, random_state=5)
    mask = rng.random(X.shape) < 0.5
    mask[:3] = False                       # nothing missing
    mask[3, :-1] = True                    # one entry observed
    mask[4] = True                         # nothing observed
    monkeypatch.setattr(_impute, "OWN_PATTERN_ROWS", 0)
    pattern_fill, pattern_ll = model.impute(X, mask, return_loglik=True)
    monkeypatch.setattr(_impute, "OWN_PATTERN_ROWS", 10**9)
    own_fill, own_ll = model.impute(X, mask, return_loglik=True)
    np.testing.assert_allclose(own_fill, pattern_fill, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(own_ll, pattern_ll, rtol=1e-12)
    np.testing.assert_array_equal(own_fill[~mask], X[~mask])
    model.n_threads = 2
    monkeypatch.setattr(_conditional, "BLOCK_VALUES", 12 * 7 * 5)  # blocks of 5 rows
    fill2, ll2 = model.impute(X, mask, return_loglik=True)
    assert np.array_equal(fill2, own_fill) and np.array_equal(ll2, own_ll)
