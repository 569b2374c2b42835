/* The trainer on tiny models and a few hundred Fashion-MNIST samples:
 * exact resume (a run stopped mid-epoch and resumed ends with the same bytes
 * as one never stopped), refusals before compute (a loss that needs a
 * teacher, a checkpoint of another recipe, a corrupt checkpoint, class
 * losses the data or the recipe cannot feed), a teacher trained through
 * teacher.recipe and reused, the metrics files, and the student's zero-shot
 * class logits (s_logits): what they are, and ce training on them. */
#include "config.h"

#include "clipkd/data.h"
#include "clipkd/tokenizer.h"
#include "train_test_util.h"

/* A tiny CLIP on 192 test images (12 batches of 16), evaluated on 48. */
static const char base_recipe[] =
    "{\"name\": \"tiny\", \"seed\": 3,\n"
    " \"student\": {\"model\": \"clip\", \"config\": {\"embed_dim\": 16,\n"
    "   \"vision\": {\"image_size\": 28, \"patch_size\": 7, \"width\": 16, \"layers\": 1, \"heads\": 2},\n"
    "   \"text\": {\"context_length\": 20, \"width\": 16, \"layers\": 1, \"heads\": 2}}},\n"
    TINY_FMNIST_DATA(192, ", \"captions\": 2")
    " \"losses\": [{\"name\": \"clip\"}],\n"
    " \"optim\": {\"lr\": 0.003, \"warmup_steps\": 2, \"grad_clip\": 1.0},\n"
    " \"train\": {\"steps\": 7, \"batch_size\": 16, \"accum\": 2, \"log_every\": 1, \"eval_every\": 4,\n"
    "           \"checkpoint_every\": 2}}\n";

Test(train, stopped_and_resumed_run_is_bit_identical, .init = setup, .fini = teardown, .timeout = 120)
{
    write_file("tiny.json", base_recipe);
    ckd_recipe *r = load("tiny.json", NULL, 0);
    char a[512], b[512];
    run_dir("a", a, sizeof a);
    run_dir("b", b, sizeof b);
    /* Stopped after step 5: the last checkpoint is step 4, so step 5 and its
     * metrics lines are done again after the resume. */
    train_whole_and_stopped(r, a, b, 5);
    ckd_error err = {{0}};
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.out_dir = b;
    struct stat sb;
    char p[1024];
    snprintf(p, sizeof p, "%s/final", b);
    cr_assert_neq(stat(p, &sb), 0, "a stopped run has no final weights");
    cr_assert_eq(ckd_train_run(reg, r, &o, NULL, 0, &err), -1, "a fresh run over a checkpoint is refused");
    cr_expect(strstr(err.msg, "--resume") != NULL, "%s", err.msg);
    resume_and_expect_same(a, b);
    char *ma = metrics_without_time(a);
    /* 7 step lines and evaluations at step 4 and at the end. */
    int lines = 0, evals = 0;
    for (char *s = ma; (s = strchr(s, '\n')); s++)
        lines++;
    for (char *s = ma; (s = strstr(s, "\"type\":\"eval\"")); s++)
        evals++;
    cr_expect_eq(lines, 9, "%s", ma);
    cr_expect_eq(evals, 2, "%s", ma);
    free(ma);

    long lr;
    char *res = slurp(a, "results.json", &lr);
    json_error_t je;
    json_t *rj = json_loads(res, 0, &je);
    cr_assert_not_null(rj, "%s", je.text);
    cr_expect_eq(json_integer_value(json_object_get(rj, "steps")), 7);
    const json_t *zs = json_object_get(json_object_get(rj, "eval"), "zero_shot");
    cr_expect(json_is_number(json_object_get(zs, "top1")), "%s", res);
    cr_expect(json_is_number(json_object_get(json_object_get(json_object_get(rj, "eval"), "retrieval"), "t2i_r1")),
              "%s", res);
    json_decref(rj);
    free(res);

    /* The run directory is a model directory for clipkd eval. */
    snprintf(p, sizeof p, "%s/final", a);
    ckd_model *m = ckd_model_from_pretrained(reg, p, &err);
    cr_assert_not_null(m, "%s", err.msg);
    ckd_eval_result er;
    json_t *spec = json_pack("{s:s, s:s, s:s, s:i}", "reader", "fashion-mnist", "split", "test", "dir", FMNIST_DIR,
                             "limit", 40);
    cr_assert_eq(ckd_evaluate(m, spec, NULL, NULL, &er, &err), 0, "%s", err.msg);
    cr_expect(er.has_zero_shot && er.has_retrieval && er.has_calibration);
    cr_expect_eq(er.retrieval.n_texts, 200, "five captions per image by default");
    json_decref(spec);
    ckd_model_free(m);
    ckd_recipe_free(r);
}

