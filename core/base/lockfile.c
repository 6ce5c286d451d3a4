#include "base/lockfile.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "base/log.h"
#include "base/mem.h"

int lockfile_take(lockfile *l, const char *path, char holder[32], char *err, size_t errlen)
{
    l->path = NULL;
    l->fd = -1;
    holder[0] = '\0';
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        ssize_t n = pread(fd, holder, 31, 0);
        holder[n > 0 ? n : 0] = '\0';
        holder[strcspn(holder, "\n")] = '\0';
        close(fd);
        return 1;
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len)
        log_warn("%s: cannot write the pid: %s", path, strerror(errno)); /* the lock holds */
    l->path = xstrdup(path);
    l->fd = fd;
    return 0;
}

void lockfile_release(lockfile *l)
{
    if (l->fd >= 0)
        close(l->fd);
    free(l->path);
    l->path = NULL;
    l->fd = -1;
}

int lockfile_holder_alive(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char pid[32];
    ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
    close(fd);
    pid[n > 0 ? n : 0] = '\0';
    long v = strtol(pid, NULL, 10);
    return v > 0 && (kill((pid_t)v, 0) == 0 || errno == EPERM);
}
