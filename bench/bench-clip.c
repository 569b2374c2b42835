/* CLIP model speed: the ViT-B/32 image tower forward (no grad, batch 16,
 * 224 px) and one ViT-T/16 training step (batch 32, both towers, CLIP loss,
 * backward, AdamW), random weights at the real shapes, on 2 threads unless
 * CLIPKD_THREADS says otherwise.
 *
 * When python3 can import torch (Debian's python3-torch; never a dependency),
 * the same two workloads run in PyTorch in the same process tree, with the
 * same thread count, the same shapes and the same text cut (rows after the
 * last end-of-text token are not computed, as clipkd does), and the bench
 * prints `vit-b32 forward: clipkd/pytorch = R` and `vit-t16 train step:
 * clipkd/pytorch = R`, R = PyTorch time / clipkd time (R > 1: clipkd faster).
 * Needs the in-tree plugin (run from the build directory, or set
 * CLIPKD_PLUGIN_PATH). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clipkd/model.h"
#include "clipkd/optim.h"
#include "bench_util.h"
#include "pytorch.h"

#define REPS 3

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "bench-clip: %s: %s\n", what, msg);
    exit(1);
}

static ckd_model *make_model(const ckd_registry *r, const char *name)
{
    ckd_error err = {{0}};
    json_t *cfg = ckd_clip_config_named(name, &err);
    const ckd_plugin *p = cfg ? ckd_registry_find(r, CKD_PLUGIN_MODEL, "clip", &err) : NULL;
    ckd_model *m = p ? ckd_model_new(p, cfg, name, 1, 1, &err) : NULL;
    json_decref(cfg);
    if (!m)
        die(name, err.msg);
    return m;
}

/* Captions of 16 tokens: start, 14 ids, end, padding with the end id. */
static int32_t *random_ids(ckd_rng *rng, int64_t B, int64_t T)
{
    int32_t *ids = malloc((size_t)(B * T) * sizeof *ids);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            ids[b * T + t] = t == 0 ? 49406 : t < 15 ? (int32_t)(1000 + ckd_rng_below(rng, 39000)) : 49407;
    return ids;
}

static double bench_forward(ckd_model *m, ckd_ctx *c, ckd_rng *rng)
{
    int64_t B = 16, S = ckd_model_get_info(m)->image_size;
    int64_t shape[4] = {B, 3, S, S};
    double t[REPS + 1];
    for (int r = 0; r <= REPS; r++) {
        ckd_ctx_reset(c);
        ckd_ctx_set_grad(c, 0);
        ckd_tensor *x = ckd_tensor_new(c, 4, shape);
        for (int64_t i = 0; x && i < x->n; i++)
            x->data[i] = (float)ckd_rng_normal(rng);
        double t0 = bench_now();
        ckd_tensor *y = ckd_model_encode_image(m, c, x, 1.0f, NULL);
        t[r] = bench_now() - t0;
        if (!y)
            die("vit-b32 forward", ckd_ctx_error(c));
    }
    return bench_median_after_warmup(t, REPS);
}

static double bench_train(ckd_model *m, ckd_ctx *c, ckd_rng *rng)
{
    int64_t B = 32, T = 77, S = ckd_model_get_info(m)->image_size;
    ckd_adamw_opts o = {.lr = 1e-4, .beta1 = 0.9, .beta2 = 0.98, .eps = 1e-6};
    int n;
    ckd_tensor **ps;
    ckd_adamw *opt = bench_adamw(m, &o, &ps, &n);
    ckd_error err = {{0}};
    int32_t *ids = random_ids(rng, B, T);
    int32_t diag[32];
    for (int i = 0; i < 32; i++)
        diag[i] = i;
    double t[REPS + 1];
    for (int r = 0; r <= REPS; r++) {
        ckd_ctx_reset(c);
        ckd_ctx_set_grad(c, 1);
        ckd_tensor *x = ckd_tensor_new(c, 4, (int64_t[]){B, 3, S, S});
        for (int64_t i = 0; x && i < x->n; i++)
            x->data[i] = (float)ckd_rng_normal(rng);
        double t0 = bench_now();
        for (int i = 0; i < n; i++)
            ckd_param_zero_grad(ps[i]);
        ckd_tensor *img = ckd_l2_normalize(c, ckd_model_encode_image(m, c, x, 1.0f, NULL), 1e-12f);
        ckd_tensor *txt = ckd_l2_normalize(c, ckd_model_encode_text(m, c, ids, B, T, NULL), 1e-12f);
        ckd_tensor *lpi = ckd_mul(c, ckd_matmul_ex(c, img, 0, txt, 1), ckd_exp(c, ckd_model_logit_scale(m)));
        ckd_tensor *loss = ckd_scale(
            c, ckd_add(c, ckd_cross_entropy(c, lpi, diag), ckd_cross_entropy(c, ckd_transpose(c, lpi, 0, 1), diag)),
            0.5f);
        if (!loss || ckd_backward(c, loss, &err))
            die("vit-t16 train step", loss ? err.msg : ckd_ctx_error(c));
        ckd_adamw_step(opt);
        t[r] = bench_now() - t0;
    }
    ckd_adamw_free(opt);
    free(ids);
    free(ps);
    return bench_median_after_warmup(t, REPS);
}

