#include "delivery/send.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "delivery/linktoken.h"
#include "delivery/tracking.h"
#include "plugin/plugin_host.h"

/* The channel takes a list_unsubscribe part (channel_email does). */
static int takes_unsub(const instance *chan)
{
    const baton_channel_ops *ops = instance_channel((instance *)chan);
    for (const char *const *p = ops ? ops->parts : NULL; p && *p; p++)
        if (!strcmp(*p, "list_unsubscribe"))
            return 1;
    return 0;
}

/* "<PUBLIC_URL/u/TOKEN>" into out; 0, or -1 when links are not set up. */
static int unsub_link(const send_req *r, buf *out)
{
    const conf *c = r->d ? dispatch_conf(r->d) : NULL;
    if (!c || !c->http.public_url || !c->http.link_secret || !r->profile_id || !*r->profile_id)
        return -1;
    linktoken t = {.purpose = LINK_UNSUBSCRIBE,
                   .profile = r->profile_id,
                   .channel = dispatch_channel(r->d),
                   .origin = r->origin,
                   .name = r->origin_name,
                   .node = r->node,
                   .key = NULL}; /* one link per profile and send: no key */
    buf_adds(out, "<");
    buf_adds(out, c->http.public_url);
    buf_adds(out, "/u/");
    if (linktoken_make(&t, c->http.link_secret, out) != 0)
        return -1;
    buf_adds(out, ">");
    return 0;
}

/* With the channel's tracking on and links set up, the html part (in
 * *html) rewritten into out; 0, or -1 when nothing is to be done. A
 * proof's links carry no delivery key: its hits are not recorded. */
static int track_html(const send_req *r, const char *html, buf *out)
{
    const conf *c = r->d ? dispatch_conf(r->d) : NULL;
    const channel_settings *cs = &r->channel->host.channel;
    if (!c || !c->http.public_url || !c->http.link_secret || !r->profile_id || !*r->profile_id ||
        (!cs->track_opens && !cs->track_clicks) || !*html)
        return -1;
    tracking_opts o = {.public_url = c->http.public_url,
                       .secret = c->http.link_secret,
                       .opens = cs->track_opens,
                       .clicks = cs->track_clicks,
                       .who = {.profile = r->profile_id,
                               .channel = dispatch_channel(r->d),
                               .origin = r->origin,
                               .name = r->origin_name,
                               .node = r->node,
                               .key = r->nproofs ? NULL : r->key}};
    tracking_rewrite_html(html, &o, out);
    return 0;
}

