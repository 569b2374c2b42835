/* Forward values of every op, against direct double-precision computations. */
#include "config.h"

#include <string.h>

#include "ops_util.h"

static ckd_ctx *C;
static void setup(void) { C = ckd_ctx_new(0, 1, NULL); }
static void teardown(void) { ckd_ctx_free(C); }
TestSuite(fwd, .init = setup, .fini = teardown);

#define SH(...) ((int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
/* An arena tensor filled with deterministic values. */
static ckd_tensor *rt(uint64_t seed, float scale, int nd, const int64_t *shape)
{
    ckd_tensor *t = ckd_tensor_new(C, nd, shape);
    cr_assert_not_null(t);
    fill(t->data, t->n, seed, scale);
    return t;
}
#define R(seed, scale, ...) rt((seed), (scale), NDIM(__VA_ARGS__), SH(__VA_ARGS__))

static void assert_ok(ckd_tensor *y) { cr_assert_not_null(y, "op failed: %s", ckd_ctx_error(C)); }

Test(fwd, matmul_all_transposes)
{
    int64_t M = 5, N = 7, K = 3;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            ckd_tensor *a = ta ? R(1, 1, K, M) : R(1, 1, M, K), *b = tb ? R(2, 1, N, K) : R(2, 1, K, N);
            ckd_tensor *y = ckd_matmul_ex(C, a, ta, b, tb);
            assert_ok(y);
            cr_assert(y->shape[0] == M && y->shape[1] == N);
            double want[35];
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    double s = 0;
                    for (int64_t k = 0; k < K; k++)
                        s += (double)(ta ? a->data[k * M + i] : a->data[i * K + k]) *
                             (tb ? b->data[j * K + k] : b->data[k * N + j]);
                    want[i * N + j] = s;
                }
            assert_close(y->data, want, M * N, 1e-5, "matmul");
        }
}

Test(fwd, matmul_batched_keeps_leading_dims)
{
    ckd_tensor *a = R(3, 1, 2, 3, 4), *b = R(4, 1, 4, 2);
    ckd_tensor *y = ckd_matmul(C, a, b);
    assert_ok(y);
    cr_assert(y->ndim == 3 && y->shape[0] == 2 && y->shape[1] == 3 && y->shape[2] == 2);
    double want[12];
    for (int r = 0; r < 6; r++)
        for (int j = 0; j < 2; j++) {
            double s = 0;
            for (int k = 0; k < 4; k++)
                s += (double)a->data[r * 4 + k] * b->data[k * 2 + j];
            want[r * 2 + j] = s;
        }
    assert_close(y->data, want, 12, 1e-5, "batched matmul");
}

Test(fwd, linear_with_bias)
{
    ckd_tensor *x = R(5, 1, 3, 4), *w = R(6, 1, 2, 4), *b = R(7, 1, 2);
    ckd_tensor *y = ckd_linear(C, x, w, b);
    assert_ok(y);
    double want[6];
    for (int r = 0; r < 3; r++)
        for (int o = 0; o < 2; o++) {
            double s = b->data[o];
            for (int k = 0; k < 4; k++)
                s += (double)x->data[r * 4 + k] * w->data[o * 4 + k];
            want[r * 2 + o] = s;
        }
    assert_close(y->data, want, 6, 1e-5, "linear");
}

static void conv_ref(const ckd_tensor *x, const ckd_tensor *w, const ckd_tensor *b, int s, int p, double *out,
                     int64_t Ho, int64_t Wo)
{
    int64_t B = x->shape[0], Ci = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t Co = w->shape[0], kh = w->shape[2], kw = w->shape[3];
    for (int64_t n = 0; n < B; n++)
        for (int64_t co = 0; co < Co; co++)
            for (int64_t oy = 0; oy < Ho; oy++)
                for (int64_t ox = 0; ox < Wo; ox++) {
                    double acc = b ? b->data[co] : 0;
                    for (int64_t ci = 0; ci < Ci; ci++)
                        for (int64_t i = 0; i < kh; i++)
                            for (int64_t j = 0; j < kw; j++) {
                                int64_t y = oy * s - p + i, xx = ox * s - p + j;
                                if (y >= 0 && y < H && xx >= 0 && xx < W)
                                    acc += (double)x->data[((n * Ci + ci) * H + y) * W + xx] *
                                           w->data[((co * Ci + ci) * kh + i) * kw + j];
                            }
                    out[((n * Co + co) * Ho + oy) * Wo + ox] = acc;
                }
}

