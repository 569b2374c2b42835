/* Checkpoints: everything the next step reads, in one safetensors file so
 * that a single rename makes it appear whole (ckd_st_writer_save writes a
 * temporary file, fsyncs it and renames it). Tensors: model.<HF name>,
 * loss.<i>.<name>, adam.m.<k>, adam.v.<k> (k = the optimiser's parameter
 * order), buffer.<name> (the student's BatchNorm running statistics, which
 * the next step's forward reads and updates); the rest is JSON in the
 * __metadata__ entry "state". */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clipkd/safetensors.h"
#include "checkpoint_state.h"
#include "train_internal.h"

#define CKPT_FILE "checkpoint.safetensors"

int train_checkpoint_exists(const char *dir)
{
    char p[TRAIN_PATH_MAX + 32];
    struct stat sb;
    snprintf(p, sizeof p, "%s/" CKPT_FILE, dir);
    return stat(p, &sb) == 0;
}

void train_param_key(const train_run *t, int k, int model_prefix, char *out, size_t cap)
{
    if (k < t->n_model_params) {
        snprintf(out, cap, "%s%s", model_prefix ? "model." : "", t->params[k]->name);
        return;
    }
    int j = k - t->n_model_params;
    for (int i = 0; i < t->n_losses; i++) {
        if (j < ckd_loss_n_params(t->loss[i])) {
            snprintf(out, cap, "loss.%d.%s", i, t->params[k]->name);
            return;
        }
        j -= ckd_loss_n_params(t->loss[i]);
    }
}

static json_t *state_json(train_run *t, int64_t metrics_len)
{
    ckd_loader_cursor cur = train_cursor_for(t, t->step);
    const ckd_rng *r = ckd_ctx_rng(t->ctx);
    json_t *rng = json_array(), *steps = json_array();
    for (int i = 0; i < 4; i++) {
        char hex[17];
        snprintf(hex, sizeof hex, "%016" PRIx64, r->s[i]);
        json_array_append_new(rng, json_string(hex));
    }
    for (int k = 0; k < t->n_params; k++)
        json_array_append_new(steps, json_integer(ckd_adamw_param_steps(t->opt, k)));
    /* Doubles survive JSON exactly (jansson writes 17 significant digits). */
    json_t *terms = json_array();
    for (int i = 0; i < t->n_losses; i++)
        json_array_append_new(terms, json_real(t->last_terms[i]));
    return json_pack("{s:s, s:I, s:I, s:[I, I], s:o, s:o, s:I, s:I, s:f, s:o}", "recipe_hash",
                     ckd_recipe_hash(t->recipe), "step", (json_int_t)t->step, "epoch", (json_int_t)cur.epoch,
                     "cursor", (json_int_t)cur.epoch, (json_int_t)cur.batch, "rng", rng, "adam_steps", steps,
                     "metrics_len", (json_int_t)metrics_len, "total_steps", (json_int_t)t->total_steps,
                     "last_loss", t->last_total, "last_terms", terms);
}

