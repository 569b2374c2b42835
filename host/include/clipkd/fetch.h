/* clipkd/fetch.h — artifacts: downloads into a verified, content-addressed cache.
 *
 * An artifact is a file named by its SHA-256 and size, with one or more
 * mirrors:   { "urls": ["https://…", "file:///…"], "sha256": "<64 hex>",
 *              "size": N, "name": "optional label" }
 *
 * ckd_fetch() returns the path of the artifact in the cache, downloading it
 * first if needed. The cache lives in $CLIPKD_CACHE, else
 * $XDG_CACHE_HOME/clipkd, else ~/.cache/clipkd, laid out as
 *
 *   <cache>/sha256/ab/abcdef…          the data (read-only by convention)
 *   <cache>/sha256/ab/abcdef….json     sidecar: name, size, urls, source, fetched time
 *   <cache>/sha256/ab/abcdef….part     a download in progress (resumable)
 *   <cache>/sha256/ab/abcdef….lock     held (flock) while one process downloads
 *
 * A data file only ever appears by an atomic rename of a .part whose size and
 * SHA-256 were checked, so an entry present under its final name is complete.
 *
 * The trainer keeps teacher embeddings in the same cache (see
 * clipkd-recipe(5), teacher.mode "cache"):
 *
 *   <cache>/teacher-embeddings/<key>.safetensors           an entry
 *   <cache>/teacher-embeddings/<key>.safetensors.lock      held while it is computed
 *   <cache>/teacher-embeddings/<key>.safetensors.tmp.<pid> being written
 *
 * where <key> is the SHA-256 of the JSON in the entry's "key" metadata (the
 * teacher, its preprocessing and the training data); its "sha256" metadata
 * is the SHA-256 of the tensor bytes. `clipkd cache` lists, verifies and
 * cleans these entries with the artifacts (ckd_cache_list, _verify, _gc).
 *
 * The library prints nothing by itself: progress goes to the callback in
 * ckd_fetch_opts; ckd_fetch_progress_tty and ckd_fetch_progress_log are two
 * ready-made callbacks that write to the FILE * given as their user pointer.
 */
#ifndef CLIPKD_FETCH_H
#define CLIPKD_FETCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "clipkd/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- SHA-256 (OpenSSL libcrypto) ------------------------------------------ */

typedef struct ckd_sha256 ckd_sha256;

/* Streaming hash: new → update* → final (writes 64 lower-case hex digits and
 * a NUL) → free. final may be called once. */
ckd_sha256 *ckd_sha256_new(ckd_error *err);
int ckd_sha256_update(ckd_sha256 *h, const void *data, size_t n, ckd_error *err);
int ckd_sha256_final(ckd_sha256 *h, char hex[65], ckd_error *err);
void ckd_sha256_free(ckd_sha256 *h);

/* One-shot hashes of a buffer and of a whole file (size_out may be NULL). */
int ckd_sha256_buffer(const void *data, size_t n, char hex[65], ckd_error *err);
int ckd_sha256_file(const char *path, char hex[65], int64_t *size_out, ckd_error *err);

/* 1 if s is exactly 64 hex digits (either case), else 0. */
int ckd_sha256_is_hex(const char *s);

/* Copies such a hash to out in lower case (the form cache entries are named
 * by); returns -1, out untouched, if s is not 64 hex digits. */
int ckd_sha256_lower(const char *s, char out[65]);

/* ---- artifacts ------------------------------------------------------------- */

typedef struct ckd_artifact {
    const char **urls;   /* mirrors, tried in order: http://, https://, file:// */
    size_t n_urls;
    char sha256[65];     /* 64 hex digits (upper case is accepted) */
    int64_t size;        /* bytes; < 0 only in hand-built artifacts = not checked */
    const char *name;    /* label for progress, messages and `cache ls`; may be NULL */
} ckd_artifact;

/* Parses an artifact object. Required: "urls" (non-empty array of http://,
 * https:// or file:// strings), "sha256" (64 hex digits, stored lower-case),
 * "size" (integer >= 0). Optional: "name" (string; defaults to the last path
 * component of the first URL). Other keys are ignored so that recipes may
 * annotate artifacts. `where` names the object in messages (e.g.
 * "recipes/quickstart.json: $.data.train"). On success *out owns copies of
 * every string: release them with ckd_artifact_free(). On failure *out is
 * left empty (safe to free). */
int ckd_artifact_from_json(const json_t *obj, ckd_artifact *out, const char *where,
                           ckd_error *err);

/* Frees what ckd_artifact_from_json allocated and zeroes *a. Do not call it on
 * a hand-built artifact whose strings you own. */
void ckd_artifact_free(ckd_artifact *a);

/* ---- fetching -------------------------------------------------------------- */

