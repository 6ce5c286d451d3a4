/* A lean MQTT 3.1.1 QoS 1 publisher for the journey benchmark, over a
 * plain TCP socket: it shares the 2 cores with the broker and baton, so it
 * must cost little. Publishes each line of stdin as one message, up to
 * INFLIGHT unacknowledged, optionally paced at RATE lines per second (0:
 * as fast as the broker acknowledges). With STAMP=1, "{ts}" in a line is
 * replaced by the wall-clock time in microseconds at publish. Prints
 * "T0 <us>" (the wall-clock time of the first publish, when paced: line i
 * is due at T0 + i / RATE) and then the rate counted on the broker's
 * acknowledgements.
 *
 * Many PUBLISH packets go out per write(), PUBACKs come in by the
 * buffer-full (flat out, half a window at a time: SO_RCVLOWAT); a packet
 * id is reused only once its PUBACK came. Exits 1
 * when the broker refuses, closes, or stays silent for 10 s while owing
 * acknowledgements.
 * usage: mqtt_pub_lines PORT TOPIC INFLIGHT RATE STAMP < lines */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SILENCE_S 10.0
#define KEEPALIVE_S 60
#define PACE_S 0.001 /* the pace's resolution */

static int fd;
static unsigned char in[1 << 16];
static size_t inlen;
static unsigned char *out;
static size_t outlen, outcap;
static unsigned char inuse[65536]; /* packet ids awaiting their PUBACK */
static unsigned next_id;
static long sent, acked;
static double last_heard; /* when the broker last said something */
static int connacked;
static int rcvlowat = 1; /* the socket's SO_RCVLOWAT */

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static long long wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *what)
{
    fprintf(stderr, "mqtt_pub_lines: %s\n", what);
    exit(1);
}

static unsigned char *reserve(size_t n)
{
    if (outlen + n > outcap) {
        while (outlen + n > outcap)
            outcap = outcap ? outcap * 2 : 1 << 16;
        if (!(out = realloc(out, outcap)))
            die("out of memory");
    }
    return out + outlen;
}

static void put(const void *p, size_t n)
{
    memcpy(reserve(n), p, n);
    outlen += n;
}

static void put16(unsigned v)
{
    unsigned char b[2] = {(unsigned char)(v >> 8), (unsigned char)v};
    put(b, 2);
}

/* Fixed header: type and flags, then the remaining length as a varint. */
static void header(unsigned char type, size_t rem)
{
    if (rem > 268435455)
        die("packet too large for MQTT");
    unsigned char b[5];
    size_t n = 0;
    b[n++] = type;
    do {
        b[n] = rem & 0x7f;
        rem >>= 7;
        b[n++] |= rem ? 0x80 : 0;
    } while (rem);
    put(b, n);
}

/* Write everything buffered; the socket blocks (send timeout 10 s). */
static void flush(void)
{
    size_t off = 0;
    while (off < outlen) {
        ssize_t n = send(fd, out + off, outlen - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
                    ? "the broker took nothing for 10 s"
                    : "write to the broker failed");
        off += (size_t)n;
    }
    outlen = 0;
}

/* Take in whatever arrived (block: wait for something, up to 10 s) and
 * act on every complete packet; 0 when nothing was there. */
static int receive(int block)
{
    ssize_t n = recv(fd, in + inlen, sizeof in - inlen, block ? 0 : MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        if (block && errno != EINTR && mono() - last_heard >= SILENCE_S)
            die("the broker has been silent for 10 s");
        return 0;
    }
    if (n <= 0)
        die(n < 0 ? "read from the broker failed" : "the broker closed the connection");
    inlen += (size_t)n;
    last_heard = mono();
    size_t at = 0;
    for (;;) {
        size_t i = at + 1, rem = 0;
        int shift = 0, whole = 0;
        while (i < inlen && i - at <= 4) {
            rem |= (size_t)(in[i] & 0x7f) << shift;
            shift += 7;
            if (!(in[i++] & 0x80)) {
                whole = 1;
                break;
            }
        }
        if (!whole && i - at > 4)
            die("bad remaining length from the broker");
        if (!whole || inlen - i < rem)
            break; /* the rest of this packet is still on its way */
        if (i + rem - at > sizeof in)
            die("packet from the broker too large");
        const unsigned char *body = in + i;
        switch (in[at] >> 4) {
        case 2: /* CONNACK */
            if (rem < 2 || body[1] != 0)
                die("the broker refused the connection");
            connacked = 1;
            break;
        case 4: /* PUBACK */
            if (rem >= 2) {
                unsigned id = (unsigned)body[0] << 8 | body[1];
                if (inuse[id]) {
                    inuse[id] = 0;
                    acked++;
                }
            }
            break;
        case 13: /* PINGRESP */ break;
        default: die("unexpected packet from the broker");
        }
        at = i + rem;
    }
    memmove(in, in + at, inlen - at);
    inlen -= at;
    return 1;
}

/* A fresh packet id: one whose PUBACK is not awaited. */
static unsigned take_id(void)
{
    do
        next_id = next_id % 65535 + 1;
    while (inuse[next_id]);
    inuse[next_id] = 1;
    return next_id;
}

