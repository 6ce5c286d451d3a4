#include "support/fs.h"

#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

char *tmpdir_make(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *tmpl;
    if (asprintf(&tmpl, "%s/baton-%s-XXXXXX", base && *base ? base : "/tmp", tag) < 0)
        abort();
    if (!mkdtemp(tmpl)) {
        perror("mkdtemp");
        abort();
    }
    return tmpl;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void tmpdir_remove(const char *dir)
{
    if (dir)
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *file_write(const char *dir, const char *name, const char *text)
{
    char *path;
    if (dir ? asprintf(&path, "%s/%s", dir, name) < 0 : !(path = strdup(name)))
        abort();
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        abort();
    }
    fputs(text, f);
    fclose(f);
    return path;
}

char *file_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *data = malloc(cap);
    size_t got;
    while ((got = fread(data + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0)
            data = realloc(data, cap *= 2);
    }
    fclose(f);
    data[n] = '\0';
    if (len)
        *len = n;
    return data;
}

int run_capture(const char *cmd, char **out, char **err)
{
    char outp[] = "/tmp/baton-run-out-XXXXXX", errp[] = "/tmp/baton-run-err-XXXXXX";
    int fo = mkstemp(outp), fe = mkstemp(errp);
    if (fo < 0 || fe < 0)
        abort();
    close(fo);
    close(fe);
    char *full;
    if (asprintf(&full, "(%s) >%s 2>%s", cmd, outp, errp) < 0)
        abort();
    int st = system(full);
    free(full);
    if (out)
        *out = file_read(outp, NULL);
    if (err)
        *err = file_read(errp, NULL);
    unlink(outp);
    unlink(errp);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

int run_baton_v(const char *cwd, const char *cfg, char **out, char **err, const char *fmt,
                va_list ap)
{
    char *args, *cmd;
    if (vasprintf(&args, fmt, ap) < 0 ||
        asprintf(&cmd, "%s%s%s%s%s%s %s", cwd ? "cd " : "", cwd ? cwd : "", cwd ? " && " : "",
                 getenv("BATON_BIN"), cfg ? " -c " : "", cfg ? cfg : "", args) < 0)
        abort();
    int rc = run_capture(cmd, out, err);
    free(args);
    free(cmd);
    return rc;
}

int run_baton(const char *cwd, const char *cfg, char **out, char **err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = run_baton_v(cwd, cfg, out, err, fmt, ap);
    va_end(ap);
    return rc;
}

long db_long(const char *db, const char *sql)
{
    sqlite3 *h;
    long v = -1;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(h, 5000);
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK) {
            if (sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_int64(st, 0);
            sqlite3_finalize(st);
        }
    }
    sqlite3_close(h);
    return v;
}

char *run_output(const char *cmd)
{
    char *out = NULL;
    if (run_capture(cmd, &out, NULL) != 0) {
        free(out);
        return NULL;
    }
    size_t n = strlen(out);
    while (n && out[n - 1] == '\n')
        out[--n] = '\0';
    return out;
}

char *db_print(const char *db, const char *sql)
{
    char *cmd;
    if (asprintf(&cmd, "sqlite3 %s \"%s\"", db, sql) < 0)
        abort();
    char *out = run_output(cmd);
    free(cmd);
    return out;
}

long db_wait_for(const char *db, const char *sql, long want, int timeout_ms)
{
    long v = -1;
    for (int i = 0; i < timeout_ms / 50; i++) {
        if ((v = db_long(db, sql)) == want)
            break;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return v;
}
