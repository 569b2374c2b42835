/* JPEG decoding (libjpeg under clipkd's memory budget and scan limit). */
#include "fuzz.h"
#include "fuzz_image.h"

FUZZ_TARGET(jpeg)
{
    fuzz_decode_image(data, size);
    return 0;
}
