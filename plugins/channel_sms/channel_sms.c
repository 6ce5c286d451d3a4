/* channel_sms — a generic HTTP SMS gateway, with libcurl's multi interface.
 *
 * format() writes the exact request: "METHOD URL HTTP/1.1", the headers,
 * a blank line and the body — JSON ({"to": ..., "text": ..., params...})
 * or a form (to=...&text=...), field names as configured, or the `body`
 * template as written. deliver() sends a batch with up to `inflight`
 * requests at once per worker, on the worker's reused connections, and
 * maps each answer: 2xx OK (the response's `id_field` as provider id)
 * unless the body says `error_match`; 408, 429 and 5xx RETRY; other 4xx
 * ERROR; no answer (refused, timed out) RETRY. The response's
 * `error_field` (or its first 200 bytes) is the reason. Each message's
 * segment count is computed (GSM-7 when every character is in the GSM
 * 03.38 alphabet, else UCS-2) and recorded. */
#include <baton/baton.h>

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const method_choices[] = {"POST", "PUT", "GET", NULL};
static const char *const format_choices[] = {"json", "form", NULL};
static const char *const auth_choices[] = {"none", "basic", "bearer", NULL};

static const baton_config_key keys[] = {
    {.name = "url",
     .type = BATON_CFG_TEMPLATE,
     .required = 1,
     .help = "the gateway's endpoint; may hold {{ }} placeholders over the row"},
    {.name = "method",
     .type = BATON_CFG_ENUM,
     .default_value = "POST",
     .choices = method_choices,
     .help = "GET sends the fields in the query string"},
    {.name = "format",
     .type = BATON_CFG_ENUM,
     .default_value = "json",
     .choices = format_choices,
     .help = "the body: a JSON object or an application/x-www-form-urlencoded form"},
    {.name = "to_field",
     .type = BATON_CFG_STRING,
     .default_value = "to",
     .help = "the body field holding the recipient's number"},
    {.name = "text_field",
     .type = BATON_CFG_STRING,
     .default_value = "text",
     .help = "the body field holding the message text"},
    {.name = "key_field",
     .type = BATON_CFG_STRING,
     .help = "a body field for the idempotency key (gateways that deduplicate by reference: a "
             "request left unanswered is then retried, not uncertain)"},
    {.name = "params",
     .type = BATON_CFG_LIST,
     .help = "more body fields: [ \"from=Shop\", \"campaign={{ tier }}\" ]"},
    {.name = "body",
     .type = BATON_CFG_TEMPLATE,
     .help = "the whole body instead, written as a template over the row plus to, text and key "
             "(values form-encoded with format = \"form\", JSON-escaped in a JSON body; {{{ }}} as "
             "is)"},
    {.name = "headers", .type = BATON_CFG_LIST, .help = "[ \"X-Api-Version: 2\" ]"},
    {.name = "auth", .type = BATON_CFG_ENUM, .default_value = "none", .choices = auth_choices},
    {.name = "username", .type = BATON_CFG_STRING, .help = "basic auth user"},
    {.name = "password", .type = BATON_CFG_STRING, .help = "basic auth password (\"${env:NAME}\")"},
    {.name = "token", .type = BATON_CFG_STRING, .help = "bearer token (\"${env:NAME}\")"},
    {.name = "id_field",
     .type = BATON_CFG_STRING,
     .default_value = "id",
     .help = "dotted path of the provider's message id in a JSON response (\"messages.0.id\")"},
    {.name = "error_field",
     .type = BATON_CFG_STRING,
     .default_value = "error",
     .help = "dotted path of the error text in a JSON response"},
    {.name = "error_match",
     .type = BATON_CFG_STRING,
     .help = "a 2xx response whose body contains this is a permanent error"},
    {.name = "inflight",
     .type = BATON_CFG_INT,
     .default_value = "32",
     .has_range = 1,
     .min = 1,
     .max = 1024,
     .help = "requests in flight at once per worker"},
    {.name = "timeout",
     .type = BATON_CFG_DURATION,
     .default_value = "10s",
     .help = "one request's time limit, connecting included"},
    {.name = "max_segments",
     .type = BATON_CFG_INT,
     .default_value = "10",
     .has_range = 1,
     .min = 1,
     .max = 255,
     .help = "longer messages are refused"},
    {0}};

