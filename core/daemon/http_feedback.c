/* daemon/http_feedback — POST /v1/feedback/PROVIDER: bounces and
 * complaints coming back (scope events:write; Basic auth with a token's
 * secret as the password too, since provider webhooks cannot send a
 * Bearer header). Built in: `ses` (Amazon SES notifications through SNS,
 * SubscriptionConfirmation logged, never fetched), `postmark`, `dsn` (an
 * RFC 3464 report as an MTA pipe posts it); and every `http.feedback`
 * mapping of baton.cfg by its name. Each bounce or complaint goes to
 * dispatch_feedback_record (the delivery row, the suppression list, the
 * table feedback); hard bounces and complaints whose delivery is known
 * enter email_bounced / email_complained into journeys. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/log.h"
#include "base/mem.h"
#include "daemon/http_int.h"
#include "delivery/dispatch.h"
#include "delivery/dsn.h"

/* One bounce or complaint, its strings owned. */
typedef struct fb {
    dispatch_feedback_type type;
    char *address, *key, *message_id, *reason;
} fb;

typedef struct fbs {
    fb *v;
    size_t n, cap;
    long ignored;
} fbs;

static void fb_add(fbs *l, dispatch_feedback_type t, const char *address, const char *key,
                   const char *mid, const char *reason)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->v = xrealloc(l->v, l->cap * sizeof *l->v);
    }
    fb *f = &l->v[l->n++];
    f->type = t;
    f->address = address && *address ? xstrdup(address) : NULL;
    f->key = key && *key ? xstrdup(key) : NULL;
    f->message_id = mid && *mid ? xstrdup(mid) : NULL;
    f->reason = reason && *reason ? xstrdup(reason) : NULL;
}

static void fbs_free(fbs *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].address);
        free(l->v[i].key);
        free(l->v[i].message_id);
        free(l->v[i].reason);
    }
    free(l->v);
}

/* A value by dotted path ("mail.messageId", "recipients.0.email"). */
static json_t *jpath(json_t *v, const char *path)
{
    char seg[128];
    while (v && path && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof seg)
            return NULL;
        memcpy(seg, path, n);
        seg[n] = 0;
        if (json_is_array(v)) {
            char *end;
            long i = strtol(seg, &end, 10);
            v = *end || i < 0 ? NULL : json_array_get(v, (size_t)i);
        } else {
            v = json_object_get(v, seg);
        }
        path = dot ? dot + 1 : NULL;
    }
    return v;
}

static const char *jstr(json_t *v, const char *path)
{
    return json_string_value(jpath(v, path));
}

static int in_list(char **l, const char *v)
{
    for (size_t i = 0; l && l[i]; i++)
        if (!strcasecmp(l[i], v))
            return 1;
    return 0;
}

static json_t *parse_json(http_req *q, const char *data, size_t len, const char *field)
{
    json_error_t je;
    json_t *v = json_loadb(data, len, JSON_DECODE_ANY, &je);
    if (!v) {
        size_t at = (size_t)(je.position > 0 ? je.position - 1 : 0);
        http_error(q, 400, "bad_json",
                   field ? json_pack("{s:I, s:s}", "offset", (json_int_t)at, "field", field)
                         : json_pack("{s:I}", "offset", (json_int_t)at),
                   "malformed JSON%s%s at byte %zu: %s", field ? " in " : "", field ? field : "",
                   at, je.text);
    }
    return v;
}

static int missing(http_req *q, const char *field, long item)
{
    json_t *d = json_pack("{s:s}", "field", field);
    if (item >= 0)
        json_object_set_new(d, "item", json_integer(item));
    http_error(q, 400, "bad_request", d, "missing or not a string: '%s'%s", field,
               item >= 0 ? " (see details.item)" : "");
    return -1;
}

/* --- http.feedback mappings ------------------------------------------ */

