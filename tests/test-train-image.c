/* Image-only students: a ResNet classifier trained with ce, stopped and
 * resumed bit-identically (BatchNorm running statistics included), and
 * evaluated from its logits; a ResNet image encoder distilled from a tiny
 * CLIP teacher's cached embeddings with l2 and kd on zero-shot logits built
 * from the teacher's class prompts, evaluated with the teacher's text tower;
 * a loss that needs the student's text tower refused before compute. */
#include "config.h"

#include "clipkd/data.h"
#include "clipkd/loader.h"
#include "train_test_util.h"

/* A CIFAR-style ResNet classifier on 192 Fashion-MNIST test images. */
static const char resnet_ce[] =
    "{\"name\": \"rn-ce\", \"seed\": 4,\n"
    " \"student\": {\"model\": \"resnet\", \"config\": {\"layers\": [1, 1], \"width\": 8, \"stem\": \"cifar\",\n"
    "   \"image_size\": 28, \"num_classes\": 10}},\n"
    TINY_FMNIST_DATA(192, "")
    " \"losses\": [{\"name\": \"ce\"}],\n"
    " \"optim\": {\"lr\": 0.003, \"warmup_steps\": 2},\n"
    " \"train\": {\"steps\": 7, \"batch_size\": 16, \"log_every\": 1, \"eval_every\": 4, \"checkpoint_every\": 2}}\n";

Test(train_image, resnet_classifier_resumes_bit_identically, .init = setup, .fini = teardown, .timeout = 120)
{
    write_file("rn.json", resnet_ce);
    ckd_recipe *r = load("rn.json", NULL, 0);
    char a[512], b[512];
    run_dir("a", a, sizeof a);
    run_dir("b", b, sizeof b);
    train_whole_and_stopped(r, a, b, 5); /* the last checkpoint is step 4 */
    resume_and_expect_same(a, b);
    ckd_error err = {{0}};

    /* the final model carries its statistics, moved by 7 train-mode steps */
    char p[1024];
    snprintf(p, sizeof p, "%s/final", a);
    ckd_model *m = ckd_model_from_pretrained(reg, p, &err);
    cr_assert_not_null(m, "%s", err.msg);
    cr_assert_gt(ckd_model_n_buffers(m), 0);
    const ckd_tensor *count = NULL;
    for (int i = 0; i < ckd_model_n_buffers(m); i++)
        if (!strcmp(ckd_model_buffer(m, i)->name, "bn1.num_batches_tracked"))
            count = ckd_model_buffer(m, i);
    cr_assert_not_null(count);
    cr_expect_float_eq(count->data[0], 7.0f, 0, "one batch per step: %g", count->data[0]);
    /* the checkpoint holds them too */
    ckd_safetensors *ck = NULL;
    snprintf(p, sizeof p, "%s/checkpoint.safetensors", a);
    ck = ckd_st_open(p, &err);
    cr_assert_not_null(ck, "%s", err.msg);
    cr_expect_not_null(ckd_st_find(ck, "buffer.layer1.0.bn1.running_var"));
    cr_expect_null(ckd_st_find(ck, "model.layer1.0.bn1.running_var"), "a buffer is not a parameter");
    ckd_st_close(ck);

    /* evaluated from its logits */
    long n;
    char *res = slurp(a, "results.json", &n);
    json_error_t je;
    json_t *rj = json_loads(res, 0, &je);
    cr_assert_not_null(rj, "%s", je.text);
    const json_t *zs = json_object_get(json_object_get(rj, "eval"), "zero_shot");
    cr_expect(json_is_number(json_object_get(zs, "top1")), "%s", res);
    cr_expect_null(json_object_get(json_object_get(rj, "eval"), "retrieval"), "%s", res);
    json_decref(rj);
    free(res);
    ckd_model_free(m);
    ckd_recipe_free(r);
}

