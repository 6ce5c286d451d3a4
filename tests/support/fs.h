/* Test helpers: temporary directories and whole-file I/O. */
#ifndef BATON_TEST_FS_H
#define BATON_TEST_FS_H

#include <stdarg.h>
#include <stddef.h>

/* A fresh directory under $TMPDIR (or /tmp); free() the result after
 * tmpdir_remove(). */
char *tmpdir_make(const char *tag);
/* rm -rf */
void tmpdir_remove(const char *dir);
/* Write text to dir/name (dir may be NULL for an absolute name); returns
 * the full path (free it). Aborts on failure: a test cannot go on. */
char *file_write(const char *dir, const char *name, const char *text);
/* The whole file, NUL-terminated (free it), or NULL. */
char *file_read(const char *path, size_t *len);
/* Run a shell command, capturing stdout and stderr (each may be NULL);
 * returns the exit status (or -1). */
int run_capture(const char *cmd, char **out, char **err);
/* What a shell command prints on stdout, trailing newlines cut; NULL when
 * it exits non-zero. Caller frees. */
char *run_output(const char *cmd);
/* Run $BATON_BIN with the printf-formatted arguments through the shell, as
 * run_capture: "-c cfg" first when cfg is not NULL, from the folder cwd
 * when it is not NULL. */
int run_baton_v(const char *cwd, const char *cfg, char **out, char **err, const char *fmt,
                va_list ap) __attribute__((format(printf, 5, 0)));
int run_baton(const char *cwd, const char *cfg, char **out, char **err, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* The first column of the first row of sql on the SQLite file db, opened
 * read-only (5 s busy timeout), or -1. */
long db_long(const char *db, const char *sql);
/* What the sqlite3 shell prints for sql on the SQLite file db (rows on
 * lines, columns joined by '|'), trailing newlines cut; NULL when it
 * fails. Caller frees. */
char *db_print(const char *db, const char *sql);
/* db_long until it equals want or timeout_ms pass (polling every 50 ms);
 * the last value read. */
long db_wait_for(const char *db, const char *sql, long want, int timeout_ms);

#endif
