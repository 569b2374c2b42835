/* clipkd table TABLE.json: rerun a paper's table from recipes and print it
 * next to the paper's numbers (clipkd/table.h has the library half: table
 * files, row recipes, summaries, rendering).
 *
 * Every (row, seed) is an ordinary run directory under the runs root, keyed
 * by the row recipe's hash: a finished run is read back, an interrupted one
 * (a checkpoint, no results) resumes exactly, anything else trains. So a
 * killed `clipkd table` picks up where it stopped, and a teacher named by
 * teacher.recipe is trained once and shared by every row and table. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "clipkd/data.h"
#include "clipkd/fetch.h"
#include "clipkd/registry.h"
#include "clipkd/table.h"
#include "clipkd/train.h"

#define MAX_SETS 256
#define PATH_CAP 4096

void cmd_table_help(FILE *out)
{
    fprintf(out,
            "Usage: clipkd table TABLE.json [--profile NAME] [--seeds N] [--rows ID,ID...]\n"
            "                    [--dry-run] [--format md|csv|json] [--out DIR] [--runs ROOT]\n"
            "                    [--set KEY.PATH=VALUE]... [--no-keep-going]\n"
            "Reruns a paper's result table: every row's recipe (the profile's recipe, the row's\n"
            "recipe and overrides, seed S) is trained for seeds 0..N-1 (N: --seeds, else the\n"
            "profile's), then the table is printed with our mean ± sample std and n next to\n"
            "the paper's figures, our Δ against the baseline row next to the paper's Δ, and\n"
            "which of the paper's orderings (row A above row B) hold in our numbers.\n"
            "Runs are ordinary run directories under ROOT (default runs/), keyed by recipe\n"
            "hash: finished runs are reused and interrupted ones resumed, so rerunning a\n"
            "killed table retrains nothing that finished.\n"
            "  --profile NAME   the table's profile (default: its first, e.g. mini)\n"
            "  --rows IDS       only these rows (comma-separated ids)\n"
            "  --dry-run        check every row's recipe, plugins and artifacts, print the plan\n"
            "                   and its estimated cost; trains nothing\n"
            "  --format F       what to print: md (default), csv or json\n"
            "  --out DIR        where table.md, table.csv, table.json and table.svg go\n"
            "                   (default tables/<name>-<profile>/)\n"
            "  --set K=V        applied to every row's recipe (after the row's own settings)\n"
            "  --no-keep-going  stop at the first row that fails (default: report it as\n"
            "                   failed and run the others)\n"
            "Exit status: 0 every row done, 1 a row failed or is blocked, 2 bad input.\n"
            "The table format is clipkd-table(5).\n");
}

typedef struct table_args {
    const char *path, *profile, *rows, *out, *runs, *format;
    const char *sets[MAX_SETS];
    size_t n_sets;
    int seeds, dry_run, keep_going;
} table_args;

static int parse_args(int argc, char **argv, table_args *a)
{
    memset(a, 0, sizeof *a);
    a->keep_going = 1;
    a->format = "md";
    a->runs = "runs";
    for (int i = 1; i < argc; i++) {
        int more = i + 1 < argc;
        if (!strcmp(argv[i], "--profile") && more)
            a->profile = argv[++i];
        else if (!strcmp(argv[i], "--rows") && more)
            a->rows = argv[++i];
        else if (!strcmp(argv[i], "--out") && more)
            a->out = argv[++i];
        else if (!strcmp(argv[i], "--runs") && more)
            a->runs = argv[++i];
        else if (!strcmp(argv[i], "--format") && more)
            a->format = argv[++i];
        else if (!strcmp(argv[i], "--set") && more && a->n_sets < MAX_SETS)
            a->sets[a->n_sets++] = argv[++i];
        else if (!strcmp(argv[i], "--dry-run"))
            a->dry_run = 1;
        else if (!strcmp(argv[i], "--keep-going"))
            a->keep_going = 1;
        else if (!strcmp(argv[i], "--no-keep-going"))
            a->keep_going = 0;
        else if (!strcmp(argv[i], "--seeds") && more) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > CKD_TABLE_MAX_SEEDS)
                return fprintf(stderr, "clipkd table: --seeds: expected 1 to %d, got '%s'\n", CKD_TABLE_MAX_SEEDS,
                               argv[i]),
                       -1;
            a->seeds = (int)v;
        } else if (argv[i][0] != '-' && !a->path)
            a->path = argv[i];
        else
            return fprintf(stderr, "clipkd table: unexpected argument '%s' (see clipkd table --help)\n", argv[i]), -1;
    }
    if (!a->path)
        return fprintf(stderr, "clipkd table: no table file given (see clipkd table --help)\n"), -1;
    if (strcmp(a->format, "md") && strcmp(a->format, "csv") && strcmp(a->format, "json"))
        return fprintf(stderr, "clipkd table: --format: expected md, csv or json, got '%s'\n", a->format), -1;
    return 0;
}

/* ---- the plan ------------------------------------------------------------------ */

