/* cifd — CIFD's student loss for CLIP (Saidutta et al. 2024, eqs 10-13; the
 * reference's cifd.md §2-3) with its information-bottleneck module (IBM),
 * per tower m ∈ {image, text}:
 *   Ŵ_m = W_m + u, u ~ U[−½, ½) per element while training; Ŵ_m = W_m otherwise,
 *   Û_m = n(P_m Ŵ_m)   (P_m: Linear to the teacher width, `proj_img.*` /
 *                       `proj_txt.*` as fd's; the identity when the widths are equal),
 *   L_CIFD,m = (1/N) Σ_i [‖Û_m,i − X_m,i‖² + Σ_n λ_n ‖Û_m,i − X̂_n,m,i‖²]
 *              + λ_I · (1/N) Σ_i Σ_c −log r_m(Ŵ_m,ic),
 * X_m the normalised teacher embeddings, X̂_n,m the n-th teaching
 * assistant's (a rate-distortion module's normalised reconstruction of X_m,
 * batch fields a_img / a_txt with weights λ_n = a_weight; none from a host
 * older than ABI minor 2), r_m the factorized density of the
 * tower's bottleneck (`ibm_img.*`, `ibm_txt.*`: matrices [Ds, 24], biases
 * [Ds, 10], factors [Ds, 9]; ckd_factorized_nll), and
 *   L_CL = CE(λ_s Ŝ_I Ŝ_Lᵀ) + CE(transpose)   (the two directions summed, eq 10),
 *   loss = λ_CL · L_CL + L_CIFD,I + L_CIFD,L.
 * Ŝ = Û when the widths are equal (as the paper). When they differ, L_CL uses
 * n(Ŵ) instead, the student's own embedding: P belongs to the loss, not to
 * the exported student, so the space that is evaluated is the one trained
 * contrastively. λ_s = exp(θ_s) is the student's logit scale.
 *
 * Without assistants this is CIFD's "IBM alone" (Table 6). */
#include "common.h"

#define CIFD_READS (CKD_NEED_S_IMG | CKD_NEED_S_TXT | CKD_NEED_T_IMG | CKD_NEED_T_TXT | CKDL_USE_S_SCALE)
#define LAMBDA_CL 0
#define LAMBDA_I 1
#define IBM 2 /* weight[IBM]: 1 with the bottleneck, 0 without (plain feature matching) */

#define CIFD_SCHEMA                                                                                            \
    "{\"type\":\"object\",\"properties\":{"                                                                    \
    "\"lambda_cl\":{\"type\":\"number\",\"default\":0.005,\"minimum\":0,\"maximum\":1000,"                    \
    "\"description\":\"weight of the student's contrastive loss L_CL (the paper's λ_CL)\"},"                   \
    "\"lambda_i\":{\"type\":\"number\",\"default\":0.001,\"minimum\":0,\"maximum\":1000,"                     \
    "\"description\":\"weight of the bottleneck's rate −log r(Ŵ), in nats per sample (the paper's λ_I)\"},"      \
    "\"ibm\":{\"type\":\"boolean\",\"default\":true,"                                                              \
    "\"description\":\"the information bottleneck: noise on the student embedding while training and its rate; "  \
    "false leaves plain feature matching to the teacher and the assistants (the paper's ablation)\"}}}"

static int cifd_create(const ckd_params *params, const ckd_loss_dims *dims, ckd_rng *rng, void **out,
                       ckd_error *err)
{
    ckdl_state *s = ckdl_state_new("cifd", dims, err);
    if (!s)
        return ckdl_fail_create(s, out);
    s->weight[LAMBDA_CL] = ckd_params_number(params, "lambda_cl", 0.005);
    s->weight[LAMBDA_I] = ckd_params_number(params, "lambda_i", 0.001);
    for (int i = 0; i < 2; i++)
        if (!(s->weight[i] >= 0) || !isfinite(s->weight[i])) {
            ckd_errorf(err, "cifd: parameter %s must be a non-negative number, got %g", i ? "lambda_i" : "lambda_cl",
                       s->weight[i]);
            return ckdl_fail_create(s, out);
        }
    s->weight[IBM] = ckd_params_bool(params, "ibm", 1);
    if (ckdl_need_dims(s, 1, err) || ckdl_add_projections(s, 1, rng, err) ||
        (s->weight[IBM] && (ckdl_add_density(s, "ibm_img", rng, err) || ckdl_add_density(s, "ibm_txt", rng, err))))
        return ckdl_fail_create(s, out);
    *out = s;
    return 0;
}

