"""E-step drivers around the compiled scoring kernel: exact density, best path, heuristic search.

All functions take a ``PathTable`` and a validated C-contiguous X (float32 or float64) and
return O(n) arrays; nothing of size n x P is ever allocated except by ``path_scores`` for
the rows it is given.
"""
import numpy as np

from . import _scoring
from ._network import order_by_path, ravel_paths

CHUNK = _scoring.CHUNK
_EMPTY_F = np.empty(0)
_EMPTY_I = np.empty(0, dtype=np.intp)
# A search for the best of at least PRUNE_MIN_CANDIDATES candidates per row, in at least
# PRUNE_MIN_FEATURES dimensions, is pruned by a bound on each path's score from _scoring.TAIL
# coordinates of the row (see _scoring, _bound); with fewer the bound costs more than it saves (the
# heuristic's choice of 100 nodes on a random network: 0.84x), and a task can only stop bounding
# after its first windows of candidates. The tasks are longer than CHUNK so that the rows a
# bound leaves in fill the kernel's tiles.
PRUNE_MIN_CANDIDATES = 256
PRUNE_MIN_FEATURES = 48
PRUNE_CHUNK = 1024
# The bound in the directions of largest variance of the table's mixture (_bound) leaves
# fewer pairs to score in full than the one on the last coordinates (on the 16M BSDS300
# network 14.8% against 18.9%: 8-10% faster searches) but costs a triangular solve per path
# to build (about 0.5 s for 15,000 paths), once per table: built for searches of at least
# this many (row, candidate) pairs per path of the table.
MIXTURE_BOUND_MIN_PAIRS = 32768


def _no_tail(dtype):
    """The kernel's arguments for no pruning bound (basis, factors, means)."""
    return (np.empty((0, 0), dtype=dtype), np.empty((0, 0, 0), dtype=dtype),
            np.empty((0, 0), dtype=dtype))


