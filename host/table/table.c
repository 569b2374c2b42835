/* Table files: loading and checking them, and composing the recipe of a row
 * under a profile (clipkd/table.h; the format is clipkd-table(5)). */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clipkd/table.h"
#include "table_internal.h"

#define MAX_PROFILES 16

/* The figures a metric may read, as the evaluation writes them into
 * results.json (host/train/evaluate.c, ckd_eval_result_json), and the
 * student's parameter count and training time (and with assistants' stage 1,
 * pipeline time) that results.json records beside them; "teacher." reads the
 * same figures of the run's teacher (teacher.recipe), which the run copies
 * from the teacher run's results.json into its own. */
#define METRIC_VALUES                                                                                  \
    "\"zero_shot.top1\", \"zero_shot.top5\", \"retrieval.i2t_r1\", \"retrieval.i2t_r5\", "             \
    "\"retrieval.i2t_r10\", \"retrieval.t2i_r1\", \"retrieval.t2i_r5\", \"retrieval.t2i_r10\", "       \
    "\"calibration.ece\", \"calibration.wrong_conf\", \"calibration.wrong_true_prob\", \"parameters\", "     \
    "\"train_seconds\", \"pipeline_seconds\", \"peak_rss_mib\", \"teacher.zero_shot.top1\", \"teacher.zero_shot.top5\", "       \
    "\"teacher.calibration.ece\", \"teacher.calibration.wrong_conf\", "                                 \
    "\"teacher.calibration.wrong_true_prob\", \"teacher.parameters\""

static const char table_schema[] =
    "{\"type\": \"object\", \"required\": [\"name\", \"source\", \"metrics\", \"profiles\", \"rows\"],"
    " \"properties\": {"
    "  \"name\": {\"type\": \"string\"},"
    "  \"title\": {\"type\": \"string\"},"
    "  \"description\": {\"type\": \"string\"},"
    "  \"source\": {\"type\": \"object\", \"required\": [\"paper\"], \"properties\": {"
    "    \"paper\": {\"type\": \"string\"}, \"authors\": {\"type\": \"string\"},"
    "    \"venue\": {\"type\": \"string\"}, \"table\": {\"type\": \"string\"},"
    "    \"url\": {\"type\": \"string\"}, \"eval\": {\"type\": \"string\"},"
    "    \"note\": {\"type\": \"string\"}}},"
    "  \"metrics\": {\"type\": \"array\", \"items\": {\"type\": \"object\", \"required\": [\"id\", \"value\"],"
    "    \"properties\": {"
    "      \"id\": {\"type\": \"string\"}, \"label\": {\"type\": \"string\"},"
    "      \"value\": {\"type\": \"string\", \"enum\": [" METRIC_VALUES "]},"
    "      \"scale\": {\"type\": \"number\", \"exclusiveMinimum\": 0, \"default\": 100}}}},"
    "  \"baseline\": {\"type\": \"string\"},"
    "  \"plots\": {\"type\": \"array\", \"items\": {\"type\": \"object\","
    "    \"required\": [\"x\", \"y\"], \"properties\": {"
    "      \"x\": {\"type\": \"string\"}, \"y\": {\"type\": \"string\"},"
    "      \"title\": {\"type\": \"string\"}, \"log_x\": {\"type\": \"boolean\", \"default\": false}}}},"
    "  \"profiles\": {\"type\": \"object\", \"additionalProperties\": {\"type\": \"object\","
    "    \"required\": [\"recipe\"], \"properties\": {"
    "      \"recipe\": {\"type\": \"string\"}, \"description\": {\"type\": \"string\"},"
    "      \"eval\": {\"type\": \"string\"},"
    "      \"metrics\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}},"
    "      \"seeds\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 32, \"default\": 1},"
    "      \"train_samples\": {\"type\": \"integer\", \"minimum\": 1}}}},"
    "  \"rows\": {\"type\": \"array\", \"items\": {\"type\": \"object\", \"required\": [\"id\"],"
    "    \"properties\": {"
    "      \"id\": {\"type\": \"string\"}, \"label\": {\"type\": \"string\"},"
    "      \"note\": {\"type\": \"string\"}, \"recipe\": {\"type\": \"string\"},"
    "      \"baseline\": {\"type\": \"string\"}, \"blocked\": {\"type\": \"string\"},"
    "      \"group\": {\"type\": \"string\"},"
    "      \"set\": {\"type\": \"object\", \"additionalProperties\": true},"
    "      \"profiles\": {\"type\": \"object\", \"additionalProperties\": {\"type\": \"object\","
    "                     \"additionalProperties\": true}},"
    "      \"paper\": {\"type\": \"object\", \"additionalProperties\": {\"type\": \"number\"}}}}}"
    "}}";

