/* action_http — a custom action: one HTTP call to a third-party API per
 * journey action node (loyalty points, a CRM update, a coupon).
 *
 * url, headers and body are templates over the call's context: profile.*,
 * event.* (event.id, event.type, event.time and the data fields) and the
 * results of earlier action nodes of the instance (<node>.<field>).
 * Values are inserted as written (write a JSON body accordingly). Every
 * request carries the call's idempotency key in `idempotency_header`, the
 * same key when a call is retried or resumed after a restart, so the API
 * can drop a repeat.
 *
 * Outcome: 2xx OK, the response body handed back (a JSON object's fields
 * become <node id>.<field> in later conditions of the same instance);
 * 408, 425, 429, 5xx, and no answer within `timeout` (or a refused
 * connection) RETRY — the host retries `retries` times with exponential
 * backoff, at most `rate` calls per second; any other status ERROR. After
 * the last failure the node follows its on_error. */
#include <baton/baton.h>

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const method_choices[] = {"GET", "POST", "PUT", "PATCH", "DELETE", NULL};
static const char *const auth_choices[] = {"none", "basic", "bearer", NULL};
enum { AUTH_NONE, AUTH_BASIC, AUTH_BEARER }; /* auth_choices' order */

static const baton_config_key keys[] = {
    {.name = "url",
     .type = BATON_CFG_TEMPLATE,
     .required = 1,
     .help = "the endpoint, a template: \"http://crm/points/{{ profile.id }}\""},
    {.name = "method", .type = BATON_CFG_ENUM, .default_value = "POST", .choices = method_choices},
    {.name = "headers",
     .type = BATON_CFG_LIST,
     .help = "[ \"X-Api-Version: 2\", \"X-Tier: {{ profile.tier }}\" ] (templates)"},
    {.name = "body",
     .type = BATON_CFG_TEMPLATE,
     .help = "the request body, a template (e.g. JSON with {{ }} values)"},
    {.name = "content_type", .type = BATON_CFG_STRING, .default_value = "application/json"},
    {.name = "auth", .type = BATON_CFG_ENUM, .default_value = "none", .choices = auth_choices},
    {.name = "username", .type = BATON_CFG_STRING, .help = "basic auth user"},
    {.name = "password", .type = BATON_CFG_STRING, .help = "basic auth password (\"${env:NAME}\")"},
    {.name = "token", .type = BATON_CFG_STRING, .help = "bearer token (\"${env:NAME}\")"},
    {.name = "idempotency_header",
     .type = BATON_CFG_STRING,
     .default_value = "Idempotency-Key",
     .help = "the header carrying the call's idempotency key (\"\": none)"},
    {.name = "max_response",
     .type = BATON_CFG_INT,
     .default_value = "1048576",
     .has_range = 1,
     .min = 1024,
     .max = 67108864,
     .help = "bytes of response kept at most"},
    {0}};

typedef struct act {
    const baton_host *h;
    baton_instance *inst;
    baton_template *url, *body;
    baton_template **headers;
    size_t nheaders;
    char *method, *ctype, *user, *pass, *token, *idem;
    int auth;
    long timeout_ms;
    size_t max_response;
} act;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_refs;

typedef struct sink {
    const baton_host *h;
    baton_buf *out;
    size_t len, max;
} sink;

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    sink *s = ud;
    size_t len = size * n;
    if (s->len + len > s->max)
        return 0; /* too big: curl fails the transfer */
    s->h->buf_append(s->out, p, len);
    s->len += len;
    return len;
}

/* Render t into a new string (free it); NULL when rendering failed. */
static char *render(act *a, baton_template *t, const baton_record *ctx)
{
    baton_buf *b = a->h->buf_new();
    if (a->h->template_render(t, ctx, b) != 0) {
        a->h->buf_free(b);
        return NULL;
    }
    size_t len;
    const char *d = a->h->buf_data(b, &len);
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, d, len);
        s[len] = '\0';
    }
    a->h->buf_free(b);
    return s;
}

static baton_status invoke(void *state, const baton_action_call *call, baton_buf *response,
                           char *reason, size_t reasonlen)
{
    act *a = state;
    char *url = render(a, a->url, call->context);
    char *body = a->body ? render(a, a->body, call->context) : NULL;
    if (!url || (a->body && !body)) {
        snprintf(reason, reasonlen, "cannot render the %s template", url ? "body" : "url");
        free(url);
        free(body);
        return BATON_ERROR;
    }
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(reason, reasonlen, "curl_easy_init failed");
        free(url);
        free(body);
        return BATON_RETRY;
    }
    struct curl_slist *hl = NULL;
    char line[1024];
    for (size_t i = 0; i < a->nheaders; i++) {
        char *hv = render(a, a->headers[i], call->context);
        if (hv)
            hl = curl_slist_append(hl, hv);
        free(hv);
    }
    if (body) {
        snprintf(line, sizeof line, "Content-Type: %s", a->ctype);
        hl = curl_slist_append(hl, line);
    }
    if (a->idem[0] && call->key) {
        snprintf(line, sizeof line, "%s: %s", a->idem, call->key);
        hl = curl_slist_append(hl, line);
    }
    if (a->auth == AUTH_BEARER && a->token) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", a->token);
        hl = curl_slist_append(hl, line);
    }
    hl = curl_slist_append(hl, "Expect:");
    sink s = {a->h, response, 0, a->max_response};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, a->method);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    } else if (!strcmp(a->method, "GET")) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, a->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, a->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    if (a->auth == AUTH_BASIC && a->user) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, a->user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, a->pass ? a->pass : "");
    }
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    baton_status out;
    if (rc != CURLE_OK) {
        snprintf(reason, reasonlen, "%s %s: %s", a->method, url, curl_easy_strerror(rc));
        out = rc == CURLE_WRITE_ERROR ? BATON_ERROR : BATON_RETRY;
    } else if (status >= 200 && status < 300) {
        out = BATON_OK;
    } else {
        size_t len;
        const char *d = a->h->buf_data(response, &len);
        snprintf(reason, reasonlen, "%s %s: HTTP %ld %.*s", a->method, url, status,
                 (int)(len > 200 ? 200 : len), d);
        out = status == 408 || status == 425 || status == 429 || status >= 500 ? BATON_RETRY
                                                                               : BATON_ERROR;
    }
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    free(url);
    free(body);
    return out;
}

