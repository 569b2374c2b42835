/* The MPI layer: joining the job, and the few collectives data-parallel
 * training needs (dist_internal.h). Without MPI (CKD_HAVE_MPI unset) every
 * function describes a world of one. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clipkd/blas.h"
#include "core/blas_probe.h"
#include "dist/dist_internal.h"

static int g_rank = 0, g_size = 1;
static ckd_dist_stats g_stats;

int ckd_dist_rank(void) { return g_rank; }
int ckd_dist_agree(int rc, ckd_error *err) { return ckdi_dist_agree(rc, err); }
int ckd_dist_size(void) { return g_size; }
int ckdi_dist_active(void) { return g_size > 1; }

void ckd_dist_get_stats(ckd_dist_stats *out) { *out = g_stats; }

/* A launcher's environment: the variables Open MPI's mpirun, PMIx, the PMI
 * of MPICH's Hydra, and Slurm's srun set for each process they start. */
static const char *launcher_var(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK",
                                       "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]))
            return vars[i];
    const char *force = getenv("CLIPKD_MPI");
    return force && !strcmp(force, "1") ? "CLIPKD_MPI" : NULL;
}

#ifdef CKD_HAVE_MPI
#include <mpi.h>

static int g_joined = 0;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}


int ckd_dist_compiled(void) { return 1; }

const char *ckd_dist_library(void)
{
    static char buf[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    if (!buf[0] && MPI_Get_library_version(buf, &len) == MPI_SUCCESS) {
        char *nl = strchr(buf, '\n'); /* the first line says enough */
        if (nl)
            *nl = 0;
    }
    return buf;
}

/* Every rank must use the same BLIS kernel set: the same sums in the same
 * order are what keep the ranks' parameters identical to the last bit. Rank
 * 0 chooses (timing the candidates if its cache has no figures) while the
 * others wait without spinning, so as not to disturb its timing. */
static int agree_kernels(ckd_error *err)
{
    char name[32] = "";
    if (g_rank == 0)
        snprintf(name, sizeof name, "%s", ckd_blas_init()->arch);
    MPI_Request req;
    if (MPI_Ibcast(name, (int)sizeof name, MPI_CHAR, 0, MPI_COMM_WORLD, &req) != MPI_SUCCESS)
        return ckd_errorf(err, "MPI: broadcast of the kernel set failed");
    for (int done = 0;;) {
        if (MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return ckd_errorf(err, "MPI: broadcast of the kernel set failed");
        if (done)
            break;
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
    name[sizeof name - 1] = 0;
    int rc = g_rank == 0 ? 0 : ckdi_blas_init_agreed(name, "rank 0's choice: every rank computes the same sums");
    if (rc)
        ckd_errorf(err, "BLIS kernels: this rank uses %s, rank 0 uses %s (%s)", ckd_blas_init()->arch, name,
                   ckd_blas_init()->reason);
    return ckdi_dist_agree(rc, err);
}

int ckd_dist_init(int *argc, char ***argv, ckd_error *err)
{
    if (g_joined || !launcher_var())
        return 0;
    /* Only the main thread calls MPI; OpenMP and the loader's threads never do. */
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return ckd_errorf(err, "MPI: MPI_Init_thread failed");
    g_joined = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    return g_size > 1 ? agree_kernels(err) : 0;
}

void ckd_dist_finalize(void)
{
    if (g_joined)
        MPI_Finalize();
    g_joined = 0;
}

/* Outstanding non-blocking all-reduces, by slot. */
static MPI_Request g_req[CKDI_DIST_MAX_SLOTS];
static int g_active;

int ckdi_dist_iallreduce_f32(float *buf, int64_t n, int slot, ckd_error *err)
{
    if (g_size == 1)
        return 0;
    if (slot < 0 || slot >= CKDI_DIST_MAX_SLOTS || n > INT32_MAX)
        return ckd_errorf(err, "MPI: all-reduce slot %d of %lld floats out of range", slot, (long long)n);
    if (!g_active)
        for (int i = 0; i < CKDI_DIST_MAX_SLOTS; i++)
            g_req[i] = MPI_REQUEST_NULL;
    g_active = 1;
    if (MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &g_req[slot]) != MPI_SUCCESS)
        return ckd_errorf(err, "MPI: all-reduce of %lld floats failed", (long long)n);
    g_stats.allreduce_bytes += n * (int64_t)sizeof(float);
    g_stats.calls++;
    return 0;
}

void ckdi_dist_progress(void)
{
    int done;
    if (g_active)
        MPI_Testall(CKDI_DIST_MAX_SLOTS, g_req, &done, MPI_STATUSES_IGNORE);
}

int ckdi_dist_wait_all(ckd_error *err)
{
    if (!g_active)
        return 0;
    double t0 = now_s();
    int rc = MPI_Waitall(CKDI_DIST_MAX_SLOTS, g_req, MPI_STATUSES_IGNORE);
    g_active = 0;
    g_stats.allreduce_seconds += now_s() - t0;
    return rc == MPI_SUCCESS ? 0 : ckd_errorf(err, "MPI: waiting for the all-reduces failed");
}

int ckdi_dist_allgather(const void *local, const int64_t *counts, int64_t elem_bytes, void *out, ckd_error *err)
{
    int64_t total = 0, mine = counts[g_rank] * elem_bytes;
    for (int r = 0; r < g_size; r++)
        total += counts[r] * elem_bytes;
    if (g_size == 1) {
        if (mine)
            memmove(out, local, (size_t)mine);
        return 0;
    }
    if (total > INT32_MAX)
        return ckd_errorf(err, "MPI: all-gather of %lld bytes, at most 2 GiB at once", (long long)total);
    int rc[1], cnt[g_size], disp[g_size];
    int64_t off = 0;
    for (int r = 0; r < g_size; r++) {
        cnt[r] = (int)(counts[r] * elem_bytes);
        disp[r] = (int)off;
        off += cnt[r];
    }
    double t0 = now_s();
    /* local may already sit at its place in out (MPI forbids aliasing otherwise) */
    const void *src = local == (const char *)out + disp[g_rank] ? MPI_IN_PLACE : local;
    rc[0] = MPI_Allgatherv(src, cnt[g_rank], MPI_BYTE, out, cnt, disp, MPI_BYTE, MPI_COMM_WORLD);
    if (rc[0] != MPI_SUCCESS)
        return ckd_errorf(err, "MPI: all-gather of %lld bytes failed", (long long)total);
    g_stats.allgather_bytes += total;
    g_stats.calls++;
    g_stats.allgather_seconds += now_s() - t0;
    return 0;
}

int ckdi_dist_allgather_i64(const int64_t *v, int n, int64_t *out, ckd_error *err)
{
    if (g_size == 1) {
        memmove(out, v, (size_t)n * sizeof *v);
        return 0;
    }
    if (MPI_Allgather(v, n, MPI_INT64_T, out, n, MPI_INT64_T, MPI_COMM_WORLD) != MPI_SUCCESS)
        return ckd_errorf(err, "MPI: all-gather failed");
    return 0;
}

int ckdi_dist_bcast(void *buf, int64_t bytes, int root, ckd_error *err)
{
    if (g_size == 1)
        return 0;
    if (bytes > INT32_MAX)
        return ckd_errorf(err, "MPI: broadcast of %lld bytes, at most 2 GiB at once", (long long)bytes);
    if (MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, MPI_COMM_WORLD) != MPI_SUCCESS)
        return ckd_errorf(err, "MPI: broadcast failed");
    return 0;
}

int ckdi_dist_agree(int rc, ckd_error *err)
{
    if (g_size == 1)
        return rc ? -1 : 0;
    int mine = rc ? g_rank : g_size, first = g_size;
    if (MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD) != MPI_SUCCESS)
        return ckd_errorf(err, "MPI: all-reduce failed");
    if (first == g_size)
        return 0;
    ckd_error e;
    memset(&e, 0, sizeof e);
    if (g_rank == first && err)
        e = *err;
    else if (g_rank == first)
        snprintf(e.msg, sizeof e.msg, "failed");
    MPI_Bcast(e.msg, (int)sizeof e.msg, MPI_CHAR, first, MPI_COMM_WORLD);
    e.msg[sizeof e.msg - 1] = 0;
    return ckd_errorf(err, "rank %d: %s", first, e.msg);
}

