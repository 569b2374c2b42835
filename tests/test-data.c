/* Tests for clipkd/data.h: brace expansion, IDX files, Fashion-MNIST (on
 * Debian's installed files) and reader specs. The readers are tested in
 * test-data-readers.c, the loader in test-data-loader.c. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "clipkd/data.h"
#include "data-test.h"
#include "limits_util.h"

/* ---- brace expansion ---------------------------------------------------------- */

static void expect_expansion(const char *pattern, const char *const *want, size_t n_want)
{
    char **out;
    size_t n;
    ckd_error err;
    cr_assert_eq(ckd_brace_expand(pattern, &out, &n, &err), 0, "%s: %s", pattern, err.msg);
    cr_assert_eq(n, n_want, "%s: %zu names, expected %zu", pattern, n, n_want);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(out[i], want[i], "%s: name %zu", pattern, i);
    ckd_strings_free(out, n);
}

Test(data_brace, ranges_lists_and_literals)
{
    expect_expansion("s-{0000..0002}.tar",
                     (const char *[]){"s-0000.tar", "s-0001.tar", "s-0002.tar"}, 3);
    expect_expansion("{a,b}-{1..2}", (const char *[]){"a-1", "a-2", "b-1", "b-2"}, 4);
    expect_expansion("x{3..1}", (const char *[]){"x3", "x2", "x1"}, 3);
    expect_expansion("{8..10}", (const char *[]){"8", "9", "10"}, 3);
    expect_expansion("plain.tar", (const char *[]){"plain.tar"}, 1);
    expect_expansion("a{b}c", (const char *[]){"a{b}c"}, 1);
    expect_expansion("open{1..2", (const char *[]){"open{1..2"}, 1);
    expect_expansion("{,x}y", (const char *[]){"y", "xy"}, 2);
}

Test(data_brace, refuses_nesting_and_huge_lists)
{
    char **out;
    size_t n;
    ckd_error err;
    cr_assert_eq(ckd_brace_expand("a{b,{c,d}}", &out, &n, &err), -1);
    tdu_assert_has(err.msg, "nested", "offset 4");
    cr_assert_eq(ckd_brace_expand("{0..999}{0..999}{0..9}", &out, &n, &err), -1);
    tdu_assert_has(err.msg, "more than");
}

/* ---- IDX ---------------------------------------------------------------------- */

static const uint32_t small_dims[3] = {3, 2, 2};
static const uint8_t small_px[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};

Test(data_idx, reads_gzip_and_plain)
{
    char *dir = tdu_tmpdir();
    size_t n;
    uint8_t *b = tdu_idx(3, small_dims, small_px, &n);
    tdu_write_gz(tdu_path(dir, "a.gz"), b, n);
    tdu_write(tdu_path(dir, "a"), b, n);
    for (int gz = 0; gz < 2; gz++) {
        ckd_idx idx;
        ckd_error err;
        cr_assert_eq(ckd_idx_load(tdu_path(dir, gz ? "a.gz" : "a"), 3, &idx, &err), 0, "%s",
                     err.msg);
        cr_assert_eq(idx.ndim, 3);
        cr_assert_eq(idx.dims[0], 3);
        cr_assert_eq(idx.nbytes, 12);
        cr_assert_arr_eq(idx.data, small_px, 12);
        ckd_idx_free(&idx);
    }
    free(b);
    tdu_rmrf(dir);
    free(dir);
}

/* Loads path expecting failure; the message must name the file. */
static void idx_fails(const char *path, int ndim, const char *a, const char *b)
{
    ckd_idx idx;
    ckd_error err;
    cr_assert_eq(ckd_idx_load(path, ndim, &idx, &err), -1, "%s should not load", path);
    cr_assert_null(idx.data);
    tdu_assert_has(err.msg, path, a, b);
}

