"""Exact scoring (``score_samples``: log-sum-exp over every path) at D = 63.

Throughput in path evaluations per second (rows x paths / s) for several path counts, float64
and float32, 1 and 2 threads, against, in the same run:
- scikit-learn's full-covariance log-probability ``_estimate_log_gaussian_prob`` on the
  equivalent GMM (``to_gmm()``; precision Cholesky factors from ``_compute_precision_cholesky``),
  float64, same number of BLAS threads. It returns the (n, P) matrix of log N(x | p) only: no
  prior, no log-sum-exp, so it does less work than we do;
- the pure-numpy dense-GEMM scorer of ``numpy_dgmm`` (chunked GEMM + logsumexp), same threads;
Candidates are timed round-robin (``measure_interleaved``) so that load from other processes
hits them alike. The headline also times scikit-learn at 1 thread and reports the ratio to
its better thread count (OpenBLAS threading of its small per-component GEMMs can hurt).
- the numpy GEMM peak of the same dtype and thread count: fraction of peak counting 2 D^2
  flops per path evaluation (a general D x D product) and D^2 (the triangular factor the
  kernel uses).

Headline (issue 2): layers (20, 5, 5) = 500 paths, 2 threads, n = 100,000 in the full run:
ratio to scikit-learn (target >= 4x) and float32 / float64 (target >= 1.7x).
"""
import numpy as np

from common import measure_interleaved, model_data, random_model, row, threads

NAME = "scoring"


def _sizes(ctx):
    D = ctx.pick(16, 63, 63)
    layers = ctx.pick([(4,), (4, 3, 2)],
                      [(10,), (2, 5, 5), (20, 5, 5), (40, 5, 5), (200, 5, 5)],
                      [(10,), (2, 5, 5), (20, 5, 5), (40, 5, 5), (100, 5, 5), (200, 5, 5)])
    budget = ctx.pick(20_000, 1_000_000, 6_000_000)      # path evaluations per timed call
    ref_budget = ctx.pick(20_000, 500_000, 3_000_000)     # for the (slower) references
    min_rows = ctx.pick(256, 512, 4096)
    max_rows = ctx.pick(2_000, 100_000, 500_000)
    head_layers = ctx.pick((4, 3, 2), (20, 5, 5), (20, 5, 5))
    head_n = ctx.pick(1_000, 10_000, 100_000)
    return D, layers, budget, ref_budget, min_rows, max_rows, head_layers, head_n


def _sklearn_ref():
    try:
        from sklearn.mixture._gaussian_mixture import (_compute_precision_cholesky,
                                                       _estimate_log_gaussian_prob)
        return _compute_precision_cholesky, _estimate_log_gaussian_prob
    except Exception:
        return None


def _ours(model, X, t):
    """score_samples at t threads (the model's n_threads), warmed up on a small slice."""
    def f():
        model.n_threads = t
        return model.score_samples(X)
    model.n_threads = t
    model.score_samples(X[:256])  # builds and caches the path table for this dtype
    return f


def _sklearn(sk, model, X, t):
    compute_pc, est = sk
    _, means, covs = model.to_gmm()
    pc = compute_pc(covs, "full")

    def f():
        with threads(t):
            return est(X, means, pc, "full")
    with threads(t):
        est(X[:64], means, pc, "full")
    return f


def _numpy(model, X, t):
    from numpy_dgmm import NumpyDGMM, exact
    table = NumpyDGMM.from_params(model.transforms_, model.biases_, model.weights_)._table()

    def f():
        with threads(t):
            return exact(table, X, want_best=False)
    with threads(t):
        exact(table, X[:64], want_best=False)  # warm-up
    return f


