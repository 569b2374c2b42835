/* models/clip — the plugin: configuration, parameters, descriptor.
 *
 * The configuration follows open_clip's model_configs/ (embed_dim, a vision
 * and a text object), with HF's names where open_clip has none: mlp_width
 * (HF's intermediate_size; 0 means width · mlp_ratio), ln_eps, eos_token_id.
 * `act` applies to both towers unless a tower sets its own (HF configs may
 * differ per tower). Configurations shipped with clipkd are in
 * $(pkgdatadir)/models/clip/configs; clipkd/model.h converts HF config.json. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clip.h"

#define TOWER_COMMON                                                                                          \
    "\"width\": {\"type\": \"integer\", \"minimum\": 1, \"description\": \"transformer width\"},"             \
    "\"layers\": {\"type\": \"integer\", \"minimum\": 0, \"maximum\": 64},"                                   \
    "\"heads\": {\"type\": \"integer\", \"minimum\": 1, \"description\": \"attention heads; must divide width\"}," \
    "\"mlp_ratio\": {\"type\": \"number\", \"exclusiveMinimum\": 0, \"default\": 4.0},"                       \
    "\"mlp_width\": {\"type\": \"integer\", \"minimum\": 0, \"default\": 0,"                                  \
    " \"description\": \"MLP hidden width (HF intermediate_size); 0: width * mlp_ratio\"},"                   \
    "\"ln_eps\": {\"type\": \"number\", \"exclusiveMinimum\": 0, \"default\": 1e-5},"                         \
    "\"act\": {\"type\": \"string\", \"enum\": [\"quick_gelu\", \"gelu\"],"                                   \
    " \"description\": \"overrides the top-level act for this tower\"}"

static const char clip_schema[] =
    "{\"type\": \"object\", \"required\": [\"embed_dim\", \"vision\"], \"properties\": {"
    "\"name\": {\"type\": \"string\", \"description\": \"a label, e.g. ViT-B-32\"},"
    "\"embed_dim\": {\"type\": \"integer\", \"minimum\": 1, \"description\": \"projected embedding width\"},"
    "\"act\": {\"type\": \"string\", \"enum\": [\"quick_gelu\", \"gelu\"], \"default\": \"gelu\","
    " \"description\": \"MLP activation: quick_gelu (OpenAI) or erf gelu (LAION/open_clip default)\"},"
    "\"logit_scale_init\": {\"type\": \"number\", \"default\": 2.6592602624,"
    " \"description\": \"initial logit scale theta (lambda = exp theta); ln(1/0.07)\"},"
    "\"towers\": {\"type\": \"string\", \"enum\": [\"both\", \"image\"],"
    " \"description\": \"both (default), or image: no text tower (an image-only student, classified with its"
    " teacher's text tower)\"},"
    "\"vision\": {\"type\": \"object\", \"required\": [\"image_size\", \"width\", \"layers\"],"
    " \"properties\": {"
    "\"arch\": {\"type\": \"string\", \"enum\": [\"vit\", \"modified\"],"
    " \"description\": \"vit (default), or CLIP's ModifiedResNet (layers a list, e.g. [3, 4, 6, 3] for RN50)\"},"
    "\"image_size\": {\"type\": \"integer\", \"minimum\": 1},"
    "\"patch_size\": {\"type\": \"integer\", \"minimum\": 1, \"description\": \"ViT: required\"},"
    "\"channels\": {\"type\": \"integer\", \"minimum\": 1, \"default\": 3},"
    "\"width\": {\"type\": \"integer\", \"minimum\": 1, \"description\": \"transformer width (ResNet: stage-1 planes)\"},"
    "\"layers\": {\"type\": [\"integer\", \"array\"], \"minimum\": 0, \"maximum\": 64, \"items\": {\"type\": \"integer\","
    " \"minimum\": 1, \"maximum\": 64}, \"description\": \"ViT: layers; ResNet: blocks per stage\"},"
    "\"heads\": {\"type\": \"integer\", \"minimum\": 1,"
    " \"description\": \"attention heads (ResNet: of the attention pool, default width·32/64)\"},"
    "\"mlp_ratio\": {\"type\": \"number\", \"exclusiveMinimum\": 0, \"default\": 4.0},"
    "\"mlp_width\": {\"type\": \"integer\", \"minimum\": 0, \"default\": 0},"
    "\"ln_eps\": {\"type\": \"number\", \"exclusiveMinimum\": 0, \"default\": 1e-5},"
    "\"act\": {\"type\": \"string\", \"enum\": [\"quick_gelu\", \"gelu\"]},"
    "\"bn_eps\": {\"type\": \"number\", \"exclusiveMinimum\": 0, \"description\": \"ResNet: default 1e-5\"},"
    "\"bn_momentum\": {\"type\": \"number\", \"minimum\": 0, \"maximum\": 1, \"description\": \"ResNet: default 0.1\"}}},"
    "\"text\": {\"type\": \"object\", \"required\": [\"width\", \"layers\", \"heads\"], \"properties\": {"
    "\"context_length\": {\"type\": \"integer\", \"minimum\": 1, \"default\": 77},"
    "\"vocab_size\": {\"type\": \"integer\", \"minimum\": 1, \"default\": 49408},"
    "\"eos_token_id\": {\"type\": \"integer\", \"minimum\": 0, \"default\": 49407,"
    " \"description\": \"pooling reads the first occurrence of this id (argmax of ids when absent); 2 selects HF's"
    " legacy argmax rule\"}," TOWER_COMMON "}}"
    "}}";

static int parse_act(const char *s) { return s && !strcmp(s, "quick_gelu") ? CLIP_ACT_QUICK_GELU : CLIP_ACT_GELU; }

static int tower_cfg(const ckd_params *p, const char *tower, int act, clip_tower_cfg *t, ckd_error *err)
{
    char key[64];
#define NUM(field) (snprintf(key, sizeof key, "%s." field, tower), ckd_params_number(p, key, 0))
    t->width = (int64_t)NUM("width");
    t->layers = (int64_t)NUM("layers");
    t->heads = (int64_t)NUM("heads");
    t->mlp_width = (int64_t)NUM("mlp_width");
    double ratio = ckd_params_number(p, (snprintf(key, sizeof key, "%s.mlp_ratio", tower), key), 4.0);
    t->ln_eps = (float)ckd_params_number(p, (snprintf(key, sizeof key, "%s.ln_eps", tower), key), 1e-5);
#undef NUM
    snprintf(key, sizeof key, "%s.act", tower);
    t->act = ckd_params_has(p, key) ? parse_act(ckd_params_string(p, key, NULL)) : act;
    if (t->mlp_width == 0)
        t->mlp_width = (int64_t)(t->width * ratio);
    if (t->width < 1 || t->heads < 1 || t->layers < 0 || t->layers > CKD_MODEL_MAX_HIDDEN - 1 || t->mlp_width < 1)
        return ckd_errorf(err, "%s: width %lld, heads %lld, layers %lld, mlp_width %lld: expected positive sizes"
                          " and at most %d layers", tower, (long long)t->width, (long long)t->heads,
                          (long long)t->layers, (long long)t->mlp_width, CKD_MODEL_MAX_HIDDEN - 1);
    if (t->width % t->heads)
        return ckd_errorf(err, "%s.heads: %lld heads do not divide %s.width %lld", tower, (long long)t->heads, tower,
                          (long long)t->width);
    return 0;
}

/* Reads and checks the sizes; every message names the offending keys. */
static int read_cfg(const ckd_params *p, clip_cfg *c, ckd_error *err)
{
    memset(c, 0, sizeof *c);
    int act = parse_act(ckd_params_string(p, "act", "gelu"));
    c->embed_dim = (int64_t)ckd_params_number(p, "embed_dim", 0);
    c->logit_scale_init = (float)ckd_params_number(p, "logit_scale_init", 2.6592602624);
    c->image_size = (int64_t)ckd_params_number(p, "vision.image_size", 0);
    c->patch_size = (int64_t)ckd_params_number(p, "vision.patch_size", 0);
    c->channels = (int64_t)ckd_params_number(p, "vision.channels", 3);
    c->context_length = (int64_t)ckd_params_number(p, "text.context_length", 77);
    c->vocab_size = (int64_t)ckd_params_number(p, "text.vocab_size", 49408);
    double eos = ckd_params_number(p, "text.eos_token_id", 49407);
    c->image_only = !strcmp(ckd_params_string(p, "towers", "both"), "image");
    c->resnet = !strcmp(ckd_params_string(p, "vision.arch", "vit"), "modified");
    if (!c->image_only && !ckd_params_has(p, "text"))
        return ckd_errorf(err, "text: required (a text tower), unless \"towers\": \"image\"");
    if (c->embed_dim < 1)
        return ckd_errorf(err, "embed_dim: %lld, expected a positive width", (long long)c->embed_dim);
    if (c->resnet) {
        if (rn_cfg_read(p, "vision.", &c->rn, err))
            return -1;
        c->rn.out_dim = c->embed_dim;
        c->image_size = c->rn.image_size;
        c->channels = c->rn.channels;
        c->vision.width = c->rn.width;
    } else {
        if (ckd_params_has(p, "vision.layers.0"))
            return ckd_errorf(err, "vision.layers: a list of blocks per stage needs \"arch\": \"modified\"");
        if (!ckd_params_has(p, "vision.patch_size") || !ckd_params_has(p, "vision.heads"))
            return ckd_errorf(err, "vision: a ViT needs patch_size and heads");
        if (tower_cfg(p, "vision", act, &c->vision, err))
            return -1;
    }
    if (!c->image_only && tower_cfg(p, "text", act, &c->text, err))
        return -1;
    if (c->resnet) {
        /* the ResNet checks are done; only the text keys below remain */
    } else if (c->image_size < 1 || c->patch_size < 1 || c->channels < 1)
        return ckd_errorf(err, "vision: image_size %lld, patch_size %lld, channels %lld: expected positive sizes",
                          (long long)c->image_size, (long long)c->patch_size, (long long)c->channels);
    if (c->patch_size > c->image_size)
        return ckd_errorf(err, "vision.patch_size %lld is larger than vision.image_size %lld",
                          (long long)c->patch_size, (long long)c->image_size);
    if (c->context_length < 1 || c->vocab_size < 1 || c->vocab_size > INT32_MAX)
        return ckd_errorf(err, "text: context_length %lld, vocab_size %lld: expected positive sizes",
                          (long long)c->context_length, (long long)c->vocab_size);
    if (eos < 0 || eos > INT32_MAX)
        return ckd_errorf(err, "text.eos_token_id %g is not a token id", eos);
    c->eos_token_id = (int32_t)eos;
    return 0;
}

