/* The resnet model plugin: torchvision's ResNet and CLIP's ModifiedResNet
 * against PyTorch (through `clipkd model-eval`, as a user compares a model),
 * whole-model gradient checks, BatchNorm buffers in save/load, and the
 * errors for impossible configurations and incomplete weights.
 *
 * Fixtures (tests/fixtures/resnet/, see its README.md): model directories
 * as users have them (open_clip_config.json + open_clip_visual.safetensors;
 * torchvision_config.json + model.safetensors), each with reference.safetensors
 * from PyTorch: eval.output (running statistics), train.output (batch
 * statistics), grad.* of sum(train.output · train.r), and the running
 * statistics after that train-mode forward. Targets: outputs within 1e-4
 * absolute, every gradient within 1e-4 relative L2, statistics within 1e-5. */
#include <criterion/criterion.h>
#include <unistd.h>

#include "clip_test_util.h"
#include "clipkd/ops.h"

static void setup(void) { open_registry(); }
static void teardown(void) { close_registry(); }

TestSuite(resnet, .init = setup, .fini = teardown);

/* model-eval --train on a fixture directory, every reference tensor compared. */
static void conforms(const char *rel)
{
    char dir[64] = "/tmp/ckd-resnet-XXXXXX", out[128], args[8192], msg[4096];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(out, sizeof out, "%s/out.safetensors", dir);
    char refp[4200];
    snprintf(refp, sizeof refp, "%s/reference.safetensors", fixture(rel));
    snprintf(args, sizeof args, "model-eval '%s' --inputs '%s' --out '%s' --train", fixture(rel), refp, out);
    int rc = test_run_clipkd(args, msg, sizeof msg);
    cr_assert_eq(rc, 0, "model-eval %s: exit %d: %s", rel, rc, msg);
    ckd_safetensors *got = open_st(out), *ref = open_st(refp);
    double worst[3] = {0}, worst_grad = 0;
    char worst_name[200] = "";
    int n_grads = 0, n_stats = 0;
    for (size_t i = 0; i < ckd_st_count(ref); i++) {
        const ckd_st_tensor *r = ckd_st_at(ref, i);
        if (!strncmp(r->name, "input.", 6) || !strcmp(r->name, "train.r") || !strncmp(r->name, "eval_grad.", 10))
            continue;
        const ckd_st_tensor *g = ckd_st_find(got, r->name);
        cr_expect_not_null(g, "%s: model-eval wrote no %s", rel, r->name);
        if (!g)
            continue;
        int64_t n = ckd_st_numel(r);
        cr_assert_eq(ckd_st_numel(g), n, "%s: %lld elements, reference %lld", r->name, (long long)ckd_st_numel(g),
                     (long long)n);
        float *a = ref_f32(got, r->name, NULL), *b = ref_f32(ref, r->name, NULL);
        if (!strncmp(r->name, "grad.", 5) && l2(b, n) < 1e-6) {
            /* the attention pool's key bias: softmax ignores a per-row
             * constant, so its true gradient is 0 and both sides hold
             * rounding noise */
            cr_expect_leq(l2(a, n), 1e-5, "%s: %s should vanish, has L2 norm %g", rel, r->name, l2(a, n));
        } else if (!strncmp(r->name, "grad.", 5)) {
            double e = rel_l2(a, b, n);
            cr_expect_leq(e, 1e-4, "%s: %s relative L2 error %g", rel, r->name, e);
            if (e > worst_grad)
                worst_grad = e, snprintf(worst_name, sizeof worst_name, "%s", r->name);
            n_grads++;
        } else {
            int k = !strncmp(r->name, "after_train_forward.", 20) ? 2 : !strncmp(r->name, "train.", 6) ? 1 : 0;
            double tol = k == 2 ? 1e-5 : 1e-4, e = 0;
            for (int64_t j = 0; j < n; j++)
                e = fmax(e, fabs((double)a[j] - b[j]));
            cr_expect_leq(e, tol, "%s: %s max abs error %g", rel, r->name, e);
            worst[k] = fmax(worst[k], e);
            n_stats += k == 2;
        }
        free(a);
        free(b);
    }
    cr_expect_gt(n_grads, 2);
    cr_expect_gt(n_stats, 2);
    cr_log_info("%s: eval %.2g, train %.2g abs; %d gradients, worst rel L2 %.2g (%s); %d statistics, worst %.2g",
                rel, worst[0], worst[1], n_grads, worst_grad, worst_name, n_stats, worst[2]);
    ckd_st_close(got);
    ckd_st_close(ref);
    unlink(out);
    rmdir(dir);
}

