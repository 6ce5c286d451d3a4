/* Incremental audiences: a build_audience with `incremental = true` keeps
 * only the rows no earlier run of the campaign targeted. The keys a run
 * targeted are kept in the state store (campaign_targeted), for the
 * campaign's `retention`; the earlier ones are copied into a work table of
 * the data source in batches of bound values, so the exclusion itself is
 * one set operation there. Plans read the store and write nothing. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/timefmt.h"
#include "campaign/engine.h"
#include "campaign/incremental.h"

#define BATCH 500

static const char ddl[] =
    "CREATE TABLE IF NOT EXISTS campaign_targeted (campaign TEXT NOT NULL, dimension TEXT NOT "
    "NULL, key NOT NULL, run INTEGER NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (campaign, "
    "dimension, key));"
    "CREATE INDEX IF NOT EXISTS campaign_targeted_at ON campaign_targeted (at);";

int camp_incremental(const camp_activity *a)
{
    if (!a->type || strcmp(a->type_name, "build_audience") != 0)
        return 0;
    config_setting_t *s = config_setting_get_member(a->group, "incremental");
    return s && config_setting_type(s) == CONFIG_TYPE_BOOL && config_setting_get_bool(s);
}

static const char *dimension_of(const camp_activity *a)
{
    const char *d = NULL;
    config_setting_lookup_string(a->group, "dimension", &d);
    return d ? d : "";
}

/* INSERTs of up to BATCH keys into the copy table, as the source reads
 * them. */
typedef struct copy_ctx {
    camp_env *e;
    const char *table;
    expr_sql q;
    size_t n;
    int64_t total;
    char err[512];
    int failed;
} copy_ctx;

static int copy_flush(copy_ctx *c)
{
    if (c->n == 0)
        return 0;
    int rc =
        camp_sql(c->e, c->q.sql.data, c->q.params, c->q.nparams, NULL, NULL, c->err, sizeof c->err);
    expr_sql_free(&c->q);
    expr_sql_init(&c->q);
    c->n = 0;
    return rc;
}

static int copy_add(copy_ctx *c, const baton_value *v)
{
    if (c->n == 0)
        buf_addf(&c->q.sql, "INSERT INTO %s (_key) VALUES ", c->table);
    buf_adds(&c->q.sql, c->n ? ", (" : "(");
    expr_sql_param(&c->q, c->e->dialect, v);
    buf_adds(&c->q.sql, ")");
    c->total++;
    return ++c->n == BATCH ? copy_flush(c) : 0;
}

/* The earlier runs' keys (within retention) into table; how many, or -1. */
static int64_t copy_earlier(camp_env *e, const camp_activity *a, const char *table, char *err,
                            size_t errlen)
{
    sqlite3 *db = e->st ? e->st->db : NULL, *own = NULL;
    if (!db) { /* a plan: the data_dir's store, read-only, when there is one */
        char *path = xasprintf("%s/state.db", e->a->conf.data_dir);
        if (sqlite3_open_v2(path, &own, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
            sqlite3_close(own);
            own = NULL;
        }
        free(path);
        db = own;
    }
    sqlite3_stmt *st = NULL;
    if (!db || sqlite3_prepare_v2(db,
                                  "SELECT key FROM campaign_targeted WHERE campaign = ?1 AND "
                                  "dimension = ?2 AND run <> ?3 AND at >= ?4",
                                  -1, &st, NULL) != SQLITE_OK) {
        sqlite3_close(own);
        return 0; /* nothing recorded yet */
    }
    sqlite3_bind_text(st, 1, e->c->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, dimension_of(a), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, e->run_id);
    sqlite3_bind_int64(st, 4, e->now - e->c->retention_s);
    copy_ctx c = {.e = e, .table = table};
    expr_sql_init(&c.q);
    int rc = 0;
    if (e->st)
        store_lock(e->st);
    while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
        baton_value v;
        if (sqlite3_column_type(st, 0) == SQLITE_INTEGER)
            v = (baton_value){.type = BATON_T_INT, .v.i = sqlite3_column_int64(st, 0)};
        else
            v = (baton_value){.type = BATON_T_STRING,
                              .v.s = {(const char *)sqlite3_column_text(st, 0),
                                      (size_t)sqlite3_column_bytes(st, 0)}};
        rc = copy_add(&c, &v);
    }
    sqlite3_finalize(st);
    if (e->st)
        store_unlock(e->st);
    sqlite3_close(own);
    if (rc == 0)
        rc = copy_flush(&c);
    expr_sql_free(&c.q);
    if (rc) {
        snprintf(err, errlen, "%s", c.err);
        return -1;
    }
    return c.total;
}

