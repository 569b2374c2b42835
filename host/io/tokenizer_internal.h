/* tokenizer_internal.h — what the tokenizer's source files share.
 *
 * Not installed. Names start with ckdtok_ (not ckd_) so that libclipkd's
 * export list (^ckd_) keeps them private.
 */
#ifndef CLIPKD_TOKENIZER_INTERNAL_H
#define CLIPKD_TOKENIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "clipkd/error.h"
#include "clipkd/tokenizer.h"

/* ---- generated Unicode tables (tokenizer_unidata.c, tokenizer_nfcdata.c) -- */
extern const uint32_t ckdtok_letters[];   /* lo, hi */
extern const size_t ckdtok_letters_len;
extern const uint32_t ckdtok_numbers[];   /* lo, hi */
extern const size_t ckdtok_numbers_len;
extern const uint32_t ckdtok_ccc[];       /* lo, hi, combining class */
extern const size_t ckdtok_ccc_len;
extern const int32_t ckdtok_lower[];      /* lo, hi, delta, stride */
extern const size_t ckdtok_lower_len;
extern const uint32_t ckdtok_decomps[];   /* cp, a, b */
extern const size_t ckdtok_decomps_len;
extern const uint32_t ckdtok_comps[];     /* a, b, composite */
extern const size_t ckdtok_comps_len;

/* ---- growable arrays ------------------------------------------------------ */
typedef struct {
    uint32_t *v;
    size_t n, cap;
} ckdtok_u32vec;

/* Makes room for `extra` more elements; 0 or -1 (out of memory). */
int ckdtok_u32vec_reserve(ckdtok_u32vec *a, size_t extra);

/* ---- text (tokenizer_text.c) ---------------------------------------------- */
/* Checks that s[0..n) is well-formed UTF-8 (no overlongs, surrogates or code
 * points past U+10FFFF). On failure names the byte offset (counted from
 * `base`) and the problem in err. */
int ckdtok_check_utf8(const char *s, size_t n, size_t base, ckd_error *err);

/* Decodes validated UTF-8 s[0..n) and appends the code points to out, NFC
 * normalized and lowercased. `work` is scratch space reused across calls. */
int ckdtok_normalize(const char *s, size_t n, ckdtok_u32vec *out, ckdtok_u32vec *work);

/* Kinds of pieces the split pattern yields. */
enum { CKDTOK_WORD = 0, CKDTOK_SOT = 1, CKDTOK_EOT = 2 };

/* Finds the next piece of cp[*pos..n) under CLIP's split pattern: sets
 * [*start, *end) and returns its kind, advancing *pos; returns -1 when only
 * whitespace is left. */
int ckdtok_next_piece(const uint32_t *cp, size_t n, size_t *pos, size_t *start, size_t *end);

/* Appends the UTF-8 encoding of cp[0..n) to out (at most 4 bytes each). */
size_t ckdtok_encode_utf8(const uint32_t *cp, size_t n, uint8_t *out);

/* ---- BPE model (tokenizer.c) ---------------------------------------------- */
typedef struct {
    uint64_t key;  /* left id << 32 | right id; UINT64_MAX marks an empty slot */
    int32_t rank;
    int32_t merged;
} ckdtok_pair;

struct ckd_tokenizer {
    int32_t vocab_size;
    char **tokens;           /* id -> token string (NULL for unused ids) */
    int32_t byte_id[256];    /* id of each byte's symbol */
    int32_t byte_eow_id[256];/* ... and of the symbol with "</w>" */
    int32_t sot, eot;
    ckdtok_pair *pairs;      /* open-addressing hash of merges */
    size_t pair_mask;        /* capacity - 1 (capacity a power of two) */
    unsigned pair_shift;     /* 64 - log2(capacity) */
};

/* Looks up the merge of (left, right); NULL if there is none. */
const ckdtok_pair *ckdtok_find_pair(const ckd_tokenizer *tok, int32_t left, int32_t right);

#endif
