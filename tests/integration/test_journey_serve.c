/* baton serve end to end, with a real broker: events published at QoS 1
 * to mosquitto while baton is killed (-9) and restarted; afterwards every
 * event is accounted for once (one instance per event, each completed) and
 * no push message went out twice (one a kill caught in deliver() is
 * "uncertain", never sent again). Also: SIGHUP turns a channel on
 * without a restart, and a broken configuration is refused while the
 * running one goes on; a valid one that fails to start is rolled back to
 * the previous one, which keeps routing (and when even that cannot start,
 * serve exits 1 with both reasons); one serve per data directory; dead
 * letters readable by `journey status` while serve runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support/fs.h"
#include "support/server.h"

static char *dir;
static test_server broker;
/* every process a test starts, killed by teardown if a failed assertion
 * left it running */
static pid_t spawned[16];
static int nspawned;

static int setup(void **state)
{
    dir = tmpdir_make("jserve");
    if (server_start_mosquitto(&broker, dir, 0) != 0)
        fail_msg("cannot start mosquitto");
    return 0;
}

static int teardown(void **state)
{
    for (int i = 0; i < nspawned; i++)
        if (spawned[i] > 0 && waitpid(spawned[i], NULL, WNOHANG) == 0) {
            kill(spawned[i], SIGKILL);
            waitpid(spawned[i], NULL, 0);
        }
    nspawned = 0;
    server_stop(&broker);
    if (!getenv("BATON_KEEP_TMP"))
        tmpdir_remove(dir);
    free(dir);
    return 0;
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Start a command in the background with stdout and stderr to a file. */
static pid_t spawn(const char *cmd, const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        char *full;
        if (asprintf(&full, "exec %s >>%s 2>&1", cmd, log) < 0)
            _exit(127);
        execl("/bin/sh", "sh", "-c", full, (char *)NULL);
        _exit(127);
    }
    if (nspawned < 16)
        spawned[nspawned++] = pid;
    return pid;
}

static int wait_exit(pid_t pid, int timeout_ms)
{
    for (int i = 0; i < timeout_ms / 10; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        nap_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

/* extra_channels and sources: more entries of those groups ("" for none) */
static void write_config_with(const char *push_enabled, const char *extra_channels,
                              const char *sources)
{
    char text[8192];
    snprintf(
        text, sizeof text,
        "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; log = { level = \"info\"; }; };\n"
        "sources: { %s };\n"
        "events: { mqtt: { plugin = \"event_mqtt\"; broker = \"127.0.0.1:%d\";\n"
        "  topics = [ \"baton/events/#\" ]; client_id = \"baton-test\"; reconnect_max = \"2s\"; }; "
        "};\n"
        "channels: { push: { enabled = %s; plugin = \"channel_push\"; broker = \"127.0.0.1:%d\";\n"
        "  topic = \"push/{{ profile.id }}\"; client_id = \"baton-push-test\"; };\n"
        "  %s };\n"
        "journeys = [ \"journeys\" ];\n",
        getenv("BATON_PLUGINS"), sources, broker.port, push_enabled, broker.port, extra_channels);
    free(file_write(dir, "baton.cfg", text));
}

static void write_config(const char *push_enabled)
{
    write_config_with(push_enabled, "", "");
}

static void write_journey(void)
{
    char jdir[1024];
    snprintf(jdir, sizeof jdir, "%s/journeys", dir);
    mkdir(jdir, 0755);
    free(file_write(
        jdir, "order.cfg",
        "journey: { name = \"thanks\"; entry = { event = \"order\"; reentry = \"always\"; };\n"
        "  start = \"c\"; nodes = (\n"
        "    { id = \"c\"; type = \"condition\"; branches = ( { when = \"event.total > 0\"; next = "
        "\"push\"; } ); otherwise = \"done\"; },\n"
        "    { id = \"push\"; type = \"send\"; channel = \"push\"; title = \"Thanks\"; body = "
        "\"Your order of {{ event.total }}\"; next = \"done\"; },\n"
        "    { id = \"done\"; type = \"end\"; } ); };\n"));
}

static pid_t start_baton_log(const char *log)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s -c %s/baton.cfg serve", getenv("BATON_BIN"), dir);
    return spawn(cmd, log);
}

static pid_t start_baton(void)
{
    char log[1024];
    snprintf(log, sizeof log, "%s/baton.log", dir);
    return start_baton_log(log);
}

/* Until serve holds its data directory's lock (its pid in serve.lock):
 * from then on it takes SIGTERM as a graceful stop (before, the signal's
 * default action ends it). */
static void wait_serving(pid_t pid)
{
    char path[1024], want[32], got[32];
    snprintf(path, sizeof path, "%s/var/serve.lock", dir);
    snprintf(want, sizeof want, "%ld\n", (long)pid);
    for (int i = 0; i < 1000; i++) {
        FILE *f = fopen(path, "r");
        int same = f && fgets(got, sizeof got, f) && !strcmp(got, want);
        if (f)
            fclose(f);
        if (same)
            return;
        nap_ms(10);
    }
    fail_msg("baton serve (pid %ld) did not take %s", (long)pid, path);
}

/* The subscriber counts what the push channel delivered. */
static pid_t start_subscriber(const char *out)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mosquitto_sub -h 127.0.0.1 -p %d -q 1 -i counter -c -t 'push/#' -v",
             broker.port);
    pid_t pid = spawn(cmd, out);
    nap_ms(300);
    return pid;
}

static long lines_in(const char *path, long *distinct)
{
    char cmd[4096];
    /* distinct: messages by idempotency key (the push payload carries it) */
    snprintf(cmd, sizeof cmd, "wc -l < %s; grep -o '\"key\": *\"[^\"]*\"' %s | sort -u | wc -l",
             path, path);
    char *out = NULL;
    run_capture(cmd, &out, NULL);
    long n = -1, d = -1;
    if (out)
        sscanf(out, "%ld %ld", &n, &d);
    free(out);
    *distinct = d;
    return n;
}

