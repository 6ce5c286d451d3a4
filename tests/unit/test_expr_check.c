/* Parser and checker: every syntax and type error says where (line:col),
 * what was expected, and the nearest name; diag adds file, line and the
 * setting. Precedence is checked by the shape the evaluator sees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lang/expr.h"
#include "support/expr_fixture.h"

static schema S;
static expr_scope *P, *O, *J;

static int setup(void **st)
{
    fx_schema(&S);
    P = expr_scope_new(&S, schema_entity_find(&S, "profiles"));
    O = expr_scope_new(&S, schema_entity_find(&S, "orders"));
    const char *src[] = {"weather"};
    J = expr_scope_journey(&S, schema_entity_find(&S, "profiles"), src, 1);
    return 0;
}

static int teardown(void **st)
{
    expr_scope_free(P);
    expr_scope_free(O);
    expr_scope_free(J);
    schema_free(&S);
    return 0;
}

static const char *err_of(const expr_scope *sc, const char *text, unsigned flags)
{
    static char err[512];
    expr *e = expr_compile_msg(text, sc, flags, err, sizeof err);
    if (e) {
        expr_free(e);
        return "ok";
    }
    return err;
}

typedef struct ecase {
    const char *text;
    const char *want;
} ecase;

static void run(const expr_scope *sc, const ecase *c, size_t n, unsigned flags)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const char *got = err_of(sc, c[i].text, flags);
        if (strcmp(got, c[i].want)) {
            print_error("%s\n  want %s\n  got  %s\n", c[i].text, c[i].want, got);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}
#define RUN(sc, c, f) run(sc, c, sizeof c / sizeof c[0], f)

static void test_syntax(void **st)
{
    static const ecase c[] = {
        {"", "1:1: empty expression"},
        {"   ", "1:1: empty expression"},
        {"tier ==", "1:8: expected a value, a name or '(', found the end of the expression"},
        {"tier = 'a'", "1:6: '=' is not an operator: use '==' to compare"},
        {"tier <> 'a'", "1:6: '<>' is not an operator: use '!='"},
        {"a && b", "1:3: '&&' is not an operator: use 'and'"},
        {"a || b", "1:3: '||' is not an operator: use 'or'"},
        {"!a", "1:1: '!' is not an operator: use 'not'"},
        {"'abc", "1:1: unterminated string (add the closing ')"},
        {"'a\\qb'", "1:3: unknown escape '\\q' in a string (known: \\\\ \\' \\\" \\n \\t \\r)"},
        {"12x", "1:1: invalid number or duration '12x' (durations are like 90s, 30m, 12h, 7d, 2w)"},
        {"99999999999999999999", "1:1: integer '99999999999999999999' is too large (at most "
                                 "9223372036854775807)"},
        {"(1 + 2", "1:7: expected ')' to close the '(' at 1:1"},
        {"1 < 2 < 3",
         "1:7: comparisons do not chain: write 'a < b and b < c' instead of 'a < b < c'"},
        {"tier tier", "1:6: unexpected 'tier' after a complete expression (missing an operator "
                      "such as 'and' or '=='?)"},
        {"tier where x", "1:6: unexpected 'where' after a complete expression ('where' only goes "
                         "inside an aggregate: count(orders where ...))"},
        {"tier in ('a')", "1:9: a list is written in brackets: in ['a', 'b']"},
        {"tier in ['a' 'b']", "1:14: expected ',' or ']' in the list, found a string"},
        {"tier is nul", "1:9: expected 'null' or 'not null' after 'is', found 'nul'"},
        {"['a']", "1:1: a list [..] only follows 'in' or 'not in'"},
        {"lower(tier", "1:11: expected ',' or ')', found the end of the expression"},
        {"count(orders where)", "1:19: expected a value, a name or '(', found ')'"},
        {"tier.", "1:6: expected a field name after '.', found the end of the expression"},
        {"tier # x", "1:6: unexpected character '#'"},
        {"line1 and\n  tier ==", "2:10: expected a value, a name or '(', found the end of the "
                                 "expression"},
    };
    RUN(P, c, 0);
    /* deep nesting is refused, not a stack overflow */
    char deep[2000];
    memset(deep, '(', 600);
    deep[600] = '1';
    memset(deep + 601, ')', 600);
    deep[1201] = '\0';
    assert_string_equal(err_of(P, deep, 0), "1:201: expression nested too deeply (more than 200 "
                                            "levels)");
    memset(deep, '-', 1000);
    deep[1000] = '1';
    deep[1001] = '\0';
    assert_non_null(strstr(err_of(P, deep, 0), "nested too deeply"));
    /* so is a chain too long to walk (no parenthesis: each 'or' is one
     * level more for the checker, the evaluator, the SQL compiler) and a
     * list too long to hold */
    size_t cap = 20000 * 16 + 64;
    char *chain = malloc(cap), *p = chain;
    p += sprintf(p, "tier == 'a'");
    for (int i = 1; i < 20000; i++)
        p += sprintf(p, " or tier == 'a'");
    const char *e = err_of(P, chain, 0);
    assert_non_null(strstr(e, "expression too deep (more than 500 operators one inside another; a "
                              "long chain of 'or' comparing one field can be written 'field in "
                              "[..]')"));
    assert_int_equal(strncmp(e, "1:", 2), 0);
    free(chain);
    char *list = malloc(110000 * 2 + 64);
    p = list + sprintf(list, "score in [1");
    for (int i = 1; i < 110000; i++)
        p += sprintf(p, ",1");
    sprintf(p, "]");
    assert_non_null(strstr(err_of(P, list, 0), "expression too long (more than 100000 terms)"));
    free(list);
    /* a long chain of a real file's size is still fine */
    chain = malloc(200 * 16 + 64);
    p = chain + sprintf(chain, "tier == 'a'");
    for (int i = 1; i < 200; i++)
        p += sprintf(p, " or tier == 'a'");
    assert_string_equal(err_of(P, chain, 0), "ok");
    free(chain);
}

