/* channel_email against a real Postfix smtpd: a private instance (its own
 * config, queue and data folders in a temporary one, master run in the
 * foreground by the test) listening on 127.0.0.1 only, on five free
 * ports: ALL offers everything (PIPELINING, SIZE, SMTPUTF8, CHUNKING,
 * ENHANCEDSTATUSCODES), SERIAL neither PIPELINING nor CHUNKING, NO_SIZE
 * neither SIZE nor SMTPUTF8, STRICT ends a session after 4 errors, TLS
 * takes mail only after STARTTLS (a certificate for 127.0.0.1 made by the
 * test); all want a fully qualified EHLO name or an address literal.
 * What it accepts is discarded (default_transport = discard) but for
 * @box.example, kept in a Maildir; nothing leaves the machine. What
 * Postfix logs (maillog_file) is read back: a campaign reaches it exactly
 * once, pipelined or not, in clear or over TLS; a refused recipient keeps
 * Postfix's reply with its enhanced status code, a deferred one is retried;
 * a message over message_size_limit is failed before anything of it goes
 * where SIZE says the limit, and keeps Postfix's "552 5.3.4" where it does
 * not; an internationalised address is taken with SMTPUTF8; the stored
 * message is the one written. baton's client sends text with DATA, never
 * BDAT, offered CHUNKING or not: the reply to its final dot is the one to
 * the message. Skipped, saying why, where Postfix cannot run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "support/fs.h"
#include "support/server.h"

#define MESSAGE_LIMIT 20000
#define PROFILES 20

enum { ALL, SERIAL, NO_SIZE, STRICT, TLS, LISTENERS }; /* the smtpd listeners */

static char *pfdir, *skip_why;
static int ports[LISTENERS];
static test_server master;

static char *dir, *cfg;

/* ------------------------------------------------------------------ */
/* Postfix                                                             */
/* ------------------------------------------------------------------ */

static char *pf_path(const char *name)
{
    char *p;
    if (asprintf(&p, "%s/%s", pfdir, name) < 0)
        abort();
    return p;
}

/* Postfix's commands live in /usr/sbin, which a user's PATH may lack */
static const char *sbin(const char *cmd)
{
    static char path[64]; /* one use at a time */
    snprintf(path, sizeof path, "/usr/sbin/%s", cmd);
    return access(path, X_OK) == 0 ? path : cmd;
}

static char *postconf_default(const char *name)
{
    char *cmd;
    if (asprintf(&cmd, "%s -dh %s", sbin("postconf"), name) < 0)
        abort();
    char *out = run_output(cmd); /* one line */
    free(cmd);
    return out;
}

static int not_runnable(const char *why)
{
    if (asprintf(&skip_why, "Postfix cannot run here: %s", why) < 0)
        abort();
    return 0;
}

