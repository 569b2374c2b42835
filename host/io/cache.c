/* The artifact cache on disk: where it is, how entries are named and locked,
 * and the maintenance walks behind `clipkd cache ls|verify|gc`.
 *
 * Layout (see clipkd/fetch.h): <cache>/sha256/<first 2 hex>/<64 hex>[.json|
 * .part|.lock|.json.tmp], and the trainer's teacher embedding entries in
 * <cache>/teacher-embeddings (cache_embeddings.c says how those are named and
 * checked). Files with other names are never touched, so a stray file in the
 * cache cannot be deleted by gc by accident. */
#include "config.h"

/* flock, pwrite, strndup, utimensat, O_CLOEXEC even under -std=c11. */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include "cache_internal.h"
#include "core/json_oom.h"

/* ---- where --------------------------------------------------------------- */

static int put_path(char *out, size_t cap, ckd_error *err, const char *what, const char *a,
                    const char *b)
{
    int n = snprintf(out, cap, "%s%s", a, b);
    if (n < 0 || (size_t)n >= cap)
        return ckd_errorf(err, "%s: path \"%s%s\" is longer than %zu bytes", what, a, b,
                          cap ? cap - 1 : 0);
    return 0;
}

int ckd_cache_dir(char *out, size_t cap, ckd_error *err)
{
    const char *v = getenv("CLIPKD_CACHE");
    if (v && *v)
        return put_path(out, cap, err, "cache directory ($CLIPKD_CACHE)", v, "");
    /* The XDG base-directory spec says relative values are to be ignored. */
    v = getenv("XDG_CACHE_HOME");
    if (v && v[0] == '/')
        return put_path(out, cap, err, "cache directory ($XDG_CACHE_HOME)", v, "/clipkd");
    v = getenv("HOME");
    if (v && *v)
        return put_path(out, cap, err, "cache directory ($HOME)", v, "/.cache/clipkd");
    return ckd_errorf(err, "cache directory: none of $CLIPKD_CACHE, $XDG_CACHE_HOME or $HOME "
                           "is set; set CLIPKD_CACHE to a writable directory");
}

int ckd_cache_entry_path(const char *cache_dir, const char *sha256, char *out, size_t cap,
                         ckd_error *err)
{
    char dir[PATH_MAX], hex[65];
    if (ckd_sha256_lower(sha256, hex) < 0)
        return ckd_errorf(err, "cache entry: \"%.100s\" is not a SHA-256 (expected 64 hex "
                               "digits)", sha256 ? sha256 : "(null)");
    if (!cache_dir) {
        if (ckd_cache_dir(dir, sizeof dir, err) < 0)
            return -1;
        cache_dir = dir;
    }
    int n = snprintf(out, cap, "%s/sha256/%.2s/%s", cache_dir, hex, hex);
    if (n < 0 || (size_t)n >= cap)
        return ckd_errorf(err, "cache entry: path under \"%s\" is longer than %zu bytes",
                          cache_dir, cap ? cap - 1 : 0);
    return 0;
}

/* ---- locking --------------------------------------------------------------- */

int ckd_cache_lock(const char *entry_path, int wait, int *fd_out, ckd_error *err)
{
    char lp[PATH_MAX];
    if (put_path(lp, sizeof lp, err, "cache lock", entry_path, ".lock") < 0)
        return -1;
    /* flock (not fcntl) so that two threads of one process exclude each other
     * too. The retry covers a holder unlinking the file between our open and
     * our flock: we then hold a lock on a dead inode and must start again. */
    for (int tries = 0; tries < 1000; tries++) {
        int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0)
            return ckd_errorf(err, "%s: cannot create lock file: %s", lp, strerror(errno));
        int r;
        do
            r = flock(fd, wait ? LOCK_EX : LOCK_EX | LOCK_NB);
        while (r < 0 && errno == EINTR);
        if (r < 0) {
            int e = errno;
            close(fd);
            if (!wait && e == EWOULDBLOCK)
                return 1;
            return ckd_errorf(err, "%s: cannot lock: %s", lp, strerror(e));
        }
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(lp, &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino) {
            *fd_out = fd;
            return 0;
        }
        close(fd);
    }
    return ckd_errorf(err, "%s: lock file keeps being replaced by other processes", lp);
}

