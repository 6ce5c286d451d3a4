/* journey/timers — the in-memory heap of pending wake-ups (waits and
 * wait_event timeouts): 16 bytes per waiting instance, rebuilt from the
 * state store at start. The store is the truth: a popped timer whose
 * instance has moved on since is simply ignored by the engine. */
#ifndef BATON_JOURNEY_TIMERS_H
#define BATON_JOURNEY_TIMERS_H

#include <stddef.h>
#include <stdint.h>

typedef struct jtimer {
    int64_t due_ms;
    int64_t inst; /* journey instance id */
} jtimer;

typedef struct jtimers {
    jtimer *v;
    size_t n, cap;
} jtimers;

void jtimers_init(jtimers *h);
void jtimers_free(jtimers *h);
void jtimers_push(jtimers *h, int64_t due_ms, int64_t inst);
/* The earliest timer, or 0 when empty. */
int jtimers_peek(const jtimers *h, jtimer *out);
/* Pop the earliest timer if it is due at now_ms. 1 popped, 0 not. */
int jtimers_pop_due(jtimers *h, int64_t now_ms, jtimer *out);
/* Give back memory when the heap has shrunk a lot. */
void jtimers_trim(jtimers *h);

#endif
