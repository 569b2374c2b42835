/* Brace expansion for shard lists, as the shell (and Python's braceexpand,
 * which WebDataset uses) does it: {a..b} ranges and {x,y} alternatives. */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "data_internal.h"

/* A shard list of a million names covers any dataset published as tar
 * shards. Fuzzing builds (the OSS-Fuzz convention's macro, set by
 * --enable-fuzzing) take 1,000, so that each input runs in microseconds
 * rather than building a million strings through the same code. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define MAX_RESULTS 1000
#else
#define MAX_RESULTS 1000000
#endif

/* Appends s[0..n) to every string in the list. */
static int append_all(ckdd_strvec *sv, const char *s, size_t n)
{
    for (size_t i = 0; i < sv->n; i++) {
        size_t l = strlen(sv->v[i]);
        char *t = realloc(sv->v[i], l + n + 1);
        if (!t)
            return -1;
        memcpy(t + l, s, n);
        t[l + n] = '\0';
        sv->v[i] = t;
    }
    return 0;
}

/* Replaces the list by its product with the alternatives. */
static int product(ckdd_strvec *sv, const ckdd_strvec *alt)
{
    ckdd_strvec out = {0};
    for (size_t i = 0; i < sv->n; i++)
        for (size_t j = 0; j < alt->n; j++) {
            size_t a = strlen(sv->v[i]), b = strlen(alt->v[j]);
            char *t = malloc(a + b + 1);
            int rc = -1;
            if (t) {
                memcpy(t, sv->v[i], a);
                memcpy(t + a, alt->v[j], b + 1);
                rc = ckdd_strvec_push(&out, t, a + b);
                free(t);
            }
            if (rc < 0) {
                ckdd_strvec_free(&out);
                return -1;
            }
        }
    ckdd_strvec_free(sv);
    *sv = out;
    return 0;
}

static int parse_uint(const char *s, size_t n, long *v)
{
    if (n == 0 || n > 9)
        return -1;
    long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return 0;
}

/* The alternatives of one group's inside (between the braces); *literal is
 * set when it is neither a range nor a list, like the shell's "{x}". */
static int group(const char *in, size_t n, ckdd_strvec *alt, int *literal)
{
    *literal = 0;
    const char *dots = NULL;
    for (size_t i = 0; i + 1 < n; i++)
        if (in[i] == '.' && in[i + 1] == '.') {
            dots = in + i;
            break;
        }
    long a, b;
    if (dots && parse_uint(in, (size_t)(dots - in), &a) == 0 &&
        parse_uint(dots + 2, n - (size_t)(dots + 2 - in), &b) == 0) {
        size_t la = (size_t)(dots - in), lb = n - la - 2;
        int pad = (la > 1 && in[0] == '0') || (lb > 1 && dots[2] == '0');
        int width = pad ? (int)(la > lb ? la : lb) : 0;
        long step = a <= b ? 1 : -1;
        if (labs(b - a) + 1 > MAX_RESULTS)
            return -2;
        for (long x = a;; x += step) {
            char buf[32];
            int len = snprintf(buf, sizeof buf, "%0*ld", width, x);
            if (ckdd_strvec_push(alt, buf, (size_t)len) < 0)
                return -1;
            if (x == b)
                break;
        }
        return 0;
    }
    if (!memchr(in, ',', n)) {
        *literal = 1;
        return 0;
    }
    for (size_t s = 0, i = 0; i <= n; i++)
        if (i == n || in[i] == ',') {
            if (ckdd_strvec_push(alt, in + s, i - s) < 0)
                return -1;
            s = i + 1;
        }
    return 0;
}

int ckd_brace_expand(const char *pattern, char ***out, size_t *n, ckd_error *err)
{
    *out = NULL;
    *n = 0;
    ckdd_strvec sv = {0};
    if (ckdd_strvec_push(&sv, "", 0) < 0)
        return ckd_errorf(err, "out of memory");
    const char *p = pattern;
    while (*p) {
        const char *open = strchr(p, '{');
        if (!open) {
            if (append_all(&sv, p, strlen(p)) < 0)
                goto oom;
            break;
        }
        const char *close = strchr(open + 1, '}'), *inner = strchr(open + 1, '{');
        if (!close)
            goto literal_rest;
        if (inner && inner < close) {
            ckdd_strvec_free(&sv);
            return ckd_errorf(err, "\"%s\": offset %zu: nested braces are not supported", pattern,
                              (size_t)(inner - pattern));
        }
        if (append_all(&sv, p, (size_t)(open - p)) < 0)
            goto oom;
        ckdd_strvec alt = {0};
        int literal, rc = group(open + 1, (size_t)(close - open - 1), &alt, &literal);
        if (rc == 0 && literal)
            rc = append_all(&sv, open, (size_t)(close - open + 1));
        else if (rc == 0 && sv.n * alt.n > MAX_RESULTS)
            rc = -2;
        else if (rc == 0)
            rc = product(&sv, &alt);
        ckdd_strvec_free(&alt);
        if (rc == -2) {
            ckdd_strvec_free(&sv);
            return ckd_errorf(err, "\"%s\": expands to more than %d names", pattern, MAX_RESULTS);
        }
        if (rc < 0)
            goto oom;
        p = close + 1;
        continue;
    literal_rest:
        if (append_all(&sv, p, strlen(p)) < 0)
            goto oom;
        break;
    }
    *out = sv.v;
    *n = sv.n;
    return 0;
oom:
    ckdd_strvec_free(&sv);
    return ckd_errorf(err, "\"%s\": out of memory while expanding", pattern);
}
