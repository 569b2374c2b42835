/* Elementwise ops: broadcasting binary ops, scale, activations, dropout. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "clipkd/ops.h"
#include "tape.h"
#include "vecmath.h"

#define SHAPE(t, buf) ckd_shape_str((t), (buf), sizeof(buf))

/* ---- broadcasting binary ops -------------------------------------------------
 * out [shape of the larger operand]; out[i] = a[i % na] ∘ b[i % nb]. The smaller
 * operand's shape is a suffix of the larger's (or it has one element), so the
 * output is R rows of P = (smaller count) elements, the smaller operand repeats
 * every row, and a single element repeats everywhere. The kernels walk rows and
 * columns (no modulo per element) so that each contiguous run is one vector loop.
 * Backward, with G = dout:
 *   add: da += G, db += G          sub: da += G, db −= G
 *   mul: da += G·b, db += G·a      div: da += G/b, db −= G·a/b²
 * The gradient of a repeated operand is a sum over rows: for add and sub a
 * [P] operand takes ckdi_colsum_add's fixed row blocks; for mul and div its
 * column j sums its rows in row order, the columns split between threads; a
 * single-element operand sums fixed blocks of CKDI_BLOCK elements, then the
 * block sums in order. None of these orders depends on the thread count.
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

CKDI_INLINE float binary_f(int kind, float u, float v)
{
    switch (kind) {
    case OP_ADD: return u + v;
    case OP_SUB: return u - v;
    case OP_MUL: return u * v;
    default: return u / v;
    }
}

/* d(out)/d(a or b) times the incoming gradient g, for one element. */
CKDI_INLINE float binary_dgrad(int kind, int is_b, float g, float av, float bv)
{
    switch (kind) {
    case OP_ADD: return g;
    case OP_SUB: return is_b ? -g : g;
    case OP_MUL: return g * (is_b ? av : bv);
    default: return is_b ? -g * av / (bv * bv) : g / bv;
    }
}

/* The operands as the kernels see them: data and whether it is indexed by
 * the flat output index (full), by the column (period P), or not at all
 * (one element). */
typedef struct bin_geom {
    int64_t n, P;        /* output elements; row length = the repeating period */
    const float *a, *b;
    int a_full, b_full;  /* operand has n elements */
    int a_one, b_one;    /* operand has one element */
} bin_geom;

static bin_geom bin_geometry(const ckd_tensor *a, const ckd_tensor *b, int64_t n)
{
    bin_geom g = {n, n, a->data, b->data, a->n == n, b->n == n, a->n == 1 && n > 1, b->n == 1 && n > 1};
    int64_t small = a->n < b->n ? a->n : b->n;
    if (small > 1 && small < n)
        g.P = small;
    return g;
}

/* Pointers to the operands' elements at flat output index i (column j). */
CKDI_INLINE const float *bin_at(const float *p, int full, int one, int64_t i, int64_t j)
{
    return one ? p : full ? p + i : p + j;
}

/* A contiguous run of len output elements: STMT runs for each i with U and V
 * the operands' elements, u[i] and v[i], or u[0] / v[0] for the single element
 * (us / vs = 0), as three plain loops that `omp simd` (SIMD, the pragma text)
 * vectorises. The kernels below are instantiated with `kind` and the side as
 * constants (always inlined from a switch), so the per-element switch folds
 * away. */
#define BIN_RUN(SIMD, u, us, v, vs, len, STMT)                                                                         \
    do {                                                                                                               \
        if ((us) && (vs)) {                                                                                            \
            _Pragma(SIMD) for (int64_t i = 0; i < (len); i++)                                                          \
            {                                                                                                          \
                float U = (u)[i], V = (v)[i];                                                                          \
                STMT;                                                                                                  \
            }                                                                                                          \
        } else if (us) {                                                                                               \
            float V = (v)[0];                                                                                          \
            _Pragma(SIMD) for (int64_t i = 0; i < (len); i++)                                                          \
            {                                                                                                          \
                float U = (u)[i];                                                                                      \
                STMT;                                                                                                  \
            }                                                                                                          \
        } else {                                                                                                       \
            float U = (u)[0];                                                                                          \
            _Pragma(SIMD) for (int64_t i = 0; i < (len); i++)                                                          \
            {                                                                                                          \
                float V = (v)[i];                                                                                      \
                STMT;                                                                                                  \
            }                                                                                                          \
        }                                                                                                              \
    } while (0)

