/* F16 / BF16 <-> F32 conversions, checked over every 16-bit pattern and at
 * every rounding midpoint (part of tests/test-safetensors). */
#include "config.h"

#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "clipkd/safetensors.h"

static float from_bits(uint32_t x)
{
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static uint32_t to_bits(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    return x;
}

Test(half, f16_known_values)
{
    /* Expected values from Python's struct 'e' format (IEEE binary16, RNE). */
    cr_assert_eq(ckd_f32_to_f16(1.0f), 0x3c00);
    cr_assert_eq(ckd_f32_to_f16(-2.5f), 0xc100);
    cr_assert_eq(ckd_f32_to_f16(0.1f), 0x2e66);
    cr_assert_eq(ckd_f32_to_f16(1.0f / 3.0f), 0x3555);
    cr_assert_eq(ckd_f32_to_f16(65504.0f), 0x7bff);
    cr_assert_eq(ckd_f32_to_f16(65519.99f), 0x7bff);
    cr_assert_eq(ckd_f32_to_f16(65520.0f), 0x7c00);
    cr_assert_eq(ckd_f32_to_f16(1e10f), 0x7c00);
    cr_assert_eq(ckd_f32_to_f16(-INFINITY), 0xfc00);
    cr_assert_eq(ckd_f32_to_f16(1e-8f), 0x0000);
    cr_assert_eq(ckd_f32_to_f16(6e-8f), 0x0001);
    cr_assert_eq(ckd_f32_to_f16(0x1p-25f), 0x0000, "tie to even zero");
    cr_assert_eq(ckd_f32_to_f16(-0x1.000002p-25f), 0x8001);
    cr_assert_eq(ckd_f32_to_f16(0x1p-149f), 0x0000, "f32 subnormal");
    cr_assert_eq(ckd_f32_to_f16(-0.0f), 0x8000);
    cr_assert_eq(ckd_f32_to_f16(NAN) & 0x7e00, 0x7e00, "quiet NaN");
    cr_assert_eq(ckd_f32_to_f16(from_bits(0x7f800001)), 0x7e00, "low-payload NaN stays NaN");

    cr_assert_eq(ckd_f16_to_f32(0x0001), 0x1p-24f);
    cr_assert_eq(ckd_f16_to_f32(0x03ff), 0x3ffp-24f);
    cr_assert_eq(ckd_f16_to_f32(0x0400), 0x1p-14f);
    cr_assert_eq(ckd_f16_to_f32(0x7bff), 65504.0f);
    cr_assert_eq(ckd_f16_to_f32(0x3555), 0x1.554p-2f);
    cr_assert(isinf(ckd_f16_to_f32(0xfc00)) && ckd_f16_to_f32(0xfc00) < 0);
    cr_assert(signbit(ckd_f16_to_f32(0x8000)) && ckd_f16_to_f32(0x8000) == 0);
    cr_assert(isnan(ckd_f16_to_f32(0x7c01)));
}

/* Every F16 value widens exactly and narrows back to itself; NaNs stay NaN
 * with sign and payload (made quiet). */
Test(half, f16_every_pattern_round_trips)
{
    for (uint32_t h = 0; h <= 0xffff; h++) {
        float f = ckd_f16_to_f32((uint16_t)h);
        uint16_t back = ckd_f32_to_f16(f);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
            cr_assert(isnan(f), "%04x", h);
            cr_assert_eq(back, h | 0x200, "%04x", h);
        } else {
            cr_assert_eq(back, h, "%04x -> %a -> %04x", h, f, back);
        }
    }
}

/* At each midpoint between neighbouring F16 values (both signs): the midpoint
 * goes to the even one, one float ulp either side to the nearer one. */
Test(half, f16_rounding_at_every_midpoint)
{
    for (uint32_t h = 0; h < 0x7c00; h++) {
        float lo = ckd_f16_to_f32((uint16_t)h);
        float hi = h == 0x7bff ? 65536.0f : ckd_f16_to_f32((uint16_t)(h + 1));
        float mid = lo + (hi - lo) / 2; /* exact: 12 significant bits */
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        for (int neg = 0; neg < 2; neg++) {
            uint16_t sign = neg ? 0x8000 : 0;
            float s = neg ? -1.0f : 1.0f;
            cr_assert_eq(ckd_f32_to_f16(s * mid), sign | even, "mid above %04x", h);
            cr_assert_eq(ckd_f32_to_f16(s * nextafterf(mid, 0)), sign | h, "below mid %04x", h);
            cr_assert_eq(ckd_f32_to_f16(s * nextafterf(mid, INFINITY)), sign | (h + 1),
                         "above mid %04x", h);
        }
    }
}

Test(half, bf16_every_pattern_and_midpoint)
{
    for (uint32_t h = 0; h <= 0xffff; h++) {
        float f = ckd_bf16_to_f32((uint16_t)h);
        cr_assert_eq(to_bits(f), h << 16);
        uint16_t back = ckd_f32_to_bf16(f);
        if ((h & 0x7f80) == 0x7f80 && (h & 0x7f))
            cr_assert_eq(back, h | 0x40, "NaN %04x", h);
        else
            cr_assert_eq(back, h, "%04x", h);
        if ((h & 0x7f80) == 0x7f80)
            continue; /* no midpoints above inf/NaN */
        uint32_t mid = h << 16 | 0x8000;
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        cr_assert_eq(ckd_f32_to_bf16(from_bits(mid)), even, "mid %04x", h);
        cr_assert_eq(ckd_f32_to_bf16(from_bits(mid - 1)), h, "below mid %04x", h);
        cr_assert_eq(ckd_f32_to_bf16(from_bits(mid + 1)), h + 1, "above mid %04x", h);
    }
    cr_assert_eq(ckd_f32_to_bf16(from_bits(0x7f800001)), 0x7fc0, "NaN must not become inf");
    cr_assert_eq(ckd_f32_to_bf16(3.0f), 0x4040);
    cr_assert_eq(ckd_f32_to_bf16(FLT_MAX), 0x7f80, "rounds up to inf");
}
