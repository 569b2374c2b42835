/* cifd_cls — CIFD's student loss for classifiers (Saidutta et al. 2024, eq 9;
 * the reference's cifd.md §2-3, A4-A6), without its label term (the recipe
 * adds `ce` with weight λ_CE: labels are not a teacher and are never dropped):
 *
 *   Ŵ  = the student's features through the bottleneck (s_img_noisy: the host
 *        adds U[−½, ½) noise while training and computes the student's logits
 *        V̂_S from Ŵ with the student's own head — the IBM's decoder),
 *   Û  = n(P Ŵ)  (P: Linear to the teacher width, `proj_img.*`; the identity
 *        when the widths agree),
 *   loss = λ_KL · [m_T KL_τ(V̂_T ‖ V̂_S) + Σ_n λ_n m_n KL_τ(V̂_n ‖ V̂_S)]
 *        + w_emb · [m_T D(Û, X) + Σ_n λ_n m_n D(Û, X̂_n)]
 *        + λ_I · (1/N) Σ_i Σ_c −log r(Ŵ_ic),
 *
 * with X the teacher's normalised features (t_img), V̂_T its class logits, X̂_n
 * and V̂_n the n-th rate-distortion assistant's normalised reconstruction of X
 * and its class logits (a_img, a_logits; λ_n = a_weight), D = mse (a mean
 * over elements, A2), KL_τ = τ² · KL of the softened distributions (A5), r the
 * factorized density of the bottleneck (`ibm.*`). KD dropout (A6): while
 * training, each guidance source — the teacher, each assistant — is dropped
 * for the step (its KL and feature terms together, m = 0) with probability
 * p, drawn from the context's RNG; never at inference.
 *
 * Layouts: s_img_noisy [N, Ds], t_img [N, Dt], s_logits / t_logits [N, K],
 * a_img [A, N, Dt], a_logits [A, N, K]. */
#include "common.h"

#define CIFD_CLS_READS (CKD_NEED_S_IMG_NOISY | CKD_NEED_S_LOGITS | CKD_NEED_T_IMG | CKD_NEED_T_LOGITS)
enum { W_KL, W_EMB, W_I, W_DROP };

#define CIFD_CLS_SCHEMA                                                                                          \
    "{\"type\":\"object\",\"properties\":{"                                                                      \
    "\"lambda_kl\":{\"type\":\"number\",\"default\":1,\"minimum\":0,\"maximum\":1000,"                         \
    "\"description\":\"weight of the KL terms to the teacher's and the assistants' class probabilities\"},"    \
    "\"w_emb\":{\"type\":\"number\",\"default\":100,\"minimum\":0,\"maximum\":100000,"                         \
    "\"description\":\"weight of the feature-matching terms D(Û, X) and D(Û, X̂_n)\"},"                          \
    "\"lambda_i\":{\"type\":\"number\",\"default\":0.005,\"minimum\":0,\"maximum\":1000,"                      \
    "\"description\":\"weight of the bottleneck's rate −log r(Ŵ), in nats per sample (the paper's λ_I)\"},"    \
    CKDL_SCHEMA_TAU_PROP(2, "softmax temperature of the KL terms") ","                                          \
    "\"kd_dropout\":{\"type\":\"number\",\"default\":0.25,\"minimum\":0,\"maximum\":0.99,"                     \
    "\"description\":\"probability that a guidance source (the teacher, each assistant) sits out a training "  \
    "step\"},"                                                                                                   \
    "\"ibm\":{\"type\":\"boolean\",\"default\":true,"                                                            \
    "\"description\":\"the information bottleneck: noise on the student's features while training (added by " \
    "the host, before the student's head) and its rate; false leaves plain KD and feature matching\"}}}"

