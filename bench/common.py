"""Shared helpers for the bench suite: run context, timing, thread control, machine info, JSON.

Every benchmark module exposes ``NAME`` and ``run(ctx) -> list of rows``. A row is a flat dict:

    bench, case, metric, value, unit           what was measured (value = median of repeats)
    ref, ref_value, ratio                      the reference measured in the same run (optional)
    times, repeats, warmup, cpu_util           raw timings (seconds) behind a timed figure
    headline                                   True for the figures the README leads with
    plus any parameters of the case (threads, dtype, n, paths, layers, ...).

Timing protocol (``measure``): ``warmup`` untimed calls, then ``repeats`` timed calls; the
figure is the median. ``cpu_util`` = process CPU time / (wall time x threads) over the timed
calls: well below 1 means the process was descheduled (another job on the machine) or the
kernel does not keep its threads busy.
"""
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
from contextlib import contextmanager

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

HERE = os.path.dirname(os.path.abspath(__file__))

# Sizes per mode. Benchmarks read ``ctx.size(key)``; every key must exist in every mode.
MODES = ("smoke", "quick", "full")

BSDS300_ROOT = os.environ.get("DGMM_BSDS300", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "bsds300"))


class Context:
    """What a benchmark needs: mode, thread counts, repeats, cached peaks and data sets."""

    def __init__(self, mode, threads, repeats=None, seed=0, verbose=True, cases=None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode
        self.threads = list(threads)
        self.max_threads = max(self.threads)
        self.repeats = repeats if repeats is not None else {"smoke": 1, "quick": 3, "full": 3}[mode]
        self.warmup = 0 if mode == "smoke" else 1
        # Untimed full-size calls before the timed ones. Benchmarks always warm up first with a
        # call on a small slice (builds path tables, wakes thread pools); the full run adds one
        # full-size call on top, quick runs save the time.
        self.warmup_big = 1 if mode == "full" else 0
        self.seed = seed
        self.verbose = verbose
        self.cases = list(cases) if cases else None
        self._peak = {}
        self._cache = {}

    def pick(self, smoke, quick, full):
        """The value for the current mode."""
        return {"smoke": smoke, "quick": quick, "full": full}[self.mode]

    def include(self, case):
        """Whether to run a case: every case, or those whose label contains one of ``--case``'s
        substrings. Benchmarks with long, independent cases opt in by asking before each."""
        return self.cases is None or any(c in case for c in self.cases)

    def log(self, *args):
        if self.verbose:
            print("   ", *args, flush=True)

    # -------------------------------------------------------------- machine limit
    def peak(self, dtype, threads):
        """numpy GEMM GFLOP/s for dtype at a BLAS thread count (measured once, cached).

        The machine limit is the best of the repeats (``gflops_best``), not the median: load
        from other processes can only slow a GEMM down, and a fraction of peak should not
        exceed 1 because the denominator caught a busy moment. The median is in the JSON."""
        key = (np.dtype(dtype).name, int(threads))
        if key not in self._peak:
            self._peak[key] = gemm_gflops(dtype, threads, self.pick(256, 2048, 3072),
                                          max(5, self.repeats), max(1, self.warmup))
        return self._peak[key]["gflops_best"]

    def peak_record(self, dtype, threads):
        self.peak(dtype, threads)
        return self._peak[(np.dtype(dtype).name, int(threads))]

    def cached(self, key, fn):
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]


# ------------------------------------------------------------------ timing
@contextmanager
def threads(n):
    """Fix BLAS and OpenMP pools of every loaded library at ``n`` threads (threadpoolctl).
    dgmmcore's kernels take their own ``n_threads`` and run BLAS single-threaded inside."""
    with threadpool_limits(limits=int(n)):
        yield


def measure(fn, repeats, warmup=1, n_threads=1, setup=None):
    """Call ``fn()`` ``warmup`` times untimed, then ``repeats`` times timed.

    ``setup()`` (untimed) runs before every call and its result is passed to ``fn`` when it is
    not None. Returns a dict: median, min, max, times (s), repeats, warmup, cpu_util, result
    (of the last call)."""
    result = None
    for _ in range(warmup):
        arg = setup() if setup else None
        result = fn(arg) if arg is not None else fn()
    times, cpu = [], 0.0
    for _ in range(max(1, repeats)):
        arg = setup() if setup else None
        gc.collect()
        gc.disable()
        try:
            c0 = time.process_time()
            t0 = time.perf_counter()
            result = fn(arg) if arg is not None else fn()
            t1 = time.perf_counter()
            cpu += time.process_time() - c0
        finally:
            gc.enable()
        times.append(t1 - t0)
    wall = sum(times)
    return {
        "median": float(np.median(times)),
        "min": float(min(times)),
        "max": float(max(times)),
        "times": [float(t) for t in times],
        "repeats": len(times),
        "warmup": int(warmup),
        "cpu_util": float(cpu / (wall * max(1, n_threads))) if wall > 0 else float("nan"),
        "result": result,
    }


