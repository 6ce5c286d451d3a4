/* Messages, the bounded queue and the retry heap of a dispatcher. */
#include "delivery/dispatch_int.h"

#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

/* A message is one allocation: the qmsg, its part arrays, its row's
 * fields and every string, copied in (a message is made on the
 * submitting thread and freed on a worker: one malloc and one free each,
 * not one per string). */
static size_t str_size(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

static char *put(char **at, const char *s, size_t n)
{
    char *p = *at;
    memcpy(p, s, n);
    p[n] = '\0';
    *at += n + 1;
    return p;
}

qmsg *qmsg_pack(const char *key, const char *recipient, const char *profile_id, size_t nparts,
                const char *const *names, const char *const *values, const baton_record *row)
{
    if (!recipient)
        recipient = "";
    size_t nfields = row ? row->n : 0;
    size_t size = sizeof(qmsg) + 2 * (nparts + 1) * sizeof(char *) +
                  nfields * sizeof(record_field) + str_size(key) + str_size(recipient) +
                  str_size(profile_id);
    for (size_t i = 0; i < nparts; i++)
        size += str_size(names[i]) + str_size(values[i] ? values[i] : "");
    for (size_t i = 0; i < nfields; i++) {
        size += str_size(row->v[i].name);
        if (row->v[i].value.type == BATON_T_STRING)
            size += row->v[i].value.v.s.len + 1;
    }
    qmsg *q = xmalloc(size);
    memset(q, 0, sizeof *q);
    char **ptrs = (char **)(q + 1);
    q->names = ptrs;
    q->values = ptrs + nparts + 1;
    q->names[nparts] = q->values[nparts] = NULL;
    record_field *fields = (record_field *)(ptrs + 2 * (nparts + 1));
    char *at = (char *)(fields + nfields);
    q->key = put(&at, key, strlen(key));
    q->recipient = put(&at, recipient, strlen(recipient));
    q->profile_id = profile_id ? put(&at, profile_id, strlen(profile_id)) : NULL;
    q->nparts = nparts;
    for (size_t i = 0; i < nparts; i++) {
        const char *v = values[i] ? values[i] : "";
        q->names[i] = put(&at, names[i], strlen(names[i]));
        q->values[i] = put(&at, v, strlen(v));
    }
    if (row) {
        for (size_t i = 0; i < nfields; i++) {
            fields[i].name = put(&at, row->v[i].name, strlen(row->v[i].name));
            fields[i].value = row->v[i].value;
            if (row->v[i].value.type == BATON_T_STRING)
                fields[i].value.v.s.ptr =
                    put(&at, row->v[i].value.v.s.ptr, row->v[i].value.v.s.len);
        }
        q->rowbuf = (record){.v = fields, .n = nfields, .cap = nfields};
        q->row = &q->rowbuf;
    }
    return q;
}

void qmsg_free(qmsg *m)
{
    free(m);
}

qmsg *qmsg_from(const dispatch_msg *m, int64_t t)
{
    qmsg *q = qmsg_pack(m->key, m->recipient, m->profile_id, m->nparts, m->part_names,
                        m->part_values, m->row);
    q->time = t;
    q->first = t;
    q->flags = m->flags;
    return q;
}

void qmsg_fill(const qmsg *q, baton_message *bm)
{
    memset(bm, 0, sizeof *bm);
    bm->size = sizeof *bm;
    bm->key = q->key;
    bm->recipient = q->recipient;
    bm->profile_id = q->profile_id;
    bm->nparts = q->nparts;
    bm->part_names = (const char *const *)q->names;
    bm->part_values = (const char *const *)q->values;
    bm->row = q->row;
    bm->time = q->time;
    bm->attempt = q->attempts;
}

/* ------------------------------------------------------------------ */
/* Queue and retry heap (under d->mu)                                  */
/* ------------------------------------------------------------------ */

void queue_push(dispatcher *d, qmsg *m)
{
    d->nqueued++;
    m->next = NULL;
    if (d->tail)
        d->tail->next = m;
    else
        d->head = m;
    d->tail = m;
}

void queue_retry(dispatcher *d, qmsg *m)
{
    if (d->nheap == d->heapcap) {
        d->heapcap = d->heapcap ? d->heapcap * 2 : 64;
        d->heap = xrealloc(d->heap, d->heapcap * sizeof *d->heap);
    }
    size_t i = d->nheap++;
    while (i && d->heap[(i - 1) / 2]->due_ms > m->due_ms) {
        d->heap[i] = d->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    d->heap[i] = m;
}

static qmsg *heap_pop(dispatcher *d)
{
    qmsg *top = d->heap[0], *last = d->heap[--d->nheap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= d->nheap)
            break;
        if (c + 1 < d->nheap && d->heap[c + 1]->due_ms < d->heap[c]->due_ms)
            c++;
        if (d->heap[c]->due_ms >= last->due_ms)
            break;
        d->heap[i] = d->heap[c];
        i = c;
    }
    if (d->nheap)
        d->heap[i] = last;
    return top;
}

/* Due retries go to the front: they have waited already. */
void queue_release_due(dispatcher *d, int64_t now, int all)
{
    while (d->nheap && (all || d->heap[0]->due_ms <= now)) {
        qmsg *m = heap_pop(d);
        m->enq_ms = 0; /* it has waited */
        d->nqueued++;
        m->next = d->head;
        d->head = m;
        if (!d->tail)
            d->tail = m;
    }
}

/* Messages left memory: wake submitters waiting for room, the pump if it
 * found none, and flushers when nothing is left. */
void queue_room_freed(dispatcher *d)
{
    pthread_cond_broadcast(&d->room);
    if (d->pump_starved) {
        d->pump_starved = 0;
        pthread_cond_signal(&d->pump_cv);
    }
    if (d->pending == 0)
        pthread_cond_broadcast(&d->idle);
}

/* Under d->mu: the first max messages of the queue, out of it. */
size_t queue_take(dispatcher *d, qmsg **batch, size_t max)
{
    size_t n = 0;
    while (d->head && n < max) {
        batch[n++] = d->head;
        d->head = d->head->next;
        d->nqueued--;
    }
    if (!d->head) {
        d->tail = NULL;
        d->kicked = 0;
    } else {
        pthread_cond_signal(&d->work);
    }
    return n;
}

/* Under d->mu: the queue is short of a batch of max and its oldest has
 * waited less than LINGER_MS, with no flush, close or kick hurrying it. */
int queue_lingering(const dispatcher *d, size_t max, int64_t now)
{
    return d->head && d->nqueued < max && d->head->enq_ms + LINGER_MS > now && !d->flushing &&
           !d->closing && !d->kicked;
}
