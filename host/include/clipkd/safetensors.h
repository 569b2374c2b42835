/* clipkd/safetensors.h — reading and writing safetensors checkpoints.
 *
 * A safetensors file is an 8-byte little-endian header length N, N bytes of
 * JSON (tensor name -> dtype, shape, data_offsets; optional "__metadata__"
 * string map), then the tensor bytes. The reader checks everything the
 * reference implementation checks (the offsets tile the data exactly, sizes
 * match shape x dtype, no overflow) before it hands out any view, so a view's
 * bytes are always inside the file.
 *
 * Reading memory-maps the file read-only: tensors are views into the mapping
 * and stay valid until ckd_st_close(). A view's data pointer is not
 * necessarily aligned for its dtype (files whose header was not padded to a
 * multiple of 8 exist); the ckd_st_to_* helpers copy safely either way.
 *
 * ckd_st_open() also accepts a sharded checkpoint — the
 * model.safetensors.index.json file, or a directory holding it — and then
 * presents every tensor of its weight_map as if it came from one file.
 *
 * The host must be little-endian (as the format is); the views expose raw
 * little-endian bytes.
 */
#ifndef CLIPKD_SAFETENSORS_H
#define CLIPKD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "clipkd/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The element types clipkd reads and writes. Files holding other safetensors
 * dtypes (U16, U32, U64, C64, the F8/F6/F4 families) are rejected. */
typedef enum {
    CKD_DT_F64,
    CKD_DT_F32,
    CKD_DT_F16,
    CKD_DT_BF16,
    CKD_DT_I64,
    CKD_DT_I32,
    CKD_DT_I16,
    CKD_DT_I8,
    CKD_DT_U8,
    CKD_DT_BOOL
} ckd_dtype;

#define CKD_ST_MAX_DIMS 8

/* One tensor: a view into a mapped file (reader). `file` is the path of the
 * file that holds it (the shard, for a sharded checkpoint). Dimensions past
 * ndim are 0. A 0-d tensor (ndim 0) has one element. */
