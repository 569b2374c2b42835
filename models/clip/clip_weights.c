/* models/clip — loading and saving weights.
 *
 * Accepted inputs (all through the library's safetensors reader, so F32, F16,
 * BF16 and F64 convert to float and the file's structure is checked first):
 *   - a .safetensors file, a sharded checkpoint's index .json, or a PyTorch
 *     checkpoint (.pt/.bin, read without running its pickle: ckd_pt_open);
 *   - a directory holding one of these (see open_weights).
 * Two naming schemes, told apart by the tensors present:
 *   - Hugging Face CLIPModel names (our parameter names);
 *   - OpenAI / OpenCLIP names (visual.conv1.weight, transformer.resblocks.N...),
 *     mapped as transformers' convert_clip_original_pytorch_to_hf does: the
 *     fused attn.in_proj_{weight,bias} [3C, C] split into q, k, v by rows, and
 *     visual.proj / text_projection ([C, E], used as x · proj) transposed.
 * Buffers that are not parameters are skipped: HF's integer position_ids and
 * OpenAI's input_resolution / context_length / vocab_size scalars.
 * Every parameter is checked (present, shape, a float dtype) and every other
 * tensor reported as unexpected before anything is copied, so a failed load
 * leaves the model as it was. Saving writes HF names, F32, atomically. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clip.h"
#include "clipkd/safetensors.h"

enum { MAP_COPY, MAP_TRANSPOSE, MAP_SPLIT3 };

typedef struct src_map {
    char name[256];     /* tensor name in the file */
    int how;            /* MAP_* */
    int part;           /* MAP_SPLIT3: 0 = q, 1 = k, 2 = v */
    const ckd_st_tensor *t;
} src_map;

/* HF names -> OpenCLIP names. Whole-name and prefix rules for the towers'
 * ends; per-layer rules for what follows "layers.N.". */
static const struct {
    const char *hf, *oc;
    int how;
} top_rules[] = {
    {"text_model.embeddings.token_embedding.weight", "token_embedding.weight", MAP_COPY},
    {"text_model.embeddings.position_embedding.weight", "positional_embedding", MAP_COPY},
    {"text_model.final_layer_norm.", "ln_final.", MAP_COPY},
    {"vision_model.embeddings.class_embedding", "visual.class_embedding", MAP_COPY},
    {"vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight", MAP_COPY},
    {"vision_model.embeddings.position_embedding.weight", "visual.positional_embedding", MAP_COPY},
    {"vision_model.pre_layrnorm.", "visual.ln_pre.", MAP_COPY},
    {"vision_model.post_layernorm.", "visual.ln_post.", MAP_COPY},
    {"visual_projection.weight", "visual.proj", MAP_TRANSPOSE},
    {"text_projection.weight", "text_projection", MAP_TRANSPOSE},
    {"logit_scale", "logit_scale", MAP_COPY},
};

