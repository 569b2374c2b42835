/* A JSON-schema subset: enough to check recipes and plugin parameters, with
 * messages that say where the value is and what was expected. */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipkd/schema.h"
#include "core/json_oom.h"

typedef struct vctx {
    const char *file;
    ckd_json_locate_fn locate;
    void *user;
    ckd_error *err;
} vctx;

int ckd_json_errorf(ckd_json_locate_fn locate, void *locate_user, const char *file, const char *json_path,
                    ckd_error *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    int line = 0, col = 0;
    if (locate)
        locate(locate_user, json_path, &file, &line, &col);
    char what[CKD_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    char where[512] = "";
    if (file && *file && line > 0)
        snprintf(where, sizeof where, "%s:%d:%d: ", file, line, col);
    else if (file && *file)
        snprintf(where, sizeof where, "%s: ", file);
    return ckd_errorf(err, "%s%s: %s", where, json_path && *json_path ? json_path : "(top level)", what);
}

#define fail(v, path, ...) ckd_json_errorf((v)->locate, (v)->user, (v)->file, (path), (v)->err, __VA_ARGS__)

const char *ckd_json_type_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* A short rendering of a value for messages: "2.5", "\"abc\"", "an object". */
static const char *show(const json_t *j, char *buf, size_t cap)
{
    if (json_is_object(j) || json_is_array(j))
        return ckd_json_type_name(j);
    char *s = json_dumps(j, JSON_ENCODE_ANY | JSON_REAL_PRECISION(10));
    snprintf(buf, cap, "%s", s ? s : "?");
    free(s);
    return buf;
}

static int type_matches(const char *t, const json_t *j)
{
    if (!strcmp(t, "object")) return json_is_object(j);
    if (!strcmp(t, "array")) return json_is_array(j);
    if (!strcmp(t, "string")) return json_is_string(j);
    if (!strcmp(t, "boolean")) return json_is_boolean(j);
    if (!strcmp(t, "integer"))
        return json_is_integer(j) || (json_is_real(j) && floor(json_real_value(j)) == json_real_value(j));
    if (!strcmp(t, "number")) return json_is_number(j);
    if (!strcmp(t, "null")) return json_is_null(j);
    return 0;
}

static void join_path(char *out, size_t cap, const char *base, const char *key)
{
    snprintf(out, cap, "%s%s%s", base, *base ? "." : "", key);
}

static int validate(const vctx *v, const json_t *schema, json_t *value, const char *path);

static int check_type(const vctx *v, const json_t *schema, const json_t *value, const char *path)
{
    const json_t *t = json_object_get(schema, "type");
    if (!t)
        return 0;
    char buf[128], want[160] = "";
    if (json_is_string(t)) {
        if (type_matches(json_string_value(t), value))
            return 0;
        snprintf(want, sizeof want, "%s", json_string_value(t));
    } else if (json_is_array(t)) {
        size_t i;
        json_t *e;
        json_array_foreach(t, i, e)
        {
            if (json_is_string(e) && type_matches(json_string_value(e), value))
                return 0;
            size_t k = strlen(want);
            snprintf(want + k, sizeof want - k, "%s%s", i ? " or " : "", json_string_value(e));
        }
    } else {
        return 0;
    }
    return fail(v, path, "expected %s %s, got %s", strchr("aeiou", want[0]) ? "an" : "a", want,
                show(value, buf, sizeof buf));
}

static int check_number(const vctx *v, const json_t *schema, const json_t *value, const char *path)
{
    if (!json_is_number(value))
        return 0;
    double x = json_number_value(value);
    const json_t *mn = json_object_get(schema, "minimum"), *mx = json_object_get(schema, "maximum"),
                 *emn = json_object_get(schema, "exclusiveMinimum");
    if (mn && x < json_number_value(mn))
        return fail(v, path, "expected a value ≥ %g, got %g", json_number_value(mn), x);
    if (emn && x <= json_number_value(emn))
        return fail(v, path, "expected a value > %g, got %g", json_number_value(emn), x);
    if (mx && x > json_number_value(mx))
        return fail(v, path, "expected a value ≤ %g, got %g", json_number_value(mx), x);
    return 0;
}

static int check_enum(const vctx *v, const json_t *schema, const json_t *value, const char *path)
{
    const json_t *en = json_object_get(schema, "enum");
    if (!json_is_array(en))
        return 0;
    size_t i;
    json_t *e;
    json_array_foreach(en, i, e) if (json_equal(e, (json_t *)value)) return 0;
    char list[512] = "", buf[128];
    const char *names[64];
    size_t n = 0;
    json_array_foreach(en, i, e)
    {
        size_t k = strlen(list);
        snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", show(e, buf, sizeof buf));
        if (json_is_string(e) && n < 64)
            names[n++] = json_string_value(e);
    }
    const char *near = json_is_string(value) ? ckd_suggest(json_string_value(value), names, n) : NULL;
    char hint[160] = "";
    if (near)
        snprintf(hint, sizeof hint, " (did you mean \"%s\"?)", near);
    return fail(v, path, "expected one of %s, got %s%s", list, show(value, buf, sizeof buf), hint);
}

static int check_object(const vctx *v, const json_t *schema, json_t *value, const char *path)
{
    if (!json_is_object(value))
        return 0;
    const json_t *props = json_object_get(schema, "properties");
    const json_t *extra = json_object_get(schema, "additionalProperties");
    char sub[512];
    /* Unknown keys first: a misspelt key is the likeliest mistake, and its
     * "did you mean" explains a "missing required key" that would follow. */
    const char *key;
    json_t *val;
    json_object_foreach(value, key, val)
    {
        join_path(sub, sizeof sub, path, key);
        const json_t *ps = props ? json_object_get(props, key) : NULL;
        if (ps) {
            if (validate(v, ps, val, sub))
                return -1;
        } else if (json_is_object(extra)) {
            if (validate(v, extra, val, sub))
                return -1;
        } else if (!json_is_true(extra)) {
            const char *names[256];
            size_t n = 0;
            const char *k2;
            json_t *v2;
            if (props)
                json_object_foreach((json_t *)props, k2, v2) if (n < 256) names[n++] = k2;
            const char *near = ckd_suggest(key, names, n);
            char known[512] = "";
            for (size_t i = 0; i < n; i++) {
                size_t k = strlen(known);
                snprintf(known + k, sizeof known - k, "%s%s", i ? ", " : "", names[i]);
            }
            if (near)
                return fail(v, sub, "unknown key \"%s\" (did you mean \"%s\"?)", key, near);
            return fail(v, sub, "unknown key \"%s\" (known keys: %s)", key, n ? known : "none");
        }
    }
    const json_t *req = json_object_get(schema, "required");
    size_t i;
    json_t *r;
    json_array_foreach(req, i, r)
    {
        if (json_is_string(r) && !json_object_get(value, json_string_value(r)))
            return fail(v, path, "missing required key \"%s\"", json_string_value(r));
    }
    /* Defaults last, so that a filled-in default is never mistaken for user input. */
    const char *pk;
    json_t *ps;
    json_object_foreach((json_t *)props, pk, ps)
    {
        const json_t *def = json_object_get(ps, "default");
        if (def && !json_object_get(value, pk)) {
            /* A default goes through its own schema too, so that an object
             * default gets its members' defaults filled in. */
            json_t *copy = json_deep_copy(def);
            join_path(sub, sizeof sub, path, pk);
            if (!copy || json_object_set_new(value, pk, copy))
                return fail(v, sub, "out of memory filling in the default");
            if (validate(v, ps, copy, sub))
                return -1;
        }
    }
    return 0;
}

static int check_array(const vctx *v, const json_t *schema, json_t *value, const char *path)
{
    const json_t *items = json_object_get(schema, "items");
    if (!json_is_array(value) || !json_is_object(items))
        return 0;
    size_t i;
    json_t *e;
    char sub[512];
    json_array_foreach(value, i, e)
    {
        snprintf(sub, sizeof sub, "%s[%zu]", path, i);
        if (validate(v, items, e, sub))
            return -1;
    }
    return 0;
}

static int validate(const vctx *v, const json_t *schema, json_t *value, const char *path)
{
    if (!json_is_object(schema))
        return 0;
    if (check_type(v, schema, value, path) || check_enum(v, schema, value, path) ||
        check_number(v, schema, value, path) || check_object(v, schema, value, path) ||
        check_array(v, schema, value, path))
        return -1;
    return 0;
}

int ckd_schema_apply(const json_t *schema, json_t *value, const char *file, const char *path,
                     ckd_json_locate_fn locate, void *locate_user, ckd_error *err)
{
    vctx v = {file, locate, locate_user, err};
    return validate(&v, schema, value, path ? path : "");
}

json_t *ckd_schema_parse(const char *text, const char *what, ckd_error *err)
{
    if (!text || !*text)
        text = "{}";
    json_error_t je;
    int oom = 0;
    json_t *s = ckdi_json_loads(text, 0, &je, &oom);
    if (!s && oom)
        return ckd_errorf(err, "%s: out of memory reading its parameter schema", what), NULL;
    if (!s) {
        ckd_errorf(err, "%s: parameter schema is not valid JSON: line %d column %d: %s", what, je.line, je.column,
                   je.text);
        return NULL;
    }
    if (!json_is_object(s)) {
        json_decref(s);
        ckd_errorf(err, "%s: parameter schema must be a JSON object", what);
        return NULL;
    }
    return s;
}

/* Edit distance with adjacent transpositions counted as one edit (optimal
 * string alignment), so that "cdr" is one step from "crd". */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return (size_t)-1;
    size_t d[65][65];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[la][lb];
}

const char *ckd_suggest(const char *word, const char *const *candidates, size_t n)
{
    size_t best = (size_t)-1, len = strlen(word);
    size_t limit = len / 3 > 2 ? len / 3 : 2;
    const char *pick = NULL;
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(word, candidates[i]);
        if (d < best) {
            best = d;
            pick = candidates[i];
        }
    }
    return best <= limit ? pick : NULL;
}
