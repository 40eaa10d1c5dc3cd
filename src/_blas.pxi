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
