/* test-table.c — paper tables (clipkd/table.h): loading and checking table
 * files with file:line:col messages, composing row recipes (profile, row
 * recipe, row overrides, seed) with positions in the table file, the
 * summaries (mean ± sample std, deltas, the paper's orderings) against
 * hand-computed figures, and the four renderings. Fixtures:
 * tests/fixtures/tables/ (they extend the tiny quickstart recipes). */
#include "config.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipkd/table.h"

static char *fixture(const char *name)
{
    const char *src = getenv("CKD_TEST_SRCDIR");
    cr_assert(src && *src, "CKD_TEST_SRCDIR is not set (run through make check)");
    size_t n = strlen(src) + strlen(name) + 64;
    char *p = malloc(n);
    cr_assert(p);
    snprintf(p, n, "%s/tests/fixtures/tables/%s", src, name);
    return p;
}

/* Loads a table that must fail; the message must hold each of `want`. */
static void expect_load_error(const char *name, const char *const *want, size_t n)
{
    char *path = fixture(name);
    ckd_error err = {{0}};
    ckd_table *t = ckd_table_load(path, &err);
    cr_expect_null(t, "%s loaded", name);
    ckd_table_free(t);
    cr_expect(strstr(err.msg, path) != NULL, "message does not name the file: %s", err.msg);
    for (size_t i = 0; i < n; i++)
        cr_expect(strstr(err.msg, want[i]) != NULL, "message lacks '%s': %s", want[i], err.msg);
    free(path);
}

/* Every plugin is known and takes any parameter: composition and checks
 * are what is tested here, not the plugins. */
static int any_plugin(void *user, const char *kind, const char *name, const char **schema, ckd_error *err)
{
    (void)user, (void)kind, (void)err;
    if (!strcmp(name, "no-such-loss"))
        return ckd_errorf(err, "unknown loss plugin \"%s\"", name);
    *schema = "{\"additionalProperties\": true}";
    return 0;
}

static ckd_table *load(const char *name)
{
    char *path = fixture(name);
    ckd_error err = {{0}};
    ckd_table *t = ckd_table_load(path, &err);
    cr_assert(t, "%s: %s", name, err.msg);
    free(path);
    return t;
}

/* ---- loading -------------------------------------------------------------------- */

Test(table_load, good_table_reads_back)
{
    ckd_table *t = load("tiny.json");
    cr_expect_str_eq(ckd_table_name(t), "tiny");
    cr_expect_eq(ckd_table_n_metrics(t), 2);
    cr_expect_str_eq(ckd_table_metric_at(t, 0)->value, "zero_shot.top1");
    cr_expect_eq(ckd_table_metric_at(t, 0)->scale, 100, "the default scale is percent");
    cr_expect_eq(ckd_table_n_rows(t), 3);
    cr_expect_eq(ckd_table_baseline(t), 0);
    cr_expect_eq(ckd_table_row_at(t, 2)->baseline, 0, "rows take the table's baseline");
    cr_expect(ckd_table_row_at(t, 1)->has_paper[0] && ckd_table_row_at(t, 1)->paper[0] == 32.0);
    cr_expect(!ckd_table_row_at(t, 1)->has_paper[1]);
    size_t np;
    const char *const *profiles = ckd_table_profiles(t, &np);
    cr_expect_eq(np, 2);
    cr_expect_str_eq(profiles[0], "mini", "profiles keep the file's order");
    ckd_table_profile p;
    ckd_error err;
    cr_assert_eq(ckd_table_profile_get(t, "mini", &p, &err), 0, "%s", err.msg);
    cr_expect_eq(p.seeds, 2);
    cr_expect(p.metric_on[0] && p.metric_on[1]);
    cr_expect_neq(ckd_table_profile_get(t, "mni", &p, &err), 0);
    cr_expect(strstr(err.msg, "did you mean \"mini\"") != NULL, "%s", err.msg);
    ckd_table_free(t);
}

