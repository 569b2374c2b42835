/* test-recipe.c — recipes: positions in JSON text, extends chains, cycles,
 * --set overrides, validation against the recipe schema and (fake) plugin
 * schemas with file:line:col messages, the hash's invariances, and model
 * configs that name a shipped configuration. Fixtures:
 * tests/fixtures/recipes/. */
#include "config.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clipkd/model.h"
#include "clipkd/recipe.h"

/* ---- helpers ------------------------------------------------------------ */

static char *fixture(const char *name)
{
    const char *src = getenv("CKD_TEST_SRCDIR");
    cr_assert(src && *src, "CKD_TEST_SRCDIR is not set (run through make check)");
    size_t n = strlen(src) + strlen(name) + 64;
    char *p = malloc(n);
    cr_assert(p);
    snprintf(p, n, "%s/tests/fixtures/recipes/%s", src, name);
    return p;
}

/* A stand-in for the plugin registry: a few losses and one model. */
static const struct {
    const char *kind, *name, *schema;
} fake_plugins[] = {
    {"loss", "clip", "{}"},
    {"loss", "crd",
     "{\"type\": \"object\", \"properties\": {"
     "\"tau\": {\"type\": \"number\", \"default\": 1, \"minimum\": 0.01}}}"},
    {"loss", "fd", "{\"type\": \"object\", \"properties\": {}}"},
    {"loss", "icl", NULL},
    {"model", "clip",
     "{\"type\": \"object\", \"properties\": {"
     "\"width\": {\"type\": \"integer\", \"minimum\": 8, \"default\": 64}}}"},
};

static int fake_schema(void *user, const char *kind, const char *name, const char **schema,
                       ckd_error *err)
{
    int *calls = user;
    if (calls)
        (*calls)++;
    char known[256] = "";
    for (size_t i = 0; i < sizeof fake_plugins / sizeof *fake_plugins; i++) {
        if (strcmp(fake_plugins[i].kind, kind))
            continue;
        if (!strcmp(fake_plugins[i].name, name)) {
            *schema = fake_plugins[i].schema;
            return 0;
        }
        size_t k = strlen(known);
        snprintf(known + k, sizeof known - k, "%s%s", k ? ", " : "", fake_plugins[i].name);
    }
    return ckd_errorf(err, "unknown %s plugin \"%s\" (known: %s)", kind, name, known);
}

static ckd_recipe *load_sets(const char *name, const char *const *sets, size_t n, ckd_error *err)
{
    char *path = fixture(name);
    ckd_recipe *r = ckd_recipe_load(path, sets, n, fake_schema, NULL, err);
    free(path);
    return r;
}

static ckd_recipe *load_ok(const char *name, const char *const *sets, size_t n)
{
    ckd_error err = {{0}};
    ckd_recipe *r = load_sets(name, sets, n, &err);
    cr_assert(r, "%s: %s", name, err.msg);
    return r;
}

/* Loading must fail, with a message that contains each of the needles. */
static void expect_fail(const char *name, const char *const *sets, size_t n,
                        const char *const *needles)
{
    ckd_error err = {{0}};
    ckd_recipe *r = load_sets(name, sets, n, &err);
    cr_assert_null(r, "%s loaded but should not have", name);
    for (; *needles; needles++)
        cr_expect(strstr(err.msg, *needles), "%s: expected \"%s\" in: %s", name, *needles,
                  err.msg);
}

#define NEEDLES(...) ((const char *const[]){__VA_ARGS__, NULL})

static json_t *at(const ckd_recipe *r, const char *path)
{
    json_t *v = ckd_recipe_json(r);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *tok = strtok(buf, "."); tok && v; tok = strtok(NULL, ".")) {
        char *br = strchr(tok, '[');
        if (br)
            *br = '\0';
        v = json_object_get(v, tok);
        if (br)
            v = json_array_get(v, strtoul(br + 1, NULL, 10));
    }
    return v;
}

static double num(const ckd_recipe *r, const char *path)
{
    json_t *v = at(r, path);
    cr_assert(json_is_number(v), "%s is not a number", path);
    return json_number_value(v);
}

static const char *str(const ckd_recipe *r, const char *path)
{
    json_t *v = at(r, path);
    cr_assert(json_is_string(v), "%s is not a string", path);
    return json_string_value(v);
}

