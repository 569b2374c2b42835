/* Reading safetensors files: map the file, validate the whole header the way
 * the reference (Rust) reader does, then hand out views. Nothing is read
 * through a view before the offsets have been proven to tile the data buffer,
 * so a malformed file can only produce an error, never an out-of-bounds read.
 * A sharded checkpoint (model.safetensors.index.json) opens each shard the
 * same way and presents their tensors as one set. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "clipkd/safetensors.h"
#include "st_internal.h"
#include "core/json_oom.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian and the views expose it raw"
#endif

/* The reference reader refuses larger headers; so do we, so that a corrupt
 * length cannot make us parse hundreds of megabytes of tensor data as JSON. */
#define ST_MAX_HEADER 100000000ull

typedef struct {
    char *key;
    char *value;
} st_meta;

struct ckd_safetensors {
    char *path;                   /* as given: every message starts with it */
    void *map;                    /* single file: the read-only mapping */
    size_t map_size;
    ckd_safetensors **shards;     /* sharded: one opened file per shard */
    size_t nshards;
    ckd_st_tensor *tensors;       /* file order */
    size_t count;
    const ckd_st_tensor **by_name; /* sorted by name, for bsearch */
    void **owned;                 /* buffers views point into (a .pt's copies) */
    size_t n_owned;
    st_meta *meta;                /* sorted by key once loaded */
    size_t nmeta;
};

static ckd_safetensors *open_index(const char *path, ckd_error *err);

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [CKD_DT_F64] = {"F64", 8},  [CKD_DT_F32] = {"F32", 4},
    [CKD_DT_F16] = {"F16", 2},  [CKD_DT_BF16] = {"BF16", 2},
    [CKD_DT_I64] = {"I64", 8},  [CKD_DT_I32] = {"I32", 4},
    [CKD_DT_I16] = {"I16", 2},  [CKD_DT_I8] = {"I8", 1},
    [CKD_DT_U8] = {"U8", 1},    [CKD_DT_BOOL] = {"BOOL", 1},
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

const char *ckd_dtype_name(ckd_dtype dt)
{
    return (unsigned)dt < N_DTYPES ? dtypes[dt].name : "?";
}

size_t ckd_dtype_size(ckd_dtype dt)
{
    return (unsigned)dt < N_DTYPES ? dtypes[dt].size : 0;
}

static int dtype_parse(const char *s, ckd_dtype *out)
{
    for (unsigned i = 0; i < N_DTYPES; i++)
        if (strcmp(s, dtypes[i].name) == 0) {
            *out = (ckd_dtype)i;
            return 0;
        }
    return -1;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    return "value";
}

/* "[2, 3, 4]" for messages (8 dims always fit the 256-byte buffers used). */
static const char *shape_str(char *buf, size_t cap, const ckd_st_tensor *t)
{
    size_t len = 0;
    int n = snprintf(buf, cap, "[");
    len = (size_t)n;
    for (int d = 0; d < t->ndim && len < cap; d++) {
        n = snprintf(buf + len, cap - len, "%s%" PRId64, d ? ", " : "", t->shape[d]);
        len += (size_t)n;
    }
    if (len < cap)
        snprintf(buf + len, cap - len, "]");
    return buf;
}

/* ---- the object ---------------------------------------------------------- */

static int cmp_meta(const void *a, const void *b)
{
    return strcmp(((const st_meta *)a)->key, ((const st_meta *)b)->key);
}

