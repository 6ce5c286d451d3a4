/* source_http — a lookup data source on a third-party HTTP API (weather,
 * loyalty, scoring), read by journey conditions as <source>.<field>.
 *
 * url is a template over the context (profile.*, event.*). The response
 * must be a JSON object; `fields` picks what is kept, each "name" (a
 * top-level member) or "name=path.in.the.object" (a nested one); no fields
 * keeps every top-level member. Answers are cached per URL for `ttl`
 * (failures are not cached), at most `cache` URLs. A lookup that fails
 * (no answer within `timeout`, a 5xx, a body that is not JSON) returns -1
 * with the reason: the journey logs it and reads the fields as null. A 404
 * is "not found": every field null, cached like an answer. */
#include <baton/baton.h>

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const baton_config_key keys[] = {
    {.name = "url",
     .type = BATON_CFG_TEMPLATE,
     .required = 1,
     .help = "the lookup URL, a template: \"http://api/weather?city={{ profile.city }}\""},
    {.name = "fields",
     .type = BATON_CFG_LIST,
     .help = "[ \"temperature=main.temp\", \"wind\" ]; none: every top-level member"},
    {.name = "ttl",
     .type = BATON_CFG_DURATION,
     .default_value = "10m",
     .help = "how long an answer is reused for the same URL (0: never)"},
    {.name = "timeout",
     .type = BATON_CFG_DURATION,
     .default_value = "2s",
     .help = "one request's time limit, connecting included"},
    {.name = "cache",
     .type = BATON_CFG_INT,
     .default_value = "10000",
     .has_range = 1,
     .min = 1,
     .max = 10000000,
     .help = "URLs cached at most"},
    {.name = "headers", .type = BATON_CFG_LIST, .help = "[ \"X-Api-Key: ...\" ]"},
    {.name = "token", .type = BATON_CFG_STRING, .help = "a bearer token (\"${env:NAME}\")"},
    {0}};

typedef struct field {
    char *name, *path;
} field;

typedef struct centry {
    char *url;
    json_t *value; /* object, or null for not found */
    int64_t expires_ms;
} centry;

typedef struct src {
    const baton_host *h;
    baton_instance *inst;
    baton_template *url;
    field *fields;
    size_t nfields;
    int64_t ttl_ms;
    long timeout_ms;
    struct curl_slist *headers;
    pthread_mutex_t mu;
    centry *cache; /* open addressing, capacity a power of two */
    size_t cap, n, max;
    baton_counter *c_hits, *c_calls, *c_fail;
} src;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_refs;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static void cache_clear(src *s)
{
    for (size_t i = 0; i < s->cap; i++) {
        free(s->cache[i].url);
        json_decref(s->cache[i].value);
    }
    memset(s->cache, 0, s->cap * sizeof *s->cache);
    s->n = 0;
}

/* Under mu. A new reference, or NULL. */
static json_t *cache_get(src *s, const char *url)
{
    for (size_t i = fnv(url) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        centry *e = &s->cache[i];
        if (!e->url)
            return NULL;
        if (!strcmp(e->url, url))
            return e->expires_ms > now_ms() ? json_incref(e->value) : NULL;
    }
}

/* Under mu. Move every entry of the old table into a new one of newcap
 * slots, dropping the expired ones (and every one when drop_all). */
static void rehash(src *s, size_t newcap, int drop_all)
{
    int64_t now = now_ms();
    centry *old = s->cache;
    size_t ocap = s->cap;
    s->cache = BATON_CHECKED(calloc(newcap, sizeof *s->cache));
    s->cap = newcap;
    s->n = 0;
    for (size_t i = 0; i < ocap; i++) {
        if (!old[i].url)
            continue;
        if (drop_all || old[i].expires_ms <= now) {
            free(old[i].url);
            json_decref(old[i].value);
            continue;
        }
        for (size_t j = fnv(old[i].url) & (s->cap - 1);; j = (j + 1) & (s->cap - 1))
            if (!s->cache[j].url) {
                s->cache[j] = old[i];
                s->n++;
                break;
            }
    }
    free(old);
}

/* Under mu. Bounded by `cache` URLs: when full, the expired ones go, and
 * if that is not enough, all of them (simple, and still bounded). */
