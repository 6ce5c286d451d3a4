#include "support/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int server_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

int server_port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static pid_t spawn(char *const argv[], int *in_fd, int *out_fd)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1};
    if (pipe(in) != 0 || (out_fd && pipe(out) != 0))
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        int null = open("/dev/null", O_WRONLY);
        dup2(out_fd ? out[1] : null, 1);
        if (!getenv("BATON_TEST_VERBOSE"))
            dup2(null, 2);
        close(in[1]);
        if (out_fd)
            close(out[0]);
        setpgid(0, 0);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(in[0]);
    *in_fd = in[1];
    fcntl(in[1], F_SETFD, FD_CLOEXEC);
    if (out_fd) {
        close(out[1]);
        *out_fd = out[0];
        fcntl(out[0], F_SETFD, FD_CLOEXEC);
    }
    return pid;
}

int server_start_ready(test_server *s, char *const argv[], int timeout_ms)
{
    memset(s, 0, sizeof *s);
    s->pid = spawn(argv, &s->in_fd, &s->out_fd);
    if (s->pid < 0)
        return -1;
    char line[256];
    size_t n = 0;
    int64_t end = now_ms() + timeout_ms;
    while (now_ms() < end && n < sizeof line - 1) {
        struct pollfd p = {.fd = s->out_fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t r = read(s->out_fd, line + n, 1);
        if (r <= 0)
            break;
        if (line[n] == '\n') {
            line[n] = '\0';
            if (sscanf(line, "PORT %d", &s->port) == 1)
                return 0;
            n = 0;
            continue;
        }
        n++;
    }
    server_kill(s);
    return -1;
}

int server_start_port(test_server *s, char *const argv[], int port, int timeout_ms)
{
    memset(s, 0, sizeof *s);
    s->out_fd = -1;
    s->pid = spawn(argv, &s->in_fd, NULL);
    if (s->pid < 0)
        return -1;
    s->port = port;
    int64_t end = now_ms() + timeout_ms;
    while (now_ms() < end) {
        if (server_port_open(port))
            return 0;
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            return -1;
        }
        usleep(20 * 1000);
    }
    server_kill(s);
    return -1;
}

static void reap(test_server *s, int sig, int grace_ms)
{
    if (s->pid <= 0)
        return;
    kill(-s->pid, sig);
    kill(s->pid, sig);
    int64_t end = now_ms() + grace_ms;
    int st;
    while (waitpid(s->pid, &st, WNOHANG) == 0) {
        if (now_ms() > end) {
            kill(-s->pid, SIGKILL);
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &st, 0);
            break;
        }
        usleep(10 * 1000);
    }
    if (s->in_fd > 0)
        close(s->in_fd);
    if (s->out_fd > 0)
        close(s->out_fd);
    s->pid = 0;
    s->in_fd = s->out_fd = -1;
}

void server_stop(test_server *s)
{
    reap(s, SIGTERM, 1000);
}
void server_kill(test_server *s)
{
    reap(s, SIGKILL, 1000);
}

int server_start_mosquitto(test_server *s, const char *dir, int port)
{
    if (port == 0)
        port = server_free_port();
    char conf[1024];
    snprintf(conf, sizeof conf, "%s/mosquitto-%d.conf", dir, port);
    FILE *f = fopen(conf, "w");
    if (!f)
        return -1;
    fprintf(f,
            /* the settings docs/operations.md asks for: sessions and queued
             * messages kept (on disk, in dir: as root the broker stays root
             * to write there), no cap on the queue */
            "listener %d 127.0.0.1\nallow_anonymous true\npersistence true\n"
            "persistence_location %s/\nuser root\n"
            "set_tcp_nodelay true\nmax_inflight_messages 0\nmax_queued_messages 0\n",
            port, dir);
    fclose(f);
    const char *bin =
        access("/usr/sbin/mosquitto", X_OK) == 0 ? "/usr/sbin/mosquitto" : "mosquitto";
    char *argv[] = {(char *)bin, "-c", conf, NULL};
    return server_start_port(s, argv, port, 10000);
}

int server_start_http_sink(test_server *s, const char *logpath, const char *a1, const char *a2,
                           const char *a3, const char *a4)
{
    char src[1024];
    const char *top = getenv("BATON_SRC");
    snprintf(src, sizeof src, "%s/tests/support/http_sink.py", top ? top : ".");
    char *argv[] = {"/usr/bin/python3", src,        "--log",
                    (char *)logpath,    (char *)a1, (char *)a2,
                    (char *)a3,         (char *)a4, NULL};
    return server_start_ready(s, argv, 15000);
}
