/* CIFD's classifier form end to end (host/cifd/, losses/cifd_cls.c): a
 * supervised ResNet teacher's features and class logits in the teacher
 * cache; rate-distortion modules with class heads trained on that cache
 * (eq 5) without a teacher forward; a classifier student whose loss batch
 * carries the teacher's normalised features and logits and the assistants'
 * reconstructions and logits, trained with ce + cifd_cls; a cached teacher
 * giving what the live one gives; and the refusals: a class head on a CLIP
 * teacher, text from a classifier teacher, a teacher without a separate head. */
#include "config.h"

#include "clipkd/rdm.h"
#include "train_test_util.h"

#define TINY_RESNET(width, extra)                                                                          \
    "{\"model\": \"resnet\", \"config\": {\"arch\": \"torchvision\", \"block\": \"basic\", \"stem\": \"cifar\"," \
    " \"layers\": [1, 1], \"width\": " #width ", \"image_size\": 28" extra "}}"

static const char teacher_recipe[] =
    "{\"name\": \"teacher\", \"seed\": 3, \"threads\": 1,\n"
    " \"student\": " TINY_RESNET(8, ", \"num_classes\": 10") ",\n"
    TINY_FMNIST_DATA(256, "")
    " \"eval\": {\"retrieval\": false},\n"
    " \"losses\": [{\"name\": \"ce\"}],\n"
    " \"optim\": {\"lr\": 0.003, \"warmup_steps\": 2},\n"
    " \"train\": {\"steps\": 8, \"batch_size\": 32, \"augment\": false, \"log_every\": 1}}\n";

static const char rdm_recipe[] =
    "{\"name\": \"rdm\", \"seed\": 1, \"threads\": 1,\n"
    " \"teacher\": {\"recipe\": \"teacher.json\", \"mode\": \"cache\"},\n"
    " \"data\": {\"train\": {\"reader\": \"fashion-mnist\", \"split\": \"test\", \"dir\": \"" FMNIST_DIR
    "\", \"limit\": 256}},\n"
    " \"rdm\": {\"R\": 100, \"hidden\": 16, \"out_relu\": true, \"classes\": true, \"steps\": 300,"
    " \"holdout\": 0.1},\n"
    " \"optim\": {\"lr\": 0.003, \"weight_decay\": 0}, \"train\": {\"batch_size\": 64}}\n";

/* The student: ce + cifd_cls + the probe (writes its first batch). */
static const char student_recipe[] =
    "{\"extends\": \"teacher.json\", \"name\": \"student\", \"seed\": 5,\n"
    " \"teacher\": {\"recipe\": \"teacher.json\", \"mode\": \"cache\"},\n"
    " \"student\": " TINY_RESNET(4, ", \"num_classes\": 10") ",\n"
    " \"losses\": [{\"name\": \"ce\"}, {\"name\": \"cifd_cls\"},\n"
    "             {\"name\": \"test_probe_logits\", \"params\": {\"out\": \"%s/probe.safetensors\"}}],\n"
    " \"assistants\": [{\"image\": \"rdm.json\"}, {\"image\": \"rdm-hi.json\", \"weight\": 0.5}],\n"
    " \"train\": {\"steps\": 3, \"batch_size\": 16}}\n";

typedef struct seen {
    int64_t encoded;
    double first_loss;
} seen;

static void on_event(void *user, const ckd_train_event *ev)
{
    seen *s = user;
    s->encoded = ev->teacher_encoded;
    if (ev->kind == CKD_TRAIN_STEP && ev->step == 1)
        s->first_loss = ev->loss;
}

static void write_recipes(void)
{
    write_file("teacher.json", teacher_recipe);
    write_file("rdm.json", rdm_recipe);
    write_file("rdm-hi.json", "{\"extends\": \"rdm.json\", \"name\": \"rdm-hi\", \"rdm\": {\"R\": 10000}}");
    char text[sizeof student_recipe + 512];
    snprintf(text, sizeof text, student_recipe, tmp);
    write_file("student.json", text);
}

