/* The concat reader: several datasets read as one, in order (CLIP-KD trains
 * on CC3M and CC12M together, two tab-separated tables with their own image
 * roots). Each part is an ordinary data spec, opened and checked as such. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"

typedef struct concat {
    ckd_dataset **parts;
    size_t n;
    size_t *start; /* first index of each part; start[n] is the total */
} concat;

static int concat_check(const json_t *spec, const ckdd_where *w, ckd_error *err)
{
    const json_t *parts = json_object_get(spec, "parts"), *p;
    size_t i;
    if (json_array_size(parts) == 0)
        return ckdd_spec_errorf(w, "parts", err, "expected at least one data spec, got none");
    json_array_foreach(parts, i, p)
    {
        char path[512];
        snprintf(path, sizeof path, "%s%sparts[%zu]", w->path ? w->path : "", w->path && *w->path ? "." : "", i);
        if (ckd_dataset_check_spec((json_t *)p, w->file, path, w->locate, w->user, err))
            return -1;
    }
    return 0;
}

static void concat_close(void *state)
{
    concat *c = state;
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        ckd_dataset_close(c->parts[i]);
    free(c->parts);
    free(c->start);
    free(c);
}

/* The first part that has a list (class names, templates) lends it to the
 * whole: count and item are the list's accessors, set stores it. */
static int lend(ckd_dataset *ds, const concat *c, size_t (*count)(const ckd_dataset *),
                const char *(*item)(const ckd_dataset *, size_t),
                int (*set)(ckd_dataset *, const char *const *, size_t, ckd_error *), ckd_error *err)
{
    for (size_t i = 0; i < c->n; i++) {
        size_t k = count(c->parts[i]);
        if (!k)
            continue;
        const char **v = malloc(k * sizeof *v);
        if (!v)
            return ckd_errorf(err, "out of memory");
        for (size_t j = 0; j < k; j++)
            v[j] = item(c->parts[i], j);
        int rc = set(ds, v, k, err);
        free(v);
        return rc;
    }
    return 0;
}

static int lend_names(ckd_dataset *ds, const concat *c, ckd_error *err)
{
    return lend(ds, c, ckd_dataset_n_classes, ckd_dataset_class_name, ckdd_set_classes, err) ||
                   lend(ds, c, ckd_dataset_n_templates, ckd_dataset_template, ckdd_set_templates, err)
               ? -1
               : 0;
}

static void *concat_open(ckd_dataset *ds, const json_t *spec, const ckdd_env *env, ckd_error *err)
{
    const json_t *parts = json_object_get(spec, "parts");
    concat *c = calloc(1, sizeof *c);
    size_t n = json_array_size(parts);
    if (!c || !(c->parts = calloc(n, sizeof *c->parts)) || !(c->start = calloc(n + 1, sizeof *c->start))) {
        concat_close(c);
        ckd_errorf(err, "out of memory");
        return NULL;
    }
    char source[1024] = "";
    size_t len = 0;
    for (; c->n < n; c->n++) {
        c->parts[c->n] = ckd_dataset_open_fetch(json_array_get(parts, c->n), env->base_dir, env->fetch, err);
        if (!c->parts[c->n]) {
            ckd_error_prefix(err, "parts[%zu]", c->n);
            concat_close(c);
            return NULL;
        }
        c->start[c->n + 1] = c->start[c->n] + ckd_dataset_size(c->parts[c->n]);
        if (len < sizeof source)
            len += (size_t)snprintf(source + len, sizeof source - len, "%s%s", c->n ? " + " : "",
                                    ckd_dataset_source(c->parts[c->n]));
    }
    if (ckdd_set_source(ds, source, err) || lend_names(ds, c, err)) {
        concat_close(c);
        return NULL;
    }
    return c;
}

static size_t concat_size(const void *state)
{
    const concat *c = state;
    return c->start[c->n];
}

static int concat_get(const void *state, size_t i, ckd_sample *out, ckd_error *err)
{
    const concat *c = state;
    size_t lo = 0, hi = c->n; /* the part p with start[p] <= i < start[p+1] */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (c->start[mid] <= i)
            lo = mid;
        else
            hi = mid;
    }
    return ckd_dataset_get(c->parts[lo], i - c->start[lo], out, err);
}

static const char concat_schema[] =
    "{\"type\": \"object\", \"required\": [\"parts\"], \"properties\": {" CKDD_SCHEMA_COMMON ","
    " \"parts\": {\"type\": \"array\", \"items\": {\"type\": \"object\", \"additionalProperties\": true},"
    "  \"description\": \"data specs read one after the other\"}}}";

const ckdd_reader ckdd_reader_concat = {
    "concat", concat_schema, concat_check, concat_open, concat_size, concat_get, concat_close,
};
