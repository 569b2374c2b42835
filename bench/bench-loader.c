/* bench-loader: images per second through the data loader — read, decode,
 * augment (random resized crop), normalise, tokenise one caption, batch —
 * for 224-px JPEGs (200 made in a temporary folder, read through the csv
 * reader) and for Fashion-MNIST's test split resized to 32 px.
 *
 * Prefetch threads: $CLIPKD_THREADS, else 2. The dataset is read twice per
 * measurement (two epochs) after one warm-up batch. */
#include "config.h"

#define _XOPEN_SOURCE 700

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jpeglib.h>

#include "clipkd/loader.h"

#define N_JPEG 200

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A 224 x 224 picture with structure JPEG has to work at (gradients and a
 * checkerboard), different for each k. */
static int write_jpeg(const char *path, int k)
{
    enum { S = 224 };
    static unsigned char px[S * S * 3];
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            unsigned char *p = px + (y * S + x) * 3;
            int check = ((x / (8 + k % 7)) + (y / (8 + k % 5))) & 1;
            p[0] = (unsigned char)(x + k * 13);
            p[1] = (unsigned char)(y * 2 + k);
            p[2] = (unsigned char)(check ? 220 : 30);
        }
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = S;
    c.image_height = S;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 90, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = px + c.next_scanline * S * 3;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return fclose(f);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb, (void)flag, (void)f;
    return remove(p);
}

/* Samples per second over `epochs` epochs, after one warm-up batch. */
static double measure(const ckd_dataset *ds, const ckd_loader_opts *o, ckd_error *err)
{
    ckd_loader *l = ckd_loader_new(ds, o, err);
    if (!l)
        return -1;
    const ckd_batch *b;
    if (ckd_loader_next(l, &b, err) != 0) {
        ckd_loader_free(l);
        return -1;
    }
    long n = 0;
    double t0 = now_s();
    int r;
    while ((r = ckd_loader_next(l, &b, err)) == 0)
        n += b->n;
    double dt = now_s() - t0;
    ckd_loader_free(l);
    return r < 0 ? -1 : (double)n / dt;
}

int main(void)
{
    const char *env = getenv("CLIPKD_THREADS");
    int threads = env && atoi(env) > 0 ? atoi(env) : 2;
    ckd_error err;
    char tok_path[4096];
    snprintf(tok_path, sizeof tok_path, "%s/models/clip/%s", CKD_SRCDIR, CKD_TOKENIZER_BPE_FILE);
    ckd_tokenizer *tok = ckd_tokenizer_load_bpe_gz(tok_path, &err);
    if (!tok) {
        fprintf(stderr, "bench-loader: %s\n", err.msg);
        return 1;
    }
    ckd_loader_opts o;
    ckd_loader_opts_init(&o);
    o.threads = threads;
    o.prefetch = threads + 2;
    o.tokenizer = tok;
    o.seed = 1;

    /* 224-px JPEGs through the csv reader. */
    const char *tmp = getenv("TMPDIR");
    char dir[512], path[1024];
    snprintf(dir, sizeof dir, "%s/ckd-bench-loader-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("bench-loader: mkdtemp");
        return 1;
    }
    snprintf(path, sizeof path, "%s/images.tsv", dir);
    FILE *t = fopen(path, "w");
    int ok = t != NULL && fprintf(t, "filepath\ttitle\n") > 0;
    for (int k = 0; ok && k < N_JPEG; k++) {
        char img[1024];
        snprintf(img, sizeof img, "%s/%03d.jpg", dir, k);
        ok = write_jpeg(img, k) == 0 &&
             fprintf(t, "%03d.jpg\ta synthetic picture number %d with stripes\n", k, k) > 0;
    }
    if (t && fclose(t) != 0)
        ok = 0;
    double jpeg_rate = -1, fm_rate = -1;
    if (ok) {
        json_t *spec = json_pack("{s:s, s:s}", "reader", "csv", "path", path);
        ckd_dataset *ds = ckd_dataset_open(spec, NULL, &err);
        json_decref(spec);
        o.batch_size = 50;
        o.image_size = 224;
        o.epochs = 2;
        if (ds)
            jpeg_rate = measure(ds, &o, &err);
        ckd_dataset_close(ds);
    } else {
        snprintf(err.msg, sizeof err.msg, "cannot write the JPEGs in %s", dir);
    }
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    if (jpeg_rate < 0) {
        fprintf(stderr, "bench-loader: jpeg224: %s\n", err.msg);
        ckd_tokenizer_free(tok);
        return 1;
    }
    printf("loader: jpeg224 %.0f img/s\n", jpeg_rate);

    /* Fashion-MNIST, the default data, at 32 px. */
    /* Debian's copy read in place: a benchmark should not fill the cache. */
    json_t *spec = json_pack("{s:s, s:s, s:s}", "reader", "fashion-mnist", "split", "test", "dir",
                             "/usr/share/datasets/fashion-mnist");
    ckd_dataset *ds = ckd_dataset_open(spec, NULL, &err);
    json_decref(spec);
    o.batch_size = 256;
    o.image_size = 32;
    o.epochs = 2;
    if (ds)
        fm_rate = measure(ds, &o, &err);
    ckd_dataset_close(ds);
    ckd_tokenizer_free(tok);
    if (fm_rate < 0) {
        fprintf(stderr, "bench-loader: fashion-mnist: %s\n", err.msg);
        return 1;
    }
    printf("loader: fashion-mnist %.0f img/s\n", fm_rate);
    printf("(%d prefetch threads; decode, random resized crop, normalise, tokenise, batch)\n",
           threads);
    return 0;
}
