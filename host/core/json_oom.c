/* jansson's allocator and JSON parsing under memory pressure (json_oom.h
 * says why). While a parse runs in this thread, an allocation malloc
 * refuses is served from a 1 MiB reserve with a bump pointer (reset
 * whenever every block taken from it is given back) and counted; the parse
 * result is then released, which returns the blocks. Outside a parse the
 * allocator is malloc's, failures included. Installed when the library is
 * loaded, in front of whatever allocator jansson had. */
#include "config.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/json_oom.h"

#define RESERVE_BYTES ((size_t)1 << 20)

static _Alignas(max_align_t) unsigned char reserve[RESERVE_BYTES];
static size_t reserve_used, reserve_blocks;
static pthread_mutex_t reserve_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local unsigned long failures;
static _Thread_local int parsing;
static json_malloc_t next_malloc = malloc;
static json_free_t next_free = free;

static void *json_oom_malloc(size_t n)
{
    void *p = next_malloc(n);
    if (p || !parsing)
        return p;
    failures++;
    size_t need = (n + _Alignof(max_align_t) - 1) / _Alignof(max_align_t) * _Alignof(max_align_t);
    pthread_mutex_lock(&reserve_lock);
    if (need <= RESERVE_BYTES - reserve_used) {
        p = reserve + reserve_used;
        reserve_used += need;
        reserve_blocks++;
    }
    pthread_mutex_unlock(&reserve_lock);
    return p;
}

static void json_oom_free(void *p)
{
    uintptr_t a = (uintptr_t)p, r = (uintptr_t)reserve;
    if (a < r || a >= r + RESERVE_BYTES) {
        next_free(p);
        return;
    }
    pthread_mutex_lock(&reserve_lock);
    if (--reserve_blocks == 0)
        reserve_used = 0;
    pthread_mutex_unlock(&reserve_lock);
}

__attribute__((constructor)) static void json_oom_install(void)
{
    json_malloc_t m = NULL;
    json_free_t f = NULL;
    json_get_alloc_funcs(&m, &f);
    if (m == json_oom_malloc)
        return;
    if (m && f)
        next_malloc = m, next_free = f;
    json_set_alloc_funcs(json_oom_malloc, json_oom_free);
}

/* The parse is begun and ended around each jansson call. */
static unsigned long begin(void)
{
    parsing++;
    return failures;
}

static json_t *end(json_t *j, unsigned long mark, int *oom)
{
    parsing--;
    int failed = failures != mark;
    if (failed && j) {
        json_decref(j);
        j = NULL;
    }
    if (oom)
        *oom = failed;
    return j;
}

json_t *ckdi_json_loads(const char *text, size_t flags, json_error_t *error, int *oom)
{
    unsigned long mark = begin();
    return end(json_loads(text, flags, error), mark, oom);
}

json_t *ckdi_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *error, int *oom)
{
    unsigned long mark = begin();
    return end(json_loadb(buf, len, flags, error), mark, oom);
}

json_t *ckdi_json_load_file(const char *path, size_t flags, json_error_t *error, int *oom)
{
    unsigned long mark = begin();
    return end(json_load_file(path, flags, error), mark, oom);
}
