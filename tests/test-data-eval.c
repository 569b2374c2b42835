/* Tests for the paper-scale evaluation data (part of tests/test-data): the
 * ImageNet files clipkd ships, the imagenet reader on stand-ins of every
 * layout (ImageNet-1k val in synset folders and flat with each kind of
 * ground truth, ImageNet-V2, the 200-class ImageNet-R/-A), COCO-5k and
 * Flickr30k-1k style Karpathy JSON through the retrieval reader, and the
 * CC3M/CC12M training data as CLIP-KD ships it (a tab-separated table, and
 * img2dataset's WebDataset shards). The stand-ins hold one tiny image per
 * class or a handful in all. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "data-test.h"

static char *dir;

/* The shipped files, read straight from the source tree. */
static char **wnids, **names, **devkit, **rset, **aset;
static size_t n_wnids, n_names, n_devkit, n_r, n_a;

static char **read_list(const char *file, size_t *n)
{
    const char *src = getenv("CKD_TEST_SRCDIR");
    char p[4096];
    snprintf(p, sizeof p, "%s/recipes/eval/imagenet/%s", src ? src : ".", file);
    size_t len;
    char *text = (char *)tdu_read(p, &len);
    text[len] = '\0'; /* tdu_read leaves room for it */
    char **v = NULL;
    *n = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        v = realloc(v, (*n + 1) * sizeof *v);
        cr_assert_not_null(v);
        v[(*n)++] = strdup(line);
    }
    free(text);
    return v;
}

static void setup(void)
{
    dir = tdu_tmpdir();
    const char *src = getenv("CKD_TEST_SRCDIR");
    cr_assert_eq(setenv("CLIPKD_DATA_DIR", src ? src : ".", 1), 0);
    wnids = read_list("wnids.txt", &n_wnids);
    names = read_list("classnames.txt", &n_names);
    devkit = read_list("devkit-wnids.txt", &n_devkit);
    rset = read_list("imagenet-r-wnids.txt", &n_r);
    aset = read_list("imagenet-a-wnids.txt", &n_a);
}

static void teardown(void)
{
    tdu_rmrf(dir);
    free(dir);
    ckd_strings_free(wnids, n_wnids);
    ckd_strings_free(names, n_names);
    ckd_strings_free(devkit, n_devkit);
    ckd_strings_free(rset, n_r);
    ckd_strings_free(aset, n_a);
}

static ckd_dataset *open_ok(const char *json)
{
    ckd_error err;
    ckd_dataset *ds = tdu_open(json, dir, &err);
    cr_assert_not_null(ds, "%s: %s", json, err.msg);
    return ds;
}

static int index_of(char **v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i], s))
            return (int)i;
    return -1;
}

/* Sample i: a w x h image, label `label`, n_caps captions of which the first
 * is `caption`. */
static void expect_sample(const ckd_dataset *ds, size_t i, int w, int h, int label,
                          size_t n_caps, const char *caption)
{
    ckd_sample s;
    ckd_error err;
    cr_assert_eq(ckd_dataset_get(ds, i, &s, &err), 0, "sample %zu: %s", i, err.msg);
    cr_assert(s.image.w == w && s.image.h == h, "sample %zu: %dx%d", i, s.image.w, s.image.h);
    cr_assert_eq(s.label, label, "sample %zu", i);
    cr_assert_eq(s.n_captions, n_caps, "sample %zu", i);
    cr_assert_str_eq(s.captions[0], caption, "sample %zu", i);
    ckd_sample_free(&s);
}

/* "a bad photo of a NAME." — the first of the 80 templates. */
static const char *prompt0(const char *name)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "a bad photo of a %s.", name);
    return buf;
}

/* ---- the shipped files ---------------------------------------------------------------- */

TestSuite(data_evalfiles, .init = setup, .fini = teardown);

