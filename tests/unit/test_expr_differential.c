/* Differential test: generated expressions over generated rows (NULLs,
 * unicode, negative numbers, empty strings, time zone names), each
 * evaluated in memory and compiled to SQL run by SQLite; the two answers
 * must be the same on every row (hour(), weekday() and today() in a zone
 * included: baton_tz_local registered as source_sqlite does). Seeded and deterministic: a failure
 * prints the seed, the expression, the SQL and the row. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "lang/expr.h"
#include "base/record.h"
#include "support/expr_fixture.h"
#include "base/timefmt.h"
#include "base/zone.h"

#define NPROFILES 60
#define NSTORES 6
#define NORDERS 150
#define NLINES 300
#define NTAB 4
#define NEXPR_PROFILES 7000
#define NEXPR_ORDERS 3500
#define NEXPR_STORED 1200 /* per stored form */

static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 2685821657736338717ULL;
}
static int pick(int n)
{
    return (int)(rnd() % (uint64_t)n);
}
static int chance(int pct)
{
    return pick(100) < pct;
}

/* --- the data -------------------------------------------------------- */

typedef struct trow {
    const schema_entity *ent;
    record *rec;   /* as the database stores it this round */
    record *typed; /* the values, typed (dates and timestamps as such) */
} trow;

typedef struct table {
    const schema_entity *ent;
    trow *rows;
    size_t n;
} table;

static schema S;
static table T[NTAB]; /* profiles, orders, stores, lines */
static sqlite3 *db;

static const char *const str_pool[] = {"", "a", "Paris", "paris", "PARIS", "é", "É", "Émile",
                                       "straße", "ÿŸ", "日本", " pad ", "x'y", "gold", "silver",
                                       "%_", "Zürich", "ÅLAND", "ĳĲ ŁŃ", "tab\tnl\n", "-1", "12",
                                       /* zones, for hour(t, city) and the like; one unknown */
                                       "Europe/Paris", "America/New_York", "Australia/Lord_Howe",
                                       "Asia/Kolkata", "UTC", "Mars/Olympus_Mons"};
#define NSTR (sizeof str_pool / sizeof str_pool[0])

static table *table_of(const schema_entity *e)
{
    for (int i = 0; i < NTAB; i++)
        if (T[i].ent == e)
            return &T[i];
    return NULL;
}

static int64_t rand_ts(void)
{
    return 1546300800LL + (int64_t)(rnd() % (uint64_t)(9LL * 365 * 86400)); /* 2019..2028 */
}
static int64_t rand_date(void)
{
    return -7300 + (int64_t)pick(22000);
} /* 1950..2030 */

static void set_value(record *r, const char *name, baton_type t)
{
    baton_value v = {.type = t};
    switch (t) {
    case BATON_T_STRING: {
        const char *s = str_pool[pick(NSTR)];
        v.v.s.ptr = s;
        v.v.s.len = strlen(s);
        break;
    }
    case BATON_T_INT: v.v.i = pick(101) - 50; break;
    case BATON_T_FLOAT: v.v.f = (pick(4001) - 2000) / 8.0; break;
    case BATON_T_BOOL: v.v.b = pick(2); break;
    case BATON_T_DATE: v.v.date = rand_date(); break;
    case BATON_T_TIMESTAMP: v.v.ts = rand_ts(); break;
    default: return;
    }
    record_set(r, name, &v);
}

static void fill_table(table *t, size_t n, const char *prefix)
{
    t->rows = calloc(n, sizeof *t->rows);
    t->n = n;
    const schema_entity *e = t->ent;
    for (size_t i = 0; i < n; i++) {
        record *r = record_new();
        for (size_t f = 0; f < e->nfields; f++) {
            const schema_field *sf = &e->fields[f];
            if (sf == e->key) {
                char id[32];
                snprintf(id, sizeof id, "%s%zu", prefix, i + 1);
                record_set_string(r, sf->name, id);
                continue;
            }
            int is_link = 0;
            for (size_t l = 0; l < e->nlinks; l++)
                if (e->links[l].via == sf) {
                    is_link = 1;
                    if (chance(8))
                        break; /* NULL: no linked row */
                    const schema_entity *to = e->links[l].to;
                    char id[32];
                    size_t nto = to == T[0].ent ? NPROFILES : to == T[1].ent ? NORDERS : NSTORES;
                    const char *tp = to == T[0].ent ? "p" : to == T[1].ent ? "o" : "s";
                    if (chance(4))
                        snprintf(id, sizeof id, "%sx", tp); /* dangling */
                    else
                        snprintf(id, sizeof id, "%s%d", tp, pick((int)nto) + 1);
                    record_set_string(r, sf->name, id);
                }
            if (is_link || chance(15))
                continue; /* NULL */
            set_value(r, sf->name, sf->type);
        }
        t->rows[i].ent = e;
        t->rows[i].rec = r;
        t->rows[i].typed = r;
    }
}

/* --- stored forms of dates and timestamps -------------------------------- */

/* How this round's database writes dates and timestamps: FORMATS.md's
 * canonical text, or what imported data holds. */
enum { SF_CANON, SF_SPACE, SF_FRAC, SF_OFFSET, SF_EPOCH, SF_MIXED, NSF };
static const char *const sf_names[] = {
    "canonical", "space (SQLite datetime())", "fractional", "offset", "epoch seconds", "mixed"};

