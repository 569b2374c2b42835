/* Exact resume of the clipkd program after the worst interruptions: SIGKILL
 * mid-epoch, SIGKILL at random times and in the middle of checkpoint writes,
 * and a full disk while checkpointing. Each interrupted run, resumed with
 * `clipkd run --resume`, must end with the bytes of a run never interrupted
 * (same recipe, same thread count): final weights, last checkpoint, and
 * metrics.jsonl apart from its timing fields. Checkpoints are written to a
 * temporary name and renamed, so the file under the final name is always a
 * whole checkpoint; the tests look at it whenever they can while the run
 * goes on. */
#include "config.h"

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <time.h>

#include "cli_run_util.h"
#include "train_test_util.h"

/* 40 steps of a small CLIP over 192 images, 12 batches per epoch; a
 * checkpoint (about 20 MB: the token embedding and its moments) every
 * CKPT_EVERY steps. One thread, so that every run computes alike. */
#define STEPS 40
#define STEPS_PER_EPOCH 12

static void write_recipe(const char *name, int ckpt_every)
{
    char text[2048];
    snprintf(text, sizeof text,
             "{\"name\": \"resume\", \"seed\": 3, \"threads\": 1,\n"
             " \"student\": {\"model\": \"clip\", \"config\": {\"embed_dim\": 16,\n"
             "   \"vision\": {\"image_size\": 28, \"patch_size\": 7, \"width\": 32, \"layers\": 2, \"heads\": 2},\n"
             "   \"text\": {\"context_length\": 20, \"width\": 32, \"layers\": 2, \"heads\": 2}}},\n"
             " \"data\": {\"train\": {\"reader\": \"fashion-mnist\", \"split\": \"test\", \"dir\": \"" FMNIST_DIR
             "\", \"limit\": 192}},\n"
             " \"losses\": [{\"name\": \"clip\"}],\n"
             " \"optim\": {\"lr\": 0.003, \"warmup_steps\": 2, \"grad_clip\": 1.0},\n"
             " \"train\": {\"steps\": %d, \"batch_size\": 16, \"log_every\": 1, \"checkpoint_every\": %d}}\n",
             STEPS, ckpt_every);
    write_file(name, text);
}

static void sleep_ms(double ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms * 1e6) % 1000000000L};
    nanosleep(&ts, NULL);
}

/* ---- looking at a run directory while it is written ---------------------------- */

/* Complete lines of metrics.jsonl (one per step here). */
static int metrics_lines(const char *dir)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
    FILE *f = fopen(p, "r");
    int n = 0;
    for (int c; f && (c = getc(f)) != EOF;)
        n += c == '\n';
    if (f)
        fclose(f);
    return n;
}

/* The step of the checkpoint under its final name, -1 when there is none.
 * Whenever it is there it must be whole: a safetensors file whose tensors
 * all lie inside it, with its state. */
static long checkpoint_step(const char *dir)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/checkpoint.safetensors", dir);
    ckd_error err = {{0}};
    ckd_safetensors *st = ckd_st_open(p, &err);
    if (!st) {
        cr_assert(access(p, F_OK) != 0, "a partial checkpoint is visible under its final name: %s", err.msg);
        return -1;
    }
    json_error_t je;
    const char *text = ckd_st_metadata(st, "state");
    json_t *state = text ? json_loads(text, 0, &je) : NULL;
    cr_assert(json_is_integer(json_object_get(state, "step")), "%s: no state", p);
    long step = (long)json_integer_value(json_object_get(state, "step"));
    json_decref(state);
    ckd_st_close(st);
    return step;
}

/* Size of a temporary file "<name>.tmp.<pid>" in dir, -1 when none. */
static long temporary_size(const char *dir, const char *name)
{
    DIR *d = opendir(dir);
    long size = -1;
    size_t k = strlen(name);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strncmp(e->d_name, name, k) || strncmp(e->d_name + k, ".tmp.", 5))
            continue;
        char p[1024];
        struct stat sb;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (stat(p, &sb) == 0)
            size = (long)sb.st_size;
    }
    if (d)
        closedir(d);
    return size;
}

