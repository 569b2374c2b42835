/* Elementwise ops: broadcasting binary ops, scale, activations, dropout. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "clipkd/ops.h"
#include "tape.h"

#define SHAPE(t, buf) ckd_shape_str((t), (buf), sizeof(buf))

/* ---- broadcasting binary ops -------------------------------------------------
 * out [shape of the larger operand]; out[i] = a[i % na] ∘ b[i % nb]. The smaller
 * operand's shape is a suffix of the larger's (or it has one element), so
 * i % n indexes it correctly.
 * Backward, with G = dout:
 *   add: da += G, db += G          sub: da += G, db −= G
 *   mul: da += G·b, db += G·a      div: da += G/b, db −= G·a/b²
 * Gradients of a broadcast operand are summed serially in index order, so the
 * result does not depend on the thread count.
 */
enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV };
static const char *const binary_names[] = {"add", "sub", "mul", "div"};

/* Does `small` broadcast against `big`? Its shape, without leading 1s, must
 * equal the trailing dimensions of big's (or it has a single element). */
static int is_suffix(const ckd_tensor *small, const ckd_tensor *big)
{
    if (small->n == 1)
        return 1;
    int lead = 0;
    while (lead < small->ndim && small->shape[lead] == 1)
        lead++;
    int nd = small->ndim - lead;
    if (nd > big->ndim)
        return 0;
    for (int i = 1; i <= nd; i++)
        if (small->shape[small->ndim - i] != big->shape[big->ndim - i])
            return 0;
    return 1;
}

/* d(out)/d(a or b) times the incoming gradient g, for one element. */
static inline float binary_dgrad(int kind, int is_b, float g, float av, float bv)
{
    switch (kind) {
    case OP_ADD: return g;
    case OP_SUB: return is_b ? -g : g;
    case OP_MUL: return g * (is_b ? av : bv);
    default: return is_b ? -g * av / (bv * bv) : g / bv;
    }
}

static void binary_grad(float *d, int64_t nd, const float *G, int64_t n, int kind, int is_b, const float *a,
                        int64_t na, const float *b, int64_t nb)
{
    if (nd == n) {
#pragma omp parallel for schedule(static) num_threads(ckdi_op_threads()) if (n > 65536)
        for (int64_t i = 0; i < n; i++) {
            d[i] += binary_dgrad(kind, is_b, G[i], a[i % na], b[i % nb]);
        }
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        d[i % nd] += binary_dgrad(kind, is_b, G[i], a[i % na], b[i % nb]);
    }
}

static void binary_backward(ckd_ctx *c, ckd_node *n)
{
    ckd_tensor *a = n->in[0], *b = n->in[1];
    int kind = (int)n->iarg[0];
    float *da = ckdi_grad_buf(c, a), *db = ckdi_grad_buf(c, b);
    if (da)
        binary_grad(da, a->n, n->out->grad, n->out->n, kind, 0, a->data, a->n, b->data, b->n);
    if (db)
        binary_grad(db, b->n, n->out->grad, n->out->n, kind, 1, a->data, a->n, b->data, b->n);
}

static ckd_tensor *binary(ckd_ctx *c, ckd_tensor *a, ckd_tensor *b, int kind)
{
    if (!a || !b || ckd_ctx_failed(c))
        return NULL;
    /* The output takes the larger operand's shape; with equal counts, the one
     * with more dimensions ([1, T, C] + [T, C] -> [1, T, C]). */
    const ckd_tensor *big = (a->n > b->n || (a->n == b->n && a->ndim >= b->ndim)) ? a : b;
    const ckd_tensor *small = big == a ? b : a;
    if (!is_suffix(small, big)) {
        char s0[64], s1[64];
        return ckd_ctx_fail(c, "%s: shapes %s and %s do not broadcast (the smaller must match the trailing dims)",
                            binary_names[kind], SHAPE(a, s0), SHAPE(b, s1));
    }
    ckd_tensor *out = ckdi_out_like(c, big);
    if (!out)
        return NULL;
    const float *x = a->data, *y = b->data;
    int64_t na = a->n, nb = b->n, n = out->n;
    float *o = out->data;
#pragma omp parallel for schedule(static) num_threads(ckdi_op_threads()) if (n > 65536)
    for (int64_t i = 0; i < n; i++) {
        float u = x[i % na], v = y[i % nb];
        o[i] = kind == OP_ADD ? u + v : kind == OP_SUB ? u - v : kind == OP_MUL ? u * v : u / v;
    }
    ckd_tensor *in[2] = {a, b};
    if (ckdi_needs_grad(c, in, 2)) {
        ckd_node *node = ckdi_record(c, binary_names[kind], binary_backward, out, in, 2);
        if (!node)
            return NULL;
        node->iarg[0] = kind;
    }
    return out;
}

