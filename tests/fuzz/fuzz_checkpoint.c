/* A checkpoint's JSON state (the "state" metadata of
 * checkpoint.safetensors, whose tensors the safetensors target covers), as
 * a resume of a 1000-step run with 3 optimised tensors and 2 losses reads it. */
#include "fuzz.h"

#include <stdlib.h>

#include "train/checkpoint_state.h"

FUZZ_TARGET(checkpoint)
{
    char *text = fuzz_strndup(data, size);
    train_state s;
    ckd_error err;
    if (text && !train_state_parse(text, "checkpoint.safetensors", 1000, 3, 2, &s, &err)) {
        if (s.step < 0 || s.step > 1000 || s.metrics_len < 0)
            __builtin_trap(); /* accepted state out of the run's range */
        train_state_free(&s);
    }
    free(text);
    return 0;
}
