/* Matrix products: matmul, linear, conv2d. All through ckd_gemm (BLIS). */
#include "config.h"

#include <string.h>

#include "clipkd/blas.h"
#include "clipkd/ops.h"
#include "tape.h"

#define SHAPE(t, buf) ckd_shape_str((t), (buf), sizeof(buf))

/* ---- matmul ------------------------------------------------------------------
 * C [M, N] = op(A) · op(B). A is [M, K] (leading dims are rows) or, with
 * trans_a, [K, M]; B is [K, N] or, with trans_b, [N, K].
 * Backward (G = dC):
 *   dA = G · op(B)ᵀ          stored [M, K];  with trans_a: dA = op(B) · Gᵀ  [K, M]
 *   dB = op(A)ᵀ · G          stored [K, N];  with trans_b: dB = Gᵀ · op(A)  [N, K]
 */
static void matmul_backward(ckd_ctx *c, ckd_node *n)
{
    ckd_tensor *a = n->in[0], *b = n->in[1];
    int ta = (int)n->iarg[0], tb = (int)n->iarg[1];
    int64_t M = n->iarg[2], N = n->iarg[3], K = n->iarg[4];
    const float *G = n->out->grad;
    /* A fresh dA is overwritten (beta 0) before dB, which may share it, accumulates. */
    int fa;
    float *da = ckdi_grad_buf_ex(c, a, &fa), *db = ckdi_grad_buf(c, b);
    if (da) {
        if (!ta) /* dA[M,K] += G[M,N] · op(B)ᵀ; op(B)ᵀ is B stored [N,K] (tb) or Bᵀ of [K,N] */
            ckd_gemm(0, !tb, M, K, N, 1.0f, G, N, b->data, tb ? K : N, fa ? 0.0f : 1.0f, da, K);
        else /* dA[K,M] += op(B)[K,N] · Gᵀ */
            ckd_gemm(tb, 1, K, M, N, 1.0f, b->data, tb ? K : N, G, N, fa ? 0.0f : 1.0f, da, M);
    }
    if (db) {
        if (!tb) /* dB[K,N] += op(A)ᵀ[K,M] · G */
            ckd_gemm(!ta, 0, K, N, M, 1.0f, a->data, ta ? M : K, G, N, 1.0f, db, N);
        else /* dB[N,K] += Gᵀ[N,M] · op(A)[M,K] */
            ckd_gemm(1, ta, N, K, M, 1.0f, G, N, a->data, ta ? M : K, 1.0f, db, K);
    }
}

ckd_tensor *ckd_matmul_ex(ckd_ctx *c, ckd_tensor *a, int trans_a, ckd_tensor *b, int trans_b)
{
    if (!a || !b || ckd_ctx_failed(c))
        return NULL;
    char s0[64], s1[64];
    if (a->ndim < 2 || b->ndim != 2 || (trans_a && a->ndim != 2))
        return ckd_ctx_fail(c, "matmul: need a [..., M, K] (2-D when transposed) and 2-D b, got a %s, b %s",
                            SHAPE(a, s0), SHAPE(b, s1));
    int64_t ka = trans_a ? a->shape[0] : a->shape[a->ndim - 1];
    int64_t M = 1; /* rows: the leading dims, or a's columns when transposed */
    for (int i = 0; i < a->ndim - 1; i++)
        M *= a->shape[i];
    int64_t kb = trans_b ? b->shape[1] : b->shape[0];
    int64_t N = trans_b ? b->shape[0] : b->shape[1];
    if (ka != kb)
        return ckd_ctx_fail(c, "matmul: inner dimensions differ: a %s%s, b %s%s (%lld vs %lld)", SHAPE(a, s0),
                            trans_a ? "ᵀ" : "", SHAPE(b, s1), trans_b ? "ᵀ" : "", (long long)ka, (long long)kb);
    int64_t K = ka;
    int64_t shape[CKD_MAX_DIMS];
    int nd = a->ndim;
    if (trans_a) {
        shape[0] = M = a->shape[1];
    } else {
        for (int i = 0; i < nd - 1; i++)
            shape[i] = a->shape[i];
    }
    shape[nd - 1] = N;
    ckd_tensor *out = ckd_tensor_new(c, nd, shape);
    if (!out)
        return NULL;
    ckd_gemm(trans_a, trans_b, M, N, K, 1.0f, a->data, trans_a ? M : K, b->data, trans_b ? K : N, 0.0f, out->data,
             N);
    ckd_tensor *in[2] = {a, b};
    if (ckdi_needs_grad(c, in, 2)) {
        ckd_node *n = ckdi_record(c, "matmul", matmul_backward, out, in, 2);
        if (!n)
            return NULL;
        n->iarg[0] = trans_a;
        n->iarg[1] = trans_b;
        n->iarg[2] = M;
        n->iarg[3] = N;
        n->iarg[4] = K;
    }
    return out;
}

ckd_tensor *ckd_matmul(ckd_ctx *c, ckd_tensor *a, ckd_tensor *b) { return ckd_matmul_ex(c, a, 0, b, 0); }

