/* losses/common.h — the pieces every loss plugin shares.
 *
 * Each plugin is one .c file built into its own .so; this header is compiled
 * into each of them. Everything here is static inline so that a plugin keeps
 * exporting exactly one symbol (ckd_plugin_entry) and unused helpers cost
 * nothing.
 *
 * The math follows reference/methods.md (notation: n(x) = x / ‖x‖₂ row-wise,
 * CE(L) = mean row cross-entropy of an N×N matrix against its diagonal,
 * KL(T ‖ S; τ) = τ² · mean_i KL(softmax(T_i/τ) ‖ softmax(S_i/τ))).
 */
#ifndef CKD_LOSSES_COMMON_H
#define CKD_LOSSES_COMMON_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipkd/plugin.h"

/* ln(1/0.07): CLIP's initial logit scale, also the start of every learned
 * scale a loss owns (ICL's c, AFD's a). */
#define CKDL_SCALE_INIT 2.659260036932778
/* torch.nn.functional.normalize's eps, so that n(x) matches the reference. */
#define CKDL_NORM_EPS 1e-12f
#define CKDL_MAX_PARAMS 12

/* ---- state ---------------------------------------------------------------------
 * One state layout for all plugins: the owned parameters in the order they are
 * reported, plus the few options a plugin reads at create time. */
typedef struct ckdl_state {
    const char *plugin;                 /* for messages */
    ckd_tensor *params[CKDL_MAX_PARAMS];
    int n_params;
    double tau;   /* temperature, where the loss has one */
    int option;   /* index of the plugin's enum option, where it has one */
    double weight[4]; /* a plugin's loss weights, read at create time (cifd: λ_CL, λ_I) */
    int64_t s_dim, t_dim;
    float *fixed;      /* a constant array a plugin keeps (embed_kd's random centroids), or NULL */
    int64_t n_classes;
} ckdl_state;

static inline ckdl_state *ckdl_state_new(const char *plugin, const ckd_loss_dims *dims, ckd_error *err)
{
    ckdl_state *s = calloc(1, sizeof *s);
    if (!s) {
        ckd_errorf(err, "%s: out of memory", plugin);
        return NULL;
    }
    s->plugin = plugin;
    s->tau = 1.0;
    s->s_dim = dims ? dims->s_dim : 0;
    s->t_dim = dims ? dims->t_dim : 0;
    s->n_classes = dims ? dims->n_classes : 0;
    return s;
}

static inline void ckdl_destroy(void *state)
{
    ckdl_state *s = state;
    if (!s)
        return;
    for (int i = 0; i < s->n_params; i++)
        ckd_param_free(s->params[i]);
    free(s->fixed);
    free(s);
}

static inline int ckdl_n_params(void *state) { return ((ckdl_state *)state)->n_params; }

static inline ckd_tensor *ckdl_param(void *state, int i)
{
    ckdl_state *s = state;
    return i >= 0 && i < s->n_params ? s->params[i] : NULL;
}

/* Ends a failed create(): frees what it made, leaves *out NULL, returns -1. */
static inline int ckdl_fail_create(ckdl_state *s, void **out)
{
    ckdl_destroy(s);
    *out = NULL;
    return -1;
}

/* ---- creation-time checks ------------------------------------------------------- */
static inline int ckdl_need_dims(const ckdl_state *s, int need_teacher, ckd_error *err)
{
    if (s->s_dim <= 0)
        return ckd_errorf(err, "%s: the student embedding width must be positive, got %lld", s->plugin,
                          (long long)s->s_dim);
    if (need_teacher && s->t_dim <= 0)
        return ckd_errorf(err, "%s: needs teacher embeddings (the teacher width is %lld)", s->plugin,
                          (long long)s->t_dim);
    return 0;
}

/* A positive, finite temperature `tau` (the schema already enforces the
 * range; this guards callers that skip it). */