Test(data_evalfiles, counts_order_and_subsets)
{
    cr_assert_eq(n_wnids, 1000);
    for (size_t i = 1; i < n_wnids; i++)
        cr_assert_lt(strcmp(wnids[i - 1], wnids[i]), 0, "wnids.txt: line %zu not sorted", i + 1);
    cr_assert_eq(n_names, 1000);
    cr_assert_str_eq(names[0], "tench");
    cr_assert_str_eq(names[999], "toilet paper");
    size_t nt;
    char **t = read_list("templates-openai-80.txt", &nt);
    cr_assert_eq(nt, 80);
    for (size_t i = 0; i < nt; i++) {
        const char *a = strstr(t[i], "{}");
        cr_assert(a && !strstr(a + 2, "{}"), "template %zu: \"%s\"", i + 1, t[i]);
    }
    ckd_strings_free(t, nt);
    cr_assert_eq(n_devkit, 1000);
    cr_assert_str_eq(devkit[0], "n02119789"); /* ILSVRC2012_ID 1: kit fox */
    for (size_t i = 0; i < n_devkit; i++)
        cr_assert_geq(index_of(wnids, n_wnids, devkit[i]), 0, "devkit-wnids.txt:%zu", i + 1);
    for (size_t i = 1; i < n_devkit; i++) /* distinct, so a permutation of wnids.txt */
        cr_assert_eq(index_of(devkit, i, devkit[i]), -1, "devkit-wnids.txt:%zu", i + 1);
    char **sets[] = {rset, aset};
    size_t ns[] = {n_r, n_a};
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(ns[k], 200);
        for (size_t i = 0; i < ns[k]; i++) {
            cr_assert_geq(index_of(wnids, n_wnids, sets[k][i]), 0, "%s", sets[k][i]);
            if (i)
                cr_assert_lt(strcmp(sets[k][i - 1], sets[k][i]), 0);
        }
    }
}

/* ---- imagenet: synset folders ------------------------------------------------------------ */

TestSuite(data_inet, .init = setup, .fini = teardown);

/* ROOT/<wnid>/img.png for the wnids given, class k's image (k % 5 + 1) x 2. */
static void write_folders(const char *root, char **list, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        char rel[256];
        snprintf(rel, sizeof rel, "%s/%s/ILSVRC2012_val_%08zu.png", root, list[k], k + 1);
        tdu_write_png(tdu_path(dir, rel), (int)(k % 5) + 1, 2, (unsigned)k);
    }
}

Test(data_inet, val_in_synset_folders)
{
    write_folders("val", wnids, n_wnids);
    /* A second image of class 3, as a JPEG named the way ImageNet names it. */
    tdu_write_jpeg(tdu_path(dir, "val/n01491361/extra/ILSVRC2012_val_09999999.JPEG"), 16, 8, 7);
    ckd_dataset *ds = open_ok("{\"reader\": \"imagenet\", \"path\": \"val\"}");
    cr_assert_eq(ckd_dataset_size(ds), 1001);
    cr_assert_eq(ckd_dataset_n_classes(ds), 1000);
    cr_assert_str_eq(ckd_dataset_class_name(ds, 0), "tench");
    cr_assert_str_eq(ckd_dataset_class_name(ds, 999), "toilet paper");
    cr_assert_eq(ckd_dataset_n_templates(ds), 80);
    cr_assert_str_eq(ckd_dataset_template(ds, 0), "a bad photo of a {}.");
    expect_sample(ds, 0, 1, 2, 0, 80, prompt0("tench"));
    expect_sample(ds, 3, 4, 2, 3, 80, prompt0(names[3]));
    expect_sample(ds, 4, 16, 8, 3, 80, prompt0(names[3]));
    expect_sample(ds, 1000, 5, 2, 999, 80, prompt0("toilet paper"));
    tdu_assert_has(ckd_dataset_source(ds), "val", "folders layout", "1000 classes");
    ckd_dataset_close(ds);
}

Test(data_inet, r200_and_a200_subsets)
{
    const char *keys[] = {"r200", "a200"};
    char **sets[] = {rset, aset};
    for (int k = 0; k < 2; k++) {
        char root[16], spec[128];
        snprintf(root, sizeof root, "%s", keys[k]);
        write_folders(root, sets[k], 200);
        snprintf(spec, sizeof spec,
                 "{\"reader\": \"imagenet\", \"path\": \"%s\", \"classes\": \"%s\"}", root,
                 keys[k]);
        ckd_dataset *ds = open_ok(spec);
        cr_assert_eq(ckd_dataset_size(ds), 200);
        cr_assert_eq(ckd_dataset_n_classes(ds), 200);
        for (size_t c = 0; c < 200; c += 37) {
            const char *want = names[index_of(wnids, n_wnids, sets[k][c])];
            cr_assert_str_eq(ckd_dataset_class_name(ds, c), want, "%s class %zu", keys[k], c);
            expect_sample(ds, c, (int)(c % 5) + 1, 2, (int)c, 80, prompt0(want));
        }
        ckd_dataset_close(ds);

        /* Without the subset, 800 classes have no folder; the message says
         * which subsets exist. */
        snprintf(spec, sizeof spec, "{\"reader\": \"imagenet\", \"path\": \"%s\"}", root);
        tdu_open_fails(spec, dir, root, "800 of the 1000 classes", "wnids.txt", "have no folder",
                       "\"r200\" or \"a200\"");
    }
    /* A synset of ImageNet-1k outside the subset, and a folder that is no
     * synset at all. */
    const char *outside = NULL;
    for (size_t i = 0; !outside && i < n_wnids; i++)
        if (index_of(rset, n_r, wnids[i]) < 0)
            outside = wnids[i];
    char rel[64];
    snprintf(rel, sizeof rel, "r200/%s/x.png", outside);
    tdu_write_png(tdu_path(dir, rel), 2, 2, 0);
    tdu_open_fails("{\"reader\": \"imagenet\", \"path\": \"r200\", \"classes\": \"r200\"}", dir,
                   outside, "is not one of the 200 classes", "imagenet-r-wnids.txt");
    tdu_write_png(tdu_path(dir, "a200/cats/x.png"), 2, 2, 0);
    tdu_open_fails("{\"reader\": \"imagenet\", \"path\": \"a200\", \"classes\": \"a200\"}", dir,
                   "a200/cats", "expected synset folders named by wnid");
}

