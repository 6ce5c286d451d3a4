/* The loader: what it refuses, with which words, and what it must keep
 * loading. Fixtures are in tests/fixtures/plugins/. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "delivery/dispatch.h"
#include "hostapi/hostapi.h"
#include "plugin/plugin_host.h"
#include "support/fs.h"

static char *fixtures;
static plugin_registry reg;
static config_t lc;

static int setup(void **st)
{
    const char *f = getenv("BATON_FIXTURES");
    fixtures = strdup(f ? f : "build/tests/fixtures");
    memset(&reg, 0, sizeof reg);
    config_init(&lc);
    reg.path = &fixtures;
    reg.npath = 1;
    return 0;
}

static int teardown(void **st)
{
    plugin_registry_free(&reg);
    config_destroy(&lc);
    free(fixtures);
    return 0;
}

/* A conf_use for section.name whose group is parsed from text. */
static conf_use use_of(const char *section, const char *name, baton_kind kind, const char *text)
{
    config_destroy(&lc);
    config_init(&lc);
    assert_true(config_read_string(&lc, text));
    static char where[128];
    snprintf(where, sizeof where, "%s.%s", section, name);
    conf_use u = {.section = section,
                  .name = (char *)name,
                  .where = where,
                  .kind = kind,
                  .enabled = 1,
                  .group = config_lookup(&lc, name)};
    assert_non_null(u.group);
    return u;
}

static void expect_refusal(const char *name, const char *tail)
{
    char err[1024] = "";
    plugin *p = plugin_load(&reg, name, err, sizeof err);
    assert_null(p);
    char want[1200];
    snprintf(want, sizeof want, "%s/%s.so: %s", fixtures, name, tail);
    assert_string_equal(err, want);
}

static void test_abi_check(void **st)
{
    char err[512];
    assert_int_equal(plugin_abi_check(BATON_ABI_MAJOR, 0, err, sizeof err), 0);
    assert_int_equal(plugin_abi_check(BATON_ABI_MAJOR, BATON_ABI_MINOR, err, sizeof err), 0);
    assert_int_equal(plugin_abi_check(2, 0, err, sizeof err), -1);
    assert_string_equal(err, "built for baton ABI 2.0, but this host speaks ABI 1.5; rebuild it "
                             "against baton-sdk 1.x");
    assert_int_equal(plugin_abi_check(0, 9, err, sizeof err), -1);
    assert_int_equal(plugin_abi_check(1, BATON_ABI_MINOR + 1, err, sizeof err), -1);
    assert_non_null(strstr(err, "newer than this host's ABI 1.5"));
}

static void test_valid_plugin_loads(void **st)
{
    char err[1024] = "";
    plugin *p = plugin_load(&reg, "fx_action", err, sizeof err);
    assert_non_null(p);
    assert_string_equal(err, "");
    assert_string_equal(p->name, "fx_action");
    assert_string_equal(p->desc.version, "1.2.3");
    assert_int_equal(p->desc.kind, BATON_KIND_ACTION);
    /* cached: the same object the second time */
    assert_ptr_equal(plugin_load(&reg, "fx_action", err, sizeof err), p);
}

static void test_refusals(void **st)
{
    expect_refusal("fx_no_entry", "not a baton plugin (no baton_plugin_entry symbol)");
    expect_refusal("fx_wrong_major", "built for baton ABI 2.0, but this host speaks ABI 1.5; "
                                     "rebuild it against baton-sdk 1.x");
    expect_refusal("fx_newer_minor", "built for baton ABI 1.6, newer than this host's ABI 1.5; "
                                     "upgrade baton or rebuild the plugin against baton-sdk 1.5");
    expect_refusal("fx_missing_callback",
                   "missing callback 'ops.deliver', required of channel plugins");
    expect_refusal("fx_ops_unsized", "channel ops declare a size of 0 bytes, too small for ABI "
                                     "1.x (at least 48)");
    expect_refusal("fx_bad_keys", "config key 'mode' is an enum with no choices");
    expect_refusal("fx_key_clash", "config key 'rate' is declared as string, but baton reads it "
                                   "as float for every channel");
}

