/* channel_sms: the exact request format() writes (JSON, form, GET, auth,
 * headers), segment counts (GSM-7 vs UCS-2), refusals and settings; and
 * deliver() against tests/support/http_sink.py: ids, 429/5xx RETRY,
 * 4xx ERROR with the provider's reason, no server, many in flight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/record.h"
#include "support/fs.h"
#include "support/instance.h"
#include "support/server.h"

const baton_plugin *baton_plugin_entry(void);

static instance *sms(const char *settings)
{
    char err[512] = "";
    instance *inst =
        test_instance_new(baton_plugin_entry(), "channels", "sms", settings, 1, err, sizeof err);
    if (!inst)
        fail_msg("channel_sms: %s", err);
    return inst;
}

static baton_message msg(const char *key, const char *to, const char *text)
{
    static const char *names[1] = {"text"};
    static const char *values[256]; /* a ring: each message its own slot */
    static unsigned next;
    const char **v = &values[next++ % 256];
    *v = text;
    baton_message m = {.size = sizeof m,
                       .key = key,
                       .recipient = to,
                       .nparts = 1,
                       .part_names = names,
                       .part_values = v,
                       .time = 1795428000,
                       .attempt = 1};
    return m;
}

static char *format(instance *inst, const baton_message *m, int want)
{
    buf out;
    buf_init(&out);
    static char err[256];
    err[0] = '\0';
    int rc = instance_channel(inst)->format(inst->state, m, &out, err, sizeof err);
    assert_int_equal(rc, want);
    if (rc) {
        buf_free(&out);
        return strdup(err);
    }
    return buf_steal(&out);
}

static void test_format_json_bearer(void **state)
{
    instance *inst = sms("url = \"http://127.0.0.1:9/sms\"; auth = \"bearer\"; token = \"T0K\";"
                         "headers = [ \"X-Api-Version: 2\" ]; key_field = \"reference\";"
                         "params = [ \"from=Shop\" ];");
    baton_message m = msg("c/1/sms/p42", "+33612345678", "Caf\xc3\xa9 \"ouvert\"\n-10%");
    char *got = format(inst, &m, 0);
    assert_string_equal(got,
                        "POST http://127.0.0.1:9/sms HTTP/1.1\r\n"
                        "X-Api-Version: 2\r\n"
                        "Authorization: Bearer T0K\r\n"
                        "Content-Type: application/json\r\n"
                        "Expect:\r\n"
                        "\r\n"
                        "{\"to\":\"+33612345678\",\"text\":\"Caf\xc3\xa9 \\\"ouvert\\\"\\n-10%\","
                        "\"reference\":\"c/1/sms/p42\",\"from\":\"Shop\"}");
    free(got);
    test_instance_free(inst);
}

static void test_format_form_basic_and_get(void **state)
{
    instance *inst = sms("url = \"http://gw.example/send\"; format = \"form\"; auth = \"basic\";"
                         "username = \"acme\"; password = \"pa:ss\"; to_field = \"msisdn\";"
                         "text_field = \"message\";");
    baton_message m = msg("k", "+44 7700 900123", "Hi Ann & co = 100%");
    char *got = format(inst, &m, 0);
    assert_string_equal(got, "POST http://gw.example/send HTTP/1.1\r\n"
                             "Authorization: Basic YWNtZTpwYTpzcw==\r\n"
                             "Content-Type: application/x-www-form-urlencoded\r\n"
                             "Expect:\r\n"
                             "\r\n"
                             "msisdn=%2B44+7700+900123&message=Hi+Ann+%26+co+%3D+100%25");
    free(got);
    test_instance_free(inst);
    inst = sms("url = \"http://gw.example/send?api=1\"; method = \"GET\";");
    got = format(inst, &m, 0);
    assert_string_equal(got, "GET http://gw.example/send?api=1&to=%2B44+7700+900123"
                             "&text=Hi+Ann+%26+co+%3D+100%25 HTTP/1.1\r\n"
                             "Expect:\r\n"
                             "\r\n");
    free(got);
    test_instance_free(inst);
}

static void test_templates(void **state)
{
    instance *inst = sms("url = \"http://gw.example/{{ country }}/send\"; format = \"form\";"
                         "params = [ \"tag={{ upper(tier) }}\", \"ref={{ key }}\" ];");
    baton_message m = msg("c/9", "+33600000009", "Hi");
    record *row = record_new();
    record_set_string(row, "country", "fr");
    record_set_string(row, "tier", "gold");
    m.row = row;
    char *got = format(inst, &m, 0);
    assert_string_equal(got, "POST http://gw.example/fr/send HTTP/1.1\r\n"
                             "Content-Type: application/x-www-form-urlencoded\r\n"
                             "Expect:\r\n"
                             "\r\n"
                             "to=%2B33600000009&text=Hi&tag=GOLD&ref=c%2F9");
    free(got);
    test_instance_free(inst);
    inst = sms("url = \"http://gw.example/\"; body = \"<sms to='{{ to }}'>{{ text }}</sms>\";");
    got = format(inst, &m, 0);
    assert_non_null(strstr(got, "\r\n\r\n<sms to='+33600000009'>Hi</sms>"));
    free(got);
    record_free(row);
    test_instance_free(inst);
}

