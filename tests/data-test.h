/* Helpers shared by the source files of tests/test-data: temporary folders,
 * and the small inputs the tests make themselves (PNG, JPEG, tar, gzip,
 * IDX). Every helper asserts on failure. */
#ifndef CKD_DATA_TEST_H
#define CKD_DATA_TEST_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "clipkd/data.h"

/* A fresh folder under $TMPDIR (or /tmp), malloc'd; tdu_rmrf removes it. */
char *tdu_tmpdir(void);
void tdu_rmrf(const char *dir);

/* dir/rel in a rotating static buffer (8 live results at a time). */
const char *tdu_path(const char *dir, const char *rel);

/* Writes a file, creating its parent folders. */
void tdu_write(const char *path, const void *data, size_t n);
void tdu_write_str(const char *path, const char *text);
uint8_t *tdu_read(const char *path, size_t *n);

/* A w x h RGB picture that differs with `seed`, as raw pixels (malloc'd). */
uint8_t *tdu_pattern(int w, int h, unsigned seed);
/* The same picture encoded (malloc'd bytes), or written to a file. */
uint8_t *tdu_png(int w, int h, unsigned seed, size_t *n);
uint8_t *tdu_jpeg(int w, int h, unsigned seed, size_t *n);
void tdu_write_png(const char *path, int w, int h, unsigned seed);
void tdu_write_jpeg(const char *path, int w, int h, unsigned seed);

/* A tar file (pax format) of the given members, gzip'd when gz is set. */
typedef struct tdu_member {
    const char *name;
    const void *data;
    size_t len;
} tdu_member;
void tdu_write_tar(const char *path, const tdu_member *m, size_t n, int gz);

/* gzip-compresses data into a file. */
void tdu_write_gz(const char *path, const void *data, size_t n);

/* An IDX file of unsigned bytes: magic 0x0800 + ndim, dims, data. */
uint8_t *tdu_idx(int ndim, const uint32_t *dims, const uint8_t *data, size_t *n);

/* Opens a dataset from JSON text (asserting that it parses). */
ckd_dataset *tdu_open(const char *json, const char *base_dir, ckd_error *err);

/* Asserts that opening fails with a message containing every needle (the
 * macro ends the list). */
void tdu_open_fails_(const char *json, const char *base_dir, ...);
#define tdu_open_fails(...) tdu_open_fails_(__VA_ARGS__, (const char *)NULL)

/* Asserts that msg contains every needle. */
void tdu_assert_has_(const char *msg, ...);
#define tdu_assert_has(...) tdu_assert_has_(__VA_ARGS__, (const char *)NULL)
/* The same with the needles in a va_list (ended by NULL). */
void tdu_assert_has_v(const char *msg, va_list ap);

/* The directory of Debian's Fashion-MNIST; asserts that the package is
 * installed (CI installs it). */
const char *tdu_fmnist_dir(void);

#endif
