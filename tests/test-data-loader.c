/* Tests for clipkd/loader.h: determinism across thread counts, resuming from
 * a cursor, permutations, batching, preprocessing, augmentation, skipping
 * undecodable images (part of tests/test-data). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "clipkd/loader.h"
#include "clipkd/safetensors.h"
#include "data-test.h"

static ckd_tokenizer *tokenizer(void)
{
    const char *src = getenv("CKD_TEST_SRCDIR");
    cr_assert(src && *src, "CKD_TEST_SRCDIR is not set (run through make check)");
    char p[1024];
    snprintf(p, sizeof p, "%s/models/clip/%s", src, CKD_TOKENIZER_BPE_FILE);
    ckd_error err;
    ckd_tokenizer *t = ckd_tokenizer_load_bpe_gz(p, &err);
    cr_assert_not_null(t, "%s", err.msg);
    return t;
}

static ckd_dataset *fmnist(size_t limit)
{
    char spec[512];
    snprintf(spec, sizeof spec, "{\"reader\": \"fashion-mnist\", \"split\": \"test\", \"dir\": \"%s\","
                                " \"limit\": %zu}", tdu_fmnist_dir(), limit);
    ckd_error err;
    ckd_dataset *ds = tdu_open(spec, NULL, &err);
    cr_assert_not_null(ds, "%s", err.msg);
    return ds;
}

static ckd_loader *loader(const ckd_dataset *ds, const ckd_loader_opts *o)
{
    ckd_error err;
    ckd_loader *l = ckd_loader_new(ds, o, &err);
    cr_assert_not_null(l, "%s", err.msg);
    return l;
}

/* A copy of everything a batch holds, to compare runs. */
typedef struct copy {
    int n;
    int64_t epoch, batch;
    float *px;
    int32_t *ids, *labels;
    int64_t *idx;
} copy;

static copy take(const ckd_batch *b)
{
    size_t S = (size_t)b->image_size, T = (size_t)b->context_len, n = (size_t)b->n;
    copy c = {b->n, b->epoch, b->batch, malloc(n * 3 * S * S * sizeof(float)), NULL,
              malloc(n * sizeof(int32_t)), malloc(n * sizeof(int64_t))};
    memcpy(c.px, b->pixel_values, n * 3 * S * S * sizeof(float));
    if (b->input_ids) {
        c.ids = malloc(n * T * sizeof(int32_t));
        memcpy(c.ids, b->input_ids, n * T * sizeof(int32_t));
    }
    memcpy(c.labels, b->labels, n * sizeof(int32_t));
    memcpy(c.idx, b->indices, n * sizeof(int64_t));
    return c;
}

static void free_copies(copy *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(c[i].px);
        free(c[i].ids);
        free(c[i].labels);
        free(c[i].idx);
    }
    free(c);
}

/* Every batch until the end (epochs must be set), at most max. */
static copy *run(ckd_loader *l, size_t max, size_t *n_out)
{
    copy *c = calloc(max, sizeof *c);
    size_t n = 0;
    const ckd_batch *b;
    ckd_error err;
    int r;
    while (n < max && (r = ckd_loader_next(l, &b, &err)) == 0)
        c[n++] = take(b);
    cr_assert(n == max || r == 1, "loader failed: %s", err.msg);
    *n_out = n;
    return c;
}

static void same_batches(const copy *a, const copy *b, size_t n, int S, int T, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(a[i].n, b[i].n, "%s: batch %zu size", what, i);
        cr_assert(a[i].epoch == b[i].epoch && a[i].batch == b[i].batch, "%s: batch %zu", what, i);
        size_t m = (size_t)a[i].n;
        cr_assert_arr_eq(a[i].idx, b[i].idx, m * sizeof(int64_t), "%s: batch %zu indices", what, i);
        cr_assert_arr_eq(a[i].labels, b[i].labels, m * sizeof(int32_t), "%s: batch %zu labels", what, i);
        cr_assert_arr_eq(a[i].px, b[i].px, m * 3 * (size_t)S * (size_t)S * sizeof(float),
                         "%s: batch %zu pixels", what, i);
        cr_assert_eq(!a[i].ids, !b[i].ids);
        if (a[i].ids)
            cr_assert_arr_eq(a[i].ids, b[i].ids, m * (size_t)T * sizeof(int32_t),
                             "%s: batch %zu ids", what, i);
    }
}