struct ckd_table {
    char *path;
    ckd_json_source *src;
    json_t *root;
    ckd_table_metric metrics[CKD_TABLE_MAX_METRICS];
    size_t n_metrics;
    ckd_table_row rows[CKD_TABLE_MAX_ROWS];
    const json_t *row_json[CKD_TABLE_MAX_ROWS];
    size_t n_rows;
    int baseline;
    const char *profiles[MAX_PROFILES];
    size_t n_profiles;
    table_plot plots[TABLE_MAX_PLOTS];
    size_t n_plots;
};

static const char *str(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static int errorf_at(const ckd_table *t, const char *at, ckd_error *err, const char *what)
{
    return ckd_json_errorf(ckd_json_source_locate, t->src, t->path, at, err, "%s", what);
}

/* `rel` relative to the table's folder (absolute paths as they are). */
static void table_relative(const ckd_table *t, const char *rel, char *out, size_t cap)
{
    const char *slash = strrchr(t->path, '/');
    if (rel[0] == '/' || !slash)
        snprintf(out, cap, "%s", rel);
    else
        snprintf(out, cap, "%.*s%s", (int)(slash - t->path) + 1, t->path, rel);
}

static int load_metrics(ckd_table *t, ckd_error *err)
{
    const json_t *ms = json_object_get(t->root, "metrics"), *m;
    size_t i;
    char at[64], what[256];
    if (json_array_size(ms) == 0 || json_array_size(ms) > CKD_TABLE_MAX_METRICS) {
        snprintf(what, sizeof what, "expected 1 to %d metrics, got %zu", CKD_TABLE_MAX_METRICS, json_array_size(ms));
        return errorf_at(t, "metrics", err, what);
    }
    json_array_foreach(ms, i, m)
    {
        ckd_table_metric *x = &t->metrics[i];
        x->id = str(m, "id");
        x->value = str(m, "value");
        x->label = str(m, "label") ? str(m, "label") : x->id;
        x->scale = json_number_value(json_object_get(m, "scale"));
        for (size_t j = 0; j < i; j++)
            if (!strcmp(t->metrics[j].id, x->id)) {
                snprintf(at, sizeof at, "metrics[%zu].id", i);
                snprintf(what, sizeof what, "metric \"%s\" is defined twice (also metrics[%zu])", x->id, j);
                return errorf_at(t, at, err, what);
            }
    }
    t->n_metrics = json_array_size(ms);
    return 0;
}

static int metric_index(const ckd_table *t, const char *id)
{
    for (size_t i = 0; i < t->n_metrics; i++)
        if (!strcmp(t->metrics[i].id, id))
            return (int)i;
    return -1;
}

/* A name that is not among `names`: the message suggests the nearest. */
static int unknown_name(const ckd_table *t, const char *at, const char *kind, const char *name,
                        const char *const *names, size_t n, ckd_error *err)
{
    char list[CKD_ERROR_MAX / 2] = "", what[CKD_ERROR_MAX];
    size_t len = 0;
    for (size_t i = 0; i < n && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", names[i]);
    const char *near = ckd_suggest(name, names, n);
    if (near)
        snprintf(what, sizeof what, "unknown %s \"%s\" (did you mean \"%s\"?); the table has: %s", kind, name, near,
                 list);
    else
        snprintf(what, sizeof what, "unknown %s \"%s\"; the table has: %s", kind, name, list);
    return t ? errorf_at(t, at, err, what) : ckd_errorf(err, "%s", what);
}

/* A metric id named at json path `at`: its index into *out, or an error. */
static int metric_named(const ckd_table *t, const char *id, const char *at, int *out, ckd_error *err)
{
    if ((*out = metric_index(t, id)) >= 0)
        return 0;
    const char *ids[CKD_TABLE_MAX_METRICS];
    for (size_t j = 0; j < t->n_metrics; j++)
        ids[j] = t->metrics[j].id;
    return unknown_name(t, at, "metric", id, ids, t->n_metrics, err);
}

static int load_row(ckd_table *t, size_t i, const json_t *r, ckd_error *err)
{
    ckd_table_row *x = &t->rows[i];
    char at[96], what[256];
    x->id = str(r, "id");
    x->label = str(r, "label") ? str(r, "label") : x->id;
    x->note = str(r, "note");
    x->blocked = str(r, "blocked");
    x->group = str(r, "group");
    t->row_json[i] = r;
    for (size_t j = 0; j < i; j++)
        if (!strcmp(t->rows[j].id, x->id)) {
            snprintf(at, sizeof at, "rows[%zu].id", i);
            snprintf(what, sizeof what, "row id \"%s\" is used twice (also rows[%zu])", x->id, j);
            return errorf_at(t, at, err, what);
        }
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)json_object_get(r, "paper"), k, v)
    {
        int m;
        snprintf(at, sizeof at, "rows[%zu].paper.%s", i, k);
        if (metric_named(t, k, at, &m, err))
            return -1;
        x->has_paper[m] = 1;
        x->paper[m] = json_number_value(v);
    }
    const char *p;
    json_object_foreach((json_t *)json_object_get(r, "profiles"), p, v)
    {
        size_t j = 0;
        while (j < t->n_profiles && strcmp(t->profiles[j], p))
            j++;
        if (j == t->n_profiles) {
            snprintf(at, sizeof at, "rows[%zu].profiles.%s", i, p);
            return unknown_name(t, at, "profile", p, t->profiles, t->n_profiles, err);
        }
    }
    return 0;
}

