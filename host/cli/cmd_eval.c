/* clipkd eval RUN_DIR|MODEL_DIR --data SPEC: zero-shot, retrieval and
 * calibration of a trained model (ckd_evaluate). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "clipkd/train.h"

void cmd_eval_help(FILE *out)
{
    fprintf(out,
            "Usage: clipkd eval RUN_DIR|MODEL_DIR --data SPEC_JSON|RECIPE [--text-model DIR] [--json]\n"
            "Evaluates the model of a run (RUN_DIR/final) or a model directory on a dataset:\n"
            "zero-shot top-1/top-5 with the prompt ensemble, image->text and text->image\n"
            "R@1/5/10 over every caption, and calibration (ECE) of the zero-shot\n"
            "probabilities. --data is a reader spec as JSON ('{\"reader\": \"fashion-mnist\",\n"
            "\"split\": \"test\"}') or a recipe, whose data.eval and eval settings are used.\n"
            "--text-model (a run or model directory, usually the teacher) gives an image-only\n"
            "model the text tower that classifies and retrieves its images; a classifier is\n"
            "scored from its own logits. --json prints the results as JSON.\n");
}

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* The model of a run directory (its final/) or a model directory. */
static ckd_model *load_model(ckd_registry *reg, const char *dir, char *shown, size_t cap, ckd_error *err)
{
    snprintf(shown, cap, "%s/final", dir);
    if (!is_dir(shown))
        snprintf(shown, cap, "%s", dir);
    return ckd_model_from_pretrained(reg, shown, err);
}

int cmd_eval(int argc, char **argv)
{
    const char *dir = NULL, *data = NULL, *text_dir = NULL;
    int as_json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc)
            data = argv[++i];
        else if (!strcmp(argv[i], "--text-model") && i + 1 < argc)
            text_dir = argv[++i];
        else if (!strcmp(argv[i], "--json"))
            as_json = 1;
        else if (argv[i][0] != '-' && !dir)
            dir = argv[i];
        else
            return fprintf(stderr, "clipkd eval: unexpected argument '%s'\n", argv[i]), CLI_USAGE;
    }
    if (!dir || !data)
        return fprintf(stderr, "clipkd eval: give a model or run directory and --data (see --help)\n"), CLI_USAGE;
    ckd_registry *reg = cli_open_registry();
    if (!reg)
        return CLI_USAGE;
    ckd_error err;
    char mdir[4200], tdir[4200], base[4096] = ".";
    ckd_model *m = NULL;
    ckd_eval_opts eo;
    ckd_eval_opts_init(&eo);
    json_t *spec = NULL;
    ckd_recipe *r = NULL;
    int rc = CLI_USAGE;
    if (data[0] == '{') {
        json_error_t je;
        if (!(spec = json_loads(data, 0, &je))) {
            fprintf(stderr, "clipkd eval: --data: %s (column %d)\n", je.text, je.column);
            goto out;
        }
    } else {
        if (!(r = ckd_recipe_load(data, NULL, 0, ckd_train_plugin_schema, reg, &err))) {
            fprintf(stderr, "clipkd eval: %s\n", err.msg);
            goto out;
        }
        const json_t *rj = ckd_recipe_json(r);
        spec = json_incref(json_object_get(json_object_get(rj, "data"), "eval"));
        if (!spec) {
            fprintf(stderr, "clipkd eval: %s has no data.eval\n", data);
            goto out;
        }
        ckd_eval_opts_from_json(&eo, json_object_get(rj, "eval"));
        snprintf(base, sizeof base, "%s", data);
        char *slash = strrchr(base, '/');
        if (slash)
            *slash = '\0';
        else
            snprintf(base, sizeof base, ".");
    }
    if (!(m = load_model(reg, dir, mdir, sizeof mdir, &err)) ||
        (text_dir && !(eo.text_model = load_model(reg, text_dir, tdir, sizeof tdir, &err)))) {
        fprintf(stderr, "clipkd eval: %s\n", err.msg);
        goto out;
    }
    if (!ckd_model_has_text(m) && !ckd_model_is_classifier(m) && !eo.text_model) {
        fprintf(stderr, "clipkd eval: %s has no text tower: give --text-model DIR (its teacher, say) for"
                        " zero-shot classification and retrieval\n", mdir);
        goto out;
    }
    ckd_eval_result res;
    rc = CLI_FAIL;
    if (ckd_evaluate(m, spec, base, &eo, &res, &err)) {
        fprintf(stderr, "clipkd eval: %s\n", err.msg);
    } else {
        rc = CLI_OK;
        if (as_json) {
            json_t *o = ckd_eval_result_json(&res);
            json_dumpf(o, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
            printf("\n");
            json_decref(o);
        } else {
            char buf[512];
            printf("%s: %lld images, %.1f s\n%s\n", mdir, (long long)res.n_images, res.seconds,
                   ckd_eval_result_str(&res, buf, sizeof buf));
        }
    }
out:
    ckd_model_free(eo.text_model);
    ckd_model_free(m);
    json_decref(spec);
    ckd_recipe_free(r);
    ckd_registry_free(reg);
    return rc;
}