void ckd_cache_unlock(const char *entry_path, int fd)
{
    char lp[PATH_MAX];
    if (fd < 0)
        return;
    /* Unlink while still holding the lock: see ckd_cache_lock's retry. */
    if (put_path(lp, sizeof lp, NULL, "", entry_path, ".lock") == 0)
        unlink(lp);
    close(fd);
}

/* 1 if another process holds the entry's lock; never creates a lock file
 * (used by gc's dry run, which must not change anything). */
static int entry_busy(const char *entry_path)
{
    char lp[PATH_MAX];
    if (put_path(lp, sizeof lp, NULL, "", entry_path, ".lock") < 0)
        return 1;
    int fd = open(lp, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int busy = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    close(fd);
    return busy;
}

/* ---- walking the cache ----------------------------------------------------- */

struct names {
    char **v;
    size_t n, cap;
};

static void names_free(struct names *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in dir ("." and ".." left out). A missing dir is empty. */
static int read_names(const char *dir, struct names *s, ckd_error *err)
{
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        return ckd_errorf(err, "%s: cannot read directory: %s", dir, strerror(errno));
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (s->n == s->cap) {
            size_t nc = s->cap ? 2 * s->cap : 64;
            char **nv = realloc(s->v, nc * sizeof *nv);
            if (!nv)
                goto oom;
            s->v = nv;
            s->cap = nc;
        }
        if (!(s->v[s->n] = strdup(de->d_name)))
            goto oom;
        s->n++;
    }
    closedir(d);
    if (s->n)
        qsort(s->v, s->n, sizeof *s->v, cmp_str);
    return 0;
oom:
    closedir(d);
    names_free(s);
    return ckd_errorf(err, "%s: out of memory listing the directory", dir);
}

int ckdi_is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

static enum ckdi_kind classify_artifact(const char *name)
{
    size_t n = strlen(name);
    if (n < 64 || !ckdi_is_lower_hex(name, 64))
        return CKDI_OTHER;
    const char *suf = name + 64;
    if (!*suf)
        return CKDI_DATA;
    if (!strcmp(suf, ".json"))
        return CKDI_SIDECAR;
    if (!strcmp(suf, ".lock"))
        return CKDI_LOCK;
    if (!strcmp(suf, ".part") || !strcmp(suf, ".json.tmp"))
        return CKDI_PARTIAL;
    return CKDI_OTHER;
}

/* An artifact's name, size and download time come from its sidecar, whose
 * mtime is its last use (ckd_fetch touches it on each hit). */
static void describe_artifact(ckdi_loaded *l, const struct stat *st)
{
    struct stat sj;
    char sc[PATH_MAX + 8];
    (void)st;
    snprintf(sc, sizeof sc, "%s.json", l->path);
    if (stat(sc, &sj) != 0)
        return;
    l->e.last_used = (int64_t)sj.st_mtime;
    json_t *m = ckdi_json_load_file(sc, 0, NULL, NULL);
    if (!json_is_object(m)) {
        json_decref(m);
        return;
    }
    json_t *v;
    if (json_is_string(v = json_object_get(m, "name")))
        l->e.name = json_string_value(v);
    if (json_is_integer(v = json_object_get(m, "size")))
        l->e.expected_size = (int64_t)json_integer_value(v);
    if (json_is_integer(v = json_object_get(m, "fetched_unix")))
        l->e.fetched = (int64_t)json_integer_value(v);
    l->e.meta = l->meta = m;
}

/* An artifact is sound when it hashes to its name and has its sidecar's size. */
static int check_artifact(const ckd_cache_entry *e, char *problem, size_t cap)
{
    char got[65];
    ckd_error herr;
    int64_t n = 0;
    if (ckd_sha256_file(e->path, got, &n, &herr) < 0) {
        if (access(e->path, F_OK) < 0)
            return -1;
        snprintf(problem, cap, "%s", herr.msg);
        return 1;
    }
    if (strcmp(got, e->sha256) != 0) {
        snprintf(problem, cap, "content hashes to sha256 %s", got);
        return 1;
    }
    if (e->expected_size >= 0 && n != e->expected_size) {
        snprintf(problem, cap, "%lld bytes, but its sidecar says %lld", (long long)n,
                 (long long)e->expected_size);
        return 1;
    }
    return 0;
}

static const ckdi_layout artifact_layout = {CKD_CACHE_ARTIFACT, "", classify_artifact,
                                            describe_artifact, check_artifact};

/* Fills l from the data file of entry hex in dir (per layout L). Returns -1
 * if the data file is gone. Release l->meta afterwards. */
static int load_entry(const ckdi_layout *L, const char *dir, const char *hex, ckdi_loaded *l)
{
    struct stat st;
    memset(&l->e, 0, sizeof l->e);
    l->meta = NULL;
    l->desc[0] = '\0';
    if (snprintf(l->path, sizeof l->path, "%s/%.64s%s", dir, hex, L->data_suffix) >=
            (int)sizeof l->path ||
        stat(l->path, &st) < 0 || !S_ISREG(st.st_mode))
        return -1;
    memcpy(l->e.sha256, hex, 64);
    l->e.sha256[64] = '\0';
    l->e.kind = L->kind;
    l->e.path = l->path;
    l->e.size = (int64_t)st.st_size;
    l->e.expected_size = -1;
    l->e.fetched = -1;
    l->e.last_used = (int64_t)st.st_mtime;
    L->describe(l, &st);
    return 0;
}

typedef int (*dir_fn)(void *ctx, const ckdi_layout *L, const char *dir, const struct names *names,
                      ckd_error *err);

/* Calls fn with the names in one directory of entries. */
static int walk_dir(const char *dir, const ckdi_layout *L, dir_fn fn, void *ctx, ckd_error *err)
{
    struct names files = {0};
    int rc = read_names(dir, &files, err);
    if (rc == 0)
        rc = fn(ctx, L, dir, &files, err);
    names_free(&files);
    return rc;
}

/* Calls fn for every <cache>/sha256/<xx> directory, in order, then for
 * <cache>/teacher-embeddings. fn returns < 0 on error, > 0 to stop. */
static int walk(const char *cache_dir, dir_fn fn, void *ctx, ckd_error *err)
{
    char dir[PATH_MAX], top[PATH_MAX], shard[PATH_MAX];
    if (!cache_dir) {
        if (ckd_cache_dir(dir, sizeof dir, err) < 0)
            return -1;
        cache_dir = dir;
    }
    if (put_path(top, sizeof top, err, "cache", cache_dir, "/sha256") < 0)
        return -1;
    struct names shards = {0};
    if (read_names(top, &shards, err) < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < shards.n && rc == 0; i++) {
        const char *s = shards.v[i];
        if (strlen(s) != 2 || !ckdi_is_lower_hex(s, 2))
            continue;
        if (snprintf(shard, sizeof shard, "%s/%s", top, s) >= (int)sizeof shard)
            continue;
        rc = walk_dir(shard, &artifact_layout, fn, ctx, err);
    }
    names_free(&shards);
    if (rc == 0 && put_path(top, sizeof top, err, "cache", cache_dir, "/" CKDI_EMBEDDINGS_DIR) < 0)
        return -1;
    if (rc == 0)
        rc = walk_dir(top, &ckdi_embeddings_layout, fn, ctx, err);
    return rc < 0 ? -1 : 0;
}

/* ---- ls ------------------------------------------------------------------- */

struct list_ctx {
    ckd_cache_list_fn fn;
    void *user;
};

static int list_dir(void *vctx, const ckdi_layout *L, const char *dir, const struct names *names,
                    ckd_error *err)
{
    struct list_ctx *c = vctx;
    ckdi_loaded *l = malloc(sizeof *l);
    if (!l)
        return ckd_errorf(err, "%s: out of memory", dir);
    int stop = 0;
    for (size_t i = 0; i < names->n && !stop; i++) {
        if (L->classify(names->v[i]) != CKDI_DATA)
            continue;
        if (load_entry(L, dir, names->v[i], l) < 0)
            continue; /* removed while we walked */
        stop = c->fn ? c->fn(c->user, &l->e) : 0;
        json_decref(l->meta);
    }
    free(l);
    return stop ? 1 : 0;
}

int ckd_cache_list(const char *cache_dir, ckd_cache_list_fn fn, void *user, ckd_error *err)
{
    struct list_ctx c = {fn, user};
    return walk(cache_dir, list_dir, &c, err);
}

/* ---- verify --------------------------------------------------------------- */

/* Removes an entry's data and sidecar under its lock. 0 done, 1 busy, -1 error. */
static int remove_entry(const char *path, int wait, ckd_error *err)
{
    int fd;
    int r = ckd_cache_lock(path, wait, &fd, err);
    if (r != 0)
        return r;
    char sc[PATH_MAX];
    int rc = 0;
    if (snprintf(sc, sizeof sc, "%s.json", path) >= (int)sizeof sc)
        sc[0] = '\0'; /* cannot happen: the entry path left room for it */
    if (unlink(path) < 0 && errno != ENOENT)
        rc = ckd_errorf(err, "%s: cannot remove: %s", path, strerror(errno));
    else if (unlink(sc) < 0 && errno != ENOENT)
        rc = ckd_errorf(err, "%s: cannot remove: %s", sc, strerror(errno));
    ckd_cache_unlock(path, fd);
    return rc;
}

struct verify_ctx {
    int remove_bad;
    ckd_cache_verify_fn fn;
    void *user;
    size_t n_bad;
    int failed;        /* removing a bad entry failed: the walk stops with err set */
    ckd_error *err;
};

static const ckdi_layout *layout_of(const ckd_cache_entry *e)
{
    return e->kind == CKD_CACHE_TEACHER_EMBEDDINGS ? &ckdi_embeddings_layout : &artifact_layout;
}

/* Checks one listed entry (a ckd_cache_list_fn). */
static int verify_entry(void *vctx, const ckd_cache_entry *e)
{
    struct verify_ctx *c = vctx;
    char problem[CKD_ERROR_MAX] = "";
    int removed = 0;
    int bad = layout_of(e)->check(e, problem, sizeof problem);
    if (bad < 0)
        return 0; /* removed while we walked */
    if (bad) {
        c->n_bad++;
        if (c->remove_bad) {
            int r = remove_entry(e->path, 1, c->err);
            if (r < 0) {
                c->failed = 1;
                return 1;
            }
            removed = r == 0;
        }
    }
    return c->fn ? c->fn(c->user, e, !bad, bad ? problem : NULL, removed) : 0;
}

int ckd_cache_verify(const char *cache_dir, int remove_bad, ckd_cache_verify_fn fn,
                     void *user, size_t *n_bad, ckd_error *err)
{
    struct verify_ctx c = {remove_bad, fn, user, 0, 0, err};
    int rc = ckd_cache_list(cache_dir, verify_entry, &c, err);
    if (n_bad)
        *n_bad = c.n_bad;
    return c.failed ? -1 : rc;
}

/* ---- gc ------------------------------------------------------------------- */

struct gc_ctx {
    const ckd_cache_gc_opts *o;
    ckd_cache_gc_fn fn;
    void *user;
    int64_t freed;
    time_t now;
};

static int64_t file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (int64_t)st.st_size : -1;
}

