/* daemon/http — the server: listener, requests, tokens, routing, errors
 * and static files (see http.h). Resources live in http_*.c.
 *
 * A request is handled in three steps on the pool thread that owns its
 * connection: at its headers it is routed and authorised (401, 403, 404,
 * 405, 413 on Content-Length, 415) before any of its body is read; its
 * body is gathered up to max_body (413 as soon as it goes over, the rest
 * is not read: the connection is closed after the answer), within
 * body_timeout of its headers (a client that trickles it is cut); then
 * its handler runs. A handler that waits (events until their commit, plans,
 * campaign runs) suspends the connection instead of the thread, so one
 * slow answer never holds the others on that thread; so does a request
 * that comes while no configuration is attached (starting, reloading):
 * parked until the attach, at most ATTACH_WAIT_MS, then 503. A client that
 * sends nothing for `timeout` is disconnected by libmicrohttpd. */
#include "daemon/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/deadline.h"
#include "base/log.h"
#include "base/mem.h"
#include "daemon/http_int.h"

http_counters http_stats;

/* Failed logins: an address that failed FAIL_MAX times in FAIL_WINDOW_MS
 * gets 429 until the window ends (guessing tokens is slow). */
#define FAIL_SLOTS 64
#define FAIL_MAX 10
#define FAIL_WINDOW_MS 60000
/* A request waits this long for a reload to attach the new configuration. */
#define ATTACH_WAIT_MS 30000
/* The Retry-After of a 503 while there is no configuration. */
#define UNAVAILABLE_RETRY "5"
enum { PARK_HEADERS = 1, PARK_HANDLER };

typedef struct fail_slot {
    char ip[INET6_ADDRSTRLEN];
    int64_t since;
    int n;
} fail_slot;

/* An open connection, until its request's headers are whole: the
 * parker cuts it (shutdown) at header_until_us. */
typedef struct http_conn {
    int fd;
    int in_request;          /* headers whole: its request is being handled */
    int64_t header_until_us; /* mono_us */
    struct http_conn *prev, *next;
} http_conn;

struct http_server {
    struct MHD_Daemon *d;
    http_listener l;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    http_env env;
    int attached;
    int closing; /* http_stop: nobody waits for an attach any more */
    int users;
    /* requests waiting for an attach, suspended (not holding a pool
     * thread: /healthz and others on that thread go on); the parker
     * resumes them at the attach, or at their deadline for a 503 */
    http_req *parked;
    pthread_t parker;
    int parker_started;
    /* every open connection (cmu), for header_timeout */
    pthread_mutex_t cmu;
    http_conn *conns;
    fail_slot fails[FAIL_SLOTS];
};

static const http_route routes[] = {
    {"GET", "/healthz", 0, NULL, 0},
    {"GET", "/readyz", 0, NULL, 0},
    {"GET", "/metrics", HTTP_SCOPE_READ, http_metrics, 0},
    {"POST", "/v1/events", HTTP_SCOPE_EVENTS, http_events_post, 1},
    {"GET", "/v1/journeys", HTTP_SCOPE_READ, http_journeys_list, 0},
    {"GET", "/v1/journeys/*", HTTP_SCOPE_READ, http_journey_get, 0},
    {"GET", "/v1/journeys/*/dead_letters", HTTP_SCOPE_READ, http_journey_dead_letters, 0},
    /* operating what runs, as starting a campaign run is */
    {"POST", "/v1/journeys/*/pause", HTTP_SCOPE_CAMPAIGNS, http_journey_control, 0},
    {"POST", "/v1/journeys/*/resume", HTTP_SCOPE_CAMPAIGNS, http_journey_control, 0},
    {"POST", "/v1/journeys/*/close", HTTP_SCOPE_CAMPAIGNS, http_journey_control, 0},
    {"GET", "/v1/campaigns", HTTP_SCOPE_READ, http_campaigns_list, 0},
    {"GET", "/v1/campaigns/*", HTTP_SCOPE_READ, http_campaign_get, 0},
    {"GET", "/v1/campaigns/*/plan", HTTP_SCOPE_READ, http_campaign_plan, 0},
    {"GET", "/v1/campaigns/*/runs", HTTP_SCOPE_READ, http_campaign_runs, 0},
    {"POST", "/v1/campaigns/*/runs", HTTP_SCOPE_CAMPAIGNS, http_campaign_run_post, 1},
    {"GET", "/v1/campaigns/*/runs/*", HTTP_SCOPE_READ, http_campaign_run_get, 0},
    {"POST", "/v1/campaigns/*/runs/*/signal", HTTP_SCOPE_CAMPAIGNS, http_campaign_signal_post, 1},
    {"GET", "/v1/profiles", HTTP_SCOPE_READ, http_profiles_search, 0},
    {"GET", "/v1/profiles/*", HTTP_SCOPE_READ, http_profile_get, 0},
    {"GET", "/v1/profiles/*/record", HTTP_SCOPE_READ, http_profile_record, 0},
    {"GET", "/v1/profiles/*/links/*", HTTP_SCOPE_READ, http_profile_links, 0},
    {"GET", "/v1/deliveries", HTTP_SCOPE_READ, http_deliveries, 0},
    {"GET", "/v1/dead_letters", HTTP_SCOPE_READ, http_dead_letters, 0},
    {"GET", "/v1/channels", HTTP_SCOPE_READ, http_channels_list, 0},
    {"GET", "/v1/channels/*", HTTP_SCOPE_READ, http_channel_get, 0},
    /* the web console's (http_console.c) */
    {"GET", "/v1/session", HTTP_SCOPE_READ, http_session_get, 0},
    {"GET", "/v1/describe", HTTP_SCOPE_READ, http_describe, 0},
    {"GET", "/v1/campaigns/*/file", HTTP_SCOPE_READ, http_campaign_file_get, 0},
    {"PUT", "/v1/campaigns/*/file", HTTP_SCOPE_ADMIN, http_campaign_file_put, 1},
    {"POST", "/v1/campaigns/*/check", HTTP_SCOPE_READ, http_campaign_check, 1},
    {"POST", "/v1/campaigns/*/preview", HTTP_SCOPE_CAMPAIGNS, http_campaign_preview, 1},
    {"GET", "/v1/campaigns/*/versions", HTTP_SCOPE_READ, http_campaign_versions, 0},
    {"POST", "/v1/campaigns/*/versions/*/restore", HTTP_SCOPE_ADMIN, http_campaign_restore, 1},
    {"GET", "/v1/journeys/*/file", HTTP_SCOPE_READ, http_journey_file_get, 0},
    {"PUT", "/v1/journeys/*/file", HTTP_SCOPE_ADMIN, http_journey_file_put, 1},
    {"POST", "/v1/journeys/*/check", HTTP_SCOPE_READ, http_journey_check, 1},
    {"GET", "/v1/journeys/*/versions", HTTP_SCOPE_READ, http_journey_versions, 0},
    {"POST", "/v1/journeys/*/versions/*/restore", HTTP_SCOPE_ADMIN, http_journey_restore, 1},
    {"POST", "/v1/journeys/*/test", HTTP_SCOPE_READ, http_journey_test, 1},
    {"PUT", "/v1/channels/*", HTTP_SCOPE_ADMIN, http_channel_put, 1},
    /* signed links: the token is the authority (http_email.c) */
    {"GET", "/u/*", 0, http_unsubscribe_get, 0},
    {"POST", "/u/*", 0, http_unsubscribe_post, 2},
    {"GET", "/t/o/*", 0, http_track_open, 0},
    {"GET", "/t/c/*", 0, http_track_click, 0},
    /* bounces and complaints: SNS posts text/plain, an MTA a message */
    {"POST", "/v1/feedback/*", HTTP_SCOPE_EVENTS, http_feedback_post, 2},
};
#define NROUTES (sizeof routes / sizeof routes[0])

