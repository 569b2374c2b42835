/* Reading PyTorch checkpoints (.pt, .bin) without running them; see
 * clipkd/safetensors.h (ckd_pt_open).
 *
 * What torch.save writes (torch/serialization.py), for a tensor t:
 *   torch._utils._rebuild_tensor_v2(
 *       persistent_id(("storage", torch.FloatStorage, "<key>", "cpu", numel)),
 *       storage_offset, size_tuple, stride_tuple, requires_grad, hooks)
 * wrapped in torch._utils._rebuild_parameter(tensor, requires_grad, hooks)
 * for an nn.Parameter. The persistent id names a storage: in the ZIP format
 * the member "<dir>/data/<key>" (raw little-endian elements); in the legacy
 * format one of the records after the pickles — each an int64 element count
 * and the elements — in the order of a final pickled list of keys. Offsets,
 * sizes and strides count elements; the storage's class gives the dtype.
 *
 * Everything is checked before a view is made: every tensor's extent
 * (offset + sum((size-1) * stride)) lies inside its storage, each storage's
 * bytes inside the file, and the legacy records tile the rest of the file. */
#include "config.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "clipkd/safetensors.h"
#include "pickle.h"
#include "st_internal.h"
#include "zip_read.h"

/* The globals a checkpoint of tensors needs, and nothing that can act. */
static const char *const allowed[] = {
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch._tensor._rebuild_from_type_v2",
    "torch.Tensor",
    "torch.nn.parameter.Parameter",
    "torch.FloatStorage", "torch.DoubleStorage", "torch.HalfStorage", "torch.BFloat16Storage",
    "torch.LongStorage", "torch.IntStorage", "torch.ShortStorage", "torch.CharStorage",
    "torch.ByteStorage", "torch.BoolStorage",
    NULL,
};

static const struct {
    const char *cls;
    ckd_dtype dt;
} storage_types[] = {
    {"torch.FloatStorage", CKD_DT_F32}, {"torch.DoubleStorage", CKD_DT_F64},
    {"torch.HalfStorage", CKD_DT_F16},  {"torch.BFloat16Storage", CKD_DT_BF16},
    {"torch.LongStorage", CKD_DT_I64},  {"torch.IntStorage", CKD_DT_I32},
    {"torch.ShortStorage", CKD_DT_I16}, {"torch.CharStorage", CKD_DT_I8},
    {"torch.ByteStorage", CKD_DT_U8},   {"torch.BoolStorage", CKD_DT_BOOL},
};

/* The legacy format's first pickle: the integer 0x1950a86a20f9469cfc6c as
 * protocol 2 writes it (LONG1, 10 bytes). */
static const unsigned char legacy_magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                             0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

typedef struct pt_storage {
    const char *key;            /* borrowed from the pickle */
    ckd_dtype dt;
    uint64_t numel;
    const unsigned char *data;  /* NULL until located */
    const char *member;         /* where its bytes are, for messages */
} pt_storage;

typedef struct pt_reader {
    const char *path;
    unsigned char *map;
    size_t size;
    int legacy;
    zip_dir zd;
    char dir[256];              /* the ZIP's record directory, "archive/" */
    pt_storage *storages;       /* sorted by key */
    size_t n_storages;
    void **owned;
    size_t n_owned, cap_owned;
    ckd_st_tensor *tensors;
    size_t n_tensors;
    ckd_error *err;
} pt_reader;

int pt_sniff(const unsigned char *p, size_t n)
{
    return zip_sniff(p, n) || (n >= sizeof legacy_magic && !memcmp(p, legacy_magic, sizeof legacy_magic));
}

static int keep(pt_reader *r, void *buf)
{
    if (r->n_owned == r->cap_owned) {
        size_t nc = r->cap_owned ? 2 * r->cap_owned : 16;
        void **q = realloc(r->owned, nc * sizeof *q);
        if (!q) {
            free(buf);
            return ckd_errorf(r->err, "%s: out of memory", r->path);
        }
        r->owned = q;
        r->cap_owned = nc;
    }
    r->owned[r->n_owned++] = buf;
    return 0;
}

