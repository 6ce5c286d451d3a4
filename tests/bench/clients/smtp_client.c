/* Minimal SMTP client: the SMTP sink's ceiling for the benchmark. Blocking
 * sockets, TCP_NODELAY, no checks beyond the reply codes; with PIPELINING
 * (when offered) a message's text and dot go in one write with the next
 * message's MAIL, RCPT and DATA.
 * usage: smtp_client PORT COUNT THREADS PER_SESSION [BODY_BYTES]
 * prints "<rate> <cpu>": messages per second, CPU microseconds a message. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int port, per_session;
static long per_thread;
static char *msg; /* headers, text, final dot */
static size_t msg_len;
static const char env[] = "MAIL FROM:<news@example.com>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n";

typedef struct conn {
    int fd;
    char in[8192];
    size_t off, len;
} conn;

/* the next reply's code (multi-line replies read whole), or -1 */
static int reply(conn *c, int *pipelining)
{
    for (;;) {
        char *nl;
        while (!(nl = memchr(c->in + c->off, '\n', c->len - c->off))) {
            memmove(c->in, c->in + c->off, c->len - c->off);
            c->len -= c->off;
            c->off = 0;
            ssize_t k = read(c->fd, c->in + c->len, sizeof c->in - c->len);
            if (k <= 0)
                return -1;
            c->len += (size_t)k;
        }
        char *line = c->in + c->off;
        c->off = (size_t)(nl - c->in) + 1;
        if (pipelining && !strncmp(line + 4, "PIPELINING", 10))
            *pipelining = 1;
        if (line[3] != '-')
            return atoi(line);
    }
}

static int put(conn *c, const char *p, size_t n)
{
    while (n) {
        ssize_t k = send(c->fd, p, n, MSG_NOSIGNAL);
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static void *run(void *arg)
{
    char *both = malloc(msg_len + sizeof env);
    memcpy(both, msg, msg_len);
    memcpy(both + msg_len, env, sizeof env - 1);
    for (long done = 0; done < per_thread;) {
        conn c = {.fd = socket(AF_INET, SOCK_STREAM, 0)};
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        int one = 1, pipe = 0;
        setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(c.fd, (struct sockaddr *)&a, sizeof a) || reply(&c, NULL) != 220 ||
            put(&c, "EHLO client.example.com\r\n", 25) || reply(&c, &pipe) != 250) {
            fprintf(stderr, "smtp_client: session failed\n");
            exit(1);
        }
        int n = 0;
        for (; n < per_session && done + n < per_thread; n++) {
            int last = n + 1 == per_session || done + n + 1 == per_thread;
            if (pipe) {
                if (n == 0 && put(&c, env, sizeof env - 1))
                    break;
                if (reply(&c, NULL) != 250 || reply(&c, NULL) != 250 || reply(&c, NULL) != 354)
                    break;
                if (put(&c, last ? msg : both, last ? msg_len : msg_len + sizeof env - 1) ||
                    reply(&c, NULL) != 250)
                    break;
            } else if (put(&c, env, 30) || reply(&c, NULL) != 250 || put(&c, env + 30, 25) ||
                       reply(&c, NULL) != 250 || put(&c, "DATA\r\n", 6) || reply(&c, NULL) != 354 ||
                       put(&c, msg, msg_len) || reply(&c, NULL) != 250)
                break;
        }
        put(&c, "QUIT\r\n", 6);
        reply(&c, NULL);
        close(c.fd);
        if (n == 0) {
            fprintf(stderr, "smtp_client: no message accepted\n");
            exit(1);
        }
        done += n;
    }
    free(both);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 5)
        return 2;
    port = atoi(argv[1]);
    long count = atol(argv[2]);
    int threads = atoi(argv[3]);
    per_session = atoi(argv[4]);
    size_t body = argc > 5 ? (size_t)atol(argv[5]) : 8;
    per_thread = count / threads;
    const char *head = "From: <news@example.com>\r\nTo: <a@example.com>\r\n"
                       "Subject: ceiling\r\nMessage-ID: <x@example.com>\r\n"
                       "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n";
    msg = malloc(strlen(head) + body + body / 70 * 2 + 16);
    strcpy(msg, head);
    char *p = msg + strlen(head);
    for (size_t i = 0; i < body; i++) {
        *p++ = i % 72 == 71 ? '\r' : "lorem ipsum dolor sit amet "[i % 27];
        if (i % 72 == 71)
            *p++ = '\n';
    }
    memcpy(p, "\r\n.\r\n", 5);
    msg_len = (size_t)(p + 5 - msg);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pthread_t t[64];
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, run, NULL);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    printf("%.0f %.1f\n", per_thread * threads / s, cpu * 1e6 / (per_thread * threads));
    return 0;
}
