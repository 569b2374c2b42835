/* clipkd/data.h — datasets: the readers behind a recipe's data.train and
 * data.eval, Fashion-MNIST (the default data), and the IDX format it comes in.
 *
 * A dataset is opened from a JSON spec, {"reader": "<name>", ...}, and then
 * answers three questions: how many samples it has, what sample i is (a
 * decoded image, its captions, its label), and, when it knows them, the class
 * names and zero-shot prompt templates. ckd_dataset_get() may be called from
 * any number of threads at once; the loader (clipkd/loader.h) does so.
 *
 * Readers and their keys (every reader also takes "limit": use only the first
 * N samples, 0 = all). A string of a spec that starts with "$NAME/" (or is
 * "$NAME") starts with the value of the environment variable NAME instead,
 * so that shared recipes can name data kept elsewhere
 * ("$CLIPKD_DATASETS/cc3m/train.csv"); opening fails, naming it, when NAME
 * is not set. A "path"-like key is a file name, relative to the
 * base_dir given to ckd_dataset_open (the recipe's directory) unless
 * absolute; where marked [artifact] it may instead be an artifact object
 * {"urls", "sha256", "size"} (clipkd/fetch.h), fetched into the cache.
 *
 *   fashion-mnist  "split": "train" | "test" (default "train");
 *                  "dir": read the four IDX files ({train,t10k}-{images-idx3,
 *                    labels-idx1}-ubyte, gzip'd or not) from this folder
 *                    instead of the built-in artifacts;
 *                  "captions": captions per image, 1..8 (default 5);
 *                  "caption_seed": integer (default 0);
 *                  "detail": probability in [0, 1] that a caption names each
 *                    measured attribute (default 1: all of them; below 1
 *                    some captions name the class alone, as zero-shot
 *                    prompts do);
 *                  "cue": probability in [0, 1] that an image carries a
 *                    spurious cue, a white 4x4 marker on the border at a
 *                    place only its class uses (classes 0-4 along the top,
 *                    5-9 along the bottom; default 0); the captions ignore
 *                    it; "cue_seed": integer (default 0) draws which.
 *   csv            "path" [artifact]: the table; "root": folder image paths
 *                    are relative to (default: the table's folder);
 *                  "separator": one character (default "\t", as CLIP-KD's
 *                    CC3M/CC12M files); "header": boolean (default true);
 *                  "image", "caption": column names (with a header) or
 *                    0-based indices (default "filepath", "title");
 *                  "label": optional column of integer class indices;
 *                  "quotes": honour "…" quoting with "" escapes (default true).
 *   webdataset     "shards": a pattern or an array of them, brace-expanded
 *                    ("shard-{0000..0099}.tar", "{a,b}.tar"); uncompressed
 *                    tar, or tar.gz/.bz2/.xz/.zst (read into memory at open);
 *                  "image": extensions tried in order (default
 *                    ["jpg", "jpeg", "png"]); "caption": extension (default
 *                    "txt"); "label": extension (default "cls");
 *                  "incomplete": "error" | "skip" — what to do with a sample
 *                    that lacks an image or a caption (default "error").
 *   imagefolder    "path": root with one folder per class (sorted by name;
 *                    images found recursively, sorted); "classnames": text
 *                    file, one name per line in folder order (default: the
 *                    folder names, "_" read as " "); "templates": text file,
 *                    one template with "{}" per line (default: CLIP's seven
 *                    ImageNet ensemble templates); "extensions" (default
 *                    ["jpg", "jpeg", "png"]). Captions: every template
 *                    applied to the class name.
 *   imagenet       ImageNet-1k val and the sets made after it, zero-shot
 *                    with CLIP's class names and OpenAI's 80 templates.
 *                    "path": the root; "layout": "folders" (default:
 *                    root/<wnid>/…/<image>, as ImageNet-1k val sorted into
 *                    synset folders, ImageNet-R, ImageNet-A), "flat"
 *                    (root/<image> with "ground_truth") or "v2"
 *                    (root/<0..999>/<image>, ImageNet-V2: the folder is the
 *                    class's index among the sorted wnids, read as a
 *                    number); "ground_truth" (flat only): the devkit's
 *                    ILSVRC2012_validation_ground_truth.txt (ILSVRC2012_IDs,
 *                    line k for ILSVRC2012_val_0000000k), a wnid per line in
 *                    image order, Kaggle's LOC_val_solution.csv, or Caffe's
 *                    val.txt ("FILE INDEX", 0-based sorted); told from the
 *                    first line, or named by "ground_truth_format": "auto"
 *                    (default), "devkit", "wnids", "kaggle", "caffe";
 *                  "classes": "1k" (default: the 1,000 sorted wnids),
 *                    "r200", "a200" (ImageNet-R's and -A's 200) or a file of
 *                    wnids, one a line, whose order gives the labels; every
 *                    class needs a folder (folders, v2) and every folder must
 *                    be a class; "classnames": one name per class, or 1,000
 *                    in sorted-wnid order (default: CLIP's, shipped);
 *                    "templates": as imagefolder's (default: the shipped 80);
 *                    "extensions" (default ["jpg", "jpeg", "png"]). The
 *                    shipped files are in recipes/eval/imagenet/ under
 *                    $CLIPKD_DATA_DIR when it is set (in the sources it may
 *                    name models/clip: then two folders up), else under the
 *                    installed data directory.
 *   retrieval      "path" [artifact]: a Karpathy-split JSON, {"images": [{
 *                    "filename", "filepath"?, "split", "sentences": [{"raw"}]
 *                    }]} (COCO 5k, Flickr30k 1k); "root": image folder
 *                    (default: the JSON's folder; images are
 *                    root/filepath/filename); "split": "test" (default),
 *                    "val", "train", "restval" or "all"; "max_captions":
 *                    keep the first N sentences (default 0 = all);
 *                    "min_captions": an image with fewer sentences fails at
 *                    open (default 1); "expect_images": the split must have
 *                    exactly N images (default 0: any). The standard
 *                    protocol, 5 captions per image: "max_captions": 5,
 *                    "min_captions": 5, "expect_images": 5000 (COCO) or
 *                    1000 (Flickr30k).
 *   concat         "parts": an array of data specs read one after the other
 *                    as one dataset (CLIP-KD's CC3M + CC12M: two csv specs);
 *                    class names and templates come from the first part
 *                    that has them.
 *   tensors        "path" [artifact]: a safetensors file with pixel_values
 *                    [N,3,H,W] F32 (already preprocessed), input_ids [N,T]
 *                    I32/I64 and optionally labels [N] (integer types).
 */
