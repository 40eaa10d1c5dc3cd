"""Training with the symmetry layer in place against averaging afterwards, on BSDS300.

For each --models network on --train patches: the plain network after --iters EM iterations
(table1's fit: the same checkpoints under --work), then from it

  - "averaged": --rounds more plain iterations, the density averaged over the 8 symmetries of
    the square afterwards (dgmmcore.SymmetrizedModel);
  - "symmetric": --rounds rounds of hard EM with the symmetry layer in place
    (SymmetrizedModel.fit: each row's best symmetry and path, one network iteration on the
    rows turned to their symmetries);

so both have the same network, the same training rows and as many iterations. Validation and
test log-likelihoods of both (and of the plain network as it is), and the paired difference
symmetric - averaged on the same patches.

    python bench/experiments/symmetric_training.py --models 100 100,5,5 --train 200000 \\
        --iters 30 --rounds 20 --test 250000 --reg-covar 1e-8 --float32 --threads 2

With ``--start FILE`` (a published network, e.g. bench/models/bsds300-600x5x5-16m.npz) the
rounds go on from that network instead, on --train fresh patches, against the network as it
is averaged over the symmetries; the heuristic search (--cold-restarts for each (row,
symmetry) pair's first search, --restarts after) keeps big networks affordable. The
symmetric network is saved under --work after every round.

    python bench/experiments/symmetric_training.py --start bench/models/NET.npz \\
        --train 2000000 --rounds 6 --cold-restarts 3 --restarts 0 --float32 --threads 2

A published network may carry truncated EM's settings, whose iterations refit to posteriors
rather than to the best (symmetry, path) pairs. ``--hard`` makes the rounds hard EM (no
truncation, one warm pass from the paths found) and adds the fair control: as many hard
rounds of the network alone (the same search over the identity only), averaged afterwards.
The gain is then symmetric - control; the start averaged is kept in the row as well
(start_averaged_*; without --hard it is the averaged_* the gain is taken against).

Writes bench/results/bsds300-symmetric-training.json (rows merged by layers, patches,
iterations, rounds, reg_covar, dtype, start file and --hard).
"""
import argparse
import copy
import os
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bsds300  # noqa: E402  (data, table1's cached fits, JSON helpers)
import continue_network  # noqa: E402  (published files' names)

RESULT = "bsds300-symmetric-training.json"


def scores(model, valid, test):
    return model.score_samples(valid), model.score_samples(test)


def record(row, name, seen):
    for split, s in zip(("valid", "test"), seen):
        row[f"{name}_{split}_loglik"], row[f"{name}_{split}_stderr"] = bsds300.mean_and_stderr(s)


def record_gain(row, trained, averaged):
    """The paired difference trained - averaged on the same validation and test patches."""
    for split, a, b in zip(("valid", "test"), trained, averaged):
        row[f"gain_{split}"], row[f"gain_{split}_stderr"] = bsds300.mean_and_stderr(a - b)


def row_key(r):
    return (tuple(r["layers"]), r["train_patches"], r["em_iterations"], r["rounds"],
            r["reg_covar"], r["train_dtype"], r.get("start_file"), r.get("hard", False))


def save_rows(rows):
    old = bsds300.read_json(RESULT).get("rows", [])
    bsds300.write_json(RESULT, {"machine": bsds300.machine(),
                                "rows": bsds300.merge_rows(old, rows, row_key)})


def symmetric_history(history):
    return {"symmetric_objective": [r["objective"] for r in history],
            # the fraction of rows whose symmetry changed since the search before (None: first)
            "symmetric_changed": [None if r["symmetry_changed"] != r["symmetry_changed"]
                                  else r["symmetry_changed"] for r in history],
            "symmetric_counts": history[-1]["symmetry_counts"],
            "symmetric_search_seconds": [r["search_seconds"] for r in history],
            "symmetric_round_seconds": [r.get("fit_seconds") for r in history]}


