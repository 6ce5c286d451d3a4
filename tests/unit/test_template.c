/* Templates: placeholders, HTML escaping, if/else, each with a row bound,
 * errors with line:col, and the list of expressions a campaign selects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/expr_fixture.h"
#include "lang/template.h"

static schema S;
static expr_scope *sc;
static record *prof, *o[3];
static const void *rows[3];
static fx_rows R[1];
static fx_env FX;
static expr_env ENV;

static int setup(void **st)
{
    fx_schema(&S);
    sc = expr_scope_new(&S, schema_entity_find(&S, "profiles"));
    prof = record_new();
    record_set_string(prof, "first_name", "Ann <b>&\"'");
    record_set_string(prof, "tier", "gold");
    record_set_string(prof, "id", "p42");
    record_set_int(prof, "visits", 3);
    const char *cities[] = {"Paris", "Lyon", "Nice"};
    for (int i = 0; i < 3; i++) {
        o[i] = record_new();
        baton_value v = {.type = BATON_T_FLOAT, .v.f = 10.5 * (i + 1)};
        record_set(o[i], "amount", &v);
        record_set_string(o[i], "store.city", cities[i]);
        rows[i] = o[i];
    }
    R[0] = (fx_rows){"orders", rows, 3};
    FX = (fx_env){.top = prof, .rows = R, .nrows = 1, .now = 0};
    ENV = fx_env_make(&FX);
    return 0;
}

static int teardown(void **st)
{
    record_free(prof);
    for (int i = 0; i < 3; i++)
        record_free(o[i]);
    expr_scope_free(sc);
    schema_free(&S);
    return 0;
}

static const char *render(const char *text, unsigned flags)
{
    static char out[2048];
    char err[256];
    template *t = template_compile_msg(text, sc, flags, err, sizeof err);
    if (!t) {
        snprintf(out, sizeof out, "compile:%s", err);
        return out;
    }
    buf b;
    buf_init(&b);
    buf_adds(&b, "");
    expr_arena a;
    expr_arena_init(&a);
    if (template_render(t, &ENV, &a, &b, err, sizeof err) != 0)
        snprintf(out, sizeof out, "error:%s", err);
    else
        snprintf(out, sizeof out, "%s", b.data);
    expr_arena_free(&a);
    buf_free(&b);
    template_free(t);
    return out;
}

static void test_placeholders(void **st)
{
    assert_string_equal(render("Hello {{ first_name }}!", 0), "Hello Ann <b>&\"'!");
    assert_string_equal(render("Hello {{ first_name }}!", TEMPLATE_HTML),
                        "Hello Ann &lt;b&gt;&amp;&quot;&#39;!");
    assert_string_equal(render("{{{ first_name }}}", TEMPLATE_HTML), "Ann <b>&\"'");
    assert_string_equal(render("{{visits}} visits, {{ visits * 2 }}", 0), "3 visits, 6");
    assert_string_equal(render("[{{ city }}]", 0), "[]");
    assert_string_equal(render("{{ upper(tier) }}{{ '{{' }}", 0), "GOLD{{");
    assert_string_equal(render("{{ '}}' }}", 0), "}}");
    assert_string_equal(render("a }} b", 0), "a }} b");
    assert_string_equal(render("{{! a comment }}x", 0), "x");
    assert_string_equal(render("", 0), "");
    assert_string_equal(render("push/{{ id }}", 0), "push/p42");
}

static void test_blocks(void **st)
{
    assert_string_equal(render("{{#if tier == 'gold'}}VIP{{else}}regular{{/if}}", 0), "VIP");
    assert_string_equal(render("{{#if tier == 'x'}}VIP{{else}}regular{{/if}}", 0), "regular");
    assert_string_equal(render("{{#if city == 'x'}}yes{{else}}no{{/if}}", 0), "no");
    assert_string_equal(render("{{#if visits > 1}}many{{/if}}.", 0), "many.");
    assert_string_equal(render("{{#if true}}{{#if false}}a{{else}}b{{/if}}{{/if}}", 0), "b");
    assert_string_equal(render("{{#each orders}}{{ @index }}:{{ amount }} {{/each}}", 0),
                        "0:10.5 1:21 2:31.5 ");
    assert_string_equal(render("{{#each orders limit 2}}{{ store.city }},{{/each}}", 0),
                        "Paris,Lyon,");
    assert_string_equal(
        render("{{#each orders}}{{#if amount > 20}}{{ store.city }} {{ tier }};{{/if}}{{/each}}",
               0),
        "Lyon gold;Nice gold;");
    assert_string_equal(render("{{ count(orders) }} orders", 0), "3 orders");
    /* where, order by, limit: rows kept, sorted (nulls last), then cut */
    assert_string_equal(
        render("{{#each orders where amount > 15 order by amount desc}}{{ store.city }},{{/each}}",
               0),
        "Nice,Lyon,");
    assert_string_equal(render("{{#each orders order by store.city limit 2}}{{ @index }}={{ "
                               "store.city }} {{/each}}",
                               0),
                        "0=Lyon 1=Nice ");
    assert_string_equal(render("{{#each orders where store.city != 'Lyon' order by amount desc, "
                               "store.city asc limit 1}}{{ amount }}{{/each}}",
                               0),
                        "31.5");
    assert_string_equal(render("{{#each orders where amount > 100}}x{{/each}}none", 0), "none");
}

