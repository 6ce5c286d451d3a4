/* campaign/report — campaign answers as JSON (see report.h). */
#include "campaign/report.h"

#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/timefmt.h"
#include "campaign/history.h"
#include "delivery/dispatch.h"

json_t *campaign_plan_json(const camp_env *e)
{
    json_t *counts = json_object(), *excluded = json_object(), *notes = json_object();
    for (size_t k = 0; k < e->c->norder; k++) {
        size_t i = e->c->order[k];
        const camp_activity *a = &e->c->acts[i];
        const act_state *s = &e->s[i];
        for (size_t j = 0; s->counts && j < a->nouts; j++)
            json_object_set_new(counts, a->outs[j].transition, json_integer(s->counts[j]));
        if (s->nnotes) { /* reconcile's unmatched lines, and the like */
            json_t *l = json_array();
            for (size_t n = 0; n < s->nnotes; n++)
                json_array_append_new(l, json_string(s->notes[n]));
            json_object_set_new(notes, a->id, l);
        }
        if (a->type && a->type->send && s->done) {
            json_object_set_new(counts, a->id, json_integer(s->would_send));
            json_object_set_new(
                excluded, a->id,
                json_pack("{s:I, s:I, s:I}", "no_consent", (json_int_t)s->no_consent, "no_address",
                          (json_int_t)s->no_address, "suppressed", (json_int_t)s->suppressed));
        }
    }
    /* notes always there (an empty object without any): scripts read it
     * without testing for it */
    return json_pack("{s:s, s:o, s:o, s:o}", "campaign", e->c->name, "counts", counts, "excluded",
                     excluded, "notes", notes);
}

/* campaign.name of a file, read without checking the rest; NULL when the
 * file cannot be read. A new string. */
static char *name_of(const char *file)
{
    config_t lc;
    config_init(&lc);
    char *name = NULL;
    const char *nm = NULL;
    if (config_read_file(&lc, file) && config_lookup_string(&lc, "campaign.name", &nm))
        name = xstrdup(nm);
    config_destroy(&lc);
    return name;
}

char *campaign_file_named(app *a, const char *name)
{
    size_t n;
    char **files = campaign_files(a->conf.campaigns, a->conf.ncampaigns, &n);
    char *hit = NULL;
    for (size_t i = 0; i < n && !hit; i++) {
        char *nm = name_of(files[i]);
        if (nm && strcmp(nm, name) == 0)
            hit = xstrdup(files[i]);
        free(nm);
    }
    campaign_files_free(files);
    return hit;
}

int campaign_plan_file(app *a, const char *file, json_t **out, diag *d, char *err, size_t errlen)
{
    act_registry reg;
    campaign c;
    camp_env e;
    int rc = -1, have_c = 0, have_e = 0;
    *out = NULL;
    if (act_registry_load(&reg, a, d) != 0)
        goto out_reg;
    have_c = 1;
    if (campaign_parse(&c, file, d) != 0)
        goto out;
    int graph = campaign_graph(&c, d);
    have_e = 1;
    if (camp_env_open(&e, a, &c, &reg, 0, d) != 0 || camp_check(&e) != 0 || graph)
        goto out;
    e.plan = 1;
    if (camp_execute(&e) != 0) {
        snprintf(err, errlen, "%s", e.error);
        rc = -2;
    } else {
        *out = campaign_plan_json(&e);
        rc = 0;
    }
    camp_drop_tables(&e);
out:
    if (have_e)
        camp_env_close(&e);
    if (have_c)
        campaign_free(&c);
out_reg:
    act_registry_free(&reg);
    return rc;
}

/* A run recorded running whose process is gone is "interrupted"; its
 * sends that started and did not finish are listed with what the
 * delivery log has of them: sent, failed, uncertain (a message a dead
 * process had on the wire counts so at once), and not yet sent (the rest
 * of the rows it would send, which --resume sends). */
static void in_progress(store *s, json_t *r, int64_t id, const char *cname, json_t *acts)
{
    const char *status = json_string_value(json_object_get(r, "status"));
    if (strcmp(status, "running") != 0)
        return;
    int live = history_run_live(s, cname, id);
    if (!live)
        json_object_set_new(r, "status", json_string("interrupted"));
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT activity, rows FROM campaign_run_sends s WHERE run = ?1 AND NOT"
                           " EXISTS (SELECT 1 FROM campaign_run_activities a WHERE a.run = s.run"
                           " AND a.activity = s.activity) ORDER BY started_at, rowid",
                           -1, &q, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_int64(q, 1, id);
    while (sqlite3_step(q) == SQLITE_ROW) {
        const char *act = (const char *)sqlite3_column_text(q, 0);
        int64_t rows = sqlite3_column_int64(q, 1);
        char prefix[600];
        snprintf(prefix, sizeof prefix, "%s/%lld/%s/", cname, (long long)id, act);
        uint64_t lc[DISPATCH_NSTATUS];
        if (dispatch_log_counts(s, prefix, NULL, lc) != 0)
            continue;
        int64_t done = 0;
        static const dispatch_status final[] = {DISPATCH_SENT,    DISPATCH_FAILED,
                                                DISPATCH_CAPPED,  DISPATCH_UNCERTAIN,
                                                DISPATCH_BOUNCED, DISPATCH_COMPLAINED};
        for (size_t k = 0; k < sizeof final / sizeof final[0]; k++)
            done += (int64_t)lc[final[k]];
        json_array_append_new(
            acts,
            json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "id", act, "type", "send",
                      "state", live ? "running" : "interrupted", "rows", (json_int_t)rows, "sent",
                      (json_int_t)lc[DISPATCH_SENT], "failed", (json_int_t)lc[DISPATCH_FAILED],
                      "uncertain", (json_int_t)lc[DISPATCH_UNCERTAIN], "capped",
                      (json_int_t)lc[DISPATCH_CAPPED], "not_yet_sent",
                      (json_int_t)(rows > done ? rows - done : 0)));
    }
    sqlite3_finalize(q);
}

