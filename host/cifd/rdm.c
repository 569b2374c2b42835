/* CIFD's rate-distortion modules: the module, its stage-1 objective, and
 * stage 1 itself on an embedding matrix (clipkd/rdm.h).
 *
 * Layouts: x [N, D] teacher embeddings (rows), H [N, hidden], Y and Ŷ
 * [N, B], X̂ [N, D], logits [N, K]; weights [out, in] as torch.nn.Linear.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clipkd/ops.h"
#include "clipkd/optim.h"
#include "clipkd/rdm.h"

enum { ENC_W, ENC_B, BOT_W, BOT_B, DEC_W, DEC_B, ENT_M, ENT_B, ENT_F, HEAD_W, HEAD_B, N_SLOTS };
static const char *const slot_names[N_SLOTS] = {
    "enc.weight", "enc.bias",         "bottleneck.weight", "bottleneck.bias", "dec.weight", "dec.bias",
    "entropy.matrices", "entropy.biases", "entropy.factors", "head.weight", "head.bias"};

struct ckd_rdm {
    ckd_rdm_config cfg;
    ckd_tensor *p[N_SLOTS]; /* the head's two are NULL without classes */
    int n;                  /* parameters in use: N_SLOTS, or N_SLOTS − 2 */
};

/* torch.nn.Linear's initialisation: weight and bias uniform in ±1/√fan_in. */
static void linear_init(ckd_tensor *w, ckd_tensor *b, ckd_rng *r)
{
    double bound = 1.0 / sqrt((double)w->shape[1]);
    for (int64_t i = 0; i < w->n; i++)
        w->data[i] = (float)((2 * ckd_rng_uniform(r) - 1) * bound);
    for (int64_t i = 0; i < b->n; i++)
        b->data[i] = (float)((2 * ckd_rng_uniform(r) - 1) * bound);
}

ckd_rdm *ckd_rdm_new(const ckd_rdm_config *cfg, uint64_t seed, ckd_error *err)
{
    ckd_rdm_config c = *cfg;
    if (c.bottleneck == 0)
        c.bottleneck = c.hidden;
    if (c.in_dim <= 0 || c.hidden <= 0 || c.bottleneck <= 0 || c.n_classes < 0) {
        ckd_errorf(err, "rdm: widths must be positive (in_dim %lld, hidden %lld, bottleneck %lld, classes %lld)",
                   (long long)c.in_dim, (long long)c.hidden, (long long)c.bottleneck, (long long)c.n_classes);
        return NULL;
    }
    ckd_rdm *r = calloc(1, sizeof *r);
    if (!r) {
        ckd_errorf(err, "rdm: out of memory");
        return NULL;
    }
    r->cfg = c;
    const int64_t shapes[N_SLOTS][2] = {
        {c.hidden, c.in_dim},     {c.hidden, 0},          {c.bottleneck, c.hidden}, {c.bottleneck, 0},
        {c.in_dim, c.bottleneck}, {c.in_dim, 0},          {c.bottleneck, CKD_FD_MATRIX_SIZE},
        {c.bottleneck, CKD_FD_BIAS_SIZE}, {c.bottleneck, CKD_FD_FACTOR_SIZE}, {c.n_classes, c.in_dim},
        {c.n_classes, 0}};
    r->n = c.n_classes > 0 ? N_SLOTS : HEAD_W;
    for (int i = 0; i < r->n; i++)
        if (!(r->p[i] = ckd_param_new(shapes[i][1] ? 2 : 1, shapes[i], slot_names[i], err))) {
            ckd_rdm_free(r);
            return NULL;
        }
    ckd_rng rng;
    ckd_rng_seed(&rng, seed);
    linear_init(r->p[ENC_W], r->p[ENC_B], &rng);
    linear_init(r->p[BOT_W], r->p[BOT_B], &rng);
    linear_init(r->p[DEC_W], r->p[DEC_B], &rng);
    ckd_factorized_init(r->p[ENT_M], r->p[ENT_B], r->p[ENT_F], &rng);
    if (c.n_classes > 0)
        linear_init(r->p[HEAD_W], r->p[HEAD_B], &rng);
    return r;
}

void ckd_rdm_free(ckd_rdm *r)
{
    if (!r)
        return;
    for (int i = 0; i < N_SLOTS; i++)
        ckd_param_free(r->p[i]);
    free(r);
}

const ckd_rdm_config *ckd_rdm_config_of(const ckd_rdm *r) { return &r->cfg; }
int ckd_rdm_n_params(const ckd_rdm *r) { return r->n; }
ckd_tensor *ckd_rdm_param(const ckd_rdm *r, int i) { return i >= 0 && i < r->n ? r->p[i] : NULL; }