/* A tiny CLIP teacher, and an image-only ResNet student of its width. */
static const char teacher[] =
    "{\"name\": \"t\", \"seed\": 3,\n"
    " \"student\": {\"model\": \"clip\", \"config\": {\"embed_dim\": 16,\n"
    "   \"vision\": {\"image_size\": 28, \"patch_size\": 7, \"width\": 16, \"layers\": 1, \"heads\": 2},\n"
    "   \"text\": {\"context_length\": 20, \"width\": 16, \"layers\": 1, \"heads\": 2}}},\n"
    TINY_FMNIST_DATA(192, "")
    " \"losses\": [{\"name\": \"clip\"}],\n"
    " \"optim\": {\"lr\": 0.003},\n"
    " \"train\": {\"steps\": 4, \"batch_size\": 16}}\n";

/* The teacher's data with an image-only ResNet student of its width. */
static const char *student_of(const char *teacher_key, const char *losses)
{
    static char buf[4096];
    snprintf(buf, sizeof buf,
             "{\"name\": \"s\", %s,\n"
             " \"student\": {\"model\": \"resnet\", \"config\": {\"layers\": [1, 1], \"width\": 8,"
             " \"stem\": \"cifar\", \"image_size\": 28, \"embed_dim\": 16}},\n"
             TINY_FMNIST_DATA(192, "")
             " \"losses\": %s,\n"
             " \"optim\": {\"lr\": 0.003},\n"
             " \"train\": {\"steps\": 4, \"batch_size\": 16}}\n",
             teacher_key, losses);
    return buf;
}

Test(train_image, image_encoder_distils_from_cached_teacher, .init = setup, .fini = teardown, .timeout = 120)
{
    write_file("t.json", teacher);
    write_file("s.json", student_of("\"teacher\": {\"recipe\": \"t.json\"}",
                                     "[{\"name\": \"l2\"}, {\"name\": \"kd\"}, {\"name\": \"vl\"}]"));
    ckd_recipe *r = load("s.json", NULL, 0);
    char runs[512], dir[1024];
    run_dir("runs", runs, sizeof runs);
    ckd_error err = {{0}};
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.runs_root = runs;
    cr_assert_eq(ckd_train_run(reg, r, &o, dir, sizeof dir, &err), 0, "%s", err.msg);
    long n;
    char *res = slurp(dir, "results.json", &n);
    cr_expect(strstr(res, "\"l2\"") && strstr(res, "\"kd\"") && strstr(res, "\"vl\""), "%s", res);
    /* zero-shot through the teacher's text tower, and retrieval too */
    cr_expect(strstr(res, "\"zero_shot\"") && strstr(res, "\"retrieval\""), "%s", res);
    free(res);

    /* clipkd eval of the student alone: refused without a text model, and
     * with the teacher's the figures of results.json */
    ckd_recipe *t = load("t.json", NULL, 0);
    char tdir[1024], spec[512];
    ckd_train_run_dir(t, runs, tdir, sizeof tdir);
    snprintf(spec, sizeof spec, "{\"reader\": \"fashion-mnist\", \"split\": \"test\", \"dir\": \"%s\", \"limit\": 48}",
             FMNIST_DIR);
    const char *alone[] = {"eval", dir, "--data", spec, NULL};
    int st = cli_wait(cli_spawn(tmp, alone));
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 2, "eval without a text model: status %d", st);
    const char *with[] = {"eval", dir, "--data", spec, "--text-model", tdir, "--json", NULL};
    cli_run(tmp, with);
    ckd_recipe_free(t);
    ckd_recipe_free(r);
}

Test(train_image, text_losses_are_refused_for_an_image_only_student, .init = setup, .fini = teardown)
{
    write_file("t.json", teacher);
    write_file("s.json", student_of("\"seed\": 1", "[{\"name\": \"clip\"}]"));
    ckd_recipe *r = load("s.json", NULL, 0);
    char d[512];
    run_dir("x", d, sizeof d);
    ckd_error err = {{0}};
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.out_dir = d;
    cr_assert_eq(ckd_train_run(reg, r, &o, NULL, 0, &err), -1);
    cr_expect(strstr(err.msg, "losses[0]") && strstr(err.msg, "no text tower") && strstr(err.msg, "s_txt"), "%s",
              err.msg);
    struct stat sb;
    cr_expect_neq(stat(d, &sb), 0, "nothing is created");
    ckd_recipe_free(r);
}

/* A classifier is evaluated on its raw logits: top-1, and calibration from
 * softmax(logits) — the confidence and the true-class probability on the
 * images it gets wrong — as recomputed here from its outputs. */
