/* 2-D convolution with stride, zero padding and groups: im2col + GEMM, every
 * product through ckd_gemm (BLIS). */
#include "config.h"

#include <string.h>

#include "clipkd/blas.h"
#include "clipkd/ops.h"
#include "tape.h"

#define SHAPE(t, buf) ckd_shape_str((t), (buf), sizeof(buf))

/* ---- conv2d ------------------------------------------------------------------------
 * g groups; Cig = Cin/g, Cog = Cout/g, Kg = Cig·kh·kw, P = Ho·Wo.
 *
 * Forward (per image b)                         Backward (G_b = dy_b [Cout, P])
 *   x_b   [Cin, H, W]                             dx_b    [Cin, H, W]  += col2im(dcols)
 *   cols  [Cin·kh·kw, P] = im2col(x_b)            dcols_g [Kg, P]       = W_gᵀ · G_bg
 *   W_g   [Cog, Kg]   (w [Cout, Cig, kh, kw])     dW_g    [Cog, Kg]    += G_bg · cols_gᵀ
 *   y_bg  [Cog, P] = W_g · cols_g (+ bias)        dbias   [Cout]       += Σ_{b,p} G
 *
 * Group g reads input channels [g·Cig, (g+1)·Cig), which are the rows
 * [g·Kg, (g+1)·Kg) of cols, and writes output channels [g·Cog, (g+1)·Cog): so
 * one cols buffer serves every group and each group is one GEMM (Cog × P × Kg).
 *
 * Small convolutions take several images per GEMM: the cols of n images sit
 * side by side ([K, n·P], image j in columns [j·P, (j+1)·P)), so one GEMM
 * computes them all and its result is scattered back to [B, Cout, P]. n is
 * what keeps a chunk's cols within CONV_CHUNK_FLOATS, so a ResNet-50 at 224 px
 * still goes one image at a time while a 28-pixel student's 3x3 convs go
 * dozens at a time (each GEMM call has a fixed cost that tiny products do not
 * amortise). n depends on the shapes alone, and BLIS never splits a GEMM's
 * inner dimension, so results do not depend on the thread count.
 *
 * cols are not kept for backward: backward rebuilds them chunk by chunk.
 * Keeping them would cost B·Cin·kh·kw·P floats per conv for the whole
 * step (a ResNet-50 at 224 px: GBs); rebuilding is a memory-bound copy, small
 * next to the GEMMs. A 1×1 conv with stride 1 and no padding needs no cols at
 * all when it goes one image at a time: x_b [Cin, H·W] already is them
 * ("direct", most of a Bottleneck).
 *
 * Many small groups (depthwise) run in parallel, one single-threaded GEMM
 * each (ckd_gemm drops to one thread inside a parallel region); otherwise
 * groups run in turn and each GEMM gets the threads. Each group's dW sums the
 * images in order either way, so results do not depend on the thread count.
 */
typedef struct conv_geom {
    int64_t B, Cin, H, W, Cout, kh, kw, Ho, Wo, sh, sw, ph, pw, groups;
    int direct;
} conv_geom;

/* The output columns [lo, hi) whose input column ox·sw − pw + j is inside
 * the image (the others read padding): the loops below run branch-free. */
static void valid_cols(const conv_geom *g, int64_t j, int64_t *lo, int64_t *hi)
{
    int64_t a = g->pw - j; /* ox·sw >= a */
    *lo = a <= 0 ? 0 : (a + g->sw - 1) / g->sw;
    int64_t b = g->W + g->pw - j; /* ox·sw < b */
    *hi = b <= 0 ? 0 : (b + g->sw - 1) / g->sw;
    if (*hi > g->Wo)
        *hi = g->Wo;
    if (*lo > *hi)
        *lo = *hi;
}

/* cols rows for input channels [c0, c1) of one image; row ((ci − c0)·kh + i)·kw + j,
 * ld floats apart (P for one image alone). */
static void im2col_range(const conv_geom *g, const float *x, float *cols, int64_t c0, int64_t c1, int64_t ld)
{
    int64_t P = g->Ho * g->Wo;
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) \
    if ((c1 - c0) * g->kh * g->kw * P > 2 * CKDI_BLOCK)
    for (int64_t ci = c0; ci < c1; ci++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                float *row = cols + (((ci - c0) * g->kh + i) * g->kw + j) * ld;
                const float *xc = x + ci * g->H * g->W;
                int64_t lo, hi;
                valid_cols(g, j, &lo, &hi);
                for (int64_t oy = 0; oy < g->Ho; oy++) {
                    int64_t y = oy * g->sh - g->ph + i;
                    float *r = row + oy * g->Wo;
                    if (y < 0 || y >= g->H || lo >= hi) {
                        memset(r, 0, (size_t)g->Wo * sizeof(float));
                        continue;
                    }
                    memset(r, 0, (size_t)lo * sizeof(float));
                    const float *src = xc + y * g->W + lo * g->sw - g->pw + j;
                    if (g->sw == 1)
                        memcpy(r + lo, src, (size_t)(hi - lo) * sizeof(float));
                    else
                        for (int64_t ox = lo; ox < hi; ox++)
                            r[ox] = src[(ox - lo) * g->sw];
                    memset(r + hi, 0, (size_t)(g->Wo - hi) * sizeof(float));
                }
            }
}

