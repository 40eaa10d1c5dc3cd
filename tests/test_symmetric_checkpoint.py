"""SymmetrizedModel.fit(checkpoint=...) and resume: a fit interrupted after any round and
resumed from its checkpoint ends exactly where the uninterrupted fit ends."""
import json
import warnings

import numpy as np
import pytest

from dgmmcore import ConvergenceWarning, DeepGMM, SymmetrizedModel
from dgmmcore import _symmetric_em
from dgmmcore import load as dgmmcore_load
from test_symmetric_fit import symmetric_data

SYMMETRIES = ("identity", "lr", "rot90")


def fresh(seed=0):
    return SymmetrizedModel(DeepGMM((4, 2), max_iter=3, random_state=seed, n_threads=1),
                            SYMMETRIES)


def fit(sym, X, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return sym.fit(X, tol=0.0, **kwargs)


def interrupt_at_round(monkeypatch, r):
    """Raise KeyboardInterrupt when round ``r``'s network fit starts (rounds count from 0)."""
    real, calls = _symmetric_em.canonical_rows, []

    def counting(*args):
        calls.append(1)
        if len(calls) == r + 1:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(_symmetric_em, "canonical_rows", counting)


def assert_same_fit(a, b):
    for x, y in zip(a.model.transforms_ + a.model.biases_, b.model.transforms_ + b.model.biases_):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.model.weights_, b.model.weights_)
    strip = [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in a.history_]
    other = [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in b.history_]
    assert json.dumps(strip) == json.dumps(other)  # NaN in round 0 compares equal as text
    assert a.objective_ == b.objective_


@pytest.mark.parametrize("search", ["heuristic", "exact"])
def test_an_interrupted_fit_resumes_to_the_uninterrupted_result(search, tmp_path, monkeypatch):
    X = symmetric_data(1500, 21)
    whole = fit(fresh(), X, n_rounds=4, search=search)
    path = tmp_path / "ckpt.npz"
    stopped = fresh()
    with monkeypatch.context() as m:
        interrupt_at_round(m, 2)
        with pytest.raises(KeyboardInterrupt), pytest.warns(RuntimeWarning, match="after 2 "):
            fit(stopped, X, n_rounds=4, search=search, checkpoint=path)
    back = dgmmcore_load(path)
    assert isinstance(back, SymmetrizedModel) and back.symmetries == SYMMETRIES
    assert [r["round"] for r in back.history_] == [0, 1]  # the two rounds completed
    # the interrupted model itself holds what its checkpoint holds
    assert json.dumps(stopped.history_) == json.dumps(back.history_)
    assert not hasattr(stopped, "objective_")
    np.testing.assert_array_equal(stopped.model.transforms_[0], back.model.transforms_[0])
    # the network's own settings are in the file, not the ones a round runs with
    assert (back.model.max_iter, back.model.random_state, back.model.warm_start) == (3, 0, False)
    resumed = fit(back, X, n_rounds=4, checkpoint=path, resume=True)
    assert_same_fit(resumed, whole)
    assert resumed._resume_state is None  # a second resume needs the file again
    with pytest.raises(ValueError, match="resume=True needs"):
        resumed.fit(X, resume=True)


def test_the_heuristic_checkpoint_holds_every_rows_last_pairs(tmp_path):
    X = symmetric_data(800, 22)
    sym = fit(fresh(), X, n_rounds=2, search="heuristic", checkpoint=tmp_path / "c.npz",
              final_search=False)
    state = dgmmcore_load(tmp_path / "c.npz")._resume_state
    searcher = sym._search_state
    np.testing.assert_array_equal(state["per_symmetry"], searcher.per_symmetry)
    np.testing.assert_array_equal(state["which"], searcher.last_which)
    assert state["rounds"] == 2 and state["search"] == "heuristic"
    assert state["previous_objective"] == sym.history_[-1]["objective"]


