/* Losses with fused backward: cross-entropy, KL divergence, mean squared error. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "clipkd/ops.h"
#include "tape.h"
#include "vecmath.h"

#define SHAPE(t, buf) ckd_shape_str((t), (buf), sizeof(buf))

static int check_rows(ckd_ctx *c, const char *op, ckd_tensor *x)
{
    if (x->ndim != 2 || x->shape[1] == 0) {
        char s0[64];
        ckd_ctx_fail(c, "%s: logits must be [N, K] with K > 0, got %s", op, SHAPE(x, s0));
        return 0;
    }
    return 1;
}

/* ---- cross-entropy ------------------------------------------------------------
 * logits [N, K], targets y [N]: L = −(1/N) Σ_i log softmax(logits_i)[y_i].
 * Saved: log-probabilities. Backward: dlogits_i += G/N · (softmax_i − onehot(y_i)).
 */
static void ce_backward(ckd_ctx *c, ckd_node *n)
{
    float *dx = ckdi_grad_buf(c, n->in[0]);
    if (!dx)
        return;
    int64_t N = n->in[0]->shape[0], K = n->in[0]->shape[1];
    const float *lp = n->saved;
    const int32_t *y = (const int32_t *)(lp + N * K);
    float g = n->out->grad[0] / (float)N;
    for (int64_t i = 0; i < N; i++) {
        const float *l = lp + i * K;
        float *d = dx + i * K;
#pragma omp simd
        for (int64_t j = 0; j < K; j++)
            d[j] += g * ckdi_expf(l[j]);
        d[y[i]] -= g;
    }
}

ckd_tensor *ckd_cross_entropy(ckd_ctx *c, ckd_tensor *logits, const int32_t *targets)
{
    if (!logits || ckd_ctx_failed(c) || !check_rows(c, "cross_entropy", logits))
        return NULL;
    int64_t N = logits->shape[0], K = logits->shape[1];
    float *lp = ckd_scratch(c, (size_t)(N * K) * sizeof(float) + (size_t)N * sizeof(int32_t), "cross_entropy");
    if (!lp)
        return NULL;
    int32_t *y = (int32_t *)(lp + N * K);
    double loss = 0;
    for (int64_t i = 0; i < N; i++) {
        if (targets[i] < 0 || targets[i] >= K)
            return ckd_ctx_fail(c, "cross_entropy: target %d of row %lld outside [0, %lld)", (int)targets[i],
                                (long long)i, (long long)K);
        y[i] = targets[i];
        ckdi_softmax_row(logits->data + i * K, lp + i * K, K, 1);
        loss -= lp[i * K + y[i]];
    }
    ckd_tensor *out = ckd_scalar(c, (float)(loss / (double)(N ? N : 1)));
    if (out && ckdi_needs_grad(c, &logits, 1)) {
        ckd_node *n = ckdi_record(c, "cross_entropy", ce_backward, out, &logits, 1);
        if (!n)
            return NULL;
        n->saved = lp;
    }
    return out;
}

/* ---- KL divergence between row distributions ----------------------------------
 * p, q logits [N, K]; P = softmax(p), Q = softmax(q):
 *   L = (1/N) Σ_i Σ_j P_ij (log P_ij − log Q_ij)
 * Saved: log P and log Q. Backward (g = G/N):
 *   dq_ij += g · (Q_ij − P_ij)
 *   dp_ij += g · P_ij · (log P_ij − log Q_ij − KL_i),  KL_i = Σ_j P_ij (log P_ij − log Q_ij)
 */
