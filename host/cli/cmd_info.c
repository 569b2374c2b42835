/* clipkd info: what this build is and how it will compute. */
#include "config.h"

#include <stdio.h>

#include "cli.h"
#include "clipkd/blas.h"
#include "clipkd/dist.h"

void cmd_info_help(FILE *out)
{
    fprintf(out, "Usage: clipkd [--threads N] info\n"
                 "Prints the clipkd version, the BLIS version, the BLIS kernel set in use (and why),\n"
                 "the GFLOP/s of each kernel set timed to choose it (and where the figures are kept),\n"
                 "the CPU features that matter for it, the thread count, the plugin directory, and\n"
                 "whether MPI is compiled in (under mpirun or srun: this rank and the world size).\n");
}

int cmd_info(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "clipkd info: takes no arguments\n");
        return CLI_USAGE;
    }
    const ckd_blas_info *bi = ckd_blas_init();
    printf("clipkd %s\n", PACKAGE_VERSION);
    printf("BLIS:        %s\n", bi->version);
    printf("kernels:     %s (%s)\n", bi->arch, bi->reason);
    printf("BLIS alone:  %s\n", bi->blis_choice);
    if (bi->n_timed > 0) {
        printf("timed:      ");
        for (int i = 0; i < bi->n_timed; i++) {
            if (bi->timed_gflops[i] > 0)
                printf(" %s %.1f%s", bi->timed[i], bi->timed_gflops[i], i + 1 < bi->n_timed ? "," : "");
            else
                printf(" %s (cannot run)%s", bi->timed[i], i + 1 < bi->n_timed ? "," : "");
        }
        printf(" GFLOP/s (1 thread; SGEMM 384x768x768 and 50x768x768, geometric mean)\n");
        printf("timing:      %s\n", bi->timing);
    }
    printf("CPU:         %s\n", bi->cpu_features);
    printf("threads:     %d\n", ckd_get_threads());
    printf("plugins:     %s\n", CKD_PLUGIN_DIR);
    printf("data:        %s\n", CKD_DATA_DIR);
    if (!ckd_dist_compiled())
        printf("MPI:         %s\n", ckd_dist_library());
    else if (ckd_dist_size() > 1)
        printf("MPI:         %s; rank %d of %d\n", ckd_dist_library(), ckd_dist_rank(), ckd_dist_size());
    else
        printf("MPI:         compiled in; not started by mpirun or srun (one process)\n");
    return CLI_OK;
}