/* ---- storages ------------------------------------------------------------------ */

static int cmp_storage(const void *a, const void *b)
{
    return strcmp(((const pt_storage *)a)->key, ((const pt_storage *)b)->key);
}

static pt_storage *find_storage(pt_reader *r, const char *key)
{
    pt_storage k = {.key = key};
    return r->n_storages ? bsearch(&k, r->storages, r->n_storages, sizeof k, cmp_storage) : NULL;
}

/* ("storage", torch.XStorage, key, location, numel[, view_metadata]) */
static int parse_pid(pt_reader *r, const pk_value *pid, pt_storage *s, const char *where)
{
    const pk_value *t = pid->items[0];
    if (t->kind != PK_TUPLE || t->n < 5 || t->items[0]->kind != PK_STR || strcmp(t->items[0]->s, "storage"))
        return ckd_errorf(r->err, "%s: byte %zu: a persistent id that is not ('storage', type, key, location, "
                          "size)", where, pid->at);
    const pk_value *cls = t->items[1], *key = t->items[2], *numel = t->items[4];
    if (cls->kind != PK_GLOBAL || key->kind != PK_STR || numel->kind != PK_INT || numel->i < 0)
        return ckd_errorf(r->err, "%s: byte %zu: storage id has the wrong types (want a storage class, a "
                          "string key and a size)", where, pid->at);
    size_t i = 0;
    while (i < sizeof storage_types / sizeof *storage_types && strcmp(storage_types[i].cls, cls->s))
        i++;
    if (i == sizeof storage_types / sizeof *storage_types)
        return ckd_errorf(r->err, "%s: byte %zu: storage '%s' has type %s, which is not a storage type clipkd "
                          "reads", where, pid->at, key->s, cls->s);
    *s = (pt_storage){.key = key->s, .dt = storage_types[i].dt, .numel = (uint64_t)numel->i};
    return 0;
}

/* Every storage the pickle names, sorted and de-duplicated (one storage
 * may back several tensors; its type and size must then agree). */
static int collect_storages(pt_reader *r, const pk_pickle *pk, const char *where)
{
    size_t n = 0;
    for (size_t i = 0; i < pk_n_values(pk); i++)
        n += pk_value_at(pk, i)->kind == PK_PID;
    r->storages = calloc(n ? n : 1, sizeof *r->storages);
    if (!r->storages)
        return ckd_errorf(r->err, "%s: out of memory", r->path);
    for (size_t i = 0; i < pk_n_values(pk); i++) {
        const pk_value *v = pk_value_at(pk, i);
        if (v->kind == PK_PID && parse_pid(r, v, &r->storages[r->n_storages++], where))
            return -1;
    }
    qsort(r->storages, r->n_storages, sizeof *r->storages, cmp_storage);
    size_t w = 0;
    for (size_t i = 0; i < r->n_storages; i++) {
        if (w && !strcmp(r->storages[w - 1].key, r->storages[i].key)) {
            if (r->storages[w - 1].dt != r->storages[i].dt || r->storages[w - 1].numel != r->storages[i].numel)
                return ckd_errorf(r->err, "%s: storage '%s' is named with two different types or sizes", where,
                                  r->storages[i].key);
            continue;
        }
        r->storages[w++] = r->storages[i];
    }
    r->n_storages = w;
    return 0;
}

static int storage_bytes(pt_reader *r, const pt_storage *s, uint64_t *bytes)
{
    size_t es = ckd_dtype_size(s->dt);
    if (s->numel > UINT64_MAX / es)
        return ckd_errorf(r->err, "%s: storage '%s': %" PRIu64 " elements overflow", r->path, s->key, s->numel);
    *bytes = s->numel * es;
    return 0;
}