typedef struct param {
    char *name;
    const char *text;
    baton_template *t;
} param;

typedef struct sms {
    baton_instance *inst;
    const baton_host *h;
    const char *url_text;
    baton_template *url_t;
    const char *body_text;
    baton_template *body_t;
    int method; /* 0 POST, 1 PUT, 2 GET */
    int form;
    const char *to_field, *text_field, *key_field;
    param *params;
    size_t nparams;
    struct curl_slist *headers; /* configured + auth + content type */
    const char *id_field, *error_field, *error_match;
    long inflight, timeout_ms, max_segments;
} sms;

/* ------------------------------------------------------------------ */
/* Segments                                                            */
/* ------------------------------------------------------------------ */

/* GSM 03.38: the basic set (one septet) and the extension (two). */
static int gsm_septets(uint32_t c)
{
    static const char basic[] = "@$\n\r_ !\"#%&'()*+,-./0123456789:;<=>?"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    static const uint32_t basic_u[] = {
        0xA3,  0xA5,  0xE8,  0xE9,  0xF9,  0xEC,  0xF2,  0xC7,  0xD8,  0xF8, 0xC5, 0xE5, 0x394,
        0x3A6, 0x393, 0x39B, 0x3A9, 0x3A0, 0x3A8, 0x3A3, 0x398, 0x39E, 0xC6, 0xE6, 0xDF, 0xC9,
        0xA4,  0xA1,  0xC4,  0xD6,  0xD1,  0xDC,  0xA7,  0xBF,  0xE4,  0xF6, 0xF1, 0xFC, 0xE0};
    if (c < 128 && c && strchr(basic, (int)c))
        return 1;
    for (size_t i = 0; i < sizeof basic_u / sizeof basic_u[0]; i++)
        if (basic_u[i] == c)
            return 1;
    if (c && c < 128 && strchr("^{}\\[~]|\f", (int)c))
        return 2;
    if (c == 0x20AC) /* euro sign */
        return 2;
    return 0;
}

static uint32_t utf8_next(const unsigned char **p)
{
    const unsigned char *s = *p;
    uint32_t c = *s++;
    int more = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
    if (more)
        c &= 0x3F >> more;
    while (more-- && (*s & 0xC0) == 0x80)
        c = c << 6 | (*s++ & 0x3F);
    *p = s;
    return c;
}

static unsigned segments(const char *text)
{
    size_t septets = 0, units = 0;
    int gsm = 1;
    for (const unsigned char *p = (const unsigned char *)text; *p;) {
        uint32_t c = utf8_next(&p);
        int s = gsm_septets(c);
        if (!s)
            gsm = 0;
        septets += (size_t)s;
        units += c > 0xFFFF ? 2 : 1;
    }
    if (gsm)
        return septets <= 160 ? 1 : (unsigned)((septets + 152) / 153);
    return units <= 70 ? 1 : (unsigned)((units + 66) / 67);
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */
/* ------------------------------------------------------------------ */

/* The record templates see: the row, plus to, text and key. */
static baton_record *context(sms *s, const baton_message *m, const char *text)
{
    const baton_host *h = s->h;
    baton_record *r = h->record_new();
    baton_value v;
    for (size_t i = 0; m->row && i < h->record_count(m->row); i++) {
        const char *name = h->record_name(m->row, i);
        if (h->record_get(m->row, name, &v) == 0)
            h->record_set(r, name, &v);
    }
    const char *names[] = {"to", "text", "key"};
    const char *vals[] = {m->recipient, text, m->key};
    for (int i = 0; i < 3; i++) {
        v.type = BATON_T_STRING;
        v.v.s.ptr = vals[i];
        v.v.s.len = strlen(vals[i]);
        h->record_set(r, names[i], &v);
    }
    return r;
}

static int render(sms *s, baton_template *t, const char *text, const baton_record *ctx,
                  baton_buf *out, char *err, size_t errlen, const char *what)
{
    if (!t) {
        s->h->buf_append(out, text, strlen(text));
        return 0;
    }
    if (s->h->template_render(t, ctx, out) != 0) {
        snprintf(err, errlen, "%s: the template could not be rendered", what);
        return -1;
    }
    return 0;
}

static void form_escape(const baton_host *h, baton_buf *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~", *p)) {
            h->buf_append(out, p, 1);
        } else if (*p == ' ') {
            h->buf_append(out, "+", 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            h->buf_append(out, e, 3);
        }
    }
}

