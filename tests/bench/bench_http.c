/* Events over HTTP next to MQTT, in the same run:
 *   1. Intake alone: a runner with no journey (its engine only moves the
 *      inbox's watermark), so what is measured is the path from the
 *      client to the inbox's commit:
 *      a. MQTT: COUNT events from the lean QoS 1 publisher through
 *         mosquitto into event_mqtt, until committed: events/s
 *      b. HTTP: COUNT events as POST /v1/events batches of 100 from a small
 *         C client (tests/bench/clients/http_post_batches.c, HTTP_CONNS
 *         keep-alive connections), each answered 202 after its commit:
 *         events/s, request p50/p99, inbox commits per request
 *      c. HTTP at 5,000 events/s (50 requests/s of 100) for LAT_SECONDS
 *         (default 6): p50/p99
 *   2. End to end, into the 5-node journey of bench_journey (condition,
 *      send, wait_event with a timeout, two ends) with durable state,
 *      sends delivered to an in-process channel: the same three, until
 *      routed by the engine; each row starts once the channel has
 *      delivered the sends of the rows before (its dispatcher idle).
 * Under each row, the CPU time per event of the threads by role (http:
 * libmicrohttpd's pool, which parses and submits; ingest: the inbox's
 * group commit; journey: the engine; checkpoint: the WAL checkpoints;
 * client: the load client's process), and how long they were runnable
 * without a CPU (the machine's other work, or baton's other threads, had
 * both): where the time goes.
 * Targets: >= 20,000 events/s; p99 < 20 ms at 5,000/s. Prints figures and
 * ratios; never fails on a figure. COUNT (default 100000), HTTP_CONNS
 * (default 4, up to 64) for the rows flat out. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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

/* CPU time by thread name (/proc/self/task/<tid>/schedstat: ns on a CPU,
 * ns runnable but waiting for one), and the reaped children's CPU (the
 * load clients): where a phase's time went. out[T_N + k]: role k's wait. */
enum { T_HTTP, T_INGEST, T_JOURNEY, T_CKPT, T_OTHER, T_CLIENT, T_N };
static const char *const tnames[T_N] = {"http",       "ingest", "journey",
                                        "checkpoint", "other",  "client"};

static void cpu_now(double *out)
{
    memset(out, 0, 2 * T_N * sizeof *out);
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], comm[64] = "";
        unsigned long long ns = 0, wait = 0;
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (!fgets(comm, sizeof comm, f))
            comm[0] = 0;
        fclose(f);
        snprintf(path, sizeof path, "/proc/self/task/%s/schedstat", e->d_name);
        if (!(f = fopen(path, "r")))
            continue;
        if (fscanf(f, "%llu %llu", &ns, &wait) != 2)
            ns = wait = 0;
        fclose(f);
        int k = !strncmp(comm, "MHD", 3)              ? T_HTTP
                : !strncmp(comm, "baton-ingest", 12)  ? T_INGEST
                : !strncmp(comm, "baton-journey", 13) ? T_JOURNEY
                : !strncmp(comm, "baton-ckpt", 10)    ? T_CKPT
                                                      : T_OTHER;
        out[k] += ns / 1e9;
        out[T_N + k] += wait / 1e9;
    }
    if (d)
        closedir(d);
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    out[T_CLIENT] = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                    ru.ru_stime.tv_usec / 1e6;
}

/* "cpu per event: http 12.3 us, ingest ..." since `from`, and the time
 * the server's threads were runnable but had no CPU (another thread of
 * baton's or another process held both), per request of 100. */
static void cpu_print(const double *from, long events)
{
    double to[2 * T_N];
    cpu_now(to);
    printf("  cpu per event:");
    for (int k = 0; k < T_N; k++)
        printf(" %s %.1f us%s", tnames[k], events ? (to[k] - from[k]) * 1e6 / events : 0,
               k + 1 < T_N ? "," : "\n");
    printf("  waiting for a CPU per 100 events:");
    for (int k = 0; k < T_CLIENT; k++)
        printf(" %s %.2f ms%s", tnames[k],
               events ? (to[T_N + k] - from[T_N + k]) * 1e5 / events : 0,
               k + 1 < T_CLIENT ? "," : "\n");
}

