/* baton sample-data — fill the profiles source with the sample CRM of
 * conf/schema.cfg (profiles, orders, stores, reservations) at any size,
 * from a seed: the same seed, size and reference time give the same
 * rows. On SQLite they are generated inside the database as set work
 * (recursive CTEs); on PostgreSQL they are computed here by the same
 * formulas (the same hash) and sent with COPY, in typed columns
 * (timestamptz, date, boolean, double precision), so both sources hold
 * the same data. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plugin/app.h"
#include "cli/cli.h"
#include "base/buf.h"
#include "base/mem.h"
#include "base/timefmt.h"

/* ?1 profiles, ?2 seed, ?3 reference time (unix s), ?4 orders per
 * profile (average), ?5 stores. h(k, i) is a stable hash per column. */
static const char sample_sql[] =
    "DROP TABLE IF EXISTS reservations; DROP TABLE IF EXISTS orders;"
    "DROP TABLE IF EXISTS stores; DROP TABLE IF EXISTS profiles;"
    "CREATE TABLE profiles (id TEXT PRIMARY KEY, email TEXT, phone TEXT, first_name TEXT,"
    " city TEXT, tier TEXT, birth_date TEXT, created_at TEXT, consent_email INTEGER,"
    " consent_sms INTEGER, consent_push INTEGER, score REAL);"
    "CREATE TABLE stores (id TEXT PRIMARY KEY, city TEXT, name TEXT);"
    "CREATE TABLE orders (id TEXT PRIMARY KEY, profile_id TEXT, store_id TEXT, amount REAL,"
    " created_at TEXT);"
    "CREATE TABLE reservations (id TEXT PRIMARY KEY, profile_id TEXT, store_id TEXT,"
    " starts_at TEXT, party INTEGER, status TEXT);"
    "CREATE TEMP TABLE sd_names (i INTEGER PRIMARY KEY, v TEXT);"
    "INSERT INTO sd_names (v) VALUES ('Alice'),('Bruno'),('Chloé'),('David'),('Emma'),"
    " ('Farid'),('Gaëlle'),('Hugo'),('Inès'),('Jules'),('Katia'),('Louis'),('Manon'),"
    " ('Nathan'),('Océane'),('Paul'),('Quentin'),('Rose'),('Sami'),('Zoé');"
    "CREATE TEMP TABLE sd_cities (i INTEGER PRIMARY KEY, v TEXT);"
    "INSERT INTO sd_cities (v) VALUES ('Paris'),('Lyon'),('Marseille'),('Lille'),"
    " ('Bordeaux'),('Nantes'),('Toulouse'),('Strasbourg');"
    "INSERT INTO stores (id, city, name) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL"
    " SELECT i + 1 FROM n WHERE i < ?5)"
    " SELECT 's' || i, (SELECT v FROM sd_cities WHERE i = 1 + (n.i - 1) % 8),"
    " 'Store ' || (SELECT v FROM sd_cities WHERE i = 1 + (n.i - 1) % 8) || ' #' || n.i FROM n;"
    "INSERT INTO profiles WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
    " WHERE i < ?1), h AS (SELECT i, baton_hash(?2, 'p' || i) AS x FROM n)"
    " SELECT 'p' || i,"
    "  CASE WHEN x % 50 = 0 THEN NULL ELSE 'user' || i || '@example.com' END,"
    "  CASE WHEN x % 7 = 0 THEN NULL ELSE '+336' || substr('0000000' || (x % 100000000), -8) END,"
    "  (SELECT v FROM sd_names WHERE sd_names.i = 1 + (x / 7) % 20),"
    "  (SELECT v FROM sd_cities WHERE sd_cities.i = 1 + (x / 11) % 8),"
    "  CASE (x / 13) % 10 WHEN 0 THEN 'gold' WHEN 1 THEN 'gold' WHEN 2 THEN 'silver'"
    "   WHEN 3 THEN 'silver' WHEN 4 THEN 'silver' WHEN 9 THEN NULL ELSE 'bronze' END,"
    "  date(?3 - 567648000 - (x / 17) % 1577836800, 'unixepoch'),"
    "  strftime('%Y-%m-%dT%H:%M:%SZ', ?3 - (x / 19) % 94608000, 'unixepoch'),"
    "  CASE WHEN (x / 23) % 20 = 0 THEN NULL ELSE ((x / 23) % 10 < 8) END,"
    "  ((x / 29) % 10 < 5), ((x / 31) % 10 < 6),"
    "  round(((x / 37) % 10000) / 100.0, 2)"
    " FROM h;"
    "INSERT INTO orders WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
    " WHERE i < ?1 * ?4), h AS (SELECT i, baton_hash(?2 + 1, 'o' || i) AS x FROM n)"
    " SELECT 'o' || i, 'p' || (1 + x % ?1), 's' || (1 + (x / 7) % ?5),"
    "  CASE WHEN (x / 11) % 100 = 0 THEN NULL ELSE round(5 + ((x / 13) % 30000) / 100.0, 2) END,"
    "  strftime('%Y-%m-%dT%H:%M:%SZ', ?3 - (x / 17) % 63072000, 'unixepoch')"
    " FROM h;"
    "INSERT INTO reservations WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
    " WHERE i < ?1 / 2), h AS (SELECT i, baton_hash(?2 + 2, 'r' || i) AS x FROM n)"
    " SELECT 'r' || i, 'p' || (1 + x % ?1), 's' || (1 + (x / 7) % ?5),"
    "  strftime('%Y-%m-%dT%H:00:00Z', ?3 - 2592000 + (x / 11) % 7776000, 'unixepoch'),"
    "  1 + (x / 13) % 8,"
    "  CASE (x / 17) % 10 WHEN 0 THEN 'cancelled' WHEN 1 THEN 'no_show' ELSE 'confirmed' END"
    " FROM h;"
    "CREATE INDEX orders_profile ON orders (profile_id);"
    "CREATE INDEX orders_store ON orders (store_id);"
    "CREATE INDEX reservations_profile ON reservations (profile_id);"
    "CREATE INDEX reservations_store ON reservations (store_id);"
    "DROP TABLE sd_names; DROP TABLE sd_cities;"
    "ANALYZE;";

