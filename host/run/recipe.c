/* Recipes: loading with "extends", --set overrides, validation, and the
 * canonical form and hash that identify a run.
 *
 * The loader keeps every file it read, and every --set, as a "layer", in the
 * order they were applied. Merging never moves a value to another JSON path
 * (objects merge key by key, everything else replaces), so the layer a value
 * came from can be found afterwards from its path alone: the topmost layer
 * that holds the path, unless a layer above it replaced an ancestor. That is
 * how an error about a value written in an extended file names that file. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipkd/fetch.h"
#include "clipkd/recipe.h"
#include "recipe_internal.h"
#include "core/json_oom.h"

/* extends chains longer than this are surely a mistake (cycles are caught
 * separately, with a better message). */
#define MAX_EXTENDS_DEPTH 32

typedef struct layer {
    char *name;            /* the file as named in messages, or "--set a.b=1" */
    ckd_json_source *src;  /* positions in the file; NULL for a --set */
    json_t *doc;           /* the file as written; NULL for a --set */
    char *set_path;        /* the path a --set assigned, normalised */
    /* An object embedded in a larger document (ckd_recipe_compose): its
     * JSON path there ("rows[2].set"), and whether src is borrowed. */
    char *prefix;
    int borrowed;
} layer;

struct ckd_recipe {
    char *path;
    json_t *root;
    char *canonical;
    char hash[65];
    int precision;         /* significant digits that reproduce every number */
    layer *layers;         /* bases before the files that extend them; --set last */
    size_t n_layers, cap_layers;
};

/* ---- JSON paths -------------------------------------------------------------- */

typedef struct comp {
    int is_index;
    size_t index;
    const char *key; /* not NUL-terminated */
    size_t klen;
} comp;

/* Reads the next component of a path ("a", ".b", "[2]") from *pp: 1 with *c
 * set, 0 at the end, -1 if the path is malformed. */
static int next_comp(const char **pp, const char *start, comp *c)
{
    const char *p = *pp;
    if (!*p)
        return 0;
    if (*p == '[') {
        if (!isdigit((unsigned char)p[1]))
            return -1;
        char *e;
        errno = 0;
        unsigned long long v = strtoull(p + 1, &e, 10);
        if (*e != ']' || errno || v > SIZE_MAX)
            return -1;
        c->is_index = 1;
        c->index = (size_t)v;
        *pp = e + 1;
        return 1;
    }
    if (*p == '.') {
        if (p == start)
            return -1;
        p++;
    } else if (p != start) {
        return -1;
    }
    size_t n = strcspn(p, ".[]");
    if (n == 0 || p[n] == ']')
        return -1;
    c->is_index = 0;
    c->key = p;
    c->klen = n;
    *pp = p + n;
    return 1;
}

static json_t *child(const json_t *v, const comp *c)
{
    if (c->is_index)
        return json_array_get(v, c->index);
    return json_object_getn(v, c->key, c->klen);
}

/* 1 if `prefix` is `path` or one of its ancestors. */
static int path_within(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    return !strncmp(path, prefix, n) && (path[n] == '\0' || path[n] == '.' || path[n] == '[');
}

/* ---- where values came from ---------------------------------------------------- */

/* The layer that wrote the value at `path`, and in *got the length of the
 * part of the path that layer's text holds (the whole path, or the ancestor
 * the layer replaced wholesale). -1 if no layer wrote it (a default, or an
 * object created on the way to a --set). */