static inline int ckdl_read_tau(ckdl_state *s, const ckd_params *params, double fallback, ckd_error *err)
{
    double tau = ckd_params_number(params, "tau", fallback);
    if (!(tau > 0) || !isfinite(tau))
        return ckd_errorf(err, "%s: parameter tau must be a positive number, got %g", s->plugin, tau);
    s->tau = tau;
    return 0;
}

/* A string option restricted to `choices` (n of them); stores its index in
 * s->option. An unknown value is an error that lists the choices. */
static inline int ckdl_read_enum(ckdl_state *s, const ckd_params *params, const char *key,
                                 const char *const *choices, int n, ckd_error *err)
{
    const char *v = ckd_params_string(params, key, choices[0]);
    for (int i = 0; i < n; i++)
        if (strcmp(v, choices[i]) == 0) {
            s->option = i;
            return 0;
        }
    char list[256] = "";
    for (int i = 0; i < n; i++) {
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s\"%s\"", i ? ", " : "", choices[i]);
    }
    return ckd_errorf(err, "%s: parameter %s: \"%s\" is not one of %s", s->plugin, key, v, list);
}

/* ---- owned parameters ------------------------------------------------------------ */
static inline ckd_tensor *ckdl_add_param(ckdl_state *s, int ndim, const int64_t *shape, const char *name,
                                         ckd_error *err)
{
    if (s->n_params >= CKDL_MAX_PARAMS) {
        ckd_errorf(err, "%s: too many parameters (at most %d)", s->plugin, CKDL_MAX_PARAMS);
        return NULL;
    }
    ckd_tensor *p = ckd_param_new(ndim, shape, name, err);
    if (p)
        s->params[s->n_params++] = p;
    return p;
}

static inline void ckdl_fill_uniform(ckd_tensor *p, double bound, ckd_rng *rng)
{
    for (int64_t i = 0; i < p->n; i++)
        p->data[i] = (float)((2.0 * ckd_rng_uniform(rng) - 1.0) * bound);
}

/* "<prefix>.<suffix>" (PyTorch's naming of a layer's tensors), or just
 * "<prefix>" when suffix is NULL. */
static inline const char *ckdl_name(char *buf, size_t cap, const char *prefix, const char *suffix)
{
    snprintf(buf, cap, "%s%s%s", prefix, suffix ? "." : "", suffix ? suffix : "");
    return buf;
}

/* The owned parameter `<prefix>.<suffix>` (or `<prefix>`), or NULL. */
static inline ckd_tensor *ckdl_find(const ckdl_state *s, const char *prefix, const char *suffix)
{
    char name[64];
    ckdl_name(name, sizeof name, prefix, suffix);
    for (int i = 0; i < s->n_params; i++)
        if (strcmp(s->params[i]->name, name) == 0)
            return s->params[i];
    return NULL;
}

/* A map owned by the loss, stored as `<prefix>.weight` [rows, cols] (and
 * `<prefix>.bias` [rows] when with_bias), initialised like PyTorch's
 * nn.Linear: uniform in ±1/√fan_in. Returns 0 or -1. */
static inline int ckdl_add_matrix(ckdl_state *s, const char *prefix, int64_t rows, int64_t cols, int64_t fan_in,
                                  int with_bias, ckd_rng *rng, ckd_error *err)
{
    char name[64];
    double bound = 1.0 / sqrt((double)fan_in);
    ckdl_name(name, sizeof name, prefix, "weight");
    ckd_tensor *w = ckdl_add_param(s, 2, (int64_t[]){rows, cols}, name, err);
    if (!w)
        return -1;
    ckdl_fill_uniform(w, bound, rng);
    if (!with_bias)
        return 0;
    ckdl_name(name, sizeof name, prefix, "bias");
    ckd_tensor *b = ckdl_add_param(s, 1, (int64_t[]){rows}, name, err);
    if (!b)
        return -1;
    ckdl_fill_uniform(b, bound, rng);
    return 0;
}