static int cmp_by_name(const void *a, const void *b)
{
    const ckd_st_tensor *x = *(const ckd_st_tensor *const *)a;
    const ckd_st_tensor *y = *(const ckd_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

static int add_meta(ckd_safetensors *st, const char *key, const char *value, ckd_error *err)
{
    st_meta *m = realloc(st->meta, (st->nmeta + 1) * sizeof *m);
    if (!m)
        return ckd_errorf(err, "%s: out of memory", st->path);
    st->meta = m;
    m[st->nmeta].key = strdup(key);
    m[st->nmeta].value = strdup(value);
    st->nmeta++;
    if (!m[st->nmeta - 1].key || !m[st->nmeta - 1].value)
        return ckd_errorf(err, "%s: out of memory", st->path);
    return 0;
}

static int build_index(ckd_safetensors *st, ckd_error *err)
{
    st->by_name = malloc((st->count ? st->count : 1) * sizeof *st->by_name);
    if (!st->by_name)
        return ckd_errorf(err, "%s: out of memory", st->path);
    for (size_t i = 0; i < st->count; i++)
        st->by_name[i] = &st->tensors[i];
    qsort(st->by_name, st->count, sizeof *st->by_name, cmp_by_name);
    if (st->nmeta)
        qsort(st->meta, st->nmeta, sizeof *st->meta, cmp_meta);
    return 0;
}

void ckd_st_close(ckd_safetensors *st)
{
    if (!st)
        return;
    if (st->map) {
        /* Single file: the tensor names are ours. In a sharded view they
         * belong to the shards, closed below. */
        for (size_t i = 0; i < st->count; i++)
            free((char *)st->tensors[i].name);
        munmap(st->map, st->map_size);
    }
    for (size_t i = 0; i < st->nshards; i++)
        ckd_st_close(st->shards[i]);
    for (size_t i = 0; i < st->nmeta; i++) {
        free(st->meta[i].key);
        free(st->meta[i].value);
    }
    free(st->meta);
    for (size_t i = 0; i < st->n_owned; i++)
        free(st->owned[i]);
    free(st->owned);
    free(st->shards);
    free(st->tensors);
    free(st->by_name);
    free(st->path);
    free(st);
}

static int cmp_find(const void *key, const void *elem)
{
    return strcmp(key, (*(const ckd_st_tensor *const *)elem)->name);
}

const ckd_st_tensor *ckd_st_find(const ckd_safetensors *st, const char *name)
{
    if (!st || !name || !st->count)
        return NULL;
    const ckd_st_tensor *const *hit =
        bsearch(name, st->by_name, st->count, sizeof *st->by_name, cmp_find);
    return hit ? *hit : NULL;
}

size_t ckd_st_count(const ckd_safetensors *st)
{
    return st ? st->count : 0;
}

const ckd_st_tensor *ckd_st_at(const ckd_safetensors *st, size_t i)
{
    return st && i < st->count ? &st->tensors[i] : NULL;
}

static int cmp_meta_key(const void *key, const void *elem)
{
    return strcmp(key, ((const st_meta *)elem)->key);
}

const char *ckd_st_metadata(const ckd_safetensors *st, const char *key)
{
    if (!st || !key || !st->nmeta)
        return NULL;
    const st_meta *m = bsearch(key, st->meta, st->nmeta, sizeof *st->meta, cmp_meta_key);
    return m ? m->value : NULL;
}

/* ---- header validation --------------------------------------------------- */

static int get_u64(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* Fills t from one header entry and checks it on its own: known dtype, a
 * shape of non-negative integers whose byte size does not overflow, offsets
 * inside the data buffer that hold exactly that many bytes. */
static int parse_entry(const ckd_safetensors *st, const char *name, const json_t *v,
                       const unsigned char *data, uint64_t data_size, uint64_t data_start,
                       ckd_st_tensor *t, ckd_error *err)
{
    const char *f = st->path;
    if (!json_is_object(v))
        return ckd_errorf(err, "%s: tensor '%s': found a JSON %s, expected an object with "
                          "dtype, shape and data_offsets", f, name, json_kind(v));
    static const char *const fields[] = {"dtype", "shape", "data_offsets"};
    for (size_t i = 0; i < 3; i++)
        if (!json_object_get(v, fields[i]))
            return ckd_errorf(err, "%s: tensor '%s': missing \"%s\"", f, name, fields[i]);

    const json_t *jd = json_object_get(v, "dtype");
    if (!json_is_string(jd))
        return ckd_errorf(err, "%s: tensor '%s': dtype is a JSON %s, expected a string",
                          f, name, json_kind(jd));
    if (dtype_parse(json_string_value(jd), &t->dtype) != 0)
        return ckd_errorf(err, "%s: tensor '%s': unknown dtype \"%s\" (expected F64, F32, "
                          "F16, BF16, I64, I32, I16, I8, U8 or BOOL)",
                          f, name, json_string_value(jd));

    const json_t *js = json_object_get(v, "shape");
    if (!json_is_array(js))
        return ckd_errorf(err, "%s: tensor '%s': shape is a JSON %s, expected an array",
                          f, name, json_kind(js));
    if (json_array_size(js) > CKD_ST_MAX_DIMS)
        return ckd_errorf(err, "%s: tensor '%s': shape has %zu dimensions, at most %d are "
                          "supported", f, name, json_array_size(js), CKD_ST_MAX_DIMS);
    t->ndim = (int)json_array_size(js);
    uint64_t numel = 1;
    int overflow = 0;
    for (int d = 0; d < t->ndim; d++) {
        const json_t *jv = json_array_get(js, (size_t)d);
        uint64_t dim;
        if (get_u64(jv, &dim) != 0) {
            if (json_is_integer(jv))
                return ckd_errorf(err, "%s: tensor '%s': shape[%d] is %" JSON_INTEGER_FORMAT
                                  ", expected a non-negative integer", f, name, d,
                                  json_integer_value(jv));
            return ckd_errorf(err, "%s: tensor '%s': shape[%d] is a JSON %s, expected a "
                              "non-negative integer", f, name, d, json_kind(jv));
        }
        t->shape[d] = (int64_t)dim;
        overflow |= __builtin_mul_overflow(numel, dim, &numel);
    }
    uint64_t nbytes;
    overflow |= __builtin_mul_overflow(numel, (uint64_t)dtypes[t->dtype].size, &nbytes);
    char sbuf[256];
    if (overflow || numel > INT64_MAX || nbytes > SIZE_MAX)
        return ckd_errorf(err, "%s: tensor '%s': shape %s of %s overflows a 64-bit byte count",
                          f, name, shape_str(sbuf, sizeof sbuf, t), dtypes[t->dtype].name);

    const json_t *jo = json_object_get(v, "data_offsets");
    uint64_t begin, end;
    if (!json_is_array(jo) || json_array_size(jo) != 2 ||
        get_u64(json_array_get(jo, 0), &begin) != 0 || get_u64(json_array_get(jo, 1), &end) != 0)
        return ckd_errorf(err, "%s: tensor '%s': data_offsets must be [begin, end] with two "
                          "non-negative integers", f, name);
    if (begin > end)
        return ckd_errorf(err, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] "
                          "begin after end", f, name, begin, end);
    if (end > data_size)
        return ckd_errorf(err, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] run "
                          "past the data buffer, which holds %" PRIu64 " bytes (file offsets "
                          "%" PRIu64 "..%" PRIu64 ")", f, name, begin, end, data_size,
                          data_start, data_start + data_size);
    if (end - begin != nbytes)
        return ckd_errorf(err, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold "
                          "%" PRIu64 " bytes, but shape %s of %s needs %" PRIu64, f, name,
                          begin, end, end - begin, shape_str(sbuf, sizeof sbuf, t),
                          dtypes[t->dtype].name, nbytes);
    t->name = strdup(name);
    if (!t->name)
        return ckd_errorf(err, "%s: out of memory", f);
    t->file = st->path;
    t->data = data + begin;
    t->nbytes = (size_t)nbytes;
    return 0;
}

/* Data offset of a validated view (views point into one buffer). */
#define OFF(t, data) ((uint64_t)((const unsigned char *)(t)->data - (data)))

/* All views of one file point into the same mapping, so comparing their data
 * pointers orders them by offset (and needs no global for qsort). */
static int cmp_offset(const void *a, const void *b)
{
    const ckd_st_tensor *x = a, *y = b;
    const unsigned char *px = x->data, *py = y->data;
    if (px != py)
        return px < py ? -1 : 1;
    if (x->nbytes != y->nbytes) /* empty tensors first at a shared offset */
        return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Sorted by offset, the tensors must cover the data buffer exactly. */
static int check_tiling(const ckd_safetensors *st, const unsigned char *data,
                        uint64_t data_size, uint64_t data_start, ckd_error *err)
{
    uint64_t pos = 0;
    const ckd_st_tensor *prev = NULL;
    for (size_t i = 0; i < st->count; i++) {
        const ckd_st_tensor *t = &st->tensors[i];
        uint64_t off = OFF(t, data);
        if (off > pos)
            return ckd_errorf(err, "%s: gap of %" PRIu64 " bytes at data offset %" PRIu64
                              " (file offset %" PRIu64 "): no tensor covers them; tensor "
                              "'%s' starts at %" PRIu64 "%s%s%s", st->path, off - pos, pos,
                              data_start + pos, t->name, off, prev ? " after '" : "",
                              prev ? prev->name : "", prev ? "'" : "");
        if (off < pos)
            return ckd_errorf(err, "%s: tensor '%s' (data_offsets [%" PRIu64 ", %" PRIu64
                              "]) overlaps tensor '%s', which ends at %" PRIu64, st->path,
                              t->name, off, off + t->nbytes, prev->name, pos);
        pos = off + t->nbytes;
        prev = t;
    }
    if (pos != data_size)
        return ckd_errorf(err, "%s: %" PRIu64 " trailing bytes after the last tensor%s%s%s "
                          "(tensor data ends at file offset %" PRIu64 ", the file is %" PRIu64
                          " bytes)", st->path, data_size - pos, prev ? " '" : "",
                          prev ? prev->name : "", prev ? "'" : "", data_start + pos,
                          data_start + data_size);
    return 0;
}

/* The header length that the first 8 bytes b of file f (file_size bytes)
 * give, checked against the limit and the file. */
static int header_length(const char *f, const unsigned char b[8], uint64_t file_size, uint64_t *out,
                         ckd_error *err)
{
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | b[i];
    if (n > ST_MAX_HEADER)
        return ckd_errorf(err, "%s: header length %" PRIu64 " exceeds the %llu-byte limit",
                          f, n, ST_MAX_HEADER);
    if (n > file_size - 8)
        return ckd_errorf(err, "%s: header length %" PRIu64 " exceeds file size %" PRIu64,
                          f, n, file_size);
    *out = n;
    return 0;
}

/* The header's n bytes of text as a JSON object, or NULL with err set. */
static json_t *header_json(const char *f, const char *text, uint64_t n, ckd_error *err)
{
    json_error_t je;
    int oom = 0;
    json_t *root = ckdi_json_loadb(text, (size_t)n, JSON_REJECT_DUPLICATES, &je, &oom);
    if (!root && oom) {
        ckd_errorf(err, "%s: out of memory reading the %" PRIu64 "-byte header", f, n);
        return NULL;
    }
    if (!root) {
        ckd_errorf(err, "%s: header is not valid JSON: %s (line %d, column %d, byte %d "
                   "of the header, file offset %" PRIu64 ")", f, je.text, je.line,
                   je.column, je.position, (uint64_t)je.position + 8);
        return NULL;
    }
    if (!json_is_object(root)) {
        ckd_errorf(err, "%s: header is a JSON %s, expected an object", f, json_kind(root));
        json_decref(root);
        return NULL;
    }
    return root;
}

static int parse_header(ckd_safetensors *st, ckd_error *err)
{
    const unsigned char *b = st->map;
    const char *f = st->path;
    uint64_t n;
    if (header_length(f, b, st->map_size, &n, err))
        return -1;
    json_t *root = header_json(f, (const char *)b + 8, n, err);
    if (!root)
        return -1;
    int rc = -1;
    if (b[8] != '{') { /* only leading whitespace gets here; the reference refuses it */
        ckd_errorf(err, "%s: header must start with '{' at file offset 8, found 0x%02x", f, b[8]);
        goto out;
    }

    const json_t *meta = json_object_get(root, "__metadata__");
    if (meta && !json_is_null(meta)) {
        if (!json_is_object(meta)) {
            ckd_errorf(err, "%s: __metadata__ is a JSON %s, expected an object of strings",
                       f, json_kind(meta));
            goto out;
        }
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)meta, k, v) {
            if (!json_is_string(v)) {
                ckd_errorf(err, "%s: __metadata__ \"%s\" is a JSON %s, expected a string",
                           f, k, json_kind(v));
                goto out;
            }
            if (add_meta(st, k, json_string_value(v), err) != 0)
                goto out;
        }
    }

    size_t cap = json_object_size(root);
    st->tensors = calloc(cap ? cap : 1, sizeof *st->tensors);
    if (!st->tensors) {
        ckd_errorf(err, "%s: out of memory", f);
        goto out;
    }
    const unsigned char *data = b + 8 + n;
    uint64_t data_start = 8 + n, data_size = st->map_size - data_start;
    const char *k;
    const json_t *v;
    json_object_foreach(root, k, v) {
        if (strcmp(k, "__metadata__") == 0)
            continue;
        if (parse_entry(st, k, v, data, data_size, data_start, &st->tensors[st->count], err) != 0)
            goto out;
        st->count++;
    }

    qsort(st->tensors, st->count, sizeof *st->tensors, cmp_offset);
    if (check_tiling(st, data, data_size, data_start, err) != 0)
        goto out;
    rc = build_index(st, err);
out:
    json_decref(root);
    return rc;
}

