"""Image-patch data sets for density estimation.

Everything here follows the standard protocol for natural-image patches used
by the paper (van den Oord & Schrauwen 2014, section 4), which is that of
Uria, Murray & Larochelle (2013):

1. cut 8x8 grayscale patches at uniformly random positions from the images;
2. add U[0, 1) noise to the integer pixel values (0..255) and divide by 256;
3. subtract each patch's mean;
4. drop the last pixel, which the mean removal made redundant (63 dims).

Steps 2-4 are :func:`preprocess`; step 1 is :func:`extract_patches` (or
:func:`extract_lowres_patches` for the paper's low-resolution experiment).

Loaders
-------
- :func:`load_default` -- a small data set shipped inside the package, cut
  from CC0 / public-domain photographs (see ``dgmmcore/data/LICENSES.md``).
- :func:`load_bsds300` / :func:`load_bsds300_lowres` -- the BSDS300 benchmark,
  read from a copy the user downloaded (it cannot be redistributed).
- :func:`load_patches_from_images` -- any folder of images, or arrays.
- :func:`symmetric_patches` -- patches mirrored or turned, to augment a training set.

Only numpy is needed to import this module. Pillow is imported when image
files are actually read; install it with ``pip install dgmmcore[images]``.
"""
from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "BSDS300_SIZES",
    "IMAGE_EXTENSIONS",
    "bsds300_image_ids",
    "extract_lowres_patches",
    "extract_patches",
    "load_bsds300",
    "load_bsds300_lowres",
    "load_default",
    "load_images",
    "load_patches_from_images",
    "lowres_patches",
    "preprocess",
    "symmetric_patches",
]

#: Default number of patches per BSDS300 split (the sizes used in the literature).
BSDS300_SIZES = {"train": 1_000_000, "validation": 50_000, "test": 250_000}

#: File name endings :func:`load_images` treats as images (case-insensitive).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff",
                    ".webp", ".pgm", ".ppm", ".pnm")

# Every VALIDATION_STRIDE-th train image (sorted by id) is held out for validation.
_VALIDATION_STRIDE = 10
_DEFAULT_DATA_FILE = "default_patches.npz"
# Rows processed at once by preprocess(): small enough for the temporaries to stay in cache.
_CHUNK_ROWS = 2048


# ---------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------

def _check_positive_int(value, name):
    """Return ``value`` as an int, or raise ValueError if it is not an integer > 0."""
    # bool is an Integral, but n_patches=True is surely a mistake.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


def _check_split(split, allowed):
    if split not in allowed:
        raise ValueError(f"split must be one of {', '.join(map(repr, allowed))}; got {split!r}")
    return split


def _rng(random_state):
    """numpy.random.default_rng(random_state), a negative seed named (numpy's message does
    not say which argument)."""
    if isinstance(random_state, numbers.Integral) and random_state < 0:
        raise ValueError(f"random_state must be >= 0, got {random_state}")
    return np.random.default_rng(random_state)


def _as_image_list(images):
    """Return ``images`` as a non-empty list of 2-D numeric arrays."""
    if isinstance(images, np.ndarray) and images.ndim == 2:
        images = [images]  # a single image, not a stack of rows
    if isinstance(images, np.ndarray) and images.ndim == 3 and images.shape[2] in (3, 4):
        raise ValueError(f"an array of shape {images.shape} looks like one colour image, not "
                         f"a stack of grayscale ones: convert it to grayscale (load_images(..., "
                         f"grayscale=True) reads files so), or pass a stack as a list")
    images = [np.asarray(im) for im in images]
    if not images:
        raise ValueError("no images given")
    for i, im in enumerate(images):
        if im.ndim != 2:
            raise ValueError(f"image {i} must be a 2-D grayscale array; got shape {im.shape}"
                             " (convert colour images with load_images(..., grayscale=True))")
        if not (np.issubdtype(im.dtype, np.integer) or np.issubdtype(im.dtype, np.floating)):
            raise ValueError(f"image {i} must hold integer or float pixels; got dtype {im.dtype}")
        if im.dtype.kind == "f" and not np.isfinite(im).all():
            raise ValueError(f"image {i} contains NaN or infinity")
    return images


