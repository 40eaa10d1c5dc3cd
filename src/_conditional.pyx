"""Every path's Gaussian conditioned on the observed entries of a row.

``condition_pattern`` serves rows that share a missing pattern; ``condition_rows`` rows that
each have their own (see the end of this docstring).

The math is in dgmmcore/_impute.py. Here, for one pattern (missing columns ``mis``, m >= 0 of
them) and the paths' upper-triangular precision factors R_p (R_p^T R_p = Sigma_p^{-1}):

1. per path, in parallel: R_m = R_p[:, mis] (D x m), Lambda_mm = R_m^T R_m, its lower Cholesky
   factor C and log|det C|;
2. per block of rows, in parallel over paths (a thread keeps path p's factors in cache for the
   whole block), in BLAS-3 calls (plain loops for blocks of a few rows):
   V = (X - mu_p, missing entries zeroed) R_p^T, W = V R_m C^{-T},
   score = log pi_p + log|det R_p| - log|det C| - |o|/2 log 2 pi - (|V_r|^2 - |W_r|^2) / 2 and the
   conditional means mu_m - W C^{-1} (row r of W C^{-1} is C^{-T} w_r);
3. per row: log-sum-exp of the scores and the posterior-weighted conditional mean.

For rows with their own patterns, ``condition_rows`` runs steps 1 and 2 per (row, path) with
plain loops, in parallel over paths for a block of rows: a thread factors and conditions every
row of the block against path p while R_p and the precision R_p^T R_p (32 KB each at D = 63)
stay in its cache, instead of streaming every path's factors through memory once per pattern.
Lambda_mm is gathered from the precision (no Gram product), and R_m^T R_p d is a row of the
precision times d.

Each (row, path) is computed by one thread and each row is reduced by one thread over the paths
in order, so the results do not depend on the number of threads. BLAS must be single-threaded
around the call (the caller limits it).
"""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange, parallel
from libc.math cimport exp, log, sqrt, INFINITY, NAN
from libc.stdlib cimport malloc, free

include "_blas.pxi"
include "_omp.pxi"

cnp.import_array()

# Values of the (rows, P, m) conditional means held per block of rows (32 MB).
BLOCK_VALUES = 1 << 22
# A parallel region costs a few microseconds (far more on a busy machine): phases with less
# work than this many multiply-adds run on one thread.
cdef double MIN_PARALLEL_WORK = 2e5
# Blocks of fewer rows than this skip BLAS (its per-call overhead outweighs one row's work).
cdef Py_ssize_t SMALL_BLOCK = 4


cdef inline int _threads_for(double work, int n_threads) noexcept nogil:
    return n_threads if work >= MIN_PARALLEL_WORK else 1


cdef int _factor(const double *R, Py_ssize_t D, const cnp.intp_t *mis, Py_ssize_t m,
                 const cnp.intp_t *first, double *Rm, double *C, double *logdet) noexcept nogil:
    """Rm (row-major D x m) = R[:, mis]; C (row-major m x m, lower) with C C^T = Rm^T Rm;
    0, or -1 if that is not positive definite. first[i]: the first a with mis[a] >= i (row i
    of Rm is zero before it: R is upper triangular)."""
    cdef Py_ssize_t a, b, i
    cdef double ra
    for a in range(m * m):
        C[a] = 0.0
    for i in range(D):
        for a in range(m):
            Rm[i * m + a] = R[i * D + mis[a]]
        for a in range(first[i], m):  # rank-one update of the lower triangle, row by row
            ra = Rm[i * m + a]
            for b in range(first[i], a + 1):
                C[a * m + b] += ra * Rm[i * m + b]
    return _cholesky_lower(C, m, logdet)


cdef int _cholesky_lower(double *C, Py_ssize_t m, double *logdet) noexcept nogil:
    """In place: the lower triangle of C (row-major m x m) becomes its Cholesky factor;
    logdet = log|det| of the factor. 0, or -1 if C is not positive definite."""
    cdef Py_ssize_t a, b, i
    cdef double s
    logdet[0] = 0.0
    for a in range(m):
        for b in range(a + 1):
            s = C[a * m + b]
            for i in range(b):
                s = s - C[a * m + i] * C[b * m + i]
            if a == b:
                if not s > 0.0:
                    return -1
                C[a * m + a] = sqrt(s)
                logdet[0] += log(C[a * m + a])
            else:
                C[a * m + b] = s / C[b * m + b]
    return 0


