/* Contexts, tensors, parameters, the tape and backward. */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipkd/blas.h"
#include "clipkd/tensor.h"
#include "tape.h"

#ifdef _OPENMP
#include <omp.h>
#endif

struct ckd_ctx {
    ckd_arena *arena;
    ckd_node *tape;      /* newest node */
    int grad_enabled;
    int training;
    int failed;
    char msg[CKD_ERROR_MAX];
    ckd_rng rng;
};

/* ---- rng -------------------------------------------------------------------- */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void ckd_rng_seed(ckd_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ckd_rng_next(ckd_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double ckd_rng_uniform(ckd_rng *r) { return (double)(ckd_rng_next(r) >> 11) * 0x1.0p-53; }

double ckd_rng_normal(ckd_rng *r)
{
    /* Box-Muller; u1 in (0, 1] so the log is finite. */
    double u1 = 1.0 - ckd_rng_uniform(r), u2 = ckd_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

uint64_t ckd_rng_below(ckd_rng *r, uint64_t n)
{
    /* Lemire's nearly divisionless method would be faster; rejection keeps it unbiased and simple. */
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = ckd_rng_next(r);
    while (x >= lim);
    return x % n;
}

void ckd_rng_shuffle(ckd_rng *r, int64_t *a, int64_t n)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)ckd_rng_below(r, (uint64_t)(i + 1)), t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* ---- context ------------------------------------------------------------------ */
ckd_ctx *ckd_ctx_new(size_t arena_limit, uint64_t seed, ckd_error *err)
{
    ckd_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        ckd_errorf(err, "out of memory creating a context");
        return NULL;
    }
    c->arena = ckd_arena_new(0, arena_limit);
    if (!c->arena) {
        free(c);
        ckd_errorf(err, "out of memory creating the arena");
        return NULL;
    }
    c->grad_enabled = 1;
    ckd_rng_seed(&c->rng, seed);
    return c;
}

void ckd_ctx_free(ckd_ctx *c)
{
    if (!c)
        return;
    ckd_arena_free(c->arena);
    free(c);
}

void ckd_ctx_reset(ckd_ctx *c)
{
    ckd_arena_reset(c->arena);
    c->tape = NULL;
    c->failed = 0;
    c->msg[0] = '\0';
}

ckd_arena *ckd_ctx_arena(ckd_ctx *c) { return c->arena; }
ckd_rng *ckd_ctx_rng(ckd_ctx *c) { return &c->rng; }

int ckd_ctx_set_grad(ckd_ctx *c, int enabled)
{
    int was = c->grad_enabled;
    c->grad_enabled = enabled != 0;
    return was;
}

int ckd_ctx_grad_enabled(const ckd_ctx *c) { return c->grad_enabled; }

int ckd_ctx_set_training(ckd_ctx *c, int training)
{
    int was = c->training;
    c->training = training != 0;
    return was;
}

int ckd_ctx_training(const ckd_ctx *c) { return c->training; }
int ckd_ctx_failed(const ckd_ctx *c) { return c->failed; }
const char *ckd_ctx_error(const ckd_ctx *c) { return c->failed ? c->msg : ""; }

void *ckd_ctx_fail(ckd_ctx *c, const char *fmt, ...)
{
    if (c->failed)
        return NULL; /* the first error is the informative one */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof c->msg, fmt, ap);
    va_end(ap);
    c->failed = 1;
    return NULL;
}

int ckd_ctx_check(const ckd_ctx *c, ckd_error *err)
{
    if (!c->failed)
        return 0;
    return ckd_errorf(err, "%s", c->msg);
}

/* ---- tensors ---------------------------------------------------------------- */
void *ckd_scratch(ckd_ctx *c, size_t bytes, const char *op)
{
    void *p = ckd_arena_alloc(c->arena, bytes);
    if (!p)
        ckd_ctx_fail(c, "%s: arena exhausted: needs %zu more bytes, %zu of %zu in use", op, bytes,
                     ckd_arena_used(c->arena), ckd_arena_limit(c->arena));
    return p;
}

static int shape_ok(ckd_ctx *c, int ndim, const int64_t *shape, int64_t *n_out)
{
    if (ndim < 0 || ndim > CKD_MAX_DIMS) {
        ckd_ctx_fail(c, "tensor: %d dimensions requested, at most %d supported", ndim, CKD_MAX_DIMS);
        return 0;
    }
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && n > INT64_MAX / 4 / shape[i])) {
            ckd_ctx_fail(c, "tensor: invalid size %lld in dimension %d", (long long)shape[i], i);
            return 0;
        }
        n *= shape[i];
    }
    *n_out = n;
    return 1;
}

