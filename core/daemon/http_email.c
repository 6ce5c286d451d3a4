/* daemon/http_email — the email loop's public face: one-click
 * unsubscribes (RFC 8058) on signed links, POST and GET /u/TOKEN, and
 * engagement tracking, GET /t/o/TOKEN and GET /t/c/TOKEN (below).
 *
 * POST /u/TOKEN (no login: the link's signature is the authority, see
 * delivery/linktoken.h) suppresses the profile on the link's channel in
 * the state store (dispatch_suppress: delivery_send then sends it
 * nothing more, from campaigns and journeys alike) and, the first time,
 * enters the event `unsubscribed` into journeys through the runner's
 * group commit; the answer comes once both are committed. The same link
 * posted again changes nothing and says so (`already`): mail providers
 * may post it more than once. GET /u/TOKEN answers a page whose button
 * posts; a GET changes nothing (link scanners follow every link).
 * A forged, altered or cut link, one for another purpose (an open or
 * click token) or an expired one is refused (403, 410). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/log.h"
#include "base/mem.h"
#include "base/timefmt.h"
#include "daemon/http_int.h"
#include "delivery/dispatch.h"
#include "base/sha256.h"
#include "delivery/linktoken.h"

#define SUBMIT_WAIT_MS 5000

static int wants_html(http_req *q)
{
    const char *a = MHD_lookup_connection_value(q->conn, MHD_HEADER_KIND, "Accept");
    return a && strstr(a, "text/html") != NULL;
}

static void html_escape(buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': buf_adds(b, "&lt;"); break;
        case '>': buf_adds(b, "&gt;"); break;
        case '&': buf_adds(b, "&amp;"); break;
        case '"': buf_adds(b, "&quot;"); break;
        case '\'': buf_adds(b, "&#39;"); break;
        default: buf_addc(b, *s);
        }
    }
}

/* A small page: title, one paragraph (escaped), an optional form. */
static void page(http_req *q, int status, const char *title, const char *text, int form)
{
    buf b;
    buf_init(&b);
    buf_adds(&b, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                 "<meta name=\"viewport\" content=\"width=device-width\">"
                 "<meta name=\"robots\" content=\"noindex\"><title>");
    html_escape(&b, title);
    buf_adds(&b, "</title><style>body{font-family:sans-serif;max-width:32em;margin:4em auto;"
                 "padding:0 1em}button{font-size:1.1em;padding:.5em 1.5em}</style></head>"
                 "<body><main><h1>");
    html_escape(&b, title);
    buf_adds(&b, "</h1><p>");
    html_escape(&b, text);
    buf_adds(&b, "</p>");
    /* no action: the form posts to this very URL, whatever proxy path
     * public_url has; the field is RFC 8058's one-click body */
    if (form)
        buf_adds(&b, "<form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" "
                     "value=\"One-Click\"><button type=\"submit\">Unsubscribe</button></form>");
    buf_adds(&b, "</main></body></html>\n");
    size_t n = b.len;
    http_raw(q, status, buf_steal(&b), n, "text/html; charset=utf-8");
}

static void refuse(http_req *q, int status, const char *code, const char *why)
{
    if (wants_html(q)) {
        page(q, status, "This link does not work",
             status == 410 ? "This unsubscribe link has expired. Use the link in a more recent "
                             "message, or reply to it."
                           : "This unsubscribe link is not valid. Use the link exactly as it is "
                             "in the message.",
             0);
        return;
    }
    http_error(q, status, code, json_pack("{s:s}", "reason", why), "%s: %s",
               status == 410 ? "the link has expired" : "not a valid unsubscribe link", why);
}

