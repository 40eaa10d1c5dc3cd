"""Machine limit: numpy DGEMM and SGEMM GFLOP/s on large square matrices, per thread count.

The limit is the best of at least 5 timed calls (the median is kept in the JSON): on a shared
machine other jobs can only slow a GEMM down.

Every "fraction of peak" figure in the other benchmarks divides by these numbers (measured in
the same run, at the same thread count and dtype)."""
import numpy as np

from common import row

NAME = "peak"


def _scipy_blas_rows(ctx, dtype, tag):
    from scipy.linalg import blas
    from common import measure, threads
    size = ctx.pick(256, 2048, 3072)
    rng = np.random.default_rng(0)
    a = np.asfortranarray(rng.standard_normal((size, size)).astype(dtype))
    b = np.asfortranarray(rng.standard_normal((size, size)).astype(dtype))
    gemm = blas.dgemm if dtype == np.float64 else blas.sgemm
    out = []
    for t in ctx.threads:
        with threads(t):
            m = measure(lambda: gemm(1.0, a, b), max(5, ctx.repeats), max(1, ctx.warmup), t)
        g = 2.0 * size ** 3 / m["min"] / 1e9
        out.append(row(NAME, f"scipy {tag} n={size}", f"GFLOP/s ({t} thr, best)", g, "GFLOP/s",
                       ref=f"numpy {tag}", ref_value=ctx.peak(dtype, t), timing=m, threads=t,
                       dtype=np.dtype(dtype).name, size=size, library="scipy.linalg.blas"))
        ctx.log(out[-1]["case"], out[-1]["metric"], f"{g:.1f}")
    return out


def run(ctx):
    rows = []
    for dtype in (np.float64, np.float32):
        tag = "DGEMM" if dtype == np.float64 else "SGEMM"
        for t in ctx.threads:
            rec = ctx.peak_record(dtype, t)
            rows.append(row(NAME, f"{tag} n={rec['size']}", f"GFLOP/s ({t} thr, best)",
                            rec["gflops_best"], "GFLOP/s", threads=t, dtype=np.dtype(dtype).name,
                            size=rec["size"], gflops_median=rec["gflops"],
                            **{k: rec[k] for k in ("median", "min", "max", "times", "repeats",
                                                   "warmup", "cpu_util")}))
            ctx.log(rows[-1]["case"], rows[-1]["metric"], f"{rec['gflops_best']:.1f} "
                    f"(median {rec['gflops']:.1f})")
        # dgmmcore's kernels call BLAS through scipy.linalg.cython_blas, which may be a
        # different library (scipy's bundled OpenBLAS) than numpy's: measure it too.
        rows += _scipy_blas_rows(ctx, dtype, tag)
        if len(ctx.threads) > 1:
            lo, hi = min(ctx.threads), max(ctx.threads)
            rows.append(row(NAME, f"{tag} scaling", f"{hi} vs {lo} thr", ctx.peak(dtype, hi),
                            "GFLOP/s", ref=f"{lo} thr", ref_value=ctx.peak(dtype, lo),
                            dtype=np.dtype(dtype).name))
    return rows
