/* Checking a teacher-embedding cache entry (teacher_cache.c describes the
 * format). Kept apart from the trainer so that the fuzz harness can hand it
 * any file: an entry is only as trustworthy as the disk it sits on. */
#ifndef CKD_TRAIN_TCACHE_ENTRY_H
#define CKD_TRAIN_TCACHE_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#include "clipkd/error.h"
#include "clipkd/safetensors.h"

/* The entry's arrays, pointing into the open file. */
typedef struct tcache_arrays {
    const float *img, *txt;   /* [n, dim], [n_txt, dim] */
    const int64_t *off;       /* [n + 1], non-decreasing, within [0, n_txt] */
    const uint8_t *valid;     /* [n] */
    const int32_t *labels;    /* [n], or NULL in an entry written before labels were kept */
    const float *logits;      /* [views·n, n_logits]: a classifier teacher's class logits, or NULL */
    int64_t n, n_txt, dim, n_logits;
    int64_t views;            /* image rows per sample: image_embeds is [views·n, dim], view v of sample i row v·n + i */
} tcache_arrays;

/* The bytes of tensor `name` of an entry being written or read. */
typedef const void *(*tcache_bytes_fn)(void *user, const char *name, size_t *nbytes);

/* The SHA-256 of the entry's tensor bytes, in the fixed order of the format. */
int tcache_digest(tcache_bytes_fn get, void *user, char hex[65], ckd_error *err);

/* Checks an open entry against the key it must have, N samples of V views
 * each and width D: every tensor's type and shape, the checksum, and the
 * caption offsets. need_labels: the labels tensor must be there; K > 0: so
 * must logits [V·N, K]. Returns 0 with *out set, or -1 with err saying what
 * is wrong (without the file name). */
int tcache_entry_check(const ckd_safetensors *st, const char *key, int64_t N, int64_t V, int64_t D, int need_labels,
                       int64_t K, tcache_arrays *out, ckd_error *err);

#endif