/* SMS body injection: a first name that closes its JSON string and adds
 * a second "to" stays one string; a value in the url is percent-encoded;
 * a form body form-encodes. */
static void test_template_injection(void **state)
{
    instance *inst = sms("url = \"http://gw.example/send?ref={{ first_name }}\";"
                         "body = \"{\\\"to\\\": \\\"{{ to }}\\\", \\\"text\\\": \\\"{{ text }}\\\","
                         " \\\"name\\\": \\\"{{ first_name }}\\\", \\\"n\\\": {{ visits }}}\";");
    baton_message m = msg("k", "+33600000009", "Hi \"you\"");
    record *row = record_new();
    record_set_string(row, "first_name", "Bob\", \"to\": \"+19005550000");
    record_set_int(row, "visits", 3);
    m.row = row;
    char *got = format(inst, &m, 0);
    assert_string_equal(
        got, "POST http://gw.example/send?ref=Bob%22%2C%20%22to%22%3A%20%22%2B19005550000"
             " HTTP/1.1\r\n"
             "Content-Type: application/json\r\n"
             "Expect:\r\n"
             "\r\n"
             "{\"to\": \"+33600000009\", \"text\": \"Hi \\\"you\\\"\", \"name\": "
             "\"Bob\\\", \\\"to\\\": \\\"+19005550000\", \"n\": 3}");
    free(got);
    test_instance_free(inst);
    inst = sms("url = \"http://gw.example/send\"; format = \"form\";"
               "body = \"msisdn={{ to }}&msg={{ text }}&name={{ first_name }}\";");
    got = format(inst, &m, 0);
    assert_non_null(strstr(got, "\r\n\r\nmsisdn=%2B33600000009&msg=Hi+%22you%22&name=Bob%22%2C+"
                                "%22to%22%3A+%22%2B19005550000"));
    free(got);
    record_free(row);
    test_instance_free(inst);
}

static unsigned segs_of(instance *inst, const char *text)
{
    /* deliver() records segments; format() refuses past max_segments:
     * probe through a 1-segment limit */
    (void)inst;
    baton_message m = msg("k", "+33600000000", text);
    char err[256];
    buf out;
    buf_init(&out);
    unsigned n;
    for (n = 1; n < 12; n++) {
        char settings[128];
        snprintf(settings, sizeof settings, "url = \"http://x/\"; max_segments = %u;", n);
        instance *i = sms(settings);
        int rc = instance_channel(i)->format(i->state, &m, &out, err, sizeof err);
        test_instance_free(i);
        buf_reset(&out);
        if (rc == 0)
            break;
    }
    buf_free(&out);
    return n;
}

static void test_segments(void **state)
{
    char t[400];
    memset(t, 'a', 160);
    t[160] = '\0';
    assert_int_equal(segs_of(NULL, t), 1);
    t[160] = 'a';
    t[161] = '\0';
    assert_int_equal(segs_of(NULL, t), 2);
    memset(t, 'a', 306);
    t[306] = '\0';
    assert_int_equal(segs_of(NULL, t), 2); /* 2 x 153 */
    t[306] = 'a';
    t[307] = '\0';
    assert_int_equal(segs_of(NULL, t), 3);
    /* an extension character counts two septets: 159 + '{' = 161 */
    memset(t, 'a', 159);
    strcpy(t + 159, "{");
    assert_int_equal(segs_of(NULL, t), 2);
    /* é is GSM-7; one emoji makes it UCS-2: 70 units in one segment */
    memset(t, 'e', 150);
    strcpy(t + 150, "\xc3\xa9");
    assert_int_equal(segs_of(NULL, t), 1);
    memset(t, 'a', 68);
    strcpy(t + 68, "\xf0\x9f\x98\x80"); /* 68 + 2 surrogates = 70 */
    assert_int_equal(segs_of(NULL, t), 1);
    memset(t, 'a', 69);
    strcpy(t + 69, "\xf0\x9f\x98\x80"); /* 71 units: 2 x 67 */
    assert_int_equal(segs_of(NULL, t), 2);
}