static int postfix_start(void **st)
{
    if (geteuid() != 0)
        return not_runnable("not root (master binds and changes to the postfix user)");
    char *daemons = postconf_default("daemon_directory");
    char *meta = postconf_default("meta_directory");
    struct passwd *pw = getpwnam("postfix");
    if (!daemons || !meta || !pw) {
        free(daemons);
        free(meta);
        return not_runnable("postconf or the postfix user is missing (scripts/deps.sh installs "
                            "the postfix package)");
    }
    pfdir = tmpdir_make("postfix");
    chmod(pfdir, 0755); /* its daemons, as postfix, reach data/ and queue/ */
    char *cmd;
    if (asprintf(&cmd, "mkdir -p %s/etc %s/queue %s/data %s/mail && chown postfix %s/data %s/mail",
                 pfdir, pfdir, pfdir, pfdir, pfdir, pfdir) < 0 ||
        system(cmd) != 0)
        abort();
    free(cmd);
    for (int i = 0; i < LISTENERS; i++)
        ports[i] = server_free_port();
    if (asprintf(&cmd,
                 "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s/etc/tls.key -out "
                 "%s/etc/tls.pem -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
                 ">/dev/null 2>&1",
                 pfdir, pfdir) < 0)
        abort();
    if (system(cmd) != 0)
        fail_msg("openssl could not make a certificate: %s", cmd);
    free(cmd);
    char *text;
    if (asprintf(&text,
                 "compatibility_level = 3.6\n"
                 "queue_directory = %s/queue\n"
                 "data_directory = %s/data\n"
                 "meta_directory = %s\n"
                 "maillog_file = %s/maillog\n"
                 "maillog_file_prefixes = %s\n"
                 "myhostname = postfix.baton.test\n"
                 "mydestination =\n"
                 "relay_domains =\n"
                 "inet_interfaces = 127.0.0.1\n"
                 "inet_protocols = ipv4\n"
                 "mynetworks = 127.0.0.0/8\n"
                 "default_transport = discard:baton test\n"
                 "message_size_limit = %d\n"
                 "smtputf8_enable = yes\n"
                 "smtpd_recipient_restrictions = check_recipient_access texthash:%s/etc/access, "
                 "permit_mynetworks, reject\n"
                 /* a strict MTA's: baton's EHLO name must pass */
                 "smtpd_helo_required = yes\n"
                 "smtpd_helo_restrictions = reject_invalid_helo_hostname, "
                 "reject_non_fqdn_helo_hostname\n"
                 /* and its: DATA refused to a client whose text comes
                  * before the 354 */
                 "smtpd_data_restrictions = reject_unauth_pipelining\n"
                 "smtpd_log_access_permit_actions = static:all\n" /* helo=<..> logged */
                 "smtpd_error_sleep_time = 0\n"
                 "in_flow_delay = 0\n"
                 "alias_maps =\n"
                 "alias_database =\n"
                 "biff = no\n"
                 /* but mail to @box.example is kept, in the Maildir mail/box */
                 "virtual_mailbox_domains = box.example\n"
                 "virtual_mailbox_base = %s/mail\n"
                 "virtual_mailbox_maps = inline:{ @box.example=box/ }\n"
                 "virtual_uid_maps = static:%d\n"
                 "virtual_gid_maps = static:%d\n",
                 pfdir, pfdir, meta, pfdir, pfdir, MESSAGE_LIMIT, pfdir, pfdir, (int)pw->pw_uid,
                 (int)pw->pw_gid) < 0)
        abort();
    free(file_write(pfdir, "etc/main.cf", text));
    free(text);
    /* by the local part, in any domain */
    free(file_write(pfdir, "etc/access",
                    "refused@ 550 5.1.1 no such user here\npolicy@ REJECT\n"
                    "busy@ 450 4.2.1 mailbox busy\n"));
    if (asprintf(&text,
                 "127.0.0.1:%d inet n - n - - smtpd\n"
                 "127.0.0.1:%d inet n - n - - smtpd -o "
                 "smtpd_discard_ehlo_keywords=pipelining,chunking\n"
                 "127.0.0.1:%d inet n - n - - smtpd -o "
                 "smtpd_discard_ehlo_keywords=size,smtputf8\n"
                 "127.0.0.1:%d inet n - n - - smtpd -o smtpd_hard_error_limit=4\n"
                 "127.0.0.1:%d inet n - n - - smtpd -o smtpd_tls_security_level=encrypt -o "
                 "smtpd_tls_cert_file=%s/etc/tls.pem -o smtpd_tls_key_file=%s/etc/tls.key -o "
                 "smtpd_tls_loglevel=1\n"
                 "tlsmgr unix - - n 1000? 1 tlsmgr\n"
                 "pickup unix n - n 60 1 pickup\n"
                 "cleanup unix n - n - 0 cleanup\n"
                 "qmgr unix n - n 300 1 qmgr\n"
                 "rewrite unix - - n - - trivial-rewrite\n"
                 "bounce unix - - n - 0 bounce\n"
                 "defer unix - - n - 0 bounce\n"
                 "trace unix - - n - 0 bounce\n"
                 "verify unix - - n - 1 verify\n"
                 "flush unix n - n 1000? 0 flush\n"
                 "proxymap unix - - n - - proxymap\n"
                 "showq unix n - n - - showq\n"
                 "error unix - - n - - error\n"
                 "retry unix - - n - - error\n"
                 "discard unix - - n - - discard\n"
                 "virtual unix - n n - - virtual\n"
                 "anvil unix - - n - 1 anvil\n"
                 "scache unix - - n - 1 scache\n"
                 "postlog unix-dgram n - n - 1 postlogd\n",
                 ports[ALL], ports[SERIAL], ports[NO_SIZE], ports[STRICT], ports[TLS], pfdir,
                 pfdir) < 0)
        abort();
    free(file_write(pfdir, "etc/master.cf", text));
    free(text);
    /* `postfix check` makes the queue's folders, owned as they must be */
    char *out = NULL, *err = NULL;
    if (asprintf(&cmd, "%s -c %s/etc check", sbin("postfix"), pfdir) < 0)
        abort();
    int rc = run_capture(cmd, &out, &err);
    free(cmd);
    if (rc != 0) {
        char why[600];
        snprintf(why, sizeof why, "postfix check: %s%s", out ? out : "", err ? err : "");
        free(out);
        free(err);
        free(daemons);
        free(meta);
        return not_runnable(why);
    }
    free(out);
    free(err);
    char bin[1100], conf[1100];
    snprintf(bin, sizeof bin, "%s/master", daemons);
    snprintf(conf, sizeof conf, "%s/etc", pfdir);
    free(daemons);
    free(meta);
    /* -d: in the foreground, the test's child, stopped by server_stop */
    char *argv[] = {bin, "-c", conf, "-d", NULL};
    if (server_start_port(&master, argv, ports[ALL], 20000) != 0) {
        char *log = pf_path("maillog");
        char *t = file_read(log, NULL);
        free(log);
        print_message("Postfix's master did not listen on 127.0.0.1:%d: %s", ports[ALL],
                      t ? t : "(no log)");
        free(t);
        return -1;
    }
    /* it opens its listeners one after the other */
    for (int i = 1, tries = 0; i < LISTENERS; tries++) {
        if (server_port_open(ports[i])) {
            i++;
            continue;
        }
        if (tries == 500) {
            print_message("Postfix's master did not listen on 127.0.0.1:%d\n", ports[i]);
            server_stop(&master);
            return -1;
        }
        nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
    }
    return 0;
}