/* ts as local text at offset off seconds, with a suffix (Z, +02:00...). */
static void ts_text(int64_t ts, int off, int sep, const char *frac, const char *suffix, char *out,
                    size_t n)
{
    char base[21];
    timestamp_format(ts + off, base);
    base[10] = (char)sep;
    base[19] = '\0'; /* drop the Z */
    snprintf(out, n, "%s%s%s", base, frac, suffix);
}

static void stored_of(const baton_value *v, int form, baton_value *out, char *tmp, size_t n)
{
    static const int offs[] = {7200, -19800, 0, 50400, -43200, 3600};
    if (form == SF_MIXED)
        form = pick(SF_MIXED);
    int is_date = v->type == BATON_T_DATE;
    /* a date column holding a time of day keeps its UTC day */
    int64_t ts = is_date ? v->v.date * 86400 + (form == SF_CANON ? 0 : pick(86400)) : v->v.ts;
    char frac[8];
    snprintf(frac, sizeof frac, ".%03d", pick(1000));
    switch (form) {
    case SF_CANON:
        if (is_date)
            date_format(v->v.date, tmp);
        else
            timestamp_format(ts, tmp);
        break;
    case SF_SPACE:
        if (is_date)
            ts = v->v.date * 86400; /* 2024-01-31 00:00:00 */
        ts_text(ts, 0, ' ', "", "", tmp, n);
        break;
    case SF_FRAC: ts_text(ts, 0, pick(2) ? 'T' : ' ', frac, pick(2) ? "Z" : "", tmp, n); break;
    case SF_OFFSET: {
        int off = offs[pick(6)];
        char sfx[16];
        snprintf(sfx, sizeof sfx, "%c%02d:%02d", off < 0 ? '-' : '+', abs(off) / 3600,
                 abs(off) / 60 % 60);
        ts_text(ts, off, 'T', pick(3) ? "" : frac, sfx, tmp, n);
        break;
    }
    default:
        out->type = BATON_T_INT;
        out->v.i = ts;
        return;
    }
    out->type = BATON_T_STRING;
    out->v.s.ptr = tmp;
    out->v.s.len = strlen(tmp);
}

/* Write every table's dates and timestamps in `form`; with any form but
 * the canonical one (or when `declare` says so), the schema says the
 * columns hold other forms, as the campaign engine's sample finds. */
static void store_as(int form, int declare)
{
    for (int ti = 0; ti < NTAB; ti++) {
        table *t = &T[ti];
        for (size_t i = 0; i < t->n; i++) {
            trow *r = &t->rows[i];
            if (r->rec != r->typed)
                record_free(r->rec);
            r->rec = record_new();
            for (size_t f = 0; f < r->typed->n; f++) {
                const baton_value *v = &r->typed->v[f].value;
                char tmp[64];
                baton_value sv;
                if (v->type == BATON_T_DATE || v->type == BATON_T_TIMESTAMP)
                    stored_of(v, form, &sv, tmp, sizeof tmp);
                else
                    sv = *v;
                record_set(r->rec, r->typed->v[f].name, &sv);
            }
        }
        for (size_t f = 0; f < t->ent->nfields; f++) {
            schema_field *sf = (schema_field *)&t->ent->fields[f];
            if (sf->type == BATON_T_DATE || sf->type == BATON_T_TIMESTAMP)
                sf->stored_any = form != SF_CANON || declare;
        }
    }
}

static void bind_value(sqlite3_stmt *st, int i, const baton_value *v)
{
    char tmp[32];
    switch (v->type) {
    case BATON_T_NULL: sqlite3_bind_null(st, i); break;
    case BATON_T_BOOL: sqlite3_bind_int(st, i, v->v.b != 0); break;
    case BATON_T_INT: sqlite3_bind_int64(st, i, v->v.i); break;
    case BATON_T_DURATION: sqlite3_bind_int64(st, i, v->v.dur); break;
    case BATON_T_FLOAT: sqlite3_bind_double(st, i, v->v.f); break;
    case BATON_T_STRING:
        sqlite3_bind_text(st, i, v->v.s.ptr, (int)v->v.s.len, SQLITE_TRANSIENT);
        break;
    case BATON_T_DATE:
        date_format(v->v.date, tmp);
        sqlite3_bind_text(st, i, tmp, -1, SQLITE_TRANSIENT);
        break;
    case BATON_T_TIMESTAMP:
        timestamp_format(v->v.ts, tmp);
        sqlite3_bind_text(st, i, tmp, -1, SQLITE_TRANSIENT);
        break;
    }
}

/* As source_sqlite registers it (over host->zone_local). */
static void fn_tz_local(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    const char *zname = (const char *)sqlite3_value_text(argv[1]);
    int64_t local;
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL || !zname ||
        zone_local(zname, (int64_t)sqlite3_value_int64(argv[0]), &local) != 0) {
        sqlite3_result_null(ctx);
        return;
    }
    sqlite3_result_int64(ctx, (sqlite3_int64)local);
}

