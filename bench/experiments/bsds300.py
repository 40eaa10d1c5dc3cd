"""The paper's BSDS300 experiments (van den Oord & Schrauwen 2014, section 4), one command each.

    python bench/experiments/bsds300.py table1  [--root R] [--train N] [--test N] [--iters K]
    python bench/experiments/bsds300.py gaps    (same options: a trained network's likelihood
                                                 on training, train-image, validation and
                                                 test patches)
    python bench/experiments/bsds300.py figure4 [--dataset bsds300|lowres] ...
    python bench/experiments/bsds300.py figure2 ...
    python bench/experiments/bsds300.py paired --files A.model.npz B.model.npz
                                                (B - A per patch on the same validation and
                                                 test patches: a difference's standard error)
    python bench/experiments/bsds300.py estep-gap --files NET.model.npz [--test N]
                                                (the heuristic E-step against the exact best
                                                 path on a trained network's training rows)
    python bench/experiments/bsds300.py warm-start --files NET.model.npz [--train N --iters K]
                                                (a trained network continued on fresh patches
                                                 from random restarts and from exact paths)
    python bench/experiments/bsds300.py augment --models 100 --train 200000
                                                (mirrored and turned training patches against
                                                 as many fresh ones)

Every trained model is checkpointed after each EM iteration under --work (default bench/out/),
so a run that is stopped resumes where it was when the same command is given again. Results
go to bench/results/*.json (and PNG plots with matplotlib, when it is installed).
"""
import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "..", "results")
DEFAULT_ROOT = os.path.join(HERE, "..", "..", "..", "shared", "data", "bsds300")

DEFAULT_REG_COVAR = 1e-6  # DeepGMM's default; other values get their own file names
# How the M-step re-seeds nodes with fewer than D + 1 points (README, Training details): rows
# written before the split re-seeding have no "reseeding" field; they were trained with a
# plain copy at the prior floor, for empty nodes only
RESEEDING = "split"


def init_label(layers, grow):
    """How a Table 1 network started: "grown" from the GMM, or "kmeans" with the clusters in
    the last layer, or "kmeans-layerJ" with them in layer J. Until session 10 a fresh fit put
    the clusters in the last layer whatever its size (rows labelled "kmeans"); now they go in
    the widest layer."""
    from dgmmcore._init import cluster_layer
    if grow:
        return "grown"
    at = cluster_layer(layers)
    return "kmeans" if at == len(layers) - 1 else f"kmeans-layer{at + 1}"


# Table 1 of the paper: average test log-likelihood (nats) on 63-dim BSDS300 patches.
PUBLISHED = {"RNADE 1hl": 143.2, "RNADE 6hl": 155.2, "EoRNADE 6hl": 157.0, "GMM": 153.7,
             "STM": 155.3, "Deep GMM 3 layers": 156.2}


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import dgmmcore
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "dgmmcore": dgmmcore.__version__}


def load_data(args, split, n):
    from dgmmcore import datasets
    if args.dataset == "lowres":
        return datasets.load_bsds300_lowres(args.root, split, n_patches=n, random_state=args.seed)
    return datasets.load_bsds300(args.root, split, n_patches=n, random_state=args.seed)


def load_train(args, n):
    """The training patches as the fit sees them: float64, or float32 with --float32 (the
    E-step then scores in float32; statistics, parameters and held-out scores stay float64)."""
    X = load_data(args, "train", n)
    return X.astype(np.float32) if getattr(args, "float32", False) else X


def load_held_out(args, split, n):
    """Validation or test patches to score: float64, or float32 with --score-float32 (the
    networks' scoring then runs about 2.3x faster; on 20k test patches of the 16M network the
    mean moved by 7e-9 nats, no row by more than 1.3e-4)."""
    return load_data(args, split, n).astype(score_dtype(args), copy=False)


def score_dtype(args):
    """The held-out patches' dtype: float32 with --score-float32."""
    return "float32" if getattr(args, "score_float32", False) else "float64"


def model_tag(args, layers, n_train, grown=False):
    """File stem of a trained network: Table 1, Figure 4 and Figure 2 share a network trained
    with the same layers on the same training set (the "t1" in the name is historical)."""
    kind = "grown" if grown else "t1"
    tag = f"{args.dataset}-{kind}-{'x'.join(map(str, layers))}-n{n_train}-s{args.seed}"
    start = init_label(layers, grown)
    if start not in ("kmeans", "grown"):  # not the start networks trained before session 10 had
        tag = f"{tag}-{start}"
    reg = getattr(args, "reg_covar", DEFAULT_REG_COVAR)
    if reg != DEFAULT_REG_COVAR:
        tag = f"{tag}-reg{reg:g}"
    return f"{tag}-f32" if getattr(args, "float32", False) else tag


def finished_fit(args, tag, iters=None):
    """(model, fit seconds) of the run ``tag`` when it finished with --iters (or ``iters``)
    EM iterations, else None."""
    from dgmmcore import load
    from dgmmcore._persistence import read_model_file
    iters = args.iters if iters is None else iters
    done = os.path.join(args.work, f"{tag}.model.npz")
    if not os.path.exists(done):
        return None
    model = load(done)
    model.fit_seconds_ = read_model_file(done)[0].get("fit_seconds")
    return (model, model.fit_seconds_) if model.max_iter == iters else None


