/* The retrieval reader: image–text retrieval sets in Karpathy's split format
 * (dataset_coco.json for COCO 5k, dataset_flickr30k.json for Flickr30k 1k):
 *   {"images": [{"filename": "…", "filepath": "val2014", "split": "test",
 *                "sentences": [{"raw": "A man …"}, …]}, …]}
 * Every image of the chosen split is checked at open, and its captions are
 * kept in memory (a few MB for these sets). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"
#include "core/json_oom.h"

typedef struct rt_state {
    char *json_path, *root;
    ckdd_strvec images;     /* root-relative paths */
    ckdd_strvec captions;
    size_t *first;          /* captions of image i: first[i] .. first[i + 1] */
} rt_state;

static void rt_close(void *state)
{
    rt_state *s = state;
    free(s->json_path);
    free(s->root);
    ckdd_strvec_free(&s->images);
    ckdd_strvec_free(&s->captions);
    free(s->first);
    free(s);
}

/* A string member that must be present (and non-empty unless allow_empty). */
static const char *need_string(const rt_state *s, const json_t *obj, const char *key,
                               const char *where, int allow_empty, ckd_error *err)
{
    const json_t *v = json_object_get(obj, key);
    if (!v) {
        ckd_errorf(err, "%s: %s: missing \"%s\"", s->json_path, where, key);
        return NULL;
    }
    if (!json_is_string(v) || (!allow_empty && json_string_length(v) == 0)) {
        ckd_errorf(err, "%s: %s.%s: expected a%s string", s->json_path, where, key,
                   allow_empty ? "" : " non-empty");
        return NULL;
    }
    return json_string_value(v);
}

/* Adds image i of the JSON when it belongs to the split. */
static int add_image(rt_state *s, const json_t *im, size_t i, const char *split, size_t max_caps,
                     size_t min_caps, size_t *n_first_cap, ckd_error *err)
{
    char where[64];
    snprintf(where, sizeof where, "images[%zu]", i);
    if (!json_is_object(im))
        return ckd_errorf(err, "%s: %s: expected an object", s->json_path, where);
    if (strcmp(split, "all")) {
        const char *sp = need_string(s, im, "split", where, 0, err);
        if (!sp)
            return -1;
        if (strcmp(sp, split))
            return 0;
    }
    const char *fn = need_string(s, im, "filename", where, 0, err);
    if (!fn)
        return -1;
    const char *fp = NULL;
    if (json_object_get(im, "filepath") && !(fp = need_string(s, im, "filepath", where, 1, err)))
        return -1;
    const json_t *sent = json_object_get(im, "sentences");
    if (!json_is_array(sent) || json_array_size(sent) == 0)
        return ckd_errorf(err, "%s: %s.sentences: %s", s->json_path, where,
                          sent ? "expected a non-empty array of {\"raw\": …}"
                               : "missing (expected an array of {\"raw\": …})");
    if (json_array_size(sent) < min_caps)
        return ckd_errorf(err, "%s: %s (%s): %zu sentences, the protocol needs %zu per image",
                          s->json_path, where, fn, json_array_size(sent), min_caps);
    char rel[4096];
    if (ckdd_join(fp, fn, rel, sizeof rel, err) < 0 ||
        ckdd_strvec_push(&s->images, rel, strlen(rel)) < 0)
        return ckd_errorf(err, "%s: %s: cannot keep the file name", s->json_path, where);
    size_t j;
    const json_t *e;
    json_array_foreach(sent, j, e)
    {
        char w2[96];
        snprintf(w2, sizeof w2, "%s.sentences[%zu]", where, j);
        if (!json_is_object(e))
            return ckd_errorf(err, "%s: %s: expected an object with \"raw\"", s->json_path, w2);
        const char *raw = need_string(s, e, "raw", w2, 1, err);
        if (!raw)
            return -1;
        if (max_caps && j >= max_caps)
            continue;
        if (ckdd_strvec_push(&s->captions, raw, strlen(raw)) < 0)
            return ckd_errorf(err, "out of memory");
    }
    size_t *f = realloc(s->first, (s->images.n + 1) * sizeof *f);
    if (!f)
        return ckd_errorf(err, "out of memory");
    s->first = f;
    f[s->images.n - 1] = *n_first_cap;
    f[s->images.n] = s->captions.n;
    *n_first_cap = s->captions.n;
    return 0;
}

