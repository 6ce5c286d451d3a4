/* utf8 — checking untrusted bytes before they are treated as text: the
 * rules jansson applies to JSON strings (no overlongs, no surrogates,
 * nothing past U+10FFFF). */
#ifndef BATON_UTF8_H
#define BATON_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if none. */
size_t utf8_seq(const unsigned char *s, size_t n);
/* 1 when the n bytes at s are valid UTF-8 with no NUL; else 0 and, when
 * at is set, *at the offset of the first bad byte. */
int utf8_text(const char *s, size_t n, size_t *at);
/* A NUL-terminated copy of n bytes that is always valid UTF-8 text:
 * each byte that is not (a NUL included) becomes U+FFFD. The caller
 * frees it. */
char *utf8_printable(const char *s, size_t n);
/* Cut s (NUL-terminated) where a truncation left part of a sequence at
 * its end. */
void utf8_trim(char *s);

#endif
