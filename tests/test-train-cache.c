/* The teacher embedding cache (teacher.mode "cache"): computed by the first
 * run, then read — with no teacher forward at all — by the next run of the
 * same teacher and data; computed anew when any part of its key changes
 * (data, captions, teacher weights); noticed and computed again when
 * damaged; and, without augmentation (where the live teacher sees what the
 * cache holds), training with it follows training with the live teacher.
 * Also what else comes from the teacher: the class centroids (the same from
 * the cache and the live teacher), and kd and embed_kd training on it. */
#include "config.h"

#include <dirent.h>
#include <math.h>

#include "clipkd/loader.h"
#include "tcache_entry.h" /* compiled in: the entry check is not exported */
#include "train_test_util.h"

/* The teacher: a tiny CLIP trained for 7 steps on 192 Fashion-MNIST
 * images; the student: a smaller one distilled from it for 3 steps. */
static const char teacher_recipe[] = TINY_TEACHER_RECIPE(192);

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

/* Runs a recipe with the overrides into tmp/<out>, teachers under tmp/runs. */
static seen run_recipe(const char *file, const char *const *sets, size_t n, const char *out)
{
    seen s = {0};
    run_into(file, sets, n, out, on_event, &s);
    return s;
}

/* Runs kd.json with the overrides into a fresh directory. */
static seen run_kd(const char *const *sets, size_t n, char *dir, size_t cap)
{
    static int k;
    char out[32];
    snprintf(out, sizeof out, "kd-%d", k++);
    seen s = run_recipe("kd.json", sets, n, out);
    if (dir)
        snprintf(dir, cap, "%s/%s", tmp, out);
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
    /* kd.json augments: one replayed view (the default of teacher.views), the same for every seed */
    const char *key = ckd_st_metadata(st, "key");
    cr_expect(strstr(key, "\"augment\":{\"crop\":\"random resized, bicubic\"") && strstr(key, "\"views\":1}"),
              "%s", key);
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

/* ---- class centroids and the class-logit losses ------------------------------------- */

/* The student of kd.json with one loss and the centroid probe beside it,
 * one step; the probe writes its batch to tmp/<out>. */
static void write_centroid_recipe(void)
{
    char recipe[1024];
    snprintf(recipe, sizeof recipe,
             "{\"extends\": \"kd.json\", \"name\": \"centroids\",\n"
             " \"losses\": [{\"name\": \"embed_kd\", \"params\": {\"centroid_images\": 7}},\n"
             "              {\"name\": \"test_probe_centroids\", \"params\": {\"out\": \"%s/cache.safetensors\"}}],\n"
             " \"train\": {\"steps\": 1, \"augment\": false}}\n",
             tmp);
    write_file("centroids.json", recipe);
}

/* Per class, the mean of the teacher's normalised embeddings of its first
 * cap images (0: all) of the teacher recipe's training data, computed here
 * with the teacher of the runs root, the loader in dataset order without
 * augmentation, and double sums. [K, D], malloc'd. */
static double *direct_centroids(int64_t cap, int64_t *K_out, int64_t *D_out)
{
    ckd_recipe *tr = load("teacher.json", NULL, 0);
    char runs[512], dir[1024], final[1100];
    snprintf(runs, sizeof runs, "%s/runs", tmp);
    ckd_train_run_dir(tr, runs, dir, sizeof dir);
    snprintf(final, sizeof final, "%s/final", dir);
    ckd_error err = {{0}};
    ckd_model *m = ckd_model_from_pretrained(reg, final, &err);
    cr_assert_not_null(m, "%s", err.msg);
    ckd_dataset *ds = ckd_dataset_open(json_object_get(json_object_get(ckd_recipe_json(tr), "data"), "train"), tmp,
                                       &err);
    cr_assert_not_null(ds, "%s", err.msg);
    ckd_loader_opts lo;
    ckd_loader_opts_init(&lo);
    lo.batch_size = 50;
    lo.shuffle = 0;
    lo.epochs = 1;
    lo.augment = 0;
    lo.image_size = 28;
    ckd_loader *l = ckd_loader_new(ds, &lo, &err);
    ckd_ctx *c = ckd_ctx_new(0, 0, &err);
    cr_assert(l && c, "%s", err.msg);
    ckd_ctx_set_grad(c, 0);
    int64_t K = (int64_t)ckd_dataset_n_classes(ds), D = ckd_model_embed_dim(m), count[64] = {0};
    double *sum = calloc((size_t)(K * D), sizeof *sum);
    const ckd_batch *b;
    while (ckd_loader_next(l, &b, &err) == 0) {
        ckd_ctx_reset(c);
        ckd_tensor *px = ckd_tensor_from(c, 4, (int64_t[]){b->n, 3, b->image_size, b->image_size}, b->pixel_values);
        ckd_tensor *e = ckd_model_encode_image(m, c, px, 1.0f, NULL);
        cr_assert_not_null(e);
        for (int64_t i = 0; i < b->n; i++) {
            int32_t k = b->labels[i];
            if (cap && count[k] >= cap)
                continue;
            double s = 0;
            for (int64_t d = 0; d < D; d++)
                s += (double)e->data[i * D + d] * e->data[i * D + d];
            for (int64_t d = 0; d < D; d++)
                sum[k * D + d] += e->data[i * D + d] / sqrt(s);
            count[k]++;
        }
    }
    for (int64_t k = 0; k < K; k++)
        for (int64_t d = 0; d < D; d++)
            sum[k * D + d] /= (double)count[k];
    ckd_ctx_free(c);
    ckd_loader_free(l);
    ckd_dataset_close(ds);
    ckd_model_free(m);
    ckd_recipe_free(tr);
    *K_out = K, *D_out = D;
    return sum;
}

/* The batch a probe wrote to tmp/<name>.safetensors. */
static ckd_safetensors *open_probe(const char *name)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s.safetensors", tmp, name);
    ckd_error err = {{0}};
    ckd_safetensors *st = ckd_st_open(p, &err);
    cr_assert_not_null(st, "%s", err.msg);
    return st;
}

