"""DeepGMM.fit: EM behaviour on data from known models, against scikit-learn, determinism."""
import warnings

import numpy as np
import pytest

from dgmmcore import ConvergenceWarning, DeepGMM
from dgmmcore import _estep
from dgmmcore._network import unravel_paths
from _reference import component_logpdf, random_params


def known_model(layers=(3, 2), D=3, seed=1, bias=4.0):
    rng = np.random.default_rng(seed)
    A, b, w = random_params(layers, D, rng, scale=1.0, bias=bias)
    return DeepGMM.from_params(A, b, w)


def test_soft_em_one_layer_matches_sklearn():
    from sklearn.mixture import GaussianMixture
    true = known_model((4,), D=3, seed=0, bias=2.0)
    X, _ = true.sample(3000, random_state=0)
    rng = np.random.default_rng(0)
    means0 = X[rng.choice(len(X), 4, replace=False)]
    cov0 = np.stack([np.cov(X.T)] * 4)
    w0 = np.full(4, 0.25)
    gm = GaussianMixture(4, covariance_type="full", weights_init=w0, means_init=means0,
                         precisions_init=np.linalg.inv(cov0), tol=1e-9, max_iter=1000,
                         reg_covar=1e-6).fit(X)
    model = DeepGMM.from_params([np.linalg.cholesky(cov0)], [means0], w0, estep="soft",
                                warm_start=True, max_iter=1000, tol=1e-9, reg_covar=1e-6)
    model.fit(X)
    assert model.score(X) == pytest.approx(gm.score(X), abs=1e-5)
    np.testing.assert_allclose(np.sort(model.weights_), np.sort(gm.weights_), atol=1e-4)


