/* The training loop: loss batches as host/run/loss_check.c assembles them,
 * the weighted sum of the recipe's losses, AdamW with warm-up and cosine
 * decay, clipping, accumulation, the logit-scale clamp; metrics, evaluation,
 * checkpoints and exact resume. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clipkd/ops.h"
#include "train_internal.h"
#include "core/json_oom.h"
#include "dist/dist_internal.h"

/* CLIP's clamp: λ = exp θ ≤ 100. */
#define LOGIT_SCALE_MAX 4.605170185988091

void ckd_train_opts_init(ckd_train_opts *o) { memset(o, 0, sizeof *o); }

void ckd_train_run_dir(const ckd_recipe *r, const char *root, char *out, size_t cap)
{
    const json_t *name = json_object_get(ckd_recipe_json(r), "name");
    snprintf(out, cap, "%s/%s-%.12s", root ? root : "runs", json_is_string(name) ? json_string_value(name) : "run",
             ckd_recipe_hash(r));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Peak resident memory of the training loop: Linux keeps the process's
 * high-water mark (VmHWM), which writing 5 to clear_refs resets to the
 * current resident size. The loop resets it when it starts, so that a
 * run's figure leaves out what came before in the same process (the
 * teacher-embedding cache being computed, an earlier run of a table);
 * results.json says which ("training", or "process" when the mark could not
 * be reset). rss_peak_reset returns whether it could; rss_peak_mib the mark
 * in MiB, or -1 when it is unknown. */
static int rss_peak_reset(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    int ok = f && fputs("5", f) >= 0;
    if (f && fclose(f))
        ok = 0;
    return ok;
}

static double rss_peak_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6))
            kb = atof(line + 6);
    if (f)
        fclose(f);
    return kb < 0 ? -1 : kb / 1024;
}

/* ---- one step ------------------------------------------------------------------- */

static double lr_at(const train_run *t, int64_t s)
{
    if (s < t->warmup)
        return t->lr * (double)(s + 1) / (double)t->warmup;
    if (!t->cosine)
        return t->lr;
    int64_t span = t->total_steps - t->warmup;
    double p = span > 0 ? (double)(s - t->warmup) / (double)span : 0.0;
    return t->lr * 0.5 * (1.0 + cos(M_PI * p));
}

static ckd_tensor *normed(ckd_ctx *c, ckd_tensor *x) { return ckd_l2_normalize(c, x, 1e-12f); }

/* Zero-shot class logits exp(θ) · img_n clsᵀ, as evaluation classifies: the
 * teacher's t_logits, and the student's s_logits, whose class embeddings
 * and scale are its own and on the tape. */
static ckd_tensor *zero_shot_logits(ckd_ctx *c, ckd_tensor *img_n, ckd_tensor *cls, ckd_tensor *theta)
{
    return ckd_mul(c, ckd_matmul_ex(c, img_n, 0, cls, 1), ckd_exp(c, theta));
}

/* The student's s_logits: its text tower runs on every class prompt in each
 * micro-batch, so that the loss trains both towers (and θ_s). */
static ckd_tensor *student_logits(train_run *t, ckd_loss_batch *lb, ckd_tensor *s_out)
{
    if (t->s_classifier) /* through the bottleneck when a loss reads it: the IBM decodes with the head */
        return t->s_feat && lb->s_img_noisy ? ckd_model_classify(t->student, t->ctx, lb->s_img_noisy) : s_out;
    if (t->s_image_only) /* the teacher's class prompts and scale, fixed */
        return zero_shot_logits(t->ctx, lb->s_img_n, t->class_txt, lb->t_logit_scale);
    ckd_tensor *cls = train_prompt_ensemble(t->student, t->ctx, t->s_prompts, t->n_classes, t->s_prompt_nt,
                                            t->s_prompt_len);
    return zero_shot_logits(t->ctx, lb->s_img_n, cls, lb->s_logit_scale);
}

/* The teacher's embeddings of a batch from the cache: each sample's image,
 * and the caption the loader tokenised for it (the one caption of
 * ready-made token ids). */
