/* Tests for PyTorch checkpoints (ckd_pt_open, clipkd/safetensors.h): the
 * fixtures torch.save wrote (ZIP and legacy formats, the open_clip training
 * format, strided and shared-storage views, half precisions), the pickle that
 * would run a command, hand-made hostile and damaged files (made by
 * tests/fixtures/pytorch-checkpoints/make_bad_pt.py), and every truncation
 * and single-byte change of real checkpoints, which must give an error or a
 * checked result and never a crash. */
#include "config.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clipkd/safetensors.h"

static const char *fixture(const char *rel)
{
    static char buf[4][4096];
    static int next;
    char *b = buf[next++ % 4];
    const char *src = getenv("CKD_TEST_SRCDIR");
    snprintf(b, sizeof buf[0], "%s/tests/fixtures/%s", src ? src : ".", rel);
    return b;
}

static const char *ckpt(const char *name)
{
    static char rel[4][256];
    static int next;
    char *r = rel[next++ % 4];
    snprintf(r, sizeof rel[0], "pytorch-checkpoints/%s", name);
    return fixture(r);
}

static ckd_safetensors *open_ok(const char *path, const ckd_pt_opts *o)
{
    ckd_error err = {{0}};
    ckd_safetensors *st = ckd_pt_open(path, o, &err);
    cr_assert_not_null(st, "%s", err.msg);
    return st;
}

/* Every tensor of want is in got with the same dtype, shape and bytes, and
 * got has nothing else. */
static void expect_same_tensors(const ckd_safetensors *got, const ckd_safetensors *want, const char *what)
{
    cr_expect_eq(ckd_st_count(got), ckd_st_count(want), "%s: %zu tensors, expected %zu", what, ckd_st_count(got),
                 ckd_st_count(want));
    for (size_t i = 0; i < ckd_st_count(want); i++) {
        const ckd_st_tensor *w = ckd_st_at(want, i), *g = ckd_st_find(got, w->name);
        cr_assert_not_null(g, "%s: tensor %s is missing", what, w->name);
        cr_expect_eq(g->dtype, w->dtype, "%s: %s is %s, expected %s", what, w->name, ckd_dtype_name(g->dtype),
                     ckd_dtype_name(w->dtype));
        cr_assert_eq(g->ndim, w->ndim, "%s: %s has %d dims, expected %d", what, w->name, g->ndim, w->ndim);
        for (int d = 0; d < w->ndim; d++)
            cr_expect_eq(g->shape[d], w->shape[d], "%s: %s dim %d", what, w->name, d);
        cr_assert_eq(g->nbytes, w->nbytes, "%s: %s", what, w->name);
        cr_expect_eq(memcmp(g->data, w->data, w->nbytes), 0, "%s: %s differs (max abs error must be 0)", what,
                     w->name);
    }
}

static ckd_safetensors *open_st(const char *path)
{
    ckd_error err = {{0}};
    ckd_safetensors *st = ckd_st_open(path, &err);
    cr_assert_not_null(st, "%s", err.msg);
    return st;
}

#define TINY_CLIP "hf-clip/tiny-clip-quickgelu/open_clip_model.safetensors"

/* ---- what torch.save writes ---------------------------------------------------- */

Test(fixtures, zip_state_dict_is_the_open_clip_weights)
{
    ckd_safetensors *want = open_st(fixture(TINY_CLIP)), *got = open_ok(ckpt("state_dict.pt"), NULL);
    expect_same_tensors(got, want, "state_dict.pt");
    cr_expect_str_eq(ckd_st_metadata(got, "format"), "pytorch-zip");
    cr_expect_str_eq(ckd_st_metadata(got, "pytorch.state_dict"), "");
    cr_expect_null(ckd_st_metadata(got, "pytorch.stripped_prefix"));
    ckd_st_close(got);
    ckd_st_close(want);
}

