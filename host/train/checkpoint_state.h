/* The JSON state a checkpoint carries next to its tensors (checkpoint.c
 * writes it; checkpoint_state.c reads and checks it). Kept apart from the
 * trainer so the fuzz harness can feed it any text. */
#ifndef CKD_TRAIN_CHECKPOINT_STATE_H
#define CKD_TRAIN_CHECKPOINT_STATE_H

#include <stdint.h>

#include "clipkd/error.h"

typedef struct train_state {
    char recipe_hash[65];
    int64_t step, metrics_len;
    uint64_t rng[4];
    int64_t *adam_steps; /* [n_params] */
    double last_loss;
    double *last_terms;  /* [n_losses]; 0 where the state has none */
} train_state;

/* Parses and checks the state of a checkpoint in `file` written by a run of
 * total_steps steps with n_params optimised tensors and n_losses losses.
 * Everything is checked before anything is used: the recipe hash (64 hex
 * digits), step in [0, total_steps], four 64-bit hex RNG words not all zero
 * (xoshiro's one forbidden state), one AdamW step count per tensor in
 * [0, step], metrics_len >= 0, and numbers where numbers belong. Returns 0,
 * or -1 with err naming the file and the key; out is then empty. */
int train_state_parse(const char *text, const char *file, int64_t total_steps, int n_params, int n_losses,
                      train_state *out, ckd_error *err);
void train_state_free(train_state *s);

#endif