static int cached_teacher(train_run *t, const ckd_batch *b, ckd_loss_batch *lb, ckd_error *err)
{
    const train_tcache *tc = &t->tc;
    int64_t n = b->n, D = tc->dim, K = tc->n_logits;
    int cls = t->t_kind == TEACHER_CLASSIFIER; /* features and logits, no captions */
    lb->t_img = ckd_tensor_new(t->ctx, 2, (int64_t[]){n, D});
    if (cls)
        lb->t_logits = ckd_tensor_new(t->ctx, 2, (int64_t[]){n, K});
    else
        lb->t_txt = ckd_tensor_new(t->ctx, 2, (int64_t[]){n, D});
    if (ckd_ctx_check(t->ctx, err) || train_tcache_rows(tc, b, lb->t_img->data, cls ? NULL : lb->t_txt->data,
                                                        cls ? lb->t_logits->data : NULL, err))
        return -1;
    lb->t_logit_scale = t->t_scale;
    return 0;
}

/* The student's image tower with patch masking (s_img_masked) on this
 * rank's shard. Its masks come from the step context's stream; under MPI
 * each rank draws its shard's from a stream of its own, forked from the
 * common one, which then moves on alike on every rank (the masks differ
 * from one process's, their distribution does not). */
static ckd_tensor *masked_image(train_run *t, ckd_tensor *px)
{
    ckd_rng *r = ckd_ctx_rng(t->ctx), common = *r;
    if (t->world > 1)
        ckd_rng_seed(r, ckd_rng_next(&common) ^ (0x9e3779b97f4a7c15ull * (uint64_t)(t->rank + 1)));
    ckd_tensor *y = ckd_model_encode_image(t->student, t->ctx, px, t->keep_ratio, NULL);
    if (t->world > 1)
        *r = common;
    return train_dist_rows(t, y);
}

/* The loss batch of one micro-batch (see ckd_loss_batch): b is this rank's
 * shard, g the global batch's sample list (b itself in a world of one).
 * The towers run on the shard and their outputs are gathered; whatever is
 * computed from those, and all that the sample list decides, is computed
 * for the global batch on every rank, as one process would. */
