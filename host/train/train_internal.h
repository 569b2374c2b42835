/* What the trainer's files share: one run's state, built from a recipe by
 * train_setup.c, stepped by trainer.c, saved and restored by checkpoint.c. */
#ifndef CKD_TRAIN_INTERNAL_H
#define CKD_TRAIN_INTERNAL_H

#include <stdint.h>

#include "clipkd/data.h"
#include "clipkd/loader.h"
#include "clipkd/loss.h"
#include "clipkd/optim.h"
#include "clipkd/rdm.h"
#include "clipkd/recipe.h"
#include "clipkd/safetensors.h"
#include "clipkd/tokenizer.h"
#include "clipkd/train.h"

#define TRAIN_PATH_MAX 4096

/* A teacher embedding cache entry, memory-mapped (teacher_cache.c): for
 * dataset sample i, its image embedding img[i] and the embeddings of its
 * captions, rows off[i] .. off[i + 1] - 1 of txt (normalised, dim floats
 * each); valid[i] = 0 where the sample could not be read; labels[i] its
 * class (-1: none), NULL in an entry written before labels were kept. */
typedef struct train_tcache {
    ckd_safetensors *st;
    const float *img, *txt;
    const int64_t *off;
    const uint8_t *valid;
    const int32_t *labels;
    const float *logits;              /* [views·n, n_logits]: a classifier teacher's class logits, or NULL */
    int64_t n, n_txt, dim, n_logits;
    int64_t views;                    /* image rows per sample: view v of sample i is row v·n + i (1: the un-augmented image) */
    char path[TRAIN_PATH_MAX];
} train_tcache;

/* What the teacher is (train_teacher_kind): a two-tower CLIP model, or a
 * classifier with a separate head (its features are t_img, its outputs
 * t_logits; no text). Unknown until the teacher is set up. */
enum { TEACHER_UNKNOWN, TEACHER_CLIP, TEACHER_CLASSIFIER };

