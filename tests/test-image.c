/* Tests for clipkd/image.h: Pillow-exact resizing and the CLIP
 * preprocessing pipeline against HF CLIPImageProcessor's output. Decoding is
 * tested in test-image-decode.c (same program). */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "clipkd/image.h"
#include "image-test.h"

/* ---- helpers ------------------------------------------------------------- */

char *ckdt_source_path(const char *dir, const char *rel)
{
    const char *src = getenv("CKD_TEST_SRCDIR");
    cr_assert(src, "CKD_TEST_SRCDIR is not set");
    size_t n = strlen(src) + strlen(dir) + strlen(rel) + 8;
    char *p = malloc(n);
    cr_assert(p);
    snprintf(p, n, "%s/%s/%s", src, dir, rel);
    return p;
}

char *ckdt_fixture_path(const char *rel)
{
    return ckdt_source_path("tests/fixtures", rel);
}

uint8_t *ckdt_read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s: %s", path, strerror(errno));
    cr_assert(fseek(f, 0, SEEK_END) == 0);
    long n = ftell(f);
    cr_assert(n >= 0);
    rewind(f);
    uint8_t *b = malloc((size_t)n + 1);
    cr_assert(b);
    cr_assert(fread(b, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

uint8_t *ckdt_gradient(int w, int h)
{
    uint8_t *p = malloc((size_t)w * (size_t)h * 3);
    cr_assert(p);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + ((size_t)y * (size_t)w + (size_t)x) * 3;
            q[0] = (uint8_t)(x * 255 / (w - 1));
            q[1] = (uint8_t)(y * 255 / (h - 1));
            q[2] = (uint8_t)((x + y) * 255 / (w + h - 2));
        }
    return p;
}

/* Minimal safetensors reader for the reference (the library's own module is
 * developed separately; the test must not depend on it): 8-byte LE header
 * length, JSON header, then the data buffer. Returns a malloc'd copy of an
 * F32 tensor of the given element count. */
static float *safetensors_f32(const char *path, const char *name,
                              size_t expect_elems, json_t **meta_out)
{
    size_t len;
    uint8_t *b = ckdt_read_all(path, &len);
    cr_assert(len >= 8, "%s: too short for a safetensors header", path);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
        hl = (hl << 8) | b[i];
    cr_assert(hl <= len - 8, "%s: header length %llu past the end", path,
              (unsigned long long)hl);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)b + 8, (size_t)hl, 0, &jerr);
    cr_assert(root, "%s: bad JSON header: %s", path, jerr.text);
    json_t *t = json_object_get(root, name);
    cr_assert(t, "%s: no tensor %s", path, name);
    cr_assert_str_eq(json_string_value(json_object_get(t, "dtype")), "F32");
    json_t *shape = json_object_get(t, "shape");
    size_t elems = 1;
    for (size_t i = 0; i < json_array_size(shape); i++)
        elems *= (size_t)json_integer_value(json_array_get(shape, i));
    cr_assert_eq(elems, expect_elems, "%s: %s has %zu elements", path, name,
                 elems);
    json_t *offs = json_object_get(t, "data_offsets");
    size_t o0 = (size_t)json_integer_value(json_array_get(offs, 0));
    size_t o1 = (size_t)json_integer_value(json_array_get(offs, 1));
    cr_assert(o1 >= o0 && o1 - o0 == elems * 4 && o1 <= len - 8 - hl,
              "%s: %s has bad data_offsets", path, name);
    float *out = malloc(elems * sizeof *out);
    cr_assert(out);
    const uint8_t *d = b + 8 + hl + o0;
    for (size_t i = 0; i < elems; i++) {
        uint32_t u = (uint32_t)d[4 * i] | (uint32_t)d[4 * i + 1] << 8 |
                     (uint32_t)d[4 * i + 2] << 16 |
                     (uint32_t)d[4 * i + 3] << 24;
        memcpy(&out[i], &u, 4);
    }
    if (meta_out)
        *meta_out = json_incref(json_object_get(root, "__metadata__"));
    json_decref(root);
    free(b);
    return out;
}

