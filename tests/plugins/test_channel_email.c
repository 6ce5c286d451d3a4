/* channel_email: format() byte for byte (headers, RFC 2047, MIME,
 * quoted-printable), its refusals and settings; deliver() against the
 * aiosmtpd sink (tests/support/smtp_sink.py): one session per batch,
 * AUTH, per-recipient 5xx/4xx, a server that is not there, STARTTLS
 * required but not offered; PIPELINING used when offered and only then,
 * the worker's session reused across batches (and replaced when the
 * server dropped it), SIZE, SMTPUTF8; against Postfix's smtp-sink: a
 * stalled reply cut by its phase's timeout, enhanced status codes kept;
 * against tests/support/smtp_hangup.py: 421 after DATA, then close. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/record.h"
#include "support/fs.h"
#include "support/instance.h"
#include "support/server.h"
#include "base/timefmt.h"

const baton_plugin *baton_plugin_entry(void);

static instance *email(const char *settings)
{
    char err[512] = "";
    instance *inst =
        test_instance_new(baton_plugin_entry(), "channels", "email", settings, 1, err, sizeof err);
    if (!inst)
        fail_msg("channel_email: %s", err);
    return inst;
}

static int64_t ts(const char *s)
{
    int64_t t;
    assert_int_equal(timestamp_parse(s, strlen(s), &t), 0);
    return t;
}

static baton_message msg(const char *key, const char *to, const char *subject, const char *text,
                         const char *html)
{
    static const char *names[3];
    static const char *values[3];
    size_t n = 0;
    if (subject) {
        names[n] = "subject";
        values[n++] = subject;
    }
    if (text) {
        names[n] = "text";
        values[n++] = text;
    }
    if (html) {
        names[n] = "html";
        values[n++] = html;
    }
    baton_message m = {.size = sizeof m,
                       .key = key,
                       .recipient = to,
                       .nparts = n,
                       .part_names = names,
                       .part_values = values,
                       .time = ts("2026-11-23T10:00:00Z"),
                       .attempt = 1};
    return m;
}

static char *format(instance *inst, const baton_message *m, int want)
{
    const baton_channel_ops *ops = instance_channel(inst);
    buf out;
    buf_init(&out);
    static char err[256];
    err[0] = '\0';
    int rc = ops->format(inst->state, m, &out, err, sizeof err);
    assert_int_equal(rc, want);
    if (rc)
        return strdup(err);
    return out.data ? buf_steal(&out) : strdup("");
}

/* s with every `from` replaced by `to` (s is freed). */
static char *subst(char *s, const char *from, const char *to)
{
    buf b;
    buf_init(&b);
    const char *p = s, *q;
    while ((q = strstr(p, from))) {
        buf_add(&b, p, (size_t)(q - p));
        buf_adds(&b, to);
        p = q + strlen(from);
    }
    buf_adds(&b, p);
    free(s);
    return buf_steal(&b);
}

static void test_format_multipart(void **state)
{
    instance *inst = email("from = \"Shop <news@example.com>\"; list_unsubscribe = "
                           "\"<mailto:unsub@example.com>, <https://example.com/u>\";");
    baton_message m = msg("winback/1/mail_a/p42", "ann@example.com",
                          "Ünïcode sale — 10% off for the whole week, only for you, Ann!",
                          "Hello Ann,\nprices = low\nA very long line that goes on and on "
                          "beyond seventy-six characters, so it must be wrapped softly.\n",
                          "<p>Caf\xc3\xa9</p>");
    char *got = format(inst, &m, 0);
    const char *want =
        "From: Shop <news@example.com>\r\n"
        "To: <ann@example.com>\r\n"
        "Subject: =?UTF-8?B?w5xuw69jb2RlIHNhbGUg4oCUIDEwJSBvZmYgZm9yIHRoZSB3aG9s?=\r\n"
        " =?UTF-8?B?ZSB3ZWVrLCBvbmx5IGZvciB5b3UsIEFubiE=?=\r\n"
        "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
        "Message-ID: <baton.winback/1/mail_a/p42@example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        "List-Unsubscribe: <mailto:unsub@example.com>, <https://example.com/u>\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        "X-Baton-Key: winback/1/mail_a/p42\r\n"
        "Content-Type: multipart/alternative; boundary=\"=_baton_@B@\"\r\n"
        "\r\n"
        "This is a multi-part message in MIME format.\r\n"
        "\r\n"
        "--=_baton_@B@\r\n"
        "Content-Type: text/plain; charset=UTF-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n"
        "\r\n"
        "Hello Ann,\r\n"
        "prices =3D low\r\n"
        "A very long line that goes on and on beyond seventy-six characters, so it m=\r\n"
        "ust be wrapped softly.\r\n"
        "\r\n"
        "--=_baton_@B@\r\n"
        "Content-Type: text/html; charset=UTF-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n"
        "\r\n"
        "<p>Caf=C3=A9</p>\r\n"
        "--=_baton_@B@--\r\n";
    /* the boundary derives from the key: read it back, then compare it all */
    const char *bd = strstr(got, "boundary=\"=_baton_");
    assert_non_null(bd);
    char b[32];
    assert_int_equal(sscanf(bd, "boundary=\"=_baton_%16[0-9a-f]\"", b), 1);
    assert_int_equal(strlen(b), 16);
    char *expect = subst(strdup(want), "@B@", b);
    assert_string_equal(got, expect);
    free(expect);
    /* same key, same ids: a retry is the same message */
    char *again = format(inst, &m, 0);
    assert_string_equal(again, got);
    free(again);
    free(got);
    test_instance_free(inst);
}

