/* The replay driver: runs a fuzz target on files without libFuzzer, so that
 * the corpus and every regression input replay under gcc in make check (as
 * jansson's standalone fuzz driver does).
 *
 *   replay --list
 *   replay [--timeout S] [--max-rss MB] [--no-fork] TARGET PATH...
 *   replay            (make check: every target on its corpus and regressions)
 *
 * A PATH is a file or a folder of files (not recursive; sorted by name).
 * Each input runs in a child process, so one crash does not hide the next,
 * and the driver reports what a fuzzer would: a crash (signal or sanitizer
 * exit), a hang (over S seconds, default 10) or a peak RSS over MB (default
 * 256: the project's budget for one input). It ends with a summary line and
 * exits 1 when any input failed. With no arguments (make check sets
 * CKD_TEST_SRCDIR and CKD_TEST_BUILDDIR) it replays, for every target,
 * tests/fuzz/corpus/TARGET and tests/fuzz/regressions/TARGET. */
#define _DEFAULT_SOURCE
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TARGETS 64

static struct {
    const char *name;
    fuzz_fn fn;
} targets[MAX_TARGETS];
static int n_targets;

void fuzz_register(const char *name, fuzz_fn fn)
{
    if (n_targets < MAX_TARGETS)
        targets[n_targets].name = name, targets[n_targets++].fn = fn;
}

static fuzz_fn find(const char *name)
{
    for (int i = 0; i < n_targets; i++)
        if (!strcmp(targets[i].name, name))
            return targets[i].fn;
    return NULL;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(targets[*(const int *)a].name, targets[*(const int *)b].name);
}

typedef struct replay_opts {
    double timeout;
    long max_rss_kb;
    int fork;
} replay_opts;

static int usage(FILE *f);

typedef struct tally {
    long inputs, failed, peak_kb;
    double slowest;
    char slowest_file[4096];
} tally;

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap)
            break;
        unsigned char *grown = realloc(buf, cap *= 2);
        if (!grown)
            free(buf);
        buf = grown;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return NULL;
    }
    *n = len;
    return buf;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int run_in_child(fuzz_fn fn, const unsigned char *buf, size_t n, const replay_opts *o, int *status,
                        struct rusage *ru)
{
    fflush(stdout); /* or the child's exit would print the parent's buffer again */
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        struct itimerval it = {{0, 0}, {(time_t)o->timeout, (suseconds_t)((o->timeout - (time_t)o->timeout) * 1e6)}};
        signal(SIGALRM, SIG_DFL);
        setitimer(ITIMER_REAL, &it, NULL);
        fn(buf, n);
        exit(0); /* runs the harness's atexit clean-up */
    }
    while (wait4(pid, status, 0, ru) < 0)
        if (errno != EINTR)
            return -1;
    return 0;
}

static void replay_one(fuzz_fn fn, const char *target, const char *path, const replay_opts *o, tally *t)
{
    size_t n = 0;
    unsigned char *buf = slurp(path, &n);
    if (!buf) {
        fprintf(stderr, "replay: %s: cannot read %s: %s\n", target, path, strerror(errno));
        t->failed++;
        return;
    }
    t->inputs++;
    double t0 = now();
    if (!o->fork) {
        fn(buf, n);
        free(buf);
        return;
    }
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    int rc = run_in_child(fn, buf, n, o, &status, &ru);
    double dt = now() - t0;
    free(buf);
    if (rc) {
        fprintf(stderr, "replay: %s: %s: cannot run a child process: %s\n", target, path, strerror(errno));
        t->failed++;
        return;
    }
    if (ru.ru_maxrss > t->peak_kb)
        t->peak_kb = ru.ru_maxrss;
    if (dt > t->slowest) {
        t->slowest = dt;
        snprintf(t->slowest_file, sizeof t->slowest_file, "%s", path);
    }
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        fprintf(stderr, "replay: %s: %s: HANG: still running after %.1f s\n", target, path, o->timeout);
    else if (WIFSIGNALED(status))
        fprintf(stderr, "replay: %s: %s: CRASH: signal %d (%s)\n", target, path, WTERMSIG(status),
                strsignal(WTERMSIG(status)));
    else if (WEXITSTATUS(status) != 0)
        fprintf(stderr, "replay: %s: %s: CRASH: exit status %d (a sanitizer's report is above)\n", target, path,
                WEXITSTATUS(status));
    else if (o->max_rss_kb > 0 && ru.ru_maxrss > o->max_rss_kb)
        fprintf(stderr, "replay: %s: %s: MEMORY: peak RSS %ld MB, over the budget of %ld MB\n", target, path,
                ru.ru_maxrss / 1024, o->max_rss_kb / 1024);
    else
        return;
    t->failed++;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void replay_path(fuzz_fn fn, const char *target, const char *path, const replay_opts *o, tally *t)
{
    struct stat st;
    if (stat(path, &st) || !S_ISDIR(st.st_mode)) {
        replay_one(fn, target, path, o, t);
        return;
    }
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "replay: %s: cannot open the folder %s: %s\n", target, path, strerror(errno));
        t->failed++;
        return;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            char **grown = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *names);
            if (!grown)
                break;
            names = grown;
        }
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        if (!(names[n] = malloc(len)))
            break;
        snprintf(names[n++], len, "%s/%s", path, e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        if (!stat(names[i], &st) && S_ISREG(st.st_mode))
            replay_one(fn, target, names[i], o, t);
        free(names[i]);
    }
    free(names);
}

