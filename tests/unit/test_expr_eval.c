/* The in-memory evaluator: every operator, function, precedence level and
 * NULL case, over a profile record with orders rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "lang/expr.h"
#include "support/expr_fixture.h"
#include "base/timefmt.h"

static schema S;
static expr_scope *profiles_sc, *journey_sc, *open_sc;
static record *prof, *o1, *o2, *o3;
static fx_env FX;
static expr_env ENV;
static const void *order_rows[3];
static fx_rows ROWS[1];

static void set_ts(record *r, const char *name, const char *iso)
{
    baton_value v = {.type = BATON_T_TIMESTAMP};
    assert_int_equal(timestamp_parse(iso, strlen(iso), &v.v.ts), 0);
    record_set(r, name, &v);
}

static void set_f(record *r, const char *name, double f)
{
    baton_value v = {.type = BATON_T_FLOAT, .v.f = f};
    record_set(r, name, &v);
}

static int setup(void **st)
{
    fx_schema(&S);
    profiles_sc = expr_scope_new(&S, schema_entity_find(&S, "profiles"));
    const char *sources[] = {"weather"};
    journey_sc = expr_scope_journey(&S, schema_entity_find(&S, "profiles"), sources, 1);
    open_sc = expr_scope_new(NULL, NULL);
    expr_scope_set_open(open_sc, 1);

    prof = record_new();
    record_set_string(prof, "id", "p1");
    record_set_string(prof, "first_name", "Émile");
    record_set_string(prof, "tier", "gold");
    record_set_string(prof, "email", "  e@x.org ");
    record_set_int(prof, "visits", 3);
    set_f(prof, "score", 2.5);
    set_ts(prof, "created_at", "2026-01-01T00:00:00Z");
    baton_value d = {.type = BATON_T_DATE};
    date_parse("1990-05-17", 10, &d.v.date);
    record_set(prof, "birth_date", &d);
    baton_value b = {.type = BATON_T_BOOL, .v.b = 1};
    record_set(prof, "consent_email", &b);
    b.v.b = 0;
    record_set(prof, "consent_sms", &b);
    /* journey names, looked up by path */
    record_set_string(prof, "profile.tier", "gold");
    set_ts(prof, "profile.created_at", "2026-01-01T00:00:00Z");
    record_set_int(prof, "event.total", 150);
    record_set_string(prof, "event.time", "2026-11-23T09:00:00Z");
    record_set_string(prof, "event.note", "12");
    record_set_string(prof, "event.type", "cart_updated");
    record_set_string(prof, "event.word", "abc");
    set_f(prof, "weather.temperature", 3.5);

    o1 = record_new();
    set_f(o1, "amount", 10.5);
    record_set_int(o1, "items", 1);
    record_set_string(o1, "store.city", "Paris");
    set_ts(o1, "created_at", "2026-11-01T00:00:00Z");
    o2 = record_new();
    set_f(o2, "amount", 200);
    record_set_int(o2, "items", 2);
    record_set_string(o2, "store.city", "Lyon");
    set_ts(o2, "created_at", "2026-06-01T00:00:00Z");
    o3 = record_new(); /* amount, store unknown */
    record_set_int(o3, "items", 3);
    set_ts(o3, "created_at", "2025-01-01T00:00:00Z");
    order_rows[0] = o1;
    order_rows[1] = o2;
    order_rows[2] = o3;
    ROWS[0] = (fx_rows){"orders", order_rows, 3};
    FX = (fx_env){.top = prof, .rows = ROWS, .nrows = 1};
    assert_int_equal(timestamp_parse("2026-11-23T10:00:00Z", 20, &FX.now), 0);
    ENV = fx_env_make(&FX);
    return 0;
}

static int teardown(void **st)
{
    record_free(prof);
    record_free(o1);
    record_free(o2);
    record_free(o3);
    expr_scope_free(profiles_sc);
    expr_scope_free(journey_sc);
    expr_scope_free(open_sc);
    schema_free(&S);
    return 0;
}

typedef struct tcase {
    const char *text;
    const char *want;
} tcase;

static void run(const expr_scope *sc, const tcase *c, size_t n)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        const char *got = fx_eval(c[i].text, sc, &ENV);
        if (strcmp(got, c[i].want) != 0) {
            print_error("%s\n  want %s\n  got  %s\n", c[i].text, c[i].want, got);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}
#define RUN(sc, cases) run(sc, cases, sizeof cases / sizeof cases[0])

