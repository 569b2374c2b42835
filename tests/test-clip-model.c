/* Tests for the clip model plugin against Hugging Face transformers:
 * both tiny fixture models (tests/fixtures/hf-clip, made by transformers 5.17)
 * must reproduce every hidden state, the last hidden states, pooled outputs,
 * features, normalised embeddings and logits of reference.safetensors within
 * 1e-4; the OpenCLIP-named and F16 files load to the same model; saving and
 * loading round-trip; the inference and masking paths behave; shipped
 * configurations are valid; bad files and configurations are refused with
 * messages that name the problem. */
#include "config.h"

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* mkdtemp */
#endif

#include <sys/stat.h>
#include <unistd.h>

#include "clip_test_util.h"

#define TOL 1e-4

/* ---- conformance ------------------------------------------------------------ */

typedef struct run_out {
    ckd_tower_out img, txt;
    ckd_tensor *img_feat, *txt_feat, *img_emb, *txt_emb, *logits_per_image;
} run_out;

/* The HF forward of CLIPModel on the reference inputs, in the context c. */
static void run_reference_inputs(ckd_model *m, ckd_ctx *c, const ckd_safetensors *ref, run_out *o)
{
    const ckd_st_tensor *pt, *it;
    float *pix = ref_f32(ref, "pixel_values", &pt);
    it = ckd_st_find(ref, "input_ids");
    cr_assert_not_null(it);
    int64_t B = it->shape[0], T = it->shape[1];
    int32_t *ids = malloc((size_t)(B * T) * sizeof *ids);
    ckd_error err = {{0}};
    cr_assert_eq(ckd_st_to_i32(it, ids, (size_t)(B * T), &err), 0, "%s", err.msg);
    ckd_tensor *px = ckd_tensor_from(c, 4, pt->shape, pix);
    memset(o, 0, sizeof *o);
    o->img.want_hidden = o->txt.want_hidden = 1;
    o->img_feat = ckd_model_encode_image(m, c, px, 1.0f, &o->img);
    o->txt_feat = ckd_model_encode_text(m, c, ids, B, T, &o->txt);
    o->img_emb = ckd_l2_normalize(c, o->img_feat, 0.0f);
    o->txt_emb = ckd_l2_normalize(c, o->txt_feat, 0.0f);
    ckd_tensor *sim = ckd_matmul_ex(c, o->img_emb, 0, o->txt_emb, 1);
    o->logits_per_image = ckd_mul(c, sim, ckd_exp(c, ckd_model_logit_scale(m)));
    cr_assert_eq(ckd_ctx_check(c, &err), 0, "%s", err.msg);
    free(pix);
    free(ids);
}

/* The model m (the fixture `name`'s architecture, weights from `from`)
 * against transformers' outputs for that fixture. */
static void conformance_of(const char *name, ckd_model *m, const char *from)
{
    char rel[256];
    snprintf(rel, sizeof rel, "hf-clip/%s/reference.safetensors", name);
    ckd_safetensors *ref = open_st(fixture(rel));
    ckd_ctx *c = new_ctx();
    ckd_ctx_set_grad(c, 0);
    run_out o;
    run_reference_inputs(m, c, ref, &o);
    const ckd_model_info *info = ckd_model_get_info(m);
    cr_assert_eq(o.img.n_hidden, info->vision_layers + 1);
    cr_assert_eq(o.txt.n_hidden, info->text_layers + 1);
    double worst_vh = 0, worst_th = 0;
    char key[64];
    for (int i = 0; i < o.img.n_hidden; i++) {
        snprintf(key, sizeof key, "vision_hidden_state_%d", i);
        double e = max_abs_vs_ref(ref, key, o.img.hidden[i]);
        cr_expect_leq(e, TOL, "%s %s: max abs error %g", name, key, e);
        worst_vh = fmax(worst_vh, e);
    }
    for (int i = 0; i < o.txt.n_hidden; i++) {
        snprintf(key, sizeof key, "text_hidden_state_%d", i);
        double e = max_abs_vs_ref(ref, key, o.txt.hidden[i]);
        cr_expect_leq(e, TOL, "%s %s: max abs error %g", name, key, e);
        worst_th = fmax(worst_th, e);
    }
    struct {
        const char *key;
        ckd_tensor *t;
    } rest[] = {
        {"vision_last_hidden_state", o.img.last_hidden}, {"vision_pooler_output", o.img.pooled},
        {"text_last_hidden_state", o.txt.last_hidden},   {"text_pooler_output", o.txt.pooled},
        {"image_features", o.img_feat},                  {"text_features", o.txt_feat},
        {"image_embeds", o.img_emb},                     {"text_embeds", o.txt_emb},
        {"logits_per_image", o.logits_per_image},
    };
    char report[1200];
    int k = snprintf(report, sizeof report, "%s (%s) worst abs error: vision_hidden_state_* %.2e, "
                     "text_hidden_state_* %.2e", name, from, worst_vh, worst_th);
    for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++) {
        double e = max_abs_vs_ref(ref, rest[i].key, rest[i].t);
        cr_expect_leq(e, TOL, "%s %s: max abs error %g", name, rest[i].key, e);
        k += snprintf(report + k, sizeof report - (size_t)k, ", %s %.2e", rest[i].key, e);
    }
    cr_log_info("%s", report);
    if (getenv("CKD_TEST_VERBOSE"))
        fprintf(stderr, "%s\n", report);
    ckd_ctx_free(c);
    ckd_st_close(ref);
}

