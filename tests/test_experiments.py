"""bench/experiments/bsds300.py's diagnostic commands, on a tiny network, against brute force."""
import argparse
import importlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import dgmmcore
from dgmmcore import DeepGMM
from dgmmcore.datasets import load_bsds300
from test_symmetry import by_hand

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = REPO / "bench" / "experiments"
BSDS = REPO.parent / "shared" / "data" / "bsds300"
pytestmark = [
    pytest.mark.skipif(not (EXPERIMENTS / "bsds300.py").is_file(), reason="needs the source tree"),
    pytest.mark.skipif(not (BSDS / "iids_train.txt").is_file(),
                       reason="../shared/data/bsds300 not available"),
]


@pytest.fixture
def bsds300_script(tmp_path, monkeypatch):
    """The experiment module, writing its JSON under tmp_path instead of bench/results."""
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    module = importlib.import_module("bsds300")
    monkeypatch.setattr(module, "RESULTS", str(tmp_path))
    return module


@pytest.mark.filterwarnings("ignore:EM did not converge")
def test_estep_gap_matches_brute_force_over_the_paths(tmp_path, bsds300_script):
    X = load_bsds300(BSDS, "train", n_patches=1500, random_state=0)
    model = DeepGMM(layers=(3, 2, 2), max_iter=3, tol=0.0, random_state=0, n_threads=1)
    model.fit(X, checkpoint=str(tmp_path / "net.ckpt.npz"))
    model.save(str(tmp_path / "net.model.npz"))
    n = 300
    bsds300_script.main(["estep-gap", "--root", str(BSDS), "--files",
                         str(tmp_path / "net.model.npz"), "--test", str(n), "--threads", "1",
                         "--work", str(tmp_path)])
    (row,) = json.loads((tmp_path / "bsds300-estep-gap.json").read_text())["rows"]

    weights, means, covs = model.to_gmm()
    logp = np.stack([np.log(w) + multivariate_normal(mu, S).logpdf(X[:n])
                     for w, mu, S in zip(weights, means, covs)], axis=1)
    assert row["rows"] == n and row["model"] == "net.model.npz"
    assert row["exact"] == pytest.approx(logp.max(axis=1).mean(), abs=1e-6)
    assert row["log_p"] == pytest.approx(logsumexp(logp, axis=1).mean(), abs=1e-6)
    assert row["heuristic"] <= row["exact"] + 1e-9
    assert 0.0 <= row["rows_off_best"] <= 1.0


def test_estep_gap_needs_one_network_with_its_checkpoint(tmp_path, bsds300_script):
    with pytest.raises(SystemExit, match="ckpt.npz"):
        bsds300_script.main(["estep-gap", "--files", str(tmp_path / "a.npz"),
                             "--work", str(tmp_path)])


def logp_gmm(model, X):
    """log p(x) of a trained network, by scipy's densities over every path."""
    weights, means, covs = model.to_gmm()
    return logsumexp(np.stack([np.log(w) + multivariate_normal(mu, S).logpdf(X)
                               for w, mu, S in zip(weights, means, covs)], axis=1), axis=1)


@pytest.mark.filterwarnings("ignore:EM did not converge")
def test_paired_scores_both_models_and_their_difference_on_the_same_patches(tmp_path,
                                                                           bsds300_script):
    X = load_bsds300(BSDS, "train", n_patches=1200, random_state=0)
    files = []
    for name, layers in (("a", (3,)), ("b", (3, 2))):
        model = DeepGMM(layers=layers, max_iter=2, tol=0.0, random_state=0, n_threads=1).fit(X)
        model.save(str(tmp_path / f"{name}.model.npz"))
        files.append(str(tmp_path / f"{name}.model.npz"))
    bsds300_script.main(["paired", "--root", str(BSDS), "--files", *files, "--test", "300",
                         "--threads", "1", "--work", str(tmp_path)])
    (row,) = json.loads((tmp_path / "bsds300-paired.json").read_text())["rows"]
    assert (row["A"], row["B"], row["test_patches"]) == ("a.model.npz", "b.model.npz", 300)
    for split, n in (("validation", 300), ("test", 300)):
        patches = load_bsds300(BSDS, split, n_patches=n, random_state=0)
        a, b = (logp_gmm(dgmmcore.load(f), patches) for f in files)
        assert row[f"{split}_A"] == pytest.approx(a.mean(), abs=1e-6)
        assert row[f"{split}_B"] == pytest.approx(b.mean(), abs=1e-6)
        assert row[f"{split}_B_stderr"] == pytest.approx(b.std(ddof=1) / np.sqrt(n), rel=1e-6)
        assert row[f"{split}_B_minus_A"] == pytest.approx((b - a).mean(), abs=1e-6)
        assert row[f"{split}_stderr"] == pytest.approx((b - a).std(ddof=1) / np.sqrt(n),
                                                       rel=1e-6)


@pytest.mark.filterwarnings("ignore:EM did not converge")
def test_table1_rows_score_the_saved_models_and_name_their_machine(tmp_path, bsds300_script):
    argv = ["table1", "--root", str(BSDS), "--train", "1200", "--test", "300", "--iters", "2",
            "--models", "3", "3,2", "--grow", "--threads", "1", "--work", str(tmp_path)]
    bsds300_script.main(argv)
    rows = json.loads((tmp_path / "bsds300.json").read_text())["models"]
    assert [(r["layers"], r["init"]) for r in rows] == [([3], "kmeans"), ([3, 2], "grown")]

    test = load_bsds300(BSDS, "test", n_patches=300, random_state=0)
    for row, stem in zip(rows, ["bsds300-t1-3-n1200-s0", "bsds300-grown-3x2-n1200-s0"]):
        logp = logp_gmm(dgmmcore.load(str(tmp_path / f"{stem}.model.npz")), test)
        assert row["test_loglik"] == pytest.approx(logp.mean(), abs=1e-6)
        assert row["machine"] == bsds300_script.machine()["cpu"]

    # a second run reuses the saved models and replaces its rows instead of adding to them
    bsds300_script.main(argv)
    assert json.loads((tmp_path / "bsds300.json").read_text())["models"] == rows


@pytest.mark.filterwarnings("ignore:EM did not converge")
def test_table1_continue_from_refits_the_smaller_runs_on_more_patches(tmp_path, bsds300_script):
    common = ["--root", str(BSDS), "--test", "300", "--iters", "2", "--models", "3,2", "--grow",
              "--threads", "1", "--work", str(tmp_path)]
    with pytest.raises(SystemExit, match="train it first"):
        bsds300_script.main(["table1", "--train", "2400", "--continue-from", "1200", *common])
    bsds300_script.main(["table1", "--train", "1200", *common])
    bsds300_script.main(["table1", "--train", "2400", "--continue-from", "1200", *common])
    bsds300_script.main(["table1", "--train", "3000", "--continue-from", "1200,2400", *common])

    # the same chain through the public API: the 1200-patch network, warm-started on a draw
    # of 2400 patches, then on a draw of 3000
    model = dgmmcore.load(str(tmp_path / "bsds300-grown-3x2-n1200-s0.model.npz"))
    model.warm_start, model.max_iter, model.n_threads = True, 2, 1
    for n, stem in ((2400, "n2400-s0-from1200"), (3000, "n3000-s0-from1200-2400")):
        model.fit(load_bsds300(BSDS, "train", n_patches=n, random_state=0))
        saved = dgmmcore.load(str(tmp_path / f"bsds300-grown-3x2-{stem}.model.npz"))
        for a, b in zip(saved.transforms_, model.transforms_):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(saved.weights_, model.weights_)

    rows = json.loads((tmp_path / "bsds300.json").read_text())["models"]
    # each continuation has its own row: none replaces the 1200-patch one
    assert [(r["train_patches"], r["continued_from_patches"]) for r in rows] == [
        (1200, None), (2400, [1200]), (3000, [1200, 2400])]
    fits = ["t1-3-n1200-s0", "grown-3x2-n1200-s0", "grown-3x2-n2400-s0-from1200",
            "grown-3x2-n3000-s0-from1200-2400"]
    assert rows[2]["em_iterations"] == sum(
        dgmmcore.load(str(tmp_path / f"bsds300-{f}.model.npz")).n_iter_ for f in fits)
    test = load_bsds300(BSDS, "test", n_patches=300, random_state=0)
    assert rows[2]["test_loglik"] == pytest.approx(model.score(test), abs=1e-9)


