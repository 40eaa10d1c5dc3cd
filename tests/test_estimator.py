"""scikit-learn's estimator protocol (get_params/set_params, clone, GridSearchCV, Pipeline) and
the model selection criteria (bic, aic) with the identifiable parameter count."""
import re

import numpy as np
import pytest

from dgmmcore import DeepGMM, SymmetrizedModel
from dgmmcore._estimator import identifiable_parameters

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.validation import check_is_fitted  # noqa: E402


def random_network(layers, D, rng):
    transforms = [rng.normal(size=(n, D, D)) + 2 * np.eye(D) for n in layers]
    biases = [rng.normal(size=(n, D)) for n in layers]
    weights = rng.dirichlet(np.ones(int(np.prod(layers)))).reshape(layers)
    return transforms, biases, weights


def components(theta, layers, D):
    """The network's paths' means and covariances (upper triangles), through the library's
    own to_gmm, from the parameters flattened into theta."""
    transforms, biases, at = [], [], 0
    for n in layers:
        transforms.append(theta[at:at + n * D * D].reshape(n, D, D))
        at += n * D * D
        biases.append(theta[at:at + n * D].reshape(n, D))
        at += n * D
    weights = np.full(layers, 1.0 / np.prod(layers))
    _, means, covs = DeepGMM.from_params(transforms, biases, weights).to_gmm()
    upper = np.triu_indices(D)
    return np.concatenate([means.ravel(), covs[:, upper[0], upper[1]].ravel()])


@pytest.mark.parametrize("layers, D", [((3,), 2), ((3, 2), 2), ((2, 2, 2), 3), ((4, 3), 3),
                                       ((2, 5), 2), ((2, 2), 1), ((1, 3), 3), ((3, 1, 2), 2),
                                       ((1, 1), 2)])
def test_identifiable_parameters_is_the_rank_of_the_map_to_the_paths_gaussians(layers, D):
    # the local dimension of the set of densities: the Jacobian's rank at a generic point
    rng = np.random.default_rng(sum(layers) * 10 + D)
    transforms, biases, _ = random_network(layers, D, rng)
    theta = np.concatenate([np.concatenate([A.ravel(), b.ravel()])
                            for A, b in zip(transforms, biases)])
    h = 1e-6
    jac = np.array([(components(theta + h * e, layers, D) - components(theta - h * e, layers, D))
                    / (2 * h) for e in np.eye(theta.size)])
    s = np.linalg.svd(jac, compute_uv=False)
    rank = int(np.sum(s > 1e-7 * s[0]))
    assert identifiable_parameters(layers, D) == rank
    assert rank < theta.size  # the raw count overstates it for every network here


def test_bic_and_aic_of_one_layer_match_scikit_learns_gmm():
    rng = np.random.default_rng(0)
    transforms, biases, _ = random_network((4,), 3, rng)
    weights = rng.dirichlet(np.ones(4))
    model = DeepGMM.from_params(transforms, biases, weights, n_threads=1)
    w, means, covs = model.to_gmm()
    gmm = GaussianMixture(4, covariance_type="full")
    gmm.weights_, gmm.means_, gmm.covariances_ = w, means, covs
    gmm.precisions_cholesky_ = np.linalg.cholesky(np.linalg.inv(covs))
    X = model.sample(700, random_state=1)[0]
    assert model.n_parameters(identifiable=True) == gmm._n_parameters()
    assert model.bic(X) == pytest.approx(gmm.bic(X), rel=1e-10)
    assert model.aic(X) == pytest.approx(gmm.aic(X), rel=1e-10)


