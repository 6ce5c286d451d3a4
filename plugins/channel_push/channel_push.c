/* channel_push — push notifications, over MQTT (libmosquitto) or to an
 * HTTP endpoint (libcurl multi: a web-push / FCM-style JSON API).
 *
 * The payload is the `payload` template, or by default a JSON object of
 * the message's parts ({"title": ..., "body": ...}) plus "key" and
 * "profile". format() writes, for MQTT, "PUBLISH <topic> qos=1\r\n\r\n"
 * then the payload; for HTTP, the request as channel_sms does.
 *
 * MQTT: each worker keeps one client connection; deliver() publishes the
 * batch at QoS 1 with up to `inflight` unacknowledged messages and a
 * message is OK only once the broker's PUBACK came back (provider id:
 * "mid:<n>"). A lost connection or a missing acknowledgement is RETRY;
 * the next batch reconnects. A topic that cannot be published to
 * (malformed, too long) is ERROR. QoS 0 is accepted for brokers that
 * need it, and is then OK once written. HTTP: 2xx OK ("id" of a JSON
 * answer, or "name" as FCM says it), 408/429/5xx RETRY, other 4xx ERROR. */
#include <baton/baton.h>

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <mosquitto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const mode_choices[] = {"mqtt", "http", NULL};

static const baton_config_key keys[] = {
    {.name = "mode", .type = BATON_CFG_ENUM, .default_value = "mqtt", .choices = mode_choices},
    {.name = "broker",
     .type = BATON_CFG_STRING,
     .default_value = "127.0.0.1:1883",
     .help = "mqtt: host:port of the broker"},
    {.name = "topic",
     .type = BATON_CFG_TEMPLATE,
     .help = "mqtt: the topic, e.g. \"push/{{ profile.id }}\" (required in mqtt mode; '/', '+', "
             "'#' and '%' in values percent-encoded)"},
    {.name = "qos",
     .type = BATON_CFG_INT,
     .default_value = "1",
     .has_range = 1,
     .min = 0,
     .max = 1,
     .help = "mqtt: 1 waits for the broker's acknowledgement (0: fire and forget)"},
    {.name = "retain", .type = BATON_CFG_BOOL, .default_value = "false"},
    {.name = "client_id",
     .type = BATON_CFG_STRING,
     .default_value = "baton",
     .help = "mqtt: client id prefix; each worker adds -<pid>-<n>"},
    {.name = "username", .type = BATON_CFG_STRING},
    {.name = "password", .type = BATON_CFG_STRING, .help = "use \"${env:NAME}\""},
    {.name = "url",
     .type = BATON_CFG_TEMPLATE,
     .help = "http: the endpoint (required in http mode)"},
    {.name = "headers", .type = BATON_CFG_LIST, .help = "http: [ \"X-Api-Key: ...\" ]"},
    {.name = "token", .type = BATON_CFG_STRING, .help = "http: a bearer token"},
    {.name = "payload",
     .type = BATON_CFG_TEMPLATE,
     .help = "the payload as a template over the row plus key, profile_id and the parts "
             "(values JSON-escaped when it is a JSON object or array, {{{ }}} as is); default: a "
             "JSON object of the parts"},
    {.name = "inflight",
     .type = BATON_CFG_INT,
     .default_value = "100",
     .has_range = 1,
     .min = 1,
     .max = 65535,
     .help = "messages awaiting acknowledgement at once, per worker"},
    {.name = "timeout",
     .type = BATON_CFG_DURATION,
     .default_value = "10s",
     .help = "connecting, and waiting for a batch's acknowledgements"},
    {0}};

typedef struct push {
    baton_instance *inst;
    const baton_host *h;
    int http;
    char host[256];
    int port;
    const char *topic_text, *url_text, *payload_text;
    baton_template *topic_t, *url_t, *payload_t;
    int qos, retain;
    const char *client_id, *user, *pass;
    struct curl_slist *headers;
    long inflight, timeout_ms;
    int seq;
} push;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ */
/* Payload and topic                                                   */
/* ------------------------------------------------------------------ */

