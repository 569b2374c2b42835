/* Table files (recipes/tables/NAME.json): loading, row selection, composing a
 * row's recipe (its recipe files do not exist here: an error), and rendering
 * every format with no outcomes yet, as a dry run does. */
#include "fuzz.h"

#include <stdlib.h>

#include "clipkd/table.h"

FUZZ_TARGET(table)
{
    const char *path = fuzz_file("table.json", data, size);
    ckd_error err;
    ckd_table *t = path ? ckd_table_load(path, &err) : NULL;
    if (!t)
        return 0;
    size_t rows = ckd_table_n_rows(t), n_profiles = 0;
    int *sel = calloc(rows ? rows : 1, sizeof *sel);
    ckd_table_outcome *out = calloc(rows ? rows : 1, sizeof *out);
    const char *const *profiles = ckd_table_profiles(t, &n_profiles);
    if (sel && out && !ckd_table_select(t, NULL, sel, &err)) {
        const char *profile = n_profiles ? profiles[0] : NULL;
        ckd_recipe *r = rows ? ckd_table_row_recipe(t, profile, 0, 1, NULL, 0, NULL, NULL, &err) : NULL;
        if (r)
            ckd_recipe_free(r);
        for (int fmt = CKD_TABLE_MD; fmt <= CKD_TABLE_SVG; fmt++)
            free(ckd_table_render(t, profile, out, sel, (ckd_table_format)fmt, &err));
    }
    free(sel);
    free(out);
    ckd_table_free(t);
    return 0;
}
