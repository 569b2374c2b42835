/* Multi-head scaled dot-product self-attention (the core between the q/k/v
 * projections and the output projection). */
#include "config.h"

#include <math.h>
#include <string.h>

#include "clipkd/blas.h"
#include "clipkd/ops.h"
#include "tape.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define SHAPE(t, buf) ckd_shape_str((t), (buf), sizeof(buf))

/* Layouts: q, k, v, out [B, T, C] with C = H·D; head h of item b is the
 * column block [h·D, (h+1)·D) of rows b·T .. b·T+T−1, read in place with row
 * stride C (no copies). Saved for backward: P [B, H, T, T].
 *
 * Forward, per (b, h):  S = Q Kᵀ / √D (masked above the diagonal when causal),
 *                       P = softmax(S) row-wise,   O = P V.
 * Backward, per (b, h): dP = G Vᵀ;  dV += Pᵀ G;
 *                       dS = P ∘ (dP − rowsum(dP ∘ P)) / √D;
 *                       dQ += dS K;  dK += dSᵀ Q.
 * (b, h) pairs write disjoint blocks, so they run in parallel (GEMMs inside a
 * parallel region are single-threaded) and the result is the same for any
 * thread count.
 */
typedef struct attn_geom {
    int64_t B, T, C, H, D;
    int causal;
} attn_geom;

static void attn_backward(ckd_ctx *c, ckd_node *n)
{
    ckd_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2];
    const attn_geom *g = n->saved;
    const float *Pall = (const float *)(g + 1);
    /* Each (b, h) block of dq, dk, dv is written by one GEMM, so fresh
     * buffers take beta 0 — unless q, k, v share buffers (self-attention on
     * one tensor), then they are zero-filled and every GEMM accumulates. */
    int distinct = q != k && q != v && k != v, fq = 0, fk = 0, fv = 0;
    float *dq = distinct ? ckdi_grad_buf_ex(c, q, &fq) : ckdi_grad_buf(c, q);
    float *dk = distinct ? ckdi_grad_buf_ex(c, k, &fk) : ckdi_grad_buf(c, k);
    float *dv = distinct ? ckdi_grad_buf_ex(c, v, &fv) : ckdi_grad_buf(c, v);
    int nth = ckdi_op_threads();
    int64_t T = g->T, C = g->C, D = g->D;
    float *scratch = ckd_scratch(c, (size_t)(nth * T * T) * sizeof(float), "attention backward");
    if (!scratch)
        return;
    float scale = 1.0f / sqrtf((float)D);
    const float *G = n->out->grad;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth)
    for (int64_t bh = 0; bh < g->B * g->H; bh++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        int64_t b = bh / g->H, h = bh % g->H, off = b * T * C + h * D;
        const float *P = Pall + bh * T * T;
        float *dP = scratch + tid * T * T;
        if (dv)
            ckd_gemm(1, 0, T, D, T, 1.0f, P, T, G + off, C, fv ? 0.0f : 1.0f, dv + off, C);
        if (!dq && !dk)
            continue;
        ckd_gemm(0, 1, T, T, D, 1.0f, G + off, C, v->data + off, C, 0.0f, dP, T);
        for (int64_t i = 0; i < T; i++) {
            float *r = dP + i * T, s = 0.0f;
            const float *p = P + i * T;
#pragma omp simd reduction(+ : s)
            for (int64_t j = 0; j < T; j++)
                s += r[j] * p[j];
#pragma omp simd
            for (int64_t j = 0; j < T; j++)
                r[j] = p[j] * (r[j] - s) * scale;
        }
        if (dq)
            ckd_gemm(0, 0, T, D, T, 1.0f, dP, T, k->data + off, C, fq ? 0.0f : 1.0f, dq + off, C);
        if (dk)
            ckd_gemm(1, 0, T, D, T, 1.0f, dP, T, q->data + off, C, fk ? 0.0f : 1.0f, dk + off, C);
    }
}

ckd_tensor *ckd_attention(ckd_ctx *c, ckd_tensor *q, ckd_tensor *k, ckd_tensor *v, int heads, int causal)
{
    if (!q || !k || !v || ckd_ctx_failed(c))
        return NULL;
    char s0[64], s1[64], s2[64];
    if (q->ndim != 3 || !ckd_same_shape(q, k) || !ckd_same_shape(q, v))
        return ckd_ctx_fail(c, "attention: q %s, k %s, v %s must all be [B, T, C]", SHAPE(q, s0), SHAPE(k, s1),
                            SHAPE(v, s2));
    if (heads < 1 || q->shape[2] % heads)
        return ckd_ctx_fail(c, "attention: width %lld is not divisible by %d heads", (long long)q->shape[2], heads);
    attn_geom g = {q->shape[0], q->shape[1], q->shape[2], heads, q->shape[2] / heads, causal != 0};
    int64_t T = g.T, C = g.C, D = g.D;
    ckd_tensor *out = ckdi_out_like(c, q);
    attn_geom *saved = out ? ckd_scratch(c, sizeof g + (size_t)(g.B * g.H * T * T) * sizeof(float), "attention") : NULL;
    if (!saved)
        return NULL;
    *saved = g;
    float *Pall = (float *)(saved + 1);
    float scale = 1.0f / sqrtf((float)D);
#pragma omp parallel for schedule(dynamic, 1) num_threads(ckdi_op_threads())
    for (int64_t bh = 0; bh < g.B * g.H; bh++) {
        int64_t b = bh / g.H, h = bh % g.H, off = b * T * C + h * D;
        float *P = Pall + bh * T * T;
        ckd_gemm(0, 1, T, T, D, scale, q->data + off, C, k->data + off, C, 0.0f, P, T);
        for (int64_t i = 0; i < T; i++) {
            float *r = P + i * T;
            int64_t len = g.causal ? i + 1 : T; /* causal: columns > i get probability 0 */
            ckdi_softmax_row(r, r, len, 0);
            for (int64_t j = len; j < T; j++)
                r[j] = 0.0f;
        }
        ckd_gemm(0, 0, T, D, T, 1.0f, P, T, v->data + off, C, 0.0f, out->data + off, C);
    }
    ckd_tensor *in[3] = {q, k, v};
    if (ckdi_needs_grad(c, in, 3)) {
        ckd_node *n = ckdi_record(c, "attention", attn_backward, out, in, 3);
        if (!n)
            return NULL;
        n->saved = saved;
    }
    return out;
}
