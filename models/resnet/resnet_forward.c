/* models/resnet — the forward pass, built from ops (so backward is the
 * tape's). Layouts: activations [B, C, H, W]; the attention pool works on
 * tokens [B, 1 + H·W, C].
 *
 *   torchvision          stem: relu(bn1(conv1 7x7/2 p3)) -> maxpool 3x3/2 p1
 *                         (CIFAR stem: relu(bn1(conv1 3x3/1 p1)), no pool)
 *     BasicBlock          relu(bn2(conv2(relu(bn1(conv1 3x3/s(x))))) + down(x))
 *     Bottleneck          relu(bn3(conv3 1x1(relu(bn2(conv2 3x3/s g(relu(bn1(conv1 1x1(x))))))) + down(x))
 *     down(x)             bn(conv 1x1/s(x)) when the shape changes, else x
 *     head                fc(global average pool)
 *   ModifiedResNet       stem: relu(bn(conv 3x3/2)), relu(bn(conv 3x3)), relu(bn(conv 3x3)), avgpool 2
 *     Bottleneck          relu(bn3(conv3(avgpool_s(relu(bn2(conv2(relu(bn1(conv1(x))))))))) + down(x))
 *     down(x)             bn(conv 1x1(avgpool_s(x)))
 *     head                attention pool: tokens [mean; x] + pos; the mean token's
 *                         multi-head attention over all tokens, then c_proj
 * BatchNorm uses batch statistics and updates the running ones exactly when
 * the context is in training mode. */
#include "config.h"

#include "clipkd/ops.h"
#include "resnet.h"

static ckd_tensor *bn(ckd_ctx *c, const rn_tower *t, const rn_bn *b, ckd_tensor *x)
{
    int training = ckd_ctx_training(c);
    ckd_tensor *y = ckd_batchnorm2d(c, x, b->w, b->b, b->mean, b->var, training, t->cfg.bn_momentum, t->cfg.bn_eps);
    if (y && training)
        b->count->data[0] += 1.0f; /* PyTorch's num_batches_tracked */
    return y;
}

static ckd_tensor *conv(ckd_ctx *c, ckd_tensor *x, ckd_tensor *w, int stride, int pad, int groups)
{
    ckd_conv2d_params p = {.stride_h = stride, .stride_w = stride, .pad_h = pad, .pad_w = pad, .groups = groups};
    return ckd_conv2d_ex(c, x, w, NULL, &p);
}

static ckd_tensor *avgpool(ckd_ctx *c, ckd_tensor *x, int k)
{
    ckd_pool2d_params p = {.kernel_h = k, .kernel_w = k};
    return k > 1 ? ckd_avgpool2d(c, x, &p) : x;
}

static ckd_tensor *block(ckd_ctx *c, const rn_tower *t, const rn_block *b, ckd_tensor *x)
{
    const rn_cfg *cfg = &t->cfg;
    ckd_tensor *y, *id = x;
    if (cfg->arch == RN_MODIFIED) {
        y = ckd_relu(c, bn(c, t, &b->bn1, conv(c, x, b->conv1, 1, 0, 1)));
        y = ckd_relu(c, bn(c, t, &b->bn2, conv(c, y, b->conv2, 1, 1, 1)));
        y = bn(c, t, &b->bn3, conv(c, avgpool(c, y, b->stride), b->conv3, 1, 0, 1));
        if (b->ds_conv)
            id = bn(c, t, &b->ds_bn, conv(c, avgpool(c, x, b->stride), b->ds_conv, 1, 0, 1));
    } else if (cfg->block == RN_BASIC) {
        y = ckd_relu(c, bn(c, t, &b->bn1, conv(c, x, b->conv1, b->stride, 1, 1)));
        y = bn(c, t, &b->bn2, conv(c, y, b->conv2, 1, 1, 1));
        if (b->ds_conv)
            id = bn(c, t, &b->ds_bn, conv(c, x, b->ds_conv, b->stride, 0, 1));
    } else {
        y = ckd_relu(c, bn(c, t, &b->bn1, conv(c, x, b->conv1, 1, 0, 1)));
        y = ckd_relu(c, bn(c, t, &b->bn2, conv(c, y, b->conv2, b->stride, 1, (int)cfg->groups)));
        y = bn(c, t, &b->bn3, conv(c, y, b->conv3, 1, 0, 1));
        if (b->ds_conv)
            id = bn(c, t, &b->ds_bn, conv(c, x, b->ds_conv, b->stride, 0, 1));
    }
    return ckd_relu(c, ckd_add(c, y, id));
}