def test_full_search_hard_em_objective_never_decreases():
    true = known_model((3, 2), D=3, seed=2)
    X, _ = true.sample(3000, random_state=0)
    model = DeepGMM((3, 2), estep="full", max_iter=30, tol=0, random_state=0, reg_covar=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    obj = np.array([h["objective"] for h in model.history_])
    # the prior floor can cost at most ~1e-3/P per row; allow that much slack
    assert np.all(np.diff(obj) > -1e-4), np.diff(obj).min()
    assert obj[-1] > obj[0] + 0.1


@pytest.mark.parametrize("estep", ["full", "heuristic", "soft"])
def test_fit_recovers_known_model(estep):
    true = known_model((3, 2), D=3, seed=3)
    X, _ = true.sample(4000, random_state=0)
    Xt, _ = true.sample(4000, random_state=1)
    # this model's components group by their layer-2 bias (x side), so k-means clusters start
    # layer 2 (from the widest layer, 3 clusters of 6, every start ends 0.44 nats below)
    model = DeepGMM((3, 2), estep=estep, max_iter=100, n_init=4, init_layer=-1,
                    random_state=0).fit(X)
    # hard EM is biased where components overlap; a held-out gap of 0.15 nats is a good fit
    # (a single Gaussian is more than 2 nats worse here)
    assert model.score(Xt) > true.score(Xt) - 0.15
    assert np.isfinite(model.history_[-1]["objective"])


def test_heuristic_finds_full_search_path_on_converged_model():
    true = known_model((4, 3, 2), D=4, seed=4)
    X, _ = true.sample(4000, random_state=0)
    model = DeepGMM((4, 3, 2), estep="heuristic", max_iter=40, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        heuristic_paths = model.fit_predict(X)
    exact = model.predict(X)
    assert (heuristic_paths == exact).all(axis=1).mean() > 0.95
    # cold starts only: more random restarts find more of the exact paths
    table = model._path_table()
    found = [(_estep.heuristic_estep(table, X, None, np.random.default_rng(0), 1, 0, r, 3)[0]
              == exact).all(axis=1).mean() for r in (1, 6)]
    assert found[1] > found[0] and found[1] > 0.85


def test_coordinate_ascent_stops_at_a_fixed_point():
    model = DeepGMM.from_params(*random_params((4, 3, 2), 4, np.random.default_rng(5)))
    X, _ = model.sample(500, random_state=1)
    table = model._path_table()
    start = np.random.default_rng(2).integers(0, 2, (500, 3))
    # a pass by hand, as the paper describes it: each layer's best choice, the others fixed
    scores = component_logpdf(X, model.transforms_, model.biases_, model.weights_).reshape(
        500, 4, 3, 2)
    want = start.copy()
    for _ in range(20):
        for j in range(3):
            view = np.moveaxis(scores, j + 1, 1)
            index = tuple(np.delete(want, j, axis=1).T)
            want[:, j] = view[(np.arange(500), slice(None)) + index].argmax(axis=1)
    got, best = _estep.coordinate_ascent(table, X, start, 20, 1)
    np.testing.assert_array_equal(got, want)
    # a fixed point ends the passes: 2**40 of them return at once, with the same answer
    huge, huge_best = _estep.coordinate_ascent(table, X, start, 2 ** 40, 1)
    np.testing.assert_array_equal(huge, got)
    np.testing.assert_array_equal(huge_best, best)
    np.testing.assert_allclose(best, scores.reshape(500, -1)[
        np.arange(500), np.ravel_multi_index(tuple(got.T), (4, 3, 2))], rtol=1e-12)


def test_fit_then_predict_agrees_with_final_estep():
    true = known_model((3, 2), D=3, seed=5)
    X, _ = true.sample(1000, random_state=0)
    model = DeepGMM((3, 2), estep="full", max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = model.fit_predict(X)
    np.testing.assert_array_equal(labels, model.predict(X))


@pytest.mark.parametrize("estep", ["heuristic", "full"])
def test_fit_is_reproducible_and_thread_invariant(estep):
    true = known_model((3, 2, 2), D=4, seed=6)
    X, _ = true.sample(3000, random_state=0)
    fits = []
    for threads in (1, 2, 2):
        m = DeepGMM((3, 2, 2), estep=estep, max_iter=5, random_state=7, n_threads=threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            m.fit(X)
        fits.append(m)
    for other in fits[1:]:
        for a, b in zip(fits[0].transforms_ + fits[0].biases_, other.transforms_ + other.biases_):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(fits[0].weights_, other.weights_)


def test_history_and_convergence_warning():
    true = known_model((2, 2), D=2, seed=7)
    X, _ = true.sample(500, random_state=0)
    model = DeepGMM((2, 2), max_iter=2, tol=0, random_state=0)
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        model.fit(X)
    assert model.n_iter_ == 2 and not model.converged_
    assert len(model.history_) == 3
    for key in ("objective", "switch_rate", "estep_seconds", "mstep_seconds"):
        assert key in model.history_[0]
    assert 0 <= model.history_[-1]["switch_rate"] <= 1


def test_verbose_prints_iterations(capsys):
    X, _ = known_model((2, 2), D=2).sample(300, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        DeepGMM((2, 2), max_iter=2, random_state=0, verbose=1).fit(X)
    out = capsys.readouterr().out
    assert "iter    1" in out and "switch" in out and "ETA" in out


def test_eta_counts_only_this_runs_iterations(capsys):
    """A run resumed at iteration 45 that spent 10 s on 5 iterations has 2 s per iteration
    left to spend on each of the 51 remaining ones, not 10 s / 50."""
    from dgmmcore._em import _print_record
    record = {"iter": 49, "objective": 1.0, "switch_rate": 0.01, "estep_seconds": 1.5,
              "mstep_seconds": 0.5}
    _print_record(record, elapsed=10.0, max_iter=100, first_iter=45)
    assert "ETA   102.0s" in capsys.readouterr().out


def test_factorized_prior():
    X, _ = known_model((3, 2), D=3).sample(2000, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = DeepGMM((3, 2), path_prior="factorized", max_iter=10, random_state=0).fit(X)
    assert m.layer_weights_ is not None
    np.testing.assert_allclose(m.weights_, np.outer(*m.layer_weights_), rtol=1e-12)


def test_warm_start_continues():
    X, _ = known_model((3, 2), D=3).sample(2000, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = DeepGMM((3, 2), max_iter=3, random_state=0, warm_start=True).fit(X)
        first = m.history_[-1]["objective"]
        m.fit(X)
    # the second fit starts from the first one's parameters and paths: the warm pass can only
    # keep or improve every row's path, so its first objective is at least the last one
    assert m.history_[0]["objective"] >= first - 1e-9
    assert m.history_[0]["objective"] < first + 0.05


def test_warm_start_on_new_rows_begins_with_their_exact_best_paths():
    from scipy.stats import multivariate_normal
    true = known_model((4, 3, 2), D=3, seed=4, bias=2.0)
    X, _ = true.sample(3000, random_state=0)
    # brute force over the 24 paths with scipy: each row's best log pi_p + log N(x | p)
    weights, means, covs = true.to_gmm()
    best = np.max([np.log(w) + multivariate_normal(mu, S).logpdf(X)
                   for w, mu, S in zip(weights, means, covs)], axis=0)
    model = DeepGMM.from_params(true.transforms_, true.biases_, true.weights_, warm_start=True,
                                max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    assert model.history_[0]["objective"] == pytest.approx(best.mean(), abs=1e-9)
    # what it replaces: the heuristic from random starts misses the best path on many rows
    _, random_start, _ = _estep.heuristic_estep(true._path_table(), X, None, 0, 1)
    assert random_start.mean() < best.mean() - 0.01


def test_exact_first_estep_only_where_it_pays():
    from dgmmcore._em import exact_start_pays
    assert exact_start_pays((400, 5, 5), 2)      # 10,000 paths against 820 per restart
    assert not exact_start_pays((50, 10, 10, 10), 2)  # 50,000 against 160
    X, _ = known_model((3, 2), D=3).sample(500, random_state=0)
    net = (2,) * 11  # 2,048 paths against 44 per restart: random restarts
    model = DeepGMM(net, max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
        _, _, exact = _estep.exact_scores(model._path_table(), X, 1)
        model.warm_start = True
        model._train_paths = None  # as if X were new rows
        model.fit(X)
    assert model.history_[0]["objective"] < exact.mean() - 0.01


def test_empty_nodes_are_reseeded_and_parameters_stay_finite():
    # two tight clusters and far more nodes than they need
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 0.1, (300, 2)), rng.normal(5, 0.1, (300, 2))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = DeepGMM((6, 4), max_iter=10, random_state=0).fit(X)
    for a in m.transforms_ + m.biases_:
        assert np.all(np.isfinite(a))
    assert np.all(m.weights_ > 0)
    assert np.isfinite(m.score(X))


def _four_clusters_two_dead_nodes():
    """Four unit clusters at (+-6, +-6) and a GMM-4 whose nodes 0 and 1 each cover a pair of
    them while nodes 2 and 3 sit far away at a tiny weight (they get no point)."""
    rng = np.random.default_rng(0)
    centres = np.array([[-6, -6], [-6, 6], [6, -6], [6, 6]], dtype=float)
    X = np.concatenate([rng.standard_normal((1000, 2)) + m for m in centres])
    true = DeepGMM.from_params([np.stack([np.eye(2)] * 4)], [centres], np.full(4, 0.25))
    broad = np.diag([1.0, 6.0])
    start = DeepGMM.from_params([np.stack([broad] * 4)],
                                [np.array([[-6, 0], [6, 0], [100, 100], [-100, 100]], float)],
                                np.array([0.5 - 1e-4, 0.5 - 1e-4, 1e-4, 1e-4]),
                                warm_start=True, max_iter=30, random_state=0)
    return X, true, start


@pytest.mark.parametrize("grow,prior", [(False, "joint"), (True, "joint"),
                                        (True, "factorized")])
def test_reseeded_nodes_win_points_back(grow, prior):
    # an empty node is re-seeded as a split of a busy one and must get half of its prior mass:
    # at the prior floor the copy never wins a point and the network keeps a dead node
    X, true, model = _four_clusters_two_dead_nodes()
    if grow:
        model = model.deepen((2,), random_state=0)
        model.max_iter = 30
        model.path_prior = prior
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    top = model.predict(X)[:, 0]
    assert np.bincount(top, minlength=4).min() > 0.2 * len(X)
    assert model.score(X) > true.score(X) - 0.05


def test_starved_nodes_are_reseeded_too():
    # node 3 starts on two outlying, almost equal rows: fewer than D + 1 = 3 points, a
    # Gaussian held up only by reg_covar. It must be re-seeded (as a split) like an empty
    # node, not left collapsed on them while three nodes share four clusters
    X, _, start = _four_clusters_two_dead_nodes()
    outliers = np.array([[50.0, 50.0], [50.0, 50.001]])
    biases = np.array(start.biases_[0])
    biases[3] = outliers.mean(axis=0)
    model = DeepGMM.from_params(start.transforms_, [biases], start.weights_, warm_start=True,
                                max_iter=30, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(np.concatenate([X, outliers]))
    # one node per cluster (the outliers join one of them)
    assert np.bincount(model.predict(X)[:, 0], minlength=4).min() > 0.2 * len(X)


@pytest.mark.parametrize("n_rows,nodes", [(12, 6), (40, 10)])
def test_more_nodes_than_the_data_supports_still_converges(n_rows, nodes):
    # too few rows for every node to keep D + 1 = 3: the nodes that cannot be split off a
    # busy one stay as they are, and EM does not churn re-seeding them
    X = np.random.default_rng(0).standard_normal((n_rows, 2))
    m = DeepGMM((nodes,), max_iter=100, random_state=0).fit(X)
    assert m.converged_
    assert all(np.isfinite(a).all() for a in m.transforms_ + m.biases_)
    assert np.isfinite(m.score(X))


def test_degenerate_data_stays_finite():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 4))
    X[:, 2] = 3.0            # a constant pixel
    X[:, 3] = X[:, 0]        # a duplicated one
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = DeepGMM((2, 2), max_iter=5, random_state=0, reg_covar=1e-4).fit(X)
    assert all(np.isfinite(a).all() for a in m.transforms_ + m.biases_)
    assert np.isfinite(m.score_samples(X)).all()


@pytest.mark.parametrize("kwargs,err,msg", [
    ({"layers": ()}, ValueError, "at least one layer"),
    ({"layers": (2, 0)}, ValueError, "layers\\[1\\]"),
    ({"layers": (2, -1)}, ValueError, ">= 1"),
    ({"layers": (2, 1.5)}, TypeError, "integer"),
    ({"layers": "abc"}, TypeError, "integer"),
    ({"n_threads": 0}, ValueError, "n_threads"),
    ({"tol": -1.0}, ValueError, "tol"),
    ({"max_iter": -2}, ValueError, "max_iter"),
    ({"estep": "fast"}, ValueError, "estep"),
    ({"mstep": "newton"}, ValueError, "mstep"),
    ({"path_prior": "dirichlet"}, ValueError, "path_prior"),
    ({"reg_covar": float("nan")}, ValueError, "reg_covar"),
    ({"n_init": 0}, ValueError, "n_init"),
    ({"init_layer": 2}, ValueError, "init_layer=2 is not a layer"),
    ({"init_layer": -3}, ValueError, "init_layer=-3 is not a layer"),
    ({"init_layer": 0.5}, TypeError, "init_layer"),
    ({"random_state": "seed"}, TypeError, "random_state"),
])
def test_bad_hyperparameters(kwargs, err, msg):
    X = np.random.default_rng(0).standard_normal((50, 2))
    with pytest.raises(err, match=msg):
        DeepGMM(**{"layers": (2, 2), **kwargs}).fit(X)


def test_too_few_rows():
    with pytest.raises(ValueError, match="minimum of 2"):
        DeepGMM((2,)).fit(np.zeros((1, 3)))


def test_the_start_does_not_move_with_the_datas_offset():
    """k-means on the data far from the origin: the same clusters, so the same start and
    objective (its distances once lost their digits to |x|^2 at offsets of 1e7)."""
    from dgmmcore._init import kmeans
    rng = np.random.default_rng(7)
    X = np.concatenate([3 * rng.standard_normal((300, 4)) + c for c in (0, 6, -6)])
    labels = kmeans(X, 3, np.random.default_rng(0))
    starts = []
    for offset in (0.0, 1e7, 1e8):
        np.testing.assert_array_equal(kmeans(X + offset, 3, np.random.default_rng(0)), labels)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = DeepGMM((3,), estep="full", max_iter=0, random_state=0, n_threads=1)
            starts.append(model.fit(X + offset).history_[0]["objective"])
    np.testing.assert_allclose(starts, starts[0], rtol=1e-9)


@pytest.mark.parametrize("layers,init_layer", [((6, 2), None), ((2, 6), None), ((6, 2), 0),
                                               ((2, 6), -1)])
def test_the_widest_layer_starts_as_the_kmeans_clusters(layers, init_layer):
    """Six separated clusters: whichever side the 6-node layer is on, it starts (by default or
    by init_layer) as their k-means partition, so every seed finds all six (with the clusters
    put in the last layer, a (6, 2) network lost one for some seeds: 0.47 nats below the truth
    at seed 2)."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal
    centers = 10.0 * np.random.default_rng(0).standard_normal((6, 3))

    def draw(seed):
        rng = np.random.default_rng(seed)
        X = (centers[:, None] + rng.standard_normal((6, 500, 3))).reshape(-1, 3)
        return rng.permutation(X)

    X, Xt = draw(1), draw(2)
    truth = np.mean(logsumexp([multivariate_normal(m, np.eye(3)).logpdf(Xt) for m in centers],
                              axis=0)) - np.log(6)
    for seed in range(3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = DeepGMM(layers, max_iter=30, init_layer=init_layer, random_state=seed,
                            n_threads=1).fit(X)
        assert model.score(Xt) > truth - 0.1, seed


def test_deepen_keeps_the_density_at_zero_spread_and_grows_into_a_better_fit():
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal
    from _reference import path_gaussians
    true = known_model((3, 2), D=3, seed=4)
    X, _ = true.sample(3000, random_state=0)
    Xt, _ = true.sample(3000, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm = DeepGMM(3, max_iter=20, random_state=0, reg_covar=1e-5).fit(X)
    same = gmm.deepen((2, 2), spread=0.0)
    assert same.layers == (3, 2, 2) and same.warm_start and same.reg_covar == 1e-5
    ws, means, covs = path_gaussians(same.transforms_, same.biases_, same.weights_)
    ref = logsumexp([np.log(w) + multivariate_normal(mu, C).logpdf(Xt[:50])
                     for w, mu, C in zip(ws, means, covs)], axis=0)
    np.testing.assert_allclose(same.score_samples(Xt[:50]), ref, rtol=1e-10)
    np.testing.assert_allclose(same.score_samples(Xt), gmm.score_samples(Xt), rtol=1e-10)
    grown = gmm.deepen((2,), random_state=0)
    assert np.array_equal(grown.transforms_[1], gmm.deepen((2,), random_state=0).transforms_[1])
    assert not np.allclose(grown.transforms_[1][0], grown.transforms_[1][1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grown.max_iter = 30
        grown.fit(X)
    # the data come from a (3, 2) network: growing the 3-component GMM and continuing EM fits
    # them better (held out)
    assert grown.score(Xt) > gmm.score(Xt) + 0.05
    # fit starts from the grown parameters: at spread 0 each component has two identical
    # copies of half its weight, so the first best-path objective is the GMM's less log 2
    same.max_iter = 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        same.fit(X)
    np.testing.assert_allclose(same.history_[0]["objective"],
                               gmm.history_[-1]["objective"] - np.log(4), rtol=1e-9)


def test_deepen_factorized_prior_and_bad_arguments():
    X, _ = known_model((3, 2), D=3).sample(1000, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = DeepGMM((3, 2), path_prior="factorized", max_iter=5, random_state=0).fit(X)
    d = m.deepen((4,), spread=0.0)
    assert len(d.layer_weights_) == 3
    np.testing.assert_allclose(d.layer_weights_[2], np.full(4, 0.25))
    np.testing.assert_allclose(d.score_samples(X[:20]), m.score_samples(X[:20]), rtol=1e-10)
    with pytest.raises(ValueError, match="layers"):
        m.deepen(())
    with pytest.raises(ValueError, match="spread"):
        m.deepen((2,), spread=-1.0)
    with pytest.raises(Exception, match="fit"):
        DeepGMM((3,)).deepen((2,))


@pytest.mark.parametrize("prior", ["joint", "factorized"])
def test_widen_splits_the_heaviest_nodes_keeping_the_density_and_the_paths(prior):
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal
    from _reference import path_gaussians
    X, _ = known_model((3, 2), D=3, seed=4).sample(2000, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = DeepGMM((3, 2), path_prior=prior, max_iter=10, random_state=0,
                    reg_covar=1e-5).fit(X)
    w = m.widen((5, 3), jitter=0.0)
    assert w.layers == (5, 3) and w.warm_start and w.reg_covar == 1e-5
    assert w.path_prior == prior and np.isclose(w.weights_.sum(), 1.0)
    # each added node copies the node of its layer with the most prior mass left
    for j, old in enumerate(m.layers):
        mass = m.weights_.sum(axis=1 - j).copy()
        for i in range(old, w.layers[j]):
            src = int(np.argmax(mass))
            mass[src] /= 2
            np.testing.assert_allclose(w.transforms_[j][i], m.transforms_[j][src], atol=1e-12)
            np.testing.assert_allclose(w.biases_[j][i], m.biases_[j][src], atol=1e-12)
    # at jitter 0 the wider network is the same density (scipy over all 15 paths)
    ws, means, covs = path_gaussians(w.transforms_, w.biases_, w.weights_)
    ref = logsumexp([np.log(p) + multivariate_normal(mu, C).logpdf(X[:50])
                     for p, mu, C in zip(ws, means, covs)], axis=0)
    np.testing.assert_allclose(ref, m.score_samples(X[:50]), rtol=1e-10)
    np.testing.assert_allclose(w.score_samples(X[:50]), ref, rtol=1e-10)
    # the rows keep their paths, renumbered for the wider prior array
    from dgmmcore._network import unravel_paths
    np.testing.assert_array_equal(unravel_paths(w._train_paths, (5, 3)),
                                  unravel_paths(m._train_paths, (3, 2)))


def test_widen_splits_a_network_far_from_the_origin_as_at_it():
    """The copies perturb their source's output, which does not move with the data: a network
    moved by t (the biases next to x) widens to the widened network moved, so its copies
    share their sources' points. Perturbing the map alone moved a copy's output by jitter *
    Q t: 5e4 at t = 1e6, a node no row would ever reach."""
    rng = np.random.default_rng(3)
    A, b, w = random_params((3, 2), 4, rng)
    X = DeepGMM.from_params(A, b, w).sample(300, random_state=0)[0]
    t = 1e6 * (1 + rng.random(4))
    moved = [b[0], b[1] + t]  # x = A_2 h + b_2: layer 2 acts on the data
    wide = DeepGMM.from_params(A, b, w).widen((5, 3), random_state=7)
    wide_moved = DeepGMM.from_params(A, moved, w).widen((5, 3), random_state=7)
    np.testing.assert_allclose(wide_moved.score_samples(X + t), wide.score_samples(X),
                               rtol=0, atol=1e-6)


def test_deepen_a_model_far_from_the_origin_as_at_it():
    """The new nodes keep the model's mean: a GMM moved by t deepens to the deepened GMM
    moved. With b = 0 they moved the mean by G t (spread 0.1, t = 1e6: 5e4)."""
    rng = np.random.default_rng(5)
    A, b, w = random_params((3,), 4, rng)
    X = DeepGMM.from_params(A, b, w).sample(300, random_state=0)[0]
    t = 1e6 * (1 + rng.random(4))
    deep = DeepGMM.from_params(A, b, w).deepen((2, 2), random_state=7)
    deep_moved = DeepGMM.from_params(A, [b[0] + t], w).deepen((2, 2), random_state=7)
    np.testing.assert_allclose(deep_moved.score_samples(X + t), deep.score_samples(X),
                               rtol=0, atol=1e-6)


def test_widen_starts_from_the_carried_paths_and_fits_more_clusters():
    # 4 clusters fitted with 2 components, then widened to 4 and continued
    rng = np.random.default_rng(0)
    centers = 6.0 * np.eye(4)[:, :3]
    X = np.concatenate([rng.normal(size=(500, 3)) + c for c in centers])
    Xt = np.concatenate([rng.normal(size=(500, 3)) + c for c in centers])
    from scipy.stats import multivariate_normal
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm = DeepGMM(2, max_iter=30, random_state=0, n_threads=1).fit(X)
        same = gmm.widen(3, jitter=0.0)
        best = np.max([np.log(p) + multivariate_normal(b, A @ A.T).logpdf(X) for p, A, b
                       in zip(same.weights_, same.transforms_[0], same.biases_[0])], axis=0)
        same.max_iter = 1
        same.fit(X)
        # in 3 dims the default jitter's copies barely differ (hard EM stops with them
        # still together); a larger one splits them
        wide = gmm.widen(4, jitter=1.0, random_state=0)
        wide.max_iter = 30
        wide.fit(X)
    # the first E-step starts from the GMM's paths (a switch rate needs previous paths) and
    # finds every row's best component of the wider mixture (scipy)
    first = same.history_[0]
    assert np.isfinite(first["switch_rate"]) and first["switch_rate"] < 0.05
    np.testing.assert_allclose(first["objective"], best.mean(), rtol=1e-9)
    assert wide.score(Xt) > gmm.score(Xt) + 0.3


def test_widen_bad_arguments():
    X, _ = known_model((3, 2), D=3).sample(500, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m = DeepGMM((3, 2), max_iter=3, random_state=0).fit(X)
    with pytest.raises(ValueError, match="at least as wide"):
        m.widen((2, 2))
    with pytest.raises(ValueError, match="2 layers"):
        m.widen((3, 2, 2))
    with pytest.raises(ValueError, match="jitter"):
        m.widen((4, 2), jitter=-0.1)
    with pytest.raises(Exception, match="fit"):
        DeepGMM((3,)).widen((4,))


@pytest.mark.parametrize("estep", ["heuristic", "full", "soft"])
def test_float32_fit_follows_the_float64_fit(estep):
    # float32 data are scored in float32 (the statistics stay float64): on a well-separated
    # model the same paths win (soft EM: the responsibilities agree), so the fits agree to
    # float32 scoring accuracy.
    true = known_model((3, 2), D=4, seed=6)
    X, _ = true.sample(3000, random_state=0)
    X32 = X.astype(np.float32)
    fits = []
    for data in (X32.astype(np.float64), X32):
        model = DeepGMM((3, 2), estep=estep, max_iter=15, tol=0, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits.append(model.fit(data))
    f64, f32 = fits
    np.testing.assert_array_equal(f32.predict(X), f64.predict(X))
    assert f32.objective_ == pytest.approx(f64.objective_, abs=1e-5)
    # soft EM carries every responsibility's rounding into the parameters, and 15 iterations
    # short of convergence drift along the slow directions: 2.5e-4 nats at most here
    tol = 1e-4 if estep == "soft" else 1e-5
    np.testing.assert_allclose(f32.score_samples(X), f64.score_samples(X), rtol=tol, atol=tol)


def test_init_paths_are_where_the_first_estep_starts():
    from scipy.stats import multivariate_normal
    true = known_model((4, 3), D=3, seed=5, bias=2.0)
    X_old, _ = true.sample(1500, random_state=0)
    X_new, _ = true.sample(1500, random_state=1)
    X = np.concatenate([X_old, X_new])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = DeepGMM((4, 3), max_iter=5, random_state=0, warm_start=True).fit(X_old)
    # brute force over the 12 paths with scipy: logp[i, k, row]
    weights, means, covs = fitted.to_gmm()
    logp = np.array([np.log(w) + multivariate_normal(mu, S).logpdf(X)
                     for w, mu, S in zip(weights, means, covs)]).reshape(4, 3, -1)
    rows = np.arange(len(X))
    best = logp.reshape(12, -1).max(0)

    def one_pass(k):  # the paper's coordinate ascent, one pass: layer 1, then layer 2
        i = logp[:, k, rows].argmax(0)
        k = logp[i, :, rows].argmax(1)
        return logp[i, k, rows]

    # the old rows at their best paths, the new ones at their worst
    flat_best, flat_worst = logp.reshape(12, -1).argmax(0), logp.reshape(12, -1).argmin(0)
    given = unravel_paths(np.where(rows < 1500, flat_best, flat_worst), (4, 3))
    firsts = {}
    for restarts in (0, 1):
        model = DeepGMM.from_params(fitted.transforms_, fitted.biases_, fitted.weights_,
                                    warm_start=True, max_iter=1, random_state=0,
                                    n_restarts=restarts)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, init_paths=given)
        firsts[restarts] = model.history_[0]
    # without random restarts the first E-step is one coordinate-ascent pass from the given
    # paths, which leaves some new rows short of their best path (the start mattered)
    expected = one_pass(given[:, 1])
    assert firsts[0]["objective"] == pytest.approx(expected.mean(), abs=1e-9)
    assert expected.mean() < best.mean() - 1e-3
    # with the restart the rows end at least there, at most at their best (the old rows stay)
    assert expected.mean() - 1e-9 <= firsts[1]["objective"] <= best.mean() + 1e-9
    assert np.isfinite(firsts[1]["switch_rate"]) and firsts[1]["switch_rate"] <= 0.5


def test_init_paths_bad_arguments(tmp_path):
    X, _ = known_model((3, 2), D=3).sample(400, random_state=0)
    ok = np.zeros((400, 2), dtype=int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.raises(ValueError, match="warm_start"):
            DeepGMM((3, 2), max_iter=1).fit(X, init_paths=ok)
        m = DeepGMM((3, 2), max_iter=1, random_state=0, warm_start=True)
        m.fit(X, checkpoint=tmp_path / "run.npz")
    with pytest.raises(ValueError, match=r"shape \(399, 2\)"):
        m.fit(X, init_paths=ok[1:])
    with pytest.raises(ValueError, match=r"\[0, N_j\)"):
        m.fit(X, init_paths=ok + np.array([0, 2]))
    with pytest.raises(ValueError, match=r"\[0, N_j\)"):
        m.fit(X, init_paths=ok - 1)
    with pytest.raises(TypeError, match="integer"):
        m.fit(X, init_paths=ok.astype(float))
    m.estep = "full"
    with pytest.raises(ValueError, match="only the heuristic"):
        m.fit(X, init_paths=ok)
    m.estep = "heuristic"
    from dgmmcore import load
    with pytest.raises(ValueError, match="not with resume"):
        load(tmp_path / "run.npz").fit(X, init_paths=ok, resume=True)