#ifndef CLIPKD_DATA_H
#define CLIPKD_DATA_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "clipkd/error.h"
#include "clipkd/fetch.h"
#include "clipkd/image.h"
#include "clipkd/schema.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- samples ----------------------------------------------------------------- */

/* One sample, owned by the caller after ckd_dataset_get. Either `image` holds
 * the decoded picture, or (tensors reader) `pixels` holds it ready-made. */
typedef struct ckd_sample {
    ckd_image image;        /* decoded RGB; empty when pixels is set */
    char **captions;        /* n_captions NUL-terminated, valid UTF-8 strings */
    size_t n_captions;
    int32_t label;          /* class index, or -1 when unknown */
    float *pixels;          /* [3][pixel_h][pixel_w], normalised; or NULL */
    int pixel_h, pixel_w;
    int32_t *input_ids;     /* n_ids ready-made token ids; or NULL */
    int n_ids;
} ckd_sample;

/* Frees what a sample owns and zeroes it; safe on a zeroed sample. */
void ckd_sample_free(ckd_sample *s);

/* ---- datasets ---------------------------------------------------------------- */

typedef struct ckd_dataset ckd_dataset;

/* Opens the dataset a spec describes. The spec is validated first (the
 * reader's schema, with did-you-mean for unknown keys; see
 * ckd_dataset_check_spec) on a copy, so the caller's JSON is not modified.
 * Relative paths are resolved against base_dir (NULL or "": the current
 * directory). Artifacts are fetched with default options (clipkd/fetch.h).
 * Every reader checks its whole index at open — counts, columns, members,
 * UTF-8 of captions, labels — so that bad input fails here, naming the file
 * and the place (line, member and offset, JSON path); only image bytes are
 * left to ckd_dataset_get. */
