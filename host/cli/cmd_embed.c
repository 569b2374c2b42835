/* clipkd embed MODEL_DIR: normalised CLIP embeddings of images and texts. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "cli.h"
#include "clipkd/image.h"
#include "clipkd/model.h"
#include "clipkd/safetensors.h"
#include "clipkd/tokenizer.h"

void cmd_embed_help(FILE *out)
{
    fprintf(out,
            "Usage: clipkd embed MODEL_DIR [--image FILE]... [--text TEXT]... [--out OUT.safetensors]\n"
            "Computes L2-normalised embeddings with the CLIP model in MODEL_DIR (config.json\n"
            "or clipkd.json, and model.safetensors, a sharded index or open_clip_model.safetensors).\n"
            "Images (PNG/JPEG) get CLIP's preprocessing at the model's image size (bicubic\n"
            "shortest-edge resize, center crop, OpenAI mean/std); texts are tokenized with\n"
            "MODEL_DIR/vocab.json + merges.txt when present, else clipkd's default vocabulary.\n"
            "Without --out, prints one line per input (kind, input, values) and, when both\n"
            "kinds are given, the cosine similarity of every image with every text. With\n"
            "--out, writes image_embeds [I, E] and text_embeds [T, E] (inputs listed in the\n"
            "metadata as JSON arrays).\n");
}

typedef struct embed_args {
    const char *dir, *out;
    const char **images, **texts;
    int n_images, n_texts;
} embed_args;

static int parse(int argc, char **argv, embed_args *a)
{
    memset(a, 0, sizeof *a);
    a->images = calloc((size_t)argc, sizeof *a->images);
    a->texts = calloc((size_t)argc, sizeof *a->texts);
    if (!a->images || !a->texts)
        return fprintf(stderr, "clipkd embed: out of memory\n"), -1;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(o, "--image") && has_value)
            a->images[a->n_images++] = argv[++i];
        else if (!strcmp(o, "--text") && has_value)
            a->texts[a->n_texts++] = argv[++i];
        else if (!strcmp(o, "--out") && has_value)
            a->out = argv[++i];
        else if (o[0] == '-' && o[1])
            return fprintf(stderr, "clipkd embed: unknown option or missing value: '%s'\n", o), -1;
        else if (!a->dir)
            a->dir = o;
        else
            return fprintf(stderr, "clipkd embed: unexpected argument '%s'\n", o), -1;
    }
    if (!a->dir)
        return fprintf(stderr, "clipkd embed: no MODEL_DIR (see clipkd embed --help)\n"), -1;
    if (!a->n_images && !a->n_texts)
        return fprintf(stderr, "clipkd embed: nothing to embed: give --image and/or --text\n"), -1;
    return 0;
}

static ckd_tokenizer *open_tokenizer(const char *dir, ckd_error *err)
{
    char v[4096], m[4096];
    struct stat sb;
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(m, sizeof m, "%s/merges.txt", dir);
    if (stat(v, &sb) == 0 && stat(m, &sb) == 0)
        return ckd_tokenizer_load_hf(v, m, err);
    return ckd_tokenizer_load_default(err);
}

/* [n, 3, S, S] pixels of every image, preprocessed. */
static float *load_images(const embed_args *a, const ckd_model_info *info, ckd_error *err)
{
    if (info->channels != 3) {
        ckd_errorf(err, "%s: the model takes %lld channels; image preprocessing gives RGB", a->dir,
                   (long long)info->channels);
        return NULL;
    }
    size_t per = (size_t)(3 * info->image_size * info->image_size);
    float *px = malloc((size_t)a->n_images * per * sizeof *px);
    if (!px) {
        ckd_errorf(err, "out of memory for %d images", a->n_images);
        return NULL;
    }
    ckd_preprocess pp;
    ckd_preprocess_clip_default(&pp, (int)info->image_size);
    for (int i = 0; i < a->n_images; i++) {
        ckd_image img = {0};
        int rc = ckd_image_load(a->images[i], &img, err) || ckd_preprocess_image(&pp, &img, px + (size_t)i * per, err);
        ckd_image_free(&img);
        if (rc) {
            free(px);
            return NULL;
        }
    }
    return px;
}

static int32_t *tokenize_all(const embed_args *a, const ckd_tokenizer *tok, int64_t T, ckd_error *err)
{
    int32_t *ids = malloc((size_t)(a->n_texts * T) * sizeof *ids);
    if (!ids) {
        ckd_errorf(err, "out of memory for %d texts", a->n_texts);
        return NULL;
    }
    for (int i = 0; i < a->n_texts; i++)
        if (ckd_tokenize(tok, a->texts[i], ids + i * T, (int)T, ckd_tokenizer_eot_id(tok), NULL, NULL, err)) {
            ckd_error_prefix(err, "--text \"%.60s\"", a->texts[i]);
            free(ids);
            return NULL;
        }
    return ids;
}

