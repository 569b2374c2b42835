/* models/resnet — a tower's parameters and buffers: creation in the
 * reference's state_dict order, initialisation, loading and saving.
 *
 * Initialisation for training from scratch follows each reference:
 *   torchvision: convs kaiming_normal_(fan_out, relu), N(0, √(2 / (Cout·kh·kw)));
 *     BatchNorm weight 1, bias 0; fc as nn.Linear, U(±1/√in) for weight and bias.
 *   open_clip ModifiedResNet: convs as nn.Conv2d, U(±1/√(Cin/g·kh·kw));
 *     BatchNorm weight 1, bias 0, except every Bottleneck's bn3 weight 0 (each
 *     residual branch starts as the identity); attention pool q, k, v, c_proj
 *     weights N(0, C^-½), biases as nn.Linear, position embedding N(0, C^-½).
 * Running statistics start at mean 0, variance 1, count 0 (PyTorch). */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resnet.h"

/* ---- the registry of tensors -------------------------------------------------- */

static ckd_tensor *add(rn_tower *t, int buffer, ckd_error *err, int ndim, const int64_t *shape, const char *fmt,
                       va_list ap)
{
    if (t->failed)
        return NULL;
    char name[256];
    int k = snprintf(name, sizeof name, "%s", t->prefix);
    vsnprintf(name + k, sizeof name - (size_t)k, fmt, ap);
    ckd_tensor ***arr = buffer ? &t->buffers : &t->params;
    int *n = buffer ? &t->n_buffers : &t->n_params, *cap = buffer ? &t->cap_buffers : &t->cap_params;
    if (*n == *cap) {
        int c2 = *cap ? 2 * *cap : 64;
        ckd_tensor **p = realloc(*arr, (size_t)c2 * sizeof *p);
        if (!p) {
            t->failed = 1;
            ckd_errorf(err, "%s: out of memory", name);
            return NULL;
        }
        *arr = p;
        *cap = c2;
    }
    ckd_tensor *x = ckd_param_new(ndim, shape, name, err);
    if (!x) {
        t->failed = 1;
        return NULL;
    }
    if (buffer)
        x->requires_grad = 0; /* state, not a parameter: never on the tape */
    (*arr)[(*n)++] = x;
    return x;
}

