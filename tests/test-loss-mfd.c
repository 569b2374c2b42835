/* Tests for the mfd loss plugin (losses/mfd.c). MFD has no PyTorch fixture
 * of its own: it is fd on a masked student image embedding, so with
 * s_img_masked = s_img it must reproduce the fixture's fd entry — loss and
 * every gradient, the image gradient arriving at s_img_masked — through
 * ckd_loss_eval_file (the code path of `clipkd loss-eval`) on an inputs file
 * written here. Then: finite differences (`clipkd gradcheck`'s path), the
 * mask_ratio parameter, and that the unmasked s_img is not read. */
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
#define LOSS_RTOL 1e-5
#define GRAD_RTOL 1e-4

static ckd_registry *reg;

static void open_registry(void) { reg = test_registry_open("losses"); }

static void close_registry(void) { ckd_registry_free(reg); }

TestSuite(mfd, .init = open_registry, .fini = close_registry, .timeout = 120);

static const ckd_plugin *loss_plugin(const char *name) { return test_plugin(reg, CKD_PLUGIN_LOSS, name); }

static const char *fixture_path(void) { return test_srcpath(FIXTURE); }

static json_t *params_of(const char *text) { return test_params(text); }

/* A fresh directory under $TMPDIR (the source tree may be read-only). */
static void make_tmpdir(char *dir, size_t cap)
{
    const char *base = getenv("TMPDIR");
    snprintf(dir, cap, "%s/ckd-mfd-XXXXXX", base && *base ? base : "/tmp");
    cr_assert(mkdtemp(dir), "mkdtemp %s: %s", dir, strerror(errno));
}

/* Writes dir/inputs.safetensors: every input.* tensor of the fixture, plus
 * input.s_img_masked holding input.s_img scaled by masked_scale (1: equal
 * to s_img). Returns the file's path in buf. */
static const char *write_inputs(const char *dir, float masked_scale, char *buf, size_t cap)
{
    ckd_error err = {{0}};
    ckd_safetensors *ref = ckd_st_open(fixture_path(), &err);
    cr_assert_not_null(ref, "%s", err.msg);
    ckd_st_writer *w = ckd_st_writer_new();
    cr_assert_not_null(w);
    for (size_t i = 0; i < ckd_st_count(ref); i++) {
        const ckd_st_tensor *t = ckd_st_at(ref, i);
        if (strncmp(t->name, "input.", 6) == 0)
            cr_assert_eq(ckd_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &err), 0, "%s", err.msg);
    }
    const ckd_st_tensor *s = ckd_st_find(ref, "input.s_img");
    cr_assert_not_null(s);
    int64_t n = ckd_st_numel(s);
    float *masked = malloc((size_t)n * sizeof *masked);
    cr_assert_not_null(masked);
    cr_assert_eq(ckd_st_to_f32(s, masked, (size_t)n, &err), 0, "%s", err.msg);
    for (int64_t i = 0; i < n; i++)
        masked[i] *= masked_scale;
    cr_assert_eq(ckd_st_writer_add(w, "input.s_img_masked", CKD_DT_F32, s->ndim, s->shape, masked, &err), 0, "%s",
                 err.msg);
    snprintf(buf, cap, "%s/inputs.safetensors", dir);
    cr_assert_eq(ckd_st_writer_save(w, buf, &err), 0, "%s", err.msg);
    ckd_st_writer_free(w);
    free(masked);
    ckd_st_close(ref);
    return buf;
}

/* ckd_loss_eval_file(plugin, params, inputs) into dir/<plugin>.safetensors, opened. */
static ckd_safetensors *loss_eval(const char *plugin, const char *params, const char *inputs, const char *dir)
{
    char out[4200];
    snprintf(out, sizeof out, "%s/%s.safetensors", dir, plugin);
    json_t *j = params_of(params);
    ckd_error err = {{0}};
    int rc = ckd_loss_eval_file(loss_plugin(plugin), j, inputs, out, &err);
    json_decref(j);
    cr_assert_eq(rc, 0, "loss-eval %s: %s", plugin, err.msg);
    ckd_safetensors *st = ckd_st_open(out, &err);
    cr_assert_not_null(st, "%s", err.msg);
    return st;
}

static double *read_doubles(const ckd_safetensors *st, const char *name, int64_t *n)
{
    return test_read_doubles(st, name, n);
}