/* ---- golden reference ---------------------------------------------------- */

Test(image, clip_preprocess_matches_hf_reference)
{
    static const struct {
        const char *file;
        int w, h;
    } imgs[] = {{"img0_40x50.png", 40, 50},
                {"img1_64x32.png", 64, 32},
                {"img2_32x32.png", 32, 32},
                {"img3_17x23.png", 17, 23},
                {"img4_100x75.png", 100, 75}};
    char *ref_path =
        ckdt_fixture_path("preprocess/preprocess_reference.safetensors");
    ckd_preprocess p;
    ckd_preprocess_clip_default(&p, 32);
    const size_t n = 3 * 32 * 32;
    float out[3 * 32 * 32];
    size_t total = 0, off = 0;
    double worst = 0;
    const char *worst_img = "";
    json_t *meta = NULL;
    for (size_t i = 0; i < sizeof imgs / sizeof imgs[0]; i++) {
        char rel[64], tname[8];
        snprintf(rel, sizeof rel, "preprocess/%s", imgs[i].file);
        snprintf(tname, sizeof tname, "img%zu", i);
        char *path = ckdt_fixture_path(rel);
        ckd_image img;
        ckd_error err = {""};
        cr_assert_eq(ckd_image_load(path, &img, &err), 0, "%s", err.msg);
        cr_assert_eq(img.w, imgs[i].w);
        cr_assert_eq(img.h, imgs[i].h);
        float *ref = safetensors_f32(ref_path, tname, n, i ? NULL : &meta);
        if (i == 0) {
            json_t *se = json_object_get(meta, "shortest_edge");
            cr_assert_str_eq(json_string_value(se), "32");
            cr_assert_str_eq(json_string_value(json_object_get(meta, "crop")),
                             "32");
            json_decref(meta);
        }
        cr_assert_eq(ckd_preprocess_image(&p, &img, out, &err), 0, "%s",
                     err.msg);
        size_t img_off = 0;
        double img_worst = 0;
        for (size_t k = 0; k < n; k++) {
            double d = fabs((double)out[k] - (double)ref[k]);
            if (d > 1e-5) {
                img_off++;
                /* Anything beyond one 8-bit level (1/255/std ≤ 0.0143) is a
                 * real resampling or cropping error. */
                cr_assert(d <= 0.0144,
                          "%s value %zu (channel %zu, y %zu, x %zu): got %.6f, "
                          "reference %.6f",
                          imgs[i].file, k, k / 1024, k / 32 % 32, k % 32,
                          (double)out[k], (double)ref[k]);
            }
            if (d > img_worst)
                img_worst = d;
        }
        printf("%s: %zu of %zu values off by more than 1e-5, worst %.3g\n",
               imgs[i].file, img_off, n, img_worst);
        if (img_worst > worst) {
            worst = img_worst;
            worst_img = imgs[i].file;
        }
        off += img_off;
        total += n;
        free(ref);
        free(path);
        ckd_image_free(&img);
    }
    printf("preprocess vs HF reference: %zu of %zu values off by more than "
           "1e-5 (limit %zu), worst difference %.6g (%s)\n",
           off, total, total / 100, worst, worst_img);
    cr_assert(off * 100 <= total,
              "%zu of %zu values differ by more than 1e-5 (more than 1%%)",
              off, total);
    free(ref_path);
}

