/* The loader: a ring of batch slots filled by prefetch threads.
 *
 * Batches are numbered globally, seq = epoch * batches_per_epoch + batch,
 * and batch seq always lives in slot seq % n_slots. A worker claims the next
 * unclaimed seq once its slot has been released by the consumer, fills it
 * (see loader_batch.c, a pure function of seq) and marks it ready; the
 * consumer waits for the seq it wants. Workers never decide *what* goes into
 * a batch — only when it is made — so the output does not depend on the
 * number of threads or their timing. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader_internal.h"

void ckd_loader_opts_init(ckd_loader_opts *o)
{
    memset(o, 0, sizeof *o);
    o->batch_size = 64;
    o->shuffle = 1;
    ckd_preprocess p;
    ckd_preprocess_clip_default(&p, 224);
    o->image_size = 224;
    memcpy(o->mean, p.mean, sizeof o->mean);
    memcpy(o->std, p.std, sizeof o->std);
    o->augment = 1;
    /* CLIP-KD trains with RandomResizedCrop(224, scale=(0.9, 1.0)) and
     * torchvision's default ratio range. */
    o->scale_lo = 0.9f;
    o->scale_hi = 1.0f;
    o->ratio_lo = 3.0f / 4.0f;
    o->ratio_hi = 4.0f / 3.0f;
    o->context_len = CKD_TOKENIZER_CONTEXT_LEN;
    o->caption = -1;
    o->threads = 1;
    o->prefetch = 2;
    o->on_error = CKD_LOADER_SKIP;
    o->view = -1;
}

static int check_opts(const ckd_loader_opts *o, ckd_error *err)
{
    if (o->batch_size < 1)
        return ckd_errorf(err, "loader: batch_size %d, expected >= 1", o->batch_size);
    if (o->epochs < 0)
        return ckd_errorf(err, "loader: epochs %lld, expected >= 0 (0: endless)",
                          (long long)o->epochs);
    if (o->image_size < 1 || o->image_size > 4096)
        return ckd_errorf(err, "loader: image_size %d, expected 1 to 4096", o->image_size);
    for (int c = 0; c < 3; c++)
        if (!(o->std[c] > 0.0f))
            return ckd_errorf(err, "loader: std[%d] = %g, expected > 0", c, (double)o->std[c]);
    if (o->augment && !(o->scale_lo > 0.0f && o->scale_lo <= o->scale_hi && o->scale_hi <= 1.0f))
        return ckd_errorf(err, "loader: crop scale range [%g, %g], expected 0 < lo <= hi <= 1",
                          (double)o->scale_lo, (double)o->scale_hi);
    if (o->augment && !(o->ratio_lo > 0.0f && o->ratio_lo <= o->ratio_hi))
        return ckd_errorf(err, "loader: crop ratio range [%g, %g], expected 0 < lo <= hi",
                          (double)o->ratio_lo, (double)o->ratio_hi);
    if (o->views < 0 || o->views > CKD_LOADER_MAX_VIEWS)
        return ckd_errorf(err, "loader: views %d, expected 0 to %d", o->views, CKD_LOADER_MAX_VIEWS);
    if (o->views && !o->augment)
        return ckd_errorf(err, "loader: %d replayed views without augmentation (there is one view)", o->views);
    if (o->view < -1 || o->view >= (o->views ? o->views : 0))
        return ckd_errorf(err, "loader: view %d, expected -1 or 0 to %d", o->view, o->views - 1);
    if (o->shards < 0 || (o->shards > 1 && (o->shard < 0 || o->shard >= o->shards)))
        return ckd_errorf(err, "loader: shard %d of %d, expected 0 to %d", o->shard, o->shards, o->shards - 1);
    if (o->tokenizer && (o->context_len < 2 || o->context_len > 1 << 16))
        return ckd_errorf(err, "loader: context_len %d, expected 2 to 65536", o->context_len);
    if (o->threads < 0 || o->threads > 256)
        return ckd_errorf(err, "loader: threads %d, expected 0 to 256", o->threads);
    if (o->prefetch < 0 || o->prefetch > 1024)
        return ckd_errorf(err, "loader: prefetch %d, expected 0 to 1024", o->prefetch);
    if (o->on_error != CKD_LOADER_SKIP && o->on_error != CKD_LOADER_FAIL)
        return ckd_errorf(err, "loader: on_error %d, expected CKD_LOADER_SKIP or CKD_LOADER_FAIL",
                          o->on_error);
    return 0;
}

