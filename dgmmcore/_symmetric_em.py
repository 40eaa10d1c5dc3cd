"""Hard EM with the symmetry layer in place: SymmetrizedModel.fit.

A SymmetrizedModel is a Deep GMM with one more layer nearest the data: |G| fixed nodes (the
pixel permutations g^-1, each with prior 1/|G|). Its paths are pairs (g, p) with score
log(1/|G|) + log pi_p + log N(g x | p) (|det g| = 1). Hard EM over them alternates

    E: each row's best pair: for every g the network's best path of g x, the best g;
    M: the network's nodes refit to the rows seen through their symmetries, g x.

So one round is a search over the symmetries, then one EM iteration of the network itself
(its own E-step settings: hard, truncated, soft) on those "canonical" rows, warm-started from
the paths the search found. Unlike averaging a network trained without the layer, the nodes
then no longer spend themselves on mirrored and turned copies of one another.

The search over g is exact (every path of every g x; what the network's exact E-step costs,
|G| times) when that pays (``_em.exact_start_pays``), else the network's heuristic, warm-
started from each (row, g)'s path of the round before: the pair chosen can only improve, so
with a hard-EM network the objective does not fall, but where the M-step re-seeds a node that
the turned rows left (nearly) empty (a node that only held mirrored copies of another's rows
is freed that way). A network with truncated or soft E-steps refits to its posteriors, not to
the best pairs, and the objective may fall (bench/results/BSDS300.md, footnote 28).
"""
import time
import warnings

import numpy as np

from . import _estep
from ._data import RowSource
from ._em import ConvergenceWarning, exact_start_pays
from ._network import ravel_paths, unravel_paths
from ._validation import check_float, check_int, check_random_state
from .symmetry import apply_symmetry, check_square

SEARCHES = ("exact", "heuristic")


class SymmetrySearch:
    """Each row's best (symmetry, path) under a network's current parameters.

    ``per_symmetry`` holds every (row, g)'s last path (flat path numbers), the warm start of
    the heuristic's next search; exact searches need none."""

    def __init__(self, symmetries, layers, search, n_rows, cold_restarts=None):
        self.symmetries = symmetries
        self.layers = tuple(layers)
        self.search = search
        self.n_rows = n_rows
        # random restarts for a block of (row, g) pairs without a path yet (None: the
        # network's own); later rounds start warm and use the network's
        self.cold_restarts = cold_restarts
        self.last_which = None  # each row's symmetry at the last search
        self.per_symmetry = None
        if search == "heuristic":
            self.per_symmetry = np.full((n_rows, len(symmetries)), -1, dtype=np.int64)

    def run(self, model, X, key, block_rows):
        """Returns (which (n,) symmetry index, paths (n,) flat, scores (n,) float64 of the
        best path of the chosen g x) over X's rows, block by block."""
        table, threads = model._path_table(), model._threads()
        n = len(X)
        which = np.zeros(n, dtype=np.intp)
        paths = np.zeros(n, dtype=np.intp)
        scores = np.full(n, -np.inf)
        for lo in range(0, n, block_rows):
            hi = min(lo + block_rows, n)
            for k, g in enumerate(self.symmetries):
                seen = apply_symmetry(X[lo:hi], g)
                p, s = self._search(table, seen, k, lo, hi, key, threads, model)
                better = s > scores[lo:hi]  # ties keep the earlier symmetry
                which[lo:hi][better] = k
                paths[lo:hi][better] = p[better]
                scores[lo:hi][better] = s[better]
        return which, paths, scores

    def _search(self, table, seen, k, lo, hi, key, threads, model):
        if self.search == "exact":
            _, p, s = _estep.exact_scores(table, seen, threads, lse=False)
            return p, np.asarray(s, dtype=np.float64)
        prev = self.per_symmetry[lo:hi, k]
        warm = None if np.any(prev < 0) else unravel_paths(prev, self.layers)
        restarts = model.n_restarts
        if warm is None and self.cold_restarts is not None:
            restarts = self.cold_restarts
        # each symmetry's restarts drawn apart (row_start offsets the rows' random keys)
        paths2d, s, _ = _estep.heuristic_estep(
            table, seen, warm, key + k, threads, model.warm_passes, restarts,
            model.restart_passes, row_start=lo)
        p = ravel_paths(paths2d, self.layers)
        self.per_symmetry[lo:hi, k] = p
        return p, np.asarray(s, dtype=np.float64)

    def fits(self, symmetries, layers, search, n_rows):
        """Whether this search state can warm-start a fit with these settings."""
        return (self.symmetries == symmetries and self.layers == tuple(layers)
                and self.search == search and self.n_rows == n_rows)

    def remember(self, which, paths):
        """The paths the network's own E-step found for the chosen pairs: the next warm start."""
        if self.per_symmetry is not None:
            self.per_symmetry[np.arange(len(which)), which] = paths


