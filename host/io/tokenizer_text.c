/* tokenizer_text.c — the Unicode side of CLIP's tokenizer: UTF-8 checking,
 * NFC, lowercasing, character classes and the split pattern. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* ---- UTF-8 -------------------------------------------------------------- */

int ckdtok_check_utf8(const char *str, size_t n, size_t base, ckd_error *err)
{
    const uint8_t *s = (const uint8_t *)str;
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        /* Table 3-7 of the Unicode standard: the allowed range of the second
         * byte excludes overlongs, surrogates and code points past U+10FFFF. */
        size_t len;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else {
            return ckd_errorf(err, "invalid UTF-8 at byte offset %zu: byte 0x%02X cannot start a "
                              "character", base + i, c);
        }
        for (size_t k = 1; k < len; k++) {
            if (i + k >= n)
                return ckd_errorf(err, "invalid UTF-8 at byte offset %zu: the text ends inside a "
                                  "%zu-byte character", base + i, len);
            uint8_t d = s[i + k];
            uint8_t klo = k == 1 ? lo : 0x80, khi = k == 1 ? hi : 0xBF;
            if (d < klo || d > khi)
                return ckd_errorf(err, "invalid UTF-8 at byte offset %zu: byte 0x%02X after lead "
                                  "byte 0x%02X (expected 0x%02X..0x%02X; overlong, surrogate or "
                                  "truncated sequences are rejected)",
                                  base + i + k, d, c, klo, khi);
        }
        i += len;
    }
    return 0;
}

size_t ckdtok_encode_utf8(const uint32_t *cp, size_t n, uint8_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cp[i];
        if (c < 0x80) {
            out[k++] = (uint8_t)c;
        } else if (c < 0x800) {
            out[k++] = (uint8_t)(0xC0 | c >> 6);
            out[k++] = (uint8_t)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            out[k++] = (uint8_t)(0xE0 | c >> 12);
            out[k++] = (uint8_t)(0x80 | (c >> 6 & 0x3F));
            out[k++] = (uint8_t)(0x80 | (c & 0x3F));
        } else {
            out[k++] = (uint8_t)(0xF0 | c >> 18);
            out[k++] = (uint8_t)(0x80 | (c >> 12 & 0x3F));
            out[k++] = (uint8_t)(0x80 | (c >> 6 & 0x3F));
            out[k++] = (uint8_t)(0x80 | (c & 0x3F));
        }
    }
    return k;
}

/* Decodes UTF-8 that ckdtok_check_utf8 accepted. */
static size_t decode_utf8(const uint8_t *s, size_t n, uint32_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        if (c < 0x80) {
            out[k++] = c;
            i += 1;
        } else if (c < 0xE0) {
            out[k++] = (uint32_t)(c & 0x1F) << 6 | (s[i + 1] & 0x3F);
            i += 2;
        } else if (c < 0xF0) {
            out[k++] = (uint32_t)(c & 0x0F) << 12 | (uint32_t)(s[i + 1] & 0x3F) << 6 |
                       (s[i + 2] & 0x3F);
            i += 3;
        } else {
            out[k++] = (uint32_t)(c & 0x07) << 18 | (uint32_t)(s[i + 1] & 0x3F) << 12 |
                       (uint32_t)(s[i + 2] & 0x3F) << 6 | (s[i + 3] & 0x3F);
            i += 4;
        }
    }
    return k;
}

/* ---- table lookups ------------------------------------------------------ */

/* Index of the row of a table of `stride`-wide rows, sorted by their first
 * column and holding closed ranges [row[0], row[1]], that contains cp; -1 if
 * none does. */
static long find_range(const void *table, size_t rows, size_t stride, int is_signed, uint32_t cp)
{
    size_t lo = 0, hi = rows;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t a, b;
        if (is_signed) {
            const int32_t *r = (const int32_t *)table + mid * stride;
            a = (uint32_t)r[0];
            b = (uint32_t)r[1];
        } else {
            const uint32_t *r = (const uint32_t *)table + mid * stride;
            a = r[0];
            b = r[1];
        }
        if (cp < a)
            hi = mid;
        else if (cp > b)
            lo = mid + 1;
        else
            return (long)mid;
    }
    return -1;
}

static int is_letter(uint32_t c)
{
    if (c < 0x80)
        return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
    return find_range(ckdtok_letters, ckdtok_letters_len, 2, 0, c) >= 0;
}

static int is_number(uint32_t c)
{
    if (c < 0x80)
        return c >= '0' && c <= '9';
    return find_range(ckdtok_numbers, ckdtok_numbers_len, 2, 0, c) >= 0;
}

/* The Unicode White_Space property, which is what \s means in the Python
 * `regex` module and in the tokenizers library's patterns. */
