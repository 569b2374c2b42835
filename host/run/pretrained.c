/* Published weights by name ("pretrained" in recipes) and lock files that
 * pin the artifacts whose full hash nobody published; see clipkd/recipe.h.
 *
 * A registry entry is a model object as a recipe writes one — "model",
 * "config", "weights" — plus what `clipkd models` shows (description,
 * format, preprocessing, source) and, for weights whose publisher gives
 * only part of the SHA-256 (open_clip's release names), "sha256_prefix" in
 * the weights. A recipe's {"pretrained": NAME, ...} is that entry with the
 * recipe's own keys merged over it, so a recipe can still change a config
 * key or add a mirror. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clipkd/data.h"
#include "clipkd/fetch.h"
#include "clipkd/recipe.h"
#include "clipkd/schema.h"
#include "recipe_internal.h"
#include "core/json_oom.h"

/* ---- the registry ------------------------------------------------------------- */

static int check_entry(const char *file, const char *name, const json_t *e, ckd_error *err)
{
    if (!json_is_object(e))
        return ckd_errorf(err, "%s: \"%s\": expected an object, got %s", file, name, ckd_json_type_name(e));
    if (!json_is_string(json_object_get(e, "model")))
        return ckd_errorf(err, "%s: \"%s\".model: expected the model plugin's name", file, name);
    const json_t *cfg = json_object_get(e, "config"), *w = json_object_get(e, "weights");
    if (cfg && !json_is_object(cfg))
        return ckd_errorf(err, "%s: \"%s\".config: expected an object, got %s", file, name, ckd_json_type_name(cfg));
    const json_t *urls = json_object_get(w, "urls");
    if (!json_is_object(w) || !json_is_array(urls) || !json_array_size(urls))
        return ckd_errorf(err, "%s: \"%s\".weights: expected an artifact object with a non-empty \"urls\" array",
                          file, name);
    for (size_t i = 0; i < json_array_size(urls); i++)
        if (!json_is_string(json_array_get(urls, i)))
            return ckd_errorf(err, "%s: \"%s\".weights.urls[%zu]: expected a URL string", file, name, i);
    const json_t *sha = json_object_get(w, "sha256"), *pre = json_object_get(w, "sha256_prefix");
    if (sha && (!json_is_string(sha) || !ckd_sha256_is_hex(json_string_value(sha))))
        return ckd_errorf(err, "%s: \"%s\".weights.sha256: expected 64 hex digits", file, name);
    if (sha && !json_is_integer(json_object_get(w, "size")))
        return ckd_errorf(err, "%s: \"%s\".weights: a sha256 needs its \"size\" in bytes", file, name);
    if (pre && (!json_is_string(pre) || strlen(json_string_value(pre)) > 64 ||
                strspn(json_string_value(pre), "0123456789abcdef") != strlen(json_string_value(pre))))
        return ckd_errorf(err, "%s: \"%s\".weights.sha256_prefix: expected lower-case hex digits", file, name);
    return 0;
}

/* Adds the entries of one registry file to reg, replacing same-named ones. */
static int add_file(json_t *reg, const char *file, ckd_error *err)
{
    json_error_t je;
    json_t *doc = ckdi_json_load_file(file, JSON_REJECT_DUPLICATES, &je, NULL);
    if (!doc)
        return ckd_errorf(err, "%s:%d:%d: %s", file, je.line, je.column, je.text);
    const json_t *models = json_object_get(doc, "models");
    if (!json_is_object(models)) {
        json_decref(doc);
        return ckd_errorf(err, "%s: expected {\"models\": {NAME: entry, ...}}", file);
    }
    const char *name;
    json_t *e;
    json_object_foreach((json_t *)models, name, e)
    {
        if (check_entry(file, name, e, err) || json_object_set(reg, name, e)) {
            json_decref(doc);
            return -1;
        }
    }
    json_decref(doc);
    return 0;
}

