/* clipkd gradcheck LOSS and clipkd loss-eval LOSS: checking a loss plugin. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "clipkd/loss.h"

void cmd_gradcheck_help(FILE *out)
{
    fprintf(out,
            "Usage: clipkd gradcheck LOSS [--set KEY=VALUE]... [--n N] [--s-dim D] [--t-dim D]\n"
            "                        [--classes K] [--seed S] [--step H] [--atol A] [--rtol R]\n"
            "Evaluates the loss plugin LOSS on random inputs of the right shapes (N rows,\n"
            "student width D_s, teacher width D_t, K classes; defaults 8, 16, 24, 5) and\n"
            "compares its gradient with central finite differences for every student input\n"
            "it reads and every parameter it owns. Prints the worst element; exits 1 on a\n"
            "mismatch, 2 on bad usage or parameters.\n");
}

void cmd_loss_eval_help(FILE *out)
{
    fprintf(out, "Usage: clipkd loss-eval LOSS --inputs IN.safetensors --out OUT.safetensors [--set KEY=VALUE]...\n"
                 "Evaluates the loss plugin LOSS on recorded tensors (input.s_img, input.s_txt,\n"
                 "input.t_img, input.t_txt, input.student_logit_scale, input.teacher_logit_scale,\n"
                 "input.labels, input.class_txt, input.centroids, input.s_logits, input.t_logits;\n"
                 "owned parameters from input.<name>) and writes `loss` and `grad.<name>` for every\n"
                 "student input and owned parameter, to compare a plugin with a reference.\n");
}

/* Shared: find the loss plugin, collect --set into a params object. */
typedef struct loss_args {
    ckd_registry *reg;
    const ckd_plugin *plugin;
    json_t *params;
} loss_args;

static int open_loss(const char *cmd, const char *name, loss_args *a)
{
    a->params = json_object();
    if (!(a->reg = cli_open_registry()))
        return CLI_USAGE;
    ckd_error err;
    if (!(a->plugin = ckd_registry_find(a->reg, CKD_PLUGIN_LOSS, name, &err))) {
        fprintf(stderr, "clipkd %s: %s\n", cmd, err.msg);
        return CLI_USAGE;
    }
    return CLI_OK;
}

static void close_loss(loss_args *a)
{
    json_decref(a->params);
    ckd_registry_free(a->reg);
}

static int parse_i64(const char *cmd, const char *opt, const char *s, int64_t *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || v < 1 || v > 1 << 20) {
        fprintf(stderr, "clipkd %s: %s: '%s' is not a positive integer\n", cmd, opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_double(const char *cmd, const char *opt, const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v > 0)) {
        fprintf(stderr, "clipkd %s: %s: '%s' is not a positive number\n", cmd, opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

int cmd_gradcheck(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-') {
        cmd_gradcheck_help(stderr);
        return CLI_USAGE;
    }
    ckd_loss_check_opts o;
    ckd_loss_check_default_opts(&o);
    loss_args a = {0};
    int rc = open_loss("gradcheck", argv[1], &a);
    ckd_error err;
    for (int i = 2; rc == CLI_OK && i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t seed;
        if (!val) {
            fprintf(stderr, "clipkd gradcheck: %s needs a value\n", opt);
            rc = CLI_USAGE;
        } else if (!strcmp(opt, "--set")) {
            rc = ckd_params_set(a.params, val, &err) ? (fprintf(stderr, "clipkd gradcheck: %s\n", err.msg), CLI_USAGE)
                                                     : CLI_OK;
        } else if (!strcmp(opt, "--n")) {
            rc = parse_i64("gradcheck", opt, val, &o.n) ? CLI_USAGE : CLI_OK;
        } else if (!strcmp(opt, "--s-dim")) {
            rc = parse_i64("gradcheck", opt, val, &o.s_dim) ? CLI_USAGE : CLI_OK;
        } else if (!strcmp(opt, "--t-dim")) {
            rc = parse_i64("gradcheck", opt, val, &o.t_dim) ? CLI_USAGE : CLI_OK;
        } else if (!strcmp(opt, "--classes")) {
            rc = parse_i64("gradcheck", opt, val, &o.n_classes) ? CLI_USAGE : CLI_OK;
        } else if (!strcmp(opt, "--seed")) {
            rc = parse_i64("gradcheck", opt, val, &seed) ? CLI_USAGE : CLI_OK;
            o.seed = (uint64_t)seed;
        } else if (!strcmp(opt, "--step")) {
            rc = parse_double("gradcheck", opt, val, &o.gc.step) ? CLI_USAGE : CLI_OK;
        } else if (!strcmp(opt, "--atol")) {
            rc = parse_double("gradcheck", opt, val, &o.gc.atol) ? CLI_USAGE : CLI_OK;
        } else if (!strcmp(opt, "--rtol")) {
            rc = parse_double("gradcheck", opt, val, &o.gc.rtol) ? CLI_USAGE : CLI_OK;
        } else {
            fprintf(stderr, "clipkd gradcheck: unknown option '%s'\n", opt);
            rc = CLI_USAGE;
        }
        i++;
    }
    if (rc == CLI_OK) {
        ckd_gradcheck_report rep;
        int r = ckd_loss_gradcheck(a.plugin, a.params, &o, &rep, &err);
        char buf[512];
        if (r < 0) {
            fprintf(stderr, "clipkd gradcheck: %s\n", err.msg);
            rc = CLI_USAGE;
        } else {
            printf("gradcheck %s: loss %.6g, %lld gradient elements checked (N=%lld, Ds=%lld, Dt=%lld, K=%lld)\n",
                   a.plugin->desc->name, rep.value, (long long)rep.checked, (long long)o.n, (long long)o.s_dim,
                   (long long)o.t_dim, (long long)o.n_classes);
            printf("%s\n%s\n", ckd_gradcheck_describe(&rep, buf, sizeof buf), r == 0 ? "PASS" : "FAIL");
            rc = r == 0 ? CLI_OK : CLI_FAIL;
        }
    }
    close_loss(&a);
    return rc;
}

int cmd_loss_eval(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-') {
        cmd_loss_eval_help(stderr);
        return CLI_USAGE;
    }
    loss_args a = {0};
    int rc = open_loss("loss-eval", argv[1], &a);
    const char *in = NULL, *out = NULL;
    ckd_error err;
    for (int i = 2; rc == CLI_OK && i < argc; i += 2) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!val) {
            fprintf(stderr, "clipkd loss-eval: %s needs a value\n", opt);
            rc = CLI_USAGE;
        } else if (!strcmp(opt, "--inputs")) {
            in = val;
        } else if (!strcmp(opt, "--out")) {
            out = val;
        } else if (!strcmp(opt, "--set")) {
            if (ckd_params_set(a.params, val, &err)) {
                fprintf(stderr, "clipkd loss-eval: %s\n", err.msg);
                rc = CLI_USAGE;
            }
        } else {
            fprintf(stderr, "clipkd loss-eval: unknown option '%s'\n", opt);
            rc = CLI_USAGE;
        }
    }
    if (rc == CLI_OK && (!in || !out)) {
        fprintf(stderr, "clipkd loss-eval: --inputs and --out are required\n");
        rc = CLI_USAGE;
    }
    if (rc == CLI_OK) {
        if (ckd_loss_eval_file(a.plugin, a.params, in, out, &err)) {
            fprintf(stderr, "clipkd loss-eval: %s\n", err.msg);
            rc = CLI_USAGE;
        } else {
            printf("wrote %s\n", out);
        }
    }
    close_loss(&a);
    return rc;
}
