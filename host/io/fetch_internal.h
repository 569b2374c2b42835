/* fetch_internal.h — what fetch.c shares with its file-system helpers
 * (fetch_fs.c). */
#ifndef CKD_FETCH_INTERNAL_H
#define CKD_FETCH_INTERNAL_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "clipkd/fetch.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

/* mkdir -p of the directory part of path. */
int ckdi_mkdir_parents(const char *path, ckd_error *err);
/* fsync the directory holding path so that a rename into it is durable. */
void ckdi_sync_parent(const char *path);
/* pwrite all n bytes at off; -1 with errno set. */
int ckdi_write_all(int fd, const char *p, size_t n, int64_t off);
/* Writes the sidecar <entry>.json (name, size, urls, source, fetched) via a
 * temporary file, so a crash never leaves a torn sidecar. */
int ckdi_write_sidecar(const char *entry, const ckd_artifact *a, const char *sha, const char *source,
                       ckd_error *err);

#endif