static int64_t mono_us(void)
{
    return deadline_now_us();
}

static int64_t mono_ms(void)
{
    return deadline_now_us() / 1000;
}

/* ------------------------------------------------------------------ */
/* The listener                                                        */
/* ------------------------------------------------------------------ */

static char *read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    buf b;
    buf_init(&b);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_add(&b, chunk, n);
    int bad = ferror(f);
    fclose(f);
    if (bad || !b.len) {
        snprintf(err, errlen, "%s: %s", path, bad ? "read error" : "empty file");
        buf_free(&b);
        return NULL;
    }
    return buf_steal(&b);
}

int http_listener_load(http_listener *l, const conf_http *c, char *err, size_t errlen)
{
    memset(l, 0, sizeof *l);
    l->host = xstrdup(c->host ? c->host : "127.0.0.1");
    l->port = c->port;
    l->threads = c->threads;
    l->connections = c->connections;
    l->connections_per_ip = c->connections_per_ip;
    l->timeout_s = (unsigned)((c->timeout_ms + 999) / 1000);
    l->header_timeout_ms = c->header_timeout_ms;
    if (c->tls_cert) {
        if (!MHD_is_feature_supported(MHD_FEATURE_TLS)) {
            snprintf(err, errlen, "http: this libmicrohttpd has no TLS support (tls_cert set)");
            goto fail;
        }
        char e[512];
        l->cert_pem = read_file(c->tls_cert, e, sizeof e);
        if (!l->cert_pem) {
            snprintf(err, errlen, "http.tls_cert: %s", e);
            goto fail;
        }
        l->key_pem = read_file(c->tls_key, e, sizeof e);
        if (!l->key_pem) {
            snprintf(err, errlen, "http.tls_key: %s", e);
            goto fail;
        }
    }
    return 0;
fail:
    http_listener_free(l);
    return -1;
}

void http_listener_free(http_listener *l)
{
    free(l->host);
    free(l->cert_pem);
    if (l->key_pem)
        explicit_bzero(l->key_pem, strlen(l->key_pem));
    free(l->key_pem);
    memset(l, 0, sizeof *l);
}

