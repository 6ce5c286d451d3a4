/* Link tables with a composite key (`key = [ "film_id", "category_id" ]`,
 * Sakila's film_category): a hop in paths of links and in
 * change_dimension's `through`, never an audience; `check` tests the
 * key's combination for duplicates and refuses what cannot work (a link
 * to such a table, an audience of its rows, a composite profiles key),
 * each with its message. Counts against hand-written SQL on the same
 * database, which has no index on any link column. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/buf.h"
#include "support/fs.h"

static char *dir;

static const char make_db[] =
    "CREATE TABLE profiles (id TEXT PRIMARY KEY, email TEXT);\n"
    "CREATE TABLE films (id INTEGER PRIMARY KEY, title TEXT);\n"
    "CREATE TABLE categories (id INTEGER PRIMARY KEY, name TEXT);\n"
    "CREATE TABLE film_category (film_id INTEGER, category_id INTEGER, last_update TEXT);\n"
    "CREATE TABLE rentals (id INTEGER PRIMARY KEY, profile_id TEXT, film_id INTEGER, rented_at "
    "TEXT);\n"
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 300)\n"
    " INSERT INTO profiles SELECT printf('c%03d', i), printf('c%03d@example.com', i) FROM n;\n"
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 60)\n"
    " INSERT INTO films SELECT i, printf('Film %d', i) FROM n;\n"
    "INSERT INTO categories VALUES (1,'Action'),(2,'Comedy'),(3,'Drama'),(4,'Horror');\n"
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 60)\n"
    " INSERT INTO film_category SELECT i, 1 + i % 4, '2006-02-15 05:07:09' FROM n\n"
    " UNION ALL SELECT i, 1 + (i * 7) % 4, '2006-02-15 05:07:09' FROM n WHERE i % 3 = 0 AND "
    "(i*7)%4 != i%4;\n"
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 1500)\n"
    " INSERT INTO rentals SELECT i, printf('c%03d', 1 + (i * 37) % 290), 1 + (i * 13) % 60, "
    "'2005-08-23 05:57:04' FROM n;\n"
    /* payments of rentals: two hops from a profile */
    "CREATE TABLE payments (id INTEGER PRIMARY KEY, rental_id INTEGER, amount REAL);\n"
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2400)\n"
    " INSERT INTO payments SELECT i, 1 + (i * 11) % 1500, (i % 9) + 0.99 FROM n;\n";

static const char schema[] =
    "entities: {\n"
    "  profiles: { key = \"id\"; fields: { id = \"string\"; email = \"string\"; }; };\n"
    "  films: { key = \"id\"; fields: { id = \"int\"; title = \"string\"; }; };\n"
    "  categories: { key = \"id\"; fields: { id = \"int\"; name = \"string\"; }; };\n"
    "  film_category: {\n"
    "    key = [ \"film_id\", \"category_id\" ];\n"
    "    fields: { film_id = \"int\"; category_id = \"int\"; last_update = \"timestamp\"; };\n"
    "    links: { film = { to = \"films\"; via = \"film_id\"; reverse = \"film_categories\"; };\n"
    "             category = { to = \"categories\"; via = \"category_id\"; reverse = "
    "\"film_categories\"; }; };\n"
    "  };\n"
    "  rentals: { key = \"id\"; fields: { id = \"int\"; profile_id = \"string\"; film_id = "
    "\"int\"; rented_at = \"timestamp\"; };\n"
    "    links: { profile = { to = \"profiles\"; via = \"profile_id\"; reverse = \"rentals\"; };\n"
    "             film = { to = \"films\"; via = \"film_id\"; reverse = \"rentals\"; }; }; };\n"
    "  payments: { key = \"id\"; fields: { id = \"int\"; rental_id = \"int\"; amount = "
    "\"float\"; };\n"
    "    links: { rental = { to = \"rentals\"; via = \"rental_id\"; reverse = \"payments\"; "
    "}; }; };\n"
    "};\n";

