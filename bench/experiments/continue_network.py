"""A trained BSDS300 network carried from one machine to the next as its model file alone.

The Table 1 runs (bsds300.py table1) go on from the checkpoints they leave under --work: the
parameters and every training row's last path. Those are gigabytes and live on the machine
that made them. ``publish`` writes a finished network as a small model file that a
repository can carry (parameters rounded to float32, stored compressed in dgmmcore's model
format), with the recipe of its training rows and the totals of the runs behind it;
``continue`` picks such a file up anywhere: it draws the same rows again from the seed (and
any fresh stages after them), starts every row from its exact best path (``predict``, cached
block by block beside the checkpoint; with ``--start-keep K`` from the best path under its K
most likely top-layer nodes, about a third of the cost) and trains on with hard or truncated
soft EM, writing a Table 1 row with the totals carried on.

    python bench/experiments/continue_network.py publish --out bench/models/NET.npz \\
        TABLE1 OPTIONS OF THE FINISHED RUN (--train, --models, --grow, --add-fresh, ...)
    python bench/experiments/continue_network.py continue --model bench/models/NET.npz \\
        [--add-fresh M1[,M2...] [--mirrored]] [--iters H] [--soft-iters K --truncation 20
        --no-search --rerank-every 3] [--start-keep 40] [--widen-to 800,5,5] [--threads 2]
        [--test 250000] [--work bench/out/continued] [--publish bench/models/NEXT.npz]
                                              (the result as a portable file in turn)
    python bench/experiments/continue_network.py symmetrize --model bench/models/NET.npz \\
        [--threads 2] [--test 250000] [--out NET-symmetric.npz]
                                              (averaged over symmetries of the square, scored)
    python bench/experiments/continue_network.py novelty --model bench/models/NET.npz \\
        [--rows 100000] [--threads 2]         (how new fresh or mirrored rows are to it)

``continue`` takes the rows' recipe (seed, patches, stages, float32, reg_covar) from the file,
so the run trains on exactly the rows a table1 chain with the same stages would.
``--add-validation-images`` adds the 20 validation images' patches (as many per image as the
rows before have per train image, table1's stage of that name): the paper's training set is
all 200 train images; from then on the validation score is no longer held out.
``--mirrored`` sees the ``--add-fresh`` draws through the left-right mirror: once fresh draws
mostly repeat patch positions (at 38M rows of the 180 train images, 3 in 4 do), their mirror
images are patches the rows do not hold yet; the recipe records it so the rows can be drawn
again. ``--iters H`` hard iterations come before any ``--soft-iters`` (which start from the
paths of the last hard E-step). ``--widen-to`` splits the network's heaviest nodes into more
(``DeepGMM.widen``, seeded by the rows' seed) before the rows' start paths are found, so the
rows choose between each split node and its copy; a hard iteration first parts the two at
once, where truncated soft EM shares rows between them and parts them over a few iterations.
"""
import argparse
import os
import sys
import time
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bsds300  # noqa: E402  (the Table 1 helpers: rows, tags, fits, JSON rows)

BLOCK = 1_000_000  # rows per cached block of start paths: an interrupted run loses < 1 block
RECIPE_KEYS = ("dataset", "seed", "train", "add_fresh", "float32", "reg_covar")
# and "validation_images": the patches of the validation images' stage (absent: none), and
# "mirrored": per add_fresh stage, whether its draws are seen through the left-right mirror
# (absent: none are)
# what a portable file carries of the Table 1 row of the runs behind it
TOTALS_KEYS = ("init", "em_iterations", "soft_em_iterations", "fit_seconds", "test_loglik",
               "stderr", "valid_loglik", "valid_stderr", "test_patches", "machine")