static int streq0(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int http_listener_same_port(const http_listener *a, const http_listener *b)
{
    return a->port == b->port && streq0(a->host, b->host);
}

int http_listener_differs(const http_listener *a, const http_listener *b)
{
    return !http_listener_same_port(a, b) || a->threads != b->threads ||
           a->connections != b->connections || a->connections_per_ip != b->connections_per_ip ||
           a->timeout_s != b->timeout_s || a->header_timeout_ms != b->header_timeout_ms ||
           !streq0(a->cert_pem, b->cert_pem) || !streq0(a->key_pem, b->key_pem);
}

/* ------------------------------------------------------------------ */
/* The environment                                                     */
/* ------------------------------------------------------------------ */

/* The environment, held; else, within ATTACH_WAIT_MS of the request's
 * first wait, q is parked: suspended until the attach (q->parked says
 * the step to take again when libmicrohttpd calls back). NULL either
 * way: q->parked, or a 503 to answer. */
static const http_env *env_or_park(http_req *q, int step)
{
    http_server *s = q->srv;
    int64_t now = mono_us();
    pthread_mutex_lock(&s->mu);
    const http_env *e = NULL;
    if (s->attached) {
        s->users++;
        e = &s->env;
    } else {
        if (!q->park_until_us)
            q->park_until_us = now + ATTACH_WAIT_MS * 1000LL;
        if (!s->closing && now < q->park_until_us) {
            /* suspended before the parker can see it: its resume always
             * comes after */
            q->parked = step;
            q->park_next = s->parked;
            s->parked = q;
            MHD_suspend_connection(q->conn);
            pthread_cond_broadcast(&s->cv);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return e;
}

/* Resume the parked requests whose wait is over (all of them once a
 * configuration is attached or the server closes). */
static void *parker_main(void *arg)
{
    http_server *s = arg;
    pthread_setname_np(pthread_self(), "baton-http-park");
    pthread_mutex_lock(&s->mu);
    for (;;) {
        int64_t now = mono_us(), next = 0;
        http_req *due = NULL, **pp = &s->parked;
        while (*pp) {
            http_req *q = *pp;
            if (s->attached || s->closing || q->park_until_us <= now) {
                *pp = q->park_next;
                q->park_next = due;
                due = q;
            } else {
                if (!next || q->park_until_us < next)
                    next = q->park_until_us;
                pp = &q->park_next;
            }
        }
        if (due) {
            pthread_mutex_unlock(&s->mu);
            while (due) {
                http_req *q = due;
                due = q->park_next;
                q->park_next = NULL;
                MHD_resume_connection(q->conn); /* on_request takes q->parked's step again */
            }
            pthread_mutex_lock(&s->mu);
            continue;
        }
        if (s->closing)
            break;
        /* headers trickled past header_timeout: cut (libmicrohttpd then
         * closes the connection); looked at every second while any is
         * open, as their deadlines move with each request */
        pthread_mutex_lock(&s->cmu);
        for (http_conn *k = s->conns; k; k = k->next)
            if (!k->in_request && k->header_until_us <= now && s->l.header_timeout_ms > 0) {
                k->header_until_us = INT64_MAX;
                shutdown(k->fd, SHUT_RDWR);
                char ip[INET6_ADDRSTRLEN] = "?";
                struct sockaddr_storage ss;
                socklen_t sl = sizeof ss;
                if (getpeername(k->fd, (struct sockaddr *)&ss, &sl) == 0)
                    inet_ntop(ss.ss_family,
                              ss.ss_family == AF_INET6
                                  ? (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                                  : (void *)&((struct sockaddr_in *)&ss)->sin_addr,
                              ip, sizeof ip);
                log_warn("http: a request from %s was not whole %lld ms after its connection "
                         "opened or its previous answer (http.header_timeout); connection closed",
                         ip, (long long)s->l.header_timeout_ms);
                atomic_fetch_add(&http_stats.requests[4], 1);
            }
        int64_t cap = s->conns ? 1000000LL : 3600 * 1000000LL;
        pthread_mutex_unlock(&s->cmu);
        struct timespec until;
        deadline_in_us(&until, next && next - now < cap ? next - now : cap);
        pthread_cond_timedwait(&s->cv, &s->mu, &until);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* No configuration came within ATTACH_WAIT_MS (or the server closes). */
static void unavailable(http_req *q)
{
    http_error(q, 503, "unavailable", NULL, "baton is (re)starting; retry shortly");
    snprintf(q->retry_after, sizeof q->retry_after, UNAVAILABLE_RETRY);
}

const http_env *http_env_hold(http_server *s)
{
    pthread_mutex_lock(&s->mu);
    const http_env *e = NULL;
    if (s->attached) {
        s->users++;
        e = &s->env;
    }
    pthread_mutex_unlock(&s->mu);
    return e;
}

void http_env_release(http_server *s)
{
    pthread_mutex_lock(&s->mu);
    if (--s->users == 0)
        pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void http_attach(http_server *s, const http_env *env)
{
    pthread_mutex_lock(&s->mu);
    s->env = *env;
    s->attached = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void http_detach(http_server *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->attached = 0;
    while (s->users > 0)
        pthread_cond_wait(&s->cv, &s->mu);
    memset(&s->env, 0, sizeof s->env);
    pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------------ */
/* Answers                                                             */
/* ------------------------------------------------------------------ */

static void set_body(http_req *q, int status, char *text, size_t len, const char *ctype)
{
    free(q->resp);
    q->status = status;
    q->resp = text;
    q->resp_len = len;
    q->ctype = ctype;
}

void http_raw(http_req *q, int status, char *text, size_t len, const char *ctype)
{
    set_body(q, status, text, len, ctype);
}

void http_json(http_req *q, int status, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(o);
    if (!s) {
        s = xstrdup("{\"error\": {\"code\": \"internal\", \"message\": \"cannot encode the "
                    "answer\", \"details\": null}}");
        status = 500;
    }
    size_t n = strlen(s);
    s = xrealloc(s, n + 2);
    s[n++] = '\n';
    s[n] = 0;
    set_body(q, status, s, n, "application/json");
}

void http_error(http_req *q, int status, const char *code, json_t *details, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    http_json(q, status,
              json_pack("{s:{s:s, s:s, s:o}}", "error", "code", code, "message", msg, "details",
                        details ? details : json_null()));
}

const char *http_arg(http_req *q, const char *name)
{
    return MHD_lookup_connection_value(q->conn, MHD_GET_ARGUMENT_KIND, name);
}

int http_open_store(http_req *q, store *st)
{
    char err[512];
    if (store_open(st, q->env->a->conf.data_dir, err, sizeof err) != 0) {
        store_close(st);
        log_error("http: %s", err);
        http_error(q, 503, "unavailable", NULL, "the state store cannot be opened");
        return -1;
    }
    sqlite3_busy_timeout(st->db, 5000);
    return 0;
}

int http_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128 || s[0] == '.')
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.' || *p == '@' || *p == '+'))
            return 0;
    return 1;
}

void http_async_begin(http_req *q)
{
    q->async = 1;
}

void http_async_done(http_req *q)
{
    pthread_mutex_lock(&q->amu);
    q->async_done = 1;
    int resume = q->suspended;
    q->suspended = 0;
    pthread_mutex_unlock(&q->amu);
    if (resume)
        MHD_resume_connection(q->conn);
}

/* ------------------------------------------------------------------ */
/* Tokens                                                              */
/* ------------------------------------------------------------------ */

/* Compare in time that depends on the secret's length only. */
static int secret_eq(const char *given, size_t glen, const char *secret)
{
    size_t slen = strlen(secret);
    unsigned char diff = glen != slen;
    for (size_t i = 0; i < slen; i++)
        diff |=
            (unsigned char)((i < glen ? (unsigned char)given[i] : 0) ^ (unsigned char)secret[i]);
    return diff == 0;
}

static void client_ip(http_req *q, char *out, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(q->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, len, "?");
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)len);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)len);
}

/* Under s->mu: the slot of ip (a new or the oldest one). */
static fail_slot *fail_slot_of(http_server *s, const char *ip, int create)
{
    fail_slot *old = &s->fails[0];
    for (int i = 0; i < FAIL_SLOTS; i++) {
        if (s->fails[i].n && strcmp(s->fails[i].ip, ip) == 0)
            return &s->fails[i];
        if (s->fails[i].since < old->since || !s->fails[i].n)
            old = !old->n ? old : &s->fails[i];
    }
    if (!create)
        return NULL;
    snprintf(old->ip, sizeof old->ip, "%s", ip);
    old->n = 0;
    old->since = mono_ms();
    return old;
}

/* 1 when ip is locked out; *retry_s then says for how long. */
static int locked_out(http_server *s, const char *ip, int64_t *retry_s)
{
    pthread_mutex_lock(&s->mu);
    fail_slot *f = fail_slot_of(s, ip, 0);
    int out = 0;
    if (f) {
        int64_t age = mono_ms() - f->since;
        if (age > FAIL_WINDOW_MS)
            f->n = 0;
        else if (f->n >= FAIL_MAX) {
            out = 1;
            *retry_s = (FAIL_WINDOW_MS - age) / 1000 + 1;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return out;
}

static void note_failure(http_server *s, const char *ip)
{
    pthread_mutex_lock(&s->mu);
    fail_slot *f = fail_slot_of(s, ip, 1);
    if (mono_ms() - f->since > FAIL_WINDOW_MS) {
        f->n = 0;
        f->since = mono_ms();
    }
    f->n++;
    pthread_mutex_unlock(&s->mu);
}

/* Authorise q for its route with the attached tokens. 0, or -1 after
 * answering. */
static int authorise(http_req *q, const http_env *env)
{
    if (!q->route->scope)
        return 0;
    char ip[INET6_ADDRSTRLEN];
    client_ip(q, ip, sizeof ip);
    int64_t retry = 0;
    if (locked_out(q->srv, ip, &retry)) {
        snprintf(q->retry_after, sizeof q->retry_after, "%lld", (long long)retry);
        http_error(q, 429, "too_many_requests", NULL,
                   "too many failed authentications from this address; retry in %lld s",
                   (long long)retry);
        return -1;
    }
    const char *h = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, "Authorization");
    /* Basic with the secret as the password: what provider webhooks
     * (SNS, Postmark, SendGrid) can send, in a URL's user:password@ */
    char *basic_pass = NULL, *basic_user = NULL;
    if (h && !strncasecmp(h, "Basic ", 6))
        basic_user = MHD_basic_auth_get_username_password(q->conn, &basic_pass);
    if (!basic_pass && (!h || strncasecmp(h, "Bearer ", 7) != 0)) {
        if (basic_user)
            MHD_free(basic_user);
        http_error(q, 401, "unauthorized", NULL,
                   "this endpoint needs a token: Authorization: Bearer SECRET (or Basic with "
                   "the secret as the password)");
        return -1;
    }
    const char *given = basic_pass ? basic_pass : h + 7;
    while (*given == ' ')
        given++;
    size_t glen = strlen(given);
    const conf_http *c = &env->a->conf.http;
    const conf_token *hit = NULL;
    for (size_t i = 0; i < c->ntokens; i++) /* every one, whatever matched */
        if (secret_eq(given, glen, c->tokens[i].secret))
            hit = &c->tokens[i];
    if (basic_pass) {
        explicit_bzero(basic_pass, strlen(basic_pass));
        MHD_free(basic_pass);
    }
    if (basic_user)
        MHD_free(basic_user);
    if (!hit) {
        note_failure(q->srv, ip);
        log_warn("http: %s %s from %s: unknown token", q->method, q->path, ip);
        http_error(q, 401, "unauthorized", NULL, "unknown token");
        return -1;
    }
    snprintf(q->token, sizeof q->token, "%s", hit->name);
    q->scopes = hit->scopes;
    if (!(hit->scopes & (q->route->scope | HTTP_SCOPE_ADMIN))) {
        const char *need = q->route->scope == HTTP_SCOPE_EVENTS      ? "events:write"
                           : q->route->scope == HTTP_SCOPE_CAMPAIGNS ? "campaigns:run"
                           : q->route->scope == HTTP_SCOPE_READ      ? "read"
                                                                     : "admin";
        http_error(q, 403, "forbidden", json_pack("{s:s}", "needs", need),
                   "token '%s' lacks the scope '%s'", hit->name, need);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Routing                                                             */
/* ------------------------------------------------------------------ */

/* Split path into q->seg. -1 when it has too many segments or an empty
 * one inside. */
static int split_path(http_req *q)
{
    q->segbuf = xstrdup(q->path);
    char *p = q->segbuf + (q->segbuf[0] == '/');
    q->nseg = 0;
    if (!*p)
        return 0;
    for (;;) {
        if (q->nseg == HTTP_MAX_SEGS)
            return -1;
        char *slash = strchr(p, '/');
        q->seg[q->nseg++] = p;
        if (!slash)
            break;
        *slash = 0;
        p = slash + 1;
        if (!*p) /* a trailing slash */
            break;
    }
    for (size_t i = 0; i < q->nseg; i++)
        if (!*q->seg[i])
            return -1;
    return 0;
}

static int route_matches(const http_route *r, http_req *q)
{
    const char *p = r->path + 1;
    size_t i = 0;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (i >= q->nseg)
            return 0;
        if (!(n == 1 && *p == '*') && (strlen(q->seg[i]) != n || strncmp(q->seg[i], p, n)))
            return 0;
        i++;
        p += n + (slash != NULL);
    }
    return i == q->nseg;
}

/* The route for q, or NULL after answering 404 / 405. */
static const http_route *route(http_req *q)
{
    q->allow[0] = 0;
    for (size_t i = 0; i < NROUTES; i++) {
        if (!route_matches(&routes[i], q))
            continue;
        if (!strcmp(routes[i].method, q->method) ||
            (!strcmp(q->method, "HEAD") && !strcmp(routes[i].method, "GET")))
            return &routes[i];
        size_t n = strlen(q->allow);
        if (!strstr(q->allow, routes[i].method))
            snprintf(q->allow + n, sizeof q->allow - n, "%s%s", n ? ", " : "", routes[i].method);
    }
    if (q->allow[0])
        http_error(q, 405, "method_not_allowed", json_pack("{s:s}", "allow", q->allow),
                   "%s is not allowed on %s (allowed: %s)", q->method, q->path, q->allow);
    else
        http_error(q, 404, "not_found", NULL, "no such endpoint: %s", q->path);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Static files under /ui/                                             */
/* ------------------------------------------------------------------ */

static const struct {
    const char *ext, *type;
} ctypes[] = {
    {".html", "text/html; charset=utf-8"},
    {".htm", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".json", "application/json"},
    {".map", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".jpg", "image/jpeg"},
    {".jpeg", "image/jpeg"},
    {".gif", "image/gif"},
    {".webp", "image/webp"},
    {".ico", "image/x-icon"},
    {".woff", "font/woff"},
    {".woff2", "font/woff2"},
    {".txt", "text/plain; charset=utf-8"},
    {".wasm", "application/wasm"},
};

static const char *content_type(const char *path)
{
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash))
        for (size_t i = 0; i < sizeof ctypes / sizeof ctypes[0]; i++)
            if (!strcasecmp(dot, ctypes[i].ext))
                return ctypes[i].type;
    return "application/octet-stream";
}

/* The web root: http.web_root, else the installed console
 * (<exe>/../share/baton/web), else the source tree's web/ (a build run
 * from its tree). A new string, or NULL. */
static char *web_root(const conf_http *c)
{
    if (c->web_root)
        return realpath(c->web_root, NULL);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            char *cand = xasprintf("%s/../share/baton/web", exe);
            char *r = realpath(cand, NULL);
            free(cand);
            if (r)
                return r;
        }
    }
#ifdef BATON_SOURCE_WEB
    return realpath(BATON_SOURCE_WEB, NULL);
#else
    return NULL;
#endif
}

static void serve_static(http_req *q, const http_env *env)
{
    if (strcmp(q->method, "GET") && strcmp(q->method, "HEAD")) {
        snprintf(q->allow, sizeof q->allow, "GET, HEAD");
        http_error(q, 405, "method_not_allowed", json_pack("{s:s}", "allow", "GET, HEAD"),
                   "%s is not allowed on %s (allowed: GET, HEAD)", q->method, q->path);
        return;
    }
    /* no hidden files, no "..": checked per segment, then the real path
     * must stay under the root (symbolic links included) */
    buf rel;
    buf_init(&rel);
    for (size_t i = 1; i < q->nseg; i++) {
        if (q->seg[i][0] == '.' || strchr(q->seg[i], '\\')) {
            buf_free(&rel);
            http_error(q, 404, "not_found", NULL, "no such file: %s", q->path);
            return;
        }
        buf_addf(&rel, "/%s", q->seg[i]);
    }
    int dir_asked = q->nseg == 1 || q->path[strlen(q->path) - 1] == '/';
    char *root = web_root(&env->a->conf.http);
    if (!root) {
        buf_free(&rel);
        http_error(q, 404, "not_found", NULL, "no web console is installed (http.web_root)");
        return;
    }
    char *want =
        xasprintf("%s%s%s", root, rel.data ? rel.data : "", dir_asked ? "/index.html" : "");
    buf_free(&rel);
    char *real = realpath(want, NULL);
    size_t rl = strlen(root);
    struct stat st;
    int fd = -1;
    if (real && !strncmp(real, root, rl) && (real[rl] == '/' || real[rl] == 0) &&
        stat(real, &st) == 0 && S_ISREG(st.st_mode))
        fd = open(real, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        http_error(q, 404, "not_found", NULL, "no such file: %s", q->path);
    } else {
        q->status = 200;
        q->fd = fd;
        q->fd_size = (uint64_t)st.st_size;
        q->ctype = content_type(real);
    }
    free(real);
    free(want);
    free(root);
}

/* ------------------------------------------------------------------ */
/* libmicrohttpd callbacks                                             */
/* ------------------------------------------------------------------ */

static enum MHD_Result send_answer(http_req *q)
{
    struct MHD_Response *r;
    if (q->fd >= 0) {
        r = MHD_create_response_from_fd(q->fd_size, q->fd);
        q->fd = -1; /* the response closes it */
    } else {
        if (!q->resp)
            http_error(q, 500, "internal", NULL, "no answer");
        r = MHD_create_response_from_buffer(q->resp_len, q->resp, MHD_RESPMEM_MUST_FREE);
        q->resp = NULL;
    }
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", q->ctype ? q->ctype : "application/json");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (q->status == 401)
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"baton\"");
    if (q->status == 405 && q->allow[0])
        MHD_add_response_header(r, "Allow", q->allow);
    if (q->location[0])
        MHD_add_response_header(r, "Location", q->location);
    if (q->extra_header[0])
        MHD_add_response_header(r, q->extra_header[0], q->extra_header[1]);
    if (q->retry_after[0])
        MHD_add_response_header(r, "Retry-After", q->retry_after);
    enum MHD_Result rc = MHD_queue_response(q->conn, (unsigned)q->status, r);
    MHD_destroy_response(r);
    int cls = q->status / 100;
    atomic_fetch_add(&http_stats.requests[cls >= 1 && cls <= 5 ? cls : 0], 1);
    return rc;
}

static void req_free(http_req *q)
{
    if (q->job_free && q->job)
        q->job_free(q->job);
    if (q->fd >= 0)
        close(q->fd);
    buf_free(&q->body);
    free(q->resp);
    free(q->path);
    free(q->segbuf);
    pthread_mutex_destroy(&q->amu);
    free(q);
}

/* Connections opened and closed: kept for header_timeout. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    http_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci)
            return;
        http_conn *k = xcalloc(1, sizeof *k);
        k->fd = ci->connect_fd;
        k->header_until_us = mono_us() + s->l.header_timeout_ms * 1000;
        pthread_mutex_lock(&s->cmu);
        int first = !s->conns;
        k->next = s->conns;
        if (s->conns)
            s->conns->prev = k;
        s->conns = k;
        pthread_mutex_unlock(&s->cmu);
        *socket_context = k;
        if (first) { /* the parker may sleep long: it has a deadline to keep now */
            pthread_mutex_lock(&s->mu);
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mu);
        }
    } else if (*socket_context) { /* closed (before libmicrohttpd closes the socket) */
        http_conn *k = *socket_context;
        pthread_mutex_lock(&s->cmu);
        if (k->prev)
            k->prev->next = k->next;
        else
            s->conns = k->next;
        if (k->next)
            k->next->prev = k->prev;
        pthread_mutex_unlock(&s->cmu);
        free(k);
        *socket_context = NULL;
    }
}

