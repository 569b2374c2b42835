/* clipkd model-eval MODEL_DIR: a model plugin on recorded inputs, for
 * comparing it with its reference (the model counterpart of loss-eval).
 *
 *   eval     grad off, eval mode (BatchNorm on running statistics):
 *            eval.output = image tower(input.pixel_values), and
 *            eval.text_output = text tower(input.input_ids) when both exist;
 *   --train  then train mode (batch statistics, running statistics updated):
 *            train.output; backward of sum(train.output · train.r), giving
 *            grad.input and grad.<parameter>; after_train_forward.<buffer>.
 * Eval runs first, so it sees the statistics the weights came with. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "clipkd/clipkd.h"
#include "clipkd/model.h"
#include "clipkd/safetensors.h"

void cmd_model_eval_help(FILE *out)
{
    fprintf(out,
            "Usage: clipkd model-eval MODEL_DIR --inputs IN.safetensors --out OUT.safetensors [--train]\n"
            "Runs the model of MODEL_DIR (config.json, clipkd.json, open_clip_config.json or\n"
            "torchvision_config.json, and its weights) on input.pixel_values [B, C, H, W] (and\n"
            "input.input_ids [B, T] for a model with a text tower) and writes eval.output (the\n"
            "embedding or the class logits; eval.text_output for text). With --train it also\n"
            "runs a train-mode forward, writes train.output, back-propagates\n"
            "sum(train.output * train.r) (train.r from the inputs) and writes grad.input,\n"
            "grad.<parameter> and after_train_forward.<buffer> (BatchNorm running statistics).\n");
}

typedef struct me_args {
    const char *dir, *in, *out;
    int train;
} me_args;

static int parse(int argc, char **argv, me_args *a)
{
    a->dir = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i];
        if (!strcmp(opt, "--train")) {
            a->train = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "clipkd model-eval: %s needs a value\n", opt);
            return -1;
        }
        if (!strcmp(opt, "--inputs"))
            a->in = argv[++i];
        else if (!strcmp(opt, "--out"))
            a->out = argv[++i];
        else {
            fprintf(stderr, "clipkd model-eval: unknown option '%s'\n", opt);
            return -1;
        }
    }
    if (!a->in || !a->out) {
        fprintf(stderr, "clipkd model-eval: --inputs and --out are required\n");
        return -1;
    }
    return 0;
}

/* A float tensor of the inputs as a parameter-like leaf (so backward gives
 * it a gradient), checked against the shape the model wants. */
static ckd_tensor *read_leaf(const ckd_safetensors *st, const char *path, const char *name, int ndim,
                             const int64_t *want, ckd_error *err)
{
    const ckd_st_tensor *s = ckd_st_find(st, name);
    if (!s) {
        ckd_errorf(err, "%s: tensor %s is missing", path, name);
        return NULL;
    }
    int ok = s->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++)
        ok = want[d] < 0 || s->shape[d] == want[d];
    if (!ok || ndim > CKD_MAX_DIMS) {
        char buf[128] = "";
        for (int d = 0; d < ndim; d++)
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", d ? ", " : "",
                     want[d] < 0 ? (d ? "?" : "B") : "n");
        ckd_errorf(err, "%s: tensor %s has %d dimensions or sizes other than the model's (expected %d: [%s],"
                   " with the model's channels and image size)", path, name, s->ndim, ndim, buf);
        return NULL;
    }
    int64_t shape[CKD_MAX_DIMS];
    for (int d = 0; d < ndim; d++)
        shape[d] = s->shape[d];
    ckd_tensor *t = ckd_param_new(ndim, shape, "input", err);
    if (t && ckd_st_to_f32(s, t->data, (size_t)t->n, err)) {
        ckd_param_free(t);
        return NULL;
    }
    return t;
}

static int add_tensor(ckd_st_writer *w, const char *name, const ckd_tensor *t, const float *data, ckd_error *err)
{
    return ckd_st_writer_add_copy(w, name, CKD_DT_F32, t->ndim, t->shape, data, err);
}