typedef struct train_run {
    const ckd_registry *reg;
    const ckd_recipe *recipe;
    const json_t *rj;                 /* the resolved recipe (borrowed) */
    const ckd_train_opts *opts;
    char name[256];
    char dir[TRAIN_PATH_MAX];         /* the run directory */
    char base_dir[TRAIN_PATH_MAX];    /* the recipe's directory (data paths) */
    char runs_root[TRAIN_PATH_MAX];

    ckd_model *student, *teacher;     /* teacher: NULL in cache mode */
    /* An image-only student (no text tower): its zero-shot logits use the
     * teacher's class prompts and scale; a classifier's are its outputs.
     * text_teacher: the teacher model loaded for evaluating it in cache
     * mode (its text tower classifies the student's images), or NULL. */
    int s_image_only, s_classifier;
    /* s_feat: the student is a classifier with a separate head, so s_img is
     * its features and s_logits its head's output; ibm_noise: a loss reading
     * s_img_noisy wants the bottleneck's noise (CKD_NEED_S_IMG_NOISY). */
    int s_feat, ibm_noise;
    int t_kind;                       /* TEACHER_* */
    ckd_model *text_teacher;
    char teacher_dir[TRAIN_PATH_MAX]; /* teacher.recipe's final/, or "" */
    char teacher_weights[96];         /* cache mode: what identifies its weights ("sha256:..."), or "" */
    train_tcache tc;                  /* cache mode: the embeddings */
    ckd_tensor *t_scale;              /* cache mode: the teacher's logit scale */
    int64_t teacher_encoded;          /* images and texts the teacher encoded */
    /* Replayed augmented views (teacher.views; ckd_loader_opts.views): 0,
     * a fresh crop each epoch (no augmentation, or a live teacher without
     * the key); V > 0, V crops per image that the loader replays and the
     * teacher-embedding cache holds the teacher's embedding of, each. */
    int views;
    /* CIFD's teaching assistants (recipe "assistants"): per entry the
     * rate-distortion module of each tower (NULL where the entry has none)
     * and its weight; they reconstruct the teacher's embeddings of every
     * batch (host/cifd/assist.c). */
    ckd_rdm *assist_img[CKD_MAX_ASSISTANTS], *assist_txt[CKD_MAX_ASSISTANTS];
    float assist_w[CKD_MAX_ASSISTANTS];
    int n_assistants;
    /* model assistants (recipe "assistants"[k].model): their embedding
     * caches (st NULL for a module assistant) */
    train_tcache assist_tc[CKD_MAX_ASSISTANTS];
    int assist_towers;                /* 1 image, 2 text: what every assistant gives */
    int assist_logits;                /* every assistant gives class logits: a_logits */
    double assist_seconds;            /* their runs' stage-1 training time, summed */
    ckd_loss *loss[CKD_TRAIN_MAX_TERMS];
    double weight[CKD_TRAIN_MAX_TERMS];
    int n_losses;
    uint32_t needs;                   /* union of the losses' needs */
    float keep_ratio;                 /* student image tower for s_img_masked */

    ckd_dataset *train_ds;
    ckd_loader *loader;
    ckd_tokenizer *tok;
    ckd_ctx *ctx;
    ckd_tensor *class_txt;            /* [K, Dt] teacher class prompts, or NULL */
    int64_t n_classes;
    /* s_logits: the student's class prompts as token rows [K · NT, T] */
    int32_t *s_prompts;
    int64_t s_prompt_nt, s_prompt_len;
    ckd_tensor *centroids;            /* [K, Dt] teacher class centroids, or NULL */
    int64_t centroid_images;          /* images per class in a centroid (0: all) */

    ckd_tensor **params;              /* student parameters, then loss-owned ones */
    int n_params, n_model_params;
    ckd_adamw *opt;

    /* The loop's settings. */
    int64_t total_steps, steps_per_epoch, accum, log_every, eval_every, ckpt_every;
    double lr, grad_clip;
    int64_t warmup;
    int cosine;

    /* Where the loop is: optimiser steps done, and the last step's loss
     * terms (checkpointed: results.json reports them after a resume too). */
    int64_t step;
    double last_terms[CKD_TRAIN_MAX_TERMS], last_total;

    /* Data-parallel training (train_dist.c): the ranks, each rank's shard
     * size in the current micro-batch, the global batch's sample list, the
     * gradient sum (host/dist/grad_sync.c). */
    int world, rank;
    int64_t *counts;
    ckd_batch gbatch;
    struct ckdi_grad_sync *gsync;
} train_run;

/* train_setup.c: everything the recipe names, checked before any compute. */
int train_setup(train_run *t, ckd_error *err);
void train_free(train_run *t);
/* The final/ directory of the run of the recipe named at json_path (e.g.
 * "teacher.recipe"), training it first under t->runs_root when it has not
 * finished; role names it in messages. */
int train_recipe_final_dir(train_run *t, const char *json_path, const char *role, char *out, size_t cap,
                           ckd_error *err);
/* host/cifd/assist.c: the recipe's assistants loaded (their rdm runs trained
 * first when missing) and checked against the teacher's width; then, per
 * batch, lb's a_img / a_txt / a_weight from lb's teacher embeddings. */
int train_assistants_load(train_run *t, ckd_error *err);
int train_assistants_fill(train_run *t, const ckd_batch *b, ckd_loss_batch *lb, ckd_error *err);
/* For runs without a student (a CIFD rate-distortion module's stage 1): the
 * training data, the tokenizer, the context and the cached teacher (t->tc). */
int train_setup_teacher_only(train_run *t, ckd_error *err);
/* host/cifd/rdm_run.c: stage 1 of an "rdm" recipe on t->tc, writing
 * final/ and results.json into t->dir. */
int train_rdm_stage(train_run *t, ckd_error *err);
/* The loader cursor where step `step` starts. */
ckd_loader_cursor train_cursor_for(const train_run *t, int64_t step);
/* The teacher's model without its weights loaded (allocated, not touched:
 * a teacher whose embeddings are cached never becomes resident) and what
 * identifies the weights ("sha256:<hex>" of the file, "init:<seed>" for a
 * random initialisation); then the weights themselves. */