json_t *ckd_pretrained_load(ckd_error *err)
{
    char path[4096];
    json_t *reg = json_object();
    if (!reg) {
        ckd_errorf(err, "out of memory");
        return NULL;
    }
    if (ckd_shipped_path("recipes/pretrained.json", path, sizeof path, err) || add_file(reg, path, err)) {
        json_decref(reg);
        return NULL;
    }
    /* Extra registries (a site's mirrors, a lab's own models) over it. */
    const char *extra = getenv("CLIPKD_PRETRAINED");
    for (const char *p = extra; p && *p;) {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        if (n && n < sizeof path) {
            snprintf(path, sizeof path, "%.*s", (int)n, p);
            if (add_file(reg, path, err)) {
                ckd_error_prefix(err, "$CLIPKD_PRETRAINED");
                json_decref(reg);
                return NULL;
            }
        }
        p = colon ? colon + 1 : p + n;
    }
    return reg;
}

const json_t *ckd_pretrained_find(const json_t *reg, const char *name, ckd_error *err)
{
    const json_t *e = json_object_get(reg, name);
    if (e)
        return e;
    size_t n = json_object_size(reg), k = 0;
    const char **names = calloc(n ? n : 1, sizeof *names);
    char list[CKD_ERROR_MAX / 2] = "", near[200] = "";
    size_t len = 0;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)reg, key, v)
    {
        if (names)
            names[k++] = key;
        if (len < sizeof list)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", len ? ", " : "", key);
    }
    const char *s = names ? ckd_suggest(name, names, k) : NULL;
    if (s)
        snprintf(near, sizeof near, " (did you mean \"%s\"?)", s);
    free(names);
    ckd_errorf(err, "no published weights called \"%s\"%s; `clipkd models ls` lists them: %s", name, near, list);
    return NULL;
}

/* ---- recipes ------------------------------------------------------------------------ */

static int expand_role(json_t *recipe, const char *role, const json_t **reg, json_t **owned, const char *file,
                       ckd_json_locate_fn locate, void *user, ckd_error *err)
{
    json_t *m = json_object_get(recipe, role);
    const json_t *p = json_object_get(m, "pretrained");
    if (!p)
        return 0;
    char at[64];
    snprintf(at, sizeof at, "%s.pretrained", role);
    if (!json_is_string(p))
        return ckd_json_errorf(locate, user, file, at, err, "expected the name of published weights, got %s",
                               ckd_json_type_name(p));
    ckd_error e = {{0}};
    if (!*reg && !(*reg = *owned = ckd_pretrained_load(&e)))
        return ckd_json_errorf(locate, user, file, at, err, "%s", e.msg);
    const json_t *entry = ckd_pretrained_find(*reg, json_string_value(p), &e);
    if (!entry)
        return ckd_json_errorf(locate, user, file, at, err, "%s", e.msg);
    const char *why = json_string_value(json_object_get(entry, "unavailable"));
    if (why)
        return ckd_json_errorf(locate, user, file, at, err, "\"%s\" cannot be used yet: %s", json_string_value(p),
                               why);
    /* A deep copy: the merge below must not reach into the registry. */
    const json_t *cfg = json_object_get(entry, "config");
    json_t *base = json_pack("{s:O, s:o, s:o}", "model", json_object_get(entry, "model"), "config",
                             cfg ? json_deep_copy(cfg) : json_object(), "weights",
                             json_deep_copy(json_object_get(entry, "weights")));
    json_t *own = json_deep_copy(m);
    int rc = !own || !base || ckdi_recipe_merge(base, own) || json_object_update(m, base);
    json_decref(own);
    json_decref(base);
    return rc ? ckd_errorf(err, "%s: out of memory", file) : 0;
}

int ckdi_recipe_expand_pretrained(json_t *recipe, const char *file, ckd_json_locate_fn locate, void *user,
                                  ckd_error *err)
{
    const json_t *reg = NULL;
    json_t *owned = NULL;
    int rc = expand_role(recipe, "student", &reg, &owned, file, locate, user, err) ||
             expand_role(recipe, "teacher", &reg, &owned, file, locate, user, err);
    json_decref(owned);
    return rc ? -1 : 0;
}

