/* Events over HTTP next to MQTT, in the same run, into the 5-node journey
 * of bench_journey (condition, send, wait_event with a timeout, two
 * ends) with durable state, sends delivered to an in-process channel:
 *   1. MQTT: COUNT events from the lean QoS 1 publisher through mosquitto
 *      into event_mqtt, until routed: events/s
 *   2. HTTP: COUNT events as POST /v1/events batches of 100 from a small C
 *      client (tests/bench/clients/http_post_batches.c, 4 keep-alive
 *      connections) into baton's HTTP server, each answered 202 after its
 *      commit, until routed: events/s and request p50/p99
 *   3. HTTP at 5,000 events/s (50 requests/s of 100) for 6 s: request
 *      latency p50/p99 (the answer waits for the inbox's commit)
 * Targets: >= 20,000 events/s; p99 < 20 ms at 5,000/s. Prints figures and
 * ratios; never fails on a figure. COUNT (default 100000), HTTP_CONNS
 * (default 4, up to 64) for step 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "daemon/http.h"
#include "delivery/dispatch.h"
#include "journey/journey.h"
#include "journey/runner.h"
#include "plugin/app.h"
#include "support/fake_channel.h"
#include "support/fs.h"
#include "support/server.h"

#define TOKEN "bench-token-0123456789abcdef"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const char *journey_text =
    "journey: { name = \"bench\"; entry = { event = \"cart\"; reentry = \"always\"; };\n"
    "  start = \"c\"; nodes = (\n"
    "    { id = \"c\"; type = \"condition\"; branches = ( { when = \"event.total > 0\"; next = "
    "\"s\"; } ); otherwise = \"skip\"; },\n"
    "    { id = \"s\"; type = \"send\"; channel = \"push\"; title = \"Your cart\"; body = \"{{ "
    "event.total }} in your cart\"; next = \"w\"; },\n"
    "    { id = \"w\"; type = \"wait_event\"; event = \"order\"; timeout = \"1h\"; on_event = "
    "\"done\"; on_timeout = \"done\"; },\n"
    "    { id = \"done\"; type = \"end\"; },\n"
    "    { id = \"skip\"; type = \"end\"; } ); };\n";

static int build(const char *dir, const char *name, const char *extra, char *out, size_t len)
{
    const char *src = getenv("BATON_SRC") ? getenv("BATON_SRC") : ".";
    snprintf(out, len, "%s/%s", dir, name);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cc -O2 -o %s %s/tests/bench/clients/%s.c %s", out, src, name, extra);
    return system(cmd);
}

/* Until the runner has routed `target` events in all (10 min at most). */
static void wait_routed(jrunner *r, unsigned long long target)
{
    jrunner_stats s;
    double deadline = now_s() + 600;
    do {
        nap_ms(5);
        jrunner_get_stats(r, &s);
    } while (s.routed < target && now_s() < deadline);
}

/* Run the HTTP client; its figures into the out parameters. */
static int http_load(const char *bin, int port, int conns, int reqs, double rate,
                     const char *prefix, double *secs, double *p50, double *p99, long *bad)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %d %s %d %d 100 %g %s", bin, port, TOKEN, conns, reqs, rate,
             prefix);
    FILE *p = popen(cmd, "r");
    long n = 0, ev = 0;
    int ok = fscanf(p, "OK %ld %ld %lf %lf %lf %ld", &n, &ev, secs, p50, p99, bad) == 6;
    pclose(p);
    return ok ? (int)n : -1;
}

