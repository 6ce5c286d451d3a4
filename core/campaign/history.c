#include "campaign/history.h"
#include "campaign/report.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/lockfile.h"
#include "base/mem.h"
#include "base/timefmt.h"
#include "config/keymap.h"

static const char ddl[] =
    "CREATE TABLE IF NOT EXISTS campaign_runs ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, campaign TEXT NOT NULL, file TEXT,"
    " \"trigger\" TEXT NOT NULL, dry_run INTEGER NOT NULL DEFAULT 0,"
    " status TEXT NOT NULL, error TEXT, started_at INTEGER NOT NULL, finished_at INTEGER,"
    " wait_until INTEGER);"
    "CREATE INDEX IF NOT EXISTS campaign_runs_by_name ON campaign_runs (campaign, id);"
    "CREATE TABLE IF NOT EXISTS campaign_run_activities ("
    " run INTEGER NOT NULL, activity TEXT NOT NULL, type TEXT NOT NULL,"
    " counts TEXT NOT NULL, sent INTEGER, failed INTEGER, no_address INTEGER,"
    " no_consent INTEGER, ms INTEGER NOT NULL, finished_at INTEGER NOT NULL,"
    " PRIMARY KEY (run, activity));"
    "CREATE TABLE IF NOT EXISTS campaign_schedule ("
    " campaign TEXT PRIMARY KEY, last_slot INTEGER NOT NULL);";

int history_init(store *s, char *err, size_t errlen)
{
    return store_migrate(s, "campaign_history", 1, ddl, err, errlen) ||
           store_migrate(s, "campaign_history_params", 1,
                         "ALTER TABLE campaign_runs ADD COLUMN parameters TEXT", err, errlen) ||
           store_migrate(s, "campaign_history_suppressed", 1,
                         "ALTER TABLE campaign_run_activities ADD COLUMN suppressed INTEGER", err,
                         errlen) ||
           store_migrate(s, "campaign_history_holds", 1,
                         "CREATE TABLE IF NOT EXISTS campaign_run_holds ("
                         " run INTEGER NOT NULL, activity TEXT NOT NULL, until INTEGER NOT NULL,"
                         " state TEXT NOT NULL DEFAULT 'waiting', params TEXT,"
                         " PRIMARY KEY (run, activity))",
                         err, errlen) ||
           store_migrate(s, "campaign_history_sends", 1,
                         "CREATE TABLE IF NOT EXISTS campaign_run_sends ("
                         " run INTEGER NOT NULL, activity TEXT NOT NULL, rows INTEGER NOT NULL,"
                         " started_at INTEGER NOT NULL, PRIMARY KEY (run, activity))",
                         err, errlen);
}

char *history_lock_path(const char *data_dir, const char *cname)
{
    return xasprintf("%s/campaign-%s.lock", data_dir, cname);
}

int history_run_live(store *s, const char *cname, int64_t run)
{
    sqlite3_stmt *st;
    int latest = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT max(id) FROM campaign_runs WHERE campaign = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return 1; /* cannot tell: as recorded */
    sqlite3_bind_text(st, 1, cname, -1, SQLITE_TRANSIENT);
    latest = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) == run;
    sqlite3_finalize(st);
    if (!latest) /* a later run started: this one was left behind */
        return 0;
    char *dir = path_dirname(s->path);
    char *lock = history_lock_path(dir, cname);
    int live = lockfile_holder_alive(lock);
    free(lock);
    free(dir);
    return live;
}

void history_send_started(store *s, int64_t run, const char *activity, int64_t rows)
{
    sqlite3_stmt *st;
    store_lock(s);
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO campaign_run_sends (run, activity, rows,"
                           " started_at) VALUES (?1, ?2, ?3, ?4)",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, run);
        sqlite3_bind_text(st, 2, activity, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, rows);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)time(NULL));
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    store_unlock(s);
}

void history_set_params(store *s, int64_t run, const char *json)
{
    sqlite3_stmt *st;
    store_lock(s);
    if (sqlite3_prepare_v2(s->db, "UPDATE campaign_runs SET parameters = ?2 WHERE id = ?1", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, run);
        sqlite3_bind_text(st, 2, json, -1, SQLITE_TRANSIENT);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    store_unlock(s);
}

char *history_params(store *s, int64_t run)
{
    sqlite3_stmt *st;
    char *v = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT parameters FROM campaign_runs WHERE id = ?1", -1, &st,
                           NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, run);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
            v = xstrdup((const char *)sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    return v;
}

int64_t history_start(store *s, const campaign *c, const char *trigger, int dry_run)
{
    sqlite3_stmt *st;
    int64_t id = -1;
    store_lock(s);
    if (sqlite3_prepare_v2(
            s->db,
            "INSERT INTO campaign_runs (campaign, file, \"trigger\", dry_run, status, "
            "started_at) VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
            -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, c->name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 2, c->file, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, trigger, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(st, 4, dry_run);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)time(NULL));
        if (sqlite3_step(st) == SQLITE_DONE)
            id = sqlite3_last_insert_rowid(s->db);
        sqlite3_finalize(st);
    }
    store_unlock(s);
    return id;
}