send_outcome delivery_send(const send_req *r, char *err, size_t errlen)
{
    char addr[512];
    if (errlen)
        err[0] = '\0';
    dispatch_eligibility el = dispatch_recipient(r->channel, r->row, addr, sizeof addr);
    if (el == DISPATCH_NO_ADDRESS)
        return SEND_NO_ADDRESS;
    if (el == DISPATCH_NO_CONSENT)
        return SEND_NO_CONSENT;
    if (!r->nproofs && r->d &&
        dispatch_suppressed(dispatch_store(r->d), dispatch_channel(r->d), r->profile_id, addr, err,
                            errlen))
        return SEND_SUPPRESSED;
    /* on the stack for the usual few parts: two allocations a message */
    const char *values_few[8] = {0}, *names_few[8] = {0};
    int few = r->nparts + 2 <= 8;
    const char **values = few ? values_few : xcalloc(r->nparts + 2, sizeof *values);
    const char **names = few ? names_few : xcalloc(r->nparts + 2, sizeof *names);
    size_t nparts = r->nparts;
    buf tracked; /* the html part with its tracking */
    buf_init(&tracked);
    int has_unsub = 0;
    size_t unsub_at = r->nparts; /* an empty list_unsubscribe part is filled in */
    for (size_t i = 0; i < r->nparts; i++) {
        buf_reset(&r->scratch[i]);
        if (r->render(r->render_ud, i, &r->scratch[i], err, errlen) != 0) {
            buf_free(&tracked);
            if (!few) {
                free(values);
                free(names);
            }
            return SEND_INVALID;
        }
        values[i] = r->scratch[i].data ? r->scratch[i].data : "";
        names[i] = r->part_names[i];
        if (!strcmp(names[i], "html") && !tracked.data && track_html(r, values[i], &tracked) == 0)
            values[i] = tracked.data ? tracked.data : "";
        if (!strcmp(names[i], "list_unsubscribe")) {
            has_unsub |= *values[i] != 0;
            unsub_at = i;
        }
    }
    buf unsub;
    buf_init(&unsub);
    if (!has_unsub && takes_unsub(r->channel) && unsub_link(r, &unsub) == 0) {
        names[unsub_at] = "list_unsubscribe";
        values[unsub_at] = unsub.data;
        if (unsub_at == nparts)
            nparts++;
    }
    dispatch_msg m = {.key = r->key,
                      .recipient = addr,
                      .profile_id = r->profile_id,
                      .nparts = nparts,
                      .part_names = names,
                      .part_values = values,
                      .row = r->row,
                      .tz = r->tz};
    send_outcome out = SEND_QUEUED;
    if (r->nproofs) {
        /* proofs: the same content to each address given, outside caps
         * and the delivery log; keyed in the send's own batch (no "/" after
         * the key: a batch-keyed channel such as directmail exports them
         * with the batch, and batch_end counts them) */
        buf k;
        buf_init(&k);
        for (size_t i = 0; i < r->nproofs; i++) {
            buf_reset(&k);
            buf_addf(&k, "%s#proof-%zu", r->key, i);
            m.key = k.data;
            m.recipient = r->proofs[i];
            m.flags = DISPATCH_F_PROOF;
            dispatch_submit(r->d, &m, r->wait_ms, err, errlen);
        }
        buf_free(&k);
        buf_free(&tracked);
        buf_free(&unsub);
        if (!few) {
            free(values);
            free(names);
        }
        return SEND_QUEUED;
    }
    switch (dispatch_submit(r->d, &m, r->wait_ms, err, errlen)) {
    case DISPATCH_ACCEPTED: out = SEND_QUEUED; break;
    case DISPATCH_ACCEPTED_DEFERRED: out = SEND_DEFERRED; break;
    case DISPATCH_REFUSED_CAPPED: out = SEND_CAPPED; break;
    case DISPATCH_REFUSED_DUPLICATE: out = SEND_DUPLICATE; break;
    case DISPATCH_FULL: out = SEND_FULL; break;
    case DISPATCH_CLOSED: out = SEND_CLOSED; break;
    case DISPATCH_INVALID: out = SEND_INVALID; break;
    }
    buf_free(&tracked);
    buf_free(&unsub);
    if (!few) {
        free(values);
        free(names);
    }
    return out;
}

void delivery_outcome_status(send_outcome o, const char *err, char *out, size_t outlen)
{
    const char *s = NULL;
    switch (o) {
    case SEND_QUEUED: s = "queued"; break;
    case SEND_DEFERRED: s = "deferred"; break;
    case SEND_CAPPED: s = "capped"; break;
    case SEND_DUPLICATE: s = "queued"; break; /* handed before */
    case SEND_NO_ADDRESS: s = "skipped: no address"; break;
    case SEND_NO_CONSENT: s = "skipped: no consent"; break;
    case SEND_SUPPRESSED: s = "skipped: suppressed"; break;
    case SEND_FULL: s = "pending"; break;
    case SEND_CLOSED: s = "pending"; break;
    case SEND_INVALID: break;
    }
    if (s && outlen) { /* copied: a snprintf per send for a fixed word */
        size_t n = strlen(s);
        if (n >= outlen)
            n = outlen - 1;
        memcpy(out, s, n);
        out[n] = '\0';
    } else if (!s)
        snprintf(out, outlen, "failed: %s", err && *err ? err : "refused by the channel");
}