/* The request's headers are whole (in 1), or its answer is done: the
 * next request's headers have header_timeout from now (in 0). */
static void conn_in_request(http_server *s, struct MHD_Connection *c, int in)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    http_conn *k = ci ? ci->socket_context : NULL;
    if (!k)
        return;
    pthread_mutex_lock(&s->cmu);
    k->in_request = in;
    if (!in && k->header_until_us != INT64_MAX)
        k->header_until_us = mono_us() + s->l.header_timeout_ms * 1000;
    pthread_mutex_unlock(&s->cmu);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    http_req *q = *con_cls;
    if (!q)
        return;
    conn_in_request(q->srv, c, 0);
    if (q->env) { /* a connection closed while its handler ran (async) */
        http_env_release(q->srv);
        q->env = NULL;
    }
    pthread_mutex_lock(&q->srv->mu);
    for (http_req **pp = &q->srv->parked; *pp; pp = &(*pp)->park_next)
        if (*pp == q) {
            *pp = q->park_next;
            break;
        }
    pthread_mutex_unlock(&q->srv->mu);
    int64_t ms = (mono_us() - q->started_us) / 1000;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        log_debug("http: %s %s: connection ended early (%d) after %lld ms", q->method, q->path,
                  (int)toe, (long long)ms);
    else
        log_debug("http: %s %s %d %lld ms%s%s", q->method, q->path, q->status, (long long)ms,
                  q->token[0] ? " token " : "", q->token);
    req_free(q);
    *con_cls = NULL;
}