static ckd_tensor *param(rn_tower *t, ckd_error *err, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static ckd_tensor *param(rn_tower *t, ckd_error *err, int ndim, const int64_t *shape, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ckd_tensor *x = add(t, 0, err, ndim, shape, fmt, ap);
    va_end(ap);
    return x;
}

static ckd_tensor *buffer(rn_tower *t, ckd_error *err, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static ckd_tensor *buffer(rn_tower *t, ckd_error *err, int ndim, const int64_t *shape, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ckd_tensor *x = add(t, 1, err, ndim, shape, fmt, ap);
    va_end(ap);
    return x;
}

#define S1(a) ((const int64_t[]){(a)})
#define S2(a, b) ((const int64_t[]){(a), (b)})
#define S4(a, b, c, d) ((const int64_t[]){(a), (b), (c), (d)})

static ckd_tensor *conv(rn_tower *t, ckd_error *err, int64_t cout, int64_t cin, int64_t k, const char *name)
{
    return param(t, err, 4, S4(cout, cin, k, k), "%s.weight", name);
}

static void bn(rn_tower *t, ckd_error *err, rn_bn *b, int64_t C, const char *name)
{
    b->w = param(t, err, 1, S1(C), "%s.weight", name);
    b->b = param(t, err, 1, S1(C), "%s.bias", name);
    b->mean = buffer(t, err, 1, S1(C), "%s.running_mean", name);
    b->var = buffer(t, err, 1, S1(C), "%s.running_var", name);
    b->count = buffer(t, err, 0, NULL, "%s.num_batches_tracked", name);
}

/* One block under "layerS.I": the names and order of torchvision's and
 * open_clip's modules (conv1, bn1, conv2, bn2, [conv3, bn3], downsample). */
static void block(rn_tower *t, ckd_error *err, rn_block *b, int s, int i, int64_t inplanes, int64_t planes,
                  int stride)
{
    const rn_cfg *c = &t->cfg;
    char n[64];
    b->stride = stride;
    int64_t exp = c->block == RN_BOTTLENECK ? 4 : 1, out = planes * exp;
#define NAME(what) (snprintf(n, sizeof n, "layer%d.%d." what, s + 1, i), n)
    if (c->block == RN_BASIC) {
        b->conv1 = conv(t, err, planes, inplanes, 3, NAME("conv1"));
        bn(t, err, &b->bn1, planes, NAME("bn1"));
        b->conv2 = conv(t, err, planes, planes, 3, NAME("conv2"));
        bn(t, err, &b->bn2, planes, NAME("bn2"));
    } else {
        /* torchvision: conv2 width planes·wpg/64·groups; ModifiedResNet: planes */
        int64_t g = c->arch == RN_MODIFIED ? 1 : c->groups;
        int64_t w = c->arch == RN_MODIFIED ? planes : planes * c->width_per_group / 64 * g;
        b->conv1 = conv(t, err, w, inplanes, 1, NAME("conv1"));
        bn(t, err, &b->bn1, w, NAME("bn1"));
        b->conv2 = param(t, err, 4, S4(w, w / g, 3, 3), "%s.weight", NAME("conv2"));
        bn(t, err, &b->bn2, w, NAME("bn2"));
        b->conv3 = conv(t, err, out, w, 1, NAME("conv3"));
        bn(t, err, &b->bn3, out, NAME("bn3"));
    }
    if (stride != 1 || inplanes != out) {
        b->ds_conv = conv(t, err, out, inplanes, 1, NAME("downsample.0"));
        bn(t, err, &b->ds_bn, out, NAME("downsample.1"));
    }
#undef NAME
}

static void make(rn_tower *t, ckd_error *err)
{
    const rn_cfg *c = &t->cfg;
    int64_t W = c->width, exp = c->block == RN_BOTTLENECK ? 4 : 1;
    if (c->arch == RN_MODIFIED) {
        t->stem_conv[0] = conv(t, err, W / 2, c->channels, 3, "conv1");
        bn(t, err, &t->stem_bn[0], W / 2, "bn1");
        t->stem_conv[1] = conv(t, err, W / 2, W / 2, 3, "conv2");
        bn(t, err, &t->stem_bn[1], W / 2, "bn2");
        t->stem_conv[2] = conv(t, err, W, W / 2, 3, "conv3");
        bn(t, err, &t->stem_bn[2], W, "bn3");
    } else {
        t->stem_conv[0] = conv(t, err, W, c->channels, c->stem == RN_STEM_CIFAR ? 3 : 7, "conv1");
        bn(t, err, &t->stem_bn[0], W, "bn1");
    }
    int64_t inplanes = W;
    int nb = 0;
    for (int s = 0; s < c->n_stages; s++) {
        t->stage_start[s] = nb;
        int64_t planes = W << s;
        for (int64_t i = 0; i < c->layers[s]; i++, nb++) {
            block(t, err, &t->blocks[nb], s, (int)i, inplanes, planes, s > 0 && i == 0 ? 2 : 1);
            inplanes = planes * exp;
        }
    }
    t->stage_start[c->n_stages] = nb;
    t->feat_dim = inplanes;
    if (c->arch == RN_MODIFIED) {
        int64_t C = inplanes, hw = c->image_size / 32;
        t->feat_hw = hw;
        t->ap_pos = param(t, err, 2, S2(hw * hw + 1, C), "attnpool.positional_embedding");
        t->ap_k_w = param(t, err, 2, S2(C, C), "attnpool.k_proj.weight");
        t->ap_k_b = param(t, err, 1, S1(C), "attnpool.k_proj.bias");
        t->ap_q_w = param(t, err, 2, S2(C, C), "attnpool.q_proj.weight");
        t->ap_q_b = param(t, err, 1, S1(C), "attnpool.q_proj.bias");
        t->ap_v_w = param(t, err, 2, S2(C, C), "attnpool.v_proj.weight");
        t->ap_v_b = param(t, err, 1, S1(C), "attnpool.v_proj.bias");
        t->ap_c_w = param(t, err, 2, S2(c->out_dim, C), "attnpool.c_proj.weight");
        t->ap_c_b = param(t, err, 1, S1(c->out_dim), "attnpool.c_proj.bias");
    } else {
        t->fc_w = param(t, err, 2, S2(c->out_dim, inplanes), "fc.weight");
        t->fc_b = param(t, err, 1, S1(c->out_dim), "fc.bias");
    }
}

/* ---- initialisation --------------------------------------------------------------- */

static void normal(ckd_tensor *x, ckd_rng *rng, double std)
{
    for (int64_t i = 0; i < x->n; i++)
        x->data[i] = (float)(std * ckd_rng_normal(rng));
}

static void uniform(ckd_tensor *x, ckd_rng *rng, double bound)
{
    for (int64_t i = 0; i < x->n; i++)
        x->data[i] = (float)(bound * (2.0 * ckd_rng_uniform(rng) - 1.0));
}

static void fill(ckd_tensor *x, float v)
{
    for (int64_t i = 0; i < x->n; i++)
        x->data[i] = v;
}

static void init_conv(const rn_tower *t, ckd_tensor *w, ckd_rng *rng)
{
    int64_t k = w->shape[2] * w->shape[3];
    if (t->cfg.arch == RN_MODIFIED)
        uniform(w, rng, 1.0 / sqrt((double)(w->shape[1] * k)));
    else
        normal(w, rng, sqrt(2.0 / (double)(w->shape[0] * k)));
}

static void init_bn(rn_bn *b, float weight)
{
    fill(b->w, weight);
    fill(b->b, 0.0f);
    fill(b->mean, 0.0f);
    fill(b->var, 1.0f);
    fill(b->count, 0.0f);
}

static void init(rn_tower *t, ckd_rng *rng)
{
    int mod = t->cfg.arch == RN_MODIFIED;
    for (int i = 0; i < 3 && t->stem_conv[i]; i++) {
        init_conv(t, t->stem_conv[i], rng);
        init_bn(&t->stem_bn[i], 1.0f);
    }
    for (int i = 0; i < t->n_blocks; i++) {
        rn_block *b = &t->blocks[i];
        init_conv(t, b->conv1, rng), init_bn(&b->bn1, 1.0f);
        init_conv(t, b->conv2, rng), init_bn(&b->bn2, 1.0f);
        if (b->conv3)
            init_conv(t, b->conv3, rng), init_bn(&b->bn3, mod ? 0.0f : 1.0f);
        if (b->ds_conv)
            init_conv(t, b->ds_conv, rng), init_bn(&b->ds_bn, 1.0f);
    }
    if (mod) {
        double std = 1.0 / sqrt((double)t->feat_dim);
        normal(t->ap_pos, rng, std);
        ckd_tensor *w[4] = {t->ap_q_w, t->ap_k_w, t->ap_v_w, t->ap_c_w}, *b[4] = {t->ap_q_b, t->ap_k_b, t->ap_v_b,
                                                                                  t->ap_c_b};
        for (int i = 0; i < 4; i++) {
            normal(w[i], rng, std);
            uniform(b[i], rng, std);
        }
    } else {
        double bound = 1.0 / sqrt((double)t->feat_dim);
        uniform(t->fc_w, rng, bound);
        uniform(t->fc_b, rng, bound);
    }
}

rn_tower *rn_tower_new(const rn_cfg *cfg, const char *prefix, ckd_rng *init_rng, ckd_error *err)
{
    rn_tower *t = calloc(1, sizeof *t);
    if (!t) {
        ckd_errorf(err, "out of memory");
        return NULL;
    }
    t->cfg = *cfg;
    snprintf(t->prefix, sizeof t->prefix, "%s", prefix ? prefix : "");
    for (int s = 0; s < cfg->n_stages; s++)
        t->n_blocks += (int)cfg->layers[s];
    t->blocks = calloc((size_t)t->n_blocks, sizeof *t->blocks);
    if (!t->blocks) {
        ckd_errorf(err, "out of memory");
        rn_tower_free(t);
        return NULL;
    }
    make(t, err);
    if (t->failed) {
        rn_tower_free(t);
        return NULL;
    }
    if (init_rng)
        init(t, init_rng);
    else
        for (int i = 0; i < t->n_buffers; i++) /* loadable state: variances of 1, like PyTorch */
            if (strstr(t->buffers[i]->name, "running_var"))
                fill(t->buffers[i], 1.0f);
    return t;
}

void rn_tower_free(rn_tower *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n_params; i++)
        ckd_param_free(t->params[i]);
    for (int i = 0; i < t->n_buffers; i++)
        ckd_param_free(t->buffers[i]);
    free(t->params);
    free(t->buffers);
    free(t->blocks);
    free(t);
}

/* ---- loading and saving ----------------------------------------------------------- */

static int is_count(const ckd_tensor *x) { return x->ndim == 0 && strstr(x->name, "num_batches_tracked") != NULL; }

/* The file's tensor for x: its own name, the name without the tower's
 * prefix, or with "visual." in front (open_clip's standalone naming). */
static const ckd_st_tensor *source(const rn_tower *t, const ckd_safetensors *st, const ckd_tensor *x)
{
    const ckd_st_tensor *s = ckd_st_find(st, x->name);
    size_t np = strlen(t->prefix);
    if (!s && np && !strncmp(x->name, t->prefix, np))
        s = ckd_st_find(st, x->name + np);
    if (!s && !np) {
        char alt[300];
        snprintf(alt, sizeof alt, "visual.%s", x->name);
        s = ckd_st_find(st, alt);
    }
    return s;
}

static int check_one(const ckd_tensor *x, const ckd_st_tensor *s, const char *path, ckd_error *err)
{
    if (!s)
        return is_count(x) ? 0
                           : ckd_errorf(err, "%s: tensor %s is missing%s", path, x->name,
                                        strstr(x->name, "running_") ? " (a BatchNorm statistic: the checkpoint"
                                                                      " must hold the model's buffers)"
                                                                    : "");
    int64_t n = 1;
    int same = s->ndim == x->ndim;
    for (int d = 0; d < s->ndim; d++) {
        n *= s->shape[d];
        same = same && s->shape[d] == x->shape[d];
    }
    if (!same || n != x->n) {
        char want[96] = "[", got[96] = "[";
        for (int d = 0; d < x->ndim; d++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? ", " : "", (long long)x->shape[d]);
        for (int d = 0; d < s->ndim; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)s->shape[d]);
        return ckd_errorf(err, "%s: tensor %s has shape %s], expected %s] (check the configuration)", path, s->name,
                          got, want);
    }
    if (s->dtype == CKD_DT_BOOL || (!is_count(x) && s->dtype != CKD_DT_F32 && s->dtype != CKD_DT_F16 &&
                                    s->dtype != CKD_DT_BF16 && s->dtype != CKD_DT_F64))
        return ckd_errorf(err, "%s: tensor %s is %s, expected a floating-point type", path, s->name,
                          ckd_dtype_name(s->dtype));
    return 0;
}

