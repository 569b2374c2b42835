/* Central-difference gradient checks of scalar functions built from ops. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipkd/gradcheck.h"

void ckd_gradcheck_default_opts(ckd_gradcheck_opts *o)
{
    o->step = 1e-2;
    o->atol = 1e-3;
    o->rtol = 1e-2;
    o->max_elems = 0;
}

/* f at the current input values, without recording a tape. */
static int eval(ckd_ctx *c, ckd_scalar_fn fn, void *user, double *out, ckd_error *err)
{
    ckd_ctx_reset(c);
    int was = ckd_ctx_set_grad(c, 0);
    ckd_tensor *y = fn(c, user);
    ckd_ctx_set_grad(c, was);
    if (!y || ckd_ctx_failed(c))
        return ckd_errorf(err, "gradcheck: the function failed: %s", ckd_ctx_error(c));
    if (y->n != 1)
        return ckd_errorf(err, "gradcheck: the function must return a scalar, got %lld elements", (long long)y->n);
    *out = y->data[0];
    return 0;
}

int ckd_gradcheck(ckd_ctx *c, ckd_scalar_fn fn, void *user, ckd_tensor **inputs, int n_inputs,
                  const ckd_gradcheck_opts *opts, ckd_gradcheck_report *rep, ckd_error *err)
{
    ckd_gradcheck_opts o;
    if (opts)
        o = *opts;
    else
        ckd_gradcheck_default_opts(&o);
    memset(rep, 0, sizeof *rep);
    rep->ok = 1;
    rep->worst_input = -1;

    /* Analytic gradients: one forward with the tape, one backward. */
    for (int i = 0; i < n_inputs; i++) {
        if (!inputs[i]->is_param)
            return ckd_errorf(err, "gradcheck: input %d is not a parameter (arena tensors do not survive the "
                                   "re-evaluations; create inputs with ckd_param_new)", i);
        ckd_param_zero_grad(inputs[i]);
    }
    ckd_ctx_reset(c);
    int was = ckd_ctx_set_grad(c, 1);
    ckd_tensor *y = fn(c, user);
    if (!y || ckd_ctx_failed(c)) {
        ckd_ctx_set_grad(c, was);
        return ckd_errorf(err, "gradcheck: the function failed: %s", ckd_ctx_error(c));
    }
    rep->value = y->data[0];
    int rc = ckd_backward(c, y, err);
    ckd_ctx_set_grad(c, was);
    if (rc)
        return -1;
    int64_t total = 0;
    for (int i = 0; i < n_inputs; i++)
        total += inputs[i]->n;
    float *analytic = malloc((size_t)(total ? total : 1) * sizeof(float));
    if (!analytic)
        return ckd_errorf(err, "gradcheck: out of memory");
    for (int i = 0, off = 0; i < n_inputs; off += (int)inputs[i]->n, i++)
        memcpy(analytic + off, inputs[i]->grad, (size_t)inputs[i]->n * sizeof(float));

    double worst_ratio = -1;
    int64_t off = 0;
    for (int i = 0; i < n_inputs; off += inputs[i]->n, i++) {
        ckd_tensor *x = inputs[i];
        int64_t stride = (o.max_elems > 0 && x->n > o.max_elems) ? x->n / o.max_elems : 1;
        for (int64_t e = 0; e < x->n; e += stride) {
            float keep = x->data[e];
            double fp, fm;
            x->data[e] = keep + (float)o.step;
            double hp = (double)x->data[e] - keep; /* the step float32 really took */
            int bad = eval(c, fn, user, &fp, err);
            x->data[e] = keep - (float)o.step;
            double hm = keep - (double)x->data[e];
            bad = bad || eval(c, fn, user, &fm, err);
            x->data[e] = keep;
            if (bad) {
                free(analytic);
                return -1;
            }
            double num = (fp - fm) / (hp + hm), an = analytic[off + e];
            double abs_err = fabs(an - num), scale = fmax(fabs(an), fabs(num));
            double tol = o.atol + o.rtol * scale;
            rep->checked++;
            /* "passes when abs_err <= tol": a NaN (say, a gradient read from
             * a buffer nobody wrote) fails, and is the worst element */
            double ratio = abs_err <= tol ? abs_err / tol : isnan(abs_err) ? INFINITY : abs_err / tol;
            if (!(abs_err <= tol)) {
                rep->failed++;
                rep->ok = 0;
            }
            if (ratio > worst_ratio) {
                worst_ratio = ratio;
                rep->worst_input = i;
                snprintf(rep->worst_name, sizeof rep->worst_name, "%s", x->name ? x->name : "");
                rep->worst_index = e;
                rep->analytic = an;
                rep->numeric = num;
                rep->abs_err = abs_err;
                rep->rel_err = scale > 0 ? abs_err / scale : 0;
            }
        }
    }
    free(analytic);
    ckd_ctx_reset(c);
    return rep->ok ? 0 : 1;
}

const char *ckd_gradcheck_describe(const ckd_gradcheck_report *rep, char *buf, size_t cap)
{
    if (rep->worst_input < 0) {
        snprintf(buf, cap, "nothing checked");
        return buf;
    }
    snprintf(buf, cap,
             "worst: input %d%s%s%s [%lld]: analytic %.6g numeric %.6g (abs %.2g, rel %.2g); %lld of %lld out of "
             "tolerance",
             rep->worst_input, rep->worst_name[0] ? " (" : "", rep->worst_name, rep->worst_name[0] ? ")" : "", (long long)rep->worst_index, rep->analytic, rep->numeric, rep->abs_err,
             rep->rel_err, (long long)rep->failed, (long long)rep->checked);
    return buf;
}