static long origin(const ckd_recipe *r, const char *path, size_t *got)
{
    for (size_t k = r->n_layers; k-- > 0;) {
        const layer *L = &r->layers[k];
        if (L->set_path) {
            if (path_within(path, L->set_path)) {
                *got = strlen(path);
                return (long)k;
            }
            continue;
        }
        /* Walk the file's own document as far as the path goes. Passing
         * through an array or stopping at a scalar means this file replaced
         * that part wholesale, so nothing below came from a lower layer. */
        const json_t *v = L->doc;
        const char *p = path;
        int replaced = 0;
        comp c;
        size_t len = 0;
        while (next_comp(&p, path, &c) == 1) {
            const json_t *next = child(v, &c);
            if (!next)
                break;
            if (json_is_array(v))
                replaced = 1;
            v = next;
            len = (size_t)(p - path);
        }
        if (path[len] == '\0' || replaced || !json_is_object(v)) {
            *got = len;
            return (long)k;
        }
    }
    for (size_t k = r->n_layers; k-- > 0;) {
        if (r->layers[k].set_path && path_within(r->layers[k].set_path, path)) {
            *got = strlen(path);
            return (long)k;
        }
    }
    return -1;
}

int ckd_recipe_locate(void *recipe, const char *json_path, const char **file, int *line,
                      int *col)
{
    const ckd_recipe *r = recipe;
    char path[1024];
    snprintf(path, sizeof path, "%s", json_path ? json_path : "");
    size_t got;
    long k;
    /* A value nobody wrote (a default) is placed at its nearest written
     * ancestor: "optim.betas" -> "optim" -> "". */
    while ((k = origin(r, path, &got)) < 0 && *path) {
        char *cut = strrchr(path, '.'), *br = strrchr(path, '[');
        if (!cut || (br && br > cut))
            cut = br;
        *(cut ? cut : path) = '\0';
    }
    if (k < 0)
        return 0;
    const layer *L = &r->layers[k];
    *file = L->name;
    if (!L->src) {
        *line = *col = 0;
        return 1;
    }
    path[got] = '\0';
    if (L->prefix) { /* a path of the embedded object, in its document */
        char full[1200];
        snprintf(full, sizeof full, "%s%s%s", L->prefix, *path && *path != '[' ? "." : "", path);
        return ckd_json_source_find(L->src, full, line, col);
    }
    return ckd_json_source_find(L->src, path, line, col);
}