/* ---- JSON with positions ------------------------------------------------ */

Test(json_source, positions_of_values_members_and_elements)
{
    char *path = fixture("positions.json");
    ckd_error err = {{0}};
    json_t *root = NULL;
    ckd_json_source *s = ckd_json_source_load(path, &root, &err);
    cr_assert(s, "%s", err.msg);
    static const struct {
        const char *path;
        int line, col;
    } want[] = {
        {"", 1, 1},       {"a", 2, 3},         {"a.b", 2, 9},      {"a.b[0]", 2, 15},
        {"a.b[1]", 2, 18}, {"a.b[1].c", 2, 19}, {"\xc3\xa9\"x", 3, 3}, /* key with escapes */
        {"\xc3\xbcn\xc3\xaf", 4, 3}, {"z", 4, 15}, /* columns count characters */
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        int line = 0, col = 0;
        cr_expect(ckd_json_source_find(s, want[i].path, &line, &col), "no position for '%s'",
                  want[i].path);
        cr_expect(line == want[i].line && col == want[i].col, "'%s': got %d:%d, want %d:%d",
                  want[i].path, line, col, want[i].line, want[i].col);
    }
    int line, col;
    cr_expect_not(ckd_json_source_find(s, "a.b[2]", &line, &col));
    /* locate falls back to the nearest ancestor the text holds. */
    const char *file = NULL;
    cr_assert(ckd_json_source_locate(s, "a.b[1].missing.x", &file, &line, &col));
    cr_expect(line == 2 && col == 18 && !strcmp(file, path), "got %s:%d:%d", file, line, col);
    ckd_json_source_free(s);
    json_decref(root);
    free(path);
}

Test(json_source, parse_errors_carry_line_and_column)
{
    ckd_error err = {{0}};
    json_t *root = NULL;
    const char *text = "{\n  \"a\": 1,\n  \"b\": [1, 2,]\n}\n";
    cr_assert_null(ckd_json_source_parse("mem.json", text, strlen(text), &root, &err));
    cr_expect(!strncmp(err.msg, "mem.json:3:", 11), "got: %s", err.msg);
    const char *dup = "{\"a\": 1,\n \"a\": 2}";
    cr_assert_null(ckd_json_source_parse("dup.json", dup, strlen(dup), &root, &err));
    cr_expect(strstr(err.msg, "dup.json:2:") && strstr(err.msg, "duplicate"), "got: %s",
              err.msg);
    cr_assert_null(ckd_json_source_load("/nonexistent/x.json", &root, &err));
    cr_expect(strstr(err.msg, "/nonexistent/x.json: cannot open"), "got: %s", err.msg);
}

/* ---- extends ------------------------------------------------------------- */

Test(extends, two_levels_in_other_directories)
{
    ckd_recipe *r = load_ok("distill.json", NULL, 0);
    /* base/common.json, through teachers/vit-tiny.json, into distill.json */
    cr_expect_eq(num(r, "seed"), 7);
    cr_expect_eq(num(r, "train.batch_size"), 32);   /* from the base */
    cr_expect_eq(num(r, "train.epochs"), 4);        /* the middle wins over the base */
    cr_expect_eq(num(r, "optim.lr"), 0.001);         /* the top wins over the base */
    cr_expect_eq(num(r, "optim.warmup_steps"), 100); /* objects merge key by key */
    cr_expect_eq(num(r, "student.config.width"), 32);
    cr_expect_str_eq(str(r, "student.model"), "clip");
    cr_expect_eq(json_array_size(at(r, "losses")), 3); /* arrays replace */
    cr_expect_null(at(r, "extends"));
    /* defaults, from the recipe schema and from the plugins' schemas */
    cr_expect_str_eq(str(r, "teacher.mode"), "cache");
    cr_expect_eq(num(r, "losses[0].weight"), 1);
    cr_expect_eq(num(r, "losses[1].params.tau"), 0.5);
    cr_expect_eq(num(r, "optim.weight_decay"), 0.1);
    cr_expect_eq(json_array_size(at(r, "optim.betas")), 2);
    cr_expect_eq(num(r, "train.accum"), 1);
    cr_expect(json_is_true(at(r, "eval.zero_shot")));
    char *path = fixture("distill.json");
    cr_expect_str_eq(ckd_recipe_path(r), path);
    free(path);

    /* Each value remembers the file, line and column it came from. */
    const char *file;
    int line, col;
    cr_assert(ckd_recipe_locate(r, "train.batch_size", &file, &line, &col));
    cr_expect(strstr(file, "base/common.json") && line == 8 && col == 26, "%s:%d:%d", file,
              line, col);
    cr_assert(ckd_recipe_locate(r, "train.epochs", &file, &line, &col));
    cr_expect(strstr(file, "teachers/vit-tiny.json") && line == 6, "%s:%d:%d", file, line, col);
    cr_assert(ckd_recipe_locate(r, "losses[1].params.tau", &file, &line, &col));
    cr_expect(strstr(file, "/distill.json") && line == 15, "%s:%d:%d", file, line, col);
    /* a default is placed at its nearest written ancestor */
    cr_assert(ckd_recipe_locate(r, "optim.betas", &file, &line, &col));
    cr_expect(strstr(file, "/distill.json") && line == 18 && col == 3, "%s:%d:%d", file, line,
              col);

    ckd_error err = {{0}};
    cr_expect_eq(ckd_recipe_errorf(r, "train.batch_size", &err, "too big for %s", "this"), -1);
    cr_expect(strstr(err.msg, "base/common.json:8:26: train.batch_size: too big for this"),
              "got: %s", err.msg);
    ckd_recipe_free(r);
}

