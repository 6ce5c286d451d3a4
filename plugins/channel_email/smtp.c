/* The SMTP client of channel_email (see smtp.h).
 *
 * Replies are read in order, each within the time RFC 5321 §4.5.3.2
 * gives its command (the client's options). Without PIPELINING every
 * command waits for its reply; with it, a message's RSET, MAIL, RCPT and
 * DATA go in one write, and its text and final dot in the next, together
 * with the next message's envelope (RFC 2920 §3.1: DATA ends a group).
 *
 * A session that ends (a 421, a timeout, the connection lost) gives each
 * message it held an outcome: one whose final dot was sent but not
 * answered may have been delivered (UNCERTAIN, saying so); one whose text had
 * not all gone is resent on a new session when the old one was lost
 * silently after some progress (a server restarting, a reused session the
 * server had dropped); after a 421 or a timeout the rest are RETRY with
 * the server's words, for the core's backoff. */
#include "smtp.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    EXT_PIPELINING = 1 << 0,
    EXT_SIZE = 1 << 1,
    EXT_8BITMIME = 1 << 2,
    EXT_SMTPUTF8 = 1 << 3,
    EXT_STARTTLS = 1 << 4,
    EXT_AUTH_PLAIN = 1 << 5,
    EXT_AUTH_LOGIN = 1 << 6,
    EXT_AUTH_CRAM = 1 << 7
};

/* why the session ended */
enum { END_NONE, END_LOST, END_TIMEOUT, END_421 };

typedef struct reply {
    int code;
    char text[1024]; /* each line after its code, joined by '\n' */
} reply;

struct smtpc {
    smtpc_opts o;
    char hostport[300];
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    unsigned ext;
    unsigned long long size_max;
    int need_rset; /* the last transaction did not end with a final dot */
    int64_t last_ms;
    char in[4096];
    size_t in_off, in_len;
    char *out;
    size_t out_len, out_cap;
    size_t dot_end; /* in out: just past a final dot not yet flushed (0: none) */
    int dot_sent;   /* the last flush wrote that dot, whatever came after */
    int oom;
    int end;                 /* END_*: why the session ended */
    int perm;                /* opening it failed for good (5xx, STARTTLS missing) */
    const char *phase;       /* the command whose reply was awaited, or NULL */
    smtpc_msg *batch_end;    /* smtpc_send's messages end here */
    int64_t mark_us, msg_us; /* a mark's time, a message's (averages) */
    int64_t last_done_us;
    char why[400];
    /* the session's 530 to MAIL FROM (STARTTLS or AUTH required, RFC 3207
     * 4, RFC 4954 6), given to the call's other messages; "" when none */
    char must[256];
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 1 ready, 0 deadline passed, -1 error */
static int wait_fd(int fd, short ev, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left < 0)
            left = 0;
        struct pollfd p = {.fd = fd, .events = ev};
        int r = poll(&p, 1, left > 1000000000 ? 1000000000 : (int)left);
        if (r > 0)
            return 1;
        if (r == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

static void drop(smtpc *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->ext = 0;
    c->need_rset = 0;
    c->in_off = c->in_len = 0;
    c->out_len = 0;
    c->dot_end = 0;
    c->must[0] = '\0';
}

/* The session is over: why says so in the server's words or ours. */
static void fail(smtpc *c, int end, const char *fmt, ...) BATON_PRINTF(3, 4);
static void fail(smtpc *c, int end, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
    c->end = end;
    drop(c);
}

/* ------------------------------------------------------------------ */
/* Bytes in and out                                                    */
/* ------------------------------------------------------------------ */

/* OpenSSL writes to the socket with write(2), which raises SIGPIPE on a
 * closed connection; this BIO sends with MSG_NOSIGNAL. */
static int nbio_write(BIO *b, const char *p, int n)
{
    BIO_clear_retry_flags(b);
    ssize_t k = send((int)(intptr_t)BIO_get_data(b), p, (size_t)n, MSG_NOSIGNAL);
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)k;
}

static int nbio_read(BIO *b, char *p, int n)
{
    BIO_clear_retry_flags(b);
    ssize_t k = recv((int)(intptr_t)BIO_get_data(b), p, (size_t)n, 0);
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_read(b);
    return (int)k;
}

static long nbio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    return cmd == BIO_CTRL_FLUSH;
}

static BIO_METHOD *nbio;
static void nbio_init(void)
{
    nbio = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "smtpc");
    if (nbio) {
        BIO_meth_set_write(nbio, nbio_write);
        BIO_meth_set_read(nbio, nbio_read);
        BIO_meth_set_ctrl(nbio, nbio_ctrl);
    }
}

static BIO_METHOD *nbio_method(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, nbio_init);
    return nbio;
}

/* More bytes into c->in: 1, or 0 at end of stream, -1 error, -2 time out. */
static int fill(smtpc *c, int64_t deadline)
{
    if (c->in_off) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    for (;;) {
        short ev = POLLIN;
        if (c->ssl) {
            int r = SSL_read(c->ssl, c->in + c->in_len, (int)(sizeof c->in - c->in_len));
            if (r > 0) {
                c->in_len += (size_t)r;
                return 1;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && r == 0))
                return 0;
            if (e == SSL_ERROR_WANT_WRITE)
                ev = POLLOUT;
            else if (e != SSL_ERROR_WANT_READ)
                return -1;
        } else {
            ssize_t k = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, 0);
            if (k > 0) {
                c->in_len += (size_t)k;
                return 1;
            }
            if (k == 0)
                return 0;
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return -1;
        }
        int w = wait_fd(c->fd, ev, deadline);
        if (w <= 0)
            return w == 0 ? -2 : -1;
    }
}

