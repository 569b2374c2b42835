/* CIFD's stage 1 as a run ("rdm" recipes, host/cifd/rdm_run.c): the module
 * trains on the teacher's cached embeddings without one teacher forward once
 * the cache exists, writes final/ and results.json with rate and distortion,
 * a larger R buys rate for distortion, a finished run is reused by hash, and
 * recipes that mix an rdm with a student, or lack a cached teacher, are
 * refused with the reason. Then a student with assistants: their rdm runs
 * trained first, their reconstructions in every batch, bad pairings refused. */
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
    expect_refused("{\"teacher\": {\"recipe\": \"t.json\"}, \"data\": {\"train\": {\"reader\": \"fashion-mnist\"}},"
                   " \"rdm\": {\"R\": 0}}",
                   "rdm.R");
}

/* ---- a student with assistants ---- */
static const char student_recipe[] =
    "{\"extends\": \"teacher.json\", \"name\": \"student\",\n"
    " \"teacher\": {\"recipe\": \"teacher.json\", \"mode\": \"cache\"},\n"
    " \"student\": {\"config\": {\"embed_dim\": 16, \"vision\": {\"width\": 8}, \"text\": {\"width\": 8}}},\n"
    " \"losses\": [{\"name\": \"cifd\", \"params\": {\"lambda_cl\": 0.1}}],\n"
    " \"assistants\": [{\"image\": \"rdm.json\", \"text\": \"rdm-text.json\"},\n"
    "                  {\"image\": \"rdm-hi.json\", \"text\": \"rdm-text.json\", \"weight\": 0.5}],\n"
    " \"train\": {\"steps\": 3}}\n";

typedef struct seen_student {
    int trained_assistants, assistants_line;
    double first_loss;
} seen_student;

static void on_student(void *user, const ckd_train_event *ev)
{
    seen_student *s = user;
    if (ev->kind == CKD_TRAIN_MESSAGE && strstr(ev->text, "training the assistant"))
        s->trained_assistants++;
    if (ev->kind == CKD_TRAIN_MESSAGE && strstr(ev->text, "assistants: 2 (image and text)"))
        s->assistants_line++;
    if (ev->kind == CKD_TRAIN_STEP && ev->step == 1)
        s->first_loss = ev->loss;
}

static void write_student_recipes(void)
{
    write_file("teacher.json", teacher_recipe);
    write_file("rdm.json", rdm_recipe);
    write_file("rdm-hi.json", "{\"extends\": \"rdm.json\", \"name\": \"rdm-hi\", \"rdm\": {\"R\": 1000}}");
    write_file("rdm-text.json", "{\"extends\": \"rdm.json\", \"name\": \"rdm-text\", \"rdm\": {\"tower\": \"text\"}}");
    write_file("student.json", student_recipe);
}

Test(assistants, trained_first_then_in_every_batch, .init = setup, .fini = teardown, .timeout = 180)
{
    write_student_recipes();
    seen_student with = {0}, without = {0};
    run_into("student.json", NULL, 0, "with", on_student, &with);
    cr_expect_eq(with.trained_assistants, 3, "the three rdm runs are trained first (%d)", with.trained_assistants);
    cr_expect_eq(with.assistants_line, 1);
    /* The same student without its assistants starts from a lower loss: the
     * assistant terms are in the objective. */
    const char *none[] = {"assistants=[]"};
    run_into("student.json", none, 1, "without", on_student, &without);
    cr_log_info("first-step loss %.5f with assistants, %.5f without", with.first_loss, without.first_loss);
    cr_expect_gt(with.first_loss, without.first_loss + 1e-3, "%.5f vs %.5f", with.first_loss, without.first_loss);
    /* The run's cost: its own training time, and with the assistants' stage 1. */
    double own[2], pipe[2];
    const char *outs[2] = {"with", "without"};
    for (int i = 0; i < 2; i++) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s/results.json", tmp, outs[i]);
        json_t *j = json_load_file(p, 0, NULL);
        cr_assert_not_null(j, "%s", p);
        own[i] = json_number_value(json_object_get(j, "train_seconds"));
        pipe[i] = json_number_value(json_object_get(j, "pipeline_seconds"));
        json_decref(j);
    }
    cr_expect(own[0] > 0 && pipe[0] > own[0], "with assistants: train %g s, pipeline %g s", own[0], pipe[0]);
    /* ... each of the three rdm runs counted once (rdm-text.json is named twice). */
    double stage1 = 0;
    const char *rdms[] = {"rdm-", "rdm-hi-", "rdm-text-"};
    for (int i = 0; i < 3; i++) {
        char cmd[700];
        snprintf(cmd, sizeof cmd, "ls -d %s/runs/%s[0-9a-f]*", tmp, rdms[i]);
        FILE *f = popen(cmd, "r");
        char run[600] = "";
        cr_assert(f && fgets(run, sizeof run, f), "%s", cmd);
        pclose(f);
        run[strcspn(run, "\n")] = '\0';
        json_t *j = json_load_file(strcat(run, "/results.json"), 0, NULL);
        cr_assert_not_null(j, "%s", run);
        stage1 += json_number_value(json_object_get(j, "train_seconds"));
        json_decref(j);
    }
    cr_expect(fabs(pipe[0] - own[0] - stage1) < 1e-6 * (1 + stage1), "pipeline %g = train %g + stage 1 %g", pipe[0],
              own[0], stage1);
    cr_expect(own[1] > 0 && pipe[1] == own[1], "without: train %g s, pipeline %g s", own[1], pipe[1]);
}

