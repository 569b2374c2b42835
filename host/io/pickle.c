/* A pickle reader that never calls anything; see pickle.h.
 *
 * The machine is CPython's (Lib/pickle.py, "_Unpickler"): a value stack,
 * a mark stack, a memo indexed by small integers. Each opcode's operands
 * are read through need(), which checks them against the end of the data,
 * so a truncated or lying length can only produce an error. Every value is
 * allocated through new_value() and kept in one list, freed as a whole:
 * values can be shared and cyclic, so they have no single owner. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pickle.h"

struct pk_pickle {
    const unsigned char *p;
    size_t n, pos, op_at;
    const char *where;
    const char *const *allowed;
    pk_limits lim;
    size_t bytes;             /* allocated so far, against lim.max_bytes */
    pk_value **all;           /* every value, for freeing */
    size_t n_all, cap_all;
    pk_value **stack;
    size_t sp, cap_stack;
    size_t *marks;            /* stack heights at each MARK */
    size_t n_marks, cap_marks;
    pk_value **memo;
    size_t n_memo;
    pk_value *root;
    ckd_error *err;
};

void pk_limits_default(pk_limits *l)
{
    /* 65536: a pickler batches APPENDS and SETITEMS by 1000, so real
     * checkpoints stay far below; each value costs ~100 bytes. */
    l->max_stack = (size_t)1 << 16;
    l->max_memo = (size_t)1 << 24;
    l->max_bytes = (size_t)1 << 30;
}

const char *pk_kind_name(pk_kind k)
{
    static const char *const names[] = {"None", "bool", "int", "int", "float", "str", "bytes",
                                        "tuple", "list", "dict", "set", "global", "call",
                                        "persistent id"};
    return (unsigned)k < sizeof names / sizeof *names ? names[k] : "?";
}

static int fail(pk_pickle *k, const char *fmt, const char *arg)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, arg);
    return ckd_errorf(k->err, "%s: byte %zu: %s", k->where, k->op_at, msg);
}

/* ---- memory ---------------------------------------------------------------- */

static int charge(pk_pickle *k, size_t bytes)
{
    if (bytes > k->lim.max_bytes - k->bytes) {
        char lim[32];
        snprintf(lim, sizeof lim, "%zu", k->lim.max_bytes >> 20);
        return fail(k, "the pickle needs more than %s MiB (a limit against hostile files)", lim);
    }
    k->bytes += bytes;
    return 0;
}