static int fill_batch(train_run *t, const ckd_batch *b, ckd_loss_batch *lb, ckd_error *err)
{
    ckd_ctx *c = t->ctx;
    const ckd_batch *g = train_dist_global(t, b);
    int64_t n = b->n, T = b->context_len;
    ckd_tensor *px = ckd_tensor_from(c, 4, (int64_t[]){n, 3, b->image_size, b->image_size}, b->pixel_values);
    memset(lb, 0, sizeof *lb);
    lb->struct_size = sizeof *lb;
    lb->n = g->n;
    ckd_tower_out so = {0};
    ckd_tensor *s_out = ckd_model_encode_image(t->student, c, px, 1.0f, t->s_feat ? &so : NULL);
    if (t->s_feat) { /* a classifier takes part through its features */
        lb->s_img = train_dist_rows(t, so.pooled);
        s_out = (t->needs & CKD_NEED_S_LOGITS) ? train_dist_rows(t, s_out) : NULL;
    } else {
        lb->s_img = s_out = train_dist_rows(t, s_out);
    }
    lb->s_img_n = normed(c, lb->s_img);
    if (t->needs & CKD_NEED_S_IMG_NOISY) /* CIFD's bottleneck: U[−½, ½) noise while training */
        lb->s_img_noisy =
            t->ibm_noise && ckd_ctx_training(c) ? ckd_quantize(c, lb->s_img, CKD_QUANT_NOISE) : lb->s_img;
    if (!t->s_image_only) {
        lb->s_txt = train_dist_rows(t, ckd_model_encode_text(t->student, c, b->input_ids, n, T, NULL));
        lb->s_txt_n = normed(c, lb->s_txt);
        lb->s_logit_scale = ckd_model_logit_scale(t->student);
    }
    if (t->needs & CKD_NEED_S_IMG_MASKED)
        lb->s_img_masked = masked_image(t, px);
    if (t->needs & CKD_NEED_CENTROIDS)
        lb->centroids = t->centroids;
    if (t->needs & CKD_NEED_LABELS) {
        for (int64_t i = 0; i < g->n; i++)
            if (g->labels[i] < 0 || g->labels[i] >= t->n_classes)
                return ckd_errorf(err, "data.train: sample %lld has no class label", (long long)g->indices[i]);
        lb->labels = g->labels;
    }
    if (t->teacher || t->tc.st) {
        /* a teacher is fixed and in eval mode (BatchNorm on its statistics) */
        int was = ckd_ctx_set_grad(c, 0), was_training = ckd_ctx_set_training(c, 0);
        if (t->teacher && t->t_kind == TEACHER_CLASSIFIER) {
            ckd_tower_out to = {0};
            lb->t_logits = train_dist_rows(t, ckd_model_encode_image(t->teacher, c, px, 1.0f, &to));
            lb->t_img = normed(c, train_dist_rows(t, to.pooled));
            t->teacher_encoded += n;
        } else if (t->teacher) {
            lb->t_img = normed(c, train_dist_rows(t, ckd_model_encode_image(t->teacher, c, px, 1.0f, NULL)));
            lb->t_txt = normed(c, train_dist_rows(t, ckd_model_encode_text(t->teacher, c, b->input_ids, n, T, NULL)));
            lb->t_logit_scale = ckd_model_logit_scale(t->teacher);
            t->teacher_encoded += 2 * n;
        } else if (cached_teacher(t, g, lb, err)) {
            ckd_ctx_set_grad(c, was);
            ckd_ctx_set_training(c, was_training);
            return -1;
        }
        if (t->n_assistants && train_assistants_fill(t, g, lb, err)) {
            ckd_ctx_set_grad(c, was);
            ckd_ctx_set_training(c, was_training);
            return -1;
        }
        if (t->class_txt && (t->needs & CKD_NEED_CLASS_TXT))
            lb->class_txt = t->class_txt;
        if (t->class_txt && (t->needs & CKD_NEED_T_LOGITS))
            lb->t_logits = zero_shot_logits(c, lb->t_img, t->class_txt, lb->t_logit_scale);
        ckd_ctx_set_grad(c, was);
        ckd_ctx_set_training(c, was_training);
    }
    if (t->needs & CKD_NEED_S_LOGITS) /* after the teacher: an image-only student uses its prompts */
        lb->s_logits = student_logits(t, lb, s_out);
    return ckd_ctx_check(c, err);
}

static void clip_gradients(train_run *t)
{
    if (t->grad_clip <= 0)
        return;
    double s = 0;
    for (int k = 0; k < t->n_params; k++)
        for (int64_t i = 0; t->params[k]->grad && i < t->params[k]->n; i++)
            s += (double)t->params[k]->grad[i] * t->params[k]->grad[i];
    double norm = sqrt(s);
    if (norm <= t->grad_clip)
        return;
    float f = (float)(t->grad_clip / (norm + 1e-6));
    for (int k = 0; k < t->n_params; k++)
        for (int64_t i = 0; t->params[k]->grad && i < t->params[k]->n; i++)
            t->params[k]->grad[i] *= f;
}

/* One optimiser step over accum micro-batches; terms[i] gets each loss's
 * mean over them, *images the samples seen. */