/* ZIP: each storage is the member <dir>data/<key>. */
static int locate_zip_storages(pt_reader *r)
{
    for (size_t i = 0; i < r->n_storages; i++) {
        pt_storage *s = &r->storages[i];
        char name[512];
        snprintf(name, sizeof name, "%sdata/%s", r->dir, s->key);
        const zip_member *m = zip_find(&r->zd, name);
        if (!m)
            return ckd_errorf(r->err, "%s: storage '%s' has no member %s (truncated or damaged archive)", r->path,
                              s->key, name);
        uint64_t bytes = 0;
        if (storage_bytes(r, s, &bytes))
            return -1;
        if (m->usize < bytes)
            return ckd_errorf(r->err, "%s: member %s holds %" PRIu64 " bytes, storage '%s' needs %" PRIu64 " (%"
                              PRIu64 " %s elements)", r->path, name, m->usize, s->key, bytes, s->numel,
                              ckd_dtype_name(s->dt));
        void *owned;
        if (zip_member_data(m, r->map, r->path, 1, &s->data, &owned, r->err) || (owned && keep(r, owned)))
            return -1;
        s->member = m->name;
    }
    return 0;
}

/* Legacy: after the pickles, for each key of the final list, an int64
 * element count and the elements. */
static int locate_legacy_storages(pt_reader *r, const pk_value *keys, size_t pos)
{
    if (keys->kind != PK_LIST)
        return ckd_errorf(r->err, "%s: the legacy storage key list is a %s, expected a list", r->path,
                          pk_kind_name(keys->kind));
    for (size_t i = 0; i < keys->n; i++) {
        const pk_value *k = keys->items[i];
        pt_storage *s = k->kind == PK_STR ? find_storage(r, k->s) : NULL;
        if (!s)
            return ckd_errorf(r->err, "%s: legacy storage list entry %zu is not a storage the checkpoint names",
                              r->path, i);
        if (s->data)
            return ckd_errorf(r->err, "%s: storage '%s' is listed twice", r->path, s->key);
        uint64_t bytes = 0;
        if (storage_bytes(r, s, &bytes))
            return -1;
        if (r->size - pos < 8)
            return ckd_errorf(r->err, "%s: the file ends before storage '%s' at byte %zu (truncated)", r->path,
                              s->key, pos);
        uint64_t n = 0;
        for (int b = 7; b >= 0; b--)
            n = n << 8 | r->map[pos + (size_t)b];
        if (n != s->numel)
            return ckd_errorf(r->err, "%s: storage '%s' at byte %zu has %" PRIu64 " elements, the pickle says %"
                              PRIu64, r->path, s->key, pos, n, s->numel);
        pos += 8;
        if (bytes > r->size - pos)
            return ckd_errorf(r->err, "%s: storage '%s' (%" PRIu64 " bytes at byte %zu) runs past the end of the "
                              "file (truncated)", r->path, s->key, bytes, pos);
        s->data = r->map + pos;
        s->member = "legacy storage records";
        pos += (size_t)bytes;
    }
    for (size_t i = 0; i < r->n_storages; i++)
        if (!r->storages[i].data)
            return ckd_errorf(r->err, "%s: storage '%s' is missing from the storage records", r->path,
                              r->storages[i].key);
    return 0;
}

/* ---- tensors -------------------------------------------------------------------- */

/* The tensor a value rebuilds: (storage pid, offset, size, stride) found
 * through the rebuild functions PyTorch uses. */
static const pk_value *tensor_args(const pk_value *v, int depth)
{
    if (!v || v->kind != PK_CALL || depth > 8 || v->items[1]->kind != PK_TUPLE)
        return NULL;
    const pk_value *fn = v->items[0], *a = v->items[1];
    if ((pk_is_global(fn, "torch._utils._rebuild_tensor_v2") || pk_is_global(fn, "torch._utils._rebuild_tensor")) &&
        a->n >= 4)
        return a;
    if ((pk_is_global(fn, "torch._utils._rebuild_parameter") ||
         pk_is_global(fn, "torch._utils._rebuild_parameter_with_state")) && a->n >= 1)
        return tensor_args(a->items[0], depth + 1);
    /* _rebuild_from_type_v2(func, type, args, state): func(*args) */
    if (pk_is_global(fn, "torch._tensor._rebuild_from_type_v2") && a->n >= 3 && a->items[2]->kind == PK_TUPLE) {
        pk_value *items[2] = {a->items[0], a->items[2]};
        pk_value inner = {.kind = PK_CALL, .items = items, .n = 2};
        return tensor_args(&inner, depth + 1);
    }
    return NULL;
}

