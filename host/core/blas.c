/* The GEMM wrapper over BLIS, kernel selection and the thread setting. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <blis.h>

#include "clipkd/blas.h"
#include "core/blas_probe.h"

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
static char g_choice[32], g_reason[PATH_MAX + 512], g_agreed[32], g_agreed_why[160], g_warning[PATH_MAX + 512];
static cpu_caps g_caps;
static ckdi_kernel_probe g_probe;
static const char *g_probe_names[CKDI_MAX_KERNELS];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static int arch_id(const char *name)
{
    arch_t id = arch_by_name(name);
    return id == BLIS_NUM_ARCHS ? -1 : (int)id;
}

static void force_arch(const char *name)
{
    char num[16];
    snprintf(num, sizeof num, "%d", arch_id(name));
    setenv("BLIS_ARCH_TYPE", num, 1);
}

static int probe_has(const char *name)
{
    for (int i = 0; i < g_probe.n; i++)
        if (!strcmp(g_probe.name[i], name))
            return 1;
    return 0;
}

/* "zen3, haswell, ..." for a message. */
static const char *candidate_list(void)
{
    static char buf[160];
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < g_probe.n && k < sizeof buf; i++)
        k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%s", i ? ", " : "", g_probe.name[i]);
    return g_probe.n ? buf : "none";
}

/* The kernel set before BLIS's first use, in this order: the user's
 * BLIS_ARCH_TYPE; the set agreed across MPI ranks; CLIPKD_KERNELS (a set's
 * name, or "blis" for BLIS's own choice without timing); else the fastest
 * candidate by the timed probe (blas_probe.c). */
static void choose_kernels(void)
{
    const char *user = getenv("BLIS_ARCH_TYPE"), *mode = getenv("CLIPKD_KERNELS");
    if (user && *user) {
        snprintf(g_choice, sizeof g_choice, "(not probed)");
        snprintf(g_reason, sizeof g_reason, "BLIS_ARCH_TYPE=%s set by the user", user);
        return;
    }
    if (probe_blis_choice(g_choice, sizeof g_choice) != 0)
        snprintf(g_choice, sizeof g_choice, "(probe failed)");
    ckdi_kernel_candidates(&g_probe, g_choice, g_caps.avx512, g_caps.avx2_fma, arch_id);
    if (g_agreed[0]) {
        if (!strcmp(g_agreed, g_choice) || probe_has(g_agreed)) {
            force_arch(g_agreed);
            snprintf(g_reason, sizeof g_reason, "%s", g_agreed_why);
        } else { /* e.g. an AVX-512 set chosen on a node that has no AVX-512 */
            snprintf(g_reason, sizeof g_reason, "BLIS's own choice: %s cannot run on this CPU (it runs %s)", g_agreed,
                     candidate_list());
        }
        return;
    }
    if (mode && *mode && strcmp(mode, "auto") && strcmp(mode, "blis")) {
        if (!strcmp(mode, g_choice) || probe_has(mode)) {
            force_arch(mode);
            snprintf(g_reason, sizeof g_reason, "CLIPKD_KERNELS=%s set by the user", mode);
            return;
        }
        snprintf(g_warning, sizeof g_warning,
                 "CLIPKD_KERNELS=%s: not a kernel set this CPU and BLIS can run (%s); timing the candidates instead",
                 mode, candidate_list());
    }
    if (mode && !strcmp(mode, "blis")) {
        const char *pick = ckd_blas_pick_arch(g_choice, g_caps.avx512, g_caps.avx2_fma);
        if (pick && arch_id(pick) >= 0) {
            force_arch(pick);
            snprintf(g_reason, sizeof g_reason,
                     "CLIPKD_KERNELS=blis, but BLIS does not recognise this CPU (it would use 'generic') "
                     "and the CPU supports %s", g_caps.avx512 ? "AVX-512" : "AVX2+FMA");
        } else {
            snprintf(g_reason, sizeof g_reason, "BLIS's own choice (CLIPKD_KERNELS=blis: not timed)");
        }
        memset(&g_probe, 0, sizeof g_probe);
        return;
    }
    if (g_probe.n < 2) {
        const char *pick = ckd_blas_pick_arch(g_choice, g_caps.avx512, g_caps.avx2_fma);
        if (g_probe.n == 1 && strcmp(g_probe.name[0], g_choice))
            pick = g_probe.name[0];
        if (pick && arch_id(pick) >= 0)
            force_arch(pick);
        snprintf(g_reason, sizeof g_reason, "%s", pick ? "the only kernel set for this CPU's instructions"
                                                       : "BLIS's own choice for this CPU (nothing else to time)");
        g_probe.n = 0;
        return;
    }
    const char *pick = ckdi_kernel_choose(&g_probe, g_choice, bli_info_get_version_str(), arch_id);
    if (g_probe.warning[0] && !g_warning[0])
        snprintf(g_warning, sizeof g_warning, "%s", g_probe.warning);
    if (pick) {
        force_arch(pick);
        snprintf(g_reason, sizeof g_reason, "the fastest of %d timed%s", g_probe.n,
                 !strcmp(pick, g_choice) ? ", BLIS's own choice" : "");
    } else {
        snprintf(g_reason, sizeof g_reason, "BLIS's own choice (no candidate could be timed: %s)", g_probe.source);
    }
}