Test(extends, teacher_recipe_path_is_relative_to_its_file)
{
    int calls = 0;
    ckd_error err = {{0}};
    char *path = fixture("teacher-by-recipe.json");
    ckd_recipe *r = ckd_recipe_load(path, NULL, 0, fake_schema, &calls, &err);
    cr_assert(r, "%s", err.msg);
    cr_expect_eq(calls, 3, "losses clip and icl, model clip (the teacher has no model)");
    cr_expect_eq(num(r, "student.config.width"), 16);
    char out[4096];
    cr_assert_eq(ckd_recipe_resolve_path(r, "teacher.recipe", out, sizeof out, &err), 0, "%s",
                 err.msg);
    cr_expect(strstr(out, "tests/fixtures/recipes/teachers/vit-tiny.json") &&
                  access(out, R_OK) == 0, "got %s", out);
    cr_expect_eq(ckd_recipe_resolve_path(r, "seed", out, sizeof out, &err), -1);
    cr_expect(strstr(err.msg, "seed: expected a file name, got an integer"), "got: %s", err.msg);
    ckd_recipe_free(r);
    free(path);
}

Test(extends, cycle_shows_the_chain)
{
    expect_fail("cycle-a.json", NULL, 0,
                NEEDLES("cycle-b.json:3:3: extends: cycle: ",
                        "cycle-a.json -> ", "cycle-b.json -> ", "recipes/cycle-a.json"));
}

Test(extends, missing_file_names_the_including_file_and_line)
{
    expect_fail("missing-extends.json", NULL, 0,
                NEEDLES("missing-extends.json:3:15: extends[1]: cannot open \"",
                        "recipes/base/nope.json\": No such file or directory"));
}

Test(extends, errors_in_an_extended_file_name_that_file)
{
    expect_fail("extends-bad-base.json", NULL, 0,
                NEEDLES("bad-base.json:4:5: optim.schedule: expected one of \"cosine\", "
                        "\"constant\", got \"cosin\" (did you mean \"cosine\"?)"));
}

Test(extends, null_removes_an_inherited_key)
{
    ckd_recipe *r = load_ok("distill.json", NEEDLES("data.eval=null"), 1);
    cr_expect_null(at(r, "data.eval"));
    cr_expect_not_null(at(r, "data.train"));
    ckd_recipe_free(r);
}

/* ---- validation ------------------------------------------------------------ */

Test(validate, malformed_json_reports_line_and_column)
{
    expect_fail("malformed.json", NULL, 0, NEEDLES("malformed.json:4:", "expected"));
}

Test(validate, wrong_type)
{
    expect_fail("wrong-type.json", NULL, 0,
                NEEDLES("wrong-type.json:5:3: seed: expected an integer, got \"seven\""));
}

Test(validate, unknown_key_suggests_the_known_one)
{
    expect_fail("typo.json", NULL, 0,
                NEEDLES("typo.json:4:3: lossses: unknown key \"lossses\" (did you mean "
                        "\"losses\"?)"));
}