static int in_keep(const ckd_cache_gc_opts *o, const char *hex)
{
    for (size_t i = 0; o->keep && i < o->n_keep; i++)
        if (o->keep[i] && strncasecmp(o->keep[i], hex, 64) == 0 && strlen(o->keep[i]) == 64)
            return 1;
    return 0;
}

/* Reports and (unless dry run) unlinks one file; >0 if the callback said stop. */
static int gc_drop(struct gc_ctx *c, const char *p, int64_t bytes, const char *reason,
                   ckd_error *err)
{
    if (!c->o->dry_run && unlink(p) < 0) {
        if (errno == ENOENT)
            return 0;
        return ckd_errorf(err, "%s: cannot remove: %s", p, strerror(errno));
    }
    c->freed += bytes > 0 ? bytes : 0;
    return c->fn ? (c->fn(c->user, p, bytes, reason) != 0) : 0;
}

/* Why the entry of hex in dir goes (reason, 64 bytes), or NULL if it stays. */
static const char *gc_verdict(struct gc_ctx *c, const ckdi_layout *L, const char *dir,
                              const char *hex, char *reason)
{
    const ckd_cache_gc_opts *o = c->o;
    ckdi_loaded *l = malloc(sizeof *l);
    const char *why = NULL;
    if (!l || in_keep(o, hex) || load_entry(L, dir, hex, l) < 0) {
        free(l);
        return NULL;
    }
    if (o->keep_only) {
        why = "not in keep-list";
    } else if (o->max_age_days > 0 &&
               (double)(c->now - l->e.last_used) > o->max_age_days * 86400.0) {
        snprintf(reason, 64, "unused for %.0f days", (double)(c->now - l->e.last_used) / 86400.0);
        why = reason;
    }
    json_decref(l->meta);
    free(l);
    return why;
}

