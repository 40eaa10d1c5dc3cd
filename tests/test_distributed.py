"""Distributed fits on a real LocalCluster (2 worker processes on loopback)."""
import os
import signal
import warnings

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

from dgmmcore import ConvergenceWarning, DeepGMM, _distributed  # noqa: E402
from _reference import random_params  # noqa: E402


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        host="127.0.0.1", local_directory=str(tmp_path_factory.mktemp("dask")))
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    A, b, w = random_params((3, 2, 2), 3, rng, scale=1.0, bias=3.0)
    return DeepGMM.from_params(A, b, w).sample(n, random_state=seed)[0]


def fit(X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return DeepGMM((3, 2, 2), max_iter=4, random_state=0, n_threads=1,
                       **{k: v for k, v in kw.items() if k != "client"}).fit(
            X, client=kw.get("client"))


@pytest.mark.parametrize("estep", ["full", "heuristic", "truncated"])
def test_distributed_fit_matches_local_fit(client, estep):
    X = data()
    kw = {"estep": "heuristic", "truncation": 2} if estep == "truncated" else {"estep": estep}
    local = fit(X, **kw)
    dist = fit(X, client=client, **kw)
    # the statistics are summed shard by shard there, so the M-step's L-BFGS-B sees gradients
    # that differ in the last bits, and its unconverged steps grow them: locally, rows moved by
    # 1e-15 (relative) move these O(1) parameters by 3e-8 after 4 full-search iterations, by
    # 1e-13 3e-7 (the distributed fit: 7e-7); one row of the 3,000 left out moves them by 6e-3
    for a, b in zip(local.transforms_ + local.biases_, dist.transforms_ + dist.biases_):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    assert dist.objective_ == pytest.approx(local.objective_, abs=1e-8)
    np.testing.assert_array_equal(dist._train_paths, local._train_paths)


def test_shards_stay_on_their_workers(client):
    X = data()
    ex = _distributed.DaskExecutor(X, client, 1)
    model = DeepGMM((3, 2, 2), max_iter=3, random_state=0)
    from dgmmcore._em import EMRun
    run = EMRun(model, ex, np.random.default_rng(0), 1)
    run.start(warm=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run.run()
    assert len(ex.worker_history) >= 3
    assert all(h == ex.worker_history[0] for h in ex.worker_history)
    assert len(set(ex.worker_history[0])) == 2  # both workers hold a shard
    ex.close()


def test_dask_array_input_fit_score_predict(client):
    X = data()
    dX = da.from_array(X, chunks=(700, 3))
    model = fit(dX)
    local = fit(X)
    assert model.objective_ == pytest.approx(local.objective_, abs=1e-8)
    s = model.score_samples(dX)
    assert isinstance(s, da.Array)
    np.testing.assert_allclose(s.compute(), model.score_samples(X), rtol=1e-12)
    p = model.predict(dX)
    assert isinstance(p, da.Array)
    np.testing.assert_array_equal(p.compute(), model.predict(X))
    assert model.score(dX) == pytest.approx(model.score(X), rel=1e-12)
    model.warm_start = True  # starting paths are for local fits only: clear error on Dask
    with pytest.raises(ValueError, match="init_paths: not with resume .* or on Dask"):
        model.fit(dX, init_paths=model.predict(X))


def test_killed_worker_is_recovered(client, monkeypatch):
    X = data()
    calls = {"n": 0}
    original = _distributed.DaskExecutor._estep_once

    def killing(self, *args):
        calls["n"] += 1
        if calls["n"] == 2:  # second E-step: one worker dies while it runs
            victim = self.shard_workers[0]
            pid = client.run(os.getpid, workers=[victim])[victim]
            os.kill(pid, signal.SIGKILL)
        return original(self, *args)

    monkeypatch.setattr(_distributed.DaskExecutor, "_estep_once", killing)
    model = fit(X, client=client)
    assert calls["n"] >= 3
    assert all(np.isfinite(a).all() for a in model.transforms_ + model.biases_)
    assert np.isfinite(model.score(X))
    client.wait_for_workers(2, timeout=60)


def test_no_client_for_dask_array_is_a_clear_error(tmp_path):
    """In a fresh process (this one has the fixture's client as its default)."""
    import subprocess
    import sys
    import dgmmcore
    code = ("import numpy as np, dask.array as da\n"
            "from dgmmcore import DeepGMM\n"
            "X = da.from_array(np.random.default_rng(0).standard_normal((200, 3)), chunks=100)\n"
            "try:\n    DeepGMM((2,)).fit(X)\n"
            "except ValueError as e:\n    print('REFUSED', e)\n")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(dgmmcore.__file__)))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300, cwd=tmp_path)  # not the repo root: its dgmmcore has no .so
    assert "REFUSED" in res.stdout and "no Dask client" in res.stdout, res.stdout + res.stderr


def test_a_cluster_without_workers_is_refused_after_a_wait(tmp_path, monkeypatch):
    monkeypatch.setattr(_distributed, "WORKER_WAIT_SECONDS", 0.5)
    with distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=":0",
                                  host="127.0.0.1") as cluster, distributed.Client(cluster) as c:
        with pytest.raises(RuntimeError, match=r"no workers \(waited 0.5 s"):
            _distributed.DaskExecutor(data(100), c, 1)
