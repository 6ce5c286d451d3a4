/* source_sqlite — the embedded default data source: one SQLite database
 * file. The campaign engine pushes targeting down to it as SQL (work
 * tables, joins, set operations) through exec() with bound parameters;
 * columns() lets the host check the schema against the real tables.
 * Journeys read a profile and its linked rows through exec() on every
 * step, so single read-only statements are kept prepared (STMT_CACHE).
 *
 * Storage conventions (docs/schema.md): timestamps are ISO 8601 UTC text
 * ("2026-11-23T10:00:00Z"), dates "YYYY-MM-DD", bools 0/1 — bound
 * parameters of those types are written the same way, so comparisons in
 * SQL are plain text or integer comparisons. */
#include <baton/baton.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Prepared read-only statements kept by their SQL text: journeys read a
 * profile and its linked rows with the same few statements on every step,
 * and the aggregates of each condition with one of their own; a prepare
 * costs as much as the read. Least recently used goes. */
#define STMT_CACHE 64

typedef struct stmt_slot {
    char *sql;
    size_t len; /* strlen(sql): most texts differ in it */
    sqlite3_stmt *st;
    unsigned long used;
    int busy;           /* stepping now: a row callback's own exec prepares afresh */
    size_t *pmap;       /* the params index of each placeholder, read once */
    baton_value *bound; /* in pmap's block: each placeholder's last value (same_bound) */
} stmt_slot;

typedef struct src {
    const baton_host *host;
    baton_instance *inst;
    sqlite3 *db;
    char *path;
    stmt_slot cache[STMT_CACHE];
    unsigned long tick;
} src;

static const baton_config_key keys[] = {
    {.name = "path",
     .type = BATON_CFG_PATH,
     .required = 1,
     .help = "the SQLite database file (created when missing)"},
    {.name = "cache_mb",
     .type = BATON_CFG_INT,
     .default_value = "64",
     .has_range = 1,
     .min = 1,
     .max = 65536,
     .help = "page cache size in MiB"},
    {.name = "timeout",
     .type = BATON_CFG_DURATION,
     .default_value = "10s",
     .help = "how long a statement waits for a lock held by another process"},
    {0}};

/* A stable 63-bit hash of (seed, text): random splits are reproducible
 * from their seed, on any machine (FNV-1a, then a final mix). */
static void fn_hash(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)sqlite3_value_int64(argv[0]);
    h *= 1099511628211ull;
    const unsigned char *t = sqlite3_value_text(argv[1]);
    int n = sqlite3_value_bytes(argv[1]);
    for (int i = 0; t && i < n; i++) {
        h ^= t[i];
        h *= 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    sqlite3_result_int64(ctx, (sqlite3_int64)(h >> 1));
}

/* baton_tz_local(t, zone): the wall clock of zone at instant t (seconds),
 * as the host reads it (expressions with a zone compile to it); NULL for
 * a NULL argument or an unknown zone. */
static void fn_tz_local(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    const baton_host *host = sqlite3_user_data(ctx);
    const char *zone = (const char *)sqlite3_value_text(argv[1]);
    int64_t local;
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL || !zone ||
        host->zone_local(zone, (int64_t)sqlite3_value_int64(argv[0]), &local) != 0) {
        sqlite3_result_null(ctx);
        return;
    }
    sqlite3_result_int64(ctx, (sqlite3_int64)local);
}

static int src_init(baton_instance *inst, const baton_host *host, void **state)
{
    src *s = calloc(1, sizeof *s);
    if (!s) {
        host->set_error(inst, "out of memory");
        return -1;
    }
    s->host = host;
    s->inst = inst;
    s->path = strdup(host->config_string(inst, "path"));
    *state = s;
    return 0;
}

/* The database's folder, created when missing (data lives in var/). */
static void make_parent(const char *path)
{
    char *p = strdup(path);
    char *slash = strrchr(p, '/');
    if (slash && slash != p) {
        *slash = '\0';
        for (char *c = p + 1; *c; c++)
            if (*c == '/') {
                *c = '\0';
                mkdir(p, 0755);
                *c = '/';
            }
        mkdir(p, 0755);
    }
    free(p);
}