Test(image, shortest_edge_size_like_transformers)
{
    int w, h;
    cr_assert_eq(ckd_image_shortest_edge_size(17, 23, 32, &w, &h, NULL), 0);
    cr_assert(w == 32 && h == 43); /* int(32 * 23 / 17) = int(43.29) */
    cr_assert_eq(ckd_image_shortest_edge_size(100, 75, 32, &w, &h, NULL), 0);
    cr_assert(w == 42 && h == 32); /* int(42.67) */
    cr_assert_eq(ckd_image_shortest_edge_size(640, 480, 224, &w, &h, NULL), 0);
    cr_assert(w == 298 && h == 224);
    cr_assert_eq(ckd_image_shortest_edge_size(50, 50, 224, &w, &h, NULL), 0);
    cr_assert(w == 224 && h == 224);
    ckd_error err;
    cr_assert_eq(ckd_image_shortest_edge_size(0, 5, 32, &w, &h, &err), -1);
    cr_assert(strstr(err.msg, "0x5"), "%s", err.msg);
    cr_assert_eq(ckd_image_shortest_edge_size(1, 60000, 32, &w, &h, &err), -1);
}

/* ---- resize -------------------------------------------------------------- */

Test(image, resize_same_size_is_copy_and_constant_is_preserved)
{
    uint8_t *g = ckdt_gradient(23, 17);
    ckd_image in = {23, 17, g}, out;
    ckd_error err;
    cr_assert_eq(ckd_image_resize_bicubic(&in, 23, 17, &out, &err), 0);
    cr_assert_eq(memcmp(out.rgb, g, 23 * 17 * 3), 0);
    ckd_image_free(&out);
    free(g);

    /* Normalised kernels must reproduce a flat image exactly, whether
     * shrinking (antialiased) or enlarging, in either or both axes. */
    uint8_t flat[40 * 30 * 3];
    memset(flat, 200, sizeof flat);
    ckd_image f = {40, 30, flat};
    const int sizes[][2] = {{13, 7}, {97, 61}, {40, 11}, {5, 30}, {1, 1}};
    for (size_t i = 0; i < 5; i++) {
        cr_assert_eq(ckd_image_resize_bicubic(&f, sizes[i][0], sizes[i][1],
                                              &out, &err), 0, "%s", err.msg);
        cr_assert(out.w == sizes[i][0] && out.h == sizes[i][1]);
        for (int k = 0; k < out.w * out.h * 3; k++)
            cr_assert_eq(out.rgb[k], 200, "size %dx%d sample %d", out.w,
                         out.h, k);
        ckd_image_free(&out);
    }
    cr_assert_eq(ckd_image_resize_bicubic(&f, 0, 5, &out, &err), -1);
    cr_assert(strstr(err.msg, "0x5"), "%s", err.msg);
    cr_assert_null(out.rgb);
}

/* Pillow's own output: Debian's Pillow 9.4.0,
 * Image.frombytes("RGB", (7, 5), PIL_IN_7x5).resize(size, Image.BICUBIC)
 * (the input is random bytes, so every tap and the clamping matter). */
