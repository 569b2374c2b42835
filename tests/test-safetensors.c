/* Tests for clipkd/safetensors.h: golden files written by PyTorch's
 * safetensors, write -> read round trips, sharded checkpoints, every kind of
 * malformed file the reference reader rejects, atomic saves, and the
 * F16/BF16 conversions (exhaustively). */
#include "config.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clipkd/safetensors.h"

/* ---- helpers --------------------------------------------------------------- */

/* Rotates over a few buffers so that two calls can be one call's arguments. */
static const char *fixture(const char *rel)
{
    static char buf[4][4096];
    static int next;
    char *b = buf[next++ % 4];
    const char *src = getenv("CKD_TEST_SRCDIR");
    snprintf(b, sizeof buf[0], "%s/tests/fixtures/%s", src ? src : ".", rel);
    return b;
}

static char *make_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *d = malloc(4096);
    snprintf(d, 4096, "%s/ckd-st-XXXXXX", base && *base ? base : "/tmp");
    cr_assert(mkdtemp(d), "mkdtemp %s: %s", d, strerror(errno));
    return d;
}

static char *path_in(const char *dir, const char *name)
{
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/%s", dir, name);
    return p;
}

/* Entries in dir, other than . and .. */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static void rm_tmpdir(char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        for (struct dirent *e; (e = readdir(d));)
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                char *p = path_in(dir, e->d_name);
                unlink(p);
                free(p);
            }
        closedir(d);
    }
    rmdir(dir);
    free(dir);
}

