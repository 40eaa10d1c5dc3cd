"""Hard EM with the symmetry layer in place (SymmetrizedModel.fit), against brute force over
(symmetry, path) pairs with scipy densities and against the network's own EM on rows turned
by hand."""
import copy
import warnings

import numpy as np
import pytest

from dgmmcore import ConvergenceWarning, DeepGMM, NotFittedError, SymmetrizedModel
from dgmmcore import load as dgmmcore_load
from dgmmcore._symmetric_em import SymmetrySearch
from dgmmcore.symmetry import SQUARE_SYMMETRIES
from _reference import component_logpdf, random_params
from test_symmetry import by_hand

LAYERS, D, SIDE = (3, 2), 8, 3  # 3x3 patches, last pixel dropped


def network(seed=0, layers=LAYERS):
    A, b, w = random_params(layers, D, np.random.default_rng(seed))
    return DeepGMM.from_params(A, b, w, n_threads=1), (A, b, w)


def rows(model, n, seed):
    X, _ = model.sample(n, random_state=seed)
    return X + np.random.default_rng(seed + 100).normal(scale=0.3, size=X.shape)


def brute_force_pairs(X, params, symmetries):
    """Each row's best (symmetry index, flat path, score) over every pair, with scipy."""
    scores = np.stack([component_logpdf(by_hand(X, g, SIDE), *params) for g in symmetries])
    flat = scores.transpose(1, 0, 2).reshape(len(X), -1)  # (n, |G| * P)
    best = flat.argmax(axis=1)
    which, path = np.divmod(best, scores.shape[2])
    return which, path, flat[np.arange(len(X)), best]


@pytest.mark.parametrize("symmetries", [SQUARE_SYMMETRIES, ("lr", "identity", "rot90")])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_exact_search_finds_each_rows_best_symmetry_and_path(symmetries, dtype):
    model, params = network()
    X = rows(model, 300, 1)
    which, path, score = brute_force_pairs(X, params, symmetries)
    sym = SymmetrizedModel(model, symmetries)
    search = SymmetrySearch(sym.symmetries, LAYERS, "exact", len(X))
    got_which, got_path, got_score = search.run(model, X.astype(dtype), key=0, block_rows=70)
    np.testing.assert_array_equal(got_which, which)
    np.testing.assert_array_equal(got_path, path)
    tol = dict(rtol=1e-10) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(got_score, score, **tol)


def test_predict_gives_each_rows_best_path_and_symmetry():
    model, params = network(seed=5)
    X = rows(model, 200, 6)
    symmetries = ("rot90", "identity", "transpose")
    which, path, _ = brute_force_pairs(X, params, symmetries)
    got = SymmetrizedModel(model, symmetries).predict(X, block_rows=64)
    assert got.shape == (200, len(LAYERS) + 1)
    np.testing.assert_array_equal(got[:, -1], which)
    np.testing.assert_array_equal(np.ravel_multi_index(got[:, :-1].T, LAYERS), path)
    with pytest.raises(ValueError, match="features"):
        SymmetrizedModel(model).predict(X[:, :5])


def test_the_heuristic_search_keeps_warm_pairs_and_scores_what_it_chooses():
    model, params = network(seed=3)
    X = rows(model, 300, 2)
    sym = SymmetrizedModel(model)
    search = SymmetrySearch(sym.symmetries, LAYERS, "heuristic", len(X))
    # from scratch (random restarts): never above the best pair, and the score is the
    # chosen pair's own (brute force over that pair alone)
    which, path, score = search.run(model, X, key=5, block_rows=128)
    every = np.stack([component_logpdf(by_hand(X, g, SIDE), *params) for g in sym.symmetries])
    np.testing.assert_allclose(score, every[which, np.arange(len(X)), path], rtol=1e-10)
    _, _, best = brute_force_pairs(X, params, sym.symmetries)
    assert np.all(score <= best + 1e-9)
    # warm-started from each (row, g)'s best path: coordinate ascent stays there, so the
    # search returns the best pairs exactly
    search.per_symmetry[:] = every.argmax(axis=2).T
    which, path, score = search.run(model, X, key=6, block_rows=128)
    ref_which, ref_path, ref_score = brute_force_pairs(X, params, sym.symmetries)
    np.testing.assert_array_equal(which, ref_which)
    np.testing.assert_array_equal(path, ref_path)
    np.testing.assert_allclose(score, ref_score, rtol=1e-10)