static int parse_mapped(http_req *q, const conf_feedback *m, fbs *out)
{
    json_t *v = parse_json(q, q->body.data ? q->body.data : "", q->body.len, NULL);
    if (!v)
        return -1;
    int rc = 0;
    json_t *one = json_is_array(v) ? NULL : v;
    size_t n = one ? 1 : json_array_size(v);
    for (size_t i = 0; i < n; i++) {
        json_t *o = one ? one : json_array_get(v, i);
        if (!json_is_object(o)) {
            http_error(q, 400, "bad_request", json_pack("{s:I}", "item", (json_int_t)i),
                       "item %zu is not a JSON object", i);
            rc = -1;
            break;
        }
        const char *t = jstr(o, m->type);
        if (!t) {
            rc = missing(q, m->type, (long)i);
            break;
        }
        dispatch_feedback_type ft;
        if (in_list(m->hard, t))
            ft = FEEDBACK_HARD_BOUNCE;
        else if (in_list(m->complaint, t))
            ft = FEEDBACK_COMPLAINT;
        else if (in_list(m->soft, t))
            ft = FEEDBACK_SOFT_BOUNCE;
        else {
            out->ignored++; /* deliveries, opens...: not ours to record */
            continue;
        }
        const char *addr = jstr(o, m->address);
        if (!addr) {
            rc = missing(q, m->address, (long)i);
            break;
        }
        fb_add(out, ft, addr, m->key ? jstr(o, m->key) : NULL,
               m->message_id ? jstr(o, m->message_id) : NULL,
               m->reason ? jstr(o, m->reason) : NULL);
    }
    json_decref(v);
    return rc;
}

/* --- Amazon SES through SNS ------------------------------------------ */

static int parse_ses(http_req *q, fbs *out, json_t **special)
{
    json_t *env = parse_json(q, q->body.data ? q->body.data : "", q->body.len, NULL);
    if (!env)
        return -1;
    int rc = -1;
    const char *type = jstr(env, "Type"), *topic = jstr(env, "TopicArn");
    if (!json_is_object(env) || !type) {
        missing(q, "Type", -1);
        goto out;
    }
    if (!jstr(env, "MessageId")) {
        missing(q, "MessageId", -1);
        goto out;
    }
    if (!topic) {
        missing(q, "TopicArn", -1);
        goto out;
    }
    if (!strcmp(type, "SubscriptionConfirmation") || !strcmp(type, "UnsubscribeConfirmation")) {
        const char *url = jstr(env, "SubscribeURL");
        if (!url || strncmp(url, "https://", 8)) {
            missing(q, "SubscribeURL", -1);
            goto out;
        }
        /* baton makes no outbound call: the operator confirms by hand */
        log_warn("http: feedback ses: SNS %s for topic %s; to confirm, open: %s", type, topic, url);
        *special = json_pack("{s:s, s:s, s:s, s:s}", "provider", "ses", "sns", type, "topic", topic,
                             "subscribe_url", url);
        rc = 0;
        goto out;
    }
    if (strcmp(type, "Notification")) {
        http_error(q, 400, "bad_request", json_pack("{s:s, s:s}", "field", "Type", "value", type),
                   "SNS Type '%s' is not Notification, SubscriptionConfirmation or "
                   "UnsubscribeConfirmation",
                   type);
        goto out;
    }
    const char *msg = jstr(env, "Message");
    if (!msg) {
        missing(q, "Message", -1);
        goto out;
    }
    json_t *m = parse_json(q, msg, strlen(msg), "Message");
    if (!m)
        goto out;
    const char *nt = jstr(m, "notificationType");
    if (!nt)
        nt = jstr(m, "eventType"); /* SES event publishing */
    if (!nt) {
        json_decref(m);
        missing(q, "Message.notificationType", -1);
        goto out;
    }
    /* the delivery: the original headers' X-Baton-Key, else the key
     * their Message-ID names, else SES's own id as the log holds it */
    const char *mid = jstr(m, "mail.messageId"), *key = NULL;
    const char *orig = jstr(m, "mail.commonHeaders.messageId");
    size_t i;
    json_t *h;
    json_array_foreach(jpath(m, "mail.headers"), i, h)
    {
        const char *name = jstr(h, "name");
        if (name && !strcasecmp(name, "X-Baton-Key"))
            key = jstr(h, "value");
        else if (name && !strcasecmp(name, "Message-ID") && !orig)
            orig = jstr(h, "value");
    }
    char okey[256];
    if (!key && orig && baton_message_id_key(orig, okey, sizeof okey))
        key = okey;
    rc = 0;
    if (!strcmp(nt, "Bounce")) {
        const char *bt = jstr(m, "bounce.bounceType");
        dispatch_feedback_type ft =
            bt && !strcmp(bt, "Permanent") ? FEEDBACK_HARD_BOUNCE : FEEDBACK_SOFT_BOUNCE;
        json_t *r;
        json_array_foreach(jpath(m, "bounce.bouncedRecipients"), i, r)
        {
            const char *a = jstr(r, "emailAddress");
            if (!a) {
                rc = missing(q, "Message.bounce.bouncedRecipients.emailAddress", (long)i);
                break;
            }
            const char *why = jstr(r, "diagnosticCode");
            fb_add(out, ft, a, key, mid, why ? why : jstr(m, "bounce.bounceSubType"));
        }
    } else if (!strcmp(nt, "Complaint")) {
        json_t *r;
        json_array_foreach(jpath(m, "complaint.complainedRecipients"), i, r)
        {
            const char *a = jstr(r, "emailAddress");
            if (!a) {
                rc = missing(q, "Message.complaint.complainedRecipients.emailAddress", (long)i);
                break;
            }
            const char *why = jstr(m, "complaint.complaintFeedbackType");
            fb_add(out, FEEDBACK_COMPLAINT, a, key, mid, why ? why : "spam report");
        }
    } else {
        out->ignored++;
    }
    json_decref(m);
out:
    json_decref(env);
    return rc;
}

