/* Tests for clipkd/image.h decoding: PNG layouts, JPEG colour spaces and
 * corrupt input (part of the tests/test-image program). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include "clipkd/image.h"
#include "image-test.h"
#include "limits_util.h"

/* ---- helpers ------------------------------------------------------------- */

static char tmpdir_path[512];

static const char *make_tmpdir(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir_path, sizeof tmpdir_path, "%s/ckd-image-XXXXXX",
             t && *t ? t : "/tmp");
    cr_assert(mkdtemp(tmpdir_path), "mkdtemp: %s", strerror(errno));
    return tmpdir_path;
}

/* Every file the test writes, so that it can remove them and the
 * directory at the end. */
static char written[32][600];
static int n_written;

static char *write_tmp(const char *dir, const char *name, const void *data,
                       size_t len)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    cr_assert(p);
    snprintf(p, n, "%s/%s", dir, name);
    cr_assert(n_written < 32 && n < sizeof written[0]);
    snprintf(written[n_written++], sizeof written[0], "%s", p);
    FILE *f = fopen(p, "wb");
    cr_assert(f, "cannot write %s", p);
    if (len)
        cr_assert(fwrite(data, 1, len, f) == len);
    fclose(f);
    return p;
}

static void remove_tmp(const char *dir)
{
    for (int i = 0; i < n_written; i++)
        unlink(written[i]);
    n_written = 0;
    rmdir(dir);
}

/* PNG writer into memory (libpng low-level API, so every bit depth and
 * colour type can be produced). */
struct membuf {
    uint8_t *p;
    size_t n, cap;
};

static void membuf_write(png_structp png, png_bytep d, size_t n)
{
    struct membuf *m = png_get_io_ptr(png);
    if (m->n + n > m->cap) {
        m->cap = (m->n + n) * 2;
        m->p = realloc(m->p, m->cap);
        cr_assert(m->p);
    }
    memcpy(m->p + m->n, d, n);
    m->n += n;
}

static void membuf_flush(png_structp png)
{
    (void)png;
}

struct png_spec {
    int w, h, depth, ctype, interlace;
    const uint8_t *data; /* packed rows as PNG stores them (16-bit BE) */
    const png_color *pal;
    int npal;
    const uint8_t *trns;
    int ntrns;
};

static struct membuf write_png(const struct png_spec *s)
{
    struct membuf m = {NULL, 0, 0};
    png_structp png =
        png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    cr_assert(png && info);
    if (setjmp(png_jmpbuf(png)))
        cr_assert_fail("libpng failed writing the test PNG");
    png_set_write_fn(png, &m, membuf_write, membuf_flush);
    png_set_IHDR(png, info, (png_uint_32)s->w, (png_uint_32)s->h, s->depth,
                 s->ctype, s->interlace, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (s->pal)
        png_set_PLTE(png, info, s->pal, s->npal);
    if (s->trns)
        png_set_tRNS(png, info, s->trns, s->ntrns, NULL);
    png_write_info(png, info);
    int ch = s->ctype == PNG_COLOR_TYPE_GRAY ? 1
             : s->ctype == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
             : s->ctype == PNG_COLOR_TYPE_RGB ? 3
             : s->ctype == PNG_COLOR_TYPE_RGB_ALPHA ? 4 : 1;
    size_t rowbytes = ((size_t)s->w * (size_t)ch * (size_t)s->depth + 7) / 8;
    png_bytep *rows = malloc((size_t)s->h * sizeof *rows);
    cr_assert(rows);
    for (int y = 0; y < s->h; y++)
        rows[y] = (png_bytep)s->data + (size_t)y * rowbytes;
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    return m;
}

static unsigned char *write_jpeg(const uint8_t *px, int w, int h, int nc,
                                 J_COLOR_SPACE cs, int quality,
                                 unsigned long *len)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    unsigned char *out = NULL;
    *len = 0;
    jpeg_mem_dest(&c, &out, len);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = nc;
    c.in_color_space = cs;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW r = (JSAMPROW)(px + (size_t)c.next_scanline * (size_t)w *
                                         (size_t)nc);
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return out;
}

static int max_abs_diff(const uint8_t *a, const uint8_t *b, size_t n,
                        double *mean_out)
{
    int worst = 0;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        sum += d;
        if (d > worst)
            worst = d;
    }
    if (mean_out)
        *mean_out = sum / (double)n;
    return worst;
}

