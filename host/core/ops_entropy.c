/* Entropy models for rate terms: the factorized density of Ballé et al. 2018
 * (appendix 6.1; CompressAI's EntropyBottleneck with filters (3, 3, 3)) and
 * the quantisation proxy around it. CIFD's rate-distortion modules and
 * information bottleneck use them (the reference's cifd.md §1-2).
 *
 * One density per channel c: a monotone map h(v) from R to R built from four
 * layers of widths 1 -> 3 -> 3 -> 3 -> 1,
 *     z_k = softplus(H_k) · h_{k-1} + b_k,    h_0 = v,
 *     h_k = z_k + tanh(a_k) ⊙ tanh(z_k)       (k = 1..3; h_4 = z_4),
 * whose sigmoid is a cumulative distribution. The probability of the unit
 * interval around y is q(y) = σ(h(y + ½)) − σ(h(y − ½)), computed in the
 * tail where it is accurate: s = −sign(h(y−½) + h(y+½)),
 * q = |σ(s·h(y+½)) − σ(s·h(y−½))|, floored at 1e-9 (the floor passes the
 * gradient, as CompressAI's LowerBound does for a likelihood). The op returns
 * −log q(y) per element, in nats.
 *
 * Parameters, per channel, packed in row-major layer order (each layer's
 * [out, in] matrix row by row; CompressAI's _matrix{k}, _bias{k}, _factor{k}
 * of shapes [C, out, in], [C, out, 1], [C, out, 1] flattened and concatenated):
 *     matrices [C, 24] = H_1 (3x1) | H_2 (3x3) | H_3 (3x3) | H_4 (1x3)
 *     biases   [C, 10] = b_1 (3)   | b_2 (3)   | b_3 (3)   | b_4 (1)
 *     factors  [C, 9]  = a_1 (3)   | a_2 (3)   | a_3 (3)
 * Per element the map is evaluated in double: it is tiny, and a tail
 * probability then keeps its digits.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include "clipkd/ops.h"
#include "tape.h"

#define SHAPE(t, buf) ckd_shape_str((t), (buf), sizeof(buf))

#define FD_LAYERS 4
static const int fd_in[FD_LAYERS] = {1, 3, 3, 3};
static const int fd_out[FD_LAYERS] = {3, 3, 3, 1};
static const int fd_moff[FD_LAYERS] = {0, 3, 12, 21}; /* into matrices */
static const int fd_boff[FD_LAYERS] = {0, 3, 6, 9};   /* into biases, and into per-layer activations */
static const int fd_foff[FD_LAYERS] = {0, 3, 6, -1};  /* into factors (none on the last layer) */

#define FD_LIKELIHOOD_FLOOR 1e-9

/* One channel's parameters, transformed once: softplus(H) and its derivative
 * σ(H), the biases, tanh(a). */
typedef struct {
    double sp[CKD_FD_MATRIX_SIZE], dsp[CKD_FD_MATRIX_SIZE];
    double b[CKD_FD_BIAS_SIZE];
    double ta[CKD_FD_FACTOR_SIZE];
} fd_chan;

static double softplus(double x) { return x > 20 ? x : log1p(exp(x)); }
static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

static void fd_chan_load(fd_chan *p, const float *m, const float *b, const float *f)
{
    for (int i = 0; i < CKD_FD_MATRIX_SIZE; i++) {
        p->sp[i] = softplus(m[i]);
        p->dsp[i] = sigmoid(m[i]);
    }
    for (int i = 0; i < CKD_FD_BIAS_SIZE; i++)
        p->b[i] = b[i];
    for (int i = 0; i < CKD_FD_FACTOR_SIZE; i++)
        p->ta[i] = tanh(f[i]);
}

/* h(v); z and h receive each layer's pre-activations and outputs (10 each,
 * laid out as the biases) for the backward pass. */