/* ---- lock files --------------------------------------------------------------------- */

int ckd_recipe_lock_path(const char *recipe_path, char *out, size_t cap, ckd_error *err)
{
    int n = snprintf(out, cap, "%s.lock.json", recipe_path);
    return n < 0 || (size_t)n >= cap ? ckd_errorf(err, "%s: path too long for its lock file", recipe_path) : 0;
}

json_t *ckd_lock_load(const char *path, ckd_error *err)
{
    if (access(path, F_OK) < 0 && errno == ENOENT) {
        json_t *none = json_pack("{s:i, s:{}}", "clipkd_lock", 1, "artifacts");
        if (!none)
            ckd_errorf(err, "%s: out of memory", path);
        return none;
    }
    json_error_t je;
    int oom = 0;
    json_t *doc = ckdi_json_load_file(path, JSON_REJECT_DUPLICATES, &je, &oom);
    if (!doc) {
        if (oom)
            ckd_errorf(err, "%s: out of memory reading it", path);
        else
            ckd_errorf(err, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        return NULL;
    }
    const json_t *arts = json_object_get(doc, "artifacts");
    if (json_integer_value(json_object_get(doc, "clipkd_lock")) != 1 || !json_is_object(arts)) {
        json_decref(doc);
        ckd_errorf(err, "%s: not a clipkd lock file (expected {\"clipkd_lock\": 1, \"artifacts\": {URL: ...}})",
                   path);
        return NULL;
    }
    const char *url;
    json_t *a;
    json_object_foreach((json_t *)arts, url, a)
    {
        const json_t *sha = json_object_get(a, "sha256"), *size = json_object_get(a, "size");
        if (!json_is_string(sha) || !ckd_sha256_is_hex(json_string_value(sha)) || !json_is_integer(size) ||
            json_integer_value(size) < 0) {
            json_decref(doc);
            ckd_errorf(err, "%s: artifacts.\"%.300s\": expected {\"sha256\": 64 hex digits, \"size\": bytes}", path,
                       url);
            return NULL;
        }
    }
    return doc;
}

/* Artifact objects (an object with "urls") below v, in document order. */
static int each_artifact(json_t *v, int (*fn)(json_t *a, void *u), void *u, int depth)
{
    if (depth > 64)
        return 0;
    if (json_is_object(v) && json_is_array(json_object_get(v, "urls")))
        return fn(v, u);
    const char *k;
    json_t *c;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach(v, k, c)
        {
            if (each_artifact(c, fn, u, depth + 1))
                return -1;
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, c)
        {
            if (each_artifact(c, fn, u, depth + 1))
                return -1;
        }
    }
    return 0;
}

static int apply_one(json_t *a, void *u)
{
    const json_t *arts = json_object_get((const json_t *)u, "artifacts");
    const char *url = json_string_value(json_array_get(json_object_get(a, "urls"), 0));
    const json_t *pin = url ? json_object_get(arts, url) : NULL;
    if (!pin || json_object_get(a, "sha256"))
        return 0; /* a hash written in the recipe wins over the lock */
    return json_object_set(a, "sha256", json_object_get(pin, "sha256")) ||
           json_object_set(a, "size", json_object_get(pin, "size"));
}

int ckd_lock_apply(json_t *recipe, const json_t *lock)
{
    return lock ? each_artifact(recipe, apply_one, (void *)lock, 0) : 0;
}

int ckd_lock_record(json_t *lock, const char *url, const char *sha256, int64_t size, const char *name,
                    const char *where)
{
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *e = json_pack("{s:s, s:I, s:s?, s:s?, s:s}", "sha256", sha256, "size", (json_int_t)size, "name", name,
                          "at", where, "pinned", when);
    return !e || json_object_set_new(json_object_get(lock, "artifacts"), url, e);
}

int ckd_lock_save(const json_t *lock, const char *path, ckd_error *err)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (json_dump_file(lock, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) || rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return ckd_errorf(err, "%s: cannot write the lock file: %s", path, strerror(e));
    }
    return 0;
}