Test(data_idx, bad_files)
{
    char *dir = tdu_tmpdir();
    size_t n;
    uint8_t *b = tdu_idx(3, small_dims, small_px, &n);

    /* Wrong magic: a label file read as images. */
    tdu_write(tdu_path(dir, "magic"), b, n);
    idx_fails(tdu_path(dir, "magic"), 1, "offset 0", "0x00000801");
    b[2] = 0x0D; /* floats */
    tdu_write_gz(tdu_path(dir, "float.gz"), b, n);
    idx_fails(tdu_path(dir, "float.gz"), 3, "offset 0", "got 0x00000d03");
    b[2] = 0x08;

    /* Truncated data, plain and gzip'd. */
    tdu_write(tdu_path(dir, "short"), b, n - 5);
    idx_fails(tdu_path(dir, "short"), 3, "truncated at offset 23", "3 x 2 x 2 = 12 bytes");
    tdu_write_gz(tdu_path(dir, "short.gz"), b, n - 5);
    idx_fails(tdu_path(dir, "short.gz"), 3, "truncated at offset 23", "from offset 16");

    /* A header cut short. */
    tdu_write(tdu_path(dir, "head"), b, 10);
    idx_fails(tdu_path(dir, "head"), 3, "truncated at offset 10", "header needs 16 bytes");

    /* Bytes past the data. */
    uint8_t *longer = malloc(n + 3);
    memcpy(longer, b, n);
    memset(longer + n, 7, 3);
    tdu_write(tdu_path(dir, "long"), longer, n + 3);
    idx_fails(tdu_path(dir, "long"), 3, "offset 28", "unexpected bytes");
    free(longer);

    /* A gzip stream cut in the middle. */
    size_t gn;
    tdu_write_gz(tdu_path(dir, "whole.gz"), b, n);
    uint8_t *g = tdu_read(tdu_path(dir, "whole.gz"), &gn);
    tdu_write(tdu_path(dir, "cut.gz"), g, gn - 12);
    idx_fails(tdu_path(dir, "cut.gz"), 3, "truncated", "zlib");
    free(g);

    /* Dimensions too large for the data to be real. */
    const uint8_t huge[16] = {0, 0, 8, 3, 0, 0, 0xEA, 0x60, 0, 0, 0xEA, 0x60, 0, 0, 0xEA, 0x60};
    tdu_write(tdu_path(dir, "huge"), huge, sizeof huge);
    idx_fails(tdu_path(dir, "huge"), 3, "offset 12", "corrupt");

    idx_fails(tdu_path(dir, "missing"), 3, "cannot open", "missing");
    free(b);
    tdu_rmrf(dir);
    free(dir);
}

/* ---- Fashion-MNIST --------------------------------------------------------------- */

/* A 28x28 image with a filled w x h box of value v in its middle. */
static void box(uint8_t *im, int w, int h, uint8_t v)
{
    memset(im, 0, 28 * 28);
    for (int y = 14 - h / 2; y < 14 - h / 2 + h; y++)
        for (int x = 14 - w / 2; x < 14 - w / 2 + w; x++)
            im[y * 28 + x] = v;
}