int train_checkpoint_save(train_run *t, int64_t metrics_len, ckd_error *err)
{
    char path[TRAIN_PATH_MAX + 32], key[512];
    ckd_st_writer *w = ckd_st_writer_new();
    json_t *state = state_json(t, metrics_len);
    char *text = state ? json_dumps(state, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    int rc = -1;
    if (!w || !text) {
        ckd_errorf(err, "out of memory");
        goto out;
    }
    for (int k = 0; k < t->n_params; k++) {
        const ckd_tensor *p = t->params[k];
        train_param_key(t, k, 1, key, sizeof key);
        if (ckd_st_writer_add(w, key, CKD_DT_F32, p->ndim, p->shape, p->data, err))
            goto out;
        snprintf(key, sizeof key, "adam.m.%d", k);
        if (ckd_st_writer_add(w, key, CKD_DT_F32, p->ndim, p->shape, ckd_adamw_exp_avg(t->opt, k), err))
            goto out;
        snprintf(key, sizeof key, "adam.v.%d", k);
        if (ckd_st_writer_add(w, key, CKD_DT_F32, p->ndim, p->shape, ckd_adamw_exp_avg_sq(t->opt, k), err))
            goto out;
    }
    for (int i = 0; i < ckd_model_n_buffers(t->student); i++) {
        const ckd_tensor *b = ckd_model_buffer(t->student, i);
        snprintf(key, sizeof key, "buffer.%s", b->name);
        if (ckd_st_writer_add(w, key, CKD_DT_F32, b->ndim, b->shape, b->data, err))
            goto out;
    }
    if (ckd_st_writer_set_metadata(w, "state", text, err))
        goto out;
    snprintf(path, sizeof path, "%s/" CKPT_FILE, t->dir);
    if (ckd_st_writer_save(w, path, err))
        goto out;
    /* A readable copy of the state; the safetensors metadata is authoritative. */
    rc = train_write_json(t->dir, "checkpoint.json", state, err);
out:
    free(text);
    json_decref(state);
    ckd_st_writer_free(w);
    return rc;
}

static int read_into(const ckd_safetensors *st, const char *file, const char *key, float *dst, const ckd_tensor *like,
                     ckd_error *err)
{
    const ckd_st_tensor *s = ckd_st_find(st, key);
    if (!s)
        return ckd_errorf(err, "%s: no tensor %s: the checkpoint does not belong to this run", file, key);
    int same = s->ndim == like->ndim && s->dtype == CKD_DT_F32;
    for (int d = 0; same && d < s->ndim; d++)
        same = s->shape[d] == like->shape[d];
    if (!same) {
        char sh[64];
        return ckd_errorf(err, "%s: %s is not F32 %s: the checkpoint does not belong to this run", file, key,
                          ckd_shape_str(like, sh, sizeof sh));
    }
    return ckd_st_to_f32(s, dst, (size_t)like->n, err) ? ckd_error_prefix(err, "%s", file) : 0;
}

int train_checkpoint_load(train_run *t, int64_t *metrics_len, ckd_error *err)
{
    char path[TRAIN_PATH_MAX + 32], key[512];
    snprintf(path, sizeof path, "%s/" CKPT_FILE, t->dir);
    ckd_safetensors *st = ckd_st_open(path, err);
    if (!st)
        return ckd_error_prefix(err, "cannot resume: corrupt or unreadable checkpoint");
    train_state s;
    int rc = -1;
    if (train_state_parse(ckd_st_metadata(st, "state"), path, t->total_steps, t->n_params, t->n_losses, &s, err)) {
        ckd_st_close(st);
        return -1;
    }
    if (strcmp(s.recipe_hash, ckd_recipe_hash(t->recipe))) {
        ckd_errorf(err, "%s: cannot resume: the checkpoint was written by recipe %.12s…, this recipe hashes to "
                        "%.12s… (a different recipe, or other --set overrides)",
                   path, s.recipe_hash, ckd_recipe_hash(t->recipe));
        goto out;
    }
    /* The loop truncates metrics.jsonl to this length: a longer one would
     * extend the file with zeros. */
    char mpath[TRAIN_PATH_MAX + 32];
    struct stat ms;
    snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", t->dir);
    int64_t have = stat(mpath, &ms) ? 0 : (int64_t)ms.st_size;
    if (s.metrics_len > have) {
        ckd_errorf(err, "%s: cannot resume: the checkpoint counts %lld bytes of metrics.jsonl, the run folder has %lld "
                        "(it was changed since the checkpoint)",
                   path, (long long)s.metrics_len, (long long)have);
        goto out;
    }
    for (int k = 0; k < t->n_params; k++) {
        ckd_tensor *p = t->params[k];
        train_param_key(t, k, 1, key, sizeof key);
        if (read_into(st, path, key, p->data, p, err))
            goto out;
        snprintf(key, sizeof key, "adam.m.%d", k);
        if (read_into(st, path, key, ckd_adamw_exp_avg(t->opt, k), p, err))
            goto out;
        snprintf(key, sizeof key, "adam.v.%d", k);
        if (read_into(st, path, key, ckd_adamw_exp_avg_sq(t->opt, k), p, err))
            goto out;
        ckd_adamw_set_param_steps(t->opt, k, s.adam_steps[k]);
    }
    for (int i = 0; i < ckd_model_n_buffers(t->student); i++) {
        ckd_tensor *b = ckd_model_buffer(t->student, i);
        snprintf(key, sizeof key, "buffer.%s", b->name);
        if (read_into(st, path, key, b->data, b, err))
            goto out;
    }
    ckd_rng *r = ckd_ctx_rng(t->ctx);
    for (int i = 0; i < 4; i++)
        r->s[i] = s.rng[i];
    for (int i = 0; i < t->n_losses; i++)
        t->last_terms[i] = s.last_terms[i];
    t->last_total = s.last_loss;
    t->step = s.step;
    *metrics_len = s.metrics_len;
    rc = 0;
out:
    train_state_free(&s);
    ckd_st_close(st);
    return rc;
}
