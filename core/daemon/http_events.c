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
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/mem.h"
#include "daemon/http_int.h"

#define SUBMIT_WAIT_MS 5000

typedef struct ev_result {
    char *id;
    int status; /* jrunner_outcome, or -1 rejected (not submitted) */
    char *reason;
} ev_result;

typedef struct ev_job {
    http_req *q;
    pthread_mutex_t mu;
    size_t n, pending;
    int submitting; /* the handler still submits: not done even at pending 0 */
    ev_result *res;
    int rejected, stopping;
} ev_job;

typedef struct ev_slot {
    ev_job *job;
    size_t i;
} ev_slot;

static void job_free(void *p)
{
    ev_job *j = p;
    for (size_t i = 0; i < j->n; i++) {
        free(j->res[i].id);
        free(j->res[i].reason);
    }
    free(j->res);
    pthread_mutex_destroy(&j->mu);
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
        json_t *o = json_pack("{s:s?, s:s}", "id", r->id, "status", st);
        if (r->reason)
            json_object_set_new(o, "reason", json_string(r->reason));
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

static void on_outcome(void *ctx, jrunner_outcome o, const char *id, const char *reason)
{
    ev_slot *s = ctx;
    ev_job *j = s->job;
    pthread_mutex_lock(&j->mu);
    ev_result *r = &j->res[s->i];
    r->status = (int)o;
    if (id && !r->id)
        r->id = xstrdup(id);
    if (reason)
        r->reason = xstrdup(reason);
    int last = --j->pending == 0 && !j->submitting;
    pthread_mutex_unlock(&j->mu);
    free(s);
    if (last) {
        answer(j);
        http_async_done(j->q);
    }
}

/* One parsed value: where it is in the body (for the raw bytes). */
typedef struct ev_item {
    json_t *v;
    size_t off, len; /* its bytes, when it is a whole top-level value */
} ev_item;

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

void http_events_post(http_req *q)
{
    const char *data = q->body.data ? q->body.data : "";
    size_t len = q->body.len, off = 0, n = 0, cap = 0;
    ev_item *items = NULL;
    int array = 0;
    while (off < len) {
        while (off < len && is_space(data[off]))
            off++;
        if (off == len)
            break;
        json_error_t je;
        json_t *v =
            json_loadb(data + off, len - off, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &je);
        if (!v) {
            /* jansson's position counts the bytes read, the bad one
             * included: the offset is that byte's (0-based) */
            size_t at = off + (size_t)(je.position > 0 ? je.position - 1 : 0);
            http_error(q, 400, "bad_json",
                       json_pack("{s:I, s:I}", "offset", (json_int_t)at, "event", (json_int_t)n),
                       "malformed JSON at byte %zu (event %zu): %s", at, n, je.text);
            goto out;
        }
        size_t used = (size_t)je.position;
        if (n == 0 && json_is_array(v)) {
            size_t rest = off + used;
            while (rest < len && is_space(data[rest]))
                rest++;
            if (rest < len) {
                json_decref(v);
                http_error(q, 400, "bad_json", json_pack("{s:I}", "offset", (json_int_t)rest),
                           "malformed JSON at byte %zu: nothing may follow the array", rest);
                goto out;
            }
            array = 1;
            size_t i;
            json_t *e;
            if ((int64_t)json_array_size(v) > q->max_events) {
                json_decref(v);
                http_error(q, 413, "too_many_events",
                           json_pack("{s:I}", "max_events", (json_int_t)q->max_events),
                           "more than %lld events in one request (http.max_events)",
                           (long long)q->max_events);
                goto out;
            }
            items = xcalloc(json_array_size(v) + 1, sizeof *items);
            json_array_foreach(v, i, e) items[n++].v = json_incref(e);
            json_decref(v);
            off = len;
            break;
        }
        if (json_is_array(v)) {
            json_decref(v);
            http_error(q, 400, "bad_json", json_pack("{s:I}", "offset", (json_int_t)off),
                       "byte %zu: an array may only be the whole body", off);
            goto out;
        }
        if ((int64_t)n >= q->max_events) {
            json_decref(v);
            http_error(q, 413, "too_many_events",
                       json_pack("{s:I}", "max_events", (json_int_t)q->max_events),
                       "more than %lld events in one request (http.max_events)",
                       (long long)q->max_events);
            goto out;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            items = xrealloc(items, cap * sizeof *items);
        }
        items[n].v = v;
        items[n].off = off;
        items[n].len = used;
        n++;
        off += used;
    }
    if (n == 0) {
        http_error(q, 400, "bad_request", NULL,
                   "no event in the body (one JSON object, an array of them, or NDJSON)");
        goto out;
    }
    jrunner *r = q->env->r;
    if (!r) {
        http_error(q, 503, "unavailable", NULL, "the journey engine is not running");
        goto out;
    }
    ev_job *j = xcalloc(1, sizeof *j);
    pthread_mutex_init(&j->mu, NULL);
    j->q = q;
    j->n = n;
    j->res = xcalloc(n, sizeof *j->res);
    j->submitting = 1;
    q->job = j;
    q->job_free = job_free;
    http_async_begin(q);
    struct timespec nap = {0, 1000000};
    int waited_ms = 0;
    for (size_t i = 0; i < n; i++) {
        ev_result *res = &j->res[i];
        json_t *idv = json_is_object(items[i].v) ? json_object_get(items[i].v, "id") : NULL;
        if (json_is_string(idv))
            res->id = xstrdup(json_string_value(idv));
        if (j->rejected || j->stopping) {
            res->status = -1;
            continue;
        }
        char *own = NULL;
        const char *bytes = data + items[i].off;
        size_t blen = items[i].len;
        if (array) {
            own = json_dumps(items[i].v, JSON_COMPACT | JSON_ENCODE_ANY);
            bytes = own ? own : "null";
            blen = strlen(bytes);
        }
        ev_slot *s = xcalloc(1, sizeof *s);
        s->job = j;
        s->i = i;
        pthread_mutex_lock(&j->mu);
        j->pending++;
        pthread_mutex_unlock(&j->mu);
        int rc;
        while ((rc = jrunner_submit_outcome(r, "http", bytes, blen, on_outcome, s)) == 1 &&
               waited_ms < SUBMIT_WAIT_MS) {
            jrunner_flush(r);
            nanosleep(&nap, NULL);
            waited_ms++;
        }
        free(own);
        if (rc != 0) {
            pthread_mutex_lock(&j->mu);
            j->pending--;
            pthread_mutex_unlock(&j->mu);
            free(s);
            res->status = -1;
            if (rc < 0)
                j->stopping = 1;
            else
                j->rejected = 1;
        }
    }
    jrunner_flush(r);
    pthread_mutex_lock(&j->mu);
    j->submitting = 0;
    int done = j->pending == 0;
    pthread_mutex_unlock(&j->mu);
    if (done) {
        answer(j);
        http_async_done(q);
    }
out:
    for (size_t i = 0; i < n; i++)
        json_decref(items[i].v);
    free(items);
}
