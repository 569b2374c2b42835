/* Matrix products: matmul, linear (conv2d is in ops_conv.c). All through ckd_gemm (BLIS). */
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
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (R * N > 2 * CKDI_BLOCK)
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