static void conformance(const char *name)
{
    open_registry();
    ckd_model *m = load_fixture_model(name);
    conformance_of(name, m, "model.safetensors");
    ckd_model_free(m);
    close_registry();
}

Test(conformance, quickgelu_matches_transformers) { conformance("tiny-clip-quickgelu"); }

/* The same model from PyTorch checkpoints of its OpenCLIP state dict
 * (torch.save's ZIP and legacy formats, and open_clip's training format
 * with the optimizer and a module. prefix): read without running them. */
static ckd_model *empty_like(ckd_model *m)
{
    ckd_error err = {{0}};
    const ckd_plugin *p = ckd_registry_find(reg, CKD_PLUGIN_MODEL, "clip", &err);
    cr_assert_not_null(p, "%s", err.msg);
    ckd_model *e = ckd_model_new(p, ckd_model_config(m), "test", 0, 0, &err);
    cr_assert_not_null(e, "%s", err.msg);
    return e;
}

Test(conformance, quickgelu_from_pytorch_checkpoints)
{
    open_registry();
    ckd_model *hf = load_fixture_model("tiny-clip-quickgelu");
    const char *files[] = {"state_dict.pt", "state_dict_legacy.pt", "training_checkpoint.pt"};
    for (int i = 0; i < 3; i++) {
        ckd_model *m = empty_like(hf);
        char rel[256];
        snprintf(rel, sizeof rel, "pytorch-checkpoints/%s", files[i]);
        ckd_error err = {{0}};
        cr_assert_eq(ckd_model_load(m, fixture(rel), &err), 0, "%s", err.msg);
        conformance_of("tiny-clip-quickgelu", m, files[i]);
        ckd_model_free(m);
    }
    ckd_model_free(hf);
    close_registry();
}
Test(conformance, gelu_matches_transformers) { conformance("tiny-clip-gelu"); }

/* ---- weight formats ------------------------------------------------------------ */

/* Largest |a − b| over all parameters; with f16 set, in units of binary16's
 * rounding bound for a (half an ulp: |a|·2^-11, or 2^-25 among subnormals). */
static double param_diff(ckd_model *a, ckd_model *b, int f16, const char **where)
{
    double worst = 0;
    cr_assert_eq(ckd_model_n_params(a), ckd_model_n_params(b));
    for (int i = 0; i < ckd_model_n_params(a); i++) {
        ckd_tensor *x = ckd_model_param(a, i), *y = ckd_model_param(b, i);
        cr_assert_str_eq(x->name, y->name);
        cr_assert_eq(x->n, y->n, "%s", x->name);
        for (int64_t j = 0; j < x->n; j++) {
            double d = fabs((double)x->data[j] - (double)y->data[j]);
            if (f16)
                d /= fmax(fabs((double)x->data[j]) * 0x1p-11, 0x1p-25);
            if (d > worst) {
                worst = d;
                *where = x->name;
            }
        }
    }
    return worst;
}

static void load_into(ckd_model *m, const char *path)
{
    ckd_error err = {{0}};
    cr_assert_eq(ckd_model_load(m, path, &err), 0, "%s", err.msg);
}

Test(weights, openclip_names_give_the_same_model, .init = open_registry, .fini = close_registry)
{
    const char *names[] = {"tiny-clip-quickgelu", "tiny-clip-gelu"};
    for (int k = 0; k < 2; k++) {
        ckd_model *hf = load_fixture_model(names[k]);
        ckd_model *oc = empty_like(hf);
        char rel[256];
        snprintf(rel, sizeof rel, "hf-clip/%s/open_clip_model.safetensors", names[k]);
        load_into(oc, fixture(rel));
        const char *where = "";
        double d = param_diff(hf, oc, 0, &where);
        cr_expect_eq(d, 0.0, "%s: OpenCLIP load differs by %g at %s", names[k], d, where);
        ckd_model_free(oc);
        ckd_model_free(hf);
    }
}