/* Writes all of p; each write must make progress within block_ms. 0, or
 * -1 with errno (ETIMEDOUT when it stalled); *done: the bytes written. */
static int put(smtpc *c, const char *p, size_t n, long block_ms, size_t *done)
{
    int64_t deadline = now_ms() + block_ms;
    *done = 0;
    while (n) {
        size_t k = 0;
        short ev = POLLOUT;
        if (c->ssl) {
            int r = SSL_write(c->ssl, p, n > (1u << 30) ? (1 << 30) : (int)n);
            if (r > 0) {
                k = (size_t)r;
            } else {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ)
                    ev = POLLIN;
                else if (e != SSL_ERROR_WANT_WRITE) {
                    if (!errno)
                        errno = ECONNRESET;
                    return -1;
                }
            }
        } else {
            ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
            if (r > 0)
                k = (size_t)r;
            else if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return -1;
        }
        if (k) {
            p += k;
            n -= k;
            *done += k;
            deadline = now_ms() + block_ms;
            continue;
        }
        int w = wait_fd(c->fd, ev, deadline);
        if (w <= 0) {
            if (w == 0)
                errno = ETIMEDOUT;
            return -1;
        }
    }
    return 0;
}

static void reserve(smtpc *c, size_t more)
{
    if (c->out_len + more + 1 <= c->out_cap)
        return;
    size_t cap = c->out_cap ? c->out_cap : 4096;
    while (cap < c->out_len + more + 1)
        cap *= 2;
    char *p = realloc(c->out, cap);
    if (!p) {
        c->oom = 1;
        return;
    }
    c->out = p;
    c->out_cap = cap;
}

