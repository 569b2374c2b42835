/* The central directory of a memory-mapped ZIP file; see zip_read.h.
 *
 * Layout (APPNOTE 6.3): local headers and data, then the central directory
 * (one header per member), then the end-of-central-directory record (EOCD,
 * 22 bytes + a comment of up to 65535). An archive over 4 GiB or with over
 * 65535 members has 0xFFFF/0xFFFFFFFF in the EOCD and the true values in a
 * ZIP64 EOCD, found through the 20-byte locator just before the EOCD; a
 * member's sizes and offset then come from its ZIP64 extra field (id 1). */
#include "config.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "zip_read.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u

static uint16_t rd16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const unsigned char *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const unsigned char *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

int zip_sniff(const unsigned char *p, size_t n)
{
    return n >= 4 && (rd32(p) == SIG_LOCAL || rd32(p) == SIG_EOCD);
}

static int cmp_member(const void *a, const void *b)
{
    return strcmp(((const zip_member *)a)->name, ((const zip_member *)b)->name);
}

void zip_dir_free(zip_dir *d)
{
    for (size_t i = 0; d->members && i < d->n; i++)
        free(d->members[i].name);
    free(d->members);
    d->members = NULL;
    d->n = 0;
}

/* Where the central directory is and how many members it has. */
static int find_directory(const unsigned char *p, size_t n, const char *path, uint64_t *cd_off,
                          uint64_t *cd_size, uint64_t *count, ckd_error *err)
{
    if (n < 22)
        return ckd_errorf(err, "%s: %zu bytes is too short for a ZIP file (truncated?)", path, n);
    size_t lo = n > 22 + 65535 ? n - 22 - 65535 : 0, at = (size_t)-1;
    for (size_t i = n - 22 + 1; i-- > lo;)
        if (rd32(p + i) == SIG_EOCD && i + 22 + (size_t)rd16(p + i + 20) == n) {
            at = i;
            break;
        }
    if (at == (size_t)-1)
        return ckd_errorf(err, "%s: no ZIP end-of-central-directory record in the last %zu bytes "
                          "(truncated or not a ZIP file)", path, n - lo);
    const unsigned char *e = p + at;
    if (rd16(e + 4) != 0 || rd16(e + 6) != 0)
        return ckd_errorf(err, "%s: multi-disk ZIP archives are not supported", path);
    *count = rd16(e + 10);
    *cd_size = rd32(e + 12);
    *cd_off = rd32(e + 16);
    if (*count != 0xFFFF && *cd_size != 0xFFFFFFFFu && *cd_off != 0xFFFFFFFFu)
        return 0;
    if (at < 20 || rd32(e - 20) != SIG_LOC64)
        return ckd_errorf(err, "%s: the ZIP end record at byte %zu asks for ZIP64 but has no ZIP64 "
                          "locator before it", path, at);
    uint64_t z = rd64(e - 20 + 8);
    if (z > n - 56 || n < 56 || rd32(p + z) != SIG_EOCD64)
        return ckd_errorf(err, "%s: the ZIP64 end record at byte %" PRIu64 " is missing or outside "
                          "the file", path, z);
    *count = rd64(p + z + 32);
    *cd_size = rd64(p + z + 40);
    *cd_off = rd64(p + z + 48);
    return 0;
}

/* ZIP64 extra field: the 64-bit values of the fields that were saturated. */
static int zip64_extra(const unsigned char *x, size_t xlen, uint64_t *usize, uint64_t *csize,
                       uint64_t *off)
{
    while (xlen >= 4) {
        size_t id = rd16(x), len = rd16(x + 2);
        if (len > xlen - 4)
            return -1;
        if (id == 1) {
            const unsigned char *v = x + 4;
            size_t left = len;
            uint64_t *f[3] = {usize, csize, off};
            for (int i = 0; i < 3; i++)
                if (*f[i] == 0xFFFFFFFFu) {
                    if (left < 8)
                        return -1;
                    *f[i] = rd64(v);
                    v += 8;
                    left -= 8;
                }
            return 0;
        }
        x += 4 + len;
        xlen -= 4 + len;
    }
    return 0;
}