/* dx[ci] += the cols rows of channel ci, for ci in [c0, c1) (the adjoint of im2col_range). */
static void col2im_add_range(const conv_geom *g, const float *cols, float *dx, int64_t c0, int64_t c1, int64_t ld)
{
    int64_t P = g->Ho * g->Wo;
    /* Parallel over channels: each writes only its own plane of dx. */
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) \
    if ((c1 - c0) * g->kh * g->kw * P > 2 * CKDI_BLOCK)
    for (int64_t ci = c0; ci < c1; ci++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                const float *row = cols + (((ci - c0) * g->kh + i) * g->kw + j) * ld;
                float *dc = dx + ci * g->H * g->W;
                int64_t lo, hi;
                valid_cols(g, j, &lo, &hi);
                for (int64_t oy = 0; oy < g->Ho; oy++) {
                    int64_t y = oy * g->sh - g->ph + i;
                    if (y < 0 || y >= g->H)
                        continue;
                    float *dst = dc + y * g->W + lo * g->sw - g->pw + j;
                    const float *r = row + oy * g->Wo;
                    for (int64_t ox = lo; ox < hi; ox++)
                        dst[(ox - lo) * g->sw] += r[ox];
                }
            }
}

/* Images per GEMM (see the header comment). */
#define CONV_CHUNK_FLOATS ((int64_t)1 << 21)

static int64_t chunk_images(const conv_geom *g)
{
    int64_t per = g->Cin * g->kh * g->kw * g->Ho * g->Wo;
    int64_t n = per > 0 ? CONV_CHUNK_FLOATS / per : 1;
    return n < 1 ? 1 : n > g->B ? g->B : n;
}

/* The cols of images [b0, b0 + n) side by side, [K, n·P]: im2col, or for a
 * direct conv the images' own rows. One image per thread. */
static void fill_cols(const conv_geom *g, const float *x, int64_t b0, int64_t n, float *cols)
{
    int64_t P = g->Ho * g->Wo, HW = g->H * g->W, ld = n * P;
    if (n == 1) {
        im2col_range(g, x + b0 * g->Cin * HW, cols, 0, g->Cin, P);
        return;
    }
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads())
    for (int64_t j = 0; j < n; j++) {
        const float *xb = x + (b0 + j) * g->Cin * HW;
        if (g->direct)
            for (int64_t ci = 0; ci < g->Cin; ci++)
                memcpy(cols + ci * ld + j * P, xb + ci * HW, (size_t)P * sizeof(float));
        else
            im2col_range(g, xb, cols + j * P, 0, g->Cin, ld);
    }
}

/* Threads for the loop over groups: all of them when there are enough groups
 * to share (depthwise), else 1 (the GEMMs take the threads). */
static int group_threads(const conv_geom *g)
{
    int nt = ckdi_op_threads();
    return g->groups > 1 && g->groups >= nt ? nt : 1;
}

