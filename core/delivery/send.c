#include "delivery/send.h"

#include <stdio.h>
#include <stdlib.h>

#include "base/mem.h"

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
    const char **values = xcalloc(r->nparts + 1, sizeof *values);
    for (size_t i = 0; i < r->nparts; i++) {
        buf_reset(&r->scratch[i]);
        if (r->render(r->render_ud, i, &r->scratch[i], err, errlen) != 0) {
            free(values);
            return SEND_INVALID;
        }
        values[i] = r->scratch[i].data ? r->scratch[i].data : "";
    }
    dispatch_msg m = {.key = r->key,
                      .recipient = addr,
                      .profile_id = r->profile_id,
                      .nparts = r->nparts,
                      .part_names = r->part_names,
                      .part_values = values,
                      .row = r->row};
    send_outcome out = SEND_QUEUED;
    if (r->nproofs) {
        /* proofs: the same content to each address given, outside caps
         * and the delivery log */
        buf k;
        buf_init(&k);
        for (size_t i = 0; i < r->nproofs; i++) {
            buf_reset(&k);
            buf_addf(&k, "%s/proof-%zu", r->key, i);
            m.key = k.data;
            m.recipient = r->proofs[i];
            m.flags = DISPATCH_F_PROOF;
            dispatch_submit(r->d, &m, r->wait_ms, err, errlen);
        }
        buf_free(&k);
        free(values);
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
    free(values);
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
    case SEND_FULL: s = "pending"; break;
    case SEND_CLOSED: s = "pending"; break;
    case SEND_INVALID: break;
    }
    if (s)
        snprintf(out, outlen, "%s", s);
    else
        snprintf(out, outlen, "failed: %s", err && *err ? err : "refused by the channel");
}
