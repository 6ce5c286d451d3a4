/* daemon/http_metrics — GET /metrics, the Prometheus text format
 * (version 0.0.4), every name baton_*:
 *
 *   baton_events_total{source,outcome}        events the inbox took (accepted, duplicate,
 *                                             dead_lettered), by source (events.NAME, http)
 *   baton_inbox_depth                         committed, not yet routed
 *   baton_routing_lag_seconds                 how long the oldest of them has waited
 *   baton_events_routed_total
 *   baton_journey_instances{journey,state}    from the state store
 *   baton_sends_total{channel,outcome}        sent, failed, capped, deferred, duplicate, retry
 *   baton_dispatch_queue_depth{channel}       in memory: queued, in flight, retrying
 *   baton_provider_latency_seconds{channel}   histogram of each deliver() call (a batch)
 *   baton_action_calls_total{outcome}         ok, failed
 *   baton_action_latency_seconds              histogram of each call
 *   baton_campaign_runs_total{campaign,status}
 *   baton_campaign_run_duration_seconds{campaign}  summary (sum, count) of finished runs
 *   baton_http_requests_total{class}
 *   baton_tracking_hits_total{kind}           open pixel and click redirect hits (open, click)
 *   baton_signed_links_refused_total          unsubscribe and tracking links refused
 *   baton_suppressions{channel,reason}        the suppression list, from the state store
 *   baton_feedback_total{provider,type}       bounces and complaints received, from the store
 *
 * Counters restart from zero with serve (and at a reload, for those the
 * runner and the dispatchers keep), as Prometheus expects of counters. */
#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "campaign/history.h"
#include "daemon/http_int.h"
#include "delivery/dispatch.h"

