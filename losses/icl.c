/* icl — CLIP-KD's interactive contrastive learning: the student's embeddings
 * are anchors against the teacher's embeddings of the other modality,
 *   ½[CE(c s̃_img t_txtᵀ) + CE(c s̃_txt t_imgᵀ)],  s̃ = n(P s),
 * with a learned scale c (`icl_scale`, init ln(1/0.07)). The release uses c
 * raw — neither exponentiated nor clamped — and so does the default here;
 * "scale": "exp" uses exp(c) like the CLIP logit scale. */
#include "common.h"

#define ICL_READS (CKD_NEED_S_IMG | CKD_NEED_S_TXT | CKD_NEED_T_IMG | CKD_NEED_T_TXT)

static const char *const icl_scale_modes[] = {"raw", "exp"};
enum { ICL_RAW, ICL_EXP };

static int icl_create(const ckd_params *params, const ckd_loss_dims *dims, ckd_rng *rng, void **out,
                      ckd_error *err)
{
    ckdl_state *s = ckdl_state_new("icl", dims, err);
    if (!s || ckdl_need_dims(s, 1, err) || ckdl_read_enum(s, params, "scale", icl_scale_modes, 2, err) ||
        ckdl_add_projections(s, 1, rng, err) || ckdl_add_scale(s, "icl_scale", err))
        return ckdl_fail_create(s, out);
    *out = s;
    return 0;
}

static ckd_tensor *icl_forward(void *state, ckd_ctx *c, const ckd_loss_batch *b)
{
    ckdl_state *s = state;
    if (!ckdl_check_batch(c, s, b, ICL_READS))
        return NULL;
    ckd_tensor *img = ckdl_project(c, s, "proj_img", b->s_img, b->s_img_n);
    ckd_tensor *txt = ckdl_project(c, s, "proj_txt", b->s_txt, b->s_txt_n);
    ckd_tensor *theta = ckdl_find(s, "icl_scale", NULL);
    ckd_tensor *scale = s->option == ICL_EXP ? ckd_exp(c, theta) : theta;
    ckd_tensor *i2t = ckdl_ce_diag(c, ckdl_sim(c, img, b->t_txt, scale));
    ckd_tensor *t2i = ckdl_ce_diag(c, ckdl_sim(c, txt, b->t_img, scale));
    return ckd_scale(c, ckd_add(c, i2t, t2i), 0.5f);
}

CKDL_LOSS_PLUGIN("icl",
                 "ICL: student embeddings contrasted against the teacher's other-modality embeddings (CLIP-KD "
                 "contrastive family)",
                 "{\"type\":\"object\",\"properties\":{\"scale\":{\"type\":\"string\",\"default\":\"raw\","
                 "\"enum\":[\"raw\",\"exp\"],\"description\":\"how the learned scale icl_scale multiplies the "
                 "logits: raw (as the CLIP-KD release) or exp(icl_scale)\"}}}",
                 ICL_READS, icl_create, icl_forward)