static void conv2d_backward(ckd_ctx *c, ckd_node *n)
{
    ckd_tensor *x = n->in[0], *w = n->in[1], *bias = n->in[2];
    const conv_geom *g = n->saved;
    int64_t Cig = g->Cin / g->groups, Cog = g->Cout / g->groups, Kg = Cig * g->kh * g->kw;
    int64_t P = g->Ho * g->Wo, HW = g->H * g->W, K = g->Cin * g->kh * g->kw;
    /* dx accumulates (col2im adds), so it starts zeroed. */
    float *dx = ckdi_grad_buf(c, x), *dw = ckdi_grad_buf(c, w), *db = ckdi_grad_buf(c, bias);
    const float *Gall = n->out->grad;
    int64_t nb = chunk_images(g);
    int chunked = nb > 1, own = !g->direct || chunked; /* own: cols of our own, not x itself */
    float *cols = NULL, *dcols = NULL, *gbuf = NULL;
    if (own && (dw || dx)) {
        cols = dw ? ckd_scratch(c, (size_t)(K * nb * P) * sizeof(float), "conv2d backward") : NULL;
        dcols = dx ? ckd_scratch(c, (size_t)(K * nb * P) * sizeof(float), "conv2d backward") : NULL;
        if ((dw && !cols) || (dx && !dcols))
            return;
    }
    if (chunked && (dw || dx) && !(gbuf = ckd_scratch(c, (size_t)(g->Cout * nb * P) * sizeof(float), "conv2d")))
        return;
    int gt = group_threads(g);
    for (int64_t b0 = 0; (dw || dx) && b0 < g->B; b0 += nb) {
        int64_t nn = g->B - b0 < nb ? g->B - b0 : nb, ld = nn * P;
        const float *G = Gall + b0 * g->Cout * P;
        if (chunked) { /* dy of the chunk as [Cout, n·P] */
            for (int64_t jj = 0; jj < nn; jj++)
                for (int64_t co = 0; co < g->Cout; co++)
                    memcpy(gbuf + co * ld + jj * P, G + (jj * g->Cout + co) * P, (size_t)P * sizeof(float));
            G = gbuf;
        }
        if (dw && own)
            fill_cols(g, x->data, b0, nn, cols);
        const float *xb = x->data + b0 * g->Cin * HW;
        float *dxb = dx ? dx + b0 * g->Cin * HW : NULL;
#pragma omp parallel for schedule(guided) num_threads(gt) if (gt > 1)
        for (int64_t gi = 0; gi < g->groups; gi++) {
            const float *Gg = G + gi * Cog * ld, *wg = w->data + gi * Cog * Kg;
            if (dw) {
                const float *cg = own ? cols + gi * Kg * ld : xb + gi * Cig * HW;
                ckd_gemm(0, 1, Cog, Kg, ld, 1.0f, Gg, ld, cg, ld, 1.0f, dw + gi * Cog * Kg, Kg);
            }
            if (dxb && !own) /* dx_bg [Cig, HW] += W_gᵀ · G_bg */
                ckd_gemm(1, 0, Kg, P, Cog, 1.0f, wg, Kg, Gg, P, 1.0f, dxb + gi * Cig * HW, P);
            else if (dxb)
                ckd_gemm(1, 0, Kg, ld, Cog, 1.0f, wg, Kg, Gg, ld, 0.0f, dcols + gi * Kg * ld, ld);
        }
        if (!dxb || !own)
            continue;
        if (nn == 1) {
            col2im_add_range(g, dcols, dxb, 0, g->Cin, P);
            continue;
        }
        /* each image adds into its own part of dx */
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads())
        for (int64_t jj = 0; jj < nn; jj++) {
            float *dxj = dxb + jj * g->Cin * HW;
            if (g->direct)
                for (int64_t ci = 0; ci < g->Cin; ci++)
                    for (int64_t q = 0; q < P; q++)
                        dxj[ci * HW + q] += dcols[ci * ld + jj * P + q];
            else
                col2im_add_range(g, dcols + jj * P, dxj, 0, g->Cin, ld);
        }
    }
    if (db) {
        /* Per output channel, images in order, in double: thread-count independent. */
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (g->B * g->Cout * P > 2 * CKDI_BLOCK)
        for (int64_t co = 0; co < g->Cout; co++) {
            double s = 0;
            for (int64_t b = 0; b < g->B; b++) {
                const float *Gc = Gall + (b * g->Cout + co) * P;
                for (int64_t p = 0; p < P; p++)
                    s += Gc[p];
            }
            db[co] += (float)s;
        }
    }
}