ckd_dataset *ckd_dataset_open(const json_t *spec, const char *base_dir, ckd_error *err);

/* The same with explicit fetch options (offline mode, cache directory). */
ckd_dataset *ckd_dataset_open_fetch(const json_t *spec, const char *base_dir,
                                    const ckd_fetch_opts *fetch, ckd_error *err);

/* NULL is allowed. */
void ckd_dataset_close(ckd_dataset *ds);

/* The reader's name ("csv", …) and a short description of the source (the
 * file or pattern it was opened from), for logs and messages. */
const char *ckd_dataset_reader(const ckd_dataset *ds);
const char *ckd_dataset_source(const ckd_dataset *ds);

size_t ckd_dataset_size(const ckd_dataset *ds);

/* Reads and decodes sample i (< size) into *out (zeroed first; freed again on
 * failure). Thread-safe. Fails — with the file, the row or member, and the
 * reason — when the image cannot be read or decoded. */
int ckd_dataset_get(const ckd_dataset *ds, size_t i, ckd_sample *out, ckd_error *err);

/* Class names (0 when the dataset has none) and zero-shot templates (strings
 * with one "{}" where the class name goes; 0 when none are known). */
size_t ckd_dataset_n_classes(const ckd_dataset *ds);
const char *ckd_dataset_class_name(const ckd_dataset *ds, size_t c);
size_t ckd_dataset_n_templates(const ckd_dataset *ds);
const char *ckd_dataset_template(const ckd_dataset *ds, size_t t);

/* ---- specs ------------------------------------------------------------------- */

/* The readers' names, in a fixed order; *n receives their number. */
const char *const *ckd_dataset_readers(size_t *n);

/* A reader's schema as JSON text (clipkd/schema.h subset), or NULL for an
 * unknown reader. */
const char *ckd_dataset_schema_text(const char *reader);

/* Checks a spec in place and fills in defaults: "reader" must name a reader
 * (an unknown one gets a did-you-mean and the list), the rest must match that
 * reader's schema, plus the rules a schema cannot say (e.g. a csv without a
 * header needs column indices). Messages are placed like the recipe
 * loader's: file and locate (both may be NULL) and json_path, the path of
 * `spec` itself (e.g. "data.train"). */
int ckd_dataset_check_spec(json_t *spec, const char *file, const char *json_path,
                           ckd_json_locate_fn locate, void *locate_user, ckd_error *err);

/* ---- shipped data ------------------------------------------------------------ */

/* The path of a file the package ships in its data directory, e.g.
 * "recipes/eval/imagenet/wnids.txt" or "recipes/tables/clip-kd-ablation.json":
 * under $CLIPKD_DATA_DIR when it is set — in the sources it names models/clip
 * (the vocabulary), two folders below the top, and the path is taken from
 * the top — else under the installed data directory. */
int ckd_shipped_path(const char *rel, char *out, size_t cap, ckd_error *err);

/* ---- brace expansion (shard lists) ------------------------------------------- */

/* Expands every {a..b} (integers; zero-padded to the width of a when a is
 * written with leading zeros) and {x,y,z} group, left to right, as the shell
 * and WebDataset do: "s-{00..02}.tar" gives s-00.tar, s-01.tar, s-02.tar.
 * Groups may follow each other (cartesian product) but not nest. *out gets a
 * malloc'd array of *n malloc'd strings; release it with
 * ckd_strings_free. At most 1,000,000 results. */
int ckd_brace_expand(const char *pattern, char ***out, size_t *n, ckd_error *err);
void ckd_strings_free(char **s, size_t n);

/* ---- IDX files (MNIST's format) ---------------------------------------------- */

/* An IDX file of unsigned bytes: magic 0x000008NN (NN = number of dimensions),
 * big-endian 32-bit dimensions, then the data. */
typedef struct ckd_idx {
    int ndim;
    uint32_t dims[4];
    uint8_t *data;          /* dims[0] * … * dims[ndim-1] bytes */
    size_t nbytes;
} ckd_idx;