static void test_kill_and_restart_under_load(void **state)
{
    enum { N = 3000 };
    write_config("true");
    write_journey();
    char events[1024], subout[1024], db[1024], inbox[1024];
    snprintf(events, sizeof events, "%s/events.jsonl", dir);
    snprintf(subout, sizeof subout, "%s/pushed.txt", dir);
    snprintf(db, sizeof db, "%s/var/state.db", dir);
    snprintf(inbox, sizeof inbox, "%s/var/inbox.db", dir);
    FILE *f = fopen(events, "w");
    for (int i = 0; i < N; i++)
        fprintf(f,
                "{\"id\": \"o-%d\", \"type\": \"order\", \"profile\": \"p%d\", \"data\": "
                "{\"total\": %d}}\n",
                i, i, 10 + i % 7);
    fclose(f);
    pid_t sub = start_subscriber(subout);
    pid_t baton = start_baton();
    nap_ms(500);
    /* the publisher sends every event at QoS 1 while baton is killed and
     * restarted under it */
    char cmd[2048], publog[1024];
    snprintf(cmd, sizeof cmd, "mosquitto_pub -h 127.0.0.1 -p %d -q 1 -t baton/events/in -l < %s",
             broker.port, events);
    snprintf(publog, sizeof publog, "%s/pub.log", dir);
    pid_t pub = spawn(cmd, publog);
    for (int k = 0; k < 3; k++) {
        nap_ms(150 + 100 * k);
        kill(baton, SIGKILL);
        waitpid(baton, NULL, 0);
        nap_ms(100);
        baton = start_baton();
    }
    wait_serving(baton); /* a SIGTERM below must find it serving */
    assert_int_equal(wait_exit(pub, 60000), 0);
    /* every event routed, every message final */
    long routed = 0, pushed = 0, distinct = 0, final = 0;
    for (int i = 0; i < 600; i++) {
        routed = db_long(db, "SELECT count(*) FROM journey_instances WHERE state = 'completed'");
        final =
            db_long(db, "SELECT count(*) FROM deliveries WHERE status IN ('sent', 'uncertain')");
        if (routed == N && final == N)
            break;
        nap_ms(100);
    }
    kill(baton, SIGTERM);
    assert_int_equal(wait_exit(baton, 30000), 0);
    nap_ms(300); /* the subscriber has what the broker had */
    kill(sub, SIGTERM);
    wait_exit(sub, 5000);
    pushed = lines_in(subout, &distinct);
    long sent = db_long(db, "SELECT count(*) FROM deliveries WHERE status = 'sent'");
    long uncertain = db_long(db, "SELECT count(*) FROM deliveries WHERE status = 'uncertain'");
    print_message("routed %ld of %d events; %ld messages sent, %ld uncertain (in deliver() at a"
                  " kill: not sent again), %ld distinct on the wire, %ld repeated\n",
                  routed, N, sent, uncertain, distinct, pushed - distinct);
    assert_int_equal(db_long(inbox, "SELECT count(*) FROM journey_inbox"), N);
    assert_int_equal(db_long(db, "SELECT count(*) FROM journey_instances"), N);
    assert_int_equal(routed, N);
    assert_int_equal(db_long(db, "SELECT count(DISTINCT profile) FROM journey_instances"), N);
    assert_int_equal(db_long(db, "SELECT count(*) FROM journey_sends WHERE status = 'pending'"), 0);
    /* nothing went out twice */
    assert_int_equal(pushed, distinct);
    /* each message has one row, final: sent, or uncertain — the batch a
     * kill caught in deliver() (batch = 100, one connection: at most 100
     * per kill), which may or may not have reached the broker */
    assert_int_equal(db_long(db, "SELECT count(*) FROM deliveries"), N);
    assert_int_equal(sent + uncertain, N);
    assert_true(uncertain <= 3 * 100);
    assert_int_equal(db_long(db, "SELECT count(*) FROM deliveries WHERE sending = 1"), 0);
    /* every message confirmed sent is on the wire; nothing else is */
    assert_true(distinct >= sent);
    assert_true(distinct <= sent + uncertain);
}

static void test_reload(void **state)
{
    write_config("false");
    write_journey();
    char db[1024];
    snprintf(db, sizeof db, "%s/var/state.db", dir);
    pid_t baton = start_baton();
    nap_ms(700);
    char cmd[1024];
    snprintf(
        cmd, sizeof cmd,
        "mosquitto_pub -h 127.0.0.1 -p %d -q 1 -t baton/events/in -m "
        "'{\"id\": \"r1\", \"type\": \"order\", \"profile\": \"a\", \"data\": {\"total\": 5}}'",
        broker.port);
    assert_int_equal(system(cmd), 0);
    for (int i = 0; i < 100 && db_long(db, "SELECT count(*) FROM journey_sends") < 1; i++)
        nap_ms(50);
    assert_int_equal(
        db_long(db,
                "SELECT count(*) FROM journey_sends WHERE status = 'skipped: channel disabled'"),
        1);
    /* a broken configuration is refused; the running one goes on */
    free(file_write(dir, "baton.cfg", "baton: { data_dir = \"var\"; ; };\n"));
    kill(baton, SIGHUP);
    nap_ms(500);
    /* then push is turned on */
    write_config("true");
    kill(baton, SIGHUP);
    nap_ms(1000);
    snprintf(
        cmd, sizeof cmd,
        "mosquitto_pub -h 127.0.0.1 -p %d -q 1 -t baton/events/in -m "
        "'{\"id\": \"r2\", \"type\": \"order\", \"profile\": \"b\", \"data\": {\"total\": 5}}'",
        broker.port);
    assert_int_equal(system(cmd), 0);
    for (int i = 0; i < 100 && db_long(db, "SELECT count(*) FROM journey_sends") < 2; i++)
        nap_ms(50);
    /* the send's row ends with its message's status */
    assert_int_equal(
        db_wait_for(db,
                    "SELECT count(*) FROM journey_send_outcomes WHERE profile = 'b' AND status"
                    " = 'sent'",
                    1, 10000),
        1);
    kill(baton, SIGTERM);
    assert_int_equal(wait_exit(baton, 30000), 0);
    char log[1024];
    snprintf(log, sizeof log, "%s/baton.log", dir);
    char *text = file_read(log, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "reload refused"));
    assert_non_null(strstr(text, "baton.cfg:1:"));
    assert_non_null(strstr(text, "reload done"));
    free(text);
}

