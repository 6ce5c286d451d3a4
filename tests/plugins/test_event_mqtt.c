/* event_mqtt against a real mosquitto broker, with a test event sink in
 * place of the journey runner: events arrive and are acknowledged only
 * after the sink's ack (a broker stopped while acks are held resends every
 * one of them after it comes back: no PUBACK went out early); refused
 * events are never acknowledged (a new connection gets them again); the
 * persistent session keeps what is published while baton is away, over
 * MQTT 5 and 3.1.1; backpressure (the sink full) loses nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "plugin/plugin_host.h"
#include "support/fs.h"
#include "support/instance.h"
#include "support/server.h"

const baton_plugin *baton_plugin_entry(void);

enum { SINK_ACK, SINK_HOLD, SINK_REFUSE };

/* The sink: events in arrival order; acks run by a committer thread a
 * little later (as the runner's ingest thread does), or held. */
#define MAXEV 4096
static struct {
    pthread_mutex_t mu;
    int mode, full_left;
    char *ev[MAXEV];
    int n;
    void (*ack[MAXEV])(void *);
    void *ctx[MAXEV];
    int nack, acked;
    int stop;
} sink = {.mu = PTHREAD_MUTEX_INITIALIZER};
static pthread_t committer;
static char *dir;
static test_server broker;
static int port;

static int sink_submit(void *ud, instance *from, const char *json, size_t len, void (*ack)(void *),
                       void *ack_ctx)
{
    pthread_mutex_lock(&sink.mu);
    int rc = 0;
    if (sink.mode == SINK_REFUSE) {
        rc = -1;
    } else if (sink.full_left > 0) {
        sink.full_left--;
        rc = 1;
    } else if (sink.n < MAXEV) {
        sink.ev[sink.n++] = strndup(json, len);
        sink.ack[sink.nack] = ack;
        sink.ctx[sink.nack++] = ack_ctx;
    }
    pthread_mutex_unlock(&sink.mu);
    return rc;
}

