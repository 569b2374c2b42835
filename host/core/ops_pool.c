/* Pooling over NCHW: max, average (count_include_pad) and global average.
 * Every (image, channel) plane is independent, so planes run in parallel and
 * the results do not depend on the thread count. */
#include "config.h"

#include <math.h>

#include "clipkd/ops.h"
#include "tape.h"

#define SHAPE(t, buf) ckd_shape_str((t), (buf), sizeof(buf))

typedef struct pool_geom {
    int64_t planes, H, W, Ho, Wo, kh, kw, sh, sw, ph, pw;
} pool_geom;

/* Checks x and the parameters and fills the geometry; NULL (error recorded) on bad input. */
static ckd_tensor *pool_setup(ckd_ctx *c, ckd_tensor *x, const ckd_pool2d_params *p, const char *op, pool_geom *g)
{
    char s0[64];
    if (!p)
        return ckd_ctx_fail(c, "%s: no parameters (kernel size) given", op);
    if (x->ndim != 4)
        return ckd_ctx_fail(c, "%s: want x [B, C, H, W], got %s", op, SHAPE(x, s0));
    int sh = p->stride_h ? p->stride_h : p->kernel_h, sw = p->stride_w ? p->stride_w : p->kernel_w;
    if (p->kernel_h < 1 || p->kernel_w < 1 || sh < 1 || sw < 1 || p->pad_h < 0 || p->pad_w < 0)
        return ckd_ctx_fail(c, "%s: kernel %dx%d, stride %dx%d or padding %dx%d invalid (want kernel, stride >= 1, "
                               "padding >= 0)",
                            op, p->kernel_h, p->kernel_w, p->stride_h, p->stride_w, p->pad_h, p->pad_w);
    /* PyTorch's limit; it also keeps a real pixel in every window (no all-padding max). */
    if (p->pad_h > p->kernel_h / 2 || p->pad_w > p->kernel_w / 2)
        return ckd_ctx_fail(c, "%s: padding %dx%d is more than half the kernel %dx%d", op, p->pad_h, p->pad_w,
                            p->kernel_h, p->kernel_w);
    *g = (pool_geom){x->shape[0] * x->shape[1], x->shape[2], x->shape[3], 0, 0, p->kernel_h, p->kernel_w,
                     sh, sw, p->pad_h, p->pad_w};
    if (g->H + 2 * g->ph < g->kh || g->W + 2 * g->pw < g->kw)
        return ckd_ctx_fail(c, "%s: kernel %dx%d with padding %dx%d leaves no output pixels on input %s", op,
                            p->kernel_h, p->kernel_w, p->pad_h, p->pad_w, SHAPE(x, s0));
    g->Ho = (g->H + 2 * g->ph - g->kh) / g->sh + 1;
    g->Wo = (g->W + 2 * g->pw - g->kw) / g->sw + 1;
    return ckd_tensor_new(c, 4, (int64_t[]){x->shape[0], x->shape[1], g->Ho, g->Wo});
}

/* The window of output (oy, ox) clipped to the input: rows [*y0, *y1), columns [*x0, *x1). */
static inline void window(const pool_geom *g, int64_t oy, int64_t ox, int64_t *y0, int64_t *y1, int64_t *x0,
                          int64_t *x1)
{
    int64_t ys = oy * g->sh - g->ph, xs = ox * g->sw - g->pw;
    *y0 = ys < 0 ? 0 : ys;
    *x0 = xs < 0 ? 0 : xs;
    *y1 = ys + g->kh < g->H ? ys + g->kh : g->H;
    *x1 = xs + g->kw < g->W ? xs + g->kw : g->W;
}

#define PLANE_LOOP_IF(g) if ((g)->planes * (g)->Ho * (g)->Wo * (g)->kh * (g)->kw > 2 * CKDI_BLOCK)

/* ---- maxpool2d --------------------------------------------------------------------
 * Forward (per plane)                              Backward (per plane)
 *   x [H, W], padding −inf                           dx [H, W]
 *   y [Ho, Wo] = max over each window               dx[arg[o]] += G[o]
 *   arg [Ho, Wo] = flat index of that max (int32)
 * The first maximum in row-major order wins and a NaN wins over any number,
 * by PyTorch's CPU rule (`val > max || isnan(val)`). Padding is never
 * chosen because it is not visited: each window is clipped to the input and
 * keeps at least one pixel (padding <= kernel / 2).
 */
