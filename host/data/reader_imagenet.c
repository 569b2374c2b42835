/* The imagenet reader: ImageNet-1k's validation set and the test sets made
 * after it, for zero-shot classification with CLIP's class names and
 * prompts. Three layouts:
 *   folders  ROOT/<wnid>/…/<image> (ImageNet-1k val sorted into synset
 *            folders, ImageNet-R, ImageNet-A);
 *   flat     ROOT/<image> with a ground-truth file (imagenet_truth.c);
 *   v2       ROOT/<0..999>/<image>, ImageNet-V2's folders named by the
 *            class's index among the sorted wnids. (Read as strings, as
 *            torchvision's ImageFolder does, "10" sorts before "2" and the
 *            labels come out wrong; here the names are numbers.)
 * Whatever the layout, an image's class is a wnid first and then its place
 * in the class list: the 1,000 sorted wnids, or a subset of them (the 200
 * classes of ImageNet-R or -A), so that labels, class names and zero-shot
 * prompts all follow the list. The class names, wnid lists and templates
 * ship with clipkd (recipes/eval/imagenet, see its SOURCES). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imagenet_internal.h"

/* A shipped ImageNet file (recipes/eval/imagenet/, see ckd_shipped_path). */
static int shipped(const char *file, char *out, size_t cap, ckd_error *err)
{
    char rel[256];
    snprintf(rel, sizeof rel, "recipes/eval/imagenet/%s", file);
    return ckd_shipped_path(rel, out, cap, err);
}

/* A file key of the spec (relative to the recipe), else the shipped file. */
static int spec_or_shipped(const json_t *spec, const char *key, const char *def,
                           const ckdd_env *env, char *out, size_t cap, ckd_error *err)
{
    const char *v = json_string_value(json_object_get(spec, key));
    return v ? ckdd_join(env->base_dir, v, out, cap, err) : shipped(def, out, cap, err);
}

typedef struct inet_ctx {
    char **all;                     /* the 1,000 wnids, sorted */
    size_t n_all;
    char all_path[4096];
    char **cls;                     /* the class list, in label order */
    size_t n_cls;
    char cls_path[4096];
    int32_t of1k[CKDD_INET_CLASSES]; /* class index of each sorted-1k index, or -1 */
    int32_t *k1;                    /* sorted-1k index of each class */
    unsigned char *seen;            /* per class: a folder was found (folders, v2) */
    char **names;
    size_t n_names;
    char **tmpl;
    size_t n_tmpl;
} inet_ctx;

static void ctx_free(inet_ctx *c)
{
    ckd_strings_free(c->all, c->n_all);
    ckd_strings_free(c->cls, c->n_cls);
    ckd_strings_free(c->names, c->n_names);
    ckd_strings_free(c->tmpl, c->n_tmpl);
    free(c->k1);
    free(c->seen);
}

static int load_all(inet_ctx *c, ckd_error *err)
{
    if (shipped("wnids.txt", c->all_path, sizeof c->all_path, err) < 0 ||
        ckdd_read_lines(c->all_path, &c->all, &c->n_all, err) < 0)
        return ckd_error_prefix(err, "the ImageNet-1k synsets (set CLIPKD_DATA_DIR to the folder "
                                "that holds recipes/eval)");
    if (c->n_all != CKDD_INET_CLASSES)
        return ckd_errorf(err, "%s: expected the %d ImageNet-1k wnids, got %zu lines",
                          c->all_path, CKDD_INET_CLASSES, c->n_all);
    for (size_t i = 0; i < c->n_all; i++)
        if (!ckdd_inet_is_wnid(c->all[i], strlen(c->all[i])) ||
            (i && strcmp(c->all[i - 1], c->all[i]) >= 0))
            return ckd_errorf(err, "%s: line %zu (\"%s\"): expected wnids, sorted and distinct",
                              c->all_path, i + 1, c->all[i]);
    return 0;
}