int ckd_rdm_forward(ckd_rdm *r, ckd_ctx *c, ckd_tensor *x, const float *noise, ckd_rdm_out *out)
{
    memset(out, 0, sizeof *out);
    if (!x || ckd_ctx_failed(c))
        return -1;
    if (x->ndim != 2 || x->shape[1] != r->cfg.in_dim) {
        char s[64];
        ckd_ctx_fail(c, "rdm: input %s must be [N, %lld]", ckd_shape_str(x, s, sizeof s), (long long)r->cfg.in_dim);
        return -1;
    }
    ckd_tensor *h = ckd_relu(c, ckd_linear(c, x, r->p[ENC_W], r->p[ENC_B]));
    ckd_tensor *y = ckd_linear(c, h, r->p[BOT_W], r->p[BOT_B]);
    if (noise) {
        /* Given noise: added as a constant, so the gradient passes as with drawn noise. */
        ckd_tensor *u = y ? ckd_tensor_from(c, 2, y->shape, noise) : NULL;
        out->y_hat = ckd_add(c, y, u);
    } else {
        out->y_hat = ckd_quantize(c, y, ckd_ctx_training(c) ? CKD_QUANT_NOISE : CKD_QUANT_ROUND);
    }
    out->x_hat = ckd_linear(c, out->y_hat, r->p[DEC_W], r->p[DEC_B]);
    if (r->cfg.out_relu)
        out->x_hat = ckd_relu(c, out->x_hat);
    out->nll = ckd_factorized_nll(c, out->y_hat, r->p[ENT_M], r->p[ENT_B], r->p[ENT_F]);
    if (r->cfg.n_classes > 0)
        out->logits = ckd_linear(c, out->x_hat, r->p[HEAD_W], r->p[HEAD_B]);
    return ckd_ctx_failed(c) ? -1 : 0;
}

ckd_tensor *ckd_rdm_loss(ckd_ctx *c, const ckd_rdm_out *o, ckd_tensor *x, double R, double *distortion,
                         double *rate)
{
    if (!o->x_hat || !o->nll || ckd_ctx_failed(c))
        return NULL;
    ckd_tensor *d = ckd_mse(c, o->x_hat, x);
    ckd_tensor *q = ckd_scale(c, ckd_sum_all(c, o->nll), (float)(1.0 / (double)x->shape[0]));
    if (!d || !q)
        return NULL;
    if (distortion)
        *distortion = d->data[0];
    if (rate)
        *rate = q->data[0];
    return ckd_add(c, ckd_scale(c, d, (float)R), q);
}

ckd_tensor *ckd_rdm_class_loss(ckd_ctx *c, const ckd_rdm_out *o, const int32_t *labels, ckd_tensor *t_logits,
                               double lambda_ce, double lambda_kl, double tau, double *ce, double *kl)
{
    if (!o->logits || ckd_ctx_failed(c))
        return ckd_ctx_failed(c) ? NULL : ckd_ctx_fail(c, "rdm: the module has no class head");
    float inv = (float)(1.0 / tau);
    ckd_tensor *a = ckd_cross_entropy(c, o->logits, labels);
    ckd_tensor *b = ckd_scale(c, ckd_kl_div(c, ckd_scale(c, t_logits, inv), ckd_scale(c, o->logits, inv)),
                              (float)(tau * tau));
    if (!a || !b)
        return NULL;
    if (ce)
        *ce = a->data[0];
    if (kl)
        *kl = b->data[0];
    return ckd_add(c, ckd_scale(c, a, (float)lambda_ce), ckd_scale(c, b, (float)lambda_kl));
}

/* ---- stage 1 ---------------------------------------------------------------------- */
void ckd_rdm_train_default_opts(ckd_rdm_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->R = 1.0;
    o->steps = 2000;
    o->batch = 256;
    o->lr = 1e-3;
    o->weight_decay = 0.0;
    o->seed = 0;
    o->lambda_ce = 1.0;
    o->lambda_kl = 1.0;
    o->tau = 2.0;
}

/* Rows idx[0..b) of X into a [b, D] arena tensor. */
static ckd_tensor *gather(ckd_ctx *c, const float *X, int64_t D, const int64_t *idx, int64_t b)
{
    ckd_tensor *t = ckd_tensor_new(c, 2, (int64_t[]){b, D});
    for (int64_t i = 0; t && i < b; i++)
        memcpy(t->data + i * D, X + idx[i] * D, (size_t)D * sizeof(float));
    return t;
}

