/* IEEE binary16 and bfloat16 <-> binary32, bit-exact and branch-light.
 * Written out by hand rather than with _Float16 so that results do not depend
 * on the compiler or the CPU's F16C support, and so that the rounding rule
 * (nearest, ties to even — what PyTorch's .half() and .bfloat16() do) is
 * visible here. */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "clipkd/safetensors.h"

static uint32_t f32_bits(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    return x;
}

static float bits_f32(uint32_t x)
{
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

float ckd_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;

    if (exp == 0) {
        /* Zero or subnormal: mant x 2^-24, exact in float (mant < 2^10). */
        float mag = (float)mant * 0x1p-24f;
        return sign ? -mag : mag;
    }
    if (exp == 31) /* inf, or NaN with its payload moved to the top bits */
        return bits_f32(sign | 0x7f800000u | (mant << 13));
    return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t ckd_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t absx = x & 0x7fffffffu;
    uint32_t exp = absx >> 23;

    if (exp == 0xff) {
        if (absx == 0x7f800000u)
            return sign | 0x7c00u;
        /* NaN: keep the top payload bits, force quiet so it stays a NaN. */
        return (uint16_t)(sign | 0x7e00u | ((absx >> 13) & 0x3ffu));
    }
    if (exp >= 143) /* >= 2^16: beyond every finite f16 even after rounding */
        return sign | 0x7c00u;
    if (exp < 102) /* < 2^-25: rounds to zero (2^-25 itself ties to even 0) */
        return sign;
    if (exp < 113) {
        /* Result is an f16 subnormal: value / 2^-24, rounded. The rounded
         * value may reach 0x400, which is exactly the smallest normal. */
        uint32_t m = (absx & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - exp; /* 14..24 */
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u)))
            r++;
        return (uint16_t)(sign | r);
    }
    /* Normal: rebias the exponent and round away 13 mantissa bits. A carry
     * out of the mantissa bumps the exponent, and past 65504 lands on inf
     * (0x7c00), both of which are the right answers. */
    uint32_t h = ((exp - 112u) << 10) | ((absx >> 13) & 0x3ffu);
    uint32_t rem = absx & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        h++;
    return (uint16_t)(sign | h);
}

float ckd_bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

uint16_t ckd_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: truncating could make it inf */
        return (uint16_t)((x >> 16) | 0x40u);
    /* Round to nearest even; a carry into the exponent is correct, and the
     * largest floats round up to inf as they should. */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}
