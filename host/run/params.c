/* ckd_params: a plugin's validated parameters, read through typed getters so
 * that the plugin ABI does not expose jansson. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "clipkd/registry.h"
#include "clipkd/schema.h"
#include "core/json_oom.h"

struct ckd_params {
    json_t *obj;
};

ckd_params *ckd_params_wrap(json_t *obj)
{
    ckd_params *p = malloc(sizeof *p);
    if (!p)
        return NULL;
    p->obj = obj ? json_incref(obj) : json_object();
    return p;
}

void ckd_params_free(ckd_params *p)
{
    if (!p)
        return;
    json_decref(p->obj);
    free(p);
}

const json_t *ckd_params_json(const ckd_params *p) { return p->obj; }

/* Looks up "a.b.c" through nested objects (model configs are nested). */
static const json_t *lookup(const ckd_params *p, const char *key)
{
    if (!p)
        return NULL;
    const json_t *cur = p->obj;
    char part[128];
    while (cur && *key) {
        const char *dot = strchr(key, '.');
        size_t n = dot ? (size_t)(dot - key) : strlen(key);
        if (n >= sizeof part)
            return NULL;
        memcpy(part, key, n);
        part[n] = '\0';
        if (json_is_array(cur)) { /* "layers.0": an array's element by index */
            char *end;
            unsigned long i = strtoul(part, &end, 10);
            cur = *part && !*end ? json_array_get(cur, i) : NULL;
        } else {
            cur = json_object_get(cur, part);
        }
        key += n + (dot ? 1 : 0);
    }
    return cur;
}

int ckd_params_has(const ckd_params *p, const char *key) { return lookup(p, key) != NULL; }

double ckd_params_number(const ckd_params *p, const char *key, double fallback)
{
    const json_t *v = lookup(p, key);
    return json_is_number(v) ? json_number_value(v) : fallback;
}

const char *ckd_params_string(const ckd_params *p, const char *key, const char *fallback)
{
    const json_t *v = lookup(p, key);
    return json_is_string(v) ? json_string_value(v) : fallback;
}

int ckd_params_bool(const ckd_params *p, const char *key, int fallback)
{
    const json_t *v = lookup(p, key);
    return json_is_boolean(v) ? json_is_true(v) : fallback;
}

ckd_params *ckd_params_for(const ckd_plugin *pl, const json_t *params, const char *where, ckd_error *err)
{
    if (params && !json_is_object(params)) {
        ckd_errorf(err, "%s: parameters of %s must be a JSON object", where, pl->desc->name);
        return NULL;
    }
    json_t *obj = params ? json_deep_copy(params) : json_object();
    if (!obj) {
        ckd_errorf(err, "%s: out of memory", where);
        return NULL;
    }
    if (ckd_schema_apply(pl->schema, obj, NULL, where, NULL, NULL, err)) {
        json_decref(obj);
        return NULL;
    }
    ckd_params *p = ckd_params_wrap(obj);
    json_decref(obj);
    if (!p)
        ckd_errorf(err, "%s: out of memory", where);
    return p;
}

int ckd_params_set(json_t *obj, const char *assignment, ckd_error *err)
{
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return ckd_errorf(err, "--set %s: expected KEY=VALUE", assignment);
    char key[256];
    size_t klen = (size_t)(eq - assignment);
    if (klen >= sizeof key)
        return ckd_errorf(err, "--set %s: key too long", assignment);
    memcpy(key, assignment, klen);
    key[klen] = '\0';
    if (strchr(key, '.'))
        return ckd_errorf(err, "--set %s: a plugin's parameters are flat; '%s' has a dot", assignment, key);
    int oom = 0;
    json_t *val = ckdi_json_loads(eq + 1, JSON_DECODE_ANY, NULL, &oom);
    if (!val && !oom)
        val = json_string(eq + 1);
    if (!val || json_object_set_new(obj, key, val))
        return ckd_errorf(err, "--set %s: out of memory", assignment);
    return 0;
}
