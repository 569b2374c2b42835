/* Tests for artifact fetching and the cache, against a real HTTP server on
 * 127.0.0.1 (tests/httpd.c). Each test gets a fresh temporary directory with
 * its own CLIPKD_CACHE, and nothing but 127.0.0.1 is ever contacted. */
#include "config.h"

/* nftw, mkdtemp, open_memstream, usleep. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clipkd/fetch.h"
#include "clipkd/safetensors.h"
#include "httpd.h"

#define BLOB_LEN 300000

static char tmp_dir[512], cache_dir[600];
static struct httpd *srv;
static unsigned char *blob;
static char blob_sha[65];
/* Per-test state every test uses (each test runs in its own process). */
static ckd_fetch_opts o;
static char path[1024];
static ckd_error err;

static unsigned char *make_bytes(size_t n, unsigned seed)
{
    unsigned char *b = malloc(n);
    unsigned x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b[i] = (unsigned char)x;
    }
    return b;
}

static ckd_fetch_opts fast_opts(void);

static void setup(void)
{
    o = fast_opts();
    memset(&err, 0, sizeof err);
    /* Loopback only: never let a proxy from the environment take the requests. */
    setenv("NO_PROXY", "*", 1);
    setenv("no_proxy", "*", 1);
    const char *t = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/ckd-fetch-XXXXXX", t && *t ? t : "/tmp");
    cr_assert(mkdtemp(tmp_dir), "mkdtemp: %s", strerror(errno));
    snprintf(cache_dir, sizeof cache_dir, "%s/cache", tmp_dir);
    setenv("CLIPKD_CACHE", cache_dir, 1);
    blob = make_bytes(BLOB_LEN, 1);
    cr_assert(ckd_sha256_buffer(blob, BLOB_LEN, blob_sha, NULL) == 0);
    srv = httpd_start();
    cr_assert(srv, "cannot start the loopback server");
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    return remove(p);
}

static void teardown(void)
{
    httpd_stop(srv);
    srv = NULL;
    free(blob);
    nftw(tmp_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(fetch, .init = setup, .fini = teardown, .timeout = 60);

/* ---- helpers --------------------------------------------------------------- */

static ckd_fetch_opts fast_opts(void)
{
    ckd_fetch_opts f;
    ckd_fetch_opts_init(&f);
    f.retries = 2;
    f.backoff_s = 0.01;
    f.backoff_max_s = 0.05;
    f.connect_timeout_s = 2;
    f.low_speed_time_s = 2;
    return f;
}

/* Up to 4 mirrors; "/x" becomes http://127.0.0.1:PORT/x, others are kept. */
struct art {
    char buf[4][700];
    const char *urls[4];
    ckd_artifact a;
};

static void mk_art(struct art *s, const char *name, const char *sha, int64_t size, int n, ...)
{
    va_list ap;
    va_start(ap, n);
    memset(s, 0, sizeof *s);
    for (int i = 0; i < n; i++) {
        const char *u = va_arg(ap, const char *);
        if (u[0] == '/')
            snprintf(s->buf[i], sizeof s->buf[i], "http://127.0.0.1:%d%s", httpd_port(srv), u);
        else
            snprintf(s->buf[i], sizeof s->buf[i], "%s", u);
        s->urls[i] = s->buf[i];
    }
    va_end(ap);
    s->a.urls = s->urls;
    s->a.n_urls = (size_t)n;
    snprintf(s->a.sha256, sizeof s->a.sha256, "%s", sha);
    s->a.size = size;
    s->a.name = name;
}

static void entry_path(const char *sha, char *out, size_t cap)
{
    cr_assert(ckd_cache_entry_path(NULL, sha, out, cap, NULL) == 0);
}

static int exists(const char *p)
{
    return access(p, F_OK) == 0;
}

static int exists_suffix(const char *p, const char *suf)
{
    char q[2048];
    snprintf(q, sizeof q, "%s%s", p, suf);
    return exists(q);
}

static void assert_file_is(const char *file, const unsigned char *want, size_t n)
{
    FILE *f = fopen(file, "rb");
    cr_assert(f, "cannot open %s", file);
    unsigned char *got = malloc(n + 1);
    size_t r = fread(got, 1, n + 1, f);
    fclose(f);
    cr_assert_eq(r, n, "%s has %zu bytes, expected %zu", file, r, n);
    cr_assert(memcmp(got, want, n) == 0, "%s differs from the expected content", file);
    free(got);
}

static void write_file(const char *file, const void *data, size_t n)
{
    FILE *f = fopen(file, "wb");
    cr_assert(f, "cannot create %s", file);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void mkdir_parent(const char *file)
{
    char p[2048];
    snprintf(p, sizeof p, "%s", file);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            mkdir(p, 0777);
            *s = '/';
        }
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- downloads ---------------------------------------------------------------- */

Test(fetch, plain_download_then_cache_hit)
{
    httpd_add(srv, "/blob", HTTPD_OK, blob, BLOB_LEN, 0, NULL);
    struct art s;
    mk_art(&s, "blob.bin", blob_sha, BLOB_LEN, 1, "/blob");
    char want[1024];
    cr_assert(ckd_fetch_cached(&o, &s.a, path, sizeof path, &err) == 0, "%s", err.msg);
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == 0, "%s", err.msg);
    entry_path(blob_sha, want, sizeof want);
    cr_assert_str_eq(path, want);
    cr_assert(strncmp(path, cache_dir, strlen(cache_dir)) == 0);
    assert_file_is(path, blob, BLOB_LEN);
    cr_assert(!exists_suffix(path, ".part") && !exists_suffix(path, ".lock"));
    cr_assert_eq(httpd_gets(srv, "/blob"), 1);

    /* The sidecar says what it is, for `cache ls`. */
    char sc[1100];
    snprintf(sc, sizeof sc, "%s.json", path);
    json_t *m = json_load_file(sc, 0, NULL);
    cr_assert(json_is_object(m), "sidecar %s", sc);
    cr_assert_str_eq(json_string_value(json_object_get(m, "name")), "blob.bin");
    cr_assert_eq(json_integer_value(json_object_get(m, "size")), BLOB_LEN);
    cr_assert_str_eq(json_string_value(json_object_get(m, "source")), s.urls[0]);
    cr_assert_eq(json_array_size(json_object_get(m, "urls")), 1);
    cr_assert(json_is_string(json_object_get(m, "fetched")));
    json_decref(m);

    /* Second fetch: from the cache, no request. */
    char again[1024];
    cr_assert(ckd_fetch(&o, &s.a, again, sizeof again, &err) == 0, "%s", err.msg);
    cr_assert_str_eq(again, path);
    cr_assert_eq(httpd_gets(srv, "/blob"), 1);
    cr_assert(ckd_fetch_cached(&o, &s.a, again, sizeof again, &err) == 1);
    o.verify_cached = 1;
    cr_assert(ckd_fetch(&o, &s.a, again, sizeof again, &err) == 0, "%s", err.msg);
    cr_assert_eq(httpd_gets(srv, "/blob"), 1);
}

Test(fetch, redirect)
{
    httpd_add(srv, "/blob", HTTPD_OK, blob, BLOB_LEN, 0, NULL);
    httpd_add(srv, "/moved", HTTPD_REDIRECT, NULL, 0, 0, "/blob");
    httpd_add(srv, "/loop", HTTPD_REDIRECT, NULL, 0, 0, "/loop");
    struct art s;

    mk_art(&s, "loop", blob_sha, BLOB_LEN, 1, "/loop");
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == -1);
    cr_assert(strstr(err.msg, "redirect"), "%s", err.msg);
    cr_assert_eq(httpd_gets(srv, "/loop"), 6, "1 request + at most 5 redirects");

    mk_art(&s, "moved", blob_sha, BLOB_LEN, 1, "/moved");
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == 0, "%s", err.msg);
    assert_file_is(path, blob, BLOB_LEN);
    cr_assert_eq(httpd_gets(srv, "/moved"), 1);
    cr_assert_eq(httpd_gets(srv, "/blob"), 1);
}