Test(weights, fp16_file_is_the_model_rounded, .init = open_registry, .fini = close_registry)
{
    ckd_model *hf = load_fixture_model("tiny-clip-gelu");
    ckd_model *h = empty_like(hf);
    load_into(h, fixture("hf-clip/tiny-clip-gelu/model.fp16.safetensors"));
    const char *where = "";
    double d = param_diff(hf, h, 1, &where);
    cr_expect_leq(d, 1.0 + 1e-6, "F16 load differs by %g rounding bounds at %s", d, where);
    cr_expect_gt(d, 0.0, "the F16 file should not be bit-identical to F32");
    ckd_model_free(h);
    ckd_model_free(hf);
}

static char *temp_dir(void)
{
    char *d = strdup("/tmp/ckd-clip-test-XXXXXX");
    cr_assert_not_null(mkdtemp(d));
    return d;
}

static void rm_dir(char *d)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    cr_expect_eq(system(cmd), 0);
    free(d);
}

Test(weights, save_and_load_round_trip, .init = open_registry, .fini = close_registry)
{
    ckd_model *m = load_fixture_model("tiny-clip-quickgelu");
    char *dir = temp_dir();
    char path[4200];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    ckd_error err = {{0}};
    cr_assert_eq(ckd_model_save(m, path, &err), 0, "%s", err.msg);
    ckd_model *b = empty_like(m);
    load_into(b, path);
    const char *where = "";
    cr_expect_eq(param_diff(m, b, 0, &where), 0.0, "%s", where);
    ckd_model_free(b);
    /* a directory that transformers and clipkd both read */
    snprintf(path, sizeof path, "%s/pretrained", dir);
    cr_assert_eq(ckd_model_save_pretrained(m, path, &err), 0, "%s", err.msg);
    b = ckd_model_from_pretrained(reg, path, &err);
    cr_assert_not_null(b, "%s", err.msg);
    cr_expect_eq(param_diff(m, b, 0, &where), 0.0, "%s", where);
    const ckd_model_info *x = ckd_model_get_info(m), *y = ckd_model_get_info(b);
    cr_expect_eq(memcmp(x, y, sizeof *x), 0, "config.json written by save_pretrained reads back differently");
    ckd_model_free(b);
    ckd_model_free(m);
    rm_dir(dir);
}

/* BF16 in two shards with an index, as transformers writes large checkpoints. */
Test(weights, sharded_bf16_checkpoint, .init = open_registry, .fini = close_registry)
{
    ckd_model *m = load_fixture_model("tiny-clip-gelu");
    char *dir = temp_dir();
    ckd_error err = {{0}};
    ckd_st_writer *w[2] = {ckd_st_writer_new(), ckd_st_writer_new()};
    json_t *map = json_object();
    int n = ckd_model_n_params(m);
    for (int i = 0; i < n; i++) {
        ckd_tensor *p = ckd_model_param(m, i);
        uint16_t *h = malloc((size_t)(p->n ? p->n : 1) * sizeof *h);
        for (int64_t j = 0; j < p->n; j++)
            h[j] = ckd_f32_to_bf16(p->data[j]);
        int k = i < n / 2 ? 0 : 1;
        cr_assert_eq(ckd_st_writer_add_copy(w[k], p->name, CKD_DT_BF16, p->ndim, p->shape, h, &err), 0, "%s",
                     err.msg);
        free(h);
        json_object_set_new(map, p->name, json_string(k ? "model-00002-of-00002.safetensors"
                                                        : "model-00001-of-00002.safetensors"));
    }
    char path[4200];
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/model-0000%d-of-00002.safetensors", dir, k + 1);
        cr_assert_eq(ckd_st_writer_save(w[k], path, &err), 0, "%s", err.msg);
        ckd_st_writer_free(w[k]);
    }
    json_t *index = json_pack("{s:{s:i}, s:o}", "metadata", "total_size", 0, "weight_map", map);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    cr_assert_eq(json_dump_file(index, path, 0), 0);
    json_decref(index);
    ckd_model *b = empty_like(m);
    load_into(b, dir);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        ckd_tensor *x = ckd_model_param(m, i), *y = ckd_model_param(b, i);
        for (int64_t j = 0; j < x->n; j++) /* bfloat16 keeps 8 significant bits: rounding errs by at most |x|·2^-8 */
            worst = fmax(worst, fabs(x->data[j] - y->data[j]) / fmax(fabs(x->data[j]) * 0x1p-8, 1e-30));
    }
    cr_expect_leq(worst, 1.0, "BF16 load differs by %g ulps", worst);
    ckd_model_free(b);
    ckd_model_free(m);
    rm_dir(dir);
}

