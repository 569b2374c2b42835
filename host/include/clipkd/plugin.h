/* clipkd/plugin.h — the plugin ABI.
 *
 * A plugin is a shared object (built with libtool -module -avoid-version and
 * installed in clipkd's plugin directory, or found through
 * $CLIPKD_PLUGIN_PATH) that exports exactly one symbol:
 *
 *     const ckd_plugin_descriptor *ckd_plugin_entry(void);
 *
 * returning a pointer to a constant descriptor (GStreamer/LV2 style). The
 * host checks the ABI major version and the struct sizes before touching
 * anything else, so an old plugin is rejected with a message instead of
 * crashing, and a newer host can append fields to these structs (a minor,
 * compatible change) while still loading plugins built against older headers.
 *
 * A loss plugin computes one scalar on the tape from a batch of embeddings
 * (ckd_loss_batch). It may own parameters (projections, scales): it creates
 * them with ckd_param_new() in create(), names them (those names appear in
 * checkpoints and in `clipkd loss-eval`), and the host trains, saves and
 * restores them with the student.
 *
 * Plugins use only the public API (clipkd/clipkd.h); they never print and
 * report failures through ckd_error.
 */
#ifndef CLIPKD_PLUGIN_H
#define CLIPKD_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "clipkd/clipkd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change to the structs below. */
#define CKD_PLUGIN_ABI_MAJOR 1
/* Bumped when fields are appended to them (compatible both ways: see above).
 * 1: ckd_model_info.towers, ckd_model_vtable.n_buffers / buffer.
 * 2: ckd_loss_batch.n_assistants, a_img, a_txt, a_weight.
 * 3: ckd_model_info.feature_dim, ckd_model_vtable.classify;
 *    ckd_loss_batch.s_img_noisy, a_logits; CKD_NEED_S_IMG_NOISY. */
#define CKD_PLUGIN_ABI_MINOR 3
/* The name of the one exported symbol. */
#define CKD_PLUGIN_ENTRY "ckd_plugin_entry"

#if defined(__GNUC__)
#define CKD_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define CKD_PLUGIN_EXPORT
#endif

typedef enum ckd_plugin_kind {
    CKD_PLUGIN_MODEL = 1,
    CKD_PLUGIN_LOSS = 2,
} ckd_plugin_kind;

/* ---- parameters -------------------------------------------------------------
 * A plugin's parameters, after the host has checked them against the
 * plugin's JSON schema and filled in defaults: every key the schema declares
 * with a default is present, types and ranges are already right. Keys may
 * be dotted paths into nested objects ("vision.width"); a number indexes an
 * array ("layers.0"), and ckd_params_has tells an array's length. */
typedef struct ckd_params ckd_params;

int ckd_params_has(const ckd_params *p, const char *key);
double ckd_params_number(const ckd_params *p, const char *key, double fallback);
const char *ckd_params_string(const ckd_params *p, const char *key, const char *fallback);
int ckd_params_bool(const ckd_params *p, const char *key, int fallback);

/* ---- losses ------------------------------------------------------------------- */

/* What a loss reads from the batch; the host refuses a recipe that cannot
 * provide it (e.g. `fd` without a teacher) before any compute. */
enum {
    CKD_NEED_S_IMG = 1u << 0,
    CKD_NEED_S_TXT = 1u << 1,
    CKD_NEED_T_IMG = 1u << 2,
    CKD_NEED_T_TXT = 1u << 3,
    CKD_NEED_LABELS = 1u << 4,
    CKD_NEED_CLASS_TXT = 1u << 5,
    CKD_NEED_S_LOGITS = 1u << 6,
    CKD_NEED_T_LOGITS = 1u << 7,
    /* centroids (CLIP-Embed-KD): per class, the mean of the teacher's
     * L2-normalised image embeddings of the class's first n training
     * images in dataset order, computed once before training. A loss that
     * sets this bit may declare n as its integer parameter
     * `centroid_images` (0: every image of the class), with a default in
     * its schema; the losses of a recipe that declare it must agree, and
     * where none does the host takes 100, the method's n. */
    CKD_NEED_CENTROIDS = 1u << 8,
    /* s_img_masked: the student's image embedding from a forward that sees
     * CLS and only a random subset of the patch tokens (MFD). A loss that
     * sets this bit declares the fraction of patch tokens to hide as its
     * number parameter `mask_ratio`, in [0, 1), with a default in its
     * schema; the host reads it from the loss's validated parameters and
     * runs the student's image tower with keep_ratio = 1 − mask_ratio. */
    CKD_NEED_S_IMG_MASKED = 1u << 9,
    /* s_img_noisy (ABI minor 3): the student's image embedding W through
     * CIFD's information bottleneck, Ŵ = W + u with u ~ U[−½, ½) per element
     * while training, W itself at inference. A loss that sets this bit
     * declares the boolean parameter `ibm` (default true, in its schema);
     * when it is false the host adds no noise. For a classifier student the
     * bottleneck sits before its head: the run's s_logits are then the
     * head's output on Ŵ (the IBM's decoder is the student's own head). */
    CKD_NEED_S_IMG_NOISY = 1u << 10,
};

