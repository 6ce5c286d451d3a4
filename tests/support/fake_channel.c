#include "support/fake_channel.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "support/instance.h"

typedef struct entry {
    char *key;
    char *text; /* what was delivered, when recording */
    unsigned h;
    unsigned sent, attempts;
    struct entry *next;
} entry;

/* Keys delivered, by hash; the table doubles as it fills, so that a
 * benchmark's hundreds of thousands of keys cost the dispatcher's workers
 * (which call deliver()) a lookup each, not a walk down a long chain. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static entry **tab;
static size_t nb, nkeys;
static unsigned long total, batches;
static size_t max_batch;
static int down, gate, recording;
static size_t held;       /* messages of the deliver() call waiting at the gate */
static int progress = -1; /* >= 0: report progress, the gate after wiring that message */

static entry *get(const char *key)
{
    unsigned h = 5381;
    for (const char *p = key; *p; p++)
        h = h * 33 + (unsigned char)*p;
    if (nb) {
        for (entry *e = tab[h % nb]; e; e = e->next)
            if (e->h == h && !strcmp(e->key, key))
                return e;
    }
    if (nkeys >= nb) { /* grow: rehash every chain */
        size_t n2 = nb ? nb * 2 : 8192;
        entry **t2 = calloc(n2, sizeof *t2);
        for (size_t i = 0; i < nb; i++)
            while (tab[i]) {
                entry *e = tab[i];
                tab[i] = e->next;
                e->next = t2[e->h % n2];
                t2[e->h % n2] = e;
            }
        free(tab);
        tab = t2;
        nb = n2;
    }
    entry *e = calloc(1, sizeof *e);
    e->key = strdup(key);
    e->h = h;
    e->next = tab[h % nb];
    tab[h % nb] = e;
    nkeys++;
    return e;
}

unsigned fake_channel_sent(const char *key)
{
    pthread_mutex_lock(&mu);
    unsigned n = get(key)->sent;
    pthread_mutex_unlock(&mu);
    return n;
}
unsigned fake_channel_attempts(const char *key)
{
    pthread_mutex_lock(&mu);
    unsigned n = get(key)->attempts;
    pthread_mutex_unlock(&mu);
    return n;
}
unsigned long fake_channel_total(void)
{
    pthread_mutex_lock(&mu);
    unsigned long n = total;
    pthread_mutex_unlock(&mu);
    return n;
}
unsigned long fake_channel_batches(void)
{
    pthread_mutex_lock(&mu);
    unsigned long n = batches;
    pthread_mutex_unlock(&mu);
    return n;
}
size_t fake_channel_max_batch(void)
{
    pthread_mutex_lock(&mu);
    size_t n = max_batch;
    pthread_mutex_unlock(&mu);
    return n;
}
void fake_channel_reset(void)
{
    pthread_mutex_lock(&mu);
    for (size_t i = 0; i < nb; i++)
        while (tab[i]) {
            entry *e = tab[i];
            tab[i] = e->next;
            free(e->key);
            free(e->text);
            free(e);
        }
    nkeys = 0;
    total = batches = 0;
    max_batch = 0;
    down = gate = recording = 0;
    progress = -1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&mu);
}
void fake_channel_set_down(int d)
{
    pthread_mutex_lock(&mu);
    down = d;
    pthread_mutex_unlock(&mu);
}
size_t fake_channel_held(int timeout_ms)
{
    pthread_mutex_lock(&mu);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    while (!held && pthread_cond_timedwait(&gate_cv, &mu, &until) == 0)
        ;
    size_t n = held;
    pthread_mutex_unlock(&mu);
    return n;
}
void fake_channel_set_progress(int gate_at)
{
    pthread_mutex_lock(&mu);
    progress = gate_at;
    pthread_mutex_unlock(&mu);
}
void fake_channel_set_gate(int closed)
{
    pthread_mutex_lock(&mu);
    gate = closed;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&mu);
}

static const baton_host *host;
static int f_init(baton_instance *i, const baton_host *h, void **s)
{
    host = h;
    *s = i;
    return 0;
}
static void f_destroy(void *s) {}

static int f_format(void *st, const baton_message *m, baton_buf *out, char *err, size_t n)
{
    host->buf_printf(out, "%s", m->recipient);
    for (size_t i = 0; i < m->nparts; i++)
        host->buf_printf(out, "|%s=%s", m->part_names[i], m->part_values[i]);
    return 0;
}

