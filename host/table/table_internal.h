/* table_internal.h — what the table files share. */
#ifndef CKD_TABLE_INTERNAL_H
#define CKD_TABLE_INTERNAL_H

#include <stddef.h>

#include "clipkd/table.h"

/* The most --set overrides a row recipe takes from the caller. */
#define TABLE_MAX_SETS 256

/* A chart of one metric against another, one line per row group
 * (the table's "plots"; x and y are metric indices). */
#define TABLE_MAX_PLOTS 4
typedef struct table_plot {
    int x, y;
    int log_x;
    const char *title; /* or NULL */
} table_plot;

size_t table_plots(const ckd_table *t, const table_plot **out);

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

/* SVG helpers table_svg.c and table_plot.c share. */
void table_xml_text(tbuf *b, const char *s);
/* A tick step of 1, 2 or 5 times a power of ten giving about five ticks. */
double table_tick_step(double range);
/* The table's plots, from y on; returns the height used. */
int table_svg_plots(tbuf *b, const ckd_table *t, const ckd_table_outcome *o, const int *sel, int y);
/* The height table_svg_plots will use, and the width it needs. */
int table_svg_plots_height(const ckd_table *t);
int table_svg_plots_width(void);

char *table_render_svg(const ckd_table *t, const char *profile, const ckd_table_outcome *o, const int *sel,
                       ckd_error *err);

#endif
