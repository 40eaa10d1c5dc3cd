"""Where the E-step runs: over the blocks of a local RowSource, or (``_distributed``) over the
shards of a Dask cluster. Both return the same merged per-path statistics."""
from dataclasses import dataclass

import numpy as np

from . import _estep, _suffstats
from ._network import PathTable, ravel_paths, unravel_paths
from ._validation import check_layers


@dataclass(frozen=True)
class EStepConfig:
    estep: str
    layers: tuple
    warm_passes: int
    n_restarts: int
    restart_passes: int
    truncation: int = 0  # > 0: truncated soft EM around the path found (0: hard EM)
    rerank_every: int = 1  # truncated EM ranks each layer's choices every this many E-steps

    @property
    def keeps_ranking(self):
        """Whether the executor must hold each row's kept choices for later E-steps."""
        return bool(self.truncation) and self.rerank_every > 1

    @property
    def searches(self):
        """Whether a warm-started heuristic E-step searches; with neither a warm pass nor a
        restart (allowed with truncation only) truncated EM's candidates are its search."""
        return self.estep != "heuristic" or self.warm_passes > 0 or self.n_restarts > 0

    @classmethod
    def of(cls, model):
        return cls(model.estep, check_layers(model.layers), model.warm_passes, model.n_restarts,
                   model.restart_passes, model.truncation or 0, model.rerank_every)


def build_table(params):
    A, b, log_w, Q = params
    return PathTable(A, b, log_w, Q=Q)


def estep_block(table, X, prev, config, key, row_start, n_threads, sums, ranked=None):
    """E-step of one block of rows, its statistics added to ``sums`` (a PathSums about the
    path means, shared by the blocks of one E-step). ``prev``: the rows' flat paths from the
    last E-step or None. Returns (sum of objectives, number of switched rows (nan if no warm
    start), flat paths or None for soft EM, the kept choices of truncated EM or None). With
    ``config.truncation`` the paths found (the best the search reached) anchor truncated soft
    statistics, and each row's best candidate is its new path; without a search
    (``config.searches`` False) the last E-step's paths anchor them. ``ranked``: the rows'
    kept choices from an earlier E-step, reused instead of ranking again."""
    if config.estep == "soft":
        loglik = _suffstats.add_soft(sums, X, table, n_threads)
        return float(loglik.sum()), float("nan"), None, None
    if config.truncation and prev is not None and not config.searches:
        paths, switched = prev, 0.0
    elif config.estep == "full" or (len(config.layers) == 1 and prev is not None):
        # with one layer a coordinate-ascent pass is already the exact search: restarts
        # cannot win, so the heuristic costs a third of the work and switches no row
        _, paths, score = _estep.exact_scores(table, X, n_threads, lse=False)
        switched = float("nan") if config.estep == "full" else 0.0
    else:
        prev2d = None if prev is None else unravel_paths(prev, config.layers)
        paths2d, score, switch = _estep.heuristic_estep(
            table, X, prev2d, key, n_threads, config.warm_passes, config.n_restarts,
            config.restart_passes, row_start=row_start)
        paths = ravel_paths(paths2d, config.layers)
        switched = switch * X.shape[0]
    if config.truncation:
        # the statistics come from the candidates around the paths found; the objective is
        # then the log-sum-exp over them (a tighter bound than the best path's score)
        score, paths, ranked = _suffstats.add_truncated(
            sums, X, table, unravel_paths(paths, config.layers), config.truncation, n_threads,
            ranked=ranked, keep_ranking=config.keeps_ranking)
    else:
        sums.add_hard(X, paths, n_threads)
        ranked = None
    return float(np.sum(score)), switched, paths, ranked


class LocalExecutor:
    """E-steps over the blocks of a RowSource in this process."""

    def __init__(self, source, n_threads):
        self.source = source
        self.n_threads = n_threads
        self.n_rows = source.n_rows
        self.n_features = source.n_features
        self.paths = None
        self.ranked = None  # truncated EM's kept choices per row, when they are reused

    def sample_rows(self, rng, max_rows):
        if self.n_rows <= max_rows:
            return np.asarray(self.source.all_rows(), dtype=np.float64)
        index = np.sort(rng.choice(self.n_rows, max_rows, replace=False))
        return np.asarray(self.source.take(index), dtype=np.float64)

    def get_paths(self):
        return self.paths

    def set_paths(self, paths):
        self.paths = None if paths is None else np.asarray(paths, dtype=np.intp)
        self.ranked = None  # chosen around other paths

    def get_ranked(self):
        return self.ranked

    def set_ranked(self, ranked):
        self.ranked = ranked

    def estep(self, params, config, key, rerank=True):
        """Returns (sum of objectives, merged stats, switched rows). Without ``rerank``
        truncated EM reuses the kept choices of the last E-step that ranked them (when this
        executor holds them: ``config.keeps_ranking``)."""
        table = build_table(params)
        hard = config.estep != "soft"
        new_paths = np.empty(self.n_rows, dtype=np.intp) if hard else None
        reuse = self.ranked if not rerank and config.keeps_ranking else None
        new_ranked = None
        sums = _suffstats.PathSums(table.mean64)  # one set for all blocks, finished once
        total, switched = 0.0, 0.0
        for lo, hi, X in self.source.blocks():
            prev = None if self.paths is None else self.paths[lo:hi]
            score_sum, sw, paths, ranked = estep_block(
                table, X, prev, config, key, lo, self.n_threads, sums,
                None if reuse is None else reuse[lo:hi])
            total += score_sum
            switched += sw
            if hard:
                new_paths[lo:hi] = paths
            if config.keeps_ranking:
                if new_ranked is None:  # in place over the reused ones: a block's are read first
                    new_ranked = reuse if reuse is not None else np.empty(
                        (self.n_rows,) + ranked.shape[1:], ranked.dtype)
                new_ranked[lo:hi] = ranked
        if hard:
            self.paths = new_paths
        self.ranked = new_ranked
        return total, sums.stats(), switched

    def close(self):
        pass