/* eval.retrieval_match: "text" is recorded in results.json with the chance
 * levels; it deduplicates the captions and can only rank an image's matches
 * higher than "pair" does; a value outside the two is refused with the
 * file and the key. */
Test(train, retrieval_match_text_is_recorded_and_validated, .init = setup, .fini = teardown, .timeout = 60)
{
    write_file("tiny.json", base_recipe);
    const char *sets[] = {"eval.retrieval_match=text", "data.eval.captions=8", "train.steps=1"};
    ckd_recipe *r = load("tiny.json", sets, 3);
    ckd_error err = {{0}};
    cr_assert_eq(train_into(r, "a", &err), 0, "%s", err.msg);
    char a[512];
    run_dir("a", a, sizeof a);
    long lr;
    char *res = slurp(a, "results.json", &lr);
    json_error_t je;
    json_t *rj = json_loads(res, 0, &je);
    cr_assert_not_null(rj, "%s", je.text);
    const json_t *rt = json_object_get(json_object_get(rj, "eval"), "retrieval");
    cr_expect_str_eq(json_string_value(json_object_get(rt, "match")), "text", "%s", res);
    const json_t *chance = json_object_get(rt, "chance");
    double c5 = json_number_value(json_object_get(chance, "t2i_r5"));
    cr_expect(c5 > 0 && c5 <= 1 && json_is_number(json_object_get(chance, "i2t_r10")), "%s", res);
    json_int_t texts = json_integer_value(json_object_get(rt, "n_texts"));
    cr_expect(texts > 0 && texts < 48 * 8, "distinct texts: %lld", (long long)texts);
    json_decref(rj);
    free(res);

    char p[1024];
    snprintf(p, sizeof p, "%s/final", a);
    ckd_model *m = ckd_model_from_pretrained(reg, p, &err);
    cr_assert_not_null(m, "%s", err.msg);
    json_t *spec = json_pack("{s:s, s:s, s:s, s:i, s:i}", "reader", "fashion-mnist", "split", "test", "dir",
                             FMNIST_DIR, "limit", 40, "captions", 8);
    ckd_eval_opts eo;
    ckd_eval_result pair, text;
    ckd_eval_opts_init(&eo);
    cr_assert_eq(ckd_evaluate(m, spec, NULL, &eo, &pair, &err), 0, "%s", err.msg);
    eo.retrieval_match = CKD_RETRIEVAL_MATCH_TEXT;
    cr_assert_eq(ckd_evaluate(m, spec, NULL, &eo, &text, &err), 0, "%s", err.msg);
    cr_expect_eq(pair.retrieval.n_texts, 320);
    cr_expect(text.retrieval.n_texts < 320 && text.retrieval.n_texts % 8 == 0,
              "each item's 8 templates: %lld distinct texts", (long long)text.retrieval.n_texts);
    for (int k = 0; k < 3; k++)
        cr_expect(text.retrieval.i2t[k] >= pair.retrieval.i2t[k], "R@%d", k);
    char buf[512];
    cr_expect(strstr(ckd_eval_result_str(&text, buf, sizeof buf), "(text match; chance R@5 "), "%s", buf);
    cr_expect(strstr(ckd_eval_result_str(&pair, buf, sizeof buf), "(pair match; chance R@5 "), "%s", buf);
    json_decref(spec);
    ckd_model_free(m);
    ckd_recipe_free(r);

    write_file("bad.json", "{\"extends\": \"tiny.json\",\n"
                           " \"eval\": {\"retrieval_match\": \"image\"}}\n");
    snprintf(p, sizeof p, "%s/bad.json", tmp);
    cr_assert_null(ckd_recipe_load(p, NULL, 0, ckd_train_plugin_schema, reg, &err));
    cr_expect(strstr(err.msg, "bad.json:2:") &&
                  strstr(err.msg, "eval.retrieval_match: expected one of \"pair\", \"text\", got \"image\""),
              "%s", err.msg);
}

