/* What the trainer tests share: a registry of the built plugins, a
 * temporary directory per test, recipe files in it, and comparisons of run
 * directories (weights, checkpoints, metrics without their wall-clock
 * fields). Header-only: each test program includes it once. */
#ifndef CKD_TRAIN_TEST_UTIL_H
#define CKD_TRAIN_TEST_UTIL_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_run_util.h"
#include "clipkd/blas.h"
#include "clipkd/safetensors.h"
#include "clipkd/train.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

/* A recipe's "data" line pair: the first N_TRAIN Fashion-MNIST test images
 * to train on, the first 48 to evaluate on (with EVAL_EXTRA keys). */
#define TINY_FMNIST_DATA(n_train, eval_extra)                                                            \
    " \"data\": {\"train\": {\"reader\": \"fashion-mnist\", \"split\": \"test\", \"dir\": \"" FMNIST_DIR     \
    "\", \"limit\": " #n_train "},\n"                                                                      \
    "          \"eval\": {\"reader\": \"fashion-mnist\", \"split\": \"test\", \"dir\": \"" FMNIST_DIR         \
    "\", \"limit\": 48" eval_extra "}},\n"

/* A tiny CLIP teacher (width 16, one layer per tower) trained for 7 steps on
 * the first N_TRAIN Fashion-MNIST test images: the recipe's text. */
#define TINY_TEACHER_RECIPE(n_train)                                                                      \
    "{\"name\": \"teacher\", \"seed\": 3, \"threads\": 1,\n"                                              \
    " \"student\": {\"model\": \"clip\", \"config\": {\"embed_dim\": 16,\n"                                \
    "   \"vision\": {\"image_size\": 28, \"patch_size\": 7, \"width\": 16, \"layers\": 1, \"heads\": 2},\n" \
    "   \"text\": {\"context_length\": 20, \"width\": 16, \"layers\": 1, \"heads\": 2}}},\n"               \
    " \"data\": {\"train\": {\"reader\": \"fashion-mnist\", \"split\": \"test\", \"dir\": \"" FMNIST_DIR       \
    "\", \"limit\": " #n_train "}},\n"                                                                     \
    " \"losses\": [{\"name\": \"clip\"}],\n"                                                                 \
    " \"optim\": {\"lr\": 0.003, \"warmup_steps\": 2},\n"                                                     \
    " \"train\": {\"steps\": 7, \"batch_size\": 16, \"log_every\": 1}}\n"

static ckd_registry *reg;
static char tmp[256];

/* The plugins as built, the tokenizer from the source tree (for the
 * clipkd program too), a fresh temporary directory with its own artifact
 * cache, one thread. */
static inline void setup(void)
{
    const char *path = cli_test_env();
    char cache[512];
    ckd_error err = {{0}};
    reg = ckd_registry_open(path, &err);
    cr_assert_not_null(reg, "%s", err.msg);
    snprintf(tmp, sizeof tmp, "/tmp/clipkd-test-train-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    setenv("CLIPKD_CACHE", cache, 1);
    ckd_set_threads(1);
}

static inline void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    cr_expect_eq(system(cmd), 0);
    ckd_registry_free(reg);
}

static inline void write_file(const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f, "%s", p);
    fputs(text, f);
    fclose(f);
}

static inline ckd_recipe *load(const char *name, const char *const *sets, size_t n)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    ckd_error err = {{0}};
    ckd_recipe *r = ckd_recipe_load(p, sets, n, ckd_train_plugin_schema, reg, &err);
    cr_assert_not_null(r, "%s", err.msg);
    return r;
}

/* Trains recipe file (in tmp, with the overrides) into tmp/<out>, teachers
 * and other named runs under tmp/runs, every event to on_event(user, ...):
 * ckd_train_run's result, err set on failure. */
static inline int try_run_into(const char *file, const char *const *sets, size_t n, const char *out,
                               void (*on_event)(void *, const ckd_train_event *), void *user, ckd_error *err)
{
    ckd_recipe *r = load(file, sets, n);
    char dir[512], runs[512];
    snprintf(dir, sizeof dir, "%s/%s", tmp, out);
    snprintf(runs, sizeof runs, "%s/runs", tmp);
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.out_dir = dir;
    o.runs_root = runs;
    o.progress = on_event;
    o.user = user;
    int rc = ckd_train_run(reg, r, &o, NULL, 0, err);
    ckd_recipe_free(r);
    return rc;
}

/* The same, which must succeed. */
static inline void run_into(const char *file, const char *const *sets, size_t n, const char *out,
                            void (*on_event)(void *, const ckd_train_event *), void *user)
{
    ckd_error err = {{0}};
    cr_assert_eq(try_run_into(file, sets, n, out, on_event, user, &err), 0, "%s", err.msg);
}

