/* CLIP model speed, random weights at the real shapes, on 2 threads unless
 * CLIPKD_THREADS says otherwise:
 *   - the ViT-B/32 image tower forward (no grad, 224 px) at batch 16
 *     (throughput) and batch 1 (latency);
 *   - one ViT-T/16 training step (batch 32, both towers, CLIP loss,
 *     backward, AdamW), also as model GFLOP/s against this machine's 1024³
 *     SGEMM rate measured in the same run;
 *   - both again beside one busy process (another user's job on a shared
 *     machine): `shared-core slowdown: forward X, train step Y`.
 *
 * Peers, each skipped with a note when absent (never dependencies):
 *   - PyTorch (python3-torch), the same workloads, threads, shapes and text
 *     cut: `vit-b32 forward: clipkd/pytorch = R`, `vit-t16 train step: ...`;
 *   - ONNX Runtime (npm's onnxruntime-node, onnxruntime.h) on the same image
 *     tower exported by PyTorch to bench/vit-b32.onnx (made once):
 *     `vit-b32 forward, batch 16: clipkd/onnxruntime = R` and batch 1.
 * R = peer time / clipkd time (R > 1: clipkd faster); CLIPKD_BENCH_PEERS=none
 * times clipkd alone. Needs the in-tree
 * plugin (run from the build directory, or set CLIPKD_PLUGIN_PATH). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clipkd/blas.h"

#include "clipkd/model.h"
#include "clipkd/optim.h"
#include "bench_util.h"
#include "onnxruntime.h"
#include "pytorch.h"
#include "cli/passive_threads.h"

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

static double bench_forward(ckd_model *m, ckd_ctx *c, ckd_rng *rng, int64_t B, int reps)
{
    int64_t S = ckd_model_get_info(m)->image_size;
    int64_t shape[4] = {B, 3, S, S};
    double t[16];
    for (int r = 0; r <= reps; r++) {
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
    return bench_median_after_warmup(t, reps);
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

/* The same workloads in PyTorch (after bench_torch_clip_py); prints "fwd",
 * "fwd1" and "train" SECONDS. With a second argument, first exports the
 * ViT-B/32 image tower to that ONNX file (input "image", batch dynamic). */
static const char py_script[] =
    "torch.set_num_threads(int(sys.argv[1])); torch.set_num_interop_threads(1)\n"
    "b32 = CLIP(512, 224, 32, 768, 12, 12, 512, 12, 8, 'quick_gelu').eval()\n"
    "if len(sys.argv) > 2:\n"
    "    class Image(nn.Module):\n"
    "        def __init__(s, m): super().__init__(); s.m = m\n"
    "        def forward(s, x): return s.m.image(x)\n"
    "    torch.onnx.export(Image(b32), torch.randn(1, 3, 224, 224), sys.argv[2], input_names=['image'],\n"
    "                      output_names=['embedding'], dynamic_axes={'image': {0: 'batch'}}, opset_version=14)\n"
    "    print('exported 1', flush=True)\n"
    "x16, x1 = torch.randn(16, 3, 224, 224), torch.randn(1, 3, 224, 224)\n"
    "def fwd():\n"
    "    with torch.no_grad(): b32.image(x16)\n"
    "def fwd1():\n"
    "    with torch.no_grad(): b32.image(x1)\n"
    "print('fwd', median(fwd), flush=True); print('fwd1', median(fwd1), flush=True); del b32\n"
    "t16 = CLIP(512, 224, 16, 192, 12, 3, 384, 12, 6, 'gelu').train()\n"
    "opt = torch.optim.AdamW(t16.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.1)\n"
    "x32 = torch.randn(32, 3, 224, 224); ids = torch.full((32, 77), 49407); ids[:, 0] = 49406\n"
    "ids[:, 1:15] = torch.randint(1000, 40000, (32, 14))\n"
    "def step():\n"
    "    opt.zero_grad(); clip_loss(t16, x32, ids).backward(); opt.step()\n"
    "print('train', median(step), flush=True)\n";

/* Runs the script (exporting to onnx_path unless NULL); 0 and the three
 * times, or -1 when torch is not importable or the script failed. */
static int pytorch_times(int threads, const char *onnx_path, double v[3])
{
    static const char *const keys[] = {"fwd", "fwd1", "train", "exported"};
    double got[4];
    char args[1100];
    snprintf(args, sizeof args, onnx_path ? "%d '%s'" : "%d", threads, onnx_path);
    if (bench_torch_run(py_script, args, keys, got, onnx_path ? 4 : 3))
        return -1;
    memcpy(v, got, 3 * sizeof *v);
    return 0;
}

/* This machine's SGEMM rate through clipkd's wrapper: 1024³, best of 5. */
static double sgemm_gflops(void)
{
    int64_t n = 1024;
    float *a = malloc((size_t)(n * n) * sizeof *a), *b = malloc((size_t)(n * n) * sizeof *b),
          *cc = malloc((size_t)(n * n) * sizeof *cc);
    if (!a || !b || !cc)
        die("sgemm", "out of memory");
    for (int64_t i = 0; i < n * n; i++)
        a[i] = (float)(i % 7) * 0.1f, b[i] = (float)(i % 5) * 0.1f;
    double best = 1e30;
    for (int r = 0; r < 6; r++) {
        double t0 = bench_now();
        ckd_gemm(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, cc, n);
        double t = bench_now() - t0;
        if (r > 0 && t < best)
            best = t;
    }
    free(a), free(b), free(cc);
    return 2.0 * (double)(n * n * n) / best / 1e9;
}

