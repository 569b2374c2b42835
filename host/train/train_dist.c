/* Data-parallel training over MPI in the trainer (clipkd/dist.h): the
 * checks that keep the ranks together, the global batch each loss sees,
 * and the gradient sum. In a world of one each is a no-op that leaves the
 * single-process run bit for bit as it was.
 *
 * The recipe's batch is global. Rank r's loader gives shard r of every
 * batch (ckd_loader_opts.shard); the student (and a live teacher) run on
 * the shard, and their embeddings are gathered (ckdi_dist_gather_rows)
 * into the global batch, which every rank's losses then see as one process
 * would. What only the batch's sample list decides — labels, cached teacher
 * rows, assistants — is read for the global batch from the gathered list.
 * After backward the ranks' parameter gradients are summed and divided by
 * the number of ranks, bucket by bucket while backward still runs
 * (grad_sync.c; see dist_ops.c for why that is the exact gradient),
 * so every rank takes the same AdamW step and the parameters stay the same
 * bits everywhere; rank 0 alone writes the run directory. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dist/dist_internal.h"
#include "train_internal.h"

/* FNV-1a, for the identity checks (not security: ranks are trusted). */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t fnv_str(uint64_t h, const char *s) { return fnv(h, s ? s : "", s ? strlen(s) + 1 : 1); }

/* What must be the same on every rank: the clipkd version and each
 * plugin's kind, name, version and the bytes of its file. */
static uint64_t build_hash(const ckd_registry *reg)
{
    uint64_t h = fnv_str(0xcbf29ce484222325ull, PACKAGE_VERSION);
    for (size_t i = 0; reg && i < ckd_registry_count(reg); i++) {
        const ckd_plugin *p = ckd_registry_at(reg, i);
        h = fnv_str(h, ckd_plugin_kind_name(p->desc->kind));
        h = fnv_str(fnv_str(h, p->desc->name), p->desc->version);
        FILE *f = fopen(p->path, "rb");
        char buf[65536];
        size_t k;
        while (f && (k = fread(buf, 1, sizeof buf, f)) > 0)
            h = fnv(h, buf, k);
        if (f)
            fclose(f);
    }
    return h;
}

int train_dist_check_ranks(const ckd_registry *reg, const ckd_recipe *r, const char *run_dir, ckd_error *err)
{
    int R = ckd_dist_size();
    if (R == 1)
        return 0;
    /* [recipe hash, build hash, what the run directory is] from each rank */
    int64_t mine[3] = {0}, *all = calloc((size_t)R * 3, sizeof *all);
    if (!all)
        return ckd_errorf(err, "out of memory");
    mine[0] = (int64_t)fnv_str(0xcbf29ce484222325ull, ckd_recipe_hash(r));
    mine[1] = (int64_t)build_hash(reg);
    mine[2] = ckd_train_dir_state(run_dir);
    int rc = ckdi_dist_allgather_i64(mine, 3, all, err);
    static const char *const state[] = {"new", "interrupted", "finished"};
    for (int k = 1; !rc && k < R; k++) {
        if (all[3 * k] != all[0])
            rc = ckd_errorf(err, "rank %d resolved a different recipe than rank 0 (hash of %s): every rank must be "
                                 "given the same recipe and --set options",
                            k, ckd_recipe_hash(r));
        else if (all[3 * k + 1] != all[1])
            rc = ckd_errorf(err, "rank %d runs a different clipkd build or plugin set than rank 0 (clipkd %s; the "
                                 "plugins' names, versions and files are hashed): install the same build on every node",
                            k, PACKAGE_VERSION);
        else if (all[3 * k + 2] != all[2])
            rc = ckd_errorf(err, "%s: rank %d sees the run directory as %s, rank 0 as %s: it must be on a filesystem "
                                 "every rank shares (see docs/cluster.md)",
                            run_dir, k, state[all[3 * k + 2] % 3], state[all[2] % 3]);
    }
    free(all);
    return rc;
}

