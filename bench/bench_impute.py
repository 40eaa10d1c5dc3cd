"""Imputation: the compiled conditional kernel against batched numpy, on the same model and rows.

Layers (100, 5, 5) (2,500 paths) at D = 63 in the quick and full runs. Three missing patterns:
random 25% and random 50% of each row (every row its own pattern: a factorisation per path per
row, the expensive case) and the bottom half of the patch (one pattern shared by all rows: the
factors are shared, the per-row cost is what is left). dgmmcore's ``model.impute`` (the
``src/_conditional.pyx`` kernel, threads over paths) against ``numpy_dgmm.impute`` (np.linalg
on stacks of per-path matrices, batched products per block of rows; BLAS at the same thread
count), timed round-robin; reported: rows/s of each, the ratio, and the largest difference of
the imputed values (they compute the same posterior mean).
"""
import numpy as np

from common import measure_interleaved, model_data, random_model, row, threads

NAME = "impute"


def run(ctx):
    from numpy_dgmm import NumpyDGMM, impute

    D = ctx.pick(16, 63, 63)
    layers = ctx.pick((6, 3, 2), (100, 5, 5), (100, 5, 5))
    model = random_model(layers, D, seed=ctx.seed)
    ref_table = NumpyDGMM.from_params(model.transforms_, model.biases_, model.weights_)._table()
    rng = np.random.default_rng(ctx.seed + 11)
    cases = {
        "random 25%": (ctx.pick(20, 40, 200), lambda n: rng.random((n, D)) < 0.25),
        "random 50%": (ctx.pick(20, 40, 200), lambda n: rng.random((n, D)) < 0.5),
        "bottom half": (ctx.pick(200, 5_000, 50_000),
                        lambda n: np.repeat((np.arange(D) >= D // 2)[None], n, axis=0)),
    }
    rows = []
    for t in ctx.threads:
        model.n_threads = t
        for case, (n, make_mask) in cases.items():
            X = model_data(model, n, seed=ctx.seed + 5)
            mask = make_mask(n)
            model.impute(X[:2], mask[:2])  # warm-up: path table, thread pool

            def ours():
                return model.impute(X, mask)

            def numpy_ref():
                with threads(t):
                    return impute(ref_table, X, mask)[0]

            ms = measure_interleaved({"dgmmcore": ours, "numpy": numpy_ref}, ctx.repeats, 0,
                                     {"dgmmcore": t, "numpy": t})
            m, mn = ms["dgmmcore"], ms["numpy"]
            diff = float(np.max(np.abs(m["result"][mask] - mn["result"][mask])))
            rows.append(row(NAME, f"{case} {layers} n={n}", f"rows/s {t}thr", n / m["median"],
                            "rows/s", ref="batched numpy", ref_value=n / mn["median"],
                            timing=m, threads=t, n=n, paths=int(np.prod(layers)),
                            max_abs_diff=diff, headline=(t == ctx.max_threads)))
            ctx.log(f"{case:>12} {t} thr: {n / m['median']:10.1f} rows/s, numpy "
                    f"{n / mn['median']:10.1f} rows/s, x{mn['median'] / m['median']:.1f}, "
                    f"max |diff| {diff:.1e}")
    return rows
