/* CIFD's stage 1 as a run ("rdm" recipes, host/cifd/rdm_run.c): the module
 * trains on the teacher's cached embeddings without one teacher forward once
 * the cache exists, writes final/ and results.json with rate and distortion,
 * a larger R buys rate for distortion, a finished run is reused by hash, and
 * recipes that mix an rdm with a student, or lack a cached teacher, are
 * refused with the reason. */
#include "config.h"

#include "clipkd/rdm.h"
#include "train_test_util.h"

static const char teacher_recipe[] = TINY_TEACHER_RECIPE(512);

static const char rdm_recipe[] =
    "{\"name\": \"rdm\", \"seed\": 1, \"threads\": 1,\n"
    " \"teacher\": {\"recipe\": \"teacher.json\"},\n"
    " \"data\": {\"train\": {\"reader\": \"fashion-mnist\", \"split\": \"test\", \"dir\": \"" FMNIST_DIR
    "\", \"limit\": 512}},\n"
    " \"rdm\": {\"R\": 1, \"hidden\": 16, \"bottleneck\": 8, \"steps\": 1500, \"holdout\": 0.1},\n"
    " \"optim\": {\"lr\": 0.003, \"weight_decay\": 0}, \"train\": {\"batch_size\": 64}}\n";

typedef struct seen {
    int reused_run, reusing_cache;
    int64_t encoded;
} seen;

static void on_event(void *user, const ckd_train_event *ev)
{
    seen *s = user;
    s->encoded = ev->teacher_encoded;
    if (ev->kind == CKD_TRAIN_MESSAGE && strstr(ev->text, "already trained"))
        s->reused_run++;
    if (ev->kind == CKD_TRAIN_MESSAGE && strstr(ev->text, "teacher embeddings: reusing"))
        s->reusing_cache++;
}

static seen run(const char *const *sets, size_t n, const char *out)
{
    seen s = {0};
    run_into("rdm.json", sets, n, out, on_event, &s);
    return s;
}

/* results.json's rdm.<key> */
static double result(const char *out, const char *key)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s/results.json", tmp, out);
    json_error_t je;
    json_t *j = json_load_file(p, 0, &je);
    cr_assert_not_null(j, "%s: %s", p, je.text);
    json_t *v = json_object_get(json_object_get(j, "rdm"), key);
    cr_assert(json_is_number(v), "%s: no rdm.%s", p, key);
    double d = json_number_value(v);
    json_decref(j);
    return d;
}

Test(rdm_run, trains_on_the_cache_and_trades_rate_for_distortion, .init = setup, .fini = teardown, .timeout = 180)
{
    write_file("teacher.json", teacher_recipe);
    write_file("rdm.json", rdm_recipe);
    seen a = run(NULL, 0, "low");
    cr_expect_gt(a.encoded, 0, "the first run builds the cache with the teacher");
    const char *high[] = {"rdm.R=100000"};
    seen b = run(high, 1, "high");
    cr_expect_eq(b.reusing_cache, 1);
    cr_expect_eq(b.encoded, 0, "stage 1 made %lld teacher forwards with the cache there", (long long)b.encoded);

    double rate_lo = result("low", "rate_nats"), rate_hi = result("high", "rate_nats");
    double dist_lo = result("low", "distortion"), dist_hi = result("high", "distortion");
    cr_log_info("R 1: %.3f nats, distortion %.5f; R 100000: %.3f nats, %.5f", rate_lo, dist_lo, rate_hi, dist_hi);
    cr_expect_gt(rate_hi, rate_lo + 1.0, "rate %.3f (R 100000) vs %.3f (R 1)", rate_hi, rate_lo);
    cr_expect_lt(dist_hi, 0.5 * dist_lo, "distortion %.5f (R 100000) vs %.5f (R 1)", dist_hi, dist_lo);

    /* final/: the module's parameters under their names, and its config. */
    char p[600];
    snprintf(p, sizeof p, "%s/high/final/model.safetensors", tmp);
    ckd_error err = {{0}};
    ckd_safetensors *st = ckd_st_open(p, &err);
    cr_assert_not_null(st, "%s", err.msg);
    const ckd_st_tensor *w = ckd_st_find(st, "bottleneck.weight");
    cr_assert_not_null(w);
    cr_expect(w->shape[0] == 8 && w->shape[1] == 16, "bottleneck.weight [%lld, %lld]", (long long)w->shape[0],
              (long long)w->shape[1]);
    cr_expect_not_null(ckd_st_find(st, "entropy.matrices"));
    ckd_st_close(st);
    long len;
    char *cfg = slurp(tmp, "high/final/config.json", &len);
    cr_expect(strstr(cfg, "\"in_dim\": 16") && strstr(cfg, "\"tower\": \"image\""), "%s", cfg);
    free(cfg);

    /* The same recipe again: reused, not retrained. */
    seen c = run(high, 1, "high");
    cr_expect_eq(c.reused_run, 1);
}

static void expect_refused(const char *text, const char *needle)
{
    write_file("bad.json", text);
    char p[512];
    snprintf(p, sizeof p, "%s/bad.json", tmp);
    ckd_error err = {{0}};
    ckd_recipe *r = ckd_recipe_load(p, NULL, 0, ckd_train_plugin_schema, reg, &err);
    cr_expect_null(r, "accepted: %s", text);
    cr_expect(strstr(err.msg, needle), "message \"%s\" lacks \"%s\"", err.msg, needle);
    ckd_recipe_free(r);
}

Test(rdm_run, bad_recipes, .init = setup, .fini = teardown)
{
    expect_refused("{\"teacher\": {\"recipe\": \"t.json\"}, \"data\": {\"train\": {\"reader\": \"fashion-mnist\"}},"
                   " \"rdm\": {\"R\": 1}, \"losses\": [{\"name\": \"clip\"}]}",
                   "losses: an \"rdm\" recipe trains the module on its teacher's cached embeddings: it has no "
                   "\"losses\"");
    expect_refused("{\"data\": {\"train\": {\"reader\": \"fashion-mnist\"}}, \"rdm\": {\"R\": 1}}",
                   "rdm: an \"rdm\" recipe needs a teacher in \"cache\" mode");
    expect_refused("{\"teacher\": {\"recipe\": \"t.json\", \"mode\": \"live\"},"
                   " \"data\": {\"train\": {\"reader\": \"fashion-mnist\"}}, \"rdm\": {\"R\": 1}}",
                   "teacher.mode: an \"rdm\" recipe needs a teacher in \"cache\" mode");
    expect_refused("{\"teacher\": {\"recipe\": \"t.json\"}, \"data\": {\"train\": {\"reader\": \"fashion-mnist\"}},"
                   " \"rdm\": {\"R\": 1, \"tower\": \"audio\"}}",
                   "rdm.tower");
    expect_refused("{\"teacher\": {\"recipe\": \"t.json\"}, \"data\": {\"train\": {\"reader\": \"fashion-mnist\"}},"
                   " \"rdm\": {\"hidden\": 8}}",
                   "missing required key \"R\"");
}
