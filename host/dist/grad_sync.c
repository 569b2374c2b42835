/* The ranks' parameter gradients summed while backward still runs: the
 * parameters are cut into buckets, and a bucket's non-blocking all-reduce
 * starts as soon as the last tape node that writes any of its gradients
 * has run, so that the sums of the later layers travel while the earlier
 * layers' backward computes (PyTorch DDP's bucketing). docs/performance.md
 * ("Data-parallel training") models when this matters.
 *
 * Buckets are runs of consecutive parameters, taken from the last
 * parameter backwards (backward reaches the last layers first), of about
 * 1/8 of all the gradients each (at least 64 Ki and at most 6.25 Mi floats,
 * DDP's 25 MB), so a bucket's bytes are one slice of the flat gradient
 * buffer. The sums are the same as one all-reduce of everything; the
 * result, divided by the number of ranks, is written back to each
 * parameter's gradient. CLIPKD_DIST_OVERLAP=0 starts every bucket only
 * after backward (bench-dist compares the two). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "core/tape.h"
#include "dist/dist_internal.h"

typedef struct param_ref {
    const ckd_tensor *p;
    int k;
} param_ref;

typedef struct ready_ref {
    int64_t pos;
    int k;
} ready_ref;

struct ckdi_grad_sync {
    ckd_tensor *const *params;
    int n, n_buckets;
    int64_t *off;        /* [n] flat offset of parameter k */
    int *bucket;         /* [n] its bucket */
    int *b_first, *b_last; /* [n_buckets] the bucket's parameters, first .. last index */
    int *pending;        /* [n_buckets] parameters not yet final in this backward */
    float *flat;
    param_ref *by_ptr;   /* [n] sorted by tensor address, to find a node's parameters */
    ready_ref *ready;    /* [n] per backward: when each parameter is final, sorted */
    int cursor;          /* the next entry of ready to release */
    int64_t pos;         /* tape nodes done in this backward */
    int failed;
    int overlap;         /* 0 (CLIPKD_DIST_OVERLAP=0): every sum after backward, for comparison */
    ckd_error err;
};

static int cmp_ptr(const void *a, const void *b)
{
    const ckd_tensor *x = ((const param_ref *)a)->p, *y = ((const param_ref *)b)->p;
    return (x > y) - (x < y);
}

static int cmp_ready(const void *a, const void *b)
{
    const ready_ref *x = a, *y = b;
    return x->pos != y->pos ? (x->pos > y->pos) - (x->pos < y->pos) : x->k - y->k;
}

void ckdi_grad_sync_free(ckdi_grad_sync *s)
{
    if (!s)
        return;
    free(s->off), free(s->bucket), free(s->b_first), free(s->b_last), free(s->pending);
    free(s->flat), free(s->by_ptr), free(s->ready);
    free(s);
}

ckdi_grad_sync *ckdi_grad_sync_new(ckd_tensor *const *params, int n, ckd_error *err)
{
    ckdi_grad_sync *s = calloc(1, sizeof *s);
    size_t un = (size_t)(n > 0 ? n : 1);
    if (s) {
        s->params = params;
        s->n = n;
        s->off = malloc(un * sizeof *s->off);
        s->bucket = malloc(un * sizeof *s->bucket);
        s->b_first = malloc(CKDI_DIST_MAX_SLOTS * sizeof *s->b_first);
        s->b_last = malloc(CKDI_DIST_MAX_SLOTS * sizeof *s->b_last);
        s->pending = malloc(CKDI_DIST_MAX_SLOTS * sizeof *s->pending);
        s->by_ptr = malloc(un * sizeof *s->by_ptr);
        s->ready = malloc(un * sizeof *s->ready);
    }
    int64_t total = 0;
    for (int k = 0; s && s->off && k < n; k++) {
        s->off[k] = total;
        total += params[k]->n;
    }
    if (!s || !s->off || !s->bucket || !s->b_first || !s->b_last || !s->pending || !s->by_ptr || !s->ready ||
        !(s->flat = malloc((size_t)(total > 0 ? total : 1) * sizeof *s->flat))) {
        ckdi_grad_sync_free(s);
        ckd_errorf(err, "out of memory for the gradient buckets");
        return NULL;
    }
    int64_t target = total / 8, size = 0;
    target = target < (1 << 16) ? (1 << 16) : target > 6553600 ? 6553600 : target;
    for (int k = n - 1; k >= 0; k--) {
        if (s->n_buckets == 0 || (size >= target && s->n_buckets < CKDI_DIST_MAX_SLOTS)) {
            s->b_last[s->n_buckets++] = k; /* a new bucket, counting down from k */
            size = 0;
        }
        s->bucket[k] = s->n_buckets - 1;
        s->b_first[s->n_buckets - 1] = k;
        size += params[k]->n;
    }
    const char *ov = getenv("CLIPKD_DIST_OVERLAP");
    s->overlap = !(ov && !strcmp(ov, "0"));
    for (int k = 0; k < n; k++)
        s->by_ptr[k] = (param_ref){params[k], k};
    qsort(s->by_ptr, (size_t)n, sizeof *s->by_ptr, cmp_ptr);
    return s;
}

