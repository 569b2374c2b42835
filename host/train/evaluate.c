/* Evaluation of a CLIP-style model on a dataset: zero-shot classification
 * with prompt ensembles, multi-caption retrieval both ways, calibration of
 * the zero-shot probabilities (the numbers themselves: clipkd/metrics.h). */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clipkd/data.h"
#include "clipkd/loader.h"
#include "clipkd/ops.h"
#include "clipkd/tokenizer.h"
#include "train_internal.h"
#include "dist/dist_internal.h"

void ckd_eval_opts_init(ckd_eval_opts *o)
{
    memset(o, 0, sizeof *o);
    o->zero_shot = o->retrieval = o->calibration = 1;
    o->calibration_bins = 15;
    o->batch_size = 256;
}

const char *ckd_retrieval_match_name(ckd_retrieval_match m)
{
    return m == CKD_RETRIEVAL_MATCH_TEXT ? "text" : "pair";
}

void ckd_eval_opts_from_json(ckd_eval_opts *o, const json_t *ev)
{
    ckd_eval_opts_init(o);
    if (!json_is_object(ev))
        return;
    const json_t *v;
    if ((v = json_object_get(ev, "zero_shot")))
        o->zero_shot = json_is_true(v);
    if ((v = json_object_get(ev, "retrieval")))
        o->retrieval = json_is_true(v);
    if ((v = json_object_get(ev, "calibration")))
        o->calibration = json_is_true(v);
    if ((v = json_object_get(ev, "calibration_bins")))
        o->calibration_bins = (int)json_number_value(v);
    if ((v = json_object_get(ev, "batch_size")))
        o->batch_size = (int)json_number_value(v);
    /* The schema allows only "pair" and "text". */
    if ((v = json_object_get(ev, "retrieval_match")))
        o->retrieval_match = !strcmp(json_string_value(v), "text") ? CKD_RETRIEVAL_MATCH_TEXT : CKD_RETRIEVAL_MATCH_PAIR;
    /* The recipe schema makes every element a string; they stay borrowed. */
    if ((v = json_object_get(ev, "templates")))
        for (size_t i = 0; i < json_array_size(v) && o->n_templates < CKD_EVAL_MAX_TEMPLATES; i++)
            o->templates[o->n_templates++] = json_string_value(json_array_get(v, i));
}

static int encode_texts(ckd_model *m, ckd_ctx *c, const int32_t *ids, int64_t M, int64_t T, int bs, float *out,
                        ckd_error *err)
{
    int64_t D = ckd_model_embed_dim(m);
    for (int64_t i = 0; i < M; i += bs) {
        int64_t b = M - i < bs ? M - i : bs;
        ckd_ctx_reset(c);
        ckd_tensor *e = ckd_l2_normalize(c, ckd_model_encode_text(m, c, ids + i * T, b, T, NULL), 1e-12f);
        if (ckd_ctx_check(c, err))
            return ckd_error_prefix(err, "text embeddings");
        memcpy(out + i * D, e->data, (size_t)(b * D) * sizeof *out);
    }
    return 0;
}

int train_encode_texts(ckd_model *m, ckd_ctx *c, const int32_t *ids, int64_t M, int64_t T, int bs, int sharded,
                       float *out, ckd_error *err)
{
    if (!sharded || !ckdi_dist_active())
        return encode_texts(m, c, ids, M, T, bs, out, err);
    /* each rank its part of the rows, then every rank all of them */
    int64_t D = ckd_model_embed_dim(m), lo, hi, mine, *parts = malloc((size_t)ckd_dist_size() * sizeof *parts);
    ckdi_dist_part(M, &lo, &hi);
    mine = hi - lo;
    int rc = parts ? encode_texts(m, c, ids + lo * T, mine, T, bs, out + lo * D, err) : ckd_errorf(err, "out of memory");
    rc = ckdi_dist_agree(rc, err) || ckdi_dist_allgather_i64(&mine, 1, parts, err) ||
                 ckdi_dist_allgather(out + lo * D, parts, D * (int64_t)sizeof *out, out, err)
             ? -1
             : 0;
    free(parts);
    return rc;
}