static void f_deliver(void *st, void *conn, const baton_message *const *msgs, size_t n,
                      baton_delivery *out)
{
    pthread_mutex_lock(&mu);
    while (gate && progress < 0) {
        held = n;
        pthread_cond_broadcast(&gate_cv);
        pthread_cond_wait(&gate_cv, &mu);
    }
    held = 0;
    batches++;
    if (n > max_batch)
        max_batch = n;
    for (size_t i = 0; i < n; i++) {
        const char *k = msgs[i]->key;
        if (progress >= 0) {
            baton_deliver_wire(host, msgs + i, 1);
            while (gate && (size_t)progress == i) {
                held = n;
                pthread_cond_broadcast(&gate_cv);
                pthread_cond_wait(&gate_cv, &mu);
            }
            held = 0;
        }
        entry *e = get(k);
        e->attempts++;
        const char *r = strstr(k, "retry");
        memset(&out[i], 0, sizeof out[i]);
        if (down) {
            out[i].status = BATON_RETRY;
            snprintf(out[i].reason, sizeof out[i].reason, "connection refused (fake)");
        } else if (strstr(k, "perm")) {
            out[i].status = BATON_ERROR;
            snprintf(out[i].reason, sizeof out[i].reason, "550 permanent (fake)");
        } else if (strstr(k, "unsure")) {
            out[i].status = BATON_UNCERTAIN;
            snprintf(out[i].reason, sizeof out[i].reason,
                     "DATA: no reply after the final dot (fake)");
        } else if (strstr(k, "bogus")) {
            out[i].status = (baton_status)7;
            snprintf(out[i].reason, sizeof out[i].reason, "what now (fake)");
        } else if (strstr(k, "always") ||
                   (r && r[5] >= '1' && r[5] <= '9' && e->attempts <= (unsigned)(r[5] - '0'))) {
            out[i].status = BATON_RETRY;
            snprintf(out[i].reason, sizeof out[i].reason, "451 try again (fake)");
        } else {
            out[i].status = BATON_OK;
            snprintf(out[i].provider_id, sizeof out[i].provider_id, "fake-%.100s", k);
            e->sent++;
            total++;
            if (recording) {
                buf t;
                buf_init(&t);
                buf_adds(&t, msgs[i]->recipient ? msgs[i]->recipient : "");
                for (size_t p = 0; p < msgs[i]->nparts; p++)
                    buf_addf(&t, "|%s=%s", msgs[i]->part_names[p], msgs[i]->part_values[p]);
                for (size_t c = 0; c < t.len; c++)
                    if (t.data[c] == '\n')
                        t.data[c] = '/';
                free(e->text);
                e->text = buf_steal(&t);
            }
        }
        if (progress >= 0)
            baton_deliver_done(host, msgs[i], &out[i]);
    }
    pthread_mutex_unlock(&mu);
}

static const char *const parts[] = {"subject", "text", NULL};
static const baton_channel_ops ops = {
    .size = sizeof ops, .parts = parts, .format = f_format, .deliver = f_deliver};
static const baton_plugin fake_desc = {.size = sizeof(baton_plugin),
                                       .abi_major = BATON_ABI_MAJOR,
                                       .abi_minor = BATON_ABI_MINOR,
                                       .name = "fake_channel",
                                       .version = "1.0.0",
                                       .kind = BATON_KIND_CHANNEL,
                                       .init = f_init,
                                       .destroy = f_destroy,
                                       .ops = &ops};

instance *fake_channel_new(const char *name, const char *settings, char *err, size_t errlen)
{
    return test_instance_new(&fake_desc, "channels", name, settings, 1, err, errlen);
}

void fake_channel_free(instance *inst)
{
    test_instance_free(inst);
}

void fake_channel_record(int on)
{
    pthread_mutex_lock(&mu);
    recording = on;
    pthread_mutex_unlock(&mu);
}

static int by_line(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char *fake_channel_messages(void)
{
    pthread_mutex_lock(&mu);
    char **lines = calloc(nkeys + 1, sizeof *lines);
    size_t n = 0;
    for (size_t i = 0; i < nb; i++)
        for (entry *e = tab[i]; e; e = e->next)
            if (e->sent && asprintf(&lines[n], "%s\t%s", e->key, e->text ? e->text : "") >= 0)
                n++;
    pthread_mutex_unlock(&mu);
    qsort(lines, n, sizeof *lines, by_line);
    buf out;
    buf_init(&out);
    buf_adds(&out, "");
    for (size_t i = 0; i < n; i++) {
        buf_addf(&out, "%s\n", lines[i]);
        free(lines[i]);
    }
    free(lines);
    return buf_steal(&out);
}
