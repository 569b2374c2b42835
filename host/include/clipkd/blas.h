/* clipkd/blas.h — the one GEMM wrapper, BLIS kernel selection, threads.
 *
 * Every matrix product in clipkd goes through ckd_gemm(), which calls BLIS's
 * typed API with row/column strides (a transpose is a stride swap, never a
 * copy). Before BLIS is first used, clipkd asks which kernel set BLIS would
 * choose for this CPU; when BLIS does not recognise the CPU and would fall back
 * to its slow 'generic' kernels, clipkd selects the best set the CPU supports
 * (AVX-512 → skx, AVX2+FMA → haswell). A CPU that BLIS recognises keeps BLIS's
 * choice, and a BLIS_ARCH_TYPE set by the user always wins.
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
