/* GEMM throughput of clipkd's BLIS wrapper, side by side with OpenBLAS.
 *
 * OpenBLAS is not a dependency: it is looked up at run time with dlopen and,
 * when present, every shape is timed through both libraries in the same run,
 * alternating, so the ratio is not skewed by what else the machine is doing.
 * Prints GFLOP/s per shape and ends with `gemm: clipkd/openblas = R`, R the
 * median ratio over the shapes.
 */
#include "config.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
 * the widths of their projections and MLPs. */
static const shape shapes[] = {
    {1024, 1024, 1024, "square"},
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

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    if (threads > 0)
        ckd_set_threads(threads);
    threads = ckd_get_threads();
    const ckd_blas_info *bi = ckd_blas_init();
    printf("BLIS %s, kernels %s (%s), %d threads\n", bi->version, bi->arch, bi->reason, threads);

    cblas_sgemm_fn ob = NULL;
    void *h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (h) {
        ob = (cblas_sgemm_fn)dlsym(h, "cblas_sgemm");
        set_threads_fn st = (set_threads_fn)dlsym(h, "openblas_set_num_threads");
        if (st)
            st(threads);
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
