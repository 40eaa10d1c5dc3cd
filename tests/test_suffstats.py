"""Per-path statistics (hard and soft) against weighted sums written out in numpy."""
import pickle

import numpy as np
import pytest
from scipy.special import logsumexp

from dgmmcore import DeepGMM, _estep, _stats
from dgmmcore._suffstats import PathSums, add_soft, hard_stats, soft_stats
from _reference import component_logpdf, random_params


def reference_stats(X, resp):
    """counts, means and centred scatters from a dense (n, P) responsibility matrix."""
    counts = resp.sum(axis=0)
    means = (resp.T @ X) / counts[:, None]
    scat = np.stack([(resp[:, p, None] * (X - means[p])).T @ (X - means[p])
                     for p in range(resp.shape[1])])
    return counts, means, scat


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(3)
    A, b, w = random_params((3, 2), 4, rng)
    model = DeepGMM.from_params(A, b, w, n_threads=2)
    X, _ = model.sample(700, random_state=1)
    logp = component_logpdf(X, A, b, w)
    resp = np.exp(logp - logsumexp(logp, axis=1, keepdims=True))
    return model, X, logp, resp


def test_soft_stats_exact_without_floor(problem):
    model, X, logp, resp = problem
    stats, loglik = soft_stats(X, model._path_table(), 2, floor=0.0)
    counts, means, scat = reference_stats(X, resp)
    np.testing.assert_allclose(loglik, logsumexp(logp, axis=1), rtol=1e-10)
    np.testing.assert_allclose(stats.counts, counts, rtol=1e-10)
    np.testing.assert_allclose(stats.means, means, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(stats.scatters, scat, rtol=1e-9, atol=1e-9)


def test_soft_stats_floor_drops_only_negligible_mass(problem):
    model, X, logp, resp = problem
    floor = 1e-4
    stats, _ = soft_stats(X, model._path_table(), 2, floor=floor)
    counts, means, scat = reference_stats(X, np.where(resp > floor, resp, 0.0))
    np.testing.assert_allclose(stats.counts, counts, rtol=1e-10)
    np.testing.assert_allclose(stats.scatters, scat, rtol=1e-9, atol=1e-9)
    # against the untruncated counts: each row gave up at most `floor` of its weight per path
    lost = resp.sum(axis=0) - stats.counts
    assert np.all(lost >= -1e-12) and np.all(lost <= len(X) * floor)


def test_soft_stats_of_float32_rows_score_in_float32(problem, monkeypatch):
    model, X, _, _ = problem
    X32 = X.astype(np.float32)
    table = model._path_table()
    dtypes = []
    run = _estep._run
    monkeypatch.setattr(_estep, "_run", lambda t, Xc, *a, **k: dtypes.append(
        (t.dtype, Xc.dtype)) or run(t, Xc, *a, **k))
    stats32, ll32 = soft_stats(X32, table, 2, chunk=100)
    assert set(dtypes) == {(np.dtype(np.float32), np.dtype(np.float32))}
    # against float64 statistics of the same (rounded) rows: float32 scoring accuracy
    stats64, ll64 = soft_stats(X32.astype(np.float64), table, 2)
    np.testing.assert_allclose(ll32, ll64, rtol=1e-5)
    np.testing.assert_allclose(stats32.counts, stats64.counts, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stats32.means, stats64.means, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stats32.scatters, stats64.scatters, rtol=1e-4, atol=1e-3)


def test_soft_stats_independent_of_threads_and_blocking(problem):
    model, X, _, _ = problem
    table = model._path_table()
    one, ll1 = soft_stats(X, table, 1)
    two, ll2 = soft_stats(X, table, 2)
    for a, b in ((one.counts, two.counts), (one.means, two.means),
                 (one.scatters, two.scatters), (ll1, ll2)):
        assert np.array_equal(a, b)
    small, _ = soft_stats(X, table, 2, chunk=17, block=100)
    np.testing.assert_allclose(small.scatters, one.scatters, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(small.means, one.means, rtol=1e-12, atol=1e-12)


def test_hard_stats_are_soft_stats_of_one_hot_responsibilities(problem):
    model, X, _, resp = problem
    paths = resp.argmax(axis=1)
    P = resp.shape[1]
    stats = hard_stats(X, paths, P, np.zeros((P, X.shape[1])), 2, seg=50)
    counts, means, scat = reference_stats(X, np.eye(P)[paths])
    np.testing.assert_allclose(stats.counts, counts)
    np.testing.assert_allclose(stats.means, means, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(stats.scatters, scat, rtol=1e-10, atol=1e-10)


def test_weighted_scatter_kernel():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3))
    rows = rng.integers(0, 50, 80).astype(np.intp)  # entries may repeat rows
    w = rng.random(80)
    task_path = np.array([0], dtype=np.intp)
    start, stop = np.array([0], dtype=np.intp), np.array([80], dtype=np.intp)
    shift = rng.standard_normal((1, 3))
    out_sum, out_scat = np.zeros((1, 3)), np.zeros((1, 3, 3))
    _stats.scatter_tasks(X, rows, task_path, start, stop, shift, out_sum, out_scat, 2, w)
    Y = X[rows] - shift[0]
    np.testing.assert_allclose(out_sum[0], w @ Y)
    np.testing.assert_allclose(np.triu(out_scat[0]), np.triu((w[:, None] * Y).T @ Y))
    ones_sum, ones_scat = np.zeros((1, 3)), np.zeros((1, 3, 3))
    plain_sum, plain_scat = np.zeros((1, 3)), np.zeros((1, 3, 3))
    _stats.scatter_tasks(X, rows, task_path, start, stop, shift, ones_sum, ones_scat, 1,
                         np.ones(80))
    _stats.scatter_tasks(X, rows, task_path, start, stop, shift, plain_sum, plain_scat, 1)
    assert np.array_equal(ones_sum, plain_sum) and np.array_equal(ones_scat, plain_scat)
    with pytest.raises(ValueError, match="aligned"):
        _stats.scatter_tasks(X, rows, task_path, start, stop, shift, out_sum, out_scat, 1,
                             np.ones(79))


def test_scatter_kernel_adds_each_task_into_its_slot():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 3))
    rows = np.arange(40, dtype=np.intp)
    task_path = np.array([1, 0, 1], dtype=np.intp)
    start, stop = np.array([0, 10, 25], dtype=np.intp), np.array([10, 25, 40], dtype=np.intp)
    slots = np.array([0, 2, 3], dtype=np.intp)
    shift = rng.standard_normal((2, 3))
    before = rng.standard_normal((4, 3)), rng.standard_normal((4, 3, 3))
    out_sum, out_scat = before[0].copy(), before[1].copy()
    _stats.scatter_tasks(X, rows, task_path, start, stop, shift, out_sum, out_scat, 2,
                         slots=slots)
    np.testing.assert_array_equal(out_sum[1], before[0][1])  # no task: untouched
    for t, s in enumerate(slots):
        Y = X[start[t]:stop[t]] - shift[task_path[t]]
        np.testing.assert_allclose(out_sum[s], before[0][s] + Y.sum(axis=0))
        np.testing.assert_allclose(np.triu(out_scat[s]), np.triu(before[1][s] + Y.T @ Y))
    for bad, match in (([0, 2], "aligned"), ([0, 3, 3], "increasing"), ([1, 0, 2], "increasing"),
                       ([0, 2, 4], "index"), ([-1, 0, 1], "index")):
        with pytest.raises(ValueError, match=match):
            _stats.scatter_tasks(X, rows, task_path, start, stop, shift, out_sum, out_scat, 1,
                                 slots=np.array(bad, dtype=np.intp))


