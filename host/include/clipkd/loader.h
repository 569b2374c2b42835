/* clipkd/loader.h — batches from a dataset: shuffling, augmentation,
 * preprocessing and tokenisation ahead of the trainer, on prefetch threads.
 *
 * Batch b of epoch e is a pure function of (dataset, options, seed, e, b):
 *   - epoch e's order is a permutation of the dataset drawn from (seed, e)
 *     alone (or the dataset order when shuffle is off);
 *   - batch b holds the samples at positions [b * B, (b + 1) * B) of it;
 *   - each sample's crop, flip and caption choice come from random streams
 *     seeded by (seed, e, dataset index), never from shared state.
 * So the batches are the same whatever the number of threads and however
 * they are scheduled, and a run resumed from a cursor (epoch, batch)
 * continues with exactly the batch it would have seen next.
 *
 * A sample whose image cannot be read or decoded is left out of its batch
 * (the batch is then smaller than B; a batch left empty is skipped) and
 * counted, with the last message kept — or, with on_error = CKD_LOADER_FAIL,
 * ends the run with that message. Either way it is never silent.
 */
#ifndef CLIPKD_LOADER_H
#define CLIPKD_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "clipkd/data.h"
#include "clipkd/error.h"
#include "clipkd/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { CKD_LOADER_SKIP = 0, CKD_LOADER_FAIL = 1 };

typedef struct ckd_loader_opts {
    int batch_size;         /* B >= 1 */
    int drop_last;          /* leave out a last batch shorter than B */
    int shuffle;            /* a fresh permutation each epoch; 0: dataset order */
    uint64_t seed;
    int64_t epochs;         /* ckd_loader_next reports the end after this many; 0: never */

    int image_size;         /* S: pixel_values are S x S */
    float mean[3], std[3];  /* normalisation after x / 255 */
    int augment;            /* 1: random resized crop (+ flip); 0: resize the
                               shortest edge to S and crop the centre (eval) */
    float scale_lo, scale_hi;   /* random resized crop: area fraction … */
    float ratio_lo, ratio_hi;   /* … and aspect ratio ranges */
    int hflip;              /* with augment: mirror half the samples */

    const ckd_tokenizer *tokenizer; /* borrowed; NULL: no input_ids */
    int context_len;        /* T */
    int32_t pad_id;
    int caption;            /* -1: one caption drawn per (seed, epoch, index);
                               k >= 0: caption k (the last if there are fewer) */

    int threads;            /* prefetch threads; 0: work in the caller's thread */
    int prefetch;           /* batch slots in the ring (at least threads + 1 are
                               used); each holds B x 3 x S x S floats */
    int on_error;           /* CKD_LOADER_SKIP or CKD_LOADER_FAIL */

    /* With augment, replayed views (dataset reinforcement, as in MobileCLIP):
     * views V > 0 fixes V crops (+ flips) per sample, drawn from
     * (view, index) whatever the seed, and each epoch uses one of them,
     * drawn from (seed, epoch, index) — so a teacher-embedding cache can hold the
     * teacher's embedding of exactly the view the student sees. view >= 0
     * takes that view for every sample (how the cache is computed). 0 (the
     * default): a fresh crop per (seed, epoch, index). */
    int views;              /* 0 to CKD_LOADER_MAX_VIEWS */
    int view;               /* -1 (default): drawn per epoch; else < views */

    /* Data-parallel shards (clipkd/dist.h): with shards S > 1, each batch
     * holds only shard k's part of the batch above — positions
     * [c·k/S, c·(k+1)/S) of its c samples — so that S loaders with the same
     * options and k = 0 .. S−1 together give every batch, in order, once.
     * A shard left empty is still returned (n = 0): the other shards' part
     * of its batch is not empty. 0 or 1 (the default): the whole batch. */
    int shard, shards;
} ckd_loader_opts;

#define CKD_LOADER_MAX_VIEWS 64

/* Defaults: B 64, drop_last off, shuffle on, seed 0, endless; S 224 with
 * OpenAI CLIP's mean and std; augment on with CLIP-KD's random resized crop
 * (scale 0.9–1.0, ratio 3/4–4/3, bicubic), no flip; T 77, pad 0 (OpenAI and
 * open_clip pad with 0), a random caption; 1 prefetch thread, 2 slots;
 * undecodable images skipped. */
void ckd_loader_opts_init(ckd_loader_opts *o);

/* One batch; valid until the next ckd_loader_next, ckd_loader_seek or
 * ckd_loader_free. Arrays have room for B samples; n are filled. */
typedef struct ckd_batch {
    int n;                  /* samples in the batch (<= B) */
    int image_size, context_len;
    float *pixel_values;    /* [n][3][S][S] */
    int32_t *input_ids;     /* [n][T]; NULL without a tokenizer */
    int32_t *labels;        /* [n]; -1 where unknown */
    int32_t *captions;      /* [n] which of the sample's captions was
                               tokenised; -1 for ready-made ids or without
                               a tokenizer */
    int64_t *indices;       /* [n] dataset indices */
    int32_t *views;         /* [n] which replayed view each image is (see
                               ckd_loader_opts.views); -1 without views */
    int64_t epoch, batch;   /* where the batch is: epoch, number within it */
    int n_skipped;          /* samples of this batch left out */
} ckd_batch;

/* The position of the next batch: save it with a checkpoint, give it back to
 * ckd_loader_seek to resume. */
typedef struct ckd_loader_cursor {
    int64_t epoch, batch;
} ckd_loader_cursor;

typedef struct ckd_loader ckd_loader;

/* The dataset is borrowed and must outlive the loader. Fails when an option
 * is out of range or the dataset gives no batch at all (empty, or smaller
 * than B with drop_last). No thread starts before the first batch is
 * asked for. */
ckd_loader *ckd_loader_new(const ckd_dataset *ds, const ckd_loader_opts *o, ckd_error *err);

/* Stops the threads and frees everything; NULL is allowed. */
void ckd_loader_free(ckd_loader *l);

/* The next batch: 0 with *out set; 1 with *out NULL after the last epoch
 * (epochs > 0); -1 on failure (a sample failed with on_error = FAIL, or a
 * sample does not fit the options: ready-made pixels of another size,
 * token rows of another length, a sample without captions). A failure
 * repeats on every later call until a seek. */
int ckd_loader_next(ckd_loader *l, const ckd_batch **out, ckd_error *err);

/* Batches per epoch. */
int64_t ckd_loader_batches_per_epoch(const ckd_loader *l);

/* Where the next ckd_loader_next will read. */
ckd_loader_cursor ckd_loader_tell(const ckd_loader *l);

/* Moves to a cursor (stopping and later restarting the threads). The batch
 * number may equal batches_per_epoch (read as the next epoch's start). */
int ckd_loader_seek(ckd_loader *l, ckd_loader_cursor c, ckd_error *err);

/* Samples left out of the batches returned so far (since creation or the
 * last seek), and the message of the last of them ("" when none). */
int64_t ckd_loader_skipped(const ckd_loader *l);
void ckd_loader_last_error(const ckd_loader *l, char *buf, size_t cap);

/* Epoch e's order: perm[p] = dataset index at position p (n = dataset
 * size), as the loader uses it. For tests and tools. */
int ckd_loader_permutation(uint64_t seed, int64_t epoch, size_t n, int64_t *perm, ckd_error *err);

#ifdef __cplusplus
}
#endif
#endif