static int load_plots(ckd_table *t, ckd_error *err)
{
    const json_t *ps = json_object_get(t->root, "plots"), *p;
    size_t i;
    char at[64], what[128];
    if (json_array_size(ps) > TABLE_MAX_PLOTS) {
        snprintf(what, sizeof what, "expected at most %d plots, got %zu", TABLE_MAX_PLOTS, json_array_size(ps));
        return errorf_at(t, "plots", err, what);
    }
    json_array_foreach(ps, i, p)
    {
        table_plot *x = &t->plots[i];
        snprintf(at, sizeof at, "plots[%zu].x", i);
        if (metric_named(t, str(p, "x"), at, &x->x, err))
            return -1;
        snprintf(at, sizeof at, "plots[%zu].y", i);
        if (metric_named(t, str(p, "y"), at, &x->y, err))
            return -1;
        x->title = str(p, "title");
        x->log_x = json_is_true(json_object_get(p, "log_x"));
    }
    t->n_plots = json_array_size(ps);
    return 0;
}

size_t table_plots(const ckd_table *t, const table_plot **out)
{
    *out = t->plots;
    return t->n_plots;
}

static int load_profiles(ckd_table *t, ckd_error *err)
{
    const char *name;
    const json_t *p;
    char at[128], what[CKD_ERROR_MAX];
    json_object_foreach(json_object_get(t->root, "profiles"), name, p)
    {
        snprintf(at, sizeof at, "profiles.%s", name);
        if (t->n_profiles == MAX_PROFILES) {
            snprintf(what, sizeof what, "more than %d profiles", MAX_PROFILES);
            return errorf_at(t, at, err, what);
        }
        t->profiles[t->n_profiles++] = name;
        const json_t *ms = json_object_get(p, "metrics"), *m;
        size_t i;
        json_array_foreach(ms, i, m)
        {
            int idx;
            snprintf(at, sizeof at, "profiles.%s.metrics[%zu]", name, i);
            if (metric_named(t, json_string_value(m), at, &idx, err))
                return -1;
        }
        char file[PATH_MAX];
        table_relative(t, str(p, "recipe"), file, sizeof file);
        if (access(file, R_OK)) {
            snprintf(at, sizeof at, "profiles.%s.recipe", name);
            snprintf(what, sizeof what, "cannot open the profile's recipe %.700s: %s", file, strerror(errno));
            return errorf_at(t, at, err, what);
        }
    }
    if (!t->n_profiles)
        return errorf_at(t, "profiles", err, "expected at least one profile, got none");
    return 0;
}

