#include "journey/timers.h"

#include <stdlib.h>
#include <string.h>

#include "mem.h"

void jtimers_init(jtimers *h) { memset(h, 0, sizeof *h); }

void jtimers_free(jtimers *h)
{
    free(h->v);
    memset(h, 0, sizeof *h);
}

/* Ties break on the instance id so replays are deterministic. */
static int before(const jtimer *a, const jtimer *b)
{
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->inst < b->inst);
}

void jtimers_push(jtimers *h, int64_t due_ms, int64_t inst)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap + h->cap / 2 : 1024;
        h->v = xrealloc(h->v, h->cap * sizeof *h->v);
    }
    size_t i = h->n++;
    jtimer t = {due_ms, inst};
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(&t, &h->v[parent]))
            break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = t;
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
    jtimer last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && before(&h->v[c + 1], &h->v[c]))
            c++;
        if (!before(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n)
        h->v[i] = last;
    return 1;
}

void jtimers_trim(jtimers *h)
{
    if (h->cap > 4096 && h->n < h->cap / 4) {
        h->cap = h->n < 1024 ? 1024 : h->n * 2;
        h->v = xrealloc(h->v, h->cap * sizeof *h->v);
    }
}