/* A command line appended to the pending output. */
static void cmd(smtpc *c, const char *fmt, ...) BATON_PRINTF(2, 3);
static void cmd(smtpc *c, const char *fmt, ...)
{
    /* formatted once into room for a usual line, again only when longer */
    reserve(c, 512);
    if (c->oom)
        return;
    va_list ap;
    va_start(ap, fmt);
    size_t room = c->out_cap - c->out_len;
    int n = vsnprintf(c->out + c->out_len, room, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n + 3 > room) {
        reserve(c, (size_t)n + 3);
        if (c->oom)
            return;
        va_start(ap, fmt);
        vsnprintf(c->out + c->out_len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    c->out_len += (size_t)n;
    memcpy(c->out + c->out_len, "\r\n", 2);
    c->out_len += 2;
}

static int read_reply(smtpc *c, long ms, reply *r);

/* Sends the pending output. On failure the session is over; a reply the
 * server sent before it closed (a 421) is kept as the reason. */
static int flush(smtpc *c)
{
    if (c->oom) {
        c->oom = 0;
        fail(c, END_LOST, "out of memory");
        return -1;
    }
    if (!c->out_len)
        return 0;
    size_t done = 0;
    int rc = put(c, c->out, c->out_len, c->o.block_ms, &done);
    c->dot_sent = c->dot_end && done >= c->dot_end;
    c->dot_end = 0;
    if (rc == 0) {
        c->out_len = 0;
        return 0;
    }
    int err = errno;
    reply r;
    if (err != ETIMEDOUT && read_reply(c, 0, &r) == 0 && r.code) {
        for (char *p = r.text; *p; p++)
            if (*p == '\n')
                *p = ' ';
        fail(c, r.code == 421 ? END_421 : END_LOST, "%d %s", r.code, r.text);
    } else if (c->end != END_421) {
        if (err == ETIMEDOUT)
            fail(c, END_TIMEOUT, "no progress writing within %ld s", c->o.block_ms / 1000);
        else
            fail(c, END_LOST, "connection lost while writing: %s", strerror(err));
    }
    return -1;
}

/* One line into line (no CRLF): 0, or -1 with the session failed. */
static int get_line(smtpc *c, char *line, size_t cap, int64_t deadline, long ms)
{
    for (;;) {
        char *s = c->in + c->in_off;
        char *nl = memchr(s, '\n', c->in_len - c->in_off);
        if (nl) {
            size_t n = (size_t)(nl - s);
            c->in_off += n + 1;
            if (n && s[n - 1] == '\r')
                n--;
            if (n >= cap)
                n = cap - 1;
            memcpy(line, s, n);
            line[n] = '\0';
            return 0;
        }
        if (c->in_len - c->in_off == sizeof c->in) {
            fail(c, END_LOST, "a reply line longer than %zu bytes", sizeof c->in);
            return -1;
        }
        int r = fill(c, deadline);
        if (r == 1)
            continue;
        if (r == -2)
            fail(c, END_TIMEOUT, "no reply within %ld s", ms / 1000);
        else if (r == 0)
            fail(c, END_LOST, "the server closed the connection");
        else
            fail(c, END_LOST, "connection lost: %s", errno ? strerror(errno) : "TLS error");
        return -1;
    }
}

/* The next reply, within ms: 0 with r filled, or -1 when the session
 * ended (c->why says why; a 421 ends it too, r filled). */
static int read_reply(smtpc *c, long ms, reply *r)
{
    int64_t deadline = now_ms() + ms;
    size_t used = 0;
    r->code = 0;
    r->text[0] = '\0';
    if (c->fd < 0) {
        if (c->end == END_NONE)
            fail(c, END_LOST, "not connected");
        return -1;
    }
    for (int lines = 0;; lines++) {
        char line[1024];
        if (get_line(c, line, sizeof line, deadline, ms) != 0)
            return -1;
        if (!isdigit((unsigned char)line[0]) || !isdigit((unsigned char)line[1]) ||
            !isdigit((unsigned char)line[2]) || (line[3] && line[3] != ' ' && line[3] != '-') ||
            lines > 200) {
            for (char *p = line; *p; p++)
                if ((unsigned char)*p < 32)
                    *p = ' ';
            fail(c, END_LOST, "not an SMTP reply: '%.60s'", line);
            return -1;
        }
        const char *t = line[3] ? line + 4 : "";
        size_t tl = strlen(t);
        if (used + tl + 2 < sizeof r->text) {
            if (used)
                r->text[used++] = '\n';
            memcpy(r->text + used, t, tl + 1);
            used += tl;
        }
        if (line[3] != '-') {
            r->code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
            break;
        }
    }
    for (char *p = r->text; *p; p++)
        if ((unsigned char)*p < 32 && *p != '\n')
            *p = ' ';
    if (r->code == 421) { /* the server closes the session */
        char one[sizeof r->text];
        snprintf(one, sizeof one, "%s", r->text);
        for (char *p = one; *p; p++)
            if (*p == '\n')
                *p = ' ';
        fail(c, END_421, "421 %s", one);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Opening a session                                                   */
/* ------------------------------------------------------------------ */

static int connect_to(smtpc *c)
{
    char port[16];
    snprintf(port, sizeof port, "%d", c->o.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int g = getaddrinfo(c->o.host, port, &hints, &res);
    if (g) {
        fail(c, END_LOST, "connect: %s", gai_strerror(g));
        return -1;
    }
    char err[128] = "no address";
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            snprintf(err, sizeof err, "%s", strerror(errno));
            continue;
        }
        int rc = connect(fd, a->ai_addr, a->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            int w = wait_fd(fd, POLLOUT, now_ms() + c->o.connect_ms);
            int so = 0;
            socklen_t sl = sizeof so;
            if (w == 0)
                so = ETIMEDOUT;
            else if (w < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) != 0)
                so = errno ? errno : EIO;
            rc = so ? -1 : 0;
            errno = so;
        }
        if (rc != 0) {
            snprintf(err, sizeof err, "%s", strerror(errno));
            close(fd);
            continue;
        }
        /* each command and each message goes out at once: no Nagle delay
         * against the server's delayed ACK (40 ms a reply) */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
        c->fd = fd;
        freeaddrinfo(res);
        return 0;
    }
    freeaddrinfo(res);
    fail(c, END_LOST, "connect: %s", err);
    return -1;
}

/* The EHLO name: the setting, else this host's FQDN, else "[address]". */
static void ehlo_name(smtpc *c, char *buf, size_t len)
{
    if (c->o.helo && *c->o.helo) {
        snprintf(buf, len, "%s", c->o.helo);
        return;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "127.0.0.1";
    int v6 = 0;
    if (getsockname(c->fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6) {
            v6 = 1;
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof ip);
        } else {
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof ip);
        }
    }
    snprintf(buf, len, v6 ? "[IPv6:%s]" : "[%s]", ip);
}

static int word_is(const char *s, size_t n, const char *w)
{
    return strlen(w) == n && strncasecmp(s, w, n) == 0;
}

static void parse_ehlo(smtpc *c, const char *text)
{
    c->ext = 0;
    c->size_max = 0;
    const char *line = strchr(text, '\n'); /* the first line is the greeting */
    while (line) {
        line++;
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        size_t kw = strcspn(line, " =\n");
        if (kw > n)
            kw = n;
        if (word_is(line, kw, "PIPELINING"))
            c->ext |= EXT_PIPELINING;
        else if (word_is(line, kw, "8BITMIME"))
            c->ext |= EXT_8BITMIME;
        else if (word_is(line, kw, "SMTPUTF8"))
            c->ext |= EXT_SMTPUTF8;
        else if (word_is(line, kw, "STARTTLS"))
            c->ext |= EXT_STARTTLS;
        else if (word_is(line, kw, "SIZE")) {
            c->ext |= EXT_SIZE;
            c->size_max = kw < n ? strtoull(line + kw + 1, NULL, 10) : 0;
        } else if (word_is(line, kw, "AUTH")) {
            const char *p = line + kw;
            while (p < line + n) {
                while (p < line + n && (*p == ' ' || *p == '='))
                    p++;
                size_t m = strcspn(p, " \n");
                if (word_is(p, m, "PLAIN"))
                    c->ext |= EXT_AUTH_PLAIN;
                else if (word_is(p, m, "LOGIN"))
                    c->ext |= EXT_AUTH_LOGIN;
                else if (word_is(p, m, "CRAM-MD5"))
                    c->ext |= EXT_AUTH_CRAM;
                p += m;
            }
        }
        line = end;
    }
}

/* A refusal while opening: 5xx is for good. */
static void refused_open(smtpc *c, const char *what, const reply *r)
{
    char one[sizeof r->text];
    snprintf(one, sizeof one, "%s", r->text);
    for (char *p = one; *p; p++)
        if (*p == '\n')
            *p = ' ';
    if (r->code >= 500)
        c->perm = 1;
    fail(c, END_LOST, "%s: %d %s", what, r->code, one);
}

static int ehlo(smtpc *c)
{
    char name[300];
    ehlo_name(c, name, sizeof name);
    reply r;
    cmd(c, "EHLO %s", name);
    c->phase = "EHLO";
    if (flush(c) || read_reply(c, c->o.mail_ms, &r))
        return -1;
    if (r.code == 250) {
        parse_ehlo(c, r.text);
        return 0;
    }
    if (r.code < 500) {
        refused_open(c, "EHLO", &r);
        return -1;
    }
    cmd(c, "HELO %s", name); /* a server without ESMTP */
    c->phase = "HELO";
    if (flush(c) || read_reply(c, c->o.mail_ms, &r))
        return -1;
    if (r.code != 250) {
        refused_open(c, "HELO", &r);
        return -1;
    }
    c->ext = 0;
    return 0;
}

static int is_ip(const char *s)
{
    unsigned char b[16];
    return inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

static int starttls(smtpc *c)
{
    reply r;
    cmd(c, "STARTTLS");
    c->phase = "STARTTLS";
    if (flush(c) || read_reply(c, c->o.mail_ms, &r))
        return -1;
    if (r.code != 220) {
        if (c->o.starttls == 2 || r.code >= 500) {
            refused_open(c, "STARTTLS", &r);
            return -1;
        }
        return 0; /* "enabled": go on in clear */
    }
    /* nothing the server sent before the handshake may count after it */
    c->in_off = c->in_len = 0;
    if (!c->ctx) {
        c->ctx = SSL_CTX_new(TLS_client_method());
        if (!c->ctx) {
            fail(c, END_LOST, "STARTTLS: cannot set up TLS");
            return -1;
        }
        SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
        int ok = c->o.ca_file ? SSL_CTX_load_verify_locations(c->ctx, c->o.ca_file, NULL)
                              : SSL_CTX_set_default_verify_paths(c->ctx);
        if (!ok) {
            c->perm = 1;
            fail(c, END_LOST, "STARTTLS: cannot read the CA certificates%s%s",
                 c->o.ca_file ? " of " : "", c->o.ca_file ? c->o.ca_file : "");
            return -1;
        }
    }
    c->ssl = SSL_new(c->ctx);
    BIO *b = c->ssl ? BIO_new(nbio_method()) : NULL;
    if (!b) {
        fail(c, END_LOST, "STARTTLS: out of memory");
        return -1;
    }
    BIO_set_data(b, (void *)(intptr_t)c->fd);
    BIO_set_init(b, 1);
    SSL_set_bio(c->ssl, b, b);
    if (is_ip(c->o.host)) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->o.host);
    } else {
        SSL_set_tlsext_host_name(c->ssl, c->o.host);
        SSL_set1_host(c->ssl, c->o.host);
    }
    int64_t deadline = now_ms() + c->o.mail_ms;
    for (;;) {
        ERR_clear_error();
        int rc = SSL_connect(c->ssl);
        if (rc == 1)
            break;
        int e = SSL_get_error(c->ssl, rc);
        short ev = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        int w = ev ? wait_fd(c->fd, ev, deadline) : -1;
        if (w > 0)
            continue;
        long v = SSL_get_verify_result(c->ssl);
        char why[256];
        if (w == 0)
            snprintf(why, sizeof why, "no handshake within %ld s", c->o.mail_ms / 1000);
        else if (v != X509_V_OK)
            snprintf(why, sizeof why, "the server's certificate: %s",
                     X509_verify_cert_error_string(v));
        else
            ERR_error_string_n(ERR_get_error(), why, sizeof why);
        fail(c, w == 0 ? END_TIMEOUT : END_LOST, "STARTTLS: %s", why);
        return -1;
    }
    return ehlo(c);
}