Test(fetch, not_found_then_second_mirror)
{
    httpd_add(srv, "/blob", HTTPD_OK, blob, BLOB_LEN, 0, NULL);
    struct art s;
    mk_art(&s, "blob", blob_sha, BLOB_LEN, 2, "/missing", "/blob");
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == 0, "%s", err.msg);
    assert_file_is(path, blob, BLOB_LEN);
    cr_assert_eq(httpd_gets(srv, "/blob"), 1);

    /* Every mirror failing: the message lists each. */
    mk_art(&s, "gone", "00000000000000000000000000000000000000000000000000000000000000aa", 5, 2,
           "/missing", "/also-missing");
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == -1);
    cr_assert(strstr(err.msg, "/missing: HTTP 404"), "%s", err.msg);
    cr_assert(strstr(err.msg, "/also-missing: HTTP 404"), "%s", err.msg);
}

Test(fetch, checksum_mismatch_caches_nothing)
{
    httpd_add(srv, "/wrong", HTTPD_WRONG, blob, BLOB_LEN, 0, NULL);
    unsigned char *bad = malloc(BLOB_LEN);
    for (size_t i = 0; i < BLOB_LEN; i++)
        bad[i] = blob[i] ^ 0x5a;
    char bad_sha[65];
    ckd_sha256_buffer(bad, BLOB_LEN, bad_sha, NULL);
    free(bad);
    struct art s;
    mk_art(&s, "blob", blob_sha, BLOB_LEN, 1, "/wrong");
    char entry[1024];
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == -1);
    cr_assert(strstr(err.msg, blob_sha), "expected hash in: %s", err.msg);
    cr_assert(strstr(err.msg, bad_sha), "actual hash in: %s", err.msg);
    cr_assert(strstr(err.msg, s.urls[0]), "URL in: %s", err.msg);
    entry_path(blob_sha, entry, sizeof entry);
    cr_assert(!exists(entry), "nothing cached");
    cr_assert(!exists_suffix(entry, ".part") && !exists_suffix(entry, ".json"));
    cr_assert_eq(httpd_gets(srv, "/wrong"), 1, "a wrong checksum is not retried");
}

Test(fetch, dropped_connection_resumes_with_range)
{
    httpd_add(srv, "/drop", HTTPD_DROP_ONCE, blob, BLOB_LEN, 100000, NULL);
    struct art s;
    mk_art(&s, "blob", blob_sha, BLOB_LEN, 1, "/drop");
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == 0, "%s", err.msg);
    assert_file_is(path, blob, BLOB_LEN);
    long long at = -1;
    cr_assert_eq(httpd_gets(srv, "/drop"), 2);
    cr_assert_eq(httpd_ranges(srv, "/drop", &at), 1, "the second GET has a Range header");
    cr_assert_eq(at, 100000, "resumed at byte %lld", at);
}