/* The centroids a probe saw, as doubles (malloc'd, K·D of them). */
static double *probe_centroids(const char *name, int64_t K, int64_t D)
{
    ckd_safetensors *st = open_probe(name);
    int64_t n;
    const float *got = st_floats(st, "centroids", &n);
    cr_assert_eq(n, K * D);
    double *out = malloc((size_t)n * sizeof *out);
    for (int64_t i = 0; i < n; i++)
        out[i] = got[i];
    ckd_st_close(st);
    return out;
}

static double max_diff(const double *a, const double *b, int64_t n)
{
    double worst = 0;
    for (int64_t i = 0; i < n; i++)
        worst = fmax(worst, fabs(a[i] - b[i]));
    return worst;
}

/* embed_kd's centroids are the direct means of the teacher's normalised
 * embeddings — the first centroid_images of each class, or all of them —
 * and the cache (without a teacher forward) and the live teacher give the
 * same ones (of the un-augmented images: with replayed views both would
 * take view 0). */
Test(cache, centroids_are_the_teachers_class_means_from_cache_or_live, .init = setup, .fini = teardown,
     .timeout = 120)
{
    open_with_probes();
    write_recipes();
    write_centroid_recipe();
    char live_out[600], all_out[600];
    snprintf(live_out, sizeof live_out, "losses[1].params.out=%s/live.safetensors", tmp);
    snprintf(all_out, sizeof all_out, "losses[1].params.out=%s/all.safetensors", tmp);
    const char *live[] = {"teacher.mode=live", live_out}, *all[] = {"losses[0].params.centroid_images=0", all_out};
    run_recipe("centroids.json", NULL, 0, "c7");
    seen s = run_recipe("centroids.json", all, 2, "call");
    cr_expect_eq(s.encoded, 0, "the cache run made %lld teacher forwards", (long long)s.encoded);
    s = run_recipe("centroids.json", live, 2, "live");
    cr_expect_geq(s.encoded, 192, "the live teacher embedded %lld images for the centroids", (long long)s.encoded);

    int64_t K, D;
    double *first7 = direct_centroids(7, &K, &D), *every = direct_centroids(0, &K, &D);
    cr_assert(K == 10 && D == 16);
    double *cache = probe_centroids("cache", K, D), *live_c = probe_centroids("live", K, D),
           *all_c = probe_centroids("all", K, D);
    double e_cache = max_diff(cache, first7, K * D), e_all = max_diff(all_c, every, K * D),
           e_live = max_diff(live_c, cache, K * D);
    cr_expect_leq(e_cache, 1e-6, "cache centroids (7 per class) differ from the direct means by %g", e_cache);
    cr_expect_leq(e_all, 1e-6, "cache centroids (all images) differ from the direct means by %g", e_all);
    cr_expect_leq(e_live, 1e-7, "live and cache centroids differ by %g", e_live);
    cr_expect_gt(max_diff(first7, every, K * D), 1e-3, "centroid_images made no difference");
    cr_log_info("centroids vs direct means: %.2e (7 per class), %.2e (all); live vs cache %.2e", e_cache, e_all,
                e_live);
    free(first7), free(every), free(cache), free(live_c), free(all_c);
}

