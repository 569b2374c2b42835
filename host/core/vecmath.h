/* vecmath.h — float exp and normal cdf that vectorise (internal, not installed).
 *
 * libm's expf and erff are scalar calls, so a loop over them runs one element
 * at a time. These are straight-line float code (selects, no branches, no
 * calls), so a `#pragma omp simd` loop around them becomes vector code. They
 * are deterministic: the same input gives the same bits on every call and
 * thread (the result may differ in the last bit from libm's).
 *
 * Selects are bitwise (ckdi_select), not `c ? a : b`: GCC jump-threads
 * chains of float selects into branches, and under its default
 * -ftrapping-math it may not if-convert them back (a float compare may trap),
 * so the loop would stay scalar.
 *
 * Accuracy (checked over dense grids in tests/test-ops-forward.c against
 * double-precision references):
 *   ckdi_expf:   within 2 ulp over the whole float range, gradual underflow,
 *                +inf above ~88.72, NaN in -> NaN out.
 *   ckdi_ncdf:   Φ(x) within a few ulp *relative*, also in the lower tail
 *                (it computes erfc, so 0.5·x·(1 + erf(x/√2)) does not cancel
 *                for negative x as the erff form does).
 * The polynomials are Chebyshev fits made with mpmath (chebyfit):
 *   exp(r) ≈ 1 + r + r²·P(r) on [−ln2/2, ln2/2], P of degree 4;
 *   erfc(z)·exp(z²) ≈ t·R(t − ½), t = 1/(1 + z/2), z in [0, 10], R of degree
 *   10 (centred on t = ½: smaller coefficients, less rounding in Horner's
 *   scheme). Relative error of the fits: 1e-8 and 5e-9, below float rounding.
 */
#ifndef CKD_VECMATH_H
#define CKD_VECMATH_H

#include <math.h>
#include <stdint.h>

/* Kernels dominated by these functions are compiled three times and picked
 * at load time by CPU (GCC's target_clones, an ifunc): AVX-512, AVX2 + FMA,
 * and the x86-64 baseline (SSE2), which otherwise limits vectors to 4
 * floats. Results differ between the clones in the last bits (FMA
 * contraction), never between runs on one machine. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__x86_64__) && defined(__ELF__)
#define CKDI_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CKDI_SIMD_CLONES
#endif

/* Always inlined: a call left in a loop body (GCC declines to inline the
 * larger ones when they are used more than once) keeps the loop scalar. */
#define CKDI_VECFN static inline __attribute__((always_inline))

CKDI_VECFN float ckdi_bits_to_float(int32_t i)
{
    union {
        int32_t i;
        float f;
    } u = {.i = i};
    return u.f;
}

CKDI_VECFN int32_t ckdi_float_to_bits(float f)
{
    union {
        float f;
        int32_t i;
    } u = {.f = f};
    return u.i;
}

/* c ? a : b (c is 0 or 1), as a mask on the bits. */
CKDI_VECFN float ckdi_select(int c, float a, float b)
{
    int32_t m = -(int32_t)c;
    return ckdi_bits_to_float((ckdi_float_to_bits(a) & m) | (ckdi_float_to_bits(b) & ~m));
}

/* x limited to [lo, hi]; NaN stays NaN. */
CKDI_VECFN float ckdi_clampf(float x, float lo, float hi)
{
    x = ckdi_select(x < lo, lo, x);
    return ckdi_select(x > hi, hi, x);
}

/* 2^n for n in [−126, 127], built in the exponent field. */
CKDI_VECFN float ckdi_pow2i(int32_t n) { return ckdi_bits_to_float((int32_t)((uint32_t)(n + 127) << 23)); }

/* exp(x) = 2^n · exp(r), n = round(x / ln 2), r = x − n·ln 2 with ln 2 split
 * in two (Cody–Waite: n·LN2_HI is exact, so r carries no cancellation error).
 * Returns exp(r) and sets *nf = n (as a float; NaN for a NaN x, whose r is
 * NaN too). xc must be clamped to where 2^n is representable. */
