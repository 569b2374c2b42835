/* The teacher's class centroids, the batch's `centroids` [K, Dt], as
 * CLIP-Embed-KD defines them: for each class, the mean of the teacher's
 * L2-normalised image embeddings of its first n training images in dataset
 * order (the paper's n is 100; the loss's centroid_images, 0 = every image
 * of the class). The mean is not renormalised: embed_kd normalises each
 * centroid after mapping it to the student's width.
 *
 * They are computed once, before the first step: from the teacher embedding
 * cache without any teacher forward, or from one pass of the live teacher
 * over the un-augmented training images — the embeddings the cache holds,
 * so both modes give the same centroids. With replayed views (teacher.views)
 * both take every image's view 0: the cache's first n rows. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "train_internal.h"

/* Per class, the sum of the first cap rows (0: all) of img [n, D] with that
 * label (labels outside [0, K) are skipped); count[k] rows went in. */
static void class_sums(const float *img, const int32_t *labels, int64_t n, int64_t D, int64_t K, int64_t cap,
                       double *sum, int64_t *count)
{
    for (int64_t i = 0; i < n; i++) {
        int32_t k = labels[i];
        if (k < 0 || k >= K || (cap > 0 && count[k] >= cap))
            continue;
        for (int64_t d = 0; d < D; d++)
            sum[k * D + d] += img[i * D + d];
        count[k]++;
    }
}

/* A class no training image belongs to keeps a zero centroid; say so, since
 * its embed_kd logit is then 0 whatever the student does. */
static void report_empty(const train_run *t, const int64_t *count)
{
    char names[512] = "";
    size_t len = 0;
    int64_t empty = 0;
    for (int64_t k = 0; k < t->n_classes; k++) {
        if (count[k])
            continue;
        if (empty++ < 8 && len < sizeof names)
            len += (size_t)snprintf(names + len, sizeof names - len, "%s\"%s\"", len ? ", " : "",
                                    ckd_dataset_class_name(t->train_ds, (size_t)k));
    }
    if (empty)
        train_message(t, "class centroids: no training image of %lld class%s (%s%s); their centroids are zero",
                      (long long)empty, empty > 1 ? "es" : "", names, empty > 8 ? ", ..." : "");
}

/* t->centroids from normalised embeddings img [n, D] and their labels. */
static int centroids_from(train_run *t, const float *img, const int32_t *labels, int64_t n, int64_t D,
                          ckd_error *err)
{
    int64_t K = t->n_classes;
    double *sum = calloc((size_t)(K * D), sizeof *sum);
    int64_t *count = calloc((size_t)K, sizeof *count);
    int rc = -1;
    if (!sum || !count) {
        ckd_errorf(err, "out of memory for %lld class centroids", (long long)K);
        goto out;
    }
    class_sums(img, labels, n, D, K, t->centroid_images, sum, count);
    if (!(t->centroids = ckd_param_new(2, (int64_t[]){K, D}, "centroids", err)))
        goto out;
    t->centroids->requires_grad = 0;
    for (int64_t k = 0; k < K; k++)
        for (int64_t d = 0; d < D; d++)
            t->centroids->data[k * D + d] = count[k] ? (float)(sum[k * D + d] / (double)count[k]) : 0.0f;
    report_empty(t, count);
    rc = 0;
out:
    free(sum);
    free(count);
    return rc;
}

/* The live teacher's normalised embeddings of the training images, in
 * dataset order, as the cache computes them (unreadable samples skipped). */
static int centroids_live(train_run *t, ckd_error *err)
{
    int cls = t->t_kind == TEACHER_CLASSIFIER; /* t_img is a classifier's features */
    int64_t N = (int64_t)ckd_dataset_size(t->train_ds), n = 0;
    int64_t D = cls ? ckd_model_feature_dim(t->teacher) : ckd_model_embed_dim(t->teacher);
    int bs = (int)train_num(t->rj, "eval.batch_size", 256);
    float *img = malloc((size_t)(N * D) * sizeof *img);
    int32_t *labels = malloc((size_t)N * sizeof *labels);
    int64_t *index = malloc((size_t)N * sizeof *index);
    int rc = -1, was = ckd_ctx_set_grad(t->ctx, 0);
    train_view v0 = {(uint64_t)train_num(t->rj, "seed", 0), t->views, 0};
    const train_view *v = t->views ? &v0 : NULL;
    if (!img || !labels || !index)
        ckd_errorf(err, "out of memory for the teacher embeddings of %lld images", (long long)N);
    /* under MPI (every rank sets up alike) the ranks share the encoding */
    else if (!(cls ? train_encode_features(t->teacher, t->ctx, t->train_ds, v, bs, CKD_LOADER_SKIP, 1, img, NULL,
                                           labels, index, &n, err)
                   : train_encode_images(t->teacher, t->ctx, t->train_ds, v, bs, CKD_LOADER_SKIP, 1, img, labels,
                                         index, &n, err)))
        rc = centroids_from(t, img, labels, n, D, err);
    t->teacher_encoded += n;
    ckd_ctx_reset(t->ctx);
    ckd_ctx_set_grad(t->ctx, was);
    free(img);
    free(labels);
    free(index);
    return rc;
}

int train_centroids(train_run *t, ckd_error *err)
{
    int rc = t->tc.st ? centroids_from(t, t->tc.img, t->tc.labels, t->tc.n, t->tc.dim, err) : centroids_live(t, err);
    return rc ? ckd_error_prefix(err, "teacher class centroids") : 0;
}
