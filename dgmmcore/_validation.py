"""Input checks shared by every public entry point: nothing reaches a kernel unchecked."""
import numbers

import numpy as np


def check_data(X, name="X", n_features=None, dtypes=(np.float64, np.float32), min_samples=1):
    """Return X as a C-contiguous 2-D float32/float64 array with finite values.

    Lists and other array-likes are converted; integer and bool data become float64; complex,
    object and string data are refused with a TypeError; wrong shapes, too few rows, a feature
    count different from ``n_features``, NaN/inf values and values beyond MAX_ABS with a
    ValueError; masked arrays with a TypeError (their mask would be ignored).
    """
    if isinstance(X, (str, bytes)):
        raise TypeError(f"{name} must be a 2-D array of numbers, got a string")
    if isinstance(X, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array: its mask would be ignored; fill the "
                        f"masked entries ({name}.filled(...)) or impute them (DeepGMM.impute)")
    if hasattr(X, "tocsr") and hasattr(X, "nnz"):  # scipy.sparse, without importing it
        raise TypeError(f"{name} is a sparse matrix: sparse input is not supported (the "
                        f"model is dense); pass {name}.toarray()")
    try:
        arr = np.asarray(X)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} could not be converted to an array: {exc}") from None
    if arr.dtype.kind == "O" and all(isinstance(v, numbers.Real) for v in arr.flat):
        arr = arr.astype(np.float64)  # numbers held as objects (say, from a pandas frame)
    kind = arr.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} must be real-valued, got complex dtype {arr.dtype}")
    if kind not in "fiub":
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
    check_shape(arr.shape, name, n_features, min_samples)
    dtype = arr.dtype if arr.dtype in [np.dtype(d) for d in dtypes] else np.dtype(dtypes[0])
    if kind == "f" and arr.dtype.itemsize > 8:
        dtype = np.dtype(np.float64)
    arr = np.ascontiguousarray(arr, dtype=dtype)
    problem = value_problem(arr)
    if problem == "nonfinite":
        raise ValueError(f"{name} contains NaN or infinity")
    if problem == "large":
        raise ValueError(f"{name} has values beyond {MAX_ABS:g} in magnitude: squared "
                         f"distances would overflow; rescale {name}")
    return arr


def check_shape(shape, name="X", n_features=None, min_samples=1):
    """Refuse a data shape that is not (n_samples >= min_samples, n_features) with n_features
    >= 1 (and equal to ``n_features`` when given) with a ValueError; the phrasings are
    scikit-learn's, so that its users meet the messages they know."""
    shape = tuple(shape)
    if len(shape) != 2:
        hint = (". Reshape your data with X.reshape(-1, 1) (one feature) or X.reshape(1, -1) "
                "(one sample)"
                if len(shape) == 1 else "")
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {shape}{hint}")
    if shape[1] == 0:
        raise ValueError(f"{name} has 0 feature(s) (shape={shape}) while a minimum of 1 "
                         "is required.")
    if shape[0] < min_samples:
        raise ValueError(f"{name} has {shape[0]} sample(s) (shape={shape}) while a "
                         f"minimum of {min_samples} is required.")
    if n_features is not None and shape[1] != n_features:
        raise ValueError(f"{name} has {shape[1]} features, but the model is expecting "
                         f"{n_features} features as input")


# Data beyond this magnitude would overflow the squared distances of a Gaussian's density
# (and k-means' starts) in float64: 8192 rows of 63 values of 1e150 square to 5e305.
MAX_ABS = 1e150


def value_problem(arr, rows=8192):
    """None when every value is finite and at most MAX_ABS in magnitude, else "nonfinite"
    (NaN or infinity anywhere: reported first) or "large". One pass of row blocks, without an
    n x D temporary: a block's sum of squares (one BLAS dot) at most MAX_ABS^2 proves both for
    the block; only a block it cannot clear is searched."""
    if arr.dtype.kind != "f":
        return None  # integers are finite, and int64 is below 1e19
    large = False
    for lo in range(0, arr.shape[0], rows):
        flat = arr[lo:lo + rows].reshape(-1)  # C-contiguous: a view
        with np.errstate(over="ignore", invalid="ignore"):
            if np.dot(flat, flat) <= MAX_ABS ** 2:
                continue
        if not np.isfinite(flat).all():
            return "nonfinite"
        large = large or np.abs(flat).max() > MAX_ABS
    return "large" if large else None


