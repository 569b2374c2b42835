/* Error messages: one line each, composed without allocation. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "clipkd/error.h"

int ckd_errorf(ckd_error *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int ckd_error_prefix(ckd_error *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    char old[CKD_ERROR_MAX];
    memcpy(old, err->msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof err->msg)
        snprintf(err->msg + n, sizeof err->msg - (size_t)n, ": %s", old);
    return -1;
}

void ckd_error_clear(ckd_error *err)
{
    if (err)
        err->msg[0] = '\0';
}