/* o[i] = u ∘ v over a run. */
CKDI_INLINE void bin_fwd_run(int kind, float *o, const float *u, int us, const float *v, int vs, int64_t len)
{
    BIN_RUN("omp simd", u, us, v, vs, len, o[i] = binary_f(kind, U, V));
}

/* d[i] += dgrad(G[i], u, v) over a run; d and G advance with the output. */
CKDI_INLINE void bin_bwd_run(int kind, int is_b, float *d, const float *G, const float *u, int us, const float *v,
                             int vs, int64_t len)
{
    BIN_RUN("omp simd", u, us, v, vs, len, d[i] += binary_dgrad(kind, is_b, G[i], U, V));
}

/* Σ dgrad(G[i], u, v) over a run (float lanes: a fixed order for a given build). */
CKDI_INLINE float bin_sum_run(int kind, int is_b, const float *G, const float *u, int us, const float *v, int vs,
                              int64_t len)
{
    float s = 0.0f;
    BIN_RUN("omp simd reduction(+ : s)", u, us, v, vs, len, s += binary_dgrad(kind, is_b, G[i], U, V));
    return s;
}

/* Instantiates run kernels for each constant kind (and side of the gradient). */
static void bin_fwd(int kind, float *o, const float *u, int us, const float *v, int vs, int64_t len)
{
    switch (kind) {
    case OP_ADD: bin_fwd_run(OP_ADD, o, u, us, v, vs, len); break;
    case OP_SUB: bin_fwd_run(OP_SUB, o, u, us, v, vs, len); break;
    case OP_MUL: bin_fwd_run(OP_MUL, o, u, us, v, vs, len); break;
    default: bin_fwd_run(OP_DIV, o, u, us, v, vs, len); break;
    }
}

#define BIN_GRAD_DISPATCH(call)                                                                                        \
    switch (kind * 2 + is_b) {                                                                                         \
    case OP_ADD * 2: return call(OP_ADD, 0);                                                                           \
    case OP_ADD * 2 + 1: return call(OP_ADD, 1);                                                                       \
    case OP_SUB * 2: return call(OP_SUB, 0);                                                                           \
    case OP_SUB * 2 + 1: return call(OP_SUB, 1);                                                                       \
    case OP_MUL * 2: return call(OP_MUL, 0);                                                                           \
    case OP_MUL * 2 + 1: return call(OP_MUL, 1);                                                                       \
    case OP_DIV * 2: return call(OP_DIV, 0);                                                                           \
    default: return call(OP_DIV, 1);                                                                                   \
    }

static void bin_bwd(int kind, int is_b, float *d, const float *G, const float *u, int us, const float *v, int vs,
                    int64_t len)
{
#define CALL(k, side) bin_bwd_run(k, side, d, G, u, us, v, vs, len)
    BIN_GRAD_DISPATCH(CALL)
#undef CALL
}

static float bin_sum(int kind, int is_b, const float *G, const float *u, int us, const float *v, int vs, int64_t len)
{
#define CALL(k, side) bin_sum_run(k, side, G, u, us, v, vs, len)
    BIN_GRAD_DISPATCH(CALL)
#undef CALL
}

/* Splits the output index range [lo, hi) into runs that stay within one row
 * of the geometry and calls the forward or backward kernel on each. */
static void bin_walk(const bin_geom *g, int kind, int is_b, float *o_or_d, const float *G, int64_t lo, int64_t hi)
{
    for (int64_t i = lo; i < hi;) {
        int64_t j = i % g->P, len = g->P - j < hi - i ? g->P - j : hi - i;
        const float *u = bin_at(g->a, g->a_full, g->a_one, i, j), *v = bin_at(g->b, g->b_full, g->b_one, i, j);
        if (G)
            bin_bwd(kind, is_b, o_or_d + i, G + i, u, !g->a_one, v, !g->b_one, len);
        else
            bin_fwd(kind, o_or_d + i, u, !g->a_one, v, !g->b_one, len);
        i += len;
    }
}

/* Gradient of operand is_b (nd elements) from G [n]. A fresh d (nd == n
 * only) is zeroed block by block right before the block accumulates, while
 * it is in cache. */
