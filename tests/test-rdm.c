/* CIFD's rate-distortion module (clipkd/rdm.h): its forward pass, stage-1
 * objective and gradients against PyTorch float64 references
 * (tests/fixtures/cifd/rdm.safetensors, made by make_rdm_fixtures.py next to
 * it), a finite-difference check, stage 1 trading rate for distortion as R
 * moves, and bad input. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "clipkd/rdm.h"
#include "fixture_util.h"
#include "ops_util.h"

#define TOL 1e-5 /* abs · (1 + |ref|) */

static void setup(void) { fixture_open("tests/fixtures/cifd/rdm.safetensors"); }
static void teardown(void) { fixture_close(); }
TestSuite(torch, .init = setup, .fini = teardown);

/* An RDM of the fixture's widths whose parameters are the case's. */
static ckd_rdm *rdm_from_fixture(const char *cs, int out_relu, int64_t classes)
{
    ckd_rdm_config cfg = {.in_dim = 12, .hidden = 10, .bottleneck = 6, .n_classes = classes, .out_relu = out_relu};
    ckd_error err = {{0}};
    ckd_rdm *r = ckd_rdm_new(&cfg, 1, &err);
    cr_assert_not_null(r, "%s", err.msg);
    for (int i = 0; i < ckd_rdm_n_params(r); i++) {
        ckd_tensor *p = ckd_rdm_param(r, i);
        ckd_tensor *src = fixture_param(cs, p->name);
        cr_assert_not_null(src, "fixture has no %s.%s", cs, p->name);
        cr_assert_eq(src->n, p->n, "%s: %lld values, the fixture %lld", p->name, (long long)p->n, (long long)src->n);
        memcpy(p->data, src->data, (size_t)p->n * sizeof(float));
        ckd_param_free(src);
    }
    return r;
}

/* eq5: {λ_CE, λ_KL, τ} of the classifier form's terms, or NULL. */
static void run_case(const char *cs, int noise, int out_relu, int64_t classes, double R, const double *eq5)
{
    ckd_rdm *r = rdm_from_fixture(cs, out_relu, classes);
    ckd_tensor *x = fixture_param(cs, "x"), *u = fixture_param(cs, "u");
    cr_assert(x && u);
    x->requires_grad = 0;
    ckd_ctx_reset(C);
    ckd_rdm_out o;
    cr_assert_eq(ckd_rdm_forward(r, C, x, noise ? u->data : NULL, &o), 0, "%s", ckd_ctx_error(C));
    double dist = 0, rate = 0;
    ckd_tensor *loss = ckd_rdm_loss(C, &o, x, R, &dist, &rate);
    cr_assert_not_null(loss, "%s", ckd_ctx_error(C));
    ckd_tensor *lab = NULL, *tl = NULL;
    if (eq5) {
        lab = fixture_param(cs, "labels");
        tl = fixture_param(cs, "t_logits");
        cr_assert(lab && tl);
        tl->requires_grad = 0;
        int32_t y[64];
        for (int64_t i = 0; i < lab->n && i < 64; i++)
            y[i] = (int32_t)lab->data[i];
        double ce = 0, kl = 0;
        loss = ckd_add(C, loss, ckd_rdm_class_loss(C, &o, y, tl, eq5[0], eq5[1], eq5[2], &ce, &kl));
        cr_assert_not_null(loss, "%s", ckd_ctx_error(C));
        float p2[2] = {(float)ce, (float)kl};
        fixture_check(cs, "ce", p2, 1, TOL, 1);
        fixture_check(cs, "kl", p2 + 1, 1, TOL, 1);
    }
    fixture_check(cs, "loss", loss->data, 1, TOL, 1);
    float parts[2] = {(float)dist, (float)rate};
    fixture_check(cs, "distortion", parts, 1, TOL, 1);
    fixture_check(cs, "rate", parts + 1, 1, TOL, 1);
    fixture_check(cs, "x_hat", o.x_hat->data, o.x_hat->n, TOL, 1);
    if (classes)
        fixture_check(cs, "logits", o.logits->data, o.logits->n, TOL, 1);
    cr_assert_eq(ckd_backward(C, loss, NULL), 0, "%s", ckd_ctx_error(C));
    for (int i = 0; i < ckd_rdm_n_params(r); i++) {
        ckd_tensor *p = ckd_rdm_param(r, i);
        char what[96];
        snprintf(what, sizeof what, "grad.%s", p->name);
        fixture_check(cs, what, p->grad, p->n, 1e-4, 1);
    }
    ckd_param_free(x);
    ckd_param_free(u);
    ckd_param_free(lab);
    ckd_param_free(tl);
    ckd_rdm_free(r);
}

