/* daemon/http_events — POST /v1/events: one event, a JSON array of them
 * or NDJSON (one per line), up to http.max_events and http.max_body.
 * The events go through the journey runner's group commit, as MQTT's do;
 * the answer (202) comes once every one of them is committed to the inbox
 * (or dead-lettered there), with each one's fate:
 *
 *   {"accepted": N, "duplicate": N, "dead_lettered": N,
 *    "results": [{"id", "status", "reason"?}]}
 *
 * A body that is not JSON is refused whole (400, with the byte offset),
 * before anything is submitted. When the ingest queue stays full for
 * SUBMIT_WAIT_MS the rest is "rejected" and the answer is 429 with
 * Retry-After (what was submitted is still committed and reported). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/mem.h"
#include "base/utf8.h"
#include "daemon/http_int.h"

#define SUBMIT_WAIT_MS 5000

typedef struct ev_result {
    char *id;
    int status; /* jrunner_outcome, or -1 rejected (not submitted) */
    char *reason;
} ev_result;

typedef struct ev_job ev_job;

typedef struct ev_slot {
    ev_job *job;
    size_t i;
} ev_slot;

struct ev_job {
    http_req *q;
    size_t n;
    /* outcomes still to come, plus one while the handler submits: whoever
     * brings it to 0 answers (no lock per event) */
    atomic_size_t pending;
    ev_result *res;
    ev_slot *slots;
    int rejected, stopping;
};

static void job_free(void *p)
{
    ev_job *j = p;
    for (size_t i = 0; i < j->n; i++) {
        free(j->res[i].id);
        free(j->res[i].reason);
    }
    free(j->res);
    free(j->slots);
    free(j);
}

static void answer(ev_job *j)
{
    json_t *results = json_array();
    long long acc = 0, dup = 0, dead = 0, rej = 0;
    for (size_t i = 0; i < j->n; i++) {
        ev_result *r = &j->res[i];
        const char *st = r->status == JRUNNER_ACCEPTED        ? "accepted"
                         : r->status == JRUNNER_DUPLICATE     ? "duplicate"
                         : r->status == JRUNNER_DEAD_LETTERED ? "dead_lettered"
                                                              : "rejected";
        acc += r->status == JRUNNER_ACCEPTED;
        dup += r->status == JRUNNER_DUPLICATE;
        dead += r->status == JRUNNER_DEAD_LETTERED;
        rej += r->status < 0;
        /* ids came from jansson (or are "h:<hex>"): UTF-8 already */
        json_t *o = json_object();
        if (r->id)
            json_object_set_new_nocheck(o, "id", json_string_nocheck(r->id));
        json_object_set_new_nocheck(o, "status", json_string_nocheck(st));
        if (r->reason)
            json_object_set_new_nocheck(o, "reason", json_string(r->reason));
        json_array_append_new(results, o);
    }
    atomic_fetch_add(&http_stats.events_accepted, (unsigned long long)acc);
    atomic_fetch_add(&http_stats.events_duplicate, (unsigned long long)dup);
    atomic_fetch_add(&http_stats.events_dead, (unsigned long long)dead);
    json_t *o = json_pack("{s:I, s:I, s:I, s:o}", "accepted", (json_int_t)acc, "duplicate",
                          (json_int_t)dup, "dead_lettered", (json_int_t)dead, "results", results);
    if (!rej) {
        http_json(j->q, 202, o);
        return;
    }
    json_object_set_new(o, "rejected", json_integer(rej));
    if (j->stopping) {
        json_object_set_new(o, "error",
                            json_pack("{s:s, s:s}", "code", "unavailable", "message",
                                      "baton is stopping or reloading; the rejected "
                                      "events were not taken: send them again"));
        http_json(j->q, 503, o);
    } else {
        snprintf(j->q->retry_after, sizeof j->q->retry_after, "1");
        json_object_set_new(o, "error",
                            json_pack("{s:s, s:s}", "code", "too_many_requests", "message",
                                      "the ingest queue is full; the rejected events were not "
                                      "taken: send them again"));
        http_json(j->q, 429, o);
    }
}

