/* channel_email — email over SMTP, with the client of smtp.c.
 *
 * format() writes the whole RFC 5322 message, CRLF line ends: From, To,
 * Subject (RFC 2047 "B" words when not plain ASCII), Date (from the
 * message's time), Message-ID (its idempotency key, baton_message_id: a
 * retry carries the same id, a bounce quoting it names the delivery),
 * MIME-Version, List-Unsubscribe (and
 * List-Unsubscribe-Post for an https link), X-Baton-Key, then the parts:
 * text and html as multipart/alternative, or the one that is set, each
 * UTF-8 in quoted-printable.
 *
 * deliver() sends a batch on the worker's SMTP session, kept open from
 * one batch to the next (worker_open/worker_close), pipelined when the
 * server offers PIPELINING, with STARTTLS and AUTH as configured. Per
 * message: 2xx OK (the server's reply text as provider id: "queued as
 * ..."), 4xx or no reply (connection refused, dropped, timed out) RETRY,
 * 5xx ERROR, each with the server's reply as its reason. */
#include <baton/baton.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smtp.h"

static const char *const starttls_choices[] = {"disabled", "enabled", "required", NULL};

static const baton_config_key keys[] = {
    {.name = "host",
     .type = BATON_CFG_STRING,
     .default_value = "127.0.0.1",
     .help = "the SMTP server (submission MTA)"},
    {.name = "port",
     .type = BATON_CFG_INT,
     .default_value = "25",
     .has_range = 1,
     .min = 1,
     .max = 65535},
    {.name = "from",
     .type = BATON_CFG_STRING,
     .required = 1,
     .help = "the From header: \"Shop <news@example.com>\"; its address is the envelope sender"},
    {.name = "reply_to", .type = BATON_CFG_STRING, .help = "a Reply-To header"},
    {.name = "starttls",
     .type = BATON_CFG_ENUM,
     .default_value = "disabled",
     .choices = starttls_choices,
     .help = "enabled: when the server offers it; required: refuse to send in clear"},
    {.name = "username",
     .type = BATON_CFG_STRING,
     .help = "AUTH (PLAIN, LOGIN or CRAM-MD5, as the server offers) with this user"},
    {.name = "password", .type = BATON_CFG_STRING, .help = "AUTH password; use \"${env:NAME}\""},
    {.name = "helo",
     .type = BATON_CFG_STRING,
     .help = "the name given in EHLO (default: this host's fully qualified name, or its "
             "address as [IP] when it has none)"},
    {.name = "tls_ca_file",
     .type = BATON_CFG_PATH,
     .help = "STARTTLS: the CA certificates (PEM) the server's certificate must chain to "
             "(default: the system's); its name is checked against host"},
    {.name = "timeout",
     .type = BATON_CFG_DURATION,
     .help = "when set, the time limit of every SMTP step (connect, each reply, each write), in "
             "place of the settings below"},
    {.name = "connect_timeout",
     .type = BATON_CFG_DURATION,
     .default_value = "30s",
     .help = "connecting to the server"},
    {.name = "greeting_timeout",
     .type = BATON_CFG_DURATION,
     .default_value = "5m",
     .help = "the server's 220 greeting (RFC 5321 4.5.3.2)"},
    {.name = "mail_timeout",
     .type = BATON_CFG_DURATION,
     .default_value = "5m",
     .help = "the reply to MAIL FROM (and to EHLO, STARTTLS, AUTH, RSET)"},
    {.name = "rcpt_timeout",
     .type = BATON_CFG_DURATION,
     .default_value = "5m",
     .help = "the reply to RCPT TO"},
    {.name = "data_timeout",
     .type = BATON_CFG_DURATION,
     .default_value = "2m",
     .help = "the 354 reply to DATA"},
    {.name = "block_timeout",
     .type = BATON_CFG_DURATION,
     .default_value = "3m",
     .help = "each write of a message making progress"},
    {.name = "dot_timeout",
     .type = BATON_CFG_DURATION,
     .default_value = "10m",
     .help = "the reply after the message's final dot; a message without one may have been "
             "delivered: it is recorded 'uncertain' and not sent again (unless resend_uncertain "
             "= true)"},
    {.name = "wire_ahead",
     .type = BATON_CFG_INT,
     .default_value = "1",
     .has_range = 1,
     .min = 1,
     .max = 16,
     .help = "how many messages one progress commit may mark on the wire ahead of their text: "
             "1 leaves a kill -9 at most one message uncertain per connection; up to 16 lets a "
             "server that answers faster than a commit take more, each a message a crash can "
             "leave uncertain though it was never sent"},
    {.name = "idle_timeout",
     .type = BATON_CFG_DURATION,
     .default_value = "60s",
     .help = "a worker's session idle for longer is closed (QUIT); the next batch opens another"},
    {.name = "list_unsubscribe",
     .type = BATON_CFG_TEMPLATE,
     .help = "the List-Unsubscribe header, a template over the row plus key, profile_id and "
             "to: \"<mailto:unsub@example.com?subject={{ profile_id }}>, "
             "<https://example.com/u/{{ profile_id }}>\""},
    {.name = "message_id_domain",
     .type = BATON_CFG_STRING,
     .help = "the right side of Message-ID (default: the From address's domain)"},
    {0}};