static void mqtt_file(const char *file, const char *prefix, long count)
{
    FILE *f = fopen(file, "w");
    for (long i = 0; i < count; i++)
        fprintf(f,
                "{\"id\": \"%s-%ld\", \"type\": \"cart\", \"profile\": \"%s%ld\", \"data\": "
                "{\"total\": %ld.5}}\n",
                prefix, i, prefix, i, 1 + i % 90);
    fclose(f);
}

/* Publish the file's events over MQTT; until the runner's counter
 * (accepted: committed to the inbox; routed: through the journey) has
 * grown by count. Events/s. */
static double mqtt_run(const char *pub, int port, const char *file, jrunner *r, long count,
                       int routed)
{
    jrunner_stats s;
    jrunner_get_stats(r, &s);
    unsigned long long target = (routed ? s.routed : s.accepted) + (unsigned long long)count;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %d baton/events/in 100 0 0 < %s > /dev/null", pub, port, file);
    double t0 = now_s();
    if (system(cmd) != 0)
        printf("bench_http: the MQTT publisher failed\n");
    double deadline = now_s() + 600;
    do {
        nap_ms(2);
        jrunner_get_stats(r, &s);
    } while ((routed ? s.routed : s.accepted) < target && now_s() < deadline);
    return count / (now_s() - t0);
}

/* Until the channel has delivered every send the previous rows made (5
 * min at most): each row starts with the dispatcher idle, not delivering
 * the last row's backlog on the same two cores. */
static void settle(dispatcher *d)
{
    dispatch_stats s;
    double deadline = now_s() + 300;
    do {
        dispatch_get_stats(d, &s);
        if (!s.pending)
            return;
        nap_ms(20);
    } while (now_s() < deadline);
}

/* Inbox transactions since `from` per request of 100 (how many requests
 * one group commit answers). */
static double commits_per_req(jrunner *r, const jrunner_stats *from, int reqs)
{
    jrunner_stats s;
    jrunner_get_stats(r, &s);
    return reqs ? (double)(s.ingest_groups - from->ingest_groups) / reqs : 0;
}

