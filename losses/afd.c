/* afd — CLIP-KD's augmented feature distillation: student and teacher
 * embeddings are fused per modality and the fused pairs trained with a CLIP
 * loss,
 *   f_img = n(W_img [s̃_img ; t_img] + b_img),  f_txt likewise,
 *   loss = ½[CE(a f_img f_txtᵀ) + CE(transpose)],
 * with W: 2·Dt → Ds (`afd_img.*`, `afd_txt.*`) and a learned scale a
 * (`afd_scale`, init ln(1/0.07), used raw as in the release). The fusion
 * input is [s̃ ; t], 2·Dt wide, so unlike the release this works when the
 * widths differ. */
#include "common.h"

#define AFD_READS (CKD_NEED_S_IMG | CKD_NEED_S_TXT | CKD_NEED_T_IMG | CKD_NEED_T_TXT)

static int afd_create(const ckd_params *params, const ckd_loss_dims *dims, ckd_rng *rng, void **out,
                      ckd_error *err)
{
    (void)params;
    ckdl_state *s = ckdl_state_new("afd", dims, err);
    if (!s || ckdl_need_dims(s, 1, err) || ckdl_add_projections(s, 1, rng, err) ||
        ckdl_add_linear(s, "afd_img", 2 * s->t_dim, s->s_dim, rng, err) ||
        ckdl_add_linear(s, "afd_txt", 2 * s->t_dim, s->s_dim, rng, err) || ckdl_add_scale(s, "afd_scale", err))
        return ckdl_fail_create(s, out);
    *out = s;
    return 0;
}

/* n(W [s̃ ; t] + b) for one modality. */
static ckd_tensor *fuse(ckd_ctx *c, const ckdl_state *s, const char *prefix, ckd_tensor *student,
                        ckd_tensor *teacher)
{
    ckd_tensor *cat = ckd_concat(c, (ckd_tensor *[]){student, teacher}, 2, 1);
    return ckdl_norm(c, ckdl_apply_linear(c, s, prefix, cat));
}

static ckd_tensor *afd_forward(void *state, ckd_ctx *c, const ckd_loss_batch *b)
{
    ckdl_state *s = state;
    if (!ckdl_check_batch(c, s, b, AFD_READS))
        return NULL;
    ckd_tensor *img = fuse(c, s, "afd_img", ckdl_project(c, s, "proj_img", b->s_img, b->s_img_n), b->t_img);
    ckd_tensor *txt = fuse(c, s, "afd_txt", ckdl_project(c, s, "proj_txt", b->s_txt, b->s_txt_n), b->t_txt);
    return ckdl_clip_ce(c, ckdl_sim(c, img, txt, ckdl_find(s, "afd_scale", NULL)));
}

CKDL_LOSS_PLUGIN("afd",
                 "AFD: CLIP loss on fused student-teacher embeddings with learned fusion layers (CLIP-KD "
                 "contrastive family)",
                 CKDL_SCHEMA_NONE, AFD_READS, afd_create, afd_forward)
