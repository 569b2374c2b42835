/* l2 — zero-shot image-encoder distillation (Popp, Metzen, Hein 2024): the
 * mean unsquared distance between projected student and teacher image
 * embeddings, mean_i ‖s̃_img,i − t_img,i‖₂, s̃ = n(P s). Only the image tower
 * is distilled, so only proj_img exists (when the widths differ). */
#include "common.h"

#define L2_READS (CKD_NEED_S_IMG | CKD_NEED_T_IMG)

/* Added under the square root so that a row the student matches exactly has
 * gradient 0 instead of 0/0; far below float32 resolution of any real
 * distance, so the value is unchanged. */
#define L2_SQRT_EPS 1e-12f

static int l2_create(const ckd_params *params, const ckd_loss_dims *dims, ckd_rng *rng, void **out,
                     ckd_error *err)
{
    (void)params;
    ckdl_state *s = ckdl_state_new("l2", dims, err);
    if (!s || ckdl_need_dims(s, 1, err) || ckdl_add_projections(s, 0, rng, err))
        return ckdl_fail_create(s, out);
    *out = s;
    return 0;
}

static ckd_tensor *l2_forward(void *state, ckd_ctx *c, const ckd_loss_batch *b)
{
    ckdl_state *s = state;
    if (!ckdl_check_batch(c, s, b, L2_READS))
        return NULL;
    ckd_tensor *d = ckd_sub(c, ckdl_project(c, s, "proj_img", b->s_img, b->s_img_n), b->t_img);
    ckd_tensor *sq = ckd_add(c, ckd_sum(c, ckd_mul(c, d, d), -1), ckd_scalar(c, L2_SQRT_EPS));
    return ckd_mean_all(c, ckd_sqrt(c, sq));
}

CKDL_LOSS_PLUGIN("l2", "L2: mean Euclidean distance between projected student and teacher image embeddings (zero-shot "
                       "image-encoder distillation)",
                 CKDL_SCHEMA_NONE, L2_READS, l2_create, l2_forward)
