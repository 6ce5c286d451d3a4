#include "journey/timers.h"

#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

void jtimers_init(jtimers *h)
{
    memset(h, 0, sizeof *h);
}

void jtimers_free(jtimers *h)
{
    free(h->v);
    free(h->keys);
    free(h->slots);
    memset(h, 0, sizeof *h);
}

/* ---- the index: instance id -> heap slot ---------------------------- */

static size_t bucket_of(const jtimers *h, int64_t inst)
{
    uint64_t x = (uint64_t)inst * 0x9E3779B97F4A7C15ull; /* Fibonacci hashing */
    return (size_t)(x >> 32) & (h->nbuckets - 1);
}

/* The bucket holding inst, or the empty one where it would go. */
static size_t find(const jtimers *h, int64_t inst)
{
    size_t b = bucket_of(h, inst);
    while (h->keys[b] && h->keys[b] != inst)
        b = (b + 1) & (h->nbuckets - 1);
    return b;
}

static void index_put(jtimers *h, int64_t inst, size_t slot);

static void index_grow(jtimers *h, size_t want)
{
    int64_t *keys = h->keys;
    uint32_t *slots = h->slots;
    size_t old = h->nbuckets;
    h->nbuckets = want;
    h->keys = xcalloc(want, sizeof *h->keys);
    h->slots = xcalloc(want, sizeof *h->slots);
    for (size_t i = 0; i < old; i++)
        if (keys[i])
            index_put(h, keys[i], slots[i]);
    free(keys);
    free(slots);
}

static void index_put(jtimers *h, int64_t inst, size_t slot)
{
    size_t b = find(h, inst);
    h->keys[b] = inst;
    h->slots[b] = (uint32_t)slot;
}

/* Backward-shift deletion: no tombstones, probes stay short. */
static void index_del(jtimers *h, size_t b)
{
    size_t mask = h->nbuckets - 1;
    h->keys[b] = 0;
    for (size_t i = (b + 1) & mask; h->keys[i]; i = (i + 1) & mask) {
        size_t home = bucket_of(h, h->keys[i]);
        /* move it back into the hole if the hole lies on its probe path */
        if (((i - home) & mask) >= ((i - b) & mask)) {
            h->keys[b] = h->keys[i];
            h->slots[b] = h->slots[i];
            h->keys[i] = 0;
            b = i;
        }
    }
}

/* ---- the heap -------------------------------------------------------- */

/* Ties break on the instance id so replays are deterministic. */
static int before(const jtimer *a, const jtimer *b)
{
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->inst < b->inst);
}

static void place(jtimers *h, size_t i, jtimer t)
{
    h->v[i] = t;
    h->slots[find(h, t.inst)] = (uint32_t)i;
}

static void sift_up(jtimers *h, size_t i, jtimer t)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(&t, &h->v[parent]))
            break;
        place(h, i, h->v[parent]);
        i = parent;
    }
    place(h, i, t);
}

static void sift_down(jtimers *h, size_t i, jtimer t)
{
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && before(&h->v[c + 1], &h->v[c]))
            c++;
        if (!before(&h->v[c], &t))
            break;
        place(h, i, h->v[c]);
        i = c;
    }
    place(h, i, t);
}

/* Take slot i out: the last timer fills the hole and finds its place. */
static void take(jtimers *h, size_t i)
{
    index_del(h, find(h, h->v[i].inst));
    jtimer last = h->v[--h->n];
    if (i == h->n)
        return;
    if (i > 0 && before(&last, &h->v[(i - 1) / 2]))
        sift_up(h, i, last);
    else
        sift_down(h, i, last);
}

void jtimers_set(jtimers *h, int64_t due_ms, int64_t inst)
{
    jtimer t = {due_ms, inst};
    if (h->nbuckets) {
        size_t b = find(h, inst);
        if (h->keys[b]) { /* moved */
            size_t i = h->slots[b];
            if (before(&t, &h->v[i]))
                sift_up(h, i, t);
            else
                sift_down(h, i, t);
            return;
        }
    }
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap + h->cap / 2 : 1024;
        h->v = xrealloc(h->v, h->cap * sizeof *h->v);
    }
    if ((h->n + 1) * 2 > h->nbuckets) /* load at most 1/2 */
        index_grow(h, h->nbuckets ? h->nbuckets * 2 : 2048);
    index_put(h, inst, h->n);
    sift_up(h, h->n++, t);
}

void jtimers_remove(jtimers *h, int64_t inst)
{
    if (!h->nbuckets)
        return;
    size_t b = find(h, inst);
    if (h->keys[b])
        take(h, h->slots[b]);
}

int jtimers_peek(const jtimers *h, jtimer *out)
{
    if (!h->n)
        return 0;
    *out = h->v[0];
    return 1;
}

int jtimers_pop_due(jtimers *h, int64_t now_ms, jtimer *out)
{
    if (!h->n || h->v[0].due_ms > now_ms)
        return 0;
    *out = h->v[0];
    take(h, 0);
    return 1;
}

void jtimers_trim(jtimers *h)
{
    if (h->cap > 4096 && h->n < h->cap / 4) {
        h->cap = h->n < 1024 ? 1024 : h->n * 2;
        h->v = xrealloc(h->v, h->cap * sizeof *h->v);
    }
    if (h->nbuckets > 8192 && h->n * 8 < h->nbuckets)
        index_grow(h, h->nbuckets / 4);
}
