"""Model files: a versioned .npz of plain arrays, written atomically, read without pickle.

Format version 1 holds:
  format_version (int), library_version (str), meta (JSON str: layers, n_features,
  path_prior, hyperparameters), transforms_<j>, biases_<j> for j = 0..k-1, weights (joint prior),
  layer_weights_<j> (factorized prior only), and optionally fit state (history JSON).
A "symmetries" list in meta (SymmetrizedModel.save) makes ``load`` return the network averaged
over those symmetries of the square (dgmmcore.symmetry); "symmetric_history" then holds the
rounds of SymmetrizedModel.fit, when the network was trained with them in place, and a
"symmetric_checkpoint" (SymmetrizedModel.fit(checkpoint=...)) what a resumed fit needs, with
the arrays symmetric_which (each row's last symmetry) and, for the heuristic search,
symmetric_paths (each (row, symmetry)'s last path).
"""
import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT_VERSION = 1
_MAGIC = "dgmmcore-model"
HYPERPARAMETERS = ("estep", "path_prior", "mstep", "max_iter", "tol", "lbfgs_maxiter",
                   "warm_passes", "n_restarts", "restart_passes", "reg_covar", "n_init",
                   "truncation", "rerank_every", "init_layer", "random_state", "n_threads",
                   "verbose")


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    return repr(v)  # e.g. a Generator as random_state: recorded, not restored


def atomic_savez(path, arrays, compress=False):
    """np.savez (np.savez_compressed with ``compress``) to a temporary file in the target
    folder, then rename over ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # as open() would make it; mkstemp's is 0600
        with os.fdopen(fd, "wb") as f:
            (np.savez_compressed if compress else np.savez)(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask():
    """The process's umask: from /proc on Linux (setting it to read it back would briefly
    change it for every thread), else set and restored."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def model_arrays(model, extra=None, hyperparameters=None):
    """The arrays of ``model``'s file; ``hyperparameters`` (name -> value) stand in for the
    model's own where given (a checkpoint written mid-fit saves the caller's settings, not
    the temporary ones the fit runs with); names the file does not keep are ignored."""
    from . import __version__
    given = hyperparameters or {}
    own = {k: given.get(k, getattr(model, k)) for k in HYPERPARAMETERS}
    meta = {
        "magic": _MAGIC,
        "layers": [int(n) for n in model.weights_.shape],
        "n_features": int(model.n_features_in_),
        "hyperparameters": {k: _jsonable(v) for k, v in own.items()},
        "history": getattr(model, "history_", None),
        "n_iter": getattr(model, "n_iter_", None),
        "converged": getattr(model, "converged_", None),
    }
    if extra:
        meta.update(extra)
    arrays = {
        "format_version": np.array(FORMAT_VERSION),
        "library_version": np.array(__version__),
        "meta": np.array(json.dumps(meta, default=_jsonable)),
        "weights": model.weights_,
    }
    for j, (A, b) in enumerate(zip(model.transforms_, model.biases_)):
        arrays[f"transforms_{j}"] = A
        arrays[f"biases_{j}"] = b
    if model.layer_weights_ is not None:
        for j, w in enumerate(model.layer_weights_):
            arrays[f"layer_weights_{j}"] = w
    return arrays


def save_model(model, path, extra=None):
    model._check_fitted()
    atomic_savez(path, model_arrays(model, extra))


def _fail(path, why):
    raise ValueError(f"{path!s} is not a readable dgmmcore model file: {why}")


# Arrays of a checkpoint's run state: what a resumed fit needs, not the model (gigabytes for
# a big run), read once, by load_model, and only from a checkpoint
_RUN_STATE = ("checkpoint_", "symmetric_")