/* Grows *arr (of elem-sized entries, *cap of them) to hold at least want. */
static int grow(pk_pickle *k, void **arr, size_t *cap, size_t want, size_t elem)
{
    if (want <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 8;
    while (nc < want)
        nc *= 2;
    if (charge(k, (nc - *cap) * elem))
        return -1;
    void *q = realloc(*arr, nc * elem);
    if (!q)
        return fail(k, "out of memory%s", "");
    *arr = q;
    *cap = nc;
    return 0;
}

static pk_value *new_value(pk_pickle *k, pk_kind kind)
{
    if (grow(k, (void **)&k->all, &k->cap_all, k->n_all + 1, sizeof *k->all) || charge(k, sizeof(pk_value)))
        return NULL;
    pk_value *v = calloc(1, sizeof *v);
    if (!v) {
        fail(k, "out of memory%s", "");
        return NULL;
    }
    v->kind = kind;
    v->at = k->op_at;
    k->all[k->n_all++] = v;
    return v;
}

static int add_item(pk_pickle *k, pk_value *c, pk_value *item)
{
    if (grow(k, (void **)&c->items, &c->cap, c->n + 1, sizeof *c->items))
        return -1;
    c->items[c->n++] = item;
    return 0;
}

void pk_free(pk_pickle *k)
{
    if (!k)
        return;
    for (size_t i = 0; i < k->n_all; i++) {
        free(k->all[i]->s);
        free(k->all[i]->items);
        free(k->all[i]);
    }
    free(k->all);
    free(k->stack);
    free(k->marks);
    free(k->memo);
    free(k);
}

const pk_value *pk_root(const pk_pickle *k) { return k->root; }
size_t pk_n_values(const pk_pickle *k) { return k->n_all; }
const pk_value *pk_value_at(const pk_pickle *k, size_t i) { return i < k->n_all ? k->all[i] : NULL; }

/* ---- operands and the stack ------------------------------------------------- */

static const unsigned char *need(pk_pickle *k, size_t len)
{
    if (len > k->n - k->pos) {
        fail(k, "the pickle ends inside an opcode's operand%s (truncated data)", "");
        return NULL;
    }
    const unsigned char *q = k->p + k->pos;
    k->pos += len;
    return q;
}

static uint64_t le(const unsigned char *q, int len)
{
    uint64_t v = 0;
    for (int i = len; i-- > 0;)
        v = v << 8 | q[i];
    return v;
}

static int push(pk_pickle *k, pk_value *v)
{
    if (!v)
        return -1;
    if (k->sp >= k->lim.max_stack) {
        char lim[32];
        snprintf(lim, sizeof lim, "%zu", k->lim.max_stack);
        return fail(k, "the pickle nests deeper than %s values (a limit against hostile files)", lim);
    }
    if (grow(k, (void **)&k->stack, &k->cap_stack, k->sp + 1, sizeof *k->stack))
        return -1;
    k->stack[k->sp++] = v;
    return 0;
}

static pk_value *pop(pk_pickle *k)
{
    size_t floor = k->n_marks ? k->marks[k->n_marks - 1] : 0;
    if (k->sp <= floor) {
        fail(k, "an opcode pops from an empty stack%s (malformed pickle)", "");
        return NULL;
    }
    return k->stack[--k->sp];
}

static pk_value *top(pk_pickle *k)
{
    size_t floor = k->n_marks ? k->marks[k->n_marks - 1] : 0;
    if (k->sp <= floor) {
        fail(k, "an opcode needs a value on an empty stack%s (malformed pickle)", "");
        return NULL;
    }
    return k->stack[k->sp - 1];
}

/* Pops back to the last MARK; the values above it are stack[*from .. sp). */
static int pop_mark(pk_pickle *k, size_t *from)
{
    if (!k->n_marks)
        return fail(k, "an opcode needs a MARK and there is none%s (malformed pickle)", "");
    *from = k->marks[--k->n_marks];
    return 0;
}

static pk_value *make_str(pk_pickle *k, pk_kind kind, size_t len)
{
    const unsigned char *q = need(k, len);
    if (!q || charge(k, len + 1))
        return NULL;
    pk_value *v = new_value(k, kind);
    if (!v)
        return NULL;
    if (!(v->s = malloc(len + 1))) {
        fail(k, "out of memory%s", "");
        return NULL;
    }
    memcpy(v->s, q, len);
    v->s[len] = 0;
    v->len = len;
    return v;
}

static pk_value *make_int(pk_pickle *k, int64_t i)
{
    pk_value *v = new_value(k, PK_INT);
    if (v)
        v->i = i;
    return v;
}

/* LONG1 / LONG4: two's complement, little-endian, any length. */
static pk_value *make_long(pk_pickle *k, size_t len)
{
    if (len > 8)
        return make_str(k, PK_BIGINT, len);
    const unsigned char *q = need(k, len);
    if (!q)
        return NULL;
    uint64_t u = le(q, (int)len);
    if (len && len < 8 && (q[len - 1] & 0x80))
        u |= ~(uint64_t)0 << (8 * len);
    return make_int(k, (int64_t)u);
}

static pk_value *make_seq(pk_pickle *k, pk_kind kind, size_t from)
{
    pk_value *v = new_value(k, kind);
    if (!v)
        return NULL;
    for (size_t i = from; i < k->sp; i++)
        if (add_item(k, v, k->stack[i]))
            return NULL;
    k->sp = from;
    return v;
}

/* ---- memo ------------------------------------------------------------------- */

static int memo_put(pk_pickle *k, uint64_t idx)
{
    pk_value *v = top(k);
    if (!v)
        return -1;
    if (idx >= k->lim.max_memo) {
        char s[32];
        snprintf(s, sizeof s, "%" PRIu64, idx);
        return fail(k, "memo index %s is beyond the limit (a hostile or damaged pickle)", s);
    }
    if (idx >= k->n_memo) {
        size_t cap = k->n_memo;
        if (grow(k, (void **)&k->memo, &cap, (size_t)idx + 1, sizeof *k->memo))
            return -1;
        memset(k->memo + k->n_memo, 0, (cap - k->n_memo) * sizeof *k->memo);
        k->n_memo = cap;
    }
    k->memo[idx] = v;
    return 0;
}

static int memo_get(pk_pickle *k, uint64_t idx)
{
    if (idx >= k->n_memo || !k->memo[idx]) {
        char s[32];
        snprintf(s, sizeof s, "%" PRIu64, idx);
        return fail(k, "memo entry %s is read before it is written (malformed pickle)", s);
    }
    return push(k, k->memo[idx]);
}

static size_t memo_next(const pk_pickle *k)
{
    size_t n = k->n_memo;
    while (n && !k->memo[n - 1])
        n--;
    return n;
}

/* ---- globals and calls --------------------------------------------------------- */

static int make_global(pk_pickle *k, const char *module, size_t mlen, const char *name, size_t nlen)
{
    char full[512];
    if (mlen + nlen + 2 > sizeof full)
        return fail(k, "a global's name is over 500 bytes%s", "");
    memcpy(full, module, mlen);
    full[mlen] = '.';
    memcpy(full + mlen + 1, name, nlen);
    full[mlen + 1 + nlen] = 0;
    if (memchr(full, 0, mlen + 1 + nlen))
        return fail(k, "a global's name holds a NUL byte%s", "");
    int ok = 0;
    for (const char *const *a = k->allowed; a && *a && !ok; a++)
        ok = !strcmp(*a, full);
    if (!ok)
        return fail(k, "refusing global '%s': only tensors, storages and containers are read from a "
                       "checkpoint, and nothing in it is ever called", full);
    pk_value *v = new_value(k, PK_GLOBAL);
    if (!v || !(v->s = strdup(full)))
        return v ? fail(k, "out of memory%s", "") : -1;
    v->len = strlen(full);
    return push(k, v);
}

/* GLOBAL's operands: "module\nname\n". */
static int op_global(pk_pickle *k)
{
    const unsigned char *m = k->p + k->pos, *end = k->p + k->n;
    const unsigned char *nl1 = memchr(m, '\n', (size_t)(end - m));
    const unsigned char *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1)) : NULL;
    if (!nl2)
        return fail(k, "GLOBAL's module and name are not terminated by newlines%s (truncated?)", "");
    k->pos = (size_t)(nl2 + 1 - k->p);
    return make_global(k, (const char *)m, (size_t)(nl1 - m), (const char *)nl1 + 1, (size_t)(nl2 - nl1 - 1));
}