static void publish(const char *topic, size_t tlen, const char *line, size_t len, int stamp)
{
    const char *at = stamp ? memmem(line, len, "{ts}", 4) : NULL;
    char ts[24];
    size_t tslen = 0;
    if (at)
        tslen = (size_t)snprintf(ts, sizeof ts, "%lld", wall_us());
    size_t plen = at ? len - 4 + tslen : len;
    header(0x32, 2 + tlen + 2 + plen); /* PUBLISH, QoS 1 */
    put16((unsigned)tlen);
    put(topic, tlen);
    put16(take_id());
    if (at) {
        put(line, (size_t)(at - line));
        put(ts, tslen);
        put(at + 4, len - (size_t)(at - line) - 4);
    } else {
        put(line, len);
    }
    sent++;
}

static void connect_broker(int port)
{
    fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {(time_t)SILENCE_S, 0};
    int one = 1, big = 1 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        exit(1);
    char id[64];
    int idlen = snprintf(id, sizeof id, "pub-lines-%d-%lld", (int)getpid(), wall_us());
    header(0x10, 10 + 2 + (size_t)idlen); /* CONNECT */
    put16(4);
    put("MQTT", 4);
    put("\x04\x02", 2); /* level 4 (3.1.1), clean session */
    put16(KEEPALIVE_S);
    put16((unsigned)idlen);
    put(id, (size_t)idlen);
    flush();
    last_heard = mono();
    while (!connacked) /* receive dies on a refusal or 10 s of silence */
        receive(1);
}

int main(int argc, char **argv)
{
    if (argc < 6)
        return 2;
    int port = atoi(argv[1]);
    const char *topic = argv[2];
    size_t tlen = strlen(topic);
    long inflight = atol(argv[3]);
    double rate = atof(argv[4]);
    int stamp = atoi(argv[5]);
    if (inflight < 1 || inflight > 65535 || tlen > 65535)
        return 2;
    connect_broker(port);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len = 0;
    int eof = 0;
    double t0 = mono(), last_sent = t0;
    printf("T0 %lld\n", wall_us());
    while (!eof || acked < sent) {
        /* as many as the window (and the pace) allows, in one write */
        double now = rate > 0 ? mono() : 0, due = 0;
        while (!eof && sent - acked < inflight) {
            if (rate > 0 && now < (due = t0 + sent / rate))
                break;
            if ((len = getline(&line, &cap, stdin)) <= 0) {
                eof = 1;
                break;
            }
            while (len > 0 && line[len - 1] == '\n')
                line[--len] = '\0';
            if (sent == acked)
                last_heard = mono(); /* the broker owes nothing until now */
            publish(topic, tlen, line, (size_t)len, stamp);
        }
        if (outlen) {
            flush();
            last_sent = mono();
        }
        if (!eof && sent - acked < inflight && rate > 0) {
            /* room in the window: sleep until the next line is due, or an
             * acknowledgement comes; at least 1 ms, so that a fast pace
             * goes out a few lines per write instead of one wakeup each */
            double wait = due - mono();
            if (wait > 1)
                wait = 1;
            if (wait > 0) {
                if (wait < PACE_S)
                    wait = PACE_S;
                struct pollfd p = {fd, POLLIN, 0};
                struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
                if (ppoll(&p, 1, &ts, NULL) > 0)
                    receive(0);
            }
            if (acked < sent && mono() - last_heard >= SILENCE_S)
                die("the broker has been silent for 10 s");
            if (sent == acked && mono() - last_sent > KEEPALIVE_S / 2) {
                header(0xc0, 0); /* PINGREQ: a slow pace keeps the session alive */
                flush();
                last_sent = mono();
            }
        } else if (acked < sent) {
            /* nothing to do until the broker acknowledges. Flat out, wait
             * for half the window (PUBACKs are 4 bytes): each refill then
             * writes ~50 lines, not one or two (a syscall per line costs
             * more than all the rest here). A broker that holds back small
             * writes (Nagle: mosquitto without set_tcp_nodelay) may never
             * fill it: after 2 ms, take what came. */
            if (rate <= 0) {
                long want = sent - acked < inflight / 2 ? sent - acked : inflight / 2;
                int lowat = (int)(want * 4 > (long)inlen ? want * 4 - (long)inlen : 1);
                if (lowat > 1) {
                    struct pollfd p = {fd, POLLIN, 0};
                    struct timespec ts = {0, 2000000};
                    if (lowat != rcvlowat &&
                        setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat) == 0)
                        rcvlowat = lowat;
                    if (ppoll(&p, 1, &ts, NULL) == 0)
                        lowat = 1;
                }
                if (lowat == 1 && rcvlowat != 1 &&
                    setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat) == 0)
                    rcvlowat = 1;
            }
            receive(1);
        }
    }
    printf("%.0f\n", sent / (mono() - t0));
    header(0xe0, 0); /* DISCONNECT */
    flush();
    close(fd);
    free(line);
    free(out);
    return 0;
}
