"""Soft E-step: every path scored, posteriors, responsibility-weighted statistics (``soft_stats``).

Layers (100, 5, 5) (2,500 paths) at D = 63 on n rows (full run: 40,000), at the top thread
count: seconds per soft E-step on float64 rows and on their float32 copies (scored in float32
since session 15; statistics in float64 either way), and, in the same run, scikit-learn's soft
E-step and statistics for a GaussianMixture of the same 2,500 Gaussians
(``_estimate_log_prob_resp``, then ``_estimate_gaussian_parameters``: what one soft-EM
iteration of a GMM that size costs before its M-step), on a subset of the rows and scaled to n
(both are linear in n). On the float32 rows, as inside EM (warm-started from the paths of a
previous search): truncated soft EM's E-step (``truncation``: the heuristic search, a warm
pass and a restart, then ``truncated_stats`` over the 10 best top nodes x all 25 lower
combinations, 250 candidates), the same without the search (``warm_passes=0,
n_restarts=0``: the candidates around the previous paths), the same reusing an earlier
ranking of the top nodes (``rerank_every > 1`` between rankings), and the hard E-step (the
search, then ``hard_stats``), with the mean gap between the rows' log-likelihood and the truncated
bound. Timed round-robin (``measure_interleaved``).
"""
import numpy as np

from common import measure_interleaved, model_data, random_model, row, threads

NAME = "soft"


def _sklearn_soft(model, X, t):
    """scikit-learn's E-step plus its statistics for the model's Gaussians, or None."""
    try:
        from sklearn.mixture import GaussianMixture
        from sklearn.mixture._gaussian_mixture import (_compute_precision_cholesky,
                                                       _estimate_gaussian_parameters)
    except ImportError:
        return None
    weights, means, covs = model.to_gmm()
    gm = GaussianMixture(len(weights), covariance_type="full", reg_covar=0.0)
    gm.weights_, gm.means_, gm.covariances_ = weights, means, covs
    gm.precisions_cholesky_ = _compute_precision_cholesky(covs, "full")

    def f():
        with threads(t):
            _, log_resp = gm._estimate_log_prob_resp(X)
            return _estimate_gaussian_parameters(X, np.exp(log_resp), 0.0, "full")
    return f