static int op_stack_global(pk_pickle *k)
{
    pk_value *name = pop(k), *module = name ? pop(k) : NULL;
    if (!module)
        return -1;
    if (name->kind != PK_STR || module->kind != PK_STR)
        return fail(k, "STACK_GLOBAL takes two strings%s", "");
    return make_global(k, module->s, module->len, name->s, name->len);
}

static int op_reduce(pk_pickle *k, int newobj)
{
    pk_value *args = pop(k), *fn = args ? pop(k) : NULL;
    if (!fn)
        return -1;
    if (args->kind != PK_TUPLE)
        return fail(k, "%s takes an argument tuple", newobj ? "NEWOBJ" : "REDUCE");
    if (fn->kind != PK_GLOBAL)
        return fail(k, "%s on something that is not a global (only named constructors are read)",
                    newobj ? "NEWOBJ" : "REDUCE");
    if (pk_is_global(fn, "collections.OrderedDict") && args->n == 0)
        return push(k, new_value(k, PK_DICT));
    pk_value *c = new_value(k, PK_CALL);
    if (!c || add_item(k, c, fn) || add_item(k, c, args) || add_item(k, c, NULL))
        return -1;
    c->n = 2; /* items[2] (the state) stays NULL until BUILD */
    return push(k, c);
}