Test(fixtures, legacy_state_dict_is_the_open_clip_weights)
{
    ckd_safetensors *want = open_st(fixture(TINY_CLIP)), *got = open_ok(ckpt("state_dict_legacy.pt"), NULL);
    expect_same_tensors(got, want, "state_dict_legacy.pt");
    cr_expect_str_eq(ckd_st_metadata(got, "format"), "pytorch-legacy");
    ckd_st_close(got);
    ckd_st_close(want);
}

Test(fixtures, ckd_st_open_reads_checkpoints_by_their_first_bytes)
{
    ckd_safetensors *want = open_st(fixture(TINY_CLIP));
    const char *names[] = {"state_dict.pt", "state_dict_legacy.pt", "training_checkpoint.pt"};
    for (int i = 0; i < 3; i++) {
        ckd_safetensors *got = open_st(ckpt(names[i]));
        expect_same_tensors(got, want, names[i]);
        ckd_st_close(got);
    }
    ckd_st_close(want);
}

Test(fixtures, training_checkpoint_state_dict_found_and_prefix_stripped)
{
    ckd_safetensors *want = open_st(fixture(TINY_CLIP)), *got = open_ok(ckpt("training_checkpoint.pt"), NULL);
    expect_same_tensors(got, want, "training_checkpoint.pt");
    cr_expect_str_eq(ckd_st_metadata(got, "pytorch.state_dict"), "state_dict");
    cr_expect_str_eq(ckd_st_metadata(got, "pytorch.stripped_prefix"), "module.");
    const char *skipped = ckd_st_metadata(got, "pytorch.skipped");
    cr_assert_not_null(skipped);
    cr_expect(strstr(skipped, "optimizer (dict)") && strstr(skipped, "epoch (int)") && strstr(skipped, "name (str)"),
              "skipped: %s", skipped);
    ckd_st_close(got);
    ckd_st_close(want);
}

Test(fixtures, training_checkpoint_with_prefix_kept_or_named)
{
    ckd_pt_opts keep = {.strip_prefix = ""};
    ckd_safetensors *st = open_ok(ckpt("training_checkpoint.pt"), &keep);
    cr_expect_not_null(ckd_st_find(st, "module.logit_scale"));
    cr_expect_null(ckd_st_find(st, "logit_scale"));
    ckd_st_close(st);
    ckd_pt_opts named = {.key = "state_dict", .strip_prefix = "module.visual."};
    st = open_ok(ckpt("training_checkpoint.pt"), &named);
    cr_expect_not_null(ckd_st_find(st, "conv1.weight"), "module.visual. is removed where present");
    cr_expect_not_null(ckd_st_find(st, "module.logit_scale"), "and kept elsewhere");
    ckd_st_close(st);
}

Test(fixtures, views_offsets_strides_shared_storage_and_dtypes)
{
    ckd_safetensors *want = open_st(ckpt("views_expected.safetensors")), *got = open_ok(ckpt("views.pt"), NULL);
    expect_same_tensors(got, want, "views.pt");
    cr_expect_eq(ckd_st_find(got, "half")->dtype, CKD_DT_F16);
    cr_expect_eq(ckd_st_find(got, "bf16")->dtype, CKD_DT_BF16);
    cr_expect_eq(ckd_st_find(got, "ids")->dtype, CKD_DT_I64);
    cr_expect_eq(ckd_st_find(got, "scalar")->ndim, 0);
    /* Converted to float where a model wants it. */
    float f[24];
    ckd_error err = {{0}};
    cr_assert_eq(ckd_st_to_f32(ckd_st_find(got, "half"), f, 9, &err), 0, "%s", err.msg);
    cr_expect_float_eq(f[0], -2.0f, 0);
    cr_expect_float_eq(f[8], 2.0f, 0);
    cr_assert_eq(ckd_st_to_f32(ckd_st_find(got, "transposed"), f, 24, &err), 0, "%s", err.msg);
    cr_expect_float_eq(f[1], 6.0f, 0, "transposed[0][1] is base[1][0]");
    cr_expect_float_eq(f[4], 1.0f, 0, "transposed[1][0] is base[0][1]");
    ckd_st_close(got);
    ckd_st_close(want);
}

