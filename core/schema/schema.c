#include "schema/schema.h"

#include <ctype.h>
#include <libconfig.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "base/mem.h"
#include "base/suggest.h"

static const struct {
    const char *name;
    baton_type type;
} type_names[] = {
    {"string", BATON_T_STRING}, {"int", BATON_T_INT},   {"float", BATON_T_FLOAT},
    {"bool", BATON_T_BOOL},     {"date", BATON_T_DATE}, {"timestamp", BATON_T_TIMESTAMP},
};
#define NTYPES (sizeof type_names / sizeof type_names[0])

const char *schema_type_name(baton_type t)
{
    for (size_t i = 0; i < NTYPES; i++)
        if (type_names[i].type == t)
            return type_names[i].name;
    if (t == BATON_T_DURATION)
        return "duration";
    if (t == BATON_T_NULL)
        return "null";
    return "unknown";
}

int schema_type_parse(const char *name, baton_type *out)
{
    for (size_t i = 0; i < NTYPES; i++)
        if (strcmp(type_names[i].name, name) == 0) {
            *out = type_names[i].type;
            return 0;
        }
    return -1;
}

const schema_entity *schema_entity_find(const schema *s, const char *name)
{
    for (size_t i = 0; s && i < s->nentities; i++)
        if (strcmp(s->entities[i].name, name) == 0)
            return &s->entities[i];
    return NULL;
}

const schema_field *schema_field_find(const schema_entity *e, const char *name)
{
    for (size_t i = 0; e && i < e->nfields; i++)
        if (strcmp(e->fields[i].name, name) == 0)
            return &e->fields[i];
    return NULL;
}

const schema_link *schema_link_find(const schema_entity *e, const char *name)
{
    for (size_t i = 0; e && i < e->nlinks; i++)
        if (strcmp(e->links[i].name, name) == 0)
            return &e->links[i];
    return NULL;
}

const schema_link *schema_reverse_find(const schema_entity *e, const char *name)
{
    for (size_t i = 0; e && i < e->nreverse; i++)
        if (strcmp(e->reverse[i]->reverse, name) == 0)
            return e->reverse[i];
    return NULL;
}

const char *schema_suggest(const schema *s, const schema_entity *e, const char *name)
{
    size_t n = 0;
    const char **cands;
    if (!e) {
        cands = xmalloc((s ? s->nentities : 0) * sizeof *cands + 1);
        for (size_t i = 0; s && i < s->nentities; i++)
            cands[n++] = s->entities[i].name;
    } else {
        cands = xmalloc((e->nfields + e->nlinks + e->nreverse) * sizeof *cands + 1);
        for (size_t i = 0; i < e->nfields; i++)
            cands[n++] = e->fields[i].name;
        for (size_t i = 0; i < e->nlinks; i++)
            cands[n++] = e->links[i].name;
        for (size_t i = 0; i < e->nreverse; i++)
            cands[n++] = e->reverse[i]->reverse;
    }
    const char *best = NULL;
    for (size_t i = 0; i < n && !best; i++)
        if (strcasecmp(cands[i], name) == 0)
            best = cands[i];
    if (!best)
        best = suggest_nearest(name, cands, n);
    free(cands);
    return best;
}

/* --- loading -------------------------------------------------------- */

typedef struct loader {
    schema *s;
    diag *d;
    const char *file;
} loader;

static int line_of(const config_setting_t *st)
{
    return (int)config_setting_source_line(st);
}

static const char *file_of(const loader *L, const config_setting_t *st)
{
    const char *f = config_setting_source_file(st);
    return f ? f : L->file;
}

