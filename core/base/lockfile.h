/* lockfile — an exclusive lock on a file (flock), held by one process at
 * a time and dropped by the kernel when that process dies, so a killed
 * owner never leaves a stale lock. The holder's pid is written into it,
 * for the message another process gets when it finds the lock taken. */
#ifndef BATON_BASE_LOCKFILE_H
#define BATON_BASE_LOCKFILE_H

#include <stddef.h>

typedef struct lockfile {
    char *path;
    int fd;
} lockfile;

/* Take path's lock without waiting (the file is created 0600). 0; 1 when
 * another process holds it (*holder: its pid as written, "" if none);
 * -1 when the file cannot be opened (err). l is always safe to release. */
int lockfile_take(lockfile *l, const char *path, char holder[32], char *err, size_t errlen);
void lockfile_release(lockfile *l);
/* 1 when the process whose pid path holds is alive (it holds the lock, or
 * did and runs on), 0 when it is gone or path names none: read without
 * taking the lock, so a process about to take it never finds it busy. */
int lockfile_holder_alive(const char *path);

#endif