Test(fetch, existing_part_is_resumed)
{
    httpd_add(srv, "/blob", HTTPD_OK, blob, BLOB_LEN, 0, NULL);
    char entry[1024], part[1100];
    entry_path(blob_sha, entry, sizeof entry);
    snprintf(part, sizeof part, "%s.part", entry);
    mkdir_parent(part);
    write_file(part, blob, 1000);
    struct art s;
    mk_art(&s, "blob", blob_sha, BLOB_LEN, 1, "/blob");
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == 0, "%s", err.msg);
    assert_file_is(path, blob, BLOB_LEN);
    long long at = -1;
    cr_assert_eq(httpd_ranges(srv, "/blob", &at), 1);
    cr_assert_eq(at, 1000);
}

Test(fetch, server_ignoring_range_restarts_from_zero)
{
    httpd_add(srv, "/norange", HTTPD_NO_RANGE, blob, BLOB_LEN, 0, NULL);
    char entry[1024], part[1100];
    entry_path(blob_sha, entry, sizeof entry);
    snprintf(part, sizeof part, "%s.part", entry);
    mkdir_parent(part);
    unsigned char junk[1000];
    memset(junk, 'j', sizeof junk); /* a prefix that is NOT the blob's */
    write_file(part, junk, sizeof junk);
    struct art s;
    mk_art(&s, "blob", blob_sha, BLOB_LEN, 1, "/norange");
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == 0, "%s", err.msg);
    assert_file_is(path, blob, BLOB_LEN);
    cr_assert_eq(httpd_gets(srv, "/norange"), 1);
    cr_assert_eq(httpd_ranges(srv, "/norange", NULL), 1, "a Range was asked and answered 200");
}

Test(fetch, bad_resumed_prefix_starts_over)
{
    /* A .part with a wrong prefix and a server that honours Range: the hash
     * fails, and the library starts over from zero once. */
    httpd_add(srv, "/blob", HTTPD_OK, blob, BLOB_LEN, 0, NULL);
    char entry[1024], part[1100];
    entry_path(blob_sha, entry, sizeof entry);
    snprintf(part, sizeof part, "%s.part", entry);
    mkdir_parent(part);
    unsigned char junk[1000];
    memset(junk, 'j', sizeof junk);
    write_file(part, junk, sizeof junk);
    struct art s;
    mk_art(&s, "blob", blob_sha, BLOB_LEN, 1, "/blob");
    o.retries = 0;
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == 0, "%s", err.msg);
    assert_file_is(path, blob, BLOB_LEN);
    cr_assert_eq(httpd_gets(srv, "/blob"), 2);
    cr_assert_eq(httpd_ranges(srv, "/blob", NULL), 1);
}

Test(fetch, stalled_server_hits_low_speed_timeout)
{
    httpd_add(srv, "/stall", HTTPD_STALL, blob, BLOB_LEN, 0, NULL);
    struct art s;
    mk_art(&s, "blob", blob_sha, BLOB_LEN, 1, "/stall");
    o.retries = 0;
    o.low_speed_time_s = 1;
    char entry[1024];
    double t0 = mono();
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == -1);
    double dt = mono() - t0;
    cr_assert(dt < 8.0, "took %.1f s", dt);
    cr_assert(strstr(err.msg, "too slow") || strstr(err.msg, "timed out"), "%s", err.msg);
    cr_assert(strstr(err.msg, "/stall"), "%s", err.msg);
    entry_path(blob_sha, entry, sizeof entry);
    cr_assert(!exists(entry));
}

Test(fetch, transient_503_is_retried)
{
    httpd_add(srv, "/flaky", HTTPD_FAIL_ONCE, blob, BLOB_LEN, 0, NULL);
    struct art s;
    mk_art(&s, "blob", blob_sha, BLOB_LEN, 1, "/flaky");
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == 0, "%s", err.msg);
    assert_file_is(path, blob, BLOB_LEN);
    cr_assert_eq(httpd_gets(srv, "/flaky"), 2);
}