/* The same workloads in PyTorch (after bench_torch_clip_py); prints "fwd
 * SECONDS" and "train SECONDS". */
static const char py_script[] =
    "torch.set_num_threads(int(sys.argv[1]))\n"
    "b32 = CLIP(512, 224, 32, 768, 12, 12, 512, 12, 8, 'quick_gelu').eval()\n"
    "x16 = torch.randn(16, 3, 224, 224)\n"
    "def fwd():\n"
    "    with torch.no_grad(): b32.image(x16)\n"
    "print('fwd', median(fwd), flush=True); del b32\n"
    "t16 = CLIP(512, 224, 16, 192, 12, 3, 384, 12, 6, 'gelu').train()\n"
    "opt = torch.optim.AdamW(t16.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.1)\n"
    "x32 = torch.randn(32, 3, 224, 224); ids = torch.full((32, 77), 49407); ids[:, 0] = 49406\n"
    "ids[:, 1:15] = torch.randint(1000, 40000, (32, 14))\n"
    "def step():\n"
    "    opt.zero_grad(); clip_loss(t16, x32, ids).backward(); opt.step()\n"
    "print('train', median(step), flush=True)\n";

/* Runs the script; 0 and both times, or -1 when torch is not importable. */
static int pytorch_times(int threads, double *fwd, double *train)
{
    static const char *const keys[] = {"fwd", "train"};
    double v[2];
    char args[32];
    snprintf(args, sizeof args, "%d", threads);
    if (bench_torch_run(py_script, args, keys, v, 2))
        return -1;
    *fwd = v[0], *train = v[1];
    return 0;
}

int main(void)
{
    if (!getenv("CLIPKD_THREADS"))
        ckd_set_threads(2);
    if (!getenv("CLIPKD_MODEL_CONFIG_DIR"))
        setenv("CLIPKD_MODEL_CONFIG_DIR", CKD_SRCDIR "/models/clip/configs", 1);
    const char *pp = getenv("CLIPKD_PLUGIN_PATH");
    ckd_error err = {{0}};
    ckd_registry *r = ckd_registry_open(pp && *pp ? pp : "models/.libs", &err);
    if (!r)
        die("registry", err.msg);
    ckd_ctx *c = ckd_ctx_new(0, 1, &err);
    if (!c)
        die("context", err.msg);
    ckd_rng rng;
    ckd_rng_seed(&rng, 3);
    int threads = ckd_get_threads();

    ckd_model *b32 = make_model(r, "ViT-B-32");
    double fwd = bench_forward(b32, c, &rng);
    ckd_model_free(b32);
    printf("vit-b32 image forward, batch 16, %d threads: %.3f s (%.1f images/s)\n", threads, fwd, 16 / fwd);
    ckd_model *t16 = make_model(r, "ViT-T-16");
    double train = bench_train(t16, c, &rng);
    ckd_model_free(t16);
    printf("vit-t16 train step, batch 32, %d threads: %.3f s\n", threads, train);

    double pf, pt;
    if (pytorch_times(threads, &pf, &pt) == 0) {
        printf("pytorch: vit-b32 forward %.3f s, vit-t16 train step %.3f s\n", pf, pt);
        printf("vit-b32 forward: clipkd/pytorch = %.2f\n", pf / fwd);
        printf("vit-t16 train step: clipkd/pytorch = %.2f\n", pt / train);
    } else {
        printf("pytorch: not importable by python3; no comparison\n");
    }
    ckd_ctx_free(c);
    ckd_registry_free(r);
    return 0;
}