Test(data_fmnist, attributes_and_captions)
{
    uint8_t im[28 * 28];
    ckd_gray_attrs a;
    box(im, 20, 10, 90); /* dark, wide, dense */
    im[0] = 31;          /* below the ink threshold: ignored */
    ckd_gray_attributes(im, 28, 28, &a);
    cr_assert_float_eq(a.brightness, 90.0f, 1e-4);
    cr_assert_float_eq(a.aspect, 2.0f, 1e-6);
    cr_assert_float_eq(a.density, 1.0f, 1e-6);
    cr_assert(a.bin[0] == 0 && a.bin[1] == 2 && a.bin[2] == 2);
    char cap[256];
    for (int k = 0; k < CKD_FMNIST_MAX_CAPTIONS; k++) {
        int n = ckd_fashion_mnist_caption(&a, 2, 0, 17, k, cap, sizeof cap);
        cr_assert_eq(n, (int)strlen(cap));
        tdu_assert_has(cap, "dark, wide, dense pullover");
        for (int j = 0; j < k; j++) {
            char other[256];
            ckd_fashion_mnist_caption(&a, 2, 0, 17, j, other, sizeof other);
            cr_assert_str_neq(cap, other, "captions %d and %d of one image agree: %s", j, k, cap);
        }
    }
    /* Every other row of a box: half the box is ink, which is sparse. */
    box(im, 10, 20, 250);
    for (int y = 0; y < 28; y += 2)
        memset(im + y * 28, 0, 28);
    ckd_gray_attributes(im, 28, 28, &a);
    cr_assert(a.bin[0] == 2 && a.bin[1] == 0 && a.bin[2] == 0);
    ckd_fashion_mnist_caption(&a, 7, 0, 3, 0, cap, sizeof cap);
    tdu_assert_has(cap, "bright, narrow, sparse sneaker");
    /* Middle bins give no word; the article follows the first word. */
    a.bin[0] = a.bin[1] = a.bin[2] = 1;
    ckd_fashion_mnist_caption(&a, 9, 0, 3, 0, cap, sizeof cap);
    tdu_assert_has(cap, "ankle boot");
    cr_assert(!strstr(cap, ", "), "no attribute words expected: %s", cap);
    cr_assert(!strstr(cap, "a ankle"), "wrong article: %s", cap);
    /* Truncation: snprintf's contract. */
    a.bin[0] = 2;
    int full = ckd_fashion_mnist_caption(&a, 9, 0, 3, 0, cap, sizeof cap);
    char tiny[8];
    cr_assert_eq(ckd_fashion_mnist_caption(&a, 9, 0, 3, 0, tiny, sizeof tiny), full);
    cr_assert_eq(strlen(tiny), 7);
    cr_assert_eq(ckd_fashion_mnist_caption(&a, 10, 0, 3, 0, cap, sizeof cap), -1);
    memset(im, 0, sizeof im); /* no ink: no words */
    ckd_gray_attributes(im, 28, 28, &a);
    cr_assert(a.bin[0] == 1 && a.bin[1] == 1 && a.bin[2] == 1);
}

Test(data_fmnist, artifacts_name_debian_and_upstream)
{
    for (int f = CKD_FMNIST_TRAIN_IMAGES; f <= CKD_FMNIST_TEST_LABELS; f++) {
        size_t n;
        const ckd_artifact *a = ckd_fashion_mnist_artifacts((ckd_fmnist_file)f, &n);
        cr_assert_eq(n, 2);
        cr_assert(!strncmp(a[0].urls[0], "file:///usr/share/datasets/fashion-mnist/", 41));
        cr_assert(!strncmp(a[1].urls[0], "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", 59));
        /* The file names agree, and Debian's copy is exactly the gzip FNAME
         * field (name + NUL) shorter than upstream's. */
        const char *deb = strrchr(a[0].urls[0], '/') + 1, *up = strrchr(a[1].urls[0], '/') + 1;
        cr_assert_str_eq(deb, up);
        cr_assert_eq(a[1].size - a[0].size, (int64_t)(strlen(deb) - 3 + 1));
        cr_assert(ckd_sha256_is_hex(a[0].sha256) && ckd_sha256_is_hex(a[1].sha256));
    }
    cr_assert_null(ckd_fashion_mnist_artifacts((ckd_fmnist_file)7, NULL));
}

Test(data_fmnist, debian_files_match_the_artifacts)
{
    const char *dir = tdu_fmnist_dir();
    /* The two label files are small enough to hash in a test. */
    for (int f = CKD_FMNIST_TRAIN_LABELS; f <= CKD_FMNIST_TEST_LABELS; f += 2) {
        const ckd_artifact *a = ckd_fashion_mnist_artifacts((ckd_fmnist_file)f, NULL);
        char hex[65];
        int64_t size;
        ckd_error err;
        const char *path = tdu_path(dir, strrchr(a[0].urls[0], '/') + 1);
        cr_assert_eq(ckd_sha256_file(path, hex, &size, &err), 0, "%s", err.msg);
        cr_assert_str_eq(hex, a[0].sha256, "%s", path);
        cr_assert_eq(size, a[0].size);
    }
}