static int train_step(train_run *t, double *terms, double *total, int64_t *images, ckd_error *err)
{
    for (int k = 0; k < t->n_params; k++)
        ckd_param_zero_grad(t->params[k]);
    memset(terms, 0, sizeof(double) * (size_t)t->n_losses);
    *total = 0;
    *images = 0;
    for (int64_t a = 0; a < t->accum; a++) {
        const ckd_batch *b;
        int rc = train_dist_next(t, &b, err);
        if (rc)
            return rc < 0 ? ckd_error_prefix(err, "data.train") : ckd_errorf(err, "data.train: ran out of batches");
        ckd_ctx_reset(t->ctx);
        ckd_loss_batch lb;
        if (fill_batch(t, b, &lb, err))
            return ckd_error_prefix(err, "step %lld", (long long)t->step + 1);
        ckd_tensor *sum = NULL;
        for (int i = 0; i < t->n_losses; i++) {
            ckd_tensor *l = ckd_loss_forward(t->loss[i], t->ctx, &lb);
            if (!l)
                break;
            if (!isfinite(l->data[0]))
                return ckd_errorf(err, "step %lld: loss term %d (%s) is %g; stopped (the last checkpoint is kept)",
                                  (long long)t->step + 1, i, ckd_loss_name(t->loss[i]), l->data[0]);
            terms[i] += l->data[0] / (double)t->accum;
            ckd_tensor *w = ckd_scale(t->ctx, l, (float)(t->weight[i] / (double)t->accum));
            sum = sum ? ckd_add(t->ctx, sum, w) : w;
        }
        if (ckdi_dist_agree(train_dist_backward(t, sum, a == t->accum - 1, err), err))
            return ckd_error_prefix(err, "step %lld", (long long)t->step + 1);
        *total += sum->data[0];
        *images += train_dist_global(t, b)->n;
    }
    ckd_st_writer *dump = NULL;
    if (t->rank == 0 && t->step < t->opts->dump_steps && t->opts->dump_dir &&
        train_dump_grads(t, terms, *total, &dump, err))
        return -1;
    clip_gradients(t);
    ckd_adamw_set_lr(t->opt, lr_at(t, t->step));
    ckd_adamw_step(t->opt);
    ckd_tensor *theta = ckd_model_logit_scale(t->student);
    if (theta && theta->data[0] > LOGIT_SCALE_MAX)
        theta->data[0] = (float)LOGIT_SCALE_MAX;
    if (dump && train_dump_save(t, dump, lr_at(t, t->step), err))
        return -1;
    t->step++;
    return 0;
}

/* ---- metrics, evaluation, results ---------------------------------------------- */

typedef struct loop_state {
    FILE *metrics;
    double t0, last_t;
    int64_t last_step, images;
    json_t *last_eval;
    int rss_reset; /* the memory high-water mark was reset when the loop began */
} loop_state;

void train_term_name(const train_run *t, int i, char *out, size_t cap)
{
    int dup = 0;
    for (int j = 0; j < t->n_losses; j++)
        dup += j != i && !strcmp(ckd_loss_name(t->loss[j]), ckd_loss_name(t->loss[i]));
    if (dup)
        snprintf(out, cap, "%s.%d", ckd_loss_name(t->loss[i]), i);
    else
        snprintf(out, cap, "%s", ckd_loss_name(t->loss[i]));
}

