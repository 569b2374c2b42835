/* Helpers shared by the two source files of tests/test-image. */
#ifndef CKD_IMAGE_TEST_H
#define CKD_IMAGE_TEST_H

#include <stddef.h>
#include <stdint.h>

/* $CKD_TEST_SRCDIR/tests/fixtures/<rel>, malloc'd. */
char *ckdt_fixture_path(const char *rel);
/* SRCDIR/dir/rel (malloc'd). */
char *ckdt_source_path(const char *dir, const char *rel);
/* The whole file, malloc'd; asserts on failure. */
uint8_t *ckdt_read_all(const char *path, size_t *len);
/* A smooth w x h RGB gradient (JPEG reproduces it closely), malloc'd. */
uint8_t *ckdt_gradient(int w, int h);

#endif
