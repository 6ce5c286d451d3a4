/* dlog — the delivery log's writer: one per store, shared by every
 * dispatcher on it (refcounted). It writes through the store's one
 * connection under the store's write_lock, in the store's group
 * transaction (store_group_join): a transaction stays open while writes
 * come in, and a committer thread closes it every few milliseconds (as
 * does any module that takes store_lock for its own transaction). Reads
 * through it see the pending writes. Every write to the log's tables
 * (deliveries, dispatch_inflight, dispatch_owners) is made here; the
 * dispatcher calls these, never SQL. Internal to core/delivery. */
#ifndef BATON_DISPATCH_DLOG_H
#define BATON_DISPATCH_DLOG_H

#include <stddef.h>
#include <stdint.h>

#include "delivery/dispatch.h"
#include "store/store.h"

typedef struct dlog dlog;

/* The log of s, created on first use (and its tables). NULL with err. */
dlog *dlog_attach(store *s, char *err, size_t errlen);
void dlog_detach(dlog *l);

/* The log's lock (the store's write_lock): every call below marked
 * "locked" runs under it; dlog_commit_locked closes the group transaction
 * at once (what must be durable before the next step). */
void dlog_lock(dlog *l);
void dlog_unlock(dlog *l);
void dlog_commit_locked(dlog *l);
/* Commit what is pending (takes the lock). */
void dlog_commit(dlog *l);

/* Under l->mu. 1 inserted (*rowid, may be NULL, set to its rowid), 0 the
 * key exists, -1 error. */
int dlog_insert(dlog *l, const char *key, const char *channel, const char *recipient,
                const char *profile_id, dispatch_status st, int64_t now, int64_t next_at,
                int64_t owner, const char *content, int64_t *rowid);
/* Under l->mu. Set a row's outcome; a final status clears the content
 * and the owner. The row is rowid; key names it in an error logged. */
void dlog_update(dlog *l, int64_t rowid, const char *key, dispatch_status st,
                 const char *provider_id, const char *reason, unsigned attempts, unsigned segments,
                 int64_t now, int64_t next_at, int64_t owner);

/* Under l->mu. The row goes into deliver() now (its attempts counted):
 * in flight until dlog_update records the outcome. */
void dlog_mark_sending(dlog *l, int64_t rowid, const char *key, unsigned attempts);
/* Under l->mu. A batch goes into deliver() now: one row of the table
 * dispatch_inflight lists its rows (rowids), instead of a write to each
 * of them, until dlog_inflight_end (with the outcomes). What a dead owner
 * left there is marked `sending` when its rows are released (dispatch.c's
 * heartbeat), so the pump finds them as before. Returns the record's id, 0
 * on failure (then mark the rows one by one). */
int64_t dlog_inflight_begin(dlog *l, int64_t owner, const int64_t *rowids, size_t n);
/* wired: dlog_inflight_wire was called for it */
void dlog_inflight_end(dlog *l, int64_t id, int wired);
/* Under l->mu. The channel of batch id reports what goes on the wire:
 * on[k] (n of them) says whether the row at position k of its rowids may
 * be on the wire now; after a crash only those rows are uncertain, the
 * others are sent again. One write of a small row (table dispatch_wire)
 * however many rows the call marks; first: the batch's first report. */
void dlog_inflight_wire(dlog *l, int64_t id, const unsigned char *on, size_t n, int first);
dispatch_status dispatch_status_parse(const char *s);

/* Under l->mu. Owner `owner` (pid) of channel beats; owners that stopped
 * beating are forgotten (a process gone at once, one silent for 5 minutes
 * too), and the rows they held go back to the log: their batches in
 * deliver() become `sending` (uncertain, see dispatch.h), the rest
 * unowned. That release costs a scan of the owned rows, so it runs when a
 * beat found an owner gone, and else every 30 s (*orphans_ms: the last,
 * monotonic). */
void dlog_heartbeat(dlog *l, const char *channel, int64_t owner, int64_t pid, int64_t *orphans_ms);
/* Under l->mu. A dispatcher closes: its rows go back to the log and it is
 * no longer an owner. */
void dlog_release(dlog *l, int64_t owner);

/* A pending row of the log no one holds, due now. Borrowed for the call. */
typedef struct dlog_due_row {
    const char *key, *recipient, *profile_id, *content;
    unsigned attempts;
    int64_t created_at, rowid;
    int sending; /* left in deliver() by a dead owner */
} dlog_due_row;
/* Under l->mu. Calls fn for each row of channel due at now (UTC s), at
 * most limit, oldest due first; fn may call dlog_update. */
void dlog_due_rows(dlog *l, const char *channel, int64_t now, size_t limit,
                   void (*fn)(void *ud, const dlog_due_row *r), void *ud);
/* How many such rows there are (takes the lock). */
long long dlog_due_count(dlog *l, const char *channel, int64_t now);

/* Rows of profile counting against a frequency cap (queued, retry,
 * deferred, sent) created after since, on channel (NULL: any). */
long long dlog_cap_count(store *s, const char *profile, const char *channel, int64_t since);

#endif