/* ------------------------------------------------------------------ */
/* PostgreSQL                                                          */
/* ------------------------------------------------------------------ */

static const char pg_ddl[] =
    "DROP TABLE IF EXISTS reservations, orders, stores, profiles;"
    "CREATE TABLE profiles (id text PRIMARY KEY, email text, phone text, first_name text,"
    " city text, tier text, birth_date date, created_at timestamptz, consent_email boolean,"
    " consent_sms boolean, consent_push boolean, score double precision);"
    "CREATE TABLE stores (id text PRIMARY KEY, city text, name text);"
    "CREATE TABLE orders (id text PRIMARY KEY, profile_id text, store_id text,"
    " amount double precision, created_at timestamptz);"
    "CREATE TABLE reservations (id text PRIMARY KEY, profile_id text, store_id text,"
    " starts_at timestamptz, party integer, status text);";

static const char pg_indexes[] = "CREATE INDEX orders_profile ON orders (profile_id);"
                                 "CREATE INDEX orders_store ON orders (store_id);"
                                 "CREATE INDEX reservations_profile ON reservations (profile_id);"
                                 "CREATE INDEX reservations_store ON reservations (store_id);"
                                 "ANALYZE profiles, stores, orders, reservations;";

static const char *const names[] = {
    "Alice", "Bruno", "Chloé", "David",  "Emma",   "Farid", "Gaëlle",  "Hugo", "Inès", "Jules",
    "Katia", "Louis", "Manon", "Nathan", "Océane", "Paul",  "Quentin", "Rose", "Sami", "Zoé"};
static const char *const cities[] = {"Paris",    "Lyon",   "Marseille", "Lille",
                                     "Bordeaux", "Nantes", "Toulouse",  "Strasbourg"};

/* baton_hash(seed, text) of the sources (FNV-1a, a final mix, the top 63
 * bits): the SQLite generator's h() computed here. */
static int64_t sd_hash(int64_t seed, const char *t)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)seed;
    h *= 1099511628211ull;
    for (; *t; t++) {
        h ^= (unsigned char)*t;
        h *= 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (int64_t)(h >> 1);
}

typedef struct copier {
    instance *src;
    const baton_source_ops *ops;
    const char *sql; /* COPY <table> FROM STDIN */
    buf rows;
    char err[512];
    int failed;
} copier;

/* source_postgres takes a COPY ... FROM STDIN statement's rows (COPY's
 * text format) as its one string parameter: sent a megabyte at a time */
static void copy_flush(copier *c)
{
    if (c->failed || !c->rows.len)
        return;
    baton_value v = {.type = BATON_T_STRING, .v.s = {c->rows.data, c->rows.len}};
    if (c->ops->exec(c->src->state, c->sql, &v, 1, NULL, NULL, c->err, sizeof c->err) != 0)
        c->failed = 1;
    buf_reset(&c->rows);
}

static void copy_row_end(copier *c)
{
    c->rows.data[c->rows.len - 1] = '\n'; /* the last tab */
    if (c->rows.len > (1u << 20))
        copy_flush(c);
}

