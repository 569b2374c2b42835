/* Plugin discovery and loading: dlopen, descriptor checks, name conflicts. */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipkd/registry.h"
#include "clipkd/schema.h"

/* The smallest descriptor and vtable a host of this ABI major can use: the
 * fields present in the first release of ABI 1. Later minor additions go
 * after these, and a plugin built before them is still accepted. */
#define MIN_DESCRIPTOR_SIZE (offsetof(ckd_plugin_descriptor, model) + sizeof(void *))
#define MIN_LOSS_VTABLE_SIZE (offsetof(ckd_loss_vtable, forward) + sizeof(void *))
#define MIN_MODEL_VTABLE_SIZE (offsetof(ckd_model_vtable, save) + sizeof(void *))

struct ckd_registry {
    ckd_plugin *items;
    void **handles;
    size_t n, cap;
    char **rejections;
    size_t n_rej, cap_rej;
};

const char *ckd_plugin_kind_name(ckd_plugin_kind k)
{
    return k == CKD_PLUGIN_LOSS ? "loss" : k == CKD_PLUGIN_MODEL ? "model" : "unknown";
}

static int reject(ckd_registry *r, const char *msg)
{
    if (r->n_rej == r->cap_rej) {
        size_t cap = r->cap_rej ? 2 * r->cap_rej : 8;
        char **p = realloc(r->rejections, cap * sizeof *p);
        if (!p)
            return -1;
        r->rejections = p;
        r->cap_rej = cap;
    }
    r->rejections[r->n_rej] = strdup(msg);
    return r->rejections[r->n_rej++] ? 0 : -1;
}

