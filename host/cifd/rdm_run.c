/* Stage 1 of CIFD as a run: an "rdm" recipe trains one rate-distortion
 * module (clipkd/rdm.h) on its teacher's cached embeddings of the training
 * data (one tower's), so the teacher never runs here. The run directory is a
 * trainer's: recipe.json and run.json (written by the trainer), final/
 * (model.safetensors and config.json) and results.json with the module's
 * rate and distortion on the rows it trained on and on held-out rows. A
 * student recipe then names the run like a teacher recipe, by its recipe,
 * and reuses it by hash.
 */
#include "config.h"

#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clipkd/rdm.h"
#include "train/train_internal.h"

/* The tower's cached rows of valid samples, shuffled by seed: [*n, dim];
 * with classes (image rows of a classifier teacher), each row's label and
 * the teacher's class logits in the same order into *labels, *logits. */
static float *cached_rows(const train_tcache *tc, int text, uint64_t seed, int64_t *n_out, int32_t **labels,
                          float **logits, ckd_error *err)
{
    int64_t n = 0, D = tc->dim;
    for (int64_t i = 0; i < tc->n; i++)
        if (tc->valid[i])
            n += text ? tc->off[i + 1] - tc->off[i] : 1;
    float *X = n ? malloc((size_t)(n * D) * sizeof(float)) : NULL;
    int64_t *perm = n ? malloc((size_t)n * sizeof *perm) : NULL, K = tc->n_logits;
    if (labels) {
        *labels = n ? malloc((size_t)n * sizeof **labels) : NULL;
        *logits = n ? malloc((size_t)(n * K) * sizeof **logits) : NULL;
    }
    if (!X || !perm || (labels && (!*labels || !*logits))) {
        free(X);
        free(perm);
        if (labels) {
            free(*labels), free(*logits);
            *labels = NULL, *logits = NULL;
        }
        ckd_errorf(err, "rdm: %s", n ? "out of memory" : "the teacher cache holds no readable sample");
        return NULL;
    }
    ckd_rng r;
    ckd_rng_seed(&r, seed ^ 0x7d3aULL);
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    ckd_rng_shuffle(&r, perm, n);
    int64_t k = 0;
    for (int64_t i = 0; i < tc->n; i++) {
        if (!tc->valid[i])
            continue;
        int64_t lo = text ? tc->off[i] : i, hi = text ? tc->off[i + 1] : i + 1;
        const float *src = text ? tc->txt : tc->img;
        for (int64_t row = lo; row < hi; row++, k++) {
            memcpy(X + perm[k] * D, src + row * D, (size_t)D * sizeof(float));
            if (labels) {
                (*labels)[perm[k]] = tc->labels[i];
                memcpy(*logits + perm[k] * K, tc->logits + i * K, (size_t)K * sizeof(float));
            }
        }
    }
    free(perm);
    *n_out = n;
    return X;
}

static int save_final(const train_run *t, ckd_rdm *r, const char *tower, double R, ckd_error *err)
{
    char final[TRAIN_PATH_MAX + 16];
    snprintf(final, sizeof final, "%s/final", t->dir);
    if (train_mkdirs(final, err))
        return -1;
    json_t *extra = json_pack("{s:s, s:f}", "tower", tower, "R", R);
    /* Which teacher's embeddings it learnt (its run, when given by recipe,
     * and its weights): a student recipe with another teacher, or whose
     * teacher has been retrained since, is refused (host/cifd/assist.c). */
    char real[PATH_MAX];
    if (t->teacher_dir[0] && realpath(t->teacher_dir, real))
        json_object_set_new(extra, "teacher", json_string(real));
    if (t->teacher_weights[0])
        json_object_set_new(extra, "teacher_weights", json_string(t->teacher_weights));
    int rc = ckd_rdm_save(r, final, extra, err);
    json_decref(extra);
    return rc;
}

static json_t *report_json(const ckd_rdm_report *rep)
{
    json_t *j = json_pack("{s:f, s:f, s:I}", "rate_nats", rep->rate, "distortion", rep->distortion, "rows",
                          (json_int_t)rep->n);
    if (j && rep->accuracy >= 0)
        json_object_set_new(j, "top1", json_real(100.0 * rep->accuracy));
    return j;
}

/* The classifier form's inputs: a class head needs the cache of a classifier
 * teacher (its class logits) with every sample's label. */