static int has_word(const char *s, const char *w)
{
    return strstr(s, w) != NULL;
}

Test(data_fmnist, test_split_from_the_debian_folder)
{
    const char *dir = tdu_fmnist_dir();
    char spec[512];
    snprintf(spec, sizeof spec, "{\"reader\": \"fashion-mnist\", \"split\": \"test\", \"dir\": \"%s\"}",
             dir);
    ckd_error err;
    ckd_dataset *ds = tdu_open(spec, NULL, &err);
    cr_assert_not_null(ds, "%s", err.msg);
    cr_assert_str_eq(ckd_dataset_reader(ds), "fashion-mnist");
    cr_assert_eq(ckd_dataset_size(ds), 10000);
    cr_assert_eq(ckd_dataset_n_classes(ds), 10);
    cr_assert_str_eq(ckd_dataset_class_name(ds, 9), "ankle boot");
    cr_assert_null(ckd_dataset_class_name(ds, 10));
    cr_assert_geq(ckd_dataset_n_templates(ds), 4);
    cr_assert(strstr(ckd_dataset_template(ds, 0), "{}"));

    /* The first test labels are 9, 2, 1, 1, 6 (the IDX file, read directly). */
    ckd_idx labels;
    cr_assert_eq(ckd_idx_load(tdu_path(dir, "t10k-labels-idx1-ubyte.gz"), 1, &labels, &err), 0);
    int dark = 0, bright = 0, narrow = 0, wide = 0, sparse = 0, dense = 0;
    for (size_t i = 0; i < 200; i++) {
        ckd_sample s;
        cr_assert_eq(ckd_dataset_get(ds, i, &s, &err), 0, "%s", err.msg);
        cr_assert_eq(s.image.w, 28);
        cr_assert_eq(s.image.h, 28);
        cr_assert_eq(s.label, labels.data[i]);
        cr_assert_eq(s.n_captions, 5);
        const char *cls = ckd_dataset_class_name(ds, (size_t)s.label);
        for (size_t k = 0; k < s.n_captions; k++) {
            cr_assert(strstr(s.captions[k], cls), "caption \"%s\" lacks its class \"%s\"",
                      s.captions[k], cls);
            if (k)
                cr_assert_str_neq(s.captions[k], s.captions[k - 1]);
        }
        dark += has_word(s.captions[0], "dark,") || has_word(s.captions[0], "dark ");
        bright += has_word(s.captions[0], "bright");
        narrow += has_word(s.captions[0], "narrow");
        wide += has_word(s.captions[0], "wide");
        sparse += has_word(s.captions[0], "sparse");
        dense += has_word(s.captions[0], "dense");
        ckd_sample_free(&s);
    }
    cr_assert(labels.data[0] == 9 && labels.data[1] == 2);
    /* Every attribute word shows up: the captions say more than the class. */
    cr_assert(dark && bright && narrow && wide && sparse && dense,
              "attribute words: dark %d bright %d narrow %d wide %d sparse %d dense %d", dark,
              bright, narrow, wide, sparse, dense);
    ckd_idx_free(&labels);
    cr_assert_eq(ckd_dataset_get(ds, 10000, &(ckd_sample){0}, &err), -1);
    ckd_dataset_close(ds);
}

