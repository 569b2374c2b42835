/* A teacher-embedding cache entry, as a run over 4 samples of width 8 checks
 * it before use (key "k", checksum, shapes, caption offsets), and as
 * `clipkd cache verify` and `clipkd cache list` read it inside a cache
 * folder. An entry that passes is read end to end. */
#include "fuzz.h"

#include <stdio.h>
#include <sys/stat.h>

#include "clipkd/fetch.h"
#include "train/tcache_entry.h"

static int on_entry(void *user, const ckd_cache_entry *e)
{
    (void)user, (void)e;
    return 0;
}

static int on_verify(void *user, const ckd_cache_entry *e, int ok, const char *problem, int removed)
{
    (void)user, (void)e, (void)ok, (void)problem, (void)removed;
    return 0;
}

FUZZ_TARGET(cache_entry)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/cache", fuzz_dir());
    mkdir(dir, 0700);
    snprintf(dir, sizeof dir, "%s/cache/teacher-embeddings", fuzz_dir());
    mkdir(dir, 0700);
    const char *path = fuzz_file("cache/teacher-embeddings/"
                                 "0000000000000000000000000000000000000000000000000000000000000000.safetensors",
                                 data, size);
    ckd_error err;
    ckd_safetensors *st = path ? ckd_st_open(path, &err) : NULL;
    if (st) {
        tcache_arrays a;
        volatile float sum = 0;
        int ok = !tcache_entry_check(st, "k", 4, 1, 8, 1, 0, &a, &err);
        for (int64_t i = 0; ok && i < a.n; i++)
            for (int64_t j = a.off[i]; j < a.off[i + 1]; j++)
                sum += a.img[i * a.dim] * a.txt[j * a.dim] + (float)a.valid[i] + (float)a.labels[i];
        for (int64_t i = 0; ok && a.logits && i < a.n * a.n_logits; i++) /* [n, n_logits] when present */
            sum += a.logits[i];
        ckd_st_close(st);
    }
    snprintf(dir, sizeof dir, "%s/cache", fuzz_dir());
    ckd_cache_list(dir, on_entry, NULL, &err);
    size_t n_bad = 0;
    ckd_cache_verify(dir, 0, on_verify, NULL, &n_bad, &err);
    return 0;
}