static void test_names(void **st)
{
    static const ecase c[] = {
        {"tierr == 'gold'", "1:1: unknown field 'tierr' in profiles (did you mean 'tier'?)"},
        {"Tier == 'gold'", "1:1: unknown field 'Tier' in profiles (did you mean 'tier'?)"},
        {"xyzzy", "1:1: unknown field 'xyzzy' in profiles"},
        {"ordres.amount > 1", "1:1: unknown field or link 'ordres' in profiles (did you mean "
                              "'orders'?)"},
        {"orders", "1:1: 'orders' is a one-to-many link (many orders per profiles): use an "
                   "aggregate such as count(orders) or exists(orders where ...)"},
        {"tier.x",
         "1:1: 'tier' is a field of profiles (a string), not a link: nothing can follow it"},
        {"count(tier)", "1:7: 'tier' is a field of profiles, not a one-to-many link (one of: the "
                        "reverse links)"},
        {"count(orders where tier == 'x')", "1:20: unknown field 'tier' in orders"},
        {"count(orders where amont > 1)", "1:20: unknown field 'amont' in orders (did you mean "
                                          "'amount'?)"},
        {"sum(orders)", "1:5: sum() needs a field of the linked rows: sum(orders.<field>)"},
        {"sum(orders.created_at)", "1:5: sum() adds numbers; 'orders.created_at' is a timestamp"},
        {"avg(orders.id)", "1:5: avg() averages numbers; 'orders.id' is a string"},
        {"exists(orders.amount)", "1:8: exists() takes a link, not a field: exists(orders)"},
        {"count(1)", "1:1: count() takes a one-to-many link and an optional 'where': "
                     "count(orders where ...)"},
        {"sum(orders, amount where true)", "1:1: sum() takes a one-to-many link and a field and "
                                           "an optional 'where': sum(orders.amount where ...)"},
        {"lowr(tier)", "1:1: unknown function 'lowr' (did you mean 'lower'?)"},
        {"frobnicate(1)", "1:1: unknown function 'frobnicate'"},
    };
    RUN(P, c, 0);
    static const ecase o[] = {
        {"store.citi == 'x'", "1:1: unknown field 'citi' in stores (did you mean 'city'?)"},
        {"store == 'x'", "1:1: 'store' is a link to stores: name one of its fields (store.city)"},
        {"profile.orders", "1:1: 'profile.orders' is a one-to-many link (many orders per "
                           "profiles): use an aggregate such as count(profile.orders) or "
                           "exists(profile.orders where ...)"},
        {"count(store.orders where store.city == 'x') > 1", "ok"},
    };
    RUN(O, o, 0);
    static const ecase j[] = {
        {"event", "1:1: 'event' needs a field: event.<name>"},
        {"evnt.total", "1:1: unknown name 'evnt' (did you mean 'event'?)"},
        {"profile.tierr", "1:1: unknown field 'tierr' in profiles (did you mean 'tier'?)"},
        {"count(event.items)", "1:7: 'event.items' is not a one-to-many link of the schema "
                               "(event.* is untyped data)"},
        {"tier", "1:1: unknown name 'tier'"},
        {"event.time + 1", "1:12: cannot apply '+' to a timestamp and an int (add a duration: "
                           "7d, 12h, 30m)"},
        {"weather.temperature < 5 and count(profile.orders where amount > event.total) > 1", "ok"},
    };
    RUN(J, j, 0);
}