/* ---- linear ---------------------------------------------------------------------
 * y [R, N] = x [R, K] · Wᵀ + bias, W [N, K].
 * Backward: dx += G · W; dW += Gᵀ · x; dbias += Σ_rows G.
 */
static void linear_backward(ckd_ctx *c, ckd_node *n)
{
    ckd_tensor *x = n->in[0], *w = n->in[1], *bias = n->in[2];
    int64_t R = n->iarg[0], N = n->iarg[1], K = n->iarg[2];
    const float *G = n->out->grad;
    /* A fresh dx is overwritten (beta 0) before dW and dbias, which may share it, accumulate. */
    int fx;
    float *dx = ckdi_grad_buf_ex(c, x, &fx), *dw = ckdi_grad_buf(c, w), *db = ckdi_grad_buf(c, bias);
    if (dx)
        ckd_gemm(0, 0, R, K, N, 1.0f, G, N, w->data, K, fx ? 0.0f : 1.0f, dx, K);
    if (dw)
        ckd_gemm(1, 0, N, K, R, 1.0f, G, N, x->data, K, 1.0f, dw, K);
    if (db) /* column sums by fixed row blocks: the same for any thread count */
        ckdi_colsum_add(c, db, G, R, N, 1.0f);
}

ckd_tensor *ckd_linear(ckd_ctx *c, ckd_tensor *x, ckd_tensor *w, ckd_tensor *bias)
{
    if (!x || !w || ckd_ctx_failed(c))
        return NULL;
    char s0[64], s1[64], s2[64];
    if (x->ndim < 1 || w->ndim != 2 || x->shape[x->ndim - 1] != w->shape[1])
        return ckd_ctx_fail(c, "linear: input %s does not match weight %s (want x [..., K], w [N, K])",
                            SHAPE(x, s0), SHAPE(w, s1));
    int64_t K = w->shape[1], N = w->shape[0], R = K ? x->n / K : 0;
    if (bias && (bias->n != N))
        return ckd_ctx_fail(c, "linear: bias %s does not match weight %s (want [%lld])", SHAPE(bias, s2),
                            SHAPE(w, s1), (long long)N);
    int64_t shape[CKD_MAX_DIMS];
    for (int i = 0; i < x->ndim - 1; i++)
        shape[i] = x->shape[i];
    shape[x->ndim - 1] = N;
    ckd_tensor *out = ckd_tensor_new(c, x->ndim, shape);
    if (!out)
        return NULL;
    float beta = 0.0f;
    if (bias) { /* y starts as the bias in every row; the GEMM adds x·Wᵀ (beta 1) */
#pragma omp parallel for schedule(static) num_threads(ckdi_op_threads()) if (R * N > 2 * CKDI_BLOCK)
        for (int64_t r = 0; r < R; r++)
            memcpy(out->data + r * N, bias->data, (size_t)N * sizeof(float));
        beta = 1.0f;
    }
    ckd_gemm(0, 1, R, N, K, 1.0f, x->data, K, w->data, K, beta, out->data, N);
    ckd_tensor *in[3] = {x, w, bias};
    if (ckdi_needs_grad(c, in, 3)) {
        ckd_node *n = ckdi_record(c, "linear", linear_backward, out, in, 3);
        if (!n)
            return NULL;
        n->iarg[0] = R;
        n->iarg[1] = N;
        n->iarg[2] = K;
    }
    return out;
}

/* ---- conv2d ------------------------------------------------------------------------
 * x [B, Cin, H, W], w [Cout, Cin, kh, kw] -> y [B, Cout, Ho, Wo].
 * Per image: cols [Cin·kh·kw, Ho·Wo] = im2col(x_b); y_b [Cout, Ho·Wo] = W [Cout, CKK] · cols.
 * Backward: dW += G_b · colsᵀ; dcols = Wᵀ · G_b; dx_b += col2im(dcols); dbias += Σ G.
 * The cols of every image are kept for backward (B · CKK · Ho·Wo floats).
 */
typedef struct conv_geom {
    int64_t B, Cin, H, W, Cout, kh, kw, Ho, Wo, stride, pad;
} conv_geom;

static void im2col(const conv_geom *g, const float *x, float *cols)
{
    int64_t HW = g->Ho * g->Wo;
    for (int64_t ci = 0; ci < g->Cin; ci++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                float *row = cols + ((ci * g->kh + i) * g->kw + j) * HW;
                for (int64_t oy = 0; oy < g->Ho; oy++) {
                    int64_t y = oy * g->stride - g->pad + i;
                    for (int64_t ox = 0; ox < g->Wo; ox++) {
                        int64_t xx = ox * g->stride - g->pad + j;
                        row[oy * g->Wo + ox] =
                            (y >= 0 && y < g->H && xx >= 0 && xx < g->W) ? x[(ci * g->H + y) * g->W + xx] : 0.0f;
                    }
                }
            }
}

