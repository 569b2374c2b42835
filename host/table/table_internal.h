/* table_internal.h — what the table files share. */
#ifndef CKD_TABLE_INTERNAL_H
#define CKD_TABLE_INTERNAL_H

#include <stddef.h>

#include "clipkd/table.h"

/* The most --set overrides a row recipe takes from the caller. */
#define TABLE_MAX_SETS 256

/* A growing string; on allocation failure it stays failed (s NULL, oom 1)
 * and later appends do nothing. */
typedef struct tbuf {
    char *s;
    size_t len, cap;
    int oom;
} tbuf;

void tbuf_printf(tbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The text (the caller frees it), or NULL with err set when out of memory. */
char *tbuf_finish(tbuf *b, ckd_error *err);

/* A metric's label with its unit: "zero-shot top-1 (%)" for scale 100. */
void table_metric_title(const ckd_table_metric *m, char *out, size_t cap);

char *table_render_svg(const ckd_table *t, const char *profile, const ckd_table_outcome *o, const int *sel,
                       ckd_error *err);

#endif