static void cache_put(src *s, const char *url, json_t *v)
{
    if (s->ttl_ms <= 0)
        return;
    if (s->n + 1 > s->max) {
        rehash(s, s->cap, 0);
        if (s->n + 1 > s->max / 2 + 1)
            rehash(s, s->cap, 1);
    }
    if ((s->n + 1) * 2 > s->cap)
        rehash(s, s->cap * 2, 0);
    for (size_t i = fnv(url) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        centry *e = &s->cache[i];
        if (!e->url) {
            e->url = BATON_CHECKED(strdup(url));
            s->n++;
        } else if (strcmp(e->url, url)) {
            continue;
        } else {
            json_decref(e->value);
        }
        e->value = json_incref(v);
        e->expires_ms = now_ms() + s->ttl_ms;
        return;
    }
}

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    size_t len = size * n;
    const baton_host *h = ((void **)ud)[0];
    baton_buf *b = ((void **)ud)[1];
    size_t have;
    h->buf_data(b, &have);
    if (have + len > 4 * 1024 * 1024)
        return 0;
    h->buf_append(b, p, len);
    return len;
}

static json_t *dig(json_t *o, const char *path)
{
    const char *p = path;
    while (o && *p) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        if (json_is_array(o)) {
            char *end;
            long k = strtol(p, &end, 10);
            o = end == p + l ? json_array_get(o, (size_t)k) : NULL;
        } else {
            o = json_is_object(o) ? json_object_getn(o, p, l) : NULL;
        }
        if (!dot)
            break;
        p = dot + 1;
    }
    return o;
}

static void set_value(src *s, baton_record *out, const char *name, json_t *v)
{
    baton_value bv = {.type = BATON_T_NULL};
    if (json_is_string(v))
        bv = (baton_value){.type = BATON_T_STRING,
                           .v.s = {json_string_value(v), json_string_length(v)}};
    else if (json_is_integer(v))
        bv = (baton_value){.type = BATON_T_INT, .v.i = json_integer_value(v)};
    else if (json_is_real(v))
        bv = (baton_value){.type = BATON_T_FLOAT, .v.f = json_real_value(v)};
    else if (json_is_boolean(v))
        bv = (baton_value){.type = BATON_T_BOOL, .v.b = json_is_true(v)};
    s->h->record_set(out, name, &bv);
}

static void fill(src *s, json_t *obj, baton_record *out)
{
    if (s->nfields) {
        for (size_t i = 0; i < s->nfields; i++)
            set_value(s, out, s->fields[i].name,
                      json_is_object(obj) ? dig(obj, s->fields[i].path) : NULL);
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) set_value(s, out, k, v);
}

static int lookup(void *state, const baton_record *context, baton_record *out, char *err,
                  size_t errlen)
{
    src *s = state;
    baton_buf *ub = s->h->buf_new();
    if (s->h->template_render(s->url, context, ub) != 0) {
        s->h->buf_free(ub);
        snprintf(err, errlen, "cannot render the url template");
        return -1;
    }
    char *url = BATON_CHECKED(strdup(s->h->buf_data(ub, NULL)));
    s->h->buf_free(ub);
    pthread_mutex_lock(&s->mu);
    json_t *hit = cache_get(s, url);
    pthread_mutex_unlock(&s->mu);
    if (hit) {
        s->h->counter_add(s->c_hits, 1);
        fill(s, hit, out);
        int rc = json_is_object(hit) ? 0 : 1;
        json_decref(hit);
        free(url);
        return rc;
    }
    s->h->counter_add(s->c_calls, 1);
    CURL *c = curl_easy_init();
    baton_buf *body = s->h->buf_new();
    void *ud[2] = {(void *)s->h, body};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, s->headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, s->timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, s->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, ud);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    int out_rc = -1;
    json_t *val = NULL;
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "GET %s: %s", url, curl_easy_strerror(rc));
    } else if (status == 404) {
        val = json_null();
        out_rc = 1;
    } else if (status < 200 || status >= 300) {
        snprintf(err, errlen, "GET %s: HTTP %ld", url, status);
    } else {
        size_t len;
        const char *d = s->h->buf_data(body, &len);
        json_error_t je;
        val = json_loadb(d, len, 0, &je);
        if (!json_is_object(val)) {
            snprintf(err, errlen, "GET %s: the answer is not a JSON object%s%s", url,
                     val ? "" : ": ", val ? "" : je.text);
            json_decref(val);
            val = NULL;
        } else {
            out_rc = 0;
        }
    }
    s->h->buf_free(body);
    if (val) {
        fill(s, val, out);
        pthread_mutex_lock(&s->mu);
        cache_put(s, url, val);
        pthread_mutex_unlock(&s->mu);
        json_decref(val);
    } else {
        s->h->counter_add(s->c_fail, 1);
    }
    free(url);
    return out_rc;
}

