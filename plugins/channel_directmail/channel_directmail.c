/* channel_directmail — printed mail through a print house: one CSV file
 * per campaign run and send activity (the message's batch), with the
 * columns the send names, and a manifest with its row count.
 *
 * format() is pure: one RFC 4180 record (UTF-8, quoted when needed, CRLF)
 * of the message's parts in order. Cells a spreadsheet would execute
 * (=, +, -, @, tab, CR first) are neutralised with a leading apostrophe,
 * numbers excepted.
 *
 * deliver() appends each record to the batch's journal, <dir>/<batch>.part,
 * as "<key>\t<length>\t<record>\n", flushes it, and fsyncs it once per
 * deliver() call before answering OK (OK means on disk). A
 * journal reopened after a crash is read back: a torn last entry is cut
 * off and keys already written are answered OK without writing again, so
 * a row is in the export once even when the delivery log did not learn
 * of it. batch_end() writes <batch>.csv (header and records) under a
 * temporary name, fsyncs and renames it, then writes <batch>.manifest.json
 * the same way and removes the journal. */
#include <baton/baton.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct keyset {
    char **v;
    size_t cap, n;
} keyset;

typedef struct journal {
    char *batch;
    FILE *f;
    keyset keys;
    struct journal *next;
} journal;

typedef struct dm {
    const baton_host *host;
    baton_instance *inst;
    char *dir;
    pthread_mutex_t lock;
    journal *open;
    mode_t mode; /* export_mode, or 0: the umask's (baton's 077: 0600) */
} dm;

static const baton_config_key keys[] = {
    {.name = "dir",
     .type = BATON_CFG_PATH,
     .required = 1,
     .help = "where the CSV exports and their manifests are written"},
    {.name = "export_mode",
     .type = BATON_CFG_STRING,
     .help = "file mode of the exports and manifests, in octal (\"0640\": a group such as a "
             "print vendor's may read them; the folder gets the matching search bits); default "
             "0600, readable by baton's user only"},
    {0}};

/* ---- a set of keys (open addressing, FNV-1a) ---- */

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int keyset_has(const keyset *k, const char *key)
{
    if (!k->cap)
        return 0;
    for (size_t i = fnv(key) & (k->cap - 1);; i = (i + 1) & (k->cap - 1)) {
        if (!k->v[i])
            return 0;
        if (!strcmp(k->v[i], key))
            return 1;
    }
}

static void keyset_add(keyset *k, const char *key)
{
    if ((k->n + 1) * 2 > k->cap) {
        size_t ncap = k->cap ? k->cap * 2 : 1024;
        char **nv = BATON_CHECKED(calloc(ncap, sizeof *nv));
        for (size_t i = 0; i < k->cap; i++)
            if (k->v[i]) {
                size_t j = fnv(k->v[i]) & (ncap - 1);
                while (nv[j])
                    j = (j + 1) & (ncap - 1);
                nv[j] = k->v[i];
            }
        free(k->v);
        k->v = nv;
        k->cap = ncap;
    }
    size_t i = fnv(key) & (k->cap - 1);
    while (k->v[i])
        i = (i + 1) & (k->cap - 1);
    k->v[i] = BATON_CHECKED(strdup(key));
    k->n++;
}

static void keyset_free(keyset *k)
{
    for (size_t i = 0; i < k->cap; i++)
        free(k->v[i]);
    free(k->v);
    memset(k, 0, sizeof *k);
}

/* ---- CSV ---- */

static int is_number(const char *s)
{
    char *end;
    if (!*s)
        return 0;
    errno = 0;
    strtod(s, &end);
    return *end == '\0' && errno == 0;
}