def test_cold_pairs_get_their_own_restarts_and_later_fits_go_on_warm():
    from dgmmcore import _estep
    model, _ = network(seed=5, layers=(6, 3))
    X = rows(model, 400, 4)
    sym = SymmetrizedModel(model, ("identity", "ud"))
    search = SymmetrySearch(sym.symmetries, (6, 3), "heuristic", len(X),
                            cold_restarts=3)
    which, path, score = search.run(model, X, key=9, block_rows=400)
    # reference: the network's heuristic E-step from 3 random restarts on each g x
    table = model._path_table()
    each = [_estep.heuristic_estep(table, np.ascontiguousarray(by_hand(X, g, SIDE)), None,
                                   9 + k, 1, model.warm_passes, 3, model.restart_passes)[:2]
            for k, g in enumerate(sym.symmetries)]
    best = np.argmax([s for _, s in each], axis=0)
    np.testing.assert_array_equal(which, best)
    ref_paths = np.stack([np.ravel_multi_index(p.T, (6, 3)) for p, _ in each])
    np.testing.assert_array_equal(path, ref_paths[best, np.arange(len(X))])
    # two fits of one round each are one fit of two rounds: the (row, g) paths carry over
    data = symmetric_data(2000, 16)
    kwargs = dict(search="heuristic", final_search=False, cold_restarts=2)

    def start():
        net = DeepGMM((4, 2), max_iter=3, random_state=0, n_threads=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            net.fit(data)
        return SymmetrizedModel(net)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        once = start().fit(data, n_rounds=2, random_state=np.random.default_rng(1), **kwargs)
        twice, rng = start(), np.random.default_rng(1)
        twice.fit(data, n_rounds=1, random_state=rng, **kwargs)
        twice.fit(data, n_rounds=1, random_state=rng, **kwargs)
    for a, b in zip(once.model.transforms_, twice.model.transforms_):
        np.testing.assert_array_equal(a, b)


def iteration_by_hand(model, X, which, symmetries, init_paths=None):
    """A copy of ``model`` after one warm EM iteration on the rows turned by hand to their
    symmetries ``which``, seeded as a round with random_state 7 seeds it."""
    turned = np.empty_like(X)
    for k, g in enumerate(symmetries):
        turned[which == k] = by_hand(X[which == k], g, SIDE)
    rng = np.random.default_rng(7)
    rng.integers(2**62)  # the search's key: drawn first
    ref = copy.deepcopy(model)
    ref.warm_start, ref.max_iter, ref.random_state = True, 1, rng
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref.fit(turned, init_paths=init_paths, final_estep=False)
    return ref


def test_a_round_is_one_network_iteration_on_the_rows_turned_to_their_best_symmetry():
    model, params = network(seed=4)
    X = rows(model, 500, 3)
    symmetries = ("identity", "lr", "rot90", "transpose")
    sym = SymmetrizedModel(copy.deepcopy(model), symmetries)
    sym.fit(X, n_rounds=1, search="exact", final_search=False, random_state=7)
    # reference: the pairs by brute force, the rows turned by hand, the public warm start
    which, path, score = brute_force_pairs(X, params, symmetries)
    ref = iteration_by_hand(model, X, which, symmetries,
                            np.stack(np.unravel_index(path, LAYERS), axis=1))
    for got, want in zip(sym.model.transforms_ + sym.model.biases_, ref.transforms_ + ref.biases_):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sym.model.weights_, ref.weights_, rtol=1e-12)
    assert len(sym.history_) == 1
    record = sym.history_[0]
    assert record["objective"] == pytest.approx(score.mean() - np.log(4), rel=1e-12)
    assert record["symmetry_counts"] == np.bincount(which, minlength=4).tolist()
    # the network's settings are its own again afterwards
    assert (sym.model.warm_start, sym.model.max_iter, sym.model.random_state) == (
        model.warm_start, model.max_iter, model.random_state)


