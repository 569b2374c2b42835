/* The teacher embedding cache against the live teacher: one epoch of
 * distillation (clip + crd + fd + icl) of the quickstart student from a
 * larger CLIP teacher (random weights at its real shape: speed does not
 * depend on them) over 4096 Fashion-MNIST training images with 2 captions
 * each, batch 256, with augmentation, once
 * with teacher.mode "live" (fresh crops) and with "cache" reading an entry
 * computed before (its computation is timed too) of K = 1 and K = 5
 * replayed views per image (teacher.views), alternately 3 times each,
 * keeping each one's best time. Each run is a child process, so its peak
 * resident memory (VmHWM) is its own. Prints
 * `teacher cache: time live/cache = R, memory live/cache = M` for K = 1
 * (> 1: the cache is faster, smaller), then what K = 5 costs: its build
 * time and entry size against K = 1's, and its ratios to live. Needs the in-tree plugins (run from the build
 * directory, or set CLIPKD_PLUGIN_PATH) and the tokenizer (CLIPKD_DATA_DIR,
 * default ../models/clip relative to the build directory, as make bench
 * runs it from a VPATH build). 2 threads unless CLIPKD_THREADS says
 * otherwise. */
#include "config.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clipkd/train.h"

#define N_IMAGES 4096
#define REPS 3

typedef struct result {
    double seconds, peak_mib;
    int64_t teacher_encoded;
    char msg[CKD_ERROR_MAX];
} result;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* VmHWM of this process, MiB. */
static double peak_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6))
            kb = atof(line + 6);
    if (f)
        fclose(f);
    return kb / 1024;
}

/* dir/<name>.json; views > 0 sets teacher.views. */
static void write_recipe(const char *dir, const char *name, const char *mode, int views, int threads)
{
    char path[1024], v[32] = "";
    snprintf(path, sizeof path, "%s/%s.json", dir, name);
    if (views > 0)
        snprintf(v, sizeof v, ", \"views\": %d", views);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fprintf(f,
            "{\"name\": \"bench-%s\", \"seed\": 0, \"threads\": %d,\n"
            " \"teacher\": {\"model\": \"clip\", \"mode\": \"%s\"%s, \"config\": {\"embed_dim\": 128,\n"
            "   \"vision\": {\"image_size\": 28, \"patch_size\": 7, \"width\": 192, \"layers\": 4, \"heads\": 3},\n"
            "   \"text\": {\"context_length\": 20, \"width\": 128, \"layers\": 3, \"heads\": 2}}},\n"
            " \"student\": {\"model\": \"clip\", \"config\": {\"embed_dim\": 64,\n"
            "   \"vision\": {\"image_size\": 28, \"patch_size\": 7, \"width\": 64, \"layers\": 2, \"heads\": 2},\n"
            "   \"text\": {\"context_length\": 20, \"width\": 48, \"layers\": 1, \"heads\": 2}}},\n"
            " \"data\": {\"train\": {\"reader\": \"fashion-mnist\", \"split\": \"train\", \"limit\": %d,\n"
            "   \"captions\": 2, \"dir\": \"/usr/share/datasets/fashion-mnist\"}},\n"
            " \"losses\": [{\"name\": \"clip\"}, {\"name\": \"crd\"}, {\"name\": \"fd\", \"weight\": 2000},"
            " {\"name\": \"icl\"}],\n"
            " \"train\": {\"epochs\": 1, \"batch_size\": 256, \"log_every\": 1000}}\n",
            name, threads, mode, v, N_IMAGES);
    fclose(f);
}

static void on_event(void *user, const ckd_train_event *ev) { *(int64_t *)user = ev->teacher_encoded; }

