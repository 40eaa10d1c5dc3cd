"""The dgmm command end to end on small data, in-process and as a console script."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from dgmmcore import load
from dgmmcore.cli import main, patch_grid


def two_clusters_npy(tmp_path, seed):
    """600 rows of two 3-d clusters, saved as x.npy; returns (rows, path)."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(0, 1, (300, 3)), rng.normal(4, 0.5, (300, 3))])
    np.save(tmp_path / "x.npy", X)
    return X, str(tmp_path / "x.npy")


def fit_args(npy, *extra):
    """`dgmm fit --data npy` with the seed and thread count that fit_like_the_command uses."""
    return ["fit", "--data", npy, "--seed", "0", "--threads", "1", *extra]


def assert_same_transforms(got, want):
    for g, w in zip(got.transforms_, want.transforms_):
        np.testing.assert_array_equal(g, w)


def fit_like_the_command(X, model=None, dtype=np.float64, **kwargs):
    """The fit `dgmm fit --data X --seed 0 --threads 1 --iters 2` makes, done in Python on the
    command's training rows: ``model`` (e.g. a grown one) or a new DeepGMM(**kwargs)."""
    from dgmmcore import DeepGMM
    from dgmmcore.cli import _split_rows
    train, _ = _split_rows(X, 0.1, 0)
    if model is None:
        model = DeepGMM(random_state=0, **kwargs)
    model.max_iter, model.n_threads = 2, 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged in 2 iterations
        return model.fit(train.astype(dtype))