/* x [B, C, h, w] -> [B, out_dim] (see the header comment). */
static ckd_tensor *attnpool(ckd_ctx *c, const rn_tower *t, ckd_tensor *x)
{
    if (!x)
        return NULL;
    int64_t B = x->shape[0], C = x->shape[1], S = x->shape[2] * x->shape[3];
    ckd_tensor *tok = ckd_transpose(c, ckd_reshape(c, x, 3, (const int64_t[]){B, C, S}), 1, 2); /* [B, S, C] */
    ckd_tensor *mean = ckd_reshape(c, ckd_mean(c, tok, 1), 3, (const int64_t[]){B, 1, C});
    ckd_tensor *parts[2] = {mean, tok};
    tok = ckd_add(c, ckd_concat(c, parts, 2, 1), t->ap_pos); /* [B, 1 + S, C] */
    /* Every token attends, as open_clip computes it; only the mean token's
     * output is kept (one row of S + 1: a small cost next to the convs). */
    ckd_tensor *q = ckd_linear(c, tok, t->ap_q_w, t->ap_q_b);
    ckd_tensor *k = ckd_linear(c, tok, t->ap_k_w, t->ap_k_b);
    ckd_tensor *v = ckd_linear(c, tok, t->ap_v_w, t->ap_v_b);
    ckd_tensor *o = ckd_attention(c, q, k, v, (int)t->cfg.heads, 0);
    ckd_tensor *pooled = ckd_reshape(c, ckd_slice(c, o, 1, 0, 1), 2, (const int64_t[]){B, C});
    return ckd_linear(c, pooled, t->ap_c_w, t->ap_c_b);
}

ckd_tensor *rn_tower_forward(rn_tower *t, ckd_ctx *c, ckd_tensor *px, ckd_tensor **features)
{
    const rn_cfg *cfg = &t->cfg;
    if (!px || ckd_ctx_failed(c))
        return NULL;
    if (px->ndim != 4 || px->shape[1] != cfg->channels || px->shape[2] != cfg->image_size ||
        px->shape[3] != cfg->image_size)
        return ckd_ctx_fail(c, "resnet: pixels [%lld, %lld, %lld, %lld], expected [B, %lld, %lld, %lld]",
                            (long long)px->shape[0], (long long)px->shape[1], (long long)px->shape[2],
                            (long long)px->shape[3], (long long)cfg->channels, (long long)cfg->image_size,
                            (long long)cfg->image_size);
    ckd_tensor *x;
    if (cfg->arch == RN_MODIFIED) {
        x = ckd_relu(c, bn(c, t, &t->stem_bn[0], conv(c, px, t->stem_conv[0], 2, 1, 1)));
        x = ckd_relu(c, bn(c, t, &t->stem_bn[1], conv(c, x, t->stem_conv[1], 1, 1, 1)));
        x = ckd_relu(c, bn(c, t, &t->stem_bn[2], conv(c, x, t->stem_conv[2], 1, 1, 1)));
        x = avgpool(c, x, 2);
    } else if (cfg->stem == RN_STEM_CIFAR) {
        x = ckd_relu(c, bn(c, t, &t->stem_bn[0], conv(c, px, t->stem_conv[0], 1, 1, 1)));
    } else {
        x = ckd_relu(c, bn(c, t, &t->stem_bn[0], conv(c, px, t->stem_conv[0], 2, 3, 1)));
        ckd_pool2d_params mp = {.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1};
        x = ckd_maxpool2d(c, x, &mp);
    }
    for (int i = 0; i < t->n_blocks; i++)
        x = block(c, t, &t->blocks[i], x);
    if (cfg->arch == RN_MODIFIED)
        return attnpool(c, t, x);
    ckd_tensor *pooled = ckd_global_avgpool2d(c, x);
    if (features)
        *features = pooled;
    return rn_tower_head(t, c, pooled);
}

ckd_tensor *rn_tower_head(rn_tower *t, ckd_ctx *c, ckd_tensor *features)
{
    return ckd_linear(c, features, t->fc_w, t->fc_b);
}