static double fd_map(const fd_chan *p, double v, double *z, double *h)
{
    const double *in = &v;
    for (int k = 0; k < FD_LAYERS; k++) {
        for (int o = 0; o < fd_out[k]; o++) {
            double s = p->b[fd_boff[k] + o];
            for (int i = 0; i < fd_in[k]; i++)
                s += p->sp[fd_moff[k] + o * fd_in[k] + i] * in[i];
            z[fd_boff[k] + o] = s;
            h[fd_boff[k] + o] = fd_foff[k] >= 0 ? s + p->ta[fd_foff[k] + o] * tanh(s) : s;
        }
        in = h + fd_boff[k];
    }
    return h[CKD_FD_BIAS_SIZE - 1];
}

/* Gradient accumulators of one channel. */
typedef struct {
    double m[CKD_FD_MATRIX_SIZE], b[CKD_FD_BIAS_SIZE], f[CKD_FD_FACTOR_SIZE];
} fd_grad;

/* Back through h at v (z, h from fd_map) with dh(v) = g: adds to the
 * parameter gradients and returns dh/dv · g. */
static double fd_map_backward(const fd_chan *p, double v, const double *z, const double *h, double g, fd_grad *d)
{
    double dh[CKD_FD_BIAS_SIZE] = {0};
    double dv = 0;
    dh[CKD_FD_BIAS_SIZE - 1] = g;
    for (int k = FD_LAYERS - 1; k >= 0; k--) {
        const double *in = k ? h + fd_boff[k - 1] : &v;
        double *din = k ? dh + fd_boff[k - 1] : &dv;
        for (int o = 0; o < fd_out[k]; o++) {
            int j = fd_boff[k] + o;
            double dz = dh[j];
            if (fd_foff[k] >= 0) {
                double t = tanh(z[j]), a = p->ta[fd_foff[k] + o];
                d->f[fd_foff[k] + o] += dh[j] * t * (1 - a * a);
                dz *= 1 + a * (1 - t * t);
            }
            d->b[j] += dz;
            for (int i = 0; i < fd_in[k]; i++) {
                int w = fd_moff[k] + o * fd_in[k] + i;
                d->m[w] += dz * in[i] * p->dsp[w];
                din[i] += dz * p->sp[w];
            }
        }
    }
    return dv;
}

/* The likelihood of the unit interval around y, with what backward needs:
 * the two logits' sigmoids in the stable tail (sl, su), the sign s, and
 * the sign of the difference. */
typedef struct {
    double lo, up;         /* h(y − ½), h(y + ½) */
    double s, sl, su, sd;  /* s = −sign(lo + up); σ(s·lo), σ(s·up); sign(σ(s·up) − σ(s·lo)) */
    double q;              /* floored likelihood */
} fd_lik;

static double sign(double x) { return (x > 0) - (x < 0); }

static void fd_likelihood(const fd_chan *p, double y, fd_lik *r, double *zl, double *hl, double *zu, double *hu)
{
    r->lo = fd_map(p, y - 0.5, zl, hl);
    r->up = fd_map(p, y + 0.5, zu, hu);
    r->s = -sign(r->lo + r->up);
    r->sl = sigmoid(r->s * r->lo);
    r->su = sigmoid(r->s * r->up);
    double d = r->su - r->sl;
    r->sd = sign(d);
    r->q = fabs(d) > FD_LIKELIHOOD_FLOOR ? fabs(d) : FD_LIKELIHOOD_FLOOR;
}

