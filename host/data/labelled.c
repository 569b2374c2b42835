/* Labelled image sets for zero-shot classification: a list of image files
 * under one root with a class index each, and per class every prompt
 * template applied to the class name (the sample's captions). Shared by the
 * imagefolder and imagenet readers, which differ only in how they find the
 * images and their classes. */
#include "config.h"

#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data_internal.h"

int ckdd_has_ext(const json_t *list, const char *name)
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

int ckdd_list_dir(const char *dir, int dirs_only, ckdd_strvec *out, ckd_error *err)
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

int ckdd_labelled_add(ckdd_labelled *l, const char *rel, int32_t label, ckd_error *err)
{
    if (l->files.n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        int32_t *v = realloc(l->labels, cap * sizeof *v);
        if (!v)
            return ckd_errorf(err, "out of memory");
        l->labels = v;
        l->cap = cap;
    }
    l->labels[l->files.n] = label;
    if (ckdd_strvec_push(&l->files, rel, strlen(rel)) < 0)
        return ckd_errorf(err, "out of memory");
    return 0;
}

int ckdd_labelled_walk(ckdd_labelled *l, const char *rel, int32_t label, const json_t *ext,
                       int depth, ckd_error *err)
{
    char dir[4096];
    if (depth > 32)
        return ckd_errorf(err, "%s/%s: folders nested more than 32 deep (a link loop?)", l->root,
                          rel);
    if (ckdd_join(l->root, rel, dir, sizeof dir, err) < 0)
        return -1;
    ckdd_strvec names = {0};
    if (ckdd_list_dir(dir, 0, &names, err) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < names.n && rc == 0; i++) {
        char r[4096], p[4096];
        struct stat st;
        if (ckdd_join(rel, names.v[i], r, sizeof r, err) < 0 ||
            ckdd_join(l->root, r, p, sizeof p, err) < 0) {
            rc = -1;
            break;
        }
        if (stat(p, &st) < 0)
            continue; /* a dangling link: not an image */
        if (S_ISDIR(st.st_mode))
            rc = ckdd_labelled_walk(l, r, label, ext, depth + 1, err);
        else if (S_ISREG(st.st_mode) && ckdd_has_ext(ext, names.v[i]))
            rc = ckdd_labelled_add(l, r, label, err);
    }
    ckdd_strvec_free(&names);
    return rc;
}

int ckdd_labelled_class_folder(ckdd_labelled *l, const char *folder, int32_t label,
                               const json_t *ext, ckd_error *err)
{
    size_t before = l->files.n;
    if (ckdd_labelled_walk(l, folder, label, ext, 0, err) < 0)
        return -1;
    if (l->files.n == before) {
        char *list = json_dumps(ext, JSON_COMPACT);
        ckd_errorf(err, "%s/%s: class %d has no images (extensions %s)", l->root, folder,
                   (int)label, list ? list : "?");
        free(list);
        return -1;
    }
    return 0;
}

int ckdd_load_templates(const char *path, const char *const *defaults, size_t n_defaults,
                        char ***t, size_t *n, ckd_error *err)
{
    *t = NULL;
    *n = 0;
    if (!path) {
        ckdd_strvec sv = {0};
        for (size_t i = 0; i < n_defaults; i++)
            if (ckdd_strvec_push(&sv, defaults[i], strlen(defaults[i])) < 0) {
                ckdd_strvec_free(&sv);
                return ckd_errorf(err, "out of memory");
            }
        *t = sv.v;
        *n = sv.n;
        return 0;
    }
    if (ckdd_read_lines(path, t, n, err) < 0)
        return -1;
    for (size_t i = 0; i < *n; i++)
        if (!strstr((*t)[i], "{}")) {
            ckd_errorf(err, "%s: template %zu (\"%s\") has no \"{}\" for the class name", path,
                       i + 1, (*t)[i]);
            ckd_strings_free(*t, *n);
            *t = NULL;
            return -1;
        }
    if (*n == 0) {
        ckd_strings_free(*t, *n);
        *t = NULL;
        return ckd_errorf(err, "%s: no templates in the file", path);
    }
    return 0;
}

int ckdd_labelled_finish(ckd_dataset *ds, ckdd_labelled *l, const char *const *names,
                         size_t n_classes, const char *const *tmpl, size_t nt, ckd_error *err)
{
    l->captions = calloc(n_classes * nt, sizeof *l->captions);
    if (!l->captions)
        return ckd_errorf(err, "out of memory");
    l->n_classes = n_classes;
    l->n_templates = nt;
    for (size_t c = 0; c < n_classes; c++)
        for (size_t t = 0; t < nt; t++)
            if (!(l->captions[c * nt + t] = ckdd_format_template(tmpl[t], names[c])))
                return ckd_errorf(err, "out of memory");
    if (ckdd_set_source(ds, l->root, err) < 0 || ckdd_set_classes(ds, names, n_classes, err) < 0 ||
        ckdd_set_templates(ds, tmpl, nt, err) < 0)
        return -1;
    return 0;
}

void ckdd_labelled_close(void *state)
{
    ckdd_labelled *l = state;
    if (!l)
        return;
    free(l->root);
    ckdd_strvec_free(&l->files);
    free(l->labels);
    ckd_strings_free(l->captions, l->n_classes * l->n_templates);
    free(l);
}

size_t ckdd_labelled_size(const void *state)
{
    return ((const ckdd_labelled *)state)->files.n;
}

int ckdd_labelled_get(const void *state, size_t i, ckd_sample *out, ckd_error *err)
{
    const ckdd_labelled *l = state;
    char p[4096];
    if (ckdd_join(l->root, l->files.v[i], p, sizeof p, err) < 0 ||
        ckd_image_load(p, &out->image, err) < 0)
        return -1;
    int32_t c = l->labels[i];
    out->label = c;
    for (size_t t = 0; t < l->n_templates; t++) {
        const char *cap = l->captions[(size_t)c * l->n_templates + t];
        if (ckdd_sample_add_caption(out, cap, strlen(cap), err) < 0)
            return -1;
    }
    return 0;
}