/* Handles everything in a directory that belongs to one entry (names[i..j)). */
static int gc_hash(struct gc_ctx *c, const ckdi_layout *L, const char *dir,
                   const struct names *names, size_t i, size_t j, ckd_error *err)
{
    const ckd_cache_gc_opts *o = c->o;
    char entry[PATH_MAX], p[PATH_MAX], reason[64];
    if (snprintf(entry, sizeof entry, "%s/%.64s%s", dir, names->v[i], L->data_suffix) >=
        (int)sizeof entry)
        return 0;

    int has_data = 0, has_sidecar = 0, has_partial = 0;
    for (size_t k = i; k < j; k++) {
        enum ckdi_kind kd = L->classify(names->v[k]);
        has_data |= kd == CKDI_DATA;
        has_sidecar |= kd == CKDI_SIDECAR;
        has_partial |= kd == CKDI_PARTIAL || kd == CKDI_LOCK;
    }
    const char *drop_entry = has_data ? gc_verdict(c, L, dir, names->v[i], reason) : NULL;
    int orphan = has_sidecar && !has_data;
    if (!drop_entry && !orphan && !has_partial)
        return 0;

    /* Everything below changes the entry, so it happens under its lock; an
     * entry being downloaded (or computed) right now is skipped, not waited
     * for. */
    int fd = -1;
    if (o->dry_run) {
        if (entry_busy(entry))
            return 0;
    } else {
        int r = ckd_cache_lock(entry, 0, &fd, err);
        if (r < 0)
            return -1;
        if (r > 0)
            return 0;
    }
    int rc = 0;
    for (size_t k = i; k < j && rc == 0; k++) {
        enum ckdi_kind kd = L->classify(names->v[k]);
        if (snprintf(p, sizeof p, "%s/%s", dir, names->v[k]) >= (int)sizeof p)
            continue;
        if (kd == CKDI_LOCK && !o->dry_run) {
            /* Our own lock file goes away in ckd_cache_unlock; report it here. */
            int64_t b = file_size(p);
            c->freed += b > 0 ? b : 0;
            rc = c->fn ? (c->fn(c->user, p, b, "stale partial") != 0) : 0;
        } else if (kd == CKDI_PARTIAL || kd == CKDI_LOCK) {
            rc = gc_drop(c, p, file_size(p), "stale partial", err);
        } else if (kd == CKDI_DATA && drop_entry) {
            int64_t sb = snprintf(p, sizeof p, "%s.json", entry) < (int)sizeof p ? file_size(p) : -1;
            int64_t b = file_size(entry);
            rc = gc_drop(c, entry, b + (sb > 0 ? sb : 0), drop_entry, err);
            if (rc == 0 && sb >= 0 && !o->dry_run && unlink(p) < 0 && errno != ENOENT)
                rc = ckd_errorf(err, "%s: cannot remove: %s", p, strerror(errno));
        } else if (kd == CKDI_SIDECAR && orphan && access(entry, F_OK) < 0) {
            rc = gc_drop(c, p, file_size(p), "orphan sidecar", err);
        }
    }
    if (fd >= 0)
        ckd_cache_unlock(entry, fd);
    return rc;
}

