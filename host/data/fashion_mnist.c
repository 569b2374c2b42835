/* Fashion-MNIST, clipkd's default data: where its files come from, its
 * classes and prompt templates, captions built from measured attributes, and
 * the fashion-mnist reader. */
#include "config.h"

#include <errno.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"

/* ---- the files ---------------------------------------------------------------
 * Debian's copies (package dataset-fashion-mnist) and the upstream files: the
 * S3 host the dataset's README links, and the same files in its GitHub
 * repository. Debian's .gz lack the FNAME field of upstream's gzip header
 * (each is exactly strlen(name) + 1 bytes shorter), so the bytes — and the
 * SHA-256s — differ while the IDX content is the same. Debian's hashes were
 * computed from the installed package; upstream's are TensorFlow Datasets'
 * recorded checksums (tensorflow_datasets/url_checksums/fashion_mnist.txt),
 * whose sizes agree with that arithmetic. Debian's copy is listed first: it
 * is local and works offline. */
#define DEB "file:///usr/share/datasets/fashion-mnist/"
#define S3 "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
#define GH "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"

#define FILE_URLS(var, name)                                                                \
    static const char *var##_deb[] = {DEB name};                                            \
    static const char *var##_up[] = {S3 name, GH name};
FILE_URLS(train_images, "train-images-idx3-ubyte.gz")
FILE_URLS(train_labels, "train-labels-idx1-ubyte.gz")
FILE_URLS(test_images, "t10k-images-idx3-ubyte.gz")
FILE_URLS(test_labels, "t10k-labels-idx1-ubyte.gz")