static int postfix_stop(void **st)
{
    server_stop(&master); /* master takes its daemons down with it */
    if (pfdir && !getenv("BATON_KEEP_TMP"))
        tmpdir_remove(pfdir);
    free(pfdir);
    free(skip_why);
    return 0;
}

/* Postfix's log lines after the first `from` holding a and b (b may be
 * NULL), counted; log_lines() is where the log ends now. */
static size_t log_count_from(size_t from, const char *a, const char *b)
{
    char *path = pf_path("maillog");
    char *log = file_read(path, NULL);
    free(path);
    size_t n = 0, at = 0;
    for (char *line = log; line && *line; at++) {
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        n += at >= from && strstr(line, a) && (!b || strstr(line, b));
        line = end ? end + 1 : line + strlen(line);
    }
    free(log);
    return n;
}

static size_t log_count(const char *a, const char *b)
{
    return log_count_from(0, a, b);
}

/* log_count_from once it reaches want, or after 10 s: Postfix's daemons
 * log through postlogd, a line a moment after what it says happened (a
 * session's disconnect after baton's QUIT) */
static size_t log_wait_from(size_t from, const char *a, const char *b, size_t want)
{
    size_t n = log_count_from(from, a, b);
    for (int i = 0; i < 200 && n < want; i++) {
        nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
        n = log_count_from(from, a, b);
    }
    return n;
}

static size_t log_lines(void)
{
    return log_count("", NULL);
}

static int queued_files;
static int count_file(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    queued_files += flag == FTW_F;
    return 0;
}

/* The messages Postfix still holds (accepted, not yet discarded). */
static int queue_size(void)
{
    static const char *const parts[] = {"incoming", "active", "deferred", "hold", "maildrop"};
    queued_files = 0;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        char name[64];
        snprintf(name, sizeof name, "queue/%s", parts[i]);
        char *p = pf_path(name);
        nftw(p, count_file, 8, FTW_PHYS);
        free(p);
    }
    return queued_files;
}

/* Postfix's discards to addresses in domain, once its queue is empty
 * (all it took has been through it; 20 s at most) and its log shows want
 * of them (10 s at most: postlogd writes what the discard daemon said a
 * moment later); more than want, when it took more. */
static size_t discarded(const char *domain, size_t want)
{
    char to[128];
    snprintf(to, sizeof to, "@%s>, relay=none", domain);
    for (int i = 0; i < 400 && queue_size() > 0; i++)
        nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
    size_t n = log_count(to, "status=sent");
    for (int i = 0; i < 200 && n < want; i++) {
        nanosleep(&(struct timespec){.tv_nsec = 50 * 1000 * 1000}, NULL);
        n = log_count(to, "status=sent");
    }
    return n;
}

/* ------------------------------------------------------------------ */
/* baton                                                               */
/* ------------------------------------------------------------------ */

static int baton(char **out, char **err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = run_baton_v(NULL, cfg, out, err, fmt, ap);
    va_end(ap);
    return rc;
}

/* one value read from var/<db> */
static char *sql_text(const char *db, const char *sql)
{
    char *path;
    if (asprintf(&path, "%s/var/%s", dir, db) < 0)
        abort();
    char *out = db_print(path, sql);
    free(path);
    if (!out)
        fail_msg("sqlite3 failed: %s", sql);
    return out;
}

static long long sql_count(const char *sql)
{
    char *t = sql_text("state.db", sql);
    long long n = atoll(t);
    free(t);
    return n;
}

static void crm(const char *sql)
{
    free(sql_text("crm.db", sql));
}