ckd_model *train_teacher_shell(train_run *t, char *weights_id, size_t cap, ckd_error *err);
/* The model of a run's final/ dir, unloaded, and "sha256:<hex>" of its weights. */
ckd_model *train_model_shell(train_run *t, const char *dir, char *weights_id, size_t cap, ckd_error *err);
/* TEACHER_CLIP or TEACHER_CLASSIFIER for a teacher model, or -1 with err
 * set when it can be neither (an image encoder without text, a classifier
 * without a separate head). */
int train_teacher_kind(const ckd_model *m, ckd_error *err);
int train_teacher_fill(train_run *t, ckd_model *m, ckd_error *err);

/* teacher_cache.c: sets t->tc, t->t_scale and (when the losses need it)
 * t->class_txt from the cache entry of this teacher and training data,
 * computing the entry first when it is missing or damaged. */
int train_teacher_cache_open(train_run *t, ckd_error *err);
/* The cached rows of batch b's samples: image rows into img [n, dim], with
 * txt the rows of the captions the loader drew, with logits the class
 * logits [n, n_logits] (either may be NULL). -1 with err naming the file
 * when a sample has no row. */
int train_tcache_rows(const train_tcache *tc, const ckd_batch *b, float *img, float *txt, float *logits,
                      ckd_error *err);
/* The same for the model of a run's final/ dir (a model assistant): its
 * kind (TEACHER_*) into *kind and its entry on the training data into *tc,
 * computed first when missing; role names it in messages. */
int train_model_cache_open(train_run *t, const char *dir, const char *role, int *kind, train_tcache *tc,
                           ckd_error *err);

/* centroids.c: t->centroids from the teacher embedding cache, or from the
 * live teacher's embeddings of the un-augmented training images. */
int train_centroids(train_run *t, ckd_error *err);

