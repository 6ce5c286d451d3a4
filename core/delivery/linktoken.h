/* delivery/linktoken — signed tokens for the public links baton puts in
 * messages (unsubscribe /u/, open pixel /t/o/, click redirect /t/c/):
 * what the link is for and whom it concerns, signed with HMAC-SHA256
 * under http.link_secret, so the HTTP server can act on a hit without a
 * login and without a lookup, and no one can make a link for another
 * profile, message or purpose.
 *
 * A token is base64url(payload) "." base64url(first 16 bytes of
 * HMAC-SHA256(secret, payload)), no padding; the payload is "1" then
 * the fields below, each after a 0x1f. Only characters A-Z a-z 0-9 - _
 * and one "." appear, so a token goes into a URL path as it is. */
#ifndef BATON_DELIVERY_LINKTOKEN_H
#define BATON_DELIVERY_LINKTOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

/* What a link does; a token for one purpose is refused by the others. */
#define LINK_UNSUBSCRIBE 'u'
#define LINK_OPEN 'o'
#define LINK_CLICK 'c'

/* Longest token verify reads; longer is malformed. */
#define LINKTOKEN_MAX 4096

typedef struct linktoken {
    char purpose;        /* LINK_* */
    const char *profile; /* the profile's key */
    const char *channel; /* the channel instance ("email") */
    const char *origin;  /* "campaign" or "journey" */
    const char *name;    /* the campaign's or journey's name */
    const char *node;    /* the send activity's or journey node's id; may be "" */
    const char *key;     /* the delivery's idempotency key; may be "" */
    const char *link;    /* LINK_CLICK: the target URL; else "" */
    int64_t expires;     /* UTC seconds; 0: never */
} linktoken;

/* Append the token for t, signed with secret, to out. NULL fields are "".
 * -1 (out unchanged) when a field holds a control character or the
 * token would pass LINKTOKEN_MAX. */
int linktoken_make(const linktoken *t, const char *secret, buf *out);

typedef enum linktoken_rc {
    LINKTOKEN_OK = 0,
    LINKTOKEN_MALFORMED,     /* not a token: bad characters, length, shape */
    LINKTOKEN_BAD_SIGNATURE, /* forged, altered, truncated, or another secret */
    LINKTOKEN_WRONG_PURPOSE, /* a genuine token for another kind of link */
    LINKTOKEN_EXPIRED
} linktoken_rc;

/* A verified token's fields: t's strings point into data. */
typedef struct linktoken_parsed {
    linktoken t;
    char data[LINKTOKEN_MAX];
} linktoken_parsed;

/* Check tok[0..len) against secret (signature compared in constant
 * time, before any field is read), that it is for purpose, and not
 * expired at now (UTC s). On LINKTOKEN_OK, out holds its fields. */
linktoken_rc linktoken_verify(const char *tok, size_t len, const char *secret, char purpose,
                              int64_t now, linktoken_parsed *out);
/* "malformed", "bad signature"... for errors and logs. */
const char *linktoken_rc_name(linktoken_rc rc);

#endif