static void src_free(src *s)
{
    if (!s)
        return;
    if (s->cache) {
        cache_clear(s);
        free(s->cache);
    }
    s->h->template_free(s->url);
    for (size_t i = 0; i < s->nfields; i++) {
        free(s->fields[i].name);
        free(s->fields[i].path);
    }
    free(s->fields);
    curl_slist_free_all(s->headers);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static int src_init(baton_instance *inst, const baton_host *h, void **state)
{
    src *s = calloc(1, sizeof *s);
    if (!s) {
        h->set_error(inst, "out of memory");
        return -1;
    }
    s->h = h;
    s->inst = inst;
    pthread_mutex_init(&s->mu, NULL);
    char err[512];
    s->url = h->template_compile_as(inst, h->config_string(inst, "url"), BATON_ESCAPE_URL, err,
                                    sizeof err);
    if (!s->url) {
        h->set_error(inst, "url: %s", err);
        src_free(s);
        return -1;
    }
    s->nfields = h->config_list_count(inst, "fields");
    s->fields = BATON_CHECKED(calloc(s->nfields + 1, sizeof *s->fields));
    for (size_t i = 0; i < s->nfields; i++) {
        const char *f = h->config_list_item(inst, "fields", i);
        const char *eq = strchr(f, '=');
        s->fields[i].name = BATON_CHECKED(eq ? strndup(f, (size_t)(eq - f)) : strdup(f));
        s->fields[i].path = BATON_CHECKED(strdup(eq ? eq + 1 : f));
        if (!s->fields[i].name[0] || !s->fields[i].path[0]) {
            h->set_error(inst, "fields[%zu] = \"%s\" is not \"name\" or \"name=path\"", i, f);
            src_free(s);
            return -1;
        }
    }
    s->ttl_ms = h->config_duration_ms(inst, "ttl");
    s->timeout_ms = (long)h->config_duration_ms(inst, "timeout");
    if (s->timeout_ms <= 0)
        s->timeout_ms = 2000;
    s->max = (size_t)h->config_int(inst, "cache");
    s->cap = 64; /* grows with the entries, up to twice `cache` */
    s->cache = BATON_CHECKED(calloc(s->cap, sizeof *s->cache));
    size_t nh = h->config_list_count(inst, "headers");
    for (size_t i = 0; i < nh; i++)
        s->headers = curl_slist_append(s->headers, h->config_list_item(inst, "headers", i));
    const char *tok = h->config_string(inst, "token");
    if (tok) {
        char line[1024];
        snprintf(line, sizeof line, "Authorization: Bearer %s", tok);
        s->headers = curl_slist_append(s->headers, line);
    }
    s->headers = curl_slist_append(s->headers, "Accept: application/json");
    s->c_hits = h->counter(inst, "cache_hits");
    s->c_calls = h->counter(inst, "calls");
    s->c_fail = h->counter(inst, "failures");
    pthread_mutex_lock(&g_mu);
    if (g_refs++ == 0)
        curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_mutex_unlock(&g_mu);
    *state = s;
    return 0;
}

static void src_destroy(void *state)
{
    src_free(state);
    pthread_mutex_lock(&g_mu);
    if (--g_refs == 0)
        curl_global_cleanup();
    pthread_mutex_unlock(&g_mu);
}

static const baton_source_ops ops = {.size = sizeof(baton_source_ops), .lookup = lookup};

BATON_PLUGIN(.name = "source_http", .version = "1.0.0",
             .description = "a lookup source on an HTTP JSON API, with a TTL cache",
             .kind = BATON_KIND_SOURCE, .config = keys, .init = src_init, .destroy = src_destroy,
             .ops = &ops);
