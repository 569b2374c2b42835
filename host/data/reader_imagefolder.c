/* The imagefolder reader: root/<class>/…/<image>, the layout of ImageNet's
 * validation set for zero-shot evaluation (torchvision's ImageFolder).
 * Class folders are sorted by name (strcmp, like Python's sorted) and give
 * the labels 0, 1, …; a class's images are found recursively and sorted by
 * path. Names starting with "." are skipped. */
#include "config.h"

#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data_internal.h"

/* CLIP's seven-template ImageNet ensemble (from the CLIP repository's
 * Prompt_Engineering_for_ImageNet notebook), used when no template file is
 * given. */
static const char *const default_templates[] = {
    "itap of a {}.",          "a bad photo of the {}.", "a origami {}.",
    "a photo of the large {}.", "a {} in a video game.", "art of the {}.",
    "a photo of the small {}.",
};

typedef struct if_state {
    char *root;
    ckdd_strvec files;      /* relative to root */
    int32_t *labels;
    char **captions;        /* per class: every template applied */
    size_t n_classes, n_templates;
} if_state;

static int has_ext(const json_t *list, const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot)
        return 0;
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        const char *x = json_string_value(e);
        if (x[0] == '.')
            x++;
        if (ckdd_ext_eq(dot + 1, strlen(dot + 1), x))
            return 1;
    }
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entries of a directory (without "." names), sorted; dirs_only keeps
 * only subdirectories. */
static int list_dir(const char *dir, int dirs_only, ckdd_strvec *out, ckd_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return ckd_errorf(err, "%s: cannot open the folder: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (dirs_only) {
            char p[4096];
            struct stat st;
            if (ckdd_join(dir, e->d_name, p, sizeof p, err) < 0) {
                rc = -1;
                break;
            }
            if (stat(p, &st) < 0 || !S_ISDIR(st.st_mode))
                continue;
        }
        if (ckdd_strvec_push(out, e->d_name, strlen(e->d_name)) < 0) {
            rc = ckd_errorf(err, "%s: out of memory", dir);
            break;
        }
    }
    closedir(d);
    if (rc == 0 && out->n)
        qsort(out->v, out->n, sizeof *out->v, cmp_str);
    return rc;
}

/* Adds the images under root/rel (recursively, sorted) with this label. */
static int walk(if_state *s, const char *rel, int32_t label, const json_t *ext, size_t *cap,
                int depth, ckd_error *err)
{
    char dir[4096];
    if (depth > 32)
        return ckd_errorf(err, "%s/%s: folders nested more than 32 deep (a link loop?)", s->root, rel);
    if (ckdd_join(s->root, rel, dir, sizeof dir, err) < 0)
        return -1;
    ckdd_strvec names = {0};
    if (list_dir(dir, 0, &names, err) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < names.n && rc == 0; i++) {
        char r[4096], p[4096];
        struct stat st;
        if (ckdd_join(rel, names.v[i], r, sizeof r, err) < 0 ||
            ckdd_join(s->root, r, p, sizeof p, err) < 0) {
            rc = -1;
            break;
        }
        if (stat(p, &st) < 0)
            continue; /* a dangling link: not an image */
        if (S_ISDIR(st.st_mode)) {
            rc = walk(s, r, label, ext, cap, depth + 1, err);
        } else if (S_ISREG(st.st_mode) && has_ext(ext, names.v[i])) {
            if (s->files.n == *cap) {
                *cap = *cap ? *cap * 2 : 1024;
                int32_t *l = realloc(s->labels, *cap * sizeof *l);
                if (!l) {
                    rc = ckd_errorf(err, "out of memory");
                    break;
                }
                s->labels = l;
            }
            s->labels[s->files.n] = label;
            if (ckdd_strvec_push(&s->files, r, strlen(r)) < 0)
                rc = ckd_errorf(err, "out of memory");
        }
    }
    ckdd_strvec_free(&names);
    return rc;
}

static void if_close(void *state)
{
    if_state *s = state;
    free(s->root);
    ckdd_strvec_free(&s->files);
    free(s->labels);
    ckd_strings_free(s->captions, s->n_classes * s->n_templates);
    free(s);
}

/* Class names: from the file, or the folder names with "_" read as " ". */
static int class_names(const json_t *spec, const ckdd_env *env, const if_state *s,
                       const ckdd_strvec *dirs, char ***names, ckd_error *err)
{
    const char *file = json_string_value(json_object_get(spec, "classnames"));
    size_t n;
    if (file) {
        char p[4096];
        if (ckdd_join(env->base_dir, file, p, sizeof p, err) < 0 ||
            ckdd_read_lines(p, names, &n, err) < 0)
            return -1;
        if (n != dirs->n) {
            ckd_strings_free(*names, n);
            *names = NULL;
            return ckd_errorf(err, "%s: %zu class names for the %zu class folders of %s", p, n,
                              dirs->n, s->root);
        }
        return 0;
    }
    ckdd_strvec sv = {0};
    for (size_t i = 0; i < dirs->n; i++) {
        if (ckdd_strvec_push(&sv, dirs->v[i], strlen(dirs->v[i])) < 0) {
            ckdd_strvec_free(&sv);
            return ckd_errorf(err, "out of memory");
        }
        for (char *c = sv.v[i]; *c; c++)
            if (*c == '_')
                *c = ' ';
    }
    *names = sv.v;
    return 0;
}