/* The token of /u/TOKEN, verified; 0, or -1 after answering. */
static int token(http_req *q, linktoken_parsed *p)
{
    const char *secret = q->env->a->conf.http.link_secret;
    if (!secret) {
        http_error(q, 404, "not_found", NULL,
                   "unsubscribe links are not configured (http.public_url, http.link_secret)");
        return -1;
    }
    const char *t = q->seg[1];
    linktoken_rc rc =
        linktoken_verify(t, strlen(t), secret, LINK_UNSUBSCRIBE, (int64_t)time(NULL), p);
    if (rc == LINKTOKEN_OK)
        return 0;
    atomic_fetch_add(&http_stats.links_refused, 1);
    log_warn("http: unsubscribe link refused (%s)", linktoken_rc_name(rc));
    if (rc == LINKTOKEN_EXPIRED)
        refuse(q, 410, "link_expired", linktoken_rc_name(rc));
    else
        refuse(q, 403, "invalid_link", linktoken_rc_name(rc));
    return -1;
}

void http_unsubscribe_get(http_req *q)
{
    linktoken_parsed *tp = xmalloc(sizeof *tp); /* 4 KB: off the pool thread's stack */
    if (token(q, tp) == 0) {
        buf t;
        buf_init(&t);
        buf_addf(&t, "Stop receiving messages on %s? Press the button to confirm.", tp->t.channel);
        page(q, 200, "Unsubscribe", t.data, 1);
        buf_free(&t);
    }
    free(tp);
}

/* A transparent 1x1 GIF: the open pixel. */
static const unsigned char gif[] = {
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00,
    0x00, 0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00,
    0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b};

static void pixel(http_req *q)
{
    char *b = xmalloc(sizeof gif);
    memcpy(b, gif, sizeof gif);
    /* Cache-Control: no-store is on every answer; an HTTP/1.0 cache
     * (some mail proxies) reads Pragma */
    q->extra_header[0] = "Pragma";
    q->extra_header[1] = "no-cache";
    http_raw(q, 200, b, sizeof gif, "image/gif");
}

/* 302 to q->location (set from a verified click token). */
static void redirect(http_req *q)
{
    http_json(q, 302, json_pack("{s:s}", "location", q->location));
}

/* --- Events into journeys, answered once committed ------------------- */

typedef struct unsub_job {
    http_req *q;
    int as; /* HTTP_AS_* */
    json_t *answer;
    pthread_mutex_t mu;
    size_t pending;
    int submitting;
    long accepted, duplicate, dead, rejected;
} unsub_job;