static void train_opts(ckd_loader_opts *o, const ckd_tokenizer *tok)
{
    ckd_loader_opts_init(o);
    o->batch_size = 32;
    o->image_size = 32;
    o->seed = 1234;
    o->epochs = 2;
    o->hflip = 1;
    o->scale_lo = 0.5f; /* a wider range than CLIP-KD's, so crops differ visibly */
    o->tokenizer = tok;
    o->context_len = 16;
}

Test(data_loader, same_batches_whatever_the_threads)
{
    ckd_tokenizer *tok = tokenizer();
    ckd_dataset *ds = fmnist(300);
    ckd_loader_opts o;
    train_opts(&o, tok);
    const int threads[4] = {0, 1, 2, 3}, prefetch[4] = {0, 2, 2, 8};
    copy *ref = NULL;
    size_t n_ref = 0;
    for (int k = 0; k < 4; k++) {
        o.threads = threads[k];
        o.prefetch = prefetch[k];
        ckd_loader *l = loader(ds, &o);
        cr_assert_eq(ckd_loader_batches_per_epoch(l), 10);
        size_t n;
        copy *c = run(l, 100, &n);
        cr_assert_eq(n, 20);
        cr_assert_eq(c[9].n, 300 - 9 * 32);
        cr_assert(c[10].epoch == 1 && c[10].batch == 0);
        if (!ref) {
            ref = c;
            n_ref = n;
        } else {
            char what[64];
            snprintf(what, sizeof what, "%d threads vs none", threads[k]);
            same_batches(ref, c, n, 32, 16, what);
            free_copies(c, n);
        }
        const ckd_batch *b;
        ckd_error err;
        cr_assert_eq(ckd_loader_next(l, &b, &err), 1); /* stays at the end */
        cr_assert_null(b);
        ckd_loader_free(l);
    }
    /* A different seed gives different batches. */
    o.seed = 99;
    ckd_loader *l = loader(ds, &o);
    size_t n;
    copy *c = run(l, 1, &n);
    cr_assert(memcmp(c[0].idx, ref[0].idx, 32 * sizeof(int64_t)) != 0);
    free_copies(c, n);
    ckd_loader_free(l);
    free_copies(ref, n_ref);
    ckd_dataset_close(ds);
    ckd_tokenizer_free(tok);
}

Test(data_loader, resume_from_a_cursor)
{
    ckd_tokenizer *tok = tokenizer();
    ckd_dataset *ds = fmnist(300);
    ckd_loader_opts o;
    train_opts(&o, tok);
    o.threads = 2;
    ckd_loader *l = loader(ds, &o);
    size_t n_ref;
    copy *ref = run(l, 100, &n_ref);
    ckd_loader_free(l);

    /* Stop after 13 batches, as a checkpoint would, and note the cursor. */
    l = loader(ds, &o);
    size_t n;
    copy *first = run(l, 13, &n);
    ckd_loader_cursor cur = ckd_loader_tell(l);
    cr_assert(cur.epoch == 1 && cur.batch == 3, "cursor %lld/%lld", (long long)cur.epoch,
              (long long)cur.batch);
    free_copies(first, n);
    ckd_loader_free(l);

    /* A new loader (another thread count) picks up exactly there. */
    o.threads = 1;
    l = loader(ds, &o);
    ckd_error err;
    cr_assert_eq(ckd_loader_seek(l, cur, &err), 0, "%s", err.msg);
    copy *rest = run(l, 100, &n);
    cr_assert_eq(n, n_ref - 13);
    same_batches(ref + 13, rest, n, 32, 16, "resumed");
    free_copies(rest, n);

    /* Seeking back to the start replays everything, even mid-run. */
    cr_assert_eq(ckd_loader_seek(l, (ckd_loader_cursor){0, 0}, &err), 0);
    rest = run(l, 2, &n);
    same_batches(ref, rest, 2, 32, 16, "after seek");
    free_copies(rest, n);
    cr_assert_eq(ckd_loader_seek(l, (ckd_loader_cursor){0, 10}, &err), 0, "end of epoch = next");
    rest = run(l, 1, &n);
    same_batches(ref + 10, rest, 1, 32, 16, "seek to batch = bpe");
    free_copies(rest, n);
    cr_assert_eq(ckd_loader_seek(l, (ckd_loader_cursor){0, 11}, &err), -1);
    tdu_assert_has(err.msg, "batch 11", "10 batches an epoch");
    ckd_loader_free(l);
    free_copies(ref, n_ref);
    ckd_dataset_close(ds);
    ckd_tokenizer_free(tok);
}