static void print_rows(const char *kind, const char **names, const ckd_tensor *e)
{
    int64_t E = e->shape[1];
    for (int64_t i = 0; i < e->shape[0]; i++) {
        printf("%s\t%s\t", kind, names[i]);
        for (int64_t k = 0; k < E; k++)
            printf("%s%.6f", k ? " " : "", e->data[i * E + k]);
        printf("\n");
    }
}

static int write_out(const embed_args *a, ckd_tensor *img, ckd_tensor *txt, ckd_error *err)
{
    ckd_st_writer *w = ckd_st_writer_new();
    if (!w)
        return ckd_errorf(err, "out of memory");
    int rc = 0;
    const char *const *lists[2] = {a->images, a->texts};
    const int counts[2] = {a->n_images, a->n_texts};
    ckd_tensor *ts[2] = {img, txt};
    const char *names[2] = {"image_embeds", "text_embeds"}, *meta[2] = {"images", "texts"};
    for (int k = 0; k < 2 && rc == 0; k++) {
        if (!ts[k])
            continue;
        rc = ckd_st_writer_add(w, names[k], CKD_DT_F32, 2, ts[k]->shape, ts[k]->data, err);
        json_t *arr = json_array();
        for (int i = 0; i < counts[k]; i++)
            json_array_append_new(arr, json_string(lists[k][i]));
        char *s = json_dumps(arr, JSON_COMPACT);
        json_decref(arr);
        if (rc == 0)
            rc = s ? ckd_st_writer_set_metadata(w, meta[k], s, err) : ckd_errorf(err, "out of memory");
        free(s);
    }
    if (rc == 0)
        rc = ckd_st_writer_save(w, a->out, err);
    ckd_st_writer_free(w);
    return rc;
}

int cmd_embed(int argc, char **argv)
{
    embed_args a;
    if (parse(argc, argv, &a)) {
        free(a.images), free(a.texts);
        return CLI_USAGE;
    }
    int rc = CLI_USAGE;
    ckd_error err = {{0}};
    ckd_registry *reg = cli_open_registry();
    ckd_model *m = reg ? ckd_model_from_pretrained(reg, a.dir, &err) : NULL;
    ckd_tokenizer *tok = NULL;
    ckd_ctx *c = NULL;
    float *px = NULL;
    int32_t *ids = NULL;
    if (!m)
        goto done;
    const ckd_model_info *info = ckd_model_get_info(m);
    int64_t T = info->context_length < CKD_TOKENIZER_CONTEXT_LEN ? info->context_length : CKD_TOKENIZER_CONTEXT_LEN;
    if ((a.n_texts && !(tok = open_tokenizer(a.dir, &err))) || (a.n_texts && !(ids = tokenize_all(&a, tok, T, &err))) ||
        (a.n_images && !(px = load_images(&a, info, &err))) || !(c = ckd_ctx_new(0, 0, &err)))
        goto done;
    ckd_ctx_set_grad(c, 0);
    ckd_tensor *img = NULL, *txt = NULL;
    if (a.n_images) {
        int64_t S = info->image_size;
        ckd_tensor *x = ckd_tensor_from(c, 4, (int64_t[]){a.n_images, 3, S, S}, px);
        img = ckd_l2_normalize(c, ckd_model_encode_image(m, c, x, 1.0f, NULL), 1e-12f);
    }
    if (a.n_texts)
        txt = ckd_l2_normalize(c, ckd_model_encode_text(m, c, ids, a.n_texts, T, NULL), 1e-12f);
    ckd_tensor *cos = img && txt ? ckd_matmul_ex(c, img, 0, txt, 1) : NULL;
    if (ckd_ctx_check(c, &err)) {
        ckd_error_prefix(&err, "%s", a.dir);
        rc = CLI_FAIL;
        goto done;
    }
    if (a.out) {
        if (write_out(&a, img, txt, &err))
            goto done;
    } else {
        if (img)
            print_rows("image", a.images, img);
        if (txt)
            print_rows("text", a.texts, txt);
        for (int i = 0; cos && i < a.n_images; i++)
            for (int j = 0; j < a.n_texts; j++)
                printf("cosine\t%s\t%s\t%.6f\n", a.images[i], a.texts[j], cos->data[i * a.n_texts + j]);
    }
    rc = CLI_OK;
done:
    if (rc != CLI_OK && err.msg[0])
        fprintf(stderr, "clipkd embed: %s\n", err.msg);
    ckd_ctx_free(c);
    free(ids);
    free(px);
    ckd_tokenizer_free(tok);
    ckd_model_free(m);
    ckd_registry_free(reg);
    free(a.images);
    free(a.texts);
    return rc;
}
