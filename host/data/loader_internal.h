/* The loader's state, shared by loader.c (threads and the ring) and
 * loader_batch.c (what goes into a batch). Not installed. */
#ifndef CKD_LOADER_INTERNAL_H
#define CKD_LOADER_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include "clipkd/loader.h"

enum { CKDL_FREE, CKDL_BUSY, CKDL_READY };

typedef struct ckdl_slot {
    ckd_batch b;
    int32_t *ids;           /* b.input_ids points here when the batch has ids */
    int64_t seq;            /* the batch it holds, -1 when none */
    int state;
    int rc;                 /* -1: the batch failed, msg says why */
    char msg[CKD_ERROR_MAX];
    char last_skip[CKD_ERROR_MAX]; /* the last sample left out of it */
} ckdl_slot;

struct ckd_loader {
    const ckd_dataset *ds;
    ckd_loader_opts o;
    size_t n;               /* dataset size */
    int64_t bpe;            /* batches per epoch */
    int64_t end_seq;        /* first seq past the last epoch */

    ckdl_slot *ring;
    int n_slots;
    pthread_t *th;
    int n_running;

    /* Guarded by mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_ready;
    int64_t next_claim;     /* next seq a worker takes */
    int64_t released;       /* seqs below this are done with; the consumer
                               holds this one when holding is set */
    int holding, stop, failed;
    char fail_msg[CKD_ERROR_MAX];
    int64_t skipped;
    char last_error[CKD_ERROR_MAX];

    /* The permutations of the two epochs last asked for; perm_mu. */
    pthread_mutex_t perm_mu;
    int64_t perm_epoch[2];
    int64_t *perm[2];
};

/* Fills slot s with batch seq (everything but state). Thread-safe. */
void ckdl_fill(ckd_loader *l, ckdl_slot *s, int64_t seq);

#endif
