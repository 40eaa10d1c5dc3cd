"""Exact best-path search: pruned by the kernel's bound against scoring every path.

The search for each row's best path (``predict``, the full E-step, the exact starts of
``continue_network.py``) skips a path for a block of rows when a bound from the trailing
``_scoring.TAIL`` coordinates shows it cannot beat the row's best so far (``_estep``'s
``PRUNE_*`` settings). How much it skips depends on the model and the data, so this is timed on
the published trained (600, 5, 5) network (``bench/models``) and BSDS300 test patches (the
embedded patches without BSDS300), float64 and float32 rows, against the same search with
pruning switched off, round-robin. Reported: seconds per row, the ratio, and whether the two
found the same paths and scores.
"""
import os

import numpy as np

from common import bsds300_available, measure_interleaved, patches, row

NAME = "prune"
MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models",
                     "bsds300-600x5x5-16m.npz")


def run(ctx):
    from dgmmcore import _estep, load

    n = ctx.pick(300, 4_000, 40_000)
    model = load(MODEL)
    layers = tuple(int(k) for k in model.weights_.shape)
    source = "bsds300" if bsds300_available() else "default"
    X64 = np.ascontiguousarray(patches(source, "test", n, seed=ctx.seed + 5))
    rows = []
    for dtype in (np.float64, np.float32):
        X = X64.astype(dtype)
        table = model._path_table().astype(dtype)
        for t in ctx.threads:
            def search(prune, t=t, X=X, table=table):
                saved = _estep.PRUNE_MIN_CANDIDATES
                _estep.PRUNE_MIN_CANDIDATES = saved if prune else np.iinfo(np.intp).max
                try:
                    return _estep.exact_scores(table, X, t, lse=False)
                finally:
                    _estep.PRUNE_MIN_CANDIDATES = saved

            ms = measure_interleaved({"pruned": lambda: search(True),
                                      "every path": lambda: search(False)},
                                     ctx.repeats, ctx.warmup_big, {"pruned": t, "every path": t})
            mp, ma = ms["pruned"], ms["every path"]
            same = bool(np.array_equal(mp["result"][1], ma["result"][1])
                        and np.array_equal(mp["result"][2], ma["result"][2]))
            case = f"exact best path {layers} trained, {source} n={n}"
            name = np.dtype(dtype).name
            rows.append(row(NAME, case, f"ms/row pruned {name} {t}thr", 1e3 * mp["median"] / n,
                            "ms", ref="every path scored", ref_value=1e3 * ma["median"] / n,
                            ratio=ma["median"] / mp["median"], timing=mp, threads=t, n=n,
                            paths=int(np.prod(layers)), dtype=name, same_result=same))
            ctx.log(f"{name} {t}thr: pruned {1e3 * mp['median'] / n:.3f} ms/row, every path "
                    f"{1e3 * ma['median'] / n:.3f} ms/row ({ma['median'] / mp['median']:.2f}x), "
                    f"same result {same}")
    return rows