static int is_ident(const char *s)
{
    if (!s || !(isalpha((unsigned char)*s) || *s == '_'))
        return 0;
    for (s++; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_'))
            return 0;
    return 1;
}

static void unknown_key(loader *L, const config_setting_t *st, const char *where,
                        const char *const *known, size_t nknown)
{
    const char *name = config_setting_name(st);
    const char *best = suggest_nearest(name, known, nknown);
    buf list;
    buf_init(&list);
    for (size_t i = 0; i < nknown; i++)
        buf_addf(&list, "%s%s", i ? ", " : "", known[i]);
    if (best)
        diag_error(L->d, file_of(L, st), line_of(st),
                   "unknown setting '%s' in %s (did you mean '%s'?)", name, where, best);
    else
        diag_error(L->d, file_of(L, st), line_of(st), "unknown setting '%s' in %s (known: %s)",
                   name, where, list.data);
    buf_free(&list);
}

/* A string setting, or NULL with an error when it is there but not a
 * string. */
static const char *get_string(loader *L, const config_setting_t *group, const char *key,
                              const char *where)
{
    const config_setting_t *st = config_setting_get_member(group, key);
    if (!st)
        return NULL;
    if (config_setting_type(st) != CONFIG_TYPE_STRING) {
        diag_error(L->d, file_of(L, st), line_of(st), "%s.%s: expected a string", where, key);
        return NULL;
    }
    return config_setting_get_string(st);
}

static void load_fields(loader *L, schema_entity *e, const config_setting_t *fields)
{
    int n = config_setting_length(fields);
    e->fields = xcalloc((size_t)n + 1, sizeof *e->fields);
    for (int i = 0; i < n; i++) {
        const config_setting_t *f = config_setting_get_elem(fields, (unsigned)i);
        const char *name = config_setting_name(f);
        if (!is_ident(name)) {
            diag_error(L->d, file_of(L, f), line_of(f),
                       "%s: field name '%s' is not a name (letters, digits, _)", e->name, name);
            continue;
        }
        if (config_setting_type(f) != CONFIG_TYPE_STRING) {
            diag_error(L->d, file_of(L, f), line_of(f),
                       "%s.%s: expected a type name: string, int, float, bool, date or timestamp",
                       e->name, name);
            continue;
        }
        const char *tname = config_setting_get_string(f);
        baton_type t;
        if (schema_type_parse(tname, &t) != 0) {
            const char *cands[NTYPES];
            for (size_t k = 0; k < NTYPES; k++)
                cands[k] = type_names[k].name;
            const char *best = suggest_nearest(tname, cands, NTYPES);
            if (best)
                diag_error(L->d, file_of(L, f), line_of(f),
                           "%s.%s: unknown type '%s' (did you mean '%s'?)", e->name, name, tname,
                           best);
            else
                diag_error(L->d, file_of(L, f), line_of(f),
                           "%s.%s: unknown type '%s' (expected string, int, float, bool, date or "
                           "timestamp)",
                           e->name, name, tname);
            continue;
        }
        schema_field *sf = &e->fields[e->nfields++];
        sf->name = xstrdup(name);
        sf->type = t;
        sf->line = line_of(f);
    }
}

/* The key field named name, or an error at st with "did you mean". */
static const schema_field *key_field(loader *L, schema_entity *e, const config_setting_t *st,
                                     const char *name)
{
    const schema_field *f = schema_field_find(e, name);
    if (!f) {
        const char *best = schema_suggest(L->s, e, name);
        if (best)
            diag_error(L->d, file_of(L, st), line_of(st),
                       "%s.key: '%s' is not a field of %s (did you mean '%s'?)", e->name, name,
                       e->name, best);
        else
            diag_error(L->d, file_of(L, st), line_of(st), "%s.key: '%s' is not a field of %s",
                       e->name, name, e->name);
    }
    return f;
}

/* key = [ "film_id", "category_id" ]: two fields or more, each once; one
 * field in brackets is that field's key. */
static void load_composite_key(loader *L, schema_entity *e, const config_setting_t *kst)
{
    int n = config_setting_length(kst);
    e->keys = xcalloc((size_t)n + 1, sizeof *e->keys);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        const config_setting_t *it = config_setting_get_elem(kst, (unsigned)i);
        if (config_setting_type(it) != CONFIG_TYPE_STRING) {
            diag_error(L->d, file_of(L, kst), line_of(kst),
                       "%s.key: expected field names, e.g. key = [ \"film_id\", \"category_id\" ]",
                       e->name);
            bad = 1;
            continue;
        }
        const schema_field *f = key_field(L, e, kst, config_setting_get_string(it));
        for (size_t j = 0; f && j < e->nkeys; j++)
            if (e->keys[j] == f) {
                diag_error(L->d, file_of(L, kst), line_of(kst), "%s.key: '%s' is named twice",
                           e->name, f->name);
                f = NULL;
            }
        if (f)
            e->keys[e->nkeys++] = f;
        else
            bad = 1;
    }
    if (n == 0) {
        diag_error(L->d, file_of(L, kst), line_of(kst), "%s.key: an empty list names no field",
                   e->name);
        bad = 1;
    }
    if (bad)
        e->nkeys = 0;
    else if (e->nkeys == 1)
        e->key = e->keys[0];
    else if (!strcmp(e->name, "profiles"))
        diag_error(L->d, file_of(L, kst), line_of(kst),
                   "profiles.key: a profile is named by one field (messages, journeys and links "
                   "reach it by it), not by %zu",
                   e->nkeys);
}

