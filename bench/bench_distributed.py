"""Distributed fit on a local Dask cluster against the local fit, and what crosses the wire.

- Per-iteration overhead: seconds per E-step (which includes shipping parameters and reducing
  statistics) of ``fit(X, client=...)`` on a 2-worker LocalCluster (1 thread each, kernels at 1
  thread) against the same fit in-process at 1 thread; M-steps are identical (on the client).
- Communication per iteration: the bytes of what is shipped (parameters out, broadcast once per
  worker) and of each shard's statistics coming back, counted from the pickled objects, for a
  growing number of rows per shard (a simulated scale-up): they do not grow with n.
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
    A, b = [np.array(a) for a in model.transforms_], [np.array(x) for x in model.biases_]
    Q, _ = invert_nodes(A, b)
    with np.errstate(divide="ignore"):
        params = (A, b, np.log(model.weights_), Q)
    shard = X[: len(X) // n_shards]
    stats = estep_block(build_table(params), shard, None, EStepConfig.of(model), 1, 0, 1)
    return len(pickle.dumps(params)), len(pickle.dumps(stats[:3]))


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
            rows.append(row(NAME, f"{layers} rows/shard={per_shard}", "bytes out per iteration",
                            out, "B", ratio=False))
            rows.append(row(NAME, f"{layers} rows/shard={per_shard}", "bytes back per shard",
                            back, "B", ratio=False))
            ctx.log(f"rows/shard {per_shard}: out {out / 1e6:.2f} MB, back {back / 1e6:.2f} MB")
    finally:
        client.close()
        cluster.close()
    return rows