def canonical_rows(X, which, symmetries):
    """X's rows each seen through its chosen symmetry (a new array of X's shape and dtype)."""
    out = np.empty_like(X)
    for k, g in enumerate(symmetries):
        rows = np.flatnonzero(which == k)
        if rows.size:
            out[rows] = apply_symmetry(X[rows], g)
    return out


def fit_symmetrized(sym, X, n_rounds, search, tol, final_search, random_state, block_rows,
                    cold_restarts=None, checkpoint=None, resume=None, history=None):
    """The work of SymmetrizedModel.fit (see there): appends to ``history`` one dict per
    search (a resumed fit's earlier ones first) and returns it.
    The heuristic's search state stays on ``sym`` (``_search_state``): a later fit on as many
    rows starts every (row, g) pair warm from it, as DeepGMM's warm start does its paths.
    ``checkpoint``: a path written after every round; ``resume``: the state read back from
    one (``load``), to go on from its last round."""
    model = sym.model
    n_rounds = check_int(n_rounds, "n_rounds", minimum=1)
    if search is not None and search not in SEARCHES:
        raise ValueError(f"search must be one of {SEARCHES} or None, got {search!r}")
    rng = check_random_state(random_state if random_state is not None else model.random_state)
    tol = model.tol if tol is None else check_float(tol, "tol", minimum=0)
    n_features = model.n_features_in_ if hasattr(model, "transforms_") else None
    X = RowSource(X, n_features=n_features, min_samples=2).all_rows()
    check_square(X.shape[1])
    if not hasattr(model, "transforms_"):
        model.fit(X)  # the plain fit initialises the network
    sym._check_network()
    layers = tuple(model.weights_.shape)
    history = [] if history is None else history
    prev, first_round = None, 0
    if resume is not None:
        search = check_resume_state(resume, search, len(X), len(sym.symmetries), layers)
        searcher = SymmetrySearch(sym.symmetries, layers, search, len(X))
        searcher.last_which = resume["which"]
        if searcher.per_symmetry is not None:
            searcher.per_symmetry[:] = resume["per_symmetry"]
        rng = restored_generator(resume["rng_state"])
        history.extend(resume["history"])
        prev = resume["previous_objective"]
        first_round = resume["rounds"]
    else:
        if search is None:
            search = "exact" if exact_start_pays(layers, model.restart_passes) else "heuristic"
        searcher = getattr(sym, "_search_state", None)
    if searcher is None or not searcher.fits(sym.symmetries, layers, search, len(X)):
        searcher = SymmetrySearch(sym.symmetries, layers, search, len(X))
        last_paths = getattr(model, "_train_paths", None)
        if (search == "heuristic" and "identity" in sym.symmetries and last_paths is not None
                and len(last_paths) == len(X)):
            # the last fit's paths, if on these rows: the identity's warm start
            searcher.per_symmetry[:, sym.symmetries.index("identity")] = last_paths
    searcher.cold_restarts = cold_restarts
    sym._search_state = searcher
    log_g = np.log(len(sym.symmetries))
    # the network's own settings, which each round replaces while it runs
    own = {name: getattr(model, name) for name in ("warm_start", "max_iter", "random_state",
                                                    "verbose")}
    t_start = time.perf_counter()
    try:
        # one network iteration per round, its line folded into the round's
        model.set_params(warm_start=True, max_iter=1, random_state=rng, verbose=0)
        for r in range(first_round, n_rounds + 1):
            if r == n_rounds and not final_search:
                break
            t0 = time.perf_counter()
            which, paths, scores = searcher.run(model, X, int(rng.integers(2**62)), block_rows)
            objective = float(np.mean(scores)) - log_g
            record = {"round": r, "objective": objective,
                      "symmetry_changed": (float("nan") if searcher.last_which is None
                                           else float(np.mean(which != searcher.last_which))),
                      "symmetry_counts": np.bincount(which, minlength=len(sym.symmetries)).tolist(),
                      "search_seconds": time.perf_counter() - t0}
            searcher.last_which = which
            converged = prev is not None and abs(objective - prev) < tol
            if r < n_rounds and not converged:
                t1 = time.perf_counter()
                with warnings.catch_warnings():  # one iteration per round is the plan
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    # only the heuristic starts from paths; the full and soft E-steps
                    # search every path of the turned rows themselves
                    start = (unravel_paths(paths, layers) if model.estep == "heuristic"
                             else None)
                    model.fit(canonical_rows(X, which, sym.symmetries), init_paths=start,
                              final_estep=False)
                if model._train_paths is not None:
                    searcher.remember(which, model._train_paths)
                record["fit_seconds"] = time.perf_counter() - t1
                # nodes left (nearly) empty re-seeded by the M-step: the objective may dip
                record["reseeded"] = model.history_[-1].get("reseeded", 0)
            history.append(record)
            if own["verbose"]:
                _print_round(record, time.perf_counter() - t_start, n_rounds, first_round)
            if converged:
                break
            prev = objective
            if checkpoint is not None and r < n_rounds:
                write_checkpoint(checkpoint, sym, own, history, prev, rng, searcher)
    finally:
        model.set_params(**own)
    return history