/* ---- parameters ----------------------------------------------------------------- */

static ckd_tensor *add_param(clip_model *m, ckd_error *err, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static ckd_tensor *add_param(clip_model *m, ckd_error *err, int ndim, const int64_t *shape, const char *fmt, ...)
{
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    if (m->n_params == m->cap_params) {
        int cap = m->cap_params ? 2 * m->cap_params : 64;
        ckd_tensor **p = realloc(m->params, (size_t)cap * sizeof *p);
        if (!p) {
            ckd_errorf(err, "%s: out of memory", name);
            return NULL;
        }
        m->params = p;
        m->cap_params = cap;
    }
    ckd_tensor *t = ckd_param_new(ndim, shape, name, err);
    if (t)
        m->params[m->n_params++] = t;
    return t;
}

#define P1(a) ((const int64_t[]){(a)})
#define P2(a, b) ((const int64_t[]){(a), (b)})

static int make_layers(clip_model *m, const char *prefix, const clip_tower_cfg *t, clip_layer *L, ckd_error *err)
{
    int64_t C = t->width, F = t->mlp_width;
    for (int64_t i = 0; i < t->layers; i++) {
        clip_layer *l = &L[i];
        const char *pre = prefix;
        long long li = (long long)i;
        if (!(l->ln1_w = add_param(m, err, 1, P1(C), "%s.layers.%lld.layer_norm1.weight", pre, li)) ||
            !(l->ln1_b = add_param(m, err, 1, P1(C), "%s.layers.%lld.layer_norm1.bias", pre, li)) ||
            !(l->q_w = add_param(m, err, 2, P2(C, C), "%s.layers.%lld.self_attn.q_proj.weight", pre, li)) ||
            !(l->q_b = add_param(m, err, 1, P1(C), "%s.layers.%lld.self_attn.q_proj.bias", pre, li)) ||
            !(l->k_w = add_param(m, err, 2, P2(C, C), "%s.layers.%lld.self_attn.k_proj.weight", pre, li)) ||
            !(l->k_b = add_param(m, err, 1, P1(C), "%s.layers.%lld.self_attn.k_proj.bias", pre, li)) ||
            !(l->v_w = add_param(m, err, 2, P2(C, C), "%s.layers.%lld.self_attn.v_proj.weight", pre, li)) ||
            !(l->v_b = add_param(m, err, 1, P1(C), "%s.layers.%lld.self_attn.v_proj.bias", pre, li)) ||
            !(l->o_w = add_param(m, err, 2, P2(C, C), "%s.layers.%lld.self_attn.out_proj.weight", pre, li)) ||
            !(l->o_b = add_param(m, err, 1, P1(C), "%s.layers.%lld.self_attn.out_proj.bias", pre, li)) ||
            !(l->ln2_w = add_param(m, err, 1, P1(C), "%s.layers.%lld.layer_norm2.weight", pre, li)) ||
            !(l->ln2_b = add_param(m, err, 1, P1(C), "%s.layers.%lld.layer_norm2.bias", pre, li)) ||
            !(l->fc1_w = add_param(m, err, 2, P2(F, C), "%s.layers.%lld.mlp.fc1.weight", pre, li)) ||
            !(l->fc1_b = add_param(m, err, 1, P1(F), "%s.layers.%lld.mlp.fc1.bias", pre, li)) ||
            !(l->fc2_w = add_param(m, err, 2, P2(C, F), "%s.layers.%lld.mlp.fc2.weight", pre, li)) ||
            !(l->fc2_b = add_param(m, err, 1, P1(C), "%s.layers.%lld.mlp.fc2.bias", pre, li)))
            return -1;
    }
    return 0;
}

/* The ResNet image tower's parameters, listed after the text tower's (the
 * tower keeps ownership; see clip_model.rn). */
static int make_resnet(clip_model *m, ckd_rng *init_rng, ckd_error *err)
{
    if (!(m->rn = rn_tower_new(&m->cfg.rn, "visual.", init_rng, err)))
        return -1;
    m->rn_first = m->n_params;
    for (int i = 0; i < m->rn->n_params; i++) {
        if (m->n_params == m->cap_params) {
            int cap = 2 * m->cap_params + m->rn->n_params;
            ckd_tensor **p = realloc(m->params, (size_t)cap * sizeof *p);
            if (!p)
                return ckd_errorf(err, "out of memory");
            m->params = p;
            m->cap_params = cap;
        }
        m->params[m->n_params++] = m->rn->params[i];
    }
    return 0;
}

/* Creation order is HF's named_parameters() order (text, vision, projections,
 * logit_scale), so listings and checkpoints read like transformers' own. An
 * image-only model has no text parameters, projection or scale; a ResNet
 * image tower replaces the ViT's parameters and its projection. */
static int make_params(clip_model *m, ckd_rng *init_rng, ckd_error *err)
{
    const clip_cfg *c = &m->cfg;
    int64_t Ct = c->text.width, Cv = c->vision.width, E = c->embed_dim, P = c->patch_size;
    m->t_layers = calloc((size_t)c->text.layers + 1, sizeof *m->t_layers);
    m->v_layers = calloc((size_t)c->vision.layers + 1, sizeof *m->v_layers);
    if (!m->t_layers || !m->v_layers)
        return ckd_errorf(err, "out of memory");
    if (!c->image_only &&
        (!(m->t_tok = add_param(m, err, 2, P2(c->vocab_size, Ct), "text_model.embeddings.token_embedding.weight")) ||
         !(m->t_pos = add_param(m, err, 2, P2(c->context_length, Ct), "text_model.embeddings.position_embedding.weight")) ||
         make_layers(m, "text_model.encoder", &c->text, m->t_layers, err) ||
         !(m->t_final_w = add_param(m, err, 1, P1(Ct), "text_model.final_layer_norm.weight")) ||
         !(m->t_final_b = add_param(m, err, 1, P1(Ct), "text_model.final_layer_norm.bias"))))
        return -1;
    if (c->resnet) {
        if (make_resnet(m, init_rng, err))
            return -1;
    } else if (!(m->v_class = add_param(m, err, 1, P1(Cv), "vision_model.embeddings.class_embedding")) ||
               !(m->v_patch = add_param(m, err, 4, ((const int64_t[]){Cv, c->channels, P, P}),
                                        "vision_model.embeddings.patch_embedding.weight")) ||
               !(m->v_pos = add_param(m, err, 2, P2(clip_n_patches(c) + 1, Cv),
                                      "vision_model.embeddings.position_embedding.weight")) ||
               !(m->v_pre_w = add_param(m, err, 1, P1(Cv), "vision_model.pre_layrnorm.weight")) ||
               !(m->v_pre_b = add_param(m, err, 1, P1(Cv), "vision_model.pre_layrnorm.bias")) ||
               make_layers(m, "vision_model.encoder", &c->vision, m->v_layers, err) ||
               !(m->v_post_w = add_param(m, err, 1, P1(Cv), "vision_model.post_layernorm.weight")) ||
               !(m->v_post_b = add_param(m, err, 1, P1(Cv), "vision_model.post_layernorm.bias")) ||
               !(m->v_proj = add_param(m, err, 2, P2(E, Cv), "visual_projection.weight")))
        return -1;
    if (!c->image_only && (!(m->t_proj = add_param(m, err, 2, P2(E, Ct), "text_projection.weight")) ||
                           !(m->logit_scale = add_param(m, err, 0, NULL, "logit_scale"))))
        return -1;
    return 0;
}

static void clip_destroy(void *state)
{
    clip_model *m = state;
    if (!m)
        return;
    for (int i = 0; i < m->n_params; i++)
        if (!m->rn || i < m->rn_first || i >= m->rn_first + m->rn->n_params)
            ckd_param_free(m->params[i]);
    rn_tower_free(m->rn);
    free(m->params);
    free(m->v_layers);
    free(m->t_layers);
    free(m);
}

static int clip_create(const ckd_params *config, ckd_rng *init_rng, void **state, ckd_error *err)
{
    *state = NULL;
    clip_model *m = calloc(1, sizeof *m);
    if (!m)
        return ckd_errorf(err, "out of memory");
    if (read_cfg(config, &m->cfg, err) || make_params(m, init_rng, err)) {
        clip_destroy(m);
        return -1;
    }
    if (init_rng)
        clip_init_weights(m, init_rng);
    *state = m;
    return 0;
}

static int clip_n_params(void *state) { return ((clip_model *)state)->n_params; }

static ckd_tensor *clip_param(void *state, int i)
{
    clip_model *m = state;
    return i >= 0 && i < m->n_params ? m->params[i] : NULL;
}

static ckd_tensor *clip_logit_scale(void *state) { return ((clip_model *)state)->logit_scale; }

static void clip_info(void *state, ckd_model_info *out)
{
    const clip_cfg *c = &((clip_model *)state)->cfg;
    ckd_model_info i = {
        .struct_size = sizeof i,
        .embed_dim = c->embed_dim,
        .image_size = c->image_size,
        .patch_size = c->patch_size,
        .channels = c->channels,
        .vision_width = c->vision.width,
        .vision_layers = c->vision.layers,
        .vision_heads = c->vision.heads,
        .n_patches = clip_n_patches(c),
        .context_length = c->context_length,
        .vocab_size = c->vocab_size,
        .text_width = c->text.width,
        .text_layers = c->text.layers,
        .text_heads = c->text.heads,
        .eos_token_id = c->eos_token_id,
        .towers = CKD_TOWER_IMAGE | (c->image_only ? 0 : CKD_TOWER_TEXT),
    };
    const rn_tower *rn = ((clip_model *)state)->rn;
    if (rn) { /* no patches: the ResNet's width, blocks and pool heads */
        i.vision_width = rn->feat_dim;
        i.vision_layers = rn->n_blocks;
        i.vision_heads = c->rn.heads;
    }
    if (c->image_only) {
        i.context_length = i.vocab_size = i.text_width = i.text_layers = i.text_heads = 0;
    }
    /* The caller's struct may be older (shorter) than ours. */
    size_t n = out->struct_size < sizeof i ? out->struct_size : sizeof i;
    uint32_t keep = out->struct_size;
    memcpy(out, &i, n);
    out->struct_size = keep;
}

static const ckd_model_vtable clip_vtable = {
    .struct_size = sizeof(ckd_model_vtable),
    .create = clip_create,
    .destroy = clip_destroy,
    .n_params = clip_n_params,
    .param = clip_param,
    .logit_scale = clip_logit_scale,
    .info = clip_info,
    .encode_image = clip_encode_image,
    .encode_text = clip_encode_text,
    .load = clip_load,
    .save = clip_save,
    .n_buffers = clip_n_buffers,
    .buffer = clip_buffer,
};

static const ckd_plugin_descriptor clip_descriptor = {
    .abi_major = CKD_PLUGIN_ABI_MAJOR,
    .struct_size = sizeof(ckd_plugin_descriptor),
    .kind = CKD_PLUGIN_MODEL,
    .name = "clip",
    .version = "1.0",
    .summary = "CLIP: ViT or ModifiedResNet image tower + causal text transformer, HF and OpenCLIP weights",
    .params_schema = clip_schema,
    .model = &clip_vtable,
};

CKD_PLUGIN_DEFINE(clip_descriptor)
