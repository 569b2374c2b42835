/* Batch normalisation over the channel axis of [N, C, ...] (NCHW), train and
 * eval mode, with PyTorch's running-statistics update. Channels are
 * independent, so they run in parallel; each channel's sums run in a fixed
 * order, so results do not depend on the thread count. */
#include "config.h"

#include <math.h>

#include "clipkd/ops.h"
#include "tape.h"

#define SHAPE(t, buf) ckd_shape_str((t), (buf), sizeof(buf))

/* ---- batchnorm2d -------------------------------------------------------------------
 * x [N, C, S] (S = H·W), M = N·S values per channel.
 *
 * Forward (per channel)                            Backward (per channel, G = dy)
 *   train: μ = Σ x / M, σ² = Σ (x − μ)² / M           x̂ = (x − μ)·rstd, Σg = Σ G, Σgx̂ = Σ G·x̂
 *   eval:  μ = running_mean, σ² = running_var        dβ += Σg;  dγ += Σgx̂
 *   rstd = 1/√(σ² + eps)                             train: dx += γ·rstd·(G − Σg/M − x̂·Σgx̂/M)
 *   y = (x − μ)·rstd·γ + β                           eval:  dx += γ·rstd·G
 *   train, stats given: running_mean ← (1 − m)·running_mean + m·μ
 *                       running_var  ← (1 − m)·running_var  + m·σ²·M/(M − 1)
 * Saved: μ and rstd per channel (eval copies them too: the buffers may be
 * changed by a later train-mode call before backward runs).
 *
 * Why the two variances: PyTorch normalises with the biased batch variance
 * (what the batch actually has) but tracks the unbiased one, the estimate of
 * the population variance that eval mode will use. The running statistics
 * are buffers, never on the tape: in train mode the output does not depend on
 * them, in eval mode they are constants, as in PyTorch. Sums are in double
 * (two passes for σ²): a channel's mean can sit far from 0 next to a small
 * spread (a conv output with a large bias).
 */
static void batchnorm_backward(ckd_ctx *c, ckd_node *n)
{
    ckd_tensor *x = n->in[0], *gamma = n->in[1], *beta = n->in[2];
    int fx;
    float *dx = ckdi_grad_buf_ex(c, x, &fx), *dg = ckdi_grad_buf(c, gamma), *db = ckdi_grad_buf(c, beta);
    int64_t N = n->iarg[0], C = n->iarg[1], S = n->iarg[2], M = N * S;
    int training = (int)n->iarg[3];
    const float *stats = n->saved, *G = n->out->grad, *X = x->data;
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (x->n > 2 * CKDI_BLOCK)
    for (int64_t ch = 0; ch < C; ch++) {
        float mu = stats[2 * ch], rstd = stats[2 * ch + 1];
        double sg = 0, sgx = 0;
        if (training || dg || db)
            for (int64_t b = 0; b < N; b++) {
                const float *xr = X + (b * C + ch) * S, *gr = G + (b * C + ch) * S;
                for (int64_t p = 0; p < S; p++) {
                    sg += gr[p];
                    sgx += (double)gr[p] * ((xr[p] - mu) * rstd);
                }
            }
        if (db)
            db[ch] += (float)sg;
        if (dg)
            dg[ch] += (float)sgx;
        if (!dx)
            continue;
        float k = (gamma ? gamma->data[ch] : 1.0f) * rstd;
        float a = training ? (float)(sg / (double)M) : 0.0f, bx = training ? (float)(sgx / (double)M) : 0.0f;
        for (int64_t b = 0; b < N; b++) {
            const float *xr = X + (b * C + ch) * S, *gr = G + (b * C + ch) * S;
            float *d = dx + (b * C + ch) * S;
            for (int64_t p = 0; p < S; p++) {
                float v = k * (gr[p] - a - (xr[p] - mu) * rstd * bx);
                d[p] = fx ? v : d[p] + v; /* a fresh buffer is written, not accumulated */
            }
        }
    }
}

/* "gamma [5] does not match the 4 channels of input [2, 4, 3, 3]" unless t is NULL or [C]. */
static int check_channel_vec(ckd_ctx *c, const ckd_tensor *t, const char *what, const ckd_tensor *x, int64_t C)
{
    if (!t || (t->ndim == 1 && t->n == C))
        return 0;
    char s0[64], s1[64];
    ckd_ctx_fail(c, "batchnorm2d: %s %s does not match the %lld channels of input %s (want [%lld])", what,
                 SHAPE(t, s0), (long long)C, SHAPE(x, s1), (long long)C);
    return -1;
}

