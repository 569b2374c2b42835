/* Tests of the fetch area that need no server: SHA-256, artifact JSON and
 * where the cache lives. Part of the tests/test-fetch program (the download
 * tests against the loopback server are in test-fetch.c). */
#include "config.h"

/* mkdtemp, nftw. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <criterion/criterion.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clipkd/fetch.h"

#define BLOB_LEN 300000

static char tmp_dir[512];
static unsigned char *blob;
static char blob_sha[65];
static ckd_error err;

static void setup(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/ckd-fetch-XXXXXX", t && *t ? t : "/tmp");
    cr_assert(mkdtemp(tmp_dir), "mkdtemp: %s", strerror(errno));
    blob = malloc(BLOB_LEN);
    for (size_t i = 0; i < BLOB_LEN; i++)
        blob[i] = (unsigned char)(i * 7 + (i >> 8));
    cr_assert(ckd_sha256_buffer(blob, BLOB_LEN, blob_sha, NULL) == 0);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    return remove(p);
}

static void teardown(void)
{
    free(blob);
    nftw(tmp_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* No .timeout here (nothing can hang): with two suites setting one, the
 * Criterion 2.4.1 runner leaks 48 bytes and LeakSanitizer fails the program. */
TestSuite(fetch_basics, .init = setup, .fini = teardown);