static void test_errors(void **st)
{
    assert_string_equal(render("Hi {{ first_nam }}", 0),
                        "compile:1:7: unknown field 'first_nam' in profiles (did you mean "
                        "'first_name'?)");
    assert_string_equal(render("line1\n  {{ tier == }}", 0),
                        "compile:2:13: expected a value, a name or '(', found the end of the "
                        "expression");
    assert_string_equal(render("a {{ tier", 0), "compile:1:3: '{{' is never closed with '}}'");
    assert_string_equal(render("{{#if tier == 'a'}}x", 0),
                        "compile:1:1: {{#if}} opened here is never closed with {{/if}}");
    assert_string_equal(render("{{/if}}", 0),
                        "compile:1:1: {{/if}} closes nothing: no {{#if}} is open");
    assert_string_equal(render("{{else}}", 0), "compile:1:1: {{else}} outside {{#if}}...{{/if}}");
    assert_string_equal(render("{{#each orders}}x{{/if}}", 0),
                        "compile:1:18: {{/if}} closes the {{#each}} opened at 1:1: expected "
                        "{{/each}}");
    assert_string_equal(render("{{#each ordres}}x{{/each}}", 0),
                        "compile:1:9: unknown field 'ordres' in profiles (did you mean "
                        "'orders'?)");
    assert_string_equal(render("{{#each tier}}x{{/each}}", 0),
                        "compile:1:9: 'tier' is a field of profiles, not a one-to-many link "
                        "(one of: the reverse links)");
    assert_string_equal(render("{{#if tier}}x{{/if}}", 0),
                        "compile:1:7: expected a condition (true or false), but this is a "
                        "string");
    assert_string_equal(render("{{ }}", 0),
                        "compile:1:1: empty tag {{ }}: put an expression inside (write {{ '{{' "
                        "}} for a literal '{{')");
    assert_string_equal(
        render("{{#for x}}", 0),
        "compile:1:1: unknown block '{{#for}}' (known: {{#if ...}}, {{#each ...}})");
    assert_string_equal(render("{{@index}}", 0), "compile:1:1: {{@index}} outside {{#each}}");
    assert_string_equal(render("{{#each orders limit 0}}{{/each}}", 0),
                        "compile:1:22: limit takes a number of rows from 1 to 100000");
    assert_string_equal(render("{{#each orders where amount}}{{/each}}", 0),
                        "compile:1:22: expected a condition (true or false), but this is a float");
    assert_string_equal(render("{{#each orders order by amont}}{{/each}}", 0),
                        "compile:1:25: unknown field 'amont' in orders (did you mean 'amount'?)");
    assert_string_equal(render("{{#each orders sorted}}{{/each}}", 0),
                        "compile:1:16: unexpected 'sorted' in {{#each}}: write {{#each orders "
                        "where ... order by ... limit 20}}");
    /* blocks nested past any real template: one error, no stack overflow */
    enum { DEEP = 100000 };
    char *deep = malloc(DEEP * 20 + 16), *p = deep;
    for (int i = 0; i < DEEP; i++)
        p += sprintf(p, "{{#if true}}");
    p += sprintf(p, "x");
    for (int i = 0; i < DEEP; i++)
        p += sprintf(p, "{{/if}}");
    assert_string_equal(render(deep, 0), "compile:1:1201: {{#if}} nested too deeply (more than "
                                         "100 blocks one inside another)");
    /* 100 levels are fine */
    p = deep;
    for (int i = 0; i < 100; i++)
        p += sprintf(p, "{{#if true}}");
    p += sprintf(p, "x");
    for (int i = 0; i < 100; i++)
        p += sprintf(p, "{{/if}}");
    assert_string_equal(render(deep, 0), "x");
    free(deep);
    /* every error is reported, through diag, with the origin */
    diag d;
    diag_init(&d);
    expr_origin org = {"campaigns/a.cfg", 12, "subject"};
    assert_null(template_compile("{{ a }} and {{ b }}", sc, &org, 0, &d));
    assert_int_equal(d.errors, 2);
    assert_string_equal(d.v[0].msg, "subject: 1:4: unknown field 'a' in profiles");
    assert_string_equal(d.v[1].file, "campaigns/a.cfg");
    assert_int_equal(d.v[1].line, 12);
    diag_free(&d);
}