static int baton(char **out, char **err, const char *cfg, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int baton(char **out, char **err, const char *cfg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = run_baton_v(dir, cfg, out, err, fmt, ap);
    va_end(ap);
    return rc;
}

static long long sql_count(const char *sql)
{
    char *cmd, *out = NULL;
    if (asprintf(&cmd, "sqlite3 %s/crm.db \"%s\"", dir, sql) < 0)
        abort();
    if (run_capture(cmd, &out, NULL) != 0)
        fail_msg("sqlite3 failed: %s", sql);
    long long n = atoll(out);
    free(cmd);
    free(out);
    return n;
}

static void write_cfg(const char *name, const char *schema_file)
{
    char text[2048];
    snprintf(text, sizeof text,
             "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; log = { level = \"warn\"; "
             "}; };\n"
             "sources: { crm: { plugin = \"source_sqlite\"; path = \"crm.db\"; schema = \"%s\"; "
             "}; };\n"
             "profiles = \"crm\";\n"
             "channels: { mail: { plugin = \"channel_directmail\"; dir = \"var/exports\"; }; };\n"
             "campaigns = [ \"campaigns\" ];\n",
             getenv("BATON_PLUGINS"), schema_file);
    free(file_write(dir, name, text));
}

static int setup(void **st)
{
    if (!getenv("BATON_PLUGINS") || !getenv("BATON_BIN"))
        return -1;
    dir = tmpdir_make("link-tables");
    free(file_write(dir, "make.sql", make_db));
    char *cmd;
    if (asprintf(&cmd, "sqlite3 %s/crm.db < %s/make.sql", dir, dir) < 0)
        abort();
    int rc = run_capture(cmd, NULL, NULL);
    free(cmd);
    free(file_write(dir, "schema.cfg", schema));
    write_cfg("baton.cfg", "schema.cfg");
    char path[1024];
    snprintf(path, sizeof path, "%s/campaigns", dir);
    mkdir(path, 0755);
    return rc == 0 ? 0 : -1;
}

static int teardown(void **st)
{
    tmpdir_remove(dir);
    free(dir);
    return 0;
}

static long long count_of(const char *json, const char *transition)
{
    char key[128];
    snprintf(key, sizeof key, "\"%s\": ", transition);
    const char *p = strstr(json, key);
    if (!p)
        fail_msg("no count for %s in:\n%s", transition, json);
    return atoll(p + strlen(key));
}

#define ACTION                                                                                     \
    "SELECT DISTINCT film_id FROM film_category fc JOIN categories c ON c.id = fc.category_id "    \
    "WHERE c.name = 'Action'"
#define MULTI "SELECT film_id FROM film_category GROUP BY film_id HAVING count(*) >= 2"

static void test_paths_through_a_link_table(void **st)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/campaigns", dir);
    free(file_write(
        path, "c.cfg",
        "campaign: { name = \"c\"; activities = (\n"
        "  { id = \"action\"; type = \"build_audience\"; dimension = \"films\"; filter = "
        "\"exists(film_categories where category.name == 'Action')\"; },\n"
        "  { id = \"multi\"; type = \"build_audience\"; dimension = \"films\"; filter = "
        "\"count(film_categories) >= 2\"; },\n"
        "  { id = \"cats\"; type = \"change_dimension\"; input = \"multi\"; to = \"categories\"; "
        "through = [ \"film_category\" ]; },\n"
        "  { id = \"af\"; type = \"change_dimension\"; input = \"action\"; to = \"profiles\"; "
        "through = [ \"rentals\" ]; },\n"
        "  { id = \"letter\"; type = \"send\"; channel = \"mail\"; input = \"af\"; columns = ( "
        "\"email\", { name = \"n\"; value = \"count(rentals)\"; } ); }\n"
        "); };\n"));
    char *out = NULL, *err = NULL;
    int rc = baton(&out, &err, "baton.cfg", "campaign plan c --json");
    if (rc != 0)
        fail_msg("plan: %d\n%s", rc, err);
    assert_int_equal(count_of(out, "action"), sql_count("SELECT count(*) FROM (" ACTION ")"));
    assert_int_equal(count_of(out, "multi"), sql_count("SELECT count(*) FROM (" MULTI ")"));
    assert_int_equal(count_of(out, "cats"),
                     sql_count("SELECT count(DISTINCT category_id) FROM film_category WHERE "
                               "film_id IN (" MULTI ")"));
    assert_int_equal(
        count_of(out, "af"),
        sql_count("SELECT count(DISTINCT profile_id) FROM rentals WHERE film_id IN (" ACTION ")"));
    assert_true(count_of(out, "af") > 0);
    free(out);
    free(err);
    /* a run exports one row per profile reached */
    rc = baton(&out, &err, "baton.cfg", "campaign run c");
    if (rc != 0)
        fail_msg("run: %d\n%s", rc, err);
    free(out);
    free(err);
    char csv[1024];
    snprintf(csv, sizeof csv, "%s/var/exports/c-1-letter.csv", dir);
    char *text = file_read(csv, NULL);
    assert_non_null(text);
    long lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines - 1, sql_count("SELECT count(DISTINCT profile_id) FROM rentals WHERE "
                                          "film_id IN (" ACTION ")"));
    free(text);
}

