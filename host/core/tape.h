/* tape.h — internals shared by the op implementations (not installed).
 *
 * A node records one op application: the output, its inputs, a backward
 * function, and whatever the forward pass saved for backward. Nodes live in
 * the arena and form a singly linked list from the newest to the oldest, so
 * ckd_backward() walks them in reverse order of creation without any graph
 * sorting: creation order is already a topological order.
 */
#ifndef CKD_TAPE_H
#define CKD_TAPE_H

#include "clipkd/tensor.h"

#define CKD_NODE_MAX_IN 4

typedef void (*ckd_backward_fn)(ckd_ctx *c, ckd_node *n);

struct ckd_node {
    const char *op;
    ckd_backward_fn backward;
    ckd_tensor *out;
    ckd_tensor *in[CKD_NODE_MAX_IN];
    int n_in;
    ckd_tensor **ins;      /* ops with many inputs (concat) */
    int n_ins;
    void *saved;           /* op-specific data kept for backward */
    int64_t iarg[6];
    float farg[4];
    ckd_node *prev;
};

/* Does an op on these inputs need recording? (grad mode on and an input wants grad) */
int ckdi_needs_grad(const ckd_ctx *c, ckd_tensor *const *in, int n);

/* Appends a node producing `out` from the inputs; sets out->requires_grad.
 * Returns NULL (error recorded) if the arena is exhausted. */
ckd_node *ckdi_record(ckd_ctx *c, const char *op, ckd_backward_fn bw, ckd_tensor *out,
                     ckd_tensor *const *in, int n_in);

/* The gradient buffer of t, allocated zero-filled in the arena on first use;
 * NULL if t does not require a gradient (or on exhaustion, error recorded). */
float *ckdi_grad_buf(ckd_ctx *c, ckd_tensor *t);

/* The same, but a buffer allocated by this call is not zero-filled and
 * *fresh is set: the caller must then write (=, not +=) every element before
 * anything reads it. So the first gradient to reach an activation overwrites
 * it instead of a memset followed by an accumulating pass. When an op's
 * inputs may be the same tensor (their gradients share the buffer), the
 * fresh one must be written in full before the others accumulate into it, or
 * the op uses ckdi_grad_buf. */
float *ckdi_grad_buf_ex(ckd_ctx *c, ckd_tensor *t, int *fresh);

/* The newest node of the tape (ckd_node.prev leads to older ones), NULL
 * when empty. */
ckd_node *ckdi_tape_newest(const ckd_ctx *c);

/* ckd_backward, calling after(user, n) once each node's backward has run
 * (or been skipped: nothing flowed into it), newest first. Data-parallel
 * training uses it to start summing a group of parameter gradients over
 * the ranks as soon as the last node that writes them is done. */
int ckdi_backward_ex(ckd_ctx *c, ckd_tensor *loss, void (*after)(void *user, const ckd_node *n), void *user,
                     ckd_error *err);

/* p[0..n) = 0, in parallel blocks when large. */
void ckdi_zero(float *p, int64_t n);

/* d[j] += s · Σ_r G[r, j] over the rows of G [R, P] (bias gradients): fixed
 * blocks of rows (about CKDI_BLOCK floats each, at most 64 blocks) are summed
 * in parallel into arena scratch, then the block sums in block order, so the
 * bits do not depend on the thread count. Each thread streams whole rows,
 * about twice as fast as splitting the columns between threads. Returns -1
 * (error recorded) if the scratch is not available. */
int ckdi_colsum_add(ckd_ctx *c, float *d, const float *G, int64_t R, int64_t P, float s);

/* A new arena tensor whose shape is given by ndim/shape, for op outputs. */
ckd_tensor *ckdi_out_like(ckd_ctx *c, const ckd_tensor *t);

/* Number of OpenMP threads ops should use (the library's thread setting, 1
 * when already inside a parallel region). */
int ckdi_op_threads(void);

/* Elementwise work is cut into blocks of this many floats (64 KiB); a loop
 * over blocks runs in parallel when there is more than one. Sums that cross
 * blocks add the block sums in block order, so no result depends on the
 * thread count. */
#define CKDI_BLOCK 16384

/* Number of blocks covering n elements, and the end of block k. */
static inline int64_t ckdi_n_blocks(int64_t n) { return (n + CKDI_BLOCK - 1) / CKDI_BLOCK; }
static inline int64_t ckdi_block_end(int64_t k, int64_t n)
{
    return (k + 1) * CKDI_BLOCK < n ? (k + 1) * CKDI_BLOCK : n;
}

/* Column sums over the rows of an [R, P] array that are more than a plain
 * sum (layernorm's dγ and dβ, the gradient of a broadcast factor of mul or
 * div) split the P columns into this many blocks, one per thread: each block
 * sums its rows in row order, so the result is the serial one for any thread
 * count. 1 when `work` (elements) is too small to share. */
static inline int64_t ckdi_col_blocks(int64_t P, int64_t work)
{
    int64_t nt = ckdi_op_threads(), nb = (P + 63) / 64;
    return work > 2 * CKDI_BLOCK && nb > 1 ? (nb < nt ? nb : nt) : 1;
}

/* For small kernels instantiated once per constant argument (an op kind):
 * forced inlining lets the constant fold the per-element switch away. */
#define CKDI_INLINE static inline __attribute__((always_inline))

/* One row of softmax (logsm = 0) or log_softmax (logsm = 1), max-subtracted,
 * in float with vectorised exp and sums; y may be x. Shared by softmax, the
 * losses and attention. */
void ckdi_softmax_row(const float *x, float *y, int64_t C, int logsm);

#endif
