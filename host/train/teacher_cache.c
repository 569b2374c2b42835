/* The teacher embedding cache (teacher.mode "cache", CLIP-Embed-KD's
 * setting): the teacher's normalised embeddings of every training image and
 * of every caption, computed once and kept in
 *
 *     <artifact cache>/teacher-embeddings/<key>.safetensors
 *
 * where key is the SHA-256 of a canonical JSON description of everything
 * the numbers depend on — the teacher (plugin, configuration, weights'
 * SHA-256), its preprocessing (image size, mean, std; shortest edge resized,
 * centre crop: no augmentation), its context length, and the training data
 * (reader spec with its split and caption settings, the file it resolved to
 * with that file's size and modification time, the sample count). Every
 * caption is embedded, so whichever caption the loader draws for a sample
 * is there; the text embedding used is the one of that caption.
 *
 * Without augmentation the image embedding is the un-augmented image's.
 * With it (train.augment), the entry holds V views of each image
 * (teacher.views, default 1: MobileCLIP's dataset reinforcement): view v of
 * sample i is the crop (+ flip) the loader draws from (v, i) and replays
 * in the epochs that pick view v, so the embedding read for a batch
 * is exactly the teacher's embedding of the image the student sees; the key
 * then also holds the crop settings and V, and image_embeds (and
 * logits) have V blocks of N rows, view by view: row v·N + i.
 *
 * The file holds image_embeds [N, D] ([V·N, D] with views), text_embeds [C, D], text_offsets
 * [N + 1] (sample i's captions are rows off[i] .. off[i + 1] - 1), valid [N]
 * (0: the sample could not be read), labels [N] (class ids, -1 where unknown
 * or unreadable: the class centroids are computed from them), logit_scale []
 * (θ of the teacher) and, when the data have classes and templates,
 * class_txt [K, D] (the teacher's prompt-ensembled class embeddings). For
 * a classifier teacher (one with a separate head) image_embeds are its
 * normalised penultimate features [N, F], logits [N, K] its class logits,
 * and there are no captions (text_embeds [0, F]) or class embeddings; its
 * metadata holds the key's JSON and
 * the SHA-256 of the tensor bytes, both checked on every open, so a damaged
 * or mismatched file is noticed and computed again. It is written through a
 * temporary file and a rename, under the artifact cache's lock protocol so
 * that concurrent runs compute it once; it is then memory-mapped and shared
 * by every run of the same teacher and data. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clipkd/fetch.h"
#include "clipkd/safetensors.h"
#include "tcache_entry.h"
#include "train_internal.h"
#include "dist/dist_internal.h"

#define FORMAT "clipkd teacher embeddings 1"

/* The augmentation an entry's views were drawn with: the training loader's
 * crop settings (ckd_loader_opts_init's; a recipe cannot change them) and
 * the number of views (the crops do not depend on the seed). "none"
 * without views. */
static json_t *augment_json(const train_run *t, const ckd_loader_opts *lo)
{
    if (!t->views)
        return json_string("none");
    return json_pack("{s:s, s:[f, f], s:[f, f], s:b, s:s, s:I}", "crop", "random resized, bicubic", "scale",
                     (double)lo->scale_lo, (double)lo->scale_hi, "ratio", (double)lo->ratio_lo,
                     (double)lo->ratio_hi, "hflip", lo->hflip, "streams", "clipkd views 1", "views",
                     (json_int_t)t->views);
}

