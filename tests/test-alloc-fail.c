/* Allocation-failure injection: every allocation of an operation fails in
 * turn, and the operation must fail cleanly — no crash, nothing leaked, an
 * error that says "out of memory" — or succeed where the allocation was
 * optional.
 *
 * This program replaces malloc and its family (glibc supports replacing
 * them: every allocation of the process, libc's own and jansson's, libpng's,
 * libjpeg's, zlib's included, comes here) with a counter in front of
 * glibc's allocator. For each operation: one warm-up run (first-use
 * initialisation — the BPE cache, BLIS's memory pool, OpenMP's threads —
 * must not count as a leak), one counting run that finds its N
 * allocations, then, for k = 1 .. N, a run in a child process in which the
 * k-th allocation returns NULL. The child reports whether the operation
 * failed, whether its message says "out of memory", and how many blocks it
 * left allocated; a crash shows as the child's signal. Every k is tested up
 * to 3,000 allocations; beyond, k = 1 .. 200 and 200 values spread evenly
 * over the rest (CKD_ALLOC_FAIL_ALL=1 tests every k).
 *
 * Not Criterion: Criterion's runner allocates around each test, and the
 * counting must see only the operation. One thread (CLIPKD_THREADS=1), so
 * the k-th allocation is the same one every run. Skipped under the
 * sanitizers, which bring their own allocator. */
#include "config.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "clipkd/data.h"
#include "clipkd/loader.h"
#include "clipkd/recipe.h"
#include "clipkd/registry.h"
#include "clipkd/safetensors.h"
#include "clipkd/tokenizer.h"
#include "clipkd/train.h"
#include "limits_util.h"

/* ---- the allocator ------------------------------------------------------------ */

static atomic_long n_allocs, fail_at, live;
static atomic_int armed;

#ifndef CKD_TEST_ASAN

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static int fail_now(void)
{
    if (!atomic_load(&armed))
        return 0;
    long k = atomic_fetch_add(&n_allocs, 1) + 1;
    if (k == atomic_load(&fail_at)) {
        errno = ENOMEM;
        return 1;
    }
    return 0;
}

static void *counted(void *p)
{
    if (p)
        atomic_fetch_add(&live, 1);
    return p;
}

void *malloc(size_t n)
{
    return fail_now() ? NULL : counted(__libc_malloc(n));
}

void *calloc(size_t n, size_t m)
{
    return fail_now() ? NULL : counted(__libc_calloc(n, m));
}

void *realloc(void *p, size_t n)
{
    if (!p)
        return malloc(n);
    if (n == 0) {
        free(p);
        return NULL;
    }
    return fail_now() ? NULL : __libc_realloc(p, n);
}

void free(void *p)
{
    if (p) {
        atomic_fetch_sub(&live, 1);
        __libc_free(p);
    }
}

void *memalign(size_t a, size_t n)
{
    return fail_now() ? NULL : counted(__libc_memalign(a, n));
}

void *aligned_alloc(size_t a, size_t n)
{
    return memalign(a, n);
}

int posix_memalign(void **out, size_t a, size_t n)
{
    void *p = memalign(a, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void *valloc(size_t n)
{
    return memalign((size_t)sysconf(_SC_PAGESIZE), n);
}

void *pvalloc(size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return memalign(page, (n + page - 1) / page * page);
}

#endif

/* ---- the operations --------------------------------------------------------------- */

static char tmp[256];
static const char *srcdir, *builddir;
static ckd_registry *reg;

static void write_file(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f)) {
        perror(path);
        exit(99);
    }
}

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"
#define FMNIST_SPEC(n)                                                                                    \
    "{\"reader\": \"fashion-mnist\", \"split\": \"test\", \"dir\": \"" FMNIST_DIR "\", \"limit\": " #n "}"

static int op_recipe(ckd_error *err)
{
    char path[512];
    snprintf(path, sizeof path, "%s/recipe.json", tmp);
    const char *sets[] = {"optim.lr=0.002", "losses[0].weight=2"};
    ckd_recipe *r = ckd_recipe_load(path, sets, 2, NULL, NULL, err);
    if (!r)
        return -1;
    char *dump = ckd_recipe_dump(r);
    int rc = dump ? 0 : ckd_errorf(err, "ckd_recipe_dump: out of memory");
    free(dump);
    ckd_recipe_free(r);
    return rc;
}