static void head(buf *b, const char *name, const char *type, const char *help)
{
    buf_addf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value, escaped as the format wants (\\, \", \n). */
static void label(buf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            buf_addc(b, '\\');
        if (*v == '\n') {
            buf_adds(b, "\\n");
            continue;
        }
        buf_addc(b, *v);
    }
}

static void histogram(buf *b, const char *name, const char *lname, const char *lval, const histo *h)
{
    unsigned long long cum = 0;
    for (int i = 0; i < HISTO_NBUCKETS; i++) {
        cum += atomic_load(&h->bucket[i]);
        buf_addf(b, "%s_bucket{", name);
        if (lname) {
            buf_addf(b, "%s=\"", lname);
            label(b, lval);
            buf_adds(b, "\",");
        }
        if (i == HISTO_NBUCKETS - 1)
            buf_addf(b, "le=\"+Inf\"} %llu\n", cum);
        else
            buf_addf(b, "le=\"%g\"} %llu\n", histo_bounds[i], cum);
    }
    const char *sfx[2] = {"_sum", "_count"};
    for (int k = 0; k < 2; k++) {
        buf_addf(b, "%s%s", name, sfx[k]);
        if (lname) {
            buf_addf(b, "{%s=\"", lname);
            label(b, lval);
            buf_adds(b, "\"}");
        }
        if (k == 0)
            buf_addf(b, " %.6f\n", (double)atomic_load(&h->sum_us) / 1e6);
        else
            buf_addf(b, " %llu\n", (unsigned long long)atomic_load(&h->count));
    }
}

static void events(buf *b, jrunner *r)
{
    jrunner_stats rs;
    jrunner_get_stats(r, &rs);
    jrunner_source_stats src[16];
    size_t n = jrunner_get_source_stats(r, src, 16);
    head(b, "baton_events_total", "counter", "Events the inbox took, by source and outcome.");
    for (size_t i = 0; i < n; i++) {
        static const char *const out[] = {"accepted", "duplicate", "dead_lettered"};
        uint64_t v[] = {src[i].accepted, src[i].duplicates, src[i].dead_letters};
        for (int k = 0; k < 3; k++) {
            buf_adds(b, "baton_events_total{source=\"");
            label(b, src[i].source);
            buf_addf(b, "\",outcome=\"%s\"} %llu\n", out[k], (unsigned long long)v[k]);
        }
    }
    head(b, "baton_events_routed_total", "counter", "Events the journey engine routed.");
    buf_addf(b, "baton_events_routed_total %llu\n", (unsigned long long)rs.routed);
    head(b, "baton_inbox_depth", "gauge", "Events committed to the inbox, not yet routed.");
    buf_addf(b, "baton_inbox_depth %zu\n", rs.queued);
    head(b, "baton_routing_lag_seconds", "gauge",
         "How long the oldest event not yet routed has waited.");
    buf_addf(b, "baton_routing_lag_seconds %.3f\n", (double)rs.lag_ms / 1000.0);
    head(b, "baton_action_calls_total", "counter", "Action calls by outcome.");
    buf_addf(b, "baton_action_calls_total{outcome=\"ok\"} %llu\n",
             (unsigned long long)rs.actions_ok);
    buf_addf(b, "baton_action_calls_total{outcome=\"failed\"} %llu\n",
             (unsigned long long)rs.actions_failed);
    head(b, "baton_action_latency_seconds", "histogram", "How long each action call takes.");
    histogram(b, "baton_action_latency_seconds", NULL, NULL, jrunner_action_latency(r));
}

static void channels(buf *b, const http_env *env)
{
    head(b, "baton_sends_total", "counter", "Channel sends by outcome.");
    for (size_t i = 0; i < env->nch; i++) {
        if (!env->ch[i].d)
            continue;
        dispatch_stats ds;
        dispatch_get_stats(env->ch[i].d, &ds);
        static const char *const out[] = {"sent",      "failed", "capped",   "deferred",
                                          "duplicate", "retry",  "uncertain"};
        uint64_t v[] = {ds.sent,       ds.failed,  ds.capped,   ds.deferred,
                        ds.duplicates, ds.retries, ds.uncertain};
        for (int k = 0; k < 7; k++) {
            buf_adds(b, "baton_sends_total{channel=\"");
            label(b, env->ch[i].name);
            buf_addf(b, "\",outcome=\"%s\"} %llu\n", out[k], (unsigned long long)v[k]);
        }
    }
    head(b, "baton_dispatch_queue_depth", "gauge",
         "Messages a channel holds in memory: queued, in flight, retrying.");
    for (size_t i = 0; i < env->nch; i++) {
        if (!env->ch[i].d)
            continue;
        dispatch_stats ds;
        dispatch_get_stats(env->ch[i].d, &ds);
        buf_adds(b, "baton_dispatch_queue_depth{channel=\"");
        label(b, env->ch[i].name);
        buf_addf(b, "\"} %zu\n", ds.pending);
    }
    head(b, "baton_provider_latency_seconds", "histogram",
         "How long a channel's provider takes per deliver() call (a batch).");
    for (size_t i = 0; i < env->nch; i++)
        if (env->ch[i].d)
            histogram(b, "baton_provider_latency_seconds", "channel", env->ch[i].name,
                      dispatch_latency(env->ch[i].d));
}

static void from_store(buf *b, store *st)
{
    sqlite3_stmt *q;
    head(b, "baton_journey_instances", "gauge", "Journey instances by journey and state.");
    if (sqlite3_prepare_v2(st->db,
                           "SELECT journey, state, count(*) FROM journey_instances GROUP BY 1, 2",
                           -1, &q, NULL) == SQLITE_OK) {
        while (sqlite3_step(q) == SQLITE_ROW) {
            buf_adds(b, "baton_journey_instances{journey=\"");
            label(b, (const char *)sqlite3_column_text(q, 0));
            buf_adds(b, "\",state=\"");
            label(b, (const char *)sqlite3_column_text(q, 1));
            buf_addf(b, "\"} %lld\n", (long long)sqlite3_column_int64(q, 2));
        }
        sqlite3_finalize(q);
    }
    char err[256];
    if (history_init(st, err, sizeof err) != 0)
        return;
    head(b, "baton_campaign_runs_total", "counter", "Campaign runs by campaign and status.");
    if (sqlite3_prepare_v2(st->db,
                           "SELECT campaign, status, count(*) FROM campaign_runs GROUP BY 1, 2", -1,
                           &q, NULL) == SQLITE_OK) {
        while (sqlite3_step(q) == SQLITE_ROW) {
            buf_adds(b, "baton_campaign_runs_total{campaign=\"");
            label(b, (const char *)sqlite3_column_text(q, 0));
            buf_adds(b, "\",status=\"");
            label(b, (const char *)sqlite3_column_text(q, 1));
            buf_addf(b, "\"} %lld\n", (long long)sqlite3_column_int64(q, 2));
        }
        sqlite3_finalize(q);
    }
    head(b, "baton_campaign_run_duration_seconds", "summary",
         "How long finished campaign runs took.");
    if (sqlite3_prepare_v2(st->db,
                           "SELECT campaign, sum(finished_at - started_at), count(*) FROM "
                           "campaign_runs WHERE finished_at IS NOT NULL GROUP BY 1",
                           -1, &q, NULL) == SQLITE_OK) {
        while (sqlite3_step(q) == SQLITE_ROW) {
            for (int k = 0; k < 2; k++) {
                buf_addf(b, "baton_campaign_run_duration_seconds_%s{campaign=\"",
                         k ? "count" : "sum");
                label(b, (const char *)sqlite3_column_text(q, 0));
                buf_addf(b, "\"} %lld\n", (long long)sqlite3_column_int64(q, k + 1));
            }
        }
        sqlite3_finalize(q);
    }
}

/* A family of two labels counted by a GROUP BY of the state store (a
 * table that does not exist yet: no samples). */
static void grouped(buf *b, store *st, const char *name, const char *type, const char *help,
                    const char *l1, const char *l2, const char *sql)
{
    head(b, name, type, help);
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(st->db, sql, -1, &q, NULL) != SQLITE_OK)
        return;
    while (sqlite3_step(q) == SQLITE_ROW) {
        buf_addf(b, "%s{%s=\"", name, l1);
        label(b, (const char *)sqlite3_column_text(q, 0));
        buf_addf(b, "\",%s=\"", l2);
        label(b, (const char *)sqlite3_column_text(q, 1));
        buf_addf(b, "\"} %lld\n", (long long)sqlite3_column_int64(q, 2));
    }
    sqlite3_finalize(q);
}

