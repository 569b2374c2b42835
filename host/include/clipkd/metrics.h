/* clipkd/metrics.h — evaluation metrics computed from embeddings and
 * probabilities, the way CLIP papers report them.
 *
 * Embeddings are row-major float32 and L2-normalised by the caller.
 */
#ifndef CLIPKD_METRICS_H
#define CLIPKD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "clipkd/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Class text embeddings from a prompt ensemble: for each class k, the T
 * template embeddings txt[k·T + t] (each normalised) are averaged and the mean
 * renormalised (CLIP's zero-shot classifier). out: [K, D]. */
void ckd_prompt_ensemble(const float *txt, int64_t K, int64_t T, int64_t D, float *out);

typedef struct ckd_zero_shot {
    double top1, top5;   /* fractions in [0, 1] */
    int64_t n;
} ckd_zero_shot;

/* Zero-shot classification: img [N, D] against classes [K, D] by cosine;
 * labels [N] in [0, K). */
int ckd_zero_shot_eval(const float *img, const int32_t *labels, int64_t N, const float *classes, int64_t K,
                       int64_t D, ckd_zero_shot *out, ckd_error *err);

typedef struct ckd_retrieval {
    double i2t[3];       /* image→text recall at 1, 5, 10 */
    double t2i[3];       /* text→image recall at 1, 5, 10 */
    /* The same recalls for a ranking drawn uniformly at random: a query with
     * r matches among G candidates hits at K with probability
     * 1 − C(G − r, K) / C(G, K), averaged over the queries. Tells a recall
     * that is low because the task is hard from one that is low because
     * many candidates match. */
    double i2t_chance[3], t2i_chance[3];
    int64_t n_images, n_texts;
} ckd_retrieval;

/* Retrieval with several captions per image (the standard COCO/Flickr
 * protocol): img [N, D], txt [M, D], txt_image[m] the image caption m
 * belongs to. Image→text: a hit at K when any of the image's captions ranks
 * in the top K; text→image: when the caption's image ranks in the top K. Ties
 * rank against the query (a tied wrong item counts as ranked ahead), so a
 * caption whose text other images also have (templated captions) has every
 * one of those images tied with its own, ranked ahead of it. */
int ckd_retrieval_eval(const float *img, int64_t N, const float *txt, const int32_t *txt_image, int64_t M,
                       int64_t D, ckd_retrieval *out, ckd_error *err);

/* Retrieval where texts and images match many to many: text
 * match_text[p] and image match_image[p] match (p < P; a pair given twice
 * counts once). Image→text: a hit at K when any text matching the image
 * ranks in the top K of the M texts; text→image: when any image matching
 * the text ranks in the top K of the N images. Only non-matching items rank
 * ahead of a match, ties against the query as above; a query without a
 * match is a miss. ckd_retrieval_eval is the case of one pair per caption.
 *
 * With texts the distinct caption texts and a pair for each caption (its
 * text, its image), this is the "text" protocol of clipkd's evaluation:
 * an image matches every caption text that any of its captions has, so
 * that on templated captions all images fitting a caption count as right. */
int ckd_retrieval_eval_matches(const float *img, int64_t N, const float *txt, int64_t M, int64_t D,
                               const int32_t *match_image, const int32_t *match_text, int64_t P,
                               ckd_retrieval *out, ckd_error *err);

typedef struct ckd_calibration {
    double top1;             /* accuracy */
    double ece;              /* expected calibration error, equal-width confidence bins */
    double wrong_conf;       /* on misclassified examples: mean top probability */
    double wrong_true_prob;  /* on misclassified examples: mean probability of the true class */
    int64_t n, n_wrong;
} ckd_calibration;

/* probs [N, K] (rows sum to 1), labels [N]; bins ≥ 1 (15 is usual). */
int ckd_calibration_eval(const float *probs, const int32_t *labels, int64_t N, int64_t K, int bins,
                         ckd_calibration *out, ckd_error *err);

#ifdef __cplusplus
}
#endif
#endif
