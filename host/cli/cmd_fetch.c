/* clipkd fetch RECIPE: put every file a recipe needs into the artifact cache. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "clipkd/data.h"
#include "clipkd/fetch.h"
#include "clipkd/recipe.h"
#include "clipkd/registry.h"

void cmd_fetch_help(FILE *out)
{
    fprintf(out, "Usage: clipkd fetch RECIPE [--set KEY.PATH=VALUE]... [--offline] [--pin]\n"
                 "Downloads into the artifact cache every file RECIPE needs: each artifact object\n"
                 "({\"urls\", \"sha256\", \"size\"}) anywhere in it — teacher weights, data files — and\n"
                 "the files of its datasets (e.g. Fashion-MNIST, from the local Debian copy when\n"
                 "installed, else its canonical URLs); a teacher given as another recipe is\n"
                 "fetched too. Every file is SHA-256-verified before it enters the cache.\n"
                 "--offline uses only the cache and file:// mirrors.\n"
                 "An artifact whose full SHA-256 nobody published (weights named by\n"
                 "{\"pretrained\": NAME} with only a hash prefix or none, see clipkd models) is\n"
                 "fetched only with --pin: it is downloaded, checked against the published\n"
                 "prefix, cached, and its SHA-256 and size are written to RECIPE.lock.json.\n"
                 "Commit that file with the recipe: every later fetch and run verifies the\n"
                 "download against it and refuses a file that changed.\n");
}

typedef struct fetch_run {
    ckd_fetch_opts opts;
    int n_ok, n_bad;
    int pin;          /* --pin */
    json_t *lock;     /* the current recipe's lock, when pinning */
    int n_pinned;
} fetch_run;

/* --pin: an artifact without a hash is downloaded, checked against its
 * published prefix and recorded in the lock. */
static void pin_artifact(fetch_run *f, const json_t *obj, const char *where)
{
    const json_t *urls = json_object_get(obj, "urls");
    const char *u[16], *name = json_string_value(json_object_get(obj, "name"));
    size_t n = 0;
    for (; n < json_array_size(urls) && n < 16; n++)
        u[n] = json_string_value(json_array_get(urls, n));
    ckd_artifact a = {.urls = u, .n_urls = n, .size = -1, .name = name};
    char sha[65], path[4096];
    int64_t size = 0;
    ckd_error err = {{0}};
    if (!n || ckd_fetch_pin(&f->opts, &a, json_string_value(json_object_get(obj, "sha256_prefix")), sha, &size, path,
                            sizeof path, &err)) {
        fprintf(stderr, "clipkd fetch: %s: %s\n", where, n ? err.msg : "no URLs");
        f->n_bad++;
        return;
    }
    if (ckd_lock_record(f->lock, u[0], sha, size, name, where)) {
        fprintf(stderr, "clipkd fetch: out of memory\n");
        f->n_bad++;
        return;
    }
    printf("pin %s  sha256 %s  %lld bytes  %s\n", name ? name : where, sha, (long long)size, path);
    f->n_ok++;
    f->n_pinned++;
}

static void fetch_artifact(void *user, const json_t *obj, const char *where)
{
    fetch_run *f = user;
    if (f->pin && !json_object_get(obj, "sha256")) {
        pin_artifact(f, obj, where);
        return;
    }
    ckd_artifact a;
    ckd_error err;
    char path[4096];
    if (ckd_artifact_from_json(obj, &a, where, &err) || ckd_fetch(&f->opts, &a, path, sizeof path, &err)) {
        fprintf(stderr, "clipkd fetch: %s\n", err.msg);
        f->n_bad++;
    } else {
        printf("ok  %s  %s\n", a.name ? a.name : where, path);
        f->n_ok++;
    }
    ckd_artifact_free(&a);
}

/* Opening a dataset fetches what it reads (built-in artifacts such as
 * Fashion-MNIST's included) and checks its index. */
