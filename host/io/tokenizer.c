/* tokenizer.c — loading CLIP's BPE vocabulary (OpenAI's .gz or HF's files)
 * into the id tables that tokenizer_encode.c runs on. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <zlib.h>

#include "tokenizer_internal.h"
#include "core/json_oom.h"

#ifndef CKD_DATA_DIR
#define CKD_DATA_DIR "."
#endif

/* OpenAI's code (and HF's slow tokenizer) use lines [1, 49152 - 256 - 2 + 1)
 * of the merges file: 48,894 merges, which with the 512 byte symbols and the
 * two special tokens make the 49,408-entry vocabulary. */
#define OPENAI_N_MERGES (49152 - 256 - 2)
/* Vocabulary files are a few MB; refuse anything absurdly large rather than
 * trying to hold it in memory. */
#define MAX_FILE_BYTES ((size_t)256 << 20)
/* Ids index arrays, so keep them bounded (CLIP's largest is 49,407). */
#define MAX_VOCAB_ID ((1 << 24) - 1)

static const char SOT_TEXT[] = "<|startoftext|>";
static const char EOT_TEXT[] = "<|endoftext|>";

/* ---- small utilities ---------------------------------------------------- */

int ckdtok_u32vec_reserve(ckdtok_u32vec *a, size_t extra)
{
    if (a->cap - a->n >= extra)
        return 0;
    size_t cap = a->cap ? a->cap : 64;
    while (cap - a->n < extra) {
        if (cap > SIZE_MAX / 2 / sizeof *a->v)
            return -1;
        cap *= 2;
    }
    uint32_t *v = realloc(a->v, cap * sizeof *v);
    if (!v)
        return -1;
    a->v = v;
    a->cap = cap;
    return 0;
}

/* zlib's messages start with the path, which ours already name. */
static const char *gz_message(const char *msg, const char *path)
{
    size_t n = strlen(path);
    return strncmp(msg, path, n) == 0 && strncmp(msg + n, ": ", 2) == 0 ? msg + n + 2 : msg;
}

/* Reads a whole file through zlib, which passes plain files through
 * unchanged, so every loader accepts both compressed and plain files. The
 * buffer is NUL-terminated. */
static char *read_file(const char *path, size_t *len, ckd_error *err)
{
    gzFile f = gzopen(path, "rb");
    if (!f) {
        ckd_errorf(err, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
        return NULL;
    }
    size_t n = 0, cap = 1 << 20;
    char *buf = malloc(cap + 1);
    if (!buf) {
        gzclose(f);
        ckd_errorf(err, "%s: out of memory", path);
        return NULL;
    }
    for (;;) {
        if (cap - n < (1 << 16)) {
            if (cap >= MAX_FILE_BYTES) {
                ckd_errorf(err, "%s: larger than %zu bytes uncompressed; not a vocabulary file",
                           path, MAX_FILE_BYTES);
                goto fail;
            }
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) {
                ckd_errorf(err, "%s: out of memory", path);
                goto fail;
            }
            buf = nb;
            cap *= 2;
        }
        int got = gzread(f, buf + n, (unsigned)(cap - n));
        if (got < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            if (zerr == Z_ERRNO)
                ckd_errorf(err, "%s: cannot read: %s", path, strerror(errno));
            else
                ckd_errorf(err, "%s: corrupt gzip data after %zu uncompressed bytes: %s", path, n,
                           gz_message(msg, path));
            goto fail;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    /* zlib reports a stream cut short only through gzerror (Z_BUF_ERROR). */
    int zerr;
    const char *msg = gzerror(f, &zerr);
    if (zerr != Z_OK) {
        ckd_errorf(err, "%s: truncated or corrupt gzip data after %zu uncompressed bytes: %s", path,
                   n, gz_message(msg, path));
        goto fail;
    }
    gzclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
fail:
    gzclose(f);
    free(buf);
    return NULL;
}

/* strdup is POSIX, not C11. */
static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    return d ? memcpy(d, s, n) : NULL;
}

/* bytes_to_unicode() from OpenAI's code: printable Latin-1 bytes stand for
 * themselves, the other 68 bytes map in order to U+0100 onwards. Fills the
 * code point of every byte and the order OpenAI lists them in. */
static void byte_symbols(uint32_t cp_of[256], int order[256])
{
    int k = 0, extra = 0;
    for (int b = 0; b < 256; b++)
        if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) {
            cp_of[b] = (uint32_t)b;
            order[k++] = b;
        }
    for (int b = 0; b < 256; b++)
        if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) {
            cp_of[b] = 256u + (uint32_t)extra++;
            order[k++] = b;
        }
}