static void write_config(int port, const char *extra)
{
    char *text;
    if (asprintf(&text,
                 "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; log = { level = "
                 "\"warn\"; }; };\n"
                 "sources: { crm: { plugin = \"source_sqlite\"; path = \"var/crm.db\"; schema = "
                 "\"%s/conf/schema.cfg\"; }; };\n"
                 "profiles = \"crm\";\n"
                 "channels: { email: { plugin = \"channel_email\"; port = %d; from = \"Shop "
                 "<news@example.com>\";\n"
                 "  address = \"email\"; consent = \"consent_email\"; connections = 1;\n"
                 "  timeout = \"20s\"; retries = 3; retry_backoff = \"50ms\";\n"
                 "  %s }; };\n"
                 "campaigns = [ \"campaigns\" ];\n",
                 getenv("BATON_PLUGINS"), getenv("BATON_SRC"), port, extra) < 0)
        abort();
    free(cfg);
    cfg = file_write(dir, "baton.cfg", text);
    free(text);
}

/* A fresh baton folder sending to the listener *st: PROFILES profiles,
 * each with consent and the address p<rowid>@<domain>. */
static int setup(void **st)
{
    if (skip_why)
        return 0;
    dir = tmpdir_make("email-postfix");
    char *cd;
    if (asprintf(&cd, "mkdir -p %s/campaigns", dir) < 0 || system(cd) != 0)
        abort();
    free(cd);
    write_config(ports[*(int *)*st], "");
    char *out, *err;
    int rc = baton(&out, &err, "sample-data --profiles %d --seed 3", PROFILES);
    if (rc)
        print_message("sample-data: %s", err);
    free(out);
    free(err);
    return rc;
}

static int teardown(void **st)
{
    if (dir && !getenv("BATON_KEEP_TMP"))
        tmpdir_remove(dir);
    free(dir);
    free(cfg);
    dir = cfg = NULL;
    return 0;
}

static void skip_unless_postfix(void)
{
    if (skip_why) {
        print_message("skipped: %s\n", skip_why);
        skip();
    }
}

/* Every profile written to at p<rowid>@domain. */
static void addresses(const char *domain)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "UPDATE profiles SET consent_email = 1, email = 'p' || rowid || '@%s'", domain);
    crm(sql);
}

/* campaign c: everyone, this text; its planned messages */
static long long campaign(const char *text)
{
    char *c;
    if (asprintf(&c,
                 "campaign: { name = \"c\"; activities = (\n"
                 "  { id = \"a\"; type = \"build_audience\"; dimension = \"profiles\"; },\n"
                 "  { id = \"m\"; type = \"send\"; channel = \"email\"; input = \"a\";\n"
                 "    subject = \"Hi {{ first_name }}\"; text = \"%s\"; } ); };\n",
                 text) < 0)
        abort();
    free(file_write(dir, "campaigns/c.cfg", c));
    free(c);
    char *out, *err;
    assert_int_equal(baton(&out, &err, "campaign plan c --json"), 0);
    const char *m = strstr(out, "\"m\": ");
    assert_non_null(m);
    long long planned = atoll(m + strlen("\"m\": "));
    free(out);
    free(err);
    return planned;
}

static int run_campaign(void)
{
    char *out, *err;
    int rc = baton(&out, &err, "campaign run c");
    print_message("campaign run c: exit %d\n%s", rc, err);
    free(out);
    free(err);
    return rc;
}

/* Each sent row's recipient discarded by Postfix exactly once, under the
 * queue id the row holds as its provider id. */
static void each_sent_once(void)
{
    char *rows = sql_text("state.db", "SELECT recipient || ' ' || provider_id FROM deliveries "
                                      "WHERE status = 'sent' ORDER BY recipient");
    for (char *line = rows; line && *line;) {
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        char *sp = strchr(line, ' ');
        assert_non_null(sp);
        *sp = '\0';
        char to[300], qid[64];
        snprintf(to, sizeof to, "to=<%s>, relay=none", line);
        snprintf(qid, sizeof qid, ": %s: to=<", sp + 1);
        assert_true(strlen(sp + 1) >= 6); /* Postfix's "queued as ID" */
        assert_int_equal(log_count(to, "status=sent"), 1);
        assert_int_equal(log_count(qid, "status=sent"), 1);
        line = end ? end + 1 : line + strlen(line);
    }
    free(rows);
}

/* ------------------------------------------------------------------ */
/* tests                                                               */
/* ------------------------------------------------------------------ */

/* A campaign reaches Postfix, every message exactly once: pipelined
 * (ALL), or each command waiting for its reply (SERIAL), in one session. */