/* The three below: features picks a classifier's features over its output;
 * normalise, L2-normalised rows. */
/* One batch's rows: embeddings (or features) into img, the output into
 * logits when given, labels and dataset indices. */
static int encode_batch(ckd_model *m, ckd_ctx *c, const ckd_batch *b, int features, int normalise, int64_t D,
                        int64_t K, float *img, float *logits, int32_t *labels, int64_t *index, ckd_error *err)
{
    if (b->n == 0) /* a shard of a batch smaller than the ranks */
        return 0;
    ckd_ctx_reset(c);
    int64_t shape[4] = {b->n, 3, b->image_size, b->image_size};
    ckd_tensor *px = ckd_tensor_from(c, 4, shape, b->pixel_values);
    ckd_tower_out out = {0};
    ckd_tensor *y = ckd_model_encode_image(m, c, px, 1.0f, features ? &out : NULL);
    ckd_tensor *e = features ? out.pooled : y;
    if (normalise)
        e = ckd_l2_normalize(c, e, 1e-12f);
    if (ckd_ctx_check(c, err))
        return ckd_error_prefix(err, "image embeddings");
    memcpy(img, e->data, (size_t)(b->n * D) * sizeof *img);
    if (logits)
        memcpy(logits, y->data, (size_t)(b->n * K) * sizeof *logits);
    for (int i = 0; i < b->n; i++)
        labels[i] = b->labels[i], index[i] = b->indices[i];
    return 0;
}

/* With sharded (under MPI: a collective), each rank encodes its shard of
 * every batch into scratch rows and the ranks' rows are gathered, so that
 * every rank ends with all of them in dataset order. */
static int encode_rows(ckd_model *m, ckd_ctx *c, const ckd_dataset *ds, const train_view *v, int bs, int on_error,
                       int features, int normalise, int sharded, float *img, float *logits, int32_t *labels,
                       int64_t *index, int64_t *n_out, ckd_error *err)
{
    const ckd_model_info *info = ckd_model_get_info(m);
    ckd_loader_opts lo;
    ckd_loader_opts_init(&lo);
    lo.batch_size = bs;
    lo.shuffle = 0;
    lo.epochs = 1;
    lo.augment = v != NULL; /* the training loader's crop settings: both are ckd_loader_opts_init's */
    if (v) {
        lo.seed = v->seed;
        lo.views = v->views;
        lo.view = v->view;
    }
    lo.image_size = (int)info->image_size;
    lo.threads = 1;
    lo.prefetch = 2;
    lo.on_error = on_error;
    sharded = sharded && ckdi_dist_active();
    lo.shard = sharded ? ckd_dist_rank() : 0;
    lo.shards = sharded ? ckd_dist_size() : 0;
    int64_t K = ckd_model_embed_dim(m), D = features ? ckd_model_feature_dim(m) : K, n = 0;
    int64_t *counts = sharded ? malloc((size_t)ckd_dist_size() * sizeof *counts) : NULL;
    /* a rank's shard rows before they are gathered */
    float *s_img = sharded ? malloc((size_t)(bs * D) * sizeof *s_img) : NULL;
    float *s_logits = sharded && logits ? malloc((size_t)(bs * K) * sizeof *s_logits) : NULL;
    int32_t *s_labels = sharded ? malloc((size_t)bs * sizeof *s_labels) : NULL;
    int64_t *s_index = sharded ? malloc((size_t)bs * sizeof *s_index) : NULL;
    ckd_loader *l = NULL;
    int rc = sharded && (!counts || !s_img || (logits && !s_logits) || !s_labels || !s_index)
                 ? ckd_errorf(err, "out of memory")
             : (l = ckd_loader_new(ds, &lo, err)) ? 0
                                                   : -1;
    if (sharded && ckdi_dist_agree(rc, err))
        rc = -1;
    const ckd_batch *b;
    while (rc == 0) {
        rc = ckd_loader_next(l, &b, err);
        if (sharded)
            rc = ckdi_dist_counts(rc, rc == 0 ? b->n : 0, counts, err);
        if (rc)
            break;
        if (!sharded) {
            rc = encode_batch(m, c, b, features, normalise, D, K, img + n * D, logits ? logits + n * K : NULL,
                              labels + n, index + n, err);
            n += b->n;
            continue;
        }
        rc = ckdi_dist_agree(encode_batch(m, c, b, features, normalise, D, K, s_img, s_logits, s_labels, s_index, err),
                             err);
        if (!rc && (ckdi_dist_allgather(s_img, counts, D * (int64_t)sizeof *img, img + n * D, err) ||
                    (logits && ckdi_dist_allgather(s_logits, counts, K * (int64_t)sizeof *logits, logits + n * K, err)) ||
                    ckdi_dist_allgather(s_labels, counts, sizeof *labels, labels + n, err) ||
                    ckdi_dist_allgather(s_index, counts, sizeof *index, index + n, err)))
            rc = -1;
        for (int r = 0; r < ckd_dist_size(); r++)
            n += counts[r];
    }
    free(counts), free(s_img), free(s_logits), free(s_labels), free(s_index);
    ckd_loader_free(l);
    *n_out = n;
    return rc < 0 ? -1 : 0;
}