static int eval_pass(ckd_model *m, ckd_ctx *c, ckd_tensor *px, const ckd_safetensors *st, const char *in,
                     ckd_st_writer *w, ckd_error *err)
{
    ckd_ctx_set_training(c, 0);
    ckd_ctx_set_grad(c, 0);
    ckd_tensor *y = ckd_model_encode_image(m, c, px, 1.0f, NULL);
    if (ckd_ctx_check(c, err) || add_tensor(w, "eval.output", y, y->data, err))
        return -1;
    const ckd_st_tensor *ids = ckd_st_find(st, "input.input_ids");
    if (!ids || !ckd_model_has_text(m))
        return 0;
    if (ids->ndim != 2 || ids->shape[0] < 1 || ids->shape[1] < 1 ||
        ids->shape[1] > ckd_model_get_info(m)->context_length)
        return ckd_errorf(err, "%s: input.input_ids: expected [B, T] with T <= %lld", in,
                          (long long)ckd_model_get_info(m)->context_length);
    size_t n = (size_t)(ids->shape[0] * ids->shape[1]);
    int32_t *buf = malloc(n * sizeof *buf);
    int rc = !buf ? ckd_errorf(err, "out of memory") : ckd_st_to_i32(ids, buf, n, err);
    if (!rc) {
        ckd_tensor *t = ckd_model_encode_text(m, c, buf, ids->shape[0], ids->shape[1], NULL);
        rc = ckd_ctx_check(c, err) || add_tensor(w, "eval.text_output", t, t->data, err) ? -1 : 0;
    }
    free(buf);
    return rc;
}

static int train_pass(ckd_model *m, ckd_ctx *c, ckd_tensor *px, const ckd_safetensors *st, const char *in,
                      ckd_st_writer *w, ckd_error *err)
{
    ckd_ctx_reset(c);
    ckd_ctx_set_training(c, 1);
    ckd_ctx_set_grad(c, 1);
    ckd_tensor *y = ckd_model_encode_image(m, c, px, 1.0f, NULL);
    if (ckd_ctx_check(c, err))
        return -1;
    ckd_tensor *r = read_leaf(st, in, "train.r", 2, y->shape, err);
    if (!r)
        return -1;
    r->requires_grad = 0;
    ckd_tensor *loss = ckd_sum_all(c, ckd_mul(c, y, r));
    int rc = ckd_ctx_check(c, err) || ckd_backward(c, loss, err) || add_tensor(w, "train.output", y, y->data, err) ||
             add_tensor(w, "grad.input", px, px->grad, err);
    ckd_param_free(r);
    char name[300];
    for (int i = 0; !rc && i < ckd_model_n_params(m); i++) {
        ckd_tensor *p = ckd_model_param(m, i);
        snprintf(name, sizeof name, "grad.%s", p->name);
        rc = add_tensor(w, name, p, p->grad, err);
    }
    for (int i = 0; !rc && i < ckd_model_n_buffers(m); i++) {
        ckd_tensor *b = ckd_model_buffer(m, i);
        snprintf(name, sizeof name, "after_train_forward.%s", b->name);
        rc = add_tensor(w, name, b, b->data, err);
    }
    return rc ? -1 : 0;
}

int cmd_model_eval(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-') {
        cmd_model_eval_help(stderr);
        return CLI_USAGE;
    }
    me_args a = {0};
    if (parse(argc, argv, &a))
        return CLI_USAGE;
    ckd_registry *reg = cli_open_registry();
    if (!reg)
        return CLI_USAGE;
    ckd_error err = {{0}};
    ckd_model *m = ckd_model_from_pretrained(reg, a.dir, &err);
    ckd_safetensors *st = m ? ckd_st_open(a.in, &err) : NULL;
    ckd_ctx *c = st ? ckd_ctx_new(0, 0, &err) : NULL;
    ckd_st_writer *w = c ? ckd_st_writer_new() : NULL;
    ckd_tensor *px = NULL;
    int rc = CLI_USAGE;
    if (w) {
        const ckd_model_info *info = ckd_model_get_info(m);
        int64_t want[4] = {-1, info->channels, info->image_size, info->image_size};
        px = read_leaf(st, a.in, "input.pixel_values", 4, want, &err);
        if (px && !eval_pass(m, c, px, st, a.in, w, &err) && (!a.train || !train_pass(m, c, px, st, a.in, w, &err)) &&
            !ckd_st_writer_save(w, a.out, &err)) {
            printf("wrote %s\n", a.out);
            rc = CLI_OK;
        }
    }
    if (rc != CLI_OK)
        fprintf(stderr, "clipkd model-eval: %s\n", err.msg[0] ? err.msg : "out of memory");
    ckd_param_free(px);
    ckd_st_writer_free(w);
    ckd_ctx_free(c);
    ckd_st_close(st);
    ckd_model_free(m);
    ckd_registry_free(reg);
    return rc;
}