ckd_tensor *ckd_batchnorm2d(ckd_ctx *c, ckd_tensor *x, ckd_tensor *gamma, ckd_tensor *beta,
                            ckd_tensor *running_mean, ckd_tensor *running_var, int training, float momentum,
                            float eps)
{
    if (!x || ckd_ctx_failed(c))
        return NULL;
    char s0[64];
    if (x->ndim < 2 || x->shape[1] == 0)
        return ckd_ctx_fail(c, "batchnorm2d: want x [N, C, H, W] (or [N, C, L], [N, C]), got %s", SHAPE(x, s0));
    int64_t N = x->shape[0], C = x->shape[1], S = 1;
    for (int i = 2; i < x->ndim; i++)
        S *= x->shape[i];
    int64_t M = N * S;
    if (check_channel_vec(c, gamma, "gamma", x, C) || check_channel_vec(c, beta, "beta", x, C) ||
        check_channel_vec(c, running_mean, "running_mean", x, C) ||
        check_channel_vec(c, running_var, "running_var", x, C))
        return NULL;
    if (!running_mean != !running_var)
        return ckd_ctx_fail(c, "batchnorm2d: running_mean and running_var go together (one of them is missing)");
    if (!training && !running_mean)
        return ckd_ctx_fail(c, "batchnorm2d: eval mode needs running_mean and running_var");
    if (training && M < 2)
        return ckd_ctx_fail(c, "batchnorm2d: train mode needs more than one value per channel, input %s has %lld",
                            SHAPE(x, s0), (long long)M);
    if (!(eps > 0.0f) || !(momentum >= 0.0f && momentum <= 1.0f))
        return ckd_ctx_fail(c, "batchnorm2d: eps %g must be > 0 and momentum %g in [0, 1]", (double)eps,
                            (double)momentum);
    ckd_tensor *out = ckdi_out_like(c, x);
    float *stats = out ? ckd_scratch(c, (size_t)(2 * C) * sizeof(float), "batchnorm2d") : NULL;
    if (!stats)
        return NULL;
    const float *X = x->data;
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (x->n > 2 * CKDI_BLOCK)
    for (int64_t ch = 0; ch < C; ch++) {
        float mu, rstd;
        if (training) {
            double s = 0, ss = 0;
            for (int64_t b = 0; b < N; b++) {
                const float *xr = X + (b * C + ch) * S;
                for (int64_t p = 0; p < S; p++)
                    s += xr[p];
            }
            double m = s / (double)M;
            for (int64_t b = 0; b < N; b++) {
                const float *xr = X + (b * C + ch) * S;
                for (int64_t p = 0; p < S; p++) {
                    double d = xr[p] - m;
                    ss += d * d;
                }
            }
            double var = ss / (double)M;
            mu = (float)m;
            rstd = (float)(1.0 / sqrt(var + (double)eps));
            if (running_mean) {
                float mo = momentum;
                running_mean->data[ch] = (1.0f - mo) * running_mean->data[ch] + mo * (float)m;
                running_var->data[ch] = (1.0f - mo) * running_var->data[ch] + mo * (float)(ss / (double)(M - 1));
            }
        } else {
            mu = running_mean->data[ch];
            rstd = (float)(1.0 / sqrt((double)running_var->data[ch] + (double)eps));
        }
        stats[2 * ch] = mu;
        stats[2 * ch + 1] = rstd;
        float k = (gamma ? gamma->data[ch] : 1.0f) * rstd, bt = beta ? beta->data[ch] : 0.0f;
        for (int64_t b = 0; b < N; b++) {
            const float *xr = X + (b * C + ch) * S;
            float *y = out->data + (b * C + ch) * S;
            for (int64_t p = 0; p < S; p++)
                y[p] = (xr[p] - mu) * k + bt;
        }
    }
    ckd_tensor *in[3] = {x, gamma, beta};
    if (ckdi_needs_grad(c, in, 3)) {
        ckd_node *n = ckdi_record(c, "batchnorm2d", batchnorm_backward, out, in, 3);
        if (!n)
            return NULL;
        n->saved = stats;
        n->iarg[0] = N;
        n->iarg[1] = C;
        n->iarg[2] = S;
        n->iarg[3] = training;
    }
    return out;
}
