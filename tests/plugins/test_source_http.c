/* source_http against tests/support/http_sink.py: the URL from the
 * template, fields picked (nested with name=path), the TTL cache (one
 * request for many lookups of a URL, none cached on failure), 404 as not
 * found, failures with their reason, and a timeout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/plugin_host.h"
#include "base/record.h"
#include "support/fs.h"
#include "support/instance.h"
#include "support/server.h"

const baton_plugin *baton_plugin_entry(void);

static test_server sink;
static char *dir;
static char logpath[1024];

static void sink_start(const char *a1, const char *a2, const char *a3, const char *a4)
{
    snprintf(logpath, sizeof logpath, "%s/requests.jsonl", dir);
    assert_int_equal(server_start_http_sink(&sink, logpath, a1, a2, a3, a4), 0);
}

static int setup(void **state)
{
    dir = tmpdir_make("source_http");
    return 0;
}

static int teardown(void **state)
{
    server_stop(&sink);
    memset(&sink, 0, sizeof sink);
    tmpdir_remove(dir);
    free(dir);
    return 0;
}

static instance *source(const char *settings)
{
    char err[512] = "";
    instance *inst =
        test_instance_new(baton_plugin_entry(), "sources", "weather", settings, 1, err, sizeof err);
    if (!inst)
        fail_msg("source_http: %s", err);
    return inst;
}

static int lookup(instance *inst, const char *city, record *out, char *err, size_t errlen)
{
    record *ctx = record_new();
    record_set_string(ctx, "profile.id", "p1");
    record_set_string(ctx, "profile.city", city);
    record_clear(out);
    int rc = instance_source(inst)->lookup(inst->state, ctx, out, err, errlen);
    record_free(ctx);
    return rc;
}

static long requests(void)
{
    char *text = file_read(logpath, NULL);
    long n = 0;
    for (char *p = text; p && *p; p++)
        n += *p == '\n';
    free(text);
    return n;
}

static void test_fields_and_cache(void **state)
{
    sink_start("--body", "{\"main\": {\"temp\": -3.5}, \"wind\": 12, \"name\": \"x{seq}\"}",
               "--match", "Atlantis=404");
    char settings[512];
    snprintf(settings, sizeof settings,
             "url = \"http://127.0.0.1:%d/weather?city={{ profile.city }}\";\n"
             "fields = [ \"temperature=main.temp\", \"wind\", \"rain\" ]; ttl = \"1h\";",
             sink.port);
    instance *inst = source(settings);
    record *out = record_new();
    char err[512];
    assert_int_equal(lookup(inst, "Oslo", out, err, sizeof err), 0);
    baton_value v;
    assert_int_equal(record_get(out, "temperature", &v), 0);
    assert_int_equal(v.type, BATON_T_FLOAT);
    assert_true(v.v.f < -3.4 && v.v.f > -3.6);
    assert_int_equal(record_get(out, "wind", &v), 0);
    assert_int_equal(v.v.i, 12);
    assert_int_equal(record_get(out, "rain", &v), 0);
    assert_int_equal(v.type, BATON_T_NULL);
    assert_int_equal(record_get(out, "name", &v), -1); /* not picked */
    for (int i = 0; i < 20; i++)
        assert_int_equal(lookup(inst, "Oslo", out, err, sizeof err), 0);
    assert_int_equal(requests(), 1); /* the cache answered the rest */
    assert_int_equal(lookup(inst, "Nice", out, err, sizeof err), 0);
    assert_int_equal(requests(), 2);
    assert_int_equal(lookup(inst, "Atlantis", out, err, sizeof err), 1); /* 404 */
    assert_int_equal(lookup(inst, "Atlantis", out, err, sizeof err), 1);
    assert_int_equal(requests(), 3);
    record_free(out);
    test_instance_free(inst);
}

static void test_failures(void **state)
{
    sink_start("--status", "500,200", "--body", "not json");
    char settings[512];
    snprintf(settings, sizeof settings, "url = \"http://127.0.0.1:%d/w?c={{ profile.city }}\";",
             sink.port);
    instance *inst = source(settings);
    record *out = record_new();
    char err[512];
    assert_int_equal(lookup(inst, "Oslo", out, err, sizeof err), -1);
    assert_non_null(strstr(err, "HTTP 500"));
    assert_int_equal(lookup(inst, "Oslo", out, err, sizeof err), -1); /* not cached */
    assert_non_null(strstr(err, "not a JSON object"));
    assert_int_equal(requests(), 2);
    test_instance_free(inst);
    server_stop(&sink);
    memset(&sink, 0, sizeof sink);
    sink_start("--delay-ms", "1500", NULL, NULL);
    snprintf(settings, sizeof settings, "url = \"http://127.0.0.1:%d/w\"; timeout = \"200ms\";",
             sink.port);
    inst = source(settings);
    assert_int_equal(lookup(inst, "Oslo", out, err, sizeof err), -1);
    assert_non_null(strstr(err, "GET"));
    record_free(out);
    test_instance_free(inst);
}

static void test_cache_is_bounded(void **state)
{
    sink_start(NULL, NULL, NULL, NULL);
    char settings[512];
    snprintf(settings, sizeof settings,
             "url = \"http://127.0.0.1:%d/w?c={{ profile.city }}\"; cache = 50;", sink.port);
    instance *inst = source(settings);
    record *out = record_new();
    char err[512], city[32];
    for (int i = 0; i < 300; i++) {
        snprintf(city, sizeof city, "c%d", i);
        assert_int_equal(lookup(inst, city, out, err, sizeof err), 0);
    }
    assert_int_equal(requests(), 300);
    record_free(out);
    test_instance_free(inst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fields_and_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_is_bounded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
