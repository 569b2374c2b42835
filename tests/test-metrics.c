/* Evaluation metrics on small hand-made cases with known answers. */
#include "config.h"

#include <math.h>
#include <string.h>

#include <criterion/criterion.h>

#include "clipkd/metrics.h"

/* Unit vectors in 2-D at the given angles (degrees). */
static void at_angles(const double *deg, int n, float *out)
{
    for (int i = 0; i < n; i++) {
        out[2 * i] = (float)cos(deg[i] * M_PI / 180);
        out[2 * i + 1] = (float)sin(deg[i] * M_PI / 180);
    }
}

Test(metrics, prompt_ensemble_averages_and_renormalises)
{
    float txt[2 * 2 * 2], out[4];
    at_angles((double[]){0, 90, 180, 180}, 4, txt);
    ckd_prompt_ensemble(txt, 2, 2, 2, out);
    cr_assert_float_eq(out[0], (float)M_SQRT1_2, 1e-6);
    cr_assert_float_eq(out[1], (float)M_SQRT1_2, 1e-6);
    cr_assert_float_eq(out[2], -1.0f, 1e-6);
    cr_assert_float_eq(out[3], 0.0f, 1e-6);
}

Test(metrics, zero_shot_top1_top5)
{
    /* 6 classes on the circle every 60°; images near classes 0, 1, 2 but labelled 0, 3, 2. */
    float cls[12], img[6];
    at_angles((double[]){0, 60, 120, 180, 240, 300}, 6, cls);
    at_angles((double[]){5, 62, 118}, 3, img);
    ckd_zero_shot z;
    ckd_error err;
    cr_assert_eq(ckd_zero_shot_eval(img, (int32_t[]){0, 3, 2}, 3, cls, 6, 2, &z, &err), 0, "%s", err.msg);
    cr_assert_float_eq(z.top1, 2.0 / 3, 1e-12);
    /* From 62°, class 3 (180°) is 118° away: the 4th closest of 6, inside the top 5. */
    cr_assert_float_eq(z.top5, 1.0, 1e-12);
    cr_assert_eq(ckd_zero_shot_eval(img, (int32_t[]){0, 6, 2}, 3, cls, 6, 2, &z, &err), -1);
    cr_assert(strstr(err.msg, "label 6 of image 1"), "%s", err.msg);
}

Test(metrics, retrieval_with_several_captions_per_image)
{
    /* 3 images; captions: image 0 has two (one good, one poor), image 1 one poor, image 2 one good. */
    float img[6], txt[8];
    at_angles((double[]){0, 90, 200}, 3, img);
    at_angles((double[]){2, 160, 45, 200}, 4, txt);
    /* Make the tie below exact: image 1 = (0, 1), caption 2 = (0.5, 0.5) scores 0.5 against images 0 and 1. */
    img[2] = 0.0f;
    img[3] = 1.0f;
    txt[4] = txt[5] = 0.5f;
    int32_t owner[4] = {0, 0, 1, 2};
    ckd_retrieval r;
    ckd_error err;
    cr_assert_eq(ckd_retrieval_eval(img, 3, txt, owner, 4, 2, &r, &err), 0, "%s", err.msg);
    /* i2t R@1: image 0 (its best caption at 2° wins), image 1 (45° caption is its closest? 90° vs 45°: 45° off;
     * the 160° caption scores lower) yes, image 2 (200° exact) yes. */
    cr_assert_float_eq(r.i2t[0], 1.0, 1e-12);
    /* t2i R@1: caption 0 → image 0 yes; caption 1 at 160° is closest to image 2 (40°) not image 0 → no;
     * caption 2 at 45° ties images 0 and 1 (45° each) → a tie counts against → no; caption 3 → image 2 yes. */
    cr_assert_float_eq(r.t2i[0], 0.5, 1e-12);
    cr_assert_float_eq(r.t2i[1], 1.0, 1e-12);
    cr_assert_eq(ckd_retrieval_eval(img, 3, txt, (int32_t[]){0, 0, 3, 2}, 4, 2, &r, &err), -1);
    cr_assert(strstr(err.msg, "caption 2 belongs to image 3"), "%s", err.msg);
}

