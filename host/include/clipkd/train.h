/* clipkd/train.h — running a recipe: training, checkpoints, evaluation.
 *
 * ckd_train_run() turns a loaded recipe (clipkd/recipe.h) into a run
 * directory:
 *
 *     recipe.json      the resolved recipe
 *     run.json         recipe file, --set overrides and hash (for --resume)
 *     metrics.jsonl    one JSON object per logged step and per evaluation
 *     checkpoint.safetensors
 *                      student weights (model.<HF name>), loss-owned
 *                      parameters (loss.<i>.<name>), AdamW moments
 *                      (adam.m.<k>, adam.v.<k>); the rest of the state
 *                      (step, epoch, loader cursor, RNG, AdamW step counts,
 *                      recipe hash, metrics.jsonl length) is JSON in the
 *                      file's __metadata__ "state", copied to checkpoint.json
 *     final/           the trained student as a model directory
 *                      (model.safetensors + config.json, readable by
 *                      ckd_model_from_pretrained and transformers)
 *     results.json     the final evaluation and the last losses
 *     run.lock         locked (flock) by the process working in the
 *                      directory: a second one is refused
 *
 * Every file appears whole or not at all (written to "<file>.tmp.<pid>" and
 * renamed; what a killed process leaves under such names is removed by the
 * next one), so a run killed at any moment — SIGKILL, a full disk while
 * checkpointing — keeps its previous checkpoint and resumes from it.
 *
 * A run is a pure function of the recipe and the thread count: a run stopped
 * at any point and resumed from its last checkpoint ends with the same
 * weights and the same metrics.jsonl (timing fields aside) as a run that was
 * never stopped, because the checkpoint holds every piece of state the next
 * step reads and metrics.jsonl is cut back to the length it had when the
 * checkpoint was written.
 *
 * With teacher.mode "live" the teacher runs forward on every batch, on the
 * student's (augmented) pixels and token rows, so both models must take the
 * same image size. With "cache" (the default) its embeddings of the
 * un-augmented training images and of every caption are computed once into
 * <artifact cache>/teacher-embeddings/<key>.safetensors, the key covering
 * the teacher's weights, configuration and preprocessing and the training
 * data, and read from there (memory-mapped) by every run of the same
 * teacher and data, which then never loads the teacher.
 *
 * Nothing here prints: progress reaches the caller through a callback.
 */
#ifndef CLIPKD_TRAIN_H
#define CLIPKD_TRAIN_H

#include <stdint.h>

#include <jansson.h>

#include "clipkd/metrics.h"
#include "clipkd/model.h"
#include "clipkd/recipe.h"
#include "clipkd/registry.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CKD_TRAIN_MAX_TERMS 16

typedef enum ckd_train_event_kind {
    CKD_TRAIN_MESSAGE = 1, /* a line of information (text) */
    CKD_TRAIN_STEP = 2,    /* after an optimiser step */
    CKD_TRAIN_EVAL = 3,    /* after an evaluation (text: a one-line summary) */
} ckd_train_event_kind;

typedef struct ckd_train_event {
    ckd_train_event_kind kind;
    const char *run_name;            /* the recipe's name */
    const char *text;
    int64_t step, total_steps, epoch;
    int logged;                      /* this step was written to metrics.jsonl */
    double loss, lr;
    int n_terms;
    const char *term_names[CKD_TRAIN_MAX_TERMS];
    double terms[CKD_TRAIN_MAX_TERMS]; /* unweighted values */
    double images_per_s, eta_s;
    /* Images and texts the teacher has encoded in this process so far
     * (batches, class prompts, building the embedding cache): 0 for a run
     * whose teacher embeddings all came from the cache. */
    int64_t teacher_encoded;
} ckd_train_event;

typedef void (*ckd_train_progress_fn)(void *user, const ckd_train_event *ev);

typedef struct ckd_train_opts {
    /* The run directory; NULL: <runs_root>/<name>-<first 12 hex digits of the hash>. */
    const char *out_dir;
    /* Where default run directories go, teachers named by teacher.recipe
     * included; NULL: the directory holding out_dir when given, else "runs"
     * (ckd_train_resume: the root the run was started with, from run.json). */
    const char *runs_root;
    /* The overrides the recipe was loaded with (recorded in run.json, so
     * that --resume can load the same recipe again). */
    const char *const *sets;
    size_t n_sets;
    /* Stop, as if killed, once this many optimiser steps are done (0: run
     * to the end); a checkpoint is written only if checkpoint_every says so. */
    int64_t stop_after;
    /* Debug dumps: for each of the run's steps 0 .. dump_steps - 1, the file
     * dump_dir/step-NNNN.safetensors (step number, 4 digits) with "loss"
     * and "loss.<term>" (F64 scalars, unweighted terms named as in
     * metrics.jsonl), "grad.<param>" (the step's gradient before clipping)
     * and "param.<param>" (the value after the step), F32 under the model's
     * Hugging Face names ("loss.<i>.<name>" for a loss's own parameters). */
    int64_t dump_steps;
    const char *dump_dir;
    /* Members added to run.json (e.g. "table": the table, profile, row and
     * seed a run belongs to), so that a later --resume can compose the
     * recipe again; NULL: none. */
    const json_t *origin;
    ckd_train_progress_fn progress;  /* may be NULL */
    void *user;
} ckd_train_opts;

void ckd_train_opts_init(ckd_train_opts *o);

