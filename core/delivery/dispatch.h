/* dispatch — delivery through a channel: one dispatcher per configured,
 * started channel instance. It owns what docs/channels.md says the
 * core owns for every channel: worker threads (`connections` of them, each
 * with its own worker_open() connection; blocking libraries never run on
 * the caller's thread), the `rate` limit (token bucket, messages/s), a
 * bounded queue (`queue`) with backpressure, retries of RETRY outcomes with
 * exponential backoff and jitter up to `retries`, per-profile frequency
 * caps and quiet hours (`caps` in the main configuration), idempotency
 * and the delivery log in the state store.
 *
 * The delivery log (table `deliveries`, one row per message, the
 * idempotency key unique):
 *   key, channel, recipient, profile_id, status, provider_id, reason,
 *   attempts, segments, created_at, updated_at, next_at (seconds, UTC),
 *   and the message itself (parts and row, JSON) while it is not final.
 * Statuses: "queued" (accepted, waiting or in flight), "retry" (a
 * transient failure; next attempt at next_at), "deferred" (quiet hours;
 * sent at next_at), "sent" (the channel confirmed; provider_id), "failed"
 * (permanent error, or retries exhausted; reason), "capped" (over a
 * per-profile frequency cap; not sent), "uncertain" (in a deliver() call
 * when the process died, or answered BATON_UNCERTAIN: see below).
 *
 * Durability: a message is recorded "queued" (with its content) before it
 * can be delivered and marked "sent" only after the channel confirms.
 * Nothing is sent twice: before a batch goes to deliver() it is marked in
 * flight (one row of the table `dispatch_inflight` lists its rows) and
 * committed, and its outcomes are committed as soon as deliver() returns
 * (with the next batch's mark when one is ready: one commit per batch).
 * A channel that reports its progress (baton.h 1.4: deliver_wire,
 * deliver_done) narrows that: the first message it puts on the wire
 * turns the batch's record to "on the wire only" (column `wire`), each
 * message on the wire gets `sending` set (committed before it goes), and
 * each outcome reported is recorded in the next group commit; a row of
 * such a batch never put on the wire is sent again normally after a
 * crash. A row a dead process left in flight (listed in a record that is
 * not "on the wire only", or with the column `sending` set, which is
 * what the listing becomes when the dead owner's rows are released) is
 * one case where baton cannot know whether it went out: it becomes "uncertain" and is not sent
 * again — unless the channel's `resend_uncertain` is true (its provider drops repeats of an
 * idempotency key), when it is sent again with the same key. The other is a channel's own
 * BATON_UNCERTAIN (the message went out whole and no answer came): the same rule, its reason
 * the channel's.
 * Rows are written by a group-committing writer shared by every
 * dispatcher on a store; dispatch_flush() and dispatch_close() commit.
 * A dispatcher opened on a channel picks up that channel's unfinished
 * rows (queued, retry, and deferred ones when due) left by an earlier
 * dispatcher or process — so closing one dispatcher and opening another
 * for the same channel (a SIGHUP reload, a restart) loses nothing, and a
 * channel turned off keeps its unfinished rows until it is turned on.
 * Several dispatchers may serve one channel at once (`baton serve` and a
 * `campaign run` in another process): each beats in the table
 * `dispatch_owners` every second and never takes rows another live one
 * holds; the rows of one whose process is gone (a crash, kill -9) go to
 * the others at the next beat (and those of one silent for 5 minutes,
 * its pid reused or its process hung).
 *
 * Threads: every function may be called from any thread except where
 * noted; outcome callbacks run on a channel worker thread (or on the
 * submitting thread for dry runs and refusals) and must not call
 * dispatch_close/dispatch_flush on their own dispatcher. */
#ifndef BATON_DISPATCH_H
#define BATON_DISPATCH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include <baton/baton.h>

#include "base/histo.h"
#include "config/config.h"
#include "plugin/plugin_host.h"
#include "store/store.h"

typedef struct dispatcher dispatcher;

/* Where a message stands; the delivery log's status column holds the
 * lower-case name (dispatch_status_name). */
