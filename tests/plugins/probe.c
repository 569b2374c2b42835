/* A loss plugin for the trainer tests that shows what the trainer puts in a
 * loss batch: on its first forward it writes every tensor of the batch it
 * was given (and the labels) to the safetensors file named by its parameter
 * "out", and it contributes 0 to the loss. Built twice: as "test_probe_logits"
 * (needs s_logits) and, with -DPROBE_CENTROIDS, as "test_probe_centroids"
 * (needs centroids, so a teacher). */
#include <stdlib.h>
#include <string.h>

#include "clipkd/plugin.h"
#include "clipkd/safetensors.h"

#ifdef PROBE_CENTROIDS
#define PROBE_NAME "test_probe_centroids"
#define PROBE_NEEDS (CKD_NEED_S_IMG | CKD_NEED_LABELS | CKD_NEED_CENTROIDS)
#else
#define PROBE_NAME "test_probe_logits"
#define PROBE_NEEDS (CKD_NEED_S_IMG | CKD_NEED_LABELS | CKD_NEED_S_LOGITS)
#endif

typedef struct probe {
    char out[4096];
    int written;
} probe;

static int create(const ckd_params *p, const ckd_loss_dims *d, ckd_rng *rng, void **out, ckd_error *err)
{
    (void)d;
    (void)rng;
    probe *s = calloc(1, sizeof *s);
    if (!s)
        return ckd_errorf(err, "out of memory");
    strncpy(s->out, ckd_params_string(p, "out", ""), sizeof s->out - 1);
    *out = s;
    return 0;
}

static void destroy(void *st) { free(st); }
static int n_params(void *st) { return (void)st, 0; }
static ckd_tensor *param(void *st, int i) { return (void)st, (void)i, NULL; }

static int add(ckd_st_writer *w, const char *name, const ckd_tensor *t, ckd_error *err)
{
    return t ? ckd_st_writer_add_copy(w, name, CKD_DT_F32, t->ndim, t->shape, t->data, err) : 0;
}

static int save(const probe *s, const ckd_loss_batch *b, ckd_error *err)
{
    ckd_st_writer *w = ckd_st_writer_new();
    if (!w)
        return ckd_errorf(err, "out of memory");
    int rc = add(w, "s_img_n", b->s_img_n, err) || add(w, "s_logit_scale", b->s_logit_scale, err) ||
                     add(w, "s_logits", b->s_logits, err) || add(w, "centroids", b->centroids, err) ||
                     add(w, "t_logits", b->t_logits, err) || add(w, "s_img", b->s_img, err) ||
                     add(w, "t_img", b->t_img, err) ||
                     (CKD_LOSS_BATCH_HAS(b, a_logits) &&
                      (add(w, "a_img", b->a_img, err) || add(w, "a_logits", b->a_logits, err))) ||
                     ckd_st_writer_add_copy(w, "labels", CKD_DT_I32, 1, (int64_t[]){b->n}, b->labels, err) ||
                     ckd_st_writer_save(w, s->out, err)
                 ? -1
                 : 0;
    ckd_st_writer_free(w);
    return rc;
}

static ckd_tensor *forward(void *st, ckd_ctx *c, const ckd_loss_batch *b)
{
    probe *s = st;
    ckd_error err = {{0}};
    if (!s->written && save(s, b, &err))
        return ckd_ctx_fail(c, "%s", err.msg);
    s->written = 1;
    return ckd_scale(c, ckd_mean_all(c, b->s_img), 0.0f);
}

static const ckd_loss_vtable vt = {sizeof vt, PROBE_NEEDS, create, destroy, n_params, param, forward};
static const ckd_plugin_descriptor desc = {
    CKD_PLUGIN_ABI_MAJOR, sizeof desc, CKD_PLUGIN_LOSS, PROBE_NAME, "1.0",
    "test plugin: writes its first loss batch to a file, adds 0",
    "{\"type\":\"object\",\"properties\":{\"out\":{\"type\":\"string\",\"description\":\"file to write\"}},"
    "\"required\":[\"out\"]}",
    &vt, NULL};
CKD_PLUGIN_DEFINE(desc)