Test(train, resume_refuses_other_recipe_and_corrupt_checkpoint, .init = setup, .fini = teardown, .timeout = 60)
{
    write_file("tiny.json", base_recipe);
    ckd_recipe *r = load("tiny.json", NULL, 0);
    const char *sets[] = {"seed=4"};
    ckd_recipe *other = load("tiny.json", sets, 1);
    char b[512];
    run_dir("b", b, sizeof b);
    ckd_error err = {{0}};
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.out_dir = b;
    o.stop_after = 2;
    cr_assert_eq(ckd_train_run(reg, r, &o, NULL, 0, &err), 0, "%s", err.msg);
    cr_assert_eq(ckd_train_resume(reg, other, b, &o, &err), -1);
    cr_expect(strstr(err.msg, "different recipe") != NULL, "%s", err.msg);

    char p[1024];
    snprintf(p, sizeof p, "%s/checkpoint.safetensors", b);
    FILE *f = fopen(p, "r+b");
    cr_assert_not_null(f);
    fputs("garbage!", f);
    fclose(f);
    cr_assert_eq(ckd_train_resume(reg, r, b, &o, &err), -1);
    cr_expect(strstr(err.msg, "corrupt") != NULL, "%s", err.msg);
    ckd_recipe_free(other);
    ckd_recipe_free(r);
}

Test(train, loss_needing_a_teacher_is_refused_before_compute, .init = setup, .fini = teardown)
{
    write_file("tiny.json", base_recipe);
    const char *sets[] = {"losses=[{\"name\": \"clip\"}, {\"name\": \"fd\", \"weight\": 2000}]"};
    ckd_recipe *r = load("tiny.json", sets, 1);
    char d[512], p[1024];
    run_dir("fd", d, sizeof d);
    ckd_error err = {{0}};
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.out_dir = d;
    cr_assert_eq(ckd_train_run(reg, r, &o, NULL, 0, &err), -1);
    cr_expect(strstr(err.msg, "losses[1]") && strstr(err.msg, "no teacher") && strstr(err.msg, "t_img"), "%s",
              err.msg);
    struct stat sb;
    cr_expect_neq(stat(d, &sb), 0, "nothing is created");
    snprintf(p, sizeof p, "%s", d);
    ckd_recipe_free(r);
}

Test(train, distillation_trains_the_teacher_recipe_once, .init = setup, .fini = teardown, .timeout = 120)
{
    write_file("teacher.json", base_recipe);
    write_file("kd.json", "{\"extends\": \"teacher.json\", \"name\": \"kd\",\n"
                          " \"teacher\": {\"recipe\": \"teacher.json\", \"mode\": \"live\"},\n"
                          " \"student\": {\"config\": {\"embed_dim\": 8, \"vision\": {\"width\": 8},"
                          " \"text\": {\"width\": 8}}},\n"
                          " \"losses\": [{\"name\": \"clip\"}, {\"name\": \"crd\"}, {\"name\": \"fd\", \"weight\": 2000},"
                          " {\"name\": \"icl\"}],\n"
                          " \"train\": {\"steps\": 3, \"eval_every\": 0, \"checkpoint_every\": 0}}\n");
    ckd_recipe *r = load("kd.json", NULL, 0);
    char runs[512], dir[1024];
    run_dir("runs", runs, sizeof runs);
    ckd_error err = {{0}};
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.runs_root = runs;
    cr_assert_eq(ckd_train_run(reg, r, &o, dir, sizeof dir, &err), 0, "%s", err.msg);
    long n;
    char *res = slurp(dir, "results.json", &n);
    cr_expect(strstr(res, "\"fd\"") && strstr(res, "\"crd\"") && strstr(res, "\"icl\""), "%s", res);
    free(res);
    /* The teacher's run is under the same root, keyed by its hash. */
    ckd_recipe *t = load("teacher.json", NULL, 0);
    char tdir[1024], p[1100];
    ckd_train_run_dir(t, runs, tdir, sizeof tdir);
    snprintf(p, sizeof p, "%s/final/model.safetensors", tdir);
    struct stat sb;
    cr_assert_eq(stat(p, &sb), 0, "%s", p);
    time_t before = sb.st_mtime;
    /* A second student reuses it (its weights are not written again). */
    const char *sets[] = {"seed=9"};
    ckd_recipe *r2 = load("kd.json", sets, 1);
    sleep(1);
    cr_assert_eq(ckd_train_run(reg, r2, &o, dir, sizeof dir, &err), 0, "%s", err.msg);
    cr_assert_eq(stat(p, &sb), 0);
    cr_expect_eq(sb.st_mtime, before, "the teacher was trained again");
    ckd_recipe_free(r2);
    ckd_recipe_free(t);
    ckd_recipe_free(r);
}