Test(torch, rdm_noise) { run_case("noise", 1, 0, 0, 2.0, NULL); }
Test(torch, rdm_round_straight_through) { run_case("round", 0, 0, 0, 2.0, NULL); }
Test(torch, rdm_relu_output_and_head) { run_case("relu_head", 1, 1, 4, 0.5, NULL); }
Test(torch, rdm_classifier_form_eq5) { run_case("eq5", 1, 1, 4, 0.5, (const double[]){1.0, 0.7, 2.0}); }

/* ---- finite differences, noise held fixed ---- */
typedef struct gc_user {
    ckd_rdm *r;
    ckd_tensor *x;
    float *u;
} gc_user;

static ckd_tensor *rdm_objective(ckd_ctx *c, void *user)
{
    gc_user *g = user;
    ckd_rdm_out o;
    if (ckd_rdm_forward(g->r, c, g->x, g->u, &o))
        return NULL;
    return ckd_rdm_loss(c, &o, g->x, 3.0, NULL, NULL);
}

Test(rdm, gradcheck)
{
    ckd_rdm_config cfg = {.in_dim = 6, .hidden = 5, .bottleneck = 3, .out_relu = 0};
    ckd_error err = {{0}};
    ckd_rdm *r = ckd_rdm_new(&cfg, 3, &err);
    cr_assert_not_null(r, "%s", err.msg);
    gc_user g = {r, rparam(2, (int64_t[]){4, 6}, 11, 2.0f), malloc(12 * sizeof(float))};
    g.x->requires_grad = 0;
    fill(g.u, 12, 12, 0.5f);
    ckd_ctx *c = ckd_ctx_new(0, 1, NULL);
    ckd_gradcheck_opts o;
    ckd_gradcheck_default_opts(&o);
    o.atol = 1e-3;
    ckd_gradcheck_report rep;
    ckd_tensor *ps[16];
    for (int i = 0; i < ckd_rdm_n_params(r); i++)
        ps[i] = ckd_rdm_param(r, i);
    int rc = ckd_gradcheck(c, rdm_objective, &g, ps, ckd_rdm_n_params(r), &o, &rep, &err);
    char buf[512];
    cr_assert_geq(rc, 0, "gradcheck could not run: %s", err.msg);
    cr_assert_gt(rep.checked, 0);
    cr_assert_eq(rc, 0, "%s", ckd_gradcheck_describe(&rep, buf, sizeof buf));
    ckd_ctx_free(c);
    ckd_param_free(g.x);
    free(g.u);
    ckd_rdm_free(r);
}

/* ---- stage 1: a larger R buys rate for distortion ---- */
/* n rows of D-dimensional, L2-normalised embeddings that live near a rank-4
 * subspace (what teacher embeddings of a few classes look like). */
static float *embeddings(int64_t n, int64_t D, uint64_t seed)
{
    ckd_rng r;
    ckd_rng_seed(&r, seed);
    float basis[4 * 16];
    ckd_rng_seed(&r, 99); /* the same subspace for every call */
    for (int i = 0; i < 4 * 16; i++)
        basis[i] = (float)ckd_rng_normal(&r);
    ckd_rng_seed(&r, seed);
    float *X = malloc((size_t)(n * D) * sizeof(float));
    for (int64_t i = 0; i < n; i++) {
        double z[4], s = 0;
        for (int k = 0; k < 4; k++)
            z[k] = ckd_rng_normal(&r);
        for (int64_t j = 0; j < D; j++) {
            double v = 0.05 * ckd_rng_normal(&r);
            for (int k = 0; k < 4; k++)
                v += z[k] * basis[k * 16 + j];
            X[i * D + j] = (float)v;
            s += v * v;
        }
        for (int64_t j = 0; j < D; j++)
            X[i * D + j] /= (float)sqrt(s);
    }
    return X;
}

