/* event_mqtt — journey events from an MQTT broker (libmosquitto).
 *
 * Subscribes to `topics` at `qos` (1 by default) with a persistent session
 * (clean_session = false, a fixed client_id), so the broker keeps what
 * arrives while baton is down or reloading. Reconnects with exponential
 * backoff between reconnect_min and reconnect_max.
 *
 * Acknowledgement: libmosquitto 2.0 queues a QoS 1 PUBACK before calling
 * on_message, but in threaded mode (mosquitto_loop_start) the packet is
 * only written when the callback has returned. The callback hands the
 * payload to the host (host->event_submit) and returns only once the host
 * has acknowledged it (committed to the inbox or dead-lettered): a crash
 * before that leaves the message un-acknowledged and the broker sends it
 * again. When the host answers "full", the callback waits and retries:
 * the broker holds the rest (backpressure). */
#include <baton/baton.h>
#include <errno.h>
#include <mosquitto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


static const baton_config_key keys[] = {
    {.name = "broker", .type = BATON_CFG_STRING, .default_value = "127.0.0.1:1883",
     .help = "host:port of the MQTT broker"},
    {.name = "topics", .type = BATON_CFG_LIST, .default_value = "baton/events/#",
     .help = "topic filters to subscribe to (one event per message, JSON)"},
    {.name = "qos", .type = BATON_CFG_INT, .default_value = "1", .has_range = 1, .min = 0,
     .max = 2, .help = "subscription QoS; 1 (at least once) with baton's dedup by event id"},
    {.name = "client_id", .type = BATON_CFG_STRING,
     .help = "MQTT client id (default baton-<entry name>); keep it stable: the broker keeps the "
             "session under it"},
    {.name = "clean_session", .type = BATON_CFG_BOOL, .default_value = "false",
     .help = "true: the broker forgets the subscription and undelivered messages on disconnect"},
    {.name = "keepalive", .type = BATON_CFG_DURATION, .default_value = "30s", .has_range = 1,
     .min = 5, .max = 65535, .help = "MQTT keepalive"},
    {.name = "reconnect_min", .type = BATON_CFG_DURATION, .default_value = "1s",
     .help = "first reconnect delay; doubles up to reconnect_max"},
    {.name = "reconnect_max", .type = BATON_CFG_DURATION, .default_value = "30s",
     .help = "longest reconnect delay"},
    {.name = "username", .type = BATON_CFG_STRING, .help = "broker user, if it needs one"},
    {.name = "password", .type = BATON_CFG_STRING, .help = "broker password (use ${env:NAME})"},
    {0}};

typedef struct mq {
    const baton_host *host;
    baton_instance *inst;
    struct mosquitto *m;
    char *hostname;
    int port, qos, keepalive;
    char *client_id;
    int clean;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
    baton_counter *c_in, *c_full, *c_conn;
} mq;

typedef struct waiter {
    mq *q;
    int acked;
} waiter;

static pthread_mutex_t lib_mu = PTHREAD_MUTEX_INITIALIZER;
static int lib_refs;

static void on_ack(void *ctx)
{
    waiter *w = ctx;
    pthread_mutex_lock(&w->q->mu);
    w->acked = 1;
    pthread_cond_broadcast(&w->q->cv);
    pthread_mutex_unlock(&w->q->mu);
}

static void on_connect(struct mosquitto *m, void *ud, int rc)
{
    mq *q = ud;
    if (rc != 0) {
        q->host->log(q->inst, BATON_LOG_WARN, "broker %s:%d refused the connection: %s",
                     q->hostname, q->port, mosquitto_connack_string(rc));
        return;
    }
    q->host->counter_add(q->c_conn, 1);
    size_t n = q->host->config_list_count(q->inst, "topics");
    for (size_t i = 0; i < n; i++) {
        const char *t = q->host->config_list_item(q->inst, "topics", i);
        int src = mosquitto_subscribe(m, NULL, t, q->qos);
        if (src != MOSQ_ERR_SUCCESS)
            q->host->log(q->inst, BATON_LOG_ERROR, "cannot subscribe to %s: %s", t,
                         mosquitto_strerror(src));
    }
    q->host->log(q->inst, BATON_LOG_INFO, "connected to %s:%d", q->hostname, q->port);
}

static void on_disconnect(struct mosquitto *m, void *ud, int rc)
{
    mq *q = ud;
    if (rc != 0 && !q->stopping)
        q->host->log(q->inst, BATON_LOG_WARN, "lost the broker (%s); reconnecting",
                     mosquitto_strerror(rc));
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Return only when the host has the event (see the top of the file). */
static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg)
{
    mq *q = ud;
    waiter w = {q, 0};
    long backoff = 1;
    for (;;) {
        int rc = q->host->event_submit(q->inst, msg->payload ? msg->payload : "",
                                       (size_t)msg->payloadlen, on_ack, &w);
        if (rc == 0)
            break;
        if (rc < 0) {
            /* no sink: baton is stopping. Wait for stop() rather than let
             * the PUBACK go out for an event nobody stored. */
            pthread_mutex_lock(&q->mu);
            while (!q->stopping)
                pthread_cond_wait(&q->cv, &q->mu);
            pthread_mutex_unlock(&q->mu);
            return;
        }
        q->host->counter_add(q->c_full, 1);
        nap_ms(backoff);
        backoff = backoff < 64 ? backoff * 2 : 64;
        pthread_mutex_lock(&q->mu);
        int stop = q->stopping;
        pthread_mutex_unlock(&q->mu);
        if (stop)
            return;
    }
    pthread_mutex_lock(&q->mu);
    while (!w.acked)
        pthread_cond_wait(&q->cv, &q->mu);
    pthread_mutex_unlock(&q->mu);
    q->host->counter_add(q->c_in, 1);
}

