/* delivery/tracking — engagement tracking in a message's html part (a
 * channel's `tracking = { opens; clicks; }`): each http(s) link of an
 * <a href> becomes PUBLIC_URL/t/c/TOKEN, a signed redirect to the very
 * URL written (delivery/linktoken, purpose LINK_CLICK, the link in the
 * token: the server redirects only to what was signed, never to a URL a
 * request names), and an open pixel PUBLIC_URL/t/o/TOKEN goes before
 * </body>. The HTTP side is daemon/http_track.c. */
#ifndef BATON_DELIVERY_TRACKING_H
#define BATON_DELIVERY_TRACKING_H

#include "base/buf.h"
#include "delivery/linktoken.h"

typedef struct tracking_opts {
    const char *public_url; /* no trailing '/' */
    const char *secret;     /* http.link_secret */
    int opens, clicks;
    /* whom the links concern: purpose, link and expiry are set here */
    linktoken who;
} tracking_opts;

/* Append html, rewritten as o says, to out. Left as written: links that
 * are not http(s) (mailto:, tel:, #anchors), links already under
 * public_url (the unsubscribe link), an <a> with a data-notrack
 * attribute, comments, and a link whose token cannot be made (too long).
 * Returns the number of links rewritten. */
int tracking_rewrite_html(const char *html, const tracking_opts *o, buf *out);

#endif
