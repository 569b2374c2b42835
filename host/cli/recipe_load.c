/* Loading a recipe for a command: plugin schemas come from the registry. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "clipkd/recipe.h"
#include "clipkd/registry.h"

/* Plugin schemas for the recipe loader, from the registry. */
static int schema_from_registry(void *user, const char *kind, const char *name, const char **schema_json,
                                ckd_error *err)
{
    const ckd_registry *r = user;
    ckd_plugin_kind k = !strcmp(kind, "loss") ? CKD_PLUGIN_LOSS : CKD_PLUGIN_MODEL;
    const ckd_plugin *p = ckd_registry_find(r, k, name, err);
    if (!p)
        return -1;
    *schema_json = p->desc->params_schema ? p->desc->params_schema : "{}";
    return 0;
}

/* Loads and checks a recipe against the installed plugins; NULL after printing why. */
ckd_recipe *cli_load_recipe(const char *cmd, const char *path, const char *const *sets, size_t n_sets,
                            ckd_registry **reg_out)
{
    ckd_registry *reg = cli_open_registry();
    if (!reg)
        return NULL;
    ckd_error err;
    ckd_recipe *r = ckd_recipe_load(path, sets, n_sets, schema_from_registry, reg, &err);
    if (!r) {
        fprintf(stderr, "clipkd %s: %s\n", cmd, err.msg);
        cli_report_rejections(reg);
        ckd_registry_free(reg);
        return NULL;
    }
    *reg_out = reg;
    return r;
}


void cli_for_each_artifact(const json_t *v, const char *path,
                           void (*fn)(void *user, const json_t *obj, const char *where), void *user)
{
    char sub[512];
    if (json_is_object(v)) {
        /* Every object with a "urls" array is an artifact (one without
         * "sha256" waits to be pinned: ckd_artifact_from_json says how). */
        if (json_is_array(json_object_get(v, "urls"))) {
            fn(user, v, path);
            return;
        }
        const char *k;
        json_t *e;
        json_object_foreach((json_t *)v, k, e)
        {
            snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", k);
            cli_for_each_artifact(e, sub, fn, user);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            snprintf(sub, sizeof sub, "%s[%zu]", path, i);
            cli_for_each_artifact(e, sub, fn, user);
        }
    }
}
