/* source_postgres — a PostgreSQL database as a data source (libpq). The
 * campaign engine pushes targeting down to it as SQL ($N placeholders,
 * every literal bound), journeys read a profile and its linked rows, and
 * columns() lets the host check the schema against the catalog.
 *
 * Connections. A pool of `connections` sessions, opened on first use
 * (start() opens one, so that a wrong password or a server that is down
 * fails at once). A thread takes an idle session for each exec() and
 * gives it back when the call returns, with two exceptions:
 *   - a session that holds temporary tables (campaign plan's work
 *     tables, pg_temp.*) stays with the thread that created them until
 *     it has dropped them all, so every statement of a plan sees them;
 *   - a row callback that calls exec() again (a send reading linked rows
 *     while its SELECT streams) gets another session: the first one is
 *     still reading rows (single-row mode, so a large SELECT never sits
 *     in memory). Such a nested call may open one session past the pool.
 * A session found broken is reconnected, with a backoff between failed
 * attempts; a statement that failed because the connection was lost is
 * tried once more on a new one when nothing else depended on the old
 * session (no temporary tables, not nested).
 *
 * Round trips. exec_batch sends several reads at once (libpq's pipeline
 * mode: one journey step's profile and linked rows, one round trip); the
 * counter round_trips counts every statement or batch sent and waited
 * for, so tests can see it.
 *
 * Bulk loads. A statement COPY <table> ... FROM STDIN takes its rows, in
 * COPY's text format, as its one string parameter (baton sample-data).
 *
 * Values. Parameters are sent as text with their types (bool, int8,
 * float8, date, timestamptz; strings as `unknown`, so they take the type
 * of the column they meet: text, varchar, uuid, citext). Rows come back
 * the way source_sqlite gives them, so the core sees one shape of data:
 * bool as 0/1, timestamps as ISO 8601 UTC text ("2026-11-23T10:00:00Z",
 * the session runs in UTC), dates "YYYY-MM-DD", integers as ints,
 * numeric and floats as floats (an integral numeric as an int).
 *
 * Secrets. The password (in `conninfo`, usually "${env:PGPASS}") is never
 * logged: every message that leaves this file has it replaced by "***". */
#include <baton/baton.h>
#include <errno.h>
#include <libpq-fe.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MAX_SESSIONS 65
#define PREP_CACHE 64 /* per session: a journey step has a statement per condition and link */
#define MAX_PARAMS 65535

/* PostgreSQL type oids (pg_type.dat: stable across versions) */
enum {
    OID_BOOL = 16,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_OID = 26,
    OID_FLOAT4 = 700,
    OID_FLOAT8 = 701,
    OID_DATE = 1082,
    OID_TIMESTAMP = 1114,
    OID_TIMESTAMPTZ = 1184,
    OID_NUMERIC = 1700
};

typedef struct prep {
    char *key; /* the SQL, then the parameter types */
    char name[24];
    unsigned long used;
} prep;

typedef struct session {
    PGconn *pg;
    int busy;        /* an exec() is using it */
    pthread_t owner; /* while busy or pinned */
    int pinned;      /* holds temporary tables: its owner's only */
    int has_hash;    /* pg_temp.baton_hash exists in it */
    int has_tz;      /* pg_temp.baton_tz_local exists in it */
    prep cache[PREP_CACHE];
    unsigned long tick, nprep;
} session;

typedef struct src {
    const baton_host *host;
    baton_instance *inst;
    char *conninfo, *password, *search_path, *appname, *where;
    char connect_timeout[24], stmt_timeout[24];
    int max;
    session sess[MAX_SESSIONS];
    int nsess;
    pthread_mutex_t lock;
    pthread_cond_t freed;
    int64_t retry_at_ms; /* no new connection attempt before this */
    int64_t backoff_ms;
    char last_err[512];
    baton_counter *trips; /* round trips to the server */
} src;

static const baton_config_key keys[] = {
    {.name = "conninfo",
     .type = BATON_CFG_STRING,
     .required = 1,
     .help = "a libpq connection string or URI (\"host=127.0.0.1 dbname=crm user=baton "
             "password=${env:PGPASS}\"); the password is never logged"},
    {.name = "schema",
     .type = BATON_CFG_PATH,
     .help = "the schema file describing its tables (docs/schema.md)"},
    {.name = "search_path",
     .type = BATON_CFG_STRING,
     .default_value = "public",
     .help = "the PostgreSQL schema(s) holding the tables (\"crm, public\")"},
    {.name = "connections",
     .type = BATON_CFG_INT,
     .default_value = "4",
     .has_range = 1,
     .min = 1,
     .max = MAX_SESSIONS - 1,
     .help = "sessions kept open (a pool)"},
    {.name = "statement_timeout",
     .type = BATON_CFG_DURATION,
     .default_value = "5m",
     .help = "the longest one statement may run; past it the activity fails with "
             "PostgreSQL's message (0s: no limit)"},
    {.name = "connect_timeout",
     .type = BATON_CFG_DURATION,
     .default_value = "10s",
     .help = "the longest a connection attempt waits (unless conninfo sets connect_timeout)"},
    {.name = "application_name",
     .type = BATON_CFG_STRING,
     .default_value = "baton",
     .help = "the name the sessions show in pg_stat_activity"},
    {0}};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ */
/* Messages                                                            */
/* ------------------------------------------------------------------ */

/* msg into err on one line, the password replaced by "***". */
static void put_err(const src *s, char *err, size_t errlen, const char *msg)
{
    if (!err || !errlen)
        return;
    size_t o = 0;
    const char *pw = s->password && *s->password ? s->password : NULL;
    size_t pwl = pw ? strlen(pw) : 0;
    int space = 0;
    for (const char *p = msg ? msg : "unknown error"; *p && o + 4 < errlen;) {
        if (pw && !strncmp(p, pw, pwl)) {
            memcpy(err + o, "***", 3);
            o += 3;
            p += pwl;
            space = 0;
            continue;
        }
        if (*p == '\n' || *p == '\t' || *p == '\r') {
            space = o > 0;
            p++;
            continue;
        }
        if (space) {
            err[o++] = ' ';
            space = 0;
        }
        err[o++] = *p++;
    }
    while (o > 0 && err[o - 1] == ' ')
        o--;
    err[o] = '\0';
}

static void fmt_err(const src *s, char *err, size_t errlen, const char *fmt, ...)
    BATON_PRINTF(4, 5);
