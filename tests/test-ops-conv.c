/* conv2d (stride, padding, groups), pooling and batch norm against PyTorch
 * float64 references (tests/fixtures/ops-conv/, made by the generator next to
 * the fixture), and their bad-input messages. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fixture_util.h"
#include "ops_util.h"

#define SH(...) ((int64_t[]){__VA_ARGS__})
#define FWD_TOL 1e-5   /* outputs, abs */
#define GRAD_TOL 1e-5  /* gradients, abs · (1 + |ref|) */
#define STATS_TOL 1e-6 /* running statistics, abs */

static void setup(void) { fixture_open("tests/fixtures/ops-conv/ops_conv.safetensors"); }
static void teardown(void) { fixture_close(); }
TestSuite(torch, .init = setup, .fini = teardown);

static const ckd_st_tensor *find(const char *cs, const char *what) { return fixture_find(cs, what); }
static ckd_tensor *load_param(const char *cs, const char *what) { return fixture_param(cs, what); }
static void check(const char *cs, const char *what, const float *got, int64_t n, double tol, int rel)
{
    fixture_check(cs, what, got, n, tol, rel);
}

static json_t *case_meta(const char *cs)
{
    const char *m = ckd_st_metadata(ST, cs);
    cr_assert_not_null(m, "fixture has no metadata for %s", cs);
    json_t *j = json_loads(m, 0, NULL);
    cr_assert_not_null(j);
    return j;
}
static int meta_int(json_t *j, const char *key, int i)
{
    json_t *v = json_object_get(j, key);
    return (int)json_integer_value(json_is_array(v) ? json_array_get(v, (size_t)i) : v);
}

/* sum(out · r) backward, out against .out (forward tolerance). */
static void forward_backward(const char *cs, ckd_tensor *out)
{
    cr_assert_not_null(out, "%s: %s", cs, ckd_ctx_error(C));
    check(cs, "out", out->data, out->n, FWD_TOL, 0);
    ckd_tensor *r = ckd_tensor_new(C, out->ndim, out->shape);
    ckd_error err = {{0}};
    cr_assert_eq(ckd_st_to_f32(find(cs, "r"), r->data, (size_t)r->n, &err), 0, "%s", err.msg);
    cr_assert_eq(ckd_backward(C, ckd_sum_all(C, ckd_mul(C, out, r)), &err), 0, "%s", err.msg);
}

static void conv_case(const char *cs)
{
    json_t *m = case_meta(cs);
    ckd_tensor *x = load_param(cs, "x"), *w = load_param(cs, "w"), *b = load_param(cs, "b");
    ckd_conv2d_params p = {meta_int(m, "stride", 0), meta_int(m, "stride", 1), meta_int(m, "pad", 0),
                           meta_int(m, "pad", 1), meta_int(m, "groups", 0)};
    forward_backward(cs, ckd_conv2d_ex(C, x, w, b, &p));
    check(cs, "grad.x", x->grad, x->n, GRAD_TOL, 1);
    check(cs, "grad.w", w->grad, w->n, GRAD_TOL, 1);
    if (b)
        check(cs, "grad.b", b->grad, b->n, GRAD_TOL, 1);
    ckd_param_free(x);
    ckd_param_free(w);
    ckd_param_free(b);
    json_decref(m);
}

Test(torch, conv2d_grouped) { conv_case("conv_grouped"); }
Test(torch, conv2d_depthwise) { conv_case("conv_depthwise"); }
Test(torch, conv2d_depthwise_multiplier) { conv_case("conv_depthwise_mult"); }
Test(torch, conv2d_1x1) { conv_case("conv_1x1"); }
Test(torch, conv2d_stem_7x7) { conv_case("conv_stem"); }
Test(torch, conv2d_1x1_stride2) { conv_case("conv_1x1_stride2"); }

