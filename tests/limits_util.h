/* For the tests of hostile input: a cap on the test process's address space,
 * so that a parser that allocates what a header merely claims fails (and
 * the test sees "out of memory" instead of the expected message), where
 * without the cap Linux would hand out the untouched memory lazily. Each
 * Criterion test runs in its own process, so the cap ends with the test. */
#ifndef CKD_TEST_LIMITS_UTIL_H
#define CKD_TEST_LIMITS_UTIL_H

#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define CKD_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CKD_TEST_ASAN 1
#endif
#endif

/* Caps the address space at its present size plus extra bytes. Returns 0,
 * or -1 where no cap can be set (AddressSanitizer reserves terabytes of
 * address space; the check is then skipped, the rest of the test runs). */
static inline int cap_address_space(size_t extra)
{
#ifdef CKD_TEST_ASAN
    (void)extra;
    return -1;
#else
    unsigned long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    int ok = fscanf(f, "%lu", &pages) == 1;
    fclose(f);
    if (!ok)
        return -1;
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl))
        return -1;
    rlim_t want = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (rlim_t)extra;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
        want = rl.rlim_max;
    rl.rlim_cur = want;
    return setrlimit(RLIMIT_AS, &rl) ? -1 : 0;
#endif
}

#endif
