"""The node search (rank one layer's nodes by moment-matched Gaussians, score the paths under the
best ``keep``) against scipy: its node Gaussians, its exactness at full width, and what it
returns below (the best path under the nodes a scipy ranking keeps, with its true score)."""
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from dgmmcore import DeepGMM
from dgmmcore._network import ravel_paths
from dgmmcore._node_search import NodeSearch, node_gaussians, widest_layer
from _reference import component_logpdf, path_gaussians, random_params


def make(layers, D=4, seed=0, weights=None):
    A, b, w = random_params(layers, D, np.random.default_rng(seed), bias=2.0)
    if weights is not None:
        w = weights
    return DeepGMM.from_params(A, b, w), (A, b, w)


def reference_nodes(params, layer):
    """Each node's paths (walked explicitly) moment-matched: weight, mean, covariance."""
    ws, means, covs = path_gaussians(*params)
    layers = params[2].shape
    node = np.unravel_index(np.arange(len(ws)), layers)[layer]
    out = []
    for a in range(layers[layer]):
        p = node == a
        w = ws[p] / ws[p].sum()
        m = w @ means[p]
        c = sum(wi * (ci + np.outer(mi - m, mi - m)) for wi, ci, mi in zip(w, covs[p], means[p]))
        out.append((ws[p].sum(), m, c))
    return out


@pytest.mark.parametrize("layers", [(4, 3, 2), (2, 5, 3)])
def test_node_gaussians_match_the_moments_of_their_paths(layers):
    model, params = make(layers)
    layer = widest_layer(layers)
    assert layer == int(np.argmax(layers))
    log_w, means, covs = node_gaussians(model._path_table(), layer)
    for a, (w, m, c) in enumerate(reference_nodes(params, layer)):
        np.testing.assert_allclose(np.exp(log_w[a]), w, rtol=1e-10)
        np.testing.assert_allclose(means[a], m, atol=1e-10)
        np.testing.assert_allclose(covs[a], c, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("layers", [(6, 3, 2), (2, 5, 3)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_at_full_width_it_is_the_exact_search(layers, dtype):
    model, params = make(layers, seed=1)
    X = np.ascontiguousarray(model.sample(300, random_state=2)[0], dtype=dtype)
    ref = component_logpdf(X.astype(np.float64), *params)
    paths, scores = NodeSearch(model._path_table(), keep=max(layers)).best_paths(X, 2, block=64)
    np.testing.assert_array_equal(paths, ref.argmax(axis=1))
    tol = 1e-9 if dtype == np.float64 else 1e-3
    np.testing.assert_allclose(scores, ref.max(axis=1), rtol=tol, atol=tol)


@pytest.mark.parametrize("layers", [(8, 3, 2), (3, 8, 2)])
def test_below_full_width_it_searches_the_paths_of_the_best_nodes(layers):
    model, params = make(layers, seed=3)
    X = np.ascontiguousarray(model.sample(400, random_state=4)[0])
    keep = 3
    layer = widest_layer(layers)
    nodes = reference_nodes(params, layer)
    node_scores = np.stack([np.log(w) + multivariate_normal(m, c).logpdf(X)
                            for w, m, c in nodes], axis=1)
    kept = np.argsort(-node_scores, axis=1)[:, :keep]
    ref = component_logpdf(X, *params)
    node_of_path = np.unravel_index(np.arange(ref.shape[1]), layers)[layer]
    allowed = (node_of_path[None, None, :] == kept[:, :, None]).any(axis=1)
    expected = np.where(allowed, ref, -np.inf)

    paths, scores = NodeSearch(model._path_table(), keep=keep).best_paths(X, 2, block=128)
    np.testing.assert_array_equal(paths, expected.argmax(axis=1))
    np.testing.assert_allclose(scores, ref[np.arange(len(X)), paths], rtol=1e-9)
    assert np.all(scores <= ref.max(axis=1) + 1e-9)
    # a heuristic, but a good one on rows the model made: most rows get their exact best path
    exact = ravel_paths(np.asarray(model.predict(X)), layers)
    assert np.mean(paths == exact) > 0.7


def test_a_node_without_weight_is_never_chosen():
    layers = (5, 3)
    w = np.random.default_rng(5).random(layers) + 0.1
    w[2] = 0.0
    w /= w.sum()
    model, params = make(layers, seed=5, weights=w)
    log_w, _, _ = node_gaussians(model._path_table(), 0)
    assert log_w[2] == -np.inf and np.all(np.isfinite(np.delete(log_w, 2)))
    X = np.ascontiguousarray(model.sample(200, random_state=6)[0])
    paths, scores = NodeSearch(model._path_table(), keep=2).best_paths(X, 1)
    assert not np.any(np.unravel_index(paths, layers)[0] == 2)
    assert np.all(np.isfinite(scores))


def test_rows_float32_cannot_score_get_the_exact_float64_search():
    model, params = make((6, 2), seed=7)
    X = np.ascontiguousarray(model.sample(50, random_state=8)[0])
    X[:3] = 1e19  # squared distances overflow float32
    paths, scores = NodeSearch(model._path_table(), keep=2).best_paths(X.astype(np.float32), 1)
    ref = component_logpdf(X.astype(np.float32).astype(np.float64), *params)
    np.testing.assert_array_equal(paths[:3], ref[:3].argmax(axis=1))
    np.testing.assert_allclose(scores[:3], ref[:3].max(axis=1), rtol=1e-9)
    assert np.all(np.isfinite(scores))


def test_keep_must_be_positive():
    model, _ = make((3, 2))
    with pytest.raises(ValueError, match="keep"):
        NodeSearch(model._path_table(), keep=0)