static void job_free(void *p)
{
    unsub_job *j = p;
    json_decref(j->answer);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

static void answer(unsub_job *j)
{
    if (json_object_get(j->answer, "events"))
        json_object_set_new(j->answer, "events",
                            json_pack("{s:i, s:i, s:i, s:i}", "accepted", (int)j->accepted,
                                      "duplicate", (int)j->duplicate, "dead_lettered", (int)j->dead,
                                      "rejected", (int)j->rejected));
    else
        json_object_set_new(j->answer, "event",
                            json_string(j->accepted    ? "accepted"
                                        : j->duplicate ? "duplicate"
                                        : j->dead      ? "dead_lettered"
                                        : j->rejected  ? "rejected"
                                                       : "not_entered"));
    switch (j->as) {
    case HTTP_AS_PAGE:
        page(j->q, 200, "You are unsubscribed",
             "You will receive no more of these messages. You can close this page.", 0);
        break;
    case HTTP_AS_PIXEL: pixel(j->q); break;
    case HTTP_AS_REDIRECT: redirect(j->q); break;
    default: http_json(j->q, 200, json_incref(j->answer));
    }
}

static void on_event(void *ctx, jrunner_outcome o, const char *id, const char *reason)
{
    unsub_job *j = ctx;
    pthread_mutex_lock(&j->mu);
    j->accepted += o == JRUNNER_ACCEPTED;
    j->duplicate += o == JRUNNER_DUPLICATE;
    j->dead += o == JRUNNER_DEAD_LETTERED;
    int last = --j->pending == 0 && !j->submitting;
    pthread_mutex_unlock(&j->mu);
    if (last) {
        answer(j);
        http_async_done(j->q);
    }
}

void http_email_events(http_req *q, json_t *evs, json_t *ans, int as)
{
    unsub_job *j = xcalloc(1, sizeof *j);
    pthread_mutex_init(&j->mu, NULL);
    j->q = q;
    j->as = as;
    j->answer = ans;
    j->submitting = 1;
    q->job = j;
    q->job_free = job_free;
    jrunner *r = q->env->r;
    if (!r || !json_array_size(evs)) {
        json_decref(evs);
        answer(j);
        return;
    }
    http_async_begin(q);
    struct timespec nap = {0, 1000000};
    int waited = 0;
    size_t i;
    json_t *ev;
    json_array_foreach(evs, i, ev)
    {
        char *s = json_dumps(ev, JSON_COMPACT);
        pthread_mutex_lock(&j->mu);
        j->pending++;
        pthread_mutex_unlock(&j->mu);
        int rc;
        while ((rc = jrunner_submit_outcome(r, "http", s, strlen(s), on_event, j)) == 1 &&
               waited++ < SUBMIT_WAIT_MS) {
            jrunner_flush(r);
            nanosleep(&nap, NULL);
        }
        free(s);
        if (rc != 0) { /* what was recorded holds; only the event could not go in now */
            log_warn("http: a %s event could not be queued (%s)",
                     json_string_value(json_object_get(ev, "type")),
                     rc < 0 ? "stopping" : "queue full");
            pthread_mutex_lock(&j->mu);
            j->pending--;
            j->rejected++;
            pthread_mutex_unlock(&j->mu);
        }
    }
    json_decref(evs);
    jrunner_flush(r);
    pthread_mutex_lock(&j->mu);
    j->submitting = 0;
    int done = j->pending == 0;
    pthread_mutex_unlock(&j->mu);
    if (done) {
        answer(j);
        http_async_done(q);
    }
}

void http_unsubscribe_post(http_req *q)
{
    linktoken_parsed *tp = xmalloc(sizeof *tp);
    if (token(q, tp) != 0) {
        free(tp);
        return;
    }
    const linktoken *t = &tp->t;
    char err[256];
    int64_t now = (int64_t)time(NULL);
    int fresh = dispatch_suppress(q->env->st, t->channel, "profile", t->profile, "unsubscribed",
                                  "link", now, err, sizeof err);
    if (fresh < 0) {
        log_error("http: unsubscribe: %s", err);
        http_error(q, 500, "internal", NULL, "the unsubscribe could not be recorded; retry");
        free(tp);
        return;
    }
    log_info("http: profile %s unsubscribed from %s (%s %s)%s", t->profile, t->channel, t->origin,
             t->name, fresh ? "" : ", again");
    json_t *ans = json_pack("{s:b, s:s, s:s, s:b}", "unsubscribed", 1, "profile", t->profile,
                            "channel", t->channel, "already", !fresh);
    if (!fresh) {
        if (wants_html(q))
            page(q, 200, "You are unsubscribed",
                 "You were already unsubscribed: nothing more will be sent.", 0);
        else
            http_json(q, 200, ans);
        free(tp);
        return;
    }
    char ts[21];
    timestamp_format(now, ts);
    buf id;
    buf_init(&id);
    buf_addf(&id, "unsubscribed:%s:%s", t->channel, t->profile);
    json_t *data = json_pack("{s:s}", "channel", t->channel);
    if (*t->origin && *t->name)
        json_object_set_new(data, t->origin, json_string(t->name));
    if (*t->node)
        json_object_set_new(data, "node", json_string(t->node));
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:o}", "id", id.data, "type", "unsubscribed",
                           "profile", t->profile, "time", ts, "data", data);
    buf_free(&id);
    json_object_set_new(ans, "type", json_string("unsubscribed"));
    http_email_events(q, json_pack("[o]", ev), ans, wants_html(q));
    free(tp);
}

/* --- Engagement: the open pixel and click redirects -------------------
 * GET /t/o/TOKEN answers the pixel, GET /t/c/TOKEN 302 to the URL its
 * token signed (delivery/tracking.h): never to a URL the request names,
 * so no one can use baton to send people elsewhere. A genuine hit is
 * recorded against its delivery (dispatch_engagement_record); the first
 * open of a delivery, and its first click of each link, enter
 * email_opened / email_clicked into journeys, answered once committed.
 * A forged, altered or foreign token records nothing: 403 (410 expired);
 * a proof's link (no delivery key) only answers. */