def measure_interleaved(fns, repeats, warmup=1, n_threads=None):
    """Like ``measure`` for several candidates at once, calling them round-robin
    (A B C A B C ...), so a burst of load from another process hits all of them alike and
    their ratios stay meaningful on a shared machine. ``fns``: name -> callable;
    ``n_threads``: name -> threads (for cpu_util). Returns name -> measure dict."""
    names = list(fns)
    n_threads = n_threads or {}
    for _ in range(warmup):
        for k in names:
            fns[k]()
    times = {k: [] for k in names}
    cpu = {k: 0.0 for k in names}
    result = {}
    for _ in range(max(1, repeats)):
        for k in names:
            gc.collect()
            gc.disable()
            try:
                c0 = time.process_time()
                t0 = time.perf_counter()
                result[k] = fns[k]()
                t1 = time.perf_counter()
                cpu[k] += time.process_time() - c0
            finally:
                gc.enable()
            times[k].append(t1 - t0)
    out = {}
    for k in names:
        ts, wall = times[k], sum(times[k])
        out[k] = {"median": float(np.median(ts)), "min": float(min(ts)), "max": float(max(ts)),
                  "times": [float(t) for t in ts], "repeats": len(ts), "warmup": int(warmup),
                  "cpu_util": float(cpu[k] / (wall * max(1, n_threads.get(k, 1)))) if wall > 0
                  else float("nan"), "interleaved": names, "result": result[k]}
    return out


def timing_fields(m):
    """The JSON-able part of a ``measure`` result (drops ``result``)."""
    return {k: v for k, v in m.items() if k != "result"}


def row(bench, case, metric, value, unit, *, ref=None, ref_value=None, ratio=None,
        timing=None, **params):
    """One result. ``ratio`` defaults to value / ref_value; pass it explicitly where "higher is
    better" needs the inverse (times: ref / ours), or False for no ratio (e.g. log-likelihoods).
    Convention: ratio > 1 means dgmmcore does better than the reference."""
    r = {"bench": bench, "case": case, "metric": metric, "value": _num(value), "unit": unit}
    if ref is not None:
        r["ref"] = ref
        r["ref_value"] = _num(ref_value)
        if ratio is None and ref_value and value is not None:
            ratio = value / ref_value
        r["ratio"] = None if ratio is False else _num(ratio)
    if timing is not None:
        r.update(timing_fields(timing))
    r.update(params)
    return r


def _num(v):
    if v is None:
        return None
    v = float(v)
    return v if np.isfinite(v) else None