static ckd_tensor *tensor_header(ckd_ctx *c, int ndim, const int64_t *shape, int64_t n)
{
    ckd_tensor *t = ckd_scratch(c, sizeof *t, "tensor");
    if (!t)
        return NULL;
    memset(t, 0, sizeof *t);
    t->ndim = ndim;
    for (int i = 0; i < CKD_MAX_DIMS; i++)
        t->shape[i] = i < ndim ? shape[i] : 1;
    t->n = n;
    return t;
}

ckd_tensor *ckd_tensor_new(ckd_ctx *c, int ndim, const int64_t *shape)
{
    int64_t n;
    if (c->failed || !shape_ok(c, ndim, shape, &n))
        return NULL;
    ckd_tensor *t = tensor_header(c, ndim, shape, n);
    if (!t)
        return NULL;
    t->data = ckd_scratch(c, (size_t)n * sizeof(float), "tensor");
    return t->data ? t : NULL;
}

ckd_tensor *ckd_tensor_zeros(ckd_ctx *c, int ndim, const int64_t *shape)
{
    ckd_tensor *t = ckd_tensor_new(c, ndim, shape);
    if (t)
        memset(t->data, 0, (size_t)t->n * sizeof(float));
    return t;
}

ckd_tensor *ckd_tensor_from(ckd_ctx *c, int ndim, const int64_t *shape, const float *data)
{
    ckd_tensor *t = ckd_tensor_new(c, ndim, shape);
    if (t)
        memcpy(t->data, data, (size_t)t->n * sizeof(float));
    return t;
}

ckd_tensor *ckd_scalar(ckd_ctx *c, float v) { return ckd_tensor_from(c, 0, NULL, &v); }

void ckd_tensor_set_requires_grad(ckd_tensor *t, int on)
{
    if (t)
        t->requires_grad = on != 0;
}

const char *ckd_shape_str(const ckd_tensor *t, char *buf, size_t cap)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, cap - k, "[");
    for (int i = 0; t && i < t->ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (k < cap)
        snprintf(buf + k, cap - k, "]");
    return buf;
}

int ckd_same_shape(const ckd_tensor *a, const ckd_tensor *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return 0;
    return 1;
}

ckd_tensor *ckdi_out_like(ckd_ctx *c, const ckd_tensor *t) { return ckd_tensor_new(c, t->ndim, t->shape); }

/* ---- parameters ---------------------------------------------------------------- */
ckd_tensor *ckd_param_new(int ndim, const int64_t *shape, const char *name, ckd_error *err)
{
    if (ndim < 0 || ndim > CKD_MAX_DIMS) {
        ckd_errorf(err, "parameter %s: %d dimensions, at most %d supported", name ? name : "?", ndim,
                   CKD_MAX_DIMS);
        return NULL;
    }
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && n > INT64_MAX / 4 / shape[i])) {
            ckd_errorf(err, "parameter %s: invalid size %lld in dimension %d", name ? name : "?",
                       (long long)shape[i], i);
            return NULL;
        }
        n *= shape[i];
    }
    ckd_tensor *p = calloc(1, sizeof *p);
    size_t bytes = (size_t)(n ? n : 1) * sizeof(float);
    if (p) {
        p->data = calloc(1, bytes);
        p->grad = calloc(1, bytes);
        p->name = name ? strdup(name) : NULL;
    }
    if (!p || !p->data || !p->grad || (name && !p->name)) {
        ckd_param_free(p);
        ckd_errorf(err, "parameter %s: out of memory for %lld floats", name ? name : "?", (long long)n);
        return NULL;
    }
    p->ndim = ndim;
    for (int i = 0; i < CKD_MAX_DIMS; i++)
        p->shape[i] = i < ndim ? shape[i] : 1;
    p->n = n;
    p->requires_grad = 1;
    p->is_param = 1;
    return p;
}

void ckd_param_free(ckd_tensor *p)
{
    if (!p)
        return;
    free(p->data);
    free(p->grad);
    free((char *)p->name);
    free(p);
}

void ckd_param_zero_grad(ckd_tensor *p)
{
    if (p && p->grad)
        ckdi_zero(p->grad, p->n);
}

/* ---- tape ------------------------------------------------------------------------ */
int ckdi_needs_grad(const ckd_ctx *c, ckd_tensor *const *in, int n)
{
    if (!c->grad_enabled)
        return 0;
    for (int i = 0; i < n; i++)
        if (in[i] && in[i]->requires_grad)
            return 1;
    return 0;
}

