/* diag — the errors and warnings found in user input, collected so that
 * every one is reported at once as "file:line: message", each finding
 * once (the same file, line and message again is dropped). */
#ifndef BATON_DIAG_H
#define BATON_DIAG_H

#include <stddef.h>
#include <stdio.h>

typedef struct diag_entry {
    char *file; /* may be NULL */
    int line;   /* 0 when unknown */
    int warning;
    char *msg;
} diag_entry;

typedef struct diag {
    diag_entry *v;
    size_t n, cap;
    size_t errors;
} diag;

void diag_init(diag *d);
void diag_free(diag *d);
void diag_error(diag *d, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void diag_warn(diag *d, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Replace old by nu in the file names and messages of entries from
 * index `from` on (a text checked under a scratch name, reported under
 * the name of the file it will become). */
void diag_rename(diag *d, size_t from, const char *old, const char *nu);
/* One entry as diag_print prints it, without the newline (free). */
char *diag_format(const diag_entry *e);
/* Print every entry, in the order found, one per line. */
void diag_print(const diag *d, FILE *out);

#endif
