/* Shared by the tests that compare ops with PyTorch float64 references
 * stored as safetensors (tests/fixtures/ops-*): one fixture and one context
 * per suite, the case's tensors by "<case>.<what>", inputs loaded as
 * parameters, outputs and gradients compared element by element. */
#ifndef CKD_TEST_FIXTURE_UTIL_H
#define CKD_TEST_FIXTURE_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "clipkd/clipkd.h"
#include "clipkd/safetensors.h"

static ckd_safetensors *ST; /* the suite's fixture */
static ckd_ctx *C;          /* the suite's context */

/* Opens $CKD_TEST_SRCDIR/<rel> into ST and makes C (a suite's .init). */
static inline void fixture_open(const char *rel)
{
    const char *src = getenv("CKD_TEST_SRCDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", src ? src : ".", rel);
    ckd_error err = {{0}};
    ST = ckd_st_open(path, &err);
    cr_assert_not_null(ST, "%s", err.msg);
    C = ckd_ctx_new(0, 1, NULL);
    cr_assert_not_null(C);
}

static inline void fixture_close(void)
{
    ckd_ctx_free(C);
    ckd_st_close(ST);
}

/* The tensor "<cs>.<what>", or NULL. */
static inline const ckd_st_tensor *fixture_find(const char *cs, const char *what)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", cs, what);
    return ckd_st_find(ST, name);
}

/* A parameter (gradient wanted) holding the fixture's F32 tensor; NULL if absent. */
static inline ckd_tensor *fixture_param(const char *cs, const char *what)
{
    const ckd_st_tensor *t = fixture_find(cs, what);
    if (!t)
        return NULL;
    int64_t shape[CKD_MAX_DIMS];
    cr_assert(t->ndim >= 1 && t->ndim <= CKD_MAX_DIMS, "%s.%s: ndim %d", cs, what, t->ndim);
    for (int i = 0; i < t->ndim; i++)
        shape[i] = t->shape[i];
    ckd_tensor *p = ckd_param_new(t->ndim, shape, NULL, NULL);
    cr_assert_not_null(p);
    ckd_error err = {{0}};
    cr_assert_eq(ckd_st_to_f32(t, p->data, (size_t)p->n, &err), 0, "%s", err.msg);
    return p;
}

/* |got − ref| ≤ tol · (rel ? 1 + |ref| : 1) against the F64 reference cs.what. */
static inline void fixture_check(const char *cs, const char *what, const float *got, int64_t n, double tol, int rel)
{
    const ckd_st_tensor *t = fixture_find(cs, what);
    cr_assert_not_null(t, "fixture has no %s.%s", cs, what);
    cr_assert_eq(t->dtype, CKD_DT_F64);
    cr_assert_eq(ckd_st_numel(t), n, "%s.%s: %lld elements, computed %lld", cs, what, (long long)ckd_st_numel(t),
                 (long long)n);
    double *ref = malloc((size_t)n * sizeof(double));
    cr_assert_not_null(ref);
    memcpy(ref, t->data, (size_t)n * sizeof(double)); /* the view may be unaligned */
    double worst = 0;
    int64_t wi = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(got[i] - ref[i]) / (rel ? 1.0 + fabs(ref[i]) : 1.0);
        if (e > worst || isnan(got[i])) {
            worst = isnan(got[i]) ? INFINITY : e;
            wi = i;
        }
    }
    cr_assert(worst <= tol, "%s.%s: element %lld: got %.9g, want %.9g (error %.3g > %.1g)", cs, what,
              (long long)wi, (double)got[wi], ref[wi], worst, tol);
    free(ref);
}

#endif
