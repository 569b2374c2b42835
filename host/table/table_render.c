/* A table's figures as Markdown, CSV and JSON (the SVG chart is in
 * table_svg.c). Every format carries the same numbers: ours as mean ± sample
 * std over n seeds, the paper's, and both deltas against the baseline row. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "table_internal.h"

#define MAX_PAIRS (CKD_TABLE_MAX_ROWS * CKD_TABLE_MAX_ROWS / 2)

static const char *status_word(ckd_table_status s)
{
    switch (s) {
    case CKD_TABLE_DONE: return "done";
    case CKD_TABLE_FAILED: return "failed";
    case CKD_TABLE_BLOCKED: return "blocked";
    default: return "pending";
    }
}

static const char *src_str(const ckd_table *t, const char *k)
{
    return json_string_value(json_object_get(ckd_table_source(t), k));
}

static void md_source(tbuf *b, const ckd_table *t, const ckd_table_profile *p, int seeds)
{
    tbuf_printf(b, "# %s — profile %s\n\n", ckd_table_title(t), p->name);
    tbuf_printf(b, "Paper: %s%s%s", src_str(t, "authors") ? src_str(t, "authors") : "",
                src_str(t, "authors") ? ", " : "", src_str(t, "paper"));
    if (src_str(t, "venue"))
        tbuf_printf(b, ", %s", src_str(t, "venue"));
    if (src_str(t, "table"))
        tbuf_printf(b, "; %s", src_str(t, "table"));
    if (src_str(t, "url"))
        tbuf_printf(b, " (<%s>)", src_str(t, "url"));
    tbuf_printf(b, ".%s%s%s\n", src_str(t, "eval") ? " The paper's figures: " : "",
                src_str(t, "eval") ? src_str(t, "eval") : "", src_str(t, "eval") ? "." : "");
    tbuf_printf(b, "Ours: profile %s", p->name);
    if (p->description)
        tbuf_printf(b, " — %s", p->description);
    tbuf_printf(b, "; mean ± sample std over up to %d seed%s (n)", seeds, seeds == 1 ? "" : "s");
    if (p->eval_name)
        tbuf_printf(b, ", evaluated on %s", p->eval_name);
    tbuf_printf(b, ".\n\n");
}

/* Which of a metric's optional columns the Markdown table shows: the
 * paper's figure and Δ only when some row has one (a study the paper gives
 * no figures for is not a grid of dashes), our Δ only when some row has it. */
typedef struct md_cols {
    int paper, delta;
} md_cols;

static md_cols md_cols_of(const ckd_table *t, const ckd_table_outcome *o, const int *sel, size_t m)
{
    md_cols k = {0, 0};
    for (size_t r = 0; r < ckd_table_n_rows(t); r++) {
        if (!sel[r])
            continue;
        ckd_table_cell c;
        ckd_table_cell_of(t, o, sel, r, m, &c);
        k.paper |= c.has_paper;
        k.delta |= c.has_delta;
    }
    return k;
}

/* Two decimals, or none past 10,000 (a parameter count). */
static void md_num(tbuf *b, const char *fmt_sign, double v)
{
    if (fabs(v) >= 1e4)
        tbuf_printf(b, fmt_sign[0] == '+' ? " %+.0f |" : " %.0f |", v);
    else
        tbuf_printf(b, fmt_sign[0] == '+' ? " %+.2f |" : " %.2f |", v);
}

static void md_cell(tbuf *b, const ckd_table_cell *c, const ckd_table_outcome *o, md_cols k)
{
    if (c->n == 0)
        tbuf_printf(b, " %s |", o->status == CKD_TABLE_DONE ? "—" : status_word(o->status));
    else if (c->n > 1 && fabs(c->mean) >= 1e4)
        tbuf_printf(b, " %.0f ± %.0f |", c->mean, c->std);
    else if (c->n > 1)
        tbuf_printf(b, " %.2f ± %.2f |", c->mean, c->std);
    else
        md_num(b, "", c->mean);
    tbuf_printf(b, " %d |", c->n);
    if (k.paper && c->has_paper)
        md_num(b, "", c->paper);
    else if (k.paper)
        tbuf_printf(b, " — |");
    if (k.delta && c->has_delta)
        md_num(b, "+", c->delta);
    else if (k.delta)
        tbuf_printf(b, " — |");
    if (k.paper && c->has_paper_delta)
        md_num(b, "+", c->paper_delta);
    else if (k.paper)
        tbuf_printf(b, " — |");
}

