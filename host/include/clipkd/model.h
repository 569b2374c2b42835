/* clipkd/model.h — instantiating model plugins, and CLIP configurations.
 *
 * ckd_model wraps a model plugin with its validated configuration and its
 * state, so that the trainer, the evaluator and the CLI never touch the
 * vtable (as clipkd/loss.h does for losses). It also knows the three ways a
 * CLIP configuration arrives:
 *   - clipkd's own JSON (the "clip" plugin's parameters, in the spirit of
 *     open_clip's model_configs/), shipped for named architectures in
 *     $(pkgdatadir)/models/clip/configs/NAME.json (see
 *     ckd_model_configs_dir);
 *   - a Hugging Face config.json (CLIPConfig), converted;
 *   - a model directory holding one of those and the weights.
 */
#ifndef CLIPKD_MODEL_H
#define CLIPKD_MODEL_H

#include <jansson.h>

#include "clipkd/registry.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ckd_model ckd_model;

/* Validates config against the plugin's schema (messages prefixed by where),
 * then creates the model: with init set, initialised for training from
 * scratch from seed; otherwise with every parameter zero (to load weights). */
ckd_model *ckd_model_new(const ckd_plugin *p, const json_t *config, const char *where, int init, uint64_t seed,
                         ckd_error *err);
void ckd_model_free(ckd_model *m);

const char *ckd_model_plugin_name(const ckd_model *m);
/* The configuration as validated, defaults filled (borrowed). */
const json_t *ckd_model_config(const ckd_model *m);
const ckd_model_info *ckd_model_get_info(const ckd_model *m);
int64_t ckd_model_embed_dim(const ckd_model *m);
int ckd_model_n_params(const ckd_model *m);
ckd_tensor *ckd_model_param(const ckd_model *m, int i);
/* The parameter of that (HF) name, or NULL. */
ckd_tensor *ckd_model_find_param(const ckd_model *m, const char *name);
/* θ of a two-tower model; NULL for an image-only one. */
ckd_tensor *ckd_model_logit_scale(const ckd_model *m);
/* Whether the model has a text tower (ckd_model_info.towers), and whether
 * its image output is class logits rather than an embedding. */
int ckd_model_has_text(const ckd_model *m);
int ckd_model_is_classifier(const ckd_model *m);
/* Buffers (BatchNorm running statistics): named, saved and restored with
 * the parameters, never trained; 0 for a plugin that has none. */
int ckd_model_n_buffers(const ckd_model *m);
ckd_tensor *ckd_model_buffer(const ckd_model *m, int i);
/* Number of scalars in all parameters. */
int64_t ckd_model_param_count(const ckd_model *m);

/* The forward passes (see ckd_model_vtable): [B, embed_dim], projected, not
 * normalised; NULL with the context's error on failure. out may be NULL. */
ckd_tensor *ckd_model_encode_image(ckd_model *m, ckd_ctx *c, ckd_tensor *pixels, float keep_ratio,
                                   ckd_tower_out *out);
ckd_tensor *ckd_model_encode_text(ckd_model *m, ckd_ctx *c, const int32_t *ids, int64_t B, int64_t T,
                                  ckd_tower_out *out);
/* A classifier with a separate head (ckd_model_info.feature_dim > 0):
 * encode_image's out->pooled are its features [B, F]; ckd_model_classify
 * runs the head on features -> [B, K]. feature_dim is 0 for other models
 * (and for plugins older than ABI minor 3), where classify fails. */
int64_t ckd_model_feature_dim(const ckd_model *m);
ckd_tensor *ckd_model_classify(ckd_model *m, ckd_ctx *c, ckd_tensor *features);

/* Weights: a file, a sharded index, or a directory (see the plugin). */
int ckd_model_load(ckd_model *m, const char *path, ckd_error *err);
int ckd_model_save(ckd_model *m, const char *path, ckd_error *err);

/* ---- CLIP configurations -------------------------------------------------- */