/* ---- forward paths ---------------------------------------------------------------- */

static float *copy_data(const ckd_tensor *t)
{
    float *d = malloc((size_t)t->n * sizeof *d);
    memcpy(d, t->data, (size_t)t->n * sizeof *d);
    return d;
}

Test(forward, grad_and_no_grad_paths_agree_and_text_cut_is_exact, .init = open_registry, .fini = close_registry)
{
    ckd_model *m = load_fixture_model("tiny-clip-quickgelu");
    ckd_safetensors *ref = open_st(fixture("hf-clip/tiny-clip-quickgelu/reference.safetensors"));
    ckd_ctx *c = new_ctx();
    run_out o;
    run_reference_inputs(m, c, ref, &o); /* gradients on */
    cr_assert_not_null(o.img_feat->node, "the training path must record on the tape");
    float *img = copy_data(o.img_feat);
    ckd_ctx_reset(c);
    ckd_ctx_set_grad(c, 0);
    /* without hidden states the text is cut after the last end-of-text token */
    const ckd_st_tensor *it = ckd_st_find(ref, "input_ids");
    int64_t B = it->shape[0], T = it->shape[1];
    int32_t *ids = malloc((size_t)(B * T) * sizeof *ids);
    ckd_error err = {{0}};
    cr_assert_eq(ckd_st_to_i32(it, ids, (size_t)(B * T), &err), 0);
    ckd_tensor *tf = ckd_model_encode_text(m, c, ids, B, T, NULL);
    cr_assert_not_null(tf, "%s", ckd_ctx_error(c));
    cr_expect_null(tf->node, "no tape in no-grad mode");
    cr_expect_leq(max_abs_vs_ref(ref, "text_features", tf), TOL);
    const ckd_st_tensor *pt;
    float *pix = ref_f32(ref, "pixel_values", &pt);
    ckd_tensor *f = ckd_model_encode_image(m, c, ckd_tensor_from(c, 4, pt->shape, pix), 1.0f, NULL);
    cr_assert_not_null(f, "%s", ckd_ctx_error(c));
    for (int64_t i = 0; i < f->n; i++)
        cr_assert_eq(f->data[i], img[i], "grad and no-grad image features differ at %lld", (long long)i);
    free(pix);
    free(ids);
    free(img);
    ckd_ctx_free(c);
    ckd_st_close(ref);
    ckd_model_free(m);
}

Test(forward, patch_masking_keeps_cls_and_a_subset, .init = open_registry, .fini = close_registry)
{
    ckd_model *m = load_fixture_model("tiny-clip-gelu"); /* 48 px, patch 16: 9 patches */
    ckd_safetensors *ref = open_st(fixture("hf-clip/tiny-clip-gelu/reference.safetensors"));
    ckd_ctx *c = new_ctx();
    const ckd_st_tensor *pt;
    float *pix = ref_f32(ref, "pixel_values", &pt);
    ckd_tensor *px = ckd_tensor_from(c, 4, pt->shape, pix);
    ckd_tower_out o = {.want_hidden = 1};
    ckd_tensor *full = ckd_model_encode_image(m, c, px, 1.0f, NULL);
    ckd_tensor *masked = ckd_model_encode_image(m, c, px, 0.5f, &o);
    cr_assert_not_null(masked, "%s", ckd_ctx_error(c));
    cr_expect_eq(o.last_hidden->shape[1], 1 + 4, "keep floor(9 · 0.5) = 4 patches and CLS");
    cr_expect_eq(masked->shape[0], full->shape[0]);
    cr_expect_eq(masked->shape[1], full->shape[1]);
    double d = 0;
    for (int64_t i = 0; i < full->n; i++)
        d = fmax(d, fabs(full->data[i] - masked->data[i]));
    cr_expect_gt(d, 1e-3, "masking must change the embedding");
    /* gradients flow through the masked path */
    ckd_tensor *loss = ckd_sum_all(c, ckd_mul(c, masked, masked));
    ckd_error err = {{0}};
    cr_assert_eq(ckd_backward(c, loss, &err), 0, "%s", err.msg);
    ckd_tensor *patch = ckd_model_find_param(m, "vision_model.embeddings.patch_embedding.weight");
    cr_assert_not_null(patch->grad);
    cr_expect_null(ckd_model_encode_image(m, c, px, 0.0f, NULL), "keep_ratio 0 is refused");
    cr_expect(strstr(ckd_ctx_error(c), "keep_ratio") != NULL, "%s", ckd_ctx_error(c));
    free(pix);
    ckd_ctx_free(c);
    ckd_st_close(ref);
    ckd_model_free(m);
}

