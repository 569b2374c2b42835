/* clipkd/gradcheck.h — finite-difference gradient checking.
 *
 * Works on any scalar function built from ops: the function is called once
 * with gradients on to get the analytic gradient of every input, then twice per
 * checked element in no-grad mode for the central difference
 * (f(x + h) − f(x − h)) / 2h. An element passes when
 *     |analytic − numeric| ≤ atol + rtol · max(|analytic|, |numeric|).
 * The report names the worst element (largest error relative to its
 * tolerance), so a failure says where to look.
 *
 * Inputs must outlive the function's calls: use parameters (ckd_param_new) —
 * arena tensors vanish when the context is reset between evaluations.
 */
#ifndef CLIPKD_GRADCHECK_H
#define CLIPKD_GRADCHECK_H

#include <stdint.h>

#include "clipkd/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Builds the scalar to check from the inputs; NULL with the context's error on failure. */
typedef ckd_tensor *(*ckd_scalar_fn)(ckd_ctx *c, void *user);

typedef struct ckd_gradcheck_opts {
    double step;          /* h; default 1e-2 (float32 data) */
    double atol, rtol;    /* defaults 1e-3, 1e-2 */
    int64_t max_elems;    /* per input; 0 = all; otherwise an evenly spaced subset */
} ckd_gradcheck_opts;

typedef struct ckd_gradcheck_report {
    int ok;
    int64_t checked;          /* elements compared */
    int64_t failed;           /* elements out of tolerance */
    int worst_input;          /* index into inputs */
    char worst_name[64];      /* its name, if it has one ("" otherwise) */
    int64_t worst_index;      /* flat element index */
    double analytic, numeric; /* at the worst element */
    double abs_err, rel_err;
    double value;             /* f at the unperturbed inputs */
} ckd_gradcheck_report;

void ckd_gradcheck_default_opts(ckd_gradcheck_opts *o);

/* Returns 0 when every checked element passes, 1 when some fail (see the
 * report), -1 when the function itself fails (err set). */
int ckd_gradcheck(ckd_ctx *c, ckd_scalar_fn fn, void *user, ckd_tensor **inputs, int n_inputs,
                  const ckd_gradcheck_opts *opts, ckd_gradcheck_report *rep, ckd_error *err);

/* "worst: input 1 (w) [17]: analytic 0.1234 numeric 0.1240 (abs 6e-4, rel 5e-3); 3 of 120 failed" */
const char *ckd_gradcheck_describe(const ckd_gradcheck_report *rep, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
