/* The trainer on tiny models and a few hundred Fashion-MNIST samples:
 * exact resume (a run stopped mid-epoch and resumed ends with the same bytes
 * as one never stopped), refusals before compute (a loss that needs a
 * teacher, a checkpoint of another recipe, a corrupt checkpoint), a teacher
 * trained through teacher.recipe and reused, and the metrics files. */
#include "config.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clipkd/blas.h"
#include "clipkd/safetensors.h"
#include "clipkd/train.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

static ckd_registry *reg;
static char tmp[256];

static void setup(void)
{
    const char *b = getenv("CKD_TEST_BUILDDIR"), *s = getenv("CKD_TEST_SRCDIR");
    char path[8192], data[4096];
    snprintf(path, sizeof path, "%s/models/.libs:%s/losses/.libs", b ? b : ".", b ? b : ".");
    snprintf(data, sizeof data, "%s/models/clip", s ? s : ".");
    setenv("CLIPKD_DATA_DIR", data, 1);
    ckd_error err = {{0}};
    reg = ckd_registry_open(path, &err);
    cr_assert_not_null(reg, "%s", err.msg);
    snprintf(tmp, sizeof tmp, "/tmp/clipkd-test-train-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
    ckd_set_threads(1);
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    cr_expect_eq(system(cmd), 0);
    ckd_registry_free(reg);
}

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

static void write_file(const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f, "%s", p);
    fputs(text, f);
    fclose(f);
}

static ckd_recipe *load(const char *name, const char *const *sets, size_t n)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    ckd_error err = {{0}};
    ckd_recipe *r = ckd_recipe_load(p, sets, n, ckd_train_plugin_schema, reg, &err);
    cr_assert_not_null(r, "%s", err.msg);
    return r;
}

static char *slurp(const char *dir, const char *file, long *len)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    FILE *f = fopen(p, "rb");
    cr_assert_not_null(f, "%s", p);
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)*len + 1);
    cr_assert_eq(fread(b, 1, (size_t)*len, f), (size_t)*len);
    b[*len] = '\0';
    fclose(f);
    return b;
}

/* metrics.jsonl without its wall-clock fields, one string. */
static char *metrics_without_time(const char *dir)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
    FILE *f = fopen(p, "r");
    cr_assert_not_null(f, "%s", p);
    size_t cap = 1 << 16, n = 0;
    char *out = calloc(cap, 1), line[8192];
    while (fgets(line, sizeof line, f)) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        cr_assert_not_null(o, "%s: %s", p, je.text);
        json_object_del(o, "images_per_s");
        json_object_del(o, "elapsed_s");
        json_object_del(o, "eval_seconds");
        char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
        size_t k = strlen(s);
        if (n + k + 2 > cap)
            out = realloc(out, cap = 2 * (n + k + 2));
        memcpy(out + n, s, k);
        out[n += k] = '\n';
        out[++n] = '\0';
        free(s);
        json_decref(o);
    }
    fclose(f);
    return out;
}

/* Every tensor (weights, moments) and the state but metrics.jsonl's length,
 * which counts the wall-clock fields too. */
static void expect_same_checkpoint(const char *a, const char *b)
{
    char pa[1024], pb[1024];
    snprintf(pa, sizeof pa, "%s/checkpoint.safetensors", a);
    snprintf(pb, sizeof pb, "%s/checkpoint.safetensors", b);
    ckd_error err = {{0}};
    ckd_safetensors *sa = ckd_st_open(pa, &err), *sb = ckd_st_open(pb, &err);
    cr_assert(sa && sb, "%s", err.msg);
    cr_assert_eq(ckd_st_count(sa), ckd_st_count(sb));
    for (size_t i = 0; i < ckd_st_count(sa); i++) {
        const ckd_st_tensor *x = ckd_st_at(sa, i), *y = ckd_st_find(sb, x->name);
        cr_assert_not_null(y, "%s", x->name);
        cr_expect(x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes), "checkpoint tensor %s differs",
                  x->name);
    }
    json_error_t je;
    json_t *ja = json_loads(ckd_st_metadata(sa, "state"), 0, &je), *jb = json_loads(ckd_st_metadata(sb, "state"), 0, &je);
    cr_assert(ja && jb);
    json_object_del(ja, "metrics_len");
    json_object_del(jb, "metrics_len");
    cr_expect(json_equal(ja, jb), "checkpoint states differ (step, cursor, RNG, AdamW steps)");
    json_decref(ja), json_decref(jb);
    ckd_st_close(sa), ckd_st_close(sb);
}

static void run_dir(const char *name, char *out, size_t cap) { snprintf(out, cap, "%s/%s", tmp, name); }

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

    long la, lb;
    char *wa = slurp(a, "final/model.safetensors", &la), *wb = slurp(b, "final/model.safetensors", &lb);
    cr_expect(la == lb && memcmp(wa, wb, (size_t)la) == 0, "final weights differ after resume");
    free(wa), free(wb);
    expect_same_checkpoint(a, b);
    char *ma = metrics_without_time(a), *mb = metrics_without_time(b);
    cr_expect_str_eq(ma, mb);
    /* 7 step lines and evaluations at step 4 and at the end. */
    int lines = 0, evals = 0;
    for (char *s = ma; (s = strchr(s, '\n')); s++)
        lines++;
    for (char *s = ma; (s = strstr(s, "\"type\":\"eval\"")); s++)
        evals++;
    cr_expect_eq(lines, 9, "%s", ma);
    cr_expect_eq(evals, 2, "%s", ma);
    free(ma), free(mb);

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
