/* clipkd run RECIPE: training (clipkd/train.h) with a progress line, and
 * clipkd quickstart: the teacher, a baseline and a distilled student, then a
 * table comparing them. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "clipkd/train.h"

void cmd_run_help(FILE *out)
{
    fprintf(out,
            "Usage: clipkd run RECIPE [--set KEY.PATH=VALUE]... [--out DIR] [--runs ROOT] [--dry-run]\n"
            "                  [--dump-steps N --dump-dir D]\n"
            "       clipkd run --resume RUN_DIR [RECIPE [--set ...]]\n"
            "Trains RECIPE (checked like `clipkd validate` first) in the run directory DIR\n"
            "(default ROOT/<name>-<first 12 hex digits of the recipe hash>, ROOT default runs/):\n"
            "recipe.json, run.json, metrics.jsonl, checkpoint.safetensors (+ checkpoint.json),\n"
            "final/ (the student as a model directory) and results.json. A teacher named by\n"
            "teacher.recipe is trained first under ROOT unless it is there already.\n"
            "--resume continues a run from its last checkpoint (the recipe recorded in\n"
            "run.json, or RECIPE, whose hash must match). --dry-run checks the recipe and\n"
            "prints what would be done. On a terminal a progress line is redrawn; otherwise\n"
            "one line per logged step.\n"
            "--dump-steps N --dump-dir D: for each of the first N steps, D/step-NNNN.safetensors\n"
            "with loss, loss.<term>, grad.<param> (before clipping) and param.<param> (after\n"
            "the step), under Hugging Face names, for comparing a run with PyTorch.\n");
}

void cmd_quickstart_help(FILE *out)
{
    fprintf(out, "Usage: clipkd quickstart [RECIPE_DIR] [--runs ROOT]\n"
                 "Runs RECIPE_DIR/baseline.json and RECIPE_DIR/distilled.json (default: the installed\n"
                 "recipes/quickstart) — the distilled student's teacher.recipe is trained first, or\n"
                 "reused from ROOT (default runs/) — and prints teacher, baseline and distilled\n"
                 "student's zero-shot top-1 and retrieval R@1 on the evaluation data.\n");
}

typedef struct run_args {
    const char *path, *out, *runs, *resume;
    const char *sets[256];
    size_t n_sets;
    int dry_run;
    long stop_after, dump_steps;
    const char *dump_dir;
} run_args;

static int parse_args(int argc, char **argv, run_args *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        int more = i + 1 < argc;
        if (!strcmp(argv[i], "--set") && more && a->n_sets < 256)
            a->sets[a->n_sets++] = argv[++i];
        else if (!strncmp(argv[i], "--set=", 6) && a->n_sets < 256)
            a->sets[a->n_sets++] = argv[i] + 6;
        else if (!strcmp(argv[i], "--out") && more)
            a->out = argv[++i];
        else if (!strcmp(argv[i], "--runs") && more)
            a->runs = argv[++i];
        else if (!strcmp(argv[i], "--resume") && more)
            a->resume = argv[++i];
        else if (!strcmp(argv[i], "--stop-after") && more) /* for tests: stop as if killed */
            a->stop_after = atol(argv[++i]);
        else if (!strcmp(argv[i], "--dump-steps") && more)
            a->dump_steps = atol(argv[++i]);
        else if (!strcmp(argv[i], "--dump-dir") && more)
            a->dump_dir = argv[++i];
        else if (!strcmp(argv[i], "--dry-run"))
            a->dry_run = 1;
        else if (argv[i][0] != '-' && !a->path)
            a->path = argv[i];
        else {
            fprintf(stderr, "clipkd run: unexpected argument '%s' (see clipkd run --help)\n", argv[i]);
            return -1;
        }
    }
    if (a->dump_steps > 0 && !a->dump_dir) {
        fprintf(stderr, "clipkd run: --dump-steps needs --dump-dir DIR\n");
        return -1;
    }
    if (!a->path && !a->resume) {
        fprintf(stderr, "clipkd run: no recipe given (see clipkd run --help)\n");
        return -1;
    }
    return 0;
}

/* ---- progress --------------------------------------------------------------------- */

typedef struct progress {
    int tty, line_open;
} progress;

static void fmt_time(double s, char *buf, size_t cap)
{
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else
        snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
}