/* The index of the row with id `id` into *out (id NULL: *out is left as
 * it is); an unknown id is an error at json path `at`. */
static int find_row(const ckd_table *t, const char *id, const char *at, int *out, ckd_error *err)
{
    if (!id)
        return 0;
    const char *ids[CKD_TABLE_MAX_ROWS];
    for (size_t i = 0; i < t->n_rows; i++) {
        ids[i] = t->rows[i].id;
        if (!strcmp(ids[i], id)) {
            *out = (int)i;
            return 0;
        }
    }
    return unknown_name(t, at, "row", id, ids, t->n_rows, err);
}

static int load_rows(ckd_table *t, ckd_error *err)
{
    const json_t *rows = json_object_get(t->root, "rows"), *r;
    size_t i;
    char what[256];
    if (json_array_size(rows) == 0 || json_array_size(rows) > CKD_TABLE_MAX_ROWS) {
        snprintf(what, sizeof what, "expected 1 to %d rows, got %zu", CKD_TABLE_MAX_ROWS, json_array_size(rows));
        return errorf_at(t, "rows", err, what);
    }
    json_array_foreach(rows, i, r) if (load_row(t, i, r, err)) return -1;
    t->n_rows = json_array_size(rows);
    t->baseline = -1;
    if (find_row(t, str(t->root, "baseline"), "baseline", &t->baseline, err))
        return -1;
    json_array_foreach(rows, i, r)
    {
        char at[64];
        snprintf(at, sizeof at, "rows[%zu].baseline", i);
        t->rows[i].baseline = t->baseline;
        if (find_row(t, str(r, "baseline"), at, &t->rows[i].baseline, err))
            return -1;
    }
    return 0;
}

ckd_table *ckd_table_load(const char *path, ckd_error *err)
{
    ckd_table *t = calloc(1, sizeof *t);
    if (!t || !(t->path = strdup(path))) {
        free(t);
        ckd_errorf(err, "%s: out of memory", path);
        return NULL;
    }
    t->src = ckd_json_source_load(path, &t->root, err);
    if (!t->src)
        goto fail;
    json_t *schema = ckd_schema_parse(table_schema, "the table schema", err);
    if (!schema)
        goto fail;
    if (!json_is_object(t->root)) {
        errorf_at(t, "", err, "expected a table (a JSON object)");
        json_decref(schema);
        goto fail;
    }
    int rc = ckd_schema_apply(schema, t->root, path, "", ckd_json_source_locate, t->src, err);
    json_decref(schema);
    if (rc || load_metrics(t, err) || load_profiles(t, err) || load_rows(t, err) || load_plots(t, err))
        goto fail;
    return t;
fail:
    ckd_table_free(t);
    return NULL;
}

void ckd_table_free(ckd_table *t)
{
    if (!t)
        return;
    json_decref(t->root);
    ckd_json_source_free(t->src);
    free(t->path);
    free(t);
}

const char *ckd_table_path(const ckd_table *t)
{
    return t->path;
}

const char *ckd_table_name(const ckd_table *t)
{
    return str(t->root, "name");
}

const char *ckd_table_title(const ckd_table *t)
{
    return str(t->root, "title") ? str(t->root, "title") : ckd_table_name(t);
}

const json_t *ckd_table_source(const ckd_table *t)
{
    return json_object_get(t->root, "source");
}