/* A text of several kilobytes, all of it encoded (=C3=A9 for each é),
 * so the quoted-printable lines and their soft breaks run across the
 * encoder's chunks: 25 encoded bytes a line, then "=" CRLF; one of
 * letters only, 75 a line; and prose, its spaces at line ends encoded. */
static void test_format_long_text(void **state)
{
    instance *inst = email("from = \"news@example.com\";");
    buf text, want;
    buf_init(&text);
    buf_init(&want);
    size_t col = 0;
    for (int i = 0; i < 3000; i++) {
        buf_adds(&text, "\xc3\xa9");
        for (int k = 0; k < 2; k++) {
            if (col + 3 > 75) {
                buf_adds(&want, "=\r\n");
                col = 0;
            }
            buf_adds(&want, k ? "=A9" : "=C3");
            col += 3;
        }
    }
    buf_adds(&text, "\nend\n");
    buf_adds(&want, "\r\nend\r\n\r\n"); /* the part ends with a line end of its own */
    baton_message m = msg("long/1", "bob@example.com", "Long", text.data, NULL);
    char *got = format(inst, &m, 0);
    const char *body = strstr(got, "quoted-printable\r\n\r\n");
    assert_non_null(body);
    assert_string_equal(body + strlen("quoted-printable\r\n\r\n"), want.data);
    free(got);
    /* and bytes that stand for themselves: 75 a line */
    buf_reset(&text);
    buf_reset(&want);
    col = 0;
    for (int i = 0; i < 5000; i++) {
        buf_addc(&text, (char)('a' + i % 26));
        if (col + 1 > 75) {
            buf_adds(&want, "=\r\n");
            col = 0;
        }
        buf_addc(&want, (char)('a' + i % 26));
        col++;
    }
    buf_adds(&want, "\r\n");
    m = msg("long/2", "bob@example.com", "Long", text.data, NULL);
    got = format(inst, &m, 0);
    body = strstr(got, "quoted-printable\r\n\r\n");
    assert_non_null(body);
    assert_string_equal(body + strlen("quoted-printable\r\n\r\n"), want.data);
    free(got);
    /* prose: spaces stand for themselves but at a line's end (=20) */
    buf_reset(&text);
    buf_reset(&want);
    col = 0;
    const char *prose = "lorem ipsum dolor sit amet ";
    for (int i = 0; i < 5000; i++)
        buf_addc(&text, i % 97 == 96 ? '\n' : prose[i % 27]);
    buf_adds(&text, " ");
    for (size_t i = 0; i < text.len; i++) {
        char ch = text.data[i];
        if (ch == '\n') {
            buf_adds(&want, "\r\n");
            col = 0;
            continue;
        }
        int eol = i + 1 == text.len || text.data[i + 1] == '\n';
        const char *enc = ch == ' ' && eol ? "=20" : NULL;
        size_t len = enc ? 3 : 1;
        if (col + len > 75) {
            buf_adds(&want, "=\r\n");
            col = 0;
        }
        if (enc)
            buf_adds(&want, enc);
        else
            buf_addc(&want, ch);
        col += len;
    }
    buf_adds(&want, "\r\n");
    m = msg("long/3", "bob@example.com", "Long", text.data, NULL);
    got = format(inst, &m, 0);
    body = strstr(got, "quoted-printable\r\n\r\n");
    assert_non_null(body);
    assert_string_equal(body + strlen("quoted-printable\r\n\r\n"), want.data);
    free(got);
    buf_free(&text);
    buf_free(&want);
    test_instance_free(inst);
}