def test_bic_is_minus_twice_the_log_likelihood_plus_the_penalty():
    rng = np.random.default_rng(2)
    model = DeepGMM.from_params(*random_network((3, 2), 2, rng), n_threads=1)
    X = model.sample(500, random_state=3)[0]
    k = model.n_parameters(identifiable=True)
    assert k == identifiable_parameters((3, 2), 2) + 5  # a joint prior over 6 paths
    assert k < model.n_parameters()
    total = model.score_samples(X).sum()
    assert model.bic(X) == pytest.approx(-2 * total + k * np.log(500), rel=1e-12)
    assert model.aic(X) == pytest.approx(-2 * total + 2 * k, rel=1e-12)
    sym = SymmetrizedModel(DeepGMM.from_params(*random_network((2,), 4, rng), n_threads=1),
                           ("identity", "lr"))
    X = rng.normal(size=(200, 4))
    assert sym.bic(X) == pytest.approx(-2 * sym.score_samples(X).sum()
                                       + sym.n_parameters(True) * np.log(200), rel=1e-12)


def well_separated_mixture(n, seed):
    """Rows of three 2-d Gaussians 12 standard deviations apart."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [12.0, 0.0], [0.0, 12.0]])
    return centres[rng.integers(3, size=n)] + rng.normal(size=(n, 2))


def test_bic_picks_the_true_number_of_components():
    X = well_separated_mixture(3000, 4)
    bics = {n: DeepGMM((n,), n_init=3, random_state=0, n_threads=1).fit(X).bic(X)
            for n in (1, 2, 3, 6, 10)}
    assert min(bics, key=bics.get) == 3


def test_clone_and_grid_search_choose_layers_on_held_out_likelihood():
    X = well_separated_mixture(1500, 5)
    base = DeepGMM((1,), n_init=2, random_state=0, n_threads=1, max_iter=30)
    copy = clone(base)
    assert copy is not base and copy.get_params() == base.get_params()
    search = GridSearchCV(base, {"layers": [(1,), (2,), (3,)]}, cv=3).fit(X)
    assert search.best_params_ == {"layers": (3,)}
    assert not hasattr(base, "transforms_")  # the search fitted clones
    # score takes scikit-learn's y=None: a pipeline scores through it
    pipe = make_pipeline(StandardScaler(), DeepGMM((3,), random_state=0, n_threads=1))
    assert np.isfinite(pipe.fit(X).score(X))


@pytest.mark.filterwarnings("ignore:EM did not converge")
def test_a_symmetrized_model_trains_inside_a_pipeline():
    # a Pipeline calls fit(X, None): y must be the second argument, the rounds a keyword
    from sklearn.preprocessing import FunctionTransformer
    X = np.random.default_rng(4).normal(size=(300, 8))  # 3x3 patches, last value dropped

    def start():
        return SymmetrizedModel(DeepGMM((2,), max_iter=3, random_state=0, n_threads=1),
                                ("identity", "lr"))
    pipe = make_pipeline(FunctionTransformer(), start()).fit(X)
    alone = start().fit(X, n_rounds=10)
    assert pipe.score(X) == pytest.approx(alone.score(X), abs=1e-12)
    np.testing.assert_array_equal(pipe.predict(X), alone.predict(X))


def test_set_params_sets_validates_and_nests():
    model = DeepGMM((3,), n_threads=1)
    assert model.set_params(max_iter=7, layers=(4, 2)) is model
    assert (model.max_iter, model.layers) == (7, (4, 2))
    with pytest.raises(ValueError, match="invalid parameter 'max_iters' for DeepGMM"):
        model.set_params(max_iters=3)
    with pytest.raises(ValueError, match="max_iter"):  # checked by fit, as the constructor's
        model.set_params(max_iter=-1).fit(np.random.default_rng(0).normal(size=(50, 2)))
    sym = SymmetrizedModel(DeepGMM((2,), n_threads=1), ("identity", "lr"))
    assert sym.get_params()["model__layers"] == (2,)
    sym.set_params(model__max_iter=9, symmetries=["rot90"])
    assert sym.model.max_iter == 9 and sym.symmetries == ("rot90",)
    with pytest.raises(ValueError, match="unknown symmetries"):
        sym.set_params(symmetries=["spin"])
    with pytest.raises(TypeError, match="model must be a DeepGMM"):
        sym.set_params(model="gmm")
    network = sym.model  # refused, nothing changed
    assert sym.symmetries == ("rot90",) and sym.get_params()["model"] is network
    with pytest.raises(ValueError, match="tol must be >= 0"):
        sym.fit(np.zeros((10, 3)), tol=-1)
    with pytest.raises(ValueError, match="tol must be finite"):
        sym.fit(np.zeros((10, 3)), tol=np.nan)
    with pytest.raises(ValueError, match="not an estimator"):
        sym.set_params(symmetries__x=1)


@pytest.mark.filterwarnings("ignore:EM did not converge")
def test_fit_and_scoring_leave_the_constructor_arguments_and_state_alone():
    # scikit-learn's conventions: fit sets only attributes ending in "_" (layers given as a
    # list stays that list), scoring changes no attribute (caches fill in place)
    X = well_separated_mixture(300, 6)
    layers = [3, 2]
    model = DeepGMM(layers, max_iter=3, random_state=0, n_threads=1)
    with pytest.raises(Exception, match="fit"):
        check_is_fitted(model)
    model.fit(X)
    check_is_fitted(model)
    assert model.layers is layers and model.get_params()["layers"] == [3, 2]
    before = dict(model.__dict__)
    model.predict(X), model.score_samples(X), model.predict_proba(X[:5]), model.bic(X)
    assert model.__dict__.keys() == before.keys()
    assert all(model.__dict__[k] is v for k, v in before.items())


def test_numbers_held_as_objects_score_as_floats():
    X = well_separated_mixture(200, 7)
    model = DeepGMM((3,), max_iter=3, random_state=0, n_threads=1).fit(X)
    as_objects = np.array(X.tolist(), dtype=object)
    np.testing.assert_array_equal(model.score_samples(as_objects), model.score_samples(X))


def test_repr_names_the_layers_and_what_differs_from_the_defaults():
    assert repr(DeepGMM()) == "DeepGMM(layers=(10, 5, 5))"
    assert (repr(DeepGMM([600, 5, 5], truncation=20, n_threads=2))
            == "DeepGMM(layers=[600, 5, 5], truncation=20, n_threads=2)")
    assert repr(DeepGMM((4,), tol=1e-3)) == "DeepGMM(layers=(4,))"
    # equal to the default but of another type: shown (fit would refuse a float max_iter)
    assert repr(DeepGMM((4,), max_iter=100.0)) == "DeepGMM(layers=(4,), max_iter=100.0)"


# Where dgmmcore departs from scikit-learn on purpose; every other check must pass.
DELIBERATE_DEPARTURES = {
    "check_estimators_unfitted": "dgmmcore.NotFittedError (a ValueError and AttributeError, "
                                 "as sklearn's) without depending on sklearn's class",
    "check_n_features_in_after_fitting": "the message says 'the model is expecting', not the "
                                         "estimator's class name",
    "check_complex_data": "complex input is a TypeError, not a ValueError",
    "check_dtype_object": "strings inside object arrays are refused, not parsed",
}


@pytest.mark.filterwarnings("ignore")  # sklearn's checks fit 5 iterations, warn on BaseEstimator
@pytest.mark.parametrize("layers", [(2,), (2, 2)])
def test_scikit_learns_estimator_checks_pass_but_for_the_deliberate_departures(layers):
    if tuple(int(v) for v in re.match(r"(\d+)\.(\d+)", sklearn.__version__).groups()) < (1, 6):
        pytest.skip("expected_failed_checks needs scikit-learn >= 1.6")
    from sklearn.utils.estimator_checks import check_estimator
    results = check_estimator(DeepGMM(layers=layers, max_iter=5, random_state=0),
                              on_fail=None, expected_failed_checks=DELIBERATE_DEPARTURES)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results
              if r["status"] == "failed"]
    assert not failed
    assert sum(r["status"] == "passed" for r in results) >= 30
