/* test-tokenizer.c — CLIP's BPE tokenizer against Hugging Face's ids
 * (tests/fixtures/tokenizer/tokenizer_cases.json, 161 strings), through both
 * loaders, plus bad text and bad vocabulary files. */
#include "config.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "clipkd/tokenizer.h"

/* ---- helpers ------------------------------------------------------------ */

static char *srcpath(const char *rel)
{
    const char *src = getenv("CKD_TEST_SRCDIR");
    cr_assert(src && *src, "CKD_TEST_SRCDIR is not set (run through make check)");
    size_t n = strlen(src) + strlen(rel) + 2;
    char *p = malloc(n);
    cr_assert(p);
    snprintf(p, n, "%s/%s", src, rel);
    return p;
}

static ckd_tokenizer *load_gz(void)
{
    char *path = srcpath("models/clip/bpe_simple_vocab_16e6.txt.gz");
    ckd_error err = {{0}};
    ckd_tokenizer *tok = ckd_tokenizer_load_bpe_gz(path, &err);
    cr_assert(tok, "loading %s: %s", path, err.msg);
    free(path);
    return tok;
}

static ckd_tokenizer *load_hf(void)
{
    char *vocab = srcpath("tests/fixtures/tokenizer/vocab.json.gz");
    char *merges = srcpath("tests/fixtures/tokenizer/merges.txt.gz");
    ckd_error err = {{0}};
    ckd_tokenizer *tok = ckd_tokenizer_load_hf(vocab, merges, &err);
    cr_assert(tok, "loading %s + %s: %s", vocab, merges, err.msg);
    free(vocab);
    free(merges);
    return tok;
}

static json_t *load_cases(void)
{
    char *path = srcpath("tests/fixtures/tokenizer/tokenizer_cases.json");
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    cr_assert(root, "%s: %s", path, jerr.text);
    free(path);
    json_t *cases = json_incref(json_object_get(root, "cases"));
    json_decref(root);
    cr_assert(json_is_array(cases) && json_array_size(cases) == 161,
              "expected 161 cases in tokenizer_cases.json");
    return cases;
}

/* A scratch directory under $TMPDIR (never the source tree). */
static char tmpdir[4096];

static void make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/ckd-tok-XXXXXX", base && *base ? base : "/tmp");
    cr_assert(mkdtemp(tmpdir), "mkdtemp %s", tmpdir);
}

