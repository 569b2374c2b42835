/* Artifact downloads with libcurl into the content-addressed cache.
 *
 * The invariant everything here protects: a file under its final cache name
 * is complete and has the right SHA-256. Downloads go to <entry>.part, are
 * checked for size and hash, fsync'd, and only then renamed into place, all
 * while holding <entry>.lock so that concurrent processes never write the
 * same .part. */
#include "config.h"

/* flock, pwrite, strndup, utimensat, O_CLOEXEC even under -std=c11. */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE 1
#endif

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "clipkd/fetch.h"
#include "clipkd/schema.h"
#include "fetch_internal.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

/* ---- options and artifacts --------------------------------------------------- */

void ckd_fetch_opts_init(ckd_fetch_opts *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->retries = 3;
    o->backoff_s = 1.0;
    o->backoff_max_s = 30.0;
    o->connect_timeout_s = 30.0;
    o->low_speed_limit_Bps = 1;
    o->low_speed_time_s = 60;
    o->progress_interval_s = 0.2;
}

static int is_url(const char *u)
{
    return !strncasecmp(u, "http://", 7) || !strncasecmp(u, "https://", 8) ||
           !strncasecmp(u, "file://", 7);
}

static int is_file_url(const char *u)
{
    return !strncasecmp(u, "file://", 7);
}

/* "weights.safetensors" from "https://host/a/weights.safetensors?x=1". */
static char *name_from_url(const char *url)
{
    size_t end = strcspn(url, "?#");
    while (end > 0 && url[end - 1] == '/')
        end--;
    size_t start = end;
    while (start > 0 && url[start - 1] != '/')
        start--;
    if (start == end)
        return NULL;
    return strndup(url + start, end - start);
}

int ckd_artifact_from_json(const json_t *obj, ckd_artifact *out, const char *where,
                           ckd_error *err)
{
    if (!out)
        return ckd_errorf(err, "artifact: no output given");
    memset(out, 0, sizeof *out);
    where = where ? where : "artifact";
    if (!json_is_object(obj))
        return ckd_errorf(err, "%s: expected an artifact object {\"urls\": [...], \"sha256\": "
                               "\"<64 hex>\", \"size\": N}, got %s",
                          where, obj ? ckd_json_type_name(obj) : "nothing");
    const json_t *urls = json_object_get(obj, "urls");
    const json_t *sha = json_object_get(obj, "sha256");
    const json_t *size = json_object_get(obj, "size");
    const json_t *name = json_object_get(obj, "name");
    if (!urls)
        return ckd_errorf(err, "%s: \"urls\" is missing (expected a non-empty array of "
                               "http://, https:// or file:// URLs)", where);
    if (!json_is_array(urls) || json_array_size(urls) == 0)
        return ckd_errorf(err, "%s.urls: expected a non-empty array of URLs, got %s", where,
                          json_is_array(urls) ? "an empty array" : ckd_json_type_name(urls));
    for (size_t i = 0; i < json_array_size(urls); i++) {
        const json_t *u = json_array_get(urls, i);
        if (!json_is_string(u))
            return ckd_errorf(err, "%s.urls[%zu]: expected a URL string, got %s", where, i,
                              ckd_json_type_name(u));
        if (!is_url(json_string_value(u)))
            return ckd_errorf(err, "%s.urls[%zu]: \"%.200s\" is not an http://, https:// or "
                                   "file:// URL", where, i, json_string_value(u));
    }
    if (!sha) {
        const char *pre = json_string_value(json_object_get(obj, "sha256_prefix"));
        char part[120] = "";
        if (pre)
            snprintf(part, sizeof part, " (only its first digits, %.64s, are published)", pre);
        return ckd_errorf(err, "%s: no SHA-256 is known for %.300s%s: download it once with `clipkd fetch --pin "
                          "RECIPE`, which records its hash and size in RECIPE.lock.json for every later fetch to "
                          "verify", where, json_is_string(json_array_get(urls, 0)) ?
                          json_string_value(json_array_get(urls, 0)) : "this artifact", part);
    }
    if (!json_is_string(sha))
        return ckd_errorf(err, "%s.sha256: expected a string of 64 hex digits, got %s", where,
                          ckd_json_type_name(sha));
    if (!ckd_sha256_is_hex(json_string_value(sha)))
        return ckd_errorf(err, "%s.sha256: \"%.100s\" is not a SHA-256 (expected exactly 64 "
                               "hex digits, got %zu characters)", where,
                          json_string_value(sha), strlen(json_string_value(sha)));
    if (!size)
        return ckd_errorf(err, "%s: \"size\" is missing (expected the size in bytes)", where);
    if (!json_is_integer(size))
        return ckd_errorf(err, "%s.size: expected an integer number of bytes, got %s", where,
                          ckd_json_type_name(size));
    if (json_integer_value(size) < 0)
        return ckd_errorf(err, "%s.size: %lld is negative (expected a size in bytes >= 0)",
                          where, (long long)json_integer_value(size));
    if (name && !json_is_string(name))
        return ckd_errorf(err, "%s.name: expected a string, got %s", where, ckd_json_type_name(name));

    size_t n = json_array_size(urls);
    out->urls = calloc(n, sizeof *out->urls);
    if (!out->urls)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        out->n_urls = i + 1;
        if (!(out->urls[i] = strdup(json_string_value(json_array_get(urls, i)))))
            goto oom;
    }
    ckd_sha256_lower(json_string_value(sha), out->sha256); /* checked above */
    out->size = (int64_t)json_integer_value(size);
    out->name = name ? strdup(json_string_value(name)) : name_from_url(out->urls[0]);
    if (!out->name)
        out->name = strndup(out->sha256, 12);
    if (!out->name)
        goto oom;
    return 0;
