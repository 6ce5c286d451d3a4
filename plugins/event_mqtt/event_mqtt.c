/* event_mqtt — journey events from an MQTT broker (libmosquitto).
 *
 * Subscribes to `topics` at `qos` (1 by default) with a persistent session
 * (clean_session = false, a fixed client_id), so the broker keeps what
 * arrives while baton is down or reloading. Reconnects with exponential
 * backoff between reconnect_min and reconnect_max.
 *
 * Acknowledgement: libmosquitto 2.0 queues a QoS 1 PUBACK before calling
 * on_message; with mosquitto_threaded_set the queued packets are written
 * only by mosquitto_loop_write. This plugin runs the network loop itself:
 * it reads every message that has arrived (each one handed to the host
 * with host->event_submit, which commits them together), waits until the
 * host has acknowledged all of them (committed to the inbox or
 * dead-lettered), and only then writes the PUBACKs. A crash before that
 * leaves the messages un-acknowledged and the broker sends them again;
 * and the host commits a whole read in one transaction (group commit).
 * When the host answers "full", the callback waits and retries: the
 * broker holds the rest (backpressure).
 *
 * MQTT 3.1.1 by default; protocol = "5" lets baton set how many messages
 * the broker may have in flight to it (receive_maximum), where 3.1.1
 * leaves that to the broker (mosquitto's max_inflight_messages, 20 by
 * default): one read-commit-acknowledge round carries at most that many
 * events. With the journey bench at ~13,000 events/s a round holds ~12,
 * so the limit of 20 does not bind there (no gain measured); it would
 * when commits are slow. Under 5, the persistent session of
 * clean_session = false is clean start off with a session that never
 * expires.
 *
 * Costs per message (libmosquitto 2.0, read in its source): three read()
 * calls (command byte, remaining length, body), a one-byte write() to its
 * wakeup socket pair when the PUBACK is queued, and one write() per
 * PUBACK; none of these can be batched through its public API. The rest
 * here is kept off the per-message path: no lock per message (atomics;
 * the loop is woken only when the last acknowledgement of a group
 * comes). */
#include <baton/baton.h>
#include <errno.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *const protocols[] = {"3.1.1", "5", NULL};

