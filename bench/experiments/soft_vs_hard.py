"""One more hard-EM iteration against one soft-EM iteration for a trained BSDS300 network.

    python bench/experiments/soft_vs_hard.py --model NET.model.npz [--checkpoint NET.ckpt.npz]
        --train 1000000 [--root R] [--seed 0] [--float32] [--threads T] [--iters 1]
        [--arms hard,soft,truncated,reused] [--truncation 50] [--no-search] [--rerank-every 3]

The network is continued on the same --train patches it was trained on (the bsds300.py draw
with --seed), once per arm for --iters iterations: hard EM (the heuristic), soft EM over all
paths, truncated soft EM (the heuristic's paths with --truncation choices per layer around
them), the same reusing its ranking of each layer's choices between rankings on every
--rerank-every-th E-step (``reused``; DeepGMM's rerank_every), all truncated arms without the
search with --no-search; the hard and truncated arms start from the checkpoint's paths when
given (otherwise from the exact search). Each is
scored on the Table 1 validation (50,000) and test (250,000) patches: the paired differences
to the network as it was, with their standard errors, go to
bench/results/bsds300-soft-vs-hard.json (an arm run again replaces its own result only).
"""
import argparse
import copy
import os
import sys
import time
import warnings

from bsds300 import (DEFAULT_ROOT, checkpoint_paths, load_data, load_train, mean_and_stderr,
                     merge_rows, read_json, write_json)


def main(argv=None):
    from dgmmcore import ConvergenceWarning, load
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--checkpoint", help="the network's checkpoint: its rows' last paths")
    p.add_argument("--train", type=int, required=True)
    p.add_argument("--test", type=int, default=250_000)
    p.add_argument("--root", default=DEFAULT_ROOT)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--float32", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--iters", type=int, default=1)
    p.add_argument("--arms", default="hard,soft",
                   help="comma-separated, of hard, soft, truncated, reused")
    p.add_argument("--truncation", type=int, default=50,
                   help="choices kept per layer by the truncated arms")
    p.add_argument("--no-search", action="store_true",
                   help="truncated arms: the candidates around the last paths are the search")
    p.add_argument("--rerank-every", type=int, default=3,
                   help="the reused arm ranks each layer's choices on every this many E-steps")
    args = p.parse_args(argv)
    arms = args.arms.split(",")
    if not arms or not set(arms) <= {"hard", "soft", "truncated", "reused"}:
        p.error(f"--arms: choose from hard, soft, truncated, reused, not {args.arms!r}")
    args.dataset = "bsds300"  # what bsds300.py's loaders read

    X = load_train(args, args.train)
    held_out = {"validation": load_data(args, "validation", min(args.test, 50_000)),
                "test": load_data(args, "test", args.test)}
    base = load(args.model)
    base.n_threads = args.threads
    paths = checkpoint_paths(args.checkpoint, base.layers) if args.checkpoint else None
    before = {k: base.score_samples(V) for k, V in held_out.items()}
    key = lambda r: (r["model"], r["train_patches"], r["iterations"])  # noqa: E731
    old_rows = read_json("bsds300-soft-vs-hard.json").get("rows", [])
    row = {"model": os.path.basename(args.model), "train_patches": args.train,
           "iterations": args.iters, "before": {k: float(v.mean()) for k, v in before.items()}}
    row = {**next((r for r in old_rows if key(r) == key(row)), {}), **row}
    for arm in arms:
        model = copy.deepcopy(base)
        model.warm_start, model.max_iter, model.verbose = True, args.iters, 1
        model.estep = "soft" if arm == "soft" else "heuristic"
        truncated = arm in ("truncated", "reused")
        model.truncation = args.truncation if truncated else None
        name = f"truncated{args.truncation}" if truncated else arm
        if truncated and args.no_search:
            model.warm_passes, model.n_restarts = 0, 0
            name += "-nosearch"
        if arm == "reused":
            model.rerank_every = args.rerank_every
            name += f"-rerank{args.rerank_every}"
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, init_paths=paths if arm != "soft" else None)
        result = {"fit_seconds": time.perf_counter() - t0, "objective": model.objective_,
                  "objectives": [h["objective"] for h in model.history_],
                  "estep_seconds": [h["estep_seconds"] for h in model.history_]}
        for k, V in held_out.items():
            result[k], result[k + "_stderr"] = mean_and_stderr(model.score_samples(V) - before[k])
        row[name] = result
        print(f"{name}: {result['fit_seconds']:.0f} s, validation {result['validation']:+.4f} "
              f"+- {result['validation_stderr']:.4f}, test {result['test']:+.4f} "
              f"+- {result['test_stderr']:.4f} (paired, against the network as it was)",
              flush=True)
    write_json("bsds300-soft-vs-hard.json", {"rows": merge_rows(old_rows, [row], key)})


if __name__ == "__main__":
    sys.exit(main())
