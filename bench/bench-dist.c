/* Data-parallel training over MPI (clipkd/dist.h): the time of a training
 * step and the bytes each rank all-reduces (gradients) and all-gathers
 * (embeddings, the batch's sample list) per step, on 1 and on 2 ranks of
 * one thread each, at the same global batch. The student is the
 * quickstart's (28-px Fashion-MNIST CLIP, global batch 256) distilled from
 * a live random-init teacher of the quickstart teacher's shape with CLIP +
 * CRD + FD + ICL, so that every rank runs its shard through both models.
 *
 * Run plainly (make bench), it starts itself under `mpirun -np 1` and
 * `mpirun -np 2 --oversubscribe` and prints both, then 2 ranks again with
 * every gradient sum started only after backward (CLIPKD_DIST_OVERLAP=0),
 * and `dist: 2 ranks / 1 rank step time = R` and the overlap's ratio. Skipped with a note when clipkd
 * was built without MPI, mpirun is missing, or Fashion-MNIST is not
 * installed. Needs the in-tree plugins (run from the build directory, or
 * set CLIPKD_PLUGIN_PATH) and the tokenizer (CLIPKD_DATA_DIR, default
 * ../models/clip relative to the build directory). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clipkd/dist.h"
#include "clipkd/train.h"

#define STEPS 10

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct clock_events {
    double t[STEPS];
    ckd_dist_stats s[STEPS];
    int n;
} clock_events;

static void on_event(void *user, const ckd_train_event *ev)
{
    clock_events *c = user;
    if (ev->kind == CKD_TRAIN_STEP && c->n < STEPS) {
        c->t[c->n] = now();
        ckd_dist_get_stats(&c->s[c->n++]);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static const char recipe_text[] =
    "{\"name\": \"bench-dist\", \"threads\": 1, \"seed\": 0,\n"
    " \"student\": {\"model\": \"clip\", \"config\": {\"embed_dim\": 64, \"vision\": {\"image_size\": 28,"
    " \"patch_size\": 7, \"width\": 64, \"layers\": 2, \"heads\": 2}, \"text\": {\"context_length\": 20,"
    " \"width\": 48, \"layers\": 1, \"heads\": 2}}},\n"
    " \"teacher\": {\"model\": \"clip\", \"mode\": \"live\", \"config\": {\"embed_dim\": 64, \"vision\":"
    " {\"image_size\": 28, \"patch_size\": 7, \"width\": 96, \"layers\": 3, \"heads\": 3}, \"text\":"
    " {\"context_length\": 20, \"width\": 64, \"layers\": 2, \"heads\": 2}}},\n"
    " \"data\": {\"train\": {\"reader\": \"fashion-mnist\", \"split\": \"test\", \"detail\": 0.5}},\n"
    " \"losses\": [{\"name\": \"clip\"}, {\"name\": \"crd\"}, {\"name\": \"fd\", \"weight\": 2000},"
    " {\"name\": \"icl\"}],\n"
    " \"optim\": {\"lr\": 0.001, \"schedule\": \"constant\"},\n"
    " \"train\": {\"steps\": 10, \"batch_size\": 256, \"augment\": false, \"log_every\": 1000}}\n";

/* One rank of the job: train, and rank 0 prints its line. */
static int worker(int argc, char **argv)
{
    ckd_error err = {{0}};
    if (ckd_dist_init(&argc, &argv, &err)) {
        fprintf(stderr, "bench-dist: %s\n", err.msg);
        return 1;
    }
    const char *pp = getenv("CLIPKD_PLUGIN_PATH"), *dir = argv[2];
    ckd_registry *reg = ckd_registry_open(pp && *pp ? pp : "models/.libs:losses/.libs", &err);
    char recipe[1200], out[1200];
    snprintf(recipe, sizeof recipe, "%s/bench-dist.json", dir);
    snprintf(out, sizeof out, "%s/run-%d%s", dir, ckd_dist_size(), getenv("CLIPKD_DIST_OVERLAP") ? "-late" : "");
    ckd_recipe *r = reg ? ckd_recipe_load(recipe, NULL, 0, ckd_train_plugin_schema, reg, &err) : NULL;
    clock_events ce = {.n = 0};
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.out_dir = out;
    o.progress = on_event;
    o.user = &ce;
    int rc = !r || ckd_train_run(reg, r, &o, NULL, 0, &err);
    if (rc && ckd_dist_rank() == 0)
        fprintf(stderr, "bench-dist: %s\n", err.msg);
    if (!rc && ckd_dist_rank() == 0) {
        double d[STEPS];
        for (int i = 1; i < ce.n; i++)
            d[i - 1] = ce.t[i] - ce.t[i - 1];
        qsort(d, (size_t)ce.n - 1, sizeof *d, cmp_double);
        double steps = ce.n - 1;
        const ckd_dist_stats *s0 = &ce.s[0], *s1 = &ce.s[ce.n - 1];
        printf("dist: %d rank%s x 1 thread, global batch 256: %.4f s per step; per step and rank: all-reduced "
               "%.2f MB (%.4f s waited), all-gathered %.1f KB (%.4f s waited)\n",
               ckd_dist_size(), ckd_dist_size() > 1 ? "s" : "", d[(ce.n - 1) / 2],
               (double)(s1->allreduce_bytes - s0->allreduce_bytes) / steps / 1e6,
               (s1->allreduce_seconds - s0->allreduce_seconds) / steps,
               (double)(s1->allgather_bytes - s0->allgather_bytes) / steps / 1e3,
               (s1->allgather_seconds - s0->allgather_seconds) / steps);
    }
    ckd_recipe_free(r);
    ckd_registry_free(reg);
    ckd_dist_finalize();
    return rc;
}