/* Trains the recipe in a new run directory (an existing one holding a
 * checkpoint of the same recipe is an error that suggests --resume; one
 * holding a finished run is reused as it is). A teacher named by
 * teacher.recipe is trained first in its own run directory under the runs
 * root, unless its final weights are already there. The directory used is
 * copied to run_dir (may be NULL). Checks everything the recipe asks for —
 * plugins, sizes, what each loss needs — before any compute. */
int ckd_train_run(const ckd_registry *reg, const ckd_recipe *r, const ckd_train_opts *o, char *run_dir,
                  size_t cap, ckd_error *err);

/* Continues the run in run_dir from its checkpoint. r NULL: the recipe
 * recorded in run.json, loaded again with its overrides; either way its hash
 * must be the checkpoint's. */
int ckd_train_resume(const ckd_registry *reg, const ckd_recipe *r, const char *run_dir, const ckd_train_opts *o,
                     ckd_error *err);

/* A ckd_recipe_plugin_schema_fn whose user pointer is a ckd_registry: the
 * plugins' own schemas, so that a loaded recipe has their defaults filled in
 * (and hashes as the run it names). */
int ckd_train_plugin_schema(void *registry, const char *kind, const char *name, const char **schema_json,
                            ckd_error *err);

/* What a run directory holds: FINISHED (results.json and the final weights:
 * ckd_train_run reuses it as it is), INTERRUPTED (a checkpoint without them:
 * ckd_train_resume continues it), else NEW (nothing, or a run killed before
 * its first checkpoint: ckd_train_run starts it over). */
typedef enum ckd_run_state { CKD_RUN_NEW, CKD_RUN_INTERRUPTED, CKD_RUN_FINISHED } ckd_run_state;
ckd_run_state ckd_train_dir_state(const char *run_dir);

/* The default run directory of a recipe under root (NULL: "runs"). */
void ckd_train_run_dir(const ckd_recipe *r, const char *root, char *out, size_t cap);

/* ---- evaluation ---------------------------------------------------------------- */

#define CKD_EVAL_MAX_TEMPLATES 128

/* What counts as a correct retrieval (the recipe's eval.retrieval_match). */
typedef enum ckd_retrieval_match {
    /* "pair", the default: a caption and the image it was written for (the
     * COCO/Flickr protocol). */
    CKD_RETRIEVAL_MATCH_PAIR = 0,
    /* "text": a caption and every image that has a caption with the same
     * token sequence (the text as the model reads it). Captions are
     * deduplicated first: the distinct texts are the image→text candidates
     * and the text→image queries. For templated captions, where many images
     * share a text, e.g. Fashion-MNIST's. */
    CKD_RETRIEVAL_MATCH_TEXT = 1,
} ckd_retrieval_match;

/* "pair", "text". */
const char *ckd_retrieval_match_name(ckd_retrieval_match m);

typedef struct ckd_eval_opts {
    int zero_shot, retrieval, calibration; /* each on by default */
    int calibration_bins;                  /* 15 */
    int batch_size;                        /* 256 */
    ckd_retrieval_match retrieval_match;   /* CKD_RETRIEVAL_MATCH_PAIR */
    const char *templates[CKD_EVAL_MAX_TEMPLATES]; /* n_templates 0: the dataset's own */
    size_t n_templates;
    /* For a model without a text tower (an image-only student): the model
     * whose text tower and logit scale classify and retrieve its images,
     * usually its teacher (borrowed; the embedding widths must agree). NULL:
     * such a model gets no zero-shot or retrieval results, except that a
     * classifier's outputs are its class logits (top-1/top-5). */
    ckd_model *text_model;
} ckd_eval_opts;

void ckd_eval_opts_init(ckd_eval_opts *o);
/* From a recipe's "eval" object (missing keys keep their defaults); the
 * templates borrow from the JSON (at most CKD_EVAL_MAX_TEMPLATES). */
void ckd_eval_opts_from_json(ckd_eval_opts *o, const json_t *eval);

typedef struct ckd_eval_result {
    int has_zero_shot, has_retrieval, has_calibration;
    ckd_zero_shot zero_shot;
    ckd_retrieval retrieval;
    ckd_retrieval_match retrieval_match; /* the protocol retrieval was measured with */
    ckd_calibration calibration;
    int64_t n_images;
    double seconds;
} ckd_eval_result;

/* Evaluates a model on a dataset spec (relative paths against base_dir):
 * zero-shot needs class names and templates, retrieval captions; what the
 * data cannot give is skipped. Under MPI (clipkd/dist.h, more than one
 * rank) it is collective: every rank calls it, encodes its share of the
 * images and texts, and gets the whole result. */
int ckd_evaluate(ckd_model *m, const json_t *data_spec, const char *base_dir, const ckd_eval_opts *o,
                 ckd_eval_result *out, ckd_error *err);

/* The result as a JSON object {"zero_shot": {...}, "retrieval": {...},
 * "calibration": {...}, "n_images"} (a new reference). "retrieval" holds
 * i2t_r1/5/10, t2i_r1/5/10, n_images, n_texts (distinct texts under "text"
 * matching), "match" ("pair" or "text") and "chance", an object with the
 * same six recall keys for a random ranking. */
json_t *ckd_eval_result_json(const ckd_eval_result *r);
/* "zero-shot top1 85.1% top5 99.0% | i2t R@1/5/10 .. t2i R@1/5/10 .. (text
 * match; chance R@5 ../..%) | ECE .." into buf; the parenthesis only under
 * "text" matching. */
const char *ckd_eval_result_str(const ckd_eval_result *r, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