cdef inline double _dot(const double *x, const double *y, Py_ssize_t n) noexcept nogil:
    """x . y with four running sums (breaks the add latency chain; fixed order)."""
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    cdef Py_ssize_t k = 0
    while k + 4 <= n:
        s0 = s0 + x[k] * y[k]
        s1 = s1 + x[k + 1] * y[k + 1]
        s2 = s2 + x[k + 2] * y[k + 2]
        s3 = s3 + x[k + 3] * y[k + 3]
        k = k + 4
    while k < n:
        s0 = s0 + x[k] * y[k]
        k = k + 1
    return (s0 + s1) + (s2 + s3)


cdef inline void _conditional_mean(const double *C, const double *w, const double *mu,
                                   const cnp.intp_t *mis, Py_ssize_t m,
                                   double *cond) noexcept nogil:
    """cond = mu_m - C^{-T} w."""
    cdef Py_ssize_t a, b
    cdef double s
    for a in range(m - 1, -1, -1):
        s = w[a]
        for b in range(a + 1, m):
            s = s - C[b * m + a] * cond[b]
        cond[a] = s / C[a * m + a]
    for a in range(m):
        cond[a] = mu[mis[a]] - cond[a]


cdef inline double _whiten(const double *x, const double *R, const double *mu,
                           const unsigned char *missing, Py_ssize_t D, double *d,
                           double *v) noexcept nogil:
    """d = x - mu with the missing entries zeroed, v = R d (R upper triangular); |v|^2."""
    cdef Py_ssize_t i
    cdef double quad = 0.0
    for i in range(D):
        d[i] = 0.0 if missing[i] else x[i] - mu[i]
    for i in range(D):
        v[i] = _dot(R + i * D + i, d + i, D - i)
        quad = quad + v[i] * v[i]
    return quad


cdef inline double _forward_solve(const double *C, double *w, Py_ssize_t m) noexcept nogil:
    """w = C^{-1} w in place (C row-major lower triangular); returns the new |w|^2."""
    cdef Py_ssize_t a, b
    cdef double s, norm = 0.0
    for a in range(m):
        s = w[a]
        for b in range(a):
            s = s - C[a * m + b] * w[b]
        w[a] = s / C[a * m + a]
        norm = norm + w[a] * w[a]
    return norm


cdef void _path_row(const double *x, const double *R, const double *mu, const double *Rm,
                    const double *C, const cnp.intp_t *mis, const cnp.intp_t *first,
                    const unsigned char *missing, Py_ssize_t D, Py_ssize_t m,
                    double score_const, double *d, double *v, double *w, double *score,
                    double *cond) noexcept nogil:
    """One path, one row, without BLAS (per-call overhead dominates at one row): the same
    quantities as _path_block."""
    cdef Py_ssize_t i, a
    cdef double quad = _whiten(x, R, mu, missing, D, d, v)
    for a in range(m):
        w[a] = 0.0
    for i in range(D):  # u = Rm^T v, accumulated row by row of Rm
        for a in range(first[i], m):
            w[a] += Rm[i * m + a] * v[i]
    quad = quad - _forward_solve(C, w, m)
    score[0] = score_const - 0.5 * quad
    _conditional_mean(C, w, mu, mis, m, cond)


cdef void _path_row_precision(const double *x, const double *R, const double *Lam,
                              const double *mu, const double *C, const cnp.intp_t *mis,
                              const unsigned char *missing, Py_ssize_t D, Py_ssize_t m,
                              double score_const, double *d, double *v, double *w,
                              double *score, double *cond) noexcept nogil:
    """_path_row with R_m^T R d read off the precision Lam = R^T R instead: row mis[a] of Lam
    dotted with d (zero at the missing entries)."""
    cdef Py_ssize_t a
    cdef double quad = _whiten(x, R, mu, missing, D, d, v)
    for a in range(m):  # u = Lam_m. d
        w[a] = _dot(Lam + mis[a] * D, d, D)
    quad = quad - _forward_solve(C, w, m)
    score[0] = score_const - 0.5 * quad
    _conditional_mean(C, w, mu, mis, m, cond)