Test(data_loader, permutations)
{
    enum { N = 1000 };
    int64_t *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b), *c = malloc(N * sizeof *c);
    ckd_error err;
    cr_assert_eq(ckd_loader_permutation(7, 0, N, a, &err), 0);
    cr_assert_eq(ckd_loader_permutation(7, 0, N, b, &err), 0);
    cr_assert_arr_eq(a, b, N * sizeof *a);
    cr_assert_eq(ckd_loader_permutation(7, 1, N, b, &err), 0);
    cr_assert_eq(ckd_loader_permutation(8, 0, N, c, &err), 0);
    cr_assert(memcmp(a, b, N * sizeof *a) && memcmp(a, c, N * sizeof *a));
    char seen[N] = {0};
    for (int i = 0; i < N; i++) {
        cr_assert(a[i] >= 0 && a[i] < N && !seen[a[i]]);
        seen[a[i]] = 1;
    }
    free(a);
    free(b);
    free(c);
}

Test(data_loader, batching_drop_last_and_order)
{
    ckd_dataset *ds = fmnist(10);
    ckd_loader_opts o;
    ckd_loader_opts_init(&o);
    o.batch_size = 4;
    o.image_size = 8;
    o.epochs = 1;
    o.shuffle = 0;
    ckd_loader *l = loader(ds, &o);
    size_t n;
    copy *c = run(l, 10, &n);
    cr_assert_eq(n, 3);
    cr_assert_eq(c[2].n, 2);
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < c[i].n; k++)
            cr_assert_eq(c[i].idx[k], i * 4 + k, "unshuffled order");
    cr_assert_null(c[0].ids, "no tokenizer: no ids");
    free_copies(c, n);
    ckd_loader_free(l);

    o.drop_last = 1;
    l = loader(ds, &o);
    cr_assert_eq(ckd_loader_batches_per_epoch(l), 2);
    c = run(l, 10, &n);
    cr_assert_eq(n, 2);
    free_copies(c, n);
    ckd_loader_free(l);

    ckd_error err;
    o.batch_size = 11;
    cr_assert_null(ckd_loader_new(ds, &o, &err));
    tdu_assert_has(err.msg, "fashion-mnist test", "10 samples", "fewer than one batch");
    o.batch_size = 0;
    cr_assert_null(ckd_loader_new(ds, &o, &err));
    tdu_assert_has(err.msg, "batch_size 0");
    o.batch_size = 4;
    o.scale_lo = 0;
    cr_assert_null(ckd_loader_new(ds, &o, &err));
    tdu_assert_has(err.msg, "crop scale range");
    ckd_dataset_close(ds);
}

Test(data_loader, eval_pixels_labels_and_captions)
{
    ckd_tokenizer *tok = tokenizer();
    ckd_dataset *ds = fmnist(20);
    ckd_loader_opts o;
    ckd_loader_opts_init(&o);
    o.batch_size = 20;
    o.image_size = 28; /* no resize: the pixels can be checked by hand */
    o.augment = 0;
    o.shuffle = 0;
    o.epochs = 1;
    o.tokenizer = tok;
    o.caption = 2;
    o.threads = 2;
    ckd_loader *l = loader(ds, &o);
    const ckd_batch *b;
    ckd_error err;
    cr_assert_eq(ckd_loader_next(l, &b, &err), 0, "%s", err.msg);
    cr_assert_eq(b->n, 20);
    ckd_idx im, lb;
    cr_assert_eq(ckd_idx_load(tdu_path(tdu_fmnist_dir(), "t10k-images-idx3-ubyte.gz"), 3, &im, &err), 0);
    cr_assert_eq(ckd_idx_load(tdu_path(tdu_fmnist_dir(), "t10k-labels-idx1-ubyte.gz"), 1, &lb, &err), 0);
    for (int i = 0; i < 20; i++) {
        cr_assert_eq(b->labels[i], lb.data[i]);
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < 784; p += 37) {
                float want = ((float)im.data[i * 784 + p] / 255.0f - o.mean[c]) / o.std[c];
                cr_assert_float_eq(b->pixel_values[((size_t)i * 3 + (size_t)c) * 784 + (size_t)p],
                                   want, 1e-5, "sample %d channel %d pixel %d", i, c, p);
            }
        ckd_sample s;
        cr_assert_eq(ckd_dataset_get(ds, (size_t)i, &s, &err), 0);
        int32_t ids[77];
        cr_assert_eq(ckd_tokenize(tok, s.captions[2], ids, 77, 0, NULL, NULL, &err), 0);
        cr_assert_arr_eq(b->input_ids + i * 77, ids, sizeof ids, "sample %d: caption 2", i);
        ckd_sample_free(&s);
    }
    ckd_idx_free(&im);
    ckd_idx_free(&lb);
    ckd_loader_free(l);
    ckd_dataset_close(ds);
    ckd_tokenizer_free(tok);
}