int main(void)
{
    long count = getenv("COUNT") ? atol(getenv("COUNT")) : 100000;
    /* HTTP_CONNS: the client's connections flat out (each waits for its
     * commit) */
    int conns = getenv("HTTP_CONNS") ? atoi(getenv("HTTP_CONNS")) : 4;
    if (conns < 1 || conns > 64)
        conns = 4;
    /* LAT_SECONDS: the rows at 5,000 events/s (default 6; a longer one
     * gives a steadier p99) */
    int lat_s = getenv("LAT_SECONDS") ? atoi(getenv("LAT_SECONDS")) : 6;
    if (lat_s < 1 || lat_s > 600)
        lat_s = 6;
    int lat_reqs = lat_s * 50 / 4;
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

    /* 1. Intake alone: a runner with no journey (its engine only moves the
     * inbox's watermark) in a data dir of its own; events/s as committed to
     * the inbox, each HTTP answer after its commit. */
    char idir[1100];
    snprintf(idir, sizeof idir, "%s/intake", dir);
    store ist;
    jrunner *ir = NULL;
    if (store_open(&ist, idir, err, sizeof err) ||
        !(ir = jrunner_start(&a, &ist, NULL, 0, NULL, 0, NULL, err, sizeof err)) ||
        app_start(&a, &d)) {
        printf("bench_http: cannot start the intake runner: %s\n", err);
        return 0;
    }
    http_listener l;
    http_server *srv = NULL;
    if (http_listener_load(&l, &a.conf.http, err, sizeof err) ||
        !(srv = http_start(&l, err, sizeof err))) {
        printf("bench_http: cannot start: %s\n", err);
        return 0;
    }
    http_env ienv = {.config = cpath, .a = &a, .st = &ist, .r = ir};
    http_attach(srv, &ienv);
    nap_ms(500);
    char file[1024];
    snprintf(file, sizeof file, "%s/events.jsonl", dir);
    mqtt_file(file, "i", count);
    double c0[2 * T_N];
    cpu_now(c0);
    double mqtt_in = mqtt_run(pub, broker.port, file, ir, count, 0);
    printf("mqtt intake: %ld events committed to the inbox (no journey): %.0f events/s\n", count,
           mqtt_in);
    cpu_print(c0, count);
    fflush(stdout);
    int reqs = (int)(count / 100 / conns);
    double secs = 0, p50 = 0, p99 = 0;
    long bad = 0;
    jrunner_stats s0;
    jrunner_get_stats(ir, &s0);
    cpu_now(c0);
    int n = http_load(hcl, hport, conns, reqs, 0, "ih", &secs, &p50, &p99, &bad);
    double http_in = n > 0 ? n * 100.0 / secs : 0;
    printf("http intake: %d requests of 100 events (%d connections), each answered after its "
           "commit (no journey): %.0f events/s (%.2fx the 20,000 target; %.0f%% of MQTT's "
           "intake); p50 %.2f ms, p99 %.2f ms per request; %.2f inbox commits per request; %ld "
           "answers not 202\n",
           n, conns, http_in, http_in / 20000.0, 100.0 * http_in / mqtt_in, p50, p99,
           commits_per_req(ir, &s0, n), bad);
    cpu_print(c0, n * 100L);
    fflush(stdout);
    jrunner_get_stats(ir, &s0);
    cpu_now(c0);
    n = http_load(hcl, hport, 4, lat_reqs, 50, "il", &secs, &p50, &p99, &bad);
    printf("http intake at 5,000 events/s (50 requests/s of 100, %d s, no journey): p50 %.2f ms, "
           "p99 %.2f ms per request (%.2fx the 20 ms target); %.2f inbox commits per request; "
           "%ld answers not 202\n",
           lat_s, p50, p99, p99 / 20.0, commits_per_req(ir, &s0, n), bad);
    cpu_print(c0, n * 100L);
    fflush(stdout);
    http_detach(srv);
    jrunner_stop(ir);
    store_close(&ist);

    /* 2. End to end: the 5-node journey with durable state, sends to an
     * in-process channel; events/s as routed by the engine. */
    store st;
    store_open(&st, a.conf.data_dir, err, sizeof err);
    instance *push = fake_channel_new(
        "push", "connections = 2; batch = 500; queue = 1000000; rate = 0;", err, sizeof err);
    dispatch_opts o = {0};
    dispatcher *disp = dispatch_open(push, &st, &o, err, sizeof err);
    jchannel ch = {"push", push, disp};
    jrunner *r = jrunner_start(&a, &st, &j, 1, &ch, 1, NULL, err, sizeof err);
    if (!r || !disp) {
        printf("bench_http: cannot start: %s\n", err);
        return 0;
    }
    http_env env = {
        .config = cpath, .a = &a, .st = &st, .js = &j, .njs = 1, .ch = &ch, .nch = 1, .r = r};
    http_attach(srv, &env);
    nap_ms(200);

    mqtt_file(file, "m", count);
    cpu_now(c0);
    double mqtt = mqtt_run(pub, broker.port, file, r, count, 1);
    printf("mqtt: %ld events through MQTT into the 5-node journey: %.0f events/s routed (%.2fx "
           "the 20,000 target)\n",
           count, mqtt, mqtt / 20000.0);
    cpu_print(c0, count);
    fflush(stdout);

    settle(disp);
    jrunner_get_stats(r, &s0);
    cpu_now(c0);
    double t0 = now_s();
    n = http_load(hcl, hport, conns, reqs, 0, "h", &secs, &p50, &p99, &bad);
    wait_routed(r, s0.routed + (unsigned long long)n * 100);
    double http = n * 100.0 / (now_s() - t0);
    printf("http: %d requests of 100 events (%d connections) into the same journey: %.0f "
           "events/s routed (%.2fx the target; %.0f%% of MQTT's); every answer after its commit: "
           "p50 %.2f ms, p99 %.2f ms per request; %.2f inbox commits per request; %ld answers "
           "not 202\n",
           n, conns, http, http / 20000.0, 100.0 * http / mqtt, p50, p99,
           commits_per_req(r, &s0, n), bad);
    cpu_print(c0, n * 100L);
    fflush(stdout);

    /* 3. HTTP at 5,000 events/s into the journey */
    settle(disp);
    jrunner_get_stats(r, &s0);
    cpu_now(c0);
    n = http_load(hcl, hport, 4, lat_reqs, 50, "l", &secs, &p50, &p99, &bad);
    printf("http: at 5,000 events/s (50 requests/s of 100, %d s) into the journey: p50 %.2f ms, "
           "p99 %.2f ms per request (%.2fx the 20 ms target); %.2f inbox commits per request; "
           "%ld answers not 202\n",
           lat_s, p50, p99, p99 / 20.0, commits_per_req(r, &s0, n), bad);
    cpu_print(c0, n * 100L);
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