int main(void)
{
    long count = getenv("COUNT") ? atol(getenv("COUNT")) : 100000;
    log_configure(BATON_LOG_WARN, 0);
    char *dir = tmpdir_make("bench-http");
    char pub[1024], hcl[1024], err[1024];
    if (build(dir, "mqtt_pub_lines", "", pub, sizeof pub) ||
        build(dir, "http_post_batches", "-pthread", hcl, sizeof hcl)) {
        printf("bench_http: cannot build the clients\n");
        return 0;
    }
    test_server broker;
    if (server_start_mosquitto(&broker, dir, 0)) {
        printf("bench_http: cannot start mosquitto\n");
        return 0;
    }
    int hport = server_free_port();
    char cfg[2048];
    snprintf(cfg, sizeof cfg,
             "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; log = { level = \"warn\"; "
             "}; };\n"
             "events: { mqtt: { plugin = \"event_mqtt\"; broker = \"127.0.0.1:%d\"; topics = [ "
             "\"baton/events/#\" ]; client_id = \"bench\"; }; };\n"
             "http = { listen = \"127.0.0.1:%d\"; tokens = ( { name = \"bench\"; secret = \"" TOKEN
             "\"; scopes = [ \"events:write\" ]; } ); };\n",
             getenv("BATON_PLUGINS") ? getenv("BATON_PLUGINS") : "build/plugins", broker.port,
             hport);
    char *cpath = file_write(dir, "baton.cfg", cfg);
    char *jpath = file_write(dir, "bench.cfg", journey_text);
    diag d;
    diag_init(&d);
    app a;
    if (app_open(&a, cpath, APP_INIT, &d)) {
        diag_print(&d, stderr);
        return 0;
    }
    journey *j = journey_load(jpath, NULL, &d);
    store st;
    store_open(&st, a.conf.data_dir, err, sizeof err);
    instance *push = fake_channel_new(
        "push", "connections = 2; batch = 500; queue = 1000000; rate = 0;", err, sizeof err);
    dispatch_opts o = {0};
    dispatcher *disp = dispatch_open(push, &st, &o, err, sizeof err);
    jchannel ch = {"push", push, disp};
    jrunner *r = jrunner_start(&a, &st, &j, 1, &ch, 1, NULL, err, sizeof err);
    http_listener l;
    http_server *srv = NULL;
    if (!r || !disp || app_start(&a, &d) || http_listener_load(&l, &a.conf.http, err, sizeof err) ||
        !(srv = http_start(&l, err, sizeof err))) {
        printf("bench_http: cannot start: %s\n", err);
        return 0;
    }
    http_env env = {
        .config = cpath, .a = &a, .st = &st, .js = &j, .njs = 1, .ch = &ch, .nch = 1, .r = r};
    http_attach(srv, &env);
    nap_ms(500);

    /* 1. MQTT */
    char file[1024], cmd[4096];
    snprintf(file, sizeof file, "%s/events.jsonl", dir);
    FILE *f = fopen(file, "w");
    for (long i = 0; i < count; i++)
        fprintf(f,
                "{\"id\": \"m-%ld\", \"type\": \"cart\", \"profile\": \"m%ld\", \"data\": "
                "{\"total\": %ld.5}}\n",
                i, i, 1 + i % 90);
    fclose(f);
    double t0 = now_s();
    snprintf(cmd, sizeof cmd, "%s %d baton/events/in 100 0 0 < %s > /dev/null", pub, broker.port,
             file);
    if (system(cmd) != 0)
        printf("bench_http: the MQTT publisher failed\n");
    wait_routed(r, (unsigned long long)count);
    double mqtt = count / (now_s() - t0);
    printf("mqtt: %ld events through MQTT into the 5-node journey: %.0f events/s routed (%.2fx "
           "the 20,000 target)\n",
           count, mqtt, mqtt / 20000.0);
    fflush(stdout);

    /* 2. HTTP flat out */
    jrunner_stats s0;
    jrunner_get_stats(r, &s0);
    /* HTTP_CONNS: the client's connections (each waits for its commit) */
    int conns = getenv("HTTP_CONNS") ? atoi(getenv("HTTP_CONNS")) : 4;
    if (conns < 1 || conns > 64)
        conns = 4;
    int reqs = (int)(count / 100 / conns);
    double secs = 0, p50 = 0, p99 = 0;
    long bad = 0;
    t0 = now_s();
    int n = http_load(hcl, hport, conns, reqs, 0, "h", &secs, &p50, &p99, &bad);
    wait_routed(r, s0.routed + (unsigned long long)n * 100);
    double http = n * 100.0 / (now_s() - t0);
    printf("http: %d requests of 100 events (%d connections) into the same journey: %.0f "
           "events/s routed (%.2fx the target; %.0f%% of MQTT's); every answer after its commit: "
           "p50 %.2f ms, p99 %.2f ms per request; %ld answers not 202\n",
           n, conns, http, http / 20000.0, 100.0 * http / mqtt, p50, p99, bad);
    fflush(stdout);

    /* 3. HTTP at 5,000 events/s */
    n = http_load(hcl, hport, 4, 75, 50, "l", &secs, &p50, &p99, &bad);
    printf("http: at 5,000 events/s (50 requests/s of 100, 6 s): p50 %.2f ms, p99 %.2f ms per "
           "request (%.2fx the 20 ms target); %ld answers not 202\n",
           p50, p99, p99 / 20.0, bad);
    fflush(stdout);

    http_stop(srv);
    app_stop(&a);
    jrunner_stop(r);
    dispatch_close(disp, 1, 10000);
    server_stop(&broker);
    store_close(&st);
    journey_free(j);
    app_close(&a);
    fake_channel_free(push);
    diag_free(&d);
    free(cpath);
    free(jpath);
    if (!getenv("BATON_KEEP_TMP"))
        tmpdir_remove(dir);
    free(dir);
    return 0;
}
