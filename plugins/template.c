/* template.c — a starting point for a clipkd loss plugin.
 *
 * Copy this file, rename the loss (MY_NAME below and the file), replace the
 * formula in my_forward(), adjust the schema, the needs bits and the owned
 * parameters. As it stands it is a working loss,
 *
 *     L = scale · mean((n(W s_img) − t_img)²)        n(x) = x / ‖x‖₂ per row
 *
 * with one owned parameter W [Dt, Ds] and one user parameter `scale`, so
 * that `clipkd gradcheck my_loss` passes before you change anything.
 *
 * Build (clipkd installed, clipkd.pc on PKG_CONFIG_PATH):
 *     cc -O2 -fPIC -shared -o my_loss.so template.c $(pkg-config --cflags --libs clipkd)
 *     CLIPKD_PLUGIN_PATH=. clipkd plugins show my_loss
 *     CLIPKD_PLUGIN_PATH=. clipkd gradcheck my_loss
 * The full walk-through is docs/writing-a-loss.md; the ABI reference is
 * clipkd-plugin(7).
 *
 * Rules every plugin follows: use only the installed headers (clipkd/plugin.h
 * includes everything a loss needs); never print, never exit, never abort —
 * report failures through ckd_error (create) or the context (forward); keep
 * every function but the entry point static, so that the .so exports exactly
 * one symbol. */
#include <math.h>
#include <stdlib.h>

#include <clipkd/plugin.h>

/* The name recipes, `clipkd plugins` and error messages use: a-z, 0-9, '_'
 * and '-' only, unique among the loss plugins on the search path (the first
 * directory of $CLIPKD_PLUGIN_PATH that has it wins; later ones are reported
 * as conflicts). */
#define MY_NAME "my_loss"

/* What forward() reads from ckd_loss_batch, as CKD_NEED_* bits. The host
 * refuses a recipe that cannot provide one of them (say, a loss that needs
 * t_img in a run without a teacher) before any compute, and
 * `clipkd gradcheck` differentiates with respect to exactly the student
 * fields named here (plus s_logit_scale, always). The bits are fixed per
 * plugin: declare everything forward() may read under any parameters. */
#define MY_NEEDS (CKD_NEED_S_IMG | CKD_NEED_T_IMG)

/* The parameters a recipe may give (`"params": {...}` of its losses[] entry,
 * or `--set KEY=VALUE` on the command line), as a JSON schema: an object with
 * "properties"; each has "type" (number, integer, string, boolean) and
 * optionally "default", "minimum", "exclusiveMinimum", "maximum", "enum",
 * "description". The host checks values against it (unknown keys are
 * errors, with a suggestion) and fills defaults before create() runs;
 * `clipkd plugins show` prints it. "{}" when the loss has no parameters. */
static const char my_schema[] =
    "{\"type\": \"object\", \"properties\": {"
    "  \"scale\": {\"type\": \"number\", \"default\": 1, \"exclusiveMinimum\": 0,"
    "    \"description\": \"multiplies the loss\"}"
    "}}";

/* Everything one instance of the loss keeps. A recipe that lists the loss
 * twice gets two instances, each with its own state and parameters. */
typedef struct my_state {
    double scale;
    ckd_tensor *w; /* owned: [Dt, Ds] */
} my_state;

/* destroy — frees the state and every owned parameter (ckd_param_free).
 * Called exactly once per successful create(), when the loss is no longer
 * used; never after a failed create(), so create() cleans up after itself.
 * Accepting NULL keeps that cleanup simple. */
static void my_destroy(void *state)
{
    my_state *s = state;
    if (!s)
        return;
    ckd_param_free(s->w);
    free(s);
}

/* create — makes one instance. Runs once per use of the loss, after the
 * parameters have been validated and completed from the schema, before any
 * forward(): when a run starts, and in `clipkd gradcheck` / `clipkd
 * loss-eval`.
 *   params  the validated parameters; read what you need here (ckd_params_number,
 *           _string, _bool, _has) rather than keeping the pointer.
 *   dims    the embedding widths: s_dim (Ds, student), t_dim (Dt, teacher; 0
 *           without a teacher), n_classes (K; 0 without labels or class prompts).
 *           Refuse sizes the loss cannot work with here, not in forward().
 *   rng     the only randomness to initialise owned parameters from, so that a
 *           run is reproducible from its seed.
 *   state   out: the instance, passed back to every other function.
 *   err     out: on failure, one line saying what is wrong (ckd_errorf returns
 *           -1, so `return ckd_errorf(err, ...)` reads well); the host adds the
 *           loss's name and file.
 * Returns 0, or -1 with everything it allocated freed and *state NULL.
 *
 * Owned parameters (projections, learnable scales) are made with
 * ckd_param_new(ndim, shape, name, err): persistent, zero-filled, with a
 * gradient the host trains with the student's optimiser, saves in checkpoints
 * and restores. Their names are the loss's public interface: unique within
 * the loss, stable across versions (checkpoints are read back by name), and
 * what `clipkd loss-eval` reads as input.<name> and writes as grad.<name>;
 * PyTorch's module naming ("proj_img.weight") makes comparisons easy. */