static void test_literals(void **st)
{
    static const tcase c[] = {
        {"42", "int:42"},
        {"3.5", "float:3.5"},
        {"1e3", "float:1000"},
        {"'text'", "string:text"},
        {"\"dq\"", "string:dq"},
        {"'it\\'s'", "string:it's"},
        {"'a\\nb'", "string:a\nb"},
        {"true", "bool:true"},
        {"FALSE", "bool:false"},
        {"null", "null:"},
        {"90d", "duration:90d"},
        {"12h", "duration:12h"},
        {"30m", "duration:30m"},
        {"45s", "duration:45s"},
        {"2w", "duration:2w"},
        {"1h30m", "duration:90m"},
        {"date('2026-01-31')", "date:2026-01-31"},
        {"timestamp('2026-01-31T09:00:00Z')", "timestamp:2026-01-31T09:00:00Z"},
        {"timestamp('2026-01-31T10:00:00+01:00')", "timestamp:2026-01-31T09:00:00Z"},
        {"'ünï'", "string:ünï"},
        {"''", "string:"},
    };
    RUN(profiles_sc, c);
}

static void test_arithmetic(void **st)
{
    static const tcase c[] = {
        {"1 + 2 * 3", "int:7"},
        {"(1 + 2) * 3", "int:9"},
        {"10 - 4 - 3", "int:3"},
        {"2 * 3 % 4", "int:2"},
        {"7 / 2", "int:3"},
        {"-7 / 2", "int:-3"},
        {"-7 % 3", "int:-1"},
        {"7 % -3", "int:1"},
        {"7.0 / 2", "float:3.5"},
        {"1 / 0", "null:"},
        {"1.5 / 0", "null:"},
        {"5 % 0", "null:"},
        {"- 3 + 1", "int:-2"},
        {"--3", "int:3"},
        {"-score", "float:-2.5"},
        {"visits * score", "float:7.5"},
        {"9223372036854775807 + 1", "float:9.22337203685478e+18"},
        {"visits + null", "null:"},
        {"-null", "null:"},
        {"1 + 2 * 3 - -4 % 3", "int:8"},
        {"abs(-3)", "int:3"},
        {"abs(-2.5)", "float:2.5"},
        {"abs(-3d)", "duration:3d"},
        {"round(2.5)", "float:3"},
        {"round(-2.5)", "float:-3"},
        {"round(1.005, 2)", "float:1.01"},
        {"round(2)", "float:2"},
        {"round(null)", "null:"},
    };
    RUN(profiles_sc, c);
}

static void test_time(void **st)
{
    static const tcase c[] = {
        {"now()", "timestamp:2026-11-23T10:00:00Z"},
        {"today()", "date:2026-11-23"},
        {"now() - created_at", "duration:7834h"},
        {"now() - created_at > 30d", "bool:true"},
        {"created_at + 1d", "timestamp:2026-01-02T00:00:00Z"},
        {"1d + created_at", "timestamp:2026-01-02T00:00:00Z"},
        {"created_at - 90m", "timestamp:2025-12-31T22:30:00Z"},
        {"birth_date + 1d", "date:1990-05-18"},
        {"birth_date - 12h", "date:1990-05-16"},
        {"today() - birth_date", "duration:13339d"},
        {"birth_date < created_at", "bool:true"},
        {"date(created_at) == date('2026-01-01')", "bool:true"},
        {"timestamp(birth_date)", "timestamp:1990-05-17T00:00:00Z"},
        {"date(now())", "date:2026-11-23"},
        {"year(birth_date)", "int:1990"},
        {"month(birth_date)", "int:5"},
        {"day(birth_date)", "int:17"},
        {"hour(now())", "int:10"},
        {"hour(birth_date)", "int:0"},
        {"weekday(now())", "int:1"},
        {"weekday(date('2026-11-22'))", "int:0"},
        {"weekday(date('1969-12-31'))", "int:3"},
        /* in a zone: the wall clock there, daylight saving time included */
        {"hour(now(), 'Europe/Paris')", "int:11"},
        {"hour(now(), 'Asia/Kolkata')", "int:15"},
        {"hour(now(), 'Pacific/Kiritimati')", "int:0"},
        {"weekday(now(), 'Pacific/Kiritimati')", "int:2"},
        {"today('Pacific/Kiritimati')", "date:2026-11-24"},
        {"today('America/Los_Angeles')", "date:2026-11-23"},
        {"today('UTC') == today()", "bool:true"},
        {"hour(timestamp('2026-03-29T00:59:59Z'), 'Europe/Paris')", "int:1"},
        {"hour(timestamp('2026-03-29T01:00:00Z'), 'Europe/Paris')", "int:3"},
        {"hour(timestamp('2026-11-01T05:30:00Z'), 'America/New_York')", "int:1"},
        {"hour(timestamp('2026-11-01T06:30:00Z'), 'America/New_York')", "int:1"},
        {"hour(timestamp('2026-11-01T07:30:00Z'), 'America/New_York')", "int:2"},
        {"weekday(birth_date, 'Asia/Tokyo')", "int:4"},
        {"hour(birth_date, 'Asia/Tokyo')", "int:0"},
        {"hour(now(), tier)", "null:"},
        {"today(tier)", "null:"},
        {"hour(now(), null)", "null:"},
        {"year(date('1969-12-31'))", "int:1969"},
        {"2 * 1h", "duration:2h"},
        {"1h * 3", "duration:3h"},
        {"1d - 1h", "duration:23h"},
        {"-1d", "duration:-1d"},
        {"1h > 59m", "bool:true"},
        {"created_at > timestamp('2025-12-31T23:59:59Z')", "bool:true"},
        {"created_at == date('2026-01-01')", "bool:true"},
    };
    RUN(profiles_sc, c);
}