Test(table_load, paper_value_for_unknown_metric)
{
    const char *want[] = {":5:72:", "rows[1].paper.zs_tpo1", "unknown metric \"zs_tpo1\"", "did you mean \"zs_top1\""};
    expect_load_error("bad/paper-unknown-metric.json", want, 4);
}

Test(table_load, baseline_names_no_row)
{
    const char *want[] = {":4:", "baseline: unknown row \"basline\"", "did you mean \"baseline\""};
    expect_load_error("bad/unknown-baseline.json", want, 3);
}

Test(table_load, duplicate_row_id)
{
    const char *want[] = {"rows[1].id", "row id \"a\" is used twice"};
    expect_load_error("bad/duplicate-row.json", want, 2);
}

Test(table_load, metric_value_not_an_evaluation_field)
{
    const char *want[] = {"metrics[0].value", "zero_shot.top_1"};
    expect_load_error("bad/unknown-value.json", want, 2);
}

Test(table_load, plot_of_unknown_metric)
{
    const char *want[] = {"plots[1].x", "unknown metric \"teacher_size\"", "the table has: top1"};
    expect_load_error("bad/plot-unknown-metric.json", want, 3);
}

Test(table_load, misspelt_key)
{
    const char *want[] = {"profiles.mini", "seds", "did you mean \"seeds\""};
    expect_load_error("bad/typo-key.json", want, 3);
}

Test(table_load, missing_profile_recipe)
{
    const char *want[] = {"profiles.mini.recipe", "no-such-recipe.json"};
    expect_load_error("bad/missing-profile-recipe.json", want, 2);
}

Test(table_load, row_override_for_unknown_profile)
{
    const char *want[] = {"rows[0].profiles.mnii", "unknown profile", "did you mean \"mini\""};
    expect_load_error("bad/unknown-row-profile.json", want, 3);
}

Test(table_load, not_json)
{
    char path[] = "/tmp/ckd-table-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("{\"name\": \"x\",\n  \"rows\": [\n", f);
    fclose(f);
    ckd_error err;
    cr_expect_null(ckd_table_load(path, &err));
    cr_expect(strstr(err.msg, path) && strstr(err.msg, ":3:"), "%s", err.msg);
    remove(path);
}

Test(table_load, select_rows)
{
    ckd_table *t = load("tiny.json");
    int sel[CKD_TABLE_MAX_ROWS];
    ckd_error err;
    cr_assert_eq(ckd_table_select(t, "fd,baseline", sel, &err), 0, "%s", err.msg);
    cr_expect(sel[0] && !sel[1] && sel[2]);
    cr_expect_neq(ckd_table_select(t, "baseline,cdr", sel, &err), 0);
    cr_expect(strstr(err.msg, "--rows: unknown row \"cdr\"") && strstr(err.msg, "did you mean \"crd\""), "%s",
              err.msg);
    ckd_table_free(t);
}

/* ---- row recipes ---------------------------------------------------------------- */