/* The class list: "1k", "r200", "a200" or a file of wnids. */
static int load_classes(inet_ctx *c, const json_t *spec, const ckdd_env *env, ckd_error *err)
{
    const char *v = json_string_value(json_object_get(spec, "classes"));
    static const struct {
        const char *key, *file;
    } named[] = {{"1k", "wnids.txt"}, {"r200", "imagenet-r-wnids.txt"},
                 {"a200", "imagenet-a-wnids.txt"}};
    int rc = 1;
    for (size_t i = 0; rc > 0 && i < sizeof named / sizeof *named; i++)
        if (!strcmp(v, named[i].key))
            rc = shipped(named[i].file, c->cls_path, sizeof c->cls_path, err);
    if (rc > 0)
        rc = ckdd_join(env->base_dir, v, c->cls_path, sizeof c->cls_path, err);
    if (rc < 0 || ckdd_read_lines(c->cls_path, &c->cls, &c->n_cls, err) < 0)
        return -1;
    if (c->n_cls == 0)
        return ckd_errorf(err, "%s: no wnids in the class list", c->cls_path);
    if (!(c->k1 = malloc(c->n_cls * sizeof *c->k1)) || !(c->seen = calloc(c->n_cls, 1)))
        return ckd_errorf(err, "out of memory");
    for (size_t i = 0; i < CKDD_INET_CLASSES; i++)
        c->of1k[i] = -1;
    for (size_t i = 0; i < c->n_cls; i++) {
        const char *w = c->cls[i];
        int32_t k = ckdd_inet_is_wnid(w, strlen(w)) ? ckdd_inet_find(c->all, c->n_all, w) : -1;
        if (k < 0)
            return ckd_errorf(err, "%s: class %zu (\"%s\"): expected a wnid of ImageNet-1k (%s)",
                              c->cls_path, i + 1, w, c->all_path);
        if (c->of1k[k] >= 0)
            return ckd_errorf(err, "%s: class %zu (\"%s\") is class %d already", c->cls_path,
                              i + 1, w, (int)c->of1k[k] + 1);
        c->of1k[k] = (int32_t)i;
        c->k1[i] = k;
    }
    return 0;
}

/* Class names: one per class of the list, or 1,000 in sorted-wnid order of
 * which the list's are taken (the shipped classnames.txt). */
static int load_names(inet_ctx *c, const json_t *spec, const ckdd_env *env, ckd_error *err)
{
    char p[4096];
    char **lines;
    size_t n;
    if (spec_or_shipped(spec, "classnames", "classnames.txt", env, p, sizeof p, err) < 0 ||
        ckdd_read_lines(p, &lines, &n, err) < 0)
        return -1;
    /* The shipped names are in sorted-wnid order whatever the list's order. */
    int pick = n == CKDD_INET_CLASSES && (!json_object_get(spec, "classnames") || n != c->n_cls);
    if (!pick && n == c->n_cls) {
        c->names = lines;
        c->n_names = n;
        return 0;
    }
    if (!pick) {
        ckd_strings_free(lines, n);
        return ckd_errorf(err, "%s: %zu class names; expected one per class of %s (%zu) or %d "
                          "in the order of %s", p, n, c->cls_path, c->n_cls, CKDD_INET_CLASSES,
                          c->all_path);
    }
    ckdd_strvec sv = {0};
    for (size_t i = 0; i < c->n_cls; i++)
        if (ckdd_strvec_push(&sv, lines[c->k1[i]], strlen(lines[c->k1[i]])) < 0) {
            ckdd_strvec_free(&sv);
            ckd_strings_free(lines, n);
            return ckd_errorf(err, "out of memory");
        }
    ckd_strings_free(lines, n);
    c->names = sv.v;
    c->n_names = sv.n;
    return 0;
}

/* The class of a folder that stands for sorted-1k index k; an error names
 * the folder. */
static int32_t folder_class(inet_ctx *c, const ckdd_labelled *l, const char *folder, int32_t k,
                            ckd_error *err)
{
    int32_t label = c->of1k[k];
    if (label < 0) {
        ckd_errorf(err, "%s/%s: synset %s is not one of the %zu classes of %s", l->root, folder,
                   c->all[k], c->n_cls, c->cls_path);
        return -1;
    }
    c->seen[label] = 1;
    return label;
}

/* Every class of the list must have had its folder. */
static int check_complete(const inet_ctx *c, const ckdd_labelled *l, const char *layout,
                          ckd_error *err)
{
    size_t missing = 0, first = 0;
    for (size_t i = c->n_cls; i-- > 0;)
        if (!c->seen[i]) {
            missing++;
            first = i;
        }
    if (!missing)
        return 0;
    const char *hint = "";
    if (c->n_cls == CKDD_INET_CLASSES && c->n_cls - missing == 200)
        hint = " (ImageNet-R and -A have 200 classes: \"classes\": \"r200\" or \"a200\")";
    const char *wnid = c->all[c->k1[first]];
    char name[32];
    if (!strcmp(layout, "v2"))
        snprintf(name, sizeof name, "%d (%s)", (int)c->k1[first], wnid);
    else
        snprintf(name, sizeof name, "%s", wnid);
    return ckd_errorf(err, "%s: %zu of the %zu classes of %s have no folder, the first %s%s",
                      l->root, missing, c->n_cls, c->cls_path, name, hint);
}