static void load_entity(loader *L, schema_entity *e, const config_setting_t *g)
{
    static const char *const known[] = {"key", "table", "fields", "links"};
    e->name = xstrdup(config_setting_name(g));
    e->line = line_of(g);
    if (!is_ident(e->name))
        diag_error(L->d, file_of(L, g), e->line,
                   "entity name '%s' is not a name (letters, digits, _)", e->name);
    if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
        diag_error(L->d, file_of(L, g), e->line,
                   "entity %s: expected a group { key = ...; fields: {...}; }", e->name);
        e->table = xstrdup(e->name);
        return;
    }
    int n = config_setting_length(g);
    for (int i = 0; i < n; i++) {
        const config_setting_t *st = config_setting_get_elem(g, (unsigned)i);
        const char *k = config_setting_name(st);
        int ok = 0;
        for (size_t j = 0; j < 4; j++)
            ok |= strcmp(k, known[j]) == 0;
        if (!ok) {
            char *where = xasprintf("entity %s", e->name);
            unknown_key(L, st, where, known, 4);
            free(where);
        }
    }
    const char *table = get_string(L, g, "table", e->name);
    if (table && !*table)
        diag_error(L->d, file_of(L, g), e->line, "%s.table: empty table name", e->name);
    e->table = xstrdup(table && *table ? table : e->name);

    const config_setting_t *fields = config_setting_get_member(g, "fields");
    if (!fields) {
        diag_error(L->d, file_of(L, g), e->line, "entity %s: missing 'fields'", e->name);
        e->fields = xcalloc(1, sizeof *e->fields);
    } else if (config_setting_type(fields) != CONFIG_TYPE_GROUP) {
        diag_error(L->d, file_of(L, fields), line_of(fields),
                   "%s.fields: expected a group { name = \"type\"; ... }", e->name);
        e->fields = xcalloc(1, sizeof *e->fields);
    } else {
        load_fields(L, e, fields);
    }

    const config_setting_t *kst = config_setting_get_member(g, "key");
    if (kst && (config_setting_type(kst) == CONFIG_TYPE_ARRAY ||
                config_setting_type(kst) == CONFIG_TYPE_LIST)) {
        load_composite_key(L, e, kst);
        return;
    }
    const char *key = get_string(L, g, "key", e->name);
    if (!kst) {
        diag_error(L->d, file_of(L, g), e->line,
                   "entity %s: missing 'key' (the field that "
                   "identifies a row)",
                   e->name);
    } else if (key) {
        e->key = key_field(L, e, kst, key);
        if (e->key) {
            e->keys = xcalloc(2, sizeof *e->keys);
            e->keys[e->nkeys++] = e->key;
        }
    }
}

