/* clipkd selftest: a quick end-to-end check of this build's numerics —
 * GEMM against a direct loop for every transpose combination, and gradient
 * checks of three small models that between them use every op. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "clipkd/clipkd.h"

#define SH(...) ((int64_t[]){__VA_ARGS__})

void cmd_selftest_help(FILE *out)
{
    fprintf(out, "Usage: clipkd [--threads N] selftest\n"
                 "Checks GEMM against a direct computation and runs finite-difference gradient\n"
                 "checks of small models built from every op. Exits 1 on any mismatch.\n");
}

static int check_gemm(void)
{
    int64_t M = 37, N = 29, K = 53;
    float *a = malloc(sizeof(float) * (size_t)(M * K)), *b = malloc(sizeof(float) * (size_t)(K * N)),
          *c = malloc(sizeof(float) * (size_t)(M * N));
    ckd_rng r;
    ckd_rng_seed(&r, 5);
    for (int64_t i = 0; i < M * K; i++)
        a[i] = (float)ckd_rng_uniform(&r) - 0.5f;
    for (int64_t i = 0; i < K * N; i++)
        b[i] = (float)ckd_rng_uniform(&r) - 0.5f;
    double worst = 0;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            ckd_gemm(ta, tb, M, N, K, 1.0f, a, ta ? M : K, b, tb ? K : N, 0.0f, c, N);
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    double s = 0;
                    for (int64_t k = 0; k < K; k++)
                        s += (double)(ta ? a[k * M + i] : a[i * K + k]) * (tb ? b[j * K + k] : b[k * N + j]);
                    double e = fabs(s - c[i * N + j]);
                    worst = e > worst ? e : worst;
                }
        }
    free(a);
    free(b);
    free(c);
    int ok = worst < 1e-4;
    printf("  gemm (4 transpose cases, 37x29x53): max error %.2g  %s\n", worst, ok ? "ok" : "FAILED");
    return ok;
}

typedef struct model {
    ckd_tensor *p[8];
    int n;
} model;

static ckd_tensor *rp(int nd, const int64_t *shape, uint64_t seed, float scale)
{
    ckd_tensor *t = ckd_param_new(nd, shape, NULL, NULL);
    if (!t)
        return NULL;
    ckd_rng r;
    ckd_rng_seed(&r, seed);
    for (int64_t i = 0; i < t->n; i++)
        t->data[i] = (float)((ckd_rng_uniform(&r) * 2 - 1) * scale);
    return t;
}

/* x [2,4,8] -> pre-LN causal attention block with a gelu MLP. */
static ckd_tensor *block(ckd_ctx *c, void *u)
{
    ckd_tensor **p = ((model *)u)->p;
    ckd_tensor *h = ckd_layernorm(c, p[0], p[1], NULL, 1e-5f);
    ckd_tensor *a = ckd_attention(c, ckd_linear(c, h, p[2], NULL), ckd_linear(c, h, p[3], NULL), h, 2, 1);
    ckd_tensor *x = ckd_add(c, p[0], a);
    ckd_tensor *m = ckd_linear(c, ckd_gelu(c, ckd_linear(c, x, p[4], NULL)), p[5], NULL);
    ckd_tensor *y = ckd_add(c, x, ckd_quick_gelu(c, m));
    return ckd_mean_all(c, ckd_mul(c, y, y));
}

/* Two towers' embeddings -> CLIP-style contrastive loss plus KL and MSE terms. */
static ckd_tensor *head(ckd_ctx *c, void *u)
{
    ckd_tensor **p = ((model *)u)->p;
    ckd_tensor *si = ckd_l2_normalize(c, p[0], 1e-12f), *st = ckd_l2_normalize(c, p[1], 1e-12f);
    ckd_tensor *logits = ckd_mul(c, ckd_matmul_ex(c, si, 0, st, 1), ckd_exp(c, p[2]));
    const int32_t diag[4] = {0, 1, 2, 3};
    ckd_tensor *ce = ckd_add(c, ckd_cross_entropy(c, logits, diag),
                             ckd_cross_entropy(c, ckd_transpose(c, logits, 0, 1), diag));
    ckd_tensor *kl = ckd_kl_div(c, ckd_scale(c, logits, 0.5f), ckd_log_softmax(c, ckd_matmul(c, si, p[3])));
    ckd_tensor *sm = ckd_mse(c, ckd_softmax(c, logits), ckd_softmax(c, ckd_matmul_ex(c, st, 0, si, 1)));
    return ckd_add(c, ckd_add(c, ce, kl), sm);
}

