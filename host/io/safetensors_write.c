/* Writing safetensors files the way the reference library does, atomically.
 *
 * Layout matches safetensors' serialize_file (what safetensors.torch.save_file
 * calls): tensors sorted by dtype, widest first in the library's Dtype enum
 * order, then by name; the JSON header is compact, lists __metadata__ first
 * and the tensors in data order, and is padded with spaces to a multiple of 8
 * so the data starts 8-byte aligned. A file written from the same tensors and
 * metadata is byte-identical to the library's (tests/test-safetensors checks
 * this against a file PyTorch wrote). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "clipkd/safetensors.h"
#include "data/data_internal.h"

typedef struct {
    char *name;
    ckd_dtype dtype;
    int ndim;
    int64_t shape[CKD_ST_MAX_DIMS];
    const void *data;
    void *owned; /* the copy made by ckd_st_writer_add_copy */
    size_t nbytes;
} w_tensor;

typedef struct {
    char *key;
    char *value;
} w_meta;

struct ckd_st_writer {
    w_tensor *t;
    size_t n, cap;
    w_meta *meta;
    size_t nmeta;
};

ckd_st_writer *ckd_st_writer_new(void)
{
    return calloc(1, sizeof(ckd_st_writer));
}

void ckd_st_writer_free(ckd_st_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].owned);
    }
    for (size_t i = 0; i < w->nmeta; i++) {
        free(w->meta[i].key);
        free(w->meta[i].value);
    }
    free(w->t);
    free(w->meta);
    free(w);
}

/* jansson refuses strings that are not UTF-8; better to learn it at add time
 * than when saving (checked without allocating, so that running out of
 * memory is not mistaken for a bad name). */
static int is_utf8(const char *s)
{
    size_t bad;
    return ckdd_utf8_valid(s, strlen(s), &bad);
}

static int add(ckd_st_writer *w, const char *name, ckd_dtype dtype, int ndim,
               const int64_t *shape, const void *data, int copy, ckd_error *err)
{
    if (!w || !name)
        return ckd_errorf(err, "ckd_st_writer_add: no writer or no name");
    if (ckd_dtype_size(dtype) == 0)
        return ckd_errorf(err, "tensor '%s': unknown dtype %d", name, (int)dtype);
    if (ndim < 0 || ndim > CKD_ST_MAX_DIMS || (ndim > 0 && !shape))
        return ckd_errorf(err, "tensor '%s': ndim %d, expected 0..%d with a shape", name, ndim,
                          CKD_ST_MAX_DIMS);
    if (strcmp(name, "__metadata__") == 0)
        return ckd_errorf(err, "tensor '__metadata__': the name is reserved for metadata");
    if (!is_utf8(name))
        return ckd_errorf(err, "tensor '%s': the name is not valid UTF-8", name);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return ckd_errorf(err, "tensor '%s' added twice", name);

    uint64_t nbytes = ckd_dtype_size(dtype);
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            return ckd_errorf(err, "tensor '%s': shape[%d] is %" PRId64 ", expected >= 0", name,
                              d, shape[d]);
        if (__builtin_mul_overflow(nbytes, (uint64_t)shape[d], &nbytes))
            return ckd_errorf(err, "tensor '%s': shape overflows a 64-bit byte count", name);
    }
    if (nbytes > SIZE_MAX || nbytes > INT64_MAX)
        return ckd_errorf(err, "tensor '%s': %" PRIu64 " bytes do not fit in memory", name,
                          nbytes);
    if (nbytes && !data)
        return ckd_errorf(err, "tensor '%s': no data for %" PRIu64 " bytes", name, nbytes);

    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 16;
        w_tensor *t = realloc(w->t, cap * sizeof *t);
        if (!t)
            return ckd_errorf(err, "tensor '%s': out of memory", name);
        w->t = t;
        w->cap = cap;
    }
    w_tensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (copy && nbytes) {
        t->owned = malloc((size_t)nbytes);
        if (t->owned)
            memcpy(t->owned, data, (size_t)nbytes);
    }
    if (!t->name || (copy && nbytes && !t->owned)) {
        free(t->name);
        free(t->owned);
        return ckd_errorf(err, "tensor '%s': out of memory", name);
    }
    t->dtype = dtype;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++)
        t->shape[d] = shape[d];
    t->data = t->owned ? t->owned : data;
    t->nbytes = (size_t)nbytes;
    w->n++;
    return 0;
}