typedef enum dispatch_status {
    DISPATCH_QUEUED = 0, /* accepted; waiting for a worker or in flight */
    DISPATCH_RETRY,      /* transient failure; will be retried */
    DISPATCH_DEFERRED,   /* quiet hours; will be sent when they end */
    DISPATCH_SENT,       /* final: the channel confirmed */
    DISPATCH_FAILED,     /* final: permanent error or retries exhausted */
    DISPATCH_CAPPED,     /* final: over a per-profile frequency cap */
    DISPATCH_DRY_RUN,    /* dry run: formatted, not delivered, not logged */
    DISPATCH_DUPLICATE,  /* submit: the key is already in the log */
    DISPATCH_UNCERTAIN,  /* final: the process stopped (kill -9, a crash)
                            while the channel had it in deliver(), or the
                            channel answered BATON_UNCERTAIN (no reply
                            after SMTP's final dot); it may have gone out,
                            so it is not sent again unless the channel
                            sets resend_uncertain */
    DISPATCH_BOUNCED,    /* final: sent, then bounced back (a hard bounce) */
    DISPATCH_COMPLAINED, /* final: sent, then reported as spam */
    DISPATCH_NSTATUS
} dispatch_status;

const char *dispatch_status_name(dispatch_status s);

/* One outcome, handed to the outcome callback. Pointers are borrowed for
 * the duration of the call. */
typedef struct dispatch_outcome {
    const char *channel;
    const char *key;
    const char *recipient;
    const char *profile_id;
    dispatch_status status;  /* SENT, FAILED, UNCERTAIN, CAPPED, DEFERRED, RETRY,
                                DRY_RUN */
    const char *provider_id; /* SENT: the provider's message id ("" if none) */
    const char *reason;      /* FAILED/RETRY: the provider's words; CAPPED,
                                DEFERRED: why */
    unsigned attempts;       /* deliver() calls so far for this message */
    unsigned segments;       /* SMS segments, 0 where it does not apply */
    int64_t next_at;         /* RETRY/DEFERRED: when it goes again (UTC s) */
    const char *formatted;   /* DRY_RUN: format()'s output; else NULL */
    size_t formatted_len;
} dispatch_outcome;

typedef void (*dispatch_outcome_fn)(void *ud, const dispatch_outcome *o);

typedef struct dispatch_opts {
    /* Render nothing more, deliver nothing, log nothing: every submitted
     * message is format()ted on the submitting thread, caps are evaluated
     * (read-only) and the outcome is DRY_RUN (or CAPPED / DEFERRED, as a
     * real run would have it). `campaign run --dry-run`. */
    int dry_run;
    /* caps.per_profile and caps.quiet_hours; NULL for none. Borrowed:
     * must outlive the dispatcher. */
    const conf *caps;
    /* Called once per final or deferred/retry outcome; may be NULL. */
    dispatch_outcome_fn on_outcome;
    void *ud;
    /* Tests: the clock in seconds since the epoch (UTC); NULL for the real
     * one. Retry backoff sleeps stay real. */
    int64_t (*clock)(void *ud);
} dispatch_opts;

/* Open a dispatcher for a started channel instance (instance_start has
 * returned 0; the dispatcher calls only the plugin's ops, never its
 * lifecycle), on store s. Reads the host-owned keys from the instance:
 * rate, connections, batch, retries, retry_backoff, queue. Creates the
 * delivery log tables if needed, starts the workers, and picks up the
 * channel's unfinished rows. NULL with err filled on failure. */
dispatcher *dispatch_open(instance *inst, store *s, const dispatch_opts *opts, char *err,
                          size_t errlen);

/* Stop taking messages, let in-flight batches finish (a worker's batch is
 * bounded by the channel's own timeouts), join the workers, commit the
 * log and free. With drain, first deliver everything queued in memory
 * (retries included, waiting out their backoff) — at most drain_ms; what
 * is left stays "queued"/"retry" in the log for the next dispatcher on
 * this channel. Deferred rows always stay in the log. NULL is a no-op. */
void dispatch_close(dispatcher *d, int drain, int64_t drain_ms);

/* One message to submit. Strings are copied; nothing is kept. */
typedef struct dispatch_msg {
    const char *key;        /* idempotency key: unique, stable on resume */
    const char *recipient;  /* the address (see dispatch_recipient) */
    const char *profile_id; /* for caps and the log; may be NULL */
    size_t nparts;          /* rendered content parts (subject, text...) */
    const char *const *part_names;
    const char *const *part_values;
    const baton_record *row; /* the row, for channel-side templates; may
                                be NULL */
    const char *tz;          /* the profile's IANA zone, for quiet hours;
                                NULL or unknown: caps.quiet_hours.timezone */
    unsigned flags;          /* DISPATCH_F_* */
} dispatch_msg;