static void binary_grad(ckd_ctx *c, float *d, int64_t nd, int fresh, const float *G, const bin_geom *g, int kind,
                        int is_b)
{
    int64_t n = g->n, nb = ckdi_n_blocks(n);
    if (nd == n) { /* elementwise */
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (nb > 1)
        for (int64_t k = 0; k < nb; k++) {
            if (fresh)
                memset(d + k * CKDI_BLOCK, 0, (size_t)(ckdi_block_end(k, n) - k * CKDI_BLOCK) * sizeof(float));
            bin_walk(g, kind, is_b, d, G, k * CKDI_BLOCK, ckdi_block_end(k, n));
        }
        return;
    }
    if (nd == 1) { /* one element: block sums, then their sum in block order */
        double total = 0;
#pragma omp parallel for ordered schedule(guided) num_threads(ckdi_op_threads()) if (nb > 1)
        for (int64_t k = 0; k < nb; k++) {
            int64_t lo = k * CKDI_BLOCK, len = ckdi_block_end(k, n) - lo;
            const float *u = g->a_one ? g->a : g->a + lo, *v = g->b_one ? g->b : g->b + lo;
            float s = bin_sum(kind, is_b, G + lo, u, !g->a_one, v, !g->b_one, len);
#pragma omp ordered
            total += s;
        }
        d[0] += (float)total;
        return;
    }
    /* a [P] operand: ±Σ_rows G for add and sub; otherwise rows in order per
     * column, columns split between threads */
    int64_t P = g->P, R = n / P, ncb = ckdi_col_blocks(P, n);
    if (kind == OP_ADD || kind == OP_SUB) {
        ckdi_colsum_add(c, d, G, R, P, kind == OP_SUB && is_b ? -1.0f : 1.0f);
        return;
    }
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (ncb > 1)
    for (int64_t cb = 0; cb < ncb; cb++) {
        int64_t c0 = P * cb / ncb, c1 = P * (cb + 1) / ncb;
        for (int64_t r = 0; r < R; r++) {
            const float *Gr = G + r * P;
            const float *u = g->a_full ? g->a + r * P : g->a, *v = g->b_full ? g->b + r * P : g->b;
            /* d[j] += dgrad(G[r, j], ...) for j in [c0, c1): a run with d fixed per row */
            bin_bwd(kind, is_b, d + c0, Gr + c0, u + c0, 1, v + c0, 1, c1 - c0);
        }
    }
}