int ckd_st_writer_add(ckd_st_writer *w, const char *name, ckd_dtype dtype, int ndim,
                      const int64_t *shape, const void *data, ckd_error *err)
{
    return add(w, name, dtype, ndim, shape, data, 0, err);
}

int ckd_st_writer_add_copy(ckd_st_writer *w, const char *name, ckd_dtype dtype, int ndim,
                           const int64_t *shape, const void *data, ckd_error *err)
{
    return add(w, name, dtype, ndim, shape, data, 1, err);
}

int ckd_st_writer_set_metadata(ckd_st_writer *w, const char *key, const char *value,
                               ckd_error *err)
{
    if (!w || !key || !value)
        return ckd_errorf(err, "ckd_st_writer_set_metadata: no writer, key or value");
    if (!is_utf8(key) || !is_utf8(value))
        return ckd_errorf(err, "__metadata__ \"%s\": key or value is not valid UTF-8", key);
    char *v = strdup(value);
    if (!v)
        return ckd_errorf(err, "__metadata__ \"%s\": out of memory", key);
    for (size_t i = 0; i < w->nmeta; i++)
        if (strcmp(w->meta[i].key, key) == 0) {
            free(w->meta[i].value);
            w->meta[i].value = v;
            return 0;
        }
    w_meta *m = realloc(w->meta, (w->nmeta + 1) * sizeof *m);
    char *k = strdup(key);
    if (m)
        w->meta = m;
    if (!m || !k) {
        free(k);
        free(v);
        return ckd_errorf(err, "__metadata__ \"%s\": out of memory", key);
    }
    m[w->nmeta].key = k;
    m[w->nmeta].value = v;
    w->nmeta++;
    return 0;
}

/* ---- layout ---------------------------------------------------------------- */

/* Position in the reference library's Dtype enum (BOOL, U8, I8, I16, F16,
 * BF16, I32, F32, F64, I64 for ours); it writes larger positions first. */
static int dtype_rank(ckd_dtype dt)
{
    switch (dt) {
    case CKD_DT_BOOL: return 0;
    case CKD_DT_U8: return 1;
    case CKD_DT_I8: return 2;
    case CKD_DT_I16: return 3;
    case CKD_DT_F16: return 4;
    case CKD_DT_BF16: return 5;
    case CKD_DT_I32: return 6;
    case CKD_DT_F32: return 7;
    case CKD_DT_F64: return 8;
    case CKD_DT_I64: return 9;
    }
    return -1;
}

static int cmp_layout(const void *a, const void *b)
{
    const w_tensor *x = *(const w_tensor *const *)a, *y = *(const w_tensor *const *)b;
    int rx = dtype_rank(x->dtype), ry = dtype_rank(y->dtype);
    if (rx != ry)
        return ry - rx;
    return strcmp(x->name, y->name);
}

static int cmp_meta(const void *a, const void *b)
{
    return strcmp((*(const w_meta *const *)a)->key, (*(const w_meta *const *)b)->key);
}

/* The compact JSON header for tensors in `order`, unpadded; NULL when out of
 * memory. Metadata keys are sorted so the output does not depend on the order
 * of set_metadata calls. */
static char *build_header(const ckd_st_writer *w, w_tensor *const *order)
{
    json_t *root = json_object();
    char *out = NULL;
    const w_meta **mo = malloc((w->nmeta ? w->nmeta : 1) * sizeof *mo);
    if (!root || !mo)
        goto done;
    if (w->nmeta) {
        for (size_t i = 0; i < w->nmeta; i++)
            mo[i] = &w->meta[i];
        qsort(mo, w->nmeta, sizeof *mo, cmp_meta);
        json_t *m = json_object();
        if (json_object_set_new(root, "__metadata__", m) != 0)
            goto done;
        for (size_t i = 0; i < w->nmeta; i++)
            if (json_object_set_new(m, mo[i]->key, json_string(mo[i]->value)) != 0)
                goto done;
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        const w_tensor *t = order[i];
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++)
            json_array_append_new(shape, json_integer(t->shape[d]));
        json_t *e = json_pack("{s:s, s:o, s:[I, I]}", "dtype", ckd_dtype_name(t->dtype),
                              "shape", shape, "data_offsets", (json_int_t)off,
                              (json_int_t)(off + t->nbytes));
        if (!shape || !e || json_object_set_new(root, t->name, e) != 0)
            goto done;
        off += t->nbytes;
    }
    out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
