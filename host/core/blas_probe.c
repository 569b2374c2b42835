/* The timed choice of BLIS kernel set: candidates, the probe in child
 * processes, the rule, and the figures kept in the cache directory.
 *
 * Why measure: BLIS maps a CPU model to a kernel set by table, and the table
 * can be wrong for a machine (a server CPU with AVX-512 mapped to the AVX2
 * 'haswell' set runs 20-35% below what its 'skx' set reaches). Timing the
 * sets the CPU can run settles it for the machine at hand.
 *
 * Cache file, <cache>/kernels/<vendor>-<family>-<model>-<stepping>-blis-<version>.json:
 *   {"cpu": "...", "blis": "0.9.0", "threads": 1, "shapes": [[M, N, K], ...],
 *    "gflops": {"zen3": 61.2, "haswell": 60.9, ...}, "choice": "zen3", "seconds": 0.31}
 * Only "gflops" is read back (the rule is applied again to it); a file that
 * does not parse, or lacks a candidate of this process, is measured again and
 * rewritten, with a warning that names it. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "clipkd/fetch.h"
#include "core/blas_probe.h"
#include "io/fetch_internal.h"

/* The timed products, from a ViT's layers: 384 tokens of width 768 (a
 * training batch's share of rows), and 50 tokens (one image of ViT-B/32,
 * the latency case). Kernel sets differ most on such mid-sized and skinny
 * products (BLIS 0.9 on a Zen 3 CPU: zen3 kernels 53 and 51 GFLOP/s, haswell
 * kernels 88 and 46), while on large squares they tie. A candidate's figure
 * is the geometric mean of its two rates; ≈10 ms of work on one core. */
static const int probe_shapes[2][3] = {{384, 768, 768}, {50, 768, 768}};
#define PROBE_ROUNDS 5
#define PROBE_BUDGET_S 0.4   /* rounds stop early past this */
#define PROBE_KEEP_MARGIN 1.02

enum { ISA_AVX2 = 1, ISA_AVX512 = 2 };
static const struct {
    const char *name;
    int isa;
} kernel_sets[] = {
    {"skx", ISA_AVX512}, {"zen4", ISA_AVX512}, {"zen5", ISA_AVX512}, {"haswell", ISA_AVX2},
    {"zen3", ISA_AVX2},  {"zen2", ISA_AVX2},   {"zen", ISA_AVX2},
};

static int has_name(const ckdi_kernel_probe *p, const char *name)
{
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->name[i], name))
            return i;
    return -1;
}

static void add_name(ckdi_kernel_probe *p, const char *name)
{
    if (p->n < CKDI_MAX_KERNELS && has_name(p, name) < 0 && strlen(name) < sizeof p->name[0])
        snprintf(p->name[p->n++], sizeof p->name[0], "%s", name);
}

int ckdi_kernel_candidates(ckdi_kernel_probe *p, const char *blis_choice, int avx512, int avx2_fma,
                           int (*arch_id)(const char *name))
{
    memset(p, 0, sizeof *p);
    p->choice = -1;
    /* BLIS's own choice first: it is the one kept on a tie. 'generic' (BLIS
     * did not recognise the CPU) is never worth timing beside a real set. */
    if (blis_choice && *blis_choice != '(' && strcmp(blis_choice, "generic") && arch_id(blis_choice) >= 0)
        add_name(p, blis_choice);
    for (size_t i = 0; i < sizeof kernel_sets / sizeof kernel_sets[0]; i++) {
        int ok = kernel_sets[i].isa == ISA_AVX512 ? avx512 : avx2_fma;
        if (ok && arch_id(kernel_sets[i].name) >= 0)
            add_name(p, kernel_sets[i].name);
    }
    return p->n;
}

int ckdi_kernel_pick(const ckdi_kernel_probe *p, const char *blis_choice)
{
    int best = -1;
    for (int i = 0; i < p->n; i++)
        if (p->gflops[i] > 0 && (best < 0 || p->gflops[i] > p->gflops[best]))
            best = i;
    int own = blis_choice ? has_name(p, blis_choice) : -1;
    if (best >= 0 && own >= 0 && p->gflops[own] > 0 && p->gflops[best] <= PROBE_KEEP_MARGIN * p->gflops[own])
        return own;
    return best;
}

/* ---- the probe ------------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const char *b = buf;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w, n -= (size_t)w;
    }
    return 0;
}

/* Reads n bytes, waiting at most timeout_ms in all; -1 on EOF, error or time-out. */
static int read_all(int fd, void *buf, size_t n, int timeout_ms)
{
    char *b = buf;
    double end = now_s() + timeout_ms / 1000.0;
    while (n > 0) {
        int left = (int)((end - now_s()) * 1000);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, left) <= 0)
            return -1;
        ssize_t r = read(fd, b, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        b += r, n -= (size_t)r;
    }
    return 0;
}

/* The child: BLIS on the requested set, one thread (a forked child must not
 * start OpenMP threads of its own: the parent's pool does not exist in it).
 * Sends its warm-up time, then one GFLOP/s figure per byte received, until
 * the pipe closes. A set this BLIS was built without makes BLIS abort: the
 * parent sees the pipe close and counts the set as unavailable. */