Test(data_inet, own_class_list_names_and_templates)
{
    char *three[] = {wnids[7], wnids[2], wnids[500]}; /* label order is the list's */
    write_folders("val", three, 3);
    char list[64], rel[128];
    snprintf(list, sizeof list, "%s\r\n\n%s\n%s\n", three[0], three[1], three[2]);
    tdu_write_str(tdu_path(dir, "mine.txt"), list);
    ckd_dataset *ds = open_ok("{\"reader\": \"imagenet\", \"path\": \"val\","
                              " \"classes\": \"mine.txt\"}");
    cr_assert_eq(ckd_dataset_n_classes(ds), 3);
    cr_assert_str_eq(ckd_dataset_class_name(ds, 0), names[7]);
    cr_assert_str_eq(ckd_dataset_class_name(ds, 2), names[500]);
    /* Folders come sorted (n01484850 first), labels from the list. */
    expect_sample(ds, 0, 2, 2, 1, 80, prompt0(names[2]));
    expect_sample(ds, 1, 1, 2, 0, 80, prompt0(names[7]));
    ckd_dataset_close(ds);

    tdu_write_str(tdu_path(dir, "n3.txt"), "cock\ngreat white shark\nconvertible\n");
    tdu_write_str(tdu_path(dir, "t.txt"), "a photo of a {}.\nart of the {}.\n");
    ds = open_ok("{\"reader\": \"imagenet\", \"path\": \"val\", \"classes\": \"mine.txt\","
                 " \"classnames\": \"n3.txt\", \"templates\": \"t.txt\"}");
    cr_assert_eq(ckd_dataset_n_templates(ds), 2);
    expect_sample(ds, 1, 1, 2, 0, 2, "a photo of a cock.");
    ckd_dataset_close(ds);

    tdu_write_str(tdu_path(dir, "n2.txt"), "one\ntwo\n");
    tdu_open_fails("{\"reader\": \"imagenet\", \"path\": \"val\", \"classes\": \"mine.txt\","
                   " \"classnames\": \"n2.txt\"}",
                   dir, "n2.txt", "2 class names", "one per class of", "(3) or 1000");
    tdu_write_str(tdu_path(dir, "bad.txt"), "n01440764\nn99999999\n");
    tdu_open_fails("{\"reader\": \"imagenet\", \"path\": \"val\", \"classes\": \"bad.txt\"}", dir,
                   "bad.txt", "class 2", "n99999999", "expected a wnid of ImageNet-1k");
    tdu_write_str(tdu_path(dir, "dup.txt"), "n01440764\nn01440764\n");
    tdu_open_fails("{\"reader\": \"imagenet\", \"path\": \"val\", \"classes\": \"dup.txt\"}", dir,
                   "dup.txt", "class 2", "is class 1 already");
    tdu_write_str(tdu_path(dir, "nt.txt"), "a photo\n");
    tdu_open_fails("{\"reader\": \"imagenet\", \"path\": \"val\", \"classes\": \"mine.txt\","
                   " \"templates\": \"nt.txt\"}", dir, "nt.txt", "template 1", "no \"{}\"");
    tdu_open_fails("{\"reader\": \"imagenet\", \"path\": \"nowhere\"}", dir, "nowhere",
                   "cannot open");
    snprintf(rel, sizeof rel, "val/%s/notes.txt", three[0]);
    tdu_write_str(tdu_path(dir, rel), "x");
    snprintf(rel, sizeof rel, "val/%s/ILSVRC2012_val_00000001.png", three[0]);
    remove(tdu_path(dir, rel));
    snprintf(rel, sizeof rel, "val/%s", three[0]);
    tdu_open_fails("{\"reader\": \"imagenet\", \"path\": \"val\", \"classes\": \"mine.txt\"}", dir,
                   rel, "has no images");
}