Test(fwd, conv2d_padded_and_patch)
{
    ckd_tensor *x = R(8, 1, 2, 3, 6, 5), *w = R(9, 1, 4, 3, 3, 3), *b = R(10, 1, 4);
    ckd_tensor *y = ckd_conv2d(C, x, w, b, 2, 1);
    assert_ok(y);
    cr_assert(y->shape[2] == 3 && y->shape[3] == 3);
    double want[2 * 4 * 3 * 3];
    conv_ref(x, w, b, 2, 1, want, 3, 3);
    assert_close(y->data, want, y->n, 1e-5, "conv2d pad 1 stride 2");
    ckd_tensor *wp = R(11, 1, 4, 3, 2, 2), *x2 = R(12, 1, 2, 3, 4, 6);
    ckd_tensor *y2 = ckd_conv2d(C, x2, wp, NULL, 2, 0);
    assert_ok(y2);
    cr_assert(y2->shape[2] == 2 && y2->shape[3] == 3);
    double want2[2 * 4 * 2 * 3];
    conv_ref(x2, wp, NULL, 2, 0, want2, 2, 3);
    assert_close(y2->data, want2, y2->n, 1e-5, "patch embedding");
}

Test(fwd, broadcasting_binary_ops)
{
    ckd_tensor *a = ckd_tensor_from(C, 2, SH(2, 3), (float[]){1, 2, 3, 4, 5, 6});
    ckd_tensor *b = ckd_tensor_from(C, 1, SH(3), (float[]){10, 20, 40});
    ckd_tensor *s = ckd_scalar(C, 2.0f);
    assert_close(ckd_add(C, a, b)->data, (double[]){11, 22, 43, 14, 25, 46}, 6, 0, "add");
    assert_close(ckd_sub(C, a, b)->data, (double[]){-9, -18, -37, -6, -15, -34}, 6, 0, "sub");
    assert_close(ckd_sub(C, b, a)->data, (double[]){9, 18, 37, 6, 15, 34}, 6, 0, "sub, small first");
    assert_close(ckd_mul(C, a, s)->data, (double[]){2, 4, 6, 8, 10, 12}, 6, 0, "mul by scalar");
    assert_close(ckd_div(C, a, b)->data, (double[]){0.1, 0.1, 0.075, 0.4, 0.25, 0.15}, 6, 1e-6, "div");
    assert_close(ckd_scale(C, a, -0.5f)->data, (double[]){-0.5, -1, -1.5, -2, -2.5, -3}, 6, 0, "scale");
    /* Leading 1s broadcast too: [1, 2, 3] + [2, 3] -> [1, 2, 3]. */
    ckd_tensor *a1 = ckd_reshape(C, a, 3, SH(1, 2, 3));
    ckd_tensor *sum = ckd_add(C, ckd_scale(C, a, 1.0f), a1);
    assert_ok(sum);
    cr_assert(sum->ndim == 3 && sum->shape[0] == 1, "shape of the operand with more dims");
    assert_close(sum->data, (double[]){2, 4, 6, 8, 10, 12}, 6, 0, "add [2,3] + [1,2,3]");
    cr_assert_null(ckd_add(C, a, ckd_tensor_zeros(C, 2, SH(3, 2))), "same count, different shapes");
}

Test(fwd, unary_ops_match_libm)
{
    ckd_tensor *x = R(13, 3, 40);
    ckd_tensor *ys[] = {ckd_exp(C, x), ckd_relu(C, x), ckd_gelu(C, x), ckd_quick_gelu(C, x), ckd_sigmoid(C, x),
                        ckd_tanh(C, x)};
    for (int64_t i = 0; i < x->n; i++) {
        double v = x->data[i], sg = 1 / (1 + exp(-v));
        double want[] = {exp(v), v > 0 ? v : 0, 0.5 * v * (1 + erf(v / sqrt(2))), v / (1 + exp(-1.702 * v)), sg,
                         tanh(v)};
        for (int k = 0; k < 6; k++)
            cr_assert(fabs(ys[k]->data[i] - want[k]) <= 1e-5 * (1 + fabs(want[k])), "unary %d at %g: %g vs %g", k, v,
                      (double)ys[k]->data[i], want[k]);
    }
    ckd_tensor *p = ckd_tensor_from(C, 1, SH(3), (float[]){0.25f, 1, 4});
    assert_close(ckd_log(C, p)->data, (double[]){log(0.25), 0, log(4)}, 3, 1e-6, "log");
    assert_close(ckd_sqrt(C, p)->data, (double[]){0.5, 1, 2}, 3, 1e-6, "sqrt");
}