def publish(args):
    """The finished table1 run the options name, as a portable model file."""
    from dgmmcore import load
    layers = bsds300.parse_ints(args.models[0])
    if args.add_validation_images or args.widen_from or args.continue_from:
        raise SystemExit("publish: only networks of --train plus --add-fresh stages (their rows "
                         "can be drawn again from the seed alone); continue adds the "
                         "validation images with --add-validation-images")
    tag = bsds300.extended_tag(args, layers, args.train) + bsds300.polish_suffix(args)
    path = os.path.join(args.work, f"{tag}.model.npz")
    if not os.path.exists(path):
        raise SystemExit(f"{path} not found: train it first with table1 and these options")
    n_rows = args.train + sum(args.add_fresh)
    row = _table1_row(args, layers, n_rows)
    model = load(path)
    recipe = {"dataset": args.dataset, "seed": args.seed, "train": args.train,
              "add_fresh": list(args.add_fresh), "float32": bool(args.float32),
              "reg_covar": args.reg_covar}
    totals = {k: row.get(k) for k in TOTALS_KEYS}
    write_portable(model, args.out, recipe, totals, tag)


def write_portable(model, out, recipe, totals, source):
    """``model`` as a portable file: dgmmcore's model format with the parameters rounded to
    float32 (about half the size once compressed; 6e-8 relative), the rows' recipe and the
    totals of the runs behind it (``source``: the run's file stem)."""
    from dgmmcore._persistence import atomic_savez, model_arrays
    arrays = model_arrays(model, extra={"bsds300_rows": recipe, "bsds300_totals": totals,
                                        "published_from": source})
    for name, a in arrays.items():
        if a.dtype == np.float64 and name != "weights":
            arrays[name] = a.astype(np.float32).astype(np.float64)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    atomic_savez(out, arrays, compress=True)
    print(f"wrote {out} ({os.path.getsize(out) / 1e6:.1f} MB) from {source}")


def _table1_row(args, layers, n_rows):
    """The bsds300.json row table1 wrote for the run these options name."""
    want = {"layers": list(layers), "train_patches": n_rows,
            "added_fresh_patches": list(args.add_fresh) or None,
            "soft_em_iterations": args.soft_iters,
            "truncation": (args.truncation or None) if args.soft_iters else None,
            "truncation_search": ((not args.no_search) if args.soft_iters and args.truncation
                                  else None),
            "reg_covar": args.reg_covar,
            "train_dtype": "float32" if args.float32 else "float64", "start_file": None}
    rows = bsds300.read_json(f"{args.dataset}.json").get("models", [])
    found = [r for r in rows if all(r.get(k) == v for k, v in want.items())]
    if not found:
        raise SystemExit(f"no {args.dataset}.json row for {want}: score the run with table1")
    return found[-1]


def file_stem(path):
    """A published file's name without its folder and .npz: its rows' start_file."""
    stem = os.path.basename(path)
    return stem[:-len(".npz")] if stem.endswith(".npz") else stem


def file_recipe(path):
    """(model, the rows' recipe, the totals) of a published file."""
    from dgmmcore import load
    from dgmmcore._persistence import read_model_file
    meta = read_model_file(path)[0]
    if "bsds300_rows" not in meta or "bsds300_totals" not in meta:
        raise SystemExit(f"{path} holds no training-rows recipe: write it with "
                         f"continue_network.py publish")
    recipe = meta["bsds300_rows"]
    missing = [k for k in RECIPE_KEYS if k not in recipe]
    if missing:
        raise SystemExit(f"{path}: its rows' recipe lacks {missing}")
    mirrored = recipe.get("mirrored", [False] * len(recipe["add_fresh"]))
    if len(mirrored) != len(recipe["add_fresh"]) or not all(isinstance(f, bool)
                                                            for f in mirrored):
        raise SystemExit(f"{path}: its rows' recipe has mirrored {mirrored} for the stages "
                         f"{recipe['add_fresh']}")
    return load(path), {**recipe, "mirrored": mirrored}, meta["bsds300_totals"]


