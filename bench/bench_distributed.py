"""Distributed fit on a local Dask cluster against the local fit, and what crosses the wire.

- Per-iteration overhead: seconds per E-step (which includes shipping parameters and reducing
  statistics) of ``fit(X, client=...)`` on a 2-worker LocalCluster (1 thread each, kernels at 1
  thread) against the same fit in-process at 1 thread; M-steps are identical (on the client).
- Communication per iteration, for a growing number of rows per shard (a simulated scale-up):
  measured as the bytes that cross the loopback interface (/proc/net/dev, every message between
  client, scheduler and the 2 workers, protocol and heartbeats included) during one distributed
  E-step, next to the pickled size of the payload (parameters out, broadcast once per worker;
  one shard's statistics back). Neither grows with n. Measured twice: with Dask's default client,
  whose scatter and gather go through the scheduler (each payload crosses the wire twice), and
  with ``Client(direct_to_workers=True)``, which talks to the workers directly.
"""
import pickle
import time
import warnings

import numpy as np

from common import bsds300_available, patches, row

NAME = "distributed"


def _fit(X, layers, iters, client=None):
    from dgmmcore import DeepGMM
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = DeepGMM(layers, max_iter=iters, tol=0, random_state=0, n_threads=1)
        t0 = time.perf_counter()
        m.fit(X, client=client)
    return m, time.perf_counter() - t0


def _wire_bytes(model, X, n_shards):
    """Pickled size of one iteration's parameters and of one shard's statistics."""
    from dgmmcore._executor import EStepConfig, build_table, estep_block
    from dgmmcore._network import invert_nodes
    from dgmmcore._suffstats import PathSums
    A, b = [np.array(a) for a in model.transforms_], [np.array(x) for x in model.biases_]
    Q, _ = invert_nodes(A, b)
    with np.errstate(divide="ignore"):
        params = (A, b, np.log(model.weights_), Q)
    shard = X[: len(X) // n_shards]
    table = build_table(params)
    sums = PathSums(table.mean64)
    total, switched, *_ = estep_block(table, shard, None, EStepConfig.of(model), 1, 0, 1, sums)
    return len(pickle.dumps(params)), len(pickle.dumps((sums.stats(), total, switched)))


def _loopback_bytes():
    """Bytes sent on the loopback interface so far (Linux), or None."""
    try:
        with open("/proc/net/dev") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name.strip() == "lo":
                    return int(rest.split()[8])
    except OSError:
        pass
    return None


def _measured_estep_bytes(model, X, client):
    """Loopback bytes of one E-step of a DaskExecutor holding X in 2 shards (after one
    warm-up E-step, so shards and first-call costs are not counted)."""
    from dgmmcore._distributed import DaskExecutor
    from dgmmcore._executor import EStepConfig
    from dgmmcore._network import invert_nodes
    A, b = [np.array(a) for a in model.transforms_], [np.array(x) for x in model.biases_]
    Q, _ = invert_nodes(A, b)
    with np.errstate(divide="ignore"):
        params = (A, b, np.log(model.weights_), Q)
    ex = DaskExecutor(X, client, 1)
    try:
        config = EStepConfig.of(model)
        ex.estep(params, config, 1)
        before = _loopback_bytes()
        ex.estep(params, config, 2)
        after = _loopback_bytes()
    finally:
        ex.close()
    return None if before is None else after - before


def run(ctx):
    try:
        import distributed
    except ImportError:
        ctx.log("dask.distributed not installed: skipped")
        return []
    layers = ctx.pick((3, 2, 2), (20, 5, 5), (100, 5, 5))
    n = ctx.pick(4000, 100_000, 1_000_000)
    iters = ctx.pick(2, 3, 3)
    source = "bsds300" if (ctx.mode == "full" and bsds300_available()) else "default"
    X = patches(source, "train", min(n, 60_000) if source == "default" else n, seed=0)
    if len(X) < n:  # the embedded set is small: tile it (timing only)
        X = np.ascontiguousarray(np.resize(X, (n, X.shape[1])))
    rows = []
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, host="127.0.0.1")
    client = distributed.Client(cluster)
    direct = distributed.Client(cluster, direct_to_workers=True, set_as_default=False)
    try:
        local, t_local = _fit(X, layers, iters)
        dist, t_dist = _fit(X, layers, iters, client)
        e_local = np.median([h["estep_seconds"] for h in local.history_[1:]])
        e_dist = np.median([h["estep_seconds"] for h in dist.history_[1:]])
        case = f"{layers} n={n} ({source})"
        rows.append(row(NAME, case, "s/E-step, 2 workers x 1 thr", e_dist, "s",
                        ref="local, 1 thr", ref_value=e_local, ratio=e_local / e_dist))
        rows.append(row(NAME, case, "s/fit, 2 workers x 1 thr", t_dist, "s",
                        ref="local, 1 thr", ref_value=t_local, ratio=t_local / t_dist))
        rows.append(row(NAME, case, "|objective dist - local|",
                        abs(dist.objective_ - local.objective_), "nats", ratio=False))
        ctx.log(case, f"E-step {e_dist:.2f}s vs local {e_local:.2f}s")
        for per_shard in ctx.pick((1000, 2000), (10_000, 50_000), (10_000, 100_000, 500_000)):
            out, back = _wire_bytes(local, X[:2 * per_shard], 2)
            measured = _measured_estep_bytes(local, X[:2 * per_shard], client)
            measured_direct = _measured_estep_bytes(local, X[:2 * per_shard], direct)
            case = f"{layers} rows/shard={per_shard}"
            rows.append(row(NAME, case, "bytes out per iteration (pickled)", out, "B",
                            ratio=False))
            rows.append(row(NAME, case, "bytes back per shard (pickled)", back, "B",
                            ratio=False))
            if measured is not None:
                rows.append(row(NAME, case, "loopback bytes per E-step (measured)", measured,
                                "B", ratio=False))
                rows.append(row(NAME, case,
                                "loopback bytes per E-step (measured, direct_to_workers)",
                                measured_direct, "B", ref="via the scheduler",
                                ref_value=measured, ratio=measured / measured_direct))
            ctx.log(f"rows/shard {per_shard}: out {out / 1e6:.2f} MB, back {back / 1e6:.2f} MB"
                    f" (pickled); measured on loopback "
                    f"{'n/a' if measured is None else f'{measured / 1e6:.2f} MB'} per E-step"
                    f"{'' if measured is None else f', {measured_direct / 1e6:.2f} MB direct'}")
    finally:
        direct.close()
        client.close()
        cluster.close()
    return rows
