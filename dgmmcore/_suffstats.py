"""Per-path sufficient statistics of the data: counts, means and centred scatter matrices.

Hard assignments and soft responsibilities (those above a floor) go through the same compiled
``scatter_tasks`` kernel, grouped by path.
"""
from dataclasses import dataclass

import numpy as np

from . import _estep, _scoring, _stats
from ._network import order_by_path
from ._threads import single_threaded_blas

# Rows per statistics task: large enough to amortise the task, small enough to balance threads.
SEGMENT = 8192


@dataclass
class PathStats:
    """counts (P,), means (P, D) and centred scatters (P, D, D) = sum (x - mean)(x - mean)^T."""
    counts: np.ndarray
    means: np.ndarray
    scatters: np.ndarray

    # Pickled (Dask moves statistics between workers and to the client) the scatters travel as
    # upper triangles: half the bytes. They are exactly symmetric, so nothing is lost.
    def __getstate__(self):
        upper = np.triu_indices(self.means.shape[1])
        return {"counts": self.counts, "means": self.means,
                "upper": np.ascontiguousarray(self.scatters[:, upper[0], upper[1]])}

    def __setstate__(self, state):
        counts, means, packed = state["counts"], state["means"], state["upper"]
        D = means.shape[1]
        upper = np.triu_indices(D)
        scatters = np.empty((len(counts), D, D))
        scatters[:, upper[0], upper[1]] = packed
        scatters[:, upper[1], upper[0]] = packed
        self.counts, self.means, self.scatters = counts, means, scatters


def merge_stats(a, b):
    """Statistics of the union of two disjoint row sets (Chan et al.'s pairwise update)."""
    if a is None:
        return b
    n = a.counts + b.counts
    safe = np.where(n > 0, n, 1.0)
    delta = b.means - a.means
    means = a.means + delta * (b.counts / safe)[:, None]
    w = a.counts * b.counts / safe
    scat = a.scatters + b.scatters + w[:, None, None] * np.einsum("pi,pj->pij", delta, delta)
    return PathStats(n, means, scat)


def hard_stats(X, path_index, n_paths, shift, n_threads, seg=SEGMENT):
    """Statistics of rows assigned to paths ``path_index`` (n,), scattered about ``shift`` (P, D)
    (typically the current path means) and then centred exactly (``PathSums.add_hard``)."""
    sums = PathSums(shift)
    if len(sums.counts) != n_paths:
        raise ValueError(f"shift has {len(sums.counts)} paths, expected {n_paths}")
    sums.add_hard(X, path_index, n_threads, seg)
    return sums.stats()


def _accumulate_about(X, rows, path_index, weights, shift, sums, scat, n_threads):
    """sums[p] += sum w (x - shift[p]) and the upper triangle of scat[p] += sum w (x -
    shift[p])(x - shift[p])^T over the entries with path p, in place: one task per path (task
    p writes slot p), so a path's entries are summed by one thread in entry order and no
    per-task (P, D, D) partials are needed. For block after block of soft entries, where
    those partials and their reduction would cost more than the scoring at many paths."""
    P = len(sums)
    order = order_by_path(path_index)
    offsets = np.zeros(P + 1, dtype=np.intp)
    np.cumsum(np.bincount(path_index, minlength=P), out=offsets[1:])
    with single_threaded_blas():
        _stats.scatter_tasks(X, np.ascontiguousarray(rows[order]), np.arange(P, dtype=np.intp),
                             offsets[:-1], offsets[1:], shift, sums, scat, n_threads,
                             np.ascontiguousarray(weights[order], dtype=np.float64))


# Paths per slice of the (P, D, D) finishing steps below: their temporaries stay a few MB
# where whole-array expressions made several 476 MB ones (finishing the weighted sums of
# 15,000 paths: 2.6 s against 0.7 s, the same values).
PATH_SLICE = 256


