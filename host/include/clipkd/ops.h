/* clipkd/ops.h — differentiable operations on ckd_tensor.
 *
 * Every op takes the context first, returns a new tensor (or NULL with an
 * error recorded in the context — see clipkd/tensor.h), and, when gradients
 * are enabled and an input requires one, records itself on the tape. Each
 * op's forward and backward sit side by side in host/core/ops_*.c.
 *
 * Layout conventions: row-major; "[..., C]" means any number of leading
 * dimensions, flattened to rows. Integer inputs (class targets, token ids,
 * row indices) are plain int32 arrays, copied by the op.
 */
#ifndef CLIPKD_OPS_H
#define CLIPKD_OPS_H

#include <stdint.h>

#include "clipkd/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- products (host/core/ops_matmul.c) ------------------------------------ */
/* a [..., M, K] · b [K, N] -> [..., M, N] */
ckd_tensor *ckd_matmul(ckd_ctx *c, ckd_tensor *a, ckd_tensor *b);
/* General 2-D form: op(a) · op(b) with op = transpose when the flag is set.
 * a [M, K] (or [K, M] when trans_a; without trans_a leading dims are rows),
 * b [K, N] (or [N, K] when trans_b) -> [M, N]. */
ckd_tensor *ckd_matmul_ex(ckd_ctx *c, ckd_tensor *a, int trans_a, ckd_tensor *b, int trans_b);
/* x [..., K], w [N, K] (PyTorch's Linear layout), bias [N] or NULL -> [..., N] */
ckd_tensor *ckd_linear(ckd_ctx *c, ckd_tensor *x, ckd_tensor *w, ckd_tensor *bias);

/* ---- convolution (host/core/ops_conv.c) ------------------------------------- */
/* Geometry of a 2-D convolution, as torch.nn.Conv2d's arguments (no dilation).
 * A zero stride or groups means 1, so designated initialisers name only what
 * differs: (ckd_conv2d_params){.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1}.
 * A NULL params pointer is stride 1, no padding, one group. */
typedef struct ckd_conv2d_params {
    int stride_h, stride_w; /* >= 1 (0: 1) */
    int pad_h, pad_w;       /* zero padding on each side, >= 0 */
    int groups;             /* >= 1 (0: 1); depthwise is groups = Cin */
} ckd_conv2d_params;
/* x [B, Cin, H, W], w [Cout, Cin/groups, kh, kw], bias [Cout] or NULL
 * -> [B, Cout, Ho, Wo] with Ho = (H + 2·pad_h − kh) / stride_h + 1 (likewise Wo);
 * Cin and Cout must be divisible by groups. im2col + GEMM per group. */
ckd_tensor *ckd_conv2d_ex(ckd_ctx *c, ckd_tensor *x, ckd_tensor *w, ckd_tensor *bias, const ckd_conv2d_params *p);
/* The square form: one stride and padding for both axes, one group (stride >= 1).
 * Patch embedding is stride = kernel, pad = 0. */
ckd_tensor *ckd_conv2d(ckd_ctx *c, ckd_tensor *x, ckd_tensor *w, ckd_tensor *bias, int stride, int pad);

/* ---- pooling (host/core/ops_pool.c) ------------------------------------------ */
/* As torch.nn.MaxPool2d / AvgPool2d (ceil_mode False, no dilation). A zero
 * stride means stride = kernel (PyTorch's default); padding may be at most
 * half the kernel (PyTorch's limit), so every window holds an input pixel. */
typedef struct ckd_pool2d_params {
    int kernel_h, kernel_w; /* >= 1 */
    int stride_h, stride_w; /* >= 1 (0: the kernel size) */
    int pad_h, pad_w;       /* 0 <= pad <= kernel / 2 */
} ckd_pool2d_params;
/* x [B, C, H, W] -> [B, C, Ho, Wo], Ho = (H + 2·pad_h − kernel_h) / stride_h + 1.
 * Max pooling pads with −inf (padding never wins); the gradient goes to the
 * first maximum of each window in row-major order (as PyTorch's CPU kernel). */
ckd_tensor *ckd_maxpool2d(ckd_ctx *c, ckd_tensor *x, const ckd_pool2d_params *p);
/* Average pooling with count_include_pad (PyTorch's default): each window's
 * sum is divided by kernel_h · kernel_w, padded zeros included. */