def train_rounds(symmetric, train, args, out):
    """--rounds one-round fits (the search state carries over), saved to out after each."""
    import numpy as np
    rng, history, t0 = np.random.default_rng(args.seed), [], time.perf_counter()
    for r in range(args.rounds):
        symmetric.fit(train, n_rounds=1, search="heuristic", cold_restarts=args.cold_restarts,
                      final_search=False, random_state=rng)
        this_round = dict(symmetric.history_[0], round=r)
        history.append(this_round)
        symmetric.history_ = history
        symmetric.save(out)
        print(f"{os.path.basename(out)} round {r}: objective {this_round['objective']:.4f}, "
              f"symmetry changed {this_round['symmetry_changed']:.4f}, search "
              f"{this_round['search_seconds']:.0f} s, iteration "
              f"{this_round['fit_seconds']:.0f} s", flush=True)
    return history, time.perf_counter() - t0


def from_start(args):
    """--rounds with the symmetry layer from a published network, on --train patches; with
    --hard also the control: as many hard rounds of the network alone, averaged after."""
    from dgmmcore import SymmetrizedModel, load
    network = load(args.start)
    if isinstance(network, SymmetrizedModel):
        raise SystemExit(f"--start {args.start}: give the plain network, not a symmetrized one")
    train = bsds300.load_train(args, args.train)
    valid = bsds300.load_held_out(args, "validation", min(args.test, 50_000))
    test = bsds300.load_held_out(args, "test", args.test)
    network.n_threads, network.verbose = args.threads, 0
    if args.hard:  # table1's hard EM (a published file may carry truncated EM's settings)
        bsds300.set_estep(network, argparse.Namespace(soft_iters=0, truncation=None,
                                                      rerank_every=1, no_search=False))
    if args.restarts is not None:
        network.n_restarts = args.restarts
    t0 = time.perf_counter()
    averaged = scores(SymmetrizedModel(network), valid, test)  # the start, averaged over the 8
    print(f"{args.start} averaged: validation {averaged[0].mean():.3f}, test "
          f"{averaged[1].mean():.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    stem = continue_network.file_stem(args.start) + ("-hard" if args.hard else "")
    os.makedirs(args.work, exist_ok=True)
    row = {"layers": list(network.layers), "start_file": os.path.basename(args.start),
           "train_patches": len(train), "test_patches": len(test), "valid_patches": len(valid),
           "em_iterations": None, "rounds": args.rounds, "reg_covar": network.reg_covar,
           "train_dtype": train.dtype.name, "cold_restarts": args.cold_restarts,
           "restarts": network.n_restarts, "hard": args.hard, "threads": args.threads,
           "score_dtype": bsds300.score_dtype(args)}
    if args.hard:  # the control: the same search and iterations over the identity alone
        record(row, "start_averaged", averaged)
        alone = SymmetrizedModel(copy.deepcopy(network), symmetries=("identity",))
        out = os.path.join(args.work, f"{stem}-alone-n{len(train)}-s{args.seed}.model.npz")
        _, row["averaged_seconds"] = train_rounds(alone, train, args, out)
        averaged = scores(SymmetrizedModel(alone.model), valid, test)
    record(row, "averaged", averaged)
    symmetric = SymmetrizedModel(network)
    out = os.path.join(args.work, f"{stem}-symmetric-n{len(train)}-s{args.seed}.model.npz")
    history, row["symmetric_seconds"] = train_rounds(symmetric, train, args, out)
    trained = scores(symmetric, valid, test)
    record(row, "symmetric", trained)
    row.update(symmetric_history(history))
    record_gain(row, trained, averaged)
    print(f"{args.start} with the symmetry layer, {args.rounds} rounds on {len(train)} patches: "
          f"test {row['symmetric_test_loglik']:.3f} +- {row['symmetric_test_stderr']:.3f} "
          f"(against averaged {row['gain_test']:+.3f} +- {row['gain_test_stderr']:.3f}), "
          f"validation {row['symmetric_valid_loglik']:.3f} ({row['gain_valid']:+.3f})",
          flush=True)
    save_rows([row])


def run(args):
    from dgmmcore import SymmetrizedModel
    train = bsds300.load_train(args, args.train)
    valid = bsds300.load_held_out(args, "validation", min(args.test, 50_000))
    test = bsds300.load_held_out(args, "test", args.test)
    rows = []
    for spec in args.models:
        layers = bsds300.parse_ints(spec)
        tag = bsds300.model_tag(args, layers, len(train))
        plain, plain_seconds = bsds300.fit_or_resume(layers, train, args, tag)
        row = {"layers": list(layers), "train_patches": len(train), "test_patches": len(test),
               "valid_patches": len(valid), "em_iterations": plain.n_iter_,
               "rounds": args.rounds, "reg_covar": args.reg_covar,
               "train_dtype": train.dtype.name, "plain_fit_seconds": plain_seconds,
               "score_dtype": bsds300.score_dtype(args)}
        as_is = scores(plain, valid, test)
        record(row, "plain", as_is)

        continued = copy.deepcopy(plain)
        continued.warm_start, continued.max_iter, continued.verbose = True, args.rounds, 1
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            continued.fit(train)
        row["averaged_seconds"] = time.perf_counter() - t0
        averaged = scores(SymmetrizedModel(continued), valid, test)
        record(row, "averaged", averaged)

        symmetric = SymmetrizedModel(copy.deepcopy(plain))
        symmetric.model.verbose = 1
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            symmetric.fit(train, n_rounds=args.rounds, tol=0.0, random_state=args.seed)
        row["symmetric_seconds"] = time.perf_counter() - t0
        row.update(symmetric_history(symmetric.history_))
        trained = scores(symmetric, valid, test)
        record(row, "symmetric", trained)
        record_gain(row, trained, averaged)
        if args.save:
            os.makedirs(args.work, exist_ok=True)
            symmetric.save(os.path.join(args.work, f"{tag}-symmetric{args.rounds}.model.npz"))
        rows.append(row)
        print(f"{layers} on {len(train)}: test plain {row['plain_test_loglik']:.3f}, averaged "
              f"{row['averaged_test_loglik']:.3f}, symmetric {row['symmetric_test_loglik']:.3f} "
              f"(gain {row['gain_test']:+.3f} +- {row['gain_test_stderr']:.3f}; validation "
              f"{row['gain_valid']:+.3f})", flush=True)
        save_rows(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=bsds300.DEFAULT_ROOT)
    p.add_argument("--dataset", default="bsds300", choices=["bsds300", "lowres"])
    p.add_argument("--models", nargs="+", default=["100"])
    p.add_argument("--train", type=int, default=200_000)
    p.add_argument("--test", type=int, default=250_000)
    p.add_argument("--iters", type=int, default=30, help="plain EM iterations first")
    p.add_argument("--rounds", type=int, default=20,
                   help="then this many rounds with the symmetry layer (or plain iterations)")
    p.add_argument("--reg-covar", type=float, default=bsds300.DEFAULT_REG_COVAR)
    p.add_argument("--float32", action="store_true")
    p.add_argument("--score-float32", action="store_true",
                   help="score the validation and test patches in float32 (2.3x faster)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=os.path.join(HERE, "..", "out"))
    p.add_argument("--save", action="store_true", help="keep the symmetric model under --work")
    p.add_argument("--start", metavar="FILE", help="go on from this published network")
    p.add_argument("--cold-restarts", type=int, default=3,
                   help="with --start: restarts of each (row, symmetry) pair's first search")
    p.add_argument("--restarts", type=int, default=None,
                   help="with --start: the network's restarts in later searches and its "
                        "iterations (default: its own; with --hard, DeepGMM's)")
    p.add_argument("--hard", action="store_true",
                   help="with --start: hard network iterations (no truncation), against the "
                        "control of as many hard rounds of the network alone, averaged after")
    args = p.parse_args(argv)
    from_start(args) if args.start else run(args)


if __name__ == "__main__":
    main()
