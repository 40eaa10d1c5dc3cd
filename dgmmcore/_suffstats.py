"""Per-path sufficient statistics of the data: counts, means and centred scatter matrices.

Hard assignments go through the compiled ``scatter_tasks`` kernel; soft responsibilities are
accumulated chunk by chunk with BLAS (soft EM is for networks with few paths).
"""
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from . import _estep, _stats
from ._threads import single_threaded_blas

# Rows per statistics task: large enough to amortise the task, small enough to balance threads.
SEGMENT = 8192


@dataclass
class PathStats:
    """counts (P,), means (P, D) and centred scatters (P, D, D) = sum (x - mean)(x - mean)^T."""
    counts: np.ndarray
    means: np.ndarray
    scatters: np.ndarray


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
    (typically the current path means) and then centred exactly.

    Each task covers at most ``seg`` rows of one path and writes its own slot; slots are summed
    in task order, so the result does not depend on the thread count."""
    n, D = X.shape
    path_index = np.asarray(path_index, dtype=np.intp)
    counts = np.bincount(path_index, minlength=n_paths).astype(np.float64)
    order = np.argsort(path_index, kind="stable").astype(np.intp)
    offsets = np.concatenate([[0], np.cumsum(counts.astype(np.intp))]).astype(np.intp)
    task_path, start, stop = _estep.split_runs(offsets, seg)
    shift = np.ascontiguousarray(shift, dtype=np.float64)
    part_sum = np.zeros((len(task_path), D))
    part_scatter = np.zeros((len(task_path), D, D))
    with single_threaded_blas():
        _stats.scatter_tasks(X, order, task_path, start, stop, shift, part_sum, part_scatter,
                             n_threads)
    sums = np.zeros((n_paths, D))
    scat = np.zeros((n_paths, D, D))
    used = np.unique(task_path)
    if len(task_path):
        first = np.searchsorted(task_path, used)
        sums[used] = np.add.reduceat(part_sum, first, axis=0)
        scat[used] = np.add.reduceat(part_scatter, first, axis=0)
    scat = np.triu(scat) + np.swapaxes(np.triu(scat, 1), 1, 2)  # kernel fills the upper triangle
    return _centre(counts, sums, scat, shift)


def _centre(counts, sums, scat, shift):
    """From sums about ``shift`` to means and scatters about the means."""
    safe = np.maximum(counts, 1e-300)[:, None]
    delta = sums / safe
    means = shift + delta
    scat = scat - counts[:, None, None] * np.einsum("pi,pj->pij", delta, delta)
    scat = 0.5 * (scat + np.swapaxes(scat, 1, 2))
    means[counts == 0] = shift[counts == 0]
    return PathStats(counts, means, scat)


def soft_stats(X, table, n_threads, chunk=4096):
    """Responsibility-weighted statistics over all paths and the per-row log-likelihood."""
    n, D = X.shape
    P = int(np.prod(table.layers))
    shift = table.mean64
    counts = np.zeros(P)
    sums = np.zeros((P, D))
    scat = np.zeros((P, D, D))
    loglik = np.empty(n)
    for lo in range(0, n, chunk):
        Xc = np.asarray(X[lo:lo + chunk], dtype=np.float64)
        scores = _estep.path_scores(table, Xc, n_threads)
        lse = logsumexp(scores, axis=1)
        loglik[lo:lo + chunk] = lse
        resp = np.exp(scores - lse[:, None])
        counts += resp.sum(axis=0)
        for p in np.flatnonzero(resp.sum(axis=0) > 0):
            Y = Xc - shift[p]
            wY = resp[:, p, None] * Y
            sums[p] += wY.sum(axis=0)
            scat[p] += wY.T @ Y
    return _centre(counts, sums, scat, shift), loglik
