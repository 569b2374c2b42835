/* models/clip — the two towers' forward passes, built from ops.
 *
 * The same code serves training (ops record on the tape) and inference (the
 * caller turns gradients off with ckd_ctx_set_grad). It follows HF's
 * CLIPVisionTransformer / CLIPTextTransformer op for op, so hidden states can
 * be compared with transformers' output_hidden_states. */
#include "config.h"

#include <string.h>

#include "clip.h"

/* One pre-norm encoder layer (HF CLIPEncoderLayer):
 *   x [B, T, C]
 *   h = x + out_proj(attn(q_proj(ln1 x), k_proj(ln1 x), v_proj(ln1 x)))   q,k,v [B, T, C], heads of C/H
 *   y = h + fc2(act(fc1(ln2 h)))                                         fc1 [B, T, F], F = mlp_width
 * -> y [B, T, C]. Attention is causal in the text tower only. */
static ckd_tensor *layer_forward(ckd_ctx *c, const clip_layer *L, const clip_tower_cfg *t, ckd_tensor *x,
                                 int causal)
{
    ckd_tensor *a = ckd_layernorm(c, x, L->ln1_w, L->ln1_b, t->ln_eps);
    ckd_tensor *q = ckd_linear(c, a, L->q_w, L->q_b);
    ckd_tensor *k = ckd_linear(c, a, L->k_w, L->k_b);
    ckd_tensor *v = ckd_linear(c, a, L->v_w, L->v_b);
    ckd_tensor *o = ckd_linear(c, ckd_attention(c, q, k, v, (int)t->heads, causal), L->o_w, L->o_b);
    ckd_tensor *h = ckd_add(c, x, o);
    ckd_tensor *f = ckd_linear(c, ckd_layernorm(c, h, L->ln2_w, L->ln2_b, t->ln_eps), L->fc1_w, L->fc1_b);
    f = t->act == CLIP_ACT_QUICK_GELU ? ckd_quick_gelu(c, f) : ckd_gelu(c, f);
    return ckd_add(c, h, ckd_linear(c, f, L->fc2_w, L->fc2_b));
}

/* The encoder stack; x [B, T, C] -> [B, T, C]. Records HF's hidden_states:
 * the stack's input, then each layer's output. */
static ckd_tensor *encoder_forward(ckd_ctx *c, const clip_layer *layers, const clip_tower_cfg *t, ckd_tensor *x,
                                   int causal, ckd_tower_out *out)
{
    int record = out && out->want_hidden;
    if (record) {
        out->n_hidden = 0;
        out->hidden[out->n_hidden++] = x;
    }
    for (int64_t i = 0; i < t->layers; i++) {
        x = layer_forward(c, &layers[i], t, x, causal);
        if (record)
            out->hidden[out->n_hidden++] = x;
    }
    return x;
}

/* x [B, T, C] + pos [T, C]. ckd_add broadcasts a trailing-dims suffix, but
 * refuses two operands of equal size and different shapes ([1, T, C] with
 * [T, C], i.e. B = 1), so the table is given the batch's rank then. */
static ckd_tensor *add_positions(ckd_ctx *c, ckd_tensor *x, ckd_tensor *pos)
{
    if (x && pos && x->ndim == 3 && x->shape[0] == 1)
        pos = ckd_reshape(c, pos, 3, (int64_t[]){1, pos->shape[0], pos->shape[1]});
    return ckd_add(c, x, pos);
}

/* Keeps, per sample, CLS (row 0) and a random subset of n_keep of the N patch
 * rows (1..N), in ascending order (order does not matter to a transformer
 * without masks; ascending keeps runs reproducible and easy to inspect).
 * idx receives B·(n_keep + 1) rows. Partial Fisher–Yates per sample. */
