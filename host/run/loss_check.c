/* `clipkd loss-eval` and `clipkd gradcheck` as library functions: a loss
 * evaluated on recorded or random inputs, outside any model. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipkd/loss.h"
#include "clipkd/safetensors.h"

/* The batch fields that are tensors, with their recorded names. Student
 * fields receive gradients; teacher fields never do. */
enum {
    S_IMG, S_TXT, T_IMG, T_TXT, S_SCALE, T_SCALE, CLASS_TXT, S_LOGITS, T_LOGITS, CENTROIDS, S_IMG_MASKED,
    S_IMG_NOISY,
    A_IMG, A_TXT, A_WEIGHT, A_LOGITS, /* teaching assistants: [A, N, Dt], [A, N, Dt], [A], [A, N, K] */
    N_SLOTS
};
static const struct {
    const char *name;
    int student;
    uint32_t need; /* CKD_NEED_* bit, 0 if none */
} slots[N_SLOTS] = {
    {"s_img", 1, CKD_NEED_S_IMG},         {"s_txt", 1, CKD_NEED_S_TXT},
    {"t_img", 0, CKD_NEED_T_IMG},         {"t_txt", 0, CKD_NEED_T_TXT},
    {"student_logit_scale", 1, 0},        {"teacher_logit_scale", 0, 0},
    {"class_txt", 0, CKD_NEED_CLASS_TXT}, {"s_logits", 1, CKD_NEED_S_LOGITS},
    {"t_logits", 0, CKD_NEED_T_LOGITS},   {"centroids", 0, CKD_NEED_CENTROIDS},
    {"s_img_masked", 1, CKD_NEED_S_IMG_MASKED}, {"s_img_noisy", 1, CKD_NEED_S_IMG_NOISY},
    {"a_img", 0, 0},                      {"a_txt", 0, 0},
    {"a_weight", 0, 0},                   {"a_logits", 0, 0},
};

typedef struct probe {
    ckd_loss *loss;
    ckd_tensor *t[N_SLOTS]; /* persistent tensors, NULL when absent */
    int32_t *labels;
    int64_t n;
} probe;

static void probe_free(probe *p)
{
    ckd_loss_free(p->loss);
    for (int i = 0; i < N_SLOTS; i++)
        ckd_param_free(p->t[i]);
    free(p->labels);
}

/* The scalar the checks differentiate: the loss on a batch assembled from the probe. */
static ckd_tensor *probe_loss(ckd_ctx *c, void *user)
{
    probe *p = user;
    ckd_loss_batch b = {.struct_size = sizeof b, .n = p->n};
    b.s_img = p->t[S_IMG];
    b.s_txt = p->t[S_TXT];
    b.s_img_n = b.s_img ? ckd_l2_normalize(c, b.s_img, 1e-12f) : NULL;
    b.s_txt_n = b.s_txt ? ckd_l2_normalize(c, b.s_txt, 1e-12f) : NULL;
    b.t_img = p->t[T_IMG];
    b.t_txt = p->t[T_TXT];
    b.s_logit_scale = p->t[S_SCALE];
    b.t_logit_scale = p->t[T_SCALE];
    b.labels = p->labels;
    b.class_txt = p->t[CLASS_TXT];
    b.s_logits = p->t[S_LOGITS];
    b.t_logits = p->t[T_LOGITS];
    b.centroids = p->t[CENTROIDS];
    b.s_img_masked = p->t[S_IMG_MASKED];
    b.s_img_noisy = p->t[S_IMG_NOISY];
    if (p->t[A_WEIGHT]) {
        b.n_assistants = p->t[A_WEIGHT]->n;
        b.a_weight = p->t[A_WEIGHT]->data;
        b.a_img = p->t[A_IMG];
        b.a_txt = p->t[A_TXT];
        b.a_logits = p->t[A_LOGITS];
    }
    return ckd_loss_forward(p->loss, c, &b);
}

static ckd_tensor *slot_tensor(int slot, int ndim, const int64_t *shape, ckd_error *err)
{
    ckd_tensor *t = ckd_param_new(ndim, shape, slots[slot].name, err);
    if (t)
        t->requires_grad = slots[slot].student;
    return t;
}