Test(table_recipe, composed_from_profile_row_and_seed)
{
    ckd_table *t = load("tiny.json");
    ckd_error err;
    const char *sets[] = {"train.steps=2"};
    ckd_recipe *r = ckd_table_row_recipe(t, "mini", 2, 1, sets, 1, any_plugin, NULL, &err);
    cr_assert(r, "%s", err.msg);
    const json_t *j = ckd_recipe_json(r);
    /* The row's recipe file (distilled.json: tiny-distilled, a teacher) and
     * its own losses over the profile's base; then the seed and the sets. */
    cr_expect_str_eq(json_string_value(json_object_get(j, "name")), "tiny-fd");
    cr_expect_eq(json_integer_value(json_object_get(j, "seed")), 1);
    cr_expect_eq(json_integer_value(json_object_get(json_object_get(j, "train"), "steps")), 2);
    const json_t *losses = json_object_get(j, "losses");
    cr_expect_eq(json_array_size(losses), 2);
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(losses, 1), "name")), "fd");
    cr_expect(json_object_get(json_object_get(j, "teacher"), "recipe") != NULL, "the row recipe's teacher");
    /* Other seeds are other runs; the same seed is the same run. */
    ckd_recipe *r0 = ckd_table_row_recipe(t, "mini", 2, 0, sets, 1, any_plugin, NULL, &err);
    ckd_recipe *r1 = ckd_table_row_recipe(t, "mini", 2, 1, sets, 1, any_plugin, NULL, &err);
    cr_assert(r0 && r1);
    cr_expect_str_neq(ckd_recipe_hash(r0), ckd_recipe_hash(r1));
    cr_expect_str_eq(ckd_recipe_hash(r), ckd_recipe_hash(r1));
    /* teacher.recipe written in the table resolves against the table's folder. */
    ckd_recipe *rc = ckd_table_row_recipe(t, "mini", 1, 0, NULL, 0, any_plugin, NULL, &err);
    cr_assert(rc, "%s", err.msg);
    char tp[4096];
    cr_assert_eq(ckd_recipe_resolve_path(rc, "teacher.recipe", tp, sizeof tp, &err), 0, "%s", err.msg);
    cr_expect(strstr(tp, "tests/fixtures/tables/../quickstart/teachers/teacher.json") != NULL, "%s", tp);
    ckd_recipe_free(rc);
    ckd_recipe_free(r0);
    ckd_recipe_free(r1);
    ckd_recipe_free(r);
    ckd_table_free(t);
}

Test(table_recipe, bad_override_is_placed_in_the_table)
{
    ckd_table *t = load("bad/bad-row-recipe.json");
    ckd_error err;
    ckd_recipe *ok = ckd_table_row_recipe(t, "mini", 0, 0, NULL, 0, any_plugin, NULL, &err);
    cr_expect(ok, "%s", err.msg);
    ckd_recipe_free(ok);
    cr_expect_null(ckd_table_row_recipe(t, "mini", 1, 0, NULL, 0, any_plugin, NULL, &err));
    /* The table file, the row and the profile, then where the value is:
     * line 8 of the table, the recipe path of the value. */
    cr_expect(strstr(err.msg, "bad-row-recipe.json: row \"bad-lr\" (profile mini): ") != NULL, "%s", err.msg);
    cr_expect(strstr(err.msg, "bad-row-recipe.json:8:") != NULL, "%s", err.msg);
    cr_expect(strstr(err.msg, "optim.lr") != NULL, "%s", err.msg);
    ckd_table_free(t);
}

Test(table_recipe, metric_no_evaluation_provides)
{
    ckd_table *t = load("bad/no-retrieval.json");
    ckd_error err;
    ckd_recipe *r = ckd_table_row_recipe(t, "mini", 0, 0, NULL, 0, any_plugin, NULL, &err);
    cr_assert(r, "%s", err.msg);
    cr_expect_neq(ckd_table_check_metrics(t, "mini", 0, r, &err), 0);
    cr_expect(strstr(err.msg, "metrics[1].value") && strstr(err.msg, "not provided by row \"a\""), "%s", err.msg);
    /* A profile that reports zero-shot only does not need retrieval. */
    cr_expect_eq(ckd_table_check_metrics(t, "zs-only", 0, r, &err), 0, "%s", err.msg);
    ckd_recipe_free(r);
    ckd_table_free(t);
}

/* A teacher's figure is read from the run's copy of its teacher's results:
 * a row without a teacher (the student alone) has none, and is not an
 * error, while the student's own metrics are still checked. */