size_t ckd_table_n_metrics(const ckd_table *t)
{
    return t->n_metrics;
}

const ckd_table_metric *ckd_table_metric_at(const ckd_table *t, size_t i)
{
    return i < t->n_metrics ? &t->metrics[i] : NULL;
}

size_t ckd_table_n_rows(const ckd_table *t)
{
    return t->n_rows;
}

const ckd_table_row *ckd_table_row_at(const ckd_table *t, size_t i)
{
    return i < t->n_rows ? &t->rows[i] : NULL;
}

int ckd_table_baseline(const ckd_table *t)
{
    return t->baseline;
}

const char *const *ckd_table_profiles(const ckd_table *t, size_t *n)
{
    *n = t->n_profiles;
    return t->profiles;
}

int ckd_table_profile_get(const ckd_table *t, const char *name, ckd_table_profile *out, ckd_error *err)
{
    const json_t *p = json_object_get(json_object_get(t->root, "profiles"), name);
    if (!p) {
        char what[CKD_ERROR_MAX];
        ckd_error e;
        unknown_name(NULL, NULL, "profile", name, t->profiles, t->n_profiles, &e);
        snprintf(what, sizeof what, "%s", e.msg);
        return ckd_errorf(err, "%s: %s", t->path, what);
    }
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < t->n_profiles; i++)
        if (!strcmp(t->profiles[i], name))
            out->name = t->profiles[i];
    out->recipe = str(p, "recipe");
    out->description = str(p, "description");
    out->eval_name = str(p, "eval");
    out->seeds = (int)json_integer_value(json_object_get(p, "seeds"));
    out->train_samples = (long long)json_integer_value(json_object_get(p, "train_samples"));
    const json_t *ms = json_object_get(p, "metrics"), *m;
    size_t i;
    for (size_t k = 0; k < t->n_metrics; k++)
        out->metric_on[k] = ms == NULL;
    json_array_foreach(ms, i, m) out->metric_on[metric_index(t, json_string_value(m))] = 1;
    return 0;
}

int ckd_table_select(const ckd_table *t, const char *ids, int *sel, ckd_error *err)
{
    for (size_t i = 0; i < t->n_rows; i++)
        sel[i] = ids == NULL;
    if (!ids)
        return 0;
    const char *names[CKD_TABLE_MAX_ROWS];
    for (size_t i = 0; i < t->n_rows; i++)
        names[i] = t->rows[i].id;
    for (const char *p = ids; *p;) {
        size_t n = strcspn(p, ",");
        char id[256];
        snprintf(id, sizeof id, "%.*s", (int)n, p);
        size_t i = 0;
        while (i < t->n_rows && strcmp(names[i], id))
            i++;
        if (i == t->n_rows) {
            ckd_error e;
            unknown_name(NULL, NULL, "row", id, names, t->n_rows, &e);
            return ckd_errorf(err, "--rows: %s", e.msg);
        }
        sel[i] = 1;
        p += n + (p[n] == ',');
    }
    return 0;
}