def write_checkpoint(path, sym, own, history, prev, rng, searcher):
    """``sym`` after a round as a model file (``load`` returns the SymmetrizedModel) with what
    a resumed fit needs to go on exactly: the rounds' history and last objective, the random
    generator, each row's last symmetry and, for the heuristic, every (row, g)'s last path.
    ``own``: the network's own hyperparameters (name -> value) that a round replaces while
    it runs; the file keeps these."""
    from ._persistence import atomic_savez, model_arrays
    state = {"rounds": completed_rounds(history), "previous_objective": prev,
             "search": searcher.search, "rng_state": rng.bit_generator.state}
    arrays = model_arrays(sym.model, {"symmetries": list(sym.symmetries),
                                      "symmetric_history": history,
                                      "symmetric_checkpoint": state}, hyperparameters=own)
    arrays["symmetric_which"] = np.asarray(searcher.last_which, dtype=np.int8)
    if searcher.per_symmetry is not None:
        # path numbers fit int32 for any network that fits in memory: half the bytes
        narrow = searcher.per_symmetry.max(initial=0) < np.iinfo(np.int32).max
        arrays["symmetric_paths"] = searcher.per_symmetry.astype(
            np.int32 if narrow else np.int64)
    atomic_savez(path, arrays)


def restored_generator(state):
    """A numpy Generator in a checkpoint's saved state (its own kind of bit generator)."""
    kind = state.get("bit_generator") if isinstance(state, dict) else None
    bit_generator = getattr(np.random, str(kind), None)
    if not (isinstance(bit_generator, type) and issubclass(bit_generator, np.random.BitGenerator)):
        raise ValueError(f"resume: the checkpoint's random generator {kind!r} is not numpy's")
    rng = np.random.Generator(bit_generator())
    try:
        rng.bit_generator.state = state
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"resume: the checkpoint's random generator state is invalid "
                         f"({exc})") from None
    return rng


def check_resume_state(state, search, n_rows, n_symmetries, layers):
    """The search of a checkpoint's run, or a ValueError naming what does not fit: a bad
    file must not index outside the network or the symmetries."""
    if search is not None and search != state["search"]:
        raise ValueError(f"resume: the checkpoint's run searches {state['search']!r}, "
                         f"not {search!r}")
    search = state["search"]
    if search not in SEARCHES:
        raise ValueError(f"resume: the checkpoint names an unknown search {search!r}")
    which = state["which"]
    if which.shape != (n_rows,):
        raise ValueError(f"resume: the checkpoint was written for {len(which)} rows, X has "
                         f"{n_rows}")
    if which.size and (which.min() < 0 or which.max() >= n_symmetries):
        raise ValueError(f"resume: the checkpoint's symmetries lie outside the "
                         f"{n_symmetries} of the model")
    paths = state.get("per_symmetry")
    if search == "heuristic":
        if paths is None or paths.shape != (n_rows, n_symmetries):
            raise ValueError(f"resume: the heuristic's checkpoint needs every (row, "
                             f"symmetry)'s path, shape {(n_rows, n_symmetries)}; got "
                             f"{None if paths is None else paths.shape}")
        if paths.size and (paths.min() < -1 or paths.max() >= int(np.prod(layers))):
            raise ValueError(f"resume: the checkpoint's paths lie outside the network's "
                             f"{int(np.prod(layers))}")
    return search


def completed_rounds(history):
    """Rounds of a fit's history that refitted the network (a final search does not)."""
    return sum(1 for r in history if "fit_seconds" in r)


def _print_round(r, elapsed, n_rounds, first_round=0):
    changed = r["symmetry_changed"]
    changed = "" if changed != changed else f"  changed {100 * changed:5.2f}%"
    fit = f"  fit {r['fit_seconds']:7.2f}s" if "fit_seconds" in r else ""
    left = n_rounds - r["round"] - 1  # rounds still to go, the final search aside
    # averaged over this run's rounds (a resumed run's earlier ones took no time here)
    eta = (f"  ETA {elapsed / (r['round'] + 1 - first_round) * left:8.1f}s"
           if left > 0 else "")
    print(f"round {r['round']:3d}  objective {r['objective']:12.5f}{changed}"
          f"  search {r['search_seconds']:7.2f}s{fit}{eta}", flush=True)
