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


def test_settings_make_these_searches_pruned():
    # the tests below are about the pruned code path: fail loudly if the settings move past them
    assert _estep.PRUNE_MIN_FEATURES <= D and _estep.PRUNE_MIN_CANDIDATES <= 260
    assert _scoring.TAIL < D


@pytest.mark.parametrize("n_threads", [1, 2])
def test_pruned_best_path_equals_scipy_brute_force(n_threads):
    model, (A, b, w) = make((130, 2))
    X = rows(model, 1000)
    model.n_threads = n_threads
    ref = component_logpdf(X, A, b, w)  # (n, 260) with scipy.stats
    want = np.unravel_index(ref.argmax(axis=1), (130, 2))
    np.testing.assert_array_equal(model.predict(X), np.stack(want, axis=1))
    _, paths, best = _estep.exact_scores(model._path_table(), X, n_threads, lse=False)
    np.testing.assert_allclose(best, ref.max(axis=1), rtol=1e-9, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pruned_search_is_identical_to_scoring_every_path(dtype, monkeypatch):
    model, _ = make((80, 2, 2), seed=3)
    X = rows(model, 3000, seed=4).astype(dtype)
    table = model._path_table()
    got = _estep.exact_scores(table, X, 2, lse=False)
    want = unpruned(lambda: _estep.exact_scores(table, X, 2, lse=False), monkeypatch)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])


def test_heuristic_search_is_identical_with_pruning(monkeypatch):
    # the top layer's 300 choices are pruned in each coordinate-ascent step; 2 choices are not
    model, _ = make((300, 2, 2), seed=5)
    X = rows(model, 3000, seed=6)
    table = model._path_table()

    def search():
        return _estep.heuristic_estep(table, X, None, 11, 2, 1, 2, 2)

    got, want = search(), unpruned(search, monkeypatch)
    for g, w in zip(got[:2], want[:2]):
        np.testing.assert_array_equal(g, w)


def test_the_kernel_reads_the_tail_bound():
    """With every tail block inflated the bound is no longer one, paths are wrongly pruned and
    the answer changes: so the searches above did go through the pruned code."""
    model, _ = make((80, 2, 2), seed=3)
    X = rows(model, 2000, seed=4)
    t = model._path_table()
    n = len(X)

    def best_with(tail):
        out_best, out_score = np.zeros(n, dtype=np.intp), np.full(n, np.nan)
        group, start, stop = _estep.split_runs(np.array([0, n]), _estep.PRUNE_CHUNK)
        _scoring.score_groups(X, t.R, t.mean, t.const, tail, np.arange(n), group, start, stop,
                              t.active[None, :], np.empty(0), out_best, out_score,
                              np.empty((0, len(t.active))), 2)
        return out_best, out_score

    no_tail = best_with(t.R[:0])
    right = best_with(t.tail_block(_scoring.TAIL))
    wrong = best_with(10 * t.tail_block(_scoring.TAIL))
    np.testing.assert_array_equal(right[0], no_tail[0])
    np.testing.assert_array_equal(right[1], no_tail[1])
    assert np.mean(wrong[0] != no_tail[0]) > 0.1


def test_tail_table_shape_is_checked():
    model, _ = make((80, 2, 2))
    t = model._path_table()
    X = rows(model, 100)
    with pytest.raises(ValueError, match="R_tail"):
        _scoring.score_groups(X, t.R, t.mean, t.const, np.ascontiguousarray(t.R[:5, :4, :4]),
                              np.arange(len(X)),
                              np.zeros(1, np.intp), np.zeros(1, np.intp),
                              np.array([len(X)], np.intp), t.active[None, :], np.empty(0),
                              np.zeros(len(X), np.intp), np.zeros(len(X)),
                              np.empty((0, len(t.active))), 1)


def test_converted_table_is_built_once_with_its_own_tail():
    """A float32 search of a float64 table converts it once (searches call astype per block
    and per symmetry); the converted table's tail block is its own float32 R's."""
    model, _ = make((80, 2, 2))
    t = model._path_table()
    t.tail_block(_scoring.TAIL)  # the float64 tail exists before the conversion
    t32 = t.astype(np.float32)
    assert t.astype(np.float32) is t32 and t.astype(np.float64) is t
    tail = t32.tail_block(_scoring.TAIL)
    assert t32.R.dtype == tail.dtype == np.float32
    np.testing.assert_array_equal(tail, t32.R[:, -_scoring.TAIL:, -_scoring.TAIL:])
    X = rows(model, 500).astype(np.float32)
    np.testing.assert_array_equal(_estep.exact_scores(t, X, 1, lse=False)[1],
                                  _estep.exact_scores(t32, X, 1, lse=False)[1])
