/* The dataset harnesses share one body: open a reader on the file the input
 * became (the whole index is checked at open) and read up to 64 samples.
 * fuzz_dataset_png writes a 1x1 PNG, "a.png", that inputs may name. */
#ifndef CKD_FUZZ_DATASET_H
#define CKD_FUZZ_DATASET_H

#include <jansson.h>

#include "clipkd/data.h"

static const unsigned char fuzz_png_1x1[] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
    0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x02, 0x00, 0x00, 0x00, 0x90, 0x77, 0x53, 0xde, 0x00, 0x00, 0x00,
    0x0c, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xdf, 0xc0, 0x00, 0x00, 0x04, 0x01, 0x01, 0x80, 0xc5,
    0x2a, 0x18, 0x5d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};

static inline void fuzz_dataset_png(void)
{
    fuzz_file("a.png", fuzz_png_1x1, sizeof fuzz_png_1x1);
}

/* Takes the spec's reference. */
static inline void fuzz_dataset_read(json_t *spec)
{
    ckd_error err;
    ckd_dataset *ds = spec ? ckd_dataset_open(spec, fuzz_dir(), &err) : NULL;
    json_decref(spec);
    if (!ds)
        return;
    size_t n = ckd_dataset_size(ds);
    for (size_t i = 0; i < n && i < 64; i++) {
        ckd_sample s = {0};
        if (!ckd_dataset_get(ds, i, &s, &err))
            ckd_sample_free(&s);
    }
    for (size_t c = 0; c < ckd_dataset_n_classes(ds); c++)
        (void)ckd_dataset_class_name(ds, c);
    ckd_dataset_close(ds);
}

#endif
