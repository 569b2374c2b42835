/* Reductions: sum and mean over one axis or over everything. */
#include "config.h"

#include "clipkd/ops.h"
#include "tape.h"

/* ---- sum / mean over an axis ------------------------------------------------
 * x viewed as [outer, L, inner] with L the reduced axis -> y [outer, inner].
 * y[o, i] = w · Σ_l x[o, l, i] with w = 1 (sum) or 1/L (mean).
 * Backward: dx[o, l, i] += w · G[o, i].
 */
static void axis_geometry(const ckd_tensor *x, int axis, int64_t *outer, int64_t *len, int64_t *inner)
{
    *outer = *inner = 1;
    for (int i = 0; i < axis; i++)
        *outer *= x->shape[i];
    *len = x->shape[axis];
    for (int i = axis + 1; i < x->ndim; i++)
        *inner *= x->shape[i];
}

static void reduce_axis_backward(ckd_ctx *c, ckd_node *n)
{
    float *dx = ckdi_grad_buf(c, n->in[0]);
    if (!dx)
        return;
    int64_t outer = n->iarg[0], len = n->iarg[1], inner = n->iarg[2];
    float w = n->farg[0];
    const float *G = n->out->grad;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t l = 0; l < len; l++)
            for (int64_t i = 0; i < inner; i++)
                dx[(o * len + l) * inner + i] += w * G[o * inner + i];
}

static ckd_tensor *reduce_axis(ckd_ctx *c, ckd_tensor *x, int axis, int mean, const char *op)
{
    if (!x || ckd_ctx_failed(c))
        return NULL;
    int ax = axis < 0 ? axis + x->ndim : axis;
    if (ax < 0 || ax >= x->ndim) {
        char s[64];
        return ckd_ctx_fail(c, "%s: axis %d out of range for shape %s", op, axis, ckd_shape_str(x, s, sizeof s));
    }
    int64_t outer, len, inner;
    axis_geometry(x, ax, &outer, &len, &inner);
    int64_t shape[CKD_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < x->ndim; i++)
        if (i != ax)
            shape[nd++] = x->shape[i];
    ckd_tensor *out = ckd_tensor_new(c, nd, shape);
    if (!out)
        return NULL;
    float w = mean ? (len ? 1.0f / (float)len : 0.0f) : 1.0f;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            double s = 0;
            for (int64_t l = 0; l < len; l++)
                s += x->data[(o * len + l) * inner + i];
            out->data[o * inner + i] = (float)(s * w);
        }
    if (ckdi_needs_grad(c, &x, 1)) {
        ckd_node *n = ckdi_record(c, op, reduce_axis_backward, out, &x, 1);
        if (!n)
            return NULL;
        n->iarg[0] = outer;
        n->iarg[1] = len;
        n->iarg[2] = inner;
        n->farg[0] = w;
    }
    return out;
}

ckd_tensor *ckd_sum(ckd_ctx *c, ckd_tensor *x, int axis) { return reduce_axis(c, x, axis, 0, "sum"); }
ckd_tensor *ckd_mean(ckd_ctx *c, ckd_tensor *x, int axis) { return reduce_axis(c, x, axis, 1, "mean"); }

/* ---- sum / mean of everything ------------------------------------------------------
 * y = w · Σ x. Backward: dx += w · G.
 * The sum is taken in double over fixed blocks of CKDI_BLOCK elements (in
 * parallel), then over the block sums in order: deterministic, and the same
 * for any thread count.
 */
static void reduce_all_backward(ckd_ctx *c, ckd_node *n)
{
    int fresh; /* a fresh dx is filled with w·G, not zeroed and added to */
    float *dx = ckdi_grad_buf_ex(c, n->in[0], &fresh);
    if (!dx)
        return;
    float g = n->out->grad[0] * n->farg[0];
    int64_t cnt = n->in[0]->n, nb = ckdi_n_blocks(cnt);
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (nb > 1)
    for (int64_t k = 0; k < nb; k++) {
        float *d = dx + k * CKDI_BLOCK;
        int64_t len = ckdi_block_end(k, cnt) - k * CKDI_BLOCK;
        if (fresh) {
            for (int64_t i = 0; i < len; i++)
                d[i] = g;
        } else {
#pragma omp simd
            for (int64_t i = 0; i < len; i++)
                d[i] += g;
        }
    }
}

static ckd_tensor *reduce_all(ckd_ctx *c, ckd_tensor *x, int mean, const char *op)
{
    if (!x || ckd_ctx_failed(c))
        return NULL;
    int64_t nb = ckdi_n_blocks(x->n);
    double *part = ckd_scratch(c, (size_t)(nb ? nb : 1) * sizeof *part, op);
    if (!part)
        return NULL;
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (nb > 1)
    for (int64_t k = 0; k < nb; k++) {
        int64_t hi = ckdi_block_end(k, x->n);
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t i = k * CKDI_BLOCK; i < hi; i++)
            s += x->data[i];
        part[k] = s;
    }
    double s = 0;
    for (int64_t k = 0; k < nb; k++)
        s += part[k];
    float w = mean ? (x->n ? 1.0f / (float)x->n : 0.0f) : 1.0f;
    ckd_tensor *out = ckd_scalar(c, (float)(s * w));
    if (out && ckdi_needs_grad(c, &x, 1)) {
        ckd_node *n = ckdi_record(c, op, reduce_all_backward, out, &x, 1);
        if (!n)
            return NULL;
        n->farg[0] = w;
    }
    return out;
}

ckd_tensor *ckd_sum_all(ckd_ctx *c, ckd_tensor *x) { return reduce_all(c, x, 0, "sum_all"); }
ckd_tensor *ckd_mean_all(ckd_ctx *c, ckd_tensor *x) { return reduce_all(c, x, 1, "mean_all"); }
