/* The recipe schema, and the checks around it: the few rules the schema
 * subset cannot express, and each plugin's own parameter schema applied to
 * the part of the recipe that plugin reads. Every key and default here is
 * documented in docs/clipkd-recipe.5; keep the two in step. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipkd/data.h"
#include "clipkd/model.h"
#include "clipkd/recipe.h"
#include "recipe_internal.h"

/* Defaults follow CLIP-KD's training setup where it has one (AdamW
 * lr 1e-3, weight decay 0.1, betas 0.9/0.98, eps 1e-6 for ViT students,
 * cosine schedule, no gradient clipping, seed 0), scaled to the small runs
 * this harness is for (batch 64, no warm-up unless asked). */
/* sha256 and size may be missing only where nobody published them: such an
 * artifact is fetched once with `clipkd fetch --pin`, which records them in
 * the recipe's lock file (ckd_artifact_from_json says so). */
#define ARTIFACT                                                                         \
    "{\"type\": \"object\", \"required\": [\"urls\"],"                                   \
    " \"properties\": {"                                                                 \
    "  \"urls\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}},"             \
    "  \"sha256\": {\"type\": \"string\"},"                                              \
    "  \"sha256_prefix\": {\"type\": \"string\"},"                                       \
    "  \"size\": {\"type\": \"integer\", \"minimum\": 0},"                               \
    "  \"name\": {\"type\": \"string\"},"                                                \
    "  \"description\": {\"type\": \"string\"}}}"

/* A model plugin and its parameters ("config", checked against the plugin's
 * schema), optionally initialised from weights. */
#define MODEL_PROPS                                                                      \
    "  \"model\": {\"type\": \"string\"},"                                               \
    "  \"pretrained\": {\"type\": \"string\"},"                                          \
    "  \"config\": {\"type\": \"object\", \"additionalProperties\": true, \"default\": {}}," \
    "  \"weights\": " ARTIFACT

/* A data reader: its name and reader-specific keys (checked by the reader). */
#define READER                                                                           \
    "{\"type\": \"object\", \"required\": [\"reader\"], \"additionalProperties\": true,"   \
    " \"properties\": {\"reader\": {\"type\": \"string\"}}}"