/* URL and body of the request for m, into url and body. */
static int build(sms *s, const baton_message *m, baton_buf *url, baton_buf *body, unsigned *segs,
                 char *err, size_t errlen)
{
    const baton_host *h = s->h;
    const char *text = baton_message_part(m, "text");
    if (!text || !*text) {
        snprintf(err, errlen, "the message has no text");
        return -1;
    }
    if (!m->recipient || !*m->recipient) {
        snprintf(err, errlen, "no phone number");
        return -1;
    }
    for (const char *p = m->recipient; *p; p++)
        if (!strchr("+0123456789 -.()", *p)) {
            snprintf(err, errlen, "not a phone number: '%s'", m->recipient);
            return -1;
        }
    *segs = segments(text);
    if (*segs > (unsigned)s->max_segments) {
        snprintf(err, errlen, "the text needs %u segments, more than max_segments = %ld", *segs,
                 s->max_segments);
        return -1;
    }
    baton_record *ctx = (s->url_t || s->body_t || s->nparams) ? context(s, m, text) : NULL;
    int rc = -1;
    if (render(s, s->url_t, s->url_text, ctx, url, err, errlen, "url"))
        goto out;
    if (s->body_t) {
        rc = render(s, s->body_t, s->body_text, ctx, body, err, errlen, "body");
        goto out;
    }
    /* the fields: to, text, key, then params */
    size_t n = 2 + (s->key_field ? 1 : 0) + s->nparams;
    const char **names = BATON_CHECKED(calloc(n, sizeof *names));
    char **vals = BATON_CHECKED(calloc(n, sizeof *vals));
    size_t k = 0;
    names[k] = s->to_field;
    vals[k++] = BATON_CHECKED(strdup(m->recipient));
    names[k] = s->text_field;
    vals[k++] = BATON_CHECKED(strdup(text));
    if (s->key_field) {
        names[k] = s->key_field;
        vals[k++] = BATON_CHECKED(strdup(m->key));
    }
    rc = 0;
    for (size_t i = 0; i < s->nparams && rc == 0; i++) {
        baton_buf *b = h->buf_new();
        rc = render(s, s->params[i].t, s->params[i].text, ctx, b, err, errlen, s->params[i].name);
        names[k] = s->params[i].name;
        vals[k++] = BATON_CHECKED(strdup(h->buf_data(b, NULL)));
        h->buf_free(b);
    }
    if (rc == 0) {
        if (s->method == 2) { /* GET: a query string */
            const char *u = h->buf_data(url, NULL);
            char sep = strchr(u, '?') ? '&' : '?';
            for (size_t i = 0; i < k; i++) {
                h->buf_append(url, i ? "&" : &sep, 1);
                form_escape(h, url, names[i]);
                h->buf_append(url, "=", 1);
                form_escape(h, url, vals[i]);
            }
        } else if (s->form) {
            for (size_t i = 0; i < k; i++) {
                if (i)
                    h->buf_append(body, "&", 1);
                form_escape(h, body, names[i]);
                h->buf_append(body, "=", 1);
                form_escape(h, body, vals[i]);
            }
        } else {
            json_t *o = json_object();
            for (size_t i = 0; i < k; i++)
                json_object_set_new(o, names[i], json_string(vals[i]));
            char *j = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
            h->buf_append(body, j, strlen(j));
            free(j);
            json_decref(o);
        }
    }
    for (size_t i = 0; i < k; i++)
        free(vals[i]);
    free(vals);
    free(names);
out:
    if (ctx)
        h->record_free(ctx);
    return rc;
}

