/* PNG decoding (libpng under clipkd's chunk walk and limits). The harness
 * first rewrites every chunk's CRC to match its bytes, as libpng's own fuzz
 * harness has libpng ignore them: otherwise nearly every mutation stops at
 * the first CRC check and the decoder behind it is never reached. (The
 * corpus and regressions replay unchanged: their CRCs are already right.) */
#include <string.h>
#include <zlib.h>

#include "fuzz.h"
#include "fuzz_image.h"

static void fix_crcs(uint8_t *p, size_t n)
{
    size_t at = 8; /* after the signature */
    while (at + 12 <= n) {
        uint32_t len = (uint32_t)p[at] << 24 | (uint32_t)p[at + 1] << 16 | (uint32_t)p[at + 2] << 8 | p[at + 3];
        if (len > n - at - 12)
            return;
        uint32_t crc = (uint32_t)crc32(0L, p + at + 4, len + 4);
        uint8_t *c = p + at + 8 + len;
        c[0] = (uint8_t)(crc >> 24), c[1] = (uint8_t)(crc >> 16), c[2] = (uint8_t)(crc >> 8), c[3] = (uint8_t)crc;
        at += 12 + (size_t)len;
    }
}

FUZZ_TARGET(png)
{
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    fix_crcs(copy, size);
    fuzz_decode_image(copy, size);
    free(copy);
    return 0;
}
