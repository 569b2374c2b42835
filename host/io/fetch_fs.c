/* The file-system side of a download (see fetch.c): directories made on
 * demand, data and sidecars written whole, renames made durable. */
#include "config.h"

/* pwrite, O_CLOEXEC, gmtime_r even under -std=c11. */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clipkd/fetch.h"
#include "fetch_internal.h"

/* mkdir -p of the directory part of path. */
int ckdi_mkdir_parents(const char *path, ckd_error *err)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", path);
    char *slash = strrchr(p, '/');
    if (!slash || slash == p)
        return 0;
    *slash = '\0';
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0777) < 0 && errno != EEXIST)
                return ckd_errorf(err, "%s: cannot create cache directory: %s", p,
                                  strerror(errno));
            *s = c;
            if (!c)
                break;
        }
    }
    return 0;
}

/* fsync the directory holding path so that a rename into it is durable. */
void ckdi_sync_parent(const char *path)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", path);
    char *slash = strrchr(p, '/');
    if (!slash)
        return;
    *slash = '\0';
    int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

int ckdi_write_all(int fd, const char *p, size_t n, int64_t off)
{
    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

/* Writes the sidecar <entry>.json (name, size, urls, source, fetched) via a
 * temporary file, so a crash never leaves a torn sidecar. */
int ckdi_write_sidecar(const char *entry, const ckd_artifact *a, const char *sha,
                         const char *source, ckd_error *err)
{
    char tmp[PATH_MAX], fin[PATH_MAX], when[32];
    if (snprintf(fin, sizeof fin, "%s.json", entry) >= (int)sizeof fin ||
        snprintf(tmp, sizeof tmp, "%s.json.tmp", entry) >= (int)sizeof tmp)
        return ckd_errorf(err, "%s: path too long for the sidecar", entry);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *urls = json_array();
    for (size_t i = 0; urls && i < a->n_urls; i++)
        json_array_append_new(urls, json_string(a->urls[i]));
    json_t *o = json_pack("{s:s?, s:s, s:I, s:o, s:s, s:s, s:I}", "name", a->name, "sha256",
                          sha, "size", (json_int_t)a->size, "urls",
                          urls ? urls : json_array(), "source", source, "fetched", when,
                          "fetched_unix", (json_int_t)now);
    char *text = o ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    if (!text)
        return ckd_errorf(err, "%s: out of memory composing the sidecar", fin);
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        rc = ckd_errorf(err, "%s: cannot create: %s", tmp, strerror(errno));
    } else {
        size_t len = strlen(text);
        text[len] = '\n'; /* json_dumps leaves room for the NUL we replace */
        if (ckdi_write_all(fd, text, len + 1, 0) < 0 || fsync(fd) < 0)
            rc = ckd_errorf(err, "%s: write error: %s", tmp, strerror(errno));
        if (close(fd) < 0 && rc == 0)
            rc = ckd_errorf(err, "%s: write error: %s", tmp, strerror(errno));
        if (rc == 0 && rename(tmp, fin) < 0)
            rc = ckd_errorf(err, "%s: cannot rename to %s: %s", tmp, fin, strerror(errno));
        if (rc < 0)
            unlink(tmp);
    }
    free(text);
    return rc;
}