/* Multiply-adds ×2 of one transformer tower over B sequences of T tokens,
 * width C, L layers: q, k, v, o and the 4× MLP (24·T·C² a layer) and the
 * attention products (4·T²·C). */
static double tower_flops(double B, double T, double C, double L)
{
    return B * L * (24.0 * T * C * C + 4.0 * T * T * C);
}

/* The model FLOPs of bench_train's step (ViT-T-16.json: vision width 192,
 * 12 layers, 197 tokens; text width 384, 12 layers, 16 tokens after the
 * cut; embeddings 512): forward, then backward at twice the forward's
 * products, except that the patch embedding needs no gradient for the
 * pixels. Elementwise work is not counted. */
static double vit_t16_step_flops(void)
{
    double B = 32, patch = 2.0 * B * 196 * (3 * 16 * 16) * 192;
    double rest = tower_flops(B, 197, 192, 12) + tower_flops(B, 16, 384, 12) + 2.0 * B * (192 + 384) * 512;
    return 2 * patch + 3 * rest;
}

/* A process that keeps one core busy (another user's job), until killed. */
static pid_t start_busy(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (volatile unsigned long x = 0;; x++)
            ;
    }
    return pid;
}

static void stop_busy(pid_t pid)
{
    if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    cli_sleeping_threads(argv); /* measure what users of the clipkd program get */
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

    /* The peers first, while this process has no OpenMP threads yet that
     * could spin beside them. */
    char ort_version[64];
    int no_peers = getenv("CLIPKD_BENCH_PEERS") && !strcmp(getenv("CLIPKD_BENCH_PEERS"), "none");
    const char *ort_missing = no_peers ? "CLIPKD_BENCH_PEERS=none" : bench_ort_missing(ort_version, sizeof ort_version);
    const char *onnx = "bench/vit-b32.onnx";
    int need_export = !ort_missing && access(onnx, R_OK) != 0;
    double pt[3], ort16 = 0, ort1 = 0;
    int have_torch = !no_peers && pytorch_times(threads, need_export ? onnx : NULL, pt) == 0;
    int have_ort = !ort_missing && access(onnx, R_OK) == 0 && bench_ort_vit(onnx, 224, threads, &ort16, &ort1) == 0;

    const ckd_blas_info *bi = ckd_blas_init();
    printf("BLIS %s, kernels %s (%s), %d threads\n", bi->version, bi->arch, bi->reason, threads);
    ckd_model *b32 = make_model(r, "ViT-B-32");
    double fwd = bench_forward(b32, c, &rng, 16, REPS), fwd1 = bench_forward(b32, c, &rng, 1, 9);
    printf("vit-b32 image forward, %d threads: batch 16 %.3f s (%.1f images/s), batch 1 %.1f ms\n", threads, fwd,
           16 / fwd, 1e3 * fwd1);
    ckd_model *t16 = make_model(r, "ViT-T-16");
    double train = bench_train(t16, c, &rng);
    double sgemm = sgemm_gflops(), model = vit_t16_step_flops() / train / 1e9;
    printf("vit-t16 train step, batch 32, %d threads: %.3f s\n", threads, train);
    printf("sgemm 1024^3, %d threads: %.1f GFLOP/s\n", threads, sgemm);
    printf("vit-t16 train step: model GFLOP/s = %.1f (%.0f%% of sgemm)\n", model, 100 * model / sgemm);

    pid_t busy = start_busy();
    double fwd_shared = bench_forward(b32, c, &rng, 16, REPS), train_shared = bench_train(t16, c, &rng);
    stop_busy(busy);
    printf("beside one busy process: forward %.3f s, train step %.3f s\n", fwd_shared, train_shared);
    printf("shared-core slowdown: forward %.2f, train step %.2f\n", fwd_shared / fwd, train_shared / train);
    ckd_model_free(b32);
    ckd_model_free(t16);

    if (have_torch) {
        printf("pytorch: vit-b32 forward %.3f s (batch 1 %.1f ms), vit-t16 train step %.3f s\n", pt[0],
               1e3 * pt[1], pt[2]);
        printf("vit-b32 forward: clipkd/pytorch = %.2f\n", pt[0] / fwd);
        printf("vit-t16 train step: clipkd/pytorch = %.2f\n", pt[2] / train);
    } else {
        printf("pytorch: not importable by python3; no comparison\n");
    }
    if (have_ort) {
        printf("onnxruntime %s (CPU, %d intra-op threads): vit-b32 forward batch 16 %.3f s, batch 1 %.1f ms\n",
               ort_version, threads, ort16, 1e3 * ort1);
        printf("vit-b32 forward, batch 16: clipkd/onnxruntime = %.2f\n", ort16 / fwd);
        printf("vit-b32 forward, batch 1: clipkd/onnxruntime = %.2f\n", ort1 / fwd1);
    } else {
        printf("onnxruntime: %s; no comparison\n",
               ort_missing ? ort_missing : "no bench/vit-b32.onnx (PyTorch exports it) or the run failed");
    }
    ckd_ctx_free(c);
    ckd_registry_free(r);
    return 0;
}
