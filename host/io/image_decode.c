/* PNG (libpng) and JPEG (libjpeg) decoding to 8-bit interleaved RGB.
 *
 * Both libraries report fatal errors by calling a handler that must not
 * return; we install handlers that copy the message into a context and
 * longjmp back, so that corrupt input yields a ckd_error instead of a
 * printout on stderr and an abort(). Warnings are swallowed for the same
 * reason (the library must never print). */
#include "config.h"

/* fileno() and fstat() are POSIX, not C11. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <pthread.h>
#include <png.h>
#include <jpeglib.h>
#include <jerror.h>

#include "clipkd/image.h"

/* Files larger than this are refused by ckd_image_load before reading: no
 * PNG/JPEG within the pixel limits needs it, and a bogus path (a device, a
 * dataset shard) should not be slurped into memory. */
#define MAX_FILE_BYTES ((size_t)1 << 30)

static const char *display_name(const char *name)
{
    return name ? name : "<memory>";
}

/* ---- the memory budget ---------------------------------------------------- */

static _Atomic size_t budget_set; /* 0: not set by the program */
static size_t budget_env;         /* CLIPKD_IMAGE_MAX_MB, or the default */
static pthread_once_t budget_once = PTHREAD_ONCE_INIT;

static void read_budget_env(void)
{
    const char *s = getenv("CLIPKD_IMAGE_MAX_MB");
    char *end = NULL;
    unsigned long long mb = s && *s ? strtoull(s, &end, 10) : 0;
    budget_env = mb > 0 && mb < ((size_t)1 << 40) && end && !*end ? (size_t)mb << 20 : CKD_IMAGE_DEFAULT_MAX_BYTES;
}

size_t ckd_image_max_bytes(void)
{
    size_t b = budget_set;
    if (b)
        return b;
    pthread_once(&budget_once, read_budget_env);
    return budget_env;
}

void ckd_image_set_max_bytes(size_t bytes)
{
    budget_set = bytes;
}

static int over_budget(const char *name, const char *what, long w, long h, size_t need, ckd_error *err)
{
    return ckd_errorf(err,
                      "%s: %s is %ldx%ld and needs %zu MiB to decode, over the image memory budget of %zu MiB "
                      "(CLIPKD_IMAGE_MAX_MB raises it)",
                      name, what, w, h, (need + ((size_t)1 << 20) - 1) >> 20, ckd_image_max_bytes() >> 20);
}

static int check_dims(const char *name, const char *what, long w, long h,
                      ckd_error *err)
{
    if (w <= 0 || h <= 0)
        return ckd_errorf(err, "%s: %s has an empty size %ldx%ld", name, what,
                          w, h);
    if (w > CKD_IMAGE_MAX_SIDE || h > CKD_IMAGE_MAX_SIDE ||
        w * h > CKD_IMAGE_MAX_PIXELS)
        return ckd_errorf(err,
                          "%s: %s is %ldx%ld, over the limit (sides <= %d, "
                          "at most %ld pixels)",
                          name, what, w, h, CKD_IMAGE_MAX_SIDE,
                          (long)CKD_IMAGE_MAX_PIXELS);
    if ((size_t)w * (size_t)h * 3 > ckd_image_max_bytes())
        return over_budget(name, what, w, h, (size_t)w * (size_t)h * 3, err);
    return 0;
}

int ckd_image_alloc(ckd_image *img, int w, int h, ckd_error *err)
{
    if (!img)
        return ckd_errorf(err, "ckd_image_alloc: NULL image");
    memset(img, 0, sizeof *img);
    if (check_dims("ckd_image_alloc", "the requested image", w, h, err))
        return -1;
    img->rgb = malloc((size_t)w * (size_t)h * 3);
    if (!img->rgb)
        return ckd_errorf(err, "ckd_image_alloc: out of memory for %dx%d RGB",
                          w, h);
    img->w = w;
    img->h = h;
    return 0;
}

void ckd_image_free(ckd_image *img)
{
    if (!img)
        return;
    free(img->rgb);
    memset(img, 0, sizeof *img);
}

int ckd_image_from_gray(const uint8_t *gray, int w, int h, ckd_image *out,
                        ckd_error *err)
{
    if (!gray || !out)
        return ckd_errorf(err, "ckd_image_from_gray: NULL %s",
                          gray ? "output" : "gray buffer");
    if (ckd_image_alloc(out, w, h, err))
        return ckd_error_prefix(err, "ckd_image_from_gray");
    size_t n = (size_t)w * (size_t)h;
    for (size_t i = 0; i < n; i++)
        out->rgb[3 * i] = out->rgb[3 * i + 1] = out->rgb[3 * i + 2] = gray[i];
    return 0;
}

