"""Exact density, best path, posteriors, sampling and export against brute force over paths."""
import numpy as np
import pytest

from dgmmcore import DeepGMM, NotFittedError
from _reference import component_logpdf, logpdf, path_gaussians, random_params

SHAPES = [((3,), 1), ((4,), 5), ((3, 2), 2), ((2, 3, 2), 5), ((2, 2, 2, 2), 3), ((4, 3), 16),
          ((3, 2, 2), 63)]


def make(layers, D, seed=0, **kw):
    rng = np.random.default_rng(seed)
    A, b, w = random_params(layers, D, rng)
    return DeepGMM.from_params(A, b, w, **kw), (A, b, w)


@pytest.mark.parametrize("layers,D", SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_score_samples_matches_scipy(layers, D, dtype, n_threads):
    model, params = make(layers, D, n_threads=n_threads)
    X, _ = model.sample(700, random_state=1)
    ref = logpdf(X, *params)
    got = model.score_samples(X.astype(dtype))
    assert got.dtype == np.float64 and got.shape == (700,)
    if dtype == np.float64:
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-9)
    else:
        # reference on the float32-rounded data: only the kernel's float32 arithmetic differs
        ref32 = logpdf(X.astype(np.float32).astype(np.float64), *params)
        np.testing.assert_allclose(got, ref32, rtol=2e-5, atol=2e-4 * D)
    assert model.score(X.astype(dtype)) == pytest.approx(got.mean())


@pytest.mark.parametrize("layers,D", SHAPES)
def test_predict_is_exact_argmax(layers, D):
    model, params = make(layers, D, seed=3)
    X, _ = model.sample(500, random_state=2)
    comp = component_logpdf(X, *params)
    got = np.ravel_multi_index(tuple(model.predict(X).T), layers)
    # ignore rows whose two best components are closer than rounding can decide
    top2 = np.sort(comp, axis=1)[:, -2:] if comp.shape[1] > 1 else None
    clear = np.ones(len(X), bool) if top2 is None else (top2[:, 1] - top2[:, 0] > 1e-8)
    np.testing.assert_array_equal(got[clear], comp.argmax(axis=1)[clear])
    assert model.predict(X).shape == (500, len(layers))