def reuse_source(args, recipe):
    """The checkpoint of the run that wrote --model, when --work still holds it (a session's
    files stay on its machine; else None): its rows were the file's (recipe), in order the
    train stages, then the validation images' patches, and it holds each row's path of its
    last E-step, made with the file's parameters (the last M-step's, rounded to float32 in
    the file: checked). Returns (checkpoint, rows before the validation stage, all rows); the
    paths are read when the run starts (first_paths)."""
    from dgmmcore._persistence import read_model_file
    meta, transforms = read_model_file(args.model)[:2]
    source = meta.get("published_from")
    ckpt = os.path.join(args.work, f"{source}.ckpt.npz")
    if not source or not os.path.exists(ckpt):
        print(f"  --reuse-paths: no checkpoint of {source} in {args.work}: every row searched",
              flush=True)
        return None
    with np.load(ckpt, allow_pickle=False) as f:
        if "checkpoint_paths" not in f.files:
            raise SystemExit(f"continue: {ckpt} holds no paths of its rows")
        near = f["transforms_0"]
    if near.shape != transforms[0].shape or not np.allclose(near, transforms[0], rtol=1e-6,
                                                            atol=1e-9):
        raise SystemExit(f"continue: {ckpt} is not the run that wrote {args.model} (its "
                         f"parameters differ)")
    with zipfile.ZipFile(ckpt) as z, z.open("checkpoint_paths.npy") as fh:
        header = {(1, 0): np.lib.format.read_array_header_1_0,
                  (2, 0): np.lib.format.read_array_header_2_0}[np.lib.format.read_magic(fh)]
        (n_rows,) = header(fh)[0]  # the row count, without reading the paths
    before = recipe["train"] + sum(recipe["add_fresh"])
    if n_rows != before + recipe.get("validation_images", 0):
        raise SystemExit(f"continue: {ckpt} holds {n_rows} rows' paths; {args.model}'s rows "
                         f"are {before + recipe.get('validation_images', 0)}")
    print(f"  --reuse-paths: {n_rows} rows start from their paths in {ckpt}", flush=True)
    return ckpt, before, n_rows


def first_paths(model, X, cache_dir, keep, reuse, layers, n_new):
    """Every row's start path: the file's rows' last paths in ``reuse``'s checkpoint
    (reuse_source; ``layers``: its network's) where given, searched (start_paths) for the
    ``n_new`` rows of the new train stages (after the file's train stages) and for a new
    validation stage (the rows after those)."""
    if reuse is None:
        return start_paths(model, X, cache_dir, keep)
    ckpt, before, n_rows = reuse
    old = bsds300.checkpoint_paths(ckpt, layers)
    searched = [(before, before + n_new)]
    if n_rows == before:  # a new validation stage (--add-validation-images), if any
        searched.append((before + n_new, len(X)))
    parts = [old[:before]]
    for lo, hi in searched:
        if hi > lo:
            parts.append(start_paths(model, X[lo:hi],
                                     os.path.join(cache_dir, f"rows{lo}-{hi}"), keep))
    parts.append(old[before:])
    paths = np.concatenate(parts)
    if len(paths) != len(X):
        raise SystemExit(f"continue: {len(paths)} start paths for {len(X)} rows")
    return paths