/* Opens a file that can be a safetensors file at all: a regular file with
 * room for the header length. Returns the descriptor, -1 with err set. */
static int open_regular(const char *path, uint64_t *size, ckd_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ckd_errorf(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        ckd_errorf(err, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if (sb.st_size < 8) {
        ckd_errorf(err, "%s: file is %lld bytes, shorter than the 8-byte header length",
                   path, (long long)sb.st_size);
        close(fd);
        return -1;
    }
    *size = (uint64_t)sb.st_size;
    return fd;
}

int st_map_file(const char *path, void **map_out, size_t *size_out, ckd_error *err)
{
    uint64_t fsize;
    int fd = open_regular(path, &fsize, err);
    if (fd < 0)
        return -1;
    if (fsize > SIZE_MAX) {
        ckd_errorf(err, "%s: file of %" PRIu64 " bytes does not fit in memory", path, fsize);
        close(fd);
        return -1;
    }
    size_t size = (size_t)fsize;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd); /* the mapping keeps the file alive */
    if (map == MAP_FAILED)
        return ckd_errorf(err, "%s: cannot map %zu bytes: %s", path, size, strerror(map_errno));
    *map_out = map;
    *size_out = size;
    return 0;
}

static ckd_safetensors *open_file(const char *path, ckd_error *err)
{
    void *map;
    size_t size;
    if (st_map_file(path, &map, &size, err))
        return NULL;
    if (pt_sniff(map, size)) {
        munmap(map, size);
        return ckd_pt_open(path, NULL, err);
    }
    ckd_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        munmap(map, size);
        free(st);
        ckd_errorf(err, "%s: out of memory", path);
        return NULL;
    }
    st->map = map;
    st->map_size = size;
    if (parse_header(st, err) != 0) {
        ckd_st_close(st);
        return NULL;
    }
    return st;
}

