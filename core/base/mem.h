/* mem — allocation that never returns NULL: out of memory aborts with a
 * message, so callers need no error path for it. */
#ifndef BATON_MEM_H
#define BATON_MEM_H

#include <stdarg.h>
#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* n bytes copied exactly (NULs included), then a NUL: for untrusted bytes,
 * where xstrndup would stop at the first NUL. */
char *xmemdup0(const void *p, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

#endif