Test(forward, legacy_eos_rule_pools_at_argmax)
{
    /* Pooling is checked through the model on the fixtures; here the rule
     * itself, through two configs that differ only in eos_token_id. */
    open_registry();
    ckd_error err = {{0}};
    const ckd_plugin *p = ckd_registry_find(reg, CKD_PLUGIN_MODEL, "clip", &err);
    cr_assert_not_null(p, "%s", err.msg);
    const char *cfg_new = "{\"embed_dim\": 4, \"act\": \"gelu\", \"vision\": {\"image_size\": 8, \"patch_size\": 4,"
                          " \"width\": 8, \"layers\": 1, \"heads\": 2}, \"text\": {\"context_length\": 6,"
                          " \"vocab_size\": 50, \"width\": 8, \"layers\": 1, \"heads\": 2, \"eos_token_id\": 7}}";
    json_t *j = json_loads(cfg_new, 0, NULL);
    ckd_model *a = ckd_model_new(p, j, "test", 1, 3, &err);
    cr_assert_not_null(a, "%s", err.msg);
    json_object_set_new(json_object_get(j, "text"), "eos_token_id", json_integer(2));
    ckd_model *b = ckd_model_new(p, j, "test", 0, 0, &err);
    cr_assert_not_null(b, "%s", err.msg);
    for (int i = 0; i < ckd_model_n_params(a); i++)
        memcpy(ckd_model_param(b, i)->data, ckd_model_param(a, i)->data, (size_t)ckd_model_param(a, i)->n * 4);
    /* id 7 at position 2, max id 40 at position 4 */
    const int32_t ids[6] = {1, 3, 7, 5, 40, 9};
    ckd_ctx *c = new_ctx();
    ckd_tower_out oa = {0}, ob = {0};
    ckd_model_encode_text(a, c, ids, 1, 6, &oa);
    ckd_model_encode_text(b, c, ids, 1, 6, &ob);
    cr_assert_not_null(oa.pooled, "%s", ckd_ctx_error(c));
    for (int k = 0; k < 8; k++) {
        cr_expect_eq(oa.pooled->data[k], oa.last_hidden->data[2 * 8 + k], "eos 7 pools at its first occurrence");
        cr_expect_eq(ob.pooled->data[k], ob.last_hidden->data[4 * 8 + k], "legacy eos 2 pools at argmax");
    }
    json_decref(j);
    ckd_ctx_free(c);
    ckd_model_free(a);
    ckd_model_free(b);
    close_registry();
}

/* ---- configurations and initialisation -------------------------------------------- */

static json_t *named(const char *name)
{
    char dir[4096];
    const char *src = getenv("CKD_TEST_SRCDIR");
    snprintf(dir, sizeof dir, "%s/models/clip/configs", src ? src : ".");
    setenv("CLIPKD_MODEL_CONFIG_DIR", dir, 1);
    ckd_error err = {{0}};
    json_t *j = ckd_clip_config_named(name, &err);
    cr_assert_not_null(j, "%s", err.msg);
    return j;
}

