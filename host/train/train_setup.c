/* Building a run from its recipe: the student, the teacher (given directly
 * or trained by its own recipe), the losses and what they need, the data, the
 * optimiser. Every check that can fail without compute is done before the
 * first model is created. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clipkd/blas.h"
#include "clipkd/fetch.h"
#include "clipkd/ops.h"
#include "clipkd/dist.h"
#include "train_internal.h"

double train_num(const json_t *root, const char *path, double fallback)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    const json_t *v = root;
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k && v; k = strtok_r(NULL, ".", &save))
        v = json_object_get(v, k);
    return json_is_number(v) ? json_number_value(v) : fallback;
}

int train_path_join(char *out, size_t cap, const char *dir, const char *file)
{
    int n = snprintf(out, cap, "%s/%s", dir, file);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* Plugin schemas for loading a teacher's recipe, from the registry. */
int ckd_train_plugin_schema(void *user, const char *kind, const char *name, const char **schema_json, ckd_error *err)
{
    const ckd_plugin *p =
        ckd_registry_find(user, !strcmp(kind, "loss") ? CKD_PLUGIN_LOSS : CKD_PLUGIN_MODEL, name, err);
    if (!p)
        return -1;
    *schema_json = p->desc->params_schema ? p->desc->params_schema : "{}";
    return 0;
}

