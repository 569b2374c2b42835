/* The csv reader: a table of image paths and captions (CC3M/CC12M as CLIP-KD
 * prepares them: tab-separated "filepath<TAB>title" with a header row).
 *
 * The table is memory-mapped and parsed once at open, which checks every row
 * (columns present, caption UTF-8, label an integer) and keeps only where
 * each row starts and on which line, 12 bytes a row; get() parses its row
 * again. Fields may be quoted ("…", with "" for a quote) when "quotes" is on,
 * as pandas and Python's csv write them; a quoted field may span lines, and
 * a row is named by the line it starts on. */
#include "config.h"

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data_internal.h"

#define COL_IMAGE 0
#define COL_CAPTION 1
#define COL_LABEL 2

typedef struct csv_state {
    char *path, *root;
    const char *text;       /* the mapping */
    size_t len;
    char sep;
    int quotes;
    int col[3];             /* column index per role; -1: none */
    char col_name[3][128];  /* for messages */
    int need;               /* columns a row must have */
    uint64_t *offsets;
    uint32_t *lines;
    size_t n;
} csv_state;

typedef struct field {
    const char *p;
    size_t len;
    int quoted;             /* "" inside stands for " */
} field;

/* Parses the record at *pos: fills up to max fields, counts all of them in
 * *nf, advances *pos past the record's line end and *line by the lines it
 * spans. Returns 0, or -1 with err naming the line and column. */
static int parse_record(const csv_state *s, size_t *pos, size_t *line, field *f, int max,
                        int *nf, ckd_error *err)
{
    const char *t = s->text;
    size_t i = *pos, start_line = *line;
    int k = 0;
    for (;;) {
        field cur = {t + i, 0, 0};
        if (s->quotes && i < s->len && t[i] == '"') {
            size_t j = i + 1;
            for (;;) {
                if (j >= s->len)
                    return ckd_errorf(err, "%s:%zu: column %d: the quoted field never ends", s->path,
                                      start_line, k + 1);
                if (t[j] == '"') {
                    if (j + 1 < s->len && t[j + 1] == '"') {
                        j += 2;
                        continue;
                    }
                    break;
                }
                if (t[j] == '\n')
                    (*line)++;
                j++;
            }
            cur = (field){t + i + 1, j - i - 1, 1};
            i = j + 1;
            if (i < s->len && t[i] == '\r' && (i + 1 >= s->len || t[i + 1] == '\n'))
                i++;
            if (i < s->len && t[i] != s->sep && t[i] != '\n')
                return ckd_errorf(err, "%s:%zu: column %d: unexpected '%c' after a closing quote "
                                       "(set \"quotes\": false for unquoted tables)",
                                  s->path, *line, k + 1, t[i]);
        } else {
            size_t j = i;
            while (j < s->len && t[j] != s->sep && t[j] != '\n')
                j++;
            size_t e = j;
            if (j < s->len && t[j] == '\n' && e > i && t[e - 1] == '\r')
                e--;
            cur = (field){t + i, e - i, 0};
            i = j;
        }
        if (k < max)
            f[k] = cur;
        k++;
        if (i < s->len && t[i] == s->sep) {
            i++;
            continue;
        }
        if (i < s->len) /* '\n' */
            i++;
        break;
    }
    (*line)++;
    *pos = i;
    *nf = k;
    return 0;
}

/* A field's text with quotes undone, NUL-terminated, malloc'd. */
static char *field_text(const field *f)
{
    char *out = malloc(f->len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < f->len; i++) {
        out[o++] = f->p[i];
        if (f->quoted && f->p[i] == '"' && i + 1 < f->len && f->p[i + 1] == '"')
            i++;
    }
    out[o] = '\0';
    return out;
}

static int is_blank_line(const csv_state *s, size_t pos)
{
    return s->text[pos] == '\n' || (s->text[pos] == '\r' && pos + 1 < s->len && s->text[pos + 1] == '\n');
}

static const char *const roles[3] = {"image", "caption", "label"};