Test(fetch, refused_connection_then_next_mirror)
{
    /* A loopback port with nothing listening. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    char dead[128];
    snprintf(dead, sizeof dead, "http://127.0.0.1:%d/blob", ntohs(a.sin_port));

    httpd_add(srv, "/blob", HTTPD_OK, blob, BLOB_LEN, 0, NULL);
    struct art s;
    mk_art(&s, "blob", blob_sha, BLOB_LEN, 2, dead, "/blob");
    o.retries = 1;
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == 0, "%s", err.msg);
    assert_file_is(path, blob, BLOB_LEN);
}

Test(fetch, size_mismatch)
{
    httpd_add(srv, "/blob", HTTPD_OK, blob, BLOB_LEN, 0, NULL);
    struct art s;
    char entry[1024];
    mk_art(&s, "small", blob_sha, BLOB_LEN - 10, 1, "/blob");
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == -1);
    cr_assert(strstr(err.msg, "size mismatch"), "%s", err.msg);
    mk_art(&s, "large", blob_sha, BLOB_LEN + 10, 1, "/blob");
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == -1);
    cr_assert(strstr(err.msg, "size mismatch"), "%s", err.msg);
    entry_path(blob_sha, entry, sizeof entry);
    cr_assert(!exists(entry) && !exists_suffix(entry, ".part"));
}

Test(fetch, two_processes_download_once)
{
    httpd_add(srv, "/slow", HTTPD_SLOW, blob, BLOB_LEN, 16384, NULL);
    struct art s;
    mk_art(&s, "blob", blob_sha, BLOB_LEN, 1, "/slow");
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        cr_assert(kids[k] >= 0);
        if (kids[k] == 0) {
            int ok = ckd_fetch(&o, &s.a, path, sizeof path, NULL) == 0;
            char hex[65];
            ok = ok && ckd_sha256_file(path, hex, NULL, NULL) == 0 && !strcmp(hex, blob_sha);
            _exit(ok ? 0 : 1);
        }
    }
    double t0 = mono();
    int status[2] = {-1, -1}, left = 2;
    while (left && mono() - t0 < 30) {
        for (int k = 0; k < 2; k++)
            if (kids[k] > 0 && waitpid(kids[k], &status[k], WNOHANG) == kids[k]) {
                kids[k] = 0;
                left--;
            }
        usleep(10000);
    }
    for (int k = 0; k < 2; k++)
        if (kids[k] > 0) {
            kill(kids[k], SIGKILL);
            waitpid(kids[k], NULL, 0);
        }
    cr_assert_eq(left, 0, "children did not finish in 30 s");
    for (int k = 0; k < 2; k++)
        cr_assert(WIFEXITED(status[k]) && WEXITSTATUS(status[k]) == 0, "child %d failed", k);
    cr_assert_eq(httpd_gets(srv, "/slow"), 1, "exactly one download");
}

Test(fetch, offline)
{
    httpd_add(srv, "/blob", HTTPD_OK, blob, BLOB_LEN, 0, NULL);
    struct art s;
    mk_art(&s, "teacher.bin", blob_sha, BLOB_LEN, 1, "/blob");
    o.offline = 1;
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == -1);
    cr_assert(strstr(err.msg, "offline"), "%s", err.msg);
    cr_assert(strstr(err.msg, "teacher.bin") && strstr(err.msg, blob_sha), "%s", err.msg);
    cr_assert_eq(httpd_gets(srv, "/blob"), 0, "offline never connects");

    /* A file:// mirror is fine offline. */
    char local[700], url[800];
    snprintf(local, sizeof local, "%s/local.bin", tmp_dir);
    write_file(local, blob, BLOB_LEN);
    snprintf(url, sizeof url, "file://%s", local);
    mk_art(&s, "teacher.bin", blob_sha, BLOB_LEN, 2, "/blob", url);
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == 0, "%s", err.msg);
    assert_file_is(path, blob, BLOB_LEN);
    cr_assert_eq(httpd_gets(srv, "/blob"), 0);

    /* And a cached copy is used offline. */
    unlink(local);
    mk_art(&s, "teacher.bin", blob_sha, BLOB_LEN, 1, "/blob");
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == 0, "%s", err.msg);
    cr_assert_eq(httpd_gets(srv, "/blob"), 0);
}

Test(fetch, file_mirror)
{
    char local[700], url[800], missing[800];
    snprintf(local, sizeof local, "%s/local.bin", tmp_dir);
    write_file(local, blob, BLOB_LEN);
    snprintf(url, sizeof url, "file://%s", local);
    snprintf(missing, sizeof missing, "file://%s/nope.bin", tmp_dir);
    struct art s;
    mk_art(&s, "local", blob_sha, BLOB_LEN, 2, missing, url);
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == 0, "%s", err.msg);
    assert_file_is(path, blob, BLOB_LEN);

    /* The checksum is verified for file:// too. */
    unsigned char *other = make_bytes(1000, 7);
    write_file(local, other, 1000);
    free(other);
    mk_art(&s, "local", "1111111111111111111111111111111111111111111111111111111111111111", 1000,
           1, url);
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == -1);
    cr_assert(strstr(err.msg, "sha256 mismatch"), "%s", err.msg);
}

Test(fetch, write_error_names_the_file)
{
    httpd_add(srv, "/blob", HTTPD_OK, blob, BLOB_LEN, 0, NULL);
    struct art s;
    mk_art(&s, "blob", blob_sha, BLOB_LEN, 1, "/blob");
    char entry[1024];
    entry_path(blob_sha, entry, sizeof entry);
    int pfd[2];
    cr_assert(pipe(pfd) == 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        /* A file-size limit stands in for a full disk: writes fail (EFBIG). */
        close(pfd[0]);
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {50000, 50000};
        setrlimit(RLIMIT_FSIZE, &rl);
        int rc = ckd_fetch(&o, &s.a, path, sizeof path, &err);
        if (write(pfd[1], err.msg, strlen(err.msg) + 1) < 0)
            _exit(3);
        _exit(rc == -1 ? 0 : 1);
    }
    close(pfd[1]);
    char msg[1100] = "";
    size_t got = 0;
    ssize_t r;
    while (got < sizeof msg - 1 && (r = read(pfd[0], msg + got, sizeof msg - 1 - got)) > 0)
        got += (size_t)r;
    close(pfd[0]);
    int st;
    waitpid(pid, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the fetch should fail: %s", msg);
    cr_assert(strstr(msg, ".part") && strstr(msg, "write error"), "%s", msg);
    cr_assert(!exists(entry), "no final entry");
    cr_assert(!exists_suffix(entry, ".part"), "no half-written .part");
}

/* ---- progress ----------------------------------------------------------------- */

struct calls {
    int n;
    int64_t last_now, last_total;
    int saw_failure;
};

static void record(void *user, const char *name, int64_t now, int64_t total, double rate)
{
    struct calls *c = user;
    c->n++;
    if (now < 0)
        c->saw_failure = 1;
    c->last_now = now;
    c->last_total = total;
}

Test(fetch, progress_callback_and_renderers)
{
    httpd_add(srv, "/slow", HTTPD_SLOW, blob, BLOB_LEN, 65536, NULL);
    struct art s;
    mk_art(&s, "blob", blob_sha, BLOB_LEN, 1, "/slow");
    struct calls c = {0};
    o.progress = record;
    o.progress_user = &c;
    o.progress_interval_s = 0;
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == 0, "%s", err.msg);
    cr_assert(c.n >= 3, "%d calls", c.n);
    cr_assert_eq(c.last_now, BLOB_LEN);
    cr_assert_eq(c.last_total, BLOB_LEN);
    cr_assert(!c.saw_failure);

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ckd_fetch_progress_tty(f, "blob", 150000, 300000, 2e6);
    ckd_fetch_progress_tty(f, "blob", 300000, 300000, 2e6);
    ckd_fetch_progress_log(f, "blob", 150000, 300000, 2e6);
    ckd_fetch_progress_log(f, "blob", 300000, 300000, 2e6);
    ckd_fetch_progress_log(f, "blob", -1, 300000, 0);
    fclose(f);
    cr_assert(strstr(buf, "\rblob") && strstr(buf, " 50% [###############...."), "%s", buf);
    cr_assert(strstr(buf, "100%"), "%s", buf);
    cr_assert(strstr(buf, "146.5 KiB of 293.0 KiB (50%), 1.9 MiB/s"), "%s", buf);
    cr_assert(strstr(buf, "fetch blob: done, 293.0 KiB\n"), "%s", buf);
    cr_assert(strstr(buf, "transfer attempt failed"), "%s", buf);
    free(buf);
}