static int int_tuple(const pk_value *t, int64_t *out, int *n)
{
    if (t->kind != PK_TUPLE || t->n > CKD_ST_MAX_DIMS)
        return -1;
    for (size_t i = 0; i < t->n; i++) {
        if (t->items[i]->kind != PK_INT || t->items[i]->i < 0)
            return -1;
        out[i] = t->items[i]->i;
    }
    *n = (int)t->n;
    return 0;
}

/* Copies a strided tensor into contiguous order, one element at a time
 * (strided tensors in checkpoints are rare and small). */
static void gather(unsigned char *dst, const unsigned char *src, size_t es, int nd, const int64_t *size,
                   const int64_t *stride, uint64_t numel)
{
    int64_t idx[CKD_ST_MAX_DIMS] = {0};
    uint64_t off = 0;
    for (uint64_t e = 0; e < numel; e++) {
        memcpy(dst + e * es, src + off * es, es);
        for (int d = nd - 1; d >= 0; d--) {
            off += (uint64_t)stride[d];
            if (++idx[d] < size[d])
                break;
            off -= (uint64_t)stride[d] * (uint64_t)size[d];
            idx[d] = 0;
        }
    }
}

static int make_tensor(pt_reader *r, const char *name, const pk_value *v, ckd_st_tensor *t)
{
    const pk_value *a = tensor_args(v, 0);
    if (!a) {
        const char *what = v->kind == PK_CALL ? v->items[0]->s : pk_kind_name(v->kind);
        return ckd_errorf(r->err, "%s: state dict entry '%s' (%s) is not a tensor", r->path, name, what);
    }
    const pk_value *pid = a->items[0], *off = a->items[1];
    int64_t size[CKD_ST_MAX_DIMS], stride[CKD_ST_MAX_DIMS];
    int nd, nds;
    if (pid->kind != PK_PID || pid->items[0]->kind != PK_TUPLE || pid->items[0]->n < 3 ||
        pid->items[0]->items[2]->kind != PK_STR || off->kind != PK_INT || off->i < 0 ||
        int_tuple(a->items[2], size, &nd) || int_tuple(a->items[3], stride, &nds) || nd != nds)
        return ckd_errorf(r->err, "%s: tensor '%s': malformed arguments (want a storage, an offset and size and "
                          "stride tuples of equal length, at most %d dimensions)", r->path, name, CKD_ST_MAX_DIMS);
    const pt_storage *s = find_storage(r, pid->items[0]->items[2]->s);
    if (!s)
        return ckd_errorf(r->err, "%s: tensor '%s': its storage is unknown", r->path, name);
    size_t es = ckd_dtype_size(s->dt);
    /* Extent, with overflow checks: numel and the last element touched. */
    uint64_t numel = 1, last = (uint64_t)off->i;
    int contiguous = 1;
    uint64_t expect = 1;
    for (int d = nd - 1; d >= 0; d--) {
        if (size[d] && numel > UINT64_MAX / (uint64_t)size[d])
            return ckd_errorf(r->err, "%s: tensor '%s': its size overflows", r->path, name);
        numel *= (uint64_t)size[d];
        if (size[d] > 1) {
            if ((uint64_t)stride[d] > (UINT64_MAX - last) / (uint64_t)(size[d] - 1))
                return ckd_errorf(r->err, "%s: tensor '%s': its strides overflow", r->path, name);
            last += (uint64_t)stride[d] * (uint64_t)(size[d] - 1);
            contiguous &= (uint64_t)stride[d] == expect;
        }
        expect *= (uint64_t)(size[d] ? size[d] : 1);
    }
    if (numel && last >= s->numel)
        return ckd_errorf(r->err, "%s: tensor '%s' reaches element %" PRIu64 " of storage '%s', which holds %" PRIu64
                          " %s elements (%s): offset or strides past the storage", r->path, name, last, s->key,
                          s->numel, ckd_dtype_name(s->dt), s->member);
    if (numel > SIZE_MAX / es)
        return ckd_errorf(r->err, "%s: tensor '%s' does not fit in memory", r->path, name);
    *t = (ckd_st_tensor){.file = r->path, .dtype = s->dt, .ndim = nd, .nbytes = (size_t)numel * es};
    for (int d = 0; d < nd; d++)
        t->shape[d] = size[d];
    if (!numel || contiguous) {
        t->data = numel ? s->data + (size_t)off->i * es : s->data;
    } else {
        unsigned char *buf = malloc(t->nbytes);
        if (!buf)
            return ckd_errorf(r->err, "%s: tensor '%s': cannot allocate %zu bytes", r->path, name, t->nbytes);
        gather(buf, s->data + (size_t)off->i * es, es, nd, size, stride, numel);
        if (keep(r, buf))
            return -1;
        t->data = buf;
    }
    if (!(t->name = strdup(name)))
        return ckd_errorf(r->err, "%s: out of memory", r->path);
    return 0;
}

