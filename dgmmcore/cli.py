"""The ``dgmm`` command: fit, score, sample and inspect Deep GMMs on image patches.

    dgmm fit                      train on the embedded CC0 patches, report held-out nats
    dgmm fit --bsds300 ROOT       the paper's BSDS300 protocol
    dgmm score MODEL DATA         mean log-likelihood of DATA (.npy rows or a folder of images)
    dgmm sample MODEL -n 64 --png samples.png
    dgmm info MODEL
    dgmm denoise MODEL IN.png --sigma 25 -o OUT.png
    dgmm inpaint MODEL IN.png MASK.png -o OUT.png
"""
import argparse
import math
import os
import sys
import time
import warnings

import numpy as np


def _layers(text):
    try:
        layers = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers takes comma-separated integers, got {text!r}")
    if not layers or min(layers) < 1:
        raise argparse.ArgumentTypeError(f"--layers needs positive sizes, got {text!r}")
    return layers


def _int_at_least(minimum, what):
    """An argparse type: an integer >= ``minimum`` (``what`` names it in the error)."""
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or v < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v
    return parse


_positive = _int_at_least(1, "a positive integer")
_seed = _int_at_least(0, "a non-negative integer")


def _read_npy_rows(path, what):
    """The 2-D array of numbers in a .npy file (never unpickled), or a ValueError naming
    ``what`` (the option or argument) and the problem."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} {path}: no such file or folder")
    if not str(path).endswith(".npy"):
        raise ValueError(f"{what} must be a folder of images or a .npy file of rows, got {path}")
    try:
        X = np.load(path, allow_pickle=False)
    except ValueError as exc:  # pickled objects, or not a .npy file at all
        why = ("it holds Python objects; dgmm reads arrays of numbers only"
               if "allow_pickle" in str(exc) else str(exc))
        raise ValueError(f"{what} {path}: cannot be read as a .npy array ({why})") from None
    if not isinstance(X, np.ndarray):  # an .npz archive renamed .npy
        raise ValueError(f"{what} {path}: an .npz archive, not a .npy array of rows")
    if X.ndim != 2:
        raise ValueError(f"{what} {path} must hold a 2-D array of rows, got shape {X.shape}")
    return X


def _check_output(path, what):
    """Refuse an output path that cannot be written before any work is done: a folder, or a
    file in a folder that does not exist."""
    if os.path.isdir(path):
        raise ValueError(f"{what} {path} is a folder; name a file in it")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{what} {path}: the folder {folder} does not exist")
    return path


def _check_image_output(path, what):
    """An output image path that Pillow can write: a known image extension."""
    from .datasets import _pillow_image
    _check_output(path, what)
    ext = os.path.splitext(path)[1].lower()
    if ext not in _pillow_image().registered_extensions():
        raise ValueError(f"{what} {path}: unknown image extension {ext or '(none)'!r}; use "
                         f".png, for instance")
    return path


def _split_rows(X, held_out, seed):
    """Shuffle rows (deterministically) and hold out a fraction for testing."""
    rng = np.random.default_rng(seed)
    X = X[rng.permutation(len(X))]
    n_test = max(1, int(round(held_out * len(X))))
    if len(X) - n_test < 2:
        raise ValueError(f"too few rows ({len(X)}) to hold out {n_test} for testing")
    return X[n_test:], X[:n_test]


def load_training_data(args):
    """(train, test, description) from the --data/--bsds300 options or the embedded default."""
    from . import datasets
    seed = args.seed
    if args.bsds300:
        n = args.n_patches
        train = datasets.load_bsds300(args.bsds300, "train", n_patches=n, random_state=seed)
        test = datasets.load_bsds300(args.bsds300, "test",
                                     n_patches=None if n is None else max(n // 4, 1000),
                                     random_state=seed)
        return train, test, f"BSDS300 at {args.bsds300}"
    if args.data:
        if os.path.isdir(args.data):
            n = args.n_patches or 100_000
            X = datasets.load_patches_from_images(args.data, n, random_state=seed)
        else:
            X = _read_npy_rows(args.data, "--data")
            if args.n_patches:
                X = X[: args.n_patches]
        train, test = _split_rows(X, 0.1, seed)
        return train, test, f"{args.data} ({len(X)} rows, 10% held out)"
    train = datasets.load_default("train", n_patches=args.n_patches, random_state=seed)
    test = datasets.load_default("test", random_state=seed)
    return train, test, "embedded CC0 image patches"


def cmd_fit(args):
    from . import ConvergenceWarning, DeepGMM, SymmetrizedModel, load
    _check_output(args.out, "--out")  # before the fit, not after it
    if args.checkpoint:
        _check_output(args.checkpoint, "--checkpoint")
    train, test, what = load_training_data(args)
    if args.float32:
        train = train.astype(np.float32)
    print(f"data: {what}: {train.shape[0]} train rows, {test.shape[0]} held-out, "
          f"{train.shape[1]} dims", flush=True)
    resume, symmetric, symmetric_resume = False, None, False
    if args.init_layer is not None and (args.resume or args.grow_from or args.widen_from):
        raise ValueError("--init-layer chooses how a fresh fit starts; a --resume, "
                         "--grow-from or --widen-from run starts from its model instead")
    if args.resume:
        model = load(args.resume)
        if isinstance(model, SymmetrizedModel):
            if not args.symmetric_rounds:
                raise ValueError(f"--resume: {args.resume} was trained with the symmetry layer; "
                                 f"continue it with --symmetric-rounds R")
            symmetric, model = model, model.model
            symmetric_resume = getattr(symmetric, "_resume_state", None) is not None
        # a checkpoint continues its run exactly; a plain model file warm-starts a new one
        resume = getattr(model, "_resume_state", None) is not None
        model.warm_start = not resume
        model.max_iter = args.iters
        model.verbose = 1
        if args.threads:
            model.n_threads = args.threads
        if symmetric_resume:
            done = symmetric._resume_state["rounds"]
            print(f"resuming from {args.resume} ({done} rounds with the symmetry layer done)")
        else:
            print(f"resuming from {args.resume} ({model.n_iter_ or 0} iterations done)")
    elif args.grow_from:
        model = grown_model(load(args.grow_from), args)
        print(f"growing {args.grow_from} into {model.layers}")
    elif args.widen_from:
        model = widened_model(load(args.widen_from), args)
        print(f"widening {args.widen_from} into {model.layers}")
    else:
        model = DeepGMM(layers=args.layers, estep=args.estep, max_iter=args.iters,
                        init_layer=args.init_layer, random_state=args.seed,
                        n_threads=args.threads, verbose=1)
    for option, attr in (("--reg-covar", "reg_covar"), ("--truncation", "truncation"),
                         ("--rerank-every", "rerank_every")):
        value = getattr(args, attr)
        if value is not None and value != getattr(model, attr):
            if resume or symmetric_resume:  # a checkpoint continues its own run
                raise ValueError(f"{option} {value}: the checkpoint {args.resume} continues "
                                 f"its run with {attr} {getattr(model, attr)}")
            setattr(model, attr, value)
    if args.no_search:
        _drop_the_search(model, resume, args.resume)
    from ._executor import EStepConfig
    searches = EStepConfig.of(model).searches  # 'full' searches whatever the passes
    print(f"network {model.layers}: {math.prod(model.layers)} paths; "
          f"estep={model.estep}"
          + (f", truncation {model.truncation}" if model.truncation else "")
          + (f" (ranked every {model.rerank_every} E-steps)" if model.rerank_every > 1 else "")
          + ("" if searches else " without the search")
          + f"; up to {model.max_iter} EM iterations", flush=True)
    t0 = time.perf_counter()
    if symmetric is None:  # a symmetric model goes on with its rounds only
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # reported below instead
            model.fit(train, checkpoint=args.checkpoint, resume=resume)
        seconds = time.perf_counter() - t0
        if not model.converged_:
            print(f"stopped at --iters {model.max_iter} before converging (tol {model.tol})")
        print(f"fit: {model.n_iter_} iterations in {seconds:.1f} s; held-out log-likelihood "
              f"{model.score(test):.3f} nats ({model.n_parameters()} parameters)", flush=True)
    if args.symmetric_rounds:
        symmetric = symmetric or SymmetrizedModel(model, args.symmetries)
        print(f"training with the symmetry layer ({', '.join(symmetric.symmetries)}): up to "
              f"{args.symmetric_rounds} rounds", flush=True)
        t1 = time.perf_counter()
        symmetric.fit(train, n_rounds=args.symmetric_rounds, random_state=args.seed,
                      checkpoint=args.checkpoint, resume=symmetric_resume)
        from ._symmetric_em import completed_rounds
        print(f"symmetric fit: {completed_rounds(symmetric.history_)} rounds in "
              f"{time.perf_counter() - t1:.1f} s; held-out log-likelihood "
              f"{symmetric.score(test):.3f} nats")
        model = symmetric
    model.save(args.out)
    print(f"model written to {args.out}")
    return 0


def grown_model(base, args):
    """``base`` deepened into --layers (which must extend its layers), set up to train."""
    old = tuple(base.weights_.shape)
    new = tuple(args.layers)
    if len(new) <= len(old) or new[:len(old)] != old:
        example = ",".join(map(str, old + (5, 5)))
        raise ValueError(f"--grow-from: the model has layers {old}; --layers must add layers "
                         f"after them (e.g. --layers {example}), got {new}")
    model = base.deepen(new[len(old):], random_state=args.seed)
    model.estep, model.max_iter, model.verbose = args.estep, args.iters, 1
    model.n_threads = args.threads
    return model


def widened_model(base, args):
    """``base`` widened to --layers (as many layers, none narrower), set up to train. A
    checkpoint's rows' paths carry over: on the same rows the fit starts from them."""
    old = tuple(base.weights_.shape)
    new = tuple(args.layers)
    if len(new) != len(old) or any(n < o for n, o in zip(new, old)):
        raise ValueError(f"--widen-from: the model has layers {old}; --layers must have as "
                         f"many, none narrower, got {new}")
    model = base.widen(new, random_state=args.seed)
    model.estep, model.max_iter, model.verbose = args.estep, args.iters, 1
    model.n_threads = args.threads
    return model


def _load_rows(path, n_features):
    from . import datasets
    if os.path.isdir(path):
        return datasets.load_patches_from_images(path, 50_000, random_state=0)
    X = _read_npy_rows(path, "DATA")
    if X.shape[1] != n_features:
        raise ValueError(f"DATA {path}: expected rows of {n_features} values, got shape "
                         f"{X.shape}")
    return X


def cmd_score(args):
    from . import load
    model = load(args.model)
    if args.threads:
        model.n_threads = args.threads
    X = _load_rows(args.data, model.n_features_in_)
    s = model.score_samples(X)
    se = s.std(ddof=1) / math.sqrt(len(s)) if len(s) > 1 else float("nan")
    print(f"{len(s)} rows: mean log-likelihood {s.mean():.4f} nats (standard error {se:.4f})")
    k = model.n_parameters(identifiable=True)  # bic/aic of these scores, not a second pass
    print(f"BIC {-2 * s.sum() + k * math.log(len(s)):.2f}, AIC {-2 * s.sum() + 2 * k:.2f} "
          f"({k} identifiable parameters)")
    return 0


def patch_grid(X, patch=8, pad=1, cols=None):
    """Preprocessed rows (patch mean removed, last pixel dropped) -> one uint8 grid image.
    The dropped pixel is restored as minus the sum of the others (the patch mean is zero)."""
    n, d = X.shape
    if d == patch * patch - 1:
        X = np.concatenate([X, -X.sum(axis=1, keepdims=True)], axis=1)
    elif d != patch * patch:
        raise ValueError(f"cannot show {d}-dim rows as {patch}x{patch} patches")
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    lo, hi = np.percentile(X, [1, 99])
    scaled = np.clip((X - lo) / max(hi - lo, 1e-12), 0, 1)
    grid = np.ones((rows * (patch + pad) + pad, cols * (patch + pad) + pad))
    for i, p in enumerate(scaled.reshape(n, patch, patch)):
        r, c = divmod(i, cols)
        y, x = pad + r * (patch + pad), pad + c * (patch + pad)
        grid[y:y + patch, x:x + patch] = p
    return (grid * 255).round().astype(np.uint8)


def cmd_sample(args):
    from . import load
    if args.npy:
        _check_output(args.npy, "--npy")
    if args.png:
        _check_image_output(args.png, "--png")
    model = load(args.model)
    X, paths = model.sample(args.n, random_state=args.seed)
    if args.npy:
        with open(args.npy, "wb") as fh:  # the name given (np.save would append .npy)
            np.save(fh, X)
        print(f"{args.n} samples written to {args.npy}")
    if args.png:
        from .datasets import _pillow_image
        Image = _pillow_image()
        side = int(math.isqrt(model.n_features_in_ + 1))
        img = patch_grid(X, patch=side)
        enlarged = Image.fromarray(img).resize((img.shape[1] * 4, img.shape[0] * 4),
                                               Image.NEAREST)
        enlarged.save(args.png)
        print(f"{args.n} samples drawn as {args.png}")
    if not args.png and not args.npy:
        print(X)
    return 0


def cmd_info(args):
    from . import SymmetrizedModel, load
    model = load(args.model)  # what the file's meta says, on the model it loads as
    print(f"model file: {args.model}")
    network = model.model if isinstance(model, SymmetrizedModel) else model
    print(f"layers: {network.layers} ({network.n_paths_} paths), {model.n_features_in_} dims, "
          f"{model.n_parameters()} parameters ({model.n_parameters(identifiable=True)} "
          f"identifiable), prior {network.path_prior}")
    if network is not model:
        print(f"averaged over {len(model.symmetries)} symmetries of the square: "
              f"{', '.join(model.symmetries)} ({model.n_paths_} paths)")
        rounds = getattr(model, "history_", None)
        if rounds:
            from ._symmetric_em import completed_rounds
            print(f"trained with the symmetry layer in place: {completed_rounds(rounds)} "
                  f"rounds, objective {rounds[-1]['objective']:.4f} (the network's last "
                  f"round below)")
    hyperparameters = {k: v for k, v in network.get_params().items() if k != "layers"}
    print(f"hyperparameters: {hyperparameters}")
    if getattr(network, "history_", None):
        print(f"trained {network.n_iter_} iterations, converged={network.converged_}, "
              f"final objective {network.history_[-1]['objective']:.4f}")
    return 0


def cmd_symmetrize(args):
    from . import SymmetrizedModel, load
    _check_output(args.out, "-o/--out")
    model = load(args.model)
    if isinstance(model, SymmetrizedModel):
        model = model.model  # re-symmetrized from its network
    symmetric = SymmetrizedModel(model, args.symmetries)
    symmetric.save(args.out)
    print(f"{args.model} averaged over {', '.join(symmetric.symmetries)}: written to {args.out}")
    return 0


def _symmetries(text):
    from .symmetry import SQUARE_SYMMETRIES, _check_symmetries
    if text == "all":
        return SQUARE_SYMMETRIES
    try:  # checked here, not after a whole fit
        return _check_symmetries(tuple(s.strip() for s in text.split(",")))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _read_gray(path):
    from . import datasets
    return datasets.load_images([path])[0].astype(np.float64)


def _write_gray(path, img):
    from .datasets import _pillow_image
    _pillow_image().fromarray(np.clip(np.round(img), 0, 255).astype(np.uint8)).save(path)


def cmd_denoise(args):
    from . import load, restoration
    _check_image_output(args.out, "-o/--out")
    model = load(args.model)
    if args.threads:
        model.n_threads = args.threads
    img = _read_gray(args.image)
    clean = None
    if args.clean:
        clean = _read_gray(args.clean)
        if clean.shape != img.shape:
            raise ValueError(f"--clean {args.clean} is {clean.shape[1]}x{clean.shape[0]}, the "
                             f"image {img.shape[1]}x{img.shape[0]}")
    t0 = time.perf_counter()
    out = restoration.denoise(model, img, args.sigma, search=args.search)
    print(f"denoised {args.image} ({img.shape[1]}x{img.shape[0]}) at sigma {args.sigma} in "
          f"{time.perf_counter() - t0:.1f} s")
    if clean is not None:
        print(f"PSNR {restoration.psnr(clean, img):.2f} dB -> "
              f"{restoration.psnr(clean, out):.2f} dB")
    _write_gray(args.out, out)
    print(f"written to {args.out}")
    return 0


def cmd_inpaint(args):
    from . import load, restoration
    _check_image_output(args.out, "-o/--out")
    model = load(args.model)
    if args.threads:
        model.n_threads = args.threads
    img = _read_gray(args.image)
    mask = _read_gray(args.mask) > 127  # white marks missing pixels
    t0 = time.perf_counter()
    out = restoration.inpaint(model, img, mask, search=args.search)
    print(f"inpainted {int(mask.sum())} pixels of {args.image} in {time.perf_counter() - t0:.1f} s")
    _write_gray(args.out, out)
    print(f"written to {args.out}")
    return 0


def _restoration_options(parser):
    parser.add_argument("--threads", type=_positive, default=None)
    from .restoration import SEARCHES
    parser.add_argument("--search", choices=SEARCHES, default="tracked",
                        help="path choice per patch (see dgmmcore.restoration.denoise)")


def _drop_the_search(model, resume, checkpoint):
    """--no-search: truncated EM's candidates around the last paths are the search."""
    if not model.truncation:
        raise ValueError("--no-search needs --truncation: hard EM's paths come from the search")
    if model.estep != "heuristic":  # the full E-step scores every path whatever the passes
        raise ValueError(f"--no-search drops the heuristic E-step's search; --estep "
                         f"{model.estep} searches every path")
    if (model.warm_passes, model.n_restarts) != (0, 0):
        if resume:  # a checkpoint continues its own run
            raise ValueError(f"--no-search: the checkpoint {checkpoint} continues its run "
                             f"with the search")
        model.warm_passes, model.n_restarts = 0, 0