ckd_safetensors *st_adopt(const char *path, void *map, size_t map_size, ckd_st_tensor *tensors, size_t count,
                          void **owned, size_t n_owned, const char *const *meta, size_t n_meta, ckd_error *err)
{
    ckd_safetensors *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        for (size_t i = 0; i < count; i++)
            free((char *)tensors[i].name);
        for (size_t i = 0; i < n_owned; i++)
            free(owned[i]);
        free(tensors);
        free(owned);
        munmap(map, map_size);
        free(st);
        ckd_errorf(err, "%s: out of memory", path);
        return NULL;
    }
    st->map = map;
    st->map_size = map_size;
    st->tensors = tensors;
    st->count = count;
    st->owned = owned;
    st->n_owned = n_owned;
    for (size_t i = 0; i < n_meta; i++)
        if (add_meta(st, meta[2 * i], meta[2 * i + 1], err)) {
            ckd_st_close(st);
            return NULL;
        }
    if (build_index(st, err)) {
        ckd_st_close(st);
        return NULL;
    }
    for (size_t i = 1; i < count; i++)
        if (!strcmp(st->by_name[i - 1]->name, st->by_name[i]->name)) {
            ckd_errorf(err, "%s: two tensors are called '%s'", path, st->by_name[i]->name);
            ckd_st_close(st);
            return NULL;
        }
    return st;
}

