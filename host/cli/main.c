/* clipkd: the command-line front end. Global options, then a subcommand. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli/passive_threads.h"
#include "clipkd/blas.h"
#include "clipkd/dist.h"

static const cli_command commands[] = {
    {"info", "print the version, BLIS kernels and thread count", cmd_info, cmd_info_help},
    {"selftest", "check GEMM and every op's gradient on small random inputs", cmd_selftest, cmd_selftest_help},
    {"plugins", "list plugins, or `plugins show NAME` for one plugin's parameters", cmd_plugins, cmd_plugins_help},
    {"gradcheck", "finite-difference check of a loss plugin on random inputs", cmd_gradcheck, cmd_gradcheck_help},
    {"loss-eval", "evaluate a loss plugin on recorded tensors, write loss and gradients", cmd_loss_eval,
     cmd_loss_eval_help},
    {"model-eval", "run a model on recorded inputs, write outputs, gradients and BatchNorm statistics",
     cmd_model_eval, cmd_model_eval_help},
    {"embed", "normalised CLIP embeddings of images and texts with a model directory", cmd_embed, cmd_embed_help},
    {"validate", "check a recipe and print it resolved, with its hash", cmd_validate, cmd_validate_help},
    {"run", "train a recipe in its run directory (--resume: continue; --dry-run: only check)", cmd_run,
     cmd_run_help},
    {"eval", "zero-shot, retrieval and calibration of a trained model", cmd_eval, cmd_eval_help},
    {"quickstart", "teacher, baseline and distilled student on Fashion-MNIST, compared", cmd_quickstart,
     cmd_quickstart_help},
    {"table", "rerun a paper's result table from recipes, next to the paper's numbers", cmd_table,
     cmd_table_help},
    {"fetch", "download and verify every file a recipe needs into the cache", cmd_fetch, cmd_fetch_help},
    {"cache", "list, verify or clean the artifact cache", cmd_cache, cmd_cache_help},
    {"models", "published weights recipes can name: ls, show NAME, fetch NAME", cmd_models, cmd_models_help},
    {"convert", "rewrite a PyTorch checkpoint (.pt) as safetensors, never running its pickle", cmd_convert,
     cmd_convert_help},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

int cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return 1;
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: clipkd [--threads N] COMMAND [ARGS...]\n"
            "Distil CLIP-style models into small students.\n\n"
            "Commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\nGlobal options:\n"
            "  --threads N   threads for GEMM and ops (default: $CLIPKD_THREADS, else all CPUs)\n"
            "  --version     print the version\n"
            "  -h, --help    this help; `clipkd COMMAND --help` for a command\n"
            "\nReport bugs: " PACKAGE_BUGREPORT "\nHome page: " PACKAGE_URL "\n");
}

static int parse_threads(const char *s)
{
    char *end;
    long n = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || n < 1 || n > 1024) {
        fprintf(stderr, "clipkd: --threads: '%s' is not a thread count (1..1024)\n", s);
        return -1;
    }
    return (int)n;
}

/* The commands that compute with BLIS (the others never initialise it). */
static int computes(const char *name)
{
    static const char *const names[] = {"info", "selftest", "gradcheck", "loss-eval", "model-eval",
                                        "embed", "run",  "eval",      "quickstart", "table"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(name, names[i]))
            return 1;
    return 0;
}

/* Under an MPI launcher (mpirun, srun) the process joins the job first;
 * only `run` trains across ranks (and `info` reports them), so another
 * command on several ranks is refused rather than done N times over. Ranks
 * other than 0 print nothing on stdout: rank 0 speaks for the job. */
static int run_command(const cli_command *cmd, int argc, char **argv)
{
    ckd_error err;
    if (ckd_dist_init(&argc, &argv, &err)) {
        fprintf(stderr, "clipkd: %s\n", err.msg);
        return CLI_FAIL;
    }
    int rc;
    if (computes(cmd->name)) {
        /* Kernels chosen now, before any OpenMP thread exists (the timing
         * runs in child processes), and what the user should hear said once. */
        const ckd_blas_info *bi = ckd_blas_init();
        if (*bi->warning && ckd_dist_rank() == 0)
            fprintf(stderr, "clipkd: %s\n", bi->warning);
    }
    if (ckd_dist_size() > 1 && strcmp(cmd->name, "run") && strcmp(cmd->name, "info")) {
        if (ckd_dist_rank() == 0)
            fprintf(stderr, "clipkd %s: does not run on several MPI ranks (%d here); only clipkd run and clipkd info do\n",
                    cmd->name, ckd_dist_size());
        rc = CLI_USAGE;
    } else {
        if (ckd_dist_rank() > 0 && !freopen("/dev/null", "w", stdout))
            fprintf(stderr, "clipkd: rank %d: cannot silence stdout\n", ckd_dist_rank());
        rc = cmd->run(argc, argv);
    }
    fflush(stdout);
    ckd_dist_finalize();
    return rc;
}

int main(int argc, char **argv)
{
    cli_sleeping_threads(argv);
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return CLI_OK;
        } else if (!strcmp(argv[i], "--version")) {
            printf("clipkd %s\n", PACKAGE_VERSION);
            return CLI_OK;
        } else if (!strcmp(argv[i], "--threads") || !strncmp(argv[i], "--threads=", 10)) {
            const char *v = argv[i][9] == '=' ? argv[i] + 10 : (i + 1 < argc ? argv[++i] : "");
            int n = parse_threads(v);
            if (n < 0)
                return CLI_USAGE;
            ckd_set_threads(n);
        } else {
            fprintf(stderr, "clipkd: unknown option '%s' (see clipkd --help)\n", argv[i]);
            return CLI_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return CLI_USAGE;
    }
    for (size_t k = 0; k < N_COMMANDS; k++) {
        if (strcmp(argv[i], commands[k].name) == 0) {
            if (cli_wants_help(argc - i, argv + i)) {
                commands[k].help(stdout);
                return CLI_OK;
            }
            return run_command(&commands[k], argc - i, argv + i);
        }
    }
    fprintf(stderr, "clipkd: unknown command '%s'; commands:", argv[i]);
    for (size_t k = 0; k < N_COMMANDS; k++)
        fprintf(stderr, " %s", commands[k].name);
    fprintf(stderr, "\n");
    return CLI_USAGE;
}
