/* Helpers for tests/test-data: temporary folders and generated inputs. */
#include "config.h"

#define _XOPEN_SOURCE 700

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <criterion/criterion.h>
#include <jansson.h>
#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include "data-test.h"

char *tdu_tmpdir(void)
{
    const char *t = getenv("TMPDIR");
    char buf[512];
    snprintf(buf, sizeof buf, "%s/ckd-data-XXXXXX", t && *t ? t : "/tmp");
    cr_assert(mkdtemp(buf), "mkdtemp %s: %s", buf, strerror(errno));
    return strdup(buf);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb, (void)flag, (void)f;
    return remove(p);
}

void tdu_rmrf(const char *dir)
{
    if (dir)
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *tdu_path(const char *dir, const char *rel)
{
    static char buf[8][1024];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", dir, rel);
    return b;
}

static void make_parents(const char *path)
{
    char p[1024];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            mkdir(p, 0755);
            *s = '/';
        }
}

void tdu_write(const char *path, const void *data, size_t n)
{
    make_parents(path);
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s: %s", path, strerror(errno));
    cr_assert(n == 0 || fwrite(data, 1, n, f) == n);
    cr_assert(fclose(f) == 0);
}

void tdu_write_str(const char *path, const char *text)
{
    tdu_write(path, text, strlen(text));
}

uint8_t *tdu_read(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    cr_assert(b && fread(b, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

uint8_t *tdu_pattern(int w, int h, unsigned seed)
{
    uint8_t *p = malloc((size_t)w * (size_t)h * 3);
    cr_assert(p);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + ((size_t)y * (size_t)w + (size_t)x) * 3;
            q[0] = (uint8_t)(x * 255 / (w > 1 ? w - 1 : 1) + seed * 37);
            q[1] = (uint8_t)(y * 255 / (h > 1 ? h - 1 : 1) + seed * 91);
            q[2] = (uint8_t)((x + y) * 4 + seed * 13);
        }
    return p;
}

uint8_t *tdu_png(int w, int h, unsigned seed, size_t *n)
{
    uint8_t *px = tdu_pattern(w, h, seed);
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = (png_uint_32)w;
    im.height = (png_uint_32)h;
    im.format = PNG_FORMAT_RGB;
    png_alloc_size_t len = 0;
    cr_assert(png_image_write_to_memory(&im, NULL, &len, 0, px, 0, NULL));
    uint8_t *out = malloc(len);
    cr_assert(out && png_image_write_to_memory(&im, out, &len, 0, px, 0, NULL), "PNG: %s",
              im.message);
    free(px);
    *n = len;
    return out;
}

uint8_t *tdu_jpeg(int w, int h, unsigned seed, size_t *n)
{
    uint8_t *px = tdu_pattern(w, h, seed);
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    unsigned char *out = NULL;
    unsigned long len = 0;
    jpeg_mem_dest(&c, &out, &len);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 90, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = px + (size_t)c.next_scanline * (size_t)w * 3;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(px);
    *n = len;
    return out;
}

void tdu_write_png(const char *path, int w, int h, unsigned seed)
{
    size_t n;
    uint8_t *b = tdu_png(w, h, seed, &n);
    tdu_write(path, b, n);
    free(b);
}

void tdu_write_jpeg(const char *path, int w, int h, unsigned seed)
{
    size_t n;
    uint8_t *b = tdu_jpeg(w, h, seed, &n);
    tdu_write(path, b, n);
    free(b);
}

void tdu_write_tar(const char *path, const tdu_member *m, size_t n, int gz)
{
    make_parents(path);
    struct archive *a = archive_write_new();
    cr_assert(a);
    archive_write_set_format_pax_restricted(a);
    if (gz)
        archive_write_add_filter_gzip(a);
    cr_assert(archive_write_open_filename(a, path) == ARCHIVE_OK, "%s", archive_error_string(a));
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, m[i].name);
        archive_entry_set_size(e, (la_int64_t)m[i].len);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_mtime(e, 1700000000, 0);
        cr_assert(archive_write_header(a, e) == ARCHIVE_OK, "%s", archive_error_string(a));
        if (m[i].len)
            cr_assert(archive_write_data(a, m[i].data, m[i].len) == (la_ssize_t)m[i].len);
        archive_entry_free(e);
    }
    cr_assert(archive_write_close(a) == ARCHIVE_OK);
    archive_write_free(a);
}

void tdu_write_gz(const char *path, const void *data, size_t n)
{
    make_parents(path);
    gzFile g = gzopen(path, "wb");
    cr_assert(g);
    cr_assert(n == 0 || gzwrite(g, data, (unsigned)n) == (int)n);
    cr_assert(gzclose(g) == Z_OK);
}

uint8_t *tdu_idx(int ndim, const uint32_t *dims, const uint8_t *data, size_t *n)
{
    size_t count = 1;
    for (int d = 0; d < ndim; d++)
        count *= dims[d];
    size_t head = 4 + 4 * (size_t)ndim;
    uint8_t *b = malloc(head + count);
    cr_assert(b);
    b[0] = b[1] = 0;
    b[2] = 0x08;
    b[3] = (uint8_t)ndim;
    for (int d = 0; d < ndim; d++) {
        uint8_t *q = b + 4 + 4 * d;
        q[0] = (uint8_t)(dims[d] >> 24);
        q[1] = (uint8_t)(dims[d] >> 16);
        q[2] = (uint8_t)(dims[d] >> 8);
        q[3] = (uint8_t)dims[d];
    }
    memcpy(b + head, data, count);
    *n = head + count;
    return b;
}

ckd_dataset *tdu_open(const char *json, const char *base_dir, ckd_error *err)
{
    json_error_t je;
    json_t *spec = json_loads(json, 0, &je);
    cr_assert(spec, "test spec does not parse: %s: %s", je.text, json);
    ckd_dataset *ds = ckd_dataset_open(spec, base_dir, err);
    json_decref(spec);
    return ds;
}

void tdu_assert_has_v(const char *msg, va_list ap)
{
    for (const char *needle; (needle = va_arg(ap, const char *));)
        cr_assert(strstr(msg, needle), "message lacks \"%s\": %s", needle, msg);
}

void tdu_assert_has_(const char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    tdu_assert_has_v(msg, ap);
    va_end(ap);
}

void tdu_open_fails_(const char *json, const char *base_dir, ...)
{
    ckd_error err = {""};
    ckd_dataset *ds = tdu_open(json, base_dir, &err);
    cr_assert_null(ds, "opening %s should have failed", json);
    if (getenv("CKD_TEST_SHOW_ERRORS")) /* to read the messages while writing tests */
        fprintf(stderr, "%s\n", err.msg);
    va_list ap;
    va_start(ap, base_dir);
    tdu_assert_has_v(err.msg, ap);
    va_end(ap);
}

const char *tdu_fmnist_dir(void)
{
    static const char dir[] = "/usr/share/datasets/fashion-mnist";
    static const char *const files[] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
    for (size_t i = 0; i < 4; i++)
        cr_assert(access(tdu_path(dir, files[i]), R_OK) == 0,
                  "%s/%s is missing: install Debian's dataset-fashion-mnist package "
                  "(apt-get install dataset-fashion-mnist); clipkd's default data and these "
                  "tests need it",
                  dir, files[i]);
    return dir;
}
