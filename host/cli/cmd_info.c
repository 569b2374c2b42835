/* clipkd info: what this build is and how it will compute. */
#include "config.h"

#include <stdio.h>

#include "cli.h"
#include "clipkd/blas.h"

void cmd_info_help(FILE *out)
{
    fprintf(out, "Usage: clipkd [--threads N] info\n"
                 "Prints the clipkd version, the BLIS version, the BLIS kernel set in use (and why),\n"
                 "the CPU features that matter for it, the thread count and the plugin directory.\n");
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
    printf("CPU:         %s\n", bi->cpu_features);
    printf("threads:     %d\n", ckd_get_threads());
    printf("plugins:     %s\n", CKD_PLUGIN_DIR);
    printf("data:        %s\n", CKD_DATA_DIR);
    return CLI_OK;
}