done:
    free(mo);
    json_decref(root);
    return out;
}

/* ---- atomic write ------------------------------------------------------------ */

static int write_all(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len) {
        /* Linux writes at most ~2 GiB per call; short writes are retried. */
        size_t chunk = len > (1u << 30) ? (1u << 30) : len;
        ssize_t k = write(fd, p, chunk);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

/* Makes the rename itself durable. Filesystems that cannot sync a directory
 * say EINVAL; the rename is then as durable as that filesystem allows. */
static int sync_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir)
        return -1;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    if (rc != 0 && (errno == EINVAL || errno == ENOTSUP))
        rc = 0;
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int ckd_st_writer_save(const ckd_st_writer *w, const char *path, ckd_error *err)
{
    if (!w || !path)
        return ckd_errorf(err, "ckd_st_writer_save: no writer or no path");
    int rc = -1, fd = -1;
    char *hdr = NULL, *tmp = NULL;
    w_tensor **order = malloc((w->n ? w->n : 1) * sizeof *order);
    size_t tlen = strlen(path) + 32;
    tmp = malloc(tlen);
    if (!order || !tmp) {
        ckd_errorf(err, "%s: out of memory", path);
        goto out;
    }
    for (size_t i = 0; i < w->n; i++)
        order[i] = &w->t[i];
    qsort(order, w->n, sizeof *order, cmp_layout);
    hdr = build_header(w, order);
    if (!hdr) {
        ckd_errorf(err, "%s: out of memory building the header", path);
        goto out;
    }
    size_t hlen = strlen(hdr), pad = (8 - hlen % 8) % 8;
    uint64_t n = hlen + pad;
    unsigned char nbuf[8];
    for (int i = 0; i < 8; i++)
        nbuf[i] = (unsigned char)(n >> (8 * i));

    /* Same directory as the target, so the rename cannot cross filesystems;
     * the pid keeps concurrent savers (other processes) apart. */
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        ckd_errorf(err, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        goto out;
    }
    static const char spaces[8] = "        ";
    if (write_all(fd, nbuf, 8) != 0 || write_all(fd, hdr, hlen) != 0 ||
        write_all(fd, spaces, pad) != 0) {
        ckd_errorf(err, "%s: writing the header to %s: %s", path, tmp, strerror(errno));
        goto fail;
    }
    for (size_t i = 0; i < w->n; i++)
        if (write_all(fd, order[i]->data, order[i]->nbytes) != 0) {
            ckd_errorf(err, "%s: writing tensor '%s' to %s: %s", path, order[i]->name, tmp,
                       strerror(errno));
            goto fail;
        }
    if (fsync(fd) != 0) {
        ckd_errorf(err, "%s: fsync of %s: %s", path, tmp, strerror(errno));
        goto fail;
    }
    int cfd = fd;
    fd = -1;
    if (close(cfd) != 0) { /* NFS and friends report write errors here */
        ckd_errorf(err, "%s: closing %s: %s", path, tmp, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        ckd_errorf(err, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        goto fail;
    }
    if (sync_dir_of(path) != 0) {
        ckd_errorf(err, "%s: written, but syncing its directory failed: %s", path,
                   strerror(errno));
        goto out;
    }
    rc = 0;
    goto out;
fail:
    if (fd >= 0)
        close(fd);
    fd = -1;
    unlink(tmp);
out:
    if (fd >= 0)
        close(fd);
    free(hdr);
    free(tmp);
    free(order);
    return rc;
}
