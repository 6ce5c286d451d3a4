/* record — an owned list of named values: the SDK's baton_record. Field
 * names may be dotted ("profile.city"); lookups are exact. */
#ifndef BATON_RECORD_H
#define BATON_RECORD_H

#include <stddef.h>

#include <baton/baton.h>

typedef struct record_field {
    char *name;
    baton_value value; /* strings owned by the record */
} record_field;

struct baton_record {
    record_field *v;
    size_t n, cap;
};
typedef struct baton_record record;

record *record_new(void);
void record_free(record *r);
void record_clear(record *r);
/* Copy v (and its string) under name, replacing an existing field. */
void record_set(record *r, const char *name, const baton_value *v);
void record_set_string(record *r, const char *name, const char *s);
void record_set_int(record *r, const char *name, int64_t i);
/* 0 and *out borrowed from r, or -1 when absent. */
int record_get(const record *r, const char *name, baton_value *out);
const baton_value *record_find(const record *r, const char *name);

#endif