static void fmt_err(const src *s, char *err, size_t errlen, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    put_err(s, err, errlen, tmp);
}

/* A failed statement's message: PostgreSQL's primary message, and its
 * detail and hint when there are. */
static void result_err(const src *s, PGconn *pg, PGresult *r, char *err, size_t errlen)
{
    const char *prim = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!prim) {
        put_err(s, err, errlen,
                r && *PQresultErrorMessage(r) ? PQresultErrorMessage(r) : PQerrorMessage(pg));
        return;
    }
    const char *detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
    const char *hint = PQresultErrorField(r, PG_DIAG_MESSAGE_HINT);
    fmt_err(s, err, errlen, "%s%s%s%s%s", prim, detail ? " (" : "", detail ? detail : "",
            detail ? ")" : "", hint ? "" : "");
    if (hint && strlen(err) + strlen(hint) + 10 < errlen) {
        size_t l = strlen(err);
        snprintf(err + l, errlen - l, "; hint: ");
        put_err(s, err + strlen(err), errlen - strlen(err), hint);
    }
}

static void quiet(void *arg, const char *message) {} /* NOTICEs are not errors */

/* ------------------------------------------------------------------ */
/* Lifecycle                                                           */
/* ------------------------------------------------------------------ */

static int src_init(baton_instance *inst, const baton_host *host, void **state)
{
    src *s = calloc(1, sizeof *s);
    if (!s) {
        host->set_error(inst, "out of memory");
        return -1;
    }
    s->host = host;
    s->inst = inst;
    s->conninfo = strdup(host->config_string(inst, "conninfo"));
    s->search_path = strdup(host->config_string(inst, "search_path"));
    s->appname = strdup(host->config_string(inst, "application_name"));
    s->max = (int)host->config_int(inst, "connections");
    s->trips = host->counter(inst, "round_trips");
    int64_t ct = host->config_duration_ms(inst, "connect_timeout");
    /* libpq counts whole seconds, and 1 would be 2 (it rounds up to 2) */
    snprintf(s->connect_timeout, sizeof s->connect_timeout, "%lld",
             (long long)(ct <= 0     ? 0
                         : ct < 2000 ? 2
                                     : (ct + 999) / 1000));
    snprintf(s->stmt_timeout, sizeof s->stmt_timeout, "%lld",
             (long long)host->config_duration_ms(inst, "statement_timeout"));
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->freed, NULL);
    *state = s;
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(s->conninfo, &perr);
    if (!opts) {
        /* libpq's message may quote the string: keep it out */
        host->set_error(inst, "conninfo is not a libpq connection string or URI%s%s",
                        perr ? ": " : "", perr ? "(see the libpq manual)" : "");
        PQfreemem(perr);
        return -1;
    }
    const char *host_ = NULL, *port = NULL, *db = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        if (!strcmp(o->keyword, "password"))
            s->password = strdup(o->val);
        else if (!strcmp(o->keyword, "host") || (!strcmp(o->keyword, "hostaddr") && !host_))
            host_ = o->val;
        else if (!strcmp(o->keyword, "port"))
            port = o->val;
        else if (!strcmp(o->keyword, "dbname"))
            db = o->val;
    }
    char where[512];
    snprintf(where, sizeof where, "postgresql://%s%s%s/%s", host_ ? host_ : "localhost",
             port ? ":" : "", port ? port : "", db ? db : "");
    s->where = strdup(where);
    PQconninfoFree(opts);
    if (!s->conninfo || !s->search_path || !s->appname || !s->where) {
        host->set_error(inst, "out of memory");
        return -1;
    }
    return 0;
}

static void prep_clear(session *se)
{
    for (int i = 0; i < PREP_CACHE; i++) {
        free(se->cache[i].key);
        se->cache[i] = (prep){0};
    }
}

static void sess_close(session *se)
{
    if (se->pg)
        PQfinish(se->pg);
    se->pg = NULL;
    se->pinned = 0;
    se->has_hash = 0;
    se->has_tz = 0;
    prep_clear(se);
}

/* A new session's settings: the tables' schema, the statement timeout,
 * UTC and ISO dates (the row conversions below read them). */
static int configure(src *s, PGconn *pg, char *err, size_t errlen)
{
    const char *v[2] = {s->search_path, s->stmt_timeout};
    s->host->counter_add(s->trips, 1);
    PGresult *r = PQexecParams(pg,
                               "SELECT set_config('search_path', $1, false), "
                               "set_config('statement_timeout', $2, false), "
                               "set_config('TimeZone', 'UTC', false), "
                               "set_config('DateStyle', 'ISO, YMD', false), "
                               "set_config('IntervalStyle', 'postgres', false), "
                               "set_config('extra_float_digits', '1', false)",
                               2, NULL, v, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        result_err(s, pg, r, err, errlen);
    PQclear(r);
    return ok ? 0 : -1;
}

/* Open se's connection; with a backoff after a failure (the caller
 * holds no lock). */
static int sess_connect(src *s, session *se, char *err, size_t errlen)
{
    pthread_mutex_lock(&s->lock);
    int64_t wait = s->retry_at_ms - now_ms();
    pthread_mutex_unlock(&s->lock);
    if (wait > 0) /* a server that just refused is not asked at once again */
        usleep((useconds_t)(wait > 2000 ? 2000 : wait) * 1000);
    const char *kw[] = {"connect_timeout", "application_name", "dbname", "client_encoding", NULL};
    const char *val[] = {s->connect_timeout, s->appname, s->conninfo, "UTF8", NULL};
    PGconn *pg = PQconnectdbParams(kw, val, 1);
    if (!pg || PQstatus(pg) != CONNECTION_OK) {
        fmt_err(s, err, errlen, "%s: %s", s->where, pg ? PQerrorMessage(pg) : "out of memory");
        PQfinish(pg);
        pthread_mutex_lock(&s->lock);
        s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : 100;
        if (s->backoff_ms > 5000)
            s->backoff_ms = 5000;
        s->retry_at_ms = now_ms() + s->backoff_ms;
        snprintf(s->last_err, sizeof s->last_err, "%s", err);
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    PQsetNoticeProcessor(pg, quiet, NULL);
    if (configure(s, pg, err, errlen) != 0) {
        PQfinish(pg);
        return -1;
    }
    pthread_mutex_lock(&s->lock);
    s->backoff_ms = 0;
    s->retry_at_ms = 0;
    pthread_mutex_unlock(&s->lock);
    prep_clear(se);
    se->pg = pg;
    se->pinned = 0;
    se->has_hash = 0;
    se->has_tz = 0;
    return 0;
}

static int src_start(void *state)
{
    src *s = state;
    char err[512];
    s->nsess = 1;
    if (sess_connect(s, &s->sess[0], err, sizeof err) != 0) {
        s->host->set_error(s->inst, "%s", err);
        s->nsess = 0;
        return -1;
    }
    return 0;
}

static void src_stop(void *state)
{
    src *s = state;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->nsess; i++)
        sess_close(&s->sess[i]);
    s->nsess = 0;
    pthread_mutex_unlock(&s->lock);
}

static void src_destroy(void *state)
{
    src *s = state;
    src_stop(s);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->freed);
    if (s->password) /* not left in freed memory */
        memset(s->password, 0, strlen(s->password));
    if (s->conninfo)
        memset(s->conninfo, 0, strlen(s->conninfo));
    free(s->password);
    free(s->conninfo);
    free(s->search_path);
    free(s->appname);
    free(s->where);
    free(s);
}