static void write_bytes(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "fopen %s", path);
    cr_assert_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
}

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "fopen %s", path);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*len ? *len : 1);
    cr_assert_eq(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

/* A safetensors file with the given header length field, header text and
 * data_len bytes of data (a counting pattern). */
static void write_st_n(const char *path, uint64_t n, const char *header, size_t data_len)
{
    size_t hl = strlen(header), len = 8 + hl + data_len;
    unsigned char *b = malloc(len);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(n >> (8 * i));
    memcpy(b + 8, header, hl);
    for (size_t i = 0; i < data_len; i++)
        b[8 + hl + i] = (unsigned char)i;
    write_bytes(path, b, len);
    free(b);
}

static void write_st(const char *path, const char *header, size_t data_len)
{
    write_st_n(path, strlen(header), header, data_len);
}

#define ASSERT_HAS(msg, needle) \
    cr_assert(strstr((msg), (needle)), "expected \"%s\" in: %s", (needle), (msg))

/* ---- golden files from PyTorch ------------------------------------------------ */

Test(golden, kd_losses_values)
{
    ckd_error err = {{0}};
    ckd_safetensors *st = ckd_st_open(fixture("kd/kd_losses_seed1.safetensors"), &err);
    cr_assert(st, "%s", err.msg);
    cr_assert_eq(ckd_st_count(st), 80);
    cr_assert_str_eq(ckd_st_metadata(st, "seed"), "1");
    cr_assert_str_eq(ckd_st_metadata(st, "torch"), "2.11.0+cu130");
    cr_assert_str_eq(ckd_st_metadata(st, "dtype_of_math"), "float64");
    cr_assert_null(ckd_st_metadata(st, "format"));
    cr_assert_null(ckd_st_find(st, "no.such.tensor"));

    const ckd_st_tensor *lab = ckd_st_find(st, "input.labels");
    cr_assert(lab);
    cr_assert_eq(lab->dtype, CKD_DT_I32);
    cr_assert_eq(lab->ndim, 1);
    cr_assert_eq(lab->shape[0], 8);
    int32_t l32[8];
    int64_t l64[8];
    static const int expect[8] = {4, 2, 0, 0, 2, 3, 0, 4};
    cr_assert_eq(ckd_st_to_i32(lab, l32, 8, &err), 0, "%s", err.msg);
    cr_assert_eq(ckd_st_to_i64(lab, l64, 8, &err), 0, "%s", err.msg);
    for (int i = 0; i < 8; i++)
        cr_assert(l32[i] == expect[i] && l64[i] == expect[i], "label %d", i);
    float bad[8];
    cr_assert_eq(ckd_st_to_f32(lab, bad, 8, &err), -1);
    ASSERT_HAS(err.msg, "input.labels");

    const ckd_st_tensor *loss = ckd_st_find(st, "clip.loss");
    cr_assert(loss && loss->ndim == 0 && ckd_st_numel(loss) == 1 && loss->nbytes == 4);
    float v;
    cr_assert_eq(ckd_st_to_f32(loss, &v, 1, &err), 0, "%s", err.msg);
    cr_assert_eq(v, 0x1.bfe1acp+2f);

    const ckd_st_tensor *s = ckd_st_find(st, "input.s_img");
    cr_assert(s && s->dtype == CKD_DT_F32 && s->ndim == 2 && s->shape[0] == 8 && s->shape[1] == 16);
    float simg[128];
    cr_assert_eq(ckd_st_to_f32(s, simg, 127, &err), -1, "wrong length must fail");
    ASSERT_HAS(err.msg, "128 elements");
    cr_assert_eq(ckd_st_to_f32(s, simg, 128, &err), 0, "%s", err.msg);
    cr_assert_eq(simg[0], -0x1.3ec2bp-2f);
    cr_assert_eq(simg[17], 0x1.7ef624p-2f);
    cr_assert_eq(simg[127], 0x1.3c5564p-3f);
    cr_assert_eq(memcmp(simg, s->data, sizeof simg), 0);
    cr_assert_eq(ckd_st_find(st, "input.t_img")->shape[1], 24);
    cr_assert_eq(ckd_st_find(st, "input.centroids")->shape[0], 5);

    /* File order: contiguous data, F32 tensors by name then the I32 one. */
    cr_assert_str_eq(ckd_st_at(st, 0)->name, "afd.grad.afd_img.bias");
    cr_assert_str_eq(ckd_st_at(st, 79)->name, "input.labels");
    cr_assert_null(ckd_st_at(st, 80));
    cr_assert_eq((uintptr_t)ckd_st_at(st, 0)->data % 8, 0, "padded header: aligned data");
    for (size_t i = 0; i + 1 < 80; i++) {
        const ckd_st_tensor *a = ckd_st_at(st, i), *b = ckd_st_at(st, i + 1);
        cr_assert_eq((const char *)a->data + a->nbytes, (const char *)b->data, "%zu", i);
        cr_assert(ckd_st_find(st, a->name) == a);
    }
    ckd_st_close(st);
}

/* Writing what we read must reproduce PyTorch's file byte for byte: same
 * order, same compact JSON, same padding. */
Test(golden, kd_losses_rewrite_is_byte_identical)
{
    ckd_error err = {{0}};
    const char *src = fixture("kd/kd_losses_seed1.safetensors");
    ckd_safetensors *st = ckd_st_open(src, &err);
    cr_assert(st, "%s", err.msg);
    ckd_st_writer *w = ckd_st_writer_new();
    /* Added in reverse, metadata in another order: the writer sorts. */
    for (size_t i = ckd_st_count(st); i-- > 0;) {
        const ckd_st_tensor *t = ckd_st_at(st, i);
        cr_assert_eq(ckd_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &err),
                     0, "%s", err.msg);
    }
    cr_assert_eq(ckd_st_writer_set_metadata(w, "torch", "2.11.0+cu130", &err), 0);
    cr_assert_eq(ckd_st_writer_set_metadata(w, "seed", "1", &err), 0);
    cr_assert_eq(ckd_st_writer_set_metadata(w, "dtype_of_math", "float64", &err), 0);
    char *dir = make_tmpdir(), *out = path_in(dir, "copy.safetensors");
    cr_assert_eq(ckd_st_writer_save(w, out, &err), 0, "%s", err.msg);
    size_t la, lb;
    unsigned char *a = read_all(src, &la), *b = read_all(out, &lb);
    cr_assert_eq(la, lb);
    cr_assert_eq(memcmp(a, b, la), 0, "rewritten file differs from PyTorch's");
    cr_assert_eq(count_entries(dir), 1, "no temporary file left behind");
    free(b);
    /* Saving views of a file over that same file (resaving a checkpoint). */
    ckd_st_close(st);
    st = ckd_st_open(out, &err);
    ckd_st_writer_free(w);
    w = ckd_st_writer_new();
    for (size_t i = 0; i < ckd_st_count(st); i++) {
        const ckd_st_tensor *t = ckd_st_at(st, i);
        cr_assert_eq(ckd_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &err), 0);
    }
    static const char *const keys[] = {"seed", "torch", "dtype_of_math"};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(ckd_st_writer_set_metadata(w, keys[i], ckd_st_metadata(st, keys[i]), &err), 0);
    cr_assert_eq(ckd_st_writer_save(w, out, &err), 0, "%s", err.msg);
    b = read_all(out, &lb);
    cr_assert(la == lb && memcmp(a, b, la) == 0, "resaved file differs");
    free(a);
    free(b);
    free(out);
    ckd_st_writer_free(w);
    ckd_st_close(st);
    rm_tmpdir(dir);
}

/* F32 weights against their F16 copy (both saved by HF): the F16 bits must be
 * exactly our round-to-nearest-even of the F32 value, and widening them back
 * must land within half an F16 ulp. Returns how many F16 subnormals it saw. */
