/* Finite-difference gradient checks of every op in clipkd/ops.h. */
#include "config.h"

#include <string.h>

#include "ops_util.h"

typedef struct gcase {
    ckd_tensor *in[4];
    int n_in;
    int32_t idx[32];
} gcase;

/* Fills the arena's first slab with NaN and resets: memory the ops get
 * afterwards is garbage, as in a training loop after its first step (fresh
 * pages would be zeros and hide a gradient buffer that is used unwritten). */
static void poison_arena(ckd_ctx *c)
{
    size_t n = (size_t)8 << 20;
    float *p = ckd_scratch(c, n * sizeof(float), "poison");
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = NAN;
    ckd_ctx_reset(c);
}

static void run_check(ckd_scalar_fn fn, gcase *g, double atol, double rtol)
{
    ckd_ctx *c = ckd_ctx_new(0, 1, NULL);
    cr_assert_not_null(c);
    poison_arena(c);
    ckd_gradcheck_opts o;
    ckd_gradcheck_default_opts(&o);
    o.atol = atol;
    o.rtol = rtol;
    ckd_gradcheck_report rep;
    ckd_error err = {{0}};
    int rc = ckd_gradcheck(c, fn, g, g->in, g->n_in, &o, &rep, &err);
    char buf[512];
    cr_assert_geq(rc, 0, "gradcheck could not run: %s", err.msg);
    cr_assert_gt(rep.checked, 0);
    cr_assert_eq(rc, 0, "%s", ckd_gradcheck_describe(&rep, buf, sizeof buf));
    for (int i = 0; i < g->n_in; i++)
        ckd_param_free(g->in[i]);
    ckd_ctx_free(c);
}

#define SH(...) ((int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define P(seed, scale, ...) rparam(NDIM(__VA_ARGS__), SH(__VA_ARGS__), (seed), (scale))
#define GC_FN(name, expr)                                 \
    static ckd_tensor *name(ckd_ctx *c, void *u)          \
    {                                                     \
        gcase *g = u;                                     \
        ckd_tensor **in = g->in;                          \
        (void)in;                                         \
        return weighted_sum(c, (expr));                   \
    }
#define GC_TEST(name, fn, ...)                                   \
    Test(grad, name)                                             \
    {                                                            \
        gcase g = {{__VA_ARGS__}, NDIM_T(__VA_ARGS__), {0}};     \
        run_check(fn, &g, 1e-3, 1e-2);                           \
    }
#define NDIM_T(...) ((int)(sizeof((ckd_tensor *[]){__VA_ARGS__}) / sizeof(ckd_tensor *)))

/* Moves values away from 0 so that kinks (relu) and poles (div, log) stay out
 * of reach of the finite-difference step. */
static ckd_tensor *away_from_zero(ckd_tensor *p, float margin)
{
    for (int64_t i = 0; i < p->n; i++)
        p->data[i] = p->data[i] >= 0 ? p->data[i] + margin : p->data[i] - margin;
    return p;
}

static ckd_tensor *positive(ckd_tensor *p, float lo)
{
    for (int64_t i = 0; i < p->n; i++)
        p->data[i] = fabsf(p->data[i]) + lo;
    return p;
}

/* ---- products ---- */
GC_FN(f_matmul, ckd_matmul(c, in[0], in[1]))
GC_TEST(matmul_batched, f_matmul, P(1, 1, 2, 3, 4), P(2, 1, 4, 5))
GC_FN(f_matmul_tn, ckd_matmul_ex(c, in[0], 1, in[1], 0))
GC_TEST(matmul_ta, f_matmul_tn, P(3, 1, 4, 3), P(4, 1, 4, 5))
GC_FN(f_matmul_nt, ckd_matmul_ex(c, in[0], 0, in[1], 1))
GC_TEST(matmul_tb, f_matmul_nt, P(5, 1, 3, 4), P(6, 1, 5, 4))
GC_FN(f_matmul_tt, ckd_matmul_ex(c, in[0], 1, in[1], 1))
GC_TEST(matmul_ta_tb, f_matmul_tt, P(7, 1, 4, 3), P(8, 1, 5, 4))
GC_FN(f_linear, ckd_linear(c, in[0], in[1], in[2]))
GC_TEST(linear, f_linear, P(9, 1, 2, 3, 4), P(10, 1, 5, 4), P(11, 1, 5))
GC_FN(f_linear_nobias, ckd_linear(c, in[0], in[1], NULL))
GC_TEST(linear_no_bias, f_linear_nobias, P(12, 1, 3, 4), P(13, 1, 2, 4))
GC_FN(f_conv_pad, ckd_conv2d(c, in[0], in[1], in[2], 1, 1))
GC_TEST(conv2d_stride1_pad1, f_conv_pad, P(14, 1, 2, 2, 5, 5), P(15, 1, 3, 2, 3, 3), P(16, 1, 3))
GC_FN(f_conv_patch, ckd_conv2d(c, in[0], in[1], NULL, 2, 0))
GC_TEST(conv2d_patch_embedding, f_conv_patch, P(17, 1, 2, 3, 4, 6), P(18, 1, 4, 3, 2, 2))

