"""The DeepGMM estimator: parameters, exact density, best paths, sampling, export, training."""
import inspect
import os
import warnings

import numpy as np

from . import _distributed, _em, _estep, _impute, _mstep
from ._data import RowSource
from ._estimator import EstimatorParams, InformationCriteria, identifiable_parameters
from ._executor import EStepConfig, LocalExecutor
from ._network import (PathTable, forward_nodes, invert_nodes, n_paths, ravel_paths,
                       unravel_paths)
from ._threads import effective_n_threads, limited_blas
from ._validation import (check_choice, check_data, check_float, check_int, check_layers,
                          check_n_threads, check_params, check_random_state)


def _same(value, default):
    try:
        return bool(value == default) and type(value) is type(default)
    except (TypeError, ValueError):  # an array or a Generator: show it
        return False


class NotFittedError(ValueError, AttributeError):
    """Raised when a model is used before ``fit`` or ``from_params`` gave it parameters."""


class DeepGMM(EstimatorParams, InformationCriteria):
    """Deep Gaussian Mixture Model (van den Oord & Schrauwen, NIPS 2014).

    A network of ``k`` layers of square affine maps; layer ``j`` has ``N_j`` nodes. Each path
    through the network (one node per layer) is one Gaussian component, so the model is a GMM
    with ``prod(layers)`` tied components and ``sum(layers)`` parameter sets.

    Generation along a path ``p``: ``h_0 = z ~ N(0, I)``, ``h_j = A[j][p_j] h_{j-1} + b[j][p_j]``,
    ``x = h_k``; layer 1 (``transforms_[0]``) acts first.

    Parameters
    ----------
    layers : sequence of int
        Nodes per layer ``(N_1, ..., N_k)``.
    estep : {'heuristic', 'full', 'soft'}
        Hard EM with the paper's coordinate-ascent path search, hard EM with the exact best
        path, or soft EM over all paths.
    path_prior : {'joint', 'factorized'}
        ``pi_p = N_p / N`` over whole paths, or a product of per-layer node frequencies.
    mstep : {'auto', 'groups', 'kronecker'}
        How each node's objective is evaluated (paper eq. 11/12 or eq. 13/14).
    max_iter, tol : EM iterations and the stopping threshold on the change in mean objective.
    lbfgs_maxiter : L-BFGS-B iterations per node per M-step at most. The paper used 1000; EM
        only needs each M-step to improve the objective, and the next M-step continues from
        the same point, so 50 costs nothing measurable in held-out likelihood on image
        patches while cutting M-step time several-fold (see README).
    warm_passes, n_restarts, restart_passes : heuristic E-step protocol (paper: 1, 1, 2).
    truncation : int or None
        None: hard EM, each row's statistics go to the path the search (``estep`` 'heuristic'
        or 'full') found. An int k: truncated soft EM around that path: the row's posterior
        over the paths made of the k best choices of each layer (each ranked with the rest of
        the path fixed), renormalised over them, weights its statistics; the objective is then
        the log-sum-exp over those candidates, a lower bound on log p(x) at least the best
        path's score. After the search a row scores prod(min(k, N_j)) candidates (1,250 of
        15,000 paths for (600, 5, 5) and k = 50); on BSDS300 one such iteration gained nine
        tenths of what one soft-EM iteration over all paths gains (README). k >= every N_j is
        soft EM over all paths. The best candidate becomes the row's path. With
        ``warm_passes=0, n_restarts=0`` a warm-started E-step does not search: the candidates
        around the last E-step's paths are the search (the first E-step of a fresh fit still
        makes one random restart).
    rerank_every : int
        With ``truncation``: rank each layer's choices on every ``rerank_every``-th E-step of
        a run only, and in between keep each row's choices from the last ranking (the row's
        path stays among them). Ranking scores all N_j choices of a wide layer per row; without
        it an E-step without the search took 0.68x the time on a trained (600, 5, 5) network
        (README). The kept choices
        are held per row (n x keep small integers per ranked layer) and in checkpoints; local
        runs only (not on Dask). 1 (default): rank on every E-step.
    reg_covar : float
        Added to the diagonal of every path's data covariance in the M-step (as in
        scikit-learn), so that degenerate data cannot make a transform singular. It is
        absolute: scale it with the data (on [0, 1)-scaled image patches 1e-6 is as large
        as the dequantisation noise; see bench/results/BSDS300.md).
    n_init : number of initializations; the best final objective is kept.
    init_layer : int or None
        The layer (an index into ``layers``, as into ``transforms_``; -1 is the layer next to
        x) that a fresh fit starts as a k-means partition of the data, every other layer
        starting near the identity. None: the widest layer (the last of the widest on a tie),
        which for the paper's (N, 5, 5) networks starts them as an N-cluster GMM with
        near-identity layers after it (on BSDS300 0.9 held-out nats better than putting the
        clusters in the 5-node last layer; README). Data whose clusters sit on the x side of a
        network may prefer -1.
    warm_start : continue from the current parameters on the next ``fit``. The rows' paths
        from the last fit warm-start the heuristic E-step when X has as many rows; otherwise
        (new data, or a network from ``deepen``/``from_params``) the first E-step is the exact
        search when that costs at most 25 random restarts (P <= 25 * restart_passes *
        sum(layers), e.g. (400, 5, 5)), random restarts otherwise.
    random_state : int, numpy Generator or None.
    n_threads : OpenMP threads for the kernels; None means every CPU available.
    verbose : 0 silent, 1 one line per iteration, 2 adds the M-step details.

    Attributes
    ----------
    transforms_ : list of (N_j, D, D) arrays (read-only).
    biases_ : list of (N_j, D) arrays (read-only).
    weights_ : (N_1, ..., N_k) array, the joint path prior (read-only).
    """

    def __init__(self, layers=(10, 5, 5), *, estep="heuristic", path_prior="joint", mstep="auto",
                 max_iter=100, tol=1e-3, lbfgs_maxiter=50, warm_passes=1, n_restarts=1,
                 restart_passes=2, truncation=None, rerank_every=1, reg_covar=1e-6, n_init=1,
                 init_layer=None,
                 warm_start=False, random_state=None, n_threads=None, verbose=0):
        self.layers = layers
        self.estep = estep
        self.path_prior = path_prior
        self.mstep = mstep
        self.max_iter = max_iter
        self.tol = tol
        self.lbfgs_maxiter = lbfgs_maxiter
        self.warm_passes = warm_passes
        self.n_restarts = n_restarts
        self.restart_passes = restart_passes
        self.truncation = truncation
        self.rerank_every = rerank_every
        self.reg_covar = reg_covar
        self.n_init = n_init
        self.init_layer = init_layer
        self.warm_start = warm_start
        self.random_state = random_state
        self.n_threads = n_threads
        self.verbose = verbose

    # ------------------------------------------------------------------ parameters
    @classmethod
    def from_params(cls, transforms, biases, weights, **kwargs):
        """A fitted model from given parameters.

        ``transforms``: list of (N_j, D, D) invertible arrays, layer 1 first; ``biases``: list of
        (N_j, D); ``weights``: the joint (N_1, ..., N_k) path prior, or a list of per-layer
        probability vectors (a factorized prior). Other keyword arguments go to the constructor.
        """
        A, b, joint, layer_weights = check_params(transforms, biases, weights)
        if layer_weights is not None:
            kwargs.setdefault("path_prior", "factorized")
        model = cls(layers=tuple(a.shape[0] for a in A), **kwargs)
        model._set_params(A, b, joint, layer_weights)
        return model

    def deepen(self, nodes, *, spread=0.1, random_state=None):
        """A new model with layers of ``nodes`` added after the last one (next to x), set to
        continue training from this one: ``deepen((5, 5)).fit(X)`` grows a fitted GMM of N
        components into an (N, 5, 5) Deep GMM. Hyperparameters are copied, with warm_start on.

        Each new node starts as A = I + spread * G / sqrt(D) (G standard normal, drawn from
        ``random_state``) and b = m - A m, m the model's mean: the new nodes act on x itself,
        so they must be near the identity, keep the data's mean wherever the data sit (b = 0
        would move it by G m), and differ for EM to pull them apart. The path prior is the
        old one times uniform weights over the new nodes, so with spread=0 the density is
        exactly this model's. On BSDS300 patches, growing a trained GMM this way and
        continuing EM reached a higher held-out likelihood than starting the deep network
        from k-means (README).
        """
        self._check_fitted()
        nodes = check_layers(nodes)
        spread = check_float(spread, "spread", minimum=0.0)
        rng = check_random_state(random_state)
        D = self.n_features_in_
        A, b = list(self.transforms_), list(self.biases_)
        mean = self.weights_.ravel() @ self._path_table().mean64
        for N in nodes:
            A.append(np.eye(D) + spread / np.sqrt(D) * rng.standard_normal((N, D, D)))
            b.append(mean - A[-1] @ mean)
        joint = np.multiply.outer(self.weights_, np.full(nodes, 1.0 / np.prod(nodes)))
        layer_weights = None
        if self.layer_weights_ is not None:
            layer_weights = list(self.layer_weights_) + [np.full(N, 1.0 / N) for N in nodes]
        return self._continued_with(A, b, joint, layer_weights)

    def widen(self, layers, *, jitter=0.05, random_state=None):
        """A new model with ``layers`` nodes per layer (as many layers, none narrower), set to
        continue training from this one: ``widen((600, 5, 5)).fit(X)`` gives a trained
        (400, 5, 5) network 200 more top nodes. Hyperparameters are copied, with warm_start on.

        Each added node of a layer is a split of the node of that layer with the most prior
        mass left after the splits before it: a perturbed copy of its inverse map
        (``jitter``, as the M-step re-seeds starved nodes) that takes half of its paths'
        prior mass, so with jitter=0 the density is exactly this model's. The rows' paths
        from the last fit (or from the checkpoint this model was loaded from) carry over, so
        a fit on the same rows starts from them and the heuristic E-step moves rows onto the
        new nodes; there is no need for a first exact search.

        The copy's output u = Q v + c becomes (I + J) u + jitter g (J of size jitter, g
        standard normal), wherever the data sit: it moves by about jitter * (|u| + sqrt(D)).
        On 63-dim patches the default parts copy and source within a few iterations, but in
        a few dimensions they can stay together until EM stops (3 dims: jitter 1 parts them).
        """
        self._check_fitted()
        new = check_layers(layers)
        old = tuple(self.weights_.shape)
        if len(new) != len(old) or any(n < o for n, o in zip(new, old)):
            raise ValueError(f"widen: layers must have the network's {len(old)} layers, each "
                             f"at least as wide as now {old}; got {new}")
        jitter = check_float(jitter, "jitter", minimum=0.0)
        rng = check_random_state(random_state)
        Q, c = invert_nodes(self.transforms_, self.biases_)
        joint = np.zeros(new)
        joint[tuple(slice(0, o) for o in old)] = self.weights_
        layer_weights = None if self.layer_weights_ is None else [
            np.concatenate([w, np.zeros(n - len(w))]) for w, n in zip(self.layer_weights_, new)]
        splits = []
        for j, (n_old, n_new) in enumerate(zip(old, new)):
            Q[j] = np.concatenate([Q[j], np.empty((n_new - n_old,) + Q[j].shape[1:])])
            c[j] = np.concatenate([c[j], np.empty((n_new - n_old,) + c[j].shape[1:])])
            mass = joint.sum(axis=tuple(a for a in range(len(new)) if a != j))
            for i in range(n_old, n_new):
                src = int(np.argmax(mass))
                mass[src] /= 2
                mass[i] = mass[src]
                Q[j][i], c[j][i] = _mstep.perturbed_copy(Q[j][src], c[j][src], rng, jitter)
                splits.append((j, i, src))
                if layer_weights is not None:
                    layer_weights[j][src] /= 2
                    layer_weights[j][i] = layer_weights[j][src]
        joint = _mstep.split_prior_counts(joint, new, splits).reshape(new)
        A, b = forward_nodes(Q, c)
        model = self._continued_with(A, b, joint, layer_weights)
        paths = getattr(self, "_train_paths", None)
        if paths is None and getattr(self, "_resume_state", None) is not None:
            paths = self._resume_state["paths"]
        if paths is not None:
            model._train_paths = ravel_paths(unravel_paths(paths, old), new)
        return model

    def _continued_with(self, transforms, biases, weights, layer_weights):
        """A new model with this one's hyperparameters (warm_start on, layers from the
        parameters) holding the given parameters: what deepen and widen return."""
        hyper = self.get_params(deep=False)
        hyper.update(layers=tuple(a.shape[0] for a in transforms), warm_start=True)
        model = type(self)(**hyper)
        model._set_params(transforms, biases, weights, layer_weights)
        return model

    def _set_params(self, transforms, biases, weights, layer_weights=None):
        """Install parameters (copied, made read-only) and drop cached path tables."""
        def frozen(a):
            a = np.array(a, dtype=np.float64, order="C")
            a.setflags(write=False)
            return a
        self.transforms_ = [frozen(a) for a in transforms]
        self.biases_ = [frozen(b) for b in biases]
        self.weights_ = frozen(weights)
        self.layer_weights_ = None if layer_weights is None else [frozen(w) for w in layer_weights]
        self.n_features_in_ = self.transforms_[0].shape[1]
        # caches of this parameter set, filled in place: scoring leaves __dict__ as it is
        self._derived = {}

    def __sklearn_is_fitted__(self):
        # scikit-learn's check_is_fitted asks this (meta-estimators, pipelines)
        return hasattr(self, "transforms_")

    def _check_fitted(self):
        if not hasattr(self, "transforms_"):
            raise NotFittedError("this DeepGMM has no parameters yet: call fit() or use "
                                 "DeepGMM.from_params()")

    def _path_table(self):
        """Every path's scoring factors, built once per parameter set (see _set_params)."""
        self._check_fitted()
        return self._cached("table", DeepGMM._build_table)

    def _build_table(self):
        with np.errstate(divide="ignore"):
            log_w = np.log(self.weights_)
        return PathTable(self.transforms_, self.biases_, log_w)

    def _threads(self):
        return effective_n_threads(check_n_threads(self.n_threads))

    @property
    def n_paths_(self):
        self._check_fitted()
        return n_paths(self.weights_.shape)

    def n_parameters(self, identifiable=False):
        """Free parameters: D^2 + D per node, plus the prior (P - 1 joint, sum(N_j - 1)
        factorized). With ``identifiable``, only as many as the density has degrees of
        freedom: less the rotations behind the first layer's nodes and the affine maps
        between layers that cancel (``_estimator.identifiable_parameters``; for (600, 5, 5)
        on 63 values 1.29M of 2.47M); what ``bic`` and ``aic`` count."""
        self._check_fitted()
        D = self.n_features_in_
        layers = self.weights_.shape
        if self.layer_weights_ is not None:
            prior = sum(w.size - 1 for w in self.layer_weights_)
        else:
            prior = self.weights_.size - 1
        if identifiable:
            return identifiable_parameters(layers, D) + prior
        return sum(layers) * (D * D + D) + prior

    # ------------------------------------------------------------------ training
    def _check_parameters(self):
        """Validate the hyperparameters in one place (they are not touched by __init__, nor
        changed here: scikit-learn's convention). Returns the layers as a tuple of ints."""
        layers = check_layers(self.layers)
        check_choice(self.estep, "estep", {"heuristic", "full", "soft"})
        check_choice(self.path_prior, "path_prior", {"joint", "factorized"})
        check_choice(self.mstep, "mstep", {"auto", "groups", "kronecker"})
        check_int(self.max_iter, "max_iter", minimum=0)
        check_float(self.tol, "tol", minimum=0.0)
        check_int(self.lbfgs_maxiter, "lbfgs_maxiter", minimum=1)
        check_int(self.warm_passes, "warm_passes", minimum=0)
        check_int(self.n_restarts, "n_restarts", minimum=0)
        check_int(self.restart_passes, "restart_passes", minimum=1)
        if self.truncation is not None:
            check_int(self.truncation, "truncation", minimum=1)
            if self.estep == "soft":
                raise ValueError("truncation applies to the hard E-steps' paths ('heuristic' "
                                 "or 'full'); estep='soft' already uses every path")
        check_int(self.rerank_every, "rerank_every", minimum=1)
        if self.rerank_every > 1 and not self.truncation:
            raise ValueError("rerank_every > 1 reuses truncated EM's ranked choices: it needs "
                             "truncation")
        check_float(self.reg_covar, "reg_covar", minimum=0.0)
        check_int(self.n_init, "n_init", minimum=1)
        if self.init_layer is not None:
            check_int(self.init_layer, "init_layer")
            k = len(layers)
            if not -k <= self.init_layer < k:
                raise ValueError(f"init_layer={self.init_layer} is not a layer of this "
                                 f"{k}-layer network: use 0..{k - 1} or -{k}..-1")
        check_int(self.verbose, "verbose", minimum=0)
        check_n_threads(self.n_threads)
        if not self.truncation and not EStepConfig.of(self).searches:
            raise ValueError("the heuristic E-step needs warm_passes >= 1 or n_restarts >= 1 "
                             "(both 0 only with truncation: its candidates are the search)")
        return layers

    def fit(self, X, y=None, *, init_paths=None, checkpoint=None, checkpoint_every=1,
            resume=False, client=None, final_estep=True):
        """Fit by hard EM (or soft EM with estep='soft'); returns self.

        Records per iteration in ``history_`` (objective, switch rate, E- and M-step seconds,
        ``reseeded``: nodes left with fewer than D + 1 points, re-seeded as a split of a busy
        node of their layer that takes half of its prior mass), sets ``n_iter_`` and
        ``converged_``, and warns with ConvergenceWarning when max_iter is reached first.
        ``objective_`` is the final mean objective: the mean best-path log-density for hard
        EM, the mean log-likelihood for soft EM, the mean log-sum-exp over each row's
        candidates for truncated EM (``truncation``).

        float32 X is scored in float32 by the E-steps, soft EM's too (rows that overflow are
        redone in float64); the statistics, the M-step and the parameters are float64 either
        way.

        init_paths : (n, k) ints, with warm_start on a fitted model: each row's path to start
            the first heuristic E-step from, in place of the last fit's paths or the exact
            search. For data grown by new rows: the paths ``fit_predict`` returned for the rows
            seen before and ``predict`` for the new ones, so no row starts from scratch.

        checkpoint : path; every ``checkpoint_every`` iterations the model and the state needed
            to continue are written there atomically (a normal model file: ``dgmmcore.load``).
        resume : continue the run saved in the checkpoint this model was loaded from, so that
            it ends where an uninterrupted fit with the same data would.
        client : a ``distributed.Client``: run the E-step on its workers (numpy X is split into
            shards and scattered). A dask array X is fitted on the current client when none is
            given. The client's ``direct_to_workers`` setting decides the route of the
            parameters out and the statistics back: Dask's default relays them through the
            scheduler (twice the bytes on the wire); ``Client(..., direct_to_workers=True)``
            sends them straight to and from the workers, where the client can reach them.
            See ``dgmmcore._distributed``.

        final_estep : False stops after the last M-step, without the E-step that only
            measures the final parameters' objective: ``objective_`` and the rows' paths are
            then the last E-step's, before that M-step. On big data a last polishing iteration
            (e.g. with ``truncation``) then costs one E-step, not two.

        Ctrl-C (KeyboardInterrupt) stops the fit and leaves the model at its last completed
        iteration, usable and saveable; the KeyboardInterrupt is then re-raised.
        """
        layers = self._check_parameters()
        if not final_estep and self.max_iter == 0:
            raise ValueError("final_estep=False with max_iter=0 would run no E-step at all")
        if checkpoint_every is not None:
            check_int(checkpoint_every, "checkpoint_every", minimum=1)
        state = None
        if resume:
            state = getattr(self, "_resume_state", None)
            if state is None:
                raise ValueError("resume=True needs a model loaded from a checkpoint file "
                                 "(fit(..., checkpoint=PATH) writes them)")
        n_features = None
        if (self.warm_start or resume) and hasattr(self, "transforms_"):
            if tuple(self.weights_.shape) != layers:
                raise ValueError(f"warm_start: the fitted network has layers "
                                 f"{tuple(self.weights_.shape)}, not {layers}")
            n_features = self.n_features_in_
        on_dask = client is not None or _distributed.is_dask_array(X)
        if on_dask and self.rerank_every > 1:
            raise ValueError("rerank_every > 1 runs locally only: the Dask shards do not keep "
                             "truncated EM's ranked choices")
        if on_dask:
            executor = _distributed.DaskExecutor(X, client, self.n_threads, n_features)
        else:
            executor = LocalExecutor(RowSource(X, n_features=n_features, min_samples=2),
                                     self._threads())
        try:  # the executor (on Dask: scattered shards) is closed on every way out
            if init_paths is not None:
                init_paths = self._check_init_paths(
                    init_paths, executor.n_rows, resume,
                    isinstance(executor, _distributed.DaskExecutor))
            if (state is not None and state["paths"] is not None
                    and len(state["paths"]) != executor.n_rows):
                raise ValueError(f"resume: the checkpoint was written for "
                                 f"{len(state['paths'])} rows, X has {executor.n_rows}")
            if state is not None and state.get("ranked") is not None:
                self._check_ranked(state["ranked"], executor.n_rows)
            rng = check_random_state(self.random_state)
            with limited_blas(self._threads()):  # numpy work outside the kernels, too
                run = _em.fit_model(self, executor, rng, self._threads(), checkpoint,
                                    checkpoint_every, state, init_paths, bool(final_estep))
        finally:
            executor.close()
        self._set_params(run.A, run.b, run.weights, run.layer_weights)
        self.history_ = run.history
        self.n_iter_ = sum(1 for r in run.history if "mstep_seconds" in r)
        self.converged_ = run.converged
        self.objective_ = run.objective
        self._train_paths = run.final_paths
        self._resume_state = None
        if run.interrupted:
            warnings.warn(f"fit interrupted: the model holds the parameters after "
                          f"{self.n_iter_} completed iterations", RuntimeWarning, stacklevel=2)
            raise KeyboardInterrupt
        return self

    def _check_ranked(self, ranked, n_rows):
        """A checkpoint's kept choices of truncated EM, or a ValueError naming the problem (a
        bad file must not index outside the network)."""
        keep = self.truncation or 0
        layers = tuple(self.weights_.shape)
        wide = [layers[j] for j in _estep.ranked_layers(layers, keep)]
        expected = (n_rows, len(wide), keep)
        if self.rerank_every == 1 or ranked.dtype != _estep.ranking_dtype(layers):
            raise ValueError(f"resume: the checkpoint's ranked choices ({ranked.dtype}) do not "
                             f"belong to a run with rerank_every={self.rerank_every}, "
                             f"truncation={self.truncation}")
        if ranked.shape != expected:
            raise ValueError(f"resume: the checkpoint's ranked choices have shape "
                             f"{ranked.shape}, expected {expected} (rows, ranked layers, "
                             f"truncation)")
        for r, n_j in enumerate(wide):
            if ranked[:, r].size and (ranked[:, r].min() < 0 or ranked[:, r].max() >= n_j):
                raise ValueError(f"resume: the checkpoint's ranked choices name a node beyond "
                                 f"the {n_j} of their layer")

    def _check_init_paths(self, paths, n_rows, resume, on_dask):
        """fit's init_paths as path numbers, or a ValueError/TypeError naming the problem."""
        if resume or on_dask:
            raise ValueError("init_paths: not with resume (the checkpoint holds the paths) "
                             "or on Dask")
        if self.estep != "heuristic":
            raise ValueError(f"init_paths: only the heuristic E-step starts from paths, not "
                             f"estep={self.estep!r}")
        if not (self.warm_start and hasattr(self, "transforms_")):
            raise ValueError("init_paths: needs warm_start=True on a fitted network (paths "
                             "name its nodes)")
        paths = np.asarray(paths)
        if paths.dtype.kind not in "iu":
            raise TypeError(f"init_paths: integer node indices expected, got {paths.dtype}")
        layers = tuple(self.weights_.shape)
        if paths.shape != (n_rows, len(layers)):
            raise ValueError(f"init_paths: shape {paths.shape}, expected {(n_rows, len(layers))}"
                             f" (a row's node in each layer)")
        if np.any(paths < 0) or np.any(paths >= np.asarray(layers)):
            raise ValueError(f"init_paths: node indices must lie in [0, N_j) for layers {layers}")
        return ravel_paths(paths, layers)

    def fit_predict(self, X, y=None):
        """Fit, then return the paths of the final E-step, (n, k) ints (for estep='full' these
        equal ``predict(X)``; the heuristic's may differ on a few rows)."""
        self.fit(X)
        if self._train_paths is None:
            return self.predict(X)
        return unravel_paths(self._train_paths, self.weights_.shape)

    # ------------------------------------------------------------------ inference
    def _check_X(self, X):
        self._check_fitted()
        return check_data(X, n_features=self.n_features_in_)

    def _blockwise(self, X, best):
        """exact_scores over the blocks of X (memory-mapped data is streamed): (None, best
        paths) with ``best``, else (log-densities, None)."""
        self._check_fitted()
        if _distributed.is_dask_array(X):
            return self._dask_blockwise(X, best)
        source = RowSource(X, n_features=self.n_features_in_)
        table, threads = self._path_table(), self._threads()
        # the best paths alone (predict) or the densities alone (score_samples)
        lse = None if best else np.empty(source.n_rows)
        paths = np.empty(source.n_rows, dtype=np.intp) if best else None
        for lo, hi, block in source.blocks():
            l, p, _ = _estep.exact_scores(table, block, threads, best=best, lse=not best)
            if best:
                paths[lo:hi] = p
            else:
                lse[lo:hi] = l
        return lse, paths

    def _dask_blockwise(self, X, best):
        """Lazily map the scoring over a dask array's row blocks (a dask array comes back)."""
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must be (n, {self.n_features_in_}), got shape {X.shape}")
        X = X.rechunk({1: -1})
        k = self.weights_.ndim
        if best:
            paths = X.map_blocks(lambda b: self.predict(b), chunks=(X.chunks[0], (k,)),
                                 dtype=np.intp)
            return None, paths
        return X.map_blocks(lambda b: self.score_samples(b), drop_axis=1, dtype=np.float64), None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_derived"] = {}  # the path table etc., rebuilt where needed (can be large)
        return state

    def score_samples(self, X, mask=None):
        """log p(x) for each row (natural log), summed exactly over all paths.

        With ``mask`` (True marks a missing entry), the log-density of each row's observed
        entries (the marginal of the mixture), computed as in ``impute``.

        X may be an array, an ``np.memmap`` or the path of a ``.npy`` file; memory-mapped
        data is read block by block. float32 input is computed in float32 (about 1e-5
        relative accuracy on typical data; rows whose float32 result overflows are redone in
        float64); other input in float64.
        """
        if mask is not None:
            X, mask = self._check_masked(X, mask)
            with limited_blas(self._threads()):
                return _impute.impute_rows(X, mask, self._path_table(), self._threads())[1]
        return self._blockwise(X, best=False)[0]

    def impute(self, X, mask, return_loglik=False):
        """Fill the entries of X marked True in ``mask`` with their posterior mean under the
        mixture: each path's Gaussian conditioned on the row's observed entries, weighted by
        the path's posterior given them. Values at masked positions are ignored (NaN is fine).
        With ``return_loglik``, also returns the log-density of each row's observed entries.
        Cost: O(P D^2) per row plus one |m| x |m| Cholesky per path per missing pattern (per
        row for patterns that few rows share), in a compiled kernel parallel over the paths."""
        X, mask = self._check_masked(X, mask)
        with limited_blas(self._threads()):
            filled, loglik = _impute.impute_rows(X, mask, self._path_table(), self._threads())
        return (filled, loglik) if return_loglik else filled

    def _check_masked(self, X, mask):
        self._check_fitted()
        if isinstance(X, (str, bytes, os.PathLike)):
            raise TypeError("X must be an array of rows in memory (impute does not read "
                            "files), got a path")
        arr = np.asarray(X)
        mask = _impute.check_mask(mask, arr.shape)
        if arr.ndim == 2 and arr.dtype.kind == "f":
            arr = np.where(mask, 0.0, arr)  # masked entries may hold NaN
        return check_data(arr, n_features=self.n_features_in_), mask

    def _cached(self, name, build):
        """``build(self)``, computed once per parameter set: reset by _set_params, and when a
        fitted array was assigned anew (the cache keeps the arrays it was built from)."""
        derived = self.__dict__.setdefault("_derived", {})
        arrays = (*self.transforms_, *self.biases_, self.weights_)
        built_from = derived.get("_arrays", ())
        if len(built_from) != len(arrays) or any(a is not b for a, b in zip(arrays, built_from)):
            derived.clear()  # in place: scoring leaves __dict__ as it is
            derived["_arrays"] = arrays
        if name not in derived:
            derived[name] = build(self)
        return derived[name]

    def _gmm(self):
        return self._cached("gmm", DeepGMM.to_gmm)

    def score(self, X, y=None):
        """Mean log-likelihood per row, in nats (``y`` is ignored, as in scikit-learn)."""
        s = self.score_samples(X)
        return float(s.mean().compute() if _distributed.is_dask_array(X) else np.mean(s))

    def predict(self, X):
        """The most probable path of each row (exact argmax over all paths), as (n, k) ints
        (a dask array for dask input)."""
        paths = self._blockwise(X, best=True)[1]
        if _distributed.is_dask_array(X):
            return paths
        return unravel_paths(paths, self.weights_.shape)

    def predict_proba(self, X):
        """Path posteriors, shape (n, N_1, ..., N_k). Memory is O(n x P): for few rows only."""
        X = self._check_X(X)
        post, _ = _estep.path_posteriors(self._path_table(), X, self._threads())
        return post.reshape((X.shape[0],) + self.weights_.shape)

    def sample(self, n_samples=1, random_state=None):
        """Draw ``n_samples`` points; returns (X (n, D), paths (n, k))."""
        self._check_fitted()
        n_samples = check_int(n_samples, "n_samples", minimum=1)
        rng = check_random_state(random_state)
        flat = rng.choice(self.weights_.size, size=n_samples, p=self.weights_.ravel())
        paths = unravel_paths(flat, self.weights_.shape)
        h = rng.standard_normal((n_samples, self.n_features_in_))
        for j, (A, b) in enumerate(zip(self.transforms_, self.biases_)):
            for i in range(A.shape[0]):
                sel = paths[:, j] == i
                if np.any(sel):
                    h[sel] = h[sel] @ A[i].T + b[i]
        return h, paths

    def to_gmm(self):
        """The equivalent shallow GMM: (weights (P,), means (P, D), covariances (P, D, D)),
        components in C order of the (N_1, ..., N_k) paths."""
        self._check_fitted()
        D = self.n_features_in_
        omega = np.eye(D)[None]
        mean = np.zeros((1, D))
        for A, b in zip(self.transforms_, self.biases_):
            omega = np.matmul(A[None], omega[:, None]).reshape(-1, D, D)
            mean = (np.einsum("nij,pj->pni", A, mean) + b[None]).reshape(-1, D)
        covs = np.matmul(omega, np.swapaxes(omega, 1, 2))
        return self.weights_.ravel().copy(), mean, covs

    # ------------------------------------------------------------------ persistence
    def save(self, path):
        """Write the model to ``path`` (.npz, format documented in dgmmcore._persistence);
        the write is atomic. Read it back with ``dgmmcore.load``."""
        from ._persistence import save_model
        save_model(self, path)

    def __repr__(self):
        # as scikit-learn prints estimators: the layers, then what differs from the defaults
        defaults = {name: p.default for name, p in
                    inspect.signature(type(self).__init__).parameters.items()}
        changed = [f"{name}={value!r}" for name, value in self.get_params(deep=False).items()
                   if name != "layers" and not _same(value, defaults[name])]
        return f"DeepGMM({', '.join([f'layers={self.layers!r}'] + changed)})"
