/* CIFD's teaching assistants inside a student's run: the recipe's
 * "assistants" name rdm recipes (one per tower); their runs are trained first
 * when missing (as a teacher recipe's is), their modules loaded, and on every
 * batch each reconstructs the teacher's embeddings of the batch in inference
 * mode (rounded bottleneck), L2-normalised, into the loss batch's a_img /
 * a_txt [A, N, Dt] with the weights a_weight (clipkd/plugin.h, ABI minor 2),
 * and, when the modules have class heads (the classifier form), their
 * logits a_logits [A, N, K] (ABI minor 3). An entry may instead name a
 * model's recipe: a mid-sized model as the assistant (TAKD, DGKD), whose
 * embeddings of the training data are cached as the teacher's are and read
 * for each batch.
 * Reconstructing the batch's teacher embeddings, cached or live, is what the
 * paper does: the assistants see exactly what the teacher gave.
 */
#include "config.h"

#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "clipkd/model.h"
#include "clipkd/ops.h"
#include "train/train_internal.h"
#include "core/json_oom.h"

/* The run directories whose stage-1 time is counted already (a module named
 * by two entries was trained once). */
typedef struct counted {
    char *dir[2 * CKD_MAX_ASSISTANTS];
    int n;
} counted;

/* Adds the stage-1 time of the run whose final/ is dir (its results.json),
 * once per run. */
static void count_stage1(train_run *t, counted *seen, const char *dir)
{
    for (int i = 0; i < seen->n; i++)
        if (!strcmp(seen->dir[i], dir))
            return;
    if (seen->n < 2 * CKD_MAX_ASSISTANTS && (seen->dir[seen->n] = strdup(dir)))
        seen->n++;
    char res[TRAIN_PATH_MAX + 32];
    snprintf(res, sizeof res, "%s/../results.json", dir);
    json_t *rj = ckdi_json_load_file(res, 0, NULL, NULL);
    t->assist_seconds += json_number_value(json_object_get(rj, "train_seconds"));
    json_decref(rj);
}

/* One tower's module of assistant k: its run's final/ loaded and checked. */
static ckd_rdm *load_one(train_run *t, size_t k, const char *tower, int64_t Dt, counted *seen, ckd_error *err)
{
    char path[64], dir[TRAIN_PATH_MAX];
    snprintf(path, sizeof path, "assistants[%zu].%s", k, tower);
    if (train_recipe_final_dir(t, path, "assistant", dir, sizeof dir, err))
        return NULL;
    count_stage1(t, seen, dir);
    json_t *cfg = NULL;
    ckd_rdm *r = ckd_rdm_load(dir, &cfg, err);
    if (!r) {
        ckd_error_prefix(err, "%s", path);
        return NULL;
    }
    const char *made_for = json_string_value(json_object_get(cfg, "tower"));
    if (made_for && strcmp(made_for, tower)) {
        ckd_errorf(err, "%s: %s was trained on the %s tower's embeddings, not the %s tower's", path, dir, made_for,
                   tower);
        goto bad;
    }
    /* Trained on this recipe's teacher? (Known when both name theirs by recipe.) */
    const char *its = json_string_value(json_object_get(cfg, "teacher"));
    char ours[PATH_MAX];
    if (its && t->teacher_dir[0] && realpath(t->teacher_dir, ours) && strcmp(its, ours)) {
        ckd_errorf(err, "%s: %s learnt the embeddings of the teacher in %s; this recipe's teacher is %s", path, dir,
                   its, ours);
        goto bad;
    }
    /* The same teacher run, retrained since the module learnt it: stale. */
    const char *its_w = json_string_value(json_object_get(cfg, "teacher_weights"));
    if (its_w && t->teacher_weights[0] && strcmp(its_w, t->teacher_weights)) {
        ckd_errorf(err, "%s: %s is stale: it learnt the teacher's embeddings when its weights were %.20s..., they "
                        "are %.20s... now; remove that run directory to train it again",
                   path, dir, its_w, t->teacher_weights);
        goto bad;
    }
    if (ckd_rdm_config_of(r)->in_dim != Dt) {
        ckd_errorf(err, "%s: %s reconstructs %lld-wide embeddings, the teacher's are %lld wide", path, dir,
                   (long long)ckd_rdm_config_of(r)->in_dim, (long long)Dt);
        goto bad;
    }
    json_decref(cfg);
    return r;
bad:
    json_decref(cfg);
    ckd_rdm_free(r);
    return NULL;
}

