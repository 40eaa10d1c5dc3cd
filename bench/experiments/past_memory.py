"""Fit and score a .npy file larger than the memory the process may use.

    python bench/experiments/past_memory.py [--gb 4] [--limit-mb 1024] [--layers 10,5,5]
                                            [--iters 2] [--file PATH]

Writes a float64 .npy of --gb gigabytes (BSDS300-protocol patches from the embedded data set,
tiled with fresh dequantisation noise), then, in a child process confined to a memory cgroup of
--limit-mb (Linux cgroup v1 or v2; root needed to create one), fits a Deep GMM on the file
path and scores it. The data are read block by block from the memory map (dgmmcore._data), so
the fit needs the blocks, the per-row paths and the statistics, not the data set. The child
samples its anonymous resident memory (RssAnon) every 50 ms and reports the peak; the page
cache the kernel keeps for the file is reclaimable and does not count. As a control the same
cgroup then runs ``np.load`` of the file, which must be killed (the limit is real).
Result: bench/results/past-memory.json.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bsds300 import machine, write_json  # noqa: E402

CHILD = textwrap.dedent("""
    import json, sys, threading, time, warnings
    import numpy as np
    from dgmmcore import DeepGMM

    peak = [0]
    def rss_anon():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    def sample():
        while True:
            peak[0] = max(peak[0], rss_anon())
            time.sleep(0.05)
    threading.Thread(target=sample, daemon=True).start()
    path, layers, iters = sys.argv[1], tuple(map(int, sys.argv[2].split(","))), int(sys.argv[3])
    base = rss_anon()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = DeepGMM(layers, max_iter=iters, tol=0, random_state=0).fit(path)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ll = model.score_samples(path)
    score_s = time.perf_counter() - t0
    time.sleep(0.1)
    print(json.dumps({"fit_seconds": fit_s, "score_seconds": score_s,
                      "mean_loglik": float(ll.mean()), "rows": int(ll.size),
                      "peak_rss_anon": peak[0], "rss_anon_at_start": base,
                      "iterations": model.n_iter_}))
""")


def write_data(path, gigabytes, seed=0):
    from dgmmcore import datasets
    raw = datasets._load_default_raw("train")  # uint8 patches (n, 64)
    D = raw.shape[1] - 1
    n = int(gigabytes * 2**30) // (8 * D)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n, D))
    rng = np.random.default_rng(seed)
    step = 1 << 18
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        rows = raw[rng.integers(0, len(raw), hi - lo)]
        out[lo:hi] = datasets.preprocess(rows, random_state=rng)
    out.flush()
    del out
    # Drop the file from the page cache: pages cached now would stay charged to this process's
    # cgroup, not to the limited child that reads them.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return n


class MemoryCgroup:
    """A memory-limited cgroup to start children in (v2 if mounted, else v1); None if the
    system does not let us create one."""

    def __init__(self, limit_bytes):
        self.path = None
        name = f"dgmm-past-memory-{os.getpid()}"
        for root, marker, limit_file in (
                ("/sys/fs/cgroup", "cgroup.controllers", "memory.max"),
                ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.limit_in_bytes")):
            if not os.path.exists(os.path.join(root, marker)):
                continue  # not a cgroup file system of that version
            path = os.path.join(root, name)
            try:
                os.mkdir(path)
                if not os.path.exists(os.path.join(path, limit_file)):
                    raise OSError("no memory controller here")
                with open(os.path.join(path, limit_file), "w") as f:
                    f.write(str(limit_bytes))
                swap = "memory.swap.max" if limit_file == "memory.max" else None
                if swap and os.path.exists(os.path.join(path, swap)):
                    with open(os.path.join(path, swap), "w") as f:
                        f.write("0")
                self.path = path
                return
            except OSError:
                try:
                    os.rmdir(path)
                except OSError:
                    pass

    def run(self, cmd):
        """Run cmd inside the cgroup; returns the CompletedProcess."""
        def enter():
            if self.path:
                with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))
        return subprocess.run(cmd, capture_output=True, text=True, preexec_fn=enter)

    def peak_bytes(self):
        """Peak memory charged to the cgroup (anonymous memory and page cache), if known."""
        for name in ("memory.peak", "memory.max_usage_in_bytes"):
            try:
                with open(os.path.join(self.path, name)) as f:
                    return int(f.read())
            except (OSError, TypeError, ValueError):
                pass
        return None

    def close(self):
        if self.path:
            try:
                os.rmdir(self.path)
            except OSError:
                pass


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--gb", type=float, default=4.0, help="size of the data file")
    p.add_argument("--limit-mb", type=int, default=1024, help="memory limit of the fit")
    p.add_argument("--layers", default="10,5,5")
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--file", default=None, help="data file (default: a temporary file)")
    args = p.parse_args(argv)
    tmpdir = None
    path = args.file
    if path is None:
        tmpdir = tempfile.mkdtemp(prefix="dgmm-past-memory-", dir=os.path.join(HERE, "..", "out"))
        path = os.path.join(tmpdir, "patches.npy")
    if not os.path.exists(path):
        t0 = time.perf_counter()
        n = write_data(path, args.gb)
        print(f"wrote {n} rows ({os.path.getsize(path) / 2**30:.2f} GiB) in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    size = os.path.getsize(path)
    cgroup = MemoryCgroup(args.limit_mb << 20)
    try:
        print(f"memory cgroup: {cgroup.path or 'none (not permitted): no limit'}", flush=True)
        fit = cgroup.run([sys.executable, "-c", CHILD, path, args.layers, str(args.iters)])
        if fit.returncode != 0:
            raise SystemExit(f"the fit failed (rc {fit.returncode}):\n{fit.stderr[-3000:]}")
        result = json.loads(fit.stdout.strip().splitlines()[-1])
        result["cgroup_peak_bytes"] = cgroup.peak_bytes()
        control = cgroup.run([sys.executable, "-c",
                              f"import numpy as np; np.load({path!r}).sum(); print('loaded')"])
    finally:
        cgroup.close()
        if tmpdir:
            os.remove(path)
            os.rmdir(tmpdir)
    result.update({"file_bytes": size,
                   "limit_bytes": (args.limit_mb << 20) if cgroup.path else None,
                   "layers": [int(t) for t in args.layers.split(",")],
                   "np_load_in_same_limit": "completed" if control.returncode == 0
                   else f"killed or failed (rc {control.returncode})",
                   "machine": machine()})
    print(f"fit of {result['rows']} rows ({size / 2**30:.2f} GiB) under a "
          f"{args.limit_mb} MiB limit: "
          f"{result['fit_seconds']:.0f} s for {result['iterations']} iterations, scoring "
          f"{result['score_seconds']:.0f} s; peak anonymous memory "
          f"{result['peak_rss_anon'] / 2**20:.0f} MiB; np.load in the same limit: "
          f"{result['np_load_in_same_limit']}")
    write_json("past-memory.json", result)


if __name__ == "__main__":
    sys.exit(main())