static void child_main(int id, int cmd_fd, int res_fd)
{
    char num[16];
    snprintf(num, sizeof num, "%d", id);
    setenv("BLIS_ARCH_TYPE", num, 1);
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0)
        dup2(devnull, 2); /* BLIS's own abort message is not the user's concern */
    float *m[2][3];
    for (int s = 0; s < 2; s++) {
        const int *d = probe_shapes[s];
        size_t n[3] = {(size_t)d[0] * d[2], (size_t)d[2] * d[1], (size_t)d[0] * d[1]};
        for (int k = 0; k < 3; k++)
            if (!(m[s][k] = malloc(n[k] * sizeof(float))))
                _exit(1);
        for (int k = 0; k < 2; k++)
            for (size_t i = 0; i < n[k]; i++)
                m[s][k][i] = (float)((int)(i % (13 + 4 * k)) - 6) * 0.01f;
        ckdi_sgemm_nn(1, d[0], d[1], d[2], m[s][0], m[s][1], m[s][2]); /* warm-up */
    }
    double ready = 1;
    if (write_all(res_fd, &ready, sizeof ready))
        _exit(1);
    char cmd;
    /* The parent asks within milliseconds; a minute of silence means it is gone. */
    while (read_all(cmd_fd, &cmd, 1, 60000) == 0) {
        double logsum = 0;
        for (int s = 0; s < 2; s++) {
            const int *d = probe_shapes[s];
            double t0 = now_s();
            ckdi_sgemm_nn(1, d[0], d[1], d[2], m[s][0], m[s][1], m[s][2]);
            logsum += log(2.0 * d[0] * d[1] * d[2] / (now_s() - t0) / 1e9);
        }
        double g = exp(logsum / 2);
        if (write_all(res_fd, &g, sizeof g))
            break;
    }
    _exit(0);
}

typedef struct child {
    pid_t pid;
    int cmd, res; /* parent's ends */
} child;

/* Forks the child for set id; earlier is the children already running,
 * whose pipe ends the new child must close (a write end left open in a
 * sibling would keep that child from ever seeing its pipe close). */
static int spawn(child *ch, int id, const child *earlier, int n_earlier)
{
    int to[2], from[2];
    ch->pid = -1, ch->cmd = ch->res = -1;
    if (pipe(to))
        return -1;
    if (pipe(from)) {
        close(to[0]), close(to[1]);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(to[1]), close(from[0]);
        for (int i = 0; i < n_earlier; i++)
            if (earlier[i].pid > 0)
                close(earlier[i].cmd), close(earlier[i].res);
        child_main(id, to[0], from[1]);
    }
    close(to[0]), close(from[1]);
    if (pid < 0) {
        close(to[1]), close(from[0]);
        return -1;
    }
    ch->pid = pid, ch->cmd = to[1], ch->res = from[0];
    return 0;
}

static void reap(child *ch)
{
    if (ch->cmd >= 0)
        close(ch->cmd);
    if (ch->res >= 0)
        close(ch->res);
    if (ch->pid > 0) {
        int st;
        while (waitpid(ch->pid, &st, 0) < 0 && errno == EINTR)
            ;
    }
    ch->pid = -1, ch->cmd = ch->res = -1;
}

/* Times every candidate: the children start one after another (each warms
 * up alone), then the rounds ask each in turn, so that a change in the
 * machine's load touches every candidate alike; the best of the rounds
 * counts. Returns the seconds taken. */
static double run_probe(ckdi_kernel_probe *p, int (*arch_id)(const char *name))
{
    double t0 = now_s();
    child ch[CKDI_MAX_KERNELS];
    /* A child that dies mid-write must not kill the parent. */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigaction(SIGPIPE, &ign, &old);
    for (int i = 0; i < p->n; i++) {
        p->gflops[i] = 0;
        double ready;
        if (spawn(&ch[i], arch_id(p->name[i]), ch, i) || read_all(ch[i].res, &ready, sizeof ready, 5000))
            reap(&ch[i]);
    }
    for (int r = 0; r < PROBE_ROUNDS; r++) {
        if (r > 0 && now_s() - t0 > PROBE_BUDGET_S)
            break;
        for (int k = 0; k < p->n; k++) {
            int i = (k + r) % p->n; /* a different one goes first each round */
            double g;
            if (ch[i].pid < 0)
                continue;
            if (write_all(ch[i].cmd, "t", 1) || read_all(ch[i].res, &g, sizeof g, 5000)) {
                reap(&ch[i]);
                continue;
            }
            if (g > p->gflops[i])
                p->gflops[i] = g;
        }
    }
    for (int i = 0; i < p->n; i++)
        reap(&ch[i]);
    sigaction(SIGPIPE, &old, NULL);
    return now_s() - t0;
}

/* ---- the figures kept in the cache ----------------------------------------------------- */