enum {
    /* Skip frequency caps and quiet hours (the caller checked them). */
    DISPATCH_F_NOCAPS = 1u << 0,
    /* A proof (`campaign run --proof ADDRESS`): no caps, no idempotency
     * check, not written to the delivery log; the outcome goes only to
     * the callback. */
    DISPATCH_F_PROOF = 1u << 1,
};

/* What submit did with a message. */
typedef enum dispatch_submit_rc {
    DISPATCH_ACCEPTED = 0,      /* queued (or, for a dry run, formatted) */
    DISPATCH_ACCEPTED_DEFERRED, /* quiet hours: recorded, sent later */
    DISPATCH_REFUSED_CAPPED,    /* recorded "capped", not sent */
    DISPATCH_REFUSED_DUPLICATE, /* the key is already in the log; nothing done */
    DISPATCH_FULL,              /* the queue is full and timeout_ms ran out */
    DISPATCH_INVALID,           /* no key or recipient, or format() failed
                                   (dry run); err says why */
    DISPATCH_CLOSED             /* the dispatcher is closing */
} dispatch_submit_rc;

/* Submit one message. Backpressure: when the queue is full, wait up to
 * timeout_ms (0: do not wait; -1: wait as long as it takes) for room.
 * Caller's thread; may block only for that wait and a short log write.
 * err (may be NULL) says why on DISPATCH_INVALID. */
dispatch_submit_rc dispatch_submit(dispatcher *d, const dispatch_msg *m, int64_t timeout_ms,
                                   char *err, size_t errlen);

/* The messages submitted so far are a whole group (the transaction that
 * submitted them committed, nothing more is coming with them): a worker
 * lingering for more to join them takes them now. The journey engine
 * calls it after each batch: its messages cannot be marked in flight
 * before the batch commits, and the linger after that is waiting only. */
void dispatch_kick(dispatcher *d);

/* Wait until nothing is queued, in flight or waiting to retry in memory
 * (deferred rows do not count), then commit the delivery log. Returns 0,
 * or -1 when timeout_ms (-1: no limit) ran out first. */
int dispatch_flush(dispatcher *d, int64_t timeout_ms);

/* Counters since open. */
typedef struct dispatch_stats {
    uint64_t submitted; /* accepted by submit (deferred included) */
    uint64_t sent, failed, capped, deferred, duplicates, dry_run;
    uint64_t uncertain;        /* messages that may have gone out, not sent
                                  again: rows a dead process left in
                                  deliver(), found and closed by this
                                  dispatcher, and BATON_UNCERTAIN answers */
    uint64_t retries;          /* RETRY outcomes (one message may have several) */
    uint64_t attempts;         /* messages handed to deliver() */
    uint64_t throttled;        /* times the channel paused after a batch of
                                  mostly transient failures (a 429 storm) */
    size_t pending;            /* in memory now: queued + in flight + retrying */
    uint64_t sent_last_minute; /* sent within the last 60 s (this second
                                  and the 59 before): the actual rate */
} dispatch_stats;
void dispatch_get_stats(dispatcher *d, dispatch_stats *st);
/* How long the channel's deliver() takes, per call (a batch). */
const histo *dispatch_latency(const dispatcher *d);

const char *dispatch_channel(const dispatcher *d);

/* The host table's deliver_wire and deliver_done (baton.h, 1.4): a
 * channel's messages going on the wire (marked in flight one by one,
 * committed before it returns) and their outcomes as they come (recorded
 * in the next group commit). Messages not handed by a dispatcher's
 * deliver() are ignored. */
void dispatch_deliver_wire(const baton_message *const *msgs, size_t n);
void dispatch_deliver_done(const baton_message *msg, const baton_delivery *out);

/* --- Recipients and consent ------------------------------------------ */

typedef enum dispatch_eligibility {
    DISPATCH_ELIGIBLE = 0,
    DISPATCH_NO_ADDRESS, /* the `address` field is missing, null or empty */
    DISPATCH_NO_CONSENT  /* the `consent` field is missing, null or false */
} dispatch_eligibility;

/* Whether row may be sent to on channel instance inst (consent is
 * checked first: a row with neither is NO_CONSENT, as campaign plan
 * counts it): reads the fields
 * named by the channel's `address` and `consent` keys from row (by name,
 * then as "profile.<name>" for rows of another dimension). A channel with
 * no `consent` needs none; one with no `address` takes the recipient from
 * a "recipient" field when there is one, else it is eligible with an
 * empty address (directmail, push by profile id). On ELIGIBLE, *address
 * (may be NULL) is set to the address, borrowed from row (NUL-terminated
 * copy in addrbuf). */