def fit_or_resume(layers, X, args, tag, estep="heuristic", start=None, iters=None,
                  init_paths=None, final_estep=True):
    """Train with a checkpoint per iteration; resume from it when it exists. ``start``: a model
    to continue from (warm_start) instead of a fresh initialization; ``init_paths``: a function
    returning the rows' first paths for ``start`` (called only when not resuming); ``iters``:
    EM iterations (default --iters); ``final_estep``: as ``DeepGMM.fit``'s."""
    iters = args.iters if iters is None else iters
    from dgmmcore import DeepGMM, load
    os.makedirs(args.work, exist_ok=True)
    ckpt = os.path.join(args.work, f"{tag}.ckpt.npz")
    done = os.path.join(args.work, f"{tag}.model.npz")
    ready = finished_fit(args, tag, iters)
    if ready:
        return ready
    if os.path.exists(done):
        model = load(done)
        # more iterations than the finished run had: go on from its last checkpoint
        if model.max_iter > iters or model.converged_ or not os.path.exists(ckpt):
            raise ValueError(f"{done} was trained for max_iter={model.max_iter}, not "
                             f"{iters}: move it away or pass --work elsewhere")
    t0 = time.perf_counter()
    spent = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if os.path.exists(ckpt):
            model = load(ckpt)
            model.verbose = 1
            spent = sum(r.get("estep_seconds", 0) + r.get("mstep_seconds", 0)
                        for r in model.history_)
            print(f"[{tag}] resuming at iteration {model.n_iter_}", flush=True)
            model.max_iter = iters  # a finished run extended to more iterations
            model.fit(X, checkpoint=ckpt, resume=True, final_estep=final_estep)
        elif start is not None:
            model = start
            model.max_iter, model.n_threads, model.verbose = iters, args.threads, 1
            model.fit(X, init_paths=init_paths() if init_paths else None, checkpoint=ckpt,
                      final_estep=final_estep)
        else:
            model = DeepGMM(layers, estep=estep, max_iter=iters, random_state=args.seed,
                            reg_covar=getattr(args, "reg_covar", DEFAULT_REG_COVAR),
                            n_threads=args.threads, verbose=1)
            model.fit(X, checkpoint=ckpt)
    model.fit_seconds_ = spent + time.perf_counter() - t0
    from dgmmcore._persistence import save_model
    save_model(model, done, extra={"fit_seconds": model.fit_seconds_})
    return model, model.fit_seconds_


def mean_and_stderr(values):
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def evaluate(model, X):
    return mean_and_stderr(model.score_samples(X))


