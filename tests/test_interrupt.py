"""Ctrl-C during a fit, checkpoints, and resuming to the same end point."""
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

import dgmmcore
from dgmmcore import ConvergenceWarning, DeepGMM, load


def data():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(0, 1, (1500, 4)), rng.normal(3, 0.5, (1500, 4))])


def test_checkpoint_resume_matches_uninterrupted_fit(tmp_path):
    X = data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = DeepGMM((3, 2, 2), max_iter=6, tol=0, random_state=3).fit(X)
        first = DeepGMM((3, 2, 2), max_iter=3, tol=0, random_state=3)
        first.fit(X, checkpoint=tmp_path / "ck.npz")
        resumed = load(tmp_path / "ck.npz")
        assert resumed.n_iter_ == 3
        resumed.max_iter = 6
        resumed.fit(X, resume=True)
    for a, b in zip(ref.transforms_ + ref.biases_, resumed.transforms_ + resumed.biases_):
        np.testing.assert_array_equal(a, b)
    assert resumed.objective_ == ref.objective_


def test_resume_needs_a_checkpoint():
    with pytest.raises(ValueError, match="checkpoint"):
        DeepGMM((2,)).fit(data(), resume=True)


CHILD = textwrap.dedent("""
    import signal, sys, warnings, numpy as np
    from dgmmcore import DeepGMM
    # Ctrl-C raises KeyboardInterrupt even when the tests run as a background job, whose
    # shell starts them with SIGINT ignored (Python then keeps it ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (20000, 6)), rng.normal(3, 0.5, (20000, 6))])
    m = DeepGMM((4, 3, 3), max_iter=100000, tol=0, random_state=3, n_threads=1)
    warnings.simplefilter("ignore")
    try:
        m.fit(X, checkpoint=sys.argv[1])
    except KeyboardInterrupt:
        assert np.isfinite(m.score(X[:100]))
        m.save(sys.argv[2])
        print("INTERRUPTED", m.n_iter_, flush=True)
        sys.exit(0)
    print("FINISHED", flush=True)
""")


def test_sigint_leaves_a_usable_model_and_a_checkpoint(tmp_path):
    ck, saved = tmp_path / "ck.npz", tmp_path / "after.npz"
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(dgmmcore.__file__)))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(ck), str(saved)], env=env,
                            cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while not ck.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert ck.exists(), proc.communicate()[1]
        time.sleep(0.3)  # land the signal somewhere inside a later iteration
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()  # a child that missed the signal would otherwise fit on for hours
    assert proc.returncode == 0, err
    assert "INTERRUPTED" in out
    after = load(saved)
    done = int(out.split()[-1])
    assert done >= 1 and after.n_iter_ == done
    ckpt = load(ck)
    assert 1 <= ckpt.n_iter_ <= done
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (20000, 6)), rng.normal(3, 0.5, (20000, 6))])
    ckpt.max_iter = ckpt.n_iter_ + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ckpt.fit(X, resume=True)
    assert ckpt.n_iter_ == ckpt.max_iter and np.isfinite(ckpt.objective_)
