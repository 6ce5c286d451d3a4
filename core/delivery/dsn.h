/* delivery/dsn — the reader of RFC 3464 delivery status notifications
 * (multipart/report; report-type=delivery-status): the bounces an MTA
 * returns, for POST /v1/feedback/dsn and `baton feedback dsn FILE`.
 * Per recipient group: Action failed is a hard bounce (soft with a 4.x.x
 * Status), delayed a soft one, other actions (delivered, relayed,
 * expanded) are counted ignored. The returned message's X-Baton-Key (a
 * message/rfc822 or text/rfc822-headers part) says which delivery it
 * was; else a baton Message-ID (baton_message_id) the report quotes: the
 * returned Message-ID, the report's In-Reply-To or References; else
 * Postfix's X-Postfix-Queue-ID, the id it
 * answered `queued as` (dsn_provider_id). LF or CRLF line ends, folded
 * header lines. */
#ifndef BATON_DELIVERY_DSN_H
#define BATON_DELIVERY_DSN_H

#include <stddef.h>

#include "delivery/dispatch.h"

typedef struct dsn_recipient {
    dispatch_feedback_type type;
    char *address; /* Final-Recipient's address */
    char *reason;  /* Status and Diagnostic-Code */
} dsn_recipient;

typedef struct dsn_report {
    char key[256];        /* the returned X-Baton-Key, else a quoted Message-ID's; or "" */
    char message_id[256]; /* their Message-ID, or "" */
    char queue_id[128];   /* the per-message X-Postfix-Queue-ID, or "" */
    dsn_recipient *v;
    size_t n;
    long ignored;
} dsn_report;

/* Read the whole report b[0..len) (its headers first). 0, or -1 with
 * *off the byte where it went wrong and err why (out then empty). */
int dsn_parse(const char *b, size_t len, dsn_report *out, size_t *off, char *err, size_t errlen);
void dsn_report_free(dsn_report *r);
/* The provider id to find the delivery by when the key is missing: the
 * queue id, else the returned Message-ID; NULL when neither. */
const char *dsn_provider_id(const dsn_report *r);

#endif