/* The request's headers are in: route, authorise, check the body's
 * announced size and type. 1 when the request goes on (body, handler),
 * 0 when it was answered. */
static int on_headers(http_req *q)
{
    int ui = 0;
    if (!q->routed) { /* not again when a parked request comes back */
        q->routed = 1;
        if (split_path(q) != 0) {
            http_error(q, 404, "not_found", NULL, "no such endpoint");
            return 0;
        }
        ui = q->nseg >= 1 && !strcmp(q->seg[0], "ui");
        if (ui && q->nseg == 1 && q->path[strlen(q->path) - 1] != '/' && strcmp(q->path, "/ui/")) {
            /* /ui -> /ui/ so relative links resolve */
            http_json(q, 301, json_pack("{s:s}", "location", "/ui/"));
            snprintf(q->location, sizeof q->location, "/ui/");
            return 0;
        }
        if (!ui && !(q->route = route(q)))
            return 0;
    } else {
        ui = !q->route;
    }
    if (!ui && !q->route->fn) /* healthz, readyz: answered at the handler step */
        return 1;
    const http_env *env = env_or_park(q, PARK_HEADERS);
    if (!env) {
        if (!q->parked)
            unavailable(q);
        return 0;
    }
    if (ui) {
        serve_static(q, env);
        http_env_release(q->srv);
        return 0;
    }
    int ok = authorise(q, env) == 0;
    q->max_body = env->a->conf.http.max_body;
    q->max_events = env->a->conf.http.max_events;
    q->body_deadline_us = mono_us() + env->a->conf.http.body_timeout_ms * 1000;
    http_env_release(q->srv);
    if (!ok)
        return 0;
    if (!q->route->body)
        return 1;
    const char *ct = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, "Content-Type");
    if (q->route->body == 1 && (!ct || (strncasecmp(ct, "application/json", 16) &&
                                        strncasecmp(ct, "application/x-ndjson", 20) &&
                                        strncasecmp(ct, "application/ndjson", 18)))) {
        http_error(q, 415, "unsupported_media_type",
                   ct ? json_pack("{s:s}", "content_type", ct) : NULL,
                   "the body must be application/json or application/x-ndjson%s%s",
                   ct ? ", not " : " (no Content-Type was given)", ct ? ct : "");
        return 0;
    }
    const char *cl = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, "Content-Length");
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno || *end || n > (unsigned long long)q->max_body) {
            http_error(q, 413, "payload_too_large",
                       json_pack("{s:I}", "max_body", (json_int_t)q->max_body),
                       "the body is larger than %lld bytes (http.max_body)",
                       (long long)q->max_body);
            return 0;
        }
    }
    return 1;
}