Test(data_inet, shipped_files_found_from_the_data_dir)
{
    char *one[] = {wnids[0]};
    write_folders("val", one, 1);
    tdu_write_str(tdu_path(dir, "one.txt"), "n01440764\n");
    const char *spec = "{\"reader\": \"imagenet\", \"path\": \"val\", \"classes\": \"one.txt\"}";
    /* In the sources CLIPKD_DATA_DIR names models/clip; recipes/ is two up. */
    char clip[4096];
    snprintf(clip, sizeof clip, "%s/models/clip/", getenv("CLIPKD_DATA_DIR"));
    cr_assert_eq(setenv("CLIPKD_DATA_DIR", clip, 1), 0);
    ckd_dataset *ds = open_ok(spec);
    cr_assert_str_eq(ckd_dataset_class_name(ds, 0), "tench");
    ckd_dataset_close(ds);
    cr_assert_eq(setenv("CLIPKD_DATA_DIR", dir, 1), 0);
    tdu_open_fails(spec, dir, "recipes/eval/imagenet/wnids.txt", "CLIPKD_DATA_DIR");
}

/* ---- imagenet: flat folder + ground truth ------------------------------------------------ */

/* Six images ILSVRC2012_val_0000000{1..6}.JPEG (PNG inside, k x 3) of the
 * classes (sorted-1k index) in `cls`. */
static const int cls6[6] = {0, 999, 417, 3, 417, 65};

static void write_flat(void)
{
    for (int k = 1; k <= 6; k++) {
        char rel[64];
        snprintf(rel, sizeof rel, "flat/ILSVRC2012_val_%08d.JPEG", k);
        tdu_write_png(tdu_path(dir, rel), k, 3, (unsigned)k);
    }
    tdu_write_str(tdu_path(dir, "flat/README"), "not an image");
}

static void expect_flat(const char *gt, const char *format)
{
    char spec[256];
    snprintf(spec, sizeof spec,
             "{\"reader\": \"imagenet\", \"path\": \"flat\", \"layout\": \"flat\","
             " \"ground_truth\": \"%s\", \"ground_truth_format\": \"%s\"}", gt, format);
    ckd_dataset *ds = open_ok(spec);
    cr_assert_eq(ckd_dataset_size(ds), 6, "%s", gt);
    cr_assert_eq(ckd_dataset_n_classes(ds), 1000);
    for (int k = 0; k < 6; k++)
        expect_sample(ds, (size_t)k, k + 1, 3, cls6[k], 80, prompt0(names[cls6[k]]));
    ckd_dataset_close(ds);
}

Test(data_inet, flat_with_each_ground_truth)
{
    write_flat();
    char devkit_gt[256] = "", wnid_gt[256] = "", caffe[512] = "";
    char kaggle[1024] = "ImageId,PredictionString\r\n";
    for (int k = 6; k >= 1; k--) { /* Kaggle's rows are in no particular order */
        size_t n = strlen(kaggle);
        snprintf(kaggle + n, sizeof kaggle - n, "ILSVRC2012_val_%08d,%s 1 2 3 4 %s 5 6 7 8\r\n", k,
                 wnids[cls6[k - 1]], wnids[cls6[k - 1]]);
    }
    for (int k = 1; k <= 6; k++) {
        int id = index_of(devkit, n_devkit, wnids[cls6[k - 1]]) + 1;
        size_t n = strlen(devkit_gt);
        snprintf(devkit_gt + n, sizeof devkit_gt - n, "%d\n", id);
        n = strlen(wnid_gt);
        snprintf(wnid_gt + n, sizeof wnid_gt - n, "%s\n", wnids[cls6[k - 1]]);
        n = strlen(caffe);
        snprintf(caffe + n, sizeof caffe - n, "val/ILSVRC2012_val_%08d.JPEG %d\n", k,
                 cls6[k - 1]);
    }
    tdu_write_str(tdu_path(dir, "devkit.txt"), devkit_gt);
    tdu_write_str(tdu_path(dir, "synsets.txt"), wnid_gt);
    tdu_write_str(tdu_path(dir, "LOC_val_solution.csv"), kaggle);
    tdu_write_str(tdu_path(dir, "val.txt"), caffe);
    /* ILSVRC2012_ID 1 is the kit fox, class 278 among the sorted wnids. */
    cr_assert_eq(index_of(wnids, n_wnids, devkit[0]), 278);
    const char *files[] = {"devkit.txt", "synsets.txt", "LOC_val_solution.csv", "val.txt"};
    const char *formats[] = {"devkit", "wnids", "kaggle", "caffe"};
    for (int f = 0; f < 4; f++) {
        expect_flat(files[f], "auto");
        expect_flat(files[f], formats[f]);
    }
}

