/* IDX files (the MNIST format): a 4-byte magic, big-endian 32-bit
 * dimensions, then the values. Read through zlib's gz* functions, which pass
 * plain files through unchanged, so one path handles both. Offsets in
 * messages count bytes of the decompressed stream, which is what the format
 * describes. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "clipkd/data.h"

/* No IDX file clipkd reads comes near this; a header that asks for more is
 * corrupt. */
#define MAX_IDX_BYTES ((uint64_t)1 << 32)

/* Reads up to n bytes and returns how many it got; a short count means the
 * data ended. why[] receives zlib's message when the stream is corrupt or a
 * gzip stream was cut short (zlib says so only after the fact), else "". */
static size_t read_some(gzFile g, uint8_t *buf, size_t n, char why[256])
{
    size_t got = 0;
    why[0] = '\0';
    while (got < n) {
        unsigned chunk = n - got > (1u << 30) ? 1u << 30 : (unsigned)(n - got);
        int r = gzread(g, buf + got, chunk);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    int code;
    const char *msg = gzerror(g, &code);
    if (code != Z_OK && code != Z_STREAM_END)
        snprintf(why, 256, "%s", msg ? msg : "error");
    return got;
}

/* Reads the out->nbytes data bytes into out->data, growing the buffer as
 * the bytes arrive (from 1 MiB, doubling) rather than allocating what the
 * header claims up front: a 19-byte file whose header says 3.6 GB must fail
 * as truncated having allocated next to nothing. Returns the bytes read;
 * out->data is NULL only when memory ran out. */
static size_t read_growing(gzFile g, ckd_idx *out, char why[256])
{
    size_t want = out->nbytes, cap = want < ((size_t)1 << 20) ? want : (size_t)1 << 20, got = 0;
    out->data = malloc(cap ? cap : 1);
    why[0] = '\0';
    while (out->data) {
        got += read_some(g, out->data + got, cap - got, why);
        if (got < cap || cap == want || why[0])
            break;
        size_t next = cap > want / 2 ? want : 2 * cap;
        uint8_t *bigger = realloc(out->data, next);
        if (!bigger) {
            free(out->data);
            out->data = NULL;
            break;
        }
        out->data = bigger;
        cap = next;
    }
    return got;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int ckd_idx_load(const char *path, int ndim, ckd_idx *out, ckd_error *err)
{
    memset(out, 0, sizeof *out);
    if (ndim < 1 || ndim > 4)
        return ckd_errorf(err, "%s: IDX files with %d dimensions are not supported (1 to 4)", path,
                          ndim);
    gzFile g = gzopen(path, "rb");
    if (!g)
        return ckd_errorf(err, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
    gzbuffer(g, 1 << 17);
    char why[256];
    uint8_t head[4 + 4 * 4];
    size_t head_len = 4 + 4 * (size_t)ndim;
    size_t got = read_some(g, head, head_len, why);
    if (got < head_len) {
        gzclose(g);
        return ckd_errorf(err, "%s: truncated at offset %zu: the IDX header needs %zu bytes "
                               "(magic and %d dimension%s)%s%s",
                          path, got, head_len, ndim, ndim == 1 ? "" : "s",
                          why[0] ? "; zlib: " : "", why);
    }
    uint32_t want = 0x00000800u | (uint32_t)ndim, magic = be32(head);
    if (magic != want) {
        gzclose(g);
        return ckd_errorf(err, "%s: offset 0: expected the IDX magic 0x%08x (unsigned bytes, %d "
                               "dimension%s), got 0x%08x",
                          path, want, ndim, ndim == 1 ? "" : "s", magic);
    }
    uint64_t total = 1;
    out->ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        out->dims[d] = be32(head + 4 + 4 * d);
        total *= out->dims[d];
        if (total > MAX_IDX_BYTES) {
            gzclose(g);
            return ckd_errorf(err, "%s: offset %d: dimension %d (%u) makes the data larger than "
                                   "%llu bytes; the header is corrupt",
                              path, 4 + 4 * d, d, out->dims[d],
                              (unsigned long long)MAX_IDX_BYTES);
        }
    }
    char shape[96] = "";
    for (int d = 0; d < ndim; d++) {
        size_t k = strlen(shape);
        snprintf(shape + k, sizeof shape - k, "%s%u", d ? " x " : "", out->dims[d]);
    }
    out->nbytes = (size_t)total;
    got = read_growing(g, out, why);
    if (!out->data) {
        gzclose(g);
        return ckd_errorf(err, "%s: out of memory for %s bytes", path, shape);
    }
    if (got < out->nbytes || why[0]) {
        gzclose(g);
        ckd_idx_free(out);
        return ckd_errorf(err, "%s: truncated at offset %zu: the header gives %s = %llu bytes "
                               "of data from offset %zu%s%s",
                          path, head_len + got, shape, (unsigned long long)total, head_len,
                          why[0] ? "; zlib: " : "", why);
    }
    uint8_t extra;
    got = read_some(g, &extra, 1, why);
    gzclose(g);
    if (got != 0 || why[0]) {
        ckd_idx_free(out);
        if (got == 0)
            return ckd_errorf(err, "%s: offset %zu: corrupt data after the %s values: %s", path,
                              head_len + (size_t)total, shape, why);
        return ckd_errorf(err, "%s: offset %zu: unexpected bytes after the %s = %llu bytes of "
                               "data the header gives",
                          path, head_len + (size_t)total, shape, (unsigned long long)total);
    }
    return 0;
}

void ckd_idx_free(ckd_idx *idx)
{
    if (!idx)
        return;
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}