Test(resnet, open_clip_modified_resnet_matches_pytorch) { conforms("resnet/clip-modified-resnet"); }
Test(resnet, torchvision_basic_block_matches_pytorch) { conforms("resnet/torchvision-basic"); }
Test(resnet, torchvision_bottleneck_groups_cifar_stem_matches_pytorch) { conforms("resnet/torchvision-bottleneck"); }
Test(resnet, modified_resnet_two_blocks_per_stage_matches_pytorch) { conforms("resnet/modified-resnet-2222"); }

/* ---- eval-mode gradients ------------------------------------------------------------
 * BatchNorm frozen on its running statistics with gradients on (fine-tuning
 * with a locked tower's statistics): every gradient against the fixtures'
 * eval_grad.* from PyTorch. Whole-network finite differences are no check
 * here: a step that moves a ReLU input or a max-pool winner across its kink
 * changes float32 differences by more than any tolerance that would catch a
 * bug, so the ops are gradient-checked one by one (test-ops-grad) and the
 * composition is checked against PyTorch. */
static void eval_gradients_conform(const char *rel)
{
    ckd_error err = {{0}};
    ckd_model *m = ckd_model_from_pretrained(reg, fixture(rel), &err);
    cr_assert_not_null(m, "%s", err.msg);
    char refp[4200];
    snprintf(refp, sizeof refp, "%s/reference.safetensors", fixture(rel));
    ckd_safetensors *ref = open_st(refp);
    const ckd_st_tensor *pt, *rt;
    float *px = ref_f32(ref, "input.pixel_values", &pt), *r = ref_f32(ref, "train.r", &rt);
    ckd_tensor *x = ckd_param_new(4, (const int64_t[]){pt->shape[0], pt->shape[1], pt->shape[2], pt->shape[3]},
                                  "input", &err);
    memcpy(x->data, px, (size_t)x->n * sizeof *px);
    ckd_ctx *c = new_ctx();
    ckd_ctx_set_training(c, 0);
    ckd_tensor *y = ckd_model_encode_image(m, c, x, 1.0f, NULL);
    ckd_tensor *rr = ckd_tensor_from(c, 2, y ? y->shape : (const int64_t[]){0, 0}, r);
    cr_assert_eq(ckd_backward(c, ckd_sum_all(c, ckd_mul(c, y, rr)), &err), 0, "%s", err.msg);
    double worst = 0;
    char worst_name[300] = "";
    int n = 0;
    for (int i = -1; i < ckd_model_n_params(m); i++) {
        ckd_tensor *p = i < 0 ? x : ckd_model_param(m, i);
        char key[300];
        snprintf(key, sizeof key, "eval_grad.%s", p->name);
        float *g = ref_f32(ref, key, NULL);
        if (l2(g, p->n) < 1e-6) {
            cr_expect_leq(l2(p->grad, p->n), 1e-5, "%s: %s should vanish", rel, key);
        } else {
            double e = rel_l2(p->grad, g, p->n);
            cr_expect_leq(e, 1e-4, "%s: %s relative L2 error %g", rel, key, e);
            if (e > worst)
                worst = e, snprintf(worst_name, sizeof worst_name, "%s", key);
        }
        free(g);
        n++;
    }
    cr_log_info("%s: %d eval-mode gradients, worst rel L2 %.2g (%s)", rel, n, worst, worst_name);
    ckd_ctx_free(c);
    ckd_param_free(x);
    free(px);
    free(r);
    ckd_st_close(ref);
    ckd_model_free(m);
}

