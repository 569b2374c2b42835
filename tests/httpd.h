/* tests/httpd.h — a tiny HTTP/1.1 server on 127.0.0.1 for the fetch tests.
 *
 * It serves an in-memory set of paths from a thread of the test program, one
 * request per connection ("Connection: close"), each connection in its own
 * thread so that a stalled response does not hold up the others. Everything
 * is bounded: connections, request size, per-socket timeouts and the
 * server's lifetime, so a test that goes wrong still ends. */
#ifndef CLIPKD_TESTS_HTTPD_H
#define CLIPKD_TESTS_HTTPD_H

#include <stddef.h>

enum httpd_mode {
    HTTPD_OK,        /* 200 with Content-Length; honours "Range: bytes=N-" with 206 */
    HTTPD_NO_RANGE,  /* like OK but ignores Range headers (always 200, whole body) */
    HTTPD_REDIRECT,  /* 302 to `location` */
    HTTPD_DROP_ONCE, /* first GET: headers for the whole body, `param` bytes, close;
                        then like OK */
    HTTPD_STALL,     /* headers, then nothing until the client gives up */
    HTTPD_WRONG,     /* 200 with the body's bytes altered (same length) */
    HTTPD_SLOW,      /* like OK, `param` bytes every 20 ms */
    HTTPD_FAIL_ONCE  /* first GET: 503; then like OK */
};

struct httpd;

/* Binds 127.0.0.1 on a free port and starts serving; NULL on failure. */
struct httpd *httpd_start(void);
int httpd_port(const struct httpd *h);

/* Adds a path (before fetching from it; an existing path is refused, -1). The body is copied; location is used by
 * HTTPD_REDIRECT (a path such as "/blob" or a full URL). */
int httpd_add(struct httpd *h, const char *path, enum httpd_mode mode, const void *body,
              size_t len, size_t param, const char *location);

/* Requests seen for a path so far: GETs, and how many of them had a Range
 * header (the last Range start goes to *last_range if not NULL). */
int httpd_gets(struct httpd *h, const char *path);
int httpd_ranges(struct httpd *h, const char *path, long long *last_range);

/* Stops the server and joins its threads. */
void httpd_stop(struct httpd *h);

#endif