static void csv_cell(const baton_host *h, baton_buf *out, const char *v)
{
    int neutral = (v[0] == '=' || v[0] == '+' || v[0] == '-' || v[0] == '@' || v[0] == '\t' ||
                   v[0] == '\r') &&
                  !is_number(v);
    int quote = neutral || strpbrk(v, ",\"\r\n") != NULL || v[0] == ' ' ||
                (v[0] && v[strlen(v) - 1] == ' ');
    if (!quote) {
        h->buf_append(out, v, strlen(v));
        return;
    }
    h->buf_append(out, "\"", 1);
    if (neutral)
        h->buf_append(out, "'", 1);
    for (const char *p = v; *p; p++) {
        h->buf_append(out, p, 1);
        if (*p == '"')
            h->buf_append(out, "\"", 1); /* "" inside quotes */
    }
    h->buf_append(out, "\"", 1);
}

static void csv_record(const baton_host *h, baton_buf *out, size_t n, const char *const *v)
{
    for (size_t i = 0; i < n; i++) {
        if (i)
            h->buf_append(out, ",", 1);
        csv_cell(h, out, v[i] ? v[i] : "");
    }
    h->buf_append(out, "\r\n", 2);
}

/* ---- lifecycle ---- */

static int dm_init(baton_instance *inst, const baton_host *host, void **state)
{
    dm *d = BATON_CHECKED(calloc(1, sizeof *d));
    d->host = host;
    d->inst = inst;
    d->dir = BATON_CHECKED(strdup(host->config_string(inst, "dir")));
    const char *mode = host->config_string(inst, "export_mode");
    if (mode) {
        char *end;
        long m = strtol(mode, &end, 8);
        if (!*mode || *end || m < 0 || m > 0777 || (m & 0002)) {
            host->set_error(inst, "export_mode must be a file mode in octal such as \"0640\""
                                  " (not writable by others)");
            free(d->dir);
            free(d);
            return -1;
        }
        d->mode = (mode_t)m;
    }
    pthread_mutex_init(&d->lock, NULL);
    *state = d;
    return 0;
}

static int mkdirs(const char *path)
{
    char *p = BATON_CHECKED(strdup(path));
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            mkdir(p, 0755);
            *s = '/';
        }
    int rc = mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
    free(p);
    return rc;
}

static int dm_start(void *state)
{
    dm *d = state;
    if (mkdirs(d->dir) != 0) {
        d->host->set_error(d->inst, "%s: cannot create the export folder: %s", d->dir,
                           strerror(errno));
        return -1;
    }
    /* whoever may read the files may list the folder */
    mode_t r = d->mode & 0444;
    if (d->mode && chmod(d->dir, 0700 | (d->mode & 0055) | (r >> 2)) != 0) {
        d->host->set_error(d->inst, "%s: cannot set the export folder's mode: %s", d->dir,
                           strerror(errno));
        return -1;
    }
    return 0;
}

static void close_journal(journal *j)
{
    if (j->f)
        fclose(j->f);
    keyset_free(&j->keys);
    free(j->batch);
    free(j);
}

static void dm_stop(void *state)
{
    dm *d = state;
    pthread_mutex_lock(&d->lock);
    while (d->open) {
        journal *j = d->open;
        d->open = j->next;
        close_journal(j);
    }
    pthread_mutex_unlock(&d->lock);
}

static void dm_destroy(void *state)
{
    dm *d = state;
    dm_stop(d);
    pthread_mutex_destroy(&d->lock);
    free(d->dir);
    free(d);
}

/* "winback/42/letters" -> <dir>/winback-42-letters<suffix> */
static char *batch_path(const dm *d, const char *batch, const char *suffix)
{
    size_t n = strlen(d->dir) + strlen(batch) + strlen(suffix) + 2;
    char *p = BATON_CHECKED(malloc(n));
    snprintf(p, n, "%s/%s%s", d->dir, batch, suffix);
    for (char *s = p + strlen(d->dir) + 1; *s; s++)
        if (*s == '/' || *s == '\\')
            *s = '-';
    return p;
}

/* Read a journal: call fn for each complete entry; return the offset just
 * past the last complete one. */