static void dims_from(const probe *p, ckd_loss_dims *d)
{
    const ckd_tensor *s = p->t[S_IMG]          ? p->t[S_IMG]
                          : p->t[S_TXT]        ? p->t[S_TXT]
                          : p->t[S_IMG_MASKED] ? p->t[S_IMG_MASKED]
                                               : p->t[S_IMG_NOISY];
    const ckd_tensor *t = p->t[T_IMG] ? p->t[T_IMG] : p->t[T_TXT] ? p->t[T_TXT] : p->t[CLASS_TXT] ? p->t[CLASS_TXT] : p->t[CENTROIDS];
    const ckd_tensor *k = p->t[S_LOGITS] ? p->t[S_LOGITS] : p->t[T_LOGITS];
    d->s_dim = s && s->ndim == 2 ? s->shape[1] : 0;
    d->t_dim = t && t->ndim == 2 ? t->shape[1] : 0;
    d->n_classes = k && k->ndim == 2 ? k->shape[1]
                 : p->t[CLASS_TXT] ? p->t[CLASS_TXT]->shape[0]
                 : p->t[CENTROIDS] ? p->t[CENTROIDS]->shape[0] : 0;
}

/* ---- loss-eval ---------------------------------------------------------------- */
static ckd_tensor *read_tensor(const ckd_safetensors *st, const char *file, const ckd_st_tensor *src, int slot,
                               ckd_error *err)
{
    if (src->ndim > CKD_MAX_DIMS) {
        ckd_errorf(err, "%s: %s has %d dimensions, at most %d supported", file, src->name, src->ndim, CKD_MAX_DIMS);
        return NULL;
    }
    (void)st;
    ckd_tensor *t = slot >= 0 ? slot_tensor(slot, src->ndim, src->shape, err)
                              : ckd_param_new(src->ndim, src->shape, src->name, err);
    if (t && ckd_st_to_f32(src, t->data, (size_t)t->n, err)) {
        ckd_error_prefix(err, "%s", file);
        ckd_param_free(t);
        return NULL;
    }
    return t;
}

static int load_inputs(probe *p, const ckd_safetensors *st, const char *file, ckd_error *err)
{
    char key[256];
    for (int i = 0; i < N_SLOTS; i++) {
        snprintf(key, sizeof key, "input.%s", slots[i].name);
        const ckd_st_tensor *src = ckd_st_find(st, key);
        if (src && !(p->t[i] = read_tensor(st, file, src, i, err)))
            return -1;
        if (p->t[i] && p->t[i]->ndim >= 1 && i != S_SCALE && i != T_SCALE && i != CLASS_TXT && i != CENTROIDS &&
            i < A_IMG)
            p->n = p->t[i]->shape[0];
    }
    /* Assistants: [A, N, Dt] per tower and [A, N, K] logits, with A weights. */
    int64_t A = p->t[A_WEIGHT] ? p->t[A_WEIGHT]->n : 0;
    for (int i = A_IMG; i <= A_LOGITS; i++)
        if (i != A_WEIGHT && p->t[i] &&
            (!A || p->t[i]->ndim != 3 || p->t[i]->shape[0] != A || p->t[i]->shape[1] != p->n))
            return ckd_errorf(err, "%s: input.%s must be [A, N, %s] with A = the %lld entries of input.a_weight "
                                   "and N = the batch's %lld rows",
                              file, slots[i].name, i == A_LOGITS ? "K" : "Dt", (long long)A, (long long)p->n);
    const ckd_st_tensor *lab = ckd_st_find(st, "input.labels");
    if (lab) {
        int64_t n = ckd_st_numel(lab);
        p->labels = malloc((size_t)(n ? n : 1) * sizeof *p->labels);
        if (!p->labels)
            return ckd_errorf(err, "%s: out of memory", file);
        if (ckd_st_to_i32(lab, p->labels, (size_t)n, err))
            return ckd_error_prefix(err, "%s", file);
        if (p->n && n != p->n)
            return ckd_errorf(err, "%s: input.labels has %lld entries, the batch %lld rows", file, (long long)n,
                              (long long)p->n);
    }
    if (!p->n)
        return ckd_errorf(err, "%s: no batch inputs (input.s_img, input.s_txt, input.s_logits, ...)", file);
    return 0;
}

/* Owned parameters recorded as input.<name> replace the freshly initialised ones. */
static int load_owned(probe *p, const ckd_safetensors *st, const char *file, ckd_error *err)
{
    char key[256], s0[64];
    for (int i = 0; i < ckd_loss_n_params(p->loss); i++) {
        ckd_tensor *w = ckd_loss_param(p->loss, i);
        snprintf(key, sizeof key, "input.%s", w->name);
        const ckd_st_tensor *src = ckd_st_find(st, key);
        if (!src)
            continue;
        int same = src->ndim == w->ndim;
        for (int d = 0; same && d < w->ndim; d++)
            same = src->shape[d] == w->shape[d];
        if (!same) {
            char s1[64] = "[";
            for (int d = 0; d < src->ndim; d++)
                snprintf(s1 + strlen(s1), sizeof s1 - strlen(s1), "%s%lld", d ? ", " : "", (long long)src->shape[d]);
            strncat(s1, "]", sizeof s1 - strlen(s1) - 1);
            return ckd_errorf(err, "%s: %s has shape %s, loss %s's parameter %s is %s", file, key, s1,
                              ckd_loss_name(p->loss), w->name, ckd_shape_str(w, s0, sizeof s0));
        }
        if (ckd_st_to_f32(src, w->data, (size_t)w->n, err))
            return ckd_error_prefix(err, "%s", file);
    }
    return 0;
}

