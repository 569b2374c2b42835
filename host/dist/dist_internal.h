/* dist_internal.h — the collectives the trainer uses (not installed).
 *
 * Each is a no-op copy in a world of one, so the trainer calls them without
 * asking whether it runs under MPI. All return 0, or -1 with err set; an
 * MPI failure (a peer gone) ends the job through the MPI library's own
 * error handler, which Open MPI's launcher reports on its side. */
#ifndef CKD_DIST_INTERNAL_H
#define CKD_DIST_INTERNAL_H

#include <stdint.h>

#include "clipkd/dist.h"
#include "clipkd/tensor.h"

/* More than one rank. */
int ckdi_dist_active(void);

/* out = the ranks' local arrays one after another, in rank order; counts[r]
 * elements of elem_bytes come from rank r (every rank passes the same
 * counts). local may be this rank's place in out. */
int ckdi_dist_allgather(const void *local, const int64_t *counts, int64_t elem_bytes, void *out, ckd_error *err);

/* out[r · n + k] = rank r's v[k]: n int64 from every rank. */
int ckdi_dist_allgather_i64(const int64_t *v, int n, int64_t *out, ckd_error *err);

/* Non-blocking sums in place (the gradient buckets of grad_sync.c): a
 * sum started in slot 0 .. CKDI_DIST_MAX_SLOTS − 1; progress lets the MPI
 * library move the outstanding ones on (Open MPI progresses non-blocking
 * collectives only inside MPI calls); wait_all finishes them all. */
#define CKDI_DIST_MAX_SLOTS 64
int ckdi_dist_iallreduce_f32(float *buf, int64_t n, int slot, ckd_error *err);
void ckdi_dist_progress(void);
int ckdi_dist_wait_all(ckd_error *err);

/* Rank root's bytes to every rank. */
int ckdi_dist_bcast(void *buf, int64_t bytes, int root, ckd_error *err);

/* Collective: every rank passes its own outcome (0 or -1 with err set).
 * When any rank failed, every rank returns -1 with err = the lowest failing
 * rank's message, "rank R: " in front; else 0. This is how one rank's bad
 * input stops all of them with one clear message instead of leaving the
 * others waiting in the next collective. */
int ckdi_dist_agree(int rc, ckd_error *err);

/* Collective, once per batch of a sharded loader: rc is this rank's
 * ckd_loader_next outcome (0, 1 at the end, −1 with err set) and n its
 * shard's size. counts[r] = rank r's n. Returns −1 on every rank when any
 * failed (err = the first failing rank's message), 1 when all are at the
 * end, else 0. */
int ckdi_dist_counts(int rc, int64_t n, int64_t *counts, ckd_error *err);

/* This rank's part [*lo, *hi) of M rows split over the ranks. */
void ckdi_dist_part(int64_t M, int64_t *lo, int64_t *hi);

/* grad_sync.c: ckd_backward with the ranks' gradients of params[0..n)
 * summed bucket by bucket as backward finishes them, and divided by the
 * number of ranks; ckd_backward itself in a world of one. Collective. */
typedef struct ckdi_grad_sync ckdi_grad_sync;
ckdi_grad_sync *ckdi_grad_sync_new(ckd_tensor *const *params, int n, ckd_error *err);
void ckdi_grad_sync_free(ckdi_grad_sync *s);
int ckdi_grad_sync_backward(ckdi_grad_sync *s, ckd_ctx *c, ckd_tensor *loss, ckd_error *err);

/* The tape op (dist_ops.c): every rank's x [counts[r], ...] in rank order,
 * as [Σ counts, ...], gradients flowing back to this rank's rows; x itself
 * in a world of one. */
ckd_tensor *ckdi_dist_gather_rows(ckd_ctx *c, ckd_tensor *x, const int64_t *counts);

#endif