Test(fixtures, contiguous_tensors_point_into_the_file)
{
    /* A stored member's contiguous tensors are views of the mapping: two
     * tensors on one storage are 4·offset bytes apart. */
    ckd_safetensors *st = open_ok(ckpt("views.pt"), NULL);
    const ckd_st_tensor *row2 = ckd_st_find(st, "row2"), *tail = ckd_st_find(st, "tail");
    cr_expect_eq((const unsigned char *)tail->data - (const unsigned char *)row2->data, 4 * (10 - 12));
    ckd_st_close(st);
}

/* ---- refusals ------------------------------------------------------------------- */

static void expect_fail(const char *path, const ckd_pt_opts *o, const char *needle1, const char *needle2)
{
    ckd_error err = {{0}};
    ckd_safetensors *st = ckd_pt_open(path, o, &err);
    cr_expect_null(st, "%s opened", path);
    if (st)
        ckd_st_close(st);
    cr_expect(strstr(err.msg, path) != NULL, "the message names the file: %s", err.msg);
    cr_expect(strstr(err.msg, needle1) != NULL, "%s: expected '%s' in: %s", path, needle1, err.msg);
    if (needle2)
        cr_expect(strstr(err.msg, needle2) != NULL, "%s: expected '%s' in: %s", path, needle2, err.msg);
}

Test(refuse, malicious_pickle_is_refused_and_nothing_runs)
{
    const char *marker = "/tmp/clipkd-pickle-pwned"; /* what the fixture's command would write */
    unlink(marker);
    expect_fail(ckpt("malicious.pt"), NULL, "refusing global 'posix.system'", "archive/data.pkl: byte ");
    struct stat sb;
    cr_expect_neq(stat(marker, &sb), 0, "the pickle's command ran");
}

Test(refuse, key_missing_lists_the_keys)
{
    ckd_pt_opts o = {.key = "model_state"};
    expect_fail(ckpt("training_checkpoint.pt"), &o, "has no key 'model_state'", "'state_dict'");
    ckd_pt_opts e = {.key = "epoch"};
    expect_fail(ckpt("training_checkpoint.pt"), &e, "is not a dict: 'epoch'", NULL);
}

Test(refuse, optimizer_state_is_not_a_state_dict)
{
    ckd_pt_opts o = {.key = "optimizer"};
    expect_fail(ckpt("training_checkpoint.pt"), &o, "state dict entry 'state'", "not a tensor");
}

Test(refuse, not_a_checkpoint)
{
    expect_fail(fixture(TINY_CLIP), NULL, "not a PyTorch checkpoint", NULL);
}

Test(refuse, hostile_and_damaged_files)
{
    static const struct {
        const char *file, *needle1, *needle2;
    } cases[] = {
        {"storage_short.pt", "archive/data/0 holds 16 bytes", "needs 24"},
        {"offset_past_storage.pt", "tensor 'w' reaches element 9", "holds 6 F32 elements"},
        {"missing_storage.pt", "storage '7' has no member archive/data/7", NULL},
        {"unknown_dtype.pt", "refusing global 'torch.ComplexFloatStorage'", NULL},
        {"unknown_opcode.pt", "byte 3: unknown or unsupported pickle opcode 0xff", NULL},
        {"text_opcode.pt", "opcode 'I'", "protocol 0/1"},
        {"not_a_tensor.pt", "state dict entry 'step'", "not a tensor"},
        {"deep_marks.pt", "too many MARKs", "limit"},
        {"deep_lists.pt", "nests deeper than 65536 values", NULL},
        {"memo_index.pt", "memo index 4294967295", NULL},
        {"memo_bomb.pt", "nests deeper than", NULL},
        {"huge_string.pt", "runs past the end of the data", NULL},
        {"no_stop.pt", "ends without STOP", NULL},
        {"big_endian.pt", "big-endian", NULL},
        {"stack_global.pt", "refusing global 'builtins.eval'", NULL},
        {"inflate_claim.pt", "claims 4294967294 bytes from 9 deflated ones", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "bad/%s", cases[i].file);
        expect_fail(ckpt(rel), NULL, cases[i].needle1, cases[i].needle2);
    }
    /* The generator's well-formed file reads, so the failures above are the
     * one fault each file was made with. */
    ckd_safetensors *st = open_ok(ckpt("bad/good.pt"), NULL);
    const ckd_st_tensor *w = ckd_st_find(st, "w");
    cr_assert_not_null(w);
    cr_expect_eq(w->ndim, 2);
    cr_expect_eq(((const float *)w->data)[5], 5.0f);
    ckd_st_close(st);
}

