/* Campaign targeting over data as imported databases hold it: no index
 * on the link columns, timestamps in SQLite's own `YYYY-MM-DD HH:MM:SS`
 * form mixed with ISO 8601 (T and Z, fractional seconds, offsets) and
 * epoch seconds, NULLs everywhere. `campaign plan --json` must count what
 * the instants say: the expected counts are computed here, in C, from
 * the same generated rows (their instants, not their text). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/timefmt.h"
#include "support/fs.h"

#define NPROF 400
#define MAXORD 7

static const char *bin, *src, *plugins;
static char *dir, *cfg;

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static int pick(int n)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (int)((rng * 2685821657736338717ULL) % (uint64_t)n);
}

/* The rows, as instants (INT64_MIN: NULL). */
typedef struct order {
    int64_t at;
    double amount;
} order;
static struct {
    int64_t created;
    int norders;
    order o[MAXORD];
} P[NPROF];

static int64_t BOUND; /* 2025-06-01T00:00:00Z */

/* One instant as a row of imported data writes it. */
static void stored(buf *b, int64_t t)
{
    char s[21];
    switch (pick(6)) {
    case 0: /* SQLite's datetime() */
        timestamp_format(t, s);
        s[10] = ' ';
        s[19] = '\0';
        buf_addf(b, "'%s'", s);
        break;
    case 1:
        timestamp_format(t, s);
        buf_addf(b, "'%s'", s);
        break;
    case 2: /* fractional seconds */
        timestamp_format(t, s);
        s[19] = '\0';
        buf_addf(b, "'%s.%03dZ'", s, pick(1000));
        break;
    case 3: /* the same instant at +02:00 */
        timestamp_format(t + 7200, s);
        s[19] = '\0';
        buf_addf(b, "'%s+02:00'", s);
        break;
    case 4: buf_addf(b, "%lld", (long long)t); break; /* epoch seconds */
    default:
        timestamp_format(t, s);
        s[10] = ' ';
        s[19] = '\0';
        buf_addf(b, "'%s'", s);
    }
}

/* Instants close to the boundary: a second either side, an hour, a day. */
static int64_t near_bound(void)
{
    static const int64_t d[] = {-86400, -3600, -1, 0, 0, 1, 3600, 86400, -2 * 86400, 40 * 86400};
    return BOUND + d[pick(10)];
}

static char *make_sql(void)
{
    buf b;
    buf_init(&b);
    buf_adds(&b, "CREATE TABLE profiles (id TEXT PRIMARY KEY, email TEXT, phone TEXT, first_name "
                 "TEXT, city TEXT, tier TEXT, birth_date DATE, created_at DATETIME, consent_email "
                 "INTEGER, consent_sms INTEGER, consent_push INTEGER, score REAL);\n"
                 "CREATE TABLE stores (id TEXT PRIMARY KEY, city TEXT, name TEXT);\n"
                 /* no index on profile_id or store_id, as imported */
                 "CREATE TABLE orders (id TEXT PRIMARY KEY, profile_id TEXT, store_id TEXT, amount "
                 "REAL, created_at DATETIME);\n"
                 "CREATE TABLE reservations (id TEXT PRIMARY KEY, profile_id TEXT, store_id TEXT, "
                 "starts_at TEXT, party INTEGER, status TEXT);\n"
                 "BEGIN;\n");
    int oid = 0;
    for (int i = 0; i < NPROF; i++) {
        P[i].created = pick(8) == 0 ? INT64_MIN : near_bound();
        buf_addf(&b,
                 "INSERT INTO profiles (id, email, first_name, consent_email, created_at) "
                 "VALUES ('p%d', ",
                 i);
        if (pick(10))
            buf_addf(&b, "'u%d@example.com'", i);
        else
            buf_adds(&b, "NULL");
        buf_addf(&b, ", 'N%d', %d, ", i, pick(2));
        if (P[i].created == INT64_MIN)
            buf_adds(&b, "NULL");
        else
            stored(&b, P[i].created);
        buf_adds(&b, ");\n");
        P[i].norders = pick(MAXORD + 1);
        for (int k = 0; k < P[i].norders; k++) {
            order *o = &P[i].o[k];
            o->at = pick(9) == 0 ? INT64_MIN : near_bound();
            o->amount = pick(30000) / 100.0;
            buf_addf(&b, "INSERT INTO orders VALUES ('o%d', 'p%d', NULL, %.2f, ", oid++, i,
                     o->amount);
            if (o->at == INT64_MIN)
                buf_adds(&b, "NULL");
            else
                stored(&b, o->at);
            buf_adds(&b, ");\n");
        }
    }
    /* orders of no known profile */
    buf_adds(&b, "INSERT INTO orders VALUES ('ox1', 'nobody', NULL, 10, '2025-06-01 00:00:00');\n"
                 "INSERT INTO orders VALUES ('ox2', NULL, NULL, 10, '2025-06-01 00:00:00');\n"
                 "COMMIT;\n");
    return buf_steal(&b);
}

