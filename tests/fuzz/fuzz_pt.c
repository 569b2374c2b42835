/* PyTorch checkpoints (.pt / .bin): the ZIP container or the legacy format,
 * and the pickle read without running it; then every tensor converted. */
#include "fuzz.h"

#include <stdlib.h>

#include "clipkd/safetensors.h"

#define MAX_VALUES (1 << 20)

FUZZ_TARGET(pt)
{
    const char *path = fuzz_file("model.pt", data, size);
    ckd_error err;
    ckd_safetensors *st = path ? ckd_pt_open(path, NULL, &err) : NULL;
    if (!st)
        return 0;
    for (size_t i = 0; i < ckd_st_count(st); i++) {
        const ckd_st_tensor *t = ckd_st_at(st, i);
        int64_t n = ckd_st_numel(t);
        float *f = n > 0 && n <= MAX_VALUES ? malloc((size_t)n * sizeof *f) : NULL;
        if (f)
            ckd_st_to_f32(t, f, (size_t)n, &err);
        free(f);
    }
    ckd_st_close(st);
    return 0;
}