@pytest.mark.parametrize("estep", ["full", "soft"])
def test_a_round_of_a_full_or_soft_network_is_its_own_iteration_on_the_turned_rows(estep):
    model, params = network(seed=4)
    model.estep = estep
    X = rows(model, 400, 3)
    symmetries = ("identity", "lr", "rot90")
    sym = SymmetrizedModel(copy.deepcopy(model), symmetries)
    sym.fit(X, n_rounds=1, search="exact", random_state=7)  # search, iteration, search
    # reference: the pairs by brute force, the rows turned by hand, the network's own warm
    # E-step over all paths (no start paths: those are the heuristic's alone)
    which, _, _ = brute_force_pairs(X, params, symmetries)
    ref = iteration_by_hand(model, X, which, symmetries)
    new_params = (ref.transforms_, ref.biases_, ref.weights_)
    which, _, score = brute_force_pairs(X, new_params, symmetries)
    assert sym.history_[-1]["objective"] == pytest.approx(score.mean() - np.log(3), rel=1e-9)
    assert sym.history_[-1]["symmetry_counts"] == np.bincount(which, minlength=3).tolist()
    for got, want in zip(sym.model.transforms_ + sym.model.biases_, ref.transforms_ + ref.biases_):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert sym.model.estep == estep


def symmetric_data(n, seed, truth_seed=11):
    """Rows of a network averaged over the 8 symmetries: a network of 8 well-apart paths,
    seen through a random symmetry each (64 Gaussians)."""
    A, b, w = random_params((4, 2), D, np.random.default_rng(truth_seed), bias=3.0)
    truth = DeepGMM.from_params(A, b, w, n_threads=1)
    return SymmetrizedModel(truth).sample(n, random_state=seed)[0]