typedef struct row_plan {
    int bad;                 /* the recipe did not validate: why says why */
    char why[CKD_ERROR_MAX];
    char blocked[1024];      /* e.g. "needs model plugin resnet" */
    ckd_run_state state[CKD_TABLE_MAX_SEEDS];
    char (*dir)[PATH_CAP];   /* per seed */
    long long images;        /* training images per run; -1 unknown */
    char teacher[PATH_CAP];  /* the teacher.recipe file, or "" */
    char artifacts[256];     /* "2 artifacts, 1 not cached (3.1 GiB)" */
} row_plan;

typedef struct table_run {
    table_args a;
    ckd_table *t;
    ckd_table_profile prof;
    ckd_registry *reg;
    int sel[CKD_TABLE_MAX_ROWS];
    row_plan plan[CKD_TABLE_MAX_ROWS];
    ckd_table_outcome out[CKD_TABLE_MAX_ROWS];
    int seeds;
    char missing_model[256]; /* set by the schema callback */
    /* The training set's size by data spec, once opened (rows share it). */
    char *sized_spec;
    long long sized_n;
} table_run;

/* Plugin schemas from the registry; a model plugin that is not installed
 * blocks the row instead of failing it (a table may name a model plugin that
 * this build does not have yet), with its parameters taken as written. */
static int row_schema(void *user, const char *kind, const char *name, const char **schema_json, ckd_error *err)
{
    table_run *tr = user;
    if (!ckd_train_plugin_schema(tr->reg, kind, name, schema_json, err))
        return 0;
    if (strcmp(kind, "model"))
        return -1;
    snprintf(tr->missing_model, sizeof tr->missing_model, "needs model plugin %s", name);
    *schema_json = "{\"additionalProperties\": true}";
    return 0;
}

static ckd_recipe *row_recipe(table_run *tr, size_t row, int seed, ckd_error *err)
{
    tr->missing_model[0] = '\0';
    ckd_recipe *r = ckd_table_row_recipe(tr->t, tr->prof.name, row, seed, tr->a.sets, tr->a.n_sets, row_schema, tr,
                                         err);
    if (r && ckd_table_check_metrics(tr->t, tr->prof.name, row, r, err)) {
        ckd_recipe_free(r);
        return NULL;
    }
    return r;
}

typedef struct art_count {
    int n, missing, bad, unpinned;
    long long missing_bytes;
} art_count;

static void count_artifact(void *user, const json_t *obj, const char *where)
{
    art_count *c = user;
    ckd_artifact a;
    ckd_error e;
    char path[PATH_CAP];
    c->n++;
    if (!json_object_get(obj, "sha256") && json_is_array(json_object_get(obj, "urls"))) {
        c->unpinned++; /* published without a full hash: clipkd fetch --pin */
        c->missing++;
        memset(&a, 0, sizeof a);
    } else if (ckd_artifact_from_json(obj, &a, where, &e)) {
        c->bad++;
    } else if (ckd_fetch_cached(NULL, &a, path, sizeof path, &e) != 1) {
        c->missing++;
        c->missing_bytes += (long long)a.size;
    }
    ckd_artifact_free(&a);
}

/* Training images per run: steps × batch, or epochs × the training set's
 * size (the profile's train_samples, else counted by opening the data —
 * cached by data spec, since every row usually shares it). */