def build_parser():
    p = argparse.ArgumentParser(prog="dgmm", description="Deep Gaussian Mixture Models")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="train a Deep GMM (default: embedded CC0 patches)")
    src = f.add_mutually_exclusive_group()
    src.add_argument("--data", help="a folder of images or a .npy file of rows")
    src.add_argument("--bsds300", metavar="ROOT", help="BSDS300 root (official layout)")
    f.add_argument("--n-patches", type=_positive, default=None, help="training rows to use")
    f.add_argument("--layers", type=_layers, default=(10, 5, 5), help="e.g. 100,5,5")
    f.add_argument("--estep", choices=["heuristic", "full", "soft"], default="heuristic")
    f.add_argument("--truncation", type=_positive, default=None, metavar="K",
                   help="truncated soft EM: weight each row's statistics by its posterior "
                        "over the paths of the K best choices per layer around the path found "
                        "(default: hard EM)")
    f.add_argument("--no-search", action="store_true",
                   help="with --truncation: after the first E-step, each row's candidates "
                        "around its last path are the search (its best candidate becomes the "
                        "path); on BSDS300 (600, 5, 5), k=20, 0.6x the E-step time (README)")
    f.add_argument("--rerank-every", type=_positive, default=None, metavar="R",
                   help="with --truncation: rank each layer's choices on every R-th E-step "
                        "only, reusing each row's kept choices in between (default 1: every "
                        "E-step; local runs only)")
    f.add_argument("--iters", type=_positive, default=30, help="EM iterations (default 30)")
    f.add_argument("--threads", type=_positive, default=None)
    f.add_argument("--seed", type=_seed, default=0)
    f.add_argument("--reg-covar", type=float, default=None,
                   help="added to every path's covariance diagonal (absolute; default 1e-6, "
                        "or the model's own with --resume/--grow-/--widen-from). On patches "
                        "scaled to [0, 1) 1e-8 suits a GMM better (README, BSDS300)")
    f.add_argument("--init-layer", type=int, default=None, metavar="J",
                   help="the layer (0-based, -1 next to x) that starts as the k-means "
                        "clusters; default the widest")
    f.add_argument("--float32", action="store_true",
                   help="train on float32 copies of the rows: the E-step scores in float32 "
                        "(its kernel ~1.8x faster); statistics and parameters stay float64")
    f.add_argument("--symmetric-rounds", type=_positive, default=None, metavar="R",
                   help="then R rounds of hard EM with a layer of symmetries of the square in "
                        "place (each row's best mirror/turn and path); writes a symmetrized "
                        "model. On BSDS300 0.25-1 nat above averaging a plain fit (README)")
    f.add_argument("--symmetries", type=_symmetries, default="all",
                   help="with --symmetric-rounds: 'all' (the 8 of the square) or names "
                        "(identity,lr,ud,rot90,rot180,rot270,transpose,antitranspose)")
    f.add_argument("--out", default="dgmm-model.npz")
    f.add_argument("--checkpoint", metavar="PATH",
                   help="write a resumable checkpoint after every iteration (and every "
                        "round of --symmetric-rounds)")
    start = f.add_mutually_exclusive_group()
    start.add_argument("--resume", metavar="PATH",
                       help="continue a checkpoint (to --iters in total) or warm-start a model")
    start.add_argument("--grow-from", metavar="MODEL",
                       help="start from a fitted model with --layers' first layers (e.g. a "
                            "GMM for --layers 100,5,5), the new layers near the identity")
    start.add_argument("--widen-from", metavar="MODEL",
                       help="start from a fitted model with fewer nodes per layer than "
                            "--layers (e.g. 100,5,5 for --layers 150,5,5), the new nodes "
                            "splits of its heaviest ones")
    f.set_defaults(func=cmd_fit)
    s = sub.add_parser("score", help="mean held-out log-likelihood of data under a model")
    s.add_argument("model")
    s.add_argument("data", help=".npy rows or a folder of images")
    s.add_argument("--threads", type=_positive, default=None)
    s.set_defaults(func=cmd_score)
    sm = sub.add_parser("sample", help="draw samples from a model")
    sm.add_argument("model")
    sm.add_argument("-n", type=_positive, default=64)
    sm.add_argument("--png", help="write the samples as a grid of patches")
    sm.add_argument("--npy", help="write the samples as a .npy array")
    sm.add_argument("--seed", type=_seed, default=None)
    sm.set_defaults(func=cmd_sample)
    d = sub.add_parser("denoise", help="denoise a grayscale image with a patch model (EPLL)")
    d.add_argument("model")
    d.add_argument("image")
    d.add_argument("--sigma", type=float, required=True, help="noise std on the 0-255 scale")
    d.add_argument("-o", "--out", required=True)
    d.add_argument("--clean", help="the clean image, to report PSNR")
    _restoration_options(d)
    d.set_defaults(func=cmd_denoise)
    ip = sub.add_parser("inpaint", help="fill the pixels marked white in MASK")
    ip.add_argument("model")
    ip.add_argument("image")
    ip.add_argument("mask")
    ip.add_argument("-o", "--out", required=True)
    _restoration_options(ip)
    ip.set_defaults(func=cmd_inpaint)
    sy = sub.add_parser("symmetrize", help="a patch model averaged over symmetries of the "
                                           "square (mirrors, turns): a symmetric model file")
    sy.add_argument("model")
    sy.add_argument("--symmetries", type=_symmetries, default="all",
                    help="'all' (the 8 of the square, the default) or names from identity, "
                         "lr, ud, rot90, rot180, rot270, transpose, antitranspose")
    sy.add_argument("-o", "--out", required=True)
    sy.set_defaults(func=cmd_symmetrize)
    i = sub.add_parser("info", help="describe a model file")
    i.add_argument("model")
    i.set_defaults(func=cmd_info)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError, OSError, ImportError) as exc:
        print(f"dgmm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dgmm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