static void publish(const char *id, const char *profile, const char *type)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "mosquitto_pub -h 127.0.0.1 -p %d -q 1 -t baton/events/in -m "
             "'{\"id\": \"%s\", \"type\": \"%s\", \"profile\": \"%s\", \"data\": {\"total\": 5}}'",
             broker.port, id, type, profile);
    assert_int_equal(system(cmd), 0);
}

/* Poll sql on db until it answers want (up to timeout_ms); the last answer. */
static int running(pid_t pid)
{
    return waitpid(pid, NULL, WNOHANG) == 0;
}

/* A reload into a valid configuration whose new channel cannot start (its
 * export folder would be inside a file): serve logs why, brings the
 * previous configuration back and goes on routing and pushing, events
 * published during the switch included. */
static void test_reload_failed_start_rolls_back(void **state)
{
    write_config("true");
    write_journey();
    char db[1024], subout[1024], log[1024];
    snprintf(db, sizeof db, "%s/var/state.db", dir);
    snprintf(subout, sizeof subout, "%s/pushed.txt", dir);
    snprintf(log, sizeof log, "%s/baton.log", dir);
    pid_t sub = start_subscriber(subout);
    pid_t baton = start_baton();
    nap_ms(700);
    publish("f1", "a", "order");
    assert_int_equal(
        db_wait_for(db, "SELECT count(*) FROM deliveries WHERE status = 'sent'", 1, 10000), 1);

    char mail[2048];
    snprintf(mail, sizeof mail,
             "mail: { plugin = \"channel_directmail\"; dir = \"%s/baton.cfg/exports\"; };", dir);
    write_config_with("true", mail, "");
    kill(baton, SIGHUP);
    publish("f2", "b", "order"); /* while it switches */
    nap_ms(1500);
    assert_true(running(baton));
    publish("f3", "c", "order"); /* after: the previous configuration routes it */
    assert_int_equal(db_wait_for(db,
                                 "SELECT count(*) FROM journey_instances WHERE state = 'completed'",
                                 3, 15000),
                     3);
    assert_int_equal(
        db_wait_for(db, "SELECT count(*) FROM deliveries WHERE status = 'sent'", 3, 15000), 3);
    long distinct = 0;
    for (int i = 0; i < 100 && (lines_in(subout, &distinct), distinct) < 3; i++)
        nap_ms(50);
    assert_int_equal(distinct, 3);

    /* a second SIGHUP with the same broken file fails the same way and
     * still comes back: the rollback left a configuration that reloads */
    kill(baton, SIGHUP);
    nap_ms(1500);
    assert_true(running(baton));
    publish("f4", "d", "order");
    assert_int_equal(
        db_wait_for(db, "SELECT count(*) FROM deliveries WHERE status = 'sent'", 4, 15000), 4);
    /* a configuration whose own file is fine (log level error) but whose
     * journey is not is refused, and leaves the running logging alone:
     * the next SIGHUP is still logged at info */
    char *cfgpath = NULL, *jpath = NULL;
    assert_true(asprintf(&cfgpath, "%s/baton.cfg", dir) > 0);
    write_config("true");
    char *cfg = file_read(cfgpath, NULL);
    char *lvl = strstr(cfg, "level = \"info\"");
    assert_non_null(lvl);
    memcpy(lvl, "level = \"warn\"", strlen("level = \"warn\""));
    free(file_write(NULL, cfgpath, cfg));
    free(cfg);
    jpath = file_write(dir, "journeys/broken.cfg", "journey: { name = \"broken\"; };\n");
    kill(baton, SIGHUP);
    nap_ms(700);
    unlink(jpath);
    free(jpath);
    free(cfgpath);
    /* and once fixed, the reload goes through */
    write_config("true");
    kill(baton, SIGHUP);
    nap_ms(1000);
    kill(baton, SIGTERM);
    assert_int_equal(wait_exit(baton, 30000), 0);
    kill(sub, SIGTERM);
    wait_exit(sub, 5000);
    assert_int_equal(db_long(db, "SELECT count(*) FROM journey_sends WHERE status = 'pending'"), 0);

    char *text = file_read(log, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "channels.mail: start failed:"));
    assert_non_null(strstr(text, "cannot create the export folder: Not a directory"));
    assert_non_null(strstr(text, "reload failed: the new configuration did not start: "));
    assert_non_null(strstr(text, "running the previous configuration"));
    assert_non_null(strstr(text, "reload done"));
    assert_null(strstr(text, "did not come back"));
    assert_non_null(strstr(text, "journeys/broken.cfg:"));
    int hups = 0;
    for (const char *p = text; (p = strstr(p, "SIGHUP: re-reading")); p++)
        hups++;
    assert_int_equal(hups, 4);
    free(text);
}

/* When the previous configuration cannot come back either (its data
 * source was replaced by a folder meanwhile), serve exits 1 and says both
 * reasons. */
