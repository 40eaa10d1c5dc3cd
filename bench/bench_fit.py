"""End-to-end training on natural image patches: dgmmcore against scikit-learn and numpy.

Data: the embedded patches (``load_default``) in quick/smoke runs; BSDS300 patches
(``load_bsds300``, standard preprocessing) at 100,000 and 1,000,000 training rows in the full
run, with a held-out test split. Per case, in the same run and with the same thread count:
- dgmmcore ``DeepGMM(layers=(k, 5, 5))``, hard EM with the heuristic E-step;
- scikit-learn ``GaussianMixture(covariance_type='full')`` with about the same number of free
  parameters (a Deep GMM node has D^2 + D, a GMM component D + D(D+1)/2 + 1);
- ``numpy_dgmm.NumpyDGMM``: the same Deep GMM algorithm without the compiled core.
All stop at ``tol`` (1e-3 on the change of the mean objective, sklearn's default) or
``max_iter``, whichever comes first; the same ``max_iter`` and ``lbfgs_maxiter`` for the two
Deep GMMs. Figures: wall time of ``fit`` (one run each: fits are long; the median over EM
iterations of the per-iteration E- and M-step seconds stands in for repeats; ``cpu_util``
fields tell whether another process took the CPUs meanwhile), held-out mean log-likelihood
(nats), iterations, and the E-step's GFLOP/s (the E-step of a fit includes building the path
table and the statistics pass).

The "iteration" case is issue 3's measurement: layers (100, 5, 5) on 1,000,000 BSDS300 patches
(full run), one warm EM iteration: E-step GFLOP/s (2 D^2 flops per path evaluation,
3 x sum(N_j) evaluations per row) against the DGEMM peak, and the M-step's share of the
iteration (target < 25%).
"""
import time
import warnings

import numpy as np

from common import bsds300_available, patches, row, threads

NAME = "fit"


def _gmm_components(dgmm_params, D):
    per = D + D * (D + 1) // 2 + 1
    return max(1, int(round((dgmm_params + 1) / per)))


def _data(ctx, source, n_train, n_test):
    key = (source, n_train, n_test)

    def load():
        return (patches(source, "train", n_train, seed=ctx.seed),
                patches(source, "test", n_test, seed=ctx.seed + 1))
    return ctx.cached(key, load)


def _median(history, key, skip_first=True):
    vals = [h[key] for h in history[1 if skip_first and len(history) > 2 else 0:] if key in h]
    return float(np.median(vals)) if vals else float("nan")


