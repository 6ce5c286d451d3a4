/* event_file with a test event sink in place of the journey runner: every
 * line of the file is one event, byte for byte (blank lines skipped), the
 * burst ends with event_flush; a sink that is full makes the source wait
 * and lose nothing, in order; with follow, appended lines are read, and a
 * line still being written is read whole once its newline arrives; a file
 * that does not exist yet is waited for; a refused event stops the
 * source. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugin/plugin_host.h"
#include "support/fs.h"
#include "support/instance.h"

const baton_plugin *baton_plugin_entry(void);

#define MAXEV 256
static struct {
    pthread_mutex_t mu;
    char *ev[MAXEV];
    size_t len[MAXEV];
    int n, flushes, full_left, refuse, acked;
} sink = {.mu = PTHREAD_MUTEX_INITIALIZER};
static char *dir;

static int sink_submit(void *ud, instance *from, const char *json, size_t len, void (*ack)(void *),
                       void *ack_ctx)
{
    pthread_mutex_lock(&sink.mu);
    int rc = 0;
    if (sink.refuse) {
        rc = -1;
    } else if (sink.full_left > 0) {
        sink.full_left--;
        rc = 1;
    } else if (sink.n < MAXEV) {
        sink.ev[sink.n] = malloc(len + 1);
        memcpy(sink.ev[sink.n], json, len);
        sink.ev[sink.n][len] = '\0';
        sink.len[sink.n++] = len;
    }
    pthread_mutex_unlock(&sink.mu);
    if (rc == 0) {
        ack(ack_ctx);
        pthread_mutex_lock(&sink.mu);
        sink.acked++;
        pthread_mutex_unlock(&sink.mu);
    }
    return rc;
}

static void sink_flush(void *ud)
{
    pthread_mutex_lock(&sink.mu);
    sink.flushes++;
    pthread_mutex_unlock(&sink.mu);
}

static int count(void)
{
    pthread_mutex_lock(&sink.mu);
    int n = sink.n;
    pthread_mutex_unlock(&sink.mu);
    return n;
}

/* Waits up to 5 s for at least n events; the count seen. */
static int wait_events(int n)
{
    for (int i = 0; i < 500 && count() < n; i++)
        usleep(10000);
    return count();
}

static int setup(void **state)
{
    dir = tmpdir_make("event-file");
    pthread_mutex_lock(&sink.mu);
    for (int i = 0; i < sink.n; i++)
        free(sink.ev[i]);
    sink.n = sink.flushes = sink.full_left = sink.refuse = sink.acked = 0;
    pthread_mutex_unlock(&sink.mu);
    plugin_host_set_event_sink(sink_submit, sink_flush, NULL);
    return 0;
}

static int teardown(void **state)
{
    plugin_host_set_event_sink(NULL, NULL, NULL);
    tmpdir_remove(dir);
    free(dir);
    return 0;
}

static instance *source(const char *file, int follow)
{
    char settings[2048], err[512] = "";
    snprintf(settings, sizeof settings, "path = \"%s/%s\"; follow = %s; poll = \"10ms\";", dir,
             file, follow ? "true" : "false");
    instance *inst =
        test_instance_new(baton_plugin_entry(), "events", "file", settings, 1, err, sizeof err);
    if (!inst)
        fail_msg("event_file: %s", err);
    return inst;
}

static uint64_t counter(instance *inst, const char *name)
{
    for (size_t i = 0; i < inst->ncounters; i++)
        if (!strcmp(inst->counters[i]->name, name))
            return inst->counters[i]->value;
    return 0;
}

static void append(const char *file, const char *text, size_t len)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

static void every_line_once_byte_for_byte(void **state)
{
    /* a NUL inside a line reaches the host with the line's whole length */
    static const char text[] =
        "{\"id\":\"a\"}\n\n   \n{\"id\":\"b\",\"x\":\"\0z\"}\r\n{\"id\":\"c\"}";
    append("ev.jsonl", text, sizeof text - 1);
    instance *inst = source("ev.jsonl", 0);
    assert_int_equal(wait_events(3), 3);
    usleep(50000);
    test_instance_free(inst);
    assert_int_equal(count(), 3);
    assert_string_equal(sink.ev[0], "{\"id\":\"a\"}");
    assert_int_equal(sink.len[1], strlen("{\"id\":\"b\",\"x\":\"") + 4);
    assert_memory_equal(sink.ev[1], "{\"id\":\"b\",\"x\":\"\0z\"}", sink.len[1]);
    assert_string_equal(sink.ev[2], "{\"id\":\"c\"}"); /* the last line needs no newline */
    assert_true(sink.flushes >= 1);                    /* the burst ended with a flush */
    assert_int_equal(sink.acked, 3);
}

static void a_full_host_loses_nothing(void **state)
{
    char text[4096] = "";
    for (int i = 0; i < 50; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text), "{\"id\":\"e%d\"}\n", i);
    append("ev.jsonl", text, strlen(text));
    pthread_mutex_lock(&sink.mu);
    sink.full_left = 30; /* "full, retry later" thirty times */
    pthread_mutex_unlock(&sink.mu);
    instance *inst = source("ev.jsonl", 0);
    assert_int_equal(wait_events(50), 50);
    test_instance_free(inst);
    for (int i = 0; i < 50; i++) {
        char want[32];
        snprintf(want, sizeof want, "{\"id\":\"e%d\"}", i);
        assert_string_equal(sink.ev[i], want);
    }
}

static void follow_reads_appended_lines_whole(void **state)
{
    instance *inst = source("later.jsonl", 1); /* not there yet: waited for */
    usleep(50000);
    assert_int_equal(count(), 0);
    append("later.jsonl", "{\"id\":\"1\"}\n", 11);
    assert_int_equal(wait_events(1), 1);
    append("later.jsonl", "{\"id\":\"2\",", 10); /* the writer is mid-line */
    usleep(100000);
    assert_int_equal(count(), 1);
    append("later.jsonl", "\"k\":1}\n", 7);
    assert_int_equal(wait_events(2), 2);
    assert_string_equal(sink.ev[1], "{\"id\":\"2\",\"k\":1}");
    assert_int_equal(counter(inst, "lines"), 2);
    assert_int_equal(counter(inst, "acked"), 2);
    test_instance_free(inst);
}

static void a_refused_event_stops_the_source(void **state)
{
    append("ev.jsonl", "{\"id\":\"r1\"}\n{\"id\":\"r2\"}\n", 24);
    pthread_mutex_lock(&sink.mu);
    sink.refuse = 1;
    pthread_mutex_unlock(&sink.mu);
    instance *inst = source("ev.jsonl", 1);
    usleep(100000);
    assert_int_equal(counter(inst, "lines"), 1); /* it stopped at the first */
    assert_int_equal(count(), 0);
    test_instance_free(inst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(every_line_once_byte_for_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(a_full_host_loses_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(follow_reads_appended_lines_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(a_refused_event_stops_the_source, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