static long compare_f32_f16(const char *p32, const char *p16, size_t expect_count)
{
    ckd_error err = {{0}};
    ckd_safetensors *a = ckd_st_open(p32, &err);
    cr_assert(a, "%s", err.msg);
    ckd_safetensors *b = ckd_st_open(p16, &err);
    cr_assert(b, "%s", err.msg);
    cr_assert_eq(ckd_st_count(a), expect_count);
    cr_assert_eq(ckd_st_count(b), expect_count);
    cr_assert_str_eq(ckd_st_metadata(a, "format"), "pt");
    cr_assert_null(ckd_st_metadata(b, "format"));
    long subnormals = 0;
    for (size_t i = 0; i < ckd_st_count(a); i++) {
        const ckd_st_tensor *x = ckd_st_at(a, i), *y = ckd_st_find(b, x->name);
        cr_assert(y, "%s missing from the F16 file", x->name);
        cr_assert(x->dtype == CKD_DT_F32 && y->dtype == CKD_DT_F16 && x->ndim == y->ndim);
        cr_assert_eq(memcmp(x->shape, y->shape, sizeof x->shape), 0, "%s", x->name);
        size_t n = (size_t)ckd_st_numel(x);
        float *fx = malloc(n * sizeof *fx + 1), *fy = malloc(n * sizeof *fy + 1);
        cr_assert_eq(ckd_st_to_f32(x, fx, n, &err), 0, "%s", err.msg);
        cr_assert_eq(ckd_st_to_f32(y, fy, n, &err), 0, "%s", err.msg);
        const unsigned char *raw = y->data;
        for (size_t k = 0; k < n; k++) {
            uint16_t h = (uint16_t)(raw[2 * k] | raw[2 * k + 1] << 8);
            cr_assert_eq(ckd_f32_to_f16(fx[k]), h, "%s[%zu]", x->name, k);
            float tol = fabsf(fx[k]) < 0x1p-14f ? 0x1p-25f : fabsf(fx[k]) * 0x1p-11f;
            cr_assert(fabsf(fx[k] - fy[k]) <= tol, "%s[%zu]: %a vs %a", x->name, k, fx[k], fy[k]);
            subnormals += (h & 0x7c00) == 0 && (h & 0x3ff) != 0;
        }
        free(fx);
        free(fy);
    }
    ckd_st_close(a);
    ckd_st_close(b);
    return subnormals;
}

Test(golden, hf_subset_f32_vs_f16)
{
    long sub = compare_f32_f16(fixture("safetensors/tiny-clip-gelu-subset.safetensors"),
                               fixture("safetensors/tiny-clip-gelu-subset.fp16.safetensors"), 11);
    cr_assert_eq(sub, 10, "the subset holds 10 F16 subnormals, saw %ld", sub);
    ckd_error err;
    ckd_safetensors *st = ckd_st_open(fixture("safetensors/tiny-clip-gelu-subset.safetensors"), &err);
    float ls;
    cr_assert_eq(ckd_st_to_f32(ckd_st_find(st, "logit_scale"), &ls, 1, &err), 0);
    cr_assert_eq(ls, 0x1.5460aap+1f); /* bytes 55 30 2a 40 */
    ckd_st_close(st);
}

/* The whole tiny model, when the model tests' fixture copies are present. */
Test(golden, hf_full_model_f32_vs_f16)
{
    const char *p32 = fixture("hf-clip/tiny-clip-gelu/model.safetensors");
    const char *p16 = fixture("hf-clip/tiny-clip-gelu/model.fp16.safetensors");
    if (access(p32, R_OK) != 0 || access(p16, R_OK) != 0)
        cr_skip_test("tiny-clip-gelu model files not in tests/fixtures");
    long sub = compare_f32_f16(p32, p16, 110);
    cr_assert_eq(sub, 858);
}

/* ---- write -> read ------------------------------------------------------------ */