static const char recipe_schema[] =
    "{\"type\": \"object\", \"required\": [\"data\"],"
    " \"properties\": {"
    "  \"name\": {\"type\": \"string\"},"
    "  \"description\": {\"type\": \"string\"},"
    "  \"seed\": {\"type\": \"integer\", \"minimum\": 0, \"default\": 0},"
    "  \"threads\": {\"type\": \"integer\", \"minimum\": 0, \"default\": 0},"
    "  \"teacher\": {\"type\": \"object\", \"properties\": {" MODEL_PROPS ","
    "    \"recipe\": {\"type\": \"string\"},"
    "    \"mode\": {\"type\": \"string\", \"enum\": [\"cache\", \"live\"], \"default\": \"cache\"},"
    "    \"views\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 64}}},"
    "  \"student\": {\"type\": \"object\", \"required\": [\"model\"], \"properties\": {" MODEL_PROPS ","
    "    \"init_from\": {\"type\": \"string\"}}},"
    "  \"data\": {\"type\": \"object\", \"required\": [\"train\"], \"properties\": {"
    "    \"train\": " READER ", \"eval\": " READER "}},"
    "  \"losses\": {\"type\": \"array\", \"items\": {\"type\": \"object\", \"required\": [\"name\"],"
    "    \"properties\": {"
    "      \"name\": {\"type\": \"string\"},"
    "      \"weight\": {\"type\": \"number\", \"minimum\": 0, \"default\": 1},"
    "      \"params\": {\"type\": \"object\", \"additionalProperties\": true, \"default\": {}}}}},"
    "  \"optim\": {\"type\": \"object\", \"default\": {}, \"properties\": {"
    "    \"lr\": {\"type\": \"number\", \"exclusiveMinimum\": 0, \"default\": 0.001},"
    "    \"weight_decay\": {\"type\": \"number\", \"minimum\": 0, \"default\": 0.1},"
    "    \"betas\": {\"type\": \"array\", \"items\": {\"type\": \"number\", \"minimum\": 0, \"maximum\": 0.999999},"
    "               \"default\": [0.9, 0.98]},"
    "    \"eps\": {\"type\": \"number\", \"exclusiveMinimum\": 0, \"default\": 1e-06},"
    "    \"warmup_steps\": {\"type\": \"integer\", \"minimum\": 0, \"default\": 0},"
    "    \"schedule\": {\"type\": \"string\", \"enum\": [\"cosine\", \"constant\"], \"default\": \"cosine\"},"
    "    \"grad_clip\": {\"type\": \"number\", \"minimum\": 0, \"default\": 0}}},"
    "  \"train\": {\"type\": \"object\", \"default\": {}, \"properties\": {"
    "    \"epochs\": {\"type\": \"integer\", \"minimum\": 0, \"default\": 1},"
    "    \"steps\": {\"type\": \"integer\", \"minimum\": 0, \"default\": 0},"
    "    \"batch_size\": {\"type\": \"integer\", \"minimum\": 1, \"default\": 64},"
    "    \"accum\": {\"type\": \"integer\", \"minimum\": 1, \"default\": 1},"
    "    \"log_every\": {\"type\": \"integer\", \"minimum\": 1, \"default\": 10},"
    "    \"eval_every\": {\"type\": \"integer\", \"minimum\": 0, \"default\": 0},"
    "    \"checkpoint_every\": {\"type\": \"integer\", \"minimum\": 0, \"default\": 0},"
    "    \"augment\": {\"type\": \"boolean\"}}},"
    "  \"eval\": {\"type\": \"object\", \"default\": {}, \"properties\": {"
    "    \"zero_shot\": {\"type\": \"boolean\", \"default\": true},"
    "    \"retrieval\": {\"type\": \"boolean\", \"default\": true},"
    "    \"retrieval_match\": {\"type\": \"string\", \"enum\": [\"pair\", \"text\"]},"
    "    \"calibration\": {\"type\": \"boolean\", \"default\": true},"
    "    \"calibration_bins\": {\"type\": \"integer\", \"minimum\": 1, \"default\": 15},"
    "    \"templates\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}},"
    "    \"batch_size\": {\"type\": \"integer\", \"minimum\": 1, \"default\": 256}}},"
    "  \"assistants\": {\"type\": \"array\", \"items\": {\"type\": \"object\", \"properties\": {"
    "    \"image\": {\"type\": \"string\"}, \"text\": {\"type\": \"string\"}, \"model\": {\"type\": \"string\"},"
    "    \"weight\": {\"type\": \"number\", \"minimum\": 0, \"default\": 1}}}},"
    "  \"rdm\": {\"type\": \"object\", \"required\": [\"R\"], \"properties\": {"
    "    \"tower\": {\"type\": \"string\", \"enum\": [\"image\", \"text\"], \"default\": \"image\"},"
    "    \"R\": {\"type\": \"number\", \"exclusiveMinimum\": 0},"
    "    \"hidden\": {\"type\": \"integer\", \"minimum\": 1, \"default\": 256},"
    "    \"bottleneck\": {\"type\": \"integer\", \"minimum\": 0, \"default\": 0},"
    "    \"out_relu\": {\"type\": \"boolean\", \"default\": false},"
    "    \"steps\": {\"type\": \"integer\", \"minimum\": 1, \"default\": 2000},"
    "    \"holdout\": {\"type\": \"number\", \"minimum\": 0, \"maximum\": 0.5, \"default\": 0.05},"
    /* The classifier form (eq 5); no defaults, so that the hashes of the
     * recipes written before these keys stay what they were. */
    "    \"classes\": {\"type\": \"boolean\"},"
    "    \"lambda_ce\": {\"type\": \"number\", \"minimum\": 0},"
    "    \"lambda_kl\": {\"type\": \"number\", \"minimum\": 0},"
    "    \"tau\": {\"type\": \"number\", \"exclusiveMinimum\": 0}}}"
    "}}";

const char *ckd_recipe_schema_text(void)
{
    return recipe_schema;
}

typedef struct where {
    const char *file;
    ckd_json_locate_fn locate;
    void *user;
    ckd_error *err;
} where;

/* Teaching assistants: each names the rdm recipe of one tower or of both,
 * or a model's recipe (whose towers are the teacher's kind's, checked when
 * it is loaded), every rdm entry the same towers (the batch holds one
 * [A, N, Dt] tensor per tower), at most CKD_MAX_ASSISTANTS, and only beside
 * a teacher. */
