#include "support/fuzz_inputs.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "lang/expr.h"
#include "base/record.h"
#include "schema/schema.h"
#include "support/expr_fixture.h"
#include "lang/template.h"

static schema S;
static expr_scope *sc_profiles, *sc_orders, *sc_journey, *sc_open;
static record *rec, *row1, *row2;
static const void *rows[2];
static fx_rows R[3];
static fx_env FX;

static void init_once(void)
{
    if (sc_open)
        return;
    fx_schema(&S);
    sc_profiles = expr_scope_new(&S, schema_entity_find(&S, "profiles"));
    sc_orders = expr_scope_new(&S, schema_entity_find(&S, "orders"));
    const char *src[] = {"weather"};
    sc_journey = expr_scope_journey(&S, schema_entity_find(&S, "profiles"), src, 1);
    sc_open = expr_scope_new(NULL, NULL);
    expr_scope_set_open(sc_open, 1);
    rec = record_new();
    record_set_string(rec, "tier", "gold");
    record_set_string(rec, "first_name", "Émile <&>");
    record_set_int(rec, "visits", -3);
    baton_value f = {.type = BATON_T_FLOAT, .v.f = 2.5};
    record_set(rec, "score", &f);
    baton_value ts = {.type = BATON_T_TIMESTAMP, .v.ts = 1700000000};
    record_set(rec, "created_at", &ts);
    record_set(rec, "profile.created_at", &ts);
    record_set_string(rec, "event.total", "12.5");
    record_set_int(rec, "event.n", 7);
    row1 = record_new();
    record_set(row1, "amount", &f);
    record_set_string(row1, "store.city", "Lyon");
    row2 = record_new();
    record_set_int(row2, "items", 4);
    rows[0] = row1;
    rows[1] = row2;
    R[0] = (fx_rows){"orders", rows, 2};
    R[1] = (fx_rows){"store.orders", rows, 2};
    R[2] = (fx_rows){"profile.orders", rows, 1};
    FX = (fx_env){.top = rec, .rows = R, .nrows = 3, .now = 1763892000};
}

static char *text_of(const uint8_t *data, size_t size)
{
    char *t = malloc(size + 1);
    if (size)
        memcpy(t, data, size);
    t[size] = '\0';
    return t;
}

void fuzz_expr_one(const uint8_t *data, size_t size)
{
    init_once();
    char *text = text_of(data, size);
    const expr_scope *scopes[] = {sc_profiles, sc_orders, sc_journey, sc_open};
    expr_env env = fx_env_make(&FX);
    expr_arena arena;
    expr_arena_init(&arena);
    for (size_t i = 0; i < 4; i++) {
        char err[256];
        expr *e = expr_compile_msg(text, scopes[i], 0, err, sizeof err);
        if (!e)
            continue;
        baton_value v;
        if (expr_eval(e, &env, &arena, &v, err, sizeof err) == 0) {
            buf b;
            buf_init(&b);
            expr_value_format(&v, &b);
            buf_free(&b);
        }
        expr_arena_reset(&arena);
        expr_sql q;
        expr_sql_init(&q);
        expr_to_sql(e, "t", &expr_dialect_sqlite, FX.now, &q, err, sizeof err);
        expr_to_sql(e, "t", &expr_dialect_postgresql, FX.now, &q, err, sizeof err);
        expr_sql_free(&q);
        for (size_t k = 0; k < expr_ref_count(e); k++)
            (void)expr_ref_at(e, k)->path;
        expr_free(e);
    }
    /* and through diag, with an origin */
    diag d;
    diag_init(&d);
    expr_origin o = {"fuzz.cfg", 1, "filter"};
    expr_free(expr_compile(text, sc_profiles, &o, EXPR_WANT_BOOL, &d));
    diag_free(&d);
    expr_arena_free(&arena);
    free(text);
}

void fuzz_template_one(const uint8_t *data, size_t size)
{
    init_once();
    if (!size)
        return;
    unsigned flags = data[0] & 1 ? TEMPLATE_HTML : 0;
    const expr_scope *sc = data[0] & 2 ? sc_open : sc_profiles;
    char *text = text_of(data + 1, size - 1);
    char err[256];
    template *t = template_compile_msg(text, sc, flags, err, sizeof err);
    if (t) {
        expr_env env = fx_env_make(&FX);
        expr_arena arena;
        expr_arena_init(&arena);
        buf out;
        buf_init(&out);
        template_render(t, &env, &arena, &out, err, sizeof err);
        buf_free(&out);
        expr_arena_free(&arena);
        for (size_t i = 0; i < template_expr_count(t); i++)
            (void)expr_text(template_expr_at(t, i));
        template_free(t);
    }
    free(text);
}

void fuzz_schema_one(const uint8_t *data, size_t size)
{
    char *text = text_of(data, size);
    schema s;
    diag d;
    diag_init(&d);
    schema_load_string(&s, text, "fuzz", &d);
    for (size_t i = 0; i < s.nentities; i++)
        (void)schema_suggest(&s, &s.entities[i], "x");
    schema_free(&s);
    diag_free(&d);
    free(text);
}

/* Fragments the chain generator repeats: the shapes of input that are
 * long rather than clever (chains of operators, nesting by parentheses,
 * prefixes and blocks), which a byte-level fuzzer rarely builds past a
 * few hundred. */
static const char *const fragments[] = {
    "",
    "tier == 'a'",
    " or ",
    " and ",
    "not ",
    "(",
    ")",
    "-",
    " + 1",
    " * 2",
    "score",
    " in [1, 2]",
    " is null",
    "count(orders where amount > 1)",
    "{{#if true}}",
    "{{/if}}",
    "{{ tier }}",
    "{{#each orders}}",
    "{{/each}}",
    "{{else}}",
    "lower(",
    "coalesce(tier, ",
    ", ",
    "'x'",
    "1",
};

char *fuzz_chain_text(const uint8_t *data, size_t size, size_t *len)
{
    /* each three bytes: two fragments and how many times the pair is
     * repeated (0..255, times 128, plus one: up to 32,641); at most 4 MB */
    buf b;
    buf_init(&b);
    size_t nf = sizeof fragments / sizeof fragments[0];
    for (size_t i = 0; i + 2 < size && b.len < 4u << 20; i += 3) {
        const char *f = fragments[data[i] % nf], *g = fragments[data[i + 1] % nf];
        size_t reps = (size_t)data[i + 2] * 128 + 1;
        for (size_t r = 0; r < reps && b.len < 4u << 20; r++) {
            buf_adds(&b, f);
            buf_adds(&b, g);
        }
    }
    *len = b.len;
    return buf_steal(&b);
}

void fuzz_chain_one(const uint8_t *data, size_t size)
{
    size_t len;
    char *text = fuzz_chain_text(data, size, &len);
    fuzz_expr_one((const uint8_t *)text, len);
    /* as a template: the first byte picks the flags, as in its target */
    char *t = malloc(len + 2);
    t[0] = size ? (char)data[0] : 0;
    memcpy(t + 1, text, len + 1);
    fuzz_template_one((const uint8_t *)t, len + 1);
    free(t);
    free(text);
}

int fuzz_replay(const char *name, const uint8_t *data, size_t size)
{
    if (!strncmp(name, "chain-", 6)) {
        fuzz_chain_one(data, size);
        return 0;
    }
    if (!strncmp(name, "expr-", 5))
        fuzz_expr_one(data, size);
    else if (!strncmp(name, "template-", 9))
        fuzz_template_one(data, size);
    else if (!strncmp(name, "schema-", 7))
        fuzz_schema_one(data, size);
    else
        return -1;
    return 0;
}