static void md_orderings(tbuf *b, const ckd_table *t, const ckd_table_outcome *o, const int *sel, size_t m)
{
    size_t a[MAX_PAIRS], lo[MAX_PAIRS], holding;
    int holds[MAX_PAIRS];
    size_t n = ckd_table_orderings(t, o, sel, m, a, lo, holds, MAX_PAIRS, &holding);
    const ckd_table_metric *mt = ckd_table_metric_at(t, m);
    if (!n) {
        tbuf_printf(b, "Orderings (%s): none to compare (the paper's figures, or ours, are missing).\n", mt->label);
        return;
    }
    tbuf_printf(b, "Orderings (%s): %zu of the paper's %zu (row A above row B) hold in our means", mt->label,
                holding, n);
    if (holding == n) {
        tbuf_printf(b, ".\n");
        return;
    }
    tbuf_printf(b, "; these do not:");
    size_t shown = 0;
    for (size_t i = 0; i < n; i++) {
        if (holds[i])
            continue;
        tbuf_printf(b, "%s %s > %s", shown++ ? "," : "", ckd_table_row_at(t, a[i])->label,
                    ckd_table_row_at(t, lo[i])->label);
    }
    tbuf_printf(b, ".\n");
}

/* Which row each Δ is against: "Δ: against Baseline." or, when rows have
 * baselines of their own, "Δ against A: X, Y; against B: Z." */
static void md_baselines(tbuf *b, const ckd_table *t, const int *sel)
{
    size_t nr = ckd_table_n_rows(t);
    int seen[CKD_TABLE_MAX_ROWS] = {0}, groups = 0;
    for (size_t r = 0; r < nr; r++)
        if (sel[r] && ckd_table_row_at(t, r)->baseline >= 0 && !seen[ckd_table_row_at(t, r)->baseline]++)
            groups++;
    if (groups == 0)
        return;
    if (groups == 1) {
        for (size_t r = 0; r < nr; r++)
            if (sel[r] && ckd_table_row_at(t, r)->baseline >= 0) {
                tbuf_printf(b, "\nΔ: against %s.\n", ckd_table_row_at(t, (size_t)ckd_table_row_at(t, r)->baseline)->label);
                break;
            }
        return;
    }
    tbuf_printf(b, "\nΔ");
    int first = 1;
    for (size_t g = 0; g < nr; g++) {
        if (!seen[g])
            continue;
        tbuf_printf(b, "%s against %s:", first ? "" : ";", ckd_table_row_at(t, g)->label);
        first = 0;
        int k = 0;
        for (size_t r = 0; r < nr; r++)
            if (sel[r] && ckd_table_row_at(t, r)->baseline == (int)g && r != g)
                tbuf_printf(b, "%s %s", k++ ? "," : "", ckd_table_row_at(t, r)->label);
    }
    tbuf_printf(b, ".\n");
}