static void test_format_single_part_and_from(void **state)
{
    instance *inst =
        email("from = \"\\\"Boutique Élise\\\" <news@shop.example>\"; "
              "reply_to = \"help@shop.example\"; message_id_domain = \"mail.shop.example\";");
    baton_message m = msg("k1", "bob@example.com", "Plain subject", NULL, "<b>hi</b>\n");
    char *got = format(inst, &m, 0);
    assert_non_null(strstr(got, "From: =?UTF-8?B?Qm91dGlxdWUgw4lsaXNl?= <news@shop.example>\r\n"));
    assert_non_null(strstr(got, "Reply-To: help@shop.example\r\n"));
    assert_non_null(strstr(got, "Subject: Plain subject\r\n"));
    assert_non_null(strstr(got, "Message-ID: <baton.k1@mail.shop.example>\r\n"));
    assert_null(strstr(got, "List-Unsubscribe"));
    assert_non_null(strstr(got, "Content-Type: text/html; charset=UTF-8\r\n"
                                "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
                                "<b>hi</b>\r\n"));
    assert_null(strstr(got, "multipart"));
    free(got);
    /* a subject with a line break cannot inject a header */
    m = msg("k2", "bob@example.com", "Hi\r\nBcc: evil@example.com", "x", NULL);
    got = format(inst, &m, 0);
    assert_non_null(strstr(got, "Subject: Hi  Bcc: evil@example.com\r\n"));
    assert_null(strstr(got, "\nBcc:"));
    free(got);
    test_instance_free(inst);
}

/* The Message-ID names its delivery: every byte of a key comes back from
 * it; a key too long for one line gets a hash of it instead. */
static void test_message_id_names_the_key(void **state)
{
    char key[256], mid[1024], back[256];
    for (int c = 1; c < 256; c++)
        key[c - 1] = (char)c;
    key[255] = '\0';
    size_t n = baton_message_id(key, "example.com", mid, sizeof mid);
    assert_true(n > 0);
    for (size_t i = 0; i < n; i++) /* dot-atom text, '@', no line break */
        assert_non_null(strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                               "-_/+=.@",
                               mid[i]));
    assert_int_equal(baton_message_id_key(mid, back, sizeof back), 1);
    assert_string_equal(back, key);
    char quoted[1100];
    snprintf(quoted, sizeof quoted, " <%s>", mid);
    assert_int_equal(baton_message_id_key(quoted, back, sizeof back), 1);
    assert_string_equal(back, key);
    assert_int_equal(baton_message_id("j:nudge:7:mail:0", "shop.example", mid, sizeof mid),
                     strlen("baton.j=3Anudge=3A7=3Amail=3A0@shop.example"));
    assert_string_equal(mid, "baton.j=3Anudge=3A7=3Amail=3A0@shop.example");
    /* ids of others, cut or bad escapes: not ours */
    static const char *const not_ours[] = {"<0123456789abcdef.0123456789abcdef@example.com>",
                                           "<baton.@example.com>",
                                           "<baton.abc>",
                                           "<baton.a=4@example.com>",
                                           "<baton.a=00b@example.com>",
                                           "<baton.a.b@example.com>"};
    for (size_t i = 0; i < sizeof not_ours / sizeof *not_ours; i++)
        assert_int_equal(baton_message_id_key(not_ours[i], back, sizeof back), 0);
    assert_int_equal(baton_message_id(key, "example.com", mid, 100), 0);
    /* in the message: a key past what fits on the line is hashed */
    instance *inst = email("from = \"news@example.com\";");
    char longkey[400];
    memset(longkey, ':', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    baton_message m = msg(longkey, "bob@example.com", "s", "t", NULL);
    char *got = format(inst, &m, 0);
    const char *h = strstr(got, "Message-ID: <");
    assert_non_null(h);
    assert_int_equal(sscanf(h, "Message-ID: <%33[0-9a-f.]@", back), 1);
    assert_int_equal(strlen(back), 33);
    free(got);
    test_instance_free(inst);
}