static void test_campaign_reaches_postfix_once(void **st)
{
    skip_unless_postfix();
    int l = *(int *)*st;
    const char *domain = l == ALL ? "once-piped.example" : "once-serial.example";
    addresses(domain);
    long long planned = campaign("Hello");
    assert_int_equal(planned, PROFILES);
    size_t mark = log_lines();
    assert_int_equal(run_campaign(), 0);
    assert_int_equal(sql_count("SELECT count(*) FROM deliveries WHERE status = 'sent'"), planned);
    assert_int_equal((long long)discarded(domain, (size_t)planned), planned);
    each_sent_once();
    char stats[128];
    snprintf(stats, sizeof stats, " mail=%d rcpt=%d data=%d ", PROFILES, PROFILES, PROFILES);
    assert_int_equal(log_wait_from(mark, "disconnect from", stats, 1), 1);
    assert_int_equal(log_count("improper command pipelining", NULL), 0);
    /* the EHLO name: fully qualified, or the address literal */
    char *path = pf_path("maillog");
    char *log = file_read(path, NULL);
    free(path);
    char from[300];
    snprintf(from, sizeof from, "@%s> proto=ESMTP helo=<", domain);
    const char *h = strstr(log, from);
    assert_non_null(h);
    h += strlen(from);
    size_t n = strcspn(h, ">");
    print_message("EHLO %.*s\n", (int)n, h);
    assert_true(memchr(h, '.', n) != NULL || (h[0] == '[' && h[n - 1] == ']'));
    free(log);
}

/* Refused recipients, pipelined and not: each row keeps Postfix's whole
 * reply with its enhanced status code; the rest of the batch goes. */
static void test_refused_recipient_keeps_postfix_reason(void **st)
{
    skip_unless_postfix();
    int l = *(int *)*st;
    const char *domain = l == ALL ? "refused-piped.example" : "refused-serial.example";
    addresses(domain);
    char sql[256];
    snprintf(sql, sizeof sql, "UPDATE profiles SET email = 'refused@%s' WHERE rowid = 3", domain);
    crm(sql);
    snprintf(sql, sizeof sql, "UPDATE profiles SET email = 'policy@%s' WHERE rowid = 4", domain);
    crm(sql);
    long long planned = campaign("Hello");
    assert_int_equal(planned, PROFILES);
    size_t mark = log_lines();
    run_campaign();
    char q[512], want[512];
    snprintf(q, sizeof q,
             "SELECT status || '|' || attempts || '|' || reason FROM deliveries WHERE recipient "
             "= 'refused@%s'",
             domain);
    char *row = sql_text("state.db", q);
    snprintf(want, sizeof want,
             "failed|1|RCPT TO: 550 5.1.1 <refused@%s>: Recipient address rejected: no such "
             "user here",
             domain);
    assert_string_equal(row, want);
    free(row);
    snprintf(q, sizeof q,
             "SELECT status || '|' || attempts || '|' || reason FROM deliveries WHERE recipient "
             "= 'policy@%s'",
             domain);
    row = sql_text("state.db", q);
    snprintf(want, sizeof want,
             "failed|1|RCPT TO: 554 5.7.1 <policy@%s>: Recipient address rejected: Access "
             "denied",
             domain);
    assert_string_equal(row, want);
    free(row);
    assert_int_equal(sql_count("SELECT count(*) FROM deliveries WHERE status = 'sent'"),
                     planned - 2);
    assert_int_equal((long long)discarded(domain, (size_t)(planned - 2)), planned - 2);
    each_sent_once();
    /* Postfix's count of the session's commands (accepted/all): the DATA
     * that went pipelined behind each refused RCPT was refused too; one
     * after its RCPT's reply is never sent */
    char data[32], stats[128];
    if (l == ALL)
        snprintf(data, sizeof data, "%d/%d", PROFILES - 2, PROFILES);
    else
        snprintf(data, sizeof data, "%d", PROFILES - 2);
    snprintf(stats, sizeof stats, " mail=%d rcpt=%d/%d data=%s ", PROFILES, PROFILES - 2, PROFILES,
             data);
    assert_int_equal(log_wait_from(mark, "disconnect from", stats, 1), 1);
    assert_int_equal(log_count("improper command pipelining", NULL), 0);
}

/* A text over message_size_limit. Where SIZE is offered (ALL, Postfix
 * saying its limit in EHLO) the message is failed before MAIL FROM goes,
 * nothing of it reaches Postfix; where it is not (NO_SIZE) it goes with
 * DATA and its row keeps Postfix's reply to the final dot, "552 5.3.4". */
