/* Shared helpers of the fuzz harnesses (see fuzz.h). */
#define _XOPEN_SOURCE 700
#include "fuzz.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static char scratch[4096];

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_scratch(void)
{
    if (scratch[0])
        nftw(scratch, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fuzz_dir(void)
{
    if (!scratch[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(scratch, sizeof scratch, "%s/clipkd-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(scratch)) {
            perror("fuzz: cannot make a scratch folder");
            abort(); /* no folder: the harnesses cannot run at all */
        }
        atexit(remove_scratch);
    }
    return scratch;
}

/* Paths rotate through a few buffers, so that a harness can hold the paths
 * of the last four files it wrote. */
static char *path_of(const char *name)
{
    static char paths[4][4096 + 256];
    static unsigned next;
    char *path = paths[next++ % 4];
    snprintf(path, sizeof paths[0], "%s/%s", fuzz_dir(), name);
    return path;
}

const char *fuzz_file(const char *name, const void *data, size_t size)
{
    char *path = path_of(name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return NULL;
    const char *p = data;
    size_t left = size;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w <= 0) {
            close(fd);
            return NULL;
        }
        p += w, left -= (size_t)w;
    }
    close(fd);
    return path;
}

const char *fuzz_file_gz(const char *name, const void *data, size_t size)
{
    char *path = path_of(name);
    gzFile gz = gzopen(path, "wb1");
    if (!gz)
        return NULL;
    int ok = size == 0 || gzwrite(gz, data, (unsigned)size) == (int)size;
    return gzclose(gz) == Z_OK && ok ? path : NULL;
}

void fuzz_split(const uint8_t *data, size_t size, const char *sep, const uint8_t **p1, size_t *n1,
                const uint8_t **p2, size_t *n2)
{
    size_t k = strlen(sep);
    *p1 = data, *n1 = size, *p2 = data + size, *n2 = 0;
    for (size_t i = 0; k && i + k <= size; i++)
        if (!memcmp(data + i, sep, k)) {
            *n1 = i, *p2 = data + i + k, *n2 = size - i - k;
            return;
        }
}

char *fuzz_strndup(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s) {
        memcpy(s, data, size);
        s[size] = 0;
    }
    return s;
}
