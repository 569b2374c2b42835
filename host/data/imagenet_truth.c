/* Ground truth for ImageNet-1k's validation images in one flat folder
 * (ILSVRC2012_val_00000001.JPEG … ILSVRC2012_val_00050000.JPEG). Four files
 * are in common use, and each names the class differently:
 *   devkit  ILSVRC2012_validation_ground_truth.txt from the ILSVRC2012
 *           devkit: line k holds the ILSVRC2012_ID (1..1000) of image k.
 *           The IDs follow the devkit's meta.mat, not the sorted wnids, so
 *           they go through a table of the 1,000 wnids in ID order.
 *   wnids   one wnid per line, line k for image k (TensorFlow's
 *           imagenet_2012_validation_synset_labels.txt).
 *   kaggle  LOC_val_solution.csv from the Kaggle ImageNet localisation
 *           challenge: a header "ImageId,PredictionString", then
 *           "ILSVRC2012_val_00008726,n02119789 255 142 454 329 …" (the first
 *           word after the comma is the class; boxes follow).
 *   caffe   Caffe's val.txt: "ILSVRC2012_val_00000001.JPEG 65", the class a
 *           0-based index into the sorted wnids (a wnid is accepted too).
 * Every line is checked at open; a bad one is reported with its number and
 * what the format expects there. */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imagenet_internal.h"