static const uint8_t PIL_IN_7x5[105] = {
    231, 238, 231, 97, 94, 243, 95, 48, 228, 155, 72, 46, 21, 202, 231, 80, 7,
    32, 30, 18, 97, 123, 15, 237, 167, 225, 100, 119, 150, 255, 2, 43, 234,
    142, 208, 42, 130, 161, 117, 147, 15, 35, 55, 205, 55, 148, 197, 34, 8, 0,
    109, 107, 26, 240, 192, 203, 214, 37, 101, 138, 172, 44, 159, 170, 7, 209,
    60, 68, 126, 51, 5, 30, 238, 249, 90, 96, 229, 97, 67, 214, 196, 59, 202,
    215, 108, 0, 138, 155, 10, 107, 95, 201, 51, 21, 74, 109, 226, 132, 4,
    168, 151, 197, 37, 38, 46,
};
static const uint8_t PIL_OUT_3x2[18] = {
    129, 138, 173, 91, 107, 172, 102, 94, 100, 102, 62, 106, 119, 136, 101,
    107, 154, 152,
};
static const uint8_t PIL_OUT_10x8[240] = {
    248, 255, 229, 161, 166, 244, 80, 63, 254, 92, 41, 232, 155, 52, 77, 121,
    125, 94, 11, 198, 243, 63, 39, 70, 54, 0, 48, 18, 20, 106, 196, 140, 245,
    158, 147, 211, 118, 138, 200, 111, 98, 248, 97, 60, 157, 79, 110, 123, 67,
    204, 146, 98, 105, 82, 93, 37, 60, 73, 12, 66, 114, 3, 238, 148, 134, 147,
    164, 229, 116, 120, 152, 246, 25, 60, 255, 40, 88, 174, 150, 211, 41, 134,
    187, 106, 137, 91, 87, 153, 7, 33, 55, 156, 96, 124, 202, 58, 143, 188,
    58, 39, 50, 150, 41, 5, 234, 110, 75, 237, 188, 205, 166, 83, 143, 137,
    108, 67, 123, 184, 19, 118, 81, 165, 88, 110, 174, 68, 96, 123, 54, 10, 0,
    73, 106, 44, 162, 176, 139, 209, 161, 213, 197, 54, 152, 161, 77, 108,
    168, 150, 93, 191, 174, 11, 210, 111, 52, 167, 46, 58, 97, 44, 0, 33, 189,
    166, 71, 209, 254, 99, 92, 230, 107, 66, 215, 174, 61, 205, 211, 64, 200,
    219, 140, 0, 177, 127, 9, 150, 104, 48, 97, 80, 120, 39, 97, 147, 78, 135,
    159, 73, 170, 172, 38, 145, 184, 171, 85, 149, 171, 35, 106, 110, 100, 0,
    135, 139, 0, 122, 155, 52, 91, 102, 212, 52, 15, 113, 98, 74, 70, 70, 239,
    127, 0, 203, 152, 165, 106, 91, 134, 27, 19, 24,
};
static const uint8_t PIL_OUT_4x9[108] = {
    171, 178, 250, 113, 50, 174, 70, 131, 138, 40, 10, 74, 165, 154, 230, 106,
    81, 194, 77, 139, 126, 76, 36, 68, 152, 115, 186, 94, 133, 224, 91, 153,
    110, 139, 81, 62, 122, 158, 105, 75, 95, 193, 115, 142, 161, 141, 79, 97,
    94, 202, 40, 62, 35, 135, 138, 136, 215, 113, 75, 148, 101, 108, 110, 87,
    55, 84, 139, 203, 164, 76, 157, 193, 116, 17, 172, 106, 92, 55, 140, 236,
    103, 58, 203, 203, 128, 6, 140, 88, 120, 67, 154, 159, 79, 88, 127, 141,
    135, 5, 118, 77, 135, 76, 162, 113, 69, 107, 82, 104,
};

Test(image, resize_bit_exact_with_pillow)
{
    static const struct {
        int w, h;
        const uint8_t *want;
    } cases[] = {{3, 2, PIL_OUT_3x2}, {10, 8, PIL_OUT_10x8},
                 {4, 9, PIL_OUT_4x9}};
    ckd_image in = {7, 5, (uint8_t *)PIL_IN_7x5}, out;
    for (size_t c = 0; c < 3; c++) {
        cr_assert_eq(ckd_image_resize_bicubic(&in, cases[c].w, cases[c].h,
                                              &out, NULL), 0);
        for (int i = 0; i < cases[c].w * cases[c].h * 3; i++)
            cr_assert_eq(out.rgb[i], cases[c].want[i],
                         "7x5 -> %dx%d sample %d: %d, Pillow %d", cases[c].w,
                         cases[c].h, i, out.rgb[i], cases[c].want[i]);
        ckd_image_free(&out);
    }
}

