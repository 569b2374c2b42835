/* Arena, context, tape, errors, no-grad mode, threads and the BLIS rule. */
#include "config.h"

#include <string.h>

#include "ops_util.h"

#define SH(...) ((int64_t[]){__VA_ARGS__})

Test(arena, alloc_is_aligned_and_reset_reuses)
{
    ckd_arena *a = ckd_arena_new(1024, 0);
    void *p = ckd_arena_alloc(a, 10), *q = ckd_arena_alloc(a, 3000);
    cr_assert(p && q);
    cr_assert_eq((uintptr_t)p % 64, 0);
    cr_assert_eq((uintptr_t)q % 64, 0);
    cr_assert_geq(ckd_arena_used(a), 3010);
    ckd_arena_reset(a);
    cr_assert_eq(ckd_arena_used(a), 0);
    cr_assert_eq(ckd_arena_alloc(a, 10), p, "the first slab is reused after reset");
    cr_assert_geq(ckd_arena_peak(a), 3010);
    ckd_arena_free(a);
}

Test(arena, limit_is_enforced)
{
    ckd_arena *a = ckd_arena_new(4096, 8192);
    cr_assert_not_null(ckd_arena_alloc(a, 4000));
    cr_assert_null(ckd_arena_alloc(a, 8000));
    ckd_arena_free(a);
}

Test(ctx, exhausted_arena_is_an_error_naming_the_op)
{
    ckd_ctx *c = ckd_ctx_new(64 * 1024, 1, NULL);
    ckd_tensor *x = ckd_tensor_zeros(c, 2, SH(100, 100));
    cr_assert_not_null(x);
    ckd_tensor *y = ckd_matmul(c, x, x);
    cr_assert_null(y);
    cr_assert(ckd_ctx_failed(c));
    cr_assert(strstr(ckd_ctx_error(c), "arena exhausted"), "%s", ckd_ctx_error(c));
    ckd_ctx_reset(c);
    cr_assert(!ckd_ctx_failed(c), "reset clears the error");
    ckd_ctx_free(c);
}

Test(ctx, shape_errors_name_op_and_shapes_and_are_sticky)
{
    ckd_ctx *c = ckd_ctx_new(0, 1, NULL);
    ckd_tensor *a = ckd_tensor_zeros(c, 2, SH(2, 3)), *b = ckd_tensor_zeros(c, 2, SH(4, 5));
    cr_assert_null(ckd_matmul(c, a, b));
    cr_assert(strstr(ckd_ctx_error(c), "matmul") && strstr(ckd_ctx_error(c), "[2, 3]") &&
                  strstr(ckd_ctx_error(c), "[4, 5]"),
              "%s", ckd_ctx_error(c));
    /* Later ops on the failed result keep the first message. */
    cr_assert_null(ckd_relu(c, ckd_add(c, ckd_matmul(c, a, b), a)));
    cr_assert(strstr(ckd_ctx_error(c), "matmul"));
    ckd_error err;
    cr_assert_eq(ckd_ctx_check(c, &err), -1);
    cr_assert(strstr(err.msg, "matmul"));
    ckd_ctx_free(c);
}

Test(ctx, each_op_reports_bad_shapes)
{
    ckd_ctx *c = ckd_ctx_new(0, 1, NULL);
    ckd_tensor *a = ckd_tensor_zeros(c, 2, SH(2, 3)), *b = ckd_tensor_zeros(c, 2, SH(3, 2)),
               *v = ckd_tensor_zeros(c, 1, SH(4)), *x3 = ckd_tensor_zeros(c, 3, SH(1, 4, 6));
#define EXPECT_FAIL(name, expr)                                                        \
    do {                                                                               \
        ckd_ctx_reset(c);                                                              \
        a = ckd_tensor_zeros(c, 2, SH(2, 3));                                          \
        b = ckd_tensor_zeros(c, 2, SH(3, 2));                                          \
        v = ckd_tensor_zeros(c, 1, SH(4));                                             \
        x3 = ckd_tensor_zeros(c, 3, SH(1, 4, 6));                                      \
        cr_assert_null((expr), "%s should fail", name);                                \
        cr_assert(strstr(ckd_ctx_error(c), name), "message '%s' should name %s", ckd_ctx_error(c), name); \
    } while (0)
    EXPECT_FAIL("linear", ckd_linear(c, a, v, NULL));
    EXPECT_FAIL("conv2d", ckd_conv2d(c, a, a, NULL, 1, 0));
    EXPECT_FAIL("mul", ckd_mul(c, a, v));
    EXPECT_FAIL("sum", ckd_sum(c, a, 2));
    EXPECT_FAIL("reshape", ckd_reshape(c, a, 2, SH(4, 2)));
    EXPECT_FAIL("permute", ckd_permute(c, a, (int[]){0, 0}));
    EXPECT_FAIL("transpose", ckd_transpose(c, a, 0, 5));
    EXPECT_FAIL("concat", ckd_concat(c, (ckd_tensor *[]){a, b}, 2, 0));
    EXPECT_FAIL("slice", ckd_slice(c, a, 1, 2, 2));
    EXPECT_FAIL("gather_rows", ckd_gather_rows(c, a, (int32_t[]){0, 2}, 2));
    EXPECT_FAIL("select_rows", ckd_select_rows(c, x3, (int32_t[]){4}, 1));
    EXPECT_FAIL("layernorm", ckd_layernorm(c, a, v, NULL, 1e-5f));
    EXPECT_FAIL("cross_entropy", ckd_cross_entropy(c, a, (int32_t[]){0, 3}));
    EXPECT_FAIL("kl_div", ckd_kl_div(c, a, b));
    EXPECT_FAIL("mse", ckd_mse(c, a, b));
    EXPECT_FAIL("attention", ckd_attention(c, x3, x3, x3, 4, 0));
    (void)v;
    ckd_ctx_free(c);
}