static char *write_tmp(const char *name, const void *data, size_t len)
{
    size_t n = strlen(tmpdir) + strlen(name) + 2;
    char *path = malloc(n);
    cr_assert(path);
    snprintf(path, n, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
    return path;
}

static void remove_tmp(char *path)
{
    unlink(path);
    free(path);
}

static void *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert(buf && fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

static void assert_ids(const int32_t *got, size_t n_got, json_t *want, const char *what,
                       const char *text)
{
    cr_assert_eq(n_got, json_array_size(want), "%s of \"%s\": %zu ids, expected %zu", what, text,
                 n_got, json_array_size(want));
    for (size_t i = 0; i < n_got; i++)
        cr_assert_eq(got[i], json_integer_value(json_array_get(want, i)),
                     "%s of \"%s\": id %zu is %d, expected %d", what, text, i, (int)got[i],
                     (int)json_integer_value(json_array_get(want, i)));
}

/* Every fixture case: the untruncated ids, and the 77-id form with both pad
 * conventions. */
static void check_all_cases(const ckd_tokenizer *tok)
{
    json_t *cases = load_cases();
    size_t i;
    json_t *c;
    int n_truncated = 0;
    json_array_foreach(cases, i, c) {
        const char *text = json_string_value(json_object_get(c, "text"));
        json_t *full = json_object_get(c, "slow_untruncated");
        json_t *cut = json_object_get(c, "slow");
        ckd_error err = {{0}};
        int32_t *ids = NULL;
        size_t n = 0;
        cr_assert_eq(ckd_tokenize_full(tok, text, &ids, &n, &err), 0, "%s", err.msg);
        assert_ids(ids, n, full, "untruncated ids", text);
        free(ids);

        int32_t pad_ids[2] = {0, CKD_TOKENIZER_EOT_ID};
        for (int p = 0; p < 2; p++) {
            int32_t out[CKD_TOKENIZER_CONTEXT_LEN];
            int n_out = -1, truncated = -1;
            cr_assert_eq(ckd_tokenize(tok, text, out, CKD_TOKENIZER_CONTEXT_LEN, pad_ids[p],
                                      &n_out, &truncated, &err), 0, "%s", err.msg);
            assert_ids(out, (size_t)n_out, cut, "truncated ids", text);
            for (int k = n_out; k < CKD_TOKENIZER_CONTEXT_LEN; k++)
                cr_assert_eq(out[k], pad_ids[p], "padding of \"%s\" at %d", text, k);
            cr_assert_eq(truncated, json_array_size(full) > CKD_TOKENIZER_CONTEXT_LEN);
            n_truncated += truncated;
        }
    }
    cr_assert_eq(n_truncated, 2, "the fixture has exactly one over-long case");
    json_decref(cases);
}

static void expect_ids(const ckd_tokenizer *tok, const char *text, const int32_t *want, size_t n)
{
    ckd_error err = {{0}};
    int32_t *ids = NULL;
    size_t got = 0;
    cr_assert_eq(ckd_tokenize_full(tok, text, &ids, &got, &err), 0, "%s", err.msg);
    cr_assert_eq(got, n, "\"%s\": %zu ids, expected %zu", text, got, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(ids[i], want[i], "\"%s\": id %zu is %d, expected %d", text, i, (int)ids[i],
                     (int)want[i]);
    free(ids);
}
#define EXPECT_IDS(tok, text, ...)                                                                 \
    do {                                                                                           \
        const int32_t want_[] = {__VA_ARGS__};                                                     \
        expect_ids(tok, text, want_, sizeof want_ / sizeof want_[0]);                              \
    } while (0)

static void expect_same(const ckd_tokenizer *tok, const char *a, const char *b)
{
    ckd_error err = {{0}};
    int32_t *ia, *ib;
    size_t na, nb;
    cr_assert_eq(ckd_tokenize_full(tok, a, &ia, &na, &err), 0, "%s", err.msg);
    cr_assert_eq(ckd_tokenize_full(tok, b, &ib, &nb, &err), 0, "%s", err.msg);
    cr_assert(na == nb && memcmp(ia, ib, na * sizeof *ia) == 0,
              "\"%s\" and \"%s\" should tokenize alike", a, b);
    free(ia);
    free(ib);
}

/* Asserts that loading fails with a message containing every given piece. */
static void expect_load_error(ckd_tokenizer *tok, const ckd_error *err, const char *piece1,
                              const char *piece2)
{
    cr_assert_null(tok, "loading should have failed");
    cr_assert(strstr(err->msg, piece1), "message \"%s\" lacks \"%s\"", err->msg, piece1);
    if (piece2)
        cr_assert(strstr(err->msg, piece2), "message \"%s\" lacks \"%s\"", err->msg, piece2);
}

/* ---- the fixture -------------------------------------------------------- */

Test(tokenizer, openai_gz_matches_hf_ids)
{
    ckd_tokenizer *tok = load_gz();
    check_all_cases(tok);
    ckd_tokenizer_free(tok);
}

Test(tokenizer, hf_files_match_hf_ids)
{
    ckd_tokenizer *tok = load_hf();
    check_all_cases(tok);
    ckd_tokenizer_free(tok);
}

Test(tokenizer, both_loaders_build_the_same_vocabulary)
{
    ckd_tokenizer *a = load_gz(), *b = load_hf();
    cr_assert_eq(ckd_tokenizer_vocab_size(a), 49408);
    cr_assert_eq(ckd_tokenizer_vocab_size(b), 49408);
    cr_assert_eq(ckd_tokenizer_sot_id(a), CKD_TOKENIZER_SOT_ID);
    cr_assert_eq(ckd_tokenizer_eot_id(a), CKD_TOKENIZER_EOT_ID);
    cr_assert_eq(ckd_tokenizer_sot_id(b), CKD_TOKENIZER_SOT_ID);
    cr_assert_eq(ckd_tokenizer_eot_id(b), CKD_TOKENIZER_EOT_ID);
    for (int32_t id = 0; id < 49408; id++)
        cr_assert_str_eq(ckd_tokenizer_token(a, id), ckd_tokenizer_token(b, id), "id %d", id);
    cr_assert_str_eq(ckd_tokenizer_token(a, 0), "!");
    cr_assert_str_eq(ckd_tokenizer_token(a, 255), "\xc5\x83"); /* U+0143 */
    cr_assert_str_eq(ckd_tokenizer_token(a, 320), "a</w>");
    cr_assert_str_eq(ckd_tokenizer_token(a, 512), "in");
    cr_assert_str_eq(ckd_tokenizer_token(a, 49405), "jekyll</w>");
    cr_assert_str_eq(ckd_tokenizer_token(a, 49406), "<|startoftext|>");
    cr_assert_null(ckd_tokenizer_token(a, 49408));
    cr_assert_null(ckd_tokenizer_token(a, -1));
    ckd_tokenizer_free(a);
    ckd_tokenizer_free(b);
}

Test(tokenizer, default_vocabulary_via_env)
{
    char *dir = srcpath("models/clip");
    cr_assert_eq(setenv("CLIPKD_DATA_DIR", dir, 1), 0);
    ckd_error err = {{0}};
    ckd_tokenizer *tok = ckd_tokenizer_load_default(&err);
    cr_assert(tok, "%s", err.msg);
    EXPECT_IDS(tok, "a photo of a cat", 49406, 320, 1125, 539, 320, 2368, 49407);
    ckd_tokenizer_free(tok);

    cr_assert_eq(setenv("CLIPKD_DATA_DIR", "/nonexistent-ckd-dir", 1), 0);
    tok = ckd_tokenizer_load_default(&err);
    expect_load_error(tok, &err, "/nonexistent-ckd-dir/bpe_simple_vocab_16e6.txt.gz",
                      "cannot open");
    free(dir);
}

Test(tokenizer, hf_loader_reads_plain_files)
{
    /* The fixtures are gzip'd to keep the tree small; HF ships them plain. */
    make_tmpdir();
    ckd_tokenizer *ref = load_hf();
    const char *names[2] = {"vocab.json", "merges.txt"};
    char *plain[2];
    for (int k = 0; k < 2; k++) {
        char rel[128];
        snprintf(rel, sizeof rel, "tests/fixtures/tokenizer/%s.gz", names[k]);
        char *gz = srcpath(rel);
        gzFile in = gzopen(gz, "rb");
        cr_assert(in, "cannot open %s", gz);
        size_t cap = 4 << 20, len = 0;
        char *buf = malloc(cap);
        int got;
        while ((got = gzread(in, buf + len, (unsigned)(cap - len))) > 0)
            len += (size_t)got;
        cr_assert(got == 0 && len < cap, "cannot decompress %s", gz);
        gzclose(in);
        plain[k] = write_tmp(names[k], buf, len);
        free(buf);
        free(gz);
    }
    ckd_error err = {{0}};
    ckd_tokenizer *tok = ckd_tokenizer_load_hf(plain[0], plain[1], &err);
    cr_assert(tok, "%s", err.msg);
    for (int32_t id = 0; id < 49408; id++)
        cr_assert_str_eq(ckd_tokenizer_token(tok, id), ckd_tokenizer_token(ref, id));
    EXPECT_IDS(tok, "Hello, World!", 49406, 3306, 267, 1002, 256, 49407);
    ckd_tokenizer_free(tok);
    ckd_tokenizer_free(ref);
    remove_tmp(plain[0]);
    remove_tmp(plain[1]);
    rmdir(tmpdir);
}

/* ---- behaviour beyond the fixture --------------------------------------- */

Test(tokenizer, reference_vectors)
{
    /* From an independent Python re-implementation (NFC, per-code-point
     * lowercasing, the split pattern, BPE over OpenAI's merges). */
    ckd_tokenizer *tok = load_gz();
    EXPECT_IDS(tok, "it's 2023 :)", 49406, 585, 568, 273, 271, 273, 274, 1408, 49407);
    EXPECT_IDS(tok, "  multiple   spaces\tand\nnewlines ", 49406, 6470, 9006, 537, 1218, 3418,
               49407);
    EXPECT_IDS(tok, "naïve café", 49406, 1097, 35689, 563, 15304, 49407);
    /* U+0130 lowercases to "i" + U+0307. */
    EXPECT_IDS(tok, "\xc4\xb0stanbul", 49406, 328, 16384, 11231, 49407);
    /* Per-code-point lowercasing: a word-final capital sigma becomes σ, not ς,
     * as in tokenizers' Lowercase. */
    EXPECT_IDS(tok, "ΟΔΟΣ", 49406, 138, 123, 138, 112, 138, 123, 139, 481, 49407);
    /* Roman numerals are \p{N} (one piece each, lowercased), ½ and Arabic-Indic
     * three too. */
    EXPECT_IDS(tok, "Ⅻ ⅻ ½ ٣", 49406, 158, 227, 375, 158, 227, 375, 33613, 149, 352, 49407);
    EXPECT_IDS(tok, "", 49406, 49407);
    EXPECT_IDS(tok, " \t\n\xe3\x80\x80 ", 49406, 49407); /* U+3000 is White_Space */
    ckd_tokenizer_free(tok);
}

Test(tokenizer, nfc_and_case)
{
    ckd_tokenizer *tok = load_gz();
    /* Decomposed input composes: "Café Ünïcödé" in NFD. */
    expect_same(tok, "Cafe\xcc\x81 U\xcc\x88ni\xcc\x88" "co\xcc\x88" "de\xcc\x81",
                "Café Ünïcödé");
    EXPECT_IDS(tok, "Café Ünïcödé", 49406, 15304, 6522, 77, 35689, 66, 7255, 67, 4166, 49407);
    /* Hangul jamo compose into syllables: 한국어. */
    expect_same(tok, "\xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab\xe1\x84\x80\xe1\x85\xae\xe1\x86\xa8"
                     "\xe1\x84\x8b\xe1\x85\xa5", "한국어");
    EXPECT_IDS(tok, "한국어", 49406, 15197, 250, 31871, 255, 31625, 368, 49407);
    /* Canonical reordering: dot below (220) sorts before dot above (230). */
    expect_same(tok, "q\xcc\x87\xcc\xa3", "q\xcc\xa3\xcc\x87");
    /* ẛ (U+1E9B) has a canonical decomposition but is NFC itself. */
    expect_same(tok, "\xc5\xbf\xcc\x87", "\xe1\xba\x9b");
    expect_same(tok, "THE QUICK BROWN FOX", "the quick brown fox");
    expect_same(tok, "ÀÉÎÕÜ ΑΒΓ АБВ", "àéîõü αβγ абв");
    ckd_tokenizer_free(tok);
}

/* A long run of combining marks (U+0345, class 240, and U+0316, class 220,
 * alternating after "a") is put in canonical order in linear time: 40,000
 * pairs took 8 s with an insertion sort. The result is the same text with
 * the marks already sorted (every U+0316, then every U+0345), which is its
 * own NFC. Measured here: 0.07 s, against 9.2 s with the insertion sort;
 * the timeout is 3 s. */
Test(tokenizer, long_runs_of_marks_are_ordered_in_linear_time, .timeout = 3)
{
    ckd_tokenizer *tok = load_gz();
    size_t pairs = 40000;
    char *mixed = malloc(1 + 4 * pairs + 1), *sorted = malloc(1 + 4 * pairs + 1);
    cr_assert(mixed && sorted);
    char *p = mixed, *q = sorted;
    *p++ = 'a', *q++ = 'a';
    for (size_t i = 0; i < pairs; i++) {
        memcpy(p, "\xcd\x85\xcc\x96", 4); /* U+0345 U+0316 */
        p += 4;
        memcpy(q + 2 * i, "\xcc\x96", 2);             /* U+0316 ... */
        memcpy(q + 2 * pairs + 2 * i, "\xcd\x85", 2); /* ... then U+0345 */
    }
    *p = '\0';
    q[4 * pairs] = '\0';
    expect_same(tok, mixed, sorted);
    free(mixed);
    free(sorted);
    ckd_tokenizer_free(tok);
}

/* 1 MB adversarial captions, through the whole tokenizer (NFC, the
 * pre-tokenizer, BPE with its heap): 250,000 mark pairs after one letter,
 * and one 1 MiB "word" of random letters, which BPE merges in
 * O(n log n). Measured: 0.16 s and 0.95 s (2-core Xeon, the other core
 * busy); an insertion sort or a quadratic merge loop would take minutes,
 * so the timeouts only catch that. */
static void tokenize_big(const ckd_tokenizer *tok, const char *text)
{
    int32_t *ids = NULL;
    size_t n = 0;
    ckd_error err = {{0}};
    cr_assert_eq(ckd_tokenize_full(tok, text, &ids, &n, &err), 0, "%s", err.msg);
    cr_assert_gt(n, 2);
    free(ids);
}

Test(tokenizer, one_megabyte_adversarial_captions, .timeout = 15)
{
    ckd_tokenizer *tok = load_gz();
    size_t pairs = 250000, n = 1 << 20;
    char *marks = malloc(1 + 4 * pairs + 1), *letters = malloc(n + 1);
    cr_assert(marks && letters);
    marks[0] = 'a';
    for (size_t i = 0; i < pairs; i++)
        memcpy(marks + 1 + 4 * i, "\xcd\x85\xcc\x96", 4);
    marks[1 + 4 * pairs] = '\0';
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        letters[i] = (char)('a' + x % 26);
    }
    letters[n] = '\0';
    tokenize_big(tok, marks);
    tokenize_big(tok, letters);
    free(marks);
    free(letters);
    ckd_tokenizer_free(tok);
}

Test(tokenizer, special_tokens_in_text)
{
    ckd_tokenizer *tok = load_hf();
    EXPECT_IDS(tok, "a<|endoftext|>b", 49406, 320, 49407, 321, 49407);
    EXPECT_IDS(tok, "x<|startoftext|>y", 49406, 343, 49406, 344, 49407);
    /* Split off before the pattern, so the "!" is not glued to "<|". */
    EXPECT_IDS(tok, "!<|endoftext|>", 49406, 256, 49407, 49407);
    /* After lowercasing the pattern's own alternative catches it (OpenAI). */
    EXPECT_IDS(tok, "<|ENDOFTEXT|>", 49406, 49407, 49407);
    ckd_tokenizer_free(tok);
}

Test(tokenizer, context_length_and_padding)
{
    ckd_tokenizer *tok = load_gz();
    ckd_error err = {{0}};
    int32_t ids[8];
    int n = -1, cut = -1;
    cr_assert_eq(ckd_tokenize(tok, "a photo of a cat", ids, 8, -7, &n, &cut, &err), 0);
    const int32_t want[8] = {49406, 320, 1125, 539, 320, 2368, 49407, -7};
    cr_assert(memcmp(ids, want, sizeof want) == 0);
    cr_assert_eq(n, 7);
    cr_assert_eq(cut, 0);
    cr_assert_eq(ckd_tokenize(tok, "a photo of a cat", ids, 7, 0, &n, &cut, &err), 0);
    cr_assert(memcmp(ids, want, 7 * sizeof *ids) == 0 && n == 7 && cut == 0);
    cr_assert_eq(ckd_tokenize(tok, "a photo of a cat", ids, 5, 0, &n, &cut, &err), 0);
    const int32_t want5[5] = {49406, 320, 1125, 539, 49407};
    cr_assert(memcmp(ids, want5, sizeof want5) == 0 && n == 5 && cut == 1);
    cr_assert_eq(ckd_tokenize(tok, "a photo", ids, 2, 0, NULL, NULL, &err), 0);
    cr_assert(ids[0] == 49406 && ids[1] == 49407);
    cr_assert_eq(ckd_tokenize(tok, "a", ids, 1, 0, &n, &cut, &err), -1);
    cr_assert(strstr(err.msg, "context length 1"), "%s", err.msg);
    cr_assert_eq(ckd_tokenize(tok, "a", NULL, 8, 0, &n, &cut, &err), -1);
    cr_assert_eq(ckd_tokenize(NULL, "a", ids, 8, 0, &n, &cut, &err), -1);
    cr_assert_eq(ckd_tokenize(tok, NULL, ids, 8, 0, &n, &cut, &err), -1);
    ckd_tokenizer_free(tok);
}

Test(tokenizer, long_and_odd_input_does_not_crash)
{
    ckd_tokenizer *tok = load_gz();
    /* One 200,000-letter word: BPE must stay fast (heap, not quadratic). */
    size_t n = 200000;
    char *big = malloc(n + 1);
    cr_assert(big);
    for (size_t i = 0; i < n; i++)
        big[i] = "abcdefghij"[(i * 7 + i / 13) % 10];
    big[n] = '\0';
    ckd_error err = {{0}};
    int32_t *ids;
    size_t n_ids;
    cr_assert_eq(ckd_tokenize_full(tok, big, &ids, &n_ids, &err), 0, "%s", err.msg);
    cr_assert(n_ids > 2 && n_ids < n);
    for (size_t i = 0; i < n_ids; i++)
        cr_assert(ids[i] >= 0 && ids[i] < 49408);
    free(ids);
    /* Every byte 0x01..0x7F, plus lone combining marks and controls. */
    for (size_t i = 0; i < 127; i++)
        big[i] = (char)(i + 1);
    static const char odd[] = "\xcc\x81\xcc\x81 \xc2\x85\xef\xbf\xbd\xf0\x9f\x98\x80";
    memcpy(big + 127, odd, sizeof odd);
    cr_assert_eq(ckd_tokenize_full(tok, big, &ids, &n_ids, &err), 0, "%s", err.msg);
    free(ids);
    free(big);
    ckd_tokenizer_free(tok);
}

/* ---- bad text ----------------------------------------------------------- */

Test(tokenizer, invalid_utf8_names_the_offset)
{
    ckd_tokenizer *tok = load_gz();
    static const struct {
        const char *text;
        const char *where;
    } bad[] = {
        {"abc\xff", "byte offset 3"},              /* never valid */
        {"ok \x80 here", "byte offset 3"},         /* stray continuation */
        {"tail\xc3", "byte offset 4"},             /* cut short */
        {"caf\xe2\x82", "byte offset 3"},          /* cut short, 3-byte */
        {"x\xc0\xaf", "byte offset 1"},            /* overlong '/' */
        {"xy\xe0\x80\xaf", "byte offset 3"},       /* overlong, 3-byte */
        {"\xed\xa0\x80", "byte offset 1"},         /* UTF-16 surrogate */
        {"\xf4\x90\x80\x80", "byte offset 1"},     /* past U+10FFFF */
        {"ab\xe2\x82z", "byte offset 4"},          /* bad third byte */
        {"<|endoftext|>\xfe", "byte offset 13"},   /* after a special token */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ckd_error err = {{0}};
        int32_t ids[77];
        int32_t *full = (int32_t *)&err; /* must be reset to NULL */
        size_t n;
        cr_assert_eq(ckd_tokenize(tok, bad[i].text, ids, 77, 0, NULL, NULL, &err), -1,
                     "case %zu accepted", i);
        cr_assert(strstr(err.msg, "invalid UTF-8") && strstr(err.msg, bad[i].where),
                  "case %zu: \"%s\" should name %s", i, err.msg, bad[i].where);
        cr_assert_eq(ckd_tokenize_full(tok, bad[i].text, &full, &n, &err), -1);
        cr_assert_null(full);
    }
    /* Errors never need an error struct. */
    int32_t ids[4];
    cr_assert_eq(ckd_tokenize(tok, "\xff", ids, 4, 0, NULL, NULL, NULL), -1);
    ckd_tokenizer_free(tok);
}

/* ---- bad vocabulary files ----------------------------------------------- */

Test(tokenizer, missing_files)
{
    ckd_error err = {{0}};
    ckd_tokenizer *tok = ckd_tokenizer_load_bpe_gz("/nonexistent/bpe.txt.gz", &err);
    expect_load_error(tok, &err, "/nonexistent/bpe.txt.gz", "cannot open");
    char *vocab = srcpath("tests/fixtures/tokenizer/vocab.json.gz");
    tok = ckd_tokenizer_load_hf(vocab, "/nonexistent/merges.txt", &err);
    expect_load_error(tok, &err, "/nonexistent/merges.txt", "cannot open");
    tok = ckd_tokenizer_load_hf("/nonexistent/vocab.json", vocab, &err);
    expect_load_error(tok, &err, "/nonexistent/vocab.json", "cannot open");
    cr_assert_null(ckd_tokenizer_load_bpe_gz("/nonexistent/x", NULL));
    /* A directory opens but cannot be read. */
    char *dir = srcpath("models/clip");
    tok = ckd_tokenizer_load_bpe_gz(dir, &err);
    expect_load_error(tok, &err, dir, "cannot");
    free(dir);
    free(vocab);
}

Test(tokenizer, corrupt_gzip)
{
    make_tmpdir();
    char *src = srcpath("models/clip/bpe_simple_vocab_16e6.txt.gz");
    size_t len;
    unsigned char *gz = read_all(src, &len);
    ckd_error err = {{0}};

    char *path = write_tmp("truncated.txt.gz", gz, len / 2);
    expect_load_error(ckd_tokenizer_load_bpe_gz(path, &err), &err, path, "gzip");
    remove_tmp(path);

    /* Damage the compressed data in the middle, then only the CRC trailer. */
    for (size_t i = len / 2; i < len / 2 + 64; i++)
        gz[i] ^= 0x5A;
    path = write_tmp("damaged.txt.gz", gz, len);
    expect_load_error(ckd_tokenizer_load_bpe_gz(path, &err), &err, path, "gzip");
    remove_tmp(path);
    for (size_t i = len / 2; i < len / 2 + 64; i++)
        gz[i] ^= 0x5A;
    gz[len - 6] ^= 0x01;
    path = write_tmp("badcrc.txt.gz", gz, len);
    expect_load_error(ckd_tokenizer_load_bpe_gz(path, &err), &err, path, "gzip");
    remove_tmp(path);

    free(gz);
    free(src);
    rmdir(tmpdir);
}

Test(tokenizer, malformed_openai_file)
{
    make_tmpdir();
    ckd_error err = {{0}};
    const char text1[] = "#version: 0.2\ni n\nt h\n";
    char *path = write_tmp("short.txt", text1, sizeof text1 - 1);
    expect_load_error(ckd_tokenizer_load_bpe_gz(path, &err), &err, path, "only 2 merges");
    remove_tmp(path);

    const char text2[] = "i n\nt h\n";
    path = write_tmp("noheader.txt", text2, sizeof text2 - 1);
    expect_load_error(ckd_tokenizer_load_bpe_gz(path, &err), &err, path, "line 1");
    remove_tmp(path);

    const char text3[] = "#version: 0.2\ni n\nth\n";
    path = write_tmp("badline.txt", text3, sizeof text3 - 1);
    expect_load_error(ckd_tokenizer_load_bpe_gz(path, &err), &err, path, "line 3");
    remove_tmp(path);

    path = write_tmp("empty.txt", "", 0);
    expect_load_error(ckd_tokenizer_load_bpe_gz(path, &err), &err, path, "empty");
    remove_tmp(path);

    const char text4[] = "#version: 0.2\ni \xff\n";
    path = write_tmp("binary.txt", text4, sizeof text4 - 1);
    expect_load_error(ckd_tokenizer_load_bpe_gz(path, &err), &err, path, "byte offset 16");
    remove_tmp(path);
    rmdir(tmpdir);
}

/* Loads the fixture vocab.json with a custom merges text; returns the error. */
static void expect_hf_merges_error(const char *merges, const char *piece1, const char *piece2)
{
    char *vocab = srcpath("tests/fixtures/tokenizer/vocab.json.gz");
    char *path = write_tmp("merges.txt", merges, strlen(merges));
    ckd_error err = {{0}};
    expect_load_error(ckd_tokenizer_load_hf(vocab, path, &err), &err, path, piece1);
    if (piece2)
        cr_assert(strstr(err.msg, piece2), "message \"%s\" lacks \"%s\"", err.msg, piece2);
    remove_tmp(path);
    free(vocab);
}

Test(tokenizer, malformed_hf_merges)
{
    make_tmpdir();
    expect_hf_merges_error("#version: 0.2\ni n\nt h e\n", "line 3", "two symbols");
    expect_hf_merges_error("#version: 0.2\ni n\n\nt h\n", "line 3", "two symbols");
    expect_hf_merges_error("#version: 0.2\ni n\n n\n", "line 3", "two symbols");
    expect_hf_merges_error("#version: 0.2\nxyzzy q\n", "line 2", "\"xyzzy\"");
    expect_hf_merges_error("#version: 0.2\nq z\n", "line 2", "\"qz\"");
    expect_hf_merges_error("#version: 0.2\ni n\nt h\ni n\n", "line 4", "repeats line 2");

    /* A valid tiny list loads (header optional, CRLF and trailing blank lines
     * tolerated) and then only those merges apply. */
    char *vocab = srcpath("tests/fixtures/tokenizer/vocab.json.gz");
    const char small[] = "i n\r\nin g</w>\r\n\r\n";
    char *path = write_tmp("small.txt", small, sizeof small - 1);
    ckd_error err = {{0}};
    ckd_tokenizer *tok = ckd_tokenizer_load_hf(vocab, path, &err);
    cr_assert(tok, "%s", err.msg);
    EXPECT_IDS(tok, "ring", 49406, 81, 519, 49407); /* r, ing</w> */
    ckd_tokenizer_free(tok);
    remove_tmp(path);
    free(vocab);
    rmdir(tmpdir);
}

Test(tokenizer, malformed_vocab_json)
{
    make_tmpdir();
    char *merges = srcpath("tests/fixtures/tokenizer/merges.txt.gz");
    static const struct {
        const char *json, *piece1, *piece2;
    } bad[] = {
        {"[1, 2, 3]", "expected a JSON object", NULL},
        {"{\"a\": 1,", "invalid JSON", "line 1"},
        {"{\"a\": \"one\"}", "\"a\"", "integer id"},
        {"{\"a\": -1}", "\"a\"", "integer id"},
        {"{\"a\": 99999999999}", "\"a\"", "integer id"},
        {"{}", "empty", NULL},
        {"{\"a\": 0, \"b\": 0}", "share id 0", NULL},
        {"{\"a\": 0, \"a\": 1}", "invalid JSON", "duplicate"},
        {"{\"<|startoftext|>\": 0, \"<|endoftext|>\": 1}", "no symbol", "byte 0x"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *path = write_tmp("vocab.json", bad[i].json, strlen(bad[i].json));
        ckd_error err = {{0}};
        expect_load_error(ckd_tokenizer_load_hf(path, merges, &err), &err, path, bad[i].piece1);
        if (bad[i].piece2)
            cr_assert(strstr(err.msg, bad[i].piece2), "case %zu: \"%s\" lacks \"%s\"", i, err.msg,
                      bad[i].piece2);
        remove_tmp(path);
    }
    free(merges);
    rmdir(tmpdir);
}

/* ---- threads ------------------------------------------------------------ */

typedef struct {
    const ckd_tokenizer *tok;
    size_t n_cases;
    const char **texts;
    int32_t **want;
    size_t *n_want;
    int failures;
} thread_job;

static void *tokenize_all(void *arg)
{
    thread_job *job = arg;
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < job->n_cases; i++) {
            int32_t *ids;
            size_t n;
            if (ckd_tokenize_full(job->tok, job->texts[i], &ids, &n, NULL) < 0) {
                job->failures++;
                continue;
            }
            job->failures += n != job->n_want[i] || memcmp(ids, job->want[i], n * sizeof *ids);
            free(ids);
        }
    return NULL;
}

Test(tokenizer, concurrent_calls_share_one_tokenizer)
{
    ckd_tokenizer *tok = load_gz();
    /* Plain arrays, so that the threads touch nothing but the tokenizer. */
    json_t *cases = load_cases();
    size_t n_cases = json_array_size(cases);
    const char **texts = calloc(n_cases, sizeof *texts);
    int32_t **want = calloc(n_cases, sizeof *want);
    size_t *n_want = calloc(n_cases, sizeof *n_want);
    cr_assert(texts && want && n_want);
    for (size_t i = 0; i < n_cases; i++) {
        json_t *c = json_array_get(cases, i), *ids = json_object_get(c, "slow_untruncated");
        texts[i] = json_string_value(json_object_get(c, "text"));
        n_want[i] = json_array_size(ids);
        want[i] = malloc(n_want[i] * sizeof **want);
        cr_assert(want[i]);
        for (size_t k = 0; k < n_want[i]; k++)
            want[i][k] = (int32_t)json_integer_value(json_array_get(ids, k));
    }
    pthread_t th[4];
    thread_job jobs[4];
    for (int t = 0; t < 4; t++) {
        jobs[t] = (thread_job){tok, n_cases, texts, want, n_want, 0};
        cr_assert_eq(pthread_create(&th[t], NULL, tokenize_all, &jobs[t]), 0);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        cr_assert_eq(jobs[t].failures, 0, "thread %d got wrong ids", t);
    }
    for (size_t i = 0; i < n_cases; i++)
        free(want[i]);
    free(want);
    free(n_want);
    free(texts);
    json_decref(cases);
    ckd_tokenizer_free(tok);
}