static void ts_field(buf *b, int64_t t)
{
    char ts[21];
    timestamp_format(t, ts);
    buf_addf(b, "%s\t", ts);
}

static int sample_pg(instance *src, const baton_source_ops *ops, long long np, long long seed,
                     int64_t now, long long per, long long ns, char *err, size_t errlen)
{
    copier c = {.src = src, .ops = ops};
    buf_init(&c.rows);
    if (ops->exec(src->state, "BEGIN", NULL, 0, NULL, NULL, c.err, sizeof c.err) != 0 ||
        ops->exec(src->state, pg_ddl, NULL, 0, NULL, NULL, c.err, sizeof c.err) != 0) {
        c.failed = 1;
        goto out;
    }
    char key[32];
    c.sql = "COPY stores (id, city, name) FROM STDIN";
    for (long long i = 1; i <= ns && !c.failed; i++) {
        const char *city = cities[(i - 1) % 8];
        buf_addf(&c.rows, "s%lld\t%s\tStore %s #%lld\t", i, city, city, i);
        copy_row_end(&c);
    }
    copy_flush(&c);
    c.sql = "COPY profiles FROM STDIN";
    for (long long i = 1; i <= np && !c.failed; i++) {
        snprintf(key, sizeof key, "p%lld", i);
        int64_t x = sd_hash(seed, key);
        buf *b = &c.rows;
        buf_addf(b, "%s\t", key);
        if (x % 50 == 0)
            buf_adds(b, "\\N\t");
        else
            buf_addf(b, "user%lld@example.com\t", i);
        if (x % 7 == 0)
            buf_adds(b, "\\N\t");
        else
            buf_addf(b, "+336%08" PRId64 "\t", x % 100000000);
        buf_addf(b, "%s\t%s\t", names[(x / 7) % 20], cities[(x / 11) % 8]);
        static const char *const tiers[] = {"gold",   "gold",   "silver", "silver", "silver",
                                            "bronze", "bronze", "bronze", "bronze", NULL};
        const char *tier = tiers[(x / 13) % 10];
        buf_addf(b, "%s\t", tier ? tier : "\\N");
        char day[11];
        int64_t born = now - 567648000 - (x / 17) % 1577836800;
        date_format(born / 86400 - (born % 86400 < 0), day);
        buf_addf(b, "%s\t", day);
        ts_field(b, now - (x / 19) % 94608000);
        if ((x / 23) % 20 == 0)
            buf_adds(b, "\\N\t");
        else
            buf_addf(b, "%s\t", (x / 23) % 10 < 8 ? "t" : "f");
        buf_addf(b, "%s\t%s\t", (x / 29) % 10 < 5 ? "t" : "f", (x / 31) % 10 < 6 ? "t" : "f");
        int64_t k = (x / 37) % 10000;
        buf_addf(b, "%" PRId64 ".%02" PRId64 "\t", k / 100, k % 100);
        copy_row_end(&c);
    }
    copy_flush(&c);
    c.sql = "COPY orders FROM STDIN";
    for (long long i = 1; i <= np * per && !c.failed; i++) {
        snprintf(key, sizeof key, "o%lld", i);
        int64_t x = sd_hash(seed + 1, key);
        buf *b = &c.rows;
        buf_addf(b, "%s\tp%lld\ts%lld\t", key, (long long)(1 + x % np),
                 (long long)(1 + (x / 7) % ns));
        if ((x / 11) % 100 == 0) {
            buf_adds(b, "\\N\t");
        } else {
            int64_t k = 500 + (x / 13) % 30000;
            buf_addf(b, "%" PRId64 ".%02" PRId64 "\t", k / 100, k % 100);
        }
        ts_field(b, now - (x / 17) % 63072000);
        copy_row_end(&c);
    }
    copy_flush(&c);
    c.sql = "COPY reservations FROM STDIN";
    for (long long i = 1; i <= np / 2 && !c.failed; i++) {
        snprintf(key, sizeof key, "r%lld", i);
        int64_t x = sd_hash(seed + 2, key);
        buf *b = &c.rows;
        buf_addf(b, "%s\tp%lld\ts%lld\t", key, (long long)(1 + x % np),
                 (long long)(1 + (x / 7) % ns));
        int64_t t = now - 2592000 + (x / 11) % 7776000;
        ts_field(b, t - (t % 3600 + 3600) % 3600);
        int64_t st = (x / 17) % 10;
        buf_addf(b, "%" PRId64 "\t%s\t", 1 + (x / 13) % 8,
                 st == 0   ? "cancelled"
                 : st == 1 ? "no_show"
                           : "confirmed");
        copy_row_end(&c);
    }
    copy_flush(&c);
    if (!c.failed && (ops->exec(src->state, "COMMIT", NULL, 0, NULL, NULL, c.err, sizeof c.err) ||
                      ops->exec(src->state, pg_indexes, NULL, 0, NULL, NULL, c.err, sizeof c.err)))
        c.failed = 1;
out:
    if (c.failed) {
        snprintf(err, errlen, "%s", c.err);
        char ignored[64];
        ops->exec(src->state, "ROLLBACK", NULL, 0, NULL, NULL, ignored, sizeof ignored);
    }
    buf_free(&c.rows);
    return c.failed ? -1 : 0;
}