static void test_reload_rollback_fails(void **state)
{
    char crm[1024], src[2048], mail[2048], log[1024];
    snprintf(crm, sizeof crm, "%s/crm.db", dir);
    snprintf(src, sizeof src, "crm: { plugin = \"source_sqlite\"; path = \"%s\"; };", crm);
    snprintf(log, sizeof log, "%s/baton.log", dir);
    write_config_with("true", "", src);
    write_journey();
    pid_t baton = start_baton();
    nap_ms(700);
    assert_true(running(baton));
    char cmd[6144];
    snprintf(cmd, sizeof cmd, "rm -f %s %s-wal %s-shm && mkdir %s", crm, crm, crm, crm);
    assert_int_equal(system(cmd), 0);
    snprintf(mail, sizeof mail,
             "mail: { plugin = \"channel_directmail\"; dir = \"%s/baton.cfg/exports\"; };", dir);
    write_config_with("true", mail, "");
    kill(baton, SIGHUP);
    assert_int_equal(wait_exit(baton, 30000), 1);
    char *text = file_read(log, NULL);
    assert_non_null(text);
    char *both = strstr(text, "did not come back");
    assert_non_null(both);
    char *line_end = strchr(both, '\n');
    assert_non_null(line_end);
    *line_end = '\0';
    char *line = both;
    while (line > text && line[-1] != '\n')
        line--;
    print_message("%s\n", line);
    assert_non_null(strstr(line, "channels.mail: start failed"));
    assert_non_null(strstr(line, "sources.crm: start failed"));
    free(text);
}

/* While serve runs: `journey status` reads the dead letters out of the
 * inbox it is writing (it used to hold inbox.db locked exclusively), and
 * a second serve on the same data directory refuses to start. */
static void test_status_and_lock_while_serving(void **state)
{
    write_config("false");
    write_journey();
    char db[1024], cmd[4096], log2[1024];
    snprintf(db, sizeof db, "%s/var/state.db", dir);
    snprintf(log2, sizeof log2, "%s/second.log", dir);
    pid_t baton = start_baton();
    nap_ms(700);
    publish("d1", "a", "order");
    snprintf(cmd, sizeof cmd,
             "mosquitto_pub -h 127.0.0.1 -p %d -q 1 -t baton/events/in -m '{\"id\": \"d2\", "
             "\"profile\": \"b\"}' && mosquitto_pub -h 127.0.0.1 -p %d -q 1 -t baton/events/in "
             "-m 'not json'",
             broker.port, broker.port);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(db_wait_for(db, "SELECT count(*) FROM journey_instances", 1, 10000), 1);

    char *out = NULL, *err = NULL;
    long dead = -1;
    for (int i = 0; i < 100 && dead != 2; i++) { /* the dead letters commit with their batch */
        free(out);
        free(err);
        out = err = NULL;
        snprintf(cmd, sizeof cmd, "%s -c %s/baton.cfg journey status thanks --json",
                 getenv("BATON_BIN"), dir);
        assert_int_equal(run_capture(cmd, &out, &err), 0);
        /* the journey's own count (each node has one too) */
        json_t *o = json_loads(out, 0, NULL);
        assert_non_null(o);
        assert_true(json_is_integer(json_object_get(o, "dead_letters")));
        dead = (long)json_integer_value(json_object_get(o, "dead_letters"));
        json_decref(o);
        if (dead != 2)
            nap_ms(50);
    }
    assert_true(running(baton));
    assert_int_equal(dead, 2);
    assert_non_null(strstr(out, "\"reason\": \"no 'type'\""));
    assert_non_null(strstr(out, "\"source\": \"events.mqtt\""));
    assert_non_null(strstr(out, "\"body\": \"not json\""));
    assert_non_null(strstr(out, "\"profiles\": 1"));
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, "%s -c %s/baton.cfg journey status thanks", getenv("BATON_BIN"), dir);
    assert_int_equal(run_capture(cmd, &out, &err), 0);
    assert_non_null(strstr(out, "dead letters (events refused, every journey): 2; the latest 2:"));
    assert_non_null(strstr(out, "events.mqtt: no 'type': {\"id\": \"d2\", \"profile\": \"b\"}\n"));
    free(out);
    free(err);
    /* an operator's own reader too */
    char inbox[1024];
    snprintf(inbox, sizeof inbox, "%s/var/inbox.db", dir);
    assert_int_equal(db_long(inbox, "SELECT count(*) FROM journey_inbox"), 1);

    /* one serve per data directory */
    pid_t second = start_baton_log(log2);
    assert_int_equal(wait_exit(second, 10000), 1);
    char *text = file_read(log2, NULL);
    assert_non_null(text);
    snprintf(cmd, sizeof cmd, "var/serve.lock: another baton serve (pid %ld) is running",
             (long)baton);
    print_message("%s", text);
    assert_non_null(strstr(text, cmd));
    free(text);
    assert_true(running(baton));
    kill(baton, SIGTERM);
    assert_int_equal(wait_exit(baton, 30000), 0);
}

/* update_profile through source_sqlite (writable = true): the write is
 * visible to the next node; after kill -9 and a restart nothing is
 * written again, and a write left pending by a crash is redone with the
 * values recorded in its step (points + 10 applied once); a source
 * without writable = true is refused by check. */