/* ------------------------------------------------------------------ */
/* The pool                                                            */
/* ------------------------------------------------------------------ */

/* A session for this thread: its pinned one when idle, else any idle
 * one, else a new one (past the pool's size only for a nested call),
 * else wait for one. NULL with err after the connect timeout. */
static session *acquire(src *s, char *err, size_t errlen)
{
    pthread_t me = pthread_self();
    pthread_mutex_lock(&s->lock);
    int64_t deadline =
        now_ms() + 1000 * (atoll(s->connect_timeout) ? atoll(s->connect_timeout) : 30);
    session *got = NULL;
    for (;;) {
        int nested = 0;
        for (int i = 0; i < s->nsess; i++) {
            session *se = &s->sess[i];
            if (se->busy && pthread_equal(se->owner, me))
                nested = 1;
            if (!se->busy && se->pinned && pthread_equal(se->owner, me)) {
                got = se;
                break;
            }
        }
        for (int i = 0; !got && i < s->nsess; i++)
            if (!s->sess[i].busy && !s->sess[i].pinned && s->sess[i].pg)
                got = &s->sess[i];
        for (int i = 0; !got && i < s->nsess; i++)
            if (!s->sess[i].busy && !s->sess[i].pinned)
                got = &s->sess[i];
        if (!got && (s->nsess < s->max || (nested && s->nsess < MAX_SESSIONS)))
            got = &s->sess[s->nsess++];
        if (got)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->freed, &s->lock, &ts);
        if (now_ms() > deadline) {
            pthread_mutex_unlock(&s->lock);
            fmt_err(s, err, errlen, "%s: all %d connections are busy", s->where, s->max);
            return NULL;
        }
    }
    got->busy = 1;
    got->owner = me;
    pthread_mutex_unlock(&s->lock);
    if (got->pg && PQstatus(got->pg) != CONNECTION_OK) {
        if (got->pinned) {
            /* its temporary tables went with it: the caller must know */
            fmt_err(s, err, errlen, "%s: the connection was lost (its temporary tables with it)",
                    s->where);
            sess_close(got);
            pthread_mutex_lock(&s->lock);
            got->busy = 0;
            pthread_cond_broadcast(&s->freed);
            pthread_mutex_unlock(&s->lock);
            return NULL;
        }
        sess_close(got);
    }
    if (!got->pg && sess_connect(s, got, err, errlen) != 0) {
        pthread_mutex_lock(&s->lock);
        got->busy = 0;
        pthread_cond_broadcast(&s->freed);
        pthread_mutex_unlock(&s->lock);
        return NULL;
    }
    return got;
}

static void release(src *s, session *se)
{
    pthread_mutex_lock(&s->lock);
    se->busy = 0;
    pthread_cond_broadcast(&s->freed);
    pthread_mutex_unlock(&s->lock);
}

/* ------------------------------------------------------------------ */
/* Parameters                                                          */
/* ------------------------------------------------------------------ */

