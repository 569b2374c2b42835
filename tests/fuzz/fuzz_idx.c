/* IDX files (Fashion-MNIST images and labels), plain and gzip'd. The first
 * byte picks how many dimensions the caller expects (low bits) and whether
 * the rest is written gzip-compressed (high bit), so that the mutator works
 * on the IDX bytes in both cases. */
#include "fuzz.h"

#include "clipkd/data.h"

FUZZ_TARGET(idx)
{
    if (size < 1)
        return 0;
    const char *path = data[0] & 0x80 ? fuzz_file_gz("data.idx.gz", data + 1, size - 1)
                                      : fuzz_file("data.idx", data + 1, size - 1);
    ckd_idx idx;
    ckd_error err;
    if (path && !ckd_idx_load(path, 1 + data[0] % 4, &idx, &err))
        ckd_idx_free(&idx);
    return 0;
}