static double scalar_of(const ckd_safetensors *st, const char *name)
{
    int64_t n;
    double *d = read_doubles(st, name, &n);
    cr_assert_eq(n, 1, "%s is not a scalar", name);
    double v = d[0];
    free(d);
    return v;
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

static int all_zero(const ckd_safetensors *st, const char *name)
{
    int64_t n;
    double *d = read_doubles(st, name, &n);
    int zero = 1;
    for (int64_t i = 0; i < n; i++)
        zero &= d[i] == 0.0;
    free(d);
    return zero;
}

static void remove_dir(const char *dir, const char *const *files, int n)
{
    char path[4300];
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* ---- unmasked, mfd is fd ------------------------------------------------------ */

Test(mfd, equals_fd_reference_when_unmasked)
{
    char dir[4096], inputs[4200], name[512];
    make_tmpdir(dir, sizeof dir);
    write_inputs(dir, 1.0f, inputs, sizeof inputs);
    ckd_error err = {{0}};
    ckd_safetensors *ref = ckd_st_open(fixture_path(), &err);
    cr_assert_not_null(ref, "%s", err.msg);
    ckd_safetensors *out = loss_eval("mfd", NULL, inputs, dir);

    double want = scalar_of(ref, "fd.loss"), got = scalar_of(out, "loss");
    double lerr = fabs(got - want) / fabs(want);
    cr_log_info("mfd unmasked: loss %.9g, fd reference %.9g, rel. error %.2e", got, want, lerr);
    cr_expect_leq(lerr, LOSS_RTOL, "mfd loss %.9g, fd reference %.9g (rel. error %.2e)", got, want, lerr);

    /* Every fd gradient of the reference; the image one is s_img_masked's here. */
    int compared = 0;
    for (size_t i = 0; i < ckd_st_count(ref); i++) {
        const ckd_st_tensor *t = ckd_st_at(ref, i);
        if (strncmp(t->name, "fd.grad.", 8) != 0)
            continue;
        const char *what = t->name + 8;
        snprintf(name, sizeof name, "grad.%s", strcmp(what, "s_img") == 0 ? "s_img_masked" : what);
        cr_assert_not_null(ckd_st_find(out, name), "mfd wrote no %s", name);
        int64_t n, m;
        double *w = read_doubles(ref, t->name, &n), *g = read_doubles(out, name, &m);
        cr_assert_eq(n, m, "%s: %lld elements, the reference %lld", name, (long long)m, (long long)n);
        double e = rel_l2(g, w, n);
        cr_expect_leq(e, GRAD_RTOL, "gradient %s off by %.2e (relative L2) from the reference's %s", name, e,
                      t->name);
        cr_log_info("mfd unmasked: %s vs %s: rel. L2 error %.2e", name, t->name, e);
        free(w);
        free(g);
        compared++;
    }
    cr_expect_geq(compared, 2, "the fixture has %d fd gradients", compared);
    /* The unmasked embedding is in the file but mfd must not read it. */
    cr_expect(all_zero(out, "grad.s_img"), "mfd has a gradient for the unmasked s_img");
    ckd_st_close(out);
    ckd_st_close(ref);
    remove_dir(dir, (const char *[]){"inputs.safetensors", "mfd.safetensors"}, 2);
}

/* The same through the plugins themselves, fd and mfd on one inputs file,
 * with a mask_ratio set: the ratio tells the host how to mask and does not
 * change the formula. */
Test(mfd, equals_fd_plugin_at_any_ratio)
{
    char dir[4096], inputs[4200];
    make_tmpdir(dir, sizeof dir);
    write_inputs(dir, 1.0f, inputs, sizeof inputs);
    ckd_safetensors *fd = loss_eval("fd", NULL, inputs, dir);
    ckd_safetensors *mfd = loss_eval("mfd", "{\"mask_ratio\": 0.5}", inputs, dir);
    double a = scalar_of(fd, "loss"), b = scalar_of(mfd, "loss");
    cr_expect_float_eq(b, a, 1e-6 * fabs(a), "mfd %.9g, fd %.9g", b, a);
    int64_t n, m;
    double *g_fd = read_doubles(fd, "grad.s_img", &n), *g_mfd = read_doubles(mfd, "grad.s_img_masked", &m);
    cr_assert_eq(n, m);
    cr_expect_leq(rel_l2(g_mfd, g_fd, n), 1e-6, "image gradients differ");
    free(g_fd);
    free(g_mfd);
    ckd_st_close(fd);
    ckd_st_close(mfd);
    remove_dir(dir, (const char *[]){"inputs.safetensors", "fd.safetensors", "mfd.safetensors"}, 3);
}

/* A different masked embedding changes the loss (the plugin reads
 * s_img_masked, not s_img) and s_img still gets no gradient. */
Test(mfd, reads_the_masked_embedding)
{
    char dir[4096], inputs[4200];
    make_tmpdir(dir, sizeof dir);
    ckd_error err = {{0}};
    ckd_safetensors *ref = ckd_st_open(fixture_path(), &err);
    cr_assert_not_null(ref, "%s", err.msg);
    write_inputs(dir, -1.0f, inputs, sizeof inputs);
    ckd_safetensors *out = loss_eval("mfd", NULL, inputs, dir);
    double fd = scalar_of(ref, "fd.loss"), got = scalar_of(out, "loss");
    cr_expect_gt(fabs(got - fd), 1e-3 * fabs(fd), "mfd on -s_img %.9g equals fd %.9g", got, fd);
    cr_expect(all_zero(out, "grad.s_img"), "mfd has a gradient for the unmasked s_img");
    cr_expect_not(all_zero(out, "grad.s_img_masked"), "no gradient reaches s_img_masked");
    ckd_st_close(out);
    ckd_st_close(ref);
    remove_dir(dir, (const char *[]){"inputs.safetensors", "mfd.safetensors"}, 2);
}

/* ---- finite differences --------------------------------------------------------- */

static void gradcheck(const char *params, int64_t s_dim, int64_t t_dim)
{
    ckd_loss_check_opts o;
    ckd_loss_check_default_opts(&o);
    /* fd's loss and gradients are ≈ 10× smaller than most losses' (as in test-losses). */
    o.gc.atol = 1e-5;
    o.s_dim = s_dim;
    o.t_dim = t_dim;
    ckd_gradcheck_report rep;
    ckd_error err = {{0}};
    json_t *j = params_of(params);
    int rc = ckd_loss_gradcheck(loss_plugin("mfd"), j, &o, &rep, &err);
    json_decref(j);
    char buf[512];
    cr_assert_geq(rc, 0, "gradcheck could not run: %s", err.msg);
    cr_assert_gt(rep.checked, 0);
    cr_assert_eq(rc, 0, "mfd (Ds %lld, Dt %lld): %s", (long long)s_dim, (long long)t_dim,
                 ckd_gradcheck_describe(&rep, buf, sizeof buf));
    cr_log_info("mfd (Ds %lld, Dt %lld): loss %g, %lld elements; %s", (long long)s_dim, (long long)t_dim, rep.value,
                (long long)rep.checked, ckd_gradcheck_describe(&rep, buf, sizeof buf));
}

Test(mfd, gradcheck_projected) { gradcheck(NULL, 16, 24); }
Test(mfd, gradcheck_same_width) { gradcheck(NULL, 16, 16); }
Test(mfd, gradcheck_ratio_set) { gradcheck("{\"mask_ratio\": 0.5}", 16, 24); }

/* ---- the descriptor and mask_ratio ----------------------------------------------- */

Test(mfd, descriptor_and_parameters)
{
    const ckd_plugin *p = loss_plugin("mfd");
    uint32_t needs = p->desc->loss->needs;
    cr_expect(needs & CKD_NEED_S_IMG_MASKED);
    cr_expect_not(needs & CKD_NEED_S_IMG, "mfd must not ask for the unmasked s_img");
    cr_expect_eq(needs & (CKD_NEED_S_TXT | CKD_NEED_T_IMG | CKD_NEED_T_TXT),
                 CKD_NEED_S_TXT | CKD_NEED_T_IMG | CKD_NEED_T_TXT);

    /* The default the host reads to mask. */
    json_t *j = params_of(NULL);
    ckd_error err = {{0}};
    ckd_params *params = ckd_params_for(p, j, "test", &err);
    json_decref(j);
    cr_assert_not_null(params, "%s", err.msg);
    cr_expect_float_eq(ckd_params_number(params, "mask_ratio", -1), 0.75, 1e-12);
    ckd_params_free(params);

    /* fd's projections: same names and shapes; none at equal widths. */
    const char *const names[] = {"proj_img.weight", "proj_img.bias", "proj_txt.weight", "proj_txt.bias"};
    ckd_loss_dims dims = {16, 24, 5};
    j = params_of(NULL);
    ckd_loss *l = ckd_loss_new(p, j, "test", &dims, 7, &err);
    cr_assert_not_null(l, "%s", err.msg);
    cr_assert_eq(ckd_loss_n_params(l), 4);
    for (int i = 0; i < 4; i++) {
        ckd_tensor *t = ckd_loss_param(l, i);
        cr_expect_str_eq(t->name, names[i]);
        cr_expect_eq(t->shape[0], 24, "%s", t->name);
        if (t->ndim == 2)
            cr_expect_eq(t->shape[1], 16, "%s", t->name);
    }
    ckd_loss_free(l);
    dims.t_dim = 16;
    l = ckd_loss_new(p, j, "test", &dims, 7, &err);
    cr_assert_not_null(l, "%s", err.msg);
    cr_expect_eq(ckd_loss_n_params(l), 0);
    ckd_loss_free(l);
    json_decref(j);
}

static void expect_refused(const char *params, int64_t t_dim, const char *part)
{
    ckd_loss_dims dims = {16, t_dim, 5};
    ckd_error err = {{0}};
    json_t *j = params_of(params);
    ckd_loss *l = ckd_loss_new(loss_plugin("mfd"), j, "test", &dims, 7, &err);
    json_decref(j);
    cr_expect_null(l, "mfd %s accepted", params);
    ckd_loss_free(l);
    cr_expect(strstr(err.msg, part), "message \"%s\" does not mention \"%s\"", err.msg, part);
}

Test(mfd, bad_parameters)
{
    expect_refused("{\"mask_ratio\": 1}", 24, "mask_ratio must be in [0, 1)");  /* by create() */
    expect_refused("{\"mask_ratio\": -0.1}", 24, "mask_ratio");                /* by the schema */
    expect_refused("{\"mask_ratio\": \"most\"}", 24, "mask_ratio");
    expect_refused("{\"mask\": 0.5}", 24, "mask");
    expect_refused(NULL, 0, "teacher");
}

/* A batch without the masked embedding is refused by the host (needs) and,
 * called directly, by the plugin — with a message, not a crash. */
Test(mfd, missing_masked_embedding)
{
    ckd_error err = {{0}};
    ckd_ctx *c = ckd_ctx_new(0, 1, &err);
    cr_assert_not_null(c, "%s", err.msg);
    ckd_loss_dims dims = {4, 4, 0};
    json_t *j = params_of(NULL);
    ckd_loss *l = ckd_loss_new(loss_plugin("mfd"), j, "test", &dims, 7, &err);
    json_decref(j);
    cr_assert_not_null(l, "%s", err.msg);
    ckd_tensor *x = ckd_tensor_zeros(c, 2, (int64_t[]){2, 4});
    ckd_loss_batch b = {.struct_size = sizeof b, .n = 2, .s_img = x, .s_txt = x, .t_img = x, .t_txt = x};
    cr_expect_null(ckd_loss_forward(l, c, &b));
    cr_expect(strstr(ckd_ctx_error(c), "s_img_masked"), "\"%s\"", ckd_ctx_error(c));
    ckd_ctx_reset(c);
    b.s_img = b.s_txt = b.t_img = b.t_txt = ckd_tensor_zeros(c, 2, (int64_t[]){2, 4});

    const ckd_plugin *p = loss_plugin("mfd");
    ckd_params *params = ckd_params_wrap(NULL);
    ckd_rng rng;
    ckd_rng_seed(&rng, 1);
    void *state = NULL;
    cr_assert_eq(p->desc->loss->create(params, &dims, &rng, &state, &err), 0, "%s", err.msg);
    cr_expect_null(p->desc->loss->forward(state, c, &b));
    cr_expect(strstr(ckd_ctx_error(c), "the batch has no s_img_masked"), "\"%s\"", ckd_ctx_error(c));
    p->desc->loss->destroy(state);
    ckd_params_free(params);
    ckd_loss_free(l);
    ckd_ctx_free(c);
}