/* Four images and six captions, one text shared by two images ("shirt"):
 * the pair protocol counts that image's twin caption against it, the text
 * protocol counts it as a match. Exact ties: img1 · "shirt" is 0.8 for
 * both copies, and "bag" and "sandal" have the same embedding. */
static const float dup_img[8] = {1, 0, 0.8f, 0.6f, -1, 0, 0, -1};
/* c0 "shirt" (img 0), c1 "shirt" (img 1), c2 "coat" (img 1), c3 "bag" (img 2),
 * c4 "boot" (img 3), c5 "sandal" (img 3). */
static const float dup_cap[12] = {1, 0, 1, 0, 0, 1, -1, 0, 0.6f, 0.8f, -1, 0};
static const int32_t dup_owner[6] = {0, 1, 1, 2, 3, 3};

Test(metrics, retrieval_pair_protocol_ranks_a_duplicate_caption_against_its_twin)
{
    ckd_retrieval r;
    ckd_error err;
    cr_assert_eq(ckd_retrieval_eval(dup_img, 4, dup_cap, dup_owner, 6, 2, &r, &err), 0, "%s", err.msg);
    /* i2t: img 0 ties its own c0 with img 1's c1 → rank 2; img 1's best (c1, 0.8) ties c0 and trails
     * c4 (0.96) → rank 3; img 2: c3 ties c5 → rank 2; img 3: c5 scores 0, tying c0, c1, c3 → rank 4. */
    cr_assert_float_eq(r.i2t[0], 0.0, 1e-12);
    cr_assert_float_eq(r.i2t[1], 1.0, 1e-12);
    /* t2i: c0 → img 0 first; c1 → img 0 (1.0) beats img 1 (0.8); c2 → img 1 (0.6) first; c3 ties
     * img 2 with nothing (img 3 scores 0) → first; c4 → img 3 is last of 4; c5 → img 3 (0) trails img 2. */
    cr_assert_float_eq(r.t2i[0], 3.0 / 6, 1e-12);
    cr_assert_float_eq(r.t2i[1], 1.0, 1e-12);
    cr_assert_eq(r.n_texts, 6);
    /* Chance: image 1 has 2 of 6 captions, the others 1 → R@1 (1 + 2 + 1 + 2) / 6 / 4 (img 3 has c4 and c5);
     * a caption has 1 image of 4. */
    cr_assert_float_eq(r.i2t_chance[0], 6.0 / 24, 1e-12);
    cr_assert_float_eq(r.t2i_chance[0], 0.25, 1e-12);
    cr_assert_float_eq(r.t2i_chance[1], 1.0, 1e-12);
}

