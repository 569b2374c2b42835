/* clipkd/tokenizer.h — CLIP's byte-level BPE tokenizer.
 *
 * Turns UTF-8 text into the token ids CLIP's text tower expects. The ids match
 * Hugging Face transformers 5.x's CLIPTokenizer run without ftfy (its slow and
 * fast forms agree there); tests/fixtures/tokenizer/tokenizer_cases.json holds
 * them for 161 strings. The steps:
 *
 *   1. Exact occurrences of "<|startoftext|>" and "<|endoftext|>" in the input
 *      become their ids directly (HF splits special tokens off first).
 *   2. Each other stretch is NFC-normalized, then lowercased with full Unicode
 *      lowercasing, code point by code point (as tokenizers' Lowercase does:
 *      no final-sigma rule; U+0130 becomes "i" + U+0307).
 *   3. It is split with CLIP's pattern
 *        <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|
 *        [\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 *      Whitespace (the Unicode White_Space property) is never matched, so
 *      collapsing and stripping whitespace happens implicitly. A special token
 *      that appears only after lowercasing ("<|ENDOFTEXT|>") is caught by the
 *      pattern's own alternatives and gives its id, as in OpenAI's code.
 *   4. Each piece is UTF-8 encoded, mapped through bytes_to_unicode, and BPE
 *      merged by rank with "</w>" glued to its last symbol.
 *   5. The result is wrapped in <|startoftext|> (49406) ... <|endoftext|> (49407).
 *
 * Known gaps, by design: ftfy's repairs (mojibake, curly quotes, ligatures …)
 * and OpenAI's double html.unescape are NOT done — HF without ftfy does not do
 * them either, so "&amp;" stays four characters. Older transformers (4.x) fell
 * back to a BERT-style cleanup without ftfy that also dropped control
 * characters and spaced out CJK ideographs; neither is done here. The Unicode
 * tables come from Unicode 14.0 (host/io/tokenizer_unidata.c); code points
 * assigned later count as neither letters nor numbers.
 *
 * A loaded tokenizer is immutable: any number of threads may call the
 * ckd_tokenize* functions on it concurrently.
 */
#ifndef CLIPKD_TOKENIZER_H
#define CLIPKD_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "clipkd/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* CLIP's defaults. */
#define CKD_TOKENIZER_CONTEXT_LEN 77
#define CKD_TOKENIZER_SOT_ID 49406
#define CKD_TOKENIZER_EOT_ID 49407
/* File name of OpenAI's vocabulary, as shipped in clipkd's data directory. */
#define CKD_TOKENIZER_BPE_FILE "bpe_simple_vocab_16e6.txt.gz"

typedef struct ckd_tokenizer ckd_tokenizer;

/* Loads OpenAI's bpe_simple_vocab_16e6.txt.gz (a plain, uncompressed copy is
 * accepted too): a header line, then "left right" merges, of which the first
 * 48,894 (49152 - 256 - 2) are used, as OpenAI's and HF's code do. The
 * vocabulary is built as OpenAI builds it: the 256 byte symbols, the same with
 * "</w>", the merged strings, "<|startoftext|>", "<|endoftext|>". */
ckd_tokenizer *ckd_tokenizer_load_bpe_gz(const char *path, ckd_error *err);

/* Loads a Hugging Face tokenizer's vocab.json (an object: token -> id) and
 * merges.txt (an optional "#version" line, then "left right" lines; all of them
 * are used). Either file may be gzip-compressed. Every byte symbol, both
 * special tokens and every merge result must be in the vocabulary. */
ckd_tokenizer *ckd_tokenizer_load_hf(const char *vocab_json, const char *merges_txt,
                                     ckd_error *err);

/* Loads the vocabulary shipped with clipkd: CKD_TOKENIZER_BPE_FILE in the
 * directory named by the environment variable CLIPKD_DATA_DIR if it is set and
 * not empty, else in the installed data directory. */
ckd_tokenizer *ckd_tokenizer_load_default(ckd_error *err);

/* Frees a tokenizer; NULL is allowed. */
void ckd_tokenizer_free(ckd_tokenizer *tok);

/* Number of ids (one more than the largest id), and the special ids. */
int32_t ckd_tokenizer_vocab_size(const ckd_tokenizer *tok);
int32_t ckd_tokenizer_sot_id(const ckd_tokenizer *tok);
int32_t ckd_tokenizer_eot_id(const ckd_tokenizer *tok);

/* The byte-level token string of an id (e.g. 320 -> "a</w>"), or NULL if the
 * id is out of range or unused. For debugging and tests. */
const char *ckd_tokenizer_token(const ckd_tokenizer *tok, int32_t id);

/* Tokenizes NUL-terminated UTF-8 text into exactly context_len ids (>= 2):
 * start-of-text, the tokens, end-of-text, then pad_id up to context_len
 * (OpenAI/open_clip pad with 0, HF pads CLIP with its end-of-text id). If the
 * tokens do not fit they are cut so that end-of-text stays last, as HF's
 * truncation=True, max_length=context_len does.
 * *n_out (may be NULL) receives the number of ids before the padding, so the
 * end-of-text id is at (*n_out - 1); *truncated (may be NULL) receives 1 if
 * tokens were cut, else 0. Invalid UTF-8 is an error naming its byte offset.
 * Returns 0, or -1 with err filled. */
int ckd_tokenize(const ckd_tokenizer *tok, const char *text, int32_t *ids, int context_len,
                 int32_t pad_id, int *n_out, int *truncated, ckd_error *err);

/* Tokenizes without a length limit: *ids receives a malloc'd array of
 * start-of-text, the tokens and end-of-text (release it with free()), and
 * *n_ids its length. Returns 0, or -1 with err filled (*ids is then NULL). */
int ckd_tokenize_full(const ckd_tokenizer *tok, const char *text, int32_t **ids,
                      size_t *n_ids, ckd_error *err);

#ifdef __cplusplus
}
#endif
#endif
