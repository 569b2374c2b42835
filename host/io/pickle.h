/* host/io/pickle.h — a pickle reader that never calls anything (internal).
 *
 * Python's unpickler executes: GLOBAL fetches any callable and REDUCE calls
 * it, which is how a checkpoint can run a shell command when loaded. This
 * reader only builds a tree. Containers, numbers and strings become values;
 * a global becomes a symbolic name, checked against the caller's allow-list
 * the moment it is read (anything else is refused, by name); REDUCE, NEWOBJ
 * and BUILD become symbolic "call" nodes holding the callable, its arguments
 * and any state, for the caller to interpret as data. The one call that is
 * folded is collections.OrderedDict(), which becomes a plain dict.
 *
 * Protocols 2 to 5 are read, with the opcodes CPython writes for them
 * (memo, frames, STACK_GLOBAL, the 8-byte strings); the protocol 0/1 text
 * opcodes, extension registries and out-of-band buffers are refused.
 * Limits on the stack, the memo and allocated memory turn hostile inputs
 * (deep nesting, memo bombs, huge length fields) into errors. Values may
 * share children and even form cycles (the memo allows both), so anything
 * that walks the tree must bound its depth. */
#ifndef CLIPKD_PICKLE_H
#define CLIPKD_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "clipkd/error.h"

typedef enum pk_kind {
    PK_NONE,
    PK_BOOL,   /* i */
    PK_INT,    /* i */
    PK_BIGINT, /* s, len: two's complement little-endian bytes (over 8) */
    PK_FLOAT,  /* f */
    PK_STR,    /* s, len (NUL-terminated too) */
    PK_BYTES,  /* s, len */
    PK_TUPLE,  /* items */
    PK_LIST,   /* items */
    PK_DICT,   /* items: key 0, value 0, key 1, value 1, ... in insertion order */
    PK_SET,    /* items */
    PK_GLOBAL, /* s: "module.name" */
    PK_CALL,   /* items[0] callable, items[1] argument tuple, items[2] state or NULL */
    PK_PID     /* items[0]: the persistent id (BINPERSID) */
} pk_kind;

typedef struct pk_value pk_value;
struct pk_value {
    pk_kind kind;
    int64_t i;
    double f;
    char *s;
    size_t len;
    pk_value **items;
    size_t n, cap;
    size_t at; /* offset of the opcode that made it, for messages */
};

typedef struct pk_limits {
    size_t max_stack;  /* values on the stack (nesting while building) */
    size_t max_memo;   /* highest memo index + 1 */
    size_t max_bytes;  /* memory for values, strings and the memo */
} pk_limits;

/* Stack 1 Mi values, memo 16 Mi entries, 1 GiB. */
void pk_limits_default(pk_limits *l);

typedef struct pk_pickle pk_pickle;

/* Reads one pickle from the n bytes at p. where names the data in messages
 * ("model.pt: archive/data.pkl"); every message also gives the byte offset.
 * allowed: the globals ("module.name") that may appear, NULL-terminated.
 * *used gets the bytes consumed (up to and including STOP), for files that
 * hold several pickles in a row. */
pk_pickle *pk_load(const unsigned char *p, size_t n, const char *where, const char *const *allowed,
                   const pk_limits *lim, size_t *used, ckd_error *err);
void pk_free(pk_pickle *pk);
const pk_value *pk_root(const pk_pickle *pk);

/* Every value the pickle made, in the order made (persistent ids included:
 * a checkpoint's storages can be listed without walking the tree). */
size_t pk_n_values(const pk_pickle *pk);
const pk_value *pk_value_at(const pk_pickle *pk, size_t i);

const char *pk_kind_name(pk_kind k);
/* The value of the string key in a dict, or NULL. */
const pk_value *pk_dict_get(const pk_value *d, const char *key);
/* 1 when v is the global called name. */
int pk_is_global(const pk_value *v, const char *name);

#endif