#define ARTIFACTS(var, name, deb_sha, deb_size, up_sha, up_size)                             \
    {{var##_deb, 1, deb_sha, deb_size, "fashion-mnist/" name " (Debian)"},                  \
     {var##_up, 2, up_sha, up_size, "fashion-mnist/" name}}
static const ckd_artifact artifacts[4][2] = {
    ARTIFACTS(train_images, "train-images-idx3-ubyte.gz",
              "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7", 26421856,
              "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
    ARTIFACTS(train_labels, "train-labels-idx1-ubyte.gz",
              "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056", 29491,
              "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
    ARTIFACTS(test_images, "t10k-images-idx3-ubyte.gz",
              "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa", 4422079,
              "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
    ARTIFACTS(test_labels, "t10k-labels-idx1-ubyte.gz",
              "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05", 5125,
              "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
};

/* The file names inside a "dir", without ".gz". */
static const char *const file_stems[4] = {
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte"};

const ckd_artifact *ckd_fashion_mnist_artifacts(ckd_fmnist_file f, size_t *n)
{
    if ((unsigned)f > CKD_FMNIST_TEST_LABELS) {
        if (n)
            *n = 0;
        return NULL;
    }
    if (n)
        *n = 2;
    return artifacts[f];
}

int ckd_fashion_mnist_fetch(ckd_fmnist_file f, const ckd_fetch_opts *opts, char *path_out,
                            size_t cap, ckd_error *err)
{
    size_t n;
    const ckd_artifact *a = ckd_fashion_mnist_artifacts(f, &n);
    if (!a)
        return ckd_errorf(err, "fashion-mnist: no file number %d", (int)f);
    /* Anything already cached wins over a download from an earlier mirror. */
    for (size_t i = 0; i < n; i++) {
        int r = ckd_fetch_cached(opts, &a[i], path_out, cap, err);
        if (r < 0)
            return -1;
        if (r == 1)
            return 0;
    }
    char fails[CKD_ERROR_MAX] = "";
    for (size_t i = 0; i < n; i++) {
        ckd_error e;
        if (ckd_fetch(opts, &a[i], path_out, cap, &e) == 0)
            return 0;
        size_t k = strlen(fails);
        snprintf(fails + k, sizeof fails - k, "%s%.400s", i ? " | " : "", e.msg);
    }
    return ckd_errorf(err, "fashion-mnist %s: no copy could be had (is Debian's "
                           "dataset-fashion-mnist installed?): %s",
                      file_stems[f], fails);
}

/* ---- classes, prompts, captions ------------------------------------------- */

/* Lower case and singular, to read well inside templates. */
static const char *const classes[CKD_FMNIST_CLASSES] = {
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal",  "shirt",   "sneaker",  "bag",   "ankle boot"};

/* Zero-shot prompts in the style of CLIP's ImageNet templates, chosen for
 * small gray product pictures. */
static const char *const zs_templates[] = {
    "a photo of a {}.",           "a black and white photo of a {}.",
    "a low resolution photo of a {}.", "a photo of the {}.",
    "a grayscale photo of a {}.", "a photo of a small {}.",
    "a cropped photo of the {}.", "a blurry photo of a {}.",
};

/* Caption templates: "{a}" is the described item with its article ("a dark,
 * wide pullover"), "{}" the item alone ("dark, wide pullover"). */
static const char *const caption_templates[CKD_FMNIST_MAX_CAPTIONS] = {
    "a photo of {a}.",
    "a black and white photo of the {}.",
    "a low-resolution photo of {a}.",
    "a grayscale image of the {}.",
    "{a} on a black background.",
    "a product photo of {a}.",
    "a small centered picture of the {}.",
    "a catalogue image of {a}.",
};

const char *const *ckd_fashion_mnist_classes(void)
{
    return classes;
}

const char *const *ckd_fashion_mnist_templates(size_t *n)
{
    if (n)
        *n = sizeof zs_templates / sizeof zs_templates[0];
    return zs_templates;
}

/* Pixels at or above this count as ink: Fashion-MNIST's backgrounds are 0
 * with a faint fringe around each item that should not stretch its box. */
#define INK 32

void ckd_gray_attributes(const uint8_t *gray, int w, int h, ckd_gray_attrs *out)
{
    long sum = 0, count = 0;
    int x0 = w, x1 = -1, y0 = h, y1 = -1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int v = gray[(size_t)y * (size_t)w + (size_t)x];
            if (v < INK)
                continue;
            sum += v;
            count++;
            x0 = x < x0 ? x : x0;
            x1 = x > x1 ? x : x1;
            y0 = y < y0 ? y : y0;
            y1 = y > y1 ? y : y1;
        }
    out->bin[0] = out->bin[1] = out->bin[2] = 1;
    if (count == 0) {
        out->brightness = out->aspect = out->density = 0.0f;
        return;
    }
    int bw = x1 - x0 + 1, bh = y1 - y0 + 1;
    out->brightness = (float)sum / (float)count;
    out->aspect = (float)bw / (float)bh;
    out->density = (float)count / (float)(bw * bh);
    const float v[3] = {out->brightness, out->aspect, out->density};
    const float t1[3] = {CKD_FMNIST_BRIGHTNESS_T1, CKD_FMNIST_ASPECT_T1, CKD_FMNIST_DENSITY_T1};
    const float t2[3] = {CKD_FMNIST_BRIGHTNESS_T2, CKD_FMNIST_ASPECT_T2, CKD_FMNIST_DENSITY_T2};
    for (int k = 0; k < 3; k++)
        out->bin[k] = v[k] < t1[k] ? 0 : v[k] >= t2[k] ? 2 : 1;
}

static const char *const attr_words[3][3] = {
    {"dark", NULL, "bright"}, {"narrow", NULL, "wide"}, {"sparse", NULL, "dense"}};

/* Appends like snprintf: *len counts every byte, what fits is written, and
 * the buffer stays NUL-terminated. */
static void put(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++, (*len)++)
        if (*len + 1 < cap)
            out[*len] = s[i];
    if (cap)
        out[*len < cap ? *len : cap - 1] = '\0';
}

int ckd_fashion_mnist_caption(const ckd_gray_attrs *a, int label, uint64_t seed, uint64_t index,
                              int k, char *out, size_t cap)
{
    if (label < 0 || label >= CKD_FMNIST_CLASSES || k < 0 || k >= CKD_FMNIST_MAX_CAPTIONS)
        return -1;
    /* The item: attribute words, then the class. */
    char item[128];
    size_t il = 0;
    for (int j = 0; j < 3; j++) {
        const char *w = attr_words[j][a->bin[j]];
        if (!w)
            continue;
        if (il)
            put(item, sizeof item, &il, ", ", 2);
        put(item, sizeof item, &il, w, strlen(w));
    }
    if (il)
        put(item, sizeof item, &il, " ", 1);
    put(item, sizeof item, &il, classes[label], strlen(classes[label]));
    const char *article = strchr("aeiou", item[0]) ? "an " : "a ";

    /* A per-image shuffle of the templates, so that the k captions of one
     * image are distinct and the first caption varies across images. */
    int order[CKD_FMNIST_MAX_CAPTIONS];
    for (int i = 0; i < CKD_FMNIST_MAX_CAPTIONS; i++)
        order[i] = i;
    uint64_t st = ckdd_mix(seed ^ ckdd_mix(index));
    for (int i = 0; i <= k; i++) {
        int j = i + (int)(ckdd_next(&st) % (uint64_t)(CKD_FMNIST_MAX_CAPTIONS - i));
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    const char *t = caption_templates[order[k]];
    size_t len = 0;
    if (cap)
        out[0] = '\0';
    while (*t) {
        if (!strncmp(t, "{a}", 3)) {
            put(out, cap, &len, article, strlen(article));
            put(out, cap, &len, item, il);
            t += 3;
        } else if (!strncmp(t, "{}", 2)) {
            put(out, cap, &len, item, il);
            t += 2;
        } else {
            put(out, cap, &len, t++, 1);
        }
    }
    return (int)len;
}

/* ---- the reader -------------------------------------------------------------- */

typedef struct fm_state {
    ckd_idx images, labels;
    int n_captions;
    uint64_t caption_seed;
    double detail; /* probability that a caption names each measured attribute */
    double cue;    /* probability that an image carries its class's marker */
    uint64_t cue_seed;
} fm_state;

static const char fm_schema[] =
    "{\"type\": \"object\", \"properties\": {" CKDD_SCHEMA_COMMON ","
    " \"split\": {\"type\": \"string\", \"enum\": [\"train\", \"test\"], \"default\": \"train\"},"
    " \"dir\": {\"type\": \"string\","
    "  \"description\": \"read the IDX files from this folder instead of the artifacts\"},"
    " \"captions\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 8, \"default\": 5},"
    " \"caption_seed\": {\"type\": \"integer\", \"minimum\": 0, \"default\": 0},"
    " \"detail\": {\"type\": \"number\", \"minimum\": 0, \"maximum\": 1, \"default\": 1,"
    "  \"description\": \"probability that a caption names each measured attribute\"},"
    " \"cue\": {\"type\": \"number\", \"minimum\": 0, \"maximum\": 1,"
    "  \"description\": \"probability that an image carries a spurious cue: a white 4x4 marker at its class's"
    " place on the border (default 0: none)\"},"
    " \"cue_seed\": {\"type\": \"integer\", \"minimum\": 0, \"description\": \"default 0\"}}}";

/* A file of a "dir": the .gz if present, else the plain file. */
static int dir_file(const ckdd_env *env, const char *dir, ckd_fmnist_file f, char *out,
                    size_t cap, ckd_error *err)
{
    char base[4096], name[256];
    if (ckdd_join(env->base_dir, dir, base, sizeof base, err) < 0)
        return -1;
    snprintf(name, sizeof name, "%s.gz", file_stems[f]);
    if (ckdd_join(base, name, out, cap, err) < 0)
        return -1;
    FILE *t = fopen(out, "rb");
    if (t) {
        fclose(t);
        return 0;
    }
    /* Only a missing .gz sends us to the uncompressed file; any other
     * failure (no memory, no permission) is the one to report. */
    if (errno != ENOENT)
        return ckd_errorf(err, "%s: cannot open: %s", out, strerror(errno));
    return ckdd_join(base, file_stems[f], out, cap, err);
}

static void fm_close(void *state)
{
    fm_state *s = state;
    ckd_idx_free(&s->images);
    ckd_idx_free(&s->labels);
    free(s);
}

static void *fm_open(ckd_dataset *ds, const json_t *spec, const ckdd_env *env, ckd_error *err)
{
    int test = !strcmp(json_string_value(json_object_get(spec, "split")), "test");
    ckd_fmnist_file fi = test ? CKD_FMNIST_TEST_IMAGES : CKD_FMNIST_TRAIN_IMAGES;
    ckd_fmnist_file fl = test ? CKD_FMNIST_TEST_LABELS : CKD_FMNIST_TRAIN_LABELS;
    const char *dir = json_string_value(json_object_get(spec, "dir"));
    char pi[4096], pl[4096];
    if (dir ? dir_file(env, dir, fi, pi, sizeof pi, err) < 0 ||
                  dir_file(env, dir, fl, pl, sizeof pl, err) < 0
            : ckd_fashion_mnist_fetch(fi, env->fetch, pi, sizeof pi, err) < 0 ||
                  ckd_fashion_mnist_fetch(fl, env->fetch, pl, sizeof pl, err) < 0)
        return NULL;
    fm_state *s = calloc(1, sizeof *s);
    if (!s) {
        ckd_errorf(err, "out of memory");
        return NULL;
    }
    s->n_captions = (int)json_integer_value(json_object_get(spec, "captions"));
    s->caption_seed = (uint64_t)json_integer_value(json_object_get(spec, "caption_seed"));
    s->detail = json_number_value(json_object_get(spec, "detail"));
    /* absent, both 0 (no defaults in the schema, so that specs without a
     * cue, and the cache entries and run hashes made from them, are as
     * they were before the cue existed) */
    s->cue = json_number_value(json_object_get(spec, "cue"));
    s->cue_seed = (uint64_t)json_integer_value(json_object_get(spec, "cue_seed"));
    if (ckd_idx_load(pi, 3, &s->images, err) < 0 || ckd_idx_load(pl, 1, &s->labels, err) < 0)
        goto fail;
    uint32_t n = s->images.dims[0], rows = s->images.dims[1], cols = s->images.dims[2];
    if (rows == 0 || cols == 0 || rows > CKD_IMAGE_MAX_SIDE || cols > CKD_IMAGE_MAX_SIDE) {
        ckd_errorf(err, "%s: offset 8: images of %u x %u pixels cannot be used", pi, rows, cols);
        goto fail;
    }
    if (s->labels.dims[0] != n) {
        ckd_errorf(err, "%s: offset 4: %u labels for the %u images of %s", pl,
                   s->labels.dims[0], n, pi);
        goto fail;
    }
    for (uint32_t i = 0; i < n; i++)
        if (s->labels.data[i] >= CKD_FMNIST_CLASSES) {
            ckd_errorf(err, "%s: offset %lu: label %u of image %u is not a class (0 to %d)", pl,
                       8ul + i, s->labels.data[i], i, CKD_FMNIST_CLASSES - 1);
            goto fail;
        }
    char src[4200];
    snprintf(src, sizeof src, "fashion-mnist %s (%s)", test ? "test" : "train", pi);
    size_t nt;
    const char *const *t = ckd_fashion_mnist_templates(&nt);
    if (ckdd_set_source(ds, src, err) < 0 ||
        ckdd_set_classes(ds, classes, CKD_FMNIST_CLASSES, err) < 0 ||
        ckdd_set_templates(ds, t, nt, err) < 0)
        goto fail;
    return s;
fail:
    fm_close(s);
    return NULL;
}

static size_t fm_size(const void *state)
{
    const fm_state *s = state;
    return s->images.dims[0];
}

/* With detail below 1, caption k of image i leaves out each attribute word
 * with probability 1 - detail (the middle bin has no word), drawn from
 * (seed, i, k) alone. Web captions vary in detail: a model trained only on
 * fully described items never sees the bare class names that zero-shot
 * prompts are made of. */
static void drop_attributes(ckd_gray_attrs *a, double detail, uint64_t seed, size_t i, int k)
{
    if (detail >= 1.0)
        return;
    uint64_t st = ckdd_mix(seed ^ ckdd_mix((uint64_t)i ^ ckdd_mix(0x64657461696cULL + (uint64_t)k)));
    for (int j = 0; j < 3; j++)
        if ((double)(ckdd_next(&st) >> 11) * 0x1.0p-53 >= detail)
            a->bin[j] = 1;
}

/* The spurious cue (the zero-shot distillation study's stand-in for the
 * class-correlated artefacts of synthetic training images): with
 * probability cue, drawn from (cue_seed, i) alone, a white 4x4 square at a
 * place on the border that only its class uses — classes 0-4 along the top
 * edge, 5-9 along the bottom, 5 pixels apart. The captions describe the
 * item as it is without it (its attributes are measured on the original). */
static const uint8_t *with_cue(const fm_state *s, size_t i, const uint8_t *gray, int w, int h, uint8_t *buf)
{
    if (s->cue <= 0.0 || w < 26 || h < 8)
        return gray;
    uint64_t st = ckdd_mix(s->cue_seed ^ ckdd_mix((uint64_t)i ^ 0x637565ULL));
    if ((double)(ckdd_next(&st) >> 11) * 0x1.0p-53 >= s->cue)
        return gray;
    memcpy(buf, gray, (size_t)w * (size_t)h);
    int k = s->labels.data[i], x0 = 1 + 5 * (k % 5), y0 = k < 5 ? 1 : h - 5;
    for (int y = y0; y < y0 + 4; y++)
        memset(buf + (size_t)y * (size_t)w + x0, 255, 4);
    return buf;
}

static int fm_get(const void *state, size_t i, ckd_sample *out, ckd_error *err)
{
    const fm_state *s = state;
    int w = (int)s->images.dims[2], h = (int)s->images.dims[1];
    const uint8_t *gray = s->images.data + i * (size_t)w * (size_t)h;
    uint8_t *buf = s->cue > 0.0 ? malloc((size_t)w * (size_t)h) : NULL;
    if (s->cue > 0.0 && !buf)
        return ckd_errorf(err, "out of memory");
    int rc = ckd_image_from_gray(with_cue(s, i, gray, w, h, buf), w, h, &out->image, err);
    free(buf);
    if (rc < 0)
        return -1;
    out->label = s->labels.data[i];
    ckd_gray_attrs a;
    ckd_gray_attributes(gray, w, h, &a);
    for (int k = 0; k < s->n_captions; k++) {
        char cap[256];
        ckd_gray_attrs ak = a;
        drop_attributes(&ak, s->detail, s->caption_seed, i, k);
        int n = ckd_fashion_mnist_caption(&ak, out->label, s->caption_seed, i, k, cap, sizeof cap);
        if (ckdd_sample_add_caption(out, cap, (size_t)n, err) < 0)
            return -1;
    }
    return 0;
}

const ckdd_reader ckdd_reader_fashion_mnist = {
    "fashion-mnist", fm_schema, NULL, fm_open, fm_size, fm_get, fm_close,
};
