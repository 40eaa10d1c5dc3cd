"""Per-path statistics accumulation (``hard_stats``) and Kronecker assembly (``kron_assemble``).

Statistics: n rows at D = 63 assigned to P paths (drawn from the path prior of a random model);
counts, sums and centred scatters. Flops counted as n x D (D + 1) (the SYRK half); GFLOP/s
against two numpy implementations of the same statistics, in the same run:
- ``numpy GEMM``: rows sorted by path, ``Y^T Y`` per path (BLAS; the best numpy can do);
- ``numpy einsum``: the same with ``np.einsum('ni,nj->ij')`` per path (no BLAS);
and against the DGEMM peak at the same thread count. Results are checked against the numpy
GEMM version (max relative difference in the JSON).

Statistics in blocks (a memory-mapped file is read in blocks of 2^18 rows): the hard statistics
of 4 blocks added to one ``PathSums`` and finished once (the executor since session 20) against
``hard_stats`` per block merged pairwise (``merge_stats``, the executor before it: one
(P, D, D) set per block); at many paths that per-block set, not the rows, is the cost.

Kronecker assembly: K = sum_g w_g kron(Omega_g, S'_g) with Omega (G, D, D), S' (G, D+1, D+1)
(the M-step's shapes) for growing G; flops 2 G D^2 (D+1)^2. References: a ``np.kron`` loop
(the textbook way; small G only) and one ``np.tensordot`` GEMM + transpose in numpy.
BLAS is single-threaded around the kernel (it calls BLAS from its OpenMP threads).
"""
import numpy as np

from common import measure, measure_interleaved, row, threads

NAME = "stats"