static int src_start(void *state)
{
    src *s = state;
    make_parent(s->path);
    if (sqlite3_open_v2(s->path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        s->host->set_error(s->inst, "%s: cannot open: %s", s->path,
                           s->db ? sqlite3_errmsg(s->db) : "out of memory");
        sqlite3_close(s->db);
        s->db = NULL;
        return -1;
    }
    sqlite3_busy_timeout(s->db, (int)s->host->config_duration_ms(s->inst, "timeout"));
    char pragmas[160];
    snprintf(pragmas, sizeof pragmas,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-%lld;",
             (long long)s->host->config_int(s->inst, "cache_mb") * 1024);
    char *err = NULL;
    if (sqlite3_exec(s->db, pragmas, NULL, NULL, &err) != SQLITE_OK) {
        s->host->set_error(s->inst, "%s: %s", s->path, err ? err : "cannot configure");
        sqlite3_free(err);
        sqlite3_close(s->db);
        s->db = NULL;
        return -1;
    }
    sqlite3_create_function(s->db, "baton_hash", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
                            fn_hash, NULL, NULL);
    if (s->host->abi_minor >= 3)
        sqlite3_create_function(s->db, "baton_tz_local", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC,
                                (void *)s->host, fn_tz_local, NULL, NULL);
    return 0;
}

static void cache_clear(src *s)
{
    for (int i = 0; i < STMT_CACHE; i++) {
        sqlite3_finalize(s->cache[i].st);
        free(s->cache[i].sql);
        free(s->cache[i].pmap);
        s->cache[i] = (stmt_slot){0};
    }
}

static stmt_slot *cache_find(src *s, const char *sql)
{
    size_t len = strlen(sql);
    for (int i = 0; i < STMT_CACHE; i++)
        if (s->cache[i].len == len && s->cache[i].sql && !s->cache[i].busy &&
            !memcmp(s->cache[i].sql, sql, len)) {
            s->cache[i].used = ++s->tick;
            s->cache[i].busy = 1;
            return &s->cache[i];
        }
    return NULL;
}

/* Keep st (the whole of sql, read-only) in the least recently used slot;
 * NULL when it cannot be kept (the caller finalizes it). */
static stmt_slot *cache_put(src *s, const char *sql, sqlite3_stmt *st)
{
    if (!sqlite3_stmt_readonly(st))
        return NULL;
    stmt_slot *lru = NULL;
    for (int i = 0; i < STMT_CACHE; i++)
        if (!s->cache[i].busy && (!lru || s->cache[i].used < lru->used))
            lru = &s->cache[i];
    char *copy = lru ? strdup(sql) : NULL;
    if (!copy)
        return NULL;
    sqlite3_finalize(lru->st);
    free(lru->sql);
    free(lru->pmap);
    *lru = (stmt_slot){.sql = copy, .len = strlen(copy), .st = st, .used = ++s->tick, .busy = 1};
    return lru;
}

/* Done with st: a kept statement is reset for its next use. Its text
 * bindings (bind: not copied) point into the last caller's parameters
 * until then; nothing reads them: a use binds every parameter before it
 * steps, and finalize does not look at them. */
static void release(stmt_slot *slot, sqlite3_stmt *st)
{
    if (slot) {
        sqlite3_reset(st);
        slot->busy = 0;
    } else {
        sqlite3_finalize(st);
    }
}

static void src_stop(void *state)
{
    src *s = state;
    cache_clear(s);
    sqlite3_close(s->db);
    s->db = NULL;
}

static void src_destroy(void *state)
{
    src *s = state;
    if (s->db)
        sqlite3_close(s->db);
    free(s->path);
    free(s);
}

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

static int64_t fdiv(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int bind(sqlite3_stmt *st, int idx, const baton_value *v)
{
    char tmp[32];
    int y, m, d;
    switch (v->type) {
    case BATON_T_NULL: return sqlite3_bind_null(st, idx);
    case BATON_T_BOOL: return sqlite3_bind_int(st, idx, v->v.b != 0);
    case BATON_T_INT: return sqlite3_bind_int64(st, idx, v->v.i);
    case BATON_T_DURATION: return sqlite3_bind_int64(st, idx, v->v.dur);
    case BATON_T_FLOAT: return sqlite3_bind_double(st, idx, v->v.f);
    case BATON_T_STRING: /* not copied: v outlives the statement's run (release) */
        return sqlite3_bind_text(st, idx, v->v.s.ptr ? v->v.s.ptr : "", (int)v->v.s.len,
                                 SQLITE_STATIC);
    case BATON_T_DATE:
        civil(v->v.date, &y, &m, &d);
        snprintf(tmp, sizeof tmp, "%04d-%02d-%02d", y, m, d);
        return sqlite3_bind_text(st, idx, tmp, -1, SQLITE_TRANSIENT);
    case BATON_T_TIMESTAMP: {
        int64_t days = fdiv(v->v.ts, 86400), sec = v->v.ts - days * 86400;
        civil(days, &y, &m, &d);
        snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02dZ", y, m, d, (int)(sec / 3600),
                 (int)(sec / 60 % 60), (int)(sec % 60));
        return sqlite3_bind_text(st, idx, tmp, -1, SQLITE_TRANSIENT);
    }
    }
    return SQLITE_MISUSE;
}

/* A kept statement keeps its bindings from one use to the next (reset
 * does not clear them): a number, a truth, a date, an instant or NULL
 * equal to the one bound last time is not bound again (a journey's
 * aggregates bind the same constants for every profile). Text always is
 * (bind does not copy it). */
static int same_bound(const baton_value *last, const baton_value *v)
{
    if (last->type != v->type)
        return 0;
    switch (v->type) {
    case BATON_T_NULL: return 1;
    case BATON_T_BOOL: return (last->v.b != 0) == (v->v.b != 0);
    case BATON_T_FLOAT: return memcmp(&last->v.f, &v->v.f, sizeof v->v.f) == 0; /* -0.0, NaN */
    case BATON_T_INT: return last->v.i == v->v.i;
    case BATON_T_DURATION: return last->v.dur == v->v.dur;
    case BATON_T_DATE: return last->v.date == v->v.date;
    case BATON_T_TIMESTAMP: return last->v.ts == v->v.ts;
    default: return 0;
    }
}

/* Run every statement of sql in turn (parameters go to the statement that
 * names them: ?NNN numbers are global); rows of each go to fn. */
static int src_exec(void *state, const char *sql, const baton_value *params, size_t nparams,
                    baton_row_fn fn, void *ud, char *err, size_t errlen)
{
    src *s = state;
    if (!s->db) {
        snprintf(err, errlen, "%s: the source is not started", s->path);
        return -1;
    }
    const char *tail = sql;
    size_t next_param = 0;
    while (tail && *tail) {
        sqlite3_stmt *st = NULL;
        stmt_slot *slot = tail == sql ? cache_find(s, sql) : NULL;
        if (slot) {
            st = slot->st;
            tail = ""; /* only a whole single statement is kept */
        } else {
            const char *start = tail;
            if (sqlite3_prepare_v3(s->db, tail, -1, SQLITE_PREPARE_PERSISTENT, &st, &tail) !=
                SQLITE_OK) {
                snprintf(err, errlen, "%s", sqlite3_errmsg(s->db));
                return -1;
            }
            if (!st)
                continue; /* whitespace or a comment */
            if (start == sql && !tail[strspn(tail, " \t\r\n;")])
                slot = cache_put(s, sql, st);
        }
        int np = sqlite3_bind_parameter_count(st);
        if (slot && !slot->pmap && np > 0 &&
            (slot->pmap = malloc((size_t)np * (sizeof(size_t) + sizeof(baton_value))))) {
            slot->bound = (baton_value *)(slot->pmap + np);
            for (int i = 1, k = 0; i <= np; i++) {
                const char *pn = sqlite3_bind_parameter_name(st, i);
                slot->pmap[i - 1] = pn && pn[0] == '?' ? (size_t)atol(pn + 1) - 1 : (size_t)k++;
                slot->bound[i - 1] = (baton_value){.type = BATON_T_STRING}; /* none yet */
            }
        }
        for (int i = 1; i <= np; i++) {
            size_t pi;
            if (slot && slot->pmap) {
                pi = slot->pmap[i - 1];
            } else {
                const char *pn = sqlite3_bind_parameter_name(st, i);
                pi = pn && pn[0] == '?' ? (size_t)atol(pn + 1) - 1 : next_param++;
            }
            if (pi >= nparams) {
                snprintf(err, errlen, "parameter %d of %zu bound is missing", i, nparams);
                release(slot, st);
                return -1;
            }
            baton_value *last = slot && slot->pmap ? &slot->bound[i - 1] : NULL;
            if (last && same_bound(last, &params[pi]))
                continue;
            if (last)
                last->type = BATON_T_STRING; /* unknown until bound */
            if (bind(st, i, &params[pi]) != SQLITE_OK) {
                snprintf(err, errlen, "cannot bind parameter %d: %s", i, sqlite3_errmsg(s->db));
                release(slot, st);
                return -1;
            }
            if (last)
                *last = params[pi];
        }
        /* a row's names and values: on the stack for the usual width */
        const char *names_buf[32];
        baton_value vals_buf[32];
        int ncol = sqlite3_column_count(st);
        const char **names = names_buf;
        baton_value *vals = vals_buf;
        if (ncol > 32) {
            names = calloc((size_t)ncol + 1, sizeof *names);
            vals = calloc((size_t)ncol + 1, sizeof *vals);
        }
        int rc, stop = 0, first = 1;
        while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (!fn)
                continue;
            if (first) {
                /* names are read after the first step: a schema change
                 * since the prepare makes step re-prepare (freeing the
                 * names read before; SELECT * may even change width) */
                first = 0;
                int n = sqlite3_column_count(st);
                if (n != ncol && n > 32) {
                    if (names != names_buf) {
                        free(names);
                        free(vals);
                    }
                    names = calloc((size_t)n + 1, sizeof *names);
                    vals = calloc((size_t)n + 1, sizeof *vals);
                } else if (n != ncol && names != names_buf) {
                    free(names);
                    free(vals);
                    names = names_buf;
                    vals = vals_buf;
                }
                ncol = n;
                if (!names || !vals) {
                    free(names);
                    free(vals);
                    snprintf(err, errlen, "out of memory");
                    release(slot, st);
                    return -1;
                }
                for (int c = 0; c < ncol; c++)
                    names[c] = sqlite3_column_name(st, c);
            }
            for (int c = 0; c < ncol; c++) {
                switch (sqlite3_column_type(st, c)) {
                case SQLITE_INTEGER:
                    vals[c] =
                        (baton_value){.type = BATON_T_INT, .v.i = sqlite3_column_int64(st, c)};
                    break;
                case SQLITE_FLOAT:
                    vals[c] =
                        (baton_value){.type = BATON_T_FLOAT, .v.f = sqlite3_column_double(st, c)};
                    break;
                case SQLITE_NULL: vals[c] = (baton_value){.type = BATON_T_NULL}; break;
                default: {
                    const char *t = (const char *)sqlite3_column_text(st, c);
                    vals[c] = (baton_value){.type = BATON_T_STRING,
                                            .v.s = {t, (size_t)sqlite3_column_bytes(st, c)}};
                }
                }
            }
            stop = fn(ud, (size_t)ncol, names, vals) != 0;
        }
        if (names != names_buf) {
            free(names);
            free(vals);
        }
        if (!stop && rc != SQLITE_DONE) {
            snprintf(err, errlen, "%s", sqlite3_errmsg(s->db));
            release(slot, st);
            return -1;
        }
        release(slot, st);
        if (stop)
            break;
    }
    return 0;
}