static int fd_check(ckd_ctx *c, ckd_tensor *y, ckd_tensor *m, ckd_tensor *b, ckd_tensor *f)
{
    char s0[64], s1[64], s2[64], s3[64];
    if (y->ndim < 1 || y->shape[y->ndim - 1] == 0)
        goto bad;
    int64_t C = y->shape[y->ndim - 1];
    if (m->ndim != 2 || m->shape[0] != C || m->shape[1] != CKD_FD_MATRIX_SIZE || b->ndim != 2 ||
        b->shape[0] != C || b->shape[1] != CKD_FD_BIAS_SIZE || f->ndim != 2 || f->shape[0] != C ||
        f->shape[1] != CKD_FD_FACTOR_SIZE)
        goto bad;
    return 1;
bad:
    ckd_ctx_fail(c, "factorized_nll: y %s must be [..., C] with matrices [C, %d], biases [C, %d], factors [C, %d]; got %s, %s, %s",
                 SHAPE(y, s0), CKD_FD_MATRIX_SIZE, CKD_FD_BIAS_SIZE, CKD_FD_FACTOR_SIZE, SHAPE(m, s1), SHAPE(b, s2),
                 SHAPE(f, s3));
    return 0;
}

/* Backward: out[r, c] = −log q, so d/dq = −G/q (the floor passes it), and
 *   dq/d h(y+½) =  sd · s · σ'(s·up),   dq/d h(y−½) = −sd · s · σ'(s·lo),
 * each taken back through the channel's map; dy is the sum of both (y ± ½).
 * Channels run in parallel, each summing its rows in order, so the result does
 * not depend on the thread count. Nothing was saved: the map is recomputed. */
static void fd_backward(ckd_ctx *c, ckd_node *n)
{
    ckd_tensor *y = n->in[0], *m = n->in[1], *b = n->in[2], *f = n->in[3];
    int64_t C = m->shape[0], R = y->n / C;
    float *dy = ckdi_grad_buf(c, y), *dm = ckdi_grad_buf(c, m), *db = ckdi_grad_buf(c, b), *df = ckdi_grad_buf(c, f);
    const float *G = n->out->grad;
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads())
    for (int64_t ch = 0; ch < C; ch++) {
        fd_chan p;
        fd_grad d;
        memset(&d, 0, sizeof(d));
        fd_chan_load(&p, m->data + ch * CKD_FD_MATRIX_SIZE, b->data + ch * CKD_FD_BIAS_SIZE,
                     f->data + ch * CKD_FD_FACTOR_SIZE);
        for (int64_t r = 0; r < R; r++) {
            double zl[CKD_FD_BIAS_SIZE], hl[CKD_FD_BIAS_SIZE], zu[CKD_FD_BIAS_SIZE], hu[CKD_FD_BIAS_SIZE];
            double v = y->data[r * C + ch];
            fd_lik l;
            fd_likelihood(&p, v, &l, zl, hl, zu, hu);
            double gq = -(double)G[r * C + ch] / l.q;
            double gup = gq * l.sd * l.s * l.su * (1 - l.su);
            double glo = -gq * l.sd * l.s * l.sl * (1 - l.sl);
            double dv = fd_map_backward(&p, v - 0.5, zl, hl, glo, &d) + fd_map_backward(&p, v + 0.5, zu, hu, gup, &d);
            if (dy)
                dy[r * C + ch] += (float)dv;
        }
        for (int i = 0; dm && i < CKD_FD_MATRIX_SIZE; i++)
            dm[ch * CKD_FD_MATRIX_SIZE + i] += (float)d.m[i];
        for (int i = 0; db && i < CKD_FD_BIAS_SIZE; i++)
            db[ch * CKD_FD_BIAS_SIZE + i] += (float)d.b[i];
        for (int i = 0; df && i < CKD_FD_FACTOR_SIZE; i++)
            df[ch * CKD_FD_FACTOR_SIZE + i] += (float)d.f[i];
    }
}