typedef struct ckd_loss_dims {
    int64_t s_dim;     /* Ds: student embedding width */
    int64_t t_dim;     /* Dt: teacher embedding width (0 without a teacher) */
    int64_t n_classes; /* K: classes, when labels / class prompts exist (else 0) */
} ckd_loss_dims;

/* One batch of N samples. Fields a recipe cannot provide are NULL. Student
 * tensors carry gradients back into the student; teacher tensors never
 * require gradients. A classifier with a separate head (feature_dim > 0)
 * takes part through its penultimate features: as the student, s_img is
 * its features [N, F] (Ds = F) and s_logits its head's output; as the
 * teacher, t_img is its normalised features (Dt = F), t_logits its class
 * logits, and it has no t_txt. */
typedef struct ckd_loss_batch {
    uint32_t struct_size;      /* sizeof(ckd_loss_batch) as the host built it */
    int64_t n;
    ckd_tensor *s_img, *s_txt;      /* [N, Ds] student embeddings, not normalised */
    ckd_tensor *s_img_n, *s_txt_n;  /* [N, Ds] the same, L2-normalised */
    ckd_tensor *t_img, *t_txt;      /* [N, Dt] teacher embeddings, L2-normalised */
    ckd_tensor *s_logit_scale;      /* scalar θ_s, λ_s = exp(θ_s) (a student parameter) */
    ckd_tensor *t_logit_scale;      /* scalar θ_t, λ_t = exp(θ_t) (fixed) */
    const int32_t *labels;          /* [N] class ids */
    ckd_tensor *class_txt;          /* [K, Dt] teacher class-prompt embeddings, normalised */
    /* [N, K] student class logits; for a CLIP student its zero-shot logits
     * λ_s n(s_img) Cᵀ, C [K, Ds] its own prompt-ensembled class embeddings
     * (built as class_txt, with the student's text tower): on the tape, so
     * both towers and θ_s get gradients. */
    ckd_tensor *s_logits;
    ckd_tensor *t_logits;           /* [N, K] teacher class logits λ_t t_img class_txtᵀ */
    ckd_tensor *centroids;          /* [K, Dt] teacher class centroids (means, not renormalised) */
    ckd_tensor *s_img_masked;       /* [N, Ds] student image embeddings with patch masking */
    /* ABI minor 2: the recipe's teaching assistants (CIFD's rate-distortion
     * modules), A of them (0: none; the fields below are then NULL). Each
     * reconstructs the teacher's embeddings of the batch through its
     * bottleneck (rounded: inference mode), L2-normalised: a_img and a_txt
     * [A, N, Dt] (NULL when the assistants have no module for that tower);
     * a_weight [A], the recipe's weight of each. A plugin reads these only
     * when struct_size says the host's batch has them (CKD_LOSS_BATCH_HAS). */
    int64_t n_assistants;
    ckd_tensor *a_img, *a_txt;
    const float *a_weight;
    /* ABI minor 3. */
    ckd_tensor *s_img_noisy;        /* [N, Ds] see CKD_NEED_S_IMG_NOISY */
    /* [A, N, K] the assistants' class logits (modules with a class head,
     * CIFD's classifier form; NULL otherwise) */
    ckd_tensor *a_logits;
} ckd_loss_batch;

/* Does batch b (built by a host of any ABI minor) have field f? */
#define CKD_LOSS_BATCH_HAS(b, f)                                                                         \
    ((b)->struct_size >= offsetof(ckd_loss_batch, f) + sizeof(((ckd_loss_batch *)0)->f))

