#define _GNU_SOURCE
/* A small HTTP/1.1 load client for bench_http: CONNS keep-alive
 * connections to 127.0.0.1:PORT, each POSTing REQS bodies of BATCH cart
 * events to /v1/events, paced to RATE requests/s in all (0: flat out).
 * Prints "OK requests events seconds p50_ms p99_ms non202". One file, the
 * C library only. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int port, conns, reqs, batch;
static double rate;
static const char *token, *prefix;
static double *lat;
static long nlat, non202;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static double t_start;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One answer: its status; the body is read and dropped. -1: closed. */
static int answer(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    char *end = NULL;
    while (!(end = n ? strstr(buf, "\r\n\r\n") : NULL)) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r <= 0)
            return -1;
        n += (size_t)r;
        buf[n] = 0;
    }
    int status = atoi(buf + 9);
    char *cl = strcasestr(buf, "Content-Length:");
    size_t want = cl ? (size_t)atol(cl + 15) : 0, have = n - (size_t)(end + 4 - buf);
    while (have < want) {
        ssize_t r = read(fd, buf, cap - 1);
        if (r <= 0)
            return -1;
        have += (size_t)r;
    }
    return status;
}

static void *conn_main(void *arg)
{
    long id = (long)arg;
    int fd = dial();
    if (fd < 0)
        return NULL;
    size_t cap = (size_t)batch * 160 + 1024;
    char *body = malloc(cap), *req = malloc(cap + 512), *buf = malloc(1 << 20);
    double gap = rate > 0 ? conns / rate : 0;
    for (int i = 0; i < reqs; i++) {
        if (gap > 0) { /* request i of this connection goes at its slot */
            double at = t_start + (i + (double)id / conns) * gap, w = at - now();
            if (w > 0) {
                struct timespec ts = {(time_t)w, (long)((w - (time_t)w) * 1e9)};
                nanosleep(&ts, NULL);
            }
        }
        size_t n = 0;
        body[n++] = '[';
        for (int k = 0; k < batch; k++)
            n += (size_t)snprintf(body + n, cap - n,
                                  "%s{\"id\":\"%s-%ld-%d-%d\",\"type\":\"cart\",\"profile\":"
                                  "\"%s%ld-%d-%d\",\"data\":{\"total\":%d.5}}",
                                  k ? "," : "", prefix, id, i, k, prefix, id, i, k, 1 + k % 90);
        body[n++] = ']';
        int h = snprintf(req, 512,
                         "POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                         "%s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                         token, n);
        memcpy(req + h, body, n);
        double t0 = now();
        size_t off = 0, len = (size_t)h + n;
        while (off < len) {
            ssize_t w = write(fd, req + off, len - off);
            if (w <= 0)
                goto out;
            off += (size_t)w;
        }
        int st = answer(fd, buf, 1 << 20);
        if (st < 0)
            goto out;
        double ms = (now() - t0) * 1000;
        pthread_mutex_lock(&mu);
        lat[nlat++] = ms;
        non202 += st != 202;
        pthread_mutex_unlock(&mu);
    }
out:
    close(fd);
    free(body);
    free(req);
    free(buf);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: http_post_batches PORT TOKEN CONNS REQS BATCH RATE PREFIX\n");
        return 2;
    }
    port = atoi(argv[1]);
    token = argv[2];
    conns = atoi(argv[3]);
    reqs = atoi(argv[4]);
    batch = atoi(argv[5]);
    rate = atof(argv[6]);
    prefix = argv[7];
    lat = calloc((size_t)conns * (size_t)reqs + 1, sizeof *lat);
    pthread_t *t = calloc((size_t)conns, sizeof *t);
    t_start = now();
    for (long i = 0; i < conns; i++)
        pthread_create(&t[i], NULL, conn_main, (void *)i);
    for (int i = 0; i < conns; i++)
        pthread_join(t[i], NULL);
    double secs = now() - t_start;
    qsort(lat, (size_t)nlat, sizeof *lat, cmp);
    printf("OK %ld %ld %.3f %.2f %.2f %ld\n", nlat, nlat * batch, secs, nlat ? lat[nlat / 2] : 0,
           nlat ? lat[(long)(nlat * 0.99)] : 0, non202);
    return 0;
}
