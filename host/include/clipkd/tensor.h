/* clipkd/tensor.h — float32 tensors, the per-step arena, the tape.
 *
 * A tensor is a contiguous, row-major float32 array of up to four dimensions.
 * Two lifetimes exist:
 *   - parameters (ckd_param_new) live until ckd_param_free: their data and
 *     gradient buffers are malloc'd and survive every step;
 *   - everything else — activations, their gradients, tape nodes, scratch —
 *     lives in the context's arena and disappears at ckd_ctx_reset(), which the
 *     trainer calls once per step (ggml's context idea, llm.c's single slab).
 *
 * Ops (clipkd/ops.h) record themselves on the context's tape when gradients
 * are enabled and an input requires them; ckd_backward() then walks the tape in
 * reverse and accumulates gradients. Gradients are never zeroed implicitly:
 * parameter gradients accumulate across backward calls until
 * ckd_param_zero_grad() (this is what gradient accumulation wants).
 *
 * Errors are sticky: an op that fails (bad shapes, an out-of-range index, an
 * exhausted arena) records one message in the context and returns NULL; every
 * later op given a NULL input returns NULL without touching the message, so a
 * whole forward pass can be written without checks and tested once at the end
 * with ckd_ctx_failed()/ckd_ctx_error(). Nothing here prints or aborts.
 */
#ifndef CLIPKD_TENSOR_H
#define CLIPKD_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "clipkd/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CKD_MAX_DIMS 4

typedef struct ckd_node ckd_node;
typedef struct ckd_ctx ckd_ctx;

typedef struct ckd_tensor {
    int ndim;                      /* 0 (scalar) .. CKD_MAX_DIMS */
    int64_t shape[CKD_MAX_DIMS];   /* unused trailing entries are 1 */
    int64_t n;                     /* number of elements */
    float *data;
    float *grad;                   /* NULL until a gradient reaches it */
    int requires_grad;
    int is_param;                  /* persistent storage (ckd_param_new) */
    const char *name;              /* parameters: their checkpoint name */
    ckd_node *node;                /* op that produced it; NULL for leaves */
} ckd_tensor;

/* ---- arena ---------------------------------------------------------------- */
typedef struct ckd_arena ckd_arena;

/* chunk_bytes: size of each slab; limit_bytes: total cap (0 = no cap). */
ckd_arena *ckd_arena_new(size_t chunk_bytes, size_t limit_bytes);
/* 64-byte aligned; NULL when the limit would be exceeded or malloc fails. */
void *ckd_arena_alloc(ckd_arena *a, size_t bytes);
void ckd_arena_reset(ckd_arena *a);     /* keeps the slabs for reuse */
size_t ckd_arena_used(const ckd_arena *a);
size_t ckd_arena_peak(const ckd_arena *a);
size_t ckd_arena_limit(const ckd_arena *a);
void ckd_arena_free(ckd_arena *a);

/* ---- random numbers (xoshiro256**, seeded with splitmix64) ----------------- */
typedef struct ckd_rng {
    uint64_t s[4];
} ckd_rng;

void ckd_rng_seed(ckd_rng *r, uint64_t seed);
uint64_t ckd_rng_next(ckd_rng *r);
double ckd_rng_uniform(ckd_rng *r);     /* [0, 1) */
double ckd_rng_normal(ckd_rng *r);      /* N(0, 1), Box-Muller */
uint64_t ckd_rng_below(ckd_rng *r, uint64_t n); /* uniform in [0, n) */
/* a[0..n) put in a uniformly random order (Fisher–Yates, last element first). */
void ckd_rng_shuffle(ckd_rng *r, int64_t *a, int64_t n);

/* ---- context ---------------------------------------------------------------- */
/* arena_limit: bytes the per-step arena may grow to (0 = unlimited). */
ckd_ctx *ckd_ctx_new(size_t arena_limit, uint64_t seed, ckd_error *err);
void ckd_ctx_free(ckd_ctx *c);
/* Drops all activations and the tape, clears a recorded error. */
void ckd_ctx_reset(ckd_ctx *c);
ckd_arena *ckd_ctx_arena(ckd_ctx *c);
ckd_rng *ckd_ctx_rng(ckd_ctx *c);

/* Gradient recording (on by default). Returns the previous setting, so
 *   int was = ckd_ctx_set_grad(c, 0); ...teacher forward...; ckd_ctx_set_grad(c, was); */
int ckd_ctx_set_grad(ckd_ctx *c, int enabled);
int ckd_ctx_grad_enabled(const ckd_ctx *c);
/* Training mode turns dropout on (default off). Returns the previous setting. */
int ckd_ctx_set_training(ckd_ctx *c, int training);
int ckd_ctx_training(const ckd_ctx *c);

int ckd_ctx_failed(const ckd_ctx *c);
const char *ckd_ctx_error(const ckd_ctx *c);
/* Records an error (if none is recorded yet) and returns NULL. */
void *ckd_ctx_fail(ckd_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Copies the recorded error into err; returns -1 if one is recorded, else 0. */
int ckd_ctx_check(const ckd_ctx *c, ckd_error *err);

/* ---- tensors ---------------------------------------------------------------- */
/* Arena tensors: uninitialised, zero-filled, or copied from data. */
ckd_tensor *ckd_tensor_new(ckd_ctx *c, int ndim, const int64_t *shape);
ckd_tensor *ckd_tensor_zeros(ckd_ctx *c, int ndim, const int64_t *shape);
ckd_tensor *ckd_tensor_from(ckd_ctx *c, int ndim, const int64_t *shape, const float *data);
ckd_tensor *ckd_scalar(ckd_ctx *c, float v);
/* An arena leaf whose gradient is wanted (e.g. inputs of a gradient check). */
void ckd_tensor_set_requires_grad(ckd_tensor *t, int on);
/* "[2, 3, 4]" into buf; returns buf. */
const char *ckd_shape_str(const ckd_tensor *t, char *buf, size_t cap);
int ckd_same_shape(const ckd_tensor *a, const ckd_tensor *b);
/* Arena scratch memory for ops: NULL (and a recorded error naming op) on exhaustion. */
void *ckd_scratch(ckd_ctx *c, size_t bytes, const char *op);

/* Parameters: persistent data and gradient, requires_grad set, zero-filled. */
ckd_tensor *ckd_param_new(int ndim, const int64_t *shape, const char *name, ckd_error *err);
void ckd_param_free(ckd_tensor *p);
void ckd_param_zero_grad(ckd_tensor *p);

/* ---- autodiff --------------------------------------------------------------- */
/* Backward from a scalar: seeds d(loss)/d(loss) = 1 and runs the tape in reverse. */
int ckd_backward(ckd_ctx *c, ckd_tensor *loss, ckd_error *err);

#ifdef __cplusplus
}
#endif
#endif
