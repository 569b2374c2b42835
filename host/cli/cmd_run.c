/* clipkd run RECIPE: training (clipkd/train.h) with a progress line. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "clipkd/dist.h"
#include "clipkd/fetch.h"
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

void cli_fmt_time(double s, char *buf, size_t cap)
{
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else
        snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
}

void cli_on_progress(void *user, const ckd_train_event *ev)
{
    cli_progress *p = user;
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
    cli_fmt_time(ev->eta_s, eta, sizeof eta);
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

/* A run that `clipkd table` made records its table row in run.json: its
 * recipe is composed from the table again. NULL with err.msg empty for an
 * ordinary run (its recipe file and sets are in run.json). */
static ckd_recipe *table_run_recipe(const char *dir, ckd_registry *reg, ckd_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/run.json", dir);
    json_t *run = json_load_file(path, 0, NULL);
    const json_t *origin = json_object_get(run, "table");
    err->msg[0] = '\0';
    ckd_recipe *r = origin ? cli_table_recipe(origin, reg, err) : NULL;
    json_decref(run);
    return r;
}

typedef struct dry_artifacts {
    int n, missing, bad;
} dry_artifacts;

/* --dry-run: every artifact must be fetchable as written (an unpinned one
 * says how to pin it); whether it is cached already is only reported. */
static void dry_artifact(void *user, const json_t *obj, const char *where)
{
    dry_artifacts *d = user;
    ckd_artifact art;
    ckd_error e;
    char path[4096];
    d->n++;
    if (ckd_artifact_from_json(obj, &art, where, &e)) {
        fprintf(stderr, "clipkd run: %s\n", e.msg);
        d->bad++;
    } else if (ckd_fetch_cached(NULL, &art, path, sizeof path, &e) != 1) {
        d->missing++;
    }
    ckd_artifact_free(&art);
}

int cmd_run(int argc, char **argv)
{
    run_args a;
    if (parse_args(argc, argv, &a))
        return CLI_USAGE;
    ckd_registry *reg = NULL;
    ckd_recipe *r = NULL;
    int loaded = a.path ? (r = cli_load_recipe("run", a.path, a.sets, a.n_sets, &reg)) != NULL
                        : (reg = cli_open_registry()) != NULL;
    ckd_error err;
    /* under MPI: every rank loaded it, or none goes on (its message is above) */
    if (ckd_dist_agree(loaded ? 0 : ckd_errorf(&err, "could not load the recipe or plugins"), &err)) {
        if (loaded && ckd_dist_rank() == 0)
            fprintf(stderr, "clipkd run: %s\n", err.msg);
        ckd_recipe_free(r);
        ckd_registry_free(reg);
        return CLI_USAGE;
    }
    cli_progress pr = {.tty = isatty(2)};
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.out_dir = a.out;
    o.runs_root = a.runs;
    o.sets = a.sets;
    o.n_sets = a.n_sets;
    o.stop_after = a.stop_after;
    o.dump_steps = a.dump_steps;
    o.dump_dir = a.dump_dir;
    o.progress = cli_on_progress;
    o.user = &pr;
    char dir[4096];
    int rc = CLI_OK, speak = ckd_dist_rank() == 0; /* under MPI every rank has the same error */
    if (a.dry_run) {
        if (r) {
            ckd_train_run_dir(r, a.runs, dir, sizeof dir);
            printf("recipe:   %s\nhash:     %s\nrun dir:  %s (not created: --dry-run)\n", a.path,
                   ckd_recipe_hash(r), a.out ? a.out : a.resume ? a.resume : dir);
            dry_artifacts da = {0};
            cli_for_each_artifact(ckd_recipe_json(r), "", dry_artifact, &da);
            if (da.n)
                printf("artifacts: %d, %d not cached (`clipkd fetch RECIPE` fetches them)%s\n", da.n, da.missing,
                       da.bad ? ", some not fetchable as written" : "");
            rc = da.bad ? CLI_USAGE : CLI_OK;
        }
    } else if (a.resume) {
        if (!r && !(r = table_run_recipe(a.resume, reg, &err)) && err.msg[0]) {
            fprintf(stderr, "clipkd run: cannot resume %s: %s\n", a.resume, err.msg);
            rc = CLI_USAGE;
        } else if (ckd_train_resume(reg, r, a.resume, &o, &err)) {
            if (speak)
                fprintf(stderr, "clipkd run: %s\n", err.msg);
            rc = CLI_FAIL;
        } else {
            printf("run dir:  %s\n", a.resume);
        }
    } else if (ckd_train_run(reg, r, &o, dir, sizeof dir, &err)) {
        if (speak)
            fprintf(stderr, "clipkd run: %s\n", err.msg);
        rc = CLI_FAIL;
    } else {
        printf("run dir:  %s\nrecipe:   %s (hash %s)\n", dir, a.path, ckd_recipe_hash(r));
    }
    ckd_recipe_free(r);
    ckd_registry_free(reg);
    return rc;
}