/* Assistant k given as a model's recipe (a mid-sized model for TAKD- or
 * DGKD-style guidance): its run, trained first when missing, and that
 * model's embedding cache on the training data, computed first when
 * missing. It must be of the teacher's kind and width: it stands where the
 * teacher stands. */
static int load_model(train_run *t, size_t k, int64_t Dt, counted *seen, ckd_error *err)
{
    char path[64], dir[TRAIN_PATH_MAX];
    snprintf(path, sizeof path, "assistants[%zu].model", k);
    if (train_recipe_final_dir(t, path, "assistant", dir, sizeof dir, err))
        return -1;
    count_stage1(t, seen, dir);
    int kind;
    if (train_model_cache_open(t, dir, "assistant", &kind, &t->assist_tc[k], err))
        return ckd_error_prefix(err, "%s", path);
    static const char *const kinds[] = {"", "CLIP model", "classifier"};
    if (kind != t->t_kind)
        return ckd_errorf(err, "%s: %s is a %s and the teacher a %s: an assistant gives what the teacher gives",
                          path, dir, kinds[kind], kinds[t->t_kind]);
    if (t->assist_tc[k].dim != Dt)
        return ckd_errorf(err, "%s: %s embeds in %lld dimensions, the teacher in %lld", path, dir,
                          (long long)t->assist_tc[k].dim, (long long)Dt);
    return 0;
}

/* What entry k gives: towers (1 image, 2 text) and whether class logits. */
static int towers_of(const train_run *t, int k, int *logits)
{
    if (t->assist_tc[k].st) {
        *logits = t->assist_tc[k].n_logits == t->n_classes && t->n_classes > 0;
        return t->t_kind == TEACHER_CLASSIFIER ? 1 : 3;
    }
    *logits = t->assist_img[k] && ckd_rdm_config_of(t->assist_img[k])->n_classes > 0;
    return (t->assist_img[k] ? 1 : 0) | (t->assist_txt[k] ? 2 : 0);
}

/* Every entry must give the same towers (one [A, N, Dt] tensor per tower),
 * and a module's class head must be over the run's classes. */
static int check_entries(train_run *t, ckd_error *err)
{
    static const char *const names[] = {"", "image", "text", "image and text"};
    int heads = 0;
    for (int k = 0; k < t->n_assistants; k++) {
        int logits, towers = towers_of(t, k, &logits);
        int64_t K = t->assist_img[k] ? ckd_rdm_config_of(t->assist_img[k])->n_classes : 0;
        if (K && K != t->n_classes)
            return ckd_errorf(err, "assistants[%d].image: its class head has %lld classes, the training data %lld",
                              k, (long long)K, (long long)t->n_classes);
        if (k && towers != t->assist_towers)
            return ckd_errorf(err, "assistants[%d]: gives the %s tower%s, assistants[0] the %s", k, names[towers],
                              towers == 3 ? "s" : "", names[t->assist_towers]);
        t->assist_towers = towers;
        heads += logits;
    }
    /* class logits when every assistant has them (CIFD's classifier form) */
    t->assist_logits = heads > 0 && heads == t->n_assistants;
    return 0;
}