int64_t history_unfinished(store *s, const char *cname, char out[16])
{
    if (out)
        out[0] = '\0';
    sqlite3_stmt *st;
    int64_t id = 0;
    if (sqlite3_prepare_v2(
            s->db,
            "SELECT id, status FROM campaign_runs WHERE campaign = ?1 AND dry_run = 0 "
            "ORDER BY id DESC LIMIT 1",
            -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_text(st, 1, cname, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *status = (const char *)sqlite3_column_text(st, 1);
        if (strcmp(status, "done") != 0)
            id = sqlite3_column_int64(st, 0);
        if (id && out)
            snprintf(out, 16, "%s", status);
    }
    sqlite3_finalize(st);
    return id;
}

int history_resumable(store *s, int64_t run)
{
    sqlite3_stmt *st;
    int yes = 0;
    store_lock(s);
    if (sqlite3_prepare_v2(s->db,
                           "SELECT 1 FROM campaign_runs r WHERE r.id = ?1 AND r.dry_run = 0 AND "
                           "r.status <> 'done' AND r.id = (SELECT max(id) FROM campaign_runs WHERE "
                           "campaign = r.campaign AND dry_run = 0)",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, run);
        yes = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_finalize(st);
    }
    store_unlock(s);
    return yes;
}

int history_load(store *s, int64_t run, camp_env *e)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT activity, counts, sent, failed, no_address, no_consent, ms, "
                           "suppressed FROM campaign_run_activities WHERE run = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, run);
    while (sqlite3_step(st) == SQLITE_ROW) {
        int i = campaign_find(e->c, (const char *)sqlite3_column_text(st, 0));
        if (i < 0)
            continue;
        camp_activity *a = &e->c->acts[i];
        act_state *as = &e->s[i];
        json_t *counts = json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL);
        as->tables = xcalloc(a->nouts + 1, sizeof *as->tables);
        as->counts = xcalloc(a->nouts + 1, sizeof *as->counts);
        for (size_t j = 0; j < a->nouts; j++) {
            json_t *v = counts ? json_object_get(counts, a->outs[j].transition) : NULL;
            as->counts[j] = v ? json_integer_value(v) : -1;
        }
        json_decref(counts);
        as->sent = sqlite3_column_int64(st, 2);
        as->failed = sqlite3_column_int64(st, 3);
        as->no_address = sqlite3_column_int64(st, 4);
        as->no_consent = sqlite3_column_int64(st, 5);
        as->ms = sqlite3_column_int64(st, 6);
        as->suppressed = sqlite3_column_int64(st, 7);
        as->done = 1;
    }
    sqlite3_finalize(st);
    /* the tables of done activities, named as the run named them */
    for (size_t k = 0; k < e->c->norder; k++) {
        size_t i = e->c->order[k];
        camp_activity *a = &e->c->acts[i];
        if (!e->s[i].done)
            continue;
        for (size_t j = 0; j < a->nouts; j++) {
            if (a->type && a->type->flow) {
                const camp_input *in = &a->inputs[0];
                e->s[i].tables[j] =
                    e->s[in->act].tables ? xstrdup(e->s[in->act].tables[in->out]) : NULL;
            } else {
                e->s[i].tables[j] = camp_table_name(e, a, &a->outs[j]);
            }
        }
    }
    return 0;
}