Test(roundtrip, every_dtype_with_metadata)
{
    ckd_error err = {{0}};
    double f64[3] = {1.5, -0x1p-1074, 1e300};
    float f32[2][3] = {{1, 2, 3}, {-0.0f, INFINITY, 0x1p-149f}};
    uint16_t f16[4] = {ckd_f32_to_f16(0.5f), 0x0001, 0x7c00, ckd_f32_to_f16(-65504.0f)};
    uint16_t bf16[2] = {ckd_f32_to_bf16(3.0f), ckd_f32_to_bf16(-1e30f)};
    int64_t pos[77], i64s[1] = {INT64_MIN};
    for (int i = 0; i < 77; i++)
        pos[i] = i;
    int32_t i32[2] = {INT32_MIN, 7};
    int16_t i16[2] = {-32768, 32767};
    int8_t i8[3] = {-128, 0, 127};
    uint8_t u8[1] = {255}, bools[2] = {1, 0};
    struct {
        const char *name;
        ckd_dtype dt;
        int ndim;
        int64_t shape[8];
        const void *data;
    } in[] = {
        {"a.bool", CKD_DT_BOOL, 1, {2}, bools},
        {"b.u8", CKD_DT_U8, 0, {0}, u8},
        {"c.i8", CKD_DT_I8, 8, {1, 1, 1, 1, 1, 1, 3, 1}, i8},
        {"d.i16", CKD_DT_I16, 1, {2}, i16},
        {"e.f16", CKD_DT_F16, 2, {2, 2}, f16},
        {"f.bf16", CKD_DT_BF16, 1, {2}, bf16},
        {"g.i32", CKD_DT_I32, 1, {2}, i32},
        {"h.f32", CKD_DT_F32, 2, {2, 3}, f32},
        {"i.f64", CKD_DT_F64, 1, {3}, f64},
        {"j.empty", CKD_DT_F32, 2, {0, 3}, NULL},
        {"text_model.embeddings.position_ids", CKD_DT_I64, 2, {1, 77}, pos},
        {"a.i64", CKD_DT_I64, 0, {0}, i64s},
    };
    size_t n_in = sizeof in / sizeof in[0];
    ckd_st_writer *w = ckd_st_writer_new();
    for (size_t i = 0; i < n_in; i++) {
        int rc = i % 2 ? ckd_st_writer_add(w, in[i].name, in[i].dt, in[i].ndim, in[i].shape,
                                           in[i].data, &err)
                       : ckd_st_writer_add_copy(w, in[i].name, in[i].dt, in[i].ndim,
                                                in[i].shape, in[i].data, &err);
        cr_assert_eq(rc, 0, "%s", err.msg);
    }
    cr_assert_eq(ckd_st_writer_set_metadata(w, "note", "quote \" backslash \\ é", &err), 0);
    cr_assert_eq(ckd_st_writer_set_metadata(w, "step", "1", &err), 0);
    cr_assert_eq(ckd_st_writer_set_metadata(w, "step", "2", &err), 0, "replace");
    char *dir = make_tmpdir(), *p = path_in(dir, "all.safetensors");
    cr_assert_eq(ckd_st_writer_save(w, p, &err), 0, "%s", err.msg);
    /* Saving over an existing file replaces it, leaving no temporary. */
    cr_assert_eq(ckd_st_writer_save(w, p, &err), 0, "%s", err.msg);
    cr_assert_eq(count_entries(dir), 1);
    ckd_st_writer_free(w);

    size_t len;
    unsigned char *raw = read_all(p, &len);
    uint64_t hn = 0;
    for (int i = 7; i >= 0; i--)
        hn = hn << 8 | raw[i];
    cr_assert_eq(hn % 8, 0, "header padded to 8");
    cr_assert_eq(raw[8 + hn - 1], ' ');
    free(raw);

    ckd_safetensors *st = ckd_st_open(p, &err);
    cr_assert(st, "%s", err.msg);
    cr_assert_eq(ckd_st_count(st), n_in);
    cr_assert_str_eq(ckd_st_metadata(st, "note"), "quote \" backslash \\ é");
    cr_assert_str_eq(ckd_st_metadata(st, "step"), "2");
    for (size_t i = 0; i < n_in; i++) {
        const ckd_st_tensor *t = ckd_st_find(st, in[i].name);
        cr_assert(t, "%s", in[i].name);
        cr_assert_eq(t->dtype, in[i].dt);
        cr_assert_eq(t->ndim, in[i].ndim);
        cr_assert_eq(memcmp(t->shape, in[i].shape, sizeof t->shape), 0, "%s", in[i].name);
        cr_assert_eq(t->nbytes, (size_t)ckd_st_numel(t) * ckd_dtype_size(t->dtype));
        if (t->nbytes)
            cr_assert_eq(memcmp(t->data, in[i].data, t->nbytes), 0, "%s", in[i].name);
        cr_assert_eq((uintptr_t)t->data % ckd_dtype_size(t->dtype), 0, "%s aligned", t->name);
    }
    /* The library's order: I64, F64, F32, I32, BF16, F16, I16, I8, U8, BOOL; names within. */
    static const char *const order[] = {"a.i64", "text_model.embeddings.position_ids", "i.f64",
                                        "h.f32", "j.empty", "g.i32", "f.bf16", "e.f16",
                                        "d.i16", "c.i8", "b.u8", "a.bool"};
    for (size_t i = 0; i < n_in; i++)
        cr_assert_str_eq(ckd_st_at(st, i)->name, order[i]);

    float f[4];
    cr_assert_eq(ckd_st_to_f32(ckd_st_find(st, "e.f16"), f, 4, &err), 0, "%s", err.msg);
    cr_assert(f[0] == 0.5f && f[1] == 0x1p-24f && isinf(f[2]) && f[3] == -65504.0f);
    cr_assert_eq(ckd_st_to_f32(ckd_st_find(st, "f.bf16"), f, 2, &err), 0);
    cr_assert(f[0] == 3.0f && f[1] == ckd_bf16_to_f32(bf16[1]) && fabsf(f[1] / -1e30f - 1) < 4e-3f);
    cr_assert_eq(ckd_st_to_f32(ckd_st_find(st, "i.f64"), f, 3, &err), 0);
    cr_assert(f[0] == 1.5f && f[1] == 0 && signbit(f[1]) && isinf(f[2]));
    cr_assert_eq(ckd_st_to_f32(ckd_st_find(st, "j.empty"), f, 0, &err), 0);

    int64_t ids[77];
    int32_t ids32[77];
    const ckd_st_tensor *pt = ckd_st_find(st, "text_model.embeddings.position_ids");
    cr_assert_eq(ckd_st_to_i64(pt, ids, 77, &err), 0);
    cr_assert_eq(ckd_st_to_i32(pt, ids32, 77, &err), 0, "%s", err.msg);
    for (int i = 0; i < 77; i++)
        cr_assert(ids[i] == i && ids32[i] == i);
    cr_assert_eq(ckd_st_to_i32(ckd_st_find(st, "a.i64"), ids32, 1, &err), -1, "INT64_MIN");
    ASSERT_HAS(err.msg, "a.i64");
    ASSERT_HAS(err.msg, "element 0");
    ASSERT_HAS(err.msg, p);
    cr_assert_eq(ckd_st_to_i64(ckd_st_find(st, "c.i8"), ids, 3, &err), 0);
    cr_assert(ids[0] == -128 && ids[1] == 0 && ids[2] == 127);
    cr_assert_eq(ckd_st_to_i32(ckd_st_find(st, "d.i16"), ids32, 2, &err), 0);
    cr_assert(ids32[0] == -32768 && ids32[1] == 32767);
    cr_assert_eq(ckd_st_to_i64(ckd_st_find(st, "b.u8"), ids, 1, &err), 0);
    cr_assert_eq(ids[0], 255);
    cr_assert_eq(ckd_st_to_i32(ckd_st_find(st, "a.bool"), ids32, 2, &err), 0);
    cr_assert(ids32[0] == 1 && ids32[1] == 0);
    cr_assert_eq(ckd_st_to_i64(ckd_st_find(st, "h.f32"), ids, 6, &err), -1);
    ASSERT_HAS(err.msg, "h.f32");
    ckd_st_close(st);
    free(p);
    rm_tmpdir(dir);
}

