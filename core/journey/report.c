#include "journey/report.h"

#include "delivery/dispatch.h"
#include "delivery/report.h"
#include "journey/engine.h"
#include "journey/inbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/timefmt.h"

const char *jreport_state_name(const char *s)
{
    return !strcmp(s, "active") ? "waiting" : s;
}

static const char *col(sqlite3_stmt *st, int i)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    return s ? s : "";
}

static void add_path(json_t *arr, const char *path)
{
    const char *p = path;
    while (*p) {
        const char *sp = strchr(p, ' ');
        size_t l = sp ? (size_t)(sp - p) : strlen(p);
        json_array_append_new(arr, json_stringn(p, l));
        p += l + (sp ? 1 : 0);
    }
}

static int has_table(store *st, const char *name)
{
    sqlite3_stmt *q;
    int ok = 0;
    if (sqlite3_prepare_v2(st->db, "SELECT 1 FROM sqlite_master WHERE name = ?", -1, &q, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
        ok = sqlite3_step(q) == SQLITE_ROW;
        sqlite3_finalize(q);
    }
    return ok;
}

static int table_ready(store *st)
{
    return has_table(st, "journey_instances");
}

json_t *jreport_profiles(store *st, const char *jname)
{
    json_t *out = json_object();
    if (!table_ready(st))
        return out;
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT id, profile, state, path FROM journey_instances"
                           " WHERE journey = ? ORDER BY id",
                           -1, &q, NULL) != SQLITE_OK)
        return out;
    sqlite3_bind_text(q, 1, jname, -1, SQLITE_TRANSIENT);
    while (sqlite3_step(q) == SQLITE_ROW) {
        const char *pid = col(q, 1);
        json_t *p = json_object_get(out, pid);
        if (!p) {
            p = json_pack("{s:s, s:[], s:[]}", "state", "", "path", "sent");
            json_object_set_new(out, pid, p);
        }
        json_object_set_new(p, "state", json_string(jreport_state_name(col(q, 2))));
        add_path(json_object_get(p, "path"), col(q, 3));
    }
    sqlite3_finalize(q);
    if (sqlite3_prepare_v2(st->db,
                           "SELECT profile, node, kind, target FROM journey_sends"
                           " WHERE journey = ? AND status NOT LIKE 'skipped%'"
                           " ORDER BY instance, step",
                           -1, &q, NULL) != SQLITE_OK)
        return out;
    sqlite3_bind_text(q, 1, jname, -1, SQLITE_TRANSIENT);
    while (sqlite3_step(q) == SQLITE_ROW) {
        json_t *p = json_object_get(out, col(q, 0));
        if (!p)
            continue;
        int is_send = !strcmp(col(q, 2), "send");
        json_array_append_new(
            json_object_get(p, "sent"),
            json_pack("{s:s, s:s}", "node", col(q, 1), is_send ? "channel" : "action", col(q, 3)));
    }
    sqlite3_finalize(q);
    return out;
}

static void bump(json_t *n, const char *key)
{
    json_object_set_new(n, key, json_integer(json_integer_value(json_object_get(n, key)) + 1));
}

static void add_key(void *ud, const char *key)
{
    json_object_set_new(ud, key, json_true());
}

typedef struct unsure_ctx {
    json_t *nodes;
    sqlite3_stmt *q;
} unsure_ctx;

static void move_one(json_t *n, const char *from, const char *to)
{
    json_int_t f = json_integer_value(json_object_get(n, from));
    if (f <= 0)
        return;
    json_object_set_new(n, from, json_integer(f - 1));
    json_object_set_new(n, to, json_integer(json_integer_value(json_object_get(n, to)) + 1));
}

static void unsure_node(void *ud, const char *key)
{
    unsure_ctx *u = ud;
    sqlite3_reset(u->q);
    sqlite3_bind_text(u->q, 1, key, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(u->q) == SQLITE_ROW) {
        json_t *n = json_object_get(u->nodes, col(u->q, 0));
        if (n)
            move_one(n, "pending", "uncertain");
    }
}

/* The outcome of each send and action node's steps: the delivery log's
 * status when the message reached it (sent, failed...), else the step's
 * own (skipped: channel disabled, capped, pending...). */
