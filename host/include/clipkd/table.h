/* clipkd/table.h — a paper's result table as recipes, rerun and compared.
 *
 * A table file (clipkd-table(5)) names its source (paper, table, URL), its
 * metrics (fields of a run's final evaluation, e.g. zero-shot top-1), its
 * profiles (each a recipe that every row extends: "mini" on data that ships,
 * "paper" at the paper's data, models and schedule) and its rows (a label,
 * an optional recipe file and inline overrides such as the loss list, and
 * the paper's number for each metric where it has one).
 *
 * The recipe of (row, profile, seed) is composed as
 *     profile recipe  <-  row recipe file  <-  row "set"  <-  row
 *     "profiles".<profile>  <-  --set seed=S  <-  the caller's --set
 * (clipkd/recipe.h, ckd_recipe_compose), so messages about a value a row
 * wrote name the table file, line and column. Every (row, seed) is an
 * ordinary run directory keyed by that recipe's hash.
 *
 * This part of the library loads and checks tables, composes row recipes,
 * summarises the figures (mean ± sample std over seeds, Δ against the
 * baseline row, the paper's orderings that hold) and renders them as
 * Markdown, CSV, JSON and SVG. Running the rows is the caller's (the clipkd
 * program's `table` command), through clipkd/train.h. Nothing here prints.
 */
#ifndef CLIPKD_TABLE_H
#define CLIPKD_TABLE_H

#include <stddef.h>

#include <jansson.h>

#include "clipkd/error.h"
#include "clipkd/recipe.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CKD_TABLE_MAX_METRICS 8
#define CKD_TABLE_MAX_ROWS 64
#define CKD_TABLE_MAX_SEEDS 32

typedef struct ckd_table ckd_table;

typedef struct ckd_table_metric {
    const char *id;       /* the key rows' "paper" objects use */
    const char *label;    /* "zero-shot top-1" */
    const char *value;    /* field of results.json's "eval": "zero_shot.top1" */
    double scale;         /* shown as value × scale (100: percent) */
} ckd_table_metric;

typedef struct ckd_table_row {
    const char *id, *label;
    int has_paper[CKD_TABLE_MAX_METRICS];
    double paper[CKD_TABLE_MAX_METRICS];
    const char *note;     /* or NULL */
    /* The row its Δ is taken against (the row's own "baseline", else the
     * table's), or -1 for none; itself for a baseline row. */
    int baseline;
    /* Why the row cannot run yet (the row's "blocked"), or NULL. */
    const char *blocked;
    /* The series the row belongs to in the table's plots (the row's "group":
     * e.g. the teacher's kind), or NULL: a row without one is drawn as a
     * horizontal reference line. */
    const char *group;
} ckd_table_row;

typedef struct ckd_table_profile {
    const char *name;
    const char *recipe;   /* resolved against the table's folder */
    const char *description, *eval_name; /* or NULL */
    int seeds;
    long long train_samples; /* 0: open the training data to count */
    /* The metrics this profile reports (its "metrics" list; default all):
     * the paper's ImageNet table has no retrieval, the mini profile does. */
    int metric_on[CKD_TABLE_MAX_METRICS];
} ckd_table_profile;

/* Loads and checks a table file: its schema (unknown keys with did-you-mean),
 * unique row ids, the baseline naming a row, every "paper" key naming a
 * metric, every metric a known evaluation field, profile recipe files that
 * exist. Messages read "<file>:<line>:<col>: <path>: <what>". */
ckd_table *ckd_table_load(const char *path, ckd_error *err);
void ckd_table_free(ckd_table *t);

const char *ckd_table_path(const ckd_table *t);
const char *ckd_table_name(const ckd_table *t);
const char *ckd_table_title(const ckd_table *t);
/* The "source" object (paper, authors, venue, table, url, eval; borrowed). */
const json_t *ckd_table_source(const ckd_table *t);

size_t ckd_table_n_metrics(const ckd_table *t);
const ckd_table_metric *ckd_table_metric_at(const ckd_table *t, size_t i);
size_t ckd_table_n_rows(const ckd_table *t);
const ckd_table_row *ckd_table_row_at(const ckd_table *t, size_t i);
/* The table's baseline row (its index), or -1 if none; rows may name their
 * own (ckd_table_row.baseline), e.g. one per student architecture. */
int ckd_table_baseline(const ckd_table *t);