static void free_slot(ckdl_slot *s)
{
    free(s->b.pixel_values);
    free(s->ids);
    free(s->b.labels);
    free(s->b.captions);
    free(s->b.indices);
    free(s->b.views);
}

ckd_loader *ckd_loader_new(const ckd_dataset *ds, const ckd_loader_opts *o, ckd_error *err)
{
    if (!ds || !o) {
        ckd_errorf(err, "loader: NULL dataset or options");
        return NULL;
    }
    if (check_opts(o, err) < 0)
        return NULL;
    size_t n = ckd_dataset_size(ds), B = (size_t)o->batch_size;
    int64_t bpe = (int64_t)(o->drop_last ? n / B : (n + B - 1) / B);
    if (bpe == 0) {
        ckd_errorf(err, "loader: %s has %zu samples, %s", ckd_dataset_source(ds), n,
                   n ? "fewer than one batch (drop_last is on)" : "none to make batches of");
        return NULL;
    }
    ckd_loader *l = calloc(1, sizeof *l);
    if (!l) {
        ckd_errorf(err, "loader: out of memory");
        return NULL;
    }
    l->ds = ds;
    l->o = *o;
    l->n = n;
    l->bpe = bpe;
    l->end_seq = o->epochs > 0 && o->epochs <= INT64_MAX / bpe ? o->epochs * bpe : INT64_MAX;
    /* Each thread fills its own slot while the consumer holds one. */
    l->n_slots = o->prefetch > o->threads + 1 ? o->prefetch : o->threads + 1;
    l->perm_epoch[0] = l->perm_epoch[1] = -1;
    pthread_mutex_init(&l->mu, NULL);
    pthread_mutex_init(&l->perm_mu, NULL);
    pthread_cond_init(&l->cv_work, NULL);
    pthread_cond_init(&l->cv_ready, NULL);
    l->ring = calloc((size_t)l->n_slots, sizeof *l->ring);
    if (!l->ring)
        goto oom;
    size_t S = (size_t)o->image_size, T = (size_t)(o->context_len > 0 ? o->context_len : 1);
    for (int i = 0; i < l->n_slots; i++) {
        ckdl_slot *s = &l->ring[i];
        s->seq = -1;
        s->b.image_size = o->image_size;
        s->b.context_len = o->context_len;
        if (!(s->b.pixel_values = malloc(B * 3 * S * S * sizeof(float))) ||
            !(s->ids = malloc(B * T * sizeof(int32_t))) ||
            !(s->b.labels = malloc(B * sizeof(int32_t))) ||
            !(s->b.captions = malloc(B * sizeof(int32_t))) ||
            !(s->b.indices = malloc(B * sizeof(int64_t))) || !(s->b.views = malloc(B * sizeof(int32_t))))
            goto oom;
    }
    return l;
oom:
    ckd_errorf(err, "loader: out of memory for %d batches of %zu images of %dx%d", l->n_slots,
               B, o->image_size, o->image_size);
    ckd_loader_free(l);
    return NULL;
}

static void *worker(void *arg)
{
    ckd_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop &&
               (l->next_claim >= l->end_seq || l->next_claim >= l->released + l->n_slots))
            pthread_cond_wait(&l->cv_work, &l->mu);
        if (l->stop)
            break;
        int64_t seq = l->next_claim++;
        ckdl_slot *s = &l->ring[seq % l->n_slots];
        s->state = CKDL_BUSY;
        s->seq = seq;
        pthread_mutex_unlock(&l->mu);
        ckdl_fill(l, s, seq);
        pthread_mutex_lock(&l->mu);
        s->state = CKDL_READY;
        pthread_cond_broadcast(&l->cv_ready);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void stop_threads(ckd_loader *l)
{
    if (!l->n_running)
        return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->n_running; i++)
        pthread_join(l->th[i], NULL);
    free(l->th);
    l->th = NULL;
    l->n_running = 0;
    l->stop = 0;
}

static int start_threads(ckd_loader *l, ckd_error *err)
{
    l->th = calloc((size_t)l->o.threads, sizeof *l->th);
    if (!l->th)
        return ckd_errorf(err, "loader: out of memory");
    for (int i = 0; i < l->o.threads; i++) {
        if (pthread_create(&l->th[i], NULL, worker, l) != 0) {
            pthread_mutex_unlock(&l->mu);
            stop_threads(l);
            pthread_mutex_lock(&l->mu);
            return ckd_errorf(err, "loader: cannot start prefetch thread %d", i);
        }
        l->n_running = i + 1;
    }
    return 0;
}

