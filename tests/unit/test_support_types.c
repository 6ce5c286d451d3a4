/* The small core types everything else leans on: buf, record, diag,
 * suggest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/diag.h"
#include "base/record.h"
#include "base/suggest.h"

static void test_buf(void **st)
{
    buf b;
    buf_init(&b);
    for (int i = 0; i < 1000; i++)
        buf_addf(&b, "%d,", i);
    assert_int_equal(b.len, strlen(b.data));
    assert_memory_equal(b.data, "0,1,2,", 6);
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    buf_add_json_string(&b, "a\"b\\c\n\x01é", 9);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\u0001é\"");
    char *s = buf_steal(&b);
    assert_null(b.data);
    free(s);
    buf_free(&b);
}

/* buf_addf at every distance from the buffer's end: formatted text that
 * fits the room left, that just does not, and that needs it to grow. */
static void test_buf_addf(void **st)
{
    char want[20000], piece[600];
    size_t wl = 0;
    buf b;
    buf_init(&b);
    for (int i = 0; i < 400; i++) {
        int w = (i * 37) % 500;
        snprintf(piece, sizeof piece, "<%d:%*s>", i, w, "x");
        buf_addf(&b, "<%d:%*s>", i, w, "x");
        size_t pl = strlen(piece);
        if (wl + pl >= sizeof want)
            break;
        memcpy(want + wl, piece, pl + 1);
        wl += pl;
        assert_int_equal(b.len, wl);
        assert_memory_equal(b.data, want, wl + 1);
    }
    buf_free(&b);
}

static void test_record(void **st)
{
    record *r = record_new();
    char name[] = "first_name";
    char value[] = "Zoé";
    record_set_string(r, name, value);
    name[0] = 'X'; /* the record owns copies */
    value[0] = 'Y';
    record_set_int(r, "orders", 3);
    record_set_int(r, "orders", 4); /* replaced, not added */
    baton_value v;
    assert_int_equal(record_get(r, "first_name", &v), 0);
    assert_int_equal(v.type, BATON_T_STRING);
    assert_int_equal(v.v.s.len, strlen("Zoé"));
    assert_memory_equal(v.v.s.ptr, "Zoé", v.v.s.len);
    assert_int_equal(record_get(r, "orders", &v), 0);
    assert_int_equal(v.v.i, 4);
    assert_int_equal(r->n, 2);
    assert_int_equal(record_get(r, "missing", &v), -1);
    /* a value taken from the field it replaces (trimming in place) */
    assert_int_equal(record_get(r, "first_name", &v), 0);
    v.v.s.ptr += 1;
    v.v.s.len -= 1;
    record_set(r, "first_name", &v);
    assert_int_equal(record_get(r, "first_name", &v), 0);
    assert_int_equal(v.v.s.len, strlen("oé"));
    assert_memory_equal(v.v.s.ptr, "oé", v.v.s.len);
    record_free(r);
}

static void test_diag(void **st)
{
    diag d;
    diag_init(&d);
    diag_error(&d, "a.cfg", 3, "bad %s", "thing");
    diag_warn(&d, "a.cfg", 0, "odd");
    diag_error(&d, NULL, 0, "no file");
    assert_int_equal(d.errors, 2);
    char *out = NULL;
    size_t len;
    FILE *f = open_memstream(&out, &len);
    diag_print(&d, f);
    fclose(f);
    assert_string_equal(out, "a.cfg:3: bad thing\na.cfg: warning: odd\nbaton: no file\n");
    free(out);
    diag_free(&d);
}

static void test_suggest(void **st)
{
    const char *c[] = {"tier", "email", "first_name", "city"};
    assert_string_equal(suggest_nearest("tierr", c, 4), "tier");
    assert_string_equal(suggest_nearest("frist_name", c, 4), "first_name");
    assert_null(suggest_nearest("zzzzzz", c, 4));
    assert_int_equal(suggest_distance("kitten", "sitting"), 3);
    assert_int_equal(suggest_distance("", "abc"), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf),  cmocka_unit_test(test_buf_addf), cmocka_unit_test(test_record),
        cmocka_unit_test(test_diag), cmocka_unit_test(test_suggest),
    };
    return cmocka_run_group_tests_name("support_types", tests, NULL, NULL);
}
