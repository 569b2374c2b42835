/* Model directories: a configuration file next to the weights, in the
 * layout each reference writes, read as it is.
 *
 *   config.json                Hugging Face CLIPConfig          -> clip
 *   clipkd.json                clipkd's own: a clip configuration, or
 *                              {"model": PLUGIN, "config": {...}} for any plugin
 *   open_clip_config.json      OpenCLIP's model config with a ResNet vision_cfg
 *                              (layers as a list): with a text_cfg -> clip
 *                              (vision.arch "modified"), else -> resnet
 *   torchvision_config.json    torchvision.models.resnet.ResNet's arguments
 *                              -> resnet, arch "torchvision"
 * The plugin then loads the weights from the directory (each plugin knows
 * its file names). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clipkd/model.h"
#include "core/json_oom.h"

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static json_t *load_json(const char *path, ckd_error *err)
{
    json_error_t je;
    json_t *j = ckdi_json_load_file(path, 0, &je, NULL);
    if (!j)
        ckd_errorf(err, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    else if (!json_is_object(j)) {
        ckd_errorf(err, "%s: expected a JSON object", path);
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* Copies key from src to dst (under the name to) when present. */
static void carry(json_t *dst, const char *to, const json_t *src, const char *key)
{
    json_t *v = json_object_get(src, key);
    if (v)
        json_object_set(dst, to, v);
}

/* torchvision.models.resnet.ResNet(block, layers, num_classes, groups,
 * width_per_group) + the input size -> the resnet plugin's configuration. */
static json_t *from_torchvision(const json_t *tv, const char *path, ckd_error *err)
{
    const char *block = json_string_value(json_object_get(tv, "block"));
    if (!block || (strcmp(block, "BasicBlock") && strcmp(block, "Bottleneck"))) {
        ckd_errorf(err, "%s: block: expected \"BasicBlock\" or \"Bottleneck\"", path);
        return NULL;
    }
    json_t *c = json_pack("{s:s, s:s}", "arch", "torchvision", "block", strcmp(block, "BasicBlock") ? "bottleneck"
                                                                                                  : "basic");
    carry(c, "layers", tv, "layers");
    carry(c, "num_classes", tv, "num_classes");
    carry(c, "groups", tv, "groups");
    carry(c, "width_per_group", tv, "width_per_group");
    carry(c, "image_size", tv, "image_size");
    carry(c, "stem", tv, "stem");
    carry(c, "width", tv, "width");
    if (!json_object_get(c, "num_classes"))
        json_object_set_new(c, "num_classes", json_integer(1000)); /* torchvision's default */
    return c;
}

/* OpenCLIP's text_cfg -> the clip plugin's text object (open_clip's
 * defaults where a key is absent). */
static json_t *open_clip_text(const json_t *t)
{
    json_t *o = json_pack("{s:i, s:i, s:i, s:i, s:i}", "context_length", 77, "vocab_size", 49408, "width", 512,
                          "heads", 8, "layers", 12);
    static const char *const keys[] = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        carry(o, keys[i], t, keys[i]);
    return o;
}

/* OpenCLIP's model config (embed_dim, vision_cfg[, text_cfg]) for a ResNet
 * image tower (ModifiedResNet: heads = width·32 / head_width): with a
 * text_cfg a clip model, without one the resnet plugin's image encoder. */
static json_t *from_open_clip(const json_t *oc, const char *path, char plugin[64], ckd_error *err)
{
    const json_t *v = json_object_get(oc, "vision_cfg");
    if (!json_is_object(v) || !json_is_array(json_object_get(v, "layers"))) {
        ckd_errorf(err, "%s: vision_cfg.layers: only ResNet towers (layers as a list, e.g. [3, 4, 6, 3]) are read"
                   " from OpenCLIP configs; convert a ViT checkpoint with `clipkd convert` and an HF config.json",
                   path);
        return NULL;
    }
    json_int_t width = json_is_integer(json_object_get(v, "width")) ? json_integer_value(json_object_get(v, "width"))
                                                                    : 64;
    json_int_t hw = json_is_integer(json_object_get(v, "head_width"))
                        ? json_integer_value(json_object_get(v, "head_width"))
                        : 64;
    if (hw < 1 || width < 1 || (width * 32) % hw) {
        ckd_errorf(err, "%s: vision_cfg.head_width %lld does not divide the attention pool's width %lld (width·32)",
                   path, (long long)hw, (long long)(width * 32));
        return NULL;
    }
    json_t *c = json_pack("{s:s, s:I, s:I}", "arch", "modified", "width", width, "heads", (json_int_t)(width * 32 / hw));
    carry(c, "layers", v, "layers");
    carry(c, "image_size", v, "image_size");
    const json_t *t = json_object_get(oc, "text_cfg");
    if (!json_is_object(t)) {
        snprintf(plugin, 64, "resnet");
        carry(c, "embed_dim", oc, "embed_dim");
        return c;
    }
    snprintf(plugin, 64, "clip");
    json_t *clip = json_pack("{s:o, s:o, s:s}", "vision", c, "text", open_clip_text(t), "act",
                             json_is_true(json_object_get(oc, "quick_gelu")) ? "quick_gelu" : "gelu");
    carry(clip, "embed_dim", oc, "embed_dim");
    return clip;
}

