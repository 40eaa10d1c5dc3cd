"""Memory-mapped and .npy-file input: streamed block by block, same answers as in memory."""
import warnings

import numpy as np
import pytest

from dgmmcore import ConvergenceWarning, DeepGMM, _data
from _reference import random_params


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(_data, "BLOCK_ROWS", 257)
    monkeypatch.setattr(_data.RowSource.__init__, "__defaults__",
                        ("X", None, 1, 257))


def make_file(tmp_path, dtype=np.float64):
    rng = np.random.default_rng(0)
    A, b, w = random_params((3, 2), 4, rng)
    model = DeepGMM.from_params(A, b, w)
    X, _ = model.sample(2000, random_state=1)
    path = tmp_path / "x.npy"
    np.save(path, X.astype(dtype))
    return model, X.astype(dtype), path


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_scoring_a_memmap_matches_in_memory(tmp_path, small_blocks, dtype):
    model, X, path = make_file(tmp_path, dtype)
    mm = np.load(path, mmap_mode="r")
    # BLAS may round a row differently when its chunk holds fewer rows: ulps, no more
    ref = model.score_samples(X)
    np.testing.assert_allclose(model.score_samples(mm), ref, rtol=1e-14)
    np.testing.assert_allclose(model.score_samples(str(path)), ref, rtol=1e-14)
    np.testing.assert_array_equal(model.predict(path), model.predict(X))


def test_fitting_a_npy_file_matches_in_memory(tmp_path, small_blocks):
    _, X, path = make_file(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = DeepGMM((3, 2), estep="full", max_iter=4, random_state=0).fit(X)
        b = DeepGMM((3, 2), estep="full", max_iter=4, random_state=0).fit(str(path))
        c = DeepGMM((3, 2), estep="heuristic", max_iter=4, random_state=0).fit(path)
    # only the order of summing the blocks' statistics differs
    for x, y in zip(a.transforms_ + a.biases_, b.transforms_ + b.biases_):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-8)
    assert b.score(X) == pytest.approx(a.score(X), abs=1e-6)
    assert np.isfinite(c.score(X))


@pytest.mark.parametrize("settings", [dict(estep="soft"), dict(truncation=2),
                                      dict(truncation=2, rerank_every=2, warm_passes=0,
                                           n_restarts=0)])
def test_soft_and_truncated_fits_of_a_npy_file_match_in_memory(tmp_path, small_blocks, settings):
    """Blocks of 257 rows add their entries to one set of sums per E-step: the same fit as one
    in-memory block, up to the order of summing."""
    _, X, path = make_file(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = DeepGMM((3, 2), max_iter=3, random_state=0).fit(X)
        fits = []
        for data in (X, path):
            model = DeepGMM((3, 2), max_iter=3, random_state=0).fit(X)
            for name, value in dict(settings, warm_start=True).items():
                setattr(model, name, value)
            fits.append(model.fit(data))
    a, b = fits
    assert len(X) > 4 * 257
    np.testing.assert_allclose([h["objective"] for h in b.history_],
                               [h["objective"] for h in a.history_], rtol=1e-9)
    for x, y in zip(a.transforms_ + a.biases_, b.transforms_ + b.biases_):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-8)
    assert b.score(X) > start.score(X) - 1e-9


def test_bad_rows_inside_a_memmap_are_reported(tmp_path, small_blocks):
    model, X, path = make_file(tmp_path)
    X[1500, 2] = np.nan
    np.save(path, X)
    with pytest.raises(ValueError, match="NaN"):
        model.score_samples(np.load(path, mmap_mode="r"))
    with pytest.raises(ValueError, match="features"):
        np.save(tmp_path / "y.npy", X[:, :3])
        model.score_samples(tmp_path / "y.npy")
    with pytest.raises(FileNotFoundError):
        model.score_samples(tmp_path / "absent.npy")


def test_heuristic_fit_does_not_depend_on_block_size(tmp_path, monkeypatch):
    """Random restarts are keyed by each row's global index, so streaming a file in blocks
    finds the same paths as one in-memory block (only statistics summation order differs)."""
    _, X, path = make_file(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = DeepGMM((3, 2), max_iter=3, random_state=0).fit(X)
        monkeypatch.setattr(_data.RowSource.__init__, "__defaults__", ("X", None, 1, 300))
        b = DeepGMM((3, 2), max_iter=3, random_state=0).fit(path)
    np.testing.assert_array_equal(a._train_paths, b._train_paths)
    for x, y in zip(a.transforms_, b.transforms_):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-8)
