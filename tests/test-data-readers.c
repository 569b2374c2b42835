/* Tests for the readers on small inputs the tests write themselves: the good
 * path of each, and bad input that must be refused with the file and the
 * place named (part of tests/test-data). */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "clipkd/safetensors.h"
#include "data-test.h"
#include "limits_util.h"

static char *dir;

static void setup(void)
{
    dir = tdu_tmpdir();
}

static void teardown(void)
{
    tdu_rmrf(dir);
    free(dir);
}

static ckd_dataset *open_ok(const char *json)
{
    ckd_error err;
    ckd_dataset *ds = tdu_open(json, dir, &err);
    cr_assert_not_null(ds, "%s: %s", json, err.msg);
    return ds;
}

/* Sample i must decode to the w x h pattern `seed` (exactly: PNG). */
static void expect_png_sample(const ckd_dataset *ds, size_t i, int w, int h, unsigned seed,
                              const char *caption, int label)
{
    ckd_sample s;
    ckd_error err;
    cr_assert_eq(ckd_dataset_get(ds, i, &s, &err), 0, "sample %zu: %s", i, err.msg);
    cr_assert_eq(s.image.w, w, "sample %zu", i);
    cr_assert_eq(s.image.h, h, "sample %zu", i);
    uint8_t *px = tdu_pattern(w, h, seed);
    cr_assert_arr_eq(s.image.rgb, px, (size_t)w * (size_t)h * 3, "sample %zu pixels", i);
    free(px);
    cr_assert_geq(s.n_captions, 1);
    cr_assert_str_eq(s.captions[0], caption, "sample %zu", i);
    cr_assert_eq(s.label, label, "sample %zu", i);
    ckd_sample_free(&s);
}

/* Sample i must fail with a message holding every needle. */
static void get_fails_(const ckd_dataset *ds, size_t i, ...)
{
    ckd_sample s;
    ckd_error err;
    cr_assert_eq(ckd_dataset_get(ds, i, &s, &err), -1, "sample %zu should fail", i);
    cr_assert_null(s.image.rgb);
    va_list ap;
    va_start(ap, i);
    tdu_assert_has_v(err.msg, ap);
    va_end(ap);
}
#define get_fails(...) get_fails_(__VA_ARGS__, (const char *)NULL)

/* ---- csv ------------------------------------------------------------------------- */

TestSuite(data_csv, .init = setup, .fini = teardown);

Test(data_csv, clip_kd_tsv)
{
    tdu_write_png(tdu_path(dir, "img/0/a.png"), 5, 4, 1);
    tdu_write_png(tdu_path(dir, "img/1/b.png"), 3, 6, 2);
    tdu_write_jpeg(tdu_path(dir, "img/1/c.jpg"), 16, 8, 3);
    tdu_write_str(tdu_path(dir, "cc.tsv"), "title\tfilepath\n"
                                           "a red thing\t0/a.png\r\n"
                                           "\n"
                                           "café au lait\t1/b.png\n"
                                           "\"quoted\"\"x\"\"\"\t1/c.jpg");
    ckd_dataset *ds = open_ok("{\"reader\": \"csv\", \"path\": \"cc.tsv\", \"root\": \"img\"}");
    cr_assert_eq(ckd_dataset_size(ds), 3);
    cr_assert_eq(ckd_dataset_n_classes(ds), 0);
    expect_png_sample(ds, 0, 5, 4, 1, "a red thing", -1);
    expect_png_sample(ds, 1, 3, 6, 2, "café au lait", -1);
    ckd_sample s;
    ckd_error err;
    cr_assert_eq(ckd_dataset_get(ds, 2, &s, &err), 0, "%s", err.msg);
    cr_assert(s.image.w == 16 && s.image.h == 8);
    cr_assert_str_eq(s.captions[0], "quoted\"x\"");
    ckd_sample_free(&s);
    ckd_dataset_close(ds);
}