static json_t *results(const char *out)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s/results.json", tmp, out);
    json_t *j = json_load_file(p, 0, NULL);
    cr_assert_not_null(j, "%s", p);
    return j;
}

static const ckd_st_tensor *want(const ckd_safetensors *st, const char *name, int ndim, const int64_t *shape)
{
    const ckd_st_tensor *t = ckd_st_find(st, name);
    cr_assert_not_null(t, "the batch has no %s", name);
    cr_assert_eq(t->ndim, ndim, "%s: %d dimensions", name, t->ndim);
    for (int d = 0; d < ndim; d++)
        cr_expect_eq(t->shape[d], shape[d], "%s: dimension %d is %lld, expected %lld", name, d,
                     (long long)t->shape[d], (long long)shape[d]);
    return t;
}

Test(cifd_classifier, stage1_on_the_cache_then_the_student, .init = setup, .fini = teardown, .timeout = 240)
{
    open_with_probes();
    write_recipes();
    /* Stage 1: the first module builds the cache (the teacher runs), the second reads it. */
    seen a = {0}, b = {0};
    run_into("rdm.json", NULL, 0, "rdm-lo", on_event, &a);
    run_into("rdm-hi.json", NULL, 0, "rdm-hi", on_event, &b);
    cr_expect_gt(a.encoded, 0);
    cr_expect_eq(b.encoded, 0, "stage 1 made %lld teacher forwards with the cache there", (long long)b.encoded);
    json_t *r = results("rdm-hi");
    json_t *rdm = json_object_get(r, "rdm");
    double top1 = json_number_value(json_object_get(json_object_get(rdm, "holdout"), "top1"));
    cr_log_info("rdm R 1e4: held-out rate %.2f nats, distortion %.5f, head top-1 %.1f%%",
                json_number_value(json_object_get(rdm, "rate_nats")),
                json_number_value(json_object_get(rdm, "distortion")), top1);
    cr_expect(top1 > 10.0 && top1 <= 100.0, "the class head's held-out top-1 %.1f%%", top1);
    json_decref(r);
    long len;
    char *cfg = slurp(tmp, "rdm-hi/final/config.json", &len);
    cr_expect(strstr(cfg, "\"n_classes\": 10") && strstr(cfg, "\"out_relu\": true"), "%s", cfg);
    free(cfg);

    /* Stage 2: the student's batch. */
    seen with = {0}, without = {0};
    run_into("student.json", NULL, 0, "student", on_event, &with);
    cr_expect_eq(with.encoded, 0, "the cached teacher ran %lld times", (long long)with.encoded);
    /* The run's results carry its teacher run's own figures (a table's
     * "teacher." metrics read them). */
    json_t *sr = results("student"), *rec = json_object_get(sr, "teacher");
    const char *trun = json_string_value(json_object_get(rec, "run"));
    cr_assert(trun && !strncmp(trun, "teacher-", 8), "results.json has no teacher record");
    char tres[600];
    snprintf(tres, sizeof tres, "runs/%s", trun);
    json_t *tr = results(tres);
    cr_expect(json_equal(json_object_get(rec, "eval"), json_object_get(tr, "eval")), "the teacher's evaluation");
    cr_expect(json_object_get(json_object_get(rec, "eval"), "calibration"), "a classifier teacher's calibration");
    cr_expect_eq(json_integer_value(json_object_get(rec, "parameters")),
                 json_integer_value(json_object_get(tr, "parameters")));
    cr_expect_neq(json_integer_value(json_object_get(rec, "parameters")),
                  json_integer_value(json_object_get(sr, "parameters")), "the teacher's count, not the student's");
    /* the training loop's memory peak, from a high-water mark reset when it began */
    double rss = json_number_value(json_object_get(sr, "peak_rss_mib"));
    cr_expect(rss > 1 && rss < 4096, "peak_rss_mib %g", rss);
    cr_expect_str_eq(json_string_value(json_object_get(sr, "peak_rss_scope")), "training");
    json_decref(tr);
    json_decref(sr);
    char p[600];
    snprintf(p, sizeof p, "%s/probe.safetensors", tmp);
    ckd_error err = {{0}};
    ckd_safetensors *st = ckd_st_open(p, &err);
    cr_assert_not_null(st, "%s", err.msg);
    /* student width 4, two stages: features 8 wide; the teacher's 16 */
    want(st, "s_img", 2, (int64_t[]){16, 8});
    want(st, "s_logits", 2, (int64_t[]){16, 10});
    want(st, "t_logits", 2, (int64_t[]){16, 10});
    want(st, "a_img", 3, (int64_t[]){2, 16, 16});
    const ckd_st_tensor *al = want(st, "a_logits", 3, (int64_t[]){2, 16, 10});
    const ckd_st_tensor *ti = want(st, "t_img", 2, (int64_t[]){16, 16});
    const float *x = ti->data;
    for (int i = 0; i < 16; i++) {
        double n2 = 0;
        for (int j = 0; j < 16; j++) {
            cr_expect_geq(x[i * 16 + j], 0.0f, "ResNet features are non-negative");
            n2 += (double)x[i * 16 + j] * x[i * 16 + j];
        }
        cr_expect(fabs(n2 - 1) < 1e-5, "t_img row %d has norm² %g", i, n2);
    }
    /* the two modules' logits differ (R 100 and R 10000) */
    double diff = 0;
    for (int64_t i = 0; i < 16 * 10; i++)
        diff += fabs((double)((const float *)al->data)[i] - ((const float *)al->data)[160 + i]);
    cr_expect_gt(diff, 1e-3);
    ckd_st_close(st);
    json_t *res = results("student");
    cr_expect(json_is_number(json_object_get(json_object_get(json_object_get(res, "eval"), "zero_shot"), "top1")),
              "a classifier student is evaluated on its logits");
    json_decref(res);
    /* Without assistants the loss has fewer terms: lower at the first step. */
    const char *none[] = {"assistants=[]"};
    run_into("student.json", none, 1, "alone", on_event, &without);
    cr_log_info("first-step loss %.5f with assistants, %.5f without", with.first_loss, without.first_loss);
    cr_expect_gt(with.first_loss, without.first_loss + 1e-4);
}