/* exp, gelu (value and derivative), quick_gelu and sigmoid use their own
 * vectorised exp and normal cdf: over a dense grid (2^21 points) they must
 * stay within a few float ulps of double-precision references, and gelu
 * within 1e-6 relative even in the lower tail, where 0.5·x·(1 + erf(x/√2))
 * cancels. Against that erff form (PyTorch's), the difference is at most
 * about one ulp of its result. */
static int64_t dense_grid(float *x, int64_t n, float lo, float hi)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * (float)((double)i / (double)(n - 1));
    return n;
}

/* |got − want| within rel·|want|, or below tiny (results deep in the
 * subnormal range). */
static void assert_rel(const char *what, double x, double got, double want, double rel, double tiny)
{
    cr_assert(fabs(got - want) <= rel * fabs(want) + tiny, "%s(%.9g): got %.9g, want %.9g (rel %.3g)", what, x, got,
              want, fabs(got - want) / fabs(want));
}

Test(fwd, vectorised_exp_and_gelu_on_a_dense_grid)
{
    int64_t n = (int64_t)1 << 21;
    ckd_tensor *x = ckd_tensor_new(C, 1, SH(n));
    ckd_tensor_set_requires_grad(x, 1);
    dense_grid(x->data, n, -15.0f, 15.0f);
    ckd_tensor *g = ckd_gelu(C, x);
    assert_ok(g);
    cr_assert_eq(ckd_backward(C, ckd_sum_all(C, g), NULL), 0);
    ckd_tensor *q = ckd_quick_gelu(C, x), *sg = ckd_sigmoid(C, x);
    assert_ok(q);
    assert_ok(sg);
    for (int64_t i = 0; i < n; i++) {
        double v = x->data[i], cdf = 0.5 * erfc(-v / sqrt(2.0)), pdf = exp(-0.5 * v * v) / sqrt(2.0 * M_PI);
        assert_rel("gelu", v, g->data[i], v * cdf, 1e-6, 1e-37);
        /* Φ + x·φ crosses 0 near x = −0.75: relative to its terms */
        assert_rel("gelu'", v, x->grad[i], cdf + v * pdf, 0, 1e-6 * (cdf + fabs(v) * pdf) + 1e-37);
        float torch = 0.5f * x->data[i] * (1.0f + erff(x->data[i] * (float)M_SQRT1_2));
        cr_assert(fabs(g->data[i] - torch) <= 2.4e-7 * (1 + fabs(v)), "gelu(%.9g) %.9g vs erff form %.9g", v,
                  (double)g->data[i], (double)torch);
        /* quick_gelu rounds 1.702·x to float first: exp(−1.702·x) inherits
         * that (|1.702·x| · 2^-24 relative), as in any float implementation */
        assert_rel("quick_gelu", v, q->data[i], v / (1 + exp(-1.702 * v)), 4e-7 + 1.702 * fabs(v) * 0x1p-24, 1e-37);
        assert_rel("sigmoid", v, sg->data[i], 1 / (1 + exp(-v)), 1e-6, 1e-37);
    }
    ckd_tensor *e = ckd_tensor_new(C, 1, SH(n));
    dense_grid(e->data, n, -103.0f, 88.7f);
    ckd_tensor *ey = ckd_exp(C, e);
    assert_ok(ey);
    for (int64_t i = 0; i < n; i++) /* 2 ulp = 2^-22 relative; subnormals: 1 unit */
        assert_rel("exp", e->data[i], ey->data[i], exp((double)e->data[i]), 0x1p-22, 0x1p-149);
    float sp[] = {INFINITY, -INFINITY, NAN, 88.8f, -200.0f, 0.0f};
    ckd_tensor *s = ckd_tensor_from(C, 1, SH(6), sp), *se = ckd_exp(C, s), *sgl = ckd_gelu(C, s);
    assert_ok(se);
    assert_ok(sgl);
    cr_assert(isinf(se->data[0]) && se->data[1] == 0 && isnan(se->data[2]) && isinf(se->data[3]) &&
                  se->data[4] == 0 && se->data[5] == 1,
              "exp at inf, -inf, nan, 88.8, -200, 0");
    cr_assert(isinf(sgl->data[0]) && isnan(sgl->data[2]) && sgl->data[3] == 88.8f && sgl->data[4] == 0 &&
                  sgl->data[5] == 0,
              "gelu at inf, nan, 88.8, -200, 0");
}