static int gc_dir(void *vctx, const ckdi_layout *L, const char *dir, const struct names *names,
                  ckd_error *err)
{
    struct gc_ctx *c = vctx;
    /* Names are sorted, so the files of one entry are adjacent. */
    size_t i = 0;
    while (i < names->n) {
        if (L->classify(names->v[i]) == CKDI_OTHER) {
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < names->n && strncmp(names->v[i], names->v[j], 64) == 0)
            j++;
        int rc = gc_hash(c, L, dir, names, i, j, err);
        if (rc)
            return rc;
        i = j;
    }
    return 0;
}

int ckd_cache_gc(const char *cache_dir, const ckd_cache_gc_opts *opts, ckd_cache_gc_fn fn,
                 void *user, int64_t *freed_bytes, ckd_error *err)
{
    ckd_cache_gc_opts none = {0};
    struct gc_ctx c = {opts ? opts : &none, fn, user, 0, time(NULL)};
    for (size_t i = 0; c.o->keep && i < c.o->n_keep; i++)
        if (!ckd_sha256_is_hex(c.o->keep[i]))
            return ckd_errorf(err, "cache gc: keep-list item %zu (\"%s\") is not a SHA-256 "
                                   "(expected 64 hex digits)",
                              i, c.o->keep[i] ? c.o->keep[i] : "(null)");
    int rc = walk(cache_dir, gc_dir, &c, err);
    if (freed_bytes)
        *freed_bytes = c.freed;
    return rc;
}
