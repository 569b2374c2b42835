/* mfd — CLIP-KD's masked feature distillation:
 *   mse(n(P s_img_masked), t_img) + mse(n(P s_txt), t_txt),
 * i.e. fd with the student's image embedding taken from a forward pass that
 * sees only CLS and a random (1 − mask_ratio) subset of the patch tokens,
 * while the teacher saw the full image. The masking happens in the host's
 * student forward (CKD_NEED_S_IMG_MASKED; see clipkd/plugin.h): this plugin
 * only declares the fraction, as its parameter mask_ratio, and compares.
 *
 * The released CLIP-KD code overwrites the masked features with a full
 * forward, which makes its MFD equal to FD; clipkd masks for real. With
 * s_img_masked = s_img the loss is exactly fd's. The projections P (proj_img,
 * proj_txt) are fd's: same names, shapes and initialisation, created only
 * when the widths differ, so a checkpoint trained with one loss can be
 * continued with the other. */
#include "common.h"

#define MFD_READS (CKD_NEED_S_IMG_MASKED | CKD_NEED_S_TXT | CKD_NEED_T_IMG | CKD_NEED_T_TXT)

/* The schema has no exclusive maximum, so the "< 1" half of [0, 1) is
 * enforced by create(). */
#define MFD_SCHEMA                                                                                           \
    "{\"type\":\"object\",\"properties\":{\"mask_ratio\":{\"type\":\"number\",\"default\":0.75,"              \
    "\"minimum\":0,\"maximum\":1,\"description\":\"fraction of the patch tokens hidden from the student's "   \
    "image tower, in [0, 1) (CLS is always kept)\"}}}"

static int mfd_create(const ckd_params *params, const ckd_loss_dims *dims, ckd_rng *rng, void **out,
                      ckd_error *err)
{
    ckdl_state *s = ckdl_state_new("mfd", dims, err);
    if (!s)
        return ckdl_fail_create(s, out);
    /* Read here only to refuse a ratio that would leave no patch token (the
     * host reads it again to run the masked forward). */
    double ratio = ckd_params_number(params, "mask_ratio", 0.75);
    if (!(ratio >= 0 && ratio < 1)) {
        ckd_errorf(err, "mfd: parameter mask_ratio must be in [0, 1), got %g", ratio);
        return ckdl_fail_create(s, out);
    }
    if (ckdl_need_dims(s, 1, err) || ckdl_add_projections(s, 1, rng, err))
        return ckdl_fail_create(s, out);
    *out = s;
    return 0;
}

static ckd_tensor *mfd_forward(void *state, ckd_ctx *c, const ckd_loss_batch *b)
{
    ckdl_state *s = state;
    if (!ckdl_check_batch(c, s, b, MFD_READS))
        return NULL;
    /* The host's normalised copies are of the unmasked s_img; the masked
     * embedding is normalised here. */
    ckd_tensor *img = ckdl_project(c, s, "proj_img", b->s_img_masked, NULL);
    ckd_tensor *txt = ckdl_project(c, s, "proj_txt", b->s_txt, b->s_txt_n);
    return ckd_add(c, ckd_mse(c, img, b->t_img), ckd_mse(c, txt, b->t_txt));
}

CKDL_LOSS_PLUGIN("mfd",
                 "MFD: FD with the student's image embedding from a patch-masked forward (CLIP-KD feature family)",
                 MFD_SCHEMA, MFD_READS, mfd_create, mfd_forward)
