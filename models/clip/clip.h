/* models/clip — internal definitions shared by the plugin's files.
 *
 * One ViT image tower and one causal text transformer, as Hugging Face's
 * CLIPModel (= OpenAI CLIP = OpenCLIP's standard ViT CLIP). Every parameter
 * is a ckd_param named as in HF checkpoints; the model keeps them in one
 * array (the vtable's param order) and typed pointers into it. */
#ifndef CKD_MODEL_CLIP_H
#define CKD_MODEL_CLIP_H

#include <stdint.h>

#include "clipkd/plugin.h"
#include "../resnet/resnet.h"

enum { CLIP_ACT_QUICK_GELU = 0, CLIP_ACT_GELU = 1 };

/* One tower's transformer sizes. */
typedef struct clip_tower_cfg {
    int64_t width, layers, heads, mlp_width;
    float ln_eps;
    int act;
} clip_tower_cfg;

typedef struct clip_cfg {
    int64_t embed_dim;
    clip_tower_cfg vision, text;
    int64_t image_size, patch_size, channels;
    int64_t context_length, vocab_size;
    int32_t eos_token_id;   /* 2 = HF's legacy rule: pool at argmax(ids) */
    float logit_scale_init;
    /* vision.arch "modified": CLIP's ModifiedResNet image tower (rn), whose
     * attention pool projects to embed_dim; the ViT fields are unused */
    int resnet;
    rn_cfg rn;
    /* towers "image": no text tower, no logit scale (an image-only student) */
    int image_only;
} clip_cfg;

/* A pre-norm encoder layer (HF CLIPEncoderLayer). Weights [out, in]. */
typedef struct clip_layer {
    ckd_tensor *ln1_w, *ln1_b;
    ckd_tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
    ckd_tensor *ln2_w, *ln2_b;
    ckd_tensor *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} clip_layer;

typedef struct clip_model {
    clip_cfg cfg;
    /* image tower */
    ckd_tensor *v_class;      /* [Cv] */
    ckd_tensor *v_patch;      /* [Cv, channels, P, P], no bias */
    ckd_tensor *v_pos;        /* [n_patches + 1, Cv] */
    ckd_tensor *v_pre_w, *v_pre_b, *v_post_w, *v_post_b;
    clip_layer *v_layers;
    ckd_tensor *v_proj;       /* [E, Cv], no bias */
    /* text tower */
    ckd_tensor *t_tok;        /* [vocab, Ct] */
    ckd_tensor *t_pos;        /* [context_length, Ct] */
    clip_layer *t_layers;
    ckd_tensor *t_final_w, *t_final_b;
    ckd_tensor *t_proj;       /* [E, Ct], no bias */
    ckd_tensor *logit_scale;  /* [] */
    /* the ResNet image tower (cfg.resnet): its parameters are listed in
     * params (from rn_first on) but owned by the tower, with its buffers */
    rn_tower *rn;
    int rn_first;
    /* every parameter above, in creation order */
    ckd_tensor **params;
    int n_params, cap_params;
} clip_model;

static inline int64_t clip_n_patches(const clip_cfg *c)
{
    if (c->patch_size < 1) /* a ResNet image tower */
        return 0;
    int64_t g = c->image_size / c->patch_size;
    return g * g;
}

/* clip_forward.c */
ckd_tensor *clip_encode_image(void *state, ckd_ctx *c, ckd_tensor *pixels, float keep_ratio, ckd_tower_out *out);
ckd_tensor *clip_encode_text(void *state, ckd_ctx *c, const int32_t *ids, int64_t B, int64_t T, ckd_tower_out *out);
/* The row of each sequence that text pooling reads (HF's rule, see clip_forward.c). */
int64_t clip_eot_index(const clip_cfg *cfg, const int32_t *ids, int64_t T);

/* clip_init.c: CLIP's initialisation for training from scratch. */
void clip_init_weights(clip_model *m, ckd_rng *rng);

/* clip_weights.c */
int clip_n_buffers(void *state);
ckd_tensor *clip_buffer(void *state, int i);
int clip_load(void *state, const char *path, ckd_error *err);
int clip_save(void *state, const char *path, ckd_error *err);

#endif