static void create_db(int indexed)
{
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    sqlite3_create_function(db, "baton_tz_local", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
                            fn_tz_local, NULL, NULL);
    for (int ti = 0; ti < NTAB; ti++) {
        const schema_entity *e = T[ti].ent;
        buf b;
        buf_init(&b);
        buf_addf(&b, "CREATE TABLE \"%s\" (", e->table);
        for (size_t f = 0; f < e->nfields; f++) {
            /* dates and timestamps as imported schemas declare them
             * (NUMERIC affinity: epoch integers stay integers) */
            const char *ty = e->fields[f].type == BATON_T_INT         ? "INTEGER"
                             : e->fields[f].type == BATON_T_FLOAT     ? "REAL"
                             : e->fields[f].type == BATON_T_BOOL      ? "INTEGER"
                             : e->fields[f].type == BATON_T_TIMESTAMP ? "TIMESTAMP"
                             : e->fields[f].type == BATON_T_DATE      ? "DATE"
                                                                      : "TEXT";
            buf_addf(&b, "%s\"%s\" %s%s", f ? ", " : "", e->fields[f].name, ty,
                     &e->fields[f] == e->key ? " PRIMARY KEY" : "");
        }
        buf_adds(&b, ")");
        assert_int_equal(sqlite3_exec(db, b.data, NULL, NULL, NULL), SQLITE_OK);
        buf_reset(&b);
        buf_addf(&b, "INSERT INTO \"%s\" VALUES (", e->table);
        for (size_t f = 0; f < e->nfields; f++)
            buf_addf(&b, "%s?", f ? ", " : "");
        buf_adds(&b, ")");
        sqlite3_stmt *st;
        assert_int_equal(sqlite3_prepare_v2(db, b.data, -1, &st, NULL), SQLITE_OK);
        for (size_t i = 0; i < T[ti].n; i++) {
            for (size_t f = 0; f < e->nfields; f++) {
                const baton_value *v = record_find(T[ti].rows[i].rec, e->fields[f].name);
                baton_value null = {.type = BATON_T_NULL};
                bind_value(st, (int)f + 1, v ? v : &null);
            }
            assert_int_equal(sqlite3_step(st), SQLITE_DONE);
            sqlite3_reset(st);
        }
        sqlite3_finalize(st);
        buf_free(&b);
    }
    if (indexed)
        assert_int_equal(sqlite3_exec(db,
                                      "CREATE INDEX o_p ON orders(profile_id);"
                                      "CREATE INDEX o_s ON orders(store_id);"
                                      "CREATE INDEX l_o ON lines(order_id);",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
}

/* --- the in-memory env --------------------------------------------------- */

typedef struct ctx {
    const trow *top;
    const void ***pool; /* row lists handed out during one evaluation */
    int npool, cap;
} ctx;

static const trow *find_row(const schema_entity *e, const baton_value *key)
{
    table *t = table_of(e);
    for (size_t i = 0; i < t->n; i++) {
        const baton_value *k = record_find(t->rows[i].rec, e->key->name);
        if (k && k->v.s.len == key->v.s.len && memcmp(k->v.s.ptr, key->v.s.ptr, k->v.s.len) == 0)
            return &t->rows[i];
    }
    return NULL;
}

static const trow *follow(const trow *r, const schema_link *const *hops, size_t nhops)
{
    for (size_t i = 0; i < nhops && r; i++) {
        const baton_value *v = record_find(r->rec, hops[i]->via->name);
        r = v ? find_row(hops[i]->to, v) : NULL;
    }
    return r;
}

static int env_get(void *ud, const void *row, const expr_ref *ref, baton_value *out, char *err,
                   size_t errlen)
{
    ctx *c = ud;
    const trow *r = follow(row ? row : c->top, ref->hops, ref->nhops);
    const baton_value *v = r ? record_find(r->rec, ref->sfield->name) : NULL;
    if (!v)
        return 1;
    *out = *v;
    /* as the journey engine reads a row of the source */
    expr_value_stored(out, ref->sfield->type);
    return 0;
}

static int env_rows(void *ud, const void *row, const expr_ref *ref, const void *const **rows,
                    size_t *n, char *err, size_t errlen)
{
    ctx *c = ud;
    *rows = NULL;
    *n = 0;
    const trow *r = follow(row ? row : c->top, ref->hops, ref->nhops);
    const baton_value *key = r ? record_find(r->rec, ref->rows->to->key->name) : NULL;
    if (!key)
        return 0;
    table *t = table_of(ref->rows->from);
    const void **list = calloc(t->n + 1, sizeof *list);
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++) {
        const baton_value *v = record_find(t->rows[i].rec, ref->rows->via->name);
        if (v && v->v.s.len == key->v.s.len && memcmp(v->v.s.ptr, key->v.s.ptr, v->v.s.len) == 0)
            list[k++] = &t->rows[i];
    }
    if (c->npool == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->pool = realloc(c->pool, (size_t)c->cap * sizeof *c->pool);
    }
    c->pool[c->npool++] = list;
    *rows = (const void *const *)list;
    *n = k;
    return 0;
}

/* --- the generator ----------------------------------------------------------- */

enum { TB = 0, TI, TF, TS_, TT, TD, TU, NT }; /* bool int float string ts date duration */

typedef struct field {
    const char *name;
    int t;
} field;

typedef struct gctx {
    const field *fields;
    size_t nfields;
    const char *const *rows; /* one-to-many links from here */
    size_t nrows;
    int ent; /* 0 profiles, 1 orders, 3 lines */
} gctx;

static const field pfields[] = {
    {"first_name", TS_}, {"city", TS_},      {"tier", TS_},      {"email", TS_},
    {"id", TS_},         {"visits", TI},     {"score", TF},      {"consent_email", TB},
    {"consent_sms", TB}, {"birth_date", TD}, {"created_at", TT},
};
static const field ofields[] = {
    {"id", TS_},
    {"store_id", TS_},
    {"store.city", TS_},
    {"store.name", TS_},
    {"profile.tier", TS_},
    {"profile.first_name", TS_},
    {"items", TI},
    {"profile.visits", TI},
    {"amount", TF},
    {"profile.score", TF},
    {"profile.consent_email", TB},
    {"profile.birth_date", TD},
    {"created_at", TT},
    {"profile.created_at", TT},
};
/* order lines: aggregates over two one-to-many links (orders.lines) */
static const field lfields[] = {
    {"id", TS_},
    {"sku", TS_},
    {"qty", TI},
    {"price", TF},
    {"shipped_at", TT},
    {"order.amount", TF},
    {"order.items", TI},
    {"order.created_at", TT},
    {"order.profile.tier", TS_},
    {"order.store.city", TS_},
};
static const gctx GL = {lfields, sizeof lfields / sizeof *lfields, NULL, 0, 3};
static const char *const prows[] = {"orders"};
static const char *const orows[] = {"store.orders", "profile.orders"};
static const gctx GP = {pfields, sizeof pfields / sizeof *pfields, prows, 1, 0};
static const gctx GO = {ofields, sizeof ofields / sizeof *ofields, orows, 2, 1};

static void gen(buf *b, int t, int d, const gctx *g);

static int field_of(const gctx *g, int t, const char **name)
{
    int cand[32], n = 0;
    for (size_t i = 0; i < g->nfields; i++)
        if (g->fields[i].t == t)
            cand[n++] = (int)i;
    if (!n)
        return 0;
    *name = g->fields[cand[pick(n)]].name;
    return 1;
}

static void lit(buf *b, int t)
{
    switch (t) {
    case TB: buf_adds(b, pick(2) ? "true" : "false"); break;
    case TI: {
        static const int v[] = {0, 1, 2, 3, 7, 10, 42, 100, 1000};
        buf_addf(b, "%d", v[pick(9)]);
        break;
    }
    case TF: {
        static const char *v[] = {"0.5", "2.5", "0.0", "10.125", "3.75", "100.0", "1e-3", "12.5"};
        buf_adds(b, v[pick(8)]);
        break;
    }
    case TS_: {
        const char *s = str_pool[pick(NSTR)];
        buf_addc(b, '\'');
        for (const char *p = s; *p; p++) {
            if (*p == '\'' || *p == '\\')
                buf_addc(b, '\\');
            if (*p == '\n')
                buf_adds(b, "\\n");
            else if (*p == '\t')
                buf_adds(b, "\\t");
            else
                buf_addc(b, *p);
        }
        buf_addc(b, '\'');
        break;
    }
    case TT: {
        char s[21];
        timestamp_format(rand_ts(), s);
        buf_addf(b, "timestamp('%s')", s);
        break;
    }
    case TD: {
        char s[11];
        date_format(rand_date(), s);
        buf_addf(b, "date('%s')", s);
        break;
    }
    case TU: {
        static const char *u = "smhdw";
        buf_addf(b, "%d%c", pick(300), u[pick(5)]);
        break;
    }
    }
}

/* A zone argument: a zone literal (check refuses unknown ones), or a
 * string field whose rows hold zones, other text and NULLs. */
static void zone_arg(buf *b, const gctx *g)
{
    static const char *const zones[] = {"Europe/Paris",        "America/New_York", "Asia/Kolkata",
                                        "Australia/Lord_Howe", "Pacific/Chatham",  "UTC"};
    const char *name;
    if (chance(60) && field_of(g, TS_, &name))
        buf_adds(b, name);
    else
        buf_addf(b, "'%s'", zones[pick(6)]);
}

static void leaf(buf *b, int t, const gctx *g)
{
    const char *name;
    if (chance(60) && field_of(g, t, &name)) {
        buf_adds(b, name);
        return;
    }
    if (t == TT && chance(30)) {
        buf_adds(b, "now()");
        return;
    }
    if (t == TD && chance(30)) {
        if (chance(50)) {
            buf_adds(b, "today(");
            zone_arg(b, g);
            buf_addc(b, ')');
        } else {
            buf_adds(b, "today()");
        }
        return;
    }
    lit(b, t);
}

static const char *rows_of(const gctx *g)
{
    return g->rows[pick((int)g->nrows)];
}

static void where(buf *b, int d)
{
    if (chance(60)) {
        buf_adds(b, " where ");
        gen(b, TB, d - 1, &GO);
    }
}

/* An aggregate over lines: through two one-to-many links (orders.lines
 * from a profile, profile.orders.lines or store.orders.lines from an
 * order), or one (lines of an order). */
static void gen_lines(buf *b, int t, int d, const gctx *g)
{
    static const char *const from_o[] = {"lines", "profile.orders.lines", "store.orders.lines"};
    const char *rows = g->ent == 0 ? "orders.lines" : from_o[pick(3)];
    int one = !strcmp(rows, "lines");
    switch (t) {
    case TB: buf_addf(b, "exists(%s", rows); break;
    case TI:
        if (chance(60))
            buf_addf(b, "count(%s", rows);
        else if (chance(50))
            buf_addf(b, "count(%s.shipped_at", rows);
        else
            buf_addf(b, "sum(%s.qty", rows);
        break;
    case TF: {
        static const char *fn[] = {"sum", "min", "max", "avg"};
        buf_addf(b, "%s(%s.%s", fn[pick(one ? 4 : 3)], rows, chance(70) ? "price" : "qty");
        break;
    }
    case TS_: buf_addf(b, "%s(%s.sku", chance(50) ? "min" : "max", rows); break;
    default: buf_addf(b, "%s(%s.shipped_at", chance(50) ? "min" : "max", rows); break;
    }
    if (chance(60)) {
        buf_adds(b, " where ");
        gen(b, TB, d - 1, &GL);
    }
    buf_addc(b, ')');
}

static void gen_agg(buf *b, int t, int d, const gctx *g)
{
    if (chance(30) && t != TU && t != TD) {
        gen_lines(b, t, d, g);
        return;
    }
    const char *rows = rows_of(g);
    switch (t) {
    case TB:
        buf_addf(b, "exists(%s", rows);
        where(b, d);
        buf_addc(b, ')');
        return;
    case TI:
        if (chance(70)) {
            buf_addf(b, "count(%s", rows);
        } else if (chance(50)) {
            buf_addf(b, "count(%s.%s", rows, chance(50) ? "amount" : "created_at");
        } else {
            buf_addf(b, "sum(%s.items", rows);
        }
        where(b, d);
        buf_addc(b, ')');
        return;
    case TF: {
        static const char *fn[] = {"sum", "avg", "min", "max"};
        buf_addf(b, "%s(%s.%s", fn[pick(4)], rows, chance(70) ? "amount" : "items");
        where(b, d);
        buf_addc(b, ')');
        return;
    }
    case TS_:
        buf_addf(b, "%s(%s.id", chance(50) ? "min" : "max", rows);
        where(b, d);
        buf_addc(b, ')');
        return;
    case TT:
        buf_addf(b, "%s(%s.created_at", chance(50) ? "min" : "max", rows);
        where(b, d);
        buf_addc(b, ')');
        return;
    default: leaf(b, t, g); return;
    }
}

static void binop(buf *b, int ta, const char *op, int tb, int d, const gctx *g)
{
    buf_addc(b, '(');
    gen(b, ta, d - 1, g);
    buf_addf(b, " %s ", op);
    gen(b, tb, d - 1, g);
    buf_addc(b, ')');
}

static void gen(buf *b, int t, int d, const gctx *g)
{
    if (d <= 0 || chance(20)) {
        leaf(b, t, g);
        return;
    }
    if (g->nrows && chance(8) && t != TU && t != TD) {
        gen_agg(b, t, d, g);
        return;
    }
    switch (t) {
    case TB:
        switch (pick(11)) {
        case 0:
            if (chance(15)) {
                buf_adds(b, pick(2) ? "(null and " : "(null or ");
                gen(b, TB, d - 1, g);
                buf_addc(b, ')');
                return;
            }
            binop(b, TB, pick(2) ? "and" : "or", TB, d, g);
            return;
        case 1:
            buf_adds(b, "(not ");
            gen(b, TB, d - 1, g);
            buf_addc(b, ')');
            return;
        case 2: {
            int ct = pick(6) + 1; /* int float string ts date dur */
            static const char *ops[] = {"==", "!=", "<", "<=", ">", ">="};
            int tb2 = ct;
            if (ct == TI && chance(40))
                tb2 = TF;
            if (ct == TT && chance(30))
                tb2 = TD;
            binop(b, ct, ops[pick(6)], tb2, d, g);
            return;
        }
        case 3: binop(b, TB, pick(2) ? "==" : "!=", TB, d, g); return;
        case 4: {
            buf_addc(b, '(');
            gen(b, pick(NT), d - 1, g);
            buf_adds(b, chance(50) ? " is null)" : " is not null)");
            return;
        }
        case 5: {
            int it = pick(6) + 1;
            buf_addc(b, '(');
            gen(b, it, d - 1, g);
            buf_adds(b, chance(50) ? " in [" : " not in [");
            int n = pick(4);
            for (int i = 0; i < n; i++) {
                if (i)
                    buf_adds(b, ", ");
                if (chance(10))
                    buf_adds(b, "null");
                else
                    gen(b, it, d - 2, g);
            }
            buf_adds(b, "])");
            return;
        }
        case 6: {
            static const char *fn[] = {"contains", "starts_with", "ends_with"};
            buf_addf(b, "%s(", fn[pick(3)]);
            gen(b, TS_, d - 1, g);
            buf_adds(b, ", ");
            gen(b, TS_, d - 1, g);
            buf_addc(b, ')');
            return;
        }
        default: {
            static const char *ops[] = {"==", "<", ">="};
            binop(b, TI, ops[pick(3)], pick(2) ? TI : TF, d, g);
            return;
        }
        }
    case TI:
        switch (pick(9)) {
        case 0:
        case 1: {
            static const char *ops[] = {"+", "-", "*", "/", "%"};
            binop(b, TI, ops[pick(5)], TI, d, g);
            return;
        }
        case 2:
            buf_adds(b, "-");
            gen(b, TI, d - 1, g);
            return;
        case 3:
            buf_adds(b, "abs(");
            gen(b, TI, d - 1, g);
            buf_addc(b, ')');
            return;
        case 4:
            buf_adds(b, "length(");
            gen(b, TS_, d - 1, g);
            buf_addc(b, ')');
            return;
        case 5: {
            static const char *fn[] = {"year", "month", "day", "hour", "weekday"};
            int f = pick(5);
            buf_addf(b, "%s(", fn[f]);
            gen(b, chance(50) ? TT : TD, d - 1, g);
            if (f >= 3 && chance(60)) { /* in a zone */
                buf_adds(b, ", ");
                zone_arg(b, g);
            }
            buf_addc(b, ')');
            return;
        }
        case 6:
            buf_adds(b, "coalesce(");
            gen(b, TI, d - 1, g);
            buf_adds(b, ", ");
            gen(b, TI, d - 1, g);
            buf_addc(b, ')');
            return;
        default: leaf(b, TI, g); return;
        }
    case TF:
        switch (pick(7)) {
        case 0:
        case 1: {
            static const char *ops[] = {"+", "-", "*", "/"};
            int a = pick(2) ? TF : TI;
            binop(b, a, ops[pick(4)], a == TI ? TF : (pick(2) ? TF : TI), d, g);
            return;
        }
        case 2:
            buf_adds(b, "round(");
            gen(b, TF, d - 1, g);
            if (chance(40))
                buf_addf(b, ", %d", pick(3));
            buf_addc(b, ')');
            return;
        case 3:
            buf_adds(b, "abs(");
            gen(b, TF, d - 1, g);
            buf_addc(b, ')');
            return;
        case 4:
            buf_adds(b, "-");
            gen(b, TF, d - 1, g);
            return;
        default: leaf(b, TF, g); return;
        }
    case TS_:
        switch (pick(5)) {
        case 0: {
            static const char *fn[] = {"lower", "upper", "trim"};
            buf_addf(b, "%s(", fn[pick(3)]);
            gen(b, TS_, d - 1, g);
            buf_addc(b, ')');
            return;
        }
        case 1:
            buf_adds(b, "coalesce(");
            gen(b, TS_, d - 1, g);
            buf_adds(b, ", ");
            gen(b, TS_, d - 1, g);
            buf_addc(b, ')');
            return;
        default: leaf(b, TS_, g); return;
        }
    case TT:
        switch (pick(5)) {
        case 0: binop(b, TT, pick(2) ? "+" : "-", TU, d, g); return;
        case 1: binop(b, TU, "+", TT, d, g); return;
        case 2:
            buf_adds(b, "timestamp(");
            gen(b, TD, d - 1, g);
            buf_addc(b, ')');
            return;
        default: leaf(b, TT, g); return;
        }
    case TD:
        switch (pick(4)) {
        case 0: binop(b, TD, pick(2) ? "+" : "-", TU, d, g); return;
        case 1:
            buf_adds(b, "date(");
            gen(b, TT, d - 1, g);
            buf_addc(b, ')');
            return;
        default: leaf(b, TD, g); return;
        }
    case TU:
        switch (pick(6)) {
        case 0: binop(b, TT, "-", TT, d, g); return;
        case 1: binop(b, TD, "-", TD, d, g); return;
        case 2: binop(b, TU, pick(2) ? "+" : "-", TU, d, g); return;
        case 3: {
            buf_addc(b, '(');
            gen(b, TU, d - 1, g);
            buf_addf(b, " * %d)", pick(5));
            return;
        }
        default: leaf(b, TU, g); return;
        }
    }
}

/* --- comparing --------------------------------------------------------------- */

static int same(const baton_value *m, sqlite3_stmt *st, int static_type, char *why, size_t n)
{
    int ct = sqlite3_column_type(st, 0);
    if (m->type == BATON_T_NULL || ct == SQLITE_NULL) {
        if (m->type == BATON_T_NULL && ct == SQLITE_NULL)
            return 1;
        snprintf(why, n, "one side is NULL (memory type %d, sql type %d)", m->type, ct);
        return 0;
    }
    switch (m->type) {
    case BATON_T_BOOL: return ct == SQLITE_INTEGER && sqlite3_column_int64(st, 0) == (m->v.b != 0);
    case BATON_T_INT:
    case BATON_T_DURATION: {
        int64_t v = m->type == BATON_T_INT ? m->v.i : m->v.dur;
        if (ct == SQLITE_INTEGER)
            return sqlite3_column_int64(st, 0) == v;
        return 0;
    }
    case BATON_T_FLOAT:
        if (ct == SQLITE_FLOAT)
            return sqlite3_column_double(st, 0) == m->v.f;
        return 0;
    case BATON_T_STRING:
        return ct == SQLITE_TEXT && (size_t)sqlite3_column_bytes(st, 0) == m->v.s.len &&
               memcmp(sqlite3_column_text(st, 0), m->v.s.ptr, m->v.s.len) == 0;
    case BATON_T_TIMESTAMP: {
        int64_t ts;
        const char *s = (const char *)sqlite3_column_text(st, 0);
        return ct == SQLITE_TEXT && timestamp_parse(s, strlen(s), &ts) == 0 && ts == m->v.ts;
    }
    case BATON_T_DATE: {
        int64_t d;
        const char *s = (const char *)sqlite3_column_text(st, 0);
        return ct == SQLITE_TEXT && date_parse(s, strlen(s), &d) == 0 && d == m->v.date;
    }
    default: break;
    }
    return 0;
}

static void describe_sql(sqlite3_stmt *st, buf *b)
{
    switch (sqlite3_column_type(st, 0)) {
    case SQLITE_NULL: buf_adds(b, "NULL"); break;
    case SQLITE_INTEGER: buf_addf(b, "int %lld", (long long)sqlite3_column_int64(st, 0)); break;
    case SQLITE_FLOAT: buf_addf(b, "real %.17g", sqlite3_column_double(st, 0)); break;
    default: buf_addf(b, "text '%s'", sqlite3_column_text(st, 0)); break;
    }
}

static int64_t NOW;

/* The grouped work tables of the round, made in db as the campaign
 * engine makes them in its source. */
static expr_groups *G;

static int groups_exec(void *ud, const char *sql, const baton_value *params, size_t n, char *err,
                       size_t errlen)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", sqlite3_errmsg(db), sql);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        bind_value(st, (int)i + 1, &params[i]);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        snprintf(err, errlen, "%s: %s", sqlite3_errmsg(db), sql);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

static void groups_reset(void)
{
    expr_groups_free(G);
    G = expr_groups_new(&expr_dialect_sqlite, "temp.baton_g", groups_exec, NULL);
}

static int run_one_as(const char *text, const expr_scope *sc, table *t, const char *table_name,
                      int grouped, size_t *rows_checked, size_t *nulls, size_t *compile_errors);
static size_t joined_exprs; /* compiled with at least one LEFT JOIN */

/* The expression compiled three ways: correlated subqueries, grouped
 * work tables shared by every expression of the round read by key (1),
 * and the same tables read through LEFT JOINs (2, as activities do). */
static int run_one(const char *text, const expr_scope *sc, table *t, const char *table_name,
                   size_t *rows_checked, size_t *nulls, size_t *compile_errors)
{
    int rc = run_one_as(text, sc, t, table_name, 0, rows_checked, nulls, compile_errors);
    if (rc == 0 && strchr(text, '('))
        rc = run_one_as(text, sc, t, table_name, 1, rows_checked, nulls, compile_errors);
    if (rc == 0 && strchr(text, '('))
        rc = run_one_as(text, sc, t, table_name, 2, rows_checked, nulls, compile_errors);
    return rc;
}

static int run_one_as(const char *text, const expr_scope *sc, table *t, const char *table_name,
                      int grouped, size_t *rows_checked, size_t *nulls, size_t *compile_errors)
{
    char err[256];
    expr *e = expr_compile_msg(text, sc, 0, err, sizeof err);
    if (!e) {
        print_error("generated expression does not compile: %s\n  %s\n", err, text);
        (*compile_errors)++;
        return 0;
    }
    expr_sql q;
    expr_sql_init(&q);
    buf joins;
    buf_init(&joins);
    buf_adds(&joins, "");
    buf_adds(&q.sql, "SELECT ");
    if (expr_to_sql_joined(e, "t", &expr_dialect_sqlite, NOW, grouped ? G : NULL,
                           grouped == 2 ? &joins : NULL, &q, err, sizeof err) != 0) {
        print_error("expr_to_sql%s failed: %s\n  %s\n", grouped ? " (grouped)" : "", err, text);
        expr_free(e);
        expr_sql_free(&q);
        buf_free(&joins);
        return -1;
    }
    if (grouped == 2)
        joined_exprs += joins.len > 0;
    buf_addf(&q.sql, " FROM \"%s\" AS \"t\"%s ORDER BY \"t\".rowid", table_name, joins.data);
    buf_free(&joins);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, q.sql.data, -1, &st, NULL) != SQLITE_OK) {
        print_error("SQL does not prepare: %s\n  %s\n  %s\n", sqlite3_errmsg(db), text, q.sql.data);
        expr_free(e);
        expr_sql_free(&q);
        return -1;
    }
    for (size_t i = 0; i < q.nparams; i++)
        bind_value(st, (int)i + 1, &q.params[i]);
    expr_arena arena;
    expr_arena_init(&arena);
    int rc = 0;
    for (size_t i = 0; i < t->n; i++) {
        int s = sqlite3_step(st);
        if (s != SQLITE_ROW) {
            print_error("SQL step %zu: %s\n  %s\n  %s\n", i, sqlite3_errmsg(db), text, q.sql.data);
            rc = -1;
            break;
        }
        ctx c = {.top = &t->rows[i]};
        expr_env env = {.get = env_get, .rows = env_rows, .ud = &c, .now = NOW};
        baton_value m;
        if (expr_eval(e, &env, &arena, &m, err, sizeof err) != 0) {
            print_error("evaluation failed: %s\n  %s\n", err, text);
            rc = -1;
        } else {
            char why[128] = "";
            if (!same(&m, st, expr_result_type(e), why, sizeof why)) {
                buf mb, sb;
                buf_init(&mb);
                buf_init(&sb);
                buf_adds(&mb, "");
                buf_adds(&sb, "");
                expr_value_format(&m, &mb);
                describe_sql(st, &sb);
                print_error("DISAGREE on %s row %zu: memory [%d] '%s', SQL%s %s %s\n  expr: %s\n  "
                            "sql: %.2000s\n",
                            table_name, i, m.type, mb.data,
                            grouped == 2 ? " (joined)"
                            : grouped    ? " (grouped)"
                                         : "",
                            sb.data, why, text, q.sql.data);
                buf_free(&mb);
                buf_free(&sb);
                rc = -1;
            }
            if (m.type == BATON_T_NULL)
                (*nulls)++;
            (*rows_checked)++;
        }
        for (int k = 0; k < c.npool; k++)
            free(c.pool[k]);
        free(c.pool);
        expr_arena_reset(&arena);
        if (rc)
            break;
    }
    expr_arena_free(&arena);
    sqlite3_finalize(st);
    expr_sql_free(&q);
    expr_free(e);
    return rc;
}