/* student.init_from: the directory's config.json decides the model, so a
 * config or weights beside it is refused when the recipe loads. */
Test(train, init_from_refuses_config_and_weights, .init = setup, .fini = teardown)
{
    write_file("a.json", "{\"student\": {\"model\": \"clip\", \"init_from\": \"m\", \"config\": {\"embed_dim\": 8}},"
                         " \"data\": {\"train\": {\"reader\": \"fashion-mnist\"}}, \"losses\": [{\"name\": \"clip\"}]}");
    write_file("b.json", "{\"student\": {\"model\": \"clip\", \"init_from\": \"m\", \"weights\": {\"urls\": "
                         "[\"file:///x\"], \"sha256\": \"" "0000000000000000000000000000000000000000000000000000000000000000"
                         "\", \"size\": 1}}, \"data\": {\"train\": {\"reader\": \"fashion-mnist\"}},"
                         " \"losses\": [{\"name\": \"clip\"}]}");
    const char *files[] = {"a.json", "b.json"}, *keys[] = {"student.config", "student.weights"};
    for (int i = 0; i < 2; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", tmp, files[i]);
        ckd_error err = {{0}};
        cr_expect_null(ckd_recipe_load(p, NULL, 0, ckd_train_plugin_schema, reg, &err));
        cr_expect(strstr(err.msg, keys[i]) && strstr(err.msg, "init_from"), "%s", err.msg);
    }
}

/* ---- class logits: ce and the refusals -------------------------------------------- */

static const char student_config[] =
    "{\"embed_dim\": 16, \"vision\": {\"image_size\": 28, \"patch_size\": 7, \"width\": 16, \"layers\": 1,"
    " \"heads\": 2}, \"text\": {\"context_length\": 20, \"width\": 16, \"layers\": 1, \"heads\": 2}}";

/* ce alone on one fixed batch of 16 Fashion-MNIST images: the student's
 * zero-shot logits are all it trains on, and its loss falls. */
Test(train, ce_trains_on_the_students_zero_shot_logits, .init = setup, .fini = teardown, .timeout = 60)
{
    write_file("tiny.json", base_recipe);
    const char *sets[] = {"losses=[{\"name\": \"ce\"}]", "data.train.limit=16", "data.eval=null",
                          "train.augment=false", "train.steps=30", "train.eval_every=0", "train.accum=1",
                          "train.checkpoint_every=0", "optim.lr=0.01"};
    ckd_recipe *r = load("tiny.json", sets, sizeof sets / sizeof *sets);
    char d[512];
    ckd_error err = {{0}};
    cr_assert_eq(train_into(r, "ce", &err), 0, "%s", err.msg);
    run_dir("ce", d, sizeof d);
    expect_learns(d, 30, 0.3);
    ckd_recipe_free(r);
}

/* The class embeddings of the student, from the public API alone: every
 * template with the class name, tokenised and embedded one by one,
 * normalised, averaged, renormalised (in double). [K, D], malloc'd. */
static double *direct_class_embeddings(ckd_model *m, const ckd_dataset *ds, int64_t T)
{
    ckd_error err = {{0}};
    ckd_tokenizer *tok = ckd_tokenizer_load_default(&err);
    ckd_ctx *c = ckd_ctx_new(0, 0, &err);
    cr_assert(tok && c, "%s", err.msg);
    ckd_ctx_set_grad(c, 0);
    int64_t K = (int64_t)ckd_dataset_n_classes(ds), NT = (int64_t)ckd_dataset_n_templates(ds);
    int64_t D = ckd_model_embed_dim(m);
    double *cls = calloc((size_t)(K * D), sizeof *cls);
    int32_t ids[64];
    for (int64_t k = 0; k < K; k++) {
        double *row = cls + k * D;
        for (int64_t j = 0; j < NT; j++) {
            const char *tpl = ckd_dataset_template(ds, (size_t)j), *at = strstr(tpl, "{}");
            char text[512];
            cr_assert_not_null(at, "%s", tpl);
            snprintf(text, sizeof text, "%.*s%s%s", (int)(at - tpl), tpl, ckd_dataset_class_name(ds, (size_t)k),
                     at + 2);
            cr_assert_eq(ckd_tokenize(tok, text, ids, (int)T, 0, NULL, NULL, &err), 0, "%s", err.msg);
            ckd_ctx_reset(c);
            ckd_tensor *e = ckd_model_encode_text(m, c, ids, 1, T, NULL);
            cr_assert_not_null(e);
            double s = 0;
            for (int64_t d = 0; d < D; d++)
                s += (double)e->data[d] * e->data[d];
            for (int64_t d = 0; d < D; d++)
                row[d] += e->data[d] / sqrt(s);
        }
        double s = 0;
        for (int64_t d = 0; d < D; d++)
            s += row[d] * row[d];
        for (int64_t d = 0; d < D; d++)
            row[d] /= sqrt(s);
    }
    ckd_ctx_free(c);
    ckd_tokenizer_free(tok);
    return cls;
}

