/* A loopback HTTP/1.1 server for the fetch tests (see httpd.h). Only ever
 * binds 127.0.0.1. */
#include "config.h"

#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE 1
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "httpd.h"

#define MAX_PATHS 32
#define MAX_CONNS 128       /* connections over the server's life */
#define LIFETIME_S 120.0    /* the accept loop ends after this, whatever happens */
#define STALL_MAX_S 10.0    /* a stalled response gives up after this */
#define IO_TIMEOUT_S 5      /* per-socket send/receive timeout */

struct route {
    char path[256];
    enum httpd_mode mode;
    unsigned char *body;
    size_t len, param;
    char location[512];
    int gets, ranges;
    long long last_range;
};

struct httpd {
    int fd, port;
    atomic_int stop;
    pthread_t acceptor;
    pthread_mutex_t mu;
    struct route routes[MAX_PATHS];
    int n_routes;
    pthread_t conns[MAX_CONNS];
    int n_conns;
};

struct conn {
    struct httpd *h;
    int fd;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static int send_head(int fd, int code, const char *reason, size_t len, const char *extra)
{
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n",
                     code, reason, len, extra ? extra : "");
    return n > 0 && (size_t)n < sizeof head ? send_all(fd, head, (size_t)n) : -1;
}

/* Waits (bounded) until the client closes its end or the server stops. */
static void wait_for_close(struct httpd *h, int fd)
{
    double t0 = now_s();
    char junk[256];
    while (!h->stop && now_s() - t0 < STALL_MAX_S) {
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, 50);
        if (r > 0 && recv(fd, junk, sizeof junk, 0) <= 0)
            return;
    }
}