#else /* without MPI: a world of one */

int ckd_dist_compiled(void) { return 0; }
const char *ckd_dist_library(void) { return "not compiled in (configure --with-mpi)"; }

int ckd_dist_init(int *argc, char ***argv, ckd_error *err)
{
    (void)argc;
    (void)argv;
    /* Started by a launcher on several ranks, each process would train the
     * whole run alone into the same directory: refuse instead. */
    const char *v = launcher_var(), *size = getenv("OMPI_COMM_WORLD_SIZE");
    if (!size)
        size = getenv("PMI_SIZE");
    if (v && size && atoi(size) > 1)
        return ckd_errorf(err, "started on %s ranks (%s), but this clipkd was built without MPI: rebuild it with "
                               "./configure --with-mpi",
                          size, v);
    return 0;
}

void ckd_dist_finalize(void) {}

int ckdi_dist_iallreduce_f32(float *buf, int64_t n, int slot, ckd_error *err)
{
    (void)buf, (void)n, (void)slot, (void)err;
    return 0;
}

void ckdi_dist_progress(void) {}

int ckdi_dist_wait_all(ckd_error *err)
{
    (void)err;
    return 0;
}

int ckdi_dist_allgather(const void *local, const int64_t *counts, int64_t elem_bytes, void *out, ckd_error *err)
{
    (void)err;
    int64_t bytes = counts[0] * elem_bytes;
    if (bytes > 0)
        memmove(out, local, (size_t)bytes);
    return 0;
}

int ckdi_dist_allgather_i64(const int64_t *v, int n, int64_t *out, ckd_error *err)
{
    (void)err;
    memmove(out, v, (size_t)n * sizeof *v);
    return 0;
}

int ckdi_dist_bcast(void *buf, int64_t bytes, int root, ckd_error *err)
{
    (void)buf, (void)bytes, (void)root, (void)err;
    return 0;
}

int ckdi_dist_agree(int rc, ckd_error *err)
{
    (void)err;
    return rc ? -1 : 0;
}

#endif
