# Fused float/double wrappers over scipy's Fortran BLAS for row-major callers.
# Every argument goes by pointer; dims are int. Included (not cimported) by the kernels.
from cython cimport floating
from scipy.linalg.cython_blas cimport dtrmm, strmm, dsyrk, dgemm, sgemm


cdef inline void trmm_upper_rows(int d, int m, const floating *r, floating *buf) noexcept nogil:
    """buf[i, :] <- R @ buf[i, :] for the m rows (length d) of a row-major buffer.

    R is a row-major d x d upper-triangular matrix. Seen column-major, buf is d x m and R is
    R^T (lower), so this is B := op(A) B with side='L', uplo='L', transa='T'.
    """
    cdef char side = b'L'
    cdef char uplo = b'L'
    cdef char transa = b'T'
    cdef char diag = b'N'
    cdef floating one = 1.0
    if floating is double:
        dtrmm(&side, &uplo, &transa, &diag, &d, &m, &one, <double*> r, &d, buf, &d)
    else:
        strmm(&side, &uplo, &transa, &diag, &d, &m, &one, <float*> r, &d, buf, &d)


cdef inline void syrk_rows_accumulate(int d, int m, const double *buf, double *out) noexcept nogil:
    """out += buf^T buf for a row-major (m, d) buffer; fills out's upper triangle (row-major)."""
    # Column-major view: buf is A (d x m); A A^T is the scatter. Row-major upper = column-major lower.
    cdef char uplo = b'L'
    cdef char trans = b'N'
    cdef double one = 1.0
    dsyrk(&uplo, &trans, &d, &m, &one, <double*> buf, &d, &one, out, &d)


cdef inline void gemm_rowmajor(char transa, char transb, int m, int n, int k, double alpha,
                               const double *a, int lda, const double *b, int ldb, double beta,
                               double *c, int ldc) noexcept nogil:
    """Row-major C = alpha op(A) op(B) + beta C, mapped onto column-major dgemm by swapping."""
    dgemm(&transb, &transa, &n, &m, &k, &alpha, <double*> b, &ldb, <double*> a, &lda, &beta, c, &ldc)