static void serve(struct httpd *h, int fd)
{
    char req[8192];
    size_t got = 0;
    /* Read the request head: bounded by the buffer and the socket timeout. */
    while (got < sizeof req - 1) {
        ssize_t r = recv(fd, req + got, sizeof req - 1 - got, 0);
        if (r <= 0)
            return;
        got += (size_t)r;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    req[got] = '\0';
    char method[16], target[512];
    if (sscanf(req, "%15s %511s", method, target) != 2) {
        send_head(fd, 400, "Bad Request", 0, NULL);
        return;
    }
    target[strcspn(target, "?#")] = '\0';
    long long range = -1;
    for (char *line = strstr(req, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
        if (!strncasecmp(line + 2, "Range:", 6)) {
            const char *v = strstr(line + 2, "bytes=");
            range = v ? atoll(v + 6) : 0;
        }
    }

    pthread_mutex_lock(&h->mu);
    struct route *rt = NULL;
    for (int i = 0; i < h->n_routes; i++)
        if (!strcmp(h->routes[i].path, target))
            rt = &h->routes[i];
    int first = 0;
    struct route r = {0};
    if (rt && !strcmp(method, "GET")) {
        first = rt->gets == 0;
        rt->gets++;
        if (range >= 0) {
            rt->ranges++;
            rt->last_range = range;
        }
    }
    if (rt)
        r = *rt; /* body pointer stays valid: routes are only freed at stop */
    pthread_mutex_unlock(&h->mu);

    if (!rt || strcmp(method, "GET") != 0) {
        const char *msg = "not found\n";
        if (send_head(fd, 404, "Not Found", strlen(msg), NULL) == 0)
            send_all(fd, msg, strlen(msg));
        return;
    }
    if (r.mode == HTTPD_REDIRECT) {
        char loc[600];
        snprintf(loc, sizeof loc, "Location: %s\r\n", r.location);
        send_head(fd, 302, "Found", 0, loc);
        return;
    }
    if (r.mode == HTTPD_FAIL_ONCE && first) {
        send_head(fd, 503, "Service Unavailable", 0, NULL);
        return;
    }
    if (r.mode == HTTPD_STALL) {
        if (send_head(fd, 200, "OK", r.len, NULL) == 0)
            wait_for_close(h, fd);
        return;
    }
    size_t from = 0;
    int use_range = range >= 0 && r.mode != HTTPD_NO_RANGE && r.mode != HTTPD_WRONG &&
                    !(r.mode == HTTPD_DROP_ONCE && first);
    if (use_range) {
        if ((size_t)range >= r.len) {
            char cr[128];
            snprintf(cr, sizeof cr, "Content-Range: bytes */%zu\r\n", r.len);
            send_head(fd, 416, "Range Not Satisfiable", 0, cr);
            return;
        }
        from = (size_t)range;
        char cr[128];
        snprintf(cr, sizeof cr, "Content-Range: bytes %zu-%zu/%zu\r\n", from, r.len - 1, r.len);
        if (send_head(fd, 206, "Partial Content", r.len - from, cr) < 0)
            return;
    } else if (send_head(fd, 200, "OK", r.len, NULL) < 0) {
        return;
    }
    const unsigned char *body = r.body + from;
    size_t n = r.len - from;
    if (r.mode == HTTPD_WRONG) {
        unsigned char *w = malloc(n ? n : 1);
        if (!w)
            return;
        for (size_t i = 0; i < n; i++)
            w[i] = body[i] ^ 0x5a;
        send_all(fd, w, n);
        free(w);
    } else if (r.mode == HTTPD_DROP_ONCE && first) {
        send_all(fd, body, r.param < n ? r.param : n);
        /* Then hang up: the client sees a short body. */
    } else if (r.mode == HTTPD_SLOW) {
        size_t step = r.param ? r.param : 1024;
        for (size_t off = 0; off < n && !h->stop; off += step) {
            if (send_all(fd, body + off, n - off < step ? n - off : step) < 0)
                return;
            nap_ms(20);
        }
    } else {
        send_all(fd, body, n);
    }
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    struct timeval tv = {IO_TIMEOUT_S, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    serve(c->h, c->fd);
    shutdown(c->fd, SHUT_WR);
    close(c->fd);
    free(c);
    return NULL;
}

static void *accept_main(void *arg)
{
    struct httpd *h = arg;
    double t0 = now_s();
    while (!h->stop && h->n_conns < MAX_CONNS && now_s() - t0 < LIFETIME_S) {
        struct pollfd p = {h->fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(h->fd, NULL, NULL);
        if (fd < 0)
            continue;
        struct conn *c = malloc(sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->h = h;
        c->fd = fd;
        if (pthread_create(&h->conns[h->n_conns], NULL, conn_main, c) != 0) {
            close(fd);
            free(c);
            continue;
        }
        h->n_conns++;
    }
    return NULL;
}

struct httpd *httpd_start(void)
{
    struct httpd *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    pthread_mutex_init(&h->mu, NULL);
    h->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (h->fd < 0)
        goto fail;
    int one = 1;
    setsockopt(h->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t al = sizeof a;
    if (bind(h->fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(h->fd, 16) < 0 ||
        getsockname(h->fd, (struct sockaddr *)&a, &al) < 0)
        goto fail;
    h->port = ntohs(a.sin_port);
    if (pthread_create(&h->acceptor, NULL, accept_main, h) != 0)
        goto fail;
    return h;
fail:
    if (h->fd >= 0)
        close(h->fd);
    pthread_mutex_destroy(&h->mu);
    free(h);
    return NULL;
}

int httpd_port(const struct httpd *h)
{
    return h->port;
}

int httpd_add(struct httpd *h, const char *path, enum httpd_mode mode, const void *body,
              size_t len, size_t param, const char *location)
{
    /* Routes are never replaced: a connection thread may be reading one. */
    unsigned char *copy = malloc(len ? len : 1);
    if (!copy)
        return -1;
    if (len)
        memcpy(copy, body, len);
    pthread_mutex_lock(&h->mu);
    int rc = -1;
    int dup = 0;
    for (int i = 0; i < h->n_routes; i++)
        dup |= !strcmp(h->routes[i].path, path);
    if (!dup && h->n_routes < MAX_PATHS && strlen(path) < sizeof h->routes[0].path) {
        struct route *rt = &h->routes[h->n_routes++];
        memset(rt, 0, sizeof *rt);
        snprintf(rt->path, sizeof rt->path, "%s", path);
        rt->mode = mode;
        rt->body = copy;
        rt->len = len;
        rt->param = param;
        snprintf(rt->location, sizeof rt->location, "%s", location ? location : "");
        copy = NULL;
        rc = 0;
    }
    pthread_mutex_unlock(&h->mu);
    free(copy);
    return rc;
}

int httpd_gets(struct httpd *h, const char *path)
{
    int n = 0;
    pthread_mutex_lock(&h->mu);
    for (int i = 0; i < h->n_routes; i++)
        if (!strcmp(h->routes[i].path, path))
            n = h->routes[i].gets;
    pthread_mutex_unlock(&h->mu);
    return n;
}

int httpd_ranges(struct httpd *h, const char *path, long long *last_range)
{
    int n = 0;
    pthread_mutex_lock(&h->mu);
    for (int i = 0; i < h->n_routes; i++)
        if (!strcmp(h->routes[i].path, path)) {
            n = h->routes[i].ranges;
            if (last_range)
                *last_range = h->routes[i].last_range;
        }
    pthread_mutex_unlock(&h->mu);
    return n;
}

void httpd_stop(struct httpd *h)
{
    if (!h)
        return;
    h->stop = 1;
    pthread_join(h->acceptor, NULL);
    for (int i = 0; i < h->n_conns; i++)
        pthread_join(h->conns[i], NULL);
    close(h->fd);
    for (int i = 0; i < h->n_routes; i++)
        free(h->routes[i].body);
    pthread_mutex_destroy(&h->mu);
    free(h);
}