/* --- Postmark ---------------------------------------------------------- */

static int parse_postmark(http_req *q, fbs *out)
{
    json_t *v = parse_json(q, q->body.data ? q->body.data : "", q->body.len, NULL);
    if (!v)
        return -1;
    int rc = 0;
    const char *rt = jstr(v, "RecordType");
    if (!json_is_object(v) || !rt) {
        rc = missing(q, "RecordType", -1);
    } else if (!strcmp(rt, "Bounce") || !strcmp(rt, "SpamComplaint")) {
        static char *hard[] = {"HardBounce", "BadEmailAddress", "SpamNotification",
                               "ManuallyDeactivated", NULL};
        static char *soft[] = {"SoftBounce", "Transient", "DnsError", "MailboxFull", NULL};
        const char *t = jstr(v, "Type"), *addr = jstr(v, "Email");
        dispatch_feedback_type ft = FEEDBACK_COMPLAINT;
        int keep = 1;
        if (!strcmp(rt, "Bounce")) {
            if (!t)
                return json_decref(v), missing(q, "Type", -1);
            keep = in_list(hard, t) || in_list(soft, t);
            ft = in_list(hard, t) ? FEEDBACK_HARD_BOUNCE : FEEDBACK_SOFT_BOUNCE;
        }
        if (!keep)
            out->ignored++;
        else if (!addr)
            rc = missing(q, "Email", -1);
        else
            fb_add(out, ft, addr, jstr(v, "Metadata.baton_key"), jstr(v, "MessageID"),
                   jstr(v, "Description") ? jstr(v, "Description") : t);
    } else {
        out->ignored++;
    }
    json_decref(v);
    return rc;
}

/* --- RFC 3464 delivery status notifications (delivery/dsn) ----------- */