Test(tape, no_grad_mode_records_nothing)
{
    ckd_ctx *c = ckd_ctx_new(0, 1, NULL);
    ckd_tensor *w = ckd_param_new(2, SH(3, 3), "w", NULL);
    ckd_tensor *x = ckd_tensor_zeros(c, 2, SH(2, 3));
    int was = ckd_ctx_set_grad(c, 0);
    cr_assert_eq(was, 1);
    ckd_tensor *y = ckd_linear(c, x, w, NULL);
    cr_assert_not_null(y);
    cr_assert_eq(y->requires_grad, 0);
    cr_assert_null(y->node);
    ckd_error err;
    cr_assert_eq(ckd_backward(c, ckd_sum_all(c, y), &err), -1);
    cr_assert(strstr(err.msg, "does not depend"), "%s", err.msg);
    ckd_ctx_set_grad(c, 1);
    y = ckd_linear(c, x, w, NULL);
    cr_assert_not_null(y->node);
    ckd_param_free(w);
    ckd_ctx_free(c);
}

Test(tape, parameter_gradients_accumulate_until_zeroed)
{
    ckd_ctx *c = ckd_ctx_new(0, 1, NULL);
    ckd_tensor *w = ckd_param_new(1, SH(3), "w", NULL);
    for (int step = 1; step <= 2; step++) {
        ckd_ctx_reset(c);
        cr_assert_eq(ckd_backward(c, ckd_sum_all(c, w), NULL), 0);
        for (int i = 0; i < 3; i++)
            cr_assert_float_eq(w->grad[i], (float)step, 0);
    }
    ckd_param_zero_grad(w);
    cr_assert_float_eq(w->grad[0], 0.0f, 0);
    ckd_error err;
    ckd_ctx_reset(c);
    cr_assert_eq(ckd_backward(c, ckd_mul(c, w, w), &err), -1, "backward from a non-scalar");
    cr_assert(strstr(err.msg, "scalar"), "%s", err.msg);
    ckd_param_free(w);
    ckd_ctx_free(c);
}

/* A little transformer-like step run twice: bit-identical results. */
static void one_step(float *out, int64_t n)
{
    ckd_ctx *c = ckd_ctx_new(0, 1, NULL);
    ckd_tensor *w = rparam(2, SH(64, 64), 3, 0.2f);
    ckd_tensor *x = ckd_tensor_new(c, 3, SH(4, 50, 64));
    fill(x->data, x->n, 4, 1);
    ckd_tensor *h = ckd_linear(c, x, w, NULL);
    ckd_tensor *y = ckd_attention(c, h, h, h, 4, 0);
    cr_assert_eq(ckd_backward(c, ckd_sum_all(c, ckd_gelu(c, y)), NULL), 0);
    memcpy(out, w->grad, (size_t)n * sizeof(float));
    ckd_param_free(w);
    ckd_ctx_free(c);
}

Test(threads, results_identical_run_to_run)
{
    ckd_set_threads(2);
    static float g1[4096], g2[4096];
    one_step(g1, 4096);
    one_step(g2, 4096);
    cr_assert_eq(memcmp(g1, g2, sizeof g1), 0);
    cr_assert_eq(ckd_get_threads(), 2);
}

/* The elementwise and row ops, forward and backward, give the same bits on
 * 1 and 2 threads: reductions across rows go by fixed blocks or by columns,
 * never by thread. Sizes are above the parallel thresholds. */