/* One central header at p + at (inside the directory, which ends at end). */
static int read_member(const unsigned char *p, size_t n, uint64_t at, uint64_t end, zip_member *m,
                       uint64_t *next, const char *path, ckd_error *err)
{
    if (end - at < 46 || rd32(p + at) != SIG_CENTRAL)
        return ckd_errorf(err, "%s: ZIP central directory entry at byte %" PRIu64 " is damaged", path, at);
    const unsigned char *c = p + at;
    size_t nlen = rd16(c + 28), xlen = rd16(c + 30), clen = rd16(c + 32);
    if (46 + nlen + xlen + clen > end - at)
        return ckd_errorf(err, "%s: ZIP central directory entry at byte %" PRIu64 " runs past the "
                          "directory", path, at);
    if (!(m->name = malloc(nlen + 1)))
        return ckd_errorf(err, "%s: out of memory", path);
    memcpy(m->name, c + 46, nlen);
    m->name[nlen] = 0;
    if (memchr(m->name, 0, nlen))
        return ckd_errorf(err, "%s: ZIP member name at byte %" PRIu64 " holds a NUL", path, at + 46);
    uint16_t flags = rd16(c + 8);
    m->method = rd16(c + 10);
    m->crc32 = rd32(c + 16);
    m->csize = rd32(c + 20);
    m->usize = rd32(c + 24);
    uint64_t loc = rd32(c + 42);
    if (zip64_extra(c + 46 + nlen, xlen, &m->usize, &m->csize, &loc))
        return ckd_errorf(err, "%s: member '%s': damaged ZIP64 extra field", path, m->name);
    if (flags & 1)
        return ckd_errorf(err, "%s: member '%s' is encrypted", path, m->name);
    if (m->method != 0 && m->method != 8)
        return ckd_errorf(err, "%s: member '%s' uses compression method %d (only stored and deflated "
                          "members are read)", path, m->name, m->method);
    if (m->method == 0 && m->csize != m->usize)
        return ckd_errorf(err, "%s: member '%s' is stored but its sizes differ (%" PRIu64 " vs %" PRIu64 ")",
                          path, m->name, m->csize, m->usize);
    if (loc > n || n - loc < 30 || rd32(p + loc) != SIG_LOCAL)
        return ckd_errorf(err, "%s: member '%s': no local header at byte %" PRIu64 " (truncated file?)",
                          path, m->name, loc);
    /* The local header's extra field differs from the central one: PyTorch
     * pads it there to align the data. */
    uint64_t data = loc + 30 + rd16(p + loc + 26) + rd16(p + loc + 28);
    if (data > n || m->csize > n - data)
        return ckd_errorf(err, "%s: member '%s': %" PRIu64 " bytes at byte %" PRIu64 " run past the end "
                          "of the %zu-byte file (truncated?)", path, m->name, m->csize, data, n);
    m->data_off = data;
    *next = at + 46 + nlen + xlen + clen;
    return 0;
}

int zip_dir_read(zip_dir *d, const unsigned char *p, size_t n, const char *path, ckd_error *err)
{
    memset(d, 0, sizeof *d);
    uint64_t cd_off = 0, cd_size = 0, count = 0;
    if (find_directory(p, n, path, &cd_off, &cd_size, &count, err))
        return -1;
    if (cd_off > n || cd_size > n - cd_off)
        return ckd_errorf(err, "%s: the ZIP central directory (%" PRIu64 " bytes at %" PRIu64 ") lies "
                          "outside the %zu-byte file (truncated?)", path, cd_size, cd_off, n);
    if (count > cd_size / 46)
        return ckd_errorf(err, "%s: the ZIP directory claims %" PRIu64 " members, more than its %" PRIu64
                          " bytes hold", path, count, cd_size);
    d->members = calloc(count ? count : 1, sizeof *d->members);
    if (!d->members)
        return ckd_errorf(err, "%s: out of memory", path);
    uint64_t at = cd_off, end = cd_off + cd_size;
    for (; d->n < count; d->n++)
        if (read_member(p, n, at, end, &d->members[d->n], &at, path, err)) {
            d->n++; /* free the name read so far */
            zip_dir_free(d);
            return -1;
        }
    qsort(d->members, d->n, sizeof *d->members, cmp_member);
    for (size_t i = 1; i < d->n; i++)
        if (!strcmp(d->members[i - 1].name, d->members[i].name)) {
            ckd_errorf(err, "%s: ZIP member '%s' appears twice", path, d->members[i].name);
            zip_dir_free(d);
            return -1;
        }
    return 0;
}

