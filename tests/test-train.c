/* The trainer on tiny models and a few hundred Fashion-MNIST samples:
 * exact resume (a run stopped mid-epoch and resumed ends with the same bytes
 * as one never stopped), refusals before compute (a loss that needs a
 * teacher, a checkpoint of another recipe, a corrupt checkpoint), a teacher
 * trained through teacher.recipe and reused, and the metrics files. */
#include "config.h"

#include "train_test_util.h"

/* A tiny CLIP on 192 test images (12 batches of 16), evaluated on 48. */
static const char base_recipe[] =
    "{\"name\": \"tiny\", \"seed\": 3,\n"
    " \"student\": {\"model\": \"clip\", \"config\": {\"embed_dim\": 16,\n"
    "   \"vision\": {\"image_size\": 28, \"patch_size\": 7, \"width\": 16, \"layers\": 1, \"heads\": 2},\n"
    "   \"text\": {\"context_length\": 20, \"width\": 16, \"layers\": 1, \"heads\": 2}}},\n"
    " \"data\": {\"train\": {\"reader\": \"fashion-mnist\", \"split\": \"test\", \"dir\": \"" FMNIST_DIR
    "\", \"limit\": 192},\n"
    "          \"eval\": {\"reader\": \"fashion-mnist\", \"split\": \"test\", \"dir\": \"" FMNIST_DIR
    "\", \"limit\": 48, \"captions\": 2}},\n"
    " \"losses\": [{\"name\": \"clip\"}],\n"
    " \"optim\": {\"lr\": 0.003, \"warmup_steps\": 2, \"grad_clip\": 1.0},\n"
    " \"train\": {\"steps\": 7, \"batch_size\": 16, \"accum\": 2, \"log_every\": 1, \"eval_every\": 4,\n"
    "           \"checkpoint_every\": 2}}\n";

Test(train, stopped_and_resumed_run_is_bit_identical, .init = setup, .fini = teardown, .timeout = 120)
{
    write_file("tiny.json", base_recipe);
    ckd_recipe *r = load("tiny.json", NULL, 0);
    char a[512], b[512];
    run_dir("a", a, sizeof a);
    run_dir("b", b, sizeof b);
    ckd_error err = {{0}};
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.out_dir = a;
    cr_assert_eq(ckd_train_run(reg, r, &o, NULL, 0, &err), 0, "%s", err.msg);

    /* Stopped after step 5: the last checkpoint is step 4, so step 5 and its
     * metrics lines are done again after the resume. */
    o.out_dir = b;
    o.stop_after = 5;
    cr_assert_eq(ckd_train_run(reg, r, &o, NULL, 0, &err), 0, "%s", err.msg);
    struct stat sb;
    char p[1024];
    snprintf(p, sizeof p, "%s/final", b);
    cr_assert_neq(stat(p, &sb), 0, "a stopped run has no final weights");
    cr_assert_eq(ckd_train_run(reg, r, &o, NULL, 0, &err), -1, "a fresh run over a checkpoint is refused");
    cr_expect(strstr(err.msg, "--resume") != NULL, "%s", err.msg);
    o.stop_after = 0;
    cr_assert_eq(ckd_train_resume(reg, NULL, b, &o, &err), 0, "%s", err.msg);

    expect_same_run(a, b);
    char *ma = metrics_without_time(a);
    /* 7 step lines and evaluations at step 4 and at the end. */
    int lines = 0, evals = 0;
    for (char *s = ma; (s = strchr(s, '\n')); s++)
        lines++;
    for (char *s = ma; (s = strstr(s, "\"type\":\"eval\"")); s++)
        evals++;
    cr_expect_eq(lines, 9, "%s", ma);
    cr_expect_eq(evals, 2, "%s", ma);
    free(ma);

    long lr;
    char *res = slurp(a, "results.json", &lr);
    json_error_t je;
    json_t *rj = json_loads(res, 0, &je);
    cr_assert_not_null(rj, "%s", je.text);
    cr_expect_eq(json_integer_value(json_object_get(rj, "steps")), 7);
    const json_t *zs = json_object_get(json_object_get(rj, "eval"), "zero_shot");
    cr_expect(json_is_number(json_object_get(zs, "top1")), "%s", res);
    cr_expect(json_is_number(json_object_get(json_object_get(json_object_get(rj, "eval"), "retrieval"), "t2i_r1")),
              "%s", res);
    json_decref(rj);
    free(res);

    /* The run directory is a model directory for clipkd eval. */
    snprintf(p, sizeof p, "%s/final", a);
    ckd_model *m = ckd_model_from_pretrained(reg, p, &err);
    cr_assert_not_null(m, "%s", err.msg);
    ckd_eval_result er;
    json_t *spec = json_pack("{s:s, s:s, s:s, s:i}", "reader", "fashion-mnist", "split", "test", "dir", FMNIST_DIR,
                             "limit", 40);
    cr_assert_eq(ckd_evaluate(m, spec, NULL, NULL, &er, &err), 0, "%s", err.msg);
    cr_expect(er.has_zero_shot && er.has_retrieval && er.has_calibration);
    cr_expect_eq(er.retrieval.n_texts, 200, "five captions per image by default");
    json_decref(spec);
    ckd_model_free(m);
    ckd_recipe_free(r);
}

