/* jansson's allocator under memory pressure (json_oom.h says why). When
 * malloc refuses jansson, the request is served from a 1 MiB reserve with a
 * bump pointer, reset whenever every block taken from it has been given
 * back; the refusal is counted for the thread. Only if the reserve is
 * exhausted too does jansson see NULL. The allocator is installed when the
 * library is loaded, in front of whatever allocator jansson had. */
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
static json_malloc_t next_malloc = malloc;
static json_free_t next_free = free;

unsigned long ckdi_json_failures(void)
{
    return failures;
}

static void *json_oom_malloc(size_t n)
{
    void *p = next_malloc(n);
    if (p)
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