Test(metrics, retrieval_text_protocol_matches_every_image_with_the_text)
{
    /* The distinct texts u0 "shirt", u1 "coat", u2 "bag", u3 "boot", u4 "sandal" and a pair per
     * caption (its image, its text), img 0's given twice. */
    const float txt[10] = {1, 0, 0, 1, -1, 0, 0.6f, 0.8f, -1, 0};
    const int32_t mi[7] = {0, 1, 1, 2, 3, 3, 0}, mt[7] = {0, 0, 1, 2, 3, 4, 0};
    ckd_retrieval r;
    ckd_error err;
    cr_assert_eq(ckd_retrieval_eval_matches(dup_img, 4, txt, 5, 2, mi, mt, 7, &r, &err), 0, "%s", err.msg);
    /* i2t: img 0 → u0 first (now its only "shirt"); img 1 → u0 (0.8) trails u3 (0.96) → rank 2;
     * img 2 → u2 ties u4 (same embedding, not its text) → rank 2; img 3 → u3, u4 score -0.8, 0: the
     * best, 0, ties u0 and u2 → rank 3. */
    cr_assert_float_eq(r.i2t[0], 0.25, 1e-12);
    cr_assert_float_eq(r.i2t[1], 1.0, 1e-12);
    /* t2i: u0 → img 0 or img 1, img 0 first; u1 → img 1 first; u2 → img 2 first; u3 → img 3 last;
     * u4 → img 3 (0) trails img 2 (1). */
    cr_assert_float_eq(r.t2i[0], 3.0 / 5, 1e-12);
    cr_assert_float_eq(r.t2i[1], 1.0, 1e-12);
    cr_assert_eq(r.n_images, 4);
    cr_assert_eq(r.n_texts, 5);
    /* Chance at 1 (the repeated pair counted once): images match 1, 2, 1, 2 of 5 texts; texts match
     * 2, 1, 1, 1, 1 of 4 images. Every list fits in 5. */
    cr_assert_float_eq(r.i2t_chance[0], 6.0 / 20, 1e-12);
    cr_assert_float_eq(r.t2i_chance[0], (2.0 / 4 + 4 * 0.25) / 5, 1e-12);
    cr_assert_float_eq(r.i2t_chance[1], 1.0, 1e-12);
    cr_assert_float_eq(r.t2i_chance[1], 1.0, 1e-12);

    /* The same ranking from the text side, with queries that have no match. */
    const int32_t mi1[2] = {0, 0}, mt1[2] = {3, 7};
    float many[20];
    for (int i = 0; i < 10; i++)
        many[2 * i] = 1, many[2 * i + 1] = 0;
    cr_assert_eq(ckd_retrieval_eval_matches(dup_img, 1, many, 10, 2, mi1, mt1, 2, &r, &err), 0, "%s", err.msg);
    /* All ten texts tie for image 0: 8 non-matches rank ahead of its matches. */
    cr_assert_float_eq(r.i2t[0], 0.0, 1e-12);
    cr_assert_float_eq(r.i2t[2], 1.0, 1e-12);
    /* 2 matches among 10 candidates: 1 − C(8, 5) / C(10, 5) = 1 − 56/252 at 5; certain at 10. */
    cr_assert_float_eq(r.i2t_chance[0], 0.2, 1e-12);
    cr_assert_float_eq(r.i2t_chance[1], 1.0 - 56.0 / 252, 1e-12);
    cr_assert_float_eq(r.i2t_chance[2], 1.0, 1e-12);
    /* Texts 3 and 7 find their one image; the other 8 have none and miss. */
    cr_assert_float_eq(r.t2i[0], 0.2, 1e-12);
    cr_assert_float_eq(r.t2i_chance[0], 0.2, 1e-12);

    cr_assert_eq(ckd_retrieval_eval_matches(dup_img, 4, txt, 5, 2, mi, (int32_t[]){0, 0, 1, 2, 5, 4, 0}, 7, &r,
                                            &err),
                 -1);
    cr_assert(strstr(err.msg, "match 4 pairs image 3 and text 5"), "%s", err.msg);
}

Test(metrics, calibration_ece_and_wrong_confidence)
{
    /* 4 examples, 2 classes. */
    float p[8] = {0.9f, 0.1f, 0.8f, 0.2f, 0.6f, 0.4f, 0.3f, 0.7f};
    int32_t y[4] = {0, 1, 0, 1};
    ckd_calibration c;
    ckd_error err;
    cr_assert_eq(ckd_calibration_eval(p, y, 4, 2, 10, &c, &err), 0, "%s", err.msg);
    cr_assert_float_eq(c.top1, 0.75, 1e-12);
    cr_assert_eq(c.n_wrong, 1);
    cr_assert_float_eq(c.wrong_conf, 0.8, 1e-6);
    cr_assert_float_eq(c.wrong_true_prob, 0.2, 1e-6);
    /* Bins: 0.9 → (0.8, 0.9] acc 1; 0.8 → (0.7, 0.8] acc 0; 0.6 → (0.5, 0.6] acc 1; 0.7 → (0.6, 0.7] acc 1.
     * ECE = (|1 − .9| + |0 − .8| + |1 − .6| + |1 − .7|) / 4 = 1.6 / 4. */
    cr_assert_float_eq(c.ece, 0.4, 1e-6);
}
