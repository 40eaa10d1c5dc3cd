/* _trikernel.h -- fused "centre, multiply by an upper-triangular factor, squared norm" kernel.
 *
 * For one Gaussian path (upper-triangular R: row-major D x D, full storage; mean mu) and a chunk of
 * m data rows x_r, computes
 *
 *     out[r] = || R (x_r - mu) ||^2 = sum_i ( sum_{j >= i} R[i*D + j] * (x_r[j] - mu[j]) )^2.
 *
 * Only R's upper triangle (diagonal included) is read: the lower triangle may hold anything.
 *
 * API (every function is static: plain C99 + GCC extensions, libc only, no allocation, thread-safe):
 *
 *   int    dgmm_row_block(void);
 *       Row padding granularity (16): ldt must be a multiple of it and >= m.
 *   void   dgmm_transpose_chunk_d(int D, int m, const double *x, int ldx, double *xt, int ldt);
 *   void   dgmm_transpose_chunk_s(int D, int m, const float  *x, int ldx, float  *xt, int ldt);
 *       Prepare a chunk once, then score it against any number of paths:
 *       xt[j*ldt + r] = x[r*ldx + j] for r < m, j < D; xt[j*ldt + r] = 0 for m <= r < ldt.
 *   void   dgmm_gather_chunk_d(int D, int m, const double *x, int ldx, const intptr_t *rows,
 *                              double *xt, int ldt);
 *   void   dgmm_gather_chunk_s(int D, int m, const float  *x, int ldx, const intptr_t *rows,
 *                              float  *xt, int ldt);
 *       The same for scattered rows: xt[j*ldt + r] = x[rows[r]*ldx + j] (rows: numpy intp).
 *   size_t dgmm_tri_work_size(int D, int ldt);
 *       Elements (of the kernel's type) of scratch a call needs: 64*D + 16 (ldt is not used).
 *   void   dgmm_tri_sqnorm_d(int D, int m, const double *xt, int ldt, const double *mu,
 *                            const double *R, double *work, double *out);
 *   void   dgmm_tri_sqnorm_s(int D, int m, const float *xt, int ldt, const float *mu,
 *                            const float *R, float *work, double *out);
 *       out[r] = ||R (x_r - mu)||^2 for 0 <= r < m (out[m..] untouched), xt as prepared above.
 *       Reads xt rows 0..round_up(m, 16)-1 only. The float version centres and multiplies in float
 *       (as strmm would) and sums the squares in double. work: per-thread scratch of
 *       dgmm_tri_work_size(D, ldt) elements, any alignment. For aligned loads give xt 64-byte
 *       alignment (ldt a multiple of 16 keeps every row aligned).
 *   int    dgmm_tri_isa(void);
 *       Instruction set the kernels dispatch to: 0 generic C (GCC vector extensions: SSE2 on a
 *       baseline x86-64 build, NEON on arm64, ...), 1 AVX2+FMA, 2 AVX-512F.
 *
 * Dispatch. The package is compiled without -march, so the kernel is compiled three times on
 * x86-64: generic, __attribute__((target("avx2,fma"))) and target("avx512f,avx2,fma"), and
 * dgmm_tri_isa() picks one with __builtin_cpu_supports (which also checks that the OS saves the
 * wide registers) on its first call; the choice is cached per translation unit. No ifunc /
 * target_clones is involved, so this works the same from a static header inside a Cython module,
 * in any shared object and on non-glibc systems; the branch costs nothing next to one call (one
 * path x one chunk). The environment variable DGMM_TRIKERNEL_ISA = generic | avx2, read at that
 * first call, caps the choice (to test the fallbacks, or to avoid AVX-512 clock penalties).
 * Other architectures and compilers get the generic code only (non-GNU compilers: scalar C).
 *
 * Method. Rows are vectorised: a vector holds W consecutive rows of the chunk (AVX2: 4 doubles /
 * 8 floats; AVX-512: 8 / 16). Per call, each group of V row vectors is centred into a small tile
 * (D x V*W, in L1), then for each block of I output coordinates i0..i0+I-1 the I x V register
 * accumulators z_i = sum_{j >= i} R[i, j] (x_j - mu_j) are built by broadcasting R[i, j] (the
 * diagonal block as a triangle, columns j >= i0+I as a rectangle), and their squares are added to
 * the rows' sums at once: z never goes to memory. About D(D+1) flops per row and path.
 * Accuracy: centring first (no R mu folding) keeps the result accurate for data far from 0.
 *
 * Implementation note: this file includes itself (DGMM__SELF) to instantiate the kernel template
 * once per type and instruction set, so it must keep the name _trikernel.h.
 */

