/* A minimal, correct loss plugin for the registry tests: mean(s_img²)·w, with
 * one owned scalar w initialised to `scale`. Built twice: as "test_good" and,
 * with -DTEST_DUPLICATE, as a second file claiming the same name. */
#include <stdlib.h>

#include "clipkd/plugin.h"

typedef struct state {
    ckd_tensor *w;
} state;

static int create(const ckd_params *p, const ckd_loss_dims *d, ckd_rng *rng, void **out, ckd_error *err)
{
    (void)d;
    (void)rng;
    state *s = calloc(1, sizeof *s);
    if (!s)
        return ckd_errorf(err, "out of memory");
    s->w = ckd_param_new(0, NULL, "w", err);
    if (!s->w) {
        free(s);
        return -1;
    }
    s->w->data[0] = (float)ckd_params_number(p, "scale", 1.0);
    *out = s;
    return 0;
}

static void destroy(void *st)
{
    state *s = st;
    ckd_param_free(s->w);
    free(s);
}

static int n_params(void *st) { return ((state *)st)->w ? 1 : 0; }
static ckd_tensor *param(void *st, int i) { return i == 0 ? ((state *)st)->w : NULL; }

static ckd_tensor *forward(void *st, ckd_ctx *c, const ckd_loss_batch *b)
{
    state *s = st;
    return ckd_mul(c, ckd_mean_all(c, ckd_mul(c, b->s_img, b->s_img)), s->w);
}

static const ckd_loss_vtable vt = {sizeof vt, CKD_NEED_S_IMG, create, destroy, n_params, param, forward};
static const ckd_plugin_descriptor desc = {
    CKD_PLUGIN_ABI_MAJOR, sizeof desc, CKD_PLUGIN_LOSS,
#ifdef TEST_DUPLICATE
    "test_good", "2.0", "a second plugin claiming the name test_good",
#else
    "test_good", "1.0", "test plugin: mean of squared student image embeddings",
#endif
    "{\"type\":\"object\",\"properties\":{\"scale\":{\"type\":\"number\",\"default\":1,\"minimum\":0}}}", &vt, NULL};
CKD_PLUGIN_DEFINE(desc)