static int read_one(ckd_tensor *x, const ckd_st_tensor *s, ckd_error *err)
{
    if (!s) {
        x->data[0] = 0.0f;
        return 0;
    }
    if (is_count(x) && s->dtype != CKD_DT_F32 && s->dtype != CKD_DT_F64 && s->dtype != CKD_DT_F16 &&
        s->dtype != CKD_DT_BF16) {
        int64_t v;
        if (ckd_st_to_i64(s, &v, 1, err))
            return -1;
        x->data[0] = (float)v;
        return 0;
    }
    return ckd_st_to_f32(s, x->data, (size_t)x->n, err);
}

int rn_tower_load(rn_tower *t, const ckd_safetensors *st, const char *path, ckd_error *err)
{
    /* check everything first: a failed load leaves the tower as it was */
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < 2; k++) {
            ckd_tensor **arr = k ? t->buffers : t->params;
            int n = k ? t->n_buffers : t->n_params;
            for (int i = 0; i < n; i++) {
                const ckd_st_tensor *s = source(t, st, arr[i]);
                if (pass == 0 ? check_one(arr[i], s, path, err) : read_one(arr[i], s, err))
                    return -1;
            }
        }
    return 0;
}

int rn_tower_add_buffers(rn_tower *t, ckd_st_writer *w, ckd_error *err)
{
    for (int i = 0; i < t->n_buffers; i++) {
        ckd_tensor *x = t->buffers[i];
        int rc;
        if (is_count(x)) {
            int64_t v = (int64_t)x->data[0];
            rc = ckd_st_writer_add_copy(w, x->name, CKD_DT_I64, 0, NULL, &v, err);
        } else {
            rc = ckd_st_writer_add(w, x->name, CKD_DT_F32, x->ndim, x->shape, x->data, err);
        }
        if (rc)
            return -1;
    }
    return 0;
}

int rn_tower_add_to_writer(rn_tower *t, ckd_st_writer *w, ckd_error *err)
{
    for (int i = 0; i < t->n_params; i++) {
        ckd_tensor *x = t->params[i];
        if (ckd_st_writer_add(w, x->name, CKD_DT_F32, x->ndim, x->shape, x->data, err))
            return -1;
    }
    return rn_tower_add_buffers(t, w, err);
}

int rn_tower_is_buffer(const rn_tower *t, const char *name)
{
    for (int i = 0; i < t->n_buffers; i++)
        if (!strcmp(t->buffers[i]->name, name))
            return 1;
    return 0;
}
