/* GEMM throughput of clipkd's BLIS wrapper, side by side with OpenBLAS.
 *
 * OpenBLAS is not a dependency: it is looked up at run time with dlopen and,
 * when present, every shape is timed through both libraries in the same run,
 * alternating, so the ratio is not skewed by what else the machine is doing.
 * Prints GFLOP/s per shape and ends with `gemm: clipkd/openblas = R`, R the
 * median ratio over the shapes.
 *
 * OpenBLAS is run at its best: its runtime CPU detection can pick a slow
 * kernel set for a CPU it does not know (a 2-core AVX-512 Xeon got 65
 * GFLOP/s instead of 239), so unless OPENBLAS_CORETYPE is set the bench
 * first times 1024^3 SGEMM under each of a few core types, one child process
 * each (OpenBLAS reads the variable when it loads; a core type the CPU
 * cannot run dies in its child), and uses the fastest, saying which.
 */
#include "config.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clipkd/clipkd.h"

typedef void (*cblas_sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                               float *, int);
typedef void (*set_threads_fn)(int);

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct shape {
    int64_t M, N, K;
    const char *what;
} shape;

/* ViT students: M = batch · tokens (197 tokens for 224 px / patch 16), N and K
 * the widths of their projections and MLPs; the ViT-B/32 teacher's forward
 * (50 tokens) at batch 1 and 16. */
static const shape shapes[] = {
    {1024, 1024, 1024, "square"},
    {50, 768, 768, "ViT-B/32 b1 attn proj"},
    {50, 3072, 768, "ViT-B/32 b1 mlp up"},
    {800, 768, 768, "ViT-B/32 b16 attn proj"},
    {800, 3072, 768, "ViT-B/32 b16 mlp up"},
    {800, 768, 3072, "ViT-B/32 b16 mlp down"},
    {3152, 192, 192, "ViT-T/16 b16 attn proj"},
    {3152, 768, 192, "ViT-T/16 b16 mlp up"},
    {3152, 192, 768, "ViT-T/16 b16 mlp down"},
    {6304, 384, 384, "ViT-S/16 b32 attn proj"},
    {6304, 1536, 384, "ViT-S/16 b32 mlp up"},
    {6304, 384, 1536, "ViT-S/16 b32 mlp down"},
    {12608, 256, 256, "b64 width 256"},
    {12608, 512, 512, "b64 width 512"},
    {12608, 64, 192, "b64 head dim 64"},
    {25216, 768, 768, "ViT-B/16 b128 attn proj"},
    {25216, 192, 64, "b128 narrow"},
    {25216, 512, 256, "b128 width 256->512"},
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Best of `reps` timed runs after one warm-up: GFLOP/s. */
static double time_clipkd(const shape *s, const float *A, const float *B, float *C, int reps)
{
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t0 = now();
        ckd_gemm(0, 0, s->M, s->N, s->K, 1.0f, A, s->K, B, s->N, 0.0f, C, s->N);
        double t = now() - t0;
        if (r && t < best)
            best = t;
    }
    return 2.0 * (double)s->M * (double)s->N * (double)s->K / best / 1e9;
}

static double time_openblas(cblas_sgemm_fn f, const shape *s, const float *A, const float *B, float *C, int reps)
{
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t0 = now();
        f(101 /* row major */, 111, 111, (int)s->M, (int)s->N, (int)s->K, 1.0f, A, (int)s->K, B, (int)s->N, 0.0f, C,
          (int)s->N);
        double t = now() - t0;
        if (r && t < best)
            best = t;
    }
    return 2.0 * (double)s->M * (double)s->N * (double)s->K / best / 1e9;
}

/* The core types probed ("" is OpenBLAS's own detection). */
static const char *const coretypes[] = {"", "Haswell", "SkylakeX", "Cooperlake", "Zen", "Sandybridge"};

static cblas_sgemm_fn load_openblas(int threads)
{
    void *h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return NULL;
    set_threads_fn st = (set_threads_fn)dlsym(h, "openblas_set_num_threads");
    if (st)
        st(threads);
    return (cblas_sgemm_fn)dlsym(h, "cblas_sgemm");
}

/* In a child: 1024^3 SGEMM through OpenBLAS under the inherited core type. */
static int probe_child(int threads)
{
    cblas_sgemm_fn ob = load_openblas(threads);
    static const shape s = {1024, 1024, 1024, "probe"};
    float *A = calloc(1024 * 1024, sizeof(float)), *B = calloc(1024 * 1024, sizeof(float)),
          *C = calloc(1024 * 1024, sizeof(float));
    if (!ob || !A || !B || !C)
        return 1;
    printf("%.1f\n", time_openblas(ob, &s, A, B, C, 5));
    return 0;
}

/* Sets OPENBLAS_CORETYPE to the fastest candidate (unless the user set it)
 * and prints what was chosen and why. 0 when OpenBLAS ran under none (it is
 * not installed). */
