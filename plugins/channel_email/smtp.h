/* A small SMTP client (RFC 5321) for channel_email: one non-blocking
 * socket driven by poll, TCP_NODELAY, the per-phase timeouts of RFC 5321
 * §4.5.3.2, EHLO (HELO when refused), STARTTLS (OpenSSL, the peer's
 * certificate and name verified), AUTH PLAIN / LOGIN / CRAM-MD5,
 * PIPELINING (RFC 2920), SIZE (RFC 1870), 8BITMIME, SMTPUTF8 (RFC 6531).
 * A session outlives a call: smtpc_send reuses it and opens a new one
 * when it is closed, idle too long, or lost between messages. */
#ifndef CHANNEL_EMAIL_SMTP_H
#define CHANNEL_EMAIL_SMTP_H

#include <baton/baton.h>
#include <stddef.h>

struct smtpc_msg;

typedef struct smtpc_opts {
    const char *host;
    int port;
    const char *helo;        /* NULL: smtpc_local_name(), or the socket's [IP] */
    int starttls;            /* 0 disabled, 1 when offered, 2 required */
    const char *ca_file;     /* NULL: the system's trust store */
    const char *user, *pass; /* user NULL: no AUTH */
    /* milliseconds */
    long connect_ms, greeting_ms, mail_ms, rcpt_ms, data_ms, block_ms, dot_ms, idle_ms;
    /* progress, both may be NULL: wire before a message's text and final
     * dot leave (its envelope alone delivers nothing), with up to
     * wire_ahead - 1 messages that follow it when a mark costs more than a
     * tenth of a message's time (see smtp.c); done once an outcome is final */
    size_t wire_ahead; /* 0 or 1: one message per mark */
    void (*wire)(void *arg, struct smtpc_msg *const *m, size_t n);
    void (*done)(void *arg, struct smtpc_msg *m);
    void *hook_arg;
} smtpc_opts;

/* One transaction: data is the message as format() wrote it (CRLF line
 * ends, not dot-stuffed); out gets its outcome. */
typedef struct smtpc_msg {
    const char *from, *to;
    const char *data;
    size_t len;
    baton_delivery *out;
    const void *tag; /* the caller's */
    int wired;       /* wire was called for it */
    int finished;    /* it has its outcome */
} smtpc_msg;

typedef struct smtpc smtpc;

/* No I/O; o's strings must outlive the client. NULL when out of memory. */
smtpc *smtpc_new(const smtpc_opts *o);
/* Delivers msgs in order on the client's session (opened or reopened as
 * needed) and fills each out. Returns the sessions it opened. */
unsigned smtpc_send(smtpc *c, smtpc_msg *msgs, size_t n);
/* QUIT (within a few seconds) and close; the client can send again. */
void smtpc_close(smtpc *c);
void smtpc_free(smtpc *c);

/* This host's fully qualified name into buf, or "" when it has none (a
 * name without a dot): EHLO then gives the socket's address literal. */
void smtpc_local_name(char *buf, size_t len);

#endif