Test(resnet, eval_mode_gradients_torchvision_basic) { eval_gradients_conform("resnet/torchvision-basic"); }
Test(resnet, eval_mode_gradients_torchvision_bottleneck) { eval_gradients_conform("resnet/torchvision-bottleneck"); }
Test(resnet, eval_mode_gradients_modified_resnet) { eval_gradients_conform("resnet/modified-resnet-2222"); }

static ckd_model *make_model(const char *json, uint64_t seed)
{
    json_error_t je;
    json_t *cfg = json_loads(json, 0, &je);
    cr_assert_not_null(cfg, "%s", je.text);
    ckd_error err = {{0}};
    ckd_model *m = ckd_model_new(test_plugin(reg, CKD_PLUGIN_MODEL, "resnet"), cfg, "test", 1, seed, &err);
    json_decref(cfg);
    cr_assert_not_null(m, "%s", err.msg);
    return m;
}

/* ---- buffers: saved, loaded, kept apart from parameters ----------------------------- */

Test(resnet, buffers_round_trip_and_are_not_parameters)
{
    ckd_model *m = make_model("{\"layers\": [1, 1], \"width\": 4, \"stem\": \"cifar\", \"image_size\": 8,"
                              " \"num_classes\": 3}", 1);
    cr_expect_eq(ckd_model_has_text(m), 0);
    cr_expect_neq(ckd_model_is_classifier(m), 0);
    cr_expect_null(ckd_model_logit_scale(m));
    int nb = ckd_model_n_buffers(m);
    cr_assert_eq(nb, 3 * 6); /* 6 BatchNorms (stem, 2 per block, layer2 downsample) x 3 buffers */
    for (int i = 0; i < nb; i++) {
        cr_expect_eq(ckd_model_buffer(m, i)->requires_grad, 0);
        for (int j = 0; j < ckd_model_n_params(m); j++)
            cr_expect_neq(ckd_model_param(m, j), ckd_model_buffer(m, i));
    }
    /* a train-mode forward moves the statistics and counts the batch */
    ckd_ctx *c = new_ctx();
    ckd_ctx_set_training(c, 1);
    ckd_tensor *px = ckd_tensor_zeros(c, 4, (const int64_t[]){2, 3, 8, 8});
    for (int64_t i = 0; i < px->n; i++)
        px->data[i] = (float)(i % 7) - 3.0f;
    cr_assert_not_null(ckd_model_encode_image(m, c, px, 1.0f, NULL), "%s", ckd_ctx_error(c));
    ckd_tensor *count = ckd_model_buffer(m, 2), *mean = ckd_model_buffer(m, 0);
    cr_expect_str_eq(count->name, "bn1.num_batches_tracked");
    cr_expect_float_eq(count->data[0], 1.0f, 0);
    int moved = 0;
    for (int64_t i = 0; i < mean->n; i++)
        moved |= mean->data[i] != 0.0f;
    cr_expect(moved, "bn1.running_mean did not move in train mode");
    /* saved and loaded into a fresh model: identical, count included */
    char dir[64] = "/tmp/ckd-resnet-XXXXXX", path[128];
    cr_assert_not_null(mkdtemp(dir));
    ckd_error err = {{0}};
    cr_assert_eq(ckd_model_save_pretrained(m, dir, &err), 0, "%s", err.msg);
    ckd_model *m2 = ckd_model_from_pretrained(reg, dir, &err);
    cr_assert_not_null(m2, "%s", err.msg);
    for (int i = 0; i < nb; i++)
        cr_expect_eq(memcmp(ckd_model_buffer(m, i)->data, ckd_model_buffer(m2, i)->data,
                            (size_t)ckd_model_buffer(m, i)->n * sizeof(float)), 0, "%s differs after reload",
                     ckd_model_buffer(m, i)->name);
    /* eval mode leaves the statistics alone */
    float before = mean->data[0];
    ckd_ctx_reset(c);
    ckd_ctx_set_training(c, 0);
    cr_assert_not_null(ckd_model_encode_image(m, c, px, 1.0f, NULL));
    cr_expect_float_eq(mean->data[0], before, 0);
    cr_expect_float_eq(count->data[0], 1.0f, 0);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/clipkd.json", dir);
    unlink(path);
    rmdir(dir);
    ckd_ctx_free(c);
    ckd_model_free(m2);
    ckd_model_free(m);
}

