/* Shape ops: reshape (a view), permute/transpose, concat, slice, row gathers. */
#include "config.h"

#include <string.h>

#include "clipkd/ops.h"
#include "tape.h"

#define SHAPE(t, buf) ckd_shape_str((t), (buf), sizeof(buf))

/* Accumulates src into dst elementwise (the backward of every pure data
 * move), or copies it when dst is a fresh gradient buffer. */
static void add_into(float *dst, const float *src, int64_t n, int fresh)
{
    if (fresh) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        dst[i] += src[i];
}

/* add_into over a large array, in parallel blocks. */
static void add_into_par(float *dst, const float *src, int64_t n, int fresh)
{
    int64_t nb = ckdi_n_blocks(n);
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (nb > 2)
    for (int64_t k = 0; k < nb; k++)
        add_into(dst + k * CKDI_BLOCK, src + k * CKDI_BLOCK, ckdi_block_end(k, n) - k * CKDI_BLOCK, fresh);
}

/* ---- reshape ------------------------------------------------------------------
 * y shares x's data with a new shape. Backward: dx += G (same element order).
 */
static void reshape_backward(ckd_ctx *c, ckd_node *n)
{
    int fresh;
    float *dx = ckdi_grad_buf_ex(c, n->in[0], &fresh);
    if (dx)
        add_into_par(dx, n->out->grad, n->out->n, fresh);
}

ckd_tensor *ckd_reshape(ckd_ctx *c, ckd_tensor *x, int ndim, const int64_t *shape)
{
    if (!x || ckd_ctx_failed(c))
        return NULL;
    char s0[64];
    if (ndim < 0 || ndim > CKD_MAX_DIMS)
        return ckd_ctx_fail(c, "reshape: %d dimensions requested (at most %d)", ndim, CKD_MAX_DIMS);
    int64_t sh[CKD_MAX_DIMS], known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        sh[i] = shape[i];
        if (sh[i] == -1 && infer < 0)
            infer = i;
        else if (sh[i] < 0)
            return ckd_ctx_fail(c, "reshape: invalid size %lld in dimension %d", (long long)sh[i], i);
        else
            known *= sh[i];
    }
    if (infer >= 0) {
        if (known == 0 || x->n % known)
            return ckd_ctx_fail(c, "reshape: cannot infer dimension %d for %lld elements of %s", infer,
                                (long long)x->n, SHAPE(x, s0));
        sh[infer] = x->n / known;
        known *= sh[infer];
    }
    if (known != x->n)
        return ckd_ctx_fail(c, "reshape: %s has %lld elements, the new shape %lld", SHAPE(x, s0), (long long)x->n,
                            (long long)known);
    ckd_tensor *out = ckd_scratch(c, sizeof *out, "reshape");
    if (!out)
        return NULL;
    memset(out, 0, sizeof *out);
    out->ndim = ndim;
    for (int i = 0; i < CKD_MAX_DIMS; i++)
        out->shape[i] = i < ndim ? sh[i] : 1;
    out->n = x->n;
    out->data = x->data;
    if (ckdi_needs_grad(c, &x, 1) && !ckdi_record(c, "reshape", reshape_backward, out, &x, 1))
        return NULL;
    return out;
}

/* ---- permute / transpose -------------------------------------------------------------
 * y[i0, i1, i2, i3] = x[...] with y.shape[d] = x.shape[perm[d]] (a copy, so every
 * tensor stays contiguous). Backward: the inverse scatter, dx[src] += G[dst]
 * (dx[src] = G[dst] into a fresh buffer: a permutation writes each element
 * once). Output rows (all but the last index) are independent, so they are
 * split between threads.
 */
static void permute_strides(const ckd_tensor *x, const int *perm, int64_t *xstride_for_out)
{
    int64_t stride[CKD_MAX_DIMS];
    int64_t s = 1;
    for (int i = x->ndim - 1; i >= 0; i--) {
        stride[i] = s;
        s *= x->shape[i];
    }
    for (int d = 0; d < CKD_MAX_DIMS; d++)
        xstride_for_out[d] = d < x->ndim ? stride[perm[d]] : 0;
}

enum { PERM_GATHER, PERM_SCATTER_ADD, PERM_SCATTER_SET };

