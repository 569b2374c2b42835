/* Training steps through the trainer (clipkd/train.h: the loader, the clip
 * loss plugin, AdamW, the logit-scale clamp — everything `clipkd run` does
 * per step) for two students: the quickstart's (28-px Fashion-MNIST CLIP,
 * batch 256) and a ViT-T/16-shaped CLIP (224 px, batch 32). The data are
 * random ready-made tensors (the tensors reader), so the loader only copies.
 * A step's time is the median over the steps after the first (warm-up),
 * from the trainer's step events. 2 threads unless CLIPKD_THREADS says
 * otherwise.
 *
 * When python3 can import torch, the same model, batch, loss and AdamW
 * (lr 1e-3, betas (0.9, 0.98), eps 1e-6, weight decay 0.1) run in PyTorch on
 * the same number of threads, and the bench prints, per model,
 * `train step: clipkd/pytorch = R (...)`, R = PyTorch time / clipkd time
 * (> 1: clipkd faster). Needs the in-tree plugins (run from the build
 * directory, or set CLIPKD_PLUGIN_PATH) and the tokenizer (CLIPKD_DATA_DIR,
 * default ../models/clip relative to the build directory). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clipkd/blas.h"
#include "clipkd/safetensors.h"
#include "clipkd/tensor.h"
#include "clipkd/train.h"
#include "pytorch.h"

typedef struct student {
    const char *key, *label, *config; /* config: the clip plugin's JSON */
    int image_size, context_len, batch, steps;
    const char *torch_args; /* CLIP(...) arguments in the PyTorch script */
} student;

static const student students[] = {
    {"quickstart", "quickstart student, batch 256",
     "{\"embed_dim\": 64, \"vision\": {\"image_size\": 28, \"patch_size\": 7, \"width\": 64, \"layers\": 2,"
     " \"heads\": 2}, \"text\": {\"context_length\": 20, \"width\": 48, \"layers\": 1, \"heads\": 2}}",
     28, 20, 256, 12, "64, 28, 7, 64, 2, 2, 48, 1, 2, 'gelu', 20"},
    {"vit-t16", "ViT-T/16 student, batch 32",
     "{\"embed_dim\": 512, \"act\": \"gelu\", \"vision\": {\"image_size\": 224, \"patch_size\": 16, \"width\": 192,"
     " \"layers\": 12, \"heads\": 3}, \"text\": {\"context_length\": 77, \"width\": 384, \"layers\": 12,"
     " \"heads\": 6}}",
     224, 77, 32, 4, "512, 224, 16, 192, 12, 3, 384, 12, 6, 'gelu', 77"},
};
#define N_STUDENTS (sizeof students / sizeof *students)

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "bench-train: %s: %s\n", what, msg);
    exit(1);
}

/* batch samples: normal pixels, captions of 14 random tokens between the
 * start and end tokens, padded with the end token (as bench-clip's). */