/* stderr goes to a file between these two calls, which then assert that
 * nothing was printed: the library must report through ckd_error only. */
static int stderr_fd_saved = -1;
static char stderr_capture[600];

static void capture_stderr_begin(const char *dir)
{
    fflush(stderr);
    snprintf(stderr_capture, sizeof stderr_capture, "%s/stderr.txt", dir);
    snprintf(written[n_written++], sizeof written[0], "%s", stderr_capture);
    int fd = open(stderr_capture, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert(fd >= 0);
    stderr_fd_saved = dup(2);
    dup2(fd, 2);
    close(fd);
}

static void capture_stderr_end_expect_empty(void)
{
    fflush(stderr);
    dup2(stderr_fd_saved, 2);
    close(stderr_fd_saved);
    size_t n;
    uint8_t *b = ckdt_read_all(stderr_capture, &n);
    cr_assert_eq(n, 0, "the library printed to stderr: %.*s", (int)n, b);
    free(b);
}

/* ---- PNG layouts --------------------------------------------------------- */

static void expect_png(const struct png_spec *s, const uint8_t *want_rgb)
{
    struct membuf m = write_png(s);
    ckd_image img;
    ckd_error err = {""};
    cr_assert_eq(ckd_image_decode(m.p, m.n, "t.png", &img, &err), 0,
                 "depth %d type %d: %s", s->depth, s->ctype, err.msg);
    cr_assert(img.w == s->w && img.h == s->h);
    for (int i = 0; i < s->w * s->h * 3; i++)
        cr_assert_eq(img.rgb[i], want_rgb[i],
                     "depth %d type %d interlace %d sample %d: %d != %d",
                     s->depth, s->ctype, s->interlace, i, img.rgb[i],
                     want_rgb[i]);
    ckd_image_free(&img);
    free(m.p);
}

Test(image, png_layouts_convert_like_pil)
{
    enum { W = 5, H = 3, N = W * H };
    uint8_t want[N * 3];
    uint8_t data[N * 8];

    /* 8-bit gray */
    for (int i = 0; i < N; i++) {
        data[i] = (uint8_t)(i * 17);
        want[3 * i] = want[3 * i + 1] = want[3 * i + 2] = data[i];
    }
    expect_png(&(struct png_spec){
        .w = W, .h = H, .depth = 8, .ctype = PNG_COLOR_TYPE_GRAY,
        .data = data}, want);

    /* 16-bit gray: the high byte is kept */
    for (int i = 0; i < N; i++) {
        data[2 * i] = (uint8_t)(i * 13);
        data[2 * i + 1] = 0xff - (uint8_t)i;
        want[3 * i] = want[3 * i + 1] = want[3 * i + 2] = (uint8_t)(i * 13);
    }
    expect_png(&(struct png_spec){
        .w = W, .h = H, .depth = 16, .ctype = PNG_COLOR_TYPE_GRAY,
        .data = data}, want);

    /* gray + alpha: alpha dropped, not composited */
    for (int i = 0; i < N; i++) {
        data[2 * i] = (uint8_t)(200 - i);
        data[2 * i + 1] = (uint8_t)(i * 10);
        want[3 * i] = want[3 * i + 1] = want[3 * i + 2] = (uint8_t)(200 - i);
    }
    expect_png(&(struct png_spec){
        .w = W, .h = H, .depth = 8, .ctype = PNG_COLOR_TYPE_GRAY_ALPHA,
        .data = data}, want);

    /* 16-bit RGBA, interlaced */
    for (int i = 0; i < N; i++)
        for (int c = 0; c < 4; c++) {
            data[8 * i + 2 * c] = (uint8_t)(i * 7 + c * 50);
            data[8 * i + 2 * c + 1] = (uint8_t)(c * 3 + 1);
            if (c < 3)
                want[3 * i + c] = (uint8_t)(i * 7 + c * 50);
        }
    expect_png(&(struct png_spec){
        .w = W, .h = H, .depth = 16, .ctype = PNG_COLOR_TYPE_RGB_ALPHA,
        .interlace = PNG_INTERLACE_ADAM7, .data = data}, want);

    /* 2-bit palette with transparency (ignored by convert("RGB")) */
    png_color pal[4] = {{10, 20, 30}, {200, 0, 0}, {0, 255, 0}, {1, 2, 3}};
    uint8_t trns[4] = {0, 128, 255, 7};
    memset(data, 0, sizeof data);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int idx = (x + y) % 4, i = y * W + x;
            /* 2 bits per pixel, first pixel in the high bits; 2 bytes/row */
            data[y * 2 + x / 4] |= (uint8_t)(idx << (6 - 2 * (x % 4)));
            want[3 * i] = pal[idx].red;
            want[3 * i + 1] = pal[idx].green;
            want[3 * i + 2] = pal[idx].blue;
        }
    expect_png(&(struct png_spec){
        .w = W, .h = H, .depth = 2, .ctype = PNG_COLOR_TYPE_PALETTE,
        .data = data, .pal = pal, .npal = 4, .trns = trns, .ntrns = 4}, want);

    /* 1-bit gray → 0 / 255; 4-bit gray → v * 17 */
    memset(data, 0, sizeof data);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int bit = (x ^ y) & 1, i = y * W + x;
            data[y] |= (uint8_t)(bit << (7 - x));
            want[3 * i] = want[3 * i + 1] = want[3 * i + 2] = bit ? 255 : 0;
        }
    expect_png(&(struct png_spec){
        .w = W, .h = H, .depth = 1, .ctype = PNG_COLOR_TYPE_GRAY,
        .data = data}, want);
    memset(data, 0, sizeof data);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int v = (x * 3 + y) & 15, i = y * W + x;
            data[y * 3 + x / 2] |= (uint8_t)(v << (x % 2 ? 0 : 4));
            want[3 * i] = want[3 * i + 1] = want[3 * i + 2] = (uint8_t)(v * 17);
        }
    expect_png(&(struct png_spec){
        .w = W, .h = H, .depth = 4, .ctype = PNG_COLOR_TYPE_GRAY,
        .data = data}, want);
}

