/* JSON with positions. jansson parses and reports line:column for syntax
 * errors, but the values it returns carry no position, and every later error
 * (a wrong type, an unknown key, a parameter out of range) must still name
 * file:line:column. So once jansson has accepted the text, a small scanner
 * walks the same text and records, for each value, its JSON path and where
 * it starts. The scanner can trust the text to be valid JSON: jansson said so. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipkd/recipe.h"
#include "core/json_oom.h"

struct ckd_json_source {
    char *name;
    /* path -> (line << 32 | col): a jansson object is a ready hash table. */
    json_t *where;
};

/* ---- the scanner ----------------------------------------------------------- */

typedef struct scan {
    const char *p, *end;
    int line, col;    /* of *p, 1-based */
    char *path;       /* JSON path of the value being scanned (grows) */
    size_t len, cap;
    json_t *where;
    int oom;
} scan;

static void advance(scan *s)
{
    if (*s->p == '\n') {
        s->line++;
        s->col = 1;
    } else if (((unsigned char)*s->p & 0xC0) != 0x80) {
        /* UTF-8 continuation bytes belong to the character before them. */
        s->col++;
    }
    s->p++;
}

static void skip_ws(scan *s)
{
    while (s->p < s->end && strchr(" \t\r\n", *s->p) && *s->p)
        advance(s);
}

static void record(scan *s, int line, int col)
{
    json_int_t at = ((json_int_t)line << 32) | (json_int_t)col;
    if (json_object_set_new(s->where, s->path, json_integer(at)))
        s->oom = 1;
}

/* Appends ".key", "key" (at the root) or "[i]" to the path; returns the old
 * length so that the caller can cut it back. */
static size_t push(scan *s, const char *key, size_t klen, long index)
{
    size_t old = s->len, need = s->len + klen + 32;
    if (need > s->cap) {
        size_t cap = need * 2;
        char *p = realloc(s->path, cap);
        if (!p) {
            s->oom = 1;
            return old;
        }
        s->path = p;
        s->cap = cap;
    }
    if (key) {
        if (s->len)
            s->path[s->len++] = '.';
        memcpy(s->path + s->len, key, klen);
        s->len += klen;
        s->path[s->len] = '\0';
    } else {
        s->len += (size_t)snprintf(s->path + s->len, s->cap - s->len, "[%ld]", index);
    }
    return old;
}

static void pop(scan *s, size_t old)
{
    s->len = old;
    s->path[old] = '\0';
}

/* Skips a string token; *has_escape tells whether its raw text differs from
 * its value. */
static void skip_string(scan *s, int *has_escape)
{
    *has_escape = 0;
    advance(s); /* the opening quote */
    while (s->p < s->end && *s->p != '"') {
        if (*s->p == '\\') {
            *has_escape = 1;
            advance(s);
            if (s->p >= s->end)
                return;
        }
        advance(s);
    }
    if (s->p < s->end)
        advance(s);
}

static void scan_value(scan *s, int depth);

static void scan_object(scan *s, int depth)
{
    advance(s); /* { */
    for (const char *last = NULL; s->p != last;) { /* each turn consumes text, or the scan stops */
        last = s->p;
        skip_ws(s);
        /* Out of memory: scan_value no longer advances, so stop here or
         * loop for ever (recording positions into ever more memory). */
        if (s->p >= s->end || *s->p == '}' || s->oom)
            break;
        if (*s->p == ',') {
            advance(s);
            continue;
        }
        int line = s->line, col = s->col, esc;
        const char *k0 = s->p;
        skip_string(s, &esc);
        size_t old;
        if (esc) {
            /* Rare in recipes; jansson decodes the escapes for us. */
            json_t *k = ckdi_json_loadb(k0, (size_t)(s->p - k0), JSON_DECODE_ANY, NULL, NULL);
            const char *kv = json_string_value(k);
            old = push(s, kv ? kv : "", kv ? strlen(kv) : 0, 0);
            json_decref(k);
        } else {
            old = push(s, k0 + 1, (size_t)(s->p - k0 - 2), 0);
        }
        record(s, line, col);
        skip_ws(s);
        if (s->p < s->end && *s->p == ':')
            advance(s);
        skip_ws(s);
        scan_value(s, depth + 1);
        pop(s, old);
    }
    if (s->p < s->end)
        advance(s);
}