static int op_build(pk_pickle *k)
{
    pk_value *state = pop(k), *obj = state ? top(k) : NULL;
    if (!obj)
        return -1;
    if (obj->kind == PK_CALL) {
        obj->items[2] = state;
        obj->n = 3;
        return 0;
    }
    if (obj->kind == PK_DICT)
        return 0; /* an OrderedDict's attributes (a state dict's _metadata): not data we read */
    return fail(k, "BUILD on a %s", pk_kind_name(obj->kind));
}

/* ---- containers ---------------------------------------------------------------- */

static int append_from(pk_pickle *k, pk_value *target, size_t from, pk_kind want, const char *op)
{
    if (target->kind != want)
        return fail(k, "%s on a value that is not a list, dict or set as it requires", op);
    if (want == PK_DICT && (k->sp - from) % 2)
        return fail(k, "%s with an odd number of keys and values", op);
    for (size_t i = from; i < k->sp; i++)
        if (add_item(k, target, k->stack[i]))
            return -1;
    k->sp = from;
    return 0;
}

/* APPEND, SETITEM: the target is below one value / one key-value pair. */
static int op_add(pk_pickle *k, size_t count, pk_kind want, const char *op)
{
    size_t floor = k->n_marks ? k->marks[k->n_marks - 1] : 0;
    if (k->sp < floor + count + 1)
        return fail(k, "%s without enough values on the stack (malformed pickle)", op);
    return append_from(k, k->stack[k->sp - count - 1], k->sp - count, want, op);
}

/* APPENDS, SETITEMS, ADDITEMS: the target is just below the MARK. */
static int op_add_mark(pk_pickle *k, pk_kind want, const char *op)
{
    size_t from = 0;
    if (pop_mark(k, &from))
        return -1;
    size_t floor = k->n_marks ? k->marks[k->n_marks - 1] : 0;
    if (from <= floor)
        return fail(k, "%s with nothing to add to below its MARK (malformed pickle)", op);
    return append_from(k, k->stack[from - 1], from, want, op);
}

static int op_tuple_n(pk_pickle *k, size_t count)
{
    size_t floor = k->n_marks ? k->marks[k->n_marks - 1] : 0;
    if (k->sp < floor + count)
        return fail(k, "TUPLE%s without enough values on the stack", count == 1 ? "1" : count == 2 ? "2" : "3");
    return push(k, make_seq(k, PK_TUPLE, k->sp - count));
}

static int op_from_mark(pk_pickle *k, pk_kind kind)
{
    size_t from = 0;
    if (pop_mark(k, &from))
        return -1;
    if (kind == PK_DICT && (k->sp - from) % 2)
        return fail(k, "DICT with an odd number of keys and values%s", "");
    return push(k, make_seq(k, kind, from));
}

/* ---- the machine ------------------------------------------------------------------ */