static baton_record *context(push *p, const baton_message *m)
{
    const baton_host *h = p->h;
    baton_record *r = h->record_new();
    baton_value v;
    for (size_t i = 0; m->row && i < h->record_count(m->row); i++) {
        const char *name = h->record_name(m->row, i);
        if (h->record_get(m->row, name, &v) == 0)
            h->record_set(r, name, &v);
    }
    v.type = BATON_T_STRING;
    for (size_t i = 0; i < m->nparts; i++) {
        v.v.s.ptr = m->part_values[i];
        v.v.s.len = strlen(m->part_values[i]);
        h->record_set(r, m->part_names[i], &v);
    }
    v.v.s.ptr = m->key;
    v.v.s.len = strlen(m->key);
    h->record_set(r, "key", &v);
    if (m->profile_id) {
        v.v.s.ptr = m->profile_id;
        v.v.s.len = strlen(m->profile_id);
        h->record_set(r, "profile_id", &v);
    }
    return r;
}

static int render(push *p, baton_template *t, const char *text, const baton_record *ctx,
                  baton_buf *out, const char *what, char *err, size_t errlen)
{
    if (!t) {
        p->h->buf_append(out, text, strlen(text));
        return 0;
    }
    if (p->h->template_render(t, ctx, out) != 0) {
        snprintf(err, errlen, "%s: the template could not be rendered", what);
        return -1;
    }
    return 0;
}

/* Whether jansson takes s as a string: UTF-8 (ASCII needs no look). */
static int json_text(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p >= 0x80) {
            json_t *j = json_string(s);
            int ok = j != NULL;
            json_decref(j);
            return ok;
        }
    return 1;
}

/* "name":"value" after a { or a comma; a member jansson would leave out
 * (not UTF-8) is left out */
static void json_member(const baton_host *h, baton_buf *out, int *first, const char *name,
                        const char *value)
{
    if (!json_text(name) || !json_text(value))
        return;
    h->buf_append(out, *first ? "{" : ",", 1);
    *first = 0;
    h->json_string(out, name, strlen(name));
    h->buf_append(out, ":", 1);
    h->json_string(out, value, strlen(value));
}

/* topic (mqtt) or url (http), and the payload */
static int build(push *p, const baton_message *m, baton_buf *where, baton_buf *payload, char *err,
                 size_t errlen)
{
    const baton_host *h = p->h;
    baton_record *ctx = (p->topic_t || p->url_t || p->payload_t) ? context(p, m) : NULL;
    int rc = -1;
    if (p->http ? render(p, p->url_t, p->url_text, ctx, where, "url", err, errlen)
                : render(p, p->topic_t, p->topic_text, ctx, where, "topic", err, errlen))
        goto out;
    if (!p->http) {
        size_t len;
        const char *t = h->buf_data(where, &len);
        if (!len || strpbrk(t, "+#") || len > 65535) {
            snprintf(err, errlen, "not a topic to publish to: '%s'", t);
            goto out;
        }
    }
    if (p->payload_t || p->payload_text) {
        rc = render(p, p->payload_t, p->payload_text, ctx, payload, "payload", err, errlen);
        goto out;
    }
    /* {"<part>":"...",...,"key":"...","profile":"..."}, written as
     * jansson would write it, without building its objects */
    int first = 1;
    for (size_t i = 0; i < m->nparts; i++)
        if (strcmp(m->part_names[i], "key") &&
            (!m->profile_id || strcmp(m->part_names[i], "profile")))
            json_member(h, payload, &first, m->part_names[i], m->part_values[i]);
    json_member(h, payload, &first, "key", m->key);
    if (m->profile_id)
        json_member(h, payload, &first, "profile", m->profile_id);
    h->buf_append(payload, first ? "{}" : "}", first ? 2 : 1);
    rc = 0;
out:
    if (ctx)
        h->record_free(ctx);
    return rc;
}