static void test_refusals_and_settings(void **state)
{
    instance *inst = sms("url = \"http://x/\";");
    baton_message m = msg("k", "ann@example.com", "hi");
    char *err = format(inst, &m, -1);
    assert_string_equal(err, "not a phone number: 'ann@example.com'");
    free(err);
    m = msg("k", "+3360000", "");
    err = format(inst, &m, -1);
    assert_string_equal(err, "the message has no text");
    free(err);
    test_instance_free(inst);
    char e[512];
    assert_null(test_instance_new(baton_plugin_entry(), "channels", "sms",
                                  "url = \"http://x/\"; auth = \"bearer\";", 1, e, sizeof e));
    assert_string_equal(e, "auth = \"bearer\" needs token");
    assert_null(test_instance_new(baton_plugin_entry(), "channels", "sms",
                                  "url = \"http://x/\"; params = [ \"novalue\" ];", 1, e,
                                  sizeof e));
    assert_string_equal(e, "params[0] = \"novalue\": expected \"name=value\"");
    assert_null(test_instance_new(baton_plugin_entry(), "channels", "sms",
                                  "url = \"http://x/\"; headers = [ \"NoColon\" ];", 1, e,
                                  sizeof e));
    assert_string_equal(e, "headers[0] = \"NoColon\": expected \"Name: value\"");
    assert_null(test_instance_new(baton_plugin_entry(), "channels", "sms",
                                  "url = \"http://x/\"; method = \"DELETE\";", 1, e, sizeof e));
    assert_non_null(strstr(e, "method"));
}

/* ---------------- delivery against the HTTP sink ---------------- */

static test_server sink;
static char *dir;

static void sink_start(const char *a1, const char *a2, const char *a3, const char *a4)
{
    char log[1024];
    snprintf(log, sizeof log, "%s/requests.jsonl", dir);
    assert_int_equal(server_start_http_sink(&sink, log, a1, a2, a3, a4), 0);
}

static int setup(void **state)
{
    dir = tmpdir_make("sms");
    return 0;
}
static int teardown(void **state)
{
    server_stop(&sink);
    tmpdir_remove(dir);
    free(dir);
    return 0;
}

static void deliver(instance *inst, baton_message *m, size_t n, baton_delivery *out)
{
    const baton_channel_ops *ops = instance_channel(inst);
    const baton_message **p = calloc(n, sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = &m[i];
    void *conn = ops->worker_open(inst->state);
    ops->deliver(inst->state, conn, p, n, out);
    ops->worker_close(inst->state, conn);
    free(p);
}

static void test_deliver_statuses(void **state)
{
    sink_start("--status", "200,429,503,200", "--match", "+10000000000=400");
    char settings[256];
    snprintf(settings, sizeof settings, "url = \"http://127.0.0.1:%d/sms\"; inflight = 1;",
             sink.port);
    instance *inst = sms(settings);
    baton_message m[5] = {msg("s1", "+33600000001", "one"), msg("s2", "+33600000002", "two"),
                          msg("s3", "+33600000003", "three"), msg("s4", "+10000000000", "bad"),
                          msg("s5", "+33600000005", "five")};
    baton_delivery out[5];
    deliver(inst, m, 5, out);
    assert_int_equal(out[0].status, BATON_OK);
    assert_string_equal(out[0].provider_id, "m-1");
    assert_int_equal(out[0].segments, 1);
    assert_int_equal(out[1].status, BATON_RETRY);
    assert_string_equal(out[1].reason, "HTTP 429: status 429");
    assert_int_equal(out[2].status, BATON_RETRY);
    assert_string_equal(out[2].reason, "HTTP 503: status 503");
    assert_int_equal(out[3].status, BATON_ERROR);
    assert_string_equal(out[3].reason, "HTTP 400: status 400");
    assert_int_equal(out[4].status, BATON_OK);
    assert_string_equal(out[4].provider_id, "m-5");
    /* the bytes the sink saw are the body format() wrote */
    char path[1024];
    snprintf(path, sizeof path, "%s/requests.jsonl", dir);
    char *log = file_read(path, NULL);
    assert_non_null(
        strstr(log, "\"body\": \"{\\\"to\\\":\\\"+33600000001\\\",\\\"text\\\":\\\"one\\\"}\""));
    assert_non_null(strstr(log, "\"Content-Type\": \"application/json\""));
    assert_non_null(strstr(log, "\"path\": \"/sms\""));
    free(log);
    test_instance_free(inst);
}

static void test_deliver_many_in_flight(void **state)
{
    sink_start("--delay-ms", "50", NULL, NULL);
    char settings[256];
    snprintf(settings, sizeof settings,
             "url = \"http://127.0.0.1:%d/sms\"; inflight = 16; id_field = \"id\";", sink.port);
    instance *inst = sms(settings);
    enum { N = 64 };
    baton_message m[N];
    char keys[N][16], to[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "f%d", i);
        snprintf(to[i], sizeof to[i], "+336%08d", i);
        m[i] = msg(keys[i], to[i], "hello");
    }
    baton_delivery out[N];
    deliver(inst, m, N, out);
    int ok = 0;
    for (int i = 0; i < N; i++)
        ok += out[i].status == BATON_OK && !strncmp(out[i].provider_id, "m-", 2);
    assert_int_equal(ok, N);
    test_instance_free(inst);
}