/* The checks every descriptor must pass before the host uses it. */
static int check_descriptor(const char *path, const ckd_plugin_descriptor *d, ckd_error *err)
{
    if (!d)
        return ckd_errorf(err, "%s: %s() returned NULL", path, CKD_PLUGIN_ENTRY);
    if (d->abi_major != CKD_PLUGIN_ABI_MAJOR)
        return ckd_errorf(err, "%s: plugin ABI %u, this clipkd speaks ABI %u (rebuild the plugin against this clipkd)",
                          path, d->abi_major, CKD_PLUGIN_ABI_MAJOR);
    if (d->struct_size < MIN_DESCRIPTOR_SIZE)
        return ckd_errorf(err, "%s: descriptor is %u bytes, at least %zu expected (built against other headers?)",
                          path, d->struct_size, (size_t)MIN_DESCRIPTOR_SIZE);
    if (!d->name || !*d->name)
        return ckd_errorf(err, "%s: descriptor has no name", path);
    for (const char *c = d->name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-'))
            return ckd_errorf(err, "%s: plugin name \"%s\" must use a-z, 0-9, '_' and '-' only", path, d->name);
    if (!d->summary || !d->version)
        return ckd_errorf(err, "%s: plugin %s has no %s", path, d->name, d->summary ? "version" : "summary");
    switch (d->kind) {
    case CKD_PLUGIN_LOSS: {
        const ckd_loss_vtable *v = d->loss;
        if (!v)
            return ckd_errorf(err, "%s: loss plugin %s has no loss vtable", path, d->name);
        if (v->struct_size < MIN_LOSS_VTABLE_SIZE)
            return ckd_errorf(err, "%s: loss vtable of %s is %u bytes, at least %zu expected", path, d->name,
                              v->struct_size, (size_t)MIN_LOSS_VTABLE_SIZE);
        if (!v->create || !v->destroy || !v->forward || !v->n_params || !v->param)
            return ckd_errorf(err, "%s: loss plugin %s leaves a vtable function NULL", path, d->name);
        break;
    }
    case CKD_PLUGIN_MODEL: {
        const ckd_model_vtable *v = d->model;
        if (!v)
            return ckd_errorf(err, "%s: model plugin %s has no model vtable", path, d->name);
        if (v->struct_size < MIN_MODEL_VTABLE_SIZE)
            return ckd_errorf(err, "%s: model vtable of %s is %u bytes, at least %zu expected", path, d->name,
                              v->struct_size, (size_t)MIN_MODEL_VTABLE_SIZE);
        /* encode_text and logit_scale may be NULL: an image-only model */
        if (!v->create || !v->destroy || !v->n_params || !v->param || !v->info || !v->encode_image || !v->load ||
            !v->save)
            return ckd_errorf(err, "%s: model plugin %s leaves a vtable function NULL", path, d->name);
        break;
    }
    default:
        return ckd_errorf(err, "%s: unknown plugin kind %d", path, (int)d->kind);
    }
    return 0;
}

int ckd_plugin_check_file(const char *path, const ckd_plugin_descriptor **desc, void **handle, ckd_error *err)
{
    *desc = NULL;
    *handle = NULL;
    dlerror();
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return ckd_errorf(err, "%s: cannot load: %s", path, dlerror());
    ckd_plugin_entry_fn entry;
    *(void **)&entry = dlsym(h, CKD_PLUGIN_ENTRY);
    if (!entry) {
        dlclose(h);
        return ckd_errorf(err, "%s: not a clipkd plugin: no %s symbol", path, CKD_PLUGIN_ENTRY);
    }
    const ckd_plugin_descriptor *d = entry();
    if (check_descriptor(path, d, err)) {
        dlclose(h);
        return -1;
    }
    *desc = d;
    *handle = h;
    return 0;
}

static int has_so_suffix(const char *name)
{
    size_t n = strlen(name);
    return n > 3 && strcmp(name + n - 3, ".so") == 0;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int add_plugin(ckd_registry *r, const char *path)
{
    ckd_error err;
    const ckd_plugin_descriptor *d;
    void *h;
    if (ckd_plugin_check_file(path, &d, &h, &err))
        return reject(r, err.msg);
    for (size_t i = 0; i < r->n; i++) {
        if (r->items[i].desc->kind == d->kind && !strcmp(r->items[i].desc->name, d->name)) {
            /* Earlier directories of the search path win; say which file was ignored. */
            snprintf(err.msg, sizeof err.msg, "%.400s: %s plugin \"%s\" is already provided by %.400s (ignored)", path,
                     ckd_plugin_kind_name(d->kind), d->name, r->items[i].path);
            dlclose(h);
            return reject(r, err.msg);
        }
    }
    json_t *schema = ckd_schema_parse(d->params_schema, path, &err);
    if (!schema) {
        dlclose(h);
        return reject(r, err.msg);
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 16;
        ckd_plugin *it = realloc(r->items, cap * sizeof *it);
        void **hs = it ? realloc(r->handles, cap * sizeof *hs) : NULL;
        if (it)
            r->items = it;
        if (!hs) {
            json_decref(schema);
            dlclose(h);
            return -1;
        }
        r->handles = hs;
        r->cap = cap;
    }
    r->items[r->n] = (ckd_plugin){d, strdup(path), schema};
    r->handles[r->n++] = h;
    return 0;
}

static int scan_dir(ckd_registry *r, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0; /* a missing directory in the search path is not an error */
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!has_so_suffix(e->d_name))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            char **p = realloc(names, cap * sizeof *p);
            if (!p)
                break;
            names = p;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    /* Sorted, so that which of two conflicting files wins never depends on the file system. */
    qsort(names, n, sizeof *names, cmp_names);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (rc == 0 && names[i])
            rc = add_plugin(r, path);
        free(names[i]);
    }
    free(names);
    return rc;
}

static int cmp_plugins(const void *a, const void *b)
{
    const ckd_plugin *x = a, *y = b;
    if (x->desc->kind != y->desc->kind)
        return (int)x->desc->kind - (int)y->desc->kind;
    return strcmp(x->desc->name, y->desc->name);
}