static void pool_case(const char *cs)
{
    json_t *m = case_meta(cs);
    const char *op = json_string_value(json_object_get(m, "op"));
    ckd_tensor *x = load_param(cs, "x");
    ckd_pool2d_params p = {meta_int(m, "kernel", 0), meta_int(m, "kernel", 1), meta_int(m, "stride", 0),
                           meta_int(m, "stride", 1), meta_int(m, "pad", 0),    meta_int(m, "pad", 1)};
    ckd_tensor *y = !strcmp(op, "maxpool")   ? ckd_maxpool2d(C, x, &p)
                    : !strcmp(op, "avgpool") ? ckd_avgpool2d(C, x, &p)
                                             : ckd_global_avgpool2d(C, x);
    forward_backward(cs, y);
    check(cs, "grad.x", x->grad, x->n, GRAD_TOL, 1);
    ckd_param_free(x);
    json_decref(m);
}

Test(torch, maxpool2d_stem) { pool_case("max_stem"); }
Test(torch, maxpool2d_rect) { pool_case("max_rect"); }
Test(torch, avgpool2d_kernel2) { pool_case("avg_k2"); }
Test(torch, avgpool2d_padded) { pool_case("avg_pad"); }
Test(torch, global_avgpool2d) { pool_case("gap"); }

static void bn_case(const char *cs)
{
    json_t *m = case_meta(cs);
    int training = json_is_true(json_object_get(m, "training"));
    float momentum = (float)json_real_value(json_object_get(m, "momentum"));
    float eps = (float)json_real_value(json_object_get(m, "eps"));
    ckd_tensor *x = load_param(cs, "x"), *g = load_param(cs, "gamma"), *b = load_param(cs, "beta");
    /* Buffers, here made as parameters (requires_grad set): the op must still
     * leave them off the tape, so their gradients stay zero. */
    ckd_tensor *rm = load_param(cs, "running_mean"), *rv = load_param(cs, "running_var");
    forward_backward(cs, ckd_batchnorm2d(C, x, g, b, rm, rv, training, momentum, eps));
    check(cs, "running_mean_after", rm->data, rm->n, STATS_TOL, 0);
    check(cs, "running_var_after", rv->data, rv->n, STATS_TOL, 0);
    for (int64_t i = 0; i < rm->n; i++)
        cr_assert(rm->grad[i] == 0.0f && rv->grad[i] == 0.0f, "running statistics got a gradient");
    check(cs, "grad.x", x->grad, x->n, GRAD_TOL, 1);
    if (g) {
        check(cs, "grad.gamma", g->grad, g->n, GRAD_TOL, 1);
        check(cs, "grad.beta", b->grad, b->n, GRAD_TOL, 1);
    }
    ckd_tensor *ps[] = {x, g, b, rm, rv};
    for (int i = 0; i < 5; i++)
        ckd_param_free(ps[i]);
    json_decref(m);
}

Test(torch, batchnorm2d_train) { bn_case("bn_train"); }
Test(torch, batchnorm2d_eval) { bn_case("bn_eval"); }
Test(torch, batchnorm2d_train_mean_far_from_zero) { bn_case("bn_train_offset"); }
Test(torch, batchnorm2d_train_no_affine) { bn_case("bn_train_noaffine"); }
Test(torch, batchnorm2d_eval_no_affine) { bn_case("bn_eval_noaffine"); }
Test(torch, batchnorm2d_train_2d_input) { bn_case("bn_train_1d"); }

/* ---- same bits for any thread count ---- */

/* Forward and input/weight gradients of a depthwise conv (groups run in
 * parallel when there are enough of them) and of a grouped one. */
static void conv_bits(int threads, int groups, float *out, float *dx, float *dw)
{
    ckd_set_threads(threads);
    ckd_ctx *c = ckd_ctx_new(0, 1, NULL);
    int64_t cin = 8;
    ckd_tensor *x = ckd_param_new(4, SH(3, cin, 9, 9), NULL, NULL);
    ckd_tensor *w = ckd_param_new(4, SH(8, cin / groups, 3, 3), NULL, NULL);
    fill(x->data, x->n, 1, 1);
    fill(w->data, w->n, 2, 1);
    ckd_tensor *y = ckd_conv2d_ex(c, x, w, NULL, &(ckd_conv2d_params){2, 2, 1, 1, groups});
    cr_assert_not_null(y, "%s", ckd_ctx_error(c));
    cr_assert_eq(ckd_backward(c, weighted_sum(c, y), NULL), 0);
    memcpy(out, y->data, (size_t)y->n * sizeof(float));
    memcpy(dx, x->grad, (size_t)x->n * sizeof(float));
    memcpy(dw, w->grad, (size_t)w->n * sizeof(float));
    ckd_param_free(x);
    ckd_param_free(w);
    ckd_ctx_free(c);
}