/* ---- the state dict --------------------------------------------------------------- */

static int is_state_dict(const pk_value *v)
{
    return v && v->kind == PK_DICT;
}

/* The dict the tensors come from; *key_out names it ("" = top level), and
 * skipped lists the other top-level entries. */
static const pk_value *choose(pt_reader *r, const pk_value *root, const char *key, const char **key_out,
                              char *skipped, size_t cap)
{
    if (root->kind != PK_DICT) {
        ckd_errorf(r->err, "%s: the checkpoint holds a %s, not a dict of tensors", r->path, pk_kind_name(root->kind));
        return NULL;
    }
    const pk_value *sd = NULL;
    if (key && *key) {
        sd = pk_dict_get(root, key);
        if (!is_state_dict(sd)) {
            size_t len = 0;
            char keys[400] = "";
            for (size_t i = 0; i + 1 < root->n && len < sizeof keys - 40; i += 2)
                if (root->items[i]->kind == PK_STR)
                    len += (size_t)snprintf(keys + len, sizeof keys - len, "%s'%.30s'", len ? ", " : "",
                                            root->items[i]->s);
            ckd_errorf(r->err, "%s: %s '%s' (top-level keys: %s)", r->path, sd ? "is not a dict:" : "has no key", key,
                       len ? keys : "none");
            return NULL;
        }
        *key_out = key;
    } else if (!key && is_state_dict(pk_dict_get(root, "state_dict"))) {
        sd = pk_dict_get(root, "state_dict");
        *key_out = "state_dict";
    } else if (!key && is_state_dict(pk_dict_get(root, "model"))) {
        sd = pk_dict_get(root, "model");
        *key_out = "model";
    } else {
        *key_out = "";
        return root;
    }
    size_t len = 0;
    skipped[0] = 0;
    for (size_t i = 0; i + 1 < root->n; i += 2) {
        const pk_value *k = root->items[i], *v = root->items[i + 1];
        if (v != sd && k->kind == PK_STR && len < cap - 64)
            len += (size_t)snprintf(skipped + len, cap - len, "%s%.40s (%s)", len ? ", " : "", k->s,
                                    v->kind == PK_CALL ? "object" : pk_kind_name(v->kind));
    }
    return sd;
}

