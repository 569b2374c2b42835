/* Plugin loading: good plugins load and run; every kind of broken plugin is
 * rejected with a message naming the file and the reason; schemas check
 * parameters. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "clipkd/loss.h"
#include "clipkd/schema.h"

static ckd_registry *R;

static void open_test_plugins(void)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/plugins/.libs", getenv("CKD_TEST_BUILDDIR"));
    ckd_error err;
    R = ckd_registry_open(dir, &err);
    cr_assert_not_null(R, "%s", err.msg);
}

static void close_registry(void) { ckd_registry_free(R); }

TestSuite(registry, .init = open_test_plugins, .fini = close_registry);

static const char *rejection_matching(const char *file, const char *reason)
{
    for (size_t i = 0; i < ckd_registry_rejected(R); i++) {
        const char *m = ckd_registry_rejection(R, i);
        if (strstr(m, file) && strstr(m, reason))
            return m;
    }
    return NULL;
}

Test(registry, good_plugin_loads_and_runs)
{
    ckd_error err;
    const ckd_plugin *p = ckd_registry_find(R, CKD_PLUGIN_LOSS, "test_good", &err);
    cr_assert_not_null(p, "%s", err.msg);
    cr_assert(strstr(p->path, "test_good_a.so"), "first file in sorted order wins: %s", p->path);
    ckd_loss_dims d = {4, 0, 0};
    json_t *params = json_pack("{s:f}", "scale", 2.0);
    ckd_loss *l = ckd_loss_new(p, params, "test", &d, 1, &err);
    json_decref(params);
    cr_assert_not_null(l, "%s", err.msg);
    cr_assert_eq(ckd_loss_n_params(l), 1);
    ckd_ctx *c = ckd_ctx_new(0, 1, NULL);
    ckd_tensor *x = ckd_tensor_from(c, 2, (int64_t[]){1, 4}, (float[]){1, 2, 3, 4});
    ckd_loss_batch b = {.struct_size = sizeof b, .n = 1, .s_img = x};
    ckd_tensor *y = ckd_loss_forward(l, c, &b);
    cr_assert_not_null(y, "%s", ckd_ctx_error(c));
    cr_assert_float_eq(y->data[0], 2.0f * 30.0f / 4.0f, 1e-5);
    ckd_loss_batch empty = {.struct_size = sizeof empty, .n = 1};
    ckd_ctx_reset(c);
    cr_assert_null(ckd_loss_forward(l, c, &empty));
    cr_assert(strstr(ckd_ctx_error(c), "needs s_img"), "%s", ckd_ctx_error(c));
    ckd_ctx_free(c);
    ckd_loss_free(l);
}

Test(registry, duplicate_name_names_both_files)
{
    const char *m = rejection_matching("test_good_b.so", "already provided by");
    cr_assert_not_null(m);
    cr_assert(strstr(m, "test_good_a.so"), "%s", m);
}

Test(registry, wrong_abi_is_rejected)
{
    cr_assert_not_null(rejection_matching("test_bad_abi.so", "plugin ABI 2, this clipkd speaks ABI 1"));
}

Test(registry, short_descriptor_is_rejected)
{
    cr_assert_not_null(rejection_matching("test_short.so", "descriptor is 12 bytes"));
}

Test(registry, missing_entry_symbol_is_rejected)
{
    cr_assert_not_null(rejection_matching("test_no_entry.so", "no ckd_plugin_entry symbol"));
}

Test(registry, unparsable_schema_is_rejected)
{
    cr_assert_not_null(rejection_matching("test_bad_schema.so", "not valid JSON"));
}

Test(registry, failing_create_is_reported)
{
    ckd_error err;
    const ckd_plugin *p = ckd_registry_find(R, CKD_PLUGIN_LOSS, "test_create_fails", &err);
    cr_assert_not_null(p, "%s", err.msg);
    ckd_loss_dims d = {4, 0, 0};
    cr_assert_null(ckd_loss_new(p, NULL, "recipe.json: losses[0]", &d, 1, &err));
    cr_assert(strstr(err.msg, "recipe.json: losses[0]") && strstr(err.msg, "always refuses"), "%s", err.msg);
}

Test(registry, unknown_name_lists_known_and_suggests)
{
    ckd_error err;
    cr_assert_null(ckd_registry_find(R, CKD_PLUGIN_LOSS, "test_god", &err));
    cr_assert(strstr(err.msg, "did you mean \"test_good\"") && strstr(err.msg, "known loss plugins"), "%s", err.msg);
    cr_assert_null(ckd_registry_find(R, CKD_PLUGIN_MODEL, "test_good", &err));
    cr_assert(strstr(err.msg, "no model plugin"), "%s", err.msg);
}

Test(registry, unloadable_file_is_rejected)
{
    char dir[] = "/tmp/ckd-reg-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/garbage.so", dir);
    FILE *f = fopen(path, "w");
    fputs("not an ELF file", f);
    fclose(f);
    ckd_error err;
    ckd_registry *r = ckd_registry_open(dir, &err);
    cr_assert_not_null(r);
    cr_assert_eq(ckd_registry_rejected(r), 1);
    cr_assert(strstr(ckd_registry_rejection(r, 0), "garbage.so: cannot load"), "%s", ckd_registry_rejection(r, 0));
    ckd_registry_free(r);
    unlink(path);
    rmdir(dir);
}

Test(registry, params_are_checked_against_the_schema)
{
    ckd_error err;
    const ckd_plugin *p = ckd_registry_find(R, CKD_PLUGIN_LOSS, "test_good", &err);
    json_t *bad = json_pack("{s:s}", "scale", "big");
    cr_assert_null(ckd_params_for(p, bad, "losses[0].params", &err));
    cr_assert(strstr(err.msg, "losses[0].params.scale: expected a number, got \"big\""), "%s", err.msg);
    json_decref(bad);
    bad = json_pack("{s:f}", "scael", 1.0);
    cr_assert_null(ckd_params_for(p, bad, "losses[0].params", &err));
    cr_assert(strstr(err.msg, "did you mean \"scale\""), "%s", err.msg);
    json_decref(bad);
    bad = json_pack("{s:f}", "scale", -1.0);
    cr_assert_null(ckd_params_for(p, bad, "x", &err));
    cr_assert(strstr(err.msg, "≥ 0"), "%s", err.msg);
    json_decref(bad);
    ckd_params *ok = ckd_params_for(p, NULL, "x", &err);
    cr_assert_not_null(ok, "%s", err.msg);
    cr_assert_float_eq(ckd_params_number(ok, "scale", -5), 1.0, 0, "default filled in");
    ckd_params_free(ok);
}

Test(schema, types_enums_required_and_nesting)
{
    ckd_error err;
    json_t *s = ckd_schema_parse("{\"type\":\"object\",\"required\":[\"mode\"],\"properties\":{"
                                 "\"mode\":{\"type\":\"string\",\"enum\":[\"cache\",\"live\"]},"
                                 "\"n\":{\"type\":\"integer\",\"maximum\":3,\"default\":2},"
                                 "\"items\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
                                 "\"w\":{\"type\":\"number\"}}}}}}",
                                 "test", &err);
    cr_assert_not_null(s, "%s", err.msg);
    struct {
        const char *json, *expect;
    } cases[] = {
        {"{}", "missing required key \"mode\""},
        {"{\"mode\":\"lvie\"}", "expected one of \"cache\", \"live\", got \"lvie\" (did you mean \"live\"?)"},
        {"{\"mode\":\"live\",\"n\":2.5}", "n: expected an integer, got 2.5"},
        {"{\"mode\":\"live\",\"n\":4}", "n: expected a value ≤ 3, got 4"},
        {"{\"mode\":\"live\",\"items\":[{\"w\":1},{\"w\":\"x\"}]}", "items[1].w: expected a number"},
        {"{\"mode\":\"live\",\"items\":[{\"zzz\":1}]}", "items[0].zzz: unknown key \"zzz\" (known keys: w)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *v = json_loads(cases[i].json, 0, NULL);
        cr_assert_eq(ckd_schema_apply(s, v, "r.json", "", NULL, NULL, &err), -1, "%s should fail", cases[i].json);
        cr_assert(strstr(err.msg, cases[i].expect) && strstr(err.msg, "r.json"), "%s: got '%s'", cases[i].json,
                  err.msg);
        json_decref(v);
    }
    json_t *v = json_loads("{\"mode\":\"cache\"}", 0, NULL);
    cr_assert_eq(ckd_schema_apply(s, v, "r.json", "", NULL, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(json_integer_value(json_object_get(v, "n")), 2);
    json_decref(v);
    json_decref(s);
    const char *cands[] = {"losses", "student", "teacher"};
    cr_assert_str_eq(ckd_suggest("lossses", cands, 3), "losses");
    cr_assert_null(ckd_suggest("optimizer", cands, 3));
    const char *losses[] = {"ce", "clip", "crd"};
    cr_assert_str_eq(ckd_suggest("cdr", losses, 3), "crd", "a swap of neighbours is one edit");
}