/* ---- elementwise ---- */
GC_FN(f_add, ckd_add(c, in[0], in[1]))
GC_TEST(add_broadcast, f_add, P(20, 1, 2, 3, 4), P(21, 1, 3, 4))
GC_TEST(add_broadcast_leading_one, f_add, P(19, 1, 3, 4), P(18, 1, 1, 3, 4))
GC_FN(f_sub, ckd_sub(c, in[0], in[1]))
GC_TEST(sub_broadcast_row, f_sub, P(22, 1, 3, 4), P(23, 1, 4))
GC_TEST(sub_broadcast_first_small, f_sub, P(24, 1, 4), P(25, 1, 3, 4))
GC_FN(f_mul, ckd_mul(c, in[0], in[1]))
GC_TEST(mul_same, f_mul, P(26, 1, 3, 4), P(27, 1, 3, 4))
GC_TEST(mul_scalar, f_mul, P(28, 1, 3, 4), P(29, 1, 1))
GC_FN(f_div, ckd_div(c, in[0], in[1]))
Test(grad, div_broadcast)
{
    gcase g = {{P(30, 1, 3, 4), positive(P(31, 0.5f, 4), 0.5f)}, 2, {0}};
    run_check(f_div, &g, 1e-3, 1e-2);
}
GC_FN(f_scale, ckd_scale(c, in[0], -2.5f))
GC_TEST(scale, f_scale, P(32, 1, 3, 4))
GC_FN(f_exp, ckd_exp(c, in[0]))
GC_TEST(exp, f_exp, P(33, 1, 3, 4))
GC_FN(f_log, ckd_log(c, in[0]))
Test(grad, log)
{
    gcase g = {{positive(P(34, 1, 3, 4), 0.5f)}, 1, {0}};
    run_check(f_log, &g, 1e-3, 1e-2);
}
GC_FN(f_sqrt, ckd_sqrt(c, in[0]))
Test(grad, sqrt)
{
    gcase g = {{positive(P(35, 1, 3, 4), 0.5f)}, 1, {0}};
    run_check(f_sqrt, &g, 1e-3, 1e-2);
}
GC_FN(f_relu, ckd_relu(c, in[0]))
Test(grad, relu)
{
    gcase g = {{away_from_zero(P(36, 1, 3, 4), 0.05f)}, 1, {0}};
    run_check(f_relu, &g, 1e-3, 1e-2);
}
GC_FN(f_gelu, ckd_gelu(c, in[0]))
GC_TEST(gelu, f_gelu, P(37, 3, 3, 4))
GC_FN(f_qgelu, ckd_quick_gelu(c, in[0]))
GC_TEST(quick_gelu, f_qgelu, P(38, 3, 3, 4))
GC_FN(f_sigmoid, ckd_sigmoid(c, in[0]))
GC_TEST(sigmoid, f_sigmoid, P(39, 3, 3, 4))
GC_FN(f_tanh, ckd_tanh(c, in[0]))
GC_TEST(tanh, f_tanh, P(40, 2, 3, 4))

/* Dropout: the mask must be the same in every evaluation, so reseed first. */
static ckd_tensor *f_dropout(ckd_ctx *c, void *u)
{
    gcase *g = u;
    ckd_rng_seed(ckd_ctx_rng(c), 99);
    int was = ckd_ctx_set_training(c, 1);
    ckd_tensor *y = ckd_dropout(c, g->in[0], 0.3f);
    ckd_ctx_set_training(c, was);
    return weighted_sum(c, y);
}
GC_TEST(dropout, f_dropout, P(41, 1, 4, 5))