static void email_loop(buf *b, store *st)
{
    head(b, "baton_tracking_hits_total", "counter",
         "Hits of open pixels and click redirects (genuine links).");
    buf_addf(b, "baton_tracking_hits_total{kind=\"open\"} %llu\n",
             (unsigned long long)atomic_load(&http_stats.opens));
    buf_addf(b, "baton_tracking_hits_total{kind=\"click\"} %llu\n",
             (unsigned long long)atomic_load(&http_stats.clicks));
    head(b, "baton_signed_links_refused_total", "counter",
         "Unsubscribe and tracking links refused: forged, altered, foreign or expired.");
    buf_addf(b, "baton_signed_links_refused_total %llu\n",
             (unsigned long long)atomic_load(&http_stats.links_refused));
    grouped(b, st, "baton_suppressions", "gauge",
            "Entries of the suppression list, by channel and reason.", "channel", "reason",
            "SELECT channel, reason, count(*) FROM suppressions GROUP BY 1, 2");
    grouped(b, st, "baton_feedback_total", "counter",
            "Bounces and complaints received, by provider and type.", "provider", "type",
            "SELECT provider, type, count(*) FROM feedback GROUP BY 1, 2");
}

void http_metrics(http_req *q)
{
    store st;
    if (http_open_store(q, &st) != 0)
        return;
    buf b;
    buf_init(&b);
    if (q->env->r)
        events(&b, q->env->r);
    channels(&b, q->env);
    from_store(&b, &st);
    email_loop(&b, &st);
    store_close(&st);
    static const char *const cls[] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
    head(&b, "baton_http_requests_total", "counter", "HTTP requests answered, by status class.");
    for (int i = 0; i < 6; i++)
        buf_addf(&b, "baton_http_requests_total{class=\"%s\"} %llu\n", cls[i],
                 (unsigned long long)atomic_load(&http_stats.requests[i]));
    free(q->resp);
    q->status = 200;
    q->resp_len = b.len;
    q->resp = buf_steal(&b);
    q->ctype = "text/plain; version=0.0.4; charset=utf-8";
}
