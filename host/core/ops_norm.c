/* Row-wise normalisations over the last axis: softmax, log_softmax,
 * layernorm, L2 normalisation. Rows are independent, so they run in parallel
 * and give the same result for any thread count. Row loops are `omp simd`
 * loops in float (statistics that need it in double, still vectorised). */
#include "config.h"

#include <math.h>
#include <string.h>

#include "clipkd/ops.h"
#include "tape.h"
#include "vecmath.h"

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
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (R * C > 2 * CKDI_BLOCK)
    for (int64_t r = 0; r < R; r++) {
        const float *y = Y + r * C, *g = G + r * C;
        float *d = dx + r * C;
        float s = 0.0f;
        if (logsm) {
#pragma omp simd reduction(+ : s)
            for (int64_t j = 0; j < C; j++)
                s += g[j];
#pragma omp simd
            for (int64_t j = 0; j < C; j++)
                d[j] += g[j] - ckdi_expf(y[j]) * s;
        } else {
#pragma omp simd reduction(+ : s)
            for (int64_t j = 0; j < C; j++)
                s += g[j] * y[j];
#pragma omp simd
            for (int64_t j = 0; j < C; j++)
                d[j] += y[j] * (g[j] - s);
        }
    }
}

/* One row of softmax or log_softmax (also used by the losses and attention).
 * Float throughout: the terms exp(x − max) are in (0, 1] and at least one is
 * 1, so a float sum (lane partial sums, then lanes) loses nothing that
 * matters at float output precision. y may be x.
 * The last C mod 8 elements go through an 8-wide buffer padded with −inf
 * (whose exp is 0): a loop of known width is vector code, where the
 * remainder of a row of 197 (an attention row) would otherwise run scalar
 * exp, a fifth of the row's time. */
CKDI_VECFN void softmax_row_body(const float *x, float *y, int64_t C, int logsm)
{
    enum { W = 8 };
    int64_t C0 = C - C % W, rem = C - C0;
    float tail[W] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY},
          mx = -INFINITY, s = 0.0f;
    memcpy(tail, x + C0, (size_t)rem * sizeof *tail);
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < C0; j++)
        mx = ckdi_select(x[j] > mx, x[j], mx);
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < W; j++)
        mx = ckdi_select(tail[j] > mx, tail[j], mx);
    if (logsm) {
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < C0; j++)
            s += ckdi_expf_nonpos(x[j] - mx);
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < W; j++)
            s += ckdi_expf_nonpos(tail[j] - mx);
        float lse = mx + logf(s);
#pragma omp simd
        for (int64_t j = 0; j < C; j++)
            y[j] = x[j] - lse;
    } else {
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < C0; j++) {
            float e = ckdi_expf_nonpos(x[j] - mx);
            y[j] = e;
            s += e;
        }
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < W; j++) {
            float e = ckdi_expf_nonpos(tail[j] - mx);
            tail[j] = e;
            s += e;
        }
        float inv = 1.0f / s;
#pragma omp simd
        for (int64_t j = 0; j < C0; j++)
            y[j] *= inv;
#pragma omp simd
        for (int64_t j = 0; j < W; j++)
            tail[j] *= inv;
        memcpy(y + C0, tail, (size_t)rem * sizeof *tail);
    }
}

CKDI_SIMD_CLONES void ckdi_softmax_row(const float *x, float *y, int64_t C, int logsm)
{
    softmax_row_body(x, y, C, logsm);
}