void history_activity(store *s, int64_t run, const camp_env *e, size_t i)
{
    const camp_activity *a = &e->c->acts[i];
    const act_state *as = &e->s[i];
    json_t *counts = json_object();
    for (size_t j = 0; j < a->nouts; j++)
        json_object_set_new(counts, a->outs[j].transition, json_integer(as->counts[j]));
    if (a->type && a->type->send)
        json_object_set_new(counts, a->id, json_integer(as->would_send));
    char *cj = json_dumps(counts, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(counts);
    sqlite3_stmt *st;
    store_lock(s);
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO campaign_run_activities (run, activity, type, "
                           "counts, sent, failed, no_address, no_consent, ms, finished_at, "
                           "suppressed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, run);
        sqlite3_bind_text(st, 2, a->id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, a->type_name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 4, cj, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 5, as->sent);
        sqlite3_bind_int64(st, 6, as->failed);
        sqlite3_bind_int64(st, 7, as->no_address);
        sqlite3_bind_int64(st, 8, as->no_consent);
        sqlite3_bind_int64(st, 9, as->ms);
        sqlite3_bind_int64(st, 10, (sqlite3_int64)time(NULL));
        sqlite3_bind_int64(st, 11, as->suppressed);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    store_unlock(s);
    free(cj);
}

void history_finish(store *s, int64_t run, const char *status, const char *error)
{
    sqlite3_stmt *st;
    store_lock(s);
    if (sqlite3_prepare_v2(s->db,
                           "UPDATE campaign_runs SET status = ?2, error = ?3, finished_at = ?4 "
                           "WHERE id = ?1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, run);
        sqlite3_bind_text(st, 2, status, -1, SQLITE_TRANSIENT);
        if (error)
            sqlite3_bind_text(st, 3, error, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)time(NULL));
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    store_unlock(s);
}

int history_print(store *s, const char *cname, int json, FILE *out)
{
    json_t *root = campaign_runs_json(s, cname, 0);
    json_t *runs = json_object_get(root, "runs");
    if (json) {
        char *txt = json_dumps(root, JSON_INDENT(2));
        fprintf(out, "%s\n", txt);
        free(txt);
        json_decref(root);
        return 0;
    }
    size_t i, k;
    json_t *r, *o;
    json_array_foreach(runs, i, r)
    {
        json_t *fin = json_object_get(r, "finished_at"), *err = json_object_get(r, "error");
        fprintf(out, "run %lld  %-20s %-9s %-8s%s started %s finished %s%s%s\n",
                (long long)json_integer_value(json_object_get(r, "id")),
                json_string_value(json_object_get(r, "campaign")),
                json_string_value(json_object_get(r, "status")),
                json_string_value(json_object_get(r, "trigger")),
                json_is_true(json_object_get(r, "dry_run")) ? " (dry run)" : "",
                json_string_value(json_object_get(r, "started_at")),
                fin ? json_string_value(fin) : "-", err ? "\n    error: " : "",
                err ? json_string_value(err) : "");
        json_array_foreach(json_object_get(r, "holds"), k, o)
        {
            const char *hs = json_string_value(json_object_get(o, "state"));
            if (!strcmp(hs, "waiting"))
                fprintf(out, "    %-16s holds its rows until %s\n",
                        json_string_value(json_object_get(o, "activity")),
                        json_string_value(json_object_get(o, "until")));
        }
        json_array_foreach(json_object_get(r, "activities"), k, o)
        {
            if (json_object_get(o, "state")) { /* a send that did not finish */
                fprintf(out,
                        "    %-16s %-16s %s: %lld rows: sent %lld, failed %lld, uncertain %lld, "
                        "not yet sent %lld\n",
                        json_string_value(json_object_get(o, "id")),
                        json_string_value(json_object_get(o, "type")),
                        json_string_value(json_object_get(o, "state")),
                        (long long)json_integer_value(json_object_get(o, "rows")),
                        (long long)json_integer_value(json_object_get(o, "sent")),
                        (long long)json_integer_value(json_object_get(o, "failed")),
                        (long long)json_integer_value(json_object_get(o, "uncertain")),
                        (long long)json_integer_value(json_object_get(o, "not_yet_sent")));
                continue;
            }
            char *cs = json_dumps(json_object_get(o, "counts"), JSON_COMPACT);
            fprintf(out, "    %-16s %-16s %6lld ms  %s",
                    json_string_value(json_object_get(o, "id")),
                    json_string_value(json_object_get(o, "type")),
                    (long long)json_integer_value(json_object_get(o, "ms")), cs);
            if (json_object_get(o, "sent"))
                fprintf(out,
                        "  sent %lld, failed %lld, no address %lld, no consent %lld, suppressed "
                        "%lld",
                        (long long)json_integer_value(json_object_get(o, "sent")),
                        (long long)json_integer_value(json_object_get(o, "failed")),
                        (long long)json_integer_value(json_object_get(o, "no_address")),
                        (long long)json_integer_value(json_object_get(o, "no_consent")),
                        (long long)json_integer_value(json_object_get(o, "suppressed")));
            if (json_integer_value(json_object_get(o, "uncertain")))
                fprintf(out, ", uncertain %lld",
                        (long long)json_integer_value(json_object_get(o, "uncertain")));
            if (json_integer_value(json_object_get(o, "pending")))
                fprintf(out, ", pending %lld",
                        (long long)json_integer_value(json_object_get(o, "pending")));
            fputc('\n', out);
            free(cs);
        }
    }
    if (json_array_size(runs) == 0)
        fprintf(out, "no runs recorded%s%s\n", cname ? " for " : "", cname ? cname : "");
    json_decref(root);
    return 0;
}

int64_t history_last_slot(store *s, const char *cname)
{
    sqlite3_stmt *st;
    int64_t v = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT last_slot FROM campaign_schedule WHERE campaign = ?1", -1,
                           &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_text(st, 1, cname, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

void history_set_slot(store *s, const char *cname, int64_t slot)
{
    sqlite3_stmt *st;
    store_lock(s);
    if (sqlite3_prepare_v2(s->db,
                           "INSERT OR REPLACE INTO campaign_schedule (campaign, last_slot) VALUES "
                           "(?1, ?2)",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, cname, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, slot);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    store_unlock(s);
}

void history_wait(store *s, int64_t run, int64_t until)
{
    sqlite3_stmt *st;
    store_lock(s);
    if (sqlite3_prepare_v2(
            s->db,
            "UPDATE campaign_runs SET wait_until = ?2, status = CASE WHEN ?2 IS NULL "
            "THEN 'running' ELSE 'waiting' END WHERE id = ?1",
            -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, run);
        if (until > 0)
            sqlite3_bind_int64(st, 2, until);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    store_unlock(s);
}

int64_t history_wait_until(store *s, int64_t run)
{
    sqlite3_stmt *st;
    int64_t v = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT wait_until FROM campaign_runs WHERE id = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(st, 1, run);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

int64_t history_started_at(store *s, int64_t run)
{
    sqlite3_stmt *st;
    int64_t v = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT started_at FROM campaign_runs WHERE id = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(st, 1, run);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

void history_running(store *s, int64_t run)
{
    sqlite3_stmt *st;
    store_lock(s);
    if (sqlite3_prepare_v2(s->db, "UPDATE campaign_runs SET status = 'running' WHERE id = ?1", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, run);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    store_unlock(s);
}

int64_t history_hold_get(store *s, int64_t run, const char *activity, char state[16])
{
    sqlite3_stmt *st;
    int64_t v = 0;
    if (state)
        state[0] = '\0';
    if (sqlite3_prepare_v2(s->db,
                           "SELECT until, state FROM campaign_run_holds WHERE run = ?1 AND "
                           "activity = ?2",
                           -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(st, 1, run);
    sqlite3_bind_text(st, 2, activity, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW) {
        v = sqlite3_column_int64(st, 0);
        if (state)
            snprintf(state, 16, "%s", (const char *)sqlite3_column_text(st, 1));
    }
    sqlite3_finalize(st);
    return v;
}

void history_hold(store *s, int64_t run, const char *activity, int64_t until, const char *state)
{
    sqlite3_stmt *st;
    store_lock(s);
    if (sqlite3_prepare_v2(s->db,
                           "INSERT INTO campaign_run_holds (run, activity, until, state) VALUES "
                           "(?1, ?2, ?3, ?4) ON CONFLICT (run, activity) DO UPDATE SET state = "
                           "excluded.state",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, run);
        sqlite3_bind_text(st, 2, activity, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, until);
        sqlite3_bind_text(st, 4, state, -1, SQLITE_TRANSIENT);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    store_unlock(s);
}

int history_signal(store *s, const campaign *c, int64_t run, const json_t *params, int64_t now,
                   json_t **signaled, char *err, size_t errlen)
{
    *signaled = json_array();
    sqlite3_stmt *st;
    char status[16] = "";
    int found = 0;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT status FROM campaign_runs WHERE id = ?1 AND campaign = ?2 AND "
                           "dry_run = 0",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, run);
        sqlite3_bind_text(st, 2, c->name, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW) {
            found = 1;
            snprintf(status, sizeof status, "%s", (const char *)sqlite3_column_text(st, 0));
        }
        sqlite3_finalize(st);
    }
    if (!found) {
        snprintf(err, errlen, "campaign %s has no run %lld", c->name, (long long)run);
        return -2;
    }
    /* the signals its run holds rows for */
    buf waits;
    buf_init(&waits);
    if (sqlite3_prepare_v2(s->db,
                           "SELECT activity, until FROM campaign_run_holds WHERE run = ?1 AND "
                           "state = 'waiting' ORDER BY activity",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, run);
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *id = (const char *)sqlite3_column_text(st, 0);
            int i = campaign_find(c, id);
            if (i >= 0 && !strcmp(c->acts[i].type_name, "signal"))
                json_array_append_new(*signaled, json_string(id));
            else if (sqlite3_column_int64(st, 1) > now) {
                char ts[21];
                timestamp_format(sqlite3_column_int64(st, 1), ts);
                buf_addf(&waits, "%s'%s' until %s", waits.len ? ", " : "", id, ts);
            }
        }
        sqlite3_finalize(st);
    }
    /* running: resumed (or killed) while a signal holds its rows; the
     * process running it resumes it again at once (see run.c) */
    int open = !strcmp(status, "waiting") || !strcmp(status, "running");
    if (!open || !json_array_size(*signaled)) {
        if (!open)
            snprintf(err, errlen,
                     "run %lld of campaign %s is not waiting (it is %s): only a run waiting at "
                     "a signal activity takes a signal",
                     (long long)run, c->name, status);
        else
            snprintf(err, errlen, "run %lld of campaign %s waits for no signal (it waits at %s)",
                     (long long)run, c->name, waits.len ? waits.data : "nothing");
        buf_free(&waits);
        json_decref(*signaled);
        *signaled = NULL;
        return -1;
    }
    buf_free(&waits);
    /* the run's parameters take the signal's values; due at once */
    char *old = history_params(s, run);
    json_t *vals = old ? json_loads(old, 0, NULL) : NULL;
    free(old);
    if (!json_is_object(vals)) {
        json_decref(vals);
        vals = json_object();
    }
    json_object_update(vals, (json_t *)params);
    char *pj = json_dumps(vals, JSON_COMPACT | JSON_SORT_KEYS);
    char *sj = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(vals);
    int rc = 0;
    store_lock(s);
    store_txn(s, STORE_BEGIN);
    size_t k;
    json_t *v;
    json_array_foreach(*signaled, k, v)
    {
        if (sqlite3_prepare_v2(s->db,
                               "UPDATE campaign_run_holds SET state = 'signaled', params = ?3 "
                               "WHERE run = ?1 AND activity = ?2 AND state = 'waiting'",
                               -1, &st, NULL) != SQLITE_OK) {
            rc = -1;
            break;
        }
        sqlite3_bind_int64(st, 1, run);
        sqlite3_bind_text(st, 2, json_string_value(v), -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(st, 3, sj, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = -1;
        sqlite3_finalize(st);
    }
    if (rc == 0 && sqlite3_prepare_v2(s->db,
                                      "UPDATE campaign_runs SET parameters = ?2, wait_until = ?3 "
                                      "WHERE id = ?1",
                                      -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, run);
        sqlite3_bind_text(st, 2, pj, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 3, now);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = -1;
        sqlite3_finalize(st);
    } else {
        rc = -1;
    }
    if (rc == 0 && store_txn(s, STORE_COMMIT) != SQLITE_OK)
        rc = -1;
    if (rc != 0) {
        snprintf(err, errlen, "recording the signal: %s", sqlite3_errmsg(s->db));
        store_txn(s, STORE_ROLLBACK);
    }
    store_unlock(s);
    free(pj);
    free(sj);
    if (rc != 0) {
        json_decref(*signaled);
        *signaled = NULL;
    }
    return rc;
}

int64_t history_next_wait(store *s, int64_t after)
{
    sqlite3_stmt *st;
    int64_t v = 0;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT min(r.wait_until) FROM campaign_runs r WHERE r.status = "
                           "'waiting' AND r.dry_run = 0 AND r.wait_until > ?1 AND r.id = (SELECT "
                           "max(id) FROM campaign_runs WHERE campaign = r.campaign AND dry_run = "
                           "0)",
                           -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(st, 1, after);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

json_t *history_holds_json(store *s, int64_t run)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT activity, until, state FROM campaign_run_holds WHERE run = ?1 "
                           "ORDER BY until, activity",
                           -1, &st, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_int64(st, 1, run);
    json_t *l = NULL;
    while (sqlite3_step(st) == SQLITE_ROW) {
        char until[21];
        timestamp_format(sqlite3_column_int64(st, 1), until);
        if (!l)
            l = json_array();
        json_array_append_new(l, json_pack("{s:s, s:s, s:s}", "activity",
                                           (const char *)sqlite3_column_text(st, 0), "until", until,
                                           "state", (const char *)sqlite3_column_text(st, 2)));
    }
    sqlite3_finalize(st);
    return l;
}