@pytest.mark.parametrize("seg", [8192, 60])
def test_path_sums_over_blocks_are_the_statistics_of_all_rows(problem, seg):
    """Hard rows and soft entries of three blocks added to one PathSums (in place, and with
    seg = 60 the busy paths split into partial tasks) give the statistics of all the rows."""
    model, X, _, resp = problem
    table = model._path_table()
    paths = resp.argmax(axis=1)
    P = resp.shape[1]
    sums = PathSums(table.mean64)
    for lo, hi in ((0, 100), (100, 450), (450, len(X))):
        sums.add_hard(X[lo:hi], paths[lo:hi], 2, seg=seg)
    assert np.bincount(paths, minlength=P).max() > 60
    counts, means, scat = reference_stats(X, np.eye(P)[paths])
    stats = sums.stats()
    np.testing.assert_allclose(stats.counts, counts)
    np.testing.assert_allclose(stats.means, means, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(stats.scatters, scat, rtol=1e-10, atol=1e-10)
    # one rows' set in one call or in many: the same sums up to rounding; threads: exactly
    whole = [hard_stats(X, paths, P, table.mean64, t, seg=seg) for t in (1, 2)]
    assert np.array_equal(whole[0].scatters, whole[1].scatters)
    np.testing.assert_allclose(stats.scatters, whole[0].scatters, rtol=1e-12, atol=1e-12)

    soft = PathSums(table.mean64)
    loglik = np.concatenate([add_soft(soft, X[lo:hi], table, 2, floor=0.0)
                             for lo, hi in ((0, 300), (300, len(X)))])
    counts, means, scat = reference_stats(X, resp)
    stats = soft.stats()
    np.testing.assert_allclose(loglik, model.score_samples(X), rtol=1e-10)
    np.testing.assert_allclose(stats.counts, counts, rtol=1e-10)
    np.testing.assert_allclose(stats.scatters, scat, rtol=1e-9, atol=1e-9)


def test_stats_pickle_as_upper_triangles_exactly(problem):
    model, X, _, _ = problem
    stats, _ = soft_stats(X, model._path_table(), 2)
    assert np.array_equal(stats.scatters, np.swapaxes(stats.scatters, 1, 2))
    wire = pickle.dumps(stats)
    back = pickle.loads(wire)
    for name in ("counts", "means", "scatters"):
        assert np.array_equal(getattr(back, name), getattr(stats, name))
    P, D = stats.means.shape
    assert len(wire) < 8 * (P + P * D + P * D * (D + 1) // 2) + 1000


@pytest.mark.parametrize("high", [1, 7, 15_000, 1 << 16, 1 << 40])
def test_order_by_path_is_numpys_stable_argsort(high):
    from dgmmcore._network import order_by_path
    keys = np.random.default_rng(high % 1000).integers(0, high, 50_000)
    order = order_by_path(keys)
    assert order.dtype == np.intp
    np.testing.assert_array_equal(order, np.argsort(keys, kind="stable"))
    assert order_by_path(keys[:0]).shape == (0,)
