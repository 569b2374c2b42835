/* The GEMM wrapper over BLIS, kernel selection and the thread setting. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <blis.h>

#include "clipkd/blas.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- threads ------------------------------------------------------------------ */
static int g_threads; /* 0 = not yet decided */

static int default_threads(void)
{
    const char *e = getenv("CLIPKD_THREADS");
    if (e && *e) {
        int n = atoi(e);
        if (n > 0)
            return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void ckd_set_threads(int n) { g_threads = n > 0 ? n : default_threads(); }

int ckd_get_threads(void)
{
    if (g_threads <= 0)
        g_threads = default_threads();
    return g_threads;
}

/* ---- CPU features ------------------------------------------------------------------ */
typedef struct cpu_caps {
    int avx512, avx2_fma;
    char names[160];
} cpu_caps;

static void cpu_detect(cpu_caps *caps)
{
    memset(caps, 0, sizeof *caps);
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    /* skx kernels need F, DQ, CD, BW and VL; __builtin_cpu_supports also checks
     * that the OS saves the wide registers (via XGETBV in libgcc). */
    int f = __builtin_cpu_supports("avx512f"), dq = __builtin_cpu_supports("avx512dq"),
        cd = __builtin_cpu_supports("avx512cd"), bw = __builtin_cpu_supports("avx512bw"),
        vl = __builtin_cpu_supports("avx512vl");
    int avx2 = __builtin_cpu_supports("avx2"), fma = __builtin_cpu_supports("fma");
    caps->avx512 = f && dq && cd && bw && vl;
    caps->avx2_fma = avx2 && fma;
    snprintf(caps->names, sizeof caps->names, "%s%s%s%s%s%s%s", f ? "avx512f " : "", dq ? "avx512dq " : "",
             cd ? "avx512cd " : "", bw ? "avx512bw " : "", vl ? "avx512vl " : "", avx2 ? "avx2 " : "",
             fma ? "fma" : "");
#else
    snprintf(caps->names, sizeof caps->names, "(not x86)");
#endif
}

const char *ckd_blas_pick_arch(const char *blis_choice, int has_avx512, int has_avx2_fma)
{
    if (!blis_choice || strcmp(blis_choice, "generic") != 0)
        return NULL; /* BLIS recognised the CPU: trust it */
    if (has_avx512)
        return "skx";
    if (has_avx2_fma)
        return "haswell";
    return NULL;
}

static arch_t arch_by_name(const char *name)
{
    for (int id = 0; id < BLIS_NUM_ARCHS; id++)
        if (strcmp(bli_arch_string((arch_t)id), name) == 0)
            return (arch_t)id;
    return BLIS_NUM_ARCHS;
}

/* BLIS fixes its kernel choice for the life of the process at its first call,
 * so to learn what it would pick without committing to it we ask in a child
 * process. */
static int probe_blis_choice(char *out, size_t cap)
{
    int fd[2];
    if (pipe(fd) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return -1;
    }
    if (pid == 0) {
        close(fd[0]);
        unsetenv("BLIS_ARCH_TYPE");
        bli_init();
        const char *s = bli_arch_string(bli_arch_query_id());
        ssize_t w = write(fd[1], s, strlen(s));
        (void)w;
        _exit(0);
    }
    close(fd[1]);
    size_t k = 0;
    ssize_t r;
    while (k + 1 < cap && (r = read(fd[0], out + k, cap - 1 - k)) > 0)
        k += (size_t)r;
    out[k] = '\0';
    close(fd[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        ;
    return (k > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) ? 0 : -1;
}

static ckd_blas_info g_info;
static char g_choice[32], g_reason[160];
static cpu_caps g_caps;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void blas_init_once(void)
{
    cpu_detect(&g_caps);
    const char *user = getenv("BLIS_ARCH_TYPE");
    if (user && *user) {
        snprintf(g_choice, sizeof g_choice, "(not probed)");
        snprintf(g_reason, sizeof g_reason, "BLIS_ARCH_TYPE=%s set by the user", user);
    } else if (probe_blis_choice(g_choice, sizeof g_choice) != 0) {
        snprintf(g_choice, sizeof g_choice, "(probe failed)");
        snprintf(g_reason, sizeof g_reason, "BLIS's own choice (could not probe it first)");
    } else {
        const char *pick = ckd_blas_pick_arch(g_choice, g_caps.avx512, g_caps.avx2_fma);
        arch_t id = pick ? arch_by_name(pick) : BLIS_NUM_ARCHS;
        if (pick && id != BLIS_NUM_ARCHS) {
            char num[16];
            snprintf(num, sizeof num, "%d", (int)id);
            setenv("BLIS_ARCH_TYPE", num, 1);
            snprintf(g_reason, sizeof g_reason,
                     "selected by clipkd: BLIS does not recognise this CPU (it would use 'generic') "
                     "and the CPU supports %s",
                     g_caps.avx512 ? "AVX-512" : "AVX2+FMA");
        } else {
            snprintf(g_reason, sizeof g_reason, "BLIS's own choice for this CPU");
        }
    }
    bli_init();
    g_info.version = bli_info_get_version_str();
    g_info.arch = bli_arch_string(bli_arch_query_id());
    g_info.blis_choice = g_choice;
    g_info.reason = g_reason;
    g_info.cpu_features = g_caps.names;
}

const ckd_blas_info *ckd_blas_init(void)
{
    pthread_once(&g_once, blas_init_once);
    return &g_info;
}

/* ---- GEMM ------------------------------------------------------------------------------ */
void ckd_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
              int64_t ldc)
{
    if (M <= 0 || N <= 0)
        return;
    ckd_blas_init();
    int nt = ckd_get_threads();
#ifdef _OPENMP
    if (omp_in_parallel())
        nt = 1;
#endif
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(nt, &rntm);
    /* Row-major storage: row stride = leading dimension, column stride = 1.
     * BLIS wants op(A) m×k; a transposed operand is passed as stored with the
     * transpose flag, BLIS reads it through swapped strides. */
    bli_sgemm_ex(trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 (dim_t)M, (dim_t)N, (dim_t)K, &alpha, (float *)A, (inc_t)lda, 1, (float *)B, (inc_t)ldb, 1, &beta,
                 C, (inc_t)ldc, 1, NULL, &rntm);
}
