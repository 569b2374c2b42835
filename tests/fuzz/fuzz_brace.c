/* Shard patterns with brace expansion ("shards-{000..099}.tar"). */
#include "fuzz.h"

#include <stdlib.h>

#include "clipkd/data.h"

FUZZ_TARGET(brace)
{
    char *pattern = fuzz_strndup(data, size);
    char **out = NULL;
    size_t n = 0;
    ckd_error err;
    if (pattern && !ckd_brace_expand(pattern, &out, &n, &err))
        ckd_strings_free(out, n);
    free(pattern);
    return 0;
}
