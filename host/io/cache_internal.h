/* cache_internal.h — what the cache walks (cache.c) need to know about one
 * kind of entry. Artifacts and teacher embedding entries differ in how their
 * files are named, described and checked; listing, verifying and gc walk
 * both the same way, through a ckdi_layout. */
#ifndef CKD_CACHE_INTERNAL_H
#define CKD_CACHE_INTERNAL_H

#include <limits.h>
#include <stddef.h>
#include <sys/stat.h>

#include "clipkd/fetch.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

/* What a file in an entry directory is; CKDI_OTHER for names that are not
 * ours (never touched). */
enum ckdi_kind { CKDI_OTHER, CKDI_DATA, CKDI_SIDECAR, CKDI_PARTIAL, CKDI_LOCK };

/* One entry as listed, with the storage its borrowed strings point into. */
typedef struct ckdi_loaded {
    ckd_cache_entry e;
    char path[PATH_MAX];
    char desc[512];
    json_t *meta; /* owned; e.meta and e.name may point into it */
} ckdi_loaded;

typedef struct ckdi_layout {
    ckd_cache_kind kind;
    /* The data file is <64 hex><data_suffix>; its lock <data file>.lock. */
    const char *data_suffix;
    enum ckdi_kind (*classify)(const char *name);
    /* Fills what the data file's stat does not give (name, expected size,
     * meta, last use). */
    void (*describe)(ckdi_loaded *l, const struct stat *st);
    /* Checks the entry's content: 0 sound, 1 bad (problem says why, without
     * the path), -1 the file went away meanwhile. */
    int (*check)(const ckd_cache_entry *e, char *problem, size_t cap);
} ckdi_layout;

extern const ckdi_layout ckdi_embeddings_layout;

/* Teacher embedding entries: their directory under the cache root, the
 * "format" of their key JSON, and the tensors their "sha256" metadata
 * covers, in the order their bytes are hashed. A tensor an entry does not
 * hold is skipped, so a tensor added later goes at the end and older entries
 * still check out. The trainer (host/train/teacher_cache.c) writes and
 * checks entries by the same rules. */
#define CKDI_EMBEDDINGS_DIR "teacher-embeddings"
#define CKDI_EMBEDDINGS_FORMAT "clipkd teacher embeddings 1"
extern const char *const ckdi_embeddings_digest_order[];
extern const size_t ckdi_embeddings_n_digest;

/* 1 if the first n characters of s are lower-case hex digits. */
int ckdi_is_lower_hex(const char *s, size_t n);

#endif
