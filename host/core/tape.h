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

/* A new arena tensor whose shape is given by ndim/shape, for op outputs. */
ckd_tensor *ckdi_out_like(ckd_ctx *c, const ckd_tensor *t);

/* Number of OpenMP threads ops should use (the library's thread setting, 1
 * when already inside a parallel region). */
int ckdi_op_threads(void);

/* One row of softmax (logsm = 0) or log_softmax (logsm = 1), max-subtracted,
 * accumulated in double; shared by softmax, the losses and attention. */
void ckdi_softmax_row(const float *x, float *y, int64_t C, int logsm);

#endif
