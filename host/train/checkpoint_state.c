/* Reading a checkpoint's JSON state (checkpoint_state.h). A checkpoint is
 * a file a collaborator may hand over, so a hostile or damaged state must
 * be refused here, not met later as a negative step, an all-zero RNG or a
 * metrics file extended with zeros. */
#include "config.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint_state.h"
#include "core/json_oom.h"

static int bad(ckd_error *err, const char *file, const char *key, const char *expected)
{
    return ckd_errorf(err, "%s: cannot resume: the checkpoint's state has %s%s%s; expected %s", file,
                      key ? "a bad \"" : "no valid JSON", key ? key : "", key ? "\"" : "", expected);
}

static int is_hex(const char *s, size_t n)
{
    if (!s || strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789abcdef", s[i]))
            return 0;
    return 1;
}

static int int_in(const json_t *v, int64_t lo, int64_t hi, int64_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return 0;
    *out = (int64_t)json_integer_value(v);
    return 1;
}

void train_state_free(train_state *s)
{
    free(s->adam_steps);
    free(s->last_terms);
    memset(s, 0, sizeof *s);
}

int train_state_parse(const char *text, const char *file, int64_t total_steps, int n_params, int n_losses,
                      train_state *out, ckd_error *err)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *st = text ? ckdi_json_loads(text, JSON_REJECT_DUPLICATES, &je, NULL) : NULL;
    int rc = -1;
    out->adam_steps = calloc((size_t)n_params + 1, sizeof *out->adam_steps);
    out->last_terms = calloc((size_t)n_losses + 1, sizeof *out->last_terms);
    if (!out->adam_steps || !out->last_terms) {
        ckd_errorf(err, "%s: out of memory reading the checkpoint's state", file);
        goto out;
    }
    if (!json_is_object(st)) {
        bad(err, file, NULL, "a JSON object in the metadata entry \"state\"");
        goto out;
    }
    const char *hash = json_string_value(json_object_get(st, "recipe_hash"));
    if (!is_hex(hash, 64)) {
        bad(err, file, "recipe_hash", "64 hex digits");
        goto out;
    }
    memcpy(out->recipe_hash, hash, 65);
    if (!int_in(json_object_get(st, "step"), 0, total_steps, &out->step)) {
        char what[64];
        snprintf(what, sizeof what, "an integer in [0, %lld] (this run's steps)", (long long)total_steps);
        bad(err, file, "step", what);
        goto out;
    }
    const json_t *rng = json_object_get(st, "rng");
    uint64_t any = 0;
    for (size_t i = 0; i < 4; i++) {
        const char *w = json_string_value(json_array_get(rng, i));
        if (json_array_size(rng) != 4 || !is_hex(w, 16)) {
            bad(err, file, "rng", "4 strings of 16 hex digits");
            goto out;
        }
        any |= out->rng[i] = strtoull(w, NULL, 16);
    }
    if (!any) {
        bad(err, file, "rng", "a state that is not all zero");
        goto out;
    }
    const json_t *steps = json_object_get(st, "adam_steps");
    for (int k = 0; k < n_params; k++)
        if (json_array_size(steps) != (size_t)n_params ||
            !int_in(json_array_get(steps, (size_t)k), 0, out->step, &out->adam_steps[k])) {
            char what[96];
            snprintf(what, sizeof what, "%d integers in [0, step] (one per optimised tensor)", n_params);
            bad(err, file, "adam_steps", what);
            goto out;
        }
    if (!int_in(json_object_get(st, "metrics_len"), 0, INT64_MAX, &out->metrics_len)) {
        bad(err, file, "metrics_len", "a byte count >= 0");
        goto out;
    }
    /* The last losses are for display after a resume: optional, but numbers. */
    const json_t *loss = json_object_get(st, "last_loss"), *terms = json_object_get(st, "last_terms");
    if ((loss && !json_is_number(loss)) || (terms && !json_is_array(terms))) {
        bad(err, file, loss && !json_is_number(loss) ? "last_loss" : "last_terms", "numbers");
        goto out;
    }
    out->last_loss = json_number_value(loss);
    for (int i = 0; i < n_losses && i < (int)json_array_size(terms); i++) {
        const json_t *v = json_array_get(terms, (size_t)i);
        if (!json_is_number(v)) {
            bad(err, file, "last_terms", "numbers");
            goto out;
        }
        out->last_terms[i] = json_number_value(v);
    }
    rc = 0;
out:
    json_decref(st);
    if (rc) {
        free(out->adam_steps);
        free(out->last_terms);
        memset(out, 0, sizeof *out);
    }
    return rc;
}
