/* AdamW with torch.optim.AdamW's arithmetic (see clipkd/optim.h). */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clipkd/blas.h"
#include "clipkd/optim.h"

typedef struct adamw_slot {
    ckd_tensor *p;
    double wd;
    int64_t steps;
    float *m, *v;
} adamw_slot;

struct ckd_adamw {
    ckd_adamw_opts o;
    adamw_slot *s;
    int n;
};

void ckd_adamw_default_opts(ckd_adamw_opts *o)
{
    o->lr = 1e-3;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
}

ckd_adamw *ckd_adamw_new(ckd_tensor *const *params, const double *weight_decay, int n, const ckd_adamw_opts *opts,
                         ckd_error *err)
{
    if (!(opts->lr >= 0) || !(opts->beta1 >= 0 && opts->beta1 < 1) || !(opts->beta2 >= 0 && opts->beta2 < 1) ||
        !(opts->eps > 0)) {
        ckd_errorf(err, "AdamW: lr %g, betas (%g, %g), eps %g: expected lr >= 0, betas in [0, 1), eps > 0", opts->lr,
                   opts->beta1, opts->beta2, opts->eps);
        return NULL;
    }
    ckd_adamw *o = calloc(1, sizeof *o);
    if (o)
        o->s = calloc((size_t)(n > 0 ? n : 1), sizeof *o->s);
    if (!o || !o->s)
        goto oom;
    o->o = *opts;
    o->n = n;
    for (int i = 0; i < n; i++) {
        adamw_slot *s = &o->s[i];
        s->p = params[i];
        s->wd = weight_decay ? weight_decay[i] : 0.0;
        s->m = calloc((size_t)(s->p->n ? s->p->n : 1), sizeof *s->m);
        s->v = calloc((size_t)(s->p->n ? s->p->n : 1), sizeof *s->v);
        if (!s->m || !s->v)
            goto oom;
    }
    return o;
oom:
    ckd_adamw_free(o);
    ckd_errorf(err, "AdamW: out of memory for the moments of %d parameters", n);
    return NULL;
}

void ckd_adamw_free(ckd_adamw *o)
{
    if (!o)
        return;
    for (int i = 0; o->s && i < o->n; i++) {
        free(o->s[i].m);
        free(o->s[i].v);
    }
    free(o->s);
    free(o);
}

void ckd_adamw_set_lr(ckd_adamw *o, double lr) { o->o.lr = lr; }
double ckd_adamw_lr(const ckd_adamw *o) { return o->o.lr; }
int64_t ckd_adamw_param_steps(const ckd_adamw *o, int i) { return o->s[i].steps; }
float *ckd_adamw_exp_avg(ckd_adamw *o, int i) { return o->s[i].m; }
float *ckd_adamw_exp_avg_sq(ckd_adamw *o, int i) { return o->s[i].v; }
void ckd_adamw_set_param_steps(ckd_adamw *o, int i, int64_t steps) { o->s[i].steps = steps; }

static void step_one(const ckd_adamw_opts *op, adamw_slot *s)
{
    ckd_tensor *p = s->p;
    if (!p->grad)
        return;
    s->steps++;
    double lr = op->lr, b1 = op->beta1, b2 = op->beta2, eps = op->eps;
    double decay = 1.0 - lr * s->wd;
    double step_size = lr / (1.0 - pow(b1, (double)s->steps));
    double bc2_sqrt = sqrt(1.0 - pow(b2, (double)s->steps));
    float *x = p->data, *m = s->m, *v = s->v;
    const float *g = p->grad;
#pragma omp parallel for schedule(guided) num_threads(ckd_get_threads()) if (p->n > 65536)
    for (int64_t i = 0; i < p->n; i++) {
        double gi = g[i];
        double mi = m[i] + (gi - m[i]) * (1.0 - b1); /* torch: exp_avg.lerp_(grad, 1 - beta1) */
        double vi = v[i] * b2 + (1.0 - b2) * gi * gi;
        double xi = x[i] * decay;
        x[i] = (float)(xi - step_size * mi / (sqrt(vi) / bc2_sqrt + eps));
        m[i] = (float)mi;
        v[i] = (float)vi;
    }
}

void ckd_adamw_step(ckd_adamw *o)
{
    for (int i = 0; i < o->n; i++)
        step_one(&o->o, &o->s[i]);
}

int ckd_adamw_default_decay(const ckd_tensor *p)
{
    return p->ndim >= 2 && !(p->name && strstr(p->name, "embedding"));
}