static CKDI_SIMD_CLONES void softmax_rows(const float *x, float *y, int64_t rows, int64_t C, int logsm)
{
    for (int64_t r = 0; r < rows; r++)
        softmax_row_body(x + r * C, y + r * C, C, logsm);
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
    /* Blocks of 32 rows: one dispatch of the target clone per block, not per
     * row (short rows, such as attention's 197, are a few hundred ns). */
    int64_t nb = (R + 31) / 32;
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (R * C > 2 * CKDI_BLOCK)
    for (int64_t b = 0; b < nb; b++)
        softmax_rows(x->data + b * 32 * C, out->data + b * 32 * C, R - b * 32 < 32 ? R - b * 32 : 32, C, logsm);
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
 * dγ += Σ_rows G ∘ x̂; dβ += Σ_rows G.
 * Rows run in parallel. μ and σ² are summed in double (vectorised: a row of
 * a residual stream can have a mean far from 0 next to its spread), the
 * backward's row means in float. dγ and dβ sum the rows in row order per
 * column, with the columns split between threads, so they do not depend on
 * the thread count.
 */

/* y = x̂ (∘ γ) (+ β) for one row; has_g / has_b are constants in the common
 * instance (both set), which the compiler vectorises. */
CKDI_INLINE void ln_out_row(const float *xr, float *y, int64_t C, float mu, float rstd, const float *gm,
                            const float *bt, int has_g, int has_b)
{
#pragma omp simd
    for (int64_t j = 0; j < C; j++) {
        float v = (xr[j] - mu) * rstd;
        if (has_g)
            v *= gm[j];
        if (has_b)
            v += bt[j];
        y[j] = v;
    }
}

/* dx += rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ ∘ x̂)) for one row. */
CKDI_INLINE void ln_dx_row(const float *xr, const float *g, float *d, int64_t C, float mu, float rstd,
                           const float *gm, int has_g)
{
    float m1 = 0.0f, m2 = 0.0f;
#pragma omp simd reduction(+ : m1, m2)
    for (int64_t j = 0; j < C; j++) {
        float gh = has_g ? g[j] * gm[j] : g[j], xh = (xr[j] - mu) * rstd;
        m1 += gh;
        m2 += gh * xh;
    }
    float a = m1 / (float)C, b = m2 / (float)C;
#pragma omp simd
    for (int64_t j = 0; j < C; j++) {
        float gh = has_g ? g[j] * gm[j] : g[j], xh = (xr[j] - mu) * rstd;
        d[j] += rstd * (gh - a - xh * b);
    }
}

/* dγ[j] += Σ_r G[r, j]·x̂[r, j] and dβ[j] += Σ_r G[r, j] for j in [c0, c1). */
CKDI_INLINE void ln_param_grad_cols(const float *X, const float *G, const float *stats, int64_t R, int64_t C,
                                    int64_t c0, int64_t c1, float *dg, float *db, int has_g, int has_b)
{
    for (int64_t r = 0; r < R; r++) {
        const float *xr = X + r * C, *g = G + r * C;
        float mu = stats[2 * r], rstd = stats[2 * r + 1];
#pragma omp simd
        for (int64_t j = c0; j < c1; j++) {
            if (has_g)
                dg[j] += g[j] * ((xr[j] - mu) * rstd);
            if (has_b)
                db[j] += g[j];
        }
    }
}

static void layernorm_backward(ckd_ctx *c, ckd_node *n)
{
    ckd_tensor *x = n->in[0], *gamma = n->in[1], *beta = n->in[2];
    /* dx first: fresh, it is zeroed row by row right before the row accumulates. */
    int fx;
    float *dx = ckdi_grad_buf_ex(c, x, &fx), *dg = ckdi_grad_buf(c, gamma), *db = ckdi_grad_buf(c, beta);
    int64_t C = last_dim(x), R = x->n / C;
    const float *stats = n->saved, *G = n->out->grad;
    const float *gm = gamma ? gamma->data : NULL;
    if (dx) {
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (R * C > 2 * CKDI_BLOCK)
        for (int64_t r = 0; r < R; r++) {
            if (fx)
                memset(dx + r * C, 0, (size_t)C * sizeof(float));
            if (gm)
                ln_dx_row(x->data + r * C, G + r * C, dx + r * C, C, stats[2 * r], stats[2 * r + 1], gm, 1);
            else
                ln_dx_row(x->data + r * C, G + r * C, dx + r * C, C, stats[2 * r], stats[2 * r + 1], gm, 0);
        }
    }
    if (dg || db) {
        int64_t ncb = ckdi_col_blocks(C, R * C);
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (ncb > 1)
        for (int64_t cb = 0; cb < ncb; cb++) {
            int64_t c0 = C * cb / ncb, c1 = C * (cb + 1) / ncb;
            if (dg && db)
                ln_param_grad_cols(x->data, G, stats, R, C, c0, c1, dg, db, 1, 1);
            else
                ln_param_grad_cols(x->data, G, stats, R, C, c0, c1, dg, db, dg != NULL, db != NULL);
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
    const float *gm = gamma ? gamma->data : NULL, *bt = beta ? beta->data : NULL;
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (R * C > 2 * CKDI_BLOCK)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x->data + r * C;
        double s = 0, ss = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < C; j++)
            s += xr[j];
        double mu = s / (double)C;
#pragma omp simd reduction(+ : ss)
        for (int64_t j = 0; j < C; j++)
            ss += (xr[j] - mu) * (xr[j] - mu);
        float rstd = (float)(1.0 / sqrt(ss / (double)C + eps));
        stats[2 * r] = (float)mu;
        stats[2 * r + 1] = rstd;
        if (gm && bt)
            ln_out_row(xr, out->data + r * C, C, (float)mu, rstd, gm, bt, 1, 1);
        else
            ln_out_row(xr, out->data + r * C, C, (float)mu, rstd, gm, bt, gm != NULL, bt != NULL);
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
 * x [R, C]; ν = max(‖x_r‖, eps); y = x / ν. Saved: ν per row. ‖x‖² is summed in
 * double, ⟨G, y⟩ in float.
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
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (R * C > 2 * CKDI_BLOCK)
    for (int64_t r = 0; r < R; r++) {
        const float *y = Y + r * C, *g = G + r * C;
        float *d = dx + r * C, dot = 0.0f;
        if (nu[r] > eps) {
#pragma omp simd reduction(+ : dot)
            for (int64_t j = 0; j < C; j++)
                dot += g[j] * y[j];
        }
#pragma omp simd
        for (int64_t j = 0; j < C; j++)
            d[j] += (g[j] - y[j] * dot) / nu[r];
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
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (R * C > 2 * CKDI_BLOCK)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x->data + r * C;
        float *y = out->data + r * C;
        double ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int64_t j = 0; j < C; j++)
            ss += (double)xr[j] * xr[j];
        float norm = (float)sqrt(ss), v = norm > eps ? norm : eps;
        nu[r] = v;
#pragma omp simd
        for (int64_t j = 0; j < C; j++)
            y[j] = xr[j] / v;
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