static int class_setup(const train_run *t, int text, ckd_rdm_config *cfg, ckd_rdm_train_opts *o, ckd_error *err)
{
    const json_t *rdm = json_object_get(t->rj, "rdm");
    if (!json_is_true(json_object_get(rdm, "classes")))
        return 0;
    if (text || !t->tc.logits || !t->tc.labels)
        return ckd_recipe_errorf(t->recipe, "rdm.classes", err,
                                 "a class head learns from the teacher's class logits and the labels: it needs the "
                                 "image tower of a classifier teacher (this one is %s)",
                                 text ? "the text tower" : "a CLIP model");
    for (int64_t i = 0; i < t->tc.n; i++)
        if (t->tc.valid[i] && (t->tc.labels[i] < 0 || t->tc.labels[i] >= t->tc.n_logits))
            return ckd_recipe_errorf(t->recipe, "rdm.classes", err,
                                     "sample %lld has label %d, outside the teacher's %lld classes", (long long)i,
                                     t->tc.labels[i], (long long)t->tc.n_logits);
    cfg->n_classes = t->tc.n_logits;
    o->lambda_ce = train_num(t->rj, "rdm.lambda_ce", 1);
    o->lambda_kl = train_num(t->rj, "rdm.lambda_kl", 1);
    o->tau = train_num(t->rj, "rdm.tau", 2);
    return 0;
}

int train_rdm_stage(train_run *t, ckd_error *err)
{
    const json_t *rj = t->rj;
    const char *tower = json_string_value(json_object_get(json_object_get(rj, "rdm"), "tower"));
    int text = tower && !strcmp(tower, "text");
    tower = text ? "text" : "image";
    uint64_t seed = (uint64_t)train_num(rj, "seed", 0);
    double holdout = train_num(rj, "rdm.holdout", 0.05);
    ckd_rdm_train_opts o;
    ckd_rdm_train_default_opts(&o);
    o.R = train_num(rj, "rdm.R", 1);
    o.steps = (int64_t)train_num(rj, "rdm.steps", 2000);
    o.batch = (int64_t)train_num(rj, "train.batch_size", 256);
    o.lr = train_num(rj, "optim.lr", 1e-3);
    o.weight_decay = train_num(rj, "optim.weight_decay", 0);
    o.seed = seed;
    ckd_rdm_config cfg = {.in_dim = t->tc.dim,
                          .hidden = (int64_t)train_num(rj, "rdm.hidden", 256),
                          .bottleneck = (int64_t)train_num(rj, "rdm.bottleneck", 0),
                          .out_relu = json_is_true(json_object_get(json_object_get(rj, "rdm"), "out_relu"))};

    int64_t n = 0;
    int32_t *labels = NULL;
    float *logits = NULL, *X = NULL;
    ckd_rdm *r = NULL;
    int rc = -1;
    if (class_setup(t, text, &cfg, &o, err) ||
        !(X = cached_rows(&t->tc, text, seed, &n, cfg.n_classes ? &labels : NULL, &logits, err)) ||
        !(r = ckd_rdm_new(&cfg, seed, err)))
        goto out;
    o.labels = labels;
    o.teacher_logits = logits;
    /* The held-out rows are the last of the shuffled order. */
    int64_t n_hold = (int64_t)((double)n * holdout), n_train = n - n_hold;
    train_message(t, "rdm: %s tower, %lld rows (%lld held out), R %g, %lld steps", tower, (long long)n_train,
                  (long long)n_hold, o.R, (long long)o.steps);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (ckd_rdm_train(r, X, n_train, &o, err))
        goto out;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    ckd_rdm_report tr, ho = {0};
    if (ckd_rdm_evaluate(r, X, labels, n_train, &tr, err) ||
        (n_hold && ckd_rdm_evaluate(r, X + n_train * cfg.in_dim, labels ? labels + n_train : NULL, n_hold, &ho, err)))
        goto out;
    const ckd_rdm_report *main_rep = n_hold ? &ho : &tr;
    train_message(t, "rdm: rate %.3f nats, distortion %.6f (%s rows); training rows %.3f nats, %.6f; %.1f s",
                  main_rep->rate, main_rep->distortion, n_hold ? "held-out" : "training", tr.rate, tr.distortion,
                  secs);
    if (main_rep->accuracy >= 0)
        train_message(t, "rdm: class head top-1 %.2f%% (%s rows)", 100.0 * main_rep->accuracy,
                      n_hold ? "held-out" : "training");
    if (save_final(t, r, tower, o.R, err))
        goto out;
    json_int_t n_params = 0;
    for (int i = 0; i < ckd_rdm_n_params(r); i++)
        n_params += (json_int_t)ckd_rdm_param(r, i)->n;
    json_t *res = json_pack("{s:s, s:s, s:I, s:I, s:f, s:{s:s, s:f, s:f, s:f, s:o, s:o}}", "name", t->name,
                            "recipe_hash", ckd_recipe_hash(t->recipe), "steps", (json_int_t)o.steps, "parameters",
                            n_params, "train_seconds", secs, "rdm", "tower", tower, "R", o.R, "rate_nats",
                            main_rep->rate, "distortion", main_rep->distortion, "train", report_json(&tr),
                            "holdout", n_hold ? report_json(&ho) : json_null());
    rc = train_write_json(t->dir, "results.json", res, err);
    json_decref(res);
out:
    ckd_rdm_free(r);
    free(X);
    free(labels);
    free(logits);
    return rc;
}
