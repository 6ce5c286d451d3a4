/* journey/engine — runs journeys for profiles: routes each event (exit
 * rules, wait_event reactions, entry with filter and reentry rule), steps
 * an instance through its nodes until it waits or ends, and keeps every
 * instance, its path and its sends in the state store. The heap of
 * timers lives in memory and is rebuilt from the store on open.
 *
 * One engine is driven by one thread at a time (the caller serialises),
 * so a profile is never advanced by two workers at once. Every call that
 * changes state runs inside a transaction the caller opened with
 * jengine_begin and closes with jengine_commit (or jengine_rollback):
 * batching many events in one transaction is the group commit.
 *
 * Sends and actions are written to journey_sends (key = journey instance
 * + node + step: the idempotency key) in the same transaction that moves
 * the instance past the node; ops.send / ops.action hear of them so the
 * caller can hand them on once the transaction is committed. A send's
 * row ends with its message's final status from the delivery log (sent,
 * failed: why, uncertain, bounced...), written with it by a trigger. */
#ifndef BATON_JOURNEY_ENGINE_H
#define BATON_JOURNEY_ENGINE_H

#include <jansson.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "scope/cond.h"
#include "journey/event.h"
#include "journey/journey.h"
#include "journey/timers.h"
#include "store/store.h"

typedef struct jsend_req {
    const char *key;
    int64_t inst;
    const journey *j;
    const jnode *node;
    const char *profile;
    json_t *event;   /* the entry event, borrowed */
    json_t *results; /* action results so far, borrowed */
    json_t *set;     /* update_profile: {field: value} to write, borrowed */
    int64_t now_ms;  /* when the node ran */
} jsend_req;

typedef struct jengine_ops {
    void *ud;
    /* 0 when the channel is turned off (the node records "skipped:
     * channel disabled" and follows next). NULL: every channel is on. */
    int (*channel_enabled)(void *ud, const char *channel);
    /* A send node is passed, inside the batch's transaction. Returns 0
     * with the status to record in status ("queued", "capped", "skipped:
     * no address"...: the message was handed to its channel, whose
     * delivery log row commits with the batch), or 1: record "pending",
     * to be handed after the commit. May be NULL (all pending). */
    int (*send)(void *ud, const jsend_req *r, char *status, size_t statuslen);
    /* An action node (or an update_profile node: r->set holds the values
     * it evaluated, to write by the profile's key) was reached: the
     * instance waits for jengine_action_done(key). NULL: it is recorded
     * as done at once with an empty response (journey test). */
    void (*action)(void *ud, const jsend_req *r);
    /* Conditions: the profile's row, a lookup source (see journey/cond.h). */
    json_t *(*profile)(void *ud, const char *profile_id);
    json_t *(*lookup)(void *ud, const char *source, const char *profile_id, json_t *event);
    /* Linked rows for aggregates and links of profile.* (journey/cond.h);
     * may be NULL. */
    jrows_fn rows;
    /* The profile and its links' rows an expression reads, in one call
     * (journey/cond.h); may be NULL. */
    jbatch_fn batch;
    /* A condition's aggregates over the profile's links computed by the
     * source (journey/cond.h); may be NULL. */
    jaggs_fn aggs;
    /* Versions: parse an earlier version of a journey (its file's path and
     * text, from journey_versions) for the instances that entered it. NULL:
     * those instances go on in the current version. */
    struct journey *(*load_version)(void *ud, const char *file, const char *text);
    /* Whether the profiles source has the profile: 1, 0, or -1 when there
     * is no profiles source. A profile it lacks does not enter (unless
     * entry.missing_profile = "enter"); not_entered hears of it (reason
     * "profile not found"). Both may be NULL. */
    int (*profile_exists)(void *ud, const char *profile_id);
    void (*not_entered)(void *ud, const struct journey *j, const char *profile, json_t *event,
                        const char *reason);
    /* journey test: the answer of an action node when action is NULL (a
     * mock; NULL: {}), and each node an instance steps into. */
    json_t *(*action_result)(void *ud, const jsend_req *r);
    void (*step)(void *ud, const struct journey *j, const char *profile, const char *node,
                 int64_t now_ms);
} jengine_ops;

typedef struct jengine_stats {
    uint64_t events, entered, completed, exited, failed, sends, skipped, actions, timers_fired;
    uint64_t timed_out, held, jumps, updates, missing_profiles;
} jengine_stats;

