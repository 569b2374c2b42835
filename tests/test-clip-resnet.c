/* The clip plugin with CLIP's ModifiedResNet as its image tower (open_clip's
 * RN50/RN101 layout), and with no text tower ("towers": "image").
 *
 * An OpenCLIP ResNet CLIP is assembled from two fixtures checked against
 * PyTorch elsewhere: the ModifiedResNet of resnet/clip-modified-resnet
 * (embed 16) and the text tower of hf-clip/tiny-clip-gelu (embed 16, in
 * OpenCLIP names), in a model directory as OpenCLIP writes one
 * (open_clip_config.json with a text_cfg + open_clip_model.safetensors).
 * Loaded through ckd_model_from_pretrained, its towers must give each
 * fixture's reference outputs; saved, it reads back identical. */
#include <criterion/criterion.h>
#include <unistd.h>

#include "clip_test_util.h"
#include "clipkd/ops.h"

static void setup(void) { open_registry(); }
static void teardown(void) { close_registry(); }

TestSuite(clip_resnet, .init = setup, .fini = teardown);

/* Copies into w the tensors of src under "visual." (visual = 1) or the
 * others (visual = 0), in their own dtypes. */
static void copy_tensors(ckd_st_writer *w, const ckd_safetensors *src, int visual)
{
    ckd_error err = {{0}};
    for (size_t i = 0; i < ckd_st_count(src); i++) {
        const ckd_st_tensor *t = ckd_st_at(src, i);
        if ((strncmp(t->name, "visual.", 7) == 0) != visual)
            continue;
        cr_assert_eq(ckd_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &err), 0, "%s", err.msg);
    }
}

static char dir[64];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/ckd-clip-rn-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char p[128];
    snprintf(p, sizeof p, "%s/open_clip_config.json", dir);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs("{\"embed_dim\": 16, \"vision_cfg\": {\"layers\": [1, 1, 1, 1], \"width\": 8, \"image_size\": 64,"
          " \"head_width\": 128},\n \"text_cfg\": {\"context_length\": 77, \"vocab_size\": 49408, \"width\": 24,"
          " \"heads\": 3, \"layers\": 3}}\n", f);
    fclose(f);
    ckd_safetensors *text = open_st(fixture("hf-clip/tiny-clip-gelu/open_clip_model.safetensors"));
    ckd_safetensors *vis = open_st(fixture("resnet/clip-modified-resnet/open_clip_visual.safetensors"));
    ckd_st_writer *w = ckd_st_writer_new();
    copy_tensors(w, text, 0);
    copy_tensors(w, vis, 1);
    ckd_error err = {{0}};
    snprintf(p, sizeof p, "%s/open_clip_model.safetensors", dir);
    cr_assert_eq(ckd_st_writer_save(w, p, &err), 0, "%s", err.msg);
    ckd_st_writer_free(w);
    ckd_st_close(text);
    ckd_st_close(vis);
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}

/* Image output against the ModifiedResNet reference (eval mode), text
 * output (normalised) against the tiny CLIP's text_embeds. */
static void expect_towers_match(ckd_model *m)
{
    ckd_ctx *c = new_ctx();
    ckd_ctx_set_grad(c, 0);
    ckd_safetensors *rref = open_st(fixture("resnet/clip-modified-resnet/reference.safetensors"));
    const ckd_st_tensor *pt;
    float *px = ref_f32(rref, "input.pixel_values", &pt);
    ckd_tensor *x = ckd_tensor_from(c, 4, (const int64_t[]){pt->shape[0], pt->shape[1], pt->shape[2], pt->shape[3]},
                                    px);
    double e = max_abs_vs_ref(rref, "eval.output", ckd_model_encode_image(m, c, x, 1.0f, NULL));
    cr_expect_leq(e, 1e-4, "ResNet image tower: max abs error %g", e);
    ckd_safetensors *tref = open_st(fixture("hf-clip/tiny-clip-gelu/reference.safetensors"));
    const ckd_st_tensor *it = ckd_st_find(tref, "input_ids");
    int32_t ids[6 * 77];
    ckd_error err = {{0}};
    cr_assert_eq(ckd_st_to_i32(it, ids, 6 * 77, &err), 0, "%s", err.msg);
    ckd_tensor *t = ckd_l2_normalize(c, ckd_model_encode_text(m, c, ids, 6, 77, NULL), 1e-12f);
    float *want = ref_f32(tref, "text_embeds", NULL);
    ckd_tensor *w = ckd_l2_normalize(c, ckd_tensor_from(c, 2, (const int64_t[]){6, 16}, want), 1e-12f);
    double te = 0;
    for (int64_t i = 0; t && i < t->n; i++)
        te = fmax(te, fabs((double)t->data[i] - w->data[i]));
    cr_expect(t != NULL, "%s", ckd_ctx_error(c));
    cr_expect_leq(te, 1e-4, "text tower: max abs error %g", te);
    free(px);
    free(want);
    ckd_st_close(rref);
    ckd_st_close(tref);
    ckd_ctx_free(c);
}