def fit_case(ctx, source, n_train, n_test, layers, max_iter, lbfgs_maxiter, numpy_iter):
    from dgmmcore import DeepGMM
    from numpy_dgmm import NumpyDGMM

    X, Xt = _data(ctx, source, n_train, n_test)
    D = X.shape[1]
    t = ctx.max_threads
    case = f"{source} n={len(X)} {layers}"
    rows = []
    common = dict(source=source, n_train=len(X), n_test=len(Xt), threads=t, layers=list(layers))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c0, t0 = time.process_time(), time.perf_counter()
        model = DeepGMM(layers=layers, max_iter=max_iter, lbfgs_maxiter=lbfgs_maxiter,
                        n_threads=t, random_state=ctx.seed).fit(X)
        t_dgmm = time.perf_counter() - t0
        u_dgmm = (time.process_time() - c0) / (t_dgmm * t)
        ll_dgmm = model.score(Xt)
    hist = model.history_
    n_par = model.n_parameters()
    e_med, m_med = _median(hist, "estep_seconds"), _median(hist, "mstep_seconds")
    evals = len(X) * 3 * sum(layers)
    ctx.log(f"{case}: dgmmcore {t_dgmm:.1f}s, {model.n_iter_} iters, test LL {ll_dgmm:.3f}")

    K = _gmm_components(n_par, D)
    t_sk = ll_sk = u_sk = None
    try:
        from sklearn.mixture import GaussianMixture
        with warnings.catch_warnings(), threads(t):
            warnings.simplefilter("ignore")
            c0, t0 = time.process_time(), time.perf_counter()
            gmm = GaussianMixture(K, covariance_type="full", max_iter=max_iter,
                                  random_state=ctx.seed).fit(X)
            t_sk = time.perf_counter() - t0
            u_sk = (time.process_time() - c0) / (t_sk * t)
            ll_sk = float(gmm.score(Xt))
        sk_iter, sk_par = int(gmm.n_iter_), int(gmm._n_parameters())
        ctx.log(f"{case}: sklearn GMM K={K} {t_sk:.1f}s, {sk_iter} iters, test LL {ll_sk:.3f}")
    except ImportError:
        sk_iter = sk_par = None

    t_np = ll_np = u_np = None
    np_hist = []
    if numpy_iter:
        with warnings.catch_warnings(), threads(t):
            warnings.simplefilter("ignore")
            c0, t0 = time.process_time(), time.perf_counter()
            ref = NumpyDGMM(layers=layers, max_iter=numpy_iter, lbfgs_maxiter=lbfgs_maxiter,
                            random_state=ctx.seed).fit(X)
            t_np = time.perf_counter() - t0
            u_np = (time.process_time() - c0) / (t_np * t)
            ll_np = ref.score(Xt)
        np_hist = ref.history_
        ctx.log(f"{case}: numpy Deep GMM {t_np:.1f}s, {ref.n_iter_} iters, test LL {ll_np:.3f}")

    rows.append(row(NAME, case, "fit wall time vs sklearn", t_dgmm, "s",
                    ref=f"sklearn GMM K={K}" if t_sk else None, ref_value=t_sk,
                    ratio=(t_sk / t_dgmm) if t_sk else None, dgmm_iters=model.n_iter_,
                    sklearn_iters=sk_iter, dgmm_converged=bool(model.converged_),
                    dgmm_params=n_par, sklearn_params=sk_par, sklearn_components=K,
                    max_iter=max_iter, lbfgs_maxiter=lbfgs_maxiter, target_ratio=5.0,
                    cpu_util=u_dgmm, sklearn_cpu_util=u_sk, numpy_cpu_util=u_np, **common))
    rows.append(row(NAME, case, "held-out LL (nats)", ll_dgmm, "nats",
                    ref=f"sklearn GMM K={K}" if ll_sk is not None else None, ref_value=ll_sk,
                    ratio=False, diff_nats=(ll_dgmm - ll_sk) if ll_sk is not None else None,
                    numpy_ll=ll_np, **common))
    # per-iteration comparison against the numpy implementation of the same algorithm
    np_e, np_m = _median(np_hist, "estep_seconds"), _median(np_hist, "mstep_seconds")
    if numpy_iter:
        rows.append(row(NAME, case, "s/E-step (search+stats) vs numpy", e_med, "s",
                        ref="numpy Deep GMM", ref_value=np_e, ratio=np_e / e_med,
                        numpy_iters=len(np_hist) - 1, **common))
        rows.append(row(NAME, case, "s/M-step vs numpy", m_med, "s", ref="numpy Deep GMM",
                        ref_value=np_m, ratio=np_m / m_med, **common))
        if numpy_iter >= max_iter:
            rows.append(row(NAME, case, "fit wall time vs numpy", t_dgmm, "s",
                            ref="numpy Deep GMM", ref_value=t_np, ratio=t_np / t_dgmm,
                            numpy_ll=ll_np, **common))
    pk = ctx.peak(np.float64, t)
    gf = evals * 2.0 * D * D / e_med / 1e9
    rows.append(row(NAME, case, "E-step GFLOP/s (2D^2, incl. stats)", gf, "GFLOP/s",
                    ref=f"DGEMM peak {t}thr", ref_value=pk, mstep_share=m_med / (e_med + m_med),
                    estep_seconds=e_med, mstep_seconds=m_med,
                    history=[{k: v for k, v in h.items()} for h in hist], **common))
    return rows


def _one_warm_iteration(X, layers, lbfgs_maxiter, t, seed):
    from dgmmcore import DeepGMM
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        model = DeepGMM(layers=layers, max_iter=2, tol=0.0, lbfgs_maxiter=lbfgs_maxiter,
                        n_threads=t, random_state=seed).fit(X)
        wall = time.perf_counter() - t0
    return model, wall


