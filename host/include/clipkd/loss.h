/* clipkd/loss.h — instantiating loss plugins, and checking them.
 *
 * ckd_loss wraps a loss plugin with its validated parameters, its state and
 * its owned parameters. The same code serves training, `clipkd loss-eval`
 * (evaluate on recorded tensors, write the loss and every gradient — for
 * comparing a plugin with a PyTorch reference) and `clipkd gradcheck` (random
 * inputs, finite differences on every input and owned parameter).
 *
 * Recorded inputs use these names (those of the kd fixtures): input.s_img,
 * input.s_txt [N, Ds]; input.t_img, input.t_txt [N, Dt];
 * input.student_logit_scale, input.teacher_logit_scale (scalars θ);
 * input.labels [N] (I32/I64); input.class_txt [K, Dt]; input.centroids [K, Dt];
 * input.s_logits, input.t_logits [N, K]; input.s_img_masked [N, Ds];
 * input.s_img_noisy [N, Ds]; the assistants' input.a_img, input.a_txt
 * [A, N, Dt], input.a_logits [A, N, K] and input.a_weight [A]; and an owned
 * parameter P is read from input.P when present.
 */
#ifndef CLIPKD_LOSS_H
#define CLIPKD_LOSS_H

#include <jansson.h>

#include "clipkd/gradcheck.h"
#include "clipkd/registry.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ckd_loss ckd_loss;

/* Validates params against the plugin's schema (messages prefixed by where),
 * then creates the loss with owned parameters initialised from seed. */
ckd_loss *ckd_loss_new(const ckd_plugin *p, const json_t *params, const char *where, const ckd_loss_dims *dims,
                       uint64_t seed, ckd_error *err);
void ckd_loss_free(ckd_loss *l);
const char *ckd_loss_name(const ckd_loss *l);
uint32_t ckd_loss_needs(const ckd_loss *l);
int ckd_loss_n_params(const ckd_loss *l);
ckd_tensor *ckd_loss_param(const ckd_loss *l, int i);
/* "s_img, t_txt" for the needs bits; returns buf. */
const char *ckd_loss_needs_str(uint32_t needs, char *buf, size_t cap);
/* Runs the loss; checks that the batch holds what the loss needs and that
 * the result is a scalar. NULL with the context's error otherwise. */
ckd_tensor *ckd_loss_forward(ckd_loss *l, ckd_ctx *c, const ckd_loss_batch *b);

/* `clipkd loss-eval`: writes "loss" and "grad.<name>" for every student
 * input present (s_img, s_txt, student_logit_scale, s_logits, s_img_masked,
 * s_img_noisy) and every owned parameter. */
int ckd_loss_eval_file(const ckd_plugin *p, const json_t *params, const char *inputs_path, const char *out_path,
                       ckd_error *err);

typedef struct ckd_loss_check_opts {
    int64_t n, s_dim, t_dim, n_classes; /* defaults 8, 16, 24, 5 */
    uint64_t seed;                      /* default 1 */
    ckd_gradcheck_opts gc;              /* defaults: see ckd_gradcheck_default_opts */
} ckd_loss_check_opts;

void ckd_loss_check_default_opts(ckd_loss_check_opts *o);
/* `clipkd gradcheck`: random inputs of the right shapes; checks every student
 * input and owned parameter. Returns 0 pass, 1 mismatch, -1 error. */
int ckd_loss_gradcheck(const ckd_plugin *p, const json_t *params, const ckd_loss_check_opts *opts,
                       ckd_gradcheck_report *rep, ckd_error *err);

#ifdef __cplusplus
}
#endif
#endif