static int setup(void **st)
{
    bin = getenv("BATON_BIN");
    src = getenv("BATON_SRC");
    plugins = getenv("BATON_PLUGINS");
    if (!bin || !src || !plugins)
        return -1;
    if (timestamp_parse("2025-06-01T00:00:00Z", 20, &BOUND) != 0)
        return -1;
    dir = tmpdir_make("campaign-real");
    char *sql = make_sql();
    free(file_write(dir, "setup.sql", sql));
    free(sql);
    char *cmd, *out = NULL, *err = NULL;
    if (asprintf(&cmd, "mkdir -p %s/var %s/campaigns && sqlite3 %s/var/crm.db < %s/setup.sql", dir,
                 dir, dir, dir) < 0)
        abort();
    int rc = run_capture(cmd, &out, &err);
    free(cmd);
    free(out);
    free(err);
    if (rc != 0)
        return -1;
    char *text;
    if (asprintf(&text,
                 "baton: { data_dir = \"var\"; plugin_path = [ \"%s\" ]; log = { level = \"warn\"; "
                 "}; };\n"
                 "sources: { crm: { plugin = \"source_sqlite\"; path = \"var/crm.db\"; schema = "
                 "\"%s/conf/schema.cfg\"; }; };\n"
                 "profiles = \"crm\";\n"
                 "channels: { mail: { plugin = \"channel_directmail\"; dir = \"var/exports\"; }; "
                 "};\n"
                 "campaigns = [ \"campaigns\" ];\n",
                 plugins, src) < 0)
        abort();
    cfg = file_write(dir, "baton.cfg", text);
    free(text);
    return 0;
}

static int teardown(void **st)
{
    tmpdir_remove(dir);
    free(dir);
    free(cfg);
    return 0;
}

/* The count of `name` in plan --json's output. */
static long long count_of(const char *json, const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "\"%s\": ", name);
    const char *p = strstr(json, key);
    if (!p)
        fail_msg("no count for %s in %s", name, json);
    return strtoll(p + strlen(key), NULL, 10);
}

