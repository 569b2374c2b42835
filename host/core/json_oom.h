/* Parsing JSON when memory may run out (json_oom.c). jansson 2.14 does not
 * survive a failed allocation in its lexer: it asserts
 * (lex_scan_string), or drops the byte it could not store and returns a
 * damaged string; and it reports other failed allocations as syntax errors.
 * libclipkd parses only through these wrappers: during the parse a refused
 * allocation is served from a small reserve and counted, so jansson never
 * sees one, and the result is then thrown away with *oom = 1 (oom may be
 * NULL). Outside a parse jansson sees failures as they are: its other
 * functions return NULL or -1 for them, and a string from json_dumps is
 * always the caller's to free(). */
#ifndef CKD_CORE_JSON_OOM_H
#define CKD_CORE_JSON_OOM_H

#include <jansson.h>

json_t *ckdi_json_loads(const char *text, size_t flags, json_error_t *error, int *oom);
json_t *ckdi_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *error, int *oom);
json_t *ckdi_json_load_file(const char *path, size_t flags, json_error_t *error, int *oom);

#endif
