"""What the build gives: whether OpenMP is compiled in, and OpenMP's own thread default."""
include "_omp.pxi"


def openmp_enabled():
    """True when the extensions were compiled with OpenMP."""
    return bool(DGMM_OPENMP_ENABLED)


def omp_max_threads():
    """OpenMP's default team size (honours OMP_NUM_THREADS); 1 without OpenMP."""
    return omp_get_max_threads()