def _counts_per_image(n, n_images):
    """Split ``n`` as evenly as possible; the first ``n % n_images`` images get one more."""
    counts = np.full(n_images, n // n_images, dtype=np.int64)
    counts[: n % n_images] += 1
    return counts


# ---------------------------------------------------------------------------
# Patch extraction and preprocessing
# ---------------------------------------------------------------------------

def extract_patches(images, n_patches, patch_size=8, random_state=None, shuffle=True):
    """Cut square patches at uniformly random positions from grayscale images.

    Patches are spread evenly over the images: each gets ``n_patches // len(images)``
    and the first ``n_patches % len(images)`` get one more. Within an image every
    top-left position that keeps the patch inside the image is equally likely
    (positions are drawn with replacement, so patches may overlap).

    Parameters
    ----------
    images : sequence of ndarray, shape (h, w)
        Grayscale images (uint8 or float). A single 2-D array is one image.
    n_patches : int
        Number of patches, > 0.
    patch_size : int, default 8
        Side length of the square patches.
    random_state : None, int, numpy.random.Generator or SeedSequence
        Seed for :func:`numpy.random.default_rng`.
    shuffle : bool, default True
        Shuffle the rows; otherwise they come grouped by image, in input order.

    Returns
    -------
    ndarray, shape (n_patches, patch_size**2)
        Raw patches, flattened row by row, in the images' common dtype.
    """
    n_patches = _check_positive_int(n_patches, "n_patches")
    patch_size = _check_positive_int(patch_size, "patch_size")
    images = _as_image_list(images)
    for i, im in enumerate(images):
        if min(im.shape) < patch_size:
            raise ValueError(f"image {i} of shape {im.shape} is smaller than a "
                             f"{patch_size}x{patch_size} patch")
    rng = _rng(random_state)
    counts = _counts_per_image(n_patches, len(images))
    dtype = np.result_type(*images)
    out = np.empty((n_patches, patch_size * patch_size), dtype=dtype)
    start = 0
    for im, k in zip(images, counts):
        if k == 0:
            continue
        rows = rng.integers(0, im.shape[0] - patch_size + 1, size=k)
        cols = rng.integers(0, im.shape[1] - patch_size + 1, size=k)
        # A view of every patch; fancy indexing copies only the chosen ones.
        windows = sliding_window_view(im, (patch_size, patch_size))
        out[start:start + k] = windows[rows, cols].reshape(k, -1)
        start += k
    if shuffle:
        out = out[rng.permutation(n_patches)]
    return out


def preprocess(patches, dequantize=True, scale=256.0, remove_mean=True, drop_last=True,
               random_state=None):
    """Turn raw patches into model inputs by the standard protocol.

    In order: add U[0, 1) noise (``dequantize``), divide by ``scale``, subtract
    each patch's mean (``remove_mean``), drop the last column (``drop_last``).
    With the defaults, 8x8 patches of 0..255 pixels become 63-dim float64 rows.

    Parameters
    ----------
    patches : array_like, shape (n, d)
        Raw patches; for the protocol, integer pixel values 0..255.
    dequantize : bool, default True
        Add uniform noise in [0, 1) to every pixel, making integer data continuous.
    scale : float, default 256.0
        Divide by this after the noise, so that 8-bit data lies in [0, 1).
    remove_mean : bool, default True
        Subtract the mean of each row (taken over all ``d`` values, before any drop).
    drop_last : bool, default True
        Remove the last column. After mean removal it is minus the sum of the others.
    random_state : None, int, numpy.random.Generator or SeedSequence
        Seed for the noise; unused when ``dequantize`` is False.

    Returns
    -------
    ndarray of float64, shape (n, d - 1) if ``drop_last`` else (n, d)
    """
    x = np.asarray(patches)
    if x.ndim != 2:
        raise ValueError(f"patches must be a 2-D array (n, d); got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise ValueError(f"patches must hold integer or float values; got dtype {x.dtype}")
    n, d = x.shape
    if d < 1 or (drop_last and d < 2):
        raise ValueError(f"patches need at least {2 if drop_last else 1} columns; got {d}")
    scale = float(scale)
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive finite number, got {scale}")
    rng = _rng(random_state) if dequantize else None
    d_out = d - 1 if drop_last else d
    out = np.empty((n, d_out), dtype=np.float64)
    # Work in chunks so a million patches never need two full float64 copies.
    for start in range(0, n, _CHUNK_ROWS):
        block = x[start:start + _CHUNK_ROWS].astype(np.float64)
        if dequantize:
            block += rng.random(block.shape)
        block /= scale
        if remove_mean:
            block -= block.mean(axis=1, keepdims=True)
        out[start:start + len(block)] = block[:, :d_out]
    return out


# ---------------------------------------------------------------------------
# Low-resolution crops (the paper's "tiny images" experiment)
# ---------------------------------------------------------------------------

# Each symmetry of the square as a map of an (n, s, s) stack of patches.
_SYMMETRIES = {
    "lr": lambda P: P[:, :, ::-1],            # mirrored left-right
    "ud": lambda P: P[:, ::-1, :],            # mirrored top-bottom
    "rot90": lambda P: np.rot90(P, 1, axes=(1, 2)),
    "rot180": lambda P: P[:, ::-1, ::-1],
    "rot270": lambda P: np.rot90(P, 3, axes=(1, 2)),
    "transpose": lambda P: P.transpose(0, 2, 1),
    "antitranspose": lambda P: P[:, ::-1, ::-1].transpose(0, 2, 1),
}


def symmetric_patches(X, kind):
    """The same patches seen through a symmetry of the square: a cheap way to augment the
    training set of a patch model. On BSDS300 (GMM-100, 200,000 patches) adding the
    left-right mirror images bought 90% of what as many fresh patches did on held-out
    images (README).

    Parameters
    ----------
    X : array_like, shape (n, s*s) or (n, s*s - 1)
        Square patches, row-major: whole patches, or rows by the standard protocol (patch
        mean removed, last pixel dropped), whose dropped pixel is restored as minus the sum
        of the others before the patch is turned and dropped again.
    kind : {'lr', 'ud', 'rot90', 'rot180', 'rot270', 'transpose', 'antitranspose'}

    Returns
    -------
    ndarray of X's shape and floating dtype.
    """
    if kind not in _SYMMETRIES:
        raise ValueError(f"kind must be one of {sorted(_SYMMETRIES)}, got {kind!r}")
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (n, d); got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.floating):
        X = X.astype(np.float64)
    d = X.shape[1]
    side = math.isqrt(d + 1)
    dropped = side * side == d + 1 and d > 0
    if not dropped:
        side = math.isqrt(d)
        if side * side != d or d == 0:
            raise ValueError(f"X must hold square patches: s*s or s*s - 1 columns, got {d}")
    full = np.concatenate([X, -X.sum(axis=1, keepdims=True)], axis=1) if dropped else X
    turned = _SYMMETRIES[kind](full.reshape(-1, side, side)).reshape(len(X), side * side)
    return np.ascontiguousarray(turned[:, :d])


def _integral_image(image):
    """Summed-area table with a zero first row and column, shape (h + 1, w + 1)."""
    s = np.zeros((image.shape[0] + 1, image.shape[1] + 1), dtype=np.float64)
    np.cumsum(np.cumsum(image, axis=0, dtype=np.float64), axis=1, out=s[1:, 1:])
    return s


def _integral_at(table, y, x):
    """Integral of the image over [0, y) x [0, x) for real-valued y, x.

    For a piecewise-constant image this integral is exactly bilinear in (y, x)
    within each pixel, so bilinear interpolation of the table is exact.
    """
    h, w = table.shape[0] - 1, table.shape[1] - 1
    y0 = np.minimum(np.floor(y).astype(np.int64), h - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), w - 1)
    fy, fx = y - y0, x - x0
    return ((1 - fy) * (1 - fx) * table[y0, x0] + (1 - fy) * fx * table[y0, x0 + 1]
            + fy * (1 - fx) * table[y0 + 1, x0] + fy * fx * table[y0 + 1, x0 + 1])


