/*
 * action_jsonl — a custom action that appends each call as one JSON line
 * to a file: an audit trail of what a journey decided, or a hand-off to a
 * batch job that picks the file up. The example of "write a plugin in 5
 * minutes" in README.md; it uses nothing but <baton/baton.h> and libc.
 *
 *   actions: {
 *     audit: { plugin = "action_jsonl"; path = "var/audit.jsonl";
 *              fields = [ "profile.tier", "event.total" ]; };
 *   };
 *
 * Each line: {"key": "...", "profile": "p42", "fields": {"profile.tier": "gold", ...}}
 * The response is {"line": N}: later conditions of the same journey
 * instance can read it.
 */
#include <baton/baton.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const baton_config_key keys[] = {
    {.name = "path",
     .type = BATON_CFG_PATH,
     .required = 1,
     .help = "the file each call is appended to (created if missing)"},
    {.name = "fields",
     .type = BATON_CFG_LIST,
     .help = "context fields to write (default: every field of the context)"},
    {.name = "fsync",
     .type = BATON_CFG_BOOL,
     .default_value = "false",
     .help = "flush each line to disk before answering OK"},
    {0}};

typedef struct jsonl {
    const baton_host *host;
    baton_instance *inst;
    const char *path;
    FILE *f;
    long lines;
    baton_counter *written;
    pthread_mutex_t lock; /* invoke runs on several action workers */
} jsonl;

static int jsonl_init(baton_instance *inst, const baton_host *host, void **state)
{
    jsonl *j = calloc(1, sizeof *j);
    if (!j) {
        host->set_error(inst, "out of memory");
        return -1;
    }
    j->host = host;
    j->inst = inst;
    j->path = host->config_string(inst, "path");
    j->written = host->counter(inst, "lines_written");
    pthread_mutex_init(&j->lock, NULL);
    *state = j;
    return 0;
}

static int jsonl_start(void *state)
{
    jsonl *j = state;
    j->f = fopen(j->path, "a");
    if (!j->f) {
        j->host->set_error(j->inst, "cannot open %s: %s", j->path, strerror(errno));
        return -1;
    }
    return 0;
}

static void jsonl_stop(void *state)
{
    jsonl *j = state;
    if (j->f)
        fclose(j->f);
    j->f = NULL;
}

static void jsonl_destroy(void *state)
{
    jsonl *j = state;
    pthread_mutex_destroy(&j->lock);
    free(j);
}

static void put_string(const baton_host *h, baton_buf *b, const char *s, size_t len)
{
    h->buf_append(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            h->buf_printf(b, "\\%c", c);
        else if (c < 0x20)
            h->buf_printf(b, "\\u%04x", c);
        else
            h->buf_append(b, &s[i], 1);
    }
    h->buf_append(b, "\"", 1);
}

static void put_value(const baton_host *h, baton_buf *b, const baton_value *v)
{
    switch (v->type) {
    case BATON_T_NULL: h->buf_printf(b, "null"); break;
    case BATON_T_BOOL: h->buf_printf(b, v->v.b ? "true" : "false"); break;
    case BATON_T_INT: h->buf_printf(b, "%lld", (long long)v->v.i); break;
    case BATON_T_FLOAT: h->buf_printf(b, "%.17g", v->v.f); break;
    case BATON_T_STRING: put_string(h, b, v->v.s.ptr, v->v.s.len); break;
    /* dates, timestamps and durations as numbers: days, seconds, seconds */
    case BATON_T_DATE: h->buf_printf(b, "%lld", (long long)v->v.date); break;
    case BATON_T_TIMESTAMP: h->buf_printf(b, "%lld", (long long)v->v.ts); break;
    case BATON_T_DURATION: h->buf_printf(b, "%lld", (long long)v->v.dur); break;
    }
}

static void put_field(const baton_host *h, baton_buf *line, const baton_record *ctx,
                      const char *name, int *first)
{
    baton_value v = {.type = BATON_T_NULL};
    if (ctx)
        h->record_get(ctx, name, &v);
    h->buf_printf(line, "%s", *first ? "" : ", ");
    put_string(h, line, name, strlen(name));
    h->buf_printf(line, ": ");
    put_value(h, line, &v);
    *first = 0;
}

static baton_status jsonl_invoke(void *state, const baton_action_call *call, baton_buf *response,
                                 char *reason, size_t reasonlen)
{
    jsonl *j = state;
    const baton_host *h = j->host;
    baton_buf *line = h->buf_new();
    h->buf_printf(line, "{\"key\": ");
    put_string(h, line, call->key ? call->key : "", call->key ? strlen(call->key) : 0);
    h->buf_printf(line, ", \"profile\": ");
    put_string(h, line, call->profile_id ? call->profile_id : "",
               call->profile_id ? strlen(call->profile_id) : 0);
    h->buf_printf(line, ", \"fields\": {");
    int first = 1;
    size_t nf = h->config_list_count(j->inst, "fields");
    if (nf) {
        for (size_t i = 0; i < nf; i++)
            put_field(h, line, call->context, h->config_list_item(j->inst, "fields", i), &first);
    } else {
        size_t n = h->record_count(call->context);
        for (size_t i = 0; i < n; i++)
            put_field(h, line, call->context, h->record_name(call->context, i), &first);
    }
    h->buf_printf(line, "}}\n");

    size_t len;
    const char *data = h->buf_data(line, &len);
    pthread_mutex_lock(&j->lock);
    int err = 0;
    if (!j->f)
        err = EBADF;
    else if (fwrite(data, 1, len, j->f) != len || fflush(j->f) != 0)
        err = errno ? errno : EIO;
    else if (h->config_bool(j->inst, "fsync") && fsync(fileno(j->f)) != 0)
        err = errno;
    long n = err ? j->lines : ++j->lines;
    pthread_mutex_unlock(&j->lock);
    h->buf_free(line);
    if (err) {
        /* a full disk may clear: the core retries with backoff */
        snprintf(reason, reasonlen, "cannot write %s: %s", j->path, strerror(err));
        return BATON_RETRY;
    }
    h->counter_add(j->written, 1);
    h->buf_printf(response, "{\"line\": %ld}", n);
    return BATON_OK;
}

static const baton_action_ops ops = {.size = sizeof ops, .invoke = jsonl_invoke};

BATON_PLUGIN(.name = "action_jsonl", .version = "1.0.0",
             .description = "append each call as a JSON line to a file", .kind = BATON_KIND_ACTION,
             .config = keys, .init = jsonl_init, .start = jsonl_start, .stop = jsonl_stop,
             .destroy = jsonl_destroy, .ops = &ops)