static int push_format(void *state, const baton_message *m, baton_buf *out, char *err,
                       size_t errlen)
{
    push *p = state;
    const baton_host *h = p->h;
    baton_buf *where = h->buf_new(), *payload = h->buf_new();
    int rc = build(p, m, where, payload, err, errlen);
    if (rc == 0) {
        if (p->http) {
            h->buf_printf(out, "POST %s HTTP/1.1\r\n", h->buf_data(where, NULL));
            for (struct curl_slist *l = p->headers; l; l = l->next)
                h->buf_printf(out, "%s\r\n", l->data);
        } else {
            h->buf_printf(out, "PUBLISH %s qos=%d%s\r\n", h->buf_data(where, NULL), p->qos,
                          p->retain ? " retain" : "");
        }
        h->buf_append(out, "\r\n", 2);
        size_t len;
        const char *d = h->buf_data(payload, &len);
        h->buf_append(out, d, len);
    }
    h->buf_free(where);
    h->buf_free(payload);
    return rc;
}

/* ------------------------------------------------------------------ */
/* MQTT                                                                */
/* ------------------------------------------------------------------ */

typedef struct mconn {
    struct mosquitto *mosq;
    int connected;
    /* the batch being acknowledged: mid -> index, open addressing */
    int *mids;
    size_t *idx;
    size_t cap;
    baton_delivery *out;
    const baton_message *const *msgs; /* the batch: acknowledged ones are reported */
    const baton_host *h;
    size_t waiting;
    char why[256];
} mconn;

static void on_publish(struct mosquitto *mosq, void *obj, int mid)
{
    mconn *c = obj;
    if (!c->cap)
        return;
    for (size_t i = (size_t)mid & (c->cap - 1);; i = (i + 1) & (c->cap - 1)) {
        if (c->mids[i] == 0)
            return; /* an acknowledgement from an earlier batch */
        if (c->mids[i] == mid) {
            baton_delivery *d = &c->out[c->idx[i]];
            if (d->status != BATON_OK) {
                d->status = BATON_OK;
                d->reason[0] = '\0';
                snprintf(d->provider_id, sizeof d->provider_id, "mid:%d", mid);
                c->waiting--;
                baton_deliver_done(c->h, c->msgs[c->idx[i]], d);
            }
            return;
        }
    }
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
    mconn *c = obj;
    c->connected = 0;
    snprintf(c->why, sizeof c->why, "MQTT: the broker closed the connection (%s)",
             mosquitto_strerror(rc));
}

