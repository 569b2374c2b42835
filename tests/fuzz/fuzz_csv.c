/* CSV/TSV image-caption indexes (the csv reader). The first byte picks the
 * options: tab or comma separated, a header row or column numbers, quotes,
 * and a label column; rows may name a.png, which exists. */
#include "fuzz.h"
#include "fuzz_dataset.h"

FUZZ_TARGET(csv)
{
    if (size < 1)
        return 0;
    unsigned o = data[0];
    const char *path = fuzz_file("index.csv", data + 1, size - 1);
    if (!path)
        return 0;
    fuzz_dataset_png();
    int header = !(o & 2);
    json_t *spec = json_pack("{s:s, s:s, s:s, s:s, s:b, s:b}", "reader", "csv", "path", "index.csv", "root", ".",
                             "separator", o & 1 ? "," : "\t", "header", header, "quotes", !(o & 4));
    if (spec && !header) {
        json_object_set_new(spec, "image", json_integer(0));
        json_object_set_new(spec, "caption", json_integer(1));
    }
    if (spec && (o & 8))
        json_object_set_new(spec, "label", header ? json_string("label") : json_integer(2));
    fuzz_dataset_read(spec);
    return 0;
}