/* Converts a Hugging Face CLIPConfig (the parsed config.json) into the clip
 * plugin's configuration. Missing keys take CLIPConfig's defaults (ViT-B/32);
 * non-null text_config_dict / vision_config_dict override; the top-level
 * projection_dim is used for both projections (the sub-configs' own
 * projection_dim is ignored, as CLIPModel does); eos_token_id is carried over,
 * so the legacy value 2 selects HF's argmax pooling. `where` prefixes
 * messages. Returns a new reference, or NULL with err set. */
json_t *ckd_clip_config_from_hf(const json_t *hf, const char *where, ckd_error *err);

/* The reverse: an HF CLIPConfig for a clip plugin configuration (validated,
 * defaults filled, as ckd_model_config returns it). */
json_t *ckd_clip_config_to_hf(const json_t *cfg, const char *where, ckd_error *err);

/* Reads a configuration file: clipkd's own JSON, or an HF config.json
 * (recognised by its text_config / vision_config keys), converted. */
json_t *ckd_clip_config_load(const char *path, ckd_error *err);

/* A shipped configuration by name ("ViT-B-32", "fmnist-student", ...): the
 * file NAME.json in ckd_model_configs_dir("clip"). A name holding '/' or
 * ending in ".json" is read as a path. */
json_t *ckd_clip_config_named(const char *name, ckd_error *err);

/* ---- named configurations of any model plugin --------------------------------
 * A model plugin may ship named configurations, NAME.json in a directory of
 * its own; a recipe's "config": {"name": NAME, ...} takes one as its base
 * (clipkd-recipe(5)). The clip plugin ships ViT-B-32, ViT-B-16, ViT-L-14,
 * ViT-T-16, fmnist-teacher and fmnist-student. */

/* The directory of plugin's named configurations: $CLIPKD_MODEL_CONFIG_DIR
 * for the clip plugin when it is set; else, when $CLIPKD_DATA_DIR is set,
 * $CLIPKD_DATA_DIR/models/PLUGIN/configs, or $CLIPKD_DATA_DIR/configs when
 * it names the plugin's own data directory in the sources (models/PLUGIN),
 * or models/PLUGIN/configs beside another plugin's (models/OTHER);
 * else $(pkgdatadir)/models/PLUGIN/configs. Nothing is checked on disk. */
int ckd_model_configs_dir(const char *plugin, char *out, size_t cap, ckd_error *err);

/* Where the configuration NAME of plugin is (it may not exist). */
int ckd_model_config_path(const char *plugin, const char *name, char *out, size_t cap, ckd_error *err);

/* The names of the configurations plugin ships, sorted; *n = 0 (and an
 * empty array) when it ships none. NULL with err set when the directory
 * cannot be read. Free with ckd_model_config_names_free. */
char **ckd_model_config_names(const char *plugin, size_t *n, ckd_error *err);
void ckd_model_config_names_free(char **names, size_t n);

/* The configuration NAME that plugin ships, as written (a new reference),
 * or NULL with err set ("no model configuration ..." when there is none). */
json_t *ckd_model_config_shipped(const char *plugin, const char *name, ckd_error *err);

/* A model directory: a configuration in one of the layouts people have, and
 * the weights next to it (read by the plugin):
 *   config.json (Hugging Face CLIPConfig) -> clip;
 *   clipkd.json: a clip configuration, or {"model": PLUGIN, "config": {...}};
 *   open_clip_config.json with a ResNet vision_cfg -> clip with a
 *   ModifiedResNet image tower (resnet without a text_cfg);
 *   torchvision_config.json (ResNet's arguments: block, layers, num_classes,
 *   groups, width_per_group, image_size) -> resnet (torchvision). */
ckd_model *ckd_model_from_pretrained(const ckd_registry *r, const char *dir, ckd_error *err);
/* The same model without its weights (every parameter zero). */
ckd_model *ckd_model_from_dir_config(const ckd_registry *r, const char *dir, ckd_error *err);

/* Writes dir/model.safetensors and a configuration ckd_model_from_pretrained
 * reads back, creating dir if needed: for two-tower ViT clip models an HF
 * config.json (which transformers reads too), for others clipkd.json. */
int ckd_model_save_pretrained(ckd_model *m, const char *dir, ckd_error *err);

#ifdef __cplusplus
}
#endif
#endif