/* ---- JPEG ---------------------------------------------------------------- */

Test(image, jpeg_rgb_gray_cmyk_decode_within_tolerance)
{
    const int w = 64, h = 48;
    uint8_t *g = ckdt_gradient(w, h);
    unsigned long len;
    unsigned char *jpg = write_jpeg(g, w, h, 3, JCS_RGB, 95, &len);
    ckd_image img;
    ckd_error err = {""};
    cr_assert_eq(ckd_image_decode(jpg, len, "grad.jpg", &img, &err), 0, "%s",
                 err.msg);
    cr_assert(img.w == w && img.h == h);
    double mean;
    int worst = max_abs_diff(img.rgb, g, (size_t)w * h * 3, &mean);
    cr_assert(worst <= 12 && mean < 2.0, "RGB JPEG: max %d mean %.2f", worst,
              mean);
    ckd_image_free(&img);
    free(jpg);

    /* gray JPEG → R = G = B */
    uint8_t *gray = malloc((size_t)w * h);
    for (int i = 0; i < w * h; i++)
        gray[i] = g[3 * i];
    jpg = write_jpeg(gray, w, h, 1, JCS_GRAYSCALE, 95, &len);
    cr_assert_eq(ckd_image_decode(jpg, len, "gray.jpg", &img, &err), 0, "%s",
                 err.msg);
    for (int i = 0; i < w * h; i++) {
        cr_assert(img.rgb[3 * i] == img.rgb[3 * i + 1] &&
                  img.rgb[3 * i] == img.rgb[3 * i + 2]);
        cr_assert(abs((int)img.rgb[3 * i] - gray[i]) <= 8, "gray %d: %d vs %d",
                  i, img.rgb[3 * i], gray[i]);
    }
    ckd_image_free(&img);
    free(jpg);
    free(gray);

    /* CMYK with libjpeg's Adobe marker: stored inverted, as Photoshop does,
     * so store 255 - C etc. Flat colour C=0, M=128, Y=255, K=64 →
     * R = 191, G = round-ish(191 * 127 / 255) = 95, B = 0. */
    uint8_t *cmyk = malloc((size_t)w * h * 4);
    for (int i = 0; i < w * h; i++) {
        cmyk[4 * i] = 255;
        cmyk[4 * i + 1] = 127;
        cmyk[4 * i + 2] = 0;
        cmyk[4 * i + 3] = 191;
    }
    jpg = write_jpeg(cmyk, w, h, 4, JCS_CMYK, 100, &len);
    cr_assert_eq(ckd_image_decode(jpg, len, "cmyk.jpg", &img, &err), 0, "%s",
                 err.msg);
    int c0 = img.rgb[3 * 100], c1 = img.rgb[3 * 100 + 1],
        c2 = img.rgb[3 * 100 + 2];
    cr_assert(abs(c0 - 191) <= 2 && abs(c1 - 95) <= 2 && c2 <= 2,
              "CMYK → RGB gave %d %d %d", c0, c1, c2);
    ckd_image_free(&img);
    free(jpg);
    free(cmyk);
    free(g);
}