ckd_tensor *ckd_add(ckd_ctx *c, ckd_tensor *a, ckd_tensor *b) { return binary(c, a, b, OP_ADD); }
ckd_tensor *ckd_sub(ckd_ctx *c, ckd_tensor *a, ckd_tensor *b) { return binary(c, a, b, OP_SUB); }
ckd_tensor *ckd_mul(ckd_ctx *c, ckd_tensor *a, ckd_tensor *b) { return binary(c, a, b, OP_MUL); }
ckd_tensor *ckd_div(ckd_ctx *c, ckd_tensor *a, ckd_tensor *b) { return binary(c, a, b, OP_DIV); }

/* ---- unary ops ------------------------------------------------------------------
 * y = f(x), any shape. Backward: dx += G · f'(x), where f' is written with
 * whichever of x and y is cheaper:
 *   scale s: s             exp: y               log: 1/x            sqrt: 1/(2y)
 *   relu: [x > 0]          sigmoid: y(1−y)      tanh: 1 − y²
 *   gelu: Φ(x) + x·φ(x)    (Φ, φ: standard normal cdf and pdf; exact erf form)
 *   quick_gelu: σ(1.702x) + 1.702·x·σ(1.702x)(1 − σ(1.702x))
 */
enum { U_SCALE, U_EXP, U_LOG, U_SQRT, U_RELU, U_GELU, U_QGELU, U_SIGMOID, U_TANH };
static const char *const unary_names[] = {"scale", "exp", "log", "sqrt", "relu", "gelu", "quick_gelu", "sigmoid", "tanh"};

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

static inline float unary_f(int kind, float x, float s)
{
    switch (kind) {
    case U_SCALE: return s * x;
    case U_EXP: return expf(x);
    case U_LOG: return logf(x);
    case U_SQRT: return sqrtf(x);
    case U_RELU: return x > 0.0f ? x : 0.0f;
    case U_GELU: return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2));
    case U_QGELU: return x * sigmoidf(1.702f * x);
    case U_SIGMOID: return sigmoidf(x);
    default: return tanhf(x);
    }
}

static inline float unary_df(int kind, float x, float y, float s)
{
    switch (kind) {
    case U_SCALE: return s;
    case U_EXP: return y;
    case U_LOG: return 1.0f / x;
    case U_SQRT: return 0.5f / y;
    case U_RELU: return x > 0.0f ? 1.0f : 0.0f;
    case U_GELU: {
        float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2));
        float pdf = expf(-0.5f * x * x) * 0.3989422804014327f;
        return cdf + x * pdf;
    }
    case U_QGELU: {
        float sg = sigmoidf(1.702f * x);
        return sg + 1.702f * x * sg * (1.0f - sg);
    }
    case U_SIGMOID: return y * (1.0f - y);
    default: return 1.0f - y * y;
    }
}

static void unary_backward(ckd_ctx *c, ckd_node *n)
{
    ckd_tensor *x = n->in[0], *y = n->out;
    float *dx = ckdi_grad_buf(c, x);
    if (!dx)
        return;
    int kind = (int)n->iarg[0];
    float s = n->farg[0];
    const float *G = y->grad;
    int64_t cnt = x->n;
#pragma omp parallel for schedule(static) num_threads(ckdi_op_threads()) if (cnt > 65536)
    for (int64_t i = 0; i < cnt; i++)
        dx[i] += G[i] * unary_df(kind, x->data[i], y->data[i], s);
}