static void job_release(ev_job *j, size_t k)
{
    if (atomic_fetch_sub(&j->pending, k) == k) {
        answer(j);
        http_async_done(j->q);
    }
}

static void on_outcome(void *ctx, jrunner_outcome o, const char *id, const char *reason)
{
    ev_slot *s = ctx;
    ev_result *r = &s->job->res[s->i];
    r->status = (int)o;
    if (id && !r->id)
        r->id = xstrdup(id);
    if (reason)
        r->reason = xstrdup(reason);
    job_release(s->job, 1);
}

/* One parsed value: its bytes in the body. dup_key: jansson refused it
 * for a repeated key only (a dead letter, as from any source). */
typedef struct ev_item {
    json_t *v;
    size_t off, len;
    size_t data_off, data_len; /* its "data" in its bytes (0: not known) */
    json_error_t dup_key;
    int dup;
} ev_item;

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_space(const char *data, size_t off, size_t len)
{
    while (off < len && is_space(data[off]))
        off++;
    return off;
}

/* The body's values, each parsed once, in place: a JSON array's elements
 * or the top-level values one after another (one event, NDJSON). Each
 * value's own bytes are what the inbox keeps. Answers 400/413 and returns
 * -1 on a body that is not that. */
static int split_body(http_req *q, const char *data, size_t len, ev_item **out, size_t *nout)
{
    size_t off = skip_space(data, 0, len), n = 0, cap = 0;
    ev_item *items = NULL;
    int array = off < len && data[off] == '[';
    /* the events' own reader wants valid UTF-8 (jansson says where not) */
    size_t bad_at;
    int utf8 = utf8_text(data, len, &bad_at);
    if (array)
        off++;
    for (;;) {
        off = skip_space(data, off, len);
        if (off == len) {
            if (!array)
                break;
            http_error(q, 400, "bad_json", json_pack("{s:I}", "offset", (json_int_t)off),
                       "malformed JSON at byte %zu: the array is not closed", off);
            goto fail;
        }
        if (array && n == 0 && data[off] == ']') { /* [] */
            off = skip_space(data, off + 1, len);
            if (off < len)
                goto after_array;
            break;
        }
        if ((int64_t)n >= q->max_events) {
            http_error(q, 413, "too_many_events",
                       json_pack("{s:I}", "max_events", (json_int_t)q->max_events),
                       "more than %lld events in one request (http.max_events)",
                       (long long)q->max_events);
            goto fail;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 128;
            items = xrealloc(items, cap * sizeof *items);
        }
        ev_item *it = &items[n];
        memset(it, 0, sizeof *it);
        json_error_t je;
        const size_t flags = JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY;
        size_t used = 0;
        json_t *v =
            utf8 ? jevent_read_object(data + off, len - off, &used, &it->data_off, &it->data_len)
                 : NULL;
        if (!v)
            v = json_loadb(data + off, len - off, flags | JSON_REJECT_DUPLICATES, &je);
        else
            je.position = (int)used;
        if (!v && json_error_code(&je) == json_error_duplicate_key) {
            it->dup_key = je;
            it->dup = 1;
            v = json_loadb(data + off, len - off, flags, &je);
        }
        if (!v) {
            /* jansson's position counts the bytes read, the bad one
             * included: the offset is that byte's (0-based) */
            size_t at = off + (size_t)(je.position > 0 ? je.position - 1 : 0);
            http_error(q, 400, "bad_json",
                       json_pack("{s:I, s:I}", "offset", (json_int_t)at, "event", (json_int_t)n),
                       "malformed JSON at byte %zu (event %zu): %s", at, n, je.text);
            goto fail;
        }
        if (!array && json_is_array(v)) {
            json_decref(v);
            http_error(q, 400, "bad_json", json_pack("{s:I}", "offset", (json_int_t)off),
                       "byte %zu: an array may only be the whole body", off);
            goto fail;
        }
        it->v = v;
        it->off = off;
        it->len = (size_t)je.position;
        n++;
        off += it->len;
        if (!array)
            continue;
        off = skip_space(data, off, len);
        if (off < len && data[off] == ',') {
            off++;
            continue;
        }
        if (off < len && data[off] == ']') {
            off = skip_space(data, off + 1, len);
            if (off == len)
                break;
        after_array:
            http_error(q, 400, "bad_json", json_pack("{s:I}", "offset", (json_int_t)off),
                       "malformed JSON at byte %zu: nothing may follow the array", off);
            goto fail;
        }
        http_error(q, 400, "bad_json",
                   json_pack("{s:I, s:I}", "offset", (json_int_t)off, "event", (json_int_t)n),
                   "malformed JSON at byte %zu: ',' or ']' expected after event %zu", off, n - 1);
        goto fail;
    }
    *out = items;
    *nout = n;
    return 0;
fail:
    for (size_t i = 0; i < n; i++)
        json_decref(items[i].v);
    free(items);
    return -1;
}

