/* The factorized density (ckd_factorized_nll) against PyTorch float64
 * references of CompressAI's EntropyBottleneck formulas
 * (tests/fixtures/ops-entropy/, made by the generator next to the fixture);
 * its initialisation; the quantisation proxy; bad shapes. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "fixture_util.h"
#include "ops_util.h"

#define OUT_TOL 1e-5  /* −log q, abs · (1 + |ref|) */
#define GRAD_TOL 1e-4 /* gradients, abs · (1 + |ref|) */

static void setup(void) { fixture_open("tests/fixtures/ops-entropy/ops_entropy.safetensors"); }
static void teardown(void) { fixture_close(); }
TestSuite(torch, .init = setup, .fini = teardown);

static ckd_tensor *load_param(const char *cs, const char *what)
{
    ckd_tensor *p = fixture_param(cs, what);
    cr_assert_not_null(p, "fixture has no %s.%s", cs, what);
    return p;
}

static void check(const char *cs, const char *what, const float *got, int64_t n, double tol)
{
    fixture_check(cs, what, got, n, tol, 1);
}

/* Forward and every gradient of sum(out · r) for one fixture case. */
static void run_case(const char *cs)
{
    ckd_tensor *y = load_param(cs, "y"), *m = load_param(cs, "matrices"), *b = load_param(cs, "biases"),
               *f = load_param(cs, "factors"), *r = load_param(cs, "r");
    r->requires_grad = 0;
    ckd_tensor *out = ckd_factorized_nll(C, y, m, b, f);
    cr_assert_not_null(out, "%s", ckd_ctx_error(C));
    check(cs, "out", out->data, out->n, OUT_TOL);
    ckd_tensor *loss = ckd_sum_all(C, ckd_mul(C, out, r));
    cr_assert_not_null(loss, "%s", ckd_ctx_error(C));
    cr_assert_eq(ckd_backward(C, loss, NULL), 0, "%s", ckd_ctx_error(C));
    check(cs, "grad.y", y->grad, y->n, GRAD_TOL);
    check(cs, "grad.matrices", m->grad, m->n, GRAD_TOL);
    check(cs, "grad.biases", b->grad, b->n, GRAD_TOL);
    check(cs, "grad.factors", f->grad, f->n, GRAD_TOL);
    ckd_tensor *ps[5] = {y, m, b, f, r};
    for (int i = 0; i < 5; i++)
        ckd_param_free(ps[i]);
}

Test(torch, factorized_at_init) { run_case("init"); }
Test(torch, factorized_trained) { run_case("trained"); }
Test(torch, factorized_tails) { run_case("tails"); }

/* The rate is a proper probability: over the integers, Σ_k q(k) ≤ 1, and a
 * wide window holds nearly all the mass (the map is a CDF). */
Test(entropy, likelihoods_sum_to_one)
{
    ckd_ctx *c = ckd_ctx_new(0, 1, NULL);
    int64_t C2 = 2, K = 401;
    ckd_tensor *m = ckd_tensor_new(c, 2, (int64_t[]){C2, CKD_FD_MATRIX_SIZE});
    ckd_tensor *b = ckd_tensor_new(c, 2, (int64_t[]){C2, CKD_FD_BIAS_SIZE});
    ckd_tensor *f = ckd_tensor_new(c, 2, (int64_t[]){C2, CKD_FD_FACTOR_SIZE});
    ckd_tensor *y = ckd_tensor_new(c, 2, (int64_t[]){K, C2});
    cr_assert(m && b && f && y);
    ckd_rng r;
    ckd_rng_seed(&r, 7);
    ckd_factorized_init(m, b, f, &r);
    for (int64_t k = 0; k < K; k++)
        for (int64_t ch = 0; ch < C2; ch++)
            y->data[k * C2 + ch] = (float)(k - K / 2);
    ckd_tensor *nll = ckd_factorized_nll(c, y, m, b, f);
    cr_assert_not_null(nll, "%s", ckd_ctx_error(c));
    for (int64_t ch = 0; ch < C2; ch++) {
        double mass = 0;
        for (int64_t k = 0; k < K; k++)
            mass += exp(-(double)nll->data[k * C2 + ch]);
        cr_assert(mass > 0.999 && mass < 1.0 + 1e-5, "channel %lld: mass %.7f over [-200, 200]", (long long)ch, mass);
    }
    ckd_ctx_free(c);
}

/* CompressAI's initial values: matrices log(expm1(1 / (10^¼ · out))),
 * biases in [−½, ½), factors 0. */