Test(image, crop_bounds)
{
    uint8_t *g = ckdt_gradient(10, 8);
    ckd_image in = {10, 8, g}, out;
    ckd_error err;
    cr_assert_eq(ckd_image_crop(&in, 3, 2, 4, 5, &out, &err), 0);
    cr_assert_eq(out.rgb[0], g[(2 * 10 + 3) * 3]);
    cr_assert_eq(out.rgb[(4 * 4 + 3) * 3 + 1], g[(6 * 10 + 6) * 3 + 1]);
    ckd_image_free(&out);
    cr_assert_eq(ckd_image_crop(&in, 7, 0, 4, 1, &out, &err), -1);
    cr_assert(strstr(err.msg, "10x8"), "%s", err.msg);
    cr_assert_eq(ckd_image_crop(&in, -1, 0, 1, 1, &out, &err), -1);
    free(g);
}

/* ---- preprocessing details ----------------------------------------------- */

Test(image, preprocess_pads_small_images_with_zeros)
{
    /* shortest_edge 8 on an 8x8 image (no resize) and a 12x10 crop: HF pads
     * with zeros, so the border reads (0 - mean) / std. */
    uint8_t px[8 * 8];
    memset(px, 255, sizeof px);
    ckd_image img;
    cr_assert_eq(ckd_image_from_gray(px, 8, 8, &img, NULL), 0);
    ckd_preprocess p;
    ckd_preprocess_clip_default(&p, 8);
    p.crop_w = 12;
    p.crop_h = 10;
    float out[3 * 10 * 12];
    ckd_error err;
    cr_assert_eq(ckd_preprocess_image(&p, &img, out, &err), 0, "%s", err.msg);
    for (int c = 0; c < 3; c++) {
        float zero = (0.0f - p.mean[c]) / p.std[c];
        float one = (1.0f - p.mean[c]) / p.std[c];
        const float *pl = out + c * 120;
        /* pad = ceil((10 - 8) / 2) = 1 row on top, ceil(4 / 2) = 2 cols. */
        cr_assert_float_eq(pl[0 * 12 + 5], zero, 1e-6);
        cr_assert_float_eq(pl[1 * 12 + 1], zero, 1e-6);
        cr_assert_float_eq(pl[1 * 12 + 2], one, 1e-6);
        cr_assert_float_eq(pl[8 * 12 + 9], one, 1e-6);
        cr_assert_float_eq(pl[9 * 12 + 9], zero, 1e-6);
        cr_assert_float_eq(pl[8 * 12 + 10], zero, 1e-6);
    }
    ckd_image_free(&img);

    p.std[1] = 0.0f;
    cr_assert_eq(ckd_preprocess_image(&p, &img, out, &err), -1);
    cr_assert(strstr(err.msg, "std"), "%s", err.msg);
}

Test(image, gray_to_rgb_and_normalize)
{
    uint8_t g[6] = {0, 51, 102, 153, 204, 255};
    ckd_image img;
    cr_assert_eq(ckd_image_from_gray(g, 3, 2, &img, NULL), 0);
    for (int i = 0; i < 6; i++)
        for (int c = 0; c < 3; c++)
            cr_assert_eq(img.rgb[3 * i + c], g[i]);
    ckd_preprocess p;
    ckd_preprocess_clip_default(&p, 28);
    float out[18];
    cr_assert_eq(ckd_preprocess_normalize(&p, &img, out, NULL), 0);
    cr_assert_float_eq(out[6 + 5], (1.0f - 0.4578275f) / 0.26130258f, 1e-6);
    cr_assert_float_eq(out[12 + 1], (0.2f - 0.40821073f) / 0.27577711f, 1e-6);
    ckd_image_free(&img);
    ckd_error err;
    cr_assert_eq(ckd_image_from_gray(g, 0, 2, &img, &err), -1);
}

/* ---- random resized crop ------------------------------------------------- */