Test(train, resume_refuses_other_recipe_and_corrupt_checkpoint, .init = setup, .fini = teardown, .timeout = 60)
{
    write_file("tiny.json", base_recipe);
    ckd_recipe *r = load("tiny.json", NULL, 0);
    const char *sets[] = {"seed=4"};
    ckd_recipe *other = load("tiny.json", sets, 1);
    char b[512];
    run_dir("b", b, sizeof b);
    ckd_error err = {{0}};
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.out_dir = b;
    o.stop_after = 2;
    cr_assert_eq(ckd_train_run(reg, r, &o, NULL, 0, &err), 0, "%s", err.msg);
    cr_assert_eq(ckd_train_resume(reg, other, b, &o, &err), -1);
    cr_expect(strstr(err.msg, "different recipe") != NULL, "%s", err.msg);

    char p[1024];
    snprintf(p, sizeof p, "%s/checkpoint.safetensors", b);
    FILE *f = fopen(p, "r+b");
    cr_assert_not_null(f);
    fputs("garbage!", f);
    fclose(f);
    cr_assert_eq(ckd_train_resume(reg, r, b, &o, &err), -1);
    cr_expect(strstr(err.msg, "corrupt") != NULL, "%s", err.msg);
    ckd_recipe_free(other);
    ckd_recipe_free(r);
}

Test(train, loss_needing_a_teacher_is_refused_before_compute, .init = setup, .fini = teardown)
{
    write_file("tiny.json", base_recipe);
    const char *sets[] = {"losses=[{\"name\": \"clip\"}, {\"name\": \"fd\", \"weight\": 2000}]"};
    ckd_recipe *r = load("tiny.json", sets, 1);
    char d[512], p[1024];
    run_dir("fd", d, sizeof d);
    ckd_error err = {{0}};
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.out_dir = d;
    cr_assert_eq(ckd_train_run(reg, r, &o, NULL, 0, &err), -1);
    cr_expect(strstr(err.msg, "losses[1]") && strstr(err.msg, "no teacher") && strstr(err.msg, "t_img"), "%s",
              err.msg);
    struct stat sb;
    cr_expect_neq(stat(d, &sb), 0, "nothing is created");
    snprintf(p, sizeof p, "%s", d);
    ckd_recipe_free(r);
}

Test(train, distillation_trains_the_teacher_recipe_once, .init = setup, .fini = teardown, .timeout = 120)
{
    write_file("teacher.json", base_recipe);
    write_file("kd.json", "{\"extends\": \"teacher.json\", \"name\": \"kd\",\n"
                          " \"teacher\": {\"recipe\": \"teacher.json\", \"mode\": \"live\"},\n"
                          " \"student\": {\"config\": {\"embed_dim\": 8, \"vision\": {\"width\": 8},"
                          " \"text\": {\"width\": 8}}},\n"
                          " \"losses\": [{\"name\": \"clip\"}, {\"name\": \"crd\"}, {\"name\": \"fd\", \"weight\": 2000},"
                          " {\"name\": \"icl\"}],\n"
                          " \"train\": {\"steps\": 3, \"eval_every\": 0, \"checkpoint_every\": 0}}\n");
    ckd_recipe *r = load("kd.json", NULL, 0);
    char runs[512], dir[1024];
    run_dir("runs", runs, sizeof runs);
    ckd_error err = {{0}};
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.runs_root = runs;
    cr_assert_eq(ckd_train_run(reg, r, &o, dir, sizeof dir, &err), 0, "%s", err.msg);
    long n;
    char *res = slurp(dir, "results.json", &n);
    cr_expect(strstr(res, "\"fd\"") && strstr(res, "\"crd\"") && strstr(res, "\"icl\""), "%s", res);
    free(res);
    /* The teacher's run is under the same root, keyed by its hash. */
    ckd_recipe *t = load("teacher.json", NULL, 0);
    char tdir[1024], p[1100];
    ckd_train_run_dir(t, runs, tdir, sizeof tdir);
    snprintf(p, sizeof p, "%s/final/model.safetensors", tdir);
    struct stat sb;
    cr_assert_eq(stat(p, &sb), 0, "%s", p);
    time_t before = sb.st_mtime;
    /* A second student reuses it (its weights are not written again). */
    const char *sets[] = {"seed=9"};
    ckd_recipe *r2 = load("kd.json", sets, 1);
    sleep(1);
    cr_assert_eq(ckd_train_run(reg, r2, &o, dir, sizeof dir, &err), 0, "%s", err.msg);
    cr_assert_eq(stat(p, &sb), 0);
    cr_expect_eq(sb.st_mtime, before, "the teacher was trained again");
    ckd_recipe_free(r2);
    ckd_recipe_free(t);
    ckd_recipe_free(r);
}

/* student.init_from: the directory's config.json decides the model, so a
 * config or weights beside it is refused when the recipe loads. */
Test(train, init_from_refuses_config_and_weights, .init = setup, .fini = teardown)
{
    write_file("a.json", "{\"student\": {\"model\": \"clip\", \"init_from\": \"m\", \"config\": {\"embed_dim\": 8}},"
                         " \"data\": {\"train\": {\"reader\": \"fashion-mnist\"}}, \"losses\": [{\"name\": \"clip\"}]}");
    write_file("b.json", "{\"student\": {\"model\": \"clip\", \"init_from\": \"m\", \"weights\": {\"urls\": "
                         "[\"file:///x\"], \"sha256\": \"" "0000000000000000000000000000000000000000000000000000000000000000"
                         "\", \"size\": 1}}, \"data\": {\"train\": {\"reader\": \"fashion-mnist\"}},"
                         " \"losses\": [{\"name\": \"clip\"}]}");
    const char *files[] = {"a.json", "b.json"}, *keys[] = {"student.config", "student.weights"};
    for (int i = 0; i < 2; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", tmp, files[i]);
        ckd_error err = {{0}};
        cr_expect_null(ckd_recipe_load(p, NULL, 0, ckd_train_plugin_schema, reg, &err));
        cr_expect(strstr(err.msg, keys[i]) && strstr(err.msg, "init_from"), "%s", err.msg);
    }
}