Test(data_inet, flat_bad_ground_truth)
{
    write_flat();
    const char *spec = "{\"reader\": \"imagenet\", \"path\": \"flat\", \"layout\": \"flat\","
                       " \"ground_truth\": \"gt.txt\"}";
    tdu_write_str(tdu_path(dir, "gt.txt"), "1\n2\n1001\n4\n5\n6\n");
    tdu_open_fails(spec, dir, "gt.txt:3:", "ILSVRC2012_ID from 1 to 1000", "\"1001\"");
    tdu_write_str(tdu_path(dir, "gt.txt"), "1\n2\n3\n4\n5\n6\n7\n");
    tdu_open_fails(spec, dir, "gt.txt:7:", "no image ILSVRC2012_val_00000007", "1 of the 7 lines");
    tdu_write_str(tdu_path(dir, "gt.txt"), "1\n2\n3\n4\n5\n");
    tdu_open_fails(spec, dir, "ILSVRC2012_val_00000006.JPEG", "has no line in", "gt.txt",
                   "devkit format, 5 lines");
    tdu_write_str(tdu_path(dir, "gt.txt"), "n01440764\nn01440764\nn0144076\n");
    tdu_open_fails(spec, dir, "gt.txt:3:", "a wnid such as", "\"n0144076\"");
    tdu_write_str(tdu_path(dir, "gt.txt"), "ImageId,PredictionString\nILSVRC2012_val_00000001\n");
    tdu_open_fails(spec, dir, "gt.txt:2:", "LOC_val_solution.csv");
    tdu_write_str(tdu_path(dir, "gt.txt"), "a.JPEG 5\nb.JPEG 1000\n");
    tdu_open_fails(spec, dir, "gt.txt:2:", "INDEX from 0 to 999");
    tdu_write_str(tdu_path(dir, "gt.txt"), "a.JPEG 5\na.png 6\n");
    tdu_open_fails(spec, dir, "gt.txt:2:", "image a has a class already (line 1)");
    tdu_write_str(tdu_path(dir, "gt.txt"), "what is this\n");
    tdu_open_fails("{\"reader\": \"imagenet\", \"path\": \"flat\", \"layout\": \"flat\","
                   " \"ground_truth\": \"gt.txt\", \"ground_truth_format\": \"devkit\"}",
                   dir, "gt.txt:1:", "ILSVRC2012_ID");
    tdu_write_str(tdu_path(dir, "gt.txt"), "nothing-here\n");
    tdu_open_fails(spec, dir, "gt.txt:1:", "cannot tell the ground-truth format");
    tdu_write_str(tdu_path(dir, "one.txt"), "n01440764\n");
    tdu_write_str(tdu_path(dir, "gt.txt"), "1.JPEG 0\n2.JPEG 1\n");
    tdu_open_fails("{\"reader\": \"imagenet\", \"path\": \"flat\", \"layout\": \"flat\","
                   " \"ground_truth\": \"gt.txt\", \"classes\": \"one.txt\"}", dir,
                   "ILSVRC2012_val_00000001.JPEG", "has no line");
    tdu_open_fails("{\"reader\": \"imagenet\", \"path\": \"flat\", \"layout\": \"flat\"}", dir,
                   "needs \"ground_truth\"");
    tdu_open_fails("{\"reader\": \"imagenet\", \"path\": \"flat\", \"ground_truth\": \"gt.txt\"}",
                   dir, "ground_truth", "only the flat layout");
}

Test(data_inet, flat_class_outside_the_list)
{
    write_flat();
    char gt[512] = "";
    for (int k = 1; k <= 6; k++) {
        size_t n = strlen(gt);
        snprintf(gt + n, sizeof gt - n, "ILSVRC2012_val_%08d.JPEG %d\n", k, k == 4 ? 7 : 0);
    }
    tdu_write_str(tdu_path(dir, "val.txt"), gt);
    tdu_write_str(tdu_path(dir, "one.txt"), "n01440764\n");
    char what[128];
    snprintf(what, sizeof what, "ILSVRC2012_val_00000004.JPEG is of synset %s", wnids[7]);
    tdu_open_fails("{\"reader\": \"imagenet\", \"path\": \"flat\", \"layout\": \"flat\","
                   " \"ground_truth\": \"val.txt\", \"classes\": \"one.txt\"}", dir, "val.txt:4:",
                   what, "not one of the 1 classes of", "one.txt");
}