static int is_space(uint32_t c)
{
    if (c < 0x80)
        return c == ' ' || (c >= 0x09 && c <= 0x0D);
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static unsigned combining_class(uint32_t c)
{
    if (c < 0x300)
        return 0;
    long r = find_range(ckdtok_ccc, ckdtok_ccc_len, 3, 0, c);
    return r < 0 ? 0 : ckdtok_ccc[3 * (size_t)r + 2];
}

static uint32_t simple_lower(uint32_t c)
{
    if (c < 0x80)
        return c >= 'A' && c <= 'Z' ? c + 32 : c;
    long r = find_range(ckdtok_lower, ckdtok_lower_len, 4, 1, c);
    if (r < 0)
        return c;
    const int32_t *row = ckdtok_lower + 4 * (size_t)r;
    if ((c - (uint32_t)row[0]) % (uint32_t)row[3] != 0)
        return c;
    return (uint32_t)((int32_t)c + row[2]);
}

/* ---- NFC ---------------------------------------------------------------- */

/* Hangul syllables decompose and compose arithmetically (Unicode 3.12). */
enum {
    SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7,
    LCOUNT = 19, VCOUNT = 21, TCOUNT = 28, NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT
};

/* Appends the full canonical decomposition of c (at most 4 code points, so
 * the caller reserves that much per input code point). */
static void decompose(uint32_t c, ckdtok_u32vec *out)
{
    if (c >= SBASE && c < SBASE + SCOUNT) {
        uint32_t s = c - SBASE;
        out->v[out->n++] = LBASE + s / NCOUNT;
        out->v[out->n++] = VBASE + (s % NCOUNT) / TCOUNT;
        if (s % TCOUNT)
            out->v[out->n++] = TBASE + s % TCOUNT;
        return;
    }
    if (c >= 0xC0) {
        size_t lo = 0, hi = ckdtok_decomps_len;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            uint32_t m = ckdtok_decomps[3 * mid];
            if (c < m)
                hi = mid;
            else if (c > m)
                lo = mid + 1;
            else {
                decompose(ckdtok_decomps[3 * mid + 1], out);
                if (ckdtok_decomps[3 * mid + 2])
                    decompose(ckdtok_decomps[3 * mid + 2], out);
                return;
            }
        }
    }
    out->v[out->n++] = c;
}

/* The primary composite of a + b, or 0. */
static uint32_t compose_pair(uint32_t a, uint32_t b)
{
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE &&
        b < TBASE + TCOUNT)
        return a + (b - TBASE);
    size_t lo = 0, hi = ckdtok_comps_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const uint32_t *r = ckdtok_comps + 3 * mid;
        if (a < r[0] || (a == r[0] && b < r[1]))
            hi = mid;
        else if (a > r[0] || b > r[1])
            lo = mid + 1;
        else
            return r[2];
    }
    return 0;
}

/* Sorts one run of non-starters by combining class, stably: by insertion
 * when short (nearly always), else by counting on the 255 classes, so that
 * a hostile run ("a" and 40,000 alternating marks) costs linear time, not
 * the quadratic time of insertion. -1 when out of memory. */
static int sort_run(uint32_t *v, size_t len)
{
    if (len <= 32) {
        for (size_t i = 1; i < len; i++) {
            uint32_t c = v[i];
            unsigned cc = combining_class(c);
            size_t j = i;
            for (; j > 0 && combining_class(v[j - 1]) > cc; j--)
                v[j] = v[j - 1];
            v[j] = c;
        }
        return 0;
    }
    uint32_t *tmp = malloc(len * sizeof *tmp);
    uint8_t *cls = malloc(len);
    if (!tmp || !cls) {
        free(tmp);
        free(cls);
        return -1;
    }
    size_t start[257] = {0};
    for (size_t i = 0; i < len; i++) {
        cls[i] = (uint8_t)combining_class(v[i]);
        start[cls[i] + 1]++;
    }
    for (int k = 1; k <= 256; k++)
        start[k] += start[k - 1];
    for (size_t i = 0; i < len; i++)
        tmp[start[cls[i]]++] = v[i];
    memcpy(v, tmp, len * sizeof *v);
    free(tmp);
    free(cls);
    return 0;
}

/* Canonical ordering: each maximal run of non-starters (class > 0) sorted
 * by class, stably; starters stay where they are. */
static int canonical_order(uint32_t *v, size_t m)
{
    for (size_t i = 0; i < m;) {
        if (combining_class(v[i]) == 0) {
            i++;
            continue;
        }
        size_t a = i;
        while (i < m && combining_class(v[i]) != 0)
            i++;
        if (sort_run(v + a, i - a) < 0)
            return -1;
    }
    return 0;
}