Test(config, shipped_configs_validate, .init = open_registry, .fini = close_registry)
{
    ckd_error err = {{0}};
    const ckd_plugin *p = ckd_registry_find(reg, CKD_PLUGIN_MODEL, "clip", &err);
    cr_assert_not_null(p, "%s", err.msg);
    const char *all[] = {"ViT-B-32", "ViT-B-16", "ViT-L-14", "ViT-T-16", "fmnist-teacher", "fmnist-student"};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        json_t *j = named(all[i]);
        ckd_params *pp = ckd_params_for(p, j, all[i], &err);
        cr_expect_not_null(pp, "%s", err.msg);
        ckd_params_free(pp);
        json_decref(j);
    }
    /* the small ones are built, initialised as CLIP does */
    json_t *j = named("fmnist-student");
    ckd_model *m = ckd_model_new(p, j, "fmnist-student", 1, 42, &err);
    cr_assert_not_null(m, "%s", err.msg);
    cr_expect_float_eq(ckd_model_logit_scale(m)->data[0], (float)log(1 / 0.07), 1e-6);
    ckd_tensor *ln = ckd_model_find_param(m, "vision_model.encoder.layers.1.layer_norm2.weight");
    ckd_tensor *q = ckd_model_find_param(m, "text_model.encoder.layers.0.self_attn.q_proj.weight");
    ckd_tensor *qb = ckd_model_find_param(m, "text_model.encoder.layers.0.self_attn.q_proj.bias");
    cr_assert(ln && q && qb);
    cr_expect_eq(ln->data[0], 1.0f);
    cr_expect_eq(qb->data[3], 0.0f);
    double ss = 0;
    for (int64_t i = 0; i < q->n; i++)
        ss += (double)q->data[i] * q->data[i];
    double std = sqrt(ss / (double)q->n), want = pow(64, -0.5) * pow(2 * 2, -0.5);
    cr_expect(fabs(std - want) < 0.1 * want, "q_proj std %g, expected %g", std, want);
    cr_expect_eq(ckd_model_get_info(m)->n_patches, 16);
    ckd_model_free(m);
    json_decref(j);
}

/* Where named configurations are looked for (clipkd/model.h): the source
 * layout that CLIPKD_DATA_DIR names when running from the sources (the
 * plugin's own folder, or its sibling under models/), the installed layout
 * under a copied data directory, and the clip-only override. */
static void expect_dir(const char *plugin, const char *want)
{
    char dir[4096];
    ckd_error err = {{0}};
    cr_assert_eq(ckd_model_configs_dir(plugin, dir, sizeof dir, &err), 0, "%s", err.msg);
    cr_expect_str_eq(dir, want);
}

Test(config, where_named_configs_are_found)
{
    unsetenv("CLIPKD_MODEL_CONFIG_DIR");
    setenv("CLIPKD_DATA_DIR", "/src/models/clip", 1);
    expect_dir("clip", "/src/models/clip/configs");
    expect_dir("vit", "/src/models/vit/configs"); /* another plugin's: the sibling in the sources */
    setenv("CLIPKD_DATA_DIR", "/opt/share/clipkd", 1);
    expect_dir("clip", "/opt/share/clipkd/models/clip/configs");
    setenv("CLIPKD_MODEL_CONFIG_DIR", "/mine", 1);
    expect_dir("clip", "/mine");
    expect_dir("vit", "/opt/share/clipkd/models/vit/configs");
    /* a plugin that ships none has no names, and that is no error */
    size_t n = 99;
    ckd_error err = {{0}};
    char **names = ckd_model_config_names("vit", &n, &err);
    cr_assert_not_null(names, "%s", err.msg);
    cr_expect_eq(n, 0);
    ckd_model_config_names_free(names, n);
}

Test(config, hf_config_defaults_and_projection_dim)
{
    /* An old-style config: keys missing, a *_config_dict, sub-config projection_dim ignored. */
    json_t *hf = json_loads("{\"projection_dim\": 8, \"text_config\": {\"projection_dim\": 512,"
                            " \"eos_token_id\": 2}, \"vision_config_dict\": {\"patch_size\": 16}}",
                            0, NULL);
    ckd_error err = {{0}};
    json_t *c = ckd_clip_config_from_hf(hf, "config.json", &err);
    cr_assert_not_null(c, "%s", err.msg);
    cr_expect_eq(json_integer_value(json_object_get(c, "embed_dim")), 8);
    const json_t *v = json_object_get(c, "vision"), *t = json_object_get(c, "text");
    cr_expect_eq(json_integer_value(json_object_get(v, "patch_size")), 16);
    cr_expect_eq(json_integer_value(json_object_get(v, "width")), 768);
    cr_expect_eq(json_integer_value(json_object_get(t, "mlp_width")), 2048);
    cr_expect_eq(json_integer_value(json_object_get(t, "eos_token_id")), 2);
    cr_expect_str_eq(json_string_value(json_object_get(t, "act")), "quick_gelu");
    json_decref(c);
    json_object_set_new(json_object_get(hf, "text_config"), "hidden_act", json_string("relu"));
    cr_expect_null(ckd_clip_config_from_hf(hf, "config.json", &err));
    cr_expect(strstr(err.msg, "config.json: text_config.hidden_act \"relu\"") != NULL, "%s", err.msg);
    json_decref(hf);
}