/* ================================================================================================
 * Template part, instantiated by the main part below through self-inclusion. Parameters:
 *   DGMM__T (double or float), DGMM__W (lanes: 2, 4, 8 or 16), DGMM__I (<= 8) x DGMM__V (<= 7)
 *   register block, DGMM__SFX (name suffix), DGMM__ATTR (function attributes),
 *   DGMM__FMA(a, b, c) (optional, a*b+c by default), DGMM__WIDEN_ADD(sp, q) (optional, float
 *   only: sp[0..W) += (double) q[0..W)).
 * ================================================================================================ */
#if defined(DGMM__INSTANTIATING)

#define DGMM__TW (DGMM__V * DGMM__W) /* tile width: rows per group */
#define DGMM__F(name) DGMM__CAT(name, DGMM__SFX)
#define DGMM__VT DGMM__F(dgmm__vt)

typedef DGMM__T DGMM__VT __attribute__((vector_size(DGMM__W * sizeof(DGMM__T))));

#ifndef DGMM__FMA
#define DGMM__FMA(a, b, c) ((a) * (b) + (c))
#endif

DGMM__AI DGMM__ATTR DGMM__VT DGMM__F(dgmm__ld)(const DGMM__T *p)
{
    DGMM__VT v;
    memcpy(&v, p, sizeof v);
    return v;
}

DGMM__AI DGMM__ATTR void DGMM__F(dgmm__st)(DGMM__T *p, DGMM__VT v)
{
    memcpy(p, &v, sizeof v);
}

DGMM__AI DGMM__ATTR DGMM__VT DGMM__F(dgmm__set1)(DGMM__T x)
{
    /* An initialiser list compiles to one broadcast; (VT){0} + x would cost an add (x + 0.0 is
     * not foldable because of signed zeros), and a loop over lanes compiles to inserts. */
#if DGMM__W == 2
    DGMM__VT v = {x, x};
#elif DGMM__W == 4
    DGMM__VT v = {x, x, x, x};
#elif DGMM__W == 8
    DGMM__VT v = {x, x, x, x, x, x, x, x};
#elif DGMM__W == 16
    DGMM__VT v = {x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x};
#else
#error "_trikernel.h: unsupported lane count"
#endif
    return v;
}

/* sp[0..W) += (double) q[0..W) */
DGMM__AI DGMM__ATTR void DGMM__F(dgmm__addsq)(double *sp, DGMM__VT q)
{
#if defined(DGMM__WIDEN_ADD)
    DGMM__WIDEN_ADD(sp, q);
#else
    DGMM__UNROLL
    for (int k = 0; k < DGMM__W; k++)
        sp[k] += (double)q[k];
#endif
}

/* One block of output coordinates i0..i0+NI-1 (NI <= DGMM__I, i0+NI <= D) for the first NV
 * (<= DGMM__V) row vectors of the centred tile:
 *     s[r] += sum_{i0 <= i < i0+NI} (sum_{j >= i} R[i, j] tile[j, r])^2.
 * A = &R[i0, i0]. NI and NV are compile-time constants once inlined: the loops over them unroll and
 * the accumulators live in registers. */