static int32_t *mask_rows(ckd_ctx *c, int64_t B, int64_t N, int64_t n_keep)
{
    int32_t *idx = ckd_scratch(c, (size_t)(B * (n_keep + 1)) * sizeof *idx, "clip image masking");
    int32_t *perm = ckd_scratch(c, (size_t)N * sizeof *perm, "clip image masking");
    if (!idx || !perm)
        return NULL;
    ckd_rng *rng = ckd_ctx_rng(c);
    for (int64_t b = 0; b < B; b++) {
        for (int64_t i = 0; i < N; i++)
            perm[i] = (int32_t)(i + 1);
        for (int64_t i = 0; i < n_keep; i++) {
            int64_t j = i + (int64_t)ckd_rng_below(rng, (uint64_t)(N - i));
            int32_t s = perm[i];
            perm[i] = perm[j];
            perm[j] = s;
        }
        /* insertion sort of the kept prefix (n_keep is small next to the matmuls) */
        for (int64_t i = 1; i < n_keep; i++)
            for (int64_t j = i; j > 0 && perm[j - 1] > perm[j]; j--) {
                int32_t s = perm[j];
                perm[j] = perm[j - 1];
                perm[j - 1] = s;
            }
        int32_t *row = idx + b * (n_keep + 1);
        row[0] = 0;
        memcpy(row + 1, perm, (size_t)n_keep * sizeof *perm);
    }
    return idx;
}

/* Image tower (HF CLIPVisionTransformer + visual_projection):
 *   pixels [B, ch, S, S] --conv P×P stride P, no bias--> [B, Cv, g, g] -> [B, N, Cv], N = g²
 *   x = concat(class_embedding, patches) + position_embedding        [B, N+1, Cv]
 *   (masking: x = x[:, {0} ∪ kept]                                    [B, K+1, Cv])
 *   x = pre_layrnorm(x); x = encoder(x)                                [B, T, Cv]
 *   pooled = post_layernorm(x[:, 0])                                   [B, Cv]
 *   -> pooled · visual_projectionᵀ                                     [B, E] */
ckd_tensor *clip_encode_image(void *state, ckd_ctx *c, ckd_tensor *pixels, float keep_ratio, ckd_tower_out *out)
{
    clip_model *m = state;
    const clip_cfg *cfg = &m->cfg;
    if (!pixels || ckd_ctx_failed(c))
        return NULL;
    if (m->rn) {
        if (keep_ratio < 1.0f)
            return ckd_ctx_fail(c, "clip encode_image: patch masking (keep_ratio %g) needs a ViT image tower",
                                (double)keep_ratio);
        if (out)
            out->n_hidden = 0;
        return rn_tower_forward(m->rn, c, pixels, NULL);
    }
    char s0[64];
    if (pixels->ndim != 4 || pixels->shape[1] != cfg->channels || pixels->shape[2] != cfg->image_size ||
        pixels->shape[3] != cfg->image_size)
        return ckd_ctx_fail(c, "clip encode_image: pixels %s, expected [B, %lld, %lld, %lld]",
                            ckd_shape_str(pixels, s0, sizeof s0), (long long)cfg->channels,
                            (long long)cfg->image_size, (long long)cfg->image_size);
    if (!(keep_ratio > 0.0f))
        return ckd_ctx_fail(c, "clip encode_image: keep_ratio %g, expected a value in (0, 1]", (double)keep_ratio);
    int64_t B = pixels->shape[0], Cv = cfg->vision.width, N = clip_n_patches(cfg);

    ckd_tensor *p = ckd_conv2d(c, pixels, m->v_patch, NULL, (int)cfg->patch_size, 0);
    p = ckd_transpose(c, ckd_reshape(c, p, 3, (int64_t[]){B, Cv, N}), 1, 2);
    /* The class token for every sample: B lookups of the one-row table. */
    int32_t *zeros = ckd_scratch(c, (size_t)B * sizeof *zeros, "clip class token");
    if (!zeros)
        return NULL;
    memset(zeros, 0, (size_t)B * sizeof *zeros);
    ckd_tensor *cls = ckd_gather_rows(c, ckd_reshape(c, m->v_class, 2, (int64_t[]){1, Cv}), zeros, B);
    cls = ckd_reshape(c, cls, 3, (int64_t[]){B, 1, Cv});
    ckd_tensor *x = add_positions(c, ckd_concat(c, (ckd_tensor *[]){cls, p}, 2, 1), m->v_pos);
    if (keep_ratio < 1.0f) {
        int64_t n_keep = (int64_t)((double)N * keep_ratio);
        if (n_keep < 1)
            n_keep = 1;
        if (n_keep < N) {
            int32_t *idx = mask_rows(c, B, N, n_keep);
            if (!idx)
                return NULL;
            x = ckd_select_rows(c, x, idx, n_keep + 1);
        }
    }
    x = ckd_layernorm(c, x, m->v_pre_w, m->v_pre_b, cfg->vision.ln_eps);
    x = encoder_forward(c, m->v_layers, &cfg->vision, x, 0, out);
    int32_t *cls_row = zeros; /* row 0 of every sample */
    ckd_tensor *pooled = ckd_reshape(c, ckd_select_rows(c, x, cls_row, 1), 2, (int64_t[]){B, Cv});
    pooled = ckd_layernorm(c, pooled, m->v_post_w, m->v_post_b, cfg->vision.ln_eps);
    if (out) {
        out->last_hidden = x;
        out->pooled = pooled;
    }
    return ckd_linear(c, pooled, m->v_proj, NULL);
}

