/* Loading a tokenizer's vocabulary: Hugging Face's vocab.json + merges.txt
 * (first byte even; the rest split at "\n#merges\n"), or OpenAI's
 * bpe_simple_vocab .txt.gz (first byte odd; the rest gzip'd by the harness so
 * the mutator works on the merges text). A tokenizer that loads then
 * tokenizes a short caption. */
#include "fuzz.h"

#include <stdlib.h>

#include "clipkd/tokenizer.h"

FUZZ_TARGET(tokenizer_vocab)
{
    if (size < 1)
        return 0;
    ckd_error err;
    ckd_tokenizer *tok = NULL;
    if (data[0] & 1) {
        const char *path = fuzz_file_gz("bpe.txt.gz", data + 1, size - 1);
        tok = path ? ckd_tokenizer_load_bpe_gz(path, &err) : NULL;
    } else {
        const uint8_t *v, *m;
        size_t nv, nm;
        fuzz_split(data + 1, size - 1, "\n#merges\n", &v, &nv, &m, &nm);
        const char *vocab = fuzz_file("vocab.json", v, nv), *merges = fuzz_file("merges.txt", m, nm);
        tok = vocab && merges ? ckd_tokenizer_load_hf(vocab, merges, &err) : NULL;
    }
    if (!tok)
        return 0;
    int32_t *ids = NULL;
    size_t n = 0;
    if (!ckd_tokenize_full(tok, "a photo of a T-shirt, 2 sleeves.", &ids, &n, &err))
        free(ids);
    ckd_tokenizer_free(tok);
    return 0;
}