static void run_handler(http_req *q)
{
    if (!q->route->fn) {
        if (!strcmp(q->seg[0], "healthz")) {
            http_json(q, 200, json_pack("{s:s}", "status", "ok"));
            return;
        }
        pthread_mutex_lock(&q->srv->mu); /* readyz */
        int ready = q->srv->attached;
        pthread_mutex_unlock(&q->srv->mu);
        if (ready)
            http_json(q, 200, json_pack("{s:b}", "ready", 1));
        else {
            http_json(q, 503,
                      json_pack("{s:b, s:s}", "ready", 0, "reason", "reloading or starting"));
            snprintf(q->retry_after, sizeof q->retry_after, UNAVAILABLE_RETRY);
        }
        return;
    }
    q->env = env_or_park(q, PARK_HANDLER);
    if (!q->env) {
        if (!q->parked)
            unavailable(q);
        return;
    }
    q->route->fn(q);
    if (!q->async) {
        http_env_release(q->srv);
        q->env = NULL;
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    http_server *s = cls;
    http_req *q = *con_cls;
    if (!q) {
        q = xcalloc(1, sizeof *q);
        q->srv = s;
        q->conn = c;
        q->method = method;
        q->fd = -1;
        q->started_us = mono_us();
        q->path = xstrdup(url);
        pthread_mutex_init(&q->amu, NULL);
        buf_init(&q->body);
        *con_cls = q;
        conn_in_request(s, c, 1);
        if (!on_headers(q))
            return q->parked ? MHD_YES : send_answer(q);
        return MHD_YES; /* the body comes next (libmicrohttpd answers Expect: 100-continue) */
    }
    if (q->parked) { /* resumed: a configuration came, or the wait is over */
        int step = q->parked;
        q->parked = 0;
        if (step == PARK_HEADERS) {
            /* suspended at its headers, libmicrohttpd calls us as at
             * the first call again */
            if (!on_headers(q))
                return q->parked ? MHD_YES : send_answer(q);
            return MHD_YES;
        }
        *upload_size = 0;
        goto handler;
    }
    if (q->async) { /* resumed: the answer is ready */
        pthread_mutex_lock(&q->amu);
        int done = q->async_done;
        if (!done) { /* woken early: wait again */
            q->suspended = 1;
            MHD_suspend_connection(c);
        }
        pthread_mutex_unlock(&q->amu);
        if (!done)
            return MHD_YES;
        if (q->env) {
            http_env_release(s);
            q->env = NULL;
        }
        return send_answer(q);
    }
    if (*upload_size) {
        if (!q->too_large && q->body.len + *upload_size > (size_t)q->max_body) {
            q->too_large = 1;
            buf_free(&q->body);
            buf_init(&q->body);
        }
        if (q->too_large) {
            /* A body without Content-Length (chunked) that goes over:
             * libmicrohttpd cannot answer before the body is read, and
             * reading on is what the limit forbids, so the connection is
             * closed now. (With Content-Length, 413 came at the headers.) */
            log_warn("http: %s %s: the chunked body went over %lld bytes (http.max_body); "
                     "connection closed",
                     q->method, q->path, (long long)q->max_body);
            atomic_fetch_add(&http_stats.requests[4], 1);
            return MHD_NO;
        }
        /* the idle timeout cuts a client that stops; this one that
         * trickles (a byte now and then, slowloris) */
        if (mono_us() > q->body_deadline_us) {
            log_warn("http: %s %s: the body was not whole %lld ms after the headers "
                     "(http.body_timeout, %zu bytes so far); connection closed",
                     q->method, q->path, (long long)((q->body_deadline_us - q->started_us) / 1000),
                     q->body.len + *upload_size);
            atomic_fetch_add(&http_stats.requests[4], 1);
            return MHD_NO;
        }
        buf_add(&q->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
handler:
    run_handler(q);
    if (q->parked)
        return MHD_YES;
    if (q->async) {
        pthread_mutex_lock(&q->amu);
        int done = q->async_done;
        if (!done) {
            q->suspended = 1;
            MHD_suspend_connection(c);
        }
        pthread_mutex_unlock(&q->amu);
        if (!done)
            return MHD_YES;
        http_env_release(s);
        q->env = NULL;
    }
    return send_answer(q);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = 0;
    log_debug("http: libmicrohttpd: %s", msg);
}

http_server *http_start(http_listener *l, char *err, size_t errlen)
{
    http_server *s = xcalloc(1, sizeof *s);
    s->l = *l;
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->cmu, NULL);
    deadline_cond_init(&s->cv);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, s->l.host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)s->l.port);
    } else if (inet_pton(AF_INET6, s->l.host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)s->l.port);
        flags |= MHD_USE_IPv6;
    } else if (!strcmp(s->l.host, "localhost")) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)s->l.port);
        v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else {
        snprintf(err, errlen, "http.listen: '%s' is not an IP address (give one, e.g. 0.0.0.0)",
                 s->l.host);
        goto fail;
    }
    if (s->l.cert_pem)
        flags |= MHD_USE_TLS;
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL},
        {MHD_OPTION_SOCK_ADDR, 0, &ss},
        {MHD_OPTION_THREAD_POOL_SIZE, s->l.threads, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, s->l.connections, NULL},
        /* one client trickling headers holds this many, not all */
        {MHD_OPTION_PER_IP_CONNECTION_LIMIT, s->l.connections_per_ip, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, s->l.timeout_s, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, 64 * 1024, NULL},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed, NULL},
        {MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, s},
        {s->l.cert_pem ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, s->l.cert_pem},
        {s->l.cert_pem ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, s->l.key_pem},
        {MHD_OPTION_END, 0, NULL},
    };
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_ARRAY, opts,
                            MHD_OPTION_END);
    if (!s->d) {
        snprintf(err, errlen, "http: cannot listen on %s:%d%s%s", s->l.host, s->l.port,
                 errno ? ": " : "", errno ? strerror(errno) : "");
        goto fail;
    }
    if (s->l.port == 0) { /* tests: the port the kernel chose */
        const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
        if (di)
            s->l.port = di->port;
    }
    if (pthread_create(&s->parker, NULL, parker_main, s) != 0) {
        snprintf(err, errlen, "http: cannot start a thread");
        MHD_stop_daemon(s->d);
        goto fail;
    }
    s->parker_started = 1;
    log_info("http: listening on %s%s:%d%s", strchr(s->l.host, ':') ? "[" : "", s->l.host,
             s->l.port, s->l.cert_pem ? " (TLS)" : "");
    return s;
fail:
    http_listener_free(&s->l);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->cmu);
    pthread_cond_destroy(&s->cv);
    free(s);
    return NULL;
}

const http_listener *http_server_listener(const http_server *s)
{
    return &s->l;
}

void http_stop(http_server *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->closing = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->parker_started) /* resumes every parked request: answered 503 */
        pthread_join(s->parker, NULL);
    http_detach(s);
    MHD_stop_daemon(s->d);
    http_listener_free(&s->l);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->cmu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