Test(data_csv, comma_separated_quotes_and_labels)
{
    tdu_write_png(tdu_path(dir, "a.png"), 2, 2, 4);
    tdu_write_png(tdu_path(dir, "b.png"), 2, 3, 5);
    tdu_write_str(tdu_path(dir, "t.csv"), "id,caption,image,cls\n"
                                          "1,\"two\nlines, and a comma\",a.png,3\n"
                                          "2,plain,b.png,0\n");
    ckd_dataset *ds = open_ok("{\"reader\": \"csv\", \"path\": \"t.csv\", \"separator\": \",\","
                              " \"image\": \"image\", \"caption\": 1, \"label\": \"cls\"}");
    cr_assert_eq(ckd_dataset_size(ds), 2);
    expect_png_sample(ds, 0, 2, 2, 4, "two\nlines, and a comma", 3);
    expect_png_sample(ds, 1, 2, 3, 5, "plain", 0);
    ckd_dataset_close(ds);

    /* No header: indices; "limit" keeps the first rows. */
    tdu_write_str(tdu_path(dir, "n.tsv"), "a.png\tfirst\nb.png\tsecond\n");
    ds = open_ok("{\"reader\": \"csv\", \"path\": \"n.tsv\", \"header\": false,"
                 " \"image\": 0, \"caption\": 1, \"limit\": 1}");
    cr_assert_eq(ckd_dataset_size(ds), 1);
    expect_png_sample(ds, 0, 2, 2, 4, "first", -1);
    ckd_dataset_close(ds);
}

Test(data_csv, bad_rows)
{
    const char *spec = "{\"reader\": \"csv\", \"path\": \"bad.tsv\"}";
    tdu_write_str(tdu_path(dir, "bad.tsv"), "filepath\ttitle\na.png\tok\nb.png\n");
    tdu_open_fails(spec, dir, "bad.tsv:3:", "expected at least 2 columns", "got 1",
                   "caption column \"title\"");

    tdu_write_str(tdu_path(dir, "bad.tsv"), "filepath\ttitle\na.png\tok \xff\xfe\n");
    tdu_open_fails(spec, dir, "bad.tsv:2:", "invalid UTF-8", "byte 4");

    tdu_write_str(tdu_path(dir, "bad.tsv"), "filepath\ttitle\n\tno image\n");
    tdu_open_fails(spec, dir, "bad.tsv:2:", "image column \"filepath\" is empty");

    tdu_write_str(tdu_path(dir, "bad.tsv"), "file_path\ttitle\na.png\tx\n");
    tdu_open_fails(spec, dir, "bad.tsv:1:", "no column named \"filepath\"",
                   "did you mean \"file_path\"");

    tdu_write_str(tdu_path(dir, "bad.tsv"), "filepath\ttitle\n\"a.png\tx\n");
    tdu_open_fails(spec, dir, "bad.tsv:2:", "never ends");

    tdu_write_str(tdu_path(dir, "bad.tsv"), "filepath\ttitle\n\"a\".png\tx\n");
    tdu_open_fails(spec, dir, "bad.tsv:2:", "after a closing quote");

    tdu_write_str(tdu_path(dir, "bad.tsv"), "filepath\ttitle\tlabel\na.png\tx\tseven\n");
    tdu_open_fails("{\"reader\": \"csv\", \"path\": \"bad.tsv\", \"label\": \"label\"}", dir,
                   "bad.tsv:2:", "label column", "\"seven\"");

    tdu_write_str(tdu_path(dir, "empty.tsv"), "");
    tdu_open_fails("{\"reader\": \"csv\", \"path\": \"empty.tsv\"}", dir, "empty.tsv",
                   "header");
}

Test(data_csv, unreadable_images_fail_in_get)
{
    tdu_write_png(tdu_path(dir, "a.png"), 2, 2, 1);
    tdu_write_str(tdu_path(dir, "junk.jpg"), "not a jpeg at all");
    tdu_write_str(tdu_path(dir, "t.tsv"),
                  "filepath\ttitle\na.png\tfine\nmissing.png\tgone\njunk.jpg\tjunk\n");
    ckd_dataset *ds = open_ok("{\"reader\": \"csv\", \"path\": \"t.tsv\"}");
    cr_assert_eq(ckd_dataset_size(ds), 3);
    get_fails(ds, 1, "t.tsv:3:", "image \"missing.png\"", "missing.png");
    get_fails(ds, 2, "t.tsv:4:", "junk.jpg", "image");
    get_fails(ds, 3, "sample 3", "has 3");
    ckd_dataset_close(ds);
}

/* ---- webdataset ---------------------------------------------------------------------- */

TestSuite(data_wds, .init = setup, .fini = teardown);

/* Writes shard `name` with samples k0 .. k0 + n - 1: PNG k (k+1 x 3), caption
 * "caption k", label k % 3 — plus a JSON member readers must ignore. */