static void nongemm_step(int threads, float *out, int64_t n_out)
{
    ckd_set_threads(threads);
    ckd_ctx *c = ckd_ctx_new(0, 1, NULL);
    ckd_tensor *pos = rparam(2, SH(197, 192), 5, 0.5f), *gam = rparam(1, SH(192), 6, 1.0f);
    ckd_tensor *bet = rparam(1, SH(192), 7, 0.2f), *s = rparam(0, NULL, 8, 1.0f);
    ckd_tensor *x = ckd_tensor_new(c, 3, SH(4, 197, 192));
    fill(x->data, x->n, 9, 2);
    ckd_tensor *h = ckd_add(c, x, pos);
    ckd_tensor *y = ckd_gelu(c, ckd_layernorm(c, h, gam, bet, 1e-5f));
    ckd_tensor *z = ckd_softmax(c, ckd_mul(c, ckd_reshape(c, y, 2, SH(4 * 197, 192)), s));
    cr_assert_eq(ckd_backward(c, ckd_sum_all(c, ckd_mul(c, z, z)), NULL), 0);
    ckd_tensor *parts[] = {pos, gam, bet, s};
    int64_t k = 0;
    for (int i = 0; i < 4; i++)
        for (int64_t j = 0; j < parts[i]->n && k < n_out; j++)
            out[k++] = parts[i]->grad[j];
    for (int64_t j = 0; j < z->n && k < n_out; j += 7)
        out[k++] = z->data[j];
    cr_assert_eq(k, n_out);
    for (int i = 0; i < 4; i++)
        ckd_param_free(parts[i]);
    ckd_ctx_free(c);
}

Test(threads, elementwise_and_row_ops_same_bits_on_1_and_2_threads)
{
    enum { N = 197 * 192 + 192 + 192 + 1 + 21613 };
    static float g1[N], g2[N];
    nongemm_step(1, g1, N);
    nongemm_step(2, g2, N);
    cr_assert_eq(memcmp(g1, g2, sizeof g1), 0);
}

/* The product in chunks (CLIPKD_GEMM_SPLIT=always: what a shared machine
 * gets), by BLIS's own threads (never), and on one thread: the same bits,
 * for every transpose and for products split by rows and by columns. */
Test(blas, chunked_product_same_bits_as_whole)
{
    static const int64_t shapes[][3] = {{700, 300, 200}, {90, 2000, 150}, {1000, 97, 300}};
    for (size_t s = 0; s < 3; s++)
        for (int t = 0; t < 4; t++) {
            int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            int ta = t & 1, tb = t >> 1;
            float *A = malloc((size_t)(M * K) * sizeof *A), *B = malloc((size_t)(K * N) * sizeof *B);
            float *C[4];
            fill(A, M * K, 11, 1);
            fill(B, K * N, 12, 1);
            static const char *const mode[] = {"never", "never", "always", "always"};
            static const int threads[] = {1, 2, 2, 3};
            for (int k = 0; k < 4; k++) {
                C[k] = malloc((size_t)(M * N) * sizeof *C[k]);
                fill(C[k], M * N, 13, 1);
                setenv("CLIPKD_GEMM_SPLIT", mode[k], 1);
                ckd_set_threads(threads[k]);
                ckd_gemm(ta, tb, M, N, K, 0.5f, A, ta ? M : K, B, tb ? K : N, 0.25f, C[k], N);
            }
            unsetenv("CLIPKD_GEMM_SPLIT");
            for (int k = 1; k < 4; k++)
                cr_assert_eq(memcmp(C[0], C[k], (size_t)(M * N) * sizeof(float)), 0,
                             "%lldx%lldx%lld trans %d%d: %s on %d threads differs from one thread", (long long)M,
                             (long long)N, (long long)K, ta, tb, mode[k], threads[k]);
            for (int k = 0; k < 4; k++)
                free(C[k]);
            free(A), free(B);
        }
}

Test(blas, kernel_selection_rule)
{
    cr_assert_null(ckd_blas_pick_arch("zen3", 1, 1), "a recognised CPU keeps BLIS's choice");
    cr_assert_null(ckd_blas_pick_arch("skx", 1, 1));
    cr_assert_str_eq(ckd_blas_pick_arch("generic", 1, 1), "skx");
    cr_assert_str_eq(ckd_blas_pick_arch("generic", 0, 1), "haswell");
    cr_assert_null(ckd_blas_pick_arch("generic", 0, 0), "nothing better than generic");
    const ckd_blas_info *bi = ckd_blas_init();
    cr_assert(bi->version && *bi->version);
    cr_assert(bi->arch && *bi->arch);
    if (strcmp(bi->blis_choice, "generic") == 0 && strstr(bi->cpu_features, "avx2"))
        cr_assert_str_neq(bi->arch, "generic", "clipkd must replace BLIS's generic kernels here");
}

Test(rng, deterministic_and_in_range)
{
    ckd_rng a, b;
    ckd_rng_seed(&a, 42);
    ckd_rng_seed(&b, 42);
    double m = 0;
    for (int i = 0; i < 10000; i++) {
        cr_assert_eq(ckd_rng_next(&a), ckd_rng_next(&b));
        double u = ckd_rng_uniform(&a);
        (void)ckd_rng_uniform(&b);
        cr_assert(u >= 0 && u < 1);
        m += ckd_rng_normal(&a) / 10000;
        (void)ckd_rng_normal(&b);
        cr_assert_lt(ckd_rng_below(&a, 7), 7);
        (void)ckd_rng_below(&b, 7);
    }
    cr_assert(fabs(m) < 0.05, "normal mean %g", m);
}