DGMM__AI DGMM__ATTR void DGMM__F(dgmm__blk)(const int NI, const int NV, int D, int i0,
                                            const DGMM__T *A, const DGMM__T *tile, double *s)
{
    DGMM__VT acc[DGMM__I][DGMM__V];
    const DGMM__T *Ar[DGMM__I];
    DGMM__UNROLL
    for (int ii = 0; ii < NI; ii++) {
        Ar[ii] = A + (size_t)ii * (size_t)D;
        DGMM__UNROLL
        for (int v = 0; v < NV; v++)
            acc[ii][v] = (DGMM__VT){0};
    }
    const DGMM__T *c = tile + (size_t)i0 * DGMM__TW;
    /* Diagonal block: column i0+t feeds rows ii <= t only. */
    DGMM__UNROLL
    for (int t = 0; t < NI; t++) {
        DGMM__VT cv[DGMM__V];
        DGMM__UNROLL
        for (int v = 0; v < NV; v++)
            cv[v] = DGMM__F(dgmm__ld)(c + t * DGMM__TW + v * DGMM__W);
        DGMM__UNROLL
        for (int ii = 0; ii < NI; ii++) {
            if (ii <= t) {
                DGMM__VT b = DGMM__F(dgmm__set1)(Ar[ii][t]);
                DGMM__UNROLL
                for (int v = 0; v < NV; v++)
                    acc[ii][v] = DGMM__FMA(b, cv[v], acc[ii][v]);
            }
        }
    }
    /* Rectangle: columns i0+NI..D-1 feed every row of the block. */
    c += (size_t)NI * DGMM__TW;
    for (int k = NI; k < D - i0; k++, c += DGMM__TW) {
        DGMM__VT cv[DGMM__V];
        DGMM__UNROLL
        for (int v = 0; v < NV; v++)
            cv[v] = DGMM__F(dgmm__ld)(c + v * DGMM__W);
        DGMM__UNROLL
        for (int ii = 0; ii < NI; ii++) {
            DGMM__VT b = DGMM__F(dgmm__set1)(Ar[ii][k]);
            DGMM__UNROLL
            for (int v = 0; v < NV; v++)
                acc[ii][v] = DGMM__FMA(b, cv[v], acc[ii][v]);
        }
    }
    /* Squares of the block's NI coordinates, summed in the kernel's type (NI terms), then added to
     * the rows' double sums. */
    DGMM__UNROLL
    for (int v = 0; v < NV; v++) {
        DGMM__VT q = acc[0][v] * acc[0][v];
        DGMM__UNROLL
        for (int ii = 1; ii < NI; ii++)
            q = DGMM__FMA(acc[ii][v], acc[ii][v], q);
        DGMM__F(dgmm__addsq)(s + v * DGMM__W, q);
    }
}

/* Every coordinate block for the first NV row vectors of the tile. The last block (D mod DGMM__I
 * coordinates, if any) has no rectangle part. */
DGMM__AI DGMM__ATTR void DGMM__F(dgmm__rows)(const int NV, int D, const DGMM__T *R,
                                             const DGMM__T *tile, double *s)
{
    int i0 = 0;
    for (; i0 + DGMM__I <= D; i0 += DGMM__I)
        DGMM__F(dgmm__blk)(DGMM__I, NV, D, i0, R + (size_t)i0 * (size_t)D + (size_t)i0, tile, s);
    const DGMM__T *A = R + (size_t)i0 * (size_t)D + (size_t)i0;
    switch (D - i0) {
#if DGMM__I > 8
#error "_trikernel.h: DGMM__I > 8 unsupported"
#endif
#if DGMM__I > 7
    case 7: DGMM__F(dgmm__blk)(7, NV, D, i0, A, tile, s); break;
#endif
#if DGMM__I > 6
    case 6: DGMM__F(dgmm__blk)(6, NV, D, i0, A, tile, s); break;
#endif
#if DGMM__I > 5
    case 5: DGMM__F(dgmm__blk)(5, NV, D, i0, A, tile, s); break;
#endif
#if DGMM__I > 4
    case 4: DGMM__F(dgmm__blk)(4, NV, D, i0, A, tile, s); break;
#endif
#if DGMM__I > 3
    case 3: DGMM__F(dgmm__blk)(3, NV, D, i0, A, tile, s); break;
#endif
#if DGMM__I > 2
    case 2: DGMM__F(dgmm__blk)(2, NV, D, i0, A, tile, s); break;
#endif
#if DGMM__I > 1
    case 1: DGMM__F(dgmm__blk)(1, NV, D, i0, A, tile, s); break;
#endif
    default: break;
    }
}

