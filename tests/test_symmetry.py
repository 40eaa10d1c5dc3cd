"""A patch model averaged over symmetries of the square, against explicit pixel maps and scipy."""
import itertools

import numpy as np
import pytest
from scipy.special import logsumexp

import dgmmcore
from dgmmcore import DeepGMM, NotFittedError, SymmetrizedModel
from dgmmcore.cli import main as dgmm
from dgmmcore.symmetry import SQUARE_SYMMETRIES, apply_symmetry, inverse_symmetry
from _reference import logpdf, path_gaussians, random_params

# Each symmetry as the pixel it takes (i, j) from, in an s x s patch: written out by hand,
# apart from the array operations the library uses.
SOURCE = {
    "identity": lambda i, j, s: (i, j),
    "lr": lambda i, j, s: (i, s - 1 - j),
    "ud": lambda i, j, s: (s - 1 - i, j),
    "rot90": lambda i, j, s: (j, s - 1 - i),         # a quarter turn anticlockwise
    "rot180": lambda i, j, s: (s - 1 - i, s - 1 - j),
    "rot270": lambda i, j, s: (s - 1 - j, i),
    "transpose": lambda i, j, s: (j, i),
    "antitranspose": lambda i, j, s: (s - 1 - j, s - 1 - i),
}


def by_hand(X, kind, side):
    """Rows of side x side patches, mean removed and last pixel dropped, seen through kind."""
    full = np.concatenate([X, -X.sum(axis=1, keepdims=True)], axis=1)
    out = np.empty_like(full)
    for i, j in itertools.product(range(side), repeat=2):
        a, b = SOURCE[kind](i, j, side)
        out[:, i * side + j] = full[:, a * side + b]
    return out[:, :-1]


def make(layers, D, seed=0):
    A, b, w = random_params(layers, D, np.random.default_rng(seed))
    return DeepGMM.from_params(A, b, w, n_threads=1), (A, b, w)


def test_the_maps_are_the_eight_symmetries_of_the_square():
    X = np.random.default_rng(0).standard_normal((50, 15))  # 4x4 patches, last pixel dropped
    seen = {}
    for kind in SQUARE_SYMMETRIES:
        got = apply_symmetry(X, kind)
        np.testing.assert_array_equal(got, by_hand(X, kind, 4))
        np.testing.assert_allclose(apply_symmetry(got, inverse_symmetry(kind)), X, atol=1e-12)
        # volume-preserving on the 15 coordinates: p(g x) is a density again
        matrix = apply_symmetry(np.eye(15), kind)
        assert abs(np.linalg.det(matrix)) == pytest.approx(1.0, abs=1e-12)
        seen[kind] = got
    # a group: any two in turn are one of the eight
    for g, h in itertools.product(SQUARE_SYMMETRIES, repeat=2):
        both = apply_symmetry(apply_symmetry(X, g), h)
        assert sum(np.allclose(both, seen[k], atol=1e-12) for k in SQUARE_SYMMETRIES) == 1


@pytest.mark.parametrize("symmetries", [SQUARE_SYMMETRIES, ("lr",), ("identity", "rot90"),
                                        ("ud", "transpose", "antitranspose")])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_score_samples_is_the_density_averaged_over_the_symmetries(symmetries, dtype):
    model, params = make((3, 2), 8)  # 3x3 patches, last pixel dropped
    X, _ = model.sample(400, random_state=1)
    X += np.random.default_rng(2).normal(scale=0.3, size=X.shape)  # not only the model's own
    X = X.astype(dtype).astype(np.float64)
    each = np.stack([logpdf(by_hand(X, g, 3), *params) for g in symmetries])
    reference = logsumexp(each, axis=0) - np.log(len(symmetries))
    symmetric = SymmetrizedModel(model, symmetries)
    got = symmetric.score_samples(X.astype(dtype))
    tol = dict(rtol=1e-10, atol=1e-9) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-3)
    np.testing.assert_allclose(got, reference, **tol)
    assert symmetric.score(X.astype(dtype)) == pytest.approx(got.mean())
    assert symmetric.n_parameters() == model.n_parameters()
    assert symmetric.layers == (3, 2, len(symmetries))


def test_the_averaged_density_integrates_to_one_and_is_symmetric():
    model, _ = make((2, 2), 3, seed=4)  # 2x2 patches, last pixel dropped: 3 dims
    symmetric = SymmetrizedModel(model)
    draws, _ = model.sample(20_000, random_state=0)
    half = 1.2 * np.abs(draws).max()
    ticks = np.linspace(-half, half, 121)
    grid = np.stack(np.meshgrid(ticks, ticks, ticks, indexing="ij"), axis=-1).reshape(-1, 3)
    cell = (ticks[1] - ticks[0]) ** 3
    assert np.exp(symmetric.score_samples(grid)).sum() * cell == pytest.approx(1.0, abs=5e-3)
    # symmetric under every symmetry of the square; the network alone is not
    X = draws[:300]
    for g in SQUARE_SYMMETRIES:
        np.testing.assert_allclose(symmetric.score_samples(apply_symmetry(X, g)),
                                   symmetric.score_samples(X), rtol=1e-10, atol=1e-10)
    assert not np.allclose(model.score_samples(apply_symmetry(X, "lr")), model.score_samples(X))


