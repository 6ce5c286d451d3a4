/* channel_push: format() for MQTT and HTTP; deliver() to a real mosquitto
 * broker at QoS 1 (payloads read back by a subscriber), a broker that is
 * not there, a broker that comes back; and the HTTP mode against
 * tests/support/http_sink.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <mosquitto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/record.h"
#include "support/fs.h"
#include "support/instance.h"
#include "support/server.h"

const baton_plugin *baton_plugin_entry(void);

static instance *push(const char *settings)
{
    char err[512] = "";
    instance *inst =
        test_instance_new(baton_plugin_entry(), "channels", "push", settings, 1, err, sizeof err);
    if (!inst)
        fail_msg("channel_push: %s", err);
    return inst;
}

static baton_message msg(const char *key, const char *profile, const char *title, const char *body)
{
    static const char *names[2] = {"title", "body"};
    static const char *values[512][2];
    static unsigned next;
    const char **v = values[next++ % 512];
    v[0] = title;
    v[1] = body;
    baton_message m = {.size = sizeof m,
                       .key = key,
                       .recipient = profile,
                       .profile_id = profile,
                       .nparts = 2,
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

static void test_format(void **state)
{
    instance *inst = push("topic = \"push/all\";");
    baton_message m = msg("j/cart/p42/push1", "p42", "Still thinking?", "Your cart: 2 \"items\"");
    char *got = format(inst, &m, 0);
    assert_string_equal(got,
                        "PUBLISH push/all qos=1\r\n\r\n"
                        "{\"title\":\"Still thinking?\",\"body\":\"Your cart: 2 \\\"items\\\"\","
                        "\"key\":\"j/cart/p42/push1\",\"profile\":\"p42\"}");
    free(got);
    test_instance_free(inst);
    inst = push("mode = \"http\"; url = \"http://127.0.0.1:9/v1/send\"; token = \"abc\";");
    got = format(inst, &m, 0);
    assert_string_equal(got,
                        "POST http://127.0.0.1:9/v1/send HTTP/1.1\r\n"
                        "Authorization: Bearer abc\r\n"
                        "Content-Type: application/json\r\n"
                        "Expect:\r\n"
                        "\r\n"
                        "{\"title\":\"Still thinking?\",\"body\":\"Your cart: 2 \\\"items\\\"\","
                        "\"key\":\"j/cart/p42/push1\",\"profile\":\"p42\"}");
    free(got);
    test_instance_free(inst);
    inst = push("topic = \"push/#\";");
    got = format(inst, &m, -1);
    assert_string_equal(got, "not a topic to publish to: 'push/#'");
    free(got);
    test_instance_free(inst);
    char err[512];
    assert_null(
        test_instance_new(baton_plugin_entry(), "channels", "push", "", 1, err, sizeof err));
    assert_string_equal(err, "mode = \"mqtt\" needs topic (e.g. \"push/{{ profile.id }}\")");
    assert_null(test_instance_new(baton_plugin_entry(), "channels", "push",
                                  "topic = \"t\"; broker = \"nohost:0\";", 1, err, sizeof err));
    assert_string_equal(err, "broker = \"nohost:0\": expected \"host:port\"");
    assert_null(test_instance_new(baton_plugin_entry(), "channels", "push", "mode = \"http\";", 1,
                                  err, sizeof err));
    assert_string_equal(err, "mode = \"http\" needs url");
}

/* topic and payload as templates over the row and the message's parts */
static void test_templates(void **state)
{
    instance *inst = push("topic = \"push/{{ profile.id }}/{{ lower(tier) }}\";"
                          "payload = \"{\\\"t\\\": \\\"{{ title }}\\\", \\\"k\\\": "
                          "\\\"{{ key }}\\\"}\";");
    baton_message m = msg("j/1", "p42", "Hello", "B");
    record *row = record_new();
    record_set_string(row, "profile.id", "p42");
    record_set_string(row, "tier", "GOLD");
    m.row = row;
    char *got = format(inst, &m, 0);
    assert_string_equal(got,
                        "PUBLISH push/p42/gold qos=1\r\n\r\n{\"t\": \"Hello\", \"k\": \"j/1\"}");
    free(got);
    record_free(row);
    test_instance_free(inst);
    char err[512];
    assert_null(test_instance_new(baton_plugin_entry(), "channels", "push",
                                  "topic = \"push/{{ profile.id \";", 1, err, sizeof err));
    assert_memory_equal(err, "topic: ", 7);
}