static int src_columns(void *state, const char *table, baton_row_fn fn, void *ud, char *err,
                       size_t errlen)
{
    src *s = state;
    if (!s->db) {
        snprintf(err, errlen, "%s: the source is not started", s->path);
        return -1;
    }
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT name, type FROM pragma_table_info(?1)", -1, &st, NULL) !=
        SQLITE_OK) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(s->db));
        return -1;
    }
    sqlite3_bind_text(st, 1, table, -1, SQLITE_TRANSIENT);
    int found = 0, rc;
    static const char *const names[] = {"name", "type"};
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        found = 1;
        const char *n = (const char *)sqlite3_column_text(st, 0);
        const char *t = (const char *)sqlite3_column_text(st, 1);
        baton_value v[2] = {{.type = BATON_T_STRING, .v.s = {n, strlen(n)}},
                            {.type = BATON_T_STRING, .v.s = {t ? t : "", t ? strlen(t) : 0}}};
        if (fn && fn(ud, 2, names, v))
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(s->db));
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_finalize(st);
    return found ? 0 : 1;
}

static const baton_source_ops ops = {
    .size = sizeof ops,
    .dialect = "sqlite",
    .exec = src_exec,
    .columns = src_columns,
};

BATON_PLUGIN(.name = "source_sqlite", .version = "1.0.0",
             .description = "the embedded default data source: one SQLite database file",
             .kind = BATON_KIND_SOURCE, .config = keys, .init = src_init, .start = src_start,
             .stop = src_stop, .destroy = src_destroy, .ops = &ops)