ckd_registry *ckd_registry_open(const char *search_path, ckd_error *err)
{
    ckd_registry *r = calloc(1, sizeof *r);
    if (!r) {
        ckd_errorf(err, "out of memory");
        return NULL;
    }
    char *path = NULL;
    if (search_path) {
        path = strdup(search_path);
    } else {
        const char *env = getenv("CLIPKD_PLUGIN_PATH");
        size_t len = (env ? strlen(env) : 0) + strlen(CKD_PLUGIN_DIR) + 2;
        path = malloc(len);
        if (path)
            snprintf(path, len, "%s%s%s", env && *env ? env : "", env && *env ? ":" : "", CKD_PLUGIN_DIR);
    }
    int rc = path ? 0 : -1;
    char *save = NULL;
    for (char *dir = path ? strtok_r(path, ":", &save) : NULL; dir && rc == 0; dir = strtok_r(NULL, ":", &save))
        rc = scan_dir(r, dir);
    free(path);
    if (rc) {
        ckd_registry_free(r);
        ckd_errorf(err, "out of memory while loading plugins");
        return NULL;
    }
    /* Keep handles paired with items while sorting. */
    for (size_t i = 0; i < r->n; i++)
        for (size_t j = i + 1; j < r->n; j++)
            if (cmp_plugins(&r->items[j], &r->items[i]) < 0) {
                ckd_plugin t = r->items[i];
                r->items[i] = r->items[j];
                r->items[j] = t;
                void *h = r->handles[i];
                r->handles[i] = r->handles[j];
                r->handles[j] = h;
            }
    return r;
}

void ckd_registry_free(ckd_registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        json_decref(r->items[i].schema);
        free((char *)r->items[i].path);
        dlclose(r->handles[i]);
    }
    for (size_t i = 0; i < r->n_rej; i++)
        free(r->rejections[i]);
    free(r->items);
    free(r->handles);
    free(r->rejections);
    free(r);
}

size_t ckd_registry_count(const ckd_registry *r) { return r->n; }
const ckd_plugin *ckd_registry_at(const ckd_registry *r, size_t i) { return i < r->n ? &r->items[i] : NULL; }
size_t ckd_registry_rejected(const ckd_registry *r) { return r->n_rej; }
const char *ckd_registry_rejection(const ckd_registry *r, size_t i) { return i < r->n_rej ? r->rejections[i] : NULL; }

const ckd_plugin *ckd_registry_find(const ckd_registry *r, ckd_plugin_kind kind, const char *name, ckd_error *err)
{
    const char *names[256];
    size_t n = 0;
    char known[1024] = "";
    for (size_t i = 0; i < r->n; i++) {
        if (r->items[i].desc->kind != kind)
            continue;
        if (!strcmp(r->items[i].desc->name, name))
            return &r->items[i];
        if (n < 256)
            names[n++] = r->items[i].desc->name;
        size_t k = strlen(known);
        snprintf(known + k, sizeof known - k, "%s%s", k ? ", " : "", r->items[i].desc->name);
    }
    const char *near = ckd_suggest(name, names, n);
    char hint[128] = "";
    if (near)
        snprintf(hint, sizeof hint, " (did you mean \"%s\"?)", near);
    /* A rejected file whose name matches is the likely explanation. */
    for (size_t i = 0; i < r->n_rej; i++)
        if (strstr(r->rejections[i], name)) {
            ckd_errorf(err, "no %s plugin \"%s\"%s; a plugin file was rejected: %s", ckd_plugin_kind_name(kind),
                       name, hint, r->rejections[i]);
            return NULL;
        }
    ckd_errorf(err, "no %s plugin \"%s\"%s; known %s plugins: %s", ckd_plugin_kind_name(kind), name, hint,
               ckd_plugin_kind_name(kind), n ? known : "none (check CLIPKD_PLUGIN_PATH)");
    return NULL;
}