/* Column roles from the spec: indices, or names looked up in the header. */
static int find_columns(csv_state *s, const json_t *spec, const field *hdr, int n_hdr,
                        ckd_error *err)
{
    s->need = 0;
    for (int r = 0; r < 3; r++) {
        const json_t *v = json_object_get(spec, roles[r]);
        s->col[r] = -1;
        if (!v)
            continue;
        if (json_is_integer(v)) {
            s->col[r] = (int)json_integer_value(v);
            snprintf(s->col_name[r], sizeof s->col_name[r], "%d", s->col[r]);
            if (hdr && s->col[r] < n_hdr) {
                char *name = field_text(&hdr[s->col[r]]);
                snprintf(s->col_name[r], sizeof s->col_name[r], "%d (\"%.100s\")", s->col[r],
                         name ? name : "?");
                free(name);
            }
        } else {
            const char *want = json_string_value(v);
            snprintf(s->col_name[r], sizeof s->col_name[r], "\"%s\"", want);
            const char *names[256];
            char *owned[256];
            int m = n_hdr < 256 ? n_hdr : 256;
            for (int c = 0; c < m; c++) {
                owned[c] = field_text(&hdr[c]);
                names[c] = owned[c] ? owned[c] : "";
                if (s->col[r] < 0 && !strcmp(names[c], want))
                    s->col[r] = c;
            }
            if (s->col[r] < 0) {
                char list[512] = "";
                for (int c = 0; c < m; c++) {
                    size_t k = strlen(list);
                    snprintf(list + k, sizeof list - k, "%s\"%s\"", c ? ", " : "", names[c]);
                }
                const char *near = ckd_suggest(want, names, (size_t)m);
                ckd_errorf(err, "%s:1: no column named \"%s\" for the %s%s%s%s; the header has %s",
                           s->path, want, roles[r], near ? " (did you mean \"" : "",
                           near ? near : "", near ? "\"?)" : "", list);
            }
            for (int c = 0; c < m; c++)
                free(owned[c]);
            if (s->col[r] < 0)
                return -1;
        }
        if (s->col[r] + 1 > s->need)
            s->need = s->col[r] + 1;
    }
    return 0;
}

/* Checks one data row; fields f hold at least s->need entries. */
static int check_row(const csv_state *s, size_t line, const field *f, int nf, ckd_error *err)
{
    if (nf < s->need) {
        int r = s->col[COL_IMAGE] >= nf ? COL_IMAGE : s->col[COL_CAPTION] >= nf ? COL_CAPTION
                                                                                  : COL_LABEL;
        return ckd_errorf(err, "%s:%zu: expected at least %d columns separated by '%s', got %d "
                               "(no %s column %s)",
                          s->path, line, s->need, s->sep == '\t' ? "\\t" : (char[2]){s->sep, 0},
                          nf, roles[r], s->col_name[r]);
    }
    const field *im = &f[s->col[COL_IMAGE]], *cap = &f[s->col[COL_CAPTION]];
    if (im->len == 0)
        return ckd_errorf(err, "%s:%zu: the image column %s is empty", s->path, line,
                          s->col_name[COL_IMAGE]);
    size_t bad;
    if (!ckdd_utf8_valid(cap->p, cap->len, &bad))
        return ckd_errorf(err, "%s:%zu: the caption column %s holds invalid UTF-8 (byte %zu of "
                               "the field)",
                          s->path, line, s->col_name[COL_CAPTION], bad + 1);
    if (memchr(cap->p, '\0', cap->len) || memchr(im->p, '\0', im->len))
        return ckd_errorf(err, "%s:%zu: a NUL byte inside the row", s->path, line);
    if (s->col[COL_LABEL] >= 0) {
        const field *lb = &f[s->col[COL_LABEL]];
        char buf[24];
        int ok = lb->len > 0 && lb->len < sizeof buf;
        if (ok) {
            memcpy(buf, lb->p, lb->len);
            buf[lb->len] = '\0';
            char *end;
            errno = 0;
            long v = strtol(buf, &end, 10);
            ok = *end == '\0' && errno == 0 && v >= 0 && v <= INT32_MAX;
        }
        if (!ok)
            return ckd_errorf(err, "%s:%zu: the label column %s holds \"%.*s\", expected a class "
                                   "index (an integer >= 0)",
                              s->path, line, s->col_name[COL_LABEL], (int)(lb->len > 40 ? 40 : lb->len),
                              lb->p);
    }
    return 0;
}

static void csv_close(void *state)
{
    csv_state *s = state;
    if (s->text && s->len)
        munmap((void *)s->text, s->len);
    free(s->path);
    free(s->root);
    free(s->offsets);
    free(s->lines);
    free(s);
}

static int map_file(csv_state *s, ckd_error *err)
{
    int fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ckd_errorf(err, "%s: cannot open: %s", s->path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ckd_errorf(err, "%s: not a regular file", s->path);
    }
    s->len = (size_t)st.st_size;
    s->text = "";
    if (s->len) {
        void *m = mmap(NULL, s->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            s->len = 0;
            return ckd_errorf(err, "%s: cannot map: %s", s->path, strerror(errno));
        }
        s->text = m;
    }
    close(fd);
    return 0;
}

