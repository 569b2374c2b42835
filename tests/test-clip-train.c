/* Training the clip model reproduces PyTorch: tests/fixtures/kd/
 * train_steps_tiny-clip-quickgelu.safetensors holds a float64 run of HF
 * CLIPModel (return_loss) on the fixture's reference inputs with AdamW
 * (lr 1e-3, betas (0.9, 0.98), eps 1e-6, weight decay 0.1 on ≥ 2-D
 * non-embedding parameters): the loss at each of 3 steps, every gradient at
 * step 0 and every parameter after 3 steps. Also AdamW's formula on its own. */
#include "config.h"

#include "clip_test_util.h"
#include "clipkd/optim.h"

/* HF CLIPModel's loss: ½[CE(λ t̂ îᵀ, diag) + CE(λ î t̂ᵀ, diag)], λ = exp θ. */
static ckd_tensor *clip_loss(ckd_ctx *c, ckd_model *m, ckd_tensor *px, const int32_t *ids, int64_t B, int64_t T)
{
    ckd_tensor *img = ckd_l2_normalize(c, ckd_model_encode_image(m, c, px, 1.0f, NULL), 0.0f);
    ckd_tensor *txt = ckd_l2_normalize(c, ckd_model_encode_text(m, c, ids, B, T, NULL), 0.0f);
    ckd_tensor *lpi = ckd_mul(c, ckd_matmul_ex(c, img, 0, txt, 1), ckd_exp(c, ckd_model_logit_scale(m)));
    int32_t *diag = ckd_scratch(c, (size_t)B * sizeof *diag, "test");
    for (int64_t i = 0; diag && i < B; i++)
        diag[i] = (int32_t)i;
    ckd_tensor *a = ckd_cross_entropy(c, lpi, diag);
    ckd_tensor *b = ckd_cross_entropy(c, ckd_transpose(c, lpi, 0, 1), diag);
    return ckd_scale(c, ckd_add(c, a, b), 0.5f);
}