static void col2im_add(const conv_geom *g, const float *cols, float *dx)
{
    int64_t HW = g->Ho * g->Wo;
    for (int64_t ci = 0; ci < g->Cin; ci++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                const float *row = cols + ((ci * g->kh + i) * g->kw + j) * HW;
                for (int64_t oy = 0; oy < g->Ho; oy++) {
                    int64_t y = oy * g->stride - g->pad + i;
                    if (y < 0 || y >= g->H)
                        continue;
                    for (int64_t ox = 0; ox < g->Wo; ox++) {
                        int64_t xx = ox * g->stride - g->pad + j;
                        if (xx >= 0 && xx < g->W)
                            dx[(ci * g->H + y) * g->W + xx] += row[oy * g->Wo + ox];
                    }
                }
            }
}

static void conv2d_backward(ckd_ctx *c, ckd_node *n)
{
    ckd_tensor *x = n->in[0], *w = n->in[1], *bias = n->in[2];
    const conv_geom *g = n->saved;
    const float *cols_all = (const float *)(g + 1);
    int64_t CKK = g->Cin * g->kh * g->kw, HW = g->Ho * g->Wo;
    float *dx = ckdi_grad_buf(c, x), *dw = ckdi_grad_buf(c, w), *db = ckdi_grad_buf(c, bias);
    float *dcols = dx ? ckd_scratch(c, (size_t)(CKK * HW) * sizeof(float), "conv2d backward") : NULL;
    if (dx && !dcols)
        return;
    for (int64_t b = 0; b < g->B; b++) {
        const float *G = n->out->grad + b * g->Cout * HW;
        const float *cols = cols_all + b * CKK * HW;
        if (dw)
            ckd_gemm(0, 1, g->Cout, CKK, HW, 1.0f, G, HW, cols, HW, 1.0f, dw, CKK);
        if (dx) {
            ckd_gemm(1, 0, CKK, HW, g->Cout, 1.0f, w->data, CKK, G, HW, 0.0f, dcols, HW);
            col2im_add(g, dcols, dx + b * g->Cin * g->H * g->W);
        }
        if (db)
            for (int64_t co = 0; co < g->Cout; co++) {
                double s = 0;
                for (int64_t p = 0; p < HW; p++)
                    s += G[co * HW + p];
                db[co] += (float)s;
            }
    }
}

ckd_tensor *ckd_conv2d(ckd_ctx *c, ckd_tensor *x, ckd_tensor *w, ckd_tensor *bias, int stride, int pad)
{
    if (!x || !w || ckd_ctx_failed(c))
        return NULL;
    char s0[64], s1[64];
    if (x->ndim != 4 || w->ndim != 4 || x->shape[1] != w->shape[1])
        return ckd_ctx_fail(c, "conv2d: input %s and weight %s do not match (want x [B, Cin, H, W], w [Cout, Cin, kh, kw])",
                            SHAPE(x, s0), SHAPE(w, s1));
    if (stride < 1 || pad < 0)
        return ckd_ctx_fail(c, "conv2d: stride %d / padding %d invalid", stride, pad);
    conv_geom g = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[0], w->shape[2], w->shape[3], 0, 0,
                   stride, pad};
    if (g.H + 2 * pad < g.kh || g.W + 2 * pad < g.kw)
        return ckd_ctx_fail(c, "conv2d: kernel %lldx%lld larger than the padded input %s", (long long)g.kh,
                            (long long)g.kw, SHAPE(x, s0));
    g.Ho = (g.H + 2 * pad - g.kh) / stride + 1;
    g.Wo = (g.W + 2 * pad - g.kw) / stride + 1;
    if (bias && bias->n != g.Cout)
        return ckd_ctx_fail(c, "conv2d: bias %s does not match %lld output channels", SHAPE(bias, s0),
                            (long long)g.Cout);
    int64_t CKK = g.Cin * g.kh * g.kw, HW = g.Ho * g.Wo;
    ckd_tensor *out = ckd_tensor_new(c, 4, (int64_t[]){g.B, g.Cout, g.Ho, g.Wo});
    ckd_tensor *in[3] = {x, w, bias};
    int rec = ckdi_needs_grad(c, in, 3);
    /* Keep every image's cols when recording (backward needs them), else one buffer. */
    conv_geom *saved = out ? ckd_scratch(c, sizeof g + (size_t)((rec ? g.B : 1) * CKK * HW) * sizeof(float), "conv2d")
                           : NULL;
    if (!saved)
        return NULL;
    *saved = g;
    float *cols_all = (float *)(saved + 1);
    for (int64_t b = 0; b < g.B; b++) {
        float *cols = cols_all + (rec ? b * CKK * HW : 0);
        im2col(&g, x->data + b * g.Cin * g.H * g.W, cols);
        float *y = out->data + b * g.Cout * HW;
        if (bias)
            for (int64_t co = 0; co < g.Cout; co++)
                for (int64_t p = 0; p < HW; p++)
                    y[co * HW + p] = bias->data[co];
        ckd_gemm(0, 0, g.Cout, HW, CKK, 1.0f, w->data, CKK, cols, HW, bias ? 1.0f : 0.0f, y, HW);
    }
    if (rec) {
        ckd_node *n = ckdi_record(c, "conv2d", conv2d_backward, out, in, 3);
        if (!n)
            return NULL;
        n->saved = saved;
    }
    return out;
}