Test(torch, conv2d_groups_same_bits_for_any_thread_count)
{
    int was = ckd_get_threads();
    static float o1[3 * 8 * 25], x1[3 * 8 * 81], w1[8 * 8 * 9], o2[3 * 8 * 25], x2[3 * 8 * 81], w2[8 * 8 * 9];
    int groups[] = {8, 2, 1};
    for (int k = 0; k < 3; k++) {
        int64_t nw = 8 * (8 / groups[k]) * 9;
        conv_bits(1, groups[k], o1, x1, w1);
        conv_bits(3, groups[k], o2, x2, w2);
        cr_assert(!memcmp(o1, o2, sizeof o1), "groups %d: forward differs", groups[k]);
        cr_assert(!memcmp(x1, x2, sizeof x1), "groups %d: dx differs", groups[k]);
        cr_assert(!memcmp(w1, w2, (size_t)nw * sizeof(float)), "groups %d: dw differs", groups[k]);
    }
    ckd_set_threads(was);
}

/* ---- one image per GEMM and many: both against a direct sum ----
 * The conv takes several images per GEMM when their cols are small and one
 * at a time when they are large (ops_conv.c); the same naive loops check
 * both, forward and the gradients of weighted_sum(y). */
static void conv_vs_naive(int64_t B, int64_t Cin, int64_t S, int64_t Cout, int k, int stride, int pad)
{
    ckd_ctx *c = ckd_ctx_new(0, 1, NULL);
    ckd_tensor *x = ckd_param_new(4, SH(B, Cin, S, S), NULL, NULL), *w = ckd_param_new(4, SH(Cout, Cin, k, k), NULL, NULL);
    fill(x->data, x->n, 5, 1);
    fill(w->data, w->n, 6, 0.2f);
    ckd_tensor *y = ckd_conv2d_ex(c, x, w, NULL, &(ckd_conv2d_params){stride, stride, pad, pad, 1});
    cr_assert_not_null(y, "%s", ckd_ctx_error(c));
    cr_assert_eq(ckd_backward(c, weighted_sum(c, y), NULL), 0);
    int64_t So = y->shape[2];
    double *dx = calloc((size_t)x->n, sizeof *dx), *dw = calloc((size_t)w->n, sizeof *dw), worst = 0, wgrad = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t co = 0; co < Cout; co++)
            for (int64_t oy = 0; oy < So; oy++)
                for (int64_t ox = 0; ox < So; ox++) {
                    int64_t o = ((b * Cout + co) * So + oy) * So + ox;
                    double acc = 0, g = sin(0.37 * (double)o + 0.1); /* weighted_sum's weight */
                    for (int64_t ci = 0; ci < Cin; ci++)
                        for (int i = 0; i < k; i++)
                            for (int j = 0; j < k; j++) {
                                int64_t yy = oy * stride - pad + i, xx = ox * stride - pad + j;
                                if (yy < 0 || yy >= S || xx < 0 || xx >= S)
                                    continue;
                                int64_t xi = ((b * Cin + ci) * S + yy) * S + xx, wi = ((co * Cin + ci) * k + i) * k + j;
                                acc += (double)x->data[xi] * w->data[wi];
                                dx[xi] += g * w->data[wi];
                                dw[wi] += g * x->data[xi];
                            }
                    worst = fmax(worst, fabs(acc - y->data[o]));
                }
    for (int64_t i = 0; i < x->n; i++)
        wgrad = fmax(wgrad, fabs(dx[i] - x->grad[i]));
    for (int64_t i = 0; i < w->n; i++)
        wgrad = fmax(wgrad, fabs(dw[i] - w->grad[i]) / fmax(1.0, fabs(dw[i])));
    cr_expect_lt(worst, 1e-4, "B %lld Cin %lld S %lld: forward off by %g", (long long)B, (long long)Cin, (long long)S,
                 worst);
    cr_expect_lt(wgrad, 1e-3, "B %lld Cin %lld S %lld: gradients off by %g", (long long)B, (long long)Cin,
                 (long long)S, wgrad);
    free(dx);
    free(dw);
    ckd_param_free(x);
    ckd_param_free(w);
    ckd_ctx_free(c);
}

