/* models/resnet — convolutional image towers, shared by the resnet plugin and
 * the clip plugin's ResNet image tower.
 *
 * Two families, each with its reference's parameter names:
 *   - torchvision's ResNet (BasicBlock / Bottleneck v1.5 with the stride on
 *     the 3x3 conv, groups and width_per_group as ResNeXt/Wide ResNet, a 7x7
 *     stride-2 stem + 3x3 max pool or the CIFAR stem, a 3x3 stride-1 conv
 *     without pooling), global average pooling and one Linear `fc` (class
 *     logits, or an embedding projection): conv1.weight, bn1.*,
 *     layer1.0.conv1.weight, layer2.0.downsample.{0,1}.*, fc.{weight,bias};
 *   - CLIP's ModifiedResNet (open_clip's code): a 3-conv stem with a 2x2
 *     average pool, anti-aliased Bottlenecks (the stride is a 2x2 average pool
 *     after the 3x3 conv, and before the 1x1 downsample conv), and attention
 *     pooling (the mean token plus every position, one query from the mean
 *     token) whose c_proj is the embedding projection: visual.conv1.weight,
 *     visual.layer1.0.downsample.{0,1}.*, visual.attnpool.{q,k,v,c}_proj.*.
 * Tensors, row-major: activations [B, C, H, W]; conv weights [Cout, Cin/g,
 * kh, kw]; Linear weights [out, in]; BatchNorm weight/bias/running stats [C].
 *
 * The tower keeps its parameters (trainable) and buffers (BatchNorm
 * running_mean, running_var, num_batches_tracked) apart: buffers are saved
 * and loaded with the weights but never optimised or decayed. BatchNorm runs
 * in train mode (batch statistics, running statistics updated with the
 * momentum) exactly when the context is in training mode, as PyTorch's
 * module.train(); the host keeps teachers and evaluation in eval mode. */
#ifndef CKD_MODEL_RESNET_H
#define CKD_MODEL_RESNET_H

#include <stdint.h>

#include "clipkd/plugin.h"
#include "clipkd/safetensors.h"

enum { RN_TORCHVISION = 0, RN_MODIFIED = 1 };
enum { RN_BASIC = 0, RN_BOTTLENECK = 1 };
enum { RN_STEM_IMAGENET = 0, RN_STEM_CIFAR = 1 };
#define RN_MAX_STAGES 4

typedef struct rn_cfg {
    int arch;                 /* RN_TORCHVISION or RN_MODIFIED */
    int block;                /* torchvision: RN_BASIC or RN_BOTTLENECK (ModifiedResNet: Bottleneck) */
    int stem;                 /* torchvision: RN_STEM_IMAGENET or RN_STEM_CIFAR */
    int n_stages;             /* 1..4 */
    int64_t layers[RN_MAX_STAGES];
    int64_t width;            /* stage-1 planes (torchvision 64; ModifiedResNet `width`) */
    int64_t groups, width_per_group; /* torchvision Bottleneck: conv2 width = planes·wpg/64·groups */
    int64_t image_size, channels;
    int64_t out_dim;          /* fc outputs / attnpool output_dim */
    int64_t heads;            /* ModifiedResNet attention-pool heads */
    float bn_eps, bn_momentum;
} rn_cfg;

/* One BatchNorm2d: parameters weight, bias; buffers running_mean,
 * running_var, num_batches_tracked (a float count). */
typedef struct rn_bn {
    ckd_tensor *w, *b, *mean, *var, *count;
} rn_bn;

typedef struct rn_block {
    int stride;
    ckd_tensor *conv1, *conv2, *conv3; /* conv3: Bottlenecks only */
    rn_bn bn1, bn2, bn3;
    ckd_tensor *ds_conv;               /* downsample (NULL when the identity fits) */
    rn_bn ds_bn;
} rn_block;

typedef struct rn_tower {
    rn_cfg cfg;
    char prefix[32];                   /* "" (torchvision) or "visual." */
    /* stem: torchvision conv1/bn1; ModifiedResNet conv1..3/bn1..3 */
    ckd_tensor *stem_conv[3];
    rn_bn stem_bn[3];
    rn_block *blocks;
    int n_blocks;
    int stage_start[RN_MAX_STAGES + 1]; /* blocks of stage s: [stage_start[s], stage_start[s+1]) */
    /* head: torchvision fc; ModifiedResNet attnpool */
    ckd_tensor *fc_w, *fc_b;
    ckd_tensor *ap_pos, *ap_q_w, *ap_q_b, *ap_k_w, *ap_k_b, *ap_v_w, *ap_v_b, *ap_c_w, *ap_c_b;
    int64_t feat_dim, feat_hw;          /* final feature channels and side (attnpool grid) */
    ckd_tensor **params;
    int n_params, cap_params;
    ckd_tensor **buffers;
    int n_buffers, cap_buffers;
    int failed;                        /* creation ran out of memory (err set) */
} rn_tower;

