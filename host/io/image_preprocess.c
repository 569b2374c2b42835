/* The CLIP image pipeline (HF CLIPImageProcessor order: resize shortest
 * edge, center crop, rescale, normalise) and torchvision-style random
 * resized crops for training. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "clipkd/image.h"

/* OpenAI CLIP's statistics (transformers' OPENAI_CLIP_MEAN / _STD). */
static const float CLIP_MEAN[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float CLIP_STD[3] = {0.26862954f, 0.26130258f, 0.27577711f};

void ckd_preprocess_clip_default(ckd_preprocess *p, int size)
{
    if (!p)
        return;
    p->shortest_edge = size;
    p->crop_w = size;
    p->crop_h = size;
    memcpy(p->mean, CLIP_MEAN, sizeof p->mean);
    memcpy(p->std, CLIP_STD, sizeof p->std);
}

static int check_params(const ckd_preprocess *p, int need_sizes,
                        ckd_error *err)
{
    if (!p)
        return ckd_errorf(err, "preprocess: NULL parameters");
    if (need_sizes &&
        (p->shortest_edge <= 0 || p->crop_w <= 0 || p->crop_h <= 0 ||
         p->crop_w > CKD_IMAGE_MAX_SIDE || p->crop_h > CKD_IMAGE_MAX_SIDE))
        return ckd_errorf(err, "preprocess: shortest_edge %d and crop %dx%d "
                          "must be positive (sides at most %d)",
                          p->shortest_edge, p->crop_w, p->crop_h,
                          CKD_IMAGE_MAX_SIDE);
    for (int c = 0; c < 3; c++)
        if (!(p->std[c] != 0.0f) || !isfinite(p->std[c]) ||
            !isfinite(p->mean[c]))
            return ckd_errorf(err, "preprocess: channel %d has mean %g and "
                              "std %g; expected finite values and std != 0",
                              c, (double)p->mean[c], (double)p->std[c]);
    return 0;
}

/* HF rescales in float64 (x * (1/255)) and casts to float32, then
 * normalises in float32; doing the same keeps us within an ulp. */
static inline float normalize_sample(uint8_t v, float mean, float std)
{
    float x = (float)((double)v * (1.0 / 255.0));
    return (x - mean) / std;
}

/* floor(d / 2) for either sign, like Python's d // 2. */
static int floor_half(int d)
{
    return d >= 0 ? d / 2 : -((1 - d) / 2);
}

int ckd_preprocess_normalize(const ckd_preprocess *p, const ckd_image *img,
                             float *chw_out, ckd_error *err)
{
    if (check_params(p, 0, err))
        return -1;
    if (!img || !img->rgb || img->w <= 0 || img->h <= 0 || !chw_out)
        return ckd_errorf(err, "preprocess: %s", chw_out ? "empty image"
                                                         : "NULL output");
    size_t plane = (size_t)img->w * (size_t)img->h;
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < plane; i++)
            chw_out[(size_t)c * plane + i] =
                normalize_sample(img->rgb[3 * i + (size_t)c], p->mean[c],
                                 p->std[c]);
    return 0;
}

int ckd_preprocess_image(const ckd_preprocess *p, const ckd_image *img,
                         float *chw_out, ckd_error *err)
{
    if (check_params(p, 1, err))
        return -1;
    if (!img || !img->rgb || img->w <= 0 || img->h <= 0 || !chw_out)
        return ckd_errorf(err, "preprocess: %s", chw_out ? "empty image"
                                                         : "NULL output");
    int rw, rh;
    if (ckd_image_shortest_edge_size(img->w, img->h, p->shortest_edge, &rw,
                                     &rh, err))
        return ckd_error_prefix(err, "preprocess");
    ckd_image resized = {0, 0, NULL};
    const ckd_image *src = img;
    /* Same size: PIL returns a copy, so skip the resampler. */
    if (rw != img->w || rh != img->h) {
        if (ckd_image_resize_bicubic(img, rw, rh, &resized, err))
            return ckd_error_prefix(err, "preprocess");
        src = &resized;
    }

    /* transformers' center_crop: top = (H - crop_h) // 2 (floor, also when
     * negative), and where the crop leaves the image the zero padding it
     * adds shows through; those pixels are 0 before rescaling. */
    int cw = p->crop_w, ch = p->crop_h;
    int top = floor_half(src->h - ch), left = floor_half(src->w - cw);
    size_t plane = (size_t)cw * (size_t)ch;
    for (int y = 0; y < ch; y++) {
        int sy = y + top;
        for (int x = 0; x < cw; x++) {
            int sx = x + left;
            const uint8_t *px = NULL;
            if (sy >= 0 && sy < src->h && sx >= 0 && sx < src->w)
                px = src->rgb + ((size_t)sy * (size_t)src->w + (size_t)sx) * 3;
            size_t o = (size_t)y * (size_t)cw + (size_t)x;
            for (int c = 0; c < 3; c++)
                chw_out[(size_t)c * plane + o] =
                    normalize_sample(px ? px[c] : 0, p->mean[c], p->std[c]);
        }
    }
    ckd_image_free(&resized);
    return 0;
}

