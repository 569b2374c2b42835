/* clipkd/recipe.h — recipes: JSON files that describe one run.
 *
 * A recipe is a JSON object (see clipkd-recipe(5)) that may extend other
 * recipes ("extends"), is adjusted from the command line with --set
 * overrides, and is checked against the recipe schema and against every
 * plugin's parameter schema before any compute. Every message names the file,
 * line and column the offending value came from (or the --set that gave it)
 * and its JSON path, e.g.
 *
 *     sub/base.json:12:7: losses[1].params.tau: expected a value ≥ 0.01, got 0
 *
 * A loaded recipe has a canonical form (sorted keys, compact, defaults filled
 * in, no "extends") and the SHA-256 of that form, which identifies the run:
 * recipes that differ only in how they are written hash the same.
 *
 * JSON paths are written as in JavaScript: members with ".", array elements
 * with "[i]" (0-based): "losses[1].params.tau"; the root is "".
 */
#ifndef CLIPKD_RECIPE_H
#define CLIPKD_RECIPE_H

#include <stddef.h>

#include <jansson.h>

#include "clipkd/error.h"
#include "clipkd/schema.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Teaching assistants a recipe may name ("assistants"). */
#define CKD_MAX_ASSISTANTS 8

/* ---- JSON with positions ---------------------------------------------------
 * jansson parses but keeps no positions; a ckd_json_source is the parsed
 * value plus, for every value in it, the 1-based line and column where it
 * starts (for an object member: where its key starts). Columns count
 * characters, not bytes, as jansson's own error columns do. */
typedef struct ckd_json_source ckd_json_source;

/* Reads and parses a JSON file; an object with a duplicated key is an error.
 * *root_out gets a new reference to the parsed value (any JSON value).
 * Errors read "<file>:<line>:<col>: <jansson's message>", or
 * "<file>: cannot open: <reason>". */
ckd_json_source *ckd_json_source_load(const char *path, json_t **root_out, ckd_error *err);

/* The same for text in memory; `name` stands for the file in messages. */
ckd_json_source *ckd_json_source_parse(const char *name, const char *text, size_t len,
                                       json_t **root_out, ckd_error *err);

/* Where the value at json_path starts: 1 with *line and *col set, or 0 when
 * the text holds no such value. */
int ckd_json_source_find(const ckd_json_source *s, const char *json_path, int *line, int *col);

/* A ckd_json_locate_fn over one source (user is the ckd_json_source): the
 * value's position, or that of its nearest ancestor in the text (a key that a
 * default filled in, a missing required key), and the source's name. */
int ckd_json_source_locate(void *source, const char *json_path, const char **file, int *line,
                           int *col);

const char *ckd_json_source_name(const ckd_json_source *s);
void ckd_json_source_free(ckd_json_source *s);


/* ---- recipes ------------------------------------------------------------------ */
typedef struct ckd_recipe ckd_recipe;

/* Supplies the parameter schema of a plugin, as JSON text: kind is "loss" or
 * "model", name the plugin's name as written in the recipe. On success sets
 * *schema_json (borrowed: it must stay valid until the next call) and
 * returns 0. The schema is applied as ckd_params_for() applies it, so NULL
 * or "{}" means a plugin without parameters (any key is an error); a
 * callback that wants to accept anything returns
 * {"additionalProperties": true}. An unknown name returns -1 with a message
 * that lists the known names; the loader prefixes it with the position of
 * the name in the recipe. */
typedef int (*ckd_recipe_plugin_schema_fn)(void *user, const char *kind, const char *name,
                                           const char **schema_json, ckd_error *err);

/* Loads the recipe at `path`: resolves "extends" (relative to each including
 * file's directory), applies the n_sets overrides in order (each written
 * "a.b[1].c=value", as for `clipkd --set`), validates the result against the
 * recipe schema, fills in defaults, and checks the parameters of every loss
 * (losses[i].params) and model (student.config, teacher.config) against the
 * schema that plugin_schema returns for it (plugin_schema NULL: plugins are
 * not checked, their parameters are taken as written). Numbers with an
 * integral value are stored as integers (1.0 reads as 1), so read numeric
 * settings with json_number_value(). NULL with err set on failure. */
ckd_recipe *ckd_recipe_load(const char *path, const char *const *sets, size_t n_sets,
                            ckd_recipe_plugin_schema_fn plugin_schema, void *user,
                            ckd_error *err);

/* A recipe made of several parts merged in order, as "extends" merges
 * (e.g. a table's profile recipe, then a row's recipe file, then the row's
 * own overrides written in the table). A part is either a recipe file
 * (`path`, its extends followed) or an object embedded in another JSON
 * document (`obj` inside `src`, at JSON path `at`): messages about values it
 * wrote name the document's file, line and column, and file names in it are
 * relative to the document's folder. src must outlive the recipe. `name` is
 * the recipe's path (ckd_recipe_path): what messages name for values no part
 * wrote, and the folder a run resolves data paths against. The sets and the
 * checks are as for ckd_recipe_load, which is this with one file. */
typedef struct ckd_recipe_part {
    const char *path;
    const ckd_json_source *src;
    const char *at;
    const json_t *obj;
} ckd_recipe_part;

ckd_recipe *ckd_recipe_compose(const char *name, const ckd_recipe_part *parts, size_t n_parts,
                               const char *const *sets, size_t n_sets,
                               ckd_recipe_plugin_schema_fn plugin_schema, void *user, ckd_error *err);