/* HF CLIPTextTransformer's pooling row. transformers ≥ 4.31: with the legacy
 * config value eos_token_id == 2, argmax(ids) (OpenAI's rule: the end-of-text
 * id 49407 is the largest, and argmax returns its first occurrence); else the
 * first position holding eos_token_id. Where a row has no eos_token_id HF
 * would read position 0; we fall back to argmax instead, which is what every
 * CLIP before that change did. */
int64_t clip_eot_index(const clip_cfg *cfg, const int32_t *ids, int64_t T)
{
    if (cfg->eos_token_id != 2)
        for (int64_t t = 0; t < T; t++)
            if (ids[t] == cfg->eos_token_id)
                return t;
    int64_t best = 0;
    for (int64_t t = 1; t < T; t++)
        if (ids[t] > ids[best])
            best = t;
    return best;
}

/* Text tower (HF CLIPTextTransformer + text_projection):
 *   x = token_embedding[ids] + position_embedding[:T]     [B, T, Ct]
 *   x = final_layer_norm(encoder(x, causal))               [B, T, Ct]
 *   pooled = x[b, eot(b)]                                  [B, Ct]
 *   -> pooled · text_projectionᵀ                           [B, E]
 * Because attention is causal, rows after the last pooled row never reach
 * the result; without `out` the sequence is cut there (77 -> ~20 tokens for
 * typical captions), with `out` all T rows are computed for the hidden states. */
ckd_tensor *clip_encode_text(void *state, ckd_ctx *c, const int32_t *ids, int64_t B, int64_t T, ckd_tower_out *out)
{
    clip_model *m = state;
    const clip_cfg *cfg = &m->cfg;
    if (ckd_ctx_failed(c))
        return NULL;
    if (cfg->image_only)
        return ckd_ctx_fail(c, "clip encode_text: this model has no text tower (\"towers\": \"image\")");
    if (!ids || B < 1 || T < 1 || T > cfg->context_length)
        return ckd_ctx_fail(c, "clip encode_text: %lld x %lld ids, expected at least one sequence of 1..%lld tokens",
                            (long long)B, (long long)T, (long long)cfg->context_length);
    int32_t *eot = ckd_scratch(c, (size_t)B * sizeof *eot, "clip text pooling");
    if (!eot)
        return NULL;
    int64_t Tc = 1;
    for (int64_t b = 0; b < B; b++) {
        eot[b] = (int32_t)clip_eot_index(cfg, ids + b * T, T);
        if (eot[b] + 1 > Tc)
            Tc = eot[b] + 1;
    }
    if (out)
        Tc = T;
    const int32_t *use = ids;
    if (Tc < T) {
        int32_t *cut = ckd_scratch(c, (size_t)(B * Tc) * sizeof *cut, "clip text ids");
        if (!cut)
            return NULL;
        for (int64_t b = 0; b < B; b++)
            memcpy(cut + b * Tc, ids + b * T, (size_t)Tc * sizeof *cut);
        use = cut;
    }
    int64_t Ct = cfg->text.width;
    ckd_tensor *x = ckd_reshape(c, ckd_gather_rows(c, m->t_tok, use, B * Tc), 3, (int64_t[]){B, Tc, Ct});
    x = add_positions(c, x, ckd_slice(c, m->t_pos, 0, 0, Tc));
    x = encoder_forward(c, m->t_layers, &cfg->text, x, 1, out);
    x = ckd_layernorm(c, x, m->t_final_w, m->t_final_b, cfg->text.ln_eps);
    ckd_tensor *pooled = ckd_reshape(c, ckd_select_rows(c, x, eot, 1), 2, (int64_t[]){B, Ct});
    if (out) {
        out->last_hidden = x;
        out->pooled = pooled;
    }
    return ckd_linear(c, pooled, m->t_proj, NULL);
}