/* The names of the profiles, in the file's order; *n receives their count. */
const char *const *ckd_table_profiles(const ckd_table *t, size_t *n);
/* The named profile; an unknown one is an error listing the known ones. */
int ckd_table_profile_get(const ckd_table *t, const char *name, ckd_table_profile *out, ckd_error *err);

/* Selects rows by a comma-separated list of ids ("baseline,crd"): sel[i]
 * (ckd_table_n_rows entries) set to 1 for the rows named; an unknown id is
 * an error with a did-you-mean. NULL selects every row. */
int ckd_table_select(const ckd_table *t, const char *ids, int *sel, ckd_error *err);

/* Composes the recipe of row `row` under `profile` with the given seed
 * (seed < 0: the recipe's own), then the caller's sets, and checks it as
 * ckd_recipe_load does. Errors are prefixed with the table file, the row and
 * the profile. */
ckd_recipe *ckd_table_row_recipe(const ckd_table *t, const char *profile, size_t row, int seed,
                                 const char *const *sets, size_t n_sets,
                                 ckd_recipe_plugin_schema_fn plugin_schema, void *user, ckd_error *err);

/* Whether a composed recipe's evaluation provides every metric of the profile (data.eval
 * present, and the part of eval a metric reads switched on); an error names
 * the table's metric and the row. */
int ckd_table_check_metrics(const ckd_table *t, const char *profile, size_t row, const ckd_recipe *r,
                            ckd_error *err);

/* ---- outcomes and summaries --------------------------------------------------- */

typedef enum ckd_table_status {
    CKD_TABLE_PENDING = 0,  /* not run (a dry run, or stopped before it) */
    CKD_TABLE_DONE,         /* every seed finished */
    CKD_TABLE_FAILED,       /* a seed failed: reason says why */
    CKD_TABLE_BLOCKED,      /* cannot run here: reason says why (e.g. a missing model plugin) */
} ckd_table_status;

/* What happened to one row: per metric, the figures of its finished seeds
 * (as read from results.json, unscaled). */
typedef struct ckd_table_outcome {
    ckd_table_status status;
    char reason[CKD_ERROR_MAX + 32];
    int n;                                             /* finished seeds */
    double value[CKD_TABLE_MAX_METRICS][CKD_TABLE_MAX_SEEDS];
    int has[CKD_TABLE_MAX_METRICS][CKD_TABLE_MAX_SEEDS];
} ckd_table_outcome;

/* Reads a metric's value from a run's results.json object: 1 and *out set,
 * or 0 when the run's evaluation lacks it. */
int ckd_table_metric_value(const ckd_table_metric *m, const json_t *results, double *out);

/* One cell of the summary: ours over the n seeds that have the figure (mean,
 * sample std — 0 when n < 2), in display units; Δ against the baseline row's
 * mean; the paper's value and Δ where it has them. */
typedef struct ckd_table_cell {
    int n;
    double mean, std;
    int has_delta;
    double delta;
    int has_paper, has_paper_delta;
    double paper, paper_delta;
} ckd_table_cell;

void ckd_table_cell_of(const ckd_table *t, const ckd_table_outcome *outcomes, const int *sel, size_t row,
                       size_t metric, ckd_table_cell *out);

/* The paper's orderings for a metric: every pair of selected rows (a, b)
 * the paper ranks a above b, and whether our means do too (both rows need
 * figures). Returns the number of pairs written to a, b, holds (at most cap
 * each); *n_holding receives how many hold. */
size_t ckd_table_orderings(const ckd_table *t, const ckd_table_outcome *outcomes, const int *sel, size_t metric,
                           size_t *a, size_t *b, int *holds, size_t cap, size_t *n_holding);

/* ---- rendering ---------------------------------------------------------------- */

typedef enum ckd_table_format { CKD_TABLE_MD, CKD_TABLE_CSV, CKD_TABLE_JSON, CKD_TABLE_SVG } ckd_table_format;

/* The table as text in the given format (malloc'd; NULL with err set when out
 * of memory): Markdown with the source, a row per selected row and per metric
 * ours (mean ± std, n), the paper's, our Δ and the paper's Δ, then which of
 * the paper's orderings hold; CSV and JSON with the same figures; SVG a bar
 * chart per metric, ours with error bars next to the paper's, and our Δ next
 * to the paper's Δ. */
char *ckd_table_render(const ckd_table *t, const char *profile, const ckd_table_outcome *outcomes, const int *sel,
                       ckd_table_format fmt, ckd_error *err);

#ifdef __cplusplus
}
#endif
#endif