static void test_oversized_message(void **st)
{
    skip_unless_postfix();
    int l = *(int *)*st;
    const char *domain = l == ALL ? "big-size.example" : "big-nosize.example";
    addresses(domain);
    size_t len = MESSAGE_LIMIT + 5000;
    char *big = malloc(len + 1);
    for (size_t i = 0; i < len; i++)
        big[i] = i % 64 == 63 ? ' ' : 'a' + (char)(i % 26);
    big[len] = '\0';
    long long planned = campaign(big);
    free(big);
    assert_int_equal(planned, PROFILES);
    const char *too_big = "queue file size limit exceeded";
    size_t mark = log_lines();
    assert_int_equal(run_campaign(), 1);
    assert_int_equal(sql_count("SELECT count(*) FROM deliveries WHERE status = 'failed' AND "
                               "attempts = 1"),
                     planned);
    char q[256];
    if (l == ALL) {
        snprintf(q, sizeof q,
                 "SELECT count(*) FROM deliveries WHERE reason LIKE 'MAIL FROM: the message is "
                 "%% bytes, over the %d of SMTP 127.0.0.1:%d (SIZE)'",
                 MESSAGE_LIMIT, ports[ALL]);
        assert_int_equal(sql_count(q), planned);
        assert_int_equal(log_count(domain, NULL), 0); /* not even its envelope */
        assert_int_equal(log_count_from(mark, "postfix/smtpd[", too_big), 0);
    } else {
        assert_int_equal(sql_count("SELECT count(*) FROM deliveries WHERE reason = 'DATA: 552 "
                                   "5.3.4 Error: message file too big'"),
                         planned);
        /* Postfix read each text to its end and said no to it */
        assert_int_equal(log_wait_from(mark, "postfix/smtpd[", too_big, (size_t)planned), planned);
    }
    assert_int_equal((long long)discarded(domain, 0), 0);
}

/* An internationalised address (a UTF-8 local part and domain) goes with
 * SMTPUTF8 and Postfix takes it; where SMTPUTF8 is not offered it is
 * failed, saying so, before anything of it is sent. */
static void test_smtputf8_address(void **st)
{
    skip_unless_postfix();
    int l = *(int *)*st;
    const char *domain = l == ALL ? "utf8.example" : "utf8-no.example";
    addresses(domain);
    char sql[256], addr[128];
    snprintf(addr, sizeof addr,
             "j\xc3\xb6rg@b\xc3\xbc"
             "cher-%s",
             domain);
    snprintf(sql, sizeof sql, "UPDATE profiles SET email = '%s' WHERE rowid = 2", addr);
    crm(sql);
    long long planned = campaign("Hello");
    assert_int_equal(planned, PROFILES);
    run_campaign();
    char q[512];
    snprintf(q, sizeof q,
             "SELECT status || '|' || coalesce(reason, '') FROM deliveries WHERE recipient = "
             "'%s'",
             addr);
    char *row = sql_text("state.db", q);
    char to[300];
    snprintf(to, sizeof to, "to=<%s>, relay=none", addr);
    if (l == ALL) {
        assert_string_equal(row, "sent|");
        assert_int_equal(sql_count("SELECT count(*) FROM deliveries WHERE status = 'sent'"),
                         planned);
        assert_int_equal((long long)discarded(domain, (size_t)(planned - 1)), planned - 1);
        assert_int_equal(log_count(to, "status=sent"), 1);
        each_sent_once();
    } else {
        char want[512];
        snprintf(want, sizeof want,
                 "failed|RCPT TO: <%s> is an internationalised address and SMTP 127.0.0.1:%d "
                 "does not offer SMTPUTF8",
                 addr, ports[NO_SIZE]);
        assert_string_equal(row, want);
        assert_int_equal((long long)discarded(domain, (size_t)(planned - 1)), planned - 1);
        assert_int_equal(log_count(addr, NULL), 0);
    }
    free(row);
}

/* A 4xx (a greylisting or busy mailbox's) is retried, each time asking
 * Postfix again, and when the retries run out the row keeps Postfix's
 * last reply; the others go once. */
static void test_transient_refusal_retried(void **st)
{
    skip_unless_postfix();
    const char *domain = "busy.example";
    addresses(domain);
    crm("UPDATE profiles SET email = 'busy@busy.example' WHERE rowid = 5");
    long long planned = campaign("Hello");
    assert_int_equal(planned, PROFILES);
    size_t mark = log_lines();
    run_campaign();
    char *row = sql_text("state.db", "SELECT status || '|' || attempts || '|' || reason FROM "
                                     "deliveries WHERE recipient = 'busy@busy.example'");
    assert_string_equal(row, "failed|4|gave up after 4 attempts: RCPT TO: 450 4.2.1 "
                             "<busy@busy.example>: Recipient address "
                             "rejected: mailbox busy");
    free(row);
    /* the first try and the 3 retries, each an RCPT Postfix refused */
    assert_int_equal(log_wait_from(mark, "NOQUEUE: reject: RCPT", "to=<busy@busy.example>", 4), 4);
    assert_int_equal(sql_count("SELECT count(*) FROM deliveries WHERE status = 'sent'"),
                     planned - 1);
    assert_int_equal((long long)discarded(domain, (size_t)(planned - 1)), planned - 1);
    each_sent_once();
}

