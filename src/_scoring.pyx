"""Score data rows under sets of Gaussian paths: the hot loop of every E-step.

Each path p is stored as its precision's upper-triangular factor R_p (R_p^T R_p = Sigma_p^{-1}),
its mean mu_p and a constant c_p = log pi_p + log|det R_p| - D/2 log(2 pi), so that

    log pi_p + log N(x | mu_p, Sigma_p) = c_p - 1/2 ||R_p (x - mu_p)||^2.

Rows are processed in tasks: a task is a run of at most CHUNK rows of one group, and a group is a
set of rows that share the same list of candidate paths (all paths for the exact density; the
N_j alternatives of one layer for the heuristic E-step). A task's rows are gathered and
transposed once; for each candidate the fused kernel in _trikernel.h centres them, multiplies by
the triangular R_p (half the flops of a GEMM) and returns squared norms without writing z to
memory, and the scores are reduced into the running outputs while they are in cache.

A search for the best candidate alone (no log-sum-exp, no score matrix) can be pruned: each
candidate is first bounded on every row of the task from the row's TAIL coordinates in a
basis of the bound (its TAIL x TAIL factors cost a sixth of the full ones at D = 63), and
only the rows whose bound beats their best score so far are gathered and scored in full. The
bound only skips candidates that could not have become the best, so the result is the same as
without it.

Every row is scored by one thread, over its candidates in a fixed order, so results do not depend
on the number of threads.
"""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange, parallel
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from libc.math cimport exp, log, INFINITY

from cython cimport floating
from scipy.linalg.cython_blas cimport dtrsm
include "_omp.pxi"

cnp.import_array()

# Rows per task: the centred buffer (CHUNK x D) stays in L2 while it is reused by TRMM and the
# norms.
CHUNK = 256

# A task's scores of every candidate (out_all) are collected in a per-thread buffer of up to this
# many doubles and then written row by row: written one candidate at a time, they went to rows
# spread over the whole output (a group's rows are scattered), a cache and TLB miss per score.
cdef Py_ssize_t ALL_BUFFER_DOUBLES = 1 << 20

# exp(-LSE_CUTOFF) is below double epsilon: such terms cannot change a running log-sum-exp.
cdef double LSE_CUTOFF = 40.0

# Best-path search with pruning (score_groups with a tail table): for any T x D matrix B of
# rank T, a path's score is at most c_p - 1/2 ||T_p (B x - B mu_p)||^2 with T_p^T T_p =
# (B Sigma_p B^T)^-1: the Mahalanobis distance of the marginal of B x, never more than the
# whole. (With B the last T coordinates, T_p is the trailing T x T block of R_p.) A row whose
# bound cannot beat its best score so far skips the path; the rest are compacted and scored in
# full. The bound's squared norm is shrunk by these relative slacks so that rounding (float32
# accumulates z in float) can never prune a path the full kernel would have scored higher.
TAIL = 24
cdef double SLACK_DOUBLE = 1e-9
cdef double SLACK_FLOAT = 1e-4
# A task stops bounding when, in a window of PRUNE_WINDOW candidates (after the first), the
# bound kept more than PRUNE_MAX_KEPT of the rows: the kept rows are gathered before they are
# scored, so the bound pays only where it keeps few (a trained (600, 5, 5) network on BSDS300
# keeps 10-28% per window; a random network of near-identity nodes 45-80%).
cdef Py_ssize_t PRUNE_WINDOW = 128
cdef double PRUNE_MAX_KEPT = 0.4


cdef extern from "_trikernel.h" nogil:
    int dgmm_row_block()
    size_t dgmm_tri_work_size(int D, int ldt)
    int dgmm_tri_isa()
    void dgmm_gather_chunk_d(int D, int m, const double *x, int ldx, const cnp.intp_t *rows,
                             double *xt, int ldt)
    void dgmm_gather_chunk_s(int D, int m, const float *x, int ldx, const cnp.intp_t *rows,
                             float *xt, int ldt)
    void dgmm_tri_sqnorm_d(int D, int m, const double *xt, int ldt, const double *mu,
                           const double *R, double *work, double *out)
    void dgmm_tri_sqnorm_s(int D, int m, const float *xt, int ldt, const float *mu,
                           const float *R, float *work, double *out)

cdef extern from "stdlib.h" nogil:
    int posix_memalign(void **memptr, size_t alignment, size_t size)


