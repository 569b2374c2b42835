/* Row-wise normalisations over the last axis: softmax, log_softmax,
 * layernorm, L2 normalisation. Rows are independent, so they run in parallel
 * and give the same result for any thread count. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "clipkd/ops.h"
#include "tape.h"

#define SHAPE(t, buf) ckd_shape_str((t), (buf), sizeof(buf))

static int64_t last_dim(const ckd_tensor *x) { return x->ndim ? x->shape[x->ndim - 1] : 1; }

/* ---- softmax / log_softmax ----------------------------------------------------
 * x [R, C]. softmax: y = exp(x − max) / Σ exp(x − max).
 * log_softmax: y = x − max − log Σ exp(x − max).
 * Backward: softmax: dx += y ∘ (G − ⟨G, y⟩);  log_softmax: dx += G − softmax(x) · Σ G.
 */
static void softmax_backward(ckd_ctx *c, ckd_node *n)
{
    float *dx = ckdi_grad_buf(c, n->in[0]);
    if (!dx)
        return;
    int logsm = (int)n->iarg[0];
    int64_t C = last_dim(n->out), R = n->out->n / (C ? C : 1);
    const float *Y = n->out->data, *G = n->out->grad;
#pragma omp parallel for schedule(static) num_threads(ckdi_op_threads()) if (R > 64)
    for (int64_t r = 0; r < R; r++) {
        const float *y = Y + r * C, *g = G + r * C;
        float *d = dx + r * C;
        double s = 0;
        if (logsm) {
            for (int64_t j = 0; j < C; j++)
                s += g[j];
            for (int64_t j = 0; j < C; j++)
                d[j] += g[j] - expf(y[j]) * (float)s;
        } else {
            for (int64_t j = 0; j < C; j++)
                s += (double)g[j] * y[j];
            for (int64_t j = 0; j < C; j++)
                d[j] += y[j] * (g[j] - (float)s);
        }
    }
}

/* One row of softmax or log_softmax (also used by the losses and attention). */
void ckdi_softmax_row(const float *x, float *y, int64_t C, int logsm)
{
    float mx = -INFINITY;
    for (int64_t j = 0; j < C; j++)
        mx = x[j] > mx ? x[j] : mx;
    double s = 0;
    for (int64_t j = 0; j < C; j++)
        s += exp((double)x[j] - mx);
    if (logsm) {
        float lse = mx + (float)log(s);
        for (int64_t j = 0; j < C; j++)
            y[j] = x[j] - lse;
    } else {
        for (int64_t j = 0; j < C; j++)
            y[j] = (float)(exp((double)x[j] - mx) / s);
    }
}

static ckd_tensor *softmax_op(ckd_ctx *c, ckd_tensor *x, int logsm)
{
    if (!x || ckd_ctx_failed(c))
        return NULL;
    const char *op = logsm ? "log_softmax" : "softmax";
    if (x->ndim < 1 || last_dim(x) == 0) {
        char s0[64];
        return ckd_ctx_fail(c, "%s: need a non-empty last axis, got %s", op, SHAPE(x, s0));
    }
    ckd_tensor *out = ckdi_out_like(c, x);
    if (!out)
        return NULL;
    int64_t C = last_dim(x), R = x->n / C;
#pragma omp parallel for schedule(static) num_threads(ckdi_op_threads()) if (R > 64)
    for (int64_t r = 0; r < R; r++)
        ckdi_softmax_row(x->data + r * C, out->data + r * C, C, logsm);
    if (ckdi_needs_grad(c, &x, 1)) {
        ckd_node *n = ckdi_record(c, op, softmax_backward, out, &x, 1);
        if (!n)
            return NULL;
        n->iarg[0] = logsm;
    }
    return out;
}

ckd_tensor *ckd_softmax(ckd_ctx *c, ckd_tensor *x) { return softmax_op(c, x, 0); }
ckd_tensor *ckd_log_softmax(ckd_ctx *c, ckd_tensor *x) { return softmax_op(c, x, 1); }

/* ---- layernorm -------------------------------------------------------------------
 * x [R, C]; μ, σ² per row (biased variance); x̂ = (x − μ)·rstd, rstd = 1/√(σ² + eps);
 * y = x̂ ∘ γ + β. Saved: μ and rstd per row.
 * Backward (ĝ = G ∘ γ): dx += rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ ∘ x̂));
 * dγ += Σ_rows G ∘ x̂; dβ += Σ_rows G (serial over rows: deterministic).
 */
static void layernorm_backward(ckd_ctx *c, ckd_node *n)
{
    ckd_tensor *x = n->in[0], *gamma = n->in[1], *beta = n->in[2];
    float *dx = ckdi_grad_buf(c, x), *dg = ckdi_grad_buf(c, gamma), *db = ckdi_grad_buf(c, beta);
    int64_t C = last_dim(x), R = x->n / C;
    const float *stats = n->saved, *G = n->out->grad;
    const float *gm = gamma ? gamma->data : NULL;
    if (dx) {
#pragma omp parallel for schedule(static) num_threads(ckdi_op_threads()) if (R > 16)
        for (int64_t r = 0; r < R; r++) {
            const float *xr = x->data + r * C, *g = G + r * C;
            float mu = stats[2 * r], rstd = stats[2 * r + 1];
            double m1 = 0, m2 = 0;
            for (int64_t j = 0; j < C; j++) {
                float gh = g[j] * (gm ? gm[j] : 1.0f), xh = (xr[j] - mu) * rstd;
                m1 += gh;
                m2 += (double)gh * xh;
            }
            float a = (float)(m1 / C), b = (float)(m2 / C);
            float *d = dx + r * C;
            for (int64_t j = 0; j < C; j++) {
                float gh = g[j] * (gm ? gm[j] : 1.0f), xh = (xr[j] - mu) * rstd;
                d[j] += rstd * (gh - a - xh * b);
            }
        }
    }
    if (dg || db)
        for (int64_t r = 0; r < R; r++) {
            const float *xr = x->data + r * C, *g = G + r * C;
            float mu = stats[2 * r], rstd = stats[2 * r + 1];
            for (int64_t j = 0; j < C; j++) {
                if (dg)
                    dg[j] += g[j] * (xr[j] - mu) * rstd;
                if (db)
                    db[j] += g[j];
            }
        }
}

