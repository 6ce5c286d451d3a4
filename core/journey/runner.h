/* journey/runner — the live half of the journey engine, what `baton serve`
 * runs:
 *
 *   event source threads ──submit──▶ ingest queue (bounded: 1 = full)
 *        ▲ ack once durable                │
 *        └──────────── engine thread ◀─────┘
 *                      one transaction per batch (group commit):
 *                      inbox + dedup, dead letters, routing, timers,
 *                      action results; then acks, sends to the channel
 *                      dispatchers, calls to the action workers
 *
 * One engine thread advances every profile, so a profile is never advanced
 * by two workers at once. Nothing is acknowledged before its transaction
 * committed; nothing is handed to a channel before the transaction that
 * passed its node committed, and every send carries the idempotency key
 * journey + instance + node + step, so a restart after kill -9 re-hands
 * only what the delivery log has not got (duplicates are refused by the
 * dispatcher). Actions left in flight are invoked again with the same
 * key. */
#ifndef BATON_JOURNEY_RUNNER_H
#define BATON_JOURNEY_RUNNER_H

#include <stddef.h>
#include <stdint.h>

#include "base/histo.h"
#include "plugin/app.h"
#include "delivery/dispatch.h"
#include "journey/event.h"
#include "journey/journey.h"
#include "store/store.h"

typedef struct jrunner jrunner;

/* A channel as journeys see it: its started instance and dispatcher, or
 * neither when it is turned off. */
typedef struct jchannel {
    const char *name;
    instance *inst;
    dispatcher *d;
} jchannel;

typedef struct jrunner_opts {
    size_t queue;              /* ingest queue capacity (default 65536) */
    size_t batch;              /* events per transaction at most (default 4096) */
    size_t action_queue;       /* action calls waiting at most before the engine
                                  stops taking events (default 10000) */
    int action_workers;        /* threads calling action plugins (default 4) */
    int64_t (*clock_ms)(void); /* tests; NULL: the real clock */
} jrunner_opts;

/* Start the engine thread and the action workers over the store st, the
 * journeys js (borrowed until jrunner_stop) and the channels (copied;
 * their instances and dispatchers borrowed). a supplies action instances
 * and the profiles/lookup sources. Installs itself as the host's event
 * sink. NULL with err on failure. */
jrunner *jrunner_start(app *a, store *st, journey **js, size_t njs, const jchannel *ch, size_t nch,
                       const jrunner_opts *opts, char *err, size_t errlen);
/* Graceful stop: stop taking events (submit answers -1), commit and
 * acknowledge everything queued, let action calls in flight finish, join
 * the threads, uninstall the sink. What is still pending (timers, actions
 * not started) stays in the store for the next start. */
void jrunner_stop(jrunner *r);

/* The event sink (plugin_host_set_event_sink's signature). */
int jrunner_submit(void *r, instance *from, const char *json, size_t len, void (*ack)(void *),
                   void *ack_ctx);

/* What became of one event, once its group committed. */
typedef enum jrunner_outcome {
    JRUNNER_ACCEPTED,      /* a new event, in the inbox */
    JRUNNER_DUPLICATE,     /* its id was in the inbox already */
    JRUNNER_DEAD_LETTERED, /* refused (reason), kept in the dead letters */
} jrunner_outcome;
/* Called after the commit, on the ingest thread or on the thread of a
 * jrunner_submit_events that committed the group itself; id (the event's, or
 * "h:<hash>" when it had none; NULL when unreadable) and reason are
 * borrowed for the call. Must not block. */
typedef void (*jrunner_outcome_fn)(void *ctx, jrunner_outcome o, const char *id,
                                   const char *reason);
/* Submit for a source that wants each event's outcome rather than an
 * acknowledgement (the HTTP face); source names it in the inbox ("http";
 * borrowed, must outlive the runner). 0 queued, 1 full (retry later), -1
 * stopping. */
int jrunner_submit_outcome(jrunner *r, const char *source, const char *json, size_t len,
                           jrunner_outcome_fn outcome, void *ctx);

/* The same for events the source parsed itself (jevent_from_json), n at
 * once under one lock: evs[i] and reasons[i] (a dead letter's, malloc'd;
 * reasons may be NULL) are taken for i < *taken, each reported to
 * outcome with ctx[i]. When the ingest thread is idle, the calling thread
 * commits the group itself before returning (its own outcomes, and those
 * of whatever else was queued, come on it). 0 all queued, 1 the queue
 * filled (*taken of them queued: retry the rest later), -1 stopping
 * (none). */
int jrunner_submit_events(jrunner *r, const char *source, jevent *evs, char **reasons, size_t n,
                          jrunner_outcome_fn outcome, void *const *ctx, size_t *taken);

/* The sink's flush: the events submitted so far are a complete group. */
void jrunner_flush(void *r);

/* Block until the ingest queue is empty and its last batch committed
 * (tests, benches). 0, or -1 after timeout_ms. */
int jrunner_drain(jrunner *r, int64_t timeout_ms);

typedef struct jrunner_stats {
    uint64_t accepted; /* events committed to the inbox (new ids) */
    uint64_t routed;   /* events the engine has routed (committed) */
    uint64_t duplicates, dead_letters, batches, sends_handed, actions_ok, actions_failed;
    uint64_t full;          /* submits answered "queue full" */
    uint64_t ingest_groups; /* inbox transactions (accepted events arrive in groups) */
    /* inbox.db since start: statements run, transactions committed */
    unsigned long long inbox_statements, inbox_commits;
    size_t queued;  /* committed events waiting for the engine */
    int64_t lag_ms; /* how long the oldest of them has waited (0: none) */
} jrunner_stats;
void jrunner_get_stats(jrunner *r, jrunner_stats *s);

/* Events by source (the instance's "events.mqtt", "http"): what the
 * inbox took, since start. */
typedef struct jrunner_source_stats {
    char source[64];
    uint64_t accepted, duplicates, dead_letters;
} jrunner_source_stats;
/* Up to max sources into out; returns how many. */
size_t jrunner_get_source_stats(jrunner *r, jrunner_source_stats *out, size_t max);
/* How long action calls take (each invoke(), retries included). */
const histo *jrunner_action_latency(const jrunner *r);

#endif