/* Softmax has an exp of its own (arguments ≤ 0, terms below 2^-126 of the
 * largest flushed to 0): rows [0, v] over a dense grid of v in [-100, 0]
 * against double precision, rows long enough for the vector tail, and NaN
 * and -inf in a row. */
Test(fwd, softmax_exp_on_a_dense_grid)
{
    int64_t n = (int64_t)1 << 20;
    ckd_tensor *x = ckd_tensor_new(C, 2, SH(n, 2));
    for (int64_t i = 0; i < n; i++) {
        x->data[2 * i] = 0.0f;
        x->data[2 * i + 1] = -100.0f + 100.0f * (float)((double)i / (double)(n - 1));
    }
    ckd_tensor *y = ckd_softmax(C, x);
    assert_ok(y);
    for (int64_t i = 0; i < n; i++) {
        double v = x->data[2 * i + 1], e = exp(v);
        assert_rel("softmax [0, v] first", v, y->data[2 * i], 1 / (1 + e), 0x1p-21, 0);
        assert_rel("softmax [0, v] second", v, y->data[2 * i + 1], e / (1 + e), 0x1p-21, 0x1p-126);
    }
    enum { L = 197 };
    float r[3 * L];
    for (int j = 0; j < 3 * L; j++)
        r[j] = (float)(j % L) * 0.01f;
    r[L + 196] = NAN;              /* in the vector tail */
    r[2 * L + 3] = -INFINITY;
    ckd_tensor *z = ckd_softmax(C, ckd_tensor_from(C, 2, SH(3, L), r));
    assert_ok(z);
    double sum = 0;
    for (int j = 0; j < L; j++)
        sum += exp((j - 196) * 0.01);
    for (int j = 0; j < L; j++)
        assert_rel("softmax row of 197", j, z->data[j], exp((j - 196) * 0.01) / sum, 0x1p-21, 0);
    for (int j = 0; j < L; j++)
        cr_assert(isnan(z->data[L + j]), "a NaN in a row makes the row NaN (element %d)", j);
    cr_assert(z->data[2 * L + 3] == 0.0f && z->data[2 * L + 4] > 0, "-inf gives 0");
}

Test(fwd, dropout_modes)
{
    ckd_tensor *x = ckd_tensor_new(C, 1, SH(10000));
    for (int i = 0; i < 10000; i++)
        x->data[i] = 1.0f;
    cr_assert_eq(ckd_dropout(C, x, 0.3f), x, "dropout outside training mode is the identity");
    ckd_ctx_set_training(C, 1);
    ckd_tensor *y = ckd_dropout(C, x, 0.3f);
    assert_ok(y);
    int zeros = 0;
    for (int i = 0; i < 10000; i++) {
        cr_assert(y->data[i] == 0.0f || fabsf(y->data[i] - 1.0f / 0.7f) < 1e-6f);
        zeros += y->data[i] == 0.0f;
    }
    cr_assert(zeros > 2700 && zeros < 3300, "dropped %d of 10000 at p = 0.3", zeros);
    cr_assert_null(ckd_dropout(C, x, 1.0f));
    cr_assert(strstr(ckd_ctx_error(C), "dropout"));
}