/* make check: every target over its corpus and its regressions. */
static int replay_all(const replay_opts *o)
{
    const char *src = getenv("CKD_TEST_SRCDIR"), *build = getenv("CKD_TEST_BUILDDIR");
    if (!src || !build)
        return usage(stderr);
    /* The harnesses read the shipped vocabulary and this build's plugins. */
    char buf[8192];
    snprintf(buf, sizeof buf, "%s/models/clip", src);
    setenv("CLIPKD_DATA_DIR", buf, 0);
    snprintf(buf, sizeof buf, "%s/models/.libs:%s/losses/.libs", build, build);
    setenv("CLIPKD_PLUGIN_PATH", buf, 0);
    int order[MAX_TARGETS], failed = 0;
    for (int k = 0; k < n_targets; k++)
        order[k] = k;
    qsort(order, (size_t)n_targets, sizeof *order, by_name);
    for (int k = 0; k < n_targets; k++) {
        const char *name = targets[order[k]].name;
        tally t = {0};
        for (int r = 0; r < 2; r++) {
            struct stat st;
            snprintf(buf, sizeof buf, "%s/tests/fuzz/%s/%s", src, r ? "regressions" : "corpus", name);
            if (!stat(buf, &st))
                replay_path(targets[order[k]].fn, name, buf, o, &t);
            else if (!r) {
                fprintf(stderr, "replay: %s: no seed corpus in %s\n", name, buf);
                t.failed++;
            }
        }
        printf("replay: %s: %ld inputs, %ld failed, peak RSS %ld MB, slowest %.2f s%s%s\n", name, t.inputs,
               t.failed, t.peak_kb / 1024, t.slowest, t.slowest_file[0] ? " " : "", t.slowest_file);
        failed += t.failed > 0;
    }
    printf("replay: %d targets, %d failed\n", n_targets, failed);
    return failed ? 1 : 0;
}

static int usage(FILE *f)
{
    fprintf(f, "usage: replay --list\n"
               "       replay [--timeout S] [--max-rss MB] [--no-fork] TARGET PATH...\n"
               "Runs a fuzz target on files and folders of files, each in a child process;\n"
               "reports crashes, hangs (default 10 s) and peak RSS over the budget (default 256 MB).\n");
    return f == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
    replay_opts o = {10.0, 256L * 1024, 1};
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--list")) {
            int order[MAX_TARGETS];
            for (int k = 0; k < n_targets; k++)
                order[k] = k;
            qsort(order, (size_t)n_targets, sizeof *order, by_name);
            for (int k = 0; k < n_targets; k++)
                printf("%s\n", targets[order[k]].name);
            return 0;
        } else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
            o.timeout = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--max-rss") && i + 1 < argc) {
            o.max_rss_kb = atol(argv[++i]) * 1024;
        } else if (!strcmp(argv[i], "--no-fork")) {
            o.fork = 0;
        } else if (!strcmp(argv[i], "--help")) {
            return usage(stdout);
        } else {
            return usage(stderr);
        }
    }
    if (argc == 1)
        return replay_all(&o);
    if (argc - i < 2 || o.timeout <= 0)
        return usage(stderr);
    const char *target = argv[i++];
    fuzz_fn fn = find(target);
    if (!fn) {
        fprintf(stderr, "replay: no fuzz target \"%s\" (replay --list names them)\n", target);
        return 2;
    }
    tally t = {0};
    for (; i < argc; i++)
        replay_path(fn, target, argv[i], &o, &t);
    printf("replay: %s: %ld inputs, %ld failed, peak RSS %ld MB, slowest %.2f s%s%s\n", target, t.inputs, t.failed,
           t.peak_kb / 1024, t.slowest, t.slowest_file[0] ? " " : "", t.slowest_file);
    return t.failed ? 1 : 0;
}