static void write_shard(const char *name, int k0, int n, int gz, const char *prefix)
{
    tdu_member m[32];
    uint8_t *png[8];
    char names[32][256], text[8][64];
    size_t nm = 0;
    for (int i = 0; i < n; i++) {
        int k = k0 + i;
        size_t len;
        png[i] = tdu_png(k + 1, 3, (unsigned)k, &len);
        snprintf(names[nm], sizeof names[0], "%s%06d.png", prefix, k);
        m[nm] = (tdu_member){names[nm], png[i], len};
        nm++;
        snprintf(names[nm], sizeof names[0], "%s%06d.json", prefix, k);
        m[nm] = (tdu_member){names[nm], "{}", 2};
        nm++;
        snprintf(text[i], sizeof text[0], "caption %d\n", k);
        snprintf(names[nm], sizeof names[0], "%s%06d.txt", prefix, k);
        m[nm] = (tdu_member){names[nm], text[i], strlen(text[i])};
        nm++;
        snprintf(names[nm], sizeof names[0], "%s%06d.cls", prefix, k);
        char *cls = malloc(8);
        snprintf(cls, 8, "%d", k % 3);
        m[nm] = (tdu_member){names[nm], cls, strlen(cls)};
        nm++;
    }
    tdu_write_tar(tdu_path(dir, name), m, nm, gz);
    for (int i = 0; i < n; i++)
        free(png[i]);
    for (size_t i = 3; i < nm; i += 4)
        free((void *)m[i].data);
}

Test(data_wds, uncompressed_shards_random_access)
{
    /* A long directory name forces pax extended headers before members. */
    char prefix[200];
    memset(prefix, 'd', 150);
    strcpy(prefix + 150, "/");
    write_shard("shards/s-00.tar", 0, 3, 0, prefix);
    write_shard("shards/s-01.tar", 3, 2, 0, "");
    ckd_dataset *ds = open_ok("{\"reader\": \"webdataset\", \"shards\": \"shards/s-{00..01}.tar\"}");
    cr_assert_eq(ckd_dataset_size(ds), 5);
    tdu_assert_has(ckd_dataset_source(ds), "s-00.tar", "2 shards");
    for (size_t i = 5; i-- > 0;) { /* backwards: random access */
        char cap[32];
        snprintf(cap, sizeof cap, "caption %zu", i);
        expect_png_sample(ds, i, (int)i + 1, 3, (unsigned)i, cap, (int)i % 3);
    }
    ckd_dataset_close(ds);
}

Test(data_wds, compressed_shards_and_lists)
{
    write_shard("a.tar.gz", 0, 2, 1, "");
    write_shard("b.tar", 2, 2, 0, "x/");
    ckd_dataset *ds = open_ok("{\"reader\": \"webdataset\", \"shards\": [\"a.tar.gz\", \"b.tar\"],"
                              " \"label\": \".cls\"}");
    cr_assert_eq(ckd_dataset_size(ds), 4);
    for (size_t i = 0; i < 4; i++) {
        char cap[32];
        snprintf(cap, sizeof cap, "caption %zu", i);
        expect_png_sample(ds, i, (int)i + 1, 3, (unsigned)i, cap, (int)i % 3);
    }
    ckd_dataset_close(ds);
}

Test(data_wds, incomplete_samples)
{
    size_t len;
    uint8_t *png = tdu_png(2, 2, 0, &len);
    tdu_member m[] = {{"k1.png", png, len}, {"k1.txt", "one", 3}, {"k2.png", png, len},
                      {"k3.png", png, len}, {"k3.txt", "three", 5}, {"k4.txt", "four", 4}};
    tdu_write_tar(tdu_path(dir, "s.tar"), m, 6, 0);
    tdu_open_fails("{\"reader\": \"webdataset\", \"shards\": \"s.tar\"}", dir, "s.tar",
                   "sample \"k2\" (member \"k2.png\" at offset", "no caption member (.txt)");
    ckd_dataset *ds = open_ok("{\"reader\": \"webdataset\", \"shards\": \"s.tar\","
                              " \"incomplete\": \"skip\"}");
    cr_assert_eq(ckd_dataset_size(ds), 2);
    expect_png_sample(ds, 1, 2, 2, 0, "three", -1);
    ckd_dataset_close(ds);
    free(png);
}