/* Two losses that read centroids must agree on how they are made. */
Test(cache, losses_disagreeing_on_centroid_images_are_refused, .init = setup, .fini = teardown)
{
    write_recipes();
    const char *sets[] = {"losses=[{\"name\": \"embed_kd\"}, {\"name\": \"embed_kd\", \"params\": "
                          "{\"centroid_images\": 5}}]"};
    ckd_recipe *r = load("kd.json", sets, 1);
    ckd_error err = {{0}};
    cr_assert_eq(train_into(r, "refused", &err), -1);
    cr_expect(strstr(err.msg, "losses[1]") && strstr(err.msg, "centroid_images"), "%s", err.msg);
    ckd_recipe_free(r);
}

/* kd (teacher zero-shot logits into the student's) and embed_kd (with the
 * label ce, CLIP-Embed-KD's pair) train from the cached teacher: on one
 * fixed batch, every term finite and the loss falling. */
Test(cache, kd_and_embed_kd_train_from_the_cached_teacher, .init = setup, .fini = teardown, .timeout = 120)
{
    write_recipes();
    const char *fixed[] = {"data.train.limit=16", "train.augment=false", "train.steps=30", "optim.lr=0.01"};
    struct {
        const char *losses, *out;
        double drop;
    } runs[] = {{"losses=[{\"name\": \"kd\"}]", "kd", 0.1},
                {"losses=[{\"name\": \"embed_kd\"}]", "embed_kd", 0.1}};
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        const char *sets[] = {fixed[0], fixed[1], fixed[2], fixed[3], runs[i].losses};
        run_recipe("kd.json", sets, 5, runs[i].out);
        char d[600];
        snprintf(d, sizeof d, "%s/%s", tmp, runs[i].out);
        expect_learns(d, 30, runs[i].drop);
    }
}

/* ---- replayed augmented views (teacher.views) ------------------------------------- */

/* The first batch of kd.json with augmentation on, the probe beside the
 * clip and fd losses, into tmp/<name>.safetensors. */
static void run_views_probe(const char *name, const char *const *extra, size_t n_extra)
{
    char out[600];
    snprintf(out, sizeof out, "losses[2].params.out=%s/%s.safetensors", tmp, name);
    /* fd reads t_img: a run whose losses read no per-sample teacher
     * embeddings does not keep the cache entry open */
    const char *sets[8] = {"train.steps=1",
                           "losses=[{\"name\": \"clip\"}, {\"name\": \"fd\"}, {\"name\": \"test_probe_logits\"}]",
                           out};
    size_t n = 3;
    for (size_t i = 0; i < n_extra; i++)
        sets[n++] = extra[i];
    run_kd(sets, n, NULL, 0);
}

static int same_tensor(const ckd_safetensors *a, const ckd_safetensors *b, const char *name)
{
    const ckd_st_tensor *x = ckd_st_find(a, name), *y = ckd_st_find(b, name);
    cr_assert(x && y, "no %s", name);
    return x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes);
}

/* With augmentation, a cached teacher's embedding of a batch is, bit for
 * bit, what the live teacher computes from the student's pixels when both
 * replay the same views: the loader gives view v of a sample whatever the
 * epoch and seed, and the entry holds the teacher's embedding of each view
 * (eval.batch_size is the training batch, so that both sides run the same
 * kernels on batches of the same shape). A live teacher with fresh crops
 * sees other images, which shows the comparison can fail. */