static int op_safetensors(ckd_error *err)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/safetensors/tiny-clip-gelu-subset.fp16.safetensors", srcdir);
    ckd_safetensors *st = ckd_st_open(path, err);
    if (!st)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < ckd_st_count(st) && !rc; i++) {
        const ckd_st_tensor *t = ckd_st_at(st, i);
        size_t n = (size_t)ckd_st_numel(t);
        float *f = malloc(n * sizeof *f + 1);
        rc = !f ? ckd_errorf(err, "reading %s: out of memory", t->name) : ckd_st_to_f32(t, f, n, err);
        free(f);
    }
    ckd_st_close(st);
    return rc;
}

static int op_tokenizer(ckd_error *err)
{
    char vocab[1024], merges[1024];
    snprintf(vocab, sizeof vocab, "%s/tests/fixtures/tokenizer/vocab.json.gz", srcdir);
    snprintf(merges, sizeof merges, "%s/tests/fixtures/tokenizer/merges.txt.gz", srcdir);
    ckd_tokenizer *tok = ckd_tokenizer_load_hf(vocab, merges, err);
    if (!tok)
        return -1;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = ckd_tokenize_full(tok, "a photo of a T-shirt, 2 sleeves.", &ids, &n, err);
    free(ids);
    ckd_tokenizer_free(tok);
    return rc;
}

/* The first n Fashion-MNIST test images (the spec built inside the
 * operation, as a recipe's would be). */
static ckd_dataset *open_fmnist(int n, ckd_error *err)
{
    json_t *spec = json_pack("{s:s, s:s, s:s, s:i}", "reader", "fashion-mnist", "split", "test", "dir", FMNIST_DIR,
                             "limit", n);
    if (!spec)
        return ckd_errorf(err, "data spec: out of memory"), NULL;
    ckd_dataset *ds = ckd_dataset_open(spec, NULL, err);
    json_decref(spec);
    return ds;
}

static int op_dataset(ckd_error *err)
{
    ckd_dataset *ds = open_fmnist(64, err);
    if (!ds)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < 4 && !rc; i++) {
        ckd_sample s = {0};
        rc = ckd_dataset_get(ds, i, &s, err);
        ckd_sample_free(&s);
    }
    ckd_dataset_close(ds);
    return rc;
}

static int op_loader_epoch(ckd_error *err)
{
    ckd_dataset *ds = open_fmnist(40, err);
    if (!ds)
        return -1;
    ckd_loader_opts o;
    ckd_loader_opts_init(&o);
    o.batch_size = 16;
    o.epochs = 1;
    o.image_size = 28;
    o.threads = 0;
    o.on_error = CKD_LOADER_FAIL;
    ckd_loader *l = ckd_loader_new(ds, &o, err);
    int rc = l ? 0 : -1;
    const ckd_batch *b;
    while (l && (rc = ckd_loader_next(l, &b, err)) > 0)
        ;
    ckd_loader_free(l);
    ckd_dataset_close(ds);
    return rc < 0 ? -1 : 0;
}

static int op_train_step(ckd_error *err)
{
    char path[512], out[512];
    snprintf(path, sizeof path, "%s/train.json", tmp);
    snprintf(out, sizeof out, "%s/run-%ld", tmp, (long)getpid());
    ckd_recipe *r = ckd_recipe_load(path, NULL, 0, ckd_train_plugin_schema, reg, err);
    if (!r)
        return -1;
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.out_dir = out;
    int rc = ckd_train_run(reg, r, &o, NULL, 0, err);
    ckd_recipe_free(r);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
    atomic_store(&armed, 0);
    if (system(cmd)) {
    }
    return rc;
}

typedef struct op {
    const char *name;
    int (*fn)(ckd_error *err);
    int needs_fmnist;
} op;

static const op ops[] = {
    {"recipe loader", op_recipe, 0},     {"safetensors reader", op_safetensors, 0},
    {"tokenizer loader", op_tokenizer, 0}, {"dataset open", op_dataset, 1},
    {"loader epoch", op_loader_epoch, 1}, {"training step", op_train_step, 1},
};

/* ---- the driver ---------------------------------------------------------------- */

