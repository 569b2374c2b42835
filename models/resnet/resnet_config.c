/* models/resnet — reading and checking a tower's configuration.
 *
 * Every impossible shape is refused here, before any parameter is created:
 * layers outside 1..4 stages, widths that groups or heads do not divide, and
 * an image that a stride or pool would shrink to nothing (or, for the
 * ModifiedResNet, to a grid other than the one its attention pool's position
 * embedding is sized for). */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "resnet.h"

static double num(const ckd_params *p, const char *base, const char *key, double fallback)
{
    char k[96];
    snprintf(k, sizeof k, "%s%s", base, key);
    return ckd_params_number(p, k, fallback);
}

static const char *str(const ckd_params *p, const char *base, const char *key, const char *fallback)
{
    char k[96];
    snprintf(k, sizeof k, "%s%s", base, key);
    return ckd_params_string(p, k, fallback);
}

/* PyTorch's output size of a window op: floor((n + 2·pad − k) / s) + 1. */
static int64_t out_size(int64_t n, int k, int s, int pad)
{
    int64_t v = n + 2 * pad - k;
    return v < 0 ? 0 : v / s + 1;
}

/* The side of the final feature map, or 0 when some op would get no pixels
 * (what names the key: the stage that first runs out). */
static int64_t final_side(const rn_cfg *c, const char *base, ckd_error *err)
{
    int64_t s = c->image_size;
    if (c->arch == RN_MODIFIED) {
        s = out_size(s, 3, 2, 1); /* conv1 stride 2; conv2, conv3 keep the size */
        s = out_size(s, 2, 2, 0); /* 2x2 average pool */
    } else if (c->stem == RN_STEM_IMAGENET) {
        s = out_size(s, 7, 2, 3);
        s = out_size(s, 3, 2, 1); /* max pool */
    }
    if (s < 1) {
        ckd_errorf(err, "%simage_size %lld leaves no pixels after the stem", base, (long long)c->image_size);
        return 0;
    }
    for (int st = 1; st < c->n_stages; st++) {
        /* torchvision: a 3x3 stride-2 pad-1 conv (and the 1x1 stride-2
         * downsample, same size); ModifiedResNet: a 2x2 average pool */
        s = c->arch == RN_MODIFIED ? out_size(s, 2, 2, 0) : out_size(s, 3, 2, 1);
        if (s < 1) {
            ckd_errorf(err, "%simage_size %lld leaves no pixels at stage %d of %slayers", base,
                       (long long)c->image_size, st + 1, base);
            return 0;
        }
    }
    return s;
}

int rn_cfg_read(const ckd_params *p, const char *base, rn_cfg *c, ckd_error *err)
{
    memset(c, 0, sizeof *c);
    c->arch = !strcmp(str(p, base, "arch", "torchvision"), "modified") ? RN_MODIFIED : RN_TORCHVISION;
    c->block = c->arch == RN_MODIFIED || !strcmp(str(p, base, "block", "basic"), "bottleneck") ? RN_BOTTLENECK
                                                                                                : RN_BASIC;
    c->stem = !strcmp(str(p, base, "stem", "imagenet"), "cifar") ? RN_STEM_CIFAR : RN_STEM_IMAGENET;
    c->width = (int64_t)num(p, base, "width", 64);
    c->groups = (int64_t)num(p, base, "groups", 1);
    c->width_per_group = (int64_t)num(p, base, "width_per_group", 64);
    c->image_size = (int64_t)num(p, base, "image_size", 224);
    c->channels = (int64_t)num(p, base, "channels", 3);
    c->bn_eps = (float)num(p, base, "bn_eps", 1e-5);
    c->bn_momentum = (float)num(p, base, "bn_momentum", 0.1);
    char key[96];
    for (c->n_stages = 0; c->n_stages <= RN_MAX_STAGES; c->n_stages++) {
        snprintf(key, sizeof key, "%slayers.%d", base, c->n_stages);
        if (!ckd_params_has(p, key))
            break;
        if (c->n_stages < RN_MAX_STAGES)
            c->layers[c->n_stages] = (int64_t)ckd_params_number(p, key, 0);
    }
    if (c->n_stages < 1 || c->n_stages > RN_MAX_STAGES)
        return ckd_errorf(err, "%slayers: %d stages, expected 1 to %d (blocks per stage, e.g. [2, 2, 2, 2])", base,
                          c->n_stages, RN_MAX_STAGES);
    if (c->arch == RN_MODIFIED && c->n_stages != RN_MAX_STAGES)
        return ckd_errorf(err, "%slayers: a ModifiedResNet has 4 stages, not %d", base, c->n_stages);
    if (c->width < 1 || c->image_size < 1 || c->channels < 1)
        return ckd_errorf(err, "%swidth %lld, image_size %lld, channels %lld: expected positive sizes", base,
                          (long long)c->width, (long long)c->image_size, (long long)c->channels);
    if (c->arch == RN_MODIFIED && c->width % 2)
        return ckd_errorf(err, "%swidth %lld: a ModifiedResNet's stem halves the width, so it must be even", base,
                          (long long)c->width);
    if (c->block == RN_BASIC && (c->groups != 1 || c->width_per_group != 64))
        return ckd_errorf(err, "%sgroups %lld, width_per_group %lld: the basic block supports only 1 and 64"
                          " (as torchvision); use \"block\": \"bottleneck\"", base, (long long)c->groups,
                          (long long)c->width_per_group);
    if (c->arch == RN_TORCHVISION && c->block == RN_BOTTLENECK) {
        /* conv2's width for the widest stage; every stage's is a multiple of groups */
        int64_t w = c->width * c->width_per_group / 64;
        if (w < 1)
            return ckd_errorf(err, "%swidth %lld with width_per_group %lld gives no channels", base,
                              (long long)c->width, (long long)c->width_per_group);
    }
    int64_t side = final_side(c, base, err);
    if (side < 1)
        return -1;
    int64_t feat = c->width << (c->n_stages - 1);
    if (c->block == RN_BOTTLENECK)
        feat *= 4;
    if (c->arch == RN_MODIFIED) {
        if (side != c->image_size / 32)
            return ckd_errorf(err, "%simage_size %lld: the ModifiedResNet ends on a %lldx%lld grid, but its"
                              " attention pool is sized for image_size / 32 = %lld; use a multiple of 32", base,
                              (long long)c->image_size, (long long)side, (long long)side,
                              (long long)(c->image_size / 32));
        snprintf(key, sizeof key, "%sheads", base);
        c->heads = ckd_params_has(p, key) ? (int64_t)ckd_params_number(p, key, 1) : feat / 64;
        if (c->heads < 1 || feat % c->heads)
            return ckd_errorf(err, "%sheads: %lld heads do not divide the attention pool's width %lld (width·32)",
                              base, (long long)c->heads, (long long)feat);
    }
    return 0;
}
