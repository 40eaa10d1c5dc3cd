"""Model files: bit-exact round trip, no pickle, clear errors for bad files."""
import json
import os

import numpy as np
import pytest

import dgmmcore
from dgmmcore import DeepGMM, load
from _reference import random_params


@pytest.fixture
def model():
    rng = np.random.default_rng(0)
    A, b, w = random_params((3, 2), 4, rng)
    return DeepGMM.from_params(A, b, w, estep="full", reg_covar=1e-5, init_layer=-1)


def test_round_trip_is_bit_exact(model, tmp_path):
    path = tmp_path / "m.npz"
    model.save(path)
    back = load(path)
    for a, b in zip(model.transforms_ + model.biases_, back.transforms_ + back.biases_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.weights_, back.weights_)
    assert back.estep == "full" and back.reg_covar == 1e-5 and back.layers == (3, 2)
    assert back.init_layer == -1
    X, _ = model.sample(100, random_state=0)
    np.testing.assert_array_equal(model.score_samples(X), back.score_samples(X))


def test_fitted_model_round_trip_keeps_history(tmp_path):
    X = np.random.default_rng(0).standard_normal((300, 2))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = DeepGMM((2, 2), max_iter=2, random_state=0).fit(X)
    m.save(tmp_path / "f.npz")
    back = load(tmp_path / "f.npz")
    assert back.n_iter_ == 2 and len(back.history_) == len(m.history_)


def test_factorized_prior_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    A, b, _ = random_params((3, 2), 2, rng)
    m = DeepGMM.from_params(A, b, [np.array([.2, .3, .5]), np.array([.5, .5])])
    m.save(tmp_path / "fz.npz")
    back = load(tmp_path / "fz.npz")
    assert back.path_prior == "factorized"
    np.testing.assert_array_equal(back.layer_weights_[0], m.layer_weights_[0])


def test_file_holds_no_object_arrays(model, tmp_path):
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:
        assert all(f[k].dtype != object for k in f.files)
        meta = json.loads(str(f["meta"]))
    assert meta["layers"] == [3, 2] and int(np.load(tmp_path / "m.npz")["format_version"]) == 1


def test_unfitted_model_cannot_be_saved(tmp_path):
    with pytest.raises(dgmmcore.NotFittedError):
        DeepGMM((2,)).save(tmp_path / "x.npz")


def test_save_is_atomic_and_leaves_no_temp_files(model, tmp_path):
    path = tmp_path / "m.npz"
    model.save(path)
    model.save(path)  # overwrite
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]


def _rewrite(src, dst, change):
    with np.load(src, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    change(arrays)
    np.savez(dst, **arrays)


@pytest.mark.parametrize("change,msg", [
    (lambda a: a.__setitem__("format_version", np.array(99)), "newer"),
    (lambda a: a.pop("transforms_1"), "missing"),
    (lambda a: a.pop("meta"), "not written by dgmmcore"),
    (lambda a: a.__setitem__("meta", np.array("{not json")), "corrupted"),
    (lambda a: a.__setitem__("meta", np.array(json.dumps({"magic": "other"}))), "magic"),
    (lambda a: a.__setitem__("transforms_0", np.zeros((3, 4, 4))), "singular"),
    (lambda a: a.__setitem__("weights", np.ones((3, 2))), "sum to 1"),
])
def test_bad_files_give_clear_errors(model, tmp_path, change, msg):
    model.save(tmp_path / "m.npz")
    _rewrite(tmp_path / "m.npz", tmp_path / "bad.npz", change)
    with pytest.raises(ValueError, match=msg):
        load(tmp_path / "bad.npz")


def test_truncated_and_foreign_files(model, tmp_path):
    model.save(tmp_path / "m.npz")
    data = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable dgmmcore model"):
        load(tmp_path / "trunc.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not a zip archive"):
        load(tmp_path / "text.npz")
    np.save(tmp_path / "array.npy", np.zeros(3))  # e.g. `dgmm score DATA MODEL`, swapped
    with pytest.raises(ValueError, match="it is a .npy array"):
        load(tmp_path / "array.npy")
    with pytest.raises(ValueError, match="it is a folder"):
        load(tmp_path)
    np.savez(tmp_path / "foreign.npz", a=np.arange(3))
    with pytest.raises(ValueError, match="not written by dgmmcore"):
        load(tmp_path / "foreign.npz")
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "absent.npz")


def test_pickled_object_array_is_refused(model, tmp_path):
    model.save(tmp_path / "m.npz")
    _rewrite(tmp_path / "m.npz", tmp_path / "obj.npz",
             lambda a: a.__setitem__("weights", np.array([object()], dtype=object)))
    with pytest.raises(ValueError, match="not a readable"):
        load(tmp_path / "obj.npz")
