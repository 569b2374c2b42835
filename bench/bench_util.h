/* bench/bench_util.h — what the benchmarks share: a monotonic clock, the
 * median of repeated runs after a warm-up, and an optimiser over a model.
 * Header-only. */
#ifndef CKD_BENCH_UTIL_H
#define CKD_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "clipkd/model.h"
#include "clipkd/optim.h"

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

/* AdamW over every parameter of m (weight decay 0.1 by the default rule),
 * as training steps use it; *params (n of them) is the caller's to free,
 * after the optimiser. Exits with a message when it cannot be made. */
static inline ckd_adamw *bench_adamw(ckd_model *m, const ckd_adamw_opts *o, ckd_tensor ***params, int *n)
{
    *n = ckd_model_n_params(m);
    ckd_tensor **ps = malloc((size_t)*n * sizeof *ps);
    double *wd = malloc((size_t)*n * sizeof *wd);
    ckd_error err = {{0}};
    ckd_adamw *opt = NULL;
    if (ps && wd) {
        for (int i = 0; i < *n; i++) {
            ps[i] = ckd_model_param(m, i);
            wd[i] = ckd_adamw_default_decay(ps[i]) ? 0.1 : 0.0;
        }
        opt = ckd_adamw_new(ps, wd, *n, o, &err);
    }
    free(wd);
    if (!opt) {
        fprintf(stderr, "bench: adamw: %s\n", err.msg[0] ? err.msg : "out of memory");
        exit(1);
    }
    *params = ps;
    return opt;
}

#endif