/* ---- the header alone ------------------------------------------------------ */

/* pread until n bytes are in or the file ends; 0 only when all n were read. */
static int read_at(int fd, char *buf, size_t n, off_t off)
{
    while (n > 0) {
        ssize_t r = pread(fd, buf, n, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        buf += r;
        n -= (size_t)r;
        off += r;
    }
    return 0;
}

/* The end of the data that the header's tensors claim: the largest
 * data_offsets end (malformed entries are the full reader's to reject). */
static uint64_t claimed_data_end(const json_t *root)
{
    uint64_t end = 0, e;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)root, k, v) {
        if (strcmp(k, "__metadata__") != 0 &&
            get_u64(json_array_get(json_object_get(v, "data_offsets"), 1), &e) == 0 && e > end)
            end = e;
    }
    return end;
}

int ckd_st_read_header(const char *path, json_t **header, int64_t *expected_size, ckd_error *err)
{
    uint64_t fsize, n = 0;
    unsigned char len[8];
    char *text = NULL;
    *header = NULL;
    int fd = open_regular(path, &fsize, err);
    if (fd < 0)
        return -1;
    int rc = -1;
    if (read_at(fd, (char *)len, 8, 0) != 0) {
        ckd_errorf(err, "%s: cannot read the header length: %s", path, strerror(errno));
        goto out;
    }
    if (header_length(path, len, fsize, &n, err))
        goto out;
    if (!(text = malloc(n ? n : 1))) {
        ckd_errorf(err, "%s: out of memory", path);
        goto out;
    }
    if (read_at(fd, text, n, 8) != 0) {
        ckd_errorf(err, "%s: cannot read the %" PRIu64 "-byte header: %s", path, n, strerror(errno));
        goto out;
    }
    if (!(*header = header_json(path, text, n, err)))
        goto out;
    if (expected_size)
        *expected_size = (int64_t)(8 + n + claimed_data_end(*header));
    rc = 0;
out:
    free(text);
    close(fd);
    return rc;
}