def _mirror_upper(scat):
    """In place: each scatter's lower triangle from its upper one."""
    for lo in range(0, len(scat), PATH_SLICE):
        s = scat[lo:lo + PATH_SLICE]
        s[...] = np.triu(s) + np.swapaxes(np.triu(s, 1), 1, 2)


def _centre(counts, sums, scat, shift):
    """From sums about ``shift`` to means and scatters about the means; ``scat`` (the caller's
    own, symmetric) is centred in place."""
    safe = np.maximum(counts, 1e-300)[:, None]
    delta = sums / safe
    means = shift + delta
    for lo in range(0, len(scat), PATH_SLICE):
        s, d = scat[lo:lo + PATH_SLICE], delta[lo:lo + PATH_SLICE]
        s -= counts[lo:lo + PATH_SLICE, None, None] * np.einsum("pi,pj->pij", d, d)
        s[...] = 0.5 * (s + np.swapaxes(s, 1, 2))
    means[counts == 0] = shift[counts == 0]
    return PathStats(counts, means, scat)


# Responsibilities below this are left out of the soft statistics: a row loses at most
# P * RESP_FLOOR of its unit weight (2.5e-7 for 2,500 paths), and the accumulation costs what
# the paths that matter cost instead of a weighted product over every path.
RESP_FLOOR = 1e-10


class PathSums:
    """Per-path counts, sums and scatters about ``shift`` (P, D) (the current path means: about
    a nearby point no digits are lost to cancellation), added to in place by entry list after
    entry list and block after block of rows, then finished once (``stats``). An E-step over
    many blocks (a memory-mapped file) so holds one (P, D, D) array, not one per block merged
    into the next (476 MB and a pairwise update per block at 15,000 paths)."""

    def __init__(self, shift):
        self.shift = np.ascontiguousarray(shift, dtype=np.float64)
        P, D = self.shift.shape
        self.counts = np.zeros(P)
        self.sums = np.zeros((P, D))
        self.scat = np.zeros((P, D, D))

    def add_weighted(self, X, rows, paths, weights, n_threads):
        """The entries (X[rows[i]], paths[i]) with weights[i] (soft responsibilities)."""
        paths = np.asarray(paths, dtype=np.intp)  # no copy of the entry lists when intp already
        self.counts += np.bincount(paths, weights, minlength=len(self.counts))
        _accumulate_about(X, np.asarray(rows, dtype=np.intp), paths, weights, self.shift,
                          self.sums, self.scat, n_threads)

    def add_hard(self, X, path_index, n_threads, seg=SEGMENT):
        """Every row of X with its path ``path_index`` (n,), weight 1. A path's rows go in tasks
        of at most ``seg`` (a path can hold millions of rows): a path of one task is summed in
        place, the tasks of a longer one into partial slots then added in task order, so the
        sums do not depend on the thread count."""
        path_index = np.asarray(path_index, dtype=np.intp)
        P, D = self.sums.shape
        sizes = np.bincount(path_index, minlength=P)
        self.counts += sizes
        order = order_by_path(path_index)  # the rows, path by path
        offsets = np.zeros(P + 1, dtype=np.intp)
        np.cumsum(sizes, out=offsets[1:])
        task_path, start, stop = _estep.split_runs(offsets, seg)
        split = sizes[task_path] > seg
        whole = ~split
        with single_threaded_blas():
            _stats.scatter_tasks(X, order, task_path[whole], start[whole], stop[whole],
                                 self.shift, self.sums, self.scat, n_threads,
                                 slots=task_path[whole])
            if split.any():
                long_path = task_path[split]
                part_sum = np.zeros((len(long_path), D))
                part_scat = np.zeros((len(long_path), D, D))
                _stats.scatter_tasks(X, order, long_path, start[split], stop[split],
                                     self.shift, part_sum, part_scat, n_threads)
                used, first = np.unique(long_path, return_index=True)
                self.sums[used] += np.add.reduceat(part_sum, first, axis=0)
                self.scat[used] += np.add.reduceat(part_scat, first, axis=0)

    def stats(self):
        """The finished PathStats; consumes the scatters (finished in place, once)."""
        # the kernel fills the upper triangle
        scat, self.scat = self.scat, None
        _mirror_upper(scat)
        return _centre(self.counts, self.sums, scat, self.shift)