/* Runs this program under mpirun on np ranks; the step time it printed. */
static double launch(const char *self, const char *mpirun, const char *dir, int np)
{
    char cmd[4096], line[1024];
    snprintf(cmd, sizeof cmd, "'%s' -np %d --oversubscribe '%s' --worker '%s' 2>&1", mpirun, np, self, dir);
    FILE *p = popen(cmd, "r");
    double step = -1;
    while (p && fgets(line, sizeof line, p)) {
        fputs(line, stdout);
        const char *s = strstr(line, "256: ");
        if (!strncmp(line, "dist: ", 6) && s)
            step = atof(s + 5);
    }
    if (p)
        pclose(p);
    fflush(stdout);
    return step;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--worker"))
        return worker(argc, argv);
    if (!ckd_dist_compiled()) {
        printf("dist: clipkd built without MPI (configure --with-mpi); skipped\n");
        return 0;
    }
    const char *mpirun = getenv("MPIEXEC") ? getenv("MPIEXEC") : "mpirun";
    char which[512];
    snprintf(which, sizeof which, "command -v '%s' > /dev/null", mpirun);
    if (system(which) != 0) {
        printf("dist: %s not found (Debian package openmpi-bin); skipped\n", mpirun);
        return 0;
    }
    if (access("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", R_OK)) {
        printf("dist: Fashion-MNIST not installed (Debian package dataset-fashion-mnist); skipped\n");
        return 0;
    }
    if (!getenv("CLIPKD_DATA_DIR") && access("../models/clip", F_OK) == 0)
        setenv("CLIPKD_DATA_DIR", "../models/clip", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1); /* Open MPI refuses root without these */
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    char self[1024], dir[1024], path[1200], cmd[1100];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k <= 0)
        return 1;
    self[k] = 0;
    const char *tdir = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/clipkd-bench-dist-XXXXXX", tdir && *tdir ? tdir : "/tmp");
    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof path, "%s/bench-dist.json", dir);
    FILE *f = fopen(path, "w");
    if (!f || fputs(recipe_text, f) < 0 || fclose(f))
        return 1;
    double one = launch(self, mpirun, dir, 1), two = launch(self, mpirun, dir, 2);
    setenv("CLIPKD_DIST_OVERLAP", "0", 1);
    printf("dist: the same, every gradient sum started after backward (CLIPKD_DIST_OVERLAP=0):\n");
    double late = launch(self, mpirun, dir, 2);
    if (one > 0 && two > 0)
        printf("dist: 2 ranks / 1 rank step time = %.2f (speed-up %.2f on this machine's cores)\n", two / one,
               one / two);
    if (two > 0 && late > 0)
        printf("dist: overlapped / after-backward gradient sums, step time = %.2f\n", two / late);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 && one > 0 && two > 0 && late > 0 ? 0 : 1;
}