static void node_outcomes(store *st, const journey *j, json_t *nodes)
{
    static const char *const sql[] = {
        "SELECT s.node, coalesce(d.status, s.status), count(*) FROM journey_sends s"
        " LEFT JOIN deliveries d ON d.key = s.key WHERE s.journey = ? GROUP BY 1, 2",
        "SELECT node, status, count(*) FROM journey_sends WHERE journey = ? GROUP BY 1, 2"};
    sqlite3_stmt *q = NULL;
    for (size_t k = 0; k < 2 && !q; k++)
        if (sqlite3_prepare_v2(st->db, sql[k], -1, &q, NULL) != SQLITE_OK)
            q = NULL;
    if (!q)
        return;
    sqlite3_bind_text(q, 1, j->name, -1, SQLITE_TRANSIENT);
    while (sqlite3_step(q) == SQLITE_ROW) {
        json_t *n = json_object_get(nodes, col(q, 0));
        const char *status = col(q, 1);
        size_t l = strcspn(status, ":");
        const char *key = NULL;
        static const struct {
            const char *word, *key;
        } map[] = {{"sent", "sent"},          {"ok", "sent"},
                   {"failed", "failed"},      {"error", "failed"},
                   {"skipped", "skipped"},    {"capped", "capped"},
                   {"queued", "pending"},     {"pending", "pending"},
                   {"retry", "pending"},      {"deferred", "pending"},
                   {"uncertain", "uncertain"}};
        for (size_t i = 0; i < sizeof map / sizeof map[0] && !key; i++)
            if (strlen(map[i].word) == l && !strncmp(status, map[i].word, l))
                key = map[i].key;
        if (!n || !key)
            continue;
        json_object_set_new(
            n, key,
            json_integer(json_integer_value(json_object_get(n, key)) + sqlite3_column_int64(q, 2)));
    }
    sqlite3_finalize(q);
    /* what a killed serve had on the wire is uncertain at once, not
     * pending until a dispatcher records it so */
    unsure_ctx u = {.nodes = nodes};
    if (sqlite3_prepare_v2(st->db, "SELECT node FROM journey_sends WHERE key = ?1", -1, &u.q,
                           NULL) != SQLITE_OK)
        return;
    char prefix[300];
    snprintf(prefix, sizeof prefix, "j:%s:", j->name);
    dispatch_log_unsure(st, prefix, NULL, unsure_node, &u);
    sqlite3_finalize(u.q);
}

/* Each send node's deliveries opened and clicked (a channel's tracking:
 * the open pixel and click redirects, delivery/tracking.h). */
static void node_engagement(store *st, const journey *j, json_t *nodes)
{
    for (size_t i = 0; i < j->nnodes; i++) {
        if (j->nodes[i].type != JN_SEND)
            continue;
        dispatch_engagement_count c;
        if (dispatch_engagement_counts(st, "journey", j->name, j->nodes[i].id, NULL, &c) != 0)
            continue;
        json_t *n = json_object_get(nodes, j->nodes[i].id);
        json_object_set_new(n, "opened", json_integer((json_int_t)c.opened));
        json_object_set_new(n, "clicked", json_integer((json_int_t)c.clicked));
    }
}

