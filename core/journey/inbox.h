/* journey/inbox — the durable inbox of events and the dead-letter table,
 * in a database of their own (<data_dir>/inbox.db) so that committing an
 * event never waits for the engine's transaction on state.db.
 *
 * An event is acknowledged to its source only after jinbox_put has
 * committed it (or dead-lettered it): libmosquitto 2.0 sends a QoS 1
 * PUBACK once the on_message callback returns, so the MQTT source calls
 * this from inside its callback. Dedup by event id is the inbox's UNIQUE
 * key. The live runner commits the events that arrive together in one
 * transaction (group commit) and acknowledges each after it. */
#ifndef BATON_JOURNEY_INBOX_H
#define BATON_JOURNEY_INBOX_H

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

#include "journey/event.h"
#include "store/store.h"

typedef struct jinbox {
    store st;
    sqlite3_stmt *ins, *dead, *last, *read, *prune, *prune_scan, *count_dead, *body;
    pthread_mutex_t mu; /* one statement at a time */
    int ready;
    uint64_t dead_letters, duplicates;
} jinbox;

/* path: a file, or ":memory:". */
int jinbox_open(jinbox *b, const char *path, char *err, size_t errlen);
void jinbox_close(jinbox *b);

/* Group commit: jinbox_put calls between begin and commit share one
 * transaction (one writer thread). Without begin, each put commits. */
int jinbox_begin(jinbox *b, char *err, size_t errlen);
int jinbox_commit(jinbox *b, char *err, size_t errlen);
void jinbox_rollback(jinbox *b);

/* What jinbox_put did with an event. */
enum {
    JINBOX_STORED,    /* new: *seq is its sequence number */
    JINBOX_DUPLICATE, /* its id was in already, with the same content */
    JINBOX_DEAD,      /* dead-lettered: the reason given, or its id was in
                         already with other content (JINBOX_REUSED_REASON) */
};
#define JINBOX_REUSED_REASON "id reused with different content"

/* Store one event or, with reason set, one dead letter; *outcome says
 * which. Returns once it is committed: 0, or -1 with err (nothing
 * stored; do not acknowledge). */
int jinbox_put(jinbox *b, const jevent *ev, const char *reason, const char *source, int64_t now_ms,
               int64_t *seq, int *outcome, char *err, size_t errlen);

/* The events after seq, in order, up to max: fn gets each one parsed
 * again from the stored bytes. Returns the number read, or -1. */
int jinbox_read(jinbox *b, int64_t after, size_t max,
                void (*fn)(void *ud, int64_t seq, jevent *ev, const char *source), void *ud);
/* The highest sequence number stored (0 when empty). */
int64_t jinbox_last(jinbox *b);
/* Forget processed events (seq <= upto) received before older_than_ms:
 * their ids no longer deduplicate. The oldest first, up to the first one
 * received since (its sequence number's order is the order received), at
 * most max rows per call. Returns how many, or -1. */
int jinbox_prune(jinbox *b, int64_t upto, int64_t older_than_ms, int max);
uint64_t jinbox_dead_count(jinbox *b);

/* The spool: events a process other than serve hands in (baton feedback
 * dsn), the table journey_spool of inbox.db. jinbox_spool_put commits one
 * there (waiting its turn behind serve's transactions); serve, running or
 * when it next starts, submits what is spooled like any source's events
 * (source "cli": deduplicated by id, dead-lettered when bad) and deletes
 * it once the inbox has committed it (journey/spool.c). 0, or -1 with
 * err. */
int jinbox_spool_put(const char *data_dir, const char *json, size_t len, char *err, size_t errlen);
/* Open path (an inbox.db) with its spool table on st. 0, or -1 with err. */
int jinbox_spool_open(store *st, const char *path, char *err, size_t errlen);

/* The dead letters of <data_dir>/inbox.db as another process reads them
 * (journey status, while serve runs): {"count": N, "latest": [{"at",
 * "source", "reason", "body", "body_bytes"}]}, newest first, at most
 * `latest` of them; "body" is the first 4 KB as text (each byte that is
 * not UTF-8, a NUL included, shown as U+FFFD), "body_bytes" its size.
 * No inbox yet: count 0. NULL with err when it cannot be read. */
json_t *jinbox_dead_report(const char *data_dir, size_t latest, char *err, size_t errlen);

#endif