static void test_comparisons_and_logic(void **st)
{
    static const tcase c[] = {
        {"tier == 'gold'", "bool:true"},
        {"tier != 'gold'", "bool:false"},
        {"tier < 'silver'", "bool:true"},
        {"tier >= 'gold'", "bool:true"},
        {"'a' < 'b'", "bool:true"},
        {"'a' < 'ab'", "bool:true"},
        {"'Z' < 'a'", "bool:true"},
        {"'é' > 'z'", "bool:true"},
        {"visits == 3.0", "bool:true"},
        {"visits < 3.5", "bool:true"},
        {"score > 2", "bool:true"},
        {"consent_email == true", "bool:true"},
        {"consent_email", "bool:true"},
        {"not consent_sms", "bool:true"},
        {"city == 'Paris'", "null:"},
        {"city != 'Paris'", "null:"},
        {"city < 'x'", "null:"},
        {"not (city == 'Paris')", "null:"},
        {"city == 'Paris' and false", "bool:false"},
        {"false and city == 'Paris'", "bool:false"},
        {"city == 'Paris' and true", "null:"},
        {"city == 'Paris' or true", "bool:true"},
        {"city == 'Paris' or false", "null:"},
        {"null and null", "null:"},
        {"null or null", "null:"},
        {"not null", "null:"},
        {"true or false and false", "bool:true"},
        {"(true or false) and false", "bool:false"},
        {"not true or true", "bool:true"},
        {"not (true or true)", "bool:false"},
        {"not visits == 4", "bool:true"},
        {"visits == 1 + 2", "bool:true"},
        {"city is null", "bool:true"},
        {"city is not null", "bool:false"},
        {"tier is null", "bool:false"},
        {"tier is not null", "bool:true"},
        {"visits + 1 is not null", "bool:true"},
        {"tier in ['gold', 'silver']", "bool:true"},
        {"tier in ['silver']", "bool:false"},
        {"tier not in ['silver']", "bool:true"},
        {"tier not in ['gold']", "bool:false"},
        {"tier in []", "bool:false"},
        {"tier not in []", "bool:true"},
        {"city in []", "bool:false"},
        {"city in ['a']", "null:"},
        {"city not in ['a']", "null:"},
        {"tier in ['silver', null]", "null:"},
        {"tier in ['gold', null]", "bool:true"},
        {"tier not in ['silver', null]", "null:"},
        {"visits in [1, 2 + 1]", "bool:true"},
        {"visits in [3.0]", "bool:true"},
        {"visits + 1 in [4] and tier == 'gold'", "bool:true"},
        {"TIER == 'gold'", "compile:1:1: unknown field 'TIER' in profiles (did you mean 'tier'?)"},
        {"tier == 'gold' AND visits > 1", "bool:true"},
    };
    RUN(profiles_sc, c);
}

