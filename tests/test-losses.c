/* Tests for the loss plugins (losses/): each is evaluated on the recorded
 * inputs of the PyTorch reference (tests/fixtures/kd/kd_losses_seed1, float64
 * math) through ckd_loss_eval_file — the code path of `clipkd loss-eval` — and
 * its loss and every gradient compared; each passes a finite-difference
 * gradient check (the path of `clipkd gradcheck`) with and without
 * projections; parameters are created with the documented names, shapes and
 * initialisation; bad parameters are refused with a clear message. */
#include "config.h"

/* mkdtemp */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clipkd/loss.h"
#include "plugin_test_util.h"
#include "clipkd/safetensors.h"

#define FIXTURE "tests/fixtures/kd/kd_losses_seed1.safetensors"

/* ---- helpers ---------------------------------------------------------------- */

static ckd_registry *reg;

static void open_registry(void) { reg = test_registry_open("losses"); }

static void close_registry(void) { ckd_registry_free(reg); }

static const ckd_plugin *loss_plugin(const char *name) { return test_plugin(reg, CKD_PLUGIN_LOSS, name); }


static json_t *params_of(const char *text) { return test_params(text); }

/* A loss instance from the registry's plugin, owned parameters from seed 7. */
static ckd_loss *make_loss(const char *plugin, const char *params, int64_t s_dim, int64_t t_dim, ckd_error *err)
{
    ckd_loss_dims dims = {s_dim, t_dim, 5};
    json_t *j = params_of(params);
    ckd_loss *l = ckd_loss_new(loss_plugin(plugin), j, "test", &dims, 7, err);
    json_decref(j);
    return l;
}

static double *read_doubles(const ckd_safetensors *st, const char *name, int64_t *n)
{
    return test_read_doubles(st, name, n);
}