def start_paths(model, X, cache_dir, keep=0):
    """Every row's exact best path (n, k), computed BLOCK rows at a time, each block saved in
    ``cache_dir`` as it finishes (16M rows of a (600, 5, 5) network in float32: about 90 min
    on 2 idle cores scoring every path, about 50 min with the pruned search of session 26) so that
    a stopped run picks up where it was. With ``keep`` the best path under each row's ``keep``
    most likely nodes of the widest layer (dgmmcore._node_search; keep 40 on the 30M network:
    the exact path for 98.5% of rows, 2.7x faster than the exact search)."""
    os.makedirs(cache_dir, exist_ok=True)
    search = None
    if keep:
        from dgmmcore._network import unravel_paths
        from dgmmcore._node_search import NodeSearch
        search = NodeSearch(model._path_table(), keep)
    blocks = []
    for lo in range(0, len(X), BLOCK):
        hi = min(lo + BLOCK, len(X))
        f = os.path.join(cache_dir, f"{lo}-{hi}.npy")
        if os.path.exists(f):
            paths = np.load(f, allow_pickle=False)
        else:
            t0 = time.perf_counter()
            if search is None:
                paths = model.predict(X[lo:hi])
            else:
                paths = unravel_paths(search.best_paths(X[lo:hi], model._threads())[0],
                                      model.weights_.shape)
            np.save(f + ".tmp.npy", paths)
            os.replace(f + ".tmp.npy", f)
            kind = "exact paths" if search is None else f"paths under {keep} nodes"
            print(f"  {kind} of rows {lo}-{hi}: {time.perf_counter() - t0:.0f} s", flush=True)
        blocks.append(paths)
    return np.concatenate(blocks)


def row_stages(run, recipe, add_validation_images):
    """(patches, split) of every stage after the --train rows, in the order extended_rows
    draws them: the train images' fresh stages (the file's, then --add-fresh's), then the
    validation images' (the file's, or a new one). The validation stage comes last so that
    each train stage keeps its stream (extended_rows numbers the stages)."""
    validation = recipe.get("validation_images", 0)
    if add_validation_images:
        if validation:
            raise SystemExit(f"continue: {run.model} is trained on the validation images "
                             f"already ({validation} patches)")
        # table1's stage: as many per validation image as all rows before have per train image
        with_images = argparse.Namespace(**{**vars(run), "add_validation_images": True})
        validation = bsds300.added_stages(with_images, recipe["train"])[-1][0]
    return ([(m, bsds300.MIRRORED if lr else "train") for m, lr in zip(run.add_fresh,
                                                                        run.mirrored)]
            + ([(validation, "validation")] if validation else []))