static void civil(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

typedef struct params {
    Oid *types;
    const char **vals;
    int *lens;
    char (*text)[40]; /* the text of non-string values */
    char *sig;        /* the types, for the statement cache's key */
    int n;
} params;

static void params_free(params *p)
{
    free(p->types);
    free(p->vals);
    free(p->lens);
    free(p->text);
    free(p->sig);
    memset(p, 0, sizeof *p);
}

static void params_sig(params *p)
{
    size_t o = 0;
    for (int i = 0; i < p->n; i++)
        o += (size_t)snprintf(p->sig + o, 12, "%u,", (unsigned)p->types[i]);
}

static int params_make(params *p, const baton_value *v, size_t n)
{
    memset(p, 0, sizeof *p);
    p->n = (int)n;
    if (!n)
        return 0;
    p->types = calloc(n, sizeof *p->types);
    p->vals = calloc(n, sizeof *p->vals);
    p->lens = calloc(n, sizeof *p->lens);
    p->text = calloc(n, sizeof *p->text);
    p->sig = calloc(n * 11 + 1, 1);
    if (!p->types || !p->vals || !p->lens || !p->text || !p->sig)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char *t = p->text[i];
        int y, m, d;
        switch (v[i].type) {
        case BATON_T_NULL: p->vals[i] = NULL; break;
        case BATON_T_BOOL:
            p->types[i] = OID_BOOL;
            p->vals[i] = v[i].v.b ? "t" : "f";
            break;
        case BATON_T_INT:
        case BATON_T_DURATION:
            p->types[i] = OID_INT8;
            snprintf(t, 40, "%lld", (long long)(v[i].type == BATON_T_INT ? v[i].v.i : v[i].v.dur));
            p->vals[i] = t;
            break;
        case BATON_T_FLOAT:
            p->types[i] = OID_FLOAT8;
            if (isnan(v[i].v.f))
                snprintf(t, 40, "NaN");
            else if (isinf(v[i].v.f))
                snprintf(t, 40, "%sInfinity", v[i].v.f < 0 ? "-" : "");
            else
                snprintf(t, 40, "%.17g", v[i].v.f);
            p->vals[i] = t;
            break;
        case BATON_T_STRING:
            p->types[i] = 0; /* unknown: the type of what it meets */
            if (v[i].v.s.ptr && memchr(v[i].v.s.ptr, '\0', v[i].v.s.len)) {
                return -1;
            }
            /* libpq reads text parameters up to their NUL: copy when the
             * value is not terminated */
            p->vals[i] = NULL;
            break;
        case BATON_T_DATE:
            p->types[i] = OID_DATE;
            civil(v[i].v.date, &y, &m, &d);
            snprintf(t, 40, "%04d-%02d-%02d", y, m, d);
            p->vals[i] = t;
            break;
        case BATON_T_TIMESTAMP: {
            p->types[i] = OID_TIMESTAMPTZ;
            int64_t days = floor_div(v[i].v.ts, 86400), sec = v[i].v.ts - days * 86400;
            civil(days, &y, &m, &d);
            snprintf(t, 40, "%04d-%02d-%02dT%02d:%02d:%02dZ", y, m, d, (int)(sec / 3600),
                     (int)(sec / 60 % 60), (int)(sec % 60));
            p->vals[i] = t;
            break;
        }
        }
    }
    params_sig(p);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Rows                                                                */
/* ------------------------------------------------------------------ */

/* "2026-11-23 10:00:00.25+00" (DateStyle ISO, TimeZone UTC) as
 * "2026-11-23T10:00:00Z"; fractions of a second go (baton counts whole
 * seconds). Returns the length written to out (at least 32 bytes). */
static size_t iso_ts(const char *v, size_t len, char *out)
{
    /* the date part may have a year of more than 4 digits or " BC" */
    const char *sp = memchr(v, ' ', len);
    if (!sp || len - (size_t)(sp - v) < 9 || (size_t)(sp - v) > 12) {
        size_t n = len < 31 ? len : 31;
        memcpy(out, v, n);
        out[n] = '\0';
        return n;
    }
    size_t dl = (size_t)(sp - v);
    memcpy(out, v, dl);
    out[dl] = 'T';
    memcpy(out + dl + 1, sp + 1, 8);
    out[dl + 9] = 'Z';
    out[dl + 10] = '\0';
    return dl + 10;
}

typedef struct rowconv {
    int ncol;
    const char **names;
    baton_value *vals;
    Oid *types;
    char (*tmp)[40];
} rowconv;

static void rowconv_free(rowconv *c)
{
    free(c->names);
    free(c->vals);
    free(c->types);
    free(c->tmp);
    memset(c, 0, sizeof *c);
}

static int rowconv_init(rowconv *c, PGresult *r)
{
    memset(c, 0, sizeof *c);
    c->ncol = PQnfields(r);
    c->names = calloc((size_t)c->ncol + 1, sizeof *c->names);
    c->vals = calloc((size_t)c->ncol + 1, sizeof *c->vals);
    c->types = calloc((size_t)c->ncol + 1, sizeof *c->types);
    c->tmp = calloc((size_t)c->ncol + 1, sizeof *c->tmp);
    if (!c->names || !c->vals || !c->types || !c->tmp)
        return -1;
    for (int i = 0; i < c->ncol; i++) {
        c->names[i] = PQfname(r, i);
        c->types[i] = PQftype(r, i);
    }
    return 0;
}

/* Row `row` of r into c->vals (borrowing r's text). */
static void convert(rowconv *c, PGresult *r, int row)
{
    for (int i = 0; i < c->ncol; i++) {
        baton_value *o = &c->vals[i];
        if (PQgetisnull(r, row, i)) {
            *o = (baton_value){.type = BATON_T_NULL};
            continue;
        }
        const char *v = PQgetvalue(r, row, i);
        size_t len = (size_t)PQgetlength(r, row, i);
        char *end;
        switch (c->types[i]) {
        case OID_BOOL: *o = (baton_value){.type = BATON_T_INT, .v.i = v[0] == 't'}; break;
        case OID_INT2:
        case OID_INT4:
        case OID_INT8:
        case OID_OID: *o = (baton_value){.type = BATON_T_INT, .v.i = strtoll(v, NULL, 10)}; break;
        case OID_NUMERIC:
            if (!strpbrk(v, ".eEN")) {
                errno = 0;
                long long x = strtoll(v, &end, 10);
                if (!errno && !*end) {
                    *o = (baton_value){.type = BATON_T_INT, .v.i = x};
                    break;
                }
            }
            /* fall through */
        case OID_FLOAT4:
        case OID_FLOAT8: {
            double f = strtod(v, &end);
            *o = isnan(f) ? (baton_value){.type = BATON_T_NULL}
                          : (baton_value){.type = BATON_T_FLOAT, .v.f = f};
            break;
        }
        case OID_TIMESTAMP:
        case OID_TIMESTAMPTZ: {
            size_t n = iso_ts(v, len, c->tmp[i]);
            *o = (baton_value){.type = BATON_T_STRING, .v.s = {c->tmp[i], n}};
            break;
        }
        default: *o = (baton_value){.type = BATON_T_STRING, .v.s = {v, len}};
        }
    }
}

/* ------------------------------------------------------------------ */
/* exec                                                                */
/* ------------------------------------------------------------------ */

/* baton_hash(seed, text) as source_sqlite computes it (FNV-1a over the
 * UTF-8 bytes, then a final mix, the top 63 bits), for reproducible
 * random splits on either source: unsigned 64-bit arithmetic done on
 * 32-bit halves in bigint, which never overflows. A temporary function:
 * it needs no privilege but TEMP and goes with the session. */
/* (1469598103934665603 = 0x14650fb0739d0383 is source_sqlite's basis) */
static const char hash_sql[] =
    "CREATE OR REPLACE FUNCTION pg_temp.baton_hash(seed bigint, t text) RETURNS bigint "
    "LANGUAGE plpgsql IMMUTABLE STRICT AS $f$\n"
    "DECLARE\n"
    "  hi bigint := 342167472; lo bigint := 1939669891; b bytea := convert_to(t, 'UTF8');\n"
    "  m bigint := 4294967295; x bigint; c bigint; a0 bigint; a1 bigint; a2 bigint; a3 bigint; k0 "
    "bigint;\n"
    "  k1 bigint; k2 bigint; k3 bigint; r0 bigint; r1 bigint; r2 bigint; r3 bigint;\n"
    "BEGIN\n"
    "  hi := hi # ((seed >> 32) & m); lo := lo # (seed & m);\n"
    "  -- h *= 1099511628211 = 2^40 + 435\n"
    "  x := lo * 435; c := x >> 32; hi := ((hi * 435 + c + ((lo << 8) & m)) & m); lo := x & m;\n"
    "  FOR i IN 0 .. length(b) - 1 LOOP\n"
    "    lo := lo # get_byte(b, i);\n"
    "    x := lo * 435; c := x >> 32; hi := ((hi * 435 + c + ((lo << 8) & m)) & m); lo := x & m;\n"
    "  END LOOP;\n"
    "  -- h ^= h >> 33\n"
    "  lo := lo # (hi >> 1); \n"
    "  -- h *= 0xff51afd7ed558ccd, in 16-bit limbs\n"
    "  a0 := lo & 65535; a1 := lo >> 16; a2 := hi & 65535; a3 := hi >> 16;\n"
    "  k0 := 36045; k1 := 60757; k2 := 45015; k3 := 65361;\n"
    "  r0 := a0 * k0; c := r0 >> 16; r0 := r0 & 65535;\n"
    "  r1 := a0 * k1 + a1 * k0 + c; c := r1 >> 16; r1 := r1 & 65535;\n"
    "  r2 := a0 * k2 + a1 * k1 + a2 * k0 + c; c := r2 >> 16; r2 := r2 & 65535;\n"
    "  r3 := (a0 * k3 + a1 * k2 + a2 * k1 + a3 * k0 + c) & 65535;\n"
    "  lo := r0 | (r1 << 16); hi := r2 | (r3 << 16);\n"
    "  lo := lo # (hi >> 1);\n"
    "  -- the top 63 bits\n"
    "  RETURN (hi << 31) | (lo >> 1);\n"
    "END $f$";

/* 1 when sql, past blanks and comments, starts with word. */
static int starts_with_word(const char *sql, const char *word)
{
    while (*sql == ' ' || *sql == '\t' || *sql == '\n' || *sql == '\r' || *sql == '(')
        sql++;
    size_t n = strlen(word);
    return !strncasecmp(sql, word, n) &&
           !((sql[n] >= 'a' && sql[n] <= 'z') || (sql[n] >= 'A' && sql[n] <= 'Z') || sql[n] == '_');
}

/* A read kept prepared per session, by its text and parameter types. */
static const char *prepared(src *s, session *se, const char *sql, const params *p, int *fresh)
{
    size_t kl = strlen(sql) + (p->sig ? strlen(p->sig) : 0) + 2;
    prep *lru = NULL;
    for (int i = 0; i < PREP_CACHE; i++) {
        prep *c = &se->cache[i];
        if (c->key && !strncmp(c->key, sql, strlen(sql)) && c->key[strlen(sql)] == '\n' &&
            !strcmp(c->key + strlen(sql) + 1, p->sig ? p->sig : "")) {
            c->used = ++se->tick;
            *fresh = 0;
            return c->name;
        }
        if (!lru || c->used < lru->used)
            lru = c;
    }
    char *key = malloc(kl);
    if (!key)
        return NULL;
    snprintf(key, kl, "%s\n%s", sql, p->sig ? p->sig : "");
    if (lru->key) {
        char dealloc[48];
        snprintf(dealloc, sizeof dealloc, "DEALLOCATE %s", lru->name);
        s->host->counter_add(s->trips, 1);
        PQclear(PQexec(se->pg, dealloc));
        free(lru->key);
    }
    lru->key = key;
    lru->used = ++se->tick;
    snprintf(lru->name, sizeof lru->name, "baton_p%lu", ++se->nprep);
    *fresh = 1;
    return lru->name;
}

static void forget_prepared(session *se, const char *name)
{
    for (int i = 0; i < PREP_CACHE; i++)
        if (se->cache[i].key && !strcmp(se->cache[i].name, name)) {
            free(se->cache[i].key);
            se->cache[i] = (prep){0};
        }
}

/* Whether the session still holds temporary tables. */
static int holds_temp(src *s, session *se)
{
    s->host->counter_add(s->trips, 1);
    PGresult *r = PQexec(se->pg, "SELECT EXISTS (SELECT 1 FROM pg_class WHERE relnamespace = "
                                 "pg_my_temp_schema())");
    int yes =
        PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return yes;
}

/* baton_tz_local(t, zone) as source_sqlite's (the host's reading of the
 * tz database): the wall clock of zone at instant t, in seconds; NULL for
 * a zone PostgreSQL does not know (AT TIME ZONE would fail the whole
 * statement on one bad row). The zone is looked up in the session's copy
 * of pg_timezone_names rather than caught as an error: an EXCEPTION block
 * is a subtransaction per call, which made a campaign over a million rows
 * crawl (and a 3,000-row statement miss a 1 s statement_timeout). */
static const char tz_sql[] =
    "CREATE TEMP TABLE IF NOT EXISTS baton_zones (name text PRIMARY KEY);\n"
    "INSERT INTO pg_temp.baton_zones SELECT DISTINCT name FROM pg_timezone_names "
    "ON CONFLICT DO NOTHING;\n"
    "CREATE OR REPLACE FUNCTION pg_temp.baton_tz_local(t bigint, z text) RETURNS bigint "
    "LANGUAGE plpgsql STABLE STRICT AS $f$\n"
    "BEGIN\n"
    "  IF NOT EXISTS (SELECT 1 FROM pg_temp.baton_zones WHERE name = z) THEN\n"
    "    RETURN NULL;\n"
    "  END IF;\n"
    "  RETURN CAST(EXTRACT(EPOCH FROM (to_timestamp(t) AT TIME ZONE z)) AS BIGINT);\n"
    "END $f$";

typedef enum { RUN_OK = 0, RUN_FAILED = -1, RUN_LOST = -2 } run_rc;

/* A session's pg_temp function, created the first time a statement calls it. */
static run_rc need_function(src *s, session *se, const char *sql, const char *call,
                            const char *create, int *have, char *err, size_t errlen)
{
    if (*have || !strstr(sql, call))
        return RUN_OK;
    s->host->counter_add(s->trips, 1);
    PGresult *r = PQexec(se->pg, create);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        result_err(s, se->pg, r, err, errlen);
    PQclear(r);
    if (!ok)
        return PQstatus(se->pg) == CONNECTION_OK ? RUN_FAILED : RUN_LOST;
    *have = 1;
    return RUN_OK;
}

/* One statement on se; rows to fn as they come (single-row mode). */
static run_rc run_one(src *s, session *se, const char *sql, const params *p, baton_row_fn fn,
                      void *ud, char *err, size_t errlen)
{
    PGconn *pg = se->pg;
    run_rc rc;
    if ((rc = need_function(s, se, sql, "baton_hash(", hash_sql, &se->has_hash, err, errlen)) ||
        (rc = need_function(s, se, sql, "baton_tz_local(", tz_sql, &se->has_tz, err, errlen)))
        return rc;
    int sent;
    int reads = fn && (starts_with_word(sql, "SELECT") || starts_with_word(sql, "WITH") ||
                       starts_with_word(sql, "VALUES") || starts_with_word(sql, "TABLE"));
    const char *pname = NULL;
    if (reads && p->n > 0 && strlen(sql) < 8192) {
        int fresh = 0;
        pname = prepared(s, se, sql, p, &fresh);
        if (pname && fresh) {
            s->host->counter_add(s->trips, 1);
            PGresult *r = PQprepare(pg, pname, sql, p->n, p->types);
            int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
            if (!ok)
                result_err(s, pg, r, err, errlen);
            PQclear(r);
            if (!ok) {
                forget_prepared(se, pname);
                return PQstatus(pg) == CONNECTION_OK ? RUN_FAILED : RUN_LOST;
            }
        }
    }
    s->host->counter_add(s->trips, 1);
    if (pname)
        sent = PQsendQueryPrepared(pg, pname, p->n, p->vals, NULL, NULL, 0);
    else if (p->n == 0)
        sent = PQsendQuery(pg, sql); /* may hold several statements */
    else
        sent = PQsendQueryParams(pg, sql, p->n, p->types, p->vals, NULL, NULL, 0);
    if (!sent) {
        put_err(s, err, errlen, PQerrorMessage(pg));
        return PQstatus(pg) == CONNECTION_OK ? RUN_FAILED : RUN_LOST;
    }
    if (fn)
        PQsetSingleRowMode(pg);
    rowconv c = {0};
    int stop = 0, failed = 0, have_conv = 0;
    PGresult *r;
    while ((r = PQgetResult(pg)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE || (st == PGRES_TUPLES_OK && PQntuples(r) > 0)) {
            if (fn && !stop && !failed) {
                if (!have_conv) {
                    if (rowconv_init(&c, r) != 0) {
                        put_err(s, err, errlen, "out of memory");
                        failed = 1;
                    }
                    have_conv = 1;
                }
                /* single-row mode: every row is a result of its own, and a
                 * name points into the result it came from */
                for (int i = 0; !failed && i < c.ncol; i++)
                    c.names[i] = PQfname(r, i);
                for (int i = 0; !failed && !stop && i < PQntuples(r); i++) {
                    convert(&c, r, i);
                    stop = fn(ud, (size_t)c.ncol, c.names, c.vals) != 0;
                }
                /* once stopped, the rest is read and dropped: a cancel
                 * request could reach the session's next statement */
            }
        } else if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && st != PGRES_EMPTY_QUERY) {
            if (!failed && !stop)
                result_err(s, pg, r, err, errlen);
            failed = 1;
        }
        PQclear(r);
    }
    if (have_conv)
        rowconv_free(&c);
    if (PQstatus(pg) != CONNECTION_OK) {
        fmt_err(s, err, errlen, "%s: %s", s->where, PQerrorMessage(pg));
        return RUN_LOST;
    }
    if (failed && !stop)
        return RUN_FAILED;
    /* temporary tables tie the session to this thread until dropped */
    if (strstr(sql, "pg_temp.")) {
        if (starts_with_word(sql, "CREATE"))
            se->pinned = 1;
        else if (starts_with_word(sql, "DROP") && se->pinned)
            se->pinned = holds_temp(s, se);
    }
    return RUN_OK;
}