def grown_run_options(work):
    """table1 options of a small grown run: 1200 training patches, 2 iterations, 1 thread."""
    return ["--root", str(BSDS), "--train", "1200", "--test", "300", "--iters", "2", "--grow",
            "--threads", "1", "--work", str(work)]


@pytest.mark.filterwarnings("ignore:EM did not converge")
def test_table1_widen_from_continues_the_narrower_network_on_its_patches(tmp_path,
                                                                          bsds300_script):
    common = grown_run_options(tmp_path)
    with pytest.raises(SystemExit, match="train it first"):
        bsds300_script.main(["table1", "--models", "4,2", "--widen-from", "3,2", *common])
    with pytest.raises(SystemExit, match="cannot be widened"):
        bsds300_script.main(["table1", "--models", "2,2", "--widen-from", "3,2", *common])
    bsds300_script.main(["table1", "--models", "3,2", *common])
    bsds300_script.main(["table1", "--models", "4,2", "--widen-from", "3,2", *common])

    # the same through the public API: the (3, 2) network's last checkpoint (its parameters
    # and its rows' paths) widened and continued on the same patches
    X = load_bsds300(BSDS, "train", n_patches=1200, random_state=0)
    model = dgmmcore.load(str(tmp_path / "bsds300-grown-3x2-n1200-s0.ckpt.npz"))
    model = model.widen((4, 2), random_state=0)
    model.max_iter, model.n_threads = 2, 1
    model.fit(X)
    assert np.isfinite(model.history_[0]["switch_rate"])  # started from the carried paths
    saved = dgmmcore.load(str(tmp_path / "bsds300-grown-4x2-n1200-s0-widened3x2.model.npz"))
    for a, b in zip(saved.transforms_, model.transforms_):
        np.testing.assert_array_equal(a, b)

    rows = json.loads((tmp_path / "bsds300.json").read_text())["models"]
    assert [(r["layers"], r["widened_from"]) for r in rows] == [([3, 2], None), ([4, 2], [3, 2])]
    fits = ["t1-3-n1200-s0", "grown-3x2-n1200-s0", "grown-4x2-n1200-s0-widened3x2"]
    assert rows[1]["em_iterations"] == sum(
        dgmmcore.load(str(tmp_path / f"bsds300-{f}.model.npz")).n_iter_ for f in fits)
    test = load_bsds300(BSDS, "test", n_patches=300, random_state=0)
    assert rows[1]["test_loglik"] == pytest.approx(model.score(test), abs=1e-9)


@pytest.mark.filterwarnings("ignore:EM did not converge")
def test_table1_add_fresh_continues_the_network_on_its_patches_and_fresh_ones(tmp_path,
                                                                               bsds300_script):
    common = grown_run_options(tmp_path)
    with pytest.raises(SystemExit, match="without --add-fresh"):
        bsds300_script.main(["table1", "--models", "3,2", "--add-fresh", "600", *common])
    bsds300_script.main(["table1", "--models", "3,2", *common])
    bsds300_script.main(["table1", "--models", "3,2", "--add-fresh", "600", *common])

    # the same through the public API: the finished network continued on its 1200 patches
    # (from their paths in its last checkpoint) and 600 fresh ones (from their exact paths)
    X = load_bsds300(BSDS, "train", n_patches=1200, random_state=0)
    fresh = load_bsds300(BSDS, "train", n_patches=600, random_state=np.random.SeedSequence([0, 1]))
    assert not np.isin(fresh[:, 0], X[:, 0]).any()  # an independent draw
    model = dgmmcore.load(str(tmp_path / "bsds300-grown-3x2-n1200-s0.model.npz"))
    with np.load(tmp_path / "bsds300-grown-3x2-n1200-s0.ckpt.npz") as f:
        old = np.stack(np.unravel_index(f["checkpoint_paths"], (3, 2)), axis=1)
    paths = np.concatenate([old, model.predict(fresh)])
    model.warm_start, model.max_iter, model.n_threads = True, 2, 1
    model.fit(np.concatenate([X, fresh]), init_paths=paths)
    saved = dgmmcore.load(str(tmp_path / "bsds300-grown-3x2-n1200-s0-plus600.model.npz"))
    for a, b in zip(saved.transforms_, model.transforms_):
        np.testing.assert_array_equal(a, b)

    rows = json.loads((tmp_path / "bsds300.json").read_text())["models"]
    assert [(r["train_patches"], r["added_fresh_patches"]) for r in rows] == [
        (1200, None), (1800, [600])]
    fits = ["t1-3-n1200-s0", "grown-3x2-n1200-s0", "grown-3x2-n1200-s0-plus600"]
    assert rows[1]["em_iterations"] == sum(
        dgmmcore.load(str(tmp_path / f"bsds300-{f}.model.npz")).n_iter_ for f in fits)
    test = load_bsds300(BSDS, "test", n_patches=300, random_state=0)
    assert rows[1]["test_loglik"] == pytest.approx(model.score(test), abs=1e-9)
    bsds300_script.main(["gaps", "--models", "3,2", "--add-fresh", "600", *common])
    gaps = json.loads((tmp_path / "bsds300-gaps.json").read_text())["rows"]
    assert gaps[0]["model"] == "bsds300-grown-3x2-n1200-s0-plus600"
    assert gaps[0]["test_images"] == pytest.approx(model.score(test), abs=1e-9)

    # a second stage: the finished plus600 network continued on its 1800 rows and 300 more
    # fresh ones (a third draw); it needs the first stage finished
    with pytest.raises(SystemExit, match="--add-fresh 400"):
        bsds300_script.main(["table1", "--models", "3,2", "--add-fresh", "400,300", *common])
    bsds300_script.main(["table1", "--models", "3,2", "--add-fresh", "600,300", *common])
    more = load_bsds300(BSDS, "train", n_patches=300,
                        random_state=np.random.SeedSequence([0, 1, 1]))
    assert not np.isin(more[:, 0], np.concatenate([X, fresh])[:, 0]).any()
    with np.load(tmp_path / "bsds300-grown-3x2-n1200-s0-plus600.ckpt.npz") as f:
        old = np.stack(np.unravel_index(f["checkpoint_paths"], (3, 2)), axis=1)
    paths = np.concatenate([old, model.predict(more)])
    model.fit(np.concatenate([X, fresh, more]), init_paths=paths)
    saved = dgmmcore.load(str(tmp_path / "bsds300-grown-3x2-n1200-s0-plus600-plus300.model.npz"))
    for a, b in zip(saved.transforms_, model.transforms_):
        np.testing.assert_array_equal(a, b)
    rows = json.loads((tmp_path / "bsds300.json").read_text())["models"]
    assert [(r["train_patches"], r["added_fresh_patches"]) for r in rows] == [
        (1200, None), (1800, [600]), (2100, [600, 300])]
    assert rows[2]["em_iterations"] == rows[1]["em_iterations"] + saved.n_iter_
    assert rows[2]["test_loglik"] == pytest.approx(model.score(test), abs=1e-9)
    bsds300_script.main(["gaps", "--models", "3,2", "--add-fresh", "600,300", *common])
    gaps = json.loads((tmp_path / "bsds300-gaps.json").read_text())["rows"]
    assert gaps[1]["model"] == "bsds300-grown-3x2-n1200-s0-plus600-plus300"


