/* Helpers shared by the CLIP model tests: the in-tree registry, fixture
 * paths, reference tensors, comparisons. Header-only (each test program
 * includes it once). */
#ifndef CKD_CLIP_TEST_UTIL_H
#define CKD_CLIP_TEST_UTIL_H

#include <criterion/criterion.h>

#include "plugin_test_util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "clipkd/model.h"
#include "clipkd/safetensors.h"

static ckd_registry *reg;

static inline void open_registry(void) { reg = test_registry_open("models"); }

static inline void close_registry(void)
{
    ckd_registry_free(reg);
    reg = NULL;
}

/* $CKD_TEST_SRCDIR/tests/fixtures/<rel>, in a rotating set of buffers. */
static const char *fixture(const char *rel)
{
    static char bufs[4][4096];
    static int k;
    char *b = bufs[k++ % 4];
    const char *src = getenv("CKD_TEST_SRCDIR");
    snprintf(b, 4096, "%s/tests/fixtures/%s", src ? src : ".", rel);
    return b;
}

static inline ckd_model *load_fixture_model(const char *name)
{
    char rel[256];
    snprintf(rel, sizeof rel, "hf-clip/%s", name);
    ckd_error err = {{0}};
    ckd_model *m = ckd_model_from_pretrained(reg, fixture(rel), &err);
    cr_assert_not_null(m, "%s", err.msg);
    return m;
}

/* A reference tensor converted to float (malloc'd), with its shape. */
static float *ref_f32(const ckd_safetensors *st, const char *name, const ckd_st_tensor **out)
{
    const ckd_st_tensor *t = ckd_st_find(st, name);
    cr_assert_not_null(t, "reference tensor %s missing", name);
    size_t n = (size_t)ckd_st_numel(t);
    float *buf = malloc((n ? n : 1) * sizeof *buf);
    ckd_error err = {{0}};
    cr_assert_eq(ckd_st_to_f32(t, buf, n, &err), 0, "%s", err.msg);
    if (out)
        *out = t;
    return buf;
}

/* Largest |a − ref| over a tensor whose shape must match the reference's. */
static inline double max_abs_vs_ref(const ckd_safetensors *st, const char *name, const ckd_tensor *a)
{
    cr_assert_not_null(a, "no tensor to compare with %s", name);
    const ckd_st_tensor *t;
    float *r = ref_f32(st, name, &t);
    cr_assert_eq((int64_t)ckd_st_numel(t), a->n, "%s: %lld elements, reference %lld", name, (long long)a->n,
                 (long long)ckd_st_numel(t));
    for (int i = 0; i < t->ndim; i++)
        cr_assert_eq(t->shape[i], a->shape[i], "%s: dim %d is %lld, reference %lld", name, i,
                     (long long)a->shape[i], (long long)t->shape[i]);
    double worst = 0;
    for (int64_t i = 0; i < a->n; i++) {
        double d = fabs((double)a->data[i] - (double)r[i]);
        if (!(d <= worst))
            worst = d;
    }
    free(r);
    return worst;
}

static inline double l2(const float *a, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)a[i] * a[i];
    return sqrt(s);
}

static inline double rel_l2(const float *a, const float *ref, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* A gradient against PyTorch's: within 1e-3 relative L2, except where the
 * reference vanishes. The key biases get an exactly zero gradient (softmax
 * ignores a per-row constant); float64 leaves ~1e-17, float32 ~1e-9, so
 * those are compared absolutely. The worst errors (and the name of the
 * worst relative one) are tracked for the report. */
static inline void expect_grad_matches(const char *key, const float *got, const float *ref, int64_t n,
                                       double *worst_rel, char *worst_name, size_t cap, double *worst_zero)
{
    if (l2(ref, n) < 1e-10) {
        double a = l2(got, n);
        cr_expect_leq(a, 1e-6, "%s: gradient should vanish, has L2 norm %g", key, a);
        *worst_zero = fmax(*worst_zero, a);
        return;
    }
    double e = rel_l2(got, ref, n);
    cr_expect_leq(e, 1e-3, "%s: gradient relative L2 error %g", key, e);
    if (e > *worst_rel)
        *worst_rel = e, snprintf(worst_name, cap, "%s", key);
}

/* Runs the built clipkd (ARGS: its subcommand and arguments) with the
 * in-tree plugins and vocabulary; returns the exit status, stderr in msg. */
static inline int test_run_clipkd(const char *args, char *msg, size_t cap)
{
    const char *b = getenv("CKD_TEST_BUILDDIR"), *s = getenv("CKD_TEST_SRCDIR");
    char cmd[9000];
    snprintf(cmd, sizeof cmd,
             "CLIPKD_PLUGIN_PATH='%s/models/.libs' CLIPKD_DATA_DIR='%s/models/clip' '%s/clipkd' %s 2>&1 >/dev/null",
             b ? b : ".", s ? s : ".", b ? b : ".", args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(msg, 1, cap - 1, p);
    msg[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static inline ckd_safetensors *open_st(const char *path)
{
    ckd_error err = {{0}};
    ckd_safetensors *st = ckd_st_open(path, &err);
    cr_assert_not_null(st, "%s", err.msg);
    return st;
}

static inline ckd_ctx *new_ctx(void)
{
    ckd_error err = {{0}};
    ckd_ctx *c = ckd_ctx_new(0, 7, &err);
    cr_assert_not_null(c, "%s", err.msg);
    return c;
}

#endif