def _crop_means(table, top, left, size, out_size):
    """Area-average square crops down to ``out_size x out_size``.

    Output pixel (i, j) of a crop is the mean of the image over the square
    ``[top + i*s, top + (i+1)*s) x [left + j*s, left + (j+1)*s)``, ``s = size / out_size``,
    with partly covered pixels weighted by the covered area. When ``size`` is a
    multiple of ``out_size`` this is plain block averaging.

    Returns an array of shape (len(top), out_size, out_size).
    """
    steps = np.arange(out_size + 1)
    # (size * j) / out_size is exact for integers when out_size divides size.
    ys = top[:, None] + (size[:, None] * steps) / out_size
    xs = left[:, None] + (size[:, None] * steps) / out_size
    s = _integral_at(table, ys[:, :, None], xs[:, None, :])
    sums = s[:, 1:, 1:] - s[:, :-1, 1:] - s[:, 1:, :-1] + s[:, :-1, :-1]
    area = (size / out_size) ** 2
    return sums / area[:, None, None]


def extract_lowres_patches(images, n_patches, crop_size=None, min_crop_size=16, out_size=8,
                           quantize=True, random_state=None, shuffle=True):
    """Cut random square crops and shrink each to ``out_size x out_size`` by area averaging.

    A stand-in for the paper's tiny-images experiment (whole small images rescaled
    to 8x8): the crops show scenes at many scales, so neighbouring output pixels
    are less correlated than in a plain patch. Crops are spread evenly over the
    images as in :func:`extract_patches`. Each crop's side is ``crop_size`` or, if
    that is None, an integer drawn uniformly from ``[min(min_crop_size, m), m]``
    with ``m = min(h, w)`` of its image; its position is uniform over the image.

    Parameters
    ----------
    images : sequence of ndarray, shape (h, w)
        Grayscale images with pixel values on the 0..255 scale.
    n_patches : int
        Number of crops, > 0.
    crop_size : int or None, default None
        Fixed crop side; must lie between ``out_size`` and every image's smaller side.
    min_crop_size : int, default 16
        Smallest random crop side (used when ``crop_size`` is None).
    out_size : int, default 8
        Side of the output patch.
    quantize : bool, default True
        Round the averages to integers 0..255, as if the small image were stored with
        8 bits; this keeps the protocol's U[0, 1) dequantization noise meaningful.
    random_state : None, int, numpy.random.Generator or SeedSequence
        Seed for :func:`numpy.random.default_rng`.
    shuffle : bool, default True
        Shuffle the rows; otherwise they come grouped by image.

    Returns
    -------
    ndarray, shape (n_patches, out_size**2)
        uint8 if ``quantize`` else float64.
    """
    n_patches = _check_positive_int(n_patches, "n_patches")
    out_size = _check_positive_int(out_size, "out_size")
    min_crop_size = _check_positive_int(min_crop_size, "min_crop_size")
    if crop_size is not None:
        crop_size = _check_positive_int(crop_size, "crop_size")
        if crop_size < out_size:
            raise ValueError(f"crop_size ({crop_size}) must be at least out_size ({out_size})")
    images = _as_image_list(images)
    for i, im in enumerate(images):
        need = out_size if crop_size is None else crop_size
        if min(im.shape) < need:
            raise ValueError(f"image {i} of shape {im.shape} is smaller than a "
                             f"{need}x{need} crop")
    rng = _rng(random_state)
    counts = _counts_per_image(n_patches, len(images))
    out = np.empty((n_patches, out_size, out_size), dtype=np.float64)
    start = 0
    for im, k in zip(images, counts):
        if k == 0:
            continue
        h, w = im.shape
        if crop_size is None:
            largest = min(h, w)
            smallest = max(out_size, min(min_crop_size, largest))
            size = rng.integers(smallest, largest + 1, size=k)
        else:
            size = np.full(k, crop_size, dtype=np.int64)
        top = rng.integers(0, h - size + 1)
        left = rng.integers(0, w - size + 1)
        out[start:start + k] = _crop_means(_integral_image(im), top, left, size, out_size)
        start += k
    out = out.reshape(n_patches, -1)
    if quantize:
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if shuffle:
        out = out[rng.permutation(n_patches)]
    return out