int ckdd_inet_is_wnid(const char *s, size_t n)
{
    if (n != 9 || s[0] != 'n')
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

static int cmp_key(const void *key, const void *elem)
{
    return strcmp((const char *)key, *(char *const *)elem);
}

int32_t ckdd_inet_find(char *const *sorted, size_t n, const char *wnid)
{
    char *const *hit = bsearch(wnid, sorted, n, sizeof *sorted, cmp_key);
    return hit ? (int32_t)(hit - sorted) : -1;
}

enum { GT_DEVKIT, GT_WNIDS, GT_KAGGLE, GT_CAFFE };
static const char *const format_names[] = {"devkit", "wnids", "kaggle", "caffe"};

/* What a line of each format looks like, for messages. */
static const char *const format_expect[] = {
    "an ILSVRC2012_ID from 1 to 1000 (devkit ground truth)",
    "a wnid such as n01440764 (one per image, in image order)",
    "\"IMAGE_ID,WNID …\" (Kaggle LOC_val_solution.csv)",
    "\"FILE INDEX\" with INDEX from 0 to 999 or a wnid (Caffe val.txt)",
};

static int all_digits(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

/* A decimal in [lo, hi] written in at most 9 digits, or -1. */
static long small_int(const char *s, size_t n, long lo, long hi)
{
    if (!all_digits(s, n) || n > 9)
        return -1;
    long v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v >= lo && v <= hi ? v : -1;
}

static int detect(const char *line, size_t n)
{
    if (n >= 8 && !strncmp(line, "ImageId,", 8))
        return GT_KAGGLE;
    if (all_digits(line, n))
        return GT_DEVKIT;
    if (ckdd_inet_is_wnid(line, n))
        return GT_WNIDS;
    if (memchr(line, ' ', n) || memchr(line, '\t', n))
        return GT_CAFFE;
    return -1;
}

typedef struct parse_ctx {
    const char *path;
    int format;
    char *const *wnids1k;
    char **devkit;          /* wnids in ILSVRC2012_ID order (devkit format) */
    size_t images;          /* data lines so far: the image number of line-order formats */
} parse_ctx;

/* The class of a wnid as a sorted-1k index; an error names the line. */
static int32_t wnid_class(const parse_ctx *c, size_t lineno, const char *w, size_t n,
                          ckd_error *err)
{
    char buf[16];
    if (!ckdd_inet_is_wnid(w, n)) {
        ckd_errorf(err, "%s:%zu: expected %s, got \"%.*s\"", c->path, lineno,
                   format_expect[c->format], (int)(n > 40 ? 40 : n), w);
        return -1;
    }
    memcpy(buf, w, n);
    buf[n] = '\0';
    int32_t k = ckdd_inet_find(c->wnids1k, CKDD_INET_CLASSES, buf);
    if (k < 0)
        ckd_errorf(err, "%s:%zu: \"%s\" is not one of the 1,000 ImageNet-1k synsets", c->path,
                   lineno, buf);
    return k;
}

/* Parses one non-empty line into (stem, class). */
static int parse_line(parse_ctx *c, size_t lineno, const char *s, size_t n, ckdd_strvec *stems,
                      int32_t *k1, ckd_error *err)
{
    char stem[512];
    const char *bad = NULL;
    *k1 = -1;
    if (c->format == GT_DEVKIT || c->format == GT_WNIDS) {
        c->images++;
        snprintf(stem, sizeof stem, "ILSVRC2012_val_%08zu", c->images);
        if (c->format == GT_DEVKIT) {
            long id = small_int(s, n, 1, CKDD_INET_CLASSES);
            if (id < 0)
                bad = s;
            else
                *k1 = ckdd_inet_find(c->wnids1k, CKDD_INET_CLASSES, c->devkit[id - 1]);
        } else if ((*k1 = wnid_class(c, lineno, s, n, err)) < 0)
            return -1;
    } else {
        const char *sep = c->format == GT_KAGGLE ? memchr(s, ',', n) : s + strcspn(s, " \t");
        if (!sep || sep == s || sep >= s + n)
            bad = s;
        else {
            const char *name = s;
            size_t nlen = (size_t)(sep - s);
            /* Caffe lists may carry a folder; the flat folder matches by name. */
            for (size_t i = 0; i < nlen; i++)
                if (s[i] == '/')
                    name = s + i + 1;
            nlen = (size_t)(sep - name);
            const char *dot = memchr(name, '.', nlen);
            if (c->format == GT_CAFFE && dot)
                nlen = (size_t)(dot - name);
            const char *v = sep + 1;
            while (v < s + n && (*v == ' ' || *v == '\t'))
                v++;
            size_t vlen = strcspn(v, " \t");
            if (vlen > (size_t)(s + n - v))
                vlen = (size_t)(s + n - v);
            long idx = c->format == GT_CAFFE ? small_int(v, vlen, 0, CKDD_INET_CLASSES - 1) : -1;
            if (nlen == 0 || nlen >= sizeof stem)
                bad = s;
            else if (idx >= 0)
                *k1 = (int32_t)idx;
            else if (c->format == GT_CAFFE && all_digits(v, vlen))
                bad = s;
            else if ((*k1 = wnid_class(c, lineno, v, vlen, err)) < 0)
                return -1;
            if (!bad) {
                memcpy(stem, name, nlen);
                stem[nlen] = '\0';
            }
        }
    }
    if (bad)
        return ckd_errorf(err, "%s:%zu: expected %s, got \"%.*s\"", c->path, lineno,
                          format_expect[c->format], (int)(n > 60 ? 60 : n), s);
    if (ckdd_strvec_push(stems, stem, strlen(stem)) < 0)
        return ckd_errorf(err, "%s: out of memory", c->path);
    return 0;
}

static int cmp_line(const void *a, const void *b)
{
    const ckdd_inet_truth_line *x = a, *y = b;
    return strcmp(x->stem, y->stem);
}

static int load_devkit(parse_ctx *c, const char *devkit_file, ckd_error *err)
{
    size_t n;
    if (ckdd_read_lines(devkit_file, &c->devkit, &n, err) < 0)
        return -1;
    if (n != CKDD_INET_CLASSES) {
        ckd_strings_free(c->devkit, n);
        c->devkit = NULL;
        return ckd_errorf(err, "%s: expected the 1,000 wnids in ILSVRC2012_ID order, got %zu lines",
                          devkit_file, n);
    }
    return 0;
}

/* Splits the text into lines and parses every non-empty one. */
static int parse_all(parse_ctx *c, char *text, size_t len, ckdd_strvec *stems, int32_t **k1,
                     size_t **lines, const char *format, const char *devkit_file, ckd_error *err)
{
    size_t cap = 0, lineno = 0;
    int header_done = 0;
    for (char *p = text; p < text + len;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        char *e = nl ? nl : text + len;
        lineno++;
        char *next = nl ? nl + 1 : e;
        while (e > p && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
            e--;
        size_t n = (size_t)(e - p);
        if (n == 0) {
            p = next;
            continue;
        }
        *e = '\0';
        if (c->format < 0) {
            if (!strcmp(format, "auto") && (c->format = detect(p, n)) < 0)
                return ckd_errorf(err, "%s:%zu: cannot tell the ground-truth format from \"%.*s\""
                                  " (expected %s; %s; %s; or %s)", c->path, lineno,
                                  (int)(n > 40 ? 40 : n), p, format_expect[0], format_expect[1],
                                  format_expect[2], format_expect[3]);
            for (int f = 0; c->format < 0 && f < 4; f++)
                if (!strcmp(format, format_names[f]))
                    c->format = f;
            if (c->format == GT_DEVKIT && load_devkit(c, devkit_file, err) < 0)
                return -1;
        }
        if (c->format == GT_KAGGLE && !header_done) {
            header_done = 1;
            if (!strncmp(p, "ImageId,", 8)) {
                p = next;
                continue;
            }
        }
        if (stems->n == cap) {
            cap = cap ? cap * 2 : 1024;
            int32_t *k = realloc(*k1, cap * sizeof *k);
            if (k)
                *k1 = k;
            size_t *l = realloc(*lines, cap * sizeof *l);
            if (l)
                *lines = l;
            if (!k || !l)
                return ckd_errorf(err, "%s: out of memory", c->path);
        }
        (*lines)[stems->n] = lineno;
        if (parse_line(c, lineno, p, n, stems, &(*k1)[stems->n], err) < 0)
            return -1;
        p = next;
    }
    if (stems->n == 0)
        return ckd_errorf(err, "%s: no ground-truth lines in the file", c->path);
    return 0;
}

int ckdd_inet_truth_load(const char *path, const char *format, char *const *wnids1k,
                         const char *devkit_file, ckdd_inet_truth *out, ckd_error *err)
{
    memset(out, 0, sizeof *out);
    char *text;
    size_t len;
    if (ckdd_read_text(path, &text, &len, err) < 0)
        return -1;
    parse_ctx c = {path, -1, wnids1k, NULL, 0};
    ckdd_strvec stems = {0};
    int32_t *k1 = NULL;
    size_t *lines = NULL;
    int rc = parse_all(&c, text, len, &stems, &k1, &lines, format, devkit_file, err);
    if (rc == 0 && !(out->v = calloc(stems.n, sizeof *out->v)))
        rc = ckd_errorf(err, "%s: out of memory", path);
    if (rc == 0) {
        for (size_t i = 0; i < stems.n; i++) {
            out->v[i] = (ckdd_inet_truth_line){stems.v[i], k1[i], lines[i], 0};
            stems.v[i] = NULL; /* now owned by out */
        }
        out->n = stems.n;
        out->format = format_names[c.format];
        qsort(out->v, out->n, sizeof *out->v, cmp_line);
        for (size_t i = 1; i < out->n && rc == 0; i++)
            if (!strcmp(out->v[i - 1].stem, out->v[i].stem)) {
                const ckdd_inet_truth_line *a = &out->v[i - 1], *b = &out->v[i];
                rc = ckd_errorf(err, "%s:%zu: image %s has a class already (line %zu)", path,
                                a->line > b->line ? a->line : b->line, a->stem,
                                a->line < b->line ? a->line : b->line);
            }
    }
    ckdd_strvec_free(&stems);
    free(k1);
    free(lines);
    ckd_strings_free(c.devkit, c.devkit ? CKDD_INET_CLASSES : 0);
    free(text);
    if (rc < 0)
        ckdd_inet_truth_free(out);
    return rc;
}

ckdd_inet_truth_line *ckdd_inet_truth_find(const ckdd_inet_truth *t, const char *name)
{
    char stem[512];
    size_t n = strcspn(name, ".");
    if (n >= sizeof stem)
        return NULL;
    memcpy(stem, name, n);
    stem[n] = '\0';
    ckdd_inet_truth_line key = {stem, 0, 0, 0};
    return bsearch(&key, t->v, t->n, sizeof *t->v, cmp_line);
}

void ckdd_inet_truth_free(ckdd_inet_truth *t)
{
    for (size_t i = 0; t->v && i < t->n; i++)
        free(t->v[i].stem);
    free(t->v);
    memset(t, 0, sizeof *t);
}