ckd_tensor *ckd_factorized_nll(ckd_ctx *c, ckd_tensor *y, ckd_tensor *matrices, ckd_tensor *biases, ckd_tensor *factors)
{
    if (!y || !matrices || !biases || !factors || ckd_ctx_failed(c))
        return NULL;
    if (!fd_check(c, y, matrices, biases, factors))
        return NULL;
    ckd_tensor *out = ckdi_out_like(c, y);
    if (!out)
        return NULL;
    int64_t C = matrices->shape[0], R = y->n / C;
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads())
    for (int64_t ch = 0; ch < C; ch++) {
        fd_chan p;
        fd_chan_load(&p, matrices->data + ch * CKD_FD_MATRIX_SIZE, biases->data + ch * CKD_FD_BIAS_SIZE,
                     factors->data + ch * CKD_FD_FACTOR_SIZE);
        for (int64_t r = 0; r < R; r++) {
            double zl[CKD_FD_BIAS_SIZE], hl[CKD_FD_BIAS_SIZE], zu[CKD_FD_BIAS_SIZE], hu[CKD_FD_BIAS_SIZE];
            fd_lik l;
            fd_likelihood(&p, y->data[r * C + ch], &l, zl, hl, zu, hu);
            out->data[r * C + ch] = (float)-log(l.q);
        }
    }
    ckd_tensor *in[4] = {y, matrices, biases, factors};
    if (ckdi_needs_grad(c, in, 4) && !ckdi_record(c, "factorized_nll", fd_backward, out, in, 4))
        return NULL;
    return out;
}

void ckd_factorized_init(ckd_tensor *matrices, ckd_tensor *biases, ckd_tensor *factors, ckd_rng *r)
{
    /* CompressAI's EntropyBottleneck with init_scale 10: softplus(H_k) starts
     * at 1 / (10^¼ · out_k), so the map's slope starts near 1/10 overall. */
    const double scale = pow(10.0, 1.0 / (FD_LAYERS));
    int64_t C = matrices->shape[0];
    for (int64_t ch = 0; ch < C; ch++) {
        for (int k = 0; k < FD_LAYERS; k++) {
            float init = (float)log(expm1(1.0 / scale / fd_out[k]));
            for (int i = 0; i < fd_out[k] * fd_in[k]; i++)
                matrices->data[ch * CKD_FD_MATRIX_SIZE + fd_moff[k] + i] = init;
            for (int o = 0; o < fd_out[k]; o++)
                biases->data[ch * CKD_FD_BIAS_SIZE + fd_boff[k] + o] = (float)(ckd_rng_uniform(r) - 0.5);
        }
        for (int i = 0; i < CKD_FD_FACTOR_SIZE; i++)
            factors->data[ch * CKD_FD_FACTOR_SIZE + i] = 0.0f;
    }
}

/* ---- quantisation proxy ---------------------------------------------------------
 * CKD_QUANT_NOISE: out = x + u, u ~ U[−½, ½) from the context's RNG (Ballé's
 * training proxy for rounding); CKD_QUANT_ROUND: out = round(x), halves to
 * even (torch.round). The gradient passes unchanged in both (straight through):
 * exact for the noise, the usual estimator for rounding.
 */
static void quantize_backward(ckd_ctx *c, ckd_node *n)
{
    float *dx = ckdi_grad_buf(c, n->in[0]);
    if (!dx)
        return;
    const float *g = n->out->grad;
    for (int64_t i = 0; i < n->out->n; i++)
        dx[i] += g[i];
}

ckd_tensor *ckd_quantize(ckd_ctx *c, ckd_tensor *x, ckd_quant_mode mode)
{
    if (!x || ckd_ctx_failed(c))
        return NULL;
    if (mode != CKD_QUANT_NOISE && mode != CKD_QUANT_ROUND)
        return ckd_ctx_fail(c, "quantize: unknown mode %d", (int)mode);
    ckd_tensor *out = ckdi_out_like(c, x);
    if (!out)
        return NULL;
    if (mode == CKD_QUANT_NOISE) {
        ckd_rng *r = ckd_ctx_rng(c);
        for (int64_t i = 0; i < x->n; i++)
            out->data[i] = x->data[i] + (float)(ckd_rng_uniform(r) - 0.5);
    } else {
        for (int64_t i = 0; i < x->n; i++)
            out->data[i] = nearbyintf(x->data[i]);
    }
    if (ckdi_needs_grad(c, &x, 1) && !ckdi_record(c, "quantize", quantize_backward, out, &x, 1))
        return NULL;
    return out;
}