static void test_strings(void **st)
{
    static const tcase c[] = {
        {"lower(first_name)", "string:émile"},
        {"upper(first_name)", "string:ÉMILE"},
        {"upper('straße ÿ ő ĳ')", "string:STRAßE Ÿ Ő Ĳ"},
        {"lower('ÀÉÎÕÜ ŸŁŽ')", "string:àéîõü ÿłž"},
        {"lower('ΑΒΓ')", "string:ΑΒΓ"},
        {"length(first_name)", "int:5"},
        {"length('')", "int:0"},
        {"length('日本語')", "int:3"},
        {"trim(email)", "string:e@x.org"},
        {"length(trim(email))", "int:7"},
        {"trim('  ')", "string:"},
        {"contains(email, '@')", "bool:true"},
        {"contains(email, '')", "bool:true"},
        {"contains(email, 'zz')", "bool:false"},
        {"contains(city, 'a')", "null:"},
        {"starts_with(tier, 'go')", "bool:true"},
        {"starts_with(tier, '')", "bool:true"},
        {"starts_with(tier, 'gold!')", "bool:false"},
        {"ends_with(tier, 'ld')", "bool:true"},
        {"ends_with(tier, 'gold')", "bool:true"},
        {"ends_with(tier, 'xgold')", "bool:false"},
        {"ends_with(first_name, 'ile')", "bool:true"},
        {"coalesce(city, phone, 'none')", "string:none"},
        {"coalesce(city, tier)", "string:gold"},
        {"coalesce(city)", "null:"},
        {"coalesce(null, 1, 2.5)", "int:1"},
        {"lower(city)", "null:"},
        {"length(city)", "null:"},
    };
    RUN(profiles_sc, c);
}

static void test_aggregates(void **st)
{
    static const tcase c[] = {
        {"count(orders)", "int:3"},
        {"count(orders where amount > 100)", "int:1"},
        {"count(orders where amount < 100 or amount > 100)", "int:2"},
        {"count(orders.amount)", "int:2"},
        {"sum(orders.amount)", "float:210.5"},
        {"sum(orders.items)", "int:6"},
        {"sum(orders.items where items > 5)", "null:"},
        {"avg(orders.items)", "float:2"},
        {"avg(orders.amount)", "float:105.25"},
        {"min(orders.amount)", "float:10.5"},
        {"max(orders.amount)", "float:200"},
        {"max(orders.created_at)", "timestamp:2026-11-01T00:00:00Z"},
        {"max(orders.created_at) < now() - 90d", "bool:false"},
        {"min(orders.created_at where items > 1)", "timestamp:2025-01-01T00:00:00Z"},
        {"exists(orders)", "bool:true"},
        {"exists(orders where amount > 1000)", "bool:false"},
        {"exists(orders where store.city == 'Lyon')", "bool:true"},
        {"count(orders where store.city != 'Lyon')", "int:1"},
        {"count(orders where created_at > now() - 90d)", "int:1"},
        {"count(orders where items > 1) + 1", "int:3"},
        {"max(orders.amount where amount is null)", "null:"},
    };
    RUN(profiles_sc, c);
}

static void test_untyped(void **st)
{
    static const tcase c[] = {
        {"profile.tier == 'gold' and event.total >= 100 and now() - profile.created_at > 30d",
         "bool:true"},
        {"event.total + 1", "int:151"},
        {"event.total > 99.5", "bool:true"},
        {"event.time > now() - 2h", "bool:true"},
        {"now() - event.time", "duration:1h"},
        {"event.note == 12", "bool:true"},
        {"event.note + 1", "int:13"},
        {"event.note == 'x'", "bool:false"},
        {"event.type == 'cart_updated'", "bool:true"},
        {"event.missing == 1", "null:"},
        {"event.missing is null", "bool:true"},
        {"event.word > 3", "null:"},
        {"event.word and true", "null:"},
        {"event.type > 3", "compile:1:12: cannot compare a string with an int"},
        {"weather.temperature < 5", "bool:true"},
        {"lower(event.type)", "string:cart_updated"},
        {"upper(event.total)", "null:"},
        {"event", "compile:1:1: 'event' needs a field: event.<name>"},
        {"profile.tierr", "compile:1:1: unknown field 'tierr' in profiles (did you mean 'tier'?)"},
        {"wether.temperature", "compile:1:1: unknown name 'wether' (did you mean 'weather'?)"},
        {"count(profile.orders)", "int:0"},
    };
    RUN(journey_sc, c);
}