/* The sum of squares of a gradient in a dump file. */
static double grad_norm2(const ckd_safetensors *st, const char *param)
{
    char name[256];
    int64_t n;
    snprintf(name, sizeof name, "grad.%s", param);
    const float *g = st_floats(st, name, &n);
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)g[i] * g[i];
    return s;
}

/* The s_logits a loss gets are exp(θ_s) · n(s_img) Cᵀ with C the student's
 * own prompt-ensembled class embeddings — computed here independently from
 * the same initial student — and ce on them alone sends gradients into both
 * towers and θ_s. */
Test(train, s_logits_are_the_students_zero_shot_logits, .init = setup, .fini = teardown, .timeout = 60)
{
    open_with_probes();
    ckd_error err = {{0}};
    json_error_t je;
    json_t *cfg = json_loads(student_config, 0, &je);
    const ckd_plugin *clip = ckd_registry_find(reg, CKD_PLUGIN_MODEL, "clip", &err);
    cr_assert_not_null(clip, "%s", err.msg);
    ckd_model *m = ckd_model_new(clip, cfg, "student", 1, 5, &err);
    cr_assert_not_null(m, "%s", err.msg);
    char p[1024], batch[600], dump[600];
    snprintf(p, sizeof p, "%s/init", tmp);
    cr_assert_eq(ckd_model_save_pretrained(m, p, &err), 0, "%s", err.msg);
    snprintf(batch, sizeof batch, "%s/batch.safetensors", tmp);
    snprintf(dump, sizeof dump, "%s/dump", tmp);
    char recipe[2048];
    snprintf(recipe, sizeof recipe,
             "{\"name\": \"zs\", \"student\": {\"model\": \"clip\", \"init_from\": \"init\"},\n"
             " \"data\": {\"train\": {\"reader\": \"fashion-mnist\", \"split\": \"test\", \"dir\": \"" FMNIST_DIR
             "\", \"limit\": 16}},\n"
             " \"losses\": [{\"name\": \"ce\"}, {\"name\": \"test_probe_logits\", \"params\": {\"out\": \"%s\"}}],\n"
             " \"train\": {\"steps\": 1, \"batch_size\": 16, \"augment\": false}}\n",
             batch);
    write_file("zs.json", recipe);
    ckd_recipe *r = load("zs.json", NULL, 0);
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    run_dir("zs", p, sizeof p);
    o.out_dir = p;
    o.dump_steps = 1;
    o.dump_dir = dump;
    cr_assert_eq(ckd_train_run(reg, r, &o, NULL, 0, &err), 0, "%s", err.msg);

    json_t *spec = json_pack("{s:s, s:s, s:s, s:i}", "reader", "fashion-mnist", "split", "test", "dir", FMNIST_DIR,
                             "limit", 16);
    ckd_dataset *ds = ckd_dataset_open(spec, NULL, &err);
    cr_assert_not_null(ds, "%s", err.msg);
    int64_t K = (int64_t)ckd_dataset_n_classes(ds), D = ckd_model_embed_dim(m), n_img, n_z, n_theta;
    double *cls = direct_class_embeddings(m, ds, 20);
    ckd_safetensors *st = ckd_st_open(batch, &err);
    cr_assert_not_null(st, "%s", err.msg);
    const float *img = st_floats(st, "s_img_n", &n_img), *z = st_floats(st, "s_logits", &n_z),
                *theta = st_floats(st, "s_logit_scale", &n_theta);
    cr_assert(n_img == 16 * D && n_z == 16 * K && n_theta == 1);
    cr_expect_float_eq(theta[0], ckd_model_logit_scale(m)->data[0], 0, "the initial θ_s");
    double worst = 0, lambda = exp((double)theta[0]);
    for (int64_t i = 0; i < 16; i++)
        for (int64_t k = 0; k < K; k++) {
            double want = 0;
            for (int64_t d = 0; d < D; d++)
                want += (double)img[i * D + d] * cls[k * D + d];
            want *= lambda;
            worst = fmax(worst, fabs(z[i * K + k] - want) / fmax(1.0, fabs(want)));
        }
    cr_expect_leq(worst, 1e-5, "s_logits differ from the direct zero-shot logits by %g", worst);
    cr_log_info("s_logits vs direct zero-shot logits: worst difference %.2e", worst);
    ckd_st_close(st);

    snprintf(p, sizeof p, "%s/step-0000.safetensors", dump);
    st = ckd_st_open(p, &err);
    cr_assert_not_null(st, "%s", err.msg);
    const char *reached[] = {"text_model.encoder.layers.0.mlp.fc1.weight", "text_projection.weight",
                             "vision_model.encoder.layers.0.mlp.fc1.weight", "visual_projection.weight",
                             "logit_scale"};
    for (size_t i = 0; i < sizeof reached / sizeof *reached; i++)
        cr_expect_gt(grad_norm2(st, reached[i]), 0, "no gradient reaches %s", reached[i]);
    ckd_st_close(st);
    free(cls);
    ckd_dataset_close(ds);
    json_decref(spec);
    json_decref(cfg);
    ckd_model_free(m);
    ckd_recipe_free(r);
}

