/* clip — the CLIP task loss: ½[CE(λ_s n(s_img) n(s_txt)ᵀ) + CE(transpose)],
 * λ_s = exp(θ_s). It owns nothing: θ_s is the student's parameter. */
#include "common.h"

#define CLIP_READS (CKD_NEED_S_IMG | CKD_NEED_S_TXT | CKDL_USE_S_SCALE)

static int clip_create(const ckd_params *params, const ckd_loss_dims *dims, ckd_rng *rng, void **out,
                       ckd_error *err)
{
    (void)params;
    (void)rng;
    ckdl_state *s = ckdl_state_new("clip", dims, err);
    if (!s || ckdl_need_dims(s, 0, err))
        return ckdl_fail_create(s, out);
    *out = s;
    return 0;
}

static ckd_tensor *clip_forward(void *state, ckd_ctx *c, const ckd_loss_batch *b)
{
    if (!ckdl_check_batch(c, state, b, CLIP_READS))
        return NULL;
    ckd_tensor *img = ckdl_student_n(c, b->s_img, b->s_img_n);
    ckd_tensor *txt = ckdl_student_n(c, b->s_txt, b->s_txt_n);
    return ckdl_clip_ce(c, ckdl_sim(c, img, txt, ckd_exp(c, b->s_logit_scale)));
}

CKDL_LOSS_PLUGIN("clip", "CLIP: symmetric image-text contrastive loss of the student (CLIP-KD task family)",
                 CKDL_SCHEMA_NONE, CLIP_READS, clip_create, clip_forward)