int ckd_recipe_errorf(const ckd_recipe *r, const char *json_path, ckd_error *err,
                      const char *fmt, ...)
{
    char what[CKD_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return ckd_json_errorf(ckd_recipe_locate, (void *)r, r->path, json_path, err, "%s", what);
}

/* ---- layers and files ---------------------------------------------------------- */

static int add_layer(ckd_recipe *r, layer L, ckd_error *err)
{
    if (r->n_layers == r->cap_layers) {
        size_t cap = r->cap_layers ? r->cap_layers * 2 : 8;
        layer *p = realloc(r->layers, cap * sizeof *p);
        if (!p)
            return ckd_errorf(err, "%s: out of memory", r->path);
        r->layers = p;
        r->cap_layers = cap;
    }
    r->layers[r->n_layers++] = L;
    return 0;
}

static void free_layer(layer *L)
{
    free(L->name);
    if (!L->borrowed)
        ckd_json_source_free(L->src);
    free(L->prefix);
    json_decref(L->doc);
    free(L->set_path);
}

/* `rel` relative to the directory of `file` (absolute paths stay as they are). */
static char *relative_to(const char *file, const char *rel)
{
    const char *slash = strrchr(file, '/');
    int dir = rel[0] == '/' || !slash ? 0 : (int)(slash - file) + 1;
    size_t n = (size_t)dir + strlen(rel) + 1;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%.*s%s", dir, file, rel);
    return out;
}

int ckdi_recipe_merge(json_t *dst, json_t *src)
{
    const char *k;
    json_t *sv;
    json_object_foreach(src, k, sv)
    {
        json_t *dv = json_object_get(dst, k);
        if (json_is_null(sv)) {
            json_object_del(dst, k);
        } else if (json_is_object(sv)) {
            if (!json_is_object(dv)) {
                /* Into an empty object, so that nulls inside are dropped too. */
                dv = json_object();
                if (json_object_set_new(dst, k, dv))
                    return -1;
            }
            if (ckdi_recipe_merge(dv, sv))
                return -1;
        } else if (json_object_set(dst, k, sv)) {
            return -1;
        }
    }
    return 0;
}

/* The files being loaded, innermost first, to detect cycles. */
typedef struct link {
    const char *name;
    const char *real;
    const struct link *up;
} link;

static int cycle_error(const ckd_json_source *src, const char *at, const link *chain,
                       const char *again, ckd_error *err)
{
    const char *names[MAX_EXTENDS_DEPTH + 2];
    size_t n = 0;
    for (const link *l = chain; l && n < MAX_EXTENDS_DEPTH + 1; l = l->up)
        names[n++] = l->name;
    char msg[CKD_ERROR_MAX] = "";
    size_t len = 0;
    while (n-- > 0 && len < sizeof msg)
        len += (size_t)snprintf(msg + len, sizeof msg - len, "%s -> ", names[n]);
    if (len < sizeof msg)
        snprintf(msg + len, sizeof msg - len, "%s", again);
    return ckd_json_errorf(ckd_json_source_locate, (void *)src, NULL, at, err,
                           "cycle: %s", msg);
}

static json_t *load_file(ckd_recipe *r, const char *name, const link *chain, int depth,
                         ckd_error *err);

/* Loads and merges, in order, the recipes that `src` extends. */
static int load_bases(ckd_recipe *r, const ckd_json_source *src, const json_t *ext,
                      const link *me, int depth, json_t *merged, ckd_error *err)
{
    const char *name = ckd_json_source_name(src);
    size_t n = json_is_array(ext) ? json_array_size(ext) : 1;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_is_array(ext) ? json_array_get(ext, i) : ext;
        char at[64];
        if (json_is_array(ext))
            snprintf(at, sizeof at, "extends[%zu]", i);
        else
            snprintf(at, sizeof at, "extends");
        if (!json_is_string(e) || !*json_string_value(e))
            return ckd_json_errorf(ckd_json_source_locate, (void *)src, NULL, at, err,
                                   "expected the path of a recipe (a string, or an array of "
                                   "strings)");
        char *base = relative_to(name, json_string_value(e));
        char *real = base ? realpath(base, NULL) : NULL;
        int rc = 0;
        if (!real) {
            rc = ckd_json_errorf(ckd_json_source_locate, (void *)src, NULL, at, err,
                                 "cannot open \"%s\": %s", base ? base : "?",
                                 strerror(base ? errno : ENOMEM));
        } else {
            for (const link *l = me; l; l = l->up)
                if (!strcmp(l->real, real)) {
                    rc = cycle_error(src, at, me, base, err);
                    break;
                }
        }
        if (!rc && depth >= MAX_EXTENDS_DEPTH)
            rc = ckd_json_errorf(ckd_json_source_locate, (void *)src, NULL, at, err,
                                 "extends nested more than %d deep", MAX_EXTENDS_DEPTH);
        json_t *doc = rc ? NULL : load_file(r, base, me, depth + 1, err);
        if (!rc && (!doc || ckdi_recipe_merge(merged, doc)))
            rc = doc ? ckd_errorf(err, "%s: out of memory", name) : -1;
        json_decref(doc);
        free(real);
        free(base);
        if (rc)
            return -1;
    }
    return 0;
}

/* Loads a recipe file and everything it extends; returns the merged result
 * and appends the files' layers to r. */
