/* Shared helpers for the tensor-core tests: deterministic data and a
 * "weighted sum" scalar so that every output element's gradient is checked. */
#ifndef CKD_TEST_OPS_UTIL_H
#define CKD_TEST_OPS_UTIL_H

#include <math.h>
#include <stdint.h>

#include <criterion/criterion.h>

#include "clipkd/clipkd.h"

/* Deterministic pseudo-random values in [-scale, scale). */
static inline void fill(float *x, int64_t n, uint64_t seed, float scale)
{
    ckd_rng r;
    ckd_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)((ckd_rng_uniform(&r) * 2.0 - 1.0) * scale);
}

static inline ckd_tensor *rparam(int ndim, const int64_t *shape, uint64_t seed, float scale)
{
    ckd_tensor *p = ckd_param_new(ndim, shape, NULL, NULL);
    cr_assert_not_null(p);
    fill(p->data, p->n, seed, scale);
    return p;
}

/* Σ_i out_i · w_i with fixed weights w: a scalar whose gradient reaches every
 * output element with a different factor. */
static inline ckd_tensor *weighted_sum(ckd_ctx *c, ckd_tensor *out)
{
    if (!out)
        return NULL;
    ckd_tensor *w = ckd_tensor_new(c, out->ndim, out->shape);
    if (!w)
        return NULL;
    for (int64_t i = 0; i < w->n; i++)
        w->data[i] = (float)sin(0.37 * (double)i + 0.1);
    return ckd_sum_all(c, ckd_mul(c, out, w));
}

static inline void assert_close(const float *got, const double *want, int64_t n, double tol, const char *what)
{
    for (int64_t i = 0; i < n; i++)
        cr_assert(fabs(got[i] - want[i]) <= tol * (1.0 + fabs(want[i])), "%s: element %lld: got %.8g, want %.8g",
                  what, (long long)i, (double)got[i], want[i]);
}

#endif