def lowres_patches(images, n_patches, crop_size=None, min_crop_size=16, out_size=8,
                   random_state=None):
    """Low-resolution patches, preprocessed by the standard protocol.

    :func:`extract_lowres_patches` (quantized to 8 bits) followed by
    :func:`preprocess` with its defaults: shape (n_patches, out_size**2 - 1), float64.

    Parameters
    ----------
    images : sequence of ndarray, shape (h, w)
        Grayscale images with pixel values on the 0..255 scale.
    n_patches : int
        Number of patches, > 0.
    crop_size, min_crop_size, out_size
        See :func:`extract_lowres_patches`.
    random_state : None, int, numpy.random.Generator or SeedSequence
        Seeds both the crops and the dequantization noise.

    Returns
    -------
    ndarray of float64, shape (n_patches, out_size**2 - 1)
    """
    rng = _rng(random_state)
    raw = extract_lowres_patches(images, n_patches, crop_size=crop_size,
                                 min_crop_size=min_crop_size, out_size=out_size,
                                 random_state=rng)
    return preprocess(raw, random_state=rng)


# ---------------------------------------------------------------------------
# Reading images
# ---------------------------------------------------------------------------

def _pillow_image():
    """Import ``PIL.Image`` on first use, with an actionable message if it is missing."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(
            "reading or writing image files needs Pillow: install it with "
            "`pip install dgmmcore[images]` (or `pip install Pillow`)") from exc
    return Image


def _image_files(folder_or_files):
    """Resolve a folder, one file, or a list of files to a list of image paths."""
    if isinstance(folder_or_files, (str, os.PathLike)):
        path = Path(folder_or_files)
        if path.is_dir():
            files = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise FileNotFoundError(
                    f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in folder {path}")
            return files
        if not path.exists():
            raise FileNotFoundError(f"image folder or file not found: {path}")
        return [path]
    files = [Path(p) for p in folder_or_files]
    if not files:
        raise ValueError("no image files given")
    for p in files:
        if not p.is_file():
            raise FileNotFoundError(f"image file not found: {p}")
    return files


def load_images(folder_or_files, grayscale=True):
    """Read images from a folder (non-recursive), one file, or a list of files.

    In a folder, every file whose name ends in one of :data:`IMAGE_EXTENSIONS` is
    read, in sorted name order; other files are ignored.

    Grayscale conversion is Pillow's ``"L"`` mode, the ITU-R 601-2 luma
    ``L = 0.299 R + 0.587 G + 0.114 B`` rounded to an integer (the same weights as
    MATLAB's ``rgb2gray``). Images already in grayscale are read unchanged.

    Parameters
    ----------
    folder_or_files : str, path-like, or sequence of them
        A folder of images, a single image file, or a list of image files.
    grayscale : bool, default True
        Return 2-D uint8 arrays (h, w); otherwise (h, w, 3) RGB uint8 arrays.

    Returns
    -------
    list of ndarray of uint8

    Raises
    ------
    FileNotFoundError
        If the folder or a file does not exist, or the folder holds no image files.
    ValueError
        If a file cannot be decoded as an image.
    ImportError
        If Pillow is not installed.
    """
    files = _image_files(folder_or_files)
    Image = _pillow_image()
    images = []
    for path in files:
        try:
            with Image.open(path) as img:
                images.append(_as_8bit(img, grayscale, path))
        except (OSError, SyntaxError) as exc:  # UnidentifiedImageError is an OSError
            raise ValueError(f"could not read image {path}: {exc}") from exc
    return images


def _as_8bit(img, grayscale, path):
    """A Pillow image as uint8 pixels. 16-bit grayscale keeps its high byte (Pillow's own
    conversion would clip it at 255); 32-bit integer and float pixels have no known range,
    so they are refused rather than guessed."""
    if img.mode.startswith("I;16"):
        gray = (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
        return gray if grayscale else np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode in ("I", "F"):
        raise ValueError(f"image {path} has {'32-bit integer' if img.mode == 'I' else 'float'} "
                         f"pixels (Pillow mode {img.mode!r}) of no known range; save it with 8 "
                         f"or 16 bits, or pass its array, scaled to 0..255, to "
                         f"extract_patches")
    return np.asarray(img.convert("L" if grayscale else "RGB"), dtype=np.uint8)


def _is_path_input(obj):
    """True for a path or a non-empty list of paths (as opposed to image arrays)."""
    if isinstance(obj, (str, os.PathLike)):
        return True
    return (isinstance(obj, list) and bool(obj)
            and all(isinstance(p, (str, os.PathLike)) for p in obj))


def load_patches_from_images(path_or_arrays, n_patches, patch_size=8, dequantize=True,
                             scale=256.0, remove_mean=True, drop_last=True, random_state=None):
    """Random patches from your own images, preprocessed by the standard protocol.

    :func:`load_images` (grayscale) if given paths, then :func:`extract_patches`
    and :func:`preprocess`.

    Parameters
    ----------
    path_or_arrays : str, path-like, sequence of paths, or sequence of 2-D arrays
        A folder of images, image files, or grayscale images with 0..255 values.
    n_patches : int
        Number of patches, > 0.
    patch_size : int, default 8
        Side of the square patches.
    dequantize, scale, remove_mean, drop_last
        See :func:`preprocess`.
    random_state : None, int, numpy.random.Generator or SeedSequence
        Seeds both the positions and the noise.

    Returns
    -------
    ndarray of float64, shape (n_patches, patch_size**2 - 1) with the defaults
    """
    if not isinstance(path_or_arrays, (str, os.PathLike, np.ndarray)):
        path_or_arrays = list(path_or_arrays)  # generators may be read only once
    if _is_path_input(path_or_arrays):
        images = load_images(path_or_arrays, grayscale=True)
    else:
        images = path_or_arrays
    rng = _rng(random_state)
    raw = extract_patches(images, n_patches, patch_size=patch_size, random_state=rng)
    return preprocess(raw, dequantize=dequantize, scale=scale, remove_mean=remove_mean,
                      drop_last=drop_last, random_state=rng)


# ---------------------------------------------------------------------------
# BSDS300
# ---------------------------------------------------------------------------

def _read_ids(path):
    if not path.is_file():
        raise FileNotFoundError(
            f"BSDS300 id list not found: {path} (expected the official layout: "
            "iids_train.txt, iids_test.txt and images/{train,test}/*.jpg)")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"BSDS300 id list {path} is empty")
    return ids


def _sorted_ids(ids):
    """Sort numerically when every id is a number (BSDS300's are), else as text."""
    if all(i.isdigit() for i in ids):
        return sorted(ids, key=int)
    return sorted(ids)


def bsds300_image_ids(root, split="train"):
    """Image ids making up a BSDS300 split.

    The official release has 200 train and 100 test images. For model selection
    the train images are split in two, independently of any random seed: sort
    ``iids_train.txt`` numerically and take every 10th id, starting with the
    smallest (sorted positions 0, 10, ..., 190: 20 images) as ``'validation'``;
    the other 180 are ``'train'``. ``'test'`` is ``iids_test.txt``.

    Parameters
    ----------
    root : str or path-like
        The BSDS300 folder (holding ``iids_train.txt``, ``iids_test.txt``, ``images/``).
    split : {'train', 'validation', 'test'}

    Returns
    -------
    list of str
        Ids in ascending order.
    """
    _check_split(split, ("train", "validation", "test"))
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"BSDS300 folder not found: {root}")
    if split == "test":
        return _sorted_ids(_read_ids(root / "iids_test.txt"))
    ids = _sorted_ids(_read_ids(root / "iids_train.txt"))
    if len(ids) < 2:
        raise ValueError(f"need at least 2 train ids to hold out validation images; got {len(ids)}")
    held_out = set(ids[::_VALIDATION_STRIDE])
    if split == "validation":
        return [i for i in ids if i in held_out]
    return [i for i in ids if i not in held_out]


def _bsds300_images(root, split):
    """Grayscale uint8 images of a split, in ascending id order."""
    ids = bsds300_image_ids(root, split)
    folder = Path(root) / "images" / ("test" if split == "test" else "train")
    files = [folder / f"{i}.jpg" for i in ids]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"BSDS300 image listed in the id file is missing: {f}")
    return load_images(files, grayscale=True)


