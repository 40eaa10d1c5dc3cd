"""Scaling: time against n, against the number of paths and against threads; peak memory.

- ``score_samples`` seconds vs n (layers (4, 5, 5), float64, all threads): should be linear;
  the JSON carries the per-row cost at every n (flat = linear).
- ``fit`` per-iteration seconds vs n (layers (10, 5, 5), data sampled from a random model of
  the same shape, two EM iterations from scratch; the warm second iteration is reported): the
  E-step is linear in n, the M-step independent of n.
- the same iteration vs paths (layers (k, 5, 5) for growing k) at fixed n.
- 1 vs 2 threads: ``score_samples``, the heuristic E-step, ``hard_stats`` and a fit iteration
  (speedup = 1-thread time / 2-thread time).
- peak memory vs n of ``score_samples`` (layers (4, 5, 5)) and
  ``fit`` (two iterations): one fresh subprocess per measurement; the data are made first,
  freed heap is trimmed, the high-water mark is reset (``/proc/self/clear_refs``) and the
  increase of VmHWM over the RSS before the call is reported (C mallocs included; tracemalloc
  would miss them). ``score_samples`` should stay flat apart from its O(n) output (8n bytes)
  and whatever input copy validation makes.
"""
import json
import os
import subprocess
import tempfile
import sys
import time
import warnings

import numpy as np

from common import HERE, measure, model_data, random_model, row

NAME = "scaling"

_MEM_SCRIPT = r"""
import json, sys, warnings
import numpy as np
sys.path.insert(0, {here!r})
from common import random_model, model_data, current_rss_mb, peak_rss_mb, reset_peak_rss
op, n, layers, D, t = {op!r}, {n}, {layers!r}, {D}, {t}
model = random_model(layers, D, seed=0, n_threads=t)
X = model_data(model, n, seed=1)
if op == "fit":
    from dgmmcore import DeepGMM
    est = DeepGMM(layers=layers, max_iter=2, tol=0.0, lbfgs_maxiter={lbfgs}, n_threads=t,
                  random_state=0)
else:
    model.score_samples(X[:256])   # build the path table outside the measurement
import gc, ctypes
gc.collect()
try:
    ctypes.CDLL("libc.so.6").malloc_trim(0)   # hand freed heap back: it would hide new allocations
except OSError:
    pass
rss0 = current_rss_mb()
hwm0 = peak_rss_mb()
reset = reset_peak_rss()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    if op == "fit":
        est.fit(X)
    else:
        out = model.score_samples(X)
hwm1 = peak_rss_mb()
base = rss0 if reset else max(rss0, hwm0)
print(json.dumps(dict(rss_before_mb=rss0, hwm_before_mb=hwm0, hwm_after_mb=hwm1,
                      hwm_reset=reset, extra_mb=hwm1 - base, data_mb=X.nbytes / 2**20)))
"""