/* ---- sharded checkpoints ------------------------------------------------- */

typedef struct {
    const char *tensor;
    const char *shard;
} map_entry;

static int cmp_entry(const void *a, const void *b)
{
    const map_entry *x = a, *y = b;
    int c = strcmp(x->shard, y->shard);
    return c ? c : strcmp(x->tensor, y->tensor);
}

/* Shards are files next to the index; refusing absolute paths and ".."
 * keeps a downloaded index from pointing anywhere else on the machine. */
static int bad_shard_name(const char *s)
{
    if (!*s || s[0] == '/')
        return 1;
    for (const char *p = s;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return 1;
        if (!slash)
            return 0;
        p = slash + 1;
    }
}

/* The index's "metadata" (e.g. total_size) stands in for __metadata__. */
static int load_index_metadata(ckd_safetensors *st, const json_t *meta, ckd_error *err)
{
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)meta, k, v) {
        char num[32];
        const char *s = NULL;
        if (json_is_string(v)) {
            s = json_string_value(v);
        } else if (json_is_integer(v)) {
            snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            s = num;
        }
        if (s && add_meta(st, k, s, err) != 0)
            return -1;
    }
    return 0;
}

static ckd_safetensors *open_index(const char *path, ckd_error *err)
{
    json_error_t je;
    int oom = 0;
    json_t *root = ckdi_json_load_file(path, JSON_REJECT_DUPLICATES, &je, &oom);
    if (!root && oom)
        return ckd_errorf(err, "%s: out of memory reading the index", path), NULL;
    if (!root) {
        if (je.line < 0) /* could not read it at all; text says why */
            ckd_errorf(err, "%s: %s", path, je.text);
        else
            ckd_errorf(err, "%s: not valid JSON: %s (line %d, column %d, byte %d)", path,
                       je.text, je.line, je.column, je.position);
        return NULL;
    }
    ckd_safetensors *st = NULL;
    map_entry *ents = NULL;
    const json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm)) {
        ckd_errorf(err, "%s: expected a JSON object with a \"weight_map\" object (tensor "
                   "name -> shard file)", path);
        goto fail;
    }
    size_t n = json_object_size(wm), i = 0;
    ents = malloc((n ? n : 1) * sizeof *ents);
    st = calloc(1, sizeof *st);
    if (!ents || !st || !(st->path = strdup(path)) ||
        !(st->tensors = calloc(n ? n : 1, sizeof *st->tensors)) ||
        !(st->shards = calloc(n ? n : 1, sizeof *st->shards))) {
        ckd_errorf(err, "%s: out of memory", path);
        goto fail;
    }
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)wm, k, v) {
        if (!json_is_string(v) || bad_shard_name(json_string_value(v))) {
            ckd_errorf(err, "%s: weight_map[\"%s\"] must be the file name of a shard in the "
                       "index's directory", path, k);
            goto fail;
        }
        ents[i].tensor = k;
        ents[i].shard = json_string_value(v);
        i++;
    }
    /* Grouped by shard, so each shard is opened once, in name order. */
    qsort(ents, n, sizeof *ents, cmp_entry);

    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path + 1) : 0;
    for (i = 0; i < n;) {
        const char *shard = ents[i].shard;
        size_t j = i;
        while (j < n && strcmp(ents[j].shard, shard) == 0)
            j++;
        size_t len = (size_t)dirlen + strlen(shard) + 1;
        char *sp = malloc(len);
        if (!sp) {
            ckd_errorf(err, "%s: out of memory", path);
            goto fail;
        }
        snprintf(sp, len, "%.*s%s", dirlen, path, shard);
        ckd_safetensors *sh = open_file(sp, err);
        free(sp);
        if (!sh) {
            ckd_error_prefix(err, "%s: shard \"%s\" (holding '%s')", path, shard,
                             ents[i].tensor);
            goto fail;
        }
        st->shards[st->nshards++] = sh;
        for (size_t e = i; e < j; e++)
            if (!ckd_st_find(sh, ents[e].tensor)) {
                ckd_errorf(err, "%s: tensor '%s' is mapped to shard \"%s\", which does not "
                           "hold it", path, ents[e].tensor, shard);
                goto fail;
            }
        /* In the shard's file order; tensors the index does not assign to
         * this shard are left out, as the HF loaders do. */
        for (size_t t = 0; t < sh->count; t++) {
            const json_t *owner = json_object_get(wm, sh->tensors[t].name);
            if (owner && strcmp(json_string_value(owner), shard) == 0)
                st->tensors[st->count++] = sh->tensors[t];
        }
        i = j;
    }
    const json_t *meta = json_object_get(root, "metadata");
    if (json_is_object(meta) && load_index_metadata(st, meta, err) != 0)
        goto fail;
    if (build_index(st, err) != 0)
        goto fail;
    free(ents);
    json_decref(root);
    return st;
