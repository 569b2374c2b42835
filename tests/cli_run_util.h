/* Running the built clipkd program from a test: the environment that finds
 * the in-tree plugins and tokenizer, a child process per command with its
 * output in a log file, and its exit. Header-only. */
#ifndef CKD_CLI_RUN_UTIL_H
#define CKD_CLI_RUN_UTIL_H

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* CLIPKD_PLUGIN_PATH: the plugins as built; CLIPKD_DATA_DIR: the tokenizer
 * of the source tree. Returns the plugin path. */
static inline const char *cli_test_env(void)
{
    static char path[8192];
    const char *b = getenv("CKD_TEST_BUILDDIR"), *s = getenv("CKD_TEST_SRCDIR");
    char data[4096];
    snprintf(path, sizeof path, "%s/models/.libs:%s/losses/.libs", b ? b : ".", b ? b : ".");
    snprintf(data, sizeof data, "%s/models/clip", s ? s : ".");
    setenv("CLIPKD_DATA_DIR", data, 1);
    setenv("CLIPKD_PLUGIN_PATH", path, 1);
    return path;
}

/* Starts $CKD_TEST_BUILDDIR/clipkd with args (NULL-terminated, at most 14),
 * stdout and stderr in log_dir/log-<k>. */
static inline pid_t cli_spawn(const char *log_dir, const char *const *args)
{
    static int k;
    const char *b = getenv("CKD_TEST_BUILDDIR");
    char prog[4096], log[4200];
    snprintf(prog, sizeof prog, "%s/clipkd", b ? b : ".");
    snprintf(log, sizeof log, "%s/log-%d", log_dir, k++);
    const char *argv[16] = {prog};
    for (int i = 0; args[i] && i < 14; i++)
        argv[i + 1] = args[i];
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        if (!freopen(log, "w", stdout) || dup2(fileno(stdout), 2) < 0)
            _exit(126);
        execv(prog, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static inline int cli_wait(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        cr_assert_eq(errno, EINTR);
    return st;
}

/* Runs clipkd to its end; fails the test unless it exits 0. */
static inline void cli_run(const char *log_dir, const char *const *args)
{
    int st = cli_wait(cli_spawn(log_dir, args));
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "clipkd %s %s %s: status %d (see %s/log-*)", args[0],
              args[1] ? args[1] : "", args[1] && args[2] ? args[2] : "", st, log_dir);
}

#endif
