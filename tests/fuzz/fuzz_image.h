/* The image harnesses share one body: decode, then the preprocessing a
 * loader runs on what decoded (CLIP's resize and crop at 32 pixels). */
#ifndef CKD_FUZZ_IMAGE_H
#define CKD_FUZZ_IMAGE_H

#include <stdlib.h>

#include "clipkd/image.h"

static inline void fuzz_decode_image(const uint8_t *data, size_t size)
{
    ckd_image img;
    ckd_error err;
#ifndef FUZZ_REPLAY
    /* Fuzzing: a 64 KiB budget runs the same code as the default 256 MiB,
     * without spending a second on each garbage-filled giant image (the
     * replay keeps the default, which the regressions are about). */
    ckd_image_set_max_bytes((size_t)64 << 10);
#endif
    if (ckd_image_decode(data, size, "input", &img, &err))
        return;
    ckd_preprocess p;
    ckd_preprocess_clip_default(&p, 32);
    float *chw = malloc(3 * 32 * 32 * sizeof *chw);
    if (chw)
        ckd_preprocess_image(&p, &img, chw, &err);
    free(chw);
    ckd_image_free(&img);
}

#endif