@pytest.mark.parametrize("search", ["exact", "heuristic"])
def test_the_objective_rises_and_beats_averaging_a_plain_fit(search):
    X, held_out = symmetric_data(6000, 11), symmetric_data(3000, 12)
    kwargs = dict(reg_covar=1e-6, random_state=0, n_threads=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plain = DeepGMM((4, 2), max_iter=30, **kwargs).fit(X)
        sym = SymmetrizedModel(DeepGMM((4, 2), max_iter=15, **kwargs)).fit(
            X, n_rounds=15, search=search, tol=0.0)
    objectives = [r["objective"] for r in sym.history_]
    for before, after, r in zip(objectives, objectives[1:], sym.history_):
        if r["reseeded"] == 0:  # a re-seeded node may cost a dip
            assert after >= before - 1e-6
    assert sym.objective_ == objectives[-1]
    # same network size, as many iterations: trained with the layer in place it models the
    # symmetric data better than the plain network averaged afterwards
    averaged = SymmetrizedModel(plain).score(held_out)
    assert sym.score(held_out) > averaged + 0.1


def test_deterministic_for_a_random_state_and_close_across_thread_counts():
    X = symmetric_data(3000, 13)

    def fit(seed, threads):
        net = DeepGMM((4, 2), max_iter=5, random_state=seed, n_threads=threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return SymmetrizedModel(net).fit(X, n_rounds=3, search="heuristic")

    a, b, c = fit(0, 1), fit(0, 1), fit(0, 2)
    for x, y, z in zip(a.model.transforms_, b.model.transforms_, c.model.transforms_):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_allclose(x, z, rtol=1e-6, atol=1e-8)
    assert [r["symmetry_counts"] for r in a.history_] == [r["symmetry_counts"] for r in c.history_]


def test_save_load_after_fit(tmp_path):
    X = symmetric_data(2000, 14)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sym = SymmetrizedModel(DeepGMM((3, 2), max_iter=3, random_state=0, n_threads=1),
                               ("identity", "lr")).fit(X, n_rounds=2)
    sym.save(tmp_path / "m.npz")
    back = dgmmcore_load(tmp_path / "m.npz")
    assert isinstance(back, SymmetrizedModel) and back.symmetries == ("identity", "lr")
    np.testing.assert_allclose(back.score_samples(X[:50]), sym.score_samples(X[:50]), rtol=1e-12)
    # the rounds travel with the file
    assert [r["objective"] for r in back.history_] == [r["objective"] for r in sym.history_]
    assert back.objective_ == sym.objective_


def test_the_command_line_trains_with_the_layer_and_goes_on(tmp_path, capsys):
    from dgmmcore.cli import _split_rows, main as dgmm
    X = symmetric_data(3000, 15)
    np.save(tmp_path / "rows.npy", X)
    common = ["--data", str(tmp_path / "rows.npy"), "--threads", "1", "--seed", "3"]
    assert dgmm(["fit", "--layers", "3,2", "--iters", "4", "--symmetric-rounds", "3",
                 "--symmetries", "identity,lr,rot90", "--out", str(tmp_path / "s.npz")]
                + common) == 0
    out = capsys.readouterr().out
    # the same run through the library: the command's split, network and seed
    train, test = _split_rows(X, 0.1, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        net = DeepGMM((3, 2), max_iter=4, random_state=3, n_threads=1).fit(train)
        ref = SymmetrizedModel(net, ("identity", "lr", "rot90")).fit(
            train, n_rounds=3, random_state=3)
    assert f"held-out log-likelihood {ref.score(test):.3f} nats" in out
    assert "round   2  objective" in out and "ETA" in out
    got = dgmmcore_load(tmp_path / "s.npz")
    assert got.symmetries == ("identity", "lr", "rot90")
    np.testing.assert_allclose(got.score_samples(test), ref.score_samples(test), rtol=1e-9)
    assert dgmm(["info", str(tmp_path / "s.npz")]) == 0
    assert "trained with the symmetry layer in place: 3 rounds" in capsys.readouterr().out
    # a symmetric model goes on with more rounds only
    assert dgmm(["fit", "--resume", str(tmp_path / "s.npz"), "--symmetric-rounds", "1",
                 "--out", str(tmp_path / "s2.npz")] + common) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref.fit(train, n_rounds=1, random_state=3)
    np.testing.assert_allclose(dgmmcore_load(tmp_path / "s2.npz").score_samples(test),
                               ref.score_samples(test), rtol=1e-9)
    capsys.readouterr()
    assert dgmm(["fit", "--resume", str(tmp_path / "s.npz"), "--out",
                 str(tmp_path / "s3.npz")] + common) == 2
    assert "continue it with --symmetric-rounds" in capsys.readouterr().err


def test_bad_input_is_refused():
    model, _ = network()
    X = rows(model, 100, 0)
    sym = SymmetrizedModel(model)
    with pytest.raises(ValueError, match="n_rounds"):
        sym.fit(X, n_rounds=0)
    with pytest.raises(TypeError, match="n_rounds"):
        sym.fit(X, n_rounds=1.5)
    with pytest.raises(ValueError, match="search"):
        sym.fit(X, search="greedy")
    with pytest.raises(ValueError, match="block_rows"):
        sym.fit(X, block_rows=0)
    with pytest.raises(ValueError, match="cold_restarts"):
        sym.fit(X, cold_restarts=-1)
    with pytest.raises(ValueError, match="8"):
        sym.fit(np.zeros((10, 5)))  # the network's 8 features
    with pytest.raises(ValueError, match="NaN|finite"):
        sym.fit(np.full((10, 8), np.nan))
    unfitted = SymmetrizedModel(DeepGMM((2,), max_iter=2))
    with pytest.raises(ValueError, match="square patches"):  # refused before any training
        unfitted.fit(np.random.default_rng(0).standard_normal((50, 5)))
    assert not hasattr(unfitted.model, "transforms_")
    with pytest.raises(NotFittedError):
        unfitted.score(np.zeros((2, 8)))