Test(data_fmnist, captions_follow_the_seed_and_count)
{
    const char *dir = tdu_fmnist_dir();
    char a[512], b[512];
    snprintf(a, sizeof a, "{\"reader\": \"fashion-mnist\", \"split\": \"test\", \"dir\": \"%s\", "
                          "\"captions\": 3, \"limit\": 10}", dir);
    snprintf(b, sizeof b, "{\"reader\": \"fashion-mnist\", \"split\": \"test\", \"dir\": \"%s\", "
                          "\"captions\": 3, \"caption_seed\": 5}", dir);
    ckd_error err;
    ckd_dataset *d1 = tdu_open(a, NULL, &err), *d2 = tdu_open(a, NULL, &err),
                *d3 = tdu_open(b, NULL, &err);
    cr_assert(d1 && d2 && d3, "%s", err.msg);
    cr_assert_eq(ckd_dataset_size(d1), 10);
    int differs = 0;
    for (size_t i = 0; i < 10; i++) {
        ckd_sample s1, s2, s3;
        cr_assert_eq(ckd_dataset_get(d1, i, &s1, &err), 0);
        cr_assert_eq(ckd_dataset_get(d2, i, &s2, &err), 0);
        cr_assert_eq(ckd_dataset_get(d3, i, &s3, &err), 0);
        cr_assert_eq(s1.n_captions, 3);
        for (size_t k = 0; k < 3; k++)
            cr_assert_str_eq(s1.captions[k], s2.captions[k]);
        differs += strcmp(s1.captions[0], s3.captions[0]) != 0;
        ckd_sample_free(&s1);
        ckd_sample_free(&s2);
        ckd_sample_free(&s3);
    }
    cr_assert_gt(differs, 0, "caption_seed changed no caption");
    ckd_dataset_close(d1);
    ckd_dataset_close(d2);
    ckd_dataset_close(d3);
}

/* A 19-byte file whose header claims 3.6 GB of data: truncated, found as
 * the bytes fail to arrive, with memory for what arrived (the cap turns an
 * up-front 3.6 GB allocation into an "out of memory" failure). */
Test(data_idx, a_header_claiming_gigabytes_allocates_what_arrives)
{
    uint8_t b[19] = {0, 0, 8, 3, 0, 0, 0x0f, 0xa0, 0, 0, 0x03, 0xe8, 0, 0, 0x03, 0x84, 1, 2, 3}; /* 4000x1000x900 */
    char dir[] = "/tmp/ckd-idx-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    tdu_write(tdu_path(dir, "bomb"), b, sizeof b);
    int capped = cap_address_space((size_t)512 << 20) == 0;
    ckd_idx idx;
    ckd_error err;
    cr_assert_eq(ckd_idx_load(tdu_path(dir, "bomb"), 3, &idx, &err), -1);
    cr_expect(strstr(err.msg, "truncated at offset 19") && strstr(err.msg, "4000 x 1000 x 900"), "%s%s", err.msg,
              capped ? "" : " (address space not capped)");
    unlink(tdu_path(dir, "bomb"));
    rmdir(dir);
}

/* cue: the class's marker (white 4x4 at its border place) on about that
 * fraction of the images, nothing else changed: same captions, same pixels
 * elsewhere, the same images for the same cue_seed. */
