/* Journeys under load, through MQTT, next to the broker's own ceiling
 * measured in the same run:
 *   1. ceiling: mosquitto_pub -q 1 -l | broker | mosquitto_sub -q 1
 *   2. sustained events/s: the same publisher into baton's event_mqtt,
 *      a 5-node journey (condition, send, wait_event with a timeout, two
 *      ends) with durable state (inbox.db + state.db), sends delivered by
 *      the dispatcher to an in-process channel
 *   3. latency from publish to the channel's delivery at 5,000 events/s
 *      (p50, p99)
 *   4. memory per waiting instance with 1,000,000 profiles waiting
 * Targets (issue #20): >= 90% of the broker's ceiling over MQTT; in-process
 * >= 40,000 events/s and <= 30 us of baton's CPU per event; p99 < 15 ms
 * at 5,000/s; < 50 bytes per waiting instance. Each phase prints its
 * stage breakdown: CPU per event by thread, SQL statements per event and
 * commits per 1,000 events (state store and inbox). Prints figures and
 * ratios; never fails on a figure. COUNT (default 100000) and WAITING
 * (default 1000000) change the sizes; BENCH_STMTS=1 lists the state
 * store's prepared statements with how often each ran. */
#include <dirent.h>
#include <errno.h>
#include <sqlite3.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "plugin/app.h"
#include "delivery/dispatch.h"
#include "journey/engine.h"
#include "journey/journey.h"
#include "journey/runner.h"
#include "base/log.h"
#include "support/cpu.h"
#include "support/fake_channel.h"
#include "support/fs.h"
#include "support/server.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6))
            kb = atol(line + 6);
    if (f)
        fclose(f);
    return kb;
}