int train_encode_images(ckd_model *m, ckd_ctx *c, const ckd_dataset *ds, const train_view *v, int bs, int on_error,
                        int sharded, float *img, int32_t *labels, int64_t *index, int64_t *n_out, ckd_error *err)
{
    return encode_rows(m, c, ds, v, bs, on_error, 0, 1, sharded, img, NULL, labels, index, n_out, err);
}

int train_encode_features(ckd_model *m, ckd_ctx *c, const ckd_dataset *ds, const train_view *v, int bs,
                          int on_error, int sharded, float *img, float *logits, int32_t *labels, int64_t *index,
                          int64_t *n_out, ckd_error *err)
{
    return encode_rows(m, c, ds, v, bs, on_error, 1, 1, sharded, img, logits, labels, index, n_out, err);
}

int train_class_prompt_ids(const ckd_dataset *ds, const ckd_tokenizer *tok, const ckd_eval_opts *o, int64_t T,
                           int32_t **ids_out, int64_t *nt_out, ckd_error *err)
{
    int64_t K = (int64_t)ckd_dataset_n_classes(ds);
    int64_t NT = o->n_templates ? (int64_t)o->n_templates : (int64_t)ckd_dataset_n_templates(ds);
    int32_t *ids = malloc((size_t)(K * NT * T > 0 ? K * NT * T : 1) * sizeof *ids);
    if (!ids)
        return ckd_errorf(err, "out of memory for %lld prompts", (long long)(K * NT));
    for (int64_t k = 0; k < K; k++)
        for (int64_t t = 0; t < NT; t++) {
            const char *tpl = o->n_templates ? o->templates[t] : ckd_dataset_template(ds, (size_t)t);
            const char *name = ckd_dataset_class_name(ds, (size_t)k);
            const char *at = strstr(tpl, "{}");
            char text[1024];
            if (at)
                snprintf(text, sizeof text, "%.*s%s%s", (int)(at - tpl), tpl, name, at + 2);
            else
                snprintf(text, sizeof text, "%s", tpl);
            if (ckd_tokenize(tok, text, ids + (k * NT + t) * T, (int)T, 0, NULL, NULL, err)) {
                free(ids);
                return ckd_error_prefix(err, "prompt \"%s\"", text);
            }
        }
    *ids_out = ids;
    *nt_out = NT;
    return 0;
}

ckd_tensor *train_prompt_ensemble(ckd_model *m, ckd_ctx *c, const int32_t *ids, int64_t K, int64_t NT, int64_t T)
{
    ckd_tensor *e = ckd_l2_normalize(c, ckd_model_encode_text(m, c, ids, K * NT, T, NULL), 1e-12f);
    ckd_tensor *per_class = ckd_reshape(c, e, 3, (int64_t[]){K, NT, ckd_model_embed_dim(m)});
    return ckd_l2_normalize(c, ckd_sum(c, per_class, 1), 1e-12f);
}

