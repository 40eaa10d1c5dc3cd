"""Sufficient statistics of the data under hard path assignments, and Kronecker assembly.

Statistics: rows are grouped by path; each task is a run of at most ``seg`` rows of one path and
writes its own partial (count, sum, scatter) slot, so no two threads ever write the same memory.
The caller sums the slots of each path in task order, which makes the result independent of the
number of threads. Rows are shifted by a per-path reference point (the path's current mean) before
the outer products: scatter about a nearby point loses no digits to cancellation.
"""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange, parallel
from libc.math cimport sqrt
from libc.stdlib cimport malloc, free

include "_blas.pxi"
include "_omp.pxi"

cnp.import_array()

# Rows per SYRK call: the (CHUNK x D) buffer stays in cache.
cdef Py_ssize_t CHUNK = 256
# The gather prefetches the row this many entries ahead: a path's rows lie anywhere in X (a
# 4 GB block at 16M float32 rows). On 1 thread, rows spread over 1 GB took twice the time of
# rows in cache without it, the same with it (on 2 threads, run alone, no clear gain).
cdef Py_ssize_t PREFETCH_AHEAD = 8

cdef extern from *:
    """
    /* Every cache line of the n bytes at p, for reading (a hint: no fault, no effect on
       results). */
    static inline void dgmm_prefetch_bytes(const void *p, size_t n) {
    #if defined(__GNUC__) || defined(__clang__)
        const char *c = (const char *) p;
        size_t off;
        for (off = 0; off < n; off += 64)
            __builtin_prefetch(c + off, 0, 3);
        __builtin_prefetch(c + n - 1, 0, 3);
    #else
        (void) p; (void) n;
    #endif
    }
    """
    void dgmm_prefetch_bytes(const void *p, size_t n) noexcept nogil


cdef void _scatter_task(
    const floating[:, ::1] X,
    const cnp.intp_t[::1] rows,
    Py_ssize_t start,
    Py_ssize_t stop,
    const double *weights,
    const double *shift,
    double *buf,
    double *out_sum,
    double *out_scatter,
) noexcept nogil:
    # weights (aligned with rows; NULL: all ones): row i enters as sqrt(w_i)(x_i - shift), so
    # one SYRK gives sum w_i (x_i - shift)(x_i - shift)^T
    cdef Py_ssize_t D = X.shape[1]
    cdef Py_ssize_t lo, m, r, d, ahead
    cdef size_t row_bytes = D * sizeof(floating)
    cdef const floating *x
    cdef double *b
    cdef double root_w
    for ahead in range(start, min(start + PREFETCH_AHEAD, stop)):
        dgmm_prefetch_bytes(&X[rows[ahead], 0], row_bytes)
    lo = start
    while lo < stop:
        m = min(CHUNK, stop - lo)
        for r in range(m):
            ahead = lo + r + PREFETCH_AHEAD
            if ahead < stop:
                dgmm_prefetch_bytes(&X[rows[ahead], 0], row_bytes)
            x = &X[rows[lo + r], 0]
            b = buf + r * D
            if weights == NULL:
                for d in range(D):
                    b[d] = x[d] - shift[d]
                    out_sum[d] += b[d]
            else:
                root_w = sqrt(weights[lo + r])
                for d in range(D):
                    b[d] = root_w * (x[d] - shift[d])
                    out_sum[d] += root_w * b[d]
        syrk_rows_accumulate(<int> D, <int> m, buf, out_scatter)
        lo += m