Test(validate, missing_required_key)
{
    expect_fail("missing-required.json", NULL, 0,
                NEEDLES("missing-required.json:1:1: (top level): missing required key "
                        "\"student\""));
}

Test(validate, out_of_range)
{
    expect_fail("out-of-range.json", NULL, 0,
                NEEDLES("out-of-range.json:6:5: train.batch_size: expected a value ≥ 1, got 0"));
}

Test(validate, plugin_parameters_are_checked_where_written)
{
    expect_fail("bad-params.json", NULL, 0,
                NEEDLES("bad-params.json:6:32: losses[1].params.tau: expected a value ≥ 0.01, "
                        "got 0"));
}

Test(validate, unknown_plugin_lists_the_known_ones)
{
    expect_fail("distill.json", NEEDLES("losses[1].name=crdd"), 1,
                NEEDLES("--set losses[1].name=crdd: losses[1].name: unknown loss plugin "
                        "\"crdd\" (known: clip, crd, fd, icl)"));
    expect_fail("distill.json", NEEDLES("student.model=vit"), 1,
                NEEDLES("student.model: unknown model plugin \"vit\" (known: clip)"));
    expect_fail("distill.json", NEEDLES("losses[2].params.alpha=1"), 1,
                NEEDLES("--set losses[2].params.alpha=1: losses[2].params.alpha: unknown key"));
    /* a plugin whose schema is NULL takes no parameters */
    expect_fail("teacher-by-recipe.json", NEEDLES("losses[1].params.x=1"), 1,
                NEEDLES("--set losses[1].params.x=1: losses[1].params.x: unknown key \"x\""));
    expect_fail("distill.json", NEEDLES("student.config.width=4"), 1,
                NEEDLES("student.config.width: expected a value ≥ 8, got 4"));
}

Test(validate, rules_beyond_the_schema)
{
    expect_fail("distill.json", NEEDLES("optim.betas=[0.9]"), 1,
                NEEDLES("optim.betas: expected an array of 2 numbers, got 1"));
    expect_fail("distill.json", NEEDLES("teacher.recipe=t.json"), 1,
                NEEDLES("teacher: expected \"model\" or \"recipe\", not both"));
    expect_fail("distill.json", NEEDLES("losses=[]"), 1,
                NEEDLES("--set losses=[]: losses: expected at least one loss"));
    expect_fail("distill.json", NEEDLES("train.epochs=0"), 1,
                NEEDLES("train: expected epochs or steps above 0"));
    expect_fail("distill.json", NEEDLES("teacher.mode=warm"), 1,
                NEEDLES("teacher.mode: expected one of \"cache\", \"live\", got \"warm\""));
}

Test(validate, without_plugin_schemas_params_stay_as_written)
{
    ckd_error err = {{0}};
    char *path = fixture("distill.json");
    ckd_recipe *r = ckd_recipe_load(path, NULL, 0, NULL, NULL, &err);
    cr_assert(r, "%s", err.msg);
    cr_expect_null(at(r, "losses[0].params.tau"));
    cr_expect_eq(num(r, "losses[1].params.tau"), 0.5);
    ckd_recipe_free(r);
    free(path);
}

/* ---- --set ------------------------------------------------------------------ */

Test(set, nested_keys_and_array_items)
{
    ckd_recipe *r = load_ok("distill.json",
                            NEEDLES("optim.lr=0.002", "losses[1].weight=2",
                                    "losses[1].params.tau=0.25", "name=renamed",
                                    "teacher.mode=\"live\"", "optim.betas=[0.8, 0.9]",
                                    "data.train.limit=100", "eval.templates=[\"a {}.\"]"),
                            8);
    cr_expect_eq(num(r, "optim.lr"), 0.002);
    cr_expect_eq(num(r, "losses[1].weight"), 2);
    cr_expect_eq(num(r, "losses[1].params.tau"), 0.25);
    cr_expect_str_eq(str(r, "name"), "renamed");
    cr_expect_str_eq(str(r, "teacher.mode"), "live");
    cr_expect_eq(num(r, "optim.betas[0]"), 0.8);
    cr_expect_eq(num(r, "data.train.limit"), 100); /* readers take their own keys */
    cr_expect_str_eq(str(r, "eval.templates[0]"), "a {}.");

    const char *file;
    int line, col;
    cr_assert(ckd_recipe_locate(r, "losses[1].weight", &file, &line, &col));
    cr_expect_str_eq(file, "--set losses[1].weight=2");
    cr_assert(ckd_recipe_locate(r, "losses[1].name", &file, &line, &col));
    cr_expect(strstr(file, "/distill.json") && line == 15, "%s:%d:%d", file, line, col);
    ckd_recipe_free(r);
}

