/* Test helper: a private PostgreSQL server for one test binary. initdb
 * into a temporary folder (as the user `postgres` when the test runs as
 * root: PostgreSQL refuses to run as root), pg_ctl on a free port of
 * 127.0.0.1 only, its unix socket in that folder, stopped and removed by
 * pg_server_stop. Authentication: trust for every role on 127.0.0.1
 * except PG_TEST_PW_USER, which needs its password (scram-sha-256).
 * Durability is off (fsync, synchronous_commit): a test's data need not
 * survive a power cut, only a crash of the server (pg_server_crash). */
#ifndef BATON_TEST_PG_SERVER_H
#define BATON_TEST_PG_SERVER_H

#include <stddef.h>

#define PG_TEST_DB "baton"
#define PG_TEST_USER "baton"
#define PG_TEST_PW_USER "baton_pw"
#define PG_TEST_PASSWORD "s3cret-Pa55word"

typedef struct pg_server {
    char *dir; /* the temporary folder: data/, the socket, log */
    int port;
    int running;
    char conninfo[256]; /* "host=127.0.0.1 port=N dbname=baton user=baton" */
} pg_server;

/* 1 when PostgreSQL's server programs are installed. */
int pg_server_available(void);
/* initdb, start, then create the role and database baton (owner baton)
 * and the role baton_pw with its password. 0, or -1 (printed why). */
int pg_server_start(pg_server *pg);
/* Stop (fast) and remove the folder. Safe on a zeroed or stopped one. */
void pg_server_stop(pg_server *pg);
/* The server dies at once (pg_ctl stop -m immediate: every backend is
 * killed, no checkpoint; the next start runs crash recovery). */
void pg_server_crash(pg_server *pg);
/* Start again on the same folder and port after a crash or stop. */
int pg_server_restart(pg_server *pg);
/* Run SQL through psql (-v ON_ERROR_STOP=1, unaligned, tuples only) as
 * user baton on database baton; stdout in *out when out is not NULL (free
 * it). Returns psql's exit status. */
int pg_server_psql(const pg_server *pg, const char *sql, char **out);
/* The same with a file of SQL. */
int pg_server_psql_file(const pg_server *pg, const char *path, char **out);

#endif
