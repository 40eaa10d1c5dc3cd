#!/usr/bin/env python
"""Run the dgmmcore bench suite, print a table and write JSON.

    python bench/run.py [--smoke | --quick] [--out DIR] [--only NAME,...] [--case TEXT,...]
                        [--threads 1,2]

Modes: ``--smoke`` tiny sizes, seconds (CI: proves every benchmark still runs); ``--quick`` a
few minutes on 2 cores; default (full) is what the README tables come from (up to about an
hour; BSDS300 patches for the end-to-end fits). ``--only fit --case TEXT`` keeps only the
cases whose label contains one of the texts (fit has long independent cases). The JSON goes to
DIR/bench-<mode>.json (DIR/bench-<names>-<cases>-<mode>.json with --only or --case, so a
partial run never replaces the whole suite's; default DIR: bench/results/) and holds the
machine, thread counts, library versions, threadpoolctl info and every row (median of the
repeats after a warm-up, raw times, CPU utilisation). ``python bench/report.py`` turns it into
markdown tables and PNG plots.

The package must be importable (installed, or PYTHONPATH pointing at a built checkout).
Exit status 1 if any benchmark raised (its traceback is in the JSON and on stderr).
"""
import argparse
import importlib
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from common import Context, environment, format_table, machine_info, write_json  # noqa: E402

BENCHMARKS = ["peak", "scoring", "estep", "prune", "nodes", "soft", "stats", "mstep", "fit",
              "scaling", "impute", "distributed"]
CASE_BENCHMARKS = ["fit"]  # the benchmarks whose cases --case can pick


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="a few minutes on 2 cores")
    g.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (CI)")
    p.add_argument("--out", default=None, help="output folder (default bench/results)")
    p.add_argument("--only", default=None,
                   help="comma-separated subset of: " + ",".join(BENCHMARKS))
    p.add_argument("--case", default=None,
                   help="comma-separated label substrings: run only those cases (with --only "
                        "fit: 'fit 100k', 'fit 1M', 'iteration')")
    p.add_argument("--threads", default=None,
                   help="thread counts to compare (default: 1 and the CPUs available, max 2 "
                        "distinct values, e.g. '1,2')")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per figure")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true", help="no per-case progress lines")
    return p.parse_args(argv)


def default_threads():
    try:
        from dgmmcore._threads import available_cpus
        n = available_cpus()
    except Exception:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return sorted({1, max(1, min(int(n), 2))})


def main(argv=None):
    args = parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    names = BENCHMARKS if not args.only else [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {BENCHMARKS}", file=sys.stderr)
        return 2
    if args.case and not set(names) <= set(CASE_BENCHMARKS):
        print(f"--case picks cases of {CASE_BENCHMARKS} only; add --only "
              f"{','.join(CASE_BENCHMARKS)}", file=sys.stderr)
        return 2
    thr = ([int(x) for x in args.threads.split(",")] if args.threads else default_threads())
    cases = [c.strip() for c in args.case.split(",") if c.strip()] if args.case else None
    ctx = Context(mode, thr, repeats=args.repeats, seed=args.seed, verbose=not args.quiet,
                  cases=cases)
    out_dir = args.out or os.path.join(HERE, "results")
    parts = (names if args.only else []) + [c.replace(" ", "_") for c in cases or []]
    stem = f"bench-{'-'.join(parts)}-{mode}" if parts else f"bench-{mode}"
    out_path = os.path.join(out_dir, f"{stem}.json")

    env = environment(ctx)
    print(f"dgmmcore bench ({mode}): {env['machine'].get('cpu_model')}, "
          f"{env['machine'].get('available_cpus')} CPUs, threads {thr}, "
          f"repeats {ctx.repeats}, dgmmcore {env['versions'].get('dgmmcore')} "
          f"from {env['versions'].get('dgmmcore_path')}", flush=True)
    results = {"environment": env, "benchmarks": {}, "peak": {}}
    all_rows, failed = [], []
    t_start = time.perf_counter()
    for name in names:
        print(f"== {name}", flush=True)
        mod = importlib.import_module(f"bench_{name}")
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        entry = {"module": f"bench_{name}.py"}
        try:
            rows = mod.run(ctx)
            entry["rows"] = rows
            all_rows.extend(rows)
        except Exception:
            tb = traceback.format_exc()
            print(tb, file=sys.stderr, flush=True)
            entry["error"] = tb
            entry["rows"] = []
            failed.append(name)
        entry["seconds"] = time.perf_counter() - t0
        entry["loadavg_before"] = list(load0)
        entry["loadavg_after"] = list(os.getloadavg())
        results["benchmarks"][name] = entry
        print(f"   ({entry['seconds']:.1f} s)", flush=True)
        # write as we go: a long run that dies late still leaves its figures
        results["peak"] = {f"{k[0]}_{k[1]}thr": v for k, v in ctx._peak.items()}
        results["headline"] = [r for r in all_rows if r.get("headline")]
        results["environment"]["seconds"] = time.perf_counter() - t_start
        write_json(out_path, results)

    results["environment"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results["environment"]["machine_end"] = {"loadavg": machine_info()["loadavg"]}
    results["failed"] = failed
    if cases and not all_rows and not failed:
        print(f"no case label contains any of {cases}", file=sys.stderr)
        return 2
    write_json(out_path, results)

    print()
    print(format_table(all_rows))
    head = results["headline"]
    if head:
        print("\nHeadline")
        print(format_table(head))
    print(f"\nwrote {out_path} ({time.perf_counter() - t_start:.0f} s)")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
