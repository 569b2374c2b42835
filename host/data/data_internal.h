/* What the readers share: the reader interface, the dataset object they fill
 * in, and small helpers (paths, artifacts, UTF-8, text files, string lists,
 * seed mixing). Not installed. */
#ifndef CKD_DATA_INTERNAL_H
#define CKD_DATA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "clipkd/data.h"

/* Where a reader is opened from: the directory relative paths start at and
 * how artifacts are fetched. */
typedef struct ckdd_env {
    const char *base_dir;
    const ckd_fetch_opts *fetch;
} ckdd_env;

/* Places a message about a spec (or its member `key`, when not NULL) the way
 * ckd_schema_apply does, through ckd_json_errorf. */
typedef struct ckdd_where {
    const char *file;
    const char *path;       /* JSON path of the spec object */
    ckd_json_locate_fn locate;
    void *user;
} ckdd_where;

int ckdd_spec_errorf(const ckdd_where *w, const char *key, ckd_error *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* One reader. open() receives a spec already checked against `schema` (with
 * defaults filled in) and returns its state, or NULL with err set; it may set
 * the dataset's source, classes and templates with the helpers below.
 * get() must be safe to call from several threads at once. */
typedef struct ckdd_reader {
    const char *name;
    const char *schema;
    /* Rules the schema cannot express; NULL when there are none. */
    int (*check)(const json_t *spec, const ckdd_where *w, ckd_error *err);
    void *(*open)(ckd_dataset *ds, const json_t *spec, const ckdd_env *env, ckd_error *err);
    size_t (*size)(const void *state);
    int (*get)(const void *state, size_t i, ckd_sample *out, ckd_error *err);
    void (*close)(void *state);
} ckdd_reader;

extern const ckdd_reader ckdd_reader_fashion_mnist;
extern const ckdd_reader ckdd_reader_csv;
extern const ckdd_reader ckdd_reader_webdataset;
extern const ckdd_reader ckdd_reader_imagefolder;
extern const ckdd_reader ckdd_reader_retrieval;
extern const ckdd_reader ckdd_reader_tensors;
extern const ckdd_reader ckdd_reader_imagenet;
extern const ckdd_reader ckdd_reader_concat;

/* The key every reader's schema starts with, and the one every reader takes. */
#define CKDD_SCHEMA_COMMON                                                                  \
    "\"reader\": {\"type\": \"string\"},"                                                   \
    " \"limit\": {\"type\": \"integer\", \"minimum\": 0, \"default\": 0,"                  \
    "  \"description\": \"use only the first N samples (0: all)\"}"

/* A file name, or an artifact object that is fetched (see ckdd_resolve). */
#define CKDD_SCHEMA_PATH_OR_ARTIFACT                                                        \
    "{\"type\": [\"string\", \"object\"], \"required\": [\"urls\", \"sha256\", \"size\"],"  \
    " \"properties\": {"                                                                    \
    "  \"urls\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}},"                \
    "  \"sha256\": {\"type\": \"string\"},"                                                 \
    "  \"size\": {\"type\": \"integer\", \"minimum\": 0},"                                  \
    "  \"name\": {\"type\": \"string\"}, \"description\": {\"type\": \"string\"}}}"

/* Setters for open(): each copies its arguments. */
int ckdd_set_source(ckd_dataset *ds, const char *source, ckd_error *err);
int ckdd_set_classes(ckd_dataset *ds, const char *const *names, size_t n, ckd_error *err);
int ckdd_set_templates(ckd_dataset *ds, const char *const *t, size_t n, ckd_error *err);

/* dir + "/" + rel, or rel alone when it is absolute or dir is NULL/"". */
int ckdd_join(const char *dir, const char *rel, char *out, size_t cap, ckd_error *err);

/* The directory part of a path ("." when there is none), malloc'd. */
char *ckdd_dirname(const char *path);

/* The file a spec key names: a string joined to env->base_dir, or an
 * artifact object fetched into the cache. */
int ckdd_resolve(const ckdd_env *env, const json_t *spec, const char *key, char *out, size_t cap,
                 ckd_error *err);

/* For readers of a file that names images: the file spec key "path" names
 * (see ckdd_resolve), and the folder its image paths are relative to — spec
 * key "root" joined to env->base_dir, else the file's own folder. Both are
 * malloc'd; on failure both are NULL. */
int ckdd_resolve_file_and_root(const ckdd_env *env, const json_t *spec, char **file, char **root,
                               ckd_error *err);

/* 1 if s[0..n) is valid UTF-8 (no overlongs, surrogates or values past
 * U+10FFFF); else 0 and *bad = offset of the first bad byte. */
int ckdd_utf8_valid(const char *s, size_t n, size_t *bad);

/* Reads a whole file (NUL-terminated; *len excludes the NUL). */
int ckdd_read_text(const char *path, char **buf, size_t *len, ckd_error *err);

/* The non-empty lines of a text file (CR LF or LF; trailing blanks trimmed),
 * each checked to be UTF-8. */
int ckdd_read_lines(const char *path, char ***lines, size_t *n, ckd_error *err);

/* A growable list of owned strings. */
typedef struct ckdd_strvec {
    char **v;
    size_t n, cap;
} ckdd_strvec;
int ckdd_strvec_push(ckdd_strvec *sv, const char *s, size_t len);
void ckdd_strvec_free(ckdd_strvec *sv);

/* Replaces "{}" in `tmpl` by `name` (every occurrence); malloc'd. */
char *ckdd_format_template(const char *tmpl, const char *name);

/* Gives a sample its captions (copies). */
int ckdd_sample_add_caption(ckd_sample *s, const char *text, size_t len, ckd_error *err);

/* splitmix64's finaliser: a well-mixed 64-bit function of x, used to derive
 * independent random streams from (seed, epoch, index, …). */
uint64_t ckdd_mix(uint64_t x);
/* One splitmix64 step on *state. */
uint64_t ckdd_next(uint64_t *state);

/* Case-insensitive comparison of an extension with a name. */
int ckdd_ext_eq(const char *ext, size_t len, const char *name);

/* ---- labelled image sets (labelled.c; imagefolder and imagenet readers) ---- */

/* 1 if name ends in one of the extensions of `list` (a JSON array of strings,
 * with or without the dot; case-insensitive). */
int ckdd_has_ext(const json_t *list, const char *name);

/* The entries of a directory (without "." names), sorted by strcmp (as
 * Python's sorted); dirs_only keeps only subdirectories. */
int ckdd_list_dir(const char *dir, int dirs_only, ckdd_strvec *out, ckd_error *err);

/* Image files under `root` with a class index each, and the captions of
 * every class: each template applied to its name. As a reader's state it
 * serves size, get and close (ckdd_labelled_*). */
typedef struct ckdd_labelled {
    char *root;
    ckdd_strvec files;      /* relative to root */
    int32_t *labels;
    size_t cap;             /* of labels */
    char **captions;        /* [n_classes][n_templates] */
    size_t n_classes, n_templates;
} ckdd_labelled;

/* Adds one image (root-relative) with its class. */
int ckdd_labelled_add(ckdd_labelled *l, const char *rel, int32_t label, ckd_error *err);
/* Adds the images under root/rel, recursively and sorted by path, with
 * these extensions; depth counts the folders already descended. */
int ckdd_labelled_walk(ckdd_labelled *l, const char *rel, int32_t label, const json_t *ext,
                       int depth, ckd_error *err);
/* The same for a class folder, which must hold at least one image. */
int ckdd_labelled_class_folder(ckdd_labelled *l, const char *folder, int32_t label,
                               const json_t *ext, ckd_error *err);
/* Prompt templates: the lines of `path`, each with a "{}" (at least one
 * line), or a copy of `defaults` when path is NULL. */
int ckdd_load_templates(const char *path, const char *const *defaults, size_t n_defaults,
                        char ***t, size_t *n, ckd_error *err);
/* Builds the captions and sets the dataset's source (the root), classes and
 * templates. */
int ckdd_labelled_finish(ckd_dataset *ds, ckdd_labelled *l, const char *const *names,
                         size_t n_classes, const char *const *tmpl, size_t nt, ckd_error *err);
size_t ckdd_labelled_size(const void *state);
int ckdd_labelled_get(const void *state, size_t i, ckd_sample *out, ckd_error *err);
void ckdd_labelled_close(void *state);

#endif