static void exec_sql(const char *db, const char *sql)
{
    sqlite3 *h;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    char *msg = NULL;
    if (sqlite3_exec(h, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(h);
}

static void write_update_config(const char *writable)
{
    char text[4096];
    free(
        file_write(dir, "schema.cfg",
                   "entities: { profiles: { key = \"id\";\n"
                   "  fields: { id = \"string\"; tier = \"string\"; points = \"int\"; }; }; };\n"));
    snprintf(text, sizeof text,
             "crm: { plugin = \"source_sqlite\"; path = \"crm.db\"; schema = \"schema.cfg\";%s };",
             writable);
    write_config_with("false", "", text);
    char path[1024];
    snprintf(path, sizeof path, "%s/baton.cfg", dir);
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fputs("profiles = \"crm\";\n", f);
    fclose(f);
    char jdir[1024];
    snprintf(jdir, sizeof jdir, "%s/journeys", dir);
    mkdir(jdir, 0755);
    free(file_write(
        jdir, "up.cfg",
        "journey: { name = \"up\"; entry = { event = \"order\"; };\n"
        "  start = \"up\"; nodes = (\n"
        "    { id = \"up\"; type = \"update_profile\"; set = ( { field = \"tier\"; value = "
        "\"'silver'\"; }, { field = \"points\"; value = \"profile.points + 10\"; } ); next = "
        "\"c\"; },\n"
        "    { id = \"c\"; type = \"condition\"; branches = ( { when = \"profile.tier == 'silver' "
        "and profile.points == 20\"; next = \"ok\"; } ); otherwise = \"bad\"; },\n"
        "    { id = \"ok\"; type = \"end\"; }, { id = \"bad\"; type = \"end\"; } ); };\n"));
}

static void test_update_profile(void **state)
{
    char crm[1024], db[1024], cmd[4096];
    snprintf(crm, sizeof crm, "%s/crm.db", dir);
    snprintf(db, sizeof db, "%s/var/state.db", dir);
    exec_sql(crm, "CREATE TABLE profiles (id TEXT PRIMARY KEY, tier TEXT, points INTEGER); INSERT "
                  "INTO profiles VALUES ('a', 'bronze', 10), ('b', 'bronze', 10)");

    write_update_config("");
    char *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd, "%s -c %s/baton.cfg check", getenv("BATON_BIN"), dir);
    assert_int_equal(run_capture(cmd, &out, &err), 2);
    if (!strstr(err, "update_profile writes"))
        print_message("%s%s", out, err);
    assert_non_null(strstr(err, "node 'up': update_profile writes the profiles source "
                                "sources.crm, which does not say writable = true"));
    free(out);
    free(err);

    write_update_config(" writable = true;");
    pid_t baton = start_baton();
    wait_serving(baton);
    nap_ms(500);
    publish("u1", "a", "order");
    assert_int_equal(
        db_wait_for(db, "SELECT count(*) FROM journey_instances WHERE path = 'up c ok'", 1, 10000),
        1);
    assert_int_equal(db_long(crm, "SELECT points FROM profiles WHERE id = 'a'"), 20);
    assert_int_equal(db_long(db,
                             "SELECT count(*) FROM journey_sends WHERE kind = 'update' AND "
                             "status = 'ok' AND response = '{\"tier\":\"silver\",\"points\":20}'"),
                     1);
    kill(baton, SIGKILL);
    waitpid(baton, NULL, 0);
    baton = start_baton();
    wait_serving(baton);
    nap_ms(500);
    publish("u2", "b", "order");
    /* then a crash between the step's commit and the write: the update
     * left pending, its instance at the node */
    assert_int_equal(
        db_wait_for(db, "SELECT count(*) FROM journey_instances WHERE path = 'up c ok'", 2, 10000),
        2);
    kill(baton, SIGKILL);
    waitpid(baton, NULL, 0);
    exec_sql(db, "UPDATE journey_sends SET status = 'pending' WHERE kind = 'update' AND profile = "
                 "'b'; UPDATE journey_instances SET state = 'active', wait = 'action', node = "
                 "'up', path = 'up' WHERE profile = 'b'");
    baton = start_baton();
    wait_serving(baton);
    assert_int_equal(db_wait_for(db,
                                 "SELECT count(*) FROM journey_sends WHERE kind = 'update' AND "
                                 "profile = 'b' AND status = 'ok'",
                                 1, 10000),
                     1);
    assert_int_equal(
        db_wait_for(db, "SELECT count(*) FROM journey_instances WHERE path = 'up c ok'", 2, 10000),
        2);
    /* the recorded 20 written again, not 20 + 10 */
    assert_int_equal(db_long(crm, "SELECT points FROM profiles WHERE id = 'b'"), 20);
    assert_int_equal(db_long(crm, "SELECT points FROM profiles WHERE id = 'a'"), 20);
    kill(baton, SIGTERM);
    assert_int_equal(wait_exit(baton, 30000), 0);
}

/* A profile the profiles source lacks does not enter: a dead letter
 * "profile not found" for each journey that refused it, readable by
 * journey status; missing_profile = "enter" lets it in. Not twice after a
 * restart. */
static void test_missing_profile(void **state)
{
    char crm[1024], db[1024], inbox[1024], jdir[1100], cmd[4096];
    snprintf(crm, sizeof crm, "%s/crm.db", dir);
    snprintf(db, sizeof db, "%s/var/state.db", dir);
    snprintf(inbox, sizeof inbox, "%s/var/inbox.db", dir);
    exec_sql(crm, "CREATE TABLE profiles (id TEXT PRIMARY KEY, tier TEXT, points INTEGER); INSERT "
                  "INTO profiles VALUES ('a', 'bronze', 10)");
    write_update_config("");
    snprintf(jdir, sizeof jdir, "%s/journeys", dir);
    char path[1200];
    snprintf(path, sizeof path, "%s/up.cfg", jdir);
    assert_int_equal(remove(path), 0);
    free(file_write(jdir, "strict.cfg",
                    "journey: { name = \"strict\"; entry = { event = \"order\"; };\n"
                    "  start = \"e\"; nodes = ( { id = \"e\"; type = \"end\"; } ); };\n"));
    free(file_write(jdir, "lenient.cfg",
                    "journey: { name = \"lenient\"; entry = { event = \"order\"; missing_profile = "
                    "\"enter\"; };\n"
                    "  start = \"e\"; nodes = ( { id = \"e\"; type = \"end\"; } ); };\n"));
    pid_t baton = start_baton();
    wait_serving(baton);
    nap_ms(500);
    publish("m1", "a", "order");
    publish("m2", "ghost", "order");
    assert_int_equal(db_wait_for(db, "SELECT count(*) FROM journey_instances", 3, 10000), 3);
    assert_int_equal(
        db_wait_for(inbox,
                    "SELECT count(*) FROM journey_dead_letters WHERE reason = 'profile "
                    "not found' AND source = 'journey:strict' AND body LIKE "
                    "'%\"id\":\"m2\"%\"profile\":\"ghost\"%'",
                    1, 10000),
        1);
    assert_int_equal(db_long(db, "SELECT count(*) FROM journey_instances WHERE profile = 'ghost' "
                                 "AND journey = 'lenient'"),
                     1);
    assert_int_equal(db_long(db, "SELECT count(*) FROM journey_instances WHERE journey = 'strict'"),
                     1);
    assert_int_equal(db_long(inbox, "SELECT count(*) FROM journey_dead_letters"), 1);
    char *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd, "%s -c %s/baton.cfg journey status strict --json",
             getenv("BATON_BIN"), dir);
    assert_int_equal(run_capture(cmd, &out, &err), 0);
    if (!strstr(out, "profile not found"))
        print_message("%s%s", out, err);
    assert_non_null(strstr(out, "\"reason\": \"profile not found\""));
    free(out);
    free(err);
    kill(baton, SIGTERM);
    assert_int_equal(wait_exit(baton, 30000), 0);
    baton = start_baton();
    wait_serving(baton);
    nap_ms(1500);
    assert_int_equal(db_long(inbox, "SELECT count(*) FROM journey_dead_letters"), 1);
    kill(baton, SIGTERM);
    assert_int_equal(wait_exit(baton, 30000), 0);
}