/* ---- reductions ---- */
GC_FN(f_sum1, ckd_sum(c, in[0], 1))
GC_TEST(sum_axis, f_sum1, P(42, 1, 2, 3, 4))
GC_FN(f_mean_last, ckd_mean(c, in[0], -1))
GC_TEST(mean_axis, f_mean_last, P(43, 1, 2, 3, 4))
GC_FN(f_sum_all, ckd_scale(c, ckd_sum_all(c, in[0]), 0.5f))
GC_TEST(sum_all, f_sum_all, P(44, 1, 3, 4))
GC_FN(f_mean_all, ckd_mean_all(c, ckd_mul(c, in[0], in[0])))
GC_TEST(mean_all, f_mean_all, P(45, 1, 3, 4))

/* ---- shape ---- */
GC_FN(f_reshape, ckd_mul(c, ckd_reshape(c, in[0], 2, SH(4, -1)), ckd_reshape(c, in[0], 2, SH(4, 6))))
GC_TEST(reshape, f_reshape, P(46, 1, 2, 3, 4))
GC_FN(f_transpose, ckd_transpose(c, in[0], 0, 2))
GC_TEST(transpose, f_transpose, P(47, 1, 2, 3, 4))
GC_FN(f_permute, ckd_permute(c, in[0], (int[]){2, 0, 3, 1}))
GC_TEST(permute, f_permute, P(48, 1, 2, 3, 4, 2))
static ckd_tensor *f_concat(ckd_ctx *c, void *u)
{
    gcase *g = u;
    return weighted_sum(c, ckd_concat(c, g->in, 3, 1));
}
GC_TEST(concat, f_concat, P(49, 1, 2, 1, 3), P(50, 1, 2, 2, 3), P(51, 1, 2, 3, 3))
GC_FN(f_slice, ckd_slice(c, in[0], -1, 1, 2))
GC_TEST(slice, f_slice, P(52, 1, 2, 3, 4))
static ckd_tensor *f_gather(ckd_ctx *c, void *u)
{
    gcase *g = u;
    return weighted_sum(c, ckd_gather_rows(c, g->in[0], g->idx, 6));
}
Test(grad, gather_rows)
{
    gcase g = {{P(53, 1, 5, 3)}, 1, {4, 0, 4, 2, 1, 4}};
    run_check(f_gather, &g, 1e-3, 1e-2);
}
static ckd_tensor *f_select(ckd_ctx *c, void *u)
{
    gcase *g = u;
    return weighted_sum(c, ckd_select_rows(c, g->in[0], g->idx, 3));
}
Test(grad, select_rows)
{
    gcase g = {{P(54, 1, 2, 5, 3)}, 1, {0, 3, 3, 4, 1, 0}};
    run_check(f_select, &g, 1e-3, 1e-2);
}

/* ---- normalisation ---- */
GC_FN(f_softmax, ckd_softmax(c, in[0]))
GC_TEST(softmax, f_softmax, P(55, 2, 3, 5))
GC_FN(f_log_softmax, ckd_log_softmax(c, in[0]))
GC_TEST(log_softmax, f_log_softmax, P(56, 2, 3, 5))
GC_FN(f_layernorm, ckd_layernorm(c, in[0], in[1], in[2], 1e-5f))
GC_TEST(layernorm, f_layernorm, P(57, 1, 2, 3, 6), P(58, 1, 6), P(59, 1, 6))
GC_FN(f_l2n, ckd_l2_normalize(c, in[0], 1e-12f))
GC_TEST(l2_normalize, f_l2n, P(60, 1, 4, 5))

/* ---- losses ---- */
static ckd_tensor *f_ce(ckd_ctx *c, void *u)
{
    gcase *g = u;
    return ckd_cross_entropy(c, g->in[0], g->idx);
}
Test(grad, cross_entropy)
{
    gcase g = {{P(61, 2, 4, 5)}, 1, {1, 0, 4, 2}};
    run_check(f_ce, &g, 1e-3, 1e-2);
}
static ckd_tensor *f_kl(ckd_ctx *c, void *u)
{
    gcase *g = u;
    return ckd_kl_div(c, g->in[0], g->in[1]);
}
Test(grad, kl_div)
{
    gcase g = {{P(62, 2, 4, 5), P(63, 2, 4, 5)}, 2, {0}};
    run_check(f_kl, &g, 1e-4, 1e-2);
}
static ckd_tensor *f_mse(ckd_ctx *c, void *u)
{
    gcase *g = u;
    return ckd_mse(c, g->in[0], g->in[1]);
}
Test(grad, mse)
{
    gcase g = {{P(64, 1, 3, 4), P(65, 1, 3, 4)}, 2, {0}};
    run_check(f_mse, &g, 1e-4, 1e-2);
}