ckd_tensor *ckd_layernorm(ckd_ctx *c, ckd_tensor *x, ckd_tensor *gamma, ckd_tensor *beta, float eps)
{
    if (!x || ckd_ctx_failed(c))
        return NULL;
    char s0[64], s1[64];
    int64_t C = last_dim(x);
    if (x->ndim < 1 || C == 0)
        return ckd_ctx_fail(c, "layernorm: need a non-empty last axis, got %s", SHAPE(x, s0));
    if ((gamma && gamma->n != C) || (beta && beta->n != C))
        return ckd_ctx_fail(c, "layernorm: weight %s / bias %s do not match the last dim of %s",
                            gamma ? SHAPE(gamma, s1) : "none", beta ? SHAPE(beta, s0) : "none", SHAPE(x, s0));
    int64_t R = x->n / C;
    ckd_tensor *out = ckdi_out_like(c, x);
    float *stats = out ? ckd_scratch(c, (size_t)(2 * R) * sizeof(float), "layernorm") : NULL;
    if (!stats)
        return NULL;
#pragma omp parallel for schedule(static) num_threads(ckdi_op_threads()) if (R > 16)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x->data + r * C;
        double s = 0, ss = 0;
        for (int64_t j = 0; j < C; j++)
            s += xr[j];
        double mu = s / C;
        for (int64_t j = 0; j < C; j++)
            ss += (xr[j] - mu) * (xr[j] - mu);
        float rstd = (float)(1.0 / sqrt(ss / C + eps));
        stats[2 * r] = (float)mu;
        stats[2 * r + 1] = rstd;
        float *y = out->data + r * C;
        for (int64_t j = 0; j < C; j++) {
            float v = (xr[j] - (float)mu) * rstd;
            y[j] = v * (gamma ? gamma->data[j] : 1.0f) + (beta ? beta->data[j] : 0.0f);
        }
    }
    ckd_tensor *in[3] = {x, gamma, beta};
    if (ckdi_needs_grad(c, in, 3)) {
        ckd_node *n = ckdi_record(c, "layernorm", layernorm_backward, out, in, 3);
        if (!n)
            return NULL;
        n->saved = stats;
    }
    return out;
}

/* ---- L2 normalisation -----------------------------------------------------------
 * x [R, C]; ν = max(‖x_r‖, eps); y = x / ν. Saved: ν per row.
 * Backward: if ‖x‖ > eps, dx += (G − y ⟨G, y⟩) / ν; else dx += G / eps.
 */
static void l2n_backward(ckd_ctx *c, ckd_node *n)
{
    float *dx = ckdi_grad_buf(c, n->in[0]);
    if (!dx)
        return;
    int64_t C = last_dim(n->out), R = n->out->n / C;
    const float *nu = n->saved, *Y = n->out->data, *G = n->out->grad;
    float eps = n->farg[0];
    for (int64_t r = 0; r < R; r++) {
        const float *y = Y + r * C, *g = G + r * C;
        float *d = dx + r * C;
        double dot = 0;
        if (nu[r] > eps)
            for (int64_t j = 0; j < C; j++)
                dot += (double)g[j] * y[j];
        for (int64_t j = 0; j < C; j++)
            d[j] += (g[j] - y[j] * (float)dot) / nu[r];
    }
}

ckd_tensor *ckd_l2_normalize(ckd_ctx *c, ckd_tensor *x, float eps)
{
    if (!x || ckd_ctx_failed(c))
        return NULL;
    int64_t C = last_dim(x);
    if (x->ndim < 1 || C == 0) {
        char s0[64];
        return ckd_ctx_fail(c, "l2_normalize: need a non-empty last axis, got %s", SHAPE(x, s0));
    }
    int64_t R = x->n / C;
    ckd_tensor *out = ckdi_out_like(c, x);
    float *nu = out ? ckd_scratch(c, (size_t)R * sizeof(float), "l2_normalize") : NULL;
    if (!nu)
        return NULL;
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x->data + r * C;
        double ss = 0;
        for (int64_t j = 0; j < C; j++)
            ss += (double)xr[j] * xr[j];
        float norm = (float)sqrt(ss);
        nu[r] = norm > eps ? norm : eps;
        for (int64_t j = 0; j < C; j++)
            out->data[r * C + j] = xr[j] / nu[r];
    }
    if (ckdi_needs_grad(c, &x, 1)) {
        ckd_node *n = ckdi_record(c, "l2_normalize", l2n_backward, out, &x, 1);
        if (!n)
            return NULL;
        n->saved = nu;
        n->farg[0] = eps;
    }
    return out;
}