static ckd_tensor *unary(ckd_ctx *c, ckd_tensor *x, int kind, float s)
{
    if (!x || ckd_ctx_failed(c))
        return NULL;
    ckd_tensor *out = ckdi_out_like(c, x);
    if (!out)
        return NULL;
    int64_t cnt = x->n;
    const float *xd = x->data;
    float *yd = out->data;
#pragma omp parallel for schedule(static) num_threads(ckdi_op_threads()) if (cnt > 65536)
    for (int64_t i = 0; i < cnt; i++)
        yd[i] = unary_f(kind, xd[i], s);
    if (ckdi_needs_grad(c, &x, 1)) {
        ckd_node *n = ckdi_record(c, unary_names[kind], unary_backward, out, &x, 1);
        if (!n)
            return NULL;
        n->iarg[0] = kind;
        n->farg[0] = s;
    }
    return out;
}

ckd_tensor *ckd_scale(ckd_ctx *c, ckd_tensor *x, float s) { return unary(c, x, U_SCALE, s); }
ckd_tensor *ckd_exp(ckd_ctx *c, ckd_tensor *x) { return unary(c, x, U_EXP, 0); }
ckd_tensor *ckd_log(ckd_ctx *c, ckd_tensor *x) { return unary(c, x, U_LOG, 0); }
ckd_tensor *ckd_sqrt(ckd_ctx *c, ckd_tensor *x) { return unary(c, x, U_SQRT, 0); }
ckd_tensor *ckd_relu(ckd_ctx *c, ckd_tensor *x) { return unary(c, x, U_RELU, 0); }
ckd_tensor *ckd_gelu(ckd_ctx *c, ckd_tensor *x) { return unary(c, x, U_GELU, 0); }
ckd_tensor *ckd_quick_gelu(ckd_ctx *c, ckd_tensor *x) { return unary(c, x, U_QGELU, 0); }
ckd_tensor *ckd_sigmoid(ckd_ctx *c, ckd_tensor *x) { return unary(c, x, U_SIGMOID, 0); }
ckd_tensor *ckd_tanh(ckd_ctx *c, ckd_tensor *x) { return unary(c, x, U_TANH, 0); }

/* ---- dropout ------------------------------------------------------------------------
 * Active only in training mode (independent of gradient recording, so a
 * gradient check sees the same function with and without the tape).
 * y = x · m / (1 − p), m ~ Bernoulli(1 − p), drawn serially from the context RNG
 * (so the mask is the same whatever the thread count). Backward: dx += G · m / (1 − p).
 */
static void dropout_backward(ckd_ctx *c, ckd_node *n)
{
    float *dx = ckdi_grad_buf(c, n->in[0]);
    const float *m = n->saved;
    if (dx)
        for (int64_t i = 0; i < n->out->n; i++)
            dx[i] += n->out->grad[i] * m[i];
}

ckd_tensor *ckd_dropout(ckd_ctx *c, ckd_tensor *x, float p)
{
    if (!x || ckd_ctx_failed(c))
        return NULL;
    if (!(p >= 0.0f && p < 1.0f))
        return ckd_ctx_fail(c, "dropout: probability %g outside [0, 1)", (double)p);
    if (p == 0.0f || !ckd_ctx_training(c))
        return x;
    ckd_tensor *out = ckdi_out_like(c, x);
    float *m = out ? ckd_scratch(c, (size_t)x->n * sizeof(float), "dropout") : NULL;
    if (!m)
        return NULL;
    ckd_rng *r = ckd_ctx_rng(c);
    float keep = 1.0f / (1.0f - p);
    for (int64_t i = 0; i < x->n; i++) {
        m[i] = ckd_rng_uniform(r) >= p ? keep : 0.0f;
        out->data[i] = x->data[i] * m[i];
    }
    if (ckdi_needs_grad(c, &x, 1)) {
        ckd_node *n = ckdi_record(c, "dropout", dropout_backward, out, &x, 1);
        if (!n)
            return NULL;
        n->saved = m;
    }
    return out;
}
