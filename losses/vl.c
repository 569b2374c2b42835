/* vl — zero-shot image-encoder distillation's vision-language loss: the
 * student's projected image embeddings contrasted with the teacher's text
 * embeddings of the captions,
 *   ½[CE(s̃_img uᵀ/τ) + CE(u s̃_imgᵀ/τ)],  u = t_txt, s̃ = n(P s).
 * Only the image tower is distilled, so only proj_img exists. */
#include "common.h"

#define VL_READS (CKD_NEED_S_IMG | CKD_NEED_T_TXT)

static int vl_create(const ckd_params *params, const ckd_loss_dims *dims, ckd_rng *rng, void **out,
                     ckd_error *err)
{
    ckdl_state *s = ckdl_state_new("vl", dims, err);
    if (!s || ckdl_need_dims(s, 1, err) || ckdl_read_tau(s, params, 1.0, err) ||
        ckdl_add_projections(s, 0, rng, err))
        return ckdl_fail_create(s, out);
    *out = s;
    return 0;
}

static ckd_tensor *vl_forward(void *state, ckd_ctx *c, const ckd_loss_batch *b)
{
    ckdl_state *s = state;
    if (!ckdl_check_batch(c, s, b, VL_READS))
        return NULL;
    ckd_tensor *img = ckdl_project(c, s, "proj_img", b->s_img, b->s_img_n);
    ckd_tensor *logits = ckdl_sim(c, img, b->t_txt, NULL);
    return ckdl_clip_ce(c, s->tau == 1.0 ? logits : ckd_scale(c, logits, (float)(1.0 / s->tau)));
}

CKDL_LOSS_PLUGIN("vl", "VL: student image embeddings contrasted with teacher caption embeddings (zero-shot "
                       "image-encoder distillation)",
                 "{\"type\":\"object\",\"properties\":{" CKDL_SCHEMA_TAU_PROP(1, "softmax temperature") "}}",
                 VL_READS, vl_create, vl_forward)