Test(set, errors_from_a_set_value_name_the_set)
{
    expect_fail("distill.json", NEEDLES("optim.lr=0.1", "train.batch_size=0"), 2,
                NEEDLES("--set train.batch_size=0: train.batch_size: expected a value ≥ 1, "
                        "got 0"));
    /* an object created on the way to a --set is the --set's too */
    expect_fail("missing-required.json", NEEDLES("student.config.width=16"), 1,
                NEEDLES("--set student.config.width=16: student: missing required key "
                        "\"model\""));
}

Test(set, bad_paths)
{
    expect_fail("distill.json", NEEDLES("optim.lrr=1"), 1,
                NEEDLES("--set optim.lrr=1: optim.lrr: unknown key \"lrr\" (did you mean "
                        "\"lr\"?)"));
    expect_fail("distill.json", NEEDLES("lossses[0].weight=1"), 1,
                NEEDLES("unknown key \"lossses\" (did you mean \"losses\"?)"));
    expect_fail("distill.json", NEEDLES("losses.1.weight=2"), 1,
                NEEDLES("--set losses.1.weight=2: losses is an array: write losses[1]"));
    expect_fail("distill.json", NEEDLES("losses[9].weight=2"), 1,
                NEEDLES("losses[9]: no such element (losses has 3)"));
    expect_fail("distill.json", NEEDLES("seed.x=2"), 1,
                NEEDLES("--set seed.x=2: seed is an integer, not an object"));
    expect_fail("distill.json", NEEDLES("optim..lr=2"), 1, NEEDLES("malformed path"));
    expect_fail("distill.json", NEEDLES("optim.lr"), 1,
                NEEDLES("--set optim.lr: expected PATH=VALUE"));
    expect_fail("distill.json", NEEDLES("losses[x].weight=1"), 1, NEEDLES("malformed path"));
}

Test(set, on_a_bare_object)
{
    json_t *o = json_object();
    char norm[128];
    ckd_error err = {{0}};
    cr_assert_eq(ckd_recipe_set(o, "train.steps=5", norm, sizeof norm, &err), 0, "%s", err.msg);
    cr_expect_str_eq(norm, "train.steps");
    cr_expect_eq(json_integer_value(json_object_get(json_object_get(o, "train"), "steps")), 5);
    cr_assert_eq(ckd_recipe_set(o, "name=a=b", NULL, 0, &err), 0, "%s", err.msg);
    cr_expect_str_eq(json_string_value(json_object_get(o, "name")), "a=b");
    cr_expect_eq(ckd_recipe_set(o, "=3", NULL, 0, &err), -1);
    /* a failed --set leaves nothing behind, not even the objects on its way */
    cr_expect_eq(ckd_recipe_set(o, "teacher.weights.sha265=\"x\"", NULL, 0, &err), -1);
    cr_expect(strstr(err.msg, "teacher.weights.sha265: unknown key \"sha265\" (did you mean "
                              "\"sha256\"?)"), "got: %s", err.msg);
    cr_expect_null(json_object_get(o, "teacher"));
    cr_expect_eq(json_object_size(o), 2);
    json_decref(o);
}

/* ---- canonical form and hash ------------------------------------------------- */

