/* clipkd convert IN OUT.safetensors: a PyTorch checkpoint (or a safetensors
 * file) rewritten as one safetensors file, tensors under their own names and
 * in their own dtypes. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "clipkd/safetensors.h"

void cmd_convert_help(FILE *out)
{
    fprintf(out,
            "Usage: clipkd convert IN OUT.safetensors [--key KEY] [--strip-prefix PREFIX]\n"
            "Reads a PyTorch checkpoint (torch.save: ZIP or legacy format, .pt/.pth/.bin)\n"
            "and writes its state dict as a safetensors file, tensor names and dtypes kept.\n"
            "Nothing in the checkpoint is executed: its pickle is read by an interpreter\n"
            "that knows PyTorch's tensor constructors and refuses every other global.\n"
            "  --key KEY            the state dict's top-level key; default: \"state_dict\",\n"
            "                       else \"model\", else the top level. \"\" = the top level\n"
            "  --strip-prefix P     remove P from tensor names that start with it; default:\n"
            "                       \"module.\" when every name has it (DataParallel); \"\" keeps\n"
            "                       names as they are\n"
            "Other top-level entries (the optimizer state, the epoch) are skipped and listed.\n"
            "An OpenCLIP checkpoint converted this way is an open_clip_model.safetensors that\n"
            "the clip model plugin reads. Exit status 2 when IN cannot be read.\n");
}

static void print_summary(const ckd_safetensors *st, const char *in, const char *out)
{
    size_t by_dtype[CKD_DT_BOOL + 1] = {0}, n = ckd_st_count(st);
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const ckd_st_tensor *t = ckd_st_at(st, i);
        by_dtype[t->dtype]++;
        bytes += t->nbytes;
    }
    const char *fmt = ckd_st_metadata(st, "format"), *key = ckd_st_metadata(st, "pytorch.state_dict");
    printf("%s: %s, %zu tensors (", in, fmt ? fmt : "safetensors", n);
    int first = 1;
    for (int d = 0; d <= CKD_DT_BOOL; d++)
        if (by_dtype[d]) {
            printf("%s%zu %s", first ? "" : ", ", by_dtype[d], ckd_dtype_name((ckd_dtype)d));
            first = 0;
        }
    printf("), %.1f MiB", (double)bytes / (1 << 20));
    if (key)
        printf(", state dict %s", *key ? key : "at the top level");
    printf("\n");
    const char *strip = ckd_st_metadata(st, "pytorch.stripped_prefix");
    if (strip)
        printf("  names: prefix '%s' removed\n", strip);
    const char *skipped = ckd_st_metadata(st, "pytorch.skipped");
    if (skipped)
        printf("  skipped (not tensors of the state dict): %s\n", skipped);
    printf("wrote %s\n", out);
}

int cmd_convert(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        cmd_convert_help(stdout);
        return CLI_OK;
    }
    const char *pos[2] = {NULL, NULL};
    ckd_pt_opts o = {0};
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "--key") || !strcmp(argv[i], "--strip-prefix")) && i + 1 < argc) {
            if (argv[i][2] == 'k')
                o.key = argv[++i];
            else
                o.strip_prefix = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "clipkd convert: unknown option '%s' (see clipkd convert --help)\n", argv[i]);
            return CLI_USAGE;
        } else if (npos < 2) {
            pos[npos++] = argv[i];
        } else {
            fprintf(stderr, "clipkd convert: too many arguments (see clipkd convert --help)\n");
            return CLI_USAGE;
        }
    }
    if (npos != 2) {
        fprintf(stderr, "clipkd convert: expected IN and OUT.safetensors (see clipkd convert --help)\n");
        return CLI_USAGE;
    }
    ckd_error err = {0};
    /* A safetensors input is accepted too (a copy, e.g. to merge shards). */
    ckd_safetensors *st = o.key || o.strip_prefix ? ckd_pt_open(pos[0], &o, &err) : ckd_st_open(pos[0], &err);
    if (!st) {
        fprintf(stderr, "clipkd convert: %s\n", err.msg);
        return CLI_USAGE;
    }
    ckd_st_writer *w = ckd_st_writer_new();
    int rc = w ? 0 : ckd_errorf(&err, "out of memory");
    for (size_t i = 0; rc == 0 && i < ckd_st_count(st); i++) {
        const ckd_st_tensor *t = ckd_st_at(st, i);
        rc = ckd_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &err);
    }
    const char *fmt = ckd_st_metadata(st, "format");
    if (rc == 0 && fmt)
        rc = ckd_st_writer_set_metadata(w, "format", "pt", &err) ||
             ckd_st_writer_set_metadata(w, "converted_from", fmt, &err);
    if (rc == 0)
        rc = ckd_st_writer_save(w, pos[1], &err);
    if (rc == 0)
        print_summary(st, pos[0], pos[1]);
    else
        fprintf(stderr, "clipkd convert: %s\n", err.msg);
    ckd_st_writer_free(w);
    ckd_st_close(st);
    return rc ? CLI_FAIL : CLI_OK;
}
