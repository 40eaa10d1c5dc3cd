"""Build the kernels once with Cython bounds checks on and run them on awkward shapes in a
child process: an out-of-bounds index there raises (reported through sys.unraisablehook from
the nogil kernels) instead of silently reading memory."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    failures = []
    sys.unraisablehook = lambda info: failures.append(repr(info.exc_value))
    import dgmmcore
    assert dgmmcore.__file__.startswith(sys.argv[1]), dgmmcore.__file__
    from dgmmcore import DeepGMM, _estep, _stats
    from dgmmcore._suffstats import hard_stats, soft_stats
    rng = np.random.default_rng(0)
    for layers, D, n in [((1,), 1, 1), ((3,), 2, 7), ((2, 3), 5, 300), ((2, 2, 2), 63, 513)]:
        A = [np.eye(D) + 0.1 * rng.standard_normal((k, D, D)) for k in layers]
        b = [rng.standard_normal((k, D)) for k in layers]
        w = rng.random(layers); w /= w.sum()
        m = DeepGMM.from_params(A, b, w, n_threads=2)
        X, _ = m.sample(n, random_state=1)
        for dt in (np.float64, np.float32):
            m.score_samples(X.astype(dt)); m.predict(X.astype(dt))
        m.predict_proba(X[:5])
        t = m._path_table()
        _estep.heuristic_estep(t, X, None, rng, 2, 0, 1, 2)
        P = int(np.prod(layers))
        hard_stats(X, rng.integers(0, P, n), P, np.zeros((P, D)), 2, seg=3)
        soft_stats(X, t, 2, chunk=5, block=7, floor=0.0)
        for missing in (0, 1, D - 1):
            mask = np.zeros((min(n, 17), D), dtype=bool)
            mask[:, :missing] = True
            m.impute(X[:17], mask)
        mask = rng.random((min(n, 9), D)) < 0.5
        m.impute(X[:9], mask, return_loglik=True)
        G = 3
        out = np.empty((D * (D + 1), D * (D + 1)))
        _stats.kron_assemble(rng.random((G, D, D)), rng.random((G, D + 1, D + 1)), np.ones(G),
                             out, 2)
    m = DeepGMM((2, 2), max_iter=2, random_state=0).fit(rng.standard_normal((200, 3)))
    if failures:
        print("UNRAISABLE", failures[:3]); sys.exit(3)
    print("BOUNDS OK")
""")


@pytest.mark.skipif(not os.path.isdir(os.path.join(ROOT, "src")), reason="needs the source tree")
def test_kernels_under_bounds_checks(tmp_path):
    pytest.importorskip("Cython")
    build = tmp_path / "build"
    build.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(os.path.join(ROOT, name), build)
    shutil.copytree(os.path.join(ROOT, "src"), build / "src",
                    ignore=shutil.ignore_patterns("*.c", "*.so"))
    shutil.copytree(os.path.join(ROOT, "dgmmcore"), build / "dgmmcore",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    env = dict(os.environ, DGMMCORE_DEBUG_BUILD="1")
    res = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=build,
                         env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    env = dict(os.environ, PYTHONPATH=str(build))
    res = subprocess.run([sys.executable, "-c", CHILD, str(build)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0 and "BOUNDS OK" in res.stdout, (
        res.stdout[-3000:] + res.stderr[-3000:])
