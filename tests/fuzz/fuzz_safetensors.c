/* A safetensors file: the header, every tensor's bounds, and the conversion
 * of each tensor's bytes to float32 (all dtypes, f16/bf16 included). */
#include "fuzz.h"

#include <stdlib.h>

#include "clipkd/safetensors.h"

#define MAX_VALUES (1 << 20)

FUZZ_TARGET(safetensors)
{
    const char *path = fuzz_file("model.safetensors", data, size);
    ckd_error err;
    ckd_safetensors *st = path ? ckd_st_open(path, &err) : NULL;
    if (!st)
        return 0;
    (void)ckd_st_metadata(st, "format");
    for (size_t i = 0; i < ckd_st_count(st); i++) {
        const ckd_st_tensor *t = ckd_st_at(st, i);
        int64_t n = ckd_st_numel(t);
        if (ckd_st_find(st, t->name) != t)
            __builtin_trap(); /* a name must find its own tensor */
        if (n <= 0 || n > MAX_VALUES)
            continue;
        float *f = malloc((size_t)n * sizeof *f);
        if (f)
            ckd_st_to_f32(t, f, (size_t)n, &err);
        free(f);
    }
    ckd_st_close(st);
    return 0;
}