/* The UTF-8 text of byte b's symbol, optionally with "</w>". */
static void byte_symbol_text(const uint32_t cp_of[256], int b, int eow, char out[8])
{
    size_t n = ckdtok_encode_utf8(&cp_of[b], 1, (uint8_t *)out);
    memcpy(out + n, eow ? "</w>" : "", eow ? 5 : 1);
}

/* ---- string -> id map, used while loading ------------------------------- */

typedef struct {
    int32_t *slot;  /* ids, -1 = empty */
    size_t mask;
    char **tokens;  /* the tokenizer's id -> string table */
} strmap;

static size_t str_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;  /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

static int strmap_init(strmap *m, size_t count, char **tokens)
{
    size_t cap = 16;
    while (cap < 2 * count)
        cap *= 2;
    m->slot = malloc(cap * sizeof *m->slot);
    if (!m->slot)
        return -1;
    memset(m->slot, 0xff, cap * sizeof *m->slot);
    m->mask = cap - 1;
    m->tokens = tokens;
    return 0;
}

/* The slot holding s[0..n), or the empty slot where it would go. */
static int32_t *strmap_slot(const strmap *m, const char *s, size_t n)
{
    size_t i = str_hash(s, n) & m->mask;
    for (;; i = (i + 1) & m->mask) {
        int32_t id = m->slot[i];
        if (id < 0)
            return &m->slot[i];
        const char *t = m->tokens[id];
        if (strncmp(t, s, n) == 0 && t[n] == '\0')
            return &m->slot[i];
    }
}

static int32_t strmap_get(const strmap *m, const char *s, size_t n)
{
    return *strmap_slot(m, s, n);
}

/* ---- building the tokenizer --------------------------------------------- */

static ckd_tokenizer *tok_new(int32_t vocab_size)
{
    ckd_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok)
        return NULL;
    tok->vocab_size = vocab_size;
    tok->tokens = calloc((size_t)vocab_size, sizeof *tok->tokens);
    if (!tok->tokens) {
        free(tok);
        return NULL;
    }
    return tok;
}

void ckd_tokenizer_free(ckd_tokenizer *tok)
{
    if (!tok)
        return;
    if (tok->tokens)
        for (int32_t i = 0; i < tok->vocab_size; i++)
            free(tok->tokens[i]);
    free(tok->tokens);
    free(tok->pairs);
    free(tok);
}

/* Finds the ids of the byte symbols and of the special tokens. */
static int find_fixed_ids(ckd_tokenizer *tok, const strmap *m, const char *path, ckd_error *err)
{
    uint32_t cp_of[256];
    int order[256];
    byte_symbols(cp_of, order);
    for (int b = 0; b < 256; b++)
        for (int eow = 0; eow < 2; eow++) {
            char text[8];
            byte_symbol_text(cp_of, b, eow, text);
            int32_t id = strmap_get(m, text, strlen(text));
            if (id < 0)
                return ckd_errorf(err, "%s: the vocabulary has no symbol \"%s\" for byte 0x%02X",
                                  path, text, b);
            (eow ? tok->byte_eow_id : tok->byte_id)[b] = id;
        }
    tok->sot = strmap_get(m, SOT_TEXT, strlen(SOT_TEXT));
    tok->eot = strmap_get(m, EOT_TEXT, strlen(EOT_TEXT));
    if (tok->sot < 0 || tok->eot < 0)
        return ckd_errorf(err, "%s: the vocabulary has no \"%s\" token", path,
                          tok->sot < 0 ? SOT_TEXT : EOT_TEXT);
    return 0;
}

/* Fibonacci hashing: the top bits of the product are the well-mixed ones. */
static size_t pair_index(const ckd_tokenizer *tok, uint64_t key)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> tok->pair_shift);
}

const ckdtok_pair *ckdtok_find_pair(const ckd_tokenizer *tok, int32_t left, int32_t right)
{
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t i = pair_index(tok, key);
    for (;; i = (i + 1) & tok->pair_mask) {
        const ckdtok_pair *p = &tok->pairs[i];
        if (p->key == key)
            return p;
        if (p->key == UINT64_MAX)
            return NULL;
    }
}