static int any_temporary(const char *dir)
{
    DIR *d = opendir(dir);
    int found = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        found |= strstr(e->d_name, ".tmp.") != NULL;
    if (d)
        closedir(d);
    return found;
}

static int exists(const char *dir, const char *file)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    return access(p, F_OK) == 0;
}

/* The uninterrupted run to compare with. */
static void reference_run(const char *recipe, const char *dir)
{
    const char *args[] = {"run", recipe, "--out", dir, NULL};
    cli_run(tmp, args);
}

/* ---- tests ---------------------------------------------------------------------- */

Test(resume, sigkill_mid_epoch_then_resume_is_bit_identical, .init = setup, .fini = teardown, .timeout = 120)
{
    write_recipe("r.json", 3);
    char r[512], a[512], b[512];
    snprintf(r, sizeof r, "%s/r.json", tmp);
    run_dir("a", a, sizeof a);
    run_dir("b", b, sizeof b);
    reference_run(r, a);

    /* Killed once a checkpoint exists and two more steps ran. */
    const char *args[] = {"run", r, "--out", b, NULL};
    pid_t pid = cli_spawn(tmp, args);
    long ck = -1;
    int lines = 0, st;
    for (int waited = 0;; waited++) {
        cr_assert_lt(waited, 30000, "no checkpoint within 60 s");
        cr_assert_eq(waitpid(pid, &st, WNOHANG), 0, "the run ended (status %d) before it could be killed", st);
        ck = checkpoint_step(b);
        lines = metrics_lines(b);
        if (ck >= 3 && lines >= ck + 2)
            break;
        sleep_ms(2);
    }
    kill(pid, SIGKILL);
    st = cli_wait(pid);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "status %d", st);
    lines = metrics_lines(b);
    ck = checkpoint_step(b);
    cr_assert(!exists(b, "results.json") && lines < STEPS, "the run finished before the kill");
    cr_assert(ck > 0 && lines > ck, "killed at step %d, checkpoint at %ld", lines, ck);
    cr_expect(lines % STEPS_PER_EPOCH != 0, "killed at step %d, at an epoch's end", lines);
    cr_log_info("killed at step %d (epoch %d, batch %d of %d), last checkpoint at step %ld", lines,
                lines / STEPS_PER_EPOCH, lines % STEPS_PER_EPOCH, STEPS_PER_EPOCH, ck);

    const char *resume[] = {"run", "--resume", b, NULL};
    cli_run(tmp, resume);
    expect_same_run(a, b);
}

/* Killed at least four times — alternately while a checkpoint is being
 * written (its temporary file has grown past 1 MB) and after a random delay
 * — and resumed each time (started afresh while no checkpoint exists yet).
 * A run that finishes before its kill lands (a fast disk can write a
 * checkpoint between two looks) is removed and started again, up to 16
 * attempts, so the test does not depend on the machine's speed. */
