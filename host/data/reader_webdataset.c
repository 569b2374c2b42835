/* The webdataset reader: tar shards of samples grouped by key
 * ("000123.jpg" + "000123.txt" (+ "000123.cls")), as WebDataset and
 * img2dataset write them.
 *
 * Every shard is walked once at open with libarchive. For an uncompressed
 * tar — the WebDataset norm — each member's data offset in the file is
 * recorded (the position libarchive has consumed right after reading the
 * header, pax and GNU long-name records included) and get() preads the
 * bytes directly: random access, nothing kept in memory but the index. The
 * first caption of each shard is read both ways to check that offset once.
 * Compressed shards (.tar.gz, .bz2, .xz, .zst …) cannot be seeked into, so
 * their images and captions are read into memory at open; they suit small
 * evaluation sets, and large ones should be stored uncompressed.
 *
 * Captions are read at open too (to check their UTF-8) but, for
 * uncompressed shards, not kept. Offsets in messages are byte offsets in the
 * tar stream: in the file for plain tar, after decompression otherwise. */
#include "config.h"

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "data_internal.h"

/* A member's bytes: in memory (compressed shards) or at an offset. */
typedef struct blob {
    int64_t off;
    uint32_t len;
    uint8_t *mem;
} blob;

typedef struct wds_sample {
    uint32_t shard;
    uint8_t image_ext;      /* index into image_ext */
    int32_t label;
    char *key;
    blob image, caption;
} wds_sample;

/* Member data above this is refused: no image or caption is that large. */
#define MAX_MEMBER ((int64_t)1 << 30)
#define MAX_EXT 16

typedef struct wds_state {
    char **shards;
    size_t n_shards;
    char *image_ext[MAX_EXT];
    size_t n_image_ext;
    char *caption_ext, *label_ext;
    int skip_incomplete;
    wds_sample *s;
    size_t n, cap;
} wds_state;

static void free_sample(wds_sample *x)
{
    free(x->key);
    free(x->image.mem);
    free(x->caption.mem);
    memset(x, 0, sizeof *x);
}

static void wds_close(void *state)
{
    wds_state *st = state;
    for (size_t i = 0; i < st->n; i++)
        free_sample(&st->s[i]);
    free(st->s);
    ckd_strings_free(st->shards, st->n_shards);
    for (size_t i = 0; i < st->n_image_ext; i++)
        free(st->image_ext[i]);
    free(st->caption_ext);
    free(st->label_ext);
    free(st);
}

static int read_exact(int fd, void *buf, size_t n, int64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)off + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

/* What an index pass over one shard keeps track of. */
typedef struct walk {
    wds_state *st;
    uint32_t shard;
    const char *path;
    int compressed, checked_offset, fd;
    int64_t file_size;
    wds_sample cur;         /* the sample being gathered; key NULL when none */
    int64_t cur_off;        /* offset of its first member, for messages */
    char cur_first[512];    /* name of its first member */
} walk;

/* Ends the current sample: keeps it if complete, else errors or drops it. */
static int finish(walk *w, ckd_error *err)
{
    wds_sample *c = &w->cur;
    if (!c->key)
        return 0;
    int has_image = c->image.len > 0 || c->image.mem, has_caption = c->caption.off >= 0;
    if (!has_image || !has_caption) {
        if (w->st->skip_incomplete) {
            free_sample(c);
            return 0;
        }
        ckd_errorf(err, "%s: sample \"%s\" (member \"%s\" at offset %lld) has no %s member (%s%s)",
                   w->path, c->key, w->cur_first, (long long)w->cur_off,
                   has_image ? "caption" : "image", has_image ? "." : "",
                   has_image ? w->st->caption_ext : "one of the image extensions");
        free_sample(c);
        return -1;
    }
    if (w->st->n == w->st->cap) {
        size_t cap = w->st->cap ? w->st->cap * 2 : 256;
        wds_sample *v = realloc(w->st->s, cap * sizeof *v);
        if (!v) {
            free_sample(c);
            return ckd_errorf(err, "%s: out of memory", w->path);
        }
        w->st->s = v;
        w->st->cap = cap;
    }
    w->st->s[w->st->n++] = *c;
    memset(c, 0, sizeof *c);
    return 0;
}