/* One run of dir/<mode>.json into a new directory, in a child process. */
static result measure(const char *dir, const char *mode, const char *label, const char *plugins)
{
    int fds[2];
    result r = {0};
    if (pipe(fds)) {
        perror("pipe");
        exit(1);
    }
    static int runs;
    runs++;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        ckd_error err = {{0}};
        char path[1024], out[1024];
        snprintf(path, sizeof path, "%s/%s.json", dir, mode);
        snprintf(out, sizeof out, "%s/run-%d", dir, runs); /* a fresh run each time */
        double t0 = now();
        ckd_registry *reg = ckd_registry_open(plugins, &err);
        ckd_recipe *rec = reg ? ckd_recipe_load(path, NULL, 0, ckd_train_plugin_schema, reg, &err) : NULL;
        ckd_train_opts o;
        ckd_train_opts_init(&o);
        o.out_dir = out;
        o.progress = on_event;
        o.user = &r.teacher_encoded;
        if (!rec || ckd_train_run(reg, rec, &o, NULL, 0, &err))
            snprintf(r.msg, sizeof r.msg, "%s", err.msg);
        r.seconds = now() - t0;
        r.peak_mib = peak_mib();
        ckd_recipe_free(rec);
        ckd_registry_free(reg);
        _exit(write(fds[1], &r, sizeof r) == (ssize_t)sizeof r ? 0 : 1);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], &r, sizeof r);
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    if (n != (ssize_t)sizeof r || !WIFEXITED(st) || WEXITSTATUS(st) || r.msg[0]) {
        fprintf(stderr, "bench-teacher-cache: %s run failed: %s\n", label, r.msg[0] ? r.msg : "(child died)");
        exit(1);
    }
    printf("%-14s %7.2f s  peak RSS %7.1f MiB  teacher encoded %lld images and texts\n", label, r.seconds,
           r.peak_mib, (long long)r.teacher_encoded);
    fflush(stdout);
    return r;
}

/* The size of the teacher-embedding entries under the cache, MiB. */
static double entries_mib(const char *cache)
{
    char d[1100], f[1400];
    snprintf(d, sizeof d, "%s/teacher-embeddings", cache);
    DIR *dir = opendir(d);
    double bytes = 0;
    struct stat sb;
    for (struct dirent *e; dir && (e = readdir(dir));) {
        snprintf(f, sizeof f, "%s/%s", d, e->d_name);
        if (strstr(e->d_name, ".safetensors") && stat(f, &sb) == 0)
            bytes += (double)sb.st_size;
    }
    if (dir)
        closedir(dir);
    return bytes / (1024.0 * 1024.0);
}

int main(void)
{
    const char *env = getenv("CLIPKD_THREADS"), *pp = getenv("CLIPKD_PLUGIN_PATH");
    int threads = env && atoi(env) > 0 ? atoi(env) : 2;
    if (!getenv("CLIPKD_DATA_DIR") && access("../models/clip", F_OK) == 0)
        setenv("CLIPKD_DATA_DIR", "../models/clip", 1);
    const char *plugins = pp && *pp ? pp : "models/.libs:losses/.libs";
    const char *tdir = getenv("TMPDIR");
    char dir[1024], cache[1100], cmd[1200];
    snprintf(dir, sizeof dir, "%s/clipkd-bench-cache-XXXXXX", tdir && *tdir ? tdir : "/tmp");
    if (!mkdtemp(dir)) {
        perror(dir);
        return 1;
    }
    /* A cache of its own: the first cache run computes the entry. */
    snprintf(cache, sizeof cache, "%s/cache", dir);
    setenv("CLIPKD_CACHE", cache, 1);
    write_recipe(dir, "live", "live", 0, threads);
    write_recipe(dir, "cache-k1", "cache", 1, threads);
    write_recipe(dir, "cache-k5", "cache", 5, threads);
    printf("one epoch: %d Fashion-MNIST images (2 captions each), batch 256, augmented, %d threads; teacher: ViT 192 "
           "wide x 4, text 128 x 3; student: the quickstart's\n",
           N_IMAGES, threads);
    result b1 = measure(dir, "cache-k1", "K=1 (build)", plugins);
    double mib1 = entries_mib(cache);
    result b5 = measure(dir, "cache-k5", "K=5 (build)", plugins);
    double mib5 = entries_mib(cache) - mib1;
    /* The machine is shared: alternate them, keep each one's best. */
    result live = {.seconds = 1e30}, k1 = {.seconds = 1e30}, k5 = {.seconds = 1e30};
    for (int rep = 0; rep < REPS; rep++) {
        result a = measure(dir, "live", "live", plugins), b = measure(dir, "cache-k1", "K=1 (reuse)", plugins),
               c = measure(dir, "cache-k5", "K=5 (reuse)", plugins);
        if (a.seconds < live.seconds)
            live = a;
        if (b.seconds < k1.seconds)
            k1 = b;
        if (c.seconds < k5.seconds)
            k5 = c;
    }
    printf("teacher cache: time live/cache = %.2f, memory live/cache = %.2f\n", live.seconds / k1.seconds,
           live.peak_mib / k1.peak_mib);
    printf("views K=5: build %.2fx K=1's time, entry %.1f MiB (K=1: %.1f MiB); time live/cache = %.2f, memory "
           "live/cache = %.2f\n",
           b5.seconds / b1.seconds, mib5, mib1, live.seconds / k5.seconds, live.peak_mib / k5.peak_mib);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