def split_runs(offsets, chunk=CHUNK):
    """Split each group's run of rows [offsets[g], offsets[g+1]) into tasks of <= chunk rows."""
    offsets = np.asarray(offsets, dtype=np.intp)
    sizes = np.diff(offsets)
    n_chunks = -(-sizes // chunk)
    group = np.repeat(np.arange(len(sizes), dtype=np.intp), n_chunks)
    first = np.repeat(offsets[:-1], n_chunks)
    first_chunk = np.repeat(np.cumsum(n_chunks) - n_chunks, n_chunks)
    within = np.arange(len(group), dtype=np.intp) - first_chunk
    start = first + within * chunk
    stop = np.minimum(start + chunk, np.repeat(offsets[1:], n_chunks))
    return group, start.astype(np.intp), stop.astype(np.intp)


def _run(table, X, rows, offsets, cand, n_threads, lse=False, best=False, all_scores=False):
    n = X.shape[0]
    out_lse = np.full(n, np.nan) if lse else _EMPTY_F
    out_best = np.zeros(n, dtype=np.intp) if best else _EMPTY_I
    out_best_score = np.full(n, np.nan) if best else _EMPTY_F
    out_all = np.full((n, cand.shape[1]), np.nan) if all_scores else np.empty((0, cand.shape[1]))
    t = table.astype(X.dtype)
    prune = (best and not lse and not all_scores and cand.shape[1] >= PRUNE_MIN_CANDIDATES
             and X.shape[1] >= PRUNE_MIN_FEATURES)
    group, start, stop = split_runs(offsets, PRUNE_CHUNK if prune else CHUNK)
    tail = _no_tail(X.dtype)
    if prune:
        pairs_per_path = len(rows) * cand.shape[1] / max(len(t.const), 1)
        tail = t.tail_bound(_scoring.TAIL, n_threads,
                            mixture=pairs_per_path >= MIXTURE_BOUND_MIN_PAIRS)
    _scoring.score_groups(X, t.R, t.mean, t.const, *tail, rows, group, start, stop,
                          np.ascontiguousarray(cand, dtype=np.intp),
                          out_lse, out_best, out_best_score, out_all, n_threads)
    if X.dtype == np.float32:
        _redo_overflows(table, X, rows, offsets, cand, n_threads, out_lse, out_best,
                        out_best_score, out_all)
    return out_lse, out_best, out_best_score, out_all


def _redo_overflows(table, X, rows, offsets, cand, n_threads, out_lse, out_best, out_best_score,
                    out_all):
    """float32 can overflow where float64 does not: rescore just those rows (no finite
    log-sum-exp, best score or candidate score), in float64."""
    bad = np.zeros(len(rows), dtype=bool)
    if out_lse.size:
        bad |= ~np.isfinite(out_lse[rows])
    if out_best.size:
        bad |= ~np.isfinite(out_best_score[rows])
    if out_all.size:  # checked in place: out_all[rows] would copy the whole (n, C) matrix
        bad |= ~np.isfinite(out_all).any(axis=1)[rows]
    pos = np.flatnonzero(bad)
    if pos.size == 0:
        return
    # the bad rows keep their groups (and so their candidates), still laid out group by group
    group = np.searchsorted(offsets, pos, side="right") - 1
    sub_offsets = np.zeros(len(offsets), dtype=np.intp)
    np.cumsum(np.bincount(group, minlength=len(offsets) - 1), out=sub_offsets[1:])
    target = rows[pos]
    sub = np.ascontiguousarray(X[target], dtype=np.float64)
    lse, arg, score, scores = _run(table, sub, np.arange(len(pos), dtype=np.intp), sub_offsets,
                                   cand, n_threads, lse=out_lse.size > 0, best=out_best.size > 0,
                                   all_scores=out_all.size > 0)
    if out_lse.size:
        out_lse[target] = lse
    if out_best.size:
        out_best[target], out_best_score[target] = arg, score
    if out_all.size:
        out_all[target] = scores


def _all_rows(n):
    return np.arange(n, dtype=np.intp), np.array([0, n], dtype=np.intp)


def exact_scores(table, X, n_threads, best=True, lse=True):
    """log p(x) over all paths (None without ``lse``: a search for the best path skips an exp
    per path and row), and (optionally) the best path number and its score."""
    rows, offsets = _all_rows(X.shape[0])
    cand = table.active[None, :]
    out_lse, arg, best_score, _ = _run(table, X, rows, offsets, cand, n_threads, lse=lse,
                                       best=best)
    paths = table.active[arg] if best else None
    return out_lse if lse else None, paths, best_score if best else None


def path_scores(table, X, n_threads):
    """(n, P) matrix of log pi_p + log N(x | p) for every path (inactive paths: -inf), scored
    in X's dtype; rows with a score float32 could not hold are rescored in float64."""
    rows, offsets = _all_rows(X.shape[0])
    cand = table.active[None, :]
    *_, scores = _run(table, X, rows, offsets, cand, n_threads, all_scores=True)
    if X.dtype == np.float32:
        bad = np.flatnonzero(~np.isfinite(scores).all(axis=1))
        if bad.size:
            scores[bad] = path_scores(table, X[bad].astype(np.float64), n_threads)[
                :, table.active]
    n_paths = int(np.prod(table.layers))
    if len(table.active) == n_paths:  # every path active: no second (n, P) array
        return scores
    out = np.full((X.shape[0], n_paths), -np.inf)
    out[:, table.active] = scores
    return out


def path_posteriors(table, X, n_threads):
    """(n, P) posterior probabilities of the paths and the (n,) log-densities, from
    ``path_scores`` normalised in place."""
    post = path_scores(table, X, n_threads)
    top = post.max(axis=1)
    post -= top[:, None]
    np.exp(post, out=post)
    total = post.sum(axis=1)
    post /= total[:, None]
    return post, top + np.log(total)


def coordinate_ascent(table, X, paths, passes, n_threads):
    """The paper's heuristic: for each layer in turn, with the rest of each row's path fixed,
    score all N_j choices and keep the best. Rows whose fixed part agrees share one candidate
    list and are scored together. Returns (paths, best scores)."""
    layers = table.layers
    paths = np.array(paths, dtype=np.intp, copy=True)
    score = None
    strides = np.array([int(np.prod(layers[j + 1:], dtype=np.int64)) for j in range(len(layers))])
    for _ in range(passes):
        before = paths.copy()
        for j, n_j in enumerate(layers):
            fixed = paths.copy()
            fixed[:, j] = 0
            base = ravel_paths(fixed, layers)
            arg, score = _best_choice(table, X, base, strides[j], n_j, n_threads)
            paths[:, j] = arg
        if np.array_equal(paths, before):  # a fixed point: every later pass is this one
            break
    return paths, score


def _choice_groups(base, stride, n_choices):
    """Rows grouped by their fixed part ``base``: (row order, group offsets, candidates
    base + stride * k per group, k < n_choices)."""
    order = order_by_path(base)
    keys, starts = np.unique(base[order], return_index=True)
    offsets = np.append(starts, len(order)).astype(np.intp)
    cand = keys[:, None] + stride * np.arange(n_choices, dtype=np.intp)[None, :]
    return order, offsets, cand


def _best_choice(table, X, base, stride, n_choices, n_threads):
    """Per row, the best of the paths base + stride * k (k < n_choices): its k and score.
    Rows with the same base share one candidate list and are scored together."""
    order, offsets, cand = _choice_groups(base, stride, n_choices)
    _, arg, score, _ = _run(table, X, order, offsets, cand, n_threads, best=True)
    return arg, score


def layer_scores(table, X, paths, j, n_threads):
    """(n, N_j) scores of every choice of layer j, the rest of each row's path (``paths``,
    (n, k) node indices) fixed. Rows with no finite score in X's float32 are scored again in
    float64 by ``_run`` (else their ranking would be an arbitrary order of -inf)."""
    layers = table.layers
    fixed = np.array(paths, dtype=np.intp, copy=True)
    fixed[:, j] = 0
    stride = int(np.prod(layers[j + 1:], dtype=np.int64))
    order, offsets, cand = _choice_groups(ravel_paths(fixed, layers), stride, layers[j])
    *_, scores = _run(table, X, order, offsets, cand, n_threads, all_scores=True)
    return scores


def truncated_candidates(table, X, paths, keep, n_threads, ranked=None):
    """Each row's candidate paths around its path ``paths`` (n, k): every combination of the
    ``keep`` best choices of each layer, each layer's choices ranked with the rest of the path
    fixed at the row's (the row's own choice always kept, so its path is a candidate).

    Returned factored as (bases (n, B), offsets (F,), ranked): row i's candidates are
    bases[i, b] + offsets[f]. The layers of at most ``keep`` nodes keep all their choices, the
    same for every row: they make ``offsets``, and the rows that share a base share those F
    candidates (``candidate_scores`` scores them together). B * F = prod(min(keep, N_j)).

    ``ranked`` (n, R, keep): for each of the R layers of more than ``keep`` nodes, the choices
    kept, best first (the row's own first). Given one from an earlier call, those choices are
    kept again without ranking (the costliest part: N_j scorings per row and layer); a row's
    own choice, when missing (its path moved outside them), replaces its last, worst one. Any
    candidate set holding the row's path keeps the bound at least the path's score."""
    layers = table.layers
    n = len(paths)
    strides = [int(np.prod(layers[j + 1:], dtype=np.int64)) for j in range(len(layers))]
    bases = np.zeros((n, 1), dtype=np.intp)
    offsets = np.zeros(1, dtype=np.intp)
    wide = ranked_layers(layers, keep)
    out = np.empty((n, len(wide), keep), dtype=ranking_dtype(layers))
    for j, n_j in enumerate(layers):
        if keep >= n_j:
            offsets = (offsets[:, None] + strides[j] * np.arange(n_j, dtype=np.intp)).ravel()
            continue
        r = wide.index(j)
        if ranked is None:
            out[:, r] = _rank_choices(table, X, paths, j, keep, n_threads)
        else:
            out[:, r] = _with_own_choice(ranked[:, r], paths[:, j])
        kept = out[:, r].astype(np.intp)
        bases = (bases[:, :, None] + strides[j] * kept[:, None, :]).reshape(n, -1)
    return bases, offsets, out


def ranked_layers(layers, keep):
    """The layers truncated EM ranks (more than ``keep`` nodes), in the order of a ranking's
    second axis; the others keep all their choices."""
    return [j for j, n_j in enumerate(layers) if n_j > keep]


def ranking_dtype(layers):
    """The smallest integer type of the kept choices (a ranking of 26.7M rows x 20 choices is
    1 GB as uint16, 4 GB as intp)."""
    return np.uint16 if max(layers) <= 1 << 16 else np.int32


def _rank_choices(table, X, paths, j, keep, n_threads):
    """(n, keep) the ``keep`` best choices of layer j per row, best first, the rest of its path
    fixed; the row's own choice always first."""
    scores = layer_scores(table, X, paths, j, n_threads)
    rows = np.arange(len(paths))
    scores[rows, paths[:, j]] = np.inf
    kept = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
    order = np.argsort(-np.take_along_axis(scores, kept, axis=1), axis=1, kind="stable")
    return np.take_along_axis(kept, order, axis=1)


def _with_own_choice(kept, own):
    """``kept`` (n, keep) with each row's own choice in place of its last one where missing."""
    kept = np.array(kept, copy=True)
    missing = ~(kept == own[:, None].astype(kept.dtype)).any(axis=1)
    kept[missing, -1] = own[missing]
    return kept


def candidate_scores(table, X, bases, offsets, n_threads):
    """(n, B * F) scores of row i against its candidates bases[i, b] + offsets[f] (in that
    order, f fastest). The (row, base) pairs are grouped by base, so each group's rows are
    gathered once and scored against its F candidates together."""
    n, B = bases.shape
    flat = bases.ravel()
    order = order_by_path(flat)
    keys, starts = np.unique(flat[order], return_index=True)
    group_offsets = np.append(starts, len(order)).astype(np.intp)
    group, start, stop = split_runs(group_offsets)
    # row i's pair b goes to row i * B + b of the output: (n, B * F) once reshaped
    scores = np.full((n * B, len(offsets)), np.nan)
    t = table.astype(X.dtype)
    _scoring.score_groups(X, t.R, t.mean, t.const, *_no_tail(X.dtype), order // B, group,
                          start, stop,
                          keys[:, None] + offsets[None, :], _EMPTY_F, _EMPTY_I, _EMPTY_F,
                          scores, n_threads, order)
    return scores.reshape(n, B * len(offsets))


def _splitmix64(x):
    """SplitMix64 finaliser on uint64 arrays: a well-mixed hash of a counter."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def random_paths(layers, key, row_start, n_rows, restart=0):
    """Random start paths for rows row_start .. row_start + n_rows - 1 of the data set.

    Each row's path is a hash of (key, restart, global row index, layer), not a draw from a
    stream, so it does not depend on how the rows are split into blocks or shards."""
    rows = np.arange(row_start, row_start + n_rows, dtype=np.uint64)
    base = _splitmix64(np.uint64(key) ^ _splitmix64(np.uint64(restart) + np.uint64(1)))
    out = np.empty((n_rows, len(layers)), dtype=np.intp)
    for j, n_j in enumerate(layers):
        h = _splitmix64(rows * np.uint64(len(layers)) + np.uint64(j) + base)
        out[:, j] = (h % np.uint64(n_j)).astype(np.intp)
    return out


def heuristic_estep(table, X, paths, key, n_threads, warm_passes=1, n_restarts=1,
                    restart_passes=2, row_start=0):
    """Paper protocol: a warm pass from ``paths`` (when given), then random restarts; keep the
    better path per row. ``key`` (an integer) and the rows' global position ``row_start`` fix
    the random starts. Returns (paths, scores, switch_rate)."""
    if isinstance(key, np.random.Generator):
        key = int(key.integers(2**63))
    n = X.shape[0]
    best_paths, best_score = None, None
    if paths is not None and warm_passes > 0:
        best_paths, best_score = coordinate_ascent(table, X, paths, warm_passes, n_threads)
    switched = np.zeros(n, dtype=bool)
    for restart in range(n_restarts if best_paths is not None else max(n_restarts, 1)):
        start = random_paths(table.layers, key, row_start, n, restart)
        cand_paths, cand_score = coordinate_ascent(table, X, start, restart_passes, n_threads)
        if best_paths is None:
            best_paths, best_score = cand_paths, cand_score
            continue
        better = cand_score > best_score
        switched |= better
        best_paths[better] = cand_paths[better]
        best_score[better] = cand_score[better]
    switch_rate = float(switched.mean()) if paths is not None and warm_passes > 0 else float("nan")
    return best_paths, best_score, switch_rate