static char *b64(const void *p, size_t n)
{
    char *s = malloc(4 * ((n + 2) / 3) + 1);
    if (s)
        EVP_EncodeBlock((unsigned char *)s, p, (int)n);
    return s;
}

/* One AUTH exchange step: sends line (not logged anywhere), reads. */
static int auth_step(smtpc *c, const char *line, reply *r)
{
    if (!line) {
        fail(c, END_LOST, "out of memory");
        return -1;
    }
    cmd(c, "%s", line);
    return flush(c) || read_reply(c, c->o.mail_ms, r);
}

static int auth(smtpc *c)
{
    const char *u = c->o.user, *pw = c->o.pass ? c->o.pass : "";
    size_t ul = strlen(u), pl = strlen(pw);
    reply r;
    int rc;
    c->phase = "AUTH";
    /* in clear, CRAM-MD5 keeps the password off the wire */
    unsigned ext = c->ext;
    if (c->ssl || !(ext & EXT_AUTH_CRAM)) {
        ext &= ~(unsigned)EXT_AUTH_CRAM;
    } else {
        ext = EXT_AUTH_CRAM;
    }
    if (ext & EXT_AUTH_PLAIN) {
        char *raw = malloc(ul + pl + 2);
        if (!raw) {
            fail(c, END_LOST, "out of memory");
            return -1;
        }
        raw[0] = '\0';
        memcpy(raw + 1, u, ul);
        raw[ul + 1] = '\0';
        memcpy(raw + ul + 2, pw, pl);
        char *enc = b64(raw, ul + pl + 2);
        free(raw);
        char *line = enc ? malloc(strlen(enc) + 16) : NULL;
        if (line)
            sprintf(line, "AUTH PLAIN %s", enc);
        free(enc);
        rc = auth_step(c, line, &r);
        free(line);
    } else if (ext & EXT_AUTH_LOGIN) {
        rc = auth_step(c, "AUTH LOGIN", &r);
        if (!rc && r.code == 334) {
            char *e = b64(u, ul);
            rc = auth_step(c, e, &r);
            free(e);
        }
        if (!rc && r.code == 334) {
            char *e = b64(pw, pl);
            rc = auth_step(c, e, &r);
            free(e);
        }
    } else if (ext & EXT_AUTH_CRAM) {
        rc = auth_step(c, "AUTH CRAM-MD5", &r);
        if (!rc && r.code == 334) {
            unsigned char chal[1024];
            size_t tl = strlen(r.text);
            int n = tl < 1300 ? EVP_DecodeBlock(chal, (unsigned char *)r.text, (int)tl) : -1;
            if (n < 0) {
                fail(c, END_LOST, "AUTH: a CRAM-MD5 challenge that is not base64");
                return -1;
            }
            while (tl && r.text[tl - 1] == '=' && n > 0) {
                tl--;
                n--;
            }
            unsigned char mac[EVP_MAX_MD_SIZE];
            unsigned ml = 0;
            HMAC(EVP_md5(), pw, (int)pl, chal, (size_t)n, mac, &ml);
            char *resp = malloc(ul + 2 + 2 * ml + 1);
            char *e = NULL;
            if (resp) {
                memcpy(resp, u, ul);
                resp[ul] = ' ';
                for (unsigned i = 0; i < ml; i++)
                    sprintf(resp + ul + 1 + 2 * i, "%02x", mac[i]);
                e = b64(resp, ul + 1 + 2 * ml);
                free(resp);
            }
            rc = auth_step(c, e, &r);
            free(e);
        }
    } else {
        return 0; /* no mechanism we know: the server decides at MAIL */
    }
    if (rc)
        return -1;
    if (r.code != 235) {
        refused_open(c, "AUTH", &r);
        return -1;
    }
    return 0;
}

