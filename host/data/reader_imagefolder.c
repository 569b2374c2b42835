/* The imagefolder reader: root/<class>/…/<image>, the layout of ImageNet's
 * validation set for zero-shot evaluation (torchvision's ImageFolder).
 * Class folders are sorted by name (strcmp, like Python's sorted) and give
 * the labels 0, 1, …; a class's images are found recursively and sorted by
 * path. Names starting with "." are skipped. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "data_internal.h"

/* CLIP's seven-template ImageNet ensemble (from the CLIP repository's
 * Prompt_Engineering_for_ImageNet notebook), used when no template file is
 * given. */
static const char *const default_templates[] = {
    "itap of a {}.",          "a bad photo of the {}.", "a origami {}.",
    "a photo of the large {}.", "a {} in a video game.", "art of the {}.",
    "a photo of the small {}.",
};

/* Class names: from the file, or the folder names with "_" read as " ". */
static int class_names(const json_t *spec, const ckdd_env *env, const ckdd_labelled *l,
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
                              dirs->n, l->root);
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

static void *if_open(ckd_dataset *ds, const json_t *spec, const ckdd_env *env, ckd_error *err)
{
    ckdd_labelled *l = calloc(1, sizeof *l);
    char root[4096], tp[4096];
    if (!l) {
        ckd_errorf(err, "out of memory");
        return NULL;
    }
    ckdd_strvec dirs = {0};
    char **names = NULL, **tmpl = NULL;
    size_t nt = 0;
    const char *tfile = json_string_value(json_object_get(spec, "templates"));
    if (ckdd_join(env->base_dir, json_string_value(json_object_get(spec, "path")), root,
                  sizeof root, err) < 0 ||
        !(l->root = strdup(root)) || ckdd_list_dir(l->root, 1, &dirs, err) < 0)
        goto fail;
    if (dirs.n == 0) {
        ckd_errorf(err, "%s: no class folders", l->root);
        goto fail;
    }
    const json_t *ext = json_object_get(spec, "extensions");
    for (size_t c = 0; c < dirs.n; c++)
        if (ckdd_labelled_class_folder(l, dirs.v[c], (int32_t)c, ext, err) < 0)
            goto fail;
    if (class_names(spec, env, l, &dirs, &names, err) < 0 ||
        (tfile && ckdd_join(env->base_dir, tfile, tp, sizeof tp, err) < 0) ||
        ckdd_load_templates(tfile ? tp : NULL, default_templates,
                            sizeof default_templates / sizeof *default_templates, &tmpl, &nt,
                            err) < 0 ||
        ckdd_labelled_finish(ds, l, (const char *const *)names, dirs.n,
                             (const char *const *)tmpl, nt, err) < 0)
        goto fail;
    ckd_strings_free(names, dirs.n);
    ckd_strings_free(tmpl, nt);
    ckdd_strvec_free(&dirs);
    return l;
fail:
    if (names)
        ckd_strings_free(names, dirs.n);
    ckd_strings_free(tmpl, nt);
    ckdd_strvec_free(&dirs);
    ckdd_labelled_close(l);
    return NULL;
}

static const char if_schema[] =
    "{\"type\": \"object\", \"required\": [\"path\"], \"properties\": {" CKDD_SCHEMA_COMMON ","
    " \"path\": {\"type\": \"string\"},"
    " \"classnames\": {\"type\": \"string\"},"
    " \"templates\": {\"type\": \"string\"},"
    " \"extensions\": {\"type\": \"array\", \"items\": {\"type\": \"string\"},"
    "  \"default\": [\"jpg\", \"jpeg\", \"png\"]}}}";

const ckdd_reader ckdd_reader_imagefolder = {
    "imagefolder",     if_schema, NULL, if_open, ckdd_labelled_size, ckdd_labelled_get,
    ckdd_labelled_close,
};
