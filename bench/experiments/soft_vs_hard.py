"""One more hard-EM iteration against one soft-EM iteration for a trained BSDS300 network.

    python bench/experiments/soft_vs_hard.py --model NET.model.npz [--checkpoint NET.ckpt.npz]
        --train 1000000 [--root R] [--seed 0] [--float32] [--threads T] [--iters 1]

The network is continued on the same --train patches it was trained on (the bsds300.py draw
with --seed), once by hard EM (the heuristic, from its checkpoint's paths when given) and once
by soft EM, each for --iters iterations, and both are scored on the Table 1 validation
(50,000) and test (250,000) patches: the paired differences to the network as it was, with
their standard errors, go to bench/results/bsds300-soft-vs-hard.json.
"""
import argparse
import copy
import json
import os
import sys
import time
import warnings

import numpy as np

from bsds300 import DEFAULT_ROOT, mean_and_stderr

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "..", "results")


def main(argv=None):
    from dgmmcore import ConvergenceWarning, datasets, load
    from dgmmcore._network import unravel_paths
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
    args = p.parse_args(argv)

    X = datasets.load_bsds300(args.root, "train", n_patches=args.train, random_state=args.seed)
    if args.float32:
        X = X.astype(np.float32)
    held_out = {"validation": datasets.load_bsds300(args.root, "validation",
                                                    n_patches=min(args.test, 50_000),
                                                    random_state=args.seed),
                "test": datasets.load_bsds300(args.root, "test", n_patches=args.test,
                                              random_state=args.seed)}
    base = load(args.model)
    base.n_threads = args.threads
    paths = None
    if args.checkpoint:
        with np.load(args.checkpoint, allow_pickle=False) as f:
            paths = unravel_paths(f["checkpoint_paths"], base.layers)
    before = {k: base.score_samples(V) for k, V in held_out.items()}
    row = {"model": os.path.basename(args.model), "train_patches": args.train,
           "iterations": args.iters, "before": {k: float(v.mean()) for k, v in before.items()}}
    for name, estep in (("hard", "heuristic"), ("soft", "soft")):
        model = copy.deepcopy(base)
        model.warm_start, model.estep, model.max_iter, model.verbose = True, estep, args.iters, 1
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, init_paths=paths if estep == "heuristic" else None)
        result = {"fit_seconds": time.perf_counter() - t0, "objective": model.objective_}
        for k, V in held_out.items():
            result[k], result[k + "_stderr"] = mean_and_stderr(model.score_samples(V) - before[k])
        row[name] = result
        print(f"{name}: {result['fit_seconds']:.0f} s, validation {result['validation']:+.4f} "
              f"+- {result['validation_stderr']:.4f}, test {result['test']:+.4f} "
              f"+- {result['test_stderr']:.4f} (paired, against the network as it was)",
              flush=True)
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "bsds300-soft-vs-hard.json")
    rows = json.load(open(path))["rows"] if os.path.exists(path) else []
    key = (row["model"], row["train_patches"], row["iterations"])
    rows = [r for r in rows if (r["model"], r["train_patches"], r["iterations"]) != key] + [row]
    with open(path, "w") as f:
        json.dump({"rows": rows}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
