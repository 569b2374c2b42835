/* Debug dumps (ckd_train_opts.dump_steps): one safetensors file per step
 * with the loss, its terms, every gradient and every parameter after the
 * step, named like the reference files of tests/fixtures/kd, so that a run
 * can be compared tensor by tensor with PyTorch. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "clipkd/safetensors.h"
#include "train_internal.h"

/* Scalars as float64: the trainer sums the terms in double. */
static int add_scalar(ckd_st_writer *w, const char *name, double v, ckd_error *err)
{
    return ckd_st_writer_add_copy(w, name, CKD_DT_F64, 0, NULL, &v, err);
}

int train_dump_grads(train_run *t, const double *terms, double total, ckd_st_writer **out, ckd_error *err)
{
    char key[600], name[512];
    ckd_st_writer *w = ckd_st_writer_new();
    if (!w)
        return ckd_errorf(err, "out of memory");
    if (add_scalar(w, "loss", total, err))
        goto fail;
    for (int i = 0; i < t->n_losses; i++) {
        train_term_name(t, i, name, sizeof name);
        snprintf(key, sizeof key, "loss.%s", name);
        if (add_scalar(w, key, terms[i], err))
            goto fail;
    }
    /* Copied: clipping scales the gradients in place before the step. */
    for (int k = 0; k < t->n_params; k++) {
        const ckd_tensor *p = t->params[k];
        if (!p->grad)
            continue;
        train_param_key(t, k, 0, name, sizeof name);
        snprintf(key, sizeof key, "grad.%s", name);
        if (ckd_st_writer_add_copy(w, key, CKD_DT_F32, p->ndim, p->shape, p->grad, err))
            goto fail;
    }
    *out = w;
    return 0;
fail:
    ckd_st_writer_free(w);
    return ckd_error_prefix(err, "dump of step %lld", (long long)t->step);
}

int train_dump_save(train_run *t, ckd_st_writer *w, double lr, ckd_error *err)
{
    char key[600], name[512], path[TRAIN_PATH_MAX + 32], meta[64];
    int rc = -1;
    for (int k = 0; k < t->n_params; k++) {
        const ckd_tensor *p = t->params[k];
        train_param_key(t, k, 0, name, sizeof name);
        snprintf(key, sizeof key, "param.%s", name);
        if (ckd_st_writer_add(w, key, CKD_DT_F32, p->ndim, p->shape, p->data, err))
            goto out;
    }
    snprintf(meta, sizeof meta, "%lld", (long long)t->step);
    if (ckd_st_writer_set_metadata(w, "step", meta, err))
        goto out;
    snprintf(meta, sizeof meta, "%.17g", lr);
    if (ckd_st_writer_set_metadata(w, "lr", meta, err) || train_mkdirs(t->opts->dump_dir, err))
        goto out;
    snprintf(path, sizeof path, "%s/step-%04lld.safetensors", t->opts->dump_dir, (long long)t->step);
    rc = ckd_st_writer_save(w, path, err);
out:
    ckd_st_writer_free(w);
    return rc ? ckd_error_prefix(err, "dump of step %lld", (long long)t->step) : 0;
}
