/* CLIP configurations: Hugging Face CLIPConfig <-> the clip plugin's own
 * JSON, and the shipped named configurations. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipkd/model.h"
#include "core/json_oom.h"

/* CLIPConfig's defaults (transformers' CLIPTextConfig / CLIPVisionConfig,
 * the ViT-B/32 values); old hub configs leave keys out and rely on them. */
typedef struct hf_key {
    const char *hf, *ours;
    double def;
} hf_key;

static const hf_key text_keys[] = {
    {"hidden_size", "width", 512},         {"intermediate_size", "mlp_width", 2048},
    {"num_attention_heads", "heads", 8},   {"num_hidden_layers", "layers", 12},
    {"max_position_embeddings", "context_length", 77}, {"vocab_size", "vocab_size", 49408},
    {"layer_norm_eps", "ln_eps", 1e-5},    {"eos_token_id", "eos_token_id", 49407},
};
static const hf_key vision_keys[] = {
    {"hidden_size", "width", 768},       {"intermediate_size", "mlp_width", 3072},
    {"num_attention_heads", "heads", 12}, {"num_hidden_layers", "layers", 12},
    {"image_size", "image_size", 224},   {"patch_size", "patch_size", 32},
    {"num_channels", "channels", 3},     {"layer_norm_eps", "ln_eps", 1e-5},
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* sub-config merged with its legacy *_config_dict (whose values win). */
static json_t *merged(const json_t *hf, const char *name)
{
    char dict[64];
    snprintf(dict, sizeof dict, "%s_dict", name);
    json_t *m = json_object();
    const json_t *a = json_object_get(hf, name), *b = json_object_get(hf, dict);
    if (json_is_object(a))
        json_object_update(m, (json_t *)a);
    if (json_is_object(b))
        json_object_update(m, (json_t *)b);
    return m;
}

static int is_int_key(const char *ours) { return strcmp(ours, "ln_eps") != 0; }

static int convert_tower(const json_t *sub, const hf_key *keys, size_t n, const char *where, const char *tower,
                         json_t *out, ckd_error *err)
{
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_object_get(sub, keys[i].hf);
        double x = keys[i].def;
        if (v && !json_is_null(v)) {
            if (!json_is_number(v))
                return ckd_errorf(err, "%s: %s_config.%s: expected a number", where, tower, keys[i].hf);
            x = json_number_value(v);
        }
        if (is_int_key(keys[i].ours) && x != (double)(json_int_t)x)
            return ckd_errorf(err, "%s: %s_config.%s: expected an integer, got %g", where, tower, keys[i].hf, x);
        json_object_set_new(out, keys[i].ours,
                            is_int_key(keys[i].ours) ? json_integer((json_int_t)x) : json_real(x));
    }
    const json_t *act = json_object_get(sub, "hidden_act");
    const char *a = json_is_string(act) ? json_string_value(act) : "quick_gelu";
    if (strcmp(a, "quick_gelu") && strcmp(a, "gelu"))
        return ckd_errorf(err, "%s: %s_config.hidden_act \"%s\": clipkd supports quick_gelu and gelu", where, tower, a);
    json_object_set_new(out, "act", json_string(a));
    return 0;
}

json_t *ckd_clip_config_from_hf(const json_t *hf, const char *where, ckd_error *err)
{
    if (!json_is_object(hf)) {
        ckd_errorf(err, "%s: expected a JSON object (a CLIPConfig)", where);
        return NULL;
    }
    json_t *text = merged(hf, "text_config"), *vision = merged(hf, "vision_config");
    json_t *out = json_object(), *t = json_object(), *v = json_object();
    int rc = convert_tower(text, text_keys, N_OF(text_keys), where, "text", t, err) ||
             convert_tower(vision, vision_keys, N_OF(vision_keys), where, "vision", v, err);
    json_decref(text);
    json_decref(vision);
    /* CLIPModel builds both projections from the top-level projection_dim. */
    const json_t *pd = json_object_get(hf, "projection_dim");
    const json_t *ls = json_object_get(hf, "logit_scale_init_value");
    if (!rc && pd && !json_is_integer(pd))
        rc = ckd_errorf(err, "%s: projection_dim: expected an integer", where);
    if (rc) {
        json_decref(t), json_decref(v), json_decref(out);
        return NULL;
    }
    json_object_set_new(out, "embed_dim", json_integer(pd ? json_integer_value(pd) : 512));
    json_object_set_new(out, "logit_scale_init", json_real(json_is_number(ls) ? json_number_value(ls) : 2.6592));
    json_object_set_new(out, "act", json_string(json_string_value(json_object_get(v, "act"))));
    json_object_set_new(out, "vision", v);
    json_object_set_new(out, "text", t);
    return out;
}

