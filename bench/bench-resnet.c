/* ResNet speed: torchvision's ResNet-50 forward (eval mode, no grad, batch
 * 16, 224 px, random weights at the real shapes) and one train step of the
 * same network at batch 8 (train-mode BatchNorm, backward, AdamW), on 2
 * threads unless CLIPKD_THREADS says otherwise.
 *
 * When python3 can import torch and torchvision (Debian's python3-torch and
 * python3-torchvision; never dependencies), torchvision.models.resnet50 runs
 * the same workloads with the same thread count, and the bench prints
 * `resnet50 forward: clipkd/pytorch = R` and `resnet50 train step:
 * clipkd/pytorch = R`, R = PyTorch time / clipkd time (R > 1: clipkd
 * faster). Needs the in-tree plugin (run from the build directory, or set
 * CLIPKD_PLUGIN_PATH). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clipkd/model.h"
#include "clipkd/optim.h"
#include "bench_util.h"
#include "pytorch.h"

#define REPS 3

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "bench-resnet: %s: %s\n", what, msg);
    exit(1);
}

static ckd_tensor *random_pixels(ckd_ctx *c, ckd_rng *rng, int64_t B)
{
    ckd_tensor *x = ckd_tensor_new(c, 4, (int64_t[]){B, 3, 224, 224});
    for (int64_t i = 0; x && i < x->n; i++)
        x->data[i] = (float)ckd_rng_normal(rng);
    return x;
}

static double bench_forward(ckd_model *m, ckd_ctx *c, ckd_rng *rng)
{
    double t[REPS + 1];
    for (int r = 0; r <= REPS; r++) {
        ckd_ctx_reset(c);
        ckd_ctx_set_grad(c, 0);
        ckd_ctx_set_training(c, 0);
        ckd_tensor *x = random_pixels(c, rng, 16);
        double t0 = bench_now();
        if (!ckd_model_encode_image(m, c, x, 1.0f, NULL))
            die("resnet50 forward", ckd_ctx_error(c));
        t[r] = bench_now() - t0;
    }
    return bench_median_after_warmup(t, REPS);
}

static double bench_train(ckd_model *m, ckd_ctx *c, ckd_rng *rng)
{
    ckd_adamw_opts o = {.lr = 1e-4, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    int n;
    ckd_tensor **ps;
    ckd_adamw *opt = bench_adamw(m, &o, &ps, &n);
    ckd_error err = {{0}};
    int32_t labels[8] = {1, 7, 42, 999, 0, 500, 3, 77};
    double t[REPS + 1];
    for (int r = 0; r <= REPS; r++) {
        ckd_ctx_reset(c);
        ckd_ctx_set_grad(c, 1);
        ckd_ctx_set_training(c, 1);
        ckd_tensor *x = random_pixels(c, rng, 8);
        double t0 = bench_now();
        for (int i = 0; i < n; i++)
            ckd_param_zero_grad(ps[i]);
        ckd_tensor *loss = ckd_cross_entropy(c, ckd_model_encode_image(m, c, x, 1.0f, NULL), labels);
        if (!loss || ckd_backward(c, loss, &err))
            die("resnet50 train step", loss ? err.msg : ckd_ctx_error(c));
        ckd_adamw_step(opt);
        t[r] = bench_now() - t0;
    }
    ckd_ctx_set_training(c, 0);
    ckd_adamw_free(opt);
    free(ps);
    return bench_median_after_warmup(t, REPS);
}

/* The same workloads with torchvision (after bench_torch_clip_py, which
 * defines median); prints "fwd SECONDS" and "train SECONDS". */
static const char py_script[] =
    "import torchvision\n"
    "torch.set_num_threads(int(sys.argv[1]))\n"
    "net = torchvision.models.resnet50().eval()\n"
    "x16 = torch.randn(16, 3, 224, 224)\n"
    "def fwd():\n"
    "    with torch.no_grad(): net(x16)\n"
    "print('fwd', median(fwd), flush=True)\n"
    "net.train()\n"
    "opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.1)\n"
    "x8 = torch.randn(8, 3, 224, 224); y8 = torch.tensor([1, 7, 42, 999, 0, 500, 3, 77])\n"
    "def step():\n"
    "    opt.zero_grad(); torch.nn.functional.cross_entropy(net(x8), y8).backward(); opt.step()\n"
    "print('train', median(step), flush=True)\n";

int main(void)
{
    if (!getenv("CLIPKD_THREADS"))
        ckd_set_threads(2);
    if (!getenv("CLIPKD_DATA_DIR"))
        setenv("CLIPKD_DATA_DIR", CKD_SRCDIR "/models/resnet", 1);
    const char *pp = getenv("CLIPKD_PLUGIN_PATH");
    ckd_error err = {{0}};
    ckd_registry *r = ckd_registry_open(pp && *pp ? pp : "models/.libs", &err);
    if (!r)
        die("registry", err.msg);
    json_t *cfg = ckd_model_config_shipped("resnet", "resnet50", &err);
    const ckd_plugin *p = cfg ? ckd_registry_find(r, CKD_PLUGIN_MODEL, "resnet", &err) : NULL;
    ckd_model *m = p ? ckd_model_new(p, cfg, "resnet50", 1, 1, &err) : NULL;
    json_decref(cfg);
    ckd_ctx *c = m ? ckd_ctx_new(0, 1, &err) : NULL;
    if (!c)
        die("resnet50", err.msg);
    ckd_rng rng;
    ckd_rng_seed(&rng, 3);
    int threads = ckd_get_threads();
    double fwd = bench_forward(m, c, &rng);
    printf("resnet50 forward, batch 16, 224 px, %d threads: %.3f s (%.1f images/s)\n", threads, fwd, 16 / fwd);
    double train = bench_train(m, c, &rng);
    printf("resnet50 train step, batch 8, %d threads: %.3f s\n", threads, train);
    static const char *const keys[] = {"fwd", "train"};
    double v[2];
    char args[32];
    snprintf(args, sizeof args, "%d", threads);
    if (bench_torch_run(py_script, args, keys, v, 2) == 0) {
        printf("pytorch: resnet50 forward %.3f s, train step %.3f s\n", v[0], v[1]);
        printf("resnet50 forward: clipkd/pytorch = %.2f\n", v[0] / fwd);
        printf("resnet50 train step: clipkd/pytorch = %.2f\n", v[1] / train);
    } else {
        printf("pytorch: torch and torchvision not importable by python3; no comparison\n");
    }
    ckd_ctx_free(c);
    ckd_model_free(m);
    ckd_registry_free(r);
    return 0;
}
