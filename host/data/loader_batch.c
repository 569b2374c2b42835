/* What goes into a batch: the epoch's permutation, then for each sample the
 * image (augmented or centre-cropped, normalised), one tokenised caption and
 * the label. Everything random is drawn from streams seeded by (seed, epoch,
 * dataset index), so a batch is a function of its number alone. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipkd/tensor.h"
#include "data_internal.h"
#include "loader_internal.h"

/* Tags that keep the random streams apart. */
#define TAG_PERM 0x7065726dull    /* "perm" */
#define TAG_CROP 0x63726f70ull    /* "crop" */
#define TAG_CAPTION 0x63617074ull /* "capt" */
#define TAG_VIEW 0x76696577ull    /* "view": which replayed view an epoch uses */
#define TAG_VIEW_CROP 0x76637270ull /* "vcrp": the crop of a replayed view */

static uint64_t stream(uint64_t seed, int64_t epoch, uint64_t index, uint64_t tag)
{
    return ckdd_mix(ckdd_mix(ckdd_mix(seed ^ tag) ^ (uint64_t)epoch) ^ index);
}

int ckd_loader_permutation(uint64_t seed, int64_t epoch, size_t n, int64_t *perm, ckd_error *err)
{
    if (!perm && n)
        return ckd_errorf(err, "loader permutation: NULL output");
    for (size_t i = 0; i < n; i++)
        perm[i] = (int64_t)i;
    ckd_rng r;
    ckd_rng_seed(&r, stream(seed, epoch, 0, TAG_PERM));
    ckd_rng_shuffle(&r, perm, (int64_t)n);
    return 0;
}

/* The dataset indices at positions [start, start + count) of epoch's order. */
static int epoch_indices(ckd_loader *l, int64_t epoch, size_t start, size_t count, int64_t *out,
                         ckd_error *err)
{
    if (!l->o.shuffle) {
        for (size_t k = 0; k < count; k++)
            out[k] = (int64_t)(start + k);
        return 0;
    }
    pthread_mutex_lock(&l->perm_mu);
    int e = l->perm_epoch[0] == epoch ? 0 : l->perm_epoch[1] == epoch ? 1 : -1;
    if (e < 0) {
        /* Replace the older epoch's: workers move forward through epochs. */
        e = l->perm_epoch[0] <= l->perm_epoch[1] ? 0 : 1;
        if (!l->perm[e] && !(l->perm[e] = malloc(l->n * sizeof(int64_t)))) {
            pthread_mutex_unlock(&l->perm_mu);
            return ckd_errorf(err, "loader: out of memory for the order of %zu samples", l->n);
        }
        ckd_loader_permutation(l->o.seed, epoch, l->n, l->perm[e], NULL);
        l->perm_epoch[e] = epoch;
    }
    memcpy(out, l->perm[e] + start, count * sizeof *out);
    pthread_mutex_unlock(&l->perm_mu);
    return 0;
}

static void flip_horizontal(ckd_image *im)
{
    for (int y = 0; y < im->h; y++) {
        uint8_t *row = im->rgb + (size_t)y * (size_t)im->w * 3;
        for (int a = 0, b = im->w - 1; a < b; a++, b--)
            for (int c = 0; c < 3; c++) {
                uint8_t t = row[a * 3 + c];
                row[a * 3 + c] = row[b * 3 + c];
                row[b * 3 + c] = t;
            }
    }
}

/* The image of a decoded sample into out (3 x S x S floats). */
static int make_pixels(const ckd_loader *l, const ckd_image *img, uint64_t rng, float *out,
                       ckd_error *err)
{
    const ckd_loader_opts *o = &l->o;
    ckd_preprocess p = {o->image_size, o->image_size, o->image_size, {0}, {0}};
    memcpy(p.mean, o->mean, sizeof p.mean);
    memcpy(p.std, o->std, sizeof p.std);
    if (!o->augment)
        return ckd_preprocess_image(&p, img, out, err);
    ckd_image crop = {0};
    if (ckd_image_random_resized_crop(img, o->scale_lo, o->scale_hi, o->ratio_lo, o->ratio_hi,
                                      &rng, o->image_size, o->image_size, &crop, err) < 0)
        return -1;
    if (o->hflip && (ckdd_next(&rng) >> 63))
        flip_horizontal(&crop);
    int rc = ckd_preprocess_normalize(&p, &crop, out, err);
    ckd_image_free(&crop);
    return rc;
}

/* The random stream of a sample's crop, and *view which replayed view it
 * is (-1 without views): with views, the crop depends on (view, index)
 * only — not on the epoch, so view v of a sample is the same image in every
 * epoch and in the teacher-embedding cache, and not on the seed, so that
 * the runs of every seed share one cache entry (a reinforced dataset, made
 * once); the seed picks which view each epoch uses. */
static uint64_t crop_stream(const ckd_loader_opts *o, int64_t epoch, int64_t idx, int32_t *view)
{
    *view = -1;
    if (!o->views || !o->augment)
        return stream(o->seed, epoch, (uint64_t)idx, TAG_CROP);
    uint64_t pick = stream(o->seed, epoch, (uint64_t)idx, TAG_VIEW);
    *view = o->view >= 0 ? o->view : (int32_t)(ckdd_next(&pick) % (uint64_t)o->views);
    return stream(0, *view, (uint64_t)idx, TAG_VIEW_CROP);
}