def check_int(value, name, minimum=None, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_float(value, name, minimum=None, strict=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value}")
    return value


def check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_layers(layers):
    """(N_1, ..., N_k) as a tuple of positive ints."""
    if isinstance(layers, (numbers.Integral, np.integer)) and not isinstance(layers, bool):
        layers = (layers,)
    try:
        layers = tuple(layers)
    except TypeError:
        raise TypeError(f"layers must be a sequence of positive integers, got {layers!r}") from None
    if len(layers) == 0:
        raise ValueError("layers must name at least one layer, got an empty sequence")
    out = []
    for j, n in enumerate(layers):
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
            raise TypeError(f"layers[{j}] must be a positive integer, got {n!r}")
        if n < 1:
            raise ValueError(f"layers[{j}] must be >= 1, got {n}")
        out.append(int(n))
    return tuple(out)


def check_random_state(seed):
    """None, an int, or a numpy Generator -> a numpy Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        if seed is not None and seed < 0:
            raise ValueError(f"random_state must be >= 0, got {seed}")
        return np.random.default_rng(seed)
    if isinstance(seed, np.random.RandomState):
        return np.random.default_rng(seed.randint(0, 2**31 - 1))
    raise TypeError(f"random_state must be None, an int or a numpy Generator, got {seed!r}")


def check_n_threads(n_threads):
    if n_threads is None:
        return None
    return check_int(n_threads, "n_threads", minimum=1)


def check_params(transforms, biases, weights):
    """Validate a full parameter set; returns (transforms, biases, joint weights, layer weights).

    ``weights`` is the joint (N_1, ..., N_k) prior, or a list of per-layer vectors (factorized).
    """
    if not isinstance(transforms, (list, tuple)) or len(transforms) == 0:
        raise TypeError("transforms must be a non-empty list of (N_j, D, D) arrays")
    if not isinstance(biases, (list, tuple)) or len(biases) != len(transforms):
        raise TypeError("biases must be a list of (N_j, D) arrays, one per layer of transforms")
    A = [check_float_array(t, f"transforms[{j}]", ndim=3) for j, t in enumerate(transforms)]
    b = [check_float_array(t, f"biases[{j}]", ndim=2) for j, t in enumerate(biases)]
    D = A[0].shape[1]
    if D == 0:
        raise ValueError("transforms[0] has 0 dimensions: a model needs D >= 1")
    for j, (a, bb) in enumerate(zip(A, b)):
        if a.shape[1:] != (D, D):
            raise ValueError(f"transforms[{j}] must have shape (N_{j + 1}, {D}, {D}), "
                             f"got {a.shape}")
        if bb.shape != (a.shape[0], D):
            raise ValueError(f"biases[{j}] must have shape ({a.shape[0]}, {D}), got {bb.shape}")
        if a.shape[0] == 0:
            raise ValueError(f"transforms[{j}] has no nodes")
        sign, logdet = np.linalg.slogdet(a)
        if np.any(sign == 0) or not np.all(np.isfinite(logdet)):
            bad = int(np.flatnonzero((sign == 0) | ~np.isfinite(logdet))[0])
            raise ValueError(f"transforms[{j}][{bad}] is singular")
        cond = np.linalg.cond(a)
        if np.any(cond > 1e12):
            bad = int(np.argmax(cond))
            raise ValueError(f"transforms[{j}][{bad}] is numerically singular "
                             f"(condition {cond[bad]:.3g})")
    layers = tuple(a.shape[0] for a in A)
    layer_weights = None
    if isinstance(weights, (list, tuple)) and len(weights) == len(layers) and all(
            np.ndim(w) == 1 for w in weights) and len(layers) > 1:
        try:
            layer_weights, joint = factorized_prior(weights, layers)
        except ValueError as per_layer:
            # a 2-layer joint prior as nested lists (weights_.tolist()) looks the same when
            # N_1 = 2; it cannot pass both readings (per-layer vectors sum to 2 in all)
            if not (len(layers) == 2 and layers[0] == 2
                    and all(len(w) == layers[1] for w in weights)):
                raise
            try:
                joint = _check_prob(weights, "weights", layers)
            except ValueError as as_joint:
                raise ValueError(f"{per_layer} (as per-layer vectors); {as_joint} (as the "
                                 f"joint prior)") from None
    else:
        joint = _check_prob(weights, "weights", layers)
    return A, b, joint, layer_weights


def factorized_prior(layer_weights, layers, name="weights"):
    """Per-layer priors (each checked against its layer's size) and their joint prior, the
    outer product."""
    factors = [_check_prob(w, f"{name}[{j}]", (n,))
               for j, (w, n) in enumerate(zip(layer_weights, layers))]
    joint = factors[0]
    for w in factors[1:]:
        joint = np.multiply.outer(joint, w)
    return factors, joint


def check_float_array(a, name, ndim):
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} could not be converted to an array: {exc}") from None
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must be real-valued, got complex dtype {arr.dtype}")
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    arr = np.array(arr, dtype=np.float64, order="C")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


def _check_prob(w, name, shape):
    w = check_float_array(w, name, ndim=len(shape))
    if w.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {w.shape}")
    if np.any(w < 0):
        raise ValueError(f"{name} must be non-negative")
    total = w.sum()
    if not abs(total - 1.0) < 1e-6:
        raise ValueError(f"{name} must sum to 1, got {total:.9g}")
    return w / total