@pytest.mark.filterwarnings("ignore:EM did not converge")
def test_table1_add_fresh_then_soft_iterations_draw_the_fresh_rows_once(tmp_path,
                                                                        bsds300_script,
                                                                        monkeypatch):
    common = grown_run_options(tmp_path)
    bsds300_script.main(["table1", "--models", "3,2", *common])
    draws = []
    fresh_train = bsds300_script.fresh_train
    monkeypatch.setattr(bsds300_script, "fresh_train",
                        lambda *a: draws.append(a[1]) or fresh_train(*a))
    bsds300_script.main(["table1", "--models", "3,2", "--add-fresh", "600", "--soft-iters", "1",
                         "--truncation", "2", *common])
    assert draws == [600]  # the hard stage's rows go on to the truncated iteration

    # the same through the public API: the plus600 network, one truncated iteration on the
    # same 1800 rows from their paths in its last checkpoint
    X = load_bsds300(BSDS, "train", n_patches=1200, random_state=0)
    fresh = load_bsds300(BSDS, "train", n_patches=600, random_state=np.random.SeedSequence([0, 1]))
    model = dgmmcore.load(str(tmp_path / "bsds300-grown-3x2-n1200-s0-plus600.model.npz"))
    with np.load(tmp_path / "bsds300-grown-3x2-n1200-s0-plus600.ckpt.npz") as f:
        paths = np.stack(np.unravel_index(f["checkpoint_paths"], (3, 2)), axis=1)
    model.warm_start, model.max_iter, model.n_threads, model.truncation = True, 1, 1, 2
    model.fit(np.concatenate([X, fresh]), init_paths=paths, final_estep=False)
    soft = dgmmcore.load(
        str(tmp_path / "bsds300-grown-3x2-n1200-s0-plus600-trunc2-soft1.model.npz"))
    for a, b in zip(soft.transforms_, model.transforms_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    rows = json.loads((tmp_path / "bsds300.json").read_text())["models"]
    assert (rows[1]["train_patches"], rows[1]["soft_em_iterations"]) == (1800, 1)


@pytest.mark.filterwarnings("ignore:EM did not converge")
def test_table1_add_validation_images_trains_on_all_train_images(tmp_path, bsds300_script,
                                                                  monkeypatch):
    common = grown_run_options(tmp_path)
    bsds300_script.main(["table1", "--models", "3,2", *common])
    # a stage after --add-fresh needs that stage finished first
    with pytest.raises(SystemExit, match="--add-fresh 600"):
        bsds300_script.main(["table1", "--models", "3,2", "--add-fresh", "600",
                             "--add-validation-images", *common])
    bsds300_script.main(["table1", "--models", "3,2", "--add-validation-images", *common])

    # the same through the public API: the finished network continued on its 1200 patches of
    # the 180 train images and 1200 / 180 per image of the 20 validation images, 133 rows
    # drawn apart from the validation patches every run scores
    X = load_bsds300(BSDS, "train", n_patches=1200, random_state=0)
    extra = load_bsds300(BSDS, "validation", n_patches=133,
                         random_state=np.random.SeedSequence([0, 2]))
    scored = load_bsds300(BSDS, "validation", n_patches=300, random_state=0)
    assert not np.isin(extra[:, 0], np.concatenate([X, scored])[:, 0]).any()
    model = dgmmcore.load(str(tmp_path / "bsds300-grown-3x2-n1200-s0.model.npz"))
    with np.load(tmp_path / "bsds300-grown-3x2-n1200-s0.ckpt.npz") as f:
        old = np.stack(np.unravel_index(f["checkpoint_paths"], (3, 2)), axis=1)
    model.warm_start, model.max_iter, model.n_threads = True, 2, 1
    model.fit(np.concatenate([X, extra]), init_paths=np.concatenate([old, model.predict(extra)]))
    saved = dgmmcore.load(str(tmp_path / "bsds300-grown-3x2-n1200-s0-plusval133.model.npz"))
    for a, b in zip(saved.transforms_, model.transforms_):
        np.testing.assert_array_equal(a, b)

    rows = json.loads((tmp_path / "bsds300.json").read_text())["models"]
    assert [(r["train_patches"], r["added_validation_image_patches"], r["valid_loglik"])
            for r in rows][1] == (1333, 133, None)  # validation is no longer held out
    assert rows[0]["valid_loglik"] is not None
    assert rows[1]["em_iterations"] == rows[0]["em_iterations"] + saved.n_iter_
    test = load_bsds300(BSDS, "test", n_patches=300, random_state=0)
    assert rows[1]["test_loglik"] == pytest.approx(model.score(test), abs=1e-9)
    # the finished run is only scored again: its added rows are not drawn again
    def no_draw(*args):
        raise AssertionError("drew the added rows of a finished run")
    with monkeypatch.context() as patched:
        patched.setattr(bsds300_script, "fresh_validation_images", no_draw)
        bsds300_script.main(["table1", "--models", "3,2", "--add-validation-images", *common])
    again = json.loads((tmp_path / "bsds300.json").read_text())["models"]
    assert again[1]["test_loglik"] == rows[1]["test_loglik"]
    bsds300_script.main(["gaps", "--models", "3,2", "--add-validation-images", *common])
    gaps = json.loads((tmp_path / "bsds300-gaps.json").read_text())["rows"]
    assert gaps[0]["model"] == "bsds300-grown-3x2-n1200-s0-plusval133"

    # soft EM continued from it runs on the same 1333 rows, not on the --train ones
    bsds300_script.main(["table1", "--models", "3,2", "--add-validation-images",
                         "--soft-iters", "1", *common])
    model.estep, model.max_iter = "soft", 1
    model.fit(np.concatenate([X, extra]))
    soft = dgmmcore.load(str(tmp_path / "bsds300-grown-3x2-n1200-s0-plusval133-soft1.model.npz"))
    for a, b in zip(soft.transforms_, model.transforms_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)

    # truncated soft EM starts from the rows' paths in the hard run's checkpoint, and stops
    # after its M-step (the held-out scores measure it)
    bsds300_script.main(["table1", "--models", "3,2", "--add-validation-images",
                         "--soft-iters", "1", "--truncation", "2", *common])
    model = dgmmcore.load(str(tmp_path / "bsds300-grown-3x2-n1200-s0-plusval133.model.npz"))
    with np.load(tmp_path / "bsds300-grown-3x2-n1200-s0-plusval133.ckpt.npz") as f:
        last = np.stack(np.unravel_index(f["checkpoint_paths"], (3, 2)), axis=1)
    model.warm_start, model.max_iter, model.n_threads, model.truncation = True, 1, 1, 2
    model.fit(np.concatenate([X, extra]), init_paths=last, final_estep=False)
    trunc = dgmmcore.load(str(tmp_path / "bsds300-grown-3x2-n1200-s0-plusval133-trunc2-soft1"
                                         ".model.npz"))
    for a, b in zip(trunc.transforms_, model.transforms_):
        np.testing.assert_array_equal(a, b)
    assert len(trunc.history_) == 1  # no E-step after the M-step
    rows = json.loads((tmp_path / "bsds300.json").read_text())["models"]
    assert [r["truncation"] for r in rows if r["soft_em_iterations"]] == [None, 2]

    # a longer polish goes on from the finished one: two iterations in one go
    bsds300_script.main(["table1", "--models", "3,2", "--add-validation-images",
                         "--soft-iters", "2", "--truncation", "2", *common])
    model = dgmmcore.load(str(tmp_path / "bsds300-grown-3x2-n1200-s0-plusval133.model.npz"))
    model.warm_start, model.max_iter, model.n_threads, model.truncation = True, 2, 1, 2
    model.fit(np.concatenate([X, extra]), init_paths=last, final_estep=False)
    longer = dgmmcore.load(str(tmp_path / "bsds300-grown-3x2-n1200-s0-plusval133-trunc2-soft2"
                                          ".model.npz"))
    for a, b in zip(longer.transforms_, model.transforms_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert len(longer.history_) == 2
    # its first iteration is the finished polish's, timings included: not run again
    assert longer.history_[0] == trunc.history_[0]
    rows = json.loads((tmp_path / "bsds300.json").read_text())["models"]
    assert sorted(r["soft_em_iterations"] for r in rows if r["truncation"]) == [1, 2]

    # without the search: the candidates around the hard run's last paths
    bsds300_script.main(["table1", "--models", "3,2", "--add-validation-images",
                         "--soft-iters", "1", "--truncation", "2", "--no-search", *common])
    model = dgmmcore.load(str(tmp_path / "bsds300-grown-3x2-n1200-s0-plusval133.model.npz"))
    model.warm_start, model.max_iter, model.n_threads, model.truncation = True, 1, 1, 2
    model.warm_passes, model.n_restarts = 0, 0
    model.fit(np.concatenate([X, extra]), init_paths=last, final_estep=False)
    nosearch = dgmmcore.load(str(tmp_path / "bsds300-grown-3x2-n1200-s0-plusval133"
                                            "-trunc2-nosearch-soft1.model.npz"))
    for a, b in zip(nosearch.transforms_, model.transforms_):
        np.testing.assert_array_equal(a, b)
    assert (nosearch.warm_passes, nosearch.n_restarts) == (0, 0)
    rows = json.loads((tmp_path / "bsds300.json").read_text())["models"]
    assert [(r["soft_em_iterations"], r["truncation_search"]) for r in rows
            if r["truncation"]] == [(1, True), (2, True), (1, False)]

    # reusing the ranking on the second iteration (--rerank-every 2): its own tag and row
    bsds300_script.main(["table1", "--models", "3,2", "--add-validation-images",
                         "--soft-iters", "2", "--truncation", "2", "--no-search",
                         "--rerank-every", "2", *common])
    model = dgmmcore.load(str(tmp_path / "bsds300-grown-3x2-n1200-s0-plusval133.model.npz"))
    model.warm_start, model.max_iter, model.n_threads, model.truncation = True, 2, 1, 2
    model.warm_passes, model.n_restarts, model.rerank_every = 0, 0, 2
    model.fit(np.concatenate([X, extra]), init_paths=last, final_estep=False)
    reused = dgmmcore.load(str(tmp_path / "bsds300-grown-3x2-n1200-s0-plusval133"
                                          "-trunc2-nosearch-rerank2-soft2.model.npz"))
    for a, b in zip(reused.transforms_, model.transforms_):
        np.testing.assert_array_equal(a, b)
    assert reused.rerank_every == 2
    rows = json.loads((tmp_path / "bsds300.json").read_text())["models"]
    assert [r["rerank_every"] for r in rows if r["truncation"]][-1] == 2


@pytest.mark.filterwarnings("ignore:EM did not converge")
def test_warm_start_compares_random_and_exact_first_esteps(tmp_path, bsds300_script):
    bsds300_script.main(["table1", "--root", str(BSDS), "--train", "1200", "--test", "300",
                         "--iters", "2", "--models", "4,2", "--threads", "1",
                         "--work", str(tmp_path)])
    net = tmp_path / "bsds300-t1-4x2-n1200-s0-kmeans-layer1.model.npz"
    bsds300_script.main(["warm-start", "--root", str(BSDS), "--files", str(net), "--train",
                         "800", "--test", "300", "--iters", "1", "--threads", "1",
                         "--work", str(tmp_path)])
    row = json.loads((tmp_path / "bsds300-warm-start.json").read_text())["rows"][0]
    # the exact start's first objective: each fresh row's best path, by brute force with scipy
    X = load_bsds300(BSDS, "train", n_patches=800, random_state=2)
    weights, means, covs = dgmmcore.load(str(net)).to_gmm()
    best = np.max([np.log(w) + multivariate_normal(mu, S).logpdf(X)
                   for w, mu, S in zip(weights, means, covs)], axis=0)
    assert row["exact_objective"][0] == pytest.approx(best.mean(), abs=1e-9)
    assert row["random_objective"][0] <= best.mean() + 1e-9
    assert len(row["random_objective"]) == len(row["exact_objective"]) == 2


@pytest.mark.filterwarnings("ignore:EM did not converge")
def test_table1_with_more_iters_extends_a_finished_run(tmp_path, bsds300_script):
    def run(work, iters):
        bsds300_script.main(["table1", "--root", str(BSDS), "--train", "1200", "--test", "300",
                             "--iters", str(iters), "--models", "3,2", "--threads", "1",
                             "--work", str(work)])
        stem = "bsds300-t1-3x2-n1200-s0-kmeans-layer1.model.npz"
        return dgmmcore.load(str(work / stem))

    run(tmp_path / "a", 2)
    extended = run(tmp_path / "a", 4)  # resumes the 2-iteration run's last checkpoint
    direct = run(tmp_path / "b", 4)
    assert extended.n_iter_ == direct.n_iter_ == 4
    for a, b in zip(extended.transforms_ + extended.biases_, direct.transforms_ + direct.biases_):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="max_iter=4, not 3"):
        run(tmp_path / "a", 3)


@pytest.mark.filterwarnings("ignore:EM did not converge")
def test_augment_trains_on_mirrored_and_real_sets_and_pairs_them(tmp_path, bsds300_script):
    bsds300_script.main(["augment", "--root", str(BSDS), "--train", "300", "--test", "200",
                         "--iters", "2", "--models", "2", "--threads", "1",
                         "--work", str(tmp_path)])
    out = json.loads((tmp_path / "bsds300-augment.json").read_text())
    rows = {r["training_set"]: r for r in out["rows"]}
    assert {k: r["train_rows"] for k, r in rows.items()} == {
        "real n": 300, "real 2n": 600, "real 4n": 1200, "n + lr": 600,
        "n + lr, ud, rot180": 1200}
    assert rows["n + lr"]["distinct_patches"] == 300
    assert {(r["max_iter"], r["reg_covar"], r["train_dtype"]) for r in rows.values()} == {
        (2, 1e-6, "float64")}
    # the mirrored set's row: the same fit through the public API, paired against real 2n
    X = load_bsds300(BSDS, "train", n_patches=1200, random_state=0)
    valid = load_bsds300(BSDS, "validation", n_patches=200, random_state=0)
    fits = {}
    for name, train in (("n + lr", np.concatenate([X[:300], dgmmcore.datasets.symmetric_patches(
            X[:300], "lr")])), ("real 2n", X[:600])):
        fits[name] = DeepGMM(2, max_iter=2, random_state=0, n_threads=1).fit(train)
    diff = fits["n + lr"].score_samples(valid) - fits["real 2n"].score_samples(valid)
    assert rows["n + lr"]["valid_minus_real"] == pytest.approx(diff.mean(), abs=1e-9)
    assert rows["n + lr"]["valid_loglik"] == pytest.approx(fits["n + lr"].score(valid), abs=1e-9)


@pytest.mark.filterwarnings("ignore:EM did not converge")
def test_soft_vs_hard_continues_the_network_both_ways_and_pairs_the_scores(tmp_path,
                                                                          bsds300_script,
                                                                          monkeypatch):
    common = grown_run_options(tmp_path)
    bsds300_script.main(["table1", "--models", "3,2", *common])
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    script = importlib.import_module("soft_vs_hard")  # writes through bsds300's (patched) RESULTS
    net, ckpt = (tmp_path / f"bsds300-grown-3x2-n1200-s0.{k}.npz" for k in ("model", "ckpt"))
    options = ["--model", str(net), "--checkpoint", str(ckpt), "--train", "1200",
               "--test", "300", "--root", str(BSDS), "--threads", "1"]
    script.main(options + ["--arms", "hard,truncated", "--truncation", "2"])
    script.main(options + ["--arms", "soft"])  # adds its arm to the same row
    (row,) = json.loads((tmp_path / "bsds300-soft-vs-hard.json").read_text())["rows"]
    assert {"hard", "soft", "truncated2"} <= set(row)

    # the same through the public API
    X = load_bsds300(BSDS, "train", n_patches=1200, random_state=0)
    test = load_bsds300(BSDS, "test", n_patches=300, random_state=0)
    before = dgmmcore.load(str(net)).score_samples(test)
    with np.load(ckpt) as f:
        paths = np.stack(np.unravel_index(f["checkpoint_paths"], (3, 2)), axis=1)
    for arm, estep, truncation, init in (("hard", "heuristic", None, paths),
                                         ("soft", "soft", None, None),
                                         ("truncated2", "heuristic", 2, paths)):
        model = dgmmcore.load(str(net))
        model.warm_start, model.estep, model.max_iter, model.n_threads = True, estep, 1, 1
        model.truncation = truncation
        model.fit(X, init_paths=init)
        gain = model.score_samples(test) - before
        result = row[arm]
        assert result["test"] == pytest.approx(gain.mean(), abs=1e-12)
        assert result["test_stderr"] == pytest.approx(gain.std(ddof=1) / np.sqrt(300))
        assert result["objective"] == pytest.approx(model.objective_)
    assert row["before"]["test"] == pytest.approx(before.mean())

    # truncated without the search, reusing the ranking on every other E-step
    script.main(options + ["--arms", "reused", "--truncation", "2", "--no-search",
                           "--rerank-every", "2", "--iters", "2"])
    rows = json.loads((tmp_path / "bsds300-soft-vs-hard.json").read_text())["rows"]
    result = next(r for r in rows if r["iterations"] == 2)["truncated2-nosearch-rerank2"]
    model = dgmmcore.load(str(net))
    model.warm_start, model.max_iter, model.n_threads, model.truncation = True, 2, 1, 2
    model.warm_passes, model.n_restarts, model.rerank_every = 0, 0, 2
    model.fit(X, init_paths=paths)
    assert result["objectives"] == pytest.approx([h["objective"] for h in model.history_])
    assert result["test"] == pytest.approx((model.score_samples(test) - before).mean(),
                                           abs=1e-12)


@pytest.fixture
def continue_script(bsds300_script):
    """continue_network.py, sharing bsds300_script's module (and so its JSON folder)."""
    return importlib.import_module("continue_network")


@pytest.mark.filterwarnings("ignore:EM did not converge")
def test_published_network_goes_on_from_its_file_alone(tmp_path, bsds300_script,
                                                       continue_script):
    common = grown_run_options(tmp_path)
    net = tmp_path / "models" / "net.npz"
    with pytest.raises(SystemExit, match="train it first"):
        continue_script.main(["publish", "--out", str(net), "--models", "3,2", *common])
    bsds300_script.main(["table1", "--models", "3,2", *common])
    continue_script.main(["publish", "--out", str(net), "--models", "3,2", *common])

    # the parameters rounded to float32, the rows' recipe and the run's totals with them
    trained = dgmmcore.load(str(tmp_path / "bsds300-grown-3x2-n1200-s0.model.npz"))
    published = dgmmcore.load(str(net))
    for a, b in zip(published.transforms_ + published.biases_,
                    trained.transforms_ + trained.biases_):
        np.testing.assert_array_equal(a, b.astype(np.float32).astype(np.float64))
    first = json.loads((tmp_path / "bsds300.json").read_text())["models"][0]
    test = load_bsds300(BSDS, "test", n_patches=300, random_state=0)
    assert published.score(test) == pytest.approx(first["test_loglik"], abs=1e-4)

    # averaged over the symmetries of the square: the set the validation patches choose
    continue_script.main(["symmetrize", "--model", str(net), "--test", "300", "--threads", "1",
                          "--root", str(BSDS), "--out", str(tmp_path / "sym.npz")])
    valid = load_bsds300(BSDS, "validation", n_patches=300, random_state=0)
    row = json.loads((tmp_path / "bsds300.json").read_text())["models"][-1]
    by_valid = {tuple(s): dgmmcore.SymmetrizedModel(published, s).score(valid)
                for s in continue_script.SYMMETRY_SETS}
    chosen = max(by_valid, key=by_valid.get)
    assert tuple(row["symmetries"]) == chosen and row["start_file"] == "net"
    symmetric = dgmmcore.SymmetrizedModel(published, chosen)
    assert row["test_loglik"] == pytest.approx(symmetric.score(test), abs=1e-9)
    assert row["valid_loglik"] == pytest.approx(by_valid[chosen], abs=1e-9)
    whole = row["symmetry_sets"][-1]
    assert whole["test_gain"] == pytest.approx(
        dgmmcore.SymmetrizedModel(published).score(test) - published.score(test), abs=1e-9)
    assert dgmmcore.load(str(tmp_path / "sym.npz")).symmetries == chosen
    # beside the network's own row, not in its place
    assert json.loads((tmp_path / "bsds300.json").read_text())["models"][0] == first
    assert row["score_dtype"] == "float64"
    # scored in float32: what the network gives float32 patches, and close to float64
    continue_script.main(["symmetrize", "--model", str(net), "--test", "300", "--threads", "1",
                          "--root", str(BSDS), "--score-float32"])
    row32 = json.loads((tmp_path / "bsds300.json").read_text())["models"][-1]
    assert row32["score_dtype"] == "float32" and tuple(row32["symmetries"]) == chosen
    assert row32["test_loglik"] == pytest.approx(
        symmetric.score(test.astype(np.float32)), abs=1e-9)
    assert row32["test_loglik"] == pytest.approx(row["test_loglik"], abs=1e-3)
    assert row32["test_loglik"] != row["test_loglik"]  # the float32 scores were used

    # how new rows are to it: its own first rows, fresh draws of an unused stream, test
    # patches, each mirrored by hand, scored in float32
    continue_script.main(["novelty", "--model", str(net), "--rows", "200", "--threads", "1",
                          "--root", str(BSDS)])
    found = json.loads((tmp_path / "bsds300-novelty.json").read_text())["rows"]
    assert [(r["start_file"], r["rows"]) for r in found] == [("net", 200)]

    drawn = {"own": load_bsds300(BSDS, "train", n_patches=1200, random_state=0)[:200],
             "fresh": load_bsds300(BSDS, "train", n_patches=200,
                                   random_state=np.random.SeedSequence([0, 3])),
             "test": load_bsds300(BSDS, "test", n_patches=200, random_state=0)}
    want = {}
    for name, rows in drawn.items():
        want[name] = published.score_samples(rows.astype(np.float32))
        want[f"{name} lr"] = published.score_samples(by_hand(rows, "lr", 8).astype(np.float32))
    for name, s in want.items():  # the script mirrors the float32 rows: 1e-6 apart
        assert found[0]["means"][name] == pytest.approx(s.mean(), abs=1e-5), name
    assert found[0]["paired"]["own - own lr"][0] == pytest.approx(
        (want["own"] - want["own lr"]).mean(), abs=1e-5)
    with pytest.raises(SystemExit, match="--rows"):
        continue_script.main(["novelty", "--model", str(net), "--rows", "1201"])

    # continued elsewhere on its 1200 rows and 600 fresh ones (the draws a table1 chain with
    # --add-fresh 600 makes), every row from its exact best path, one truncated iteration
    work = tmp_path / "elsewhere"
    options = ["--model", str(net), "--add-fresh", "600", "--soft-iters", "1", "--truncation",
               "2", "--threads", "1", "--test", "300", "--root", str(BSDS), "--work", str(work)]
    continue_script.main(["continue", *options])
    X = np.concatenate([
        load_bsds300(BSDS, "train", n_patches=1200, random_state=0),
        load_bsds300(BSDS, "train", n_patches=600, random_state=np.random.SeedSequence([0, 1]))])
    reference = dgmmcore.load(str(net))
    reference.warm_start, reference.max_iter, reference.n_threads = True, 1, 1
    reference.truncation = 2
    reference.fit(X, init_paths=reference.predict(X), final_estep=False)
    saved = dgmmcore.load(str(work / "net-plus600-trunc2-soft1.model.npz"))
    for a, b in zip(saved.transforms_, reference.transforms_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert sorted(p.name for p in (work / "net-plus600-trunc2-soft1.start-paths").iterdir()) == [
        "0-1800.npy"]
    rows = json.loads((tmp_path / "bsds300.json").read_text())["models"]
    row = rows[-1]
    assert (row["start_file"], row["train_patches"], row["added_fresh_patches"]) == (
        "net", 1800, [600])
    assert (row["em_iterations"], row["soft_em_iterations"]) == (first["em_iterations"], 1)
    # the totals carried on: the published run's seconds plus this run's (its file's own)
    from dgmmcore._persistence import read_model_file
    own = read_model_file(str(work / "net-plus600-trunc2-soft1.model.npz"))[0]["fit_seconds"]
    assert row["fit_seconds"] == pytest.approx(first["fit_seconds"] + own, rel=1e-12)
    assert row["test_loglik"] == pytest.approx(reference.score(test), abs=1e-9)

    # the same command again scores the finished run (no second fit, one row), and can
    # publish it in turn: its recipe has the fresh stage, its totals this run's
    continue_script.main(["continue", *options, "--publish", str(tmp_path / "next.npz")])
    assert json.loads((tmp_path / "bsds300.json").read_text())["models"] == rows

    # which goes on with a hard iteration (the truncated settings of its file replaced)
    def hard_reference(path, rows):
        model = dgmmcore.load(str(path))
        model.warm_start, model.max_iter, model.n_threads, model.truncation = True, 1, 1, None
        return model.fit(rows, init_paths=model.predict(rows))

    hard = ["--model", str(tmp_path / "next.npz"), "--iters", "1", "--threads", "1", "--test",
            "300", "--root", str(BSDS), "--work", str(work)]
    continue_script.main(["continue", *hard])
    reference = hard_reference(tmp_path / "next.npz", X)
    saved = dgmmcore.load(str(work / "next-hard1.model.npz"))
    assert saved.truncation is None
    for a, b in zip(saved.transforms_, reference.transforms_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    last = json.loads((tmp_path / "bsds300.json").read_text())["models"][-1]
    assert (last["start_file"], last["train_patches"], last["added_fresh_patches"]) == (
        "next", 1800, [600])
    assert (last["em_iterations"], last["soft_em_iterations"]) == (first["em_iterations"] + 1, 1)

    with pytest.raises(SystemExit, match="no training-rows recipe"):
        continue_script.main(["continue", "--model",
                              str(tmp_path / "bsds300-grown-3x2-n1200-s0.model.npz"),
                              "--soft-iters", "1", "--work", str(work)])

    # the validation images added: 1800 rows / 180 per image of the 20, 200 rows of the seed's
    # third stream; trained on them, the row has no validation score
    where = ["--iters", "1", "--threads", "1", "--test", "300", "--root", str(BSDS),
             "--work", str(work)]
    continue_script.main(["continue", "--model", str(tmp_path / "next.npz"),
                          "--add-validation-images", *where,
                          "--publish", str(tmp_path / "val.npz")])
    extra = load_bsds300(BSDS, "validation", n_patches=200,
                         random_state=np.random.SeedSequence([0, 2]))
    reference = hard_reference(tmp_path / "next.npz", np.concatenate([X, extra]))
    saved = dgmmcore.load(str(work / "next-plusval200-hard1.model.npz"))
    for a, b in zip(saved.transforms_, reference.transforms_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    last = json.loads((tmp_path / "bsds300.json").read_text())["models"][-1]
    assert (last["train_patches"], last["added_validation_image_patches"],
            last["valid_loglik"]) == (2000, 200, None)
    assert read_model_file(str(tmp_path / "val.npz"))[0]["bsds300_rows"][
        "validation_images"] == 200
    with pytest.raises(SystemExit, match="validation images already"):
        continue_script.main(["continue", "--model", str(tmp_path / "val.npz"),
                              "--add-validation-images", *where])
    # fresh rows after them: the train stages keep their streams (the second is [seed, 1, 1])
    continue_script.main(["continue", "--model", str(tmp_path / "val.npz"),
                          "--add-fresh", "300", *where])
    fresh = load_bsds300(BSDS, "train", n_patches=300,
                         random_state=np.random.SeedSequence([0, 1, 1]))
    reference = hard_reference(tmp_path / "val.npz", np.concatenate([X, fresh, extra]))
    saved = dgmmcore.load(str(work / "val-plus300-hard1.model.npz"))
    for a, b in zip(saved.transforms_, reference.transforms_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    last = json.loads((tmp_path / "bsds300.json").read_text())["models"][-1]
    assert (last["train_patches"], last["added_fresh_patches"],
            last["added_validation_image_patches"]) == (2300, [600, 300], 200)

    # with --reuse-paths the file's rows start from the last paths of the run that wrote it
    # (its checkpoint, still in --work), the fresh ones from their exact best paths
    continue_script.main(["continue", "--model", str(tmp_path / "val.npz"), "--add-fresh",
                          "300", "--reuse-paths", *where])
    last_run = bsds300_script.checkpoint_paths(str(work / "next-plusval200-hard1.ckpt.npz"),
                                               (3, 2))
    start = dgmmcore.load(str(tmp_path / "val.npz"))
    assert np.any(last_run != start.predict(np.concatenate([X, extra])))
    init = np.concatenate([last_run[:1800], start.predict(fresh), last_run[1800:]])
    start.warm_start, start.max_iter, start.n_threads, start.truncation = True, 1, 1, None
    reference = start.fit(np.concatenate([X, fresh, extra]), init_paths=init)
    saved = dgmmcore.load(str(work / "val-plus300-reused-hard1.model.npz"))
    for a, b in zip(saved.transforms_, reference.transforms_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    last = json.loads((tmp_path / "bsds300.json").read_text())["models"][-1]
    assert (last["start_reused_rows"], last["train_patches"]) == (2000, 2300)
    # without the run's checkpoint every row is searched; another run's is refused
    recipe = read_model_file(str(tmp_path / "val.npz"))[0]["bsds300_rows"]
    elsewhere = argparse.Namespace(model=str(tmp_path / "val.npz"), work=str(tmp_path / "x"))
    assert continue_script.reuse_source(elsewhere, recipe) is None
    (tmp_path / "x").mkdir()
    shutil.copy(work / "val-plus300-hard1.ckpt.npz",
                tmp_path / "x" / "next-plusval200-hard1.ckpt.npz")
    with pytest.raises(SystemExit, match="parameters differ"):
        continue_script.reuse_source(elsewhere, recipe)

    # with --mirrored the fresh stage's draws are seen through the left-right mirror; its
    # published recipe says so, and a run from that file draws the same rows again
    continue_script.main(["continue", "--model", str(tmp_path / "val.npz"), "--add-fresh",
                          "300", "--mirrored", *where, "--publish", str(tmp_path / "lr.npz")])
    mirrored = by_hand(fresh, "lr", 8)
    assert not np.allclose(mirrored, fresh)
    lr_rows = np.concatenate([X, mirrored, extra])
    reference = hard_reference(tmp_path / "val.npz", lr_rows)
    saved = dgmmcore.load(str(work / "val-plus300lr-hard1.model.npz"))
    for a, b in zip(saved.transforms_, reference.transforms_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    last = json.loads((tmp_path / "bsds300.json").read_text())["models"][-1]
    assert (last["train_patches"], last["added_fresh_patches"], last["added_fresh_mirrored"]) == (
        2300, [600, 300], [False, True])
    assert read_model_file(str(tmp_path / "lr.npz"))[0]["bsds300_rows"]["mirrored"] == [
        False, True]
    assert "mirrored" not in read_model_file(str(tmp_path / "val.npz"))[0]["bsds300_rows"]
    # the unmirrored run of the same stage keeps its own row beside it
    rows_now = json.loads((tmp_path / "bsds300.json").read_text())["models"]
    assert [r.get("added_fresh_mirrored") for r in rows_now
            if r.get("start_file") == "val" and r["train_patches"] == 2300] == [
                None, [False, True]]
    continue_script.main(["continue", "--model", str(tmp_path / "lr.npz"), *where])
    reference = hard_reference(tmp_path / "lr.npz", lr_rows)
    saved = dgmmcore.load(str(work / "lr-hard1.model.npz"))
    for a, b in zip(saved.transforms_, reference.transforms_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    with pytest.raises(SystemExit, match="--mirrored mirrors the --add-fresh draws"):
        continue_script.main(["continue", "--model", str(tmp_path / "val.npz"), "--mirrored",
                              *where])

    # with --start-keep the rows start from the best path under their best top-layer node
    continue_script.main(["continue", "--model", str(tmp_path / "val.npz"), "--start-keep", "1",
                          *where])
    from dgmmcore._network import ravel_paths, unravel_paths
    from dgmmcore._node_search import NodeSearch
    start = dgmmcore.load(str(tmp_path / "val.npz"))
    trained_on = np.concatenate([X, extra])
    heuristic = NodeSearch(start._path_table(), keep=1).best_paths(trained_on, 1)[0]
    assert np.any(heuristic != ravel_paths(start.predict(trained_on), start.weights_.shape))
    start.warm_start, start.max_iter, start.n_threads, start.truncation = True, 1, 1, None
    reference = start.fit(trained_on, init_paths=unravel_paths(heuristic, start.weights_.shape))
    saved = dgmmcore.load(str(work / "val-start1nodes-hard1.model.npz"))
    for a, b in zip(saved.transforms_, reference.transforms_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    last = json.loads((tmp_path / "bsds300.json").read_text())["models"][-1]
    assert (last["start_keep_nodes"], last["train_patches"]) == (1, 2000)
    with pytest.raises(SystemExit, match="--start-keep"):
        continue_script.main(["continue", "--model", str(tmp_path / "val.npz"),
                              "--start-keep", "-1", *where])

    # with --widen-to the heaviest top node is split first, then every row starts from its
    # exact best path in the wider network; with --iters and --soft-iters a hard iteration
    # comes first and the truncated one starts from its last paths
    continue_script.main(["continue", "--model", str(tmp_path / "val.npz"), "--widen-to", "4,2",
                          *where, "--soft-iters", "1", "--truncation", "2"])
    start = dgmmcore.load(str(tmp_path / "val.npz")).widen((4, 2), random_state=0)
    start.max_iter, start.n_threads, start.truncation = 1, 1, None
    hard = start.fit(trained_on, init_paths=start.predict(trained_on), final_estep=False)
    last_paths = unravel_paths(hard._train_paths, (4, 2))
    hard.truncation = 2
    reference = hard.fit(trained_on, init_paths=last_paths, final_estep=False)
    saved = dgmmcore.load(str(work / "val-widen4x2-hard1-trunc2-soft1.model.npz"))
    assert saved.weights_.shape == (4, 2) and saved.truncation == 2
    for a, b in zip(saved.transforms_, reference.transforms_):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    last = json.loads((tmp_path / "bsds300.json").read_text())["models"][-1]
    assert (last["layers"], last["widened_from"], last["paths"]) == ([4, 2], [3, 2], 8)
    # val.npz's totals (one hard iteration more than the first row, next.npz's truncated one)
    # and this run's hard and truncated iterations
    assert (last["em_iterations"], last["soft_em_iterations"]) == (
        first["em_iterations"] + 2, 2)
    with pytest.raises(SystemExit, match="--widen-to"):
        continue_script.main(["continue", "--model", str(tmp_path / "val.npz"),
                              "--widen-to", "2,2", *where])


@pytest.fixture
def symmetric_script(bsds300_script, monkeypatch):
    return importlib.import_module("symmetric_training")  # writes through bsds300's RESULTS


@pytest.mark.filterwarnings("ignore:EM did not converge")
def test_symmetric_training_against_averaging_matches_the_library(tmp_path, symmetric_script):
    import copy
    from dgmmcore import SymmetrizedModel
    symmetric_script.main(["--root", str(BSDS), "--models", "3,2", "--train", "1500",
                           "--test", "300", "--iters", "3", "--rounds", "2", "--threads", "1",
                           "--work", str(tmp_path)])
    (row,) = json.loads((tmp_path / "bsds300-symmetric-training.json").read_text())["rows"]
    train = load_bsds300(BSDS, "train", n_patches=1500, random_state=0)
    valid = load_bsds300(BSDS, "validation", n_patches=300, random_state=0)
    test = load_bsds300(BSDS, "test", n_patches=300, random_state=0)
    plain = DeepGMM((3, 2), max_iter=3, random_state=0, n_threads=1).fit(train)
    continued = copy.deepcopy(plain)
    continued.warm_start, continued.max_iter = True, 2
    averaged = SymmetrizedModel(continued.fit(train))
    symmetric = SymmetrizedModel(copy.deepcopy(plain)).fit(train, n_rounds=2, tol=0.0,
                                                            random_state=0)
    for name, model in (("plain", plain), ("averaged", averaged), ("symmetric", symmetric)):
        assert row[f"{name}_test_loglik"] == pytest.approx(model.score(test), rel=1e-9)
        assert row[f"{name}_valid_loglik"] == pytest.approx(model.score(valid), rel=1e-9)
    gain = symmetric.score_samples(test) - averaged.score_samples(test)
    assert row["gain_test"] == pytest.approx(gain.mean(), rel=1e-6, abs=1e-9)
    assert row["gain_test_stderr"] == pytest.approx(gain.std(ddof=1) / np.sqrt(300), rel=1e-6)
    assert row["symmetric_objective"] == pytest.approx([r["objective"]
                                                        for r in symmetric.history_])
    assert row["symmetric_changed"][0] is None and row["rounds"] == 2


@pytest.mark.filterwarnings("ignore:EM did not converge")
def test_symmetric_training_from_a_published_network(tmp_path, symmetric_script):
    from dgmmcore import SymmetrizedModel
    train = load_bsds300(BSDS, "train", n_patches=1200, random_state=0)
    DeepGMM((4, 2), max_iter=2, random_state=1, n_threads=1).fit(train).save(
        str(tmp_path / "net.npz"))
    symmetric_script.main(["--root", str(BSDS), "--start", str(tmp_path / "net.npz"),
                           "--train", "1200", "--test", "300", "--rounds", "2",
                           "--cold-restarts", "2", "--restarts", "0", "--threads", "1",
                           "--work", str(tmp_path)])
    (row,) = json.loads((tmp_path / "bsds300-symmetric-training.json").read_text())["rows"]
    test = load_bsds300(BSDS, "test", n_patches=300, random_state=0)
    network = dgmmcore.load(str(tmp_path / "net.npz"))
    network.n_restarts = 0
    symmetric = SymmetrizedModel(network)
    before = symmetric.score_samples(test)
    rng = np.random.default_rng(0)
    for _ in range(2):
        symmetric.fit(train, n_rounds=1, search="heuristic", cold_restarts=2,
                      final_search=False, random_state=rng)
    after = symmetric.score_samples(test)
    assert row["averaged_test_loglik"] == pytest.approx(before.mean(), rel=1e-9)
    assert row["symmetric_test_loglik"] == pytest.approx(after.mean(), rel=1e-9)
    assert row["gain_test"] == pytest.approx((after - before).mean(), rel=1e-6, abs=1e-9)
    assert row["start_file"] == "net.npz" and row["cold_restarts"] == 2
    saved = dgmmcore.load(str(tmp_path / "net-symmetric-n1200-s0.model.npz"))
    np.testing.assert_allclose(saved.score_samples(test), after, rtol=1e-9)
    assert len(saved.history_) == 2 and saved.history_[1]["round"] == 1


@pytest.mark.filterwarnings("ignore:EM did not converge")
def test_symmetric_training_hard_rounds_against_the_network_alone(tmp_path, symmetric_script):
    import copy
    from dgmmcore import SymmetrizedModel
    train = load_bsds300(BSDS, "train", n_patches=1200, random_state=0)
    DeepGMM((4, 2), max_iter=2, truncation=2, rerank_every=2, random_state=1,
            n_threads=1).fit(train).save(str(tmp_path / "net.npz"))
    symmetric_script.main(["--root", str(BSDS), "--start", str(tmp_path / "net.npz"),
                           "--train", "1200", "--test", "300", "--rounds", "2", "--hard",
                           "--cold-restarts", "2", "--restarts", "0", "--threads", "1",
                           "--work", str(tmp_path)])
    (row,) = json.loads((tmp_path / "bsds300-symmetric-training.json").read_text())["rows"]
    test = load_bsds300(BSDS, "test", n_patches=300, random_state=0)
    network = dgmmcore.load(str(tmp_path / "net.npz"))
    start = SymmetrizedModel(network).score_samples(test)
    # by hand: hard EM (no truncation, one warm pass), the control over the identity alone
    network.n_restarts, network.truncation, network.rerank_every = 0, None, 1
    network.warm_passes = 1
    trained = {}
    for name, symmetries in (("alone", ("identity",)), ("symmetric", None)):
        model = SymmetrizedModel(copy.deepcopy(network), *([symmetries] if symmetries else []))
        rng = np.random.default_rng(0)
        for _ in range(2):
            model.fit(train, n_rounds=1, search="heuristic", cold_restarts=2,
                      final_search=False, random_state=rng)
        trained[name] = SymmetrizedModel(model.model).score_samples(test)
    assert row["hard"] is True
    assert row["start_averaged_test_loglik"] == pytest.approx(start.mean(), rel=1e-9)
    assert row["averaged_test_loglik"] == pytest.approx(trained["alone"].mean(), rel=1e-9)
    assert row["symmetric_test_loglik"] == pytest.approx(trained["symmetric"].mean(), rel=1e-9)
    gain = trained["symmetric"] - trained["alone"]
    assert row["gain_test"] == pytest.approx(gain.mean(), rel=1e-6, abs=1e-9)
    for stem in ("net-hard-alone", "net-hard-symmetric"):
        saved = dgmmcore.load(str(tmp_path / f"{stem}-n1200-s0.model.npz"))
        assert saved.model.truncation is None and len(saved.history_) == 2
    alone = dgmmcore.load(str(tmp_path / "net-hard-alone-n1200-s0.model.npz"))
    assert list(alone.symmetries) == ["identity"]
    np.testing.assert_allclose(SymmetrizedModel(alone.model).score_samples(test),
                               trained["alone"], rtol=1e-9)