/* ‖a − b‖ / ‖b‖ */
static double rel_l2(const double *a, const double *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Runs `clipkd loss-eval`'s library function on the fixture inputs into a
 * fresh temporary file; returns the opened result (tmp is the file, to be
 * removed by the caller). */
static ckd_safetensors *loss_eval(const char *fixture, const char *plugin, const char *params, char *tmp, size_t cap)
{
    const char *base = getenv("TMPDIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/ckd-losses-XXXXXX", base && *base ? base : "/tmp");
    cr_assert(mkdtemp(dir), "mkdtemp %s: %s", dir, strerror(errno));
    snprintf(tmp, cap, "%s/out.safetensors", dir);
    json_t *j = params_of(params);
    ckd_error err = {{0}};
    int rc = ckd_loss_eval_file(loss_plugin(plugin), j, fixture, tmp, &err);
    json_decref(j);
    cr_assert_eq(rc, 0, "loss-eval %s: %s", plugin, err.msg);
    ckd_safetensors *out = ckd_st_open(tmp, &err);
    cr_assert_not_null(out, "%s", err.msg);
    return out;
}

/* Removes the file loss_eval made, then its directory. */
static void remove_tmp(char *tmp)
{
    unlink(tmp);
    char *slash = strrchr(tmp, '/');
    if (slash) {
        *slash = '\0';
        rmdir(tmp);
    }
}

#define LOSS_RTOL 1e-5
#define GRAD_RTOL 1e-4

/* Evaluates `plugin` with `params` and compares with the fixture's `key`:
 * the loss, every gradient the reference recorded, and — for every gradient
 * the plugin wrote that the reference did not record (inputs the loss does
 * not read) — that it is zero. */
static void check_against(const char *fixture_rel, const char *plugin, const char *params, const char *key)
{
    char tmp[4200], name[512], fixture[4200];
    snprintf(fixture, sizeof fixture, "%s", test_srcpath(fixture_rel));
    ckd_error err = {{0}};
    ckd_safetensors *ref = ckd_st_open(fixture, &err);
    cr_assert_not_null(ref, "%s", err.msg);
    ckd_safetensors *out = loss_eval(fixture, plugin, params, tmp, sizeof tmp);

    int64_t n, m;
    snprintf(name, sizeof name, "%s.loss", key);
    double *want = read_doubles(ref, name, &n);
    double *got = read_doubles(out, "loss", &m);
    cr_assert_eq(n, 1);
    cr_assert_eq(m, 1);
    double lerr = fabs(got[0] - want[0]) / fabs(want[0]);
    cr_log_info("%s (%s): loss %.9g, reference %.9g, rel. error %.2e", plugin, key, got[0], want[0], lerr);
    cr_expect_leq(lerr, LOSS_RTOL, "%s: loss %.9g, reference %.9g (rel. error %.2e)", key, got[0], want[0], lerr);
    free(want);
    free(got);

    /* Every reference gradient has a match within GRAD_RTOL. */
    char prefix[256];
    snprintf(prefix, sizeof prefix, "%s.grad.", key);
    int compared = 0;
    double worst = 0;
    const char *worst_name = "";
    for (size_t i = 0; i < ckd_st_count(ref); i++) {
        const ckd_st_tensor *t = ckd_st_at(ref, i);
        if (strncmp(t->name, prefix, strlen(prefix)) != 0)
            continue;
        const char *what = t->name + strlen(prefix);
        snprintf(name, sizeof name, "grad.%s", what);
        cr_assert_not_null(ckd_st_find(out, name), "%s: the plugin wrote no %s", key, name);
        want = read_doubles(ref, t->name, &n);
        got = read_doubles(out, name, &m);
        cr_assert_eq(n, m, "%s: %s has %lld elements, the reference %lld", key, name, (long long)m, (long long)n);
        double e = rel_l2(got, want, n);
        cr_expect_leq(e, GRAD_RTOL, "%s: gradient of %s off by %.2e (relative L2)", key, what, e);
        if (e >= worst) {
            worst = e;
            worst_name = t->name;
        }
        compared++;
        free(want);
        free(got);
    }
    cr_assert_gt(compared, 0, "the fixture has no gradients for %s", key);
    cr_log_info("%s (%s): %d gradients, worst %s rel. L2 error %.2e", plugin, key, compared, worst_name, worst);

    /* Gradients the reference did not record must be zero: the loss does
     * not read those inputs. */
    for (size_t i = 0; i < ckd_st_count(out); i++) {
        const ckd_st_tensor *t = ckd_st_at(out, i);
        if (strncmp(t->name, "grad.", 5) != 0)
            continue;
        snprintf(name, sizeof name, "%s%s", prefix, t->name + 5);
        if (ckd_st_find(ref, name))
            continue;
        got = read_doubles(out, t->name, &m);
        for (int64_t j = 0; j < m; j++)
            cr_expect_eq(got[j], 0.0, "%s: %s[%lld] = %g, but the loss does not read it", key, t->name,
                         (long long)j, got[j]);
        free(got);
    }
    ckd_st_close(out);
    ckd_st_close(ref);
    remove_tmp(tmp);
}

static void check_against_fixture(const char *plugin, const char *params, const char *key)
{
    check_against(FIXTURE, plugin, params, key);
}

/* ---- against the PyTorch reference -------------------------------------------- */

TestSuite(reference, .init = open_registry, .fini = close_registry, .timeout = 60);

Test(reference, clip) { check_against_fixture("clip", NULL, "clip"); }
Test(reference, crd) { check_against_fixture("crd", NULL, "crd"); }
Test(reference, crd_tau2) { check_against_fixture("crd", "{\"tau\": 2}", "crd_tau2"); }
Test(reference, fd) { check_against_fixture("fd", NULL, "fd"); }
Test(reference, gd) { check_against_fixture("gd", NULL, "gd"); }
Test(reference, icl) { check_against_fixture("icl", NULL, "icl"); }
Test(reference, afd) { check_against_fixture("afd", NULL, "afd"); }
/* The default temperature of kd is the reference's τ = 4. */
Test(reference, kd_default_tau) { check_against_fixture("kd", NULL, "kd_tau4"); }
Test(reference, kd_tau4) { check_against_fixture("kd", "{\"tau\": 4}", "kd_tau4"); }
Test(reference, l2) { check_against_fixture("l2", NULL, "l2"); }
Test(reference, vl) { check_against_fixture("vl", NULL, "vl"); }
Test(reference, embed_kd) { check_against_fixture("embed_kd", NULL, "embed_kd"); }
/* cifd against its own float64 reference (tests/fixtures/cifd/make_cifd_fixtures.py):
 * with projections (Ds 16, Dt 24) and without (equal widths), at the
 * defaults and at heavy weights that make the rate and CLIP terms dominate. */
#define CIFD_PROJ "tests/fixtures/cifd/cifd_proj.safetensors"
#define CIFD_SAME "tests/fixtures/cifd/cifd_same.safetensors"
#define CIFD_HEAVY "{\"lambda_cl\": 1, \"lambda_i\": 0.05}"
Test(reference, cifd_projected) { check_against(CIFD_PROJ, "cifd", NULL, "cifd"); }
Test(reference, cifd_projected_heavy) { check_against(CIFD_PROJ, "cifd", CIFD_HEAVY, "cifd_heavy"); }
Test(reference, cifd_same_width) { check_against(CIFD_SAME, "cifd", NULL, "cifd"); }
Test(reference, cifd_same_width_heavy) { check_against(CIFD_SAME, "cifd", CIFD_HEAVY, "cifd_heavy"); }
Test(reference, cifd_without_ibm) { check_against(CIFD_PROJ, "cifd", "{\"ibm\": false}", "cifd_no_ibm"); }
Test(reference, cifd_without_ibm_same_width) { check_against(CIFD_SAME, "cifd", "{\"ibm\": false}", "cifd_no_ibm"); }

/* cifd_cls (the classifier form) against tests/fixtures/cifd/make_cifd_cls_fixtures.py, as loss-eval runs it
 * (not training: no source dropped, no noise added). */
#define CIFD_CLS_PROJ "tests/fixtures/cifd/cifd_cls_proj.safetensors"
#define CIFD_CLS_SAME "tests/fixtures/cifd/cifd_cls_same.safetensors"
#define CIFD_CLS_HEAVY "{\"lambda_kl\": 3, \"w_emb\": 10, \"lambda_i\": 0.05, \"tau\": 4}"
Test(reference, cifd_cls_projected) { check_against(CIFD_CLS_PROJ, "cifd_cls", NULL, "cifd_cls"); }
Test(reference, cifd_cls_projected_heavy) { check_against(CIFD_CLS_PROJ, "cifd_cls", CIFD_CLS_HEAVY, "cifd_cls_heavy"); }
Test(reference, cifd_cls_same_width) { check_against(CIFD_CLS_SAME, "cifd_cls", NULL, "cifd_cls"); }
Test(reference, cifd_cls_same_width_heavy) { check_against(CIFD_CLS_SAME, "cifd_cls", CIFD_CLS_HEAVY, "cifd_cls_heavy"); }
Test(reference, cifd_cls_without_ibm) { check_against(CIFD_CLS_PROJ, "cifd_cls", "{\"ibm\": false}", "cifd_cls_no_ibm"); }

/* The fixture has no `ce` entry: the reference is computed here, in double,
 * from the same inputs: mean_i −log softmax(z_i)[y_i] and its gradient
 * (softmax(z_i) − onehot(y_i)) / N. */
Test(reference, ce)
{
    char tmp[4200];
    ckd_error err = {{0}};
    ckd_safetensors *ref = ckd_st_open(test_srcpath(FIXTURE), &err);
    cr_assert_not_null(ref, "%s", err.msg);
    const ckd_st_tensor *zt = ckd_st_find(ref, "input.s_logits");
    const ckd_st_tensor *yt = ckd_st_find(ref, "input.labels");
    cr_assert(zt && yt && zt->ndim == 2);
    int64_t N = zt->shape[0], K = zt->shape[1], n;
    double *z = read_doubles(ref, "input.s_logits", &n);
    int32_t *y = malloc((size_t)N * sizeof *y);
    cr_assert_eq(ckd_st_to_i32(yt, y, (size_t)N, &err), 0, "%s", err.msg);
    double loss = 0, *grad = calloc((size_t)(N * K), sizeof *grad);
    for (int64_t i = 0; i < N; i++) {
        double mx = -INFINITY, s = 0;
        for (int64_t j = 0; j < K; j++)
            mx = fmax(mx, z[i * K + j]);
        for (int64_t j = 0; j < K; j++)
            s += exp(z[i * K + j] - mx);
        loss += (mx + log(s) - z[i * K + y[i]]) / (double)N;
        for (int64_t j = 0; j < K; j++)
            grad[i * K + j] = (exp(z[i * K + j] - mx) / s - (j == y[i])) / (double)N;
    }
    ckd_safetensors *out = loss_eval(test_srcpath(FIXTURE), "ce", NULL, tmp, sizeof tmp);
    int64_t m;
    double *got = read_doubles(out, "loss", &m);
    double lerr = fabs(got[0] - loss) / loss;
    cr_expect_leq(lerr, LOSS_RTOL, "ce: loss %.9g, reference %.9g", got[0], loss);
    free(got);
    got = read_doubles(out, "grad.s_logits", &m);
    cr_assert_eq(m, N * K);
    double gerr = rel_l2(got, grad, m);
    cr_expect_leq(gerr, GRAD_RTOL, "ce: gradient off by %.2e", gerr);
    cr_log_info("ce: loss rel. error %.2e, gradient rel. L2 error %.2e", lerr, gerr);
    free(got);
    free(grad);
    free(y);
    free(z);
    ckd_st_close(out);
    ckd_st_close(ref);
    remove_tmp(tmp);
}

/* ---- the options without a reference: checked against the reference-checked
 * default through the identity that defines them -------------------------------- */

/* The loss `plugin` with `params` on the fixture's inputs, called directly
 * (arena tensors, owned parameters from input.<name>), with the scalars
 * input.<scalar[i]> replaced by value[i] and t_txt multiplied by t_txt_factor. */
static double eval_direct(const char *plugin, const char *params, const char *const *scalar, const float *value,
                          int n_scalar, float t_txt_factor)
{
    ckd_error err = {{0}};
    ckd_safetensors *st = ckd_st_open(test_srcpath(FIXTURE), &err);
    cr_assert_not_null(st, "%s", err.msg);
    ckd_ctx *c = ckd_ctx_new(0, 1, &err);
    cr_assert_not_null(c, "%s", err.msg);
    const char *const names[] = {"s_img", "s_txt", "t_img", "t_txt", "student_logit_scale", "teacher_logit_scale"};
    ckd_tensor *in[6];
    char key[256];
    for (int i = 0; i < 6; i++) {
        snprintf(key, sizeof key, "input.%s", names[i]);
        const ckd_st_tensor *t = ckd_st_find(st, key);
        cr_assert_not_null(t, "%s", key);
        in[i] = ckd_tensor_new(c, t->ndim, t->shape);
        cr_assert_not_null(in[i]);
        cr_assert_eq(ckd_st_to_f32(t, in[i]->data, (size_t)in[i]->n, &err), 0, "%s", err.msg);
        for (int k = 0; k < n_scalar; k++)
            if (strcmp(scalar[k], names[i]) == 0)
                in[i]->data[0] = value[k];
    }
    for (int64_t k = 0; k < in[3]->n; k++)
        in[3]->data[k] *= t_txt_factor;
    ckd_loss *l = make_loss(plugin, params, in[0]->shape[1], in[2]->shape[1], &err);
    cr_assert_not_null(l, "%s", err.msg);
    for (int i = 0; i < ckd_loss_n_params(l); i++) {
        ckd_tensor *p = ckd_loss_param(l, i);
        snprintf(key, sizeof key, "input.%s", p->name);
        const ckd_st_tensor *t = ckd_st_find(st, key);
        cr_assert_not_null(t, "%s", key);
        cr_assert_eq(ckd_st_to_f32(t, p->data, (size_t)p->n, &err), 0, "%s", err.msg);
        for (int k = 0; k < n_scalar; k++)
            if (strcmp(scalar[k], p->name) == 0)
                p->data[0] = value[k];
    }
    ckd_loss_batch b = {.struct_size = sizeof b, .n = in[0]->shape[0], .s_img = in[0], .s_txt = in[1],
                        .t_img = in[2], .t_txt = in[3], .s_logit_scale = in[4], .t_logit_scale = in[5]};
    ckd_tensor *y = ckd_loss_forward(l, c, &b);
    cr_assert_not_null(y, "%s: %s", plugin, ckd_ctx_error(c));
    double v = y->data[0];
    ckd_loss_free(l);
    ckd_ctx_free(c);
    ckd_st_close(st);
    return v;
}

/* "divide" is the release's λ → 1/λ: the default loss at negated θ_s, θ_t. */
Test(reference, gd_divide_is_multiply_at_inverse_scales)
{
    const char *const scales[] = {"student_logit_scale", "teacher_logit_scale"};
    const float theta[] = {logf(1.0f / 0.07f), logf(100.0f)}, neg[] = {-theta[0], -theta[1]};
    double divide = eval_direct("gd", "{\"scale\": \"divide\"}", scales, theta, 2, 1);
    double multiply = eval_direct("gd", NULL, scales, neg, 2, 1);
    cr_expect_float_eq(divide, multiply, 1e-5 * fabs(multiply), "divide %.9g, multiply at -theta %.9g", divide,
                       multiply);
    /* ... and something else than the default at the same scales. */
    cr_expect_gt(fabs(divide - eval_direct("gd", NULL, scales, theta, 2, 1)), 1e-3);
}

/* "exp" uses exp(c) where the default uses c. */
Test(reference, icl_exp_is_raw_at_exp_scale)
{
    const char *const scale[] = {"icl_scale"};
    const float c = 1.5f, e = expf(c);
    double ex = eval_direct("icl", "{\"scale\": \"exp\"}", scale, &c, 1, 1);
    double raw = eval_direct("icl", NULL, scale, &e, 1, 1);
    cr_expect_float_eq(ex, raw, 1e-5 * fabs(raw), "exp %.9g, raw at exp(c) %.9g", ex, raw);
}

/* vl's τ divides the logits s̃ uᵀ: τ = 2 is τ = 1 with u halved. */
Test(reference, vl_tau_divides_the_logits)
{
    double two = eval_direct("vl", "{\"tau\": 2}", NULL, NULL, 0, 1);
    double halved = eval_direct("vl", NULL, NULL, NULL, 0, 0.5f);
    cr_expect_float_eq(two, halved, 1e-5 * fabs(halved), "tau 2 %.9g, tau 1 on u/2 %.9g", two, halved);
    cr_expect_gt(fabs(two - eval_direct("vl", NULL, NULL, NULL, 0, 1)), 1e-3);
}

/* ---- finite differences ----------------------------------------------------------- */

TestSuite(gradcheck, .init = open_registry, .fini = close_registry, .timeout = 120);

/* `clipkd gradcheck`: random inputs, every student input the loss reads, the
 * student logit scale and every owned parameter. s_dim == t_dim checks the
 * identity-projection path. */
static void gradcheck(const char *plugin, const char *params, int64_t s_dim, int64_t t_dim, double atol)
{
    ckd_loss_check_opts o;
    ckd_loss_check_default_opts(&o);
    o.gc.atol = atol;
    o.s_dim = s_dim;
    o.t_dim = t_dim;
    ckd_gradcheck_report rep;
    ckd_error err = {{0}};
    json_t *j = params_of(params);
    int rc = ckd_loss_gradcheck(loss_plugin(plugin), j, &o, &rep, &err);
    json_decref(j);
    char buf[512];
    cr_assert_geq(rc, 0, "%s: gradcheck could not run: %s", plugin, err.msg);
    cr_assert_gt(rep.checked, 0);
    cr_assert_eq(rc, 0, "%s %s (Ds %lld, Dt %lld): %s", plugin, params ? params : "", (long long)s_dim,
                 (long long)t_dim, ckd_gradcheck_describe(&rep, buf, sizeof buf));
    cr_log_info("%s %s (Ds %lld, Dt %lld): loss %g, %lld elements; %s", plugin, params ? params : "",
                (long long)s_dim, (long long)t_dim, rep.value, (long long)rep.checked,
                ckd_gradcheck_describe(&rep, buf, sizeof buf));
}

/* atol is set per loss from the size of its gradients and the error of a
 * float32 central difference (rounding ≈ |loss| · 6e-8 / step, plus the
 * step's truncation): loose enough for that, tight enough that the small
 * gradients are really compared. */
#define GRADCHECK(name, plugin, params, atol)                                    \
    Test(gradcheck, name) { gradcheck(plugin, params, 16, 24, atol); }           \
    Test(gradcheck, name##_same_width) { gradcheck(plugin, params, 16, 16, atol); }

GRADCHECK(clip, "clip", NULL, 1e-4)
GRADCHECK(crd, "crd", NULL, 1e-4)
GRADCHECK(crd_tau2, "crd", "{\"tau\": 2}", 1e-4)
/* fd's loss and gradients are ≈ 10× smaller than the others'. */
GRADCHECK(fd, "fd", NULL, 1e-5)
/* The loss is ≈ 50 here (teacher gradients at λ_t = 100), so the difference
 * quotient carries noise of ≈ 2e-4. */
GRADCHECK(gd, "gd", NULL, 1e-3)
/* At 1/λ the gradients are ≈ 1e-5 and the loss ≈ 1e-5. */
GRADCHECK(gd_divide, "gd", "{\"scale\": \"divide\"}", 1e-9)
GRADCHECK(icl, "icl", NULL, 1e-4)
GRADCHECK(icl_exp, "icl", "{\"scale\": \"exp\"}", 1e-4)
GRADCHECK(afd, "afd", NULL, 1e-4)
GRADCHECK(kd, "kd", NULL, 1e-4)
GRADCHECK(ce, "ce", NULL, 1e-4)
GRADCHECK(l2, "l2", NULL, 1e-4)
GRADCHECK(vl, "vl", NULL, 1e-4)
GRADCHECK(vl_tau, "vl", "{\"tau\": 0.5}", 1e-4)
GRADCHECK(embed_kd, "embed_kd", NULL, 1e-4)
GRADCHECK(embed_kd_random, "embed_kd", "{\"centroids\": \"random\"}", 1e-4)
GRADCHECK(embed_nce, "embed_nce", NULL, 1e-4)
GRADCHECK(embed_nce_tau, "embed_nce", "{\"tau\": 0.2}", 1e-4)
GRADCHECK(cifd, "cifd", NULL, 1e-4)
/* At heavy weights the loss is ≈ 20 (rate and CLIP terms), so the difference
 * quotient carries noise of ≈ 1e-4. */
GRADCHECK(cifd_heavy, "cifd", CIFD_HEAVY, 5e-4)
GRADCHECK(cifd_no_ibm, "cifd", "{\"ibm\": false}", 1e-4)
/* The loss is ≈ 15-40 (w_emb 100 on the feature terms), so a float32
 * difference quotient resolves gradients only to ≈ 5e-4, as gd's above. */
GRADCHECK(cifd_cls, "cifd_cls", NULL, 1e-3)
GRADCHECK(cifd_cls_heavy, "cifd_cls", CIFD_CLS_HEAVY, 1e-3)
GRADCHECK(cifd_cls_no_ibm, "cifd_cls", "{\"ibm\": false}", 1e-3)

/* ---- descriptors, owned parameters, bad parameters ---------------------------------- */

TestSuite(plugins, .init = open_registry, .fini = close_registry, .timeout = 30);

static const char *const all_losses[] = {"clip", "crd", "fd",  "gd",      "icl", "afd",
                                         "kd",   "ce",  "l2", "vl", "embed_kd", "cifd", "cifd_cls", "embed_nce"};

Test(plugins, descriptors)
{
    for (size_t i = 0; i < sizeof all_losses / sizeof all_losses[0]; i++) {
        const ckd_plugin *p = loss_plugin(all_losses[i]);
        cr_expect_eq(p->desc->kind, CKD_PLUGIN_LOSS);
        cr_expect_str_eq(p->desc->name, all_losses[i]);
        cr_expect(p->desc->summary && *p->desc->summary && !strchr(p->desc->summary, '\n'), "%s: summary",
                  all_losses[i]);
        cr_expect(json_is_object(p->schema), "%s: schema", all_losses[i]);
        cr_expect_neq(p->desc->loss->needs, 0u, "%s: needs", all_losses[i]);
    }
}

/* name, shape and init bound (0: a scale at ln(1/0.07)) of one expected parameter */
typedef struct expect_param {
    const char *name;
    int64_t rows, cols; /* cols 0: 1-D; rows 0: scalar */
    double bound;
} expect_param;

static void expect_params(const char *plugin, int64_t s_dim, int64_t t_dim, const expect_param *want, int n)
{
    ckd_error err = {{0}};
    ckd_loss *l = make_loss(plugin, NULL, s_dim, t_dim, &err);
    cr_assert_not_null(l, "%s", err.msg);
    cr_assert_eq(ckd_loss_n_params(l), n, "%s (Ds %lld, Dt %lld): %d parameters, want %d", plugin,
                 (long long)s_dim, (long long)t_dim, ckd_loss_n_params(l), n);
    for (int i = 0; i < n; i++) {
        ckd_tensor *p = ckd_loss_param(l, i);
        cr_assert_str_eq(p->name, want[i].name, "%s: parameter %d", plugin, i);
        int ndim = want[i].rows == 0 ? 0 : want[i].cols == 0 ? 1 : 2;
        cr_assert_eq(p->ndim, ndim, "%s: %s has %d dims", plugin, p->name, p->ndim);
        if (ndim >= 1)
            cr_assert_eq(p->shape[0], want[i].rows, "%s: %s", plugin, p->name);
        if (ndim == 2)
            cr_assert_eq(p->shape[1], want[i].cols, "%s: %s", plugin, p->name);
        if (want[i].bound == 0) {
            cr_expect_float_eq(p->data[0], logf(1.0f / 0.07f), 1e-6, "%s: %s", plugin, p->name);
            continue;
        }
        /* Uniform in ±bound: inside it, and not all tiny (i.e. not zeros). */
        double mx = 0;
        for (int64_t k = 0; k < p->n; k++) {
            cr_expect_leq(fabs(p->data[k]), want[i].bound, "%s: %s[%lld] = %g", plugin, p->name, (long long)k,
                          (double)p->data[k]);
            mx = fmax(mx, fabs(p->data[k]));
        }
        cr_expect_gt(mx, 0.5 * want[i].bound, "%s: %s is not initialised", plugin, p->name);
    }
    ckd_loss_free(l);
}

#define B(fan_in) (1.0 / sqrt((double)(fan_in)))

Test(plugins, owned_parameters)
{
    const expect_param proj[] = {{"proj_img.weight", 24, 16, B(16)}, {"proj_img.bias", 24, 0, B(16)},
                                 {"proj_txt.weight", 24, 16, B(16)}, {"proj_txt.bias", 24, 0, B(16)}};
    expect_params("fd", 16, 24, proj, 4);
    expect_params("gd", 16, 24, proj, 4);
    expect_params("l2", 16, 24, proj, 2);
    expect_params("vl", 16, 24, proj, 2);
    /* Equal widths: P is the identity and is not created. */
    expect_params("fd", 16, 16, NULL, 0);
    expect_params("l2", 16, 16, NULL, 0);
    expect_params("clip", 16, 24, NULL, 0);
    expect_params("crd", 16, 24, NULL, 0);
    expect_params("kd", 0, 0, NULL, 0);
    expect_params("ce", 0, 0, NULL, 0);

    const expect_param icl[] = {proj[0], proj[1], proj[2], proj[3], {"icl_scale", 0, 0, 0}};
    expect_params("icl", 16, 24, icl, 5);
    expect_params("icl", 16, 16, icl + 4, 1);

    const expect_param afd[] = {proj[0], proj[1], proj[2], proj[3],
                                {"afd_img.weight", 16, 48, B(48)}, {"afd_img.bias", 16, 0, B(48)},
                                {"afd_txt.weight", 16, 48, B(48)}, {"afd_txt.bias", 16, 0, B(48)},
                                {"afd_scale", 0, 0, 0}};
    expect_params("afd", 16, 24, afd, 9);
    const expect_param afd_same[] = {{"afd_img.weight", 16, 32, B(32)}, {"afd_img.bias", 16, 0, B(32)},
                                     {"afd_txt.weight", 16, 32, B(32)}, {"afd_txt.bias", 16, 0, B(32)},
                                     {"afd_scale", 0, 0, 0}};
    expect_params("afd", 16, 16, afd_same, 5);

    /* embed_kd's map takes a Dt-wide centroid to the student width: stored
     * [Dt, Ds] like the reference, and it exists at equal widths too. */
    const expect_param ekd[] = {{"proj_img.weight", 24, 16, B(24)}};
    expect_params("embed_kd", 16, 24, ekd, 1);
    const expect_param ekd_same[] = {{"proj_img.weight", 16, 16, B(16)}};
    expect_params("embed_kd", 16, 16, ekd_same, 1);
}

/* cifd: fd's projections (when the widths differ), then one density per
 * tower at CompressAI's initialisation (test-ops-entropy checks its values). */
Test(plugins, cifd_owned_parameters)
{
    ckd_error err = {{0}};
    const char *const names[] = {"proj_img.weight", "proj_img.bias",    "proj_txt.weight", "proj_txt.bias",
                                 "ibm_img.matrices", "ibm_img.biases",  "ibm_img.factors", "ibm_txt.matrices",
                                 "ibm_txt.biases",   "ibm_txt.factors"};
    const int64_t cols[] = {16, 0, 16, 0, 24, 10, 9, 24, 10, 9};
    for (int same = 0; same < 2; same++) {
        ckd_loss *l = make_loss("cifd", NULL, 16, same ? 16 : 24, &err);
        cr_assert_not_null(l, "%s", err.msg);
        int skip = same ? 4 : 0;
        cr_assert_eq(ckd_loss_n_params(l), 10 - skip);
        for (int i = skip; i < 10; i++) {
            ckd_tensor *p = ckd_loss_param(l, i - skip);
            cr_expect_str_eq(p->name, names[i]);
            cr_expect_eq(p->shape[0], i < 4 ? 24 : 16, "%s", names[i]);
            if (cols[i])
                cr_expect_eq(p->shape[1], cols[i], "%s", names[i]);
        }
        ckd_loss_free(l);
    }
}

/* Creation fails, with a message containing each of `parts`. */
static void expect_refused(const char *plugin, const char *params, int64_t s_dim, int64_t t_dim,
                           const char *const *parts, int n)
{
    ckd_error err = {{0}};
    ckd_loss *l = make_loss(plugin, params, s_dim, t_dim, &err);
    cr_assert_null(l, "%s %s was accepted", plugin, params);
    for (int i = 0; i < n; i++)
        cr_expect(strstr(err.msg, parts[i]), "%s %s: message \"%s\" does not mention \"%s\"", plugin, params,
                  err.msg, parts[i]);
}

Test(plugins, bad_parameters_rejected_by_schema)
{
    expect_refused("gd", "{\"scale\": \"mul\"}", 16, 24, (const char *[]){"scale", "mul"}, 2);
    expect_refused("icl", "{\"scale\": \"log\"}", 16, 24, (const char *[]){"scale", "log"}, 2);
    expect_refused("crd", "{\"tau\": 0}", 16, 24, (const char *[]){"tau"}, 1);
    expect_refused("kd", "{\"tau\": \"warm\"}", 0, 0, (const char *[]){"tau"}, 1);
    expect_refused("crd", "{\"temperature\": 2}", 16, 24, (const char *[]){"temperature"}, 1);
    expect_refused("cifd", "{\"lambda_i\": -1}", 16, 24, (const char *[]){"lambda_i"}, 1);
}

/* A host that skips the schema still gets a clear refusal from create(). */
Test(plugins, bad_parameters_rejected_by_create)
{
    const struct {
        const char *plugin, *params, *msg;
    } cases[] = {
        {"gd", "{\"scale\": \"mul\"}", "gd: parameter scale: \"mul\" is not one of \"multiply\", \"divide\""},
        {"icl", "{\"scale\": \"log\"}", "icl: parameter scale: \"log\" is not one of \"raw\", \"exp\""},
        {"crd", "{\"tau\": -1}", "crd: parameter tau must be a positive number"},
        {"cifd", "{\"lambda_cl\": -0.5}", "cifd: parameter lambda_cl must be a non-negative number"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const ckd_plugin *p = loss_plugin(cases[i].plugin);
        json_t *j = params_of(cases[i].params);
        ckd_params *params = ckd_params_wrap(j);
        json_decref(j);
        ckd_loss_dims dims = {16, 24, 5};
        ckd_rng rng;
        ckd_rng_seed(&rng, 1);
        void *state = (void *)1;
        ckd_error err = {{0}};
        cr_expect_eq(p->desc->loss->create(params, &dims, &rng, &state, &err), -1, "%s accepted %s",
                     cases[i].plugin, cases[i].params);
        cr_expect_null(state);
        cr_expect(strstr(err.msg, cases[i].msg), "message \"%s\", want \"%s\"", err.msg, cases[i].msg);
        ckd_params_free(params);
    }
}

Test(plugins, teacher_losses_need_a_teacher)
{
    const char *const need_teacher[] = {"crd", "fd", "gd", "icl", "afd", "l2", "vl", "embed_kd", "cifd", "embed_nce"};
    for (size_t i = 0; i < sizeof need_teacher / sizeof need_teacher[0]; i++)
        expect_refused(need_teacher[i], NULL, 16, 0, (const char *[]){need_teacher[i], "teacher"}, 2);
}

/* A batch without a field the loss reads fails with a message, not a crash,
 * also when a plugin is called directly (outside ckd_loss_forward). */
Test(plugins, missing_batch_fields)
{
    ckd_error err = {{0}};
    ckd_ctx *c = ckd_ctx_new(0, 1, &err);
    cr_assert_not_null(c, "%s", err.msg);
    for (size_t i = 0; i < sizeof all_losses / sizeof all_losses[0]; i++) {
        const ckd_plugin *p = loss_plugin(all_losses[i]);
        ckd_loss_batch b = {.struct_size = sizeof b, .n = 8};
        ckd_ctx_reset(c);
        ckd_params *params = ckd_params_wrap(NULL);
        ckd_loss_dims dims = {16, 24, 5};
        ckd_rng rng;
        ckd_rng_seed(&rng, 1);
        void *state = NULL;
        cr_assert_eq(p->desc->loss->create(params, &dims, &rng, &state, &err), 0, "%s", err.msg);
        cr_expect_null(p->desc->loss->forward(state, c, &b), "%s", all_losses[i]);
        cr_expect(ckd_ctx_failed(c) && strstr(ckd_ctx_error(c), "the batch has no"), "%s: \"%s\"",
                  all_losses[i], ckd_ctx_error(c));
        p->desc->loss->destroy(state);
        ckd_params_free(params);
    }
    ckd_ctx_free(c);
}

/* loss-eval refuses assistants whose shape does not match the batch and
 * their weights, naming the file and the input. */
Test(plugins, loss_eval_rejects_misshapen_assistants)
{
    const char *base = getenv("TMPDIR");
    char dir[4096], in[4200], out[4200];
    snprintf(dir, sizeof dir, "%s/ckd-assist-XXXXXX", base && *base ? base : "/tmp");
    cr_assert(mkdtemp(dir));
    snprintf(in, sizeof in, "%s/in.safetensors", dir);
    snprintf(out, sizeof out, "%s/out.safetensors", dir);
    static float zeros[3 * 8 * 16];
    ckd_error err = {{0}};
    ckd_st_writer *w = ckd_st_writer_new();
    cr_assert_not_null(w);
    const char *const rows[] = {"input.s_img", "input.s_txt", "input.t_img", "input.t_txt"};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(ckd_st_writer_add_copy(w, rows[i], CKD_DT_F32, 2, (int64_t[]){8, 16}, zeros, &err), 0);
    cr_assert_eq(ckd_st_writer_add_copy(w, "input.a_weight", CKD_DT_F32, 1, (int64_t[]){2}, zeros, &err), 0);
    cr_assert_eq(ckd_st_writer_add_copy(w, "input.a_img", CKD_DT_F32, 3, (int64_t[]){3, 8, 16}, zeros, &err), 0);
    cr_assert_eq(ckd_st_writer_save(w, in, &err), 0, "%s", err.msg);
    ckd_st_writer_free(w);
    json_t *j = params_of(NULL);
    cr_expect_neq(ckd_loss_eval_file(loss_plugin("cifd"), j, in, out, &err), 0);
    cr_expect(strstr(err.msg, "in.safetensors: input.a_img must be [A, N, Dt] with A = the 2 entries of "
                              "input.a_weight and N = the batch's 8 rows"),
              "%s", err.msg);
    json_decref(j);
    unlink(in);
    rmdir(dir);
}

/* ---- cifd_cls's KD dropout ---------------------------------------------------------
 * While training, each guidance source sits out a step with probability p;
 * never at inference. With the bottleneck off and no assistants the loss is
 * either the teacher's terms or 0, so the draws can be counted. */
static ckd_tensor *filled(ckd_ctx *c, int64_t rows, int64_t cols, ckd_rng *r, int normalise)
{
    ckd_tensor *t = ckd_tensor_new(c, 2, (int64_t[]){rows, cols});
    cr_assert_not_null(t);
    for (int64_t i = 0; i < t->n; i++)
        t->data[i] = (float)(normalise ? ckd_rng_uniform(r) : 2 * ckd_rng_normal(r));
    return normalise ? ckd_l2_normalize(c, t, 1e-12f) : t;
}

static int dropped_of(const char *params, int training, int draws, double *value)
{
    ckd_error err = {{0}};
    ckd_loss *l = make_loss("cifd_cls", params, 16, 24, &err);
    cr_assert_not_null(l, "%s", err.msg);
    ckd_ctx *c = ckd_ctx_new(0, 11, &err);
    cr_assert_not_null(c, "%s", err.msg);
    ckd_ctx_set_training(c, training);
    ckd_ctx_set_grad(c, 0);
    ckd_rng r;
    int dropped = 0;
    *value = 0;
    for (int k = 0; k < draws; k++) {
        ckd_ctx_reset(c);
        ckd_rng_seed(&r, 5); /* the same batch every time */
        ckd_loss_batch b = {.struct_size = sizeof b, .n = 8};
        b.s_img = b.s_img_noisy = filled(c, 8, 16, &r, 0);
        b.s_logits = filled(c, 8, 5, &r, 0);
        b.t_img = filled(c, 8, 24, &r, 1);
        b.t_logits = filled(c, 8, 5, &r, 0);
        ckd_tensor *y = ckd_loss_forward(l, c, &b);
        cr_assert_not_null(y);
        if (y->data[0] == 0.0f)
            dropped++;
        else
            *value = y->data[0];
    }
    ckd_ctx_free(c);
    ckd_loss_free(l);
    return dropped;
}

Test(plugins, cifd_cls_kd_dropout)
{
    double v0, v1, v2;
    int d = dropped_of("{\"ibm\": false, \"kd_dropout\": 0.25}", 1, 800, &v0);
    cr_log_info("cifd_cls: teacher dropped in %d of 800 training steps at p = 0.25", d);
    cr_expect(d > 140 && d < 260, "dropped %d of 800 at p = 0.25", d);
    cr_expect_eq(dropped_of("{\"ibm\": false, \"kd_dropout\": 0.25}", 0, 50, &v1), 0, "dropout at inference");
    cr_expect_eq(dropped_of("{\"ibm\": false, \"kd_dropout\": 0}", 1, 50, &v2), 0, "dropout at p = 0");
    cr_expect(v0 > 0 && v0 == v1 && v1 == v2, "a kept source gives the same loss: %g, %g, %g", v0, v1, v2);
}