/* nn.Linear(in → out) with bias: weight [out, in], bias [out]. */
static inline int ckdl_add_linear(ckdl_state *s, const char *prefix, int64_t in, int64_t out, ckd_rng *rng,
                                  ckd_error *err)
{
    return ckdl_add_matrix(s, prefix, out, in, in, 1, rng, err);
}

/* A learned scalar scale initialised to ln(1/0.07). */
static inline int ckdl_add_scale(ckdl_state *s, const char *name, ckd_error *err)
{
    ckd_tensor *p = ckdl_add_param(s, 0, NULL, name, err);
    if (!p)
        return -1;
    p->data[0] = (float)CKDL_SCALE_INIT;
    return 0;
}

/* The student→teacher projections P_img, P_txt (`proj_img.*`, `proj_txt.*`),
 * created only when the widths differ; with equal widths P is the identity
 * and nothing is owned. `txt` says whether the text projection is needed. */
static inline int ckdl_add_projections(ckdl_state *s, int txt, ckd_rng *rng, ckd_error *err)
{
    if (s->s_dim == s->t_dim)
        return 0;
    if (ckdl_add_linear(s, "proj_img", s->s_dim, s->t_dim, rng, err))
        return -1;
    return txt ? ckdl_add_linear(s, "proj_txt", s->s_dim, s->t_dim, rng, err) : 0;
}

/* CIFD's bottleneck density r over the student's s_dim channels: three
 * owned tensors `<prefix>.matrices|biases|factors` (ckd_factorized_nll's
 * layout), initialised as CompressAI's. */
static inline int ckdl_add_density(ckdl_state *s, const char *prefix, ckd_rng *rng, ckd_error *err)
{
    char name[64];
    ckd_tensor *m = ckdl_add_param(s, 2, (int64_t[]){s->s_dim, CKD_FD_MATRIX_SIZE},
                                   ckdl_name(name, sizeof name, prefix, "matrices"), err);
    ckd_tensor *b = m ? ckdl_add_param(s, 2, (int64_t[]){s->s_dim, CKD_FD_BIAS_SIZE},
                                       ckdl_name(name, sizeof name, prefix, "biases"), err)
                      : NULL;
    ckd_tensor *f = b ? ckdl_add_param(s, 2, (int64_t[]){s->s_dim, CKD_FD_FACTOR_SIZE},
                                       ckdl_name(name, sizeof name, prefix, "factors"), err)
                      : NULL;
    if (!f)
        return -1;
    ckd_factorized_init(m, b, f, rng);
    return 0;
}

/* −log r(w) summed over channels, batch-mean (nats per sample), times weight. */
static inline ckd_tensor *ckdl_rate(ckd_ctx *c, const ckdl_state *s, const char *prefix, ckd_tensor *w,
                                    double weight)
{
    ckd_tensor *nll = ckd_factorized_nll(c, w, ckdl_find(s, prefix, "matrices"), ckdl_find(s, prefix, "biases"),
                                         ckdl_find(s, prefix, "factors"));
    return w ? ckd_scale(c, ckd_sum_all(c, nll), (float)(weight / (double)w->shape[0])) : NULL;
}

/* ---- forward helpers --------------------------------------------------------------
 * All of them take and return NULL-propagating tensors (the context keeps the
 * first error), so a loss reads as its formula. */

/* The logit scales are always in a batch, so they have no CKD_NEED_* bit;
 * these two bits (above every CKD_NEED_*) let ckdl_check_batch check them too. */
#define CKDL_USE_S_SCALE (1u << 30)
#define CKDL_USE_T_SCALE (1u << 31)

/* Fails the forward pass (returns 0) when the batch lacks a field the loss
 * reads: `needs` is the plugin's CKD_NEED_* bits plus CKDL_USE_*. The host
 * checks `needs` before any compute; this keeps a bad caller from crashing a
 * plugin. */