/* ---- PNG ----------------------------------------------------------------- */

struct png_ctx {
    const uint8_t *buf;
    size_t len, pos;
    char msg[256];
    char warning[256]; /* the last one, often the reason for the error */
    char scratch[128];
};

static void png_error_handler(png_structp png, png_const_charp msg)
{
    struct png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "unknown error");
    png_longjmp(png, 1);
}

static void png_warning_handler(png_structp png, png_const_charp msg)
{
    /* Benign problems (bad ancillary chunks, …) are not worth failing on and
     * must not be printed; the last one is kept because libpng often warns
     * with the specific reason just before a generic error ("Image width
     * exceeds user limit" then "Invalid IHDR data"). */
    struct png_ctx *c = png_get_error_ptr(png);
    snprintf(c->warning, sizeof c->warning, "%s", msg ? msg : "");
}

static void png_read_from_memory(png_structp png, png_bytep dst, size_t n)
{
    struct png_ctx *c = png_get_io_ptr(png);
    if (n > c->len - c->pos) {
        snprintf(c->scratch, sizeof c->scratch,
                 "unexpected end of data: %zu bytes wanted, %zu left (file "
                 "truncated)", n, c->len - c->pos);
        png_error(png, c->scratch);
    }
    memcpy(dst, c->buf + c->pos, n);
    c->pos += n;
}

/* Walks the chunk list before libpng does: any chunk but IDAT longer than
 * CKD_PNG_MAX_CHUNK_BYTES is refused here, because libpng (1.6.39) allocates
 * and zeroes an ancillary chunk's declared length before reading it — a
 * 282-byte file declaring a 2.1 GB tEXt chunk costs 2.1 GB — whatever the
 * chunk-malloc limit says. The walk stops at IEND, or where a length runs
 * past the data (libpng then reports the truncation itself). */
static int png_check_chunks(const uint8_t *buf, size_t len, const char *name, ckd_error *err)
{
    for (size_t off = 8; off + 12 <= len;) {
        uint32_t n = (uint32_t)buf[off] << 24 | (uint32_t)buf[off + 1] << 16 | (uint32_t)buf[off + 2] << 8 |
                     buf[off + 3];
        const uint8_t *type = buf + off + 4;
        if (memcmp(type, "IDAT", 4) && n > CKD_PNG_MAX_CHUNK_BYTES) {
            char t[5];
            for (int i = 0; i < 4; i++)
                t[i] = type[i] >= 0x20 && type[i] < 0x7f ? (char)type[i] : '?';
            t[4] = '\0';
            return ckd_errorf(err, "%s: corrupt PNG (at byte %zu of %zu): chunk %s declares %u bytes, too large"
                              " (at most %zu for a chunk other than IDAT)", name, off, len, t, n,
                              CKD_PNG_MAX_CHUNK_BYTES);
        }
        if (!memcmp(type, "IEND", 4) || n > len - off - 12)
            break;
        off += 12 + (size_t)n;
    }
    return 0;
}