typedef struct jengine {
    store *st;
    journey **js;
    size_t njs;
    jengine_ops ops;
    jtimers timers;
    int64_t next_id; /* instance ids are handed out here: one writer */
    sqlite3_stmt *stmt[16];
    /* lifecycle, per journey (index in js): 'r' running, 'p' paused, 'c'
     * closed, as journey_control says (jengine_control_refresh) */
    char *ctl;
    char *jumped;  /* journeys a jump entered while routing one event */
    journey **old; /* earlier versions instances are still in (owned) */
    size_t nold;
    int jump_depth;
    jengine_stats stats;
    /* Set by ops.send when it handed a message on inside the batch: the
     * dispatcher holds it in memory against a delivery log row of this
     * transaction, so the batch can no longer be rolled back: a failure
     * to commit it stops the process (store_group_fail), and a restart
     * recovers from what is durable. */
    int handed_on;
} jengine;

/* Create the tables if needed, prepare statements and rebuild the timer
 * heap from the store. js stays owned by the caller. */
int jengine_open(jengine *e, store *st, journey **js, size_t njs, const jengine_ops *ops, char *err,
                 size_t errlen);
void jengine_close(jengine *e);
/* Swap the journeys (reload): instances of a journey that is gone stay in
 * the store untouched. */
void jengine_set_journeys(jengine *e, journey **js, size_t njs);

int jengine_begin(jengine *e, char *err, size_t errlen);
int jengine_commit(jengine *e, char *err, size_t errlen);
void jengine_rollback(jengine *e);

/* Route one event (already in the inbox, deduplicated). Returns 0, or -1
 * on a store failure. */
int jengine_event(jengine *e, const jevent *ev, int64_t now_ms, char *err, size_t errlen);
/* The inbox sequence number of the last event routed; set it in the
 * transaction that routed it, so a restart resumes right after. */
int64_t jengine_watermark(jengine *e);
int jengine_set_watermark(jengine *e, int64_t seq, char *err, size_t errlen);
/* Run up to max timers due at now_ms; *fired counts them. */
int jengine_fire(jengine *e, int64_t now_ms, size_t max, size_t *fired, char *err, size_t errlen);
/* The earliest pending timer; 0 when none. */
int jengine_next_due(const jengine *e, int64_t *due_ms);
/* An action finished: ok with its response (JSON text, may be NULL), or
 * failed with reason. */
int jengine_action_done(jengine *e, const char *key, int ok, const char *response,
                        const char *reason, int64_t now_ms, char *err, size_t errlen);
/* A pending send was handed: its status ("queued", "capped", "skipped:
 * ...", "failed: ...") in journey_sends, unless its message's final
 * status is there already (the delivery log's trigger wrote it). */
int jengine_send_status(jengine *e, const char *key, const char *status, char *err, size_t errlen);

/* What was left in flight by a previous run: calls fn for every send
 * still pending and every action or profile update not finished, so the
 * caller hands them on again (with the same keys: nothing is sent twice;
 * an update writes the values recorded when its node ran, given as
 * set_json). */
int jengine_pending(jengine *e,
                    void (*fn)(void *ud, const char *kind, const char *key, int64_t inst,
                               const char *journey, const char *node, const char *profile,
                               const char *event_json, const char *results_json,
                               const char *set_json),
                    void *ud, char *err, size_t errlen);

/* The journey (in the version it entered) of an instance, or NULL. */
const journey *jengine_instance_journey(jengine *e, int64_t inst);

/* Lifecycle. `baton journey pause|resume|close NAME` writes the state
 * ("paused", "running", "closed") to journey_control in the state store;
 * the engine reads it in every transaction (jengine_control_refresh):
 * a paused journey holds the events it would hear (journey_held) and
 * fires none of its timers; on resume the held events are routed to it,
 * in order, and overdue timers fire. A closed journey takes no new
 * entries; its instances go on. */
int jengine_control_set(store *st, const char *jname, const char *state, int64_t now_ms, char *err,
                        size_t errlen);
/* "running", "paused" or "closed" (static). */
const char *jengine_control_get(store *st, const char *jname);
/* The events a paused journey holds (0 when it holds none, or no serve
 * ever ran it). */
long long jengine_held_count(store *st, const char *jname);
int jengine_control_refresh(jengine *e, int64_t now_ms, char *err, size_t errlen);

/* Tables, for status, profile and the tests. */
#define JOURNEY_DDL_VERSION 1

#endif