def load_bsds300(root, split="train", n_patches=None, random_state=None):
    """BSDS300 patches preprocessed by the standard protocol (Uria et al. 2013).

    8x8 grayscale patches (Pillow ``"L"``, ITU-R 601-2 luma) at uniformly random
    positions, spread evenly over the split's images (see :func:`extract_patches`),
    shuffled; then U[0, 1) noise, division by 256, per-patch mean removal, and the
    last pixel dropped (see :func:`preprocess`). The splits are described in
    :func:`bsds300_image_ids`; validation images never appear in ``'train'``.

    Parameters
    ----------
    root : str or path-like
        The BSDS300 folder in its official layout: ``iids_train.txt``,
        ``iids_test.txt``, ``images/train/*.jpg``, ``images/test/*.jpg``.
    split : {'train', 'validation', 'test'}, default 'train'
    n_patches : int or None
        Number of patches; None means the usual size for the split
        (:data:`BSDS300_SIZES`: 1,000,000 / 50,000 / 250,000).
    random_state : None, int, numpy.random.Generator or SeedSequence
        Seeds the positions, the order and the noise. The same value gives the
        same array.

    Returns
    -------
    ndarray of float64, shape (n_patches, 63)
    """
    _check_split(split, tuple(BSDS300_SIZES))
    n_patches = BSDS300_SIZES[split] if n_patches is None else n_patches
    n_patches = _check_positive_int(n_patches, "n_patches")
    images = _bsds300_images(root, split)
    rng = _rng(random_state)
    raw = extract_patches(images, n_patches, patch_size=8, random_state=rng)
    return preprocess(raw, random_state=rng)


