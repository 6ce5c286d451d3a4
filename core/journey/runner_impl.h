/* journey/runner_impl — what the runner's stages share (private to
 * core/journey: runner.h is the interface). The engine thread's loop
 * (loop.c) is a sequence of stage calls along the data flow:
 *
 *   ingest.c   sources' events -> ingest queue -> inbox.db (group commit),
 *              acknowledged, then queued for the engine thread
 *   loop.c     inbox: take what is ready (events, action results, send
 *              statuses, due timers) as one unit of work
 *   router.c   one transaction: results, routing and steps (engine.c),
 *              due timers
 *   sends.c    after the commit, sends to the channels' dispatchers
 *   actions.c  after the commit, action calls to the worker threads */
#ifndef BATON_JOURNEY_RUNNER_IMPL_H
#define BATON_JOURNEY_RUNNER_IMPL_H

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "base/buf.h"
#include "base/deadline.h"
#include "base/histo.h"
#include "base/ratelimit.h"
#include "journey/engine.h"
#include "journey/event.h"
#include "journey/inbox.h"
#include "journey/runner.h"
#include "scope/source.h"

/* An event handed in by a source, waiting for the ingest thread. */
typedef struct initem {
    struct initem *next;
    jevent ev;
    char *reason; /* a dead letter */
    const char *source;
    int64_t now;
    void (*ack)(void *);
    void *ack_ctx;
    jrunner_outcome_fn outcome; /* instead of ack: the event's fate */
} initem;

/* An event in the inbox, waiting for the engine thread. */
typedef struct qitem {
    struct qitem *next;
    int64_t seq;
    jevent ev;
} qitem;

/* A send node passed in a transaction, handed to its dispatcher after. */
typedef struct psend {
    struct psend *next;
    char *key, *profile;
    char *journey; /* its name, for the message's signed links */
    const jnode *node;
    json_t *event, *results;
} psend;

/* An action call, for the workers; or a profile update (set: the values
 * to write, action NULL). */
typedef struct ajob {
    struct ajob *next;
    char *key, *action, *profile, *node;
    json_t *event, *results, *set;
} ajob;

/* What a worker brings back. */
typedef struct adone {
    struct adone *next;
    char *key, *response, *reason;
    int ok;
} adone;

/* A dead letter a transaction decided (a profile the profiles source
 * lacks did not enter): written to the inbox after the commit. */
typedef struct pdead {
    struct pdead *next;
    const char *source; /* interned in jrunner.dead_sources */
    char *reason;
    jevent ev; /* raw: the entry event's envelope */
} pdead;

/* A status to write on a journey_sends row in the next transaction. */
typedef struct smark {
    struct smark *next;
    char *key, *status;
} smark;

/* The `rate` of one action (base/ratelimit), shared by the workers. */
typedef struct bucket {
    struct bucket *next;
    char *action;
    ratelimit rl;
} bucket;

struct jrunner {
    app *a;
    store *st;
    jinbox inbox;
    int64_t last_prune_ms;
    jengine eng;
    jsource *src;
    jchannel *ch;
    size_t nch;
    jrunner_opts o;

    pthread_mutex_t mu;
    pthread_cond_t wake, idle;
    qitem *qhead, *qtail;
    size_t qlen;
    jrunner_source_stats srcs[16]; /* under mu */
    histo action_latency;          /* each invoke() */
    size_t nsrcs;
    int64_t qsince;   /* deadline_now_ms: when the queue last became non-empty */
    int64_t last_txn; /* deadline_now_ms: the last transaction (control is read in each) */
    adone *done;
    int stopping; /* submit refuses */
    int stop;     /* the engine thread exits once the queue is empty */
    int busy;     /* the engine thread is in a batch */
    jrunner_stats stats;

    /* engine thread only */
    psend *txn_sends, *wait_sends;
    ajob *txn_jobs;
    pdead *txn_dead;
    char **dead_sources; /* "journey:<name>", one per journey that refused */
    size_t ndead_sources;
    smark *marks;
    buf *scratch; /* hand(): a send's rendered parts, kept from send to send */
    size_t nscratch;

    /* action workers */
    pthread_mutex_t amu;
    pthread_cond_t awake;
    ajob *ahead, *atail;
    size_t alen;
    int astop;
    pthread_t *workers;
    int nworkers;
    bucket *buckets;

    pthread_t engine;
    int engine_started;