static json_t *load_file(ckd_recipe *r, const char *name, const link *chain, int depth,
                         ckd_error *err)
{
    json_t *doc = NULL, *merged = NULL, *own = NULL;
    ckd_json_source *src = ckd_json_source_load(name, &doc, err);
    if (!src)
        return NULL;
    char *real = realpath(name, NULL);
    link me = {name, real, chain};
    if (!json_is_object(doc)) {
        ckd_json_errorf(ckd_json_source_locate, src, NULL, "", err,
                        "expected a recipe (a JSON object)");
        goto fail;
    }
    if (!real) {
        ckd_errorf(err, "%s: %s", name, strerror(errno));
        goto fail;
    }
    merged = json_object();
    if (!merged)
        goto oom;
    json_t *ext = json_object_get(doc, "extends");
    if (ext && load_bases(r, src, ext, &me, depth, merged, err))
        goto fail;
    own = json_deep_copy(doc);
    if (!own)
        goto oom;
    json_object_del(own, "extends");
    if (ckdi_recipe_merge(merged, own))
        goto oom;
    json_decref(own);
    char *lname = strdup(name);
    if (!lname || add_layer(r, (layer){lname, src, doc, NULL, NULL, 0}, err)) {
        free(lname);
        goto oom;
    }
    free(real);
    return merged;
oom:
    ckd_errorf(err, "%s: out of memory", name);
fail:
    free(real);
    json_decref(own);
    json_decref(merged);
    json_decref(doc);
    ckd_json_source_free(src);
    return NULL;
}

/* ---- --set ---------------------------------------------------------------------- */

/* The schema of member `key` of an object with schema `s`: 0 with *out set
 * (NULL: anything goes below here), -1 with a message if the schema has no
 * such key. */
static int schema_member(const json_t *s, const char *key, const char *path, const json_t **out,
                         const char *assignment, ckd_error *err)
{
    *out = NULL;
    if (!s)
        return 0;
    const json_t *props = json_object_get(s, "properties");
    const json_t *extra = json_object_get(s, "additionalProperties");
    if ((*out = json_object_get(props, key)))
        return 0;
    if (json_is_object(extra)) {
        *out = extra;
        return 0;
    }
    if (json_is_true(extra))
        return 0;
    const char *names[128];
    size_t n = 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)props, k, v) if (n < 128) names[n++] = k;
    const char *near = ckd_suggest(key, names, n);
    if (near)
        return ckd_errorf(err, "--set %s: %s: unknown key \"%s\" (did you mean \"%s\"?)",
                          assignment, path, key, near);
    return ckd_errorf(err, "--set %s: %s: unknown key \"%s\"", assignment, path, key);
}

/* Walks `path` through the recipe (creating missing objects) and the schema
 * together, and stores value at its end; norm (512 bytes) gets the path as
 * the loader writes paths. On failure the recipe is left as it was. */
static int assign(json_t *recipe, const json_t *schema, const char *assignment, const char *path,
                  json_t *value, char *norm, ckd_error *err)
{
    const size_t cap = 512;
    const char *p = path;
    comp c;
    int rc;
    /* The syntax first, so that a malformed path changes nothing. */
    while ((rc = next_comp(&p, path, &c)) == 1)
        ;
    if (rc < 0 || !*path)
        return ckd_errorf(err, "--set %s: malformed path \"%s\" (write e.g. optim.lr=0.001 or "
                          "losses[1].weight=2)", assignment, path);
    json_t *cur = recipe, *made_in = NULL;
    const json_t *s = schema;
    char made_key[256] = "";
    size_t nlen = 0;
    norm[0] = '\0';
    p = path;
    while (next_comp(&p, path, &c) == 1) {
        char parent[512];
        snprintf(parent, sizeof parent, "%s", nlen ? norm : "the recipe");
        int last = !*p;
        if (c.is_index) {
            nlen += (size_t)snprintf(norm + nlen, cap - nlen, "[%zu]", c.index);
            if (!json_is_array(cur)) {
                rc = ckd_errorf(err, "--set %s: %s is %s, not an array", assignment, parent,
                                ckd_json_type_name(cur));
                break;
            }
            if (c.index >= json_array_size(cur)) {
                rc = ckd_errorf(err, "--set %s: %s: no such element (%s has %zu)", assignment,
                                norm, parent, json_array_size(cur));
                break;
            }
            s = s ? json_object_get(s, "items") : NULL;
            if (last)
                return json_array_set(cur, c.index, value)
                           ? ckd_errorf(err, "--set %s: out of memory", assignment)
                           : 0;
            cur = json_array_get(cur, c.index);
            continue;
        }
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)c.klen, c.key);
        nlen += (size_t)snprintf(norm + nlen, cap - nlen, "%s%s", nlen ? "." : "", key);
        if (json_is_array(cur) && strspn(key, "0123456789") == c.klen) {
            rc = ckd_errorf(err, "--set %s: %s is an array: write %s[%s]", assignment, parent,
                            parent, key);
            break;
        }
        if (!json_is_object(cur)) {
            rc = ckd_errorf(err, "--set %s: %s is %s, not an object", assignment, parent,
                            ckd_json_type_name(cur));
            break;
        }
        if ((rc = schema_member(s, key, norm, &s, assignment, err)))
            break;
        if (last && json_is_null(value)) {
            json_object_del(cur, key);
            return 0;
        }
        if (last)
            return json_object_set(cur, key, value)
                       ? ckd_errorf(err, "--set %s: out of memory", assignment)
                       : 0;
        json_t *next = json_object_get(cur, key);
        if (!next || json_is_null(next)) {
            if (*p == '[') {
                rc = ckd_errorf(err, "--set %s: %s: not in the recipe (set the whole array, "
                                "e.g. %s=[...])", assignment, norm, norm);
                break;
            }
            if (json_object_set_new(cur, key, next = json_object())) {
                rc = ckd_errorf(err, "--set %s: out of memory", assignment);
                break;
            }
            if (!made_in) {
                made_in = cur;
                snprintf(made_key, sizeof made_key, "%s", key);
            }
        }
        cur = next;
    }
    if (made_in) /* undo the objects this --set created */
        json_object_del(made_in, made_key);
    return -1;
}

