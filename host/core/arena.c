/* The per-step arena: a list of slabs with bump allocation.
 *
 * Slabs are kept across resets, so after the first step a training loop
 * allocates nothing from the system. A request larger than the slab size gets
 * a slab of its own. The limit lets a run fail cleanly ("arena exhausted")
 * instead of being killed by the OOM killer.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>

#include "clipkd/tensor.h"

#define ARENA_ALIGN 64

typedef struct slab {
    struct slab *next;
    size_t cap, used;
    unsigned char *mem;
} slab;

struct ckd_arena {
    slab *head, *cur;
    size_t chunk, limit;
    size_t used;     /* bytes handed out since the last reset */
    size_t peak;
    size_t reserved; /* bytes held in slabs */
};

ckd_arena *ckd_arena_new(size_t chunk_bytes, size_t limit_bytes)
{
    ckd_arena *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->chunk = chunk_bytes ? chunk_bytes : (size_t)64 << 20;
    a->limit = limit_bytes;
    return a;
}

static slab *slab_new(size_t cap)
{
    slab *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->mem = aligned_alloc(ARENA_ALIGN, (cap + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN);
    if (!s->mem) {
        free(s);
        return NULL;
    }
    s->cap = cap;
    return s;
}

void *ckd_arena_alloc(ckd_arena *a, size_t bytes)
{
    size_t need = (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    if (need == 0)
        need = ARENA_ALIGN;
    if (a->limit && a->used + need > a->limit)
        return NULL;
    /* Find room in the current slab or a later (reused) one. */
    for (slab *s = a->cur; s; s = s->next) {
        if (s->cap - s->used >= need) {
            void *p = s->mem + s->used;
            s->used += need;
            a->cur = s;
            a->used += need;
            if (a->used > a->peak)
                a->peak = a->used;
            return p;
        }
    }
    size_t cap = need > a->chunk ? need : a->chunk;
    slab *s = slab_new(cap);
    if (!s)
        return NULL;
    /* Append at the end so that reuse after reset keeps the same order. */
    if (!a->head) {
        a->head = s;
    } else {
        slab *t = a->cur ? a->cur : a->head;
        while (t->next)
            t = t->next;
        t->next = s;
    }
    a->reserved += cap;
    s->used = need;
    a->cur = s;
    a->used += need;
    if (a->used > a->peak)
        a->peak = a->used;
    return s->mem;
}

void ckd_arena_reset(ckd_arena *a)
{
    for (slab *s = a->head; s; s = s->next)
        s->used = 0;
    a->cur = a->head;
    a->used = 0;
}

size_t ckd_arena_used(const ckd_arena *a) { return a->used; }
size_t ckd_arena_peak(const ckd_arena *a) { return a->peak; }
size_t ckd_arena_limit(const ckd_arena *a) { return a->limit; }

void ckd_arena_free(ckd_arena *a)
{
    if (!a)
        return;
    slab *s = a->head;
    while (s) {
        slab *next = s->next;
        free(s->mem);
        free(s);
        s = next;
    }
    free(a);
}
