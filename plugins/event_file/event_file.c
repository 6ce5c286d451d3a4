/* event_file — journey events from a JSON-lines file: one event per line,
 * for replays and imports. Reads the file from the start (re-reading is
 * harmless: events are deduplicated by id) and, with follow = true, keeps
 * reading what is appended, like tail -f. A line the host cannot take yet
 * (queue full) is offered again after a short wait. */
#include <baton/baton.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const baton_config_key keys[] = {{.name = "path",
                                         .type = BATON_CFG_PATH,
                                         .required = 1,
                                         .help = "the JSON-lines file (one event object per line)"},
                                        {.name = "follow",
                                         .type = BATON_CFG_BOOL,
                                         .default_value = "false",
                                         .help = "keep reading lines appended to the file"},
                                        {.name = "poll",
                                         .type = BATON_CFG_DURATION,
                                         .default_value = "200ms",
                                         .help = "with follow: how often to look for new lines"},
                                        {0}};

typedef struct fsrc {
    const baton_host *host;
    baton_instance *inst;
    char *path;
    int follow;
    long poll_ms;
    pthread_t th;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
    baton_counter *c_lines, *c_acked;
} fsrc;

static void on_ack(void *ctx)
{
    fsrc *f = ctx;
    f->host->counter_add(f->c_acked, 1);
}

/* Sleep ms unless stopping; 1 when stopping. On the monotonic clock (the
 * condition is made for it in fs_init): a wall clock stepped back cannot
 * stretch a nap. */
static int nap(fsrc *f, long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&f->mu);
    while (!f->stopping && pthread_cond_timedwait(&f->cv, &f->mu, &ts) != ETIMEDOUT)
        ;
    int stop = f->stopping;
    pthread_mutex_unlock(&f->mu);
    return stop;
}

static int stopping(fsrc *f)
{
    pthread_mutex_lock(&f->mu);
    int s = f->stopping;
    pthread_mutex_unlock(&f->mu);
    return s;
}

static void *reader(void *arg)
{
    fsrc *f = arg;
    pthread_setname_np(pthread_self(), "baton-evfile"); /* top -H, perf */
    FILE *in = NULL;
    char *line = NULL;
    size_t cap = 0;
    while (!stopping(f)) {
        if (!in) {
            in = fopen(f->path, "r");
            if (!in) {
                if (!f->follow) {
                    f->host->log(f->inst, BATON_LOG_ERROR, "%s: %s", f->path, strerror(errno));
                    break;
                }
                if (nap(f, f->poll_ms))
                    break;
                continue;
            }
        }
        long at = ftell(in);
        ssize_t len = getline(&line, &cap, in);
        if (len > 0 && line[len - 1] != '\n' && f->follow) {
            /* a line still being written: read it whole once its newline
             * is there, never as two broken events */
            if (at >= 0 && fseek(in, at, SEEK_SET) == 0)
                len = -1;
        }
        if (len < 0) {
            /* all there is for now: one group for the host */
            if (f->host->abi_minor >= 1 && f->host->event_flush)
                f->host->event_flush(f->inst);
            if (!f->follow)
                break;
            clearerr(in);
            if (nap(f, f->poll_ms))
                break;
            continue;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (strspn(line, " \t") == (size_t)len)
            continue;
        f->host->counter_add(f->c_lines, 1);
        long backoff = 1;
        for (;;) {
            int rc = f->host->event_submit(f->inst, line, (size_t)len, on_ack, f);
            if (rc == 0)
                break;
            if (rc < 0) {
                f->host->log(f->inst, BATON_LOG_ERROR, "the host refused an event; stopping");
                goto out;
            }
            if (nap(f, backoff))
                goto out;
            backoff = backoff < 100 ? backoff * 2 : 100;
        }
    }
out:
    if (in)
        fclose(in);
    free(line);
    return NULL;
}

static int fs_init(baton_instance *inst, const baton_host *host, void **state)
{
    fsrc *f = calloc(1, sizeof *f);
    if (!f) {
        host->set_error(inst, "out of memory");
        return -1;
    }
    f->host = host;
    f->inst = inst;
    f->path = strdup(host->config_string(inst, "path"));
    pthread_condattr_t ca;
    if (!f->path || pthread_condattr_init(&ca) != 0) {
        free(f->path);
        free(f);
        host->set_error(inst, "out of memory");
        return -1;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    f->follow = host->config_bool(inst, "follow");
    f->poll_ms = (long)host->config_duration_ms(inst, "poll");
    if (f->poll_ms < 1)
        f->poll_ms = 1;
    f->c_lines = host->counter(inst, "lines");
    f->c_acked = host->counter(inst, "acked");
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, &ca);
    pthread_condattr_destroy(&ca);
    *state = f;
    return 0;
}

static int fs_start(void *state)
{
    fsrc *f = state;
    f->stopping = 0;
    if (pthread_create(&f->th, NULL, reader, f) != 0) {
        f->host->set_error(f->inst, "cannot start the reader thread");
        return -1;
    }
    f->started = 1;
    return 0;
}

static void fs_stop(void *state)
{
    fsrc *f = state;
    pthread_mutex_lock(&f->mu);
    f->stopping = 1;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    if (f->started)
        pthread_join(f->th, NULL);
    f->started = 0;
}

static void fs_destroy(void *state)
{
    fsrc *f = state;
    if (!f)
        return;
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f->path);
    free(f);
}

static const baton_event_ops ops = {.size = sizeof(baton_event_ops)};

BATON_PLUGIN(.name = "event_file", .version = "1.0.0",
             .description = "journey events from a JSON-lines file (replay; follow like tail -f)",
             .kind = BATON_KIND_EVENT, .config = keys, .init = fs_init, .start = fs_start,
             .stop = fs_stop, .destroy = fs_destroy, .ops = &ops);