def continue_fit(args):
    """The published network continued on its rows plus --add-fresh stages (and the validation
    images' patches with --add-validation-images)."""
    model, recipe, totals = file_recipe(args.model)
    layers = tuple(int(n) for n in model.weights_.shape)
    widened_from = None
    if args.widen_to:
        try:
            model = model.widen(args.widen_to, random_state=recipe["seed"])
        except ValueError as exc:
            raise SystemExit(f"continue: --widen-to: {exc}") from None
        widened_from, layers = layers, tuple(args.widen_to)
    # the rows' options come from the file: the same draws as the run that trained it
    run = argparse.Namespace(**{**vars(args), "dataset": recipe["dataset"],
                                "seed": recipe["seed"], "float32": recipe["float32"],
                                "reg_covar": recipe["reg_covar"],
                                "add_fresh": tuple(recipe["add_fresh"]) + tuple(args.add_fresh),
                                "mirrored": tuple(recipe["mirrored"])
                                + (bool(args.mirrored),) * len(args.add_fresh)})
    if args.mirrored and not args.add_fresh:
        raise SystemExit("continue: --mirrored mirrors the --add-fresh draws: give --add-fresh")
    if not args.soft_iters and not args.iters:
        raise SystemExit("continue: give --soft-iters (with --truncation) or --iters")
    if args.start_keep < 0:
        raise SystemExit(f"continue: --start-keep must be 0 (exact) or more, got "
                         f"{args.start_keep}")
    stages = row_stages(run, recipe, args.add_validation_images)
    validation = stages[-1][0] if stages and stages[-1][1] == "validation" else 0
    stem = file_stem(args.model)
    reuse = reuse_source(args, recipe) if args.reuse_paths else None
    # the hard stage's tag, which the truncated stage's extends (no --iters: no hard stage)
    hard_tag = (stem + "".join(f"-plus{m}" + ("lr" if args.mirrored else "")
                               for m in args.add_fresh)
                + (f"-plusval{validation}" if args.add_validation_images else "")
                + (f"-widen{'x'.join(map(str, layers))}" if widened_from else "")
                + (f"-start{args.start_keep}nodes" if args.start_keep else "")
                + ("-reused" if reuse is not None else "")
                + (f"-hard{args.iters}" if args.iters else ""))
    tag = hard_tag + (bsds300.polish_suffix(run) if args.soft_iters else "")
    ckpt_dir = os.path.join(args.work, f"{tag}.start-paths")
    ready = bsds300.finished_fit(run, tag, args.soft_iters or args.iters)
    X_all = None
    if ready:
        fitted, seconds = ready
    else:
        X = bsds300.load_train(run, recipe["train"])
        X_all = bsds300.extended_rows(run, X, stages)
        del X
        model.n_threads = args.threads
        fitted, seconds = model, 0.0
        starts = lambda: first_paths(model, X_all, ckpt_dir, args.start_keep,  # noqa: E731
                                     reuse, widened_from or layers, sum(args.add_fresh))
        if args.iters:  # hard EM first (after --widen-to it parts each split from its copy)
            hard = argparse.Namespace(**{**vars(run), "soft_iters": 0})
            bsds300.set_estep(fitted, hard)  # the file's E-step settings were its last run's
            fitted, seconds = bsds300.fit_or_resume(
                layers, X_all, hard, hard_tag, start=fitted, iters=args.iters,
                init_paths=starts, final_estep=not args.soft_iters)
        if args.soft_iters:  # after a hard stage, from its last paths (as table1's polish)
            fitted, more = bsds300.fit_polish(layers, X_all, run, fitted, hard_tag,
                                              init_paths=None if args.iters else starts)
            seconds += more
    X_all = None  # free the rows before the test patches load
    test = bsds300.load_data(run, "test", args.test)
    fitted.n_threads = args.threads
    ll, se = bsds300.evaluate(fitted, test)
    # trained on the validation images, the validation patches are no longer held out
    vll, vse = (None, None) if validation else bsds300.evaluate(
        fitted, bsds300.load_data(run, "validation", min(args.test, 50_000)))
    n_rows = recipe["train"] + sum(m for m, _ in stages)
    row = {"layers": list(layers), "paths": int(np.prod(layers)),
           "parameters": int(fitted.n_parameters()), "train_patches": n_rows,
           "test_patches": len(test), "init": totals.get("init"),
           "em_iterations": totals["em_iterations"] + args.iters,
           "soft_em_iterations": totals["soft_em_iterations"] + args.soft_iters,
           "truncation": (args.truncation or None) if args.soft_iters else None,
           "truncation_search": (not args.no_search) if args.soft_iters and args.truncation
           else None,
           "rerank_every": args.rerank_every if args.soft_iters and args.truncation else None,
           "reg_covar": fitted.reg_covar,
           "train_dtype": "float32" if recipe["float32"] else "float64",
           "reseeding": bsds300.RESEEDING, "continued_from_patches": None,
           "widened_from": list(widened_from) if widened_from else None,
           "added_fresh_patches": list(run.add_fresh) or None,
           "added_fresh_mirrored": list(run.mirrored) if any(run.mirrored) else None,
           "added_validation_image_patches": validation or None,
           # the published network this run went on from, and how the rows' start paths were
           # found: exact (None) or under each row's K best top-layer nodes
           "start_file": stem, "start_file_test_loglik": totals["test_loglik"],
           "start_keep_nodes": args.start_keep or None,
           # rows that started from the last paths of the run that wrote the file
           "start_reused_rows": reuse[2] if reuse else None,
           "test_loglik": ll, "stderr": se, "valid_loglik": vll, "valid_stderr": vse,
           "fit_seconds": totals["fit_seconds"] + seconds, "fit_threads": fitted.n_threads,
           "machine": bsds300.machine()["cpu"]}
    held_out = "trained on" if vll is None else f"{vll:.3f}"
    print(f"   {tag}: test {ll:.3f} +- {se:.3f} nats (validation {held_out}), this run "
          f"{seconds:.0f} s", flush=True)
    bsds300.save_table1_rows(run.dataset, [row])
    if args.publish:
        recipe = {**recipe, "add_fresh": list(run.add_fresh), "mirrored": list(run.mirrored)}
        if not any(run.mirrored):  # files without mirrored stages read as before
            del recipe["mirrored"]
        if validation:
            recipe["validation_images"] = validation
        write_portable(fitted, args.publish, recipe,
                       {k: row.get(k) for k in TOTALS_KEYS}, tag)