/* Class embeddings [K, D] without a tape, a few classes per forward (about
 * 256 prompts) so that a thousand classes never share one arena. */
int train_class_embeddings(ckd_model *m, ckd_ctx *c, const ckd_tokenizer *tok, const ckd_dataset *ds,
                           const ckd_eval_opts *o, int64_t T, float *out, ckd_error *err)
{
    int64_t K = (int64_t)ckd_dataset_n_classes(ds), D = ckd_model_embed_dim(m), NT;
    int32_t *ids;
    if (train_class_prompt_ids(ds, tok, o, T, &ids, &NT, err))
        return -1;
    int64_t per = NT > 0 && NT < 256 ? 256 / NT : 1;
    int rc = 0, was = ckd_ctx_set_grad(c, 0);
    for (int64_t k = 0; k < K && !rc; k += per) {
        int64_t kb = K - k < per ? K - k : per;
        ckd_ctx_reset(c);
        ckd_tensor *e = train_prompt_ensemble(m, c, ids + k * NT * T, kb, NT, T);
        if ((rc = ckd_ctx_check(c, err)) == 0)
            memcpy(out + k * D, e->data, (size_t)(kb * D) * sizeof *out);
    }
    ckd_ctx_set_grad(c, was);
    free(ids);
    return rc ? ckd_error_prefix(err, "class embeddings") : 0;
}

int train_caption_ids(const ckd_dataset *ds, const ckd_tokenizer *tok, const int64_t *index, int64_t n, int64_t T,
                      int32_t **ids_out, int32_t **owner_out, int64_t *m_out, ckd_error *err)
{
    int64_t cap = n * 2 + 16, m = 0;
    int32_t *ids = malloc((size_t)(cap * T) * sizeof *ids), *owner = malloc((size_t)cap * sizeof *owner);
    int rc = -1;
    for (int64_t i = 0; i < n && ids && owner; i++) {
        ckd_sample s;
        if (ckd_dataset_get(ds, (size_t)index[i], &s, err))
            goto out;
        size_t nc = s.input_ids ? 1 : s.n_captions;
        if (m + (int64_t)nc > cap) {
            cap = (m + (int64_t)nc) * 2;
            int32_t *a = realloc(ids, (size_t)(cap * T) * sizeof *ids), *b = a ? realloc(owner, (size_t)cap * sizeof *owner) : NULL;
            if (a)
                ids = a;
            if (b)
                owner = b;
            if (!a || !b) {
                ckd_sample_free(&s);
                ckd_errorf(err, "out of memory for captions");
                goto out;
            }
        }
        for (size_t k = 0; k < nc; k++, m++) {
            int32_t *row = ids + m * T;
            owner[m] = (int32_t)i;
            if (s.input_ids) {
                for (int64_t t = 0; t < T; t++)
                    row[t] = t < s.n_ids ? s.input_ids[t] : 0;
            } else if (ckd_tokenize(tok, s.captions[k], row, (int)T, 0, NULL, NULL, err)) {
                ckd_sample_free(&s);
                ckd_error_prefix(err, "caption %zu of sample %lld", k, (long long)index[i]);
                goto out;
            }
        }
        ckd_sample_free(&s);
    }
    if (!ids || !owner) {
        ckd_errorf(err, "out of memory for captions");
        goto out;
    }
    *ids_out = ids, *owner_out = owner, *m_out = m;
    return 0;
out:
    free(ids);
    free(owner);
    return rc;
}

/* Keeps the first of each set of identical rows of ids [M, T], moved to the
 * front in order of first appearance: *U distinct rows, text[m] the one row
 * m equals. Open addressing on a hash of the row. */
