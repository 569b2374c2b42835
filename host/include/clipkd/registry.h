/* clipkd/registry.h — finding and loading plugins.
 *
 * The registry scans each directory of $CLIPKD_PLUGIN_PATH (colon-separated)
 * and then the installed plugin directory for *.so files, loads each with
 * dlopen(RTLD_NOW | RTLD_LOCAL), and checks its descriptor: the entry symbol,
 * the ABI major version, the struct sizes, the kind, a name, a vtable that
 * matches the kind, a parseable parameter schema. A file that fails any check
 * is rejected with a message naming the file and the reason; two plugins of
 * the same kind and name are a conflict naming both files. Rejections are
 * kept so that commands can report them.
 */
#ifndef CLIPKD_REGISTRY_H
#define CLIPKD_REGISTRY_H

#include <stddef.h>

#include <jansson.h>

#include "clipkd/plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ckd_registry ckd_registry;

typedef struct ckd_plugin {
    const ckd_plugin_descriptor *desc;
    const char *path;     /* the .so it came from */
    json_t *schema;       /* parsed params_schema */
} ckd_plugin;

/* search_path: colon-separated directories; NULL means $CLIPKD_PLUGIN_PATH
 * followed by the installed plugin directory. Fails only when nothing can be
 * scanned at all (e.g. out of memory); bad plugins are listed in rejections. */
ckd_registry *ckd_registry_open(const char *search_path, ckd_error *err);
void ckd_registry_free(ckd_registry *r);

size_t ckd_registry_count(const ckd_registry *r);
const ckd_plugin *ckd_registry_at(const ckd_registry *r, size_t i);   /* sorted by kind, then name */
size_t ckd_registry_rejected(const ckd_registry *r);
const char *ckd_registry_rejection(const ckd_registry *r, size_t i);  /* "path: reason" */

/* The plugin of that kind and name, or NULL with an error that lists the
 * known names (and says when a file of that name was rejected, and why). */
const ckd_plugin *ckd_registry_find(const ckd_registry *r, ckd_plugin_kind kind, const char *name, ckd_error *err);

/* Loads one file without scanning (used for tests and for `plugins show FILE`). */
int ckd_plugin_check_file(const char *path, const ckd_plugin_descriptor **desc, void **handle, ckd_error *err);

const char *ckd_plugin_kind_name(ckd_plugin_kind k);

/* ---- parameters -------------------------------------------------------------- */
/* Checks `params` (a JSON object, may be NULL for {}) against the plugin's
 * schema, fills defaults, and returns the ckd_params a plugin reads; `where`
 * prefixes messages (e.g. "--set" or "recipe.json: losses[1].params"). */
ckd_params *ckd_params_for(const ckd_plugin *p, const json_t *params, const char *where, ckd_error *err);
/* Wraps an already validated object (takes a reference). */
ckd_params *ckd_params_wrap(json_t *obj);
const json_t *ckd_params_json(const ckd_params *p);
void ckd_params_free(ckd_params *p);
/* Applies "key=value" settings (value parsed as JSON when it parses, else a string) to obj. */
int ckd_params_set(json_t *obj, const char *assignment, ckd_error *err);

#ifdef __cplusplus
}
#endif
#endif
