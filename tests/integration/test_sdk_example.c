/* The SDK as a vendor meets it: `make install DESTDIR=...`, then the
 * example plugin built out of tree with nothing but
 * PKG_CONFIG_PATH=<install>/lib/pkgconfig, then loaded by the installed
 * baton and run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/app.h"
#include "base/buf.h"
#include "base/record.h"
#include "support/fs.h"

static char *tmp;

static int sh(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd;
    if (vasprintf(&cmd, fmt, ap) < 0)
        abort();
    va_end(ap);
    char *out = NULL, *err = NULL;
    int rc = run_capture(cmd, &out, &err);
    if (rc != 0)
        fprintf(stderr, "command failed (%d): %s\n%s%s", rc, cmd, out ? out : "", err ? err : "");
    free(cmd);
    free(out);
    free(err);
    return rc;
}

static void test_install_build_load_run(void **st)
{
    const char *src = getenv("BATON_SRC");
    const char *mf = getenv("BATON_MAKEFLAGS");
    assert_non_null(src);
    tmp = tmpdir_make("sdk");
    assert_int_equal(
        sh("make -s -C %s install DESTDIR=%s/root PREFIX=/opt/baton %s", src, tmp, mf ? mf : ""),
        0);
    /* out of tree: a copy of the example, away from baton's sources */
    assert_int_equal(
        sh("mkdir -p %s/vendor && cp %s/sdk/examples/action_jsonl/* %s/vendor/", tmp, src, tmp), 0);
    assert_int_equal(sh("cd %s/vendor && env -u CPATH -u C_INCLUDE_PATH "
                        "PKG_CONFIG_PATH=%s/root/opt/baton/lib/pkgconfig make",
                        tmp, tmp),
                     0);
    /* the installed SDK says its ABI, as the header does */
    char *out = NULL;
    char *cmd;
    assert_true(
        asprintf(&cmd,
                 "export PKG_CONFIG_PATH=%s/root/opt/baton/lib/pkgconfig; echo $(pkg-config "
                 "--variable=abi_major baton-sdk) $(pkg-config --variable=abi_minor "
                 "baton-sdk)",
                 tmp) > 0);
    assert_int_equal(run_capture(cmd, &out, NULL), 0);
    char want[32];
    snprintf(want, sizeof want, "%d %d\n", BATON_ABI_MAJOR, BATON_ABI_MINOR);
    assert_string_equal(out, want);
    free(out);
    free(cmd);
    /* exactly one exported symbol */
    assert_true(asprintf(&cmd, "nm -D --defined-only %s/vendor/action_jsonl.so | awk '{print $3}'",
                         tmp) > 0);
    assert_int_equal(run_capture(cmd, &out, NULL), 0);
    assert_string_equal(out, "baton_plugin_entry\n");
    free(out);
    free(cmd);

    /* the installed baton lists and checks it */
    char *cfg_text;
    assert_true(asprintf(&cfg_text,
                         "baton: { data_dir = \"var\"; plugin_path = [ \"vendor\" ]; };\n"
                         "actions: { audit: { plugin = \"action_jsonl\"; path = \"audit.jsonl\";\n"
                         "  fields = [ \"profile.tier\", \"event.total\" ]; }; };\n") > 0);
    char *cfg = file_write(tmp, "baton.cfg", cfg_text);
    free(cfg_text);
    assert_true(asprintf(&cmd, "%s/root/opt/baton/bin/baton -c %s plugins --json", tmp, cfg) > 0);
    assert_int_equal(run_capture(cmd, &out, NULL), 0);
    assert_non_null(strstr(out, "\"name\": \"action_jsonl\""));
    assert_non_null(strstr(out, "\"kind\": \"action\""));
    assert_non_null(strstr(out, "\"abi\": \"1.5\""));
    assert_non_null(strstr(out, "\"actions.audit\""));
    free(out);
    free(cmd);
    assert_true(asprintf(&cmd, "%s/root/opt/baton/bin/baton -c %s check", tmp, cfg) > 0);
    assert_int_equal(run_capture(cmd, &out, NULL), 0);
    free(out);
    free(cmd);

    /* load it through the host and run it */
    diag d;
    diag_init(&d);
    app a;
    assert_int_equal(app_open(&a, cfg, APP_INIT, &d), 0);
    assert_int_equal(app_start(&a, &d), 0);
    instance *inst = app_find(&a, "actions", "audit");
    assert_non_null(inst);
    record *ctx = record_new();
    record_set_string(ctx, "profile.tier", "gold");
    baton_value total = {.type = BATON_T_FLOAT, .v.f = 59.9};
    record_set(ctx, "event.total", &total);
    baton_action_call call = {
        .size = sizeof call, .key = "j1:n1", .profile_id = "p42", .context = ctx};
    buf resp;
    buf_init(&resp);
    char reason[256];
    assert_int_equal(
        instance_action(inst)->invoke(inst->state, &call, &resp, reason, sizeof reason), BATON_OK);
    assert_string_equal(resp.data, "{\"line\": 1}");
    buf_reset(&resp);
    call.key = "j1:n2\"quoted\"";
    assert_int_equal(
        instance_action(inst)->invoke(inst->state, &call, &resp, reason, sizeof reason), BATON_OK);
    assert_string_equal(resp.data, "{\"line\": 2}");
    buf_free(&resp);
    record_free(ctx);
    app_close(&a);
    diag_free(&d);

    char *audit;
    assert_true(asprintf(&audit, "%s/audit.jsonl", tmp) > 0);
    char *lines = file_read(audit, NULL);
    assert_non_null(lines);
    assert_string_equal(lines,
                        "{\"key\": \"j1:n1\", \"profile\": \"p42\", \"fields\": {\"profile.tier\": "
                        "\"gold\", \"event.total\": 59.899999999999999}}\n"
                        "{\"key\": \"j1:n2\\\"quoted\\\"\", \"profile\": \"p42\", \"fields\": "
                        "{\"profile.tier\": \"gold\", \"event.total\": 59.899999999999999}}\n");
    free(lines);
    free(audit);
    free(cfg);
    tmpdir_remove(tmp);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_install_build_load_run)};
    return cmocka_run_group_tests_name("sdk_example", tests, NULL, NULL);
}