int train_dist_sees_dir(const char *dir, ckd_error *err)
{
    char p[TRAIN_PATH_MAX + 16];
    struct stat sb;
    snprintf(p, sizeof p, "%s/run.json", dir);
    int rc = stat(p, &sb) == 0 ? 0
                                : ckd_errorf(err, "%s: not visible from this rank (rank 0 wrote it): the run directory "
                                                  "must be on a filesystem every rank shares (see docs/cluster.md)",
                                             p);
    return ckdi_dist_agree(rc, err);
}

int train_dist_init(train_run *t, ckd_error *err)
{
    if (t->world == 1)
        return 0;
    size_t B = (size_t)train_num(t->rj, "train.batch_size", 64), R = (size_t)t->world;
    if (B % R)
        return ckd_recipe_errorf(t->recipe, "train.batch_size", err,
                                 "%zu is the global batch, to be split evenly over %zu ranks: make it a multiple of %zu",
                                 B, R, R);
    ckd_batch *g = &t->gbatch;
    t->counts = calloc(R, sizeof *t->counts);
    g->labels = malloc(B * sizeof *g->labels);
    g->captions = malloc(B * sizeof *g->captions);
    g->indices = malloc(B * sizeof *g->indices);
    g->views = malloc(B * sizeof *g->views);
    if (!t->counts || !g->labels || !g->captions || !g->indices || !g->views)
        return ckd_errorf(err, "out of memory");
    return (t->gsync = ckdi_grad_sync_new(t->params, t->n_params, err)) ? 0 : -1;
}

void train_dist_free(train_run *t)
{
    free(t->counts);
    free(t->gbatch.labels);
    free(t->gbatch.captions);
    free(t->gbatch.indices);
    free(t->gbatch.views);
    ckdi_grad_sync_free(t->gsync);
}

int train_dist_next(train_run *t, const ckd_batch **b, ckd_error *err)
{
    int rc = ckd_loader_next(t->loader, b, err);
    if (t->world == 1)
        return rc;
    /* The shard sizes, and whether a rank failed: the ranks learn of a
     * failure here instead of waiting for the failed one. */
    rc = ckdi_dist_counts(rc, rc == 0 ? (*b)->n : 0, t->counts, err);
    if (rc)
        return rc;
    int64_t R = t->world, total = 0;
    for (int k = 0; k < R; k++)
        total += t->counts[k];
    if (total == 0) /* nothing of the batch could be read: the next one, as one process does */
        return train_dist_next(t, b, err);
    for (int k = 0; k < R; k++)
        if (t->counts[k] == 0)
            return ckd_errorf(err, "data.train: epoch %lld batch %lld: no sample of rank %d's shard could be read "
                                   "(all were skipped); a shard cannot be empty",
                              (long long)(*b)->epoch, (long long)(*b)->batch, k);
    const ckd_batch *l = *b;
    ckd_batch *g = &t->gbatch;
    if (ckdi_dist_allgather(l->labels, t->counts, sizeof *l->labels, g->labels, err) ||
        ckdi_dist_allgather(l->captions, t->counts, sizeof *l->captions, g->captions, err) ||
        ckdi_dist_allgather(l->indices, t->counts, sizeof *l->indices, g->indices, err) ||
        ckdi_dist_allgather(l->views, t->counts, sizeof *l->views, g->views, err))
        return -1;
    g->n = (int)total;
    g->image_size = l->image_size;
    g->context_len = l->context_len;
    g->epoch = l->epoch;
    g->batch = l->batch;
    return 0;
}

const ckd_batch *train_dist_global(const train_run *t, const ckd_batch *local)
{
    return t->world == 1 ? local : &t->gbatch;
}

ckd_tensor *train_dist_rows(train_run *t, ckd_tensor *x)
{
    return t->world == 1 ? x : ckdi_dist_gather_rows(t->ctx, x, t->counts);
}

int train_dist_backward(train_run *t, ckd_tensor *loss, int last, ckd_error *err)
{
    if (t->world == 1 || !last) /* earlier micro-batches only accumulate */
        return ckd_ctx_check(t->ctx, err) || ckd_backward(t->ctx, loss, err) ? -1 : 0;
    /* collective: it starts every bucket even when this rank's forward failed */
    return ckdi_grad_sync_backward(t->gsync, t->ctx, loss, err);
}