enum { SAMPLE_OK = 0, SAMPLE_SKIPPED = 1, SAMPLE_FATAL = -1 };

/* Puts dataset sample idx into row `row` of the slot's batch. A failure of
 * the data itself is SAMPLE_SKIPPED (or fatal with on_error FAIL); a sample
 * that does not fit the options is always fatal. */
static int put_sample(ckd_loader *l, ckdl_slot *s, int row, int64_t epoch, int64_t idx,
                      int *has_ids, ckd_error *err)
{
    const ckd_loader_opts *o = &l->o;
    size_t S = (size_t)o->image_size, T = (size_t)o->context_len;
    float *px = s->b.pixel_values + (size_t)row * 3 * S * S;
    const char *src = ckd_dataset_source(l->ds);
    ckd_sample smp;
    int rc = SAMPLE_OK;
    if (ckd_dataset_get(l->ds, (size_t)idx, &smp, err) < 0)
        return o->on_error == CKD_LOADER_FAIL ? SAMPLE_FATAL : SAMPLE_SKIPPED;
    if (smp.pixels) {
        if ((size_t)smp.pixel_h != S || (size_t)smp.pixel_w != S) {
            rc = ckd_errorf(err, "%s: sample %lld has ready-made pixels of %dx%d, the loader "
                                 "makes %zux%zu (set the image size to match)",
                            src, (long long)idx, smp.pixel_w, smp.pixel_h, S, S);
            goto done;
        }
        memcpy(px, smp.pixels, 3 * S * S * sizeof *px);
        s->b.views[row] = -1;
    } else if (make_pixels(l, &smp.image, crop_stream(o, epoch, idx, &s->b.views[row]), px, err) < 0) {
        ckd_error_prefix(err, "%s: sample %lld", src, (long long)idx);
        rc = o->on_error == CKD_LOADER_FAIL ? SAMPLE_FATAL : SAMPLE_SKIPPED;
        goto done;
    }
    int32_t *ids = s->ids + (size_t)row * T;
    s->b.captions[row] = -1;
    if (smp.input_ids) {
        if ((size_t)smp.n_ids != T) {
            rc = ckd_errorf(err, "%s: sample %lld has %d ready-made token ids, the loader's "
                                 "context length is %zu",
                            src, (long long)idx, smp.n_ids, T);
            goto done;
        }
        memcpy(ids, smp.input_ids, T * sizeof *ids);
        *has_ids = 1;
    } else if (o->tokenizer) {
        if (smp.n_captions == 0) {
            rc = ckd_errorf(err, "%s: sample %lld has no caption to tokenise", src, (long long)idx);
            goto done;
        }
        size_t c = o->caption >= 0 ? (size_t)o->caption : 0;
        if (o->caption < 0) {
            uint64_t st = stream(o->seed, epoch, (uint64_t)idx, TAG_CAPTION);
            c = (size_t)(ckdd_next(&st) % smp.n_captions);
        } else if (c >= smp.n_captions) {
            c = smp.n_captions - 1;
        }
        if (ckd_tokenize(o->tokenizer, smp.captions[c], ids, o->context_len, o->pad_id, NULL, NULL,
                         err) < 0) {
            rc = ckd_error_prefix(err, "%s: sample %lld, caption %zu", src, (long long)idx, c);
            goto done;
        }
        s->b.captions[row] = (int32_t)c;
        *has_ids = 1;
    }
    s->b.labels[row] = smp.label;
    s->b.indices[row] = idx;
done:
    ckd_sample_free(&smp);
    return rc;
}

void ckdl_fill(ckd_loader *l, ckdl_slot *s, int64_t seq)
{
    ckd_batch *b = &s->b;
    int64_t epoch = seq / l->bpe, number = seq % l->bpe;
    size_t B = (size_t)l->o.batch_size, start = (size_t)number * B;
    size_t count = l->n - start < B ? l->n - start : B;
    if (l->o.shards > 1) { /* this shard's part of the batch */
        size_t lo = count * (size_t)l->o.shard / (size_t)l->o.shards;
        size_t hi = count * (size_t)(l->o.shard + 1) / (size_t)l->o.shards;
        start += lo;
        count = hi - lo;
    }
    b->epoch = epoch;
    b->batch = number;
    b->n = 0;
    b->n_skipped = 0;
    b->input_ids = NULL;
    s->rc = 0;
    s->msg[0] = s->last_skip[0] = '\0';
    ckd_error err;
    /* The batch's indices go to the end of b->indices; rows are written from
     * the front, and a row never overtakes the index it was made from. */
    int64_t *idx = b->indices + (B - count);
    if (epoch_indices(l, epoch, start, count, idx, &err) < 0) {
        s->rc = -1;
        memcpy(s->msg, err.msg, sizeof s->msg);
        return;
    }
    int has_ids = 0;
    for (size_t k = 0; k < count; k++) {
        int r = put_sample(l, s, b->n, epoch, idx[k], &has_ids, &err);
        if (r == SAMPLE_OK) {
            b->n++;
        } else if (r == SAMPLE_SKIPPED) {
            b->n_skipped++;
            memcpy(s->last_skip, err.msg, sizeof s->last_skip);
        } else {
            s->rc = -1;
            memcpy(s->msg, err.msg, sizeof s->msg);
            return;
        }
    }
    if (has_ids)
        b->input_ids = s->ids;
}