Test(data_fmnist, spurious_cue_marks_images_by_class)
{
    const char *dir = tdu_fmnist_dir();
    char a[512], b[512];
    snprintf(a, sizeof a, "{\"reader\": \"fashion-mnist\", \"split\": \"test\", \"dir\": \"%s\", \"limit\": 400}",
             dir);
    snprintf(b, sizeof b, "{\"reader\": \"fashion-mnist\", \"split\": \"test\", \"dir\": \"%s\", \"limit\": 400,"
                          " \"cue\": 0.75, \"cue_seed\": 2}", dir);
    ckd_error err;
    ckd_dataset *clean = tdu_open(a, NULL, &err), *cued = tdu_open(b, NULL, &err), *again = tdu_open(b, NULL, &err);
    cr_assert(clean && cued && again, "%s", err.msg);
    int marked = 0;
    for (size_t i = 0; i < 400; i++) {
        ckd_sample s0, s1, s2;
        cr_assert_eq(ckd_dataset_get(clean, i, &s0, &err), 0, "%s", err.msg);
        cr_assert_eq(ckd_dataset_get(cued, i, &s1, &err), 0, "%s", err.msg);
        cr_assert_eq(ckd_dataset_get(again, i, &s2, &err), 0, "%s", err.msg);
        cr_assert_eq(memcmp(s1.image.rgb, s2.image.rgb, 28 * 28 * 3), 0, "cue_seed does not fix the images");
        for (size_t k = 0; k < s0.n_captions; k++)
            cr_assert_str_eq(s0.captions[k], s1.captions[k]);
        int x0 = 1 + 5 * (s0.label % 5), y0 = s0.label < 5 ? 1 : 23, in_marker = 1, outside_same = 1;
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++) {
                int inside = x >= x0 && x < x0 + 4 && y >= y0 && y < y0 + 4;
                const uint8_t *p0 = s0.image.rgb + (y * 28 + x) * 3, *p1 = s1.image.rgb + (y * 28 + x) * 3;
                if (inside)
                    in_marker &= p1[0] == 255;
                else
                    outside_same &= !memcmp(p0, p1, 3);
            }
        cr_assert(outside_same, "image %zu changed outside its class's marker", i);
        marked += in_marker && memcmp(s0.image.rgb, s1.image.rgb, 28 * 28 * 3) != 0;
        ckd_sample_free(&s0);
        ckd_sample_free(&s1);
        ckd_sample_free(&s2);
    }
    cr_expect(marked > 0.75 * 400 - 40 && marked < 0.75 * 400 + 40, "%d of 400 images marked at cue 0.75", marked);
    ckd_dataset_close(clean);
    ckd_dataset_close(cued);
    ckd_dataset_close(again);
}

/* Attribute words in the captions of the first n test images. */
static int count_attribute_words(const char *detail, size_t n, int *bare)
{
    static const char *const words[] = {"dark", "bright", "narrow", "wide", "sparse", "dense"};
    char spec[512];
    snprintf(spec, sizeof spec, "{\"reader\": \"fashion-mnist\", \"split\": \"test\", \"dir\": \"%s\", "
             "\"captions\": 5, \"limit\": %zu%s}", tdu_fmnist_dir(), n, detail);
    ckd_error err;
    ckd_dataset *d = tdu_open(spec, NULL, &err);
    cr_assert(d, "%s", err.msg);
    int count = 0;
    *bare = 0;
    for (size_t i = 0; i < n; i++) {
        ckd_sample s;
        cr_assert_eq(ckd_dataset_get(d, i, &s, &err), 0, "%s", err.msg);
        for (size_t k = 0; k < s.n_captions; k++) {
            int here = 0;
            for (size_t w = 0; w < sizeof words / sizeof *words; w++)
                here += strstr(s.captions[k], words[w]) != NULL;
            count += here;
            *bare += here == 0;
        }
        ckd_sample_free(&s);
    }
    ckd_dataset_close(d);
    return count;
}

Test(data_fmnist, detail_leaves_out_attribute_words)
{
    int bare_full, bare_half, bare_half2, bare_none;
    int full = count_attribute_words("", 200, &bare_full);
    int half = count_attribute_words(", \"detail\": 0.5", 200, &bare_half);
    int half2 = count_attribute_words(", \"detail\": 0.5", 200, &bare_half2);
    int none = count_attribute_words(", \"detail\": 0", 200, &bare_none);
    cr_assert_eq(count_attribute_words(", \"detail\": 1", 200, &(int){0}), full, "detail 1 is the default");
    cr_assert_eq(none, 0, "detail 0 names no attribute");
    cr_assert_eq(bare_none, 1000);
    cr_assert_eq(half, half2, "the words left out depend on the seed alone");
    cr_assert(half > 0.4 * full && half < 0.6 * full, "detail 0.5 kept %d of %d attribute words", half, full);
    cr_assert_gt(bare_half, bare_full, "more captions name the class alone");
}