def write_json(name, payload):
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, name)
    with open(path + ".tmp", "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(path + ".tmp", path)
    print(f"wrote {path}")


def merge_rows(old_rows, new_rows, key):
    """The new rows plus the old ones whose key(row) no new row has: a rerun with other sizes
    adds to a results file instead of replacing it."""
    fresh = {key(r) for r in new_rows}
    return [r for r in old_rows if key(r) not in fresh] + list(new_rows)


def read_json(name):
    path = os.path.join(RESULTS, name)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def parse_ints(text):
    """"100,5,5" -> (100, 5, 5): layer sizes, patch counts."""
    return tuple(int(t) for t in text.split(","))


def polish_suffix(args):
    """Tag suffix of the --soft-iters continuation: soft EM over all paths, or truncated soft
    EM with --truncation choices per layer."""
    if not args.soft_iters:
        return ""
    truncation = getattr(args, "truncation", 0)
    if not truncation:
        return f"-soft{args.soft_iters}"
    search = "-nosearch" if getattr(args, "no_search", False) else ""
    every = getattr(args, "rerank_every", 1)
    rerank = f"-rerank{every}" if every > 1 else ""
    return f"-trunc{truncation}{search}{rerank}-soft{args.soft_iters}"


def shorter_polish(args, tag):
    """Copy the checkpoint of the longest finished polish of ``tag`` (same kind, fewer than
    --soft-iters iterations) under this run's polish tag, so that it goes on from there
    instead of starting again from the hard network. Returns the copied polish's tag."""
    polish = os.path.join(args.work, tag + polish_suffix(args))
    if os.path.exists(f"{polish}.model.npz") or os.path.exists(f"{polish}.ckpt.npz"):
        return None
    for done in range(args.soft_iters - 1, 0, -1):
        shorter = tag + polish_suffix(argparse.Namespace(**{**vars(args), "soft_iters": done}))
        stem = os.path.join(args.work, shorter)
        if os.path.exists(f"{stem}.model.npz") and os.path.exists(f"{stem}.ckpt.npz"):
            shutil.copyfile(f"{stem}.ckpt.npz", f"{polish}.ckpt.npz")
            return shorter
    return None


def table1_tag(args, layers, n_train, soft=True):
    """File stem of a Table 1 network as trained with this run's --grow and (if ``soft``)
    --soft-iters."""
    tag = model_tag(args, layers, n_train, grown=args.grow and len(layers) > 1)
    return tag + polish_suffix(args) if soft else tag


def fit_grown(layers, X, args):
    """The 1-layer GMM of layers[0] components (the Table 1 network), grown by
    ``DeepGMM.deepen`` into ``layers`` and trained --iters more EM iterations.
    Returns (model, seconds of both fits, its tag, EM iterations of both fits)."""
    gmm, gmm_seconds = fit_or_resume(layers[:1], X, args, model_tag(args, layers[:1], len(X)))
    tag = table1_tag(args, layers, len(X), soft=False)
    start = gmm.deepen(layers[1:], random_state=args.seed)
    model, seconds = fit_or_resume(layers, X, args, tag, start=start)
    return model, gmm_seconds + seconds, tag, gmm.n_iter_ + model.n_iter_


def continued_tag(args, layers, n_train, chain):
    """File stem of a network trained on chain[0] patches (with this run's options), then
    continued on chain[1], ... and finally on n_train patches."""
    tag = table1_tag(args, layers, n_train, soft=False)
    return f"{tag}-from{'-'.join(map(str, chain))}" if chain else tag


def file_totals(path):
    """(EM iterations, fit seconds) of the one fit a finished model file holds."""
    from dgmmcore import load
    from dgmmcore._persistence import read_model_file
    return load(path).n_iter_, read_model_file(path)[0].get("fit_seconds") or 0.0


def trained_totals(args, layers, n_train, chain):
    """(EM iterations, fit seconds) of every fit behind the network continued_tag names,
    read from the model files: the GMM it was grown from, the first fit, each continuation."""
    paths = [continued_tag(args, layers, n, chain[:i]) for i, n in enumerate([*chain, n_train])]
    if args.grow and len(layers) > 1:  # the grown network's file holds the deep fit only
        paths.insert(0, model_tag(args, layers[:1], chain[0] if chain else n_train))
    iters, seconds = 0, 0.0
    for stem in paths:
        path = os.path.join(args.work, f"{stem}.model.npz")
        if not os.path.exists(path):
            raise SystemExit(f"{path} not found: train it first with the same options")
        fit_iters, fit_seconds = file_totals(path)
        iters, seconds = iters + fit_iters, seconds + fit_seconds
    return iters, seconds


def fit_continued(layers, X, args):
    """The network trained with this run's options on --continue-from N1[,N2...] patches
    (first N1, then continued on N2, ...), continued by --iters more EM iterations on this
    run's --train patches (a fresh, larger draw): what more patches per image buy once the
    network has converged on fewer. Returns (model, seconds of all fits, its tag, EM
    iterations of all fits)."""
    from dgmmcore import load
    chain = args.continue_from
    base_path = os.path.join(args.work, continued_tag(args, layers, chain[-1], chain[:-1])
                             + ".model.npz")
    if not os.path.exists(base_path):
        earlier = f" --continue-from {','.join(map(str, chain[:-1]))}" if chain[:-1] else ""
        raise SystemExit(f"{base_path} not found: train it first with --train {chain[-1]}"
                         f"{earlier} and the same options")
    base = load(base_path)
    base.warm_start = True
    tag = continued_tag(args, layers, len(X), chain)
    model, _ = fit_or_resume(layers, X, args, tag, start=base)
    iters, seconds = trained_totals(args, layers, len(X), chain)
    return model, seconds, tag, iters


def widened_tag(args, layers, n_train):
    """File stem of the --widen-from network, widened to ``layers`` and continued on n_train
    patches."""
    base = continued_tag(args, layers, n_train, args.continue_from)
    return f"{base}-widened{'x'.join(map(str, args.widen_from))}"


def fit_widened(layers, X, args):
    """The network this run's options name with --widen-from's layers (trained on these --train
    patches, after --continue-from's), widened by ``DeepGMM.widen`` to ``layers`` and trained
    --iters more EM iterations on the same patches, starting from its rows' last paths.
    Returns (model, seconds of all fits, its tag, EM iterations of all fits)."""
    from dgmmcore import load
    base_layers = args.widen_from
    if len(base_layers) != len(layers) or any(b > n for b, n in zip(base_layers, layers)):
        raise SystemExit(f"--widen-from {base_layers} cannot be widened to {layers}")
    base_tag = continued_tag(args, base_layers, len(X), args.continue_from)
    # the checkpoint holds the parameters of the finished model and its rows' paths
    base_path = os.path.join(args.work, f"{base_tag}.ckpt.npz")
    if not os.path.exists(base_path):
        raise SystemExit(f"{base_path} not found: train it first with --models "
                         f"{','.join(map(str, base_layers))} and the same options")
    start = load(base_path).widen(layers, random_state=args.seed)
    tag = widened_tag(args, layers, len(X))
    model, seconds = fit_or_resume(layers, X, args, tag, start=start)
    iters, base_seconds = trained_totals(args, base_layers, len(X), args.continue_from)
    return model, base_seconds + seconds, tag, iters + model.n_iter_


def checkpoint_paths(path, layers):
    """The rows' paths a checkpoint holds (its last E-step's), as (n, k) node indices."""
    from dgmmcore._network import unravel_paths
    with np.load(path, allow_pickle=False) as f:
        return unravel_paths(f["checkpoint_paths"], layers)


def network_tag(args, layers, n_train):
    """File stem of the network this run's --grow/--continue-from/--widen-from name, trained
    on n_train patches (before --add-fresh)."""
    if args.widen_from:
        return widened_tag(args, layers, n_train)
    if args.continue_from:
        return continued_tag(args, layers, n_train, args.continue_from)
    return table1_tag(args, layers, n_train, soft=False)


def fresh_train(args, n, stage=0):
    """n training patches drawn independently of the --train draw, for the stage-th
    --add-fresh: the seed's second stream (stage 0; also apart from the seed + 1 draw that
    ``gaps`` scores as fresh patches), then its children [seed, 1, stage]."""
    stream = np.random.SeedSequence([args.seed, 1] + ([stage] if stage else []))
    args_fresh = argparse.Namespace(**{**vars(args), "seed": stream})
    return load_train(args_fresh, n)


def fresh_validation_images(args, n):
    """n training patches of the validation images, for --add-validation-images: the seed's
    third stream, apart from the validation patches every run scores (the seed's own)."""
    stream = np.random.SeedSequence([args.seed, 2])
    X = load_data(argparse.Namespace(**{**vars(args), "seed": stream}), "validation", n)
    return X.astype(np.float32) if getattr(args, "float32", False) else X


def added_stages(args, n_train):
    """(patches, split) of every stage the network is continued on after its n_train patches:
    --add-fresh's (the train images), then, with --add-validation-images, as many patches
    per validation image as the rows before have per train image (the paper's training set
    is all 200 train images; with it the validation score is no longer held out)."""
    from dgmmcore.datasets import bsds300_image_ids
    stages = [(m, "train") for m in args.add_fresh]
    if getattr(args, "add_validation_images", False):
        n_rows = n_train + sum(args.add_fresh)
        per_image = n_rows / len(bsds300_image_ids(args.root, "train"))
        stages.append((round(per_image * len(bsds300_image_ids(args.root, "validation"))),
                       "validation"))
    return stages


def extended_tag(args, layers, n_train, stages=None):
    """File stem of the network_tag network continued on fresh patches, one stage after the
    other (``stages``: (patches, split) pairs, default added_stages)."""
    stages = added_stages(args, n_train) if stages is None else stages
    return network_tag(args, layers, n_train) + "".join(
        f"-plus{m}" if split == "train" else f"-plusval{m}" for m, split in stages)


def network_totals(args, layers, n_train):
    """(EM iterations, fit seconds) of every fit behind the network network_tag names."""
    if not args.widen_from:
        return trained_totals(args, layers, n_train, args.continue_from)
    iters, seconds = trained_totals(args, args.widen_from, n_train, args.continue_from)
    widened_iters, widened_seconds = file_totals(
        os.path.join(args.work, f"{widened_tag(args, layers, n_train)}.model.npz"))
    return iters + widened_iters, seconds + widened_seconds


# A stage of fresh train-image draws seen through the left-right mirror (continue_network.py
# --mirrored): once the draws mostly repeat patch positions, the mirror images are patches
# the rows do not hold yet, and the networks score mirrored test patches as the originals.
MIRRORED = "train-lr"


def extended_rows(args, X, stages):
    """X and then every stage's fresh rows (added_stages; a MIRRORED stage's draws mirrored),
    in one array filled draw by draw (no second full copy: 24M float32 rows are 6 GB)."""
    from dgmmcore.datasets import symmetric_patches
    X_all = np.empty((len(X) + sum(m for m, _ in stages), X.shape[1]), dtype=X.dtype)
    X_all[:len(X)] = X
    at = len(X)
    for stage, (m, split) in enumerate(stages):
        if split == "validation":
            X_all[at:at + m] = fresh_validation_images(args, m)
        else:  # the stage's own stream, mirrored or not
            X_all[at:at + m] = fresh_train(args, m, stage)
            if split == MIRRORED:
                X_all[at:at + m] = symmetric_patches(X_all[at:at + m], "lr")
        at += m
    return X_all


def fit_extended(layers, X, args):
    """The finished network the other options name (trained on the --train patches X),
    continued for --iters EM iterations on X plus the fresh patches of every added stage
    (added_stages: --add-fresh M1, M2, ..., then --add-validation-images): the stages
    before the last must be finished runs (the same command with fewer stages). The last
    stage's old rows start from their paths in its base's last checkpoint, its fresh rows
    from their exact best paths (``predict``; cached beside the checkpoint: 35 min for 6M
    rows at (600, 5, 5) on 2 cores), so no row starts from scratch. Returns (model, seconds
    of all fits, its tag, EM iterations of all fits, training patches, the rows drawn: None
    when the run had finished before)."""
    from dgmmcore import load
    stages = added_stages(args, len(X))
    *earlier, (last, _) = stages
    iters, seconds = 0, 0.0
    for k in range(len(earlier) + 1):  # the base network and each finished stage
        path = os.path.join(args.work, extended_tag(args, layers, len(X), earlier[:k])
                            + ".model.npz")
        if not os.path.exists(path):
            with_stages = (f"--add-fresh {','.join(str(m) for m, _ in earlier[:k])}" if k
                           else "without --add-fresh")
            raise SystemExit(f"{path} not found: train it first with the same options "
                             f"{with_stages}")
        if k:
            stage_iters, stage_seconds = file_totals(path)
            iters, seconds = iters + stage_iters, seconds + stage_seconds
    base_iters, base_seconds = network_totals(args, layers, len(X))
    iters, seconds = iters + base_iters, seconds + base_seconds
    base_tag = extended_tag(args, layers, len(X), earlier)
    tag = extended_tag(args, layers, len(X))
    n_rows = len(X) + sum(m for m, _ in stages)
    ready = finished_fit(args, tag)
    if ready:  # only to be scored: no need to draw the stages' rows again
        model, fit_seconds = ready
        return model, seconds + fit_seconds, tag, iters + model.n_iter_, n_rows, None
    base = load(path)  # the last network the loop found: the base of the last stage
    X_all = extended_rows(args, X, stages)
    fresh = X_all[len(X_all) - last:]

    def init_paths():
        cache = os.path.join(args.work, f"{tag}.fresh-paths.npy")
        if os.path.exists(cache):
            fresh_paths = np.load(cache, allow_pickle=False)
        else:
            t0 = time.perf_counter()
            fresh_paths = base.predict(fresh)
            print(f"[{tag}] exact paths of {len(fresh)} fresh rows: "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
            np.save(cache, fresh_paths)
        old = checkpoint_paths(os.path.join(args.work, f"{base_tag}.ckpt.npz"), base.layers)
        return np.concatenate([old, fresh_paths])

    base.warm_start, base.n_threads = True, args.threads
    model, fit_seconds = fit_or_resume(layers, X_all, args, tag, start=base,
                                       init_paths=init_paths)
    return model, seconds + fit_seconds, tag, iters + model.n_iter_, len(X_all), X_all


def table1_row_key(r):
    """What makes two Table 1 rows the same network: a rerun replaces its row."""
    return (tuple(r["layers"]), r["train_patches"], r["test_patches"],
            r.get("init", "kmeans"), r.get("soft_em_iterations", 0),
            r.get("reg_covar", DEFAULT_REG_COVAR), r.get("train_dtype", "float64"),
            r.get("reseeding", "copy"), tuple(r.get("continued_from_patches") or ()),
            tuple(r.get("widened_from") or ()), tuple(r.get("added_fresh_patches") or ()),
            tuple(r.get("added_fresh_mirrored") or ()),
            r.get("added_validation_image_patches"), r.get("truncation"),
            r.get("truncation_search", True if r.get("truncation") else None),
            # continue_network.py's rows: the published network they went on from, and
            # the symmetries of the square a symmetrized row averages it over
            r.get("start_file"), tuple(r.get("symmetries") or ()))


def fit_polish(layers, X, args, model, hard_tag, init_paths=None):
    """--soft-iters (soft or truncated EM) continued from ``model``, the hard run ``hard_tag``
    finished: (model, seconds), under the tag hard_tag + polish_suffix. Truncated EM searches
    from the rows' paths of the hard run's last E-step (its checkpoint's; not from the exact
    search a loaded model would start with) unless ``init_paths`` gives the rows' paths."""
    set_estep(model, args)
    ckpt = os.path.join(args.work, f"{hard_tag}.ckpt.npz")
    if init_paths is None and args.truncation and os.path.exists(ckpt):
        init_paths = lambda: checkpoint_paths(ckpt, layers)  # noqa: E731
    return fit_or_resume(layers, X, args, hard_tag + polish_suffix(args), start=model,
                         iters=args.soft_iters, init_paths=init_paths, final_estep=False)


def set_estep(model, args):
    """Continue ``model`` (warm start) with this run's E-step: --soft-iters as soft EM, or as
    truncated EM with --truncation (without the search with --no-search, ranking on every
    --rerank-every-th E-step); hard EM with the paper's heuristic without --soft-iters. What a
    loaded model's file held of an earlier run's E-step is replaced, from DeepGMM's defaults."""
    from dgmmcore import DeepGMM
    defaults = DeepGMM(model.layers)
    model.warm_start = True
    model.estep = "soft" if args.soft_iters and not args.truncation else "heuristic"
    model.truncation = (args.truncation or None) if args.soft_iters else None
    model.rerank_every = args.rerank_every if model.truncation else 1
    model.warm_passes, model.n_restarts = defaults.warm_passes, defaults.n_restarts
    if model.truncation and args.no_search:
        model.warm_passes, model.n_restarts = 0, 0  # the candidates are the search


def save_table1_rows(dataset, rows):
    """Merge Table 1 rows into results/DATASET.json (a row with the same key replaced)."""
    old_rows = read_json(f"{dataset}.json").get("models", [])
    write_json(f"{dataset}.json", {"machine": machine(), "published": PUBLISHED,
                                   "models": merge_rows(old_rows, rows, table1_row_key)})


def cmd_table1(args):
    train = load_train(args, args.train)
    valid = load_data(args, "validation", min(args.test, 50_000))
    test = load_data(args, "test", args.test)
    rows = []
    for spec in args.models:
        layers = parse_ints(spec)
        grow = args.grow and len(layers) > 1
        print(f"== {layers} on {len(train)} patches{' (grown from the GMM)' if grow else ''}",
              flush=True)
        n_train, extended = len(train), None
        if args.add_fresh or args.add_validation_images:
            model, seconds, tag, hard_iters, n_train, extended = fit_extended(layers, train,
                                                                              args)
        elif args.widen_from:
            model, seconds, tag, hard_iters = fit_widened(layers, train, args)
        elif args.continue_from:
            model, seconds, tag, hard_iters = fit_continued(layers, train, args)
        elif grow:
            model, seconds, tag, hard_iters = fit_grown(layers, train, args)
        else:
            tag = model_tag(args, layers, len(train))
            model, seconds = fit_or_resume(layers, train, args, tag)
            hard_iters = model.n_iter_
        if args.soft_iters:
            # soft EM (or truncated soft EM) continued from the hard-EM network, on the rows
            # it was trained on; the held-out scores, not a last E-step, measure the result
            soft_tag, rows_fitted = tag + polish_suffix(args), train
            if ((args.add_fresh or args.add_validation_images)
                    and not finished_fit(args, soft_tag, args.soft_iters)):
                # the hard stage's rows when it ran now (24M float32 rows: 6 GB to draw again)
                rows_fitted = (extended if extended is not None
                               else extended_rows(args, train, added_stages(args, len(train))))
            shorter = shorter_polish(args, tag)
            if shorter:
                print(f"[{soft_tag}] going on from {shorter}", flush=True)
            model, soft_seconds = fit_polish(layers, rows_fitted, args, model, tag)
            seconds += soft_seconds
        ll, se = evaluate(model, test)
        # a network trained on the validation images has no held-out validation score
        vll, vse = (None, None) if args.add_validation_images else evaluate(model, valid)
        rows.append({"layers": list(layers), "paths": int(np.prod(layers)),
                     "parameters": int(model.n_parameters()), "train_patches": n_train,
                     "test_patches": len(test), "init": init_label(layers, grow),
                     "em_iterations": hard_iters,  # hard EM (both fits when grown)
                     "soft_em_iterations": args.soft_iters,
                     # the soft iterations' candidates: choices per layer (None: every path)
                     "truncation": (args.truncation or None) if args.soft_iters else None,
                     # truncated iterations without the heuristic search (None: not truncated)
                     "truncation_search": ((not args.no_search) if args.soft_iters
                                           and args.truncation else None),
                     # truncated iterations rank the top nodes on every this many E-steps
                     "rerank_every": (args.rerank_every if args.soft_iters and args.truncation
                                      else None),
                     "reg_covar": model.reg_covar,
                     "train_dtype": train.dtype.name, "reseeding": RESEEDING,
                     # trained first on this many patches, then on train_patches
                     "continued_from_patches": list(args.continue_from) or None,  # [N1, N2, ...]
                     # a network of these layers, trained as this row says, then widened
                     "widened_from": list(args.widen_from) or None,
                     # of train_patches, these many were added fresh to the finished
                     # network, stage by stage: [M1, M2, ...]
                     "added_fresh_patches": list(args.add_fresh) or None,
                     # then these many of the validation images (None: never trained on them)
                     "added_validation_image_patches": (
                         added_stages(args, len(train))[-1][0]
                         if args.add_validation_images else None),
                     "test_loglik": ll, "stderr": se, "valid_loglik": vll, "valid_stderr": vse,
                     "fit_seconds": seconds, "fit_threads": model.n_threads,  # None: every CPU
                     # rows from many sessions share the file; the top-level machine is the
                     # last writer's, this one is where fit_seconds was measured
                     "machine": machine()["cpu"]})
        held_out = "trained on" if vll is None else f"{vll:.3f}"
        print(f"   test {ll:.3f} +- {se:.3f} nats (validation {held_out}), {seconds:.0f} s",
              flush=True)
        save_table1_rows(args.dataset, rows)


def cmd_gaps(args):
    """Where a trained Table 1 network loses its likelihood: its own training patches (every
    20th), fresh patches of the same train images, the validation images, the test images."""
    from dgmmcore import load
    train = load_data(args, "train", args.train)
    own = train[::20]
    del train
    args_fresh = argparse.Namespace(**{**vars(args), "seed": args.seed + 1})
    sets = {"own_training_patches": own,
            "fresh_patches_train_images": load_data(args_fresh, "train", len(own)),
            "validation_images": load_data(args, "validation", min(args.test, 50_000)),
            "test_images": load_data(args, "test", args.test)}
    rows = []
    for spec in args.models:
        layers = parse_ints(spec)
        tag = extended_tag(args, layers, args.train)
        tag += polish_suffix(args)  # as table1 names the soft-EM continuation
        path = os.path.join(args.work, f"{tag}.model.npz")
        if not os.path.exists(path):
            raise SystemExit(f"{path} not found: train it first with the same table1 options")
        model = load(path)
        model.n_threads = args.threads
        row = {"model": tag, "layers": list(layers), "train_patches": args.train,
               "patches": {k: len(X) for k, X in sets.items()}}
        for name, X in sets.items():
            row[name], row[name + "_stderr"] = evaluate(model, X)
        rows.append(row)
        print(f"{tag}: " + ", ".join(f"{k} {row[k]:.3f}" for k in sets), flush=True)
    old_rows = read_json(f"{args.dataset}-gaps.json").get("rows", [])
    write_json(f"{args.dataset}-gaps.json", {
        "machine": machine(),
        "rows": merge_rows(old_rows, rows, key=lambda r: (r["model"], str(r["patches"])))})


def model_name(path, work):
    """A model file as the JSON names it: relative to --work when it lies inside (old runs are
    kept in subfolders there, under the same file names), else its base name."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(work))
    return os.path.basename(path) if rel.startswith("..") else rel


def cmd_paired(args):
    """Two trained models scored on the same validation and test patches: each model's mean
    and, paired, the mean of the per-patch differences B - A and its standard error, far
    smaller than either model's own (the patches' spread is shared)."""
    from dgmmcore import load
    if len(args.files) != 2:
        raise SystemExit("paired needs --files A.model.npz B.model.npz")
    a, b = (load(f) for f in args.files)
    for m in (a, b):
        m.n_threads = args.threads
    row = {"A": model_name(args.files[0], args.work), "B": model_name(args.files[1], args.work)}
    sets = {"validation": load_data(args, "validation", min(args.test, 50_000)),
            "test": load_data(args, "test", args.test)}
    for name, X in sets.items():
        row[f"{name}_patches"] = len(X)
        scores = {"A": a.score_samples(X), "B": b.score_samples(X)}
        for key, s in scores.items():
            row[f"{name}_{key}"], row[f"{name}_{key}_stderr"] = mean_and_stderr(s)
        row[f"{name}_B_minus_A"], row[f"{name}_stderr"] = mean_and_stderr(
            scores["B"] - scores["A"])
        print(f"{name}: A {row[f'{name}_A']:.3f} +- {row[f'{name}_A_stderr']:.3f}, "
              f"B {row[f'{name}_B']:.3f} +- {row[f'{name}_B_stderr']:.3f}, "
              f"B - A = {row[f'{name}_B_minus_A']:.3f} +- {row[f'{name}_stderr']:.3f} nats",
              flush=True)
    old_rows = read_json(f"{args.dataset}-paired.json").get("rows", [])
    write_json(f"{args.dataset}-paired.json", {
        "machine": machine(),
        "rows": merge_rows(old_rows, [row], key=lambda r: (r["A"], r["B"], r["test_patches"]))})


def cmd_estep_gap(args):
    """How far the heuristic E-step is from the exact best path at the end of training: the
    paper's protocol warm-started from the paths in the network's checkpoint (the last
    E-step's), against the full search, on the first --test training rows the network saw."""
    from dgmmcore import _estep, load
    if len(args.files) != 1 or not args.files[0].endswith(".model.npz"):
        raise SystemExit("estep-gap needs --files NET.model.npz (its .ckpt.npz beside it)")
    model = load(args.files[0])
    model.n_threads = args.threads
    layers = model.weights_.shape
    last = checkpoint_paths(args.files[0][:-len(".model.npz")] + ".ckpt.npz", layers)
    X = load_data(args, "train", len(last))[: args.test]
    warm = last[: len(X)]
    table = model._path_table()
    paths, heuristic, _ = _estep.heuristic_estep(table, X, warm, args.seed, model._threads(),
                                                 model.warm_passes, model.n_restarts,
                                                 model.restart_passes)
    log_p, best, exact = _estep.exact_scores(table, X, model._threads())
    row = {"model": model_name(args.files[0], args.work), "layers": list(layers),
           "rows": len(X), "heuristic": float(heuristic.mean()), "exact": float(exact.mean()),
           "rows_off_best": float(np.mean(_estep.ravel_paths(paths, layers) != best)),
           "log_p": float(log_p.mean())}
    print(f"{row['model']}: heuristic {row['heuristic']:.4f}, exact {row['exact']:.4f} nats "
          f"(gap {row['exact'] - row['heuristic']:.4f}, {row['rows_off_best']:.2%} of rows off "
          f"their best path); log p(x) over all paths {row['log_p']:.4f}", flush=True)
    old_rows = read_json(f"{args.dataset}-estep-gap.json").get("rows", [])
    write_json(f"{args.dataset}-estep-gap.json", {
        "machine": machine(),
        "rows": merge_rows(old_rows, [row], key=lambda r: (r["model"], r["rows"]))})


def cmd_warm_start(args):
    """A trained network continued on a fresh draw of --train patches for --iters EM
    iterations, its first E-step from random restarts (as before session 11) or exact (the
    default since): the objective per iteration and the validation figure at the end."""
    from unittest import mock

    from dgmmcore import _em, load
    if len(args.files) != 1:
        raise SystemExit("warm-start needs --files NET.model.npz")
    args_fresh = argparse.Namespace(**{**vars(args), "seed": args.seed + 2})
    X = load_train(args_fresh, args.train)
    valid = load_data(args, "validation", min(args.test, 50_000))
    row = {"model": model_name(args.files[0], args.work), "train_patches": len(X),
           "em_iterations": args.iters}
    for start, budget in (("random", 0), ("exact", _em.EXACT_START_RESTARTS)):
        model = load(args.files[0])
        model.warm_start, model.max_iter, model.n_threads = True, args.iters, args.threads
        model.random_state = args.seed
        with mock.patch.object(_em, "EXACT_START_RESTARTS", budget), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X)
        row[f"{start}_objective"] = [r["objective"] for r in model.history_]
        row[f"{start}_valid_loglik"], _ = evaluate(model, valid)
        print(f"{start} start: objective " + " ".join(f"{o:.3f}" for o in row[f"{start}_objective"])
              + f"; validation {row[f'{start}_valid_loglik']:.3f}", flush=True)
    old_rows = read_json(f"{args.dataset}-warm-start.json").get("rows", [])
    write_json(f"{args.dataset}-warm-start.json", {
        "machine": machine(),
        "rows": merge_rows(old_rows, [row], key=lambda r: (r["model"], r["train_patches"],
                                                          r["em_iterations"]))})


def augmented_sets(X, n):
    """Training sets for cmd_augment from a draw X of 4n patches: n, 2n and 4n real patches,
    and the first n with their mirror images (2n rows) or with three symmetries (4n rows)."""
    from dgmmcore.datasets import symmetric_patches
    base = X[:n]
    return {"real n": base, "real 2n": X[:2 * n], "real 4n": X[:4 * n],
            "n + lr": np.concatenate([base, symmetric_patches(base, "lr")]),
            "n + lr, ud, rot180": np.concatenate(
                [base] + [symmetric_patches(base, k) for k in ("lr", "ud", "rot180")])}


def cmd_augment(args):
    """What symmetries of the training patches are worth against as many fresh patches: each
    --models network trained on n = --train patches, on 2n and 4n, and on the n patches with
    their mirror images (2n rows) or three symmetries (4n rows); validation and test
    figures, and each augmented set paired against the real set of its size."""
    from dgmmcore import DeepGMM
    X = load_train(args, 4 * args.train)
    valid = load_data(args, "validation", min(args.test, 50_000))
    test = load_data(args, "test", args.test)
    same_size = {"n + lr": "real 2n", "n + lr, ud, rot180": "real 4n"}
    rows = []
    for spec in args.models:
        layers = parse_ints(spec)
        scores = {}
        for name, train in augmented_sets(X, args.train).items():
            t0 = time.perf_counter()
            model = DeepGMM(layers, max_iter=args.iters, random_state=args.seed,
                            reg_covar=args.reg_covar, n_threads=args.threads)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(train)
            seconds = time.perf_counter() - t0
            scores[name] = (model.score_samples(valid), model.score_samples(test))
            row = {"layers": list(layers), "training_set": name, "train_rows": len(train),
                   "distinct_patches": len(train) if name.startswith("real") else args.train,
                   "em_iterations": model.n_iter_, "max_iter": args.iters,
                   "reg_covar": args.reg_covar, "train_dtype": train.dtype.name,
                   "fit_seconds": seconds}
            for split, s in zip(("valid", "test"), scores[name]):
                row[f"{split}_loglik"], row[f"{split}_stderr"] = mean_and_stderr(s)
            if name in same_size:  # paired against as many real rows
                for split, s, r in zip(("valid", "test"), scores[name], scores[same_size[name]]):
                    row[f"{split}_minus_real"], row[f"{split}_minus_real_stderr"] = \
                        mean_and_stderr(s - r)
            rows.append(row)
            print(f"{layers} {name:20s} {len(train):8d} rows: validation "
                  f"{row['valid_loglik']:.3f}, test {row['test_loglik']:.3f} "
                  f"({seconds:.0f} s)", flush=True)
    old_rows = read_json(f"{args.dataset}-augment.json").get("rows", [])
    key = lambda r: (tuple(r["layers"]), r["training_set"], r["train_rows"],  # noqa: E731
                     r["max_iter"], r["reg_covar"], r["train_dtype"])
    write_json(f"{args.dataset}-augment.json", {"machine": machine(), "train_patches": args.train,
                                                "test_patches": len(test),
                                                "rows": merge_rows(old_rows, rows, key)})


def cmd_figure4(args):
    """Validation and test log-likelihood against the top layer's size for 1, 2 and 3 layers
    (the others 5 nodes); the best size per depth is the one with the best validation figure."""
    if args.plot_only:
        plot_figure4(read_json(f"figure4-{args.dataset}.json")["rows"], args.dataset)
        return
    train = load_train(args, args.train)
    valid = load_data(args, "validation", args.test)
    test = load_data(args, "test", args.test)
    rows = []
    for depth in (1, 2, 3):
        for top in args.tops:
            layers = (top,) + (5,) * (depth - 1)
            model, seconds = fit_or_resume(layers, train, args, model_tag(args, layers, len(train)))
            ll, se = evaluate(model, valid)
            tll, tse = evaluate(model, test)
            rows.append({"layers": list(layers), "depth": depth, "top": top,
                         "parameters": int(model.n_parameters()), "valid_loglik": ll,
                         "stderr": se, "test_loglik": tll, "test_stderr": tse,
                         "fit_seconds": seconds})
            print(f"{layers}: validation {ll:.3f} +- {se:.3f}, test {tll:.3f} +- {tse:.3f}",
                  flush=True)
            write_json(f"figure4-{args.dataset}.json", {
                "machine": machine(), "rows": rows, "train_patches": len(train),
                "em_iterations": args.iters, "chosen_on_validation": chosen_on_validation(rows)})
    plot_figure4(rows, args.dataset)


def chosen_on_validation(rows):
    """Per depth, the layers with the best validation log-likelihood and their test figure."""
    best = {}
    for r in rows:
        if r["depth"] not in best or r["valid_loglik"] > best[r["depth"]]["valid_loglik"]:
            best[r["depth"]] = r
    return {d: {"layers": r["layers"], "valid_loglik": r["valid_loglik"],
                "test_loglik": r["test_loglik"]} for d, r in sorted(best.items())}


def plot_figure4(rows, dataset):
    """Plot a figure4 JSON's rows (also: ``python bsds300.py figure4 --plot-only``)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    # separate y axes: validation and test images differ by up to 12 nats (lowres)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key, label in ((axes[0], "valid_loglik", "validation"),
                           (axes[1], "test_loglik", "test")):
        for depth in (1, 2, 3):
            pts = sorted((r["top"], r[key]) for r in rows if r["depth"] == depth and key in r)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=f"{depth} layer{'s' * (depth > 1)}")
        ax.set_xlabel("components in the top layer")
        ax.set_ylabel(f"{label} log-likelihood (nats)")
        ax.legend()
    fig.suptitle(f"Figure 4 ({dataset})")
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, f"figure4-{dataset}.png"), dpi=120)


def cmd_figure2(args):
    """Heuristic vs full search on a trained network: log-likelihood of the best path found by
    passes and by restarts, and the switch rate over EM iterations of a heuristic fit."""
    from dgmmcore import _estep
    train = load_train(args, args.train)
    layers = parse_ints(args.models[0])
    tag = model_tag(args, layers, len(train))
    model, _ = fit_or_resume(layers, train, args, tag)
    X = train[: args.test]
    table = model._path_table()
    _, _, exact = _estep.exact_scores(table, X, model._threads())
    by_passes, by_restarts = [], []
    for passes in range(1, 6):
        _, score = _estep.coordinate_ascent(
            table, X, np.random.default_rng(0).integers(0, layers, size=(len(X), len(layers))),
            passes, model._threads())
        by_passes.append(float(score.mean()))
    for restarts in range(1, 6):
        _, score, _ = _estep.heuristic_estep(table, X, None, np.random.default_rng(0),
                                             model._threads(), 0, restarts, 3)
        by_restarts.append(float(score.mean()))
    write_json(f"figure2-{args.dataset}.json", {
        "machine": machine(), "layers": list(layers), "rows": len(X),
        "full_search": float(exact.mean()), "by_passes": by_passes, "by_restarts": by_restarts,
        "switch_rate": [r["switch_rate"] for r in model.history_]})
    plot_figure2(float(exact.mean()), by_passes, by_restarts,
                 [r["switch_rate"] for r in model.history_], args.dataset)


def plot_figure2(full_search, by_passes, by_restarts, switch_rate, dataset):
    """The paper's Figure 2: (a) best-path log-likelihood by passes, (b) by restarts, both
    against the full search, (c) switch rate over EM iterations."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, values, label in ((axes[0], by_passes, "passes"), (axes[1], by_restarts, "restarts")):
        ax.plot(range(1, len(values) + 1), values, marker="o", label="heuristic")
        ax.axhline(full_search, color="k", linestyle="--", label="full search")
        ax.set_xlabel(label)
        ax.set_ylabel("mean best-path log-likelihood")
        ax.legend()
    rates = [(i, 100 * r) for i, r in enumerate(switch_rate) if r == r]  # drop NaN (cold start)
    if rates:
        axes[2].plot(*zip(*rates), marker=".")
    axes[2].set_xlabel("EM iteration")
    axes[2].set_ylabel("switch rate (%)")
    fig.suptitle(f"Figure 2 ({dataset})")
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, f"figure2-{dataset}.png"), dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("command", choices=["table1", "gaps", "figure4", "figure2", "paired",
                                          "estep-gap", "warm-start", "augment"])
    p.add_argument("--root", default=DEFAULT_ROOT)
    p.add_argument("--dataset", choices=["bsds300", "lowres"], default="bsds300")
    p.add_argument("--train", type=int, default=1_000_000)
    p.add_argument("--test", type=int, default=250_000)
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--models", nargs="+", default=["100", "100,5", "100,5,5"])
    p.add_argument("--tops", type=int, nargs="+", default=[10, 25, 50, 100, 200])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot-only", action="store_true",
                   help="figure4: redraw the PNG from the JSON without training")
    p.add_argument("--soft-iters", type=int, default=0,
                   help="table1: continue each network with this many soft-EM iterations")
    p.add_argument("--no-search", action="store_true",
                   help="table1/gaps: truncated --soft-iters without the heuristic search: "
                        "each row's candidates around its last path are the search")
    p.add_argument("--truncation", type=int, default=0,
                   help="table1/gaps: make the --soft-iters truncated soft EM (DeepGMM's "
                        "truncation: this many choices per layer around each row's path)")
    p.add_argument("--rerank-every", type=int, default=1,
                   help="table1: with --truncation, rank each layer's choices on every this "
                        "many E-steps only (DeepGMM's rerank_every)")
    p.add_argument("--reg-covar", type=float, default=DEFAULT_REG_COVAR,
                   help="table1/gaps: DeepGMM's reg_covar (added to every node's covariance)")
    p.add_argument("--float32", action="store_true",
                   help="fit on float32 patches: the E-step scores them in float32 (the scoring "
                        "kernel is ~1.8x faster); statistics, parameters and held-out scores "
                        "stay float64")
    p.add_argument("--grow", action="store_true",
                   help="table1: start each deep network from the trained GMM of its top "
                        "layer's size (DeepGMM.deepen) instead of k-means")
    p.add_argument("--continue-from", type=parse_ints, default=(), metavar="N1[,N2...]",
                   help="table1/gaps: continue the network trained with the same options on N1 "
                        "patches (then continued on N2, ...) for --iters EM iterations on the "
                        "--train patches")
    p.add_argument("--widen-from", type=parse_ints, default=(), metavar="N1,N2,...",
                   help="table1/gaps: widen the network of these layers, trained with the same "
                        "options on the same --train patches, to --models (DeepGMM.widen) and "
                        "continue it there for --iters EM iterations")
    p.add_argument("--add-fresh", type=parse_ints, default=(), metavar="M1[,M2...]",
                   help="table1/gaps: continue the finished network the other options name on "
                        "its --train patches plus M1 fresh ones for --iters EM iterations "
                        "(old rows from their last paths, new rows from their exact best "
                        "paths); M1,M2: that network, finished, continued on M2 more")
    p.add_argument("--add-validation-images", action="store_true",
                   help="table1/gaps: continue the finished network the other options name "
                        "(with its --add-fresh stages) on its rows plus fresh patches of the 20 "
                        "validation images, as many per image as its rows have per train "
                        "image, for --iters EM iterations: all 200 train images, the paper's "
                        "training set, once the layer sizes are chosen (no validation score)")
    p.add_argument("--files", nargs="+", default=[],
                   help="paired: the two model files A and B; estep-gap, warm-start: one network")
    p.add_argument("--work", default=os.path.join(HERE, "..", "out"))
    args = p.parse_args(argv)
    {"table1": cmd_table1, "gaps": cmd_gaps, "figure4": cmd_figure4,
     "figure2": cmd_figure2, "paired": cmd_paired, "estep-gap": cmd_estep_gap,
     "warm-start": cmd_warm_start, "augment": cmd_augment}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
