/* clipkd/dist.h — data-parallel training over MPI.
 *
 * A program started by an MPI launcher (mpirun, mpiexec, Slurm's srun) joins
 * the job with ckd_dist_init; every other start is a world of one process
 * and nothing here does anything. Built without MPI (configure
 * --without-mpi), the same functions exist and always describe a world of
 * one, so the ABI does not depend on the build.
 *
 * Under a launcher, ckd_train_run and ckd_train_resume train one run on all
 * the ranks together (docs/cluster.md): the recipe's batch is global and is
 * split into one shard per rank; rank 0 alone writes the run directory.
 */
#ifndef CLIPKD_DIST_H
#define CLIPKD_DIST_H

#include <stdint.h>

#include "clipkd/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when this libclipkd was built with MPI. */
int ckd_dist_compiled(void);

/* Joins the MPI job when a launcher started this process (its environment
 * says so: Open MPI, PMIx, PMI or Slurm's variables), or always with
 * CLIPKD_MPI=1; otherwise does nothing. Call once, before any thread
 * starts; -1 with err set when MPI is wanted but cannot start, or when a
 * launcher started a program built without MPI on more than one rank. */
int ckd_dist_init(int *argc, char ***argv, ckd_error *err);

/* Leaves the job (MPI_Finalize); a no-op when ckd_dist_init did not join. */
void ckd_dist_finalize(void);

/* This process's rank and the number of ranks (0 and 1 outside a job). */
int ckd_dist_rank(void);
int ckd_dist_size(void);

/* Collective: every rank passes its outcome (0, or -1 with err set); all
 * return -1 with err = "rank R: <its message>" (R the lowest failing rank)
 * when any failed, else 0. So one rank's failure stops every rank with one
 * message instead of leaving the others waiting. In a world of one: rc. */
int ckd_dist_agree(int rc, ckd_error *err);

/* "Open MPI v4.1.4, ..." (the library's own words), or why there is none. */
const char *ckd_dist_library(void);

/* What this process has exchanged since ckd_dist_init (for benchmarks):
 * bytes all-reduced and all-gathered (the size of the result buffer), the
 * calls, and the seconds spent blocked in them: for the gradient sums,
 * which run during backward, only the wait for what backward did not hide;
 * for the gathers, also the wait for slower ranks. */
typedef struct ckd_dist_stats {
    int64_t allreduce_bytes, allgather_bytes;
    int64_t calls;
    double allreduce_seconds, allgather_seconds;
} ckd_dist_stats;
void ckd_dist_get_stats(ckd_dist_stats *out);

#ifdef __cplusplus
}
#endif
#endif