/* One parsed merges line: the two symbols (NUL-terminated, inside the file
 * buffer) and the line number for messages. */
typedef struct {
    const char *left, *right;
    size_t line;
} merge_line;

/* Turns the merges into the pair table: ids of both sides and of the merged
 * string, rank = position in the list. */
static int build_pairs(ckd_tokenizer *tok, const strmap *m, const merge_line *ml, size_t n,
                       const char *path, ckd_error *err)
{
    size_t cap = 16;
    unsigned bits = 4;
    while (cap < 2 * n) {
        cap *= 2;
        bits++;
    }
    tok->pairs = malloc(cap * sizeof *tok->pairs);
    if (!tok->pairs)
        return ckd_errorf(err, "%s: out of memory", path);
    for (size_t i = 0; i < cap; i++)
        tok->pairs[i].key = UINT64_MAX;
    tok->pair_mask = cap - 1;
    tok->pair_shift = 64 - bits;

    char small[256], *joined = small;
    size_t joined_cap = sizeof small;
    int rc = -1;
    for (size_t r = 0; r < n; r++) {
        size_t ll = strlen(ml[r].left), rl = strlen(ml[r].right);
        int32_t a = strmap_get(m, ml[r].left, ll), b = strmap_get(m, ml[r].right, rl);
        if (a < 0 || b < 0) {
            ckd_errorf(err, "%s: line %zu: symbol \"%s\" of merge \"%s %s\" is not in the vocabulary",
                       path, ml[r].line, a < 0 ? ml[r].left : ml[r].right, ml[r].left, ml[r].right);
            goto out;
        }
        if (ll + rl + 1 > joined_cap) {
            char *nj = malloc(ll + rl + 1);
            if (!nj) {
                ckd_errorf(err, "%s: out of memory", path);
                goto out;
            }
            if (joined != small)
                free(joined);
            joined = nj;
            joined_cap = ll + rl + 1;
        }
        memcpy(joined, ml[r].left, ll);
        memcpy(joined + ll, ml[r].right, rl + 1);
        int32_t merged = strmap_get(m, joined, ll + rl);
        if (merged < 0) {
            ckd_errorf(err, "%s: line %zu: the result \"%s\" of merge \"%s %s\" is not in the vocabulary",
                       path, ml[r].line, joined, ml[r].left, ml[r].right);
            goto out;
        }
        uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
        size_t i = pair_index(tok, key);
        while (tok->pairs[i].key != UINT64_MAX && tok->pairs[i].key != key)
            i = (i + 1) & tok->pair_mask;
        if (tok->pairs[i].key == key) {
            ckd_errorf(err, "%s: line %zu: merge \"%s %s\" repeats line %zu", path, ml[r].line,
                       ml[r].left, ml[r].right, ml[tok->pairs[i].rank].line);
            goto out;
        }
        tok->pairs[i].key = key;
        tok->pairs[i].rank = (int32_t)r;
        tok->pairs[i].merged = merged;
    }
    rc = 0;
out:
    if (joined != small)
        free(joined);
    return rc;
}

/* Splits the merges text (modified in place) into lines. If `openai`, line 1
 * is always a header and exactly OPENAI_N_MERGES lines follow it (more are
 * ignored); otherwise an optional "#version" header, then every line. */
