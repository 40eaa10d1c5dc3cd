"""Truncated soft EM: candidates, their scores and statistics against scipy densities and
dense numpy sums; its limits (one choice per layer: hard EM; every choice: soft EM)."""
import itertools
import warnings

import numpy as np
import pytest
from scipy.special import logsumexp

from dgmmcore import ConvergenceWarning, DeepGMM, load
from dgmmcore import _estep, _scoring
from dgmmcore import _suffstats
from dgmmcore._executor import EStepConfig, estep_block
from dgmmcore._suffstats import (RESP_FLOOR, PathSums, hard_stats, soft_stats,
                                 truncated_stats)
from _reference import component_logpdf, random_params
from test_suffstats import reference_stats

LAYERS = (4, 3, 2)


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(5)
    A, b, w = random_params(LAYERS, 3, rng)
    model = DeepGMM.from_params(A, b, w, n_threads=2)
    X, _ = model.sample(600, random_state=2)
    logp = component_logpdf(X, A, b, w)  # (n, P), paths in C order
    # anchors: random paths, so that the candidates are not just the best ones
    anchors = np.stack([rng.integers(0, n, len(X)) for n in LAYERS], axis=1)
    return model, X, logp, anchors


def brute_candidates(logp, anchors, keep):
    """Per row, the set of path numbers: products of each layer's keep best choices (ranked
    with the rest fixed at the anchor; the anchor's own choice always kept)."""
    S = logp.reshape((len(logp),) + LAYERS)
    out = []
    for i, a in enumerate(anchors):
        kept = []
        for j, n_j in enumerate(LAYERS):
            index = list(a)
            index[j] = slice(None)
            s = S[(i, *index)].copy()
            s[a[j]] = np.inf
            kept.append(np.argsort(-s, kind="stable")[:min(keep, n_j)])
        out.append({int(np.ravel_multi_index(p, LAYERS)) for p in itertools.product(*kept)})
    return out


@pytest.mark.parametrize("keep", [1, 2, 3, 4])
def test_candidates_and_their_scores_match_scipy(problem, keep):
    model, X, logp, anchors = problem
    table = model._path_table()
    bases, offsets, _ = _estep.truncated_candidates(table, X, anchors, keep, 2)
    cand = (bases[:, :, None] + offsets).reshape(len(X), -1)
    assert cand.shape == (len(X), int(np.prod([min(keep, n) for n in LAYERS])))
    assert [set(c.tolist()) for c in cand] == brute_candidates(logp, anchors, keep)
    # the anchor is always a candidate
    flat = np.ravel_multi_index(tuple(anchors.T), LAYERS)
    assert np.all((cand == flat[:, None]).any(axis=1))
    scores = _estep.candidate_scores(table, X, bases, offsets, 2)
    np.testing.assert_allclose(scores, np.take_along_axis(logp, cand, axis=1), rtol=1e-10)


