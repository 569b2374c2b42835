/* clipkd/blas.h — the one GEMM wrapper, BLIS kernel selection, threads.
 *
 * Every matrix product in clipkd goes through ckd_gemm(), which calls BLIS's
 * typed API with row/column strides (a transpose is a stride swap, never a
 * copy). Before BLIS is first used, clipkd chooses its kernel set by
 * measurement: each set the CPU's instructions allow (AVX-512: skx; AVX2+FMA:
 * haswell, zen, zen2, zen3) and BLIS's own choice is timed on one thread in
 * a child process (≈0.3 s), and the fastest is used; BLIS's own choice is kept
 * unless another beats it by more than 2%. The figures are kept in
 * <cache>/kernels/ per CPU model and BLIS version, so a machine is timed once.
 * A BLIS_ARCH_TYPE set by the user always wins; CLIPKD_KERNELS=NAME forces a
 * set by name, CLIPKD_KERNELS=blis keeps BLIS's own choice without timing.
 * Under MPI, rank 0 chooses and every rank uses its choice (ckd_dist_init).
 */
#ifndef CLIPKD_BLAS_H
#define CLIPKD_BLAS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Row-major C[M,N] = alpha · op(A) · op(B) + beta · C.
 * A is stored M×K (lda ≥ K) or, when trans_a, K×M (lda ≥ M); likewise B is
 * K×N or, when trans_b, N×K. Uses the library thread count, or one thread when
 * called from inside an OpenMP parallel region. */
void ckd_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc);

/* Thread count for GEMM and ops. Default: $CLIPKD_THREADS, else the number of
 * online CPUs. Results are identical run to run for a fixed count. */
void ckd_set_threads(int n);
int ckd_get_threads(void);

/* What BLIS is doing, for `clipkd info`. Valid after ckd_blas_init(). */
typedef struct ckd_blas_info {
    const char *version;        /* BLIS version string */
    const char *arch;           /* kernel set in use, e.g. "skx", "zen3" */
    const char *blis_choice;    /* what BLIS picked on its own */
    const char *reason;         /* why the kernel set is the one in use */
    const char *cpu_features;   /* e.g. "avx512f avx512dq avx2 fma" */
    /* The timed candidates (n_timed = 0 when nothing was timed). */
    int n_timed;
    const char *const *timed;   /* kernel set names */
    const double *timed_gflops; /* 1-thread SGEMM GFLOP/s of each; 0: cannot run here */
    const char *timing;         /* where the figures come from (measured now, or the kept file) */
    const char *warning;        /* "" or what the user should hear: kept figures that could not be
                                   used (the file and the place), an unusable CLIPKD_KERNELS */
} ckd_blas_info;

/* Selects kernels and initialises BLIS (idempotent, thread-safe; ckd_gemm
 * calls it too). Returns the information above. */
const ckd_blas_info *ckd_blas_init(void);

/* The selection rule, exposed for tests: given BLIS's own choice and what the
 * CPU supports, the arch name to force, or NULL to keep BLIS's choice. */
const char *ckd_blas_pick_arch(const char *blis_choice, int has_avx512, int has_avx2_fma);

#ifdef __cplusplus
}
#endif
#endif
