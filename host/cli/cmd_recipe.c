/* clipkd validate RECIPE: recipes from the command line (clipkd run: cmd_run.c). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