static int open_session(smtpc *c)
{
    reply r;
    c->end = END_NONE;
    c->perm = 0;
    c->phase = NULL;
    drop(c);
    if (connect_to(c))
        return -1;
    c->phase = "greeting";
    if (read_reply(c, c->o.greeting_ms, &r))
        return -1;
    if (r.code != 220) {
        refused_open(c, "greeting", &r);
        return -1;
    }
    if (ehlo(c))
        return -1;
    if (c->o.starttls && !(c->ext & EXT_STARTTLS) && c->o.starttls == 2) {
        c->perm = 1; /* a setting to fix, not a server to wait for */
        fail(c, END_LOST, "does not offer STARTTLS (starttls = \"required\")");
        return -1;
    }
    if (c->o.starttls && (c->ext & EXT_STARTTLS) && starttls(c))
        return -1;
    if (c->o.user && auth(c))
        return -1;
    c->phase = NULL;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Transactions                                                        */
/* ------------------------------------------------------------------ */

/* m's outcome is final: the host hears of it now */
static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Marks m on the wire (the host commits it before returning). A mark is
 * a commit. By default each message gets its own: a crash leaves one
 * message uncertain per session at most. With wire_ahead > 1, against a
 * server that answers in less than ten marks' time, the next messages of
 * the call are marked with it, as many as keep the marks within a tenth
 * of the sending time (wire_ahead at most: what a crash can then leave
 * uncertain on this session, sent or not). */
static void mark(smtpc *c, smtpc_msg *m)
{
    if (!c->o.wire) {
        m->wired = 1;
        return;
    }
    size_t k = 1;
    if (c->msg_us > 0 && c->mark_us > 0) {
        k = (size_t)(10 * c->mark_us / c->msg_us) + 1;
        size_t cap = c->o.wire_ahead > 1 ? c->o.wire_ahead : 1;
        if (k > cap)
            k = cap;
        if (k > 16)
            k = 16;
    }
    smtpc_msg *list[16];
    size_t n = 0;
    for (smtpc_msg *x = m; x < c->batch_end && n < k; x++)
        if (!x->wired && !x->finished)
            list[n++] = x;
    int64_t t = now_us();
    c->o.wire(c->o.hook_arg, list, n);
    t = now_us() - t;
    c->mark_us = c->mark_us ? (3 * c->mark_us + t) / 4 : t;
    for (size_t i = 0; i < n; i++)
        list[i]->wired = 1;
}

static void done(smtpc *c, smtpc_msg *m)
{
    m->finished = 1;
    int64_t t = now_us(); /* the time a message takes, between outcomes */
    if (c->last_done_us) {
        int64_t d = t - c->last_done_us;
        c->msg_us = c->msg_us ? (3 * c->msg_us + d) / 4 : d;
    }
    c->last_done_us = t;
    if (c->o.done)
        c->o.done(c->o.hook_arg, m);
}

static void set_reason(smtpc *c, smtpc_msg *m, baton_status st, const char *fmt, ...)
    BATON_PRINTF(4, 5);
static void set_reason(smtpc *c, smtpc_msg *m, baton_status st, const char *fmt, ...)
{
    baton_delivery *d = m->out;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->reason, sizeof d->reason, fmt, ap);
    va_end(ap);
    for (char *p = d->reason; *p; p++)
        if ((unsigned char)*p < 32)
            *p = ' ';
    d->status = st;
    d->provider_id[0] = '\0';
    done(c, m);
}

