/* The schema loader: the sample CRM, lookups, and every error with its
 * line and a suggestion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema/schema.h"
#include "support/sample_schema.h"

static void test_sample(void **st)
{
    schema s;
    diag d;
    diag_init(&d);
    assert_int_equal(schema_load_string(&s, sample_schema_text, "sample", &d), 0);
    assert_int_equal(d.errors, 0);
    assert_int_equal(s.nentities, 4);
    assert_non_null(schema_reverse_find(schema_entity_find(&s, "orders"), "lines"));
    const schema_entity *p = schema_entity_find(&s, "profiles");
    const schema_entity *o = schema_entity_find(&s, "orders");
    const schema_entity *st2 = schema_entity_find(&s, "stores");
    assert_non_null(p);
    assert_null(schema_entity_find(&s, "nope"));
    assert_string_equal(p->table, "profiles");
    assert_string_equal(st2->table, "shops");
    assert_string_equal(p->key->name, "id");
    assert_int_equal(schema_field_find(p, "birth_date")->type, BATON_T_DATE);
    assert_int_equal(schema_field_find(p, "created_at")->type, BATON_T_TIMESTAMP);
    assert_int_equal(schema_field_find(p, "consent_email")->type, BATON_T_BOOL);
    assert_int_equal(schema_field_find(o, "items")->type, BATON_T_INT);
    assert_null(schema_field_find(p, "nope"));
    const schema_link *l = schema_link_find(o, "store");
    assert_non_null(l);
    assert_ptr_equal(l->from, o);
    assert_ptr_equal(l->to, st2);
    assert_string_equal(l->via->name, "store_id");
    assert_string_equal(l->reverse, "orders");
    assert_ptr_equal(schema_reverse_find(st2, "orders"), l);
    assert_ptr_equal(schema_reverse_find(p, "orders"), schema_link_find(o, "profile"));
    assert_null(schema_reverse_find(o, "orders"));
    assert_null(schema_link_find(p, "orders"));
    assert_string_equal(schema_suggest(&s, p, "tierr"), "tier");
    assert_string_equal(schema_suggest(&s, p, "ordrs"), "orders");
    assert_string_equal(schema_suggest(&s, p, "TIER"), "tier");
    assert_string_equal(schema_suggest(&s, NULL, "profile"), "profiles");
    assert_null(schema_suggest(&s, p, "zzzzzzzz"));
    assert_string_equal(schema_type_name(BATON_T_TIMESTAMP), "timestamp");
    baton_type t;
    assert_int_equal(schema_type_parse("float", &t), 0);
    assert_int_equal(t, BATON_T_FLOAT);
    assert_int_equal(schema_type_parse("double", &t), -1);
    schema_free(&s);
    diag_free(&d);
}

static void test_shipped_schema(void **st)
{
    const char *srcdir = getenv("BATON_SRC");
    char path[1024];
    snprintf(path, sizeof path, "%s/conf/schema.cfg", srcdir ? srcdir : ".");
    schema s;
    diag d;
    diag_init(&d);
    assert_int_equal(schema_load(&s, path, &d), 0);
    assert_non_null(schema_reverse_find(schema_entity_find(&s, "profiles"), "reservations"));
    schema_free(&s);
    diag_free(&d);
}

/* Load text and return every message, one per line, as "line: msg". */
static const char *errors_of(const char *text)
{
    static char out[4096];
    schema s;
    diag d;
    diag_init(&d);
    int rc = schema_load_string(&s, text, "s.cfg", &d);
    out[0] = '\0';
    for (size_t i = 0; i < d.n; i++) {
        size_t len = strlen(out);
        snprintf(out + len, sizeof out - len, "%d: %s\n", d.v[i].line, d.v[i].msg);
    }
    assert_int_equal(rc != 0, d.errors != 0);
    schema_free(&s);
    diag_free(&d);
    return out;
}

