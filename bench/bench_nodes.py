"""Best paths under each row's K most likely top nodes against the exact search.

The chain's continuation (``continue_network.py --start-keep K``) can start every row from the
best path under its K best nodes of the widest layer, ranked by one moment-matched Gaussian
per node (``dgmmcore._node_search``), instead of the exact best path (the pruned search of
``bench_prune``). How often that is the exact path and how much faster it is depend on the
network and the data, so this is timed on the newest published (600, 5, 5) network
(``bench/models``) and BSDS300 test patches (the embedded patches without BSDS300), float32
as the chain scores, the searches round-robin. Reported: ms per row, the ratio to the exact
search, the share of rows given their exact best path, and the seconds to build the node
Gaussians.
"""
import os

import numpy as np

from common import bsds300_available, measure_interleaved, patches, row

NAME = "nodes"
MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models",
                     "bsds300-600x5x5-30m.npz")


def run(ctx):
    from dgmmcore import _estep, load
    from dgmmcore._node_search import NodeSearch

    n = ctx.pick(300, 4_000, 40_000)
    keeps = ctx.pick((40,), (20, 40, 80), (20, 40, 80))
    model = load(MODEL)
    layers = tuple(int(k) for k in model.weights_.shape)
    source = "bsds300" if bsds300_available() else "default"
    X = np.ascontiguousarray(patches(source, "test", n, seed=ctx.seed + 7), dtype=np.float32)
    table = model._path_table()
    case = f"start paths {layers} trained, {source} n={n} float32"

    build = measure_interleaved({"build": lambda: NodeSearch(table, keeps[0])}, ctx.repeats, 0)
    build = build["build"]
    rows = [row(NAME, case, "node Gaussians build s", build["median"], "s", timing=build,
                paths=int(np.prod(layers)))]
    ctx.log(f"node Gaussians built in {build['median']:.2f} s")
    searches = {k: NodeSearch(table, k) for k in keeps}
    for t in ctx.threads:
        fns = {"exact": lambda t=t: _estep.exact_scores(table, X, t, lse=False)[1]}
        fns.update({f"K={k}": (lambda s=s, t=t: s.best_paths(X, t)[0])
                    for k, s in searches.items()})
        ms = measure_interleaved(fns, ctx.repeats, ctx.warmup_big, dict.fromkeys(fns, t))
        exact = ms["exact"]
        for k in keeps:
            m = ms[f"K={k}"]
            same = float(np.mean(m["result"] == exact["result"]))
            rows.append(row(NAME, case, f"ms/row K={k} {t}thr", 1e3 * m["median"] / n, "ms",
                            ref="exact best path (pruned)",
                            ref_value=1e3 * exact["median"] / n,
                            ratio=exact["median"] / m["median"], timing=m, threads=t, n=n,
                            keep=k, exact_share=same))
            ctx.log(f"{t}thr K={k}: {1e3 * m['median'] / n:.3f} ms/row, exact "
                    f"{1e3 * exact['median'] / n:.3f} ({exact['median'] / m['median']:.2f}x); "
                    f"exact path for {100 * same:.2f}% of rows")
    return rows
