"""Score data rows under sets of Gaussian paths: the hot loop of every E-step.

Each path p is stored as its precision's upper-triangular factor R_p (R_p^T R_p = Sigma_p^{-1}),
its mean mu_p and a constant c_p = log pi_p + log|det R_p| - D/2 log(2 pi), so that

    log pi_p + log N(x | mu_p, Sigma_p) = c_p - 1/2 ||R_p (x - mu_p)||^2.

Rows are processed in tasks: a task is a run of at most CHUNK rows of one group, and a group is a
set of rows that share the same list of candidate paths (all paths for the exact density; the
N_j alternatives of one layer for the heuristic E-step). For each candidate the task's rows are
centred into a buffer, multiplied by R_p in place (one TRMM: half the flops of a GEMM), and the
squared norms are reduced into the running outputs while the buffer is still in cache.

Every row is scored by one thread, over its candidates in a fixed order, so results do not depend
on the number of threads.
"""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange, parallel
from libc.stdlib cimport malloc, free
from libc.math cimport exp, log, INFINITY

include "_blas.pxi"
include "_omp.pxi"

cnp.import_array()

# Rows per task: the centred buffer (CHUNK x D) stays in L2 while it is reused by TRMM and the norms.
CHUNK = 256

# exp(-LSE_CUTOFF) is below double epsilon: such terms cannot change a running log-sum-exp.
cdef double LSE_CUTOFF = 40.0


cdef void _score_task(
    const floating[:, ::1] X,
    const floating[:, :, ::1] R,
    const floating[:, ::1] mean,
    const double[::1] const_,
    const cnp.intp_t[::1] rows,
    const cnp.intp_t *cand,
    Py_ssize_t C,
    Py_ssize_t start,
    Py_ssize_t stop,
    floating *buf,
    double *run_max,
    double *run_sum,
    cnp.intp_t *run_arg,
    double[::1] out_lse,
    cnp.intp_t[::1] out_best,
    double[::1] out_best_score,
    double[:, ::1] out_all,
) noexcept nogil:
    cdef Py_ssize_t m = stop - start
    cdef Py_ssize_t D = X.shape[1]
    cdef Py_ssize_t r, d, c, p, row
    cdef double s, score, v, mx
    cdef const floating *x
    cdef const floating *mu
    cdef floating *b
    cdef bint want_lse = out_lse.shape[0] > 0
    cdef bint want_best = out_best.shape[0] > 0
    cdef bint want_all = out_all.shape[0] > 0

    for r in range(m):
        run_max[r] = -INFINITY
        run_sum[r] = 0.0
        run_arg[r] = 0

    for c in range(C):
        p = cand[c]
        mu = &mean[p, 0]
        for r in range(m):
            x = &X[rows[start + r], 0]
            b = buf + r * D
            for d in range(D):
                b[d] = x[d] - mu[d]
        trmm_upper_rows(<int> D, <int> m, &R[p, 0, 0], buf)
        for r in range(m):
            b = buf + r * D
            s = 0.0
            for d in range(D):
                v = b[d]
                s = s + v * v
            score = const_[p] - 0.5 * s
            if want_all:
                out_all[rows[start + r], c] = score
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
):
    """Score grouped rows against their groups' candidate paths (see the module docstring).

    Parameters
    ----------
    X : (n, D) data, C-contiguous.
    R, mean, const_ : (P, D, D), (P, D), (P,) path table.
    rows : row indices of X, laid out group after group.
    task_group, task_start, task_stop : per task, its group and its slice of ``rows``.
    cand : (G, C) path indices: the candidates of each group.
    out_lse : (n,) log-sum-exp over candidates, or an empty array to skip.
    out_best, out_best_score : (n,) first candidate position (0..C-1) reaching the maximum (0 when
        every score is -inf) and
        that maximum, or empty arrays to skip.
    out_all : (n, C) every candidate's score, or a (0, C) array to skip.
    n_threads : OpenMP threads.

    Only rows named in ``rows`` are written. BLAS must be single-threaded around this call.
    """
    cdef Py_ssize_t n_tasks = task_group.shape[0]
    cdef Py_ssize_t D = X.shape[1]
    cdef Py_ssize_t chunk = 0
    cdef Py_ssize_t t, g
    cdef floating *buf
    cdef double *run_max
    cdef double *run_sum
    cdef cnp.intp_t *run_arg
    for t in range(n_tasks):
        chunk = max(chunk, task_stop[t] - task_start[t])
    if n_tasks == 0 or chunk == 0:
        return
    n_threads = max(1, min(n_threads, n_tasks))
    with nogil, parallel(num_threads=n_threads):
        buf = <floating*> malloc(sizeof(floating) * chunk * D)
        run_max = <double*> malloc(sizeof(double) * chunk)
        run_sum = <double*> malloc(sizeof(double) * chunk)
        run_arg = <cnp.intp_t*> malloc(sizeof(cnp.intp_t) * chunk)
        try:
            for t in prange(n_tasks, schedule='dynamic'):
                g = task_group[t]
                _score_task(X, R, mean, const_, rows, &cand[g, 0], cand.shape[1], task_start[t], task_stop[t],
                            buf, run_max, run_sum, run_arg,
                            out_lse, out_best, out_best_score, out_all)
        finally:
            free(buf)
            free(run_max)
            free(run_sum)
            free(run_arg)