int cmd_sample_data(const cli_ctx *ctx, int argc, char **argv)
{
    long long profiles = 1000, seed = 1, orders = 5, stores = 20, now = (long long)time(NULL);
    const char *srcname = NULL;
    for (int i = 1; i < argc; i++) {
        long long *dst = !strcmp(argv[i], "--profiles") ? &profiles
                         : !strcmp(argv[i], "--seed")   ? &seed
                         : !strcmp(argv[i], "--orders") ? &orders
                         : !strcmp(argv[i], "--stores") ? &stores
                         : !strcmp(argv[i], "--now")    ? &now
                                                        : NULL;
        if (!strcmp(argv[i], "--source") && i + 1 < argc) {
            srcname = argv[++i];
            continue;
        }
        char *end;
        if (!dst || i + 1 == argc || (*dst = strtoll(argv[i + 1], &end, 10), *end) || *dst < 0) {
            fprintf(stderr, "usage: baton sample-data [--profiles N] [--orders PER_PROFILE] "
                            "[--stores N] [--seed N] [--now SECONDS] [--source NAME]\n");
            return EXIT_USAGE;
        }
        i++;
    }
    if (profiles < 1 || stores < 1) {
        fprintf(stderr, "baton sample-data: --profiles and --stores must be at least 1\n");
        return EXIT_USAGE;
    }
    diag d;
    diag_init(&d);
    app a;
    int rc = EXIT_OK;
    if (app_open(&a, ctx->config, APP_INIT, &d) != 0) {
        diag_print(&d, stderr);
        rc = EXIT_USAGE;
        goto out;
    }
    if (!srcname)
        srcname = a.conf.profiles;
    instance *src = srcname ? app_find(&a, "sources", srcname) : NULL;
    const baton_source_ops *ops = src ? instance_source(src) : NULL;
    int pg = ops && ops->dialect && !strcmp(ops->dialect, "postgresql");
    if (!ops || !ops->exec || !ops->dialect || (strcmp(ops->dialect, "sqlite") != 0 && !pg)) {
        fprintf(stderr,
                "baton sample-data: %s%s%s is not a SQLite or PostgreSQL source (the "
                "generator writes those)\n",
                srcname ? "source '" : "no profiles source", srcname ? srcname : "",
                srcname ? "'" : "");
        rc = EXIT_USAGE;
        goto out;
    }
    if (instance_start(src) != 0) {
        fprintf(stderr, "baton sample-data: %s: %s\n", src->where, src->error);
        rc = EXIT_RUNTIME;
        goto out;
    }
    baton_value p[5] = {{.type = BATON_T_INT, .v.i = profiles},
                        {.type = BATON_T_INT, .v.i = seed},
                        {.type = BATON_T_INT, .v.i = now},
                        {.type = BATON_T_INT, .v.i = orders},
                        {.type = BATON_T_INT, .v.i = stores}};
    char *sql = xasprintf("BEGIN; %s COMMIT;", sample_sql);
    char err[512];
    if (pg) {
        if (sample_pg(src, ops, profiles, seed, now, orders, stores, err, sizeof err) != 0) {
            fprintf(stderr, "baton sample-data: %s\n", err);
            rc = EXIT_RUNTIME;
        } else {
            printf("sample data in source '%s': %lld profiles, %lld orders, %lld stores, %lld "
                   "reservations (seed %lld)\n",
                   srcname, profiles, profiles * orders, stores, profiles / 2, seed);
        }
    } else if (ops->exec(src->state, sql, p, 5, NULL, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "baton sample-data: %s\n", err);
        ops->exec(src->state, "ROLLBACK", NULL, 0, NULL, NULL, err, sizeof err);
        rc = EXIT_RUNTIME;
    } else {
        printf("sample data in source '%s': %lld profiles, %lld orders, %lld stores, %lld "
               "reservations (seed %lld)\n",
               srcname, profiles, profiles * orders, stores, profiles / 2, seed);
    }
    free(sql);
out:
    app_close(&a);
    diag_free(&d);
    return rc;
}
