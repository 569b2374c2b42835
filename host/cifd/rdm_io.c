/* A rate-distortion module as a directory: model.safetensors (its
 * parameters under their names) and config.json ({"rdm": {in_dim, hidden,
 * bottleneck, n_classes, out_relu, and what the caller adds}}), the layout
 * of an "rdm" run's final/. */
#include "config.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "clipkd/ops.h"
#include "clipkd/rdm.h"
#include "clipkd/safetensors.h"
#include "core/json_oom.h"

int ckd_rdm_save(const ckd_rdm *r, const char *dir, const json_t *extra, ckd_error *err)
{
    char path[4096];
    ckd_st_writer *w = ckd_st_writer_new();
    if (!w)
        return ckd_errorf(err, "rdm: out of memory");
    int rc = 0;
    for (int i = 0; i < ckd_rdm_n_params(r) && !rc; i++) {
        ckd_tensor *p = ckd_rdm_param(r, i);
        rc = ckd_st_writer_add_copy(w, p->name, CKD_DT_F32, p->ndim, p->shape, p->data, err);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!rc)
        rc = ckd_st_writer_save(w, path, err);
    ckd_st_writer_free(w);
    if (rc)
        return -1;
    const ckd_rdm_config *c = ckd_rdm_config_of(r);
    json_t *cfg = json_pack("{s:I, s:I, s:I, s:I, s:b}", "in_dim", (json_int_t)c->in_dim, "hidden",
                            (json_int_t)c->hidden, "bottleneck", (json_int_t)c->bottleneck, "n_classes",
                            (json_int_t)c->n_classes, "out_relu", c->out_relu);
    if (extra)
        json_object_update(cfg, (json_t *)extra);
    json_t *doc = json_pack("{s:o}", "rdm", cfg);
    snprintf(path, sizeof path, "%s/config.json", dir);
    rc = json_dump_file(doc, path, JSON_INDENT(2) | JSON_SORT_KEYS) ? ckd_errorf(err, "%s: cannot write", path) : 0;
    json_decref(doc);
    return rc;
}

/* config.json's rdm.<key> as a non-negative integer, or -1 with err set. */
static int64_t config_int(const json_t *rdm, const char *key, const char *path, ckd_error *err)
{
    const json_t *v = json_object_get(rdm, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        ckd_errorf(err, "%s: rdm.%s: expected a non-negative integer", path, key);
        return -1;
    }
    return (int64_t)json_integer_value(v);
}

ckd_rdm *ckd_rdm_load(const char *dir, json_t **config_out, ckd_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t je;
    json_t *doc = ckdi_json_load_file(path, 0, &je, NULL);
    if (!doc) {
        ckd_errorf(err, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        return NULL;
    }
    const json_t *rdm = json_object_get(doc, "rdm");
    ckd_rdm_config cfg = {0};
    ckd_rdm *r = NULL;
    if (!json_is_object(rdm)) {
        ckd_errorf(err, "%s: expected an object \"rdm\" (the configuration of a rate-distortion module)", path);
        goto out;
    }
    if ((cfg.in_dim = config_int(rdm, "in_dim", path, err)) < 0 ||
        (cfg.hidden = config_int(rdm, "hidden", path, err)) < 0 ||
        (cfg.bottleneck = config_int(rdm, "bottleneck", path, err)) < 0 ||
        (cfg.n_classes = config_int(rdm, "n_classes", path, err)) < 0)
        goto out;
    cfg.out_relu = json_is_true(json_object_get(rdm, "out_relu"));
    /* The widths are the file's to state, the memory is ours: a module is
     * only built when model.safetensors can hold its weights (2 bytes per
     * value at least), so a config.json of absurd widths costs nothing. */
    double b = (double)(cfg.bottleneck ? cfg.bottleneck : cfg.hidden);
    double values = (double)cfg.hidden * (double)cfg.in_dim + (double)cfg.hidden + b * (double)cfg.hidden + b +
                    (double)cfg.in_dim * b + (double)cfg.in_dim + b * (CKD_FD_MATRIX_SIZE + CKD_FD_BIAS_SIZE + CKD_FD_FACTOR_SIZE) + (double)cfg.n_classes * (double)cfg.in_dim;
    char wpath[4096];
    struct stat ws;
    snprintf(wpath, sizeof wpath, "%s/model.safetensors", dir);
    if (stat(wpath, &ws) == 0 && values * 2 > (double)ws.st_size) {
        ckd_errorf(err, "%s: rdm widths (in_dim %lld, hidden %lld, bottleneck %lld, classes %lld) need %.0f values, "
                        "more than %s can hold (%lld bytes)",
                   path, (long long)cfg.in_dim, (long long)cfg.hidden, (long long)cfg.bottleneck,
                   (long long)cfg.n_classes, values, wpath, (long long)ws.st_size);
        goto out;
    }
    if (!(r = ckd_rdm_new(&cfg, 0, err))) {
        ckd_error_prefix(err, "%s", path);
        goto out;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ckd_safetensors *st = ckd_st_open(path, err);
    for (int i = 0; st && i < ckd_rdm_n_params(r); i++) {
        ckd_tensor *p = ckd_rdm_param(r, i);
        const ckd_st_tensor *t = ckd_st_find(st, p->name);
        int same = t && t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++)
            same = t->shape[d] == p->shape[d];
        if (!same) {
            char s[64];
            ckd_errorf(err, "%s: %s: %s, expected shape %s", path, p->name, t ? "wrong shape" : "missing",
                       ckd_shape_str(p, s, sizeof s));
            ckd_st_close(st);
            st = NULL;
            break;
        }
        if (ckd_st_to_f32(t, p->data, (size_t)p->n, err)) {
            ckd_error_prefix(err, "%s", path);
            ckd_st_close(st);
            st = NULL;
        }
    }
    if (!st) {
        ckd_rdm_free(r);
        r = NULL;
        goto out;
    }
    ckd_st_close(st);
    if (config_out)
        *config_out = json_incref((json_t *)rdm);
out:
    json_decref(doc);
    return r;
}
