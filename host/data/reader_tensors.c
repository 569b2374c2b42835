/* The tensors reader: samples already preprocessed and tokenised, stored in
 * one safetensors file (pixel_values [N,3,H,W] F32, input_ids [N,T] I32 or
 * I64, optional labels [N]) — for tests, golden comparisons, and data made
 * by other tools. The file stays memory-mapped; get() copies one row. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "clipkd/safetensors.h"
#include "data_internal.h"

typedef struct ts_state {
    char *path;
    ckd_safetensors *st;
    const ckd_st_tensor *pixels;
    int32_t *ids, *labels;  /* converted once at open */
    size_t n;
    int h, w, t;
} ts_state;

static void ts_close(void *state)
{
    ts_state *s = state;
    ckd_st_close(s->st);
    free(s->path);
    free(s->ids);
    free(s->labels);
    free(s);
}

static const ckd_st_tensor *need(const ts_state *s, const char *name, int ndim, ckd_error *err)
{
    const ckd_st_tensor *t = ckd_st_find(s->st, name);
    if (!t) {
        ckd_errorf(err, "%s: no tensor \"%s\"", s->path, name);
        return NULL;
    }
    if (t->ndim != ndim) {
        ckd_errorf(err, "%s: tensor \"%s\" has %d dimensions, expected %d", s->path, name, t->ndim,
                   ndim);
        return NULL;
    }
    return t;
}

static int is_int_type(ckd_dtype d)
{
    return d == CKD_DT_I64 || d == CKD_DT_I32 || d == CKD_DT_I16 || d == CKD_DT_I8 ||
           d == CKD_DT_U8;
}

static void *ts_open(ckd_dataset *ds, const json_t *spec, const ckdd_env *env, ckd_error *err)
{
    ts_state *s = calloc(1, sizeof *s);
    char p[4096];
    if (!s) {
        ckd_errorf(err, "out of memory");
        return NULL;
    }
    if (ckdd_resolve(env, spec, "path", p, sizeof p, err) < 0 || !(s->path = strdup(p)) ||
        !(s->st = ckd_st_open(p, err)))
        goto fail;
    const ckd_st_tensor *px = need(s, "pixel_values", 4, err), *ids, *lb = NULL;
    if (!px || !(ids = need(s, "input_ids", 2, err)))
        goto fail;
    if (px->dtype != CKD_DT_F32 || px->shape[1] != 3 || px->shape[2] <= 0 || px->shape[3] <= 0 ||
        px->shape[2] > CKD_IMAGE_MAX_SIDE || px->shape[3] > CKD_IMAGE_MAX_SIDE) {
        ckd_errorf(err, "%s: tensor \"pixel_values\" is %s [%lld, %lld, %lld, %lld], expected F32 "
                        "[N, 3, H, W]",
                   p, ckd_dtype_name(px->dtype), (long long)px->shape[0], (long long)px->shape[1],
                   (long long)px->shape[2], (long long)px->shape[3]);
        goto fail;
    }
    if ((ids->dtype != CKD_DT_I32 && ids->dtype != CKD_DT_I64) || ids->shape[0] != px->shape[0] ||
        ids->shape[1] < 2 || ids->shape[1] > 1 << 16) {
        ckd_errorf(err, "%s: tensor \"input_ids\" is %s [%lld, %lld], expected I32 or I64 [%lld, T] "
                        "with 2 <= T <= 65536",
                   p, ckd_dtype_name(ids->dtype), (long long)ids->shape[0],
                   (long long)ids->shape[1], (long long)px->shape[0]);
        goto fail;
    }
    if ((lb = ckd_st_find(s->st, "labels")) &&
        (lb->ndim != 1 || !is_int_type(lb->dtype) || lb->shape[0] != px->shape[0])) {
        ckd_errorf(err, "%s: tensor \"labels\" is %s [%lld%s], expected an integer type [%lld]", p,
                   ckd_dtype_name(lb->dtype), (long long)lb->shape[0], lb->ndim > 1 ? ", …" : "",
                   (long long)px->shape[0]);
        goto fail;
    }
    s->pixels = px;
    s->n = (size_t)px->shape[0];
    s->h = (int)px->shape[2];
    s->w = (int)px->shape[3];
    s->t = (int)ids->shape[1];
    size_t n_ids = (size_t)ckd_st_numel(ids);
    if (!(s->ids = malloc((n_ids ? n_ids : 1) * sizeof *s->ids)) ||
        (lb && !(s->labels = malloc((s->n ? s->n : 1) * sizeof *s->labels)))) {
        ckd_errorf(err, "out of memory");
        goto fail;
    }
    if (ckd_st_to_i32(ids, s->ids, n_ids, err) < 0 ||
        (lb && ckd_st_to_i32(lb, s->labels, s->n, err) < 0))
        goto fail;
    for (size_t i = 0; lb && i < s->n; i++)
        if (s->labels[i] < 0) {
            ckd_errorf(err, "%s: labels[%zu] is %d, expected a class index >= 0", p, i,
                       s->labels[i]);
            goto fail;
        }
    if (ckdd_set_source(ds, p, err) < 0)
        goto fail;
    return s;
fail:
    ts_close(s);
    return NULL;
}

static size_t ts_size(const void *state)
{
    return ((const ts_state *)state)->n;
}

static int ts_get(const void *state, size_t i, ckd_sample *out, ckd_error *err)
{
    const ts_state *s = state;
    size_t per = 3 * (size_t)s->h * (size_t)s->w;
    out->pixels = malloc(per * sizeof *out->pixels);
    out->input_ids = malloc((size_t)s->t * sizeof *out->input_ids);
    if (!out->pixels || !out->input_ids)
        return ckd_errorf(err, "out of memory");
    /* The view may be unaligned for float: memcpy, never a cast. */
    memcpy(out->pixels, (const char *)s->pixels->data + i * per * sizeof(float), per * sizeof(float));
    memcpy(out->input_ids, s->ids + i * (size_t)s->t, (size_t)s->t * sizeof *out->input_ids);
    out->pixel_h = s->h;
    out->pixel_w = s->w;
    out->n_ids = s->t;
    out->label = s->labels ? s->labels[i] : -1;
    return 0;
}

static const char ts_schema[] =
    "{\"type\": \"object\", \"required\": [\"path\"], \"properties\": {" CKDD_SCHEMA_COMMON ","
    " \"path\": " CKDD_SCHEMA_PATH_OR_ARTIFACT "}}";

const ckdd_reader ckdd_reader_tensors = {
    "tensors", ts_schema, NULL, ts_open, ts_size, ts_get, ts_close,
};
