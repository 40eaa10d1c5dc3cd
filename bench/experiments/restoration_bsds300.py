"""Patch priors at work on BSDS300 test images: EPLL denoising PSNR and patch imputation.

    python bench/experiments/restoration_bsds300.py denoise [--models LABEL=MODEL.npz ...]
        [--sigmas 15 25 50] [--images bsd68|all|N] [--threads T]
    python bench/experiments/restoration_bsds300.py searches --images 3 --sigmas 25 50
    python bench/experiments/restoration_bsds300.py impute [--models ...] [--patches N]

denoise: every image of the set (default: the 68 BSDS300 test images of Zoran & Weiss' EPLL
table, ids in bsd68_ids.txt) in grayscale (0..255), white Gaussian noise of std sigma added
(seeded per image and sigma, not clipped), restored with ``dgmmcore.restoration.denoise``;
PSNR of the unclipped estimate, averaged over the images, and seconds per image. Finished
(model, sigma, image) entries are kept in --work, so a stopped run resumes.

searches: the path search modes of ``denoise`` ('tracked', 'exact', 'heuristic') on crops
of the first test images.

impute: test patches (the Table 1 protocol), a fraction of the 63 coordinates hidden, filled
with the posterior mean (``model.impute``); mean squared error on the hidden entries, in the
patches' scale (pixels / 256), for random masks and for the bottom or right half missing.

Models default to the Table 1 models trained on BSDS300 train patches (bench/out/).
Results: bench/results/restoration-bsds300.json.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bsds300 import DEFAULT_ROOT, machine, merge_rows, read_json, write_json  # noqa: E402

# Zoran & Weiss 2011, Table 1: EPLL with a 200-component GMM, 68 BSDS test images.
PUBLISHED_EPLL = {"15": 31.21, "25": 28.68, "50": 25.67}
OUT = os.path.join(HERE, "..", "out")
RESULT_FILE = "restoration-bsds300.json"


def default_models(train):
    return [f"GMM 100={OUT}/bsds300-t1-100-n{train}-s0.model.npz",
            f"Deep GMM 100,5,5={OUT}/bsds300-t1-100x5x5-n{train}-s0.model.npz"]


def parse_models(specs):
    from dgmmcore import load
    models = []
    for spec in specs:
        label, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"--models takes LABEL=PATH, got {spec!r}")
        models.append((label, path, load(path)))
    return models


def image_ids(root, which):
    from dgmmcore import datasets
    test_ids = datasets.bsds300_image_ids(root, "test")
    if which == "bsd68":
        with open(os.path.join(HERE, "bsd68_ids.txt")) as f:
            ids = [line.strip() for line in f if line.strip() and not line.startswith("#")]
        missing = sorted(set(ids) - set(map(str, test_ids)))
        if missing:
            raise SystemExit(f"BSD68 ids not in the BSDS300 test split: {missing}")
        return ids
    ids = [str(i) for i in test_ids]
    return ids if which == "all" else ids[: int(which)]


def noisy_image(clean, sigma, image_id, seed):
    rng = np.random.default_rng([seed, int(image_id), int(round(sigma * 100))])
    return clean + sigma * rng.standard_normal(clean.shape)


def cmd_denoise(args):
    from dgmmcore import datasets, restoration
    models = parse_models(args.models or default_models(args.train))
    ids = image_ids(args.root, args.images)
    folder = os.path.join(args.root, "images", "test")
    images = dict(zip(ids, datasets.load_images([os.path.join(folder, f"{i}.jpg") for i in ids])))
    done_path = os.path.join(args.work, f"denoise-{args.images}-s{args.seed}.json")
    os.makedirs(args.work, exist_ok=True)
    done = json.load(open(done_path)) if os.path.exists(done_path) else {}
    for label, path, model in models:
        model.n_threads = args.threads
        for sigma in args.sigmas:
            key = f"{label}|{args.search}|{sigma:g}"
            entries = done.setdefault(key, {})
            for image_id in ids:
                if image_id in entries:
                    continue
                clean = images[image_id].astype(np.float64)
                noisy = noisy_image(clean, sigma, image_id, args.seed)
                t0 = time.perf_counter()
                out = restoration.denoise(model, noisy, sigma, search=args.search)
                seconds = time.perf_counter() - t0
                entries[image_id] = {"psnr_noisy": restoration.psnr(clean, noisy),
                                     "psnr": restoration.psnr(clean, out), "seconds": seconds}
                print(f"{label:>18} sigma {sigma:>4g} image {image_id:>6}: "
                      f"{entries[image_id]['psnr_noisy']:.2f} -> {entries[image_id]['psnr']:.2f} dB"
                      f" in {seconds:.1f} s", flush=True)
                with open(done_path + ".tmp", "w") as f:
                    json.dump(done, f)
                os.replace(done_path + ".tmp", done_path)
    rows = []
    for label, path, model in models:
        for sigma in args.sigmas:
            entries = done[f"{label}|{args.search}|{sigma:g}"]
            per = [entries[i] for i in ids]
            rows.append({"model": label, "file": os.path.basename(path),
                         "layers": list(model.layers), "paths": int(np.prod(model.layers)),
                         "search": args.search, "sigma": sigma, "images": len(per),
                         "psnr_noisy": float(np.mean([e["psnr_noisy"] for e in per])),
                         "psnr": float(np.mean([e["psnr"] for e in per])),
                         "seconds_per_image": float(np.mean([e["seconds"] for e in per])),
                         "threads": args.threads,
                         "published_epll_200": PUBLISHED_EPLL.get(f"{sigma:g}")})
            r = rows[-1]
            print(f"{label:>18} sigma {sigma:>4g}: {r['psnr']:.2f} dB over {r['images']} images"
                  f" (noisy {r['psnr_noisy']:.2f}), {r['seconds_per_image']:.1f} s/image")
    result = read_json(RESULT_FILE)
    result.pop("threads", None)  # per row now: sigmas may run with different thread counts
    key = lambda r: (r["model"], r["search"], r["sigma"])  # noqa: E731
    result.update({"machine": machine(), "image_set": args.images,
                   "denoise": merge_rows(result.get("denoise", []), rows, key)})
    write_json(RESULT_FILE, result)


def cmd_searches(args):
    """Path search modes against each other on crops of the first test images."""
    from dgmmcore import datasets, restoration
    models = parse_models(args.models or default_models(args.train))
    ids = image_ids(args.root, args.images)
    folder = os.path.join(args.root, "images", "test")
    crops = [img[100:100 + args.crop, 100:100 + args.crop].astype(np.float64)
             for img in datasets.load_images([os.path.join(folder, f"{i}.jpg") for i in ids])]
    rows = []
    for label, path, model in models:
        model.n_threads = args.threads
        for search in restoration.SEARCHES if len(model.layers) > 1 else ("exact",):
            psnrs, t0 = [], time.perf_counter()
            for sigma in args.sigmas:
                for image_id, clean in zip(ids, crops):
                    noisy = noisy_image(clean, sigma, image_id, args.seed)
                    out = restoration.denoise(model, noisy, sigma, search=search)
                    psnrs.append(restoration.psnr(clean, out))
            rows.append({"model": label, "search": search, "sigmas": args.sigmas,
                         "images": ids, "crop": args.crop, "mean_psnr": float(np.mean(psnrs)),
                         "psnr": psnrs, "seconds": time.perf_counter() - t0})
            print(f"{label:>18} {search:>9}: {rows[-1]['mean_psnr']:.3f} dB "
                  f"({rows[-1]['seconds']:.0f} s)", flush=True)
    result = read_json(RESULT_FILE)
    result.update({"machine": machine(), "search_comparison": rows})
    write_json(RESULT_FILE, result)


def cmd_impute(args):
    from dgmmcore import datasets
    models = parse_models(args.models or default_models(args.train))
    X = datasets.load_bsds300(args.root, "test", n_patches=args.patches, random_state=args.seed)
    rng = np.random.default_rng(args.seed)
    D = X.shape[1]
    # A random mask gives every row its own pattern (one factorisation per path per row):
    # those run on the first --random-patches rows only.
    few = X[: args.random_patches]
    masks = {"random 25%": (few, rng.random(few.shape) < 0.25),
             "random 50%": (few, rng.random(few.shape) < 0.5),
             "bottom half": (X, np.broadcast_to(np.arange(D) >= 32, X.shape)),
             "right half": (X, np.broadcast_to(np.arange(D) % 8 >= 4, X.shape))}
    rows = []
    for label, path, model in models:
        model.n_threads = args.threads
        for name, (data, mask) in masks.items():
            t0 = time.perf_counter()
            filled = model.impute(data, mask)
            seconds = time.perf_counter() - t0
            err = (filled - data)[mask]
            rows.append({"model": label, "layers": list(model.layers),
                         "parameters": int(model.n_parameters()), "mask": name,
                         "patches": len(data),
                         "mse": float(np.mean(err ** 2)),
                         "mse_stderr": float(np.std(err ** 2, ddof=1) / np.sqrt(err.size)),
                         "mse_zero_fill": float(np.mean(data[mask] ** 2)), "seconds": seconds})
            r = rows[-1]
            print(f"{label:>18} {name:>12}: MSE {r['mse']:.3e} (zero fill {r['mse_zero_fill']:.3e})"
                  f" in {seconds:.1f} s", flush=True)
    result = read_json(RESULT_FILE)
    result.update({"machine": machine(), "impute": rows})
    write_json(RESULT_FILE, result)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("command", choices=["denoise", "searches", "impute"])
    p.add_argument("--root", default=DEFAULT_ROOT)
    p.add_argument("--models", nargs="+", help="LABEL=MODEL.npz (default: the Table 1 models)")
    p.add_argument("--train", type=int, default=200_000,
                   help="training size of the default Table 1 models")
    p.add_argument("--sigmas", type=float, nargs="+", default=[15, 25, 50])
    p.add_argument("--images", default="bsd68", help="bsd68, all, or the first N test images")
    p.add_argument("--search", default="tracked", choices=["tracked", "exact", "heuristic"])
    p.add_argument("--crop", type=int, default=160, help="crop side for 'searches'")
    p.add_argument("--patches", type=int, default=50_000, help="test patches for impute")
    p.add_argument("--random-patches", type=int, default=2_000,
                   help="test patches for the random masks (one pattern per row)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=OUT)
    args = p.parse_args(argv)
    {"denoise": cmd_denoise, "searches": cmd_searches, "impute": cmd_impute}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
