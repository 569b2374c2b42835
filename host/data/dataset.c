/* Datasets: the table of readers, opening a spec, and the accessors every
 * reader shares. */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"
#include "core/json_oom.h"

struct ckd_dataset {
    const ckdd_reader *r;
    void *state;
    size_t n;               /* after "limit" */
    char *source;
    char **classes;
    size_t n_classes;
    char **templates;
    size_t n_templates;
};

static const ckdd_reader *const readers[] = {
    &ckdd_reader_fashion_mnist, &ckdd_reader_csv,       &ckdd_reader_webdataset,
    &ckdd_reader_imagefolder,   &ckdd_reader_imagenet,  &ckdd_reader_retrieval,
    &ckdd_reader_tensors,       &ckdd_reader_concat,
};
#define N_READERS (sizeof readers / sizeof readers[0])

static const char *reader_names[N_READERS + 1];
static pthread_once_t names_once = PTHREAD_ONCE_INIT;

static void fill_names(void)
{
    for (size_t i = 0; i < N_READERS; i++)
        reader_names[i] = readers[i]->name;
}

const char *const *ckd_dataset_readers(size_t *n)
{
    pthread_once(&names_once, fill_names);
    if (n)
        *n = N_READERS;
    return reader_names;
}

static const ckdd_reader *find_reader(const char *name)
{
    for (size_t i = 0; i < N_READERS; i++)
        if (name && !strcmp(readers[i]->name, name))
            return readers[i];
    return NULL;
}

const char *ckd_dataset_schema_text(const char *reader)
{
    const ckdd_reader *r = find_reader(reader);
    return r ? r->schema : NULL;
}

int ckdd_spec_errorf(const ckdd_where *w, const char *key, ckd_error *err, const char *fmt, ...)
{
    char path[512], what[CKD_ERROR_MAX];
    const char *base = w->path ? w->path : "";
    if (key)
        snprintf(path, sizeof path, "%s%s%s", base, *base ? "." : "", key);
    else
        snprintf(path, sizeof path, "%s", base);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return ckd_json_errorf(w->locate, w->user, w->file, path, err, "%s", what);
}

int ckd_dataset_check_spec(json_t *spec, const char *file, const char *json_path,
                           ckd_json_locate_fn locate, void *locate_user, ckd_error *err)
{
    ckdd_where w = {file, json_path ? json_path : "", locate, locate_user};
    if (!json_is_object(spec))
        return ckdd_spec_errorf(&w, NULL, err, "expected a data spec object "
                                               "({\"reader\": …}), got %s",
                                spec ? "another JSON type" : "nothing");
    json_t *rn = json_object_get(spec, "reader");
    if (!json_is_string(rn))
        return ckdd_spec_errorf(&w, rn ? "reader" : NULL, err,
                                rn ? "expected a reader name (a string)"
                                   : "missing required key \"reader\"");
    const ckdd_reader *r = find_reader(json_string_value(rn));
    if (!r) {
        size_t n;
        const char *const *names = ckd_dataset_readers(&n);
        char list[256] = "";
        for (size_t i = 0; i < n; i++) {
            size_t k = strlen(list);
            snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", names[i]);
        }
        const char *near = ckd_suggest(json_string_value(rn), names, n);
        char hint[96] = "";
        if (near)
            snprintf(hint, sizeof hint, " (did you mean \"%s\"?)", near);
        return ckdd_spec_errorf(&w, "reader", err, "unknown reader \"%s\"%s; the readers are %s",
                                json_string_value(rn), hint, list);
    }
    int oom = 0;
    json_t *schema = ckdi_json_loads(r->schema, 0, NULL, &oom);
    if (!schema)
        return ckd_errorf(err, "data reader %s: %s", r->name,
                          oom ? "out of memory reading its schema" : "its built-in schema is not valid JSON");
    int rc = ckd_schema_apply(schema, spec, file, w.path, locate, locate_user, err);
    json_decref(schema);
    if (rc == 0 && r->check)
        rc = r->check(spec, &w, err);
    return rc;
}

/* A string of a spec that starts with "$NAME" (then "/" or the end) starts
 * with that environment variable's value instead, so that recipes can name
 * datasets kept outside the recipe's folder ("$CLIPKD_DATASETS/cc3m/train.csv")
 * and still be shared. An unset variable is an error naming it. */
static int expand_env(json_t *v, const char *where, ckd_error *err)
{
    const char *k;
    size_t i;
    json_t *e;
    json_object_foreach(v, k, e) if (expand_env(e, k, err)) return -1;
    json_array_foreach(v, i, e) if (expand_env(e, where, err)) return -1;
    const char *s = json_string_value(v);
    if (!s || s[0] != '$')
        return 0;
    size_t n = 1;
    while ((s[n] >= 'A' && s[n] <= 'Z') || (s[n] >= 'a' && s[n] <= 'z') || s[n] == '_' ||
           (n > 1 && s[n] >= '0' && s[n] <= '9'))
        n++;
    if (n == 1 || (s[n] && s[n] != '/'))
        return 0;
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)(n - 1), s + 1);
    const char *val = getenv(name);
    if (!val || !*val)
        return ckd_errorf(err, "data spec: %s: \"%s\" names the environment variable %s, which is not set "
                          "(export %s=the folder it stands for)", where, s, name, name);
    char *full = malloc(strlen(val) + strlen(s + n) + 1);
    if (!full)
        return ckd_errorf(err, "data spec: out of memory");
    sprintf(full, "%s%s", val, s + n);
    int rc = json_string_set(v, full) ? ckd_errorf(err, "data spec: out of memory") : 0;
    free(full);
    return rc;
}