Test(data_wds, bad_members)
{
    const char *spec = "{\"reader\": \"webdataset\", \"shards\": \"s.tar\"}";
    size_t len;
    uint8_t *png = tdu_png(2, 2, 0, &len);

    tdu_member utf[] = {{"k1.png", png, len}, {"k1.txt", "bad \xc3\x28", 6}};
    tdu_write_tar(tdu_path(dir, "s.tar"), utf, 2, 0);
    tdu_open_fails(spec, dir, "s.tar", "member \"k1.txt\" at offset", "not valid UTF-8",
                   "byte 5");

    tdu_member cls[] = {{"k1.png", png, len}, {"k1.txt", "ok", 2}, {"k1.cls", "x7", 2}};
    tdu_write_tar(tdu_path(dir, "s.tar"), cls, 3, 0);
    tdu_open_fails(spec, dir, "member \"k1.cls\"", "class index");

    tdu_member dup[] = {{"k1.png", png, len}, {"k1.txt", "ok", 2}, {"k1.TXT", "again", 5}};
    tdu_write_tar(tdu_path(dir, "s.tar"), dup, 3, 0);
    tdu_open_fails(spec, dir, "member \"k1.TXT\"", "already has a caption");

    /* Cut in the middle of the last member's data. */
    tdu_member two[] = {{"k1.png", png, len}, {"k1.txt", "ok", 2}, {"k2.txt", "ok", 2},
                        {"k2.png", png, len}};
    tdu_write_tar(tdu_path(dir, "full.tar"), two, 4, 0);
    size_t n;
    uint8_t *bytes = tdu_read(tdu_path(dir, "full.tar"), &n);
    /* Headers and one-block data alternate: k2.png's data starts at 7 * 512. */
    tdu_write(tdu_path(dir, "s.tar"), bytes, 7 * 512 + 40);
    tdu_open_fails(spec, dir, "s.tar", "truncated");

    /* A damaged header block (its checksum no longer matches). */
    memcpy(bytes + 512 * 4 + 100, "garbage!", 8); /* k2.txt's header */
    tdu_write(tdu_path(dir, "s.tar"), bytes, n);
    tdu_open_fails(spec, dir, "s.tar", "after member");
    free(bytes);

    tdu_write_str(tdu_path(dir, "s.tar"), "this is not a tar file at all, not even close......");
    tdu_open_fails(spec, dir, "s.tar", "offset 0");

    tdu_open_fails("{\"reader\": \"webdataset\", \"shards\": \"none-{1..2}.tar\"}", dir,
                   "none-1.tar", "cannot open");
    free(png);
}

Test(data_wds, undecodable_image_fails_in_get)
{
    tdu_member m[] = {{"k1.jpg", "\xff\xd8\xff garbage", 12}, {"k1.txt", "cap", 3}};
    tdu_write_tar(tdu_path(dir, "s.tar"), m, 2, 0);
    ckd_dataset *ds = open_ok("{\"reader\": \"webdataset\", \"shards\": \"s.tar\"}");
    cr_assert_eq(ckd_dataset_size(ds), 1);
    get_fails(ds, 0, "s.tar", "member \"k1.jpg\" at offset 512");
    ckd_dataset_close(ds);
}

/* ---- imagefolder ------------------------------------------------------------------ */

TestSuite(data_if, .init = setup, .fini = teardown);