static long long train_images(table_run *tr, const ckd_recipe *r)
{
    const json_t *rj = ckd_recipe_json(r), *train = json_object_get(rj, "train");
    long long steps = json_integer_value(json_object_get(train, "steps"));
    long long batch = json_integer_value(json_object_get(train, "batch_size"));
    long long accum = json_integer_value(json_object_get(train, "accum"));
    if (steps > 0)
        return steps * batch * (accum > 0 ? accum : 1);
    long long epochs = json_integer_value(json_object_get(train, "epochs")), n = tr->prof.train_samples;
    if (!n) {
        const json_t *spec = json_object_get(json_object_get(rj, "data"), "train");
        char *s = json_dumps(spec, JSON_SORT_KEYS | JSON_COMPACT);
        if (s && tr->sized_spec && !strcmp(s, tr->sized_spec)) {
            n = tr->sized_n;
        } else {
            char dir[PATH_CAP];
            snprintf(dir, sizeof dir, "%s", ckd_recipe_path(r));
            char *slash = strrchr(dir, '/');
            snprintf(slash ? slash : dir, sizeof dir - (size_t)(slash ? slash - dir : 0), "%s", slash ? "" : ".");
            ckd_error e;
            ckd_fetch_opts fo;
            ckd_fetch_opts_init(&fo);
            fo.offline = 1; /* a plan never downloads */
            ckd_dataset *ds = ckd_dataset_open_fetch(spec, dir, &fo, &e);
            n = ds ? (long long)ckd_dataset_size(ds) : -1;
            ckd_dataset_close(ds);
            free(tr->sized_spec);
            tr->sized_spec = s;
            tr->sized_n = n;
            s = NULL;
        }
        free(s);
    }
    return n > 0 ? epochs * n : -1;
}

/* Composes and checks every selected (row, seed) recipe and finds the state
 * of its run directory. Returns the number of rows whose recipe is bad. */
static int make_plan(table_run *tr)
{
    int bad = 0;
    for (size_t row = 0; row < ckd_table_n_rows(tr->t); row++) {
        row_plan *p = &tr->plan[row];
        if (!tr->sel[row])
            continue;
        p->dir = calloc((size_t)tr->seeds, sizeof *p->dir);
        if (!p->dir) {
            snprintf(p->why, sizeof p->why, "out of memory");
            p->bad = 1, bad++;
            continue;
        }
        for (int s = 0; s < tr->seeds && !p->bad; s++) {
            ckd_error err;
            ckd_recipe *r = row_recipe(tr, row, s, &err);
            if (!r) {
                snprintf(p->why, sizeof p->why, "%s", err.msg);
                p->bad = 1, bad++;
                break;
            }
            const char *why = ckd_table_row_at(tr->t, row)->blocked;
            if (tr->missing_model[0] || why)
                snprintf(p->blocked, sizeof p->blocked, "%.256s%s%.700s", tr->missing_model,
                         tr->missing_model[0] && why ? "; " : "", why ? why : "");
            ckd_train_run_dir(r, tr->a.runs, p->dir[s], PATH_CAP);
            p->state[s] = ckd_train_dir_state(p->dir[s]);
            if (s == 0) {
                ckd_error e;
                if (json_object_get(json_object_get(ckd_recipe_json(r), "teacher"), "recipe") &&
                    ckd_recipe_resolve_path(r, "teacher.recipe", p->teacher, sizeof p->teacher, &e))
                    p->teacher[0] = '\0';
                p->images = p->blocked[0] ? -1 : train_images(tr, r);
                art_count c = {0};
                cli_for_each_artifact(ckd_recipe_json(r), "", count_artifact, &c);
                if (c.n)
                    snprintf(p->artifacts, sizeof p->artifacts, "%d artifact%s, %d not cached (%.1f GiB%s)%s%s",
                             c.n, c.n == 1 ? "" : "s", c.missing, (double)c.missing_bytes / (1 << 30),
                             c.unpinned ? " and unpinned sizes" : "", c.bad ? ", some malformed" : "",
                             c.unpinned ? ", not pinned yet: clipkd fetch --pin the row's recipe" : "");
            }
            ckd_recipe_free(r);
        }
        if (p->bad)
            fprintf(stderr, "clipkd table: %s\n", p->why);
    }
    return bad;
}

/* The teachers the rows name by recipe, each once: its run directory and
 * whether it is trained already (a row's run trains it first otherwise). */