Test(table_recipe, teacher_metrics_on_a_row_without_teacher)
{
    ckd_table *t = load("plot.json");
    ckd_error err;
    for (size_t row = 0; row < 2; row++) {
        ckd_recipe *r = ckd_table_row_recipe(t, "mini", row, 0, NULL, 0, any_plugin, NULL, &err);
        cr_assert(r, "%s", err.msg);
        cr_expect_eq(ckd_table_check_metrics(t, "mini", row, r, &err), 0, "row %zu: %s", row, err.msg);
        ckd_recipe_free(r);
    }
    ckd_recipe *r = ckd_table_row_recipe(t, "mini", 0, 0, (const char *[]){"eval.zero_shot=false"}, 1, any_plugin,
                                         NULL, &err);
    cr_assert(r, "%s", err.msg);
    cr_expect_neq(ckd_table_check_metrics(t, "mini", 0, r, &err), 0);
    cr_expect(strstr(err.msg, "metrics[0].value"), "the student's own metric: %s", err.msg);
    ckd_recipe_free(r);
    ckd_table_free(t);
}

/* ---- summaries ------------------------------------------------------------------ */

/* Outcomes of the tiny table: the baseline at 0.10 and 0.20 (mean 15%,
 * std 7.07), crd at 0.30 and 0.10 (20%, 14.14), fd one seed at 0.12. */
static void fill(ckd_table_outcome *o)
{
    memset(o, 0, 3 * sizeof *o);
    const double v[3][2] = {{0.10, 0.20}, {0.30, 0.10}, {0.12, 0}};
    for (int r = 0; r < 3; r++) {
        o[r].status = CKD_TABLE_DONE;
        o[r].n = r < 2 ? 2 : 1;
        for (int s = 0; s < o[r].n; s++) {
            o[r].value[0][s] = v[r][s];
            o[r].has[0][s] = 1;
        }
    }
}

Test(table_summary, mean_std_deltas)
{
    ckd_table *t = load("tiny.json");
    ckd_table_outcome o[3];
    fill(o);
    int sel[3] = {1, 1, 1};
    ckd_table_cell c;
    ckd_table_cell_of(t, o, sel, 1, 0, &c);
    cr_expect_eq(c.n, 2);
    cr_expect_float_eq(c.mean, 20.0, 1e-9);
    cr_expect_float_eq(c.std, sqrt(200.0), 1e-9, "sample std of 30 and 10");
    cr_expect(c.has_delta && fabs(c.delta - 5.0) < 1e-9, "20 - 15");
    cr_expect(c.has_paper && c.paper == 32.0 && c.has_paper_delta && c.paper_delta == 2.0);
    ckd_table_cell_of(t, o, sel, 0, 0, &c);
    cr_expect(!c.has_delta, "the baseline has no delta against itself");
    ckd_table_cell_of(t, o, sel, 2, 0, &c);
    cr_expect(c.n == 1 && c.std == 0);
    ckd_table_cell_of(t, o, sel, 0, 1, &c);
    cr_expect_eq(c.n, 0, "a metric no run reported");
    /* Without the baseline row selected there is no delta. */
    int sel2[3] = {0, 1, 1};
    ckd_table_cell_of(t, o, sel2, 1, 0, &c);
    cr_expect(!c.has_delta && !c.has_paper_delta);
    ckd_table_free(t);
}

Test(table_summary, orderings)
{
    ckd_table *t = load("tiny.json");
    ckd_table_outcome o[3];
    fill(o);
    int sel[3] = {1, 1, 1};
    size_t a[8], b[8], holding;
    int holds[8];
    /* Paper: fd 34 > crd 32 > baseline 30. Ours: crd 20 > baseline 15 (holds),
     * fd 12 < baseline 15 and fd 12 < crd 20 (do not). */
    size_t n = ckd_table_orderings(t, o, sel, 0, a, b, holds, 8, &holding);
    cr_expect_eq(n, 3);
    cr_expect_eq(holding, 1);
    int found = 0;
    for (size_t i = 0; i < n; i++)
        if (a[i] == 1 && b[i] == 0) {
            found = 1;
            cr_expect(holds[i]);
        } else {
            cr_expect(!holds[i], "%zu > %zu", a[i], b[i]);
        }
    cr_expect(found);
    /* A failed row without figures is left out of the comparison. */
    o[2].n = 0;
    n = ckd_table_orderings(t, o, sel, 0, a, b, holds, 8, &holding);
    cr_expect_eq(n, 1);
    ckd_table_free(t);
}

