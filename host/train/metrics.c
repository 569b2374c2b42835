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

/* The matches of each of Q queries among G candidates, as lists: those of
 * query q are item[start[q] .. start[q + 1]), each candidate once. */
typedef struct match_lists {
    int64_t *start;
    int32_t *item;
} match_lists;

static void match_lists_free(match_lists *l)
{
    free(l->start);
    free(l->item);
    l->start = NULL;
    l->item = NULL;
}

/* From the pairs (query[p], cand[p]); seen: G zeroed flags, left zeroed. */
static int match_lists_build(match_lists *l, int64_t Q, const int32_t *query, const int32_t *cand, int64_t P,
                             char *seen)
{
    l->start = calloc((size_t)Q + 1, sizeof *l->start);
    l->item = malloc((size_t)(P > 0 ? P : 1) * sizeof *l->item);
    int64_t *fill = malloc((size_t)(Q > 0 ? Q : 1) * sizeof *fill);
    if (!l->start || !l->item || !fill) {
        free(fill);
        match_lists_free(l);
        return -1;
    }
    for (int64_t p = 0; p < P; p++)
        l->start[query[p] + 1]++;
    for (int64_t q = 0; q < Q; q++)
        l->start[q + 1] += l->start[q];
    for (int64_t q = 0; q < Q; q++)
        fill[q] = l->start[q];
    for (int64_t p = 0; p < P; p++)
        l->item[fill[query[p]]++] = cand[p];
    /* Drop repeated pairs, compacting the lists in place. */
    int64_t w = 0;
    for (int64_t q = 0; q < Q; q++) {
        int64_t from = l->start[q], to = l->start[q + 1];
        l->start[q] = w;
        for (int64_t k = from; k < to; k++)
            if (!seen[l->item[k]])
                seen[l->item[k]] = 1, l->item[w++] = l->item[k];
        for (int64_t k = l->start[q]; k < w; k++)
            seen[l->item[k]] = 0;
    }
    l->start[Q] = w;
    free(fill);
    return 0;
}

/* P(hit at K) of a uniformly random ranking of G candidates, r of them
 * matches: 1 − C(G − r, K) / C(G, K). */
static double chance_at(int64_t G, int64_t r, int K)
{
    if (r <= 0)
        return 0.0;
    double miss = 1.0;
    for (int64_t j = 0; j < K; j++) {
        if (G - r - j <= 0)
            return 1.0;
        miss *= (double)(G - r - j) / (double)(G - j);
    }
    return 1.0 - miss;
}

/* Recall at 1, 5, 10 and its chance level over Q queries, each ranking G
 * candidates: score(q, g) = s[q * qs + g * gs]. seen: G zeroed flags. */
static void recall(const float *s, int64_t qs, int64_t gs, int64_t Q, int64_t G, const match_lists *l, char *seen,
                   double *rec, double *chance)
{
    static const int ks[3] = {1, 5, 10};
    int64_t hits[3] = {0, 0, 0};
    double ch[3] = {0, 0, 0};
    for (int64_t q = 0; q < Q; q++) {
        const float *r = s + q * qs;
        const int32_t *it = l->item + l->start[q];
        int64_t n = l->start[q + 1] - l->start[q];
        float best = -INFINITY;
        for (int64_t k = 0; k < n; k++) {
            best = r[it[k] * gs] > best ? r[it[k] * gs] : best;
            seen[it[k]] = 1;
        }
        int64_t ahead = 0; /* non-matches scoring at least as high as the best match */
        for (int64_t g = 0; n && g < G; g++)
            ahead += !seen[g] && r[g * gs] >= best;
        for (int64_t k = 0; k < n; k++)
            seen[it[k]] = 0;
        for (int k = 0; k < 3; k++) {
            hits[k] += n && ahead < ks[k];
            ch[k] += chance_at(G, n, ks[k]);
        }
    }
    for (int k = 0; k < 3; k++) {
        rec[k] = (double)hits[k] / (double)Q;
        chance[k] = ch[k] / (double)Q;
    }
}

int ckd_retrieval_eval_matches(const float *img, int64_t N, const float *txt, int64_t M, int64_t D,
                               const int32_t *match_image, const int32_t *match_text, int64_t P,
                               ckd_retrieval *out, ckd_error *err)
{
    memset(out, 0, sizeof *out);
    if (N <= 0 || M <= 0)
        return ckd_errorf(err, "retrieval: need images and captions (got %lld and %lld)", (long long)N,
                          (long long)M);
    for (int64_t p = 0; p < P; p++)
        if (match_image[p] < 0 || match_image[p] >= N || match_text[p] < 0 || match_text[p] >= M)
            return ckd_errorf(err, "retrieval: match %lld pairs image %d and text %d, outside [0, %lld) x [0, %lld)",
                              (long long)p, (int)match_image[p], (int)match_text[p], (long long)N, (long long)M);
    float *s = similarities(img, N, txt, M, D); /* [N, M] */
    char *seen = calloc((size_t)(N > M ? N : M), 1);
    match_lists by_image = {0}, by_text = {0};
    int rc = -1;
    if (!s || !seen || match_lists_build(&by_image, N, match_image, match_text, P, seen) ||
        match_lists_build(&by_text, M, match_text, match_image, P, seen)) {
        ckd_errorf(err, "retrieval: out of memory for %lld x %lld similarities", (long long)N, (long long)M);
        goto out;
    }
    recall(s, M, 1, N, M, &by_image, seen, out->i2t, out->i2t_chance);
    recall(s, 1, M, M, N, &by_text, seen, out->t2i, out->t2i_chance);
    out->n_images = N;
    out->n_texts = M;
    rc = 0;
out:
    match_lists_free(&by_image);
    match_lists_free(&by_text);
    free(seen);
    free(s);
    return rc;
}

int ckd_retrieval_eval(const float *img, int64_t N, const float *txt, const int32_t *txt_image, int64_t M,
                       int64_t D, ckd_retrieval *out, ckd_error *err)
{
    memset(out, 0, sizeof *out);
    for (int64_t m = 0; m < M; m++)
        if (txt_image[m] < 0 || txt_image[m] >= N)
            return ckd_errorf(err, "retrieval: caption %lld belongs to image %d, outside [0, %lld)", (long long)m,
                              (int)txt_image[m], (long long)N);
    int32_t *self = malloc((size_t)(M > 0 ? M : 1) * sizeof *self);
    if (!self)
        return ckd_errorf(err, "retrieval: out of memory for %lld captions", (long long)M);
    for (int64_t m = 0; m < M; m++)
        self[m] = (int32_t)m;
    int rc = ckd_retrieval_eval_matches(img, N, txt, M, D, txt_image, self, M, out, err);
    free(self);
    return rc;
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
