/* The table's "plots" in table.svg: one metric against another (e.g. the
 * student's accuracy against its teacher's size), one line per row group
 * (e.g. supervised and CLIP teachers), points at the rows' means with ± one
 * sample std of y, and rows without a group (e.g. the student trained
 * without a teacher) as dashed horizontal reference lines. A study such as
 * the capacity gap is read from the slope of each group's line, which the
 * bar charts of table_svg.c do not show. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "table_internal.h"

#define LEFT 64
#define PLOT_W 520
#define PLOT_H 260
#define TOP 34
#define BOTTOM 56
#define LEGEND_W 190

static const char *const colors[] = {"#2b6cb0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"};
#define N_COLORS (sizeof colors / sizeof colors[0])

typedef struct axis_map {
    double lo, hi;
    int log;
    double p0, p1; /* pixels of lo and hi */
} axis_map;

static double map(const axis_map *a, double v)
{
    double f = a->log ? (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo)) : (v - a->lo) / (a->hi - a->lo);
    return a->p0 + f * (a->p1 - a->p0);
}

/* Pads [lo, hi] by 8% (in log space for a log axis); a single value gets
 * a range around it. */
static void pad(axis_map *a)
{
    if (a->log) {
        double l = log10(a->lo), h = log10(a->hi), d = h - l < 1e-9 ? 0.5 : (h - l) * 0.08;
        a->lo = pow(10, l - d), a->hi = pow(10, h + d);
        return;
    }
    double d = a->hi - a->lo < 1e-9 ? (fabs(a->lo) > 0 ? fabs(a->lo) * 0.05 : 1) : (a->hi - a->lo) * 0.08;
    a->lo -= d, a->hi += d;
}

static void tick(tbuf *b, const axis_map *a, double v, int vertical, int x0, int y0)
{
    double p = map(a, v);
    if (vertical) /* a y tick: a horizontal grid line */
        tbuf_printf(b,
                    "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                    "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                    x0, x0 + PLOT_W, p, p, x0 - 6, p + 4, v);
    else
        tbuf_printf(b,
                    "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#ddd\"/>"
                    "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n",
                    p, p, y0, y0 + PLOT_H, p, y0 + PLOT_H + 16, v);
}

static void ticks(tbuf *b, const axis_map *a, int vertical, int x0, int y0)
{
    if (!a->log) {
        double step = table_tick_step(a->hi - a->lo);
        for (double v = ceil(a->lo / step) * step; v <= a->hi + step * 1e-9; v += step)
            tick(b, a, fabs(v) < step * 1e-9 ? 0.0 : v, vertical, x0, y0);
        return;
    }
    /* 1, 2 and 5 of each decade; 1 alone past three decades. */
    int dense = log10(a->hi / a->lo) <= 3;
    for (double d = pow(10, floor(log10(a->lo))); d <= a->hi; d *= 10)
        for (int k = 0; k < 3; k++) {
            double v = d * (k == 0 ? 1 : k == 1 ? 2 : 5);
            if ((k == 0 || dense) && v >= a->lo && v <= a->hi)
                tick(b, a, v, vertical, x0, y0);
        }
}

typedef struct point {
    double x, y, std;
    size_t row;
} point;

static int by_x(const void *a, const void *b)
{
    double d = ((const point *)a)->x - ((const point *)b)->x;
    return (d > 0) - (d < 0);
}

/* The distinct groups of the selected rows, in row order. */
static size_t groups_of(const ckd_table *t, const int *sel, const char **out)
{
    size_t n = 0;
    for (size_t r = 0; r < ckd_table_n_rows(t); r++) {
        const char *g = ckd_table_row_at(t, r)->group;
        if (!sel[r] || !g)
            continue;
        size_t k = 0;
        while (k < n && strcmp(out[k], g))
            k++;
        if (k == n && n < CKD_TABLE_MAX_ROWS)
            out[n++] = g;
    }
    return n;
}

