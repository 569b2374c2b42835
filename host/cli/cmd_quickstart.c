/* clipkd quickstart: the teacher, a baseline and a distilled student, then a
 * table comparing them; with --seeds N the two students are trained with N
 * seeds and the table gives each figure's mean and standard deviation. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "clipkd/recipe.h"
#include "clipkd/train.h"

#define MAX_SEEDS 32
#define N_FIGS 5 /* zero-shot top-1, image->text R@1 and R@5, text->image R@1 and R@5 */

void cmd_quickstart_help(FILE *out)
{
    fprintf(out, "Usage: clipkd quickstart [RECIPE_DIR] [--runs ROOT] [--seeds N]\n"
                 "Runs RECIPE_DIR/baseline.json and RECIPE_DIR/distilled.json (default: the installed\n"
                 "recipes/quickstart) — the distilled student's teacher.recipe is trained first, or\n"
                 "reused from ROOT (default runs/) — and prints teacher, baseline and distilled\n"
                 "student's zero-shot top-1 and retrieval R@1 and R@5 on the evaluation data, with\n"
                 "the retrieval protocol and what a random ranking would score.\n"
                 "--seeds N (1 to %d): train both students with seeds 0 to N-1 (--set seed=S; the\n"
                 "teacher is the same) and print mean ± sample standard deviation. Finished runs\n"
                 "in ROOT are reused, so adding seeds trains only the new ones.\n",
            MAX_SEEDS);
}

/* One run's figures (percent) and parameter count from its results.json;
 * chance: the retrieval figures of a random ranking (fig[0] unused), match
 * and texts: the retrieval protocol and the number of texts ranked. */
typedef struct row {
    long long params;
    double fig[N_FIGS], chance[N_FIGS];
    char match[8];
    long long texts;
} row;

static int read_row(const char *dir, row *out)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/results.json", dir);
    json_error_t je;
    json_t *res = json_load_file(path, 0, &je);
    if (!res) {
        fprintf(stderr, "clipkd quickstart: %s:%d:%d: %s\n", path, je.line, je.column, je.text);
        return -1;
    }
    const json_t *ev = json_object_get(res, "eval");
    const json_t *rt = json_object_get(ev, "retrieval");
    out->params = (long long)json_integer_value(json_object_get(res, "parameters"));
    out->fig[0] = 100 * json_number_value(json_object_get(json_object_get(ev, "zero_shot"), "top1"));
    static const char *const keys[N_FIGS] = {NULL, "i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5"};
    for (int f = 1; f < N_FIGS; f++) {
        out->fig[f] = 100 * json_number_value(json_object_get(rt, keys[f]));
        out->chance[f] = 100 * json_number_value(json_object_get(json_object_get(rt, "chance"), keys[f]));
    }
    /* Runs from before the protocol was recorded used the standard one. */
    const char *match = json_string_value(json_object_get(rt, "match"));
    snprintf(out->match, sizeof out->match, "%s", match ? match : "pair");
    out->texts = (long long)json_integer_value(json_object_get(rt, "n_texts"));
    json_decref(res);
    return 0;
}

/* A table row over n runs: the figure, or mean ± sample std when n > 1. */
static void print_row(const char *label, const row *rows, int n)
{
    printf("%-10s %10lld", label, rows[0].params);
    for (int f = 0; f < N_FIGS; f++) {
        double mean = 0, ss = 0;
        for (int i = 0; i < n; i++)
            mean += rows[i].fig[f] / n;
        for (int i = 0; i < n; i++)
            ss += (rows[i].fig[f] - mean) * (rows[i].fig[f] - mean);
        if (n > 1)
            printf("  %7.2f ± %4.2f", mean, sqrt(ss / (n - 1)));
        else
            printf("  %14.2f", mean);
    }
    printf("\n");
}

/* The run directory the teacher of the distilled recipe trains in. */
static int teacher_dir(const ckd_recipe *r, const char *runs, char *dir, size_t cap)
{
    char tpath[4096];
    ckd_error err;
    if (ckd_recipe_resolve_path(r, "teacher.recipe", tpath, sizeof tpath, &err)) {
        fprintf(stderr, "clipkd quickstart: %s\n", err.msg);
        return -1;
    }
    ckd_registry *treg = NULL;
    ckd_recipe *tr = cli_load_recipe("quickstart", tpath, NULL, 0, &treg);
    if (tr)
        ckd_train_run_dir(tr, runs, dir, cap);
    ckd_recipe_free(tr);
    ckd_registry_free(treg);
    return tr ? 0 : -1;
}