static int mq_init(baton_instance *inst, const baton_host *host, void **state)
{
    mq *q = calloc(1, sizeof *q);
    if (!q) {
        host->set_error(inst, "out of memory");
        return -1;
    }
    q->host = host;
    q->inst = inst;
    const char *broker = host->config_string(inst, "broker");
    const char *colon = strrchr(broker, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : 1883;
    if ((colon && (!end || *end || port <= 0 || port > 65535)) || colon == broker) {
        host->set_error(inst, "broker = \"%s\" is not host:port", broker);
        free(q);
        return -1;
    }
    q->hostname = colon ? strndup(broker, (size_t)(colon - broker)) : strdup(broker);
    q->port = (int)port;
    q->qos = (int)host->config_int(inst, "qos");
    q->keepalive = (int)(host->config_duration_ms(inst, "keepalive") / 1000);
    q->clean = host->config_bool(inst, "clean_session");
    const char *cid = host->config_string(inst, "client_id");
    if (cid) {
        q->client_id = strdup(cid);
    } else {
        size_t l = strlen(host->instance_name(inst)) + 7;
        q->client_id = malloc(l);
        snprintf(q->client_id, l, "baton-%s", host->instance_name(inst));
    }
    if (host->config_list_count(inst, "topics") == 0) {
        host->set_error(inst, "topics is empty: name at least one topic filter");
        free(q->hostname);
        free(q->client_id);
        free(q);
        return -1;
    }
    q->c_in = host->counter(inst, "events");
    q->c_full = host->counter(inst, "backpressure_waits");
    q->c_conn = host->counter(inst, "connections");
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    *state = q;
    return 0;
}

static int mq_start(void *state)
{
    mq *q = state;
    pthread_mutex_lock(&lib_mu);
    if (lib_refs++ == 0)
        mosquitto_lib_init();
    pthread_mutex_unlock(&lib_mu);
    q->stopping = 0;
    q->m = mosquitto_new(q->client_id, q->clean, q);
    if (!q->m) {
        q->host->set_error(q->inst, "mosquitto_new: %s", strerror(errno));
        return -1;
    }
    const char *user = q->host->config_string(q->inst, "username");
    if (user)
        mosquitto_username_pw_set(q->m, user, q->host->config_string(q->inst, "password"));
    mosquitto_connect_callback_set(q->m, on_connect);
    mosquitto_disconnect_callback_set(q->m, on_disconnect);
    mosquitto_message_callback_set(q->m, on_message);
    unsigned rmin = (unsigned)(q->host->config_duration_ms(q->inst, "reconnect_min") / 1000);
    unsigned rmax = (unsigned)(q->host->config_duration_ms(q->inst, "reconnect_max") / 1000);
    mosquitto_reconnect_delay_set(q->m, rmin ? rmin : 1, rmax > rmin ? rmax : rmin + 1, true);
    int rc = mosquitto_connect_async(q->m, q->hostname, q->port, q->keepalive);
    if (rc != MOSQ_ERR_SUCCESS)
        q->host->log(q->inst, BATON_LOG_WARN, "broker %s:%d not reachable yet (%s); retrying",
                     q->hostname, q->port, mosquitto_strerror(rc));
    rc = mosquitto_loop_start(q->m);
    if (rc != MOSQ_ERR_SUCCESS) {
        q->host->set_error(q->inst, "mosquitto_loop_start: %s", mosquitto_strerror(rc));
        mosquitto_destroy(q->m);
        q->m = NULL;
        return -1;
    }
    return 0;
}

static void mq_stop(void *state)
{
    mq *q = state;
    if (!q->m)
        return;
    pthread_mutex_lock(&q->mu);
    q->stopping = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    mosquitto_disconnect(q->m);
    mosquitto_loop_stop(q->m, false);
    mosquitto_destroy(q->m);
    q->m = NULL;
    pthread_mutex_lock(&lib_mu);
    if (--lib_refs == 0)
        mosquitto_lib_cleanup();
    pthread_mutex_unlock(&lib_mu);
}

static void mq_destroy(void *state)
{
    mq *q = state;
    if (!q)
        return;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q->hostname);
    free(q->client_id);
    free(q);
}

static const baton_event_ops ops = {.size = sizeof(baton_event_ops)};

BATON_PLUGIN(.name = "event_mqtt", .version = "1.0.0",
             .description = "journey events from an MQTT broker (QoS 1, persistent session)",
             .kind = BATON_KIND_EVENT, .config = keys, .init = mq_init, .start = mq_start,
             .stop = mq_stop, .destroy = mq_destroy, .ops = &ops);
