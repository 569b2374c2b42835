/* A table's figures: per row and metric, ours over the seeds next to the
 * paper's, the deltas against the baseline row, and which of the paper's
 * orderings our means keep. */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "table_internal.h"

void tbuf_printf(tbuf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            free(b->s);
            b->s = NULL;
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
}

char *tbuf_finish(tbuf *b, ckd_error *err)
{
    if (b->oom || !b->s) {
        free(b->s);
        ckd_errorf(err, "out of memory rendering the table");
        return NULL;
    }
    return b->s;
}

void table_metric_title(const ckd_table_metric *m, char *out, size_t cap)
{
    if (m->scale == 100)
        snprintf(out, cap, "%s (%%)", m->label);
    else
        snprintf(out, cap, "%s", m->label);
}

/* Mean and sample standard deviation of a row's figures for one metric. */
static int row_stats(const ckd_table_metric *m, const ckd_table_outcome *o, size_t metric, double *mean,
                     double *std)
{
    int n = 0;
    double sum = 0, ss = 0;
    for (int s = 0; s < o->n && s < CKD_TABLE_MAX_SEEDS; s++)
        if (o->has[metric][s]) {
            sum += o->value[metric][s] * m->scale;
            n++;
        }
    if (!n)
        return 0;
    *mean = sum / n;
    for (int s = 0; s < o->n && s < CKD_TABLE_MAX_SEEDS; s++)
        if (o->has[metric][s]) {
            double d = o->value[metric][s] * m->scale - *mean;
            ss += d * d;
        }
    *std = n > 1 ? sqrt(ss / (n - 1)) : 0;
    return n;
}

void ckd_table_cell_of(const ckd_table *t, const ckd_table_outcome *outcomes, const int *sel, size_t row,
                       size_t metric, ckd_table_cell *out)
{
    memset(out, 0, sizeof *out);
    const ckd_table_metric *m = ckd_table_metric_at(t, metric);
    const ckd_table_row *r = ckd_table_row_at(t, row);
    out->n = row_stats(m, &outcomes[row], metric, &out->mean, &out->std);
    out->has_paper = r->has_paper[metric];
    out->paper = r->paper[metric];
    int b = r->baseline;
    if (b < 0 || (size_t)b == row || !sel[b])
        return;
    const ckd_table_row *br = ckd_table_row_at(t, (size_t)b);
    double bmean, bstd;
    if (out->n && row_stats(m, &outcomes[b], metric, &bmean, &bstd)) {
        out->has_delta = 1;
        out->delta = out->mean - bmean;
    }
    if (out->has_paper && br->has_paper[metric]) {
        out->has_paper_delta = 1;
        out->paper_delta = out->paper - br->paper[metric];
    }
}

size_t ckd_table_orderings(const ckd_table *t, const ckd_table_outcome *outcomes, const int *sel, size_t metric,
                           size_t *a, size_t *b, int *holds, size_t cap, size_t *n_holding)
{
    size_t n = 0, rows = ckd_table_n_rows(t);
    const ckd_table_metric *m = ckd_table_metric_at(t, metric);
    *n_holding = 0;
    for (size_t i = 0; i < rows; i++)
        for (size_t j = i + 1; j < rows; j++) {
            const ckd_table_row *ri = ckd_table_row_at(t, i), *rj = ckd_table_row_at(t, j);
            double mi, mj, si, sj;
            if (!sel[i] || !sel[j] || !ri->has_paper[metric] || !rj->has_paper[metric] ||
                ri->paper[metric] == rj->paper[metric] || !row_stats(m, &outcomes[i], metric, &mi, &si) ||
                !row_stats(m, &outcomes[j], metric, &mj, &sj))
                continue;
            /* The paper ranks hi above lo; does ours? */
            int i_first = ri->paper[metric] > rj->paper[metric];
            size_t hi = i_first ? i : j, lo = i_first ? j : i;
            int ok = i_first ? mi > mj : mj > mi;
            *n_holding += (size_t)ok;
            if (n < cap) {
                a[n] = hi;
                b[n] = lo;
                holds[n] = ok;
            }
            n++;
        }
    return n < cap ? n : cap;
}
