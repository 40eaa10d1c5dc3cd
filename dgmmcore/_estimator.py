"""scikit-learn's estimator protocol without scikit-learn: ``get_params``/``set_params`` read
the constructor's signature (its arguments are stored unchanged and validated by ``fit``), so
``sklearn.base.clone``, pipelines and ``GridSearchCV`` work on the models; and the model
selection criteria of ``GaussianMixture`` (``bic``, ``aic``)."""
import inspect

import numpy as np


class EstimatorParams:
    """get_params / set_params over the names of ``__init__``'s arguments, with nested
    ``name__param`` keys for an argument that is itself an estimator."""

    @classmethod
    def _param_names(cls):
        return [name for name, p in inspect.signature(cls.__init__).parameters.items()
                if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self, deep=True):
        """The constructor's arguments as set on this model (name -> value); with ``deep``,
        also those of arguments that are estimators, as ``name__param``."""
        params = {}
        for name in self._param_names():
            value = getattr(self, name)
            params[name] = value
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                params.update((f"{name}__{k}", v) for k, v in value.get_params().items())
        return params

    def set_params(self, **params):
        """Set constructor arguments (``name__param`` sets one of an estimator argument);
        they are validated by the next ``fit``, as those given to the constructor. Returns
        self. An unknown name is a ValueError listing the valid ones."""
        valid = self._param_names()
        nested = {}
        for key, value in params.items():
            name, nests, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}; "
                                 f"valid parameters: {valid}")
            if nests:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub in nested.items():
            inner = getattr(self, name)
            if not hasattr(inner, "set_params"):
                raise ValueError(f"{type(self).__name__}.{name} is not an estimator: "
                                 f"cannot set {sorted(sub)} on it")
            inner.set_params(**sub)
        return self

    def __sklearn_tags__(self):
        # scikit-learn >= 1.6 asks an estimator for its tags (only it calls this, so it is
        # installed): a density estimator, as GaussianMixture, that needs no target
        from sklearn.utils import Tags, TargetTags
        return Tags(estimator_type="density_estimator", target_tags=TargetTags(required=False))


class InformationCriteria:
    """``bic`` and ``aic`` as scikit-learn's GaussianMixture has them, from the model's
    ``score_samples`` and ``n_parameters(identifiable=True)``."""

    def bic(self, X):
        """Bayesian information criterion on X (lower is better): -2 log L(X) + k log n,
        with k the identifiable parameters (``n_parameters(identifiable=True)``)."""
        total, n = self._total_loglik(X)
        return -2.0 * total + self.n_parameters(identifiable=True) * np.log(n)

    def aic(self, X):
        """Akaike information criterion on X (lower is better): -2 log L(X) + 2k, k as for
        ``bic``."""
        total, _ = self._total_loglik(X)
        return -2.0 * total + 2.0 * self.n_parameters(identifiable=True)

    def _total_loglik(self, X):
        scores = np.asarray(self.score_samples(X))  # a dask array is computed here
        return float(np.sum(scores)), len(scores)


def identifiable_parameters(layers, n_features):
    """Dimension of the set of densities a network of ``layers`` can express, without its
    path prior: the parameters (D^2 + D per node) less the transformations that leave every
    path's Gaussian unchanged. Those are (i) a rotation behind each node of the layer that
    acts first (z ~ N(0, I) is rotation invariant): D(D - 1)/2 per node, and (ii) between
    two layers, any invertible affine map M applied after every node of one and undone
    before every node of the next: D^2 + D per pair. A layer of one node is an affine map
    shared by every path, which the layers beside it absorb: it adds nothing. With one
    layer this is scikit-learn's count for a full-covariance GMM less its weights.
    Checked against the rank of the Jacobian from parameters to the paths' means and
    covariances (tests/test_estimator.py)."""
    D = int(n_features)
    gaussian = D * (D + 1) // 2 + D
    kept = [int(n) for n in layers if n > 1]
    if not kept:
        return gaussian
    nodes = sum(kept) * (D * D + D)
    count = nodes - kept[0] * D * (D - 1) // 2 - (len(kept) - 1) * (D * D + D)
    # never above the paths' own means and covariances (does not bind for >= 2 nodes/layer)
    return min(count, int(np.prod(kept)) * gaussian)