static void test_timestamps_as_instants(void **st)
{
    free(file_write(
        dir, "campaigns/times.cfg",
        "campaign: {\n"
        "  name = \"times\";\n"
        "  activities = (\n"
        "    { id = \"recent\"; type = \"build_audience\"; dimension = \"profiles\";\n"
        "      filter = \"created_at >= timestamp('2025-06-01T00:00:00Z')\"; },\n"
        "    { id = \"before\"; type = \"build_audience\"; dimension = \"profiles\";\n"
        "      filter = \"created_at < timestamp('2025-06-01T00:00:00Z')\"; },\n"
        "    { id = \"buyers\"; type = \"build_audience\"; dimension = \"profiles\";\n"
        "      filter = \"exists(orders where created_at >= timestamp('2025-06-01T00:00:00Z'))\"; "
        "},\n"
        "    { id = \"twice\"; type = \"build_audience\"; dimension = \"profiles\";\n"
        "      filter = \"count(orders where created_at >= timestamp('2025-06-01T00:00:00Z')) >= "
        "2\"; "
        "},\n"
        "    { id = \"lapsed\"; type = \"build_audience\"; dimension = \"profiles\";\n"
        "      filter = \"max(orders.created_at) < timestamp('2025-06-01T00:00:00Z')\"; },\n"
        "    { id = \"late\"; type = \"build_audience\"; dimension = \"orders\";\n"
        "      filter = \"created_at >= profile.created_at + 1h\"; },\n"
        "    { id = \"rich\"; type = \"enrich\"; input = \"buyers\";\n"
        "      add = ( { name = \"last\"; value = \"max(orders.created_at)\"; } ); },\n"
        "    { id = \"fresh\"; type = \"split\"; input = \"rich\"; exclusive = true;\n"
        "      branches = ( { name = \"day\"; filter = \"last >= "
        "timestamp('2025-06-02T00:00:00Z')\"; "
        "},\n"
        "                   { name = \"rest\"; remainder = true; } ); }\n"
        "  );\n"
        "};\n"));
    long long recent = 0, before = 0, buyers = 0, twice = 0, lapsed = 0, late = 0, day = 0;
    for (int i = 0; i < NPROF; i++) {
        if (P[i].created != INT64_MIN) {
            recent += P[i].created >= BOUND;
            before += P[i].created < BOUND;
        }
        int n = 0, any = 0;
        int64_t mx = INT64_MIN;
        for (int k = 0; k < P[i].norders; k++) {
            int64_t at = P[i].o[k].at;
            if (at == INT64_MIN)
                continue;
            n += at >= BOUND;
            any = 1;
            if (at > mx)
                mx = at;
            if (P[i].created != INT64_MIN)
                late += at >= P[i].created + 3600;
        }
        buyers += n > 0;
        twice += n >= 2;
        lapsed += any && mx < BOUND;
        day += n > 0 && mx >= BOUND + 86400;
    }
    char *out, *err;
    int rc = run_baton(dir, cfg, &out, &err, "campaign plan times --json");
    if (rc != 0)
        fail_msg("plan failed (%d): %s%s", rc, out, err);
    assert_int_equal(count_of(out, "recent"), recent);
    assert_int_equal(count_of(out, "before"), before);
    assert_int_equal(count_of(out, "buyers"), buyers);
    assert_int_equal(count_of(out, "twice"), twice);
    assert_int_equal(count_of(out, "lapsed"), lapsed);
    assert_int_equal(count_of(out, "late"), late);
    assert_int_equal(count_of(out, "fresh.day"), day);
    assert_int_equal(count_of(out, "fresh.rest"), buyers - day);
    /* a real boundary: rows at exactly the instant, written as text that
     * sorts before the T of the ISO literal */
    assert_true(recent > 0 && before > 0 && twice > 0 && lapsed > 0);
    free(out);
    free(err);
}

/* A field is canonical text, or empty (NULL). */
static int canonical(const char *f, size_t n)
{
    return n == 0 || (n == 20 && f[4] == '-' && f[10] == 'T' && f[13] == ':' && f[19] == 'Z');
}

/* An export writes every timestamp in one form, whichever path read it:
 * the row's own field (stored in any form), a link's, an aggregate. */
static void test_export_timestamps_in_one_form(void **st)
{
    free(file_write(
        dir, "campaigns/exp.cfg",
        "campaign: {\n  name = \"exp\";\n  activities = (\n"
        "    { id = \"all\"; type = \"build_audience\"; dimension = \"orders\"; },\n"
        "    { id = \"out\"; type = \"send\"; channel = \"mail\"; input = \"all\";\n"
        "      columns = ( \"created_at\", \"profile.created_at\",\n"
        "        { name = \"first\"; value = \"min(profile.orders.created_at)\"; } ); }\n"
        "  );\n};\n"));
    char *out, *err;
    int rc = run_baton(dir, cfg, &out, &err, "campaign run exp");
    if (rc != 0)
        fail_msg("run failed (%d): %s%s", rc, out, err);
    free(out);
    free(err);
    char *path;
    assert_true(asprintf(&path, "%s/var/exports/exp-1-out.csv", dir) > 0);
    char *text = file_read(path, NULL);
    assert_non_null(text);
    size_t lines = 0, stamps = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
        if (lines++ == 0) {
            assert_string_equal(line, "created_at,profile.created_at,first");
            continue;
        }
        const char *f = line;
        for (int k = 0; k < 3; k++) {
            size_t n = strcspn(f, ",");
            if (!canonical(f, n))
                fail_msg("field %d not canonical: %s", k, line);
            stamps += n > 0;
            f += n + (f[n] == ',');
        }
    }
    assert_true(lines > 100);
    assert_true(stamps > lines);
    free(text);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timestamps_as_instants),
        cmocka_unit_test(test_export_timestamps_in_one_form),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