/* ---- bad configurations and weights --------------------------------------------------- */

static void refused(const char *json, const char *expect)
{
    json_error_t je;
    json_t *cfg = json_loads(json, 0, &je);
    cr_assert_not_null(cfg, "%s", je.text);
    ckd_error err = {{0}};
    ckd_model *m = ckd_model_new(test_plugin(reg, CKD_PLUGIN_MODEL, "resnet"), cfg, "cfg.json", 1, 1, &err);
    json_decref(cfg);
    cr_expect_null(m, "%s was accepted", json);
    ckd_model_free(m);
    cr_expect(strstr(err.msg, expect) != NULL, "message for %s: \"%s\", expected it to mention \"%s\"", json,
              err.msg, expect);
}

Test(resnet, impossible_configurations_are_refused_naming_the_key)
{
    refused("{\"arch\": \"modified\", \"layers\": [1, 1, 1, 1], \"image_size\": 8, \"embed_dim\": 8}",
            "leaves no pixels at stage 3");
    refused("{\"layers\": [1, 1, 1, 1, 1], \"num_classes\": 10}", "layers: 5 stages");
    refused("{\"layers\": [], \"num_classes\": 10}", "layers: 0 stages");
    refused("{\"layers\": [1, 1], \"num_classes\": 10, \"embed_dim\": 8}", "not both");
    refused("{\"layers\": [1, 1]}", "num_classes, embed_dim");
    refused("{\"arch\": \"modified\", \"layers\": [1, 1, 1, 1], \"width\": 8, \"heads\": 3, \"embed_dim\": 8}",
            "heads: 3 heads do not divide");
    refused("{\"arch\": \"modified\", \"layers\": [1, 1, 1, 1], \"image_size\": 63, \"embed_dim\": 8}",
            "multiple of 32");
    refused("{\"arch\": \"modified\", \"layers\": [1, 1], \"embed_dim\": 8}", "4 stages");
    refused("{\"layers\": [1, 1], \"groups\": 2, \"num_classes\": 10}", "basic block supports only");
    refused("{\"layers\": [1, \"two\"], \"num_classes\": 10}", "layers");
}

Test(resnet, missing_batchnorm_statistics_are_named)
{
    ckd_model *m = make_model("{\"layers\": [1], \"width\": 4, \"stem\": \"cifar\", \"image_size\": 8,"
                              " \"num_classes\": 3}", 1);
    char dir[64] = "/tmp/ckd-resnet-XXXXXX", path[128];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    /* every parameter, no buffers */
    ckd_st_writer *w = ckd_st_writer_new();
    ckd_error err = {{0}};
    for (int i = 0; i < ckd_model_n_params(m); i++) {
        ckd_tensor *p = ckd_model_param(m, i);
        cr_assert_eq(ckd_st_writer_add(w, p->name, CKD_DT_F32, p->ndim, p->shape, p->data, &err), 0);
    }
    cr_assert_eq(ckd_st_writer_save(w, path, &err), 0, "%s", err.msg);
    ckd_st_writer_free(w);
    float keep = ckd_model_param(m, 0)->data[0];
    cr_expect_neq(ckd_model_load(m, path, &err), 0);
    cr_expect(strstr(err.msg, "bn1.running_mean is missing") && strstr(err.msg, "BatchNorm statistic"), "%s",
              err.msg);
    cr_expect_float_eq(ckd_model_param(m, 0)->data[0], keep, 0, "a failed load changed the model");
    unlink(path);
    rmdir(dir);
    ckd_model_free(m);
}