static void load_links(loader *L, schema_entity *e, const config_setting_t *links)
{
    static const char *const known[] = {"to", "via", "reverse"};
    int n = config_setting_length(links);
    e->links = xcalloc((size_t)n + 1, sizeof *e->links);
    for (int i = 0; i < n; i++) {
        const config_setting_t *lg = config_setting_get_elem(links, (unsigned)i);
        const char *name = config_setting_name(lg);
        const char *file = file_of(L, lg);
        int line = line_of(lg);
        char *where = xasprintf("%s.links.%s", e->name, name);
        int bad = 0;
        if (!is_ident(name)) {
            diag_error(L->d, file, line, "%s: link name '%s' is not a name", e->name, name);
            bad = 1;
        }
        if (config_setting_type(lg) != CONFIG_TYPE_GROUP) {
            diag_error(L->d, file, line,
                       "%s: expected a group { to = \"entity\"; via = \"field\"; }", where);
            free(where);
            continue;
        }
        int m = config_setting_length(lg);
        for (int j = 0; j < m; j++) {
            const config_setting_t *st = config_setting_get_elem(lg, (unsigned)j);
            const char *k = config_setting_name(st);
            if (strcmp(k, "to") && strcmp(k, "via") && strcmp(k, "reverse")) {
                unknown_key(L, st, where, known, 3);
                bad = 1;
            }
        }
        const char *to = get_string(L, lg, "to", where);
        const char *via = get_string(L, lg, "via", where);
        const char *rev = get_string(L, lg, "reverse", where);
        if (!config_setting_get_member(lg, "to")) {
            diag_error(L->d, file, line, "%s: missing 'to' (the entity it links to)", where);
            bad = 1;
        }
        if (!config_setting_get_member(lg, "via")) {
            diag_error(L->d, file, line, "%s: missing 'via' (the field holding the target's key)",
                       where);
            bad = 1;
        }
        schema_entity *target = to ? (schema_entity *)schema_entity_find(L->s, to) : NULL;
        if (to && !target) {
            const char *best = schema_suggest(L->s, NULL, to);
            if (best)
                diag_error(L->d, file, line, "%s: link to unknown entity '%s' (did you mean '%s'?)",
                           where, to, best);
            else
                diag_error(L->d, file, line, "%s: link to unknown entity '%s'", where, to);
            bad = 1;
        }
        const schema_field *vf = via ? schema_field_find(e, via) : NULL;
        if (via && !vf) {
            const char *best = schema_suggest(L->s, e, via);
            if (best)
                diag_error(L->d, file, line,
                           "%s: via '%s' is not a field of %s (did you mean '%s'?)", where, via,
                           e->name, best);
            else
                diag_error(L->d, file, line, "%s: via '%s' is not a field of %s", where, via,
                           e->name);
            bad = 1;
        }
        if (vf && target && target->key && vf->type != target->key->type) {
            diag_error(L->d, file, line, "%s: via %s.%s is a %s but %s.%s (the key) is a %s", where,
                       e->name, vf->name, schema_type_name(vf->type), target->name,
                       target->key->name, schema_type_name(target->key->type));
            bad = 1;
        }
        if (target && !target->key && target->nkeys > 1) {
            diag_error(L->d, file, line,
                       "%s: links to %s, whose key is composite (%zu fields): a link reaches one "
                       "row by one field; declare the links on %s instead (its fields that hold "
                       "the other entities' keys), and reach it by their reverse",
                       where, target->name, target->nkeys, target->name);
            bad = 1;
        } else if (target && !target->key)
            bad = 1; /* reported on the target */
        if (name && schema_field_find(e, name)) {
            diag_error(L->d, file, line, "%s: link '%s' has the name of a field of %s", where, name,
                       e->name);
            bad = 1;
        }
        if (name && schema_link_find(e, name)) {
            diag_error(L->d, file, line, "%s: duplicate link '%s'", where, name);
            bad = 1;
        }
        if (rev && !is_ident(rev)) {
            diag_error(L->d, file, line, "%s: reverse '%s' is not a name", where, rev);
            bad = 1;
        }
        if (!bad) {
            schema_link *l = &e->links[e->nlinks++];
            l->name = xstrdup(name);
            l->from = e;
            l->to = target;
            l->via = vf;
            l->reverse = rev ? xstrdup(rev) : NULL;
            l->line = line;
        }
        free(where);
    }
}

/* Reverse links need every entity's links, and clash checks need every
 * target's fields, links and earlier reverse names. */
static void index_reverse(loader *L)
{
    schema *s = L->s;
    for (size_t i = 0; i < s->nentities; i++) {
        schema_entity *e = &s->entities[i];
        for (size_t j = 0; j < e->nlinks; j++) {
            schema_link *l = &e->links[j];
            if (!l->reverse)
                continue;
            schema_entity *t = l->to;
            const char *clash = schema_field_find(t, l->reverse)     ? "a field"
                                : schema_link_find(t, l->reverse)    ? "a link"
                                : schema_reverse_find(t, l->reverse) ? "another reverse link"
                                                                     : NULL;
            if (clash) {
                diag_error(L->d, L->file, l->line, "%s.links.%s: reverse '%s' is already %s of %s",
                           e->name, l->name, l->reverse, clash, t->name);
                free(l->reverse);
                l->reverse = NULL;
                continue;
            }
            t->reverse = xrealloc(t->reverse, (t->nreverse + 1) * sizeof *t->reverse);
            t->reverse[t->nreverse++] = l;
        }
    }
}