def load_bsds300_lowres(root, split="train", n_patches=None, crop_size=None, random_state=None):
    """Low-resolution 8x8 versions of BSDS300 crops, preprocessed by the standard protocol.

    A stand-in for the paper's tiny-images experiment: see :func:`lowres_patches`
    (random square crops of side 16..321, area-averaged to 8x8, rounded to 8 bits,
    then the same preprocessing as :func:`load_bsds300`). Same splits as
    :func:`load_bsds300`.

    Parameters
    ----------
    root : str or path-like
        The BSDS300 folder in its official layout.
    split : {'train', 'validation', 'test'}, default 'train'
    n_patches : int or None
        Number of patches; None means :data:`BSDS300_SIZES` of the split.
    crop_size : int or None, default None
        Fixed crop side instead of random sizes.
    random_state : None, int, numpy.random.Generator or SeedSequence

    Returns
    -------
    ndarray of float64, shape (n_patches, 63)
    """
    _check_split(split, tuple(BSDS300_SIZES))
    n_patches = BSDS300_SIZES[split] if n_patches is None else n_patches
    n_patches = _check_positive_int(n_patches, "n_patches")
    images = _bsds300_images(root, split)
    return lowres_patches(images, n_patches, crop_size=crop_size, random_state=random_state)


# ---------------------------------------------------------------------------
# Embedded default data set
# ---------------------------------------------------------------------------