static void accepted(smtpc *c, smtpc_msg *m, const reply *r)
{
    baton_delivery *d = m->out;
    d->status = BATON_OK;
    d->reason[0] = '\0';
    /* the id the provider's bounces and webhooks name the message by:
     * "queued as ID" (Postfix, SendGrid), "id=ID" (Exim), "Ok ID" (Amazon
     * SES's SMTP interface: its mail.messageId); else the whole text */
    const char *q = strstr(r->text, "queued as "), *x = strstr(r->text, "id=");
    const char *id = q ? q + 10 : x ? x + 3 : r->text;
    if (!q && !x && !strncasecmp(r->text, "Ok ", 3) && r->text[3] && !strpbrk(r->text + 3, " \n"))
        id = r->text + 3;
    size_t n = strcspn(id, "\n");
    if (x && !q)
        n = strcspn(id, " \n");
    if (n >= sizeof d->provider_id)
        n = sizeof d->provider_id - 1;
    memcpy(d->provider_id, id, n);
    d->provider_id[n] = '\0';
    while (n && d->provider_id[n - 1] == ' ')
        d->provider_id[--n] = '\0';
    done(c, m);
}

/* The server's no: "RCPT TO: 550 5.1.1 ...", 5xx for good, else retried.
 * A 530 to MAIL FROM is the session's answer to every transaction: the
 * others of this call are failed with it, unsent (each would have cost
 * three refused commands, and Postfix ends a session after 20 errors:
 * each of its 421s made another session and another try). */
static void refused(smtpc *c, smtpc_msg *m, const char *what, const reply *r)
{
    set_reason(c, m, r->code >= 500 ? BATON_ERROR : BATON_RETRY, "%s: %d %s", what, r->code,
               r->text);
    if (r->code == 530 && !strcmp(what, "MAIL FROM"))
        snprintf(c->must, sizeof c->must, "%s", m->out->reason);
}

static int has_8bit(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return 1;
    return 0;
}

/* What this session cannot carry, refused before a byte of it is sent:
 * 1 with out filled, or 0. */
static int cannot_send(smtpc *c, smtpc_msg *m)
{
    if (c->must[0]) {
        set_reason(c, m, BATON_ERROR, "%s", c->must);
        return 1;
    }
    if ((has_8bit(m->from, strlen(m->from)) || has_8bit(m->to, strlen(m->to))) &&
        !(c->ext & EXT_SMTPUTF8)) {
        int rcpt = has_8bit(m->to, strlen(m->to));
        set_reason(c, m, BATON_ERROR,
                   "%s: <%s> is an internationalised address and SMTP %s does not offer "
                   "SMTPUTF8",
                   rcpt ? "RCPT TO" : "MAIL FROM", rcpt ? m->to : m->from, c->hostport);
        return 1;
    }
    if ((c->ext & EXT_SIZE) && c->size_max && m->len > c->size_max) {
        set_reason(c, m, BATON_ERROR,
                   "MAIL FROM: the message is %zu bytes, over the %llu of SMTP %s (SIZE)", m->len,
                   c->size_max, c->hostport);
        return 1;
    }
    return 0;
}

static size_t next_to_send(smtpc *c, smtpc_msg *m, size_t i, size_t n, int *progress)
{
    for (; i < n; i++) {
        if (!cannot_send(c, &m[i]))
            return i;
        *progress = 1;
    }
    return n;
}

static void envelope(smtpc *c, const smtpc_msg *m, int mail_only)
{
    int utf8 = has_8bit(m->from, strlen(m->from)) || has_8bit(m->to, strlen(m->to));
    int eight = (c->ext & EXT_8BITMIME) && has_8bit(m->data, m->len);
    char size[32] = "";
    if (c->ext & EXT_SIZE)
        snprintf(size, sizeof size, " SIZE=%zu", m->len);
    cmd(c, "MAIL FROM:<%s>%s%s%s", m->from, size, eight ? " BODY=8BITMIME" : "",
        utf8 ? " SMTPUTF8" : "");
    if (mail_only)
        return;
    cmd(c, "RCPT TO:<%s>", m->to);
    cmd(c, "DATA");
}

/* The message, dot-stuffed (RFC 5321 §4.5.2), and its final dot. The
 * host marks it on the wire first: an envelope without its text delivers
 * nothing (the server drops the transaction with the connection), so a
 * crash leaves at most this one message per session uncertain, though
 * the next envelope goes out with this text. */
