/* cosine — an example loss plugin, built outside clipkd's source tree.
 *
 *   L = mean_i [1 − cos(P_img s_img_i, t_img_i)]
 *     + weight_txt · mean_i [1 − cos(P_txt s_txt_i, t_txt_i)]
 *
 * cos(a, b) = a·b / (‖a‖ ‖b‖). P_img and P_txt are linear maps (no bias)
 * from the student width Ds to the teacher width Dt that the loss owns and
 * the host trains with the student; they exist only when Ds ≠ Dt (with equal
 * widths the embeddings are compared directly). With weight_txt = 0 the text
 * term and P_txt are left out.
 *
 * The PyTorch equivalent, which `clipkd loss-eval` reproduces:
 *
 *   def cosine(s_img, s_txt, t_img, t_txt, P_img, P_txt, weight_txt=1.0):
 *       img = 1 - F.cosine_similarity(s_img @ P_img.T, t_img, dim=1).mean()
 *       txt = 1 - F.cosine_similarity(s_txt @ P_txt.T, t_txt, dim=1).mean()
 *       return img + weight_txt * txt
 *
 * It uses nothing but the installed headers: build it with
 *   cc -fPIC -shared $(pkg-config --cflags clipkd) -o cosine.so cosine.c $(pkg-config --libs clipkd)
 * (see Makefile and docs/writing-a-loss.md). */
#include <math.h>
#include <stdlib.h>

#include <clipkd/plugin.h>

/* What forward() reads. The host checks that a recipe can provide all of
 * it before any compute, so these bits are fixed per plugin: the text
 * fields are declared even though weight_txt = 0 does not read them. */
#define COSINE_NEEDS (CKD_NEED_S_IMG | CKD_NEED_S_TXT | CKD_NEED_T_IMG | CKD_NEED_T_TXT)

/* The parameter schema: the host checks a recipe's (or --set's) values
 * against it and fills in the default before create() runs. */
static const char cosine_schema[] =
    "{\"type\": \"object\", \"properties\": {"
    "  \"weight_txt\": {\"type\": \"number\", \"default\": 1, \"minimum\": 0, \"maximum\": 100,"
    "    \"description\": \"weight of the text term (0: image embeddings only)\"}"
    "}}";

typedef struct cosine_state {
    double weight_txt;
    ckd_tensor *params[2]; /* proj_img.weight, then proj_txt.weight: the order n_params/param report */
    int n_params;
} cosine_state;

static void cosine_destroy(void *state)
{
    cosine_state *s = state;
    if (!s)
        return;
    for (int i = 0; i < s->n_params; i++)
        ckd_param_free(s->params[i]);
    free(s);
}

/* A [Dt, Ds] map named `name`, initialised as PyTorch's nn.Linear: uniform
 * in ±1/√Ds. The name is what checkpoints and `clipkd loss-eval` use. */
static int add_projection(cosine_state *s, const char *name, const ckd_loss_dims *d, ckd_rng *rng,
                          ckd_error *err)
{
    ckd_tensor *p = ckd_param_new(2, (int64_t[]){d->t_dim, d->s_dim}, name, err);
    if (!p)
        return -1;
    s->params[s->n_params++] = p;
    double bound = 1.0 / sqrt((double)d->s_dim);
    for (int64_t i = 0; i < p->n; i++)
        p->data[i] = (float)((2.0 * ckd_rng_uniform(rng) - 1.0) * bound);
    return 0;
}

static int cosine_create(const ckd_params *params, const ckd_loss_dims *dims, ckd_rng *rng, void **out,
                         ckd_error *err)
{
    *out = NULL;
    if (dims->s_dim <= 0 || dims->t_dim <= 0)
        return ckd_errorf(err, "cosine: needs student and teacher embeddings (widths %lld and %lld)",
                          (long long)dims->s_dim, (long long)dims->t_dim);
    cosine_state *s = calloc(1, sizeof *s);
    if (!s)
        return ckd_errorf(err, "cosine: out of memory");
    /* The schema has filled in the default and checked the range. */
    s->weight_txt = ckd_params_number(params, "weight_txt", 1.0);
    if (dims->s_dim != dims->t_dim) {
        if (add_projection(s, "proj_img.weight", dims, rng, err) ||
            (s->weight_txt > 0 && add_projection(s, "proj_txt.weight", dims, rng, err))) {
            cosine_destroy(s);
            return -1;
        }
    }
    *out = s;
    return 0;
}

static int cosine_n_params(void *state) { return ((cosine_state *)state)->n_params; }

static ckd_tensor *cosine_param(void *state, int i)
{
    cosine_state *s = state;
    return i >= 0 && i < s->n_params ? s->params[i] : NULL;
}

/* mean_i [1 − cos(P s_i, t_i)]. Every op propagates NULL and the context
 * keeps the first error, so the formula needs no checks in between. */
static ckd_tensor *one_minus_cos(ckd_ctx *c, ckd_tensor *proj, ckd_tensor *s, ckd_tensor *t)
{
    ckd_tensor *ps = proj ? ckd_linear(c, s, proj, NULL) : s;
    ckd_tensor *cosv = ckd_sum(c, ckd_mul(c, ckd_l2_normalize(c, ps, 1e-12f), ckd_l2_normalize(c, t, 1e-12f)), 1);
    return ckd_sub(c, ckd_scalar(c, 1.0f), ckd_mean_all(c, cosv));
}

static ckd_tensor *cosine_forward(void *state, ckd_ctx *c, const ckd_loss_batch *b)
{
    cosine_state *s = state;
    /* The host has checked COSINE_NEEDS; this guards a caller that did not. */
    if (!b->s_img || !b->t_img || (s->weight_txt > 0 && (!b->s_txt || !b->t_txt)))
        return ckd_ctx_fail(c, "cosine: the batch lacks student or teacher embeddings");
    ckd_tensor *p_img = s->n_params > 0 ? s->params[0] : NULL;
    ckd_tensor *p_txt = s->n_params > 1 ? s->params[1] : NULL;
    ckd_tensor *loss = one_minus_cos(c, p_img, b->s_img, b->t_img);
    if (s->weight_txt > 0)
        loss = ckd_add(c, loss, ckd_scale(c, one_minus_cos(c, p_txt, b->s_txt, b->t_txt), (float)s->weight_txt));
    return loss;
}

static const ckd_loss_vtable cosine_vtable = {
    .struct_size = sizeof(ckd_loss_vtable),
    .needs = COSINE_NEEDS,
    .create = cosine_create,
    .destroy = cosine_destroy,
    .n_params = cosine_n_params,
    .param = cosine_param,
    .forward = cosine_forward,
};

static const ckd_plugin_descriptor cosine_descriptor = {
    .abi_major = CKD_PLUGIN_ABI_MAJOR,
    .struct_size = sizeof(ckd_plugin_descriptor),
    .kind = CKD_PLUGIN_LOSS,
    .name = "cosine",
    .version = "1.0",
    .summary = "example: 1 - cosine between projected student and teacher embeddings",
    .params_schema = cosine_schema,
    .loss = &cosine_vtable,
    .model = NULL,
};

/* The one exported symbol, ckd_plugin_entry(). */
CKD_PLUGIN_DEFINE(cosine_descriptor)
