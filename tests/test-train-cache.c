/* The teacher embedding cache (teacher.mode "cache"): computed by the first
 * run, then read — with no teacher forward at all — by the next run of the
 * same teacher and data; computed anew when any part of its key changes
 * (data, captions, teacher weights); noticed and computed again when
 * damaged; and, without augmentation (where the live teacher sees what the
 * cache holds), training with it follows training with the live teacher. */
#include "config.h"

#include <dirent.h>
#include <math.h>

#include "train_test_util.h"

/* The teacher: a tiny CLIP trained for 7 steps on 192 Fashion-MNIST
 * images; the student: a smaller one distilled from it for 3 steps. */
static const char teacher_recipe[] =
    "{\"name\": \"teacher\", \"seed\": 3, \"threads\": 1,\n"
    " \"student\": {\"model\": \"clip\", \"config\": {\"embed_dim\": 16,\n"
    "   \"vision\": {\"image_size\": 28, \"patch_size\": 7, \"width\": 16, \"layers\": 1, \"heads\": 2},\n"
    "   \"text\": {\"context_length\": 20, \"width\": 16, \"layers\": 1, \"heads\": 2}}},\n"
    " \"data\": {\"train\": {\"reader\": \"fashion-mnist\", \"split\": \"test\", \"dir\": \"" FMNIST_DIR
    "\", \"limit\": 192}},\n"
    " \"losses\": [{\"name\": \"clip\"}],\n"
    " \"optim\": {\"lr\": 0.003, \"warmup_steps\": 2},\n"
    " \"train\": {\"steps\": 7, \"batch_size\": 16, \"log_every\": 1}}\n";

static const char kd_recipe[] =
    "{\"extends\": \"teacher.json\", \"name\": \"kd\",\n"
    " \"teacher\": {\"recipe\": \"teacher.json\", \"mode\": \"cache\"},\n"
    " \"student\": {\"config\": {\"embed_dim\": 8, \"vision\": {\"width\": 8}, \"text\": {\"width\": 8}}},\n"
    " \"losses\": [{\"name\": \"clip\"}, {\"name\": \"crd\"}, {\"name\": \"fd\", \"weight\": 2000}, {\"name\": \"icl\"}],\n"
    " \"train\": {\"steps\": 3}}\n";

typedef struct seen {
    int computing, reusing, damaged;
    int64_t encoded; /* of the last event: the kd run's own count */
} seen;

static void on_event(void *user, const ckd_train_event *ev)
{
    seen *s = user;
    s->encoded = ev->teacher_encoded;
    if (ev->kind != CKD_TRAIN_MESSAGE || !strstr(ev->text, "teacher embeddings:"))
        return;
    s->computing += strstr(ev->text, "embeddings: computing") != NULL;
    s->reusing += strstr(ev->text, "reusing") != NULL;
    s->damaged += strstr(ev->text, "damaged") != NULL;
}

/* Runs kd.json with the overrides into a fresh directory under tmp/runs. */
static seen run_kd(const char *const *sets, size_t n, char *dir, size_t cap)
{
    static int k;
    ckd_recipe *r = load("kd.json", sets, n);
    char out[512], runs[512];
    snprintf(out, sizeof out, "%s/kd-%d", tmp, k++);
    snprintf(runs, sizeof runs, "%s/runs", tmp);
    seen s = {0};
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.out_dir = out;
    o.runs_root = runs;
    o.progress = on_event;
    o.user = &s;
    ckd_error err = {{0}};
    cr_assert_eq(ckd_train_run(reg, r, &o, NULL, 0, &err), 0, "%s", err.msg);
    ckd_recipe_free(r);
    if (dir)
        snprintf(dir, cap, "%s", out);
    return s;
}

/* The entries in the cache: their number, and the path of the last one. */
static int entries(char *last, size_t cap)
{
    char d[512];
    snprintf(d, sizeof d, "%s/cache/teacher-embeddings", tmp);
    DIR *dir = opendir(d);
    int n = 0;
    for (struct dirent *e; dir && (e = readdir(dir));) {
        size_t k = strlen(e->d_name);
        if (k > 12 && !strcmp(e->d_name + k - 12, ".safetensors")) {
            n++;
            if (last)
                snprintf(last, cap, "%s/%s", d, e->d_name);
        }
    }
    if (dir)
        closedir(dir);
    return n;
}

static void write_recipes(void)
{
    write_file("teacher.json", teacher_recipe);
    write_file("kd.json", kd_recipe);
}