static int decode_png(const uint8_t *buf, size_t len, const char *name,
                      ckd_image *out, ckd_error *err)
{
    if (png_check_chunks(buf, len, name, err))
        return -1;
    struct png_ctx ctx = {.buf = buf, .len = len, .pos = 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx,
                                             png_error_handler,
                                             png_warning_handler);
    if (!png)
        return ckd_errorf(err, "%s: out of memory creating a PNG reader", name);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return ckd_errorf(err, "%s: out of memory creating a PNG reader", name);
    }
    /* volatile: assigned after setjmp and needed by the error path. */
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;

    if (setjmp(png_jmpbuf(png))) {
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return ckd_errorf(err,
                          "%s: corrupt PNG (at byte %zu of %zu): %s%s%s%s",
                          name, ctx.pos, ctx.len, ctx.msg,
                          ctx.warning[0] ? " (after warning: " : "",
                          ctx.warning, ctx.warning[0] ? ")" : "");
    }
    png_set_read_fn(png, &ctx, png_read_from_memory);
    /* Refuse absurd sides before libpng allocates anything for them (and
     * tell it the chunk limit png_check_chunks enforces). */
    png_set_user_limits(png, CKD_IMAGE_MAX_SIDE, CKD_IMAGE_MAX_SIDE);
    png_set_chunk_malloc_max(png, CKD_PNG_MAX_CHUNK_BYTES);
    png_read_info(png, info);

    png_uint_32 w32, h32;
    int depth, ctype, interlace;
    png_get_IHDR(png, info, &w32, &h32, &depth, &ctype, &interlace, NULL, NULL);
    if (check_dims(name, "PNG", (long)w32, (long)h32, err))
        goto fail;
    int w = (int)w32, h = (int)h32;

    /* Reduce every layout to 8-bit RGB the way PIL's convert("RGB") sees it:
     * palette → its RGB entries (transparency ignored), low-depth gray
     * scaled to 0..255, 16-bit → high byte, alpha dropped (not composited),
     * gray replicated into R, G and B. No gamma handling, as in PIL. */
    if (ctype == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16)
        png_set_strip_16(png);
    if ((ctype & PNG_COLOR_MASK_ALPHA) ||
        png_get_valid(png, info, PNG_INFO_tRNS))
        png_set_strip_alpha(png);
    if (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    size_t rowbytes = png_get_rowbytes(png, info);
    if (rowbytes != (size_t)w * 3) {
        ckd_errorf(err, "%s: PNG (color type %d, depth %d) converts to %zu "
                   "bytes per row, expected %zu for RGB",
                   name, ctype, depth, rowbytes, (size_t)w * 3);
        goto fail;
    }
    pixels = malloc((size_t)w * (size_t)h * 3);
    rows = malloc((size_t)h * sizeof *rows);
    if (!pixels || !rows) {
        ckd_errorf(err, "%s: out of memory for a %dx%d PNG", name, w, h);
        goto fail;
    }
    for (int y = 0; y < h; y++)
        rows[y] = pixels + (size_t)y * rowbytes;
    png_read_image(png, rows);
    /* Chunks after the image data (tEXt, IEND) are not read: a file whose
     * pixels are complete decodes, as it does in PIL. */

    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    out->w = w;
    out->h = h;
    out->rgb = pixels;
    return 0;

fail: /* err is already filled in */
    free(pixels);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    return -1;
}

/* ---- JPEG ---------------------------------------------------------------- */

struct jpeg_ctx {
    struct jpeg_error_mgr pub; /* first, so that cinfo->err casts to us */
    jmp_buf jb;
    size_t len;
    char msg[JMSG_LENGTH_MAX + 64];
};

static void jpeg_error_exit_handler(j_common_ptr cinfo)
{
    struct jpeg_ctx *c = (struct jpeg_ctx *)cinfo->err;
    char text[JMSG_LENGTH_MAX];
    cinfo->err->format_message(cinfo, text);
    snprintf(c->msg, sizeof c->msg, "%s", text);
    longjmp(c->jb, 1);
}

/* Called by libjpeg as it consumes the input: a progressive file with more
 * scans than CKD_JPEG_MAX_SCANS stops here. Fuzzing builds (see brace.c)
 * stop at 50: each scan decodes the whole image again, the same code. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define MAX_SCANS 50
#else
#define MAX_SCANS CKD_JPEG_MAX_SCANS
#endif
static void jpeg_progress_handler(j_common_ptr cinfo)
{
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (cinfo->is_decompressor && d->input_scan_number > MAX_SCANS) {
        struct jpeg_ctx *c = (struct jpeg_ctx *)cinfo->err;
        snprintf(c->msg, sizeof c->msg, "more than %d scans (a progressive JPEG has a handful)", MAX_SCANS);
        longjmp(c->jb, 1);
    }
}

static void jpeg_output_message_handler(j_common_ptr cinfo)
{
    /* Corrupt-data warnings ("extraneous bytes before marker", …) are
     * tolerated, as PIL tolerates them, and never printed. */
    (void)cinfo;
}

/* A source manager over the caller's buffer. All bytes are handed over at
 * once, so libjpeg asking for more means the file is truncated: fail then,
 * where jpeg_mem_src would pad with a fake EOI and decode gray rows (PIL
 * refuses truncated files unless LOAD_TRUNCATED_IMAGES is set). */
static void src_init(j_decompress_ptr cinfo)
{
    (void)cinfo;
}

static boolean src_fill(j_decompress_ptr cinfo)
{
    struct jpeg_ctx *c = (struct jpeg_ctx *)cinfo->err;
    snprintf(c->msg, sizeof c->msg,
             "unexpected end of data after %zu bytes (file truncated)", c->len);
    longjmp(c->jb, 1);
}