static void test_types(void **st)
{
    static const ecase c[] = {
        /* paths of several one-to-many links */
        {"count(orders.lines where qty > 2) >= 1", "ok"},
        {"exists(orders.lines where order.store.city == 'Paris')", "ok"},
        {"sum(orders.lines.price) > 10.5 and max(orders.lines.shipped_at) < now()", "ok"},
        {"min(orders.lines.sku) == 'a'", "ok"},
        {"count(orders.lines) == 'x'", "1:21: cannot compare an int with a string"},
        {"avg(orders.lines.price) > 1",
         "1:5: avg() over several one-to-many links ('orders.lines.price') is not defined: write "
         "sum(orders.lines.price) / count(orders.lines.price) (a float when one side is)"},
        {"count(orders.lines where amount > 1) > 0", "1:26: unknown field 'amount' in lines"},
        {"tier == null",
         "1:6: '== null' is never true (NULL compares as unknown): write 'is null'"},
        {"tier != null", "1:6: '!= null' is never true (NULL compares as unknown): write 'is not "
                         "null'"},
        {"visits > null", "1:8: a comparison with null is never true: test it with 'is null'"},
        {"null in [1]", "1:6: 'null in [..]' is never true: test with 'is null'"},
        {"tier == 3", "1:6: cannot compare a string with an int"},
        {"created_at > '2026-01-01'", "1:12: cannot compare a timestamp with a string (write "
                                      "timestamp('2026-01-31T09:00:00Z') or date('2026-01-31'))"},
        {"consent_email < true", "1:15: bools have no order: use == or !="},
        {"tier + 'x'", "1:6: cannot apply '+' to a string and a string (text is joined in "
                       "templates: {{ a }}{{ b }})"},
        {"score % 2", "1:7: cannot apply '%' to a float and an int (% takes ints)"},
        {"created_at + 3", "1:12: cannot apply '+' to a timestamp and an int (add a duration: 7d, "
                           "12h, 30m)"},
        {"-tier", "1:1: cannot negate a string"},
        {"not visits", "1:5: 'not' needs a condition (true or false), not an int"},
        {"tier and true", "1:1: 'and' needs a condition (true or false), not a string"},
        {"visits in ['a']", "1:12: list item is a string but the value is an int"},
        {"lower(visits)", "1:7: lower(string): expected a string, got an int"},
        {"lower(tier, tier)", "1:1: lower() takes 1 argument, got 2: lower(string)"},
        {"now(1)", "1:1: now() takes no zone: an instant is the same in every zone; read it in one "
                   "with hour(now(), zone), weekday(now(), zone) or today(zone)"},
        {"hour(now(), 'Europ/Paris')", "1:13: unknown time zone 'Europ/Paris' (an IANA name such "
                                       "as 'Europe/Paris', as in /usr/share/zoneinfo)"},
        {"hour(now(), 3)",
         "1:13: hour(timestamp[, zone]): expected a time zone name (a string), got an int"},
        {"today(1, 2)", "1:1: today() takes 0 or 1 argument, got 2: today([zone])"},
        {"weekday(now(), 'UTC', 'UTC')", "1:1: weekday() takes 1 or 2 arguments, got 3: "
                                         "weekday(timestamp or date[, zone])"},
        {"round(1, 2, 3)", "1:1: round() takes 1 or 2 arguments, got 3: round(number[, digits])"},
        {"coalesce()", "1:1: coalesce() takes at least 1 argument, got 0: coalesce(a, b, ...)"},
        {"coalesce(tier, 3)", "1:16: coalesce(): every value must be of one type; an int after a "
                              "string"},
        {"year(tier)",
         "1:6: year(timestamp or date): expected a timestamp or a date, got a string"},
        {"date('2026-02-30')", "1:6: invalid date '2026-02-30' (expected YYYY-MM-DD, e.g. "
                               "'2026-01-31')"},
        {"timestamp('soon')", "1:11: invalid timestamp 'soon' (expected ISO 8601, e.g. "
                              "'2026-01-31T09:00:00Z')"},
        {"min(orders.amount) + tier", "1:20: cannot apply '+' to a float and a string"},
        /* every error is reported, not just the first */
        {"tierr == 1 and citty == 2", "1:1: unknown field 'tierr' in profiles (did you mean "
                                      "'tier'?)"},
    };
    RUN(P, c, 0);
    static const ecase b[] = {
        {"tier", "1:1: expected a condition (true or false), but this is a string"},
        {"visits + 1", "1:1: expected a condition (true or false), but this is an int"},
        {"visits > 1", "ok"},
        {"null", "ok"},
    };
    RUN(P, b, EXPR_WANT_BOOL);
}