typedef struct ckd_loss_vtable {
    uint32_t struct_size; /* sizeof(ckd_loss_vtable) as the plugin was built */
    uint32_t needs;       /* CKD_NEED_* bits */
    /* Creates the loss state and its owned parameters, initialised from rng.
     * Returns 0, or -1 with err set (the host reports it and stops). */
    int (*create)(const ckd_params *params, const ckd_loss_dims *dims, ckd_rng *rng, void **state,
                  ckd_error *err);
    void (*destroy)(void *state);
    /* The owned parameters (named tensors from ckd_param_new); may be 0. */
    int (*n_params)(void *state);
    ckd_tensor *(*param)(void *state, int i);
    /* The loss: a scalar built from ops (so that backward reaches the student
     * and the owned parameters). NULL with the context's error on failure. */
    ckd_tensor *(*forward)(void *state, ckd_ctx *c, const ckd_loss_batch *batch);
} ckd_loss_vtable;

/* ---- models ------------------------------------------------------------------
 * A model plugin holds a two-tower CLIP-style model: an image tower and a
 * text tower, each ending in a projection to a shared embedding width, and a
 * learnable logit scale — or an image tower alone (an image encoder or a
 * classifier; ckd_model_info.towers says which). Its parameters are named as in Hugging Face
 * checkpoints ("vision_model.encoder.layers.0.mlp.fc1.weight"), so that a
 * checkpoint the host writes is readable by transformers and names in
 * messages mean the same thing everywhere. The forward passes are built from
 * ops: with gradients on they record on the tape (students); the same code
 * under ckd_ctx_set_grad(c, 0) is the inference path (teachers, eval). */

/* Largest number of hidden states a tower reports (64 layers + the input). */
#define CKD_MODEL_MAX_HIDDEN 65

/* What an encode call can return besides the embedding. All tensors are
 * arena tensors of the context passed to the encode call. */
typedef struct ckd_tower_out {
    int want_hidden;    /* in: fill hidden[] (costs one pointer per layer, no copies) */
    /* out, with want_hidden: [B, T, C] for the encoder's input (HF's
     * hidden_states[0]) and after each layer, as HF's output_hidden_states:
     * n_hidden = layers + 1. */
    ckd_tensor *hidden[CKD_MODEL_MAX_HIDDEN];
    int n_hidden;
    /* out: HF's last_hidden_state [B, T, C] — image tower: the encoder output
     * (no post-LN, as HF); text tower: after the final LN. */
    ckd_tensor *last_hidden;
    /* out: HF's pooler_output [B, C] — image: post-LN of the CLS token; text:
     * the final-LN row at the end-of-text token. */
    ckd_tensor *pooled;
} ckd_tower_out;

/* Sizes a host needs for preprocessing, tokenizing and batching. */
typedef struct ckd_model_info {
    uint32_t struct_size;   /* set by the caller to sizeof(ckd_model_info) as it knows it;
                               a plugin writes only the fields that fit */
    int64_t embed_dim;      /* width of both towers' projected embeddings */
    int64_t image_size;     /* input pixels are [B, channels, image_size, image_size] */
    int64_t patch_size;
    int64_t channels;
    int64_t vision_width, vision_layers, vision_heads;
    int64_t n_patches;      /* (image_size / patch_size)^2; the sequence is n_patches + 1 */
    int64_t context_length; /* longest token sequence (text position embeddings) */
    int64_t vocab_size;
    int64_t text_width, text_layers, text_heads;
    int32_t eos_token_id;   /* the id text pooling looks for (see the plugin's docs) */
    /* Appended in ABI minor 1 (a plugin built before it leaves this 0, read as
     * "both towers"): CKD_TOWER_* bits. A model without CKD_TOWER_TEXT has no
     * text tower (encode_text and logit_scale may be NULL); with
     * CKD_TOWER_CLASSIFIER its image output is class logits, not an embedding. */
    uint32_t towers;
    /* Appended in ABI minor 3: a classifier's penultimate width F, when it
     * can run its head on its own (classify below): encode_image then puts
     * the head's input [B, F] in out->pooled. 0 otherwise. */
    int64_t feature_dim;
} ckd_model_info;

enum {
    CKD_TOWER_IMAGE = 1u << 0,
    CKD_TOWER_TEXT = 1u << 1,
    CKD_TOWER_CLASSIFIER = 1u << 2,
};

