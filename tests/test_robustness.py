"""Bad input at every public entry, property-based checks run in a child process (so that a
crash is caught and reported, not fatal to the test run), and concurrent use of one model."""
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse

import dgmmcore
from dgmmcore import DeepGMM
from _reference import random_params


@pytest.fixture(scope="module")
def model():
    A, b, w = random_params((3, 2), 4, np.random.default_rng(0))
    return DeepGMM.from_params(A, b, w)


BAD_X = [
    (np.zeros((3, 5)), ValueError, "features"),
    (np.zeros((2, 2, 4)), ValueError, "2-D"),
    (np.zeros((0, 4)), ValueError, r"0 sample\(s\)"),
    (np.full((2, 4), np.nan), ValueError, "NaN"),
    (np.full((2, 4), -np.inf), ValueError, "infinity"),
    (np.ones((2, 4)) * 1j, TypeError, "complex"),
    (np.array([[None] * 4], dtype=object), TypeError, "numbers"),
    (np.array([[1.0, "2", 3, 4]], dtype=object), TypeError, "numbers"),
    (scipy.sparse.csr_matrix(np.ones((2, 4))), TypeError, "sparse input is not supported"),
    ([[1, 2], [3]], ValueError, "converted"),
    (np.zeros((2, 4), dtype="datetime64[s]"), TypeError, "numbers"),
    (np.ma.masked_array(np.zeros((2, 4)), mask=np.eye(2, 4)), TypeError, "masked array"),
    (np.full((2, 4), 1e200), ValueError, "beyond 1e\\+150 in magnitude"),
    (np.array([[0.0, 0.0, 0.0, -2e150]] * 3), ValueError, "in magnitude"),
]


@pytest.mark.parametrize("X,err,msg", BAD_X)
@pytest.mark.parametrize("entry", ["score_samples", "score", "predict", "predict_proba", "fit"])
def test_bad_data_at_every_entry(model, entry, X, err, msg):
    if entry == "fit":
        target = DeepGMM.from_params(model.transforms_, model.biases_, model.weights_,
                                     warm_start=True, max_iter=1)
        call = target.fit
    else:
        call = getattr(model, entry)
    with pytest.raises(err, match=msg):
        call(X)


@pytest.mark.parametrize("n,err", [(0, ValueError), (-3, ValueError), (1.5, TypeError),
                                   ("10", TypeError), (True, TypeError)])
def test_bad_sample_sizes(model, n, err):
    with pytest.raises(err, match="n_samples"):
        model.sample(n)


def test_large_but_moderate_values_are_accepted(model):
    # squares overflow float32 (and a block's dot product in it) but not float64
    X = np.full((3, 4), 1e20, dtype=np.float32)
    assert np.all(model.score_samples(X) < 0)
    proba = model.predict_proba(np.full((2, 4), 1e140))
    assert np.all(np.isfinite(proba)) and np.allclose(proba.reshape(2, -1).sum(axis=1), 1.0)


@pytest.mark.parametrize("estep", ["heuristic", "full", "soft"])
@pytest.mark.parametrize("offset,scale", [(1e4, 1.0), (0.0, 1e-6), (0.0, 1e6)])
def test_a_fit_of_moved_or_scaled_data_is_the_fit_moved_or_scaled(estep, offset, scale):
    """Data moved by t or scaled by s give the same fit moved or scaled: every row the same
    path, every score less D log s (the density is an affine image). reg_covar=0 (the
    floor is relative): an absolute one means more at small scales, as in scikit-learn.
    With M-step moments about the origin the fits at an offset of 1e4 ended 1.4 (heuristic),
    0.15 (full) and 0.001 nats (soft) away, 0.1-1.6% of paths. Not at 1e6: there the rows themselves are rounded
    at 1e-10, and a fit moves by 0.2 nats when its rows move by 1e-10 at the origin too
    (unconverged L-BFGS-B steps, then paths that switch)."""
    import warnings
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 4)) @ rng.standard_normal((4, 4))
    X[:1000] += 3
    t = offset * (1 + np.random.default_rng(1).random(4))
    fits = []
    for Xa in (X, X * scale + t):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 8 iterations: not converged, and need not be
            m = DeepGMM((3, 2), estep=estep, max_iter=8, reg_covar=0.0, random_state=0,
                        n_threads=2).fit(Xa)
        fits.append((m.score_samples(Xa), m.predict(Xa) if estep != "soft" else None))
    (score, paths), (moved_score, moved_paths) = fits
    np.testing.assert_allclose(moved_score + X.shape[1] * np.log(scale), score, rtol=0,
                               atol=1e-5)
    if paths is not None:
        np.testing.assert_array_equal(moved_paths, paths)


def test_a_model_of_zero_dimensions_is_refused():
    with pytest.raises(ValueError, match="0 dimensions"):
        DeepGMM.from_params([np.zeros((1, 0, 0))], [np.zeros((1, 0))], np.ones(1))


def test_fit_on_fewer_rows_than_needed():
    with pytest.raises(ValueError, match="minimum of 2"):
        DeepGMM((2,)).fit([[1.0, 2.0]])


def test_integer_and_bool_data_are_converted(model):
    Xi = np.arange(8).reshape(2, 4)
    np.testing.assert_array_equal(model.score_samples(Xi), model.score_samples(Xi.astype(float)))