DGMM__ATTR DGMM__UNUSED static void DGMM__F(dgmm__tri)(int D, int m, const DGMM__T *xt, int ldt,
                                                       const DGMM__T *mu, const DGMM__T *R,
                                                       DGMM__T *work, double *out)
{
    /* The tile: D x TW, 64-byte aligned inside work (dgmm_tri_work_size leaves the slack). */
    DGMM__T *tile = (DGMM__T *)(((uintptr_t)work + 63) & ~(uintptr_t)63);
    const int nvec = (m + DGMM__W - 1) / DGMM__W;
    for (int g = 0; g < nvec; g += DGMM__V) {
        const int ngv = nvec - g < DGMM__V ? nvec - g : DGMM__V;
        const int r0 = g * DGMM__W;
        const DGMM__T *x = xt + r0;
        double s[DGMM__TW];
        /* Centre the group's rows into the tile. */
        for (int j = 0; j < D; j++) {
            const DGMM__VT mj = DGMM__F(dgmm__set1)(mu[j]);
            const DGMM__T *xj = x + (size_t)j * (size_t)ldt;
            DGMM__T *tj = tile + (size_t)j * DGMM__TW;
            for (int v = 0; v < ngv; v++)
                DGMM__F(dgmm__st)(tj + v * DGMM__W, DGMM__F(dgmm__ld)(xj + v * DGMM__W) - mj);
        }
        for (int k = 0; k < DGMM__TW; k++)
            s[k] = 0.0;
        switch (ngv) {
#if DGMM__V > 7
#error "_trikernel.h: DGMM__V > 7 unsupported"
#endif
#if DGMM__V > 6
        case 7: DGMM__F(dgmm__rows)(7, D, R, tile, s); break;
#endif
#if DGMM__V > 5
        case 6: DGMM__F(dgmm__rows)(6, D, R, tile, s); break;
#endif
#if DGMM__V > 4
        case 5: DGMM__F(dgmm__rows)(5, D, R, tile, s); break;
#endif
#if DGMM__V > 3
        case 4: DGMM__F(dgmm__rows)(4, D, R, tile, s); break;
#endif
#if DGMM__V > 2
        case 3: DGMM__F(dgmm__rows)(3, D, R, tile, s); break;
#endif
#if DGMM__V > 1
        case 2: DGMM__F(dgmm__rows)(2, D, R, tile, s); break;
#endif
        default: DGMM__F(dgmm__rows)(1, D, R, tile, s); break;
        }
        const int nr = m - r0 < DGMM__TW ? m - r0 : DGMM__TW;
        for (int k = 0; k < nr; k++)
            out[r0 + k] = s[k];
    }
}

#undef DGMM__TW
#undef DGMM__F
#undef DGMM__VT
#undef DGMM__FMA
#undef DGMM__WIDEN_ADD
#undef DGMM__T
#undef DGMM__W
#undef DGMM__I
#undef DGMM__V
#undef DGMM__SFX
#undef DGMM__ATTR

/* ================================================================================================
 * Main part.
 * ================================================================================================ */
#elif !defined(DGMM_TRIKERNEL_H)
#define DGMM_TRIKERNEL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DGMM__SELF "_trikernel.h"

#if defined(__GNUC__)
#define DGMM__UNUSED __attribute__((unused))
#else
#define DGMM__UNUSED
#endif

static DGMM__UNUSED int dgmm_row_block(void)
{
    return 16;
}