/* ---- entropy models ---- */
static ckd_tensor *shifted(ckd_tensor *p, float by)
{
    for (int64_t i = 0; i < p->n; i++)
        p->data[i] += by;
    return p;
}
/* The density's parameters around CompressAI's initialisation (matrices
 * near log(expm1(1 / (10^¼ · 3))) = −1.6), values over several units. */
GC_FN(f_factorized_nll, ckd_factorized_nll(c, in[0], in[1], in[2], in[3]))
Test(grad, factorized_nll)
{
    gcase g = {{P(80, 3, 4, 3), shifted(P(81, 0.5f, 3, CKD_FD_MATRIX_SIZE), -1.4f), P(82, 0.5f, 3, CKD_FD_BIAS_SIZE),
                P(83, 0.8f, 3, CKD_FD_FACTOR_SIZE)},
               4,
               {0}};
    run_check(f_factorized_nll, &g, 1e-3, 1e-2);
}
/* The same with values far in the tails (likelihoods ~1e-4). */
Test(grad, factorized_nll_tails)
{
    gcase g = {{shifted(P(84, 4, 2, 2), 14.0f), shifted(P(85, 0.3f, 2, CKD_FD_MATRIX_SIZE), -1.6f),
                P(86, 0.5f, 2, CKD_FD_BIAS_SIZE), P(87, 0.5f, 2, CKD_FD_FACTOR_SIZE)},
               4,
               {0}};
    run_check(f_factorized_nll, &g, 1e-3, 1e-2);
}
/* Rounding is checked for its straight-through gradient: the finite
 * difference of round() is zero, so it is tested in test-ops-entropy. */

/* ---- attention ---- */
GC_FN(f_attn, ckd_attention(c, in[0], in[1], in[2], 2, 0))
GC_TEST(attention, f_attn, P(66, 1, 2, 5, 6), P(67, 1, 2, 5, 6), P(68, 1, 2, 5, 6))
GC_FN(f_attn_causal, ckd_attention(c, in[0], in[1], in[2], 3, 1))
GC_TEST(attention_causal, f_attn_causal, P(69, 1, 2, 4, 6), P(70, 1, 2, 4, 6), P(71, 1, 2, 4, 6))
/* The same tensor as q, k and v (gradients from three uses accumulate). */
GC_FN(f_attn_shared, ckd_attention(c, in[0], in[0], in[0], 2, 1))
GC_TEST(attention_shared_input, f_attn_shared, P(72, 1, 1, 4, 4))

/* A chain through several ops, like a transformer block's pieces. */
GC_FN(f_chain, ckd_gelu(c, ckd_linear(c, ckd_layernorm(c, in[0], in[1], NULL, 1e-5f), in[2], NULL)))
GC_TEST(chain, f_chain, P(73, 1, 2, 3, 4), P(74, 1, 4), P(75, 1, 5, 4))

/* ---- gradients of arena intermediates ----
 * The first gradient to reach an activation overwrites its buffer instead of
 * zero-filling and accumulating (ckdi_grad_buf_ex); a later one accumulates.
 * Parameters never take that path, so these run ops on intermediates
 * (h = 1.5·x), with the same tensor in several operand slots, and used by
 * several ops so that each op is once the first to reach its input and once a
 * later one (backward runs in reverse creation order; the statements below
 * fix that order, which nested calls would leave to the compiler). run_check
 * fills the arena with NaN first, so a buffer read before it is written
 * fails the check. */
static ckd_tensor *h15(ckd_ctx *c, ckd_tensor *x) { return ckd_scale(c, x, 1.5f); }

static ckd_tensor *f_fresh_binary(ckd_ctx *c, void *u)
{
    ckd_tensor **in = ((gcase *)u)->in;
    ckd_tensor *h = h15(c, in[0]), *k = h15(c, in[1]);
    ckd_tensor *d = ckd_sub(c, k, k);
    ckd_tensor *s = ckd_add(c, h, d);
    ckd_tensor *q = ckd_div(c, h, ckd_scale(c, ckd_mul(c, h, h), 1.0f));
    return weighted_sum(c, ckd_mul(c, ckd_mul(c, h, s), q));
}
Test(grad, fresh_binary)
{
    gcase g = {{away_from_zero(P(76, 1, 3, 4), 0.5f), P(77, 1, 3, 4)}, 2, {0}};
    run_check(f_fresh_binary, &g, 1e-3, 1e-2);
}