Test(roundtrip, empty_file)
{
    ckd_error err;
    char *dir = make_tmpdir(), *p = path_in(dir, "empty.safetensors");
    ckd_st_writer *w = ckd_st_writer_new();
    cr_assert_eq(ckd_st_writer_save(w, p, &err), 0, "%s", err.msg);
    ckd_st_writer_free(w);
    size_t len;
    unsigned char *raw = read_all(p, &len);
    cr_assert_eq(len, 16);
    cr_assert_eq(memcmp(raw, "\x08\0\0\0\0\0\0\0{}      ", 16), 0);
    free(raw);
    ckd_safetensors *st = ckd_st_open(p, &err);
    cr_assert(st, "%s", err.msg);
    cr_assert_eq(ckd_st_count(st), 0);
    cr_assert_null(ckd_st_find(st, "x"));
    cr_assert_null(ckd_st_metadata(st, "x"));
    ckd_st_close(st);
    free(p);
    rm_tmpdir(dir);
}

/* Older writers did not pad the header or order the JSON by offset: such
 * files are valid, views may be unaligned, and iteration follows offsets. */
Test(roundtrip, unpadded_header_and_shuffled_keys)
{
    ckd_error err;
    char *dir = make_tmpdir(), *p = path_in(dir, "old.safetensors");
    const char *h = "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                    "\"z\":{\"dtype\":\"I8\",\"shape\":[0],\"data_offsets\":[4,4]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}";
    cr_assert_neq(strlen(h) % 4, 0, "so the data is misaligned");
    write_st(p, h, 8);
    ckd_safetensors *st = ckd_st_open(p, &err);
    cr_assert(st, "%s", err.msg);
    cr_assert_str_eq(ckd_st_at(st, 0)->name, "a");
    cr_assert_str_eq(ckd_st_at(st, 1)->name, "z");
    cr_assert_str_eq(ckd_st_at(st, 2)->name, "b");
    float v, want;
    memcpy(&want, "\4\5\6\7", 4);
    cr_assert_eq(ckd_st_to_f32(ckd_st_find(st, "b"), &v, 1, &err), 0);
    cr_assert_eq(memcmp(&v, &want, 4), 0);
    ckd_st_close(st);
    free(p);
    rm_tmpdir(dir);
}

Test(writer, rejects_bad_tensors)
{
    ckd_error err;
    float x[4] = {0};
    int64_t s1[1] = {4}, neg[1] = {-1}, huge[3] = {INT64_MAX, 2, 2};
    ckd_st_writer *w = ckd_st_writer_new();
    cr_assert_eq(ckd_st_writer_add(w, "w", CKD_DT_F32, 1, s1, x, &err), 0);
    cr_assert_eq(ckd_st_writer_add(w, "w", CKD_DT_F32, 1, s1, x, &err), -1);
    ASSERT_HAS(err.msg, "'w' added twice");
    cr_assert_eq(ckd_st_writer_add(w, "__metadata__", CKD_DT_F32, 1, s1, x, &err), -1);
    ASSERT_HAS(err.msg, "reserved");
    cr_assert_eq(ckd_st_writer_add(w, "n", CKD_DT_F32, 1, neg, x, &err), -1);
    ASSERT_HAS(err.msg, "tensor 'n': shape[0] is -1");
    cr_assert_eq(ckd_st_writer_add(w, "o", CKD_DT_F32, 3, huge, x, &err), -1);
    ASSERT_HAS(err.msg, "'o': shape overflows");
    cr_assert_eq(ckd_st_writer_add(w, "d", CKD_DT_F32, 9, huge, x, &err), -1);
    ASSERT_HAS(err.msg, "'d': ndim 9");
    cr_assert_eq(ckd_st_writer_add(w, "nul", CKD_DT_F32, 1, s1, NULL, &err), -1);
    ASSERT_HAS(err.msg, "'nul': no data");
    cr_assert_eq(ckd_st_writer_add(w, "t", (ckd_dtype)99, 1, s1, x, &err), -1);
    ASSERT_HAS(err.msg, "unknown dtype");
    cr_assert_eq(ckd_st_writer_add(w, "bad\xff", CKD_DT_F32, 1, s1, x, &err), -1);
    ASSERT_HAS(err.msg, "UTF-8");
    cr_assert_eq(ckd_st_writer_set_metadata(w, "k", "\xc3", &err), -1);
    ASSERT_HAS(err.msg, "UTF-8");
    ckd_st_writer_free(w);
}

