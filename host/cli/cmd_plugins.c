/* clipkd plugins [--json] | plugins show NAME */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "clipkd/loss.h"
#include "clipkd/registry.h"

void cmd_plugins_help(FILE *out)
{
    fprintf(out, "Usage: clipkd plugins [--json]\n"
                 "       clipkd plugins show NAME\n"
                 "Lists the model and loss plugins found in $CLIPKD_PLUGIN_PATH and then in\n"
                 "%s, with their one-line summaries; `show` prints one plugin's\n"
                 "file, version, what it needs and its parameters (types, defaults, ranges).\n"
                 "Plugin files that were rejected are reported on stderr (exit status 2).\n",
                 CKD_PLUGIN_DIR);
}

ckd_registry *cli_open_registry(void)
{
    ckd_error err;
    ckd_registry *r = ckd_registry_open(NULL, &err);
    if (!r)
        fprintf(stderr, "clipkd: %s\n", err.msg);
    return r;
}

int cli_report_rejections(const ckd_registry *r)
{
    for (size_t i = 0; i < ckd_registry_rejected(r); i++)
        fprintf(stderr, "clipkd: rejected plugin: %s\n", ckd_registry_rejection(r, i));
    return ckd_registry_rejected(r) ? CLI_USAGE : CLI_OK;
}

static json_t *plugin_json(const ckd_plugin *p)
{
    const ckd_plugin_descriptor *d = p->desc;
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:O}", "name", d->name, "kind", ckd_plugin_kind_name(d->kind),
                          "version", d->version, "summary", d->summary, "file", p->path, "parameters", p->schema);
    if (o && d->kind == CKD_PLUGIN_LOSS) {
        char buf[256];
        json_object_set_new(o, "needs", json_string(ckd_loss_needs_str(d->loss->needs, buf, sizeof buf)));
    }
    return o;
}

static void show_params(const json_t *schema)
{
    const json_t *props = json_object_get(schema, "properties");
    if (!json_object_size(props)) {
        printf("parameters: none\n");
        return;
    }
    printf("parameters:\n");
    const char *key;
    json_t *s;
    json_object_foreach((json_t *)props, key, s)
    {
        const json_t *t = json_object_get(s, "type"), *def = json_object_get(s, "default"),
                     *mn = json_object_get(s, "minimum"), *mx = json_object_get(s, "maximum"),
                     *en = json_object_get(s, "enum"), *desc = json_object_get(s, "description");
        printf("  %-12s %-8s", key, json_is_string(t) ? json_string_value(t) : "any");
        if (def) {
            char *d = json_dumps(def, JSON_ENCODE_ANY | JSON_REAL_PRECISION(15)); /* 0.005, not 0.0050000000000000001 */
            printf(" default %s", d ? d : "?");
            free(d);
        }
        if (mn)
            printf(" min %g", json_number_value(mn));
        if (mx)
            printf(" max %g", json_number_value(mx));
        if (en) {
            char *e = json_dumps(en, JSON_COMPACT);
            printf(" one of %s", e ? e : "?");
            free(e);
        }
        if (json_is_string(desc))
            printf("\n  %-12s %s", "", json_string_value(desc));
        printf("\n");
    }
}

static int show(const ckd_registry *r, const char *name)
{
    const ckd_plugin *hit[2];
    int n = 0;
    for (size_t i = 0; i < ckd_registry_count(r) && n < 2; i++)
        if (!strcmp(ckd_registry_at(r, i)->desc->name, name))
            hit[n++] = ckd_registry_at(r, i);
    if (!n) {
        ckd_error err;
        ckd_registry_find(r, CKD_PLUGIN_LOSS, name, &err);
        fprintf(stderr, "clipkd plugins show: %s\n", err.msg);
        return CLI_USAGE;
    }
    for (int k = 0; k < n; k++) {
        const ckd_plugin_descriptor *d = hit[k]->desc;
        printf("%s%s (%s plugin, version %s)\n%s\nfile: %s\n", k ? "\n" : "", d->name, ckd_plugin_kind_name(d->kind),
               d->version, d->summary, hit[k]->path);
        if (d->kind == CKD_PLUGIN_LOSS) {
            char buf[256];
            printf("needs: %s\n", ckd_loss_needs_str(d->loss->needs, buf, sizeof buf));
        }
        show_params(hit[k]->schema);
    }
    return CLI_OK;
}

int cmd_plugins(int argc, char **argv)
{
    int as_json = 0;
    const char *show_name = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            as_json = 1;
        else if (!strcmp(argv[i], "show") && i + 1 < argc && !show_name)
            show_name = argv[++i];
        else {
            fprintf(stderr, "clipkd plugins: unexpected argument '%s' (see clipkd plugins --help)\n", argv[i]);
            return CLI_USAGE;
        }
    }
    ckd_registry *r = cli_open_registry();
    if (!r)
        return CLI_USAGE;
    int rc;
    if (show_name) {
        rc = show(r, show_name);
    } else if (as_json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < ckd_registry_count(r); i++)
            json_array_append_new(arr, plugin_json(ckd_registry_at(r, i)));
        json_dumpf(arr, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("\n");
        json_decref(arr);
        rc = CLI_OK;
    } else {
        ckd_plugin_kind last = 0;
        for (size_t i = 0; i < ckd_registry_count(r); i++) {
            const ckd_plugin_descriptor *d = ckd_registry_at(r, i)->desc;
            if (d->kind != last)
                printf("%s%s plugins:\n", i ? "\n" : "", d->kind == CKD_PLUGIN_LOSS ? "loss" : "model");
            last = d->kind;
            printf("  %-10s %s\n", d->name, d->summary);
        }
        if (!ckd_registry_count(r))
            printf("no plugins found (CLIPKD_PLUGIN_PATH, then %s)\n", CKD_PLUGIN_DIR);
        rc = CLI_OK;
    }
    int rej = cli_report_rejections(r);
    ckd_registry_free(r);
    return rc != CLI_OK ? rc : rej;
}