/* Audience entry: 100,000 profiles a filter selects enter at the entry's
 * rate (never 10% above it, from the inbox's receive times; the floor is
 * test_audience_rate_held's), once (a
 * restart does not run the slot again). Qualification: only newcomers
 * enter; one that leaves and comes back is new again but reentry =
 * "never" keeps it out. */
static void test_audience_entry(void **state)
{
    char crm[1024], db[1024], inbox[1024], jdir[1100];
    snprintf(crm, sizeof crm, "%s/crm.db", dir);
    snprintf(db, sizeof db, "%s/var/state.db", dir);
    snprintf(inbox, sizeof inbox, "%s/var/inbox.db", dir);
    exec_sql(crm, "CREATE TABLE profiles (id TEXT PRIMARY KEY, tier TEXT, points INTEGER);"
                  "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)"
                  " INSERT INTO profiles SELECT printf('p%06d', i), CASE WHEN i <= 10 THEN 'gold'"
                  " ELSE 'silver' END, i FROM n");
    write_update_config("");
    snprintf(jdir, sizeof jdir, "%s/journeys", dir);
    char path[1200];
    snprintf(path, sizeof path, "%s/up.cfg", jdir); /* write_update_config's: not this test's */
    assert_int_equal(remove(path), 0);
    free(file_write(jdir, "aud.cfg",
                    "journey: { name = \"aud\"; entry = { filter = \"points > 0\"; schedule = { at "
                    "= \"2020-01-01T00:00:00Z\"; }; rate = 10000; };\n"
                    "  start = \"c\"; nodes = ( { id = \"c\"; type = \"condition\"; branches = ( { "
                    "when = \"event.points == event.points and event.type == 'audience'\"; next = "
                    "\"e\"; } ); otherwise = \"x\"; },\n"
                    "  { id = \"e\"; type = \"end\"; }, { id = \"x\"; type = \"end\"; } ); };\n"));
    free(file_write(jdir, "q.cfg",
                    "journey: { name = \"q\"; entry = { qualifies = \"tier == 'gold'\"; every = "
                    "\"1s\"; reentry = \"never\"; };\n"
                    "  start = \"e\"; nodes = ( { id = \"e\"; type = \"end\"; } ); };\n"));
    pid_t baton = start_baton();
    wait_serving(baton);
    assert_int_equal(db_wait_for(db,
                                 "SELECT count(*) FROM journey_instances WHERE journey = 'aud' AND "
                                 "path = 'c e'",
                                 100000, 60000),
                     100000);
    long n = db_long(inbox, "SELECT count(*) FROM journey_inbox WHERE id LIKE 'aud:%'");
    long span = db_long(inbox, "SELECT max(received) - min(received) FROM journey_inbox WHERE id "
                               "LIKE 'aud:%'");
    assert_int_equal(n, 100000);
    double rate = span > 0 ? (double)(n - 1) * 1000.0 / (double)span : 0;
    print_message("audience entry: %ld profiles in %ld ms: %.0f/s (rate = 10000)\n", n, span, rate);
    /* the limit holds (never faster than asked, within the bucket's
     * burst); how close to it a loaded or sanitized build gets is the
     * bench's to measure, not a test's to assert */
    assert_true(rate < 10000 * 1.1);
    /* qualification: the 10 gold ones are in */
    assert_int_equal(
        db_wait_for(db, "SELECT count(*) FROM journey_instances WHERE journey = 'q'", 10, 10000),
        10);
    /* 5 newcomers, one leaves */
    exec_sql(crm, "UPDATE profiles SET tier = 'gold' WHERE id BETWEEN 'p000011' AND 'p000015';"
                  "UPDATE profiles SET tier = 'silver' WHERE id = 'p000001'");
    assert_int_equal(
        db_wait_for(db, "SELECT count(*) FROM journey_instances WHERE journey = 'q'", 15, 10000),
        15);
    assert_int_equal(db_wait_for(db,
                                 "SELECT count(*) FROM journey_qualified WHERE journey = 'q' AND "
                                 "profile = 'p000001'",
                                 0, 10000),
                     0);
    /* it comes back: new to the set again, but reentry = "never" */
    exec_sql(crm, "UPDATE profiles SET tier = 'gold' WHERE id = 'p000001'");
    assert_int_equal(db_wait_for(db,
                                 "SELECT count(*) FROM journey_qualified WHERE journey = 'q' AND "
                                 "profile = 'p000001'",
                                 1, 10000),
                     1);
    nap_ms(1500);
    assert_int_equal(db_long(db, "SELECT count(*) FROM journey_instances WHERE journey = 'q'"), 15);
    /* a restart runs the audience's slot no more */
    kill(baton, SIGKILL);
    waitpid(baton, NULL, 0);
    baton = start_baton();
    wait_serving(baton);
    nap_ms(2000);
    assert_int_equal(db_long(inbox, "SELECT count(*) FROM journey_inbox WHERE id LIKE 'aud:%'"),
                     100000);
    assert_int_equal(db_long(db, "SELECT count(*) FROM journey_instances WHERE journey = 'aud'"),
                     100000);
    kill(baton, SIGTERM);
    assert_int_equal(wait_exit(baton, 30000), 0);
}