def run(ctx):
    from dgmmcore import _estep
    from dgmmcore._network import ravel_paths
    from dgmmcore._suffstats import hard_stats, soft_stats, truncated_stats

    D = ctx.pick(16, 63, 63)
    layers = ctx.pick((6, 3, 2), (100, 5, 5), (100, 5, 5))
    n = ctx.pick(2_000, 10_000, 40_000)
    n_sk = ctx.pick(500, 1_000, 4_000)
    P = int(np.prod(layers))
    t = ctx.max_threads
    model = random_model(layers, D, seed=ctx.seed)
    X64 = model_data(model, n, seed=ctx.seed + 5)
    X32 = X64.astype(np.float32)
    table = model._path_table()
    keep = ctx.pick(2, 10, 10)
    table32 = table.astype(np.float32)

    # the paths a previous E-step left: the warm start of every timed search
    previous = _estep.heuristic_estep(table32, X32, None, ctx.seed, t)[0]

    def search():
        return _estep.heuristic_estep(table32, X32, previous, ctx.seed + 1, t)[0]

    def truncated():
        return truncated_stats(X32, table, search(), keep, t)

    def truncated_no_search():
        return truncated_stats(X32, table, previous, keep, t)

    ranked = truncated_stats(X32, table, previous, keep, t, keep_ranking=True)[3]

    def truncated_reused():
        return truncated_stats(X32, table, previous, keep, t, ranked=ranked)

    def hard():
        return hard_stats(X32, ravel_paths(search(), layers), P, table.mean64, t)

    fns = {"float64": lambda: soft_stats(X64, table, t),
           "float32": lambda: soft_stats(X32, table, t),
           "truncated": truncated, "no search": truncated_no_search,
           "reused ranking": truncated_reused, "hard": hard}
    sk = _sklearn_soft(model, X64[:n_sk], t)
    if sk is not None:
        fns["sklearn"] = sk
    soft_stats(X64[:500], table, t)
    soft_stats(X32[:500], table, t)
    reps = max(1, min(ctx.repeats, 3))
    ms = measure_interleaved(fns, reps, 0, {k: t for k in fns})
    m64, m32 = ms["float64"], ms["float32"]
    ll64, ll32 = m64["result"][1], m32["result"][1]
    case = f"soft E-step {layers} n={n}"
    rows = [row(NAME, case, f"s/E-step float64 {t}thr", m64["median"], "s", timing=m64,
                threads=t, n=n, paths=P, D=D),
            row(NAME, case, f"s/E-step float32 {t}thr", m32["median"], "s",
                ref=f"float64 rows {t}thr", ref_value=m64["median"],
                ratio=m64["median"] / m32["median"], timing=m32, threads=t, n=n, paths=P, D=D,
                max_abs_loglik_diff=float(np.abs(ll32 - ll64).max()))]
    mt, mn, mr, mh = ms["truncated"], ms["no search"], ms["reused ranking"], ms["hard"]
    n_cand = int(np.prod([min(keep, n_j) for n_j in layers]))
    bound_gap = float(np.mean(ll32 - mt["result"][1]))
    rows += [row(NAME, case, f"s/E-step truncated k={keep} float32 {t}thr", mt["median"], "s",
                 ref=f"soft float32 {t}thr", ref_value=m32["median"],
                 ratio=m32["median"] / mt["median"], timing=mt, threads=t, n=n, paths=P, D=D,
                 candidates=n_cand, mean_loglik_minus_bound=bound_gap),
             row(NAME, case, f"s/E-step truncated k={keep} without the search float32 {t}thr",
                 mn["median"], "s", ref=f"truncated k={keep} float32 {t}thr",
                 ref_value=mt["median"], ratio=mt["median"] / mn["median"], timing=mn,
                 threads=t, n=n, paths=P, D=D, candidates=n_cand),
             row(NAME, case, f"s/E-step truncated k={keep} without the search, reusing the "
                 f"ranking float32 {t}thr", mr["median"], "s",
                 ref=f"truncated k={keep} without the search float32 {t}thr",
                 ref_value=mn["median"], ratio=mn["median"] / mr["median"], timing=mr,
                 threads=t, n=n, paths=P, D=D, candidates=n_cand),
             row(NAME, case, f"s/E-step hard (heuristic) float32 {t}thr", mh["median"], "s",
                 ref=f"truncated k={keep} float32 {t}thr", ref_value=mt["median"],
                 ratio=mt["median"] / mh["median"], timing=mh, threads=t, n=n, paths=P, D=D)]
    line = (f"soft E-step {P} paths, n={n}, {t}thr: float64 {m64['median']:.2f}s, float32 "
            f"{m32['median']:.2f}s ({m64['median'] / m32['median']:.2f}x); truncated k={keep} "
            f"({n_cand} candidates) {mt['median']:.2f}s ({m32['median'] / mt['median']:.1f}x "
            f"faster than soft, bound {bound_gap:.3f} nats below log p), without the search "
            f"{mn['median']:.2f}s ({mt['median'] / mn['median']:.1f}x faster), reusing the ranking "
            f"{mr['median']:.2f}s ({mn['median'] / mr['median']:.2f}x faster again), hard "
            f"{mh['median']:.2f}s")
    if sk is not None:
        sk_n = ms["sklearn"]["median"] * n / n_sk
        rows.append(row(NAME, case, f"sklearn GMM soft E-step + statistics {t}thr (scaled to n)",
                        sk_n, "s", ref=f"dgmmcore float64 {t}thr", ref_value=m64["median"],
                        ratio=sk_n / m64["median"], timing=ms["sklearn"], n_measured=n_sk))
        line += f"; scikit-learn {sk_n:.2f}s scaled from n={n_sk} ({sk_n / m64['median']:.1f}x)"
    ctx.log(line)
    return rows
