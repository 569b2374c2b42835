/* clipkd validate RECIPE and clipkd run RECIPE: recipes from the command line. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "clipkd/recipe.h"
#include "clipkd/registry.h"

void cmd_validate_help(FILE *out)
{
    fprintf(out, "Usage: clipkd validate RECIPE [--set KEY.PATH=VALUE]...\n"
                 "Loads RECIPE (following \"extends\"), applies the --set overrides, checks it\n"
                 "against the recipe format and every plugin's parameter schema, and prints the\n"
                 "resolved recipe with all defaults filled in, then its hash. Exit status 2 and a\n"
                 "message naming file:line:column and the JSON path when something is wrong.\n"
                 "See clipkd-recipe(5).\n");
}

void cmd_run_help(FILE *out)
{
    fprintf(out, "Usage: clipkd run RECIPE [--set KEY.PATH=VALUE]... [--out DIR] [--dry-run]\n"
                 "Validates RECIPE like `clipkd validate`, then creates the run directory\n"
                 "(default runs/<name>-<first 12 hex digits of the recipe hash>) holding the\n"
                 "resolved recipe as recipe.json. --dry-run prints what would be done and\n"
                 "creates nothing.\n");
}

typedef struct recipe_args {
    const char *path, *out;
    const char *sets[256];
    size_t n_sets;
    int dry_run;
} recipe_args;

static int parse_args(const char *cmd, int argc, char **argv, int allow_run_opts, recipe_args *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--set") && i + 1 < argc && a->n_sets < 256) {
            a->sets[a->n_sets++] = argv[++i];
        } else if (!strncmp(argv[i], "--set=", 6) && a->n_sets < 256) {
            a->sets[a->n_sets++] = argv[i] + 6;
        } else if (allow_run_opts && !strcmp(argv[i], "--out") && i + 1 < argc) {
            a->out = argv[++i];
        } else if (allow_run_opts && !strcmp(argv[i], "--dry-run")) {
            a->dry_run = 1;
        } else if (argv[i][0] != '-' && !a->path) {
            a->path = argv[i];
        } else {
            fprintf(stderr, "clipkd %s: unexpected argument '%s' (see clipkd %s --help)\n", cmd, argv[i], cmd);
            return -1;
        }
    }
    if (!a->path) {
        fprintf(stderr, "clipkd %s: no recipe given (see clipkd %s --help)\n", cmd, cmd);
        return -1;
    }
    return 0;
}

int cmd_validate(int argc, char **argv)
{
    recipe_args a;
    if (parse_args("validate", argc, argv, 0, &a))
        return CLI_USAGE;
    ckd_registry *reg;
    ckd_recipe *r = cli_load_recipe("validate", a.path, a.sets, a.n_sets, &reg);
    if (!r)
        return CLI_USAGE;
    char *dump = ckd_recipe_dump(r);
    fputs(dump ? dump : "", stdout);
    printf("recipe hash: %s\n", ckd_recipe_hash(r));
    free(dump);
    ckd_recipe_free(r);
    ckd_registry_free(reg);
    return CLI_OK;
}

static int mkdirs(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0777) && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, 0777) && errno != EEXIST ? -1 : 0;
}

int cmd_run(int argc, char **argv)
{
    recipe_args a;
    if (parse_args("run", argc, argv, 1, &a))
        return CLI_USAGE;
    ckd_registry *reg;
    ckd_recipe *r = cli_load_recipe("run", a.path, a.sets, a.n_sets, &reg);
    if (!r)
        return CLI_USAGE;
    const char *hash = ckd_recipe_hash(r);
    const json_t *name = json_object_get(ckd_recipe_json(r), "name");
    char dir[4096];
    if (a.out)
        snprintf(dir, sizeof dir, "%s", a.out);
    else
        snprintf(dir, sizeof dir, "runs/%s-%.12s", json_is_string(name) ? json_string_value(name) : "run", hash);
    int rc = CLI_OK;
    if (a.dry_run) {
        printf("recipe:   %s\nhash:     %s\nrun dir:  %s (not created: --dry-run)\n", a.path, hash, dir);
    } else {
        char path[4200];
        snprintf(path, sizeof path, "%s/recipe.json", dir);
        char *dump = ckd_recipe_dump(r);
        FILE *f = NULL;
        if (!dump || mkdirs(dir) || !(f = fopen(path, "w")) || fputs(dump, f) < 0 || fclose(f)) {
            fprintf(stderr, "clipkd run: cannot write %s: %s\n", path, strerror(errno));
            rc = CLI_FAIL;
        } else {
            printf("run dir:  %s\nrecipe:   %s (hash %s)\n", dir, path, hash);
        }
        free(dump);
    }
    ckd_recipe_free(r);
    ckd_registry_free(reg);
    return rc;
}