static int open_folders(inet_ctx *c, ckdd_labelled *l, const json_t *ext, ckd_error *err)
{
    ckdd_strvec dirs = {0};
    int rc = ckdd_list_dir(l->root, 1, &dirs, err);
    for (size_t i = 0; rc == 0 && i < dirs.n; i++) {
        const char *d = dirs.v[i];
        int32_t k = ckdd_inet_is_wnid(d, strlen(d)) ? ckdd_inet_find(c->all, c->n_all, d) : -1;
        int32_t label;
        if (k < 0)
            rc = ckd_errorf(err, "%s/%s: expected synset folders named by wnid (n01440764 …, "
                            "as in %s)", l->root, d, c->all_path);
        else if ((label = folder_class(c, l, d, k, err)) < 0)
            rc = -1;
        else
            rc = ckdd_labelled_class_folder(l, d, label, ext, err);
    }
    ckdd_strvec_free(&dirs);
    return rc < 0 ? rc : check_complete(c, l, "folders", err);
}

typedef struct v2_dir {
    long k;
    const char *name;
} v2_dir;

static int cmp_v2(const void *a, const void *b)
{
    const v2_dir *x = a, *y = b;
    return (x->k > y->k) - (x->k < y->k);
}

static int open_v2(inet_ctx *c, ckdd_labelled *l, const json_t *ext, ckd_error *err)
{
    ckdd_strvec dirs = {0};
    v2_dir *v = NULL;
    int rc = ckdd_list_dir(l->root, 1, &dirs, err);
    if (rc == 0 && dirs.n && !(v = malloc(dirs.n * sizeof *v)))
        rc = ckd_errorf(err, "out of memory");
    for (size_t i = 0; rc == 0 && i < dirs.n; i++) {
        const char *d = dirs.v[i];
        char *end;
        long k = strtol(d, &end, 10);
        /* Only the plain decimal ImageNet-V2 writes: no sign, no leading 0. */
        if (*d < '0' || *d > '9' || *end || k >= CKDD_INET_CLASSES || (d[0] == '0' && d[1]))
            rc = ckd_errorf(err, "%s/%s: expected class folders named 0 to 999 (ImageNet-V2's "
                            "layout: the class's index among the sorted wnids)", l->root, d);
        v[i] = (v2_dir){k, d};
    }
    if (rc == 0 && dirs.n)
        qsort(v, dirs.n, sizeof *v, cmp_v2);
    for (size_t i = 0; rc == 0 && i < dirs.n; i++) {
        int32_t label = folder_class(c, l, v[i].name, (int32_t)v[i].k, err);
        rc = label < 0 ? -1 : ckdd_labelled_class_folder(l, v[i].name, label, ext, err);
    }
    free(v);
    ckdd_strvec_free(&dirs);
    return rc < 0 ? rc : check_complete(c, l, "v2", err);
}

static int open_flat(inet_ctx *c, ckdd_labelled *l, const json_t *spec, const ckdd_env *env,
                     const json_t *ext, ckd_error *err)
{
    char gt[4096], devkit[4096];
    ckdd_inet_truth t;
    if (ckdd_join(env->base_dir, json_string_value(json_object_get(spec, "ground_truth")), gt,
                  sizeof gt, err) < 0 ||
        shipped("devkit-wnids.txt", devkit, sizeof devkit, err) < 0 ||
        ckdd_inet_truth_load(gt, json_string_value(json_object_get(spec, "ground_truth_format")),
                             c->all, devkit, &t, err) < 0)
        return -1;
    ckdd_strvec files = {0};
    int rc = ckdd_list_dir(l->root, 0, &files, err);
    for (size_t i = 0; rc == 0 && i < files.n; i++) {
        const char *f = files.v[i];
        if (!ckdd_has_ext(ext, f))
            continue;
        ckdd_inet_truth_line *g = ckdd_inet_truth_find(&t, f);
        if (!g) {
            rc = ckd_errorf(err, "%s/%s: the image has no line in %s (%s format, %zu lines)",
                            l->root, f, gt, t.format, t.n);
            break;
        }
        if (g->used) {
            rc = ckd_errorf(err, "%s/%s: a second image for line %zu of %s", l->root, f, g->line,
                            gt);
            break;
        }
        g->used = 1;
        int32_t label = c->of1k[g->k1];
        if (label < 0)
            rc = ckd_errorf(err, "%s:%zu: %s is of synset %s, not one of the %zu classes of %s",
                            gt, g->line, f, c->all[g->k1], c->n_cls, c->cls_path);
        else
            rc = ckdd_labelled_add(l, f, label, err);
    }
    for (size_t i = 0; rc == 0 && i < t.n; i++)
        if (!t.v[i].used) {
            size_t m = 0;
            for (size_t j = 0; j < t.n; j++)
                m += !t.v[j].used;
            rc = ckd_errorf(err, "%s:%zu: no image %s.* in %s (%zu of the %zu lines have none)", gt,
                            t.v[i].line, t.v[i].stem, l->root, m, t.n);
        }
    ckdd_strvec_free(&files);
    ckdd_inet_truth_free(&t);
    return rc;
}