static void test_diag_and_origin(void **st)
{
    diag d;
    diag_init(&d);
    expr_origin o = {"campaigns/winback.cfg", 14, "filter"};
    assert_null(expr_compile("tier == tierr or citty == 'x'", P, &o, EXPR_WANT_BOOL, &d));
    assert_int_equal(d.errors, 2);
    assert_string_equal(d.v[0].file, "campaigns/winback.cfg");
    assert_int_equal(d.v[0].line, 14);
    assert_string_equal(d.v[0].msg,
                        "filter: 1:9: unknown field 'tierr' in profiles (did you mean 'tier'?)");
    assert_string_equal(d.v[1].msg,
                        "filter: 1:18: unknown field 'citty' in profiles (did you mean 'city'?)");
    diag_free(&d);
    diag_init(&d);
    assert_null(expr_compile("x", P, NULL, 0, &d));
    assert_null(d.v[0].file);
    assert_string_equal(d.v[0].msg, "1:1: unknown field 'x' in profiles");
    diag_free(&d);
    /* a NULL scope is an empty one */
    char err[128];
    assert_null(expr_compile_msg("x", NULL, 0, err, sizeof err));
    assert_string_equal(err, "1:1: unknown name 'x'");
    expr *e = expr_compile_msg("1 + 1", NULL, 0, err, sizeof err);
    assert_non_null(e);
    expr_free(e);
}

static void test_precedence(void **st)
{
    /* the loosest operator is the root the checker types */
    static const struct {
        const char *text;
        int type;
    } c[] = {
        {"true or false and false", BATON_T_BOOL},
        {"not visits == 4", BATON_T_BOOL},
        {"visits == 1 + 2 * 3", BATON_T_BOOL},
        {"visits + 1 in [2]", BATON_T_BOOL},
        {"visits + 1 is null", BATON_T_BOOL},
        {"- visits * 2", BATON_T_INT},
        {"score * 2 + visits", BATON_T_FLOAT},
        {"created_at - 1d", BATON_T_TIMESTAMP},
        {"created_at - created_at", BATON_T_DURATION},
        {"birth_date + 1d", BATON_T_DATE},
        {"today() - birth_date", BATON_T_DURATION},
        {"2 * 1h", BATON_T_DURATION},
        {"count(orders)", BATON_T_INT},
        {"avg(orders.items)", BATON_T_FLOAT},
        {"max(orders.created_at)", BATON_T_TIMESTAMP},
        {"null", BATON_T_NULL},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char err[256];
        expr *e = expr_compile_msg(c[i].text, P, 0, err, sizeof err);
        if (!e)
            fail_msg("%s: %s", c[i].text, err);
        if (expr_result_type(e) != c[i].type)
            fail_msg("%s: type %d, want %d", c[i].text, expr_result_type(e), c[i].type);
        expr_free(e);
    }
    char err[256];
    expr *e = expr_compile_msg("event.total + 1", J, 0, err, sizeof err);
    assert_int_equal(expr_result_type(e), EXPR_T_ANY);
    assert_int_equal(expr_ref_at(e, 0)->type, EXPR_T_ANY);
    assert_string_equal(expr_ref_at(e, 0)->prefix, "event");
    assert_string_equal(expr_ref_at(e, 0)->field, "total");
    expr_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_syntax),     cmocka_unit_test(test_names),
        cmocka_unit_test(test_types),      cmocka_unit_test(test_diag_and_origin),
        cmocka_unit_test(test_precedence),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
