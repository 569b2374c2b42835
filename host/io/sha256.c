/* Streaming SHA-256 over OpenSSL's EVP interface: the one hash that names
 * cache entries, so it has to be right and fast on multi-gigabyte files. */
#include "config.h"

/* flock, pwrite, strndup, utimensat, O_CLOEXEC even under -std=c11. */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE 1
#endif

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "clipkd/fetch.h"

struct ckd_sha256 {
    EVP_MD_CTX *ctx;
    int done;
};

ckd_sha256 *ckd_sha256_new(ckd_error *err)
{
    ckd_sha256 *h = calloc(1, sizeof *h);
    if (!h) {
        ckd_errorf(err, "sha256: out of memory");
        return NULL;
    }
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        /* Its only failure short of a broken OpenSSL is a refused allocation. */
        ckd_errorf(err, "sha256: OpenSSL could not start a SHA-256 digest (out of memory)");
        ERR_clear_error(); /* the error queue OpenSSL filled, which is ours to empty */
        ckd_sha256_free(h);
        return NULL;
    }
    return h;
}

int ckd_sha256_update(ckd_sha256 *h, const void *data, size_t n, ckd_error *err)
{
    if (!h || h->done)
        return ckd_errorf(err, "sha256: update on a finished or missing digest");
    if (n && EVP_DigestUpdate(h->ctx, data, n) != 1)
        return ckd_errorf(err, "sha256: OpenSSL digest update failed");
    return 0;
}

static void to_hex(const unsigned char *d, size_t n, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 15];
    }
    hex[2 * n] = '\0';
}

int ckd_sha256_final(ckd_sha256 *h, char hex[65], ckd_error *err)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!h || h->done)
        return ckd_errorf(err, "sha256: final on a finished or missing digest");
    h->done = 1;
    if (EVP_DigestFinal_ex(h->ctx, d, &n) != 1 || n != 32)
        return ckd_errorf(err, "sha256: OpenSSL digest final failed");
    to_hex(d, 32, hex);
    return 0;
}

void ckd_sha256_free(ckd_sha256 *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

int ckd_sha256_buffer(const void *data, size_t n, char hex[65], ckd_error *err)
{
    ckd_sha256 *h = ckd_sha256_new(err);
    if (!h)
        return -1;
    int rc = ckd_sha256_update(h, data, n, err);
    if (rc == 0)
        rc = ckd_sha256_final(h, hex, err);
    ckd_sha256_free(h);
    return rc;
}

int ckd_sha256_file(const char *path, char hex[65], int64_t *size_out, ckd_error *err)
{
    /* 1 MiB reads keep syscall overhead negligible next to the hash itself. */
    enum { BUF = 1 << 20 };
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ckd_errorf(err, "%s: cannot open for hashing: %s", path, strerror(errno));
#ifdef POSIX_FADV_SEQUENTIAL
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    unsigned char *buf = malloc(BUF);
    ckd_sha256 *h = buf ? ckd_sha256_new(err) : NULL;
    if (!h) {
        if (!buf)
            ckd_errorf(err, "%s: out of memory for the hash buffer", path);
        free(buf);
        close(fd);
        return -1;
    }
    int64_t total = 0;
    int rc = 0;
    for (;;) {
        ssize_t r = read(fd, buf, BUF);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = ckd_errorf(err, "%s: read error at byte %lld while hashing: %s", path,
                            (long long)total, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        if (ckd_sha256_update(h, buf, (size_t)r, err) < 0) {
            rc = ckd_error_prefix(err, "%s", path);
            break;
        }
        total += r;
    }
    if (rc == 0 && ckd_sha256_final(h, hex, err) < 0)
        rc = ckd_error_prefix(err, "%s", path);
    if (rc == 0 && size_out)
        *size_out = total;
    ckd_sha256_free(h);
    free(buf);
    close(fd);
    return rc;
}

int ckd_sha256_is_hex(const char *s)
{
    if (!s)
        return 0;
    size_t i = 0;
    for (; s[i]; i++) {
        char c = s[i];
        int ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (!ok || i >= 64)
            return 0;
    }
    return i == 64;
}

int ckd_sha256_lower(const char *s, char out[65])
{
    if (!ckd_sha256_is_hex(s))
        return -1;
    for (int i = 0; i < 64; i++)
        out[i] = (char)((s[i] >= 'A' && s[i] <= 'F') ? s[i] - 'A' + 'a' : s[i]);
    out[64] = '\0';
    return 0;
}