static void test_check_composite_keys(void **st)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/campaigns", dir);
    /* no audience of a link table's rows */
    free(file_write(path, "bad.cfg",
                    "campaign: { name = \"bad\"; activities = (\n"
                    "  { id = \"fc\"; type = \"build_audience\"; dimension = \"film_category\"; "
                    "} ); };\n"));
    char *out = NULL, *err = NULL;
    assert_int_equal(baton(&out, &err, "baton.cfg", "check"), 2);
    assert_non_null(strstr(
        err, "bad.cfg:2: activity 'fc': the rows of film_category cannot be an audience: its "
             "key is composite (film_id, category_id); read it through a path of links from the "
             "entities it joins, or change_dimension through = [ \"film_category\" ] to one of "
             "them"));
    free(out);
    free(err);
    snprintf(path, sizeof path, "%s/campaigns/bad.cfg", dir);
    remove(path);
    /* a combination held twice */
    char *cmd;
    if (asprintf(&cmd,
                 "cp %s/crm.db %s/dup.db && sqlite3 %s/dup.db \"INSERT INTO film_category VALUES "
                 "(5, 3, '2006-02-15 05:07:09'), (5, 3, '2006-02-15 05:07:09')\"",
                 dir, dir, dir) < 0)
        abort();
    assert_int_equal(run_capture(cmd, NULL, NULL), 0);
    free(cmd);
    char text[2048];
    snprintf(text, sizeof text,
             "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; log = { level = \"warn\"; "
             "}; };\n"
             "sources: { crm: { plugin = \"source_sqlite\"; path = \"dup.db\"; schema = "
             "\"schema.cfg\"; }; };\nprofiles = \"crm\";\ncampaigns = [ \"campaigns\" ];\n",
             getenv("BATON_PLUGINS"));
    free(file_write(dir, "dup.cfg", text));
    long long have = 0;
    {
        char *c2, *o2 = NULL;
        if (asprintf(&c2,
                     "sqlite3 %s/dup.db \"SELECT count(*) FROM film_category WHERE film_id = 5 "
                     "AND category_id = 3\"",
                     dir) < 0)
            abort();
        assert_int_equal(run_capture(c2, &o2, NULL), 0);
        have = atoll(o2);
        free(o2);
        free(c2);
    }
    assert_int_equal(baton(&out, &err, "dup.cfg", "check"), 2);
    char want[512];
    snprintf(want, sizeof want,
             "schema.cfg:5: entity 'film_category': key (film_id, category_id) is not unique in "
             "table 'film_category' of source 'crm': (5, 3) is the key of %lld rows",
             have);
    if (!strstr(err, want))
        fail_msg("expected\n  %s\nin\n%s", want, err);
    free(out);
    free(err);
    /* schema errors */
    free(file_write(dir, "bad_schema.cfg",
                    "entities: {\n"
                    "  profiles: { key = [ \"id\", \"email\" ]; fields: { id = \"string\"; email "
                    "= \"string\"; }; };\n"
                    "  films: { key = \"id\"; fields: { id = \"int\"; fc = \"int\"; };\n"
                    "    links: { pair = { to = \"film_category\"; via = \"fc\"; }; }; };\n"
                    "  film_category: { key = [ \"film_id\", \"category_id\" ]; fields: { "
                    "film_id = \"int\"; category_id = \"int\"; }; };\n"
                    "  tags: { key = [ \"a\", \"a\", \"bb\" ]; fields: { a = \"int\"; b = "
                    "\"int\"; }; };\n"
                    "  empty: { key = [ ]; fields: { a = \"int\"; }; };\n"
                    "};\n"));
    write_cfg("bad_schema_baton.cfg", "bad_schema.cfg");
    assert_int_equal(baton(&out, &err, "bad_schema_baton.cfg", "check"), 2);
    static const char *const msgs[] = {
        "bad_schema.cfg:2: profiles.key: a profile is named by one field (messages, journeys and "
        "links reach it by it), not by 2",
        "bad_schema.cfg:4: films.links.pair: links to film_category, whose key is composite (2 "
        "fields): a link reaches one row by one field; declare the links on film_category "
        "instead (its fields that hold the other entities' keys), and reach it by their reverse",
        "bad_schema.cfg:6: tags.key: 'a' is named twice",
        "bad_schema.cfg:6: tags.key: 'bb' is not a field of tags (did you mean 'b'?)",
        "bad_schema.cfg:7: empty.key: an empty list names no field",
        NULL};
    for (size_t i = 0; msgs[i]; i++)
        if (!strstr(err, msgs[i]))
            fail_msg("expected\n  %s\nin\n%s", msgs[i], err);
    free(out);
    free(err);
}

/* Two hops from the profile: a send whose rows are payments reaches
 * each one's profile through its rental (profile.email), and a journey
 * reads count(profile.rentals.payments) through the source. */
static void test_two_hops(void **st)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/campaigns", dir);
    free(file_write(
        path, "pay.cfg",
        "campaign: { name = \"pay\"; activities = (\n"
        "  { id = \"big\"; type = \"build_audience\"; dimension = \"profiles\"; filter = "
        "\"count(rentals.payments where amount > 8) >= 2\"; },\n"
        "  { id = \"p\"; type = \"change_dimension\"; input = \"big\"; to = \"payments\"; "
        "through = [ \"rentals\" ]; filter = \"amount > 8\"; },\n"
        "  { id = \"receipt\"; type = \"send\"; channel = \"mail\"; input = \"p\"; columns = "
        "[ \"id\", \"rental.profile.email\" ]; }\n"
        "); };\n"));
