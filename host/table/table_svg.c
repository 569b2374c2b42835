/* table.svg: per metric, two bar charts — our mean (with ± one sample std as
 * an error bar) next to the paper's value for every row, and our Δ against
 * the baseline row next to the paper's Δ. The second chart is the one to
 * read when the profile's data is not the paper's: absolute figures on
 * Fashion-MNIST and on ImageNet are not comparable, the effect of a loss
 * against the same baseline may be. Plain SVG 1.1, no script, no external
 * fonts, so any browser shows it. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "table_internal.h"

#define LEFT 64
#define GROUP 78
#define BAR 26
#define PANEL_H 210
#define TOP 34
#define BOTTOM 40
#define OURS "#2b6cb0"
#define PAPER "#dd8452"

void table_xml_text(tbuf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '&')
            tbuf_printf(b, "&amp;");
        else if (*s == '<')
            tbuf_printf(b, "&lt;");
        else if (*s == '>')
            tbuf_printf(b, "&gt;");
        else
            tbuf_printf(b, "%c", *s);
    }
}

double table_tick_step(double range)
{
    if (!(range > 0))
        return 1;
    double raw = range / 5, p = pow(10, floor(log10(raw)));
    double f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

typedef struct panel {
    double lo, hi;   /* value range of the axis */
    int y0;          /* top of the plotting area */
} panel;

static double ypix(const panel *p, double v)
{
    return p->y0 + (p->hi - v) / (p->hi - p->lo) * PANEL_H;
}

static void axis(tbuf *b, const panel *p, int width, const char *title)
{
    double step = table_tick_step(p->hi - p->lo);
    tbuf_printf(b, "<text x=\"%d\" y=\"%d\" font-weight=\"bold\">", LEFT, p->y0 - 10);
    table_xml_text(b, title);
    tbuf_printf(b, "</text>\n");
    for (double v = ceil(p->lo / step) * step; v <= p->hi + step * 1e-9; v += step) {
        double y = ypix(p, v);
        tbuf_printf(b,
                    "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>"
                    "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                    LEFT, width - 10, y, y, fabs(v) < step * 1e-9 ? "#555" : "#ddd", LEFT - 6, y + 4,
                    fabs(v) < step * 1e-9 ? 0.0 : v);
    }
}

static void bar(tbuf *b, const panel *p, double x, double v, const char *color, int has_err, double err)
{
    double base = ypix(p, p->lo > 0 ? p->lo : p->hi < 0 ? p->hi : 0), top = ypix(p, v);
    tbuf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"%s\"><title>%.2f</title></rect>\n",
                x, top < base ? top : base, BAR, fabs(base - top), color, v);
    if (has_err && err > 0) {
        double cx = x + BAR / 2.0, y1 = ypix(p, v - err), y2 = ypix(p, v + err);
        tbuf_printf(b,
                    "<path d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f\" stroke=\"#111\" "
                    "stroke-width=\"1.5\"/>\n",
                    cx, y1, y2, cx - 5, y1, cx + 5, cx - 5, y2, cx + 5);
    }
}

static void range_add(double *lo, double *hi, double v)
{
    if (v < *lo)
        *lo = v;
    if (v > *hi)
        *hi = v;
}

/* Pads a value range and always includes zero, so bars start from it. */
static void range_finish(panel *p, double lo, double hi)
{
    range_add(&lo, &hi, 0);
    if (hi - lo < 1e-9)
        hi = lo + 1;
    double pad = (hi - lo) * 0.08;
    p->lo = lo < 0 ? lo - pad : 0;
    p->hi = hi > 0 ? hi + pad : 0;
}

/* Whether any selected row has a Δ (ours or the paper's) for metric m: a
 * metric without one (a teacher's figure on rows against a student-alone
 * baseline) gets no Δ chart. */
static int has_deltas(const ckd_table *t, const ckd_table_outcome *o, const int *sel, size_t m)
{
    for (size_t r = 0; r < ckd_table_n_rows(t); r++) {
        if (!sel[r])
            continue;
        ckd_table_cell c;
        ckd_table_cell_of(t, o, sel, r, m, &c);
        if (c.has_delta || c.has_paper_delta)
            return 1;
    }
    return 0;
}