/* The rate held within 10% either way: 4,000 profiles at rate = 800 (5 s),
 * a rate far below what any build of baton enters (a loaded machine with
 * a sanitized build does some thousands a second), so the figure is the
 * limiter's, not the machine's. test_audience_entry checks the ceiling
 * at scale. */
static void test_audience_rate_held(void **state)
{
    char crm[1024], db[1024], inbox[1024], jdir[1100];
    snprintf(crm, sizeof crm, "%s/crm.db", dir);
    snprintf(db, sizeof db, "%s/var/state.db", dir);
    snprintf(inbox, sizeof inbox, "%s/var/inbox.db", dir);
    exec_sql(crm, "CREATE TABLE profiles (id TEXT PRIMARY KEY, tier TEXT, points INTEGER);"
                  "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000)"
                  " INSERT INTO profiles SELECT printf('p%06d', i), 'silver', i FROM n");
    write_update_config("");
    snprintf(jdir, sizeof jdir, "%s/journeys", dir);
    char path[1200];
    snprintf(path, sizeof path, "%s/up.cfg", jdir);
    assert_int_equal(remove(path), 0);
    free(file_write(jdir, "slow.cfg",
                    "journey: { name = \"slow\"; entry = { filter = \"points > 0\"; schedule = "
                    "{ at = \"2020-01-01T00:00:00Z\"; }; rate = 800; };\n"
                    "  start = \"e\"; nodes = ( { id = \"e\"; type = \"end\"; } ); };\n"));
    pid_t baton = start_baton();
    wait_serving(baton);
    assert_int_equal(db_wait_for(db,
                                 "SELECT count(*) FROM journey_instances WHERE journey = 'slow'",
                                 4000, 60000),
                     4000);
    long n = db_long(inbox, "SELECT count(*) FROM journey_inbox WHERE id LIKE 'aud:slow:%'");
    long span = db_long(inbox, "SELECT max(received) - min(received) FROM journey_inbox WHERE id "
                               "LIKE 'aud:slow:%'");
    assert_int_equal(n, 4000);
    double rate = span > 0 ? (double)(n - 1) * 1000.0 / (double)span : 0;
    print_message("audience entry: %ld profiles in %ld ms: %.0f/s (rate = 800)\n", n, span, rate);
    assert_true(rate > 800 * 0.9);
    assert_true(rate < 800 * 1.1);
    kill(baton, SIGTERM);
    assert_int_equal(wait_exit(baton, 30000), 0);
}

/* An audience saved with columns (a campaign's enrich): its profiles
 * enter with those columns in event.* beside the profile's own. */
static void test_audience_entry_with_columns(void **state)
{
    char crm[1024], db[1024], jdir[1100];
    snprintf(crm, sizeof crm, "%s/crm.db", dir);
    snprintf(db, sizeof db, "%s/var/state.db", dir);
    exec_sql(crm, "CREATE TABLE profiles (id TEXT PRIMARY KEY, tier TEXT, points INTEGER);"
                  "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50)"
                  " INSERT INTO profiles SELECT printf('p%06d', i), 'silver', i FROM n;"
                  /* as save_audience leaves it: the key and an enrich's column */
                  "CREATE TABLE baton_audience_vip AS SELECT id AS _key, points * 10 AS spent "
                  "FROM profiles WHERE points <= 30");
    write_update_config("");
    snprintf(jdir, sizeof jdir, "%s/journeys", dir);
    char path[1200];
    snprintf(path, sizeof path, "%s/up.cfg", jdir);
    assert_int_equal(remove(path), 0);
    free(file_write(jdir, "vip.cfg",
                    "journey: { name = \"vip\"; entry = { audience = \"vip\"; schedule = { at = "
                    "\"2020-01-01T00:00:00Z\"; }; };\n"
                    "  start = \"c\"; nodes = ( { id = \"c\"; type = \"condition\"; branches = ( { "
                    "when = \"event.spent > 100 and event.points * 10 == event.spent\"; next = "
                    "\"big\"; } ); otherwise = \"small\"; },\n"
                    "  { id = \"big\"; type = \"end\"; }, { id = \"small\"; type = \"end\"; } ); "
                    "};\n"));
    pid_t baton = start_baton();
    wait_serving(baton);
    assert_int_equal(
        db_wait_for(db, "SELECT count(*) FROM journey_instances WHERE journey = 'vip'", 30, 30000),
        30);
    /* points 11..30 have spent over 100; 1..10 do not; 31..50 are not in it */
    assert_int_equal(db_long(db, "SELECT count(*) FROM journey_instances WHERE journey = 'vip' AND "
                                 "path = 'c big'"),
                     20);
    assert_int_equal(db_long(db, "SELECT count(*) FROM journey_instances WHERE journey = 'vip' AND "
                                 "path = 'c small'"),
                     10);
    kill(baton, SIGTERM);
    assert_int_equal(wait_exit(baton, 30000), 0);
}

/* The same data directory spelt another way is the same directory: the
 * reload goes through (the lock is not taken twice). */