/* Patch embedding and shape plumbing: conv2d, reshape, transpose, concat,
 * slice, select_rows, gather_rows, reductions and the remaining activations. */
static ckd_tensor *patches(ckd_ctx *c, void *u)
{
    ckd_tensor **p = ((model *)u)->p;
    ckd_tensor *x = ckd_conv2d(c, p[0], p[1], p[2], 2, 0);                 /* [2, 4, 2, 2] */
    ckd_tensor *t = ckd_transpose(c, ckd_reshape(c, x, 3, SH(2, 4, 4)), 1, 2); /* [2, 4 tokens, 4] */
    ckd_tensor *cls = ckd_reshape(c, ckd_gather_rows(c, p[3], (const int32_t[]){0, 0}, 2), 3, SH(2, 1, 4));
    ckd_tensor *seq = ckd_concat(c, (ckd_tensor *[]){cls, t}, 2, 1);        /* [2, 5, 4] */
    ckd_tensor *kept = ckd_select_rows(c, seq, (const int32_t[]){0, 2, 4, 0, 1, 3}, 3);
    ckd_tensor *s = ckd_slice(c, kept, 2, 1, 3);
    ckd_tensor *d = ckd_div(c, ckd_sigmoid(c, s), ckd_add(c, ckd_sqrt(c, ckd_exp(c, s)), ckd_relu(c, s)));
    ckd_tensor *l = ckd_log(c, ckd_add(c, ckd_tanh(c, ckd_sum(c, d, 1)), ckd_scalar(c, 2.0f)));
    int was = ckd_ctx_set_training(c, 1);
    ckd_rng_seed(ckd_ctx_rng(c), 3);
    ckd_tensor *dr = ckd_dropout(c, l, 0.25f);
    ckd_ctx_set_training(c, was);
    return ckd_sum_all(c, ckd_sub(c, ckd_mean(c, dr, 0), ckd_mean_all(c, s)));
}

static int check_model(ckd_ctx *c, const char *name, ckd_scalar_fn fn, model *m)
{
    ckd_gradcheck_report rep;
    ckd_error err;
    char buf[512];
    for (int i = 0; i < m->n; i++)
        if (!m->p[i]) {
            printf("  %-8s could not allocate parameters  FAILED\n", name);
            return 0;
        }
    int rc = ckd_gradcheck(c, fn, m, m->p, m->n, NULL, &rep, &err);
    if (rc < 0)
        printf("  %-8s %s  FAILED\n", name, err.msg);
    else
        printf("  %-8s %lld gradients checked; %s  %s\n", name, (long long)rep.checked,
               ckd_gradcheck_describe(&rep, buf, sizeof buf), rc == 0 ? "ok" : "FAILED");
    for (int i = 0; i < m->n; i++)
        ckd_param_free(m->p[i]);
    return rc == 0;
}

int cmd_selftest(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "clipkd selftest: takes no arguments\n");
        return CLI_USAGE;
    }
    ckd_error err;
    ckd_ctx *c = ckd_ctx_new(0, 1, &err);
    if (!c) {
        fprintf(stderr, "clipkd selftest: %s\n", err.msg);
        return CLI_FAIL;
    }
    clock_t t0 = clock();
    printf("selftest (%d threads):\n", ckd_get_threads());
    int ok = check_gemm();
    model blk = {{rp(3, SH(2, 4, 8), 1, 1), rp(1, SH(8), 2, 1), rp(2, SH(8, 8), 3, 0.5f), rp(2, SH(8, 8), 4, 0.5f),
                  rp(2, SH(16, 8), 5, 0.5f), rp(2, SH(8, 16), 6, 0.5f)},
                 6};
    ok &= check_model(c, "block", block, &blk);
    model hd = {{rp(2, SH(4, 6), 7, 1), rp(2, SH(4, 6), 8, 1), rp(0, NULL, 9, 1), rp(2, SH(6, 4), 10, 1)}, 4};
    ok &= check_model(c, "head", head, &hd);
    model pt = {{rp(4, SH(2, 3, 4, 4), 11, 1), rp(4, SH(4, 3, 2, 2), 12, 0.5f), rp(1, SH(4), 13, 0.5f),
                 rp(2, SH(1, 4), 14, 1)},
                4};
    ok &= check_model(c, "patches", patches, &pt);
    ckd_ctx_free(c);
    printf("selftest %s (%.1f s CPU)\n", ok ? "passed" : "FAILED", (double)(clock() - t0) / CLOCKS_PER_SEC);
    return ok ? CLI_OK : CLI_FAIL;
}