static const struct {
    const char *hf, *oc;
    int how, part;
} layer_rules[] = {
    {"layer_norm1.", "ln_1.", MAP_COPY, 0},
    {"layer_norm2.", "ln_2.", MAP_COPY, 0},
    {"self_attn.q_proj.weight", "attn.in_proj_weight", MAP_SPLIT3, 0},
    {"self_attn.k_proj.weight", "attn.in_proj_weight", MAP_SPLIT3, 1},
    {"self_attn.v_proj.weight", "attn.in_proj_weight", MAP_SPLIT3, 2},
    {"self_attn.q_proj.bias", "attn.in_proj_bias", MAP_SPLIT3, 0},
    {"self_attn.k_proj.bias", "attn.in_proj_bias", MAP_SPLIT3, 1},
    {"self_attn.v_proj.bias", "attn.in_proj_bias", MAP_SPLIT3, 2},
    {"self_attn.out_proj.", "attn.out_proj.", MAP_COPY, 0},
    {"mlp.fc1.", "mlp.c_fc.", MAP_COPY, 0},
    {"mlp.fc2.", "mlp.c_proj.", MAP_COPY, 0},
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* A rule matches the whole name, or (when it ends in '.') a prefix of it;
 * the rest of the name is carried over. */
static int rewrite(const char *name, const char *from, const char *to, char *out, size_t cap)
{
    size_t n = strlen(from);
    if (strncmp(name, from, n) != 0 || (from[n - 1] != '.' && name[n] != '\0'))
        return 0;
    snprintf(out, cap, "%s%s", to, name + n);
    return 1;
}

static int openclip_name(const char *hf, src_map *s)
{
    s->how = MAP_COPY;
    s->part = 0;
    if (!strncmp(hf, "visual.", 7)) { /* a ResNet image tower: named as OpenCLIP already */
        snprintf(s->name, sizeof s->name, "%s", hf);
        return 0;
    }
    for (size_t i = 0; i < N_OF(top_rules); i++)
        if (rewrite(hf, top_rules[i].hf, top_rules[i].oc, s->name, sizeof s->name)) {
            s->how = top_rules[i].how;
            return 0;
        }
    static const char *const towers[][2] = {{"text_model.encoder.layers.", "transformer.resblocks."},
                                            {"vision_model.encoder.layers.", "visual.transformer.resblocks."}};
    for (int k = 0; k < 2; k++) {
        size_t n = strlen(towers[k][0]);
        if (strncmp(hf, towers[k][0], n) != 0)
            continue;
        char *end;
        long layer = strtol(hf + n, &end, 10);
        if (*end != '.')
            return -1;
        char rest[200];
        for (size_t i = 0; i < N_OF(layer_rules); i++)
            if (rewrite(end + 1, layer_rules[i].hf, layer_rules[i].oc, rest, sizeof rest)) {
                snprintf(s->name, sizeof s->name, "%s%ld.%s", towers[k][1], layer, rest);
                s->how = layer_rules[i].how;
                s->part = layer_rules[i].part;
                return 0;
            }
    }
    return -1;
}

/* The shape the file's tensor must have to give parameter p through map s. */
static void source_shape(const ckd_tensor *p, const src_map *s, int *ndim, int64_t *shape)
{
    *ndim = p->ndim;
    for (int i = 0; i < p->ndim; i++)
        shape[i] = p->shape[i];
    if (s->how == MAP_TRANSPOSE && p->ndim == 2) {
        shape[0] = p->shape[1];
        shape[1] = p->shape[0];
    } else if (s->how == MAP_SPLIT3) {
        shape[0] *= 3;
    }
}

static const char *shape_str(int ndim, const int64_t *shape, char *buf, size_t cap)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < cap)
        snprintf(buf + k, cap - k, "]");
    return buf;
}

static int same_shape(const ckd_st_tensor *t, int ndim, const int64_t *shape)
{
    /* A scalar stored as [1] (some older conversions of logit_scale) is the same scalar. */
    if (ndim == 0)
        return ckd_st_numel(t) == 1 && t->ndim <= 1;
    if (t->ndim != ndim)
        return 0;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != shape[i])
            return 0;
    return 1;
}

static int is_float(ckd_dtype d) { return d == CKD_DT_F32 || d == CKD_DT_F16 || d == CKD_DT_BF16 || d == CKD_DT_F64; }

/* Buffers and metadata scalars that checkpoints carry besides parameters. */
static int skippable(const ckd_st_tensor *t)
{
    size_t n = strlen(t->name);
    if (!is_float(t->dtype) && n >= 12 && !strcmp(t->name + n - 12, "position_ids"))
        return 1;
    return !strcmp(t->name, "input_resolution") || !strcmp(t->name, "context_length") ||
           !strcmp(t->name, "vocab_size");
}