/* Acks what is pending every 2 ms unless held; each outside the lock. */
static void *commit_main(void *arg)
{
    for (;;) {
        pthread_mutex_lock(&sink.mu);
        if (sink.stop) {
            pthread_mutex_unlock(&sink.mu);
            return NULL;
        }
        while (sink.mode != SINK_HOLD && sink.acked < sink.nack) {
            int i = sink.acked++;
            pthread_mutex_unlock(&sink.mu);
            sink.ack[i](sink.ctx[i]);
            pthread_mutex_lock(&sink.mu);
        }
        pthread_mutex_unlock(&sink.mu);
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
}

static void sink_reset(int mode)
{
    pthread_mutex_lock(&sink.mu);
    for (int i = 0; i < sink.n; i++)
        free(sink.ev[i]);
    sink.n = sink.nack = sink.acked = sink.full_left = 0;
    sink.mode = mode;
    pthread_mutex_unlock(&sink.mu);
}

static void sink_mode(int mode)
{
    pthread_mutex_lock(&sink.mu);
    sink.mode = mode;
    pthread_mutex_unlock(&sink.mu);
}

static int sink_count(void)
{
    pthread_mutex_lock(&sink.mu);
    int n = sink.n;
    pthread_mutex_unlock(&sink.mu);
    return n;
}

/* Waits up to 10 s for at least n events; the count seen. */
static int wait_events(int n)
{
    for (int i = 0; i < 1000 && sink_count() < n; i++)
        usleep(10000);
    return sink_count();
}

static int setup(void **state)
{
    dir = tmpdir_make("event-mqtt");
    port = server_free_port();
    sink_reset(SINK_ACK);
    sink.stop = 0;
    plugin_host_set_event_sink(sink_submit, NULL, NULL);
    return pthread_create(&committer, NULL, commit_main, NULL);
}

static int teardown(void **state)
{
    server_stop(&broker);
    pthread_mutex_lock(&sink.mu);
    sink.stop = 1;
    pthread_mutex_unlock(&sink.mu);
    pthread_join(committer, NULL);
    plugin_host_set_event_sink(NULL, NULL, NULL);
    sink_reset(SINK_ACK);
    tmpdir_remove(dir);
    free(dir);
    return 0;
}

/* A broker that keeps sessions and in-flight messages across a clean
 * shutdown (its database is written on SIGTERM; started as root it would
 * otherwise run as the mosquitto user, unable to write in our directory). */
static int persist = 1; /* broker_start: persistence true (the settings baton needs) */

static void broker_start(void)
{
    char path[1024], text[1024];
    snprintf(path, sizeof path, "%s/mosquitto.conf", dir);
    snprintf(text, sizeof text,
             "listener %d 127.0.0.1\nallow_anonymous true\npersistence %s\n"
             "persistence_location %s/\nset_tcp_nodelay true\nuser root\n"
             "max_queued_messages 0\n", /* the default 1000 drops past it */
             port, persist ? "true" : "false", dir);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    const char *bin =
        access("/usr/sbin/mosquitto", X_OK) == 0 ? "/usr/sbin/mosquitto" : "mosquitto";
    char *argv[] = {(char *)bin, "-c", path, NULL};
    if (server_start_port(&broker, argv, port, 10000) != 0)
        fail_msg("cannot start mosquitto");
}

static instance *source(const char *extra)
{
    char settings[1024], err[512] = "";
    snprintf(settings, sizeof settings,
             "broker = \"127.0.0.1:%d\"; topics = [ \"t/#\" ]; client_id = \"baton-test\";"
             " reconnect_min = \"100ms\"; reconnect_max = \"200ms\"; %s",
             port, extra ? extra : "");
    instance *inst =
        test_instance_new(baton_plugin_entry(), "events", "mqtt", settings, 1, err, sizeof err);
    if (!inst)
        fail_msg("event_mqtt: %s", err);
    return inst;
}

static uint64_t counter(instance *inst, const char *name)
{
    for (size_t i = 0; i < inst->ncounters; i++)
        if (!strcmp(inst->counters[i]->name, name))
            return inst->counters[i]->value;
    return 0;
}

/* Publishes n messages {"i": first..first+n-1} at QoS 1. */
static void publish(int first, int n)
{
    char file[1024], cmd[2048];
    snprintf(file, sizeof file, "%s/lines", dir);
    FILE *f = fopen(file, "w");
    for (int i = first; i < first + n; i++)
        fprintf(f, "{\"i\": %d}\n", i);
    fclose(f);
    snprintf(cmd, sizeof cmd, "mosquitto_pub -h 127.0.0.1 -p %d -q 1 -t t/x -l < %s", port, file);
    assert_int_equal(system(cmd), 0);
}

/* Events first..first+n-1 were received, each at least once, and nothing
 * else. */
static void assert_got(int first, int n)
{
    char *seen = calloc((size_t)n, 1);
    pthread_mutex_lock(&sink.mu);
    for (int k = 0; k < sink.n; k++) {
        int i = -1;
        assert_int_equal(sscanf(sink.ev[k], "{\"i\": %d}", &i), 1);
        assert_true(i >= first && i < first + n);
        seen[i - first] = 1;
    }
    pthread_mutex_unlock(&sink.mu);
    for (int i = 0; i < n; i++)
        assert_true(seen[i]);
    free(seen);
}

/* Everything arrives and is acknowledged: a second connection under the
 * same session gets nothing again; what is published while baton is away
 * is kept by the broker for the session. */
static void session_roundtrip(const char *extra)
{
    broker_start();
    instance *inst = source(extra);
    usleep(300000); /* subscribed */
    publish(0, 500);
    assert_int_equal(wait_events(500), 500);
    assert_got(0, 500);
    assert_int_equal(counter(inst, "events"), 500);
    test_instance_free(inst); /* waits for the acks, writes the PUBACKs */
    publish(500, 20);         /* while away */
    sink_reset(SINK_ACK);
    inst = source(extra);
    assert_int_equal(wait_events(20), 20);
    usleep(300000); /* anything resent would be here by now */
    assert_int_equal(sink_count(), 20);
    assert_got(500, 20);
    test_instance_free(inst);
}

static void test_session_mqtt5(void **state)
{
    session_roundtrip("protocol = \"5\";");
}

static void test_session_mqtt311(void **state)
{
    session_roundtrip(NULL);
}

static int times_seen(int i)
{
    int times = 0;
    pthread_mutex_lock(&sink.mu);
    for (int e = 0; e < sink.n; e++) {
        int got = -1;
        sscanf(sink.ev[e], "{\"i\": %d}", &got);
        times += got == i;
    }
    pthread_mutex_unlock(&sink.mu);
    return times;
}

/* No PUBACK before the sink's ack: the broker, stopped while the acks are
 * held (the source waits for them before it reads on), sends the held
 * events again once it is back (persisted session), then the rest. */
static void no_ack_before_stored(const char *extra)
{
    broker_start();
    sink_reset(SINK_HOLD);
    instance *inst = source(extra);
    usleep(300000);
    publish(0, 5);
    wait_events(1);
    usleep(300000);
    int held = sink_count(); /* the first read's events; no more while they are held */
    int first[MAXEV];
    pthread_mutex_lock(&sink.mu);
    for (int k = 0; k < held; k++)
        assert_int_equal(sscanf(sink.ev[k], "{\"i\": %d}", &first[k]), 1);
    pthread_mutex_unlock(&sink.mu);
    server_stop(&broker); /* SIGTERM: the broker saves the session and what is in flight */
    sink_mode(SINK_ACK);  /* the acks now go to a dead connection */
    broker_start();
    /* each held event comes again (it was never acknowledged); so may the
     * others, read after the broker went from what it had sent */
    for (int tries = 0; tries < 1000 && times_seen(first[held - 1]) < 2; tries++)
        usleep(10000);
    for (int k = 0; k < held; k++)
        assert_true(times_seen(first[k]) >= 2);
    assert_got(0, 5);
    assert_true(counter(inst, "connections") >= 2);
    test_instance_free(inst);
}

static void test_no_ack_before_stored(void **state)
{
    no_ack_before_stored(NULL);
}

static void test_no_ack_before_stored_mqtt5(void **state)
{
    no_ack_before_stored("protocol = \"5\"; receive_maximum = 10;");
}

/* A refused event is never acknowledged: the next connection under the
 * same session is sent it again. */
static void test_refused_not_acknowledged(void **state)
{
    broker_start();
    sink_reset(SINK_REFUSE);
    instance *inst = source(NULL);
    usleep(300000);
    publish(0, 3);
    usleep(500000);
    assert_int_equal(sink_count(), 0);
    test_instance_free(inst);
    sink_reset(SINK_ACK);
    inst = source(NULL);
    assert_int_equal(wait_events(3), 3);
    assert_got(0, 3);
    test_instance_free(inst);
}

/* "Full" from the host: the source waits and retries; nothing is lost. */
static void test_backpressure(void **state)
{
    broker_start();
    sink_reset(SINK_ACK);
    pthread_mutex_lock(&sink.mu);
    sink.full_left = 3;
    pthread_mutex_unlock(&sink.mu);
    instance *inst = source(NULL);
    usleep(300000);
    publish(0, 50);
    assert_int_equal(wait_events(50), 50);
    assert_got(0, 50);
    assert_int_equal(counter(inst, "backpressure_waits"), 3);
    test_instance_free(inst);
}

static void test_bad_protocol(void **state)
{
    char err[512] = "";
    instance *inst = test_instance_new(baton_plugin_entry(), "events", "mqtt", "protocol = \"4\";",
                                       0, err, sizeof err);
    assert_null(inst);
    assert_non_null(strstr(err, "protocol"));
}

/* A broker restarted without persistence has lost baton's session, and
 * with it whatever was published meanwhile: baton says so, naming the
 * setting. */
static void test_lost_session_is_told(void **state)
{
    persist = 0;
    broker_start();
    instance *inst = source(NULL);
    for (int i = 0; i < 500 && counter(inst, "connections") < 1; i++)
        usleep(10000);
    assert_int_equal(counter(inst, "connections"), 1);
    char path[1024];
    snprintf(path, sizeof path, "%s/stderr", dir);
    fflush(stderr);
    int saved = dup(2), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    server_stop(&broker);
    broker_start();
    for (int i = 0; i < 1000 && counter(inst, "connections") < 2; i++)
        usleep(10000);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    persist = 1;
    assert_int_equal(counter(inst, "connections"), 2);
    char *text = file_read(path, NULL);
    assert_non_null(text);
    if (!strstr(text, "kept no session for client_id") || !strstr(text, "persistence"))
        fail_msg("no warning in: %s", text);
    free(text);
    test_instance_free(inst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_session_mqtt5, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_mqtt311, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_ack_before_stored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_ack_before_stored_mqtt5, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_not_acknowledged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_session_is_told, setup, teardown),
        cmocka_unit_test(test_bad_protocol),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