Test(resume, sigkill_at_random_times_and_during_checkpoint_writes, .init = setup, .fini = teardown,
     .timeout = 180)
{
    write_recipe("r.json", 2);
    char r[512], a[512], b[512];
    snprintf(r, sizeof r, "%s/r.json", tmp);
    run_dir("a", a, sizeof a);
    run_dir("b", b, sizeof b);
    reference_run(r, a);

    const char *seed_env = getenv("CKD_TEST_SEED");
    unsigned seed = seed_env ? (unsigned)strtoul(seed_env, NULL, 10) : (unsigned)time(NULL);
    srand(seed);
    int kills = 0, mid_write = 0, looks = 0, finished = 0;
    for (int k = 0; k < 16 && (kills < 4 || !mid_write); k++) {
        if (finished) { /* it outran the kill: start over */
            char cmd[1100];
            snprintf(cmd, sizeof cmd, "rm -rf '%s'", b);
            cr_assert_eq(system(cmd), 0);
            finished = 0;
        }
        const char *fresh[] = {"run", r, "--out", b, NULL}, *resume[] = {"run", "--resume", b, NULL};
        pid_t pid = cli_spawn(tmp, exists(b, "checkpoint.safetensors") ? resume : fresh);
        double delay_ms = 100 + rand() % 900, waited = 0;
        int st;
        for (;;) {
            if (waitpid(pid, &st, WNOHANG) == pid) {
                cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "run %d: status %d (seed %u)", k, st, seed);
                finished = 1;
                break;
            }
            checkpoint_step(b); /* whole whenever it is there */
            looks++;
            long tmp_size = temporary_size(b, "checkpoint.safetensors");
            if (k % 2 == 0 ? tmp_size > (1L << 20) : waited >= delay_ms) {
                kill(pid, SIGKILL);
                st = cli_wait(pid);
                /* It may have exited on its own just before. */
                finished = WIFEXITED(st);
                kills += !finished;
                mid_write += !finished && tmp_size > 0;
                break;
            }
            cr_assert_lt(waited, 60000, "run %d: nothing to kill within 60 s (seed %u)", k, seed);
            sleep_ms(1);
            waited += 1;
        }
        long ck = checkpoint_step(b);
        cr_log_info("run %d: %s at step %d, checkpoint at step %ld", k, finished ? "finished" : "killed",
                    metrics_lines(b), ck);
    }
    if (!finished) {
        const char *fresh[] = {"run", r, "--out", b, NULL}, *resume[] = {"run", "--resume", b, NULL};
        cli_run(tmp, exists(b, "checkpoint.safetensors") ? resume : fresh);
    }
    cr_expect_geq(kills, 3, "only %d kills landed (seed %u)", kills, seed);
    cr_expect_geq(mid_write, 1, "no kill landed during a checkpoint write (seed %u)", seed);
    cr_expect(!any_temporary(b), "temporary files left in %s", b);
    cr_log_info("%d kills (%d during checkpoint writes), checkpoint looked at %d times (seed %u)", kills, mid_write,
                looks, seed);
    expect_same_run(a, b);
}

/* The disk fills up (RLIMIT_FSIZE below a checkpoint's size) after the
 * checkpoint at step 3: the write at step 6 fails with a message, the step-3
 * checkpoint stays whole under its name, and resuming from it (with room
 * again) ends like the run never stopped. */
Test(resume, disk_full_while_checkpointing_keeps_the_previous_checkpoint, .init = setup, .fini = teardown,
     .timeout = 120)
{
    write_recipe("r.json", 3);
    ckd_recipe *rec = load("r.json", NULL, 0);
    char a[512], b[512], msg[1024] = "";
    run_dir("a", a, sizeof a);
    run_dir("b", b, sizeof b);
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.out_dir = b;
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        ckd_error err = {{0}};
        o.stop_after = 4;
        if (ckd_train_run(reg, rec, &o, NULL, 0, &err))
            _exit(2);
        struct rlimit rl = {1 << 20, 1 << 20};
        signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &rl))
            _exit(3);
        o.stop_after = 0;
        int r = ckd_train_resume(reg, rec, b, &o, &err);
        if (write(fds[1], err.msg, strlen(err.msg)) < 0)
            _exit(4);
        _exit(r == -1 ? 0 : 1);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], msg, sizeof msg - 1);
    msg[n > 0 ? n : 0] = '\0';
    close(fds[0]);
    int st = cli_wait(pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d: %s", st, msg);
    cr_expect(strstr(msg, "checkpoint.safetensors") && strstr(msg, strerror(EFBIG)), "%s", msg);
    cr_expect_eq(checkpoint_step(b), 3, "the step-3 checkpoint is kept");
    cr_expect(!any_temporary(b), "the failed write left its temporary file");
    cr_log_info("disk full: %s", msg);

    ckd_error err = {{0}};
    cr_assert_eq(ckd_train_resume(reg, rec, b, &o, &err), 0, "%s", err.msg);
    o.out_dir = a;
    cr_assert_eq(ckd_train_run(reg, rec, &o, NULL, 0, &err), 0, "%s", err.msg);
    expect_same_run(a, b);
    ckd_recipe_free(rec);
}

/* The checkpoint rewritten with its state changed by edit (the tensors
 * copied as they are). */
