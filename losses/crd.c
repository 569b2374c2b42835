/* crd — CLIP-KD's relation distillation (the release's `ckd_loss`):
 *   S = λ_s n(s_img) n(s_txt)ᵀ,  T = λ_t t_img t_txtᵀ,
 *   loss = ½[KL(T ‖ S; τ) + KL(Tᵀ ‖ Sᵀ; τ)].
 * No projection: the student's own similarity matrix is matched, so the
 * widths may differ freely. */
#include "common.h"

#define CRD_READS \
    (CKD_NEED_S_IMG | CKD_NEED_S_TXT | CKD_NEED_T_IMG | CKD_NEED_T_TXT | CKDL_USE_S_SCALE | CKDL_USE_T_SCALE)

static int crd_create(const ckd_params *params, const ckd_loss_dims *dims, ckd_rng *rng, void **out,
                      ckd_error *err)
{
    (void)rng;
    ckdl_state *s = ckdl_state_new("crd", dims, err);
    if (!s || ckdl_need_dims(s, 1, err) || ckdl_read_tau(s, params, 1.0, err))
        return ckdl_fail_create(s, out);
    *out = s;
    return 0;
}

static ckd_tensor *crd_forward(void *state, ckd_ctx *c, const ckd_loss_batch *b)
{
    ckdl_state *s = state;
    if (!ckdl_check_batch(c, s, b, CRD_READS))
        return NULL;
    ckd_tensor *img = ckdl_student_n(c, b->s_img, b->s_img_n);
    ckd_tensor *txt = ckdl_student_n(c, b->s_txt, b->s_txt_n);
    ckd_tensor *S = ckdl_sim(c, img, txt, ckd_exp(c, b->s_logit_scale));
    ckd_tensor *T = ckdl_sim(c, b->t_img, b->t_txt, ckd_exp(c, b->t_logit_scale));
    ckd_tensor *i2t = ckdl_kl_tau(c, T, S, s->tau);
    ckd_tensor *t2i = ckdl_kl_tau(c, ckd_transpose(c, T, 0, 1), ckd_transpose(c, S, 0, 1), s->tau);
    return ckd_scale(c, ckd_add(c, i2t, t2i), 0.5f);
}

CKDL_LOSS_PLUGIN("crd",
                 "CRD: KL between student and teacher image-text similarity distributions (CLIP-KD relation family)",
                 "{\"type\":\"object\",\"properties\":{" CKDL_SCHEMA_TAU_PROP(1, "softmax temperature") "}}",
                 CRD_READS, crd_create, crd_forward)