/* The two charts of metric m (one without Δs), starting at y; returns the height used. */
static int metric_charts(tbuf *b, const ckd_table *t, const ckd_table_outcome *o, const int *sel, size_t m, int y,
                         int width)
{
    size_t nr = ckd_table_n_rows(t);
    double lo = 0, hi = 0, dlo = 0, dhi = 0;
    for (size_t r = 0; r < nr; r++) {
        if (!sel[r])
            continue;
        ckd_table_cell c;
        ckd_table_cell_of(t, o, sel, r, m, &c);
        if (c.n)
            range_add(&lo, &hi, c.mean + c.std), range_add(&lo, &hi, c.mean - c.std);
        if (c.has_paper)
            range_add(&lo, &hi, c.paper);
        if (c.has_delta)
            range_add(&dlo, &dhi, c.delta);
        if (c.has_paper_delta)
            range_add(&dlo, &dhi, c.paper_delta);
    }
    char title[200], full[300];
    table_metric_title(ckd_table_metric_at(t, m), title, sizeof title);
    panel pv = {.y0 = y + TOP}, pd = {.y0 = y + TOP + PANEL_H + BOTTOM + TOP};
    range_finish(&pv, lo, hi);
    range_finish(&pd, dlo, dhi);
    axis(b, &pv, width, title);
    int bl = ckd_table_baseline(t), deltas = has_deltas(t, o, sel, m);
    snprintf(full, sizeof full, "%s: Δ against %s", title,
             bl >= 0 ? ckd_table_row_at(t, (size_t)bl)->label : "each row's baseline");
    if (deltas)
        axis(b, &pd, width, full);
    int g = 0;
    for (size_t r = 0; r < nr; r++) {
        if (!sel[r])
            continue;
        ckd_table_cell c;
        ckd_table_cell_of(t, o, sel, r, m, &c);
        double x = LEFT + 10 + g * GROUP;
        if (c.n)
            bar(b, &pv, x, c.mean, OURS, c.n > 1, c.std);
        if (c.has_paper)
            bar(b, &pv, x + BAR, c.paper, PAPER, 0, 0);
        if (c.has_delta)
            bar(b, &pd, x, c.delta, OURS, 0, 0);
        if (c.has_paper_delta)
            bar(b, &pd, x + BAR, c.paper_delta, PAPER, 0, 0);
        for (int k = 0; k < 1 + deltas; k++) {
            tbuf_printf(b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">", x + BAR,
                        (k ? pd.y0 : pv.y0) + PANEL_H + 16);
            table_xml_text(b, ckd_table_row_at(t, r)->label);
            tbuf_printf(b, "</text>\n");
        }
        if (!c.n && o[r].status != CKD_TABLE_DONE)
            tbuf_printf(b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" fill=\"#a00\">%s</text>\n", x + BAR / 2.0,
                        pv.y0 + PANEL_H - 6,
                        o[r].status == CKD_TABLE_FAILED ? "failed" : o[r].status == CKD_TABLE_BLOCKED ? "blocked"
                                                                                                      : "pending");
        g++;
    }
    return (1 + deltas) * (TOP + PANEL_H + BOTTOM);
}

char *table_render_svg(const ckd_table *t, const char *profile, const ckd_table_outcome *o, const int *sel,
                       ckd_error *err)
{
    ckd_table_profile p;
    if (ckd_table_profile_get(t, profile, &p, err))
        return NULL;
    int groups = 0, charts = 0;
    for (size_t m = 0; m < ckd_table_n_metrics(t); m++)
        charts += p.metric_on[m] ? 1 + has_deltas(t, o, sel, m) : 0;
    for (size_t r = 0; r < ckd_table_n_rows(t); r++)
        groups += sel[r] != 0;
    int width = LEFT + 20 + (groups > 4 ? groups : 4) * GROUP;
    /* Wide enough for the title (15-px bold: about 9 px a character). */
    int title_w = LEFT + 20 + 9 * (int)(strlen(ckd_table_title(t)) + strlen(profile) + 12);
    if (width < title_w)
        width = title_w;
    if (table_svg_plots_height(t) && width < table_svg_plots_width())
        width = table_svg_plots_width();
    int height = 60 + charts * (TOP + PANEL_H + BOTTOM) + table_svg_plots_height(t) + 30;
    tbuf b = {0};
    tbuf_printf(&b,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                "font-family=\"sans-serif\" font-size=\"12\">\n"
                "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
                "<text x=\"%d\" y=\"22\" font-size=\"15\" font-weight=\"bold\">",
                width, height, width, height, LEFT);
    table_xml_text(&b, ckd_table_title(t));
    tbuf_printf(&b, " — profile ");
    table_xml_text(&b, profile);
    tbuf_printf(&b,
                "</text>\n"
                "<rect x=\"%d\" y=\"32\" width=\"12\" height=\"12\" fill=\"" OURS "\"/>"
                "<text x=\"%d\" y=\"43\">ours (mean ± std over seeds)</text>"
                "<rect x=\"%d\" y=\"32\" width=\"12\" height=\"12\" fill=\"" PAPER "\"/>"
                "<text x=\"%d\" y=\"43\">paper</text>\n",
                LEFT, LEFT + 16, LEFT + 230, LEFT + 246);
    /* The plots first: where a table has them, they are its summary. */
    int y = 50 + table_svg_plots(&b, t, o, sel, 50);
    for (size_t m = 0; m < ckd_table_n_metrics(t); m++)
        if (p.metric_on[m])
            y += metric_charts(&b, t, o, sel, m, y, width);
    tbuf_printf(&b, "</svg>\n");
    return tbuf_finish(&b, err);
}