dispatch_eligibility dispatch_recipient(const instance *inst, const baton_record *row,
                                        char *addrbuf, size_t addrlen);

/* --- Caps ---------------------------------------------------------- */

typedef enum dispatch_cap {
    DISPATCH_CAP_OK = 0,
    DISPATCH_CAP_CAPPED, /* over a per_profile cap: do not send */
    DISPATCH_CAP_QUIET   /* in quiet hours: defer until *until */
} dispatch_cap;

/* The caps that apply to profile_id on channel at time now (UTC s):
 * frequency caps count the log's rows of that profile (status queued,
 * retry, deferred or sent) created within `per`, on the cap's channel
 * ("*": every channel). reason (may be NULL) says which cap. Reads the
 * log as committed plus this process's pending writes. */
dispatch_cap dispatch_caps_check(store *s, const conf *caps, const char *channel,
                                 const char *profile_id, const char *tz, int64_t now,
                                 int64_t *until, char *reason, size_t reasonlen);

/* Quiet hours alone: 1 when now falls inside them, with *until the UTC
 * second they end; 0 otherwise. They are read on the wall clock of tz (a
 * profile's zone), or of caps.quiet_hours.timezone when tz is NULL or no
 * zone, or UTC. c may have no quiet hours. */
int dispatch_quiet_hours(const conf *c, int64_t now, const char *tz, int64_t *until);

/* --- The delivery log ----------------------------------------------- */

/* Create the log's tables on s (dispatch_open does it too). */
int dispatch_log_init(store *s, char *err, size_t errlen);

/* One row of the log. */
typedef struct dispatch_log_row {
    char key[256];
    char channel[64];
    char recipient[256];
    char profile_id[128];
    dispatch_status status;
    char provider_id[128];
    char reason[256];
    unsigned attempts, segments;
    int64_t created_at, updated_at, next_at;
} dispatch_log_row;

/* 1 and *row filled when key is in the log, 0 when not, -1 on error.
 * row may be NULL. Sees this process's pending writes. */
int dispatch_log_get(store *s, const char *key, dispatch_log_row *row);
/* 1 when key was delivered (status sent), else 0. */
int dispatch_log_delivered(store *s, const char *key);
/* Counts by status (indexed by dispatch_status; DRY_RUN and DUPLICATE
 * stay 0) of the rows whose key starts with key_prefix (NULL or "": all)
 * and, when channel is not NULL, on that channel. A row a dead process
 * left in deliver() counts as UNCERTAIN at once (the next dispatcher on
 * its channel records it so). Returns 0 or -1. */
int dispatch_log_counts(store *s, const char *key_prefix, const char *channel,
                        uint64_t counts[DISPATCH_NSTATUS]);
/* fn for each row whose key starts with key_prefix (NULL or "": all) and,
 * when profile_id is not NULL, of that profile, that a dead process left
 * in deliver(): still queued in the log, uncertain already (as
 * dispatch_log_counts counts it). fn must not write the log. 0 or -1. */
int dispatch_log_unsure(store *s, const char *key_prefix, const char *profile_id,
                        void (*fn)(void *ud, const char *key), void *ud);
/* The reason of one row with this status whose key starts with
 * key_prefix ("" in out when none). Returns 0 or -1. */
int dispatch_log_reason(store *s, const char *key_prefix, dispatch_status status, char *out,
                        size_t outlen);
/* Commit every pending log write of every dispatcher on s. */
void dispatch_log_sync(store *s);

/* The store and configuration a dispatcher was opened with (the
 * configuration may be NULL). */
store *dispatch_store(const dispatcher *d);
const conf *dispatch_conf(const dispatcher *d);

/* --- Suppressions ------------------------------------------------------
 * Who asked not to be written to on a channel, or cannot be (table
 * `suppressions` of the state store): a profile (an unsubscribe link) or
 * an address (a hard bounce, a complaint; compared without case).
 * delivery_send consults it for every message of campaigns and journeys. */

/* 1 when profile_id or address is suppressed on channel (or, for an
 * address, on "*": every channel) (reason, may be
 * NULL, says why: "unsubscribed (profile)"); 0 otherwise. Sees this
 * process's pending writes. */
