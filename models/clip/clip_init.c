/* models/clip — initialisation for training from scratch, as HF's
 * CLIPPreTrainedModel._init_weights with initializer_factor 1 and
 * initializer_range 0.02 (open_clip's init differs only in the embeddings'
 * scales):
 *   token / position embeddings, patch embedding   N(0, 0.02)
 *   class embedding                                N(0, Cv^-½)
 *   q, k, v, fc2 weights                           N(0, C^-½ · (2·layers)^-½)
 *   out_proj weights                               N(0, C^-½)
 *   fc1 weights                                    N(0, (2C)^-½)
 *   projections                                    N(0, C_tower^-½)
 *   LayerNorm weight 1, bias 0; linear biases 0; logit_scale = logit_scale_init.
 * Drawn in this order: text tower, image tower, projections (a run's
 * initial weights are part of what its seed reproduces). A ResNet image
 * tower is initialised as open_clip does, when it is built (resnet_build.c). */
#include "config.h"

#include <math.h>

#include "clip.h"

static void normal(ckd_tensor *t, ckd_rng *rng, double std)
{
    for (int64_t i = 0; i < t->n; i++)
        t->data[i] = (float)(std * ckd_rng_normal(rng));
}

static void fill(ckd_tensor *t, float v)
{
    for (int64_t i = 0; i < t->n; i++)
        t->data[i] = v;
}

static void init_layers(clip_layer *L, const clip_tower_cfg *t, ckd_rng *rng)
{
    double C = (double)t->width;
    double in_std = pow(C, -0.5) * pow(2.0 * (double)(t->layers ? t->layers : 1), -0.5);
    double out_std = pow(C, -0.5), fc_std = pow(2.0 * C, -0.5);
    for (int64_t i = 0; i < t->layers; i++) {
        clip_layer *l = &L[i];
        fill(l->ln1_w, 1.0f), fill(l->ln1_b, 0.0f), fill(l->ln2_w, 1.0f), fill(l->ln2_b, 0.0f);
        normal(l->q_w, rng, in_std), fill(l->q_b, 0.0f);
        normal(l->k_w, rng, in_std), fill(l->k_b, 0.0f);
        normal(l->v_w, rng, in_std), fill(l->v_b, 0.0f);
        normal(l->o_w, rng, out_std), fill(l->o_b, 0.0f);
        normal(l->fc1_w, rng, fc_std), fill(l->fc1_b, 0.0f);
        normal(l->fc2_w, rng, in_std), fill(l->fc2_b, 0.0f);
    }
}

static void init_vit(clip_model *m, ckd_rng *rng);

void clip_init_weights(clip_model *m, ckd_rng *rng)
{
    const clip_cfg *c = &m->cfg;
    if (!c->image_only) {
        normal(m->t_tok, rng, 0.02);
        normal(m->t_pos, rng, 0.02);
        init_layers(m->t_layers, &c->text, rng);
        fill(m->t_final_w, 1.0f), fill(m->t_final_b, 0.0f);
    }
    if (!c->resnet) /* a ResNet tower is initialised by rn_tower_new, open_clip's scheme */
        init_vit(m, rng);
    if (!c->image_only) {
        normal(m->t_proj, rng, pow((double)c->text.width, -0.5));
        fill(m->logit_scale, c->logit_scale_init);
    }
}

static void init_vit(clip_model *m, ckd_rng *rng)
{
    const clip_cfg *c = &m->cfg;
    normal(m->v_class, rng, pow((double)c->vision.width, -0.5));
    normal(m->v_patch, rng, 0.02);
    normal(m->v_pos, rng, 0.02);
    fill(m->v_pre_w, 1.0f), fill(m->v_pre_b, 0.0f);
    init_layers(m->v_layers, &c->vision, rng);
    fill(m->v_post_w, 1.0f), fill(m->v_post_b, 0.0f);
    normal(m->v_proj, rng, pow((double)c->vision.width, -0.5));
}
