# OpenMP declarations shared by the kernels (see _omp_shim.h for the serial fallback).
cdef extern from "_omp_shim.h":
    int DGMM_OPENMP_ENABLED
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