/* What Postfix keeps (a Maildir, by its virtual delivery agent) is what
 * baton wrote, read back by Python's email package: a line that is one
 * dot, lines that begin with dots (doubled on the wire, undone by
 * Postfix), a line of 1,500 bytes (over SMTP's 998: quoted-printable soft
 * breaks), UTF-8; each message once. */
static void test_content_kept_by_postfix(void **st)
{
    skip_unless_postfix();
    addresses("box.example");
    char longline[1501];
    for (size_t i = 0; i < sizeof longline - 1; i++)
        longline[i] = i % 50 == 49 ? '.' : 'a' + (char)(i % 26);
    longline[sizeof longline - 1] = '\0';
    char want[2048], cfg_text[2100];
    snprintf(want, sizeof want,
             "Hello,\n.\n..two\n.one\n%s\nGr\xc3\xbc\xc3\x9f"
             "e \xe2\x80\x94 \xf0\x9f\x8e\x81\n.",
             longline);
    /* the same, as a libconfig string */
    size_t k = 0;
    for (const char *p = want; *p && k < sizeof cfg_text - 3; p++) {
        if (*p == '\n') {
            cfg_text[k++] = '\\';
            cfg_text[k++] = 'n';
        } else
            cfg_text[k++] = *p;
    }
    cfg_text[k] = '\0';
    long long planned = campaign(cfg_text);
    assert_int_equal(planned, PROFILES);
    size_t mark = log_lines();
    assert_int_equal(run_campaign(), 0);
    assert_int_equal(
        log_wait_from(mark, "@box.example>, relay=virtual", "status=sent", (size_t)planned),
        planned);

    char *box = pf_path("mail/box/new");
    DIR *d = opendir(box);
    assert_non_null(d);
    json_t *keys = json_object();
    struct dirent *e;
    size_t files = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        files++;
        char *cmd, *out = NULL;
        if (asprintf(&cmd, "/usr/bin/python3 %s/tests/support/mime_check.py %s/%s",
                     getenv("BATON_SRC"), box, e->d_name) < 0)
            abort();
        assert_int_equal(run_capture(cmd, &out, NULL), 0);
        free(cmd);
        json_t *m = json_loads(out, 0, NULL);
        assert_non_null(m);
        free(out);
        assert_int_equal(json_integer_value(json_object_get(m, "defects")), 0);
        assert_string_equal(json_string_value(json_object_get(m, "content_type")), "text/plain");
        json_t *parts = json_object_get(m, "parts");
        assert_int_equal(json_array_size(parts), 1);
        const char *text = json_string_value(json_object_get(json_array_get(parts, 0), "text"));
        size_t n = strlen(text);
        while (n && text[n - 1] == '\n')
            n--;
        assert_int_equal(n, strlen(want));
        assert_memory_equal(text, want, n);
        const char *key = json_string_value(json_object_get(m, "x_baton_key"));
        assert_non_null(key);
        assert_null(json_object_get(keys, key)); /* once each */
        json_object_set_new(keys, key, json_true());
        json_decref(m);
    }
    closedir(d);
    free(box);
    assert_int_equal(files, planned);
    assert_int_equal(json_object_size(keys), planned);
    json_decref(keys);
}

/* Postfix ends a session that made too many errors (421 4.7.0 Error: too
 * many errors, smtpd_hard_error_limit): the refused keep their 5.1.1, the
 * others are sent, on a new session, once each. */
static void test_too_many_errors(void **st)
{
    skip_unless_postfix();
    const char *domain = "errors.example";
    addresses(domain);
    crm("UPDATE profiles SET email = 'refused@errors.example' WHERE rowid <= 8");
    long long planned = campaign("Hello");
    assert_int_equal(planned, PROFILES);
    size_t mark = log_lines();
    run_campaign();
    assert_int_equal(
        sql_count(
            "SELECT count(*) FROM deliveries WHERE status = 'failed' AND reason = 'RCPT TO: 550 "
            "5.1.1 <refused@errors.example>: Recipient address rejected: no such user here'"),
        8);
    assert_int_equal(sql_count("SELECT count(*) FROM deliveries WHERE status = 'sent'"),
                     planned - 8);
    assert_int_equal((long long)discarded(domain, (size_t)(planned - 8)), planned - 8);
    each_sent_once();
    assert_true(log_wait_from(mark, "too many errors", NULL, 1) > 0);
}