static void *mqtt_open(push *p)
{
    mconn *c = BATON_CHECKED(calloc(1, sizeof *c));
    char id[128];
    snprintf(id, sizeof id, "%s-%d-%d", p->client_id, (int)getpid(),
             __atomic_add_fetch(&p->seq, 1, __ATOMIC_SEQ_CST));
    c->mosq = mosquitto_new(id, true, c);
    if (!c->mosq) {
        free(c);
        return NULL;
    }
    mosquitto_int_option(c->mosq, MOSQ_OPT_SEND_MAXIMUM, (int)p->inflight);
    /* a batch ends waiting for its last acknowledgements: no Nagle delay */
    mosquitto_int_option(c->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_max_inflight_messages_set(c->mosq, (unsigned)p->inflight);
    mosquitto_publish_callback_set(c->mosq, on_publish);
    mosquitto_disconnect_callback_set(c->mosq, on_disconnect);
    if (p->user)
        mosquitto_username_pw_set(c->mosq, p->user, p->pass);
    return c;
}

static void mqtt_close(mconn *c)
{
    if (!c)
        return;
    if (c->connected)
        mosquitto_disconnect(c->mosq);
    mosquitto_destroy(c->mosq);
    free(c->mids);
    free(c->idx);
    free(c);
}

/* Connect (again) and wait for the broker's CONNACK. */
static int mqtt_connect(push *p, mconn *c)
{
    if (c->connected)
        return 0;
    int keepalive = 60;
    int rc = mosquitto_connect(c->mosq, p->host, p->port, keepalive);
    if (rc != MOSQ_ERR_SUCCESS) {
        snprintf(c->why, sizeof c->why, "MQTT %.64s:%d: %s", p->host, p->port,
                 rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        return -1;
    }
    c->connected = 1;
    return 0;
}

static void mqtt_deliver(push *p, mconn *c, const baton_message *const *msgs, size_t n,
                         baton_delivery *out)
{
    const baton_host *h = p->h;
    if (!c) {
        for (size_t i = 0; i < n; i++) {
            out[i].status = BATON_RETRY;
            snprintf(out[i].reason, sizeof out[i].reason, "MQTT: no client");
        }
        return;
    }
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    if (cap > c->cap) {
        free(c->mids);
        free(c->idx);
        c->mids = BATON_CHECKED(malloc(cap * sizeof *c->mids));
        c->idx = BATON_CHECKED(malloc(cap * sizeof *c->idx));
    }
    c->cap = cap;
    memset(c->mids, 0, cap * sizeof *c->mids);
    c->out = out;
    c->msgs = msgs;
    c->h = h;
    c->waiting = 0;
    c->why[0] = '\0';
    if (mqtt_connect(p, c) != 0) {
        for (size_t i = 0; i < n; i++) {
            out[i].status = BATON_RETRY;
            snprintf(out[i].reason, sizeof out[i].reason, "%s", c->why);
        }
        c->cap = 0;
        return;
    }
    baton_buf *topic = h->buf_new(), *payload = h->buf_new();
    /* messages go on the wire in chunks of the in-flight window (what
     * passes it waits in libmosquitto, not sent): one mark per chunk */
    size_t chunk = p->inflight > 0 && p->inflight < 32 ? (size_t)p->inflight : 32, marked = 0;
    for (size_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        if (i == marked) {
            marked = i + chunk < n ? i + chunk : n;
            baton_deliver_wire(h, msgs + i, marked - i);
        }
        h->buf_reset(topic);
        h->buf_reset(payload);
        char err[256] = "";
        if (build(p, msgs[i], topic, payload, err, sizeof err) != 0) {
            out[i].status = BATON_ERROR;
            snprintf(out[i].reason, sizeof out[i].reason, "%s", err);
            baton_deliver_done(h, msgs[i], &out[i]);
            continue;
        }
        size_t plen;
        const char *pl = h->buf_data(payload, &plen);
        int mid = 0;
        int rc = mosquitto_publish(c->mosq, &mid, h->buf_data(topic, NULL), (int)plen, pl, p->qos,
                                   p->retain);
        if (rc == MOSQ_ERR_SUCCESS && p->qos == 0) {
            out[i].status = BATON_OK;
            snprintf(out[i].provider_id, sizeof out[i].provider_id, "mid:%d", mid);
            baton_deliver_done(h, msgs[i], &out[i]);
            continue;
        }
        if (rc != MOSQ_ERR_SUCCESS) {
            int perm = rc == MOSQ_ERR_INVAL || rc == MOSQ_ERR_PAYLOAD_SIZE ||
                       rc == MOSQ_ERR_MALFORMED_UTF8 || rc == MOSQ_ERR_OVERSIZE_PACKET;
            out[i].status = perm ? BATON_ERROR : BATON_RETRY;
            snprintf(out[i].reason, sizeof out[i].reason, "MQTT publish: %s",
                     mosquitto_strerror(rc));
            if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST)
                c->connected = 0;
            continue;
        }
        out[i].status = BATON_RETRY;
        snprintf(out[i].reason, sizeof out[i].reason,
                 "MQTT: no acknowledgement from the broker in time");
        size_t k = (size_t)mid & (cap - 1);
        while (c->mids[k])
            k = (k + 1) & (cap - 1);
        c->mids[k] = mid;
        c->idx[k] = i;
        c->waiting++;
        /* let acknowledgements in while we go: libmosquitto holds back
         * what passes the in-flight window and sends it as acks arrive */
        if (c->waiting % 32 == 0)
            mosquitto_loop(c->mosq, 0, 64);
    }
    int64_t end = now_ms() + p->timeout_ms;
    while (c->waiting && c->connected && now_ms() < end) {
        int rc = mosquitto_loop(c->mosq, 50, 64);
        if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_ERRNO) {
            c->connected = 0;
            if (!c->why[0])
                snprintf(c->why, sizeof c->why, "MQTT: connection lost (%s)",
                         mosquitto_strerror(rc));
        }
    }
    if (c->waiting) {
        for (size_t i = 0; i < n; i++)
            if (out[i].status == BATON_RETRY && c->why[0] &&
                strstr(out[i].reason, "no acknowledgement"))
                snprintf(out[i].reason, sizeof out[i].reason, "%s", c->why);
        if (c->connected) { /* a broker that stopped answering: start afresh */
            mosquitto_disconnect(c->mosq);
            c->connected = 0;
        }
    }
    c->cap = 0; /* late acknowledgements belong to no batch */
    h->buf_free(topic);
    h->buf_free(payload);
}