static void binary_backward(ckd_ctx *c, ckd_node *n)
{
    ckd_tensor *a = n->in[0], *b = n->in[1];
    int kind = (int)n->iarg[0];
    bin_geom g = bin_geometry(a, b, n->out->n);
    /* Only a full-size gradient may start fresh (it is written in full). da
     * goes first, so when b is a, db finds the buffer allocated (not fresh)
     * and accumulates into a complete da. */
    int fa = 0, fb = 0;
    float *da = a->n == n->out->n ? ckdi_grad_buf_ex(c, a, &fa) : ckdi_grad_buf(c, a);
    float *db = b->n == n->out->n ? ckdi_grad_buf_ex(c, b, &fb) : ckdi_grad_buf(c, b);
    if (da)
        binary_grad(c, da, a->n, fa, n->out->grad, &g, kind, 0);
    if (db)
        binary_grad(c, db, b->n, fb, n->out->grad, &g, kind, 1);
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
    int64_t n = out->n, nb = ckdi_n_blocks(n);
    bin_geom g = bin_geometry(a, b, n);
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (nb > 1)
    for (int64_t k = 0; k < nb; k++)
        bin_walk(&g, kind, 0, out->data, NULL, k * CKDI_BLOCK, ckdi_block_end(k, n));
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
 * exp, sigmoid, gelu and quick_gelu use vecmath.h's vectorisable exp and Φ
 * (gelu's Φ via erfc, so it keeps its relative accuracy for negative x);
 * log, sqrt and tanh call libm.
 */
#define UNARY_KINDS(X)                                                                                                 \
    X(U_SCALE, "scale") X(U_EXP, "exp") X(U_LOG, "log") X(U_SQRT, "sqrt") X(U_RELU, "relu") X(U_GELU, "gelu")         \
        X(U_QGELU, "quick_gelu") X(U_SIGMOID, "sigmoid") X(U_TANH, "tanh")
#define UNARY_ENUM(k, name) k,
#define UNARY_NAME(k, name) name,
enum { UNARY_KINDS(UNARY_ENUM) };
static const char *const unary_names[] = {UNARY_KINDS(UNARY_NAME)};

CKDI_INLINE float unary_f(int kind, float x, float s)
{
    float e;
    switch (kind) {
    case U_SCALE: return s * x;
    case U_EXP: return ckdi_expf(x);
    case U_LOG: return logf(x);
    case U_SQRT: return sqrtf(x);
    case U_RELU: return ckdi_select(x > 0.0f, x, 0.0f);
    case U_GELU: return x * ckdi_ncdf(x, &e);
    case U_QGELU: return x * ckdi_sigmoidf(1.702f * x);
    case U_SIGMOID: return ckdi_sigmoidf(x);
    default: return tanhf(x);
    }
}

CKDI_INLINE float unary_df(int kind, float x, float y, float s)
{
    float e, cdf, sg;
    switch (kind) {
    case U_SCALE: return s;
    case U_EXP: return y;
    case U_LOG: return 1.0f / x;
    case U_SQRT: return 0.5f / y;
    case U_RELU: return ckdi_select(x > 0.0f, 1.0f, 0.0f);
    case U_GELU:
        cdf = ckdi_ncdf(x, &e);
        return cdf + x * e * 0.39894228040143268f; /* φ(x) = e^(−x²/2)/√(2π) */
    case U_QGELU:
        sg = ckdi_sigmoidf(1.702f * x);
        return sg + 1.702f * x * sg * (1.0f - sg);
    case U_SIGMOID: return y * (1.0f - y);
    default: return 1.0f - y * y;
    }
}

/* One loop per kind: `kind` is a constant in each instance (always inlined
 * from the switch below), so the switch in unary_f / unary_df folds away and
 * the loop body is straight-line code. G == NULL: forward (y = f(x)), else
 * backward (dx += G·f'). */
CKDI_INLINE void unary_run(int kind, const float *x, float *y, const float *G, float *dx, int64_t len, float s)
{
    if (!G) {
#pragma omp simd
        for (int64_t i = 0; i < len; i++)
            y[i] = unary_f(kind, x[i], s);
    } else {
#pragma omp simd
        for (int64_t i = 0; i < len; i++)
            dx[i] += G[i] * unary_df(kind, x[i], y[i], s);
    }
}

CKDI_SIMD_CLONES static void unary_range(int kind, const float *x, float *y, const float *G, float *dx, int64_t len,
                                         float s)
{
    switch (kind) {
#define UNARY_CASE(k, name)                                                                                            \
    case k: unary_run(k, x, y, G, dx, len, s); break;
        UNARY_KINDS(UNARY_CASE)
#undef UNARY_CASE
    }
}

/* Runs unary_range over blocks, in parallel when there is more than one. A
 * fresh dx is zeroed block by block right before the block accumulates. */
static void unary_apply(int kind, const float *x, float *y, const float *G, float *dx, int fresh, int64_t n, float s)
{
    int64_t nb = ckdi_n_blocks(n);
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (nb > 1)
    for (int64_t k = 0; k < nb; k++) {
        int64_t lo = k * CKDI_BLOCK, len = ckdi_block_end(k, n) - lo;
        if (fresh)
            memset(dx + lo, 0, (size_t)len * sizeof(float));
        unary_range(kind, x + lo, y + lo, G ? G + lo : NULL, G ? dx + lo : NULL, len, s);
    }
}

static void unary_backward(ckd_ctx *c, ckd_node *n)
{
    ckd_tensor *x = n->in[0], *y = n->out;
    int fresh;
    float *dx = ckdi_grad_buf_ex(c, x, &fresh);
    if (dx)
        unary_apply((int)n->iarg[0], x->data, y->data, y->grad, dx, fresh, x->n, n->farg[0]);
}

static ckd_tensor *unary(ckd_ctx *c, ckd_tensor *x, int kind, float s)
{
    if (!x || ckd_ctx_failed(c))
        return NULL;
    ckd_tensor *out = ckdi_out_like(c, x);
    if (!out)
        return NULL;
    unary_apply(kind, x->data, out->data, NULL, NULL, 0, x->n, s);
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