Test(fixtures, zip64_records_are_read)
{
    /* good.pt rewritten with ZIP64 sizes, offsets and end records. */
    ckd_safetensors *a = open_ok(ckpt("bad/good.pt"), NULL), *b = open_ok(ckpt("bad/zip64.pt"), NULL);
    expect_same_tensors(b, a, "zip64.pt");
    ckd_st_close(b);
    ckd_st_close(a);
}

/* ---- damage everywhere ----------------------------------------------------------------- */

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len);
    cr_assert_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void spit(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(b, 1, n, f), n);
    fclose(f);
}

static char *tmp_file(void)
{
    const char *base = getenv("TMPDIR");
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/ckd-pt-XXXXXX", base && *base ? base : "/tmp");
    int fd = mkstemp(p);
    cr_assert_geq(fd, 0);
    close(fd);
    return p;
}

/* Opens path; a success must still hold only tensors that fit their data. */
static int try_open(const char *path)
{
    ckd_error err = {{0}};
    ckd_safetensors *st = ckd_pt_open(path, NULL, &err);
    if (!st) {
        cr_expect(err.msg[0] != 0, "a failure without a message");
        return 0;
    }
    for (size_t i = 0; i < ckd_st_count(st); i++) {
        const ckd_st_tensor *t = ckd_st_at(st, i);
        size_t n = ckd_dtype_size(t->dtype);
        for (int d = 0; d < t->ndim; d++)
            n *= (size_t)t->shape[d];
        cr_expect_eq(n, t->nbytes, "%s: tensor %s's size disagrees with its shape", path, t->name);
    }
    ckd_st_close(st);
    return 1;
}

Test(damage, every_truncation_is_an_error, .timeout = 120)
{
    const char *names[] = {"state_dict.pt", "state_dict_legacy.pt", "views.pt"};
    char *tmp = tmp_file();
    for (int k = 0; k < 3; k++) {
        size_t n;
        unsigned char *b = slurp(ckpt(names[k]), &n);
        /* Every length for the small file; for the big ones, 400 spread
         * over the file and every one of the last 200 bytes (the ZIP
         * directory, the legacy format's last storage). */
        size_t step = n < 4096 ? 1 : n / 400;
        for (size_t len = 0; len < n; len += (len + 200 >= n ? 1 : step)) {
            spit(tmp, b, len);
            cr_expect_eq(try_open(tmp), 0, "%s cut to %zu of %zu bytes opened", names[k], len, n);
        }
        free(b);
    }
    unlink(tmp);
    free(tmp);
}

Test(damage, every_changed_byte_is_an_error_or_a_checked_result, .timeout = 120)
{
    const char *names[] = {"views.pt", "bad/good.pt"};
    char *tmp = tmp_file();
    for (int k = 0; k < 2; k++) {
        size_t n;
        unsigned char *b = slurp(ckpt(names[k]), &n);
        int opened = 0;
        for (size_t at = 0; at < n; at++)
            for (int v = 0; v < 2; v++) {
                unsigned char old = b[at];
                b[at] = v ? (unsigned char)(old ^ 0xff) : (unsigned char)(old + 1);
                spit(tmp, b, n);
                opened += try_open(tmp);
                b[at] = old;
            }
        /* Stored members carry CRCs, but the pickle's CRC covers the pickle
         * only: most changes must be caught, none may crash. */
        cr_log_info("%s: %d of %zu changed files still opened", names[k], opened, 2 * n);
        free(b);
    }
    unlink(tmp);
    free(tmp);
}