static void body(smtpc *c, smtpc_msg *m)
{
    if (!m->wired)
        mark(c, m);
    /* a line at a time: its bytes copied at once (memchr finds its end) */
    const char *p = m->data, *end = m->data + m->len;
    int bol = 1;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        reserve(c, n + 8); /* its dot, CRLF, and the final ".\r\n" */
        if (c->oom)
            return;
        char *o = c->out + c->out_len;
        if (n && *p == '.')
            *o++ = '.';
        memcpy(o, p, n);
        o += n;
        if (nl) {
            if (!n || p[n - 1] != '\r')
                *o++ = '\r'; /* a bare LF goes as CRLF */
            *o++ = '\n';
            p = nl + 1;
        } else {
            p = end;
        }
        bol = nl != NULL;
        c->out_len = (size_t)(o - c->out);
    }
    reserve(c, 8);
    if (c->oom)
        return;
    char *o = c->out + c->out_len;
    if (!bol) {
        *o++ = '\r';
        *o++ = '\n';
    }
    memcpy(o, ".\r\n", 3);
    c->out_len = (size_t)(o + 3 - c->out);
    c->dot_end = c->out_len;
}

/* The dot was sent, no reply came (a timeout, the connection lost, a
 * line that is no reply): it may have been delivered (RFC 5321 §6.1), so
 * it is uncertain, never failed, and not sent again unless the channel
 * says so (resend_uncertain). A 421 is the server's no. */
static void on_the_wire(smtpc *c, smtpc_msg *m, const reply *r)
{
    if (c->end == END_421 && r)
        refused(c, m, "DATA", r);
    else if (c->end == END_421) /* read when a write failed */
        set_reason(c, m, BATON_RETRY, "DATA: %s", c->why);
    else
        set_reason(c, m, BATON_UNCERTAIN,
                   "DATA: %s after the final dot (it may have been delivered)", c->why);
}

/* Without PIPELINING: each command waits for its reply. Returns the
 * first message without an outcome (n when all have one). */
static size_t run_serial(smtpc *c, smtpc_msg *m, size_t i, size_t n, int *progress)
{
    reply r;
    for (; (i = next_to_send(c, m, i, n, progress)) < n; i++) {
        smtpc_msg *x = &m[i];
        if (c->need_rset) {
            c->phase = "RSET";
            cmd(c, "RSET");
            if (flush(c) || read_reply(c, c->o.mail_ms, &r))
                return i;
            c->need_rset = 0;
        }
        c->phase = "MAIL FROM";
        envelope(c, x, 1);
        if (flush(c) || read_reply(c, c->o.mail_ms, &r))
            return i;
        c->need_rset = 1;
        if (r.code / 100 != 2) {
            refused(c, x, "MAIL FROM", &r);
            *progress = 1;
            continue;
        }
        c->phase = "RCPT TO";
        cmd(c, "RCPT TO:<%s>", x->to);
        if (flush(c) || read_reply(c, c->o.rcpt_ms, &r))
            return i;
        if (r.code / 100 != 2) {
            refused(c, x, "RCPT TO", &r);
            *progress = 1;
            continue;
        }
        c->phase = "DATA";
        cmd(c, "DATA");
        if (flush(c) || read_reply(c, c->o.data_ms, &r))
            return i;
        if (r.code != 354) {
            refused(c, x, "DATA", &r);
            *progress = 1;
            continue;
        }
        body(c, x);
        if (flush(c))
            return i;
        c->phase = NULL;
        *progress = 1;
        c->need_rset = 0;
        if (read_reply(c, c->o.dot_ms, &r)) {
            on_the_wire(c, x, &r);
            return i + 1;
        }
        if (r.code / 100 == 2)
            accepted(c, x, &r);
        else
            refused(c, x, "DATA", &r);
    }
    c->phase = NULL;
    return n;
}

/* With PIPELINING: [RSET] MAIL RCPT DATA in one write; the text, its dot
 * and the next envelope in the next. */