Test(data_if, classes_sorted_and_templates)
{
    tdu_write_png(tdu_path(dir, "val/n02_tabby_cat/b.png"), 2, 2, 1);
    tdu_write_png(tdu_path(dir, "val/n02_tabby_cat/a.PNG"), 3, 2, 2);
    tdu_write_png(tdu_path(dir, "val/n01_goldfish/sub/z.png"), 4, 2, 3);
    tdu_write_str(tdu_path(dir, "val/n01_goldfish/notes.txt"), "ignored");
    tdu_write_png(tdu_path(dir, "val/.hidden/x.png"), 2, 2, 4);
    ckd_dataset *ds = open_ok("{\"reader\": \"imagefolder\", \"path\": \"val\"}");
    cr_assert_eq(ckd_dataset_size(ds), 3);
    cr_assert_eq(ckd_dataset_n_classes(ds), 2);
    cr_assert_str_eq(ckd_dataset_class_name(ds, 0), "n01 goldfish");
    cr_assert_eq(ckd_dataset_n_templates(ds), 7);
    expect_png_sample(ds, 0, 4, 2, 3, "itap of a n01 goldfish.", 0);
    expect_png_sample(ds, 1, 3, 2, 2, "itap of a n02 tabby cat.", 1);
    expect_png_sample(ds, 2, 2, 2, 1, "itap of a n02 tabby cat.", 1);
    ckd_dataset_close(ds);

    tdu_write_str(tdu_path(dir, "names.txt"), "goldfish\r\ntabby cat\n\n");
    tdu_write_str(tdu_path(dir, "tmpl.txt"), "a photo of a {}.\na {} again, {}.\n");
    ds = open_ok("{\"reader\": \"imagefolder\", \"path\": \"val\", \"classnames\": \"names.txt\","
                 " \"templates\": \"tmpl.txt\"}");
    cr_assert_str_eq(ckd_dataset_class_name(ds, 1), "tabby cat");
    cr_assert_str_eq(ckd_dataset_template(ds, 1), "a {} again, {}.");
    ckd_sample s;
    ckd_error err;
    cr_assert_eq(ckd_dataset_get(ds, 0, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(s.n_captions, 2);
    cr_assert_str_eq(s.captions[0], "a photo of a goldfish.");
    cr_assert_str_eq(s.captions[1], "a goldfish again, goldfish.");
    ckd_sample_free(&s);
    ckd_dataset_close(ds);
}

Test(data_if, bad_folders_and_lists)
{
    tdu_write_png(tdu_path(dir, "val/a/x.png"), 2, 2, 1);
    tdu_write_str(tdu_path(dir, "val/b/readme"), "no images here");
    tdu_open_fails("{\"reader\": \"imagefolder\", \"path\": \"val\"}", dir, "val/b",
                   "class 1 has no images");
    remove(tdu_path(dir, "val/b/readme"));
    remove(tdu_path(dir, "val/b"));
    tdu_write_str(tdu_path(dir, "names.txt"), "one\ntwo\n");
    tdu_open_fails("{\"reader\": \"imagefolder\", \"path\": \"val\", \"classnames\": \"names.txt\"}",
                   dir, "names.txt", "2 class names for the 1 class folders");
    tdu_write_str(tdu_path(dir, "t.txt"), "a photo of {}.\nno placeholder\n");
    tdu_open_fails("{\"reader\": \"imagefolder\", \"path\": \"val\", \"templates\": \"t.txt\"}", dir,
                   "t.txt", "template 2", "no \"{}\"");
    tdu_open_fails("{\"reader\": \"imagefolder\", \"path\": \"nowhere\"}", dir, "nowhere",
                   "cannot open");
}

/* ---- retrieval ------------------------------------------------------------------------ */

TestSuite(data_rt, .init = setup, .fini = teardown);

Test(data_rt, karpathy_splits)
{
    tdu_write_png(tdu_path(dir, "imgs/val2014/a.png"), 2, 2, 1);
    tdu_write_png(tdu_path(dir, "imgs/val2014/b.png"), 3, 3, 2);
    tdu_write_png(tdu_path(dir, "imgs/c.png"), 4, 4, 3);
    tdu_write_str(tdu_path(dir, "k.json"),
                  "{\"images\": ["
                  " {\"filepath\": \"val2014\", \"filename\": \"a.png\", \"split\": \"test\","
                  "  \"sentences\": [{\"raw\": \"A dog.\", \"tokens\": []}, {\"raw\": \"A pup.\"},"
                  "                  {\"raw\": \"A hound.\"}]},"
                  " {\"filepath\": \"val2014\", \"filename\": \"b.png\", \"split\": \"train\","
                  "  \"sentences\": [{\"raw\": \"Train.\"}]},"
                  " {\"filename\": \"c.png\", \"split\": \"test\", \"sentences\": [{\"raw\": \"Cat.\"}]}"
                  "]}");
    ckd_dataset *ds = open_ok("{\"reader\": \"retrieval\", \"path\": \"k.json\", \"root\": \"imgs\"}");
    cr_assert_eq(ckd_dataset_size(ds), 2);
    expect_png_sample(ds, 0, 2, 2, 1, "A dog.", -1);
    expect_png_sample(ds, 1, 4, 4, 3, "Cat.", -1);
    ckd_sample s;
    ckd_error err;
    cr_assert_eq(ckd_dataset_get(ds, 0, &s, &err), 0);
    cr_assert_eq(s.n_captions, 3);
    cr_assert_str_eq(s.captions[2], "A hound.");
    ckd_sample_free(&s);
    ckd_dataset_close(ds);

    ds = open_ok("{\"reader\": \"retrieval\", \"path\": \"k.json\", \"root\": \"imgs\","
                 " \"split\": \"all\", \"max_captions\": 2}");
    cr_assert_eq(ckd_dataset_size(ds), 3);
    cr_assert_eq(ckd_dataset_get(ds, 0, &s, &err), 0);
    cr_assert_eq(s.n_captions, 2);
    ckd_sample_free(&s);
    expect_png_sample(ds, 1, 3, 3, 2, "Train.", -1);
    ckd_dataset_close(ds);

    /* Without "root", images are found next to the JSON. */
    ds = open_ok("{\"reader\": \"retrieval\", \"path\": \"k.json\"}");
    get_fails(ds, 1, "k.json: image 1 of the split", "c.png");
    ckd_dataset_close(ds);
}

/* The JSON must be refused with a message naming it and every needle. */
static void rt_fails_(const char *json_text, ...)
{
    tdu_write_str(tdu_path(dir, "k.json"), json_text);
    ckd_error err;
    cr_assert_null(tdu_open("{\"reader\": \"retrieval\", \"path\": \"k.json\"}", dir, &err),
                   "%s should be refused", json_text);
    tdu_assert_has(err.msg, "k.json");
    va_list ap;
    va_start(ap, json_text);
    tdu_assert_has_v(err.msg, ap);
    va_end(ap);
}
#define rt_fails(...) rt_fails_(__VA_ARGS__, (const char *)NULL)

Test(data_rt, missing_fields)
{
    rt_fails("{\"pictures\": []}", "images: missing");
    rt_fails("{\"images\": [{\"filename\": \"a\", \"split\": \"test\", \"sentences\": [{\"raw\": \"x\"}]},"
             " {\"split\": \"test\", \"sentences\": []}]}",
             "images[1]: missing \"filename\"");
    rt_fails("{\"images\": [{\"filename\": \"a\", \"split\": \"test\","
             " \"sentences\": [{\"raw\": \"x\"}, {\"tokens\": []}]}]}",
             "images[0].sentences[1]: missing \"raw\"");
    rt_fails("{\"images\": [{\"filename\": \"a\", \"split\": \"test\"}]}",
             "images[0].sentences: missing");
    rt_fails("{\"images\": [{\"filename\": \"a\", \"sentences\": [{\"raw\": \"x\"}]}]}",
             "images[0]: missing \"split\"");
    rt_fails("{\"images\": [{\"filename\": 7, \"split\": \"test\", \"sentences\": [{\"raw\": \"x\"}]}]}",
             "images[0].filename: expected a non-empty string");
    rt_fails("{\"images\": [{\"filename\": \"a\", \"split\": \"val\", \"sentences\": [{\"raw\": \"x\"}]}]}",
             "no images in the split \"test\"");
    rt_fails("{\"images\": [{\"filename\": \"a\", \"split\": \"test\","
             " \"sentences\": [{\"raw\": \"bad \xff\"}]}]}",
             "k.json:1:", "byte 0xff");
    rt_fails("{\"images\": [", "k.json:1:");
}

/* ---- tensors ---------------------------------------------------------------------------- */

TestSuite(data_ts, .init = setup, .fini = teardown);

static void write_tensors(const char *name, ckd_dtype ids_type, int64_t n_labels, int64_t chans)
{
    float px[3 * 3 * 4 * 4];
    for (int i = 0; i < 3 * 3 * 16; i++)
        px[i] = (float)i * 0.5f;
    int64_t ids64[3 * 5];
    int32_t ids32[3 * 5];
    for (int i = 0; i < 15; i++)
        ids64[i] = ids32[i] = 100 + i;
    int64_t labels[3] = {2, 0, 1};
    ckd_st_writer *w = ckd_st_writer_new();
    ckd_error err;
    int64_t ps[4] = {3, chans, 4, 4}, is[2] = {3, 5}, ls[1] = {n_labels};
    if (chans == 3)
        cr_assert_eq(ckd_st_writer_add(w, "pixel_values", CKD_DT_F32, 4, ps, px, &err), 0);
    else
        cr_assert_eq(ckd_st_writer_add(w, "pixel_values", CKD_DT_F32, 2, ps, px, &err), 0);
    cr_assert_eq(ckd_st_writer_add(w, "input_ids", ids_type, 2, is,
                                   ids_type == CKD_DT_I64 ? (void *)ids64 : (void *)ids32, &err), 0);
    if (n_labels)
        cr_assert_eq(ckd_st_writer_add(w, "labels", CKD_DT_I64, 1, ls, labels, &err), 0);
    cr_assert_eq(ckd_st_writer_save(w, tdu_path(dir, name), &err), 0, "%s", err.msg);
    ckd_st_writer_free(w);
}

Test(data_ts, ready_made_batches)
{
    write_tensors("t.safetensors", CKD_DT_I64, 3, 3);
    ckd_dataset *ds = open_ok("{\"reader\": \"tensors\", \"path\": \"t.safetensors\"}");
    cr_assert_eq(ckd_dataset_size(ds), 3);
    ckd_sample s;
    ckd_error err;
    cr_assert_eq(ckd_dataset_get(ds, 1, &s, &err), 0, "%s", err.msg);
    cr_assert_null(s.image.rgb);
    cr_assert(s.pixel_h == 4 && s.pixel_w == 4 && s.n_ids == 5 && s.label == 0);
    cr_assert_float_eq(s.pixels[0], 48 * 0.5f, 0);
    cr_assert_eq(s.input_ids[4], 109);
    ckd_sample_free(&s);
    ckd_dataset_close(ds);
    write_tensors("u.safetensors", CKD_DT_I32, 0, 3);
    ds = open_ok("{\"reader\": \"tensors\", \"path\": \"u.safetensors\"}");
    cr_assert_eq(ckd_dataset_get(ds, 2, &s, &err), 0, "%s", err.msg);
    cr_assert(s.label == -1 && s.input_ids[0] == 110);
    ckd_sample_free(&s);
    ckd_dataset_close(ds);
}

Test(data_ts, bad_tensors)
{
    write_tensors("t.safetensors", CKD_DT_I64, 2, 3);
    tdu_open_fails("{\"reader\": \"tensors\", \"path\": \"t.safetensors\"}", dir, "t.safetensors",
                   "tensor \"labels\"", "[3]");
    write_tensors("t.safetensors", CKD_DT_I64, 0, 1);
    tdu_open_fails("{\"reader\": \"tensors\", \"path\": \"t.safetensors\"}", dir, "t.safetensors",
                   "\"pixel_values\" has 2 dimensions");
    write_tensors("t.safetensors", CKD_DT_F32, 0, 3);
    tdu_open_fails("{\"reader\": \"tensors\", \"path\": \"t.safetensors\"}", dir,
                   "tensor \"input_ids\" is F32");
    tdu_open_fails("{\"reader\": \"tensors\", \"path\": \"none.safetensors\"}", dir,
                   "none.safetensors");
}

/* A compressed shard whose caption member claims 512 MiB and holds 5
 * bytes: the reader's buffer grows with the bytes that arrive, so with the
 * address space capped 256 MiB above what the test uses the error is the
 * short data (libarchive: "Truncated tar archive"), not an "out of memory"
 * from allocating what the header claims. */
Test(data_wds, compressed_member_claiming_more_than_it_holds)
{
    size_t len, n;
    uint8_t *png = tdu_png(2, 2, 0, &len);
    tdu_member m[] = {{"k1.png", png, len}, {"k1.txt", "hello", 5}};
    tdu_write_tar(tdu_path(dir, "plain.tar"), m, 2, 0);
    uint8_t *tar = tdu_read(tdu_path(dir, "plain.tar"), &n);
    uint8_t *h = NULL;
    for (size_t off = 0; off + 512 <= n && !h; off += 512)
        if (!memcmp(tar + off, "k1.txt", 7))
            h = tar + off;
    cr_assert(h, "no k1.txt header in the tar");
    snprintf((char *)h + 124, 12, "%011o", 1u << 29); /* size: 512 MiB */
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    tdu_write_gz(tdu_path(dir, "s.tar.gz"), tar, n);
    int capped = cap_address_space((size_t)256 << 20) == 0;
    cr_log_info("address space %s", capped ? "capped" : "not capped (sanitizer build)");
    tdu_open_fails("{\"reader\": \"webdataset\", \"shards\": \"s.tar.gz\"}", dir, "member \"k1.txt\"",
                   "Truncated");
    free(tar);
    free(png);
}