/* linear and matmul with h as both operands; matmul first to reach h, then
 * the other way round. */
static ckd_tensor *f_self_linear(ckd_ctx *c, void *u)
{
    gcase *g = u;
    ckd_tensor *h = h15(c, g->in[0]), *k = h15(c, g->in[0]);
    ckd_tensor *l1 = ckd_linear(c, h, h, g->in[1]);
    ckd_tensor *m1 = ckd_matmul(c, h, h);
    ckd_tensor *m2 = ckd_matmul(c, k, k);
    ckd_tensor *l2 = ckd_linear(c, k, k, NULL);
    ckd_tensor *s = ckd_add(c, ckd_add(c, l1, m1), ckd_add(c, m2, l2));
    return weighted_sum(c, s);
}
GC_TEST(self_linear_and_matmul, f_self_linear, P(79, 1, 4, 4), P(80, 1, 4))

static ckd_tensor *f_self_concat(ckd_ctx *c, void *u)
{
    ckd_tensor *h = h15(c, ((gcase *)u)->in[0]);
    ckd_tensor *a = ckd_gelu(c, h);
    return weighted_sum(c, ckd_concat(c, (ckd_tensor *[]){h, a, h}, 3, 1));
}
GC_TEST(self_concat, f_self_concat, P(81, 1, 2, 3, 4))

static ckd_tensor *f_fresh_attn(ckd_ctx *c, void *u)
{
    ckd_tensor **in = ((gcase *)u)->in;
    ckd_tensor *q = h15(c, in[0]), *k = h15(c, in[1]), *v = h15(c, in[2]);
    return weighted_sum(c, ckd_attention(c, q, k, v, 2, 1));
}
GC_TEST(fresh_attention, f_fresh_attn, P(82, 1, 2, 4, 6), P(83, 1, 2, 4, 6), P(84, 1, 2, 4, 6))

/* Attention is the first (and only) op to send a gradient to h. */
static ckd_tensor *f_self_attn(ckd_ctx *c, void *u)
{
    ckd_tensor *h = h15(c, ((gcase *)u)->in[0]);
    return weighted_sum(c, ckd_attention(c, h, h, h, 2, 0));
}
GC_TEST(self_attention, f_self_attn, P(85, 1, 2, 4, 6))

/* reshape, transpose, layernorm, gelu, exp and sum_all of intermediates,
 * each the first to reach its input, then a residual branch that reaches
 * them first. */
static ckd_tensor *f_fresh_chain(ckd_ctx *c, void *u)
{
    gcase *g = u;
    ckd_tensor *r = ckd_reshape(c, h15(c, g->in[0]), 3, SH(3, 2, 4));
    ckd_tensor *t = ckd_transpose(c, r, 0, 1);
    ckd_tensor *h = ckd_scale(c, t, 1.0f);
    ckd_tensor *n = ckd_layernorm(c, h, g->in[1], g->in[2], 1e-5f);
    ckd_tensor *y = ckd_gelu(c, n);
    ckd_tensor *e = ckd_sum_all(c, ckd_exp(c, y));
    /* later uses of the same tensors: backward reaches them here first */
    ckd_tensor *late = ckd_add(c, ckd_mul(c, h, y), n);
    ckd_tensor *l2 = ckd_add(c, ckd_layernorm(c, late, NULL, NULL, 1e-5f), ckd_gelu(c, late));
    ckd_tensor *t2 = ckd_transpose(c, r, 0, 1);
    return ckd_add(c, ckd_add(c, weighted_sum(c, l2), ckd_scale(c, e, 0.1f)), weighted_sum(c, t2));
}
GC_TEST(fresh_chain, f_fresh_chain, P(86, 1, 6, 4), P(87, 1, 4), P(88, 1, 4))

/* A bias gradient summed over many rows (several of ckdi_colsum_add's row
 * blocks), against the sum in double; and the same for an add broadcast over
 * rows. */
