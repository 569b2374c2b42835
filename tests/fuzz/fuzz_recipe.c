/* Recipe JSON: the file, the recipe it extends, and --set assignments.
 * Input: recipe.json [ "\n#extends\n" base.json ] [ "\n#set\n" one
 * assignment per line ]; the recipe may say "extends": "base.json". */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include "clipkd/recipe.h"

#define MAX_SETS 8

FUZZ_TARGET(recipe)
{
    const uint8_t *files, *sets_text, *main_text, *base_text;
    size_t n_files, n_sets_text, n_main, n_base;
    fuzz_split(data, size, "\n#set\n", &files, &n_files, &sets_text, &n_sets_text);
    fuzz_split(files, n_files, "\n#extends\n", &main_text, &n_main, &base_text, &n_base);
    if (!fuzz_file("base.json", base_text, n_base))
        return 0;
    const char *path = fuzz_file("recipe.json", main_text, n_main);
    char *lines = fuzz_strndup(sets_text, n_sets_text);
    if (!path || !lines) {
        free(lines);
        return 0;
    }
    const char *sets[MAX_SETS];
    size_t n_sets = 0;
    for (char *save = NULL, *s = strtok_r(lines, "\n", &save); s && n_sets < MAX_SETS; s = strtok_r(NULL, "\n", &save))
        sets[n_sets++] = s;
    ckd_error err;
    ckd_recipe *r = ckd_recipe_load(path, sets, n_sets, NULL, NULL, &err);
    if (r) {
        free(ckd_recipe_dump(r));
        (void)ckd_recipe_hash(r);
        ckd_recipe_free(r);
    }
    free(lines);
    return 0;
}