ckd_node *ckdi_record(ckd_ctx *c, const char *op, ckd_backward_fn bw, ckd_tensor *out,
                     ckd_tensor *const *in, int n_in)
{
    ckd_node *n = ckd_scratch(c, sizeof *n, op);
    if (!n)
        return NULL;
    memset(n, 0, sizeof *n);
    n->op = op;
    n->backward = bw;
    n->out = out;
    n->n_in = n_in < CKD_NODE_MAX_IN ? n_in : CKD_NODE_MAX_IN;
    for (int i = 0; i < n->n_in; i++)
        n->in[i] = in[i];
    n->prev = c->tape;
    c->tape = n;
    out->node = n;
    out->requires_grad = 1;
    return n;
}

float *ckdi_grad_buf_ex(ckd_ctx *c, ckd_tensor *t, int *fresh)
{
    *fresh = 0;
    if (!t || !t->requires_grad)
        return NULL;
    if (!t->grad) {
        t->grad = ckd_scratch(c, (size_t)t->n * sizeof(float), "backward");
        *fresh = t->grad != NULL;
    }
    return t->grad;
}

float *ckdi_grad_buf(ckd_ctx *c, ckd_tensor *t)
{
    int fresh;
    float *g = ckdi_grad_buf_ex(c, t, &fresh);
    if (fresh)
        ckdi_zero(g, t->n);
    return g;
}

int ckdi_colsum_add(ckd_ctx *c, float *d, const float *G, int64_t R, int64_t P, float s)
{
    /* rows per block: about CKDI_BLOCK floats, and at most 64 blocks (scratch) */
    int64_t rb = P < CKDI_BLOCK ? CKDI_BLOCK / P : 1, nb;
    if (rb < (R + 63) / 64)
        rb = (R + 63) / 64;
    nb = (R + rb - 1) / rb;
    float *part = nb > 1 ? ckd_scratch(c, (size_t)(nb * P) * sizeof(float), "column sums") : NULL;
    if (nb > 1 && !part)
        return -1;
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (nb > 1)
    for (int64_t b = 0; b < nb; b++) {
        float *p = nb > 1 ? part + b * P : d; /* one block: straight into d */
        int64_t r1 = (b + 1) * rb < R ? (b + 1) * rb : R;
        if (nb > 1)
            memset(p, 0, (size_t)P * sizeof(float));
        for (int64_t r = b * rb; r < r1; r++) {
            const float *g = G + r * P;
#pragma omp simd
            for (int64_t j = 0; j < P; j++)
                p[j] += s * g[j];
        }
    }
    for (int64_t b = 0; nb > 1 && b < nb; b++) {
        const float *p = part + b * P;
#pragma omp simd
        for (int64_t j = 0; j < P; j++)
            d[j] += p[j];
    }
    return 0;
}

void ckdi_zero(float *p, int64_t n)
{
    int64_t nb = ckdi_n_blocks(n);
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (nb > 2)
    for (int64_t k = 0; k < nb; k++)
        memset(p + k * CKDI_BLOCK, 0, (size_t)(ckdi_block_end(k, n) - k * CKDI_BLOCK) * sizeof(float));
}

ckd_node *ckdi_tape_newest(const ckd_ctx *c) { return c->tape; }

int ckd_backward(ckd_ctx *c, ckd_tensor *loss, ckd_error *err) { return ckdi_backward_ex(c, loss, NULL, NULL, err); }

int ckdi_backward_ex(ckd_ctx *c, ckd_tensor *loss, void (*after)(void *user, const ckd_node *n), void *user,
                     ckd_error *err)
{
    if (c->failed)
        return ckd_errorf(err, "backward: the forward pass failed: %s", c->msg);
    if (!loss)
        return ckd_errorf(err, "backward: no loss tensor");
    if (loss->n != 1) {
        char s[64];
        return ckd_errorf(err, "backward: loss must be a scalar, got shape %s", ckd_shape_str(loss, s, sizeof s));
    }
    if (!loss->requires_grad)
        return ckd_errorf(err, "backward: the loss does not depend on anything that requires a gradient");
    float *g = ckdi_grad_buf(c, loss);
    if (!g)
        return ckd_ctx_check(c, err);
    g[0] += 1.0f;
    for (ckd_node *n = c->tape; n; n = n->prev) {
        if (n->out->grad) /* else nothing flowed into this node's output */
            n->backward(c, n);
        if (c->failed)
            return ckd_errorf(err, "backward of %s: %s", n->op, c->msg);
        if (after)
            after(user, n);
    }
    return 0;
}

int ckdi_op_threads(void)
{
#ifdef _OPENMP
    if (omp_in_parallel())
        return 1;
#endif
    return ckd_get_threads();
}