ckd_recipe *ckd_table_row_recipe(const ckd_table *t, const char *profile, size_t row, int seed,
                                 const char *const *sets, size_t n_sets,
                                 ckd_recipe_plugin_schema_fn plugin_schema, void *user, ckd_error *err)
{
    ckd_table_profile p;
    if (ckd_table_profile_get(t, profile, &p, err))
        return NULL;
    const json_t *r = t->row_json[row];
    char base[PATH_MAX], own[PATH_MAX], at_set[64], at_prof[192];
    ckd_recipe_part parts[4];
    size_t n = 0;
    table_relative(t, p.recipe, base, sizeof base);
    parts[n++] = (ckd_recipe_part){.path = base};
    if (str(r, "recipe")) {
        table_relative(t, str(r, "recipe"), own, sizeof own);
        parts[n++] = (ckd_recipe_part){.path = own};
    }
    if (json_object_get(r, "set")) {
        snprintf(at_set, sizeof at_set, "rows[%zu].set", row);
        parts[n++] = (ckd_recipe_part){.src = t->src, .at = at_set, .obj = json_object_get(r, "set")};
    }
    const json_t *po = json_object_get(json_object_get(r, "profiles"), profile);
    if (po) {
        snprintf(at_prof, sizeof at_prof, "rows[%zu].profiles.%s", row, profile);
        parts[n++] = (ckd_recipe_part){.src = t->src, .at = at_prof, .obj = po};
    }
    /* Runs are named after the table and the row, so that run directories
     * read as <table>-<row>-<hash>. */
    const char *all[TABLE_MAX_SETS + 2];
    char seed_set[32], name_set[300];
    size_t k = 0;
    snprintf(name_set, sizeof name_set, "name=%s-%s", ckd_table_name(t), t->rows[row].id);
    all[k++] = name_set;
    if (seed >= 0) {
        snprintf(seed_set, sizeof seed_set, "seed=%d", seed);
        all[k++] = seed_set;
    }
    for (size_t i = 0; i < n_sets && k < TABLE_MAX_SETS + 2; i++)
        all[k++] = sets[i];
    ckd_recipe *rc = ckd_recipe_compose(base, parts, n, all, k, plugin_schema, user, err);
    if (!rc)
        ckd_error_prefix(err, "%s: row \"%s\" (profile %s)", t->path, t->rows[row].id, profile);
    return rc;
}

/* Whether a metric value is a field beside "eval" in results.json rather
 * than in it (after any "teacher." prefix). */
static int beside_eval(const char *v)
{
    return !strcmp(v, "parameters") || strstr(v, "_seconds") || !strcmp(v, "peak_rss_mib");
}

int ckd_table_check_metrics(const ckd_table *t, const char *profile, size_t row, const ckd_recipe *r,
                            ckd_error *err)
{
    ckd_table_profile p;
    if (ckd_table_profile_get(t, profile, &p, err))
        return -1;
    const json_t *rj = ckd_recipe_json(r);
    const json_t *ev = json_object_get(rj, "eval");
    int has_data = json_object_get(json_object_get(rj, "data"), "eval") != NULL;
    for (size_t m = 0; m < t->n_metrics; m++) {
        if (!p.metric_on[m])
            continue;
        const char *v = t->metrics[m].value;
        /* The teacher run's own evaluation, which a run with teacher.recipe
         * copies; a row without one (the student alone) has no figure. */
        if (!strncmp(v, "teacher.", 8))
            continue;
        if (beside_eval(v)) /* every run records them */
            continue;
        size_t part = strcspn(v, ".");
        char section[32];
        snprintf(section, sizeof section, "%.*s", (int)part, v);
        /* Calibration reads the zero-shot probabilities. */
        int on = json_is_true(json_object_get(ev, section)) &&
                 (strcmp(section, "calibration") || json_is_true(json_object_get(ev, "zero_shot")));
        if (has_data && on)
            continue;
        char at[64], what[CKD_ERROR_MAX];
        snprintf(at, sizeof at, "metrics[%zu].value", m);
        snprintf(what, sizeof what,
                 "metric \"%s\" (%s) is not provided by row \"%s\": its recipe %s (%s)", t->metrics[m].id, v,
                 t->rows[row].id, has_data ? "switches that evaluation off" : "has no data.eval",
                 has_data ? section : "an evaluation set");
        return errorf_at(t, at, err, what);
    }
    return 0;
}

int ckd_table_metric_value(const ckd_table_metric *m, const json_t *results, double *out)
{
    const char *path = m->value;
    if (!strncmp(path, "teacher.", 8)) {
        results = json_object_get(results, "teacher");
        path += 8;
    }
    const json_t *v = beside_eval(path) ? results : json_object_get(results, "eval");
    char key[64];
    for (const char *p = path; v && *p;) {
        size_t n = strcspn(p, ".");
        snprintf(key, sizeof key, "%.*s", (int)n, p);
        v = json_object_get(v, key);
        p += n + (p[n] == '.');
    }
    if (!json_is_number(v))
        return 0;
    *out = json_number_value(v);
    return 1;
}
