/* The timed choice of BLIS kernel set (blas_probe.c), for blas.c.
 *
 * BLIS decides its kernel set once per process (BLIS_ARCH_TYPE is read at its
 * first use), so a candidate can only be timed in a process of its own: the
 * probe forks one child per candidate, before the parent first uses BLIS. The
 * figures are kept per CPU model and BLIS version in the cache directory, so
 * a machine probes once. */
#ifndef CKDI_BLAS_PROBE_H
#define CKDI_BLAS_PROBE_H

#include <limits.h>
#include <stdint.h>

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

#define CKDI_MAX_KERNELS 8

typedef struct ckdi_kernel_probe {
    int n;                                /* candidates */
    char name[CKDI_MAX_KERNELS][16];      /* kernel set names, as bli_arch_string gives them */
    double gflops[CKDI_MAX_KERNELS];      /* 1-thread SGEMM GFLOP/s; 0: could not run here */
    int choice;                           /* index into name, or -1 */
    char source[PATH_MAX + 256];          /* where the figures come from, for clipkd info */
    char warning[PATH_MAX + 512];         /* "" or a kept file that could not be used, and why */
} ckdi_kernel_probe;

/* Fills p->name with the kernel sets worth timing on this CPU: the AVX-512
 * sets when it has AVX-512, the AVX2+FMA sets when it has AVX2 and FMA, and
 * BLIS's own choice; only names this BLIS knows (arch_id(name) >= 0). Returns
 * p->n. */
int ckdi_kernel_candidates(ckdi_kernel_probe *p, const char *blis_choice, int avx512, int avx2_fma,
                           int (*arch_id)(const char *name));

/* Picks among p's candidates: reads the figures kept for this CPU and BLIS
 * version in the cache directory, or times each candidate (≈0.3 s in all) and
 * keeps the figures there. Sets p->gflops, p->choice and p->source; returns
 * the chosen name, or NULL when nothing could be timed (p->source says why). */
const char *ckdi_kernel_choose(ckdi_kernel_probe *p, const char *blis_choice, const char *blis_version,
                               int (*arch_id)(const char *name));

/* The rule, for tests: the fastest candidate, except that BLIS's own choice is
 * kept unless another beats it by more than 2%, so that timing noise does not
 * move a machine between two equally fast sets. -1 when none ran. */
int ckdi_kernel_pick(const ckdi_kernel_probe *p, const char *blis_choice);

/* Row-major SGEMM C = A·B on nt threads through BLIS, without the kernel
 * selection (blas.c; the probe's children call it). */
void ckdi_sgemm_nn(int nt, int64_t M, int64_t N, int64_t K, const float *A, const float *B, float *C);

/* Under MPI (ckd_dist_init): initialises BLIS with the kernel set rank 0
 * chose, unless the user's BLIS_ARCH_TYPE says otherwise. -1 when BLIS was
 * already initialised with another set. */
int ckdi_blas_init_agreed(const char *name, const char *why);

#endif
