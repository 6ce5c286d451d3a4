/* journey/timers — the in-memory heap of pending wake-ups (waits and
 * wait_event timeouts), at most one per waiting instance, rebuilt from
 * the state store at start. An instance that moves on before its timer
 * is due takes the timer out at once (an index from instance to heap
 * slot), so the heap holds exactly the waiting instances — never the
 * stale timeouts of every instance that entered within the longest
 * timeout. About 40–60 bytes per waiting instance. */
#ifndef BATON_JOURNEY_TIMERS_H
#define BATON_JOURNEY_TIMERS_H

#include <stddef.h>
#include <stdint.h>

typedef struct jtimer {
    int64_t due_ms;
    int64_t inst; /* journey instance id, > 0 */
} jtimer;

typedef struct jtimers {
    jtimer *v; /* the heap */
    size_t n, cap;
    /* instance id -> heap slot: open addressing, linear probing */
    int64_t *keys; /* 0: empty */
    uint32_t *slots;
    size_t nbuckets; /* a power of two, or 0 */
} jtimers;

void jtimers_init(jtimers *h);
void jtimers_free(jtimers *h);
/* The instance's wake-up is at due_ms: added, or moved if it had one. */
void jtimers_set(jtimers *h, int64_t due_ms, int64_t inst);
/* The instance no longer waits (a no-op if it had no timer). */
void jtimers_remove(jtimers *h, int64_t inst);
/* The earliest timer, or 0 when empty. */
int jtimers_peek(const jtimers *h, jtimer *out);
/* Pop the earliest timer if it is due at now_ms. 1 popped, 0 not. */
int jtimers_pop_due(jtimers *h, int64_t now_ms, jtimer *out);
/* Give back memory when the heap has shrunk a lot. */
void jtimers_trim(jtimers *h);

#endif