static void write_data(const char *path, const student *s)
{
    int64_t B = s->batch, S = s->image_size, T = s->context_len;
    float *px = malloc((size_t)(B * 3 * S * S) * sizeof *px);
    int32_t *ids = malloc((size_t)(B * T) * sizeof *ids);
    ckd_rng rng;
    ckd_rng_seed(&rng, 7);
    for (int64_t i = 0; i < B * 3 * S * S; i++)
        px[i] = (float)ckd_rng_normal(&rng);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            ids[b * T + t] = t == 0 ? 49406 : t < 15 ? (int32_t)(1000 + ckd_rng_below(&rng, 39000)) : 49407;
    ckd_error err = {{0}};
    ckd_st_writer *w = ckd_st_writer_new();
    if (!w || ckd_st_writer_add(w, "pixel_values", CKD_DT_F32, 4, (int64_t[]){B, 3, S, S}, px, &err) ||
        ckd_st_writer_add(w, "input_ids", CKD_DT_I32, 2, (int64_t[]){B, T}, ids, &err) ||
        ckd_st_writer_save(w, path, &err))
        die(path, err.msg);
    ckd_st_writer_free(w);
    free(px);
    free(ids);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct clock_events {
    double t[64];
    int n;
} clock_events;

static void on_event(void *user, const ckd_train_event *ev)
{
    clock_events *c = user;
    if (ev->kind == CKD_TRAIN_STEP && c->n < 64)
        c->t[c->n++] = now();
}

/* Seconds per step of the trainer on s: the median of steps 2 .. s->steps
 * (the machine may be shared; the median shrugs off a stalled step). */
static double clipkd_step(const ckd_registry *reg, const char *dir, const student *s, int threads)
{
    char data[1200], recipe[1200], out[1200], text[4096];
    snprintf(data, sizeof data, "%s/%s.safetensors", dir, s->key);
    snprintf(recipe, sizeof recipe, "%s/%s.json", dir, s->key);
    snprintf(out, sizeof out, "%s/run-%s", dir, s->key);
    write_data(data, s);
    snprintf(text, sizeof text,
             "{\"name\": \"bench-%s\", \"threads\": %d,\n"
             " \"student\": {\"model\": \"clip\", \"config\": %s},\n"
             " \"data\": {\"train\": {\"reader\": \"tensors\", \"path\": \"%s.safetensors\"}},\n"
             " \"losses\": [{\"name\": \"clip\"}],\n"
             " \"optim\": {\"lr\": 0.001, \"schedule\": \"constant\"},\n"
             " \"train\": {\"steps\": %d, \"batch_size\": %d, \"log_every\": 1000}}\n",
             s->key, threads, s->config, s->key, s->steps, s->batch);
    FILE *f = fopen(recipe, "w");
    if (!f)
        die(recipe, "cannot write");
    fputs(text, f);
    fclose(f);
    ckd_error err = {{0}};
    ckd_recipe *r = ckd_recipe_load(recipe, NULL, 0, ckd_train_plugin_schema, (void *)reg, &err);
    if (!r)
        die(recipe, err.msg);
    clock_events ce = {.n = 0};
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.out_dir = out;
    o.progress = on_event;
    o.user = &ce;
    if (ckd_train_run(reg, r, &o, NULL, 0, &err))
        die(s->key, err.msg);
    ckd_recipe_free(r);
    if (ce.n != s->steps)
        die(s->key, "missing step events");
    double d[64];
    for (int i = 1; i < ce.n; i++)
        d[i - 1] = ce.t[i] - ce.t[i - 1];
    qsort(d, (size_t)ce.n - 1, sizeof *d, cmp_double);
    return d[(ce.n - 1) / 2];
}

/* The PyTorch script: for each student, "<key> SECONDS" per step (median
 * of the steps after the first, as for clipkd). */
static const char py_script[] =
    "torch.set_num_threads(int(sys.argv[1]))\n"
    "def bench(key, B, steps, cfg):\n"
    "    m = CLIP(*cfg).train(); S, T = cfg[1], cfg[-1]\n"
    "    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.1)\n"
    "    x = torch.randn(B, 3, S, S); ids = torch.full((B, T), 49407); ids[:, 0] = 49406\n"
    "    ids[:, 1:15] = torch.randint(1000, 40000, (B, 14))\n"
    "    def step():\n"
    "        opt.zero_grad(); clip_loss(m, x, ids).backward(); opt.step()\n"
    "    step(); ts = []\n"
    "    for _ in range(steps - 1):\n"
    "        t0 = time.perf_counter(); step(); ts.append(time.perf_counter() - t0)\n"
    "    print(key, sorted(ts)[(len(ts) - 1) // 2], flush=True)\n";

int main(void)
{
    const char *env = getenv("CLIPKD_THREADS"), *pp = getenv("CLIPKD_PLUGIN_PATH");
    int threads = env && atoi(env) > 0 ? atoi(env) : 2;
    if (!getenv("CLIPKD_DATA_DIR") && access("../models/clip", F_OK) == 0)
        setenv("CLIPKD_DATA_DIR", "../models/clip", 1);
    ckd_error err = {{0}};
    ckd_registry *reg = ckd_registry_open(pp && *pp ? pp : "models/.libs:losses/.libs", &err);
    if (!reg)
        die("registry", err.msg);
    const char *tdir = getenv("TMPDIR");
    char dir[1024], cmd[1100];
    snprintf(dir, sizeof dir, "%s/clipkd-bench-train-XXXXXX", tdir && *tdir ? tdir : "/tmp");
    if (!mkdtemp(dir))
        die(dir, "cannot create");

    /* PyTorch first, while this process has no OpenMP threads yet that
     * could spin beside the script. One script for both students,
     * "bench(key, B, steps, (cfg))" each. */
    double ours[N_STUDENTS], theirs[N_STUDENTS];
    char script[sizeof py_script + 1024], args[32];
    const char *keys[N_STUDENTS];
    int k = snprintf(script, sizeof script, "%s", py_script);
    for (size_t i = 0; i < N_STUDENTS; i++) {
        k += snprintf(script + k, sizeof script - (size_t)k, "bench('%s', %d, %d, (%s))\n", students[i].key,
                      students[i].batch, students[i].steps, students[i].torch_args);
        keys[i] = students[i].key;
    }
    snprintf(args, sizeof args, "%d", threads);
    int have_torch = bench_torch_run(script, args, keys, theirs, N_STUDENTS) == 0;
    for (size_t i = 0; have_torch && i < N_STUDENTS; i++)
        printf("pytorch: %s, %d threads: %.3f s per step\n", students[i].label, threads, theirs[i]);
    fflush(stdout);

    for (size_t i = 0; i < N_STUDENTS; i++) {
        ours[i] = clipkd_step(reg, dir, &students[i], threads);
        printf("clipkd: %s, %d threads: %.3f s per step (%.0f images/s)\n", students[i].label, threads, ours[i],
               students[i].batch / ours[i]);
        fflush(stdout);
    }
    for (size_t i = 0; have_torch && i < N_STUDENTS; i++)
        printf("train step: clipkd/pytorch = %.2f (%s)\n", theirs[i] / ours[i], students[i].label);
    if (!have_torch)
        printf("pytorch: not importable by python3; no comparison\n");
    ckd_registry_free(reg);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