static void test_open_scope(void **st)
{
    static const tcase c[] = {
        {"anything.at.all", "null:"},
        {"tier", "string:gold"},
        {"event.total * 2", "int:300"},
        {"count(orders)", "compile:1:7: unknown name 'orders'"},
    };
    RUN(open_sc, c);
}

static void test_record_env_and_bool(void **st)
{
    char err[128];
    expr *e = expr_compile_msg("tier == 'gold' and visits > 2", profiles_sc, EXPR_WANT_BOOL, err,
                               sizeof err);
    assert_non_null(e);
    expr_env env = expr_env_record(prof, 0);
    assert_int_equal(expr_eval_bool(e, &env, NULL, err, sizeof err), 1);
    assert_int_equal(expr_result_type(e), BATON_T_BOOL);
    assert_string_equal(expr_text(e), "tier == 'gold' and visits > 2");
    assert_int_equal(expr_ref_count(e), 2);
    assert_string_equal(expr_ref_at(e, 0)->path, "tier");
    assert_int_equal(expr_ref_at(e, 0)->type, BATON_T_STRING);
    assert_null(expr_ref_at(e, 2));
    expr_free(e);
    e = expr_compile_msg("city == 'x'", profiles_sc, EXPR_WANT_BOOL, err, sizeof err);
    assert_int_equal(expr_eval_bool(e, &env, NULL, err, sizeof err), 0); /* NULL: not kept */
    expr_free(e);
    /* refs: links, prefixes, levels */
    expr_scope *osc = expr_scope_new(&S, schema_entity_find(&S, "orders"));
    e = expr_compile_msg("store.city == 'x' and profile.tier == 'gold'", osc, 0, err, sizeof err);
    assert_non_null(e);
    const expr_ref *r = expr_ref_at(e, 0);
    assert_string_equal(r->path, "store.city");
    assert_int_equal(r->nhops, 1);
    assert_string_equal(r->hops[0]->name, "store");
    assert_string_equal(r->entity->name, "stores");
    assert_null(r->prefix);
    expr_free(e);
    e = expr_compile_msg("count(orders where amount > 1)", profiles_sc, 0, err, sizeof err);
    assert_int_equal(expr_ref_count(e), 2);
    assert_int_equal(expr_ref_at(e, 0)->kind, EXPR_REF_ROWS);
    assert_string_equal(expr_ref_at(e, 0)->rows->from->name, "orders");
    assert_int_equal(expr_ref_at(e, 1)->level, 1);
    assert_ptr_equal(expr_ref_at(e, 1)->outer, expr_ref_at(e, 0));
    expr_free(e);
    expr_scope_free(osc);
    /* a string result needs an arena; without one evaluation fails cleanly */
    e = expr_compile_msg("lower(tier)", profiles_sc, 0, err, sizeof err);
    baton_value v;
    assert_int_equal(expr_eval(e, &env, NULL, &v, err, sizeof err), -1);
    assert_non_null(strstr(err, "arena"));
    expr_free(e);
    /* the record env has no rows: aggregates fail with a reason */
    e = expr_compile_msg("count(orders)", profiles_sc, 0, err, sizeof err);
    assert_int_equal(expr_eval(e, &env, NULL, &v, err, sizeof err), -1);
    assert_string_equal(err, "'orders': rows of a one-to-many link are not available here");
    expr_free(e);
}

static void test_values(void **st)
{
    baton_value a = {.type = BATON_T_INT, .v.i = 9007199254740993LL};
    baton_value b = {.type = BATON_T_FLOAT, .v.f = 9007199254740992.0};
    assert_int_equal(expr_value_compare(&a, &b), 1);
    assert_int_equal(expr_value_compare(&b, &a), -1);
    baton_value s = {.type = BATON_T_STRING, .v.s = {"x", 1}};
    assert_int_equal(expr_value_compare(&a, &s), 2);
    baton_value t = {.type = BATON_T_BOOL, .v.b = 1};
    assert_int_equal(expr_value_true(&t), 1);
    assert_int_equal(expr_value_true(&a), 0);
    buf out;
    buf_init(&out);
    buf_adds(&out, "");
    baton_value f = {.type = BATON_T_FLOAT, .v.f = 59.9};
    expr_value_format(&f, &out);
    assert_string_equal(out.data, "59.9");
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_arithmetic),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_comparisons_and_logic),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_aggregates),
        cmocka_unit_test(test_untyped),
        cmocka_unit_test(test_open_scope),
        cmocka_unit_test(test_record_env_and_bool),
        cmocka_unit_test(test_values),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