@pytest.mark.filterwarnings("ignore:fit interrupted")  # the interruption is the test
def test_the_command_line_resumes_a_symmetric_checkpoint(tmp_path, monkeypatch, capsys):
    from dgmmcore.cli import main as dgmm
    X = symmetric_data(2000, 23)
    np.save(tmp_path / "rows.npy", X)
    common = ["--data", str(tmp_path / "rows.npy"), "--threads", "1", "--seed", "3",
              "--layers", "3,2", "--iters", "2", "--symmetric-rounds", "3",
              "--symmetries", ",".join(SYMMETRIES)]
    assert dgmm(["fit", "--out", str(tmp_path / "whole.npz")] + common) == 0
    with monkeypatch.context() as m:
        interrupt_at_round(m, 1)
        assert dgmm(["fit", "--checkpoint", str(tmp_path / "c.npz")] + common) == 130
    capsys.readouterr()
    assert dgmm(["fit", "--resume", str(tmp_path / "c.npz"), "--out",
                 str(tmp_path / "resumed.npz")] + common) == 0
    assert "(1 rounds with the symmetry layer done)" in capsys.readouterr().out
    whole, resumed = dgmmcore_load(tmp_path / "whole.npz"), dgmmcore_load(tmp_path / "resumed.npz")
    np.testing.assert_array_equal(resumed.model.transforms_[0], whole.model.transforms_[0])
    assert [r["objective"] for r in resumed.history_] == [r["objective"] for r in whole.history_]
    # the network's settings are the checkpoint's run's: changing them would not resume it
    assert dgmm(["fit", "--resume", str(tmp_path / "c.npz"), "--truncation", "2", "--out",
                 str(tmp_path / "x.npz")] + common) == 2


def _rewrite(path, out, **arrays):
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    data.update(arrays)
    np.savez(out, **data)


def test_a_checkpoint_that_does_not_fit_is_refused(tmp_path):
    X = symmetric_data(600, 24)
    path = tmp_path / "c.npz"
    fit(fresh(), X, n_rounds=1, search="heuristic", checkpoint=path)
    with pytest.raises(ValueError, match="600 rows, X has 599"):
        dgmmcore_load(path).fit(X[:-1], n_rounds=2, resume=True)
    with pytest.raises(ValueError, match="searches 'heuristic', not 'exact'"):
        dgmmcore_load(path).fit(X, n_rounds=2, search="exact", resume=True)
    bad_which = np.full(600, 3, dtype=np.int8)  # 3 symmetries: 0..2
    _rewrite(path, tmp_path / "w.npz", symmetric_which=bad_which)
    with pytest.raises(ValueError, match="symmetries lie outside"):
        dgmmcore_load(tmp_path / "w.npz").fit(X, n_rounds=2, resume=True)
    _rewrite(path, tmp_path / "p.npz", symmetric_paths=np.full((600, 3), 8, dtype=np.int32))
    with pytest.raises(ValueError, match="paths lie outside the network's 8"):
        dgmmcore_load(tmp_path / "p.npz").fit(X, n_rounds=2, resume=True)
    _rewrite(path, tmp_path / "s.npz", symmetric_paths=np.zeros((600, 2), dtype=np.int32))
    with pytest.raises(ValueError, match="every \\(row, symmetry\\)'s path"):
        dgmmcore_load(tmp_path / "s.npz").fit(X, n_rounds=2, resume=True)
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files if k != "symmetric_which"}
    np.savez(tmp_path / "m.npz", **data)
    with pytest.raises(ValueError, match="incomplete symmetric checkpoint"):
        dgmmcore_load(tmp_path / "m.npz")
    meta = json.loads(str(data["meta"]))
    meta["symmetric_checkpoint"]["rng_state"] = {"bit_generator": "os"}
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    data["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "r.npz", **data)
    with pytest.raises(ValueError, match="random generator 'os'"):
        dgmmcore_load(tmp_path / "r.npz").fit(X, n_rounds=2, resume=True)
    with pytest.raises(ValueError, match="resume=True needs"):
        fresh().fit(X, resume=True)