static void cpu_key(char *out, size_t cap, const char *blis_version)
{
    char vendor[13] = "unknown";
    unsigned fam = 0, model = 0, step = 0;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (__get_cpuid(0, &a, &b, &c, &d)) {
        memcpy(vendor, &b, 4), memcpy(vendor + 4, &d, 4), memcpy(vendor + 8, &c, 4);
        vendor[12] = 0;
    }
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        unsigned base = (a >> 8) & 0xf;
        fam = base == 0xf ? base + ((a >> 20) & 0xff) : base;
        model = ((a >> 4) & 0xf) | ((base == 0x6 || base == 0xf) ? ((a >> 12) & 0xf0) : 0);
        step = a & 0xf;
    }
#endif
    snprintf(out, cap, "%s-%u-%u-%u-blis-%s", vendor, fam, model, step, blis_version);
    for (char *s = out; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '.' ||
              *s == '-'))
            *s = '_';
}

/* Reads the kept figures into p. 0: every candidate has a figure; 1: no file;
 * -1: a file that cannot be used (why in msg). */
static int read_kept(const char *path, ckdi_kernel_probe *p, char *msg, size_t cap)
{
    if (access(path, F_OK) != 0)
        return 1;
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        snprintf(msg, cap, "line %d, column %d: %s", je.line, je.column, je.text);
        return -1;
    }
    int rc = 0;
    json_t *g = json_object_get(root, "gflops");
    if (!json_is_object(g)) {
        snprintf(msg, cap, "expected an object \"gflops\" of kernel set names to GFLOP/s");
        rc = -1;
    }
    for (int i = 0; rc == 0 && i < p->n; i++) {
        json_t *v = json_object_get(g, p->name[i]);
        if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1e6) {
            snprintf(msg, cap, "\"gflops\".\"%s\": expected a number of GFLOP/s (0 = not available)",
                     p->name[i]);
            rc = -1;
        } else {
            p->gflops[i] = json_number_value(v);
        }
    }
    json_decref(root);
    return rc;
}

static void write_kept(const char *path, const ckdi_kernel_probe *p, const char *key, const char *blis_version,
                       double seconds)
{
    json_t *root = json_object(), *g = json_object(), *shapes = json_array();
    for (int s = 0; s < 2; s++)
        json_array_append_new(shapes, json_pack("[iii]", probe_shapes[s][0], probe_shapes[s][1], probe_shapes[s][2]));
    for (int i = 0; i < p->n; i++)
        json_object_set_new(g, p->name[i], json_real(p->gflops[i]));
    json_object_set_new(root, "cpu", json_string(key));
    json_object_set_new(root, "blis", json_string(blis_version));
    json_object_set_new(root, "threads", json_integer(1));
    json_object_set_new(root, "shapes", shapes);
    json_object_set_new(root, "gflops", g);
    json_object_set_new(root, "choice", p->choice >= 0 ? json_string(p->name[p->choice]) : json_null());
    json_object_set_new(root, "seconds", json_real(seconds));
    char tmp[PATH_MAX + 240];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (json_dump_file(root, tmp, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(5)) == 0) {
        if (rename(tmp, path) != 0)
            unlink(tmp);
    } else {
        unlink(tmp);
    }
    json_decref(root);
}

const char *ckdi_kernel_choose(ckdi_kernel_probe *p, const char *blis_choice, const char *blis_version,
                               int (*arch_id)(const char *name))
{
    char dir[PATH_MAX], key[160], path[PATH_MAX + 200], msg[256] = "";
    ckd_error err = {{0}};
    int have_dir = ckd_cache_dir(dir, sizeof dir, &err) == 0;
    cpu_key(key, sizeof key, blis_version);
    int lock = -1, kept = 1;
    if (have_dir) {
        snprintf(path, sizeof path, "%s/kernels/%s.json", dir, key);
        /* One process of a machine probes; the others wait for its figures
         * (two probes at once would time each other). */
        if (ckdi_mkdir_parents(path, &err) != 0 || ckd_cache_lock(path, 1, &lock, &err) != 0) {
            lock = -1;
            have_dir = 0; /* err says why, in the source line */
        }
        kept = read_kept(path, p, msg, sizeof msg);
        if (kept < 0)
            snprintf(p->warning, sizeof p->warning, "%s: %s; timing the kernel sets again", path, msg);
    }
    if (kept == 0) {
        p->choice = ckdi_kernel_pick(p, blis_choice);
        snprintf(p->source, sizeof p->source, "figures kept in %s", path);
    } else {
        double s = run_probe(p, arch_id);
        p->choice = ckdi_kernel_pick(p, blis_choice);
        if (have_dir && p->choice >= 0) {
            write_kept(path, p, key, blis_version, s);
            snprintf(p->source, sizeof p->source, "measured now in %.2f s, kept in %s", s, path);
        } else {
            snprintf(p->source, sizeof p->source, "measured now in %.2f s, not kept (%s)", s,
                     have_dir ? "nothing could be timed" : err.msg);
        }
    }
    if (lock >= 0)
        ckd_cache_unlock(path, lock);
    return p->choice >= 0 ? p->name[p->choice] : NULL;
}