/* COPY ... FROM STDIN with its rows (COPY's text format) as data. */
static run_rc copy_in(src *s, session *se, const char *sql, const char *data, size_t len, char *err,
                      size_t errlen)
{
    PGconn *pg = se->pg;
    s->host->counter_add(s->trips, 1);
    PGresult *r = PQexec(pg, sql);
    int ready = PQresultStatus(r) == PGRES_COPY_IN;
    if (!ready)
        result_err(s, pg, r, err, errlen);
    PQclear(r);
    if (!ready)
        return PQstatus(pg) == CONNECTION_OK ? RUN_FAILED : RUN_LOST;
    int ok = 1;
    for (size_t o = 0; ok && o < len; o += 1u << 20) {
        size_t n = len - o < (1u << 20) ? len - o : 1u << 20;
        ok = PQputCopyData(pg, data + o, (int)n) == 1;
    }
    ok = PQputCopyEnd(pg, ok ? NULL : "baton: sending the rows failed") == 1 && ok;
    int failed = !ok;
    if (!ok)
        put_err(s, err, errlen, PQerrorMessage(pg));
    while ((r = PQgetResult(pg)) != NULL) {
        if (PQresultStatus(r) != PGRES_COMMAND_OK && !failed) {
            result_err(s, pg, r, err, errlen);
            failed = 1;
        }
        PQclear(r);
    }
    if (PQstatus(pg) != CONNECTION_OK)
        return RUN_LOST;
    return failed ? RUN_FAILED : RUN_OK;
}