json_t *jreport_status(store *st, const journey *j)
{
    json_t *nodes = json_object();
    for (size_t i = 0; i < j->nnodes; i++) {
        json_t *n = json_pack("{s:s, s:i, s:i, s:i}", "type", jnode_type_name(j->nodes[i].type),
                              "at", 0, "through", 0, "dead_letters", 0);
        static const char *const sends[] = {"sent", "failed", "skipped", NULL};
        static const char *const waits[] = {"reacted", "timed_out", NULL};
        const char *const *zero = NULL;
        if (j->nodes[i].type == JN_SEND || j->nodes[i].type == JN_ACTION)
            zero = sends;
        else if (j->nodes[i].type == JN_WAIT_EVENT)
            zero = waits;
        for (; zero && *zero; zero++)
            json_object_set_new(n, *zero, json_integer(0));
        json_object_set_new(nodes, j->nodes[i].id, n);
    }
    json_t *states = json_pack("{s:i, s:i, s:i, s:i, s:i}", "active", 0, "completed", 0, "exited",
                               0, "timed_out", 0, "failed", 0);
    json_int_t total = 0;
    sqlite3_stmt *q;
    if (table_ready(st) &&
        sqlite3_prepare_v2(st->db,
                           "SELECT profile, state, node, path FROM journey_instances"
                           " WHERE journey = ? ORDER BY profile",
                           -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, j->name, -1, SQLITE_TRANSIENT);
        char *last_profile = NULL;
        /* "through" counts profiles, not visits: a node seen twice on one
         * profile's path (a loop, a re-entry) counts once */
        char *seen = xcalloc(j->nnodes + 1, 1);
        while (sqlite3_step(q) == SQLITE_ROW) {
            const char *pid = col(q, 0);
            if (!last_profile || strcmp(last_profile, pid)) {
                free(last_profile);
                last_profile = xstrdup(pid);
                memset(seen, 0, j->nnodes);
                total++;
            }
            const char *state = col(q, 1);
            json_t *sc = json_object_get(states, state);
            if (sc)
                json_integer_set(sc, json_integer_value(sc) + 1);
            if (!strcmp(state, "active")) {
                json_t *n = json_object_get(nodes, col(q, 2));
                if (n)
                    json_object_set_new(
                        n, "at", json_integer(json_integer_value(json_object_get(n, "at")) + 1));
            } else if (!strcmp(state, "failed")) {
                /* the node's dead letters: profiles it could not carry on */
                json_t *n = json_object_get(nodes, col(q, 2));
                if (n)
                    bump(n, "dead_letters");
            }
            const char *p = col(q, 3);
            int prev = -1;
            while (*p) {
                const char *sp = strchr(p, ' ');
                size_t l = sp ? (size_t)(sp - p) : strlen(p);
                int cur = -1;
                for (size_t i = 0; i < j->nnodes; i++)
                    if (strlen(j->nodes[i].id) == l && !memcmp(j->nodes[i].id, p, l))
                        cur = (int)i;
                if (cur >= 0 && !seen[cur]) {
                    seen[cur] = 1;
                    bump(json_object_get(nodes, j->nodes[cur].id), "through");
                }
                /* which way a wait_event went: its event came, or its timeout */
                if (cur >= 0 && prev >= 0 && j->nodes[prev].type == JN_WAIT_EVENT) {
                    const jnode *w = &j->nodes[prev];
                    json_t *n = json_object_get(nodes, w->id);
                    if (cur == w->on_event)
                        bump(n, "reacted");
                    else if (cur == w->on_timeout)
                        bump(n, "timed_out");
                }
                prev = cur;
                p += l + (sp ? 1 : 0);
            }
        }
        free(seen);
        free(last_profile);
        sqlite3_finalize(q);
        node_outcomes(st, j, nodes);
        node_engagement(st, j, nodes);
    }
    /* instances by the version they entered (a changed file is a new
     * version; instances finish on theirs) */
    json_t *versions = json_object();
    if (table_ready(st) &&
        sqlite3_prepare_v2(
            st->db,
            "SELECT version, state, count(*) FROM journey_instances WHERE journey = ?"
            " GROUP BY version, state ORDER BY version",
            -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, j->name, -1, SQLITE_TRANSIENT);
        while (sqlite3_step(q) == SQLITE_ROW) {
            const char *v = col(q, 0);
            json_t *vo = json_object_get(versions, v);
            if (!vo) {
                vo = json_object();
                json_object_set_new(versions, v, vo);
            }
            json_object_set_new(vo, col(q, 1), json_integer(sqlite3_column_int64(q, 2)));
        }
        sqlite3_finalize(q);
    }
    /* the version this file is: the stored one with its hash (null when
     * no serve has run it yet) */
    json_t *cur = json_null();
    if (has_table(st, "journey_versions") &&
        sqlite3_prepare_v2(st->db,
                           "SELECT version FROM journey_versions WHERE journey = ? AND hash = ?"
                           " ORDER BY version DESC LIMIT 1",
                           -1, &q, NULL) == SQLITE_OK) {
        char hash[17];
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)j->hash);
        sqlite3_bind_text(q, 1, j->name, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(q, 2, hash, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(q) == SQLITE_ROW) {
            json_decref(cur);
            cur = json_integer(sqlite3_column_int64(q, 0));
        }
        sqlite3_finalize(q);
    }
    return json_pack("{s:s, s:o, s:I, s:o, s:o, s:o}", "journey", j->name, "version", cur,
                     "profiles", total, "states", states, "versions", versions, "nodes", nodes);
}

static json_t *ts_json(int64_t ms)
{
    char ts[21];
    timestamp_format(ms / 1000, ts);
    return json_string(ts);
}