Test(grad, bias_gradient_over_many_rows)
{
    ckd_ctx *c = ckd_ctx_new(0, 1, NULL);
    poison_arena(c);
    ckd_tensor *x = P(89, 1, 9000, 3), *w = P(90, 1, 4, 3), *b = P(91, 1, 4), *row = P(92, 1, 4);
    ckd_tensor *y = ckd_add(c, ckd_linear(c, x, w, b), row);
    cr_assert_eq(ckd_backward(c, weighted_sum(c, y), NULL), 0);
    for (int j = 0; j < 4; j++) {
        double want = 0;
        for (int64_t r = 0; r < 9000; r++)
            want += (float)sin(0.37 * (double)(r * 4 + j) + 0.1); /* weighted_sum's weights */
        cr_assert(fabs(b->grad[j] - want) <= 1e-5 * (1 + fabs(want)), "dbias[%d] %g vs %g", j, (double)b->grad[j],
                  want);
        cr_assert(fabs(row->grad[j] - want) <= 1e-5 * (1 + fabs(want)), "drow[%d] %g vs %g", j,
                  (double)row->grad[j], want);
    }
    ckd_tensor *ps[] = {x, w, b, row};
    for (int i = 0; i < 4; i++)
        ckd_param_free(ps[i]);
    ckd_ctx_free(c);
}

/* ---- convolution, pooling, batch norm ---- */
#define CONV(...) (&(ckd_conv2d_params){__VA_ARGS__})
#define POOL(...) (&(ckd_pool2d_params){__VA_ARGS__})
GC_FN(f_conv_grouped, ckd_conv2d_ex(c, in[0], in[1], in[2], CONV(2, 1, 1, 2, 2)))
GC_TEST(conv2d_grouped_strided_padded, f_conv_grouped, P(101, 1, 2, 4, 6, 5), P(102, 1, 6, 2, 3, 3), P(103, 1, 6))
GC_FN(f_conv_dw, ckd_conv2d_ex(c, in[0], in[1], NULL, CONV(2, 2, 1, 1, 4)))
GC_TEST(conv2d_depthwise, f_conv_dw, P(104, 1, 2, 4, 5, 5), P(105, 1, 4, 1, 3, 3))
GC_FN(f_conv_dw_mult, ckd_conv2d_ex(c, in[0], in[1], in[2], CONV(1, 2, 1, 0, 3)))
GC_TEST(conv2d_depthwise_multiplier, f_conv_dw_mult, P(106, 1, 1, 3, 6, 6), P(107, 1, 6, 1, 3, 2), P(108, 1, 6))
GC_FN(f_conv_1x1, ckd_conv2d_ex(c, in[0], in[1], in[2], NULL))
GC_TEST(conv2d_1x1_direct, f_conv_1x1, P(109, 1, 2, 3, 4, 4), P(110, 1, 5, 3, 1, 1), P(111, 1, 5))
GC_FN(f_conv_1x1_groups, ckd_conv2d_ex(c, in[0], in[1], NULL, CONV(.groups = 2)))
GC_TEST(conv2d_1x1_grouped_direct, f_conv_1x1_groups, P(112, 1, 2, 4, 3, 3), P(113, 1, 6, 2, 1, 1))

/* Values spaced 0.05 apart in a scrambled order: the finite-difference step
 * (0.01) never changes which element is a window's maximum. */
static ckd_tensor *distinct(ckd_tensor *p)
{
    int64_t n = p->n, k = 7;
    while (n % k == 0 || (n % 2 == 0 && k % 2 == 0))
        k += 2;
    for (int64_t i = 0; i < n; i++)
        p->data[i] = (float)((double)((i * k) % n) - (double)n / 2) * 0.05f;
    return p;
}
GC_FN(f_maxpool_stem, ckd_maxpool2d(c, in[0], POOL(3, 3, 2, 2, 1, 1)))
Test(grad, maxpool2d_strided_padded)
{
    gcase g = {{distinct(P(114, 1, 2, 2, 5, 6))}, 1, {0}};
    run_check(f_maxpool_stem, &g, 1e-3, 1e-2);
}
GC_FN(f_maxpool_rect, ckd_maxpool2d(c, h15(c, in[0]), POOL(2, 3, 1, 2, 1, 1)))
Test(grad, maxpool2d_rect_overlapping)
{
    gcase g = {{distinct(P(115, 1, 1, 3, 4, 7))}, 1, {0}};
    run_check(f_maxpool_rect, &g, 1e-3, 1e-2);
}
GC_FN(f_avgpool_pad, ckd_avgpool2d(c, in[0], POOL(3, 3, 2, 2, 1, 1)))
GC_TEST(avgpool2d_strided_padded, f_avgpool_pad, P(116, 1, 2, 2, 5, 6))
GC_FN(f_avgpool_k2, ckd_avgpool2d(c, h15(c, in[0]), POOL(.kernel_h = 2, .kernel_w = 2)))
GC_TEST(avgpool2d_kernel2_default_stride, f_avgpool_k2, P(117, 1, 2, 3, 4, 6))
GC_FN(f_gap, ckd_global_avgpool2d(c, in[0]))
GC_TEST(global_avgpool2d, f_gap, P(118, 1, 2, 3, 4, 5))
/* The first gradient to reach h (a fresh buffer) comes from the pooling. */
GC_FN(f_gap_fresh, ckd_add(c, ckd_global_avgpool2d(c, h15(c, in[0])), ckd_sum(c, ckd_sum(c, h15(c, in[0]), 3), 2)))
GC_TEST(global_avgpool2d_fresh, f_gap_fresh, P(119, 1, 2, 3, 2, 3))