/* PostgreSQL never looks up functions in pg_temp unqualified: the SQL's
 * baton_hash( calls (split's random mode) become pg_temp.baton_hash(.
 * NULL when there is none to qualify. */
static char *qualify_hash(const char *sql)
{
    static const char fn[] = "baton_hash(", q[] = "pg_temp.";
    size_t n = 0;
    for (const char *p = strstr(sql, fn); p; p = strstr(p + 1, fn))
        n += p - sql < 8 || strncmp(p - 8, q, 8) != 0;
    if (!n)
        return NULL;
    char *out = malloc(strlen(sql) + n * 8 + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = sql; *p;) {
        if (!strncmp(p, fn, sizeof fn - 1) && (p - sql < 8 || strncmp(p - 8, q, 8) != 0) &&
            !(p > sql && (p[-1] == '_' || p[-1] == '.' || p[-1] == '"' ||
                          (p[-1] >= 'a' && p[-1] <= 'z') || (p[-1] >= 'A' && p[-1] <= 'Z')))) {
            memcpy(o, q, 8);
            o += 8;
        }
        *o++ = *p++;
    }
    *o = '\0';
    return out;
}

static int src_exec_sql(src *s, const char *sql, const baton_value *values, size_t nparams,
                        baton_row_fn fn, void *ud, char *err, size_t errlen);