static merge_line *parse_merges(char *text, size_t len, int openai, size_t *n_out,
                                const char *path, ckd_error *err)
{
    if (ckdtok_check_utf8(text, len, 0, err) < 0) {
        ckd_error_prefix(err, "%s", path);
        return NULL;
    }
    size_t cap = openai ? OPENAI_N_MERGES : 1024, n = 0, line = 0;
    merge_line *ml = malloc(cap * sizeof *ml);
    if (!ml) {
        ckd_errorf(err, "%s: out of memory", path);
        return NULL;
    }
    char *p = text, *end = text + len;
    while (p < end && !(openai && n == OPENAI_N_MERGES)) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *eol = nl ? nl : end;
        char *next = nl ? nl + 1 : end;
        line++;
        if (eol > p && eol[-1] == '\r')
            eol--;
        *eol = '\0';
        if (line == 1 && (openai || strncmp(p, "#version", 8) == 0)) {
            if (openai && !strstr(p, "#version")) {
                ckd_errorf(err, "%s: line 1: expected a \"#version\" header, got \"%.40s\"", path, p);
                goto fail;
            }
            p = next;
            continue;
        }
        if (!openai && eol == p) {
            /* Blank lines are tolerated only at the end of the file. */
            char *q = next;
            while (q < end && (*q == '\n' || *q == '\r'))
                q++;
            if (q == end)
                break;
        }
        char *sp = strchr(p, ' ');
        if (!sp || sp == p || sp[1] == '\0' || strchr(sp + 1, ' ')) {
            ckd_errorf(err, "%s: line %zu: expected two symbols separated by one space, got \"%.60s\"",
                       path, line, p);
            goto fail;
        }
        *sp = '\0';
        if (n == cap) {
            merge_line *nm = realloc(ml, 2 * cap * sizeof *ml);
            if (!nm) {
                ckd_errorf(err, "%s: out of memory", path);
                goto fail;
            }
            ml = nm;
            cap *= 2;
        }
        ml[n].left = p;
        ml[n].right = sp + 1;
        ml[n].line = line;
        n++;
        p = next;
    }
    if (line == 0) {
        ckd_errorf(err, "%s: empty file; expected a merges list", path);
        goto fail;
    }
    if (openai && n < OPENAI_N_MERGES) {
        ckd_errorf(err, "%s: only %zu merges after the header; expected at least %d", path, n,
                   OPENAI_N_MERGES);
        goto fail;
    }
    *n_out = n;
    return ml;
fail:
    free(ml);
    return NULL;
}

ckd_tokenizer *ckd_tokenizer_load_bpe_gz(const char *path, ckd_error *err)
{
    size_t len;
    char *text = read_file(path, &len, err);
    if (!text)
        return NULL;
    size_t n_merges = 0;
    merge_line *ml = parse_merges(text, len, 1, &n_merges, path, err);
    ckd_tokenizer *tok = NULL;
    strmap m = {0};
    if (!ml)
        goto fail;
    tok = tok_new(512 + (int32_t)n_merges + 2);
    if (!tok)
        goto oom;

    /* OpenAI's order: byte symbols, the same with "</w>", merges, specials. */
    uint32_t cp_of[256];
    int order[256];
    byte_symbols(cp_of, order);
    int32_t id = 0;
    for (int eow = 0; eow < 2; eow++)
        for (int k = 0; k < 256; k++) {
            char sym[8];
            byte_symbol_text(cp_of, order[k], eow, sym);
            if (!(tok->tokens[id++] = dup_str(sym)))
                goto oom;
        }
    for (size_t r = 0; r < n_merges; r++) {
        size_t ll = strlen(ml[r].left), rl = strlen(ml[r].right);
        char *s = malloc(ll + rl + 1);
        if (!s)
            goto oom;
        memcpy(s, ml[r].left, ll);
        memcpy(s + ll, ml[r].right, rl + 1);
        tok->tokens[id++] = s;
    }
    if (!(tok->tokens[id++] = dup_str(SOT_TEXT)) || !(tok->tokens[id++] = dup_str(EOT_TEXT)))
        goto oom;

    if (strmap_init(&m, (size_t)tok->vocab_size, tok->tokens) < 0)
        goto oom;
    /* Later duplicates win, as in Python's dict(zip(vocab, range(...))). */
    for (int32_t i = 0; i < tok->vocab_size; i++)
        *strmap_slot(&m, tok->tokens[i], strlen(tok->tokens[i])) = i;
    if (find_fixed_ids(tok, &m, path, err) < 0 ||
        build_pairs(tok, &m, ml, n_merges, path, err) < 0)
        goto fail;
    free(m.slot);
    free(ml);
    free(text);
    return tok;
oom:
    ckd_errorf(err, "%s: out of memory", path);
fail:
    free(m.slot);
    free(ml);
    free(text);
    ckd_tokenizer_free(tok);
    return NULL;
}

