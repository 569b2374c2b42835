/* clipkd run --dump-steps reproduces PyTorch through its dumps: the tiny
 * quickgelu CLIP (tests/fixtures/hf-clip, read through student.init_from)
 * trained on the fixture's six reference samples (the tensors reader), the
 * clip loss, AdamW lr 1e-3, betas (0.9, 0.98), eps 1e-6, weight decay 0.1,
 * constant schedule, no clipping, one batch of all six — the setting of
 * tests/fixtures/kd/train_steps_tiny-clip-quickgelu.safetensors. The loss of
 * each of 3 steps, every step-0 gradient and every parameter after 3 steps
 * are compared with that file, as test-clip-train does through library
 * calls. The loader shuffles the six samples; the loss is a mean over pairs,
 * so only the order of float sums changes. */
#include "config.h"

#include "cli_run_util.h"
#include "clip_test_util.h"

static char tmp[256];

static void setup(void)
{
    cli_test_env();
    snprintf(tmp, sizeof tmp, "/tmp/clipkd-test-dump-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    cr_expect_eq(system(cmd), 0);
}

/* pixel_values and input_ids of the reference file, as the tensors reader
 * reads them. */
static void write_inputs(const char *path)
{
    ckd_safetensors *ref = open_st(fixture("hf-clip/tiny-clip-quickgelu/reference.safetensors"));
    ckd_st_writer *w = ckd_st_writer_new();
    ckd_error err = {{0}};
    const char *names[] = {"pixel_values", "input_ids"};
    for (int i = 0; i < 2; i++) {
        const ckd_st_tensor *t = ckd_st_find(ref, names[i]);
        cr_assert_not_null(t, "%s", names[i]);
        cr_assert_eq(ckd_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &err), 0, "%s", err.msg);
    }
    cr_assert_eq(ckd_st_writer_save(w, path, &err), 0, "%s", err.msg);
    ckd_st_writer_free(w);
    ckd_st_close(ref);
}

static ckd_safetensors *open_dump(const char *dir, int step)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/step-%04d.safetensors", dir, step);
    return open_st(p);
}

Test(dump, three_steps_reproduce_pytorch, .init = setup, .fini = teardown, .timeout = 60)
{
    char inputs[512], recipe[512], text[2048], out[512], dumps[512];
    snprintf(inputs, sizeof inputs, "%s/inputs.safetensors", tmp);
    snprintf(recipe, sizeof recipe, "%s/r.json", tmp);
    snprintf(out, sizeof out, "%s/run", tmp);
    snprintf(dumps, sizeof dumps, "%s/dumps", tmp);
    write_inputs(inputs);
    snprintf(text, sizeof text,
             "{\"name\": \"dump\", \"threads\": 1,\n"
             " \"student\": {\"model\": \"clip\", \"init_from\": \"%s\"},\n"
             " \"data\": {\"train\": {\"reader\": \"tensors\", \"path\": \"inputs.safetensors\"}},\n"
             " \"losses\": [{\"name\": \"clip\"}],\n"
             " \"optim\": {\"lr\": 0.001, \"betas\": [0.9, 0.98], \"eps\": 1e-6, \"weight_decay\": 0.1,\n"
             "           \"warmup_steps\": 0, \"schedule\": \"constant\", \"grad_clip\": 0},\n"
             " \"train\": {\"steps\": 3, \"batch_size\": 6, \"log_every\": 1}}\n",
             fixture("hf-clip/tiny-clip-quickgelu"));
    FILE *f = fopen(recipe, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    const char *args[] = {"run", recipe, "--out", out, "--dump-steps", "3", "--dump-dir", dumps, NULL};
    cli_run(tmp, args);

    ckd_safetensors *run = open_st(fixture("kd/train_steps_tiny-clip-quickgelu.safetensors"));
    float *losses = ref_f32(run, "losses", NULL);
    double worst_loss = 0, worst_grad = 0, worst_zero = 0, worst_param = 0;
    char wg[300] = "", wp[300] = "";
    for (int step = 0; step < 3; step++) {
        ckd_safetensors *d = open_dump(dumps, step);
        float *loss = ref_f32(d, "loss", NULL), *term = ref_f32(d, "loss.clip", NULL);
        double rel = fabs(loss[0] - losses[step]) / fabs(losses[step]);
        cr_expect_leq(rel, 1e-4, "step %d: loss %.8f, PyTorch %.8f", step, loss[0], losses[step]);
        cr_expect_eq(loss[0], term[0], "one loss of weight 1: the loss is its term");
        worst_loss = fmax(worst_loss, rel);
        free(loss), free(term);
        char want[16];
        snprintf(want, sizeof want, "%d", step);
        cr_expect_str_eq(ckd_st_metadata(d, "step"), want);
        ckd_st_close(d);
    }

    /* Every step-0 gradient, and nothing else under grad. */
    ckd_safetensors *d0 = open_dump(dumps, 0);
    size_t n_ref = 0, n_dump = 0;
    for (size_t i = 0; i < ckd_st_count(d0); i++)
        n_dump += !strncmp(ckd_st_at(d0, i)->name, "grad.", 5);
    for (size_t i = 0; i < ckd_st_count(run); i++) {
        const char *key = ckd_st_at(run, i)->name;
        if (strncmp(key, "grad.", 5))
            continue;
        n_ref++;
        const ckd_st_tensor *t;
        float *g = ref_f32(d0, key, &t), *r = ref_f32(run, key, NULL);
        expect_grad_matches(key, g, r, (int64_t)ckd_st_numel(t), &worst_grad, wg, sizeof wg, &worst_zero);
        free(g), free(r);
    }
    cr_expect_eq(n_dump, n_ref, "%zu gradients dumped, the reference has %zu", n_dump, n_ref);
    ckd_st_close(d0);

    /* Every parameter after the third step. */
    ckd_safetensors *d2 = open_dump(dumps, 2);
    for (size_t i = 0; i < ckd_st_count(run); i++) {
        const char *key = ckd_st_at(run, i)->name;
        if (strncmp(key, "after3.", 7))
            continue;
        char name[300];
        snprintf(name, sizeof name, "param.%s", key + 7);
        const ckd_st_tensor *t;
        float *p = ref_f32(d2, name, &t), *r = ref_f32(run, key, NULL);
        double e = 0;
        for (int64_t j = 0; j < (int64_t)ckd_st_numel(t); j++)
            e = fmax(e, fabs((double)p[j] - r[j]));
        cr_expect_leq(e, 1e-4, "%s: max abs error %g after 3 steps", name, e);
        if (e > worst_param)
            worst_param = e, snprintf(wp, sizeof wp, "%s", name);
        free(p), free(r);
    }
    ckd_st_close(d2);
    cr_log_info("dumps vs PyTorch: worst loss rel error %.2e; worst step-0 gradient rel L2 %.2e (%s); worst "
                "parameter abs error after 3 steps %.2e (%s); largest vanishing gradient L2 %.2e",
                worst_loss, worst_grad, wg, worst_param, wp, worst_zero);
    free(losses);
    ckd_st_close(run);
}