Test(table_summary, metric_value_from_results)
{
    json_t *res = json_pack("{s:{s:{s:f}, s:{s:f}}}", "eval", "zero_shot", "top1", 0.25, "retrieval", "i2t_r5", 0.5);
    ckd_table_metric m = {.id = "x", .value = "zero_shot.top1", .scale = 100};
    double v;
    cr_expect(ckd_table_metric_value(&m, res, &v) && v == 0.25);
    m.value = "retrieval.i2t_r5";
    cr_expect(ckd_table_metric_value(&m, res, &v) && v == 0.5);
    m.value = "calibration.ece";
    cr_expect(!ckd_table_metric_value(&m, res, &v));
    json_object_set_new(res, "peak_rss_mib", json_real(123.5));
    m.value = "peak_rss_mib";
    cr_expect(ckd_table_metric_value(&m, res, &v) && v == 123.5, "beside eval, as parameters");
    m.value = "teacher.parameters";
    cr_expect(!ckd_table_metric_value(&m, res, &v), "a run without a teacher record");
    /* The teacher's figures, as the run copies them from its teacher's run. */
    json_object_set_new(res, "parameters", json_integer(7));
    json_object_set_new(res, "teacher", json_pack("{s:I, s:{s:{s:f}}}", "parameters", (json_int_t)1234, "eval",
                                                  "calibration", "wrong_conf", 0.75));
    cr_expect(ckd_table_metric_value(&m, res, &v) && v == 1234, "teacher.parameters, not the student's");
    m.value = "teacher.calibration.wrong_conf";
    cr_expect(ckd_table_metric_value(&m, res, &v) && v == 0.75);
    m.value = "teacher.zero_shot.top1";
    cr_expect(!ckd_table_metric_value(&m, res, &v), "not the student's top-1");
    json_decref(res);
}

/* ---- rendering ------------------------------------------------------------------ */

static char *render(ckd_table *t, ckd_table_outcome *o, ckd_table_format f)
{
    int sel[3] = {1, 1, 1};
    ckd_error err;
    char *s = ckd_table_render(t, "mini", o, sel, f, &err);
    cr_assert(s, "%s", err.msg);
    return s;
}

Test(table_render, markdown)
{
    ckd_table *t = load("tiny.json");
    ckd_table_outcome o[3];
    fill(o);
    o[2].status = CKD_TABLE_FAILED;
    snprintf(o[2].reason, sizeof o[2].reason, "seed 1: the loss is NaN at step 3");
    char *md = render(t, o, CKD_TABLE_MD);
    cr_expect(strstr(md, "| +CRD | 20.00 ± 14.14 | 2 | 32.00 | +5.00 | +2.00 |") != NULL, "%s", md);
    cr_expect(strstr(md, "| Baseline | 15.00 ± 7.07 | 2 | 30.00 | — | — |") != NULL, "%s", md);
    cr_expect(strstr(md, "+FD failed: seed 1: the loss is NaN at step 3.") != NULL, "%s", md);
    cr_expect(strstr(md, "Orderings (zero-shot top-1): 1 of the paper's 3") != NULL, "%s", md);
    cr_expect(strstr(md, "+FD > Baseline") != NULL, "%s", md);
    cr_expect(strstr(md, "https://example.org/paper") != NULL, "the source is cited");
    free(md);
    ckd_table_free(t);
}