json_t *campaign_runs_json(store *s, const char *cname, int64_t run)
{
    sqlite3_stmt *st, *sa;
    json_t *runs = json_array();
    if (sqlite3_prepare_v2(
            s->db,
            "SELECT id, campaign, \"trigger\", dry_run, status, error, started_at, "
            "finished_at, parameters FROM campaign_runs WHERE (?1 IS NULL OR campaign = ?1) "
            "AND (?2 = 0 OR id = ?2) ORDER BY id DESC LIMIT 200",
            -1, &st, NULL) != SQLITE_OK)
        return json_pack("{s:o}", "runs", runs);
    if (sqlite3_prepare_v2(
            s->db,
            "SELECT activity, type, counts, sent, failed, no_address, no_consent, "
            "ms, suppressed FROM campaign_run_activities WHERE run = ?1 ORDER BY finished_at, "
            "rowid",
            -1, &sa, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return json_pack("{s:o}", "runs", runs);
    }
    if (cname)
        sqlite3_bind_text(st, 1, cname, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, run);
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        char started[21], finished[21];
        timestamp_format(sqlite3_column_int64(st, 6), started);
        const char *err = (const char *)sqlite3_column_text(st, 5);
        json_t *r = json_pack("{s:I, s:s, s:s, s:b, s:s, s:s}", "id", (json_int_t)id, "campaign",
                              (const char *)sqlite3_column_text(st, 1), "trigger",
                              (const char *)sqlite3_column_text(st, 2), "dry_run",
                              sqlite3_column_int(st, 3), "status",
                              (const char *)sqlite3_column_text(st, 4), "started_at", started);
        if (sqlite3_column_type(st, 7) != SQLITE_NULL) {
            timestamp_format(sqlite3_column_int64(st, 7), finished);
            json_object_set_new(r, "finished_at", json_string(finished));
        }
        if (err)
            json_object_set_new(r, "error", json_string(err));
        json_t *pv = sqlite3_column_text(st, 8)
                         ? json_loads((const char *)sqlite3_column_text(st, 8), 0, NULL)
                         : NULL;
        if (pv)
            json_object_set_new(r, "parameters", pv);
        json_t *holds = history_holds_json(s, id);
        if (holds)
            json_object_set_new(r, "holds", holds);
        json_t *acts = json_array();
        sqlite3_reset(sa);
        sqlite3_bind_int64(sa, 1, id);
        while (sqlite3_step(sa) == SQLITE_ROW) {
            json_t *counts = json_loads((const char *)sqlite3_column_text(sa, 2), 0, NULL);
            json_t *o = json_pack(
                "{s:s, s:s, s:o, s:I}", "id", (const char *)sqlite3_column_text(sa, 0), "type",
                (const char *)sqlite3_column_text(sa, 1), "counts", counts ? counts : json_object(),
                "ms", (json_int_t)sqlite3_column_int64(sa, 7));
            if (strcmp((const char *)sqlite3_column_text(sa, 1), "send") == 0) {
                json_object_set_new(o, "sent", json_integer(sqlite3_column_int64(sa, 3)));
                json_object_set_new(o, "failed", json_integer(sqlite3_column_int64(sa, 4)));
                json_object_set_new(o, "no_address", json_integer(sqlite3_column_int64(sa, 5)));
                json_object_set_new(o, "no_consent", json_integer(sqlite3_column_int64(sa, 6)));
                json_object_set_new(o, "suppressed", json_integer(sqlite3_column_int64(sa, 8)));
                /* deliveries opened and clicked (a channel's tracking); the
                 * run's keys are CAMPAIGN/RUN/SEND/ROW */
                char prefix[300];
                snprintf(prefix, sizeof prefix, "%s/%lld/",
                         (const char *)sqlite3_column_text(st, 1), (long long)id);
                /* the delivery log has the whole run (a resume counts only
                 * what it sent itself): what is sent, uncertain (a crash
                 * caught it on the wire) and still pending */
                char aprefix[600];
                snprintf(aprefix, sizeof aprefix, "%s%s/", prefix,
                         (const char *)sqlite3_column_text(sa, 0));
                uint64_t lc[DISPATCH_NSTATUS];
                if (dispatch_log_counts(s, aprefix, NULL, lc) == 0) {
                    if ((int64_t)lc[DISPATCH_SENT] > sqlite3_column_int64(sa, 3))
                        json_object_set_new(o, "sent", json_integer((json_int_t)lc[DISPATCH_SENT]));
                    if ((int64_t)lc[DISPATCH_FAILED] > sqlite3_column_int64(sa, 4))
                        json_object_set_new(o, "failed",
                                            json_integer((json_int_t)lc[DISPATCH_FAILED]));
                    json_object_set_new(o, "uncertain",
                                        json_integer((json_int_t)lc[DISPATCH_UNCERTAIN]));
                    json_object_set_new(
                        o, "pending",
                        json_integer((json_int_t)(lc[DISPATCH_QUEUED] + lc[DISPATCH_RETRY] +
                                                  lc[DISPATCH_DEFERRED])));
                }
                dispatch_engagement_count ec;
                if (dispatch_engagement_counts(
                        s, "campaign", (const char *)sqlite3_column_text(st, 1),
                        (const char *)sqlite3_column_text(sa, 0), prefix, &ec) == 0) {
                    json_object_set_new(o, "opened", json_integer((json_int_t)ec.opened));
                    json_object_set_new(o, "clicked", json_integer((json_int_t)ec.clicked));
                }
            }
            json_array_append_new(acts, o);
        }
        in_progress(s, r, id, (const char *)sqlite3_column_text(st, 1), acts);
        json_object_set_new(r, "activities", acts);
        json_array_append_new(runs, r);
    }
    sqlite3_finalize(st);
    sqlite3_finalize(sa);
    return json_pack("{s:o}", "runs", runs);
}

