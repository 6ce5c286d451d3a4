/* delivery/report — the delivery log as JSON (see report.h). */
#include "delivery/report.h"

#include <string.h>

#include "base/timefmt.h"
#include "delivery/dispatch.h"

static int have_log(store *st)
{
    sqlite3_stmt *q;
    int ok = 0;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = "
                           "'deliveries'",
                           -1, &q, NULL) == SQLITE_OK) {
        ok = sqlite3_step(q) == SQLITE_ROW;
        sqlite3_finalize(q);
    }
    return ok;
}

static json_t *ts(int64_t s)
{
    char b[21];
    timestamp_format(s, b);
    return json_string(b);
}

static json_t *text_or_null(sqlite3_stmt *q, int i)
{
    const unsigned char *t = sqlite3_column_text(q, i);
    return t && *t ? json_string((const char *)t) : json_null();
}

#define COLS                                                                                       \
    "rowid, key, channel, recipient, profile_id, status, provider_id, reason, attempts,"           \
    " created_at, updated_at"

static json_t *row_json(sqlite3_stmt *q)
{
    const char *key = (const char *)sqlite3_column_text(q, 1);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s}", "key", key, "source",
                          strncmp(key, "j:", 2) == 0 ? "journey" : "campaign", "channel",
                          (const char *)sqlite3_column_text(q, 2), "recipient",
                          (const char *)sqlite3_column_text(q, 3), "profile", text_or_null(q, 4),
                          "status", (const char *)sqlite3_column_text(q, 5));
    json_t *v = text_or_null(q, 6);
    if (json_is_null(v))
        json_decref(v);
    else
        json_object_set_new(o, "provider_id", v);
    v = text_or_null(q, 7);
    if (json_is_null(v))
        json_decref(v);
    else
        json_object_set_new(o, "reason", v);
    json_object_set_new(o, "attempts", json_integer(sqlite3_column_int64(q, 8)));
    json_object_set_new(o, "created_at", ts(sqlite3_column_int64(q, 9)));
    json_object_set_new(o, "updated_at", ts(sqlite3_column_int64(q, 10)));
    return o;
}

json_t *delivery_list_json(store *st, const delivery_filter *f)
{
    json_t *list = json_array();
    json_t *next = json_null();
    sqlite3_stmt *q;
    int limit = f->limit > 0 && f->limit <= 1000 ? f->limit : 100;
    if (have_log(st) &&
        sqlite3_prepare_v2(st->db,
                           "SELECT " COLS " FROM deliveries WHERE (?1 IS NULL OR profile_id = ?1)"
                           " AND (?2 IS NULL OR channel = ?2) AND (?3 IS NULL OR status = ?3)"
                           " AND created_at >= ?4 AND (?5 = 0 OR rowid < ?5)"
                           " ORDER BY rowid DESC LIMIT ?6",
                           -1, &q, NULL) == SQLITE_OK) {
        if (f->profile)
            sqlite3_bind_text(q, 1, f->profile, -1, SQLITE_TRANSIENT);
        if (f->channel)
            sqlite3_bind_text(q, 2, f->channel, -1, SQLITE_TRANSIENT);
        if (f->status)
            sqlite3_bind_text(q, 3, f->status, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(q, 4, f->since);
        sqlite3_bind_int64(q, 5, f->before);
        sqlite3_bind_int(q, 6, limit + 1); /* one more: is there a next page? */
        int n = 0;
        int64_t last = 0;
        while (sqlite3_step(q) == SQLITE_ROW) {
            if (n++ == limit) {
                json_decref(next);
                next = json_sprintf("%lld", (long long)last);
                break;
            }
            last = sqlite3_column_int64(q, 0);
            json_array_append_new(list, row_json(q));
        }
        sqlite3_finalize(q);
    }
    return json_pack("{s:o, s:o}", "deliveries", list, "next_cursor", next);
}

static void add_key(void *ud, const char *key)
{
    json_object_set_new(ud, key, json_true());
}

json_t *delivery_profile_json(store *st, const char *profile)
{
    json_t *list = json_array();
    sqlite3_stmt *q;
    if (have_log(st) && sqlite3_prepare_v2(st->db,
                                           "SELECT " COLS " FROM deliveries WHERE profile_id = ?1"
                                           " ORDER BY created_at, rowid",
                                           -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, profile, -1, SQLITE_TRANSIENT);
        while (sqlite3_step(q) == SQLITE_ROW)
            json_array_append_new(list, row_json(q));
        sqlite3_finalize(q);
        /* what a killed process had on the wire is uncertain at once */
        json_t *unsure = json_object();
        dispatch_log_unsure(st, NULL, profile, add_key, unsure);
        size_t i;
        json_t *o;
        json_array_foreach(list, i, o)
        {
            if (json_object_get(unsure, json_string_value(json_object_get(o, "key"))))
                json_object_set_new(o, "status", json_string("uncertain"));
        }
        json_decref(unsure);
    }
    return list;
}

json_t *delivery_channel_errors(store *st, const char *channel, int n)
{
    json_t *list = json_array();
    sqlite3_stmt *q;
    if (have_log(st) &&
        sqlite3_prepare_v2(st->db,
                           "SELECT key, updated_at, coalesce(reason, '') FROM deliveries WHERE"
                           " channel = ?1 AND status IN ('failed', 'retry', 'uncertain')"
                           " ORDER BY updated_at DESC, rowid DESC LIMIT ?2",
                           -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, channel, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(q, 2, n);
        while (sqlite3_step(q) == SQLITE_ROW)
            json_array_append_new(list, json_pack("{s:s, s:o, s:s}", "key",
                                                  (const char *)sqlite3_column_text(q, 0), "at",
                                                  ts(sqlite3_column_int64(q, 1)), "reason",
                                                  (const char *)sqlite3_column_text(q, 2)));
        sqlite3_finalize(q);
    }
    return list;
}