/* The key's JSON (canonical: compact, sorted keys). */
static char *key_json(const train_run *t, ckd_model *m, const char *weights_id, int kind)
{
    const ckd_model_info *info = ckd_model_get_info(m);
    ckd_loader_opts lo;
    ckd_loader_opts_init(&lo); /* the mean and std every loader of a run uses */
    const char *src = ckd_dataset_source(t->train_ds);
    char real[PATH_MAX];
    struct stat sb;
    json_t *source = json_pack("{s:s}", "path", realpath(src, real) ? real : src);
    if (stat(src, &sb) == 0) {
        json_object_set_new(source, "size", json_integer((json_int_t)sb.st_size));
        json_object_set_new(source, "mtime_ns",
                            json_integer((json_int_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec));
    }
    json_t *k = json_pack(
        "{s:s, s:{s:s, s:O, s:s}, s:{s:I, s:[f, f, f], s:[f, f, f], s:s}, s:o, s:s, s:I, s:{s:O, s:o, s:I}}", "format",
        FORMAT, "teacher", "plugin", ckd_model_plugin_name(m), "config", (json_t *)ckd_model_config(m), "weights", weights_id,
        "preprocess", "image_size", (json_int_t)info->image_size, "mean", lo.mean[0], lo.mean[1], lo.mean[2], "std",
        lo.std[0], lo.std[1], lo.std[2], "resize", "shortest edge, centre crop", "augment", augment_json(t, &lo),
        "captions", "all",
        "context_length", (json_int_t)info->context_length, "data", "spec",
        (json_t *)json_object_get(json_object_get(t->rj, "data"), "train"), "source", source, "size",
        (json_int_t)ckd_dataset_size(t->train_ds));
    if (k && kind == TEACHER_CLASSIFIER) /* what a classifier's rows are (CLIP keys stay as they were) */
        json_object_set_new(k, "rows", json_string("normalised penultimate features, class logits"));
    char *text = k ? json_dumps(k, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(k);
    return text;
}

/* The width of an entry's image rows: a classifier's features, else the embedding. */
static int64_t entry_width(int kind, const ckd_model *m)
{
    return kind == TEACHER_CLASSIFIER ? ckd_model_feature_dim(m) : ckd_model_embed_dim(m);
}

/* Opens and checks an entry: 0 with *tc set, -1 (err says why) when it is
 * damaged, was written for another key, or predates the labels or logits
 * this run needs. */
static int entry_open(const train_run *t, const char *path, const char *key, int64_t D, int64_t K, train_tcache *tc,
                      ckd_error *err)
{
    ckd_safetensors *st = ckd_st_open(path, err);
    if (!st)
        return -1;
    tcache_arrays a;
    if (tcache_entry_check(st, key, (int64_t)ckd_dataset_size(t->train_ds), t->views ? t->views : 1, D,
                           (t->needs & CKD_NEED_CENTROIDS) != 0, K, &a, err)) {
        ckd_st_close(st);
        return -1;
    }
    *tc = (train_tcache){.st = st, .img = a.img, .txt = a.txt, .off = a.off, .valid = a.valid, .labels = a.labels,
                         .logits = a.logits, .n = a.n, .n_txt = a.n_txt, .dim = a.dim, .n_logits = a.n_logits,
                         .views = a.views};
    snprintf(tc->path, sizeof tc->path, "%s", path);
    return 0;
}

/* ---- computing an entry ------------------------------------------------------ */

typedef struct entry {
    float *img, *txt, *cls, *logits, scale;
    int64_t *off;
    uint8_t *valid;
    int32_t *labels;
    int64_t n_txt, K, n_logits, views;
    size_t img_bytes, txt_bytes, off_bytes, valid_bytes, cls_bytes, labels_bytes, logits_bytes;
} entry;

static const void *entry_bytes(void *user, const char *name, size_t *nbytes)
{
    entry *e = user;
    const void *p = !strcmp(name, "image_embeds") ? (void *)e->img
                    : !strcmp(name, "text_embeds") ? (void *)e->txt
                    : !strcmp(name, "text_offsets") ? (void *)e->off
                    : !strcmp(name, "valid")        ? (void *)e->valid
                    : !strcmp(name, "logit_scale")  ? (void *)&e->scale
                    : !strcmp(name, "labels")       ? (void *)e->labels
                    : !strcmp(name, "logits")       ? (void *)e->logits
                                                    : (void *)e->cls;
    *nbytes = !strcmp(name, "image_embeds")   ? e->img_bytes
              : !strcmp(name, "text_embeds")  ? e->txt_bytes
              : !strcmp(name, "text_offsets") ? e->off_bytes
              : !strcmp(name, "valid")        ? e->valid_bytes
              : !strcmp(name, "logit_scale")  ? sizeof e->scale
              : !strcmp(name, "labels")       ? e->labels_bytes
              : !strcmp(name, "logits")       ? e->logits_bytes
                                              : e->cls_bytes;
    return p;
}

/* Every caption of the readable samples, embedded in chunks of samples so
 * that the token rows of the whole dataset are never in memory at once. */
static int embed_captions(train_run *t, ckd_model *m, const int64_t *index, int64_t n, int bs, entry *e,
                          ckd_error *err)
{
    int64_t D = ckd_model_embed_dim(m), T = ckd_model_get_info(m)->context_length, cap = 0;
    const int64_t chunk = 4096;
    for (int64_t s = 0; s < n; s += chunk) {
        int64_t cn = n - s < chunk ? n - s : chunk, M;
        int32_t *ids, *owner;
        if (train_caption_ids(t->train_ds, t->tok, index + s, cn, T, &ids, &owner, &M, err))
            return -1;
        if (e->n_txt + M > cap) {
            cap = (e->n_txt + M) * 2;
            float *p = realloc(e->txt, (size_t)(cap * D) * sizeof *p);
            if (!p) {
                free(ids), free(owner);
                return ckd_errorf(err, "out of memory for %lld text embeddings", (long long)cap);
            }
            e->txt = p;
        }
        int rc = train_encode_texts(m, t->ctx, ids, M, T, bs, t->world > 1, e->txt + e->n_txt * D, err);
        for (int64_t r = 0; r < M && !rc; r++)
            e->off[index[s + owner[r]] + 1]++;
        e->n_txt += M;
        t->teacher_encoded += M;
        free(ids), free(owner);
        if (rc)
            return -1;
    }
    return 0;
}

/* One view's block of the entry (rows v·N .. v·N + N − 1 of image_embeds and
 * logits), in dataset order with zero rows where a sample could not be read;
 * labels, index and *n receive the readable samples. */
static int compute_view(train_run *t, ckd_model *m, int kind, const train_view *v, int bs, entry *e,
                        int32_t *labels, int64_t *index, int64_t *n, ckd_error *err)
{
    int classifier = kind == TEACHER_CLASSIFIER;
    int64_t N = (int64_t)ckd_dataset_size(t->train_ds), D = entry_width(kind, m), KL = e->n_logits;
    int64_t at = v ? v->view : 0;
    float *img = e->img + at * N * D, *lg = e->logits ? e->logits + at * N * KL : NULL;
    int sharded = t->world > 1; /* under MPI the ranks compute the entry together */
    if (classifier ? train_encode_features(m, t->ctx, t->train_ds, v, bs, CKD_LOADER_SKIP, sharded, img, lg, labels,
                                           index, n, err)
                   : train_encode_images(m, t->ctx, t->train_ds, v, bs, CKD_LOADER_SKIP, sharded, img, labels, index,
                                         n, err))
        return -1;
    t->teacher_encoded += *n;
    /* Rows in dataset order, with gaps where samples were skipped: moving
     * from the back never overwrites a row still to be moved. */
    uint8_t *seen = calloc((size_t)N, 1);
    if (!seen)
        return ckd_errorf(err, "out of memory");
    for (int64_t r = *n - 1; r >= 0; r--) {
        memmove(img + index[r] * D, img + r * D, (size_t)D * sizeof *img);
        if (lg)
            memmove(lg + index[r] * KL, lg + r * KL, (size_t)KL * sizeof *lg);
        seen[index[r]] = 1;
    }
    for (int64_t i = 0; i < N; i++)
        if (!seen[i]) {
            memset(img + i * D, 0, (size_t)D * sizeof *img);
            if (lg)
                memset(lg + i * KL, 0, (size_t)KL * sizeof *lg);
            e->valid[i] = 0; /* a sample is valid when every view of it was read */
        }
    free(seen);
    return 0;
}

static int compute(train_run *t, ckd_model *m, int kind, entry *e, ckd_error *err)
{
    int classifier = kind == TEACHER_CLASSIFIER;
    int64_t N = (int64_t)ckd_dataset_size(t->train_ds), D = entry_width(kind, m), n = 0, V = t->views ? t->views : 1;
    int bs = (int)train_num(t->rj, "eval.batch_size", 256);
    int32_t *labels = malloc((size_t)N * sizeof *labels);
    int64_t *index = malloc((size_t)N * sizeof *index);
    e->img = malloc((size_t)(V * N * D) * sizeof *e->img);
    e->off = calloc((size_t)N + 1, sizeof *e->off);
    e->valid = malloc((size_t)N);
    e->labels = malloc((size_t)N * sizeof *e->labels);
    e->views = V;
    int rc = -1, was = ckd_ctx_set_grad(t->ctx, 0);
    if (!labels || !index || !e->img || !e->off || !e->valid || !e->labels) {
        ckd_errorf(err, "out of memory for the embeddings of %lld samples", (long long)N);
        goto out;
    }
    memset(e->valid, 1, (size_t)N);
    if (classifier) {
        e->n_logits = ckd_model_embed_dim(m);
        if (!(e->logits = malloc((size_t)(V * N * e->n_logits) * sizeof *e->logits))) {
            ckd_errorf(err, "out of memory for the class logits of %lld samples", (long long)N);
            goto out;
        }
    }
    /* The last view last: its index, labels and count are the ones kept
     * (every view reads the same samples, barring a read that fails once). */
    for (int64_t v = 0; v < V; v++) {
        train_view tv = {(uint64_t)train_num(t->rj, "seed", 0), t->views, (int)v};
        if (compute_view(t, m, kind, t->views ? &tv : NULL, bs, e, labels, index, &n, err))
            goto out;
    }
    for (int64_t i = 0; i < N; i++)
        e->labels[i] = -1;
    for (int64_t r = 0; r < n; r++)
        if (e->valid[index[r]])
            e->labels[index[r]] = labels[r];
    /* a classifier has no text: no captions, class prompts or logit scale */
    if (!classifier && embed_captions(t, m, index, n, bs, e, err))
        goto out;
    for (int64_t i = 0; i < N; i++)
        e->off[i + 1] += e->off[i];
    e->scale = classifier ? 0.0f : ckd_model_logit_scale(m)->data[0];
    e->K = (int64_t)ckd_dataset_n_classes(t->train_ds);
    if (!classifier && e->K > 0 && ckd_dataset_n_templates(t->train_ds) > 0) {
        ckd_eval_opts eo;
        ckd_eval_opts_init(&eo);
        if (!(e->cls = malloc((size_t)(e->K * D) * sizeof *e->cls))) {
            ckd_errorf(err, "out of memory for class embeddings");
            goto out;
        }
        if (train_class_embeddings(m, t->ctx, t->tok, t->train_ds, &eo, ckd_model_get_info(m)->context_length,
                                   e->cls, err))
            goto out;
        t->teacher_encoded += e->K * (int64_t)ckd_dataset_n_templates(t->train_ds);
    }
    e->img_bytes = (size_t)(V * N * D) * sizeof(float);
    e->txt_bytes = (size_t)(e->n_txt * D) * sizeof(float);
    e->off_bytes = (size_t)(N + 1) * sizeof(int64_t);
    e->valid_bytes = (size_t)N;
    e->labels_bytes = (size_t)N * sizeof *e->labels;
    e->cls_bytes = e->cls ? (size_t)(e->K * D) * sizeof(float) : 0;
    e->logits_bytes = e->logits ? (size_t)(V * N * e->n_logits) * sizeof(float) : 0;
    rc = 0;
out:
    ckd_ctx_reset(t->ctx);
    ckd_ctx_set_grad(t->ctx, was);
    free(labels);
    free(index);
    return rc;
}

static int entry_save(const entry *e, int64_t N, int64_t D, const char *key, const char *path, ckd_error *err)
{
    char hex[65];
    ckd_st_writer *w = ckd_st_writer_new();
    int rc = -1;
    if (!w)
        return ckd_errorf(err, "out of memory");
    if (tcache_digest(entry_bytes, (void *)e, hex, err) ||
        ckd_st_writer_add(w, "image_embeds", CKD_DT_F32, 2, (int64_t[]){e->views * N, D}, e->img, err) ||
        ckd_st_writer_add(w, "text_embeds", CKD_DT_F32, 2, (int64_t[]){e->n_txt, D}, e->txt, err) ||
        ckd_st_writer_add(w, "text_offsets", CKD_DT_I64, 1, (int64_t[]){N + 1}, e->off, err) ||
        ckd_st_writer_add(w, "valid", CKD_DT_U8, 1, (int64_t[]){N}, e->valid, err) ||
        ckd_st_writer_add(w, "labels", CKD_DT_I32, 1, (int64_t[]){N}, e->labels, err) ||
        ckd_st_writer_add(w, "logit_scale", CKD_DT_F32, 0, NULL, &e->scale, err) ||
        (e->cls && ckd_st_writer_add(w, "class_txt", CKD_DT_F32, 2, (int64_t[]){e->K, D}, e->cls, err)) ||
        (e->logits &&
         ckd_st_writer_add(w, "logits", CKD_DT_F32, 2, (int64_t[]){e->views * N, e->n_logits}, e->logits, err)) ||
        ckd_st_writer_set_metadata(w, "key", key, err) || ckd_st_writer_set_metadata(w, "sha256", hex, err) ||
        ckd_st_writer_save(w, path, err))
        goto out;
    rc = 0;
out:
    ckd_st_writer_free(w);
    return rc;
}

static void entry_free(entry *e)
{
    free(e->img);
    free(e->txt);
    free(e->cls);
    free(e->logits);
    free(e->off);
    free(e->valid);
    free(e->labels);
}

/* What a cache entry is for: the model it embeds with, the identity of its
 * weights, its kind, where its weights are (a run's final/, or NULL: the
 * recipe's teacher) and the role messages name. */
typedef struct cache_for {
    ckd_model *m;
    const char *weights_id, *weights_dir, *role;
    int kind;
} cache_for;

/* Loads the model's weights, computes the entry and writes it. */
static int build(train_run *t, const cache_for *f, const char *key, const char *path, ckd_error *err)
{
    int64_t N = (int64_t)ckd_dataset_size(t->train_ds), D = entry_width(f->kind, f->m);
    train_message(t, "%s embeddings: computing %lld images%s into %s", f->role, (long long)N,
                  f->kind == TEACHER_CLASSIFIER ? " (features and class logits)" : " and their captions", path);
    entry e = {0};
    /* Under MPI every rank loads the weights and computes its share (the
     * encoders gather the rest); rank 0, which holds the lock, writes, and
     * then a rank that does not see its entry (a cache on each node's own
     * disk) writes its node's copy: the same embeddings, renamed into place. */
    int rc = ckdi_dist_agree((f->weights_dir ? ckd_model_load(f->m, f->weights_dir, err)
                                             : train_teacher_fill(t, f->m, err)),
                             err) ||
                     ckdi_dist_agree(compute(t, f->m, f->kind, &e, err), err) ||
                     ckdi_dist_agree(t->rank == 0 && entry_save(&e, N, D, key, path, err), err) ||
                     ckdi_dist_agree(t->rank > 0 && access(path, F_OK) != 0 && entry_save(&e, N, D, key, path, err),
                                     err)
                 ? -1
                 : 0;
    entry_free(&e);
    return rc ? ckd_error_prefix(err, "%s embedding cache", f->role) : 0;
}

/* Opens the entry of f's model on the training data into *tc, computing it
 * first when it is missing or damaged. */
static int cache_open(train_run *t, const cache_for *f, train_tcache *tc, ckd_error *err)
{
    char dir[TRAIN_PATH_MAX], path[TRAIN_PATH_MAX + 128], hex[65];
    int rc = -1, fd = -1, locked = 0;
    int64_t D = entry_width(f->kind, f->m), K = f->kind == TEACHER_CLASSIFIER ? ckd_model_embed_dim(f->m) : 0;
    char *key = key_json(t, f->m, f->weights_id, f->kind);
    if (!key) {
        ckd_errorf(err, "%s embedding cache: out of memory", f->role);
        goto out;
    }
    if (ckd_sha256_buffer(key, strlen(key), hex, err) || ckd_cache_dir(dir, sizeof dir, err))
        goto out;
    snprintf(path, sizeof path, "%s/teacher-embeddings", dir);
    if (train_mkdirs(path, err))
        goto out;
    snprintf(path, sizeof path, "%s/teacher-embeddings/%s.safetensors", dir, hex);
    rc = 0;
out:
    /* Under MPI every rank comes here, and on together only if all could. */
    if (ckdi_dist_agree(rc, err))
        goto done;
    rc = -1;
    /* One process computes an entry; the others wait and then read it.
     * Under MPI rank 0 takes the lock and checks the entry, and the ranks
     * compute a missing one together. */
    int status = 0; /* 1: reusing it (opened), 2: to compute */
    if (t->rank == 0) {
        if (ckd_cache_lock(path, 1, &fd, err) < 0) {
            status = -1;
        } else {
            locked = 1;
            struct stat sb;
            ckd_error why = {{0}};
            status = 2;
            if (stat(path, &sb) == 0 && entry_open(t, path, key, D, K, tc, &why) == 0) {
                train_message(t, "%s embeddings: reusing %s", f->role, path);
                status = 1;
            } else if (stat(path, &sb) == 0) {
                train_message(t, "%s embeddings: %s is damaged or incomplete (%s); computing it again", f->role,
                              path, why.msg);
            }
        }
    }
    if (ckdi_dist_agree(status < 0 ? -1 : 0, err) || ckdi_dist_bcast(&status, sizeof status, 0, err))
        goto done;
    if (status == 2 && build(t, f, key, path, err))
        goto done;
    /* rank 0 opened a reused entry already; the others open it now */
    rc = ckdi_dist_agree(status == 2 || t->rank > 0 ? entry_open(t, path, key, D, K, tc, err) : 0, err);
done:
    if (locked)
        ckd_cache_unlock(path, fd);
    free(key);
    return rc;
}

/* The entry's class embeddings and logit scale as the run's tensors. */
static int adopt(train_run *t, ckd_error *err)
{
    const ckd_st_tensor *scale = ckd_st_find(t->tc.st, "logit_scale"), *cls = ckd_st_find(t->tc.st, "class_txt");
    if (!(t->t_scale = ckd_param_new(0, NULL, "teacher.logit_scale", err)))
        return -1;
    t->t_scale->requires_grad = 0;
    memcpy(t->t_scale->data, scale->data, sizeof(float));
    /* a classifier's logits are per sample (tc.logits), not from class prompts */
    if (t->t_kind == TEACHER_CLASSIFIER || !(t->needs & (CKD_NEED_CLASS_TXT | CKD_NEED_T_LOGITS)))
        return 0;
    if (!cls || cls->dtype != CKD_DT_F32 || cls->ndim != 2 || cls->shape[0] != t->n_classes ||
        cls->shape[1] != t->tc.dim)
        return ckd_errorf(err, "%s: no class embeddings [%lld, %lld] for the losses that need them", t->tc.path,
                          (long long)t->n_classes, (long long)t->tc.dim);
    if (!(t->class_txt = ckd_param_new(2, cls->shape, "class_txt", err)))
        return -1;
    t->class_txt->requires_grad = 0;
    memcpy(t->class_txt->data, cls->data, cls->nbytes);
    return 0;
}

int train_teacher_cache_open(train_run *t, ckd_error *err)
{
    char weights_id[96];
    ckd_model *m = train_teacher_shell(t, weights_id, sizeof weights_id, err);
    if (!m)
        return -1;
    snprintf(t->teacher_weights, sizeof t->teacher_weights, "%s", weights_id);
    int rc = -1;
    if ((t->t_kind = train_teacher_kind(m, err)) < 0)
        ckd_error_prefix(err, "teacher");
    else
        rc = cache_open(t, &(cache_for){m, weights_id, NULL, "teacher", t->t_kind}, &t->tc, err) || adopt(t, err)
                 ? -1
                 : 0;
    ckd_model_free(m); /* the embeddings are all the run needs of it */
    return rc;
}

int train_model_cache_open(train_run *t, const char *dir, const char *role, int *kind, train_tcache *tc,
                           ckd_error *err)
{
    char weights_id[96];
    ckd_model *m = train_model_shell(t, dir, weights_id, sizeof weights_id, err);
    if (!m)
        return ckd_error_prefix(err, "%s", role);
    int rc = -1;
    if ((*kind = train_teacher_kind(m, err)) < 0)
        ckd_error_prefix(err, "%s", role);
    else
        rc = cache_open(t, &(cache_for){m, weights_id, dir, role, *kind}, tc, err);
    ckd_model_free(m);
    return rc;
}

int train_tcache_rows(const train_tcache *tc, const ckd_batch *b, float *img, float *txt, float *logits,
                      ckd_error *err)
{
    int64_t D = tc->dim, K = tc->n_logits;
    if (logits && !tc->logits)
        return ckd_errorf(err, "%s: the entry holds no class logits", tc->path);
    for (int64_t i = 0; i < b->n; i++) {
        int64_t idx = b->indices[i], cap = b->captions[i] < 0 || !txt ? 0 : b->captions[i];
        /* the view the loader replayed (-1: ready-made pixels, one view) */
        int64_t v = b->views && b->views[i] > 0 ? b->views[i] : 0;
        if (v >= tc->views)
            return ckd_errorf(err, "%s: sample %lld is view %lld, the entry holds %lld (teacher.views)", tc->path,
                              (long long)idx, (long long)v, (long long)tc->views);
        if (idx < 0 || idx >= tc->n || !tc->valid[idx] || (txt && tc->off[idx] + cap >= tc->off[idx + 1]))
            return ckd_errorf(err, "%s: no embedding for sample %lld caption %lld (the sample could not be read "
                                   "when the cache was built; remove the file to rebuild it)",
                              tc->path, (long long)idx, (long long)cap);
        int64_t row = v * tc->n + idx;
        memcpy(img + i * D, tc->img + row * D, (size_t)D * sizeof(float));
        if (txt)
            memcpy(txt + i * D, tc->txt + (tc->off[idx] + cap) * D, (size_t)D * sizeof(float));
        if (logits)
            memcpy(logits + i * K, tc->logits + row * K, (size_t)K * sizeof(float));
    }
    return 0;
}