Test(assistants, bad_pairings_refused, .init = setup, .fini = teardown, .timeout = 120)
{
    write_student_recipes();
    /* An image module given as a text assistant: refused once it is trained and loaded. */
    write_file("swap.json", "{\"extends\": \"student.json\", \"assistants\": [{\"text\": \"rdm.json\"}]}");
    ckd_recipe *r = load("swap.json", NULL, 0);
    char dir[512], runs[512];
    snprintf(dir, sizeof dir, "%s/swap", tmp);
    snprintf(runs, sizeof runs, "%s/runs", tmp);
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.out_dir = dir;
    o.runs_root = runs;
    ckd_error err = {{0}};
    cr_expect_neq(ckd_train_run(reg, r, &o, NULL, 0, &err), 0);
    cr_expect(strstr(err.msg, "assistants[0].text") && strstr(err.msg, "trained on the image tower's embeddings"),
              "%s", err.msg);
    ckd_recipe_free(r);
    /* An assistant trained on another teacher's embeddings. */
    write_file("teacher2.json", "{\"extends\": \"teacher.json\", \"name\": \"teacher2\", \"seed\": 4}");
    write_file("rdm-other.json", "{\"extends\": \"rdm.json\", \"name\": \"rdm-other\","
                                 " \"teacher\": {\"recipe\": \"teacher2.json\"}}");
    write_file("other.json", "{\"extends\": \"student.json\", \"assistants\": [{\"image\": \"rdm-other.json\"}]}");
    r = load("other.json", NULL, 0);
    snprintf(dir, sizeof dir, "%s/other", tmp);
    o.out_dir = dir;
    cr_expect_neq(ckd_train_run(reg, r, &o, NULL, 0, &err), 0);
    cr_expect(strstr(err.msg, "assistants[0].image") && strstr(err.msg, "learnt the embeddings of the teacher in") &&
                  strstr(err.msg, "this recipe's teacher is"),
              "%s", err.msg);
    ckd_recipe_free(r);
    /* The teacher retrained in place (teacher2's weights copied over its
     * own): the module trained before is stale. */
    char cmd[1600];
    snprintf(cmd, sizeof cmd, "cp %s/runs/teacher2-*/final/model.safetensors %s/runs/teacher-*/final/", tmp, tmp);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    write_file("stale.json", "{\"extends\": \"student.json\", \"assistants\": [{\"image\": \"rdm.json\"}]}");
    r = load("stale.json", NULL, 0);
    snprintf(dir, sizeof dir, "%s/stale", tmp);
    o.out_dir = dir;
    cr_expect_neq(ckd_train_run(reg, r, &o, NULL, 0, &err), 0);
    cr_expect(strstr(err.msg, "assistants[0].image") && strstr(err.msg, "is stale"), "%s", err.msg);
    ckd_recipe_free(r);
    expect_refused("{\"extends\": \"student.json\", \"assistants\": [{\"image\": \"rdm.json\"},"
                   " {\"image\": \"rdm.json\", \"text\": \"rdm-text.json\"}]}",
                   "assistants[1]: every assistant must name the same towers as assistants[0]");
    expect_refused("{\"extends\": \"student.json\", \"assistants\": [{\"weight\": 1}]}",
                   "assistants[0]: expected \"image\" and/or \"text\"");
    expect_refused("{\"extends\": \"teacher.json\", \"assistants\": [{\"image\": \"rdm.json\"}]}",
                   "assistants: teaching assistants reconstruct a teacher's embeddings: the recipe needs a "
                   "\"teacher\"");
}

/* A mid-sized CLIP as the assistant of a CLIP student: its run trained first,
 * its image and caption embeddings cached like the teacher's, both towers
 * in the batch; the cifd loss then has one more term. */
Test(assistants, a_clip_model, .init = setup, .fini = teardown, .timeout = 180)
{
    write_student_recipes();
    write_file("mid.json", "{\"extends\": \"teacher.json\", \"name\": \"mid\", \"seed\": 9,"
                           " \"student\": {\"config\": {\"vision\": {\"width\": 8}, \"text\": {\"width\": 8}}}}");
    write_file("takd.json", "{\"extends\": \"student.json\", \"assistants\": [{\"model\": \"mid.json\"}]}");
    seen_student with = {0}, without = {0};
    run_into("takd.json", NULL, 0, "takd", on_student, &with);
    const char *none[] = {"assistants=[]"};
    run_into("takd.json", none, 1, "alone", on_student, &without);
    cr_log_info("first-step loss %.5f with the model assistant, %.5f without", with.first_loss, without.first_loss);
    cr_expect_gt(with.first_loss, without.first_loss + 1e-3, "%.5f vs %.5f", with.first_loss, without.first_loss);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls -d %s/runs/mid-[0-9a-f]*/final >/dev/null", tmp);
    cr_expect_eq(system(cmd), 0, "the assistant's run was trained first");
}