static int read_tensors(pt_reader *r, const pk_value *sd, const char *strip)
{
    r->tensors = calloc(sd->n / 2 + 1, sizeof *r->tensors);
    if (!r->tensors)
        return ckd_errorf(r->err, "%s: out of memory", r->path);
    for (size_t i = 0; i + 1 < sd->n; i += 2) {
        const pk_value *k = sd->items[i];
        if (k->kind != PK_STR)
            return ckd_errorf(r->err, "%s: state dict key %zu is a %s, expected a tensor name", r->path, i / 2,
                              pk_kind_name(k->kind));
        const char *name = k->s;
        if (strip && *strip && !strncmp(name, strip, strlen(strip)))
            name += strlen(strip);
        if (make_tensor(r, name, sd->items[i + 1], &r->tensors[r->n_tensors]))
            return -1;
        r->n_tensors++;
    }
    return 0;
}

/* NULL strip: "module." when every name has it. */
static const char *prefix_to_strip(const pk_value *sd, const char *strip)
{
    if (strip)
        return strip;
    if (sd->n < 2)
        return "";
    for (size_t i = 0; i + 1 < sd->n; i += 2)
        if (sd->items[i]->kind != PK_STR || strncmp(sd->items[i]->s, "module.", 7))
            return "";
    return "module.";
}

/* ---- the two container formats ----------------------------------------------------- */

static pk_pickle *load_zip(pt_reader *r, char *where, size_t cap)
{
    if (zip_dir_read(&r->zd, r->map, r->size, r->path, r->err))
        return NULL;
    const zip_member *pkl = NULL;
    int has_constants = 0;
    for (size_t i = 0; i < r->zd.n; i++) {
        const char *nm = r->zd.members[i].name, *slash = strchr(nm, '/');
        if (slash && !strcmp(slash, "/constants.pkl"))
            has_constants = 1;
        if (!slash || strcmp(slash, "/data.pkl") || (size_t)(slash - nm) + 2 > sizeof r->dir)
            continue;
        if (pkl) {
            ckd_errorf(r->err, "%s: two pickles, %s and %s: not a single torch.save checkpoint", r->path, pkl->name, nm);
            return NULL;
        }
        pkl = &r->zd.members[i];
        snprintf(r->dir, sizeof r->dir, "%.*s/", (int)(slash - nm), nm);
    }
    if (!pkl) {
        ckd_errorf(r->err, "%s: a ZIP archive without <dir>/data.pkl: not a PyTorch checkpoint", r->path);
        return NULL;
    }
    char bo[300];
    snprintf(bo, sizeof bo, "%sbyteorder", r->dir);
    const zip_member *bom = zip_find(&r->zd, bo);
    if (bom && !(bom->method == 0 && bom->usize == 6 && !memcmp(r->map + bom->data_off, "little", 6))) {
        ckd_errorf(r->err, "%s: %s is not \"little\": big-endian checkpoints are not read", r->path, bo);
        return NULL;
    }
    const unsigned char *data;
    void *owned;
    if (zip_member_data(pkl, r->map, r->path, 1, &data, &owned, r->err) || (owned && keep(r, owned)))
        return NULL;
    snprintf(where, cap, "%s: %s", r->path, pkl->name);
    pk_pickle *pk = pk_load(data, (size_t)pkl->usize, where, allowed, NULL, NULL, r->err);
    if (!pk && has_constants)
        ckd_error_prefix(r->err, "%s is a TorchScript archive (torch.jit.save); save model.state_dict() with "
                         "torch.save instead", r->path);
    if (pk && collect_storages(r, pk, where)) {
        pk_free(pk);
        return NULL;
    }
    if (pk && locate_zip_storages(r)) {
        pk_free(pk);
        return NULL;
    }
    return pk;
}