static void maxpool_backward(ckd_ctx *c, ckd_node *n)
{
    float *dx = ckdi_grad_buf(c, n->in[0]);
    if (!dx)
        return;
    const pool_geom *g = n->saved;
    const int32_t *arg = (const int32_t *)(g + 1);
    int64_t P = g->Ho * g->Wo, HW = g->H * g->W;
    const float *G = n->out->grad;
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (g->planes * P > 2 * CKDI_BLOCK)
    for (int64_t pl = 0; pl < g->planes; pl++)
        for (int64_t o = 0; o < P; o++)
            dx[pl * HW + arg[pl * P + o]] += G[pl * P + o];
}

ckd_tensor *ckd_maxpool2d(ckd_ctx *c, ckd_tensor *x, const ckd_pool2d_params *p)
{
    if (!x || ckd_ctx_failed(c))
        return NULL;
    pool_geom g;
    ckd_tensor *out = pool_setup(c, x, p, "maxpool2d", &g);
    if (!out)
        return NULL;
    int64_t P = g.Ho * g.Wo, HW = g.H * g.W;
    if (HW > INT32_MAX)
        return ckd_ctx_fail(c, "maxpool2d: planes of %lld pixels are too large", (long long)HW);
    int rec = ckdi_needs_grad(c, &x, 1);
    /* The argmax is only needed for backward; without it the max alone is kept. */
    pool_geom *saved = rec ? ckd_scratch(c, sizeof g + (size_t)(g.planes * P) * sizeof(int32_t), "maxpool2d") : NULL;
    if (rec && !saved)
        return NULL;
    int32_t *arg = saved ? (int32_t *)(saved + 1) : NULL;
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) PLANE_LOOP_IF(&g)
    for (int64_t pl = 0; pl < g.planes; pl++) {
        const float *xp = x->data + pl * HW;
        for (int64_t oy = 0; oy < g.Ho; oy++)
            for (int64_t ox = 0; ox < g.Wo; ox++) {
                int64_t y0, y1, x0, x1;
                window(&g, oy, ox, &y0, &y1, &x0, &x1);
                float best = -INFINITY;
                int64_t bi = y0 * g.W + x0;
                for (int64_t yy = y0; yy < y1; yy++)
                    for (int64_t xx = x0; xx < x1; xx++) {
                        float v = xp[yy * g.W + xx];
                        if (v > best || isnan(v)) {
                            best = v;
                            bi = yy * g.W + xx;
                        }
                    }
                out->data[pl * P + oy * g.Wo + ox] = best;
                if (arg)
                    arg[pl * P + oy * g.Wo + ox] = (int32_t)bi;
            }
    }
    if (rec) {
        ckd_node *n = ckdi_record(c, "maxpool2d", maxpool_backward, out, &x, 1);
        if (!n)
            return NULL;
        *saved = g;
        n->saved = saved;
    }
    return out;
}

/* ---- avgpool2d --------------------------------------------------------------------
 * Forward (per plane)                              Backward (per plane)
 *   x [H, W], padding 0                              dx [H, W]
 *   y [Ho, Wo] = Σ window / (kh·kw)                 dx[window(o)] += G[o] / (kh·kw)
 * The divisor counts padded pixels (count_include_pad, PyTorch's default).
 * Without ceil_mode every window lies inside the padded input, so it is
 * always kh·kw, as PyTorch's clipped-to-padded-input window size.
 */
static void avgpool_backward(ckd_ctx *c, ckd_node *n)
{
    float *dx = ckdi_grad_buf(c, n->in[0]);
    if (!dx)
        return;
    const pool_geom *g = n->saved;
    int64_t P = g->Ho * g->Wo, HW = g->H * g->W;
    float inv = 1.0f / (float)(g->kh * g->kw);
    const float *G = n->out->grad;
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) PLANE_LOOP_IF(g)
    for (int64_t pl = 0; pl < g->planes; pl++) {
        float *dp = dx + pl * HW;
        for (int64_t oy = 0; oy < g->Ho; oy++)
            for (int64_t ox = 0; ox < g->Wo; ox++) {
                int64_t y0, y1, x0, x1;
                window(g, oy, ox, &y0, &y1, &x0, &x1);
                float v = G[pl * P + oy * g->Wo + ox] * inv;
                for (int64_t yy = y0; yy < y1; yy++)
                    for (int64_t xx = x0; xx < x1; xx++)
                        dp[yy * g->W + xx] += v;
            }
    }
}

