/* host/cli/passive_threads.h — for programs (clipkd, bench-clip), not the
 * library: OpenMP threads that wait for work should sleep, not spin. On a
 * machine shared with other work, spinning threads burn the time slices the
 * working ones need (beside one busy process, a fifth of the CPU time went
 * to libgomp's spin-wait), and on an idle machine sleeping costs nothing
 * measurable (docs/performance.md). libgomp reads the policy once, before
 * main, so it is set and the program started again; a policy the user set
 * is kept, and valgrind, which cannot follow such a restart, is left alone. */
#ifndef CKD_CLI_PASSIVE_THREADS_H
#define CKD_CLI_PASSIVE_THREADS_H

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline void cli_sleeping_threads(char **argv)
{
    const char *pre = getenv("LD_PRELOAD");
    if (getenv("OMP_WAIT_POLICY") || (pre && strstr(pre, "vgpreload")))
        return;
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv); /* returns only on failure: go on as we are */
}

#endif