/* ------------------------------------------------------------------ */
/* HTTP                                                                */
/* ------------------------------------------------------------------ */

typedef struct hx {
    CURL *easy;
    baton_buf *url, *body, *resp;
    size_t index;
    char err[CURL_ERROR_SIZE];
    const baton_host *h;
} hx;

typedef struct hconn {
    CURLM *multi;
    hx *x;
    size_t nx;
} hconn;

static size_t on_data(char *d, size_t size, size_t n, void *ud)
{
    hx *x = ud;
    size_t len = size * n, have;
    x->h->buf_data(x->resp, &have);
    if (have < 65536)
        x->h->buf_append(x->resp, d, have + len > 65536 ? 65536 - have : len);
    return len;
}

static hconn *http_open(push *p)
{
    hconn *c = BATON_CHECKED(calloc(1, sizeof *c));
    c->multi = curl_multi_init();
    long n = p->inflight < 256 ? p->inflight : 256;
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, n);
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, n);
    c->nx = (size_t)n;
    c->x = BATON_CHECKED(calloc(c->nx, sizeof *c->x));
    for (size_t i = 0; i < c->nx; i++) {
        c->x[i].easy = curl_easy_init();
        c->x[i].h = p->h;
        c->x[i].url = p->h->buf_new();
        c->x[i].body = p->h->buf_new();
        c->x[i].resp = p->h->buf_new();
    }
    return c;
}

static void http_close(push *p, hconn *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nx; i++) {
        curl_easy_cleanup(c->x[i].easy);
        p->h->buf_free(c->x[i].url);
        p->h->buf_free(c->x[i].body);
        p->h->buf_free(c->x[i].resp);
    }
    free(c->x);
    curl_multi_cleanup(c->multi);
    free(c);
}

static void http_classify(push *p, hx *x, CURLcode cc, baton_delivery *d)
{
    if (cc != CURLE_OK) {
        d->status = BATON_RETRY;
        snprintf(d->reason, sizeof d->reason, "%s", x->err[0] ? x->err : curl_easy_strerror(cc));
        return;
    }
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    size_t len;
    const char *body = p->h->buf_data(x->resp, &len);
    json_t *j = len ? json_loadb(body, len, 0, NULL) : NULL;
    if (code >= 200 && code < 300) {
        d->status = BATON_OK;
        json_t *id = json_object_get(j, "id");
        if (!id)
            id = json_object_get(j, "name");
        if (json_is_string(id))
            snprintf(d->provider_id, sizeof d->provider_id, "%s", json_string_value(id));
        else if (json_is_integer(id))
            snprintf(d->provider_id, sizeof d->provider_id, "%lld",
                     (long long)json_integer_value(id));
    } else {
        d->status = code == 408 || code == 429 || code >= 500 ? BATON_RETRY : BATON_ERROR;
        json_t *e = json_object_get(j, "error");
        if (json_is_object(e))
            e = json_object_get(e, "message");
        if (json_is_string(e))
            snprintf(d->reason, sizeof d->reason, "HTTP %ld: %s", code, json_string_value(e));
        else
            snprintf(d->reason, sizeof d->reason, "HTTP %ld: %.200s", code, body);
    }
    json_decref(j);
}