/* The cache gives what the live teacher gives: features and logits. */
Test(cifd_classifier, cached_teacher_equals_live, .init = setup, .fini = teardown, .timeout = 180)
{
    open_with_probes();
    write_recipes();
    char kd[1024];
    snprintf(kd, sizeof kd,
             "{\"extends\": \"student.json\", \"assistants\": [], \"losses\": [{\"name\": \"ce\"}, {\"name\": \"kd\"},"
             " {\"name\": \"test_probe_logits\", \"params\": {\"out\": \"%s/probe.safetensors\"}}]}",
             tmp);
    write_file("kd.json", kd);
    const char *live[] = {"teacher.mode=live"};
    seen c = {0}, l = {0};
    run_into("kd.json", NULL, 0, "cache", on_event, &c);
    char p[600], q[600];
    snprintf(p, sizeof p, "%s/probe.safetensors", tmp);
    snprintf(q, sizeof q, "%s/probe-cache.safetensors", tmp);
    cr_assert_eq(rename(p, q), 0);
    run_into("kd.json", live, 1, "live", on_event, &l);
    cr_expect_gt(l.encoded, 0);
    ckd_error err = {{0}};
    ckd_safetensors *a = ckd_st_open(q, &err), *b = ckd_st_open(p, &err);
    cr_assert(a && b, "%s", err.msg);
    const char *names[] = {"t_img", "t_logits"};
    for (int k = 0; k < 2; k++) {
        const ckd_st_tensor *x = ckd_st_find(a, names[k]), *y = ckd_st_find(b, names[k]);
        cr_assert(x && y && x->nbytes == y->nbytes, "%s", names[k]);
        double worst = 0;
        for (size_t i = 0; i < x->nbytes / 4; i++)
            worst = fmax(worst, fabs((double)((const float *)x->data)[i] - ((const float *)y->data)[i]));
        cr_log_info("%s: cache vs live, worst abs difference %.3g", names[k], worst);
        cr_expect_lt(worst, 1e-4, "%s: cache and live differ by %g", names[k], worst);
    }
    ckd_st_close(a);
    ckd_st_close(b);
    cr_expect(fabs(c.first_loss - l.first_loss) < 1e-4 * (1 + fabs(l.first_loss)), "first-step loss %.6f vs %.6f",
              c.first_loss, l.first_loss);
}

