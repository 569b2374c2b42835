/* cli.h — the clipkd program's subcommands (the only code that prints and exits). */
#ifndef CKD_CLI_H
#define CKD_CLI_H

#include <stdio.h>

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

#endif