static int apply_set(json_t *recipe, const json_t *schema, const char *assignment, char *norm,
                     ckd_error *err)
{
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return ckd_errorf(err, "--set %s: expected PATH=VALUE, e.g. optim.lr=0.001", assignment);
    char path[512];
    if ((size_t)(eq - assignment) >= sizeof path)
        return ckd_errorf(err, "--set %s: path too long", assignment);
    snprintf(path, sizeof path, "%.*s", (int)(eq - assignment), assignment);
    /* JSON if it parses (numbers, booleans, arrays, "strings"), else the text
     * itself, so that --set name=run1 needs no quotes. */
    int oom = 0;
    json_t *value = ckdi_json_loads(eq + 1, JSON_DECODE_ANY, NULL, &oom);
    if (!value && !oom)
        value = json_string(eq + 1);
    if (!value)
        return ckd_errorf(err, "--set %s: %s", assignment, oom ? "out of memory" : "the value is not valid UTF-8");
    int rc = assign(recipe, schema, assignment, path, value, norm, err);
    json_decref(value);
    return rc;
}

int ckd_recipe_set(json_t *recipe, const char *assignment, char *path_out, size_t cap,
                   ckd_error *err)
{
    json_t *schema = ckd_schema_parse(ckd_recipe_schema_text(), "the recipe schema", err);
    if (!schema)
        return -1;
    char norm[512];
    int rc = apply_set(recipe, schema, assignment, norm, err);
    json_decref(schema);
    if (!rc && path_out && cap)
        snprintf(path_out, cap, "%s", norm);
    return rc;
}

/* ---- canonical form ------------------------------------------------------------- */

/* An integral real as an integer (so that 1 and 1.0 are one value), or
 * NULL. Beyond 2^53 not every integer is a double, so those stay reals. */
static json_t *as_integer(const json_t *v)
{
    if (!json_is_real(v))
        return NULL;
    double x = json_real_value(v);
    if (fabs(x) >= 9007199254740992.0 || x != floor(x))
        return NULL;
    return json_integer((json_int_t)x);
}

/* Stores integral numbers as integers and returns the fewest significant
 * digits (at least `precision`) that reproduce every other number exactly:
 * the canonical form is then exact, and 0.1 still prints as 0.1 unless some
 * number really needs 17 digits. */