typedef struct email {
    baton_instance *inst;
    const baton_host *h;
    char host[256];
    int port;
    char *from_header; /* encoded as it goes on the wire */
    char from_addr[256];
    const char *reply_to;
    char helo[256];
    smtpc_opts smtp;
    baton_template *unsub;
    const char *unsub_text; /* when templates are not available and it has no {{ */
    char domain[256];
    baton_counter *c_sent, *c_failed, *c_sessions;
} email;

/* ------------------------------------------------------------------ */
/* Encodings                                                           */
/* ------------------------------------------------------------------ */

static int plain_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 32 || (unsigned char)*s > 126)
            return 0;
    return 1;
}

/* RFC 2047: UTF-8 "B" encoded words cut between characters, folded so
 * that no line passes 76 characters; `used` is what the line already
 * holds ("Subject: "). */
static void put_header_text(const baton_host *h, baton_buf *out, const char *s, size_t used)
{
    if (plain_ascii(s) && strlen(s) < 900) {
        h->buf_append(out, s, strlen(s));
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), i = 0;
    while (i < n) {
        /* 12 characters of wrapper; 4 of base64 carry 3 bytes */
        size_t room = used + 12 < 76 ? (76 - used - 12) / 4 * 3 : 3;
        size_t take = n - i < room ? n - i : room;
        while (take < n - i && take > 0 && (p[i + take] & 0xC0) == 0x80)
            take--; /* never split a UTF-8 sequence */
        if (i)
            h->buf_append(out, "\r\n ", 3);
        h->buf_append(out, "=?UTF-8?B?", 10);
        h->base64(out, p + i, take);
        h->buf_append(out, "?=", 2);
        i += take;
        used = 1;
    }
}

/* Whether the byte at q stands for itself in quoted-printable: printable
 * but '=', or a space or tab that does not end its line. */
static int qp_plain(const unsigned char *q)
{
    if (*q >= 33 && *q <= 126)
        return *q != '=';
    if (*q != ' ' && *q != '\t')
        return 0;
    return !(q[1] == '\0' || q[1] == '\n' || (q[1] == '\r' && q[2] == '\n'));
}

/* Quoted-printable (RFC 2045 §6.7): lines of at most 76 characters, soft
 * breaks "=", CRLF for every line end of the input. Encoded into a chunk
 * on the stack, runs of plain bytes copied at once, appended to out a
 * chunk at a time (not a host call per character: a 5 KB text is 5,000
 * of them). */