#define BIG                                                                                        \
    "SELECT r.profile_id FROM payments y JOIN rentals r ON r.id = y.rental_id WHERE y.amount > 8 " \
    "GROUP BY r.profile_id HAVING count(*) >= 2"
    char *out = NULL, *err = NULL;
    int rc = baton(&out, &err, "baton.cfg", "campaign run pay");
    if (rc != 0)
        fail_msg("run: %d\n%s", rc, err);
    free(out);
    free(err);
    long long want = sql_count("SELECT count(*) FROM payments y JOIN rentals r ON r.id = "
                               "y.rental_id WHERE y.amount > 8 AND r.profile_id IN (" BIG ")");
    assert_true(want > 0);
    char *cmd, *csv = NULL;
    if (asprintf(&cmd, "ls %s/var/exports/pay-*-receipt.csv", dir) < 0)
        abort();
    assert_int_equal(run_capture(cmd, &csv, NULL), 0);
    free(cmd);
    csv[strcspn(csv, "\n")] = '\0';
    char *text = file_read(csv, NULL);
    free(csv);
    assert_non_null(text);
    /* each row's email is its payment's profile's, through the rental */
    long rows = 0;
    char *save = NULL;
    for (char *l = strtok_r(text, "\r\n", &save); l; l = strtok_r(NULL, "\r\n", &save)) {
        if (rows++ == 0)
            continue; /* the header */
        long id = atol(l);
        const char *comma = strchr(l, ',');
        assert_non_null(comma);
        char q[256];
        snprintf(q, sizeof q,
                 "SELECT count(*) FROM payments y JOIN rentals r ON r.id = y.rental_id JOIN "
                 "profiles p ON p.id = r.profile_id WHERE y.id = %ld AND p.email = '%s'",
                 id, comma + 1);
        if (sql_count(q) != 1)
            fail_msg("payment %ld: %s is not its profile's email", id, comma + 1);
    }
    assert_int_equal(rows - 1, want);
    free(text);

    /* a journey over the same source: the two-hop count per profile */
    snprintf(path, sizeof path, "%s/journeys", dir);
    mkdir(path, 0755);
    free(file_write(path, "j.cfg",
                    "journey: { name = \"j\"; entry = { event = \"visit\"; }; start = \"c\";\n"
                    "  nodes = ( { id = \"c\"; type = \"condition\"; branches = ( { when = "
                    "\"count(profile.rentals.payments where amount > 8) >= 2\"; next = "
                    "\"fan\"; } ); otherwise = \"no\"; },\n"
                    "  { id = \"fan\"; type = \"end\"; }, { id = \"no\"; type = \"end\"; } "
                    "); };\n"));
    char cfgtext[2048];
    snprintf(cfgtext, sizeof cfgtext,
             "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; log = { level = \"warn\"; "
             "}; };\n"
             "sources: { crm: { plugin = \"source_sqlite\"; path = \"crm.db\"; schema = "
             "\"schema.cfg\"; }; };\nprofiles = \"crm\";\njourneys = [ \"journeys\" ];\n",
             getenv("BATON_PLUGINS"));
    free(file_write(dir, "journey.cfg", cfgtext));
    buf ev;
    buf_init(&ev);
    for (int i = 1; i <= 290; i++)
        buf_addf(&ev,
                 "{\"id\": \"v%d\", \"type\": \"visit\", \"profile\": \"c%03d\", \"time\": "
                 "\"2026-11-23T10:00:00Z\"}\n",
                 i, i);
    free(file_write(dir, "visits.jsonl", ev.data));
    buf_free(&ev);
    rc = baton(&out, &err, "journey.cfg", "journey test j --events visits.jsonl --json");
    if (rc != 0)
        fail_msg("journey test: %d\n%s", rc, err);
    long fans = 0, seen = 0;
    json_t *o = json_loads(out, 0, NULL);
    assert_non_null(o);
    const char *pid;
    json_t *pr;
    json_object_foreach(json_object_get(o, "profiles"), pid, pr)
    {
        json_t *steps = json_object_get(pr, "path");
        seen++;
        fans +=
            !strcmp(json_string_value(json_array_get(steps, json_array_size(steps) - 1)), "fan");
    }
    json_decref(o);
    assert_int_equal(seen, 290);
    free(out);
    free(err);
    assert_int_equal(fans, sql_count("SELECT count(*) FROM (" BIG ")"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_through_a_link_table),
        cmocka_unit_test(test_check_composite_keys),
        cmocka_unit_test(test_two_hops),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
