/* Tests for what CLIP-Embed-KD's cost table compares (losses/embed_nce.c
 * and the controls of losses/embed_kd.c). Each is an identity with
 * embed_kd's method, which is checked against the PyTorch fixture in
 * test-losses: the same loss and gradients, to float rounding, on random
 * inputs, with the same learned map W copied between the instances.
 *   embed_nce          = embed_kd with centroids = the batch's t_img and
 *                        each sample its own class;
 *   centroids "random" = embed_kd with centroids n(g_k), g ~ N(0, I) from
 *                        ckd_rng seeded with `seed`;
 *   centroids "student"= embed_kd (Dt = Ds) with centroids the batch's
 *                        class means of n(s_img), as constants: the same
 *                        gradient on s_img as with fixed centroids, which is
 *                        why `clipkd gradcheck` (whose differences move the
 *                        means too) does not apply to this control.
 * (embed_nce and the random control also pass test-losses' finite-difference
 * checks.) */
#include "config.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipkd/loss.h"
#include "plugin_test_util.h"

static ckd_registry *reg;

static void open_registry(void) { reg = test_registry_open("losses"); }

static void close_registry(void) { ckd_registry_free(reg); }

TestSuite(embed, .init = open_registry, .fini = close_registry, .timeout = 60);

enum { N = 12, DS = 8, DT = 6, K = 4 };

static ckd_loss *make(const char *plugin, const char *params, int64_t s_dim, int64_t t_dim, int64_t k)
{
    ckd_loss_dims dims = {s_dim, t_dim, k};
    json_t *j = test_params(params);
    ckd_error err = {{0}};
    ckd_loss *l = ckd_loss_new(test_plugin(reg, CKD_PLUGIN_LOSS, plugin), j, "test", &dims, 7, &err);
    json_decref(j);
    cr_assert_not_null(l, "%s: %s", plugin, err.msg);
    return l;
}

/* Gives b's instance the map W of a (both own one matrix of the same shape). */
static void copy_map(ckd_loss *from, ckd_loss *to)
{
    ckd_tensor *a = ckd_loss_param(from, 0), *b = ckd_loss_param(to, 0);
    cr_assert(a && b && a->n == b->n);
    memcpy(b->data, a->data, (size_t)a->n * sizeof(float));
}

static void fill_normal(float *x, int64_t n, ckd_rng *r, int normalise_rows_of)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)ckd_rng_normal(r);
    for (int64_t i = 0; normalise_rows_of && i < n / normalise_rows_of; i++) {
        double s = 0;
        for (int d = 0; d < normalise_rows_of; d++)
            s += (double)x[i * normalise_rows_of + d] * x[i * normalise_rows_of + d];
        for (int d = 0; d < normalise_rows_of; d++)
            x[i * normalise_rows_of + d] = (float)(x[i * normalise_rows_of + d] / sqrt(s));
    }
}

/* The inputs of one evaluation: s_img (with gradient), t_img (normalised),
 * labels, centroids (may be NULL: no centroids). */
typedef struct inputs {
    float s[N * DS], t[N * DT];
    int32_t labels[N];
} inputs;

static inputs make_inputs(uint64_t seed)
{
    inputs in;
    ckd_rng r;
    ckd_rng_seed(&r, seed);
    fill_normal(in.s, N * DS, &r, 0);
    fill_normal(in.t, N * DT, &r, DT);
    for (int i = 0; i < N; i++)
        in.labels[i] = i % K; /* every class present */
    return in;
}

/* Loss and the gradient on s_img of l on the inputs, with centroids
 * cent [kc, dc] (NULL: none) and labels (NULL: the inputs'). */
static double eval(ckd_loss *l, const inputs *in, const float *cent, int64_t kc, int64_t dc, const int32_t *labels,
                   float *grad_s)
{
    ckd_error err = {{0}};
    ckd_ctx *c = ckd_ctx_new(0, 0, &err);
    cr_assert_not_null(c, "%s", err.msg);
    ckd_loss_batch b = {.struct_size = sizeof b, .n = N};
    b.s_img = ckd_tensor_from(c, 2, (int64_t[]){N, DS}, in->s);
    ckd_tensor_set_requires_grad(b.s_img, 1);
    b.t_img = ckd_tensor_from(c, 2, (int64_t[]){N, DT}, in->t);
    b.labels = labels ? labels : in->labels;
    if (cent)
        b.centroids = ckd_tensor_from(c, 2, (int64_t[]){kc, dc}, cent);
    ckd_tensor *loss = ckd_loss_forward(l, c, &b);
    cr_assert(loss && !ckd_ctx_check(c, &err), "%s", err.msg);
    double v = loss->data[0];
    cr_assert_eq(ckd_backward(c, loss, &err), 0, "%s", err.msg);
    cr_assert_not_null(b.s_img->grad);
    memcpy(grad_s, b.s_img->grad, sizeof(float) * N * DS);
    ckd_ctx_free(c);
    return v;
}

static void expect_close(double a, double b, const float *ga, const float *gb, const char *what)
{
    cr_expect(fabs(a - b) <= 1e-5 * (1 + fabs(b)), "%s: loss %.8f vs %.8f", what, a, b);
    double worst = 0;
    for (int i = 0; i < N * DS; i++)
        worst = fmax(worst, fabs((double)ga[i] - gb[i]));
    cr_expect_leq(worst, 1e-6, "%s: s_img gradients differ by %g", what, worst);
}

