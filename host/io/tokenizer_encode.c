/* tokenizer_encode.c — text to ids: special-token splitting, normalization,
 * the split pattern, then BPE merging of each piece by rank. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* A candidate merge of the adjacent symbols at pos and rpos. It is stale once
 * either symbol has changed, which is checked when it is popped. */
typedef struct {
    int32_t rank, pos, rpos;
    int32_t left, right, merged;
} cand;

/* Everything one call needs, grown as needed and freed at the end, so that
 * calls share nothing and may run concurrently. */
typedef struct {
    ckdtok_u32vec text, work;
    uint8_t *bytes;
    int32_t *sym, *next, *prev;
    cand *heap;
    size_t word_cap;
    int32_t *ids;
    size_t n_ids, ids_cap;
} scratch;

static void scratch_free(scratch *s)
{
    free(s->text.v);
    free(s->work.v);
    free(s->bytes);
    free(s->sym);
    free(s->next);
    free(s->prev);
    free(s->heap);
    free(s->ids);
}

static int push_id(scratch *s, int32_t id)
{
    if (s->n_ids == s->ids_cap) {
        size_t cap = s->ids_cap ? 2 * s->ids_cap : 128;
        int32_t *v = realloc(s->ids, cap * sizeof *v);
        if (!v)
            return -1;
        s->ids = v;
        s->ids_cap = cap;
    }
    s->ids[s->n_ids++] = id;
    return 0;
}

/* Room for a word of n code points: 4n bytes, each a symbol, and at most 3
 * candidates per symbol (one initial, two per merge). */
static int reserve_word(scratch *s, size_t n_cp)
{
    if (n_cp > (size_t)INT32_MAX / 12)
        return -1;
    size_t need = 4 * n_cp;
    if (need <= s->word_cap)
        return 0;
    size_t cap = s->word_cap ? s->word_cap : 64;
    while (cap < need)
        cap *= 2;
    uint8_t *b = realloc(s->bytes, cap);
    if (b)
        s->bytes = b;
    int32_t *sym = realloc(s->sym, cap * sizeof *sym);
    if (sym)
        s->sym = sym;
    int32_t *next = realloc(s->next, cap * sizeof *next);
    if (next)
        s->next = next;
    int32_t *prev = realloc(s->prev, cap * sizeof *prev);
    if (prev)
        s->prev = prev;
    cand *heap = realloc(s->heap, 3 * cap * sizeof *heap);
    if (heap)
        s->heap = heap;
    if (!b || !sym || !next || !prev || !heap)
        return -1;
    s->word_cap = cap;
    return 0;
}

/* Min-heap on (rank, pos): the lowest-ranked merge first and, among equal
 * ranks, the leftmost, which reproduces the reference's "merge every
 * occurrence of the best pair, left to right". */
static int cand_less(const cand *a, const cand *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(cand *h, size_t *n, cand c)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!cand_less(&c, &h[parent]))
            break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = c;
}

static cand heap_pop(cand *h, size_t *n)
{
    cand top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= *n)
            break;
        if (child + 1 < *n && cand_less(&h[child + 1], &h[child]))
            child++;
        if (!cand_less(&h[child], &last))
            break;
        h[i] = h[child];
        i = child;
    }
    if (*n > 0)
        h[i] = last;
    return top;
}

static void push_pair(const ckd_tokenizer *tok, scratch *s, size_t *nh, int32_t pos, int32_t rpos)
{
    const ckdtok_pair *p = ckdtok_find_pair(tok, s->sym[pos], s->sym[rpos]);
    if (p) {
        cand c = {p->rank, pos, rpos, s->sym[pos], s->sym[rpos], p->merged};
        heap_push(s->heap, nh, c);
    }
}

/* BPE of one piece (code points cp[0..n)), appending its ids. */
static int encode_word(const ckd_tokenizer *tok, scratch *s, const uint32_t *cp, size_t n)
{
    if (reserve_word(s, n) < 0)
        return -1;
    size_t nb = ckdtok_encode_utf8(cp, n, s->bytes);
    /* Each byte starts as its own symbol; "</w>" rides on the last one. */
    for (size_t i = 0; i < nb; i++) {
        s->sym[i] = i + 1 < nb ? tok->byte_id[s->bytes[i]] : tok->byte_eow_id[s->bytes[i]];
        s->prev[i] = (int32_t)i - 1;
        s->next[i] = i + 1 < nb ? (int32_t)i + 1 : -1;
    }
    size_t nh = 0;
    for (size_t i = 0; i + 1 < nb; i++)
        push_pair(tok, s, &nh, (int32_t)i, (int32_t)i + 1);
    while (nh > 0) {
        cand c = heap_pop(s->heap, &nh);
        if (s->sym[c.pos] != c.left || s->next[c.pos] != c.rpos || s->sym[c.rpos] != c.right)
            continue;
        /* The left symbol becomes the merged one; the right one leaves the
         * list (and its -1 makes every candidate naming it stale). */
        int32_t after = s->next[c.rpos];
        s->sym[c.pos] = c.merged;
        s->sym[c.rpos] = -1;
        s->next[c.pos] = after;
        if (after >= 0)
            s->prev[after] = c.pos;
        if (s->prev[c.pos] >= 0)
            push_pair(tok, s, &nh, s->prev[c.pos], c.pos);
        if (after >= 0)
            push_pair(tok, s, &nh, c.pos, after);
    }
    for (int32_t i = 0; i >= 0 && nb > 0; i = s->next[i])
        if (push_id(s, s->sym[i]) < 0)
            return -1;
    return 0;
}