static int step(pk_pickle *k, int op, int *stop)
{
    const unsigned char *q;
    pk_value *v;
    switch (op) {
    case 0x80: /* PROTO */
        if (!(q = need(k, 1)))
            return -1;
        if (q[0] < 2 || q[0] > 5) {
            char s[8];
            snprintf(s, sizeof s, "%d", q[0]);
            return fail(k, "pickle protocol %s is not read (2 to 5 are)", s);
        }
        return 0;
    case 0x95: /* FRAME: only a buffering hint; its length must still fit */
        if (!(q = need(k, 8)))
            return -1;
        if (le(q, 8) > k->n - k->pos)
            return fail(k, "a FRAME runs past the end of the data%s (truncated?)", "");
        return 0;
    case '.': /* as CPython: the result is the top of the stack */
        *stop = 1;
        return k->sp ? 0 : fail(k, "STOP with an empty stack%s (malformed pickle)", "");
    case '(':
        if (k->n_marks >= k->lim.max_stack)
            return fail(k, "too many MARKs%s (a limit against hostile files)", "");
        if (grow(k, (void **)&k->marks, &k->cap_marks, k->n_marks + 1, sizeof *k->marks))
            return -1;
        k->marks[k->n_marks++] = k->sp;
        return 0;
    case '0': return pop(k) ? 0 : -1;
    case '1': { size_t from = 0; if (pop_mark(k, &from)) return -1; k->sp = from; return 0; }
    case '2': return (v = top(k)) ? push(k, v) : -1;
    case 'N': return push(k, new_value(k, PK_NONE));
    case 0x88: case 0x89:
        if (!(v = new_value(k, PK_BOOL)))
            return -1;
        v->i = op == 0x88;
        return push(k, v);
    case 'K': return (q = need(k, 1)) ? push(k, make_int(k, q[0])) : -1;
    case 'M': return (q = need(k, 2)) ? push(k, make_int(k, (int64_t)le(q, 2))) : -1;
    case 'J': return (q = need(k, 4)) ? push(k, make_int(k, (int32_t)(uint32_t)le(q, 4))) : -1;
    case 0x8a: return (q = need(k, 1)) ? push(k, make_long(k, q[0])) : -1;
    case 0x8b:
        if (!(q = need(k, 4)))
            return -1;
        if ((int32_t)(uint32_t)le(q, 4) < 0)
            return fail(k, "LONG4 with a negative length%s", "");
        return push(k, make_long(k, (size_t)le(q, 4)));
    case 'G': {
        if (!(q = need(k, 8)) || !(v = new_value(k, PK_FLOAT)))
            return -1;
        uint64_t u = 0; /* big-endian IEEE double */
        for (int i = 0; i < 8; i++)
            u = u << 8 | q[i];
        memcpy(&v->f, &u, 8);
        return push(k, v);
    }
    case 'X': case 'T': case 'B': /* 4-byte lengths: BINUNICODE, BINSTRING, BINBYTES */
        if (!(q = need(k, 4)))
            return -1;
        return push(k, make_str(k, op == 'B' ? PK_BYTES : PK_STR, (size_t)le(q, 4)));
    case 0x8c: case 'U': case 'C': /* 1-byte lengths */
        if (!(q = need(k, 1)))
            return -1;
        return push(k, make_str(k, op == 'C' ? PK_BYTES : PK_STR, q[0]));
    case 0x8d: case 0x8e: case 0x96: /* 8-byte lengths; need() refuses lengths past the end */
        if (!(q = need(k, 8)))
            return -1;
        if (le(q, 8) > k->n - k->pos)
            return fail(k, "a string's length runs past the end of the data%s (truncated?)", "");
        return push(k, make_str(k, op == 0x8d ? PK_STR : PK_BYTES, (size_t)le(q, 8)));
    case ')': return push(k, new_value(k, PK_TUPLE));
    case ']': return push(k, new_value(k, PK_LIST));
    case '}': return push(k, new_value(k, PK_DICT));
    case 0x8f: return push(k, new_value(k, PK_SET));
    case 0x85: return op_tuple_n(k, 1);
    case 0x86: return op_tuple_n(k, 2);
    case 0x87: return op_tuple_n(k, 3);
    case 't': return op_from_mark(k, PK_TUPLE);
    case 'l': return op_from_mark(k, PK_LIST);
    case 'd': return op_from_mark(k, PK_DICT);
    case 0x91: return op_from_mark(k, PK_SET);
    case 'a': return op_add(k, 1, PK_LIST, "APPEND");
    case 's': return op_add(k, 2, PK_DICT, "SETITEM");
    case 'e': return op_add_mark(k, PK_LIST, "APPENDS");
    case 'u': return op_add_mark(k, PK_DICT, "SETITEMS");
    case 0x90: return op_add_mark(k, PK_SET, "ADDITEMS");
    case 'q': return (q = need(k, 1)) ? memo_put(k, q[0]) : -1;
    case 'r': return (q = need(k, 4)) ? memo_put(k, le(q, 4)) : -1;
    case 0x94: return memo_put(k, memo_next(k));
    case 'h': return (q = need(k, 1)) ? memo_get(k, q[0]) : -1;
    case 'j': return (q = need(k, 4)) ? memo_get(k, le(q, 4)) : -1;
    case 'c': return op_global(k);
    case 0x93: return op_stack_global(k);
    case 'R': return op_reduce(k, 0);
    case 0x81: return op_reduce(k, 1);
    case 0x92: { /* NEWOBJ_EX: keyword arguments are not used by anything we read */
        pk_value *kw = pop(k);
        if (!kw)
            return -1;
        if (kw->kind != PK_DICT || kw->n)
            return fail(k, "NEWOBJ_EX with keyword arguments%s", "");
        return op_reduce(k, 1);
    }
    case 'b': return op_build(k);
    case 'Q': {
        pk_value *id = pop(k);
        if (!id || !(v = new_value(k, PK_PID)) || add_item(k, v, id))
            return -1;
        return push(k, v);
    }
    default: break;
    }
    char name[64];
    if (op == 'I' || op == 'L' || op == 'F' || op == 'S' || op == 'V' || op == 'P' || op == 'p' || op == 'g' ||
        op == 'i' || op == 'o')
        snprintf(name, sizeof name, "'%c' (a protocol 0/1 text opcode; checkpoints use protocol 2+)", op);
    else if (op >= 0x82 && op <= 0x84)
        snprintf(name, sizeof name, "0x%02x (EXT: the extension registry)", op);
    else if (op == 0x97 || op == 0x98)
        snprintf(name, sizeof name, "0x%02x (out-of-band buffers)", op);
    else
        snprintf(name, sizeof name, "0x%02x", op);
    return fail(k, "unknown or unsupported pickle opcode %s", name);
}