static int choose_coretype(const char *self, int threads)
{
    const char *user = getenv("OPENBLAS_CORETYPE");
    if (user) {
        printf("OpenBLAS core type: %s (from OPENBLAS_CORETYPE)\n", user);
        return 1;
    }
    char line[2048] = "", best[32] = "";
    double best_g = 0;
    for (size_t i = 0; i < sizeof coretypes / sizeof *coretypes; i++) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "%s%s '%s' --openblas-probe %d 2>/dev/null", *coretypes[i] ? "OPENBLAS_CORETYPE=" : "",
                 coretypes[i], self, threads);
        FILE *p = popen(cmd, "r");
        double g = 0;
        if (p) {
            if (fscanf(p, "%lf", &g) != 1)
                g = 0;
            pclose(p);
        }
        size_t k = strlen(line);
        snprintf(line + k, sizeof line - k, "%s%s %s", k ? ", " : "", *coretypes[i] ? coretypes[i] : "detected",
                 g > 0 ? "" : "unusable");
        if (g > 0) {
            k = strlen(line);
            snprintf(line + k - 1, sizeof line - k + 1, " %.0f", g);
        }
        if (g > best_g)
            best_g = g, snprintf(best, sizeof best, "%s", coretypes[i]);
    }
    if (best_g <= 0)
        return 0;
    if (best[0])
        setenv("OPENBLAS_CORETYPE", best, 1);
    printf("OpenBLAS core type: %s (1024^3 SGEMM GFLOP/s: %s)\n", best[0] ? best : "detected", line);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc > 2 && !strcmp(argv[1], "--openblas-probe"))
        return probe_child(atoi(argv[2]));
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    if (threads > 0)
        ckd_set_threads(threads);
    threads = ckd_get_threads();
    const ckd_blas_info *bi = ckd_blas_init();
    printf("BLIS %s, kernels %s (%s), %d threads\n", bi->version, bi->arch, bi->reason, threads);

    cblas_sgemm_fn ob = NULL;
    /* The core type is chosen before this process loads OpenBLAS (it reads
     * the variable once, when it loads); the probes also tell whether it is
     * installed at all. */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        if (choose_coretype(self, threads))
            ob = load_openblas(threads);
    }
    if (ob) {
        printf("OpenBLAS found: timing the same shapes through it\n");
    } else {
        printf("OpenBLAS not installed (libopenblas0): clipkd only\n");
    }

    size_t nshapes = sizeof shapes / sizeof shapes[0];
    size_t maxa = 0, maxb = 0, maxc = 0;
    for (size_t i = 0; i < nshapes; i++) {
        size_t a = (size_t)(shapes[i].M * shapes[i].K), b = (size_t)(shapes[i].K * shapes[i].N),
               c = (size_t)(shapes[i].M * shapes[i].N);
        maxa = a > maxa ? a : maxa;
        maxb = b > maxb ? b : maxb;
        maxc = c > maxc ? c : maxc;
    }
    float *A = malloc(maxa * sizeof(float)), *B = malloc(maxb * sizeof(float)), *C = malloc(maxc * sizeof(float));
    if (!A || !B || !C)
        return 1;
    for (size_t i = 0; i < maxa; i++)
        A[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < maxb; i++)
        B[i] = (float)((i * 40503u) % 1000) / 1000.0f - 0.5f;

    printf("%-26s %6s %5s %5s %10s %10s %7s\n", "shape", "M", "N", "K", "clipkd", "openblas", "ratio");
    double ratios[64];
    int nr = 0;
    double worst_vit = 1e30;
    for (size_t i = 0; i < nshapes; i++) {
        const shape *s = &shapes[i];
        /* Enough repetitions for ~0.3 s per library and shape. */
        double flops = 2.0 * (double)s->M * (double)s->N * (double)s->K;
        int reps = (int)(0.3 / (flops / 100e9 / threads)) + 2;
        reps = reps > 50 ? 50 : reps;
        double g1 = time_clipkd(s, A, B, C, reps);
        double g2 = ob ? time_openblas(ob, s, A, B, C, reps) : 0;
        /* Second round, the other way around, keep the best of each. */
        if (ob) {
            double g2b = time_openblas(ob, s, A, B, C, reps), g1b = time_clipkd(s, A, B, C, reps);
            g1 = g1b > g1 ? g1b : g1;
            g2 = g2b > g2 ? g2b : g2;
        }
        if (ob) {
            double r = g1 / g2;
            ratios[nr++] = r;
            if (i > 0 && r < worst_vit)
                worst_vit = r;
            printf("%-26s %6lld %5lld %5lld %10.1f %10.1f %7.2f\n", s->what, (long long)s->M, (long long)s->N,
                   (long long)s->K, g1, g2, r);
        } else {
            printf("%-26s %6lld %5lld %5lld %10.1f %10s %7s\n", s->what, (long long)s->M, (long long)s->N,
                   (long long)s->K, g1, "-", "-");
        }
        fflush(stdout);
    }
    if (nr) {
        qsort(ratios, (size_t)nr, sizeof ratios[0], cmp_double);
        double med = nr % 2 ? ratios[nr / 2] : 0.5 * (ratios[nr / 2 - 1] + ratios[nr / 2]);
        printf("lowest ViT-shape ratio: %.2f\n", worst_vit);
        printf("gemm: clipkd/openblas = %.2f\n", med);
    }
    free(A);
    free(B);
    free(C);
    return 0;
}