static void test_errors(void **st)
{
    assert_string_equal(
        errors_of("entities: { p: { key = \"id\"; fields: { id = \"strin\"; n = 3; }; }; };"),
        "1: p.id: unknown type 'strin' (did you mean 'string'?)\n"
        "1: p.n: expected a type name: string, int, float, bool, date or timestamp\n"
        "1: p.key: 'id' is not a field of p\n");
    assert_string_equal(
        errors_of(
            "entities: { p: { key = \"idd\"; fields: { id = \"string\"; }; tabel = \"x\"; }; };"),
        "1: unknown setting 'tabel' in entity p (did you mean 'table'?)\n"
        "1: p.key: 'idd' is not a field of p (did you mean 'id'?)\n");
    assert_string_equal(errors_of("entities: { p: { fields: { id = \"string\"; }; }; };"),
                        "1: entity p: missing 'key' (the field that identifies a row)\n");
    assert_string_equal(errors_of("entities: { p: { key = \"id\"; }; };"),
                        "1: entity p: missing 'fields'\n"
                        "1: p.key: 'id' is not a field of p\n");
    assert_string_equal(errors_of("entitys: {};"),
                        "1: unknown setting 'entitys' in the schema (did you mean 'entities'?)\n"
                        "0: missing 'entities' (the schema's entities: { ... })\n");
    assert_string_equal(
        errors_of("entities: {\n"
                  " a: { key = \"id\"; fields: { id = \"string\"; b_id = \"int\"; };\n"
                  "  links: { b = { to = \"bb\"; via = \"b_id\"; };\n"
                  "           c = { to = \"b\"; via = \"b_idd\"; };\n"
                  "           id = { to = \"b\"; via = \"b_id\"; reverse = \"x\"; };\n"
                  "           d = { to = \"b\"; via = \"b_id\"; };\n"
                  "           e = { to = \"b\"; vai = \"b_id\"; }; }; };\n"
                  " b: { key = \"id\"; fields: { id = \"string\"; }; };\n"
                  "};\n"),
        "3: a.links.b: link to unknown entity 'bb' (did you mean 'b'?)\n"
        "4: a.links.c: via 'b_idd' is not a field of a (did you mean 'b_id'?)\n"
        "5: a.links.id: via a.b_id is a int but b.id (the key) is a string\n"
        "5: a.links.id: link 'id' has the name of a field of a\n"
        "6: a.links.d: via a.b_id is a int but b.id (the key) is a string\n"
        "7: unknown setting 'vai' in a.links.e (known: to, via, reverse)\n"
        "7: a.links.e: missing 'via' (the field holding the target's key)\n");
    assert_string_equal(
        errors_of("entities: {\n"
                  " a: { key = \"id\"; fields: { id = \"string\"; b_id = \"string\"; };\n"
                  "  links: { b = { to = \"b\"; via = \"b_id\"; reverse = \"name\"; };\n"
                  "           b2 = { to = \"b\"; via = \"b_id\"; reverse = \"as\"; };\n"
                  "           b3 = { to = \"b\"; via = \"b_id\"; reverse = \"as\"; }; }; };\n"
                  " b: { key = \"id\"; fields: { id = \"string\"; name = \"string\"; }; };\n"
                  "};\n"),
        "3: a.links.b: reverse 'name' is already a field of b\n"
        "5: a.links.b3: reverse 'as' is already another reverse link of b\n");
    assert_string_equal(errors_of("entities: { p = 3; };"),
                        "1: entity p: expected a group { key = ...; fields: {...}; }\n");
    assert_string_equal(errors_of("entities: { p: { key = \"id\" fields }; };"),
                        "1: syntax error\n");
}

static void test_missing_file(void **st)
{
    schema s;
    diag d;
    diag_init(&d);
    assert_int_equal(schema_load(&s, "/nonexistent/schema.cfg", &d), -1);
    assert_int_equal(d.errors, 1);
    assert_non_null(strstr(d.v[0].msg, "cannot read the schema"));
    schema_free(&s);
    diag_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample),
        cmocka_unit_test(test_shipped_schema),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