static int parse_dsn(http_req *q, fbs *out)
{
    dsn_report r;
    size_t off = 0;
    char err[256];
    if (dsn_parse(q->body.data ? q->body.data : "", q->body.len, &r, &off, err, sizeof err) != 0) {
        http_error(q, 400, "bad_dsn", json_pack("{s:I}", "offset", (json_int_t)off), "byte %zu: %s",
                   off, err);
        return -1;
    }
    for (size_t i = 0; i < r.n; i++)
        fb_add(out, r.v[i].type, r.v[i].address, *r.key ? r.key : NULL, dsn_provider_id(&r),
               r.v[i].reason);
    out->ignored += r.ignored;
    dsn_report_free(&r);
    return 0;
}

/* --- The endpoint -------------------------------------------------------- */

void http_feedback_post(http_req *q)
{
    const char *prov = q->seg[2];
    const conf_http *c = &q->env->a->conf.http;
    const conf_feedback *m = NULL;
    int builtin = !strcmp(prov, "ses") || !strcmp(prov, "postmark") || !strcmp(prov, "dsn");
    if (!builtin && !(m = conf_http_feedback(c, prov))) {
        json_t *known = json_pack("[s, s, s]", "ses", "postmark", "dsn");
        for (size_t i = 0; i < c->nfeedback; i++)
            json_array_append_new(known, json_string(c->feedback[i].name));
        http_error(q, 404, "not_found", json_pack("{s:o}", "providers", known),
                   "no feedback provider '%s' (built in: ses, postmark, dsn; others are "
                   "http.feedback mappings)",
                   prov);
        return;
    }
    fbs l = {0};
    json_t *special = NULL;
    int rc = !strcmp(prov, "ses")        ? parse_ses(q, &l, &special)
             : !strcmp(prov, "postmark") ? parse_postmark(q, &l)
             : !strcmp(prov, "dsn")      ? parse_dsn(q, &l)
                                         : parse_mapped(q, m, &l);
    if (rc != 0 || special) {
        if (special)
            http_json(q, 200, special);
        fbs_free(&l);
        return;
    }
    int64_t now = (int64_t)time(NULL);
    json_t *results = json_array(), *evs = json_array();
    long matched = 0;
    for (size_t i = 0; i < l.n; i++) {
        fb *f = &l.v[i];
        dispatch_feedback df = {.type = f->type,
                                .provider = prov,
                                .address = f->address,
                                .key = f->key,
                                .message_id = f->message_id,
                                .reason = f->reason};
        dispatch_log_row row;
        char err[256];
        int found = dispatch_feedback_record(q->env->st, &df, now, &row, err, sizeof err);
        if (found < 0) {
            log_error("http: feedback %s: %s", prov, err);
            http_error(q, 500, "internal", NULL,
                       "the feedback could not be recorded (%zu of %zu were); send it again", i,
                       l.n);
            json_decref(results);
            json_decref(evs);
            fbs_free(&l);
            return;
        }
        const char *type = f->type == FEEDBACK_HARD_BOUNCE   ? "hard_bounce"
                           : f->type == FEEDBACK_SOFT_BOUNCE ? "soft_bounce"
                                                             : "complaint";
        json_t *r = json_pack("{s:s, s:s?, s:b}", "type", type, "address",
                              f->address ? f->address : (found ? row.recipient : NULL),
                              "suppressed", f->type != FEEDBACK_SOFT_BOUNCE);
        json_object_set_new(r, "delivery", found ? json_string(row.key) : json_null());
        json_array_append_new(results, r);
        matched += found;
        log_info("http: feedback %s: %s for %s%s%s", prov, type,
                 f->address ? f->address : row.recipient, found ? ", delivery " : "",
                 found ? row.key : "");
        json_t *ev = found ? dispatch_feedback_event(q->env->st, f->type, &row) : NULL;
        if (ev)
            json_array_append_new(evs, ev);
    }
    json_t *ans = json_pack("{s:s, s:I, s:I, s:I, s:o, s:n}", "provider", prov, "recorded",
                            (json_int_t)l.n, "matched", (json_int_t)matched, "ignored",
                            (json_int_t)l.ignored, "results", results, "events");
    fbs_free(&l);
    http_email_events(q, evs, ans, 0);
}
