/* Test helper: an in-process channel plugin (no .so) whose outcomes a test
 * scripts, and which records every delivery — for dispatch, campaign and
 * journey tests that need a channel without a server.
 *
 * Outcomes are chosen by the message's key:
 *   contains "perm"     ERROR "550 permanent (fake)"
 *   contains "retryN"   RETRY for the first N attempts, then OK (N = 1..9)
 *   contains "always"   RETRY every time
 *   contains "unsure"   UNCERTAIN "DATA: no reply after the final dot (fake)"
 *   contains "bogus"    the status 7, which no SDK defines
 *   otherwise           OK, provider id "fake-<key>"
 * fake_channel_set_down(1) makes every delivery RETRY ("connection refused
 * (fake)") until set_down(0); fake_channel_set_gate(1) blocks deliver()
 * until set_gate(0). format() writes "<recipient>|<part>=<value>|...". */
#ifndef BATON_TEST_FAKE_CHANNEL_H
#define BATON_TEST_FAKE_CHANNEL_H

#include <stddef.h>

#include "plugin/plugin_host.h"

/* An initialised and started instance named `name` of the fake channel,
 * its settings parsed from a libconfig group body such as
 * "rate = 0; connections = 2; retry_backoff = \"10ms\";" (plugin = is
 * added). NULL with err on a settings error. Free with fake_channel_free. */
instance *fake_channel_new(const char *name, const char *settings, char *err, size_t errlen);
void fake_channel_free(instance *inst);

/* Successful deliveries of key so far (0 if never), and in total;
 * deliveries of key tried, whatever their outcome. */
unsigned fake_channel_sent(const char *key);
unsigned fake_channel_attempts(const char *key);
unsigned long fake_channel_total(void);
/* deliver() calls (batches) so far, and the largest batch seen. */
unsigned long fake_channel_batches(void);
size_t fake_channel_max_batch(void);
void fake_channel_reset(void);
void fake_channel_set_down(int down);
void fake_channel_set_gate(int closed);
/* Waits up to timeout_ms for a deliver() call to block at the closed gate;
 * the number of messages in that call (0 if none came). */
size_t fake_channel_held(int timeout_ms);
/* gate_at >= 0: deliver() reports each message's progress (deliver_wire
 * before it, deliver_done after), and the closed gate blocks it just
 * after wiring message gate_at of a batch; -1 (after reset): the 1.3
 * behaviour (no reports, the gate before the batch). */
void fake_channel_set_progress(int gate_at);
/* Keep what each delivered message said (off after reset), and every
 * delivered message as "<key>\t<recipient>|<part>=<value>|...\n" (line
 * ends inside values as '/'), sorted by key: a new string. */
void fake_channel_record(int on);
char *fake_channel_messages(void);

#endif
