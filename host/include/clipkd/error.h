/* clipkd/error.h — how libclipkd reports failure.
 *
 * Library functions never print and never exit. A function that can fail
 * returns an int (0 = success, -1 = failure) or a pointer (NULL = failure)
 * and, when given a ckd_error, fills it with one line that names the file,
 * the place in it, and what was expected. Callers may pass NULL when they do
 * not want the message.
 */
#ifndef CLIPKD_ERROR_H
#define CLIPKD_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CKD_ERROR_MAX 1024

typedef struct ckd_error {
    char msg[CKD_ERROR_MAX];
} ckd_error;

/* Sets err->msg from a printf-style format (if err is non-NULL) and returns -1,
 * so that `return ckd_errorf(err, "...", ...);` reads naturally. */
int ckd_errorf(ckd_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefixes an existing message: "<prefix>: <old message>". Returns -1. */
int ckd_error_prefix(ckd_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Clears the message. */
void ckd_error_clear(ckd_error *err);

#ifdef __cplusplus
}
#endif
#endif
