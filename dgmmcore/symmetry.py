"""A patch model averaged over symmetries of the square.

Natural images look much the same mirrored or turned; a model fitted to the patches of a few
hundred images is not as even-handed: it also learns their particular orientations. Averaging
its density over a set G of symmetries of the square,

    p_G(x) = (1 / |G|) sum_{g in G} p(g x),

gives a model symmetric under G (when G is a group), with the same free parameters. Each g
permutes a patch's pixels, so it keeps volume (|det| = 1, also on the rows of the standard
protocol: patch mean removed, last pixel dropped) and p_G is a density. It is again a Deep
GMM: the network with one more layer, nearest the data, of |G| fixed nodes (the maps g^-1,
each with prior 1 / |G|): |G| times the paths, no more parameters.
"""
import math
import warnings

import numpy as np
from scipy.special import logsumexp

from ._data import RowSource
from ._estimator import EstimatorParams, InformationCriteria
from ._network import unravel_paths
from ._validation import check_int, check_random_state
from .datasets import symmetric_patches

# The 8 symmetries of the square (the dihedral group D4), the identity first.
SQUARE_SYMMETRIES = ("identity", "lr", "ud", "rot90", "rot180", "rot270", "transpose",
                     "antitranspose")
_INVERSE = {"rot90": "rot270", "rot270": "rot90"}  # every other one is its own inverse


def apply_symmetry(X, kind):
    """X's rows (square patches: whole, or rows of the standard protocol) seen through the
    symmetry ``kind`` (a name from SQUARE_SYMMETRIES); the identity returns X itself."""
    if kind == "identity":
        return X
    return symmetric_patches(X, kind)


def inverse_symmetry(kind):
    """The name of the symmetry that undoes ``kind``."""
    return _INVERSE.get(kind, kind)


def averaged_log_density(seen):
    """log p_G per row from the network's log-densities at each g x, ``seen`` (|G|, n):
    log of their mean."""
    seen = np.asarray(seen)
    return logsumexp(seen, axis=0) - np.log(len(seen))