void http_events_post(http_req *q)
{
    const char *data = q->body.data ? q->body.data : "";
    ev_item *items = NULL;
    size_t n = 0;
    if (split_body(q, data, q->body.len, &items, &n))
        return;
    if (n == 0) {
        http_error(q, 400, "bad_request", NULL,
                   "no event in the body (one JSON object, an array of them, or NDJSON)");
        return;
    }
    jrunner *r = q->env->r;
    if (!r) {
        http_error(q, 503, "unavailable", NULL, "the journey engine is not running");
        for (size_t i = 0; i < n; i++)
            json_decref(items[i].v);
        free(items);
        return;
    }
    ev_job *j = xcalloc(1, sizeof *j);
    j->q = q;
    j->n = n;
    j->res = xcalloc(n, sizeof *j->res);
    j->slots = xcalloc(n, sizeof *j->slots);
    atomic_init(&j->pending, 1);
    /* each value becomes its event here, on the pool thread: the ingest
     * thread only commits */
    jevent *evs = xcalloc(n, sizeof *evs);
    char **reasons = xcalloc(n, sizeof *reasons);
    void **ctx = xcalloc(n, sizeof *ctx);
    struct timespec ts; /* received: the time of events without one */
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    for (size_t i = 0; i < n; i++) {
        ev_item *it = &items[i];
        json_t *idv = json_is_object(it->v) ? json_object_get(it->v, "id") : NULL;
        if (json_is_string(idv))
            j->res[i].id = xstrndup(json_string_value(idv), json_string_length(idv));
        char reason[256];
        int bad;
        if (it->dup) { /* refused as jevent_parse refuses it */
            evs[i].raw = xmemdup0(data + it->off, it->len);
            evs[i].rawlen = it->len;
            jevent_json_error(&it->dup_key, reason, sizeof reason);
            bad = 1;
        } else {
            bad = jevent_from_json(it->v, data + it->off, it->len, now_ms, &evs[i], reason,
                                   sizeof reason) != 0;
            if (!bad && evs[i].data && it->data_len) { /* as jevent_parse does */
                evs[i].data_off = it->data_off;
                evs[i].data_len = it->data_len;
            }
        }
        if (bad)
            reasons[i] = xstrdup(reason);
        json_decref(it->v);
        j->slots[i] = (ev_slot){j, i};
        ctx[i] = &j->slots[i];
    }
    free(items);
    q->job = j;
    q->job_free = job_free;
    http_async_begin(q);
    struct timespec nap = {0, 1000000};
    int waited_ms = 0;
    size_t done = 0;
    while (done < n) {
        size_t left = n - done, taken = 0;
        /* counted before: an outcome may come before the call returns */
        atomic_fetch_add(&j->pending, left);
        int rc = jrunner_submit_events(r, "http", evs + done, reasons + done, left, on_outcome,
                                       ctx + done, &taken);
        atomic_fetch_sub(&j->pending, left - taken);
        done += taken;
        if (rc < 0)
            j->stopping = 1;
        if (rc <= 0 || waited_ms >= SUBMIT_WAIT_MS) {
            j->rejected = rc > 0;
            break;
        }
        jrunner_flush(r);
        nanosleep(&nap, NULL);
        waited_ms++;
    }
    for (size_t i = done; i < n; i++) {
        j->res[i].status = -1;
        jevent_free(&evs[i]);
        free(reasons[i]);
    }
    free(evs);
    free(reasons);
    free(ctx);
    jrunner_flush(r);
    job_release(j, 1);
}