static int cifd_cls_create(const ckd_params *params, const ckd_loss_dims *dims, ckd_rng *rng, void **out,
                           ckd_error *err)
{
    ckdl_state *s = ckdl_state_new("cifd_cls", dims, err);
    if (!s || ckdl_read_tau(s, params, 2.0, err))
        return ckdl_fail_create(s, out);
    static const char *const keys[] = {"lambda_kl", "w_emb", "lambda_i", "kd_dropout"};
    static const double defaults[] = {1, 100, 0.005, 0.25};
    for (int i = 0; i < 4; i++) {
        s->weight[i] = ckd_params_number(params, keys[i], defaults[i]);
        if (!(s->weight[i] >= 0) || !isfinite(s->weight[i]) || (i == W_DROP && s->weight[i] >= 1)) {
            ckd_errorf(err, "cifd_cls: parameter %s must be a non-negative number%s, got %g", keys[i],
                       i == W_DROP ? " below 1" : "", s->weight[i]);
            return ckdl_fail_create(s, out);
        }
    }
    /* the bottleneck: its density (ibm.*) and rate term; without it neither exists */
    int ibm = ckd_params_bool(params, "ibm", 1);
    if (ckdl_need_dims(s, 1, err) || ckdl_add_projections(s, 0, rng, err) ||
        (ibm && ckdl_add_density(s, "ibm", rng, err)))
        return ckdl_fail_create(s, out);
    *out = s;
    return 0;
}

/* One guidance source's terms, λ_KL · KL_τ(v ‖ V̂_S) + w_emb · D(Û, x), times
 * its weight; NULL logits (an assistant without a class head) leave the
 * feature term alone. */
static ckd_tensor *source(ckd_ctx *c, const ckdl_state *s, ckd_tensor *uhat, ckd_tensor *x, ckd_tensor *v,
                          ckd_tensor *s_logits, double weight)
{
    ckd_tensor *d = ckd_scale(c, ckd_mse(c, uhat, x), (float)(s->weight[W_EMB] * weight));
    if (!v)
        return d;
    return ckd_add(c, d, ckd_scale(c, ckdl_kl_tau(c, v, s_logits, s->tau), (float)(s->weight[W_KL] * weight)));
}

/* Row block k of an [A, N, D] tensor, as [N, D]. */
static ckd_tensor *block(ckd_ctx *c, ckd_tensor *a, int64_t k)
{
    return a ? ckd_reshape(c, ckd_slice(c, a, 0, k, 1), 2, (const int64_t[]){a->shape[1], a->shape[2]}) : NULL;
}

/* KD dropout: whether a source takes part in this step. */
static int kept(ckd_ctx *c, const ckdl_state *s)
{
    return !ckd_ctx_training(c) || s->weight[W_DROP] <= 0 || ckd_rng_uniform(ckd_ctx_rng(c)) >= s->weight[W_DROP];
}

static ckd_tensor *cifd_cls_forward(void *state, ckd_ctx *c, const ckd_loss_batch *b)
{
    ckdl_state *s = state;
    if (!ckdl_check_batch(c, s, b, CIFD_CLS_READS))
        return NULL;
    ckd_tensor *w = b->s_img_noisy;
    ckd_tensor *uhat = ckdl_project(c, s, "proj_img", w, NULL);
    /* Every term is built (a dropped source with weight 0), so the tape and
     * the result's shape do not depend on the draws. */
    ckd_tensor *loss = source(c, s, uhat, b->t_img, b->t_logits, b->s_logits, kept(c, s) ? 1.0 : 0.0);
    int has = CKD_LOSS_BATCH_HAS(b, a_logits) && b->n_assistants > 0 && b->a_weight && b->a_img;
    for (int64_t k = 0; has && k < b->n_assistants; k++) {
        double wk = kept(c, s) ? (double)b->a_weight[k] : 0.0;
        loss = ckd_add(c, loss, source(c, s, uhat, block(c, b->a_img, k), block(c, b->a_logits, k), b->s_logits, wk));
    }
    if (ckdl_find(s, "ibm", "matrices"))
        loss = ckd_add(c, loss, ckdl_rate(c, s, "ibm", w, s->weight[W_I]));
    return loss;
}

CKDL_LOSS_PLUGIN("cifd_cls",
                 "CIFD for classifiers: KL and feature matching to the teacher and its rate-distortion assistants "
                 "with KD dropout, and the information bottleneck before the student's head (CIFD eq 9, less its "
                 "CE term)",
                 CIFD_CLS_SCHEMA, CIFD_CLS_READS, cifd_cls_create, cifd_cls_forward)