/* Register the aggregates of the next 25 expressions before any runs, as
 * a campaign's check does: their tables are made with every column at
 * the first use (one scan per link), which the rows then read. */
static void collect_ahead(int from, const expr_scope *psc, const expr_scope *osc)
{
    uint64_t saved = rng_state;
    buf b;
    buf_init(&b);
    expr_groups_collect(G, 1);
    for (int i = from; i < from + 25 && i < NEXPR_PROFILES + NEXPR_ORDERS; i++) {
        int orders = i >= NEXPR_PROFILES;
        buf_reset(&b);
        buf_adds(&b, "");
        gen(&b, pick(NT), 2 + pick(3), orders ? &GO : &GP);
        expr *e = expr_compile_msg(b.data, orders ? osc : psc, 0, NULL, 0);
        expr_sql q;
        expr_sql_init(&q);
        char err[256];
        if (e)
            assert_int_equal(
                expr_to_sql_grouped(e, "t", &expr_dialect_sqlite, NOW, G, &q, err, sizeof err), 0);
        expr_sql_free(&q);
        expr_free(e);
    }
    expr_groups_collect(G, 0);
    buf_free(&b);
    rng_state = saved;
}

static void test_differential(void **st)
{
    uint64_t seed = 0x5eedba70ULL;
    const char *env_seed = getenv("BATON_DIFF_SEED");
    if (env_seed)
        seed = strtoull(env_seed, NULL, 0);
    rng_state = seed;
    fx_schema(&S);
    T[0].ent = schema_entity_find(&S, "profiles");
    T[1].ent = schema_entity_find(&S, "orders");
    T[2].ent = schema_entity_find(&S, "stores");
    T[3].ent = schema_entity_find(&S, "lines");
    fill_table(&T[0], NPROFILES, "p");
    fill_table(&T[1], NORDERS, "o");
    fill_table(&T[2], NSTORES, "s");
    fill_table(&T[3], NLINES, "l");
    create_db(1);
    groups_reset();
    assert_int_equal(timestamp_parse("2026-11-23T10:00:00Z", 20, &NOW), 0);
    expr_scope *psc = expr_scope_new(&S, T[0].ent);
    expr_scope *osc = expr_scope_new(&S, T[1].ent);
    size_t checked = 0, nulls = 0, failures = 0, exprs = 0, compile_errors = 0, multi = 0;
    buf b;
    buf_init(&b);
    for (int i = 0; i < NEXPR_PROFILES + NEXPR_ORDERS && failures < 10; i++) {
        int orders = i >= NEXPR_PROFILES;
        if (i % 25 == 0)
            collect_ahead(i, psc, osc);
        buf_reset(&b);
        buf_adds(&b, "");
        gen(&b, pick(NT), 2 + pick(3), orders ? &GO : &GP);
        exprs++;
        multi += strstr(b.data, "orders.lines") != NULL;
        if (run_one(b.data, orders ? osc : psc, orders ? &T[1] : &T[0],
                    orders ? "orders" : "profiles", &checked, &nulls, &compile_errors) != 0)
            failures++;
    }
    print_message("differential: seed %#llx, %zu expressions, %zu rows compared (%zu NULL), %zu "
                  "disagreements; %zu over two one-to-many links; %zu grouped tables, %zu "
                  "expressions read them by joins\n",
                  (unsigned long long)seed, exprs, checked, nulls, failures, multi,
                  expr_groups_made(G), joined_exprs);
    assert_true(multi >= 100);
    assert_true(joined_exprs >= 100);
    /* the grouped form was exercised, not skipped */
    assert_true(expr_groups_made(G) >= 3);
    assert_int_equal(compile_errors, 0);
    assert_int_equal(failures, 0);
    assert_true(exprs >= 10000);
    /* NULLs must be a real part of what was compared, not a corner */
    assert_true(nulls > checked / 20);
    /* The same over every stored form of dates and timestamps (and the
     * canonical form read through the normalising SQL): expressions that
     * read a date or a timestamp, with and without the link indexes. */
    for (int form = 0; form <= NSF; form++) {
        size_t fexprs = 0, fchecked = 0, fnulls = 0;
        store_as(form == NSF ? SF_CANON : form, form == NSF);
        sqlite3_close(db);
        create_db(form % 2 == 0);
        groups_reset();
        for (int i = 0; fexprs < NEXPR_STORED && failures < 10; i++) {
            int orders = i % 3 == 2;
            buf_reset(&b);
            buf_adds(&b, "");
            gen(&b, pick(NT), 2 + pick(3), orders ? &GO : &GP);
            if (!strstr(b.data, "created_at") && !strstr(b.data, "birth_date") &&
                !strstr(b.data, "shipped_at"))
                continue;
            fexprs++;
            if (run_one(b.data, orders ? osc : psc, orders ? &T[1] : &T[0],
                        orders ? "orders" : "profiles", &fchecked, &fnulls, &compile_errors) != 0)
                failures++;
        }
        print_message("differential: dates and timestamps stored %s%s (%s): %zu expressions, %zu "
                      "rows compared (%zu NULL)\n",
                      form == NSF ? "canonical, read as any form" : sf_names[form], "",
                      form % 2 == 0 ? "indexed" : "no link indexes", fexprs, fchecked, fnulls);
        assert_int_equal(compile_errors, 0);
        assert_int_equal(failures, 0);
        assert_true(fnulls > fchecked / 50);
    }
    buf_free(&b);
    store_as(SF_CANON, 0);
    expr_scope_free(psc);
    expr_scope_free(osc);
    for (int ti = 0; ti < NTAB; ti++) {
        for (size_t i = 0; i < T[ti].n; i++) {
            if (T[ti].rows[i].rec != T[ti].rows[i].typed)
                record_free(T[ti].rows[i].rec);
            record_free(T[ti].rows[i].typed);
        }
        free(T[ti].rows);
    }
    expr_groups_free(G);
    G = NULL;
    sqlite3_close(db);
    schema_free(&S);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_differential),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