/* resnet_config.c: reads the tower's keys under `base` ("" or "vision.") of
 * validated parameters, checks every size (messages name the keys, e.g.
 * "vision.layers: ..."), including that the image keeps at least one pixel
 * through every stride and pool. */
int rn_cfg_read(const ckd_params *p, const char *base, rn_cfg *cfg, ckd_error *err);
/* The schema properties of a tower (without braces), for a plugin's schema. */
#define RN_SCHEMA_PROPERTIES                                                                                       \
    "\"arch\": {\"type\": \"string\", \"enum\": [\"torchvision\", \"modified\"], \"default\": \"torchvision\","  \
    " \"description\": \"torchvision ResNet, or CLIP's ModifiedResNet (3-conv stem, attention pooling)\"},"       \
    "\"block\": {\"type\": \"string\", \"enum\": [\"basic\", \"bottleneck\"], \"default\": \"basic\","           \
    " \"description\": \"torchvision block (ModifiedResNet always uses its Bottleneck)\"},"                      \
    "\"stem\": {\"type\": \"string\", \"enum\": [\"imagenet\", \"cifar\"], \"default\": \"imagenet\","           \
    " \"description\": \"torchvision stem: 7x7/2 conv + 3x3/2 max pool, or one 3x3/1 conv (small images)\"},"    \
    "\"layers\": {\"type\": \"array\", \"items\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 64},"     \
    " \"description\": \"blocks per stage, 1 to 4 stages, e.g. [2, 2, 2, 2] for ResNet-18\"},"                  \
    "\"width\": {\"type\": \"integer\", \"minimum\": 1, \"default\": 64,"                                         \
    " \"description\": \"planes of the first stage (doubling per stage)\"},"                                     \
    "\"groups\": {\"type\": \"integer\", \"minimum\": 1, \"default\": 1},"                                        \
    "\"width_per_group\": {\"type\": \"integer\", \"minimum\": 1, \"default\": 64},"                              \
    "\"image_size\": {\"type\": \"integer\", \"minimum\": 1, \"default\": 224},"                                   \
    "\"channels\": {\"type\": \"integer\", \"minimum\": 1, \"default\": 3},"                                      \
    "\"heads\": {\"type\": \"integer\", \"minimum\": 1,"                                                          \
    " \"description\": \"ModifiedResNet attention-pool heads (default: width·32/64, open_clip's head_width 64)\"}," \
    "\"bn_eps\": {\"type\": \"number\", \"exclusiveMinimum\": 0, \"default\": 1e-5},"                             \
    "\"bn_momentum\": {\"type\": \"number\", \"minimum\": 0, \"maximum\": 1, \"default\": 0.1}"

/* resnet_build.c: the tower's parameters and buffers, named with prefix;
 * initialised from init_rng (torchvision's or open_clip's scheme) or zero.
 * NULL with err set. */
rn_tower *rn_tower_new(const rn_cfg *cfg, const char *prefix, ckd_rng *init_rng, ckd_error *err);
void rn_tower_free(rn_tower *t);
/* Loads the tower's parameters and buffers from an open checkpoint. Each is
 * looked up under its name, or without the prefix, or with "visual." added
 * (a standalone ModifiedResNet file). A missing num_batches_tracked is
 * taken as 0 (older checkpoints); anything else missing, misshaped or not a
 * number is an error naming the tensor, and nothing is written unless all
 * are present. */
int rn_tower_load(rn_tower *t, const ckd_safetensors *st, const char *path, ckd_error *err);
/* Adds every parameter and buffer (F32; num_batches_tracked as I64, as
 * PyTorch stores it) to w, or the buffers alone. The tensors stay
 * referenced until w is saved. */
int rn_tower_add_to_writer(rn_tower *t, ckd_st_writer *w, ckd_error *err);
int rn_tower_add_buffers(rn_tower *t, ckd_st_writer *w, ckd_error *err);
/* Whether a checkpoint's tensor name is one of the tower's buffers. */
int rn_tower_is_buffer(const rn_tower *t, const char *name);

/* resnet_forward.c: pixels [B, channels, image_size, image_size] -> [B, out_dim]. */
/* pixels -> the tower's output; *features (may be NULL) receives the
 * torchvision form's global-average-pooled features [B, feat_dim], the fc
 * head's input (NULL for the ModifiedResNet). */
ckd_tensor *rn_tower_forward(rn_tower *t, ckd_ctx *c, ckd_tensor *pixels, ckd_tensor **features);
/* The torchvision form's fc head alone: [B, feat_dim] -> [B, out_dim]. */
ckd_tensor *rn_tower_head(rn_tower *t, ckd_ctx *c, ckd_tensor *features);

#endif