static int add_grad(ckd_st_writer *w, const char *name, const ckd_tensor *t, ckd_error *err)
{
    char key[300];
    snprintf(key, sizeof key, "grad.%s", name);
    return ckd_st_writer_add_copy(w, key, CKD_DT_F32, t->ndim, t->shape, t->grad, err);
}

int ckd_loss_eval_file(const ckd_plugin *pl, const json_t *params, const char *inputs_path, const char *out_path,
                       ckd_error *err)
{
    probe p = {0};
    ckd_ctx *c = NULL;
    ckd_st_writer *w = NULL;
    int rc = -1;
    ckd_safetensors *st = ckd_st_open(inputs_path, err);
    if (!st)
        return -1;
    if (load_inputs(&p, st, inputs_path, err))
        goto out;
    ckd_loss_dims dims;
    dims_from(&p, &dims);
    if (!(p.loss = ckd_loss_new(pl, params, "loss-eval", &dims, 0, err)) || load_owned(&p, st, inputs_path, err))
        goto out;
    if (!(c = ckd_ctx_new(0, 0, err)))
        goto out;
    ckd_tensor *loss = probe_loss(c, &p);
    if (ckd_backward(c, loss, err)) {
        ckd_error_prefix(err, "loss %s on %s", pl->desc->name, inputs_path);
        goto out;
    }
    if (!(w = ckd_st_writer_new())) {
        ckd_errorf(err, "out of memory");
        goto out;
    }
    if (ckd_st_writer_add_copy(w, "loss", CKD_DT_F32, 0, NULL, loss->data, err))
        goto out;
    for (int i = 0; i < N_SLOTS; i++)
        if (p.t[i] && slots[i].student && add_grad(w, slots[i].name, p.t[i], err))
            goto out;
    for (int i = 0; i < ckd_loss_n_params(p.loss); i++)
        if (add_grad(w, ckd_loss_param(p.loss, i)->name, ckd_loss_param(p.loss, i), err))
            goto out;
    ckd_st_writer_set_metadata(w, "loss", pl->desc->name, NULL);
    ckd_st_writer_set_metadata(w, "inputs", inputs_path, NULL);
    rc = ckd_st_writer_save(w, out_path, err);
out:
    ckd_st_writer_free(w);
    ckd_ctx_free(c);
    probe_free(&p);
    ckd_st_close(st);
    return rc;
}

/* ---- gradcheck ------------------------------------------------------------------ */
void ckd_loss_check_default_opts(ckd_loss_check_opts *o)
{
    o->n = 8;
    o->s_dim = 16;
    o->t_dim = 24;
    o->n_classes = 5;
    o->seed = 1;
    ckd_gradcheck_default_opts(&o->gc);
}

static ckd_tensor *random_slot(int slot, int64_t rows, int64_t cols, ckd_rng *r, float scale, int normalise,
                               ckd_error *err)
{
    ckd_tensor *t = slot_tensor(slot, 2, (int64_t[]){rows, cols}, err);
    if (!t)
        return NULL;
    for (int64_t i = 0; i < t->n; i++)
        t->data[i] = (float)ckd_rng_normal(r) * scale;
    for (int64_t i = 0; normalise && i < rows; i++) {
        double s = 0;
        for (int64_t j = 0; j < cols; j++)
            s += (double)t->data[i * cols + j] * t->data[i * cols + j];
        for (int64_t j = 0; j < cols; j++)
            t->data[i * cols + j] /= (float)sqrt(s);
    }
    return t;
}