Test(data_loader, flips_and_caption_draws)
{
    ckd_tokenizer *tok = tokenizer();
    ckd_dataset *ds = fmnist(64);
    ckd_loader_opts o;
    ckd_loader_opts_init(&o);
    o.batch_size = 64;
    o.image_size = 28;
    o.shuffle = 0;
    o.epochs = 3;
    o.scale_lo = o.scale_hi = 1.0f; /* the whole image, unscaled: only the flip acts */
    o.ratio_lo = o.ratio_hi = 1.0f;
    o.hflip = 1;
    o.tokenizer = tok;
    ckd_loader *l = loader(ds, &o);
    size_t n;
    copy *c = run(l, 3, &n);
    o.augment = 0;
    o.tokenizer = NULL;
    o.epochs = 1;
    ckd_loader *plain = loader(ds, &o);
    copy *p = run(plain, 1, &n);
    int same = 0, mirrored = 0, caption_changed = 0;
    for (int i = 0; i < 64; i++) {
        const float *a = c[0].px + (size_t)i * 3 * 784, *q = p[0].px + (size_t)i * 3 * 784;
        int is_same = !memcmp(a, q, 3 * 784 * sizeof *a), is_mirror = 1;
        for (int y = 0; y < 28 && is_mirror; y++)
            for (int x = 0; x < 28; x++)
                if (a[y * 28 + x] != q[y * 28 + 27 - x]) {
                    is_mirror = 0;
                    break;
                }
        cr_assert(is_same || is_mirror, "sample %d is neither the image nor its mirror", i);
        same += is_same;
        mirrored += is_mirror && !is_same;
        caption_changed += memcmp(c[0].ids + i * 77, c[1].ids + i * 77, 77 * sizeof(int32_t)) ||
                           memcmp(c[0].ids + i * 77, c[2].ids + i * 77, 77 * sizeof(int32_t));
    }
    cr_assert(same > 10 && mirrored > 10, "%d kept, %d mirrored of 64", same, mirrored);
    cr_assert_gt(caption_changed, 20, "the caption drawn changes with the epoch");
    free_copies(c, 3);
    free_copies(p, 1);
    ckd_loader_free(l);
    ckd_loader_free(plain);
    ckd_dataset_close(ds);
    ckd_tokenizer_free(tok);
}

/* A table of 8 images of which `bad` (a bitmask) are missing or corrupt. */
static ckd_dataset *table_with_bad_rows(const char *dir, unsigned bad)
{
    char text[1024] = "filepath\ttitle\n";
    for (int i = 0; i < 8; i++) {
        char name[32];
        snprintf(name, sizeof name, "img%d.png", i);
        if (!(bad >> i & 1))
            tdu_write_png(tdu_path(dir, name), 6, 5, (unsigned)i);
        else if (i % 2)
            tdu_write_str(tdu_path(dir, name), "\x89PNG\r\n\x1a\n broken");
        else
            remove(tdu_path(dir, name));
        size_t k = strlen(text);
        snprintf(text + k, sizeof text - k, "%s\tpicture %d\n", name, i);
    }
    tdu_write_str(tdu_path(dir, "t.tsv"), text);
    ckd_error err;
    ckd_dataset *ds = tdu_open("{\"reader\": \"csv\", \"path\": \"t.tsv\"}", dir, &err);
    cr_assert_not_null(ds, "%s", err.msg);
    return ds;
}