static size_t run_pipelined(smtpc *c, smtpc_msg *m, size_t i, size_t n, int *progress)
{
    size_t cur = next_to_send(c, m, i, n, progress);
    size_t dot = n; /* the message whose final dot awaits its reply */
    int empty_dot = 0, rset = 0;
    if (cur < n) {
        if ((rset = c->need_rset))
            cmd(c, "RSET");
        envelope(c, &m[cur], 0);
    }
    while (cur < n || dot < n) {
        c->phase = dot < n ? "DATA" : "MAIL FROM";
        if (flush(c)) {
            /* the dot all went, the next envelope did not: it may have
             * been delivered; else it was not */
            if (dot < n && c->dot_sent && !empty_dot) {
                on_the_wire(c, &m[dot], NULL);
                *progress = 1;
                return cur;
            }
            return dot < cur ? dot : cur;
        }
        reply r;
        if (dot < n) {
            c->phase = NULL;
            *progress = 1;
            int rc = read_reply(c, c->o.dot_ms, &r);
            if (rc && !empty_dot)
                on_the_wire(c, &m[dot], &r);
            else if (!empty_dot && r.code / 100 == 2)
                accepted(c, &m[dot], &r);
            else if (!empty_dot)
                refused(c, &m[dot], "DATA", &r);
            dot = n;
            if (rc)
                return cur;
        }
        if (cur >= n)
            break;
        smtpc_msg *x = &m[cur];
        reply rm, rr, rd;
        c->phase = "RSET";
        if (rset && read_reply(c, c->o.mail_ms, &r))
            return cur;
        c->phase = "MAIL FROM";
        if (read_reply(c, c->o.mail_ms, &rm))
            return cur;
        c->phase = "RCPT TO";
        if (read_reply(c, c->o.rcpt_ms, &rr))
            return cur;
        c->phase = "DATA";
        if (read_reply(c, c->o.data_ms, &rd))
            return cur;
        c->need_rset = 0;
        empty_dot = 0;
        if (rm.code / 100 != 2)
            refused(c, x, "MAIL FROM", &rm);
        else if (rr.code / 100 != 2)
            refused(c, x, "RCPT TO", &rr);
        else if (rd.code != 354)
            refused(c, x, "DATA", &rd);
        if (rm.code / 100 == 2 && rr.code / 100 == 2 && rd.code == 354) {
            body(c, x);
            dot = cur;
        } else {
            *progress = 1;
            c->need_rset = 1;
            if (rd.code == 354) { /* DATA taken with no recipient: end it empty */
                cmd(c, ".");
                dot = cur;
                empty_dot = 1;
            }
        }
        cur = next_to_send(c, m, cur + 1, n, progress);
        if (cur < n) {
            if ((rset = c->need_rset))
                cmd(c, "RSET");
            envelope(c, &m[cur], 0);
        }
    }
    c->phase = NULL;
    return n;
}

/* ------------------------------------------------------------------ */
/* API                                                                 */
/* ------------------------------------------------------------------ */

smtpc *smtpc_new(const smtpc_opts *o)
{
    smtpc *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->o = *o;
    c->fd = -1;
    snprintf(c->hostport, sizeof c->hostport, "%.255s:%d", o->host, o->port);
    return c;
}

/* The server spoke or hung up while the session was idle (a 421 on its
 * idle timeout, a restart): the session cannot be used. */
static int stale(smtpc *c)
{
    if (c->ssl && SSL_pending(c->ssl))
        return 1;
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    return poll(&p, 1, 0) != 0;
}

unsigned smtpc_send(smtpc *c, smtpc_msg *m, size_t n)
{
    unsigned opened = 0;
    c->batch_end = m + n;
    c->last_done_us = 0;
    c->must[0] = '\0'; /* each call asks again */
    int reused = 0;
    if (c->fd >= 0) {
        if (stale(c))
            drop(c);
        else if (now_ms() - c->last_ms > c->o.idle_ms)
            smtpc_close(c);
        else
            reused = 1;
    }
    size_t i = 0;
    while (i < n) {
        if (c->fd < 0) {
            if (open_session(c)) {
                baton_status st = c->perm ? BATON_ERROR : BATON_RETRY;
                for (; i < n; i++)
                    set_reason(c, &m[i], st, "SMTP %s: %s", c->hostport, c->why);
                break;
            }
            opened++;
            reused = 0;
        }
        int progress = 0;
        c->end = END_NONE;
        i = (c->ext & EXT_PIPELINING) ? run_pipelined(c, m, i, n, &progress)
                                      : run_serial(c, m, i, n, &progress);
        if (i >= n)
            break;
        /* the session ended before m[i] had its outcome */
        if (c->end == END_LOST && (progress || reused)) {
            reused = 0;
            continue; /* lost quietly after some progress: a new one */
        }
        if (c->phase) {
            set_reason(c, &m[i], BATON_RETRY, "%s: %s", c->phase, c->why);
            i++;
        }
        for (; i < n; i++)
            set_reason(c, &m[i], BATON_RETRY, "SMTP %s: %s (the session ended before this message)",
                       c->hostport, c->why);
    }
    if (c->fd >= 0 && c->oom)
        fail(c, END_LOST, "out of memory");
    c->last_ms = now_ms();
    return opened;
}

void smtpc_close(smtpc *c)
{
    if (c->fd < 0)
        return;
    long ms = c->o.mail_ms < 5000 ? c->o.mail_ms : 5000;
    long block = c->o.block_ms;
    c->o.block_ms = ms;
    c->out_len = 0;
    cmd(c, "QUIT");
    reply r;
    if (flush(c) == 0)
        read_reply(c, ms, &r);
    c->o.block_ms = block;
    drop(c);
}

void smtpc_free(smtpc *c)
{
    if (!c)
        return;
    drop(c);
    if (c->ctx)
        SSL_CTX_free(c->ctx);
    free(c->out);
    free(c);
}

void smtpc_local_name(char *buf, size_t len)
{
    char host[256];
    buf[0] = '\0';
    if (gethostname(host, sizeof host) != 0)
        return;
    host[sizeof host - 1] = '\0';
    struct addrinfo hints = {.ai_flags = AI_CANONNAME, .ai_socktype = SOCK_STREAM}, *res;
    const char *name = host;
    if (getaddrinfo(host, NULL, &hints, &res) == 0) {
        if (res->ai_canonname && strchr(res->ai_canonname, '.'))
            name = res->ai_canonname;
        if (strchr(name, '.'))
            snprintf(buf, len, "%s", name);
        freeaddrinfo(res);
        return;
    }
    if (strchr(host, '.'))
        snprintf(buf, len, "%s", host);
}