static void http_deliver(push *p, hconn *c, const baton_message *const *msgs, size_t n,
                         baton_delivery *out)
{
    const baton_host *h = p->h;
    hx **freex = BATON_CHECKED(calloc(c->nx, sizeof *freex));
    size_t nfree = 0, next = 0, running = 0;
    for (size_t i = 0; i < c->nx; i++)
        freex[nfree++] = &c->x[i];
    for (size_t i = 0; i < n; i++)
        memset(&out[i], 0, sizeof out[i]);
    /* the requests of one fill go on the wire together: one mark */
    const baton_message **wire = BATON_CHECKED(calloc(c->nx, sizeof *wire));
    hx **ready = BATON_CHECKED(calloc(c->nx, sizeof *ready));
    while (next < n || running) {
        size_t nready = 0;
        while (next < n && nfree) {
            size_t i = next++;
            hx *x = freex[nfree - 1];
            h->buf_reset(x->url);
            h->buf_reset(x->body);
            h->buf_reset(x->resp);
            char err[256] = "";
            if (build(p, msgs[i], x->url, x->body, err, sizeof err) != 0) {
                out[i].status = BATON_ERROR;
                snprintf(out[i].reason, sizeof out[i].reason, "%s", err);
                baton_deliver_done(h, msgs[i], &out[i]);
                continue;
            }
            nfree--;
            x->index = i;
            x->err[0] = '\0';
            CURL *e = x->easy;
            curl_easy_reset(e);
            size_t blen;
            const char *b = h->buf_data(x->body, &blen);
            curl_easy_setopt(e, CURLOPT_URL, h->buf_data(x->url, NULL));
            curl_easy_setopt(e, CURLOPT_HTTPHEADER, p->headers);
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)blen);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, b);
            curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, p->timeout_ms);
            curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, p->timeout_ms);
            curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
            curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
            curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
            curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->err);
            curl_easy_setopt(e, CURLOPT_PRIVATE, x);
            curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
            wire[nready] = msgs[i];
            ready[nready++] = x;
        }
        baton_deliver_wire(h, wire, nready);
        for (size_t k = 0; k < nready; k++) {
            curl_multi_add_handle(c->multi, ready[k]->easy);
            running++;
        }
        if (!running)
            break;
        int still, left;
        curl_multi_perform(c->multi, &still);
        CURLMsg *msg;
        while ((msg = curl_multi_info_read(c->multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            hx *x;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            http_classify(p, x, msg->data.result, &out[x->index]);
            baton_deliver_done(h, msgs[x->index], &out[x->index]);
            curl_multi_remove_handle(c->multi, msg->easy_handle);
            freex[nfree++] = x;
            running--;
        }
        if (running && (next >= n || !nfree))
            curl_multi_poll(c->multi, NULL, 0, 100, NULL);
    }
    free(wire);
    free(ready);
    free(freex);
}

/* ------------------------------------------------------------------ */
/* Ops and lifecycle                                                   */
/* ------------------------------------------------------------------ */

static void *push_worker_open(void *state)
{
    push *p = state;
    return p->http ? (void *)http_open(p) : mqtt_open(p);
}

static void push_worker_close(void *state, void *conn)
{
    push *p = state;
    if (p->http)
        http_close(p, conn);
    else
        mqtt_close(conn);
}

static void push_deliver(void *state, void *conn, const baton_message *const *msgs, size_t n,
                         baton_delivery *out)
{
    push *p = state;
    if (p->http)
        http_deliver(p, conn, msgs, n, out);
    else
        mqtt_deliver(p, conn, msgs, n, out);
}

static baton_template *maybe_template(push *p, const char *text, int escape, const char *what,
                                      int *failed)
{
    if (!text || !strstr(text, "{{"))
        return NULL;
    char err[256];
    baton_template *t = p->h->template_compile_as(p->inst, text, escape, err, sizeof err);
    if (!t && !*failed) {
        p->h->set_error(p->inst, "%s: %s", what, err);
        *failed = 1;
    }
    return t;
}

static void push_destroy(void *state)
{
    push *p = state;
    if (!p)
        return;
    if (p->topic_t)
        p->h->template_free(p->topic_t);
    if (p->url_t)
        p->h->template_free(p->url_t);
    if (p->payload_t)
        p->h->template_free(p->payload_t);
    curl_slist_free_all(p->headers);
    free(p);
}