static int find(const ckdi_grad_sync *s, const ckd_tensor *t)
{
    param_ref key = {t, 0};
    const param_ref *r = t ? bsearch(&key, s->by_ptr, (size_t)s->n, sizeof key, cmp_ptr) : NULL;
    return r ? r->k : -1;
}

/* Bucket b's gradients into the flat buffer, and its sum started. */
static void launch(ckdi_grad_sync *s, int b)
{
    for (int k = s->b_first[b]; k <= s->b_last[b]; k++) {
        const ckd_tensor *p = s->params[k];
        if (p->grad)
            memcpy(s->flat + s->off[k], p->grad, (size_t)p->n * sizeof *s->flat);
        else
            memset(s->flat + s->off[k], 0, (size_t)p->n * sizeof *s->flat);
    }
    int64_t lo = s->off[s->b_first[b]], hi = s->off[s->b_last[b]] + s->params[s->b_last[b]]->n;
    if (!s->failed && ckdi_dist_iallreduce_f32(s->flat + lo, hi - lo, b, &s->err))
        s->failed = 1;
}

/* Releases the parameters that are final once the node at position upto
 * has run, starting each bucket whose parameters are all final. */
static void release(ckdi_grad_sync *s, int64_t upto)
{
    for (; s->cursor < s->n && s->ready[s->cursor].pos <= upto; s->cursor++) {
        int b = s->bucket[s->ready[s->cursor].k];
        if (--s->pending[b] == 0)
            launch(s, b);
    }
}

static void after_node(void *user, const ckd_node *n)
{
    (void)n;
    ckdi_grad_sync *s = user;
    release(s, s->pos++);
    ckdi_dist_progress();
}

int ckdi_grad_sync_backward(ckdi_grad_sync *s, ckd_ctx *c, ckd_tensor *loss, ckd_error *err)
{
    if (!ckdi_dist_active())
        return ckd_backward(c, loss, err);
    /* When each parameter's gradient is final: after the oldest node that
     * reads it (nodes run newest first); -1 for one no node reads. */
    for (int k = 0; k < s->n; k++)
        s->ready[k] = (ready_ref){-1, k};
    int64_t pos = 0;
    for (const ckd_node *nd = ckdi_tape_newest(c); nd; nd = nd->prev, pos++) {
        for (int i = 0; i < nd->n_in; i++) {
            int k = find(s, nd->in[i]);
            if (k >= 0)
                s->ready[k].pos = pos;
        }
        for (int i = 0; i < nd->n_ins; i++) {
            int k = find(s, nd->ins[i]);
            if (k >= 0)
                s->ready[k].pos = pos;
        }
    }
    qsort(s->ready, (size_t)s->n, sizeof *s->ready, cmp_ready);
    for (int b = 0; b < s->n_buckets; b++)
        s->pending[b] = s->b_last[b] - s->b_first[b] + 1;
    s->cursor = 0;
    s->pos = 0;
    s->failed = 0;
    if (s->overlap)
        release(s, -1);
    int rc = ckdi_backward_ex(c, loss, s->overlap ? after_node : NULL, s, err);
    /* Every rank starts every bucket, a failed backward included, so that
     * the collectives stay matched; the ranks then agree on the outcome. */
    release(s, INT64_MAX);
    if (ckdi_dist_wait_all(rc ? NULL : err) && !rc)
        rc = -1;
    if (s->failed && !rc)
        rc = ckd_errorf(err, "%s", s->err.msg);
    if (rc)
        return rc;
    float scale = 1.0f / (float)ckd_dist_size(); /* the mean; exact for a power of two */
    for (int k = 0; k < s->n; k++) {
        ckd_tensor *p = s->params[k];
        const float *f = s->flat + s->off[k];
        for (int64_t i = 0; p->grad && i < p->n; i++)
            p->grad[i] = f[i] * scale;
    }
    return 0;
}