static char *render_md(const ckd_table *t, const ckd_table_profile *p, const ckd_table_outcome *o, const int *sel,
                       ckd_error *err)
{
    tbuf b = {0};
    size_t nm = ckd_table_n_metrics(t), nr = ckd_table_n_rows(t);
    md_source(&b, t, p, p->seeds);
    tbuf_printf(&b, "| row |");
    for (size_t m = 0; m < nm; m++) {
        if (!p->metric_on[m])
            continue;
        char title[160];
        table_metric_title(ckd_table_metric_at(t, m), title, sizeof title);
        md_cols k = md_cols_of(t, o, sel, m);
        tbuf_printf(&b, " %s, ours | n |%s%s%s", title, k.paper ? " paper |" : "", k.delta ? " Δ ours |" : "",
                    k.paper ? " Δ paper |" : "");
    }
    tbuf_printf(&b, "\n|---|");
    for (size_t m = 0; m < nm; m++)
        if (p->metric_on[m]) {
            md_cols k = md_cols_of(t, o, sel, m);
            tbuf_printf(&b, "---:|---:|%s%s%s", k.paper ? "---:|" : "", k.delta ? "---:|" : "", k.paper ? "---:|" : "");
        }
    tbuf_printf(&b, "\n");
    for (size_t r = 0; r < nr; r++) {
        if (!sel[r])
            continue;
        tbuf_printf(&b, "| %s |", ckd_table_row_at(t, r)->label);
        for (size_t m = 0; m < nm; m++) {
            if (!p->metric_on[m])
                continue;
            ckd_table_cell c;
            ckd_table_cell_of(t, o, sel, r, m, &c);
            md_cell(&b, &c, &o[r], md_cols_of(t, o, sel, m));
        }
        tbuf_printf(&b, "\n");
    }
    md_baselines(&b, t, sel);
    for (size_t r = 0; r < nr; r++)
        if (sel[r] && (o[r].status == CKD_TABLE_FAILED || o[r].status == CKD_TABLE_BLOCKED))
            tbuf_printf(&b, "%s %s: %s.\n", ckd_table_row_at(t, r)->label, status_word(o[r].status), o[r].reason);
    int any_paper = 0;
    for (size_t m = 0; m < nm; m++)
        any_paper |= p->metric_on[m] && md_cols_of(t, o, sel, m).paper;
    if (!any_paper)
        tbuf_printf(&b, "The paper gives no figures for these rows: there are no orderings to check.\n");
    for (size_t m = 0; m < nm && any_paper; m++)
        if (p->metric_on[m])
            md_orderings(&b, t, o, sel, m);
    return tbuf_finish(&b, err);
}

/* A CSV field, quoted when it needs to be (RFC 4180). */
static void csv_field(tbuf *b, const char *s)
{
    if (!strpbrk(s, ",\"\n\r")) {
        tbuf_printf(b, "%s", s);
        return;
    }
    tbuf_printf(b, "\"");
    for (; *s; s++)
        tbuf_printf(b, *s == '"' ? "\"\"" : "%c", *s);
    tbuf_printf(b, "\"");
}

static void csv_num(tbuf *b, int has, double v)
{
    if (has)
        tbuf_printf(b, ",%.4f", v);
    else
        tbuf_printf(b, ",");
}

static char *render_csv(const ckd_table *t, const ckd_table_profile *p, const ckd_table_outcome *o, const int *sel,
                        ckd_error *err)
{
    tbuf b = {0};
    tbuf_printf(&b, "table,profile,row,label,status,metric,n,mean,std,paper,delta,paper_delta,reason\n");
    for (size_t r = 0; r < ckd_table_n_rows(t); r++) {
        if (!sel[r])
            continue;
        for (size_t m = 0; m < ckd_table_n_metrics(t); m++) {
            if (!p->metric_on[m])
                continue;
            ckd_table_cell c;
            ckd_table_cell_of(t, o, sel, r, m, &c);
            csv_field(&b, ckd_table_name(t));
            tbuf_printf(&b, ",");
            csv_field(&b, p->name);
            tbuf_printf(&b, ",");
            csv_field(&b, ckd_table_row_at(t, r)->id);
            tbuf_printf(&b, ",");
            csv_field(&b, ckd_table_row_at(t, r)->label);
            tbuf_printf(&b, ",%s,", status_word(o[r].status));
            csv_field(&b, ckd_table_metric_at(t, m)->id);
            tbuf_printf(&b, ",%d", c.n);
            csv_num(&b, c.n > 0, c.mean);
            csv_num(&b, c.n > 1, c.std);
            csv_num(&b, c.has_paper, c.paper);
            csv_num(&b, c.has_delta, c.delta);
            csv_num(&b, c.has_paper_delta, c.paper_delta);
            tbuf_printf(&b, ",");
            csv_field(&b, o[r].reason);
            tbuf_printf(&b, "\n");
        }
    }
    return tbuf_finish(&b, err);
}

static json_t *num_or_null(int has, double v)
{
    return has ? json_real(v) : json_null();
}

