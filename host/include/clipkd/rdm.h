/* clipkd/rdm.h — CIFD's rate-distortion modules (RDMs), the cheap teaching
 * assistants of Saidutta et al. 2024 (the reference's cifd.md §1).
 *
 * An RDM is a small MLP on a teacher embedding X [N, D] with a learned
 * bottleneck:
 *     H  = relu(enc · X + b)                 D -> hidden
 *     Y  = bottleneck · H + b                hidden -> B (the bottleneck width)
 *     Ŷ  = Y + u, u ~ U[−½, ½)  while training;  round(Y) otherwise
 *     X̂  = dec · Ŷ + b   (then relu when out_relu: ResNet features are ≥ 0;
 *                         CLIP embeddings are signed, so no relu there)
 *     V̂  = head · X̂ + b                       class logits, only when n_classes > 0
 * and a factorized density q over Ŷ's B channels (ckd_factorized_nll). Stage
 * 1 trains it alone on the teacher's embeddings with
 *     L = R · mse(X, X̂) + (1/N) Σ_i Σ_c −log q(Ŷ_ic)
 * (mse a mean over elements, the rate in nats per sample: cifd.md A2); a
 * larger R buys more rate for less distortion, a "bigger" assistant. A
 * module with a class head (the classifier form, eq 5) adds
 *     λ_CE · CE(V̂, labels) + λ_KL · τ² · KL(softmax(V̂_T/τ) ‖ softmax(V̂/τ))
 * with V̂_T the teacher's class logits (A5: λ_CE = λ_KL = 1, τ = 2).
 *
 * Parameters (PyTorch's Linear layout, [out, in]): enc.weight/bias,
 * bottleneck.weight/bias, dec.weight/bias, head.weight/bias (with classes),
 * entropy.matrices/biases/factors. Linear layers start as torch's nn.Linear
 * (uniform in ±1/√fan_in), the density as CompressAI's.
 */
#ifndef CLIPKD_RDM_H
#define CLIPKD_RDM_H

#include <stdint.h>

#include <jansson.h>

#include "clipkd/error.h"
#include "clipkd/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ckd_rdm_config {
    int64_t in_dim;     /* D, the teacher embedding width */
    int64_t hidden;     /* width of the two hidden layers around the bottleneck */
    int64_t bottleneck; /* B, the bottleneck width (0: hidden) */
    int64_t n_classes;  /* class head width; 0: none */
    int out_relu;       /* relu on X̂ (ResNet-style features) */
} ckd_rdm_config;

typedef struct ckd_rdm ckd_rdm;

/* Parameters initialised from seed; NULL with err set on bad widths. */
ckd_rdm *ckd_rdm_new(const ckd_rdm_config *cfg, uint64_t seed, ckd_error *err);
void ckd_rdm_free(ckd_rdm *r);
const ckd_rdm_config *ckd_rdm_config_of(const ckd_rdm *r);
int ckd_rdm_n_params(const ckd_rdm *r);
ckd_tensor *ckd_rdm_param(const ckd_rdm *r, int i);

/* What a forward pass gives: Ŷ [N, B], X̂ [N, D], −log q(Ŷ) [N, B] and the
 * class logits [N, K] (NULL without a head). */
typedef struct ckd_rdm_out {
    ckd_tensor *y_hat, *x_hat, *nll, *logits;
} ckd_rdm_out;

/* x [N, D]. noise: N·B values to add to Y instead of the context's draw
 * (for checks that must see the same noise twice), or NULL: noise from the
 * context's RNG when it is in training mode, rounding otherwise. Returns 0,
 * or -1 with the context's error. */
int ckd_rdm_forward(ckd_rdm *r, ckd_ctx *c, ckd_tensor *x, const float *noise, ckd_rdm_out *out);

/* Stage 1's objective R · mse(x, X̂) + (1/N) Σ −log q(Ŷ) as a scalar on the
 * tape; *distortion and *rate (either may be NULL) receive its two parts,
 * mse and nats per sample. */
ckd_tensor *ckd_rdm_loss(ckd_ctx *c, const ckd_rdm_out *o, ckd_tensor *x, double R, double *distortion,
                         double *rate);

/* The classifier form's terms λ_CE · CE + λ_KL · KL_τ on o->logits (see
 * above); t_logits [N, K] the teacher's. A scalar on the tape; *ce and *kl
 * (either may be NULL) receive the two parts. */
ckd_tensor *ckd_rdm_class_loss(ckd_ctx *c, const ckd_rdm_out *o, const int32_t *labels, ckd_tensor *t_logits,
                               double lambda_ce, double lambda_kl, double tau, double *ce, double *kl);

/* ---- stage 1 on an embedding matrix ---------------------------------------------- */
typedef struct ckd_rdm_train_opts {
    double R;            /* rate-distortion trade-off (default 1) */
    int64_t steps;       /* AdamW steps (default 2000) */
    int64_t batch;       /* rows per step (default 256) */
    double lr;           /* default 1e-3, cosine-decayed to 0 */
    double weight_decay; /* on the Linear weights (default 0) */
    uint64_t seed;       /* batch order and noise (default 0) */
    /* The classifier form, for a module with a class head: each row's label
     * and the teacher's class logits [n, K] (both required then, NULL
     * otherwise), and the weights of eq 5 (defaults 1, 1, τ 2). */
    const int32_t *labels;
    const float *teacher_logits;
    double lambda_ce, lambda_kl, tau;
} ckd_rdm_train_opts;
void ckd_rdm_train_default_opts(ckd_rdm_train_opts *o);

/* Rate and distortion of X under the RDM in inference mode (rounded
 * bottleneck): mse(X, X̂) and the mean −log q per sample in nats; with a
 * class head and labels, the head's top-1 accuracy in [0, 1] (else −1). */
typedef struct ckd_rdm_report {
    double distortion, rate, accuracy;
    int64_t n;
} ckd_rdm_report;

/* Trains on rows X [n, D] (row-major floats, e.g. a teacher-embedding cache).
 * Returns 0, or -1 with err set. */
int ckd_rdm_train(ckd_rdm *r, const float *X, int64_t n, const ckd_rdm_train_opts *o, ckd_error *err);
int ckd_rdm_evaluate(ckd_rdm *r, const float *X, const int32_t *labels, int64_t n, ckd_rdm_report *rep,
                     ckd_error *err);

/* ---- as a directory (an "rdm" run's final/) ------------------------------------- */
/* dir/model.safetensors and dir/config.json {"rdm": {in_dim, hidden,
 * bottleneck, n_classes, out_relu} plus extra's keys (may be NULL)}; dir
 * must exist. */
int ckd_rdm_save(const ckd_rdm *r, const char *dir, const json_t *extra, ckd_error *err);
/* The module saved in dir; *config (may be NULL) receives config.json's
 * "rdm" object (a new reference). NULL with err naming the file on a
 * missing or malformed file, or a tensor of the wrong shape. */
ckd_rdm *ckd_rdm_load(const char *dir, json_t **config, ckd_error *err);

#ifdef __cplusplus
}
#endif
#endif