/* Appends "; <item>" to a message, keeping the first items when it fills. */
static void note(char *msg, size_t cap, int *count, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void note(char *msg, size_t cap, int *count, const char *fmt, ...)
{
    size_t k = strlen(msg);
    (*count)++;
    if (k + 8 >= cap)
        return;
    if (k)
        k += (size_t)snprintf(msg + k, cap - k, "; ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + k, cap - k, fmt, ap);
    va_end(ap);
}

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* Opens what `path` names. A directory holds, in this order of preference,
 * HF's sharded or single safetensors, OpenCLIP's safetensors, or a PyTorch
 * checkpoint under the names the Hugging Face hub gives them (OpenCLIP's
 * open_clip_pytorch_model.bin, transformers' pytorch_model.bin); a file may
 * be any of these, told apart by its first bytes (ckd_st_open). */
static ckd_safetensors *open_weights(const char *path, char *shown, size_t cap, ckd_error *err)
{
    static const char *const names[] = {"model.safetensors.index.json", "model.safetensors",
                                        "open_clip_model.safetensors", "open_clip_pytorch_model.bin",
                                        "pytorch_model.bin"};
    snprintf(shown, cap, "%s", path);
    if (is_dir(path)) {
        char p[4096];
        size_t i = 0;
        for (; i < sizeof names / sizeof *names; i++) {
            snprintf(p, sizeof p, "%s/%s", path, names[i]);
            if (exists(p))
                break;
        }
        if (i == sizeof names / sizeof *names) {
            ckd_errorf(err, "%s: no weights: expected model.safetensors.index.json, model.safetensors, "
                       "open_clip_model.safetensors, open_clip_pytorch_model.bin or pytorch_model.bin", path);
            return NULL;
        }
        snprintf(shown, cap, "%s", p);
        return ckd_st_open(p, err);
    }
    return ckd_st_open(path, err);
}

/* The file's tensor for every parameter, checked; 0 or -1 with err naming
 * every problem found (shapes first, then missing, then unexpected). */
static int plan(clip_model *m, const ckd_safetensors *st, const char *file, src_map *srcs, ckd_error *err)
{
    int openclip = !ckd_st_find(st, m->params[0]->name) &&
                   (ckd_st_find(st, "token_embedding.weight") || ckd_st_find(st, "visual.conv1.weight"));
    char bad[700] = "", missing[700] = "", extra[700] = "";
    int n_bad = 0, n_missing = 0, n_extra = 0;
    for (int i = 0; i < m->n_params; i++) {
        const ckd_tensor *p = m->params[i];
        src_map *s = &srcs[i];
        if (!openclip) {
            snprintf(s->name, sizeof s->name, "%s", p->name);
            s->how = MAP_COPY;
        } else if (openclip_name(p->name, s)) {
            return ckd_errorf(err, "%s: no OpenCLIP name for parameter %s", file, p->name);
        }
        int nd;
        int64_t want[CKD_MAX_DIMS];
        char s0[96], s1[96];
        source_shape(p, s, &nd, want);
        s->t = ckd_st_find(st, s->name);
        if (!s->t)
            note(missing, sizeof missing, &n_missing, "%s %s", s->name, shape_str(nd, want, s0, sizeof s0));
        else if (!same_shape(s->t, nd, want))
            note(bad, sizeof bad, &n_bad, "%s has shape %s in the file, the model expects %s", s->name,
                 shape_str(s->t->ndim, s->t->shape, s0, sizeof s0), shape_str(nd, want, s1, sizeof s1));
        else if (!is_float(s->t->dtype))
            note(bad, sizeof bad, &n_bad, "%s has dtype %s, expected F32, F16, BF16 or F64", s->name,
                 ckd_dtype_name(s->t->dtype));
    }
    for (size_t j = 0; j < ckd_st_count(st); j++) {
        const ckd_st_tensor *t = ckd_st_at(st, j);
        if (skippable(t) || (m->rn && rn_tower_is_buffer(m->rn, t->name)))
            continue;
        int used = 0;
        for (int i = 0; i < m->n_params && !used; i++)
            used = srcs[i].t == t;
        if (!used) {
            char s0[96];
            note(extra, sizeof extra, &n_extra, "%s %s", t->name, shape_str(t->ndim, t->shape, s0, sizeof s0));
        }
    }
    if (!n_bad && !n_missing && !n_extra)
        return 0;
    char msg[CKD_ERROR_MAX] = "";
    size_t k = 0;
    if (n_bad)
        k += (size_t)snprintf(msg + k, sizeof msg - k, " %d mis-shaped or mis-typed: %s.", n_bad, bad);
    if (n_missing && k < sizeof msg)
        k += (size_t)snprintf(msg + k, sizeof msg - k, " %d missing: %s.", n_missing, missing);
    if (n_extra && k < sizeof msg)
        snprintf(msg + k, sizeof msg - k, " %d unexpected: %s.", n_extra, extra);
    return ckd_errorf(err, "%s (%s names):%s", file, openclip ? "OpenCLIP" : "Hugging Face", msg);
}

/* Converts one tensor into its parameter through the map. */
static int copy_in(ckd_tensor *p, const src_map *s, ckd_error *err)
{
    if (s->how == MAP_COPY)
        return ckd_st_to_f32(s->t, p->data, (size_t)p->n, err);
    int64_t n = ckd_st_numel(s->t);
    float *tmp = malloc((size_t)n * sizeof *tmp);
    if (!tmp)
        return ckd_errorf(err, "%s: out of memory", s->name);
    int rc = ckd_st_to_f32(s->t, tmp, (size_t)n, err);
    if (rc == 0 && s->how == MAP_TRANSPOSE) {
        int64_t R = p->shape[0], C = p->shape[1]; /* file [C, R] -> param [R, C] */
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < C; c++)
                p->data[r * C + c] = tmp[c * R + r];
    } else if (rc == 0) {
        memcpy(p->data, tmp + (int64_t)s->part * p->n, (size_t)p->n * sizeof *tmp);
    }
    free(tmp);
    return rc;
}

int clip_load(void *state, const char *path, ckd_error *err)
{
    clip_model *m = state;
    char file[4096];
    ckd_safetensors *st = open_weights(path, file, sizeof file, err);
    if (!st)
        return -1;
    src_map *srcs = calloc((size_t)m->n_params, sizeof *srcs);
    int rc = srcs ? plan(m, st, file, srcs, err) : ckd_errorf(err, "%s: out of memory", file);
    /* the ResNet tower's buffers (and again its parameters): all checked
     * before any is written, so a failure leaves the model as it was */
    if (rc == 0 && m->rn)
        rc = rn_tower_load(m->rn, st, file, err);
    for (int i = 0; rc == 0 && i < m->n_params; i++)
        if (copy_in(m->params[i], &srcs[i], err))
            rc = ckd_error_prefix(err, "%s: %s", srcs[i].t->file, srcs[i].name);
    free(srcs);
    ckd_st_close(st);
    return rc;
}

int clip_save(void *state, const char *path, ckd_error *err)
{
    clip_model *m = state;
    ckd_st_writer *w = ckd_st_writer_new();
    if (!w)
        return ckd_errorf(err, "%s: out of memory", path);
    int rc = ckd_st_writer_set_metadata(w, "format", "pt", err);
    for (int i = 0; rc == 0 && i < m->n_params; i++) {
        const ckd_tensor *p = m->params[i];
        rc = ckd_st_writer_add(w, p->name, CKD_DT_F32, p->ndim, p->shape, p->data, err);
    }
    if (rc == 0 && m->rn)
        rc = rn_tower_add_buffers(m->rn, w, err);
    if (rc == 0)
        rc = ckd_st_writer_save(w, path, err);
    ckd_st_writer_free(w);
    return rc;
}

int clip_n_buffers(void *state)
{
    const clip_model *m = state;
    return m->rn ? m->rn->n_buffers : 0;
}

ckd_tensor *clip_buffer(void *state, int i)
{
    const clip_model *m = state;
    return m->rn && i >= 0 && i < m->rn->n_buffers ? m->rn->buffers[i] : NULL;
}