@pytest.mark.parametrize("keep", [2, 3])
def test_truncated_stats_are_the_posterior_restricted_to_the_candidates(problem, keep):
    model, X, logp, anchors = problem
    bases, offsets, _ = _estep.truncated_candidates(model._path_table(), X, anchors, keep, 2)
    cand = (bases[:, :, None] + offsets).reshape(len(X), -1)
    mask = np.zeros(logp.shape, dtype=bool)
    np.put_along_axis(mask, cand, True, axis=1)
    restricted = np.where(mask, logp, -np.inf)
    bound = logsumexp(restricted, axis=1)
    resp = np.exp(restricted - bound[:, None])
    stats, loglik, best, _ = truncated_stats(X, model._path_table(), anchors, keep, 2, floor=0.0,
                                          block_pairs=500, accumulate_entries=1000)
    counts, means, scat = reference_stats(X, resp)
    np.testing.assert_allclose(loglik, bound, rtol=1e-10)
    # each row's new path: its best candidate
    np.testing.assert_array_equal(best, restricted.argmax(axis=1))
    used = counts > 0
    np.testing.assert_allclose(stats.counts, counts, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(stats.means[used], means[used], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(stats.scatters, scat, rtol=1e-9, atol=1e-9)
    # the default floor gives up at most TRUNCATED_FLOOR per candidate of a row's weight
    floored, *_ = truncated_stats(X, model._path_table(), anchors, keep, 2)
    lost = counts - floored.counts
    assert np.all(lost >= -1e-12)
    assert lost.sum() <= len(X) * cand.shape[1] * _suffstats.TRUNCATED_FLOOR
    # a lower bound on log p(x), at least the anchor's own score
    anchor_score = logp[np.arange(len(X)), np.ravel_multi_index(tuple(anchors.T), LAYERS)]
    assert np.all(loglik <= logsumexp(logp, axis=1) + 1e-12)
    assert np.all(loglik >= anchor_score - 1e-12)


def test_one_choice_per_layer_is_hard_em_and_every_choice_is_soft_em(problem):
    model, X, logp, anchors = problem
    table = model._path_table()
    flat = np.ravel_multi_index(tuple(anchors.T), LAYERS)
    one, ll_one, *_ = truncated_stats(X, table, anchors, 1, 2)
    hard = hard_stats(X, flat, logp.shape[1], table.mean64, 2)
    np.testing.assert_array_equal(one.counts, hard.counts)
    np.testing.assert_allclose(one.scatters, hard.scatters, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ll_one, logp[np.arange(len(X)), flat], rtol=1e-12)
    every, ll_every, *_ = truncated_stats(X, table, anchors, max(LAYERS), 2, floor=RESP_FLOOR)
    soft, ll_soft = soft_stats(X, table, 2)
    np.testing.assert_allclose(ll_every, ll_soft, rtol=1e-12)
    np.testing.assert_allclose(every.counts, soft.counts, rtol=1e-12)
    np.testing.assert_allclose(every.scatters, soft.scatters, rtol=1e-10, atol=1e-12)


def test_truncated_stats_of_float32_rows(problem):
    model, X, _, anchors = problem
    table = model._path_table()
    X32 = X.astype(np.float32)
    s32, ll32, *_ = truncated_stats(X32, table, anchors, 2, 2)
    s64, ll64, *_ = truncated_stats(X32.astype(np.float64), table, anchors, 2, 2)
    np.testing.assert_allclose(ll32, ll64, rtol=1e-5)
    np.testing.assert_allclose(s32.counts, s64.counts, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(s32.scatters, s64.scatters, rtol=1e-4, atol=1e-3)


def test_truncated_stats_do_not_depend_on_threads(problem):
    model, X, _, anchors = problem
    table = model._path_table()
    (a, la, *_), (b, lb, *_) = (truncated_stats(X, table, anchors, 2, t) for t in (1, 2))
    assert np.array_equal(la, lb) and np.array_equal(a.scatters, b.scatters)


def fit(X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return DeepGMM(LAYERS, max_iter=4, random_state=0, n_threads=2, **kw).fit(X)


def test_truncation_of_every_choice_fits_as_soft_em(problem, monkeypatch):
    _, X, _, _ = problem
    monkeypatch.setattr(_suffstats, "TRUNCATED_FLOOR", RESP_FLOOR)  # soft EM's floor
    soft = fit(X, estep="soft")
    trunc = fit(X, truncation=max(LAYERS))
    np.testing.assert_allclose([h["objective"] for h in trunc.history_],
                               [h["objective"] for h in soft.history_], rtol=1e-9)
    for a, b in zip(trunc.transforms_, soft.transforms_):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


def test_truncated_em_objective_lies_between_hard_and_soft_and_rises(problem):
    _, X, _, _ = problem
    model = fit(X, truncation=2)
    objectives = [h["objective"] for h in model.history_]
    assert objectives[-1] > objectives[0]
    # the objective is the mean log-sum-exp over each row's candidates: a lower bound on the
    # mean log-likelihood of the same parameters, above the best paths' mean score
    exact = model.score(X)
    best = np.mean(np.max(component_logpdf(X, model.transforms_, model.biases_,
                                           model.weights_), axis=1))
    assert best <= objectives[-1] <= exact + 1e-9
    assert len(model._train_paths) == len(X)  # the paths found warm-start the next fit


def test_without_a_search_the_candidates_around_the_last_paths_are_the_estep(problem):
    model, X, logp, anchors = problem
    config = EStepConfig("heuristic", LAYERS, 0, 0, 2, truncation=2)
    assert not config.searches
    table = model._path_table()
    prev = np.ravel_multi_index(tuple(anchors.T), LAYERS)
    sums = PathSums(table.mean64)
    total, switched, paths, _ = estep_block(table, X, prev, config, 0, 0, 2, sums)
    stats = sums.stats()
    expected, loglik, best, _ = truncated_stats(X, table, anchors, 2, 2)
    np.testing.assert_array_equal(stats.scatters, expected.scatters)
    np.testing.assert_array_equal(paths, best)
    assert total == pytest.approx(loglik.sum(), rel=1e-12) and switched == 0.0
    # no worse than the paths it started from; the search would have moved these anchors
    rows = np.arange(len(X))
    assert np.all(logp[rows, paths] >= logp[rows, prev])
    assert np.mean(paths != prev) > 0.3


def test_truncated_em_without_a_search_trains_from_the_paths_it_is_given(problem):
    _, X, _, _ = problem
    start = fit(X)  # hard EM
    objectives = {}
    for label, kw in (("search", {}), ("candidates", {"warm_passes": 0, "n_restarts": 0})):
        model = fit(X)
        model.truncation, model.warm_start, model.max_iter = 2, True, 3
        for name, value in kw.items():
            setattr(model, name, value)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, init_paths=start.predict(X))
        objectives[label] = [h["objective"] for h in model.history_]
        assert np.all(np.diff(objectives[label]) > 0)
        assert model.score(X) > start.score(X)
    # from the exact best paths the search finds nothing better: the first E-steps agree
    assert objectives["candidates"][0] == pytest.approx(objectives["search"][0], rel=1e-12)
    with pytest.raises(ValueError, match="both 0 only with truncation"):
        DeepGMM(LAYERS, warm_passes=0, n_restarts=0).fit(X)


def test_truncation_round_trips_and_validates(tmp_path, problem):
    _, X, _, _ = problem
    model = fit(X, truncation=2)
    model.save(tmp_path / "m.npz")
    assert load(tmp_path / "m.npz").truncation == 2
    with pytest.raises(ValueError, match="truncation must be >= 1"):
        DeepGMM(LAYERS, truncation=0).fit(X)
    with pytest.raises(TypeError, match="truncation must be an integer"):
        DeepGMM(LAYERS, truncation=2.5).fit(X)
    with pytest.raises(ValueError, match="estep='soft' already uses every path"):
        DeepGMM(LAYERS, estep="soft", truncation=2).fit(X)


def test_without_the_final_estep_the_parameters_are_those_of_the_full_run(problem):
    _, X, _, _ = problem
    full = fit(X, truncation=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        short = DeepGMM(LAYERS, max_iter=4, random_state=0, n_threads=2, truncation=2).fit(
            X, final_estep=False)
    for a, b in zip(full.transforms_, short.transforms_):
        np.testing.assert_array_equal(a, b)
    assert short.n_iter_ == len(short.history_) == 4  # every record has its M-step
    assert all("mstep_seconds" in h for h in short.history_)
    assert short.objective_ == short.history_[-1]["objective"] == full.history_[3]["objective"]
    with pytest.raises(ValueError, match="no E-step"):
        DeepGMM(LAYERS, max_iter=0).fit(X, final_estep=False)


def test_posterior_entries_against_numpy():
    rng = np.random.default_rng(0)
    scores = rng.normal(scale=30.0, size=(50, 7))
    scores[3, 2] = -np.inf
    scores[7] = -np.inf  # no finite score: no entries, loglik -inf
    scores[9, [2, 5]] = 500.0  # a tie: the first column is the best, as numpy's argmax says
    ref = np.where(np.isinf(scores), -np.inf, scores)
    lse = logsumexp(ref[np.arange(50) != 7], axis=1)
    post = np.exp(ref[np.arange(50) != 7] - lse[:, None])
    for threads in (1, 2):
        work = scores.copy()
        loglik, best, rows, cols, weights = _scoring.posterior_entries(work, 1e-6, threads)
        np.testing.assert_array_equal(best, scores.argmax(axis=1))
        np.testing.assert_allclose(np.delete(loglik, 7), lse, rtol=1e-13)
        assert loglik[7] == -np.inf and 7 not in rows
        r_ref, c_ref = np.nonzero(np.insert(post, 7, 0.0, axis=0) > 1e-6)
        np.testing.assert_array_equal(rows, r_ref)
        np.testing.assert_array_equal(cols, c_ref)
        np.testing.assert_allclose(weights, np.insert(post, 7, 0.0, axis=0)[r_ref, c_ref],
                                   rtol=1e-12)


def test_float32_truncated_rows_that_overflow_are_redone_in_float64():
    # row 3 overflows float32 on every path (z ~ 1e40): its choices are ranked and its
    # candidates scored again in float64 (ranked in float32 they were an arbitrary order of
    # -inf: another candidate set, log-sum-exp -5e79 for -1.25e79), and its entries go in
    # among the other rows', as a float64 block would have them
    D = 2
    A = [np.stack([np.eye(D) * 1e-3, np.eye(D) * 2e-3, np.eye(D) * 4e-3]),
         np.stack([np.eye(D), np.eye(D) * 1.5])]
    b = [np.zeros((3, D)), np.array([[0.0, 1.0], [1.0, 0.0]])]
    model = DeepGMM.from_params(A, b, np.full((3, 2), 1 / 6))
    rng = np.random.default_rng(1)
    X = rng.normal(scale=1e-2, size=(8, D))
    X[3] = [3e37, 0.0]
    paths = np.zeros((8, 2), dtype=np.intp)
    table = model._path_table()
    s64, l64, b64, _ = truncated_stats(X, table, paths, 2, 2, floor=0.0)
    s32, l32, b32, _ = truncated_stats(X.astype(np.float32), table, paths, 2, 2, floor=0.0)
    assert np.all(np.isfinite(l32)) and np.isfinite(l32[3])
    np.testing.assert_allclose(l32, l64, rtol=1e-5)
    np.testing.assert_array_equal(b32, b64)
    np.testing.assert_allclose(s32.counts, s64.counts, rtol=1e-5)
    np.testing.assert_allclose(s32.means, s64.means, rtol=1e-5)


def layer_choice_scores(logp, paths, j):
    """(n, N_j) brute-force scores of every choice of layer j, the rest of each path fixed."""
    S = logp.reshape((len(logp),) + LAYERS)
    out = np.empty((len(paths), LAYERS[j]))
    for i, a in enumerate(paths):
        index = list(a)
        index[j] = slice(None)
        out[i] = S[(i, *index)]
    return out


def test_ranking_lists_each_wide_layers_choices_best_first_own_first(problem):
    model, X, logp, anchors = problem
    keep = 2
    *_, ranked = _estep.truncated_candidates(model._path_table(), X, anchors, keep, 2)
    wide = [j for j, n_j in enumerate(LAYERS) if n_j > keep]
    assert ranked.shape == (len(X), len(wide), keep) and ranked.dtype == np.uint16
    for r, j in enumerate(wide):
        s = layer_choice_scores(logp, anchors, j)
        s[np.arange(len(X)), anchors[:, j]] = np.inf
        np.testing.assert_array_equal(ranked[:, r], np.argsort(-s, axis=1, kind="stable")[:, :keep])


def test_reused_rankings_give_the_kept_choices_with_the_rows_own(problem):
    """A second E-step reusing the ranking scores the products of the kept choices (the row's
    own choice in place of the worst where its path moved outside them), and its statistics
    are the posterior restricted to those candidates."""
    model, X, logp, anchors = problem
    keep = 2
    table = model._path_table()
    *_, ranked = _estep.truncated_candidates(table, X, anchors, keep, 2)
    rng = np.random.default_rng(9)
    moved = np.stack([rng.integers(0, n, len(X)) for n in LAYERS], axis=1)
    bases, offsets, again = _estep.truncated_candidates(table, X, moved, keep, 2, ranked=ranked)
    cand = (bases[:, :, None] + offsets).reshape(len(X), -1)
    wide = [j for j, n_j in enumerate(LAYERS) if n_j > keep]
    assert _estep.ranked_layers(LAYERS, keep) == wide
    for i in range(len(X)):
        choices = []
        for j, n_j in enumerate(LAYERS):
            if j not in wide:
                choices.append(range(n_j))
                continue
            kept = ranked[i, wide.index(j)].tolist()
            if moved[i, j] not in kept:
                kept[-1] = moved[i, j]
            choices.append(kept)
            assert again[i, wide.index(j)].tolist() == kept
        expected = {int(np.ravel_multi_index(p, LAYERS)) for p in itertools.product(*choices)}
        assert set(cand[i].tolist()) == expected
    assert np.any(again != ranked)  # some paths did move outside their kept choices
    mask = np.zeros(logp.shape, dtype=bool)
    np.put_along_axis(mask, cand, True, axis=1)
    restricted = np.where(mask, logp, -np.inf)
    bound = logsumexp(restricted, axis=1)
    stats, loglik, best, out = truncated_stats(X, table, moved, keep, 2, floor=0.0,
                                               ranked=ranked, keep_ranking=True,
                                               block_pairs=500)
    np.testing.assert_allclose(loglik, bound, rtol=1e-10)
    np.testing.assert_array_equal(best, np.argmax(restricted, axis=1))
    np.testing.assert_array_equal(out, again)
    unkept = truncated_stats(X, table, moved, keep, 2, floor=0.0, ranked=ranked,
                             block_pairs=500)
    assert unkept[3] is None  # nobody reads it
    np.testing.assert_array_equal(unkept[2], best)
    counts, means, scat = reference_stats(X, np.exp(restricted - bound[:, None]))
    np.testing.assert_allclose(stats.counts, counts, rtol=1e-9)


def search_free(X, **kw):
    """Truncated EM without the search from the hard-EM paths, ``kw`` on top."""
    start = fit(X)
    model = fit(X)
    settings = dict(truncation=2, warm_start=True, max_iter=6, tol=0, warm_passes=0,
                    n_restarts=0)
    for name, value in {**settings, **kw}.items():
        setattr(model, name, value)
    return model, start.predict(X)


def test_rerank_every_reuses_the_ranking_between_rankings(problem, monkeypatch):
    _, X, _, _ = problem
    calls = []
    rank = _estep._rank_choices
    monkeypatch.setattr(_estep, "_rank_choices", lambda *a: calls.append(1) or rank(*a))
    objectives = {}
    for every in (1, 3):
        model, paths = search_free(X, rerank_every=every)
        calls.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, init_paths=paths)
        # 7 E-steps, ranking the 2 wide layers on all of them or on the 1st, 4th and 7th
        assert len(calls) == 2 * (7 if every == 1 else 3)
        objectives[every] = [h["objective"] for h in model.history_]
        # the candidates keep each row's path, so the bound never falls
        assert np.all(np.diff(objectives[every]) >= -1e-9)
    # E-steps that rank see the same parameters only at the first
    assert objectives[3][0] == objectives[1][0]
    assert objectives[3][-1] != objectives[1][-1]


def test_resuming_a_reranking_run_ends_where_the_uninterrupted_run_does(tmp_path, problem):
    _, X, _, _ = problem
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref, paths = search_free(X, rerank_every=3)
        ref.fit(X, init_paths=paths)
        first, _ = search_free(X, rerank_every=3, max_iter=2)
        first.fit(X, init_paths=paths, checkpoint=tmp_path / "ck.npz")
        resumed = load(tmp_path / "ck.npz")
        assert resumed.rerank_every == 3 and resumed._resume_state["ranked"] is not None
        resumed.max_iter = 6
        resumed.fit(X, resume=True)
    for a, b in zip(ref.transforms_ + ref.biases_, resumed.transforms_ + resumed.biases_):
        np.testing.assert_array_equal(a, b)
    assert resumed.objective_ == ref.objective_


def test_rerank_every_validates(tmp_path, problem):
    _, X, _, _ = problem
    with pytest.raises(ValueError, match="rerank_every must be >= 1"):
        DeepGMM(LAYERS, truncation=2, rerank_every=0).fit(X)
    with pytest.raises(ValueError, match="needs truncation"):
        DeepGMM(LAYERS, rerank_every=2).fit(X)
    da = pytest.importorskip("dask.array")
    with pytest.raises(ValueError, match="locally only"):
        DeepGMM(LAYERS, truncation=2, rerank_every=2).fit(da.from_array(X, chunks=300))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model, paths = search_free(X, rerank_every=2, max_iter=1)
        model.fit(X, init_paths=paths, checkpoint=tmp_path / "ck.npz")
    with np.load(tmp_path / "ck.npz") as f:
        arrays = dict(f)
    for bad, message in ((arrays["checkpoint_ranked"][:-1], "shape"),
                         (np.full_like(arrays["checkpoint_ranked"], 9), "beyond"),
                         (arrays["checkpoint_ranked"].astype(np.float64), "do not belong")):
        np.savez(tmp_path / "bad.npz", **dict(arrays, checkpoint_ranked=bad))
        with pytest.raises(ValueError, match=message):
            load(tmp_path / "bad.npz").fit(X, resume=True)