Test(data_fmnist, thresholds_are_the_training_tertiles)
{
    const char *dir = tdu_fmnist_dir();
    ckd_idx im;
    ckd_error err;
    cr_assert_eq(ckd_idx_load(tdu_path(dir, "train-images-idx3-ubyte.gz"), 3, &im, &err), 0, "%s",
                 err.msg);
    cr_assert(im.dims[0] == 60000 && im.dims[1] == 28 && im.dims[2] == 28);
    size_t low[3] = {0}, high[3] = {0};
    for (size_t i = 0; i < im.dims[0]; i++) {
        ckd_gray_attrs a;
        ckd_gray_attributes(im.data + i * 784, 28, 28, &a);
        for (int k = 0; k < 3; k++) {
            low[k] += a.bin[k] == 0;
            high[k] += a.bin[k] == 2;
        }
    }
    for (int k = 0; k < 3; k++) {
        double l = (double)low[k] / 60000, h = (double)high[k] / 60000;
        cr_assert(l >= 0.32 && l <= 0.35 && h >= 0.32 && h <= 0.35,
                  "attribute %d: %.3f below T1, %.3f at or above T2", k, l, h);
    }
    ckd_idx_free(&im);
}

Test(data_fmnist, default_artifacts_through_the_cache)
{
    tdu_fmnist_dir();
    char *cache = tdu_tmpdir();
    ckd_fetch_opts fo;
    ckd_fetch_opts_init(&fo);
    fo.cache_dir = cache;
    fo.offline = 1; /* only the file:// mirror: no network in tests */
    json_t *spec = json_pack("{s:s, s:s, s:i}", "reader", "fashion-mnist", "split", "test",
                             "captions", 1);
    ckd_error err;
    ckd_dataset *ds = ckd_dataset_open_fetch(spec, NULL, &fo, &err);
    cr_assert_not_null(ds, "%s", err.msg);
    cr_assert_eq(ckd_dataset_size(ds), 10000);
    tdu_assert_has(ckd_dataset_source(ds), cache);
    ckd_dataset_close(ds);
    /* A second open finds them cached. */
    char path[4096];
    cr_assert_eq(ckd_fashion_mnist_fetch(CKD_FMNIST_TEST_LABELS, &fo, path, sizeof path, &err), 0);
    tdu_assert_has(path, cache);
    json_decref(spec);
    tdu_rmrf(cache);
    free(cache);
}

Test(data_fmnist, bad_dir_files)
{
    char *dir = tdu_tmpdir();
    uint8_t px[3 * 28 * 28] = {0};
    uint32_t idims[3] = {3, 28, 28}, ldims[1] = {3};
    uint8_t good_labels[3] = {1, 2, 3}, bad_labels[3] = {1, 12, 3};
    size_t n;
    uint8_t *im = tdu_idx(3, idims, px, &n);
    tdu_write_gz(tdu_path(dir, "t10k-images-idx3-ubyte.gz"), im, n);
    free(im);
    uint8_t *lb = tdu_idx(1, ldims, bad_labels, &n);
    tdu_write_gz(tdu_path(dir, "t10k-labels-idx1-ubyte.gz"), lb, n);
    free(lb);
    const char *spec = "{\"reader\": \"fashion-mnist\", \"split\": \"test\", \"dir\": \".\"}";
    tdu_open_fails(spec, dir, "t10k-labels-idx1-ubyte.gz", "offset 9", "label 12 of image 1");

    /* Two labels for three images (plain files win when no .gz exists). */
    uint32_t two[1] = {2};
    lb = tdu_idx(1, two, good_labels, &n);
    remove(tdu_path(dir, "t10k-labels-idx1-ubyte.gz"));
    tdu_write(tdu_path(dir, "t10k-labels-idx1-ubyte"), lb, n);
    free(lb);
    tdu_open_fails(spec, dir, "t10k-labels-idx1-ubyte", "2 labels for the 3 images");

    /* The train files are missing altogether. */
    tdu_open_fails("{\"reader\": \"fashion-mnist\", \"dir\": \".\"}", dir,
                   "train-images-idx3-ubyte", "cannot open");
    tdu_rmrf(dir);
    free(dir);
}