ckd_tensor *ckd_avgpool2d(ckd_ctx *c, ckd_tensor *x, const ckd_pool2d_params *p)
{
    if (!x || ckd_ctx_failed(c))
        return NULL;
    pool_geom g;
    ckd_tensor *out = pool_setup(c, x, p, "avgpool2d", &g);
    if (!out)
        return NULL;
    int64_t P = g.Ho * g.Wo, HW = g.H * g.W;
    float inv = 1.0f / (float)(g.kh * g.kw);
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) PLANE_LOOP_IF(&g)
    for (int64_t pl = 0; pl < g.planes; pl++) {
        const float *xp = x->data + pl * HW;
        for (int64_t oy = 0; oy < g.Ho; oy++)
            for (int64_t ox = 0; ox < g.Wo; ox++) {
                int64_t y0, y1, x0, x1;
                window(&g, oy, ox, &y0, &y1, &x0, &x1);
                float s = 0.0f;
                for (int64_t yy = y0; yy < y1; yy++)
                    for (int64_t xx = x0; xx < x1; xx++)
                        s += xp[yy * g.W + xx];
                out->data[pl * P + oy * g.Wo + ox] = s * inv;
            }
    }
    if (ckdi_needs_grad(c, &x, 1)) {
        pool_geom *saved = ckd_scratch(c, sizeof g, "avgpool2d");
        ckd_node *n = saved ? ckdi_record(c, "avgpool2d", avgpool_backward, out, &x, 1) : NULL;
        if (!n)
            return NULL;
        *saved = g;
        n->saved = saved;
    }
    return out;
}

/* ---- global_avgpool2d -------------------------------------------------------------
 * Forward                                          Backward
 *   x [B, C, H, W] viewed as [B·C, H·W]              dx [B·C, H·W]
 *   y [B, C] = mean of each row (double sum)         dx[r, :] += G[r] / (H·W)
 * Its own op rather than reshape + mean: one pass, no [B, C, H·W] view node.
 */
static void gap_backward(ckd_ctx *c, ckd_node *n)
{
    int fx;
    float *dx = ckdi_grad_buf_ex(c, n->in[0], &fx);
    if (!dx)
        return;
    int64_t R = n->iarg[0], HW = n->iarg[1];
    float inv = 1.0f / (float)HW;
    const float *G = n->out->grad;
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (R * HW > 2 * CKDI_BLOCK)
    for (int64_t r = 0; r < R; r++) {
        float v = G[r] * inv, *d = dx + r * HW;
        if (fx) /* a fresh buffer is written, not accumulated (see ckdi_grad_buf_ex) */
            for (int64_t p = 0; p < HW; p++)
                d[p] = v;
        else
            for (int64_t p = 0; p < HW; p++)
                d[p] += v;
    }
}

ckd_tensor *ckd_global_avgpool2d(ckd_ctx *c, ckd_tensor *x)
{
    if (!x || ckd_ctx_failed(c))
        return NULL;
    char s0[64];
    if (x->ndim != 4 || x->shape[2] * x->shape[3] == 0)
        return ckd_ctx_fail(c, "global_avgpool2d: want x [B, C, H, W] with H, W >= 1, got %s", SHAPE(x, s0));
    int64_t R = x->shape[0] * x->shape[1], HW = x->shape[2] * x->shape[3];
    ckd_tensor *out = ckd_tensor_new(c, 2, (int64_t[]){x->shape[0], x->shape[1]});
    if (!out)
        return NULL;
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (R * HW > 2 * CKDI_BLOCK)
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x->data + r * HW;
        double s = 0;
        for (int64_t p = 0; p < HW; p++)
            s += xr[p];
        out->data[r] = (float)(s / (double)HW);
    }
    if (ckdi_needs_grad(c, &x, 1)) {
        ckd_node *n = ckdi_record(c, "global_avgpool2d", gap_backward, out, &x, 1);
        if (!n)
            return NULL;
        n->iarg[0] = R;
        n->iarg[1] = HW;
    }
    return out;
}
