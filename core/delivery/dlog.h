/* dlog — the delivery log's writer: one per store, shared by every
 * dispatcher on it (refcounted). It writes through the store's one
 * connection under the store's write_lock, in the store's group
 * transaction (store_group_join): a transaction stays open while writes
 * come in, and a committer thread closes it every few milliseconds (as
 * does any module that takes store_lock for its own transaction). Reads
 * through it see the pending writes. Internal to core/dispatch. */
#ifndef BATON_DISPATCH_DLOG_H
#define BATON_DISPATCH_DLOG_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>

#include "delivery/dispatch.h"
#include "store/store.h"

typedef struct dlog {
    store *s;
    sqlite3 *db;         /* s->db */
    pthread_mutex_t *mu; /* &s->write_lock: every use of db */
    pthread_t committer;
    pthread_cond_t wake;
    int stopping;
    int refs;
    /* prepared once: every statement a message or a batch runs; rows are
     * found by rowid (no walk of the key index) */
    sqlite3_stmt *ins, *upd_id, *sending_id, *get, *cap_all, *cap_chan;
    sqlite3_stmt *pump, *due; /* dispatch.c's pump and flush */
    sqlite3_stmt *fl_ins, *fl_del;
    struct dlog *next;
} dlog;

/* The log of s, created on first use (and its tables). NULL with err. */
dlog *dlog_attach(store *s, char *err, size_t errlen);
void dlog_detach(dlog *l);

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
void dlog_inflight_end(dlog *l, int64_t id);
dispatch_status dispatch_status_parse(const char *s);

/* Rows of profile counting against a frequency cap (queued, retry,
 * deferred, sent) created after since, on channel (NULL: any). */
long long dlog_cap_count(store *s, const char *profile, const char *channel, int64_t since);

#endif
