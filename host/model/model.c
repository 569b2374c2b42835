/* A model plugin instantiated: validated configuration, state, info,
 * parameters and buffers (model directories are in model_dir.c). */
#include "config.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipkd/model.h"

struct ckd_model {
    const ckd_plugin *plugin;
    ckd_params *config;
    void *state;
    ckd_model_info info;
};

static const ckd_model_vtable *vt(const ckd_model *m) { return m->plugin->desc->model; }

static int has_classify(const ckd_model *m)
{
    return vt(m)->struct_size >= offsetof(ckd_model_vtable, classify) + sizeof(void *) && vt(m)->classify;
}

ckd_model *ckd_model_new(const ckd_plugin *p, const json_t *config, const char *where, int init, uint64_t seed,
                         ckd_error *err)
{
    if (p->desc->kind != CKD_PLUGIN_MODEL) {
        ckd_errorf(err, "%s: plugin %s is a %s plugin, not a model", where, p->desc->name,
                   ckd_plugin_kind_name(p->desc->kind));
        return NULL;
    }
    ckd_model *m = calloc(1, sizeof *m);
    if (!m) {
        ckd_errorf(err, "%s: out of memory", where);
        return NULL;
    }
    m->plugin = p;
    m->config = ckd_params_for(p, config, where, err);
    if (!m->config) {
        free(m);
        return NULL;
    }
    ckd_rng rng;
    ckd_rng_seed(&rng, seed);
    ckd_error perr = {{0}};
    if (vt(m)->create(m->config, init ? &rng : NULL, &m->state, &perr)) {
        ckd_errorf(err, "%s: model %s (%s): %s", where, p->desc->name, p->path,
                   perr.msg[0] ? perr.msg : "create() failed without a message");
        ckd_params_free(m->config);
        free(m);
        return NULL;
    }
    m->info.struct_size = sizeof m->info;
    vt(m)->info(m->state, &m->info);
    if (!m->info.towers) /* a plugin from before the field: a two-tower CLIP */
        m->info.towers = CKD_TOWER_IMAGE | CKD_TOWER_TEXT;
    if (!vt(m)->encode_text || !vt(m)->logit_scale)
        m->info.towers &= ~(uint32_t)CKD_TOWER_TEXT;
    /* a head of its own only with a classify entry the plugin's vtable has */
    if (!has_classify(m) || !(m->info.towers & CKD_TOWER_CLASSIFIER) || m->info.feature_dim < 0)
        m->info.feature_dim = 0;
    return m;
}

void ckd_model_free(ckd_model *m)
{
    if (!m)
        return;
    vt(m)->destroy(m->state);
    ckd_params_free(m->config);
    free(m);
}

const char *ckd_model_plugin_name(const ckd_model *m) { return m->plugin->desc->name; }
const json_t *ckd_model_config(const ckd_model *m) { return ckd_params_json(m->config); }
const ckd_model_info *ckd_model_get_info(const ckd_model *m) { return &m->info; }
int64_t ckd_model_embed_dim(const ckd_model *m) { return m->info.embed_dim; }
int ckd_model_n_params(const ckd_model *m) { return vt(m)->n_params(m->state); }
ckd_tensor *ckd_model_param(const ckd_model *m, int i) { return vt(m)->param(m->state, i); }
ckd_tensor *ckd_model_logit_scale(const ckd_model *m)
{
    return ckd_model_has_text(m) ? vt(m)->logit_scale(m->state) : NULL;
}

int ckd_model_has_text(const ckd_model *m) { return (m->info.towers & CKD_TOWER_TEXT) != 0; }
int ckd_model_is_classifier(const ckd_model *m) { return (m->info.towers & CKD_TOWER_CLASSIFIER) != 0; }

/* Buffers exist from ABI minor 1 on; an older vtable is shorter. */
static int has_buffers(const ckd_model *m)
{
    const ckd_model_vtable *v = vt(m);
    return v->struct_size >= offsetof(ckd_model_vtable, buffer) + sizeof v->buffer && v->n_buffers && v->buffer;
}

int ckd_model_n_buffers(const ckd_model *m) { return has_buffers(m) ? vt(m)->n_buffers(m->state) : 0; }
ckd_tensor *ckd_model_buffer(const ckd_model *m, int i) { return has_buffers(m) ? vt(m)->buffer(m->state, i) : NULL; }

ckd_tensor *ckd_model_find_param(const ckd_model *m, const char *name)
{
    int n = ckd_model_n_params(m);
    for (int i = 0; i < n; i++) {
        ckd_tensor *t = ckd_model_param(m, i);
        if (t && t->name && !strcmp(t->name, name))
            return t;
    }
    return NULL;
}

int64_t ckd_model_param_count(const ckd_model *m)
{
    int64_t total = 0;
    int n = ckd_model_n_params(m);
    for (int i = 0; i < n; i++)
        total += ckd_model_param(m, i)->n;
    return total;
}

ckd_tensor *ckd_model_encode_image(ckd_model *m, ckd_ctx *c, ckd_tensor *pixels, float keep_ratio,
                                   ckd_tower_out *out)
{
    if (ckd_ctx_failed(c))
        return NULL;
    ckd_tensor *y = vt(m)->encode_image(m->state, c, pixels, keep_ratio, out);
    if (!y && !ckd_ctx_failed(c))
        ckd_ctx_fail(c, "model %s: encode_image returned no result", ckd_model_plugin_name(m));
    return y;
}

ckd_tensor *ckd_model_encode_text(ckd_model *m, ckd_ctx *c, const int32_t *ids, int64_t B, int64_t T,
                                  ckd_tower_out *out)
{
    if (ckd_ctx_failed(c))
        return NULL;
    if (!ckd_model_has_text(m))
        return ckd_ctx_fail(c, "model %s has no text tower (an image-only model)", ckd_model_plugin_name(m));
    ckd_tensor *y = vt(m)->encode_text(m->state, c, ids, B, T, out);
    if (!y && !ckd_ctx_failed(c))
        ckd_ctx_fail(c, "model %s: encode_text returned no result", ckd_model_plugin_name(m));
    return y;
}

int64_t ckd_model_feature_dim(const ckd_model *m) { return m->info.feature_dim; }

ckd_tensor *ckd_model_classify(ckd_model *m, ckd_ctx *c, ckd_tensor *features)
{
    if (ckd_ctx_failed(c))
        return NULL;
    if (!m->info.feature_dim)
        return ckd_ctx_fail(c, "model %s has no separate classifier head", ckd_model_plugin_name(m));
    if (!features || features->ndim != 2 || features->shape[1] != m->info.feature_dim)
        return ckd_ctx_fail(c, "model %s: classify takes features [B, %lld]", ckd_model_plugin_name(m),
                            (long long)m->info.feature_dim);
    ckd_tensor *y = vt(m)->classify(m->state, c, features);
    if (!y && !ckd_ctx_failed(c))
        ckd_ctx_fail(c, "model %s: classify returned no result", ckd_model_plugin_name(m));
    return y;
}

int ckd_model_load(ckd_model *m, const char *path, ckd_error *err) { return vt(m)->load(m->state, path, err); }
int ckd_model_save(ckd_model *m, const char *path, ckd_error *err) { return vt(m)->save(m->state, path, err); }