def gemm_gflops(dtype, n_threads, size, repeats, warmup=1):
    """Square GEMM C = A B of ``size`` with numpy at ``n_threads`` BLAS threads."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    out = np.empty((size, size), dtype=dtype)
    with threads(n_threads):
        m = measure(lambda: np.matmul(a, b, out=out), repeats, warmup, n_threads)
    flops = 2.0 * size ** 3
    rec = timing_fields(m)
    rec.update({"size": size, "dtype": np.dtype(dtype).name, "threads": int(n_threads),
                "gflops": flops / m["median"] / 1e9, "gflops_best": flops / m["min"] / 1e9})
    return rec


# ------------------------------------------------------------------ test problems
def random_model(layers, D=63, seed=0, n_threads=1):
    """A Deep GMM at the scale of image patches, with overlapping paths.

    Layer k (producing x) nodes: A = 0.1 (I + 0.3 G / sqrt(D)), b ~ 0.05 N(0, I) (patch-like
    scale); other layers: small deformations of the identity. Random joint prior. Scores of
    many paths fall within a few nats of each other, as on real data, so the running
    log-sum-exp really does its exps."""
    from dgmmcore import DeepGMM
    rng = np.random.default_rng(seed)
    A, b = [], []
    for j, N in enumerate(layers):
        noise = rng.standard_normal((N, D, D)) / np.sqrt(D)
        if j == len(layers) - 1:
            A.append(0.1 * (np.eye(D) + 0.3 * noise))
            b.append(0.05 * rng.standard_normal((N, D)))
        else:
            A.append(np.eye(D) + 0.1 * noise)
            b.append(0.1 * rng.standard_normal((N, D)))
    w = 0.5 + rng.random(tuple(layers))
    w /= w.sum()
    return DeepGMM.from_params(A, b, w, n_threads=n_threads)


def model_data(model, n, seed=0):
    """n rows sampled from the model (float64, C order)."""
    X, _ = model.sample(int(n), random_state=seed)
    return np.ascontiguousarray(X)


def patches(source, split, n, seed=0):
    """Natural image patches (n, 63): 'default' = the embedded set, 'bsds300' = BSDS300."""
    from dgmmcore.datasets import load_bsds300, load_default
    if source == "default":
        return load_default(split, n_patches=n, random_state=seed)
    if source == "bsds300":
        return load_bsds300(BSDS300_ROOT, split, n_patches=n, random_state=seed)
    raise ValueError(source)


def bsds300_available():
    return os.path.isfile(os.path.join(BSDS300_ROOT, "iids_train.txt"))


# ------------------------------------------------------------------ machine and versions
def machine_info():
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "logical_cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        names = [l.split(":", 1)[1].strip() for l in text.splitlines()
                 if l.startswith("model name")]
        info["cpu_model"] = names[0] if names else platform.processor()
        flags = next((l.split(":", 1)[1].split() for l in text.splitlines()
                      if l.startswith("flags")), [])
        info["simd"] = sorted(f for f in flags if f.startswith(("avx", "fma", "sse4")))
        mhz = [float(l.split(":", 1)[1]) for l in text.splitlines() if l.startswith("cpu MHz")]
        if mhz:
            info["cpu_mhz"] = max(mhz)
    except OSError:
        info["cpu_model"] = platform.processor()
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    info["memory_gb"] = round(int(line.split()[1]) / 2 ** 20, 2)
    except OSError:
        pass
    try:
        from dgmmcore._threads import available_cpus
        info["available_cpus"] = available_cpus()
    except Exception:  # pragma: no cover - older package layouts
        info["available_cpus"] = len(os.sched_getaffinity(0))
    info["loadavg"] = list(os.getloadavg())
    info["omp_num_threads_env"] = os.environ.get("OMP_NUM_THREADS")
    return info


def versions():
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("scipy", "sklearn", "threadpoolctl", "dgmmcore", "matplotlib", "Cython"):
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "?")
        except Exception:
            out[name] = None
    try:
        import dgmmcore
        out["dgmmcore_path"] = os.path.dirname(dgmmcore.__file__)
    except Exception:
        pass
    return out


def dgmmcore_config():
    try:
        import io
        from dgmmcore import show_config
        return show_config(file=io.StringIO())
    except Exception as exc:  # show_config may change; never fail the run over it
        return {"error": repr(exc)}


def git_info():
    root = os.path.dirname(HERE)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return {"commit": commit or None, "dirty": bool(dirty)}
    except Exception:
        return {"commit": None}


def environment(ctx):
    """Everything about the run that is not a measurement."""
    import dgmmcore  # noqa: F401  (load its libraries so threadpoolctl sees them)
    try:
        import sklearn.mixture  # noqa: F401
    except Exception:
        pass
    return {
        "mode": ctx.mode,
        "threads": ctx.threads,
        "repeats": ctx.repeats,
        "warmup": ctx.warmup,
        "machine": machine_info(),
        "versions": versions(),
        "threadpoolctl": threadpool_info(),
        "dgmmcore_config": dgmmcore_config(),
        "git": git_info(),
        "argv": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# ------------------------------------------------------------------ memory
def _proc_status_mb(field):
    """A memory field of /proc/self/status ("VmHWM", "VmRSS", ...) in MB, or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mb():
    """Peak resident set of this process so far, MB (VmHWM; ru_maxrss as a fallback)."""
    peak = _proc_status_mb("VmHWM")
    if peak is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return peak


def current_rss_mb():
    rss = _proc_status_mb("VmRSS")
    return float("nan") if rss is None else rss


def reset_peak_rss():
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs). Returns success."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ------------------------------------------------------------------ output
def to_jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if np.isfinite(v) else None
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj


def write_json(path, data):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(to_jsonable(data), f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def fmt(v, unit=""):
    """Compact number for tables."""
    if v is None:
        return "-"
    a = abs(v)
    if a == 0:
        s = "0"
    elif a >= 1e9:
        s = f"{v / 1e9:.2f}G"
    elif a >= 1e6:
        s = f"{v / 1e6:.2f}M"
    elif a >= 1e4:
        s = f"{v / 1e3:.1f}k"
    elif a >= 100:
        s = f"{v:.0f}"
    elif a >= 1:
        s = f"{v:.3g}"
    else:
        s = f"{v:.3g}"
    return f"{s} {unit}".strip() if unit else s


def format_table(rows, columns=("bench", "case", "metric", "value", "ref", "ref_value", "ratio")):
    """Plain-text table of rows (value/ref_value with units)."""
    lines = []
    body = []
    for r in rows:
        body.append([
            r.get("bench", ""), r.get("case", ""), r.get("metric", ""),
            fmt(r.get("value"), r.get("unit", "")),
            r.get("ref", "") or "",
            fmt(r.get("ref_value"), r.get("unit", "")) if r.get("ref") else "",
            (f"{r['ratio']:.2f}x" if r.get("ratio") is not None else ""),
        ])
    head = ["bench", "case", "metric", "value", "reference", "ref value", "ratio"]
    widths = ([max(len(str(x)) for x in col) for col in zip(head, *body)] if body
              else [len(h) for h in head])
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    lines.append("  ".join("-" * w for w in widths))
    for b in body:
        lines.append("  ".join(str(x).ljust(w) for x, w in zip(b, widths)))
    return "\n".join(lines)
