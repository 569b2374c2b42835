/* clipkd/image.h — decoding PNG/JPEG to 8-bit RGB, Pillow-exact bicubic
 * resizing, and the CLIP preprocessing pipeline.
 *
 * Every image in clipkd is 8-bit interleaved RGB because that is what the
 * reference pipelines (PIL's convert("RGB") followed by HF's
 * CLIPImageProcessor or torchvision) operate on; matching them bit for bit
 * is only possible if the resampler sees the same 8-bit samples.
 */
#ifndef CLIPKD_IMAGE_H
#define CLIPKD_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "clipkd/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Limits on decoded and resampled images. Larger inputs are refused with an
 * error rather than attempted: they are almost always corrupt headers or
 * decompression bombs. The pixel limit is PIL's MAX_IMAGE_PIXELS (about
 * 89.5 million, 256 MiB of RGB; a progressive JPEG needs several times that
 * while it decodes), so clipkd refuses what PIL warns about. */
#define CKD_IMAGE_MAX_SIDE 65535
#define CKD_IMAGE_MAX_PIXELS 89478485L
/* The longest PNG chunk other than IDAT that is read (libpng allocates an
 * ancillary chunk's declared length up front: a 282-byte PNG declaring a
 * 2.1 GB tEXt chunk made it allocate and zero 2.1 GB). ICC profiles and
 * text stay far below it. */
#define CKD_PNG_MAX_CHUNK_BYTES ((size_t)8 << 20)
/* A progressive JPEG with more scans than this is refused (a handful is
 * normal; thousands of tiny scans make a small file decode for minutes).
 * TurboJPEG suggests the same limit. */
#define CKD_JPEG_MAX_SCANS 500

/* The memory budget of one image: its RGB pixels plus, for a JPEG,
 * libjpeg's working memory (a progressive JPEG keeps every DCT coefficient
 * of the image, about twice its pixels' bytes). An image that would need
 * more is refused before the memory is taken, with an error that names the
 * budget. The default, 256 MiB, is PIL's pixel limit in RGB: a baseline
 * JPEG or a PNG at that limit decodes, a progressive JPEG of more than about
 * 45 million pixels does not. CLIPKD_IMAGE_MAX_MB in the environment (read
 * once) or ckd_image_set_max_bytes (0: the default again) change it; it
 * applies per image, so a loader with T threads may hold T budgets. */
#define CKD_IMAGE_DEFAULT_MAX_BYTES ((size_t)256 << 20)
size_t ckd_image_max_bytes(void);
void ckd_image_set_max_bytes(size_t bytes);

/* An owned, interleaved RGB image: pixel (x, y) channel c is at
 * rgb[(y * w + x) * 3 + c]. A zeroed ckd_image is a valid empty image. */
typedef struct ckd_image {
    int w, h;
    uint8_t *rgb;
} ckd_image;

/* Allocates an uninitialised w x h image. Returns 0, or -1 with a message if
 * the size is invalid or memory runs out. */
int ckd_image_alloc(ckd_image *img, int w, int h, ckd_error *err);

/* Releases the pixels and zeroes the struct; safe on a zeroed image and on
 * NULL. */
void ckd_image_free(ckd_image *img);

/* Builds an RGB image from w x h 8-bit gray samples (row stride w), copying
 * each sample to R, G and B like PIL's convert("RGB") of an "L" image. */
int ckd_image_from_gray(const uint8_t *gray, int w, int h, ckd_image *out,
                        ckd_error *err);

/* Decodes a PNG or JPEG held in memory (the format is told from its first
 * bytes). `name_for_errors` names the source in messages (a path, a tar
 * member); NULL reads as "<memory>".
 *
 * PNG: 1/2/4/8/16-bit gray, gray+alpha, palette, RGB and RGBA. Alpha (and
 * palette transparency) is dropped, not composited, as PIL's convert("RGB")
 * does; no gamma or colour management. 16-bit samples keep their high byte,
 * which is what PIL does for 16-bit RGB(A); for 16-bit gray PIL instead
 * clamps the 16-bit value to 255 (an "I;16" quirk that whitens real
 * images), which is deliberately not reproduced.
 * JPEG: gray, YCbCr/RGB and CMYK/YCCK (converted like PIL, inverting Adobe
 * CMYK). A JPEG that ends early is an error (PIL refuses truncated files by
 * default); libjpeg's other corrupt-data warnings are tolerated as PIL does.
 *
 * On success *out owns new pixels; on failure *out is zeroed. */
int ckd_image_decode(const void *buf, size_t len, const char *name_for_errors,
                     ckd_image *out, ckd_error *err);

/* Reads the whole file at `path` and decodes it with ckd_image_decode. */
int ckd_image_load(const char *path, ckd_image *out, ckd_error *err);

/* Copies the w x h rectangle whose top-left corner is (x, y); the rectangle
 * must lie inside the image. */
int ckd_image_crop(const ckd_image *in, int x, int y, int w, int h,
                   ckd_image *out, ckd_error *err);

/* Resizes to w x h exactly as Pillow's Image.resize(..., BICUBIC) does for
 * 8-bit images (separable two-pass convolution, antialiased when shrinking,
 * 22-bit fixed-point coefficients, 8-bit intermediate). Same size is a
 * copy. `out` must not alias `in`. */
int ckd_image_resize_bicubic(const ckd_image *in, int w, int h, ckd_image *out,
                             ckd_error *err);

/* The output size of HF's shortest-edge resize (transformers'
 * get_resize_output_image_size with default_to_square=False): the short side
 * becomes `shortest_edge`, the long side int(shortest_edge * long / short). */
int ckd_image_shortest_edge_size(int w, int h, int shortest_edge, int *out_w,
                                 int *out_h, ckd_error *err);

/* CLIP preprocessing: resize shortest edge (bicubic) → center crop
 * crop_w x crop_h (zero-padded if the image is smaller) → x/255 →
 * (x - mean) / std, written as float32 CHW (3 * crop_h * crop_w values). */
typedef struct ckd_preprocess {
    int shortest_edge, crop_w, crop_h;
    float mean[3], std[3];
} ckd_preprocess;

/* OpenAI CLIP's mean and std, shortest_edge = crop = size. */
void ckd_preprocess_clip_default(ckd_preprocess *p, int size);

/* Runs the whole pipeline above on an RGB image. */
int ckd_preprocess_image(const ckd_preprocess *p, const ckd_image *img,
                         float *chw_out, ckd_error *err);

/* Only the last two steps (x/255, then (x - mean) / std) on an image that
 * already has the final size, e.g. the output of a random resized crop.
 * Writes 3 * img->h * img->w floats. */
int ckd_preprocess_normalize(const ckd_preprocess *p, const ckd_image *img,
                             float *chw_out, ckd_error *err);

/* Training augmentation following torchvision's RandomResizedCrop: up to ten
 * tries at an area fraction in [scale_lo, scale_hi] and a log-uniform aspect
 * ratio in [ratio_lo, ratio_hi], falling back to a center crop clamped to
 * the ratio range; the crop is then resized to out_w x out_h with
 * ckd_image_resize_bicubic. Random numbers come from splitmix64 on
 * *rng_state, which is advanced, so the same state gives the same crop. */
int ckd_image_random_resized_crop(const ckd_image *in, float scale_lo,
                                  float scale_hi, float ratio_lo,
                                  float ratio_hi, uint64_t *rng_state,
                                  int out_w, int out_h, ckd_image *out,
                                  ckd_error *err);

#ifdef __cplusplus
}
#endif
#endif