static void expect_run_refused(const char *file, const char *text, const char *needle1, const char *needle2)
{
    write_file(file, text);
    char out[256];
    snprintf(out, sizeof out, "out-%s", file);
    ckd_error err = {{0}};
    cr_expect_neq(try_run_into(file, NULL, 0, out, NULL, NULL, &err), 0, "%s was accepted", file);
    cr_expect(strstr(err.msg, needle1) && strstr(err.msg, needle2), "%s: \"%s\" lacks \"%s\" or \"%s\"", file,
              err.msg, needle1, needle2);
}

Test(cifd_classifier, refusals, .init = setup, .fini = teardown, .timeout = 180)
{
    write_recipes();
    write_file("clip-teacher.json", TINY_TEACHER_RECIPE(256));
    /* a class head learns from a classifier teacher's logits */
    expect_run_refused("rdm-clip.json",
                       "{\"extends\": \"rdm.json\", \"name\": \"rdm-clip\", \"teacher\": {\"recipe\": "
                       "\"clip-teacher.json\"}}",
                       "rdm.classes", "needs the image tower of a classifier teacher");
    /* class sets that differ: a student, then a teacher, of 7 classes on 10-class data */
    expect_run_refused("seven.json", "{\"extends\": \"student.json\", \"assistants\": [],"
                                     " \"losses\": [{\"name\": \"ce\"}], \"student\": {\"config\": {\"num_classes\": 7}}}",
                       "student", "the student classifies into 7 classes, the training data has 10");
    expect_run_refused("by7.json", "{\"extends\": \"student.json\", \"assistants\": [], \"losses\": [{\"name\": \"kd\"}],"
                                   " \"teacher\": {\"model\": \"resnet\", \"mode\": \"live\", \"recipe\": null,"
                                   " \"config\": {\"arch\": \"torchvision\", \"block\": \"basic\", \"layers\": [1],"
                                   " \"width\": 8, \"image_size\": 28, \"num_classes\": 7}}}",
                       "teacher", "the teacher classifies into 7 classes, the training data has 10");
    /* a loss that reads the teacher's text */
    expect_run_refused("text.json", "{\"extends\": \"student.json\", \"assistants\": [],"
                                    " \"losses\": [{\"name\": \"ce\"}, {\"name\": \"vl\"}]}",
                       "losses[1]", "the teacher is a classifier");
    /* a teacher that is an image encoder, not a classifier */
    expect_run_refused("enc-student.json",
                       "{\"name\": \"enc-student\", \"threads\": 1, \"student\": " TINY_RESNET(4, ", \"num_classes\": 10")
                       ",\n \"teacher\": {\"model\": \"resnet\", \"mode\": \"live\", \"config\": {\"arch\": \"torchvision\","
                       " \"block\": \"basic\", \"layers\": [1], \"width\": 8, \"image_size\": 28, \"embed_dim\": 16}},\n"
                       TINY_FMNIST_DATA(64, "") " \"eval\": {\"retrieval\": false}, \"losses\": [{\"name\": \"ce\"}],"
                       " \"train\": {\"steps\": 1, \"batch_size\": 16}}",
                       "an image encoder without text", "a teacher is a two-tower CLIP model, or a classifier");
}

/* A model as the assistant (TAKD/DGKD): a mid-sized classifier distilled
 * from the teacher, trained first, its features and logits cached and read
 * for every batch like the teacher's; one of another kind is refused. */
