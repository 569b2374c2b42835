/* A sharded checkpoint: model.safetensors.index.json (the input) next to two
 * small valid shards it may name, model-00001-of-00002.safetensors and
 * model-00002-of-00002.safetensors. */
#include "fuzz.h"

#include <stdio.h>
#include <string.h>

#include "clipkd/safetensors.h"

static int write_shard(const char *name, const char *tensor)
{
    /* One F32 [2] tensor: an 8-byte header length, the header, 8 bytes. */
    char header[128];
    int n = snprintf(header, sizeof header, "{\"%s\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", tensor);
    unsigned char buf[160] = {(unsigned char)n};
    memcpy(buf + 8, header, (size_t)n);
    return fuzz_file(name, buf, 8 + (size_t)n + 8) != NULL;
}

FUZZ_TARGET(safetensors_index)
{
    if (!write_shard("model-00001-of-00002.safetensors", "a.weight") ||
        !write_shard("model-00002-of-00002.safetensors", "b.weight"))
        return 0;
    const char *path = fuzz_file("model.safetensors.index.json", data, size);
    ckd_error err;
    ckd_safetensors *st = path ? ckd_st_open(path, &err) : NULL;
    if (!st)
        return 0;
    for (size_t i = 0; i < ckd_st_count(st); i++) {
        float f[2];
        const ckd_st_tensor *t = ckd_st_at(st, i);
        if (ckd_st_numel(t) == 2)
            ckd_st_to_f32(t, f, 2, &err);
    }
    ckd_st_close(st);
    return 0;
}