def test_predict_proba_matches_bruteforce():
    model, params = make((3, 2), 4, seed=5)
    X, _ = model.sample(50, random_state=0)
    comp = component_logpdf(X, *params)
    ref = np.exp(comp - comp.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    got = model.predict_proba(X)
    assert got.shape == (50, 3, 2)
    np.testing.assert_allclose(got.reshape(50, -1), ref, rtol=1e-9, atol=1e-12)


def test_to_gmm_matches_explicit_paths():
    model, params = make((2, 3, 2), 4, seed=7)
    w, m, c = model.to_gmm()
    rw, rm, rc = path_gaussians(*params)
    np.testing.assert_allclose(w, rw, rtol=1e-12)
    np.testing.assert_allclose(m, rm, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c, rc, rtol=1e-10, atol=1e-12)


def test_sample_moments_match_mixture():
    model, params = make((3, 2), 3, seed=11)
    X, paths = model.sample(200_000, random_state=0)
    w, m, c = path_gaussians(*params)
    mean = w @ m
    cov = np.einsum("p,pij->ij", w, c + np.einsum("pi,pj->pij", m, m)) - np.outer(mean, mean)
    se = np.sqrt(np.diag(cov) / len(X))
    assert np.all(np.abs(X.mean(0) - mean) < 5 * se)
    np.testing.assert_allclose(np.cov(X.T), cov, rtol=0.03, atol=0.03 * np.abs(cov).max())
    freq = np.bincount(np.ravel_multi_index(tuple(paths.T), (3, 2)), minlength=6) / len(X)
    np.testing.assert_allclose(freq, w, atol=5e-3)
    # the same seed gives the same draw
    X2, p2 = model.sample(10, random_state=5)
    X3, p3 = model.sample(10, random_state=5)
    np.testing.assert_array_equal(X2, X3)
    np.testing.assert_array_equal(p2, p3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_thread_count_does_not_change_results(dtype):
    m1, _ = make((5, 4, 3), 20, n_threads=1)
    m2, _ = make((5, 4, 3), 20, n_threads=2)
    X, _ = m1.sample(3000, random_state=0)
    X = X.astype(dtype)
    np.testing.assert_array_equal(m1.predict(X), m2.predict(X))
    np.testing.assert_array_equal(m1.score_samples(X), m2.score_samples(X))


def test_far_points_give_finite_log_density():
    model, params = make((3, 2), 5, seed=1)
    X = np.array([[1e6] * 5, [-1e8] * 5, [1e12, 0, 0, 0, 0]])
    s = model.score_samples(X)
    assert np.all(np.isfinite(s)) and np.all(s < -1e6)
    # the far-away log density is dominated by one component and equals the brute-force max
    ref = component_logpdf(X, *params).max(axis=1)
    np.testing.assert_allclose(s, ref, rtol=1e-6)
    s32 = model.score_samples(np.array([[1e30] * 5], dtype=np.float32))
    assert np.isfinite(s32).all()


def test_ties_pick_first_path():
    D = 2
    A = [np.stack([np.eye(D)] * 3)]
    b = [np.zeros((3, D))]
    model = DeepGMM.from_params(A, b, np.full(3, 1 / 3))
    assert np.all(model.predict(np.zeros((4, D))) == 0)
    np.testing.assert_allclose(model.score_samples(np.zeros((1, D))), [-np.log(2 * np.pi)])


def test_zero_weight_paths_are_skipped():
    model, params = make((2, 2), 3, seed=4)
    w = np.array([[0.5, 0.0], [0.0, 0.5]])
    model0 = DeepGMM.from_params(params[0], params[1], w)
    X, paths = model0.sample(300, random_state=0)
    assert set(map(tuple, model0.predict(X))) <= {(0, 0), (1, 1)}
    np.testing.assert_allclose(model0.score_samples(X), logpdf(X, params[0], params[1], w),
                               rtol=1e-10)


@pytest.mark.parametrize("convert", [
    np.asfortranarray, lambda X: X.tolist(), lambda X: np.repeat(X, 2, axis=0)[::2],
    lambda X: X[:, ::-1][:, ::-1], lambda X: X.astype(np.float16).astype(np.float64)])
def test_layouts_give_same_answer(convert):
    model, _ = make((3, 2), 4)
    X, _ = model.sample(50, random_state=0)
    Xc = convert(X)
    ref = model.score_samples(np.ascontiguousarray(np.asarray(Xc, dtype=np.float64)))
    np.testing.assert_array_equal(model.score_samples(Xc), ref)


def test_read_only_input():
    model, _ = make((3, 2), 4)
    X, _ = model.sample(20, random_state=0)
    X.setflags(write=False)
    assert np.isfinite(model.score_samples(X)).all()


def test_factorized_prior_from_params():
    rng = np.random.default_rng(0)
    A, b, _ = random_params((3, 2), 3, rng)
    lw = [np.array([0.2, 0.3, 0.5]), np.array([0.4, 0.6])]
    model = DeepGMM.from_params(A, b, lw)
    assert model.path_prior == "factorized"
    np.testing.assert_allclose(model.weights_, np.outer(*lw))
    X, _ = model.sample(30, random_state=0)
    np.testing.assert_allclose(model.score_samples(X), logpdf(X, A, b, np.outer(*lw)), rtol=1e-10)


def test_a_joint_prior_as_nested_lists_is_the_joint_prior():
    # for 2 layers with N_1 = 2, weights_.tolist() looks like two per-layer vectors
    rng = np.random.default_rng(1)
    A, b, _ = random_params((2, 3), 3, rng)
    joint = [[0.1, 0.2, 0.05], [0.3, 0.15, 0.2]]
    model = DeepGMM.from_params(A, b, joint)
    assert model.path_prior == "joint"
    np.testing.assert_array_equal(model.weights_, np.array(joint))
    X, _ = model.sample(30, random_state=0)
    np.testing.assert_allclose(model.score_samples(X), logpdf(X, A, b, np.array(joint)),
                               rtol=1e-10)
    # per-layer vectors stay per-layer; a list valid in neither reading names both
    assert DeepGMM.from_params(A, b, [[0.5, 0.5], [0.2, 0.3, 0.5]]).path_prior == "factorized"
    with pytest.raises(ValueError, match="as per-layer vectors.*as the joint prior"):
        DeepGMM.from_params(A, b, [[0.1, 0.2, 0.05], [0.3, 0.15, 0.1]])


def test_parameters_are_read_only():
    model, _ = make((2, 2), 3)
    with pytest.raises(ValueError):
        model.transforms_[0][0, 0, 0] = 5.0


def test_a_fitted_array_assigned_anew_is_what_the_model_scores_with():
    model, (A, b, w) = make((3, 2), 3)
    X, _ = model.sample(25, random_state=0)
    model.score_samples(X), model.to_gmm()  # caches built from the old parameters
    uniform = np.full((3, 2), 1 / 6)
    model.weights_ = uniform
    np.testing.assert_allclose(model.score_samples(X), logpdf(X, A, b, uniform), rtol=1e-10)
    A2 = [a.copy() for a in A]
    A2[1] = A2[1] * 1.5
    model.transforms_ = A2
    np.testing.assert_allclose(model.score_samples(X), logpdf(X, A2, b, uniform), rtol=1e-10)
    np.testing.assert_allclose(model.to_gmm()[0], uniform.ravel())


@pytest.mark.parametrize("bad,err,msg", [
    (np.zeros((3, 5)), ValueError, "features"),
    (np.zeros(4), ValueError, "2-D"),
    (np.zeros((0, 4)), ValueError, r"0 sample\(s\)"),
    (np.array([[np.nan, 0, 0, 0]]), ValueError, "NaN"),
    (np.array([[np.inf, 0, 0, 0]]), ValueError, "NaN or infinity"),
    (np.zeros((2, 4), dtype=complex), TypeError, "complex"),
    (np.array([["a", "b", "c", "d"]]), TypeError, "numbers"),
    ("abcd", TypeError, "string"),
])
def test_bad_input_is_refused(bad, err, msg):
    model, _ = make((3, 2), 4)
    for method in (model.score_samples, model.predict, model.score):
        with pytest.raises(err, match=msg):
            method(bad)


def test_unfitted_model_raises():
    model = DeepGMM(layers=(2, 2))
    for call in (lambda: model.score_samples(np.zeros((1, 2))), model.to_gmm,
                 lambda: model.sample(3)):
        with pytest.raises(NotFittedError, match="fit"):
            call()


@pytest.mark.parametrize("transforms,biases,weights,msg", [
    ([np.zeros((2, 3, 3))], [np.zeros((2, 3))], np.full(2, .5), "singular"),
    ([np.stack([np.eye(3)] * 2)], [np.zeros((2, 4))], np.full(2, .5), "biases"),
    ([np.stack([np.eye(3)] * 2)], [np.zeros((2, 3))], np.full(3, 1 / 3), "shape"),
    ([np.stack([np.eye(3)] * 2)], [np.zeros((2, 3))], np.array([0.7, 0.7]), "sum to 1"),
    ([np.stack([np.eye(3)] * 2)], [np.zeros((2, 3))], np.array([1.5, -0.5]), "non-negative"),
    ([np.ones((2, 3, 4))], [np.zeros((2, 3))], np.full(2, .5), "transforms"),
])
def test_from_params_validation(transforms, biases, weights, msg):
    with pytest.raises(ValueError, match=msg):
        DeepGMM.from_params(transforms, biases, weights)


def test_float32_overflow_rows_are_redone_in_float64():
    # z = R (x - mu) overflows float32 (max 3.4e38) for x ~ 1e37 and a scale-1e3 precision factor
    D = 2
    A = [np.stack([np.eye(D) * 1e-3])]
    model = DeepGMM.from_params(A, [np.zeros((1, D))], np.ones(1))
    X = np.array([[3e37, 0.0], [1.0, 1.0]], dtype=np.float32)
    s32 = model.score_samples(X)
    s64 = model.score_samples(X.astype(np.float64))
    assert np.all(np.isfinite(s32))
    np.testing.assert_allclose(s32, s64, rtol=1e-6)


def test_float32_path_posteriors_redo_overflowing_rows_in_float64():
    # the first row overflows float32 on every path (z ~ 1e40); the soft E-step and
    # predict_proba score float32 rows in float32 and must not turn it into NaN posteriors
    D = 2
    A = [np.stack([np.eye(D) * 1e-3, np.eye(D) * 2e-3]), np.stack([np.eye(D), np.eye(D) * 1.5])]
    model = DeepGMM.from_params(A, [np.zeros((2, D)), np.zeros((2, D))], np.full((2, 2), 0.25))
    X = np.array([[3e37, 0.0], [1e-3, -1e-3]])
    p32, p64 = model.predict_proba(X.astype(np.float32)), model.predict_proba(X)
    assert np.all(np.isfinite(p32))
    np.testing.assert_allclose(p32, p64, rtol=1e-5, atol=1e-7)


def test_float32_heuristic_redoes_overflowing_rows_in_float64():
    # Every path overflows float32 for the first row (z ~ 1e40); in float64 the widest path,
    # (1, 1), is the best one. Without the float64 redo float32 would keep its -inf start.
    from dgmmcore import _estep
    D = 2
    A = [np.stack([np.eye(D) * 1e-3, np.eye(D) * 2e-3]), np.stack([np.eye(D), np.eye(D) * 1.5])]
    b = [np.zeros((2, D)), np.zeros((2, D))]
    model = DeepGMM.from_params(A, b, np.full((2, 2), 0.25))
    X = np.array([[3e37, 0.0], [1e-3, -1e-3]])
    table = model._path_table()
    start = np.zeros((2, 2), dtype=np.intp)
    p64, s64, _ = _estep.heuristic_estep(table, X, start, 0, 1, 1, 0)
    p32, s32, _ = _estep.heuristic_estep(table, X.astype(np.float32), start, 0, 1, 1, 0)
    np.testing.assert_array_equal(p64[0], [1, 1])
    np.testing.assert_array_equal(p32, p64)
    assert np.all(np.isfinite(s32))
    np.testing.assert_allclose(s32, s64, rtol=1e-5)