/* ---- bad arguments -------------------------------------------------------------- */

Test(fetch, bad_arguments)
{
    struct art s;
    cr_assert(ckd_fetch(&o, NULL, path, sizeof path, &err) == -1);
    mk_art(&s, "x", "nothex", 5, 1, "/blob");
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == -1);
    cr_assert(strstr(err.msg, "64 hex"), "%s", err.msg);
    mk_art(&s, "x", blob_sha, 5, 1, "gopher://h/x");
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == -1);
    cr_assert(strstr(err.msg, "gopher://h/x"), "%s", err.msg);
    mk_art(&s, "x", blob_sha, 5, 0);
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == -1);
    cr_assert(strstr(err.msg, "no mirrors"), "%s", err.msg);
    mk_art(&s, "x", blob_sha, 5, 1, "/blob");
    cr_assert(ckd_fetch(&o, &s.a, path, 10, &err) == -1);
    cr_assert(strstr(err.msg, "does not fit"), "%s", err.msg);
    cr_assert(ckd_fetch(&o, &s.a, NULL, 0, &err) == -1);
}

/* ---- a damaged cache entry ------------------------------------------------------ */

Test(fetch, damaged_entry_is_replaced)
{
    httpd_add(srv, "/blob", HTTPD_OK, blob, BLOB_LEN, 0, NULL);
    char entry[1024];
    entry_path(blob_sha, entry, sizeof entry);
    mkdir_parent(entry);
    write_file(entry, blob, 1000); /* wrong size under the final name */
    struct art s;
    mk_art(&s, "blob", blob_sha, BLOB_LEN, 1, "/blob");
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == 0, "%s", err.msg);
    assert_file_is(path, blob, BLOB_LEN);
    cr_assert_eq(httpd_gets(srv, "/blob"), 1);

    /* Same size, wrong bytes: only verify_cached notices. */
    unsigned char *other = make_bytes(BLOB_LEN, 9);
    write_file(entry, other, BLOB_LEN);
    free(other);
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == 0, "%s", err.msg);
    cr_assert_eq(httpd_gets(srv, "/blob"), 1);
    o.verify_cached = 1;
    cr_assert(ckd_fetch(&o, &s.a, path, sizeof path, &err) == 0, "%s", err.msg);
    assert_file_is(path, blob, BLOB_LEN);
    cr_assert_eq(httpd_gets(srv, "/blob"), 2);
}

/* ---- ls, verify, gc ----------------------------------------------------------- */

struct seen {
    int n;
    char sha[4][65];
    char name[4][64];
    int ok[4], removed[4];
    int64_t bytes;
    char reasons[512];
};

static int on_list(void *user, const ckd_cache_entry *e)
{
    struct seen *s = user;
    if (s->n < 4) {
        snprintf(s->sha[s->n], 65, "%s", e->sha256);
        snprintf(s->name[s->n], 64, "%s", e->name ? e->name : "?");
    }
    s->n++;
    return 0;
}

static int on_verify(void *user, const ckd_cache_entry *e, int ok, const char *problem,
                     int removed)
{
    struct seen *s = user;
    if (s->n < 4) {
        snprintf(s->sha[s->n], 65, "%s", e->sha256);
        s->ok[s->n] = ok;
        s->removed[s->n] = removed;
        cr_assert(ok || (problem && strstr(problem, "hashes to")), "%s", problem);
    }
    s->n++;
    return 0;
}

static int on_gc(void *user, const char *file, int64_t bytes, const char *reason)
{
    struct seen *s = user;
    s->n++;
    s->bytes += bytes;
    size_t l = strlen(s->reasons);
    snprintf(s->reasons + l, sizeof s->reasons - l, "%s;", reason);
    return 0;
}

