/* models/resnet — the plugin: a convolutional image encoder with no text
 * tower (torchvision's ResNet or CLIP's ModifiedResNet, see resnet.h). Its
 * output is the fc / attention-pool projection: class logits when the
 * configuration sets num_classes, an embedding when it sets embed_dim.
 * Parameter names are the reference's: torchvision's as they are
 * (conv1.weight, layer1.0.bn1.running_mean, fc.weight), the ModifiedResNet's
 * under "visual." as in open_clip checkpoints. Shipped configurations are in
 * $(pkgdatadir)/models/resnet/configs. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resnet.h"

static const char resnet_schema[] =
    "{\"type\": \"object\", \"required\": [\"layers\"], \"properties\": {"
    "\"name\": {\"type\": \"string\", \"description\": \"a label, e.g. resnet18\"},"
    "\"num_classes\": {\"type\": \"integer\", \"minimum\": 1,"
    " \"description\": \"a classifier: the output is class logits of this width\"},"
    "\"embed_dim\": {\"type\": \"integer\", \"minimum\": 1,"
    " \"description\": \"an image encoder: the output is an embedding of this width\"},"
    RN_SCHEMA_PROPERTIES "}}";

typedef struct resnet_model {
    rn_tower *tower;
    int classifier;
} resnet_model;

static void resnet_destroy(void *state)
{
    resnet_model *m = state;
    if (!m)
        return;
    rn_tower_free(m->tower);
    free(m);
}

static int resnet_create(const ckd_params *config, ckd_rng *init_rng, void **state, ckd_error *err)
{
    *state = NULL;
    rn_cfg cfg;
    if (rn_cfg_read(config, "", &cfg, err))
        return -1;
    int has_k = ckd_params_has(config, "num_classes"), has_e = ckd_params_has(config, "embed_dim");
    if (has_k == has_e)
        return ckd_errorf(err, "num_classes, embed_dim: set exactly one (class logits or an embedding)%s",
                          has_k ? ", not both" : "");
    cfg.out_dim = (int64_t)ckd_params_number(config, has_k ? "num_classes" : "embed_dim", 0);
    resnet_model *m = calloc(1, sizeof *m);
    if (!m)
        return ckd_errorf(err, "out of memory");
    m->classifier = has_k;
    m->tower = rn_tower_new(&cfg, cfg.arch == RN_MODIFIED ? "visual." : "", init_rng, err);
    if (!m->tower) {
        free(m);
        return -1;
    }
    *state = m;
    return 0;
}

static int resnet_n_params(void *state) { return ((resnet_model *)state)->tower->n_params; }
static int resnet_n_buffers(void *state) { return ((resnet_model *)state)->tower->n_buffers; }

static ckd_tensor *resnet_param(void *state, int i)
{
    rn_tower *t = ((resnet_model *)state)->tower;
    return i >= 0 && i < t->n_params ? t->params[i] : NULL;
}

static ckd_tensor *resnet_buffer(void *state, int i)
{
    rn_tower *t = ((resnet_model *)state)->tower;
    return i >= 0 && i < t->n_buffers ? t->buffers[i] : NULL;
}

static void resnet_info(void *state, ckd_model_info *out)
{
    const resnet_model *m = state;
    const rn_cfg *c = &m->tower->cfg;
    ckd_model_info i = {
        .struct_size = sizeof i,
        .embed_dim = c->out_dim,
        .image_size = c->image_size,
        .channels = c->channels,
        .vision_width = m->tower->feat_dim,
        .vision_layers = m->tower->n_blocks,
        .vision_heads = c->heads,
        .towers = CKD_TOWER_IMAGE | (m->classifier ? CKD_TOWER_CLASSIFIER : 0),
        /* the fc head runs alone on the pooled features (CIFD's bottleneck sits before it) */
        .feature_dim = m->classifier && c->arch != RN_MODIFIED ? m->tower->feat_dim : 0,
    };
    size_t n = out->struct_size < sizeof i ? out->struct_size : sizeof i;
    uint32_t keep = out->struct_size;
    memcpy(out, &i, n);
    out->struct_size = keep;
}

static ckd_tensor *resnet_encode_image(void *state, ckd_ctx *c, ckd_tensor *pixels, float keep_ratio,
                                       ckd_tower_out *out)
{
    if (keep_ratio < 1.0f)
        return ckd_ctx_fail(c, "resnet: patch masking (keep_ratio %g) needs a ViT image tower", keep_ratio);
    if (out)
        out->n_hidden = 0;
    return rn_tower_forward(((resnet_model *)state)->tower, c, pixels, out ? &out->pooled : NULL);
}

static ckd_tensor *resnet_classify(void *state, ckd_ctx *c, ckd_tensor *features)
{
    resnet_model *m = state;
    if (!m->classifier || m->tower->cfg.arch == RN_MODIFIED)
        return ckd_ctx_fail(c, "resnet: only a torchvision-form classifier has a separate head");
    return rn_tower_head(m->tower, c, features);
}

/* A file, a sharded index, a PyTorch checkpoint, or a model directory
 * (model.safetensors, open_clip_visual.safetensors, open_clip_model.safetensors,
 * open_clip_pytorch_model.bin, pytorch_model.bin — the first present). */
static int resnet_load(void *state, const char *path, ckd_error *err)
{
    static const char *const names[] = {"model.safetensors.index.json", "model.safetensors",
                                        "open_clip_visual.safetensors", "open_clip_model.safetensors",
                                        "open_clip_pytorch_model.bin", "pytorch_model.bin"};
    char file[4096];
    snprintf(file, sizeof file, "%s", path);
    FILE *probe = NULL;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(file, sizeof file, "%s/%s", path, names[i]);
        if ((probe = fopen(file, "rb")))
            break;
    }
    if (probe)
        fclose(probe);
    else
        snprintf(file, sizeof file, "%s", path);
    ckd_safetensors *st = ckd_st_open(file, err);
    if (!st)
        return -1;
    int rc = rn_tower_load(((resnet_model *)state)->tower, st, file, err);
    ckd_st_close(st);
    return rc;
}

static int resnet_save(void *state, const char *path, ckd_error *err)
{
    ckd_st_writer *w = ckd_st_writer_new();
    if (!w)
        return ckd_errorf(err, "%s: out of memory", path);
    int rc = rn_tower_add_to_writer(((resnet_model *)state)->tower, w, err) || ckd_st_writer_save(w, path, err);
    ckd_st_writer_free(w);
    return rc ? -1 : 0;
}

static const ckd_model_vtable resnet_vtable = {
    .struct_size = sizeof(ckd_model_vtable),
    .create = resnet_create,
    .destroy = resnet_destroy,
    .n_params = resnet_n_params,
    .param = resnet_param,
    .info = resnet_info,
    .encode_image = resnet_encode_image,
    .load = resnet_load,
    .save = resnet_save,
    .n_buffers = resnet_n_buffers,
    .buffer = resnet_buffer,
    .classify = resnet_classify,
};

static const ckd_plugin_descriptor resnet_descriptor = {
    .abi_major = CKD_PLUGIN_ABI_MAJOR,
    .struct_size = sizeof(ckd_plugin_descriptor),
    .kind = CKD_PLUGIN_MODEL,
    .name = "resnet",
    .version = "1.0",
    .summary = "ResNet image encoder or classifier: torchvision (Basic/Bottleneck) or CLIP's ModifiedResNet",
    .params_schema = resnet_schema,
    .model = &resnet_vtable,
};

CKD_PLUGIN_DEFINE(resnet_descriptor)