/* Reads vocab.json into a tokenizer with its id -> string table filled. */
static ckd_tokenizer *load_vocab_json(const char *path, strmap *m, ckd_error *err)
{
    size_t len;
    char *text = read_file(path, &len, err);
    if (!text)
        return NULL;
    json_error_t jerr;
    int oom = 0;
    json_t *root = ckdi_json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr, &oom);
    free(text);
    if (!root && oom)
        return ckd_errorf(err, "%s: out of memory reading the vocabulary", path), NULL;
    if (!root) {
        ckd_errorf(err, "%s: line %d, column %d: invalid JSON: %s", path, jerr.line, jerr.column,
                   jerr.text);
        return NULL;
    }
    ckd_tokenizer *tok = NULL;
    if (!json_is_object(root)) {
        ckd_errorf(err, "%s: expected a JSON object mapping tokens to ids", path);
        goto fail;
    }
    json_int_t max_id = -1;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 ||
            json_integer_value(val) > MAX_VOCAB_ID) {
            ckd_errorf(err, "%s: entry \"%.60s\": expected an integer id in [0, %d]", path, key,
                       MAX_VOCAB_ID);
            goto fail;
        }
        if (json_integer_value(val) > max_id)
            max_id = json_integer_value(val);
    }
    if (max_id < 0) {
        ckd_errorf(err, "%s: the vocabulary is empty", path);
        goto fail;
    }
    tok = tok_new((int32_t)max_id + 1);
    if (!tok || strmap_init(m, json_object_size(root), tok->tokens) < 0) {
        ckd_errorf(err, "%s: out of memory", path);
        goto fail;
    }
    json_object_foreach(root, key, val) {
        int32_t id = (int32_t)json_integer_value(val);
        if (tok->tokens[id]) {
            ckd_errorf(err, "%s: entries \"%.60s\" and \"%.60s\" share id %d", path,
                       tok->tokens[id], key, (int)id);
            goto fail;
        }
        if (!(tok->tokens[id] = dup_str(key))) {
            ckd_errorf(err, "%s: out of memory", path);
            goto fail;
        }
        *strmap_slot(m, key, strlen(key)) = id;
    }
    json_decref(root);
    return tok;
fail:
    json_decref(root);
    free(m->slot);
    m->slot = NULL;
    ckd_tokenizer_free(tok);
    return NULL;
}

ckd_tokenizer *ckd_tokenizer_load_hf(const char *vocab_json, const char *merges_txt,
                                     ckd_error *err)
{
    strmap m = {0};
    ckd_tokenizer *tok = load_vocab_json(vocab_json, &m, err);
    if (!tok)
        return NULL;
    size_t len, n_merges = 0;
    merge_line *ml = NULL;
    char *text = read_file(merges_txt, &len, err);
    if (!text)
        goto fail;
    ml = parse_merges(text, len, 0, &n_merges, merges_txt, err);
    if (!ml || find_fixed_ids(tok, &m, vocab_json, err) < 0 ||
        build_pairs(tok, &m, ml, n_merges, merges_txt, err) < 0)
        goto fail;
    free(ml);
    free(text);
    free(m.slot);
    return tok;
fail:
    free(ml);
    free(text);
    free(m.slot);
    ckd_tokenizer_free(tok);
    return NULL;
}

ckd_tokenizer *ckd_tokenizer_load_default(ckd_error *err)
{
    const char *dir = getenv("CLIPKD_DATA_DIR");
    if (!dir || !*dir)
        dir = CKD_DATA_DIR;
    size_t n = strlen(dir) + 1 + sizeof CKD_TOKENIZER_BPE_FILE;
    char *path = malloc(n);
    if (!path) {
        ckd_errorf(err, "out of memory");
        return NULL;
    }
    snprintf(path, n, "%s/%s", dir, CKD_TOKENIZER_BPE_FILE);
    ckd_tokenizer *tok = ckd_tokenizer_load_bpe_gz(path, err);
    if (!tok)
        ckd_error_prefix(err, "the default CLIP vocabulary (CLIPKD_DATA_DIR names another "
                         "directory)");
    free(path);
    return tok;
}

int32_t ckd_tokenizer_vocab_size(const ckd_tokenizer *tok) { return tok ? tok->vocab_size : -1; }
int32_t ckd_tokenizer_sot_id(const ckd_tokenizer *tok) { return tok ? tok->sot : -1; }
int32_t ckd_tokenizer_eot_id(const ckd_tokenizer *tok) { return tok ? tok->eot : -1; }

const char *ckd_tokenizer_token(const ckd_tokenizer *tok, int32_t id)
{
    if (!tok || id < 0 || id >= tok->vocab_size)
        return NULL;
    return tok->tokens[id];
}