Test(image, random_resized_crop_is_deterministic_and_in_range)
{
    uint8_t *g = ckdt_gradient(80, 60);
    ckd_image in = {80, 60, g}, a, b;
    ckd_error err = {""};
    uint64_t s1 = 42, s2 = 42;
    cr_assert_eq(ckd_image_random_resized_crop(&in, 0.08f, 1.0f, 0.75f,
                                               4.0f / 3.0f, &s1, 32, 24, &a,
                                               &err), 0, "%s", err.msg);
    cr_assert_eq(ckd_image_random_resized_crop(&in, 0.08f, 1.0f, 0.75f,
                                               4.0f / 3.0f, &s2, 32, 24, &b,
                                               &err), 0);
    cr_assert(a.w == 32 && a.h == 24);
    cr_assert_eq(s1, s2);
    cr_assert_neq(s1, 42, "the state was not advanced");
    cr_assert_eq(memcmp(a.rgb, b.rgb, 32 * 24 * 3), 0);
    ckd_image_free(&b);

    /* The next draw from the advanced state gives a different crop. */
    int differ = 0;
    for (int i = 0; i < 4 && !differ; i++) {
        cr_assert_eq(ckd_image_random_resized_crop(&in, 0.08f, 1.0f, 0.75f,
                                                   4.0f / 3.0f, &s1, 32, 24,
                                                   &b, &err), 0);
        differ = memcmp(a.rgb, b.rgb, 32 * 24 * 3) != 0;
        ckd_image_free(&b);
    }
    cr_assert(differ);
    ckd_image_free(&a);

    /* Many seeds, odd sizes: every crop must lie inside (ASan checks the
     * reads) and succeed. */
    for (uint64_t seed = 0; seed < 300; seed++) {
        uint64_t s = seed;
        cr_assert_eq(ckd_image_random_resized_crop(&in, 0.01f, 1.0f, 0.2f,
                                                   5.0f, &s, 7, 9, &a, &err),
                     0, "seed %llu: %s", (unsigned long long)seed, err.msg);
        ckd_image_free(&a);
    }

    /* scale [1, 1] at the image's own ratio: the crop is the whole image. */
    ckd_image whole;
    cr_assert_eq(ckd_image_resize_bicubic(&in, 20, 15, &whole, NULL), 0);
    uint64_t s = 7;
    cr_assert_eq(ckd_image_random_resized_crop(&in, 1.0f, 1.0f, 80.0f / 60,
                                               80.0f / 60, &s, 20, 15, &a,
                                               &err), 0);
    cr_assert_eq(memcmp(a.rgb, whole.rgb, 20 * 15 * 3), 0);
    ckd_image_free(&a);
    ckd_image_free(&whole);

    /* An unreachable ratio falls back to torchvision's center crop:
     * ratio ≥ 10 on a 4:3 image → full width, height round(80 / 10) = 8,
     * top (60 - 8) // 2 = 26. */
    ckd_image crop, want;
    cr_assert_eq(ckd_image_crop(&in, 0, 26, 80, 8, &crop, NULL), 0);
    cr_assert_eq(ckd_image_resize_bicubic(&crop, 16, 16, &want, NULL), 0);
    s = 99;
    cr_assert_eq(ckd_image_random_resized_crop(&in, 0.5f, 1.0f, 10.0f, 20.0f,
                                               &s, 16, 16, &a, &err), 0);
    cr_assert_eq(memcmp(a.rgb, want.rgb, 16 * 16 * 3), 0);
    ckd_image_free(&a);
    ckd_image_free(&want);
    ckd_image_free(&crop);

    cr_assert_eq(ckd_image_random_resized_crop(&in, 0.5f, 0.1f, 0.75f, 1.3f,
                                               &s, 16, 16, &a, &err), -1);
    cr_assert(strstr(err.msg, "scale"), "%s", err.msg);
    cr_assert_eq(ckd_image_random_resized_crop(&in, 0.1f, 0.5f, 0.0f, 1.3f,
                                               &s, 16, 16, &a, &err), -1);
    cr_assert(strstr(err.msg, "ratio"), "%s", err.msg);
    cr_assert_eq(ckd_image_random_resized_crop(&in, 0.1f, 0.5f, 0.5f, 1.3f,
                                               NULL, 16, 16, &a, &err), -1);
    free(g);
}
