"""Exact best-path search: pruned by the kernel's bound against scoring every path.

The search for each row's best path (``predict``, the full E-step, the exact starts of
``continue_network.py``) skips a path for a block of rows when a bound from ``_scoring.TAIL``
coordinates of the row shows it cannot beat the row's best so far (``_estep``'s ``PRUNE_*``
settings): in the directions of largest variance of the table's mixture (``_bound``, built
once per table for big searches) or on the last coordinates. How much it skips depends on the
model and the data, so this is timed on the published trained (600, 5, 5) network
(``bench/models``) and BSDS300 test patches (the embedded patches without BSDS300), float64
and float32 rows, both bounds against the same search with pruning switched off,
round-robin. Reported: seconds per row, the ratios, whether all three found the same paths
and scores, and the seconds to build the mixture's bound for a table.
"""
import os

import numpy as np

from common import bsds300_available, measure_interleaved, patches, row

NAME = "prune"
MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models",
                     "bsds300-600x5x5-16m.npz")


def run(ctx):
    from dgmmcore import _estep, load
    from dgmmcore._network import PathTable

    n = ctx.pick(300, 4_000, 40_000)
    model = load(MODEL)
    layers = tuple(int(k) for k in model.weights_.shape)
    source = "bsds300" if bsds300_available() else "default"
    X64 = np.ascontiguousarray(patches(source, "test", n, seed=ctx.seed + 5))
    with np.errstate(divide="ignore"):
        log_w = np.log(model.weights_)
    case = f"exact best path {layers} trained, {source} n={n}"
    rows = []
    for dtype in (np.float64, np.float32):
        X = X64.astype(dtype)
        name = np.dtype(dtype).name
        # a table per bound: a table keeps the mixture's bound once it is built
        tables = {kind: PathTable(model.transforms_, model.biases_, log_w, dtype=dtype)
                  for kind in ("mixture", "trailing", "none")}
        fresh = PathTable(model.transforms_, model.biases_, log_w, dtype=dtype)

        def build():
            fresh._tails = {}  # the table's cached bounds: built anew each time
            return fresh.tail_bound(_estep._scoring.TAIL, max(ctx.threads))

        build = measure_interleaved({"build": build}, ctx.repeats, 0)["build"]
        tables["mixture"]._tails = {("mixture", _estep._scoring.TAIL): build["result"]}
        rows.append(row(NAME, case, f"mixture bound build s {name} {max(ctx.threads)}thr",
                        build["median"], "s", timing=build, threads=max(ctx.threads),
                        paths=int(np.prod(layers)), dtype=name))
        ctx.log(f"{name}: the mixture's bound built in {build['median']:.2f} s")
        for t in ctx.threads:
            def search(kind, t=t, X=X):
                saved = _estep.PRUNE_MIN_CANDIDATES, _estep.MIXTURE_BOUND_MIN_PAIRS
                _estep.PRUNE_MIN_CANDIDATES = (np.iinfo(np.intp).max if kind == "none"
                                               else saved[0])
                _estep.MIXTURE_BOUND_MIN_PAIRS = 0 if kind == "mixture" else np.inf
                try:
                    return _estep.exact_scores(tables[kind], X, t, lse=False)
                finally:
                    _estep.PRUNE_MIN_CANDIDATES, _estep.MIXTURE_BOUND_MIN_PAIRS = saved

            ms = measure_interleaved({kind: (lambda kind=kind: search(kind)) for kind in tables},
                                     ctx.repeats, ctx.warmup_big, dict.fromkeys(tables, t))
            every = ms["none"]
            same = all(np.array_equal(ms[k]["result"][i], every["result"][i])
                       for k in ("mixture", "trailing") for i in (1, 2))
            for kind, label in (("mixture", "pruned"), ("trailing", "pruned trailing")):
                m = ms[kind]
                rows.append(row(NAME, case, f"ms/row {label} {name} {t}thr",
                                1e3 * m["median"] / n, "ms", ref="every path scored",
                                ref_value=1e3 * every["median"] / n,
                                ratio=every["median"] / m["median"], timing=m, threads=t, n=n,
                                paths=int(np.prod(layers)), dtype=name, same_result=same,
                                bound=kind))
            mix, trail = ms["mixture"]["median"], ms["trailing"]["median"]
            ctx.log(f"{name} {t}thr: pruned {1e3 * mix / n:.3f} ms/row (mixture's bound), "
                    f"{1e3 * trail / n:.3f} (last coordinates: {trail / mix:.2f}x slower), every "
                    f"path {1e3 * every['median'] / n:.3f} ms/row ({every['median'] / mix:.2f}x), "
                    f"same result {same}")
    return rows