static void put_qp(const baton_host *h, baton_buf *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char chunk[2048];
    size_t n = 0, col = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (n + 8 >= sizeof chunk) { /* room for "=\r\n=XX" and a run of one byte at least */
            h->buf_append(out, chunk, n);
            n = 0;
        }
        int plain = qp_plain(p);
        if (plain && col < 75) {
            /* as many as the line and the chunk take */
            size_t room = 75 - col < sizeof chunk - 8 - n ? 75 - col : sizeof chunk - 8 - n;
            const unsigned char *q = p + 1;
            while ((size_t)(q - p) < room && qp_plain(q))
                q++;
            memcpy(chunk + n, p, (size_t)(q - p));
            n += (size_t)(q - p);
            col += (size_t)(q - p);
            p = q - 1;
            continue;
        }
        if (*p == '\r' && p[1] == '\n')
            continue;
        if (*p == '\n') {
            chunk[n++] = '\r';
            chunk[n++] = '\n';
            col = 0;
            continue;
        }
        size_t len = plain ? 1 : 3;
        if (col + len > 75) {
            memcpy(chunk + n, "=\r\n", 3);
            n += 3;
            col = 0;
        }
        if (plain) {
            chunk[n++] = (char)*p;
        } else {
            chunk[n++] = '=';
            chunk[n++] = hex[*p >> 4];
            chunk[n++] = hex[*p & 15];
        }
        col += len;
    }
    chunk[n++] = '\r';
    chunk[n++] = '\n';
    h->buf_append(out, chunk, n);
}

static uint64_t fnv1a(const char *s, uint64_t seed)
{
    uint64_t x = 1469598103934665603ULL ^ seed;
    for (; *s; s++) {
        x ^= (unsigned char)*s;
        x *= 1099511628211ULL;
    }
    return x;
}

static int has_crlf(const char *s)
{
    return strchr(s, '\r') || strchr(s, '\n');
}

/* a, b and c appended: a header line without a printf */
static void put3(const baton_host *h, baton_buf *out, const char *a, const char *b, const char *c)
{
    h->buf_append(out, a, strlen(a));
    h->buf_append(out, b, strlen(b));
    h->buf_append(out, c, strlen(c));
}

/* v in n decimal digits, zero-padded */
static void digits(char *p, int v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
}

/* "Name <addr>" or "addr": the address, and the display name. */
static void split_mailbox(const char *s, char *addr, size_t alen, char *name, size_t nlen)
{
    const char *lt = strrchr(s, '<'), *gt = lt ? strchr(lt, '>') : NULL;
    if (lt && gt) {
        snprintf(addr, alen, "%.*s", (int)(gt - lt - 1), lt + 1);
        size_t n = (size_t)(lt - s);
        while (n && s[n - 1] == ' ')
            n--;
        if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
            s++;
            n -= 2;
        }
        snprintf(name, nlen, "%.*s", (int)n, s);
    } else {
        snprintf(addr, alen, "%s", s);
        name[0] = '\0';
    }
}

/* ------------------------------------------------------------------ */
/* format                                                              */
/* ------------------------------------------------------------------ */

/* What the channel's own templates see: the row, plus key, profile_id
 * and to (a campaign's row holds only the columns its send uses). */
static baton_record *context(const baton_host *h, const baton_message *m)
{
    baton_record *r = h->record_new();
    baton_value v;
    for (size_t i = 0; m->row && i < h->record_count(m->row); i++) {
        const char *name = h->record_name(m->row, i);
        if (h->record_get(m->row, name, &v) == 0)
            h->record_set(r, name, &v);
    }
    const char *names[] = {"key", "profile_id", "to"};
    const char *vals[] = {m->key, m->profile_id, m->recipient};
    for (int i = 0; i < 3; i++) {
        if (!vals[i])
            continue;
        v.type = BATON_T_STRING;
        v.v.s.ptr = vals[i];
        v.v.s.len = strlen(vals[i]);
        h->record_set(r, names[i], &v);
    }
    return r;
}