def _default_data_path():
    return Path(__file__).resolve().parent / "data" / _DEFAULT_DATA_FILE


def _load_default_raw(split):
    """Raw uint8 patches (n, 64) of the embedded data set, grouped by source image."""
    path = _default_data_path()
    if not path.is_file():
        raise FileNotFoundError(f"embedded data file missing from the installation: {path}")
    with np.load(path, allow_pickle=False) as data:
        return data[split]


def load_default(split="train", n_patches=None, random_state=None):
    """The small data set shipped with the package, preprocessed by the standard protocol.

    Raw 8x8 grayscale patches cut from 8 CC0 / public-domain photographs
    (``dgmmcore/data/LICENSES.md`` lists each image, its licence and which rows
    come from it): 60,000 ``'train'`` and 10,000 ``'test'`` patches. Test patches
    come from the bottom fifth of every image, train patches from the part above
    it, with a gap of 8 rows, so no pixel is shared between the two splits.

    Parameters
    ----------
    split : {'train', 'test'}, default 'train'
    n_patches : int or None
        None returns every patch of the split; otherwise a random subset of that
        many distinct patches (at most the number stored).
    random_state : None, int, numpy.random.Generator or SeedSequence
        Seeds the subset, the order (always shuffled) and the noise.

    Returns
    -------
    ndarray of float64, shape (n_patches, 63)
    """
    _check_split(split, ("train", "test"))
    raw = _load_default_raw(split)
    n_stored = len(raw)
    n_patches = n_stored if n_patches is None else _check_positive_int(n_patches, "n_patches")
    if n_patches > n_stored:
        raise ValueError(f"the embedded {split!r} split has {n_stored} patches; "
                         f"asked for {n_patches}")
    rng = _rng(random_state)
    rows = rng.permutation(n_stored)[:n_patches]
    return preprocess(raw[rows], random_state=rng)