static void blas_init_once(void)
{
    cpu_detect(&g_caps);
    choose_kernels();
    bli_init();
    g_info.version = bli_info_get_version_str();
    g_info.arch = bli_arch_string(bli_arch_query_id());
    g_info.blis_choice = g_choice;
    g_info.reason = g_reason;
    g_info.cpu_features = g_caps.names;
    for (int i = 0; i < g_probe.n; i++)
        g_probe_names[i] = g_probe.name[i];
    g_info.n_timed = g_probe.n;
    g_info.timed = g_probe_names;
    g_info.timed_gflops = g_probe.gflops;
    g_info.timing = g_probe.n ? g_probe.source : "";
    g_info.warning = g_warning;
}

const ckd_blas_info *ckd_blas_init(void)
{
    pthread_once(&g_once, blas_init_once);
    return &g_info;
}

int ckdi_blas_init_agreed(const char *name, const char *why)
{
    const char *user = getenv("BLIS_ARCH_TYPE");
    if (name && *name && !(user && *user)) {
        snprintf(g_agreed, sizeof g_agreed, "%s", name);
        snprintf(g_agreed_why, sizeof g_agreed_why, "%s", why);
    }
    ckd_blas_init();
    return !name || !*name || !strcmp(g_info.arch, name) ? 0 : -1;
}

/* ---- GEMM ------------------------------------------------------------------------------ */
/* BLIS sends a product with any dimension under ≈200 down its "sup" path
 * (no packing). That wins for small products but loses badly on the skinny
 * ones a transformer is made of: measured with BLIS 0.9 on 2 threads (zen3
 * kernels), 6304×768×192 runs at 110 GFLOP/s through sup and 170 packed,
 * 50×3072×768 (a batch-1 MLP) at 58 and 106; but 128³ runs at 88 through sup
 * and 51 packed, and 16×768×768 at 113 and 81 (the two paths cross near 40
 * rows). So: packed from 2^23 multiply-adds, when M and N are both 40 or
 * more (docs/performance.md). */
static int packed_wins(int64_t M, int64_t N, int64_t K)
{
    return (double)M * (double)N * (double)K >= 8388608.0 && M >= 40 && N >= 40;
}

/* Preemptions a second above which the cores count as shared (see
 * cores_contended). */
#define CONTENDED_SWITCHES_PER_S 100.0

/* Chunks of a split product are multiples of 96 rows or columns: whole
 * micro-tiles for every x86 kernel set (6x16, 32x12, ...). */
#define CHUNK 96

