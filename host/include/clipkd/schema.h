/* clipkd/schema.h — checking JSON values against a small JSON-schema subset.
 *
 * Used for recipes and for every plugin's parameters, so that a typo or a
 * value out of range is reported before any compute, with the file, the
 * line and column, the JSON path and what was expected.
 *
 * Supported keywords: "type" (object, array, number, integer, string,
 * boolean, or an array of those), "properties", "required",
 * "additionalProperties" (false unless given: unknown keys are errors, with a
 * "did you mean" among the known keys; true allows anything; a schema object
 * checks every extra value), "items", "default" (filled in place when the key
 * is absent), "minimum", "maximum", "exclusiveMinimum", "enum",
 * "description" (documentation only).
 */
#ifndef CLIPKD_SCHEMA_H
#define CLIPKD_SCHEMA_H

#include <stddef.h>

#include <jansson.h>

#include "clipkd/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Maps a JSON path such as "losses[1].params.tau" to a 1-based line and
 * column of the source that holds it (and may replace *file with the name of
 * the file the value came from). Returns 0 if unknown. */
typedef int (*ckd_json_locate_fn)(void *user, const char *json_path, const char **file, int *line, int *col);

/* Validates `value` against `schema`, filling defaults into `value`. Messages
 * read "<file>:<line>:<col>: <path>: <what was expected>, got <what was found>"
 * (the location parts are left out when unknown). `path` is the JSON path of
 * `value` itself ("" for the root). */
int ckd_schema_apply(const json_t *schema, json_t *value, const char *file, const char *path,
                     ckd_json_locate_fn locate, void *locate_user, ckd_error *err);

/* Formats a message about the value at json_path: "<file>:<line>:<col>:
 * <path>: <message>", where locate (may be NULL) supplies the position and may
 * replace `file`; parts that are unknown are left out. Returns -1. */
int ckd_json_errorf(ckd_json_locate_fn locate, void *locate_user, const char *file, const char *json_path,
                    ckd_error *err, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* "an object", "a string", "an integer", ... for messages. */
const char *ckd_json_type_name(const json_t *v);

/* Parses a schema from text (plugins carry theirs as a string). */
json_t *ckd_schema_parse(const char *text, const char *what, ckd_error *err);

/* The candidate closest to `word` (edit distance, a swap of neighbours
 * counting as one edit, ≤ max(2, len/3)), or
 * NULL if none is close. */
const char *ckd_suggest(const char *word, const char *const *candidates, size_t n);

#ifdef __cplusplus
}
#endif
#endif