/* What a child reports through its exit status, CHILD_OK + bits: bit 0 the
 * operation failed, bit 1 its message lacks "out of memory", bit 2 it
 * leaked. Any other status is the process ending inside a library: GNU
 * OpenMP (libgomp) prints "Out of memory allocating N bytes" and exits with
 * status 1 when it cannot allocate a team, which no caller can prevent. */
#define CHILD_OK 100
static int run_child(const op *o, long k, long base_live)
{
    int fds[2];
    fflush(stdout);
    fflush(stderr);
    if (pipe(fds)) {
        perror("pipe");
        exit(99);
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(99);
    }
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2); /* the parent reads what the child and its libraries print */
        ckd_error err = {{0}};
        atomic_store(&n_allocs, 0);
        atomic_store(&fail_at, k);
        atomic_store(&armed, 1);
        int rc = o->fn(&err);
        atomic_store(&armed, 0);
        long left = atomic_load(&live) - base_live;
        /* "out of memory", or strerror(ENOMEM) where a libc call said it */
        int oom = strstr(err.msg, "out of memory") || strstr(err.msg, "Cannot allocate memory");
        int st = (rc != 0) | (rc != 0 && !oom) << 1 | (left != 0) << 2;
        if (st & 2)
            fprintf(stderr, "  %s, allocation %ld failed: message without \"out of memory\": %s\n", o->name, k,
                    err.msg[0] ? err.msg : "(empty)");
        if (st & 4)
            fprintf(stderr, "  %s, allocation %ld failed: %ld blocks left allocated\n", o->name, k, left);
        _exit(CHILD_OK + st);
    }
    close(fds[1]);
    char said[4096];
    size_t n = 0;
    for (ssize_t r; (r = read(fds[0], said + n, sizeof said - 1 - n)) > 0 && n < sizeof said - 1;)
        n += (size_t)r;
    said[n] = 0;
    close(fds[0]);
    fputs(said, stderr);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        ;
    if (WIFSIGNALED(status))
        return 8 | WTERMSIG(status) << 4;
    if (WEXITSTATUS(status) >= CHILD_OK && WEXITSTATUS(status) <= CHILD_OK + 7)
        return WEXITSTATUS(status) - CHILD_OK;
    /* GNU OpenMP's exit on a failed allocation (see above), or anything
     * else ending the process: only the former is tolerated. */
    return strstr(said, "libgomp: Out of memory") ? 16 : 8 | WEXITSTATUS(status) << 4;
}

static int test_op(const op *o)
{
    ckd_error err = {{0}};
    if (o->fn(&err)) { /* warm-up */
        printf("not ok - %s: fails without injection: %s\n", o->name, err.msg);
        return 1;
    }
    long base = atomic_load(&live);
    atomic_store(&n_allocs, 0);
    atomic_store(&fail_at, 0);
    atomic_store(&armed, 1);
    int rc = o->fn(&err);
    atomic_store(&armed, 0);
    long n = atomic_load(&n_allocs), leak = atomic_load(&live) - base;
    if (rc || leak) {
        printf("not ok - %s: the counting run %s\n", o->name, rc ? "failed" : "leaked");
        return 1;
    }
    /* CKD_ALLOC_FAIL_ONLY=K: fail allocation K alone, in this process (to
     * debug one case under gdb). */
    const char *only = getenv("CKD_ALLOC_FAIL_ONLY");
    if (only && *only) {
        atomic_store(&n_allocs, 0);
        atomic_store(&fail_at, atol(only));
        atomic_store(&armed, 1);
        rc = o->fn(&err);
        atomic_store(&armed, 0);
        printf("%s, allocation %s failed: rc %d, %ld blocks left: %s\n", o->name, only, rc,
               atomic_load(&live) - base, err.msg);
        return 0;
    }
    const char *all = getenv("CKD_ALLOC_FAIL_ALL");
    long head = (all && *all == '1') || n <= 3000 ? n : 200, spread = 200;
    long tried = 0, failed_ops = 0, crashes = 0, no_oom = 0, leaks = 0, exits = 0;
    for (long k = 1; k <= n; k++) {
        if (k > head && (k - head) % ((n - head) / spread + 1) != 0 && k != n)
            continue;
        int st = run_child(o, k, base);
        tried++;
        failed_ops += st & 1;
        no_oom += (st & 2) != 0;
        leaks += (st & 4) != 0;
        if (st & 8) {
            crashes++;
            fprintf(stderr, "  %s, allocation %ld failed: CRASH (signal or exit status %d)\n", o->name, k, st >> 4);
        } else if (st & 16) {
            exits++;
            fprintf(stderr, "  %s, allocation %ld failed: libgomp exited (its message is above)\n", o->name, k);
        }
    }
    /* An exit inside libgomp is reported, not failed: it is GNU OpenMP's
     * documented behaviour, with its own "Out of memory" message. */
    int bad = crashes || no_oom || leaks;
    printf("%s - %s: %ld allocations, %ld failed in turn: %ld failed cleanly, %ld succeeded anyway, "
           "%ld crashes, %ld leaks, %ld messages without \"out of memory\", %ld exits inside libgomp\n",
           bad ? "not ok" : "ok", o->name, n, tried, failed_ops, tried - failed_ops - crashes - exits, crashes, leaks,
           no_oom, exits);
    return bad;
}