/* Running statistics as arena tensors built per call: the gradient check
 * calls the function many times, and train mode updates them each time. */
static const float bn_rm[4] = {0.1f, -0.2f, 0.3f, 0.0f}, bn_rv[4] = {0.8f, 1.2f, 0.5f, 1.0f};
static ckd_tensor *bn_case(ckd_ctx *c, gcase *g, int training, int affine)
{
    ckd_tensor *rm = ckd_tensor_from(c, 1, SH(4), bn_rm), *rv = ckd_tensor_from(c, 1, SH(4), bn_rv);
    ckd_tensor *x = h15(c, g->in[0]);
    ckd_tensor *y = ckd_batchnorm2d(c, x, affine ? g->in[1] : NULL, affine ? g->in[2] : NULL, rm, rv, training,
                                    0.1f, 1e-5f);
    /* a later use of x: backward reaches it after batch norm wrote x's fresh gradient */
    return ckd_add(c, weighted_sum(c, y), ckd_scale(c, ckd_sum_all(c, ckd_mul(c, x, x)), 0.1f));
}
static ckd_tensor *f_bn_train(ckd_ctx *c, void *u) { return bn_case(c, u, 1, 1); }
static ckd_tensor *f_bn_train_plain(ckd_ctx *c, void *u) { return bn_case(c, u, 1, 0); }
static ckd_tensor *f_bn_eval(ckd_ctx *c, void *u) { return bn_case(c, u, 0, 1); }
GC_TEST(batchnorm2d_train, f_bn_train, P(120, 1, 3, 4, 3, 3), positive(P(121, 0.5f, 4), 0.5f), P(122, 1, 4))
GC_TEST(batchnorm2d_train_no_affine, f_bn_train_plain, P(123, 1, 2, 4, 2, 3))
GC_TEST(batchnorm2d_eval, f_bn_eval, P(124, 1, 3, 4, 3, 3), positive(P(125, 0.5f, 4), 0.5f), P(126, 1, 4))
GC_FN(f_bn_no_stats, ckd_batchnorm2d(c, in[0], in[1], in[2], NULL, NULL, 1, 0.1f, 1e-5f))
GC_TEST(batchnorm2d_train_no_running_stats, f_bn_no_stats, P(127, 1, 4, 3), P(128, 1, 3), P(129, 1, 3))

/* conv → batch norm → relu → max pool → global average: a ResNet stem. */
static ckd_tensor *f_stem(ckd_ctx *c, void *u)
{
    ckd_tensor **in = ((gcase *)u)->in;
    ckd_tensor *y = ckd_conv2d_ex(c, in[0], in[1], NULL, CONV(2, 2, 1, 1, 1));
    y = ckd_batchnorm2d(c, y, in[2], in[3], NULL, NULL, 1, 0.1f, 1e-5f);
    y = ckd_maxpool2d(c, ckd_relu(c, y), POOL(3, 3, 2, 2, 1, 1));
    return weighted_sum(c, ckd_global_avgpool2d(c, y));
}
GC_TEST(resnet_stem_chain, f_stem, P(130, 1, 2, 2, 7, 7), P(131, 1, 3, 2, 3, 3), positive(P(132, 0.5f, 3), 0.5f),
        P(133, 1, 3))
