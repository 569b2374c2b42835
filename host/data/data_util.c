/* Helpers the readers share: paths and artifacts, UTF-8, text files, string
 * lists, seed mixing. */
#include "config.h"

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "data_internal.h"

/* Text files that hold class names or templates are small; anything past
 * this is a wrong path, not a list. */
#define MAX_TEXT_BYTES ((size_t)64 << 20)

int ckdd_join(const char *dir, const char *rel, char *out, size_t cap, ckd_error *err)
{
    int n;
    if (rel[0] == '/' || !dir || !*dir)
        n = snprintf(out, cap, "%s", rel);
    else
        n = snprintf(out, cap, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", rel);
    if (n < 0 || (size_t)n >= cap)
        return ckd_errorf(err, "path %s/%s is too long", dir ? dir : "", rel);
    return 0;
}

#ifndef CKD_DATA_DIR
#define CKD_DATA_DIR "."
#endif

int ckd_shipped_path(const char *rel, char *out, size_t cap, ckd_error *err)
{
    const char *dir = getenv("CLIPKD_DATA_DIR"), *up = "";
    if (!dir || !*dir)
        dir = CKD_DATA_DIR;
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    if (n >= 11 && !strncmp(dir + n - 11, "models/clip", 11) && (n == 11 || dir[n - 12] == '/'))
        up = "/../..";
    int k = snprintf(out, cap, "%.*s%s/%s", (int)n, dir, up, rel);
    if (k < 0 || (size_t)k >= cap)
        return ckd_errorf(err, "%s: the path of the shipped %s is too long", dir, rel);
    return 0;
}

char *ckdd_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

int ckdd_resolve(const ckdd_env *env, const json_t *spec, const char *key, char *out, size_t cap,
                 ckd_error *err)
{
    const json_t *v = json_object_get(spec, key);
    if (json_is_string(v)) {
        if (!*json_string_value(v))
            return ckd_errorf(err, "\"%s\" is an empty file name", key);
        return ckdd_join(env->base_dir, json_string_value(v), out, cap, err);
    }
    if (!json_is_object(v))
        return ckd_errorf(err, "\"%s\": expected a file name or an artifact object", key);
    char where[64];
    snprintf(where, sizeof where, "\"%s\"", key);
    ckd_artifact a;
    if (ckd_artifact_from_json(v, &a, where, err) < 0)
        return -1;
    int rc = ckd_fetch(env->fetch, &a, out, cap, err);
    ckd_artifact_free(&a);
    return rc < 0 ? ckd_error_prefix(err, "\"%s\"", key) : 0;
}

int ckdd_resolve_file_and_root(const ckdd_env *env, const json_t *spec, char **file, char **root,
                               ckd_error *err)
{
    char p[4096];
    *file = *root = NULL;
    if (ckdd_resolve(env, spec, "path", p, sizeof p, err) < 0)
        return -1;
    if (!(*file = strdup(p)))
        return ckd_errorf(err, "out of memory");
    const char *r = json_string_value(json_object_get(spec, "root"));
    if (r && ckdd_join(env->base_dir, r, p, sizeof p, err) < 0) {
        free(*file);
        *file = NULL;
        return -1;
    }
    if (!(*root = r ? strdup(p) : ckdd_dirname(*file))) {
        free(*file);
        *file = NULL;
        return ckd_errorf(err, "out of memory");
    }
    return 0;
}

int ckdd_utf8_valid(const char *s, size_t n, size_t *bad)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            goto fail;
        }
        if (n - i < len)
            goto fail;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                goto fail;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            goto fail;
        i += len;
    }
    return 1;
fail:
    if (bad)
        *bad = i;
    return 0;
}

int ckdd_read_text(const char *path, char **buf, size_t *len, ckd_error *err)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return ckd_errorf(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > MAX_TEXT_BYTES) {
        fclose(f);
        return ckd_errorf(err, "%s: not a regular file of at most %zu MiB", path,
                          MAX_TEXT_BYTES >> 20);
    }
    char *b = malloc((size_t)st.st_size + 1);
    if (!b) {
        fclose(f);
        return ckd_errorf(err, "%s: out of memory", path);
    }
    size_t got = fread(b, 1, (size_t)st.st_size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != (size_t)st.st_size) {
        free(b);
        return ckd_errorf(err, "%s: read error after %zu bytes", path, got);
    }
    b[got] = '\0';
    *buf = b;
    *len = got;
    return 0;
}

int ckdd_read_lines(const char *path, char ***lines, size_t *n, ckd_error *err)
{
    *lines = NULL;
    *n = 0;
    char *text;
    size_t len;
    if (ckdd_read_text(path, &text, &len, err) < 0)
        return -1;
    ckdd_strvec sv = {0};
    size_t lineno = 0;
    for (char *p = text; p < text + len;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        char *end = nl ? nl : text + len;
        lineno++;
        char *e = end;
        while (e > p && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
            e--;
        size_t bad;
        if (!ckdd_utf8_valid(p, (size_t)(e - p), &bad)) {
            ckdd_strvec_free(&sv);
            free(text);
            return ckd_errorf(err, "%s:%zu: invalid UTF-8 at byte %zu of the line", path, lineno,
                              bad + 1);
        }
        if (e > p && ckdd_strvec_push(&sv, p, (size_t)(e - p)) < 0) {
            ckdd_strvec_free(&sv);
            free(text);
            return ckd_errorf(err, "%s: out of memory", path);
        }
        p = nl ? nl + 1 : end;
    }
    free(text);
    *lines = sv.v;
    *n = sv.n;
    return 0;
}

int ckdd_strvec_push(ckdd_strvec *sv, const char *s, size_t len)
{
    if (sv->n == sv->cap) {
        size_t cap = sv->cap ? sv->cap * 2 : 16;
        char **v = realloc(sv->v, cap * sizeof *v);
        if (!v)
            return -1;
        sv->v = v;
        sv->cap = cap;
    }
    char *c = strndup(s, len);
    if (!c)
        return -1;
    sv->v[sv->n++] = c;
    return 0;
}

void ckdd_strvec_free(ckdd_strvec *sv)
{
    ckd_strings_free(sv->v, sv->n);
    memset(sv, 0, sizeof *sv);
}

char *ckdd_format_template(const char *tmpl, const char *name)
{
    size_t nl = strlen(name), count = 0;
    for (const char *p = strstr(tmpl, "{}"); p; p = strstr(p + 2, "{}"))
        count++;
    char *out = malloc(strlen(tmpl) + count * nl + 1);
    if (!out)
        return NULL;
    char *o = out;
    for (const char *p = tmpl; *p;) {
        if (p[0] == '{' && p[1] == '}') {
            memcpy(o, name, nl);
            o += nl;
            p += 2;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

int ckdd_sample_add_caption(ckd_sample *s, const char *text, size_t len, ckd_error *err)
{
    char **v = realloc(s->captions, (s->n_captions + 1) * sizeof *v);
    if (!v)
        return ckd_errorf(err, "out of memory");
    s->captions = v;
    if (!(v[s->n_captions] = strndup(text, len)))
        return ckd_errorf(err, "out of memory");
    s->n_captions++;
    return 0;
}

uint64_t ckdd_mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t ckdd_next(uint64_t *state)
{
    uint64_t r = ckdd_mix(*state);
    *state += 0x9E3779B97F4A7C15ull;
    return r;
}

int ckdd_ext_eq(const char *ext, size_t len, const char *name)
{
    return strlen(name) == len && !strncasecmp(ext, name, len);
}