ckd_tensor *ckd_avgpool2d(ckd_ctx *c, ckd_tensor *x, const ckd_pool2d_params *p);
/* x [B, C, H, W] -> [B, C]: the mean over H·W (adaptive_avg_pool2d(x, 1) flattened). */
ckd_tensor *ckd_global_avgpool2d(ckd_ctx *c, ckd_tensor *x);

/* ---- elementwise (host/core/ops_elementwise.c) ------------------------------- */
/* Broadcasting: the smaller operand's shape, leading 1s aside, must equal the
 * trailing dimensions of the larger one (e.g. [B, T, C] with [C], [T, C] or
 * [1, T, C]), or be a single element. */
ckd_tensor *ckd_add(ckd_ctx *c, ckd_tensor *a, ckd_tensor *b);
ckd_tensor *ckd_sub(ckd_ctx *c, ckd_tensor *a, ckd_tensor *b);
ckd_tensor *ckd_mul(ckd_ctx *c, ckd_tensor *a, ckd_tensor *b);
ckd_tensor *ckd_div(ckd_ctx *c, ckd_tensor *a, ckd_tensor *b);
ckd_tensor *ckd_scale(ckd_ctx *c, ckd_tensor *x, float s);
ckd_tensor *ckd_exp(ckd_ctx *c, ckd_tensor *x);
ckd_tensor *ckd_log(ckd_ctx *c, ckd_tensor *x);
ckd_tensor *ckd_sqrt(ckd_ctx *c, ckd_tensor *x);
ckd_tensor *ckd_relu(ckd_ctx *c, ckd_tensor *x);
ckd_tensor *ckd_gelu(ckd_ctx *c, ckd_tensor *x);        /* exact, with erf */
ckd_tensor *ckd_quick_gelu(ckd_ctx *c, ckd_tensor *x);  /* x · sigmoid(1.702 x) */
ckd_tensor *ckd_sigmoid(ckd_ctx *c, ckd_tensor *x);
ckd_tensor *ckd_tanh(ckd_ctx *c, ckd_tensor *x);
/* Inverted dropout with probability p; the identity unless the context is in
 * training mode. Masks come from the context's RNG. */
ckd_tensor *ckd_dropout(ckd_ctx *c, ckd_tensor *x, float p);

/* ---- reductions (host/core/ops_reduce.c) ------------------------------------- */
/* Over one axis (negative counts from the end); the axis is removed. */
ckd_tensor *ckd_sum(ckd_ctx *c, ckd_tensor *x, int axis);
ckd_tensor *ckd_mean(ckd_ctx *c, ckd_tensor *x, int axis);
/* Over everything -> scalar (accumulated in double). */
ckd_tensor *ckd_sum_all(ckd_ctx *c, ckd_tensor *x);
ckd_tensor *ckd_mean_all(ckd_ctx *c, ckd_tensor *x);

/* ---- shape (host/core/ops_shape.c) -------------------------------------------- */
/* Same data, new shape (no copy); one entry may be -1. */
ckd_tensor *ckd_reshape(ckd_ctx *c, ckd_tensor *x, int ndim, const int64_t *shape);
ckd_tensor *ckd_transpose(ckd_ctx *c, ckd_tensor *x, int d0, int d1);
/* out.shape[i] = x.shape[perm[i]] */
ckd_tensor *ckd_permute(ckd_ctx *c, ckd_tensor *x, const int *perm);
ckd_tensor *ckd_concat(ckd_ctx *c, ckd_tensor **xs, int n, int axis);
ckd_tensor *ckd_slice(ckd_ctx *c, ckd_tensor *x, int axis, int64_t start, int64_t len);
/* Embedding lookup: table [V, C], ids [n] -> [n, C] */
ckd_tensor *ckd_gather_rows(ckd_ctx *c, ckd_tensor *table, const int32_t *ids, int64_t n);
/* Row selection per batch item (token masking, pooling):
 * x [B, T, C] (or [T, C] as B = 1), idx [B·K] with values in [0, T) -> [B, K, C] */
ckd_tensor *ckd_select_rows(ckd_ctx *c, ckd_tensor *x, const int32_t *idx, int64_t k);

/* ---- normalisation (host/core/ops_norm.c) ---------------------------------------- */
/* Over the last axis, numerically stable (max subtracted). */
ckd_tensor *ckd_softmax(ckd_ctx *c, ckd_tensor *x);
ckd_tensor *ckd_log_softmax(ckd_ctx *c, ckd_tensor *x);
/* x [..., C], gamma [C], beta [C] (either may be NULL) */
ckd_tensor *ckd_layernorm(ckd_ctx *c, ckd_tensor *x, ckd_tensor *gamma, ckd_tensor *beta, float eps);
/* Rows divided by max(‖row‖₂, eps), like torch.nn.functional.normalize (eps 1e-12). */
ckd_tensor *ckd_l2_normalize(ckd_ctx *c, ckd_tensor *x, float eps);