oom:
    ckd_artifact_free(out);
    return ckd_errorf(err, "%s: out of memory", where);
}

void ckd_artifact_free(ckd_artifact *a)
{
    if (!a)
        return;
    for (size_t i = 0; a->urls && i < a->n_urls; i++)
        free((void *)a->urls[i]);
    free((void *)a->urls);
    free((void *)a->name);
    memset(a, 0, sizeof *a);
}

/* ---- small file-system helpers ------------------------------------------------- */

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* ---- one transfer ---------------------------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct xfer {
    CURL *c;
    int fd;
    int64_t expected; /* artifact size, -1 unknown */
    int64_t have;     /* bytes in .part right now */
    int64_t start;    /* bytes in .part when the body began */
    int asked_range, started, restarted;
    int cr_seen;
    int64_t cr_start;
    int werr, too_big, bad_range;
    const ckd_fetch_opts *o;
    const char *name;
    double t0, t_last;
};

static void report(struct xfer *x, int force)
{
    if (!x->o->progress)
        return;
    double t = mono_s();
    if (!force && t - x->t_last < x->o->progress_interval_s)
        return;
    x->t_last = t;
    double rate = t > x->t0 ? (double)(x->have - x->start) / (t - x->t0) : 0.0;
    x->o->progress(x->o->progress_user, x->name, x->have, x->expected, rate);
}

static size_t on_header(char *b, size_t sz, size_t n, void *u)
{
    struct xfer *x = u;
    size_t len = sz * n;
    char line[256];
    size_t m = len < sizeof line - 1 ? len : sizeof line - 1;
    memcpy(line, b, m);
    line[m] = '\0';
    /* A new status line starts a new response (after a redirect): forget the
     * previous one's Content-Range. */
    if (!strncmp(line, "HTTP/", 5)) {
        x->cr_seen = 0;
    } else if (!strncasecmp(line, "Content-Range:", 14)) {
        const char *p = line + 14;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!strncasecmp(p, "bytes", 5)) {
            char *end;
            long long v = strtoll(p + 5, &end, 10);
            if (end != p + 5 && *end == '-') {
                x->cr_seen = 1;
                x->cr_start = v;
            }
        }
    }
    return len;
}

static size_t on_write(char *p, size_t sz, size_t n, void *u)
{
    struct xfer *x = u;
    size_t len = sz * n;
    if (!x->started) {
        x->started = 1;
        if (x->asked_range) {
            long code = 0;
            curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &code);
            if (code == 206) {
                if (!x->cr_seen || x->cr_start != x->have) {
                    x->bad_range = 1;
                    return 0;
                }
            } else {
                /* The server ignored our Range and sends the whole file:
                 * start the .part over. */
                if (ftruncate(x->fd, 0) < 0) {
                    x->werr = errno;
                    return 0;
                }
                x->have = x->start = 0;
                x->restarted = 1;
            }
        }
        x->t0 = mono_s();
    }
    if (x->expected >= 0 && x->have + (int64_t)len > x->expected) {
        x->too_big = 1;
        return 0;
    }
    if (ckdi_write_all(x->fd, p, len, x->have) < 0) {
        x->werr = errno;
        return 0;
    }
    x->have += (int64_t)len;
    report(x, 0);
    return len;
}

