/* Image geometry: bicubic resize, crop, CLIP preprocessing and the random
 * resized crop, on an image and sizes the input describes. Bytes 0-7: source
 * width and height, target width and height (1..64 each: larger sizes
 * run the same code, slower), 8-15: the random
 * crop's state; the rest: pixels (repeated to fill the image). */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include "clipkd/image.h"

FUZZ_TARGET(image_resize)
{
    if (size < 17)
        return 0;
    int w = 1 + (data[0] | data[1] << 8) % 64, h = 1 + (data[2] | data[3] << 8) % 64;
    int ow = 1 + (data[4] | data[5] << 8) % 64, oh = 1 + (data[6] | data[7] << 8) % 64;
    uint64_t rng = 0;
    memcpy(&rng, data + 8, 8);
    const uint8_t *px = data + 16;
    size_t npx = size - 16;
    ckd_image in, out;
    ckd_error err;
    if (ckd_image_alloc(&in, w, h, &err))
        return 0;
    for (size_t i = 0; i < (size_t)w * (size_t)h * 3; i++)
        in.rgb[i] = px[i % npx];
    if (!ckd_image_resize_bicubic(&in, ow, oh, &out, &err))
        ckd_image_free(&out);
    if (!ckd_image_crop(&in, w / 4, h / 4, w - w / 4, h - h / 4, &out, &err))
        ckd_image_free(&out);
    if (!ckd_image_random_resized_crop(&in, 0.08f, 1.0f, 3.0f / 4, 4.0f / 3, &rng, ow, oh, &out, &err))
        ckd_image_free(&out);
    /* CLIP's shortest-edge resize makes a 1 x 64 image 64 times longer than
     * its target side: keep that side small so the run stays fast. */
    int side = 1 + (ow - 1) % 16;
    ckd_preprocess p;
    ckd_preprocess_clip_default(&p, side);
    float *chw = malloc(3 * (size_t)side * (size_t)side * sizeof *chw);
    if (chw)
        ckd_preprocess_image(&p, &in, chw, &err);
    free(chw);
    ckd_image_free(&in);
    return 0;
}