static const char *method_name(int m)
{
    return m == 0 ? "POST" : m == 1 ? "PUT" : "GET";
}

static int sms_format(void *state, const baton_message *m, baton_buf *out, char *err, size_t errlen)
{
    sms *s = state;
    const baton_host *h = s->h;
    baton_buf *url = h->buf_new(), *body = h->buf_new();
    unsigned segs;
    int rc = build(s, m, url, body, &segs, err, errlen);
    if (rc == 0) {
        h->buf_printf(out, "%s %s HTTP/1.1\r\n", method_name(s->method), h->buf_data(url, NULL));
        for (struct curl_slist *l = s->headers; l; l = l->next)
            h->buf_printf(out, "%s\r\n", l->data);
        h->buf_append(out, "\r\n", 2);
        size_t len;
        const char *b = h->buf_data(body, &len);
        h->buf_append(out, b, len);
    }
    h->buf_free(url);
    h->buf_free(body);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Delivery                                                            */
/* ------------------------------------------------------------------ */

typedef struct xfer {
    CURL *easy;
    const baton_host *h;
    baton_buf *url, *body, *resp;
    size_t index; /* into the batch */
    char curl_err[CURL_ERROR_SIZE];
} xfer;

typedef struct conn {
    CURLM *multi;
    xfer *x; /* inflight of them, reused */
    size_t nx;
} conn;

/* Responses are kept to 64 KiB: enough for an id or an error. */
static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    xfer *x = ud;
    size_t len = size * n, have;
    x->h->buf_data(x->resp, &have);
    if (have < 65536)
        x->h->buf_append(x->resp, p, have + len > 65536 ? 65536 - have : len);
    return len;
}

static void *sms_worker_open(void *state)
{
    sms *s = state;
    conn *c = BATON_CHECKED(calloc(1, sizeof *c));
    c->multi = curl_multi_init();
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, s->inflight);
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, s->inflight);
    c->nx = (size_t)s->inflight;
    c->x = BATON_CHECKED(calloc(c->nx, sizeof *c->x));
    for (size_t i = 0; i < c->nx; i++) {
        xfer *x = &c->x[i];
        x->easy = curl_easy_init();
        x->h = s->h;
        x->url = s->h->buf_new();
        x->body = s->h->buf_new();
        x->resp = s->h->buf_new();
        /* what every request of the handle shares, set once: a request
         * sets its URL and body only (no curl_easy_reset in between) */
        CURL *e = x->easy;
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, s->headers);
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, s->timeout_ms);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, s->timeout_ms);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->curl_err);
        curl_easy_setopt(e, CURLOPT_PRIVATE, x);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        if (s->method == 1)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT");
        else if (s->method == 2)
            curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    return c;
}

static void sms_worker_close(void *state, void *cp)
{
    sms *s = state;
    conn *c = cp;
    if (!c)
        return;
    for (size_t i = 0; i < c->nx; i++) {
        curl_easy_cleanup(c->x[i].easy);
        s->h->buf_free(c->x[i].url);
        s->h->buf_free(c->x[i].body);
        s->h->buf_free(c->x[i].resp);
    }
    free(c->x);
    curl_multi_cleanup(c->multi);
    free(c);
}

/* A dotted path into a JSON document: "messages.0.id". */
static json_t *json_path(json_t *j, const char *path)
{
    char part[128];
    while (j && *path) {
        size_t n = strcspn(path, ".");
        snprintf(part, sizeof part, "%.*s", (int)n, path);
        if (json_is_array(j)) {
            char *end;
            long i = strtol(part, &end, 10);
            j = *end ? NULL : json_array_get(j, (size_t)i);
        } else {
            j = json_object_get(j, part);
        }
        path += n + (path[n] == '.');
    }
    return j;
}