def kernel_isa():
    """Instruction set the scoring kernel dispatches to: 'generic', 'avx2' or 'avx512'."""
    return ("generic", "avx2", "avx512")[dgmm_tri_isa()]


cdef void _score_task(
    const floating[:, ::1] X,
    const floating[:, :, ::1] R,
    const floating[:, ::1] mean,
    const double[::1] const_,
    const floating[:, ::1] tail_basis,
    const floating[:, :, ::1] R_tail,
    const floating[:, ::1] mean_tail,
    bint prune,
    const cnp.intp_t[::1] rows,
    const cnp.intp_t *cand,
    Py_ssize_t C,
    Py_ssize_t start,
    Py_ssize_t stop,
    int ldt,
    floating *xt,
    floating *yt,
    floating *xt_kept,
    floating *work,
    double *sqnorm,
    cnp.intp_t *kept,
    double *run_max,
    double *run_sum,
    cnp.intp_t *run_arg,
    double *allbuf,
    double[::1] out_lse,
    cnp.intp_t[::1] out_best,
    double[::1] out_best_score,
    double[:, ::1] out_all,
    const cnp.intp_t[::1] out_rows,
) noexcept nogil:
    cdef int m = <int> (stop - start)
    cdef int D = <int> X.shape[1]
    cdef Py_ssize_t r, c, p, row, i, j, k
    cdef double score, mx
    cdef floating u
    cdef bint want_lse = out_lse.shape[0] > 0
    cdef bint want_best = out_best.shape[0] > 0
    cdef bint want_all = out_all.shape[0] > 0
    cdef int T = <int> R_tail.shape[1]
    cdef double shrink = 1.0 - (SLACK_DOUBLE if floating is double else SLACK_FLOAT)
    cdef Py_ssize_t window_rows = 0, window_kept = 0

    for r in range(m):
        run_max[r] = -INFINITY
        run_sum[r] = 0.0
        run_arg[r] = 0

    # the task's rows, transposed once (D x ldt), are then scored against every candidate
    if floating is double:
        dgmm_gather_chunk_d(D, m, &X[0, 0], D, &rows[start], xt, ldt)
    else:
        dgmm_gather_chunk_s(D, m, &X[0, 0], D, &rows[start], xt, ldt)

    if prune:
        # the rows' T coordinates in the bound's basis, y = B x, once per task (the padding
        # rows of xt are zeros, so are y's)
        for i in range(T):
            for r in range(ldt):
                yt[i * ldt + r] = 0
            for j in range(D):
                u = tail_basis[i, j]
                for r in range(ldt):
                    yt[i * ldt + r] = yt[i * ldt + r] + u * xt[j * ldt + r]

    for c in range(C):
        p = cand[c]
        if prune:
            # the bound on every row, then only the rows it leaves in the race
            if floating is double:
                dgmm_tri_sqnorm_d(T, m, yt, ldt, &mean_tail[p, 0], &R_tail[p, 0, 0], work,
                                  sqnorm)
            else:
                dgmm_tri_sqnorm_s(T, m, yt, ldt, &mean_tail[p, 0], &R_tail[p, 0, 0], work,
                                  sqnorm)
            k = 0
            for r in range(m):
                if const_[p] - 0.5 * shrink * sqnorm[r] > run_max[r]:
                    kept[k] = r
                    k = k + 1
            # where the bound keeps most rows it costs more than it saves: stop bounding
            # (the first window is left out: the rows' best scores are still poor there)
            window_rows = window_rows + m
            window_kept = window_kept + k
            if (c + 1) % PRUNE_WINDOW == 0:
                if c + 1 > PRUNE_WINDOW and window_kept > PRUNE_MAX_KEPT * window_rows:
                    prune = False
                window_rows = 0
                window_kept = 0
            if k == 0:
                continue
            if 2 * k <= m:
                for j in range(D):
                    for i in range(k):
                        xt_kept[j * ldt + i] = xt[j * ldt + kept[i]]
                if floating is double:
                    dgmm_tri_sqnorm_d(D, k, xt_kept, ldt, &mean[p, 0], &R[p, 0, 0], work,
                                      sqnorm)
                else:
                    dgmm_tri_sqnorm_s(D, k, xt_kept, ldt, &mean[p, 0], &R[p, 0, 0], work,
                                      sqnorm)
                for i in range(k):
                    score = const_[p] - 0.5 * sqnorm[i]
                    if score > run_max[kept[i]]:
                        run_max[kept[i]] = score
                        run_arg[kept[i]] = c
                continue
        if floating is double:
            dgmm_tri_sqnorm_d(D, m, xt, ldt, &mean[p, 0], &R[p, 0, 0], work, sqnorm)
        else:
            dgmm_tri_sqnorm_s(D, m, xt, ldt, &mean[p, 0], &R[p, 0, 0], work, sqnorm)
        for r in range(m):
            score = const_[p] - 0.5 * sqnorm[r]
            if want_all:
                if allbuf != NULL:
                    allbuf[r * C + c] = score
                else:
                    out_all[out_rows[start + r], c] = score
            mx = run_max[r]
            if score > mx:
                # New maximum: rescale the running sum (it is 0 for the first finite score).
                if want_lse:
                    if mx - score > -LSE_CUTOFF:
                        run_sum[r] = run_sum[r] * exp(mx - score) + 1.0
                    else:
                        run_sum[r] = 1.0
                run_max[r] = score
                run_arg[r] = c
            elif want_lse and score - mx > -LSE_CUTOFF:
                run_sum[r] = run_sum[r] + exp(score - mx)

    if want_all and allbuf != NULL:
        for r in range(m):
            memcpy(&out_all[out_rows[start + r], 0], &allbuf[r * C], C * sizeof(double))

    for r in range(m):
        row = rows[start + r]
        if want_lse:
            out_lse[row] = run_max[r] + log(run_sum[r]) if run_sum[r] > 0.0 else run_max[r]
        if want_best:
            out_best[row] = run_arg[r]
            out_best_score[row] = run_max[r]