/* ---- specs -------------------------------------------------------------------------- */

Test(data_spec, readers_and_schemas)
{
    size_t n;
    const char *const *names = ckd_dataset_readers(&n);
    cr_assert_eq(n, 8);
    for (size_t i = 0; i < n; i++) {
        const char *text = ckd_dataset_schema_text(names[i]);
        cr_assert_not_null(text, "%s", names[i]);
        json_t *s = json_loads(text, 0, NULL);
        cr_assert_not_null(s, "the %s schema is not JSON", names[i]);
        cr_assert_not_null(json_object_get(json_object_get(s, "properties"), "limit"));
        json_decref(s);
    }
    cr_assert_null(ckd_dataset_schema_text("nope"));
}

/* Checks spec text at "data.train" of a file, expecting failure. */
static void spec_fails(const char *text, const char *a, const char *b)
{
    json_t *spec = json_loads(text, 0, NULL);
    cr_assert_not_null(spec, "%s", text);
    ckd_error err;
    cr_assert_eq(ckd_dataset_check_spec(spec, "r.json", "data.train", NULL, NULL, &err), -1,
                 "%s should be refused", text);
    tdu_assert_has(err.msg, "r.json", a, b);
    json_decref(spec);
}

Test(data_spec, unknown_keys_and_readers)
{
    spec_fails("{\"reader\": \"cvs\", \"path\": \"x\"}", "data.train.reader",
               "did you mean \"csv\"");
    spec_fails("{\"reader\": \"webdataset\", \"shard\": \"x.tar\"}", "data.train.shard",
               "did you mean \"shards\"");
    spec_fails("{\"reader\": \"csv\"}", "data.train", "missing required key \"path\"");
    spec_fails("{\"reader\": \"fashion-mnist\", \"split\": \"tset\"}", "data.train.split",
               "did you mean \"test\"");
    spec_fails("{\"reader\": \"fashion-mnist\", \"captions\": 9}", "data.train.captions", "≤ 8");
    spec_fails("{\"path\": \"x\"}", "data.train", "missing required key \"reader\"");
    spec_fails("{\"reader\": \"csv\", \"path\": \"x\", \"header\": false}", "data.train.image",
               "column index");
    spec_fails("{\"reader\": \"csv\", \"path\": \"x\", \"separator\": \"ab\"}",
               "data.train.separator", "one character");
    spec_fails("{\"reader\": \"webdataset\", \"shards\": \"x\", \"image\": []}",
               "data.train.image", "1 to 16");
    spec_fails("{\"reader\": \"tensors\", \"path\": {\"urls\": []}}", "data.train.path",
               "missing required key \"sha256\"");
    spec_fails("[1]", "data.train", "spec object");
}

Test(data_spec, defaults_are_filled_in)
{
    json_t *spec = json_pack("{s:s, s:s}", "reader", "csv", "path", "x.tsv");
    ckd_error err;
    cr_assert_eq(ckd_dataset_check_spec(spec, NULL, "", NULL, NULL, &err), 0, "%s", err.msg);
    cr_assert_str_eq(json_string_value(json_object_get(spec, "separator")), "\t");
    cr_assert_str_eq(json_string_value(json_object_get(spec, "image")), "filepath");
    cr_assert_str_eq(json_string_value(json_object_get(spec, "caption")), "title");
    cr_assert(json_is_true(json_object_get(spec, "header")));
    cr_assert_eq(json_integer_value(json_object_get(spec, "limit")), 0);
    json_decref(spec);
    /* Opening works on a copy: the caller's spec keeps its two keys. */
    spec = json_pack("{s:s, s:s}", "reader", "csv", "path", "/nonexistent/x.tsv");
    cr_assert_null(ckd_dataset_open(spec, NULL, &err));
    tdu_assert_has(err.msg, "csv reader", "/nonexistent/x.tsv", "cannot open");
    cr_assert_eq(json_object_size(spec), 2);
    json_decref(spec);
}