Test(table_render, csv_and_json_carry_the_same_figures)
{
    ckd_table *t = load("tiny.json");
    ckd_table_outcome o[3];
    fill(o);
    char *csv = render(t, o, CKD_TABLE_CSV);
    cr_expect(strncmp(csv, "table,profile,row,label,status,metric,n,mean,std,paper,delta,paper_delta,reason\n", 80) == 0);
    cr_expect(strstr(csv, "tiny,mini,crd,+CRD,done,zs_top1,2,20.0000,14.1421,32.0000,5.0000,2.0000,\n") != NULL,
              "%s", csv);
    free(csv);
    char *js = render(t, o, CKD_TABLE_JSON);
    json_error_t je;
    json_t *doc = json_loads(js, 0, &je);
    cr_assert(doc, "not JSON: %s", je.text);
    json_t *crd = json_object_get(json_object_get(json_array_get(json_object_get(doc, "rows"), 1), "metrics"), "zs_top1");
    cr_expect_float_eq(json_number_value(json_object_get(crd, "mean")), 20.0, 1e-9);
    cr_expect_eq(json_array_size(json_object_get(crd, "seeds")), 2);
    cr_expect_eq(json_integer_value(json_object_get(json_object_get(json_object_get(doc, "orderings"), "zs_top1"),
                                                    "holding")),
                 1);
    json_decref(doc);
    free(js);
    ckd_table_free(t);
}

Test(table_render, svg)
{
    ckd_table *t = load("tiny.json");
    ckd_table_outcome o[3];
    fill(o);
    char *svg = render(t, o, CKD_TABLE_SVG);
    cr_expect(strncmp(svg, "<?xml", 5) == 0);
    cr_expect(strstr(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\"") != NULL);
    cr_expect(strstr(svg, "</svg>\n") != NULL);
    cr_expect(strstr(svg, "<title>20.00</title>") != NULL, "a bar for crd's mean");
    cr_expect(strstr(svg, "<title>32.00</title>") != NULL, "a bar for the paper's crd");
    free(svg);
    ckd_table_free(t);
}

Test(table_render, svg_escapes_text)
{
    ckd_table *t = load("xml.json");
    ckd_table_outcome o[1];
    memset(o, 0, sizeof o);
    int sel[1] = {1};
    ckd_error err;
    char *svg = ckd_table_render(t, "mini", o, sel, CKD_TABLE_SVG, &err);
    cr_assert(svg, "%s", err.msg);
    cr_expect(strstr(svg, "Tables &amp; &lt;charts&gt;") != NULL, "the title, escaped");
    cr_expect(strstr(svg, ">A &amp; B &lt;c&gt;</text>") != NULL, "the row label, escaped");
    cr_expect(strstr(svg, "A & B") == NULL && strstr(svg, "<c>") == NULL, "no raw markup from the table");
    free(svg);
    ckd_table_free(t);
}

/* The plot of student top-1 against teacher parameters: a line per group
 * through its rows in the order of x, error bars, the row without a group
 * as a dashed reference line, and the legend. */
/* Outcomes of plot.json: rows alone, sup-s, sup-l, clip-s; per row two
 * seeds of top1 and the teacher's size (none for the student alone). */
static void fill_plot(ckd_table_outcome *o)
{
    memset(o, 0, 4 * sizeof *o);
    const double top1[4][2] = {{0.80, 0.82}, {0.84, 0.86}, {0.83, 0.85}, {0.85, 0.85}};
    const double size[4] = {0, 1000, 10000, 5000000};
    for (int r = 0; r < 4; r++) {
        o[r].status = CKD_TABLE_DONE;
        o[r].n = 2;
        for (int s = 0; s < 2; s++) {
            o[r].value[0][s] = top1[r][s], o[r].has[0][s] = 1;
            o[r].value[1][s] = size[r], o[r].has[1][s] = r > 0;
        }
    }
}