typedef struct ckd_model_vtable {
    uint32_t struct_size; /* sizeof(ckd_model_vtable) as the plugin was built */
    /* Creates a model from its configuration (validated against the plugin's
     * schema, defaults filled). init_rng non-NULL: the plugin's initialisation
     * for training from scratch, drawn from it; NULL: every parameter is left
     * zero (weights are about to be loaded). Returns 0, or -1 with err set
     * (impossible sizes are refused here, naming the keys). */
    int (*create)(const ckd_params *config, ckd_rng *init_rng, void **state, ckd_error *err);
    void (*destroy)(void *state);
    /* Every parameter, in a fixed order, named as in HF checkpoints. */
    int (*n_params)(void *state);
    ckd_tensor *(*param)(void *state, int i);
    /* The scalar parameter θ, with λ = exp θ scaling the cosine logits. */
    ckd_tensor *(*logit_scale)(void *state);
    /* Fills *out (whose struct_size the caller has set). */
    void (*info)(void *state, ckd_model_info *out);
    /* pixels [B, channels, image_size, image_size] -> [B, embed_dim], projected,
     * not normalised. keep_ratio in (0, 1) keeps, per sample, the CLS token and
     * a random subset of floor(n_patches · keep_ratio) (at least 1) patch tokens
     * after the position embeddings are added (MFD's masking), drawn from the
     * context's rng; keep_ratio >= 1 keeps everything. out may be NULL.
     * NULL with the context's error on failure. */
    ckd_tensor *(*encode_image)(void *state, ckd_ctx *c, ckd_tensor *pixels, float keep_ratio, ckd_tower_out *out);
    /* ids [B·T] (row-major, T <= context_length, each id < vocab_size) ->
     * [B, embed_dim], projected, not normalised. out may be NULL. */
    ckd_tensor *(*encode_text)(void *state, ckd_ctx *c, const int32_t *ids, int64_t B, int64_t T,
                               ckd_tower_out *out);
    /* Loads weights from a safetensors file, a sharded checkpoint's index, or
     * a directory (see the plugin's docs for the name sets it accepts). Every
     * parameter must be present with its shape; all are checked before any is
     * written, so on failure the model is unchanged. 0, or -1 with err set. */
    int (*load)(void *state, const char *path, ckd_error *err);
    /* Writes every parameter and buffer (HF or the reference's names) to a
     * safetensors file, atomically. */
    int (*save)(void *state, const char *path, ckd_error *err);
    /* ---- appended in ABI minor 1; hosts read them only when struct_size covers them ----
     * Buffers: named state that is not trained (BatchNorm running_mean,
     * running_var, num_batches_tracked as a float count), saved and loaded
     * with the parameters, restored on resume, never decayed or given a
     * gradient (requires_grad 0). Both NULL, or n_buffers returning 0, for none. */
    int (*n_buffers)(void *state);
    ckd_tensor *(*buffer)(void *state, int i);
    /* ---- appended in ABI minor 3 ----
     * A classifier's head alone: features [B, feature_dim] (what encode_image
     * put in out->pooled, possibly altered, e.g. noised) -> class logits
     * [B, embed_dim], on the tape like encode_image. NULL when the model has
     * no separate head (feature_dim 0). */
    ckd_tensor *(*classify)(void *state, ckd_ctx *c, ckd_tensor *features);
} ckd_model_vtable;

typedef struct ckd_plugin_descriptor {
    uint32_t abi_major;    /* CKD_PLUGIN_ABI_MAJOR */
    uint32_t struct_size;  /* sizeof(ckd_plugin_descriptor) */
    ckd_plugin_kind kind;
    const char *name;      /* unique within its kind, e.g. "crd" */
    const char *version;   /* the plugin's own version, e.g. "1.0" */
    const char *summary;   /* one line for `clipkd plugins` */
    /* JSON schema of the parameters: {"type": "object", "properties": {...},
     * "required": [...]}; each property has "type" (number, integer, string,
     * boolean), and optionally "default", "minimum", "maximum", "enum" and
     * "description". NULL or "{}" for none. */
    const char *params_schema;
    const ckd_loss_vtable *loss;   /* kind == CKD_PLUGIN_LOSS */
    const ckd_model_vtable *model; /* kind == CKD_PLUGIN_MODEL */
} ckd_plugin_descriptor;

typedef const ckd_plugin_descriptor *(*ckd_plugin_entry_fn)(void);

/* Declares the entry point of a plugin:
 *     CKD_PLUGIN_DEFINE(my_descriptor)
 * where my_descriptor is a static const ckd_plugin_descriptor. */
#define CKD_PLUGIN_DEFINE(desc)                                              \
    CKD_PLUGIN_EXPORT const ckd_plugin_descriptor *ckd_plugin_entry(void); \
    CKD_PLUGIN_EXPORT const ckd_plugin_descriptor *ckd_plugin_entry(void) { return &(desc); }

#ifdef __cplusplus
}
#endif
#endif