static void scalar_text(json_t *v, char *out, size_t len)
{
    if (json_is_string(v))
        snprintf(out, len, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(out, len, "%lld", (long long)json_integer_value(v));
    else if (v && !json_is_null(v)) {
        char *d = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        snprintf(out, len, "%s", d ? d : "");
        free(d);
    }
}

/* The whole request went (its headers and its body) and no status line
 * came back: the gateway may have taken it. */
static int sent_whole(const sms *s, xfer *x)
{
    long req = 0, code = 0;
    curl_off_t up = 0;
    size_t blen = 0;
    s->h->buf_data(x->body, &blen);
    curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &req);
    curl_easy_getinfo(x->easy, CURLINFO_SIZE_UPLOAD_T, &up);
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    return req > 0 && code == 0 && (s->method == 2 || up == (curl_off_t)blen);
}

static void classify(sms *s, xfer *x, CURLcode cc, baton_delivery *d)
{
    size_t len;
    const char *body = s->h->buf_data(x->resp, &len);
    if (cc != CURLE_OK) {
        /* a timeout or a lost connection once the request had all gone
         * may have sent the SMS (an HTTP POST is not safe to repeat):
         * uncertain, not sent twice, unless the gateway drops a repeat of
         * its key_field; before that, nothing reached it: retried */
        int whole = sent_whole(s, x);
        d->status = whole && !s->key_field ? BATON_UNCERTAIN : BATON_RETRY;
        const char *why = x->curl_err[0] ? x->curl_err : curl_easy_strerror(cc);
        const char *tail = whole ? " (the request had gone: it may have been delivered)" : "";
        size_t wl = strlen(why), tl = strlen(tail), room = sizeof d->reason - 1;
        if (wl > room - tl) /* the tail says what the status means: it stays */
            wl = room - tl;
        memcpy(d->reason, why, wl);
        memcpy(d->reason + wl, tail, tl + 1);
        return;
    }
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    json_t *j = len ? json_loadb(body, len, 0, NULL) : NULL;
    char why[200] = "";
    scalar_text(json_path(j, s->error_field), why, sizeof why);
    if (code >= 200 && code < 300 && !(s->error_match && strstr(body, s->error_match))) {
        d->status = BATON_OK;
        scalar_text(json_path(j, s->id_field), d->provider_id, sizeof d->provider_id);
    } else {
        d->status = code == 408 || code == 429 || code >= 500 ? BATON_RETRY : BATON_ERROR;
        if (!why[0]) {
            size_t n = len < 200 ? len : 200;
            snprintf(why, sizeof why, "%.*s", (int)n, body);
            for (char *p = why; *p; p++)
                if (*p == '\r' || *p == '\n')
                    *p = ' ';
        }
        snprintf(d->reason, sizeof d->reason, "HTTP %ld: %s", code, why);
    }
    json_decref(j);
}