static int email_format(void *state, const baton_message *m, baton_buf *out, char *err,
                        size_t errlen)
{
    email *e = state;
    const baton_host *h = e->h;
    const char *subject = baton_message_part(m, "subject");
    const char *text = baton_message_part(m, "text");
    const char *html = baton_message_part(m, "html");
    if (text && !*text)
        text = NULL;
    if (html && !*html)
        html = NULL;
    if (!m->recipient || !*m->recipient || has_crlf(m->recipient) ||
        strpbrk(m->recipient, "<>\" ,") || !strchr(m->recipient, '@')) {
        snprintf(err, errlen, "not an email address: '%s'", m->recipient ? m->recipient : "");
        return -1;
    }
    if (!text && !html) {
        snprintf(err, errlen, "the message has neither a text nor an html part");
        return -1;
    }
    put3(h, out, "From: ", e->from_header, "\r\n");
    put3(h, out, "To: <", m->recipient, ">\r\n");
    if (e->reply_to)
        put3(h, out, "Reply-To: ", e->reply_to, "\r\n");
    /* a subject is one line: fold any line break a template put there */
    char *subj = strdup(subject ? subject : "");
    for (char *p = subj; *p; p++)
        if (*p == '\r' || *p == '\n' || *p == '\t')
            *p = ' ';
    h->buf_append(out, "Subject: ", 9);
    put_header_text(h, out, subj, 9);
    h->buf_append(out, "\r\n", 2);
    free(subj);
    time_t t = (time_t)m->time;
    struct tm tm;
    gmtime_r(&t, &tm);
    static const char *const wd[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const mo[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    /* "Date: Mon, 23 Nov 2026 10:00:00 +0000" (RFC 5322 §3.3) */
    char date[40] = "Date: ";
    memcpy(date + 6, wd[tm.tm_wday], 3);
    memcpy(date + 9, ", ", 2);
    digits(date + 11, tm.tm_mday, 2);
    date[13] = ' ';
    memcpy(date + 14, mo[tm.tm_mon], 3);
    date[17] = ' ';
    digits(date + 18, tm.tm_year + 1900, 4);
    date[22] = ' ';
    digits(date + 23, tm.tm_hour, 2);
    date[25] = ':';
    digits(date + 26, tm.tm_min, 2);
    date[28] = ':';
    digits(date + 29, tm.tm_sec, 2);
    memcpy(date + 31, " +0000\r\n", 8);
    h->buf_append(out, date, 39);
    /* the id names the delivery, so a bounce quoting it finds it; a key
     * too long for one gets a hash of it. One longer than a 78-character
     * line goes on a continuation line (RFC 5322 §2.1.1 SHOULD; folding
     * whitespace before the msg-id, §3.6.4): a reader unfolds it */
    uint64_t a = fnv1a(m->key, 0), b = fnv1a(m->key, 0x9e3779b97f4a7c15ULL);
    char mid[900];
    size_t midlen = baton_message_id(m->key, e->domain, mid, sizeof mid);
    if (midlen)
        put3(h, out,
             sizeof "Message-ID: <>" - 1 + midlen > 78 ? "Message-ID:\r\n <" : "Message-ID: <", mid,
             ">\r\n");
    else
        h->buf_printf(out, "Message-ID: <%016llx.%016llx@%s>\r\n", (unsigned long long)a,
                      (unsigned long long)b, e->domain);
    h->buf_append(out, "MIME-Version: 1.0\r\n", 19);
    const char *unsub = baton_message_part(m, "list_unsubscribe");
    baton_buf *ub = NULL;
    if (!unsub && e->unsub) {
        ub = h->buf_new();
        baton_record *ctx = context(h, m);
        if (h->template_render(e->unsub, ctx, ub) == 0)
            unsub = h->buf_data(ub, NULL);
        h->record_free(ctx);
    } else if (!unsub) {
        unsub = e->unsub_text;
    }
    if (unsub && *unsub && !has_crlf(unsub)) {
        put3(h, out, "List-Unsubscribe: ", unsub, "\r\n");
        if (strstr(unsub, "<https:"))
            h->buf_append(out, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", 51);
    }
    if (ub)
        h->buf_free(ub);
    if (!has_crlf(m->key))
        put3(h, out, "X-Baton-Key: ", m->key, "\r\n");
    const char *qp = "Content-Transfer-Encoding: quoted-printable\r\n";
    if (text && html) {
        char boundary[64];
        snprintf(boundary, sizeof boundary, "=_baton_%016llx", (unsigned long long)a);
        h->buf_printf(out, "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n",
                      boundary);
        h->buf_printf(out, "This is a multi-part message in MIME format.\r\n\r\n--%s\r\n",
                      boundary);
        h->buf_printf(out, "Content-Type: text/plain; charset=UTF-8\r\n%s\r\n", qp);
        put_qp(h, out, text);
        h->buf_printf(out, "--%s\r\n", boundary);
        h->buf_printf(out, "Content-Type: text/html; charset=UTF-8\r\n%s\r\n", qp);
        put_qp(h, out, html);
        h->buf_printf(out, "--%s--\r\n", boundary);
    } else {
        put3(h, out, text ? "Content-Type: text/plain" : "Content-Type: text/html",
             "; charset=UTF-8\r\n", qp);
        h->buf_append(out, "\r\n", 2);
        put_qp(h, out, text ? text : html);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* deliver                                                             */
/* ------------------------------------------------------------------ */

static void email_deliver(void *state, void *conn, const baton_message *const *msgs, size_t n,
                          baton_delivery *out)
{
    email *e = state;
    const baton_host *h = e->h;
    smtpc *c = conn ? conn : smtpc_new(&e->smtp);
    smtpc_msg *sm = calloc(n ? n : 1, sizeof *sm);
    baton_buf **bodies = calloc(n ? n : 1, sizeof *bodies);
    if (!c || !sm || !bodies) {
        for (size_t i = 0; i < n; i++) {
            out[i].status = BATON_RETRY;
            snprintf(out[i].reason, sizeof out[i].reason, "out of memory");
        }
        goto done;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        bodies[i] = h->buf_new();
        char err[256] = "";
        if (email_format(e, msgs[i], bodies[i], err, sizeof err) != 0) {
            out[i].status = BATON_ERROR;
            snprintf(out[i].reason, sizeof out[i].reason, "%s", err);
            baton_deliver_done(h, msgs[i], &out[i]);
            continue;
        }
        size_t len;
        const char *data = h->buf_data(bodies[i], &len);
        sm[k++] = (smtpc_msg){.from = e->from_addr,
                              .to = msgs[i]->recipient,
                              .data = data,
                              .len = len,
                              .out = &out[i],
                              .tag = msgs[i]};
    }
    if (k)
        h->counter_add(e->c_sessions, smtpc_send(c, sm, k));
    for (size_t i = 0; i < k; i++)
        h->counter_add(sm[i].out->status == BATON_OK ? e->c_sent : e->c_failed, 1);
done:
    if (c && !conn) {
        smtpc_close(c);
        smtpc_free(c);
    }
    for (size_t i = 0; bodies && i < n; i++)
        if (bodies[i])
            h->buf_free(bodies[i]);
    free(bodies);
    free(sm);
}

/* SDK 1.4 progress: a kill -9 leaves uncertain only what was on the wire */
static void on_wire(void *arg, smtpc_msg *const *m, size_t n)
{
    email *e = arg;
    const baton_message *msgs[16];
    for (size_t i = 0; i < n && i < 16; i++)
        msgs[i] = m[i]->tag;
    baton_deliver_wire(e->h, msgs, n < 16 ? n : 16);
}

static void on_done(void *arg, smtpc_msg *m)
{
    email *e = arg;
    baton_deliver_done(e->h, m->tag, m->out);
}

/* A worker's session, opened at its first batch and kept between them. */
static void *email_worker_open(void *state)
{
    email *e = state;
    return smtpc_new(&e->smtp);
}

static void email_worker_close(void *state, void *conn)
{
    if (!conn)
        return;
    smtpc_close(conn);
    smtpc_free(conn);
}

/* ------------------------------------------------------------------ */
/* Lifecycle                                                           */
/* ------------------------------------------------------------------ */

static int email_init(baton_instance *inst, const baton_host *h, void **state)
{
    email *e = calloc(1, sizeof *e);
    if (!e)
        return -1;
    e->inst = inst;
    e->h = h;
    snprintf(e->host, sizeof e->host, "%s", h->config_string(inst, "host"));
    e->port = (int)h->config_int(inst, "port");
    const char *from = h->config_string(inst, "from");
    char name[256];
    split_mailbox(from, e->from_addr, sizeof e->from_addr, name, sizeof name);
    const char *at = strchr(e->from_addr, '@');
    if (!at || has_crlf(from) || strpbrk(e->from_addr, "<>\" ,")) {
        h->set_error(inst, "from = \"%s\": expected \"Name <address@domain>\" or an address", from);
        free(e);
        return -1;
    }
    baton_buf *fh = h->buf_new();
    if (name[0]) {
        put_header_text(h, fh, name, 6);
        h->buf_printf(fh, " <%s>", e->from_addr);
    } else {
        h->buf_printf(fh, "<%s>", e->from_addr);
    }
    e->from_header = strdup(h->buf_data(fh, NULL));
    h->buf_free(fh);
    e->reply_to = h->config_string(inst, "reply_to");
    const char *user = h->config_string(inst, "username");
    const char *pass = h->config_string(inst, "password");
    if (pass && !user) {
        h->set_error(inst, "password is set but username is not");
        free(e->from_header);
        free(e);
        return -1;
    }
    const char *helo = h->config_string(inst, "helo");
    if (helo && (has_crlf(helo) || strpbrk(helo, " <>") || !*helo)) {
        h->set_error(inst, "helo: expected a host name or an address literal such as [192.0.2.1]");
        free(e->from_header);
        free(e);
        return -1;
    }
    if (helo)
        snprintf(e->helo, sizeof e->helo, "%s", helo);
    else
        smtpc_local_name(e->helo, sizeof e->helo); /* "" when none: the [IP] literal */
    /* `timeout`, when set, is every step's limit (as it was before the
     * per-phase settings) */
    int all = h->config_string(inst, "timeout") != NULL;
    long t_all = (long)h->config_duration_ms(inst, "timeout");
#define PHASE(key) (all ? t_all : (long)h->config_duration_ms(inst, key))
    e->smtp = (smtpc_opts){.host = e->host,
                           .port = e->port,
                           .helo = e->helo[0] ? e->helo : NULL,
                           .starttls = h->config_enum(inst, "starttls"), /* 0, 1, 2 */
                           .ca_file = h->config_string(inst, "tls_ca_file"),
                           .user = user,
                           .pass = pass,
                           .connect_ms = PHASE("connect_timeout"),
                           .greeting_ms = PHASE("greeting_timeout"),
                           .mail_ms = PHASE("mail_timeout"),
                           .rcpt_ms = PHASE("rcpt_timeout"),
                           .data_ms = PHASE("data_timeout"),
                           .block_ms = PHASE("block_timeout"),
                           .dot_ms = PHASE("dot_timeout"),
                           .idle_ms = (long)h->config_duration_ms(inst, "idle_timeout"),
                           .wire_ahead = (size_t)h->config_int(inst, "wire_ahead"),
                           .wire = on_wire,
                           .done = on_done,
                           .hook_arg = e};
#undef PHASE
    const char *dom = h->config_string(inst, "message_id_domain");
    snprintf(e->domain, sizeof e->domain, "%s", dom ? dom : at + 1);
    const char *unsub = h->config_string(inst, "list_unsubscribe");
    if (unsub) {
        char err[256];
        /* a header of <URL>s: a value inside <..> is percent-encoded, one
         * outside cannot add a URL (< > , CR LF dropped) */
        e->unsub = h->template_compile_as(inst, unsub, BATON_ESCAPE_URL_LIST, err, sizeof err);
        if (!e->unsub) {
            if (strstr(unsub, "{{")) {
                h->set_error(inst, "list_unsubscribe: %s", err);
                free(e->from_header);
                free(e);
                return -1;
            }
            e->unsub_text = unsub;
        }
    }
    e->c_sent = h->counter(inst, "sent");
    e->c_failed = h->counter(inst, "failed");
    e->c_sessions = h->counter(inst, "smtp_sessions");
    *state = e;
    return 0;
}

static void email_destroy(void *state)
{
    email *e = state;
    if (e->unsub)
        e->h->template_free(e->unsub);
    free(e->from_header);
    free(e);
}

static const char *const parts[] = {"subject", "text", "html", "list_unsubscribe", NULL};
static const baton_channel_ops ops = {
    .size = sizeof(baton_channel_ops),
    .parts = parts,
    .format = email_format,
    .worker_open = email_worker_open,
    .worker_close = email_worker_close,
    .deliver = email_deliver,
};

BATON_PLUGIN(.name = "channel_email", .version = "1.0.0",
             .description = "email over SMTP: MIME text+html, RFC 2047, PIPELINING, STARTTLS, AUTH",
             .kind = BATON_KIND_CHANNEL, .config = keys, .init = email_init,
             .destroy = email_destroy, .ops = &ops)
