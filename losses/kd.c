/* kd — Hinton knowledge distillation on class logits:
 *   KL(z_t ‖ z_s; τ) = τ² · mean_i KL(softmax(z_t,i/τ) ‖ softmax(z_s,i/τ)).
 * For a CLIP teacher z_t are its zero-shot logits over the class prompts,
 * which the host provides as t_logits. τ defaults to 4, the temperature the
 * reference values use (and the usual choice for Hinton KD). */
#include "common.h"

#define KD_READS (CKD_NEED_S_LOGITS | CKD_NEED_T_LOGITS)

static int kd_create(const ckd_params *params, const ckd_loss_dims *dims, ckd_rng *rng, void **out,
                     ckd_error *err)
{
    (void)rng;
    ckdl_state *s = ckdl_state_new("kd", dims, err);
    if (!s || ckdl_read_tau(s, params, 4.0, err))
        return ckdl_fail_create(s, out);
    *out = s;
    return 0;
}

static ckd_tensor *kd_forward(void *state, ckd_ctx *c, const ckd_loss_batch *b)
{
    ckdl_state *s = state;
    if (!ckdl_check_batch(c, s, b, KD_READS))
        return NULL;
    return ckdl_kl_tau(c, b->t_logits, b->s_logits, s->tau);
}

CKDL_LOSS_PLUGIN("kd", "KD: temperature-scaled KL from teacher to student class probabilities (Hinton KD)",
                 "{\"type\":\"object\",\"properties\":{" CKDL_SCHEMA_TAU_PROP(4, "softmax temperature") "}}",
                 KD_READS, kd_create, kd_forward)
