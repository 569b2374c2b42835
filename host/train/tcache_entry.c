/* Checking a teacher-embedding cache entry (tcache_entry.h). */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "clipkd/fetch.h"
#include "tcache_entry.h"

/* The tensors in the order their bytes are hashed. labels and logits came
 * last, so an entry written before them still checks out (it is computed
 * again only for a run that needs them). */
static const char *const digest_order[] = {"image_embeds", "text_embeds", "text_offsets", "valid", "logit_scale",
                                           "class_txt", "labels", "logits"};

int tcache_digest(tcache_bytes_fn get, void *user, char hex[65], ckd_error *err)
{
    ckd_sha256 *h = ckd_sha256_new(err);
    if (!h)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < sizeof digest_order / sizeof *digest_order && !rc; i++) {
        size_t n = 0;
        const void *p = get(user, digest_order[i], &n);
        if (p)
            rc = ckd_sha256_update(h, p, n, err);
    }
    rc = rc || ckd_sha256_final(h, hex, err) ? -1 : 0;
    ckd_sha256_free(h);
    return rc;
}

static const void *st_bytes(void *user, const char *name, size_t *nbytes)
{
    const ckd_st_tensor *s = ckd_st_find(user, name);
    *nbytes = s ? s->nbytes : 0;
    return s ? s->data : NULL;
}

/* A tensor of the entry with the expected type and shape (-1: any size). */
static const ckd_st_tensor *want(const ckd_safetensors *st, const char *name, ckd_dtype dt, int ndim, int64_t d0,
                                 int64_t d1, ckd_error *err)
{
    const ckd_st_tensor *s = ckd_st_find(st, name);
    if (!s || s->dtype != dt || s->ndim != ndim || (ndim > 0 && d0 >= 0 && s->shape[0] != d0) ||
        (ndim > 1 && d1 >= 0 && s->shape[1] != d1))
        return ckd_errorf(err, "%s is missing or has the wrong type or shape", name), NULL;
    /* The arrays are read in place: clipkd's writer (as the reference
     * library's) aligns every tensor to its element size; a file whose
     * data are not aligned was not written by it. */
    if ((uintptr_t)s->data % ckd_dtype_size(dt))
        return ckd_errorf(err, "%s is not aligned to %zu bytes", name, ckd_dtype_size(dt)), NULL;
    return s;
}

int tcache_entry_check(const ckd_safetensors *st, const char *key, int64_t N, int64_t V, int64_t D, int need_labels,
                       int64_t K, tcache_arrays *out, ckd_error *err)
{
    const char *mk = ckd_st_metadata(st, "key"), *sum = ckd_st_metadata(st, "sha256");
    const ckd_st_tensor *img, *txt, *off, *valid, *scale, *labels = NULL, *logits = NULL;
    char hex[65];
    /* The views first: an entry of another view count has another key too,
     * but this says what differs. */
    const ckd_st_tensor *im = ckd_st_find(st, "image_embeds");
    if (im && im->ndim == 2 && N > 0 && im->shape[0] % N == 0 && im->shape[0] != N * V)
        return ckd_errorf(err, "it holds %lld view%s of each image, the run replays %lld (teacher.views)",
                          (long long)(im->shape[0] / N), im->shape[0] / N == 1 ? "" : "s", (long long)V);
    if (!mk || strcmp(mk, key))
        return ckd_errorf(err, "its key is not this run's");
    if (!(img = want(st, "image_embeds", CKD_DT_F32, 2, N * V, D, err)) ||
        !(txt = want(st, "text_embeds", CKD_DT_F32, 2, -1, D, err)) ||
        !(off = want(st, "text_offsets", CKD_DT_I64, 1, N + 1, 0, err)) ||
        !(valid = want(st, "valid", CKD_DT_U8, 1, N, 0, err)) ||
        !(scale = want(st, "logit_scale", CKD_DT_F32, 0, 0, 0, err)) ||
        /* labels: checked when present, required for class centroids */
        ((ckd_st_find(st, "labels") || need_labels) && !(labels = want(st, "labels", CKD_DT_I32, 1, N, 0, err))) ||
        /* logits: a classifier teacher's, required when K > 0 */
        ((ckd_st_find(st, "logits") || K > 0) &&
         !(logits = want(st, "logits", CKD_DT_F32, 2, N * V, K > 0 ? K : -1, err))))
        return -1;
    if (!sum || tcache_digest(st_bytes, (void *)st, hex, err) || strcmp(hex, sum))
        return ckd_errorf(err, "its content does not match its checksum");
    const int64_t *o = off->data;
    for (int64_t i = 0; i <= N; i++)
        if (o[i] < (i ? o[i - 1] : 0) || o[i] > txt->shape[0])
            return ckd_errorf(err, "text_offsets are not increasing within text_embeds");
    *out = (tcache_arrays){.img = img->data, .txt = txt->data, .off = o, .valid = valid->data,
                           .labels = labels ? labels->data : NULL, .logits = logits ? logits->data : NULL,
                           .n = N, .n_txt = txt->shape[0], .dim = D, .n_logits = logits ? logits->shape[1] : 0,
                           .views = V};
    return 0;
}