static int normalise_numbers(json_t *v, int precision)
{
    if (json_is_real(v)) {
        int p = 1;
        char buf[40];
        for (; p < 17; p++) {
            snprintf(buf, sizeof buf, "%.*g", p, json_real_value(v));
            if (strtod(buf, NULL) == json_real_value(v))
                break;
        }
        return p > precision ? p : precision;
    }
    const char *k;
    size_t i;
    json_t *e, *n;
    /* Replacing a member's value leaves the object's iteration intact. */
    json_object_foreach(v, k, e)
    {
        if ((n = as_integer(e)))
            json_object_set_new(v, k, n);
        else
            precision = normalise_numbers(e, precision);
    }
    json_array_foreach(v, i, e)
    {
        if ((n = as_integer(e)))
            json_array_set_new(v, i, n);
        else
            precision = normalise_numbers(e, precision);
    }
    return precision;
}

/* ---- the recipe ----------------------------------------------------------------- */

/* An embedded object as a layer: a copy of it, placed in its document. */
static json_t *embedded_layer(ckd_recipe *r, const ckd_recipe_part *p, ckd_error *err)
{
    const char *name = ckd_json_source_name(p->src);
    if (!json_is_object(p->obj))
        return ckd_json_errorf(ckd_json_source_locate, (void *)p->src, NULL, p->at, err,
                               "expected a recipe fragment (a JSON object), got %s",
                               ckd_json_type_name(p->obj)),
               NULL;
    if (json_object_get(p->obj, "extends")) {
        char at[1100];
        snprintf(at, sizeof at, "%s.extends", p->at);
        return ckd_json_errorf(ckd_json_source_locate, (void *)p->src, NULL, at, err,
                               "a recipe fragment here cannot extend a file; name the file as a "
                               "recipe of its own"),
               NULL;
    }
    json_t *doc = json_deep_copy(p->obj), *own = json_deep_copy(p->obj);
    layer L = {strdup(name), (ckd_json_source *)p->src, doc, NULL, strdup(p->at), 1};
    if (!doc || !own || !L.name || !L.prefix || add_layer(r, L, err)) {
        free_layer(&L);
        json_decref(own);
        ckd_errorf(err, "%s: out of memory", name);
        return NULL;
    }
    return own;
}

ckd_recipe *ckd_recipe_compose(const char *name, const ckd_recipe_part *parts, size_t n_parts,
                               const char *const *sets, size_t n_sets,
                               ckd_recipe_plugin_schema_fn plugin_schema, void *user, ckd_error *err)
{
    ckd_recipe *r = calloc(1, sizeof *r);
    json_t *schema = NULL;
    if (!r || !(r->path = strdup(name)) || !(r->root = json_object())) {
        ckd_recipe_free(r);
        ckd_errorf(err, "%s: out of memory", name);
        return NULL;
    }
    for (size_t i = 0; i < n_parts; i++) {
        json_t *doc = parts[i].path ? load_file(r, parts[i].path, NULL, 0, err)
                                    : embedded_layer(r, &parts[i], err);
        if (!doc)
            goto fail;
        int oom = ckdi_recipe_merge(r->root, doc);
        json_decref(doc);
        if (oom) {
            ckd_errorf(err, "%s: out of memory", name);
            goto fail;
        }
    }
    schema = ckd_schema_parse(ckd_recipe_schema_text(), "the recipe schema", err);
    if (!schema)
        goto fail;
    for (size_t i = 0; i < n_sets; i++) {
        char norm[512];
        if (apply_set(r->root, schema, sets[i], norm, err))
            goto fail;
        layer L = {malloc(strlen(sets[i]) + 7), NULL, NULL, strdup(norm), NULL, 0};
        if (L.name)
            snprintf(L.name, strlen(sets[i]) + 7, "--set %s", sets[i]);
        if (!L.name || !L.set_path || add_layer(r, L, err)) {
            free_layer(&L);
            ckd_errorf(err, "%s: out of memory", name);
            goto fail;
        }
    }
    /* Published weights by name, then the pins of each file's lock for the
     * artifacts they bring (the lock is keyed by their URLs). */
    if (ckdi_recipe_expand_pretrained(r->root, r->path, ckd_recipe_locate, r, err))
        goto fail;
    for (size_t i = 0; i < n_parts; i++) {
        char lp[4200];
        json_t *lock = NULL;
        if (!parts[i].path)
            continue;
        if (ckd_recipe_lock_path(parts[i].path, lp, sizeof lp, err) || !(lock = ckd_lock_load(lp, err)))
            goto fail;
        int oom = ckd_lock_apply(r->root, lock);
        json_decref(lock);
        if (oom) {
            ckd_errorf(err, "%s: out of memory", name);
            goto fail;
        }
    }
    if (ckd_recipe_validate(r->root, r->path, ckd_recipe_locate, r, plugin_schema, user, err))
        goto fail;
    r->precision = normalise_numbers(r->root, 1);
    r->canonical = json_dumps(r->root, JSON_SORT_KEYS | JSON_COMPACT |
                                           JSON_REAL_PRECISION(r->precision));
    if (!r->canonical) {
        ckd_errorf(err, "%s: out of memory", name);
        goto fail;
    }
    if (ckd_sha256_buffer(r->canonical, strlen(r->canonical), r->hash, err))
        goto fail;
    json_decref(schema);
    return r;
fail:
    json_decref(schema);
    ckd_recipe_free(r);
    return NULL;
}

