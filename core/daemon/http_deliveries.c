/* daemon/http_deliveries — the delivery log (GET /v1/deliveries), the
 * inbox's dead letters (GET /v1/dead_letters) and the channels (GET
 * /v1/channels[/NAME]: on or off, queue, rate, counters, last errors). */
#include <stdlib.h>
#include <string.h>

#include "base/timefmt.h"
#include "daemon/http_int.h"
#include "delivery/dispatch.h"
#include "delivery/report.h"
#include "journey/inbox.h"

/* "2026-01-31T09:00:00Z" or seconds since the epoch; -1 when neither. */
static int64_t parse_since(const char *s)
{
    int64_t t;
    char *end;
    long long n = strtoll(s, &end, 10);
    if (*s && !*end && n >= 0)
        return n;
    if (timestamp_parse(s, strlen(s), &t) == 0)
        return t;
    return -1;
}

void http_deliveries(http_req *q)
{
    delivery_filter f = {.profile = http_arg(q, "profile"),
                         .channel = http_arg(q, "channel"),
                         .status = http_arg(q, "status"),
                         .limit = 100};
    const char *since = http_arg(q, "since"), *cursor = http_arg(q, "cursor"),
               *limit = http_arg(q, "limit");
    int known = 0;
    for (int i = 0; f.status && i < DISPATCH_NSTATUS; i++)
        known |= !strcmp(f.status, dispatch_status_name((dispatch_status)i));
    if (f.status && !known) {
        http_error(q, 400, "bad_request", json_pack("{s:s}", "field", "status"),
                   "status: unknown status '%s' (queued, retry, deferred, sent, failed, capped, "
                   "dry_run, duplicate, uncertain)",
                   f.status);
        return;
    }
    if (since && (f.since = parse_since(since)) < 0) {
        http_error(q, 400, "bad_request", json_pack("{s:s}", "field", "since"),
                   "since: expected an ISO 8601 timestamp (2026-01-31T09:00:00Z) or seconds "
                   "since the epoch, got '%s'",
                   since);
        return;
    }
    if (cursor) {
        char *end;
        long long c = strtoll(cursor, &end, 10);
        if (!*cursor || *end || c <= 0) {
            http_error(q, 400, "bad_request", json_pack("{s:s}", "field", "cursor"),
                       "cursor: not a cursor this API gave (next_cursor)");
            return;
        }
        f.before = c;
    }
    if (limit) {
        char *end;
        long n = strtol(limit, &end, 10);
        if (!*limit || *end || n < 1 || n > 1000) {
            http_error(q, 400, "bad_request", json_pack("{s:s}", "field", "limit"),
                       "limit: expected 1 to 1000, got '%s'", limit);
            return;
        }
        f.limit = (int)n;
    }
    store st;
    if (http_open_store(q, &st) != 0)
        return;
    json_t *o = delivery_list_json(&st, &f);
    store_close(&st);
    http_json(q, 200, o);
}

void http_dead_letters(http_req *q)
{
    const char *limit = http_arg(q, "limit");
    long n = 20;
    if (limit) {
        char *end;
        n = strtol(limit, &end, 10);
        if (!*limit || *end || n < 1 || n > 1000) {
            http_error(q, 400, "bad_request", json_pack("{s:s}", "field", "limit"),
                       "limit: expected 1 to 1000, got '%s'", limit);
            return;
        }
    }
    char err[512];
    json_t *o = jinbox_dead_report(q->env->a->conf.data_dir, (size_t)n, err, sizeof err);
    if (!o) {
        http_error(q, 503, "unavailable", NULL, "the inbox cannot be read: %s", err);
        return;
    }
    http_json(q, 200, o);
}

static json_t *channel_json(http_req *q, store *st, const conf_use *u)
{
    const jchannel *c = NULL;
    for (size_t i = 0; i < q->env->nch; i++)
        if (!strcmp(q->env->ch[i].name, u->name))
            c = &q->env->ch[i];
    json_t *o = json_pack("{s:s, s:s?, s:b, s:b}", "name", u->name, "plugin", u->plugin, "enabled",
                          u->enabled, "on", c && c->d);
    config_setting_t *rate = config_setting_get_member(u->group, "rate");
    if (rate && config_setting_type(rate) == CONFIG_TYPE_INT)
        json_object_set_new(o, "rate", json_integer(config_setting_get_int(rate)));
    else if (rate && config_setting_type(rate) == CONFIG_TYPE_FLOAT)
        json_object_set_new(o, "rate", json_real(config_setting_get_float(rate)));
    else
        json_object_set_new(o, "rate", json_null());
    if (c && c->d) {
        dispatch_stats ds;
        dispatch_get_stats(c->d, &ds);
        json_object_set_new(o, "queue", json_integer((json_int_t)ds.pending));
        /* the rate it actually sends at (rate is the configured limit) */
        json_object_set_new(o, "sent_last_minute", json_integer((json_int_t)ds.sent_last_minute));
        json_object_set_new(o, "sent_per_s", json_real((double)ds.sent_last_minute / 60.0));
        json_object_set_new(
            o, "counts",
            json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "submitted",
                      (json_int_t)ds.submitted, "sent", (json_int_t)ds.sent, "failed",
                      (json_int_t)ds.failed, "capped", (json_int_t)ds.capped, "deferred",
                      (json_int_t)ds.deferred, "retries", (json_int_t)ds.retries, "duplicates",
                      (json_int_t)ds.duplicates, "throttled", (json_int_t)ds.throttled));
    } else {
        json_object_set_new(o, "queue", json_null());
        json_object_set_new(o, "sent_last_minute", json_null());
        json_object_set_new(o, "sent_per_s", json_null());
        json_object_set_new(o, "counts", json_null());
    }
    json_object_set_new(o, "last_errors", delivery_channel_errors(st, u->name, 5));
    return o;
}

void http_channels_list(http_req *q)
{
    store st;
    if (http_open_store(q, &st) != 0)
        return;
    json_t *list = json_array();
    const conf *c = &q->env->a->conf;
    for (size_t i = 0; i < c->nuses; i++)
        if (c->uses[i].kind == BATON_KIND_CHANNEL)
            json_array_append_new(list, channel_json(q, &st, &c->uses[i]));
    store_close(&st);
    http_json(q, 200, json_pack("{s:o}", "channels", list));
}

void http_channel_get(http_req *q)
{
    conf_use *u = conf_find(&q->env->a->conf, "channels", q->seg[2]);
    if (!u) {
        http_error(q, 404, "not_found", json_pack("{s:s}", "channel", q->seg[2]),
                   "no channel named '%s' is configured", q->seg[2]);
        return;
    }
    store st;
    if (http_open_store(q, &st) != 0)
        return;
    json_t *o = channel_json(q, &st, u);
    store_close(&st);
    http_json(q, 200, o);
}
