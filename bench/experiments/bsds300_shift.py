"""Is the BSDS300 gap in the data? A protocol check and a GMM trained three ways.

    python bench/experiments/bsds300_shift.py [--root R] [--components 50] [--threads 1]

The test images are split in two halves by id (A: even positions, B: odd). A GMM is trained
on patches of
  1. test half A, as released;
  2. test half A after one JPEG re-save that keeps the quantisation tables (what happened to
     the train images of ../shared/data/bsds300; their tables equal the test images');
  3. 50 train images (every 4th by id);
and every model is scored on the same patches of test half B. (1) vs (2) is the cost of the
re-save; (1) vs (3) is how far the train images are from the test images for this model.
First, a single full-covariance Gaussian on the standard splits, which the data README says
scores about 97 nats on test.
Writes bench/results/bsds300-shift.json.
"""
import argparse
import io
import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bsds300 import DEFAULT_ROOT, machine, write_json  # noqa: E402


def gray_image(path, resave):
    from PIL import Image
    with Image.open(path) as im:
        if resave:
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality="keep")  # the file's own tables, subsampling
            buf.seek(0)
            im = Image.open(buf)
        return np.asarray(im.convert("L"), dtype=np.uint8)


def patches(paths, n, seed, resave=False):
    from dgmmcore.datasets import extract_patches, preprocess
    raw = extract_patches([gray_image(p, resave) for p in paths], n, random_state=seed)
    return preprocess(raw, random_state=seed + 1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=DEFAULT_ROOT)
    p.add_argument("--components", type=int, default=50)
    p.add_argument("--train", type=int, default=200_000)
    p.add_argument("--test", type=int, default=100_000)
    p.add_argument("--iters", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    from dgmmcore import DeepGMM
    from dgmmcore.datasets import bsds300_image_ids

    def files(split, ids):
        return [os.path.join(args.root, "images", split, f"{i}.jpg") for i in ids]
    test_ids = bsds300_image_ids(args.root, "test")
    train_ids = bsds300_image_ids(args.root, "train")
    half_b = patches(files("test", test_ids[1::2]), args.test, seed=1)
    sets = {"test half A": (files("test", test_ids[0::2]), False),
            "test half A re-saved": (files("test", test_ids[0::2]), True),
            "50 train images": (files("train", train_ids[0::4]), False)}
    # the protocol check: one full-covariance Gaussian on the standard splits (about 97 nats)
    from dgmmcore.datasets import load_bsds300
    train = load_bsds300(args.root, "train", n_patches=300_000, random_state=0)
    from scipy.stats import multivariate_normal
    gauss = multivariate_normal(train.mean(axis=0), np.cov(train, rowvar=False))
    test = load_bsds300(args.root, "test", n_patches=250_000, random_state=0)
    single = {"train_patches": len(train), "test_patches": len(test),
              "test_loglik": float(gauss.logpdf(test).mean())}
    print(f"single Gaussian: {single['test_loglik']:.3f} test nats", flush=True)
    del train
    rows, first = [], None
    for name, (paths, resave) in sets.items():
        X = patches(paths, args.train, seed=3, resave=resave)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # not converged at --iters: same budget for all
            model = DeepGMM((args.components,), max_iter=args.iters, random_state=0,
                            n_threads=args.threads).fit(X)
        s = model.score_samples(half_b)
        first = s if first is None else first
        # the models are scored on the same patches: the paired difference is what is measured
        diff = s - first
        rows.append({"trained_on": name, "images": len(paths), "train_loglik": model.score(X),
                     "half_b_loglik": float(s.mean()),
                     "half_b_stderr": float(s.std(ddof=1) / np.sqrt(len(s))),
                     "minus_first": float(diff.mean()),
                     "minus_first_stderr": float(diff.std(ddof=1) / np.sqrt(len(s))),
                     "fit_seconds": time.perf_counter() - t0})
        r = rows[-1]
        print(f"{name:22s} own patches {r['train_loglik']:8.3f}   test half B "
              f"{r['half_b_loglik']:8.3f} +- {r['half_b_stderr']:.3f}   minus the first "
              f"{r['minus_first']:+.3f} +- {r['minus_first_stderr']:.3f}", flush=True)
    write_json("bsds300-shift.json", {"machine": machine(), "components": args.components,
                                      "train_patches": args.train, "test_patches": args.test,
                                      "em_iterations": args.iters, "rows": rows,
                                      "single_gaussian": single})


if __name__ == "__main__":
    main()