const zip_member *zip_find(const zip_dir *d, const char *name)
{
    zip_member key = {.name = (char *)name};
    return d->n ? bsearch(&key, d->members, d->n, sizeof *d->members, cmp_member) : NULL;
}

/* zlib's crc32 takes uInt lengths: feed it in pieces. */
static uint32_t crc_of(const unsigned char *p, uint64_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    while (n) {
        uInt k = n > (1u << 30) ? 1u << 30 : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

static int inflate_member(const zip_member *m, const unsigned char *src, unsigned char *dst, const char *path,
                          ckd_error *err)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, -MAX_WBITS) != Z_OK)
        return ckd_errorf(err, "%s: member '%s': cannot start zlib", path, m->name);
    uint64_t in_left = m->csize, out_left = m->usize;
    z.next_in = (Bytef *)src;
    z.next_out = dst;
    int rc = Z_OK;
    while (rc == Z_OK) {
        if (!z.avail_in) {
            z.avail_in = in_left > (1u << 30) ? 1u << 30 : (uInt)in_left;
            in_left -= z.avail_in;
        }
        if (!z.avail_out) {
            z.avail_out = out_left > (1u << 30) ? 1u << 30 : (uInt)out_left;
            out_left -= z.avail_out;
        }
        /* Z_BUF_ERROR: no progress possible, the input ran out (truncated)
         * or the output is full (more data than the directory said). */
        rc = inflate(&z, Z_NO_FLUSH);
    }
    uint64_t produced = (uint64_t)z.total_out;
    inflateEnd(&z);
    if (rc != Z_STREAM_END)
        return ckd_errorf(err, "%s: member '%s': deflate data is damaged or truncated (zlib: %s)", path,
                          m->name, rc == Z_BUF_ERROR ? "unexpected end" : z.msg ? z.msg : "error");
    if (produced != m->usize)
        return ckd_errorf(err, "%s: member '%s' inflates to %" PRIu64 " bytes, the directory says %" PRIu64,
                          path, m->name, produced, m->usize);
    return 0;
}

int zip_member_data(const zip_member *m, const unsigned char *p, const char *path, int check_crc,
                    const unsigned char **data, void **owned, ckd_error *err)
{
    *owned = NULL;
    *data = NULL;
    const unsigned char *src = p + m->data_off;
    if (m->method == 0) {
        if (check_crc && crc_of(src, m->usize) != m->crc32)
            return ckd_errorf(err, "%s: member '%s': CRC-32 mismatch (the file is damaged)", path, m->name);
        *data = src;
        return 0;
    }
    if (m->usize > SIZE_MAX - 1)
        return ckd_errorf(err, "%s: member '%s' of %" PRIu64 " bytes does not fit in memory", path, m->name,
                          m->usize);
    /* Deflate expands at most 1032:1; a larger claim would only make us
     * allocate for a bomb before inflate finds out. */
    if (m->usize / 1032 > m->csize + 1)
        return ckd_errorf(err, "%s: member '%s' claims %" PRIu64 " bytes from %" PRIu64 " deflated ones, more "
                          "than deflate can produce (damaged or hostile archive)", path, m->name, m->usize, m->csize);
    unsigned char *buf = malloc(m->usize ? (size_t)m->usize : 1);
    if (!buf)
        return ckd_errorf(err, "%s: member '%s': cannot allocate %" PRIu64 " bytes to inflate it", path,
                          m->name, m->usize);
    if (inflate_member(m, src, buf, path, err)) {
        free(buf);
        return -1;
    }
    if (crc_of(buf, m->usize) != m->crc32) {
        free(buf);
        return ckd_errorf(err, "%s: member '%s': CRC-32 mismatch after inflating (the file is damaged)", path,
                          m->name);
    }
    *data = buf;
    *owned = buf;
    return 0;
}