static void act_free(act *a)
{
    if (!a)
        return;
    a->h->template_free(a->url);
    a->h->template_free(a->body);
    for (size_t i = 0; i < a->nheaders; i++)
        a->h->template_free(a->headers[i]);
    free(a->headers);
    free(a->method);
    free(a->ctype);
    free(a->user);
    free(a->pass);
    free(a->token);
    free(a->idem);
    free(a);
}

static char *dup_or_null(const char *s)
{
    return s ? BATON_CHECKED(strdup(s)) : NULL;
}

static int act_init(baton_instance *inst, const baton_host *h, void **state)
{
    act *a = calloc(1, sizeof *a);
    if (!a) {
        h->set_error(inst, "out of memory");
        return -1;
    }
    a->h = h;
    a->inst = inst;
    char err[512];
    a->url = h->template_compile_as(inst, h->config_string(inst, "url"), BATON_ESCAPE_URL, err,
                                    sizeof err);
    if (!a->url) {
        h->set_error(inst, "url: %s", err);
        goto fail;
    }
    const char *body = h->config_string(inst, "body");
    const char *ctype = h->config_string(inst, "content_type");
    /* values go into the body as its content type reads them */
    const char *lead = body ? body + strspn(body, " \t\r\n") : "";
    int escape = strstr(ctype, "x-www-form-urlencoded")                    ? BATON_ESCAPE_FORM
                 : strstr(ctype, "json") && (*lead == '{' || *lead == '[') ? BATON_ESCAPE_JSON
                                                                           : BATON_ESCAPE_TEXT;
    if (body && !(a->body = h->template_compile_as(inst, body, escape, err, sizeof err))) {
        h->set_error(inst, "body: %s", err);
        goto fail;
    }
    a->nheaders = h->config_list_count(inst, "headers");
    a->headers = BATON_CHECKED(calloc(a->nheaders + 1, sizeof *a->headers));
    for (size_t i = 0; i < a->nheaders; i++) {
        const char *hv = h->config_list_item(inst, "headers", i);
        if (!strchr(hv, ':')) {
            h->set_error(inst, "headers[%zu] is not \"Name: value\"", i); /* may hold a secret */
            goto fail;
        }
        if (!(a->headers[i] =
                  h->template_compile_as(inst, hv, BATON_ESCAPE_HEADER, err, sizeof err))) {
            h->set_error(inst, "headers[%zu]: %s", i, err);
            goto fail;
        }
    }
    a->method = BATON_CHECKED(strdup(h->config_string(inst, "method")));
    a->ctype = BATON_CHECKED(strdup(h->config_string(inst, "content_type")));
    a->auth = h->config_enum(inst, "auth");
    a->user = dup_or_null(h->config_string(inst, "username"));
    a->pass = dup_or_null(h->config_string(inst, "password"));
    a->token = dup_or_null(h->config_string(inst, "token"));
    a->idem = BATON_CHECKED(strdup(h->config_string(inst, "idempotency_header")));
    if (a->auth == AUTH_BASIC && !a->user) {
        h->set_error(inst, "auth = \"basic\" needs username (and password)");
        goto fail;
    }
    if (a->auth == AUTH_BEARER && !a->token) {
        h->set_error(inst, "auth = \"bearer\" needs token");
        goto fail;
    }
    a->timeout_ms = (long)h->config_duration_ms(inst, "timeout"); /* a host-owned key */
    if (a->timeout_ms <= 0)
        a->timeout_ms = 10000;
    a->max_response = (size_t)h->config_int(inst, "max_response");
    pthread_mutex_lock(&g_mu);
    if (g_refs++ == 0)
        curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_mutex_unlock(&g_mu);
    *state = a;
    return 0;
fail:
    act_free(a);
    return -1;
}

static void act_destroy(void *state)
{
    act_free(state);
    pthread_mutex_lock(&g_mu);
    if (--g_refs == 0)
        curl_global_cleanup();
    pthread_mutex_unlock(&g_mu);
}

static const baton_action_ops ops = {.size = sizeof(baton_action_ops), .invoke = invoke};

BATON_PLUGIN(.name = "action_http", .version = "1.0.0",
             .description = "a custom action: an HTTP call to a third-party API",
             .kind = BATON_KIND_ACTION, .config = keys, .init = act_init, .destroy = act_destroy,
             .ops = &ops);