ckd_recipe *ckd_recipe_load(const char *path, const char *const *sets, size_t n_sets,
                            ckd_recipe_plugin_schema_fn plugin_schema, void *user,
                            ckd_error *err)
{
    ckd_recipe_part file = {.path = path};
    return ckd_recipe_compose(path, &file, 1, sets, n_sets, plugin_schema, user, err);
}

void ckd_recipe_free(ckd_recipe *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_layers; i++)
        free_layer(&r->layers[i]);
    free(r->layers);
    json_decref(r->root);
    free(r->canonical);
    free(r->path);
    free(r);
}

const char *ckd_recipe_path(const ckd_recipe *r)
{
    return r->path;
}

json_t *ckd_recipe_json(const ckd_recipe *r)
{
    return r->root;
}

const char *ckd_recipe_canonical(const ckd_recipe *r)
{
    return r->canonical;
}

const char *ckd_recipe_hash(const ckd_recipe *r)
{
    return r->hash;
}

char *ckd_recipe_dump(const ckd_recipe *r)
{
    char *s = json_dumps(r->root, JSON_SORT_KEYS | JSON_INDENT(2) |
                                      JSON_REAL_PRECISION(r->precision));
    if (!s)
        return NULL;
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) {
        free(s);
        return NULL;
    }
    t[n] = '\n';
    t[n + 1] = '\0';
    return t;
}

int ckd_recipe_resolve_path(const ckd_recipe *r, const char *json_path, char *out, size_t cap,
                            ckd_error *err)
{
    const json_t *v = r->root;
    const char *p = json_path;
    comp c;
    int rc = 0;
    while (v && (rc = next_comp(&p, json_path, &c)) == 1)
        v = child(v, &c);
    if (rc < 0)
        v = NULL;
    if (!json_is_string(v))
        return ckd_recipe_errorf(r, json_path, err, "expected a file name, got %s",
                                 v ? ckd_json_type_name(v) : "nothing");
    const char *s = json_string_value(v);
    size_t got;
    long k = origin(r, json_path, &got);
    char *full = k >= 0 && r->layers[k].src ? relative_to(r->layers[k].name, s) : strdup(s);
    if (!full)
        return ckd_errorf(err, "out of memory");
    int too_long = snprintf(out, cap, "%s", full) >= (int)cap;
    free(full);
    return too_long ? ckd_recipe_errorf(r, json_path, err, "file name too long") : 0;
}