static void sms_deliver(void *state, void *cp, const baton_message *const *msgs, size_t n,
                        baton_delivery *out)
{
    sms *s = state;
    conn *c = cp;
    const baton_host *h = s->h;
    size_t next = 0, running = 0;
    xfer **free_x = BATON_CHECKED(calloc(c->nx, sizeof *free_x));
    size_t nfree = 0;
    for (size_t i = 0; i < c->nx; i++)
        free_x[nfree++] = &c->x[i];
    for (size_t i = 0; i < n; i++)
        memset(&out[i], 0, sizeof out[i]);
    /* the requests of one fill go on the wire together: one mark */
    const baton_message **wire = BATON_CHECKED(calloc(c->nx, sizeof *wire));
    xfer **ready = BATON_CHECKED(calloc(c->nx, sizeof *ready));
    while (next < n || running) {
        size_t nready = 0;
        /* fill the free slots */
        while (next < n && nfree) {
            size_t i = next++;
            xfer *x = free_x[nfree - 1];
            h->buf_reset(x->url);
            h->buf_reset(x->body);
            h->buf_reset(x->resp);
            char err[256] = "";
            unsigned segs = 0;
            if (build(s, msgs[i], x->url, x->body, &segs, err, sizeof err) != 0) {
                out[i].status = BATON_ERROR;
                out[i].segments = segs;
                snprintf(out[i].reason, sizeof out[i].reason, "%s", err);
                baton_deliver_done(h, msgs[i], &out[i]);
                continue;
            }
            out[i].segments = segs;
            nfree--;
            x->index = i;
            x->curl_err[0] = '\0';
            CURL *e = x->easy; /* the rest was set once (sms_worker_open) */
            curl_easy_setopt(e, CURLOPT_URL, h->buf_data(x->url, NULL));
            if (s->method != 2) {
                size_t blen;
                const char *b = h->buf_data(x->body, &blen);
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)blen);
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, b);
            }
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
        int still;
        curl_multi_perform(c->multi, &still);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(c->multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            xfer *x;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            classify(s, x, msg->data.result, &out[x->index]);
            baton_deliver_done(h, msgs[x->index], &out[x->index]);
            curl_multi_remove_handle(c->multi, msg->easy_handle);
            free_x[nfree++] = x;
            running--;
        }
        if (running && (next >= n || !nfree))
            curl_multi_poll(c->multi, NULL, 0, 100, NULL);
    }
    free(wire);
    free(ready);
    free(free_x);
}

/* ------------------------------------------------------------------ */
/* Lifecycle                                                           */
/* ------------------------------------------------------------------ */

static baton_template *maybe_template(baton_instance *inst, const baton_host *h, const char *text,
                                      int escape, const char *what, int *failed)
{
    if (!text || !strstr(text, "{{"))
        return NULL; /* plain text: used as written */
    char err[256];
    baton_template *t = h->template_compile_as(inst, text, escape, err, sizeof err);
    if (!t) {
        h->set_error(inst, "%s: %s", what, err);
        *failed = 1;
    }
    return t;
}

static void sms_destroy(void *state)
{
    sms *s = state;
    if (!s)
        return;
    const baton_host *h = s->h;
    if (s->url_t)
        h->template_free(s->url_t);
    if (s->body_t)
        h->template_free(s->body_t);
    for (size_t i = 0; i < s->nparams; i++) {
        free(s->params[i].name);
        if (s->params[i].t)
            h->template_free(s->params[i].t);
    }
    free(s->params);
    curl_slist_free_all(s->headers);
    free(s);
}