static void one_plot(tbuf *b, const ckd_table *t, const ckd_table_outcome *o, const int *sel, const table_plot *pl,
                     int y0)
{
    size_t nr = ckd_table_n_rows(t);
    point pts[CKD_TABLE_MAX_ROWS];
    double ref[CKD_TABLE_MAX_ROWS];
    size_t n_pts = 0, refs[CKD_TABLE_MAX_ROWS], n_ref = 0;
    axis_map ax = {.lo = INFINITY, .hi = -INFINITY, .log = pl->log_x, .p0 = LEFT, .p1 = LEFT + PLOT_W};
    axis_map ay = {.lo = INFINITY, .hi = -INFINITY, .p0 = y0 + PLOT_H, .p1 = y0};
    for (size_t r = 0; r < nr; r++) {
        if (!sel[r])
            continue;
        ckd_table_cell cx, cy;
        ckd_table_cell_of(t, o, sel, r, (size_t)pl->x, &cx);
        ckd_table_cell_of(t, o, sel, r, (size_t)pl->y, &cy);
        if (!cy.n)
            continue;
        double yv = cy.mean, ys = cy.std; /* cells are in display units */
        if (!ckd_table_row_at(t, r)->group) {
            ref[n_ref] = yv, refs[n_ref++] = r;
        } else {
            if (!cx.n || (pl->log_x && !(cx.mean > 0)))
                continue;
            pts[n_pts++] = (point){cx.mean, yv, ys, r};
            ax.lo = fmin(ax.lo, cx.mean), ax.hi = fmax(ax.hi, cx.mean);
        }
        ay.lo = fmin(ay.lo, yv - ys), ay.hi = fmax(ay.hi, yv + ys);
    }
    char xt[200], yt[200];
    table_metric_title(ckd_table_metric_at(t, (size_t)pl->x), xt, sizeof xt);
    table_metric_title(ckd_table_metric_at(t, (size_t)pl->y), yt, sizeof yt);
    tbuf_printf(b, "<text x=\"%d\" y=\"%d\" font-weight=\"bold\">", LEFT, y0 - 10);
    if (pl->title)
        table_xml_text(b, pl->title);
    else {
        table_xml_text(b, yt);
        tbuf_printf(b, " against ");
        table_xml_text(b, xt);
    }
    tbuf_printf(b, "</text>\n");
    if (!n_pts && !n_ref) {
        tbuf_printf(b, "<text x=\"%d\" y=\"%d\" fill=\"#a00\">no finished rows to plot</text>\n", LEFT + 10,
                    y0 + PLOT_H / 2);
        return;
    }
    if (!n_pts) /* reference lines alone: any x range */
        ax.lo = 1, ax.hi = 10;
    pad(&ax);
    pad(&ay);
    tbuf_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#555\"/>\n", LEFT, y0,
                PLOT_W, PLOT_H);
    ticks(b, &ax, 0, LEFT, y0);
    ticks(b, &ay, 1, LEFT, y0);
    tbuf_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">", LEFT + PLOT_W / 2, y0 + PLOT_H + 36);
    table_xml_text(b, xt);
    tbuf_printf(b, "%s</text>\n<text transform=\"translate(%d %d) rotate(-90)\" text-anchor=\"middle\">",
                pl->log_x ? " (log scale)" : "", 16, y0 + PLOT_H / 2);
    table_xml_text(b, yt);
    tbuf_printf(b, "</text>\n");
    for (size_t k = 0; k < n_ref; k++) {
        double py = map(&ay, ref[k]);
        tbuf_printf(b,
                    "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#555\" stroke-dasharray=\"6 4\"/>"
                    "<text x=\"%d\" y=\"%.1f\" fill=\"#555\">",
                    LEFT, LEFT + PLOT_W, py, py, LEFT + PLOT_W + 8, py + 4);
        table_xml_text(b, ckd_table_row_at(t, refs[k])->label);
        tbuf_printf(b, "</text>\n");
    }
    const char *groups[CKD_TABLE_MAX_ROWS];
    size_t ng = groups_of(t, sel, groups);
    qsort(pts, n_pts, sizeof *pts, by_x);
    for (size_t g = 0; g < ng; g++) {
        const char *col = colors[g % N_COLORS];
        tbuf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", col);
        for (size_t i = 0; i < n_pts; i++)
            if (!strcmp(ckd_table_row_at(t, pts[i].row)->group, groups[g]))
                tbuf_printf(b, "%.1f,%.1f ", map(&ax, pts[i].x), map(&ay, pts[i].y));
        tbuf_printf(b, "\"/>\n");
        for (size_t i = 0; i < n_pts; i++) {
            if (strcmp(ckd_table_row_at(t, pts[i].row)->group, groups[g]))
                continue;
            double px = map(&ax, pts[i].x), py = map(&ay, pts[i].y);
            if (pts[i].std > 0)
                tbuf_printf(b, "<path d=\"M%.1f %.1fV%.1f\" stroke=\"%s\" stroke-width=\"1.5\"/>", px,
                            map(&ay, pts[i].y - pts[i].std), map(&ay, pts[i].y + pts[i].std), col);
            tbuf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"><title>", px, py, col);
            table_xml_text(b, ckd_table_row_at(t, pts[i].row)->label);
            tbuf_printf(b, ": %g, %.2f ± %.2f</title></circle>\n", pts[i].x, pts[i].y, pts[i].std);
        }
        int ly = y0 + 12 + (int)g * 18;
        tbuf_printf(b,
                    "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/>"
                    "<circle cx=\"%d\" cy=\"%d\" r=\"4\" fill=\"%s\"/><text x=\"%d\" y=\"%d\">",
                    LEFT + PLOT_W + 8, LEFT + PLOT_W + 30, ly, ly, col, LEFT + PLOT_W + 19, ly, col,
                    LEFT + PLOT_W + 36, ly + 4);
        table_xml_text(b, groups[g]);
        tbuf_printf(b, "</text>\n");
    }
}

int table_svg_plots_height(const ckd_table *t)
{
    const table_plot *pl;
    return (int)table_plots(t, &pl) * (TOP + PLOT_H + BOTTOM);
}

int table_svg_plots_width(void)
{
    return LEFT + PLOT_W + LEGEND_W;
}

int table_svg_plots(tbuf *b, const ckd_table *t, const ckd_table_outcome *o, const int *sel, int y)
{
    const table_plot *pl;
    size_t n = table_plots(t, &pl);
    for (size_t i = 0; i < n; i++, y += TOP + PLOT_H + BOTTOM)
        one_plot(b, t, o, sel, &pl[i], y + TOP);
    return (int)n * (TOP + PLOT_H + BOTTOM);
}