/* This run's keys into the store, replacing older records of the same
 * keys (their retention starts again). */
typedef struct record_ctx {
    sqlite3_stmt *st;
    int failed;
} record_ctx;

static int record_key(void *ud, size_t n, const char *const *names, const baton_value *v)
{
    record_ctx *r = ud;
    sqlite3_reset(r->st);
    if (v[0].type == BATON_T_INT)
        sqlite3_bind_int64(r->st, 3, v[0].v.i);
    else if (v[0].type == BATON_T_STRING)
        sqlite3_bind_text(r->st, 3, v[0].v.s.ptr, (int)v[0].v.s.len, SQLITE_TRANSIENT);
    else
        return 0;
    if (sqlite3_step(r->st) != SQLITE_DONE) {
        r->failed = 1;
        return 1;
    }
    return 0;
}

static int record(camp_env *e, const camp_activity *a, const char *out, char *err, size_t errlen)
{
    store *s = e->st;
    if (store_migrate(s, "campaign_targeted", 1, ddl, err, errlen) != 0)
        return -1;
    sqlite3_stmt *st;
    store_lock(s);
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO campaign_targeted (campaign, dimension, key, "
                           "run, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                           -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "state store: %s", sqlite3_errmsg(s->db));
        store_unlock(s);
        return -1;
    }
    sqlite3_bind_text(st, 1, e->c->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, dimension_of(a), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, e->run_id);
    sqlite3_bind_int64(st, 5, e->now);
    store_txn(s, STORE_BEGIN);
    record_ctx r = {st, 0};
    char *sql = xasprintf("SELECT _key FROM %s", out);
    int rc = camp_sql(e, sql, NULL, 0, record_key, &r, err, errlen);
    free(sql);
    if (rc == 0 && r.failed) {
        snprintf(err, errlen, "state store: %s", sqlite3_errmsg(s->db));
        rc = -1;
    }
    sqlite3_finalize(st);
    if (rc == 0 && sqlite3_prepare_v2(s->db, "DELETE FROM campaign_targeted WHERE at < ?1", -1, &st,
                                      NULL) == SQLITE_OK) { /* past retention: forgotten */
        sqlite3_bind_int64(st, 1, e->now - e->c->retention_s);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    store_txn(s, rc == 0 ? STORE_COMMIT : STORE_ROLLBACK);
    store_unlock(s);
    return rc;
}

int camp_incremental_apply(camp_env *e, size_t idx)
{
    const camp_activity *a = &e->c->acts[idx];
    const char *out = e->s[idx].tables[0];
    char err[512];
    char *prev = xasprintf("%s_prev", out);
    char *sql = xasprintf("DROP TABLE IF EXISTS %s", prev);
    int rc = camp_sql(e, sql, NULL, 0, NULL, NULL, err, sizeof err);
    free(sql);
    if (rc == 0) {
        sql = xasprintf("CREATE TABLE %s AS SELECT _key FROM %s WHERE 1 = 0", prev, out);
        rc = camp_sql(e, sql, NULL, 0, NULL, NULL, err, sizeof err);
        free(sql);
    }
    int64_t n = rc == 0 ? copy_earlier(e, a, prev, err, sizeof err) : -1;
    if (n > 0) {
        sql = xasprintf("DELETE FROM %s WHERE _key IN (SELECT _key FROM %s)", out, prev);
        rc = camp_sql(e, sql, NULL, 0, NULL, NULL, err, sizeof err);
        free(sql);
    } else if (n < 0) {
        rc = -1;
    }
    sql = xasprintf("DROP TABLE IF EXISTS %s", prev);
    char err2[256];
    camp_sql(e, sql, NULL, 0, NULL, NULL, err2, sizeof err2);
    free(sql);
    free(prev);
    /* a plan, a dry run and proofs target no one */
    if (rc == 0 && e->st && !e->plan && !e->dry_run && !e->nproof)
        rc = record(e, a, out, err, sizeof err);
    if (rc != 0)
        snprintf(e->error, sizeof e->error, "%s:%d: activity '%s': incremental: %s", e->c->file,
                 a->line, a->id, err);
    else if (n > 0) {
        act_state *s = &e->s[idx];
        char ret[32];
        duration_format(e->c->retention_s, ret, sizeof ret);
        if (s->nnotes < 50) {
            s->notes = xrealloc(s->notes, (s->nnotes + 1) * sizeof *s->notes);
            s->notes[s->nnotes++] =
                xasprintf("incremental: earlier runs targeted %lld key(s) in the last %s; "
                          "those are left out",
                          (long long)n, ret);
        }
    }
    return rc;
}