def test_fit_score_sample_info_on_npy(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (400, 3)), rng.normal(4, 0.5, (400, 3))])
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / "m.npz"
    assert main(["fit", "--data", str(tmp_path / "x.npy"), "--layers", "2,2", "--iters", "3",
                 "--out", str(out), "--seed", "1", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "held-out log-likelihood" in text and "iter    1" in text and "ETA" in text
    model = load(out)
    assert model.layers == (2, 2)
    assert main(["score", str(out), str(tmp_path / "x.npy")]) == 0
    s = capsys.readouterr().out
    assert f"{model.score(X):.4f}" in s
    assert f"BIC {model.bic(X):.2f}, AIC {model.aic(X):.2f}" in s
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "layers: (2, 2) (4 paths)" in text and "'random_state': 1" in text
    assert (f"trained {model.n_iter_} iterations, converged={model.converged_}, final "
            f"objective {model.history_[-1]['objective']:.4f}") in text
    assert main(["sample", str(out), "-n", "5", "--npy", str(tmp_path / "s.npy"),
                 "--seed", "0"]) == 0
    assert np.load(tmp_path / "s.npy").shape == (5, 3)
    # resume continues from the saved model
    assert main(["fit", "--data", str(tmp_path / "x.npy"), "--iters", "1", "--resume", str(out),
                 "--out", str(tmp_path / "m2.npz"), "--seed", "1"]) == 0
    assert load(tmp_path / "m2.npz").layers == (2, 2)
    # a checkpoint resumes its run and ends where the uninterrupted fit ends
    ck = tmp_path / "ck.npz"
    args = ["fit", "--data", str(tmp_path / "x.npy"), "--layers", "2,2", "--seed", "1"]
    assert main(args + ["--iters", "2", "--checkpoint", str(ck),
                        "--out", str(tmp_path / "a.npz")]) == 0
    assert main(args + ["--iters", "4", "--resume", str(ck), "--out", str(tmp_path / "b.npz")]) == 0
    assert main(args + ["--iters", "4", "--out", str(tmp_path / "c.npz")]) == 0
    b, c = load(tmp_path / "b.npz"), load(tmp_path / "c.npz")
    for x, y in zip(b.transforms_, c.transforms_):
        np.testing.assert_array_equal(x, y)


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["score", str(tmp_path / "missing.npz"), "x.npy"]) == 2
    assert "error" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", "--layers", "2,0"])


def test_patch_grid_restores_dropped_pixel():
    X = np.random.default_rng(0).standard_normal((4, 63))
    img = patch_grid(X)
    assert img.dtype == np.uint8 and img.shape == (2 * 9 + 1, 2 * 9 + 1)
    with pytest.raises(ValueError):
        patch_grid(np.zeros((2, 10)))


def test_default_fit_runs_as_console_module(tmp_path):
    """`python -m dgmmcore fit` on the embedded data (few rows and iterations to stay quick)."""
    import dgmmcore
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(dgmmcore.__file__)))
    res = subprocess.run([sys.executable, "-m", "dgmmcore", "fit", "--iters", "1", "--n-patches",
                          "3000", "--layers", "3,2,2", "--out", str(tmp_path / "d.npz")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600, env=env)
    assert res.returncode == 0, res.stderr
    assert "embedded CC0 image patches" in res.stdout and "nats" in res.stdout
    assert load(tmp_path / "d.npz").n_features_in_ == 63


def test_denoise_and_inpaint_commands(tmp_path, capsys):
    Image = pytest.importorskip("PIL.Image")
    from dgmmcore import DeepGMM
    rng = np.random.default_rng(0)
    P = rng.standard_normal((400, 63)) * 0.05
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        DeepGMM((2, 2), max_iter=2, random_state=0).fit(P).save(tmp_path / "p.npz")
    yy, xx = np.mgrid[0:24, 0:24]
    clean = (128 + 50 * np.sin(0.3 * xx)).astype(np.uint8)
    noisy = np.clip(clean + rng.normal(0, 15, clean.shape), 0, 255).astype(np.uint8)
    Image.fromarray(clean).save(tmp_path / "clean.png")
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    Image.fromarray(((rng.random(clean.shape) < 0.3) * 255).astype(np.uint8)).save(
        tmp_path / "m.png")
    assert main(["denoise", str(tmp_path / "p.npz"), str(tmp_path / "noisy.png"), "--sigma", "15",
                 "-o", str(tmp_path / "d.png"), "--clean", str(tmp_path / "clean.png")]) == 0
    assert "PSNR" in capsys.readouterr().out
    assert np.asarray(Image.open(tmp_path / "d.png")).shape == (24, 24)
    assert main(["inpaint", str(tmp_path / "p.npz"), str(tmp_path / "clean.png"),
                 str(tmp_path / "m.png"), "-o", str(tmp_path / "i.png")]) == 0
    assert np.asarray(Image.open(tmp_path / "i.png")).shape == (24, 24)


def test_fit_grows_a_fitted_gmm(tmp_path, capsys):
    X, npy = two_clusters_npy(tmp_path, 1)
    data = fit_args(npy)
    gmm_path, deep_path = tmp_path / "gmm.npz", tmp_path / "deep.npz"
    assert main(data + ["--layers", "3", "--iters", "3", "--out", str(gmm_path)]) == 0
    assert main(data + ["--layers", "3,2", "--iters", "2", "--grow-from", str(gmm_path),
                        "--out", str(deep_path)]) == 0
    assert "growing" in capsys.readouterr().out
    gmm, deep = load(gmm_path), load(deep_path)
    assert deep.layers == (3, 2) and deep.n_iter_ == 2
    # the same growth in Python, on the command's training rows, makes the same model
    assert_same_transforms(deep, fit_like_the_command(X, gmm.deepen((2,), random_state=0)))
    assert main(data + ["--layers", "4,2", "--grow-from", str(gmm_path)]) == 2
    assert "must add layers" in capsys.readouterr().err


def test_fit_widens_a_fitted_network(tmp_path, capsys):
    X, npy = two_clusters_npy(tmp_path, 1)
    data = fit_args(npy)
    base_path, wide_path = tmp_path / "base.npz", tmp_path / "wide.npz"
    assert main(data + ["--layers", "2,2", "--iters", "3", "--out", str(base_path)]) == 0
    assert main(data + ["--layers", "3,2", "--iters", "2", "--widen-from", str(base_path),
                        "--out", str(wide_path)]) == 0
    assert "widening" in capsys.readouterr().out
    base, wide = load(base_path), load(wide_path)
    assert wide.layers == (3, 2) and wide.n_iter_ == 2
    # the same widening in Python, on the command's training rows, makes the same model
    assert_same_transforms(wide, fit_like_the_command(X, base.widen((3, 2), random_state=0)))
    assert main(data + ["--layers", "3", "--widen-from", str(base_path)]) == 2
    assert "none narrower" in capsys.readouterr().err


@pytest.mark.parametrize("option, attr, value, text", [
    ("--reg-covar", "reg_covar", 0.05, "0.05"), ("--truncation", "truncation", 2, "2")])
def test_fit_option_reaches_the_model(tmp_path, capsys, option, attr, value, text):
    X, npy = two_clusters_npy(tmp_path, 2)
    data = fit_args(npy, "--layers", "3,2", "--iters", "2")
    assert main(data + [option, text, "--out", str(tmp_path / "r.npz")]) == 0
    got = load(tmp_path / "r.npz")
    assert getattr(got, attr) == value
    assert_same_transforms(got, fit_like_the_command(X, layers=(3, 2), **{attr: value}))
    # a checkpoint keeps its own; a warm start takes the new value
    ck = tmp_path / "ck.npz"
    assert main(data + ["--checkpoint", str(ck), "--out", str(tmp_path / "a.npz")]) == 0
    assert main(data + ["--resume", str(ck), option, text, "--iters", "3"]) == 2
    assert f"continues its run with {attr}" in capsys.readouterr().err
    assert main(data + ["--resume", str(tmp_path / "a.npz"), option, text,
                        "--out", str(tmp_path / "w.npz")]) == 0
    assert getattr(load(tmp_path / "w.npz"), attr) == value


def test_fit_no_search_reaches_the_model(tmp_path, capsys):
    X, npy = two_clusters_npy(tmp_path, 2)
    data = fit_args(npy, "--layers", "3,2", "--iters", "2", "--truncation", "2")
    assert main(data + ["--no-search", "--out", str(tmp_path / "n.npz")]) == 0
    assert "without the search" in capsys.readouterr().out
    got = load(tmp_path / "n.npz")
    assert (got.warm_passes, got.n_restarts) == (0, 0)
    assert_same_transforms(got, fit_like_the_command(X, layers=(3, 2), truncation=2,
                                                     warm_passes=0, n_restarts=0))
    ck = tmp_path / "ck.npz"
    assert main(data + ["--checkpoint", str(ck), "--out", str(tmp_path / "a.npz")]) == 0
    assert main(data + ["--resume", str(ck), "--no-search", "--iters", "3"]) == 2
    assert "continues its run with the search" in capsys.readouterr().err
    assert main(fit_args(npy, "--layers", "3,2", "--no-search")) == 2
    assert "--no-search needs --truncation" in capsys.readouterr().err
    assert main(data + ["--estep", "full", "--no-search"]) == 2
    assert "--estep full searches every path" in capsys.readouterr().err


def test_fit_rerank_every_reaches_the_model(tmp_path, capsys):
    X, npy = two_clusters_npy(tmp_path, 2)
    data = fit_args(npy, "--layers", "3,2", "--iters", "2", "--truncation", "2", "--no-search")
    assert main(data + ["--rerank-every", "2", "--out", str(tmp_path / "r.npz")]) == 0
    assert "ranked every 2 E-steps" in capsys.readouterr().out
    got = load(tmp_path / "r.npz")
    assert got.rerank_every == 2
    assert_same_transforms(got, fit_like_the_command(X, layers=(3, 2), truncation=2,
                                                     warm_passes=0, n_restarts=0,
                                                     rerank_every=2))
    assert main(fit_args(npy, "--layers", "3,2", "--rerank-every", "2")) == 2
    assert "needs truncation" in capsys.readouterr().err


def test_fit_bad_reg_covar_and_truncation_are_reported(tmp_path, capsys):
    _, npy = two_clusters_npy(tmp_path, 2)
    data = fit_args(npy, "--layers", "3,2", "--iters", "2")
    assert main(data + ["--reg-covar", "-1"]) == 2
    assert "reg_covar" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(data + ["--truncation", "0"])
    assert "--truncation" in capsys.readouterr().err


def test_fit_init_layer_reaches_the_model(tmp_path, capsys):
    X, npy = two_clusters_npy(tmp_path, 4)
    data = fit_args(npy, "--layers", "3,2", "--iters", "2")
    assert main(data + ["--init-layer", "-1", "--out", str(tmp_path / "i.npz")]) == 0
    got = load(tmp_path / "i.npz")
    assert got.init_layer == -1
    last, widest = (fit_like_the_command(X, layers=(3, 2), init_layer=j) for j in (-1, None))
    assert_same_transforms(got, last)
    assert any(not np.array_equal(g, w) for g, w in zip(got.transforms_, widest.transforms_))
    assert main(data + ["--init-layer", "2"]) == 2
    assert "init_layer=2 is not a layer" in capsys.readouterr().err
    assert main(data + ["--init-layer", "0", "--resume", str(tmp_path / "i.npz")]) == 2
    assert "fresh fit" in capsys.readouterr().err


def test_fit_float32_trains_on_float32_rows(tmp_path):
    X, npy = two_clusters_npy(tmp_path, 3)
    assert main(fit_args(npy, "--layers", "3,2", "--iters", "2", "--float32",
                         "--out", str(tmp_path / "f.npz"))) == 0
    got = load(tmp_path / "f.npz")
    fits = {dtype: fit_like_the_command(X, layers=(3, 2), dtype=dtype)
            for dtype in (np.float32, np.float64)}
    for g, w in zip(got.transforms_, fits[np.float32].transforms_):
        assert g.dtype == np.float64
        np.testing.assert_array_equal(g, w)
    # and it is a float32 fit, not the float64 one
    assert any(not np.array_equal(g, w)
               for g, w in zip(got.transforms_, fits[np.float64].transforms_))


def test_data_that_is_not_a_npy_array_is_named(tmp_path, capsys):
    X, npy = two_clusters_npy(tmp_path, 5)
    assert main(fit_args(npy, "--layers", "2", "--iters", "1",
                         "--out", str(tmp_path / "m.npz"))) == 0
    capsys.readouterr()
    model = str(tmp_path / "m.npz")
    # the arguments swapped, an .npz archive renamed .npy, a .npy of pickled objects
    np.savez(tmp_path / "renamed.npz", x=X)
    os.replace(tmp_path / "renamed.npz", tmp_path / "renamed.npy")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for data, why in ((model, "must be a folder of images or a .npy file"),
                      (str(tmp_path / "renamed.npy"), "an .npz archive, not a .npy array"),
                      (str(tmp_path / "objects.npy"), "holds Python objects"),
                      (str(tmp_path / "absent.npy"), "no such file or folder")):
        assert main(["score", model, data]) == 2
        assert why in capsys.readouterr().err
    assert main(fit_args(str(tmp_path / "objects.npy"))) == 2
    assert "--data" in capsys.readouterr().err


def test_outputs_are_checked_before_the_fit(tmp_path, capsys):
    _, npy = two_clusters_npy(tmp_path, 6)
    for option, path, why in (("--out", tmp_path, "is a folder"),
                              ("--out", tmp_path / "no" / "m.npz", "does not exist"),
                              ("--checkpoint", tmp_path, "is a folder")):
        assert main(fit_args(npy, "--layers", "2", "--iters", "1", option, str(path))) == 2
        out, err = capsys.readouterr()
        assert why in err and option in err
        assert "fit:" not in out  # refused before training, not after
    with pytest.raises(SystemExit):
        main(fit_args(npy, "--symmetric-rounds", "1", "--symmetries", "identity,foo"))
    assert "unknown symmetries ['foo']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(fit_args(npy, "--seed", "-1"))
    assert "non-negative integer" in capsys.readouterr().err


def test_sample_writes_the_file_it_names(tmp_path, capsys):
    _, npy = two_clusters_npy(tmp_path, 7)
    assert main(fit_args(npy, "--layers", "2", "--iters", "1",
                         "--out", str(tmp_path / "m.npz"))) == 0
    assert main(["sample", str(tmp_path / "m.npz"), "-n", "4", "--seed", "1",
                 "--npy", str(tmp_path / "drawn")]) == 0
    drawn = np.load(tmp_path / "drawn")  # no .npy appended
    want, _ = load(tmp_path / "m.npz").sample(4, random_state=1)
    np.testing.assert_array_equal(drawn, want)
    assert not (tmp_path / "drawn.npy").exists()


def test_restoration_outputs_and_clean_image_are_checked_first(tmp_path, capsys):
    Image = pytest.importorskip("PIL.Image")
    from dgmmcore import DeepGMM
    rng = np.random.default_rng(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        DeepGMM((2,), max_iter=2, random_state=0).fit(
            rng.standard_normal((200, 63)) * 0.05).save(tmp_path / "p.npz")
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (12, 16), dtype=np.uint8)).save(tmp_path / "b.png")
    denoise = ["denoise", str(tmp_path / "p.npz"), str(tmp_path / "a.png"), "--sigma", "10"]
    for out, why in (("o.xyz", "unknown image extension"), ("no/o.png", "does not exist")):
        assert main(denoise + ["-o", str(tmp_path / out)]) == 2
        out_text, err = capsys.readouterr()
        assert why in err and "denoised" not in out_text
    assert main(denoise + ["-o", str(tmp_path / "o.png"), "--clean", str(tmp_path / "b.png")]) == 2
    assert "--clean" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()
    assert main(["inpaint", str(tmp_path / "p.npz"), str(tmp_path / "a.png"),
                 str(tmp_path / "a.png"), "-o", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