Test(writer, missing_directory_leaves_nothing)
{
    ckd_error err;
    char *dir = make_tmpdir(), *p = path_in(dir, "no/such/dir/x.safetensors");
    float x = 1;
    ckd_st_writer *w = ckd_st_writer_new();
    cr_assert_eq(ckd_st_writer_add(w, "x", CKD_DT_F32, 0, NULL, &x, &err), 0);
    cr_assert_eq(ckd_st_writer_save(w, p, &err), -1);
    ASSERT_HAS(err.msg, p);
    ASSERT_HAS(err.msg, "No such file or directory");
    cr_assert_eq(count_entries(dir), 0);
    ckd_st_writer_free(w);
    free(p);
    rm_tmpdir(dir);
}

/* A write that fails halfway (here: the file size limit, as ENOSPC would)
 * must leave the previous checkpoint untouched and no temporary behind. */
Test(writer, failed_write_keeps_old_file)
{
    ckd_error err;
    char *dir = make_tmpdir(), *p = path_in(dir, "ckpt.safetensors");
    float small = 42;
    ckd_st_writer *w = ckd_st_writer_new();
    cr_assert_eq(ckd_st_writer_add(w, "x", CKD_DT_F32, 0, NULL, &small, &err), 0);
    cr_assert_eq(ckd_st_writer_save(w, p, &err), 0, "%s", err.msg);
    ckd_st_writer_free(w);
    size_t old_len;
    unsigned char *old = read_all(p, &old_len);

    static float big[16384];
    int64_t shape[1] = {16384};
    w = ckd_st_writer_new();
    cr_assert_eq(ckd_st_writer_add(w, "big", CKD_DT_F32, 1, shape, big, &err), 0);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit saved, lim;
    getrlimit(RLIMIT_FSIZE, &saved);
    lim = saved;
    lim.rlim_cur = 4096;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = ckd_st_writer_save(w, p, &err);
    setrlimit(RLIMIT_FSIZE, &saved);
    cr_assert_eq(rc, -1);
    ASSERT_HAS(err.msg, p);
    ASSERT_HAS(err.msg, "tensor 'big'");
    ckd_st_writer_free(w);

    size_t now_len;
    unsigned char *now = read_all(p, &now_len);
    cr_assert(now_len == old_len && memcmp(old, now, old_len) == 0, "old file changed");
    cr_assert_eq(count_entries(dir), 1, "temporary file left behind");
    free(old);
    free(now);
    free(p);
    rm_tmpdir(dir);
}

/* ---- sharded checkpoints ----------------------------------------------------- */

/* Two shards and an index in dir; shard 2 also holds "extra", which the index
 * does not list. */
static void write_sharded(const char *dir, const char *index_json)
{
    ckd_error err;
    float a[2] = {1, 2}, d = 4;
    int64_t c[3] = {7, 8, 9}, s2[1] = {2}, s3[1] = {3};
    uint16_t b[2] = {0x3c00, 0xc000};
    ckd_st_writer *w1 = ckd_st_writer_new(), *w2 = ckd_st_writer_new();
    cr_assert_eq(ckd_st_writer_add(w1, "a", CKD_DT_F32, 1, s2, a, &err), 0);
    cr_assert_eq(ckd_st_writer_add(w1, "c", CKD_DT_I64, 1, s3, c, &err), 0);
    cr_assert_eq(ckd_st_writer_add(w2, "b", CKD_DT_F16, 1, s2, b, &err), 0);
    cr_assert_eq(ckd_st_writer_add(w2, "d", CKD_DT_F32, 0, NULL, &d, &err), 0);
    cr_assert_eq(ckd_st_writer_add(w2, "extra", CKD_DT_F32, 0, NULL, &d, &err), 0);
    char *p1 = path_in(dir, "model-00001-of-00002.safetensors");
    char *p2 = path_in(dir, "model-00002-of-00002.safetensors");
    char *pi = path_in(dir, "model.safetensors.index.json");
    cr_assert_eq(ckd_st_writer_save(w1, p1, &err), 0, "%s", err.msg);
    cr_assert_eq(ckd_st_writer_save(w2, p2, &err), 0, "%s", err.msg);
    write_bytes(pi, index_json, strlen(index_json));
    ckd_st_writer_free(w1);
    ckd_st_writer_free(w2);
    free(p1);
    free(p2);
    free(pi);
}

static const char *good_index =
    "{\"metadata\": {\"total_size\": 48, \"format\": \"pt\", \"odd\": [1]},\n"
    " \"weight_map\": {\"d\": \"model-00002-of-00002.safetensors\",\n"
    "  \"a\": \"model-00001-of-00002.safetensors\",\n"
    "  \"c\": \"model-00001-of-00002.safetensors\",\n"
    "  \"b\": \"model-00002-of-00002.safetensors\"}}\n";