/* Σ_n λ_n (1/N) Σ_i ‖Û_i − X̂_n,i‖² over the assistants a [A, N, Dt] (NULL: 0 terms). */
static ckd_tensor *assistant_terms(ckd_ctx *c, const ckdl_state *s, ckd_tensor *uhat, ckd_tensor *a,
                                   const float *weight, int64_t n_assistants, ckd_tensor *sum)
{
    for (int64_t k = 0; a && k < n_assistants; k++) {
        ckd_tensor *xk = ckd_reshape(c, ckd_slice(c, a, 0, k, 1), 2, uhat->shape);
        sum = ckd_add(c, sum, ckd_scale(c, ckd_mse(c, uhat, xk), (float)((double)weight[k] * (double)s->t_dim)));
    }
    return sum;
}

/* One tower's L_CIFD; *shat receives the embedding L_CL uses. */
static ckd_tensor *tower(ckd_ctx *c, const ckdl_state *s, const char *proj, const char *ibm, ckd_tensor *w,
                         ckd_tensor *x, ckd_tensor *assist, const ckd_loss_batch *b, ckd_tensor **shat)
{
    int ibm_on = s->weight[IBM] != 0;
    ckd_tensor *what = ibm_on && ckd_ctx_training(c) ? ckd_quantize(c, w, CKD_QUANT_NOISE) : w;
    ckd_tensor *uhat = ckdl_project(c, s, proj, what, NULL);
    *shat = ckdl_find(s, proj, "weight") ? ckdl_norm(c, what) : uhat;
    /* (1/N) Σ_i ‖Û_i − X_i‖² is mse · Dt. */
    ckd_tensor *dist = ckd_scale(c, ckd_mse(c, uhat, x), (float)s->t_dim);
    if (uhat && assist)
        dist = assistant_terms(c, s, uhat, assist, b->a_weight, b->n_assistants, dist);
    if (!ibm_on)
        return dist;
    /* The rate, summed over channels, per sample. */
    return ckd_add(c, dist, ckdl_rate(c, s, ibm, what, s->weight[LAMBDA_I]));
}

static ckd_tensor *cifd_forward(void *state, ckd_ctx *c, const ckd_loss_batch *b)
{
    ckdl_state *s = state;
    if (!ckdl_check_batch(c, s, b, CIFD_READS))
        return NULL;
    /* The assistants, from a host that has them (ABI minor 2). */
    int has = CKD_LOSS_BATCH_HAS(b, a_weight) && b->n_assistants > 0 && b->a_weight;
    ckd_tensor *si = NULL, *st = NULL;
    ckd_tensor *li = tower(c, s, "proj_img", "ibm_img", b->s_img, b->t_img, has ? b->a_img : NULL, b, &si);
    ckd_tensor *lt = tower(c, s, "proj_txt", "ibm_txt", b->s_txt, b->t_txt, has ? b->a_txt : NULL, b, &st);
    ckd_tensor *logits = ckdl_sim(c, si, st, ckd_exp(c, b->s_logit_scale));
    ckd_tensor *cl = ckd_add(c, ckdl_ce_diag(c, logits), ckdl_ce_diag(c, ckd_transpose(c, logits, 0, 1)));
    return ckd_add(c, ckd_scale(c, cl, (float)s->weight[LAMBDA_CL]), ckd_add(c, li, lt));
}

CKDL_LOSS_PLUGIN("cifd",
                 "CIFD: information-bottleneck module (noisy student embedding, learned density, rate term) with "
                 "feature matching to the teacher and its rate-distortion assistants, and a weighted CLIP loss "
                 "(CIFD, CLIP form)",
                 CIFD_SCHEMA, CIFD_READS, cifd_create, cifd_forward)
