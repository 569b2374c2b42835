/* Zero-shot accuracy, retrieval recall and calibration. Similarities go
 * through ckd_gemm; ranking is a count of better-scoring items, so no sort. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clipkd/blas.h"
#include "clipkd/metrics.h"

void ckd_prompt_ensemble(const float *txt, int64_t K, int64_t T, int64_t D, float *out)
{
    for (int64_t k = 0; k < K; k++) {
        float *o = out + k * D;
        memset(o, 0, (size_t)D * sizeof(float));
        for (int64_t t = 0; t < T; t++)
            for (int64_t d = 0; d < D; d++)
                o[d] += txt[(k * T + t) * D + d];
        double s = 0;
        for (int64_t d = 0; d < D; d++)
            s += (double)o[d] * o[d];
        float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
        for (int64_t d = 0; d < D; d++)
            o[d] *= inv;
    }
}

/* S [R, C] = A [R, D] · Bᵀ, B [C, D]. NULL on allocation failure. */
static float *similarities(const float *a, int64_t R, const float *b, int64_t C, int64_t D)
{
    float *s = malloc((size_t)(R * C > 0 ? R * C : 1) * sizeof(float));
    if (s)
        ckd_gemm(0, 1, R, C, D, 1.0f, a, D, b, D, 0.0f, s, C);
    return s;
}

int ckd_zero_shot_eval(const float *img, const int32_t *labels, int64_t N, const float *classes, int64_t K,
                       int64_t D, ckd_zero_shot *out, ckd_error *err)
{
    memset(out, 0, sizeof *out);
    if (N <= 0 || K <= 0)
        return ckd_errorf(err, "zero-shot: need images and classes (got %lld images, %lld classes)", (long long)N,
                          (long long)K);
    float *s = similarities(img, N, classes, K, D);
    if (!s)
        return ckd_errorf(err, "zero-shot: out of memory for %lld x %lld similarities", (long long)N, (long long)K);
    int64_t hit1 = 0, hit5 = 0;
    for (int64_t i = 0; i < N; i++) {
        if (labels[i] < 0 || labels[i] >= K) {
            free(s);
            return ckd_errorf(err, "zero-shot: label %d of image %lld outside [0, %lld)", (int)labels[i],
                              (long long)i, (long long)K);
        }
        const float *r = s + i * K;
        float truth = r[labels[i]];
        int64_t ahead = 0; /* classes scoring at least as high as the true one */
        for (int64_t k = 0; k < K; k++)
            if (k != labels[i] && r[k] >= truth)
                ahead++;
        hit1 += ahead < 1;
        hit5 += ahead < 5;
    }
    free(s);
    out->top1 = (double)hit1 / (double)N;
    out->top5 = (double)hit5 / (double)N;
    out->n = N;
    return 0;
}

int ckd_retrieval_eval(const float *img, int64_t N, const float *txt, const int32_t *txt_image, int64_t M,
                       int64_t D, ckd_retrieval *out, ckd_error *err)
{
    static const int ks[3] = {1, 5, 10};
    memset(out, 0, sizeof *out);
    if (N <= 0 || M <= 0)
        return ckd_errorf(err, "retrieval: need images and captions (got %lld and %lld)", (long long)N,
                          (long long)M);
    for (int64_t m = 0; m < M; m++)
        if (txt_image[m] < 0 || txt_image[m] >= N)
            return ckd_errorf(err, "retrieval: caption %lld belongs to image %d, outside [0, %lld)", (long long)m,
                              (int)txt_image[m], (long long)N);
    float *s = similarities(img, N, txt, M, D); /* [N, M] */
    if (!s)
        return ckd_errorf(err, "retrieval: out of memory for %lld x %lld similarities", (long long)N, (long long)M);
    /* Image→text: rank of the best-scoring own caption among all captions. */
    int64_t hits_i2t[3] = {0, 0, 0};
    for (int64_t i = 0; i < N; i++) {
        const float *r = s + i * M;
        float best = -INFINITY;
        int any = 0;
        for (int64_t m = 0; m < M; m++)
            if (txt_image[m] == i && r[m] > best) {
                best = r[m];
                any = 1;
            }
        int64_t ahead = 0;
        for (int64_t m = 0; any && m < M; m++)
            if (txt_image[m] != i && r[m] >= best)
                ahead++;
        for (int k = 0; k < 3; k++)
            hits_i2t[k] += any && ahead < ks[k];
    }
    /* Text→image: rank of the caption's image among all images. */
    int64_t hits_t2i[3] = {0, 0, 0};
    for (int64_t m = 0; m < M; m++) {
        float truth = s[(int64_t)txt_image[m] * M + m];
        int64_t ahead = 0;
        for (int64_t i = 0; i < N; i++)
            if (i != txt_image[m] && s[i * M + m] >= truth)
                ahead++;
        for (int k = 0; k < 3; k++)
            hits_t2i[k] += ahead < ks[k];
    }
    free(s);
    for (int k = 0; k < 3; k++) {
        out->i2t[k] = (double)hits_i2t[k] / (double)N;
        out->t2i[k] = (double)hits_t2i[k] / (double)M;
    }
    out->n_images = N;
    out->n_texts = M;
    return 0;
}

int ckd_calibration_eval(const float *probs, const int32_t *labels, int64_t N, int64_t K, int bins,
                         ckd_calibration *out, ckd_error *err)
{
    memset(out, 0, sizeof *out);
    if (N <= 0 || K <= 0 || bins < 1)
        return ckd_errorf(err, "calibration: need examples, classes and at least one bin");
    double *conf = calloc((size_t)bins, sizeof *conf), *acc = calloc((size_t)bins, sizeof *acc);
    int64_t *cnt = calloc((size_t)bins, sizeof *cnt);
    if (!conf || !acc || !cnt) {
        free(conf);
        free(acc);
        free(cnt);
        return ckd_errorf(err, "calibration: out of memory");
    }
    int64_t correct = 0;
    for (int64_t i = 0; i < N; i++) {
        if (labels[i] < 0 || labels[i] >= K) {
            free(conf);
            free(acc);
            free(cnt);
            return ckd_errorf(err, "calibration: label %d of example %lld outside [0, %lld)", (int)labels[i],
                              (long long)i, (long long)K);
        }
        const float *p = probs + i * K;
        int64_t arg = 0;
        for (int64_t k = 1; k < K; k++)
            if (p[k] > p[arg])
                arg = k;
        int ok = arg == labels[i];
        correct += ok;
        /* Bin b holds confidences in (b/B, (b+1)/B]; 0 goes to the first bin. */
        int b = (int)ceil(p[arg] * bins) - 1;
        b = b < 0 ? 0 : b >= bins ? bins - 1 : b;
        conf[b] += p[arg];
        acc[b] += ok;
        cnt[b]++;
        if (!ok) {
            out->wrong_conf += p[arg];
            out->wrong_true_prob += p[labels[i]];
            out->n_wrong++;
        }
    }
    for (int b = 0; b < bins; b++)
        if (cnt[b])
            out->ece += fabs(acc[b] - conf[b]) / (double)N;
    if (out->n_wrong) {
        out->wrong_conf /= (double)out->n_wrong;
        out->wrong_true_prob /= (double)out->n_wrong;
    }
    out->top1 = (double)correct / (double)N;
    out->n = N;
    free(conf);
    free(acc);
    free(cnt);
    return 0;
}