/* trainer.c: a CKD_TRAIN_MESSAGE event. */
void train_message(const train_run *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* evaluate.c: the class prompts — every template (o's, else the dataset's)
 * applied to every class name, class by class — as token rows [K · NT, T]
 * (malloc'd; *nt_out = NT templates). */
int train_class_prompt_ids(const ckd_dataset *ds, const ckd_tokenizer *tok, const ckd_eval_opts *o, int64_t T,
                           int32_t **ids_out, int64_t *nt_out, ckd_error *err);
/* CLIP's prompt ensemble from those rows: each prompt's embedding
 * normalised, summed per class, renormalised -> [K, D]. Built from ops, so
 * it is on the tape when c records gradients (the student's s_logits) and
 * plain inference otherwise; one construction for every class embedding. */
ckd_tensor *train_prompt_ensemble(ckd_model *m, ckd_ctx *c, const int32_t *ids, int64_t K, int64_t NT, int64_t T);
/* Class embeddings [K, D] into out (no tape; resets c). */
int train_class_embeddings(ckd_model *m, ckd_ctx *c, const ckd_tokenizer *tok, const ckd_dataset *ds,
                           const ckd_eval_opts *o, int64_t T, float *out, ckd_error *err);

/* Normalised text embeddings of M token rows of length T, in batches of
 * bs. The three encoders take sharded: under MPI (a collective then) each
 * rank encodes its share and every rank gets all of it. */
int train_encode_texts(ckd_model *m, ckd_ctx *c, const int32_t *ids, int64_t M, int64_t T, int bs, int sharded,
                       float *out, ckd_error *err);
/* One replayed augmented view of every image (ckd_loader_opts.views):
 * view `view` of `views`, drawn from the run's seed. */
typedef struct train_view {
    uint64_t seed;
    int views, view;
} train_view;

/* Normalised image embeddings of the whole dataset in its order, without
 * augmentation (shortest edge resized to the model's size, centre crop) or,
 * with v, of that replayed view; with labels and dataset indices; *n_out
 * images (fewer than the dataset with on_error CKD_LOADER_SKIP when some
 * cannot be read). */
int train_encode_images(ckd_model *m, ckd_ctx *c, const ckd_dataset *ds, const train_view *v, int bs, int on_error,
                        int sharded, float *img, int32_t *labels, int64_t *index, int64_t *n_out, ckd_error *err);
/* The same for a classifier with a separate head: img receives its
 * normalised features [n, feature_dim], logits (may be NULL) its class
 * logits [n, K]. */
int train_encode_features(ckd_model *m, ckd_ctx *c, const ckd_dataset *ds, const train_view *v, int bs,
                          int on_error, int sharded, float *img, float *logits, int32_t *labels, int64_t *index,
                          int64_t *n_out, ckd_error *err);
/* Every caption of the n samples index[0..n), tokenised to rows of T (the
 * tensors reader's ready-made ids, cut or padded with 0, count as the one
 * caption); owner[r] = position in index of row r's sample. Both malloc'd. */
int train_caption_ids(const ckd_dataset *ds, const ckd_tokenizer *tok, const int64_t *index, int64_t n, int64_t T,
                      int32_t **ids_out, int32_t **owner_out, int64_t *m_out, ckd_error *err);

/* checkpoint.c. metrics_len: bytes of metrics.jsonl at this point. */
int train_checkpoint_save(train_run *t, int64_t metrics_len, ckd_error *err);
/* Restores the state; *metrics_len gets the recorded metrics.jsonl length. */
int train_checkpoint_load(train_run *t, int64_t *metrics_len, ckd_error *err);
int train_checkpoint_exists(const char *dir);

/* rundir.c: the run directory. train_write_json writes dir/file through a
 * temporary file and a rename. train_lock_dir takes the directory's lock
 * (refusing when another process holds it) and removes the temporary files
 * a killed run left there; train_unlock_dir releases it. */
int train_mkdirs(const char *path, ckd_error *err);
int train_write_json(const char *dir, const char *file, const json_t *v, ckd_error *err);
int train_lock_dir(const char *dir, int *fd_out, ckd_error *err);
void train_unlock_dir(int fd);

/* The name of optimiser parameter k: the model's own (HF) name, with
 * "model." in front when model_prefix is set; "loss.<i>.<name>" for a
 * parameter of loss i. */
void train_param_key(const train_run *t, int k, int model_prefix, char *out, size_t cap);
/* Loss i's name in metrics and dumps: the plugin's, with ".<i>" when the
 * same plugin appears twice. */
void train_term_name(const train_run *t, int i, char *out, size_t cap);

/* dump.c: the loss and gradients of the step being taken into a new writer,
 * then the parameters after it and the file (opts->dump_dir/step-NNNN). */
int train_dump_grads(train_run *t, const double *terms, double total, ckd_st_writer **out, ckd_error *err);
int train_dump_save(train_run *t, ckd_st_writer *w, double lr, ckd_error *err);

/* train_dist.c: data-parallel training over MPI (clipkd/dist.h); each is
 * a no-op in a world of one. train_dist_check_ranks (collective, before
 * setup): the same recipe, build and plugin set, and the same view of the
 * run directory on every rank. train_dist_init (after setup): the shard
 * buffers; the global batch must split evenly. train_dist_sees_dir
 * (collective): every rank sees rank 0's run.json. train_dist_next: the
 * next micro-batch's shard, with the shard sizes exchanged and the global
 * batch's sample list gathered (a failure on any rank fails all).
 * train_dist_global: that list (the batch itself in a world of one).
 * train_dist_rows: an activation's global-batch rows (on the tape).
 * train_dist_backward: backward of a micro-batch; after the last one of a
 * step (last), each parameter's gradient is the mean of the ranks'. */
int train_dist_check_ranks(const ckd_registry *reg, const ckd_recipe *r, const char *run_dir, ckd_error *err);
int train_dist_init(train_run *t, ckd_error *err);
void train_dist_free(train_run *t);
int train_dist_sees_dir(const char *dir, ckd_error *err);
int train_dist_next(train_run *t, const ckd_batch **b, ckd_error *err);
const ckd_batch *train_dist_global(const train_run *t, const ckd_batch *local);
ckd_tensor *train_dist_rows(train_run *t, ckd_tensor *x);
int train_dist_backward(train_run *t, ckd_tensor *loss, int last, ckd_error *err);

/* The recipe's hash and settings as JSON helpers. */
double train_num(const json_t *root, const char *path, double fallback);
int train_path_join(char *out, size_t cap, const char *dir, const char *file);

#endif
