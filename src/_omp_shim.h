/* OpenMP entry points, with serial stand-ins when the compiler has no OpenMP,
   so the extensions still build (and run on one thread) without it. */
#ifndef DGMM_OMP_SHIM_H
#define DGMM_OMP_SHIM_H
#ifdef _OPENMP
#include <omp.h>
#define DGMM_OPENMP_ENABLED 1
#else
#define DGMM_OPENMP_ENABLED 0
static inline int omp_get_max_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
#endif
#endif