static void test_deliver_no_server(void **state)
{
    char settings[256];
    snprintf(settings, sizeof settings, "url = \"http://127.0.0.1:%d/sms\"; timeout = \"2s\";",
             server_free_port());
    instance *inst = sms(settings);
    baton_message m = msg("x", "+33600000001", "one");
    baton_delivery out;
    deliver(inst, &m, 1, &out);
    assert_int_equal(out.status, BATON_RETRY);
    assert_non_null(strstr(out.reason, "onnect"));
    test_instance_free(inst);
}

/* The gateway reads a whole request and answers nothing (it closes the
 * connection, or is silent past `timeout`): it may have sent the SMS, and
 * a POST is not safe to repeat, so the message is UNCERTAIN; with a
 * key_field the gateway drops a repeat of its reference, so it is RETRY. */
static void test_sent_but_unanswered(void **state)
{
    sink_start("--match", "+33600000009=0", NULL, NULL);
    for (int keyed = 0; keyed < 2; keyed++) {
        char settings[256];
        snprintf(settings, sizeof settings, "url = \"http://127.0.0.1:%d/sms\"; inflight = 1;%s",
                 sink.port, keyed ? " key_field = \"ref\";" : "");
        instance *inst = sms(settings);
        baton_message m[2] = {msg("u1", "+33600000001", "one"), msg("u9", "+33600000009", "two")};
        baton_delivery out[2];
        deliver(inst, m, 2, out);
        assert_int_equal(out[0].status, BATON_OK);
        assert_int_equal(out[1].status, keyed ? BATON_RETRY : BATON_UNCERTAIN);
        assert_non_null(strstr(out[1].reason, "(the request had gone: it may have been "
                                              "delivered)"));
        test_instance_free(inst);
    }
    server_stop(&sink);

    sink_start("--delay-ms", "3000", NULL, NULL);
    char settings[256];
    snprintf(settings, sizeof settings, "url = \"http://127.0.0.1:%d/sms\"; timeout = \"1s\";",
             sink.port);
    instance *inst = sms(settings);
    baton_message m = msg("t1", "+33600000001", "one");
    baton_delivery out;
    deliver(inst, &m, 1, &out);
    assert_int_equal(out.status, BATON_UNCERTAIN);
    assert_non_null(strstr(out.reason, "imed out"));
    test_instance_free(inst);
}

static void test_deliver_error_field_and_match(void **state)
{
    sink_start("--body", "{\"result\": {\"code\": \"E21\", \"ref\": \"r{seq}\"}}", "--status",
               "200,200,422");
    char settings[256];
    snprintf(settings, sizeof settings,
             "url = \"http://127.0.0.1:%d/sms\"; inflight = 1; id_field = \"result.ref\";"
             "error_field = \"result.code\"; error_match = \"E21\";",
             sink.port);
    instance *inst = sms(settings);
    baton_message m = msg("x", "+33600000001", "one");
    baton_delivery out;
    deliver(inst, &m, 1, &out);
    /* 200 but the body says E21: permanent */
    assert_int_equal(out.status, BATON_ERROR);
    assert_string_equal(out.reason, "HTTP 200: E21");
    test_instance_free(inst);
    snprintf(settings, sizeof settings,
             "url = \"http://127.0.0.1:%d/sms\"; inflight = 1; id_field = \"result.ref\";"
             "error_field = \"result.code\";",
             sink.port);
    inst = sms(settings);
    deliver(inst, &m, 1, &out);
    assert_int_equal(out.status, BATON_OK);
    assert_string_equal(out.provider_id, "r2");
    deliver(inst, &m, 1, &out);
    assert_int_equal(out.status, BATON_ERROR);
    assert_string_equal(out.reason, "HTTP 422: E21");
    test_instance_free(inst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_json_bearer),
        cmocka_unit_test(test_format_form_basic_and_get),
        cmocka_unit_test(test_segments),
        cmocka_unit_test(test_templates),
        cmocka_unit_test(test_template_injection),
        cmocka_unit_test(test_refusals_and_settings),
        cmocka_unit_test_setup_teardown(test_deliver_statuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deliver_many_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deliver_no_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sent_but_unanswered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deliver_error_field_and_match, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