/* ---- shipped configurations ------------------------------------------------------------
 * Each builds, with the parameter count of its reference (torchvision's
 * resnet18/34/50(); open_clip's ModifiedResNet for RN50 / RN101 with
 * open_clip's model_configs). */
Test(resnet, shipped_configurations_have_the_reference_sizes, .timeout = 120)
{
    static const struct {
        const char *name;
        int64_t params;
    } want[] = {{"resnet18", 11689512},          {"resnet34", 21797672}, {"resnet50", 25557032},
                {"RN50", 38316896},              {"RN101", 56259936},    {"cifar-resnet-small", -1},
                {"fmnist-resnet-student", -1}};
    const char *src = getenv("CKD_TEST_SRCDIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/models/resnet", src ? src : ".");
    setenv("CLIPKD_DATA_DIR", dir, 1);
    size_t n = 0;
    ckd_error err = {{0}};
    char **names = ckd_model_config_names("resnet", &n, &err);
    cr_assert_not_null(names, "%s", err.msg);
    cr_expect_eq(n, sizeof want / sizeof *want, "configurations shipped: %zu", n);
    ckd_model_config_names_free(names, n);
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        json_t *cfg = ckd_model_config_shipped("resnet", want[i].name, &err);
        cr_assert_not_null(cfg, "%s", err.msg);
        ckd_model *m = ckd_model_new(test_plugin(reg, CKD_PLUGIN_MODEL, "resnet"), cfg, want[i].name, 0, 0, &err);
        json_decref(cfg);
        cr_assert_not_null(m, "%s: %s", want[i].name, err.msg);
        if (want[i].params > 0)
            cr_expect_eq(ckd_model_param_count(m), want[i].params, "%s: %lld parameters, the reference has %lld",
                         want[i].name, (long long)ckd_model_param_count(m), (long long)want[i].params);
        ckd_model_free(m);
    }
    unsetenv("CLIPKD_DATA_DIR");
}

/* model-eval on inputs that do not fit: exit 2, the file and the tensor named. */
Test(resnet, model_eval_refuses_inputs_that_do_not_fit)
{
    char args[9000], msg[4096];
    const char *tv = fixture("resnet/torchvision-bottleneck");
    snprintf(args, sizeof args, "model-eval '%s' --inputs '%s/model.safetensors' --out /tmp/ckd-never.safetensors",
             tv, tv);
    cr_expect_eq(test_run_clipkd(args, msg, sizeof msg), 2);
    cr_expect(strstr(msg, "model.safetensors: tensor input.pixel_values is missing") != NULL, "%s", msg);
    snprintf(args, sizeof args, "model-eval '%s' --inputs '%s' --out /tmp/ckd-never.safetensors", tv,
             fixture("resnet/torchvision-basic/reference.safetensors"));
    cr_expect_eq(test_run_clipkd(args, msg, sizeof msg), 2);
    cr_expect(strstr(msg, "input.pixel_values") && strstr(msg, "image size"), "%s", msg);
    snprintf(args, sizeof args, "model-eval '%s' --out x.safetensors", tv);
    cr_expect_eq(test_run_clipkd(args, msg, sizeof msg), 2);
    cr_expect(strstr(msg, "--inputs and --out are required") != NULL, "%s", msg);
    cr_expect_neq(access("/tmp/ckd-never.safetensors", F_OK), 0, "a refused run wrote its output");
}