/* Progress: now = bytes of the artifact present so far (a resumed download
 * starts above 0), total = artifact size (or -1 when unknown), rate_Bps =
 * average rate of the current transfer. Called at the start of a transfer,
 * then at most every progress_interval_s, and a last time with now == total
 * on success, or with now == -1 when the transfer attempt failed (so that a
 * renderer can end its line). */
typedef void (*ckd_fetch_progress_fn)(void *user, const char *name, int64_t now,
                                      int64_t total, double rate_Bps);

typedef struct ckd_fetch_opts {
    const char *cache_dir;      /* NULL: ckd_cache_dir() */
    int offline;                /* only the cache and file:// mirrors */
    int verify_cached;          /* re-hash a cached entry on every hit (default:
                                   size check only; entries were hashed when
                                   written and `cache verify` re-checks them) */
    int retries;                /* extra attempts per mirror on transient errors */
    double backoff_s;           /* delay before the first retry, doubled each time */
    double backoff_max_s;       /* cap on that delay */
    double connect_timeout_s;   /* <= 0: 30 s */
    long low_speed_limit_Bps;   /* abort when slower than this … (<= 0: 1 B/s) */
    long low_speed_time_s;      /* … for this long (<= 0: 60 s) */
    ckd_fetch_progress_fn progress;  /* NULL: silent */
    void *progress_user;
    double progress_interval_s; /* minimum time between progress calls */
} ckd_fetch_opts;

/* Defaults: retries 3, backoff 1 s doubling up to 30 s, connect timeout 30 s,
 * abort below 1 B/s for 60 s, progress every 0.2 s, no callback, online. */
void ckd_fetch_opts_init(ckd_fetch_opts *o);

/* Returns in path_out the cached path of the artifact, downloading it if it is
 * not cached. opts may be NULL (defaults). Mirrors are tried in order; each
 * gets 1 + retries attempts with exponential backoff on transient failures
 * (timeouts, dropped connections, HTTP 408/429/5xx); a permanent failure
 * (other HTTP >= 400, wrong size, wrong checksum) moves to the next mirror.
 * An interrupted download is kept as .part and resumed with an HTTP Range
 * request (from any mirror: the content is the same by hash). Redirects are
 * followed (at most 5, to http/https only). Two processes fetching the same
 * artifact serialise on its .lock: the second waits and then uses the first
 * one's result. On failure nothing is left under the final name and the
 * message lists every mirror's failure (a checksum mismatch shows the URL and
 * both hashes). A local write error (disk full) stops at once, removes the
 * .part and names it. */
int ckd_fetch(const ckd_fetch_opts *opts, const ckd_artifact *a, char *path_out,
              size_t cap, ckd_error *err);

/* Pinning, for files whose full SHA-256 is not published: downloads the
 * artifact's mirrors (a->sha256 and a->size are ignored), hashes what came,
 * checks it against sha256_prefix when one is published (open_clip's release
 * file names carry 8 hex digits of it; NULL or "" checks nothing), and puts it
 * in the cache under its hash like any download. sha256_out and *size_out
 * get what was pinned, path_out the cache entry. The caller records them
 * (clipkd fetch --pin writes RECIPE.lock.json) so that later fetches verify
 * against them. A prefix mismatch caches nothing. */
int ckd_fetch_pin(const ckd_fetch_opts *opts, const ckd_artifact *a, const char *sha256_prefix,
                  char sha256_out[65], int64_t *size_out, char *path_out, size_t cap, ckd_error *err);

/* Looks the artifact up in the cache without downloading: 1 and path_out set
 * when a complete entry is there (size checked; hash too if verify_cached),
 * 0 when it is not, -1 on error. Lets a caller list every missing artifact of
 * a recipe before going offline. */
int ckd_fetch_cached(const ckd_fetch_opts *opts, const ckd_artifact *a, char *path_out,
                     size_t cap, ckd_error *err);

/* Ready-made progress callbacks; user is a FILE * (NULL: stderr). The tty one
 * redraws one line ("\r…") with a bar, sizes, rate and ETA; the log one writes
 * a full line per call (choose a larger progress_interval_s for logs, e.g.
 * 10 s). */
void ckd_fetch_progress_tty(void *user, const char *name, int64_t now, int64_t total,
                            double rate_Bps);
void ckd_fetch_progress_log(void *user, const char *name, int64_t now, int64_t total,
                            double rate_Bps);

/* ---- the cache ------------------------------------------------------------- */

/* The cache directory ($CLIPKD_CACHE, $XDG_CACHE_HOME/clipkd when that is an
 * absolute path, ~/.cache/clipkd). It is not created here. */
int ckd_cache_dir(char *out, size_t cap, ckd_error *err);

/* Path of the data file for a hash: <cache_dir>/sha256/ab/abcd…; cache_dir
 * NULL means ckd_cache_dir(). Nothing is created. */