Test(cache, computed_once_then_reused_without_the_teacher, .init = setup, .fini = teardown, .timeout = 120)
{
    write_recipes();
    seen s1 = run_kd(NULL, 0, NULL, 0);
    cr_expect_eq(s1.computing, 1);
    cr_expect_eq(s1.reusing, 0);
    /* 192 images, 5 captions each, 10 classes x 18 prompt templates. */
    cr_expect_gt(s1.encoded, 192 + 960, "teacher encoded %lld", (long long)s1.encoded);
    char path[1024];
    cr_assert_eq(entries(path, sizeof path), 1);
    struct stat before, after;
    cr_assert_eq(stat(path, &before), 0);

    const char *sets[] = {"seed=9"};
    seen s2 = run_kd(sets, 1, NULL, 0);
    cr_expect_eq(s2.reusing, 1);
    cr_expect_eq(s2.computing, 0);
    cr_expect_eq(s2.encoded, 0, "the second run made %lld teacher forwards", (long long)s2.encoded);
    cr_assert_eq(stat(path, &after), 0);
    cr_expect(before.st_ino == after.st_ino && before.st_mtim.tv_nsec == after.st_mtim.tv_nsec &&
                  before.st_mtim.tv_sec == after.st_mtim.tv_sec,
              "the entry was written again");
    cr_expect_eq(entries(NULL, 0), 1);

    /* What the entry holds. */
    ckd_error err = {{0}};
    ckd_safetensors *st = ckd_st_open(path, &err);
    cr_assert_not_null(st, "%s", err.msg);
    const ckd_st_tensor *img = ckd_st_find(st, "image_embeds"), *txt = ckd_st_find(st, "text_embeds"),
                        *off = ckd_st_find(st, "text_offsets"), *cls = ckd_st_find(st, "class_txt");
    cr_assert(img && txt && off && cls);
    cr_expect(img->shape[0] == 192 && img->shape[1] == 16 && img->dtype == CKD_DT_F32);
    cr_expect_eq(txt->shape[0], 960, "every caption of every image");
    cr_expect_eq(((const int64_t *)off->data)[192], 960);
    cr_expect(cls->shape[0] == 10 && cls->shape[1] == 16);
    double norm = 0;
    for (int d = 0; d < 16; d++)
        norm += (double)((const float *)img->data)[d] * ((const float *)img->data)[d];
    cr_expect_float_eq(norm, 1.0, 1e-5, "normalised embeddings");
    cr_expect_not_null(strstr(ckd_st_metadata(st, "key"), "\"augment\":\"none\""), "%s", ckd_st_metadata(st, "key"));
    ckd_st_close(st);
}

Test(cache, any_change_of_the_key_computes_a_new_entry, .init = setup, .fini = teardown, .timeout = 120)
{
    write_recipes();
    write_file("teacher2.json", "{\"extends\": \"teacher.json\", \"seed\": 4}");
    char t2[600];
    snprintf(t2, sizeof t2, "teacher.recipe=%s/teacher2.json", tmp);
    const char *data[] = {"data.train.limit=160"}, *captions[] = {"data.train.captions=3"};
    const char *teacher[] = {t2};
    struct {
        const char *const *sets;
        const char *what;
    } changes[] = {{NULL, "first"}, {data, "data"}, {captions, "captions"}, {teacher, "teacher weights"}};
    for (int i = 0; i < 4; i++) {
        seen s = run_kd(changes[i].sets, changes[i].sets ? 1 : 0, NULL, 0);
        cr_expect_eq(s.computing, 1, "%s: not computed", changes[i].what);
        cr_expect_gt(s.encoded, 0, "%s", changes[i].what);
        cr_expect_eq(entries(NULL, 0), i + 1, "%s", changes[i].what);
    }
    /* And the first key again: reused. */
    seen s = run_kd(NULL, 0, NULL, 0);
    cr_expect(s.reusing == 1 && s.encoded == 0);
}

static char *read_all(const char *path, long *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)*n);
    cr_assert_eq(fread(b, 1, (size_t)*n, f), (size_t)*n);
    fclose(f);
    return b;
}

/* A flipped byte in the embeddings, a truncated file, a garbage header:
 * each noticed, and the entry computed again — to the same bytes. */
Test(cache, damaged_entry_is_noticed_and_computed_again, .init = setup, .fini = teardown, .timeout = 120)
{
    write_recipes();
    run_kd(NULL, 0, NULL, 0);
    char path[1024];
    cr_assert_eq(entries(path, sizeof path), 1);
    long n;
    char *good = read_all(path, &n);
    for (int damage = 0; damage < 3; damage++) {
        if (damage == 0) {
            FILE *f = fopen(path, "r+b");
            fseek(f, n - 4000, SEEK_SET);
            int c = getc(f);
            fseek(f, n - 4000, SEEK_SET);
            putc(c ^ 0x10, f);
            fclose(f);
        } else if (damage == 1) {
            cr_assert_eq(truncate(path, n / 2), 0);
        } else {
            FILE *f = fopen(path, "r+b");
            fputs("garbage!", f);
            fclose(f);
        }
        const char *sets[] = {"seed=9"};
        seen s = run_kd(sets, 1, NULL, 0);
        cr_expect(s.damaged == 1 && s.computing == 1 && s.encoded > 0, "damage %d: %d damaged, %d computed", damage,
                  s.damaged, s.computing);
        long m;
        char *again = read_all(path, &m);
        cr_expect(m == n && !memcmp(good, again, (size_t)n), "damage %d: computed to other bytes", damage);
        free(again);
    }
    free(good);
}

/* metrics.jsonl's train lines: their loss terms, in order. */
static int read_terms(const char *dir, double *out, int cap)
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

/* Without augmentation the live teacher sees the images the cache was made
 * from, and the caption the loader drew is looked up in the cache: the loss
 * terms of both runs agree to float rounding (the teacher's batches differ,
 * so the sums are ordered differently). */
Test(cache, agrees_with_the_live_teacher_without_augmentation, .init = setup, .fini = teardown, .timeout = 120)
{
    write_recipes();
    const char *cache[] = {"train.augment=false"}, *live[] = {"train.augment=false", "teacher.mode=live"};
    char a[600], b[600];
    run_kd(cache, 1, a, sizeof a);
    run_kd(live, 2, b, sizeof b);
    double ta[64], tb[64];
    int na = read_terms(a, ta, 64), nb = read_terms(b, tb, 64);
    cr_assert(na == nb && na == 12, "%d and %d terms", na, nb);
    double worst = 0;
    for (int i = 0; i < na; i++)
        worst = fmax(worst, fabs(ta[i] - tb[i]) / fmax(fabs(tb[i]), 1e-3));
    cr_expect_leq(worst, 1e-4, "cache and live terms differ by %g (relative)", worst);
    cr_log_info("cache vs live teacher, no augmentation: worst relative difference of a loss term %.2e", worst);
}