/* ---- imagenet: ImageNet-V2 -------------------------------------------------------------- */

Test(data_inet, v2_numbered_folders)
{
    for (int k = 0; k < 1000; k++) {
        char rel[64];
        snprintf(rel, sizeof rel, "v2/%d/img-%d.jpeg", k, k);
        tdu_write_png(tdu_path(dir, rel), k % 7 + 1, 1, (unsigned)k);
    }
    ckd_dataset *ds = open_ok("{\"reader\": \"imagenet\", \"path\": \"v2\", \"layout\": \"v2\"}");
    cr_assert_eq(ckd_dataset_size(ds), 1000);
    /* Numeric order: folder "10" is class 10, and sample 10, not sample 2. */
    int probe[] = {0, 2, 10, 100, 999};
    for (size_t i = 0; i < sizeof probe / sizeof *probe; i++) {
        int k = probe[i];
        expect_sample(ds, (size_t)k, k % 7 + 1, 1, k, 80, prompt0(names[k]));
    }
    ckd_dataset_close(ds);

    tdu_write_png(tdu_path(dir, "v2/010/x.png"), 1, 1, 0);
    tdu_open_fails("{\"reader\": \"imagenet\", \"path\": \"v2\", \"layout\": \"v2\"}", dir,
                   "v2/010", "expected class folders named 0 to 999");
    tdu_rmrf(tdu_path(dir, "v2/010"));
    tdu_rmrf(tdu_path(dir, "v2/17"));
    char first[64];
    snprintf(first, sizeof first, "the first 17 (%s)", wnids[17]);
    tdu_open_fails("{\"reader\": \"imagenet\", \"path\": \"v2\", \"layout\": \"v2\"}", dir,
                   "1 of the 1000 classes", first);
}

/* ---- COCO-5k and Flickr30k-1k ------------------------------------------------------------ */

TestSuite(data_evalrt, .init = setup, .fini = teardown);

/* A Karpathy-split JSON of 3 test images (the second with 6 sentences, as
 * some COCO images have), a val and a train image. */
static void write_karpathy(const char *file, const char *filepath, int short_one)
{
    json_t *images = json_array();
    const char *splits[] = {"test", "val", "test", "train", "test"};
    for (int i = 0; i < 5; i++) {
        char fn[64], rel[128];
        snprintf(fn, sizeof fn, "im%d.jpg", i);
        snprintf(rel, sizeof rel, "%s%s%s", filepath ? filepath : "", filepath ? "/" : "", fn);
        tdu_write_png(tdu_path(dir, rel), i + 1, 2, (unsigned)i);
        json_t *sent = json_array();
        int ns = i == 2 ? 6 : (short_one && i == 4 ? 4 : 5);
        for (int s = 0; s < ns; s++) {
            char raw[64];
            snprintf(raw, sizeof raw, "image %d, sentence %d", i, s);
            json_array_append_new(sent, json_pack("{s:s}", "raw", raw));
        }
        json_t *im = json_pack("{s:s, s:s, s:o}", "filename", fn, "split", splits[i],
                               "sentences", sent);
        if (filepath)
            json_object_set_new(im, "filepath", json_string(filepath));
        json_array_append_new(images, im);
    }
    json_t *root = json_pack("{s:o, s:s}", "images", images, "dataset", "coco");
    cr_assert_eq(json_dump_file(root, tdu_path(dir, file), 0), 0);
    json_decref(root);
}

Test(data_evalrt, five_captions_per_test_image)
{
    write_karpathy("dataset_coco.json", "val2014", 0);
    write_karpathy("dataset_flickr30k.json", NULL, 0);
    const char *specs[] = {
        "{\"reader\": \"retrieval\", \"path\": \"dataset_coco.json\", \"max_captions\": 5,"
        " \"min_captions\": 5, \"expect_images\": 3}",
        "{\"reader\": \"retrieval\", \"path\": \"dataset_flickr30k.json\", \"max_captions\": 5,"
        " \"min_captions\": 5, \"expect_images\": 3}",
    };
    for (int k = 0; k < 2; k++) {
        ckd_dataset *ds = open_ok(specs[k]);
        cr_assert_eq(ckd_dataset_size(ds), 3);
        int test_images[] = {0, 2, 4};
        for (size_t i = 0; i < 3; i++) {
            char first[64];
            snprintf(first, sizeof first, "image %d, sentence 0", test_images[i]);
            expect_sample(ds, i, test_images[i] + 1, 2, -1, 5, first);
        }
        ckd_dataset_close(ds);
    }
    /* Without max_captions the sixth sentence stays. */
    ckd_dataset *ds = open_ok("{\"reader\": \"retrieval\", \"path\": \"dataset_coco.json\"}");
    expect_sample(ds, 1, 3, 2, -1, 6, "image 2, sentence 0");
    ckd_dataset_close(ds);
}