Test(train, three_adamw_steps_match_pytorch, .init = open_registry, .fini = close_registry)
{
    ckd_model *m = load_fixture_model("tiny-clip-quickgelu");
    ckd_safetensors *ref = open_st(fixture("hf-clip/tiny-clip-quickgelu/reference.safetensors"));
    ckd_safetensors *run = open_st(fixture("kd/train_steps_tiny-clip-quickgelu.safetensors"));
    const ckd_st_tensor *pt, *it = ckd_st_find(ref, "input_ids");
    float *pix = ref_f32(ref, "pixel_values", &pt);
    int64_t B = it->shape[0], T = it->shape[1];
    int32_t *ids = malloc((size_t)(B * T) * sizeof *ids);
    ckd_error err = {{0}};
    cr_assert_eq(ckd_st_to_i32(it, ids, (size_t)(B * T), &err), 0, "%s", err.msg);
    float *losses = ref_f32(run, "losses", NULL);

    int n = ckd_model_n_params(m);
    ckd_tensor **ps = malloc((size_t)n * sizeof *ps);
    double *wd = malloc((size_t)n * sizeof *wd);
    for (int i = 0; i < n; i++) {
        ps[i] = ckd_model_param(m, i);
        wd[i] = ckd_adamw_default_decay(ps[i]) ? 0.1 : 0.0;
    }
    ckd_adamw_opts o = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.98, .eps = 1e-6};
    ckd_adamw *opt = ckd_adamw_new(ps, wd, n, &o, &err);
    cr_assert_not_null(opt, "%s", err.msg);

    ckd_ctx *c = new_ctx();
    double worst_loss = 0, worst_grad = 0, worst_param = 0, worst_zero = 0;
    const char *wp = "";
    char wg[300] = "";
    for (int step = 0; step < 3; step++) {
        ckd_ctx_reset(c);
        for (int i = 0; i < n; i++)
            ckd_param_zero_grad(ps[i]);
        ckd_tensor *px = ckd_tensor_from(c, 4, pt->shape, pix);
        ckd_tensor *loss = clip_loss(c, m, px, ids, B, T);
        cr_assert_eq(ckd_backward(c, loss, &err), 0, "%s", err.msg);
        double rel = fabs(loss->data[0] - losses[step]) / fabs(losses[step]);
        cr_expect_leq(rel, 1e-4, "step %d: loss %.8f, PyTorch %.8f", step, loss->data[0], losses[step]);
        worst_loss = fmax(worst_loss, rel);
        if (step == 0) {
            for (int i = 0; i < n; i++) {
                char key[300];
                snprintf(key, sizeof key, "grad.%s", ps[i]->name);
                float *g = ref_f32(run, key, NULL);
                cr_assert_not_null(ps[i]->grad, "%s has no gradient", ps[i]->name);
                expect_grad_matches(key, ps[i]->grad, g, ps[i]->n, &worst_grad, wg, sizeof wg, &worst_zero);
                free(g);
            }
        }
        ckd_adamw_step(opt);
    }
    for (int i = 0; i < n; i++) {
        char key[300];
        snprintf(key, sizeof key, "after3.%s", ps[i]->name);
        float *p = ref_f32(run, key, NULL);
        double e = 0;
        for (int64_t j = 0; j < ps[i]->n; j++)
            e = fmax(e, fabs((double)ps[i]->data[j] - p[j]));
        cr_expect_leq(e, 1e-4, "%s: max abs error %g after 3 steps", key, e);
        if (e > worst_param)
            worst_param = e, wp = ps[i]->name;
        free(p);
    }
    char report[600];
    snprintf(report, sizeof report,
             "train steps: worst loss rel error %.2e; worst step-0 gradient rel L2 %.2e (%s); worst parameter abs "
             "error after 3 steps %.2e (%s); largest vanishing gradient (k_proj biases) L2 %.2e",
             worst_loss, worst_grad, wg, worst_param, wp, worst_zero);
    cr_log_info("%s", report);
    if (getenv("CKD_TEST_VERBOSE"))
        fprintf(stderr, "%s\n", report);
    ckd_adamw_free(opt);
    ckd_ctx_free(c);
    free(ps);
    free(wd);
    free(losses);
    free(ids);
    free(pix);
    ckd_st_close(run);
    ckd_st_close(ref);
    ckd_model_free(m);
}

Test(adamw, one_parameter_by_hand)
{
    ckd_error err = {{0}};
    ckd_tensor *p = ckd_param_new(1, (int64_t[]){2}, "w", &err);
    cr_assert_not_null(p);
    p->data[0] = 1.0f, p->data[1] = -2.0f;
    double wd = 0.5;
    ckd_adamw_opts o;
    ckd_adamw_default_opts(&o);
    o.lr = 0.1;
    ckd_adamw *opt = ckd_adamw_new(&p, &wd, 1, &o, &err);
    cr_assert_not_null(opt, "%s", err.msg);
    cr_assert_not_null(p->grad, "ckd_param_new allocates the gradient");
    p->grad[0] = 0.5f, p->grad[1] = -0.25f;
    double x[2] = {1.0, -2.0}, g[2] = {0.5, -0.25}, m[2] = {0, 0}, v[2] = {0, 0};
    for (int t = 1; t <= 2; t++) {
        ckd_adamw_step(opt);
        for (int i = 0; i < 2; i++) {
            x[i] *= 1 - 0.1 * wd;
            m[i] = 0.9 * m[i] + 0.1 * g[i];
            v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
            double mh = m[i] / (1 - pow(0.9, t)), vh = v[i] / (1 - pow(0.999, t));
            x[i] -= 0.1 * mh / (sqrt(vh) + 1e-8);
            cr_expect_float_eq(p->data[i], (float)x[i], 1e-6, "step %d elem %d: %g vs %g", t, i, p->data[i], x[i]);
        }
    }
    cr_expect_eq(ckd_adamw_param_steps(opt, 0), 2);
    o.beta2 = 1.0;
    cr_expect_null(ckd_adamw_new(&p, &wd, 1, &o, &err));
    cr_expect(strstr(err.msg, "betas") != NULL, "%s", err.msg);
    ckd_adamw_free(opt);
    ckd_param_free(p);
}