/* ---- random resized crop ------------------------------------------------- */

/* splitmix64: tiny, full-period over the 64-bit state, and good enough for
 * picking crops; callers own the state so runs are reproducible. */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1) from the top 53 bits. */
static double uniform01(uint64_t *state)
{
    return (double)(splitmix64(state) >> 11) * 0x1.0p-53;
}

static double uniform(uint64_t *state, double lo, double hi)
{
    return lo + (hi - lo) * uniform01(state);
}

/* Uniform integer in [0, n). */
static int randint(uint64_t *state, int n)
{
    int v = (int)(uniform01(state) * n);
    return v < n ? v : n - 1;
}

int ckd_image_random_resized_crop(const ckd_image *in, float scale_lo,
                                  float scale_hi, float ratio_lo,
                                  float ratio_hi, uint64_t *rng_state,
                                  int out_w, int out_h, ckd_image *out,
                                  ckd_error *err)
{
    if (!out)
        return ckd_errorf(err, "random resized crop: NULL output image");
    memset(out, 0, sizeof *out);
    if (!in || !in->rgb || in->w <= 0 || in->h <= 0)
        return ckd_errorf(err, "random resized crop: empty input image");
    if (!rng_state)
        return ckd_errorf(err, "random resized crop: NULL rng state");
    if (!(scale_lo >= 0.0f && scale_lo <= scale_hi && isfinite(scale_hi)))
        return ckd_errorf(err, "random resized crop: scale range [%g, %g] "
                          "must satisfy 0 <= lo <= hi", (double)scale_lo,
                          (double)scale_hi);
    if (!(ratio_lo > 0.0f && ratio_lo <= ratio_hi && isfinite(ratio_hi)))
        return ckd_errorf(err, "random resized crop: ratio range [%g, %g] "
                          "must satisfy 0 < lo <= hi", (double)ratio_lo,
                          (double)ratio_hi);

    int W = in->w, H = in->h;
    double area = (double)W * (double)H;
    double log_lo = log((double)ratio_lo), log_hi = log((double)ratio_hi);
    int cx = 0, cy = 0, cw = 0, ch = 0, found = 0;
    for (int attempt = 0; attempt < 10 && !found; attempt++) {
        double target = area * uniform(rng_state, scale_lo, scale_hi);
        double ar = exp(uniform(rng_state, log_lo, log_hi));
        /* rint rounds half to even, like Python's round(). */
        double fw = rint(sqrt(target * ar)), fh = rint(sqrt(target / ar));
        if (fw > 0 && fw <= W && fh > 0 && fh <= H) {
            cw = (int)fw;
            ch = (int)fh;
            cy = randint(rng_state, H - ch + 1);
            cx = randint(rng_state, W - cw + 1);
            found = 1;
        }
    }
    if (!found) {
        /* torchvision's fallback: the largest centered crop whose aspect
         * ratio is clamped into the allowed range. */
        double in_ratio = (double)W / (double)H;
        if (in_ratio < ratio_lo) {
            cw = W;
            ch = (int)rint(W / (double)ratio_lo);
        } else if (in_ratio > ratio_hi) {
            ch = H;
            cw = (int)rint(H * (double)ratio_hi);
        } else {
            cw = W;
            ch = H;
        }
        /* Guard the rounding at extreme ratios (torchvision would crop
         * nothing). */
        cw = cw < 1 ? 1 : cw > W ? W : cw;
        ch = ch < 1 ? 1 : ch > H ? H : ch;
        cy = (H - ch) / 2;
        cx = (W - cw) / 2;
    }

    /* Crop, then resize the crop: torchvision's resized_crop does the same,
     * so the kernel never reads pixels outside the crop. */
    ckd_image crop;
    if (ckd_image_crop(in, cx, cy, cw, ch, &crop, err))
        return ckd_error_prefix(err, "random resized crop");
    int rc = ckd_image_resize_bicubic(&crop, out_w, out_h, out, err);
    ckd_image_free(&crop);
    if (rc)
        return ckd_error_prefix(err, "random resized crop");
    return 0;
}
