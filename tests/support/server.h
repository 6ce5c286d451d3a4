/* Test helper: a local server process (mosquitto, an SMTP or HTTP sink,
 * nginx, smtp-sink) started on 127.0.0.1 and stopped by the test. */
#ifndef BATON_TEST_SERVER_H
#define BATON_TEST_SERVER_H

#include <stddef.h>
#include <sys/types.h>

typedef struct test_server {
    pid_t pid;
    int port;
    int out_fd; /* its stdout, when started with server_start_ready */
    int in_fd;  /* its stdin (closed by server_stop) */
} test_server;

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int server_free_port(void);

/* Run argv (argv[0] looked up on PATH) with stdin a pipe and stdout a
 * pipe, and wait up to timeout_ms for a line "PORT <n>" on its stdout
 * (the convention of the Python sinks in tests/support). 0 with s filled, or -1 (the
 * process is killed). */
int server_start_ready(test_server *s, char *const argv[], int timeout_ms);

/* Run argv (stdout and stderr to /dev/null) and wait up to timeout_ms
 * until something accepts TCP connections on 127.0.0.1:port. */
int server_start_port(test_server *s, char *const argv[], int port, int timeout_ms);

/* 1 when 127.0.0.1:port accepts a connection now. */
int server_port_open(int port);

/* A mosquitto broker on 127.0.0.1:port (0: a free one), anonymous, its
 * config file written in dir. */
int server_start_mosquitto(test_server *s, const char *dir, int port);

/* tests/support/http_sink.py on a free port, logging each request as a
 * JSON line to logpath; up to four more of its options (NULL ends them:
 * "--status", "200,429", "--body", ...). See the script's header. */
int server_start_http_sink(test_server *s, const char *logpath, const char *a1, const char *a2,
                           const char *a3, const char *a4);

/* SIGTERM, then SIGKILL after a second; reaps it. Safe on a zeroed s. */
void server_stop(test_server *s);
/* SIGKILL at once (a server that dies), reaps it. */
void server_kill(test_server *s);

#endif