static int my_create(const ckd_params *params, const ckd_loss_dims *dims, ckd_rng *rng, void **state,
                     ckd_error *err)
{
    *state = NULL;
    if (dims->s_dim <= 0 || dims->t_dim <= 0)
        return ckd_errorf(err, MY_NAME ": needs student and teacher embeddings (widths %lld and %lld)",
                          (long long)dims->s_dim, (long long)dims->t_dim);
    my_state *s = calloc(1, sizeof *s);
    if (!s)
        return ckd_errorf(err, MY_NAME ": out of memory");
    s->scale = ckd_params_number(params, "scale", 1.0);
    s->w = ckd_param_new(2, (int64_t[]){dims->t_dim, dims->s_dim}, "proj_img.weight", err);
    if (!s->w) {
        my_destroy(s);
        return -1; /* ckd_param_new has set err */
    }
    /* nn.Linear's initialisation: uniform in ±1/√fan_in. */
    double bound = 1.0 / sqrt((double)dims->s_dim);
    for (int64_t i = 0; i < s->w->n; i++)
        s->w->data[i] = (float)((2.0 * ckd_rng_uniform(rng) - 1.0) * bound);
    *state = s;
    return 0;
}

/* n_params / param — the owned parameters, in a fixed order (the order the
 * host saves and reports them). param(i) for 0 ≤ i < n_params(); the
 * tensors stay owned by the plugin until destroy(). A loss that owns nothing
 * returns 0 (param is then never called, but must exist). */
static int my_n_params(void *state)
{
    (void)state;
    return 1;
}

static ckd_tensor *my_param(void *state, int i)
{
    my_state *s = state;
    return i == 0 ? s->w : NULL;
}

/* forward — the loss on one batch: a scalar tensor built from ops
 * (clipkd/ops.h) on the context c, so that ckd_backward() reaches the
 * student's embeddings and the owned parameters.
 *   - Batch fields the loss did not declare in MY_NEEDS may be NULL. Student
 *     tensors (s_*) carry gradients into the student; teacher tensors (t_*)
 *     are L2-normalised and never require gradients. s_img_n / s_txt_n are
 *     the host's normalised copies, shared by all losses of the recipe.
 *   - Never write into batch tensors or parameter data: other losses read the
 *     same batch, and the optimiser owns the parameters.
 *   - Everything made here lives in c's arena and is gone after the step
 *     (ckd_ctx_reset); keep nothing from one call to the next.
 *   - Ops return NULL after any failure and the context keeps the first
 *     message, so a formula needs no checks in between; return NULL (or the
 *     NULL that an op produced) on failure, ckd_ctx_fail(c, ...) to add a
 *     message of your own.
 *   - The result must have exactly one element. The host multiplies it by
 *     the recipe's weight and sums over the losses.
 *   - forward() must give the same value for the same inputs (gradcheck
 *     evaluates it many times, with gradients off except the first).
 * Called once per training step, and from `clipkd gradcheck` and
 * `clipkd loss-eval`. */
static ckd_tensor *my_forward(void *state, ckd_ctx *c, const ckd_loss_batch *b)
{
    my_state *s = state;
    /* The host has checked MY_NEEDS; this protects against callers that did not. */
    if (!b->s_img || !b->t_img)
        return ckd_ctx_fail(c, MY_NAME ": the batch has no s_img or t_img");
    ckd_tensor *proj = ckd_l2_normalize(c, ckd_linear(c, b->s_img, s->w, NULL), 1e-12f);
    return ckd_scale(c, ckd_mse(c, proj, b->t_img), (float)s->scale);
}

/* The vtable and the descriptor are constants: the host reads them for as
 * long as the .so is loaded. struct_size lets a newer host accept a plugin
 * built against older headers (fields appended later are then absent); the
 * host rejects a descriptor or vtable smaller than the first ABI 1 layout. */
static const ckd_loss_vtable my_vtable = {
    .struct_size = sizeof(ckd_loss_vtable),
    .needs = MY_NEEDS,
    .create = my_create,
    .destroy = my_destroy,
    .n_params = my_n_params,
    .param = my_param,
    .forward = my_forward,
};

static const ckd_plugin_descriptor my_descriptor = {
    .abi_major = CKD_PLUGIN_ABI_MAJOR, /* a different major is rejected at load time */
    .struct_size = sizeof(ckd_plugin_descriptor),
    .kind = CKD_PLUGIN_LOSS,
    .name = MY_NAME,
    .version = "0.1",                  /* the plugin's own version, shown by `plugins show` */
    .summary = "template: scaled MSE between projected student and teacher image embeddings",
    .params_schema = my_schema,
    .loss = &my_vtable,
    .model = NULL,
};

/* Defines and exports ckd_plugin_entry(), the one symbol the host looks up
 * after dlopen(). */
CKD_PLUGIN_DEFINE(my_descriptor)
