/* Deliberately broken plugins for the registry tests, one per BAD_* macro. */
#include <string.h>

#include "clipkd/plugin.h"

static int create(const ckd_params *p, const ckd_loss_dims *d, ckd_rng *rng, void **out, ckd_error *err)
{
    (void)p;
    (void)d;
    (void)rng;
    (void)out;
#ifdef BAD_CREATE
    return ckd_errorf(err, "this plugin always refuses to start");
#else
    *out = NULL;
    (void)err;
    return 0;
#endif
}
static void destroy(void *st) { (void)st; }
static int n_params(void *st) { (void)st; return 0; }
static ckd_tensor *param(void *st, int i) { (void)st; (void)i; return NULL; }
static ckd_tensor *forward(void *st, ckd_ctx *c, const ckd_loss_batch *b) { (void)st; return ckd_mean_all(c, b->s_img); }

static const ckd_loss_vtable vt = {sizeof vt, CKD_NEED_S_IMG, create, destroy, n_params, param, forward};

#if defined(BAD_ABI)
static const ckd_plugin_descriptor desc = {CKD_PLUGIN_ABI_MAJOR + 1, sizeof desc, CKD_PLUGIN_LOSS, "test_bad_abi",
                                           "1", "wrong ABI", NULL, &vt, NULL};
CKD_PLUGIN_DEFINE(desc)
#elif defined(BAD_SHORT)
/* A descriptor that claims to be smaller than any this host accepts. */
static const ckd_plugin_descriptor desc = {CKD_PLUGIN_ABI_MAJOR, 12, CKD_PLUGIN_LOSS, "test_short", "1", "short",
                                           NULL, &vt, NULL};
CKD_PLUGIN_DEFINE(desc)
#elif defined(BAD_NO_ENTRY)
/* Exports something, but not the entry point. */
CKD_PLUGIN_EXPORT int not_the_entry(void);
CKD_PLUGIN_EXPORT int not_the_entry(void) { return 42; }
#elif defined(BAD_SCHEMA)
static const ckd_plugin_descriptor desc = {CKD_PLUGIN_ABI_MAJOR, sizeof desc, CKD_PLUGIN_LOSS, "test_bad_schema", "1",
                                           "schema is not JSON", "{\"type\": ", &vt, NULL};
CKD_PLUGIN_DEFINE(desc)
#elif defined(BAD_CREATE)
static const ckd_plugin_descriptor desc = {CKD_PLUGIN_ABI_MAJOR, sizeof desc, CKD_PLUGIN_LOSS, "test_create_fails",
                                           "1", "create() fails", NULL, &vt, NULL};
CKD_PLUGIN_DEFINE(desc)
#endif