static void test_exprs_and_render_errors(void **st)
{
    char err[128];
    template *t = template_compile_msg("{{ first_name }} {{#if visits > 1}}{{#each orders}}"
                                       "{{ store.city }}{{/each}}{{/if}}",
                                       sc, 0, err, sizeof err);
    assert_non_null(t);
    assert_int_equal(template_expr_count(t), 4);
    assert_string_equal(expr_text(template_expr_at(t, 0)), "first_name");
    assert_string_equal(expr_text(template_expr_at(t, 1)), "visits > 1");
    assert_string_equal(expr_text(template_expr_at(t, 2)), "count(orders)");
    const expr *inner = template_expr_at(t, 3);
    assert_int_equal(expr_ref_at(inner, 0)->level, 1);
    assert_ptr_equal(expr_ref_at(inner, 0)->outer, expr_ref_at(template_expr_at(t, 2), 0));
    assert_int_equal(template_is_static(t), 0);
    /* a record env has no rows: rendering fails with the reason */
    expr_env env = expr_env_record(prof, 0);
    buf b;
    buf_init(&b);
    assert_int_equal(template_render(t, &env, NULL, &b, err, sizeof err), -1);
    assert_string_equal(err, "{{#each orders}}: rows of a one-to-many link are not available here");
    buf_free(&b);
    template_free(t);
    t = template_compile_msg("plain", sc, 0, err, sizeof err);
    assert_int_equal(template_is_static(t), 1);
    template_free(t);
}

/* Each escaping context, byte for byte, with values that try to break
 * out of it. */