enum outcome {
    O_OK,    /* .part complete and verified */
    O_RETRY, /* transient: same mirror again after a backoff */
    O_REDO,  /* .part was bad: same mirror again from zero, no backoff */
    O_NEXT,  /* this mirror cannot give us the artifact */
    O_FATAL  /* local problem (write error): stop everything */
};

static int is_transient(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

/* One attempt at url into part. why gets the reason for anything but O_OK. */
static enum outcome attempt(CURL *c, const ckd_fetch_opts *o, const ckd_artifact *a,
                            const char *sha, const char *url, const char *part, char *why,
                            size_t wcap, ckd_error *err)
{
    struct xfer x = {0};
    x.c = c;
    x.expected = a->size;
    x.o = o;
    x.name = a->name ? a->name : sha ? sha : url;
    x.fd = open(part, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
    if (x.fd < 0) {
        ckd_errorf(err, "%s: cannot create: %s", part, strerror(errno));
        return O_FATAL;
    }
    struct stat st;
    x.have = fstat(x.fd, &st) == 0 ? (int64_t)st.st_size : 0;
    /* file:// mirrors are local and cheap: always copy them whole. */
    int http = !is_file_url(url);
    if (x.have > 0 && (!http || (a->size >= 0 && x.have > a->size))) {
        if (ftruncate(x.fd, 0) < 0)
            goto werror;
        x.have = 0;
    }
    x.start = x.have;
    enum outcome out = O_OK;
    int resumed = x.have > 0;
    if (!(a->size >= 0 && x.have == a->size && x.have > 0)) {
        char range[32], ebuf[CURL_ERROR_SIZE] = "";
        curl_easy_reset(c);
        curl_easy_setopt(c, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https,file");
        curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
        curl_easy_setopt(c, CURLOPT_PROTOCOLS, CURLPROTO_HTTP | CURLPROTO_HTTPS | CURLPROTO_FILE);
        curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, CURLPROTO_HTTP | CURLPROTO_HTTPS);
#endif
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
        curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM timeouts */
        curl_easy_setopt(c, CURLOPT_USERAGENT, "clipkd/" PACKAGE_VERSION);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                         (long)(1000 * (o->connect_timeout_s > 0 ? o->connect_timeout_s : 30)));
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT,
                         o->low_speed_limit_Bps > 0 ? o->low_speed_limit_Bps : 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME,
                         o->low_speed_time_s > 0 ? o->low_speed_time_s : 60L);
        if (a->size >= 0)
            curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)a->size);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
        /* CURLOPT_RANGE rather than RESUME_FROM: curl itself fails a resume
         * that gets a 200, where we want to start over from zero. */
        if (x.have > 0) {
            snprintf(range, sizeof range, "%lld-", (long long)x.have);
            curl_easy_setopt(c, CURLOPT_RANGE, range);
            x.asked_range = 1;
        }
        x.t0 = x.t_last = mono_s();
        report(&x, 1);
        CURLcode rc = curl_easy_perform(c);
        long code = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        /* ebuf and x die with this scope; the handle must not point at them. */
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, NULL);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, NULL);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, NULL);
        if (rc == CURLE_OK && x.asked_range && !x.started && code == 200) {
            /* An empty 200 to a Range request: the file is empty, not our prefix. */
            if (ftruncate(x.fd, 0) < 0)
                goto werror;
            x.have = 0;
        }
        if (x.werr) {
            errno = x.werr;
            goto werror;
        }
        const char *msg = ebuf[0] ? ebuf : curl_easy_strerror(rc);
        if (rc != CURLE_OK) {
            if (x.too_big) {
                snprintf(why, wcap, "sent more than the expected %lld bytes (size mismatch)",
                         (long long)a->size);
                out = O_NEXT;
                unlink(part);
            } else if (x.bad_range) {
                snprintf(why, wcap, "answered Range: bytes=%lld- with Content-Range "
                         "starting at %lld", (long long)x.have, (long long)x.cr_start);
                out = ftruncate(x.fd, 0) < 0 ? O_NEXT : O_RETRY;
            } else if (rc == CURLE_HTTP_RETURNED_ERROR || (http && code >= 400)) {
                /* Also when curl stopped for another reason first (an error
                 * page longer than the artifact trips MAXFILESIZE). */
                snprintf(why, wcap, "HTTP %ld", code);
                if (code == 416) {
                    out = ftruncate(x.fd, 0) < 0 ? O_NEXT : O_REDO;
                } else {
                    out = (code == 408 || code == 429 || code >= 500) ? O_RETRY : O_NEXT;
                }
            } else if (rc == CURLE_FILESIZE_EXCEEDED) {
                snprintf(why, wcap, "announced more than the expected %lld bytes (size "
                         "mismatch)", (long long)a->size);
                out = O_NEXT;
            } else {
                snprintf(why, wcap, "%s", msg);
                out = is_transient(rc) ? O_RETRY : O_NEXT;
            }
        } else if (a->size >= 0 && x.have != a->size) {
            snprintf(why, wcap, "got %lld bytes, expected %lld (size mismatch)",
                     (long long)x.have, (long long)a->size);
            unlink(part);
            out = O_NEXT;
        }
        if (out != O_OK && o->progress)
            o->progress(o->progress_user, x.name, -1, a->size, 0.0);
        if (out != O_OK) {
            close(x.fd);
            return out;
        }
    }
    if (fsync(x.fd) < 0)
        goto werror;
    if (close(x.fd) < 0) {
        x.fd = -1;
        goto werror;
    }
    x.fd = -1;
    if (!sha)
        return O_OK; /* pinning without a published prefix: the caller hashes what came */
    char got[65];
    if (ckd_sha256_file(part, got, NULL, err) < 0) {
        unlink(part);
        return O_FATAL;
    }
    size_t sl = strlen(sha);
    if (sl < 64) { /* pinning: the published prefix of the hash */
        if (!strncmp(got, sha, sl))
            return O_OK;
        unlink(part);
        snprintf(why, wcap, "its SHA-256 is %s, the published one starts %s (the file changed or is damaged)", got,
                 sha);
        return O_NEXT;
    }
    if (strcmp(got, sha) != 0) {
        unlink(part);
        snprintf(why, wcap, "sha256 mismatch: expected %s, got %s%s", sha, got,
                 resumed && !x.restarted ? " (after resuming a partial download)" : "");
        return resumed && !x.restarted ? O_REDO : O_NEXT;
    }
    return O_OK;