/* The plugin name and configuration of the model directory dir. */
static json_t *dir_config(const char *dir, char plugin[64], char *path, size_t cap, ckd_error *err)
{
    snprintf(path, cap, "%s/config.json", dir);
    if (file_exists(path)) {
        snprintf(plugin, 64, "clip");
        return ckd_clip_config_load(path, err);
    }
    json_t *j = NULL, *c = NULL;
    snprintf(path, cap, "%s/clipkd.json", dir);
    if (file_exists(path)) {
        if (!(j = load_json(path, err)))
            return NULL;
        json_t *name = json_object_get(j, "model"), *cfg = json_object_get(j, "config");
        if (!name) {
            json_decref(j);
            snprintf(plugin, 64, "clip");
            return ckd_clip_config_load(path, err);
        }
        if (!json_is_string(name) || !json_is_object(cfg))
            ckd_errorf(err, "%s: expected {\"model\": PLUGIN, \"config\": {...}} or a clip configuration", path);
        else {
            snprintf(plugin, 64, "%s", json_string_value(name));
            c = json_incref(cfg);
        }
        json_decref(j);
        return c;
    }
    snprintf(path, cap, "%s/open_clip_config.json", dir);
    if (file_exists(path)) {
        if ((j = load_json(path, err)))
            c = from_open_clip(j, path, plugin, err);
        json_decref(j);
        return c;
    }
    snprintf(path, cap, "%s/torchvision_config.json", dir);
    if (file_exists(path)) {
        snprintf(plugin, 64, "resnet");
        if ((j = load_json(path, err)))
            c = from_torchvision(j, path, err);
        json_decref(j);
        return c;
    }
    ckd_errorf(err, "%s: not a model directory: expected config.json (Hugging Face), clipkd.json,"
               " open_clip_config.json or torchvision_config.json", dir);
    return NULL;
}

ckd_model *ckd_model_from_dir_config(const ckd_registry *r, const char *dir, ckd_error *err)
{
    char path[4096];
    char plugin[64];
    json_t *cfg = dir_config(dir, plugin, path, sizeof path, err);
    if (!cfg)
        return NULL;
    const ckd_plugin *p = ckd_registry_find(r, CKD_PLUGIN_MODEL, plugin, err);
    ckd_model *m = p ? ckd_model_new(p, cfg, path, 0, 0, err) : NULL;
    json_decref(cfg);
    return m;
}

ckd_model *ckd_model_from_pretrained(const ckd_registry *r, const char *dir, ckd_error *err)
{
    ckd_model *m = ckd_model_from_dir_config(r, dir, err);
    if (m && ckd_model_load(m, dir, err)) {
        ckd_model_free(m);
        return NULL;
    }
    return m;
}

static int write_json(const json_t *j, const char *path, ckd_error *err)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (json_dump_file(j, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) || rename(tmp, path)) {
        int e = errno; /* before remove() sets its own */
        remove(tmp);
        return ckd_errorf(err, "%s: cannot write: %s", path, strerror(e));
    }
    return 0;
}

int ckd_model_save_pretrained(ckd_model *m, const char *dir, ckd_error *err)
{
    if (mkdir(dir, 0777) && errno != EEXIST)
        return ckd_errorf(err, "%s: cannot create directory: %s", dir, strerror(errno));
    /* Hugging Face's CLIPConfig describes two towers with a ViT only */
    const ckd_model_info *info = ckd_model_get_info(m);
    int is_clip = !strcmp(ckd_model_plugin_name(m), "clip") && info->patch_size > 0 && ckd_model_has_text(m);
    json_t *cfg = is_clip ? ckd_clip_config_to_hf(ckd_model_config(m), dir, err)
                          : json_pack("{s:s, s:O}", "model", ckd_model_plugin_name(m), "config",
                                      (json_t *)ckd_model_config(m));
    if (!cfg)
        return -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int rc = ckd_model_save(m, path, err);
    if (!rc) {
        snprintf(path, sizeof path, "%s/%s", dir, is_clip ? "config.json" : "clipkd.json");
        rc = write_json(cfg, path, err);
    }
    json_decref(cfg);
    return rc;
}