static int append_metrics(loop_state *ls, json_t *line, ckd_error *err)
{
    if (!ls->metrics) { /* under MPI, a rank other than 0 */
        json_decref(line);
        return 0;
    }
    char *s = json_dumps(line, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    json_decref(line);
    if (!s || fprintf(ls->metrics, "%s\n", s) < 0 || fflush(ls->metrics)) {
        free(s);
        return ckd_errorf(err, "metrics.jsonl: write failed: %s", strerror(errno));
    }
    free(s);
    return 0;
}

static void emit(const train_run *t, ckd_train_event *ev)
{
    ev->run_name = t->name;
    ev->teacher_encoded = t->teacher_encoded;
    if (t->opts->progress && t->rank == 0) /* under MPI rank 0 speaks for all */
        t->opts->progress(t->opts->user, ev);
}

void train_message(const train_run *t, const char *fmt, ...)
{
    char msg[2 * TRAIN_PATH_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ckd_train_event ev = {.kind = CKD_TRAIN_MESSAGE, .text = msg};
    emit(t, &ev);
}

static double epoch_of(const train_run *t, int64_t step)
{
    return (double)(step * t->accum) / (double)ckd_loader_batches_per_epoch(t->loader);
}

static int run_eval_here(train_run *t, loop_state *ls, ckd_error *err)
{
    const json_t *spec = json_object_get(json_object_get(t->rj, "data"), "eval");
    if (!spec)
        return 0;
    ckd_eval_opts eo;
    ckd_eval_opts_from_json(&eo, json_object_get(t->rj, "eval"));
    eo.text_model = t->teacher ? t->teacher : t->text_teacher; /* for an image-only student */
    ckd_eval_result r;
    if (ckd_evaluate(t->student, spec, t->base_dir, &eo, &r, err))
        return ckd_error_prefix(err, "data.eval (step %lld)", (long long)t->step);
    json_t *o = ckd_eval_result_json(&r);
    json_decref(ls->last_eval);
    ls->last_eval = json_deep_copy(o);
    json_object_set_new(o, "type", json_string("eval"));
    json_object_set_new(o, "step", json_integer(t->step));
    json_object_set_new(o, "epoch", json_real(epoch_of(t, t->step)));
    json_object_set_new(o, "eval_seconds", json_real(r.seconds));
    char buf[512];
    ckd_train_event ev = {.kind = CKD_TRAIN_EVAL, .step = t->step, .total_steps = t->total_steps,
                          .text = ckd_eval_result_str(&r, buf, sizeof buf)};
    emit(t, &ev);
    return append_metrics(ls, o, err);
}

/* Under MPI every rank evaluates its share of the images and texts
 * (ckd_evaluate is then collective) and rank 0 writes the line. */
static int run_eval(train_run *t, loop_state *ls, ckd_error *err)
{
    return ckdi_dist_agree(run_eval_here(t, ls, err), err);
}

static int log_step(train_run *t, loop_state *ls, const double *terms, double total, int64_t images,
                    ckd_error *err)
{
    double now = now_s();
    ls->images += images;
    memcpy(t->last_terms, terms, sizeof(double) * (size_t)t->n_losses);
    t->last_total = total;
    ckd_train_event ev = {.kind = CKD_TRAIN_STEP, .step = t->step, .total_steps = t->total_steps,
                          .epoch = (int64_t)epoch_of(t, t->step - 1), .loss = total, .lr = lr_at(t, t->step - 1),
                          .n_terms = t->n_losses};
    char names[CKD_TRAIN_MAX_TERMS][80];
    for (int i = 0; i < t->n_losses; i++) {
        train_term_name(t, i, names[i], sizeof names[i]);
        ev.term_names[i] = names[i];
        ev.terms[i] = terms[i];
    }
    double dt = now - ls->t0;
    ev.images_per_s = dt > 0 ? (double)ls->images / dt : 0;
    int64_t done = t->step - ls->last_step;
    ev.eta_s = done > 0 ? dt / (double)done * (double)(t->total_steps - t->step) : 0;
    ev.logged = t->step % t->log_every == 0 || t->step == t->total_steps;
    emit(t, &ev);
    if (!ev.logged)
        return 0;
    json_t *tj = json_object();
    for (int i = 0; i < t->n_losses; i++)
        json_object_set_new(tj, names[i], json_real(terms[i]));
    json_t *line = json_pack("{s:s, s:I, s:f, s:f, s:f, s:o, s:f, s:f}", "type", "train", "step",
                             (json_int_t)t->step, "epoch", epoch_of(t, t->step), "lr", ev.lr, "loss", total, "terms",
                             tj, "images_per_s", ev.images_per_s, "elapsed_s", dt);
    return append_metrics(ls, line, err);
}

/* Rank 0 writes it: every rank holds the same state. */
static int checkpoint(train_run *t, loop_state *ls, ckd_error *err)
{
    if (t->rank != 0)
        return ckdi_dist_agree(0, err);
    long len = ftell(ls->metrics);
    return ckdi_dist_agree(train_checkpoint_save(t, len < 0 ? 0 : len, err), err);
}

/* The teacher run's own figures (teacher.recipe: its run is the parent of
 * teacher_dir, .../final), copied into the run's results so that a table
 * can set a student's figures beside its teacher's (a capacity-gap study)
 * from one file. A teacher run without readable results adds nothing. */
static void add_teacher_results(const train_run *t, json_t *res)
{
    char dir[TRAIN_PATH_MAX], file[TRAIN_PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s", t->teacher_dir);
    char *slash = strrchr(dir, '/');
    if (!t->teacher_dir[0] || !slash)
        return;
    *slash = 0;
    snprintf(file, sizeof file, "%s/results.json", dir);
    json_t *tr = json_load_file(file, 0, NULL);
    if (json_is_object(tr)) {
        const char *run = strrchr(dir, '/');
        json_t *rec = json_object();
        json_object_set_new(rec, "run", json_string(run ? run + 1 : dir));
        static const char *const keep[] = {"name", "recipe_hash", "parameters", "eval"};
        for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
            if (json_object_get(tr, keep[i]))
                json_object_set(rec, keep[i], json_object_get(tr, keep[i]));
        json_object_set_new(res, "teacher", rec);
    }
    json_decref(tr);
}

static int finish(train_run *t, loop_state *ls, ckd_error *err)
{
    /* Training wall time of this process (a resumed run counts from its
     * resume), before the final evaluation; so is the memory peak. */
    double train_s = now_s() - ls->t0, peak = rss_peak_mib();
    char final[TRAIN_PATH_MAX + 16];
    snprintf(final, sizeof final, "%s/final", t->dir);
    /* The checkpoint comes before the evaluation: a run killed from here on
     * resumes at the last step and writes the evaluation line once. */
    if (checkpoint(t, ls, err) || run_eval(t, ls, err))
        return -1;
    if (t->rank != 0)
        return ckdi_dist_agree(0, err);
    if (ckd_model_save_pretrained(t->student, final, err))
        return ckdi_dist_agree(-1, err);
    json_t *terms = json_object();
    for (int i = 0; i < t->n_losses; i++) {
        char nm[80];
        train_term_name(t, i, nm, sizeof nm);
        json_object_set_new(terms, nm, json_real(t->last_terms[i]));
    }
    json_t *res = json_pack("{s:s, s:s, s:I, s:f, s:o, s:I}", "name", t->name, "recipe_hash",
                            ckd_recipe_hash(t->recipe), "steps", (json_int_t)t->step, "final_loss", t->last_total,
                            "terms", terms, "parameters", (json_int_t)ckd_model_param_count(t->student));
    if (ls->last_eval)
        json_object_set(res, "eval", ls->last_eval);
    /* pipeline_seconds adds the stage-1 time of the run's teaching assistants
     * (CIFD's cost counts it; the teacher, shared by every method, is not). */
    json_object_set_new(res, "train_seconds", json_real(train_s));
    json_object_set_new(res, "pipeline_seconds", json_real(train_s + t->assist_seconds));
    if (peak > 0) {
        json_object_set_new(res, "peak_rss_mib", json_real(peak));
        json_object_set_new(res, "peak_rss_scope", json_string(ls->rss_reset ? "training" : "process"));
    }
    if (t->world > 1)
        json_object_set_new(res, "ranks", json_integer(t->world));
    add_teacher_results(t, res);
    int rc = train_write_json(t->dir, "results.json", res, err);
    json_decref(res);
    return ckdi_dist_agree(rc, err);
}

static int loop(train_run *t, int64_t metrics_len, ckd_error *err)
{
    char path[TRAIN_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/metrics.jsonl", t->dir);
    loop_state ls = {.t0 = now_s(), .last_step = t->step, .rss_reset = rss_peak_reset()};
    int rc = -1;
    if (t->rank == 0) { /* under MPI only rank 0 writes metrics */
        /* Lines written after the checkpoint are written again, identically. */
        if (truncate(path, metrics_len) && errno != ENOENT)
            rc = ckd_errorf(err, "%s: %s", path, strerror(errno));
        else if (!(ls.metrics = fopen(path, "a")))
            rc = ckd_errorf(err, "cannot open %s: %s", path, strerror(errno));
        else
            rc = 0;
    } else {
        rc = 0;
    }
    if (ckdi_dist_agree(rc, err))
        return -1;
    rc = -1;
    if (ckd_loader_seek(t->loader, train_cursor_for(t, t->step), err))
        goto out;
    ckd_ctx_set_training(t->ctx, 1);
    while (t->step < t->total_steps) {
        if (t->opts->stop_after > 0 && t->step >= t->opts->stop_after) {
            rc = 0;
            goto out;
        }
        double terms[CKD_TRAIN_MAX_TERMS], total;
        int64_t images;
        if (train_step(t, terms, &total, &images, err) || log_step(t, &ls, terms, total, images, err))
            goto out;
        if (t->step < t->total_steps && t->eval_every > 0 && t->step % t->eval_every == 0) {
            ckd_ctx_set_training(t->ctx, 0);
            if (run_eval(t, &ls, err))
                goto out;
            ckd_ctx_set_training(t->ctx, 1);
        }
        if (t->step < t->total_steps && t->ckpt_every > 0 && t->step % t->ckpt_every == 0 &&
            checkpoint(t, &ls, err))
            goto out;
    }
    ckd_ctx_set_training(t->ctx, 0);
    rc = finish(t, &ls, err);
out:
    json_decref(ls.last_eval);
    if (ls.metrics)
        fclose(ls.metrics);
    return rc;
}

/* ---- runs ---------------------------------------------------------------------- */

static void dirname_of(const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "%s", path);
    char *slash = strrchr(out, '/');
    if (slash == out)
        out[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(out, cap, ".");
}

static void init_run(train_run *t, const ckd_registry *reg, const ckd_recipe *r, const ckd_train_opts *o)
{
    memset(t, 0, sizeof *t);
    t->reg = reg;
    t->recipe = r;
    t->rj = ckd_recipe_json(r);
    t->opts = o;
    t->world = ckd_dist_size();
    t->rank = ckd_dist_rank();
    const json_t *name = json_object_get(t->rj, "name");
    snprintf(t->name, sizeof t->name, "%s", json_is_string(name) ? json_string_value(name) : "run");
    dirname_of(ckd_recipe_path(r), t->base_dir, sizeof t->base_dir);
    if (o->runs_root)
        snprintf(t->runs_root, sizeof t->runs_root, "%s", o->runs_root);
    else if (o->out_dir)
        dirname_of(o->out_dir, t->runs_root, sizeof t->runs_root);
    else
        snprintf(t->runs_root, sizeof t->runs_root, "runs");
    if (o->out_dir)
        snprintf(t->dir, sizeof t->dir, "%s", o->out_dir);
    else
        ckd_train_run_dir(r, t->runs_root, t->dir, sizeof t->dir);
}

static int write_run_files(train_run *t, ckd_error *err)
{
    char abs[PATH_MAX];
    const char *rp = ckd_recipe_path(t->recipe);
    json_t *sets = json_array();
    for (size_t i = 0; i < t->opts->n_sets; i++)
        json_array_append_new(sets, json_string(t->opts->sets[i]));
    json_t *run = json_pack("{s:s, s:o, s:s}", "recipe", realpath(rp, abs) ? abs : rp, "sets", sets, "recipe_hash",
                            ckd_recipe_hash(t->recipe));
    /* where its teacher's run is: --resume looks there again */
    if (run && realpath(t->runs_root, abs))
        json_object_set_new(run, "runs_root", json_string(abs));
    if (run && t->opts->origin)
        json_object_update(run, (json_t *)t->opts->origin);
    int rc = train_write_json(t->dir, "run.json", run, err) || train_write_json(t->dir, "recipe.json", t->rj, err) ? -1 : 0;
    json_decref(run);
    return rc;
}

static int file_exists(const char *dir, const char *file)
{
    char p[TRAIN_PATH_MAX + 64];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, file);
    return stat(p, &sb) == 0;
}

ckd_run_state ckd_train_dir_state(const char *run_dir)
{
    if (file_exists(run_dir, "results.json") && file_exists(run_dir, "final/model.safetensors"))
        return CKD_RUN_FINISHED;
    return train_checkpoint_exists(run_dir) ? CKD_RUN_INTERRUPTED : CKD_RUN_NEW;
}

int ckd_train_run(const ckd_registry *reg, const ckd_recipe *r, const ckd_train_opts *opts, char *run_dir,
                  size_t cap, ckd_error *err)
{
    ckd_train_opts dflt;
    ckd_train_opts_init(&dflt);
    train_run t;
    init_run(&t, reg, r, opts ? opts : &dflt);
    if (run_dir)
        snprintf(run_dir, cap, "%s", t.dir);
    if (train_dist_check_ranks(reg, r, t.dir, err)) /* under MPI: every rank alike, or none starts */
        return -1;
    ckd_run_state state = ckd_train_dir_state(t.dir);
    if (state == CKD_RUN_FINISHED) {
        char msg[TRAIN_PATH_MAX + 64];
        snprintf(msg, sizeof msg, "%s: already trained; reusing it", t.dir);
        ckd_train_event ev = {.kind = CKD_TRAIN_MESSAGE, .text = msg};
        emit(&t, &ev);
        return 0;
    }
    if (state == CKD_RUN_INTERRUPTED)
        return ckd_errorf(err, "%s holds a checkpoint of an unfinished run: continue it with clipkd run --resume %s",
                          t.dir, t.dir);
    int rc = -1, lock = -1;
    /* An "rdm" recipe has no student: CIFD's stage 1 on the teacher's cache. */
    int rdm = json_object_get(t.rj, "rdm") != NULL;
    if (rdm && ckd_dist_size() > 1)
        return ckd_recipe_errorf(r, "rdm", err,
                                 "CIFD's stage 1 (a rate-distortion module on cached embeddings) trains in one "
                                 "process: run it without mpirun first (%d ranks here)",
                                 ckd_dist_size());
    /* Under MPI every rank sets up; rank 0 alone creates and locks the run
     * directory, which the others must then see. */
    if (!ckdi_dist_agree(rdm ? train_setup_teacher_only(&t, err) : train_setup(&t, err), err) &&
        !ckdi_dist_agree(t.rank == 0 && (train_mkdirs(t.dir, err) || train_lock_dir(t.dir, &lock, err) ||
                                         write_run_files(&t, err)),
                         err) &&
        !train_dist_sees_dir(t.dir, err))
        rc = rdm ? train_rdm_stage(&t, err) : loop(&t, 0, err);
    train_unlock_dir(lock);
    train_free(&t);
    return rc;
}

int ckd_train_resume(const ckd_registry *reg, const ckd_recipe *given, const char *run_dir,
                     const ckd_train_opts *opts, ckd_error *err)
{
    ckd_train_opts o;
    if (opts)
        o = *opts;
    else
        ckd_train_opts_init(&o);
    o.out_dir = run_dir;
    if (ckdi_dist_agree(train_checkpoint_exists(run_dir)
                            ? 0
                            : ckd_errorf(err, "%s: cannot resume: no checkpoint.safetensors there", run_dir),
                        err))
        return -1;
    const ckd_recipe *r = given;
    ckd_recipe *loaded = NULL;
    json_t *run = NULL;
    const char *sets[256];
    char path[TRAIN_PATH_MAX + 16];
    json_error_t je;
    snprintf(path, sizeof path, "%s/run.json", run_dir);
    run = ckdi_json_load_file(path, 0, &je, NULL);
    /* The runs root the run was started with (its teacher's run is there),
     * unless the caller names one. */
    if (!o.runs_root)
        o.runs_root = json_string_value(json_object_get(run, "runs_root"));
    if (!r) {
        const char *rp = json_string_value(json_object_get(run, "recipe"));
        const json_t *js = json_object_get(run, "sets");
        size_t n = 0;
        for (; n < json_array_size(js) && n < 256; n++)
            sets[n] = json_string_value(json_array_get(js, n));
        if (rp)
            loaded = ckd_recipe_load(rp, sets, n, ckd_train_plugin_schema, (void *)reg, err);
        else
            ckd_errorf(err, "%s: cannot resume: unreadable run.json (%s)", path, je.text);
        if (ckdi_dist_agree(!loaded, err)) {
            ckd_recipe_free(loaded);
            json_decref(run);
            return rp ? ckd_error_prefix(err, "cannot resume %s", run_dir) : -1;
        }
        r = loaded;
        o.sets = sets;
        o.n_sets = n;
    }
    train_run t;
    init_run(&t, reg, r, &o);
    int64_t metrics_len = 0;
    int rc = -1, lock = -1;
    /* Every rank restores the same checkpoint (whatever the number of
     * ranks that wrote it: the state is the same on all of them). */
    if (!train_dist_check_ranks(reg, r, run_dir, err) &&
        !ckdi_dist_agree(t.rank == 0 && train_lock_dir(run_dir, &lock, err), err) &&
        !ckdi_dist_agree(train_setup(&t, err) || train_checkpoint_load(&t, &metrics_len, err), err))
        rc = loop(&t, metrics_len, err);
    train_unlock_dir(lock);
    train_free(&t);
    ckd_recipe_free(loaded);
    json_decref(run);
    return rc;
}