static void test_format_unsubscribe_template(void **state)
{
    instance *inst =
        email("from = \"news@example.com\"; list_unsubscribe = "
              "\"<https://example.com/u/{{ id }}?c={{ campaign }}&p={{ profile_id }}>\";");
    baton_message m = msg("k", "a@example.com", "s", "t", NULL);
    m.profile_id = "p42";
    record *row = record_new();
    record_set_string(row, "id", "p42");
    record_set_string(row, "campaign", "winback");
    m.row = row;
    char *got = format(inst, &m, 0);
    assert_non_null(strstr(got, "List-Unsubscribe: <https://example.com/u/p42?c=winback&p=p42>\r\n"
                                "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
    free(got);
    record_free(row);
    test_instance_free(inst);
}

/* The List-Unsubscribe hijack: a first name that closes the URL and
 * adds the attacker's own one-click link stays inside the first URL,
 * percent-encoded. */
static void test_format_unsubscribe_injection(void **state)
{
    instance *inst = email("from = \"news@example.com\"; list_unsubscribe = "
                           "\"<https://example.com/u/{{ id }}?n={{ first_name }}>, "
                           "<mailto:unsub@example.com?subject={{ first_name }}>\";");
    baton_message m = msg("k", "a@example.com", "s", "t", NULL);
    record *row = record_new();
    record_set_string(row, "id", "p42");
    record_set_string(row, "first_name", "x>, <https://evil.example/unsub?id=1");
    m.row = row;
    char *got = format(inst, &m, 0);
    const char *want =
        "List-Unsubscribe: <https://example.com/u/p42?n=x%3E%2C%20%3Chttps%3A%2F%2Fevil.example%2F"
        "unsub%3Fid%3D1>, <mailto:unsub@example.com?subject=x%3E%2C%20%3Chttps%3A%2F%2Fevil."
        "example%2Funsub%3Fid%3D1>\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n";
    if (!strstr(got, want))
        fail_msg("got:\n%s", got);
    assert_null(strstr(got, "<https://evil.example"));
    free(got);
    record_free(row);
    test_instance_free(inst);
}

static void test_format_refusals(void **state)
{
    instance *inst = email("from = \"news@example.com\";");
    baton_message m = msg("k", "not-an-address", "s", "t", NULL);
    char *err = format(inst, &m, -1);
    assert_string_equal(err, "not an email address: 'not-an-address'");
    free(err);
    m = msg("k", "a@example.com\r\nRCPT TO:<x@y>", "s", "t", NULL);
    err = format(inst, &m, -1);
    assert_non_null(strstr(err, "not an email address"));
    free(err);
    m = msg("k", "a@example.com", "s", NULL, NULL);
    err = format(inst, &m, -1);
    assert_string_equal(err, "the message has neither a text nor an html part");
    free(err);
    /* trailing spaces are encoded, "=" always */
    m = msg("k", "a@example.com", "s", "end  \n=", NULL);
    char *got = format(inst, &m, 0);
    assert_non_null(strstr(got, "\r\n\r\nend =20\r\n=3D\r\n"));
    free(got);
    test_instance_free(inst);
}

static void test_settings(void **state)
{
    char err[512];
    assert_null(test_instance_new(baton_plugin_entry(), "channels", "email", "from = \"Shop\";", 1,
                                  err, sizeof err));
    assert_string_equal(err, "from = \"Shop\": expected \"Name <address@domain>\" or an address");
    assert_null(test_instance_new(baton_plugin_entry(), "channels", "email",
                                  "from = \"a@b.c\"; starttls = \"always\";", 1, err, sizeof err));
    assert_non_null(strstr(err, "starttls"));
    assert_null(test_instance_new(baton_plugin_entry(), "channels", "email",
                                  "from = \"a@b.c\"; password = \"x\";", 1, err, sizeof err));
    assert_string_equal(err, "password is set but username is not");
    instance *inst = email("from = \"a@b.c\"; starttls = \"required\"; username = \"u\"; "
                           "password = \"p\"; timeout = \"5s\";");
    test_instance_free(inst);
}

/* ---------------- delivery against aiosmtpd ---------------- */

static char *sink_dir;
static test_server sink;

static void sink_start(const char *extra1, const char *extra2)
{
    char src[1024];
    const char *top = getenv("BATON_SRC");
    snprintf(src, sizeof src, "%s/tests/support/smtp_sink.py", top ? top : ".");
    char *argv[] = {"/usr/bin/python3", src, "--dir", sink_dir, (char *)extra1,
                    (char *)extra2,     NULL};
    if (!extra1)
        argv[4] = NULL;
    else if (!extra2)
        argv[5] = NULL;
    assert_int_equal(server_start_ready(&sink, argv, 15000), 0);
}

static int setup(void **state)
{
    sink_dir = tmpdir_make("smtp");
    return 0;
}
static int teardown(void **state)
{
    server_stop(&sink);
    tmpdir_remove(sink_dir);
    free(sink_dir);
    return 0;
}

static void deliver(instance *inst, baton_message *m, size_t n, baton_delivery *out)
{
    const baton_channel_ops *ops = instance_channel(inst);
    const baton_message **p = calloc(n, sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = &m[i];
    void *conn = ops->worker_open ? ops->worker_open(inst->state) : NULL;
    ops->deliver(inst->state, conn, p, n, out);
    if (ops->worker_close)
        ops->worker_close(inst->state, conn);
    free(p);
}

static void test_deliver_batch_one_session(void **state)
{
    sink_start("--reject", "bounce@=550");
    char settings[256];
    snprintf(settings, sizeof settings, "from = \"Shop <news@example.com>\"; port = %d;",
             sink.port);
    instance *inst = email(settings);
    baton_message m[5];
    char keys[5][16];
    const char *to[] = {"a@example.com", "b@example.com", "bounce@example.com", "c@example.com",
                        "bad address"};
    for (int i = 0; i < 5; i++) {
        snprintf(keys[i], sizeof keys[i], "batch/%d", i);
        m[i] = msg(keys[i], to[i], "Hi", "Body", NULL);
    }
    baton_delivery out[5];
    deliver(inst, m, 5, out);
    assert_int_equal(out[0].status, BATON_OK);
    assert_string_equal(out[0].provider_id, "Q000001");
    assert_int_equal(out[1].status, BATON_OK);
    assert_int_equal(out[2].status, BATON_ERROR);
    assert_string_equal(out[2].reason,
                        "RCPT TO: 550 5.1.1 <bounce@example.com>: Recipient address rejected");
    assert_int_equal(out[3].status, BATON_OK);
    assert_string_equal(out[3].provider_id, "Q000003");
    assert_int_equal(out[4].status, BATON_ERROR);
    /* one connection for the batch */
    char path[1024];
    snprintf(path, sizeof path, "%s/log.jsonl", sink_dir);
    char *log = file_read(path, NULL);
    assert_non_null(log);
    int lines = 0;
    for (char *p = log; (p = strstr(p, "\"session\": 1,")); p++)
        lines++;
    assert_int_equal(lines, 3);
    /* the stored bytes are format()'s bytes */
    char first[64];
    assert_int_equal(sscanf(strstr(log, "\"file\": \"") + 9, "%63[^\"]", first), 1);
    snprintf(path, sizeof path, "%s/%s", sink_dir, first);
    char *stored = file_read(path, NULL);
    char *formatted = format(inst, &m[0], 0);
    assert_string_equal(stored, formatted);
    free(stored);
    free(formatted);
    free(log);
    test_instance_free(inst);
}

/* The provider id is the one the provider's bounces and webhooks name
 * the message by: Amazon SES's `250 Ok ID`, Exim's `250 OK id=ID`. */
static void test_provider_ids(void **state)
{
    static const char *const styles[][2] = {{"--reply=ses", "0100018c00000001-ses-000000"},
                                            {"--reply=exim", "1kX0001-0003Ab-Cd"}};
    for (size_t k = 0; k < 2; k++) {
        sink_start(styles[k][0], NULL);
        char settings[256];
        snprintf(settings, sizeof settings, "from = \"news@example.com\"; port = %d;", sink.port);
        instance *inst = email(settings);
        baton_message m = msg("ids/1", "a@example.com", "Hi", "Body", NULL);
        baton_delivery out;
        deliver(inst, &m, 1, &out);
        assert_int_equal(out.status, BATON_OK);
        assert_string_equal(out.provider_id, styles[k][1]);
        test_instance_free(inst);
        server_stop(&sink);
    }
}

static void test_deliver_auth(void **state)
{
    sink_start("--auth", "mailer:s3cret");
    char settings[256];
    snprintf(
        settings, sizeof settings,
        "from = \"news@example.com\"; port = %d; username = \"mailer\"; password = \"s3cret\";",
        sink.port);
    instance *inst = email(settings);
    baton_message m = msg("auth/1", "a@example.com", "Hi", "Body", NULL);
    baton_delivery out;
    deliver(inst, &m, 1, &out);
    assert_int_equal(out.status, BATON_OK);
    char path[1024];
    snprintf(path, sizeof path, "%s/log.jsonl", sink_dir);
    char *log = file_read(path, NULL);
    assert_non_null(strstr(log, "\"auth\": \"mailer\""));
    free(log);
    test_instance_free(inst);
    /* wrong password: the server says 535, permanent */
    snprintf(settings, sizeof settings,
             "from = \"news@example.com\"; port = %d; username = \"mailer\"; password = \"nope\";",
             sink.port);
    inst = email(settings);
    m = msg("auth/2", "a@example.com", "Hi", "Body", NULL);
    deliver(inst, &m, 1, &out);
    assert_int_not_equal(out.status, BATON_OK);
    test_instance_free(inst);
}

static void test_deliver_server_absent_and_starttls(void **state)
{
    int port = server_free_port();
    char settings[256];
    snprintf(settings, sizeof settings, "from = \"news@example.com\"; port = %d; timeout = \"2s\";",
             port);
    instance *inst = email(settings);
    baton_message m = msg("absent/1", "a@example.com", "Hi", "Body", NULL);
    baton_delivery out;
    deliver(inst, &m, 1, &out);
    assert_int_equal(out.status, BATON_RETRY);
    assert_non_null(strstr(out.reason, "SMTP 127.0.0.1:"));
    test_instance_free(inst);

    sink_start(NULL, NULL);
    snprintf(settings, sizeof settings,
             "from = \"news@example.com\"; port = %d; starttls = \"required\";", sink.port);
    inst = email(settings);
    deliver(inst, &m, 1, &out);
    assert_int_equal(out.status, BATON_ERROR);
    assert_non_null(strstr(out.reason, "does not offer STARTTLS"));
    test_instance_free(inst);
    /* enabled: used when offered, and this server does not offer it */
    snprintf(settings, sizeof settings,
             "from = \"news@example.com\"; port = %d; starttls = \"enabled\";", sink.port);
    inst = email(settings);
    deliver(inst, &m, 1, &out);
    assert_int_equal(out.status, BATON_OK);
    test_instance_free(inst);
}

/* ---------------- the SMTP client ---------------- */

static char *sink_log(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/log.jsonl", sink_dir);
    char *log = file_read(path, NULL);
    return log ? log : strdup("");
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static instance *email_on(int port, const char *more)
{
    char settings[2048];
    snprintf(settings, sizeof settings, "from = \"Shop <news@example.com>\"; port = %d; %s", port,
             more ? more : "");
    return email(settings);
}

static void batch_of(baton_message *m, char keys[][32], int n, const char *prefix)
{
    static char to[16][64];
    for (int i = 0; i < n; i++) {
        snprintf(keys[i], 32, "%s/%d", prefix, i);
        snprintf(to[i], sizeof to[i], "%s%d@example.com", prefix, i);
        m[i] = msg(keys[i], to[i], "Hi", "Body\n.a line that starts with a dot\n", NULL);
    }
}

/* PIPELINING offered: each RCPT left with its MAIL, before MAIL's reply;
 * not offered: every command waits for its reply. The EHLO name is
 * fully qualified or an address literal, never a bare host name. */
static void test_pipelining_on_and_off(void **state)
{
    for (int on = 1; on >= 0; on--) {
        sink_start(on ? "--pipelining" : NULL, NULL);
        instance *inst = email_on(sink.port, NULL);
        baton_message m[4];
        char keys[4][32];
        batch_of(m, keys, 4, on ? "pipe" : "nopipe");
        baton_delivery out[4];
        deliver(inst, m, 4, out);
        for (int i = 0; i < 4; i++)
            assert_int_equal(out[i].status, BATON_OK);
        char *log = sink_log();
        assert_int_equal(count(log, "\"pipelined\": true"), on ? 4 : 0);
        assert_int_equal(count(log, "\"pipelined\": false"), on ? 0 : 4);
        /* dot-stuffed on the wire, the exact bytes stored */
        char first[64], path[1024];
        assert_int_equal(sscanf(strstr(log, "\"file\": \"") + 9, "%63[^\"]", first), 1);
        snprintf(path, sizeof path, "%s/%s", sink_dir, first);
        char *stored = file_read(path, NULL);
        char *formatted = format(inst, &m[0], 0);
        assert_string_equal(stored, formatted);
        const char *ehlo = strstr(log, "\"ehlo\": \"");
        assert_non_null(ehlo);
        ehlo += 9;
        assert_true(ehlo[0] == '[' || strcspn(ehlo, ".\"") < strcspn(ehlo, "\""));
        free(stored);
        free(formatted);
        free(log);
        test_instance_free(inst);
        server_stop(&sink);
        char path2[1024];
        snprintf(path2, sizeof path2, "%s/log.jsonl", sink_dir);
        unlink(path2);
    }
}

/* One worker, three batches: one SMTP session (the sink counts EHLOs).
 * The server restarts between batches: the next batch sees the session
 * gone and opens another; nothing is lost. */
static void test_session_reused_across_batches(void **state)
{
    sink_start("--pipelining", NULL);
    int port = sink.port;
    instance *inst = email_on(port, NULL);
    const baton_channel_ops *ops = instance_channel(inst);
    void *conn = ops->worker_open(inst->state);
    assert_non_null(conn);
    for (int b = 0; b < 3; b++) {
        baton_message m[3];
        char keys[3][32], prefix[16];
        snprintf(prefix, sizeof prefix, "b%d", b);
        batch_of(m, keys, 3, prefix);
        const baton_message *p[3] = {&m[0], &m[1], &m[2]};
        baton_delivery out[3];
        ops->deliver(inst->state, conn, p, 3, out);
        for (int i = 0; i < 3; i++)
            assert_int_equal(out[i].status, BATON_OK);
    }
    char *log = sink_log();
    assert_int_equal(count(log, "\"session\": 1,"), 9);
    free(log);
    /* the server goes away and comes back on the same port */
    server_stop(&sink);
    char portarg[16];
    snprintf(portarg, sizeof portarg, "%d", port);
    char src[1024];
    const char *top = getenv("BATON_SRC");
    snprintf(src, sizeof src, "%s/tests/support/smtp_sink.py", top ? top : ".");
    char *argv[] = {"/usr/bin/python3", src, "--dir", sink_dir, "--port", portarg, NULL};
    assert_int_equal(server_start_ready(&sink, argv, 15000), 0);
    baton_message m[2];
    char keys[2][32];
    batch_of(m, keys, 2, "after");
    const baton_message *p[2] = {&m[0], &m[1]};
    baton_delivery out[2];
    ops->deliver(inst->state, conn, p, 2, out);
    assert_int_equal(out[0].status, BATON_OK);
    assert_int_equal(out[1].status, BATON_OK);
    ops->worker_close(inst->state, conn);
    log = sink_log();
    assert_int_equal(count(log, "\"rcpt_tos\": [\"after"), 2);
    free(log);
    test_instance_free(inst);
}

/* The server answers DATA with 421 and closes: the reasons quote its 421,
 * every message is retried, none failed. */
static void test_421_after_data_then_close(void **state)
{
    char src[1024];
    const char *top = getenv("BATON_SRC");
    snprintf(src, sizeof src, "%s/tests/support/smtp_hangup.py", top ? top : ".");
    char *argv[] = {"/usr/bin/python3", src, NULL};
    assert_int_equal(server_start_ready(&sink, argv, 15000), 0);
    instance *inst = email_on(sink.port, NULL);
    baton_message m[3];
    char keys[3][32];
    batch_of(m, keys, 3, "hangup");
    baton_delivery out[3];
    deliver(inst, m, 3, out);
    assert_int_equal(out[0].status, BATON_RETRY);
    assert_string_equal(out[0].reason,
                        "DATA: 421 4.3.2 Service shutting down, closing transmission channel");
    for (int i = 1; i < 3; i++) {
        assert_int_equal(out[i].status, BATON_RETRY);
        assert_non_null(strstr(out[i].reason, "421 4.3.2 Service shutting down"));
    }
    test_instance_free(inst);
}

static void smtp_sink_start(const char *opt0, const char *opt1, const char *opt2)
{
    int port = server_free_port();
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    char *argv[12];
    int n = 0;
    argv[n++] = "smtp-sink";
    if (getuid() == 0) { /* it refuses to run as root without -u */
        argv[n++] = "-u";
        argv[n++] = "nobody";
    }
    if (opt0)
        argv[n++] = (char *)opt0;
    if (opt1)
        argv[n++] = (char *)opt1;
    if (opt2)
        argv[n++] = (char *)opt2;
    argv[n++] = listen;
    argv[n++] = "10";
    argv[n] = NULL;
    assert_int_equal(server_start_port(&sink, argv, port, 10000), 0);
    sink.port = port;
}

/* smtp-sink (without PIPELINING: with it, it answers the DATA behind a
 * held RCPT first) holds its reply to RCPT for 30 s: rcpt_timeout (1 s) ends the
 * session; the message and the one behind it are retried, saying why. A
 * reply held after the final dot: uncertain (SDK 1.5), "it may have been
 * delivered" (RFC 5321 §6.1), never retried as if it had not gone. */
static void test_phase_timeouts(void **state)
{
    smtp_sink_start("-p", "-W", "rcpt:30");
    instance *inst = email_on(sink.port, "rcpt_timeout = \"1s\";");
    baton_message m[2];
    char keys[2][32];
    batch_of(m, keys, 2, "stall");
    baton_delivery out[2];
    deliver(inst, m, 2, out);
    assert_int_equal(out[0].status, BATON_RETRY);
    assert_string_equal(out[0].reason, "RCPT TO: no reply within 1 s");
    assert_int_equal(out[1].status, BATON_RETRY);
    assert_non_null(strstr(out[1].reason, "no reply within 1 s"));
    test_instance_free(inst);
    server_stop(&sink);

    smtp_sink_start(NULL, "-W", ".:30");
    inst = email_on(sink.port, "dot_timeout = \"1s\";");
    deliver(inst, m, 1, out);
    assert_int_equal(out[0].status, BATON_UNCERTAIN);
    assert_string_equal(out[0].reason, "DATA: no reply within 1 s after the final dot (it may "
                                       "have been delivered)");
    test_instance_free(inst);
}

/* The server takes a message's final dot and goes away without a word
 * (with PIPELINING and without): that message may have been delivered,
 * so it is UNCERTAIN, never retried as if it had not gone; the one behind
 * it had not left, and is retried. */
static void test_lost_after_the_final_dot(void **state)
{
    for (int pipe = 0; pipe < 2; pipe++) {
        char src[1024];
        const char *top = getenv("BATON_SRC");
        snprintf(src, sizeof src, "%s/tests/support/smtp_sink.py", top ? top : ".");
        char *argv[] = {"/usr/bin/python3",           src, "--dir", sink_dir, "--die-after", "0",
                        pipe ? "--pipelining" : NULL, NULL};
        assert_int_equal(server_start_ready(&sink, argv, 15000), 0);
        instance *inst = email_on(sink.port, NULL);
        baton_message m[2];
        char keys[2][32];
        batch_of(m, keys, 2, pipe ? "lostp" : "lost");
        baton_delivery out[2];
        deliver(inst, m, 2, out);
        assert_int_equal(out[0].status, BATON_UNCERTAIN);
        assert_string_equal(out[0].reason, "DATA: the server closed the connection after the "
                                           "final dot (it may have been delivered)");
        assert_int_equal(out[1].status, BATON_RETRY);
        test_instance_free(inst);
        server_stop(&sink);
    }
}

/* Postfix's smtp-sink announces ENHANCEDSTATUSCODES: its "5.3.0" stays. */
static void test_enhanced_status_codes(void **state)
{
    smtp_sink_start(NULL, "-f", "rcpt");
    instance *inst = email_on(sink.port, NULL);
    baton_message m[2];
    char keys[2][32];
    batch_of(m, keys, 2, "enh");
    baton_delivery out[2];
    deliver(inst, m, 2, out);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(out[i].status, BATON_ERROR);
        assert_string_equal(out[i].reason, "RCPT TO: 500 5.3.0 Error: command failed");
    }
    test_instance_free(inst);
}

/* SIZE: declared on MAIL FROM; a message over the server's limit is
 * refused before it is sent. */
static void test_size(void **state)
{
    sink_start("--size", "2000");
    instance *inst = email_on(sink.port, NULL);
    static char big[3000];
    memset(big, 'x', sizeof big - 1);
    /* msg() keeps its parts in static arrays: one message at a time */
    baton_message m[1] = {msg("size/small", "a@example.com", "Hi", "small", NULL)};
    baton_delivery out;
    deliver(inst, m, 1, &out);
    assert_int_equal(out.status, BATON_OK);
    char *small = format(inst, &m[0], 0);
    baton_message b = msg("size/big", "b@example.com", "Hi", big, NULL);
    deliver(inst, &b, 1, &out);
    assert_int_equal(out.status, BATON_ERROR);
    assert_non_null(strstr(out.reason, "MAIL FROM: the message is "));
    assert_non_null(strstr(out.reason, "over the 2000 of SMTP 127.0.0.1:"));
    char *log = sink_log();
    char *formatted = small;
    char want[64];
    snprintf(want, sizeof want, "\"SIZE=%zu\"", strlen(formatted));
    assert_non_null(strstr(log, want));
    assert_int_equal(count(log, "\"seq\""), 1);
    free(formatted);
    free(log);
    test_instance_free(inst);
}

/* An internationalised address goes with SMTPUTF8 where it is offered,
 * and is refused, saying why, where it is not. */
static void test_smtputf8(void **state)
{
    sink_start(NULL, NULL);
    instance *inst = email_on(sink.port, NULL);
    baton_message m = msg("utf8/1",
                          "j\xc3\xb6rg@b\xc3\xbc"
                          "cher.example",
                          "Hi", "Body", NULL);
    baton_delivery out;
    deliver(inst, &m, 1, &out);
    assert_int_equal(out.status, BATON_OK);
    char *log = sink_log();
    assert_non_null(strstr(log, "\"SMTPUTF8\""));
    assert_non_null(strstr(log, "\"BODY=8BITMIME\""));
    free(log);
    test_instance_free(inst);
    server_stop(&sink);

    sink_start("--no-smtputf8", NULL);
    inst = email_on(sink.port, NULL);
    deliver(inst, &m, 1, &out);
    assert_int_equal(out.status, BATON_ERROR);
    assert_non_null(strstr(out.reason, "RCPT TO: <j\xc3\xb6rg@b\xc3\xbc"
                                       "cher.example> is an internationalised address and SMTP "
                                       "127.0.0.1:"));
    assert_non_null(strstr(out.reason, "does not offer SMTPUTF8"));
    test_instance_free(inst);
}

/* STARTTLS: the server's certificate checked against tls_ca_file and its
 * address; one that does not chain to it is refused, and retried. */
static void test_starttls(void **state)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && for n in good other; do openssl req -x509 -newkey rsa:2048 -nodes "
             "-keyout $n.key -out $n.pem -days 2 -subj /CN=127.0.0.1 "
             "-addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1 || exit 1; done",
             sink_dir);
    assert_int_equal(system(cmd), 0);
    char tls[1200];
    snprintf(tls, sizeof tls, "%s/good.pem:%s/good.key", sink_dir, sink_dir);
    sink_start("--tls", tls);
    char more[1200];
    snprintf(more, sizeof more, "starttls = \"required\"; tls_ca_file = \"%s/good.pem\";",
             sink_dir);
    instance *inst = email_on(sink.port, more);
    baton_message m[2];
    char keys[2][32];
    batch_of(m, keys, 2, "tls");
    baton_delivery out[2];
    deliver(inst, m, 2, out);
    assert_int_equal(out[0].status, BATON_OK);
    assert_int_equal(out[1].status, BATON_OK);
    char *log = sink_log();
    assert_int_equal(count(log, "\"tls\": true"), 2);
    free(log);
    test_instance_free(inst);
    snprintf(more, sizeof more, "starttls = \"required\"; tls_ca_file = \"%s/other.pem\";",
             sink_dir);
    inst = email_on(sink.port, more);
    deliver(inst, m, 1, out);
    assert_int_equal(out[0].status, BATON_RETRY);
    assert_non_null(strstr(out[0].reason, "STARTTLS: the server's certificate: "));
    test_instance_free(inst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_multipart),
        cmocka_unit_test(test_format_single_part_and_from),
        cmocka_unit_test(test_format_long_text),
        cmocka_unit_test(test_message_id_names_the_key),
        cmocka_unit_test(test_format_unsubscribe_template),
        cmocka_unit_test(test_format_unsubscribe_injection),
        cmocka_unit_test(test_format_refusals),
        cmocka_unit_test(test_settings),
        cmocka_unit_test_setup_teardown(test_deliver_batch_one_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_provider_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deliver_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deliver_server_absent_and_starttls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelining_on_and_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_reused_across_batches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_421_after_data_then_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_phase_timeouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_after_the_final_dot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enhanced_status_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_smtputf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_starttls, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