static void test_not_found_suggests(void **st)
{
    char err[1024];
    assert_null(plugin_load(&reg, "fx_actoin", err, sizeof err));
    char want[1200];
    snprintf(want, sizeof want,
             "plugin 'fx_actoin' not found (looked for fx_actoin.so in: %s); did you mean "
             "'fx_action'?",
             fixtures);
    assert_string_equal(err, want);
}

static void test_not_a_regular_file(void **st)
{
    char *dir = tmpdir_make("loader");
    char *sub = malloc(strlen(dir) + 16);
    sprintf(sub, "%s/evil.so", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    char err[1024];
    assert_null(plugin_load(&reg, sub, err, sizeof err));
    char want[1200];
    snprintf(want, sizeof want, "%s: not a regular file; refusing to load it", sub);
    assert_string_equal(err, want);
    /* a file that is not a shared object */
    char *junk = file_write(dir, "junk.so", "not an ELF file\n");
    assert_null(plugin_load(&reg, junk, err, sizeof err));
    assert_non_null(strstr(err, "cannot load:"));
    free(junk);
    free(sub);
    tmpdir_remove(dir);
    free(dir);
}

/* A channel built for 1.4, before BATON_UNCERTAIN: it loads, its messages
 * are delivered through the dispatcher as before, and a status no SDK
 * defines is retried (baton.h), then failed with the channel's words. */
static void test_channel_of_1_4_still_delivers(void **st)
{
    char err[1024] = "";
    plugin *p = plugin_load(&reg, "fx_channel_v14", err, sizeof err);
    assert_non_null(p);
    assert_int_equal(p->desc.abi_minor, 4);
    conf_use use = use_of("channels", "c", BATON_KIND_CHANNEL,
                          "c: { plugin = \"fx_channel_v14\"; retries = 1; retry_backoff = "
                          "\"5ms\"; };");
    diag d;
    diag_init(&d);
    instance *inst = instance_create(p, &use, ".", &d);
    assert_non_null(inst);
    assert_int_equal(instance_init(inst), 0);
    assert_int_equal(instance_start(inst), 0);
    char *dir = tmpdir_make("v14");
    store s;
    assert_int_equal(store_open(&s, dir, err, sizeof err), 0);
    dispatcher *dp = dispatch_open(inst, &s, &(dispatch_opts){0}, err, sizeof err);
    assert_non_null(dp);
    const char *names[] = {"text"}, *values[] = {"Hello"};
    dispatch_msg m = {.key = "v14/ok",
                      .recipient = "+15550100",
                      .nparts = 1,
                      .part_names = names,
                      .part_values = values};
    assert_int_equal(dispatch_submit(dp, &m, -1, NULL, 0), DISPATCH_ACCEPTED);
    m.key = "v14/odd";
    assert_int_equal(dispatch_submit(dp, &m, -1, NULL, 0), DISPATCH_ACCEPTED);
    assert_int_equal(dispatch_flush(dp, 20000), 0);
    dispatch_log_row row;
    assert_int_equal(dispatch_log_get(&s, "v14/ok", &row), 1);
    assert_int_equal(row.status, DISPATCH_SENT);
    assert_string_equal(row.provider_id, "v14-0");
    assert_int_equal(dispatch_log_get(&s, "v14/odd", &row), 1);
    assert_int_equal(row.status, DISPATCH_FAILED);
    assert_int_equal(row.attempts, 2);
    assert_string_equal(row.reason, "gave up after 2 attempts: the channel answered an unknown "
                                    "status 9: odd answer");
    dispatch_close(dp, 0, 0);
    store_close(&s);
    instance_stop(inst);
    instance_destroy(inst);
    diag_free(&d);
    tmpdir_remove(dir);
    free(dir);
}

static void test_old_minor_still_loads_and_runs(void **st)
{
    char err[1024] = "";
    plugin *p = plugin_load(&reg, "fx_old_minor", err, sizeof err);
    assert_non_null(p);
    /* members past its short descriptor read as absent */
    assert_null(p->desc.activities);
    conf_use use =
        use_of("actions", "old", BATON_KIND_ACTION, "old: { plugin = \"fx_old_minor\"; };");
    diag d;
    diag_init(&d);
    instance *inst = instance_create(p, &use, ".", &d);
    assert_non_null(inst);
    assert_int_equal(instance_init(inst), 0);
    buf response;
    buf_init(&response);
    char reason[128];
    baton_action_call call = {.size = sizeof call, .key = "k1", .profile_id = "p1"};
    assert_int_equal(
        instance_action(inst)->invoke(inst->state, &call, &response, reason, sizeof reason),
        BATON_OK);
    assert_string_equal(response.data, "old plugin ran");
    buf_free(&response);
    instance_destroy(inst);
    diag_free(&d);
}

static void test_lifecycle_never_unloads_running(void **st)
{
    char err[1024];
    plugin *p = plugin_load(&reg, "fx_action", err, sizeof err);
    assert_non_null(p);
    conf_use use = use_of("actions", "g", BATON_KIND_ACTION,
                          "g: { plugin = \"fx_action\"; url = \"http://x\"; };");
    diag d;
    diag_init(&d);
    instance *inst = instance_create(p, &use, ".", &d);
    assert_non_null(inst);
    assert_int_equal(instance_init(inst), 0);
    assert_int_equal(instance_start(inst), 0);
    assert_int_equal(p->running, 1);
    plugin_registry_free(&reg); /* must keep fx_action mapped */
    int found = 0;
    for (plugin *q = reg.head; q; q = q->next)
        found |= q == p;
    assert_true(found);
    instance_stop(inst);
    assert_int_equal(p->running, 0);
    instance_destroy(inst);
    assert_int_equal(p->live, 0);
    diag_free(&d);
}

/* Several threads registering counters: one object per name, none lost. */
static instance *counting;
static void *register_counters(void *arg)
{
    const baton_host *h = plugin_host_api();
    for (int i = 0; i < 200; i++) {
        char name[32];
        snprintf(name, sizeof name, "c%d", i % 50);
        h->counter_add(h->counter(counting, name), 1);
    }
    return NULL;
}

static void test_counters_threads(void **st)
{
    char err[1024];
    plugin *p = plugin_load(&reg, "fx_action", err, sizeof err);
    conf_use use =
        use_of("actions", "c", BATON_KIND_ACTION, "c: { plugin = \"fx_action\"; url = \"u\"; };");
    diag d;
    diag_init(&d);
    counting = instance_create(p, &use, ".", &d);
    assert_non_null(counting);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, register_counters, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(counting->ncounters, 50);
    for (size_t i = 0; i < counting->ncounters; i++)
        assert_int_equal(counting->counters[i]->value, 16);
    instance_destroy(counting);
    diag_free(&d);
}

/* A plugin named where another kind is needed is refused with both kinds;
 * the same plugin where its own kind is needed gets its host keys bound. */
static void test_kind_mismatch_and_bound_settings(void **st)
{
    char err[1024];
    plugin *p = plugin_load(&reg, "fx_channel", err, sizeof err);
    assert_non_null(p);
    diag d;
    diag_init(&d);
    conf_use use = use_of("actions", "a", BATON_KIND_ACTION, "a: { plugin = \"fx_channel\"; };");
    assert_null(instance_create(p, &use, ".", &d));
    assert_int_equal(d.errors, 1);
    assert_string_equal(d.v[0].msg, "actions.a: plugin 'fx_channel' is a channel plugin; actions "
                                    "needs an action plugin");
    diag_free(&d);
    diag_init(&d);
    use = use_of("channels", "c", BATON_KIND_CHANNEL,
                 "c: { plugin = \"fx_channel\"; rate = 2.5; batch = 7; retry_backoff = \"3s\"; "
                 "address = \"email\"; };");
    instance *inst = instance_create(p, &use, ".", &d);
    assert_non_null(inst);
    assert_true(inst->host.channel.rate == 2.5);
    assert_int_equal(inst->host.channel.batch, 7);
    assert_int_equal(inst->host.channel.connections, 1); /* the default */
    assert_int_equal(inst->host.channel.retry_backoff_ms, 3000);
    assert_string_equal(inst->host.channel.address, "email");
    assert_null(inst->host.channel.consent);
    instance_destroy(inst);
    diag_free(&d);
}

/* SDK 1.2: the host's JSON string writer is jansson's escaping byte for
 * byte, base64 is RFC 4648's, and an enum key reads as its index. */
static void test_host_encoders(void **st)
{
    const baton_host *h = plugin_host_api();
    assert_true(h->abi_minor >= 2);
    static const char *const samples[] = {"",           "plain",        "q\"uote\\back",
                                          "\b\f\n\r\t", "\x01\x1f ctl", "caf\xc3\xa9 \xe2\x82\xac",
                                          "a/b<>&'"};
    for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) {
        baton_buf *b = h->buf_new();
        h->json_string(b, samples[i], strlen(samples[i]));
        json_t *j = json_string(samples[i]);
        char *want = json_dumps(j, JSON_ENCODE_ANY);
        assert_string_equal(h->buf_data(b, NULL), want);
        free(want);
        json_decref(j);
        h->buf_free(b);
    }
    /* bytes after a NUL are written too: lengths, not strings */
    baton_buf *b = h->buf_new();
    h->json_string(b, "a\0b", 3);
    assert_string_equal(h->buf_data(b, NULL), "\"a\\u0000b\"");
    h->buf_reset(b);
    static const char *const rfc4648[][2] = {{"", ""},
                                             {"f", "Zg=="},
                                             {"fo", "Zm8="},
                                             {"foo", "Zm9v"},
                                             {"foob", "Zm9vYg=="},
                                             {"fooba", "Zm9vYmE="},
                                             {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof rfc4648 / sizeof *rfc4648; i++) {
        h->buf_reset(b);
        h->base64(b, rfc4648[i][0], strlen(rfc4648[i][0]));
        assert_string_equal(h->buf_data(b, NULL), rfc4648[i][1]);
    }
    h->buf_free(b);

    char err[1024];
    plugin *p = plugin_load(&reg, "fx_action", err, sizeof err);
    assert_non_null(p);
    diag d;
    diag_init(&d);
    conf_use use = use_of("actions", "e", BATON_KIND_ACTION,
                          "e: { plugin = \"fx_action\"; url = \"u\"; mode = \"safe\"; };");
    instance *inst = instance_create(p, &use, ".", &d);
    assert_non_null(inst);
    assert_int_equal(h->config_enum(inst, "mode"), 1);
    assert_int_equal(h->config_enum(inst, "url"), -1); /* not an enum */
    assert_int_equal(h->config_enum(inst, "no_such_key"), -1);
    instance_destroy(inst);
    diag_free(&d);
}

/* No sink yet: "full, retry later", never a crash or a drop. */
static int sink_calls;
static int sink(void *ud, instance *from, const char *json, size_t len, void (*ack)(void *),
                void *ctx)
{
    sink_calls += *(int *)ud;
    return 0;
}

static void test_event_sink(void **st)
{
    const baton_host *h = plugin_host_api();
    assert_int_equal(h->event_submit(NULL, "{}", 2, NULL, NULL), 1);
    int weight = 3;
    plugin_host_set_event_sink(sink, NULL, &weight);
    assert_int_equal(h->event_submit(NULL, "{}", 2, NULL, NULL), 0);
    assert_int_equal(sink_calls, 3);
    h->event_flush(NULL); /* no flush installed: nothing to do */
    plugin_host_set_event_sink(NULL, NULL, NULL);
    assert_int_equal(h->event_submit(NULL, "{}", 2, NULL, NULL), 1);
}

static void test_failing_init_message(void **st)
{
    char err[1024];
    plugin *p = plugin_load(&reg, "fx_failing_init", err, sizeof err);
    assert_non_null(p);
    conf_use use =
        use_of("actions", "f", BATON_KIND_ACTION, "f: { plugin = \"fx_failing_init\"; };");
    diag d;
    diag_init(&d);
    instance *inst = instance_create(p, &use, ".", &d);
    assert_non_null(inst);
    assert_int_equal(instance_init(inst), -1);
    assert_string_equal(inst->error, "cannot reach the license server at 127.0.0.1:9");
    assert_int_equal(p->live, 0);
    instance_destroy(inst);
    diag_free(&d);
}

/* Code anyone could have replaced is not loaded: a world-writable file or
 * folder, a symlink out of the plugin path. */
static void test_unsafe_files(void **st)
{
    char *dir = tmpdir_make("loader");
    char *a = NULL, *so = NULL, *link = NULL, *same = NULL, *cmd = NULL;
    assert_true(asprintf(&a, "%s/a", dir) > 0);
    assert_true(asprintf(&so, "%s/fx_channel.so", a) > 0);
    assert_true(asprintf(&link, "%s/fx_action.so", a) > 0);
    assert_true(asprintf(&same, "%s/fx_same.so", a) > 0);
    assert_int_equal(mkdir(a, 0755), 0);
    assert_true(asprintf(&cmd, "cp %s/fx_channel.so %s", fixtures, so) > 0);
    assert_int_equal(system(cmd), 0);
    plugin_registry r = {.path = &a, .npath = 1};
    char err[1024], want[8192];

    assert_int_equal(chmod(so, 0666), 0);
    assert_null(plugin_load(&r, "fx_channel", err, sizeof err));
    snprintf(want, sizeof want,
             "%s: the plugin file is world-writable (mode 0666): anyone on this machine could "
             "put their own code in baton; refusing to load it (chmod o-w)",
             so);
    assert_string_equal(err, want);
    assert_int_equal(chmod(so, 0644), 0);
    assert_int_equal(chmod(a, 0777), 0);
    assert_null(plugin_load(&r, "fx_channel", err, sizeof err));
    snprintf(want, sizeof want, "%s: the plugin's folder is world-writable (mode 0777)", a);
    assert_non_null(strstr(err, want));
    assert_int_equal(chmod(a, 0755), 0);

    /* a link out of the plugin path; one inside its own folder is fine */
    char target[1200];
    snprintf(target, sizeof target, "%s/fx_action.so", fixtures);
    assert_int_equal(symlink(target, link), 0);
    assert_null(plugin_load(&r, "fx_action", err, sizeof err));
    char real[4096];
    assert_non_null(realpath(target, real));
    snprintf(want, sizeof want,
             "%s: a symlink to %s, which is not in the plugin path; refusing to load it (put the "
             "file itself in a plugin_path folder)",
             link, real);
    assert_string_equal(err, want);
    assert_int_equal(symlink("fx_channel.so", same), 0);
    assert_int_equal(plugin_file_safe(&r, same, err, sizeof err), 0);

    assert_non_null(plugin_load(&r, "fx_channel", err, sizeof err));
    plugin_registry_free(&r);
    free(cmd);
    free(same);
    free(link);
    free(so);
    free(a);
    tmpdir_remove(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_abi_check),
        cmocka_unit_test(test_valid_plugin_loads),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_not_found_suggests),
        cmocka_unit_test(test_not_a_regular_file),
        cmocka_unit_test(test_unsafe_files),
        cmocka_unit_test(test_old_minor_still_loads_and_runs),
        cmocka_unit_test(test_channel_of_1_4_still_delivers),
        cmocka_unit_test(test_lifecycle_never_unloads_running),
        cmocka_unit_test(test_failing_init_message),
        cmocka_unit_test(test_counters_threads),
        cmocka_unit_test(test_host_encoders),
        cmocka_unit_test(test_kind_mismatch_and_bound_settings),
        cmocka_unit_test(test_event_sink),
    };
    return cmocka_run_group_tests_name("plugin_host", tests, setup, teardown);
}
