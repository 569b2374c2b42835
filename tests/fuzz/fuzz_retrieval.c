/* Karpathy-split retrieval JSON (COCO / Flickr30k dataset_*.json). The first
 * byte picks the split and the caption limits; images may be a.png. */
#include "fuzz.h"
#include "fuzz_dataset.h"

FUZZ_TARGET(retrieval)
{
    static const char *const splits[] = {"test", "val", "train", "restval", "all"};
    if (size < 1)
        return 0;
    const char *path = fuzz_file("dataset.json", data + 1, size - 1);
    if (!path)
        return 0;
    fuzz_dataset_png();
    fuzz_dataset_read(json_pack("{s:s, s:s, s:s, s:s, s:i, s:i}", "reader", "retrieval", "path", "dataset.json",
                                "root", ".", "split", splits[data[0] % 5], "max_captions", (data[0] >> 3) & 7,
                                "min_captions", 1 + ((data[0] >> 6) & 1)));
    return 0;
}
