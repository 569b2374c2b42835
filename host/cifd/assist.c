/* CIFD's teaching assistants inside a student's run: the recipe's
 * "assistants" name rdm recipes (one per tower); their runs are trained first
 * when missing (as a teacher recipe's is), their modules loaded, and on every
 * batch each reconstructs the teacher's embeddings of the batch in inference
 * mode (rounded bottleneck), L2-normalised, into the loss batch's a_img /
 * a_txt [A, N, Dt] with the weights a_weight (clipkd/plugin.h, ABI minor 2).
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

int train_assistants_load(train_run *t, ckd_error *err)
{
    const json_t *list = json_object_get(t->rj, "assistants"), *a;
    int64_t Dt = t->teacher ? ckd_model_embed_dim(t->teacher) : t->tc.dim;
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
        if ((json_object_get(a, "image") && !(t->assist_img[k] = load_one(t, k, "image", Dt, &seen, err))) ||
            (json_object_get(a, "text") && !(t->assist_txt[k] = load_one(t, k, "text", Dt, &seen, err)))) {
            rc = -1;
            break;
        }
    }
    for (int i = 0; i < seen.n; i++)
        free(seen.dir[i]);
    if (rc)
        return -1;
    train_message(t, "assistants: %d (%s%s%s)", t->n_assistants, t->assist_img[0] ? "image" : "",
                  t->assist_img[0] && t->assist_txt[0] ? " and " : "", t->assist_txt[0] ? "text" : "");
    return 0;
}

/* [A, N, Dt]: every module's normalised reconstruction of x [N, Dt]. */
static ckd_tensor *reconstruct(train_run *t, ckd_rdm *const *mods, ckd_tensor *x)
{
    ckd_ctx *c = t->ctx;
    int64_t n = x->shape[0], D = x->shape[1];
    ckd_tensor *out = ckd_tensor_new(c, 3, (int64_t[]){t->n_assistants, n, D});
    for (int k = 0; out && k < t->n_assistants; k++) {
        ckd_rdm_out o;
        if (ckd_rdm_forward(mods[k], c, x, NULL, &o))
            return NULL;
        ckd_tensor *xn = ckd_l2_normalize(c, o.x_hat, 1e-12f);
        if (!xn)
            return NULL;
        memcpy(out->data + (int64_t)k * n * D, xn->data, (size_t)(n * D) * sizeof(float));
    }
    return out;
}

int train_assistants_fill(train_run *t, ckd_loss_batch *lb, ckd_error *err)
{
    /* The caller has turned gradients and training mode off: no tape, and
     * ckd_rdm_forward rounds the bottleneck. */
    lb->n_assistants = t->n_assistants;
    lb->a_weight = t->assist_w;
    if (t->assist_img[0] && !(lb->a_img = reconstruct(t, t->assist_img, lb->t_img)))
        return ckd_ctx_check(t->ctx, err);
    if (t->assist_txt[0] && !(lb->a_txt = reconstruct(t, t->assist_txt, lb->t_txt)))
        return ckd_ctx_check(t->ctx, err);
    return 0;
}