json_t *campaign_list_json(app *a, store *st)
{
    size_t n;
    char **files = campaign_files(a->conf.campaigns, a->conf.ncampaigns, &n);
    json_t *list = json_array();
    sqlite3_stmt *last = NULL;
    if (st)
        sqlite3_prepare_v2(st->db,
                           "SELECT id, status, started_at, finished_at FROM campaign_runs WHERE "
                           "campaign = ?1 ORDER BY id DESC LIMIT 1",
                           -1, &last, NULL);
    for (size_t i = 0; i < n; i++) {
        campaign c;
        diag d;
        diag_init(&d);
        json_t *o = json_object();
        if (campaign_parse(&c, files[i], &d) != 0) {
            char *nm = name_of(files[i]);
            json_object_set_new(o, "name", nm ? json_string(nm) : json_null());
            free(nm);
            json_object_set_new(o, "file", json_string(files[i]));
            for (size_t k = 0; k < d.n; k++)
                if (!d.v[k].warning) {
                    json_object_set_new(o, "error",
                                        json_sprintf("%s:%d: %s", d.v[k].file ? d.v[k].file : "",
                                                     d.v[k].line, d.v[k].msg));
                    break;
                }
            json_object_set_new(o, "state", json_string("invalid"));
            campaign_free(&c);
            diag_free(&d);
            json_array_append_new(list, o);
            continue;
        }
        json_object_set_new(o, "name", json_string(c.name));
        json_object_set_new(o, "file", json_string(files[i]));
        if (c.has_schedule) {
            char at[21];
            timestamp_format(c.at, at);
            json_t *s = json_pack("{s:s}", "at", at);
            if (c.repeat_s)
                json_object_set_new(s, "repeat_s", json_integer(c.repeat_s));
            if (c.timezone)
                json_object_set_new(s, "timezone", json_string(c.timezone));
            json_object_set_new(o, "schedule", s);
        } else
            json_object_set_new(o, "schedule", json_null());
        const char *state = "never run";
        json_t *lr = json_null();
        if (last) {
            sqlite3_reset(last);
            sqlite3_bind_text(last, 1, c.name, -1, SQLITE_TRANSIENT);
            if (sqlite3_step(last) == SQLITE_ROW) {
                char started[21];
                timestamp_format(sqlite3_column_int64(last, 2), started);
                lr = json_pack("{s:I, s:s, s:s}", "id", (json_int_t)sqlite3_column_int64(last, 0),
                               "status", (const char *)sqlite3_column_text(last, 1), "started_at",
                               started);
                if (sqlite3_column_type(last, 3) != SQLITE_NULL) {
                    char fin[21];
                    timestamp_format(sqlite3_column_int64(last, 3), fin);
                    json_object_set_new(lr, "finished_at", json_string(fin));
                }
                state = json_string_value(json_object_get(lr, "status"));
            }
        }
        json_object_set_new(o, "state", json_string(state));
        json_object_set_new(o, "last_run", lr);
        campaign_free(&c);
        diag_free(&d);
        json_array_append_new(list, o);
    }
    if (last)
        sqlite3_finalize(last);
    campaign_files_free(files);
    return json_pack("{s:o}", "campaigns", list);
}