Test(cache, augmented_views_are_the_live_teachers_bit_for_bit, .init = setup, .fini = teardown, .timeout = 180)
{
    open_with_probes();
    write_recipes();
    const char *cache[] = {"teacher.views=3", "eval.batch_size=16"},
               *live[] = {"teacher.views=3", "eval.batch_size=16", "teacher.mode=live"},
               *fresh[] = {"eval.batch_size=16", "teacher.mode=live"};
    run_views_probe("cache", cache, 2);
    run_views_probe("live", live, 3);
    run_views_probe("fresh", fresh, 2);
    ckd_safetensors *c = open_probe("cache"), *l = open_probe("live"), *f = open_probe("fresh");
    cr_expect(same_tensor(c, l, "t_img"), "the cached views' embeddings are not the live teacher's");
    cr_expect(same_tensor(c, l, "s_img"), "the student saw other pixels");
    cr_expect(!same_tensor(c, f, "t_img") && !same_tensor(c, f, "s_img"), "fresh crops gave the same images");
    ckd_st_close(c), ckd_st_close(l), ckd_st_close(f);

    /* The entry: 3 blocks of 192 rows, the views differing; its key names the views. */
    char path[1024];
    cr_assert_eq(entries(path, sizeof path), 1);
    ckd_error err = {{0}};
    ckd_safetensors *st = ckd_st_open(path, &err);
    cr_assert_not_null(st, "%s", err.msg);
    const ckd_st_tensor *img = ckd_st_find(st, "image_embeds");
    cr_assert(img && img->shape[0] == 3 * 192 && img->shape[1] == 16);
    const float *e = img->data;
    cr_expect(memcmp(e, e + 192 * 16, 16 * sizeof *e) && memcmp(e, e + 2 * 192 * 16, 16 * sizeof *e),
              "the views of sample 0 have the same embedding");
    cr_expect(strstr(ckd_st_metadata(st, "key"), "\"views\":3}"), "%s", ckd_st_metadata(st, "key"));
    ckd_st_close(st);
}

/* The key covers the views: another count is another entry, and an entry
 * holding fewer views than the run replays is refused with the reason;
 * views without augmentation are an error naming the key. */
Test(cache, views_are_part_of_the_key, .init = setup, .fini = teardown, .timeout = 180)
{
    write_recipes();
    const char *one[] = {"teacher.views=1"}, *two[] = {"teacher.views=2"};
    seen a = run_kd(one, 1, NULL, 0), b = run_kd(two, 1, NULL, 0), c = run_kd(NULL, 0, NULL, 0);
    cr_expect(a.computing == 1 && b.computing == 1 && c.reusing == 1, "views 1: %d, views 2: %d, default: %d reused",
              a.computing, b.computing, c.reusing);
    cr_expect_eq(entries(NULL, 0), 2);
    /* the check itself: an entry of 1 view read as one of 2 */
    char path[1024];
    cr_assert_eq(entries(path, sizeof path), 2);
    ckd_error err = {{0}};
    ckd_safetensors *st = ckd_st_open(path, &err);
    cr_assert_not_null(st, "%s", err.msg);
    const ckd_st_tensor *img = ckd_st_find(st, "image_embeds");
    int64_t have = img->shape[0] / 192;
    tcache_arrays arr;
    cr_expect_neq(tcache_entry_check(st, ckd_st_metadata(st, "key"), 192, have + 1, 16, 0, 0, &arr, &err), 0);
    char want[128];
    snprintf(want, sizeof want, "it holds %lld view", (long long)have);
    cr_expect(strstr(err.msg, want) && strstr(err.msg, "teacher.views"), "%s", err.msg);
    cr_expect_eq(tcache_entry_check(st, ckd_st_metadata(st, "key"), 192, have, 16, 0, 0, &arr, &err), 0, "%s",
                 err.msg);
    ckd_st_close(st);
    const char *noaug[] = {"teacher.views=2", "train.augment=false"};
    ckd_error e2 = {{0}};
    cr_expect_neq(try_run_into("kd.json", noaug, 2, "noaug", NULL, NULL, &e2), 0);
    cr_expect(strstr(e2.msg, "teacher.views") && strstr(e2.msg, "train.augment is off"), "%s", e2.msg);
}

/* A run whose losses read no per-sample teacher embedding (the clip loss,
 * and the probe, which reads what the batch has) does not keep the entry
 * open: its batches carry no t_img. With fd, which reads t_img, they do. */
Test(cache, an_entry_no_loss_reads_per_sample_is_not_kept, .init = setup, .fini = teardown, .timeout = 120)
{
    open_with_probes();
    write_recipes();
    char out[600];
    snprintf(out, sizeof out, "losses[1].params.out=%s/bare.safetensors", tmp);
    const char *bare[] = {"train.steps=1", "train.augment=false",
                          "losses=[{\"name\": \"clip\"}, {\"name\": \"test_probe_logits\"}]", out};
    run_kd(bare, 4, NULL, 0);
    const char *fd[] = {"train.augment=false"};
    run_views_probe("fd", fd, 1);
    ckd_safetensors *b = open_probe("bare"), *f = open_probe("fd");
    cr_expect_null(ckd_st_find(b, "t_img"), "the entry was kept for a run that reads none of it");
    cr_expect_not_null(ckd_st_find(f, "t_img"));
    ckd_st_close(b), ckd_st_close(f);
}
