#include "support/pg_server.h"

#include <glob.h>
#include <stdarg.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/fs.h"
#include "support/server.h"

/* The folder of initdb and pg_ctl: Debian keeps them out of PATH, under
 * /usr/lib/postgresql/<major>/bin (the newest one installed wins). */
static const char *bindir(void)
{
    static char dir[256];
    if (dir[0])
        return dir;
    glob_t g;
    if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) == 0 && g.gl_pathc > 0) {
        snprintf(dir, sizeof dir, "%s", g.gl_pathv[g.gl_pathc - 1]);
        *strrchr(dir, '/') = '\0';
    }
    globfree(&g);
    if (!dir[0] && access("/usr/bin/initdb", X_OK) == 0)
        snprintf(dir, sizeof dir, "/usr/bin");
    return dir;
}

int pg_server_available(void)
{
    return bindir()[0] != '\0';
}

/* As root, server programs run as `postgres`. */
static const char *as_owner(void)
{
    return getuid() == 0 ? "runuser -u postgres -- " : "";
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd;
    if (vasprintf(&cmd, fmt, ap) < 0)
        abort();
    va_end(ap);
    char *out = NULL, *err = NULL;
    int rc = run_capture(cmd, &out, &err);
    if (rc != 0)
        fprintf(stderr, "pg_server: `%s` exited %d\n%s%s", cmd, rc, out ? out : "", err ? err : "");
    free(cmd);
    free(out);
    free(err);
    return rc;
}

static int start(pg_server *pg)
{
    if (sh("%s%s/pg_ctl -D %s/data -l %s/log -w -t 60 start", as_owner(), bindir(), pg->dir,
           pg->dir) != 0) {
        sh("cat %s/log >&2", pg->dir);
        return -1;
    }
    pg->running = 1;
    return 0;
}

int pg_server_start(pg_server *pg)
{
    memset(pg, 0, sizeof *pg);
    if (!pg_server_available()) {
        fprintf(stderr, "pg_server: no PostgreSQL server programs (scripts/deps.sh installs "
                        "postgresql)\n");
        return -1;
    }
    pg->dir = tmpdir_make("pg");
    chmod(pg->dir, 0700);
    if (getuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw || chown(pg->dir, pw->pw_uid, pw->pw_gid) != 0) {
            fprintf(stderr, "pg_server: running as root needs the user postgres\n");
            goto fail;
        }
    }
    pg->port = server_free_port();
    if (sh("%s%s/initdb -D %s/data -U postgres -A trust -E UTF8 --locale=C --no-sync", as_owner(),
           bindir(), pg->dir) != 0)
        goto fail;
    /* loopback only, the socket in our folder, small and fast */
    char *conf = NULL;
    if (asprintf(&conf,
                 "listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n"
                 "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                 "shared_buffers = 32MB\nmax_connections = 40\nlog_min_messages = warning\n"
                 "TimeZone = 'Europe/Paris'\n",
                 pg->port, pg->dir) < 0)
        abort();
    /* a zone other than UTC: baton must not depend on the server's */
    if (sh("printf '%%s' \"%s\" | %stee -a %s/data/postgresql.conf >/dev/null", conf, as_owner(),
           pg->dir) != 0 ||
        sh("printf 'local all all trust\\nhost all %s 127.0.0.1/32 scram-sha-256\\n"
           "host all all 127.0.0.1/32 trust\\n' | %stee %s/data/pg_hba.conf >/dev/null",
           PG_TEST_PW_USER, as_owner(), pg->dir) != 0) {
        free(conf);
        goto fail;
    }
    free(conf);
    if (start(pg) != 0)
        goto fail;
    snprintf(pg->conninfo, sizeof pg->conninfo, "host=127.0.0.1 port=%d dbname=%s user=%s",
             pg->port, PG_TEST_DB, PG_TEST_USER);
    if (sh("%s/psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p %d -U postgres -d postgres "
           "-c \"CREATE ROLE %s LOGIN\" -c \"CREATE DATABASE %s OWNER %s\" "
           "-c \"CREATE ROLE %s LOGIN PASSWORD '%s'\" -c \"GRANT ALL ON DATABASE %s TO %s\"",
           bindir(), pg->port, PG_TEST_USER, PG_TEST_DB, PG_TEST_USER, PG_TEST_PW_USER,
           PG_TEST_PASSWORD, PG_TEST_DB, PG_TEST_PW_USER) != 0)
        goto fail;
    return 0;
fail:
    pg_server_stop(pg);
    return -1;
}

void pg_server_stop(pg_server *pg)
{
    if (!pg->dir)
        return;
    if (pg->running)
        sh("%s%s/pg_ctl -D %s/data -w -t 30 -m fast stop", as_owner(), bindir(), pg->dir);
    pg->running = 0;
    tmpdir_remove(pg->dir);
    free(pg->dir);
    pg->dir = NULL;
}

void pg_server_crash(pg_server *pg)
{
    if (pg->dir && pg->running)
        sh("%s%s/pg_ctl -D %s/data -w -t 30 -m immediate stop", as_owner(), bindir(), pg->dir);
    pg->running = 0;
}

int pg_server_restart(pg_server *pg)
{
    if (!pg->dir)
        return -1;
    return pg->running ? 0 : start(pg);
}

static int psql(const pg_server *pg, const char *what, const char *arg, char **out)
{
    char *cmd;
    if (asprintf(&cmd,
                 "%s/psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p %d -U %s -d %s %s '%s'",
                 bindir(), pg->port, PG_TEST_USER, PG_TEST_DB, what, arg) < 0)
        abort();
    char *err = NULL;
    int rc = run_capture(cmd, out, &err);
    if (rc != 0)
        fprintf(stderr, "pg_server: psql %s: %s", what, err ? err : "");
    free(err);
    free(cmd);
    return rc;
}

int pg_server_psql(const pg_server *pg, const char *sql, char **out)
{
    /* passed in single quotes: write it to a file instead of escaping */
    char path[] = "/tmp/baton-psql-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        abort();
    FILE *f = fdopen(fd, "w");
    fputs(sql, f);
    fclose(f);
    int rc = psql(pg, "-f", path, out);
    unlink(path);
    return rc;
}

int pg_server_psql_file(const pg_server *pg, const char *path, char **out)
{
    return psql(pg, "-f", path, out);
}