/* ---- bad input ------------------------------------------------------------------------ */

static void expect_create_fails(const char *json, const char *needle)
{
    ckd_error err = {{0}};
    const ckd_plugin *p = ckd_registry_find(reg, CKD_PLUGIN_MODEL, "clip", &err);
    cr_assert_not_null(p, "%s", err.msg);
    json_t *j = json_loads(json, 0, NULL);
    cr_assert_not_null(j, "test config does not parse: %s", json);
    ckd_model *m = ckd_model_new(p, j, "cfg.json", 0, 0, &err);
    cr_expect_null(m, "accepted: %s", json);
    cr_expect(strstr(err.msg, needle) != NULL, "message \"%s\" lacks \"%s\"", err.msg, needle);
    ckd_model_free(m);
    json_decref(j);
}

#define TEXT_OK "\"text\": {\"width\": 8, \"layers\": 1, \"heads\": 2}"
#define VISION_OK "\"vision\": {\"image_size\": 8, \"patch_size\": 4, \"width\": 8, \"layers\": 1, \"heads\": 2}"

Test(bad, impossible_configs, .init = open_registry, .fini = close_registry)
{
    expect_create_fails("{\"embed_dim\": 4, " TEXT_OK ", \"vision\": {\"image_size\": 8, \"patch_size\": 4,"
                        " \"width\": 10, \"layers\": 1, \"heads\": 3}}",
                        "vision.heads: 3 heads do not divide vision.width 10");
    expect_create_fails("{\"embed_dim\": 4, " TEXT_OK ", \"vision\": {\"image_size\": 8, \"patch_size\": 16,"
                        " \"width\": 8, \"layers\": 1, \"heads\": 2}}",
                        "vision.patch_size 16 is larger than vision.image_size 8");
    expect_create_fails("{\"embed_dim\": 0, " TEXT_OK ", " VISION_OK "}", "embed_dim");
    expect_create_fails("{\"embed_dim\": 4, " VISION_OK ", \"text\": {\"width\": 8, \"layers\": 1, \"heads\": 2,"
                        " \"widht\": 3}}",
                        "did you mean \"width\"");
    expect_create_fails("{\"embed_dim\": 4, " VISION_OK "}", "text: required (a text tower)");
    expect_create_fails("{\"embed_dim\": 4, " VISION_OK ", \"text\": {\"width\": 8, \"layers\": 65, \"heads\": 2}}",
                        "layers");
}