static void test_escaping_contexts(void **st)
{
    record_set_string(prof, "phone", "1\r\nBcc: evil@example.com\t<x>");
    /* a URL: percent-encoded (RFC 3986 unreserved kept) */
    assert_string_equal(
        render("https://x.example/u/{{ id }}?n={{ first_name }}&v={{ visits }}", TEMPLATE_URL),
        "https://x.example/u/p42?n=Ann%20%3Cb%3E%26%22%27&v=3");
    /* a form body: the same, a space as '+' */
    assert_string_equal(render("to={{ first_name }}&v={{ visits }}", TEMPLATE_FORM),
                        "to=Ann+%3Cb%3E%26%22%27&v=3");
    /* JSON: inside a string escaped, where a value goes a JSON value */
    assert_string_equal(
        render(
            "{\"n\": \"{{ first_name }}\", \"q\": \"a\\\"{{ tier }}\", \"v\": {{ visits }}, "
            "\"t\": {{ tier }}, \"c\": {{ city }}, \"s\": {{ score }}, \"ok\": {{ visits > 1 }}}",
            TEMPLATE_JSON),
        "{\"n\": \"Ann <b>&\\\"'\", \"q\": \"a\\\"gold\", \"v\": 3, \"t\": \"gold\", \"c\": null, "
        "\"s\": null, \"ok\": true}");
    assert_string_equal(render("{\"p\": \"{{ phone }}\"}", TEMPLATE_JSON),
                        "{\"p\": \"1\\r\\nBcc: evil@example.com\\t<x>\"}");
    /* a header: no line break gets through */
    assert_string_equal(render("Hi {{ phone }}", TEMPLATE_HEADER), "Hi 1Bcc: evil@example.com <x>");
    /* a header of <URL>s: inside <..> percent-encoded, outside no < > , */
    assert_string_equal(render("<https://x.example/u?n={{ first_name }}>, <mailto:u@x.example?"
                               "subject={{ tier }}>, {{ first_name }}{{ phone }}",
                               TEMPLATE_URL_LIST),
                        "<https://x.example/u?n=Ann%20%3Cb%3E%26%22%27>, <mailto:u@x.example?"
                        "subject=gold>, Ann b&\"'1Bcc: evil@example.com x");
    /* an MQTT topic: one level per value */
    record_set_string(prof, "phone", "a/+/#%");
    assert_string_equal(render("push/{{ phone }}/{{ id }}", TEMPLATE_TOPIC),
                        "push/a%2F%2B%2F%23%25/p42");
    /* the List-Unsubscribe hijack of issue 13 */
    record_set_string(prof, "phone", "x>, <https://evil.example/unsub?id=1");
    assert_string_equal(
        render("<https://shop.example/u/{{ id }}?n={{ phone }}>", TEMPLATE_URL_LIST),
        "<https://shop.example/u/p42?n=x%3E%2C%20%3Chttps%3A%2F%2Fevil.example%2F"
        "unsub%3Fid%3D1>");
    /* {{{ }}} is the way around it, with a warning where it matters */
    assert_string_equal(render("<{{{ phone }}}>", TEMPLATE_URL_LIST),
                        "<x>, <https://evil.example/unsub?id=1>");
    diag d;
    diag_init(&d);
    expr_origin org = {"channels.cfg", 3, "body"};
    template *t = template_compile("{\"a\": \"{{{ tier }}}\"}", sc, &org, TEMPLATE_JSON, &d);
    assert_non_null(t);
    assert_int_equal(d.errors, 0);
    assert_int_equal(d.n, 1);
    assert_string_equal(d.v[0].msg, "body: 1:8: {{{ }}} is not escaped: in a JSON body a value "
                                    "could change what is sent (write {{ }} unless the value is "
                                    "trusted)");
    assert_string_equal(template_warning(t), "1:8: {{{ }}} is not escaped: in a JSON body a value "
                                             "could change what is sent (write {{ }} unless the "
                                             "value is trusted)");
    template_free(t);
    t = template_compile("<p>{{{ tier }}}</p>", sc, &org, TEMPLATE_HTML, &d);
    assert_null(template_warning(t)); /* trusted HTML is what {{{ }}} is for */
    assert_int_equal(d.n, 1);
    template_free(t);
    diag_free(&d);
    /* parts by name */
    assert_int_equal(template_part_escape("html"), TEMPLATE_HTML);
    assert_int_equal(template_part_escape("subject"), TEMPLATE_HEADER);
    assert_int_equal(template_part_escape("list_unsubscribe"), TEMPLATE_URL_LIST);
    assert_int_equal(template_part_escape("text"), TEMPLATE_TEXT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_placeholders),
        cmocka_unit_test(test_blocks),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_exprs_and_render_errors),
        cmocka_unit_test(test_escaping_contexts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