/* ---------------- a subscriber that records what it gets ---------------- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static char *received[4096];
static size_t nreceived;
static int subscribed;

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg)
{
    pthread_mutex_lock(&mu);
    if (nreceived < 4096) {
        char *s;
        if (asprintf(&s, "%s %.*s", msg->topic, msg->payloadlen, (char *)msg->payload) > 0)
            received[nreceived++] = s;
    }
    pthread_mutex_unlock(&mu);
}
static void on_subscribe(struct mosquitto *m, void *ud, int mid, int n, const int *q)
{
    pthread_mutex_lock(&mu);
    subscribed = 1;
    pthread_mutex_unlock(&mu);
}

static struct mosquitto *subscriber(int port)
{
    struct mosquitto *m = mosquitto_new("test-sub", true, NULL);
    mosquitto_message_callback_set(m, on_message);
    mosquitto_subscribe_callback_set(m, on_subscribe);
    assert_int_equal(mosquitto_connect(m, "127.0.0.1", port, 30), MOSQ_ERR_SUCCESS);
    mosquitto_subscribe(m, NULL, "push/#", 1);
    mosquitto_loop_start(m);
    for (int i = 0; i < 200; i++) {
        pthread_mutex_lock(&mu);
        int ok = subscribed;
        pthread_mutex_unlock(&mu);
        if (ok)
            break;
        usleep(10000);
    }
    return m;
}

static size_t wait_received(size_t n)
{
    size_t got = 0;
    for (int i = 0; i < 300; i++) {
        pthread_mutex_lock(&mu);
        got = nreceived;
        pthread_mutex_unlock(&mu);
        if (got >= n)
            break;
        usleep(10000);
    }
    return got;
}

static void clear_received(void)
{
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nreceived; i++)
        free(received[i]);
    nreceived = 0;
    subscribed = 0;
    pthread_mutex_unlock(&mu);
}

static char *dir;
static test_server broker;

static int setup(void **state)
{
    dir = tmpdir_make("push");
    mosquitto_lib_init();
    return 0;
}
static int teardown(void **state)
{
    server_stop(&broker);
    clear_received();
    tmpdir_remove(dir);
    free(dir);
    return 0;
}

static void test_mqtt_qos1(void **state)
{
    assert_int_equal(server_start_mosquitto(&broker, dir, 0), 0);
    struct mosquitto *sub = subscriber(broker.port);
    char settings[256];
    snprintf(settings, sizeof settings,
             "broker = \"127.0.0.1:%d\"; topic = \"push/app\"; inflight = 20;", broker.port);
    instance *inst = push(settings);
    const baton_channel_ops *ops = instance_channel(inst);
    void *conn = ops->worker_open(inst->state);
    enum { N = 300 };
    baton_message m[N];
    const baton_message *p[N];
    char keys[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        m[i] = msg(keys[i], "p1", "T", "B");
        p[i] = &m[i];
    }
    baton_delivery out[N];
    ops->deliver(inst->state, conn, p, N, out);
    for (int i = 0; i < N; i++) {
        assert_int_equal(out[i].status, BATON_OK);
        assert_memory_equal(out[i].provider_id, "mid:", 4);
    }
    assert_int_equal(wait_received(N), N);
    pthread_mutex_lock(&mu);
    assert_string_equal(
        received[0], "push/app {\"title\":\"T\",\"body\":\"B\",\"key\":\"k0\",\"profile\":\"p1\"}");
    pthread_mutex_unlock(&mu);
    /* the broker goes away: RETRY with its reason; it comes back on the
     * same port: the same worker reconnects */
    int port = broker.port;
    server_kill(&broker);
    ops->deliver(inst->state, conn, p, 3, out);
    for (int i = 0; i < 3; i++)
        assert_int_equal(out[i].status, BATON_RETRY);
    assert_non_null(strstr(out[0].reason, "MQTT"));
    assert_int_equal(server_start_mosquitto(&broker, dir, port), 0);
    ops->deliver(inst->state, conn, p, 3, out);
    for (int i = 0; i < 3; i++)
        assert_int_equal(out[i].status, BATON_OK);
    ops->worker_close(inst->state, conn);
    test_instance_free(inst);
    mosquitto_loop_stop(sub, true);
    mosquitto_destroy(sub);
}