static void permute_move(const ckd_tensor *y, const int64_t *xs, const float *src, float *dst, int mode)
{
    int64_t Y1 = y->shape[1], Y2 = y->shape[2], Y3 = y->shape[3], rows = y->n / (Y3 ? Y3 : 1), s3 = xs[3];
#pragma omp parallel for schedule(guided) num_threads(ckdi_op_threads()) if (y->n > 2 * CKDI_BLOCK)
    for (int64_t row = 0; row < rows; row++) {
        int64_t a = row / (Y1 * Y2), b = row / Y2 % Y1, c = row % Y2, k = row * Y3;
        int64_t base = a * xs[0] + b * xs[1] + c * xs[2];
        if (mode == PERM_GATHER)
            for (int64_t d = 0; d < Y3; d++)
                dst[k + d] = src[base + d * s3];
        else if (mode == PERM_SCATTER_ADD)
            for (int64_t d = 0; d < Y3; d++)
                dst[base + d * s3] += src[k + d];
        else
            for (int64_t d = 0; d < Y3; d++)
                dst[base + d * s3] = src[k + d];
    }
}

static void permute_backward(ckd_ctx *c, ckd_node *n)
{
    int fresh;
    float *dx = ckdi_grad_buf_ex(c, n->in[0], &fresh);
    if (dx)
        permute_move(n->out, n->saved, n->out->grad, dx, fresh ? PERM_SCATTER_SET : PERM_SCATTER_ADD);
}

ckd_tensor *ckd_permute(ckd_ctx *c, ckd_tensor *x, const int *perm)
{
    if (!x || ckd_ctx_failed(c))
        return NULL;
    int seen[CKD_MAX_DIMS] = {0};
    int64_t shape[CKD_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) {
        if (perm[d] < 0 || perm[d] >= x->ndim || seen[perm[d]]++) {
            char s0[64];
            return ckd_ctx_fail(c, "permute: entry %d (%d) is not a permutation of the %d dims of %s", d, perm[d],
                                x->ndim, SHAPE(x, s0));
        }
        shape[d] = x->shape[perm[d]];
    }
    ckd_tensor *out = ckd_tensor_new(c, x->ndim, shape);
    int64_t *xs = out ? ckd_scratch(c, CKD_MAX_DIMS * sizeof(int64_t), "permute") : NULL;
    if (!xs)
        return NULL;
    permute_strides(x, perm, xs);
    permute_move(out, xs, x->data, out->data, PERM_GATHER);
    if (ckdi_needs_grad(c, &x, 1)) {
        ckd_node *n = ckdi_record(c, "permute", permute_backward, out, &x, 1);
        if (!n)
            return NULL;
        n->saved = xs;
    }
    return out;
}

ckd_tensor *ckd_transpose(ckd_ctx *c, ckd_tensor *x, int d0, int d1)
{
    if (!x || ckd_ctx_failed(c))
        return NULL;
    int a = d0 < 0 ? d0 + x->ndim : d0, b = d1 < 0 ? d1 + x->ndim : d1;
    if (a < 0 || a >= x->ndim || b < 0 || b >= x->ndim) {
        char s0[64];
        return ckd_ctx_fail(c, "transpose: dims %d, %d out of range for %s", d0, d1, SHAPE(x, s0));
    }
    int perm[CKD_MAX_DIMS] = {0, 1, 2, 3};
    perm[a] = b;
    perm[b] = a;
    return ckd_permute(c, x, perm);
}

/* ---- concat / slice ----------------------------------------------------------------------
 * Both view tensors as [outer, L, inner] around the axis and move blocks of
 * L·inner floats. concat: y[o, off_j + l, i] = x_j[o, l, i]; slice:
 * y[o, l, i] = x[o, start + l, i]. Backward moves the gradient blocks back.
 */
static void block_geometry(const ckd_tensor *x, int axis, int64_t *outer, int64_t *inner)
{
    *outer = *inner = 1;
    for (int i = 0; i < axis; i++)
        *outer *= x->shape[i];
    for (int i = axis + 1; i < x->ndim; i++)
        *inner *= x->shape[i];
}