CKDI_VECFN float ckdi_exp_reduced(float xc, float *nf)
{
    const float LOG2E = 1.44269504088896341f, LN2_HI = 0.693359375f, LN2_LO = -2.12194440e-4f;
    const float ROUND = 12582912.0f; /* 1.5·2^23: adding and subtracting it rounds to an integer */
    float n = (xc * LOG2E + ROUND) - ROUND;
    float r = (xc - n * LN2_HI) - n * LN2_LO;
    float p = 1.3926176119935579e-3f;
    p = p * r + 8.3631730745137109e-3f;
    p = p * r + 4.1666554662050534e-2f;
    p = p * r + 1.6666577025597988e-1f;
    p = p * r + 0.5f;
    *nf = n;
    return (p * r) * r + r + 1.0f;
}

/* exp(x), with 2^n applied as two factors so that results down to the
 * smallest subnormal round once, like libm's. */
CKDI_VECFN float ckdi_expf(float x)
{
    float nf, p = ckdi_exp_reduced(ckdi_clampf(x, -104.0f, 89.0f), &nf); /* beyond: 0 and +inf anyway */
    nf = ckdi_select(nf == nf, nf, 0.0f); /* converting NaN to int is undefined; p is NaN then */
    /* n1 = floor(n/2): a shift, where n / 2 costs a sign fix-up; for n in
     * [−150, 128] both factors stay in range and p·2^n1 is normal, so the
     * last product still rounds once. */
    int32_t n = (int32_t)nf, n1 = n >> 1;
    return p * ckdi_pow2i(n1) * ckdi_pow2i(n - n1);
}

/* exp(x) for softmax rows, x = value − row max: x ≤ 0 (−inf for padding, or
 * NaN). Within 2 ulp for results above 2^−126, like ckdi_expf; below that
 * it returns 0 instead of a subnormal (such a term is under 1e-38 of the
 * row's largest term, which is 1). No overflow clamp and one 2^n factor: a
 * quarter fewer instructions, for softmax's throughput. NaN in, NaN out. */
CKDI_VECFN float ckdi_expf_nonpos(float x)
{
    int in_range = x >= -87.33654f; /* ln 2^-126; false for NaN and −inf too */
    float nf, p = ckdi_exp_reduced(ckdi_select(in_range, x, -87.33654f), &nf);
    float e = ckdi_select(in_range, p * ckdi_pow2i((int32_t)nf), 0.0f);
    return ckdi_select(x == x, e, x);
}

/* Φ(x), the standard normal cdf, and e = exp(−x²/2) (so φ(x) = e/√(2π)
 * costs nothing more). With z = |x|/√2: erfc(z) = e·t·R(t), and
 * Φ = erfc(z)/2 for x < 0, 1 − erfc(z)/2 otherwise. x² is split into
 * float hi + lo parts (Dekker) so exp(−x²/2) keeps its relative accuracy for
 * large |x| (exp(−h/2 − l/2) = exp(−h/2)·(1 − l/2), |l| ≤ ulp(h)/2;
 * applied as e − e·l/2, which rounds relative to e, not to 1). */
CKDI_VECFN float ckdi_ncdf(float x, float *e_out)
{
    float xc = ckdi_clampf(x, -16.0f, 16.0f); /* Φ is 0 or 1 in float beyond */
    float c = 4097.0f * xc;                                   /* Dekker's split: xc = xh + xl, */
    float xh = c - (c - xc), xl = xc - xh;                    /* each half exact when squared */
    float h = xc * xc;
    float l = ((xh * xh - h) + 2.0f * xh * xl) + xl * xl;
    float eh = ckdi_expf(-0.5f * h), e = eh - eh * (0.5f * l);
    float z = fabsf(xc) * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.5f * z), u = t - 0.5f;
    float R = 3.2398652182938425e-2f;
    R = R * u - 9.6356405690499235e-3f;
    R = R * u - 7.5276558661504560e-2f;
    R = R * u + 5.2601028438113937e-2f;
    R = R * u + 9.7983532251708511e-2f;
    R = R * u - 1.0355271036263629e-1f;
    R = R * u - 1.7204647262190051e-1f;
    R = R * u + 1.4576491739849410e-1f;
    R = R * u + 5.5894356489661459e-1f;
    R = R * u + 6.8716071928004621e-1f;
    R = R * u + 5.1079135432374017e-1f;
    float lower = 0.5f * (e * t * R), upper = 1.0f - lower;
    *e_out = e;
    return ckdi_select(xc < 0.0f, lower, upper);
}

/* σ(x) = 1/(1 + exp(−x)); exp overflows to +inf for x < −88.7, giving 0. */
CKDI_VECFN float ckdi_sigmoidf(float x) { return 1.0f / (1.0f + ckdi_expf(-x)); }

#endif