/* A tensors file with labels but no class names: no class prompts, so
 * neither labels nor s_logits. */
static void write_tensors_data(const char *name)
{
    static float px[4 * 3 * 28 * 28];
    int32_t ids[4 * 20] = {0}, labels[4] = {0, 1, 2, 3};
    ckd_st_writer *w = ckd_st_writer_new();
    ckd_error err = {{0}};
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmp, name);
    cr_assert(w && !ckd_st_writer_add(w, "pixel_values", CKD_DT_F32, 4, (int64_t[]){4, 3, 28, 28}, px, &err) &&
                  !ckd_st_writer_add(w, "input_ids", CKD_DT_I32, 2, (int64_t[]){4, 20}, ids, &err) &&
                  !ckd_st_writer_add(w, "labels", CKD_DT_I32, 1, (int64_t[]){4}, labels, &err) &&
                  !ckd_st_writer_save(w, p, &err),
              "%s", err.msg);
    ckd_st_writer_free(w);
}

/* Each refusal names the loss, what it lacks and every reason. */
Test(train, class_losses_are_refused_with_the_reason, .init = setup, .fini = teardown)
{
    write_file("tiny.json", base_recipe);
    write_tensors_data("t.safetensors");
    const char *tensors = "data.train={\"reader\": \"tensors\", \"path\": \"t.safetensors\"}";
    struct {
        const char *sets[2];
        const char *want[3];
    } cases[] = {
        {{"losses=[{\"name\": \"ce\"}]", tensors}, {"losses[0]", "s_logits", "no classes"}},
        {{"losses=[{\"name\": \"kd\"}]", NULL}, {"losses[0]", "t_logits", "no teacher"}},
        {{"losses=[{\"name\": \"kd\"}]", tensors}, {"s_logits, t_logits", "no teacher and the training data has no classes", ""}},
        {{"losses=[{\"name\": \"clip\"}, {\"name\": \"embed_kd\"}]", NULL}, {"losses[1]", "centroids", "no teacher"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ckd_recipe *r = load("tiny.json", cases[i].sets, cases[i].sets[1] ? 2 : 1);
        char d[512];
        ckd_error err = {{0}};
        cr_assert_eq(train_into(r, "refused", &err), -1, "case %zu ran", i);
        run_dir("refused", d, sizeof d);
        for (int k = 0; k < 3; k++)
            cr_expect(strstr(err.msg, cases[i].want[k]) != NULL, "case %zu: no \"%s\" in: %s", i, cases[i].want[k],
                      err.msg);
        struct stat sb;
        cr_expect_neq(stat(d, &sb), 0, "case %zu: nothing is created", i);
        ckd_recipe_free(r);
    }
}
