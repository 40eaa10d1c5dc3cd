"""Every path's Gaussian conditioned on the observed entries, for rows sharing a missing pattern.

The math is in dgmmcore/_impute.py. Here, for one pattern (missing columns ``mis``, m >= 0 of
them) and the paths' upper-triangular precision factors R_p (R_p^T R_p = Sigma_p^{-1}):

1. per path, in parallel: Lambda_mm = R_m^T R_m (R_p is upper triangular, so entry (a, b)
   sums over rows i <= min(mis[a], mis[b]) only), its lower Cholesky factor C and log|det C|;
2. per block of rows, in parallel over paths (a thread keeps R_p in cache for the whole block):
   v = R_p d (d = x - mu_p with the missing entries zeroed), w = C^{-1} R_m^T v,
   score = log pi_p + log|det R_p| - log|det C| - |o|/2 log 2 pi - (|v|^2 - |w|^2) / 2 and the
   conditional mean mu_m - C^{-T} w;
3. per row: log-sum-exp of the scores and the posterior-weighted conditional mean.

Each (row, path) is computed by one thread and each row is reduced by one thread over the paths
in order, so the results do not depend on the number of threads.
"""
import numpy as np
cimport numpy as cnp
from cython.parallel cimport prange, parallel
from libc.math cimport exp, log, sqrt, INFINITY, NAN
from libc.stdlib cimport malloc, free

include "_omp.pxi"

cnp.import_array()

# Rows per block of phase 2: the (rows, P, m) conditional means of a block are held at once.
ROW_BLOCK = 16


cdef int _factor(const double *R, Py_ssize_t D, const cnp.intp_t *mis, Py_ssize_t m,
                 double *C, double *logdet) noexcept nogil:
    """C (row-major m x m, lower) with C C^T = Lambda_mm; 0, or -1 if not positive definite."""
    cdef Py_ssize_t a, b, i
    cdef double s
    for a in range(m):
        for b in range(a + 1):
            s = 0.0
            for i in range(min(mis[a], mis[b]) + 1):
                s = s + R[i * D + mis[a]] * R[i * D + mis[b]]
            C[a * m + b] = s
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


cdef void _path_row(const double *x, const double *R, const double *mu, const double *C,
                    const cnp.intp_t *mis, const unsigned char *missing, Py_ssize_t D,
                    Py_ssize_t m, double score_const, double *d, double *v, double *w,
                    double *score, double *cond) noexcept nogil:
    """One path, one row: the observed entries' log-density (plus log pi_p) and E[x_m | x_o]."""
    cdef Py_ssize_t i, k, a, b
    cdef double s, quad = 0.0
    for k in range(D):
        d[k] = 0.0 if missing[k] else x[k] - mu[k]
    for i in range(D):
        s = 0.0
        for k in range(i, D):
            s = s + R[i * D + k] * d[k]
        v[i] = s
        quad = quad + s * s
    for a in range(m):  # w = C^{-1} (R_m^T v), forward substitution
        s = 0.0
        for i in range(mis[a] + 1):
            s = s + R[i * D + mis[a]] * v[i]
        for b in range(a):
            s = s - C[a * m + b] * w[b]
        w[a] = s / C[a * m + a]
        quad = quad - w[a] * w[a]
    score[0] = score_const - 0.5 * quad
    for a in range(m - 1, -1, -1):  # y = C^{-T} w, back substitution into cond
        s = w[a]
        for b in range(a + 1, m):
            s = s - C[b * m + a] * cond[b]
        cond[a] = s / C[a * m + a]
    for a in range(m):
        cond[a] = mu[mis[a]] - cond[a]


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
    cdef double mx, tot, wgt, log2pi = log(2.0 * 3.141592653589793)
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
    C_arr = np.zeros((P, max(m, 1), max(m, 1)))
    sc_arr = np.empty(P)
    cdef double[:, :, ::1] Cv = C_arr
    cdef double[::1] sc = sc_arr
    cdef double ld
    cdef const cnp.intp_t *mp = &mis[0] if m else NULL
    n_threads = max(1, n_threads)

    # phase 1: each path's factor of Lambda_mm and its score constant
    with nogil:
        for p in prange(P, num_threads=n_threads, schedule='static'):
            ld = 0.0
            if const[p] == -INFINITY or _factor(&R[p, 0, 0], D, mp, m, &Cv[p, 0, 0], &ld) != 0:
                sc[p] = -INFINITY
            else:
                sc[p] = const[p] + 0.5 * m * log2pi - ld
    for p in range(P):
        if sc[p] == -INFINITY and const[p] != -INFINITY:
            bad += 1

    nb = min(ROW_BLOCK, c)
    scores_arr = np.empty((nb, P))
    cond_arr = np.empty((nb, P, max(m, 1)))
    cdef double[:, ::1] scores = scores_arr
    cdef double[:, :, ::1] cond = cond_arr
    cdef double *buf
    for lo in range(0, c, nb):
        j = min(nb, c - lo)
        # phase 2: every (row, path) of the block; a thread takes whole paths
        with nogil, parallel(num_threads=n_threads):
            buf = <double*> malloc(sizeof(double) * (2 * D + m + 1))
            try:
                for p in prange(P, schedule='static'):
                    for r in range(j):
                        if sc[p] == -INFINITY:
                            scores[r, p] = -INFINITY
                            continue
                        _path_row(&X[lo + r, 0], &R[p, 0, 0], &mean[p, 0], &Cv[p, 0, 0], mp,
                                  &missing[0], D, m, sc[p], buf, buf + D, buf + 2 * D,
                                  &scores[r, p], &cond[r, p, 0])
            finally:
                free(buf)
        # phase 3: per row, log-sum-exp over the paths and the weighted conditional mean
        with nogil:
            for r in prange(j, num_threads=n_threads, schedule='static'):
                mx = -INFINITY
                for p in range(P):
                    if scores[r, p] > mx:
                        mx = scores[r, p]
                if mx == -INFINITY:
                    out_loglik[lo + r] = -INFINITY
                    for a in range(m):
                        out_fill[lo + r, a] = NAN
                    continue
                tot = 0.0
                for a in range(m):
                    out_fill[lo + r, a] = 0.0
                for p in range(P):
                    wgt = exp(scores[r, p] - mx)
                    tot = tot + wgt
                    for a in range(m):
                        out_fill[lo + r, a] += wgt * cond[r, p, a]
                for a in range(m):
                    out_fill[lo + r, a] /= tot
                out_loglik[lo + r] = mx + log(tot)
    return bad