static DGMM__UNUSED size_t dgmm_tri_work_size(int D, int ldt)
{
    (void)ldt;
    /* The widest tile is 64 floats (AVX-512: 16 lanes x 4 vectors) or 32 doubles, plus 64 bytes
     * of alignment slack. */
    return (size_t)(D > 0 ? D : 1) * 64 + 16;
}

#define DGMM__TRANSPOSE_BODY(T)                                                                   \
    {                                                                                             \
        int r0, r, j;                                                                             \
        for (r0 = 0; r0 < m; r0 += 16) {                                                          \
            const int r1 = r0 + 16 < m ? r0 + 16 : m;                                             \
            for (j = 0; j < D; j++)                                                               \
                for (r = r0; r < r1; r++)                                                         \
                    xt[(size_t)j * (size_t)ldt + (size_t)r] =                                     \
                        x[(size_t)r * (size_t)ldx + (size_t)j];                                   \
        }                                                                                         \
        if (ldt > m)                                                                              \
            for (j = 0; j < D; j++)                                                               \
                memset(xt + (size_t)j * (size_t)ldt + (size_t)m, 0,                               \
                       sizeof(T) * (size_t)(ldt - m));                                            \
    }

static DGMM__UNUSED void dgmm_transpose_chunk_d(int D, int m, const double *x, int ldx, double *xt,
                                                int ldt)
DGMM__TRANSPOSE_BODY(double)

static DGMM__UNUSED void dgmm_transpose_chunk_s(int D, int m, const float *x, int ldx, float *xt,
                                                int ldt)
DGMM__TRANSPOSE_BODY(float)

#define DGMM__GATHER_BODY(T)                                                                      \
    {                                                                                             \
        int r0, r, j;                                                                             \
        for (r0 = 0; r0 < m; r0 += 16) {                                                          \
            const int r1 = r0 + 16 < m ? r0 + 16 : m;                                             \
            for (j = 0; j < D; j++)                                                               \
                for (r = r0; r < r1; r++)                                                         \
                    xt[(size_t)j * (size_t)ldt + (size_t)r] =                                     \
                        x[(size_t)rows[r] * (size_t)ldx + (size_t)j];                             \
        }                                                                                         \
        if (ldt > m)                                                                              \
            for (j = 0; j < D; j++)                                                               \
                memset(xt + (size_t)j * (size_t)ldt + (size_t)m, 0,                               \
                       sizeof(T) * (size_t)(ldt - m));                                            \
    }

static DGMM__UNUSED void dgmm_gather_chunk_d(int D, int m, const double *x, int ldx,
                                             const intptr_t *rows, double *xt, int ldt)
DGMM__GATHER_BODY(double)

static DGMM__UNUSED void dgmm_gather_chunk_s(int D, int m, const float *x, int ldx,
                                             const intptr_t *rows, float *xt, int ldt)
DGMM__GATHER_BODY(float)

#undef DGMM__TRANSPOSE_BODY
#undef DGMM__GATHER_BODY

/* Register blocks (I output coordinates x V row vectors), chosen by measurement on Zen 3 for AVX2
 * (3 x 4 beat 6 x 2 and 4 x 3: fewer broadcasts per FMA); AVX-512 has 32 registers: 4 x 4. */
#define DGMM__AVX512_I 4
#define DGMM__AVX512_V 4

#if defined(__GNUC__) && !defined(DGMM_TRIKERNEL_SCALAR)
/* ---------------- GCC / clang: vectorised template instances ---------------- */

#define DGMM__CAT2(a, b) a##_##b
#define DGMM__CAT(a, b) DGMM__CAT2(a, b)
#define DGMM__AI static inline __attribute__((always_inline, unused))
#if defined(__clang__)
#define DGMM__UNROLL _Pragma("unroll")
#else
#define DGMM__UNROLL _Pragma("GCC unroll 16")
#endif

#define DGMM__INSTANTIATING 1