static int check_assistants(const where *w, json_t *recipe)
{
    json_t *list = json_object_get(recipe, "assistants"), *a;
    size_t i;
    int towers = -1;
    if (list && !json_object_get(recipe, "teacher"))
        return ckd_json_errorf(w->locate, w->user, w->file, "assistants", w->err,
                               "teaching assistants reconstruct a teacher's embeddings: the recipe needs a "
                               "\"teacher\"");
    if (json_array_size(list) > CKD_MAX_ASSISTANTS)
        return ckd_json_errorf(w->locate, w->user, w->file, "assistants", w->err, "at most %d assistants, got %zu",
                               CKD_MAX_ASSISTANTS, json_array_size(list));
    json_array_foreach(list, i, a)
    {
        char path[48];
        snprintf(path, sizeof path, "assistants[%zu]", i);
        int t = (json_object_get(a, "image") != NULL) | (json_object_get(a, "text") != NULL) << 1;
        int model = json_object_get(a, "model") != NULL;
        if (model && t)
            return ckd_json_errorf(w->locate, w->user, w->file, path, w->err,
                                   "\"model\" names a whole model as the assistant: no \"image\" or \"text\" "
                                   "rdm recipes beside it");
        if (model)
            continue;
        if (!t)
            return ckd_json_errorf(w->locate, w->user, w->file, path, w->err,
                                   "expected \"image\" and/or \"text\" (the rdm recipe of each tower), or "
                                   "\"model\" (a model's recipe)");
        if (towers >= 0 && t != towers)
            return ckd_json_errorf(w->locate, w->user, w->file, path, w->err,
                                   "every assistant must name the same towers as assistants[0]");
        towers = t;
    }
    return 0;
}

/* Rules outside the schema subset: fixed-length arrays, either-or keys,
 * values that are only wrong together. */
static int check_rules(const where *w, json_t *recipe)
{
    json_t *betas = json_object_get(json_object_get(recipe, "optim"), "betas");
    if (json_array_size(betas) != 2)
        return ckd_json_errorf(w->locate, w->user, w->file, "optim.betas", w->err,
                               "expected an array of 2 numbers, got %zu", json_array_size(betas));
    json_t *teacher = json_object_get(recipe, "teacher");
    if (teacher) {
        int has_model = json_object_get(teacher, "model") != NULL;
        int has_recipe = json_object_get(teacher, "recipe") != NULL;
        if (has_model == has_recipe)
            return ckd_json_errorf(w->locate, w->user, w->file, "teacher", w->err,
                                   has_model ? "expected \"model\" or \"recipe\", not both"
                                             : "expected \"model\" (a model plugin) or \"recipe\""
                                               " (the recipe that trained the teacher)");
        if (has_recipe && json_object_get(teacher, "weights"))
            return ckd_json_errorf(w->locate, w->user, w->file, "teacher.weights", w->err,
                                   "a teacher given by \"recipe\" takes its weights from that "
                                   "run; remove \"weights\"");
    }
    /* A recipe trains a student with losses, or (rdm) a CIFD rate-distortion
     * module on its teacher's cached embeddings, which has neither. */
    json_t *rdm = json_object_get(recipe, "rdm");
    const char *const student_keys[] = {"student", "losses"};
    for (int i = 0; i < 2; i++) {
        int has = json_object_get(recipe, student_keys[i]) != NULL;
        if (rdm && has)
            return ckd_json_errorf(w->locate, w->user, w->file, student_keys[i], w->err,
                                   "an \"rdm\" recipe trains the module on its teacher's cached embeddings: "
                                   "it has no \"%s\"",
                                   student_keys[i]);
        if (!rdm && !has)
            return ckd_json_errorf(w->locate, w->user, w->file, "", w->err, "missing required key \"%s\"",
                                   student_keys[i]);
    }
    if (rdm && json_object_get(recipe, "assistants"))
        return ckd_json_errorf(w->locate, w->user, w->file, "assistants", w->err,
                               "an \"rdm\" recipe trains an assistant; it has none of its own");
    if (rdm) {
        const char *mode = json_string_value(json_object_get(teacher, "mode"));
        if (!teacher || (mode && strcmp(mode, "cache")))
            return ckd_json_errorf(w->locate, w->user, w->file, teacher ? "teacher.mode" : "rdm", w->err,
                                   "an \"rdm\" recipe needs a teacher in \"cache\" mode: stage 1 reads the "
                                   "teacher's cached embeddings and never runs the teacher");
        return 0;
    }
    if (check_assistants(w, recipe))
        return -1;
    json_t *student = json_object_get(recipe, "student");
    if (json_object_get(student, "init_from")) {
        /* The model directory's config.json says what the model is. */
        if (json_object_get(student, "weights"))
            return ckd_json_errorf(w->locate, w->user, w->file, "student.weights", w->err,
                                   "the student starts from \"init_from\"; remove \"weights\"");
        if (json_object_size(json_object_get(student, "config")))
            return ckd_json_errorf(w->locate, w->user, w->file, "student.config", w->err,
                                   "a student read from \"init_from\" takes its configuration from that "
                                   "directory's config.json; remove \"config\"");
    }
    if (json_array_size(json_object_get(recipe, "losses")) == 0)
        return ckd_json_errorf(w->locate, w->user, w->file, "losses", w->err,
                               "expected at least one loss, got none");
    json_t *train = json_object_get(recipe, "train");
    if (json_integer_value(json_object_get(train, "epochs")) == 0 &&
        json_integer_value(json_object_get(train, "steps")) == 0)
        return ckd_json_errorf(w->locate, w->user, w->file, "train", w->err,
                               "expected epochs or steps above 0, got both 0");
    return 0;
}