Test(hash, equal_recipes_written_differently_hash_the_same)
{
    ckd_recipe *a = load_ok("distill.json", NULL, 0);
    ckd_recipe *b = load_ok("distill-inline.json", NULL, 0);
    cr_expect_str_eq(ckd_recipe_canonical(a), ckd_recipe_canonical(b));
    cr_expect_str_eq(ckd_recipe_hash(a), ckd_recipe_hash(b));
    cr_expect_eq(strlen(ckd_recipe_hash(a)), 64);
    cr_expect_eq(strspn(ckd_recipe_hash(a), "0123456789abcdef"), 64);
    /* sorted keys, compact, no extends */
    cr_expect(!strncmp(ckd_recipe_canonical(a), "{\"data\":{\"eval\":", 15), "%s",
              ckd_recipe_canonical(a));
    cr_expect_null(strstr(ckd_recipe_canonical(a), "extends"));
    cr_expect_null(strstr(ckd_recipe_canonical(a), ": "));

    /* setting a value to what it already is, spelt otherwise, changes nothing */
    ckd_recipe *c = load_ok("distill.json", NEEDLES("optim.lr=1e-3", "losses[2].weight=2000.0",
                                                     "optim.eps=0.000001"),
                            3);
    cr_expect_str_eq(ckd_recipe_hash(a), ckd_recipe_hash(c));

    /* a changed value changes it */
    ckd_recipe *d = load_ok("distill.json", NEEDLES("optim.lr=0.0011"), 1);
    cr_expect_str_neq(ckd_recipe_hash(a), ckd_recipe_hash(d));
    ckd_recipe *e = load_ok("distill-inline.json", NEEDLES("losses[1].params.tau=0.5000001"), 1);
    cr_expect_str_neq(ckd_recipe_hash(b), ckd_recipe_hash(e));

    /* the dump is the same recipe, readable */
    char *dump = ckd_recipe_dump(a);
    cr_assert(dump);
    cr_expect(strstr(dump, "\n  \"data\": {\n"), "%s", dump);
    cr_expect(strstr(dump, "\"weight_decay\": 0.1\n"), "%s", dump);
    cr_expect_eq(dump[strlen(dump) - 1], '\n');
    json_t *back = json_loads(dump, 0, NULL);
    cr_expect(json_equal(back, ckd_recipe_json(a)));
    json_decref(back);
    free(dump);
    ckd_recipe_free(a);
    ckd_recipe_free(b);
    ckd_recipe_free(c);
    ckd_recipe_free(d);
    ckd_recipe_free(e);
}

Test(hash, numbers_keep_full_precision)
{
    ckd_recipe *a = load_ok("distill.json", NEEDLES("optim.lr=0.1234567890123456"), 1);
    ckd_recipe *b = load_ok("distill.json", NEEDLES("optim.lr=0.1234567890123457"), 1);
    cr_expect_str_neq(ckd_recipe_hash(a), ckd_recipe_hash(b));
    cr_expect(strstr(ckd_recipe_canonical(a), "\"lr\":0.1234567890123456"), "%s",
              ckd_recipe_canonical(a));
    ckd_recipe_free(a);
    ckd_recipe_free(b);
}

/* ---- named model configurations ------------------------------------------------ */

/* Enough of the clip plugin's schema to tell a whole configuration from a
 * partial one; the towers are taken as they come. */
static const char clip_like[] =
    "{\"type\": \"object\", \"required\": [\"embed_dim\", \"vision\", \"text\"], \"properties\": {"
    "\"name\": {\"type\": \"string\"}, \"embed_dim\": {\"type\": \"integer\", \"minimum\": 1},"
    "\"act\": {\"type\": \"string\"},"
    "\"vision\": {\"type\": \"object\", \"additionalProperties\": true},"
    "\"text\": {\"type\": \"object\", \"additionalProperties\": true}}}";

static int clip_like_schema(void *user, const char *kind, const char *name, const char **schema,
                            ckd_error *err)
{
    if (!strcmp(kind, "model") && !strcmp(name, "clip")) {
        *schema = clip_like;
        return 0;
    }
    return fake_schema(user, kind, name, schema, err);
}

/* The clip plugin's configurations, where the sources keep them. */
static void shipped_configs(void)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/models/clip", getenv("CKD_TEST_SRCDIR"));
    cr_assert_eq(setenv("CLIPKD_DATA_DIR", dir, 1), 0);
    unsetenv("CLIPKD_MODEL_CONFIG_DIR");
}

static ckd_recipe *load_named(const char *name, const char *const *sets, size_t n, ckd_error *err)
{
    char *path = fixture(name);
    ckd_recipe *r = ckd_recipe_load(path, sets, n, clip_like_schema, NULL, err);
    free(path);
    return r;
}

static ckd_recipe *load_named_ok(const char *const *sets, size_t n)
{
    ckd_error err = {{0}};
    ckd_recipe *r = load_named("named-config.json", sets, n, &err);
    cr_assert(r, "%s", err.msg);
    return r;
}