/* Generic: any target (SSE2 on baseline x86-64: 16 registers, 2 x 4 block of 2-lane vectors). */
#define DGMM__T double
#define DGMM__W 2
#define DGMM__I 2
#define DGMM__V 4
#define DGMM__SFX gen_d
#define DGMM__ATTR
#include DGMM__SELF

#define DGMM__T float
#define DGMM__W 4
#define DGMM__I 2
#define DGMM__V 4
#define DGMM__SFX gen_s
#define DGMM__ATTR
#include DGMM__SELF

#if defined(DGMM_TRIKERNEL_TEST_WIDE)
/* Test only: the AVX-512 blocking in generic code, to check its logic without AVX-512. */
#define DGMM__T double
#define DGMM__W 8
#define DGMM__I DGMM__AVX512_I
#define DGMM__V DGMM__AVX512_V
#define DGMM__SFX wide_d
#define DGMM__ATTR
#include DGMM__SELF

#define DGMM__T float
#define DGMM__W 16
#define DGMM__I DGMM__AVX512_I
#define DGMM__V DGMM__AVX512_V
#define DGMM__SFX wide_s
#define DGMM__ATTR
#include DGMM__SELF
#endif

#if defined(__x86_64__) && !defined(DGMM_TRIKERNEL_GENERIC_ONLY)
#define DGMM__X86 1
#include <immintrin.h>

/* AVX2 + FMA, 16 ymm registers: 3 x 4 accumulators, 1 broadcast, tile vectors partly as memory
 * operands of the FMAs. */
#define DGMM__T double
#define DGMM__W 4
#define DGMM__I 3
#define DGMM__V 4
#define DGMM__SFX avx2_d
#define DGMM__ATTR __attribute__((target("avx2,fma")))
#define DGMM__FMA(a, b, c) _mm256_fmadd_pd(a, b, c)
#include DGMM__SELF

#define DGMM__T float
#define DGMM__W 8
#define DGMM__I 3
#define DGMM__V 4
#define DGMM__SFX avx2_s
#define DGMM__ATTR __attribute__((target("avx2,fma")))
#define DGMM__FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define DGMM__WIDEN_ADD(sp, q)                                                                    \
    do {                                                                                          \
        const __m256d lo_ = _mm256_cvtps_pd(_mm256_castps256_ps128(q));                           \
        const __m256d hi_ = _mm256_cvtps_pd(_mm256_extractf128_ps(q, 1));                         \
        _mm256_storeu_pd((sp), _mm256_add_pd(_mm256_loadu_pd(sp), lo_));                          \
        _mm256_storeu_pd((sp) + 4, _mm256_add_pd(_mm256_loadu_pd((sp) + 4), hi_));                \
    } while (0)
#include DGMM__SELF

/* AVX-512F, 32 zmm registers: 4 x 4 accumulators, broadcasts folded into the FMAs. */
#define DGMM__T double
#define DGMM__W 8
#define DGMM__I DGMM__AVX512_I
#define DGMM__V DGMM__AVX512_V
#define DGMM__SFX avx512_d
#define DGMM__ATTR __attribute__((target("avx512f,avx2,fma")))
#define DGMM__FMA(a, b, c) _mm512_fmadd_pd(a, b, c)
#include DGMM__SELF

#define DGMM__T float
#define DGMM__W 16
#define DGMM__I DGMM__AVX512_I
#define DGMM__V DGMM__AVX512_V
#define DGMM__SFX avx512_s
#define DGMM__ATTR __attribute__((target("avx512f,avx2,fma")))
#define DGMM__FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define DGMM__WIDEN_ADD(sp, q)                                                                    \
    do {                                                                                          \
        const __m512d lo_ = _mm512_cvtps_pd(_mm512_castps512_ps256(q));                           \
        const __m512d hi_ = _mm512_cvtps_pd(                                                      \
            _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(q), 1)));                    \
        _mm512_storeu_pd((sp), _mm512_add_pd(_mm512_loadu_pd(sp), lo_));                          \
        _mm512_storeu_pd((sp) + 8, _mm512_add_pd(_mm512_loadu_pd((sp) + 8), hi_));                \
    } while (0)
