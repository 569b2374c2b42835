/* host/io/st_internal.h — what the other checkpoint readers share with the
 * safetensors reader (internal): mapping a file, and a ckd_safetensors made
 * from views that another reader (PyTorch's .pt) has checked. */
#ifndef CLIPKD_ST_INTERNAL_H
#define CLIPKD_ST_INTERNAL_H

#include <stddef.h>

#include "clipkd/safetensors.h"

/* Maps a regular file read-only. 0, or -1 with err naming path. */
int st_map_file(const char *path, void **map, size_t *size, ckd_error *err);

/* A reader over tensors[0..count) (file order; names malloc'd; data inside
 * map or inside one of owned[]), taking ownership of all of it — map is
 * unmapped, names and owned[] freed by ckd_st_close, and on failure here.
 * meta: n_meta key/value pairs, copied. Fails on a duplicate name. */
ckd_safetensors *st_adopt(const char *path, void *map, size_t map_size, ckd_st_tensor *tensors, size_t count,
                          void **owned, size_t n_owned, const char *const *meta, size_t n_meta, ckd_error *err);

/* PyTorch checkpoints: 1 when the first bytes are a ZIP archive's or the
 * legacy format's magic (see ckd_pt_open). */
int pt_sniff(const unsigned char *p, size_t n);

#endif