static void expect_named_fail(const char *name, const char *const *sets, size_t n, const char *needle)
{
    ckd_error err = {{0}};
    ckd_recipe *r = load_named(name, sets, n, &err);
    cr_assert_null(r, "%s loaded but should not have", name);
    cr_expect(strstr(err.msg, needle), "expected \"%s\" in: %s", needle, err.msg);
}

/* json_equal, but numbers compare by value: the recipe stores 4.0 as 4. */
static int same_json(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    if (!json_is_object(a) || !json_is_object(b))
        return json_equal(a, b);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)a, k, v)
    {
        if (!same_json(v, json_object_get(b, k)))
            return 0;
    }
    return json_object_size(a) == json_object_size(b);
}

Test(named_config, expands_to_the_shipped_values, .init = shipped_configs)
{
    ckd_recipe *r = load_named_ok(NULL, 0);
    /* ViT-T-16 as shipped, but for the vision layers the recipe gives */
    ckd_error err = {{0}};
    json_t *want = ckd_model_config_shipped("clip", "ViT-T-16", &err);
    cr_assert(want, "%s", err.msg);
    json_object_set_new(json_object_get(want, "vision"), "layers", json_integer(6));
    cr_expect(same_json(at(r, "student.config"), want));
    cr_expect_eq(num(r, "student.config.vision.layers"), 6);
    cr_expect_eq(num(r, "student.config.vision.width"), 192);
    cr_expect_eq(num(r, "student.config.embed_dim"), 512);
    /* the teacher alike */
    json_decref(want);
    want = ckd_model_config_shipped("clip", "ViT-B-32", &err);
    cr_assert(want, "%s", err.msg);
    cr_expect(same_json(at(r, "teacher.config"), want));
    json_decref(want);
    ckd_recipe_free(r);
}

Test(named_config, keys_given_override_it_deeply, .init = shipped_configs)
{
    ckd_recipe *r = load_named_ok(NEEDLES("student.config.text.layers=4", "student.config.embed_dim=256"), 2);
    cr_expect_eq(num(r, "student.config.text.layers"), 4);
    cr_expect_eq(num(r, "student.config.text.width"), 384); /* the rest of text stays */
    cr_expect_eq(num(r, "student.config.vision.layers"), 6);
    cr_expect_eq(num(r, "student.config.embed_dim"), 256);
    ckd_recipe_free(r);
    /* another name takes another base under the same overrides */
    r = load_named_ok(NEEDLES("student.config.name=ViT-B-16"), 1);
    cr_expect_eq(num(r, "student.config.vision.width"), 768);
    cr_expect_eq(num(r, "student.config.vision.layers"), 6);
    ckd_recipe_free(r);
}

Test(named_config, other_names_are_labels, .init = shipped_configs)
{
    ckd_recipe *r = load_named_ok(
        NEEDLES("student.config={\"name\": \"mine\", \"embed_dim\": 8, \"vision\": {}, \"text\": {}}"), 1);
    cr_expect_str_eq(str(r, "student.config.name"), "mine");
    cr_expect_eq(json_object_size(at(r, "student.config")), 4, "nothing was added");
    ckd_recipe_free(r);
    /* a partial configuration under such a name is incomplete, as before */
    expect_named_fail("named-config.json", NEEDLES("student.config={\"name\": \"mine\", \"embed_dim\": 8}"), 1,
                      "student.config: missing required key \"vision\"");
}

Test(named_config, an_unknown_name_alone_lists_the_shipped_ones, .init = shipped_configs)
{
    expect_named_fail("named-unknown.json", NULL, 0,
                      "named-unknown.json:3:43: student.config.name: no shipped configuration "
                      "\"ViT-T-61\" of model plugin \"clip\" (did you mean \"ViT-T-16\"?); shipped: "
                      "RN101, RN50, ViT-B-16, ViT-B-32, ViT-L-14, ViT-T-16, fmnist-student, fmnist-teacher");
    expect_named_fail("named-config.json", NEEDLES("teacher.config={\"name\": \"ViT-H-14\"}"), 1,
                      "--set teacher.config={\"name\": \"ViT-H-14\"}: teacher.config.name: no shipped "
                      "configuration \"ViT-H-14\" of model plugin \"clip\" (did you mean");
}