static void *rt_open(ckd_dataset *ds, const json_t *spec, const ckdd_env *env, ckd_error *err)
{
    rt_state *s = calloc(1, sizeof *s);
    json_t *root = NULL;
    if (!s) {
        ckd_errorf(err, "out of memory");
        return NULL;
    }
    if (ckdd_resolve_file_and_root(env, spec, &s->json_path, &s->root, err) < 0)
        goto fail;
    json_error_t je;
    /* jansson rejects invalid UTF-8 itself, with the position. */
    root = ckdi_json_load_file(s->json_path, JSON_REJECT_DUPLICATES, &je, NULL);
    if (!root) {
        ckd_errorf(err, "%s:%d:%d: %s", s->json_path, je.line, je.column, je.text);
        goto fail;
    }
    const json_t *images = json_object_get(root, "images");
    if (!json_is_array(images)) {
        ckd_errorf(err, "%s: images: %s", s->json_path,
                   images ? "expected an array" : "missing (expected {\"images\": [...]})");
        goto fail;
    }
    const char *split = json_string_value(json_object_get(spec, "split"));
    size_t max_caps = (size_t)json_integer_value(json_object_get(spec, "max_captions"));
    size_t min_caps = (size_t)json_integer_value(json_object_get(spec, "min_captions"));
    size_t expect = (size_t)json_integer_value(json_object_get(spec, "expect_images"));
    size_t i, first = 0;
    const json_t *im;
    json_array_foreach(images, i, im)
    {
        if (add_image(s, im, i, split, max_caps, min_caps, &first, err) < 0)
            goto fail;
    }
    if (expect && s->images.n != expect) {
        ckd_errorf(err, "%s: %zu images in the split \"%s\", expected %zu (\"expect_images\")",
                   s->json_path, s->images.n, split, expect);
        goto fail;
    }
    if (s->images.n == 0) {
        ckd_errorf(err, "%s: no images in the split \"%s\" (of %zu images)", s->json_path, split,
                   json_array_size(images));
        goto fail;
    }
    char src[4200];
    snprintf(src, sizeof src, "%s (split %s)", s->json_path, split);
    if (ckdd_set_source(ds, src, err) < 0)
        goto fail;
    json_decref(root);
    return s;
fail:
    json_decref(root);
    rt_close(s);
    return NULL;
}

static size_t rt_size(const void *state)
{
    return ((const rt_state *)state)->images.n;
}

static int rt_get(const void *state, size_t i, ckd_sample *out, ckd_error *err)
{
    const rt_state *s = state;
    char p[4096];
    if (ckdd_join(s->root, s->images.v[i], p, sizeof p, err) < 0 ||
        ckd_image_load(p, &out->image, err) < 0)
        return ckd_error_prefix(err, "%s: image %zu of the split", s->json_path, i);
    for (size_t c = s->first[i]; c < s->first[i + 1]; c++)
        if (ckdd_sample_add_caption(out, s->captions.v[c], strlen(s->captions.v[c]), err) < 0)
            return -1;
    return 0;
}

/* Keeping fewer sentences than every image must have cannot be meant. */
static int rt_check(const json_t *spec, const ckdd_where *w, ckd_error *err)
{
    json_int_t mx = json_integer_value(json_object_get(spec, "max_captions"));
    json_int_t mn = json_integer_value(json_object_get(spec, "min_captions"));
    if (mx > 0 && mn > mx)
        return ckdd_spec_errorf(w, "min_captions", err,
                                "%lld is more than \"max_captions\" (%lld), the sentences kept",
                                (long long)mn, (long long)mx);
    return 0;
}

static const char rt_schema[] =
    "{\"type\": \"object\", \"required\": [\"path\"], \"properties\": {" CKDD_SCHEMA_COMMON ","
    " \"path\": " CKDD_SCHEMA_PATH_OR_ARTIFACT ","
    " \"root\": {\"type\": \"string\"},"
    " \"split\": {\"type\": \"string\", \"enum\": [\"test\", \"val\", \"train\", \"restval\", \"all\"],"
    "  \"default\": \"test\"},"
    " \"max_captions\": {\"type\": \"integer\", \"minimum\": 0, \"default\": 0},"
    " \"min_captions\": {\"type\": \"integer\", \"minimum\": 1, \"default\": 1},"
    " \"expect_images\": {\"type\": \"integer\", \"minimum\": 0, \"default\": 0}}}";

const ckdd_reader ckdd_reader_retrieval = {
    "retrieval", rt_schema, rt_check, rt_open, rt_size, rt_get, rt_close,
};