static json_t *json_row(const ckd_table *t, const ckd_table_profile *p, const ckd_table_outcome *o, const int *sel,
                        size_t r)
{
    const ckd_table_row *row = ckd_table_row_at(t, r);
    json_t *metrics = json_object();
    for (size_t m = 0; m < ckd_table_n_metrics(t); m++) {
        if (!p->metric_on[m])
            continue;
        const ckd_table_metric *mt = ckd_table_metric_at(t, m);
        ckd_table_cell c;
        ckd_table_cell_of(t, o, sel, r, m, &c);
        json_t *seeds = json_array();
        for (int s = 0; s < o[r].n && s < CKD_TABLE_MAX_SEEDS; s++)
            json_array_append_new(seeds, num_or_null(o[r].has[m][s], o[r].value[m][s] * mt->scale));
        json_object_set_new(metrics, mt->id,
                            json_pack("{s:i, s:o, s:o, s:o, s:o, s:o, s:o}", "n", c.n, "mean",
                                      num_or_null(c.n > 0, c.mean), "std", num_or_null(c.n > 1, c.std), "seeds",
                                      seeds, "paper", num_or_null(c.has_paper, c.paper), "delta",
                                      num_or_null(c.has_delta, c.delta), "paper_delta",
                                      num_or_null(c.has_paper_delta, c.paper_delta)));
    }
    return json_pack("{s:s, s:s, s:s, s:s, s:o}", "id", row->id, "label", row->label, "status",
                     status_word(o[r].status), "reason", o[r].reason, "metrics", metrics);
}

static json_t *json_orderings(const ckd_table *t, const ckd_table_outcome *o, const int *sel, size_t m)
{
    size_t a[MAX_PAIRS], lo[MAX_PAIRS], holding;
    int holds[MAX_PAIRS];
    size_t n = ckd_table_orderings(t, o, sel, m, a, lo, holds, MAX_PAIRS, &holding);
    json_t *pairs = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(pairs, json_pack("{s:s, s:s, s:b}", "above", ckd_table_row_at(t, a[i])->id, "below",
                                               ckd_table_row_at(t, lo[i])->id, "holds", holds[i]));
    return json_pack("{s:I, s:I, s:o}", "compared", (json_int_t)n, "holding", (json_int_t)holding, "pairs", pairs);
}

static char *render_json(const ckd_table *t, const ckd_table_profile *p, const ckd_table_outcome *o,
                         const int *sel, ckd_error *err)
{
    json_t *rows = json_array(), *metrics = json_array(), *orderings = json_object();
    for (size_t r = 0; r < ckd_table_n_rows(t); r++)
        if (sel[r])
            json_array_append_new(rows, json_row(t, p, o, sel, r));
    for (size_t m = 0; m < ckd_table_n_metrics(t); m++) {
        if (!p->metric_on[m])
            continue;
        const ckd_table_metric *mt = ckd_table_metric_at(t, m);
        json_array_append_new(metrics, json_pack("{s:s, s:s, s:s, s:f}", "id", mt->id, "label", mt->label, "value",
                                                 mt->value, "scale", mt->scale));
        json_object_set_new(orderings, mt->id, json_orderings(t, o, sel, m));
    }
    int b = ckd_table_baseline(t);
    json_t *doc = json_pack("{s:s, s:s, s:s, s:O, s:i, s:o, s:o, s:o, s:o}", "table", ckd_table_name(t), "title",
                            ckd_table_title(t), "profile", p->name, "source", ckd_table_source(t), "seeds", p->seeds,
                            "baseline", b >= 0 ? json_string(ckd_table_row_at(t, (size_t)b)->id) : json_null(),
                            "metrics", metrics, "rows", rows, "orderings", orderings);
    char *s = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(8)) : NULL;
    json_decref(doc);
    if (!s)
        ckd_errorf(err, "out of memory rendering the table");
    return s;
}

char *ckd_table_render(const ckd_table *t, const char *profile, const ckd_table_outcome *outcomes, const int *sel,
                       ckd_table_format fmt, ckd_error *err)
{
    ckd_table_profile p;
    if (ckd_table_profile_get(t, profile, &p, err))
        return NULL;
    switch (fmt) {
    case CKD_TABLE_MD: return render_md(t, &p, outcomes, sel, err);
    case CKD_TABLE_CSV: return render_csv(t, &p, outcomes, sel, err);
    case CKD_TABLE_JSON: return render_json(t, &p, outcomes, sel, err);
    case CKD_TABLE_SVG: return table_render_svg(t, profile, outcomes, sel, err);
    }
    ckd_errorf(err, "unknown table format %d", (int)fmt);
    return NULL;
}