Test(cifd_classifier, model_assistant, .init = setup, .fini = teardown, .timeout = 240)
{
    open_with_probes();
    write_recipes();
    /* one stage of width 16: features as wide as the teacher's (two stages of 8) */
    write_file("ta.json", "{\"extends\": \"student.json\", \"name\": \"ta\", \"assistants\": [],"
                          " \"student\": {\"config\": {\"layers\": [1], \"width\": 16}},"
                          " \"losses\": [{\"name\": \"ce\"}, {\"name\": \"kd\"}]}");
    char text[1024];
    snprintf(text, sizeof text,
             "{\"extends\": \"student.json\", \"name\": \"dgkd\", \"assistants\": [{\"model\": \"ta.json\"}],"
             " \"losses\": [{\"name\": \"ce\"}, {\"name\": \"cifd_cls\", \"params\": {\"ibm\": false, \"w_emb\": 0}},"
             " {\"name\": \"test_probe_logits\", \"params\": {\"out\": \"%s/probe.safetensors\"}}]}",
             tmp);
    write_file("dgkd.json", text);
    seen s = {0};
    run_into("dgkd.json", NULL, 0, "dgkd", on_event, &s);
    char p[600];
    snprintf(p, sizeof p, "%s/probe.safetensors", tmp);
    ckd_error err = {{0}};
    ckd_safetensors *st = ckd_st_open(p, &err);
    cr_assert_not_null(st, "%s", err.msg);
    const ckd_st_tensor *ai = want(st, "a_img", 3, (int64_t[]){1, 16, 16});
    const ckd_st_tensor *al = want(st, "a_logits", 3, (int64_t[]){1, 16, 10});
    const ckd_st_tensor *tl = want(st, "t_logits", 2, (int64_t[]){16, 10});
    /* the assistant's own features and logits, not the teacher's */
    double diff = 0;
    for (int64_t i = 0; i < 160; i++)
        diff += fabs((double)((const float *)al->data)[i] - ((const float *)tl->data)[i]);
    cr_expect_gt(diff, 1e-2, "the assistant's logits are the teacher's");
    for (int i = 0; i < 16; i++) {
        double n2 = 0;
        for (int j = 0; j < 16; j++)
            n2 += (double)((const float *)ai->data)[i * 16 + j] * ((const float *)ai->data)[i * 16 + j];
        cr_expect(fabs(n2 - 1) < 1e-5, "a_img row %d has norm² %g", i, n2);
    }
    ckd_st_close(st);
    /* its training time counts in the pipeline's */
    json_t *r = results("dgkd");
    double own = json_number_value(json_object_get(r, "train_seconds"));
    double pipe = json_number_value(json_object_get(r, "pipeline_seconds"));
    json_decref(r);
    cr_expect_gt(pipe, own, "pipeline %g s, own %g s", pipe, own);

    /* a CLIP model where a classifier teacher stands */
    write_file("clip-teacher.json", TINY_TEACHER_RECIPE(256));
    expect_run_refused("clip-ta.json",
                       "{\"extends\": \"student.json\", \"assistants\": [{\"model\": \"clip-teacher.json\"}]}",
                       "assistants[0].model", "is a CLIP model and the teacher a classifier");
    /* a model and modules in one entry: refused when the recipe is read */
    write_file("mixed.json", "{\"extends\": \"student.json\", \"assistants\": [{\"model\": \"ta.json\", \"image\": "
                             "\"rdm.json\"}]}");
    snprintf(p, sizeof p, "%s/mixed.json", tmp);
    ckd_recipe *bad = ckd_recipe_load(p, NULL, 0, ckd_train_plugin_schema, reg, &err);
    cr_expect_null(bad);
    cr_expect(strstr(err.msg, "assistants[0]") && strstr(err.msg, "no \"image\" or \"text\" rdm recipes beside it"),
              "%s", err.msg);
    ckd_recipe_free(bad);
}