/* Reads the current member's data (n bytes) into a new buffer. The buffer
 * grows as the bytes arrive rather than taking the n the header claims: in
 * a compressed shard, a few bytes can claim a member of a gigabyte. */
static uint8_t *read_member(struct archive *a, walk *w, const char *name, int64_t off, size_t n,
                            ckd_error *err)
{
    size_t cap = n < ((size_t)1 << 20) ? n : (size_t)1 << 20, got = 0;
    uint8_t *buf = malloc(cap ? cap : 1);
    while (buf && got < n) {
        if (got == cap) {
            size_t next = cap * 2 < n ? cap * 2 : n;
            uint8_t *bigger = realloc(buf, next);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger, cap = next;
        }
        la_ssize_t r = archive_read_data(a, buf + got, cap - got);
        if (r < 0 || r == 0) {
            ckd_errorf(err, "%s: member \"%s\" at offset %lld: %s", w->path, name, (long long)off,
                       r < 0 ? archive_error_string(a) : "the data ends early");
            free(buf);
            return NULL;
        }
        got += (size_t)r;
    }
    if (!buf)
        ckd_errorf(err, "%s: out of memory for member \"%s\"", w->path, name);
    return buf;
}

/* The role of an extension: 0 image, 1 caption, 2 label, -1 none; *which
 * receives the image extension's index. */
static int role_of(const wds_state *st, const char *ext, size_t len, int *which)
{
    for (size_t i = 0; i < st->n_image_ext; i++)
        if (ckdd_ext_eq(ext, len, st->image_ext[i])) {
            *which = (int)i;
            return 0;
        }
    if (ckdd_ext_eq(ext, len, st->caption_ext))
        return 1;
    if (ckdd_ext_eq(ext, len, st->label_ext))
        return 2;
    return -1;
}

static int parse_label(const uint8_t *b, size_t n, int32_t *out)
{
    char buf[24];
    while (n && (b[n - 1] == '\n' || b[n - 1] == '\r' || b[n - 1] == ' '))
        n--;
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, b, n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (*end || errno || v < 0 || v > INT32_MAX)
        return -1;
    *out = (int32_t)v;
    return 0;
}

