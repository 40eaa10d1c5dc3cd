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

Writes bench/results/bsds300-symmetric-training.json (rows merged by layers, patches,
iterations, rounds, reg_covar and dtype).
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

RESULT = "bsds300-symmetric-training.json"


def scores(model, valid, test):
    return model.score_samples(valid), model.score_samples(test)


def record(row, name, seen):
    for split, s in zip(("valid", "test"), seen):
        row[f"{name}_{split}_loglik"], row[f"{name}_{split}_stderr"] = bsds300.mean_and_stderr(s)


def run(args):
    from dgmmcore import SymmetrizedModel
    train = bsds300.load_train(args, args.train)
    valid = bsds300.load_data(args, "validation", min(args.test, 50_000))
    test = bsds300.load_data(args, "test", args.test)
    rows = []
    for spec in args.models:
        layers = bsds300.parse_ints(spec)
        tag = bsds300.model_tag(args, layers, len(train))
        plain, plain_seconds = bsds300.fit_or_resume(layers, train, args, tag)
        row = {"layers": list(layers), "train_patches": len(train), "test_patches": len(test),
               "valid_patches": len(valid), "em_iterations": plain.n_iter_,
               "rounds": args.rounds, "reg_covar": args.reg_covar,
               "train_dtype": train.dtype.name, "plain_fit_seconds": plain_seconds}
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
        row["symmetric_objective"] = [r["objective"] for r in symmetric.history_]
        # the fraction of rows whose symmetry changed since the search before (None: first)
        row["symmetric_changed"] = [None if r["symmetry_changed"] != r["symmetry_changed"]
                                    else r["symmetry_changed"] for r in symmetric.history_]
        row["symmetric_counts"] = symmetric.history_[-1]["symmetry_counts"]
        trained = scores(symmetric, valid, test)
        record(row, "symmetric", trained)
        for split, a, b in zip(("valid", "test"), trained, averaged):
            row[f"gain_{split}"], row[f"gain_{split}_stderr"] = bsds300.mean_and_stderr(a - b)
        if args.save:
            os.makedirs(args.work, exist_ok=True)
            symmetric.save(os.path.join(args.work, f"{tag}-symmetric{args.rounds}.model.npz"))
        rows.append(row)
        print(f"{layers} on {len(train)}: test plain {row['plain_test_loglik']:.3f}, averaged "
              f"{row['averaged_test_loglik']:.3f}, symmetric {row['symmetric_test_loglik']:.3f} "
              f"(gain {row['gain_test']:+.3f} +- {row['gain_test_stderr']:.3f}; validation "
              f"{row['gain_valid']:+.3f})", flush=True)
        old = bsds300.read_json(RESULT).get("rows", [])
        key = lambda r: (tuple(r["layers"]), r["train_patches"], r["em_iterations"],  # noqa
                         r["rounds"], r["reg_covar"], r["train_dtype"])
        bsds300.write_json(RESULT, {"machine": bsds300.machine(),
                                    "rows": bsds300.merge_rows(old, rows, key)})


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
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=os.path.join(HERE, "..", "out"))
    p.add_argument("--save", action="store_true", help="keep the symmetric model under --work")
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
