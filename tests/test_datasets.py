"""Tests for dgmmcore.datasets: patch extraction, preprocessing, loaders, embedded data."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dgmmcore import datasets
from dgmmcore.datasets import (
    bsds300_image_ids,
    extract_lowres_patches,
    extract_patches,
    load_bsds300,
    load_bsds300_lowres,
    load_default,
    load_images,
    load_patches_from_images,
    lowres_patches,
    preprocess,
    symmetric_patches,
)

REPO = Path(__file__).resolve().parent.parent
BSDS = REPO.parent / "shared" / "data" / "bsds300"
needs_bsds = pytest.mark.skipif(not (BSDS / "iids_train.txt").is_file(),
                                reason="../shared/data/bsds300 not available")


def coded_image(h, w):
    """An image whose pixel values identify their position (values < 2**31)."""
    return np.arange(h * w, dtype=np.int64).reshape(h, w)


# ---------------------------------------------------------------------------
# extract_patches
# ---------------------------------------------------------------------------

def test_extract_patches_are_real_windows_of_the_image():
    image = coded_image(20, 30)
    patches = extract_patches([image], 500, patch_size=4, random_state=0)
    assert patches.shape == (500, 16) and patches.dtype == image.dtype
    for p in patches:
        r, c = divmod(int(p[0]), 30)  # top-left value encodes the position
        np.testing.assert_array_equal(p, image[r:r + 4, c:c + 4].ravel())


def test_extract_patches_positions_cover_the_image_uniformly():
    image = coded_image(10, 12)
    patches = extract_patches(image, 60_000, patch_size=8, random_state=1)
    tops = patches[:, 0]
    counts = np.array([np.sum(tops == image[r, c]) for r in range(3) for c in range(5)])
    # 15 possible positions, 4000 expected each; the binomial sd is about 61.
    assert counts.sum() == 60_000
    assert np.all(np.abs(counts - 4000) < 400)


def test_extract_patches_spreads_evenly_with_remainder_first():
    images = [np.zeros((8, 8), np.uint8), np.ones((9, 9), np.uint8), np.full((8, 10), 2, np.uint8)]
    patches = extract_patches(images, 8, random_state=0)
    sources = patches[:, 0]
    assert [np.sum(sources == k) for k in range(3)] == [3, 3, 2]
    grouped = extract_patches(images, 8, random_state=0, shuffle=False)
    np.testing.assert_array_equal(grouped[:, 0], [0, 0, 0, 1, 1, 1, 2, 2])


def test_extract_patches_deterministic_for_a_seed():
    image = np.random.default_rng(0).integers(0, 256, (40, 50)).astype(np.uint8)
    a = extract_patches([image], 300, random_state=7)
    b = extract_patches([image], 300, random_state=7)
    c = extract_patches([image], 300, random_state=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    g1, g2 = np.random.default_rng(7), np.random.default_rng(7)
    np.testing.assert_array_equal(extract_patches([image], 300, random_state=g1),
                                  extract_patches([image], 300, random_state=g2))


@pytest.mark.parametrize("n", [0, -3, 2.5, 10.0, "10", True, None])
def test_extract_patches_rejects_bad_n_patches(n):
    with pytest.raises(ValueError, match="n_patches"):
        extract_patches([np.zeros((10, 10))], n)


@pytest.mark.parametrize("size", [0, -1, 3.0])
def test_extract_patches_rejects_bad_patch_size(size):
    with pytest.raises(ValueError, match="patch_size"):
        extract_patches([np.zeros((10, 10))], 5, patch_size=size)


def test_extract_patches_rejects_small_or_bad_images():
    with pytest.raises(ValueError, match="smaller than a 8x8 patch"):
        extract_patches([np.zeros((20, 20)), np.zeros((7, 30))], 5)
    with pytest.raises(ValueError, match="2-D"):
        extract_patches([np.zeros((20, 20, 3))], 5)
    with pytest.raises(ValueError, match="no images"):
        extract_patches([], 5)


# ---------------------------------------------------------------------------
# preprocess
# ---------------------------------------------------------------------------

def test_preprocess_without_noise_matches_manual_computation():
    image = np.random.default_rng(3).integers(0, 256, (12, 12)).astype(np.uint8)
    raw = extract_patches([image], 50, random_state=0)
    out = preprocess(raw, dequantize=False)
    assert out.shape == (50, 63) and out.dtype == np.float64
    for x, p in zip(out, raw):
        pixels = p.astype(float) / 256.0
        np.testing.assert_allclose(x, (pixels - pixels.mean())[:63], atol=1e-15)
    # The dropped pixel is minus the sum of the others: the full patch has zero mean.
    full = preprocess(raw, dequantize=False, drop_last=False)
    np.testing.assert_allclose(full.mean(axis=1), 0, atol=1e-15)
    np.testing.assert_allclose(full[:, 63], -out.sum(axis=1), atol=1e-13)


def test_preprocess_noise_is_uniform_within_one_grey_level():
    raw = np.random.default_rng(0).integers(0, 256, (20_000, 64)).astype(np.uint8)
    x = preprocess(raw, remove_mean=False, drop_last=False, random_state=0)
    noise = x * 256.0 - raw
    assert noise.min() >= 0 and noise.max() < 1
    assert abs(noise.mean() - 0.5) < 0.005 and abs(noise.var() - 1 / 12) < 0.002


def test_preprocess_options_and_determinism():
    raw = np.arange(2 * 16, dtype=np.uint8).reshape(2, 16)
    np.testing.assert_array_equal(
        preprocess(raw, dequantize=False, scale=1.0, remove_mean=False, drop_last=False), raw)
    assert preprocess(raw, dequantize=False, remove_mean=False).shape == (2, 15)
    a = preprocess(raw, random_state=5)
    np.testing.assert_array_equal(a, preprocess(raw, random_state=5))
    assert not np.array_equal(a, preprocess(raw, random_state=6))


def test_preprocess_handles_more_rows_than_one_chunk():
    n = datasets._CHUNK_ROWS * 2 + 3
    raw = np.random.default_rng(0).integers(0, 256, (n, 64))
    out = preprocess(raw, dequantize=False)
    ref = raw / 256.0
    np.testing.assert_allclose(out, (ref - ref.mean(axis=1, keepdims=True))[:, :63], atol=1e-15)


def test_preprocess_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        preprocess(np.zeros(64))
    with pytest.raises(ValueError, match="scale"):
        preprocess(np.zeros((3, 64)), scale=0)
    with pytest.raises(ValueError, match="columns"):
        preprocess(np.zeros((3, 1)))


# ---------------------------------------------------------------------------
# low-resolution patches
# ---------------------------------------------------------------------------

def test_lowres_block_averaging_on_known_image():
    # 16x16 -> 8x8: each output pixel is the mean of a 2x2 block, built to be an integer.
    base = np.random.default_rng(0).integers(2, 250, (8, 8))
    offsets = np.array([[-1, 1], [2, -2]])
    image = (np.kron(base, np.ones((2, 2), int)) + np.tile(offsets, (8, 8))).astype(np.uint8)
    raw = extract_lowres_patches([image], 5, random_state=0)  # only one 16x16 crop fits
    assert raw.shape == (5, 64) and raw.dtype == np.uint8
    for row in raw:
        np.testing.assert_array_equal(row, base.ravel())


def test_lowres_area_weighting_when_not_divisible():
    # Independent check: upsample 12x12 by 8 (exact), then average 12x12 blocks.
    image = np.random.default_rng(1).integers(0, 256, (12, 12)).astype(np.uint8)
    raw = extract_lowres_patches([image], 1, crop_size=12, quantize=False, random_state=0)
    fine = np.kron(image.astype(float), np.ones((8, 8)))
    expected = fine.reshape(8, 12, 8, 12).mean(axis=(1, 3))
    np.testing.assert_allclose(raw.reshape(8, 8), expected, rtol=1e-12)


def test_lowres_crops_are_inside_the_image_and_sized_as_asked():
    # A horizontal ramp: the mean of the crop reveals its left edge and size.
    image = np.tile(np.arange(100, dtype=float), (40, 1))
    raw = extract_lowres_patches([image], 200, crop_size=24, quantize=False, random_state=0)
    first_col = raw.reshape(-1, 8, 8)[:, :, 0]
    left = first_col[:, 0] - 1.0  # mean over columns left .. left + 2
    assert np.all(left >= 0) and np.all(left <= 100 - 24)
    np.testing.assert_allclose(raw.reshape(-1, 8, 8)[:, 0, 1] - raw.reshape(-1, 8, 8)[:, 0, 0], 3.0)
    raw = extract_lowres_patches([image], 500, quantize=False, random_state=0)
    step = raw.reshape(-1, 8, 8)[:, 0, 1] - raw.reshape(-1, 8, 8)[:, 0, 0]  # = size / 8
    sizes = np.rint(step * 8).astype(int)
    assert sizes.min() == 16 and sizes.max() == 40


def test_lowres_patches_preprocessed_and_deterministic():
    image = np.random.default_rng(2).integers(0, 256, (64, 80)).astype(np.uint8)
    a = lowres_patches([image], 100, random_state=3)
    assert a.shape == (100, 63) and a.dtype == np.float64
    np.testing.assert_array_equal(a, lowres_patches([image], 100, random_state=3))
    assert not np.array_equal(a, lowres_patches([image], 100, random_state=4))
    flat = lowres_patches([np.full((30, 30), 77, np.uint8)], 10, random_state=0)
    assert np.all(np.abs(flat) < 1 / 256)  # only the dequantization noise is left


def test_lowres_rejects_bad_crop_size():
    with pytest.raises(ValueError, match="crop_size"):
        extract_lowres_patches([np.zeros((30, 30))], 5, crop_size=4)
    with pytest.raises(ValueError, match="smaller than a 40x40 crop"):
        extract_lowres_patches([np.zeros((30, 30))], 5, crop_size=40)


# ---------------------------------------------------------------------------
# reading images
# ---------------------------------------------------------------------------

@pytest.fixture
def image_folder(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 24, 3)).astype(np.uint8)
    gray = rng.integers(0, 256, (16, 18)).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(tmp_path / "a.png")
    Image.fromarray(gray, "L").save(tmp_path / "b.PNG")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path, rgb, gray


def test_load_images_reads_folder_in_grayscale(image_folder):
    folder, rgb, gray = image_folder
    images = load_images(folder)
    assert [im.shape for im in images] == [(20, 24), (16, 18)]
    assert all(im.dtype == np.uint8 for im in images)
    luma = rgb @ np.array([0.299, 0.587, 0.114])  # ITU-R 601-2
    assert np.max(np.abs(images[0] - luma)) <= 1.0
    np.testing.assert_array_equal(images[1], gray)
    colour = load_images([folder / "a.png"], grayscale=False)
    np.testing.assert_array_equal(colour[0], rgb)


def test_load_patches_from_images_paths_and_arrays_agree(image_folder):
    folder, _, _ = image_folder
    from_folder = load_patches_from_images(folder, 50, random_state=0)
    from_arrays = load_patches_from_images(load_images(folder), 50, random_state=0)
    assert from_folder.shape == (50, 63)
    np.testing.assert_array_equal(from_folder, from_arrays)
    np.testing.assert_array_equal(
        from_folder, load_patches_from_images(str(folder), 50, random_state=0))


def test_load_images_errors(tmp_path, image_folder):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_images(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="no image files"):
        load_images(empty)
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="could not read image"):
        load_images(bad)


def test_16_bit_images_keep_their_range_and_wider_ones_are_refused(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    deep = np.random.default_rng(3).integers(0, 65536, (12, 10)).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")  # Pillow mode I;16
    np.testing.assert_array_equal(load_images(tmp_path / "deep.png")[0], deep >> 8)
    colour = load_images([tmp_path / "deep.png"], grayscale=False)[0]
    np.testing.assert_array_equal(colour, np.stack([deep >> 8] * 3, axis=2))
    for name, array in (("f.tiff", deep / 65535.0), ("i.tiff", deep.astype(np.int32))):
        Image.fromarray(array.astype(np.float32) if name == "f.tiff" else array).save(
            tmp_path / name)
        with pytest.raises(ValueError, match="no known range"):
            load_images(tmp_path / name)


def test_one_colour_image_array_is_not_taken_for_a_stack():
    rgb = np.zeros((20, 30, 3))
    for call in (lambda: extract_patches(rgb, 4, patch_size=2),
                 lambda: load_patches_from_images(rgb, 4, patch_size=2)):
        with pytest.raises(ValueError, match="looks like one colour image"):
            call()
    stack = np.zeros((3, 20, 30))  # three grayscale images
    assert extract_patches(stack, 6, patch_size=2).shape == (6, 4)


def test_images_with_nan_are_refused():
    img = np.zeros((20, 20))
    img[3, 4] = np.nan
    for call in (lambda: extract_patches([img], 4), lambda: extract_lowres_patches([img], 4),
                 lambda: load_patches_from_images([np.zeros((20, 20)), img], 4)):
        with pytest.raises(ValueError, match="image 1 contains NaN|image 0 contains NaN"):
            call()


def test_missing_pillow_gives_install_hint(monkeypatch, image_folder):
    folder, _, _ = image_folder
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(ImportError, match=r"pip install dgmmcore\[images\]"):
        load_images(folder)


def test_module_import_needs_numpy_only():
    path = str(Path(datasets.__file__).resolve())
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('m', {path!r})\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "assert 'PIL' not in sys.modules and 'scipy' not in sys.modules, sorted(sys.modules)\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------
# embedded default data
# ---------------------------------------------------------------------------

def test_embedded_file_is_small_plain_uint8():
    path = Path(datasets.__file__).parent / "data" / "default_patches.npz"
    assert path.stat().st_size < 5_000_000
    with np.load(path, allow_pickle=False) as data:
        assert data["train"].shape == (60_000, 64) and data["train"].dtype == np.uint8
        assert data["test"].shape == (10_000, 64) and data["test"].dtype == np.uint8
        names = list(data["source_names"])
        assert len(names) == 8 and not any(n.endswith(".jpg") and n[:-4].isdigit() for n in names)
        licences = (path.parent / "LICENSES.md").read_text()
        assert all(name in licences for name in names)
        for split in ("train", "test"):
            counts = np.bincount(data[f"{split}_source"], minlength=8)
            assert np.all(counts == len(data[split]) // 8)


def test_load_default_shapes_and_protocol():
    train = load_default("train", random_state=0)
    test = load_default("test", random_state=0)
    assert train.shape == (60_000, 63) and test.shape == (10_000, 63)
    assert train.dtype == np.float64
    # Mean removal over 64 pixels: the 63 kept values sum to minus the dropped one, in (-1, 1).
    assert np.all(np.abs(train.sum(axis=1)) < 1)
    raw = datasets._load_default_raw("test")
    noiseless = preprocess(raw, dequantize=False)
    # Same set of patches, shuffled, within the noise: compare sorted row sums.
    np.testing.assert_allclose(np.sort(test.sum(axis=1)), np.sort(noiseless.sum(axis=1)),
                               rtol=0, atol=1 / 256 + 1e-12)


def test_load_default_subsets_and_determinism():
    a = load_default("train", n_patches=1000, random_state=1)
    assert a.shape == (1000, 63)
    np.testing.assert_array_equal(a, load_default("train", n_patches=1000, random_state=1))
    assert not np.array_equal(a, load_default("train", n_patches=1000, random_state=2))
    with pytest.raises(ValueError, match="has 10000 patches"):
        load_default("test", n_patches=10_001)
    with pytest.raises(ValueError, match="split"):
        load_default("validation")
    with pytest.raises(ValueError, match="n_patches"):
        load_default("train", n_patches=0)


def test_load_default_works_without_shared_data(tmp_path):
    # A fresh interpreter in an unrelated folder, with only the package on the path.
    code = ("from dgmmcore.datasets import load_default\n"
            "x = load_default('test', n_patches=10, random_state=0)\n"
            "assert x.shape == (10, 63)\n")
    env = dict(os.environ, PYTHONPATH=str(Path(datasets.__file__).resolve().parent.parent))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, env=env)


# ---------------------------------------------------------------------------
# BSDS300
# ---------------------------------------------------------------------------

@needs_bsds
def test_bsds300_splits_are_fixed_and_disjoint():
    train = bsds300_image_ids(BSDS, "train")
    val = bsds300_image_ids(BSDS, "validation")
    test = bsds300_image_ids(BSDS, "test")
    assert (len(train), len(val), len(test)) == (180, 20, 100)
    assert not set(train) & set(val) and not set(test) & (set(train) | set(val))
    official = (BSDS / "iids_train.txt").read_text().split()
    assert set(train) | set(val) == set(official)
    assert val == sorted(official, key=int)[::10]


@needs_bsds
def test_load_bsds300_shapes_and_determinism():
    a = load_bsds300(BSDS, "validation", n_patches=400, random_state=0)
    assert a.shape == (400, 63) and a.dtype == np.float64
    again = load_bsds300(BSDS, "validation", n_patches=400, random_state=0)
    np.testing.assert_array_equal(a, again)
    assert not np.array_equal(a, load_bsds300(BSDS, "validation", n_patches=400, random_state=1))
    # Full 64-pixel patches have zero mean; pixels lie in [0, 1], so values are within +-1.
    assert np.all(np.abs(a) < 1)
    low = load_bsds300_lowres(BSDS, "test", n_patches=300, random_state=0)
    assert low.shape == (300, 63)


@needs_bsds
def test_load_bsds300_errors(tmp_path):
    with pytest.raises(ValueError, match="split"):
        load_bsds300(BSDS, "valid", n_patches=10)
    with pytest.raises(ValueError, match="n_patches"):
        load_bsds300(BSDS, "test", n_patches=0)
    with pytest.raises(FileNotFoundError, match="BSDS300 folder not found"):
        load_bsds300(tmp_path / "missing", n_patches=10)
    with pytest.raises(FileNotFoundError, match="iids_test.txt"):
        load_bsds300(tmp_path, "test", n_patches=10)
    (tmp_path / "iids_test.txt").write_text("12345\n")
    with pytest.raises(FileNotFoundError, match="12345.jpg"):
        load_bsds300(tmp_path, "test", n_patches=10)


@needs_bsds
def test_single_gaussian_scores_about_97_nats():
    # The README's reference figure for the standard protocol: a sanity check of the pipeline.
    multivariate_normal = pytest.importorskip("scipy.stats").multivariate_normal
    train = load_bsds300(BSDS, "train", n_patches=100_000, random_state=0)
    test = load_bsds300(BSDS, "test", n_patches=20_000, random_state=1)
    gauss = multivariate_normal(train.mean(axis=0), np.cov(train, rowvar=False))
    score = gauss.logpdf(test).mean()
    print(f"single Gaussian: {score:.2f} nats")
    assert 93 < score < 101


@pytest.mark.parametrize("kind", ["lr", "ud", "rot90", "rot180", "rot270", "transpose"])
def test_symmetric_patches_equal_the_protocol_applied_to_turned_raw_patches(kind):
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=(40, 6, 6))
    turn = {"lr": lambda P: P[:, :, ::-1], "ud": lambda P: P[:, ::-1],
            "rot90": lambda P: np.stack([np.rot90(p) for p in P]),
            "rot180": lambda P: np.stack([np.rot90(p, 2) for p in P]),
            "rot270": lambda P: np.stack([np.rot90(p, -1) for p in P]),
            "transpose": lambda P: np.stack([p.T for p in P])}[kind]
    X = preprocess(raw.reshape(40, 36), dequantize=False)  # 35 columns
    expected = preprocess(turn(raw).reshape(40, 36), dequantize=False)
    np.testing.assert_allclose(symmetric_patches(X, kind), expected, atol=1e-14)
    # whole patches (nothing dropped) are turned as they are
    full = preprocess(raw.reshape(40, 36), dequantize=False, drop_last=False)
    np.testing.assert_array_equal(symmetric_patches(full, kind), turn(full.reshape(40, 6, 6))
                                  .reshape(40, 36))
    assert symmetric_patches(X.astype(np.float32), kind).dtype == np.float32


def test_symmetric_patches_bad_input():
    X = np.zeros((3, 63))
    with pytest.raises(ValueError, match="kind"):
        symmetric_patches(X, "diagonal")
    with pytest.raises(ValueError, match="square patches"):
        symmetric_patches(np.zeros((3, 10)), "lr")
    with pytest.raises(ValueError, match="2-D"):
        symmetric_patches(np.zeros(63), "lr")


def test_negative_seed_is_named():
    with pytest.raises(ValueError, match="random_state must be >= 0"):
        extract_patches([np.zeros((20, 20))], 4, random_state=-1)
    # what numpy accepts besides ints still works
    a = extract_patches([np.arange(400.0).reshape(20, 20)], 4,
                        random_state=np.random.SeedSequence(3))
    assert a.shape == (4, 64)
