/* escape — values written into text that something else parses: a URL,
 * a form body, a JSON string, a header, an MQTT topic. Each appends n
 * bytes of s to b so that they stay one value there. */
#ifndef BATON_ESCAPE_H
#define BATON_ESCAPE_H

#include <stddef.h>

#include "base/buf.h"

/* RFC 3986: every byte but the unreserved (A-Z a-z 0-9 - . _ ~) as %XX. */
void esc_url(buf *b, const char *s, size_t n);
/* application/x-www-form-urlencoded: as esc_url, a space as '+'. */
void esc_form(buf *b, const char *s, size_t n);
/* The inside of a JSON string literal (no quotes), escaped as jansson
 * escapes. */
void esc_json_inner(buf *b, const char *s, size_t n);
/* A header's text: CR, LF and other control bytes dropped (a tab becomes
 * a space); with url_list, '<', '>' and ',' too (a List-Unsubscribe
 * header is a list of <URL>s). */
void esc_header(buf *b, const char *s, size_t n, int url_list);
/* One MQTT topic level: '/', '+', '#', '%' and control bytes as %XX. */
void esc_topic(buf *b, const char *s, size_t n);

#endif