static void print_teachers(table_run *tr)
{
    for (size_t row = 0; row < ckd_table_n_rows(tr->t); row++) {
        const char *tp = tr->plan[row].teacher;
        if (!tr->sel[row] || !tp[0] || tr->plan[row].bad)
            continue;
        int seen = 0;
        for (size_t k = 0; k < row && !seen; k++)
            seen = tr->sel[k] && !strcmp(tr->plan[k].teacher, tp);
        if (seen)
            continue;
        ckd_error err;
        ckd_recipe *r = ckd_recipe_load(tp, NULL, 0, row_schema, tr, &err);
        if (!r) {
            printf("teacher   %s: invalid: %s\n", tp, err.msg);
            continue;
        }
        char dir[PATH_CAP];
        ckd_train_run_dir(r, tr->a.runs, dir, sizeof dir);
        long long n = train_images(tr, r);
        printf("teacher   %s\n          %s  %s", tp, dir,
               ckd_train_dir_state(dir) == CKD_RUN_FINISHED ? "trained" : "to train first");
        if (n > 0)
            printf("; %lld training images", n);
        printf("\n");
        ckd_recipe_free(r);
    }
}

static void print_plan(table_run *tr)
{
    printf("table:    %s (%s)\nprofile:  %s%s%s\nseeds:    %d\nruns in:  %s/\n\n", ckd_table_path(tr->t),
           ckd_table_title(tr->t), tr->prof.name, tr->prof.description ? " — " : "",
           tr->prof.description ? tr->prof.description : "", tr->seeds, tr->a.runs);
    long long total_images = 0;
    int to_train = 0, unknown = 0, done = 0;
    for (size_t row = 0; row < ckd_table_n_rows(tr->t); row++) {
        const row_plan *p = &tr->plan[row];
        if (!tr->sel[row])
            continue;
        const ckd_table_row *rw = ckd_table_row_at(tr->t, row);
        printf("%-14s %-24s ", rw->id, rw->label);
        if (p->bad) {
            printf("invalid (see above)\n");
            continue;
        }
        if (p->blocked[0]) {
            printf("blocked: %s\n", p->blocked);
            continue;
        }
        int n_done = 0, n_resume = 0;
        for (int s = 0; s < tr->seeds; s++)
            n_done += p->state[s] == CKD_RUN_FINISHED, n_resume += p->state[s] == CKD_RUN_INTERRUPTED;
        int left = tr->seeds - n_done;
        to_train += left, done += n_done;
        if (p->images < 0)
            unknown += left;
        else
            total_images += p->images * left;
        printf("ok: %d done, %d to resume, %d new", n_done, n_resume, left - n_resume);
        if (p->images >= 0)
            printf("; %lld training images a run", p->images);
        if (p->artifacts[0])
            printf("; %s", p->artifacts);
        printf("\n");
        for (int s = 0; s < tr->seeds; s++)
            printf("    seed %d  %s  %s\n", s, p->dir[s],
                   p->state[s] == CKD_RUN_FINISHED ? "done" : p->state[s] == CKD_RUN_INTERRUPTED ? "resumes" : "new");
    }
    printf("\n");
    print_teachers(tr);
    printf("\ncost: %d run%s to train (%d already done), %lld training images", to_train, to_train == 1 ? "" : "s",
           done, total_images);
    if (unknown)
        printf(" + %d run%s of unknown size (data not available here: give the profile train_samples)", unknown,
               unknown == 1 ? "" : "s");
    printf("\n");
}

/* ---- running ------------------------------------------------------------------- */

