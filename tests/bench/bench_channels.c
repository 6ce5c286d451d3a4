/* Messages per second through the whole delivery path — template render,
 * caps (a per-profile frequency cap checked against the delivery log),
 * dispatch (queue, workers, rate limiter off, retries armed), the channel
 * plugin and the delivery log — against a fast local sink started by
 * tests/bench/bench_channels.sh, which also measures the sink's own
 * ceiling with a minimal client and prints the ratio.
 *
 *   bench_channels CHANNEL PORT COUNT [SETTINGS]
 *     CHANNEL  email | sms | push
 *   prints: "<channel>: <count> messages in <s> s = <rate> msg/s", then
 *   the breakdown: CPU per message by thread (the submitting thread is
 *   bench_channels: caps, delivery log insert, queue), SQL statements per
 *   message and commits per 1,000 messages (the state store)
 *
 * BENCH_TEXT_BYTES=N pads the text part with N bytes of lines of prose
 * (the email bench's 5.7 KB messages).
 *
 * Without arguments (as `make bench` runs every bench binary) it prints
 * how to run it and exits 0; the .sh script drives it. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "delivery/dispatch.h"
#include "hostapi/hostapi.h"
#include "plugin/plugin_host.h"
#include "base/record.h"
#include "support/cpu.h"
#include "support/fs.h"
#include "support/instance.h"

/* "key = value;" appended unless extra sets key itself */
static void add_default(char *settings, size_t len, const char *extra, const char *key,
                        const char *value)
{
    char probe[64];
    snprintf(probe, sizeof probe, "%s =", key);
    if (!strstr(extra, probe))
        snprintf(settings + strlen(settings), len - strlen(settings), " %s = %s;", key, value);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        printf("bench_channels: run by tests/bench/bench_channels.sh (it starts the sinks)\n");
        return 0;
    }
    /* as baton's main does: no global mutex around SQLite's allocations */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    const char *chan = argv[1];
    int port = atoi(argv[2]);
    long count = atol(argv[3]);
    const char *extra = argc > 4 ? argv[4] : "";
    const char *pdir = getenv("BATON_PLUGINS");
    char *path = strdup(pdir ? pdir : "build/plugins");
    plugin_registry reg = {.path = &path, .npath = 1};
    char err[1024];
    char plugin_name[64], settings[1024];
    const char *parts[3];
    size_t nparts;
    const char *subject_t = "Hello {{ first_name }}, {{ pct }}% off this week";
    const char *text_t = "Dear {{ first_name }},\nyour code is {{ code }}.\nSee you soon.";
    if (!strcmp(chan, "email")) {
        snprintf(plugin_name, sizeof plugin_name, "channel_email");
        snprintf(settings, sizeof settings, "from = \"Shop <news@example.com>\"; port = %d; %s",
                 port, extra);
        add_default(settings, sizeof settings, extra, "connections", "2");
        add_default(settings, sizeof settings, extra, "batch", "100");
        parts[0] = "subject";
        parts[1] = "text";
        nparts = 2;
    } else if (!strcmp(chan, "sms")) {
        snprintf(plugin_name, sizeof plugin_name, "channel_sms");
        snprintf(settings, sizeof settings, "url = \"http://127.0.0.1:%d/sms\"; %s", port, extra);
        add_default(settings, sizeof settings, extra, "connections", "1");
        add_default(settings, sizeof settings, extra, "batch", "1000");
        add_default(settings, sizeof settings, extra, "inflight", "32");
        parts[0] = "text";
        nparts = 1;
    } else if (!strcmp(chan, "push")) {
        snprintf(plugin_name, sizeof plugin_name, "channel_push");
        snprintf(settings, sizeof settings, "broker = \"127.0.0.1:%d\"; topic = \"push/bench\"; %s",
                 port, extra);
        add_default(settings, sizeof settings, extra, "connections", "1");
        add_default(settings, sizeof settings, extra, "batch", "1000");
        add_default(settings, sizeof settings, extra, "inflight", "100");
        parts[0] = "title";
        parts[1] = "body";
        nparts = 2;
        subject_t = "Hello {{ first_name }}";
    } else {
        fprintf(stderr, "bench_channels: unknown channel '%s'\n", chan);
        return 2;
    }
    add_default(settings, sizeof settings, extra, "queue", "10000");
    plugin *p = plugin_load(&reg, plugin_name, err, sizeof err);
    if (!p) {
        fprintf(stderr, "bench_channels: %s\n", err);
        return 1;
    }
    instance *inst = test_instance_new(&p->desc, "channels", chan, settings, 1, err, sizeof err);
    if (!inst) {
        fprintf(stderr, "bench_channels: %s\n", err);
        return 1;
    }
    const baton_host *h = plugin_host_api();
    baton_template *ts[2];
    ts[0] = h->template_compile(NULL, subject_t, 0, err, sizeof err);
    buf padded;
    buf_init(&padded);
    buf_adds(&padded, text_t);
    long pad = getenv("BENCH_TEXT_BYTES") ? atol(getenv("BENCH_TEXT_BYTES")) : 0;
    for (long i = 0; i < pad; i++)
        buf_add(&padded, i % 72 == 71 ? "\n" : &"lorem ipsum dolor sit amet "[i % 27], 1);
    ts[1] = h->template_compile(NULL, padded.data, 0, err, sizeof err);
    buf_free(&padded);
    if (!ts[0] || !ts[1]) {
        fprintf(stderr, "bench_channels: template: %s\n", err);
        return 1;
    }
    char *dir = tmpdir_make("bench");
    store st;
    if (store_open(&st, dir, err, sizeof err)) {
        fprintf(stderr, "bench_channels: %s\n", err);
        return 1;
    }
    conf caps;
    memset(&caps, 0, sizeof caps);
    conf_cap cap = {.channel = "*", .max = 1000, .per_s = 7 * 86400};
    caps.caps = &cap;
    caps.ncaps = 1;
    dispatch_opts o = {.caps = &caps};
    dispatcher *d = dispatch_open(inst, &st, &o, err, sizeof err);
    if (!d) {
        fprintf(stderr, "bench_channels: %s\n", err);
        return 1;
    }
    record *row = record_new();
    buf b[2];
    buf_init(&b[0]);
    buf_init(&b[1]);
    tcpu th0[64];
    size_t nth0 = threads_cpu(th0, 64);
    unsigned long long stmts0, commits0;
    store_counts(&st, &stmts0, &commits0);
    double t0 = now();
    long refused = 0;
    for (long i = 0; i < count; i++) {
        char key[64], id[32], to[64], code[32];
        snprintf(key, sizeof key, "bench/%s/%ld", chan, i);
        snprintf(id, sizeof id, "p%ld", i);
        snprintf(code, sizeof code, "WB-%06ld", i);
        if (!strcmp(chan, "email"))
            snprintf(to, sizeof to, "p%ld@example.com", i);
        else if (!strcmp(chan, "sms"))
            snprintf(to, sizeof to, "+336%08ld", i);
        else
            snprintf(to, sizeof to, "%s", id);
        record_clear(row);
        record_set_string(row, "id", id);
        record_set_string(row, "first_name", i % 2 ? "Ann" : "Léa");
        record_set_string(row, "code", code);
        record_set_int(row, "pct", 10 + i % 5);
        const char *values[3];
        for (size_t k = 0; k < nparts; k++) {
            buf_reset(&b[k]);
            h->template_render(ts[k], row, &b[k]);
            values[k] = b[k].data;
        }
        dispatch_msg m = {.key = key,
                          .recipient = to,
                          .profile_id = id,
                          .nparts = nparts,
                          .part_names = parts,
                          .part_values = values,
                          .row = row};
        if (dispatch_submit(d, &m, -1, err, sizeof err) != DISPATCH_ACCEPTED)
            refused++;
    }
    double tsub = now();
    dispatch_flush(d, -1);
    double t1 = now();
    dispatch_stats s;
    dispatch_get_stats(d, &s);
    printf("%s: %ld messages in %.2f s = %.0f msg/s (submitted in %.2f s; sent %llu, failed %llu, "
           "retries %llu, refused %ld)\n",
           chan, count, t1 - t0, count / (t1 - t0), tsub - t0, (unsigned long long)s.sent,
           (unsigned long long)s.failed, (unsigned long long)s.retries, refused);
    print_threads(chan, "message", th0, nth0, count);
    unsigned long long stmts1, commits1;
    store_counts(&st, &stmts1, &commits1);
    printf("%s: SQL statements per message %.2f; commits per 1,000 messages %.1f\n", chan,
           (double)(stmts1 - stmts0) / (double)count,
           (double)(commits1 - commits0) * 1000 / (double)count);
    dispatch_close(d, 0, 0);
    uint64_t c[DISPATCH_NSTATUS];
    dispatch_log_counts(&st, "bench/", NULL, c);
    if (c[DISPATCH_SENT] != (uint64_t)count)
        printf("%s: the delivery log holds %llu sent of %ld\n", chan,
               (unsigned long long)c[DISPATCH_SENT], count);
    record_free(row);
    buf_free(&b[0]);
    buf_free(&b[1]);
    h->template_free(ts[0]);
    h->template_free(ts[1]);
    store_close(&st);
    tmpdir_remove(dir);
    free(dir);
    test_instance_free(inst);
    plugin_registry_free(&reg);
    free(path);
    return 0;
}