Test(fetch, cache_ls_verify_gc)
{
    unsigned char *b2 = make_bytes(5000, 3);
    char sha2[65];
    ckd_sha256_buffer(b2, 5000, sha2, NULL);
    httpd_add(srv, "/a", HTTPD_OK, blob, BLOB_LEN, 0, NULL);
    httpd_add(srv, "/b", HTTPD_OK, b2, 5000, 0, NULL);
    char pa[1024], pb[1024];
    struct art s;
    mk_art(&s, "first", blob_sha, BLOB_LEN, 1, "/a");
    cr_assert(ckd_fetch(&o, &s.a, pa, sizeof pa, &err) == 0, "%s", err.msg);
    mk_art(&s, "second", sha2, 5000, 1, "/b");
    cr_assert(ckd_fetch(&o, &s.a, pb, sizeof pb, &err) == 0, "%s", err.msg);

    /* A file that is not ours is never touched. */
    char stray[1100];
    snprintf(stray, sizeof stray, "%s/sha256/README", cache_dir);
    write_file(stray, "x", 1);

    struct seen ls = {0};
    cr_assert(ckd_cache_list(NULL, on_list, &ls, &err) == 0, "%s", err.msg);
    cr_assert_eq(ls.n, 2);
    int first = strcmp(blob_sha, sha2) < 0 ? 0 : 1; /* listed in hash order */
    cr_assert_str_eq(ls.sha[first], blob_sha);
    cr_assert_str_eq(ls.name[first], "first");
    cr_assert_str_eq(ls.name[1 - first], "second");

    /* Corrupt the second entry in place. */
    b2[0] ^= 1;
    chmod(pb, 0644);
    write_file(pb, b2, 5000);
    struct seen v = {0};
    size_t n_bad = 99;
    cr_assert(ckd_cache_verify(NULL, 0, on_verify, &v, &n_bad, &err) == 0, "%s", err.msg);
    cr_assert_eq(n_bad, 1);
    cr_assert_eq(v.n, 2);
    cr_assert(v.ok[first] && !v.ok[1 - first] && !v.removed[1 - first]);
    cr_assert(exists(pb), "only reported, not removed");
    memset(&v, 0, sizeof v);
    cr_assert(ckd_cache_verify(NULL, 1, on_verify, &v, &n_bad, &err) == 0, "%s", err.msg);
    cr_assert_eq(n_bad, 1);
    cr_assert(v.removed[1 - first]);
    cr_assert(!exists(pb) && !exists_suffix(pb, ".json"));

    /* Stale partials go; a locked one stays; the entry stays. */
    char fake[1024], part[1100], locked[1024], lpart[1100];
    cr_assert(ckd_cache_entry_path(NULL, "ab00000000000000000000000000000000000000000000000000000"
                                         "000000000", fake, sizeof fake, NULL) == 0);
    snprintf(part, sizeof part, "%s.part", fake);
    mkdir_parent(part);
    write_file(part, "abc", 3);
    cr_assert(ckd_cache_entry_path(NULL, "ab11111111111111111111111111111111111111111111111111111"
                                         "111111111", locked, sizeof locked, NULL) == 0);
    snprintf(lpart, sizeof lpart, "%s.part", locked);
    write_file(lpart, "abcd", 4);
    int lfd;
    cr_assert(ckd_cache_lock(locked, 1, &lfd, &err) == 0, "%s", err.msg);
    int other;
    cr_assert_eq(ckd_cache_lock(locked, 0, &other, &err), 1, "held: a second lock must fail");

    struct seen g = {0};
    int64_t freed = -1;
    ckd_cache_gc_opts go = {0};
    go.dry_run = 1;
    cr_assert(ckd_cache_gc(NULL, &go, on_gc, &g, &freed, &err) == 0, "%s", err.msg);
    cr_assert_eq(g.n, 1, "%s", g.reasons);
    cr_assert(exists(part), "dry run removes nothing");
    memset(&g, 0, sizeof g);
    go.dry_run = 0;
    cr_assert(ckd_cache_gc(NULL, &go, on_gc, &g, &freed, &err) == 0, "%s", err.msg);
    cr_assert_eq(g.n, 1, "%s", g.reasons);
    cr_assert_eq(freed, 3);
    cr_assert(!exists(part) && !exists_suffix(fake, ".lock"));
    cr_assert(exists(lpart), "a locked partial is left alone");
    cr_assert(exists(pa) && exists(stray));
    ckd_cache_unlock(locked, lfd);

    /* Keep-list: the entry listed stays; a bad keep item is an error. */
    const char *keep[] = {blob_sha};
    go.keep = keep;
    go.n_keep = 1;
    go.keep_only = 1;
    memset(&g, 0, sizeof g);
    cr_assert(ckd_cache_gc(NULL, &go, on_gc, &g, &freed, &err) == 0, "%s", err.msg);
    cr_assert(exists(pa));
    cr_assert(!exists(lpart), "now unlocked, the partial goes");

    /* Age: an entry unused for 10 days goes when the limit is 1 day. */
    char sc[1100];
    snprintf(sc, sizeof sc, "%s.json", pa);
    struct timeval old[2] = {{time(NULL) - 10 * 86400, 0}, {time(NULL) - 10 * 86400, 0}};
    cr_assert(utimes(sc, old) == 0);
    memset(&go, 0, sizeof go);
    go.max_age_days = 30;
    memset(&g, 0, sizeof g);
    cr_assert(ckd_cache_gc(NULL, &go, on_gc, &g, &freed, &err) == 0, "%s", err.msg);
    cr_assert(exists(pa), "10 days < 30 days");
    go.max_age_days = 1;
    cr_assert(ckd_cache_gc(NULL, &go, on_gc, &g, &freed, &err) == 0, "%s", err.msg);
    cr_assert(!exists(pa) && !exists(sc), "%s", g.reasons);
    cr_assert(strstr(g.reasons, "unused for 10 days"), "%s", g.reasons);
    cr_assert(exists(stray));

    const char *bad_keep[] = {"zz"};
    go.keep = bad_keep;
    go.n_keep = 1;
    cr_assert(ckd_cache_gc(NULL, &go, NULL, NULL, NULL, &err) == -1);
    cr_assert(strstr(err.msg, "keep-list"), "%s", err.msg);

    /* An empty or missing cache is fine. */
    memset(&ls, 0, sizeof ls);
    char nowhere[700];
    snprintf(nowhere, sizeof nowhere, "%s/none", tmp_dir);
    cr_assert(ckd_cache_list(nowhere, on_list, &ls, &err) == 0, "%s", err.msg);
    cr_assert_eq(ls.n, 0);
    free(b2);
}