static void write_file(const char *file, const void *data, size_t n)
{
    FILE *f = fopen(file, "wb");
    cr_assert(f, "cannot create %s", file);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* ---- SHA-256 --------------------------------------------------------------- */

Test(fetch_basics, sha256_vectors)
{
    char hex[65];
    cr_assert(ckd_sha256_buffer("", 0, hex, NULL) == 0);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    cr_assert(ckd_sha256_buffer("abc", 3, hex, NULL) == 0);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    /* Streaming in odd pieces = one shot = the file's hash. */
    ckd_sha256 *h = ckd_sha256_new(NULL);
    cr_assert(h);
    for (size_t off = 0; off < BLOB_LEN; off += 7777)
        cr_assert(ckd_sha256_update(h, blob + off, BLOB_LEN - off < 7777 ? BLOB_LEN - off : 7777,
                                    NULL) == 0);
    cr_assert(ckd_sha256_final(h, hex, NULL) == 0);
    cr_assert_str_eq(hex, blob_sha);
    cr_assert(ckd_sha256_final(h, hex, &err) == -1, "final twice must fail");
    ckd_sha256_free(h);

    char path[700];
    snprintf(path, sizeof path, "%s/blob", tmp_dir);
    write_file(path, blob, BLOB_LEN);
    int64_t n = 0;
    cr_assert(ckd_sha256_file(path, hex, &n, NULL) == 0);
    cr_assert_str_eq(hex, blob_sha);
    cr_assert_eq(n, BLOB_LEN);

    snprintf(path, sizeof path, "%s/nope", tmp_dir);
    cr_assert(ckd_sha256_file(path, hex, NULL, &err) == -1);
    cr_assert(strstr(err.msg, path), "message names the file: %s", err.msg);

    cr_assert(ckd_sha256_is_hex(blob_sha));
    cr_assert(ckd_sha256_is_hex("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"));
    cr_assert(!ckd_sha256_is_hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85"));
    cr_assert(!ckd_sha256_is_hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555"));
    cr_assert(!ckd_sha256_is_hex("g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    cr_assert(!ckd_sha256_is_hex(NULL));
    char low[65];
    cr_assert(ckd_sha256_lower("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                               low) == 0);
    cr_assert_str_eq(low, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    cr_assert(ckd_sha256_lower("e3b0", low) == -1);
}

/* ---- artifact JSON --------------------------------------------------------- */

Test(fetch_basics, artifact_json_good)
{
    json_t *j = json_loads("{\"urls\": [\"https://h/a/weights.bin?x=1\", \"file:///x/y\"],"
                           " \"sha256\": \"E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA4"
                           "95991B7852B855\", \"size\": 0, \"license\": \"ignored\"}", 0, NULL);
    cr_assert(j);
    ckd_artifact a;
    cr_assert(ckd_artifact_from_json(j, &a, "t.json: $.x", &err) == 0, "%s", err.msg);
    cr_assert_eq(a.n_urls, 2);
    cr_assert_str_eq(a.urls[1], "file:///x/y");
    cr_assert_str_eq(a.sha256, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    cr_assert_eq(a.size, 0);
    cr_assert_str_eq(a.name, "weights.bin");
    ckd_artifact_free(&a);
    cr_assert_null(a.urls);
    json_decref(j);

    j = json_pack("{s:[s], s:s, s:i, s:s}", "urls", "http://h/", "sha256", blob_sha, "size", 5,
                  "name", "teacher");
    cr_assert(ckd_artifact_from_json(j, &a, NULL, &err) == 0, "%s", err.msg);
    cr_assert_str_eq(a.name, "teacher");
    ckd_artifact_free(&a);
    json_decref(j);
}

Test(fetch_basics, artifact_json_bad)
{
#define U "\"urls\": [\"http://h/x\"]"
#define H "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\""
    static const struct {
        const char *json, *want;
    } cases[] = {
        {"{" U ", \"size\": 1}", "no SHA-256 is known for http://h/x: download it once with `clipkd fetch --pin"},
        {"{" U ", \"sha256_prefix\": \"55e67d44\"}", "(only its first digits, 55e67d44, are published)"},
        {"{" U ", \"sha256\": \"xyz\", \"size\": 1}", "is not a SHA-256"},
        {"{" U ", \"sha256\": \"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g\","
         " \"size\": 1}", "is not a SHA-256"},
        {"{" U ", \"sha256\": 12, \"size\": 1}", "sha256: expected a string"},
        {"{" U ", \"sha256\": " H ", \"size\": -1}", "negative"},
        {"{" U ", \"sha256\": " H ", \"size\": \"12\"}", "size: expected an integer"},
        {"{" U ", \"sha256\": " H ", \"size\": 1.5}", "size: expected an integer"},
        {"{" U ", \"sha256\": " H "}", "\"size\" is missing"},
        {"{\"urls\": [], \"sha256\": " H ", \"size\": 1}", "non-empty array"},
        {"{\"urls\": \"http://h/x\", \"sha256\": " H ", \"size\": 1}", "non-empty array"},
        {"{\"sha256\": " H ", \"size\": 1}", "\"urls\" is missing"},
        {"{\"urls\": [\"http://h/x\", \"ftp://h/y\"], \"sha256\": " H ", \"size\": 1}", "urls[1]"},
        {"{\"urls\": [\"http://h/x\", 3], \"sha256\": " H ", \"size\": 1}",
         "urls[1]: expected a URL string"},
        {"{" U ", \"sha256\": " H ", \"size\": 1, \"name\": 3}", "name: expected a string"},
        {"[1, 2]", "expected an artifact object"},
    };
#undef U
#undef H
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *j = json_loads(cases[i].json, 0, NULL);
        cr_assert(j, "case %zu does not parse", i);
        ckd_artifact a;
        cr_assert(ckd_artifact_from_json(j, &a, "recipe.json: $.teacher", &err) == -1,
                  "case %zu accepted", i);
        cr_assert(strstr(err.msg, "recipe.json: $.teacher"), "case %zu: no place: %s", i, err.msg);
        cr_assert(strstr(err.msg, cases[i].want), "case %zu: want \"%s\" in: %s", i,
                  cases[i].want, err.msg);
        cr_assert_null(a.urls);
        ckd_artifact_free(&a); /* safe after failure */
        json_decref(j);
    }
    ckd_artifact a;
    cr_assert(ckd_artifact_from_json(NULL, &a, "x", &err) == -1);
    cr_assert(ckd_artifact_from_json(NULL, NULL, "x", &err) == -1);
}

/* ---- the cache directory ----------------------------------------------------- */

Test(fetch_basics, cache_dir_resolution)
{
    char d[256];
    setenv("CLIPKD_CACHE", "/c/k", 1);
    cr_assert(ckd_cache_dir(d, sizeof d, NULL) == 0);
    cr_assert_str_eq(d, "/c/k");
    unsetenv("CLIPKD_CACHE");
    setenv("XDG_CACHE_HOME", "/xdg", 1);
    setenv("HOME", "/home/u", 1);
    cr_assert(ckd_cache_dir(d, sizeof d, NULL) == 0);
    cr_assert_str_eq(d, "/xdg/clipkd");
    setenv("XDG_CACHE_HOME", "relative", 1); /* ignored, per the XDG spec */
    cr_assert(ckd_cache_dir(d, sizeof d, NULL) == 0);
    cr_assert_str_eq(d, "/home/u/.cache/clipkd");
    cr_assert(ckd_cache_dir(d, 5, &err) == -1);
    cr_assert(strstr(err.msg, "longer than"), "%s", err.msg);
    unsetenv("XDG_CACHE_HOME");
    unsetenv("HOME");
    cr_assert(ckd_cache_dir(d, sizeof d, &err) == -1);
    cr_assert(strstr(err.msg, "CLIPKD_CACHE"), "%s", err.msg);

    cr_assert(ckd_cache_entry_path("/c", blob_sha, d, sizeof d, NULL) == 0);
    char want[256];
    snprintf(want, sizeof want, "/c/sha256/%.2s/%s", blob_sha, blob_sha);
    cr_assert_str_eq(d, want);
    cr_assert(ckd_cache_entry_path("/c", "abc", d, sizeof d, &err) == -1);
    cr_assert(strstr(err.msg, "64 hex"), "%s", err.msg);
}
