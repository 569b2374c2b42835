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