def _scoring_dtype(X):
    """float32 rows are scored in float32, as by the hard E-steps."""
    return np.float32 if X.dtype == np.float32 else np.float64


def soft_stats(X, table, n_threads, chunk=4096, block=1 << 16, floor=RESP_FLOOR):
    """Responsibility-weighted statistics over all paths and the per-row log-likelihood
    (``add_soft`` into fresh sums about the path means)."""
    sums = PathSums(table.mean64)
    loglik = add_soft(sums, X, table, n_threads, chunk, block, floor)
    return sums.stats(), loglik


def add_soft(sums, X, table, n_threads, chunk=4096, block=1 << 16, floor=RESP_FLOOR):
    """Adds the rows' responsibility-weighted entries over all paths to ``sums`` (a PathSums);
    returns the per-row log-likelihood.

    Scores are computed ``chunk`` rows at a time (an n x P matrix is never held), in float32
    for float32 X (statistics in float64 either way), and turned into posteriors by the
    compiled ``posterior_entries`` (as truncated EM's); the
    (row, path, responsibility) entries above ``floor`` of ``block`` rows go through the same
    compiled scatter as hard assignments, about the path means, summed in place block after
    block (``_accumulate_about``)."""
    n = X.shape[0]
    loglik = np.empty(n)
    dtype = _scoring_dtype(X)
    scoring = table.astype(dtype)  # converted once
    for b_lo in range(0, n, block):
        Xb = np.ascontiguousarray(X[b_lo:b_lo + block], dtype=dtype)
        rows, paths, weights = [], [], []
        for lo in range(0, Xb.shape[0], chunk):
            scores = _estep.path_scores(scoring, Xb[lo:lo + chunk], n_threads)
            loglik[b_lo + lo:b_lo + lo + len(scores)], _, r, p, w = _scoring.posterior_entries(
                scores, floor, n_threads)
            rows.append(r + lo)
            paths.append(p)
            weights.append(w)
        sums.add_weighted(Xb, *(np.concatenate(a) for a in (rows, paths, weights)), n_threads)
    return loglik


# Truncated soft EM's floor: a row's candidates are the paths that matter, and above 1e-6 a
# BSDS300 patch of the 24M (600, 5, 5) network keeps 85 of its 1,250 (332 above 1e-10),
# giving up 2e-5 of its weight on average (8,000 patches): a quarter of the accumulation.
TRUNCATED_FLOOR = 1e-6
# Candidate (row, path) pairs per block of truncated soft EM: bounds the block's few arrays
# of that length (~0.5 GB at 2^24).
TRUNCATED_BLOCK_PAIRS = 1 << 24
# Entries (above the floor) collected over blocks before they are accumulated: the scatter
# kernel then sees hundreds of entries per path per call, where its SYRKs run efficiently.
ACCUMULATE_ENTRIES = 1 << 23


def truncated_stats(X, table, paths, keep, n_threads, floor=None, ranked=None,
                    keep_ranking=False, block_pairs=TRUNCATED_BLOCK_PAIRS,
                    accumulate_entries=ACCUMULATE_ENTRIES):
    """Statistics of truncated soft EM (``add_truncated`` into fresh sums about the path
    means). Returns (stats, loglik, best, ranked)."""
    sums = PathSums(table.mean64)
    loglik, best, ranked_out = add_truncated(sums, X, table, paths, keep, n_threads, floor,
                                             ranked, keep_ranking, block_pairs,
                                             accumulate_entries)
    return sums.stats(), loglik, best, ranked_out