static const baton_config_key keys[] = {
    {.name = "broker",
     .type = BATON_CFG_STRING,
     .default_value = "127.0.0.1:1883",
     .help = "host:port of the MQTT broker"},
    {.name = "topics",
     .type = BATON_CFG_LIST,
     .default_value = "baton/events/#",
     .help = "topic filters to subscribe to (one event per message, JSON)"},
    {.name = "qos",
     .type = BATON_CFG_INT,
     .default_value = "1",
     .has_range = 1,
     .min = 0,
     .max = 2,
     .help = "subscription QoS; 1 (at least once) with baton's dedup by event id"},
    {.name = "client_id",
     .type = BATON_CFG_STRING,
     .help = "MQTT client id (default baton-<entry name>); keep it stable: the broker keeps the "
             "session under it"},
    {.name = "clean_session",
     .type = BATON_CFG_BOOL,
     .default_value = "false",
     .help = "true: the broker forgets the subscription and undelivered messages on disconnect"},
    {.name = "protocol",
     .type = BATON_CFG_ENUM,
     .default_value = "3.1.1",
     .choices = protocols,
     .help = "MQTT version, \"3.1.1\" or \"5\" (5: baton sets receive_maximum)"},
    {.name = "receive_maximum",
     .type = BATON_CFG_INT,
     .default_value = "1000",
     .has_range = 1,
     .min = 1,
     .max = 65535,
     .help = "MQTT 5: messages the broker may send before baton acknowledges them; each such "
             "window is stored as one group"},
    {.name = "keepalive",
     .type = BATON_CFG_DURATION,
     .default_value = "30s",
     .has_range = 1,
     .min = 5,
     .max = 65535,
     .help = "MQTT keepalive"},
    {.name = "reconnect_min",
     .type = BATON_CFG_DURATION,
     .default_value = "1s",
     .help = "first reconnect delay; doubles up to reconnect_max"},
    {.name = "reconnect_max",
     .type = BATON_CFG_DURATION,
     .default_value = "30s",
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
    int clean, v5, receive_max;
    int connects; /* CONNACKs this run (loop thread) */
    unsigned rmin_ms, rmax_ms;
    pthread_mutex_t mu; /* with cv: the loop's sleep until the last ack */
    pthread_cond_t cv;
    atomic_int stopping;
    atomic_int refused;      /* the host refused an event: never write its PUBACK */
    atomic_long outstanding; /* handed to the host, not yet acknowledged */
    long submitted;          /* this round (loop thread only) */
    pthread_t th;
    int started;
    baton_counter *c_in, *c_full, *c_conn;
} mq;

static pthread_mutex_t lib_mu = PTHREAD_MUTEX_INITIALIZER;
static int lib_refs;

/* Host thread. Only the last acknowledgement of a group wakes the loop
 * (await_acks checks the count under mu, so taking mu here before the
 * signal cannot lose it). */
static void on_ack(void *ctx)
{
    mq *q = ctx;
    if (atomic_fetch_sub(&q->outstanding, 1) == 1) {
        pthread_mutex_lock(&q->mu);
        pthread_cond_signal(&q->cv);
        pthread_mutex_unlock(&q->mu);
    }
}

/* What a v5 CONNACK's properties say about the broker's limits: a
 * session expiry below "never" (a broker that bounds it, as EMQX's
 * max_session_expiry_interval; mosquitto 2.0 states none), a maximum QoS
 * below ours (mosquitto's max_qos). Either loses events published while baton is
 * away. serve logs them at each connection, check's probe reports them:
 * one function, each finding to note. mosquitto's max_queued_messages is
 * never announced: docs/operations.md says what to set. */
static void broker_limits(const mq *q, const mosquitto_property *props, baton_probe_note_fn note,
                          void *ud)
{
    char text[512];
    uint32_t expiry;
    if (q->v5 && !q->clean &&
        mosquitto_property_read_int32(props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, &expiry, false) &&
        expiry != UINT32_MAX) {
        snprintf(text, sizeof text,
                 "broker %s:%d keeps baton's session %u s at most "
                 "(its session expiry limit): events published while baton is down longer "
                 "are dropped",
                 q->hostname, q->port, (unsigned)expiry);
        note(ud, BATON_LOG_WARN, text);
    }
    uint8_t maxqos;
    if (mosquitto_property_read_byte(props, MQTT_PROP_MAXIMUM_QOS, &maxqos, false) &&
        maxqos < q->qos) {
        snprintf(text, sizeof text,
                 "broker %s:%d grants QoS %u at most, below qos = %d: events may be lost",
                 q->hostname, q->port, (unsigned)maxqos, q->qos);
        note(ud, BATON_LOG_WARN, text);
    }
}

/* serve: findings go to the log */
static void log_note(void *ud, baton_log_level level, const char *text)
{
    const mq *q = ud;
    q->host->log(q->inst, level, "%s", text);
}

/* A session the broker did not keep (restarted without persistence,
 * expired): events published while baton was away are lost. */
static void session_kept(mq *q, int flags)
{
    int present = flags & 1;
    if (!q->clean && !present && q->connects > 1)
        q->host->log(q->inst, BATON_LOG_WARN,
                     "broker %s:%d kept no session for client_id '%s': events published while "
                     "baton was disconnected are lost (is the broker's persistence on? a "
                     "restart without it drops sessions)",
                     q->hostname, q->port, q->client_id);
    else if (!q->clean && !present)
        q->host->log(q->inst, BATON_LOG_INFO,
                     "broker %s:%d has no session for client_id '%s' yet: a new one is kept "
                     "from now on",
                     q->hostname, q->port, q->client_id);
}

static void on_connect(struct mosquitto *m, void *ud, int rc, int flags,
                       const mosquitto_property *props)
{
    mq *q = ud;
    if (rc != 0) {
        q->host->log(q->inst, BATON_LOG_WARN, "broker %s:%d refused the connection: %s%s",
                     q->hostname, q->port,
                     q->v5 ? mosquitto_reason_string(rc) : mosquitto_connack_string(rc),
                     /* 1: a 3.1.1 broker's "unacceptable protocol version" */
                     q->v5 && (rc == 1 || rc == MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION)
                         ? " (set protocol = \"3.1.1\" for this broker)"
                         : "");
        return;
    }
    q->host->counter_add(q->c_conn, 1);
    q->connects++;
    session_kept(q, flags);
    broker_limits(q, props, log_note, q);
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

static int is_stopping(mq *q)
{
    return atomic_load(&q->stopping);
}

/* Hand the event to the host; its acknowledgement is awaited by the loop
 * before any PUBACK is written (see the top of the file). */
static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg)
{
    mq *q = ud;
    long backoff = 1;
    atomic_fetch_add(&q->outstanding, 1);
    for (;;) {
        int rc = q->host->event_submit(q->inst, msg->payload ? msg->payload : "",
                                       (size_t)msg->payloadlen, on_ack, q);
        if (rc == 0) {
            q->submitted++;
            q->host->counter_add(q->c_in, 1);
            return;
        }
        if (rc < 0 || is_stopping(q)) {
            /* nobody stored it: its PUBACK must never go out */
            atomic_store(&q->refused, 1);
            atomic_fetch_sub(&q->outstanding, 1);
            return;
        }
        q->host->counter_add(q->c_full, 1);
        nap_ms(backoff);
        backoff = backoff < 64 ? backoff * 2 : 64;
    }
}

/* Wait until every event handed over is acknowledged. 0, or -1 when an
 * event was refused (the connection must then be dropped unwritten). */
static int await_acks(mq *q)
{
    if (atomic_load(&q->outstanding) > 0) {
        pthread_mutex_lock(&q->mu);
        while (atomic_load(&q->outstanding) > 0)
            pthread_cond_wait(&q->cv, &q->mu);
        pthread_mutex_unlock(&q->mu);
    }
    return atomic_load(&q->refused) ? -1 : 0;
}

/* Sleep ms unless stopping; 1 when stopping. */
static int pause_ms(mq *q, long ms)
{
    for (long waited = 0; waited < ms; waited += 50) {
        if (is_stopping(q))
            return 1;
        nap_ms(ms - waited < 50 ? ms - waited : 50);
    }
    return is_stopping(q);
}

/* MQTT 5 without clean start: a session that never expires, as 3.1.1's
 * clean_session = false (libmosquitto keeps the property for reconnects). */
static int first_connect(mq *q)
{
    if (!q->v5 || q->clean)
        return mosquitto_connect(q->m, q->hostname, q->port, q->keepalive);
    mosquitto_property *props = NULL;
    int rc = mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, UINT32_MAX);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_connect_bind_v5(q->m, q->hostname, q->port, q->keepalive, NULL, props);
    mosquitto_property_free_all(&props);
    return rc;
}