static void load_root(loader *L, config_t *cfg)
{
    const config_setting_t *root = config_root_setting(cfg);
    int n = config_setting_length(root);
    for (int i = 0; i < n; i++) {
        const config_setting_t *st = config_setting_get_elem(root, (unsigned)i);
        if (strcmp(config_setting_name(st), "entities") != 0) {
            static const char *const known[] = {"entities"};
            unknown_key(L, st, "the schema", known, 1);
        }
    }
    const config_setting_t *ents = config_lookup(cfg, "entities");
    if (!ents) {
        diag_error(L->d, L->file, 0, "missing 'entities' (the schema's entities: { ... })");
        return;
    }
    if (config_setting_type(ents) != CONFIG_TYPE_GROUP) {
        diag_error(L->d, file_of(L, ents), line_of(ents),
                   "entities: expected a group { name: { key = ...; fields: {...}; }; }");
        return;
    }
    int ne = config_setting_length(ents);
    L->s->entities = xcalloc((size_t)ne + 1, sizeof *L->s->entities);
    for (int i = 0; i < ne; i++) {
        const config_setting_t *g = config_setting_get_elem(ents, (unsigned)i);
        load_entity(L, &L->s->entities[L->s->nentities++], g);
    }
    /* links after every entity exists (a link may point forward) */
    for (int i = 0; i < ne; i++) {
        const config_setting_t *g = config_setting_get_elem(ents, (unsigned)i);
        schema_entity *e = &L->s->entities[i];
        const config_setting_t *links = config_setting_type(g) == CONFIG_TYPE_GROUP
                                            ? config_setting_get_member(g, "links")
                                            : NULL;
        if (!links) {
            e->links = xcalloc(1, sizeof *e->links);
            continue;
        }
        if (config_setting_type(links) != CONFIG_TYPE_GROUP) {
            diag_error(L->d, file_of(L, links), line_of(links),
                       "%s.links: expected a group { name = { to = ...; via = ...; }; }", e->name);
            e->links = xcalloc(1, sizeof *e->links);
            continue;
        }
        load_links(L, e, links);
    }
    index_reverse(L);
}

static int load_cfg(schema *s, config_t *cfg, int ok, const char *file, diag *d)
{
    size_t before = d->errors;
    memset(s, 0, sizeof *s);
    s->file = xstrdup(file);
    if (!ok) {
        const char *ef = config_error_file(cfg);
        if (config_error_type(cfg) == CONFIG_ERR_FILE_IO)
            diag_error(d, file, 0, "cannot read the schema: %s", config_error_text(cfg));
        else
            diag_error(d, ef ? ef : file, config_error_line(cfg), "%s", config_error_text(cfg));
        return -1;
    }
    loader L = {s, d, file};
    load_root(&L, cfg);
    return d->errors == before ? 0 : -1;
}

int schema_load(schema *s, const char *path, diag *d)
{
    config_t cfg;
    config_init(&cfg);
    int ok = config_read_file(&cfg, path) == CONFIG_TRUE;
    int rc = load_cfg(s, &cfg, ok, path, d);
    config_destroy(&cfg);
    return rc;
}

int schema_load_string(schema *s, const char *text, const char *file, diag *d)
{
    config_t cfg;
    config_init(&cfg);
    int ok = config_read_string(&cfg, text) == CONFIG_TRUE;
    int rc = load_cfg(s, &cfg, ok, file, d);
    config_destroy(&cfg);
    return rc;
}

void schema_free(schema *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nentities; i++) {
        schema_entity *e = &s->entities[i];
        for (size_t j = 0; j < e->nfields; j++)
            free(e->fields[j].name);
        for (size_t j = 0; j < e->nlinks; j++) {
            free(e->links[j].name);
            free(e->links[j].reverse);
        }
        free(e->fields);
        free(e->keys);
        free(e->links);
        free(e->reverse);
        free(e->name);
        free(e->table);
    }
    free(s->entities);
    free(s->file);
    memset(s, 0, sizeof *s);
}