/* Loads an IDX file, gzip'd or plain (told from its first bytes), whose magic
 * must be 0x00000800 + ndim (0x00000803 for images, 0x00000801 for labels).
 * The data must be exactly as long as the dimensions say. Errors name the
 * file and the byte offset (counted in the decompressed stream). */
int ckd_idx_load(const char *path, int ndim, ckd_idx *out, ckd_error *err);
void ckd_idx_free(ckd_idx *idx);

/* ---- Fashion-MNIST ----------------------------------------------------------- */

#define CKD_FMNIST_CLASSES 10
#define CKD_FMNIST_SIDE 28
/* The most captions per image (the caption templates). */
#define CKD_FMNIST_MAX_CAPTIONS 8

typedef enum ckd_fmnist_file {
    CKD_FMNIST_TRAIN_IMAGES,
    CKD_FMNIST_TRAIN_LABELS,
    CKD_FMNIST_TEST_IMAGES,
    CKD_FMNIST_TEST_LABELS
} ckd_fmnist_file;

/* The artifacts that hold one of the four files, in the order they are
 * tried. Two byte streams exist for each: Debian's dataset-fashion-mnist
 * package (file:///usr/share/datasets/fashion-mnist/…), whose .gz files were
 * recompressed without the original file name in the gzip header, and the
 * upstream .gz (the S3 host named in the dataset's README and its GitHub
 * repository). Their IDX content is the same, their SHA-256s differ, so they
 * are two artifacts, not two mirrors of one. *n receives the count. */
const ckd_artifact *ckd_fashion_mnist_artifacts(ckd_fmnist_file f, size_t *n);

/* Returns in path_out a verified local copy of one of the four files: the
 * first artifact already in the cache, else the first that ckd_fetch can
 * get. The message lists every artifact's failure. */
int ckd_fashion_mnist_fetch(ckd_fmnist_file f, const ckd_fetch_opts *opts, char *path_out,
                            size_t cap, ckd_error *err);

/* The class names as used in captions and prompts ("t-shirt", "trouser",
 * "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
 * "ankle boot"), and the zero-shot templates (*n receives their number). */
const char *const *ckd_fashion_mnist_classes(void);
const char *const *ckd_fashion_mnist_templates(size_t *n);

/* Attributes measured on a gray image (ink = pixels >= 32):
 *   brightness: mean value of the ink pixels;
 *   aspect: width / height of the bounding box of the ink;
 *   density: ink pixels / bounding-box area.
 * Each is binned in three by the training set's tertiles (see
 * CKD_FMNIST_*_T1/T2) and bins 0 and 2 give a word — dark / bright,
 * narrow / wide, sparse / dense — while the middle bin gives none. An image
 * without ink has all three in the middle bin. */
typedef struct ckd_gray_attrs {
    float brightness, aspect, density;
    int bin[3];             /* brightness, aspect, density: 0, 1 or 2 */
} ckd_gray_attrs;

/* Tertiles of the 60,000 training images, rounded to values no ratio of
 * small integers takes (aspect ratios are such ratios, with many ties):
 * 32-35 % of the images fall below T1 and as many at or above T2
 * (tests/test-data.c checks this on the installed files). */
#define CKD_FMNIST_BRIGHTNESS_T1 145.0f
#define CKD_FMNIST_BRIGHTNESS_T2 185.0f
#define CKD_FMNIST_ASPECT_T1 0.7175f
#define CKD_FMNIST_ASPECT_T2 1.078f
#define CKD_FMNIST_DENSITY_T1 0.635f
#define CKD_FMNIST_DENSITY_T2 0.778f

void ckd_gray_attributes(const uint8_t *gray, int w, int h, ckd_gray_attrs *out);

/* Caption k (0 <= k < CKD_FMNIST_MAX_CAPTIONS) of image `index` with class
 * `label`: a caption template — which one depends on (seed, index, k), the
 * k of one image being distinct — over the attribute words and the class,
 * e.g. "a photo of a dark, wide, dense pullover.". Writes at most cap bytes
 * (NUL included); returns the length or -1 if label is out of range. */
int ckd_fashion_mnist_caption(const ckd_gray_attrs *a, int label, uint64_t seed, uint64_t index,
                              int k, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
