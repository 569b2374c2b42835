/* Shared by the tests that load the in-tree plugins: the registry of one
 * build directory, a plugin by name, fixture paths and JSON parameters —
 * each asserting, so a test reads as what it checks. */
#ifndef CKD_TEST_PLUGIN_UTIL_H
#define CKD_TEST_PLUGIN_UTIL_H

#include <stdio.h>
#include <stdlib.h>

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include "clipkd/registry.h"
#include "clipkd/safetensors.h"

/* The plugins as built: $CKD_TEST_BUILDDIR/<subdir>/.libs (e.g. "losses"). */
static inline ckd_registry *test_registry_open(const char *subdir)
{
    const char *b = getenv("CKD_TEST_BUILDDIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s/.libs", b ? b : ".", subdir);
    ckd_error err = {{0}};
    ckd_registry *r = ckd_registry_open(dir, &err);
    cr_assert_not_null(r, "registry: %s", err.msg);
    for (size_t i = 0; i < ckd_registry_rejected(r); i++)
        cr_log_warn("rejected: %s", ckd_registry_rejection(r, i));
    return r;
}

static inline const ckd_plugin *test_plugin(const ckd_registry *r, ckd_plugin_kind kind, const char *name)
{
    ckd_error err = {{0}};
    const ckd_plugin *p = ckd_registry_find(r, kind, name, &err);
    cr_assert_not_null(p, "%s", err.msg);
    return p;
}

/* $CKD_TEST_SRCDIR/<rel>, in a static buffer. */
static inline const char *test_srcpath(const char *rel)
{
    static char buf[4096];
    const char *src = getenv("CKD_TEST_SRCDIR");
    snprintf(buf, sizeof buf, "%s/%s", src ? src : ".", rel);
    return buf;
}

static inline json_t *test_params(const char *text)
{
    const char *t = text ? text : "{}";
    json_error_t jerr;
    json_t *j = json_loads(t, 0, &jerr);
    cr_assert_not_null(j, "bad test params %s: %s", t, jerr.text);
    return j;
}

/* A tensor of a safetensors file as doubles (malloc'd). */
static inline double *test_read_doubles(const ckd_safetensors *st, const char *name, int64_t *n)
{
    const ckd_st_tensor *t = ckd_st_find(st, name);
    cr_assert_not_null(t, "no tensor %s", name);
    *n = ckd_st_numel(t);
    float *f = malloc((size_t)(*n ? *n : 1) * sizeof *f);
    double *d = malloc((size_t)(*n ? *n : 1) * sizeof *d);
    cr_assert(f && d);
    ckd_error err = {{0}};
    cr_assert_eq(ckd_st_to_f32(t, f, (size_t)*n, &err), 0, "%s: %s", name, err.msg);
    for (int64_t i = 0; i < *n; i++)
        d[i] = f[i];
    free(f);
    return d;
}

#endif