static void on_progress(void *user, const ckd_train_event *ev)
{
    progress *p = user;
    if (ev->kind != CKD_TRAIN_STEP) {
        if (p->line_open)
            fputc('\n', stderr), p->line_open = 0;
        fprintf(stderr, "[%s] %s%s\n", ev->run_name, ev->kind == CKD_TRAIN_EVAL ? "eval: " : "", ev->text);
        return;
    }
    if (!p->tty && !ev->logged)
        return;
    char line[1024], eta[32];
    int k = snprintf(line, sizeof line, "[%s] step %lld/%lld epoch %lld loss %.4f", ev->run_name,
                     (long long)ev->step, (long long)ev->total_steps, (long long)ev->epoch, ev->loss);
    for (int i = 0; i < ev->n_terms && k < (int)sizeof line; i++)
        k += snprintf(line + k, sizeof line - (size_t)k, " %s %.4f", ev->term_names[i], ev->terms[i]);
    fmt_time(ev->eta_s, eta, sizeof eta);
    if (k < (int)sizeof line)
        snprintf(line + k, sizeof line - (size_t)k, " | %.0f img/s ETA %s", ev->images_per_s, eta);
    if (p->tty) {
        fprintf(stderr, "\r%s\033[K", line);
        p->line_open = 1;
        if (ev->step == ev->total_steps)
            fputc('\n', stderr), p->line_open = 0;
    } else {
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

int cmd_run(int argc, char **argv)
{
    run_args a;
    if (parse_args(argc, argv, &a))
        return CLI_USAGE;
    ckd_registry *reg = NULL;
    ckd_recipe *r = NULL;
    if (a.path ? !(r = cli_load_recipe("run", a.path, a.sets, a.n_sets, &reg)) : !(reg = cli_open_registry()))
        return CLI_USAGE;
    progress pr = {.tty = isatty(2)};
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.out_dir = a.out;
    o.runs_root = a.runs;
    o.sets = a.sets;
    o.n_sets = a.n_sets;
    o.stop_after = a.stop_after;
    o.dump_steps = a.dump_steps;
    o.dump_dir = a.dump_dir;
    o.progress = on_progress;
    o.user = &pr;
    char dir[4096];
    ckd_error err;
    int rc = CLI_OK;
    if (a.dry_run) {
        if (r) {
            ckd_train_run_dir(r, a.runs, dir, sizeof dir);
            printf("recipe:   %s\nhash:     %s\nrun dir:  %s (not created: --dry-run)\n", a.path,
                   ckd_recipe_hash(r), a.out ? a.out : a.resume ? a.resume : dir);
        }
    } else if (a.resume) {
        if (ckd_train_resume(reg, r, a.resume, &o, &err)) {
            fprintf(stderr, "clipkd run: %s\n", err.msg);
            rc = CLI_FAIL;
        } else {
            printf("run dir:  %s\n", a.resume);
        }
    } else if (ckd_train_run(reg, r, &o, dir, sizeof dir, &err)) {
        fprintf(stderr, "clipkd run: %s\n", err.msg);
        rc = CLI_FAIL;
    } else {
        printf("run dir:  %s\nrecipe:   %s (hash %s)\n", dir, a.path, ckd_recipe_hash(r));
    }
    ckd_recipe_free(r);
    ckd_registry_free(reg);
    return rc;
}

/* ---- quickstart ----------------------------------------------------------------- */

/* One row of the table from a run's results.json. */
static void print_row(const char *label, const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/results.json", dir);
    json_error_t je;
    json_t *res = json_load_file(path, 0, &je);
    const json_t *ev = json_object_get(res, "eval");
    double zs = json_number_value(json_object_get(json_object_get(ev, "zero_shot"), "top1"));
    const json_t *rt = json_object_get(ev, "retrieval");
    printf("%-10s %10lld %12.2f %12.2f %12.2f\n", label,
           (long long)json_integer_value(json_object_get(res, "parameters")), 100 * zs,
           100 * json_number_value(json_object_get(rt, "i2t_r1")),
           100 * json_number_value(json_object_get(rt, "t2i_r1")));
    json_decref(res);
}

int cmd_quickstart(int argc, char **argv)
{
    const char *rdir = CKD_DATA_DIR "/recipes/quickstart", *runs = "runs";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = argv[++i];
        else if (argv[i][0] != '-')
            rdir = argv[i];
        else
            return fprintf(stderr, "clipkd quickstart: unexpected argument '%s'\n", argv[i]), CLI_USAGE;
    }
    const char *names[2] = {"baseline", "distilled"};
    char dirs[3][4096], path[4200];
    progress pr = {.tty = isatty(2)};
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.runs_root = runs;
    o.progress = on_progress;
    o.user = &pr;
    int rc = CLI_OK;
    /* The distilled student first: it trains the teacher its recipe names. */
    for (int k = 1; k >= 0 && rc == CLI_OK; k--) {
        snprintf(path, sizeof path, "%s/%s.json", rdir, names[k]);
        ckd_registry *reg;
        ckd_recipe *r = cli_load_recipe("quickstart", path, NULL, 0, &reg);
        ckd_error err;
        if (!r) {
            rc = CLI_USAGE;
            break;
        }
        if (k == 1) {
            char tpath[4096];
            ckd_recipe *tr = NULL;
            ckd_registry *treg = NULL;
            if (ckd_recipe_resolve_path(r, "teacher.recipe", tpath, sizeof tpath, &err))
                fprintf(stderr, "clipkd quickstart: %s\n", err.msg), rc = CLI_USAGE;
            else if (!(tr = cli_load_recipe("quickstart", tpath, NULL, 0, &treg)))
                rc = CLI_USAGE;
            else
                ckd_train_run_dir(tr, runs, dirs[0], sizeof dirs[0]);
            ckd_recipe_free(tr);
            ckd_registry_free(treg);
        }
        if (rc == CLI_OK && ckd_train_run(reg, r, &o, dirs[k + 1], sizeof dirs[k + 1], &err)) {
            fprintf(stderr, "clipkd quickstart: %s\n", err.msg);
            rc = CLI_FAIL;
        }
        ckd_recipe_free(r);
        ckd_registry_free(reg);
    }
    if (rc == CLI_OK) {
        printf("\n%-10s %10s %12s %12s %12s\n", "model", "parameters", "zero-shot@1", "img->txt R@1",
               "txt->img R@1");
        print_row("teacher", dirs[0]);
        print_row("baseline", dirs[1]);
        print_row("distilled", dirs[2]);
        printf("(percent, on the evaluation data of the recipes; runs in %s/)\n", runs);
    }
    return rc;
}