static void test_reload_same_dir_other_spelling(void **state)
{
    write_config("true");
    write_journey();
    pid_t baton = start_baton();
    nap_ms(700);
    char path[1024];
    snprintf(path, sizeof path, "%s/baton.cfg", dir);
    char *text = file_read(path, NULL);
    assert_non_null(text);
    char *at = strstr(text, "data_dir = \"var\"");
    assert_non_null(at);
    char *respelt = NULL;
    assert_true(asprintf(&respelt, "%.*sdata_dir = \"./var/\"%s", (int)(at - text), text,
                         at + strlen("data_dir = \"var\"")) > 0);
    free(file_write(dir, "baton.cfg", respelt));
    free(respelt);
    free(text);
    kill(baton, SIGHUP);
    nap_ms(1500);
    kill(baton, SIGTERM);
    assert_int_equal(wait_exit(baton, 30000), 0);
    char log[1024];
    snprintf(log, sizeof log, "%s/baton.log", dir);
    text = file_read(log, NULL);
    assert_non_null(text);
    assert_null(strstr(text, "another baton serve"));
    assert_non_null(strstr(text, "reload done"));
    free(text);
}

/* Hostile events over the broker: a NUL byte then 8 MB (it used to crash
 * serve: the copy stopped at the NUL and the full length was read), a
 * lone surrogate, invalid UTF-8, an id reused with other content. Each is
 * a dead letter with its reason; serve stays up and routes the next
 * event; the same event sent again (spaced otherwise) stays a duplicate.
 * What serve wrote is its own: data_dir 0700, the databases 0600. */
static void test_hostile_events(void **state)
{
    write_config("false");
    write_journey();
    char db[1024], inbox[1024], path[1024], cmd[4096];
    snprintf(db, sizeof db, "%s/var/state.db", dir);
    snprintf(inbox, sizeof inbox, "%s/var/inbox.db", dir);
    pid_t baton = start_baton();
    wait_serving(baton);
    nap_ms(300);

    static const char head[] = "{\"id\": \"n1\", \"type\": \"order\", \"profile\": \"n\"}";
    snprintf(path, sizeof path, "%s/nul.bin", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(head, 1, sizeof head, f); /* its NUL too */
    for (int i = 0; i < 8 * 1024; i++) {
        char kb[1024];
        memset(kb, 'A', sizeof kb);
        fwrite(kb, 1, sizeof kb, f);
    }
    fclose(f);
    snprintf(cmd, sizeof cmd, "mosquitto_pub -h 127.0.0.1 -p %d -q 1 -t baton/events/in -f %s",
             broker.port, path);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "mosquitto_pub -h 127.0.0.1 -p %d -q 1 -t baton/events/in -m "
             "'{\"id\": \"s1\", \"type\": \"order\", \"profile\": \"s\\ud800\"}'",
             broker.port);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "mosquitto_pub -h 127.0.0.1 -p %d -q 1 -t baton/events/in -m "
             "\"$(printf '{\"id\": \"u1\", \"type\": \"order\", \"profile\": \"u\\377\"}')\"",
             broker.port);
    assert_int_equal(system(cmd), 0);
    publish("r1", "a", "order");
    snprintf(cmd, sizeof cmd,
             "mosquitto_pub -h 127.0.0.1 -p %d -q 1 -t baton/events/in -m "
             "'{\"id\":\"r1\",\"type\":\"order\",\"profile\":\"a\",\"data\":{\"total\":5}}'",
             broker.port);
    assert_int_equal(system(cmd), 0); /* the same event: a duplicate */
    publish("r1", "a2", "order");     /* another under its id */
    publish("g1", "g", "order");
    assert_int_equal(db_wait_for(db,
                                 "SELECT count(*) FROM journey_instances WHERE state = 'completed'",
                                 2, 15000),
                     2);
    assert_int_equal(db_wait_for(inbox, "SELECT count(*) FROM journey_dead_letters", 4, 10000), 4);
    assert_true(running(baton));
    assert_int_equal(db_long(inbox, "SELECT count(*) FROM journey_dead_letters WHERE reason ="
                                    " 'a NUL byte at offset 45' AND length(CAST(body AS BLOB)) ="
                                    " 46 + 8 * 1024 * 1024"),
                     1);
    assert_int_equal(db_long(inbox, "SELECT count(*) FROM journey_dead_letters WHERE reason LIKE"
                                    " 'not JSON: %Unicode%D800%'"),
                     1);
    assert_int_equal(db_long(inbox, "SELECT count(*) FROM journey_dead_letters WHERE reason ="
                                    " 'not UTF-8: byte 0xff at offset 43'"),
                     1);
    assert_int_equal(db_long(inbox, "SELECT count(*) FROM journey_dead_letters WHERE reason ="
                                    " 'id reused with different content' AND body LIKE '%\"a2\"%'"),
                     1);
    assert_int_equal(db_long(inbox, "SELECT count(*) FROM journey_inbox"), 2);
    assert_int_equal(db_long(db, "SELECT count(*) FROM journey_instances WHERE profile = 'a'"), 1);

    /* journey status shows them, bad bytes as U+FFFD, the 8 MB cut */
    char *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd, "%s -c %s/baton.cfg journey status thanks --json",
             getenv("BATON_BIN"), dir);
    assert_int_equal(run_capture(cmd, &out, &err), 0);
    assert_true(strlen(out) < 64 * 1024);
    assert_non_null(strstr(out, "\"dead_letters\": 4"));
    assert_non_null(strstr(out, "\"body_bytes\": 8388654"));
    assert_non_null(strstr(out, "\\\"profile\\\": \\\"n\\\"}\xef\xbf\xbd"
                                "AAAA"));
    assert_non_null(strstr(out, "\\\"profile\\\": \\\"u\xef\xbf\xbd\\\"}"));
    free(out);
    free(err);

    kill(baton, SIGTERM);
    assert_int_equal(wait_exit(baton, 30000), 0);
    struct stat sb;
    snprintf(path, sizeof path, "%s/var", dir);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    assert_int_equal(stat(db, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(stat(inbox, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_kill_and_restart_under_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_failed_start_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_rollback_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_profile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_profile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audience_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audience_rate_held, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audience_entry_with_columns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_and_lock_while_serving, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_same_dir_other_spelling, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_events, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