static int read_outcome(table_run *tr, size_t row, int s, const char *dir)
{
    char path[PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/results.json", dir);
    json_error_t je;
    json_t *res = json_load_file(path, 0, &je);
    ckd_table_outcome *o = &tr->out[row];
    if (!res) {
        snprintf(o->reason, sizeof o->reason, "%.600s:%d:%d: %s", path, je.line, je.column, je.text);
        return -1;
    }
    for (size_t m = 0; m < ckd_table_n_metrics(tr->t); m++)
        o->has[m][s] = ckd_table_metric_value(ckd_table_metric_at(tr->t, m), res, &o->value[m][s]);
    json_decref(res);
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct progress {
    double t0;
    double run_s[CKD_TABLE_MAX_ROWS * CKD_TABLE_MAX_SEEDS]; /* each trained run's time */
    int trained, left, index, rows;
} progress;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median time of the runs trained so far: a run that first trained its
 * teacher takes several times longer than the others and should not set
 * the pace of the rest. */
static double median_run_s(const progress *pg)
{
    double v[CKD_TABLE_MAX_ROWS * CKD_TABLE_MAX_SEEDS];
    memcpy(v, pg->run_s, (size_t)pg->trained * sizeof *v);
    qsort(v, (size_t)pg->trained, sizeof *v, cmp_double);
    return pg->trained % 2 ? v[pg->trained / 2] : (v[pg->trained / 2 - 1] + v[pg->trained / 2]) / 2;
}

static void progress_line(const table_run *tr, const progress *pg, size_t row, int s, int resumes)
{
    char el[32], eta[32] = "—";
    cli_fmt_time(now_s() - pg->t0, el, sizeof el);
    if (pg->trained)
        cli_fmt_time(median_run_s(pg) * pg->left, eta, sizeof eta);
    fprintf(stderr, "[table %s] row %d/%d %s, seed %d/%d%s — elapsed %s, ETA %s (%d run%s to train)\n",
            ckd_table_name(tr->t), pg->index, pg->rows, ckd_table_row_at(tr->t, row)->label, s + 1, tr->seeds,
            resumes ? " (resuming from its checkpoint)" : "", el, eta, pg->left, pg->left == 1 ? "" : "s");
}

/* What run.json records of a table run: {"table": {"path", "profile",
 * "row", "seed", "sets"}}, from which `clipkd run --resume` composes the
 * recipe again (cli_table_recipe). */
static json_t *table_origin(const table_run *tr, size_t row, int s)
{
    char abs[PATH_CAP];
    const char *path = realpath(ckd_table_path(tr->t), abs) ? abs : ckd_table_path(tr->t);
    json_t *sets = json_array();
    for (size_t i = 0; i < tr->a.n_sets; i++)
        json_array_append_new(sets, json_string(tr->a.sets[i]));
    return json_pack("{s:{s:s, s:s, s:s, s:i, s:o}}", "table", "path", path, "profile", tr->prof.name, "row",
                     ckd_table_row_at(tr->t, row)->id, "seed", s, "sets", sets);
}

ckd_recipe *cli_table_recipe(const json_t *origin, struct ckd_registry *reg, ckd_error *err)
{
    const char *path = json_string_value(json_object_get(origin, "path"));
    const char *profile = json_string_value(json_object_get(origin, "profile"));
    const char *id = json_string_value(json_object_get(origin, "row"));
    const json_t *js = json_object_get(origin, "sets");
    if (!path || !profile || !id || !json_is_integer(json_object_get(origin, "seed")))
        return ckd_errorf(err, "run.json: \"table\": expected path, profile, row and seed"), NULL;
    ckd_table *t = ckd_table_load(path, err);
    if (!t)
        return NULL;
    int sel[CKD_TABLE_MAX_ROWS];
    ckd_recipe *r = NULL;
    const char *sets[MAX_SETS];
    size_t n = 0;
    for (; n < json_array_size(js) && n < MAX_SETS; n++)
        sets[n] = json_string_value(json_array_get(js, n));
    if (!ckd_table_select(t, id, sel, err))
        for (size_t row = 0; row < ckd_table_n_rows(t); row++)
            if (sel[row])
                r = ckd_table_row_recipe(t, profile, row, (int)json_integer_value(json_object_get(origin, "seed")), sets,
                                         n, ckd_train_plugin_schema, reg, err);
    ckd_table_free(t);
    return r;
}

/* Trains (or resumes: dir) recipe r in a child process, so that every run
 * of the table has a process of its own: its peak memory (peak_rss_mib) is
 * its own, not what the runs before it left in a shared heap, and a run
 * that crashes fails its row, not the table. The child's error message
 * comes back through a pipe. Without fork, the run is made here. */
static int train_isolated(table_run *tr, const ckd_recipe *r, const char *resume_dir, const ckd_train_opts *op,
                          ckd_error *err)
{
    char dir[PATH_CAP];
    int fds[2];
    fflush(NULL);
    int piped = pipe(fds) == 0;
    pid_t parent = getpid(), pid = piped ? fork() : -1;
    if (pid < 0) {
        if (piped)
            close(fds[0]), close(fds[1]);
        return resume_dir ? ckd_train_resume(tr->reg, r, resume_dir, op, err)
                          : ckd_train_run(tr->reg, r, op, dir, sizeof dir, err);
    }
    if (pid == 0) {
#ifdef __linux__
        /* A table killed outright takes its run with it (the run's lock
         * would otherwise keep the table's next start from resuming it). */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent)
            _exit(1);
#else
        (void)parent;
#endif
        close(fds[0]);
        ckd_error e = {{0}};
        int rc = resume_dir ? ckd_train_resume(tr->reg, r, resume_dir, op, &e)
                            : ckd_train_run(tr->reg, r, op, dir, sizeof dir, &e);
        size_t n = rc ? strlen(e.msg) : 0;
        ssize_t w = n ? write(fds[1], e.msg, n) : 0;
        fflush(NULL);
        _exit(rc || w < 0 ? 1 : 0);
    }
    close(fds[1]);
    char msg[CKD_ERROR_MAX] = "";
    size_t len = 0;
    for (ssize_t k; len < sizeof msg - 1 && (k = read(fds[0], msg + len, sizeof msg - 1 - len)) > 0;)
        len += (size_t)k;
    msg[len] = '\0';
    close(fds[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    if (WIFSIGNALED(st))
        return ckd_errorf(err, "the run was stopped by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    return ckd_errorf(err, "%s", msg[0] ? msg : "the run failed without a message");
}

/* Trains, resumes or reads back seed s of a row. */
static int run_seed(table_run *tr, size_t row, int s, progress *pg, const ckd_train_opts *base)
{
    row_plan *p = &tr->plan[row];
    ckd_table_outcome *o = &tr->out[row];
    ckd_error err;
    if (p->state[s] != CKD_RUN_FINISHED) {
        progress_line(tr, pg, row, s, p->state[s] == CKD_RUN_INTERRUPTED);
        ckd_recipe *r = row_recipe(tr, row, s, &err);
        double t0 = now_s();
        int rc = -1;
        if (r) {
            ckd_train_opts op = *base;
            json_t *origin = table_origin(tr, row, s);
            op.origin = origin;
            rc = train_isolated(tr, r, p->state[s] == CKD_RUN_INTERRUPTED ? p->dir[s] : NULL, &op, &err);
            json_decref(origin);
        }
        ckd_recipe_free(r);
        double dt = now_s() - t0;
        pg->left--;
        if (rc) {
            snprintf(o->reason, sizeof o->reason, "seed %d: %s", s, err.msg);
            fprintf(stderr, "clipkd table: row \"%s\" failed: %s\n", ckd_table_row_at(tr->t, row)->id, o->reason);
            return -1;
        }
        if (pg->trained < CKD_TABLE_MAX_ROWS * CKD_TABLE_MAX_SEEDS)
            pg->run_s[pg->trained++] = dt;
    }
    return read_outcome(tr, row, s, p->dir[s]);
}

static int run_rows(table_run *tr)
{
    cli_progress pr = {.tty = isatty(2)};
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.runs_root = tr->a.runs;
    o.progress = cli_on_progress;
    o.user = &pr;
    progress pg = {.t0 = now_s()};
    for (size_t row = 0; row < ckd_table_n_rows(tr->t); row++)
        if (tr->sel[row] && !tr->plan[row].bad && !tr->plan[row].blocked[0]) {
            pg.rows++;
            for (int s = 0; s < tr->seeds; s++)
                pg.left += tr->plan[row].state[s] != CKD_RUN_FINISHED;
        }
    int failed = 0;
    for (size_t row = 0; row < ckd_table_n_rows(tr->t); row++) {
        row_plan *p = &tr->plan[row];
        ckd_table_outcome *out = &tr->out[row];
        if (!tr->sel[row])
            continue;
        if (p->bad || p->blocked[0]) {
            out->status = p->bad ? CKD_TABLE_FAILED : CKD_TABLE_BLOCKED;
            snprintf(out->reason, sizeof out->reason, "%s", p->bad ? p->why : p->blocked);
            failed++;
            continue;
        }
        pg.index++;
        out->status = CKD_TABLE_DONE;
        for (int s = 0; s < tr->seeds; s++) {
            out->n = s + 1;
            if (run_seed(tr, row, s, &pg, &o))
                out->status = CKD_TABLE_FAILED; /* its seed has no figures */
        }
        if (out->status == CKD_TABLE_FAILED && (failed++, !tr->a.keep_going))
            break;
    }
    char el[32];
    cli_fmt_time(now_s() - pg.t0, el, sizeof el);
    fprintf(stderr, "[table %s] finished in %s: %d run%s trained\n", ckd_table_name(tr->t), el, pg.trained,
            pg.trained == 1 ? "" : "s");
    return failed;
}

/* ---- output -------------------------------------------------------------------- */

static int write_text(const char *dir, const char *name, const char *text)
{
    char path[PATH_CAP + 64], tmp[PATH_CAP + 96];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    int ok = f && fputs(text, f) >= 0;
    ok = f && !fclose(f) && ok && !rename(tmp, path);
    if (!ok) {
        fprintf(stderr, "clipkd table: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int mkdirs(const char *path)
{
    char buf[PATH_CAP];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p && *p != '/')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0777) && errno != EEXIST) {
            fprintf(stderr, "clipkd table: cannot create %s: %s\n", buf, strerror(errno));
            return -1;
        }
        if (!(*p = c))
            break;
    }
    struct stat sb;
    if (stat(buf, &sb) || !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "clipkd table: %s exists and is not a folder\n", buf);
        return -1;
    }
    return 0;
}

/* Writes the four files and prints the chosen format. */
static int emit(table_run *tr)
{
    static const struct {
        const char *file;
        ckd_table_format fmt;
        const char *name;
    } outs[] = {{"table.md", CKD_TABLE_MD, "md"},
                {"table.csv", CKD_TABLE_CSV, "csv"},
                {"table.json", CKD_TABLE_JSON, "json"},
                {"table.svg", CKD_TABLE_SVG, "svg"}};
    char dir[PATH_CAP];
    if (tr->a.out)
        snprintf(dir, sizeof dir, "%s", tr->a.out);
    else
        snprintf(dir, sizeof dir, "tables/%s-%s", ckd_table_name(tr->t), tr->prof.name);
    if (mkdirs(dir))
        return -1;
    int rc = 0;
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        ckd_error err;
        char *text = ckd_table_render(tr->t, tr->prof.name, tr->out, tr->sel, outs[i].fmt, &err);
        if (!text) {
            fprintf(stderr, "clipkd table: %s\n", err.msg);
            return -1;
        }
        if (!strcmp(outs[i].name, tr->a.format))
            fputs(text, stdout);
        rc |= write_text(dir, outs[i].file, text);
        free(text);
    }
    if (!rc)
        fprintf(stderr, "clipkd table: wrote %s/table.{md,csv,json,svg}\n", dir);
    return rc;
}

int cmd_table(int argc, char **argv)
{
    table_run *tr = calloc(1, sizeof *tr);
    if (!tr)
        return fprintf(stderr, "clipkd table: out of memory\n"), CLI_FAIL;
    int rc = CLI_USAGE;
    ckd_error err;
    if (parse_args(argc, argv, &tr->a))
        goto out;
    /* A bare name ("clip-kd-ablation") is a shipped table. */
    char shipped[PATH_CAP];
    if (access(tr->a.path, F_OK) && !strchr(tr->a.path, '/')) {
        char rel[512];
        size_t len = strlen(tr->a.path);
        snprintf(rel, sizeof rel, "recipes/tables/%s%s", tr->a.path,
                 len > 5 && !strcmp(tr->a.path + len - 5, ".json") ? "" : ".json");
        if (!ckd_shipped_path(rel, shipped, sizeof shipped, &err) && !access(shipped, F_OK))
            tr->a.path = shipped;
    }
    if (!(tr->t = ckd_table_load(tr->a.path, &err))) {
        fprintf(stderr, "clipkd table: %s\n", err.msg);
        goto out;
    }
    size_t np;
    const char *profile = tr->a.profile ? tr->a.profile : ckd_table_profiles(tr->t, &np)[0];
    if (ckd_table_profile_get(tr->t, profile, &tr->prof, &err) || ckd_table_select(tr->t, tr->a.rows, tr->sel, &err)) {
        fprintf(stderr, "clipkd table: %s\n", err.msg);
        goto out;
    }
    tr->seeds = tr->a.seeds ? tr->a.seeds : tr->prof.seeds;
    if (!(tr->reg = cli_open_registry()))
        goto out;
    int bad = make_plan(tr);
    if (tr->a.dry_run) {
        print_plan(tr);
        rc = bad ? CLI_USAGE : CLI_OK;
        goto out;
    }
    int failed = run_rows(tr);
    rc = emit(tr) ? CLI_FAIL : failed ? CLI_FAIL : CLI_OK;
out:
    for (size_t i = 0; i < CKD_TABLE_MAX_ROWS; i++)
        free(tr->plan[i].dir);
    free(tr->sized_spec);
    ckd_registry_free(tr->reg);
    ckd_table_free(tr->t);
    free(tr);
    return rc;
}
