/* Cropping and Pillow-exact bicubic resampling of 8-bit RGB images.
 *
 * The reference preprocessors (HF CLIPImageProcessor, OpenAI/torchvision
 * CLIP transforms) resize with PIL.Image.resize(…, BICUBIC). To reproduce
 * their pixels, not just approximate them, this follows the structure of
 * Pillow's libImaging/Resample.c for 8-bit images: per-axis coefficient
 * tables computed in double, normalised, then rounded to 22-bit fixed
 * point; a horizontal pass into an 8-bit intermediate followed by a
 * vertical pass; each pass skipped when its axis keeps its size. */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clipkd/image.h"

/* 8 bits of sample, 2 bits of headroom for the kernel's negative lobes and
 * overshoot: the remaining 22 bits hold the coefficient's fraction. */
#define PRECISION_BITS (32 - 8 - 2)

/* Bicubic convolution kernel with a = -0.5 (Keys); support 2. The
 * expressions keep Pillow's evaluation order so the doubles round alike. */
static double bicubic_kernel(double x)
{
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* Coefficients for resampling one axis: output i reads `count[i]` source
 * samples starting at `first[i]`, weighted by k[i * ksize + j]. */
struct axis_coeffs {
    int ksize;
    int *first, *count;
    int32_t *k;
};

static void axis_coeffs_free(struct axis_coeffs *c)
{
    free(c->first);
    free(c->count);
    free(c->k);
    memset(c, 0, sizeof *c);
}

/* Builds the table for mapping the source interval [in0, in1) of an axis of
 * length in_size onto out_size samples. */
static int axis_coeffs_init(struct axis_coeffs *c, int in_size, double in0,
                            double in1, int out_size, ckd_error *err)
{
    memset(c, 0, sizeof *c);
    double scale = (in1 - in0) / out_size;
    /* When shrinking, the kernel is stretched by the scale so that every
     * source sample contributes (antialiasing); never narrower than 1. */
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;

    double *w = malloc((size_t)ksize * sizeof *w);
    c->first = malloc((size_t)out_size * sizeof *c->first);
    c->count = malloc((size_t)out_size * sizeof *c->count);
    c->k = malloc((size_t)out_size * (size_t)ksize * sizeof *c->k);
    if (!w || !c->first || !c->count || !c->k) {
        free(w);
        axis_coeffs_free(c);
        return ckd_errorf(err, "resize: out of memory for %d x %d "
                          "coefficients", out_size, ksize);
    }
    c->ksize = ksize;
    double inv_fs = 1.0 / filterscale;
    for (int i = 0; i < out_size; i++) {
        double center = in0 + (i + 0.5) * scale;
        /* +0.5 then truncation rounds the window ends to the nearest
         * sample; the clamps keep the window inside the axis. */
        int lo = (int)(center - support + 0.5);
        if (lo < 0)
            lo = 0;
        int hi = (int)(center + support + 0.5);
        if (hi > in_size)
            hi = in_size;
        int n = hi - lo;
        double sum = 0.0;
        for (int j = 0; j < n; j++) {
            w[j] = bicubic_kernel((j + lo - center + 0.5) * inv_fs);
            sum += w[j];
        }
        int32_t *k = c->k + (size_t)i * (size_t)ksize;
        for (int j = 0; j < ksize; j++) {
            double v = 0.0;
            if (j < n) {
                v = w[j];
                if (sum != 0.0)
                    v /= sum;
            }
            /* Round half away from zero into fixed point. */
            v *= (double)(1 << PRECISION_BITS);
            k[j] = (int32_t)(v < 0 ? v - 0.5 : v + 0.5);
        }
        c->first[i] = lo;
        c->count[i] = n;
    }
    free(w);
    return 0;
}

/* Fixed-point sum → 8-bit sample: start from one half so that the shift
 * rounds, then clamp (the kernel over- and undershoots). */
static inline uint8_t clip8(int64_t acc)
{
    if (acc < 0)
        return 0;
    acc >>= PRECISION_BITS;
    return acc > 255 ? 255 : (uint8_t)acc;
}

/* Rows [row0, row0 + out->h) of `in` resampled horizontally into `out`. */
static void pass_horizontal(const ckd_image *in, int row0, ckd_image *out,
                            const struct axis_coeffs *c)
{
    for (int y = 0; y < out->h; y++) {
        const uint8_t *src = in->rgb + (size_t)(y + row0) * (size_t)in->w * 3;
        uint8_t *dst = out->rgb + (size_t)y * (size_t)out->w * 3;
        for (int x = 0; x < out->w; x++) {
            const int32_t *k = c->k + (size_t)x * (size_t)c->ksize;
            const uint8_t *s = src + (size_t)c->first[x] * 3;
            int64_t a0 = 1 << (PRECISION_BITS - 1), a1 = a0, a2 = a0;
            for (int j = 0; j < c->count[x]; j++) {
                a0 += (int64_t)s[3 * j] * k[j];
                a1 += (int64_t)s[3 * j + 1] * k[j];
                a2 += (int64_t)s[3 * j + 2] * k[j];
            }
            dst[3 * x] = clip8(a0);
            dst[3 * x + 1] = clip8(a1);
            dst[3 * x + 2] = clip8(a2);
        }
    }
}

/* `in` resampled vertically into `out` (same width). */
static void pass_vertical(const ckd_image *in, ckd_image *out,
                          const struct axis_coeffs *c)
{
    size_t stride = (size_t)in->w * 3;
    for (int y = 0; y < out->h; y++) {
        const int32_t *k = c->k + (size_t)y * (size_t)c->ksize;
        const uint8_t *src = in->rgb + (size_t)c->first[y] * stride;
        uint8_t *dst = out->rgb + (size_t)y * stride;
        for (size_t x = 0; x < stride; x++) {
            int64_t acc = 1 << (PRECISION_BITS - 1);
            for (int j = 0; j < c->count[y]; j++)
                acc += (int64_t)src[(size_t)j * stride + x] * k[j];
            dst[x] = clip8(acc);
        }
    }
}

static int copy_image(const ckd_image *in, ckd_image *out, ckd_error *err)
{
    if (ckd_image_alloc(out, in->w, in->h, err))
        return -1;
    memcpy(out->rgb, in->rgb, (size_t)in->w * (size_t)in->h * 3);
    return 0;
}

/* Pillow's ImagingResampleInner for the box [x0, x1) x [y0, y1) of `in`. */
static int resample_box(const ckd_image *in, const double box[4], int w, int h,
                        ckd_image *out, ckd_error *err)
{
    /* Pillow's test, kept verbatim in meaning: a pass is needed when the
     * size changes or the box is not [0, size). */
    int need_h = w != in->w || box[0] != 0.0 || box[2] != (double)w;
    int need_v = h != in->h || box[1] != 0.0 || box[3] != (double)h;

    struct axis_coeffs cv, ch;
    if (axis_coeffs_init(&cv, in->h, box[1], box[3], h, err))
        return -1;
    /* Only the source rows the vertical pass will read are resampled
     * horizontally. */
    int row_first = cv.first[0];
    int row_last = cv.first[h - 1] + cv.count[h - 1];

    ckd_image tmp = {0, 0, NULL};
    const ckd_image *src = in;
    if (need_h) {
        if (axis_coeffs_init(&ch, in->w, box[0], box[2], w, err)) {
            axis_coeffs_free(&cv);
            return -1;
        }
        if (ckd_image_alloc(&tmp, w, row_last - row_first, err)) {
            axis_coeffs_free(&ch);
            axis_coeffs_free(&cv);
            return ckd_error_prefix(err, "resize");
        }
        pass_horizontal(in, row_first, &tmp, &ch);
        axis_coeffs_free(&ch);
        for (int i = 0; i < h; i++)
            cv.first[i] -= row_first;
        src = &tmp;
    }

    int rc = 0;
    if (need_v) {
        rc = ckd_image_alloc(out, src->w, h, err);
        if (rc == 0)
            pass_vertical(src, out, &cv);
        ckd_image_free(&tmp);
    } else if (need_h) {
        *out = tmp; /* hand over the intermediate */
    } else {
        rc = copy_image(in, out, err);
    }
    axis_coeffs_free(&cv);
    return rc;
}

int ckd_image_resize_bicubic(const ckd_image *in, int w, int h, ckd_image *out,
                             ckd_error *err)
{
    if (!out)
        return ckd_errorf(err, "resize: NULL output image");
    memset(out, 0, sizeof *out);
    if (!in || !in->rgb || in->w <= 0 || in->h <= 0)
        return ckd_errorf(err, "resize: empty input image");
    if (w <= 0 || h <= 0 || w > CKD_IMAGE_MAX_SIDE || h > CKD_IMAGE_MAX_SIDE ||
        (long)w * h > CKD_IMAGE_MAX_PIXELS)
        return ckd_errorf(err, "resize: cannot resize %dx%d to %dx%d: target "
                          "sides must be 1..%d with at most %ld pixels",
                          in->w, in->h, w, h, CKD_IMAGE_MAX_SIDE,
                          (long)CKD_IMAGE_MAX_PIXELS);
    double box[4] = {0.0, 0.0, (double)in->w, (double)in->h};
    return resample_box(in, box, w, h, out, err);
}

int ckd_image_crop(const ckd_image *in, int x, int y, int w, int h,
                   ckd_image *out, ckd_error *err)
{
    if (!out)
        return ckd_errorf(err, "crop: NULL output image");
    memset(out, 0, sizeof *out);
    if (!in || !in->rgb || in->w <= 0 || in->h <= 0)
        return ckd_errorf(err, "crop: empty input image");
    if (x < 0 || y < 0 || w <= 0 || h <= 0 || w > in->w - x || h > in->h - y)
        return ckd_errorf(err, "crop: rectangle %dx%d at (%d, %d) is not "
                          "inside the %dx%d image", w, h, x, y, in->w, in->h);
    if (ckd_image_alloc(out, w, h, err))
        return ckd_error_prefix(err, "crop");
    for (int r = 0; r < h; r++)
        memcpy(out->rgb + (size_t)r * (size_t)w * 3,
               in->rgb + ((size_t)(y + r) * (size_t)in->w + (size_t)x) * 3,
               (size_t)w * 3);
    return 0;
}

int ckd_image_shortest_edge_size(int w, int h, int shortest_edge, int *out_w,
                                 int *out_h, ckd_error *err)
{
    if (w <= 0 || h <= 0 || shortest_edge <= 0)
        return ckd_errorf(err, "shortest-edge resize: need positive sizes, "
                          "got a %dx%d image and shortest_edge %d", w, h,
                          shortest_edge);
    int s = w <= h ? w : h, l = w <= h ? h : w;
    /* Python's int(size * long / short): an exact integer product, a
     * correctly rounded true division, then truncation. */
    double nl = (double)((long long)shortest_edge * l) / (double)s;
    if (nl > CKD_IMAGE_MAX_SIDE || shortest_edge > CKD_IMAGE_MAX_SIDE)
        return ckd_errorf(err, "shortest-edge resize: %dx%d with shortest "
                          "edge %d gives a side of %.0f, over the limit %d",
                          w, h, shortest_edge, nl, CKD_IMAGE_MAX_SIDE);
    int new_long = (int)nl;
    if (w <= h) {
        *out_w = shortest_edge;
        *out_h = new_long;
    } else {
        *out_w = new_long;
        *out_h = shortest_edge;
    }
    return 0;
}