def iteration_case(ctx, source, n_train, layers, lbfgs_maxiter):
    """One warm EM iteration (the second of a fit started from scratch), on float64 rows and
    on the same rows as float32 (E-step scored in float32, statistics in float64)."""
    X = ctx.cached((source, "iter", n_train), lambda: patches(source, "train", n_train,
                                                              seed=ctx.seed))
    D = X.shape[1]
    t = ctx.max_threads
    model, wall = _one_warm_iteration(X, layers, lbfgs_maxiter, t, ctx.seed)
    h = model.history_[1]
    e, m = h["estep_seconds"], h["mstep_seconds"]
    evals = len(X) * 3 * sum(layers)
    gf = evals * 2.0 * D * D / e / 1e9
    pk = ctx.peak(np.float64, t)
    case = f"iteration {source} n={len(X)} {layers}"
    ctx.log(f"{case}: E {e:.2f}s ({gf:.1f} GFLOP/s = {gf / pk:.1%} of peak), M {m:.2f}s "
            f"({m / (e + m):.1%} of the iteration)")
    model32, _ = _one_warm_iteration(X.astype(np.float32), layers, lbfgs_maxiter, t, ctx.seed)
    h32 = model32.history_[1]
    e32 = h32["estep_seconds"]
    ctx.log(f"{case}: float32 rows: E {e32:.2f}s ({e / e32:.2f}x), objective "
            f"{h32['objective']:.5f} vs {h['objective']:.5f}")
    return [
        row(NAME, case, f"E-step GFLOP/s (2D^2) {t}thr", gf, "GFLOP/s", ref=f"DGEMM peak {t}thr",
            ref_value=pk, headline=True, target_ratio=0.5, estep_seconds=e, threads=t,
            n_train=len(X), layers=list(layers), switch_rate=h.get("switch_rate"),
            fit_wall_seconds=wall, history=model.history_),
        row(NAME, case, f"E-step GFLOP/s (D^2) {t}thr", gf / 2, "GFLOP/s", ref=f"DGEMM peak {t}thr",
            ref_value=pk, headline=True, target_ratio=0.5, threads=t),
        row(NAME, case, "M-step share of iteration", m / (e + m), "", headline=True,
            mstep_seconds=m, estep_seconds=e, target="< 0.25", threads=t,
            lbfgs_iterations=h.get("lbfgs_iterations"), lbfgs_maxiter=lbfgs_maxiter),
        row(NAME, case, f"s/E-step on float32 rows {t}thr", e32, "s", ref="float64 rows",
            ref_value=e, ratio=e / e32, threads=t, objective=h32["objective"],
            objective_float64=h["objective"], switch_rate=h32.get("switch_rate"),
            mstep_seconds=h32["mstep_seconds"]),
    ]


def run(ctx):
    """Each case has a label for ``run.py --case``: 'fit <n>' and 'iteration <n>'."""
    if ctx.mode == "smoke":
        cases = [("fit 2k", fit_case, ("default", 2_000, 1_000, (2, 2, 2), 2, 20, 2)),
                 ("iteration 2k", iteration_case, ("default", 2_000, (4, 2, 2), 20))]
    elif ctx.mode == "quick":
        cases = [("fit 20k", fit_case, ("default", 20_000, 10_000, (10, 5, 5), 6, 100, 6)),
                 ("iteration 30k", iteration_case, ("default", 30_000, (100, 5, 5), 50))]
    elif not bsds300_available():
        ctx.log("BSDS300 not found: falling back to the embedded patches (at most 60,000)")
        cases = [("fit 60k", fit_case, ("default", 60_000, 10_000, (10, 5, 5), 30, 1000, 30)),
                 ("iteration 60k", iteration_case, ("default", 60_000, (100, 5, 5), 1000))]
    else:
        cases = [("fit 100k", fit_case, ("bsds300", 100_000, 50_000, (10, 5, 5), 30, 1000, 30)),
                 ("fit 1M", fit_case, ("bsds300", 1_000_000, 50_000, (10, 5, 5), 10, 1000, 2)),
                 ("iteration 1M", iteration_case, ("bsds300", 1_000_000, (100, 5, 5), 1000))]
    rows = []
    for label, case, case_args in cases:
        if ctx.include(label):
            rows += case(ctx, *case_args)
    return rows