def numpy_stats(X, path, P, product="gemm"):
    """Per-path counts, means and centred scatter in numpy: one GEMM (``Y.T @ Y``) or one
    einsum per path."""
    D = X.shape[1]
    counts = np.bincount(path, minlength=P)
    order = np.argsort(path, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    sums = np.zeros((P, D))
    scat = np.zeros((P, D, D))
    for p in np.flatnonzero(counts):
        Y = X[order[bounds[p]:bounds[p + 1]]]
        m = Y.mean(axis=0)
        Y = Y - m
        sums[p] = m
        scat[p] = Y.T @ Y if product == "gemm" else np.einsum("ni,nj->ij", Y, Y)
    return counts, sums, scat


def _stats_bench(ctx):
    from dgmmcore._suffstats import hard_stats

    D = ctx.pick(16, 63, 63)
    n = ctx.pick(5_000, 100_000, 1_000_000)
    P = ctx.pick(24, 500, 2500)
    n_einsum = ctx.pick(5_000, 20_000, 200_000)
    rng = np.random.default_rng(ctx.seed)
    w = 0.5 + rng.random(P)
    path = rng.choice(P, size=n, p=w / w.sum()).astype(np.intp)
    centres = rng.standard_normal((P, D))
    X = centres[path] + 0.5 * rng.standard_normal((n, D))
    shift = centres + 0.01 * rng.standard_normal((P, D))  # "current path means"
    flops = n * D * (D + 1.0)
    rows = []
    ref_g = numpy_stats(X, path, P)
    for t in ctx.threads:
        pk = ctx.peak(np.float64, t)
        hard_stats(X[:1000], path[:1000], P, shift, t)
        m = measure(lambda: hard_stats(X, path, P, shift, t), ctx.repeats, ctx.warmup_big, t)
        st = m["result"]
        err = float(np.max(np.abs(st.scatters - ref_g[2])) / np.max(np.abs(ref_g[2])))
        with threads(t):
            numpy_stats(X[:1000], path[:1000], P)
            mg = measure(lambda: numpy_stats(X, path, P), ctx.repeats, ctx.warmup_big, t)
            me = measure(lambda: numpy_stats(X[:n_einsum], path[:n_einsum], P, "einsum"),
                         max(1, min(3, ctx.repeats)), 0, t)
        g = flops / m["median"] / 1e9
        gg = flops / mg["median"] / 1e9
        ge = n_einsum * D * (D + 1.0) / me["median"] / 1e9
        case = f"hard_stats n={n} P={P} D={D}"
        rows.append(row(NAME, case, f"GFLOP/s {t}thr", g, "GFLOP/s", ref="numpy GEMM per path",
                        ref_value=gg, timing=m, threads=t, n=n, paths=P, D=D, max_rel_err=err,
                        frac_peak=g / pk, peak_gflops=pk))
        rows.append(row(NAME, case, f"vs numpy einsum {t}thr", g, "GFLOP/s",
                        ref=f"numpy einsum per path (n={n_einsum})", ref_value=ge, threads=t))
        rows.append(row(NAME, case, f"frac of DGEMM peak {t}thr", g / pk, "", threads=t,
                        peak_gflops=pk))
        ctx.log(f"{case} {t}thr: {g:.2f} GFLOP/s ({g / pk:.1%} of peak), numpy GEMM {gg:.2f}, "
                f"einsum {ge:.2f}, max rel err {err:.1e}")
    return rows


def _blocks_bench(ctx):
    from dgmmcore._suffstats import PathSums, hard_stats, merge_stats

    D = ctx.pick(16, 63, 63)
    n = ctx.pick(4_000, 200_000, 1_048_576)
    P = ctx.pick(24, 2500, 15000)
    n_blocks = 4
    rng = np.random.default_rng(ctx.seed)
    path = rng.integers(0, P, n).astype(np.intp)
    centres = rng.standard_normal((P, D))
    X = centres[path] + 0.5 * rng.standard_normal((n, D))
    shift = centres + 0.01 * rng.standard_normal((P, D))
    bounds = np.linspace(0, n, n_blocks + 1).astype(int)
    rows = []

    for t in ctx.threads:
        def one_set():
            sums = PathSums(shift)
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                sums.add_hard(X[lo:hi], path[lo:hi], t)
            return sums.stats()

        def merged():
            stats = None
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                stats = merge_stats(stats, hard_stats(X[lo:hi], path[lo:hi], P, shift, t))
            return stats
        both = measure_interleaved({"one set": one_set, "merged": merged}, ctx.repeats,
                                   ctx.warmup, {"one set": t, "merged": t})
        m, mr = both["one set"], both["merged"]
        a, b = m["result"], mr["result"]
        err = float(np.max(np.abs(a.scatters - b.scatters)) / np.max(np.abs(b.scatters)))
        case = f"statistics in {n_blocks} blocks n={n} P={P} D={D}"
        rows.append(row(NAME, case, f"seconds {t}thr", m["median"], "s",
                        ref="hard_stats per block, merged", ref_value=mr["median"],
                        ratio=mr["median"] / m["median"], timing=m, threads=t, n=n, paths=P,
                        D=D, blocks=n_blocks, max_rel_err=err))
        ctx.log(f"{case} {t}thr: one set {m['median']:.2f}s, per block merged "
                f"{mr['median']:.2f}s ({mr['median'] / m['median']:.2f}x), err {err:.1e}")
    return rows


def numpy_kron_loop(left, right, weight):
    out = np.zeros((left.shape[1] * right.shape[1],) * 2)
    for g in range(len(weight)):
        out += weight[g] * np.kron(left[g], right[g])
    return out


def numpy_kron_gemm(left, right, weight):
    G, A, _ = left.shape
    B = right.shape[1]
    M = np.tensordot(weight[:, None, None] * left, right, axes=(0, 0))  # (A, A, B, B) = [a,c,b,d]
    return np.ascontiguousarray(M.transpose(0, 2, 1, 3)).reshape(A * B, A * B)


def _kron_bench(ctx):
    from dgmmcore import _stats
    from dgmmcore._threads import single_threaded_blas

    D = ctx.pick(8, 63, 63)
    Gs = ctx.pick([1, 4], [1, 5, 25, 100], [1, 5, 25, 100, 500])
    loop_max = ctx.pick(4, 5, 25)
    rng = np.random.default_rng(ctx.seed)
    rows = []
    E = D * (D + 1)
    for G in Gs:
        R = np.eye(D) + 0.1 * rng.standard_normal((G, D, D))
        left = np.ascontiguousarray(np.matmul(np.swapaxes(R, 1, 2), R))
        V = rng.standard_normal((G, 2 * D, D + 1))
        right = np.ascontiguousarray(np.matmul(np.swapaxes(V, 1, 2), V))
        weight = 1.0 + rng.random(G)
        flops = 2.0 * G * D * D * (D + 1) ** 2
        out = np.empty((E, E))
        ref = numpy_kron_gemm(left, right, weight)
        case = f"kron_assemble G={G} D={D}"
        for t in ctx.threads:
            pk = ctx.peak(np.float64, t)

            def ours():
                _stats.kron_assemble(left, right, weight, out, t)
                return out
            with single_threaded_blas():
                m = measure(ours, ctx.repeats, max(1, ctx.warmup), t)
            err = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))
            with threads(t):
                mg = measure(lambda: numpy_kron_gemm(left, right, weight), ctx.repeats,
                             ctx.warmup, t)
            g, gg = flops / m["median"] / 1e9, flops / mg["median"] / 1e9
            rows.append(row(NAME, case, f"GFLOP/s {t}thr", g, "GFLOP/s", ref="numpy tensordot",
                            ref_value=gg, timing=m, threads=t, groups=G, D=D, max_rel_err=err,
                            frac_peak=g / pk, peak_gflops=pk, seconds=m["median"],
                            ref_seconds=mg["median"]))
            if G <= loop_max:
                with threads(t):
                    ml = measure(lambda: numpy_kron_loop(left, right, weight),
                                 max(1, min(3, ctx.repeats)), 0, t)
                gl = flops / ml["median"] / 1e9
                rows.append(row(NAME, case, f"vs np.kron loop {t}thr", g, "GFLOP/s",
                                ref="np.kron loop", ref_value=gl, threads=t, groups=G, D=D,
                                seconds=m["median"], ref_seconds=ml["median"]))
            ctx.log(f"{case} {t}thr: {g:.2f} GFLOP/s ({g / pk:.1%} of peak, {m['median']:.3f}s), "
                    f"numpy tensordot {gg:.2f}, err {err:.1e}")
    return rows


def run(ctx):
    return _stats_bench(ctx) + _blocks_bench(ctx) + _kron_bench(ctx)