static void sgemm_ex(int nt, int packed, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

static void sgemm(int nt, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                  int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    sgemm_ex(nt, packed_wins(M, N, K), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void sgemm_packed(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                         int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    sgemm_ex(1, 1, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void gemm_chunked(int nt, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
static int split_wanted(void);

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
    if (nt > 1 && packed_wins(M, N, K) && (M >= 2 * CHUNK || N >= 2 * CHUNK) && split_wanted())
        gemm_chunked(nt, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else
        sgemm(nt, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* 1 while other processes take this machine's cores from ours, judged by
 * this process's involuntary context switches (getrusage): on a machine to
 * ourselves the scheduler has no reason to preempt our threads, beside a
 * busy process it does so every few milliseconds. Judged afresh at most
 * every 20 ms, per calling thread. */
static int cores_contended(void)
{
    static _Thread_local double last_t;
    static _Thread_local long last_n;
    static _Thread_local int contended;
    struct timespec ts;
    struct rusage ru;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double t = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    if (t - last_t >= 0.02 && getrusage(RUSAGE_SELF, &ru) == 0) {
        if (last_t > 0)
            contended = (double)(ru.ru_nivcsw - last_n) / (t - last_t) > CONTENDED_SWITCHES_PER_S;
        last_t = t, last_n = ru.ru_nivcsw;
    }
    return contended;
}

/* CLIPKD_GEMM_SPLIT: "always" or "never" chunk large products; otherwise
 * (auto) only while the cores are shared. */
static int split_wanted(void)
{
    const char *v = getenv("CLIPKD_GEMM_SPLIT");
    if (v && !strcmp(v, "always"))
        return 1;
    if (v && !strcmp(v, "never"))
        return 0;
    return cores_contended();
}

/* A large product on several threads: BLIS would split it among them once,
 * in equal static shares, so on a machine where another process takes a
 * core part of the time, every product waits for the thread that was
 * descheduled while the others spin in BLIS's barrier (measured: the ViT-B/32
 * forward 3.1x slower beside one busy process on 2 cores). Instead the rows
 * (or columns) go out in chunks, a few per thread, handed to whichever
 * thread is free; each chunk is one single-threaded BLIS call. A chunk
 * computes each element of C exactly as the whole product would (the sum
 * over K is never split), so the result depends neither on which thread
 * takes which chunk nor on the thread count (tests/test-core.c checks). */
static void gemm_chunked(int nt, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    int rows = M >= N;
    int64_t D = rows ? M : N, want = 4 * (int64_t)nt;
    int64_t step = ((D + want - 1) / want + CHUNK - 1) / CHUNK * CHUNK, n = (D + step - 1) / step;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (int64_t i = 0; i < n; i++) {
        int64_t lo = i * step, len = D - lo < step ? D - lo : step;
        if (rows)
            sgemm_packed(trans_a, trans_b, len, N, K, alpha, A + (trans_a ? lo : lo * lda), lda, B, ldb, beta,
                         C + lo * ldc, ldc);
        else
            sgemm_packed(trans_a, trans_b, M, len, K, alpha, A, lda, B + (trans_b ? lo * ldb : lo), ldb, beta, C + lo,
                         ldc);
    }
}

void ckdi_sgemm_nn(int nt, int64_t M, int64_t N, int64_t K, const float *A, const float *B, float *C)
{
    sgemm(nt, 0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
}

static void sgemm_ex(int nt, int packed, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(nt, &rntm);
    /* packed: BLIS's packed path, not sup (see packed_wins); a chunk of a
     * split product (gemm_chunked) is packed whatever its size. */
    if (packed)
        bli_rntm_disable_l3_sup(&rntm);
    /* Row-major storage: row stride = leading dimension, column stride = 1.
     * BLIS wants op(A) m×k; a transposed operand is passed as stored with the
     * transpose flag, BLIS reads it through swapped strides. */
    bli_sgemm_ex(trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 (dim_t)M, (dim_t)N, (dim_t)K, &alpha, (float *)A, (inc_t)lda, 1, (float *)B, (inc_t)ldb, 1, &beta,
                 C, (inc_t)ldc, 1, NULL, &rntm);
}