static void *in_open(ckd_dataset *ds, const json_t *spec, const ckdd_env *env, ckd_error *err)
{
    ckdd_labelled *l = calloc(1, sizeof *l);
    inet_ctx *c = calloc(1, sizeof *c);
    char root[4096], tp[4096];
    if (!l || !c) {
        free(l);
        free(c);
        ckd_errorf(err, "out of memory");
        return NULL;
    }
    const char *layout = json_string_value(json_object_get(spec, "layout"));
    const json_t *ext = json_object_get(spec, "extensions");
    int rc = ckdd_join(env->base_dir, json_string_value(json_object_get(spec, "path")), root,
                       sizeof root, err);
    if (rc == 0 && !(l->root = strdup(root)))
        rc = ckd_errorf(err, "out of memory");
    if (rc == 0 &&
        (load_all(c, err) < 0 || load_classes(c, spec, env, err) < 0 ||
         load_names(c, spec, env, err) < 0 ||
         spec_or_shipped(spec, "templates", "templates-openai-80.txt", env, tp, sizeof tp,
                         err) < 0 ||
         ckdd_load_templates(tp, NULL, 0, &c->tmpl, &c->n_tmpl, err) < 0))
        rc = -1;
    if (rc == 0 && !strcmp(layout, "flat"))
        rc = open_flat(c, l, spec, env, ext, err);
    else if (rc == 0 && !strcmp(layout, "v2"))
        rc = open_v2(c, l, ext, err);
    else if (rc == 0)
        rc = open_folders(c, l, ext, err);
    if (rc == 0 && l->files.n == 0) {
        char *list = json_dumps(ext, JSON_COMPACT);
        rc = ckd_errorf(err, "%s: no images (extensions %s)", l->root, list ? list : "?");
        free(list);
    }
    char src[4600];
    if (rc == 0)
        rc = ckdd_labelled_finish(ds, l, (const char *const *)c->names, c->n_cls,
                                  (const char *const *)c->tmpl, c->n_tmpl, err);
    if (rc == 0) {
        snprintf(src, sizeof src, "%s (%s layout, %zu classes of %s)", l->root, layout, c->n_cls,
                 c->cls_path);
        rc = ckdd_set_source(ds, src, err);
    }
    ctx_free(c);
    free(c);
    if (rc < 0) {
        ckdd_labelled_close(l);
        return NULL;
    }
    return l;
}

/* The ground truth belongs to the flat layout, and the flat layout needs it. */
static int in_check(const json_t *spec, const ckdd_where *w, ckd_error *err)
{
    int flat = !strcmp(json_string_value(json_object_get(spec, "layout")), "flat");
    if (flat && !json_object_get(spec, "ground_truth"))
        return ckdd_spec_errorf(w, NULL, err, "the flat layout needs \"ground_truth\": the file "
                                "that gives each image its class");
    if (!flat && json_object_get(spec, "ground_truth"))
        return ckdd_spec_errorf(w, "ground_truth", err, "only the flat layout reads a ground-truth "
                                "file (the others take the class from the folder)");
    return 0;
}

static const char in_schema[] =
    "{\"type\": \"object\", \"required\": [\"path\"], \"properties\": {" CKDD_SCHEMA_COMMON ","
    " \"path\": {\"type\": \"string\"},"
    " \"layout\": {\"type\": \"string\", \"enum\": [\"folders\", \"flat\", \"v2\"],"
    "  \"default\": \"folders\"},"
    " \"ground_truth\": {\"type\": \"string\"},"
    " \"ground_truth_format\": {\"type\": \"string\","
    "  \"enum\": [\"auto\", \"devkit\", \"wnids\", \"kaggle\", \"caffe\"], \"default\": \"auto\"},"
    " \"classes\": {\"type\": \"string\", \"default\": \"1k\","
    "  \"description\": \"1k, r200, a200 or a file of wnids\"},"
    " \"classnames\": {\"type\": \"string\"},"
    " \"templates\": {\"type\": \"string\"},"
    " \"extensions\": {\"type\": \"array\", \"items\": {\"type\": \"string\"},"
    "  \"default\": [\"jpg\", \"jpeg\", \"png\"]}}}";

const ckdd_reader ckdd_reader_imagenet = {
    "imagenet", in_schema, in_check, in_open, ckdd_labelled_size, ckdd_labelled_get,
    ckdd_labelled_close,
};