static int distinct_rows(int32_t *ids, int64_t M, int64_t T, int32_t *text, int64_t *U, ckd_error *err)
{
    int64_t cap = 16;
    while (cap < 2 * M)
        cap *= 2;
    int32_t *slot = malloc((size_t)cap * sizeof *slot);
    if (!slot)
        return ckd_errorf(err, "out of memory for %lld captions", (long long)M);
    memset(slot, 0xff, (size_t)cap * sizeof *slot); /* -1: empty */
    int64_t u = 0;
    for (int64_t m = 0; m < M; m++) {
        const int32_t *row = ids + m * T;
        uint64_t h = 1469598103934665603ull; /* FNV-1a over the token ids */
        for (int64_t t = 0; t < T; t++)
            h = (h ^ (uint32_t)row[t]) * 1099511628211ull;
        int64_t k = (int64_t)(h & (uint64_t)(cap - 1));
        while (slot[k] >= 0 && memcmp(ids + (int64_t)slot[k] * T, row, (size_t)T * sizeof *row))
            k = (k + 1) & (cap - 1);
        if (slot[k] < 0) {
            /* u ≤ m: the rows before u are final, row m moves forward. */
            memmove(ids + u * T, row, (size_t)T * sizeof *row);
            slot[k] = (int32_t)u++;
        }
        text[m] = slot[k];
    }
    free(slot);
    *U = u;
    return 0;
}

/* Encodes the captions ids [M, T] of images owner[m] and measures retrieval
 * under o->retrieval_match; ids may be reordered. */