Test(data_evalrt, protocol_violations)
{
    write_karpathy("dataset_coco.json", "val2014", 1);
    tdu_open_fails("{\"reader\": \"retrieval\", \"path\": \"dataset_coco.json\","
                   " \"max_captions\": 5, \"min_captions\": 5}",
                   dir, "dataset_coco.json", "images[4] (im4.jpg)", "4 sentences",
                   "needs 5 per image");
    tdu_open_fails("{\"reader\": \"retrieval\", \"path\": \"dataset_coco.json\","
                   " \"expect_images\": 5000}",
                   dir, "dataset_coco.json", "3 images in the split \"test\"", "expected 5000");
    tdu_open_fails("{\"reader\": \"retrieval\", \"path\": \"dataset_coco.json\","
                   " \"max_captions\": 3, \"min_captions\": 5}",
                   dir, "min_captions", "more than \"max_captions\"");
}

/* ---- CC3M / CC12M as CLIP-KD ships them ----------------------------------------------------- */

TestSuite(data_cc, .init = setup, .fini = teardown);

Test(data_cc, clip_kd_csv_with_absolute_paths)
{
    char table[2048] = "title\tfilepath\n";
    for (int k = 0; k < 3; k++) {
        char rel[64];
        snprintf(rel, sizeof rel, "cc3m/training/%07d.jpg", k);
        tdu_write_png(tdu_path(dir, rel), k + 2, 2, (unsigned)k);
        size_t n = strlen(table);
        snprintf(table + n, sizeof table - n, "a caption for image %d\t%s\n", k,
                 tdu_path(dir, rel));
    }
    tdu_write_str(tdu_path(dir, "lists/cc3m_train.csv"), table);
    ckd_dataset *ds = open_ok("{\"reader\": \"csv\", \"path\": \"lists/cc3m_train.csv\"}");
    cr_assert_eq(ckd_dataset_size(ds), 3);
    for (size_t k = 0; k < 3; k++) {
        char cap[64];
        snprintf(cap, sizeof cap, "a caption for image %zu", k);
        expect_sample(ds, k, (int)k + 2, 2, -1, 1, cap);
    }
    ckd_dataset_close(ds);
}

Test(data_cc, img2dataset_shards)
{
    /* img2dataset writes NNNNN.tar holding NNNNNKKKK.jpg, .txt and .json
     * (and a .parquet and _stats.json beside the shards). */
    for (int s = 0; s < 2; s++) {
        tdu_member m[6];
        uint8_t *jpg[2];
        char nm[6][32], txt[2][64];
        for (int i = 0; i < 2; i++) {
            int k = s * 10000 + i;
            size_t len;
            jpg[i] = tdu_jpeg(8 + i * 8, 8, (unsigned)k, &len);
            snprintf(nm[3 * i], sizeof nm[0], "%09d.jpg", k);
            snprintf(nm[3 * i + 1], sizeof nm[0], "%09d.txt", k);
            snprintf(nm[3 * i + 2], sizeof nm[0], "%09d.json", k);
            snprintf(txt[i], sizeof txt[0], "caption of sample %d", k);
            m[3 * i] = (tdu_member){nm[3 * i], jpg[i], len};
            m[3 * i + 1] = (tdu_member){nm[3 * i + 1], txt[i], strlen(txt[i])};
            m[3 * i + 2] = (tdu_member){nm[3 * i + 2], "{\"status\": \"success\"}", 21};
        }
        char shard[32];
        snprintf(shard, sizeof shard, "cc12m/%05d.tar", s);
        tdu_write_tar(tdu_path(dir, shard), m, 6, 0);
        snprintf(shard, sizeof shard, "cc12m/%05d_stats.json", s);
        tdu_write_str(tdu_path(dir, shard), "{}");
        free(jpg[0]);
        free(jpg[1]);
    }
    ckd_dataset *ds =
        open_ok("{\"reader\": \"webdataset\", \"shards\": \"cc12m/{00000..00001}.tar\"}");
    cr_assert_eq(ckd_dataset_size(ds), 4);
    expect_sample(ds, 0, 8, 8, -1, 1, "caption of sample 0");
    expect_sample(ds, 1, 16, 8, -1, 1, "caption of sample 1");
    expect_sample(ds, 3, 16, 8, -1, 1, "caption of sample 10001");
    ckd_dataset_close(ds);
}