Test(train_image, classifier_calibration_is_on_its_logits, .init = setup, .fini = teardown, .timeout = 60)
{
    ckd_error err = {{0}};
    json_t *cfg = json_pack("{s:s, s:s, s:s, s:[i, i], s:i, s:i, s:i}", "arch", "torchvision", "block", "basic",
                            "stem", "cifar", "layers", 1, 1, "width", 8, "image_size", 28, "num_classes", 10);
    ckd_model *m = ckd_model_new(ckd_registry_find(reg, CKD_PLUGIN_MODEL, "resnet", &err), cfg, "test", 1, 3, &err);
    cr_assert_not_null(m, "%s", err.msg);
    /* sharpen the random head so that the probabilities are far from uniform */
    ckd_tensor *w = ckd_model_find_param(m, "fc.weight");
    cr_assert_not_null(w);
    for (int64_t i = 0; i < w->n; i++)
        w->data[i] *= 20.0f;
    json_t *spec = json_pack("{s:s, s:s, s:s, s:i}", "reader", "fashion-mnist", "split", "test", "dir", FMNIST_DIR,
                             "limit", 48);
    ckd_eval_result er;
    cr_assert_eq(ckd_evaluate(m, spec, NULL, NULL, &er, &err), 0, "%s", err.msg);
    cr_assert(er.has_zero_shot && er.has_calibration);

    /* the same 48 images, in order, without augmentation */
    ckd_dataset *ds = ckd_dataset_open(spec, NULL, &err);
    cr_assert_not_null(ds, "%s", err.msg);
    ckd_loader_opts lo;
    ckd_loader_opts_init(&lo);
    lo.batch_size = 48;
    lo.shuffle = 0;
    lo.epochs = 1;
    lo.augment = 0;
    lo.image_size = 28;
    lo.threads = 1;
    ckd_loader *l = ckd_loader_new(ds, &lo, &err);
    cr_assert_not_null(l, "%s", err.msg);
    const ckd_batch *b;
    cr_assert_eq(ckd_loader_next(l, &b, &err), 0, "%s", err.msg);
    ckd_ctx *c = ckd_ctx_new(0, 0, &err);
    ckd_ctx_set_grad(c, 0);
    ckd_tensor *px = ckd_tensor_from(c, 4, (int64_t[]){b->n, 3, 28, 28}, b->pixel_values);
    ckd_tensor *z = ckd_model_encode_image(m, c, px, 1.0f, NULL);
    cr_assert_not_null(z, "%s", ckd_ctx_error(c));
    int right = 0, wrong = 0;
    double conf = 0, truep = 0;
    for (int64_t i = 0; i < b->n; i++) {
        const float *r = z->data + i * 10;
        int best = 0;
        double mx = r[0], sum = 0;
        for (int k = 1; k < 10; k++)
            if (r[k] > r[best])
                best = k, mx = r[k];
        for (int k = 0; k < 10; k++)
            sum += exp(r[k] - mx);
        if (best == b->labels[i]) {
            right++;
        } else {
            wrong++;
            conf += 1.0 / sum;
            truep += exp(r[b->labels[i]] - mx) / sum;
        }
    }
    cr_log_info("48 images: %d right; wrong: confidence %.4f (%.4f), true class %.4f (%.4f)", right,
                er.calibration.wrong_conf, conf / wrong, er.calibration.wrong_true_prob, truep / wrong);
    cr_expect(fabs(er.zero_shot.top1 - right / 48.0) < 1e-9, "top-1 %g vs %g", er.zero_shot.top1, right / 48.0);
    cr_assert_gt(wrong, 0);
    cr_expect_eq(er.calibration.n_wrong, wrong);
    cr_expect(fabs(er.calibration.wrong_conf - conf / wrong) < 1e-4, "wrong-label confidence %g, expected %g",
              er.calibration.wrong_conf, conf / wrong);
    cr_expect(fabs(er.calibration.wrong_true_prob - truep / wrong) < 1e-4, "true-class probability %g, expected %g",
              er.calibration.wrong_true_prob, truep / wrong);
    ckd_ctx_free(c);
    ckd_loader_free(l);
    ckd_dataset_close(ds);
    json_decref(spec);
    json_decref(cfg);
    ckd_model_free(m);
}
