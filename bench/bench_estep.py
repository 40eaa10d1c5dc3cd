"""E-step: the paper's heuristic path search against the exact (full) search.

Layers (100, 5, 5) (2,500 paths) at D = 63, n = 1,000,000 rows at the top thread count in the
full run (issue 3's iteration; 200,000 rows at fewer threads, to save time). The heuristic is
timed in its steady state: warm-started from the paths of a previous heuristic E-step on the
same data (one warm pass + one random restart for two passes, the paper's protocol), so it
scores 3 x sum(N_j) = 330 candidates per row; the full search scores all P paths per row
(``exact_scores``: the argmax alone, as the full E-step). Reported per search: seconds per
E-step, path evaluations/s, GFLOP/s counting 2 D^2 flops per evaluation, and the fraction of
the DGEMM peak at the same thread count (target for the heuristic: >= 50%). The pure-numpy
heuristic of ``numpy_dgmm`` (grouped GEMMs) is timed on the same rows as the reference, on a
subset when n is large; the full search too (its seconds are scaled to n, it is linear in n).
The three are timed round-robin (``measure_interleaved``).
"""
import numpy as np

from common import measure, measure_interleaved, model_data, random_model, row, threads

NAME = "estep"


def run(ctx):
    from dgmmcore import _estep

    D = ctx.pick(16, 63, 63)
    layers = ctx.pick((6, 3, 2), (100, 5, 5), (100, 5, 5))
    n = ctx.pick(3_000, 20_000, 1_000_000)
    n_lo = ctx.pick(3_000, 20_000, 200_000)      # heuristic rows below the top thread count
    n_full = ctx.pick(3_000, 4_000, 40_000)      # exact search: P evaluations per row
    n_numpy = ctx.pick(3_000, 10_000, 50_000)
    P = int(np.prod(layers))
    per_row_heur = 3 * sum(layers)
    flop = 2.0 * D * D
    model = random_model(layers, D, seed=ctx.seed)
    X = model_data(model, n, seed=ctx.seed + 3)
    table = model._path_table()
    rows = []
    t = ctx.max_threads

    # previous E-step's paths: one cold heuristic E-step (restart only)
    prev, _, _ = _estep.heuristic_estep(table, X, None, np.random.default_rng(1), t, 1, 1, 2)

    from numpy_dgmm import NumpyDGMM, heuristic
    rtab = NumpyDGMM.from_params(model.transforms_, model.biases_, model.weights_)._table()
    flat_prev = np.ravel_multi_index(tuple(prev[:n_numpy].T), layers)
    Xf, Xn = X[:n_full], X[:n_numpy]
    reps = ctx.repeats if n <= 200_000 else max(1, min(ctx.repeats, 3))

    for t in ctx.threads:
        pk = ctx.peak(np.float64, t)
        n_t = n if t == ctx.max_threads else min(n, n_lo)
        Xt, prev_t = X[:n_t], prev[:n_t]

        def heur(t=t, Xt=Xt, prev_t=prev_t):
            return _estep.heuristic_estep(table, Xt, prev_t, np.random.default_rng(2), t, 1, 1, 2)

        def full(t=t):
            return _estep.exact_scores(table, Xf, t, lse=False)

        def numpy_heur(t=t):
            with threads(t):
                return heuristic(rtab, Xn, flat_prev, np.random.default_rng(2))

        # warm-up on small slices
        _estep.heuristic_estep(table, X[:2000], prev[:2000], np.random.default_rng(2), t, 1, 1, 2)
        _estep.exact_scores(table, Xf[:256], t)
        ms = measure_interleaved({"heuristic": heur, "full": full, "numpy": numpy_heur}, reps,
                                 ctx.warmup_big, {"heuristic": t, "full": t, "numpy": t})
        m, mf, mn = ms["heuristic"], ms["full"], ms["numpy"]
        evals = n_t * per_row_heur
        rate = evals / m["median"]
        switch = m["result"][2]
        rate_full = n_full * P / mf["median"]
        sec_full_n = n_t * P / rate_full
        rate_np = n_numpy * per_row_heur / mn["median"]
        rows.append(row(NAME, f"heuristic {layers} n={n_t}", f"s/E-step {t}thr", m["median"], "s",
                        ref=f"full search (n={n_full}, scaled to n)", ref_value=sec_full_n,
                        ratio=sec_full_n / m["median"], timing=m, threads=t, n=n_t, paths=P,
                        evals_per_row=per_row_heur, switch_rate=switch))
        rows.append(row(NAME, f"heuristic {layers} n={n_t}", f"eval/s {t}thr", rate, "eval/s",
                        ref="full search", ref_value=rate_full, threads=t))
        rows.append(row(NAME, f"heuristic {layers} n={n_t}", f"GFLOP/s (2D^2) {t}thr",
                        rate * flop / 1e9, "GFLOP/s", ref=f"DGEMM peak {t}thr", ref_value=pk,
                        headline=(t == ctx.max_threads),
                        target_ratio=0.5, threads=t, frac_peak_D2=rate * D * D / 1e9 / pk))
        rows.append(row(NAME, f"heuristic {layers} n={n_t}", f"GFLOP/s (D^2) {t}thr",
                        rate * D * D / 1e9, "GFLOP/s", ref=f"DGEMM peak {t}thr", ref_value=pk,
                        headline=(t == ctx.max_threads),
                        target_ratio=0.5, threads=t,
                        note="D^2 flops per evaluation: the kernel applies triangular factors"))
        rows.append(row(NAME, f"full search {layers} n={n_full}", f"s/E-step {t}thr",
                        mf["median"], "s",
                        timing=mf, threads=t, n=n_full, paths=P, evals_per_row=P,
                        seconds_at_n=sec_full_n, n_scaled=n_t))
        rows.append(row(NAME, f"full search {layers} n={n_full}", f"GFLOP/s (2D^2) {t}thr",
                        rate_full * flop / 1e9, "GFLOP/s", ref=f"DGEMM peak {t}thr", ref_value=pk,
                        threads=t, eval_per_s=rate_full))
        rows.append(row(NAME, f"heuristic {layers}", f"dgmmcore vs numpy eval/s {t}thr", rate,
                        "eval/s", ref=f"numpy (n={n_numpy})", ref_value=rate_np, threads=t,
                        numpy_timing={k: v for k, v in mn.items() if k != "result"}))
        ctx.log(f"{t}thr heuristic {m['median']:.2f}s ({rate / 1e6:.2f} M eval/s, "
                f"{rate * flop / 1e9 / pk:.1%} of peak, switch {switch:.1%}); full "
                f"{rate_full / 1e6:.2f} M eval/s -> {sec_full_n:.1f}s at n={n_t}; numpy heuristic "
                f"{rate_np / 1e6:.2f} M eval/s")
    # the per-E-step set-up: fold every path and factor it (done once per EM iteration)
    try:
        from dgmmcore._network import PathTable
        with np.errstate(divide="ignore"):
            log_w = np.log(model.weights_)
        mt = measure(lambda: PathTable(model.transforms_, model.biases_, log_w),
                     max(1, min(ctx.repeats, 3)), 0, 1)
        rows.append(row(NAME, f"path table {layers}", "build seconds", mt["median"], "s",
                        timing=mt, paths=P,
                        note="fold + factor all paths; paid once per E-step, before the search"))
        ctx.log(f"path table build ({P} paths): {mt['median']:.2f}s")
    except ImportError:  # internal; may move
        pass
    return rows