Test(embed, embed_nce_is_embed_kd_with_the_batch_as_its_classes)
{
    inputs in = make_inputs(1);
    ckd_loss *nce = make("embed_nce", NULL, DS, DT, K), *kd = make("embed_kd", NULL, DS, DT, N);
    copy_map(nce, kd);
    int32_t self[N];
    for (int i = 0; i < N; i++)
        self[i] = i;
    float ga[N * DS], gb[N * DS];
    double a = eval(nce, &in, NULL, 0, 0, NULL, ga), b = eval(kd, &in, in.t, N, DT, self, gb);
    expect_close(a, b, ga, gb, "embed_nce vs embed_kd");
    cr_expect(a > 0 && isfinite(a));
    ckd_loss_free(kd);
    /* tau divides the cosines: at τ = 0.5 the loss changes */
    ckd_loss *sharp = make("embed_nce", "{\"tau\": 0.5}", DS, DT, K);
    copy_map(nce, sharp);
    double c = eval(sharp, &in, NULL, 0, 0, NULL, ga);
    cr_expect(fabs(c - a) > 1e-3, "tau 0.5 gave %.6f, tau 1 %.6f", c, a);
    ckd_loss_free(sharp);
    ckd_loss_free(nce);
}

Test(embed, random_centroids_are_seeded_unit_normals)
{
    inputs in = make_inputs(2);
    ckd_loss *rnd = make("embed_kd", "{\"centroids\": \"random\", \"seed\": 5}", DS, DT, K),
             *kd = make("embed_kd", NULL, DS, DT, K), *other = make("embed_kd", "{\"centroids\": \"random\"}", DS, DT, K);
    copy_map(rnd, kd);
    copy_map(rnd, other);
    float cent[K * DT], ga[N * DS], gb[N * DS], gc[N * DS];
    ckd_rng r;
    ckd_rng_seed(&r, 5);
    fill_normal(cent, K * DT, &r, DT);
    /* the host's centroids are ignored: give it others */
    float host[K * DT];
    ckd_rng_seed(&r, 77);
    fill_normal(host, K * DT, &r, DT);
    double a = eval(rnd, &in, host, K, DT, NULL, ga), b = eval(kd, &in, cent, K, DT, NULL, gb),
           c = eval(other, &in, host, K, DT, NULL, gc);
    expect_close(a, b, ga, gb, "random centroids (seed 5)");
    cr_expect(fabs(a - c) > 1e-4, "seed 0 and seed 5 gave the same loss %.6f", a);
    ckd_loss_free(rnd);
    ckd_loss_free(kd);
    ckd_loss_free(other);
}

Test(embed, student_centroids_are_its_batch_class_means_as_constants)
{
    inputs in = make_inputs(3);
    ckd_loss *st = make("embed_kd", "{\"centroids\": \"student\"}", DS, DT, K),
             *kd = make("embed_kd", NULL, DS, DS, K); /* W is Ds×Ds in both */
    copy_map(st, kd);
    float mean[K * DS] = {0}, ga[N * DS], gb[N * DS];
    int count[K] = {0};
    for (int i = 0; i < N; i++) {
        double s = 0;
        for (int d = 0; d < DS; d++)
            s += (double)in.s[i * DS + d] * in.s[i * DS + d];
        for (int d = 0; d < DS; d++)
            mean[in.labels[i] * DS + d] += (float)(in.s[i * DS + d] / sqrt(s));
        count[in.labels[i]]++;
    }
    for (int k = 0; k < K; k++)
        for (int d = 0; d < DS; d++)
            mean[k * DS + d] /= (float)count[k];
    float host[K * DT] = {0};
    double a = eval(st, &in, host, K, DT, NULL, ga), b = eval(kd, &in, mean, K, DS, NULL, gb);
    expect_close(a, b, ga, gb, "student centroids");
    /* a class missing from the batch has a zero centroid: logit 0 */
    int32_t three[N];
    for (int i = 0; i < N; i++)
        three[i] = i % 3;
    double c = eval(st, &in, host, K, DT, three, ga);
    cr_expect(isfinite(c) && c > 0);
    ckd_loss_free(st);
    ckd_loss_free(kd);
}

Test(embed, bad_parameters)
{
    ckd_loss_dims dims = {DS, DT, K};
    ckd_error err = {{0}};
    json_t *j = test_params("{\"centroids\": \"teachers\"}");
    cr_expect_null(ckd_loss_new(test_plugin(reg, CKD_PLUGIN_LOSS, "embed_kd"), j, "losses[1]", &dims, 7, &err));
    cr_expect(strstr(err.msg, "losses[1]") && strstr(err.msg, "teachers"), "%s", err.msg);
    json_decref(j);
    dims.t_dim = 0;
    cr_expect_null(ckd_loss_new(test_plugin(reg, CKD_PLUGIN_LOSS, "embed_nce"), NULL, "losses[1]", &dims, 7, &err));
    cr_expect(strstr(err.msg, "teacher"), "%s", err.msg);
}