static int retrieval(ckd_model *m, ckd_ctx *c, const ckd_eval_opts *o, const float *img, int64_t n, int32_t *ids,
                     const int32_t *owner, int64_t M, int64_t T, ckd_eval_result *r, ckd_error *err)
{
    int64_t D = ckd_model_embed_dim(m), U = M;
    int32_t *text = NULL;
    float *txt = NULL;
    int rc = -1;
    if (o->retrieval_match == CKD_RETRIEVAL_MATCH_TEXT) {
        if (!(text = malloc((size_t)M * sizeof *text))) {
            ckd_errorf(err, "out of memory for %lld captions", (long long)M);
            goto out;
        }
        if (distinct_rows(ids, M, T, text, &U, err))
            goto out;
    }
    if (!(txt = malloc((size_t)(U * D) * sizeof *txt))) {
        ckd_errorf(err, "out of memory for %lld caption embeddings", (long long)U);
        goto out;
    }
    if (train_encode_texts(m, c, ids, U, T, o->batch_size, 1, txt, err))
        goto out;
    rc = text ? ckd_retrieval_eval_matches(img, n, txt, U, D, owner, text, M, &r->retrieval, err)
              : ckd_retrieval_eval(img, n, txt, owner, M, D, &r->retrieval, err);
    r->has_retrieval = rc == 0;
    r->retrieval_match = o->retrieval_match;
out:
    free(text);
    free(txt);
    return rc;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Zero-shot accuracy and calibration from image and class embeddings. */
static int zero_shot(ckd_model *m, const ckd_eval_opts *o, const float *img, const int32_t *labels, int64_t n,
                     const float *cls, int64_t K, ckd_eval_result *r, ckd_error *err)
{
    int64_t D = ckd_model_embed_dim(m);
    /* a classifier: img holds its raw logits and cls is the identity, so z = logits */
    int classifier = ckd_model_is_classifier(m);
    if (o->zero_shot) {
        if (ckd_zero_shot_eval(img, labels, n, cls, K, D, &r->zero_shot, err))
            return -1;
        r->has_zero_shot = 1;
    }
    if (!o->calibration)
        return 0;
    float *probs = malloc((size_t)(n * K) * sizeof *probs);
    double *z = malloc((size_t)K * sizeof *z); /* one row's logits, any number of classes */
    if (!probs || !z) {
        free(probs);
        free(z);
        return ckd_errorf(err, "out of memory for %lld x %lld probabilities", (long long)n, (long long)K);
    }
    double lambda = classifier ? 1.0 : exp(ckd_model_logit_scale(m)->data[0]);
    for (int64_t i = 0; i < n; i++) {
        double mx = -INFINITY, sum = 0;
        for (int64_t k = 0; k < K; k++) {
            double s = 0;
            for (int64_t d = 0; d < D; d++)
                s += (double)img[i * D + d] * cls[k * D + d];
            z[k] = lambda * s;
            mx = fmax(mx, z[k]);
        }
        for (int64_t k = 0; k < K; k++)
            sum += (z[k] = exp(z[k] - mx));
        for (int64_t k = 0; k < K; k++)
            probs[i * K + k] = (float)(z[k] / sum);
    }
    free(z);
    int rc = ckd_calibration_eval(probs, labels, n, K, o->calibration_bins, &r->calibration, err);
    free(probs);
    r->has_calibration = rc == 0;
    return rc;
}

int ckd_evaluate(ckd_model *m, const json_t *spec, const char *base_dir, const ckd_eval_opts *opts,
                 ckd_eval_result *r, ckd_error *err)
{
    ckd_eval_opts o;
    if (opts)
        o = *opts;
    else
        ckd_eval_opts_init(&o);
    memset(r, 0, sizeof *r);
    double t0 = now_s();
    /* Under MPI every rank evaluates its share: all must get through the
     * set-up (one agreement) before the first collective. */
    ckd_dataset *ds = ckd_dataset_open(spec, base_dir, err);
    if (!ds)
        return ckdi_dist_agree(-1, err);
    ckd_tokenizer *tok = NULL;
    ckd_ctx *c = ckd_ctx_new(0, 0, err);
    float *img = NULL, *cls = NULL;
    int32_t *labels = NULL, *ids = NULL, *owner = NULL;
    int64_t *index = NULL, n = 0, M = 0;
    int rc = -1;
    size_t N = ckd_dataset_size(ds);
    /* tm: the text tower that classifies and retrieves m's images */
    ckd_model *tm = ckd_model_has_text(m) ? m : o.text_model;
    int classifier = ckd_model_is_classifier(m);
    int64_t D = ckd_model_embed_dim(m), T = tm ? ckd_model_get_info(tm)->context_length : 0;
    int64_t K = (int64_t)ckd_dataset_n_classes(ds);
    int bad = -1;
    if (classifier && K > 0 && K != D) {
        ckd_errorf(err, "the classifier has %lld outputs, the evaluation data %lld classes", (long long)D,
                   (long long)K);
    } else if (!classifier && tm && tm != m && ckd_model_embed_dim(tm) != D) {
        ckd_errorf(err, "the image-only model embeds in %lld dimensions, the text model in %lld", (long long)D,
                   (long long)ckd_model_embed_dim(tm));
    } else if (c && (tok = ckd_tokenizer_load_default(err))) {
        ckd_ctx_set_grad(c, 0);
        img = malloc(N * (size_t)D * sizeof *img);
        labels = malloc(N * sizeof *labels);
        index = malloc(N * sizeof *index);
        bad = !img || !labels || !index ? ckd_errorf(err, "out of memory for %zu embeddings", N) : 0;
    }
    if (ckdi_dist_agree(bad, err))
        goto out;
    /* a classifier's raw logits: softmax gives its probabilities (calibration) */
    if (encode_rows(m, c, ds, NULL, o.batch_size, CKD_LOADER_FAIL, 0, !classifier, 1, img, NULL, labels, index, &n,
                    err))
        goto out;
    r->n_images = n;
    int has_labels = n > 0;
    for (int64_t i = 0; i < n; i++)
        has_labels &= labels[i] >= 0 && labels[i] < K;
    int64_t NT = o.n_templates ? (int64_t)o.n_templates : (int64_t)ckd_dataset_n_templates(ds);
    if (classifier && (o.zero_shot || o.calibration) && K > 0 && has_labels) {
        if (!(cls = calloc((size_t)(K * K), sizeof *cls))) {
            ckd_errorf(err, "out of memory");
            goto out;
        }
        for (int64_t k = 0; k < K; k++)
            cls[k * K + k] = 1.0f;
        if (zero_shot(m, &o, img, labels, n, cls, K, r, err))
            goto out;
    } else if (tm && (o.zero_shot || o.calibration) && K > 0 && NT > 0 && has_labels) {
        if (!(cls = malloc((size_t)(K * D) * sizeof *cls))) {
            ckd_errorf(err, "out of memory");
            goto out;
        }
        if (train_class_embeddings(tm, c, tok, ds, &o, T, cls, err) ||
            zero_shot(tm, &o, img, labels, n, cls, K, r, err))
            goto out;
    }
    if (tm && !classifier && o.retrieval) {
        if (train_caption_ids(ds, tok, index, n, T, &ids, &owner, &M, err))
            goto out;
        if (M > 0 && retrieval(tm, c, &o, img, n, ids, owner, M, T, r, err))
            goto out;
    }
    r->seconds = now_s() - t0;
    rc = 0;
out:
    free(img), free(cls), free(labels), free(ids), free(owner), free(index);
    ckd_tokenizer_free(tok);
    ckd_ctx_free(c);
    ckd_dataset_close(ds);
    return rc;
}

json_t *ckd_eval_result_json(const ckd_eval_result *r)
{
    json_t *o = json_object();
    if (r->has_zero_shot)
        json_object_set_new(o, "zero_shot", json_pack("{s:f, s:f, s:I}", "top1", r->zero_shot.top1, "top5",
                                                      r->zero_shot.top5, "n", (json_int_t)r->zero_shot.n));
    if (r->has_retrieval) {
        const ckd_retrieval *t = &r->retrieval;
        json_t *rt = json_object(), *chance = json_object();
        static const char *const keys[6] = {"i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10"};
        for (int k = 0; k < 6; k++) {
            json_object_set_new(rt, keys[k], json_real(k < 3 ? t->i2t[k] : t->t2i[k - 3]));
            json_object_set_new(chance, keys[k], json_real(k < 3 ? t->i2t_chance[k] : t->t2i_chance[k - 3]));
        }
        json_object_set_new(rt, "n_images", json_integer(t->n_images));
        json_object_set_new(rt, "n_texts", json_integer(t->n_texts));
        json_object_set_new(rt, "match", json_string(ckd_retrieval_match_name(r->retrieval_match)));
        json_object_set_new(rt, "chance", chance);
        json_object_set_new(o, "retrieval", rt);
    }
    if (r->has_calibration) {
        const ckd_calibration *k = &r->calibration;
        json_object_set_new(o, "calibration",
                            json_pack("{s:f, s:f, s:f, s:f, s:I}", "top1", k->top1, "ece", k->ece, "wrong_conf",
                                      k->wrong_conf, "wrong_true_prob", k->wrong_true_prob, "n_wrong",
                                      (json_int_t)k->n_wrong));
    }
    json_object_set_new(o, "n_images", json_integer(r->n_images));
    return o;
}

const char *ckd_eval_result_str(const ckd_eval_result *r, char *buf, size_t cap)
{
    size_t k = 0;
    buf[0] = '\0';
    if (r->has_zero_shot)
        k += (size_t)snprintf(buf + k, cap - k, "zero-shot top1 %.2f%% top5 %.2f%%", 100 * r->zero_shot.top1,
                              100 * r->zero_shot.top5);
    const ckd_retrieval *t = &r->retrieval;
    if (r->has_retrieval && k < cap)
        k += (size_t)snprintf(buf + k, cap - k,
                              "%si2t R@1/5/10 %.1f/%.1f/%.1f%% t2i R@1/5/10 %.1f/%.1f/%.1f%% (%s match; chance R@5 "
                              "%.1f/%.1f%%)",
                              k ? " | " : "", 100 * t->i2t[0], 100 * t->i2t[1], 100 * t->i2t[2], 100 * t->t2i[0],
                              100 * t->t2i[1], 100 * t->t2i[2], ckd_retrieval_match_name(r->retrieval_match),
                              100 * t->i2t_chance[1], 100 * t->t2i_chance[1]);
    if (r->has_calibration && k < cap)
        snprintf(buf + k, cap - k, "%sECE %.3f", k ? " | " : "", r->calibration.ece);
    return buf;
}