cdef void _path_block(const double[:, ::1] X, Py_ssize_t lo, Py_ssize_t c, const double *R,
                      const double *mu, const double *Rm, const double *C,
                      const cnp.intp_t *mis, const unsigned char *missing, Py_ssize_t D,
                      Py_ssize_t m, double score_const, double *Dm, double *V, double *W,
                      double[:, ::1] scores, double[:, :, ::1] cond, Py_ssize_t p) noexcept nogil:
    """One path, rows lo .. lo + c - 1: scores[r, p] and cond[r, p, :] for r < c."""
    cdef Py_ssize_t r, k, a
    cdef double quad
    for r in range(c):
        for k in range(D):
            Dm[r * D + k] = 0.0 if missing[k] else X[lo + r, k] - mu[k]
    gemm_rowmajor(b'N', b'T', <int> c, <int> D, <int> D, 1.0, Dm, <int> D, R, <int> D, 0.0,
                  V, <int> D)
    if m:
        gemm_rowmajor(b'N', b'N', <int> c, <int> m, <int> D, 1.0, V, <int> D, Rm, <int> m, 0.0,
                      W, <int> m)
        trsm_right_rowmajor(b'T', <int> c, <int> m, C, W)      # W = V R_m C^{-T}
    for r in range(c):
        quad = 0.0
        for k in range(D):
            quad = quad + V[r * D + k] * V[r * D + k]
        for a in range(m):
            quad = quad - W[r * m + a] * W[r * m + a]
        scores[r, p] = score_const - 0.5 * quad
    if m:
        trsm_right_rowmajor(b'N', <int> c, <int> m, C, W)      # rows C^{-T} w_r
        for r in range(c):
            for a in range(m):
                cond[r, p, a] = mu[mis[a]] - W[r * m + a]


cdef void _mix_row(const double *scores, const double *cond, Py_ssize_t P, Py_ssize_t stride,
                   const cnp.intp_t *cols, Py_ssize_t m, double *fill,
                   double *loglik) noexcept nogil:
    """One row: loglik = log-sum-exp of the P path scores, and the posterior-weighted mean of
    the paths' conditional means (path p's at cond + p * stride, m values) written to
    fill[cols[a]] (fill[a] when cols is NULL); -inf and NaN if no path has any weight."""
    cdef Py_ssize_t p, a
    cdef double mx = -INFINITY, tot = 0.0, wgt
    for p in range(P):
        if scores[p] > mx:
            mx = scores[p]
    for a in range(m):
        fill[cols[a] if cols != NULL else a] = NAN if mx == -INFINITY else 0.0
    if mx == -INFINITY:
        loglik[0] = -INFINITY
        return
    for p in range(P):
        wgt = exp(scores[p] - mx)
        tot = tot + wgt
        for a in range(m):
            fill[cols[a] if cols != NULL else a] += wgt * cond[p * stride + a]
    for a in range(m):
        fill[cols[a] if cols != NULL else a] /= tot
    loglik[0] = mx + log(tot)


