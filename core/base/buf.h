/* buf — a growable byte buffer, always NUL-terminated; the SDK's
 * baton_buf. */
#ifndef BATON_BUF_H
#define BATON_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include <baton/baton.h>

struct baton_buf {
    char *data;
    size_t len, cap;
};
typedef struct baton_buf buf;

void buf_init(buf *b);
void buf_free(buf *b);
void buf_reset(buf *b);
void buf_add(buf *b, const void *data, size_t len);
void buf_adds(buf *b, const char *s);
void buf_addc(buf *b, char c);
void buf_addf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vaddf(buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Append s as a JSON string literal, quotes included. */
/* s[0..len) as a JSON string literal, quotes included, escaped byte for
 * byte as jansson escapes (the caller checks UTF-8 where it matters). */
void buf_add_json_string(buf *b, const char *s, size_t len);
/* data in standard base64 (RFC 4648, padded, no line breaks). */
void buf_add_base64(buf *b, const void *data, size_t len);
/* Hand the bytes to the caller (who frees them) and reset b. */
char *buf_steal(buf *b);

#endif