def _read_arrays(path, wanted):
    """The .npz file's arrays whose names ``wanted`` accepts, never unpickled."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files if wanted(k)}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as exc:
        _fail(path, f"cannot be read as .npz ({type(exc).__name__}: {exc})")


def read_model_file(path):
    """Parse a model file into (meta dict, transforms, biases, weights, layer_weights)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no model file at {path}")
    if os.path.isdir(path):
        _fail(path, "it is a folder")
    # np.load would hand back a bare array for a .npy file and try pickle on anything else
    if not zipfile.is_zipfile(path):
        try:
            with open(path, "rb") as fh:
                head = fh.read(6)
        except OSError as exc:
            _fail(path, f"cannot be read ({exc})")
        what = "a .npy array" if head == b"\x93NUMPY" else "not a zip archive"
        _fail(path, f"it is {what}, not an .npz archive written by DeepGMM.save")
    data = _read_arrays(path, lambda k: not k.startswith(_RUN_STATE))
    if "format_version" not in data or "meta" not in data:
        _fail(path, "it has no format_version/meta entries (not written by dgmmcore)")
    try:
        version = int(data["format_version"])
        meta = json.loads(str(data["meta"]))
    except (TypeError, ValueError) as exc:
        _fail(path, f"corrupted header ({exc})")
    if not isinstance(meta, dict) or meta.get("magic") != _MAGIC:
        _fail(path, "wrong magic string")
    if version > FORMAT_VERSION:
        _fail(path, f"format version {version} is newer than this dgmmcore reads "
                    f"({FORMAT_VERSION}); upgrade dgmmcore")
    if version < 1:
        _fail(path, f"unknown format version {version}")
    _check_header(path, meta)
    k = len(meta["layers"])
    try:
        transforms = [data[f"transforms_{j}"] for j in range(k)]
        biases = [data[f"biases_{j}"] for j in range(k)]
        weights = data["weights"]
        layer_weights = None
        if "layer_weights_0" in data:
            layer_weights = [data[f"layer_weights_{j}"] for j in range(k)]
    except KeyError as exc:
        _fail(path, f"missing array {exc}")
    if tuple(weights.shape) != tuple(meta["layers"]):
        _fail(path, "layer sizes in the header do not match the stored prior")
    return meta, transforms, biases, weights, layer_weights


def _check_header(path, meta):
    """The header's structure, before anything is read by it: layer sizes, and the
    hyperparameters and history as the types the model keeps."""
    layers = meta.get("layers")
    if not (isinstance(layers, list) and layers and all(
            type(n) is int and n >= 1 for n in layers)):
        _fail(path, f"its header's layers must be a list of positive integers, got {layers!r}")
    if not isinstance(meta.get("hyperparameters", {}), dict):
        _fail(path, "its header's hyperparameters are not a mapping")
    for key in ("history", "symmetric_history"):
        history = meta.get(key)
        if history is not None and not (isinstance(history, list) and all(
                isinstance(r, dict) and isinstance(r.get("objective", 0.0), (int, float))
                for r in history)):
            _fail(path, f"its header's {key} is not a list of iteration records")


def _check_checkpoint(path, state, meta, D):
    """What a plain fit resumes from, checked here so that a bad file cannot index outside
    the network or feed NaN to the M-step (model.fit checks the rows it is given)."""
    from ._symmetric_em import restored_generator
    from ._validation import check_float_array
    layers = meta["layers"]
    n_paths = int(np.prod(layers))
    paths = None
    if "checkpoint_paths" in state:
        paths = state["checkpoint_paths"]
        if paths.ndim != 1 or paths.dtype.kind not in "iu":
            _fail(path, f"its checkpoint paths must be a 1-D integer array, got "
                        f"{paths.dtype} of shape {paths.shape}")
        if paths.size and (paths.min() < 0 or paths.max() >= n_paths):
            _fail(path, f"its checkpoint paths lie outside the network's {n_paths}")
        paths = paths.astype(np.intp)
    ranked = state.get("checkpoint_ranked")
    Q, c = [], []
    for j, n in enumerate(layers):
        missing = [k for k in (f"checkpoint_Q_{j}", f"checkpoint_c_{j}") if k not in state]
        if missing:
            _fail(path, f"incomplete checkpoint (missing {missing[0]!r})")
        q, cj = state[f"checkpoint_Q_{j}"], state[f"checkpoint_c_{j}"]
        try:
            q = check_float_array(q, f"checkpoint_Q_{j}", ndim=3)
            cj = check_float_array(cj, f"checkpoint_c_{j}", ndim=2)
        except (TypeError, ValueError) as exc:
            _fail(path, f"invalid checkpoint ({exc})")
        if q.shape != (n, D, D) or cj.shape != (n, D):
            _fail(path, f"its checkpoint's layer {j} has shapes {q.shape} and {cj.shape}, "
                        f"expected {(n, D, D)} and {(n, D)}")
        Q.append(q)
        c.append(cj)
    if not isinstance(meta.get("history"), list):
        _fail(path, "its checkpoint has no iteration history")
    try:
        restored_generator(meta["checkpoint"].get("rng_state")
                           if isinstance(meta["checkpoint"], dict) else None)
    except ValueError as exc:
        _fail(path, str(exc))
    return {"paths": paths, "ranked": ranked, "history": meta["history"], "Q": Q, "c": c,
            "rng_state": meta["checkpoint"]["rng_state"]}