def scatter_tasks(
    const floating[:, ::1] X,
    const cnp.intp_t[::1] rows,
    const cnp.intp_t[::1] task_path,
    const cnp.intp_t[::1] task_start,
    const cnp.intp_t[::1] task_stop,
    const double[:, ::1] shift,
    double[:, ::1] out_sum,
    double[:, :, ::1] out_scatter,
    int n_threads,
    const double[::1] weights=None,
    const cnp.intp_t[::1] slots=None,
):
    """Per task t, into slot s = slots[t] (t when slots is None): out_sum[s] += sum w (x -
    shift[p]), out_scatter[s] += upper triangle of sum w (x - shift[p])(x - shift[p])^T over
    entries i in task_start[t]:task_stop[t], x = X[rows[i]], w = weights[i] (1 when weights is
    None; nonnegative), p = task_path[t].

    The slots must be strictly increasing (no two tasks write the same memory); out_sum and
    out_scatter are (S, D) and (S, D, D) arrays added to in place (zero them for fresh sums);
    only the upper triangle of each scatter is written. BLAS must be single-threaded around
    this call.
    """
    cdef Py_ssize_t n_tasks = task_path.shape[0]
    cdef Py_ssize_t D = X.shape[1]
    cdef Py_ssize_t t, s
    cdef double *buf
    cdef const double *w = NULL
    if n_tasks == 0:
        return
    if weights is not None:
        if weights.shape[0] != rows.shape[0]:
            raise ValueError("weights must be aligned with rows")
        w = &weights[0] if weights.shape[0] else NULL
    if slots is None:
        slots = np.arange(n_tasks, dtype=np.intp)
    if slots.shape[0] != n_tasks:
        raise ValueError("slots must be aligned with the tasks")
    if (slots[0] < 0 or slots[n_tasks - 1] >= out_sum.shape[0]
            or slots[n_tasks - 1] >= out_scatter.shape[0]):
        raise ValueError("slots must index out_sum and out_scatter")
    for t in range(1, n_tasks):
        if slots[t] <= slots[t - 1]:
            raise ValueError("slots must be strictly increasing")
    cdef int out_of_memory[1]
    out_of_memory[0] = 0
    n_threads = max(1, min(n_threads, n_tasks))
    with nogil, parallel(num_threads=n_threads):
        buf = <double*> malloc(sizeof(double) * CHUNK * D)
        if buf == NULL:
            out_of_memory[0] = 1
        try:
            for t in prange(n_tasks, schedule='dynamic'):
                if buf == NULL:
                    continue
                s = slots[t]
                _scatter_task(X, rows, task_start[t], task_stop[t], w, &shift[task_path[t], 0],
                              buf, &out_sum[s, 0], &out_scatter[s, 0, 0])
        finally:
            free(buf)
    if out_of_memory[0]:
        raise MemoryError("path scatters: could not allocate the per-thread work buffers")


def kron_assemble(
    const double[:, :, ::1] left,
    const double[:, :, ::1] right,
    const double[::1] weight,
    double[:, ::1] out,
    int n_threads,
):
    """out = sum_g weight[g] * kron(left[g], right[g]), with row-major vec indexing.

    left is (G, A, A), right (G, B, B), out (A*B, A*B). Computed one block row a at a time as
    the GEMM  M_a[c, (b, d)] = sum_g (weight[g] left[g, a, c]) right[g, b, d]  followed by the
    scatter out[(a, b), (c, d)] = M_a[c, (b, d)], so the D^4 intermediate never exists whole.
    BLAS must be single-threaded around this call.
    """
    cdef Py_ssize_t G = left.shape[0]
    cdef Py_ssize_t A = left.shape[1]
    cdef Py_ssize_t B = right.shape[1]
    cdef Py_ssize_t a, b, c, d, g
    cdef double *wl
    cdef double *tile
    cdef const double *rflat = &right[0, 0, 0]
    if G == 0:
        out[:, :] = 0.0
        return
    cdef int out_of_memory[1]
    out_of_memory[0] = 0
    n_threads = max(1, min(n_threads, A))
    with nogil, parallel(num_threads=n_threads):
        wl = <double*> malloc(sizeof(double) * A * G)
        tile = <double*> malloc(sizeof(double) * A * B * B)
        if wl == NULL or tile == NULL:
            out_of_memory[0] = 1
        try:
            for a in prange(A, schedule='static'):
                if wl == NULL or tile == NULL:
                    continue
                # wl[c, g] = weight[g] * left[g, a, c]
                for c in range(A):
                    for g in range(G):
                        wl[c * G + g] = weight[g] * left[g, a, c]
                gemm_rowmajor(b'N', b'N', <int> A, <int> (B * B), <int> G, 1.0,
                              wl, <int> G, rflat, <int> (B * B), 0.0, tile, <int> (B * B))
                for b in range(B):
                    for c in range(A):
                        for d in range(B):
                            out[a * B + b, c * B + d] = tile[c * B * B + b * B + d]
        finally:
            free(wl)
            free(tile)
    if out_of_memory[0]:
        raise MemoryError("Kronecker assembly: could not allocate the per-thread work buffers")