    /* ingest: sources -> inbox.db (group commit) -> acks */
    pthread_mutex_t imu;
    pthread_cond_t icv;
    initem *ihead, *itail;
    size_t ilen;
    int istop;
    int ibusy;         /* a group is being committed */
    int iwaiting;      /* the ingest thread sleeps until an event comes */
    int iflush;        /* a source said its group is complete */
    int iexited;       /* the ingest thread is gone: the engine writes its own */
    int64_t isince_us; /* monotonic: the first event of the group queued */
    pthread_t ingest;
    int ingest_started;

    /* audience entry (audience.c) */
    pthread_mutex_t aumu;
    pthread_cond_t aucv;
    pthread_t aud;
    int aud_inited, aud_started, aud_stop;

    /* events other processes spooled (spool.c) */
    pthread_mutex_t spmu;
    pthread_cond_t spcv;
    pthread_t spool;
    int sp_inited, sp_started, sp_stop;
    long sp_acked;
};

/* One unit of the engine thread's work, taken from the inbox stage. */
typedef struct jwork {
    qitem *items;
    size_t n;
    adone *done;
    smark *marks;
} jwork;

static inline int64_t jr_real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t jr_now_ms(const jrunner *r)
{
    return r->o.clock_ms ? r->o.clock_ms() : jr_real_ms();
}

/* ingest.c */
int jr_submit_from(jrunner *r, const char *source, const char *json, size_t len,
                   void (*ack)(void *), void *ack_ctx);
/* audience.c: the thread that enters audiences and qualifiers (none when
 * no journey has such an entry) */
int jr_audience_start(jrunner *r, char *err, size_t errlen);
void jr_audience_stop(jrunner *r);
/* spool.c: the thread that submits what other processes spooled
 * (jinbox_spool_put); stopped once the ingest thread is gone, as its
 * acknowledgements reach it */
int jr_spool_start(jrunner *r, char *err, size_t errlen);
void jr_spool_stop(jrunner *r);
void *jr_ingest_main(void *arg);
void jr_enqueue(jrunner *r, int64_t seq, jevent *ev);

/* router.c: one transaction over w (marks, action results, events, due
 * timers); 0 committed, -1 rolled back (nothing of it happened). */
int jr_route(jrunner *r, const jwork *w);
void jr_free_txn_work(jrunner *r);
json_t *jr_on_profile(void *ud, const char *profile_id);
int jr_on_profile_exists(void *ud, const char *profile_id);
void jr_on_not_entered(void *ud, const journey *j, const char *profile, json_t *event,
                       const char *reason);
/* ingest.c: after the commit, the transaction's dead letters to the inbox
 * (through the ingest thread's group commit while it runs) */
void jr_dead_commit(jrunner *r);
json_t *jr_on_lookup(void *ud, const char *source, const char *profile_id, json_t *event);
int jr_on_batch(void *ud, const char *profile_id, json_t **profile, size_t n,
                const schema_entity *const *ents, const schema_field *const *cols,
                const baton_value *vals, size_t limit, json_t **rows, char *err, size_t errlen);
int jr_on_aggs(void *ud, const char *profile_id, json_t **profile, size_t n, jagg_read *reads,
               int64_t now, char *err, size_t errlen);
json_t *jr_on_rows(void *ud, const schema_entity *ent, const schema_field *col,
                   const baton_value *v, size_t limit, char *err, size_t errlen);

/* sends.c */
int jr_on_channel_enabled(void *ud, const char *name);
int jr_on_send(void *ud, const jsend_req *q, char *status, size_t statuslen);
void jr_sends_commit(jrunner *r);
void jr_hand_sends(jrunner *r);
void jr_kick_sends(jrunner *r);
void jr_resume_send(jrunner *r, const char *key, const char *profile, const char *jname,
                    const jnode *node, json_t *event, json_t *results);
void jr_psend_free(psend *p);
void jr_mark(jrunner *r, const char *key, const char *status);
void jr_free_marks(smark *m);

/* actions.c */
void jr_on_action(void *ud, const jsend_req *q);
void jr_actions_commit(jrunner *r);
ajob *jr_job_new(const char *key, const char *action, const char *profile, const char *node,
                 json_t *event, json_t *results);
void jr_ajob_free(ajob *j);
void jr_queue_job(jrunner *r, ajob *j);
size_t jr_action_backlog(jrunner *r);
void *jr_action_worker(void *arg);

#endif
