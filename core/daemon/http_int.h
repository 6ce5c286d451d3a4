/* daemon/http_int — what the HTTP server's resource files share: the
 * request, answers, arguments and the server's state. Not for serve.c. */
#ifndef BATON_DAEMON_HTTP_INT_H
#define BATON_DAEMON_HTTP_INT_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "base/buf.h"
#include "daemon/http.h"

#define HTTP_MAX_SEGS 8

typedef struct http_req http_req;

/* A route's handler: answer with http_json / http_error (or start an
 * asynchronous answer with http_async_begin). Runs on a pool thread with
 * the environment held (q->env). */
typedef void (*http_handler)(http_req *q);

typedef struct http_route {
    const char *method;
    const char *path; /* "/v1/campaigns/NAME": a star segment matches any one */
    unsigned scope;   /* HTTP_SCOPE_*; 0: no token needed */
    http_handler fn;
    int body; /* 1: takes a JSON (or NDJSON) body; 2: a body of any type */
} http_route;

struct http_req {
    http_server *srv;
    struct MHD_Connection *conn;
    const char *method;
    char *path;   /* decoded, as libmicrohttpd gives it */
    char *segbuf; /* path cut at '/': seg point into it */
    char *seg[HTTP_MAX_SEGS];
    size_t nseg;
    const http_route *route;
    unsigned scopes;
    char token[64]; /* the token's name, for logs */
    buf body;
    int64_t max_body, max_events;
    int64_t body_deadline_us; /* mono_us: the body must be whole by then */
    int too_large;
    int64_t started_us;
    const http_env *env; /* held while the handler runs (and its async part) */
    /* the answer */
    int status;
    char *resp;
    size_t resp_len;
    const char *ctype;
    char retry_after[24];
    char allow[64];
    char location[4096];         /* a Location header: up to a click redirect's URL */
    const char *extra_header[2]; /* one more header (name, value: static) or NULL */
    int fd;                      /* a static file to send, or -1 */
    uint64_t fd_size;
    /* asynchronous answers */
    pthread_mutex_t amu;
    int async;      /* the handler answers later */
    int suspended;  /* MHD_suspend_connection was called */
    int async_done; /* the answer is ready */
    void *job;      /* the resource's own state, freed by job_free */
    void (*job_free)(void *job);
    /* waiting for a configuration (starting, reloading): suspended, in
     * the server's parked list until it is attached or park_until_us */
    int parked; /* the step to take again: PARK_HEADERS, PARK_HANDLER */
    int routed; /* split and routed already (a parked request comes back) */
    int64_t park_until_us;
    http_req *park_next;
};

/* Answers. http_json takes o over; http_raw takes text (malloc'd) over. */
void http_json(http_req *q, int status, json_t *o);
void http_raw(http_req *q, int status, char *text, size_t len, const char *ctype);
/* {"error": {"code", "message", "details"}}; details taken over (may be NULL). */
void http_error(http_req *q, int status, const char *code, json_t *details, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* The handler answers from another thread: call http_async_begin before
 * returning, then http_async_done once http_json/http_error was called
 * there (exactly once). The environment stays held until then. */
void http_async_begin(http_req *q);
void http_async_done(http_req *q);

/* A query argument (decoded), or NULL. */
const char *http_arg(http_req *q, const char *name);

/* A read connection to the state store of the attached configuration
 * (each request its own: reads never see a writer's open transaction).
 * 0, or -1 after answering 503. */
int http_open_store(http_req *q, store *st);

/* Hold the environment for work that outlives the request (a campaign
 * run started over HTTP); http_env_release when done. NULL when none is
 * attached. */
const http_env *http_env_hold(http_server *s);
void http_env_release(http_server *s);

/* Route handlers, by resource. */
void http_journeys_list(http_req *q);
void http_journey_get(http_req *q);
void http_journey_control(http_req *q);
void http_journey_dead_letters(http_req *q);
void http_campaigns_list(http_req *q);
void http_campaign_get(http_req *q);
void http_campaign_plan(http_req *q);
void http_campaign_runs(http_req *q);
void http_campaign_run_get(http_req *q);
void http_campaign_run_post(http_req *q);
void http_campaign_signal_post(http_req *q);
void http_profile_get(http_req *q);
void http_profiles_search(http_req *q); /* http_profiles.c */
void http_profile_record(http_req *q);  /* http_profiles.c */
void http_profile_links(http_req *q);   /* http_profiles.c */
void http_deliveries(http_req *q);
void http_dead_letters(http_req *q);
void http_channels_list(http_req *q);
void http_channel_get(http_req *q);
void http_events_post(http_req *q);
void http_metrics(http_req *q);
/* the email loop's (http_email.c) */
void http_unsubscribe_get(http_req *q);
void http_unsubscribe_post(http_req *q);
/* Enter the events of the array evs (taken over) into journeys; answer
 * ans (taken over) once they are committed: as JSON, a page, the open
 * pixel or a redirect to q->location (HTTP_AS_*). Its
 * "event" is set to the outcome of the one event, or, when ans has an
 * "events" member, that becomes {accepted, duplicate, dead_lettered,
 * rejected}. */
enum { HTTP_AS_JSON = 0, HTTP_AS_PAGE = 1, HTTP_AS_PIXEL, HTTP_AS_REDIRECT };
void http_email_events(http_req *q, json_t *evs, json_t *ans, int as);
/* engagement: GET /t/o/TOKEN (the open pixel), GET /t/c/TOKEN (a click's
 * redirect) */
void http_track_open(http_req *q);
void http_track_click(http_req *q);
void http_feedback_post(http_req *q);
/* the web console's (http_console.c) */
void http_session_get(http_req *q);
void http_describe(http_req *q);
void http_campaign_file_get(http_req *q);
void http_campaign_file_put(http_req *q);
void http_campaign_check(http_req *q);
void http_campaign_preview(http_req *q);
void http_campaign_versions(http_req *q);
void http_campaign_restore(http_req *q);
void http_journey_file_get(http_req *q);
void http_journey_file_put(http_req *q);
void http_journey_check(http_req *q);
void http_journey_versions(http_req *q);
void http_journey_restore(http_req *q);
void http_journey_test(http_req *q);
void http_channel_put(http_req *q);

/* A name as the API takes it in a path: letters, digits, '_', '-', '.'
 * (not leading), at most 128 bytes. */
int http_name_ok(const char *s);

/* Counters of the HTTP face, for /metrics. */
typedef struct http_counters {
    atomic_ullong requests[6]; /* by status class: 1xx..5xx, [0] other */
    atomic_ullong events_accepted, events_duplicate, events_dead;
    atomic_ullong opens, clicks, links_refused; /* tracking hits; signed links refused */
} http_counters;
extern http_counters http_stats;

#endif