def score_groups(
    const floating[:, ::1] X,
    const floating[:, :, ::1] R,
    const floating[:, ::1] mean,
    const double[::1] const_,
    const floating[:, ::1] tail_basis,
    const floating[:, :, ::1] R_tail,
    const floating[:, ::1] mean_tail,
    const cnp.intp_t[::1] rows,
    const cnp.intp_t[::1] task_group,
    const cnp.intp_t[::1] task_start,
    const cnp.intp_t[::1] task_stop,
    const cnp.intp_t[:, ::1] cand,
    double[::1] out_lse,
    cnp.intp_t[::1] out_best,
    double[::1] out_best_score,
    double[:, ::1] out_all,
    int n_threads,
    const cnp.intp_t[::1] out_rows=None,
):
    """Score grouped rows against their groups' candidate paths (see the module docstring).

    Parameters
    ----------
    X : (n, D) data, C-contiguous.
    R, mean, const_ : (P, D, D), (P, D), (P,) path table.
    tail_basis, R_tail, mean_tail : (T, D) B, (P, T, T) upper-triangular T_p and (P, T) B mu_p
        of the bound (see TAIL; ``PathTable.tail_bound``), to prune the search when only the
        best candidate is asked for (out_best without out_lse or out_all); an R_tail of shape
        (0, 0, 0) scores every candidate in full. The result is the same either way.
    rows : row indices of X, laid out group after group.
    task_group, task_start, task_stop : per task, its group and its slice of ``rows``.
    cand : (G, C) path indices: the candidates of each group.
    out_lse : (n,) log-sum-exp over candidates, or an empty array to skip.
    out_best, out_best_score : (n,) first candidate position (0..C-1) reaching the maximum (0 when
        every score is -inf) and
        that maximum, or empty arrays to skip.
    out_all : (n, C) every candidate's score, or a (0, C) array to skip.
    n_threads : OpenMP threads.
    out_rows : aligned with ``rows``: write row rows[i]'s scores to out_all[out_rows[i]]
        (default ``rows``): for ``rows`` that name a row more than once.

    Only rows named in ``rows`` are written.
    """
    cdef Py_ssize_t n_tasks = task_group.shape[0]
    cdef int D = <int> X.shape[1]
    cdef Py_ssize_t chunk = 0
    cdef Py_ssize_t t, g
    cdef int ldt, block = dgmm_row_block()
    cdef size_t work_size
    cdef floating *xt
    cdef floating *yt
    cdef floating *xt_kept
    cdef floating *work
    cdef double *sqnorm
    cdef cnp.intp_t *kept
    cdef double *run_max
    cdef double *run_sum
    cdef cnp.intp_t *run_arg
    cdef double *allbuf
    cdef Py_ssize_t C = cand.shape[1]
    for t in range(n_tasks):
        chunk = max(chunk, task_stop[t] - task_start[t])
    if n_tasks == 0 or chunk == 0:
        return
    ldt = <int> ((chunk + block - 1) // block * block)
    work_size = dgmm_tri_work_size(D, ldt)
    if out_rows is None:
        out_rows = rows
    elif out_rows.shape[0] != rows.shape[0]:
        raise ValueError("out_rows must be aligned with rows")
    cdef bint buffer_all = out_all.shape[0] > 0 and chunk * C <= ALL_BUFFER_DOUBLES
    if R_tail.shape[0] > 0 and (R_tail.shape[0] != R.shape[0] or R_tail.shape[1] > D
                                or R_tail.shape[1] != R_tail.shape[2]
                                or tail_basis.shape[0] != R_tail.shape[1]
                                or tail_basis.shape[1] != D
                                or mean_tail.shape[0] != R.shape[0]
                                or mean_tail.shape[1] != R_tail.shape[1]):
        raise ValueError("R_tail must be (P, T, T) with T <= D, tail_basis (T, D) and "
                         "mean_tail (P, T)")
    # pruning needs a tail table and a search for the best candidate only (see TAIL)
    cdef bint prune = (R_tail.shape[0] > 0 and out_best.shape[0] > 0 and out_lse.shape[0] == 0
                       and out_all.shape[0] == 0)
    cdef int out_of_memory[1]
    out_of_memory[0] = 0
    n_threads = max(1, min(n_threads, n_tasks))
    with nogil, parallel(num_threads=n_threads):
        xt = NULL
        if posix_memalign(<void**> &xt, 64, sizeof(floating) * D * ldt) != 0:
            xt = NULL
        yt = NULL
        if prune and posix_memalign(<void**> &yt, 64,
                                    sizeof(floating) * R_tail.shape[1] * ldt) != 0:
            yt = NULL
        xt_kept = NULL
        if prune and posix_memalign(<void**> &xt_kept, 64, sizeof(floating) * D * ldt) == 0:
            # its padding rows are read by the kernel: keep them finite
            memset(xt_kept, 0, sizeof(floating) * D * ldt)
        work = <floating*> malloc(sizeof(floating) * work_size)
        sqnorm = <double*> malloc(sizeof(double) * ldt)
        kept = <cnp.intp_t*> malloc(sizeof(cnp.intp_t) * ldt) if prune else NULL
        run_max = <double*> malloc(sizeof(double) * chunk)
        run_sum = <double*> malloc(sizeof(double) * chunk)
        run_arg = <cnp.intp_t*> malloc(sizeof(cnp.intp_t) * chunk)
        allbuf = <double*> malloc(sizeof(double) * chunk * C) if buffer_all else NULL
        # a thread without its buffers skips its tasks and the call raises below
        if (xt == NULL or work == NULL or sqnorm == NULL or run_max == NULL
                or run_sum == NULL or run_arg == NULL or (buffer_all and allbuf == NULL)
                or (prune and (xt_kept == NULL or kept == NULL or yt == NULL))):
            out_of_memory[0] = 1
        try:
            for t in prange(n_tasks, schedule='dynamic'):
                if (xt == NULL or work == NULL or sqnorm == NULL or run_max == NULL
                        or run_sum == NULL or run_arg == NULL
                        or (buffer_all and allbuf == NULL)
                        or (prune and (xt_kept == NULL or kept == NULL or yt == NULL))):
                    continue
                g = task_group[t]
                _score_task(X, R, mean, const_, tail_basis, R_tail, mean_tail, prune, rows,
                            &cand[g, 0], C, task_start[t], task_stop[t], ldt, xt, yt, xt_kept,
                            work, sqnorm, kept, run_max, run_sum, run_arg, allbuf, out_lse,
                            out_best, out_best_score, out_all, out_rows)
        finally:
            free(xt)
            free(yt)
            free(xt_kept)
            free(kept)
            free(work)
            free(sqnorm)
            free(run_max)
            free(run_sum)
            free(run_arg)
            free(allbuf)
    if out_of_memory[0]:
        raise MemoryError("path scoring: could not allocate the per-thread work buffers")


def solve_transposed_factors(const double[:, :, ::1] R, const double[:, ::1] Bt,
                             int n_threads):
    """Y_p = R_p^-T B^T for every upper-triangular R_p of ``R`` (P, D, D), ``Bt`` = B^T (D, T):
    returns (P, D, T) float64 (B Sigma_p B^T = Y_p^T Y_p: the pruning bound's factors, see
    dgmmcore._bound). One triangular solve per path, in parallel; call with BLAS on one
    thread (``single_threaded_blas``)."""
    cdef int P = <int> R.shape[0], D = <int> R.shape[1], T = <int> Bt.shape[1]
    if R.shape[2] != D or Bt.shape[0] != D:
        raise ValueError(f"R must be (P, D, D) and Bt (D, T), got "
                         f"{tuple(R.shape)[:3]} and {tuple(Bt.shape)[:2]}")
    Y_arr = np.empty((P, D, T))
    Y_arr[...] = np.asarray(Bt)
    cdef double[:, :, ::1] Y = Y_arr
    cdef Py_ssize_t p
    # column-major, R_p's memory is R_p^T (lower) and Y_p's is Y_p^T (T x D, starting as B):
    # R_p^T Y_p = B^T  <=>  Y_p^T R_p = B, solved from the right with op(R_p^T) = R_p
    cdef char side = b'R', uplo = b'L', trans = b'T', diag = b'N'
    cdef double one = 1.0
    if P == 0 or D == 0 or T == 0:
        return Y_arr
    with nogil:
        for p in prange(P, schedule='static', num_threads=max(1, n_threads)):
            dtrsm(&side, &uplo, &trans, &diag, &T, &D, &one, <double*> &R[p, 0, 0], &D,
                  &Y[p, 0, 0], &T)
    return Y_arr


def posterior_entries(double[:, ::1] scores, double floor, int n_threads):
    """Each row of ``scores`` (log pi_p + log N(x | p) over the row's candidates) becomes, in
    place, the row's posterior over them: exp(s - max) / sum. Returns (loglik (n,) the rows'
    log-sum-exp, best (n,) each row's first highest column (numpy's argmax of a row without
    NaN), rows, cols, weights): the entries above ``floor``, row after row, columns in order.
    A row whose scores are all -inf keeps them, has loglik -inf, best 0 and no entries; a row
    with a NaN or +inf score has loglik NaN and no entries. Rows are independent, so the
    result does not depend on the thread count."""
    cdef Py_ssize_t n = scores.shape[0], C = scores.shape[1]
    cdef Py_ssize_t i, c, k, count, arg
    cdef double mx, total, inv, e
    loglik_arr = np.empty(n)
    best_arr = np.zeros(n, dtype=np.intp)
    counts_arr = np.zeros(n + 1, dtype=np.intp)
    cdef double[::1] loglik = loglik_arr
    cdef cnp.intp_t[::1] best = best_arr
    cdef cnp.intp_t[::1] counts = counts_arr
    n_threads = max(1, n_threads)
    with nogil:
        for i in prange(n, schedule='static', num_threads=n_threads):
            mx = -INFINITY
            arg = 0
            for c in range(C):
                if scores[i, c] > mx:
                    mx = scores[i, c]
                    arg = c
            best[i] = arg
            if mx == -INFINITY:
                loglik[i] = -INFINITY
                continue
            total = 0.0
            for c in range(C):
                e = exp(scores[i, c] - mx)
                scores[i, c] = e
                total = total + e
            inv = 1.0 / total
            count = 0
            for c in range(C):
                scores[i, c] = scores[i, c] * inv
                if scores[i, c] > floor:
                    count = count + 1
            loglik[i] = mx + log(total)
            counts[i + 1] = count
    offsets_arr = np.cumsum(counts_arr)
    cdef cnp.intp_t[::1] offsets = offsets_arr
    cdef Py_ssize_t n_entries = offsets_arr[n]
    rows_arr = np.empty(n_entries, dtype=np.intp)
    cols_arr = np.empty(n_entries, dtype=np.intp)
    weights_arr = np.empty(n_entries)
    cdef cnp.intp_t[::1] rows = rows_arr
    cdef cnp.intp_t[::1] cols = cols_arr
    cdef double[::1] weights = weights_arr
    with nogil:
        for i in prange(n, schedule='static', num_threads=n_threads):
            if loglik[i] == -INFINITY:
                continue
            k = offsets[i]
            for c in range(C):
                if scores[i, c] > floor:
                    rows[k] = i
                    cols[k] = c
                    weights[k] = scores[i, c]
                    k = k + 1
    return loglik_arr, best_arr, rows_arr, cols_arr, weights_arr