static int src_exec(void *state, const char *sql, const baton_value *values, size_t nparams,
                    baton_row_fn fn, void *ud, char *err, size_t errlen)
{
    char *q = qualify_hash(sql);
    int rc = src_exec_sql(state, q ? q : sql, values, nparams, fn, ud, err, errlen);
    free(q);
    return rc;
}

static int src_exec_sql(src *s, const char *sql, const baton_value *values, size_t nparams,
                        baton_row_fn fn, void *ud, char *err, size_t errlen)
{
    if (starts_with_word(sql, "COPY") && strstr(sql, "FROM STDIN")) {
        /* bulk loads (sample-data): the rows are the one string parameter */
        if (nparams != 1 || values[0].type != BATON_T_STRING) {
            fmt_err(s, err, errlen, "COPY ... FROM STDIN takes its rows as one string parameter");
            return -1;
        }
        session *se = acquire(s, err, errlen);
        if (!se)
            return -1;
        run_rc r = copy_in(s, se, sql, values[0].v.s.ptr, values[0].v.s.len, err, errlen);
        if (r == RUN_LOST)
            sess_close(se);
        release(s, se);
        return r == RUN_OK ? 0 : -1;
    }
    if (nparams > MAX_PARAMS) {
        fmt_err(s, err, errlen, "%zu parameters: PostgreSQL takes at most %d", nparams, MAX_PARAMS);
        return -1;
    }
    params p;
    /* strings: libpq reads text up to a NUL, so each is copied with one */
    char **copies = nparams ? calloc(nparams, sizeof *copies) : NULL;
    if ((nparams && !copies) || params_make(&p, values, nparams) != 0) {
        params_free(&p);
        free(copies);
        fmt_err(s, err, errlen, "a parameter holds a NUL byte, which PostgreSQL text cannot");
        return -1;
    }
    int rc = -1;
    for (size_t i = 0; i < nparams; i++)
        if (values[i].type == BATON_T_STRING) {
            copies[i] = malloc(values[i].v.s.len + 1);
            if (!copies[i]) {
                fmt_err(s, err, errlen, "out of memory");
                goto out;
            }
            if (values[i].v.s.len)
                memcpy(copies[i], values[i].v.s.ptr, values[i].v.s.len);
            copies[i][values[i].v.s.len] = '\0';
            p.vals[i] = copies[i];
        }
    for (int attempt = 0, untyped = 0; attempt < 2; attempt++) {
        session *se = acquire(s, err, errlen);
        if (!se)
            goto out;
        int was_pinned = se->pinned;
        run_rc r = run_one(s, se, sql, &p, fn, ud, err, errlen);
        if (r == RUN_LOST)
            sess_close(se);
        release(s, se);
        if (r == RUN_OK) {
            rc = 0;
            break;
        }
        /* a string parameter no expression reads (numbers are global,
         * as in SQLite) has no type to take: it is text */
        const char *un = "could not determine data type of parameter $";
        if (r == RUN_FAILED && !strncmp(err, un, strlen(un)) && untyped++ < p.n) {
            long k = atol(err + strlen(un));
            if (k >= 1 && k <= p.n && p.types[k - 1] == 0) {
                p.types[k - 1] = 25; /* text */
                params_sig(&p);
                attempt--;
                continue;
            }
        }
        /* a lost connection: once more on a new one, when no temporary
         * table and no half-read rows depended on the old */
        if (r != RUN_LOST || was_pinned || attempt > 0)
            break;
        s->host->log(s->inst, BATON_LOG_WARN, "%s: connection lost (%s); reconnecting", s->where,
                     err);
    }
out:
    for (size_t i = 0; copies && i < nparams; i++)
        free(copies[i]);
    free(copies);
    params_free(&p);
    return rc;
}

/* The rows of a batch's statement i to its fn (the results of one query
 * of the pipeline, up to the NULL that ends them). 1 when it failed. */
static int batch_rows(src *s, PGconn *pg, const baton_sql_stmt *st, char *err, size_t errlen,
                      int failed)
{
    rowconv c = {0};
    int have_conv = 0, stop = 0, bad = 0;
    PGresult *r;
    while ((r = PQgetResult(pg)) != NULL) {
        ExecStatusType rs = PQresultStatus(r);
        int tuples = rs == PGRES_TUPLES_OK || rs == PGRES_SINGLE_TUPLE;
        if (tuples && st->fn && !stop && !bad) {
            if (!have_conv && PQntuples(r) > 0) {
                if (rowconv_init(&c, r) != 0) {
                    put_err(s, err, errlen, "out of memory");
                    bad = 1;
                }
                have_conv = 1;
            }
            /* each result's own names: in single-row results every row
             * is a PGresult, and the first one's names go with it */
            for (int i = 0; have_conv && !bad && i < c.ncol && PQntuples(r) > 0; i++)
                c.names[i] = PQfname(r, i);
            for (int i = 0; !bad && !stop && i < PQntuples(r); i++) {
                convert(&c, r, i);
                stop = st->fn(st->ud, (size_t)c.ncol, c.names, c.vals) != 0;
            }
        } else if (!tuples && rs != PGRES_COMMAND_OK) {
            if (!failed && !bad)
                result_err(s, pg, r, err, errlen);
            bad = 1;
        }
        PQclear(r);
    }
    if (have_conv)
        rowconv_free(&c);
    return bad;
}

/* Reads in one round trip: every statement sent in pipeline mode, one
 * sync, then their results in order. */