typedef struct ckd_st_tensor {
    const char *name;
    const char *file;
    ckd_dtype dtype;
    int ndim;
    int64_t shape[CKD_ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
} ckd_st_tensor;

/* "F32", "BF16", ...; "?" for a value outside the enum. */
const char *ckd_dtype_name(ckd_dtype dt);
/* Bytes per element (BOOL is 1); 0 for a value outside the enum. */
size_t ckd_dtype_size(ckd_dtype dt);

/* ---- reading ------------------------------------------------------------ */

typedef struct ckd_safetensors ckd_safetensors;

/* Opens `path`: a .safetensors file; a file whose name ends in ".json" (a
 * sharded checkpoint's index); or a directory, in which
 * model.safetensors.index.json is used if present, else model.safetensors.
 * Returns NULL and fills err when the file (or any shard) is missing or
 * malformed; the message names the file and the tensor or byte offset. */
ckd_safetensors *ckd_st_open(const char *path, ckd_error *err);

/* Reads only the header of a single .safetensors file, without mapping or
 * checking the tensor data: for looking at files that may be damaged (a
 * cache listing, a report on a truncated file). *header gets the parsed
 * header object (tensor entries and "__metadata__"; the caller decrefs);
 * *expected_size (may be NULL) the size in bytes the file has when it is
 * whole: 8 + the header length + the largest data offset a tensor claims.
 * Fails, with the message ckd_st_open would give, when the header itself
 * cannot be read. */
int ckd_st_read_header(const char *path, json_t **header, int64_t *expected_size,
                       ckd_error *err);

/* Unmaps every file and frees everything; views become invalid. NULL is ok. */
void ckd_st_close(ckd_safetensors *st);

/* The tensor called `name`, or NULL. O(log n). */
const ckd_st_tensor *ckd_st_find(const ckd_safetensors *st, const char *name);

/* Iteration in file order (ascending data offset). For a sharded checkpoint:
 * shards in name order, each in file order, only the tensors its weight_map
 * assigns to that shard. */
size_t ckd_st_count(const ckd_safetensors *st);
const ckd_st_tensor *ckd_st_at(const ckd_safetensors *st, size_t i);

/* The __metadata__ value for `key`, or NULL. For a sharded checkpoint, the
 * index's "metadata" object instead (integers such as total_size are given
 * in decimal; values of other JSON types are left out). */
const char *ckd_st_metadata(const ckd_safetensors *st, const char *key);

/* Number of elements (product of the shape; 1 for 0-d). */
int64_t ckd_st_numel(const ckd_st_tensor *t);

/* Copy a tensor into a caller buffer of exactly n elements (n must equal
 * ckd_st_numel(t), so that a shape mix-up cannot go unnoticed).
 *   to_f32: from F32, F16, BF16 (exact) or F64 (rounded to nearest; values
 *           beyond float range become +-inf).
 *   to_i32: from I32, I16, I8, U8, BOOL, or I64 with every value checked to
 *           fit int32 (the error names the first element that does not).
 *   to_i64: from I64, I32, I16, I8, U8, BOOL.
 * On failure out may have been partly written. */
int ckd_st_to_f32(const ckd_st_tensor *t, float *out, size_t n, ckd_error *err);
int ckd_st_to_i32(const ckd_st_tensor *t, int32_t *out, size_t n, ckd_error *err);
int ckd_st_to_i64(const ckd_st_tensor *t, int64_t *out, size_t n, ckd_error *err);

/* ---- PyTorch checkpoints -------------------------------------------------- */

/* A .pt / .bin file written by torch.save: the ZIP format (PyTorch >= 1.6:
 * <dir>/data.pkl and a member <dir>/data/<key> per storage, found whatever
 * <dir> is called; members stored or deflated; ZIP64) or the legacy format
 * (a row of pickles, then the storages). The pickle is read by an
 * interpreter that never calls anything: it knows PyTorch's tensor and
 * storage constructors and collections.OrderedDict, and refuses any other
 * global, naming it. The state dict found becomes a ckd_safetensors whose
 * views keep the checkpoint's dtypes: contiguous tensors point into the
 * mapped file (stored members), others (strided views, deflated members)
 * into copies made here. Several tensors may share one storage.
 *
 * ckd_st_open() opens these files too, with the default options: it tells
 * them from safetensors by their first bytes. Metadata (ckd_st_metadata):
 * "format" ("pytorch-zip" or "pytorch-legacy"), "pytorch.state_dict" (the
 * key the tensors came from, "" for the top level), "pytorch.skipped" (the
 * other top-level entries, "optimizer (dict), epoch (int)"), and
 * "pytorch.stripped_prefix" when names lost a prefix. */
typedef struct ckd_pt_opts {
    const char *key;           /* the state dict: NULL finds it ("state_dict", then
                                  "model", else the top level); "" the top level;
                                  else that top-level key */
    const char *strip_prefix;  /* NULL: "module." when every name has it (DDP);
                                  "": keep names; else removed where present */
} ckd_pt_opts;

ckd_safetensors *ckd_pt_open(const char *path, const ckd_pt_opts *opts, ckd_error *err);

/* ---- writing ------------------------------------------------------------ */

typedef struct ckd_st_writer ckd_st_writer;

/* NULL only when out of memory. */
ckd_st_writer *ckd_st_writer_new(void);
void ckd_st_writer_free(ckd_st_writer *w);

/* Adds a tensor of any ckd_dtype. The name and shape are copied; the data is
 * only referenced: it must stay valid and unchanged until ckd_st_writer_save
 * has returned (checkpoints of large models are then written without a
 * second copy in memory). data holds numel x ckd_dtype_size(dtype) bytes in
 * little-endian order; it may be NULL when numel is 0. Fails on a duplicate
 * or reserved ("__metadata__") name, a name that is not UTF-8, ndim outside
 * 0..CKD_ST_MAX_DIMS, a negative dimension, or a byte size that overflows. */
int ckd_st_writer_add(ckd_st_writer *w, const char *name, ckd_dtype dtype,
                      int ndim, const int64_t *shape, const void *data,
                      ckd_error *err);
/* Same, but the bytes are copied now, so `data` may be freed at once. */
int ckd_st_writer_add_copy(ckd_st_writer *w, const char *name, ckd_dtype dtype,
                           int ndim, const int64_t *shape, const void *data,
                           ckd_error *err);

/* Sets (or replaces) a __metadata__ entry; both strings are copied. */
int ckd_st_writer_set_metadata(ckd_st_writer *w, const char *key,
                               const char *value, ckd_error *err);

/* Writes the file as the safetensors library does: tensors ordered by dtype
 * (widest first, the library's dtype order) then by name, compact JSON with
 * __metadata__ first (keys sorted), header padded with spaces to a multiple
 * of 8 bytes. The write is atomic: data goes to "<path>.tmp.<pid>", which is
 * fsync'ed and renamed over path, then the directory is fsync'ed. On any
 * failure the temporary file is removed and an existing file at path is left
 * as it was. Because the old file is replaced, not overwritten, tensors may
 * be views into that very file (opened with ckd_st_open). The writer can be
 * saved again or freed afterwards. */
int ckd_st_writer_save(const ckd_st_writer *w, const char *path, ckd_error *err);

/* ---- half precision ----------------------------------------------------- */

/* IEEE binary16 and bfloat16 <-> float. Widening is exact (subnormals, inf,
 * NaN payloads kept); narrowing rounds to nearest, ties to even, overflows to
 * inf, and turns NaN into a quiet NaN of the same sign. */
float ckd_f16_to_f32(uint16_t h);
uint16_t ckd_f32_to_f16(float f);
float ckd_bf16_to_f32(uint16_t h);
uint16_t ckd_f32_to_bf16(float f);

#ifdef __cplusplus
}
#endif
#endif