static void src_skip(j_decompress_ptr cinfo, long n)
{
    struct jpeg_source_mgr *s = cinfo->src;
    if (n <= 0)
        return;
    if ((size_t)n > s->bytes_in_buffer) {
        s->next_input_byte += s->bytes_in_buffer;
        s->bytes_in_buffer = 0;
        src_fill(cinfo);
        return;
    }
    s->next_input_byte += n;
    s->bytes_in_buffer -= (size_t)n;
}

static void src_term(j_decompress_ptr cinfo)
{
    (void)cinfo;
}

/* PIL's CMYK → RGB: channel = (255 - k) - round(c * (255 - k) / 255). */
static uint8_t cmyk_channel(unsigned c, unsigned k)
{
    unsigned nk = 255 - k;
    unsigned t = c * nk + 128;
    unsigned prod = ((t >> 8) + t) >> 8;
    return (uint8_t)(nk - prod);
}

static int decode_jpeg(const uint8_t *buf, size_t len, const char *name,
                       ckd_image *out, ckd_error *err)
{
    struct jpeg_decompress_struct cinfo;
    struct jpeg_ctx ctx;
    struct jpeg_source_mgr src;
    struct jpeg_progress_mgr progress = {.progress_monitor = jpeg_progress_handler};
    memset(&cinfo, 0, sizeof cinfo);
    memset(&ctx, 0, sizeof ctx);
    ctx.len = len;
    cinfo.err = jpeg_std_error(&ctx.pub);
    ctx.pub.error_exit = jpeg_error_exit_handler;
    ctx.pub.output_message = jpeg_output_message_handler;

    uint8_t *volatile pixels = NULL;
    uint8_t *volatile rowbuf = NULL;
    if (setjmp(ctx.jb)) {
        free(pixels);
        free(rowbuf);
        /* jmemnobs has no backing store: asking for one means libjpeg's
         * arrays would exceed max_memory_to_use, the rest of the budget. */
        int budget = ctx.pub.msg_code == JERR_NO_BACKING_STORE;
        long w = (long)cinfo.image_width, h = (long)cinfo.image_height;
        jpeg_destroy_decompress(&cinfo);
        if (budget)
            return ckd_errorf(err,
                              "%s: JPEG is %ldx%ld and needs more than the image memory budget of %zu MiB to "
                              "decode (a progressive JPEG keeps every DCT coefficient while it decodes; "
                              "CLIPKD_IMAGE_MAX_MB raises the budget)",
                              name, w, h, ckd_image_max_bytes() >> 20);
        return ckd_errorf(err, "%s: corrupt JPEG: %s", name, ctx.msg);
    }
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &progress;
    src.next_input_byte = buf;
    src.bytes_in_buffer = len;
    src.init_source = src_init;
    src.fill_input_buffer = src_fill;
    src.skip_input_data = src_skip;
    src.resync_to_restart = jpeg_resync_to_restart;
    src.term_source = src_term;
    cinfo.src = &src;

    jpeg_read_header(&cinfo, TRUE);
    if (check_dims(name, "JPEG", (long)cinfo.image_width,
                   (long)cinfo.image_height, err)) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }

    int cmyk = 0, adobe_inverted = 0;
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
        /* Expanded to RGB below: plain IJG libjpeg cannot do gray → RGB. */
        cinfo.out_color_space = JCS_GRAYSCALE;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        cinfo.out_color_space = JCS_CMYK;
        cmyk = 1;
        /* Photoshop writes CMYK inverted and marks it with an Adobe APP14
         * segment; PIL then reads the samples inverted ("CMYK;I"). */
        adobe_inverted = cinfo.saw_Adobe_marker;
        break;
    default:
        cinfo.out_color_space = JCS_RGB;
        break;
    }
    /* What the budget leaves after our pixels and row is libjpeg's (0 would
     * mean no limit to it). */
    size_t mine = (size_t)cinfo.image_width * (size_t)cinfo.image_height * 3 + (size_t)cinfo.image_width * 4;
    size_t budget = ckd_image_max_bytes();
    cinfo.mem->max_memory_to_use = budget > mine + 1 ? (long)(budget - mine) : 1;
    jpeg_start_decompress(&cinfo);

    int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
    int nc = cinfo.output_components;
    if (nc != 1 && nc != 3 && nc != 4) {
        jpeg_destroy_decompress(&cinfo);
        return ckd_errorf(err, "%s: JPEG decodes to %d components, expected "
                          "1, 3 or 4", name, nc);
    }
    pixels = malloc((size_t)w * (size_t)h * 3);
    rowbuf = malloc((size_t)w * (size_t)nc);
    if (!pixels || !rowbuf) {
        free(pixels);
        free(rowbuf);
        jpeg_destroy_decompress(&cinfo);
        return ckd_errorf(err, "%s: out of memory for a %dx%d JPEG", name, w,
                          h);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t *dst = pixels + (size_t)cinfo.output_scanline * (size_t)w * 3;
        JSAMPROW row = nc == 3 ? dst : rowbuf;
        if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) {
            /* Only a suspending source returns no row; ours never does. */
            snprintf(ctx.msg, sizeof ctx.msg, "no data for row %u",
                     (unsigned)cinfo.output_scanline);
            longjmp(ctx.jb, 1);
        }
        if (nc == 1) {
            for (int x = 0; x < w; x++)
                dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = rowbuf[x];
        } else if (nc == 4 && cmyk) {
            for (int x = 0; x < w; x++) {
                unsigned v[4];
                for (int c = 0; c < 4; c++) {
                    v[c] = rowbuf[4 * x + c];
                    if (adobe_inverted)
                        v[c] = 255 - v[c];
                }
                for (int c = 0; c < 3; c++)
                    dst[3 * x + c] = cmyk_channel(v[c], v[3]);
            }
        } else if (nc == 4) {
            for (int x = 0; x < w; x++)
                memcpy(dst + 3 * x, rowbuf + 4 * x, 3);
        }
    }
    /* No jpeg_finish_decompress: it only reads up to EOI, and a file whose
     * pixels are complete decodes (as in PIL) even if its tail is missing. */
    jpeg_destroy_decompress(&cinfo);
    free(rowbuf);
    out->w = w;
    out->h = h;
    out->rgb = pixels;
    return 0;
}

