/* bench-tokenizer.c — tokenizer throughput on caption-like text.
 *
 * Usage: bench-tokenizer [VOCAB_DIR]. The vocabulary is looked up in
 * VOCAB_DIR, else $CLIPKD_DATA_DIR, else the installed data directory, else
 * models/clip in the source tree (so that `make bench` works uninstalled).
 * Tokenizes a fixed, generated corpus of captions repeatedly for about one
 * second and prints "tokenizer: N tokens/s".
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clipkd/tokenizer.h"

#ifndef CKD_SRCDIR
#define CKD_SRCDIR "."
#endif
#ifndef CKD_DATA_DIR
#define CKD_DATA_DIR "."
#endif

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static ckd_tokenizer *load_from(const char *dir, ckd_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, CKD_TOKENIZER_BPE_FILE);
    return ckd_tokenizer_load_bpe_gz(path, err);
}

int main(int argc, char **argv)
{
    ckd_error err = {{0}};
    ckd_tokenizer *tok = NULL;
    if (argc > 1) {
        tok = load_from(argv[1], &err);
    } else {
        const char *env = getenv("CLIPKD_DATA_DIR");
        const char *dirs[3] = {env && *env ? env : NULL, CKD_DATA_DIR, CKD_SRCDIR "/models/clip"};
        for (int i = 0; i < 3 && !tok; i++)
            if (dirs[i])
                tok = load_from(dirs[i], &err);
    }
    if (!tok) {
        fprintf(stderr, "bench-tokenizer: %s\n", err.msg);
        return 1;
    }

    /* A deterministic corpus in the style of the fixture: class-name prompt
     * templates and random word lists, with a little non-ASCII text. */
    static const char *templates[] = {"a photo of a %s.", "a blurry photo of a %s.",
                                      "a black and white photo of the %s.",
                                      "itap of a %s.", "a close-up photo of a %s!",
                                      "A Pixelated Photo Of The %s, café naïve 日本語"};
    static const char *words[] = {"T-shirt/top", "trouser", "pullover", "dress", "coat",
                                  "sandal", "shirt", "sneaker", "bag", "ankle boot", "dog",
                                  "running", "two", "red", "42", "don't"};
    enum { N_TEXTS = 256 };
    char *texts[N_TEXTS];
    unsigned rng = 12345;
    for (int i = 0; i < N_TEXTS; i++) {
        char buf[512], word[256] = "";
        int n_words = 1 + (int)((rng = rng * 1103515245u + 12345u) >> 16) % 6;
        for (int w = 0; w < n_words; w++) {
            rng = rng * 1103515245u + 12345u;
            if (w)
                strcat(word, " ");
            strcat(word, words[(rng >> 16) % (sizeof words / sizeof words[0])]);
        }
        rng = rng * 1103515245u + 12345u;
        snprintf(buf, sizeof buf, templates[(rng >> 16) % (sizeof templates / sizeof templates[0])],
                 word);
        texts[i] = malloc(strlen(buf) + 1);
        if (!texts[i])
            return 1;
        strcpy(texts[i], buf);
    }

    int32_t ids[CKD_TOKENIZER_CONTEXT_LEN];
    long long tokens = 0, captions = 0;
    double t0 = now(), elapsed;
    do {
        for (int i = 0; i < N_TEXTS; i++) {
            int n;
            if (ckd_tokenize(tok, texts[i], ids, CKD_TOKENIZER_CONTEXT_LEN, 0, &n, NULL, &err)) {
                fprintf(stderr, "bench-tokenizer: %s\n", err.msg);
                return 1;
            }
            tokens += n - 2; /* not counting start and end */
        }
        captions += N_TEXTS;
        elapsed = now() - t0;
    } while (elapsed < 1.0);
    printf("tokenizer: %.0f tokens/s (%.0f captions/s)\n", (double)tokens / elapsed,
           (double)captions / elapsed);
    for (int i = 0; i < N_TEXTS; i++)
        free(texts[i]);
    ckd_tokenizer_free(tok);
    return 0;
}