static long read_journal(FILE *f, void (*fn)(void *, const char *, const char *, size_t), void *ud)
{
    long good = 0;
    char *line = NULL;
    size_t cap = 0;
    rewind(f);
    for (;;) {
        int c;
        size_t kl = 0;
        char key[1024];
        while ((c = fgetc(f)) != EOF && c != '\t' && kl < sizeof key - 1)
            key[kl++] = (char)c;
        key[kl] = '\0';
        if (c != '\t')
            break;
        unsigned long len;
        if (fscanf(f, "%lu", &len) != 1 || fgetc(f) != '\t' || len > (64u << 20))
            break;
        if (len + 1 > cap) {
            cap = len + 1;
            line = BATON_CHECKED(realloc(line, cap));
        }
        if (fread(line, 1, len, f) != len || fgetc(f) != '\n')
            break;
        if (fn)
            fn(ud, key, line, len);
        good = ftell(f);
    }
    free(line);
    return good;
}

static void remember(void *ud, const char *key, const char *rec, size_t len)
{
    keyset_add(ud, key);
}

static journal *journal_for(dm *d, const char *batch, char *reason, size_t rlen)
{
    for (journal *j = d->open; j; j = j->next)
        if (!strcmp(j->batch, batch))
            return j;
    char *path = batch_path(d, batch, ".part");
    FILE *f = fopen(path, "a+b");
    if (!f) {
        snprintf(reason, rlen, "%s: %s", path, strerror(errno));
        free(path);
        return NULL;
    }
    journal *j = BATON_CHECKED(calloc(1, sizeof *j));
    j->batch = BATON_CHECKED(strdup(batch));
    long good = read_journal(f, remember, &j->keys);
    fflush(f);
    if (ftruncate(fileno(f), good) != 0) {
        snprintf(reason, rlen, "%s: %s", path, strerror(errno));
        fclose(f);
        keyset_free(&j->keys);
        free(j->batch);
        free(j);
        free(path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    free(path);
    j->f = f;
    j->next = d->open;
    d->open = j;
    return j;
}

/* ---- the channel ---- */

static int dm_format(void *state, const baton_message *m, baton_buf *out, char *err, size_t errlen)
{
    dm *d = state;
    csv_record(d->host, out, m->nparts, m->part_values);
    return 0;
}

static void dm_deliver(void *state, void *conn, const baton_message *const *msgs, size_t n,
                       baton_delivery *out)
{
    dm *d = state;
    baton_buf *b = d->host->buf_new();
    journal **jof = BATON_CHECKED(calloc(n ? n : 1, sizeof *jof)); /* written to, unsynced */
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < n; i++) {
        const baton_message *m = msgs[i];
        const char *slash = m->key ? strrchr(m->key, '/') : NULL;
        out[i].status = BATON_ERROR;
        if (!slash) {
            snprintf(out[i].reason, sizeof out[i].reason,
                     "key '%s' names no batch (campaign sends only)", m->key ? m->key : "");
            continue;
        }
        char batch[512];
        snprintf(batch, sizeof batch, "%.*s", (int)(slash - m->key), m->key);
        journal *j = journal_for(d, batch, out[i].reason, sizeof out[i].reason);
        if (!j) {
            out[i].status = BATON_RETRY;
            continue;
        }
        if (keyset_has(&j->keys, m->key)) {
            out[i].status = BATON_OK; /* written before a crash: not again */
            snprintf(out[i].provider_id, sizeof out[i].provider_id, "%s", slash + 1);
            continue;
        }
        /* a record is whole or absent: a short write is cut off again, so
         * the journal never holds a torn record that would hide later ones */
        long start = ftell(j->f);
        int ok = start >= 0;
        if (ok && j->keys.n == 0) { /* the header, once per batch */
            d->host->buf_reset(b);
            csv_record(d->host, b, m->nparts, m->part_names);
            size_t len;
            const char *hdr = d->host->buf_data(b, &len);
            ok = fprintf(j->f, "%s\t%zu\t", "\1header", len) > 0 &&
                 fwrite(hdr, 1, len, j->f) == len && fputc('\n', j->f) != EOF;
        }
        d->host->buf_reset(b);
        csv_record(d->host, b, m->nparts, m->part_values);
        size_t len;
        const char *rec = d->host->buf_data(b, &len);
        ok = ok && fprintf(j->f, "%s\t%zu\t", m->key, len) > 0 &&
             fwrite(rec, 1, len, j->f) == len && fputc('\n', j->f) != EOF;
        if (!ok || fflush(j->f) != 0) {
            int e = errno;
            out[i].status = BATON_RETRY;
            snprintf(out[i].reason, sizeof out[i].reason, "writing the journal: %s", strerror(e));
            /* stdio may still hold part of it: close, then cut the file back
             * to the last whole record; the journal is reopened next time */
            int fd = dup(fileno(j->f));
            for (size_t k = 0; k < i; k++)
                if (jof[k] == j) { /* not synced: again (the reopened journal has them) */
                    jof[k] = NULL;
                    out[k].status = BATON_RETRY;
                    out[k].provider_id[0] = '\0';
                    snprintf(out[k].reason, sizeof out[k].reason, "writing the journal: %s",
                             strerror(e));
                }
            journal **pj = &d->open;
            while (*pj && *pj != j)
                pj = &(*pj)->next;
            if (*pj)
                *pj = j->next;
            close_journal(j);
            if (fd >= 0) {
                if (start >= 0 && ftruncate(fd, start) != 0)
                    d->host->log(d->inst, BATON_LOG_WARN, "cannot cut the journal: %s",
                                 strerror(errno));
                close(fd);
            }
            continue;
        }
        if (j->keys.n == 0)
            keyset_add(&j->keys, "\1header");
        keyset_add(&j->keys, m->key);
        out[i].status = BATON_OK;
        snprintf(out[i].provider_id, sizeof out[i].provider_id, "%s", slash + 1);
        jof[i] = j;
    }
    /* OK means on disk: each journal written to is synced once per call
     * (a batch's rows share one fsync) before the answers go back */
    for (size_t i = 0; i < n; i++) {
        journal *j = jof[i];
        if (!j)
            continue;
        int rc = fsync(fileno(j->f)), e = errno;
        for (size_t k = i; k < n; k++)
            if (jof[k] == j) {
                jof[k] = NULL;
                if (rc != 0) {
                    out[k].status = BATON_RETRY;
                    out[k].provider_id[0] = '\0';
                    snprintf(out[k].reason, sizeof out[k].reason, "syncing the journal: %s",
                             strerror(e));
                }
            }
        if (rc != 0) { /* read back from the file next time */
            journal **pj = &d->open;
            while (*pj && *pj != j)
                pj = &(*pj)->next;
            if (*pj)
                *pj = j->next;
            close_journal(j);
        }
    }
    pthread_mutex_unlock(&d->lock);
    free(jof);
    d->host->buf_free(b);
}

typedef struct export_ctx {
    FILE *out;
    uint64_t rows;
    int header;
    int failed;
} export_ctx;

static void export_one(void *ud, const char *key, const char *rec, size_t len)
{
    export_ctx *x = ud;
    int is_header = !strcmp(key, "\1header");
    if (is_header && x->header)
        return;
    if (fwrite(rec, 1, len, x->out) != len)
        x->failed = 1;
    if (is_header)
        x->header = 1;
    else
        x->rows++;
}

static int write_atomically(const char *path, const char *data, size_t len)
{
    size_t n = strlen(path) + 5;
    char *tmp = BATON_CHECKED(malloc(n));
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    int rc = -1;
    if (f && fwrite(data, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0)
        rc = 0;
    if (f)
        fclose(f);
    if (rc == 0)
        rc = rename(tmp, path);
    free(tmp);
    return rc;
}

static int dm_batch_end(void *state, const char *batch, uint64_t count, char *err, size_t errlen)
{
    dm *d = state;
    pthread_mutex_lock(&d->lock);
    journal **pj = &d->open;
    while (*pj && strcmp((*pj)->batch, batch))
        pj = &(*pj)->next;
    if (*pj) {
        journal *j = *pj;
        *pj = j->next;
        close_journal(j);
    }
    pthread_mutex_unlock(&d->lock);
    /* a batch exported already and sent to again (rows that reached the
     * send later: an or_join's late input) goes on in <batch>-2.csv,
     * -3...: each export and manifest holds the rows delivered since the
     * one before, which the count, a running total, says with them */
    uint64_t before = 0;
    int nth = 1;
    for (;; nth++) {
        char suffix[48];
        snprintf(suffix, sizeof suffix, nth == 1 ? ".manifest.json" : "-%d.manifest.json", nth);
        char *m = batch_path(d, batch, suffix);
        FILE *f = fopen(m, "rb");
        free(m);
        if (!f)
            break;
        char text[1024];
        size_t n = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[n] = '\0';
        const char *r = strstr(text, "\"rows\": ");
        before += r ? strtoull(r + 8, NULL, 10) : 0;
    }
    char sfx[4][48];
    snprintf(sfx[0], sizeof sfx[0], nth == 1 ? ".csv" : "-%d.csv", nth);
    snprintf(sfx[1], sizeof sfx[1], nth == 1 ? ".csv.tmp" : "-%d.csv.tmp", nth);
    snprintf(sfx[2], sizeof sfx[2], nth == 1 ? ".manifest.json" : "-%d.manifest.json", nth);
    char *part = batch_path(d, batch, ".part"), *csv = batch_path(d, batch, sfx[0]);
    char *tmp = batch_path(d, batch, sfx[1]), *man = batch_path(d, batch, sfx[2]);
    int rc = -1;
    export_ctx x = {0};
    FILE *in = fopen(part, "rb");
    if (nth > 1 && count <= before && !in) { /* nothing since: ended again (a resume) */
        rc = 0;
        goto out;
    }
    if (count >= before)
        count -= before;
    x.out = fopen(tmp, "wb");
    if (!x.out) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    if (in)
        read_journal(in, export_one, &x);
    if (x.failed || fflush(x.out) != 0 || fsync(fileno(x.out)) != 0) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    if (x.rows != count) { /* a manifest that says fewer rows than delivered would lie */
        snprintf(err, errlen, "%s: %llu rows on disk, %llu delivered", part,
                 (unsigned long long)x.rows, (unsigned long long)count);
        goto out;
    }
    fclose(x.out);
    x.out = NULL;
    if (rename(tmp, csv) != 0) {
        snprintf(err, errlen, "%s: %s", csv, strerror(errno));
        goto out;
    }
    const char *base = strrchr(csv, '/') ? strrchr(csv, '/') + 1 : csv;
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char json[1024];
    int jl = snprintf(json, sizeof json,
                      "{\"file\": \"%s\", \"batch\": \"%s\", \"rows\": %llu, \"delivered\": %llu, "
                      "\"written_at\": \"%s\"}\n",
                      base, batch, (unsigned long long)x.rows, (unsigned long long)count, stamp);
    if (write_atomically(man, json, (size_t)jl) != 0) {
        snprintf(err, errlen, "%s: %s", man, strerror(errno));
        goto out;
    }
    if (d->mode && (chmod(csv, d->mode) != 0 || chmod(man, d->mode) != 0)) {
        snprintf(err, errlen, "%s: cannot set export_mode: %s", csv, strerror(errno));
        goto out;
    }
    unlink(part);
    rc = 0;
out:
    if (in)
        fclose(in);
    if (x.out)
        fclose(x.out);
    free(part);
    free(csv);
    free(tmp);
    free(man);
    return rc;
}

static const baton_channel_ops ops = {
    .size = sizeof ops,
    .parts = NULL, /* a send names its export columns */
    .format = dm_format,
    .deliver = dm_deliver,
    .batch_end = dm_batch_end,
    /* it writes rows, to no one; its journal drops a key written before */
    .flags = BATON_CHANNEL_NO_RECIPIENT | BATON_CHANNEL_IDEMPOTENT,
};

BATON_PLUGIN(.name = "channel_directmail", .version = "1.0.0",
             .description = "printed mail: one CSV export per run and send, with a manifest",
             .kind = BATON_KIND_CHANNEL, .config = keys, .init = dm_init, .start = dm_start,
             .stop = dm_stop, .destroy = dm_destroy, .ops = &ops)