static void test_mqtt_no_broker(void **state)
{
    char settings[256];
    snprintf(settings, sizeof settings, "broker = \"127.0.0.1:%d\"; topic = \"push/x\";",
             server_free_port());
    instance *inst = push(settings);
    const baton_channel_ops *ops = instance_channel(inst);
    void *conn = ops->worker_open(inst->state);
    baton_message m = msg("k", "p1", "T", "B");
    const baton_message *p = &m;
    baton_delivery out;
    ops->deliver(inst->state, conn, &p, 1, &out);
    assert_int_equal(out.status, BATON_RETRY);
    assert_non_null(strstr(out.reason, "Connection refused"));
    ops->worker_close(inst->state, conn);
    test_instance_free(inst);
}

static void test_http_mode(void **state)
{
    char src[1024], log[1024];
    const char *top = getenv("BATON_SRC");
    snprintf(src, sizeof src, "%s/tests/support/http_sink.py", top ? top : ".");
    snprintf(log, sizeof log, "%s/requests.jsonl", dir);
    char *argv[] = {
        "/usr/bin/python3",
        src,
        "--log",
        log,
        "--status",
        "200,429,404",
        "--body",
        "{\"name\": \"projects/x/messages/{seq}\", \"error\": {\"message\": \"s{status}\"}}",
        NULL};
    assert_int_equal(server_start_ready(&broker, argv, 15000), 0);
    char settings[256];
    snprintf(settings, sizeof settings,
             "mode = \"http\"; url = \"http://127.0.0.1:%d/v1/send\"; inflight = 1;", broker.port);
    instance *inst = push(settings);
    const baton_channel_ops *ops = instance_channel(inst);
    void *conn = ops->worker_open(inst->state);
    baton_message m[3] = {msg("a", "p1", "T", "B"), msg("b", "p2", "T", "B"),
                          msg("c", "p3", "T", "B")};
    const baton_message *p[3] = {&m[0], &m[1], &m[2]};
    baton_delivery out[3];
    ops->deliver(inst->state, conn, p, 3, out);
    assert_int_equal(out[0].status, BATON_OK);
    assert_string_equal(out[0].provider_id, "projects/x/messages/1");
    assert_int_equal(out[1].status, BATON_RETRY);
    assert_string_equal(out[1].reason, "HTTP 429: s429");
    assert_int_equal(out[2].status, BATON_ERROR);
    assert_string_equal(out[2].reason, "HTTP 404: s404");
    char *text = file_read(log, NULL);
    assert_non_null(strstr(text, "\"path\": \"/v1/send\""));
    assert_non_null(strstr(text, "\\\"profile\\\":\\\"p2\\\""));
    free(text);
    ops->worker_close(inst->state, conn);
    test_instance_free(inst);
}

/* libmosquitto leaks a getaddrinfo() result when a connect fails (the
 * broker killed on purpose): not ours to fix; LeakSanitizer reads this. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libmosquitto.so\n";
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_templates),
        cmocka_unit_test_setup_teardown(test_mqtt_qos1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mqtt_no_broker, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_mode, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    mosquitto_lib_cleanup();
    return rc;
}