static void fetch_data(fetch_run *f, const ckd_recipe *r, const char *split)
{
    const json_t *spec = json_object_get(json_object_get(ckd_recipe_json(r), "data"), split);
    if (!spec)
        return;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", ckd_recipe_path(r));
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    ckd_error err;
    ckd_dataset *ds = ckd_dataset_open_fetch(spec, dir, &f->opts, &err);
    if (!ds) {
        fprintf(stderr, "clipkd fetch: %s: data.%s: %s\n", ckd_recipe_path(r), split, err.msg);
        f->n_bad++;
        return;
    }
    printf("ok  data.%s: %s %s, %zu samples\n", split, ckd_dataset_reader(ds), ckd_dataset_source(ds),
           ckd_dataset_size(ds));
    f->n_ok++;
    ckd_dataset_close(ds);
}

static void fetch_recipe(fetch_run *f, const char *path, const char *const *sets, size_t n_sets, int depth)
{
    ckd_registry *reg;
    ckd_recipe *r = cli_load_recipe("fetch", path, sets, n_sets, &reg);
    if (!r) {
        f->n_bad++;
        return;
    }
    printf("recipe %s\n", path);
    char lock_path[4200];
    ckd_error err;
    json_t *outer = f->lock;
    f->lock = NULL;
    int pinned = f->n_pinned;
    if (f->pin && (ckd_recipe_lock_path(path, lock_path, sizeof lock_path, &err) ||
                   !(f->lock = ckd_lock_load(lock_path, &err)))) {
        fprintf(stderr, "clipkd fetch: %s\n", err.msg);
        f->n_bad++;
    } else {
        cli_for_each_artifact(ckd_recipe_json(r), "", fetch_artifact, f);
    }
    if (f->lock && f->n_pinned > pinned) {
        if (ckd_lock_save(f->lock, lock_path, &err)) {
            fprintf(stderr, "clipkd fetch: %s\n", err.msg);
            f->n_bad++;
        } else {
            printf("wrote %s (%d pinned): commit it with the recipe\n", lock_path, f->n_pinned - pinned);
        }
    }
    json_decref(f->lock);
    f->lock = outer;
    fetch_data(f, r, "train");
    fetch_data(f, r, "eval");
    const json_t *teacher = json_object_get(json_object_get(ckd_recipe_json(r), "teacher"), "recipe");
    if (json_is_string(teacher) && depth < 8) {
        char tpath[4096];
        if (ckd_recipe_resolve_path(r, "teacher.recipe", tpath, sizeof tpath, &err)) {
            fprintf(stderr, "clipkd fetch: %s\n", err.msg);
            f->n_bad++;
        } else {
            fetch_recipe(f, tpath, NULL, 0, depth + 1);
        }
    }
    ckd_recipe_free(r);
    ckd_registry_free(reg);
}

int cmd_fetch(int argc, char **argv)
{
    fetch_run f = {0};
    ckd_fetch_opts_init(&f.opts);
    const char *path = NULL, *sets[256];
    size_t n_sets = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--offline"))
            f.opts.offline = 1;
        else if (!strcmp(argv[i], "--pin"))
            f.pin = 1;
        else if (!strcmp(argv[i], "--set") && i + 1 < argc && n_sets < 256)
            sets[n_sets++] = argv[++i];
        else if (argv[i][0] != '-' && !path)
            path = argv[i];
        else {
            fprintf(stderr, "clipkd fetch: unexpected argument '%s' (see clipkd fetch --help)\n", argv[i]);
            return CLI_USAGE;
        }
    }
    if (!path) {
        cmd_fetch_help(stderr);
        return CLI_USAGE;
    }
    /* A bar with rate and ETA on a terminal, periodic lines in logs. */
    f.opts.progress = isatty(2) ? ckd_fetch_progress_tty : ckd_fetch_progress_log;
    f.opts.progress_user = stderr;
    fetch_recipe(&f, path, sets, n_sets, 0);
    printf("%d fetched or verified, %d failed\n", f.n_ok, f.n_bad);
    return f.n_bad ? CLI_USAGE : CLI_OK;
}