/* Our value for a key, for the reverse direction (the config is validated,
 * so every key the schema defaults is present). */
static double num(const json_t *o, const char *key, double def)
{
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : def;
}

static json_t *tower_to_hf(const json_t *cfg, const char *tower, const hf_key *keys, size_t n)
{
    const json_t *o = json_object_get(cfg, tower);
    json_t *out = json_object();
    for (size_t i = 0; i < n; i++) {
        double x = num(o, keys[i].ours, keys[i].def);
        if (!strcmp(keys[i].ours, "mlp_width") && x == 0)
            x = (double)(json_int_t)(num(o, "width", 0) * num(o, "mlp_ratio", 4.0));
        json_object_set_new(out, keys[i].hf, is_int_key(keys[i].ours) ? json_integer((json_int_t)x) : json_real(x));
    }
    const json_t *act = json_object_get(o, "act");
    if (!json_is_string(act))
        act = json_object_get(cfg, "act");
    json_object_set_new(out, "hidden_act", json_string(json_is_string(act) ? json_string_value(act) : "gelu"));
    return out;
}

json_t *ckd_clip_config_to_hf(const json_t *cfg, const char *where, ckd_error *err)
{
    if (!json_is_object(json_object_get(cfg, "vision")) || !json_is_object(json_object_get(cfg, "text"))) {
        ckd_errorf(err, "%s: not a clip configuration (no vision / text objects)", where);
        return NULL;
    }
    json_t *hf = json_object();
    json_t *arch = json_array();
    json_array_append_new(arch, json_string("CLIPModel"));
    json_object_set_new(hf, "architectures", arch);
    json_object_set_new(hf, "model_type", json_string("clip"));
    json_object_set_new(hf, "projection_dim", json_integer((json_int_t)num(cfg, "embed_dim", 512)));
    json_object_set_new(hf, "logit_scale_init_value", json_real(num(cfg, "logit_scale_init", 2.6592)));
    json_t *t = tower_to_hf(cfg, "text", text_keys, N_OF(text_keys));
    json_object_set_new(t, "bos_token_id", json_integer(49406));
    json_object_set_new(t, "pad_token_id", json_integer(1));
    json_object_set_new(t, "model_type", json_string("clip_text_model"));
    json_object_set_new(hf, "text_config", t);
    json_t *v = tower_to_hf(cfg, "vision", vision_keys, N_OF(vision_keys));
    json_object_set_new(v, "model_type", json_string("clip_vision_model"));
    json_object_set_new(hf, "vision_config", v);
    return hf;
}

/* The file at path as a JSON object, or NULL with a message that names
 * the place. */
static json_t *load_object(const char *path, ckd_error *err)
{
    json_error_t je;
    json_t *j = ckdi_json_load_file(path, 0, &je, NULL);
    if (!j) {
        ckd_errorf(err, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        ckd_errorf(err, "%s: expected a JSON object", path);
        return NULL;
    }
    return j;
}

/* j (taken over) as the plugin's configuration: an HF CLIPConfig,
 * recognised by its text_config / vision_config keys, is converted. */
static json_t *as_clip_config(json_t *j, const char *where, ckd_error *err)
{
    if (j && (json_object_get(j, "text_config") || json_object_get(j, "vision_config") ||
              json_object_get(j, "text_config_dict") || json_object_get(j, "vision_config_dict"))) {
        json_t *c = ckd_clip_config_from_hf(j, where, err);
        json_decref(j);
        return c;
    }
    return j;
}

json_t *ckd_clip_config_load(const char *path, ckd_error *err)
{
    return as_clip_config(load_object(path, err), path, err);
}

json_t *ckd_model_config_shipped(const char *plugin, const char *name, ckd_error *err)
{
    char path[4096];
    if (ckd_model_config_path(plugin, name, path, sizeof path, err))
        return NULL;
    FILE *f = fopen(path, "r");
    if (!f) {
        ckd_errorf(err, "no model configuration \"%s\" (looked for %s)", name, path);
        return NULL;
    }
    fclose(f);
    return load_object(path, err);
}

json_t *ckd_clip_config_named(const char *name, ckd_error *err)
{
    size_t n = strlen(name);
    if (strchr(name, '/') || (n > 5 && !strcmp(name + n - 5, ".json")))
        return ckd_clip_config_load(name, err);
    return as_clip_config(ckd_model_config_shipped("clip", name, err), name, err);
}
