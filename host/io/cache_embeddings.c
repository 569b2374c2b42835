/* Teacher embedding entries in the cache (<cache>/teacher-embeddings/
 * <key>.safetensors): how their files are named, described for
 * `clipkd cache ls` and checked for `clipkd cache verify`. The trainer
 * writes them (host/train/teacher_cache.c documents what they hold); the
 * walks, the lock protocol and gc are the artifacts' own (cache.c). */
#include "config.h"

/* utimensat and st_atim even under -std=c11. */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE 1
#endif

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cache_internal.h"
#include "clipkd/safetensors.h"
#include "core/json_oom.h"

const char *const ckdi_embeddings_digest_order[] = {"image_embeds", "text_embeds", "text_offsets", "valid",
                                                    "logit_scale",  "class_txt",   "labels"};
const size_t ckdi_embeddings_n_digest =
    sizeof ckdi_embeddings_digest_order / sizeof *ckdi_embeddings_digest_order;
/* The first ones every entry has (class_txt only when the data have
 * classes; labels only in entries written since they were added). */
#define N_REQUIRED 5

#define SUFFIX ".safetensors"

static enum ckdi_kind classify_embeddings(const char *name)
{
    const size_t ns = sizeof SUFFIX - 1;
    if (strlen(name) < 64 + ns || !ckdi_is_lower_hex(name, 64) || strncmp(name + 64, SUFFIX, ns))
        return CKDI_OTHER;
    const char *suf = name + 64 + ns;
    if (!*suf)
        return CKDI_DATA;
    if (!strcmp(suf, ".lock"))
        return CKDI_LOCK;
    /* ckd_st_writer_save's temporary file: <path>.tmp.<pid> */
    if (!strncmp(suf, ".tmp.", 5) && suf[5] && strspn(suf + 5, "0123456789") == strlen(suf + 5))
        return CKDI_PARTIAL;
    return CKDI_OTHER;
}

/* Reading an entry to list or check it is not using it: put its access time
 * back, so that gc's age rule still sees the last run that read it. */
static void keep_atime(const char *path, const struct stat *before)
{
    struct timespec t[2] = {before->st_atim, {.tv_sec = 0, .tv_nsec = UTIME_OMIT}};
    (void)utimensat(AT_FDCWD, path, t, 0); /* not ours to change: the time moves, no harm */
}

static const char *str_at(const json_t *o, const char *k1, const char *k2)
{
    const json_t *v = json_object_get(o, k1);
    return json_string_value(k2 ? json_object_get(v, k2) : v);
}

/* "clip ViT-B-32 (weights 0123456789ab)" from the key's teacher object. */
static void describe_teacher(const json_t *t, char *buf, size_t cap)
{
    const char *plugin = str_at(t, "plugin", NULL), *label = str_at(t, "config", "name");
    const char *w = str_at(t, "weights", NULL);
    char weights[64] = "";
    if (w && !strncmp(w, "sha256:", 7))
        snprintf(weights, sizeof weights, " (weights %.12s)", w + 7);
    else if (w && !strncmp(w, "init:", 5))
        snprintf(weights, sizeof weights, " (random init, seed %.20s)", w + 5);
    snprintf(buf, cap, "%s%s%s%s", plugin ? plugin : "?", label ? " " : "", label ? label : "",
             weights);
}

/* "fashion-mnist/train, 60000 samples" from the key's data object; data
 * without a split are named by their file. */
static void describe_data(const json_t *d, char *buf, size_t cap)
{
    const char *reader = str_at(d, "spec", "reader"), *split = str_at(d, "spec", "split");
    const char *src = str_at(d, "source", "path");
    const char *base = src && strrchr(src, '/') ? strrchr(src, '/') + 1 : src;
    const char *sep = split ? "/" : base ? " " : "", *what = split ? split : base ? base : "";
    const json_t *n = json_object_get(d, "size");
    snprintf(buf, cap, "%s%s%s", reader ? reader : "?", sep, what);
    if (json_is_integer(n)) {
        size_t len = strlen(buf);
        snprintf(buf + len, cap - len, ", %lld samples", (long long)json_integer_value(n));
    }
}

/* The key JSON of a header, parsed; NULL if it has none. */
static json_t *header_key(const json_t *header)
{
    const char *text = str_at(header, "__metadata__", "key");
    return text ? ckdi_json_loads(text, 0, NULL, NULL) : NULL;
}

static void describe_embeddings(ckdi_loaded *l, const struct stat *st)
{
    json_t *h = NULL, *key = NULL;
    /* A run that reuses an entry only reads it; on a file system that does
     * not keep access times, this is when it was computed. */
    if (st->st_atime > st->st_mtime)
        l->e.last_used = (int64_t)st->st_atime;
    l->e.fetched = (int64_t)st->st_mtime;
    l->e.name = l->desc;
    int readable = ckd_st_read_header(l->path, &h, &l->e.expected_size, NULL) == 0;
    keep_atime(l->path, st);
    if (readable)
        key = header_key(h);
    json_decref(h);
    if (!json_is_object(key)) {
        snprintf(l->desc, sizeof l->desc, "teacher embeddings (%s)",
                 readable ? "no key metadata" : "unreadable header");
        json_decref(key);
        return;
    }
    char teacher[160], data[256];
    describe_teacher(json_object_get(key, "teacher"), teacher, sizeof teacher);
    describe_data(json_object_get(key, "data"), data, sizeof data);
    snprintf(l->desc, sizeof l->desc, "teacher embeddings: %s on %s", teacher, data);
    l->e.meta = l->meta = key;
}