/* Handles one member that has a role in the current sample. */
static int take_member(struct archive *a, walk *w, const char *name, int role, int ext_idx,
                       int64_t off, int64_t size, ckd_error *err)
{
    wds_sample *c = &w->cur;
    if (size > MAX_MEMBER)
        return ckd_errorf(err, "%s: member \"%s\" at offset %lld: %lld bytes is more than any "
                               "image or caption needs",
                          w->path, name, (long long)off, (long long)size);
    if (!w->compressed && off + size > w->file_size)
        return ckd_errorf(err, "%s: member \"%s\" at offset %lld: its %lld bytes run past the end "
                               "of the file (%lld bytes): the shard is truncated",
                          w->path, name, (long long)off, (long long)size, (long long)w->file_size);
    if (role == 0) {
        if (c->image.len || c->image.mem) {
            if (ext_idx >= c->image_ext)
                return 0; /* a less preferred extension of the same picture */
            free(c->image.mem);
            c->image.mem = NULL;
        }
        c->image = (blob){off, (uint32_t)size, NULL};
        c->image_ext = (uint8_t)ext_idx;
        if (size == 0)
            return ckd_errorf(err, "%s: member \"%s\" at offset %lld is empty", w->path, name,
                              (long long)off);
        if (w->compressed && !(c->image.mem = read_member(a, w, name, off, (size_t)size, err)))
            return -1;
        return 0;
    }
    if ((role == 1 && c->caption.off >= 0) || (role == 2 && c->label >= 0))
        return ckd_errorf(err, "%s: member \"%s\" at offset %lld: sample \"%s\" already has a %s",
                          w->path, name, (long long)off, c->key, role == 1 ? "caption" : "label");
    uint8_t *buf = read_member(a, w, name, off, (size_t)size, err);
    if (!buf)
        return -1;
    if (role == 2) {
        int rc = parse_label(buf, (size_t)size, &c->label);
        free(buf);
        if (rc < 0)
            return ckd_errorf(err, "%s: member \"%s\" at offset %lld: expected a class index (an "
                                   "integer >= 0)",
                              w->path, name, (long long)off);
        return 0;
    }
    size_t n = (size_t)size, bad;
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    if (!ckdd_utf8_valid((const char *)buf, n, &bad) || memchr(buf, '\0', n)) {
        free(buf);
        return ckd_errorf(err, "%s: member \"%s\" at offset %lld: the caption is not valid UTF-8 "
                               "text (byte %zu)",
                          w->path, name, (long long)off, bad + 1);
    }
    if (!w->compressed && !w->checked_offset) {
        /* The offset comes from libarchive's read position; confirm once per
         * shard that it points at this member's bytes. */
        uint8_t *again = malloc(n ? n : 1);
        int same = again && read_exact(w->fd, again, n, off) == 0 && !memcmp(again, buf, n);
        free(again);
        if (!same) {
            free(buf);
            return ckd_errorf(err, "%s: member \"%s\": its data is not at offset %lld as read; "
                                   "this tar variant cannot be indexed (store it as plain ustar/pax)",
                              w->path, name, (long long)off);
        }
        w->checked_offset = 1;
    }
    c->caption = (blob){off, (uint32_t)n, NULL};
    if (w->compressed)
        c->caption.mem = buf;
    else
        free(buf);
    return 0;
}

static int index_shard(wds_state *st, uint32_t shard, ckd_error *err)
{
    walk w = {.st = st, .shard = shard, .path = st->shards[shard], .fd = -1};
    w.fd = open(w.path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (w.fd < 0 || fstat(w.fd, &sb) < 0) {
        int e = errno;
        if (w.fd >= 0)
            close(w.fd);
        return ckd_errorf(err, "%s: cannot open: %s", w.path, strerror(e));
    }
    w.file_size = (int64_t)sb.st_size;
    struct archive *a = archive_read_new();
    if (!a) {
        close(w.fd);
        return ckd_errorf(err, "%s: out of memory", w.path);
    }
    archive_read_support_format_tar(a);
    archive_read_support_filter_all(a);
    int rc = -1;
    char last[512] = "";
    int64_t last_end = 0;
    if (archive_read_open_filename(a, w.path, 1 << 16) != ARCHIVE_OK) {
        ckd_errorf(err, "%s: offset 0: %s", w.path, archive_error_string(a));
        goto done;
    }
    for (int first = 1;; first = 0) {
        struct archive_entry *e;
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF)
            break;
        /* ARCHIVE_RETRY (a damaged header) ranks above ARCHIVE_WARN but is an
         * error here: the member it would have been is lost. */
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            if (last[0])
                ckd_errorf(err, "%s: after member \"%s\" (its data ends at offset %lld): %s",
                           w.path, last, (long long)last_end, archive_error_string(a));
            else
                ckd_errorf(err, "%s: offset 0: %s", w.path, archive_error_string(a));
            goto done;
        }
        if (first)
            w.compressed = archive_filter_code(a, 0) != ARCHIVE_FILTER_NONE;
        const char *name = archive_entry_pathname(e);
        int64_t off = archive_filter_bytes(a, 0), size = archive_entry_size(e);
        snprintf(last, sizeof last, "%s", name ? name : "?");
        last_end = off + size;
        if (!name || archive_entry_filetype(e) != AE_IFREG)
            continue;
        if (archive_entry_sparse_count(e) > 0) {
            ckd_errorf(err, "%s: member \"%s\" at offset %lld is a sparse file", w.path, name,
                       (long long)off);
            goto done;
        }
        const char *base = strrchr(name, '/');
        base = base ? base + 1 : name;
        const char *dot = strchr(base, '.');
        if (!dot)
            continue;
        int ext_idx = 0, role = role_of(st, dot + 1, strlen(dot + 1), &ext_idx);
        if (role < 0)
            continue;
        size_t key_len = (size_t)(dot - name);
        if (!w.cur.key || strlen(w.cur.key) != key_len || strncmp(w.cur.key, name, key_len)) {
            if (finish(&w, err) < 0)
                goto done;
            w.cur = (wds_sample){.shard = shard, .label = -1, .caption.off = -1,
                                 .key = strndup(name, key_len)};
            if (!w.cur.key) {
                ckd_errorf(err, "%s: out of memory", w.path);
                goto done;
            }
            w.cur_off = off;
            snprintf(w.cur_first, sizeof w.cur_first, "%s", name);
        }
        if (take_member(a, &w, name, role, ext_idx, off, size, err) < 0)
            goto done;
    }
    rc = finish(&w, err);
