/* bench/pytorch.h — PyTorch counterparts of the benches: a CLIP written in
 * plain torch (the shapes and text cut of the clip plugin) and a runner for
 * scripts that use it. PyTorch is never a dependency: when no python3 can
 * import torch (Debian's python3-torch 1.13 is enough), benches skip the
 * comparison. */
#ifndef CKD_BENCH_PYTORCH_H
#define CKD_BENCH_PYTORCH_H

#include <stddef.h>

/* Python defining Block, CLIP(E, S, P, Cv, Lv, Hv, Ct, Lt, Ht, act, T=77)
 * with .image(x) and .text(ids) (rows after the last end-of-text token are
 * not computed, as clipkd does), clip_loss(model, x, ids) (HF CLIPModel's
 * symmetric loss), and median(f) (one warm-up call, median of 3). Works
 * on torch < 2.0, which has no F.scaled_dot_product_attention. */
extern const char bench_torch_clip_py[];

/* Runs bench_torch_clip_py followed by script, with args on the command
 * line (sys.argv[1:]; the first is the thread count, which OpenMP is given
 * too, so that PyTorch runs on clipkd's threads), under the first of python3 and /usr/bin/python3
 * that imports torch; reads "KEY VALUE" lines into vals[i] for keys[i].
 * 0 when every key was read; -1 when torch is not importable or the script
 * failed (its errors go to stderr). */
int bench_torch_run(const char *script, const char *args, const char *const *keys, double *vals, size_t n);

/* The runner under both: writes prelude then script to a temporary file
 * ending in suffix, runs "CMD_PREFIX FILE ARGS" through the shell and reads
 * "KEY VALUE" lines as above. */
int bench_script_run(const char *cmd_prefix, const char *suffix, const char *prelude, const char *script,
                     const char *args, const char *const *keys, double *vals, size_t n);

#endif