json_t *jreport_profile(store *st, const char *profile)
{
    json_t *js = json_array(), *sent = json_array();
    sqlite3_stmt *q;
    if (table_ready(st) &&
        sqlite3_prepare_v2(st->db,
                           "SELECT journey, state, node, entered, updated, path, reason"
                           " FROM journey_instances WHERE profile = ? ORDER BY id",
                           -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, profile, -1, SQLITE_TRANSIENT);
        while (sqlite3_step(q) == SQLITE_ROW) {
            json_t *path = json_array();
            add_path(path, col(q, 5));
            json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:o, s:o}", "journey", col(q, 0), "state",
                                  jreport_state_name(col(q, 1)), "node", col(q, 2), "entered",
                                  ts_json(sqlite3_column_int64(q, 3)), "updated",
                                  ts_json(sqlite3_column_int64(q, 4)), "path", path);
            if (sqlite3_column_type(q, 6) != SQLITE_NULL)
                json_object_set_new(o, "reason", json_string(col(q, 6)));
            json_array_append_new(js, o);
        }
        sqlite3_finalize(q);
        /* a send's outcome is the delivery log's (sent, failed, capped...)
         * once the channel has it */
        const char *sql = has_table(st, "deliveries")
                              ? "SELECT s.journey, s.node, s.kind, s.target,"
                                " coalesce(d.status, s.status), s.at, s.key FROM journey_sends s"
                                " LEFT JOIN deliveries d ON d.key = s.key"
                                " WHERE s.profile = ? ORDER BY s.at, s.instance, s.step"
                              : "SELECT journey, node, kind, target, status, at, key FROM"
                                " journey_sends WHERE profile = ? ORDER BY at, instance, step";
        /* and what a killed serve had on the wire is uncertain at once */
        json_t *unsure = json_object();
        dispatch_log_unsure(st, "j:", profile, add_key, unsure);
        if (sqlite3_prepare_v2(st->db, sql, -1, &q, NULL) == SQLITE_OK) {
            sqlite3_bind_text(q, 1, profile, -1, SQLITE_TRANSIENT);
            while (sqlite3_step(q) == SQLITE_ROW) {
                int is_send = !strcmp(col(q, 2), "send");
                json_array_append_new(
                    sent, json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "journey", col(q, 0), "node",
                                    col(q, 1), "kind", col(q, 2), is_send ? "channel" : "action",
                                    col(q, 3), "status",
                                    json_object_get(unsure, col(q, 6)) ? "uncertain" : col(q, 4),
                                    "at", ts_json(sqlite3_column_int64(q, 5))));
            }
            sqlite3_finalize(q);
        }
        json_decref(unsure);
    }
    /* every message the delivery log holds for the profile: campaign
     * sends as well as journey ones */
    return json_pack("{s:s, s:o, s:o, s:o}", "profile", profile, "journeys", js, "sent", sent,
                     "deliveries", delivery_profile_json(st, profile));
}

json_t *jreport_dead_letters(store *st, const journey *j, const char *node, size_t limit)
{
    json_t *latest = json_array();
    json_int_t count = 0;
    sqlite3_stmt *q;
    /* one statement: the count over every row, the rows up to limit */
    if (table_ready(st) &&
        sqlite3_prepare_v2(st->db,
                           "SELECT updated, profile, node, reason, event, count(*) OVER ()"
                           " FROM journey_instances WHERE journey = ?1 AND state = 'failed'"
                           " AND (?2 IS NULL OR node = ?2) ORDER BY updated DESC, id DESC",
                           -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, j->name, -1, SQLITE_TRANSIENT);
        if (node)
            sqlite3_bind_text(q, 2, node, -1, SQLITE_TRANSIENT);
        for (size_t k = 0; sqlite3_step(q) == SQLITE_ROW && k < limit; k++) {
            count = sqlite3_column_int64(q, 5);
            /* the event that brought the profile in, as stored (JSON) */
            json_t *ev = json_loads(col(q, 4), 0, NULL);
            json_array_append_new(latest,
                                  json_pack("{s:o, s:s, s:s, s:s, s:o}", "at",
                                            ts_json(sqlite3_column_int64(q, 0)), "profile",
                                            col(q, 1), "node", col(q, 2), "reason", col(q, 3),
                                            "event", ev ? ev : json_string(col(q, 4))));
        }
        sqlite3_finalize(q);
    }
    return json_pack("{s:s, s:s?, s:I, s:o}", "journey", j->name, "node", node, "count", count,
                     "latest", latest);
}

json_t *jreport_journey(store *st, const journey *j, const char *data_dir, int *dead_err, char *err,
                        size_t errlen)
{
    json_t *o = jreport_status(st, j);
    /* running, paused or closed (baton journey pause|resume|close) */
    json_object_set_new(o, "control", json_string(jengine_control_get(st, j->name)));
    json_object_set_new(o, "held", json_integer(jengine_held_count(st, j->name)));
    /* the inbox's dead letters are every journey's: events refused before
     * any journey saw them, and entries refused for a missing profile
     * (read while serve runs) */
    json_t *dead = jinbox_dead_report(data_dir, 5, err, errlen);
    json_object_set_new(o, "dead_letters",
                        dead ? json_incref(json_object_get(dead, "count")) : json_null());
    json_object_set_new(o, "latest_dead_letters",
                        dead ? json_incref(json_object_get(dead, "latest")) : json_array());
    if (dead_err)
        *dead_err = dead == NULL;
    json_decref(dead);
    return o;
}