done:
    free_sample(&w.cur);
    archive_read_free(a);
    close(w.fd);
    return rc;
}

static int copy_exts(const json_t *v, char **dst, size_t max, size_t *n, ckd_error *err)
{
    *n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        if (*n == max)
            return ckd_errorf(err, "at most %zu image extensions", max);
        const char *s = json_string_value(e);
        if (!(dst[(*n)++] = strdup(s[0] == '.' ? s + 1 : s)))
            return ckd_errorf(err, "out of memory");
    }
    return 0;
}

/* The shard list: every pattern brace-expanded and resolved. */
static int expand_shards(wds_state *st, const json_t *shards, const ckdd_env *env, ckd_error *err)
{
    ckdd_strvec sv = {0};
    json_t *one = json_is_string(shards) ? json_pack("[O]", shards) : json_incref((json_t *)shards);
    size_t i;
    json_t *pat;
    int rc = 0;
    json_array_foreach(one, i, pat)
    {
        char **names;
        size_t n;
        if (ckd_brace_expand(json_string_value(pat), &names, &n, err) < 0) {
            rc = ckd_error_prefix(err, "shards");
            break;
        }
        for (size_t k = 0; k < n && rc == 0; k++) {
            char path[4096];
            if (ckdd_join(env->base_dir, names[k], path, sizeof path, err) < 0 ||
                ckdd_strvec_push(&sv, path, strlen(path)) < 0)
                rc = ckd_errorf(err, "shards: cannot use \"%s\"", names[k]);
        }
        ckd_strings_free(names, n);
        if (rc)
            break;
    }
    json_decref(one);
    if (rc == 0 && sv.n > UINT32_MAX)
        rc = ckd_errorf(err, "shards: more than %u shards", UINT32_MAX);
    if (rc == 0 && sv.n == 0)
        rc = ckd_errorf(err, "shards: the list is empty");
    if (rc) {
        ckdd_strvec_free(&sv);
        return -1;
    }
    st->shards = sv.v;
    st->n_shards = sv.n;
    return 0;
}

static void *wds_open(ckd_dataset *ds, const json_t *spec, const ckdd_env *env, ckd_error *err)
{
    wds_state *st = calloc(1, sizeof *st);
    if (!st) {
        ckd_errorf(err, "out of memory");
        return NULL;
    }
    const char *cap = json_string_value(json_object_get(spec, "caption"));
    const char *lab = json_string_value(json_object_get(spec, "label"));
    st->caption_ext = strdup(cap[0] == '.' ? cap + 1 : cap);
    st->label_ext = strdup(lab[0] == '.' ? lab + 1 : lab);
    st->skip_incomplete = !strcmp(json_string_value(json_object_get(spec, "incomplete")), "skip");
    if (!st->caption_ext || !st->label_ext) {
        ckd_errorf(err, "out of memory");
        goto fail;
    }
    if (copy_exts(json_object_get(spec, "image"), st->image_ext, MAX_EXT, &st->n_image_ext, err) < 0 ||
        expand_shards(st, json_object_get(spec, "shards"), env, err) < 0)
        goto fail;
    for (size_t i = 0; i < st->n_shards; i++)
        if (index_shard(st, (uint32_t)i, err) < 0)
            goto fail;
    char src[4200];
    snprintf(src, sizeof src, "%s%s (%zu shard%s)", st->shards[0], st->n_shards > 1 ? " …" : "",
             st->n_shards, st->n_shards > 1 ? "s" : "");
    if (ckdd_set_source(ds, src, err) < 0)
        goto fail;
    return st;
fail:
    wds_close(st);
    return NULL;
}