int ckd_cache_entry_path(const char *cache_dir, const char *sha256, char *out, size_t cap,
                         ckd_error *err);

/* The lock protocol, for anything that creates or removes an entry: takes an
 * exclusive flock on "<entry_path>.lock" (creating it). Returns 0 with *fd_out
 * set, 1 if wait == 0 and another process holds it, -1 on error. The lock
 * file is unlinked by ckd_cache_unlock while still held; lockers check that
 * the file they locked is still the one at the path, so this is race-free. */
int ckd_cache_lock(const char *entry_path, int wait, int *fd_out, ckd_error *err);
void ckd_cache_unlock(const char *entry_path, int fd);

typedef enum ckd_cache_kind {
    CKD_CACHE_ARTIFACT,            /* a downloaded file under sha256/ */
    CKD_CACHE_TEACHER_EMBEDDINGS   /* a teacher embedding entry */
} ckd_cache_kind;

typedef struct ckd_cache_entry {
    char sha256[65];         /* artifact: the content's hash; teacher
                                embeddings: the key */
    const char *path;        /* the data file */
    int64_t size;            /* bytes on disk */
    int64_t expected_size;   /* artifact: from the sidecar; teacher embeddings:
                                what the safetensors header describes; -1 if
                                unknown */
    const char *name;        /* artifact: from the sidecar; teacher embeddings:
                                a description of the teacher and the data from
                                the key; NULL if unknown */
    int64_t fetched;         /* unix time of the download (sidecar) or of the
                                computation (the entry's mtime); -1 if unknown */
    int64_t last_used;       /* unix time. Artifact: sidecar mtime (ckd_fetch
                                touches it on each hit), else the data file's
                                mtime. Teacher embeddings: the later of the
                                file's access time (a run that reuses it reads
                                it) and its mtime */
    const json_t *meta;      /* artifact: the whole sidecar; teacher
                                embeddings: the parsed key; or NULL */
    ckd_cache_kind kind;
} ckd_cache_entry;

/* Returns nonzero to stop the walk early. */
typedef int (*ckd_cache_list_fn)(void *user, const ckd_cache_entry *e);

/* Calls fn for every complete entry: the artifacts in hash order, then the
 * teacher embedding entries in key order. A missing cache directory is an
 * empty cache. */
int ckd_cache_list(const char *cache_dir, ckd_cache_list_fn fn, void *user, ckd_error *err);

/* ok = 1 if the entry is sound: an artifact hashes to its name and matches
 * its sidecar's size; a teacher embedding entry has the size its header
 * describes, reads as safetensors, its key metadata hashes to its name and
 * its tensors to its "sha256" metadata (when it has one). problem says what
 * is wrong otherwise (NULL when ok); removed = 1 if the bad entry was
 * deleted. Returns nonzero to stop. */
typedef int (*ckd_cache_verify_fn)(void *user, const ckd_cache_entry *e, int ok,
                                   const char *problem, int removed);

/* Re-checks every entry. With remove_bad, bad entries (and their sidecars)
 * are deleted under the entry's lock. *n_bad (may be NULL) gets the number of
 * bad entries. Verifying a teacher embedding entry does not count as using
 * it (its access time is put back). Returns 0 when the walk completed, -1 on
 * error. */
int ckd_cache_verify(const char *cache_dir, int remove_bad, ckd_cache_verify_fn fn,
                     void *user, size_t *n_bad, ckd_error *err);

/* Garbage collection, of artifacts and teacher embedding entries alike.
 * Always: .part, .lock and temporary files (teacher embeddings: .lock and
 * .tmp.<pid>) whose entry is not locked by a running download or
 * computation, and sidecars without data. Entries are removed when keep_only
 * is set and their hash (or key) is not in keep[], or when max_age_days > 0
 * and they were last used (see last_used) longer ago than that; an entry
 * listed in keep[] is never removed. Entries and partials that another
 * process has locked are skipped. Contents are not checked here: that is
 * ckd_cache_verify's remove_bad. */
typedef struct ckd_cache_gc_opts {
    const char *const *keep;    /* sha256 hex strings (either case) */
    size_t n_keep;
    int keep_only;              /* remove every entry not in keep[] */
    double max_age_days;        /* > 0: remove entries unused for this long */
    int dry_run;                /* report what would go, remove nothing */
} ckd_cache_gc_opts;

/* One call per removed file; reason is "stale partial", "orphan sidecar",
 * "not in keep-list" or "unused for N days". Returns nonzero to stop. */
typedef int (*ckd_cache_gc_fn)(void *user, const char *path, int64_t bytes,
                               const char *reason);

int ckd_cache_gc(const char *cache_dir, const ckd_cache_gc_opts *opts, ckd_cache_gc_fn fn,
                 void *user, int64_t *freed_bytes, ckd_error *err);

#ifdef __cplusplus
}
#endif
#endif