static void *csv_open(ckd_dataset *ds, const json_t *spec, const ckdd_env *env, ckd_error *err)
{
    csv_state *s = calloc(1, sizeof *s);
    if (!s) {
        ckd_errorf(err, "out of memory");
        return NULL;
    }
    s->sep = json_string_value(json_object_get(spec, "separator"))[0];
    s->quotes = json_is_true(json_object_get(spec, "quotes"));
    if (ckdd_resolve_file_and_root(env, spec, &s->path, &s->root, err) < 0 || map_file(s, err) < 0)
        goto fail;

    size_t pos = 0, line = 1, cap = 0;
    field f[64];
    int nf;
    int header = json_is_true(json_object_get(spec, "header"));
    if (header) {
        if (s->len == 0) {
            ckd_errorf(err, "%s: empty file, expected a header row", s->path);
            goto fail;
        }
        field hdr[256];
        if (parse_record(s, &pos, &line, hdr, 256, &nf, err) < 0 ||
            find_columns(s, spec, hdr, nf < 256 ? nf : 256, err) < 0)
            goto fail;
    } else if (find_columns(s, spec, NULL, 0, err) < 0) {
        goto fail;
    }
    if (s->need > 64) {
        ckd_errorf(err, "%s: column indices above 63 are not supported", s->path);
        goto fail;
    }
    while (pos < s->len) {
        if (is_blank_line(s, pos)) {
            pos += s->text[pos] == '\r' ? 2 : 1;
            line++;
            continue;
        }
        size_t start = pos, start_line = line;
        if (parse_record(s, &pos, &line, f, 64, &nf, err) < 0 ||
            check_row(s, start_line, f, nf, err) < 0)
            goto fail;
        if (start_line > UINT32_MAX) {
            ckd_errorf(err, "%s: more than %u lines", s->path, UINT32_MAX);
            goto fail;
        }
        if (s->n == cap) {
            cap = cap ? cap * 2 : 1024;
            uint64_t *o = realloc(s->offsets, cap * sizeof *o);
            if (o)
                s->offsets = o;
            uint32_t *l = realloc(s->lines, cap * sizeof *l);
            if (l)
                s->lines = l;
            if (!o || !l) {
                ckd_errorf(err, "%s: out of memory at line %zu", s->path, start_line);
                goto fail;
            }
        }
        s->offsets[s->n] = start;
        s->lines[s->n] = (uint32_t)start_line;
        s->n++;
    }
    if (ckdd_set_source(ds, s->path, err) < 0)
        goto fail;
    return s;
fail:
    csv_close(s);
    return NULL;
}

static size_t csv_size(const void *state)
{
    return ((const csv_state *)state)->n;
}

static int csv_get(const void *state, size_t i, ckd_sample *out, ckd_error *err)
{
    const csv_state *s = state;
    size_t pos = s->offsets[i], line = s->lines[i];
    field f[64];
    int nf;
    if (parse_record(s, &pos, &line, f, 64, &nf, err) < 0)
        return -1;
    char *rel = field_text(&f[s->col[COL_IMAGE]]);
    char *cap = field_text(&f[s->col[COL_CAPTION]]);
    char path[4096];
    int rc = -1;
    if (!rel || !cap) {
        ckd_errorf(err, "out of memory");
    } else if (ckdd_join(s->root, rel, path, sizeof path, err) == 0) {
        if (ckd_image_load(path, &out->image, err) < 0)
            ckd_error_prefix(err, "%s:%u: image \"%s\"", s->path, s->lines[i], rel);
        else
            rc = ckdd_sample_add_caption(out, cap, strlen(cap), err);
    }
    if (rc == 0 && s->col[COL_LABEL] >= 0) {
        const field *lb = &f[s->col[COL_LABEL]];
        char buf[24];
        memcpy(buf, lb->p, lb->len);
        buf[lb->len] = '\0';
        out->label = (int32_t)strtol(buf, NULL, 10);
    }
    free(rel);
    free(cap);
    return rc;
}

static int csv_check(const json_t *spec, const ckdd_where *w, ckd_error *err)
{
    const char *sep = json_string_value(json_object_get(spec, "separator"));
    if (strlen(sep) != 1 || sep[0] == '\n' || sep[0] == '\r' || sep[0] == '"')
        return ckdd_spec_errorf(w, "separator", err,
                                "expected one character other than a quote or a line end, got "
                                "\"%s\"", sep);
    if (!json_is_true(json_object_get(spec, "header")))
        for (int r = 0; r < 3; r++)
            if (json_is_string(json_object_get(spec, roles[r])))
                return ckdd_spec_errorf(w, roles[r], err,
                                        "a table without a header row needs a column index "
                                        "(0-based), not the name \"%s\"",
                                        json_string_value(json_object_get(spec, roles[r])));
    return 0;
}

static const char csv_schema[] =
    "{\"type\": \"object\", \"required\": [\"path\"], \"properties\": {" CKDD_SCHEMA_COMMON ","
    " \"path\": " CKDD_SCHEMA_PATH_OR_ARTIFACT ","
    " \"root\": {\"type\": \"string\"},"
    " \"separator\": {\"type\": \"string\", \"default\": \"\\t\"},"
    " \"header\": {\"type\": \"boolean\", \"default\": true},"
    " \"quotes\": {\"type\": \"boolean\", \"default\": true},"
    " \"image\": {\"type\": [\"string\", \"integer\"], \"minimum\": 0, \"default\": \"filepath\"},"
    " \"caption\": {\"type\": [\"string\", \"integer\"], \"minimum\": 0, \"default\": \"title\"},"
    " \"label\": {\"type\": [\"string\", \"integer\"], \"minimum\": 0}}}";

const ckdd_reader ckdd_reader_csv = {
    "csv", csv_schema, csv_check, csv_open, csv_size, csv_get, csv_close,
};
