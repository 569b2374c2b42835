/* The run directory as a file system object: creating it, writing its JSON
 * files so that each appears whole, and the lock that keeps one process in
 * it at a time. The lock is what makes removing temporary files safe: a
 * process killed while writing (SIGKILL, power loss) leaves
 * "<file>.tmp.<pid>" behind, and with the lock held nobody else can be
 * writing one. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train_internal.h"

#define LOCK_FILE "run.lock"

int train_mkdirs(const char *path, ckd_error *err)
{
    char buf[TRAIN_PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return ckd_errorf(err, "%s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0777) && errno != EEXIST)
            return ckd_errorf(err, "cannot create %s: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) && errno != EEXIST)
        return ckd_errorf(err, "cannot create %s: %s", buf, strerror(errno));
    return 0;
}

int train_write_json(const char *dir, const char *file, const json_t *v, ckd_error *err)
{
    char path[TRAIN_PATH_MAX + 64], tmp[TRAIN_PATH_MAX + 96];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (json_dump_file(v, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) || rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return ckd_errorf(err, "cannot write %s: %s", path, strerror(e));
    }
    return 0;
}

/* "name.tmp.<digits>": what train_write_json and ckd_st_writer_save leave
 * behind when killed. */
static int is_temporary(const char *name)
{
    const char *t = strstr(name, ".tmp.");
    if (!t || t == name)
        return 0;
    const char *d = t + 5;
    if (!*d)
        return 0;
    for (; *d; d++)
        if (*d < '0' || *d > '9')
            return 0;
    return 1;
}

static void remove_temporaries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    char path[TRAIN_PATH_MAX + 300];
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_temporary(e->d_name))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path); /* best effort: a leftover only costs disk space */
    }
    closedir(d);
}

int train_lock_dir(const char *dir, int *fd_out, ckd_error *err)
{
    char path[TRAIN_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/" LOCK_FILE, dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
        return ckd_errorf(err, "cannot create %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        int e = errno;
        close(fd);
        return e == EWOULDBLOCK ? ckd_errorf(err, "%s is in use by another clipkd run (it holds %s)", dir, path)
                                : ckd_errorf(err, "cannot lock %s: %s", path, strerror(e));
    }
    remove_temporaries(dir);
    char final[TRAIN_PATH_MAX + 16];
    snprintf(final, sizeof final, "%s/final", dir);
    remove_temporaries(final);
    *fd_out = fd;
    return 0;
}

void train_unlock_dir(int fd)
{
    if (fd >= 0)
        close(fd); /* releases the flock; the file stays, harmlessly */
}