/* CLIP-KD trains on CC3M and CC12M together: two tables, each with its own
 * image root, under a datasets folder named by an environment variable. */
static void write_cc_table(const char *name, int n, int w)
{
    char table[1024] = "title\tfilepath\n", rel[96];
    for (int k = 0; k < n; k++) {
        snprintf(rel, sizeof rel, "datasets/%s/img/%d.png", name, k);
        tdu_write_png(tdu_path(dir, rel), w, 2, (unsigned)k);
        size_t len = strlen(table);
        snprintf(table + len, sizeof table - len, "%s caption %d\timg/%d.png\n", name, k, k);
    }
    snprintf(rel, sizeof rel, "datasets/%s/train.csv", name);
    tdu_write_str(tdu_path(dir, rel), table);
}

#define CC_CONCAT                                                                                             \
    "{\"reader\": \"concat\", \"parts\": ["                                                                   \
    " {\"reader\": \"csv\", \"path\": \"$CKD_TEST_DATASETS/cc3m/train.csv\", \"root\": \"$CKD_TEST_DATASETS/cc3m\"}," \
    " {\"reader\": \"csv\", \"path\": \"$CKD_TEST_DATASETS/cc12m/train.csv\", \"root\": \"$CKD_TEST_DATASETS/cc12m\"}]}"

Test(data_cc, two_tables_concatenated_under_a_datasets_variable)
{
    write_cc_table("cc3m", 2, 3);
    write_cc_table("cc12m", 3, 5);
    setenv("CKD_TEST_DATASETS", tdu_path(dir, "datasets"), 1);
    ckd_dataset *ds = open_ok(CC_CONCAT);
    cr_assert_eq(ckd_dataset_size(ds), 5);
    cr_expect_str_eq(ckd_dataset_reader(ds), "concat");
    cr_expect(strstr(ckd_dataset_source(ds), " + ") != NULL, "%s", ckd_dataset_source(ds));
    expect_sample(ds, 0, 3, 2, -1, 1, "cc3m caption 0");
    expect_sample(ds, 1, 3, 2, -1, 1, "cc3m caption 1");
    expect_sample(ds, 2, 5, 2, -1, 1, "cc12m caption 0");
    expect_sample(ds, 4, 5, 2, -1, 1, "cc12m caption 2");
    ckd_sample s;
    ckd_error err;
    cr_expect_eq(ckd_dataset_get(ds, 5, &s, &err), -1, "past the end");
    ckd_dataset_close(ds);
    /* "limit" applies to the whole, and to each part. */
    ds = open_ok("{\"reader\": \"concat\", \"limit\": 3, \"parts\": ["
                 " {\"reader\": \"csv\", \"path\": \"$CKD_TEST_DATASETS/cc3m/train.csv\", \"limit\": 1},"
                 " {\"reader\": \"csv\", \"path\": \"$CKD_TEST_DATASETS/cc12m/train.csv\"}]}");
    cr_assert_eq(ckd_dataset_size(ds), 3);
    ckd_dataset_close(ds);
    unsetenv("CKD_TEST_DATASETS");
}

Test(data_cc, concat_bad_input)
{
    unsetenv("CKD_TEST_DATASETS");
    tdu_open_fails(CC_CONCAT, dir, "CKD_TEST_DATASETS", "not set");
    tdu_open_fails("{\"reader\": \"concat\", \"parts\": []}", dir, "parts", "at least one");
    tdu_open_fails("{\"reader\": \"concat\", \"parts\": [{\"reader\": \"csv\", \"pth\": \"x.csv\"}]}", dir,
                   "parts[0]", "did you mean \"path\"");
    tdu_open_fails("{\"reader\": \"concat\", \"parts\": [{\"reader\": \"csv\", \"path\": \"missing.csv\"}]}", dir,
                   "parts[0]", "missing.csv");
    /* A "$" that is not a variable at the start is an ordinary file name. */
    tdu_write_str(tdu_path(dir, "$5.csv"), "title\tfilepath\n");
    ckd_dataset *ds = open_ok("{\"reader\": \"csv\", \"path\": \"$5.csv\"}");
    cr_expect_eq(ckd_dataset_size(ds), 0);
    ckd_dataset_close(ds);
}