int ckd_rdm_train(ckd_rdm *r, const float *X, int64_t n, const ckd_rdm_train_opts *o, ckd_error *err)
{
    if (n <= 0 || o->steps <= 0 || o->batch <= 0 || !(o->R >= 0) || !(o->lr > 0))
        return ckd_errorf(err, "rdm: training needs rows, steps, a batch, R >= 0 and lr > 0 (n %lld, steps %lld, "
                               "batch %lld, R %g, lr %g)",
                          (long long)n, (long long)o->steps, (long long)o->batch, o->R, o->lr);
    int classes = r->cfg.n_classes > 0;
    if (classes != (o->labels && o->teacher_logits))
        return ckd_errorf(err, classes ? "rdm: a module with a class head trains on labels and the teacher's class "
                                         "logits (the classifier form), and these are missing"
                                       : "rdm: labels and teacher logits given to a module without a class head");
    if (classes && !(o->tau > 0))
        return ckd_errorf(err, "rdm: tau must be positive, got %g", o->tau);
    int64_t D = r->cfg.in_dim, K = r->cfg.n_classes, b = o->batch < n ? o->batch : n;
    int32_t *lab = classes ? malloc((size_t)b * sizeof *lab) : NULL;
    double wd[N_SLOTS];
    for (int i = 0; i < r->n; i++)
        wd[i] = r->p[i]->ndim == 2 && strstr(r->p[i]->name, ".weight") ? o->weight_decay : 0.0;
    ckd_adamw_opts ao;
    ckd_adamw_default_opts(&ao);
    ao.lr = o->lr;
    int64_t *perm = malloc((size_t)n * sizeof *perm);
    ckd_adamw *opt = perm ? ckd_adamw_new(r->p, wd, r->n, &ao, err) : NULL;
    ckd_ctx *c = opt ? ckd_ctx_new(0, o->seed, err) : NULL;
    int rc = -1;
    if (!perm || (classes && !lab))
        ckd_errorf(err, "rdm: out of memory");
    if (!c || (classes && !lab))
        goto out;
    ckd_rng order;
    ckd_rng_seed(&order, o->seed ^ 0x5eedULL);
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    ckd_ctx_set_training(c, 1);
    /* Epochs of shuffled rows; the last partial batch of an epoch is
     * dropped, as a loader with drop_last does. */
    int64_t pos = n;
    for (int64_t step = 0; step < o->steps; step++) {
        if (pos + b > n) {
            ckd_rng_shuffle(&order, perm, n);
            pos = 0;
        }
        ckd_ctx_reset(c);
        ckd_adamw_set_lr(opt, o->lr * 0.5 * (1 + cos(3.14159265358979323846 * (double)step / (double)o->steps)));
        ckd_tensor *x = gather(c, X, D, perm + pos, b);
        ckd_rdm_out fo;
        ckd_rdm_forward(r, c, x, NULL, &fo);
        ckd_tensor *loss = ckd_rdm_loss(c, &fo, x, o->R, NULL, NULL);
        if (classes) {
            for (int64_t i = 0; i < b; i++)
                lab[i] = o->labels[perm[pos + i]];
            ckd_tensor *tl = gather(c, o->teacher_logits, K, perm + pos, b);
            loss = ckd_add(c, loss,
                           ckd_rdm_class_loss(c, &fo, lab, tl, o->lambda_ce, o->lambda_kl, o->tau, NULL, NULL));
        }
        pos += b;
        if (ckd_backward(c, loss, err)) {
            ckd_error_prefix(err, "rdm: step %lld", (long long)step);
            goto out;
        }
        if (!isfinite(loss->data[0])) {
            ckd_errorf(err, "rdm: the loss diverged at step %lld (%g): lower lr", (long long)step,
                       (double)loss->data[0]);
            goto out;
        }
        ckd_adamw_step(opt);
        for (int i = 0; i < r->n; i++)
            ckd_param_zero_grad(r->p[i]);
    }
    rc = 0;
out:
    ckd_ctx_free(c);
    ckd_adamw_free(opt);
    free(perm);
    free(lab);
    return rc;
}

int ckd_rdm_evaluate(ckd_rdm *r, const float *X, const int32_t *labels, int64_t n, ckd_rdm_report *rep,
                     ckd_error *err)
{
    memset(rep, 0, sizeof *rep);
    int64_t K = r->cfg.n_classes, right = 0;
    int scored = K > 0 && labels;
    ckd_ctx *c = ckd_ctx_new(0, 0, err);
    if (!c)
        return -1;
    ckd_ctx_set_grad(c, 0);
    int64_t D = r->cfg.in_dim, bs = 1024;
    double dist = 0, rate = 0;
    for (int64_t s = 0; s < n; s += bs) {
        int64_t b = n - s < bs ? n - s : bs;
        ckd_ctx_reset(c);
        ckd_tensor *x = ckd_tensor_from(c, 2, (int64_t[]){b, D}, X + s * D);
        ckd_rdm_out fo;
        double d = 0, q = 0;
        ckd_rdm_forward(r, c, x, NULL, &fo);
        if (!ckd_rdm_loss(c, &fo, x, 1.0, &d, &q)) {
            ckd_ctx_check(c, err);
            ckd_ctx_free(c);
            return -1;
        }
        dist += d * (double)b;
        rate += q * (double)b;
        for (int64_t i = 0; scored && i < b; i++) { /* top-1, the first maximum on ties */
            const float *z = fo.logits->data + i * K;
            int64_t best = 0;
            for (int64_t k = 1; k < K; k++)
                best = z[k] > z[best] ? k : best;
            right += best == labels[s + i];
        }
    }
    ckd_ctx_free(c);
    rep->n = n;
    rep->distortion = n ? dist / (double)n : 0;
    rep->rate = n ? rate / (double)n : 0;
    rep->accuracy = scored && n ? (double)right / (double)n : -1;
    return 0;
}