/* ---- teacher embedding entries ------------------------------------------------ */

/* An entry as the trainer writes it: a key JSON whose SHA-256 names the
 * file, the tensors, and the SHA-256 of their bytes (image_embeds,
 * text_embeds, text_offsets, valid, logit_scale, in that order). sum NULL:
 * the right checksum. Returns the key in key_hex. */
static void write_embeddings(char *file, size_t cap, char key_hex[65], const char *sum)
{
    static const char key[] =
        "{\"data\":{\"size\":2,\"source\":{\"path\":\"/data/t10k-images-idx3-ubyte.gz\"},"
        "\"spec\":{\"reader\":\"fashion-mnist\",\"split\":\"test\"}},"
        "\"format\":\"clipkd teacher embeddings 1\",\"teacher\":{\"config\":{\"name\":\"ViT-B-32\"},"
        "\"plugin\":\"clip\",\"weights\":\"sha256:0123456789abcdef0123456789abcdef0123456789abcdef"
        "0123456789abcdef\"}}";
    static const float img[4] = {1, 0, 0, 1}, txt[6] = {1, 0, 0, 1, 0.6f, 0.8f}, scale = 4.6f;
    static const int64_t off[3] = {0, 1, 3};
    static const uint8_t valid[2] = {1, 1};
    char hex[65];
    ckd_sha256 *h = ckd_sha256_new(NULL);
    ckd_sha256_update(h, img, sizeof img, NULL);
    ckd_sha256_update(h, txt, sizeof txt, NULL);
    ckd_sha256_update(h, off, sizeof off, NULL);
    ckd_sha256_update(h, valid, sizeof valid, NULL);
    ckd_sha256_update(h, &scale, sizeof scale, NULL);
    ckd_sha256_final(h, hex, NULL);
    ckd_sha256_free(h);
    cr_assert(ckd_sha256_buffer(key, strlen(key), key_hex, NULL) == 0);
    snprintf(file, cap, "%s/teacher-embeddings/%s.safetensors", cache_dir, key_hex);
    mkdir_parent(file);
    ckd_st_writer *w = ckd_st_writer_new();
    cr_assert(ckd_st_writer_add(w, "image_embeds", CKD_DT_F32, 2, (int64_t[]){2, 2}, img, &err) == 0 &&
                  ckd_st_writer_add(w, "text_embeds", CKD_DT_F32, 2, (int64_t[]){3, 2}, txt, &err) == 0 &&
                  ckd_st_writer_add(w, "text_offsets", CKD_DT_I64, 1, (int64_t[]){3}, off, &err) == 0 &&
                  ckd_st_writer_add(w, "valid", CKD_DT_U8, 1, (int64_t[]){2}, valid, &err) == 0 &&
                  ckd_st_writer_add(w, "logit_scale", CKD_DT_F32, 0, NULL, &scale, &err) == 0 &&
                  ckd_st_writer_set_metadata(w, "key", key, &err) == 0 &&
                  ckd_st_writer_set_metadata(w, "sha256", sum ? sum : hex, &err) == 0 &&
                  ckd_st_writer_save(w, file, &err) == 0,
              "%s", err.msg);
    ckd_st_writer_free(w);
}

struct embeddings_seen {
    int n, kind, ok;
    char key[65], name[256], problem[CKD_ERROR_MAX];
    int64_t size, expected;
};

static int on_embeddings(void *user, const ckd_cache_entry *e)
{
    struct embeddings_seen *s = user;
    if (e->kind != CKD_CACHE_TEACHER_EMBEDDINGS)
        return 0;
    s->n++;
    snprintf(s->key, sizeof s->key, "%s", e->sha256);
    snprintf(s->name, sizeof s->name, "%s", e->name ? e->name : "");
    s->size = e->size;
    s->expected = e->expected_size;
    return 0;
}

static int on_embeddings_verify(void *user, const ckd_cache_entry *e, int ok, const char *problem,
                                int removed)
{
    struct embeddings_seen *s = user;
    (void)removed;
    on_embeddings(user, e);
    s->ok = ok;
    snprintf(s->problem, sizeof s->problem, "%s", problem ? problem : "");
    return 0;
}

static struct embeddings_seen verify_embeddings(void)
{
    struct embeddings_seen s = {0};
    size_t n_bad = 99;
    cr_assert(ckd_cache_verify(NULL, 0, on_embeddings_verify, &s, &n_bad, &err) == 0, "%s", err.msg);
    cr_assert_eq(s.n, 1);
    cr_assert_eq(n_bad, (size_t)!s.ok);
    return s;
}

