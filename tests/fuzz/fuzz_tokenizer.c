/* Tokenizer input text: UTF-8 checks, NFC, lowercasing, the pre-tokenizer
 * and BPE, through both entry points (the fixed context of 77 and the
 * unlimited one), with CLIP's own vocabulary. */
#include "fuzz.h"

#include <stdlib.h>

#include "clipkd/tokenizer.h"

FUZZ_TARGET(tokenizer)
{
    static ckd_tokenizer *tok;
    ckd_error err;
    if (!tok && !(tok = ckd_tokenizer_load_default(&err)))
        __builtin_trap(); /* the shipped vocabulary must load (set CLIPKD_DATA_DIR in a build tree) */
    char *text = fuzz_strndup(data, size);
    if (!text)
        return 0;
    int32_t ids[77], *all = NULL;
    int n = 0, truncated = 0;
    size_t n_all = 0;
    ckd_tokenize(tok, text, ids, 77, 0, &n, &truncated, &err);
    if (!ckd_tokenize_full(tok, text, &all, &n_all, &err)) {
        for (size_t i = 0; i < n_all; i++)
            if (all[i] < 0 || all[i] >= ckd_tokenizer_vocab_size(tok))
                __builtin_trap();
        free(all);
    }
    free(text);
    return 0;
}