pk_pickle *pk_load(const unsigned char *p, size_t n, const char *where, const char *const *allowed,
                   const pk_limits *lim, size_t *used, ckd_error *err)
{
    pk_pickle *k = calloc(1, sizeof *k);
    if (!k) {
        ckd_errorf(err, "%s: out of memory", where);
        return NULL;
    }
    k->p = p;
    k->n = n;
    k->where = where;
    k->allowed = allowed;
    k->err = err;
    if (lim)
        k->lim = *lim;
    else
        pk_limits_default(&k->lim);
    int stop = 0;
    while (!stop) {
        k->op_at = k->pos;
        if (k->pos >= k->n) {
            fail(k, "the pickle ends without STOP%s (truncated data)", "");
            pk_free(k);
            return NULL;
        }
        if (step(k, k->p[k->pos++], &stop)) {
            pk_free(k);
            return NULL;
        }
    }
    k->root = k->stack[k->sp - 1];
    if (used)
        *used = k->pos;
    return k;
}

const pk_value *pk_dict_get(const pk_value *d, const char *key)
{
    if (!d || d->kind != PK_DICT)
        return NULL;
    for (size_t i = 0; i + 1 < d->n; i += 2)
        if (d->items[i]->kind == PK_STR && !strcmp(d->items[i]->s, key))
            return d->items[i + 1];
    return NULL;
}

int pk_is_global(const pk_value *v, const char *name)
{
    return v && v->kind == PK_GLOBAL && !strcmp(v->s, name);
}