static int push_init(baton_instance *inst, const baton_host *h, void **state)
{
    push *p = BATON_CHECKED(calloc(1, sizeof *p));
    int failed = 0;
    p->inst = inst;
    p->h = h;
    p->http = h->config_enum(inst, "mode") == 1; /* mqtt, http */
    const char *broker = h->config_string(inst, "broker");
    const char *colon = strrchr(broker, ':');
    snprintf(p->host, sizeof p->host, "%.*s", colon ? (int)(colon - broker) : (int)strlen(broker),
             broker);
    p->port = colon ? atoi(colon + 1) : 1883;
    if (p->port <= 0 || p->port > 65535 || !p->host[0]) {
        h->set_error(inst, "broker = \"%s\": expected \"host:port\"", broker);
        failed = 1;
    }
    p->topic_text = h->config_string(inst, "topic");
    p->url_text = h->config_string(inst, "url");
    p->payload_text = h->config_string(inst, "payload");
    if (!failed && !p->http && !p->topic_text) {
        h->set_error(inst, "mode = \"mqtt\" needs topic (e.g. \"push/{{ profile.id }}\")");
        failed = 1;
    }
    if (!failed && p->http && !p->url_text) {
        h->set_error(inst, "mode = \"http\" needs url");
        failed = 1;
    }
    p->topic_t = maybe_template(p, p->topic_text, BATON_ESCAPE_TOPIC, "topic", &failed);
    p->url_t = maybe_template(p, p->url_text, BATON_ESCAPE_URL, "url", &failed);
    /* a payload that opens a JSON object or array is JSON; else text */
    const char *lead = p->payload_text ? p->payload_text : "";
    lead += strspn(lead, " \t\r\n");
    int json = *lead == '{' || *lead == '[';
    p->payload_t = maybe_template(p, p->payload_text, json ? BATON_ESCAPE_JSON : BATON_ESCAPE_TEXT,
                                  "payload", &failed);
    p->qos = (int)h->config_int(inst, "qos");
    p->retain = h->config_bool(inst, "retain");
    p->client_id = h->config_string(inst, "client_id");
    p->user = h->config_string(inst, "username");
    p->pass = h->config_string(inst, "password");
    p->inflight = (long)h->config_int(inst, "inflight");
    p->timeout_ms = (long)h->config_duration_ms(inst, "timeout");
    for (size_t i = 0; i < h->config_list_count(inst, "headers") && !failed; i++) {
        const char *hd = h->config_list_item(inst, "headers", i);
        if (!strchr(hd, ':') || strchr(hd, '\r') || strchr(hd, '\n')) {
            h->set_error(inst, "headers[%zu] = \"%s\": expected \"Name: value\"", i, hd);
            failed = 1;
        }
        p->headers = curl_slist_append(p->headers, hd);
    }
    const char *tok = h->config_string(inst, "token");
    if (tok) {
        char line[1024];
        snprintf(line, sizeof line, "Authorization: Bearer %s", tok);
        p->headers = curl_slist_append(p->headers, line);
    }
    if (p->http) {
        p->headers = curl_slist_append(p->headers, "Content-Type: application/json");
        p->headers = curl_slist_append(p->headers, "Expect:");
    }
    if (failed) {
        push_destroy(p);
        return -1;
    }
    *state = p;
    return 0;
}

static int push_start(void *state)
{
    push *p = state;
    if (p->http)
        curl_global_init(CURL_GLOBAL_DEFAULT);
    else
        mosquitto_lib_init();
    return 0;
}

static const char *const parts[] = {"title", "body", "url", "data", NULL};
static const baton_channel_ops ops = {
    .size = sizeof(baton_channel_ops),
    .parts = parts,
    .format = push_format,
    .worker_open = push_worker_open,
    .worker_close = push_worker_close,
    .deliver = push_deliver,
};

BATON_PLUGIN(.name = "channel_push", .version = "1.0.0",
             .description = "push notifications over MQTT (QoS 1, libmosquitto) or HTTP (libcurl)",
             .kind = BATON_KIND_CHANNEL, .config = keys, .init = push_init, .start = push_start,
             .destroy = push_destroy, .ops = &ops)