static int sms_init(baton_instance *inst, const baton_host *h, void **state)
{
    sms *s = BATON_CHECKED(calloc(1, sizeof *s));
    int failed = 0;
    s->inst = inst;
    s->h = h;
    s->url_text = h->config_string(inst, "url");
    s->url_t = maybe_template(inst, h, s->url_text, BATON_ESCAPE_URL, "url", &failed);
    s->method = h->config_enum(inst, "method");    /* POST 0, PUT 1, GET 2 */
    s->form = h->config_enum(inst, "format") == 1; /* json, form */
    s->body_text = h->config_string(inst, "body");
    /* values go into the body as its format reads them: form-encoded, or
     * JSON-escaped in a body that is JSON (an object or an array) */
    const char *lead = s->body_text ? s->body_text + strspn(s->body_text, " \t\r\n") : "";
    int escape = s->form                          ? BATON_ESCAPE_FORM
                 : (*lead == '{' || *lead == '[') ? BATON_ESCAPE_JSON
                                                  : BATON_ESCAPE_TEXT;
    s->body_t = maybe_template(inst, h, s->body_text, escape, "body", &failed);
    s->to_field = h->config_string(inst, "to_field");
    s->text_field = h->config_string(inst, "text_field");
    s->key_field = h->config_string(inst, "key_field");
    s->id_field = h->config_string(inst, "id_field");
    s->error_field = h->config_string(inst, "error_field");
    s->error_match = h->config_string(inst, "error_match");
    s->inflight = (long)h->config_int(inst, "inflight");
    s->timeout_ms = (long)h->config_duration_ms(inst, "timeout");
    s->max_segments = (long)h->config_int(inst, "max_segments");
    if (s->body_text && s->method == 2) {
        h->set_error(inst, "body is set but method = \"GET\" sends no body");
        failed = 1;
    }
    s->nparams = h->config_list_count(inst, "params");
    s->params = BATON_CHECKED(calloc(s->nparams + 1, sizeof *s->params));
    for (size_t i = 0; i < s->nparams && !failed; i++) {
        const char *p = h->config_list_item(inst, "params", i);
        const char *eq = strchr(p, '=');
        if (!eq || eq == p) {
            h->set_error(inst, "params[%zu] = \"%s\": expected \"name=value\"", i, p);
            failed = 1;
            break;
        }
        s->params[i].name = BATON_CHECKED(strndup(p, (size_t)(eq - p)));
        s->params[i].text = eq + 1;
        /* a param is a value: escaped as a whole once rendered */
        s->params[i].t =
            maybe_template(inst, h, eq + 1, BATON_ESCAPE_TEXT, s->params[i].name, &failed);
    }
    for (size_t i = 0; i < h->config_list_count(inst, "headers") && !failed; i++) {
        const char *hd = h->config_list_item(inst, "headers", i);
        if (!strchr(hd, ':') || strchr(hd, '\r') || strchr(hd, '\n')) {
            h->set_error(inst, "headers[%zu] = \"%s\": expected \"Name: value\"", i, hd);
            failed = 1;
            break;
        }
        s->headers = curl_slist_append(s->headers, hd);
    }
    const char *auth = h->config_string(inst, "auth");
    char line[1024];
    if (!failed && !strcmp(auth, "bearer")) {
        const char *tok = h->config_string(inst, "token");
        if (!tok || !*tok) {
            h->set_error(inst, "auth = \"bearer\" needs token");
            failed = 1;
        } else {
            snprintf(line, sizeof line, "Authorization: Bearer %s", tok);
            s->headers = curl_slist_append(s->headers, line);
        }
    } else if (!failed && !strcmp(auth, "basic")) {
        const char *u = h->config_string(inst, "username"),
                   *pw = h->config_string(inst, "password");
        if (!u) {
            h->set_error(inst, "auth = \"basic\" needs username (and password)");
            failed = 1;
        } else {
            /* written here, not with CURLOPT_USERPWD, so format() shows it */
            char cred[512];
            int cl = snprintf(cred, sizeof cred, "%s:%s", u, pw ? pw : "");
            baton_buf *enc = h->buf_new();
            h->base64(enc, cred, cl > 0 && (size_t)cl < sizeof cred ? (size_t)cl : strlen(cred));
            snprintf(line, sizeof line, "Authorization: Basic %s", h->buf_data(enc, NULL));
            h->buf_free(enc);
            s->headers = curl_slist_append(s->headers, line);
        }
    }
    if (s->method != 2)
        s->headers = curl_slist_append(s->headers,
                                       s->form ? "Content-Type: application/x-www-form-urlencoded"
                                               : "Content-Type: application/json");
    /* no "Expect: 100-continue" round trip for small bodies */
    s->headers = curl_slist_append(s->headers, "Expect:");
    if (failed) {
        sms_destroy(s);
        return -1;
    }
    *state = s;
    return 0;
}

static int sms_start(void *state)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return 0;
}

static const char *const parts[] = {"text", NULL};
static const baton_channel_ops ops = {
    .size = sizeof(baton_channel_ops),
    .parts = parts,
    .format = sms_format,
    .worker_open = sms_worker_open,
    .worker_close = sms_worker_close,
    .deliver = sms_deliver,
};

BATON_PLUGIN(.name = "channel_sms", .version = "1.0.0",
             .description = "SMS through a generic HTTP gateway (libcurl multi)",
             .kind = BATON_KIND_CHANNEL, .config = keys, .init = sms_init, .start = sms_start,
             .destroy = sms_destroy, .ops = &ops)