static inline int ckdl_check_batch(ckd_ctx *c, const ckdl_state *s, const ckd_loss_batch *b, uint32_t needs)
{
    const struct {
        uint32_t bit;
        const void *field;
        const char *name;
    } f[] = {
        {CKD_NEED_S_IMG, b->s_img, "s_img"},
        {CKD_NEED_S_TXT, b->s_txt, "s_txt"},
        {CKD_NEED_T_IMG, b->t_img, "t_img"},
        {CKD_NEED_T_TXT, b->t_txt, "t_txt"},
        {CKD_NEED_LABELS, b->labels, "labels"},
        {CKD_NEED_CLASS_TXT, b->class_txt, "class_txt"},
        {CKD_NEED_S_LOGITS, b->s_logits, "s_logits"},
        {CKD_NEED_T_LOGITS, b->t_logits, "t_logits"},
        {CKD_NEED_CENTROIDS, b->centroids, "centroids"},
        {CKD_NEED_S_IMG_MASKED, b->s_img_masked, "s_img_masked"},
        /* a field of ABI minor 3: read only when the host's batch has it */
        {CKD_NEED_S_IMG_NOISY, CKD_LOSS_BATCH_HAS(b, s_img_noisy) ? b->s_img_noisy : NULL, "s_img_noisy"},
        {CKDL_USE_S_SCALE, b->s_logit_scale, "s_logit_scale"},
        {CKDL_USE_T_SCALE, b->t_logit_scale, "t_logit_scale"},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if ((needs & f[i].bit) && !f[i].field) {
            ckd_ctx_fail(c, "%s: the batch has no %s", s->plugin, f[i].name);
            return 0;
        }
    return 1;
}

static inline ckd_tensor *ckdl_norm(ckd_ctx *c, ckd_tensor *x) { return ckd_l2_normalize(c, x, CKDL_NORM_EPS); }

/* n(s): the host's normalised copy when it made one (it is shared by every
 * loss of the recipe), else normalised here. */
static inline ckd_tensor *ckdl_student_n(ckd_ctx *c, ckd_tensor *raw, ckd_tensor *normed)
{
    return normed ? normed : ckdl_norm(c, raw);
}

/* The owned layer `<prefix>.weight` / `<prefix>.bias` applied to x. */
static inline ckd_tensor *ckdl_apply_linear(ckd_ctx *c, const ckdl_state *s, const char *prefix, ckd_tensor *x)
{
    ckd_tensor *w = ckdl_find(s, prefix, "weight");
    if (!w)
        return ckd_ctx_fail(c, "%s: has no parameter %s.weight", s->plugin, prefix);
    return ckd_linear(c, x, w, ckdl_find(s, prefix, "bias"));
}

/* s̃ = n(P s + b) with the loss's projection `<prefix>.*`, or n(s) when P is
 * the identity (equal widths: no such parameter). */
static inline ckd_tensor *ckdl_project(ckd_ctx *c, const ckdl_state *s, const char *prefix, ckd_tensor *raw,
                                       ckd_tensor *normed)
{
    if (!ckdl_find(s, prefix, "weight"))
        return ckdl_student_n(c, raw, normed);
    return ckdl_norm(c, ckdl_apply_linear(c, s, prefix, raw));
}

/* scale · a bᵀ for a [N, D], b [M, D] and a scalar tensor scale (NULL = 1). */
static inline ckd_tensor *ckdl_sim(ckd_ctx *c, ckd_tensor *a, ckd_tensor *b, ckd_tensor *scale)
{
    ckd_tensor *ab = ckd_matmul_ex(c, a, 0, b, 1);
    return scale ? ckd_mul(c, ab, scale) : ab;
}

/* 0, 1, …, n−1 in the arena: the targets of a matrix whose positives are on
 * its diagonal. */
static inline const int32_t *ckdl_diag_targets(ckd_ctx *c, int64_t n)
{
    int32_t *t = ckd_scratch(c, (size_t)(n > 0 ? n : 1) * sizeof(int32_t), "diagonal targets");
    if (t)
        for (int64_t i = 0; i < n; i++)
            t[i] = (int32_t)i;
    return t;
}

/* CE(L): mean cross-entropy of the rows of L [N, N] against the diagonal. */
static inline ckd_tensor *ckdl_ce_diag(ckd_ctx *c, ckd_tensor *logits)
{
    if (!logits)
        return NULL;
    const int32_t *t = ckdl_diag_targets(c, logits->shape[0]);
    return t ? ckd_cross_entropy(c, logits, t) : NULL;
}

/* ½[CE(L) + CE(Lᵀ)]: the symmetric CLIP loss over a similarity matrix. */
static inline ckd_tensor *ckdl_clip_ce(ckd_ctx *c, ckd_tensor *logits)
{
    ckd_tensor *sum = ckd_add(c, ckdl_ce_diag(c, logits), ckdl_ce_diag(c, ckd_transpose(c, logits, 0, 1)));
    return ckd_scale(c, sum, 0.5f);
}

/* KL(T ‖ S; τ) = τ² · mean_i KL(softmax(T_i/τ) ‖ softmax(S_i/τ)); the τ²
 * keeps gradient magnitudes comparable across temperatures (Hinton et al.). */
static inline ckd_tensor *ckdl_kl_tau(ckd_ctx *c, ckd_tensor *t_logits, ckd_tensor *s_logits, double tau)
{
    if (tau == 1.0)
        return ckd_kl_div(c, t_logits, s_logits);
    float inv = (float)(1.0 / tau);
    ckd_tensor *kl = ckd_kl_div(c, ckd_scale(c, t_logits, inv), ckd_scale(c, s_logits, inv));
    return ckd_scale(c, kl, (float)(tau * tau));
}

/* ---- the descriptor ----------------------------------------------------------------
 * Every plugin shares destroy / n_params / param; it provides create, forward,
 * name, summary, schema and what it reads (CKD_NEED_* | CKDL_USE_*: the same
 * constant its forward passes to ckdl_check_batch). */
#define CKDL_LOSS_PLUGIN(NAME, SUMMARY, SCHEMA, NEEDS, CREATE, FORWARD)                                   \
    static const ckd_loss_vtable ckdl_vtable = {                                                          \
        .struct_size = sizeof(ckd_loss_vtable),                                                           \
        .needs = (NEEDS) & ~(CKDL_USE_S_SCALE | CKDL_USE_T_SCALE),                                        \
        .create = (CREATE),                                                                               \
        .destroy = ckdl_destroy,                                                                          \
        .n_params = ckdl_n_params,                                                                        \
        .param = ckdl_param,                                                                              \
        .forward = (FORWARD),                                                                             \
    };                                                                                                    \
    static const ckd_plugin_descriptor ckdl_descriptor = {                                                \
        .abi_major = CKD_PLUGIN_ABI_MAJOR,                                                                \
        .struct_size = sizeof(ckd_plugin_descriptor),                                                     \
        .kind = CKD_PLUGIN_LOSS,                                                                          \
        .name = (NAME),                                                                                   \
        .version = "1.0",                                                                                 \
        .summary = (SUMMARY),                                                                             \
        .params_schema = (SCHEMA),                                                                        \
        .loss = &ckdl_vtable,                                                                             \
        .model = NULL,                                                                                    \
    };                                                                                                    \
    CKD_PLUGIN_DEFINE(ckdl_descriptor)

/* Schema fragments. */
#define CKDL_SCHEMA_NONE "{\"type\":\"object\",\"properties\":{}}"
#define CKDL_SCHEMA_TAU_PROP(DEFAULT, WHAT)                                                                \
    "\"tau\":{\"type\":\"number\",\"default\":" #DEFAULT ",\"minimum\":0.01,\"maximum\":100,"             \
    "\"description\":\"" WHAT "\"}"

#endif