Test(data_loader, undecodable_images_are_counted_or_fatal)
{
    char *dir = tdu_tmpdir();
    ckd_dataset *ds = table_with_bad_rows(dir, 1u << 2 | 1u << 5);
    ckd_loader_opts o;
    ckd_loader_opts_init(&o);
    o.batch_size = 4;
    o.image_size = 8;
    o.shuffle = 0;
    o.epochs = 1;
    o.threads = 2;
    ckd_loader *l = loader(ds, &o);
    size_t n;
    copy *c = run(l, 10, &n);
    cr_assert_eq(n, 2);
    cr_assert(c[0].n == 3 && c[1].n == 3);
    cr_assert(c[0].idx[2] == 3 && c[1].idx[1] == 6, "the bad rows are left out, order kept");
    cr_assert_eq(c[0].labels[0], -1);
    cr_assert_eq(ckd_loader_skipped(l), 2);
    char msg[CKD_ERROR_MAX];
    ckd_loader_last_error(l, msg, sizeof msg);
    tdu_assert_has(msg, "t.tsv:7:", "img5.png");
    free_copies(c, n);
    ckd_loader_free(l);

    o.on_error = CKD_LOADER_FAIL;
    l = loader(ds, &o);
    const ckd_batch *b;
    ckd_error err;
    cr_assert_eq(ckd_loader_next(l, &b, &err), -1);
    tdu_assert_has(err.msg, "t.tsv:4:", "img2.png");
    cr_assert_eq(ckd_loader_next(l, &b, &err), -1, "a failure repeats");
    ckd_loader_free(l);
    ckd_dataset_close(ds);

    /* A batch that loses every sample is passed over. */
    ds = table_with_bad_rows(dir, 0xF0);
    o.on_error = CKD_LOADER_SKIP;
    o.threads = 0;
    l = loader(ds, &o);
    c = run(l, 10, &n);
    cr_assert_eq(n, 1);
    cr_assert_eq(ckd_loader_skipped(l), 4);
    free_copies(c, n);
    ckd_loader_free(l);
    ckd_dataset_close(ds);
    tdu_rmrf(dir);
    free(dir);
}

Test(data_loader, ready_made_tensors)
{
    char *dir = tdu_tmpdir();
    float px[5 * 3 * 4 * 4];
    int32_t ids[5 * 6];
    for (int i = 0; i < 5 * 48; i++)
        px[i] = (float)i;
    for (int i = 0; i < 30; i++)
        ids[i] = i;
    ckd_st_writer *w = ckd_st_writer_new();
    ckd_error err;
    int64_t ps[4] = {5, 3, 4, 4}, is[2] = {5, 6};
    cr_assert_eq(ckd_st_writer_add(w, "pixel_values", CKD_DT_F32, 4, ps, px, &err), 0);
    cr_assert_eq(ckd_st_writer_add(w, "input_ids", CKD_DT_I32, 2, is, ids, &err), 0);
    cr_assert_eq(ckd_st_writer_save(w, tdu_path(dir, "b.safetensors"), &err), 0);
    ckd_st_writer_free(w);
    ckd_dataset *ds = tdu_open("{\"reader\": \"tensors\", \"path\": \"b.safetensors\"}", dir, &err);
    cr_assert_not_null(ds, "%s", err.msg);
    ckd_loader_opts o;
    ckd_loader_opts_init(&o);
    o.batch_size = 5;
    o.image_size = 4;
    o.context_len = 6;
    o.seed = 3;
    ckd_loader *l = loader(ds, &o);
    const ckd_batch *b;
    cr_assert_eq(ckd_loader_next(l, &b, &err), 0, "%s", err.msg);
    for (int k = 0; k < 5; k++) {
        int64_t i = b->indices[k];
        cr_assert_arr_eq(b->pixel_values + k * 48, px + i * 48, 48 * sizeof(float));
        cr_assert_arr_eq(b->input_ids + k * 6, ids + i * 6, 6 * sizeof(int32_t));
    }
    ckd_loader_free(l);
    o.image_size = 8;
    l = loader(ds, &o);
    cr_assert_eq(ckd_loader_next(l, &b, &err), -1);
    tdu_assert_has(err.msg, "b.safetensors", "ready-made pixels of 4x4", "8x8");
    ckd_loader_free(l);
    ckd_dataset_close(ds);
    tdu_rmrf(dir);
    free(dir);
}