static inline char *slurp(const char *dir, const char *file, long *len)
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
static inline char *metrics_without_time(const char *dir)
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
static inline void expect_same_checkpoint(const char *a, const char *b)
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

static inline void run_dir(const char *name, char *out, size_t cap) { snprintf(out, cap, "%s/%s", tmp, name); }

/* Trains r into tmp/<name> with the default options; ckd_train_run's result. */
static inline int train_into(const ckd_recipe *r, const char *name, ckd_error *err)
{
    char d[512];
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    run_dir(name, d, sizeof d);
    o.out_dir = d;
    return ckd_train_run(reg, r, &o, NULL, 0, err);
}

/* reg with the probe plugins (tests/plugins/probe.c) beside the real ones:
 * losses that write the loss batch the trainer gives them to a file. */
static inline void open_with_probes(void)
{
    const char *b = getenv("CKD_TEST_BUILDDIR");
    char path[9000];
    snprintf(path, sizeof path, "%s:%s/tests/probe/.libs", cli_test_env(), b ? b : ".");
    ckd_registry_free(reg);
    ckd_error err = {{0}};
    reg = ckd_registry_open(path, &err);
    cr_assert_not_null(reg, "%s", err.msg);
}

/* metrics.jsonl's train lines: their loss terms, in order. */
static inline int read_terms(const char *dir, double *out, int cap)
{
    char p[1024], line[8192];
    snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
    FILE *f = fopen(p, "r");
    cr_assert_not_null(f, "%s", p);
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        const char *k;
        json_t *v;
        if (!strcmp(json_string_value(json_object_get(o, "type")), "train"))
            json_object_foreach(json_object_get(o, "terms"), k, v) if (n < cap) out[n++] = json_number_value(v);
        json_decref(o);
    }
    fclose(f);
    return n;
}

/* A run of one loss term logged every step: every value finite, and the
 * last at least `drop` below the first. */
static inline void expect_learns(const char *dir, int steps, double drop)
{
    double v[256];
    int n = read_terms(dir, v, 256);
    cr_assert_eq(n, steps, "%s: %d logged terms", dir, n);
    for (int i = 0; i < n; i++)
        cr_assert(isfinite(v[i]), "%s: step %d: loss %g", dir, i + 1, v[i]);
    cr_expect_leq(v[n - 1], v[0] - drop, "%s: loss %g at the first step, %g at the last", dir, v[0], v[n - 1]);
    cr_log_info("%s: loss %.4f at step 1, %.4f at step %d", dir, v[0], v[n - 1], n);
}

/* A float32 tensor of a safetensors file, which must be there. */
static inline const float *st_floats(const ckd_safetensors *st, const char *name, int64_t *n)
{
    const ckd_st_tensor *t = ckd_st_find(st, name);
    cr_assert(t && t->dtype == CKD_DT_F32, "no float32 tensor %s", name);
    *n = (int64_t)(t->nbytes / sizeof(float));
    return t->data;
}

/* Two finished runs of one recipe: the same final weights (bytes), the same
 * last checkpoint, the same metrics.jsonl apart from timing fields. */
static inline void expect_same_run(const char *a, const char *b)
{
    long la, lb;
    char *wa = slurp(a, "final/model.safetensors", &la), *wb = slurp(b, "final/model.safetensors", &lb);
    cr_expect(la == lb && memcmp(wa, wb, (size_t)la) == 0, "final weights of %s and %s differ", a, b);
    free(wa), free(wb);
    expect_same_checkpoint(a, b);
    char *ma = metrics_without_time(a), *mb = metrics_without_time(b);
    cr_expect_str_eq(ma, mb);
    free(ma), free(mb);
}

/* The exact-resume experiment: r trained whole into a, and into b stopped
 * after stop_after steps (between checkpoints: what follows the last one is
 * done again after the resume). */
static inline void train_whole_and_stopped(const ckd_recipe *r, const char *a, const char *b, int64_t stop_after)
{
    ckd_error err = {{0}};
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.out_dir = a;
    cr_assert_eq(ckd_train_run(reg, r, &o, NULL, 0, &err), 0, "%s", err.msg);
    o.out_dir = b;
    o.stop_after = stop_after;
    cr_assert_eq(ckd_train_run(reg, r, &o, NULL, 0, &err), 0, "%s", err.msg);
}

/* ... then b resumed to the end: the same bytes as a. */
static inline void resume_and_expect_same(const char *a, const char *b)
{
    ckd_error err = {{0}};
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.out_dir = b;
    cr_assert_eq(ckd_train_resume(reg, NULL, b, &o, &err), 0, "%s", err.msg);
    expect_same_run(a, b);
}

#endif
