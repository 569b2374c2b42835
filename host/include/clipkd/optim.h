/* clipkd/optim.h — AdamW, as torch.optim.AdamW computes it.
 *
 * Per parameter p with gradient g, at step t (1-based):
 *     p ← p · (1 − lr · wd)                       decoupled weight decay
 *     m ← β1 m + (1 − β1) g,   v ← β2 v + (1 − β2) g²
 *     p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
 * (torch's non-fused, non-amsgrad formula, bias corrections included exactly
 * where torch puts them). The element math is double; parameters and the two
 * moments are stored as float. Each parameter has its own weight decay, so the
 * caller decides which parameters decay (ckd_adamw_default_decay is the rule
 * of HF training scripts and of clipkd's fixtures). Every parameter steps,
 * including those whose gradient is zero (ckd_param_new allocates gradients,
 * so there is no "no gradient" state as torch's .grad None; a parameter
 * without a gradient buffer is skipped).
 */
#ifndef CLIPKD_OPTIM_H
#define CLIPKD_OPTIM_H

#include <stdint.h>

#include "clipkd/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ckd_adamw_opts {
    double lr;            /* default 1e-3 (changeable per step: ckd_adamw_set_lr) */
    double beta1, beta2;  /* defaults 0.9, 0.999 */
    double eps;           /* default 1e-8 */
} ckd_adamw_opts;

void ckd_adamw_default_opts(ckd_adamw_opts *o);

typedef struct ckd_adamw ckd_adamw;

/* params: n tensors (borrowed; must outlive the optimizer); weight_decay: n
 * values (NULL: 0 for all). Returns NULL with err set on bad options (lr < 0,
 * betas outside [0, 1), eps <= 0) or out of memory. */
ckd_adamw *ckd_adamw_new(ckd_tensor *const *params, const double *weight_decay, int n, const ckd_adamw_opts *opts,
                         ckd_error *err);
void ckd_adamw_free(ckd_adamw *o);

void ckd_adamw_set_lr(ckd_adamw *o, double lr);
double ckd_adamw_lr(const ckd_adamw *o);

/* One update of every parameter from its current gradient (gradients are not
 * zeroed: call ckd_param_zero_grad). Uses the library's thread count. */
void ckd_adamw_step(ckd_adamw *o);

/* Steps taken by parameter i (torch keeps one count per parameter). */
int64_t ckd_adamw_param_steps(const ckd_adamw *o, int i);
/* The moments of parameter i ([p->n] floats each), for checkpoints; writable
 * so that a resumed run can restore them (with ckd_adamw_set_param_steps). */
float *ckd_adamw_exp_avg(ckd_adamw *o, int i);
float *ckd_adamw_exp_avg_sq(ckd_adamw *o, int i);
void ckd_adamw_set_param_steps(ckd_adamw *o, int i, int64_t steps);

/* HF's rule: decay parameters of ≥ 2 dimensions whose name does not contain
 * "embedding"; biases, LayerNorm weights, embeddings and logit_scale do not. */
int ckd_adamw_default_decay(const ckd_tensor *p);

#ifdef __cplusplus
}
#endif
#endif
