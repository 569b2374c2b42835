/* A loss plugin instantiated: validated parameters, state, owned parameters. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipkd/loss.h"

struct ckd_loss {
    const ckd_plugin *plugin;
    ckd_params *params;
    void *state;
};

ckd_loss *ckd_loss_new(const ckd_plugin *p, const json_t *params, const char *where, const ckd_loss_dims *dims,
                       uint64_t seed, ckd_error *err)
{
    if (p->desc->kind != CKD_PLUGIN_LOSS) {
        ckd_errorf(err, "%s: plugin %s is a %s plugin, not a loss", where, p->desc->name,
                   ckd_plugin_kind_name(p->desc->kind));
        return NULL;
    }
    ckd_loss *l = calloc(1, sizeof *l);
    if (!l) {
        ckd_errorf(err, "%s: out of memory", where);
        return NULL;
    }
    l->plugin = p;
    l->params = ckd_params_for(p, params, where, err);
    if (!l->params) {
        free(l);
        return NULL;
    }
    ckd_rng rng;
    ckd_rng_seed(&rng, seed);
    ckd_error perr = {{0}};
    if (p->desc->loss->create(l->params, dims, &rng, &l->state, &perr)) {
        ckd_errorf(err, "%s: loss %s (%s): %s", where, p->desc->name, p->path,
                   perr.msg[0] ? perr.msg : "create() failed without a message");
        ckd_params_free(l->params);
        free(l);
        return NULL;
    }
    return l;
}

void ckd_loss_free(ckd_loss *l)
{
    if (!l)
        return;
    l->plugin->desc->loss->destroy(l->state);
    ckd_params_free(l->params);
    free(l);
}

const char *ckd_loss_name(const ckd_loss *l) { return l->plugin->desc->name; }
uint32_t ckd_loss_needs(const ckd_loss *l) { return l->plugin->desc->loss->needs; }
int ckd_loss_n_params(const ckd_loss *l) { return l->plugin->desc->loss->n_params(l->state); }
ckd_tensor *ckd_loss_param(const ckd_loss *l, int i) { return l->plugin->desc->loss->param(l->state, i); }

static const char *const need_names[] = {"s_img",    "s_txt",     "t_img",        "t_txt",
                                         "labels",   "class_txt", "s_logits",     "t_logits",
                                         "centroids", "s_img_masked", "s_img_noisy"};

const char *ckd_loss_needs_str(uint32_t needs, char *buf, size_t cap)
{
    size_t k = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < sizeof need_names / sizeof need_names[0] && k < cap; i++)
        if (needs & (1u << i))
            k += (size_t)snprintf(buf + k, cap - k, "%s%s", k ? ", " : "", need_names[i]);
    return buf;
}

static uint32_t batch_has(const ckd_loss_batch *b)
{
    const void *fields[] = {b->s_img,     b->s_txt,    b->t_img,    b->t_txt,     b->labels,       b->class_txt,
                            b->s_logits, b->t_logits, b->centroids, b->s_img_masked, b->s_img_noisy};
    uint32_t has = 0;
    for (unsigned i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (fields[i])
            has |= 1u << i;
    return has;
}

ckd_tensor *ckd_loss_forward(ckd_loss *l, ckd_ctx *c, const ckd_loss_batch *b)
{
    if (ckd_ctx_failed(c))
        return NULL;
    uint32_t missing = ckd_loss_needs(l) & ~batch_has(b);
    if (missing) {
        char buf[256];
        return ckd_ctx_fail(c, "loss %s needs %s, which this batch does not provide", ckd_loss_name(l),
                            ckd_loss_needs_str(missing, buf, sizeof buf));
    }
    ckd_tensor *y = l->plugin->desc->loss->forward(l->state, c, b);
    if (!y) {
        if (!ckd_ctx_failed(c))
            ckd_ctx_fail(c, "loss %s returned no result", ckd_loss_name(l));
        return NULL;
    }
    if (y->n != 1) {
        char s[64];
        return ckd_ctx_fail(c, "loss %s returned shape %s, not a scalar", ckd_loss_name(l),
                            ckd_shape_str(y, s, sizeof s));
    }
    return y;
}