Test(rdm, rate_distortion_trade_off, .timeout = 120)
{
    const int64_t D = 16, n = 2048, nt = 512;
    float *train = embeddings(n, D, 1), *test = embeddings(nt, D, 2);
    /* The distortion of predicting the mean row: what no rate at all gives. */
    double mean[16] = {0}, var = 0;
    for (int64_t i = 0; i < nt; i++)
        for (int64_t j = 0; j < D; j++)
            mean[j] += test[i * D + j] / (double)nt;
    for (int64_t i = 0; i < nt; i++)
        for (int64_t j = 0; j < D; j++)
            var += pow(test[i * D + j] - mean[j], 2) / (double)(nt * D);
    const double Rs[2] = {30, 3000};
    ckd_rdm_report rep[2];
    for (int k = 0; k < 2; k++) {
        ckd_rdm_config cfg = {.in_dim = D, .hidden = 32, .bottleneck = 8};
        ckd_error err = {{0}};
        ckd_rdm *r = ckd_rdm_new(&cfg, 5, &err);
        cr_assert_not_null(r, "%s", err.msg);
        ckd_rdm_train_opts o;
        ckd_rdm_train_default_opts(&o);
        o.R = Rs[k];
        o.steps = 1500;
        o.batch = 128;
        o.lr = 3e-3;
        cr_assert_eq(ckd_rdm_train(r, train, n, &o, &err), 0, "%s", err.msg);
        cr_assert_eq(ckd_rdm_evaluate(r, test, NULL, nt, &rep[k], &err), 0, "%s", err.msg);
        cr_log_info("R %g: held-out distortion %.5f (mean-row %.5f), rate %.3f nats", Rs[k], rep[k].distortion, var,
                    rep[k].rate);
        ckd_rdm_free(r);
    }
    cr_expect_gt(rep[1].rate, rep[0].rate + 1.0, "more R, more rate: %.3f vs %.3f nats", rep[1].rate, rep[0].rate);
    cr_expect_lt(rep[1].distortion, 0.5 * rep[0].distortion, "more R, less distortion: %.5f vs %.5f",
                 rep[1].distortion, rep[0].distortion);
    cr_expect_lt(rep[1].distortion, 0.2 * var, "at R 3000 it reconstructs: %.5f vs mean-row %.5f", rep[1].distortion,
                 var);
    free(train);
    free(test);
}

Test(rdm, bad_input)
{
    ckd_error err = {{0}};
    ckd_rdm_config bad = {.in_dim = 0, .hidden = 4};
    cr_assert_null(ckd_rdm_new(&bad, 1, &err));
    cr_assert(strstr(err.msg, "in_dim 0"), "%s", err.msg);
    ckd_rdm_config cfg = {.in_dim = 6, .hidden = 4};
    ckd_rdm *r = ckd_rdm_new(&cfg, 1, &err);
    cr_assert_not_null(r);
    cr_assert_eq(ckd_rdm_config_of(r)->bottleneck, 4, "bottleneck 0 means hidden");
    ckd_ctx *c = ckd_ctx_new(0, 1, NULL);
    ckd_tensor *x = ckd_tensor_zeros(c, 2, (int64_t[]){3, 5});
    ckd_rdm_out o;
    cr_assert_eq(ckd_rdm_forward(r, c, x, NULL, &o), -1);
    cr_assert(strstr(ckd_ctx_error(c), "[3, 5] must be [N, 6]"), "%s", ckd_ctx_error(c));
    ckd_rdm_train_opts t;
    ckd_rdm_train_default_opts(&t);
    t.lr = 0;
    float X[12] = {0};
    cr_assert_eq(ckd_rdm_train(r, X, 2, &t, &err), -1);
    cr_assert(strstr(err.msg, "lr 0"), "%s", err.msg);
    ckd_ctx_free(c);
    ckd_rdm_free(r);
}