int train_assistants_load(train_run *t, ckd_error *err)
{
    const json_t *list = json_object_get(t->rj, "assistants"), *a;
    int64_t Dt = !t->teacher                       ? t->tc.dim
                 : t->t_kind == TEACHER_CLASSIFIER ? ckd_model_feature_dim(t->teacher)
                                                   : ckd_model_embed_dim(t->teacher);
    counted seen = {{0}, 0};
    int rc = 0;
    size_t k;
    json_array_foreach(list, k, a)
    {
        if (k >= CKD_MAX_ASSISTANTS) {
            rc = ckd_errorf(err, "assistants: at most %d", CKD_MAX_ASSISTANTS);
            break;
        }
        t->n_assistants = (int)k + 1;
        t->assist_w[k] = (float)json_number_value(json_object_get(a, "weight")); /* the schema's default: 1 */
        if ((json_object_get(a, "model") && load_model(t, k, Dt, &seen, err)) ||
            (json_object_get(a, "image") && !(t->assist_img[k] = load_one(t, k, "image", Dt, &seen, err))) ||
            (json_object_get(a, "text") && !(t->assist_txt[k] = load_one(t, k, "text", Dt, &seen, err)))) {
            rc = -1;
            break;
        }
    }
    for (int i = 0; i < seen.n; i++)
        free(seen.dir[i]);
    if (rc || check_entries(t, err))
        return -1;
    train_message(t, "assistants: %d (%s%s%s%s)", t->n_assistants, t->assist_towers & 1 ? "image" : "",
                  t->assist_towers == 3 ? " and " : "", t->assist_towers & 2 ? "text" : "",
                  t->assist_logits ? ", with class logits" : "");
    return 0;
}

/* Module k's normalised reconstruction of x [N, Dt] into out, and its
 * class head's logits into logits (may be NULL). */
static int reconstruct(train_run *t, ckd_rdm *mod, ckd_tensor *x, float *out, float *logits)
{
    ckd_rdm_out o;
    if (ckd_rdm_forward(mod, t->ctx, x, NULL, &o))
        return -1;
    ckd_tensor *xn = ckd_l2_normalize(t->ctx, o.x_hat, 1e-12f);
    if (!xn)
        return -1;
    memcpy(out, xn->data, (size_t)xn->n * sizeof(float));
    if (logits)
        memcpy(logits, o.logits->data, (size_t)o.logits->n * sizeof(float));
    return 0;
}

/* An [A, n, d] slab for the batch, or NULL when not wanted. */
static ckd_tensor *slab(train_run *t, int want, int64_t n, int64_t d)
{
    return want ? ckd_tensor_new(t->ctx, 3, (int64_t[]){t->n_assistants, n, d}) : NULL;
}

int train_assistants_fill(train_run *t, const ckd_batch *b, ckd_loss_batch *lb, ckd_error *err)
{
    /* The caller has turned gradients and training mode off: no tape, and
     * ckd_rdm_forward rounds the bottleneck. */
    int64_t n = lb->n, D = lb->t_img->shape[1], K = t->n_classes;
    lb->n_assistants = t->n_assistants;
    lb->a_weight = t->assist_w;
    lb->a_img = slab(t, t->assist_towers & 1, n, D);
    lb->a_txt = slab(t, t->assist_towers & 2, n, D);
    lb->a_logits = slab(t, t->assist_logits, n, K);
    if (ckd_ctx_check(t->ctx, err))
        return -1;
    for (int k = 0; k < t->n_assistants; k++) {
        float *img = lb->a_img ? lb->a_img->data + (int64_t)k * n * D : NULL;
        float *txt = lb->a_txt ? lb->a_txt->data + (int64_t)k * n * D : NULL;
        float *logits = lb->a_logits ? lb->a_logits->data + (int64_t)k * n * K : NULL;
        /* a model assistant: its cached embeddings of the batch's samples */
        if (t->assist_tc[k].st ? train_tcache_rows(&t->assist_tc[k], b, img, txt, logits, err)
                               : (img && reconstruct(t, t->assist_img[k], lb->t_img, img, logits)) ||
                                     (txt && reconstruct(t, t->assist_txt[k], lb->t_txt, txt, NULL)))
            return ckd_ctx_failed(t->ctx) ? ckd_ctx_check(t->ctx, err) : -1;
    }
    return 0;
}