/* Checks `params` (at json_path) against the schema of plugin kind/name,
 * whose name sits at name_path. */
static int check_plugin(const where *w, ckd_recipe_plugin_schema_fn plugin_schema, void *user,
                        const char *kind, const char *name, const char *name_path,
                        json_t *params, const char *json_path)
{
    const char *text = NULL;
    ckd_error e = {{0}};
    if (plugin_schema(user, kind, name, &text, &e))
        return ckd_json_errorf(w->locate, w->user, w->file, name_path, w->err, "%s", e.msg);
    char what[256];
    snprintf(what, sizeof what, "%s plugin \"%s\"", kind, name);
    json_t *schema = ckd_schema_parse(text, what, &e);
    if (!schema)
        return ckd_json_errorf(w->locate, w->user, w->file, name_path, w->err, "%s", e.msg);
    int rc = ckd_schema_apply(schema, params, w->file, json_path, w->locate, w->user, w->err);
    json_decref(schema);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The shipped configuration replaces m's config, with the config's own keys
 * merged over it. */
static int merge_over_shipped(const where *w, json_t *m, const char *plugin, const char *name,
                              const char *at)
{
    ckd_error e = {{0}};
    json_t *base = ckd_model_config_shipped(plugin, name, &e);
    if (!base)
        return ckd_json_errorf(w->locate, w->user, w->file, at, w->err, "%s", e.msg);
    json_t *own = json_deep_copy(json_object_get(m, "config"));
    int rc = !own || ckdi_recipe_merge(base, own) || json_object_set(m, "config", base)
                 ? ckd_errorf(w->err, "%s: out of memory", w->file)
                 : 0;
    json_decref(own);
    json_decref(base);
    return rc;
}

static int unknown_config(const where *w, const char *at, const char *plugin, const char *name,
                          char *const *names, size_t n)
{
    char list[CKD_ERROR_MAX / 2] = "", near[160] = "";
    size_t len = 0;
    for (size_t i = 0; i < n && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", names[i]);
    const char *s = ckd_suggest(name, (const char *const *)names, n);
    if (s)
        snprintf(near, sizeof near, " (did you mean \"%s\"?)", s);
    return ckd_json_errorf(w->locate, w->user, w->file, at, w->err,
                           "no shipped configuration \"%s\" of model plugin \"%s\"%s; shipped: %s",
                           name, plugin, near, list);
}

/* A config whose "name" is a configuration the plugin ships takes that
 * configuration as its base, its own keys merged over it as extends merges
 * (so {"name": "ViT-T-16", "vision": {"layers": 6}} is ViT-T-16 with six
 * vision layers). Any other name is a label; but a config that gives nothing
 * else cannot be meant as a whole configuration, so its name is an error
 * there rather than a missing key further on. Plugins that ship no
 * configurations are left to their schema. */
static int expand_named_config(const where *w, json_t *m, const char *plugin, const char *role)
{
    json_t *cfg = json_object_get(m, "config");
    const char *name = json_string_value(json_object_get(cfg, "name"));
    if (!name)
        return 0;
    char at[64];
    snprintf(at, sizeof at, "%s.config.name", role);
    ckd_error e = {{0}};
    size_t n = 0;
    char **names = ckd_model_config_names(plugin, &n, &e);
    if (!names)
        return ckd_json_errorf(w->locate, w->user, w->file, at, w->err, "%s", e.msg);
    int rc = 0;
    if (n && bsearch(&name, names, n, sizeof *names, cmp_str))
        rc = merge_over_shipped(w, m, plugin, name, at);
    else if (n && json_object_size(cfg) == 1)
        rc = unknown_config(w, at, plugin, name, names, n);
    ckd_model_config_names_free(names, n);
    return rc;
}

static int check_model(const where *w, ckd_recipe_plugin_schema_fn plugin_schema, void *user,
                       json_t *recipe, const char *role)
{
    json_t *m = json_object_get(recipe, role);
    const char *name = json_string_value(json_object_get(m, "model"));
    if (!name || json_object_get(m, "init_from"))
        return 0; /* no such role, a teacher given by its recipe, a model directory */
    char name_path[64], config_path[64];
    snprintf(name_path, sizeof name_path, "%s.model", role);
    snprintf(config_path, sizeof config_path, "%s.config", role);
    if (expand_named_config(w, m, name, role))
        return -1;
    return check_plugin(w, plugin_schema, user, "model", name, name_path,
                        json_object_get(m, "config"), config_path);
}

/* Each data reader checks its own keys (unknown ones with did-you-mean) and
 * fills its defaults, so a misspelt data key fails with the recipe rather
 * than when the dataset opens. */
static int check_data(json_t *recipe, const char *file, ckd_json_locate_fn locate, void *locate_user,
                      ckd_error *err)
{
    static const char *const splits[] = {"train", "eval"};
    json_t *data = json_object_get(recipe, "data");
    for (size_t i = 0; i < 2; i++) {
        json_t *spec = json_object_get(data, splits[i]);
        char path[32];
        snprintf(path, sizeof path, "data.%s", splits[i]);
        if (spec && ckd_dataset_check_spec(spec, file, path, locate, locate_user, err))
            return -1;
    }
    return 0;
}

int ckd_recipe_validate(json_t *recipe, const char *file, ckd_json_locate_fn locate,
                        void *locate_user, ckd_recipe_plugin_schema_fn plugin_schema, void *user,
                        ckd_error *err)
{
    where w = {file, locate, locate_user, err};
    if (ckdi_recipe_expand_pretrained(recipe, file, locate, locate_user, err))
        return -1;
    json_t *schema = ckd_schema_parse(recipe_schema, "the recipe schema", err);
    if (!schema)
        return -1;
    /* A section left out (optim, train, eval) defaults to {}, and the schema
     * fills that default's own defaults: leaving a section out and writing it
     * with every default spelled out give the same recipe (and hash). */
    int rc = ckd_schema_apply(schema, recipe, file, "", locate, locate_user, err);
    json_decref(schema);
    if (rc || check_rules(&w, recipe) || check_data(recipe, file, locate, locate_user, err))
        return -1;
    if (!plugin_schema)
        return 0;
    json_t *losses = json_object_get(recipe, "losses"), *loss;
    size_t i;
    json_array_foreach(losses, i, loss)
    {
        char name_path[64], params_path[64];
        snprintf(name_path, sizeof name_path, "losses[%zu].name", i);
        snprintf(params_path, sizeof params_path, "losses[%zu].params", i);
        if (check_plugin(&w, plugin_schema, user, "loss",
                         json_string_value(json_object_get(loss, "name")), name_path,
                         json_object_get(loss, "params"), params_path))
            return -1;
    }
    if (check_model(&w, plugin_schema, user, recipe, "student") ||
        check_model(&w, plugin_schema, user, recipe, "teacher"))
        return -1;
    return 0;
}