/* NFC of in[0..n), appended to out. */
static int nfc(const uint32_t *in, size_t n, ckdtok_u32vec *out)
{
    if (n > SIZE_MAX / 4 || ckdtok_u32vec_reserve(out, 4 * n) < 0)
        return -1;
    size_t base = out->n;
    for (size_t i = 0; i < n; i++)
        decompose(in[i], out);
    uint32_t *v = out->v + base;
    size_t m = out->n - base;

    if (canonical_order(v, m) < 0)
        return -1;

    /* Canonical composition (the sample algorithm of UAX #15): a character
     * joins the last starter unless a character between them blocks it, which
     * after canonical ordering means the last one kept has a class >= its own.
     * A leading non-starter gets class 256 so nothing composes onto it. */
    if (m == 0)
        return 0;
    size_t starter = 0, k = 1;
    unsigned last_cc = combining_class(v[0]) ? 256 : 0;
    for (size_t i = 1; i < m; i++) {
        uint32_t c = v[i];
        unsigned cc = combining_class(c);
        uint32_t comp = compose_pair(v[starter], c);
        if (comp && (last_cc < cc || last_cc == 0)) {
            v[starter] = comp;
            continue;
        }
        if (cc == 0)
            starter = k;
        last_cc = cc;
        v[k++] = c;
    }
    out->n = base + k;
    return 0;
}

int ckdtok_normalize(const char *s, size_t n, ckdtok_u32vec *out, ckdtok_u32vec *work)
{
    work->n = 0;
    if (ckdtok_u32vec_reserve(work, n) < 0)
        return -1;
    work->n = decode_utf8((const uint8_t *)s, n, work->v);

    /* Below U+0300 every character is its own NFC and no pair composes (the
     * generator asserts this), which covers ASCII and Latin-1 text. */
    uint32_t max = 0;
    for (size_t i = 0; i < work->n; i++)
        if (work->v[i] > max)
            max = work->v[i];
    size_t base = out->n;
    if (max >= 0x300) {
        if (nfc(work->v, work->n, out) < 0)
            return -1;
    } else {
        if (ckdtok_u32vec_reserve(out, work->n) < 0)
            return -1;
        memcpy(out->v + out->n, work->v, work->n * sizeof *work->v);
        out->n += work->n;
    }

    /* Per-code-point lowercasing, as tokenizers' Lowercase normalizer does
     * (so no final-sigma rule). Only U+0130 grows, into "i" + U+0307. */
    size_t grow = 0;
    for (size_t i = base; i < out->n; i++) {
        if (out->v[i] == 0x130)
            grow++;
        else
            out->v[i] = simple_lower(out->v[i]);
    }
    if (grow) {
        if (ckdtok_u32vec_reserve(out, grow) < 0)
            return -1;
        size_t src = out->n, dst = out->n + grow;
        while (src > base) {
            uint32_t c = out->v[--src];
            if (c == 0x130) {
                out->v[--dst] = 0x307;
                out->v[--dst] = 'i';
            } else {
                out->v[--dst] = c;
            }
        }
        out->n += grow;
    }
    return 0;
}

/* ---- the split pattern -------------------------------------------------- */

static int match_ascii(const uint32_t *cp, size_t n, size_t i, const char *lit)
{
    for (size_t k = 0; lit[k]; k++)
        if (i + k >= n || cp[i + k] != (uint8_t)lit[k])
            return 0;
    return 1;
}

int ckdtok_next_piece(const uint32_t *cp, size_t n, size_t *pos, size_t *start, size_t *end)
{
    size_t i = *pos;
    while (i < n && is_space(cp[i]))
        i++;
    if (i >= n) {
        *pos = n;
        return -1;
    }
    /* The alternatives in the pattern's order; the first that matches at the
     * leftmost position wins. */
    int kind = CKDTOK_WORD;
    size_t j;
    uint32_t c = cp[i];
    if (c == '<' && match_ascii(cp, n, i, "<|startoftext|>")) {
        kind = CKDTOK_SOT;
        j = i + 15;
    } else if (c == '<' && match_ascii(cp, n, i, "<|endoftext|>")) {
        kind = CKDTOK_EOT;
        j = i + 13;
    } else if (c == '\'' && i + 1 < n &&
               (cp[i + 1] == 's' || cp[i + 1] == 't' || cp[i + 1] == 'm' || cp[i + 1] == 'd')) {
        j = i + 2;
    } else if (c == '\'' && (match_ascii(cp, n, i, "'re") || match_ascii(cp, n, i, "'ve") ||
                             match_ascii(cp, n, i, "'ll"))) {
        j = i + 3;
    } else if (is_letter(c)) {
        j = i + 1;
        while (j < n && is_letter(cp[j]))
            j++;
    } else if (is_number(c)) {
        j = i + 1;
    } else {
        j = i + 1;
        while (j < n && !is_space(cp[j]) && !is_letter(cp[j]) && !is_number(cp[j]))
            j++;
    }
    *start = i;
    *end = j;
    *pos = j;
    return kind;
}