static void *loop_main(void *arg)
{
    mq *q = arg;
    pthread_setname_np(pthread_self(), "baton-mqtt"); /* top -H, perf */
    int connected = 0, ever = 0;
    long backoff = q->rmin_ms;
    while (!is_stopping(q)) {
        if (!connected) {
            int rc = ever ? mosquitto_reconnect(q->m) : first_connect(q);
            if (rc != MOSQ_ERR_SUCCESS) {
                q->host->log(
                    q->inst, BATON_LOG_WARN, "broker %s:%d not reachable (%s); retrying in %ld ms",
                    q->hostname, q->port,
                    rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc), backoff);
                if (pause_ms(q, backoff))
                    break;
                backoff = backoff * 2 > (long)q->rmax_ms ? (long)q->rmax_ms : backoff * 2;
                continue;
            }
            ever = connected = 1;
            backoff = q->rmin_ms;
        }
        int fd = mosquitto_socket(q->m);
        struct pollfd p = {fd, POLLIN | (mosquitto_want_write(q->m) ? POLLOUT : 0), 0};
        int rc = MOSQ_ERR_SUCCESS;
        if (poll(&p, 1, 100) > 0 && (p.revents & (POLLIN | POLLERR | POLLHUP))) {
            /* everything that has arrived, as one group for the host */
            for (int k = 0; k < 8192 && rc == MOSQ_ERR_SUCCESS; k++) {
                /* the socket is non-blocking: a read that finds nothing
                 * leaves EAGAIN, and the group is complete */
                errno = 0;
                rc = mosquitto_loop_read(q->m, 1);
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
            }
        }
        /* that was all one read brought: one group for the host */
        if (q->submitted > 0 && q->host->abi_minor >= 1 && q->host->event_flush)
            q->host->event_flush(q->inst);
        q->submitted = 0;
        if (await_acks(q) != 0) {
            q->host->log(q->inst, BATON_LOG_ERROR,
                         "the host refused events; closing without acknowledging them");
            break;
        }
        if (rc == MOSQ_ERR_SUCCESS)
            rc = mosquitto_loop_write(q->m, 1);
        if (rc == MOSQ_ERR_SUCCESS)
            rc = mosquitto_loop_misc(q->m);
        if (rc != MOSQ_ERR_SUCCESS && !is_stopping(q)) {
            q->host->log(q->inst, BATON_LOG_WARN, "lost the broker (%s); reconnecting",
                         rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
            connected = 0;
            if (pause_ms(q, backoff))
                break;
        }
    }
    if (connected && await_acks(q) == 0) {
        /* the last PUBACKs, then a clean goodbye (the session stays) */
        mosquitto_loop_write(q->m, 1);
        mosquitto_disconnect(q->m);
        mosquitto_loop_write(q->m, 1);
    }
    return NULL;
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
    q->hostname = BATON_CHECKED(colon ? strndup(broker, (size_t)(colon - broker)) : strdup(broker));
    q->port = (int)port;
    q->qos = (int)host->config_int(inst, "qos");
    q->keepalive = (int)(host->config_duration_ms(inst, "keepalive") / 1000);
    q->clean = host->config_bool(inst, "clean_session");
    q->v5 = host->config_enum(inst, "protocol") == 1; /* "3.1.1", "5" */
    q->receive_max = (int)host->config_int(inst, "receive_maximum");
    const char *cid = host->config_string(inst, "client_id");
    if (cid) {
        q->client_id = BATON_CHECKED(strdup(cid));
    } else {
        size_t l = strlen(host->instance_name(inst)) + 7;
        q->client_id = BATON_CHECKED(malloc(l));
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
    q->refused = 0;
    q->outstanding = 0;
    q->connects = 0;
    q->m = mosquitto_new(q->client_id, q->clean, q);
    if (!q->m) {
        q->host->set_error(q->inst, "mosquitto_new: %s", strerror(errno));
        return -1;
    }
    /* packets are written only by mosquitto_loop_write, from our loop */
    mosquitto_threaded_set(q->m, true);
    if (q->v5) {
        mosquitto_int_option(q->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
        mosquitto_int_option(q->m, MOSQ_OPT_RECEIVE_MAXIMUM, q->receive_max);
    }
    const char *user = q->host->config_string(q->inst, "username");
    if (user)
        mosquitto_username_pw_set(q->m, user, q->host->config_string(q->inst, "password"));
    mosquitto_connect_v5_callback_set(q->m, on_connect); /* flags and properties, any version */
    mosquitto_disconnect_callback_set(q->m, on_disconnect);
    mosquitto_message_callback_set(q->m, on_message);
    q->rmin_ms = (unsigned)q->host->config_duration_ms(q->inst, "reconnect_min");
    q->rmax_ms = (unsigned)q->host->config_duration_ms(q->inst, "reconnect_max");
    if (q->rmin_ms < 10)
        q->rmin_ms = 10;
    if (q->rmax_ms < q->rmin_ms)
        q->rmax_ms = q->rmin_ms;
    if (pthread_create(&q->th, NULL, loop_main, q) != 0) {
        q->host->set_error(q->inst, "cannot start the network thread");
        mosquitto_destroy(q->m);
        q->m = NULL;
        return -1;
    }
    q->started = 1;
    return 0;
}

static void mq_stop(void *state)
{
    mq *q = state;
    if (!q->m)
        return;
    atomic_store(&q->stopping, 1);
    if (q->started)
        pthread_join(q->th, NULL);
    q->started = 0;
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

/* The CONNACK the probe waits for (its callback's user data). */
typedef struct probe_run {
    int done, rc;
    mosquitto_property *props;
} probe_run;

static void probe_on_connect(struct mosquitto *m, void *ud, int rc, int flags,
                             const mosquitto_property *props)
{
    probe_run *r = ud;
    r->done = 1;
    r->rc = rc;
    if (rc == 0)
        mosquitto_property_copy_all(&r->props, props);
}

/* 0 when host:port accepts a TCP connection within timeout_ms, else -1
 * with why: libmosquitto's own connect would wait for the kernel's
 * timeout (minutes) on a host that does not answer. */
static int reachable(const char *host, int port, int timeout_ms, char *why, size_t whylen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    char svc[16];
    snprintf(svc, sizeof svc, "%d", port);
    int rc = getaddrinfo(host, svc, &hints, &ai);
    if (rc != 0) {
        snprintf(why, whylen, "%s", gai_strerror(rc));
        return -1;
    }
    int ok = -1;
    snprintf(why, whylen, "no address");
    for (struct addrinfo *a = ai; a && ok != 0; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int err = 0;
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            err = errno;
            if (err == EINPROGRESS) {
                struct pollfd p = {fd, POLLOUT, 0};
                socklen_t len = sizeof err;
                if (poll(&p, 1, timeout_ms) == 1)
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
                else
                    err = ETIMEDOUT;
            }
        }
        if (err == 0)
            ok = 0;
        else
            snprintf(why, whylen, "%s", strerror(err));
        close(fd);
    }
    freeaddrinfo(ai);
    return ok;
}

/* baton check: connect under client_id + "-check" (never serve's id,
 * which would kick a running serve off), clean start, read the CONNACK's
 * properties, leave. Session expiry "never" is asked for so that the
 * broker answers with its own bound when it has one (a broker states it
 * only when it lowers what was asked), and set to 0 in the DISCONNECT,
 * so no session is left behind. Always MQTT 5: 3.1.1 announces nothing. */
static void mq_probe(void *state, baton_probe_note_fn note, void *ud)
{
    mq *q = state;
    char text[768], why[256];
    if (reachable(q->hostname, q->port, 2000, why, sizeof why) != 0) {
        snprintf(text, sizeof text,
                 "broker %s:%d not reachable (%s): its limits are not checked (serve keeps "
                 "retrying)",
                 q->hostname, q->port, why);
        note(ud, BATON_LOG_WARN, text);
        return;
    }
    pthread_mutex_lock(&lib_mu);
    if (lib_refs++ == 0)
        mosquitto_lib_init();
    pthread_mutex_unlock(&lib_mu);
    size_t l = strlen(q->client_id) + 7;
    char *id = BATON_CHECKED(malloc(l));
    snprintf(id, l, "%s-check", q->client_id);
    probe_run r = {0};
    struct mosquitto *m = mosquitto_new(id, true, &r);
    mosquitto_property *props = NULL;
    int rc = m ? MOSQ_ERR_SUCCESS : MOSQ_ERR_NOMEM;
    if (m) {
        mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
        const char *user = q->host->config_string(q->inst, "username");
        if (user)
            mosquitto_username_pw_set(m, user, q->host->config_string(q->inst, "password"));
        mosquitto_connect_v5_callback_set(m, probe_on_connect);
        if (!q->clean)
            rc =
                mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, UINT32_MAX);
        if (rc == MOSQ_ERR_SUCCESS)
            rc = mosquitto_connect_bind_v5(m, q->hostname, q->port, 10, NULL, props);
        mosquitto_property_free_all(&props);
        /* at most ~3 s for the CONNACK */
        for (int i = 0; rc == MOSQ_ERR_SUCCESS && !r.done && i < 30; i++)
            rc = mosquitto_loop(m, 100, 1);
    }
    if (rc != MOSQ_ERR_SUCCESS || !r.done) {
        snprintf(text, sizeof text, "broker %s:%d did not answer an MQTT 5 CONNECT (%s)",
                 q->hostname, q->port,
                 rc == MOSQ_ERR_SUCCESS ? "no CONNACK within 3 s"
                 : rc == MOSQ_ERR_ERRNO ? strerror(errno)
                                        : mosquitto_strerror(rc));
        note(ud, BATON_LOG_WARN, text);
    } else if (r.rc != 0) {
        snprintf(text, sizeof text, "broker %s:%d refused check's MQTT 5 connection: %s",
                 q->hostname, q->port, mosquitto_reason_string(r.rc));
        note(ud, BATON_LOG_WARN, text);
    } else {
        broker_limits(q, r.props, note, ud);
        snprintf(text, sizeof text,
                 "broker %s:%d: its max_queued_messages, persistence and "
                 "persistent_client_expiration are announced by no MQTT version: set them as "
                 "docs/operations.md says (\"The MQTT broker\")",
                 q->hostname, q->port);
        note(ud, BATON_LOG_INFO, text);
        mosquitto_property *bye = NULL;
        if (!q->clean)
            mosquitto_property_add_int32(&bye, MQTT_PROP_SESSION_EXPIRY_INTERVAL, 0);
        mosquitto_disconnect_v5(m, 0, bye);
        mosquitto_property_free_all(&bye);
        mosquitto_loop_write(m, 1);
    }
    mosquitto_property_free_all(&r.props);
    if (m)
        mosquitto_destroy(m);
    free(id);
    pthread_mutex_lock(&lib_mu);
    if (--lib_refs == 0)
        mosquitto_lib_cleanup();
    pthread_mutex_unlock(&lib_mu);
}

static const baton_event_ops ops = {.size = sizeof(baton_event_ops), .probe = mq_probe};

BATON_PLUGIN(.name = "event_mqtt", .version = "1.0.0",
             .description = "journey events from an MQTT broker (QoS 1, persistent session)",
             .kind = BATON_KIND_EVENT, .config = keys, .init = mq_init, .start = mq_start,
             .stop = mq_stop, .destroy = mq_destroy, .ops = &ops);