def load_model(path):
    """Load a model written by ``DeepGMM.save`` (or ``SymmetrizedModel.save``); never
    unpickles."""
    from ._validation import check_params, factorized_prior
    from .model import DeepGMM
    meta, transforms, biases, weights, layer_weights = read_model_file(path)
    try:
        A, b, joint, _ = check_params(transforms, biases, weights)
        if layer_weights is not None:  # a factorized prior: its factors must make the joint
            _, product = factorized_prior(layer_weights, meta["layers"], "layer_weights")
            if not np.allclose(product, joint, rtol=1e-9, atol=1e-15):
                raise ValueError("layer_weights do not multiply to the joint weights")
    except (TypeError, ValueError) as exc:
        _fail(path, f"invalid parameters ({exc})")
    if abs(float(weights.sum()) - 1.0) > 1e-12:  # within check_params' 1e-6, not rounding
        weights = joint
    hyper = {k: v for k, v in meta.get("hyperparameters", {}).items() if k in HYPERPARAMETERS}
    if isinstance(hyper.get("random_state"), str):
        hyper["random_state"] = None
    model = DeepGMM(layers=tuple(meta["layers"]), **hyper)
    # install the stored arrays as they are, so a save/load round trip is bit-exact
    model._set_params(transforms, biases, weights, layer_weights)
    if meta.get("history") is not None:
        model.history_ = meta["history"]
        model.n_iter_ = meta.get("n_iter")
        model.converged_ = meta.get("converged")
    state = None
    if "checkpoint" in meta or "symmetric_checkpoint" in meta:
        state = _read_arrays(path, lambda k: k.startswith(_RUN_STATE))
    if "checkpoint" in meta:
        model._resume_state = _check_checkpoint(path, state, meta, model.n_features_in_)
    if "symmetries" in meta:  # written by SymmetrizedModel.save
        from .symmetry import SymmetrizedModel
        try:
            symmetric = SymmetrizedModel(model, meta["symmetries"])
        except (TypeError, ValueError) as exc:
            _fail(path, f"invalid symmetries ({exc})")
        history = meta.get("symmetric_history")
        if isinstance(history, list) and history:  # SymmetrizedModel.fit's rounds
            symmetric.history_ = history
            symmetric.objective_ = history[-1].get("objective")
        if "symmetric_checkpoint" in meta:
            symmetric._resume_state = _symmetric_resume_state(path, meta, state)
        return symmetric
    return model


def _symmetric_resume_state(path, meta, arrays):
    """What SymmetrizedModel.fit(resume=True) goes on from (checked against X there)."""
    state = meta["symmetric_checkpoint"]
    history = meta.get("symmetric_history")
    keys = ("rounds", "previous_objective", "search", "rng_state")
    if not isinstance(state, dict) or any(k not in state for k in keys) or not isinstance(
            history, list):
        _fail(path, "incomplete symmetric checkpoint header")
    if "symmetric_which" not in arrays:
        _fail(path, "incomplete symmetric checkpoint (missing 'symmetric_which')")
    which = arrays["symmetric_which"].astype(np.intp)
    paths = arrays["symmetric_paths"].astype(np.int64) if "symmetric_paths" in arrays else None
    return {"rounds": int(state["rounds"]), "previous_objective": state["previous_objective"],
            "search": state["search"], "rng_state": state["rng_state"], "history": history,
            "which": which, "per_symmetry": paths}
