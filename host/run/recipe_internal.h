/* recipe_internal.h — what the recipe loader's files share. */
#ifndef CKD_RECIPE_INTERNAL_H
#define CKD_RECIPE_INTERNAL_H

#include <jansson.h>

/* Merges src over dst as extends does: objects merge key by key, src
 * winning; arrays and scalars replace; null removes the key (JSON Merge
 * Patch, RFC 7396). src is the caller's private copy: its subtrees move into
 * dst. -1 when out of memory. */
int ckdi_recipe_merge(json_t *dst, json_t *src);

/* Replaces {"pretrained": NAME, ...} in the student and the teacher by the
 * registry's entry with the object's own keys merged over it (idempotent). */
#include "clipkd/schema.h"
int ckdi_recipe_expand_pretrained(json_t *recipe, const char *file, ckd_json_locate_fn locate, void *user,
                                  ckd_error *err);

#endif