Test(clip_resnet, open_clip_resnet_clip_directory_matches_both_references)
{
    make_dir();
    ckd_error err = {{0}};
    ckd_model *m = ckd_model_from_pretrained(reg, dir, &err);
    cr_assert_not_null(m, "%s", err.msg);
    cr_expect_str_eq(ckd_model_plugin_name(m), "clip");
    cr_expect(ckd_model_has_text(m));
    cr_expect_eq(ckd_model_n_buffers(m), 3 * 19, "19 BatchNorms, 3 buffers each");
    expect_towers_match(m);

    /* saved (clipkd.json: no HF config describes a ResNet CLIP) and read back */
    char out[128];
    snprintf(out, sizeof out, "%s/saved", dir);
    cr_assert_eq(ckd_model_save_pretrained(m, out, &err), 0, "%s", err.msg);
    char p[160];
    snprintf(p, sizeof p, "%s/clipkd.json", out);
    cr_expect_eq(access(p, F_OK), 0, "no clipkd.json");
    ckd_model *m2 = ckd_model_from_pretrained(reg, out, &err);
    cr_assert_not_null(m2, "%s", err.msg);
    expect_towers_match(m2);
    ckd_model_free(m2);
    ckd_model_free(m);
    remove_dir();
}

Test(clip_resnet, a_resnet_clip_trains_through_both_towers)
{
    json_error_t je;
    json_t *cfg = json_loads("{\"embed_dim\": 8, \"vision\": {\"arch\": \"modified\", \"layers\": [1, 1, 1, 1],"
                             " \"width\": 4, \"heads\": 2, \"image_size\": 32},"
                             " \"text\": {\"context_length\": 8, \"width\": 8, \"heads\": 2, \"layers\": 1}}",
                             0, &je);
    ckd_error err = {{0}};
    ckd_model *m = ckd_model_new(test_plugin(reg, CKD_PLUGIN_MODEL, "clip"), cfg, "cfg", 1, 5, &err);
    json_decref(cfg);
    cr_assert_not_null(m, "%s", err.msg);
    ckd_ctx *c = new_ctx();
    ckd_ctx_set_training(c, 1);
    ckd_tensor *x = ckd_tensor_zeros(c, 4, (const int64_t[]){2, 3, 32, 32});
    for (int64_t i = 0; i < x->n; i++)
        x->data[i] = (float)((i * 37) % 11) / 11.0f - 0.5f;
    int32_t ids[16] = {49406, 320, 1125, 49407, 49407, 49407, 49407, 49407,
                       49406, 518, 49407, 49407, 49407, 49407, 49407, 49407};
    ckd_tensor *img = ckd_model_encode_image(m, c, x, 1.0f, NULL), *txt = ckd_model_encode_text(m, c, ids, 2, 8, NULL);
    ckd_tensor *loss = ckd_sum_all(c, ckd_mul(c, img, txt));
    cr_assert_eq(ckd_backward(c, loss, &err), 0, "%s / %s", err.msg, ckd_ctx_error(c));
    ckd_tensor *conv1 = ckd_model_find_param(m, "visual.conv1.weight"),
               *tok = ckd_model_find_param(m, "text_model.embeddings.token_embedding.weight");
    cr_assert(conv1 && tok);
    cr_expect_gt(l2(conv1->grad, conv1->n), 0.0, "no gradient reached the ResNet stem");
    cr_expect_gt(l2(tok->grad, tok->n), 0.0, "no gradient reached the text tower");
    /* patch masking needs a ViT */
    ckd_ctx_reset(c);
    cr_expect_null(ckd_model_encode_image(m, c, x, 0.5f, NULL));
    cr_expect(strstr(ckd_ctx_error(c), "ViT") != NULL, "%s", ckd_ctx_error(c));
    ckd_ctx_free(c);
    ckd_model_free(m);
}

Test(clip_resnet, image_only_clip_has_no_text_parameters)
{
    json_error_t je;
    json_t *cfg = json_loads("{\"embed_dim\": 8, \"towers\": \"image\", \"vision\": {\"image_size\": 28,"
                             " \"patch_size\": 7, \"width\": 8, \"layers\": 1, \"heads\": 2}}",
                             0, &je);
    ckd_error err = {{0}};
    ckd_model *m = ckd_model_new(test_plugin(reg, CKD_PLUGIN_MODEL, "clip"), cfg, "cfg", 1, 5, &err);
    json_decref(cfg);
    cr_assert_not_null(m, "%s", err.msg);
    cr_expect_eq(ckd_model_has_text(m), 0);
    cr_expect_null(ckd_model_logit_scale(m));
    for (int i = 0; i < ckd_model_n_params(m); i++)
        cr_expect(strncmp(ckd_model_param(m, i)->name, "text", 4) != 0, "%s", ckd_model_param(m, i)->name);
    ckd_model_free(m);
    /* without towers: "image", a text tower is required */
    cfg = json_loads("{\"embed_dim\": 8, \"vision\": {\"image_size\": 28, \"patch_size\": 7, \"width\": 8,"
                     " \"layers\": 1, \"heads\": 2}}", 0, &je);
    m = ckd_model_new(test_plugin(reg, CKD_PLUGIN_MODEL, "clip"), cfg, "cfg.json", 1, 5, &err);
    json_decref(cfg);
    cr_expect_null(m);
    cr_expect(strstr(err.msg, "text: required") != NULL, "%s", err.msg);
    /* ResNet layers need the arch */
    cfg = json_loads("{\"embed_dim\": 8, \"towers\": \"image\", \"vision\": {\"image_size\": 32, \"width\": 8,"
                     " \"layers\": [1, 1, 1, 1]}}", 0, &je);
    m = ckd_model_new(test_plugin(reg, CKD_PLUGIN_MODEL, "clip"), cfg, "cfg.json", 1, 5, &err);
    json_decref(cfg);
    cr_expect_null(m);
    cr_expect(strstr(err.msg, "vision.layers") && strstr(err.msg, "modified"), "%s", err.msg);
}