/* ---- entry points -------------------------------------------------------- */

static const uint8_t PNG_SIG[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

int ckd_image_decode(const void *buf, size_t len, const char *name_for_errors,
                     ckd_image *out, ckd_error *err)
{
    const char *name = display_name(name_for_errors);
    if (!out)
        return ckd_errorf(err, "%s: NULL output image", name);
    memset(out, 0, sizeof *out);
    if (!buf && len > 0)
        return ckd_errorf(err, "%s: NULL buffer", name);
    if (len == 0)
        return ckd_errorf(err, "%s: empty (0 bytes), expected a PNG or JPEG",
                          name);
    const uint8_t *p = buf;
    if (len >= sizeof PNG_SIG && memcmp(p, PNG_SIG, sizeof PNG_SIG) == 0)
        return decode_png(p, len, name, out, err);
    if (len >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
        return decode_jpeg(p, len, name, out, err);

    char hex[3 * 8 + 1] = "";
    size_t n = len < 8 ? len : 8, at = 0;
    for (size_t i = 0; i < n; i++)
        at += (size_t)snprintf(hex + at, sizeof hex - at, "%s%02x",
                               i ? " " : "", p[i]);
    return ckd_errorf(err,
                      "%s: not a PNG or JPEG: %zu bytes starting with %s, "
                      "expected 89 50 4e 47 0d 0a 1a 0a (PNG) or ff d8 ff "
                      "(JPEG)",
                      name, len, hex);
}

int ckd_image_load(const char *path, ckd_image *out, ckd_error *err)
{
    if (!path)
        return ckd_errorf(err, "ckd_image_load: NULL path");
    if (!out)
        return ckd_errorf(err, "%s: NULL output image", path);
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f)
        return ckd_errorf(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        int e = errno;
        fclose(f);
        return ckd_errorf(err, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        fclose(f);
        return ckd_errorf(err, "%s: not a regular file", path);
    }
    if ((unsigned long long)st.st_size > MAX_FILE_BYTES) {
        fclose(f);
        return ckd_errorf(err, "%s: %lld bytes, larger than the %zu-byte "
                          "limit for an image file", path,
                          (long long)st.st_size, MAX_FILE_BYTES);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *data = malloc(size ? size : 1);
    if (!data) {
        fclose(f);
        return ckd_errorf(err, "%s: out of memory reading %zu bytes", path,
                          size);
    }
    size_t got = fread(data, 1, size, f);
    int rerr = ferror(f);
    fclose(f);
    if (got != size || rerr) {
        free(data);
        return ckd_errorf(err, "%s: read %zu of %zu bytes", path, got, size);
    }
    int rc = ckd_image_decode(data, size, path, out, err);
    free(data);
    return rc;
}
