/* cli.h — the clipkd program's subcommands (the only code that prints and exits). */
#ifndef CKD_CLI_H
#define CKD_CLI_H

#include <stdio.h>

#include <jansson.h>

#include "clipkd/error.h"

/* Exit statuses: 0 success, 1 the work ran and failed (e.g. a gradient check
 * mismatch), 2 bad usage or bad input (recipes, files, plugins). */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

typedef struct cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
    void (*help)(FILE *out);
} cli_command;

/* True when argv holds --help or -h (every subcommand honours it). */
int cli_wants_help(int argc, char **argv);

int cmd_info(int argc, char **argv);
void cmd_info_help(FILE *out);
int cmd_selftest(int argc, char **argv);
void cmd_selftest_help(FILE *out);
int cmd_plugins(int argc, char **argv);
void cmd_plugins_help(FILE *out);
int cmd_gradcheck(int argc, char **argv);
void cmd_gradcheck_help(FILE *out);
int cmd_loss_eval(int argc, char **argv);
void cmd_loss_eval_help(FILE *out);
int cmd_model_eval(int argc, char **argv);
void cmd_model_eval_help(FILE *out);
int cmd_embed(int argc, char **argv);
void cmd_embed_help(FILE *out);
int cmd_cache(int argc, char **argv);
int cmd_fetch(int argc, char **argv);
void cmd_fetch_help(FILE *out);
int cmd_validate(int argc, char **argv);
void cmd_validate_help(FILE *out);
int cmd_run(int argc, char **argv);
void cmd_run_help(FILE *out);
int cmd_eval(int argc, char **argv);
void cmd_eval_help(FILE *out);
int cmd_quickstart(int argc, char **argv);
void cmd_quickstart_help(FILE *out);
void cmd_cache_help(FILE *out);
int cmd_table(int argc, char **argv);
void cmd_table_help(FILE *out);
int cmd_models(int argc, char **argv);
void cmd_models_help(FILE *out);
int cmd_convert(int argc, char **argv);
void cmd_convert_help(FILE *out);

/* The plugin registry from $CLIPKD_PLUGIN_PATH and the installed directory
 * (NULL after printing why); rejected plugin files reported on stderr. */
struct ckd_registry *cli_open_registry(void);
int cli_report_rejections(const struct ckd_registry *r);

/* Loads RECIPE with the --set overrides, checking plugin parameters against
 * the registry's schemas; NULL after printing why (prefixed "clipkd CMD:").
 * On success *reg_out holds the registry (free it after the recipe). */
struct ckd_recipe *cli_load_recipe(const char *cmd, const char *path, const char *const *sets, size_t n_sets,
                                   struct ckd_registry **reg_out);

/* The training progress callback of `run` and `quickstart`: a redrawn line
 * on a terminal (tty set), else one line per logged step; messages and
 * evaluations on lines of their own. */
typedef struct cli_progress {
    int tty, line_open;
} cli_progress;
struct ckd_train_event;
void cli_on_progress(void *user, const struct ckd_train_event *ev);

/* The recipe of a table's run from what its run.json records under
 * "table" (see cmd_table.c); NULL with err set. */
struct ckd_recipe *cli_table_recipe(const json_t *origin, struct ckd_registry *reg, ckd_error *err);

/* A duration as "4m05s" (or "1h02m" from an hour on). */
void cli_fmt_time(double seconds, char *buf, size_t cap);

/* Calls fn for every artifact object ({"urls", "sha256", ...}) below v, with
 * its JSON path ("teacher.weights"); path is v's own ("" for a recipe). */
void cli_for_each_artifact(const json_t *v, const char *path,
                           void (*fn)(void *user, const json_t *obj, const char *where), void *user);

#endif
