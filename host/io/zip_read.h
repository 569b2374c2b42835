/* host/io/zip_read.h — the central directory of a memory-mapped ZIP file (internal).
 *
 * PyTorch's checkpoints are ZIP archives whose members are stored, not
 * compressed, at 64-byte aligned offsets, so that a loader can map tensor
 * data in place; none of the general archive readers hands out a member's
 * offset in the file. This reader does only what that needs: it finds the
 * end-of-central-directory record (ZIP64 too, for archives over 4 GiB),
 * lists members with their method, sizes, CRC and where their data starts,
 * and checks every number against the file size before anything is read.
 * Deflated members are inflated with zlib. Multi-disk and encrypted archives
 * are refused. */
#ifndef CLIPKD_ZIP_READ_H
#define CLIPKD_ZIP_READ_H

#include <stddef.h>
#include <stdint.h>

#include "clipkd/error.h"

typedef struct zip_member {
    char *name;          /* NUL-terminated copy of the member's name */
    int method;          /* 0 stored, 8 deflated */
    uint32_t crc32;
    uint64_t csize;      /* bytes in the file */
    uint64_t usize;      /* bytes once inflated */
    uint64_t data_off;   /* offset of the member's data in the file */
} zip_member;

typedef struct zip_dir {
    zip_member *members; /* sorted by name */
    size_t n;
} zip_dir;

/* 1 when the bytes start like a ZIP file (a local header or an empty archive). */
int zip_sniff(const unsigned char *p, size_t n);

/* Reads the directory of the n bytes at p (the mapped file `path`, named in
 * messages). 0, or -1 with err set; d is then empty. */
int zip_dir_read(zip_dir *d, const unsigned char *p, size_t n, const char *path, ckd_error *err);
void zip_dir_free(zip_dir *d);

/* The member called name, or NULL. */
const zip_member *zip_find(const zip_dir *d, const char *name);

/* The member's bytes. Stored: *data points into p and *owned is NULL.
 * Deflated: inflated into a new buffer returned in both (free *owned).
 * The CRC-32 is checked either way (check_crc may be 0 to skip it for a
 * stored member, whose bytes are then not touched here). */
int zip_member_data(const zip_member *m, const unsigned char *p, const char *path, int check_crc,
                    const unsigned char **data, void **owned, ckd_error *err);

#endif