/* Legacy: magic, protocol version, system info, the object, the key list. */
static pk_pickle *load_legacy(pt_reader *r, char *where, size_t cap)
{
    static const char *const none[] = {NULL};
    static const char *const names[] = {"magic number", "protocol version", "system info"};
    size_t pos = 0, used;
    for (int i = 0; i < 3; i++) {
        snprintf(where, cap, "%s: legacy %s pickle", r->path, names[i]);
        pk_pickle *pk = pk_load(r->map + pos, r->size - pos, where, none, NULL, &used, r->err);
        if (!pk)
            return NULL;
        const pk_value *v = pk_root(pk);
        int ok = i == 0 ? v->kind == PK_BIGINT : i == 1 ? v->kind == PK_INT && v->i == 1001 : v->kind == PK_DICT;
        if (ok && i == 2) {
            const pk_value *le = pk_dict_get(v, "little_endian");
            ok = !le || (le->kind == PK_BOOL && le->i);
        }
        pk_free(pk);
        if (!ok)
            return ckd_errorf(r->err, "%s: the legacy %s is not what torch.save writes%s", r->path, names[i],
                              i == 2 ? " (or the file is big-endian)" : ""), NULL;
        pos += used;
    }
    snprintf(where, cap, "%s: legacy object pickle", r->path);
    pk_pickle *pk = pk_load(r->map + pos, r->size - pos, where, allowed, NULL, &used, r->err);
    if (!pk)
        return NULL;
    pos += used;
    char kwhere[600];
    snprintf(kwhere, sizeof kwhere, "%s: legacy storage key pickle", r->path);
    pk_pickle *keys = collect_storages(r, pk, where) ? NULL
                                                     : pk_load(r->map + pos, r->size - pos, kwhere, none, NULL, &used, r->err);
    if (!keys || locate_legacy_storages(r, pk_root(keys), pos + used)) {
        pk_free(keys);
        pk_free(pk);
        return NULL;
    }
    /* storage keys are borrowed from the object pickle, which we keep */
    pk_free(keys);
    return pk;
}

ckd_safetensors *ckd_pt_open(const char *path, const ckd_pt_opts *opts, ckd_error *err)
{
    pt_reader r = {.path = path, .err = err};
    void *map;
    if (st_map_file(path, &map, &r.size, err))
        return NULL;
    r.map = map;
    r.legacy = !zip_sniff(r.map, r.size);
    if (r.legacy && !pt_sniff(r.map, r.size)) {
        ckd_errorf(err, "%s: not a PyTorch checkpoint (neither a ZIP archive nor torch.save's legacy format)", path);
        munmap(map, r.size);
        return NULL;
    }
    char where[600], skipped[1024] = "";
    const char *key_used = "";
    pk_pickle *pk = r.legacy ? load_legacy(&r, where, sizeof where) : load_zip(&r, where, sizeof where);
    const pk_value *sd = pk ? choose(&r, pk_root(pk), opts ? opts->key : NULL, &key_used, skipped, sizeof skipped)
                            : NULL;
    const char *strip = sd ? prefix_to_strip(sd, opts ? opts->strip_prefix : NULL) : "";
    int rc = sd ? read_tensors(&r, sd, strip) : -1;
    const char *meta[8] = {"format", r.legacy ? "pytorch-legacy" : "pytorch-zip", "pytorch.state_dict", key_used,
                           "pytorch.skipped", skipped, "pytorch.stripped_prefix", strip};
    size_t n_meta = (*skipped ? 3 : 2) + (*strip ? 1 : 0);
    if (!*skipped) {
        meta[4] = meta[6];
        meta[5] = meta[7];
    }
    ckd_safetensors *st = NULL;
    if (rc == 0) {
        /* st_adopt owns the map, names and copies from here on */
        st = st_adopt(path, map, r.size, r.tensors, r.n_tensors, r.owned, r.n_owned, meta, n_meta, err);
    } else {
        for (size_t i = 0; i < r.n_tensors; i++)
            free((char *)r.tensors[i].name);
        free(r.tensors);
        for (size_t i = 0; i < r.n_owned; i++)
            free(r.owned[i]);
        free(r.owned);
        munmap(map, r.size);
    }
    pk_free(pk);
    zip_dir_free(&r.zd);
    free(r.storages);
    return st;
}