static int templates(const json_t *spec, const ckdd_env *env, char ***t, size_t *n,
                     ckd_error *err)
{
    const char *file = json_string_value(json_object_get(spec, "templates"));
    if (!file) {
        ckdd_strvec sv = {0};
        for (size_t i = 0; i < sizeof default_templates / sizeof *default_templates; i++)
            if (ckdd_strvec_push(&sv, default_templates[i], strlen(default_templates[i])) < 0) {
                ckdd_strvec_free(&sv);
                return ckd_errorf(err, "out of memory");
            }
        *t = sv.v;
        *n = sv.n;
        return 0;
    }
    char p[4096];
    if (ckdd_join(env->base_dir, file, p, sizeof p, err) < 0 || ckdd_read_lines(p, t, n, err) < 0)
        return -1;
    for (size_t i = 0; i < *n; i++)
        if (!strstr((*t)[i], "{}")) {
            ckd_errorf(err, "%s: template %zu (\"%s\") has no \"{}\" for the class name", p, i + 1,
                       (*t)[i]);
            ckd_strings_free(*t, *n);
            *t = NULL;
            return -1;
        }
    if (*n == 0) {
        ckd_strings_free(*t, *n);
        *t = NULL;
        return ckd_errorf(err, "%s: no templates in the file", p);
    }
    return 0;
}

static void *if_open(ckd_dataset *ds, const json_t *spec, const ckdd_env *env, ckd_error *err)
{
    if_state *s = calloc(1, sizeof *s);
    char root[4096];
    if (!s) {
        ckd_errorf(err, "out of memory");
        return NULL;
    }
    ckdd_strvec dirs = {0};
    char **names = NULL, **tmpl = NULL;
    size_t nt = 0, cap = 0;
    if (ckdd_join(env->base_dir, json_string_value(json_object_get(spec, "path")), root,
                  sizeof root, err) < 0 ||
        !(s->root = strdup(root)) || list_dir(s->root, 1, &dirs, err) < 0)
        goto fail;
    if (dirs.n == 0) {
        ckd_errorf(err, "%s: no class folders", s->root);
        goto fail;
    }
    const json_t *ext = json_object_get(spec, "extensions");
    for (size_t c = 0; c < dirs.n; c++) {
        size_t before = s->files.n;
        if (walk(s, dirs.v[c], (int32_t)c, ext, &cap, 0, err) < 0)
            goto fail;
        if (s->files.n == before) {
            char *list = json_dumps(ext, JSON_COMPACT);
            ckd_errorf(err, "%s/%s: class %zu has no images (extensions %s)", s->root, dirs.v[c],
                       c, list ? list : "?");
            free(list);
            goto fail;
        }
    }
    if (class_names(spec, env, s, &dirs, &names, err) < 0)
        goto fail;
    s->n_classes = dirs.n;
    if (templates(spec, env, &tmpl, &nt, err) < 0)
        goto fail;
    s->n_templates = nt;
    s->captions = calloc(dirs.n * nt, sizeof *s->captions);
    if (!s->captions) {
        ckd_errorf(err, "out of memory");
        goto fail;
    }
    for (size_t c = 0; c < dirs.n; c++)
        for (size_t t = 0; t < nt; t++)
            if (!(s->captions[c * nt + t] = ckdd_format_template(tmpl[t], names[c]))) {
                ckd_errorf(err, "out of memory");
                goto fail;
            }
    if (ckdd_set_source(ds, s->root, err) < 0 ||
        ckdd_set_classes(ds, (const char *const *)names, dirs.n, err) < 0 ||
        ckdd_set_templates(ds, (const char *const *)tmpl, nt, err) < 0)
        goto fail;
    ckd_strings_free(names, dirs.n);
    ckd_strings_free(tmpl, nt);
    ckdd_strvec_free(&dirs);
    return s;
fail:
    if (names)
        ckd_strings_free(names, dirs.n);
    if (tmpl)
        ckd_strings_free(tmpl, nt);
    ckdd_strvec_free(&dirs);
    if_close(s);
    return NULL;
}

static size_t if_size(const void *state)
{
    return ((const if_state *)state)->files.n;
}

static int if_get(const void *state, size_t i, ckd_sample *out, ckd_error *err)
{
    const if_state *s = state;
    char p[4096];
    if (ckdd_join(s->root, s->files.v[i], p, sizeof p, err) < 0 ||
        ckd_image_load(p, &out->image, err) < 0)
        return -1;
    int32_t c = s->labels[i];
    out->label = c;
    for (size_t t = 0; t < s->n_templates; t++) {
        const char *cap = s->captions[(size_t)c * s->n_templates + t];
        if (ckdd_sample_add_caption(out, cap, strlen(cap), err) < 0)
            return -1;
    }
    return 0;
}

static const char if_schema[] =
    "{\"type\": \"object\", \"required\": [\"path\"], \"properties\": {" CKDD_SCHEMA_COMMON ","
    " \"path\": {\"type\": \"string\"},"
    " \"classnames\": {\"type\": \"string\"},"
    " \"templates\": {\"type\": \"string\"},"
    " \"extensions\": {\"type\": \"array\", \"items\": {\"type\": \"string\"},"
    "  \"default\": [\"jpg\", \"jpeg\", \"png\"]}}}";

const ckdd_reader ckdd_reader_imagefolder = {
    "imagefolder", if_schema, NULL, if_open, if_size, if_get, if_close,
};