static size_t wds_size(const void *state)
{
    return ((const wds_state *)state)->n;
}

/* A member's bytes, from memory or from the shard file. */
static uint8_t *load_blob(const wds_state *st, const wds_sample *x, const blob *b, int *fd,
                          ckd_error *err)
{
    uint8_t *buf = malloc(b->len ? b->len : 1);
    if (!buf) {
        ckd_errorf(err, "out of memory");
        return NULL;
    }
    if (b->mem) {
        memcpy(buf, b->mem, b->len);
        return buf;
    }
    const char *path = st->shards[x->shard];
    if (*fd < 0 && (*fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        ckd_errorf(err, "%s: cannot open: %s", path, strerror(errno));
        free(buf);
        return NULL;
    }
    if (read_exact(*fd, buf, b->len, b->off) < 0) {
        ckd_errorf(err, "%s: cannot read %u bytes at offset %lld (has the shard changed since it "
                        "was indexed?)",
                   path, b->len, (long long)b->off);
        free(buf);
        return NULL;
    }
    return buf;
}

static int wds_get(const void *state, size_t i, ckd_sample *out, ckd_error *err)
{
    const wds_state *st = state;
    const wds_sample *x = &st->s[i];
    int fd = -1, rc = -1;
    uint8_t *img = load_blob(st, x, &x->image, &fd, err), *cap = NULL;
    if (img && (cap = load_blob(st, x, &x->caption, &fd, err))) {
        char name[4600];
        snprintf(name, sizeof name, "%s: member \"%s.%s\" at offset %lld", st->shards[x->shard],
                 x->key, st->image_ext[x->image_ext], (long long)x->image.off);
        if (ckd_image_decode(img, x->image.len, name, &out->image, err) == 0)
            rc = ckdd_sample_add_caption(out, (const char *)cap, x->caption.len, err);
        out->label = x->label;
    }
    if (fd >= 0)
        close(fd);
    free(img);
    free(cap);
    return rc;
}

static const char wds_schema[] =
    "{\"type\": \"object\", \"required\": [\"shards\"], \"properties\": {" CKDD_SCHEMA_COMMON ","
    " \"shards\": {\"type\": [\"string\", \"array\"], \"items\": {\"type\": \"string\"}},"
    " \"image\": {\"type\": \"array\", \"items\": {\"type\": \"string\"},"
    "  \"default\": [\"jpg\", \"jpeg\", \"png\"]},"
    " \"caption\": {\"type\": \"string\", \"default\": \"txt\"},"
    " \"label\": {\"type\": \"string\", \"default\": \"cls\"},"
    " \"incomplete\": {\"type\": \"string\", \"enum\": [\"error\", \"skip\"], \"default\": \"error\"}}}";

static int wds_check(const json_t *spec, const ckdd_where *w, ckd_error *err)
{
    size_t n = json_array_size(json_object_get(spec, "image"));
    if (n == 0 || n > MAX_EXT)
        return ckdd_spec_errorf(w, "image", err, "expected 1 to %d image extensions, got %zu",
                                MAX_EXT, n);
    return 0;
}

const ckdd_reader ckdd_reader_webdataset = {
    "webdataset", wds_schema, wds_check, wds_open, wds_size, wds_get, wds_close,
};