werror:
    ckd_errorf(err, "%s: write error: %s (nothing was cached; the partial file was removed)",
               part, strerror(errno));
    if (x.fd >= 0)
        close(x.fd);
    unlink(part);
    return O_FATAL;
}

/* ---- the cache entry ---------------------------------------------------------- */

/* 1: complete entry; 0: absent; 2: present but wrong (size, or hash when
 * rehash); -1: error. */
static int check_entry(const char *entry, const ckd_artifact *a, const char *sha, int rehash,
                       char *why, size_t wcap, ckd_error *err)
{
    struct stat st;
    if (stat(entry, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        return ckd_errorf(err, "%s: cannot stat cache entry: %s", entry, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, wcap, "%s is not a regular file", entry);
        return 2;
    }
    if (a->size >= 0 && (int64_t)st.st_size != a->size) {
        snprintf(why, wcap, "%s has %lld bytes, expected %lld", entry, (long long)st.st_size,
                 (long long)a->size);
        return 2;
    }
    if (rehash) {
        char got[65];
        if (ckd_sha256_file(entry, got, NULL, err) < 0)
            return -1;
        if (strcmp(got, sha) != 0) {
            snprintf(why, wcap, "%s hashes to %s", entry, got);
            return 2;
        }
    }
    return 1;
}

/* Common checks of ckd_fetch and ckd_fetch_cached: the entry path and a
 * lower-case copy of the hash. */
static int prepare(const ckd_fetch_opts *o, const ckd_artifact *a, char *path_out, size_t cap,
                   char *sha, char *entry, ckd_error *err)
{
    if (!a)
        return ckd_errorf(err, "fetch: no artifact given");
    const char *label = a->name ? a->name : "artifact";
    if (ckd_sha256_lower(a->sha256, sha) < 0)
        return ckd_errorf(err, "fetch %s: sha256 \"%.64s\" is not 64 hex digits", label,
                          a->sha256);
    if (!path_out || cap == 0)
        return ckd_errorf(err, "fetch %s: no buffer for the path", label);
    if (ckd_cache_entry_path(o->cache_dir, sha, entry, PATH_MAX, err) < 0)
        return ckd_error_prefix(err, "fetch %s", label);
    if (strlen(entry) + 16 >= PATH_MAX || strlen(entry) >= cap)
        return ckd_errorf(err, "fetch %s: cache path %s does not fit in %zu bytes", label, entry,
                          strlen(entry) >= cap ? cap : (size_t)PATH_MAX - 16);
    return 0;
}

int ckd_fetch_cached(const ckd_fetch_opts *opts, const ckd_artifact *a, char *path_out,
                     size_t cap, ckd_error *err)
{
    ckd_fetch_opts def;
    if (!opts) {
        ckd_fetch_opts_init(&def);
        opts = &def;
    }
    char sha[65], entry[PATH_MAX], why[512];
    if (prepare(opts, a, path_out, cap, sha, entry, err) < 0)
        return -1;
    int r = check_entry(entry, a, sha, opts->verify_cached, why, sizeof why, err);
    if (r < 0)
        return -1;
    if (r != 1)
        return 0;
    snprintf(path_out, cap, "%s", entry);
    return 1;
}

static void appendf(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void appendf(char *buf, size_t cap, const char *fmt, ...)
{
    size_t n = strlen(buf);
    if (n + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + n, cap - n, fmt, ap);
    va_end(ap);
}

/* Fills part from the first mirror that gives the artifact (its hash
 * checked against sha, or nothing checked when sha is NULL). */
static int try_mirrors(CURL *c, const ckd_fetch_opts *o, const ckd_artifact *a, const char *sha,
                       const char *part, const char *label, const char **src, ckd_error *err)
{
    char why[512], fails[CKD_ERROR_MAX] = "";
    size_t tried = 0;
    for (size_t m = 0; m < a->n_urls; m++) {
        const char *url = a->urls[m];
        if (o->offline && !is_file_url(url))
            continue;
        tried++;
        int redo_used = 0;
        enum outcome out = O_NEXT;
        for (int att = 0; att <= (o->retries > 0 ? o->retries : 0); att++) {
            if (att > 0 && out == O_RETRY) {
                double d = o->backoff_s * pow(2.0, att - 1);
                sleep_s(o->backoff_max_s > 0 && d > o->backoff_max_s ? o->backoff_max_s : d);
            }
            why[0] = '\0';
            out = attempt(c, o, a, sha, url, part, why, sizeof why, err);
            if (out == O_REDO && !redo_used) {
                redo_used = 1;
                att--; /* starting over after a bad .part is not a retry */
            }
            if (out == O_OK || out == O_FATAL || out == O_NEXT)
                break;
        }
        if (out == O_FATAL)
            return ckd_error_prefix(err, "fetch %s from %s", label, url);
        if (out == O_OK) {
            *src = url;
            return 0;
        }
        appendf(fails, sizeof fails, "%s%s: %s", fails[0] ? "; " : "", url, why);
    }
    if (tried == 0)
        return ckd_errorf(err, "fetch %s: no mirrors given%s%s", label, sha ? " for sha256 " : "", sha ? sha : "");
    return ckd_errorf(err, "fetch %s: %s%s", label,
                      o->offline ? "offline, not in the cache, and the file:// mirrors "
                                   "failed: " : "",
                      fails);
}

/* Moves a complete, verified part to its entry with its sidecar; the
 * entry's lock is held. */
static int place(const ckd_fetch_opts *o, const ckd_artifact *a, const char *sha, const char *part,
                 const char *entry, const char *label, const char *src, ckd_error *err)
{
    if (ckdi_write_sidecar(entry, a, sha, src, err) < 0) {
        unlink(part);
        return ckd_error_prefix(err, "fetch %s", label);
    }
    if (rename(part, entry) < 0) {
        int e = errno;
        unlink(part);
        return ckd_errorf(err, "fetch %s: cannot rename %s to %s: %s", label, part, entry, strerror(e));
    }
    ckdi_sync_parent(entry);
    if (o->progress)
        o->progress(o->progress_user, label, a->size, a->size, 0.0);
    return 0;
}

/* Downloads into <entry>.part from the mirrors and renames it into place.
 * Called with the entry locked. */
static int download(CURL *c, const ckd_fetch_opts *o, const ckd_artifact *a, const char *sha,
                    const char *entry, ckd_error *err)
{
    const char *label = a->name ? a->name : sha;
    char part[PATH_MAX];
    if (snprintf(part, sizeof part, "%s.part", entry) >= (int)sizeof part)
        return ckd_errorf(err, "fetch %s: path %s.part is too long", label, entry);
    const char *src = NULL;
    if (try_mirrors(c, o, a, sha, part, label, &src, err))
        return -1;
    return place(o, a, sha, part, entry, label, src, err);
}

int ckd_fetch(const ckd_fetch_opts *opts, const ckd_artifact *a, char *path_out, size_t cap,
              ckd_error *err)
{
    ckd_fetch_opts def;
    if (!opts) {
        ckd_fetch_opts_init(&def);
        opts = &def;
    }
    char sha[65], entry[PATH_MAX], why[512], sc[PATH_MAX];
    if (prepare(opts, a, path_out, cap, sha, entry, err) < 0)
        return -1;
    const char *label = a->name ? a->name : sha;
    for (size_t i = 0; i < a->n_urls; i++)
        if (!a->urls || !a->urls[i] || !is_url(a->urls[i]))
            return ckd_errorf(err, "fetch %s: mirror %zu (\"%.200s\") is not an http://, "
                                   "https:// or file:// URL", label, i,
                              a->urls && a->urls[i] ? a->urls[i] : "(null)");
    if (snprintf(sc, sizeof sc, "%s.json", entry) >= (int)sizeof sc)
        return ckd_errorf(err, "fetch %s: path %s.json is too long", label, entry);

    /* Fast path without the lock, so a read-only shared cache works. */
    int r = check_entry(entry, a, sha, opts->verify_cached, why, sizeof why, err);
    if (r < 0)
        return ckd_error_prefix(err, "fetch %s", label);
    if (r == 1) {
        (void)utimensat(AT_FDCWD, sc, NULL, 0); /* last use, for gc by age */
        snprintf(path_out, cap, "%s", entry);
        return 0;
    }
    if (opts->offline) {
        size_t n_file = 0;
        for (size_t i = 0; i < a->n_urls; i++)
            n_file += is_file_url(a->urls[i]) != 0;
        if (n_file == 0) {
            char list[512] = "";
            for (size_t i = 0; i < a->n_urls; i++)
                appendf(list, sizeof list, "%s%s", i ? ", " : "", a->urls[i]);
            return ckd_errorf(err, "fetch %s: offline, and sha256 %s (%lld bytes) is not in "
                                   "the cache (%s%s) and has no file:// mirror (mirrors: %s)",
                              label, sha, (long long)a->size, r == 2 ? "damaged: " : "",
                              r == 2 ? why : entry, list[0] ? list : "none");
        }
    }
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return ckd_errorf(err, "fetch %s: libcurl failed to initialise: %s", label,
                          curl_easy_strerror(curl_init_rc));
    if (ckdi_mkdir_parents(entry, err) < 0)
        return ckd_error_prefix(err, "fetch %s", label);
    int fd;
    if (ckd_cache_lock(entry, 1, &fd, err) < 0)
        return ckd_error_prefix(err, "fetch %s", label);
    /* Whoever held the lock before us may have finished the job. */
    r = check_entry(entry, a, sha, opts->verify_cached, why, sizeof why, err);
    int rc = r < 0 ? ckd_error_prefix(err, "fetch %s", label) : 0;
    /* A damaged entry (wrong size or hash) is replaced by a fresh download. */
    if (r == 2 && (unlink(entry) < 0 || (unlink(sc) < 0 && errno != ENOENT)))
        rc = ckd_errorf(err, "fetch %s: damaged cache entry (%s) cannot be removed: %s", label,
                        why, strerror(errno));
    if (rc == 0 && r != 1) {
        CURL *c = curl_easy_init();
        if (!c)
            rc = ckd_errorf(err, "fetch %s: libcurl could not create a handle", label);
        else
            rc = download(c, opts, a, sha, entry, err);
        curl_easy_cleanup(c);
    }
    ckd_cache_unlock(entry, fd);
    if (rc == 0)
        snprintf(path_out, cap, "%s", entry);
    return rc;
}

/* ---- pinning ---------------------------------------------------------------------- */

/* The download goes to <cache>/pin/<SHA-256 of the first URL>.part (locked,
 * so two pins of one file serialise), is hashed, checked against the
 * published prefix, and enters the cache under its hash like any download. */
int ckd_fetch_pin(const ckd_fetch_opts *opts, const ckd_artifact *a, const char *sha256_prefix,
                  char sha256_out[65], int64_t *size_out, char *path_out, size_t cap, ckd_error *err)
{
    ckd_fetch_opts def;
    if (!opts) {
        ckd_fetch_opts_init(&def);
        opts = &def;
    }
    if (!a || !a->n_urls || !a->urls)
        return ckd_errorf(err, "fetch --pin: no mirrors given");
    const char *label = a->name ? a->name : a->urls[0];
    size_t plen = sha256_prefix ? strlen(sha256_prefix) : 0;
    for (size_t i = 0; i < plen; i++)
        if (!strchr("0123456789abcdefABCDEF", sha256_prefix[i]) || plen > 64)
            return ckd_errorf(err, "fetch %s: sha256_prefix \"%.70s\" is not hex digits", label, sha256_prefix);
    for (size_t i = 0; i < a->n_urls; i++)
        if (!a->urls[i] || !is_url(a->urls[i]))
            return ckd_errorf(err, "fetch %s: mirror %zu is not an http://, https:// or file:// URL", label, i);
    char dir[PATH_MAX], base[PATH_MAX], part[PATH_MAX + 8], uh[65], entry[PATH_MAX];
    if (opts->cache_dir)
        snprintf(dir, sizeof dir, "%s", opts->cache_dir);
    else if (ckd_cache_dir(dir, sizeof dir, err) < 0)
        return ckd_error_prefix(err, "fetch %s", label);
    if (ckd_sha256_buffer(a->urls[0], strlen(a->urls[0]), uh, err) < 0)
        return -1;
    if (snprintf(base, sizeof base, "%s/pin/%s", dir, uh) >= (int)sizeof base)
        return ckd_errorf(err, "fetch %s: cache path too long", label);
    snprintf(part, sizeof part, "%s.part", base);
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return ckd_errorf(err, "fetch %s: libcurl failed to initialise: %s", label, curl_easy_strerror(curl_init_rc));
    int pfd, efd;
    if (ckdi_mkdir_parents(base, err) < 0 || ckd_cache_lock(base, 1, &pfd, err) < 0)
        return ckd_error_prefix(err, "fetch %s", label);
    ckd_artifact any = *a;
    any.size = -1; /* whatever the mirror has: its hash is what gets pinned */
    any.name = label;
    char prefix[65];
    for (size_t i = 0; i < plen; i++)
        prefix[i] = (char)tolower((unsigned char)sha256_prefix[i]);
    prefix[plen] = '\0';
    CURL *c = curl_easy_init();
    const char *src = NULL;
    int rc = c ? try_mirrors(c, opts, &any, plen ? prefix : NULL, part, label, &src, err)
               : ckd_errorf(err, "fetch %s: libcurl could not create a handle", label);
    curl_easy_cleanup(c);
    if (rc == 0)
        rc = ckd_sha256_file(part, sha256_out, &any.size, err);
    if (rc == 0 && (ckd_cache_entry_path(opts->cache_dir, sha256_out, entry, sizeof entry, err) < 0 ||
                    ckdi_mkdir_parents(entry, err) < 0 || ckd_cache_lock(entry, 1, &efd, err) < 0))
        rc = ckd_error_prefix(err, "fetch %s", label);
    if (rc == 0) {
        char why[512];
        int r = check_entry(entry, &any, sha256_out, 0, why, sizeof why, err);
        if (r == 1)
            unlink(part); /* already cached under that hash */
        else if (r == 2 && unlink(entry) < 0)
            rc = ckd_errorf(err, "fetch %s: damaged cache entry (%s) cannot be removed: %s", label, why,
                            strerror(errno));
        if (rc == 0 && r != 1)
            rc = place(opts, &any, sha256_out, part, entry, label, src, err);
        ckd_cache_unlock(entry, efd);
    }
    if (rc)
        unlink(part);
    ckd_cache_unlock(base, pfd);
    if (rc == 0) {
        *size_out = any.size;
        snprintf(path_out, cap, "%s", entry);
    }
    return rc;
}