def test_samples_follow_the_averaged_mixture():
    model, params = make((2, 2), 3, seed=5)
    symmetric = SymmetrizedModel(model, ("identity", "lr", "rot90"))
    X, paths = symmetric.sample(300_000, random_state=0)
    again, paths_again = symmetric.sample(300_000, random_state=0)
    np.testing.assert_array_equal(X, again)
    np.testing.assert_array_equal(paths, paths_again)
    assert paths.shape == (300_000, 3) and set(np.unique(paths[:, 2])) == {0, 1, 2}
    # the mixture's moments: component p seen through g^-1 (a linear map M: mean M mu, cov
    # M Sigma M^T), each with weight w_p / |G|
    w, means, covs = path_gaussians(*params)
    first, second = np.zeros(3), np.zeros((3, 3))
    for g in symmetric.symmetries:
        M = by_hand(np.eye(3), inverse_symmetry(g), 2).T  # x -> M x
        for wp, mu, cov in zip(w, means, covs):
            m = M @ mu
            first += wp * m / 3
            second += wp * (M @ cov @ M.T + np.outer(m, m)) / 3
    np.testing.assert_allclose(X.mean(axis=0), first, atol=0.01)
    np.testing.assert_allclose(X.T @ X / len(X), second, atol=0.02)


def test_save_load_and_the_command_line(tmp_path, capsys):
    model, _ = make((3, 2), 8)
    model.save(tmp_path / "net.npz")
    assert dgmm(["symmetrize", str(tmp_path / "net.npz"), "--symmetries", "lr,identity",
                 "-o", str(tmp_path / "sym.npz")]) == 0
    loaded = dgmmcore.load(tmp_path / "sym.npz")
    assert isinstance(loaded, SymmetrizedModel) and loaded.symmetries == ("lr", "identity")
    X, _ = model.sample(200, random_state=3)
    expected = SymmetrizedModel(model, ("lr", "identity")).score_samples(X)
    np.testing.assert_array_equal(loaded.score_samples(X), expected)
    np.save(tmp_path / "rows.npy", X)
    capsys.readouterr()
    assert dgmm(["score", str(tmp_path / "sym.npz"), str(tmp_path / "rows.npy")]) == 0
    assert f"mean log-likelihood {expected.mean():.4f}" in capsys.readouterr().out
    assert dgmm(["info", str(tmp_path / "sym.npz")]) == 0
    assert "averaged over 2 symmetries of the square: lr, identity (12 paths)" in (
        capsys.readouterr().out)
    assert dgmm(["sample", str(tmp_path / "sym.npz"), "-n", "5", "--seed", "1",
                 "--npy", str(tmp_path / "s.npy")]) == 0
    assert np.load(tmp_path / "s.npy").shape == (5, 8)
    # the default: all eight; a symmetrized file symmetrized again starts from its network
    assert dgmm(["symmetrize", str(tmp_path / "sym.npz"), "-o", str(tmp_path / "all.npz")]) == 0
    assert dgmmcore.load(tmp_path / "all.npz").symmetries == SQUARE_SYMMETRIES
    with pytest.raises(SystemExit, match="2"):  # refused as the options are read
        dgmm(["symmetrize", str(tmp_path / "net.npz"), "--symmetries", "lr,mirror",
              "-o", str(tmp_path / "bad.npz")])
    assert "unknown symmetries ['mirror']" in capsys.readouterr().err


def test_bad_input_is_refused():
    model, _ = make((3, 2), 8)
    with pytest.raises(ValueError, match="unknown symmetries"):
        SymmetrizedModel(model, ("lr", "flip"))
    with pytest.raises(ValueError, match="must not repeat"):
        SymmetrizedModel(model, ("lr", "lr"))
    with pytest.raises(ValueError, match="at least one"):
        SymmetrizedModel(model, ())
    with pytest.raises(TypeError, match="sequence of names"):
        SymmetrizedModel(model, 3)
    with pytest.raises(TypeError, match="must be a DeepGMM"):
        SymmetrizedModel("net.npz")
    with pytest.raises(NotFittedError):  # an unfitted network waits for fit
        SymmetrizedModel(DeepGMM((3, 2))).score_samples(np.zeros((3, 8)))
    with pytest.raises(ValueError, match="square patches"):
        SymmetrizedModel(make((2,), 5)[0])
    with pytest.raises(ValueError, match="8"):
        SymmetrizedModel(model).score_samples(np.zeros((3, 7)))
    from dgmmcore import restoration
    with pytest.raises(TypeError, match="restoration takes a DeepGMM"):
        restoration.denoise(SymmetrizedModel(make((2,), 63)[0]), np.zeros((16, 16)), 10.0)


def test_a_file_with_bad_symmetries_is_refused(tmp_path):
    from dgmmcore._persistence import save_model
    model, _ = make((3, 2), 8)
    save_model(model, tmp_path / "bad.npz", extra={"symmetries": ["lr", "spin"]})
    with pytest.raises(ValueError, match="not a readable dgmmcore model file: invalid symm"):
        dgmmcore.load(tmp_path / "bad.npz")