/* STARTTLS with Postfix, its certificate checked against tls_ca_file:
 * the campaign goes encrypted, once each; without STARTTLS the rows keep
 * Postfix's "530 5.7.0 Must issue a STARTTLS command first", and nothing
 * of them is taken. */
static void test_starttls(void **st)
{
    skip_unless_postfix();
    const char *domain = "tls.example";
    addresses(domain);
    char extra[1200];
    snprintf(extra, sizeof extra, "starttls = \"required\"; tls_ca_file = \"%s/etc/tls.pem\";",
             pfdir);
    write_config(ports[TLS], extra);
    long long planned = campaign("Hello");
    assert_int_equal(planned, PROFILES);
    size_t mark = log_lines();
    assert_int_equal(run_campaign(), 0);
    assert_int_equal(sql_count("SELECT count(*) FROM deliveries WHERE status = 'sent'"), planned);
    assert_int_equal((long long)discarded(domain, (size_t)planned), planned);
    each_sent_once();
    /* one session, encrypted */
    assert_int_equal(log_wait_from(mark, "TLS connection established from", NULL, 1), 1);
    char stats[128];
    snprintf(stats, sizeof stats, " ehlo=2 starttls=1 mail=%d rcpt=%d data=%d ", PROFILES, PROFILES,
             PROFILES);
    assert_int_equal(log_wait_from(mark, "disconnect from", stats, 1), 1);

    /* the same campaign again, in clear: Postfix says no to each */
    addresses("ctls.example");
    mark = log_lines();
    write_config(ports[TLS], "starttls = \"disabled\";");
    free(file_write(dir, "campaigns/c.cfg",
                    "campaign: { name = \"c2\"; activities = (\n"
                    "  { id = \"a\"; type = \"build_audience\"; dimension = \"profiles\"; },\n"
                    "  { id = \"m\"; type = \"send\"; channel = \"email\"; input = \"a\";\n"
                    "    subject = \"Hi\"; text = \"Hello\"; } ); };\n"));
    char *out, *err;
    int rc = baton(&out, &err, "campaign run c2");
    print_message("campaign run c2: exit %d\n%s", rc, err);
    free(out);
    free(err);
    assert_int_equal(rc, 1);
    /* the first MAIL FROM's 530 is the session's answer: the others are
     * failed with it, unsent (each would be 3 errors more, and Postfix
     * ends a session after 20 with a 421: another session, another try) */
    assert_int_equal(sql_count("SELECT count(*) FROM deliveries WHERE status = 'failed' AND "
                               "attempts = 1 AND reason = 'MAIL FROM: 530 5.7.0 Must issue a "
                               "STARTTLS command first'"),
                     planned);
    assert_int_equal(log_wait_from(mark, "disconnect from", " ehlo=1 mail=0/1 ", 1), 1);
    assert_int_equal(log_count_from(mark, "too many errors", NULL), 0);
    assert_int_equal((long long)discarded("ctls.example", 0), 0);
}

#define CASE(name, fn, l)                                                                          \
    {                                                                                              \
        name, fn, setup, teardown, &listener[l]                                                    \
    }
int main(void)
{
    static int listener[LISTENERS] = {ALL, SERIAL, NO_SIZE, STRICT, TLS};
    const struct CMUnitTest tests[] = {
        CASE("campaign_once_pipelined", test_campaign_reaches_postfix_once, ALL),
        CASE("campaign_once_serial", test_campaign_reaches_postfix_once, SERIAL),
        CASE("refused_recipient_pipelined", test_refused_recipient_keeps_postfix_reason, ALL),
        CASE("refused_recipient_serial", test_refused_recipient_keeps_postfix_reason, SERIAL),
        CASE("oversized_with_size", test_oversized_message, ALL),
        CASE("oversized_without_size", test_oversized_message, NO_SIZE),
        CASE("smtputf8_offered", test_smtputf8_address, ALL),
        CASE("smtputf8_not_offered", test_smtputf8_address, NO_SIZE),
        CASE("transient_refusal_retried", test_transient_refusal_retried, ALL),
        CASE("too_many_errors", test_too_many_errors, STRICT),
        CASE("starttls", test_starttls, TLS),
        CASE("content_kept_by_postfix", test_content_kept_by_postfix, ALL),
    };
    return cmocka_run_group_tests(tests, postfix_start, postfix_stop);
}