def add_truncated(sums, X, table, paths, keep, n_threads, floor=None, ranked=None,
                  keep_ranking=False, block_pairs=TRUNCATED_BLOCK_PAIRS,
                  accumulate_entries=ACCUMULATE_ENTRIES):
    """Adds truncated soft EM's entries to ``sums`` (a PathSums); returns the per-row
    log-sum-exp over the candidates and each row's best candidate (a flat path index: at
    least as good as ``paths``, one of them).

    Each row's responsibilities are its posterior restricted to its candidate paths
    (``_estep.truncated_candidates`` around ``paths``, (n, k) node indices: the keep best
    choices per layer) and renormalised over them: the best distribution over paths within
    that set, so the log-sum-exp over the candidates is a lower bound on log p(x) that is at
    least the path's own score (hard EM is keep=1; keep >= every N_j is soft EM).
    Entries above ``floor`` (default TRUNCATED_FLOOR) are accumulated as in ``add_soft``.
    ``ranked``: the choices an earlier call kept, reused instead of ranking them again
    (``_estep.truncated_candidates``). Returns (loglik, best, ranked): the choices kept this
    time with ``keep_ranking``, else None (40 B a row that nobody reads)."""
    floor = TRUNCATED_FLOOR if floor is None else floor
    n = X.shape[0]
    n_cand = int(np.prod([min(keep, n_j) for n_j in table.layers]))
    block = max(1, block_pairs // n_cand)
    loglik = np.empty(n)
    best = np.empty(n, dtype=np.intp)
    dtype = _scoring_dtype(X)
    X = np.ascontiguousarray(X, dtype=dtype)
    scoring = table.astype(dtype)
    entries, n_entries = [], 0
    ranked_out = None
    if keep_ranking:
        ranked_out = np.empty((n, len(_estep.ranked_layers(table.layers, keep)), keep),
                              dtype=_estep.ranking_dtype(table.layers))
    for lo in range(0, n, block):
        Xb = X[lo:lo + block]
        bases, offsets, kept = _estep.truncated_candidates(
            scoring, Xb, paths[lo:lo + block], keep, n_threads,
            None if ranked is None else ranked[lo:lo + block])
        if keep_ranking:
            ranked_out[lo:lo + len(Xb)] = kept
        scores = _estep.candidate_scores(scoring, Xb, bases, offsets, n_threads)
        block_loglik, top, r, c, w = _scoring.posterior_entries(scores, floor, n_threads)
        bad = np.flatnonzero(~np.isfinite(block_loglik))
        if bad.size and dtype == np.float32:  # float32 overflowed where float64 may not
            block_loglik, top, r, c, w = _float64_entries(
                table, Xb, bases, offsets, floor, n_threads, bad, block_loglik, top, r, c, w)
        loglik[lo:lo + len(Xb)] = block_loglik
        F = len(offsets)
        best[lo:lo + len(Xb)] = bases[np.arange(len(Xb)), top // F] + offsets[top % F]
        entries.append((r + lo, bases[r, c // F] + offsets[c % F], w))
        n_entries += len(r)
        if n_entries >= accumulate_entries or lo + block >= n:
            sums.add_weighted(X, *(np.concatenate(a) for a in zip(*entries)), n_threads)
            entries, n_entries = [], 0
    return loglik, best, ranked_out


def _float64_entries(table, X, bases, offsets, floor, n_threads, bad, loglik, top, rows, cols,
                     weights):
    """``posterior_entries``' results for X with its ``bad`` rows (no finite log-sum-exp in
    float32, so no entries) scored again in float64: their entries go in among the others,
    row after row, as if the whole block had been scored so."""
    scores = _estep.candidate_scores(table.astype(np.float64), X[bad].astype(np.float64),
                                     bases[bad], offsets, n_threads)
    loglik[bad], top[bad], r, c, w = _scoring.posterior_entries(scores, floor, n_threads)
    rows, cols, weights = (np.concatenate(a) for a in ((rows, bad[r]), (cols, c), (weights, w)))
    order = np.argsort(rows, kind="stable")
    return loglik, top, rows[order], cols[order], weights[order]