Test(table_render, svg_plot_by_group)
{
    ckd_table *t = load("plot.json");
    ckd_table_outcome o[4];
    fill_plot(o);
    o[3].value[1][0] = o[3].value[1][1] = 5000;
    int sel[4] = {1, 1, 1, 1};
    ckd_error err;
    char *svg = ckd_table_render(t, "mini", o, sel, CKD_TABLE_SVG, &err);
    cr_assert(svg, "%s", err.msg);
    cr_expect(strstr(svg, "student top-1 (%) against teacher parameters") != NULL, "%s", svg);
    cr_expect(strstr(svg, "teacher parameters (log scale)") != NULL);
    cr_expect(strstr(svg, "<title>supervised S: 1000, 85.00 ± 1.41</title>") != NULL, "%s", svg);
    cr_expect(strstr(svg, "<title>supervised L: 10000, 84.00 ± 1.41</title>") != NULL);
    cr_expect(strstr(svg, "<title>CLIP S: 5000, 85.00 ± 0.00</title>") != NULL);
    cr_expect(strstr(svg, "stroke-dasharray=\"6 4\"/><text") != NULL && strstr(svg, ">student alone</text>"),
              "the reference line");
    cr_expect(strstr(svg, ">supervised</text>") && strstr(svg, ">CLIP</text>"), "the legend");
    /* the plot comes first; a metric no row has a Δ for gets no Δ chart */
    const char *plot = strstr(svg, "against teacher parameters</text>"), *bars = strstr(svg, "bold\">student top-1 (%)</text>");
    cr_expect(plot && bars && plot < bars, "the plot is not above the bar charts");
    cr_expect(strstr(svg, "student top-1 (%): Δ against student alone") != NULL);
    cr_expect(strstr(svg, "teacher parameters: Δ against") == NULL, "a Δ chart without Δs");
    /* The supervised line has two points, left to right (1000 before 10000). */
    const char *pl = strstr(svg, "<polyline");
    cr_assert(pl);
    double x1, y1, x2, y2;
    cr_assert_eq(sscanf(strstr(pl, "points=\"") + 8, "%lf,%lf %lf,%lf", &x1, &y1, &x2, &y2), 4);
    cr_expect(x1 < x2 && y1 < y2, "85%% sits above 84%% (smaller y), at the smaller x");
    /* On a log axis 5000 sits at log10(5)/1 of the way from 1000 to 10000. */
    const char *c = strstr(svg, "<title>CLIP S");
    const char *circ = c;
    while (circ > svg && strncmp(circ, "<circle", 7))
        circ--;
    double cx;
    cr_assert_eq(sscanf(circ, "<circle cx=\"%lf\"", &cx), 1);
    cr_expect_float_eq((cx - x1) / (x2 - x1), log10(5.0), 2e-3);
    free(svg);
    ckd_table_free(t);
}

/* A study the paper gives no figures for: no paper columns, our Δ only for
 * the metric that has one, parameter counts without decimals, and one line
 * instead of a "none to compare" per metric. */
Test(table_render, markdown_without_paper_figures)
{
    ckd_table *t = load("plot.json");
    ckd_table_outcome o[4];
    fill_plot(o);
    int sel[4] = {1, 1, 1, 1};
    ckd_error err;
    char *md = ckd_table_render(t, "mini", o, sel, CKD_TABLE_MD, &err);
    cr_assert(md, "%s", err.msg);
    cr_expect(strstr(md, "| row | student top-1 (%), ours | n | Δ ours | teacher parameters, ours | n | teacher "
                         "wrong-label confidence (%), ours | n |\n|---|---:|---:|---:|---:|---:|---:|---:|\n") != NULL,
              "%s", md);
    cr_expect(strstr(md, "| CLIP S | 85.00 ± 0.00 | 2 | +4.00 | 5000000 ± 0 | 2 | — | 0 |") != NULL, "%s", md);
    cr_expect(strstr(md, "| student alone | 81.00 ± 1.41 | 2 | — | — | 0 | — | 0 |") != NULL, "%s", md);
    cr_expect(strstr(md, "no orderings to check") != NULL && strstr(md, "none to compare") == NULL, "%s", md);
    free(md);
    ckd_table_free(t);
}