/* Writes a copy of the quickgelu fixture's weights with one change. */
enum { DROP, RESHAPE, EXTRA };
static void write_modified(const char *out, int what, const char *victim)
{
    ckd_safetensors *st = open_st(fixture("hf-clip/tiny-clip-quickgelu/model.safetensors"));
    ckd_st_writer *w = ckd_st_writer_new();
    ckd_error err = {{0}};
    for (size_t i = 0; i < ckd_st_count(st); i++) {
        const ckd_st_tensor *t = ckd_st_at(st, i);
        int64_t shape[CKD_ST_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        int nd = t->ndim;
        if (!strcmp(t->name, victim)) {
            if (what == DROP)
                continue;
            if (what == RESHAPE) { /* same bytes, rows and columns swapped */
                int64_t s = shape[0];
                shape[0] = shape[1];
                shape[1] = s;
            }
        }
        cr_assert_eq(ckd_st_writer_add(w, t->name, t->dtype, nd, shape, t->data, &err), 0, "%s", err.msg);
    }
    if (what == EXTRA) {
        float one = 1;
        cr_assert_eq(ckd_st_writer_add_copy(w, victim, CKD_DT_F32, 1, (int64_t[]){1}, &one, &err), 0);
    }
    cr_assert_eq(ckd_st_writer_save(w, out, &err), 0, "%s", err.msg);
    ckd_st_writer_free(w);
    ckd_st_close(st);
}

static void expect_load_fails(ckd_model *m, const char *path, const char *needle)
{
    ckd_error err = {{0}};
    cr_expect_eq(ckd_model_load(m, path, &err), -1, "loaded %s", path);
    cr_expect(strstr(err.msg, needle) != NULL, "message \"%s\" lacks \"%s\"", err.msg, needle);
}

Test(bad, malformed_weight_files, .init = open_registry, .fini = close_registry)
{
    ckd_model *good = load_fixture_model("tiny-clip-quickgelu");
    ckd_model *m = empty_like(good);
    char *dir = temp_dir();
    char path[4200];

    snprintf(path, sizeof path, "%s/reshaped.safetensors", dir);
    write_modified(path, RESHAPE, "text_projection.weight");
    expect_load_fails(m, path, "text_projection.weight has shape [16, 24] in the file, the model expects [24, 16]");

    snprintf(path, sizeof path, "%s/missing.safetensors", dir);
    write_modified(path, DROP, "vision_model.encoder.layers.1.mlp.fc2.bias");
    expect_load_fails(m, path, "1 missing: vision_model.encoder.layers.1.mlp.fc2.bias [48]");

    snprintf(path, sizeof path, "%s/extra.safetensors", dir);
    write_modified(path, EXTRA, "vision_model.encoder.layers.7.mlp.fc2.bias");
    expect_load_fails(m, path, "1 unexpected: vision_model.encoder.layers.7.mlp.fc2.bias [1]");

    /* the model is unchanged by failed loads: still all zeros */
    ckd_tensor *ls = ckd_model_logit_scale(m);
    cr_expect_eq(ls->data[0], 0.0f, "a failed load wrote into the model");

    /* truncated and garbled files: the reader's checks, with the file named */
    FILE *f = fopen(fixture("hf-clip/tiny-clip-quickgelu/model.safetensors"), "rb");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    snprintf(path, sizeof path, "%s/truncated.safetensors", dir);
    f = fopen(path, "wb");
    fwrite(buf, 1, (size_t)n / 2, f);
    fclose(f);
    expect_load_fails(m, path, "truncated.safetensors");
    snprintf(path, sizeof path, "%s/garbled.safetensors", dir);
    memset(buf + 8, '#', 40); /* the JSON header */
    f = fopen(path, "wb");
    fwrite(buf, 1, (size_t)n, f);
    fclose(f);
    expect_load_fails(m, path, "garbled.safetensors");
    snprintf(path, sizeof path, "%s/empty", dir);
    cr_assert_eq(mkdir(path, 0700), 0);
    expect_load_fails(m, path, "no weights");
    free(buf);

    /* OpenCLIP names with a mis-shaped fused projection */
    ckd_error err = {{0}};
    ckd_safetensors *oc = open_st(fixture("hf-clip/tiny-clip-quickgelu/open_clip_model.safetensors"));
    ckd_st_writer *w = ckd_st_writer_new();
    for (size_t i = 0; i < ckd_st_count(oc); i++) {
        const ckd_st_tensor *t = ckd_st_at(oc, i);
        int64_t shape[CKD_ST_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        if (!strcmp(t->name, "transformer.resblocks.0.attn.in_proj_weight"))
            shape[0] = 16, shape[1] = 48;
        cr_assert_eq(ckd_st_writer_add(w, t->name, t->dtype, t->ndim, shape, t->data, &err), 0, "%s", err.msg);
    }
    snprintf(path, sizeof path, "%s/oc.safetensors", dir);
    cr_assert_eq(ckd_st_writer_save(w, path, &err), 0, "%s", err.msg);
    ckd_st_writer_free(w);
    ckd_st_close(oc);
    expect_load_fails(m, path, "transformer.resblocks.0.attn.in_proj_weight has shape [16, 48] in the file, the "
                               "model expects [48, 16]");

    ckd_model_free(m);
    ckd_model_free(good);
    rm_dir(dir);
}

Test(bad, bad_inputs_to_the_towers, .init = open_registry, .fini = close_registry)
{
    ckd_model *m = load_fixture_model("tiny-clip-quickgelu");
    ckd_ctx *c = new_ctx();
    ckd_tensor *px = ckd_tensor_zeros(c, 4, (int64_t[]){1, 3, 16, 16});
    cr_expect_null(ckd_model_encode_image(m, c, px, 1.0f, NULL));
    cr_expect(strstr(ckd_ctx_error(c), "pixels [1, 3, 16, 16], expected [B, 3, 32, 32]") != NULL, "%s",
              ckd_ctx_error(c));
    ckd_ctx_reset(c);
    int32_t ids[3] = {49406, 60000, 49407};
    cr_expect_null(ckd_model_encode_text(m, c, ids, 1, 3, NULL));
    cr_expect(strstr(ckd_ctx_error(c), "60000") != NULL, "%s", ckd_ctx_error(c));
    ckd_ctx_reset(c);
    cr_expect_null(ckd_model_encode_text(m, c, ids, 1, 78, NULL));
    cr_expect(strstr(ckd_ctx_error(c), "1..77 tokens") != NULL, "%s", ckd_ctx_error(c));
    ckd_ctx_free(c);
    ckd_model_free(m);
}