Test(entropy, init_values)
{
    ckd_ctx *c = ckd_ctx_new(0, 1, NULL);
    ckd_tensor *m = ckd_tensor_new(c, 2, (int64_t[]){3, CKD_FD_MATRIX_SIZE});
    ckd_tensor *b = ckd_tensor_new(c, 2, (int64_t[]){3, CKD_FD_BIAS_SIZE});
    ckd_tensor *f = ckd_tensor_new(c, 2, (int64_t[]){3, CKD_FD_FACTOR_SIZE});
    ckd_rng r;
    ckd_rng_seed(&r, 1);
    ckd_factorized_init(m, b, f, &r);
    double s = pow(10.0, 0.25);
    for (int ch = 0; ch < 3; ch++) {
        const float *mc = m->data + ch * CKD_FD_MATRIX_SIZE;
        cr_assert_float_eq(mc[0], log(expm1(1 / s / 3)), 1e-6);  /* layer 1: out 3 */
        cr_assert_float_eq(mc[12], log(expm1(1 / s / 3)), 1e-6); /* layer 3 */
        cr_assert_float_eq(mc[23], log(expm1(1 / s / 1)), 1e-6); /* layer 4: out 1 */
        for (int i = 0; i < CKD_FD_BIAS_SIZE; i++)
            cr_assert(b->data[ch * CKD_FD_BIAS_SIZE + i] >= -0.5f && b->data[ch * CKD_FD_BIAS_SIZE + i] < 0.5f);
        for (int i = 0; i < CKD_FD_FACTOR_SIZE; i++)
            cr_assert_eq(f->data[ch * CKD_FD_FACTOR_SIZE + i], 0.0f);
    }
    ckd_ctx_free(c);
}

Test(entropy, bad_shapes)
{
    ckd_ctx *c = ckd_ctx_new(0, 1, NULL);
    ckd_tensor *y = ckd_tensor_new(c, 2, (int64_t[]){4, 3});
    ckd_tensor *m = ckd_tensor_new(c, 2, (int64_t[]){3, CKD_FD_MATRIX_SIZE});
    ckd_tensor *b = ckd_tensor_new(c, 2, (int64_t[]){3, CKD_FD_BIAS_SIZE});
    ckd_tensor *f = ckd_tensor_new(c, 2, (int64_t[]){2, CKD_FD_FACTOR_SIZE}); /* wrong C */
    cr_assert_null(ckd_factorized_nll(c, y, m, b, f));
    cr_assert(strstr(ckd_ctx_error(c), "factors [C, 9]") && strstr(ckd_ctx_error(c), "[2, 9]"), "%s",
              ckd_ctx_error(c));
    ckd_ctx_free(c);
}

/* Noise: U[−½, ½) around x, different per element, mean near 0; rounding
 * halves to even; the gradient passes through both unchanged. */
Test(entropy, quantize)
{
    ckd_ctx *c = ckd_ctx_new(0, 1, NULL);
    ckd_tensor *x = rparam(1, (int64_t[]){4096}, 3, 5.0f);
    ckd_tensor *nz = ckd_quantize(c, x, CKD_QUANT_NOISE);
    cr_assert_not_null(nz, "%s", ckd_ctx_error(c));
    double mean = 0, lo = 1, hi = -1;
    for (int64_t i = 0; i < x->n; i++) {
        double u = (double)nz->data[i] - x->data[i];
        mean += u;
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
    }
    mean /= (double)x->n;
    cr_assert(lo >= -0.5 - 1e-6 && hi < 0.5 + 1e-6 && hi - lo > 0.98, "noise range [%g, %g]", lo, hi);
    cr_assert(fabs(mean) < 0.02, "noise mean %g", mean);
    ckd_tensor *loss = weighted_sum(c, nz);
    cr_assert_eq(ckd_backward(c, loss, NULL), 0, "%s", ckd_ctx_error(c));
    for (int64_t i = 0; i < x->n; i++)
        cr_assert_float_eq(x->grad[i], (float)sin(0.37 * (double)i + 0.1), 1e-6);

    ckd_tensor *h = ckd_param_new(1, (int64_t[]){6}, NULL, NULL);
    const float v[6] = {0.5f, 1.5f, 2.5f, -0.5f, -1.4f, 2.6f}, want[6] = {0, 2, 2, -0.0f, -1, 3};
    memcpy(h->data, v, sizeof v);
    ckd_tensor *rd = ckd_quantize(c, h, CKD_QUANT_ROUND);
    cr_assert_not_null(rd);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(rd->data[i], want[i], "round(%g) = %g, want %g", (double)v[i], (double)rd->data[i],
                     (double)want[i]);
    cr_assert_eq(ckd_backward(c, ckd_sum_all(c, rd), NULL), 0, "%s", ckd_ctx_error(c));
    for (int i = 0; i < 6; i++)
        cr_assert_eq(h->grad[i], 1.0f);
    cr_assert_null(ckd_quantize(c, h, (ckd_quant_mode)7));
    ckd_param_free(x);
    ckd_param_free(h);
    ckd_ctx_free(c);
}
