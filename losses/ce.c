/* ce — the student's supervised loss: mean cross-entropy of its class
 * logits against the labels (the label term of Hinton KD and of
 * CLIP-Embed-KD). */
#include "common.h"

#define CE_READS (CKD_NEED_S_LOGITS | CKD_NEED_LABELS)

static int ce_create(const ckd_params *params, const ckd_loss_dims *dims, ckd_rng *rng, void **out,
                     ckd_error *err)
{
    (void)params;
    (void)rng;
    ckdl_state *s = ckdl_state_new("ce", dims, err);
    if (!s)
        return ckdl_fail_create(s, out);
    *out = s;
    return 0;
}

static ckd_tensor *ce_forward(void *state, ckd_ctx *c, const ckd_loss_batch *b)
{
    if (!ckdl_check_batch(c, state, b, CE_READS))
        return NULL;
    return ckd_cross_entropy(c, b->s_logits, b->labels);
}

CKDL_LOSS_PLUGIN("ce", "CE: cross-entropy of the student's class logits with the labels (supervised term)",
                 CKDL_SCHEMA_NONE, CE_READS, ce_create, ce_forward)