ckd_dataset *ckd_dataset_open_fetch(const json_t *spec, const char *base_dir,
                                    const ckd_fetch_opts *fetch, ckd_error *err)
{
    json_t *copy = json_deep_copy(spec);
    if (!copy && spec) {
        ckd_errorf(err, "data spec: out of memory");
        return NULL;
    }
    if (ckd_dataset_check_spec(copy, NULL, "", NULL, NULL, err) < 0 || expand_env(copy, "", err)) {
        json_decref(copy);
        return NULL;
    }
    ckd_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) {
        json_decref(copy);
        ckd_errorf(err, "data spec: out of memory");
        return NULL;
    }
    ds->r = find_reader(json_string_value(json_object_get(copy, "reader")));
    ckdd_env env = {base_dir, fetch};
    ds->state = ds->r->open(ds, copy, &env, err);
    if (!ds->state) {
        ckd_error_prefix(err, "%s reader", ds->r->name);
        json_decref(copy);
        ckd_dataset_close(ds);
        return NULL;
    }
    ds->n = ds->r->size(ds->state);
    json_int_t limit = json_integer_value(json_object_get(copy, "limit"));
    if (limit > 0 && (size_t)limit < ds->n)
        ds->n = (size_t)limit;
    json_decref(copy);
    return ds;
}

ckd_dataset *ckd_dataset_open(const json_t *spec, const char *base_dir, ckd_error *err)
{
    return ckd_dataset_open_fetch(spec, base_dir, NULL, err);
}

static void free_strings(char **s, size_t n)
{
    if (!s)
        return;
    for (size_t i = 0; i < n; i++)
        free(s[i]);
    free(s);
}

void ckd_strings_free(char **s, size_t n)
{
    free_strings(s, n);
}

void ckd_dataset_close(ckd_dataset *ds)
{
    if (!ds)
        return;
    if (ds->state)
        ds->r->close(ds->state);
    free(ds->source);
    free_strings(ds->classes, ds->n_classes);
    free_strings(ds->templates, ds->n_templates);
    free(ds);
}

const char *ckd_dataset_reader(const ckd_dataset *ds)
{
    return ds->r->name;
}

const char *ckd_dataset_source(const ckd_dataset *ds)
{
    return ds->source ? ds->source : ds->r->name;
}

size_t ckd_dataset_size(const ckd_dataset *ds)
{
    return ds->n;
}

int ckd_dataset_get(const ckd_dataset *ds, size_t i, ckd_sample *out, ckd_error *err)
{
    memset(out, 0, sizeof *out);
    out->label = -1;
    if (i >= ds->n)
        return ckd_errorf(err, "%s: sample %zu requested, the dataset has %zu",
                          ckd_dataset_source(ds), i, ds->n);
    if (ds->r->get(ds->state, i, out, err) < 0) {
        ckd_sample_free(out);
        return -1;
    }
    return 0;
}

size_t ckd_dataset_n_classes(const ckd_dataset *ds)
{
    return ds->n_classes;
}

const char *ckd_dataset_class_name(const ckd_dataset *ds, size_t c)
{
    return c < ds->n_classes ? ds->classes[c] : NULL;
}

size_t ckd_dataset_n_templates(const ckd_dataset *ds)
{
    return ds->n_templates;
}

const char *ckd_dataset_template(const ckd_dataset *ds, size_t t)
{
    return t < ds->n_templates ? ds->templates[t] : NULL;
}

void ckd_sample_free(ckd_sample *s)
{
    if (!s)
        return;
    ckd_image_free(&s->image);
    free_strings(s->captions, s->n_captions);
    free(s->pixels);
    free(s->input_ids);
    memset(s, 0, sizeof *s);
    s->label = -1;
}

/* ---- setters ---------------------------------------------------------------- */

static int copy_strings(char ***dst, size_t *dst_n, const char *const *src, size_t n,
                        ckd_error *err)
{
    char **v = calloc(n ? n : 1, sizeof *v);
    if (!v)
        return ckd_errorf(err, "out of memory");
    for (size_t i = 0; i < n; i++) {
        v[i] = strdup(src[i]);
        if (!v[i]) {
            free_strings(v, i);
            return ckd_errorf(err, "out of memory");
        }
    }
    free_strings(*dst, *dst_n);
    *dst = v;
    *dst_n = n;
    return 0;
}

int ckdd_set_source(ckd_dataset *ds, const char *source, ckd_error *err)
{
    char *s = strdup(source);
    if (!s)
        return ckd_errorf(err, "out of memory");
    free(ds->source);
    ds->source = s;
    return 0;
}

int ckdd_set_classes(ckd_dataset *ds, const char *const *names, size_t n, ckd_error *err)
{
    return copy_strings(&ds->classes, &ds->n_classes, names, n, err);
}

int ckdd_set_templates(ckd_dataset *ds, const char *const *t, size_t n, ckd_error *err)
{
    return copy_strings(&ds->templates, &ds->n_templates, t, n, err);
}
