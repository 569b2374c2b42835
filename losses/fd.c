/* fd — CLIP-KD's feature distillation:
 *   mse(s̃_img, t_img) + mse(s̃_txt, t_txt),  s̃ = n(P s),
 * each mse a mean over all N·Dt elements. P (proj_img, proj_txt) exists only
 * when the student and teacher widths differ. */
#include "common.h"

#define FD_READS (CKD_NEED_S_IMG | CKD_NEED_S_TXT | CKD_NEED_T_IMG | CKD_NEED_T_TXT)

static int fd_create(const ckd_params *params, const ckd_loss_dims *dims, ckd_rng *rng, void **out,
                     ckd_error *err)
{
    (void)params;
    ckdl_state *s = ckdl_state_new("fd", dims, err);
    if (!s || ckdl_need_dims(s, 1, err) || ckdl_add_projections(s, 1, rng, err))
        return ckdl_fail_create(s, out);
    *out = s;
    return 0;
}

static ckd_tensor *fd_forward(void *state, ckd_ctx *c, const ckd_loss_batch *b)
{
    ckdl_state *s = state;
    if (!ckdl_check_batch(c, s, b, FD_READS))
        return NULL;
    ckd_tensor *img = ckdl_project(c, s, "proj_img", b->s_img, b->s_img_n);
    ckd_tensor *txt = ckdl_project(c, s, "proj_txt", b->s_txt, b->s_txt_n);
    return ckd_add(c, ckd_mse(c, img, b->t_img), ckd_mse(c, txt, b->t_txt));
}

CKDL_LOSS_PLUGIN("fd",
                 "FD: mean squared error between projected student and teacher embeddings (CLIP-KD feature family)",
                 CKDL_SCHEMA_NONE, FD_READS, fd_create, fd_forward)
