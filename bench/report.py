#!/usr/bin/env python
"""Turn a bench JSON into a markdown report and PNG plots.

    python bench/report.py [RESULTS.json] [--out DIR] [--no-plots]

Default input: bench/results/bench-full.json, else bench-quick.json. Writes DIR/bench-<mode>.md
(the tables meant for the README: machine, headline figures, scoring throughput by path count,
then every benchmark's rows) and, with matplotlib, DIR/<plot>-<mode>.png: throughput vs paths,
time vs n, peak memory vs n, M-step per-group vs Kronecker. DIR defaults to the JSON's folder.
Ratios follow the bench convention: > 1 means dgmmcore does better than the reference
(rates: ours / reference; times: reference / ours).
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import fmt  # noqa: E402


def load(path):
    with open(path) as f:
        return json.load(f)


def rows_of(data, bench=None):
    out = []
    for name, entry in data.get("benchmarks", {}).items():
        if bench is None or name == bench:
            out.extend(entry.get("rows", []))
    return out


def md_table(header, body):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for b in body:
        lines.append("| " + " | ".join(str(x) for x in b) + " |")
    return "\n".join(lines)


def _val(r, key="value"):
    v = r.get(key)
    unit = r.get("unit", "")
    if v is None:
        return "-"
    if unit == "" and isinstance(v, (int, float)):
        return f"{100 * v:.1f}%"
    return fmt(v, unit)


def _ratio(r):
    x = r.get("ratio")
    return "" if x is None else f"{x:.2f}x"


def machine_line(data):
    env = data["environment"]
    m, v = env["machine"], env["versions"]
    blas = [f"{b.get('internal_api')} {b.get('version')}" for b in env.get("threadpoolctl", [])
            if b.get("user_api") == "blas"]
    peaks = data.get("peak", {})
    pk = ", ".join(f"{k.replace('float64', 'DGEMM').replace('float32', 'SGEMM').replace('_', ' ')} "
                   f"{p.get('gflops_best', p['gflops']):.1f}" for k, p in sorted(peaks.items()))
    return (f"{m.get('cpu_model')} ({m.get('available_cpus')} CPUs available, "
            f"{m.get('memory_gb')} GB), Python {v.get('python')}, numpy {v.get('numpy')}, "
            f"scipy {v.get('scipy')}, scikit-learn {v.get('sklearn')}, dgmmcore {v.get('dgmmcore')}"
            f"{' (' + ', '.join(sorted(set(blas))) + ')' if blas else ''}. "
            f"numpy GEMM peak (best of repeats), GFLOP/s: {pk or 'not measured'}. "
            f"Mode `{env['mode']}`, median of {env['repeats']} repeats after {env['warmup']} "
            f"warm-up; load average at start "
            f"{', '.join(f'{x:.1f}' for x in m.get('loadavg', []))}.")


def headline_section(data):
    head = data.get("headline", [])
    if not head:
        return ""
    body = []
    for r in head:
        target = r.get("target_ratio", r.get("target", ""))
        body.append([r["case"], r["metric"], _val(r), r.get("ref") or "",
                     _val(r, "ref_value") if r.get("ref") else "", _ratio(r),
                     f">= {target}x" if isinstance(target, (int, float)) else target])
    return "### Headline\n\n" + md_table(
        ["case", "figure", "value", "reference", "ref value", "ratio", "target"], body)


def scoring_pivot(data):
    rows = [r for r in rows_of(data, "scoring") if "paths" in r and r.get("impl")
            and not r["case"].startswith("headline")]
    if not rows:
        return ""
    threads = sorted({r["threads"] for r in rows})
    cols = []
    for t in threads:
        cols += [("dgmmcore", "float64", t), ("dgmmcore", "float32", t), ("sklearn", "float64", t),
                 ("numpy", "float64", t)]
    by = {(r["impl"], r["dtype"], r["threads"], r["paths"]): r for r in rows}
    paths = sorted({r["paths"] for r in rows})
    header = (["paths"] + [f"{i} {'f32' if d == 'float32' else 'f64'} {t}thr" for i, d, t in cols]
              + [f"f64 vs sklearn {t}thr" for t in threads]
              + [f"f64 % DGEMM peak {t}thr" for t in threads])
    body = []
    for P in paths:
        line = [P]
        for i, d, t in cols:
            r = by.get((i, d, t, P))
            line.append(fmt(r["value"]) if r else "-")
        for t in threads:
            r = by.get(("dgmmcore", "float64", t, P))
            line.append(_ratio(r) if r and r.get("ref", "").startswith("sklearn") else "-")
        for t in threads:
            r = by.get(("dgmmcore", "float64", t, P))
            line.append(f"{100 * r['frac_peak_2D2']:.0f}% ({100 * r['frac_peak_D2']:.0f}%)"
                        if r and r.get("frac_peak_2D2") is not None else "-")
        body.append(line)
    return ("### Exact scoring: path evaluations/s at D = 63\n\n" + md_table(header, body) +
            "\n\nPeak fraction counts 2 D^2 flops per evaluation (D^2 in brackets: the kernel "
            "applies triangular factors). scikit-learn: `_estimate_log_gaussian_prob` on the "
            "equivalent GMM (no prior, no log-sum-exp).")


def bench_sections(data):
    out = []
    for name, entry in data.get("benchmarks", {}).items():
        out.append(f"### {name} ({entry.get('seconds', 0):.0f} s)")
        if entry.get("error"):
            out.append("FAILED:\n\n```\n" + entry["error"][-1500:] + "\n```")
            continue
        body = [[r["case"], r["metric"], _val(r), r.get("ref") or "",
                 _val(r, "ref_value") if r.get("ref") else "", _ratio(r)]
                for r in entry.get("rows", [])]
        out.append(md_table(["case", "metric", "value", "reference", "ref value", "ratio"], body))
    return "\n\n".join(out)


def markdown(data):
    mode = data["environment"]["mode"]
    parts = [f"## dgmmcore benchmarks ({mode} run)", machine_line(data), headline_section(data),
             scoring_pivot(data), "Ratios: > 1 means dgmmcore does better than the reference "
             "(rates: ours / reference; times: reference / ours; M-step rows: kronecker / groups).",
             bench_sections(data)]
    return "\n\n".join(p for p in parts if p) + "\n"


# ------------------------------------------------------------------ plots
def _save(fig, ax, plt, out_dir, name, **legend):
    """Legend, grid, write the figure to out_dir/name and close it; returns the path."""
    path = os.path.join(out_dir, name)
    ax.legend(**legend)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plots(data, out_dir, mode):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    written = []

    # throughput vs paths
    rows = [r for r in rows_of(data, "scoring") if "paths" in r and r.get("impl")
            and not r["case"].startswith("headline")]
    if rows:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        styles = {"dgmmcore": "-", "sklearn": "--", "numpy": ":"}
        keys = sorted({(r["impl"], r["dtype"], r["threads"]) for r in rows})
        for impl, dt, t in keys:
            pts = sorted((r["paths"], r["value"]) for r in rows
                         if (r["impl"], r["dtype"], r["threads"]) == (impl, dt, t))
            ax.plot([p for p, _ in pts], [v for _, v in pts], styles.get(impl, "-"), marker="o",
                    label=f"{impl} {'f32' if dt == 'float32' else 'f64'} {t} thr")
        D = rows[0].get("D", 63)
        for t in sorted({r["threads"] for r in rows}):
            pk = data.get("peak", {}).get(f"float64_{t}thr")
            if pk:
                ax.axhline(pk["gflops"] * 1e9 / (2 * D * D), color="grey", lw=0.8, ls="-.")
                ax.text(min(r["paths"] for r in rows), pk["gflops"] * 1e9 / (2 * D * D),
                        f" DGEMM ceiling {t} thr (2D^2)", fontsize=7, va="bottom", color="grey")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("paths (Gaussian components)")
        ax.set_ylabel("path evaluations / s")
        ax.set_title(f"Exact scoring throughput, D={D}")
        written.append(_save(fig, ax, plt, out_dir, f"scoring_throughput-{mode}.png",
                             fontsize=7, ncol=2))

    # time vs n
    sc = rows_of(data, "scaling")
    series = {"score_vs_n": "score_samples", "fit_vs_n": "fit E-step / iteration",
              "fit_mstep_vs_n": "fit M-step / iteration"}
    if any(r.get("series") in series for r in sc):
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for key, label in series.items():
            pts = sorted((r["n"], r["value"]) for r in sc if r.get("series") == key)
            if pts:
                ax.plot([n for n, _ in pts], [v for _, v in pts], marker="o", label=label)
                n0, v0 = pts[0]
                if key != "fit_mstep_vs_n":
                    ns = [n for n, _ in pts]
                    ax.plot(ns, [v0 * n / n0 for n in ns], color="grey", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rows n")
        ax.set_ylabel("seconds")
        ax.set_title("Time vs n (dotted: linear)")
        written.append(_save(fig, ax, plt, out_dir, f"time_vs_n-{mode}.png", fontsize=8))

    # memory vs n
    mem = [r for r in sc if str(r.get("series", "")).startswith("memory_")]
    if mem:
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for key in sorted({r["series"] for r in mem}):
            pts = sorted((r["n"], r["value"], r.get("data_mb", 0)) for r in mem
                         if r["series"] == key)
            ax.plot([n for n, _, _ in pts], [v for _, v, _ in pts], marker="o",
                    label=key.replace("memory_", "") + " (peak extra)")
        pts = sorted({(r["n"], r.get("data_mb", 0)) for r in mem})
        ax.plot([n for n, _ in pts], [d for _, d in pts], color="grey", ls=":", label="size of X")
        ax.set_xscale("log")
        ax.set_yscale("symlog")
        ax.set_xlabel("rows n")
        ax.set_ylabel("MB above the RSS before the call")
        ax.set_title("Peak memory vs n")
        written.append(_save(fig, ax, plt, out_dir, f"memory_vs_n-{mode}.png", fontsize=8))

    # M-step crossover
    ms = [r for r in rows_of(data, "mstep") if r.get("groups")]
    if ms:
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        ev = sorted((r["groups"], r["value"], r["ref_value"]) for r in ms
                    if r["metric"] == "s/eval groups")
        nd = sorted((r["groups"], r["value"], r["ref_value"]) for r in ms
                    if r["metric"].startswith("s/node"))
        if ev:
            ax.plot([g for g, _, _ in ev], [a for _, a, _ in ev], "o-", label="groups: per eval")
            ax.plot([g for g, _, _ in ev], [b for _, _, b in ev], "s-", label="kronecker: per eval")
        if nd:
            ax.plot([g for g, _, _ in nd], [a for _, a, _ in nd], "o--",
                    label="groups: L-BFGS-B node")
            ax.plot([g for g, _, _ in nd], [b for _, _, b in nd], "s--",
                    label="kronecker: L-BFGS-B node (+assembly)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("path groups G")
        ax.set_ylabel("seconds")
        ax.set_title("M-step node objective: per-group vs Kronecker")
        written.append(_save(fig, ax, plt, out_dir, f"mstep_crossover-{mode}.png", fontsize=8))
    return written


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("json", nargs="?", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args(argv)
    path = args.json
    if path is None:
        for cand in ("bench-full.json", "bench-quick.json"):
            c = os.path.join(HERE, "results", cand)
            if os.path.exists(c):
                path = c
                break
    if path is None:
        print("no results JSON given or found in bench/results/", file=sys.stderr)
        return 2
    data = load(path)
    mode = data["environment"]["mode"]
    out_dir = args.out or os.path.dirname(os.path.abspath(path))
    os.makedirs(out_dir, exist_ok=True)
    md_path = os.path.join(out_dir, f"bench-{mode}.md")
    with open(md_path, "w") as f:
        f.write(markdown(data))
    print(f"wrote {md_path}")
    if not args.no_plots:
        try:
            for p in plots(data, out_dir, mode):
                print(f"wrote {p}")
        except ImportError:
            print("matplotlib not installed: no plots (pip install matplotlib)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