static void scan_array(scan *s, int depth)
{
    advance(s); /* [ */
    long i = 0;
    for (const char *last = NULL; s->p != last;) {
        last = s->p;
        skip_ws(s);
        if (s->p >= s->end || *s->p == ']' || s->oom)
            break;
        if (*s->p == ',') {
            advance(s);
            continue;
        }
        size_t old = push(s, NULL, 0, i++);
        record(s, s->line, s->col);
        scan_value(s, depth + 1);
        pop(s, old);
    }
    if (s->p < s->end)
        advance(s);
}

/* Scans the value at s->p (its position is recorded by the caller). */
static void scan_value(scan *s, int depth)
{
    if (s->p >= s->end || s->oom || depth > 2048)
        return;
    int esc;
    switch (*s->p) {
    case '{': scan_object(s, depth); break;
    case '[': scan_array(s, depth); break;
    case '"': skip_string(s, &esc); break;
    default: /* number, true, false, null (strchr finds a NUL byte too: test it apart) */
        while (s->p < s->end && (!*s->p || !strchr(",]} \t\r\n", *s->p)))
            advance(s);
    }
}

/* ---- loading --------------------------------------------------------------- */

ckd_json_source *ckd_json_source_parse(const char *name, const char *text, size_t len,
                                       json_t **root_out, ckd_error *err)
{
    json_error_t je;
    int oom = 0;
    json_t *root = ckdi_json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je, &oom);
    if (!root && oom)
        return ckd_errorf(err, "%s: out of memory reading it", name), NULL;
    if (!root) {
        if (je.line > 0)
            ckd_errorf(err, "%s:%d:%d: %s", name, je.line, je.column, je.text);
        else
            ckd_errorf(err, "%s: %s", name, je.text);
        return NULL;
    }
    ckd_json_source *src = calloc(1, sizeof *src);
    scan s = {.p = text, .end = text + len, .line = 1, .col = 1};
    s.where = json_object();
    s.cap = 256;
    s.path = malloc(s.cap);
    if (!src || !s.where || !s.path || !(src->name = strdup(name)))
        goto oom;
    s.path[0] = '\0';
    skip_ws(&s);
    record(&s, s.line, s.col);
    scan_value(&s, 0);
    if (s.oom)
        goto oom;
    free(s.path);
    src->where = s.where;
    *root_out = root;
    return src;
oom:
    free(s.path);
    json_decref(s.where);
    json_decref(root);
    if (src)
        free(src->name);
    free(src);
    ckd_errorf(err, "%s: out of memory", name);
    return NULL;
}

ckd_json_source *ckd_json_source_load(const char *path, json_t **root_out, ckd_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        ckd_errorf(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 16384;
            char *t = realloc(text, cap);
            if (!t) {
                free(text);
                fclose(f);
                ckd_errorf(err, "%s: out of memory", path);
                return NULL;
            }
            text = t;
        }
        size_t n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    int bad = ferror(f);
    int e = errno;
    fclose(f);
    if (bad) {
        free(text);
        ckd_errorf(err, "%s: cannot read: %s", path, strerror(e));
        return NULL;
    }
    ckd_json_source *src = ckd_json_source_parse(path, text, len, root_out, err);
    free(text);
    return src;
}

void ckd_json_source_free(ckd_json_source *s)
{
    if (!s)
        return;
    json_decref(s->where);
    free(s->name);
    free(s);
}

const char *ckd_json_source_name(const ckd_json_source *s)
{
    return s->name;
}

int ckd_json_source_find(const ckd_json_source *s, const char *json_path, int *line, int *col)
{
    json_t *at = json_object_get(s->where, json_path ? json_path : "");
    if (!at)
        return 0;
    json_int_t v = json_integer_value(at);
    *line = (int)(v >> 32);
    *col = (int)(v & 0xFFFFFFFF);
    return 1;
}

int ckd_json_source_locate(void *source, const char *json_path, const char **file, int *line,
                           int *col)
{
    const ckd_json_source *s = source;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", json_path ? json_path : "");
    *file = s->name;
    for (;;) {
        if (ckd_json_source_find(s, buf, line, col))
            return 1;
        /* Cut the last member or element off: "a.b[2]" -> "a.b" -> "a" -> "". */
        if (!*buf)
            return 0;
        char *cut = strrchr(buf, '.'), *br = strrchr(buf, '[');
        if (!cut || (br && br > cut))
            cut = br;
        *(cut ? cut : buf) = '\0';
    }
}
