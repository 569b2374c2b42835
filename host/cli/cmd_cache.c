/* clipkd cache ls | verify | gc: look after the cache (artifacts and teacher embeddings). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "clipkd/fetch.h"

void cmd_cache_help(FILE *out)
{
    fprintf(out,
            "Usage: clipkd cache ls\n"
            "       clipkd cache verify [--remove-bad]\n"
            "       clipkd cache gc [--older-than DAYS] [--dry-run]\n"
            "The cache, in $CLIPKD_CACHE (default $XDG_CACHE_HOME/clipkd, else ~/.cache/clipkd),\n"
            "holds every dataset file and weight file a recipe fetched (artifacts, keyed by\n"
            "SHA-256, in sha256/) and the teacher embeddings runs computed (teacher-embeddings/,\n"
            "keyed by the SHA-256 of the teacher and the training data).\n"
            "  ls      one line per entry: sha256 or key prefix, size, last use, and the name\n"
            "          (artifacts) or the teacher and the data (teacher embeddings)\n"
            "  verify  re-hash every artifact; check every teacher embedding entry's size\n"
            "          against its header, its key against its name and its tensors against\n"
            "          its checksum; --remove-bad deletes the entries that fail\n"
            "  gc      remove interrupted downloads and embedding writes, stale locks and,\n"
            "          with --older-than, entries of either kind not used for that many days\n"
            "          (teacher embeddings: not read by a run); --dry-run only lists them.\n"
            "          gc does not read contents: verify --remove-bad removes damaged entries\n");
}

static void human(int64_t b, char *buf, size_t cap)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    snprintf(buf, cap, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

typedef struct tally {
    int64_t n, bytes, bad, embeddings;
} tally;

static int list_one(void *user, const ckd_cache_entry *e)
{
    tally *t = user;
    char size[32], when[32] = "-";
    human(e->size, size, sizeof size);
    if (e->last_used > 0) {
        time_t tt = (time_t)e->last_used;
        strftime(when, sizeof when, "%Y-%m-%d %H:%M", localtime(&tt));
    }
    printf("%.12s  %10s  %s  %s\n", e->sha256, size, when, e->name ? e->name : "");
    t->n++;
    t->embeddings += e->kind == CKD_CACHE_TEACHER_EMBEDDINGS;
    t->bytes += e->size;
    return 0;
}

static int verify_one(void *user, const ckd_cache_entry *e, int ok, const char *problem, int removed)
{
    tally *t = user;
    t->n++;
    if (!ok) {
        /* An artifact's name says what it is; an embedding entry's
         * description does not say which file to look at. */
        const char *what = e->name && e->kind == CKD_CACHE_ARTIFACT ? e->name : e->path;
        t->bad++;
        printf("BAD  %.12s  %s: %s%s\n", e->sha256, what, problem ? problem : "mismatch",
               removed ? " (removed)" : "");
    } else {
        printf("ok   %.12s  %s\n", e->sha256, e->name ? e->name : "");
    }
    return 0;
}

static int gc_one(void *user, const char *path, int64_t bytes, const char *reason)
{
    tally *t = user;
    char size[32];
    human(bytes, size, sizeof size);
    printf("%s  %10s  %s\n", path, size, reason);
    t->n++;
    return 0;
}

int cmd_cache(int argc, char **argv)
{
    if (argc < 2) {
        cmd_cache_help(stderr);
        return CLI_USAGE;
    }
    ckd_error err;
    char dir[4096];
    if (ckd_cache_dir(dir, sizeof dir, &err)) {
        fprintf(stderr, "clipkd cache: %s\n", err.msg);
        return CLI_USAGE;
    }
    const char *sub = argv[1];
    tally t = {0};
    if (!strcmp(sub, "ls") && argc == 2) {
        if (ckd_cache_list(dir, list_one, &t, &err)) {
            fprintf(stderr, "clipkd cache ls: %s\n", err.msg);
            return CLI_USAGE;
        }
        char size[32];
        human(t.bytes, size, sizeof size);
        printf("%lld entries (%lld artifacts, %lld teacher embeddings), %s in %s\n", (long long)t.n,
               (long long)(t.n - t.embeddings), (long long)t.embeddings, size, dir);
        return CLI_OK;
    }
    if (!strcmp(sub, "verify") && (argc == 2 || (argc == 3 && !strcmp(argv[2], "--remove-bad")))) {
        size_t n_bad = 0;
        if (ckd_cache_verify(dir, argc == 3, verify_one, &t, &n_bad, &err)) {
            fprintf(stderr, "clipkd cache verify: %s\n", err.msg);
            return CLI_USAGE;
        }
        printf("%lld entries checked, %zu bad\n", (long long)t.n, n_bad);
        return n_bad ? CLI_FAIL : CLI_OK;
    }
    if (!strcmp(sub, "gc")) {
        ckd_cache_gc_opts o = {0};
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--dry-run")) {
                o.dry_run = 1;
            } else if (!strcmp(argv[i], "--older-than") && i + 1 < argc) {
                char *end;
                o.max_age_days = strtod(argv[++i], &end);
                if (*end || o.max_age_days <= 0) {
                    fprintf(stderr, "clipkd cache gc: --older-than: '%s' is not a positive number of days\n",
                            argv[i]);
                    return CLI_USAGE;
                }
            } else {
                fprintf(stderr, "clipkd cache gc: unexpected argument '%s'\n", argv[i]);
                return CLI_USAGE;
            }
        }
        int64_t freed = 0;
        if (ckd_cache_gc(dir, &o, gc_one, &t, &freed, &err)) {
            fprintf(stderr, "clipkd cache gc: %s\n", err.msg);
            return CLI_USAGE;
        }
        char size[32];
        human(freed, size, sizeof size);
        printf("%s%lld files, %s%s\n", o.dry_run ? "would remove " : "removed ", (long long)t.n, size,
               o.dry_run ? " (dry run)" : "");
        return CLI_OK;
    }
    fprintf(stderr, "clipkd cache: unknown subcommand or arguments '%s' (ls, verify, gc)\n", sub);
    return CLI_USAGE;
}