static run_rc run_batch(src *s, session *se, const baton_sql_stmt *st, const params *ps, size_t n,
                        char *err, size_t errlen)
{
    PGconn *pg = se->pg;
    run_rc rc;
    for (size_t i = 0; i < n; i++)
        if ((rc = need_function(s, se, st[i].sql, "baton_hash(", hash_sql, &se->has_hash, err,
                                errlen)) ||
            (rc = need_function(s, se, st[i].sql, "baton_tz_local(", tz_sql, &se->has_tz, err,
                                errlen)))
            return rc;
    /* reads with parameters run prepared, as run_one's: named before the
     * pipeline (naming may deallocate one), prepared in it the first time */
    const char **pname = calloc(n + 1, sizeof *pname);
    int *fresh = calloc(n + 1, sizeof *fresh);
    if (!pname || !fresh) {
        free(pname);
        free(fresh);
        put_err(s, err, errlen, "out of memory");
        return RUN_FAILED;
    }
    for (size_t i = 0; n <= PREP_CACHE / 2 && i < n; i++)
        if (st[i].fn && ps[i].n > 0 && strlen(st[i].sql) < 8192 &&
            (starts_with_word(st[i].sql, "SELECT") || starts_with_word(st[i].sql, "WITH")))
            pname[i] = prepared(s, se, st[i].sql, &ps[i], &fresh[i]);
    if (PQenterPipelineMode(pg) != 1) {
        for (size_t i = 0; i < n; i++)
            if (fresh[i])
                forget_prepared(se, pname[i]);
        free(pname);
        free(fresh);
        put_err(s, err, errlen, PQerrorMessage(pg));
        return PQstatus(pg) == CONNECTION_OK ? RUN_FAILED : RUN_LOST;
    }
    int sent = 1;
    for (size_t i = 0; sent && i < n; i++) {
        if (pname[i] && fresh[i])
            sent = PQsendPrepare(pg, pname[i], st[i].sql, ps[i].n, ps[i].types);
        if (sent && pname[i])
            sent = PQsendQueryPrepared(pg, pname[i], ps[i].n, ps[i].vals, NULL, NULL, 0);
        else if (sent)
            sent =
                PQsendQueryParams(pg, st[i].sql, ps[i].n, ps[i].types, ps[i].vals, NULL, NULL, 0);
    }
    sent = sent && PQpipelineSync(pg) == 1;
    s->host->counter_add(s->trips, 1);
    int failed = !sent;
    if (!sent)
        put_err(s, err, errlen, PQerrorMessage(pg));
    static const baton_sql_stmt prepare = {0};
    for (size_t i = 0; sent && i < n && PQstatus(pg) == CONNECTION_OK; i++) {
        if (pname[i] && fresh[i])
            failed |= batch_rows(s, pg, &prepare, err, errlen, failed);
        failed |= batch_rows(s, pg, &st[i], err, errlen, failed);
    }
    for (size_t i = 0; failed && i < n; i++)
        if (fresh[i]) /* it may not have been made */
            forget_prepared(se, pname[i]);
    free(pname);
    free(fresh);
    /* the sync's own result closes the pipeline */
    PGresult *r;
    while (sent && PQstatus(pg) == CONNECTION_OK && (r = PQgetResult(pg)) != NULL) {
        int sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        PQclear(r);
        if (sync)
            break;
    }
    if (PQstatus(pg) != CONNECTION_OK || PQexitPipelineMode(pg) != 1) {
        fmt_err(s, err, errlen, "%s: %s", s->where, PQerrorMessage(pg));
        return RUN_LOST;
    }
    return failed ? RUN_FAILED : RUN_OK;
}

static int src_exec_batch(void *state, const baton_sql_stmt *st, size_t n, char *err, size_t errlen)
{
    src *s = state;
    params *ps = calloc(n + 1, sizeof *ps);
    char ***copies = calloc(n + 1, sizeof *copies);
    int rc = -1, made = 0;
    if (!ps || !copies) {
        fmt_err(s, err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++, made++) {
        if (st[i].nparams > MAX_PARAMS || params_make(&ps[i], st[i].params, st[i].nparams) != 0) {
            params_free(&ps[i]);
            fmt_err(s, err, errlen, "a parameter holds a NUL byte, which PostgreSQL text cannot");
            goto out;
        }
        copies[i] = calloc(st[i].nparams + 1, sizeof **copies);
        if (!copies[i]) {
            made++;
            fmt_err(s, err, errlen, "out of memory");
            goto out;
        }
        for (size_t k = 0; k < st[i].nparams; k++)
            if (st[i].params[k].type == BATON_T_STRING) {
                size_t l = st[i].params[k].v.s.len;
                copies[i][k] = malloc(l + 1);
                if (!copies[i][k]) {
                    made++;
                    fmt_err(s, err, errlen, "out of memory");
                    goto out;
                }
                if (l)
                    memcpy(copies[i][k], st[i].params[k].v.s.ptr, l);
                copies[i][k][l] = '\0';
                ps[i].vals[k] = copies[i][k];
            }
    }
    /* not tried again on a lost connection: some rows may have gone to
     * their fn already; the caller reads one by one instead */
    session *se = acquire(s, err, errlen);
    if (se) {
        run_rc r = run_batch(s, se, st, ps, n, err, errlen);
        if (r == RUN_LOST)
            sess_close(se);
        release(s, se);
        rc = r == RUN_OK ? 0 : -1;
    }
out:
    for (int i = 0; i < made; i++) {
        for (size_t k = 0; copies && copies[i] && k < st[i].nparams; k++)
            free(copies[i][k]);
        if (copies)
            free(copies[i]);
        params_free(&ps[i]);
    }
    free(copies);
    free(ps);
    return rc;
}

typedef struct col_acc {
    baton_row_fn fn;
    void *ud;
    int found;
} col_acc;

static int col_row(void *ud, size_t n, const char *const *names, const baton_value *v)
{
    col_acc *a = ud;
    a->found = 1;
    return a->fn ? a->fn(a->ud, n, names, v) : 1;
}

/* The columns of a table, in the first schema of search_path that has it
 * (as PostgreSQL resolves the name): "name" and "type" (format_type). */
static int src_columns(void *state, const char *table, baton_row_fn fn, void *ud, char *err,
                       size_t errlen)
{
    col_acc a = {fn, ud, 0};
    baton_value v = {.type = BATON_T_STRING, .v.s = {table, strlen(table)}};
    if (src_exec(state,
                 "SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type "
                 "FROM pg_attribute a WHERE a.attrelid = (SELECT c.oid FROM pg_class c "
                 "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN "
                 "unnest(current_schemas(false)) WITH ORDINALITY AS sp(name, pos) "
                 "ON n.nspname = sp.name WHERE c.relname = $1::text "
                 "AND c.relkind IN ('r', 'v', 'm', 'p', 'f') ORDER BY sp.pos LIMIT 1) "
                 "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                 &v, 1, col_row, &a, err, errlen) != 0)
        return -1;
    return a.found ? 0 : 1;
}

static const baton_source_ops ops = {
    .size = sizeof ops,
    .dialect = "postgresql",
    .exec = src_exec,
    .columns = src_columns,
    .exec_batch = src_exec_batch,
};

BATON_PLUGIN(.name = "source_postgres", .version = "1.0.0",
             .description = "a PostgreSQL database (libpq): campaigns and journeys on the "
                            "database where the data lives",
             .kind = BATON_KIND_SOURCE, .config = keys, .init = src_init, .start = src_start,
             .stop = src_stop, .destroy = src_destroy, .ops = &ops)