/* Trains (or reuses) RECIPE_DIR/NAME.json with the given seed override
 * (NULL: the recipe's own seed) and reads its figures; for the distilled
 * recipe also the teacher's. */
static int run_one(const char *rdir, const char *name, const char *seed_set, const ckd_train_opts *o,
                   row *out, row *teacher)
{
    char path[4200], dir[4096];
    snprintf(path, sizeof path, "%s/%s.json", rdir, name);
    const char *sets[1] = {seed_set};
    ckd_registry *reg;
    ckd_recipe *r = cli_load_recipe("quickstart", path, sets, seed_set ? 1 : 0, &reg);
    if (!r)
        return CLI_USAGE;
    int rc = CLI_OK;
    char tdir[4096];
    ckd_error err;
    if (teacher && teacher_dir(r, o->runs_root, tdir, sizeof tdir))
        rc = CLI_USAGE;
    else if (ckd_train_run(reg, r, o, dir, sizeof dir, &err))
        fprintf(stderr, "clipkd quickstart: %s\n", err.msg), rc = CLI_FAIL;
    else if (read_row(dir, out) || (teacher && read_row(tdir, teacher)))
        rc = CLI_FAIL;
    ckd_recipe_free(r);
    ckd_registry_free(reg);
    return rc;
}

int cmd_quickstart(int argc, char **argv)
{
    const char *rdir = CKD_DATA_DIR "/recipes/quickstart", *runs = "runs";
    int seeds = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
            runs = argv[++i];
        } else if (!strcmp(argv[i], "--seeds") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > MAX_SEEDS)
                return fprintf(stderr, "clipkd quickstart: --seeds: expected 1 to %d, got '%s'\n", MAX_SEEDS,
                               argv[i]),
                       CLI_USAGE;
            seeds = (int)v;
        } else if (argv[i][0] != '-') {
            rdir = argv[i];
        } else {
            return fprintf(stderr, "clipkd quickstart: unexpected argument '%s'\n", argv[i]), CLI_USAGE;
        }
    }
    cli_progress pr = {.tty = isatty(2)};
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.runs_root = runs;
    o.progress = cli_on_progress;
    o.user = &pr;
    row teacher, base[MAX_SEEDS], dist[MAX_SEEDS];
    int rc = CLI_OK;
    /* The distilled student first: it trains the teacher its recipe names. */
    for (int s = 0; s < seeds && rc == CLI_OK; s++) {
        char set[32];
        snprintf(set, sizeof set, "seed=%d", s);
        const char *seed_set = seeds > 1 ? set : NULL;
        rc = run_one(rdir, "distilled", seed_set, &o, &dist[s], &teacher);
        if (rc == CLI_OK)
            rc = run_one(rdir, "baseline", seed_set, &o, &base[s], NULL);
    }
    if (rc != CLI_OK)
        return rc;
    printf("\n%-10s %10s  %14s  %14s  %14s  %14s  %14s\n", "model", "parameters", "zero-shot@1", "img->txt R@1",
           "img->txt R@5", "txt->img R@1", "txt->img R@5");
    print_row("teacher", &teacher, 1);
    print_row("baseline", base, seeds);
    print_row("distilled", dist, seeds);
    /* The students' evaluation data decides the chance level (the quickstart
     * recipes evaluate the teacher on the same). */
    printf("%-10s %10s  %14s", "chance", "", "");
    for (int f = 1; f < N_FIGS; f++)
        printf("  %14.2f", base[0].chance[f]);
    if (!strcmp(base[0].match, "text"))
        printf("\n(retrieval: text match, an image counts as found when one of its captions is identical to the "
               "query, over %lld distinct texts; chance: a random ranking)\n",
               base[0].texts);
    else
        printf("\n(retrieval: pair match, the image a caption was written for, over %lld captions; chance: a "
               "random ranking)\n",
               base[0].texts);
    if (seeds > 1)
        printf("(percent, on the evaluation data of the recipes; students: mean ± std over seeds 0-%d; "
               "runs in %s/)\n",
               seeds - 1, runs);
    else
        printf("(percent, on the evaluation data of the recipes; runs in %s/)\n", runs);
    return CLI_OK;
}
