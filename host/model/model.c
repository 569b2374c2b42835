/* A model plugin instantiated: validated configuration, state, info; model
 * directories (config + weights). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clipkd/model.h"

struct ckd_model {
    const ckd_plugin *plugin;
    ckd_params *config;
    void *state;
    ckd_model_info info;
};

static const ckd_model_vtable *vt(const ckd_model *m) { return m->plugin->desc->model; }

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
ckd_tensor *ckd_model_logit_scale(const ckd_model *m) { return vt(m)->logit_scale(m->state); }

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
    ckd_tensor *y = vt(m)->encode_text(m->state, c, ids, B, T, out);
    if (!y && !ckd_ctx_failed(c))
        ckd_ctx_fail(c, "model %s: encode_text returned no result", ckd_model_plugin_name(m));
    return y;
}

int ckd_model_load(ckd_model *m, const char *path, ckd_error *err) { return vt(m)->load(m->state, path, err); }
int ckd_model_save(ckd_model *m, const char *path, ckd_error *err) { return vt(m)->save(m->state, path, err); }

/* ---- model directories ------------------------------------------------------ */

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

ckd_model *ckd_model_from_pretrained(const ckd_registry *r, const char *dir, ckd_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!file_exists(path))
        snprintf(path, sizeof path, "%s/clipkd.json", dir);
    if (!file_exists(path)) {
        ckd_errorf(err, "%s: not a model directory: expected config.json (Hugging Face) or clipkd.json", dir);
        return NULL;
    }
    json_t *cfg = ckd_clip_config_load(path, err);
    if (!cfg)
        return NULL;
    const ckd_plugin *p = ckd_registry_find(r, CKD_PLUGIN_MODEL, "clip", err);
    ckd_model *m = p ? ckd_model_new(p, cfg, path, 0, 0, err) : NULL;
    json_decref(cfg);
    if (m && ckd_model_load(m, dir, err)) {
        ckd_model_free(m);
        return NULL;
    }
    return m;
}

int ckd_model_save_pretrained(ckd_model *m, const char *dir, ckd_error *err)
{
    if (strcmp(ckd_model_plugin_name(m), "clip"))
        return ckd_errorf(err, "%s: only clip models have a Hugging Face layout (this is %s)", dir,
                          ckd_model_plugin_name(m));
    if (mkdir(dir, 0777) && errno != EEXIST)
        return ckd_errorf(err, "%s: cannot create directory: %s", dir, strerror(errno));
    json_t *hf = ckd_clip_config_to_hf(ckd_model_config(m), dir, err);
    if (!hf)
        return -1;
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (ckd_model_save(m, path, err)) {
        json_decref(hf);
        return -1;
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int rc = json_dump_file(hf, tmp, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(hf);
    if (rc || rename(tmp, path)) {
        remove(tmp);
        return ckd_errorf(err, "%s: cannot write: %s", path, strerror(errno));
    }
    return 0;
}
