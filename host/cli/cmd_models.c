/* clipkd models ls | show NAME | fetch NAME [--pin]: the registry of
 * published weights that recipes name as {"pretrained": NAME}. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "clipkd/fetch.h"
#include "clipkd/recipe.h"

void cmd_models_help(FILE *out)
{
    fprintf(out,
            "Usage: clipkd models ls\n"
            "       clipkd models show NAME\n"
            "       clipkd models fetch NAME [--pin] [--offline]\n"
            "Published CLIP weights that a recipe names as {\"pretrained\": NAME} in its\n"
            "student or teacher: the model, its configuration and its weights artifact.\n"
            "ls lists them with how their download is verified: \"sha256\" (a published\n"
            "full hash), \"prefix XXXXXXXX\" (open_clip publishes the start of the hash in the\n"
            "file name) or \"none\". Only a full hash lets a file be fetched as it is; the\n"
            "others are pinned once: `clipkd fetch --pin RECIPE` downloads them, checks the\n"
            "prefix and records hash and size in RECIPE.lock.json, which later fetches\n"
            "enforce. `models fetch NAME --pin` does the download and check alone and prints\n"
            "the hash. The registry is the installed recipes/pretrained.json, with the\n"
            "files in $CLIPKD_PRETRAINED (colon-separated) over it.\n");
}

static const char *hash_status(const json_t *w, char *buf, size_t cap)
{
    const char *pre = json_string_value(json_object_get(w, "sha256_prefix"));
    if (json_object_get(w, "sha256"))
        return "sha256";
    if (pre)
        return snprintf(buf, cap, "prefix %s", pre), buf;
    return "none";
}

static int models_ls(const json_t *reg)
{
    const char *name;
    json_t *e;
    printf("%-28s %-22s %-17s %s\n", "NAME", "CONFIG", "HASH", "DESCRIPTION");
    json_object_foreach((json_t *)reg, name, e)
    {
        const json_t *cfg = json_object_get(e, "config");
        char c[64], h[80];
        snprintf(c, sizeof c, "%s %s", json_string_value(json_object_get(e, "model")),
                 json_string_value(json_object_get(cfg, "name")) ? json_string_value(json_object_get(cfg, "name"))
                                                                 : "(inline)");
        const char *why = json_string_value(json_object_get(e, "unavailable"));
        const char *desc = json_string_value(json_object_get(e, "description"));
        printf("%-28s %-22s %-17s %s%s\n", name, c, hash_status(json_object_get(e, "weights"), h, sizeof h),
               why ? "UNAVAILABLE: " : "", why ? why : desc ? desc : "");
    }
    printf("%zu published weights; use one as {\"teacher\": {\"pretrained\": NAME}}\n", json_object_size(reg));
    return CLI_OK;
}

static int models_show(const json_t *e, const char *name)
{
    char *text = json_dumps(e, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n%s\n", name, text ? text : "(out of memory)");
    free(text);
    char h[80];
    const json_t *w = json_object_get(e, "weights");
    const char *st = hash_status(w, h, sizeof h);
    if (strcmp(st, "sha256"))
        printf("verification: %s: fetch it once with `clipkd fetch --pin RECIPE` (or `clipkd models fetch %s "
               "--pin`)\n", st, name);
    else
        printf("verification: full SHA-256 and size published\n");
    return CLI_OK;
}

static int models_fetch(const json_t *e, const char *name, int pin, int offline)
{
    const char *why = json_string_value(json_object_get(e, "unavailable"));
    if (why) {
        fprintf(stderr, "clipkd models fetch: %s cannot be used yet: %s\n", name, why);
        return CLI_USAGE;
    }
    ckd_fetch_opts o;
    ckd_fetch_opts_init(&o);
    o.offline = offline;
    o.progress = isatty(2) ? ckd_fetch_progress_tty : ckd_fetch_progress_log;
    o.progress_user = stderr;
    const json_t *w = json_object_get(e, "weights");
    char where[300], path[4096], sha[65];
    snprintf(where, sizeof where, "%s: weights", name);
    ckd_error err = {{0}};
    ckd_artifact a;
    if (json_object_get(w, "sha256")) {
        int rc = ckd_artifact_from_json(w, &a, where, &err) || ckd_fetch(&o, &a, path, sizeof path, &err);
        ckd_artifact_free(&a);
        if (rc) {
            fprintf(stderr, "clipkd models fetch: %s\n", err.msg);
            return CLI_FAIL;
        }
        printf("ok  %s  %s\n", name, path);
        return CLI_OK;
    }
    if (!pin) {
        ckd_artifact_from_json(w, &a, where, &err); /* the message that says how */
        fprintf(stderr, "clipkd models fetch: %s (or `clipkd models fetch %s --pin`)\n", err.msg, name);
        return CLI_USAGE;
    }
    const json_t *urls = json_object_get(w, "urls");
    const char *u[16];
    size_t n = 0;
    for (; n < json_array_size(urls) && n < 16; n++)
        u[n] = json_string_value(json_array_get(urls, n));
    ckd_artifact pa = {.urls = u, .n_urls = n, .size = -1,
                       .name = json_string_value(json_object_get(w, "name"))};
    int64_t size = 0;
    if (ckd_fetch_pin(&o, &pa, json_string_value(json_object_get(w, "sha256_prefix")), sha, &size, path,
                      sizeof path, &err)) {
        fprintf(stderr, "clipkd models fetch: %s\n", err.msg);
        return CLI_FAIL;
    }
    printf("ok  %s  %s\npinned: sha256 %s, size %lld\n", name, path, sha, (long long)size);
    return CLI_OK;
}

int cmd_models(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        cmd_models_help(stdout);
        return CLI_OK;
    }
    const char *verb = argc > 1 ? argv[1] : "ls", *name = NULL;
    int pin = 0, offline = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--pin"))
            pin = 1;
        else if (!strcmp(argv[i], "--offline"))
            offline = 1;
        else if (argv[i][0] != '-' && !name)
            name = argv[i];
        else {
            fprintf(stderr, "clipkd models: unexpected argument '%s' (see clipkd models --help)\n", argv[i]);
            return CLI_USAGE;
        }
    }
    int is_ls = !strcmp(verb, "ls");
    if (!is_ls && strcmp(verb, "show") && strcmp(verb, "fetch")) {
        fprintf(stderr, "clipkd models: unknown action '%s' (ls, show NAME or fetch NAME)\n", verb);
        return CLI_USAGE;
    }
    if (!is_ls && !name) {
        fprintf(stderr, "clipkd models %s: which? give a NAME (clipkd models ls lists them)\n", verb);
        return CLI_USAGE;
    }
    ckd_error err = {{0}};
    json_t *reg = ckd_pretrained_load(&err);
    if (!reg) {
        fprintf(stderr, "clipkd models: %s\n", err.msg);
        return CLI_USAGE;
    }
    int rc;
    const json_t *e = is_ls ? NULL : ckd_pretrained_find(reg, name, &err);
    if (is_ls)
        rc = models_ls(reg);
    else if (!e)
        rc = (fprintf(stderr, "clipkd models %s: %s\n", verb, err.msg), CLI_USAGE);
    else if (!strcmp(verb, "show"))
        rc = models_show(e, name);
    else
        rc = models_fetch(e, name, pin, offline);
    json_decref(reg);
    return rc;
}
