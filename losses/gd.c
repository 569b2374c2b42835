/* gd — CLIP-KD's gradient distillation. For anchors p and keys k with scale
 * λ, the one-directional contrastive loss mean_i −log softmax_j(λ p_i·k_j)[i]
 * has the closed-form gradients
 *   G_p = (λ/N)(P − I) k,   G_k = (λ/N)(P − I)ᵀ p,   P = softmax(λ p kᵀ).
 * The loss matches the student's to the teacher's with four mses: image as
 * anchor (G_p, G_k) and text as anchor (G_p, G_k); s̃ = n(P s) on the student
 * side. Everything is N×N or N×D matmuls: the release's N×D×N tensor for G_k
 * is never built.
 *
 * "scale": "divide" reproduces the released CLIP-KD code, which divides by
 * the logit scale where the derivation multiplies (λ → 1/λ throughout). */
#include "common.h"

#define GD_READS \
    (CKD_NEED_S_IMG | CKD_NEED_S_TXT | CKD_NEED_T_IMG | CKD_NEED_T_TXT | CKDL_USE_S_SCALE | CKDL_USE_T_SCALE)

static const char *const gd_scale_modes[] = {"multiply", "divide"};
enum { GD_MULTIPLY, GD_DIVIDE };

static int gd_create(const ckd_params *params, const ckd_loss_dims *dims, ckd_rng *rng, void **out,
                     ckd_error *err)
{
    ckdl_state *s = ckdl_state_new("gd", dims, err);
    if (!s || ckdl_need_dims(s, 1, err) || ckdl_read_enum(s, params, "scale", gd_scale_modes, 2, err) ||
        ckdl_add_projections(s, 1, rng, err))
        return ckdl_fail_create(s, out);
    *out = s;
    return 0;
}

/* G_p and G_k of the contrastive loss of anchors p [N, D] against keys
 * k [N, D] at scale lam (a scalar tensor); eye is the N×N identity. */
static void contrastive_grads(ckd_ctx *c, ckd_tensor *p, ckd_tensor *k, ckd_tensor *lam, ckd_tensor *eye,
                              ckd_tensor **gp, ckd_tensor **gk)
{
    ckd_tensor *E = ckd_sub(c, ckd_softmax(c, ckdl_sim(c, p, k, lam)), eye);
    ckd_tensor *lam_n = p ? ckd_scale(c, lam, (float)(1.0 / (double)p->shape[0])) : NULL;
    *gp = ckd_mul(c, ckd_matmul(c, E, k), lam_n);
    *gk = ckd_mul(c, ckd_matmul_ex(c, E, 1, p, 0), lam_n);
}

/* λ = exp(θ), or 1/λ = exp(−θ) in the release's "divide" mode. */
static ckd_tensor *gd_scale(ckd_ctx *c, const ckdl_state *s, ckd_tensor *theta)
{
    return ckd_exp(c, s->option == GD_DIVIDE ? ckd_scale(c, theta, -1.0f) : theta);
}

static ckd_tensor *gd_forward(void *state, ckd_ctx *c, const ckd_loss_batch *b)
{
    ckdl_state *s = state;
    if (!ckdl_check_batch(c, s, b, GD_READS))
        return NULL;
    ckd_tensor *img = ckdl_project(c, s, "proj_img", b->s_img, b->s_img_n);
    ckd_tensor *txt = ckdl_project(c, s, "proj_txt", b->s_txt, b->s_txt_n);
    ckd_tensor *ls = gd_scale(c, s, b->s_logit_scale), *lt = gd_scale(c, s, b->t_logit_scale);
    int64_t n = b->s_img->shape[0];
    ckd_tensor *eye = ckd_tensor_zeros(c, 2, (int64_t[]){n, n});
    if (!eye)
        return NULL;
    for (int64_t i = 0; i < n; i++)
        eye->data[i * n + i] = 1.0f;

    /* s/t: student/teacher; ip, tk: image anchors with text keys; tp, ik: the reverse. */
    ckd_tensor *s_ip, *s_tk, *s_tp, *s_ik, *t_ip, *t_tk, *t_tp, *t_ik;
    contrastive_grads(c, img, txt, ls, eye, &s_ip, &s_tk);
    contrastive_grads(c, txt, img, ls, eye, &s_tp, &s_ik);
    contrastive_grads(c, b->t_img, b->t_txt, lt, eye, &t_ip, &t_tk);
    contrastive_grads(c, b->t_txt, b->t_img, lt, eye, &t_tp, &t_ik);
    ckd_tensor *img_anchor = ckd_add(c, ckd_mse(c, s_ip, t_ip), ckd_mse(c, s_tk, t_tk));
    ckd_tensor *txt_anchor = ckd_add(c, ckd_mse(c, s_tp, t_tp), ckd_mse(c, s_ik, t_ik));
    return ckd_add(c, img_anchor, txt_anchor);
}

CKDL_LOSS_PLUGIN("gd",
                 "GD: mse between student and teacher closed-form contrastive-loss gradients (CLIP-KD gradient family)",
                 "{\"type\":\"object\",\"properties\":{\"scale\":{\"type\":\"string\",\"default\":\"multiply\","
                 "\"enum\":[\"multiply\",\"divide\"],\"description\":\"multiply: the gradients of the contrastive "
                 "loss at scale exp(theta) (the derivation); divide: at scale 1/exp(theta), as the released "
                 "CLIP-KD code computes them\"}}}",
                 GD_READS, gd_create, gd_forward)
