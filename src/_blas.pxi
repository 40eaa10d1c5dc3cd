# Fused float/double wrappers over scipy's Fortran BLAS for row-major callers.
# Every argument goes by pointer; dims are int. Included (not cimported) by the kernels.
from cython cimport floating
from scipy.linalg.cython_blas cimport dsyrk, dgemm


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


from scipy.linalg.cython_blas cimport dtrsm


cdef inline void trsm_right_rowmajor(char uplo_t, int c, int m, const double *L, double *B) noexcept nogil:
    """Row-major B (c x m) := B op(L)^{-1} for a row-major lower-triangular L (m x m):
    uplo_t = b'T' solves X L^T = B, b'N' solves X L = B."""
    # Column-major, L's memory is U = L^T (upper) and B's is B^T: X L^T = B <=> L X^T = B^T,
    # i.e. U^T X^T = B^T; X L = B <=> L^T X^T = B^T, i.e. U X^T = B^T.
    cdef char side = b'L'
    cdef char uplo = b'U'
    cdef char trans = b'T' if uplo_t == b'T' else b'N'
    cdef char diag = b'N'
    cdef double one = 1.0
    dtrsm(&side, &uplo, &trans, &diag, &m, &c, &one, <double*> L, &m, B, &m)