static void track(http_req *q, char purpose)
{
    int click = purpose == LINK_CLICK;
    const char *secret = q->env->a->conf.http.link_secret;
    if (!secret) {
        http_error(q, 404, "not_found", NULL,
                   "tracking links are not configured (http.public_url, http.link_secret)");
        return;
    }
    linktoken_parsed *tp = xmalloc(sizeof *tp); /* 4 KB: off the pool thread's stack */
    const char *tok = q->seg[2];
    int64_t now = (int64_t)time(NULL);
    linktoken_rc rc = linktoken_verify(tok, strlen(tok), secret, purpose, now, tp);
    const linktoken *t = &tp->t;
    /* the token was signed by us; a target that is not http(s) was never
     * made by delivery/tracking, so it is refused all the same */
    if (rc == LINKTOKEN_OK && click && strncasecmp(t->link, "http://", 7) &&
        strncasecmp(t->link, "https://", 8))
        rc = LINKTOKEN_MALFORMED;
    if (rc != LINKTOKEN_OK) {
        atomic_fetch_add(&http_stats.links_refused, 1);
        log_warn("http: %s link refused (%s)", click ? "click" : "open", linktoken_rc_name(rc));
        int status = rc == LINKTOKEN_EXPIRED ? 410 : 403;
        if (click && wants_html(q))
            page(q, status, "This link does not work",
                 "This link is not valid. Use the link exactly as it is in the message.", 0);
        else
            http_error(q, status, rc == LINKTOKEN_EXPIRED ? "link_expired" : "invalid_link",
                       json_pack("{s:s}", "reason", linktoken_rc_name(rc)), "%s: %s",
                       rc == LINKTOKEN_EXPIRED ? "the link has expired" : "not a valid link",
                       linktoken_rc_name(rc));
        free(tp);
        return;
    }
    atomic_fetch_add(click ? &http_stats.clicks : &http_stats.opens, 1);
    if (click)
        snprintf(q->location, sizeof q->location, "%s", t->link);
    int as = click ? HTTP_AS_REDIRECT : HTTP_AS_PIXEL;
    dispatch_engagement e = {.kind = click ? "click" : "open",
                             .key = t->key,
                             .channel = t->channel,
                             .profile_id = t->profile,
                             .origin = t->origin,
                             .name = t->name,
                             .node = t->node,
                             .link = click ? t->link : NULL};
    int first = 0;
    char err[256];
    int found = dispatch_engagement_record(q->env->st, &e, now, &first, err, sizeof err);
    if (found < 0) /* the visitor still gets the pixel or the page */
        log_error("http: %s not recorded: %s", e.kind, err);
    if (found <= 0 || !first || !*t->profile) {
        if (click)
            redirect(q);
        else
            pixel(q);
        free(tp);
        return;
    }
    const char *type = click ? "email_clicked" : "email_opened";
    buf id;
    buf_init(&id);
    buf_addf(&id, "%s:%s", type, t->key);
    if (click) { /* one event per link of a message */
        unsigned char h[SHA256_LEN];
        sha256(t->link, strlen(t->link), h);
        buf_addc(&id, ':');
        for (int i = 0; i < 8; i++)
            buf_addf(&id, "%02x", h[i]);
    }
    char ts[21];
    timestamp_format(now, ts);
    json_t *data = json_pack("{s:s, s:s}", "channel", t->channel, "key", t->key);
    if (*t->origin && *t->name)
        json_object_set_new(data, t->origin, json_string(t->name));
    if (*t->node)
        json_object_set_new(data, "node", json_string(t->node));
    if (click)
        json_object_set_new(data, "link", json_string(t->link));
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:o}", "id", id.data, "type", type, "profile",
                           t->profile, "time", ts, "data", data);
    buf_free(&id);
    free(tp);
    http_email_events(q, json_pack("[o]", ev), json_object(), as);
}

void http_track_open(http_req *q)
{
    track(q, LINK_OPEN);
}

void http_track_click(http_req *q)
{
    track(q, LINK_CLICK);
}
