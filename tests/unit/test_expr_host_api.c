/* Expressions and templates as a plugin sees them: through the baton_host
 * table, with SDK records and buffers; scopes NULL, "journey" and an
 * entity of the registered schema. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "base/buf.h"
#include "hostapi/lang.h"
#include "hostapi/hostapi.h"
#include "plugin/plugin_host.h"
#include "support/expr_fixture.h"

static int64_t fixed_clock(void)
{
    return 1763892000;
} /* 2026-11-23T10:00:00Z */

static baton_record *sample(const baton_host *h)
{
    baton_record *r = h->record_new();
    baton_value v = {.type = BATON_T_STRING, .v.s = {"gold", 4}};
    h->record_set(r, "tier", &v);
    v = (baton_value){.type = BATON_T_STRING, .v.s = {"Ann <&>", 7}};
    h->record_set(r, "first_name", &v);
    v = (baton_value){.type = BATON_T_INT, .v.i = 150};
    h->record_set(r, "event.total", &v);
    v = (baton_value){.type = BATON_T_TIMESTAMP, .v.ts = 1763892000 - 3600};
    h->record_set(r, "profile.created_at", &v);
    v = (baton_value){.type = BATON_T_STRING, .v.s = {"p42", 3}};
    h->record_set(r, "profile.id", &v);
    return r;
}

static void test_expressions(void **st)
{
    const baton_host *h = plugin_host_api();
    expr_host_set_clock(fixed_clock);
    char err[256];
    baton_record *r = sample(h);
    buf scratch;
    buf_init(&scratch);
    baton_value out;

    /* NULL scope: any name, read from the record by path */
    baton_expr *e =
        h->expr_compile(NULL, "event.total >= 100 and tier == 'gold'", NULL, err, sizeof err);
    assert_non_null(e);
    assert_int_equal(h->expr_eval(e, r, &out, &scratch), 0);
    assert_int_equal(out.type, BATON_T_BOOL);
    assert_int_equal(out.v.b, 1);
    h->expr_free(e);

    /* a string result is copied into scratch */
    e = h->expr_compile(NULL, "upper(tier)", NULL, err, sizeof err);
    assert_int_equal(h->expr_eval(e, r, &out, &scratch), 0);
    assert_int_equal(out.type, BATON_T_STRING);
    assert_int_equal(out.v.s.len, 4);
    assert_memory_equal(out.v.s.ptr, "GOLD", 4);
    assert_ptr_equal(out.v.s.ptr, scratch.data);
    assert_int_equal(h->expr_eval(e, r, &out, NULL), -1); /* nowhere to put it */
    h->expr_free(e);

    /* now() is the host's clock */
    e = h->expr_compile(NULL, "now() - profile.created_at", NULL, err, sizeof err);
    assert_int_equal(h->expr_eval(e, r, &out, &scratch), 0);
    assert_int_equal(out.type, BATON_T_DURATION);
    assert_int_equal(out.v.dur, 3600);
    h->expr_free(e);

    /* errors come back as "line:col: message" */
    assert_null(h->expr_compile(NULL, "tier ==", NULL, err, sizeof err));
    assert_string_equal(err,
                        "1:8: expected a value, a name or '(', found the end of the expression");
    assert_null(h->expr_compile(NULL, NULL, NULL, err, sizeof err));
    assert_string_equal(err, "no expression");

    /* entity and journey scopes need the schema the app registers */
    expr_host_set_schema(NULL);
    assert_null(h->expr_compile(NULL, "tier == 'gold'", "profiles", err, sizeof err));
    assert_string_equal(err, "scope 'profiles': no schema is loaded (use a NULL scope)");
    schema s;
    fx_schema(&s);
    expr_host_set_schema(&s);
    e = h->expr_compile(NULL, "tier == 'gold'", "profiles", err, sizeof err);
    assert_non_null(e);
    assert_int_equal(h->expr_eval(e, r, &out, &scratch), 0);
    assert_int_equal(out.v.b, 1);
    h->expr_free(e);
    assert_null(h->expr_compile(NULL, "tierr == 'gold'", "profiles", err, sizeof err));
    assert_string_equal(err, "1:1: unknown field 'tierr' in profiles (did you mean 'tier'?)");
    assert_null(h->expr_compile(NULL, "tier", "profile", err, sizeof err));
    assert_string_equal(err, "unknown scope 'profile' (did you mean 'profiles'?)");
    e = h->expr_compile(NULL, "profile.id == 'p42' and weather.temp is null", "journey", err,
                        sizeof err);
    assert_non_null(e);
    assert_int_equal(h->expr_eval(e, r, &out, &scratch), 0);
    assert_int_equal(out.v.b, 1);
    h->expr_free(e);
    assert_null(h->expr_compile(NULL, "profile.tierr", "journey", err, sizeof err));
    assert_string_equal(err, "1:1: unknown field 'tierr' in profiles (did you mean 'tier'?)");
    /* aggregates need rows a record cannot carry */
    e = h->expr_compile(NULL, "count(orders) > 1", "profiles", err, sizeof err);
    assert_non_null(e);
    assert_int_equal(h->expr_eval(e, r, &out, &scratch), -1);
    h->expr_free(e);
    expr_host_set_schema(NULL);
    schema_free(&s);

    h->record_free(r);
    buf_free(&scratch);
    expr_host_set_clock(NULL);
}

static void test_templates(void **st)
{
    const baton_host *h = plugin_host_api();
    char err[256];
    baton_record *r = sample(h);
    buf out;
    buf_init(&out);
    baton_template *t = h->template_compile(NULL, "push/{{ profile.id }}", 0, err, sizeof err);
    assert_non_null(t);
    assert_int_equal(h->template_render(t, r, &out), 0);
    assert_string_equal(out.data, "push/p42");
    h->template_free(t);
    buf_reset(&out);
    t = h->template_compile(NULL, "<b>{{ first_name }}</b>{{#if event.total > 100}}!{{/if}}", 1,
                            err, sizeof err);
    assert_int_equal(h->template_render(t, r, &out), 0);
    assert_string_equal(out.data, "<b>Ann &lt;&amp;&gt;</b>!");
    h->template_free(t);
    /* #each needs rows a record cannot carry: not in a plugin's scope */
    buf_reset(&out);
    buf_adds(&out, "kept");
    t = h->template_compile(NULL, "x{{#each orders}}{{/each}}", 0, err, sizeof err);
    assert_null(t);
    assert_string_equal(err, "1:10: unknown name 'orders'");
    assert_null(h->template_compile(NULL, "{{ a", 0, err, sizeof err));
    assert_string_equal(err, "1:1: '{{' is never closed with '}}'");
    assert_string_equal(out.data, "kept");
    h->template_free(NULL);
    h->expr_free(NULL);
    h->record_free(r);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expressions),
        cmocka_unit_test(test_templates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