static void rewrite_state(const char *dir, void (*edit)(json_t *state))
{
    char p[1024];
    snprintf(p, sizeof p, "%s/checkpoint.safetensors", dir);
    ckd_error err = {{0}};
    ckd_safetensors *st = ckd_st_open(p, &err);
    cr_assert(st, "%s", err.msg);
    json_error_t je;
    json_t *state = json_loads(ckd_st_metadata(st, "state"), 0, &je);
    cr_assert(state);
    edit(state);
    char *text = json_dumps(state, JSON_COMPACT | JSON_SORT_KEYS);
    ckd_st_writer *w = ckd_st_writer_new();
    for (size_t i = 0; i < ckd_st_count(st); i++) {
        const ckd_st_tensor *t = ckd_st_at(st, i);
        cr_assert_eq(ckd_st_writer_add_copy(w, t->name, t->dtype, t->ndim, t->shape, t->data, &err), 0, "%s",
                     err.msg);
    }
    cr_assert_eq(ckd_st_writer_set_metadata(w, "state", text, &err), 0);
    ckd_st_close(st);
    cr_assert_eq(ckd_st_writer_save(w, p, &err), 0, "%s", err.msg);
    ckd_st_writer_free(w);
    free(text);
    json_decref(state);
}

static void step_past_the_end(json_t *state)
{
    json_object_set_new(state, "step", json_integer(1000));
}

static void zero_rng(json_t *state)
{
    json_object_set_new(state, "rng", json_pack("[s, s, s, s]", "0000000000000000", "0000000000000000",
                                                 "0000000000000000", "0000000000000000"));
}

static json_t *saved_state;

static void keep(json_t *state)
{
    saved_state = json_deep_copy(state);
}

static void restore(json_t *state)
{
    json_object_update(state, saved_state);
}

static void expect_refused(const ckd_recipe *rec, const char *dir, const char *what, const char *detail)
{
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    ckd_error err = {{0}};
    cr_assert_eq(ckd_train_resume(reg, rec, dir, &o, &err), -1, "%s: resumed", what);
    cr_expect(strstr(err.msg, "checkpoint.safetensors") && strstr(err.msg, detail), "%s: %s", what, err.msg);
    cr_log_info("%s: %s", what, err.msg);
}

/* A checkpoint is a file someone may hand over: a state out of the run's
 * range (a step past the end, xoshiro's all-zero state) and a metrics file
 * shorter than the checkpoint says (it would be extended with zeros) are
 * refused before anything is restored, and the checkpoint put back as it
 * was resumes to the same run as one never stopped. */
Test(resume, damaged_checkpoint_state_is_refused, .init = setup, .fini = teardown, .timeout = 120)
{
    write_recipe("r.json", 3);
    ckd_recipe *rec = load("r.json", NULL, 0);
    char a[512], b[512], p[1024];
    run_dir("a", a, sizeof a);
    run_dir("b", b, sizeof b);
    ckd_train_opts o;
    ckd_train_opts_init(&o);
    o.out_dir = b;
    o.stop_after = 4;
    ckd_error err = {{0}};
    cr_assert_eq(ckd_train_run(reg, rec, &o, NULL, 0, &err), 0, "%s", err.msg);
    rewrite_state(b, keep);
    rewrite_state(b, step_past_the_end);
    expect_refused(rec, b, "step past the end", "\"step\"");
    rewrite_state(b, restore);
    rewrite_state(b, zero_rng);
    expect_refused(rec, b, "all-zero RNG", "\"rng\"");
    rewrite_state(b, restore);
    snprintf(p, sizeof p, "%s/metrics.jsonl", b);
    char whole[1 << 16];
    FILE *f = fopen(p, "rb");
    size_t len = f ? fread(whole, 1, sizeof whole, f) : 0;
    cr_assert(f && len > 0 && len < sizeof whole);
    fclose(f);
    cr_assert_eq(truncate(p, (off_t)len / 2), 0);
    expect_refused(rec, b, "shortened metrics.jsonl", "metrics.jsonl");
    f = fopen(p, "wb");
    cr_assert(f && fwrite(whole, 1, len, f) == len && fclose(f) == 0);
    json_decref(saved_state);

    o.stop_after = 0;
    cr_assert_eq(ckd_train_resume(reg, rec, b, &o, &err), 0, "%s", err.msg);
    o.out_dir = a;
    cr_assert_eq(ckd_train_run(reg, rec, &o, NULL, 0, &err), 0, "%s", err.msg);
    expect_same_run(a, b);
    ckd_recipe_free(rec);
}
