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


def _edit_meta(edit):
    """A _rewrite change that edits the JSON header."""
    def change(arrays):
        meta = json.loads(str(arrays["meta"]))
        edit(meta)
        arrays["meta"] = np.array(json.dumps(meta))
    return change


@pytest.mark.parametrize("change,msg", [
    (lambda a: a.__setitem__("meta", np.array(json.dumps([1, 2]))), "magic"),
    (_edit_meta(lambda m: m.__setitem__("layers", 5)), "layers must be a list"),
    (_edit_meta(lambda m: m.__setitem__("layers", None)), "layers must be a list"),
    (_edit_meta(lambda m: m.__setitem__("layers", [3, 2.0])), "layers must be a list"),
    (_edit_meta(lambda m: m.__setitem__("layers", [])), "layers must be a list"),
    (_edit_meta(lambda m: m.__setitem__("hyperparameters", [1])), "not a mapping"),
    (_edit_meta(lambda m: m.__setitem__("history", 5)), "history is not a list"),
    (_edit_meta(lambda m: m.__setitem__("history", [{"objective": "x"}])), "history"),
])
def test_bad_headers_give_clear_errors(model, tmp_path, change, msg):
    model.save(tmp_path / "m.npz")
    _rewrite(tmp_path / "m.npz", tmp_path / "bad.npz", change)
    with pytest.raises(ValueError, match=msg):
        load(tmp_path / "bad.npz")


@pytest.mark.parametrize("change,msg", [
    (lambda a: a.pop("layer_weights_1"), "missing array 'layer_weights_1'"),
    (lambda a: a.__setitem__("layer_weights_0", np.array([np.nan, .5, .5])), "NaN"),
    (lambda a: a.__setitem__("layer_weights_0", np.array([1.0])), r"shape \(3,\)"),
    (lambda a: a.__setitem__("layer_weights_0", np.eye(7)), "1-D"),
    (lambda a: a.__setitem__("layer_weights_0", np.array([.5, .3, .2])), "multiply"),
])
def test_bad_layer_weights_give_clear_errors(tmp_path, change, msg):
    A, b, _ = random_params((3, 2), 2, np.random.default_rng(1))
    DeepGMM.from_params(A, b, [np.array([.2, .3, .5]), np.array([.5, .5])]).save(
        tmp_path / "fz.npz")
    _rewrite(tmp_path / "fz.npz", tmp_path / "bad.npz", change)
    with pytest.raises(ValueError, match=msg):
        load(tmp_path / "bad.npz")


def test_weights_off_by_rounding_noise_are_normalized(model, tmp_path):
    model.save(tmp_path / "m.npz")
    # within the 1e-6 the loader accepts, but past what numpy's sampler accepts
    _rewrite(tmp_path / "m.npz", tmp_path / "w.npz",
             lambda a: a.__setitem__("weights", a["weights"] * (1 + 5e-7)))
    back = load(tmp_path / "w.npz")
    assert back.weights_.sum() == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_allclose(back.weights_, model.weights_, rtol=1e-15)
    X, _ = back.sample(50, random_state=0)
    assert X.shape == (50, 4)


def test_saved_files_follow_the_umask(model, tmp_path):
    old = os.umask(0o022)
    try:
        model.save(tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "m.npz").st_mode & 0o777) == 0o644


def _checkpoint(tmp_path):
    """A checkpoint of a short truncated run on 200 rows, and the rows."""
    import warnings
    X = np.random.default_rng(2).standard_normal((200, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        DeepGMM((3, 2), max_iter=2, random_state=0, n_threads=1).fit(
            X, checkpoint=tmp_path / "ck.npz")
    return X


@pytest.mark.parametrize("change,msg", [
    (lambda a: a["checkpoint_paths"].__setitem__(0, 10 ** 6), "outside the network's 6"),
    (lambda a: a["checkpoint_paths"].__setitem__(0, -1), "outside the network's 6"),
    (lambda a: a.__setitem__("checkpoint_paths", a["checkpoint_paths"] + 0.5), "integer"),
    (lambda a: a.__setitem__("checkpoint_paths", a["checkpoint_paths"].reshape(2, -1)),
     "1-D integer"),
    (lambda a: a["checkpoint_Q_0"].__setitem__((0, 0, 0), np.nan), "NaN"),
    (lambda a: a.__setitem__("checkpoint_Q_1", a["checkpoint_Q_1"][:1]), "layer 1 has shapes"),
    (lambda a: a.__setitem__("checkpoint_c_0", a["checkpoint_c_0"][:, :2]), "layer 0 has shapes"),
    (lambda a: a.pop("checkpoint_c_1"), "missing 'checkpoint_c_1'"),
    (_edit_meta(lambda m: m["checkpoint"].__setitem__("rng_state", 5)), "random generator"),
    (_edit_meta(lambda m: m["checkpoint"]["rng_state"].__setitem__("bit_generator", "os")),
     "random generator"),
])
@pytest.mark.filterwarnings("ignore:EM did not converge")
def test_bad_checkpoints_give_clear_errors(tmp_path, change, msg):
    X = _checkpoint(tmp_path)
    load(tmp_path / "ck.npz").fit(X, resume=True)  # the file as written resumes
    _rewrite(tmp_path / "ck.npz", tmp_path / "bad.npz", change)
    with pytest.raises(ValueError, match=msg):
        load(tmp_path / "bad.npz")