Test(fetch, cache_teacher_embeddings_ls_and_verify)
{
    char file[1024], key[65];
    write_embeddings(file, sizeof file, key, NULL);
    struct embeddings_seen ls = {0};
    cr_assert(ckd_cache_list(NULL, on_embeddings, &ls, &err) == 0, "%s", err.msg);
    cr_assert_eq(ls.n, 1);
    cr_assert_str_eq(ls.key, key);
    cr_assert_str_eq(ls.name, "teacher embeddings: clip ViT-B-32 (weights 0123456789ab) on "
                              "fashion-mnist/test, 2 samples");
    cr_assert(ls.size > 0 && ls.expected == ls.size, "%lld vs %lld", (long long)ls.size,
              (long long)ls.expected);
    cr_assert(verify_embeddings().ok);

    /* Truncated: the size against the header says so, before any parsing. */
    cr_assert(truncate(file, ls.size - 3) == 0);
    struct embeddings_seen v = verify_embeddings();
    cr_assert(!v.ok);
    char want[128];
    snprintf(want, sizeof want, "truncated: %lld bytes, but its header describes %lld",
             (long long)ls.size - 3, (long long)ls.size);
    cr_assert_str_eq(v.problem, want);

    /* Whole, but the tensors do not hash to the stored checksum. */
    write_embeddings(file, sizeof file, key, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
    v = verify_embeddings();
    cr_assert(!v.ok && strstr(v.problem, "metadata says 0011"), "%s", v.problem);

    /* Under another key's name. */
    char other[1100];
    snprintf(other, sizeof other, "%s/teacher-embeddings/%064d.safetensors", cache_dir, 0);
    write_embeddings(file, sizeof file, key, NULL);
    cr_assert(rename(file, other) == 0);
    v = verify_embeddings();
    cr_assert(!v.ok && strstr(v.problem, "not to its name"), "%s", v.problem);

    /* remove_bad deletes it; the stray file stays. */
    char stray[1100];
    snprintf(stray, sizeof stray, "%s/teacher-embeddings/README", cache_dir);
    write_file(stray, "x", 1);
    size_t n_bad = 0;
    cr_assert(ckd_cache_verify(NULL, 1, NULL, NULL, &n_bad, &err) == 0, "%s", err.msg);
    cr_assert_eq(n_bad, 1);
    cr_assert(!exists(other) && exists(stray));
}

Test(fetch, cache_teacher_embeddings_gc)
{
    char file[1024], key[65], tmpf[1100], lock[1100];
    write_embeddings(file, sizeof file, key, NULL);
    /* A write that died (its temporary file) and a lock nobody holds go;
     * while a run holds the entry's lock, its temporary file stays. */
    snprintf(tmpf, sizeof tmpf, "%s.tmp.4242", file);
    snprintf(lock, sizeof lock, "%s.lock", file);
    write_file(tmpf, "abcde", 5);
    int fd;
    cr_assert(ckd_cache_lock(file, 1, &fd, &err) == 0, "%s", err.msg);
    struct seen g = {0};
    ckd_cache_gc_opts go = {0};
    cr_assert(ckd_cache_gc(NULL, &go, on_gc, &g, NULL, &err) == 0, "%s", err.msg);
    cr_assert_eq(g.n, 0, "%s", g.reasons);
    cr_assert(exists(tmpf));
    ckd_cache_unlock(file, fd);
    write_file(lock, "", 0);
    go.dry_run = 1;
    cr_assert(ckd_cache_gc(NULL, &go, on_gc, &g, NULL, &err) == 0, "%s", err.msg);
    cr_assert(g.n == 2 && exists(tmpf) && exists(lock), "%s", g.reasons);
    memset(&g, 0, sizeof g);
    go.dry_run = 0;
    int64_t freed = 0;
    cr_assert(ckd_cache_gc(NULL, &go, on_gc, &g, &freed, &err) == 0, "%s", err.msg);
    cr_assert_eq(g.n, 2, "%s", g.reasons);
    cr_assert_str_eq(g.reasons, "stale partial;stale partial;");
    cr_assert_eq(freed, 5);
    cr_assert(!exists(tmpf) && !exists(lock) && exists(file));

    /* Age: last read 10 days ago. Listing and verifying do not count as a
     * use, so the entry stays 10 days old through them. */
    struct timeval old[2] = {{time(NULL) - 10 * 86400, 0}, {time(NULL) - 10 * 86400, 0}};
    cr_assert(utimes(file, old) == 0);
    cr_assert(ckd_cache_list(NULL, NULL, NULL, &err) == 0, "%s", err.msg);
    cr_assert(verify_embeddings().ok);
    go.max_age_days = 30;
    memset(&g, 0, sizeof g);
    cr_assert(ckd_cache_gc(NULL, &go, on_gc, &g, NULL, &err) == 0, "%s", err.msg);
    cr_assert(g.n == 0 && exists(file), "%s", g.reasons);
    /* The keep-list protects it by its key. */
    const char *keep[] = {key};
    go.keep = keep;
    go.n_keep = 1;
    go.max_age_days = 1;
    cr_assert(ckd_cache_gc(NULL, &go, on_gc, &g, NULL, &err) == 0, "%s", err.msg);
    cr_assert(g.n == 0 && exists(file), "%s", g.reasons);
    go.n_keep = 0;
    cr_assert(ckd_cache_gc(NULL, &go, on_gc, &g, NULL, &err) == 0, "%s", err.msg);
    cr_assert(!exists(file), "%s", g.reasons);
    cr_assert_str_eq(g.reasons, "unused for 10 days;");
}
