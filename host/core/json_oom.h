/* jansson and running out of memory (json_oom.c). jansson 2.14 does not
 * survive a failed allocation while it parses: its lexer asserts, or drops
 * a byte and goes on with a damaged string; a hashtable that cannot grow
 * loops for ever. libclipkd therefore gives jansson an allocator that
 * never fails it — a refused malloc is served from a small reserve — and
 * counts those refusals, so that each parse can be checked afterwards and
 * its result thrown away with an "out of memory" error:
 *
 *     unsigned long mark = ckdi_json_failures();
 *     json_t *j = ckd_json_unless_oom(json_loadb(...), mark);
 *     if (!j && ckdi_json_failures() != mark) ... out of memory ...
 */
#ifndef CKD_CORE_JSON_OOM_H
#define CKD_CORE_JSON_OOM_H

#include <jansson.h>

/* Allocations of jansson's that malloc refused, in this thread so far. */
unsigned long ckdi_json_failures(void);

/* j, or NULL (j released) when an allocation failed since mark. */
static inline json_t *ckd_json_unless_oom(json_t *j, unsigned long mark)
{
    if (j && ckdi_json_failures() != mark) {
        json_decref(j);
        return NULL;
    }
    return j;
}

#endif