/* Normalizes, splits and encodes one stretch of input free of special-token
 * text. */
static int encode_segment(const ckd_tokenizer *tok, scratch *s, const char *text, size_t n)
{
    if (n == 0)
        return 0;
    s->text.n = 0;
    if (ckdtok_normalize(text, n, &s->text, &s->work) < 0)
        return -1;
    size_t pos = 0, a, b;
    int kind;
    while ((kind = ckdtok_next_piece(s->text.v, s->text.n, &pos, &a, &b)) >= 0) {
        int rc;
        if (kind == CKDTOK_SOT)
            rc = push_id(s, tok->sot);
        else if (kind == CKDTOK_EOT)
            rc = push_id(s, tok->eot);
        else
            rc = encode_word(tok, s, s->text.v + a, b - a);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* The untruncated ids of text into s->ids. */
static int encode_all(const ckd_tokenizer *tok, const char *text, scratch *s, ckd_error *err)
{
    if (!tok || !text)
        return ckd_errorf(err, "tokenize: %s is NULL", tok ? "the text" : "the tokenizer");
    size_t n = strlen(text);
    if (ckdtok_check_utf8(text, n, 0, err) < 0)
        return -1;
    if (push_id(s, tok->sot) < 0)
        goto oom;
    /* Special-token text is taken out before normalization, as HF does for
     * its added tokens, so that e.g. "!<|endoftext|>" gives "!" and the id. */
    static const char sot_text[] = "<|startoftext|>", eot_text[] = "<|endoftext|>";
    size_t seg = 0;
    for (size_t i = 0; i < n; i++) {
        if (text[i] != '<')
            continue;
        size_t len = 0;
        int32_t id = 0;
        if (strncmp(text + i, sot_text, sizeof sot_text - 1) == 0) {
            len = sizeof sot_text - 1;
            id = tok->sot;
        } else if (strncmp(text + i, eot_text, sizeof eot_text - 1) == 0) {
            len = sizeof eot_text - 1;
            id = tok->eot;
        } else {
            continue;
        }
        if (encode_segment(tok, s, text + seg, i - seg) < 0 || push_id(s, id) < 0)
            goto oom;
        i += len - 1;
        seg = i + 1;
    }
    if (encode_segment(tok, s, text + seg, n - seg) < 0 || push_id(s, tok->eot) < 0)
        goto oom;
    return 0;
oom:
    return ckd_errorf(err, "tokenize: out of memory (text of %zu bytes)", n);
}

int ckd_tokenize_full(const ckd_tokenizer *tok, const char *text, int32_t **ids, size_t *n_ids,
                      ckd_error *err)
{
    scratch s = {0};
    if (ids)
        *ids = NULL;
    if (!ids || !n_ids)
        return ckd_errorf(err, "ckd_tokenize_full: the output pointers are NULL");
    if (encode_all(tok, text, &s, err) < 0) {
        scratch_free(&s);
        return -1;
    }
    *ids = s.ids;
    *n_ids = s.n_ids;
    s.ids = NULL;
    scratch_free(&s);
    return 0;
}

int ckd_tokenize(const ckd_tokenizer *tok, const char *text, int32_t *ids, int context_len,
                 int32_t pad_id, int *n_out, int *truncated, ckd_error *err)
{
    if (context_len < 2)
        return ckd_errorf(err, "ckd_tokenize: context length %d is too short (need at least 2 "
                          "for the start and end tokens)", context_len);
    if (!ids)
        return ckd_errorf(err, "ckd_tokenize: the output array is NULL");
    scratch s = {0};
    if (encode_all(tok, text, &s, err) < 0) {
        scratch_free(&s);
        return -1;
    }
    size_t len = (size_t)context_len;
    int cut = s.n_ids > len;
    size_t n = cut ? len : s.n_ids;
    memcpy(ids, s.ids, n * sizeof *ids);
    if (cut)
        ids[n - 1] = tok->eot;  /* keep end-of-text last */
    for (size_t i = n; i < len; i++)
        ids[i] = pad_id;
    if (n_out)
        *n_out = (int)n;
    if (truncated)
        *truncated = cut;
    scratch_free(&s);
    return 0;
}
