#include "base/diag.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

void diag_init(diag *d)
{
    memset(d, 0, sizeof *d);
}

void diag_free(diag *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->v[i].file);
        free(d->v[i].msg);
    }
    free(d->v);
    memset(d, 0, sizeof *d);
}

__attribute__((format(printf, 5, 0))) static void add(diag *d, const char *file, int line,
                                                      int warning, const char *fmt, va_list ap)
{
    char *msg = xvasprintf(fmt, ap);
    /* the same finding twice (a schema read by check and again by each
     * campaign on its source) is said once; past a thousand entries the
     * scan is not worth it */
    for (size_t i = 0; d->n < 1000 && i < d->n; i++) {
        const diag_entry *o = &d->v[i];
        if (o->line == line && o->warning == warning && !strcmp(o->msg, msg) &&
            (o->file && file ? !strcmp(o->file, file) : o->file == file)) {
            free(msg);
            return;
        }
    }
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->v = xrealloc(d->v, d->cap * sizeof *d->v);
    }
    diag_entry *e = &d->v[d->n++];
    e->file = file ? xstrdup(file) : NULL;
    e->line = line;
    e->warning = warning;
    e->msg = msg;
    if (!warning)
        d->errors++;
}

void diag_error(diag *d, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add(d, file, line, 0, fmt, ap);
    va_end(ap);
}

void diag_warn(diag *d, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add(d, file, line, 1, fmt, ap);
    va_end(ap);
}

void diag_print(const diag *d, FILE *out)
{
    for (size_t i = 0; i < d->n; i++) {
        const diag_entry *e = &d->v[i];
        const char *kind = e->warning ? "warning: " : "";
        if (e->file && e->line > 0)
            fprintf(out, "%s:%d: %s%s\n", e->file, e->line, kind, e->msg);
        else if (e->file)
            fprintf(out, "%s: %s%s\n", e->file, kind, e->msg);
        else
            fprintf(out, "baton: %s%s\n", kind, e->msg);
    }
}

static char *replace_all(const char *s, const char *old, const char *nu)
{
    size_t ol = strlen(old), nl = strlen(nu), n = 0;
    for (const char *p = strstr(s, old); p; p = strstr(p + ol, old))
        n++;
    if (!n)
        return NULL;
    char *out = xmalloc(strlen(s) + n * nl + 1), *o = out;
    const char *p = s, *q;
    while ((q = strstr(p, old))) {
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, nu, nl);
        o += nl;
        p = q + ol;
    }
    strcpy(o, p);
    return out;
}

void diag_rename(diag *d, size_t from, const char *old, const char *nu)
{
    if (!old || !*old)
        return;
    for (size_t i = from; i < d->n; i++) {
        diag_entry *e = &d->v[i];
        char *r;
        if (e->file && (r = replace_all(e->file, old, nu))) {
            free(e->file);
            e->file = r;
        }
        if (e->msg && (r = replace_all(e->msg, old, nu))) {
            free(e->msg);
            e->msg = r;
        }
    }
}

char *diag_format(const diag_entry *e)
{
    const char *kind = e->warning ? "warning: " : "";
    if (e->file && e->line > 0)
        return xasprintf("%s:%d: %s%s", e->file, e->line, kind, e->msg);
    if (e->file)
        return xasprintf("%s: %s%s", e->file, kind, e->msg);
    return xasprintf("baton: %s%s", kind, e->msg);
}