/* ---- batch normalisation (host/core/ops_batchnorm.c) ------------------------------ */
/* torch.nn.functional.batch_norm over channel axis 1: x [N, C, H, W] (also
 * [N, C, L] and [N, C]); gamma, beta [C] or NULL (affine = False);
 * running_mean, running_var [C], both or neither. They are buffers: never
 * given a gradient, updated in place (whatever the grad mode).
 *   training: normalise with the batch's mean and biased variance over N·H·W,
 *     then, when running stats are given, running = (1 − momentum)·running +
 *     momentum·batch, with the UNBIASED variance for running_var (PyTorch;
 *     momentum 0.1 is its default). Needs more than one value per channel.
 *   eval: normalise with the running statistics (required).
 * Gradients reach x, gamma and beta; in eval mode the statistics are constants. */
ckd_tensor *ckd_batchnorm2d(ckd_ctx *c, ckd_tensor *x, ckd_tensor *gamma, ckd_tensor *beta,
                            ckd_tensor *running_mean, ckd_tensor *running_var, int training, float momentum,
                            float eps);

/* ---- losses (host/core/ops_loss.c) ---------------------------------------------- */
/* logits [N, K], targets [N] in [0, K) -> mean cross-entropy (scalar). */
ckd_tensor *ckd_cross_entropy(ckd_ctx *c, ckd_tensor *logits, const int32_t *targets);
/* Rows of logits p, q [N, K]: (1/N) Σ_i KL(softmax(p_i) ‖ softmax(q_i)); gradients
 * flow into both (a fixed teacher simply does not require one). */
ckd_tensor *ckd_kl_div(ckd_ctx *c, ckd_tensor *p_logits, ckd_tensor *q_logits);
/* mean((a − b)²) over all elements -> scalar */
ckd_tensor *ckd_mse(ckd_ctx *c, ckd_tensor *a, ckd_tensor *b);

/* ---- attention (host/core/ops_attention.c) ---------------------------------------- */
/* Multi-head scaled dot-product self-attention core (the projections are
 * ckd_linear around it): q, k, v [B, T, C] with C = heads · D; softmax(q kᵀ / √D)
 * per head, optionally causal (token t sees tokens ≤ t) -> [B, T, C]. */
ckd_tensor *ckd_attention(ckd_ctx *c, ckd_tensor *q, ckd_tensor *k, ckd_tensor *v, int heads, int causal);

/* ---- entropy models (host/core/ops_entropy.c) -------------------------------------- */
/* Ballé et al. 2018's factorized density (CompressAI's EntropyBottleneck,
 * filters (3, 3, 3)), one per channel, as the negative log-likelihood of the
 * unit interval around each value: y [..., C] -> [..., C], −log q(y) in nats
 * (q floored at 1e-9). Parameters per channel, each layer's [out, in] matrix
 * row-major and the layers concatenated: matrices [C, 24] (1->3, 3->3, 3->3,
 * 3->1), biases [C, 10], factors [C, 9]. Gradients reach y and all three. */
#define CKD_FD_MATRIX_SIZE 24
#define CKD_FD_BIAS_SIZE 10
#define CKD_FD_FACTOR_SIZE 9
ckd_tensor *ckd_factorized_nll(ckd_ctx *c, ckd_tensor *y, ckd_tensor *matrices, ckd_tensor *biases, ckd_tensor *factors);
/* CompressAI's initialisation (init_scale 10): matrices log(expm1(1 / (10^¼ · out))),
 * biases U[−½, ½) from r, factors 0. Not an op: writes the tensors' data. */
void ckd_factorized_init(ckd_tensor *matrices, ckd_tensor *biases, ckd_tensor *factors, ckd_rng *r);

/* The quantisation proxy: CKD_QUANT_NOISE adds U[−½, ½) noise from the
 * context's RNG (training), CKD_QUANT_ROUND rounds halves to even
 * (torch.round). The gradient passes straight through in both. */
typedef enum { CKD_QUANT_NOISE = 0, CKD_QUANT_ROUND = 1 } ckd_quant_mode;
ckd_tensor *ckd_quantize(ckd_ctx *c, ckd_tensor *x, ckd_quant_mode mode);

#ifdef __cplusplus
}
#endif
#endif