int main(void)
{
#ifdef CKD_TEST_ASAN
    printf("SKIP: allocation-failure injection replaces malloc, which the sanitizers own\n");
    return 77;
#endif
    srcdir = getenv("CKD_TEST_SRCDIR");
    builddir = getenv("CKD_TEST_BUILDDIR");
    if (!srcdir || !builddir) {
        fprintf(stderr, "CKD_TEST_SRCDIR and CKD_TEST_BUILDDIR must be set (make check sets them)\n");
        return 99;
    }
    setenv("CLIPKD_THREADS", "1", 1);
    setenv("OMP_NUM_THREADS", "1", 1);
    char path[1024];
    snprintf(path, sizeof path, "%s/models/.libs:%s/losses/.libs", builddir, builddir);
    setenv("CLIPKD_PLUGIN_PATH", path, 1);
    snprintf(path, sizeof path, "%s/models/clip", srcdir);
    setenv("CLIPKD_DATA_DIR", path, 1);
    snprintf(tmp, sizeof tmp, "%s/clipkd-alloc-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp))
        return perror("mkdtemp"), 99;
    setenv("CLIPKD_CACHE", tmp, 1);
    write_file("base.json", "{\"student\": {\"model\": \"clip\", \"config\": {\"name\": \"fmnist-student\"}},\n"
                            " \"data\": {\"train\": {\"reader\": \"fashion-mnist\"}},\n"
                            " \"losses\": [{\"name\": \"clip\"}], \"train\": {\"batch_size\": 8}}\n");
    write_file("recipe.json", "{\"extends\": \"base.json\", \"name\": \"r\", \"train\": {\"steps\": 3}}\n");
    write_file("train.json",
               "{\"name\": \"alloc\", \"seed\": 1, \"threads\": 1,\n"
               " \"student\": {\"model\": \"clip\", \"config\": {\"embed_dim\": 8,\n"
               "   \"vision\": {\"image_size\": 28, \"patch_size\": 14, \"width\": 8, \"layers\": 1, \"heads\": 2},\n"
               "   \"text\": {\"context_length\": 12, \"width\": 8, \"layers\": 1, \"heads\": 2}}},\n"
               " \"data\": {\"train\": " FMNIST_SPEC(16) "},\n"
               " \"losses\": [{\"name\": \"clip\"}],\n"
               " \"optim\": {\"lr\": 0.001}, \"train\": {\"steps\": 1, \"batch_size\": 8}}\n");
    ckd_error err = {{0}};
    if (!(reg = ckd_registry_open(NULL, &err)))
        return fprintf(stderr, "registry: %s\n", err.msg), 99;
    struct stat st;
    int have_fmnist = stat(FMNIST_DIR "/t10k-images-idx3-ubyte.gz", &st) == 0, bad = 0;
    const char *pick = getenv("CKD_ALLOC_FAIL_OP"); /* one operation, by name */
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) {
        if (pick && *pick && strcmp(pick, ops[i].name))
            continue;
        if (ops[i].needs_fmnist && !have_fmnist) {
            printf("ok - %s # SKIP Fashion-MNIST (dataset-fashion-mnist) is not installed\n", ops[i].name);
            continue;
        }
        bad += test_op(&ops[i]);
    }
    ckd_registry_free(reg);
    snprintf(path, sizeof path, "rm -rf '%s'", tmp);
    if (system(path)) {
    }
    return bad ? 1 : 0;
}