# Nested sets of symmetries of the square the symmetrize command compares (each a group):
# the network alone, its left-right mirror, the four mirrors and half turn, all eight.
SYMMETRY_SETS = (("identity",), ("identity", "lr"), ("identity", "lr", "ud", "rot180"),
                 ("identity", "lr", "ud", "rot180", "rot90", "rot270", "transpose",
                  "antitranspose"))


def symmetrize(args):
    """A published network averaged over the symmetries of the square
    (dgmmcore.SymmetrizedModel): the sets of SYMMETRY_SETS scored on the validation and test
    patches, the set the validation patches choose written as a Table 1 row (and as a model
    file with --out). Each symmetry's log-densities are computed once and shared by the sets."""
    from dgmmcore import SymmetrizedModel
    from dgmmcore.symmetry import apply_symmetry, averaged_log_density
    model, recipe, totals = file_recipe(args.model)
    model.n_threads = args.threads
    run = argparse.Namespace(**{**vars(args), "dataset": recipe["dataset"],
                                "seed": recipe["seed"]})
    validation_trained = bool(recipe.get("validation_images"))
    splits = {"test": bsds300.load_held_out(run, "test", args.test)}
    if not validation_trained:  # else the validation patches are not held out
        splits["validation"] = bsds300.load_held_out(run, "validation",
                                                      min(args.test, 50_000))
    names = SYMMETRY_SETS[-1]
    scores, seconds = {}, 0.0
    for split, X in splits.items():
        scores[split] = {}
        for g in names:
            t0 = time.perf_counter()
            scores[split][g] = model.score_samples(apply_symmetry(X, g))
            seconds += time.perf_counter() - t0
            print(f"  {split} seen through {g}: {scores[split][g].mean():.4f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    sets = []
    for chosen in SYMMETRY_SETS:
        entry = {"symmetries": list(chosen)}
        for split in splits:
            averaged = averaged_log_density([scores[split][g] for g in chosen])
            gain = averaged - scores[split]["identity"]  # paired: the same patches
            key = "test" if split == "test" else "valid"
            entry[f"{key}_loglik"], entry[f"{key}_stderr"] = bsds300.mean_and_stderr(averaged)
            entry[f"{key}_gain"], entry[f"{key}_gain_stderr"] = bsds300.mean_and_stderr(gain)
        sets.append(entry)
        print(f"   {len(chosen)} symmetries: test {entry['test_loglik']:.3f} (+"
              f"{entry['test_gain']:.3f} +- {entry['test_gain_stderr']:.3f} paired)"
              + (f", validation {entry['valid_loglik']:.3f}" if "valid_loglik" in entry
                 else ""), flush=True)
    # the validation patches choose the set, as they choose the layer sizes (when they were
    # trained on, the largest set: every set is a group, the largest the most symmetric)
    best = max(sets, key=lambda e: e.get("valid_loglik", len(e["symmetries"])))
    stem = file_stem(args.model)
    layers = [int(n) for n in model.weights_.shape]
    row = {"layers": layers, "paths": int(np.prod(layers)) * len(best["symmetries"]),
           "parameters": int(model.n_parameters()),
           "train_patches": (recipe["train"] + sum(recipe["add_fresh"])
                             + recipe.get("validation_images", 0)),
           "test_patches": len(splits["test"]), "init": totals.get("init"),
           "em_iterations": totals["em_iterations"],
           "soft_em_iterations": totals["soft_em_iterations"],
           "reg_covar": recipe["reg_covar"],
           "train_dtype": "float32" if recipe["float32"] else "float64",
           "added_fresh_patches": list(recipe["add_fresh"]) or None,
           "added_fresh_mirrored": recipe["mirrored"] if any(recipe["mirrored"]) else None,
           "added_validation_image_patches": recipe.get("validation_images") or None,
           # the published network, averaged over the symmetries the validation chose
           "start_file": stem, "start_file_test_loglik": totals["test_loglik"],
           "symmetries": best["symmetries"],
           "test_loglik": best["test_loglik"], "stderr": best["test_stderr"],
           "valid_loglik": best.get("valid_loglik"), "valid_stderr": best.get("valid_stderr"),
           "symmetry_sets": sets, "fit_seconds": totals["fit_seconds"],
           "score_seconds": seconds, "score_threads": model.n_threads,
           "score_dtype": bsds300.score_dtype(args),
           "machine": bsds300.machine()["cpu"]}
    bsds300.save_table1_rows(recipe["dataset"], [row])
    if args.out:
        SymmetrizedModel(model, best["symmetries"]).save(args.out)
        print(f"wrote {args.out}")


# The stream of the never-trained-on draws ``novelty`` scores: no stage uses it ([seed, 1, ...]
# are the --add-fresh stages', [seed, 2] the validation images' stage).
NOVELTY_STREAM = 3


def novelty(args):
    """How new candidate training rows are to a published network: its mean log-likelihood on
    the first --rows of its own training rows, on as many fresh draws of the train images
    (drawn as an --add-fresh stage draws them, from a stream no stage uses) and test patches,
    and on each seen through the left-right mirror, all in float32; with the paired
    differences between each set and its mirror images. Test patches score as their mirror
    images do: what a set scores above its mirror images is what the network has fitted of
    those particular patches, and a stage of rows it has largely fitted has less to teach it.
    (The sets' means differ by less than their spread between images: compare them paired.)"""
    from dgmmcore.datasets import symmetric_patches
    model, recipe, _ = file_recipe(args.model)
    model.n_threads = args.threads
    if not 0 < args.rows <= recipe["train"]:
        raise SystemExit(f"novelty: --rows must be 1 to the file's first draw, "
                         f"{recipe['train']}; got {args.rows}")
    run = argparse.Namespace(**{**vars(args), "dataset": recipe["dataset"],
                                "seed": recipe["seed"], "float32": True})
    unused = np.random.SeedSequence([recipe["seed"], NOVELTY_STREAM])
    sets = {"own": bsds300.load_train(run, recipe["train"])[:args.rows],
            "fresh": bsds300.load_train(argparse.Namespace(**{**vars(run), "seed": unused}),
                                        args.rows),
            "test": bsds300.load_data(run, "test", args.rows).astype(np.float32)}
    scores = {}
    for name, X in sets.items():
        for seen, rows in ((name, X), (f"{name} lr", symmetric_patches(X, "lr"))):
            t0 = time.perf_counter()
            scores[seen] = model.score_samples(rows)
            print(f"  {seen:9s} {scores[seen].mean():.4f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    row = {"start_file": file_stem(args.model), "rows": args.rows,
           "means": {k: float(v.mean()) for k, v in scores.items()},
           "stderr": {k: bsds300.mean_and_stderr(v)[1] for k, v in scores.items()},
           "paired": {}, "score_threads": model.n_threads, "machine": bsds300.machine()["cpu"]}
    for a, b in (("own", "own lr"), ("fresh", "fresh lr"), ("test", "test lr")):  # paired
        row["paired"][f"{a} - {b}"] = bsds300.mean_and_stderr(scores[a] - scores[b])
        print(f"   {a} - {b}: {row['paired'][f'{a} - {b}'][0]:+.4f} +- "
              f"{row['paired'][f'{a} - {b}'][1]:.4f}", flush=True)
    name = f"{recipe['dataset']}-novelty.json"
    old = bsds300.read_json(name).get("rows", [])
    bsds300.write_json(name, {"rows": bsds300.merge_rows(
        old, [row], lambda r: (r["start_file"], r["rows"]))})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pub = sub.add_parser("publish", help="a finished table1 run as a portable model file")
    pub.add_argument("--out", required=True)
    cont = sub.add_parser("continue", help="a published network trained on")
    cont.add_argument("--model", required=True)
    cont.add_argument("--publish", metavar="OUT",
                      help="write the finished network as a portable file too, to go on from")
    pub.add_argument("--work", default=os.path.join(HERE, "..", "out"),
                     help="where the table1 run left its files")
    cont.add_argument("--work", default=os.path.join(HERE, "..", "out", "continued"))
    for q in (pub, cont):
        q.add_argument("--root", default=bsds300.DEFAULT_ROOT)
        q.add_argument("--add-fresh", type=bsds300.parse_ints, default=(), metavar="M1[,M2...]")
        q.add_argument("--soft-iters", type=int, default=0)
        q.add_argument("--truncation", type=int, default=0)
        q.add_argument("--no-search", action="store_true")
        q.add_argument("--rerank-every", type=int, default=1)
        q.add_argument("--iters", type=int, default=0)
        q.add_argument("--threads", type=int, default=None)
        q.add_argument("--test", type=int, default=250_000)
    # publish names the finished run with its table1 options
    pub.add_argument("--dataset", choices=["bsds300", "lowres"], default="bsds300")
    pub.add_argument("--train", type=int, default=1_000_000)
    pub.add_argument("--models", nargs=1, required=True)
    pub.add_argument("--seed", type=int, default=0)
    pub.add_argument("--reg-covar", type=float, default=bsds300.DEFAULT_REG_COVAR)
    pub.add_argument("--float32", action="store_true")
    pub.add_argument("--grow", action="store_true")
    pub.add_argument("--continue-from", type=bsds300.parse_ints, default=())
    pub.add_argument("--widen-from", type=bsds300.parse_ints, default=())
    pub.add_argument("--add-validation-images", action="store_true")
    cont.add_argument("--add-validation-images", action="store_true",
                      help="add the validation images' patches (then no validation score)")
    cont.add_argument("--start-keep", type=int, default=0, metavar="K",
                      help="start each row from its best path under its K most likely nodes of "
                           "the widest layer (default 0: the exact best path)")
    cont.add_argument("--reuse-paths", action="store_true",
                      help="start the file's rows from their last paths in the checkpoint of "
                           "the run that wrote it, when --work still holds it (else searched)")
    cont.add_argument("--mirrored", action="store_true",
                      help="see this run's --add-fresh draws through the left-right mirror "
                           "(new patches once fresh draws mostly repeat positions)")
    cont.add_argument("--widen-to", type=bsds300.parse_ints, default=(), metavar="N1,N2,...",
                      help="first split the heaviest nodes of each layer up to these sizes")
    sym = sub.add_parser("symmetrize", help="a published network averaged over the "
                                            "symmetries of the square, scored")
    sym.add_argument("--model", required=True)
    sym.add_argument("--out", help="write the chosen symmetrized model file too")
    sym.add_argument("--root", default=bsds300.DEFAULT_ROOT)
    sym.add_argument("--threads", type=int, default=None)
    sym.add_argument("--score-float32", action="store_true",
                     help="score in float32 (2.3x faster; means move by ~1e-8 nats)")
    sym.add_argument("--test", type=int, default=250_000)
    new = sub.add_parser("novelty", help="a published network's scores on its own rows, fresh "
                                         "draws and test patches, each also mirrored")
    new.add_argument("--model", required=True)
    new.add_argument("--rows", type=int, default=100_000)
    new.add_argument("--root", default=bsds300.DEFAULT_ROOT)
    new.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    {"publish": publish, "continue": continue_fit, "symmetrize": symmetrize,
     "novelty": novelty}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