static void concat_backward(ckd_ctx *c, ckd_node *n)
{
    int axis = (int)n->iarg[0];
    int64_t outer, inner, total = n->out->shape[axis], off = 0;
    block_geometry(n->out, axis, &outer, &inner);
    for (int j = 0; j < n->n_ins; j++) {
        ckd_tensor *x = n->ins[j];
        int64_t L = x->shape[axis];
        int fresh; /* a fresh x_j gets all its blocks copied; a repeated x_j then accumulates */
        float *dx = ckdi_grad_buf_ex(c, x, &fresh);
        if (dx)
            for (int64_t o = 0; o < outer; o++)
                add_into(dx + o * L * inner, n->out->grad + (o * total + off) * inner, L * inner, fresh);
        off += L;
    }
}

ckd_tensor *ckd_concat(ckd_ctx *c, ckd_tensor **xs, int n, int axis)
{
    if (ckd_ctx_failed(c))
        return NULL;
    if (n < 1)
        return ckd_ctx_fail(c, "concat: no inputs");
    for (int j = 0; j < n; j++)
        if (!xs[j])
            return NULL;
    ckd_tensor *x0 = xs[0];
    int ax = axis < 0 ? axis + x0->ndim : axis;
    if (ax < 0 || ax >= x0->ndim)
        return ckd_ctx_fail(c, "concat: axis %d out of range for %d dims", axis, x0->ndim);
    int64_t shape[CKD_MAX_DIMS];
    memcpy(shape, x0->shape, sizeof shape);
    shape[ax] = 0;
    for (int j = 0; j < n; j++) {
        ckd_tensor *x = xs[j];
        int ok = x->ndim == x0->ndim;
        for (int i = 0; ok && i < x->ndim; i++)
            ok = i == ax || x->shape[i] == x0->shape[i];
        if (!ok) {
            char s0[64], s1[64];
            return ckd_ctx_fail(c, "concat: input %d %s does not match input 0 %s outside axis %d", j, SHAPE(x, s0),
                                SHAPE(x0, s1), ax);
        }
        shape[ax] += x->shape[ax];
    }
    ckd_tensor *out = ckd_tensor_new(c, x0->ndim, shape);
    if (!out)
        return NULL;
    int64_t outer, inner, off = 0;
    block_geometry(out, ax, &outer, &inner);
    for (int j = 0; j < n; j++) {
        int64_t L = xs[j]->shape[ax];
        for (int64_t o = 0; o < outer; o++)
            memcpy(out->data + (o * shape[ax] + off) * inner, xs[j]->data + o * L * inner,
                   (size_t)(L * inner) * sizeof(float));
        off += L;
    }
    if (ckdi_needs_grad(c, xs, n)) {
        ckd_tensor **keep = ckd_scratch(c, (size_t)n * sizeof *keep, "concat");
        ckd_node *node = keep ? ckdi_record(c, "concat", concat_backward, out, xs, n) : NULL;
        if (!node)
            return NULL;
        memcpy(keep, xs, (size_t)n * sizeof *keep);
        node->ins = keep;
        node->n_ins = n;
        node->iarg[0] = ax;
    }
    return out;
}

static void slice_backward(ckd_ctx *c, ckd_node *n)
{
    ckd_tensor *x = n->in[0];
    float *dx = ckdi_grad_buf(c, x);
    if (!dx)
        return;
    int axis = (int)n->iarg[0];
    int64_t start = n->iarg[1], len = n->iarg[2], outer, inner, L = x->shape[axis];
    block_geometry(x, axis, &outer, &inner);
    for (int64_t o = 0; o < outer; o++)
        add_into(dx + (o * L + start) * inner, n->out->grad + o * len * inner, len * inner, 0);
}