ckd_tensor *ckd_conv2d_ex(ckd_ctx *c, ckd_tensor *x, ckd_tensor *w, ckd_tensor *bias, const ckd_conv2d_params *p)
{
    if (!x || !w || ckd_ctx_failed(c))
        return NULL;
    char s0[64], s1[64];
    ckd_conv2d_params q = p ? *p : (ckd_conv2d_params){0};
    if (q.stride_h < 0 || q.stride_w < 0 || q.pad_h < 0 || q.pad_w < 0 || q.groups < 0)
        return ckd_ctx_fail(c, "conv2d: stride %dx%d, padding %dx%d or groups %d invalid (want stride, groups >= 1, "
                               "padding >= 0)",
                            q.stride_h, q.stride_w, q.pad_h, q.pad_w, q.groups);
    q.stride_h = q.stride_h ? q.stride_h : 1;
    q.stride_w = q.stride_w ? q.stride_w : 1;
    q.groups = q.groups ? q.groups : 1;
    if (x->ndim != 4 || w->ndim != 4 || w->n == 0)
        return ckd_ctx_fail(c, "conv2d: want x [B, Cin, H, W] and w [Cout, Cin/groups, kh, kw], got x %s, w %s",
                            SHAPE(x, s0), SHAPE(w, s1));
    conv_geom g = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[0], w->shape[2], w->shape[3], 0, 0,
                   q.stride_h, q.stride_w, q.pad_h, q.pad_w, q.groups, 0};
    if (g.Cin % g.groups)
        return ckd_ctx_fail(c, "conv2d: %lld input channels (input %s) are not divisible by groups %d",
                            (long long)g.Cin, SHAPE(x, s0), q.groups);
    if (g.Cout % g.groups)
        return ckd_ctx_fail(c, "conv2d: %lld output channels (weight %s) are not divisible by groups %d",
                            (long long)g.Cout, SHAPE(w, s1), q.groups);
    if (w->shape[1] != g.Cin / g.groups)
        return ckd_ctx_fail(c, "conv2d: weight %s has %lld input channels per group; input %s with groups %d "
                               "needs %lld",
                            SHAPE(w, s1), (long long)w->shape[1], SHAPE(x, s0), q.groups,
                            (long long)(g.Cin / g.groups));
    if (g.H + 2 * g.ph < g.kh || g.W + 2 * g.pw < g.kw)
        return ckd_ctx_fail(c, "conv2d: kernel %lldx%lld leaves no output pixels on input %s padded by %dx%d",
                            (long long)g.kh, (long long)g.kw, SHAPE(x, s0), q.pad_h, q.pad_w);
    if (bias && bias->n != g.Cout)
        return ckd_ctx_fail(c, "conv2d: bias %s does not match %lld output channels", SHAPE(bias, s0),
                            (long long)g.Cout);
    g.Ho = (g.H + 2 * g.ph - g.kh) / g.sh + 1;
    g.Wo = (g.W + 2 * g.pw - g.kw) / g.sw + 1;
    g.direct = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
    int64_t Cig = g.Cin / g.groups, Cog = g.Cout / g.groups, Kg = Cig * g.kh * g.kw, P = g.Ho * g.Wo;
    int64_t HW = g.H * g.W, nb = chunk_images(&g);
    int chunked = nb > 1, own = !g.direct || chunked;
    ckd_tensor *out = ckd_tensor_new(c, 4, (int64_t[]){g.B, g.Cout, g.Ho, g.Wo});
    float *cols = out && own ? ckd_scratch(c, (size_t)(g.Cin * g.kh * g.kw * nb * P) * sizeof(float), "conv2d")
                             : NULL;
    float *ybuf = out && chunked ? ckd_scratch(c, (size_t)(g.Cout * nb * P) * sizeof(float), "conv2d") : NULL;
    if (!out || (own && !cols) || (chunked && !ybuf))
        return NULL;
    int gt = group_threads(&g);
    for (int64_t b0 = 0; b0 < g.B; b0 += nb) {
        int64_t nn = g.B - b0 < nb ? g.B - b0 : nb, ld = nn * P;
        const float *xb = x->data + b0 * g.Cin * HW;
        float *y = chunked ? ybuf : out->data + b0 * g.Cout * P; /* [Cout, n·P] */
        if (own)
            fill_cols(&g, x->data, b0, nn, cols);
#pragma omp parallel for schedule(guided) num_threads(gt) if (gt > 1)
        for (int64_t gi = 0; gi < g.groups; gi++) {
            const float *cg = own ? cols + gi * Kg * ld : xb + gi * Cig * HW;
            ckd_gemm(0, 0, Cog, ld, Kg, 1.0f, w->data + gi * Cog * Kg, Kg, cg, ld, 0.0f, y + gi * Cog * ld, ld);
        }
        /* to [B, Cout, P], adding the bias */
        for (int64_t jj = 0; jj < nn; jj++)
            for (int64_t co = 0; co < g.Cout; co++) {
                float *dst = out->data + ((b0 + jj) * g.Cout + co) * P;
                const float *src = y + co * ld + jj * P;
                float bv = bias ? bias->data[co] : 0.0f;
                if (chunked)
                    for (int64_t k = 0; k < P; k++)
                        dst[k] = src[k] + bv;
                else if (bias)
                    for (int64_t k = 0; k < P; k++)
                        dst[k] += bv;
            }
    }
    ckd_tensor *in[3] = {x, w, bias};
    if (ckdi_needs_grad(c, in, 3)) {
        conv_geom *saved = ckd_scratch(c, sizeof g, "conv2d");
        ckd_node *n = saved ? ckdi_record(c, "conv2d", conv2d_backward, out, in, 3) : NULL;
        if (!n)
            return NULL;
        *saved = g;
        n->saved = saved;
    }
    return out;
}

ckd_tensor *ckd_conv2d(ckd_ctx *c, ckd_tensor *x, ckd_tensor *w, ckd_tensor *bias, int stride, int pad)
{
    if (!x || !w || ckd_ctx_failed(c))
        return NULL;
    if (stride < 1 || pad < 0) /* 0 is "1" only in the params struct */
        return ckd_ctx_fail(c, "conv2d: stride %d / padding %d invalid", stride, pad);
    ckd_conv2d_params p = {stride, stride, pad, pad, 1};
    return ckd_conv2d_ex(c, x, w, bias, &p);
}
