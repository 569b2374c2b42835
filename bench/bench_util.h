/* bench/bench_util.h — what every benchmark times with: a monotonic clock
 * and the median of repeated runs after a warm-up. Header-only. */
#ifndef CKD_BENCH_UTIL_H
#define CKD_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

static inline double bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* t[0] is the warm-up; the median of t[1..reps] (sorted in place). */
static inline double bench_median_after_warmup(double *t, int reps)
{
    qsort(t + 1, (size_t)reps, sizeof *t, bench_cmp_double);
    return t[1 + reps / 2];
}

#endif