/* CPU seconds (user + system) of this process, and of another one. */
static double cpu_self(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_children(void)
{
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* SQL statements and commits since a snapshot: the state store (the
 * engine and the delivery log share its connection) and the inbox. */
typedef struct sqlsnap {
    unsigned long long st_stmts, st_commits, in_stmts, in_commits;
} sqlsnap;

static sqlsnap sql_snap(store *st, jrunner *r)
{
    sqlsnap n;
    jrunner_stats s;
    jrunner_get_stats(r, &s);
    store_counts(st, &n.st_stmts, &n.st_commits);
    n.in_stmts = s.inbox_statements;
    n.in_commits = s.inbox_commits;
    return n;
}

static void print_sql(const char *phase, const sqlsnap *a, store *st, jrunner *r, long count)
{
    sqlsnap b = sql_snap(st, r);
    double n = (double)count;
    printf("%s: SQL statements per event: state store %.2f, inbox %.2f; commits per 1,000"
           " events: state store %.1f, inbox %.1f\n",
           phase, (double)(b.st_stmts - a->st_stmts) / n, (double)(b.in_stmts - a->in_stmts) / n,
           (double)(b.st_commits - a->st_commits) * 1000 / n,
           (double)(b.in_commits - a->in_commits) * 1000 / n);
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static pid_t spawn_sh(const char *cmd)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* ---- latency: publish time per profile, delivery time from outcomes */
static int64_t *lat_us; /* delivery wall-clock times, then latencies */
static long *lat_idx;   /* which line each one was */
static _Atomic long delivered, lat_n;

static void on_outcome(void *ud, const dispatch_outcome *o)
{
    if (o->status != DISPATCH_SENT)
        return;
    delivered++;
    if (o->profile_id && o->profile_id[0] == 'L') {
        long k = atomic_fetch_add(&lat_n, 1);
        lat_idx[k] = atol(o->profile_id + 1);
        lat_us[k] = wall_us();
    }
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
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

static char pubbin[1024];

/* The publisher: a lean MQTT client over a plain socket (it shares the
 * cores with the broker and baton), built here like the other benches
 * build theirs (tests/bench/clients/). */
static int build_publisher(const char *dir)
{
    const char *src = getenv("BATON_SRC") ? getenv("BATON_SRC") : ".";
    snprintf(pubbin, sizeof pubbin, "%s/mqtt_pub_lines", dir);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cc -O2 -o %s %s/tests/bench/clients/mqtt_pub_lines.c", pubbin, src);
    return system(cmd);
}

/* Publish a file's lines (QoS 1, 100 in flight) paced at rate (0: flat
 * out); *t0_us the wall-clock time of the first. Returns the client's
 * acknowledged rate. */
static double publish(int port, const char *topic, const char *file, double rate, int64_t *t0_us)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %d %s 100 %g 0 < %s", pubbin, port, topic, rate, file);
    FILE *p = popen(cmd, "r");
    double r = 0;
    long long t0 = 0;
    if (fscanf(p, "T0 %lld %lf", &t0, &r) != 2)
        r = 0;
    pclose(p);
    if (t0_us)
        *t0_us = t0;
    return r;
}

static double ceiling(int port, long n, const char *dir)
{
    char file[1024], cmd[2048];
    snprintf(file, sizeof file, "%s/ceiling.jsonl", dir);
    FILE *f = fopen(file, "w");
    for (long i = 0; i < n; i++)
        fprintf(f,
                "{\"id\": \"c-%ld\", \"type\": \"cart\", \"profile\": \"p%ld\", \"data\": "
                "{\"total\": 12.5}}\n",
                i, i);
    fclose(f);
    snprintf(cmd, sizeof cmd, "mosquitto_sub -h 127.0.0.1 -p %d -q 1 -C %ld -t ceil/# > /dev/null",
             port, n);
    pid_t sub = spawn_sh(cmd);
    nap_ms(300);
    double t0 = now_s();
    publish(port, "ceil/x", file, 0, NULL);
    waitpid(sub, NULL, 0);
    return (double)n / (now_s() - t0);
}

static void memory_per_waiting(const char *dir, long n)
{
    char err[512];
    char sub[1024];
    snprintf(sub, sizeof sub, "%s/mem", dir);
    store st;
    if (store_open(&st, sub, err, sizeof err)) {
        printf("memory: %s\n", err);
        return;
    }
    diag d;
    diag_init(&d);
    char *path = file_write(dir, "mem.cfg", journey_text);
    journey *j = journey_load(path, NULL, &d);
    free(path);
    jengine e;
    jengine_open(&e, &st, &j, 1, &(jengine_ops){0}, err, sizeof err);
    long before = rss_kb();
    double t0 = now_s();
    const long batch = 20000;
    char json[256];
    for (long i = 0; i < n;) {
        jengine_begin(&e, err, sizeof err);
        for (long k = 0; k < batch && i < n; k++, i++) {
            int len = snprintf(json, sizeof json,
                               "{\"id\": \"m-%ld\", \"type\": \"cart\", \"profile\": \"w%ld\", "
                               "\"data\": {\"total\": 3}}",
                               i, i);
            jevent ev;
            char why[128];
            jevent_parse(json, (size_t)len, 1795428000000LL, &ev, why, sizeof why);
            jengine_event(&e, &ev, 1795428000000LL, err, sizeof err);
            jevent_free(&ev);
        }
        jengine_commit(&e, err, sizeof err);
    }
    double secs = now_s() - t0;
    long after = rss_kb();
    long waiting = (long)e.timers.n;
    double per = (double)(after - before) * 1024.0 / (double)n;
    size_t heap = e.timers.cap * sizeof(jtimer) +
                  e.timers.nbuckets * (sizeof *e.timers.keys + sizeof *e.timers.slots);
    printf("memory: %ld instances waiting (timers in memory: %ld; heap and index %.1f bytes per"
           " instance), RSS +%ld KiB = %.1f bytes per waiting instance (target < 50: %.2fx"
           " under)\n",
           n, waiting, (double)heap / (double)(waiting ? waiting : 1), after - before, per,
           per > 0 ? 50.0 / per : 0);
    printf("memory: %ld instances created in %.1f s (%.0f/s, engine alone, batches of %ld)\n", n,
           secs, n / secs, batch);
    jengine_close(&e);
    journey_free(j);
    store_close(&st);
    diag_free(&d);
}

int main(void)
{
    if (!getenv("BENCH_MEMSTATUS"))
        sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); /* as baton's main() */
    long count = getenv("COUNT") ? atol(getenv("COUNT")) : 100000;
    long waiting = getenv("WAITING") ? atol(getenv("WAITING")) : 1000000;
    log_configure(BATON_LOG_WARN, 0);
    char *dir = tmpdir_make("bench-journey");
    test_server broker;
    if (build_publisher(dir) != 0) {
        printf("bench_journey: cannot build the publisher client\n");
        tmpdir_remove(dir);
        return 0;
    }
    if (server_start_mosquitto(&broker, dir, 0)) {
        printf("bench_journey: cannot start mosquitto\n");
        tmpdir_remove(dir);
        return 0;
    }
    char err[1024];

    /* BENCH_DIRECT_ONLY=1: only the in-process phase (2b), to compare
     * two builds of the engine without the broker and publisher's noise */
    int direct_only = getenv("BENCH_DIRECT_ONLY") != NULL;

    /* 1. the broker's ceiling */
    double ceil_rate = direct_only ? 1 : ceiling(broker.port, count, dir);
    if (!direct_only)
        printf("ceiling: publisher (QoS 1, 100 in flight) -> mosquitto ->"
               " mosquitto_sub (QoS 1): %.0f msg/s (%ld messages)\n",
               ceil_rate, count);

    /* baton: event_mqtt, the journey, a channel in-process */
    char cfg[2048];
    snprintf(
        cfg, sizeof cfg,
        "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; log = { level = \"warn\"; }; };\n"
        "events: { mqtt: { plugin = \"event_mqtt\"; broker = \"127.0.0.1:%d\"; topics = [ "
        "\"baton/events/#\" ];"
        " client_id = \"bench\"; }; };\n",
        getenv("BATON_PLUGINS") ? getenv("BATON_PLUGINS") : "build/plugins", broker.port);
    char *cpath = file_write(dir, "baton.cfg", cfg);
    char *jpath = file_write(dir, "bench.cfg",
                             getenv("BENCH_JOURNEY") ? getenv("BENCH_JOURNEY") : journey_text);
    diag d;
    diag_init(&d);
    app a;
    if (app_open(&a, cpath, APP_INIT, &d)) {
        diag_print(&d, stderr);
        server_stop(&broker); /* no broker or folder left behind */
        tmpdir_remove(dir);
        return 0;
    }
    journey *j = journey_load(jpath, NULL, &d);
    store st;
    store_open(&st, a.conf.data_dir, err, sizeof err);
    instance *push = fake_channel_new("push",
                                      "connections = 2; batch = 500; queue = 1000000;"
                                      " rate = 0;",
                                      err, sizeof err);
    lat_idx = calloc(1000000, sizeof *lat_idx);
    lat_us = calloc(1000000, sizeof *lat_us);
    dispatch_opts o = {.on_outcome = on_outcome};
    dispatcher *disp = dispatch_open(push, &st, &o, err, sizeof err);
    jchannel ch = {"push", push, disp};
    /* serve's defaults (queue 65536, batch 4096); BENCH_BATCH to compare */
    jrunner_opts ro = {.batch = getenv("BENCH_BATCH") ? (size_t)atol(getenv("BENCH_BATCH")) : 0};
    jrunner *r = jrunner_start(&a, &st, &j, 1, &ch, 1, &ro, err, sizeof err);
    if (!r || !disp || app_start(&a, &d)) {
        printf("bench_journey: cannot start: %s\n", err);
        server_stop(&broker);
        tmpdir_remove(dir);
        return 0;
    }
    nap_ms(500);

    if (direct_only)
        goto direct;

    /* 2. sustained throughput */
    char file[1024], cmd[4096];
    snprintf(file, sizeof file, "%s/events.jsonl", dir);
    FILE *f = fopen(file, "w");
    for (long i = 0; i < count; i++)
        fprintf(f,
                "{\"id\": \"e-%ld\", \"type\": \"cart\", \"profile\": \"p%ld\", \"data\": "
                "{\"total\": %ld.5}}\n",
                i, i, 1 + i % 90);
    fclose(f);
    tcpu th0[64];
    size_t nth0 = threads_cpu(th0, 64);
    sqlsnap sq0 = sql_snap(&st, r);
    double t0 = now_s(), cpu0 = cpu_self(), bcpu0 = cpu_of(broker.pid), pcpu0 = cpu_children();
    snprintf(cmd, sizeof cmd, "%s %d baton/events/in 100 0 0 < %s > /dev/null", pubbin, broker.port,
             file);
    pid_t pub = spawn_sh(cmd);
    jrunner_stats s = {0};
    double deadline = t0 + 600;
    while (now_s() < deadline) {
        jrunner_get_stats(r, &s);
        if ((long)s.routed >= count)
            break;
        nap_ms(5);
    }
    double t_routed = now_s() - t0;
    double rate = count / t_routed;
    double cpu_ev = (cpu_self() - cpu0) * 1e6 / count,
           bcpu_ev = (cpu_of(broker.pid) - bcpu0) * 1e6 / count;
    printf("journey: %ld events through MQTT into a 5-node journey in %.2f s: %.0f events/s"
           " routed with durable state (%.0f%% of the broker's ceiling: %.2fx the 90%% target)\n",
           count, t_routed, rate, 100.0 * rate / ceil_rate, rate / ceil_rate / 0.9);
    fflush(stdout);
    waitpid(pub, NULL, 0);
    /* the CPU each event costs: what a rate on this machine can afford,
     * less noisy than the rate when other work shares the cores */
    printf("journey: CPU per event: baton %.1f us, the broker %.1f us, the publisher %.1f us"
           " (2 cores at 20,000/s: 100 us per event for all three)\n",
           cpu_ev, bcpu_ev, (cpu_children() - pcpu0) * 1e6 / count);
    deadline = now_s() + 60;
    while (delivered < count && now_s() < deadline)
        nap_ms(5);
    double t_sent = now_s() - t0;
    print_threads("journey", "event", th0, nth0, count);
    print_sql("journey", &sq0, &st, r, count);
    printf("journey: %ld sends delivered by the channel in %.2f s (%.0f/s); %llu inbox groups,"
           " %llu engine batches, %lu deliver() calls (%.1f messages each)\n",
           (long)delivered, t_sent, delivered / t_sent, (unsigned long long)s.ingest_groups,
           (unsigned long long)s.batches, fake_channel_batches(),
           (double)fake_channel_total() /
               (double)(fake_channel_batches() ? fake_channel_batches() : 1));
    fflush(stdout);

direct:;
    /* 2b. the same journey fed in-process (no MQTT): what the inbox, the
     * engine and the dispatch cost per event without the network side */
    {
        long base = delivered;
        jrunner_stats s0;
        jrunner_get_stats(r, &s0);
        tcpu dth0[64];
        size_t ndth0 = threads_cpu(dth0, 64);
        sqlsnap dsq0 = sql_snap(&st, r);
        double d0 = now_s(), dcpu0 = cpu_self();
        char line[256];
        for (long i = 0; i < count; i++) {
            int len = snprintf(line, sizeof line,
                               "{\"id\": \"d-%ld\", \"type\": \"cart\", \"profile\":"
                               " \"d%ld\", \"data\": {\"total\": %ld.5}}",
                               i, i, 1 + i % 90);
            int rc;
            while ((rc = jrunner_submit(r, NULL, line, (size_t)len, NULL, NULL)) == 1)
                nap_ms(1);
            if (rc < 0)
                break;
        }
        jrunner_stats s1 = s0;
        double dl = now_s() + 600;
        while ((long)(s1.routed - s0.routed) < count && now_s() < dl) {
            nap_ms(5);
            jrunner_get_stats(r, &s1);
        }
        while (delivered - base < count && now_s() < dl)
            nap_ms(5);
        double secs = now_s() - d0;
        double dcpu = (cpu_self() - dcpu0) * 1e6 / count;
        printf("direct: %ld events submitted in-process (no MQTT), routed and delivered in %.2f s"
               " (%.0f/s: %.2fx the 40,000 target): baton %.1f us CPU per event (%.2fx the 30 us"
               " target); %llu engine batches\n",
               count, secs, count / secs, count / secs / 40000.0, dcpu, dcpu > 0 ? 30.0 / dcpu : 0,
               (unsigned long long)(s1.batches - s0.batches));
        print_threads("direct", "event", dth0, ndth0, count);
        print_sql("direct", &dsq0, &st, r, count);
        if (getenv("BENCH_STMTS"))
            for (sqlite3_stmt *q = sqlite3_next_stmt(st.db, NULL); q;
                 q = sqlite3_next_stmt(st.db, q))
                printf("  %8d %.90s\n", sqlite3_stmt_status(q, SQLITE_STMTSTATUS_RUN, 0),
                       sqlite3_sql(q));
        fflush(stdout);
    }
    if (direct_only)
        goto done;

    /* 3. latency at 5,000 events/s: line i is published at T0 + i/5000 */
    const long per_s = 5000, secs = 6, nl = per_s * secs;
    snprintf(file, sizeof file, "%s/latency.jsonl", dir);
    f = fopen(file, "w");
    for (long i = 0; i < nl; i++)
        fprintf(f,
                "{\"id\": \"l-%ld\", \"type\": \"cart\", \"profile\": \"L%ld\", \"data\": "
                "{\"total\": 9}}\n",
                i, i);
    fclose(f);
    lat_n = 0;
    int64_t t0_us = 0;
    double start = now_s();
    publish(broker.port, "baton/events/lat", file, (double)per_s, &t0_us);
    while (lat_n < nl && now_s() < start + secs + 30)
        nap_ms(10);
    long n = lat_n;
    for (long k = 0; k < n; k++) /* delivery time -> latency */
        lat_us[k] = lat_us[k] - (t0_us + (int64_t)(lat_idx[k] * 1000000 / per_s));
    if (getenv("BENCH_DUMP")) { /* line number and latency, to see when the slow ones come */
        FILE *df = fopen(getenv("BENCH_DUMP"), "w");
        for (long k = 0; df && k < n; k++)
            fprintf(df, "%ld %lld\n", lat_idx[k], (long long)lat_us[k]);
        if (df)
            fclose(df);
    }
    qsort(lat_us, (size_t)n, sizeof *lat_us, cmp64);
    if (n > 0) {
        double p50 = lat_us[n / 2] / 1000.0, p99 = lat_us[(n * 99) / 100] / 1000.0;
        printf("latency: %ld events at %ld/s, publish -> delivered by the channel: p50 %.1f ms,"
               " p99 %.1f ms, max %.1f ms (target p99 < 15 ms: %.2fx)\n",
               n, per_s, p50, p99, lat_us[n - 1] / 1000.0, 15.0 / p99);
    }

done:
    for (size_t i = 0; i < a.ninst; i++)
        if (a.inst[i]->kind == BATON_KIND_EVENT)
            instance_stop(a.inst[i]);
    jrunner_stop(r);
    dispatch_close(disp, 0, 0);
    fake_channel_free(push);
    app_close(&a);
    journey_free(j);
    store_close(&st);
    server_stop(&broker);

    /* 4. memory per waiting instance */
    if (!direct_only)
        memory_per_waiting(dir, waiting);

    free(cpath);
    free(jpath);
    diag_free(&d);
    tmpdir_remove(dir);
    free(dir);
    return 0;
}
