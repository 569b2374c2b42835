/* Fuzz harnesses: one per parser, each a FUZZ_TARGET(name) body that feeds
 * one input to the parser and checks only that it returns (an error is a
 * fine answer; a crash, a hang or a memory blow-up is not).
 *
 * The same file builds two ways:
 * - with libFuzzer (./configure --enable-fuzzing): FUZZ_TARGET becomes
 *   LLVMFuzzerTestOneInput and the file is one fuzzer, tests/fuzz/fuzz-NAME;
 * - with FUZZ_REPLAY defined (every build): FUZZ_TARGET defines
 *   fuzz_target_NAME and registers it, and tests/fuzz/replay runs any target
 *   on files (the corpus and the regressions in make check) with gcc alone. */
#ifndef CKD_FUZZ_H
#define CKD_FUZZ_H

#include <stddef.h>
#include <stdint.h>

typedef int (*fuzz_fn)(const uint8_t *data, size_t size);

#ifdef FUZZ_REPLAY
void fuzz_register(const char *name, fuzz_fn fn);
#define FUZZ_TARGET(name)                                                                                \
    static int fuzz_target_##name(const uint8_t *data, size_t size);                                    \
    __attribute__((constructor)) static void fuzz_register_##name(void)                                  \
    {                                                                                                    \
        fuzz_register(#name, fuzz_target_##name);                                                        \
    }                                                                                                    \
    static int fuzz_target_##name(const uint8_t *data, size_t size)
#else
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
#define FUZZ_TARGET(name) int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
#endif

/* Writes the input to a file named `name` in this process's scratch folder
 * (made once, removed at exit) and returns its path; NULL when the file
 * cannot be written (the harness then returns). The parsers read files, as
 * they do in use: this keeps their mmap and stat paths under test. The path
 * stays valid until the fourth call after this one. */
const char *fuzz_file(const char *name, const void *data, size_t size);

/* The scratch folder itself. */
const char *fuzz_dir(void);

/* Splits the input at the first occurrence of sep: part 0 before it, part 1
 * after it (empty when sep does not occur). Lets one input carry two files
 * (a recipe and the recipe it extends; vocab.json and merges.txt). */
void fuzz_split(const uint8_t *data, size_t size, const char *sep, const uint8_t **p1, size_t *n1,
                const uint8_t **p2, size_t *n2);

/* A NUL-terminated copy of the input (free it); NULL when out of memory. */
char *fuzz_strndup(const uint8_t *data, size_t size);

/* gzip-compresses the input into a file (for the parsers of .gz inputs,
 * whose compressed bytes a mutator would rarely get past the checksum). */
const char *fuzz_file_gz(const char *name, const void *data, size_t size);

#endif
