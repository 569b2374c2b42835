/* WebDataset tar shards, plain (first byte even) or gzip-compressed by the
 * harness (odd, so the mutator works on the tar bytes); bit 1 of the first
 * byte says "incomplete": "skip" instead of "error". */
#include "fuzz.h"
#include "fuzz_dataset.h"

FUZZ_TARGET(webdataset)
{
    if (size < 1)
        return 0;
    int gz = data[0] & 1;
    const char *name = gz ? "shard.tar.gz" : "shard.tar";
    const char *path = gz ? fuzz_file_gz(name, data + 1, size - 1) : fuzz_file(name, data + 1, size - 1);
    if (!path)
        return 0;
    fuzz_dataset_read(json_pack("{s:s, s:s, s:s}", "reader", "webdataset", "shards", name, "incomplete",
                                data[0] & 2 ? "skip" : "error"));
    return 0;
}