/* Places a library message at a recipe value. */
static int recipe_fail(const train_run *t, const char *json_path, ckd_error *err)
{
    char msg[CKD_ERROR_MAX];
    snprintf(msg, sizeof msg, "%s", err->msg);
    return ckd_recipe_errorf(t->recipe, json_path, err, "%s", msg);
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* The model a "student" or "teacher" object names, its weights not loaded
 * (a random initialisation drawn from seed when init). */
static ckd_model *model_create(const train_run *t, const json_t *obj, const char *role, int init, uint64_t seed,
                               ckd_error *err)
{
    const char *pname = json_string_value(json_object_get(obj, "model"));
    char where[64];
    const ckd_plugin *p = ckd_registry_find(t->reg, CKD_PLUGIN_MODEL, pname ? pname : "", err);
    if (!p)
        return recipe_fail(t, role, err), NULL;
    snprintf(where, sizeof where, "%s.config", role);
    return ckd_model_new(p, json_object_get(obj, "config"), where, init, seed, err);
}

/* The object's "weights" artifact (fetched) into m; nothing without one. */
static int model_weights(const json_t *obj, const char *role, ckd_model *m, ckd_error *err)
{
    const json_t *weights = json_object_get(obj, "weights");
    if (!weights)
        return 0;
    ckd_artifact a;
    char path[TRAIN_PATH_MAX], where[64];
    snprintf(where, sizeof where, "%s.weights", role);
    int rc = ckd_artifact_from_json(weights, &a, where, err) || ckd_fetch(NULL, &a, path, sizeof path, err) ||
                     ckd_model_load(m, path, err)
                 ? -1
                 : 0;
    ckd_artifact_free(&a);
    return rc;
}

/* A model from a recipe's "student" or "teacher" object with "model". */
static ckd_model *model_from(const train_run *t, const json_t *obj, const char *role, int init, uint64_t seed,
                             ckd_error *err)
{
    if (json_object_get(obj, "init_from")) {
        /* A model directory (a run's final/, a Hugging Face CLIP folder):
         * its config.json and weights, read by the clip plugin. */
        char dir[TRAIN_PATH_MAX], jp[64];
        const char *pname = json_string_value(json_object_get(obj, "model"));
        snprintf(jp, sizeof jp, "%s.init_from", role);
        if (!pname || strcmp(pname, "clip"))
            return ckd_recipe_errorf(t->recipe, jp, err, "a model directory is read by the clip plugin, not %s",
                                     pname ? pname : "(none)"), NULL;
        if (ckd_recipe_resolve_path(t->recipe, jp, dir, sizeof dir, err))
            return NULL;
        ckd_model *m = ckd_model_from_pretrained(t->reg, dir, err);
        if (!m)
            recipe_fail(t, jp, err);
        return m;
    }
    ckd_model *m = model_create(t, obj, role, init && !json_object_get(obj, "weights"), seed, err);
    if (m && model_weights(obj, role, m, err)) {
        ckd_model_free(m);
        return NULL;
    }
    return m;
}

/* teacher.recipe: the final/ directory of that recipe's run (trained now
 * unless its final weights exist) under the same runs root. */
int train_recipe_final_dir(train_run *t, const char *json_path, const char *role, char *out, size_t cap,
                           ckd_error *err)
{
    char path[TRAIN_PATH_MAX], dir[TRAIN_PATH_MAX], final[TRAIN_PATH_MAX + 32];
    if (ckd_recipe_resolve_path(t->recipe, json_path, path, sizeof path, err))
        return -1;
    ckd_recipe *tr = ckd_recipe_load(path, NULL, 0, ckd_train_plugin_schema, (void *)t->reg, err);
    if (!tr)
        return ckd_error_prefix(err, "%s", json_path);
    ckd_train_run_dir(tr, t->runs_root, dir, sizeof dir);
    snprintf(final, sizeof final, "%s/final/model.safetensors", dir);
    if (!file_exists(final)) {
        ckd_train_opts o = *t->opts;
        o.out_dir = NULL;
        o.runs_root = t->runs_root;
        o.sets = NULL;
        o.n_sets = 0;
        o.stop_after = 0;
        o.dump_steps = 0;
        o.dump_dir = NULL;
        train_message(t, "training the %s (%s) in %s", role, path, dir);
        if (ckd_train_run(t->reg, tr, &o, NULL, 0, err)) {
            ckd_error_prefix(err, "%s %s", role, path);
            ckd_recipe_free(tr);
            return -1;
        }
    }
    ckd_recipe_free(tr);
    if (strlen(dir) > 4000 || cap < 4010)
        return ckd_errorf(err, "%s: path too long", dir);
    snprintf(out, cap, "%.4000s/final", dir);
    return 0;
}

ckd_model *train_model_shell(train_run *t, const char *dir, char *weights_id, size_t cap, ckd_error *err)
{
    char p[TRAIN_PATH_MAX + 32], hex[65];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    if (ckd_sha256_file(p, hex, NULL, err))
        return NULL;
    snprintf(weights_id, cap, "sha256:%s", hex);
    return ckd_model_from_dir_config(t->reg, dir, err);
}

ckd_model *train_teacher_shell(train_run *t, char *weights_id, size_t cap, ckd_error *err)
{
    const json_t *teacher = json_object_get(t->rj, "teacher");
    if (t->teacher_dir[0]) {
        ckd_model *m = train_model_shell(t, t->teacher_dir, weights_id, cap, err);
        return m ? m : (ckd_error_prefix(err, "teacher"), NULL);
    }
    const json_t *weights = json_object_get(teacher, "weights");
    uint64_t seed = (uint64_t)train_num(t->rj, "seed", 0);
    if (weights) {
        ckd_artifact a;
        if (ckd_artifact_from_json(weights, &a, "teacher.weights", err))
            return NULL;
        snprintf(weights_id, cap, "sha256:%s", a.sha256);
        ckd_artifact_free(&a);
    } else {
        snprintf(weights_id, cap, "init:%llu", (unsigned long long)seed);
    }
    return model_create(t, teacher, "teacher", !weights, seed, err);
}

int train_teacher_kind(const ckd_model *m, ckd_error *err)
{
    if (ckd_model_has_text(m))
        return TEACHER_CLIP;
    if (ckd_model_feature_dim(m) > 0)
        return TEACHER_CLASSIFIER;
    return ckd_errorf(err, "model %s is %s: a teacher is a two-tower CLIP model, or a classifier whose head runs on "
                           "its features (feature_dim)",
                      ckd_model_plugin_name(m),
                      ckd_model_is_classifier(m) ? "a classifier without a separate head" : "an image encoder without text");
}

int train_teacher_fill(train_run *t, ckd_model *m, ckd_error *err)
{
    if (t->teacher_dir[0])
        return ckd_model_load(m, t->teacher_dir, err) ? ckd_error_prefix(err, "teacher") : 0;
    return model_weights(json_object_get(t->rj, "teacher"), "teacher", m, err);
}

/* The teacher: run forward on every batch (t->teacher), or read from the
 * embedding cache (t->tc). */
static int make_teacher(train_run *t, const json_t *teacher, ckd_error *err)
{
    const char *mode = json_string_value(json_object_get(teacher, "mode"));
    if (json_object_get(teacher, "recipe") &&
        train_recipe_final_dir(t, "teacher.recipe", "teacher", t->teacher_dir, sizeof t->teacher_dir, err))
        return -1;
    if (!mode || !strcmp(mode, "cache"))
        return train_teacher_cache_open(t, err);
    uint64_t seed = (uint64_t)train_num(t->rj, "seed", 0);
    t->teacher = t->teacher_dir[0] ? ckd_model_from_pretrained(t->reg, t->teacher_dir, err)
                                   : model_from(t, teacher, "teacher", 1, seed, err);
    if (!t->teacher || (t->t_kind = train_teacher_kind(t->teacher, err)) < 0)
        return ckd_error_prefix(err, "teacher");
    /* A fixed teacher: no tape, no gradients. */
    for (int i = 0; i < ckd_model_n_params(t->teacher); i++)
        ckd_model_param(t->teacher, i)->requires_grad = 0;
    return 0;
}

/* What the run can put in a loss batch. Class names with templates give
 * class prompts: the student's own zero-shot logits, and with a CLIP teacher
 * its class embeddings and logits; a classifier teacher gives its logits on
 * any data with classes; labels with a teacher give class centroids. Before
 * the teacher is set up (t_kind unknown) it may be either kind. */
static uint32_t available(const train_run *t, int has_teacher, int has_classes)
{
    int has_prompts = has_classes && ckd_dataset_n_templates(t->train_ds) > 0;
    int clip_t = has_teacher && t->t_kind != TEACHER_CLASSIFIER, cls_t = has_teacher && t->t_kind != TEACHER_CLIP;
    uint32_t a = CKD_NEED_S_IMG | (t->s_image_only ? 0 : CKD_NEED_S_TXT) | CKD_NEED_S_IMG_MASKED;
    /* the bottleneck sits on an embedding, or before a classifier's own head */
    if (!t->s_classifier || t->s_feat)
        a |= CKD_NEED_S_IMG_NOISY;
    if (has_teacher)
        a |= CKD_NEED_T_IMG;
    if (clip_t)
        a |= CKD_NEED_T_TXT;
    if (has_classes)
        a |= CKD_NEED_LABELS;
    /* s_logits: a classifier's outputs; an image-only encoder's zero-shot
     * logits against the teacher's class prompts; else the student's own */
    if (t->s_classifier ? has_classes : has_prompts && (!t->s_image_only || clip_t))
        a |= CKD_NEED_S_LOGITS;
    if (has_teacher && has_classes)
        a |= CKD_NEED_CENTROIDS;
    if (clip_t && has_prompts)
        a |= CKD_NEED_CLASS_TXT | CKD_NEED_T_LOGITS;
    if (cls_t && has_classes)
        a |= CKD_NEED_T_LOGITS;
    return a;
}

/* Why the run cannot give what is missing: every reason that applies. */
static void missing_why(const train_run *t, uint32_t missing, int has_teacher, int has_classes, char *out,
                        size_t cap)
{
    const uint32_t from_teacher =
        CKD_NEED_T_IMG | CKD_NEED_T_TXT | CKD_NEED_CLASS_TXT | CKD_NEED_T_LOGITS | CKD_NEED_CENTROIDS;
    const uint32_t from_classes =
        CKD_NEED_LABELS | CKD_NEED_CLASS_TXT | CKD_NEED_S_LOGITS | CKD_NEED_T_LOGITS | CKD_NEED_CENTROIDS;
    const uint32_t from_prompts = CKD_NEED_CLASS_TXT | CKD_NEED_S_LOGITS | CKD_NEED_T_LOGITS;
    const char *why[6];
    int n = 0;
    if (!has_teacher && (missing & from_teacher))
        why[n++] = "the recipe has no teacher";
    if (!has_classes && (missing & from_classes))
        why[n++] = "the training data has no classes";
    if (has_classes && !ckd_dataset_n_templates(t->train_ds) && (missing & from_prompts))
        why[n++] = "the training data has no prompt templates for its class names";
    if (t->s_image_only && (missing & (CKD_NEED_S_TXT | CKD_NEED_S_LOGITS)))
        why[n++] = "the student has no text tower (an image-only model: use losses on its image embeddings,"
                   " e.g. l2, vl, or kd/ce on zero-shot logits from the teacher's class prompts)";
    if (t->t_kind == TEACHER_CLASSIFIER && (missing & (CKD_NEED_T_TXT | CKD_NEED_CLASS_TXT | CKD_NEED_S_LOGITS)))
        why[n++] = "the teacher is a classifier (no text tower: it gives its features as t_img and its class "
                   "logits as t_logits)";
    if (missing & CKD_NEED_S_IMG_NOISY)
        why[n++] = "the student is a classifier whose head cannot run apart from it (no feature_dim)";
    size_t len = 0;
    snprintf(out, cap, "this trainer does not provide it");
    for (int i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? " and " : "", why[i]);
}

/* What the host reads from a loss's parameters to build its inputs: the
 * masking ratio of s_img_masked, and the images per class of the centroids
 * (-1 until a loss declares it; a run has one set of centroids, so the
 * losses that declare it must agree). */
static int host_settings(train_run *t, const json_t *l, uint32_t needs, const char *path, ckd_error *err)
{
    const json_t *params = json_object_get(l, "params");
    if (needs & CKD_NEED_S_IMG_MASKED)
        t->keep_ratio = (float)(1.0 - train_num(params, "mask_ratio", 0.5));
    if ((needs & CKD_NEED_S_IMG_NOISY) && !json_is_false(json_object_get(params, "ibm")))
        t->ibm_noise = 1;
    if (!(needs & CKD_NEED_CENTROIDS) || !json_is_number(json_object_get(params, "centroid_images")))
        return 0;
    int64_t n = (int64_t)train_num(params, "centroid_images", 0);
    if (t->centroid_images >= 0 && n != t->centroid_images)
        return ckd_recipe_errorf(t->recipe, path, err,
                                 "centroid_images %lld differs from the %lld of an earlier loss: a run has one set "
                                 "of class centroids",
                                 (long long)n, (long long)t->centroid_images);
    t->centroid_images = n;
    return 0;
}

/* Refuses losses that need what the run cannot give, before any compute. */
static int check_needs(train_run *t, int has_teacher, int has_classes, ckd_error *err)
{
    const json_t *losses = json_object_get(t->rj, "losses");
    uint32_t have = available(t, has_teacher, has_classes);
    t->centroid_images = -1;
    t->needs = 0;
    t->ibm_noise = 0;
    if (json_array_size(losses) > CKD_TRAIN_MAX_TERMS)
        return ckd_recipe_errorf(t->recipe, "losses", err, "at most %d losses", CKD_TRAIN_MAX_TERMS);
    for (size_t i = 0; i < json_array_size(losses); i++) {
        const json_t *l = json_array_get(losses, i);
        const char *name = json_string_value(json_object_get(l, "name"));
        char path[64], buf[256], why[256];
        snprintf(path, sizeof path, "losses[%zu]", i);
        const ckd_plugin *p = ckd_registry_find(t->reg, CKD_PLUGIN_LOSS, name, err);
        if (!p)
            return recipe_fail(t, path, err);
        uint32_t needs = p->desc->loss->needs, missing = needs & ~have;
        if (missing) {
            missing_why(t, missing, has_teacher, has_classes, why, sizeof why);
            return ckd_recipe_errorf(t->recipe, path, err, "loss \"%s\" needs %s: %s", name,
                                     ckd_loss_needs_str(missing, buf, sizeof buf), why);
        }
        if (host_settings(t, l, needs, path, err))
            return -1;
        t->needs |= needs;
    }
    /* an image-only encoder's s_logits are built on the teacher's class prompts */
    if (t->s_image_only && !t->s_classifier && (t->needs & CKD_NEED_S_LOGITS))
        t->needs |= CKD_NEED_CLASS_TXT;
    if (t->centroid_images < 0)
        t->centroid_images = 100; /* CLIP-Embed-KD's n */
    return 0;
}

static int make_losses(train_run *t, ckd_error *err)
{
    const json_t *losses = json_object_get(t->rj, "losses");
    /* a classifier takes part through its features (clipkd/plugin.h) */
    ckd_loss_dims dims = {.s_dim = t->s_feat ? ckd_model_feature_dim(t->student) : ckd_model_embed_dim(t->student),
                          .t_dim = !t->teacher                       ? t->tc.dim
                                   : t->t_kind == TEACHER_CLASSIFIER ? ckd_model_feature_dim(t->teacher)
                                                                     : ckd_model_embed_dim(t->teacher),
                          .n_classes = t->n_classes};
    uint64_t seed = (uint64_t)train_num(t->rj, "seed", 0);
    for (size_t i = 0; i < json_array_size(losses); i++) {
        const json_t *l = json_array_get(losses, i);
        char where[64];
        snprintf(where, sizeof where, "losses[%zu].params", i);
        const ckd_plugin *p =
            ckd_registry_find(t->reg, CKD_PLUGIN_LOSS, json_string_value(json_object_get(l, "name")), err);
        /* Each loss draws its own parameters from its own stream. */
        if (!p || !(t->loss[i] = ckd_loss_new(p, json_object_get(l, "params"), where, &dims,
                                              seed * 1000003u + 17u * (i + 1), err)))
            return -1;
        t->weight[i] = train_num(l, "weight", 1.0);
        t->n_losses = (int)i + 1;
    }
    return 0;
}

static int make_optimizer(train_run *t, ckd_error *err)
{
    int n = ckd_model_n_params(t->student);
    for (int i = 0; i < t->n_losses; i++)
        n += ckd_loss_n_params(t->loss[i]);
    t->params = calloc((size_t)n, sizeof *t->params);
    double *wd = calloc((size_t)n, sizeof *wd);
    if (!t->params || !wd) {
        free(wd);
        return ckd_errorf(err, "out of memory");
    }
    double decay = train_num(t->rj, "optim.weight_decay", 0.1);
    int k = 0;
    for (int i = 0; i < ckd_model_n_params(t->student); i++)
        t->params[k++] = ckd_model_param(t->student, i);
    t->n_model_params = k;
    for (int i = 0; i < t->n_losses; i++)
        for (int j = 0; j < ckd_loss_n_params(t->loss[i]); j++)
            t->params[k++] = ckd_loss_param(t->loss[i], j);
    t->n_params = k;
    for (int i = 0; i < k; i++)
        wd[i] = ckd_adamw_default_decay(t->params[i]) ? decay : 0.0;
    const json_t *betas = json_object_get(json_object_get(t->rj, "optim"), "betas");
    ckd_adamw_opts o = {.lr = t->lr,
                        .beta1 = json_is_number(json_array_get(betas, 0)) ? json_number_value(json_array_get(betas, 0)) : 0.9,
                        .beta2 = json_is_number(json_array_get(betas, 1)) ? json_number_value(json_array_get(betas, 1)) : 0.98,
                        .eps = train_num(t->rj, "optim.eps", 1e-6)};
    t->opt = ckd_adamw_new(t->params, wd, k, &o, err);
    free(wd);
    return t->opt ? 0 : ckd_error_prefix(err, "optim");
}

/* train.augment: on unless false. */
static int augments(const train_run *t)
{
    return !json_is_false(json_object_get(json_object_get(t->rj, "train"), "augment"));
}

/* t->views (see train_run). A cached teacher with augmentation always
 * replays views (one by default), so that the embedding the cache gives is
 * of the image the student sees; a live teacher sees the student's pixels
 * whatever they are, and replays views only when the recipe asks. */
static int setup_views(train_run *t, const json_t *teacher, ckd_error *err)
{
    const json_t *v = json_object_get(teacher, "views");
    int augment = augments(t);
    int K = v ? (int)json_integer_value(v) : 1;
    const char *mode = json_string_value(json_object_get(teacher, "mode"));
    if (!augment && K > 1)
        return ckd_recipe_errorf(t->recipe, "teacher.views", err,
                                 "%d views of each image need augmentation, and train.augment is off (without it "
                                 "an image has one view)",
                                 K);
    t->views = !teacher || !augment ? 0 : (mode && !strcmp(mode, "live") && !v) ? 0 : K;
    return 0;
}

static int make_loader(train_run *t, ckd_error *err)
{
    const ckd_model_info *si = ckd_model_get_info(t->student);
    /* token rows for the towers that read captions: an image-only student's
     * teacher's, or CLIP's 77 when nothing reads them */
    int64_t T = t->s_image_only ? CKD_TOKENIZER_CONTEXT_LEN : si->context_length;
    if (t->s_image_only && t->teacher && t->t_kind == TEACHER_CLIP)
        T = ckd_model_get_info(t->teacher)->context_length;
    if (t->teacher) { /* live; the cache has the teacher's own preprocessing */
        const ckd_model_info *ti = ckd_model_get_info(t->teacher);
        if (ti->image_size != si->image_size)
            return ckd_recipe_errorf(t->recipe, "teacher", err,
                                     "the teacher takes %lld-pixel images, the student %lld: a live teacher sees the "
                                     "student's pixels, so both must be the same",
                                     (long long)ti->image_size, (long long)si->image_size);
        if (t->t_kind == TEACHER_CLIP && ti->context_length < T)
            T = ti->context_length; /* both towers read the same token rows */
    }
    ckd_loader_opts lo;
    ckd_loader_opts_init(&lo);
    lo.batch_size = (int)train_num(t->rj, "train.batch_size", 64);
    lo.drop_last = 1;
    lo.seed = (uint64_t)train_num(t->rj, "seed", 0);
    lo.augment = augments(t);
    lo.views = t->views;
    lo.image_size = (int)si->image_size;
    lo.tokenizer = t->tok;
    lo.context_len = (int)T;
    lo.threads = 1;
    lo.prefetch = 4;
    lo.shard = ckd_dist_rank(); /* under MPI, this rank's part of each global batch */
    lo.shards = ckd_dist_size();
    if (!(t->loader = ckd_loader_new(t->train_ds, &lo, err)))
        return ckd_error_prefix(err, "data.train");
    int64_t bpe = ckd_loader_batches_per_epoch(t->loader);
    t->steps_per_epoch = bpe / t->accum > 0 ? bpe / t->accum : 1;
    int64_t steps = (int64_t)train_num(t->rj, "train.steps", 0);
    t->total_steps = steps > 0 ? steps : (int64_t)train_num(t->rj, "train.epochs", 1) * bpe / t->accum;
    if (t->total_steps < 1)
        t->total_steps = 1;
    return 0;
}

ckd_loader_cursor train_cursor_for(const train_run *t, int64_t step)
{
    int64_t bpe = ckd_loader_batches_per_epoch(t->loader), mb = step * t->accum;
    return (ckd_loader_cursor){.epoch = mb / bpe, .batch = mb % bpe};
}

/* The student's class prompts, tokenised once for its s_logits: the
 * dataset's templates, the student's context length, as its evaluation. */
static int make_student_prompts(train_run *t, ckd_error *err)
{
    ckd_eval_opts eo;
    ckd_eval_opts_init(&eo);
    t->s_prompt_len = ckd_model_get_info(t->student)->context_length;
    if (train_class_prompt_ids(t->train_ds, t->tok, &eo, t->s_prompt_len, &t->s_prompts, &t->s_prompt_nt, err))
        return ckd_error_prefix(err, "student class prompts");
    return 0;
}

/* The teacher's class-prompt embeddings [K, Dt] for class_txt and t_logits. */
static int make_class_txt(train_run *t, ckd_error *err)
{
    int64_t K = t->n_classes, D = ckd_model_embed_dim(t->teacher);
    ckd_eval_opts eo;
    ckd_eval_opts_init(&eo);
    if (!(t->class_txt = ckd_param_new(2, (int64_t[]){K, D}, "class_txt", err)))
        return -1;
    t->class_txt->requires_grad = 0;
    t->teacher_encoded += K * (int64_t)ckd_dataset_n_templates(t->train_ds);
    int rc = train_class_embeddings(t->teacher, t->ctx, t->tok, t->train_ds, &eo,
                                    ckd_model_get_info(t->teacher)->context_length, t->class_txt->data, err);
    ckd_ctx_reset(t->ctx);
    return rc ? ckd_error_prefix(err, "teacher class prompts") : 0;
}

/* An image-only student is classified with the teacher's text tower, so
 * its embedding must have the teacher's width; in cache mode the teacher is
 * loaded for evaluation (only when there is an evaluation set). */
static int image_only_checks(train_run *t, ckd_error *err)
{
    if (t->s_classifier || t->t_kind != TEACHER_CLIP) /* nothing here reads the teacher's text tower */
        return 0;
    int64_t ds = ckd_model_embed_dim(t->student), dt = t->teacher ? ckd_model_embed_dim(t->teacher) : t->tc.dim;
    if (ds != dt && (t->needs & CKD_NEED_S_LOGITS))
        return ckd_recipe_errorf(t->recipe, "student", err,
                                 "the image-only student embeds in %lld dimensions, the teacher in %lld: its"
                                 " zero-shot logits use the teacher's class prompts, so the widths must agree",
                                 (long long)ds, (long long)dt);
    if (t->teacher || !json_object_get(json_object_get(t->rj, "data"), "eval"))
        return 0;
    char id[96];
    if (!(t->text_teacher = train_teacher_shell(t, id, sizeof id, err)) ||
        train_teacher_fill(t, t->text_teacher, err))
        return ckd_error_prefix(err, "teacher (for the image-only student's evaluation)");
    return 0;
}

/* A classifier (student or teacher: role) of K outputs must classify the
 * training data's classes, when its logits are read: a mismatch would only
 * show as a shape error mid-step, or as labels it cannot predict. */
static int class_count_checks(train_run *t, const char *role, int64_t K, ckd_error *err)
{
    if (!K || K == t->n_classes || !(t->needs & (CKD_NEED_S_LOGITS | CKD_NEED_T_LOGITS | CKD_NEED_LABELS)))
        return 0;
    return ckd_recipe_errorf(t->recipe, role, err,
                             "the %s classifies into %lld classes, the training data has %lld (data.train)", role,
                             (long long)K, (long long)t->n_classes);
}

/* What every run needs first: its thread count and its training data. */
static int setup_threads_and_data(train_run *t, ckd_error *err)
{
    int threads = (int)train_num(t->rj, "threads", 0);
    if (threads > 0)
        ckd_set_threads(threads);
    if (!(t->train_ds = ckd_dataset_open(json_object_get(json_object_get(t->rj, "data"), "train"), t->base_dir, err)))
        return ckd_error_prefix(err, "data.train");
    return 0;
}

/* The tokenizer (captions, prompts) and the step context, seeded by the recipe. */
static int setup_tokenizer_and_ctx(train_run *t, ckd_error *err)
{
    uint64_t seed = (uint64_t)train_num(t->rj, "seed", 0);
    if (!(t->tok = ckd_tokenizer_load_default(err)) || !(t->ctx = ckd_ctx_new(0, seed ^ 0x9e3779b97f4a7c15ull, err)))
        return -1;
    return 0;
}

int train_setup(train_run *t, ckd_error *err)
{
    const json_t *rj = t->rj;
    uint64_t seed = (uint64_t)train_num(rj, "seed", 0);
    t->lr = train_num(rj, "optim.lr", 1e-3);
    t->warmup = (int64_t)train_num(rj, "optim.warmup_steps", 0);
    t->grad_clip = train_num(rj, "optim.grad_clip", 0);
    const char *sched = json_string_value(json_object_get(json_object_get(rj, "optim"), "schedule"));
    t->cosine = !sched || !strcmp(sched, "cosine");
    t->accum = (int64_t)train_num(rj, "train.accum", 1);
    t->log_every = (int64_t)train_num(rj, "train.log_every", 10);
    t->eval_every = (int64_t)train_num(rj, "train.eval_every", 0);
    t->ckpt_every = (int64_t)train_num(rj, "train.checkpoint_every", 0);
    t->keep_ratio = 1.0f;
    const json_t *teacher = json_object_get(rj, "teacher");

    /* Data first: cheap, and the needs check depends on it. */
    if (setup_threads_and_data(t, err))
        return -1;
    int has_classes = ckd_dataset_n_classes(t->train_ds) > 0;
    t->n_classes = (int64_t)ckd_dataset_n_classes(t->train_ds);
    /* The student next (an allocation): which towers it has decides what the
     * losses can read. */
    if (!(t->student = model_from(t, json_object_get(rj, "student"), "student", 1, seed, err)))
        return -1;
    t->s_image_only = !ckd_model_has_text(t->student);
    t->s_classifier = ckd_model_is_classifier(t->student);
    t->s_feat = ckd_model_feature_dim(t->student) > 0;
    if (check_needs(t, teacher != NULL, has_classes, err))
        return -1;
    if (setup_tokenizer_and_ctx(t, err))
        return -1;
    if (class_count_checks(t, "student", t->s_classifier ? ckd_model_embed_dim(t->student) : 0, err))
        return -1;
    if (setup_views(t, teacher, err))
        return -1;
    /* The teacher's kind is known once it is set up: check again, exactly. */
    if (teacher && (make_teacher(t, teacher, err) || check_needs(t, 1, has_classes, err)))
        return -1;
    if (teacher && t->t_kind == TEACHER_CLASSIFIER &&
        class_count_checks(t, "teacher", t->teacher ? ckd_model_embed_dim(t->teacher) : t->tc.n_logits, err))
        return -1;
    if (teacher && t->s_image_only && image_only_checks(t, err))
        return -1;
    if (json_object_get(rj, "assistants") && train_assistants_load(t, err))
        return -1;
    if (make_loader(t, err) || make_losses(t, err) || make_optimizer(t, err) || train_dist_init(t, err))
        return -1;
    if (t->teacher && t->t_kind == TEACHER_CLIP && (t->needs & (CKD_NEED_CLASS_TXT | CKD_NEED_T_LOGITS)) &&
        make_class_txt(t, err))
        return -1;
    if ((t->needs & CKD_NEED_S_LOGITS) && !t->s_image_only && make_student_prompts(t, err))
        return -1;
    if ((t->needs & CKD_NEED_CENTROIDS) && train_centroids(t, err))
        return -1;
    /* A run whose losses read the teacher only through what setup copied —
     * class centroids (CLIP-Embed-KD's setting), the logit scale — keeps no
     * per-sample embeddings mapped: its memory is the student's. */
    const uint32_t per_batch = CKD_NEED_T_IMG | CKD_NEED_T_TXT | CKD_NEED_T_LOGITS | CKD_NEED_CLASS_TXT;
    if (t->tc.st && !t->n_assistants && !(t->needs & per_batch)) {
        ckd_st_close(t->tc.st);
        memset(&t->tc, 0, sizeof t->tc);
    }
    return 0;
}

int train_setup_teacher_only(train_run *t, ckd_error *err)
{
    if (setup_threads_and_data(t, err) || setup_tokenizer_and_ctx(t, err))
        return -1;
    return make_teacher(t, json_object_get(t->rj, "teacher"), err);
}

void train_free(train_run *t)
{
    train_dist_free(t);
    ckd_adamw_free(t->opt);
    free(t->params);
    for (int i = 0; i < t->n_losses; i++)
        ckd_loss_free(t->loss[i]);
    ckd_param_free(t->class_txt);
    ckd_param_free(t->centroids);
    free(t->s_prompts);
    ckd_param_free(t->t_scale);
    ckd_st_close(t->tc.st);
    ckd_loader_free(t->loader);
    ckd_dataset_close(t->train_ds);
    ckd_model_free(t->student);
    ckd_model_free(t->teacher);
    ckd_model_free(t->text_teacher);
    for (int i = 0; i < t->n_assistants; i++) {
        ckd_rdm_free(t->assist_img[i]);
        ckd_rdm_free(t->assist_txt[i]);
        ckd_st_close(t->assist_tc[i].st);
    }
    ckd_tokenizer_free(t->tok);
    ckd_ctx_free(t->ctx);
    memset(t, 0, sizeof *t);
}