/* A message of the safetensors reader without the "<path>: " it starts
 * with: the caller names the file. */
static void put_problem(char *problem, size_t cap, const char *path, const char *msg)
{
    size_t n = strlen(path);
    if (!strncmp(msg, path, n) && !strncmp(msg + n, ": ", 2))
        msg += n + 2;
    snprintf(problem, cap, "%s", msg);
}

/* SHA-256 of the bytes of the digested tensors that st holds. */
static int digest(const ckd_safetensors *st, char hex[65], ckd_error *err)
{
    ckd_sha256 *h = ckd_sha256_new(err);
    if (!h)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < ckdi_embeddings_n_digest && !rc; i++) {
        const ckd_st_tensor *t = ckd_st_find(st, ckdi_embeddings_digest_order[i]);
        if (t)
            rc = ckd_sha256_update(h, t->data, t->nbytes, err);
    }
    rc = rc || ckd_sha256_final(h, hex, err) ? -1 : 0;
    ckd_sha256_free(h);
    return rc;
}

/* What the trainer checks before it reuses an entry, short of the shapes
 * that depend on the run: the key is an embedding key and names this file,
 * the tensors are there and hash to the stored checksum. */
static int check_metadata(const ckd_safetensors *st, const char *name, char *problem, size_t cap)
{
    const char *key = ckd_st_metadata(st, "key"), *sum = ckd_st_metadata(st, "sha256");
    char hex[65];
    ckd_error err;
    json_t *k = key ? ckdi_json_loads(key, 0, NULL, NULL) : NULL;
    const char *format = str_at(k, "format", NULL);
    int ours = format && !strcmp(format, CKDI_EMBEDDINGS_FORMAT);
    json_decref(k);
    if (!ours)
        return snprintf(problem, cap, "no \"key\" metadata of format \"%s\"", CKDI_EMBEDDINGS_FORMAT), 1;
    if (ckd_sha256_buffer(key, strlen(key), hex, &err) == 0 && strcmp(hex, name) != 0)
        return snprintf(problem, cap, "its key metadata hashes to %s, not to its name", hex), 1;
    for (size_t i = 0; i < N_REQUIRED; i++)
        if (!ckd_st_find(st, ckdi_embeddings_digest_order[i]))
            return snprintf(problem, cap, "no tensor \"%s\"", ckdi_embeddings_digest_order[i]), 1;
    if (!sum)
        return snprintf(problem, cap, "no \"sha256\" metadata: runs would compute it again"), 1;
    if (digest(st, hex, &err) != 0)
        return snprintf(problem, cap, "%s", err.msg), 1;
    if (strcmp(hex, sum) != 0)
        return snprintf(problem, cap, "tensors hash to sha256 %s, but its \"sha256\" metadata says %s",
                        hex, sum), 1;
    return 0;
}

/* The size first: a truncated entry (the usual damage: a full disk, a copy
 * cut short) gets a message that says so, not a safetensors parse error. */
static int check_file(const ckd_cache_entry *e, const struct stat *st, char *problem, size_t cap)
{
    ckd_error err;
    json_t *h = NULL;
    int64_t want = -1;
    if (ckd_st_read_header(e->path, &h, &want, &err) != 0)
        return put_problem(problem, cap, e->path, err.msg), 1;
    json_decref(h);
    if ((int64_t)st->st_size < want)
        return snprintf(problem, cap, "truncated: %lld bytes, but its header describes %lld",
                        (long long)st->st_size, (long long)want), 1;
    if ((int64_t)st->st_size > want)
        return snprintf(problem, cap, "%lld bytes, %lld more than its header describes",
                        (long long)st->st_size, (long long)(st->st_size - want)), 1;
    ckd_safetensors *sf = ckd_st_open(e->path, &err);
    if (!sf)
        return put_problem(problem, cap, e->path, err.msg), 1;
    int bad = check_metadata(sf, e->sha256, problem, cap);
    ckd_st_close(sf);
    return bad;
}

static int check_embeddings(const ckd_cache_entry *e, char *problem, size_t cap)
{
    struct stat st;
    if (stat(e->path, &st) != 0)
        return -1;
    int bad = check_file(e, &st, problem, cap);
    keep_atime(e->path, &st);
    return bad;
}

const ckdi_layout ckdi_embeddings_layout = {CKD_CACHE_TEACHER_EMBEDDINGS, SUFFIX, classify_embeddings,
                                            describe_embeddings, check_embeddings};
