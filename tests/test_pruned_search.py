"""The best-path search prunes paths by a bound from the trailing coordinates (_scoring.TAIL):
it must find exactly what scoring every path finds, against scipy and against itself unpruned."""
import numpy as np
import pytest

from dgmmcore import DeepGMM, _estep, _scoring
from _reference import component_logpdf, random_params

D = 63  # pruning needs D >= _estep.PRUNE_MIN_FEATURES


def make(layers, seed=0, bias=3.0):
    rng = np.random.default_rng(seed)
    A, b, w = random_params(layers, D, rng, bias=bias)
    return DeepGMM.from_params(A, b, w), (A, b, w)


def rows(model, n, seed=1):
    X, _ = model.sample(n, random_state=seed)
    # a few rows far from every path, where the bounds are loose
    far = np.random.default_rng(seed).standard_normal((n // 10, D)) * 20
    return np.ascontiguousarray(np.vstack([X, far]))


def unpruned(fn, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(_estep, "PRUNE_MIN_CANDIDATES", np.iinfo(np.intp).max)
        return fn()


@pytest.fixture(params=["mixture", "trailing"])
def bound(request, monkeypatch):
    """Both bounds the searches prune with: in the mixture's directions of largest variance
    (built for big searches) and on the last coordinates."""
    monkeypatch.setattr(_estep, "MIXTURE_BOUND_MIN_PAIRS",
                        0 if request.param == "mixture" else np.inf)
    return request.param


def built(table, kind):
    return any(key[0] == kind for key in table.__dict__.get("_tails", {}))


def test_settings_make_these_searches_pruned():
    # the tests below are about the pruned code path: fail loudly if the settings move past them
    assert _estep.PRUNE_MIN_FEATURES <= D and _estep.PRUNE_MIN_CANDIDATES <= 260
    assert _scoring.TAIL < D


@pytest.mark.parametrize("n_threads", [1, 2])
def test_pruned_best_path_equals_scipy_brute_force(n_threads, bound):
    model, (A, b, w) = make((130, 2))
    X = rows(model, 1000)
    model.n_threads = n_threads
    ref = component_logpdf(X, A, b, w)  # (n, 260) with scipy.stats
    want = np.unravel_index(ref.argmax(axis=1), (130, 2))
    np.testing.assert_array_equal(model.predict(X), np.stack(want, axis=1))
    _, paths, best = _estep.exact_scores(model._path_table(), X, n_threads, lse=False)
    np.testing.assert_allclose(best, ref.max(axis=1), rtol=1e-9, atol=1e-7)
    assert built(model._path_table(), bound)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pruned_search_is_identical_to_scoring_every_path(dtype, bound, monkeypatch):
    model, _ = make((80, 2, 2), seed=3)
    X = rows(model, 3000, seed=4).astype(dtype)
    table = model._path_table()
    got = _estep.exact_scores(table, X, 2, lse=False)
    assert built(table.astype(dtype), bound)
    want = unpruned(lambda: _estep.exact_scores(table, X, 2, lse=False), monkeypatch)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rows_at_the_path_means_are_searched_exactly(dtype, bound, monkeypatch):
    """At a path's mean its bound is its score (both the constant): the rounding of y = B x
    against B mu (float32 sums in float) must not prune the path that is then the best."""
    model, _ = make((80, 2, 2), seed=4)
    table = model._path_table()
    X = table.mean64[np.random.default_rng(0).integers(0, len(table.const), 2000)]
    X = np.ascontiguousarray(X, dtype=dtype)
    got = _estep.exact_scores(table, X, 2, lse=False)
    want = unpruned(lambda: _estep.exact_scores(table, X, 2, lse=False), monkeypatch)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])


def test_heuristic_search_is_identical_with_pruning(bound, monkeypatch):
    # the top layer's 300 choices are pruned in each coordinate-ascent step; 2 choices are not
    model, _ = make((300, 2, 2), seed=5)
    X = rows(model, 3000, seed=6)
    table = model._path_table()

    def search():
        return _estep.heuristic_estep(table, X, None, 11, 2, 1, 2, 2)

    got = search()
    assert built(table, bound)
    want = unpruned(search, monkeypatch)
    for g, w in zip(got[:2], want[:2]):
        np.testing.assert_array_equal(g, w)


def test_big_searches_build_the_mixture_bound_small_ones_do_not(monkeypatch):
    monkeypatch.setattr(_estep, "MIXTURE_BOUND_MIN_PAIRS", 500)
    model, _ = make((80, 2, 2), seed=3)
    table = model._path_table()
    X = rows(model, 600, seed=2)  # every path a candidate of every row: a row's pair per path
    _estep.exact_scores(table, X[:499], 1, lse=False)
    assert built(table, "trailing") and not built(table, "mixture")
    _estep.exact_scores(table, X[:500], 1, lse=False)
    assert built(table, "mixture")
    # once built it serves the small searches too
    assert table.tail_bound(_scoring.TAIL, mixture=False) is table.tail_bound(_scoring.TAIL)


def test_the_kernel_reads_the_tail_bound():
    """With every bound factor inflated the bound is no longer one, paths are wrongly pruned and
    the answer changes: so the searches above did go through the pruned code."""
    model, _ = make((80, 2, 2), seed=3)
    X = rows(model, 2000, seed=4)
    t = model._path_table()
    n = len(X)

    def best_with(basis, factors, means):
        out_best, out_score = np.zeros(n, dtype=np.intp), np.full(n, np.nan)
        group, start, stop = _estep.split_runs(np.array([0, n]), _estep.PRUNE_CHUNK)
        _scoring.score_groups(X, t.R, t.mean, t.const, basis, factors, means, np.arange(n),
                              group, start, stop, t.active[None, :], np.empty(0), out_best,
                              out_score, np.empty((0, len(t.active))), 2)
        return out_best, out_score

    no_tail = best_with(*_estep._no_tail(np.float64))
    basis, factors, means = t.tail_bound(_scoring.TAIL)  # the mixture's
    right = best_with(basis, factors, means)
    wrong = best_with(basis, 10 * factors, means)
    np.testing.assert_array_equal(right[0], no_tail[0])
    np.testing.assert_array_equal(right[1], no_tail[1])
    assert np.mean(wrong[0] != no_tail[0]) > 0.1


def test_tail_table_shape_is_checked():
    model, _ = make((80, 2, 2))
    t = model._path_table()
    X = rows(model, 100)
    basis, factors, means = t.tail_bound(_scoring.TAIL)
    for bad in [(basis, np.ascontiguousarray(factors[:5, :4, :4]), means),
                (basis[:, :10].copy(), factors, means),
                (basis, factors, means[:5])]:
        with pytest.raises(ValueError, match="R_tail"):
            _scoring.score_groups(X, t.R, t.mean, t.const, *bad, np.arange(len(X)),
                                  np.zeros(1, np.intp), np.zeros(1, np.intp),
                                  np.array([len(X)], np.intp), t.active[None, :], np.empty(0),
                                  np.zeros(len(X), np.intp), np.zeros(len(X)),
                                  np.empty((0, len(t.active))), 1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_bound_never_exceeds_a_paths_score(dtype):
    """c_p - ||T_p (B x - B mu_p)||^2 / 2 never below the scipy log-density of any path, on
    the rows near the paths and far from them (the kernel only adds the slack on top)."""
    model, (A, b, w) = make((70, 2, 2), seed=7)
    X = rows(model, 300, seed=8)
    t = model._path_table().astype(dtype)
    basis, factors, means = (np.asarray(a, np.float64) for a in t.tail_bound(_scoring.TAIL))
    assert basis.shape == (_scoring.TAIL, D) and factors.shape == (280, _scoring.TAIL,
                                                                    _scoring.TAIL)
    np.testing.assert_array_equal(np.tril(factors, -1), 0)  # upper-triangular, as the kernel
    z = np.einsum("pij,npj->npi", factors, (X @ basis.T)[:, None, :] - means[None])
    bound = t.const[None, :] - 0.5 * (z ** 2).sum(axis=2)
    exact = component_logpdf(X, A, b, w)
    rtol = 1e-9 if dtype == np.float64 else 1e-5
    assert np.all(bound >= exact - rtol * np.abs(exact))
    # and a bound that prunes: on most pairs below the row's best score
    assert np.mean(bound < exact.max(axis=1, keepdims=True)) > 0.5


def test_the_bound_on_the_last_coordinates_is_the_trailing_block():
    """With B the last T coordinates, T_p (B Sigma_p B^T)^-1 = T_p^T T_p is R_p's trailing
    block (the Schur complement of the precision): the general factors agree with it."""
    from dgmmcore import _bound
    model, _ = make((20, 2))
    t = model._path_table()
    basis, trailing, trailing_means = _bound.trailing_bound(t.R, t.mean, 10)
    factors, means = _bound.tail_factors(t.R, t.mean, basis)
    # the factors are unique up to the signs of their rows
    signs = np.sign(np.diagonal(trailing, axis1=1, axis2=2))[:, :, None]
    np.testing.assert_allclose(factors, signs * trailing, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(means, trailing_means)


def test_the_mixture_basis_spans_its_largest_variance():
    """The bound's basis: the top eigenvectors of the mixture covariance, against the
    covariance of many samples of the model."""
    model, _ = make((30, 2), seed=9)
    t = model._path_table()
    basis, _, _ = t.tail_bound(8)
    np.testing.assert_allclose(basis @ basis.T, np.eye(8), atol=1e-10)
    X, _ = model.sample(200_000, random_state=3)
    vals, vecs = np.linalg.eigh(np.cov(X.T))
    top = vecs[:, -8:]
    # the same subspace: the principal angles' cosines are all near 1
    cosines = np.linalg.svd(basis @ top, compute_uv=False)
    assert cosines.min() > 0.99


def test_converted_table_is_built_once_with_its_own_tail():
    """A float32 search of a float64 table converts it once (searches call astype per block
    and per symmetry); the converted table's bound is in float32, as its R."""
    model, _ = make((80, 2, 2))
    t = model._path_table()
    t.tail_bound(_scoring.TAIL)  # the float64 bound exists before the conversion
    t32 = t.astype(np.float32)
    assert t.astype(np.float32) is t32 and t.astype(np.float64) is t
    assert all(a.dtype == np.float32 for a in t32.tail_bound(_scoring.TAIL))
    X = rows(model, 500).astype(np.float32)
    np.testing.assert_array_equal(_estep.exact_scores(t, X, 1, lse=False)[1],
                                  _estep.exact_scores(t32, X, 1, lse=False)[1])