static void check_sharded(ckd_safetensors *st)
{
    ckd_error err;
    cr_assert_eq(ckd_st_count(st), 4);
    /* Shards in name order, each in file order (I64 before F32 before F16). */
    static const char *const order[] = {"c", "a", "d", "b"};
    for (size_t i = 0; i < 4; i++)
        cr_assert_str_eq(ckd_st_at(st, i)->name, order[i]);
    cr_assert_null(ckd_st_find(st, "extra"));
    cr_assert_str_eq(ckd_st_metadata(st, "total_size"), "48");
    cr_assert_str_eq(ckd_st_metadata(st, "format"), "pt");
    cr_assert_null(ckd_st_metadata(st, "odd"));
    const ckd_st_tensor *b = ckd_st_find(st, "b");
    cr_assert(b && strstr(b->file, "model-00002-of-00002.safetensors"));
    float f[2];
    cr_assert_eq(ckd_st_to_f32(b, f, 2, &err), 0);
    cr_assert(f[0] == 1.0f && f[1] == -2.0f);
    int64_t c[3];
    cr_assert_eq(ckd_st_to_i64(ckd_st_find(st, "c"), c, 3, &err), 0);
    cr_assert(c[0] == 7 && c[2] == 9);
    cr_assert_eq(ckd_st_to_f32(ckd_st_find(st, "d"), f, 1, &err), 0);
    cr_assert_eq(f[0], 4.0f);
}

Test(sharded, index_file_and_directory)
{
    ckd_error err;
    char *dir = make_tmpdir(), *pi = path_in(dir, "model.safetensors.index.json");
    write_sharded(dir, good_index);
    ckd_safetensors *st = ckd_st_open(pi, &err);
    cr_assert(st, "%s", err.msg);
    check_sharded(st);
    ckd_st_close(st);
    st = ckd_st_open(dir, &err);
    cr_assert(st, "%s", err.msg);
    check_sharded(st);
    ckd_st_close(st);
    free(pi);
    rm_tmpdir(dir);
}

static void expect_index_error(const char *index_json, const char *n1, const char *n2)
{
    ckd_error err;
    char *dir = make_tmpdir(), *pi = path_in(dir, "model.safetensors.index.json");
    write_sharded(dir, index_json);
    cr_assert_null(ckd_st_open(pi, &err));
    ASSERT_HAS(err.msg, pi);
    ASSERT_HAS(err.msg, n1);
    if (n2)
        ASSERT_HAS(err.msg, n2);
    free(pi);
    rm_tmpdir(dir);
}

Test(sharded, missing_shard)
{
    expect_index_error("{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\","
                       " \"q\": \"model-00003-of-00003.safetensors\"}}",
                       "shard \"model-00003-of-00003.safetensors\" (holding 'q')",
                       "No such file or directory");
}

Test(sharded, tensor_not_in_its_shard)
{
    expect_index_error("{\"weight_map\": {\"a\": \"model-00002-of-00002.safetensors\"}}",
                       "tensor 'a' is mapped to shard \"model-00002-of-00002.safetensors\"",
                       "does not hold it");
}

Test(sharded, bad_index)
{
    expect_index_error("{\"weight_map\": {\"a\": }}", "not valid JSON", "line 1, column 22");
    expect_index_error("{\"metadata\": {}}", "\"weight_map\"", NULL);
    expect_index_error("{\"weight_map\": {\"a\": 3}}", "weight_map[\"a\"]", NULL);
    expect_index_error("{\"weight_map\": {\"a\": \"../model-00001-of-00002.safetensors\"}}",
                       "weight_map[\"a\"]", NULL);
    expect_index_error("{\"weight_map\": {\"a\": \"/etc/passwd\"}}", "weight_map[\"a\"]", NULL);
}

Test(sharded, directory_without_model)
{
    ckd_error err;
    char *dir = make_tmpdir();
    cr_assert_null(ckd_st_open(dir, &err));
    ASSERT_HAS(err.msg, dir);
    ASSERT_HAS(err.msg, "neither model.safetensors.index.json nor model.safetensors");
    rm_tmpdir(dir);
}

/* ---- malformed files ---------------------------------------------------------- */

/* Writes the file, expects ckd_st_open to fail with a message that names the
 * file and contains both needles. */
static void expect_bad_n(uint64_t n, const char *header, size_t data_len, const char *n1,
                         const char *n2)
{
    ckd_error err;
    char *dir = make_tmpdir(), *p = path_in(dir, "bad.safetensors");
    write_st_n(p, n, header, data_len);
    cr_assert_null(ckd_st_open(p, &err), "opened: %s", header);
    ASSERT_HAS(err.msg, p);
    ASSERT_HAS(err.msg, n1);
    if (n2)
        ASSERT_HAS(err.msg, n2);
    free(p);
    rm_tmpdir(dir);
}

static void expect_bad(const char *header, size_t data_len, const char *n1, const char *n2)
{
    expect_bad_n(strlen(header), header, data_len, n1, n2);
}

#define T_F32(name, shape, b, e) \
    "\"" name "\":{\"dtype\":\"F32\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