def test_concurrent_scoring_from_python_threads(model):
    X, _ = model.sample(5000, random_state=0)
    serial = model.score_samples(X)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: model.score_samples(X), range(8)))
    for r in results:
        np.testing.assert_array_equal(r, serial)


PROPERTY_SCRIPT = textwrap.dedent("""
    import sys, warnings
    import numpy as np
    from hypothesis import given, settings, strategies as st, HealthCheck
    sys.path.insert(0, sys.argv[1])
    from _reference import logpdf, random_params
    from dgmmcore import DeepGMM

    warnings.simplefilter("ignore")

    @st.composite
    def cases(draw):
        layers = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=3)))
        D = draw(st.integers(1, 5))
        n = draw(st.integers(1, 40))
        seed = draw(st.integers(0, 2**16))
        dtype = draw(st.sampled_from(["float64", "float32", "int64", "float16"]))
        layout = draw(st.sampled_from(["C", "F", "strided", "list"]))
        scale = draw(st.sampled_from([1e-6, 1e-2, 1.0, 1e3, 1e6]))
        return layers, D, n, seed, dtype, layout, scale

    @settings(max_examples=int(sys.argv[2]), deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(cases())
    def check(case):
        layers, D, n, seed, dtype, layout, scale = case
        rng = np.random.default_rng(seed)
        A, b, w = random_params(layers, D, rng)
        model = DeepGMM.from_params(A, b, w, n_threads=2)
        base = rng.standard_normal((2 * n, D)) * scale
        X = base.astype(dtype)
        if layout == "F":
            X = np.asfortranarray(X)[:n]
        elif layout == "strided":
            X = X[::2]
        else:
            X = X[:n]
        data = X.tolist() if layout == "list" else X
        try:
            s = model.score_samples(data)
            p = model.predict(data)
        except (ValueError, TypeError) as exc:
            # only non-finite values (float16 overflow) may be refused here
            assert "NaN or infinity" in str(exc), exc
            return
        Xf = np.asarray(X, dtype=np.float64)
        assert s.shape == (len(Xf),) and p.shape == (len(Xf), len(layers))
        assert np.all(np.isfinite(s))
        ref = logpdf(Xf, A, b, w)
        tol = 1e-4 if np.asarray(X).dtype == np.float32 else 1e-9
        assert np.allclose(s, ref, rtol=tol, atol=tol * (1 + np.abs(ref).max())), (s, ref)
        if len(Xf) > 1 and model.path_prior == "joint":
            m2 = DeepGMM(layers, max_iter=1, random_state=seed, n_threads=2)
            try:
                m2.fit(data)
            except (ValueError, TypeError) as exc:
                raise AssertionError(f"fit refused valid data: {exc}")
            for a in m2.transforms_ + m2.biases_:
                assert np.all(np.isfinite(a))
    check()
    print("PROPERTIES OK")
""")


def test_property_based_public_api_in_child_process(tmp_path):
    tests_dir = os.path.dirname(__file__)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(dgmmcore.__file__)))
    res = subprocess.run([sys.executable, "-c", PROPERTY_SCRIPT, tests_dir, "60"],
                         capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path)
    assert res.returncode == 0, (f"child exited {res.returncode}:\n{res.stdout[-3000:]}\n"
                                 f"{res.stderr[-3000:]}")
    assert "PROPERTIES OK" in res.stdout


OUT_OF_MEMORY_SCRIPT = textwrap.dedent("""
    import resource
    import numpy as np
    from dgmmcore import _scoring
    D, n = 8, 4_000_000                       # one task of n rows: a 256 MB per-thread buffer
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1, D))
    R = np.eye(D)[None].copy()
    mean = np.zeros((1, D))
    const = np.zeros(1)
    rows = np.zeros(n, dtype=np.intp)
    out_lse = np.empty(1)
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize"))
    # room for the OpenMP threads' stacks, not for the work buffers
    resource.setrlimit(resource.RLIMIT_AS, (vm + 160 * 2**20, resource.RLIM_INFINITY))
    try:
        _scoring.score_groups(X, R, mean, const, mean[:0], R[:0], mean[:0], rows,
                              np.zeros(1, np.intp),
                              np.zeros(1, np.intp), np.array([n], np.intp),
                              np.zeros((1, 1), np.intp), out_lse,
                              np.empty(0, np.intp), np.empty(0), np.empty((0, 1)), 2)
    except MemoryError as exc:
        print("RAISED", exc)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and RLIMIT_AS")
def test_kernel_without_memory_for_its_buffers_raises(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(dgmmcore.__file__)))
    # cwd away from the checkout: `python -c` would import its uncompiled dgmmcore first
    res = subprocess.run([sys.executable, "-c", OUT_OF_MEMORY_SCRIPT], capture_output=True,
                         text=True, env=env, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, f"child exited {res.returncode}:\n{res.stderr[-3000:]}"
    assert "RAISED path scoring: could not allocate" in res.stdout


def test_paths_are_named_by_what_they_hold(model, tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros(8))
    with pytest.raises(ValueError, match=r"got shape \(8,\)"):  # the file's, not a row's
        model.score_samples(str(tmp_path / "flat.npy"))
    np.save(tmp_path / "rows.npy", np.zeros((5, 4)))
    with pytest.raises(TypeError, match="impute does not read files"):
        model.impute(str(tmp_path / "rows.npy"), np.zeros((5, 4), bool))