def _block_arrays(c, P, width):
    """(rows per block, (nb, P) scores, (nb, P, width) conditional means) for c rows."""
    nb = max(1, min(c, 256, BLOCK_VALUES // (P * width)))
    return nb, np.empty((nb, P)), np.empty((nb, P, width))


def condition_pattern(
    const double[:, ::1] X,
    const cnp.intp_t[::1] mis,
    const double[:, :, ::1] R,
    const double[:, ::1] mean,
    const double[::1] const,
    double[:, ::1] out_fill,
    double[::1] out_loglik,
    int n_threads,
):
    """Rows X (c, D) that all miss the columns ``mis`` (sorted, m of them; the others observed).

    R (P, D, D) upper-triangular precision factors, mean (P, D), const (P,) = log pi_p +
    log|det R_p| - D/2 log 2 pi (-inf for an inactive path). Writes out_fill (c, m), the
    posterior mean of the missing entries, and out_loglik (c,), the log-density of the observed
    ones (-inf and NaN fills if no path has any weight). Returns the number of paths whose
    Lambda_mm was not positive definite (left out).
    """
    cdef Py_ssize_t c = X.shape[0], D = X.shape[1], P = R.shape[0], m = mis.shape[0]
    cdef Py_ssize_t p, r, a, lo, nb, j
    cdef int bad = 0
    cdef double log2pi = log(2.0 * 3.141592653589793)
    if R.shape[1] != D or R.shape[2] != D or mean.shape[0] != P or mean.shape[1] != D:
        raise ValueError("R must be (P, D, D) and mean (P, D) for X with D columns")
    if const.shape[0] != P or out_fill.shape[0] != c or out_fill.shape[1] != m \
            or out_loglik.shape[0] != c:
        raise ValueError("const, out_fill or out_loglik has the wrong shape")
    if c == 0 or P == 0:
        return 0
    missing_arr = np.zeros(D, dtype=np.uint8)
    for a in range(m):
        if mis[a] < 0 or mis[a] >= D or (a and mis[a] <= mis[a - 1]):
            raise ValueError("mis must be sorted, distinct column indices")
        missing_arr[mis[a]] = 1
    cdef const unsigned char[::1] missing = missing_arr
    first_arr = np.searchsorted(np.asarray(mis), np.arange(D)).astype(np.intp)
    cdef const cnp.intp_t[::1] first = first_arr
    cdef Py_ssize_t mm = max(m, 1)
    # every entry a live path reads is written by _factor (inactive paths are never read)
    Rm_arr = np.empty((P, D, mm))
    C_arr = np.empty((P, mm, mm))
    sc_arr = np.empty(P)
    cdef double[:, :, ::1] Rm = Rm_arr
    cdef double[:, :, ::1] Cv = C_arr
    cdef double[::1] sc = sc_arr
    cdef double ld
    cdef const cnp.intp_t *mp = &mis[0] if m else NULL
    n_threads = max(1, n_threads)

    # phase 1: each path's factor of Lambda_mm and its score constant
    with nogil:
        for p in prange(P, num_threads=_threads_for(P * (D + m) * m * m, n_threads),
                        schedule='static'):
            ld = 0.0
            if const[p] == -INFINITY or _factor(&R[p, 0, 0], D, mp, m, &first[0],
                                                &Rm[p, 0, 0], &Cv[p, 0, 0], &ld) != 0:
                sc[p] = -INFINITY
            else:
                sc[p] = const[p] + 0.5 * m * log2pi - ld
    for p in range(P):
        if sc[p] == -INFINITY and const[p] != -INFINITY:
            bad += 1

    nb, scores_arr, cond_arr = _block_arrays(c, P, mm)
    cdef double[:, ::1] scores = scores_arr
    cdef double[:, :, ::1] cond = cond_arr
    cdef double *buf
    cdef int out_of_memory[1]
    out_of_memory[0] = 0
    for lo in range(0, c, nb):
        j = min(nb, c - lo)
        # phase 2: every (row, path) of the block; a thread takes whole paths
        with nogil, parallel(num_threads=_threads_for(j * P * (D + m) * (D + m), n_threads)):
            buf = <double*> malloc(sizeof(double) * nb * (2 * D + mm))
            if buf == NULL:
                out_of_memory[0] = 1
            try:
                for p in prange(P, schedule='static'):
                    if buf == NULL:
                        continue
                    if sc[p] == -INFINITY:
                        for r in range(j):
                            scores[r, p] = -INFINITY
                        continue
                    if j < SMALL_BLOCK:
                        for r in range(j):
                            _path_row(&X[lo + r, 0], &R[p, 0, 0], &mean[p, 0], &Rm[p, 0, 0],
                                      &Cv[p, 0, 0], mp, &first[0], &missing[0], D, m, sc[p],
                                      buf, buf + D, buf + 2 * D, &scores[r, p], &cond[r, p, 0])
                    else:
                        _path_block(X, lo, j, &R[p, 0, 0], &mean[p, 0], &Rm[p, 0, 0],
                                    &Cv[p, 0, 0], mp, &missing[0], D, m, sc[p], buf,
                                    buf + nb * D, buf + 2 * nb * D, scores, cond, p)
            finally:
                free(buf)
        if out_of_memory[0]:
            raise MemoryError("imputation: could not allocate the per-thread work buffers")
        # phase 3: per row, log-sum-exp over the paths and the weighted conditional mean
        with nogil:
            for r in prange(j, num_threads=_threads_for(j * P * mm, n_threads),
                            schedule='static'):
                # out_fill has no columns when nothing is missing
                _mix_row(&scores[r, 0], &cond[r, 0, 0], P, mm, NULL, m,
                         &out_fill[lo + r, 0] if m else NULL, &out_loglik[lo + r])
    return bad


def condition_rows(
    const double[:, ::1] X,
    const unsigned char[:, ::1] missing,
    const double[:, :, ::1] R,
    const double[:, :, ::1] Lam,
    const double[:, ::1] mean,
    const double[::1] const,
    double[:, ::1] out_fill,
    double[::1] out_loglik,
    int n_threads,
):
    """Rows X (c, D), row r missing the columns where missing[r] is nonzero (any pattern with at
    least one observed entry; rows need not share them).

    R, mean, const as in condition_pattern; Lam (P, D, D) the precisions R_p^T R_p, whose
    (mis, mis) block is each row's Lambda_mm (a gather, where condition_pattern forms it from
    R_m). Writes the posterior means of the missing entries of
    out_fill (c, D) (other entries are left alone) and out_loglik (c,), the log-density of the
    observed ones (-inf and NaN fills if no path has any weight). Returns the number of
    (row, path) pairs whose Lambda_mm was not positive definite (left out).
    """
    cdef Py_ssize_t c = X.shape[0], D = X.shape[1], P = R.shape[0]
    cdef Py_ssize_t p, r, a, b, lo, nb, j, m, mmax
    cdef double ld, log2pi = log(2.0 * 3.141592653589793)
    if R.shape[1] != D or R.shape[2] != D or mean.shape[0] != P or mean.shape[1] != D:
        raise ValueError("R must be (P, D, D) and mean (P, D) for X with D columns")
    if Lam.shape[0] != P or Lam.shape[1] != D or Lam.shape[2] != D:
        raise ValueError("Lam must be (P, D, D) like R")
    if const.shape[0] != P or missing.shape[0] != c or missing.shape[1] != D \
            or out_fill.shape[0] != c or out_fill.shape[1] != D or out_loglik.shape[0] != c:
        raise ValueError("const, missing, out_fill or out_loglik has the wrong shape")
    if c == 0 or P == 0:
        return 0
    mask = np.asarray(missing).astype(bool)
    counts_arr = mask.sum(axis=1).astype(np.intp)
    if counts_arr.max() >= D:
        raise ValueError("every row needs at least one observed entry")
    # per row: its missing columns in ascending order (the first counts[r] entries)
    mis_arr = np.ascontiguousarray(np.argsort(~mask, axis=1, kind="stable"), dtype=np.intp)
    cdef const cnp.intp_t[::1] counts = counts_arr
    cdef const cnp.intp_t[:, ::1] mis = mis_arr
    mmax = max(1, int(counts_arr.max()))
    nb, scores_arr, cond_arr = _block_arrays(c, P, mmax)
    cdef double[:, ::1] scores = scores_arr
    cdef double[:, :, ::1] cond = cond_arr
    cdef double *buf
    cdef int out_of_memory[1]
    out_of_memory[0] = 0
    cdef Py_ssize_t bad = 0
    n_threads = max(1, n_threads)
    for lo in range(0, c, nb):
        j = min(nb, c - lo)
        # every (row, path) of the block; a thread takes whole paths. A factor that is not
        # positive definite leaves a NaN score, counted and excluded below.
        with nogil, parallel(num_threads=_threads_for(j * P * D * D, n_threads)):
            buf = <double*> malloc(sizeof(double) * (D * D + 3 * D))
            if buf == NULL:
                out_of_memory[0] = 1
            try:
                for p in prange(P, schedule='static'):
                    if buf == NULL:
                        continue
                    for r in range(j):
                        m = counts[lo + r]
                        ld = 0.0
                        if const[p] == -INFINITY:
                            scores[r, p] = -INFINITY
                            continue
                        for a in range(m):  # Lambda_mm, lower triangle, from Lam
                            for b in range(a + 1):
                                buf[a * m + b] = Lam[p, mis[lo + r, a], mis[lo + r, b]]
                        if _cholesky_lower(buf, m, &ld) != 0:
                            scores[r, p] = NAN
                        else:
                            _path_row_precision(&X[lo + r, 0], &R[p, 0, 0], &Lam[p, 0, 0],
                                                &mean[p, 0], buf, &mis[lo + r, 0],
                                                &missing[lo + r, 0], D, m,
                                                const[p] + 0.5 * m * log2pi - ld, buf + D * D,
                                                buf + D * D + D, buf + D * D + 2 * D,
                                                &scores[r, p], &cond[r, p, 0])
            finally:
                free(buf)
        if out_of_memory[0]:
            raise MemoryError("imputation: could not allocate the per-thread work buffers")
        singular = np.isnan(scores_arr[:j])
        if singular.any():
            bad += int(singular.sum())
            scores_arr[:j][singular] = -np.inf
        # per row, log-sum-exp over the paths and the weighted conditional mean
        with nogil:
            for r in prange(j, num_threads=_threads_for(j * P * mmax, n_threads),
                            schedule='static'):
                _mix_row(&scores[r, 0], &cond[r, 0, 0], P, mmax, &mis[lo + r, 0],
                         counts[lo + r], &out_fill[lo + r, 0], &out_loglik[lo + r])
    return bad