def run(ctx):
    D, layers_list, budget, ref_budget, min_rows, max_rows, head_layers, head_n = _sizes(ctx)
    sk = _sklearn_ref()
    rows = []
    flop64 = 2.0 * D * D

    def fractions(rate, dtype, t):
        pk = ctx.peak(dtype, t) * 1e9
        return {"frac_peak_2D2": rate * flop64 / pk, "frac_peak_D2": rate * D * D / pk,
                "gflops_2D2": rate * flop64 / 1e9, "peak_gflops": pk / 1e9}

    # ---------------------------------------------------------------- sweep over path counts
    for layers in layers_list:
        P = int(np.prod(layers))
        n = int(np.clip(budget // P, min_rows, max_rows))
        n_ref = int(np.clip(ref_budget // P, min(128, n), n))
        model = random_model(layers, D, seed=ctx.seed)
        X64 = model_data(model, n, seed=ctx.seed + 1)
        X32 = X64.astype(np.float32)
        case = f"P={P} {layers}"
        for t in ctx.threads:
            fns = {"dgmmcore f64": _ours(model, X64, t), "dgmmcore f32": _ours(model, X32, t),
                   "numpy f64": _numpy(model, X64[:n_ref], t)}
            if sk is not None:
                fns["sklearn f64"] = _sklearn(sk, model, X64[:n_ref], t)
            ms = measure_interleaved(fns, ctx.repeats, ctx.warmup_big, {k: t for k in fns})
            evals = {"dgmmcore f64": n * P, "dgmmcore f32": n * P, "numpy f64": n_ref * P,
                     "sklearn f64": n_ref * P}
            rate = {k: evals[k] / m["median"] for k, m in ms.items()}
            ref_name = "sklearn f64" if sk is not None else "numpy f64"
            for k in ("sklearn f64", "numpy f64"):
                if k in ms:
                    rows.append(row(NAME, case, f"{k} {t}thr", rate[k], "eval/s", timing=ms[k],
                                    impl=k.split()[0], dtype="float64", threads=t, paths=P,
                                    n=n_ref, layers=list(layers), D=D,
                                    **fractions(rate[k], np.float64, t)))
            for k, dtype in (("dgmmcore f64", np.float64), ("dgmmcore f32", np.float32)):
                rows.append(row(NAME, case, f"{k} {t}thr", rate[k], "eval/s", ref=ref_name,
                                ref_value=rate[ref_name], timing=ms[k], impl="dgmmcore",
                                dtype=np.dtype(dtype).name, threads=t, paths=P, n=n,
                                layers=list(layers), D=D, vs_numpy=rate[k] / rate["numpy f64"],
                                **fractions(rate[k], dtype, t)))
                ctx.log(case, rows[-1]["metric"], f"{rate[k] / 1e6:.2f} M/s",
                        f"vs {ref_name} {rows[-1].get('ratio') or 0:.2f}x",
                        f"peak(2D^2) {rows[-1]['frac_peak_2D2']:.1%}")

    # ---------------------------------------------------------------- headline case
    t = ctx.max_threads
    lo = min(ctx.threads)
    P = int(np.prod(head_layers))
    model = random_model(head_layers, D, seed=ctx.seed)
    X64 = model_data(model, head_n, seed=ctx.seed + 2)
    X32 = X64.astype(np.float32)
    case = f"headline P={P} {head_layers} n={head_n}"
    fns = {"f64": _ours(model, X64, t), "f32": _ours(model, X32, t)}
    thr = {"f64": t, "f32": t}
    if sk is not None:
        fns["sklearn"] = _sklearn(sk, model, X64, t)
        thr["sklearn"] = t
        if lo != t:  # scikit-learn's best thread count, for a conservative ratio
            fns["sklearn_lo"] = _sklearn(sk, model, X64, lo)
            thr["sklearn_lo"] = lo
    ms = measure_interleaved(fns, ctx.repeats, ctx.warmup_big, thr)
    rate = {k: head_n * P / m["median"] for k, m in ms.items()}
    r64, r32 = rate["f64"], rate["f32"]
    ref_rate = rate.get("sklearn")
    best_sk = max(rate.get("sklearn", 0), rate.get("sklearn_lo", 0)) or None
    if sk is not None:
        rows.append(row(NAME, case, f"sklearn f64 {t}thr", ref_rate, "eval/s", timing=ms["sklearn"],
                        impl="sklearn", dtype="float64", threads=t, paths=P, n=head_n, D=D))
        if "sklearn_lo" in ms:
            rows.append(row(NAME, case, f"sklearn f64 {lo}thr", rate["sklearn_lo"], "eval/s",
                            timing=ms["sklearn_lo"], impl="sklearn", dtype="float64", threads=lo,
                            paths=P, n=head_n, D=D))
    # accuracy of float32 against float64 on the same rows (sanity, not timed)
    s64 = model.score_samples(X64[:2000])
    s32 = model.score_samples(X32[:2000])
    f32_err = float(np.max(np.abs(s32 - s64) / np.maximum(1.0, np.abs(s64))))
    fr64, fr32 = fractions(r64, np.float64, t), fractions(r32, np.float32, t)
    rows.append(row(NAME, case, f"dgmmcore f64 {t}thr", r64, "eval/s",
                    ref=f"sklearn f64 {t}thr" if ref_rate else None, ref_value=ref_rate,
                    timing=ms["f64"], headline=True, target_ratio=4.0, impl="dgmmcore",
                    dtype="float64", threads=t, paths=P, n=head_n, D=D,
                    ratio_vs_sklearn_best_threads=(r64 / best_sk) if best_sk else None, **fr64))
    if best_sk and "sklearn_lo" in ms:
        rows.append(row(NAME, case, f"dgmmcore f64 {t}thr vs sklearn's best", r64, "eval/s",
                        ref=("sklearn f64, best of "
                             + "/".join(str(x) for x in sorted({lo, t})) + " thr"),
                        ref_value=best_sk, headline=True, threads=t))
    rows.append(row(NAME, case, f"dgmmcore f32 {t}thr", r32, "eval/s", ref="dgmmcore f64",
                    ref_value=r64, timing=ms["f32"], headline=True, target_ratio=1.7,
                    impl="dgmmcore", dtype="float32", threads=t, paths=P, n=head_n, D=D,
                    f32_max_rel_err=f32_err, **fr32))
    rows.append(row(NAME, case, f"f64 frac of DGEMM peak (2D^2) {t}thr", fr64["frac_peak_2D2"], "",
                    headline=True, peak_gflops=fr64["peak_gflops"], threads=t))
    rows.append(row(NAME, case, f"f64 frac of DGEMM peak (D^2) {t}thr", fr64["frac_peak_D2"], "",
                    headline=True, peak_gflops=fr64["peak_gflops"], threads=t))
    rows.append(row(NAME, case, f"f32 frac of SGEMM peak (2D^2) {t}thr", fr32["frac_peak_2D2"], "",
                    headline=True, peak_gflops=fr32["peak_gflops"], threads=t))
    ctx.log(case, f"f64 {r64 / 1e6:.2f} M/s, f32 {r32 / 1e6:.2f} M/s, sklearn "
            f"{(ref_rate or 0) / 1e6:.2f} M/s ({t}thr) / {rate.get('sklearn_lo', 0) / 1e6:.2f} M/s "
            f"({lo}thr), f32 max rel err {f32_err:.1e}")
    return rows