Test(malformed, too_short)
{
    ckd_error err;
    char *dir = make_tmpdir(), *p = path_in(dir, "short.safetensors");
    write_bytes(p, "\x02\0\0\0\0", 5);
    cr_assert_null(ckd_st_open(p, &err));
    ASSERT_HAS(err.msg, p);
    ASSERT_HAS(err.msg, "file is 5 bytes, shorter than the 8-byte header length");
    write_bytes(p, "", 0);
    cr_assert_null(ckd_st_open(p, &err));
    ASSERT_HAS(err.msg, "file is 0 bytes");
    free(p);
    p = path_in(dir, "absent.safetensors");
    cr_assert_null(ckd_st_open(p, &err));
    ASSERT_HAS(err.msg, p);
    ASSERT_HAS(err.msg, "No such file or directory");
    free(p);
    rm_tmpdir(dir);
}

Test(malformed, header_length)
{
    expect_bad_n(9999999, "{}", 0, "header length 9999999 exceeds file size 10", NULL);
    expect_bad_n(UINT64_MAX, "{}", 0, "header length 18446744073709551615 exceeds the "
                 "100000000-byte limit", NULL);
}

Test(malformed, header_not_json)
{
    expect_bad("{\"w\":{\"dtype\":\"F32\",,}}", 0, "header is not valid JSON",
               "line 1, column 21, byte 21 of the header, file offset 29");
    expect_bad("{\"\xff\":1}", 0, "header is not valid JSON", NULL);
    expect_bad("", 0, "header is not valid JSON", NULL);
    expect_bad("{\"w\":{" "\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
               "\"w\":{" "\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[4,8]}}", 8,
               "duplicate", NULL);
}

Test(malformed, header_not_object)
{
    expect_bad("[1, 2, 3]", 0, "header is a JSON array, expected an object", NULL);
    expect_bad("\"text\"", 0, "'[' or '{' expected", NULL); /* jansson: objects and arrays only */
    expect_bad(" {}", 0, "must start with '{' at file offset 8", NULL);
}

Test(malformed, entry_fields)
{
    expect_bad("{\"w\":3}", 0, "tensor 'w': found a JSON integer", NULL);
    expect_bad("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w'",
               "missing \"dtype\"");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'w'",
               "missing \"shape\"");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'w'",
               "missing \"data_offsets\"");
    expect_bad("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4,
               "tensor 'w'", "unknown dtype \"F8_E4M3\"");
    expect_bad("{\"w\":{\"dtype\":7,\"shape\":[4],\"data_offsets\":[0,4]}}", 4, "tensor 'w'",
               "dtype is a JSON integer");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4, "tensor 'w'",
               "shape is a JSON integer");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "tensor 'w'",
               "data_offsets must be [begin, end]");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}", 4,
               "tensor 'w'", "data_offsets must be");
    expect_bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4,
               "tensor 'w'", "[4, 0] begin after end");
    expect_bad("{\"__metadata__\":{\"a\":1}}", 0, "__metadata__ \"a\" is a JSON integer", NULL);
    expect_bad("{\"__metadata__\":[]}", 0, "__metadata__ is a JSON array", NULL);
}

Test(malformed, shapes)
{
    expect_bad("{" T_F32("w", "[-1]", 0, 4) "}", 4, "tensor 'w': shape[0] is -1", NULL);
    expect_bad("{" T_F32("w", "[2.0]", 0, 8) "}", 8, "tensor 'w': shape[0] is a JSON number",
               NULL);
    expect_bad("{" T_F32("w", "[4294967296,4294967296,16]", 0, 4) "}", 4,
               "tensor 'w': shape [4294967296, 4294967296, 16] of F32 overflows", NULL);
    expect_bad("{" T_F32("w", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", 4,
               "tensor 'w': shape has 9 dimensions", NULL);
    expect_bad("{" T_F32("w", "[3]", 0, 8) "}", 8,
               "tensor 'w': data_offsets [0, 8] hold 8 bytes, but shape [3] of F32 needs 12",
               NULL);
}

Test(malformed, offsets)
{
    expect_bad("{" T_F32("w", "[2]", 0, 8) "}", 4, "tensor 'w': data_offsets [0, 8] run past "
               "the data buffer, which holds 4 bytes", NULL);
    expect_bad("{" T_F32("a", "[2]", 0, 8) "," T_F32("b", "[2]", 4, 12) "}", 12,
               "tensor 'b' (data_offsets [4, 12]) overlaps tensor 'a', which ends at 8", NULL);
    expect_bad("{" T_F32("a", "[1]", 0, 4) "," T_F32("b", "[1]", 8, 12) "}", 12,
               "gap of 4 bytes at data offset 4", "tensor 'b' starts at 8 after 'a'");
    expect_bad("{" T_F32("a", "[1]", 4, 8) "}", 8, "gap of 4 bytes at data offset 0",
               "tensor 'a' starts at 4");
    expect_bad("{" T_F32("a", "[1]", 0, 4) "}", 8, "4 trailing bytes after the last tensor 'a'",
               NULL);
    expect_bad("{}", 3, "3 trailing bytes after the last tensor", NULL);
}