/* Replayed views (teacher.views): each sample has `views` fixed crops,
 * drawn from (view, index) whatever the epoch and the seed; each epoch picks
 * one by the seed. A loader fixed on view v (how the teacher-embedding cache
 * is computed) gives exactly the pixels training gives for view v. */
Test(data_loader, replayed_views)
{
    enum { N = 48, E = 8, V = 3, PX = 3 * 28 * 28 };
    ckd_dataset *ds = fmnist(N);
    ckd_loader_opts o;
    ckd_loader_opts_init(&o);
    o.batch_size = N;
    o.image_size = 28;
    o.shuffle = 0;
    o.epochs = E;
    o.seed = 7;
    o.scale_lo = 0.3f; /* crops that differ visibly */
    o.hflip = 1;
    o.views = V;
    static float seen[V][N][PX];
    int have[V][N] = {{0}}, distinct_views = 0;
    ckd_loader *l = loader(ds, &o);
    const ckd_batch *b;
    ckd_error err;
    for (int e = 0; e < E; e++) {
        cr_assert_eq(ckd_loader_next(l, &b, &err), 0, "%s", err.msg);
        cr_assert_eq(b->n, N);
        for (int i = 0; i < N; i++) {
            int v = b->views[i];
            cr_assert(v >= 0 && v < V, "epoch %d sample %d: view %d", e, i, v);
            const float *px = b->pixel_values + (size_t)i * PX;
            if (have[v][i])
                cr_assert_arr_eq(px, seen[v][i], PX * sizeof(float), "epoch %d: view %d of sample %d changed", e, v,
                                 i);
            else
                memcpy(seen[v][i], px, PX * sizeof(float));
            have[v][i] = 1;
        }
    }
    ckd_loader_free(l);
    for (int i = 0; i < N; i++) {
        distinct_views += have[0][i] + have[1][i] + have[2][i] > 1;
        if (have[0][i] && have[1][i])
            cr_expect(memcmp(seen[0][i], seen[1][i], PX * sizeof(float)), "views 0 and 1 of sample %d are alike", i);
    }
    cr_expect_gt(distinct_views, N * 3 / 4, "%d of %d samples were shown more than one view in %d epochs",
                 distinct_views, N, E);
    /* Fixed on view 1, under another seed: the same images. */
    o.view = 1;
    o.seed = 99;
    o.epochs = 1;
    l = loader(ds, &o);
    cr_assert_eq(ckd_loader_next(l, &b, &err), 0, "%s", err.msg);
    for (int i = 0; i < N; i++) {
        cr_expect_eq(b->views[i], 1);
        if (have[1][i])
            cr_expect_arr_eq(b->pixel_values + (size_t)i * PX, seen[1][i], PX * sizeof(float),
                             "the cache's view 1 of sample %d is not training's", i);
    }
    ckd_loader_free(l);
    /* Without views: a fresh crop each epoch, and no view numbers. */
    o.views = 0;
    o.view = -1;
    o.epochs = 2;
    l = loader(ds, &o);
    size_t n;
    copy *c = run(l, 2, &n);
    int changed = 0;
    for (int i = 0; i < N; i++)
        changed += memcmp(c[0].px + (size_t)i * PX, c[1].px + (size_t)i * PX, PX * sizeof(float)) != 0;
    cr_expect_gt(changed, N * 3 / 4, "only %d of %d crops changed between epochs", changed, N);
    free_copies(c, 2);
    ckd_loader_free(l);
    /* Options out of range. */
    struct {
        int views, view, augment;
        const char *want;
    } bad[] = {{CKD_LOADER_MAX_VIEWS + 1, -1, 1, "views 65, expected 0 to 64"},
               {2, -1, 0, "2 replayed views without augmentation"},
               {3, 3, 1, "view 3, expected -1 or 0 to 2"}};
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        o.views = bad[k].views, o.view = bad[k].view, o.augment = bad[k].augment;
        cr_expect_null(ckd_loader_new(ds, &o, &err));
        cr_expect(strstr(err.msg, bad[k].want), "%s", err.msg);
    }
    ckd_dataset_close(ds);
}
