/* Bench helpers: CPU seconds of a process and of this process's threads
 * by name (baton-send, baton-journey...), from /proc (10 ms ticks). */
#ifndef BATON_TEST_CPU_H
#define BATON_TEST_CPU_H

#include <stddef.h>
#include <sys/types.h>

/* user + system CPU seconds of process pid (0 if it cannot be read) */
double cpu_of(pid_t pid);

typedef struct tcpu {
    char name[16];
    double s;
} tcpu;

/* CPU seconds of this process's threads, summed by name: at most max. */
size_t threads_cpu(tcpu *out, size_t max);
/* Prints "<phase>: CPU per <unit> by thread: name N us, ..." for what each
 * thread spent per unit since before (threads_cpu), busiest first. */
void print_threads(const char *phase, const char *unit, const tcpu *before, size_t nb, long count);

#endif
