/* schema — the entities of a data source and how they link
 * (docs/schema.md, conf/schema.cfg). A plain data model with lookups:
 * the expression checker resolves names against it, the SQL compiler and
 * the campaign runner take table, column and join names from it (and
 * from nowhere else).
 *
 *   entities: {
 *     orders: { key = "id"; table = "orders";            # table: optional
 *               fields: { id = "string"; amount = "float"; ... };
 *               links: { store = { to = "stores"; via = "store_id";
 *                                  reverse = "orders"; }; }; };
 *   };
 *
 * A link is many-to-one from the entity that declares it (orders.store:
 * orders.store_id = stores.<key>); its `reverse` names the one-to-many side
 * on the target (stores.orders: every order of a store). Field types are
 * string, int, float, bool, date, timestamp (the baton_type of the same
 * name). Everything loaded is immutable until schema_free, and every
 * pointer into it (entity, field, link) stays valid until then. */
#ifndef BATON_SCHEMA_H
#define BATON_SCHEMA_H

#include <stddef.h>

#include <baton/baton.h>

#include "base/diag.h"

typedef struct schema_entity schema_entity;

typedef struct schema_field {
    char *name;      /* also the column name */
    baton_type type; /* STRING INT FLOAT BOOL DATE TIMESTAMP */
    int line;        /* where it was declared */
    /* date and timestamp fields: the source's values are not all in the
     * canonical form of FORMATS.md (ISO 8601 UTC text with T and Z,
     * YYYY-MM-DD): found by sampling the column (schema_sample_times in
     * the campaign engine), so the SQL compiler reads them through a
     * normalising expression and compares instants, not text. 0 until a
     * sample says otherwise. */
    int stored_any;
} schema_field;

/* A many-to-one link, declared by `from`. */
typedef struct schema_link {
    char *name;              /* "store" */
    schema_entity *from;     /* orders */
    schema_entity *to;       /* stores */
    const schema_field *via; /* orders.store_id (a field of from) */
    char *reverse;           /* "orders": the one-to-many name on `to`, or NULL */
    int line;
} schema_link;

struct schema_entity {
    char *name;              /* "orders" */
    char *table;             /* "orders" unless table = "..." */
    const schema_field *key; /* the key field; NULL when the key is composite */
    /* the key's fields: key alone, or the fields of a composite key
     * (`key = [ "film_id", "category_id" ]`, a link table's): such an
     * entity is a hop in a path of links (films.film_categories.category)
     * and is checked unique on the combination, but no link reaches it
     * and its rows are no audience (no single field names a row) */
    const schema_field **keys;
    size_t nkeys;
    schema_field *fields;
    size_t nfields;
    schema_link *links; /* many-to-one links this entity declares */
    size_t nlinks;
    /* One-to-many links onto this entity: each is the many-to-one link
     * of another entity whose `reverse` is set (stores.orders is
     * orders.store: rows of reverse[i]->from whose via equals our key). */
    const schema_link **reverse;
    size_t nreverse;
    int line;
};

typedef struct schema {
    char *file; /* as loaded, for messages */
    schema_entity *entities;
    size_t nentities;
} schema;

/* Load path into s. Every error goes to d as file:line: message (unknown
 * type, unknown key, missing key/fields, link to an unknown entity, via
 * not a field, duplicate names, reverse clashing with a field or a link,
 * ...) with "did you mean" suggestions. Returns 0 when none was found; s
 * must be freed with schema_free either way (entities without errors are
 * kept). */
int schema_load(schema *s, const char *path, diag *d);
/* The same from text in memory; `file` names it in messages. */
int schema_load_string(schema *s, const char *text, const char *file, diag *d);
void schema_free(schema *s);

const schema_entity *schema_entity_find(const schema *s, const char *name);
const schema_field *schema_field_find(const schema_entity *e, const char *name);
/* A many-to-one link declared by e ("store" on orders). */
const schema_link *schema_link_find(const schema_entity *e, const char *name);
/* A one-to-many link onto e by its reverse name ("orders" on profiles):
 * the returned link is orders.profile (from = orders, to = profiles). */
const schema_link *schema_reverse_find(const schema_entity *e, const char *name);

/* The nearest existing name to a misspelt one among e's fields, links and
 * reverse links (or the schema's entities when e is NULL), or NULL. */
const char *schema_suggest(const schema *s, const schema_entity *e, const char *name);

/* "string", "int", ... for a field type; "duration", "null" too. */
const char *schema_type_name(baton_type t);
/* "timestamp" → BATON_T_TIMESTAMP; 0 and *out, or -1 when unknown. */
int schema_type_parse(const char *name, baton_type *out);

#endif