int ckd_loss_gradcheck(const ckd_plugin *pl, const json_t *params, const ckd_loss_check_opts *opts,
                       ckd_gradcheck_report *rep, ckd_error *err)
{
    ckd_loss_check_opts o;
    if (opts)
        o = *opts;
    else
        ckd_loss_check_default_opts(&o);
    probe p = {.n = o.n};
    ckd_ctx *c = NULL;
    int rc = -1;
    ckd_rng r;
    ckd_rng_seed(&r, o.seed);
    int64_t K = o.n_classes;
    if (!(p.t[S_IMG] = random_slot(S_IMG, o.n, o.s_dim, &r, 1, 0, err)) ||
        !(p.t[S_TXT] = random_slot(S_TXT, o.n, o.s_dim, &r, 1, 0, err)) ||
        !(p.t[T_IMG] = random_slot(T_IMG, o.n, o.t_dim, &r, 1, 1, err)) ||
        !(p.t[T_TXT] = random_slot(T_TXT, o.n, o.t_dim, &r, 1, 1, err)) ||
        !(p.t[CLASS_TXT] = random_slot(CLASS_TXT, K, o.t_dim, &r, 1, 1, err)) ||
        !(p.t[S_LOGITS] = random_slot(S_LOGITS, o.n, K, &r, 2, 0, err)) ||
        !(p.t[T_LOGITS] = random_slot(T_LOGITS, o.n, K, &r, 3, 0, err)) ||
        !(p.t[CENTROIDS] = random_slot(CENTROIDS, K, o.t_dim, &r, 1, 0, err)) ||
        !(p.t[S_IMG_MASKED] = random_slot(S_IMG_MASKED, o.n, o.s_dim, &r, 1, 0, err)) ||
        !(p.t[S_SCALE] = slot_tensor(S_SCALE, 0, NULL, err)) || !(p.t[T_SCALE] = slot_tensor(T_SCALE, 0, NULL, err)))
        goto out;
    p.t[S_SCALE]->data[0] = logf(1.0f / 0.07f);
    p.t[T_SCALE]->data[0] = logf(100.0f);
    if (!(p.labels = malloc((size_t)o.n * sizeof *p.labels))) {
        ckd_errorf(err, "out of memory");
        goto out;
    }
    for (int64_t i = 0; i < o.n; i++)
        p.labels[i] = (int32_t)ckd_rng_below(&r, (uint64_t)K);
    /* Two assistants (weights 1 and 0.5), drawn after everything else so that
     * the other inputs are what they were before assistants existed. */
    if (!(p.t[A_IMG] = random_slot(A_IMG, 2 * o.n, o.t_dim, &r, 1, 1, err)) ||
        !(p.t[A_TXT] = random_slot(A_TXT, 2 * o.n, o.t_dim, &r, 1, 1, err)) ||
        !(p.t[A_WEIGHT] = slot_tensor(A_WEIGHT, 1, (int64_t[]){2}, err)))
        goto out;
    for (int i = A_IMG; i <= A_TXT; i++) { /* the rows [2·N, Dt] seen as [2, N, Dt] */
        p.t[i]->ndim = 3;
        p.t[i]->shape[0] = 2;
        p.t[i]->shape[1] = o.n;
        p.t[i]->shape[2] = o.t_dim;
    }
    p.t[A_WEIGHT]->data[0] = 1.0f;
    p.t[A_WEIGHT]->data[1] = 0.5f;
    /* ABI minor 3's inputs, drawn last for the same reason. */
    if (!(p.t[S_IMG_NOISY] = random_slot(S_IMG_NOISY, o.n, o.s_dim, &r, 1, 0, err)) ||
        !(p.t[A_LOGITS] = random_slot(A_LOGITS, 2 * o.n, K, &r, 3, 0, err)))
        goto out;
    p.t[A_LOGITS]->ndim = 3;
    p.t[A_LOGITS]->shape[0] = 2;
    p.t[A_LOGITS]->shape[1] = o.n;
    p.t[A_LOGITS]->shape[2] = K;
    ckd_loss_dims dims = {o.s_dim, o.t_dim, K};
    if (!(p.loss = ckd_loss_new(pl, params, "gradcheck", &dims, o.seed, err)) || !(c = ckd_ctx_new(0, o.seed, err)))
        goto out;
    /* Check the student inputs the loss reads (the logit scale always) and every owned parameter. */
    ckd_tensor *inputs[N_SLOTS + 64];
    int n_in = 0;
    uint32_t needs = ckd_loss_needs(p.loss);
    for (int i = 0; i < N_SLOTS; i++)
        if (slots[i].student && (i == S_SCALE || (needs & slots[i].need)))
            inputs[n_in++] = p.t[i];
    for (int i = 0; i < ckd_loss_n_params(p.loss) && n_in < N_SLOTS + 64; i++)
        inputs[n_in++] = ckd_loss_param(p.loss, i);
    rc = ckd_gradcheck(c, probe_loss, &p, inputs, n_in, &o.gc, rep, err);
out:
    ckd_ctx_free(c);
    probe_free(&p);
    return rc;
}
