/* Named model configurations: the files NAME.json that a model plugin ships
 * (the clip plugin's ViT-B-32, fmnist-student, ...), where they are found,
 * which there are, and loading one. Recipes use them as the base of a
 * "config" that says {"name": NAME} (clipkd-recipe(5)). */
#include "config.h"

/* strdup, opendir even under -std=c11. */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE 1
#endif

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipkd/model.h"

#ifndef CKD_DATA_DIR
#define CKD_DATA_DIR "."
#endif

/* 1 if dir's last component is name (trailing slashes ignored). */
static int last_component_is(const char *dir, const char *name)
{
    size_t n = strlen(dir), k = strlen(name);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    return n >= k && !strncmp(dir + n - k, name, k) && (n == k || dir[n - k - 1] == '/');
}

static int put_dir(char *out, size_t cap, ckd_error *err, const char *fmt, const char *a, const char *b)
{
    int n = snprintf(out, cap, fmt, a, b);
    if (n < 0 || (size_t)n >= cap)
        return ckd_errorf(err, "model configurations: the path under \"%s\" is too long", a);
    return 0;
}

int ckd_model_configs_dir(const char *plugin, char *out, size_t cap, ckd_error *err)
{
    const char *dir = getenv("CLIPKD_MODEL_CONFIG_DIR");
    if (dir && *dir && !strcmp(plugin, "clip"))
        return put_dir(out, cap, err, "%s%s", dir, "");
    dir = getenv("CLIPKD_DATA_DIR");
    if (!dir || !*dir)
        return put_dir(out, cap, err, "%s/models/%s/configs", CKD_DATA_DIR, plugin);
    /* In the sources, a plugin's data directory (models/clip: the vocabulary
     * and configs/) is what CLIPKD_DATA_DIR names, and the other plugins'
     * are its siblings (models/resnet); installed, the data directory holds
     * models/PLUGIN/configs. */
    if (last_component_is(dir, plugin))
        return put_dir(out, cap, err, "%s/configs%s", dir, "");
    char parent[4096];
    int n = snprintf(parent, sizeof parent, "%s", dir);
    while (n > 1 && parent[n - 1] == '/')
        parent[--n] = '\0';
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        if (last_component_is(parent, "models"))
            return put_dir(out, cap, err, "%s/%s/configs", parent, plugin);
    }
    return put_dir(out, cap, err, "%s/models/%s/configs", dir, plugin);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void ckd_model_config_names_free(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

/* Appends the NAME of NAME.json to *v; -1 when out of memory. */
static int add_name(char ***v, size_t *n, size_t *cap, const char *file)
{
    size_t len = strlen(file);
    if (len <= 5 || strcmp(file + len - 5, ".json") != 0 || file[0] == '.')
        return 0;
    if (*n == *cap) {
        size_t nc = *cap ? 2 * *cap : 16;
        char **nv = realloc(*v, nc * sizeof *nv);
        if (!nv)
            return -1;
        *v = nv;
        *cap = nc;
    }
    if (!((*v)[*n] = strndup(file, len - 5)))
        return -1;
    (*n)++;
    return 0;
}

char **ckd_model_config_names(const char *plugin, size_t *n, ckd_error *err)
{
    char dir[4096];
    char **v = NULL;
    size_t cap = 0;
    *n = 0;
    if (ckd_model_configs_dir(plugin, dir, sizeof dir, err))
        return NULL;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT || errno == ENOTDIR)
            return calloc(1, sizeof *v); /* ships none */
        ckd_errorf(err, "%s: cannot read the model configurations: %s", dir, strerror(errno));
        return NULL;
    }
    for (struct dirent *de; (de = readdir(d));)
        if (add_name(&v, n, &cap, de->d_name)) {
            closedir(d);
            ckd_model_config_names_free(v, *n);
            ckd_errorf(err, "%s: out of memory", dir);
            return NULL;
        }
    closedir(d);
    if (!v)
        return calloc(1, sizeof *v);
    qsort(v, *n, sizeof *v, cmp_name);
    return v;
}

int ckd_model_config_path(const char *plugin, const char *name, char *out, size_t cap, ckd_error *err)
{
    char dir[4096];
    if (ckd_model_configs_dir(plugin, dir, sizeof dir, err))
        return -1;
    return put_dir(out, cap, err, "%s/%s.json", dir, name);
}