static void kl_backward(ckd_ctx *c, ckd_node *n)
{
    ckd_tensor *p = n->in[0], *q = n->in[1];
    int64_t N = p->shape[0], K = p->shape[1];
    const float *lp = n->saved, *lq = lp + N * K;
    float g = n->out->grad[0] / (float)N;
    float *dp = ckdi_grad_buf(c, p), *dq = ckdi_grad_buf(c, q);
    for (int64_t i = 0; i < N; i++) {
        const float *a = lp + i * K, *b = lq + i * K;
        double kl = 0;
        for (int64_t j = 0; j < K; j++)
            kl += exp(a[j]) * (a[j] - b[j]);
        for (int64_t j = 0; j < K; j++) {
            float P = expf(a[j]);
            if (dq)
                dq[i * K + j] += g * (expf(b[j]) - P);
            if (dp)
                dp[i * K + j] += g * P * (a[j] - b[j] - (float)kl);
        }
    }
}

ckd_tensor *ckd_kl_div(ckd_ctx *c, ckd_tensor *p_logits, ckd_tensor *q_logits)
{
    if (!p_logits || !q_logits || ckd_ctx_failed(c))
        return NULL;
    if (!check_rows(c, "kl_div", p_logits) || !check_rows(c, "kl_div", q_logits))
        return NULL;
    if (!ckd_same_shape(p_logits, q_logits)) {
        char s0[64], s1[64];
        return ckd_ctx_fail(c, "kl_div: logits %s and %s differ in shape", SHAPE(p_logits, s0), SHAPE(q_logits, s1));
    }
    int64_t N = p_logits->shape[0], K = p_logits->shape[1];
    float *lp = ckd_scratch(c, (size_t)(2 * N * K) * sizeof(float), "kl_div");
    if (!lp)
        return NULL;
    float *lq = lp + N * K;
    double loss = 0;
    for (int64_t i = 0; i < N; i++) {
        ckdi_softmax_row(p_logits->data + i * K, lp + i * K, K, 1);
        ckdi_softmax_row(q_logits->data + i * K, lq + i * K, K, 1);
        for (int64_t j = 0; j < K; j++)
            loss += exp(lp[i * K + j]) * (lp[i * K + j] - lq[i * K + j]);
    }
    ckd_tensor *out = ckd_scalar(c, (float)(loss / (double)N));
    ckd_tensor *in[2] = {p_logits, q_logits};
    if (out && ckdi_needs_grad(c, in, 2)) {
        ckd_node *n = ckdi_record(c, "kl_div", kl_backward, out, in, 2);
        if (!n)
            return NULL;
        n->saved = lp;
    }
    return out;
}

/* ---- mean squared error -----------------------------------------------------------
 * L = (1/n) Σ (a − b)². Backward: da += 2G/n · (a − b); db −= 2G/n · (a − b).
 */
static void mse_backward(ckd_ctx *c, ckd_node *n)
{
    ckd_tensor *a = n->in[0], *b = n->in[1];
    float g = 2.0f * n->out->grad[0] / (float)a->n;
    float *da = ckdi_grad_buf(c, a), *db = ckdi_grad_buf(c, b);
    for (int64_t i = 0; i < a->n; i++) {
        float d = g * (a->data[i] - b->data[i]);
        if (da)
            da[i] += d;
        if (db)
            db[i] -= d;
    }
}

ckd_tensor *ckd_mse(ckd_ctx *c, ckd_tensor *a, ckd_tensor *b)
{
    if (!a || !b || ckd_ctx_failed(c))
        return NULL;
    if (!ckd_same_shape(a, b) || a->n == 0) {
        char s0[64], s1[64];
        return ckd_ctx_fail(c, "mse: shapes %s and %s differ (or are empty)", SHAPE(a, s0), SHAPE(b, s1));
    }
    double s = 0;
    for (int64_t i = 0; i < a->n; i++) {
        double d = (double)a->data[i] - b->data[i];
        s += d * d;
    }
    ckd_tensor *out = ckd_scalar(c, (float)(s / (double)a->n));
    ckd_tensor *in[2] = {a, b};
    if (out && ckdi_needs_grad(c, in, 2) && !ckdi_record(c, "mse", mse_backward, out, in, 2))
        return NULL;
    return out;
}