fail:
    ckd_st_close(st);
    free(ents);
    json_decref(root);
    return NULL;
}

static int is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

ckd_safetensors *ckd_st_open(const char *path, ckd_error *err)
{
    if (!path) {
        ckd_errorf(err, "ckd_st_open: no path given");
        return NULL;
    }
    struct stat sb;
    if (stat(path, &sb) != 0) {
        ckd_errorf(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (S_ISDIR(sb.st_mode)) {
        static const char *const names[] = {"model.safetensors.index.json", "model.safetensors"};
        for (size_t i = 0; i < 2; i++) {
            size_t len = strlen(path) + strlen(names[i]) + 2;
            char *p = malloc(len);
            if (!p) {
                ckd_errorf(err, "%s: out of memory", path);
                return NULL;
            }
            snprintf(p, len, "%s/%s", path, names[i]);
            ckd_safetensors *st = NULL;
            int found = is_file(p);
            if (found)
                st = i == 0 ? open_index(p, err) : open_file(p, err);
            free(p);
            if (found)
                return st;
        }
        ckd_errorf(err, "%s: directory holds neither model.safetensors.index.json nor "
                   "model.safetensors", path);
        return NULL;
    }
    size_t len = strlen(path);
    if (len >= 5 && strcmp(path + len - 5, ".json") == 0)
        return open_index(path, err);
    return open_file(path, err);
}