#include DGMM__SELF

#endif /* __x86_64__ */

#undef DGMM__INSTANTIATING

#else
/* ---------------- Other compilers (or DGMM_TRIKERNEL_SCALAR): plain scalar code ---------------- */
#define DGMM__SCALAR_BODY                                                                         \
    {                                                                                             \
        int r, i, j;                                                                              \
        for (r = 0; r < m; r++) {                                                                 \
            double acc = 0.0;                                                                     \
            for (j = 0; j < D; j++)                                                               \
                work[j] = xt[(size_t)j * (size_t)ldt + (size_t)r] - mu[j];                        \
            for (i = 0; i < D; i++) {                                                             \
                const size_t o = (size_t)i * (size_t)D;                                           \
                double z = 0.0;                                                                   \
                for (j = i; j < D; j++)                                                           \
                    z += (double)R[o + (size_t)j] * (double)work[j];                              \
                acc += z * z;                                                                     \
            }                                                                                     \
            out[r] = acc;                                                                         \
        }                                                                                         \
    }
static DGMM__UNUSED void dgmm__tri_gen_d(int D, int m, const double *xt, int ldt, const double *mu,
                                         const double *R, double *work, double *out)
DGMM__SCALAR_BODY
static DGMM__UNUSED void dgmm__tri_gen_s(int D, int m, const float *xt, int ldt, const float *mu,
                                         const float *R, float *work, double *out)
DGMM__SCALAR_BODY
#undef DGMM__SCALAR_BODY
#endif /* vectorised / scalar */

/* ---------------- Run-time dispatch ---------------- */

static DGMM__UNUSED int dgmm_tri_isa(void)
{
#if defined(DGMM__X86)
    static int level = -1; /* per translation unit; racing first calls store the same value */
    int l = __atomic_load_n(&level, __ATOMIC_RELAXED);
    if (l < 0) {
        const char *cap = getenv("DGMM_TRIKERNEL_ISA");
        int max = 2;
        if (cap != NULL && strcmp(cap, "generic") == 0)
            max = 0;
        else if (cap != NULL && strcmp(cap, "avx2") == 0)
            max = 1;
        __builtin_cpu_init();
        l = 0;
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
            l = 1;
            if (__builtin_cpu_supports("avx512f"))
                l = 2;
        }
        if (l > max)
            l = max;
        __atomic_store_n(&level, l, __ATOMIC_RELAXED);
    }
    return l;
#else
    return 0;
#endif
}

static DGMM__UNUSED void dgmm_tri_sqnorm_d(int D, int m, const double *xt, int ldt,
                                           const double *mu, const double *R, double *work,
                                           double *out)
{
    if (D <= 0) {
        for (int r = 0; r < m; r++)
            out[r] = 0.0;
        return;
    }
#if defined(DGMM__X86)
    switch (dgmm_tri_isa()) {
    case 2: dgmm__tri_avx512_d(D, m, xt, ldt, mu, R, work, out); return;
    case 1: dgmm__tri_avx2_d(D, m, xt, ldt, mu, R, work, out); return;
    default: break;
    }
#endif
    dgmm__tri_gen_d(D, m, xt, ldt, mu, R, work, out);
}

static DGMM__UNUSED void dgmm_tri_sqnorm_s(int D, int m, const float *xt, int ldt,
                                           const float *mu, const float *R, float *work,
                                           double *out)
{
    if (D <= 0) {
        for (int r = 0; r < m; r++)
            out[r] = 0.0;
        return;
    }
#if defined(DGMM__X86)
    switch (dgmm_tri_isa()) {
    case 2: dgmm__tri_avx512_s(D, m, xt, ldt, mu, R, work, out); return;
    case 1: dgmm__tri_avx2_s(D, m, xt, ldt, mu, R, work, out); return;
    default: break;
    }
#endif
    dgmm__tri_gen_s(D, m, xt, ldt, mu, R, work, out);
}

#endif /* DGMM_TRIKERNEL_H */
