/* Copying safetensors views into plain float / int buffers.
 * Elements are fetched with memcpy because a view's data need not be aligned
 * for its dtype (files with unpadded headers exist). */
#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "clipkd/safetensors.h"

int64_t ckd_st_numel(const ckd_st_tensor *t)
{
    /* Unsigned, so that a hand-made view with absurd dimensions cannot cause
     * signed overflow; views from ckd_st_open are checked not to overflow. */
    uint64_t n = 1;
    for (int d = 0; d < t->ndim && d < CKD_ST_MAX_DIMS; d++)
        n *= (uint64_t)t->shape[d];
    return (int64_t)n;
}

/* The destination must be exactly as long as the tensor, and the view's byte
 * count must agree with its shape — views from ckd_st_open always do, but a
 * caller may build one by hand, and we must not read past its data. */
static int check_sizes(const ckd_st_tensor *t, size_t n, ckd_error *err)
{
    const char *f = t->file ? t->file : "(memory)";
    if (t->ndim < 0 || t->ndim > CKD_ST_MAX_DIMS || ckd_dtype_size(t->dtype) == 0)
        return ckd_errorf(err, "%s: tensor '%s': bad view (ndim %d, dtype %d)", f, t->name,
                          t->ndim, (int)t->dtype);
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0)
            return ckd_errorf(err, "%s: tensor '%s': shape[%d] is negative", f, t->name, d);
    int64_t numel = ckd_st_numel(t);
    if (numel < 0 || (uint64_t)numel != n)
        return ckd_errorf(err, "%s: tensor '%s' has %" PRId64 " elements, the destination "
                          "holds %zu", f, t->name, numel, n);
    if (t->nbytes / ckd_dtype_size(t->dtype) != n || t->nbytes % ckd_dtype_size(t->dtype))
        return ckd_errorf(err, "%s: tensor '%s': %zu bytes do not hold %zu %s elements", f,
                          t->name, t->nbytes, n, ckd_dtype_name(t->dtype));
    return 0;
}

static int wrong_dtype(const ckd_st_tensor *t, const char *to, const char *from_list,
                       ckd_error *err)
{
    return ckd_errorf(err, "%s: tensor '%s' is %s; conversion to %s takes %s",
                      t->file ? t->file : "(memory)", t->name, ckd_dtype_name(t->dtype), to,
                      from_list);
}

int ckd_st_to_f32(const ckd_st_tensor *t, float *out, size_t n, ckd_error *err)
{
    if (check_sizes(t, n, err) != 0)
        return -1;
    const unsigned char *p = t->data;
    switch (t->dtype) {
    case CKD_DT_F32:
        if (n)
            memcpy(out, p, n * sizeof *out);
        return 0;
    case CKD_DT_F16:
    case CKD_DT_BF16: {
        float (*widen)(uint16_t) = t->dtype == CKD_DT_F16 ? ckd_f16_to_f32 : ckd_bf16_to_f32;
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = widen(h);
        }
        return 0;
    }
    case CKD_DT_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            out[i] = (float)d;
        }
        return 0;
    default:
        return wrong_dtype(t, "float32", "F32, F16, BF16 or F64", err);
    }
}

/* One element of an integer (or BOOL) tensor, widened to int64. */
static int64_t int_at(const unsigned char *p, ckd_dtype dt, size_t i)
{
    switch (dt) {
    case CKD_DT_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); return v; }
    case CKD_DT_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case CKD_DT_I16: { int16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    case CKD_DT_I8: return (int8_t)p[i];
    case CKD_DT_U8: return p[i];
    case CKD_DT_BOOL: return p[i] != 0;
    default: return 0;
    }
}

static int is_int_dtype(ckd_dtype dt)
{
    return dt == CKD_DT_I64 || dt == CKD_DT_I32 || dt == CKD_DT_I16 || dt == CKD_DT_I8 ||
           dt == CKD_DT_U8 || dt == CKD_DT_BOOL;
}

int ckd_st_to_i32(const ckd_st_tensor *t, int32_t *out, size_t n, ckd_error *err)
{
    if (check_sizes(t, n, err) != 0)
        return -1;
    if (!is_int_dtype(t->dtype))
        return wrong_dtype(t, "int32", "I64, I32, I16, I8, U8 or BOOL", err);
    if (t->dtype == CKD_DT_I32) {
        if (n)
            memcpy(out, t->data, n * sizeof *out);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t v = int_at(t->data, t->dtype, i);
        if (v < INT32_MIN || v > INT32_MAX)
            return ckd_errorf(err, "%s: tensor '%s': element %zu is %" PRId64 ", outside the "
                              "int32 range", t->file ? t->file : "(memory)", t->name, i, v);
        out[i] = (int32_t)v;
    }
    return 0;
}

int ckd_st_to_i64(const ckd_st_tensor *t, int64_t *out, size_t n, ckd_error *err)
{
    if (check_sizes(t, n, err) != 0)
        return -1;
    if (!is_int_dtype(t->dtype))
        return wrong_dtype(t, "int64", "I64, I32, I16, I8, U8 or BOOL", err);
    for (size_t i = 0; i < n; i++)
        out[i] = int_at(t->data, t->dtype, i);
    return 0;
}