/* ---- bad input ----------------------------------------------------------- */

static uint32_t crc_of(const uint8_t *p, size_t n)
{
    return (uint32_t)crc32(0, p, (unsigned)n);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static size_t find_chunk(const uint8_t *p, size_t n, const char *type)
{
    size_t o = 8;
    while (o + 8 <= n) {
        uint32_t len = (uint32_t)p[o] << 24 | (uint32_t)p[o + 1] << 16 |
                       (uint32_t)p[o + 2] << 8 | p[o + 3];
        if (memcmp(p + o + 4, type, 4) == 0)
            return o;
        o += 12 + len;
    }
    cr_assert_fail("no %s chunk", type);
    return 0;
}

static void expect_load_error_with(const char *path, const char *what,
                                   const char *detail)
{
    ckd_image img = {1, 1, (uint8_t *)"x"};
    ckd_error err = {""};
    cr_assert_eq(ckd_image_load(path, &img, &err), -1, "%s decoded", what);
    cr_assert_null(img.rgb, "%s: output not cleared", what);
    cr_assert(strstr(err.msg, path), "%s: message does not name the file: %s",
              what, err.msg);
    cr_assert(!detail || strstr(err.msg, detail),
              "%s: message does not say \"%s\": %s", what, detail, err.msg);
    printf("%s: %s\n", what, err.msg);
}

static void expect_load_error(const char *path, const char *what)
{
    expect_load_error_with(path, what, NULL);
}

Test(image, bad_input_gives_errors_naming_the_file)
{
    const char *dir = make_tmpdir();
    capture_stderr_begin(dir);

    char *fx = ckdt_fixture_path("preprocess/img4_100x75.png");
    size_t n;
    uint8_t *png = ckdt_read_all(fx, &n);

    char *p = write_tmp(dir, "truncated.png", png, n / 2);
    expect_load_error_with(p, "truncated PNG", "truncated");
    free(p);

    uint8_t *bad = malloc(n);
    memcpy(bad, png, n);
    size_t idat = find_chunk(bad, n, "IDAT");
    uint32_t ilen = (uint32_t)bad[idat] << 24 | (uint32_t)bad[idat + 1] << 16 |
                    (uint32_t)bad[idat + 2] << 8 | bad[idat + 3];
    bad[idat + 8 + ilen] ^= 0x55; /* the stored CRC of the first IDAT */
    p = write_tmp(dir, "badcrc.png", bad, n);
    expect_load_error_with(p, "PNG with a bad CRC", "CRC");
    free(p);

    memcpy(bad, png, n);
    bad[idat + 8 + 20] ^= 0x55; /* data changed, CRC now wrong too */
    p = write_tmp(dir, "baddata-badcrc.png", bad, n);
    expect_load_error(p, "PNG with corrupt data and CRC");
    free(p);

    /* Same damage with a recomputed CRC: the zlib stream itself is bad. */
    memcpy(bad, png, n);
    memset(bad + idat + 8 + 2, 0xff, 16);
    put_be32(bad + idat + 8 + ilen, crc_of(bad + idat + 4, ilen + 4));
    p = write_tmp(dir, "baddata.png", bad, n);
    expect_load_error(p, "PNG with corrupt data");
    free(p);

    /* IHDR claiming 70000 x 10 (valid CRC): refused as absurd. */
    memcpy(bad, png, n);
    size_t ihdr = find_chunk(bad, n, "IHDR");
    put_be32(bad + ihdr + 8, 70000);
    put_be32(bad + ihdr + 12, 10);
    put_be32(bad + ihdr + 8 + 13, crc_of(bad + ihdr + 4, 17));
    p = write_tmp(dir, "huge.png", bad, n);
    expect_load_error_with(p, "PNG with absurd width", "limit");
    free(p);

    /* 20000 x 20000 is within the side limit but over the pixel limit. */
    put_be32(bad + ihdr + 8, 20000);
    put_be32(bad + ihdr + 12, 20000);
    put_be32(bad + ihdr + 8 + 13, crc_of(bad + ihdr + 4, 17));
    p = write_tmp(dir, "huge2.png", bad, n);
    {
        ckd_image img;
        ckd_error err;
        cr_assert_eq(ckd_image_load(p, &img, &err), -1);
        cr_assert(strstr(err.msg, "20000x20000") && strstr(err.msg, p), "%s",
                  err.msg);
    }
    free(p);
    free(bad);

    uint8_t *g = ckdt_gradient(64, 48);
    unsigned long jlen;
    unsigned char *jpg = write_jpeg(g, 64, 48, 3, JCS_RGB, 90, &jlen);
    p = write_tmp(dir, "truncated.jpg", jpg, jlen * 2 / 3);
    expect_load_error_with(p, "truncated JPEG", "truncated");
    free(p);
    p = write_tmp(dir, "header-only.jpg", jpg, 40);
    expect_load_error(p, "JPEG cut inside its header");
    free(p);
    /* SOF0 claiming 60000 x 60000 */
    for (size_t i = 2; i + 9 < jlen; i++)
        if (jpg[i] == 0xff && jpg[i + 1] == 0xc0) {
            jpg[i + 5] = 0xea;
            jpg[i + 6] = 0x60;
            jpg[i + 7] = 0xea;
            jpg[i + 8] = 0x60;
            break;
        }
    p = write_tmp(dir, "huge.jpg", jpg, jlen);
    expect_load_error_with(p, "JPEG with absurd size", "60000x60000");
    free(p);
    free(jpg);
    free(g);

    uint8_t rnd[4096];
    uint64_t s = 12345;
    for (size_t i = 0; i < sizeof rnd; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        rnd[i] = (uint8_t)(s >> 56);
    }
    p = write_tmp(dir, "random.bin", rnd, sizeof rnd);
    expect_load_error_with(p, "random bytes", "not a PNG or JPEG");
    free(p);
    /* random bytes behind valid signatures must fail inside the decoders */
    memcpy(rnd, png, 8);
    p = write_tmp(dir, "random.png", rnd, sizeof rnd);
    expect_load_error(p, "PNG signature + random bytes");
    free(p);
    rnd[0] = 0xff;
    rnd[1] = 0xd8;
    rnd[2] = 0xff;
    p = write_tmp(dir, "random.jpg", rnd, sizeof rnd);
    expect_load_error(p, "JPEG signature + random bytes");
    free(p);

    p = write_tmp(dir, "empty.png", "", 0);
    expect_load_error_with(p, "empty file", "empty");
    free(p);

    size_t ml = strlen(dir) + 32;
    p = malloc(ml);
    snprintf(p, ml, "%s/does-not-exist.png", dir);
    expect_load_error_with(p, "missing file", "cannot open");
    free(p);

    /* in-memory decode names the member it was given */
    ckd_image img;
    ckd_error err;
    cr_assert_eq(ckd_image_decode(png, n / 3, "shard-0001.tar:42.png", &img,
                                  &err), -1);
    cr_assert(strstr(err.msg, "shard-0001.tar:42.png"), "%s", err.msg);
    cr_assert_eq(ckd_image_decode(NULL, 0, NULL, &img, &err), -1);
    cr_assert(strstr(err.msg, "<memory>"), "%s", err.msg);

    free(png);
    free(fx);
    capture_stderr_end_expect_empty();
    remove_tmp(dir);
}

/* Decompression bombs: a PNG whose tEXt chunk declares 2.1 GB (libpng would
 * allocate and zero it before noticing the file ends) and a 16384 x 16384
 * JPEG header (a progressive one decodes in 1.6 GB). Both are refused with
 * the address space capped at 512 MiB above what the test uses, so an
 * allocation of what the header claims shows as a different error. */
Test(image, decompression_bombs_are_refused_before_allocating)
{
    const char *dir = make_tmpdir();
    char *fx = ckdt_fixture_path("preprocess/img4_100x75.png");
    size_t n;
    uint8_t *png = ckdt_read_all(fx, &n);
    size_t ihdr = find_chunk(png, n, "IHDR"), after = ihdr + 8 + 13 + 4;
    uint8_t bomb[256];
    cr_assert_lt(after + 12 + 16, sizeof bomb);
    memcpy(bomb, png, after);
    put_be32(bomb + after, 0x7fffff00u); /* the length field */
    memcpy(bomb + after + 4, "tEXt", 4);
    memcpy(bomb + after + 8, "Comment\0hello, w", 16);
    char *p = write_tmp(dir, "text-bomb.png", bomb, after + 8 + 16);
    int capped = cap_address_space((size_t)512 << 20) == 0;
    printf("address space %s\n", capped ? "capped" : "not capped (sanitizer build)");
    expect_load_error_with(p, "PNG declaring a 2 GB tEXt chunk", "too large");
    free(p);

    uint8_t *g = ckdt_gradient(64, 48);
    unsigned long jlen;
    unsigned char *jpg = write_jpeg(g, 64, 48, 3, JCS_RGB, 90, &jlen);
    for (size_t i = 2; i + 9 < jlen; i++)
        if (jpg[i] == 0xff && jpg[i + 1] == 0xc0) { /* SOF0: height, width */
            jpg[i + 5] = 0x40, jpg[i + 6] = 0x00, jpg[i + 7] = 0x40, jpg[i + 8] = 0x00;
            break;
        }
    p = write_tmp(dir, "big.jpg", jpg, jlen);
    expect_load_error_with(p, "JPEG of 16384 x 16384", "16384x16384");
    free(p);
    free(jpg);
    free(g);
    free(png);
    free(fx);
    remove_tmp(dir);
}

/* The memory budget (ckd_image_max_bytes) and the scan limit, on the
 * regression inputs of the jpeg fuzz target: a 640-byte progressive JPEG
 * claiming 9000 x 9000 (within PIL's pixel limit; its decode peaked at 467 MB RSS
 * before the budget) and a 8 KB progressive JPEG of 600 scans.
 * Both fail before the memory is taken (address space capped 128 MiB above
 * what the test uses) and name what stopped them. */
Test(image, progressive_jpeg_over_the_budget_and_many_scans_are_refused)
{
    cr_assert_eq(ckd_image_max_bytes(), CKD_IMAGE_DEFAULT_MAX_BYTES);
    char *big = ckdt_source_path("tests/fuzz/regressions", "jpeg/progressive-9000x9000.jpg");
    char *scans = ckdt_source_path("tests/fuzz/regressions", "jpeg/600-scans.jpg");
    int capped = cap_address_space((size_t)128 << 20) == 0;
    printf("address space %s\n", capped ? "capped" : "not capped (sanitizer build)");
    expect_load_error_with(big, "progressive JPEG of 9000 x 9000", "memory budget of 256 MiB");
    expect_load_error_with(scans, "JPEG of 600 scans", "more than 500 scans");
    free(big);
    free(scans);
}

/* The budget is the program's to set: below an image's pixels it refuses
 * the image (PNG and JPEG alike) with the budget in the message; 0 restores
 * the default. CLIPKD_IMAGE_MAX_MB sets it from the environment (read once:
 * each Criterion test runs in its own process). */
Test(image, memory_budget_is_configurable)
{
    char *png = ckdt_fixture_path("preprocess/img4_100x75.png");
    ckd_image img;
    ckd_error err;
    ckd_image_set_max_bytes(100 * 75 * 3 - 1);
    expect_load_error_with(png, "PNG over a budget one byte short", "image memory budget");
    cr_assert_eq(ckd_image_alloc(&img, 100, 75, &err), -1, "ckd_image_alloc ignores the budget");
    ckd_image_set_max_bytes(100 * 75 * 3);
    cr_assert_eq(ckd_image_load(png, &img, &err), 0, "%s", err.msg);
    ckd_image_free(&img);
    ckd_image_set_max_bytes(0);
    cr_assert_eq(ckd_image_max_bytes(), CKD_IMAGE_DEFAULT_MAX_BYTES);
    free(png);
}

Test(image, memory_budget_from_the_environment)
{
    setenv("CLIPKD_IMAGE_MAX_MB", "3", 1);
    cr_assert_eq(ckd_image_max_bytes(), (size_t)3 << 20);
    ckd_image img;
    ckd_error err;
    cr_assert_eq(ckd_image_alloc(&img, 1024, 1024, &err), 0, "%s", err.msg); /* 3 MiB exactly */
    ckd_image_free(&img);
    cr_assert_eq(ckd_image_alloc(&img, 1024, 1025, &err), -1);
    cr_assert(strstr(err.msg, "budget of 3 MiB"), "%s", err.msg);
}