def _check_symmetries(symmetries):
    if isinstance(symmetries, str):
        symmetries = (symmetries,)
    try:
        names = tuple(symmetries)
    except TypeError:
        raise TypeError(f"symmetries must be a sequence of names, got {symmetries!r}") from None
    if not names:
        raise ValueError("symmetries must name at least one symmetry")
    unknown = [s for s in names if s not in SQUARE_SYMMETRIES]
    if unknown:
        raise ValueError(f"unknown symmetries {unknown}; choose from {list(SQUARE_SYMMETRIES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"symmetries must not repeat: {list(names)}")
    return names


def check_square(n_features):
    """Rows of square patches: s*s values, or s*s - 1 (the standard protocol's)."""
    if n_features > 0 and any(math.isqrt(m) ** 2 == m for m in (n_features, n_features + 1)):
        return
    raise ValueError(f"a symmetrized model needs rows of square patches (s*s or s*s - 1 "
                     f"values); this model has {n_features} features")


class SymmetrizedModel(EstimatorParams, InformationCriteria):
    """A fitted DeepGMM of square patches, its density averaged over ``symmetries``:
    log p(x) = logsumexp_g log p_model(g x) - log |G|.

    Parameters
    ----------
    model : DeepGMM on rows of s*s or s*s - 1 values (the standard protocol's); fitted, or
        fitted by ``fit``.
    symmetries : names from SQUARE_SYMMETRIES (default: all 8), each at most once.

    ``score_samples``, ``score``, ``sample``, ``save`` (``dgmmcore.load`` reads it back) and
    ``n_parameters`` as for the DeepGMM. The network is trained either plainly (averaged
    afterwards) or, with ``fit``, with the symmetry layer in place.
    """

    def __init__(self, model, symmetries=SQUARE_SYMMETRIES):
        self.model = model
        self.symmetries = symmetries
        self._check_arguments()

    def _check_arguments(self):
        if not hasattr(self.model, "_check_fitted"):
            raise TypeError(f"model must be a DeepGMM, got {type(self.model).__name__}")
        self.symmetries = _check_symmetries(self.symmetries)
        if hasattr(self.model, "transforms_"):  # an unfitted network waits for fit
            self._check_network()

    def set_params(self, **params):
        """As DeepGMM.set_params (``model__max_iter`` sets the network's); the model and the
        symmetries are checked at once, as by the constructor; refused, nothing changes."""
        before = (self.model, self.symmetries)
        super().set_params(**params)
        try:
            self._check_arguments()
        except (TypeError, ValueError):
            self.model, self.symmetries = before
            raise
        return self

    def _check_network(self):
        self.model._check_fitted()
        check_square(self.model.n_features_in_)

    def fit(self, X, y=None, *, n_rounds=10, search=None, cold_restarts=None, tol=None,
            final_search=True, random_state=None, block_rows=1 << 16, checkpoint=None,
            resume=False):
        """Train the network with the symmetry layer in place, by hard EM over the pairs
        (symmetry, path): each round finds every row's best pair, then runs one EM iteration
        of the network (its own E-step settings) on the rows seen through their symmetries,
        warm-started from the paths found. An unfitted network is first fitted plainly on X
        (its own ``max_iter``); a fitted one is continued. Returns self.

        On BSDS300 patches a GMM-100 trained so scores 0.99 nats above the same GMM trained
        plainly and then averaged over the 8 symmetries, a (100, 5, 5) network 0.25 (README).

        y : ignored, as in scikit-learn (a Pipeline passes it positionally).
        n_rounds : rounds of (search, network iteration) at most.
        search : 'exact' (every path of every g x: |G| exact E-steps per round), 'heuristic'
            (the network's coordinate ascent, warm-started from each (row, g)'s path of the
            round before, plus its restarts; the identity starts from the last fit's paths on
            the same rows), or None: exact when it costs at most 25 random restarts, as for
            the network's own warm start. A later ``fit`` on as many rows goes on from
            the heuristic's (row, g) paths of this one.
        cold_restarts : with the heuristic, the random restarts of a (row, g) pair that has
            no path yet (default: the network's ``n_restarts``). From random starts one
            restart leaves the rows of a trained (600, 5, 5) network 2.7 nats below their best
            paths on average, three 0.9 (BSDS300, README): the first round's choices of g
            are only as good as that.
        tol : stop when the objective changes by less (default: the network's ``tol``).
        final_search : search once more after the last round, so that ``objective_`` and
            ``history_[-1]`` describe the final parameters.
        random_state : the restarts' and the network's random draws (default: the network's).
        block_rows : rows searched at a time (each is copied once per symmetry).
        checkpoint : path; after every round the model and what a resumed fit needs are
            written there atomically (a model file: ``dgmmcore.load`` reads it back as a
            SymmetrizedModel). With the heuristic it holds every (row, g)'s last path.
        resume : go on from the checkpoint this model was loaded from, on the same X, to
            ``n_rounds`` rounds in all: it ends where an uninterrupted fit would.

        X is read into memory (memory maps too), with a copy of its rows seen through their
        symmetries. Sets ``history_`` (per search: objective, the fraction of rows whose
        symmetry changed, rows per symmetry, seconds) and ``objective_``: the mean over rows
        of the best pair's log-density, log(1/|G|) + log pi_p + log N(g x | p). Interrupted
        (Ctrl-C), it warns and re-raises with the network after the last whole round and
        ``history_`` holding the rounds done (no ``objective_``: no search scored them).
        """
        from ._symmetric_em import completed_rounds, fit_symmetrized
        block_rows = check_int(block_rows, "block_rows", minimum=1)
        cold_restarts = check_int(cold_restarts, "cold_restarts", minimum=0, allow_none=True)
        state = None
        if resume:
            state = getattr(self, "_resume_state", None)
            if state is None:
                raise ValueError("resume=True needs a SymmetrizedModel loaded from a checkpoint "
                                 "file (fit(..., checkpoint=PATH) writes them)")
        rounds = []  # filled round by round: an interrupted fit keeps the rounds done
        try:
            fit_symmetrized(self, X, n_rounds, search, tol, final_search, random_state,
                            block_rows, cold_restarts, checkpoint, state, rounds)
        except KeyboardInterrupt:
            # the network holds the parameters after the last whole round (an interrupted
            # network iteration is undone); no search has scored them
            self.history_ = rounds
            self.__dict__.pop("objective_", None)
            warnings.warn(f"fit interrupted: the network holds the parameters after "
                          f"{completed_rounds(rounds)} completed rounds", RuntimeWarning,
                          stacklevel=2)
            raise
        self.history_ = rounds
        self.objective_ = self.history_[-1]["objective"]
        self._resume_state = None
        return self

    @property
    def n_features_in_(self):
        return self.model.n_features_in_

    @property
    def layers(self):
        """The network's layers and the symmetry layer's |G| fixed nodes."""
        return tuple(self.model.layers) + (len(self.symmetries),)

    @property
    def n_paths_(self):
        return self.model.n_paths_ * len(self.symmetries)

    @property
    def n_threads(self):
        return self.model.n_threads

    @n_threads.setter
    def n_threads(self, value):
        self.model.n_threads = value

    def n_parameters(self, identifiable=False):
        """The network's free parameters (see DeepGMM.n_parameters): the symmetry layer has
        none."""
        return self.model.n_parameters(identifiable)

    def score_samples(self, X):
        """log p_G(x) for each row (natural log). X as for DeepGMM.score_samples (an array,
        a memory map or a .npy path, read block by block); each block is scored |G| times."""
        self._check_network()
        source = RowSource(X, n_features=self.n_features_in_)
        out = np.empty(source.n_rows)
        for lo, hi, block in source.blocks():
            seen = [self.model.score_samples(apply_symmetry(block, g)) for g in self.symmetries]
            out[lo:hi] = averaged_log_density(seen)
        return out

    def score(self, X, y=None):
        """Mean log-likelihood per row, in nats (``y`` is ignored, as in scikit-learn)."""
        return float(np.mean(self.score_samples(X)))

    def predict(self, X, block_rows=1 << 16):
        """Each row's most probable (path, symmetry): the exact argmax over every pair, as
        (n, k + 1) ints, the path through the network then the index of the symmetry in
        ``symmetries`` (the layout ``sample`` returns). Ties keep the earlier symmetry."""
        from ._symmetric_em import SymmetrySearch  # it imports this module
        self._check_network()
        block_rows = check_int(block_rows, "block_rows", minimum=1)
        X = RowSource(X, n_features=self.n_features_in_).all_rows()
        layers = tuple(self.model.weights_.shape)
        search = SymmetrySearch(self.symmetries, layers, "exact", len(X))
        which, paths, _ = search.run(self.model, X, 0, block_rows)
        return np.column_stack([unravel_paths(paths, layers), which])

    def sample(self, n_samples=1, random_state=None):
        """Draw ``n_samples`` points: a draw y of the network, seen through g^-1 for a
        uniformly drawn g. Returns (X (n, D), paths (n, k + 1)): each row's path through the
        network and, last, the index of its symmetry in ``symmetries``."""
        n_samples = check_int(n_samples, "n_samples", minimum=1)
        rng = check_random_state(random_state)
        X, paths = self.model.sample(n_samples, random_state=rng)
        which = rng.integers(len(self.symmetries), size=n_samples)
        for k, g in enumerate(self.symmetries):
            chosen = which == k
            if chosen.any():
                X[chosen] = apply_symmetry(X[chosen], inverse_symmetry(g))
        return X, np.column_stack([paths, which])

    def save(self, path):
        """Write the network's model file with the symmetries in its header (atomic)."""
        from ._persistence import save_model
        self._check_network()
        extra = {"symmetries": list(self.symmetries)}
        if getattr(self, "history_", None) is not None:  # trained with the layer in place
            extra["symmetric_history"] = self.history_
        save_model(self.model, path, extra=extra)

    def __repr__(self):
        return f"SymmetrizedModel({self.model!r}, symmetries={list(self.symmetries)})"