int dispatch_suppressed(store *s, const char *channel, const char *profile_id, const char *address,
                        char *reason, size_t reasonlen);
/* A read-only look at the suppression list of data_dir's state store for
 * plans (which write nothing, and open no store): NULL when the store or
 * the list is absent or empty, so a plan without suppressions pays
 * nothing. check answers as dispatch_suppressed. */
typedef struct suppress_reader suppress_reader;
suppress_reader *dispatch_suppress_reader(const char *data_dir, const char *channel);
int dispatch_suppress_reader_check(suppress_reader *r, const char *profile_id, const char *address);
void dispatch_suppress_reader_close(suppress_reader *r);

/* Record a suppression (kind "profile" or "address"), committed on
 * return. 1 new, 0 it was there already, -1 with err. */
int dispatch_suppress(store *s, const char *channel, const char *kind, const char *value,
                      const char *reason, const char *source, int64_t now, char *err,
                      size_t errlen);

/* --- Feedback: bounces and complaints ------------------------------------ */

typedef enum dispatch_feedback_type {
    FEEDBACK_HARD_BOUNCE, /* the address does not exist: suppress it */
    FEEDBACK_SOFT_BOUNCE, /* a full mailbox, a pause: recorded only */
    FEEDBACK_COMPLAINT    /* reported as spam: suppress it */
} dispatch_feedback_type;

typedef struct dispatch_feedback {
    dispatch_feedback_type type;
    const char *provider;   /* "ses", "dsn", a configured name */
    const char *address;    /* the recipient it concerns; may be NULL */
    const char *key;        /* the delivery's idempotency key (X-Baton-Key); may be NULL */
    const char *message_id; /* the provider's id as in the log, or the Message-ID; may be NULL */
    const char *reason;     /* the provider's words */
} dispatch_feedback;

/* Record f (table `feedback`), committed on return: the delivery it
 * concerns (found by key, else by message_id: the key a baton Message-ID
 * names, else the provider id exactly) becomes bounced or
 * complained with the reason (a soft bounce leaves its status and notes
 * the reason), and a hard bounce or a complaint suppresses the address
 * (the row's recipient when f has none) on every channel ("*"). row (may
 * be NULL) gets the delivery found. 1 when a delivery was found, 0 when
 * none was (the address is still suppressed), -1 with err. */
int dispatch_feedback_record(store *s, const dispatch_feedback *f, int64_t now,
                             dispatch_log_row *row, char *err, size_t errlen);

/* The event a hard bounce or a complaint of row enters into journeys,
 * the same whoever read it (POST /v1/feedback, baton feedback dsn):
 * {"id": "email_bounced:KEY" or "email_complained:KEY", "type",
 * "profile", "time", "data": {"channel", "key", "reason", "provider"}},
 * time, reason and provider those of the delivery's first report of
 * that kind (dispatch_feedback_record it first), so that every repeat is
 * the same event. NULL for a soft bounce or a row of no profile. */
json_t *dispatch_feedback_event(store *s, dispatch_feedback_type t, const dispatch_log_row *row);

/* --- Engagement: opens and clicks ---------------------------------------
 * Hits of a message's open pixel and click redirects (delivery/tracking),
 * one row each in the table `engagement` of the state store. */

typedef struct dispatch_engagement {
    const char *kind; /* "open" or "click" */
    const char *key;  /* the delivery's idempotency key; "" or NULL: a proof's */
    const char *channel, *profile_id, *origin, *name, *node;
    const char *link; /* a click's target */
} dispatch_engagement;

/* Record e, committed on return. 1 when recorded (*first: the first hit
 * of its kind, and for a click of its link, on that delivery), 0 when
 * the key names no delivery (nothing recorded), -1 with err. */
int dispatch_engagement_record(store *s, const dispatch_engagement *e, int64_t now, int *first,
                               char *err, size_t errlen);

typedef struct dispatch_engagement_count {
    uint64_t opens, opened;   /* hits of the pixel; deliveries opened */
    uint64_t clicks, clicked; /* hits of redirects; deliveries clicked */
} dispatch_engagement_count;

/* The hits of origin ("campaign", "journey") name's messages, of node
 * (NULL: all) and of keys starting with key_prefix (NULL: all; a
 * campaign run's "NAME/RUN/"). 0 (zeros when the store holds none), or -1. */
int dispatch_engagement_counts(store *s, const char *origin, const char *name, const char *node,
                               const char *key_prefix, dispatch_engagement_count *out);

#endif