Test(fwd, reductions)
{
    ckd_tensor *x = ckd_tensor_from(C, 3, SH(2, 2, 3), (float[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
    ckd_tensor *s1 = ckd_sum(C, x, 1);
    cr_assert(s1->ndim == 2 && s1->shape[0] == 2 && s1->shape[1] == 3);
    assert_close(s1->data, (double[]){5, 7, 9, 17, 19, 21}, 6, 0, "sum axis 1");
    assert_close(ckd_mean(C, x, -1)->data, (double[]){2, 5, 8, 11}, 4, 1e-7, "mean last axis");
    assert_close(ckd_sum(C, x, 0)->data, (double[]){8, 10, 12, 14, 16, 18}, 6, 0, "sum axis 0");
    cr_assert_float_eq(ckd_sum_all(C, x)->data[0], 78.0f, 1e-6);
    cr_assert_float_eq(ckd_mean_all(C, x)->data[0], 6.5f, 1e-6);
    cr_assert_eq(ckd_sum_all(C, x)->ndim, 0);
}

Test(fwd, shape_ops)
{
    ckd_tensor *x = ckd_tensor_from(C, 2, SH(2, 3), (float[]){0, 1, 2, 3, 4, 5});
    ckd_tensor *t = ckd_transpose(C, x, 0, 1);
    cr_assert(t->shape[0] == 3 && t->shape[1] == 2);
    assert_close(t->data, (double[]){0, 3, 1, 4, 2, 5}, 6, 0, "transpose");
    ckd_tensor *r = ckd_reshape(C, x, 3, SH(3, -1, 1));
    cr_assert(r->shape[1] == 2 && r->data == x->data, "reshape is a view");
    ckd_tensor *y = R(14, 1, 2, 3, 4, 5);
    ckd_tensor *p = ckd_permute(C, y, (int[]){3, 1, 0, 2});
    cr_assert(p->shape[0] == 5 && p->shape[1] == 3 && p->shape[2] == 2 && p->shape[3] == 4);
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 3; b++)
            for (int cc = 0; cc < 4; cc++)
                for (int d = 0; d < 5; d++)
                    cr_assert_eq(p->data[((d * 3 + b) * 2 + a) * 4 + cc], y->data[((a * 3 + b) * 4 + cc) * 5 + d]);
    ckd_tensor *parts[2] = {x, ckd_tensor_from(C, 2, SH(2, 1), (float[]){9, 8})};
    ckd_tensor *cat = ckd_concat(C, parts, 2, 1);
    assert_close(cat->data, (double[]){0, 1, 2, 9, 3, 4, 5, 8}, 8, 0, "concat");
    assert_close(ckd_slice(C, cat, 1, 1, 2)->data, (double[]){1, 2, 4, 5}, 4, 0, "slice");
    ckd_tensor *tab = ckd_tensor_from(C, 2, SH(3, 2), (float[]){0, 1, 10, 11, 20, 21});
    assert_close(ckd_gather_rows(C, tab, (int32_t[]){2, 0, 2}, 3)->data, (double[]){20, 21, 0, 1, 20, 21}, 6, 0,
                 "gather_rows");
    ckd_tensor *bt = ckd_reshape(C, ckd_tensor_from(C, 2, SH(4, 2), (float[]){0, 1, 2, 3, 4, 5, 6, 7}), 3, SH(2, 2, 2));
    ckd_tensor *sel = ckd_select_rows(C, bt, (int32_t[]){1, 0}, 1);
    cr_assert(sel->shape[0] == 2 && sel->shape[1] == 1 && sel->shape[2] == 2);
    assert_close(sel->data, (double[]){2, 3, 4, 5}, 4, 0, "select_rows");
}

Test(fwd, softmax_family_is_stable)
{
    ckd_tensor *x = ckd_tensor_from(C, 2, SH(2, 3), (float[]){1, 2, 3, 1000, 1001, 1002});
    ckd_tensor *s = ckd_softmax(C, x), *l = ckd_log_softmax(C, x);
    double e = exp(1.0), z = 1 + e + e * e;
    double want[] = {1 / z, e / z, e * e / z, 1 / z, e / z, e * e / z};
    assert_close(s->data, want, 6, 1e-6, "softmax");
    for (int i = 0; i < 6; i++)
        want[i] = log(want[i]);
    assert_close(l->data, want, 6, 1e-5, "log_softmax");
}

Test(fwd, layernorm_and_l2)
{
    ckd_tensor *x = R(15, 2, 3, 8), *g = R(16, 1, 8), *b = R(17, 1, 8);
    ckd_tensor *y = ckd_layernorm(C, x, g, b, 1e-5f);
    assert_ok(y);
    double want[24];
    for (int r = 0; r < 3; r++) {
        double mu = 0, var = 0;
        for (int j = 0; j < 8; j++)
            mu += x->data[r * 8 + j] / 8.0;
        for (int j = 0; j < 8; j++)
            var += (x->data[r * 8 + j] - mu) * (x->data[r * 8 + j] - mu) / 8.0;
        for (int j = 0; j < 8; j++)
            want[r * 8 + j] = (x->data[r * 8 + j] - mu) / sqrt(var + 1e-5) * g->data[j] + b->data[j];
    }
    assert_close(y->data, want, 24, 1e-5, "layernorm");
    ckd_tensor *n = ckd_l2_normalize(C, ckd_tensor_from(C, 2, SH(2, 2), (float[]){3, 4, 0, 0}), 1e-12f);
    assert_close(n->data, (double[]){0.6, 0.8, 0, 0}, 4, 1e-7, "l2_normalize (zero row stays zero)");
}

Test(fwd, losses)
{
    ckd_tensor *z = ckd_tensor_from(C, 2, SH(2, 3), (float[]){1, 2, 3, 0, 0, 0});
    double lse0 = log(exp(1.0) + exp(2.0) + exp(3.0));
    double ce = ((lse0 - 3) + log(3.0)) / 2;
    cr_assert_float_eq(ckd_cross_entropy(C, z, (int32_t[]){2, 1})->data[0], (float)ce, 1e-6);
    ckd_tensor *p = R(18, 2, 4, 5), *q = R(19, 2, 4, 5);
    double kl = 0;
    for (int i = 0; i < 4; i++) {
        double zp = 0, zq = 0;
        for (int j = 0; j < 5; j++) {
            zp += exp(p->data[i * 5 + j]);
            zq += exp(q->data[i * 5 + j]);
        }
        for (int j = 0; j < 5; j++) {
            double P = exp(p->data[i * 5 + j]) / zp, Q = exp(q->data[i * 5 + j]) / zq;
            kl += P * log(P / Q) / 4;
        }
    }
    cr_assert_float_eq(ckd_kl_div(C, p, q)->data[0], (float)kl, 1e-6);
    cr_assert_float_eq(ckd_kl_div(C, p, p)->data[0], 0.0f, 1e-7);
    ckd_tensor *a = ckd_tensor_from(C, 1, SH(4), (float[]){1, 2, 3, 4});
    ckd_tensor *b = ckd_tensor_from(C, 1, SH(4), (float[]){1, 0, 3, 8});
    cr_assert_float_eq(ckd_mse(C, a, b)->data[0], 5.0f, 1e-7);
}

static void attn_ref(const ckd_tensor *q, const ckd_tensor *k, const ckd_tensor *v, int H, int causal, double *out)
{
    int64_t B = q->shape[0], T = q->shape[1], Cw = q->shape[2], D = Cw / H;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < T; i++) {
                double s[16], mx = -1e300, z = 0;
                for (int64_t j = 0; j < T; j++) {
                    double d = 0;
                    for (int64_t e = 0; e < D; e++)
                        d += (double)q->data[(b * T + i) * Cw + h * D + e] * k->data[(b * T + j) * Cw + h * D + e];
                    s[j] = (causal && j > i) ? -1e300 : d / sqrt((double)D);
                    mx = s[j] > mx ? s[j] : mx;
                }
                for (int64_t j = 0; j < T; j++)
                    z += s[j] > -1e299 ? exp(s[j] - mx) : 0;
                for (int64_t e = 0; e < D; e++) {
                    double o = 0;
                    for (int64_t j = 0; j < T; j++)
                        if (s[j] > -1e299)
                            o += exp(s[j] - mx) / z * v->data[(b * T + j) * Cw + h * D + e];
                    out[(b * T + i) * Cw + h * D + e] = o;
                }
            }
}

Test(fwd, attention_against_reference)
{
    for (int causal = 0; causal < 2; causal++) {
        ckd_tensor *q = R(20, 1, 2, 7, 12), *k = R(21, 1, 2, 7, 12), *v = R(22, 1, 2, 7, 12);
        ckd_tensor *y = ckd_attention(C, q, k, v, 3, causal);
        assert_ok(y);
        double want[2 * 7 * 12];
        attn_ref(q, k, v, 3, causal, want);
        assert_close(y->data, want, y->n, 1e-5, causal ? "causal attention" : "attention");
    }
}