void ckd_loader_free(ckd_loader *l)
{
    if (!l)
        return;
    stop_threads(l);
    for (int i = 0; l->ring && i < l->n_slots; i++)
        free_slot(&l->ring[i]);
    free(l->ring);
    free(l->perm[0]);
    free(l->perm[1]);
    pthread_mutex_destroy(&l->mu);
    pthread_mutex_destroy(&l->perm_mu);
    pthread_cond_destroy(&l->cv_work);
    pthread_cond_destroy(&l->cv_ready);
    free(l);
}

/* Gives the held slot back to the workers. Called with mu held. */
static void release_held(ckd_loader *l)
{
    if (!l->holding)
        return;
    ckdl_slot *s = &l->ring[l->released % l->n_slots];
    s->state = CKDL_FREE;
    s->seq = -1;
    l->released++;
    l->holding = 0;
    pthread_cond_broadcast(&l->cv_work);
}

int ckd_loader_next(ckd_loader *l, const ckd_batch **out, ckd_error *err)
{
    *out = NULL;
    pthread_mutex_lock(&l->mu);
    release_held(l);
    for (;;) {
        if (l->failed) {
            pthread_mutex_unlock(&l->mu);
            return ckd_errorf(err, "%s", l->fail_msg);
        }
        int64_t want = l->released;
        if (want >= l->end_seq) {
            pthread_mutex_unlock(&l->mu);
            return 1;
        }
        ckdl_slot *s = &l->ring[want % l->n_slots];
        if (l->o.threads == 0) {
            pthread_mutex_unlock(&l->mu);
            s->seq = want;
            ckdl_fill(l, s, want);
            pthread_mutex_lock(&l->mu);
            s->state = CKDL_READY;
        } else {
            if (!l->n_running && start_threads(l, err) < 0) {
                pthread_mutex_unlock(&l->mu);
                return -1;
            }
            while (!(s->seq == want && s->state == CKDL_READY))
                pthread_cond_wait(&l->cv_ready, &l->mu);
        }
        if (s->rc < 0) {
            l->failed = 1;
            memcpy(l->fail_msg, s->msg, sizeof l->fail_msg);
            continue;
        }
        l->skipped += s->b.n_skipped;
        if (s->last_skip[0])
            memcpy(l->last_error, s->last_skip, sizeof l->last_error);
        l->holding = 1;
        if (s->b.n == 0 && l->o.shards <= 1) {
            release_held(l); /* nothing in it survived: on to the next */
            continue;
        }
        pthread_mutex_unlock(&l->mu);
        *out = &s->b;
        return 0;
    }
}

int64_t ckd_loader_batches_per_epoch(const ckd_loader *l)
{
    return l->bpe;
}

ckd_loader_cursor ckd_loader_tell(const ckd_loader *l)
{
    ckd_loader *m = (ckd_loader *)l;
    pthread_mutex_lock(&m->mu);
    int64_t seq = l->released + (l->holding ? 1 : 0);
    pthread_mutex_unlock(&m->mu);
    return (ckd_loader_cursor){seq / l->bpe, seq % l->bpe};
}

int ckd_loader_seek(ckd_loader *l, ckd_loader_cursor c, ckd_error *err)
{
    if (c.epoch < 0 || c.batch < 0 || c.batch > l->bpe ||
        c.epoch > (INT64_MAX - c.batch) / l->bpe - 1)
        return ckd_errorf(err, "loader: cannot seek to epoch %lld, batch %lld (%lld batches an "
                               "epoch)",
                          (long long)c.epoch, (long long)c.batch, (long long)l->bpe);
    stop_threads(l);
    pthread_mutex_lock(&l->mu);
    for (int i = 0; i < l->n_slots; i++) {
        l->ring[i].state = CKDL_FREE;
        l->ring[i].seq = -1;
    }
    l->released = l->next_claim = c.epoch * l->bpe + c.batch;
    l->holding = 0;
    l->failed = 0;
    l->skipped = 0;
    l->last_error[0] = '\0';
    pthread_mutex_unlock(&l->mu);
    return 0;
}

int64_t ckd_loader_skipped(const ckd_loader *l)
{
    ckd_loader *m = (ckd_loader *)l;
    pthread_mutex_lock(&m->mu);
    int64_t n = l->skipped;
    pthread_mutex_unlock(&m->mu);
    return n;
}

void ckd_loader_last_error(const ckd_loader *l, char *buf, size_t cap)
{
    ckd_loader *m = (ckd_loader *)l;
    pthread_mutex_lock(&m->mu);
    snprintf(buf, cap, "%s", l->last_error);
    pthread_mutex_unlock(&m->mu);
}
