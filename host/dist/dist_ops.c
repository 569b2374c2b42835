/* The one tape op of data-parallel training: the global batch's rows of an
 * activation, gathered from every rank.
 *
 *   x    [n_r, ...]     this rank's rows (its shard of the batch)
 *   out  [Σ n, ...]     every rank's rows, in rank order: the batch as one
 *                       process would have it
 *
 * Every rank then computes the same loss L on out, so each holds the whole
 * dL/dout; the rows of its own shard are exactly dL/dx. Backward adds them
 * scaled by the number of ranks N: the trainer sums the ranks' parameter
 * gradients and divides by N, which gives the single-process gradient both
 * for parameters reached through x (each rank contributes its shard's part,
 * N · dL/dθ_r / N) and for those that every rank reaches in full after the
 * gather (a loss's own parameters, the logit scale: N copies / N). This is
 * open_clip's gather_with_grad followed by DDP's averaging, without the
 * reduce-scatter of dL/dout, which the ranks already agree on. */
#include "config.h"

#include "core/tape.h"
#include "dist/dist_internal.h"

static void gather_backward(ckd_ctx *c, ckd_node *n)
{
    ckd_tensor *x = n->in[0];
    float *g = ckdi_grad_buf(c, x);
    if (!g)
        return;
    const float *go = n->out->grad + n->iarg[0];
    float s = (float)n->iarg[1];
    for (int64_t i = 0; i < x->n; i++)
        g[i] += s * go[i];
}

ckd_tensor *ckdi_dist_gather_rows(ckd_ctx *c, ckd_tensor *x, const int64_t *counts)
{
    if (!x || ckd_ctx_failed(c) || !ckdi_dist_active())
        return x;
    int R = ckd_dist_size(), me = ckd_dist_rank();
    if (x->ndim < 1 || x->shape[0] != counts[me])
        return ckd_ctx_fail(c, "gather: %lld rows, the batch shard has %lld", (long long)(x->ndim ? x->shape[0] : 0),
                            (long long)counts[me]);
    int64_t row = x->shape[0] ? x->n / x->shape[0] : 0, total = 0, before = 0;
    for (int r = 0; r < R; r++) {
        before += r < me ? counts[r] : 0;
        total += counts[r];
    }
    int64_t shape[CKD_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++)
        shape[d] = x->shape[d];
    shape[0] = total;
    ckd_tensor *out = ckd_tensor_new(c, x->ndim, shape);
    if (!out)
        return NULL;
    ckd_error err;
    if (ckdi_dist_allgather(x->data, counts, row * (int64_t)sizeof(float), out->data, &err))
        return ckd_ctx_fail(c, "%s", err.msg);
    if (ckdi_needs_grad(c, &x, 1)) {
        ckd_node *n = ckdi_record(c, "dist_gather", gather_backward, out, &x, 1);
        if (!n)
            return NULL;
        n->iarg[0] = before * row;
        n->iarg[1] = R;
    }
    return out;
}

int ckdi_dist_counts(int rc, int64_t n, int64_t *counts, ckd_error *err)
{
    int R = ckd_dist_size();
    int64_t mine = rc < 0 ? -1 : rc > 0 ? -2 : n;
    if (ckdi_dist_allgather_i64(&mine, 1, counts, err))
        return -1;
    int failed = 0, ended = 0;
    for (int r = 0; r < R; r++) {
        failed |= counts[r] == -1;
        ended += counts[r] == -2;
    }
    if (failed)
        return ckdi_dist_agree(rc < 0 ? -1 : 0, err);
    if (ended == R)
        return 1;
    if (ended)
        return ckd_errorf(err, "the ranks' loaders disagree on the number of batches (%d of %d at the end)", ended, R);
    return 0;
}

void ckdi_dist_part(int64_t M, int64_t *lo, int64_t *hi)
{
    int64_t R = ckd_dist_size(), r = ckd_dist_rank();
    *lo = M * r / R;
    *hi = M * (r + 1) / R;
}
