/* delivery/send — the one way a message is sent, for campaigns and
 * journeys alike: a row (what the message is addressed by and what the
 * channel-side templates read) is checked for its recipient (address and
 * consent: dispatch_recipient), its content parts are rendered, and the
 * message is submitted to the channel's dispatcher, which owns caps,
 * quiet hours, rate, retries, idempotency and the delivery log. The
 * caller says how a part renders (a journey's scope, a campaign row's
 * template) and gets one outcome back to count or record. */
#ifndef BATON_DELIVERY_SEND_H
#define BATON_DELIVERY_SEND_H

#include <stddef.h>
#include <stdint.h>

#include <baton/baton.h>

#include "base/buf.h"
#include "delivery/dispatch.h"

typedef enum send_outcome {
    SEND_QUEUED = 0, /* the dispatcher took it (a dry run: formatted) */
    SEND_DEFERRED,   /* quiet hours: recorded, sent when they end */
    SEND_CAPPED,     /* over a frequency cap: recorded, not sent */
    SEND_DUPLICATE,  /* its key is in the delivery log already */
    SEND_NO_ADDRESS, /* the row has no address for this channel */
    SEND_NO_CONSENT, /* the consent field is not true */
    SEND_SUPPRESSED, /* unsubscribed, bounced or complained (dispatch.h) */
    SEND_INVALID,    /* a part did not render, or the channel refused it */
    SEND_FULL,       /* the queue stayed full for the wait allowed */
    SEND_CLOSED      /* the dispatcher is closing (a reload) */
} send_outcome;

/* Render content part i into out (reset by the caller). 0, or -1 with err. */
typedef int (*send_render_fn)(void *ud, size_t i, buf *out, char *err, size_t errlen);

typedef struct send_req {
    dispatcher *d;
    const instance *channel; /* whose address and consent fields apply */
    const char *key;         /* the idempotency key */
    const char *profile_id;  /* may be NULL */
    const baton_record *row; /* addressing and channel-side templates */
    size_t nparts;
    const char *const *part_names;
    send_render_fn render;
    void *render_ud;
    buf *scratch;              /* nparts buffers the caller reuses across sends */
    int64_t wait_ms;           /* for room in the queue: 0 none, -1 as long as it takes */
    const char *const *proofs; /* campaign --proof: these addresses instead of the */
    size_t nproofs;            /* row's, each its own key, nothing logged */
    /* where the message comes from, for its signed links (unsubscribe):
     * origin "campaign" or "journey", that one's name, the send activity
     * or node id */
    const char *origin, *origin_name, *node;
    const char *tz; /* the profile's zone for quiet hours (dispatch_msg.tz) */
} send_req;

/* Send one message. err says why on SEND_INVALID (and SEND_NO_*: which).
 * A suppressed profile or address (dispatch_suppressed) is SEND_SUPPRESSED,
 * nothing sent or logged. With http.public_url and http.link_secret, a
 * channel that has a `list_unsubscribe` part (channel_email) gets
 * "<PUBLIC_URL/u/TOKEN>" there unless the message set one itself.
 * Caller's thread; blocks only as dispatch_submit does. */
send_outcome delivery_send(const send_req *r, char *err, size_t errlen);

/* The status a journey records for an outcome ("queued", "capped",
 * "skipped: no address"...); SEND_INVALID gives "failed: <err>". */
void delivery_outcome_status(send_outcome o, const char *err, char *out, size_t outlen);

#endif
