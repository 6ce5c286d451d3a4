/* core/dispatch/content: the delivery log's copy of a message, written by
 * hand, is the text jansson made of the same message (the writer it
 * replaces, kept here as the reference), and reads back as the message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delivery/content.h"
#include "base/record.h"

/* The jansson writer content_json replaced. */
static char *reference(size_t nparts, char *const *names, char *const *values, const record *r)
{
    json_t *o = json_object(), *parts = json_array();
    for (size_t i = 0; i < nparts; i++)
        json_array_append_new(parts, json_pack("[ss]", names[i], values[i]));
    json_object_set_new(o, "parts", parts);
    if (r) {
        json_t *row = json_object();
        for (size_t i = 0; i < r->n; i++) {
            const baton_value *v = &r->v[i].value;
            json_t *j;
            switch (v->type) {
            case BATON_T_BOOL: j = json_boolean(v->v.b); break;
            case BATON_T_INT: j = json_integer(v->v.i); break;
            case BATON_T_FLOAT: j = json_real(v->v.f); break;
            case BATON_T_STRING: j = json_stringn(v->v.s.ptr, v->v.s.len); break;
            case BATON_T_DATE: j = json_pack("{sI}", "date", (json_int_t)v->v.date); break;
            case BATON_T_TIMESTAMP: j = json_pack("{sI}", "ts", (json_int_t)v->v.ts); break;
            case BATON_T_DURATION: j = json_pack("{sI}", "dur", (json_int_t)v->v.dur); break;
            default: j = json_null(); break;
            }
            json_object_set_new(row, r->v[i].name, j ? j : json_null());
        }
        json_object_set_new(o, "row", row);
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static void same_as_reference(size_t nparts, char *const *names, char *const *values,
                              const record *r)
{
    char *mine = content_json(nparts, names, values, r);
    char *ref = reference(nparts, names, values, r);
    assert_non_null(ref);
    assert_string_equal(mine, ref);
    free(mine);
    free(ref);
}

static void set_str(record *r, const char *name, const char *s, size_t len)
{
    baton_value v = {.type = BATON_T_STRING, .v.s = {s, len}};
    record_set(r, name, &v);
}

static void set_float(record *r, const char *name, double f)
{
    baton_value v = {.type = BATON_T_FLOAT, .v.f = f};
    record_set(r, name, &v);
}

static void test_matches_jansson(void **state)
{
    char *names[] = {"title", "body", "bad\xff", "html"};
    char *values[] = {"Your cart", "8.5 in \"your\" cart\\ \n\t\r\b\f\x01\x1f\x7f é ✓ 😀 /", "x",
                      "<p>caf\xc3\xa9</p>"};
    same_as_reference(0, names, values, NULL);
    same_as_reference(2, names, values, NULL);
    same_as_reference(4, names, values, NULL); /* a part not UTF-8 is dropped */
    char *bad_value[] = {"ok", "no\xc3"};
    char *two[] = {"a", "b"};
    same_as_reference(2, two, bad_value, NULL);

    record *r = record_new();
    same_as_reference(2, names, values, r); /* an empty row */
    record_set_string(r, "id", "d74347");
    record_set_string(r, "profile.id", "d74347");
    record_set_int(r, "n", -42);
    record_set_int(r, "max", INT64_MAX);
    record_set_int(r, "min", INT64_MIN);
    baton_value b = {.type = BATON_T_BOOL, .v.b = 1};
    record_set(r, "yes", &b);
    b.v.b = 0;
    record_set(r, "no", &b);
    baton_value null = {.type = BATON_T_NULL};
    record_set(r, "nothing", &null);
    baton_value d = {.type = BATON_T_DATE, .v.date = 19000};
    record_set(r, "day", &d);
    baton_value ts = {.type = BATON_T_TIMESTAMP, .v.ts = 1700000000};
    record_set(r, "at", &ts);
    baton_value dur = {.type = BATON_T_DURATION, .v.dur = -3600};
    record_set(r, "for", &dur);
    const double floats[] = {8.5,    0.1,
                             3.0,    -0.0,
                             1e300,  1e-5,
                             1e20,   123456789012345678.0,
                             1e-300, 2.5e-7,
                             1e16,   -1e22,
                             5e-324, 1.7976931348623157e308};
    char name[32];
    for (size_t i = 0; i < sizeof floats / sizeof *floats; i++) {
        snprintf(name, sizeof name, "f%zu", i);
        set_float(r, name, floats[i]);
    }
    set_float(r, "nan", NAN); /* not finite: null */
    set_float(r, "inf", -INFINITY);
    set_str(r, "quoted", "a \"b\" \\c\\ /d", 13);
    set_str(r, "controls", "\x01\x02\n\x1f\x7f", 5);
    set_str(r, "utf8", "ü 中 😀", strlen("ü 中 😀"));
    set_str(r, "with nul", "a\0b", 3);
    set_str(r, "invalid", "\xe2\x82", 2);          /* cut short: null */
    set_str(r, "surrogate", "\xed\xa0\x80", 3);    /* U+D800: null */
    set_str(r, "overlong", "\xc0\xaf", 2);         /* null */
    set_str(r, "too high", "\xf4\x90\x80\x80", 4); /* past U+10FFFF: null */
    set_str(r, "empty", "", 0);
    set_str(r, "name\xff", "dropped", 7); /* a name not UTF-8: left out */
    same_as_reference(2, names, values, r);
    record_free(r);
}

static void test_reads_back(void **state)
{
    char *names[] = {"subject", "text"};
    char *values[] = {"Hi \"you\"", "line\nline ✓"};
    record *r = record_new();
    record_set_string(r, "email", "a@example.com");
    record_set_int(r, "n", 7);
    set_float(r, "total", 8.5);
    set_float(r, "whole", 3.0); /* stays a float */
    baton_value ts = {.type = BATON_T_TIMESTAMP, .v.ts = 1700000000};
    record_set(r, "at", &ts);
    char *text = content_json(2, names, values, r);
    size_t n = 0;
    char **pn = NULL, **pv = NULL;
    record *back = NULL;
    assert_int_equal(content_parse(text, &n, &pn, &pv, &back), 0);
    assert_int_equal(n, 2);
    assert_string_equal(pn[0], "subject");
    assert_string_equal(pv[0], "Hi \"you\"");
    assert_string_equal(pv[1], "line\nline ✓");
    assert_non_null(back);
    assert_int_equal(back->n, r->n);
    for (size_t i = 0; i < r->n; i++) {
        assert_string_equal(back->v[i].name, r->v[i].name);
        assert_int_equal(back->v[i].value.type, r->v[i].value.type);
    }
    baton_value v;
    assert_int_equal(record_get(back, "total", &v), 0);
    assert_true(v.v.f == 8.5);
    assert_int_equal(record_get(back, "at", &v), 0);
    assert_int_equal(v.v.ts, 1700000000);
    for (size_t i = 0; i < n; i++) {
        free(pn[i]);
        free(pv[i]);
    }
    free(pn);
    free(pv);
    record_free(back);
    record_free(r);
    free(text);

    /* no row: none back; not a message: -1 */
    text = content_json(1, names, values, NULL);
    assert_int_equal(content_parse(text, &n, &pn, &pv, &back), 0);
    assert_null(back);
    free(pn[0]);
    free(pv[0]);
    free(pn);
    free(pv);
    free(text);
    assert_int_equal(content_parse("{\"row\":{}}", &n, &pn, &pv, &back), -1);
    assert_int_equal(content_parse("not json", &n, &pn, &pv, &back), -1);
    assert_int_equal(content_parse(NULL, &n, &pn, &pv, &back), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_jansson),
        cmocka_unit_test(test_reads_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
