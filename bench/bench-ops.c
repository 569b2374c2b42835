/* Throughput of the tensor core's non-GEMM ops at the shapes of a ViT-T/16
 * training step (batch 32, 197 tokens, width 192, MLP 768, 3 heads).
 *
 * For each op: the forward time and its memory throughput (bytes of the
 * inputs read plus the output written, over the time), then the time of
 * forward + backward of sum_all(op(x)), whose backward writes every input
 * gradient once. The `sum_all` row is that scaffold alone (x -> sum), to
 * subtract. Best of REPS runs after a warm-up, on 2 threads unless argv[1]
 * says otherwise. On a loaded machine prefer 1 thread: with 2, every
 * parallel loop waits for the other thread's next time slice, and the times
 * collapse onto multiples of the scheduler tick.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "clipkd/clipkd.h"

#define REPS 15

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

enum { K_SUM, K_ADD, K_ADD_ROWS, K_MUL_SCALAR, K_GELU, K_QGELU, K_SIGMOID, K_EXP, K_SOFTMAX, K_LAYERNORM };

typedef struct op_case {
    int kind;
    const char *what;
    int ndim;
    int64_t shape[3];
} op_case;

static const op_case cases[] = {
    {K_SUM, "sum_all (scaffold)", 2, {6304, 768}},
    {K_ADD, "add, same shape", 2, {6304, 192}},
    {K_ADD_ROWS, "add, [B,T,C] + [T,C]", 3, {32, 197, 192}},
    {K_MUL_SCALAR, "mul by a scalar", 2, {6304, 192}},
    {K_GELU, "gelu", 2, {6304, 768}},
    {K_QGELU, "quick_gelu", 2, {6304, 768}},
    {K_SIGMOID, "sigmoid", 2, {6304, 768}},
    {K_EXP, "exp", 2, {6304, 768}},
    {K_SOFTMAX, "softmax rows of 197", 2, {96 * 197, 197}},
    {K_LAYERNORM, "layernorm, width 192", 2, {6304, 192}},
};

/* An arena leaf filled with values in [-3, 3), gradient wanted. */
static ckd_tensor *input(ckd_ctx *c, int ndim, const int64_t *shape, ckd_rng *rng)
{
    ckd_tensor *t = ckd_tensor_new(c, ndim, shape);
    for (int64_t i = 0; t && i < t->n; i++)
        t->data[i] = (float)(6.0 * ckd_rng_uniform(rng) - 3.0);
    ckd_tensor_set_requires_grad(t, 1);
    return t;
}

/* The second operand of a binary op, or layernorm's weight and bias. */
static void operands(ckd_ctx *c, const op_case *k, ckd_rng *rng, ckd_tensor **b, ckd_tensor **b2)
{
    int64_t C = k->shape[k->ndim - 1];
    *b = *b2 = NULL;
    if (k->kind == K_ADD)
        *b = input(c, k->ndim, k->shape, rng);
    else if (k->kind == K_ADD_ROWS)
        *b = input(c, 2, k->shape + 1, rng);
    else if (k->kind == K_MUL_SCALAR)
        *b = input(c, 0, NULL, rng);
    else if (k->kind == K_LAYERNORM) {
        *b = input(c, 1, &C, rng);
        *b2 = input(c, 1, &C, rng);
    }
}

/* op(x); *bytes gets the forward's memory traffic. */
static ckd_tensor *apply(ckd_ctx *c, const op_case *k, ckd_tensor *x, ckd_tensor *b, ckd_tensor *b2, double *bytes)
{
    double n = (double)x->n * sizeof(float);
    *bytes = k->kind == K_SUM ? n : k->kind == K_ADD ? 3 * n : 2 * n;
    switch (k->kind) {
    case K_SUM: return x;
    case K_ADD:
    case K_ADD_ROWS: return ckd_add(c, x, b);
    case K_MUL_SCALAR: return ckd_mul(c, x, b);
    case K_GELU: return ckd_gelu(c, x);
    case K_QGELU: return ckd_quick_gelu(c, x);
    case K_SIGMOID: return ckd_sigmoid(c, x);
    case K_EXP: return ckd_exp(c, x);
    case K_SOFTMAX: return ckd_softmax(c, x);
    default: return ckd_layernorm(c, x, b, b2, 1e-5f);
    }
}

/* The OpenMP workers fall asleep during the serial input fill, and waking a
 * sleeping one can take milliseconds on a virtual machine; a small parallel
 * op right before the clock starts has them spinning again. */
static void wake_threads(ckd_ctx *c, ckd_rng *rng)
{
    ckd_scale(c, input(c, 1, (int64_t[]){1 << 18}, rng), 1.0f);
}

static int run_case(ckd_ctx *c, const op_case *k, ckd_rng *rng)
{
    double best_f = 1e30, best_fb = 1e30, bytes = 0;
    for (int r = 0; r <= REPS; r++) {
        for (int with_bw = 0; with_bw < 2; with_bw++) {
            ckd_ctx_reset(c);
            ckd_tensor *x = input(c, k->ndim, k->shape, rng), *b, *b2;
            operands(c, k, rng, &b, &b2);
            ckd_error err = {{0}};
            wake_threads(c, rng);
            double t0 = now();
            ckd_tensor *y = apply(c, k, x, b, b2, &bytes);
            if (with_bw && ckd_backward(c, ckd_sum_all(c, y), &err) != 0) {
                fprintf(stderr, "bench-ops: %s: %s\n", k->what, err.msg);
                return -1;
            }
            double t = now() - t0;
            if (!y) {
                fprintf(stderr, "bench-ops: %s: %s\n", k->what, ckd_ctx_error(c));
                return -1;
            }
            if (r > 0 && with_bw && t < best_fb)
                best_fb = t;
            if (r > 0 && !with_bw && t < best_f)
                best_f = t;
        }
    }
    char shp[64];
    int64_t sh[3] = {k->shape[0], k->shape[1], k->shape[2]};
    ckd_tensor view = {.ndim = k->ndim, .shape = {sh[0], sh[1], sh[2], 1}};
    if (k->kind == K_SUM) /* no forward op of its own */
        printf("| %s | %s | - | - | %.3f |\n", k->what, ckd_shape_str(&view, shp, sizeof shp), 1e3 * best_fb);
    else
        printf("| %s | %s | %.3f | %.1f | %.3f |\n", k->what, ckd_shape_str(&view, shp, sizeof shp), 1e3 * best_f,
               bytes / best_f * 1e-9, 1e3 * best_fb);
    return 0;
}

int main(int argc, char **argv)
{
    ckd_set_threads(argc > 1 ? atoi(argv[1]) : 2);
    ckd_error err = {{0}};
    ckd_ctx *c = ckd_ctx_new(0, 1, &err);
    if (!c) {
        fprintf(stderr, "bench-ops: %s\n", err.msg);
        return 1;
    }
    ckd_rng rng;
    ckd_rng_seed(&rng, 7);
    printf("%d threads, best of %d\n\n", ckd_get_threads(), REPS);
    printf("| op | shape | forward ms | forward GB/s | fwd + bwd of sum_all(op) ms |\n|---|---|---:|---:|---:|\n");
    int rc = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0] && rc == 0; i++)
        rc = run_case(c, &cases[i], &rng);
    ckd_ctx_free(c);
    return rc ? 1 : 0;
}