ckd_tensor *ckd_slice(ckd_ctx *c, ckd_tensor *x, int axis, int64_t start, int64_t len)
{
    if (!x || ckd_ctx_failed(c))
        return NULL;
    char s0[64];
    int ax = axis < 0 ? axis + x->ndim : axis;
    if (ax < 0 || ax >= x->ndim)
        return ckd_ctx_fail(c, "slice: axis %d out of range for %s", axis, SHAPE(x, s0));
    if (start < 0 || len < 0 || start + len > x->shape[ax])
        return ckd_ctx_fail(c, "slice: [%lld, %lld) outside dimension %d of %s", (long long)start,
                            (long long)(start + len), ax, SHAPE(x, s0));
    int64_t shape[CKD_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[ax] = len;
    ckd_tensor *out = ckd_tensor_new(c, x->ndim, shape);
    if (!out)
        return NULL;
    int64_t outer, inner, L = x->shape[ax];
    block_geometry(x, ax, &outer, &inner);
    for (int64_t o = 0; o < outer; o++)
        memcpy(out->data + o * len * inner, x->data + (o * L + start) * inner, (size_t)(len * inner) * sizeof(float));
    if (ckdi_needs_grad(c, &x, 1)) {
        ckd_node *n = ckdi_record(c, "slice", slice_backward, out, &x, 1);
        if (!n)
            return NULL;
        n->iarg[0] = ax;
        n->iarg[1] = start;
        n->iarg[2] = len;
    }
    return out;
}

/* ---- row gathers ---------------------------------------------------------------------------
 * gather_rows: y[r] = table[ids[r]], table [V, C].
 * select_rows: y[b, k] = x[b, idx[b·K + k]], x [B, T, C].
 * Both: backward scatters, dx[row(r)] += G[r], serially (rows may repeat).
 * The index arrays are copied into the arena; `rows` maps each output row to a
 * flat source row.
 */
static void gather_backward(ckd_ctx *c, ckd_node *n)
{
    float *dx = ckdi_grad_buf(c, n->in[0]);
    if (!dx)
        return;
    const int64_t *rows = n->saved;
    int64_t R = n->iarg[0], C = n->iarg[1];
    for (int64_t r = 0; r < R; r++)
        add_into(dx + rows[r] * C, n->out->grad + r * C, C, 0);
}

static ckd_tensor *gather(ckd_ctx *c, const char *op, ckd_tensor *x, int64_t *rows, int64_t R, int64_t C, int ndim,
                          const int64_t *shape)
{
    ckd_tensor *out = ckd_tensor_new(c, ndim, shape);
    if (!out)
        return NULL;
    for (int64_t r = 0; r < R; r++)
        memcpy(out->data + r * C, x->data + rows[r] * C, (size_t)C * sizeof(float));
    if (ckdi_needs_grad(c, &x, 1)) {
        ckd_node *n = ckdi_record(c, op, gather_backward, out, &x, 1);
        if (!n)
            return NULL;
        n->saved = rows;
        n->iarg[0] = R;
        n->iarg[1] = C;
    }
    return out;
}

ckd_tensor *ckd_gather_rows(ckd_ctx *c, ckd_tensor *table, const int32_t *ids, int64_t n)
{
    if (!table || ckd_ctx_failed(c))
        return NULL;
    char s0[64];
    if (table->ndim != 2)
        return ckd_ctx_fail(c, "gather_rows: table must be [V, C], got %s", SHAPE(table, s0));
    int64_t V = table->shape[0], C = table->shape[1];
    int64_t *rows = ckd_scratch(c, (size_t)(n ? n : 1) * sizeof(int64_t), "gather_rows");
    if (!rows)
        return NULL;
    for (int64_t r = 0; r < n; r++) {
        if (ids[r] < 0 || ids[r] >= V)
            return ckd_ctx_fail(c, "gather_rows: id %d at position %lld outside [0, %lld) of table %s", (int)ids[r],
                                (long long)r, (long long)V, SHAPE(table, s0));
        rows[r] = ids[r];
    }
    return gather(c, "gather_rows", table, rows, n, C, 2, (int64_t[]){n, C});
}

ckd_tensor *ckd_select_rows(ckd_ctx *c, ckd_tensor *x, const int32_t *idx, int64_t k)
{
    if (!x || ckd_ctx_failed(c))
        return NULL;
    char s0[64];
    if (x->ndim != 2 && x->ndim != 3)
        return ckd_ctx_fail(c, "select_rows: x must be [B, T, C] or [T, C], got %s", SHAPE(x, s0));
    int64_t B = x->ndim == 3 ? x->shape[0] : 1, T = x->shape[x->ndim - 2], C = x->shape[x->ndim - 1];
    int64_t *rows = ckd_scratch(c, (size_t)(B * k > 0 ? B * k : 1) * sizeof(int64_t), "select_rows");
    if (!rows)
        return NULL;
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < k; j++) {
            int32_t t = idx[b * k + j];
            if (t < 0 || t >= T)
                return ckd_ctx_fail(c, "select_rows: index %d (batch %lld, slot %lld) outside [0, %lld) of %s", (int)t,
                                    (long long)b, (long long)j, (long long)T, SHAPE(x, s0));
            rows[b * k + j] = b * T + t;
        }
    return gather(c, "select_rows", x, rows, B * k, C, 3, (int64_t[]){B, k, C});
}