def memory(op, n, layers, D, t, lbfgs=20, timeout=1800):
    code = _MEM_SCRIPT.format(here=HERE, op=op, n=int(n), layers=tuple(layers), D=D, t=t,
                              lbfgs=lbfgs)
    env = os.environ.copy()
    # fixed mmap threshold: big blocks are mmapped and returned on free, so freed temporaries
    # of the set-up cannot absorb (and hide) the allocations of the measured call
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(1 << 20))
    # the child imports the same dgmmcore as this process, and runs outside any source tree
    # (a checkout's dgmmcore/ without built extensions would shadow an installed one)
    import dgmmcore
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(dgmmcore.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(
        [pkg_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=timeout, env=env, cwd=tempfile.gettempdir())
    if res.returncode != 0:
        raise RuntimeError(f"memory subprocess failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def fit_iteration(X, layers, t, seed, lbfgs):
    from dgmmcore import DeepGMM
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        m = DeepGMM(layers=layers, max_iter=2, tol=0.0, lbfgs_maxiter=lbfgs, n_threads=t,
                    random_state=seed).fit(X)
        wall = time.perf_counter() - t0
    h = m.history_[1]
    return h["estep_seconds"], h["mstep_seconds"], wall


def run(ctx):
    from dgmmcore import _estep
    from dgmmcore._suffstats import hard_stats

    D = ctx.pick(16, 63, 63)
    t = ctx.max_threads
    score_layers = ctx.pick((4, 3, 2), (4, 5, 5), (4, 5, 5))
    score_ns = ctx.pick([500, 2_000], [5_000, 15_000, 50_000],
                        [10_000, 100_000, 300_000, 1_000_000])
    fit_layers = ctx.pick((2, 2, 2), (10, 5, 5), (10, 5, 5))
    fit_ns = ctx.pick([1_000, 3_000], [5_000, 15_000, 50_000], [10_000, 100_000, 1_000_000])
    path_ks = ctx.pick([2, 4], [2, 10, 20], [2, 10, 20, 40, 100])
    path_n = ctx.pick(2_000, 10_000, 100_000)
    thread_n = ctx.pick(2_000, 20_000, 100_000)
    mem_layers = score_layers
    mem_ns = ctx.pick([1_000, 4_000], [10_000, 100_000, 300_000], [10_000, 100_000, 1_000_000])
    mem_fit_ns = ctx.pick([1_000, 4_000], [10_000, 100_000], [10_000, 100_000, 1_000_000])
    lbfgs = ctx.pick(10, 50, 100)
    rows = []

    # ---------------------------------------------------------------- score_samples vs n
    P = int(np.prod(score_layers))
    model = random_model(score_layers, D, seed=ctx.seed, n_threads=t)
    Xbig = model_data(model, max(score_ns), seed=ctx.seed + 5)
    model.score_samples(Xbig[:256])
    base = None
    for n in score_ns:
        X = Xbig[:n]
        m = measure(lambda: model.score_samples(X), ctx.repeats, ctx.warmup_big, t)
        per_row = m["median"] / n
        base = base or per_row
        rows.append(row(NAME, f"score_samples P={P} {t}thr", f"time n={n}", m["median"], "s",
                        timing=m, n=n, paths=P, threads=t, us_per_row=per_row * 1e6,
                        per_row_vs_smallest=per_row / base, series="score_vs_n"))
    ctx.log(f"score_samples vs n: {[round(r['us_per_row'], 2) for r in rows]} us/row")

    # ---------------------------------------------------------------- fit iteration vs n
    fmodel = random_model(fit_layers, D, seed=ctx.seed + 1)
    Xfit = model_data(fmodel, max(fit_ns), seed=ctx.seed + 6)
    for n in fit_ns:
        e, mm, wall = fit_iteration(Xfit[:n], fit_layers, t, ctx.seed, lbfgs)
        rows.append(row(NAME, f"fit iteration {fit_layers} {t}thr", f"E-step n={n}", e, "s",
                        n=n, threads=t, estep_seconds=e, mstep_seconds=mm, fit_wall_seconds=wall,
                        us_per_row_estep=e / n * 1e6, series="fit_vs_n"))
        rows.append(row(NAME, f"fit iteration {fit_layers} {t}thr", f"M-step n={n}", mm, "s",
                        n=n, threads=t, series="fit_mstep_vs_n"))
        ctx.log(f"fit n={n}: E {e:.2f}s M {mm:.2f}s (wall {wall:.1f}s, 2 iterations)")

    # ---------------------------------------------------------------- fit iteration vs paths
    for k in path_ks:
        layers = (k,) + tuple(fit_layers[1:])
        pm = random_model(layers, D, seed=ctx.seed + 2)
        Xp = model_data(pm, path_n, seed=ctx.seed + 7)
        e, mm, wall = fit_iteration(Xp, layers, t, ctx.seed, lbfgs)
        Pk = int(np.prod(layers))
        rows.append(row(NAME, f"fit iteration n={path_n} {t}thr", f"P={Pk} {layers}", e + mm, "s",
                        paths=Pk, layers=list(layers), estep_seconds=e, mstep_seconds=mm,
                        threads=t, n=path_n, series="fit_vs_paths"))
        ctx.log(f"fit P={Pk}: E {e:.2f}s M {mm:.2f}s")

    # ---------------------------------------------------------------- 1 vs 2 threads
    if len(ctx.threads) > 1:
        lo, hi = min(ctx.threads), max(ctx.threads)
        n = min(thread_n, len(Xbig))
        X = Xbig[:n]
        table = model._path_table()
        prev, _, _ = _estep.heuristic_estep(table, X, None, np.random.default_rng(1), hi)
        flat = np.ravel_multi_index(tuple(prev.T), score_layers)
        shift = table.mean64

        def speedup(label, make):
            ms = {}
            for tt in (lo, hi):
                fn = make(tt)
                fn()
                ms[tt] = measure(fn, ctx.repeats, ctx.warmup_big, tt)
            rows.append(row(NAME, f"threads {hi} vs {lo}", label, ms[hi]["median"], "s",
                            ref=f"{lo} thread", ref_value=ms[lo]["median"],
                            ratio=ms[lo]["median"] / ms[hi]["median"], timing=ms[hi],
                            ref_timing={k: v for k, v in ms[lo].items() if k != "result"},
                            series="threads"))
            ctx.log(f"{label}: {lo}thr {ms[lo]['median']:.3f}s, {hi}thr {ms[hi]['median']:.3f}s")

        def score_at(tt):
            def f():
                model.n_threads = tt
                return model.score_samples(X)
            return f
        speedup(f"score_samples n={n} P={P}", score_at)
        speedup(f"heuristic E-step n={n} P={P}",
                lambda tt: lambda: _estep.heuristic_estep(table, X, prev,
                                                          np.random.default_rng(2), tt))
        speedup(f"hard_stats n={n} P={P}", lambda tt: lambda: hard_stats(X, flat, P, shift, tt))
        model.n_threads = t
        n_fit = fit_ns[1]
        res = {tt: fit_iteration(Xfit[:n_fit], fit_layers, tt, ctx.seed, lbfgs) for tt in (lo, hi)}
        for i, label in ((0, "E-step"), (1, "M-step")):
            rows.append(row(NAME, f"threads {hi} vs {lo}", f"fit {label} {fit_layers} n={n_fit}",
                            res[hi][i], "s", ref=f"{lo} thread", ref_value=res[lo][i],
                            ratio=res[lo][i] / res[hi][i], series="threads"))

    # ---------------------------------------------------------------- peak memory vs n
    for op, ns, layers in (("score", mem_ns, mem_layers), ("fit", mem_fit_ns, fit_layers)):
        for n in ns:
            rec = memory(op, n, layers, D, t, lbfgs=lbfgs)
            rows.append(row(NAME, f"peak memory {op} {tuple(layers)}", f"extra MB n={n}",
                            rec["extra_mb"], "MB", n=n, op=op, layers=list(layers),
                            series=f"memory_{op}", **rec))
            ctx.log(f"memory {op} n={n}: +{rec['extra_mb']:.1f} MB over "
                    f"{rec['rss_before_mb']:.0f} MB "
                    f"(data {rec['data_mb']:.1f} MB)")
    return rows
