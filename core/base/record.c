#include "base/record.h"

#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

record *record_new(void)
{
    return xcalloc(1, sizeof(record));
}

static void value_release(baton_value *v)
{
    if (v->type == BATON_T_STRING)
        free((char *)v->v.s.ptr);
}

void record_clear(record *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].name);
        value_release(&r->v[i].value);
    }
    r->n = 0;
}

void record_free(record *r)
{
    if (!r)
        return;
    record_clear(r);
    free(r->v);
    free(r);
}

static record_field *find(const record *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->v[i].name, name) == 0)
            return &r->v[i];
    return NULL;
}

void record_set(record *r, const char *name, const baton_value *v)
{
    /* copy first: v may point into the field it replaces */
    baton_value copy = *v;
    if (v->type == BATON_T_STRING) {
        char *s = xmalloc(v->v.s.len + 1);
        memcpy(s, v->v.s.ptr, v->v.s.len);
        s[v->v.s.len] = '\0';
        copy.v.s.ptr = s;
    }
    record_field *f = find(r, name);
    if (f) {
        value_release(&f->value);
    } else {
        if (r->n == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 8;
            r->v = xrealloc(r->v, r->cap * sizeof *r->v);
        }
        f = &r->v[r->n++];
        f->name = xstrdup(name);
    }
    f->value = copy;
}

void record_set_string(record *r, const char *name, const char *s)
{
    baton_value v = {.type = BATON_T_STRING, .v.s = {s, strlen(s)}};
    record_set(r, name, &v);
}

void record_set_int(record *r, const char *name, int64_t i)
{
    baton_value v = {.type = BATON_T_INT, .v.i = i};
    record_set(r, name, &v);
}

const baton_value *record_find(const record *r, const char *name)
{
    record_field *f = r ? find(r, name) : NULL;
    return f ? &f->value : NULL;
}

int record_get(const record *r, const char *name, baton_value *out)
{
    const baton_value *v = record_find(r, name);
    if (!v)
        return -1;
    *out = *v;
    return 0;
}