void ckd_recipe_free(ckd_recipe *r);

/* The path the recipe was loaded from, as given. */
const char *ckd_recipe_path(const ckd_recipe *r);

/* The resolved recipe (borrowed; valid until ckd_recipe_free). */
json_t *ckd_recipe_json(const ckd_recipe *r);

/* The canonical form: sorted keys, compact, numbers with full precision
 * (borrowed). */
const char *ckd_recipe_canonical(const ckd_recipe *r);

/* SHA-256 of the canonical form: 64 lower-case hex digits (borrowed). */
const char *ckd_recipe_hash(const ckd_recipe *r);

/* The resolved recipe, indented and with sorted keys, ending in a newline
 * (for `clipkd validate`); the caller frees it. NULL if out of memory. */
char *ckd_recipe_dump(const ckd_recipe *r);

/* A ckd_json_locate_fn over a loaded recipe (user is the ckd_recipe): the
 * file, line and column the value at json_path came from, through extends;
 * for a value set on the command line *file becomes "--set <assignment>" and
 * the line is 0. Lets later stages report problems where the user wrote them. */
int ckd_recipe_locate(void *recipe, const char *json_path, const char **file, int *line,
                      int *col);

/* Formats a message about the value at json_path of a loaded recipe, like the
 * loader's own ("<file>:<line>:<col>: <path>: <message>"). Returns -1. */
int ckd_recipe_errorf(const ckd_recipe *r, const char *json_path, ckd_error *err,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The string at json_path (e.g. "teacher.recipe") as a file name, resolved
 * relative to the directory of the recipe file that wrote it (as given, for a
 * value from --set). */
int ckd_recipe_resolve_path(const ckd_recipe *r, const char *json_path, char *out, size_t cap,
                            ckd_error *err);

/* ---- pieces of the loader, for programs that build recipes in memory ----- */

/* The recipe schema (JSON text, in the subset clipkd/schema.h checks). */
const char *ckd_recipe_schema_text(void);

/* Applies one override "a.b[1].c=value" to a recipe object. The value is
 * parsed as JSON when it parses (numbers, true/false, arrays, objects,
 * "quoted strings"), else taken as a string; null removes the key. Object
 * members on the way that do not exist yet are created; array elements must
 * exist. Every key must be one the recipe schema knows (below free-form
 * objects such as losses[i].params, any key is accepted here and checked by
 * the plugin's schema later). On success the normalised path is copied to
 * path_out (may be NULL); on failure the recipe is left as it was. */
int ckd_recipe_set(json_t *recipe, const char *assignment, char *path_out, size_t cap,
                   ckd_error *err);

/* Validates a merged recipe in place: the recipe schema (filling defaults),
 * the few rules it cannot express, then every plugin's parameters as
 * ckd_recipe_load does. Messages are placed with locate (may be NULL) and
 * `file`. */
int ckd_recipe_validate(json_t *recipe, const char *file, ckd_json_locate_fn locate,
                        void *locate_user, ckd_recipe_plugin_schema_fn plugin_schema, void *user,
                        ckd_error *err);

/* ---- published weights and lock files (host/run/pretrained.c) ---------------- */

/* The registry of published weights: recipes/pretrained.json as installed
 * (found like every shipped file, CLIPKD_DATA_DIR), then each file named in
 * $CLIPKD_PRETRAINED (colon-separated), whose entries add to it or replace
 * same-named ones (a site's mirrors, a lab's own models). Each file is
 * {"models": {NAME: entry}}; an entry is a model object as recipes write
 * one ("model", "config", "weights") plus "description", "format",
 * "preprocess", "source" and, for weights that cannot be used yet,
 * "unavailable" (the reason). Weights whose publisher gives only part of
 * the SHA-256 carry "sha256_prefix" instead of "sha256" and "size". Returns
 * a new object NAME -> entry, or NULL with err naming the file and entry. */
json_t *ckd_pretrained_load(ckd_error *err);
/* The entry called name (borrowed from reg), or NULL with err listing the
 * names and the nearest one. */
const json_t *ckd_pretrained_find(const json_t *reg, const char *name, ckd_error *err);

/* A lock file records what `clipkd fetch --pin RECIPE` downloaded for the
 * artifacts whose full hash is not published, next to the recipe:
 * RECIPE.lock.json = {"clipkd_lock": 1, "artifacts": {FIRST_URL: {"sha256",
 * "size", "name", "at", "pinned"}}}. A recipe loaded from a file (each file
 * of ckd_recipe_compose) takes the hashes and sizes of its lock for the
 * artifacts that have none, so later fetches verify against them and refuse
 * a changed file. */
int ckd_recipe_lock_path(const char *recipe_path, char *out, size_t cap, ckd_error *err);
/* The lock at path; an empty lock when the file does not exist. */
json_t *ckd_lock_load(const char *path, ckd_error *err);
/* Gives every artifact object below recipe without a "sha256" the hash and
 * size the lock has for its first URL. -1 when out of memory. */
int ckd_lock_apply(json_t *recipe, const json_t *lock);
/* Records (or replaces) url's pin; -1 when out of memory. */
int ckd_lock_record(json_t *lock, const char *url, const char *sha256, int64_t size, const char *name,
                    const char *where);
/* Writes the lock atomically. */
int ckd_lock_save(const json_t *lock, const char *path, ckd_error *err);

#ifdef __cplusplus
}
#endif
#endif