Test(torch, conv2d_one_image_per_gemm_and_many_match_a_direct_sum)
{
    conv_vs_naive(2, 16, 130, 3, 3, 1, 1); /* cols of 2.4M floats: one image at a time */
    conv_vs_naive(7, 3, 12, 5, 3, 2, 1);   /* tiny: all seven images in one GEMM */
    conv_vs_naive(5, 4, 10, 6, 1, 1, 0);   /* 1x1 stride 1, chunked: rows copied, not im2col */
}

/* ---- bad input ---- */

#define EXPECT_FAIL(expr, ...)                                                                                  \
    do {                                                                                                        \
        ckd_ctx_reset(C);                                                                                       \
        cr_assert_null((expr), "%s should fail", #expr);                                                        \
        const char *want[] = {__VA_ARGS__};                                                                     \
        for (size_t i_ = 0; i_ < sizeof want / sizeof want[0]; i_++)                                            \
            cr_assert(strstr(ckd_ctx_error(C), want[i_]), "message '%s' should contain '%s'", ckd_ctx_error(C), \
                      want[i_]);                                                                                \
    } while (0)
#define Z(...) ckd_tensor_zeros(C, (int)(sizeof(SH(__VA_ARGS__)) / sizeof(int64_t)), SH(__VA_ARGS__))

Test(torch, conv2d_bad_input)
{
    EXPECT_FAIL(ckd_conv2d_ex(C, Z(1, 6, 5, 5), Z(4, 2, 3, 3), NULL, &(ckd_conv2d_params){.groups = 4}),
                "conv2d", "6 input channels", "not divisible by groups 4");
    EXPECT_FAIL(ckd_conv2d_ex(C, Z(1, 4, 5, 5), Z(6, 1, 3, 3), NULL, &(ckd_conv2d_params){.groups = 4}),
                "conv2d", "6 output channels", "not divisible by groups 4");
    EXPECT_FAIL(ckd_conv2d_ex(C, Z(1, 4, 5, 5), Z(4, 2, 3, 3), NULL, &(ckd_conv2d_params){.groups = 4}),
                "conv2d", "2 input channels per group", "needs 1");
    EXPECT_FAIL(ckd_conv2d_ex(C, Z(1, 1, 2, 2), Z(1, 1, 5, 5), NULL, &(ckd_conv2d_params){.pad_h = 1, .pad_w = 1}),
                "conv2d", "leaves no output pixels", "[1, 1, 2, 2]");
    EXPECT_FAIL(ckd_conv2d_ex(C, Z(1, 1, 4, 4), Z(1, 1, 3, 3), NULL, &(ckd_conv2d_params){.stride_h = -1}),
                "conv2d", "invalid");
    EXPECT_FAIL(ckd_conv2d_ex(C, Z(1, 2, 4, 4), Z(3, 2, 3, 3), Z(4), NULL), "conv2d", "bias [4]");
    EXPECT_FAIL(ckd_conv2d_ex(C, Z(2, 4, 4), Z(3, 2, 3, 3), NULL, NULL), "conv2d", "[B, Cin, H, W]");
    EXPECT_FAIL(ckd_conv2d(C, Z(1, 1, 4, 4), Z(1, 1, 3, 3), NULL, 0, 0), "conv2d", "stride 0");
}

Test(torch, pool_bad_input)
{
    EXPECT_FAIL(ckd_maxpool2d(C, Z(1, 1, 3, 3), &(ckd_pool2d_params){5, 5, 2, 2, 0, 0}), "maxpool2d",
                "leaves no output pixels", "[1, 1, 3, 3]");
    EXPECT_FAIL(ckd_avgpool2d(C, Z(1, 1, 3, 3), &(ckd_pool2d_params){4, 4, 1, 1, 0, 0}), "avgpool2d",
                "leaves no output pixels");
    EXPECT_FAIL(ckd_maxpool2d(C, Z(1, 1, 8, 8), &(ckd_pool2d_params){3, 3, 2, 2, 2, 2}), "maxpool2d",
                "padding 2x2 is more than half the kernel 3x3");
    EXPECT_FAIL(ckd_avgpool2d(C, Z(1, 1, 8, 8), &(ckd_pool2d_params){0, 3, 1, 1, 0, 0}), "avgpool2d", "invalid");
    EXPECT_FAIL(ckd_maxpool2d(C, Z(1, 1, 8, 8), NULL), "maxpool2d", "no parameters");
    EXPECT_FAIL(ckd_maxpool2d(C, Z(1, 8, 8), &(ckd_pool2d_params){2, 2, 2, 2, 0, 0}), "maxpool2d",
                "[B, C, H, W]");
    EXPECT_FAIL(ckd_global_avgpool2d(C, Z(2, 3)), "global_avgpool2d", "[2, 3]");
}

Test(torch, batchnorm2d_bad_input)
{
    EXPECT_FAIL(ckd_batchnorm2d(C, Z(2, 4, 3, 3), Z(5), Z(4), Z(4), Z(4), 1, 0.1f, 1e-5f), "batchnorm2d",
                "gamma [5]", "4 channels");
    EXPECT_FAIL(ckd_batchnorm2d(C, Z(2, 4, 3, 3), Z(4), Z(4), Z(4), Z(3), 1, 0.1f, 1e-5f), "batchnorm2d",
                "running_var [3]");
    EXPECT_FAIL(ckd_batchnorm2d(C, Z(2, 4, 3, 3), Z(4), Z(2, 2), NULL, NULL, 1, 0.1f, 1e-5f), "batchnorm2d",
                "beta [2, 2]");
    EXPECT_FAIL(ckd_batchnorm2d(C, Z(2, 4, 3, 3), NULL, NULL, Z(4), NULL, 1, 0.1f, 1e-5f), "batchnorm2d",
                "running_mean and running_var go together");
    EXPECT_FAIL(ckd_batchnorm2d(C, Z(2, 4, 3, 3), NULL, NULL, NULL, NULL, 0, 0.1f, 1e-5f), "batchnorm2d",
                "eval mode needs running_mean");
    EXPECT_FAIL(ckd_batchnorm2d(C, Z(1, 3, 1, 1), NULL, NULL, Z(3), Z(3), 1, 0.1f, 1e-5f), "batchnorm2d",
                "more than one value per channel");
    EXPECT_FAIL(ckd_batchnorm2d(C, Z(2, 4, 3, 3), NULL, NULL, Z(4), Z(4), 1, 2.0f, 1e-5f), "batchnorm2d",
                "momentum");
    EXPECT_FAIL(ckd_batchnorm2d(C, Z(4), NULL, NULL, Z(4), Z(4), 1, 0.1f, 1e-5f), "batchnorm2d", "[N, C, H, W]");
}

/* Eval mode and no-grad leave the running statistics alone; train mode
 * under no-grad still updates them (as PyTorch). */
Test(torch, batchnorm2d_running_stats_update_rules)
{
    ckd_tensor *x = ckd_tensor_new(C, 4, SH(2, 2, 2, 2)), *rm = ckd_tensor_zeros(C, 1, SH(2)),
               *rv = ckd_tensor_new(C, 1, SH(2));
    fill(x->data, x->n, 5, 1);
    rv->data[0] = rv->data[1] = 1.0f;
    cr_assert_not_null(ckd_batchnorm2d(C, x, NULL, NULL, rm, rv, 0, 0.1f, 1e-5f));
    cr_assert(rm->data[0] == 0.0f && rv->data[0] == 1.0f);
    int was = ckd_ctx_set_grad(C, 0);
    cr_assert_not_null(ckd_batchnorm2d(C, x, NULL, NULL, rm, rv, 1, 0.1f, 1e-5f));
    ckd_ctx_set_grad(C, was);
    cr_assert(rm->data[0] != 0.0f && rv->data[0] != 1.0f);
}
