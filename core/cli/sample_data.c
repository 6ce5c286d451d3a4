/* baton sample-data — fill the profiles source with the sample CRM of
 * conf/schema.cfg (profiles, orders, stores, reservations) at any size.
 * Generated inside the database as set work (recursive CTEs), from a
 * seed: the same seed and size give the same rows relative to the
 * reference time. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plugin/app.h"
#include "cli/cli.h"
#include "base/mem.h"

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

int cmd_sample_data(const cli_ctx *ctx, int argc, char **argv)
{
    long long profiles = 1000, seed = 1, orders = 5, stores = 20;
    const char *srcname = NULL;
    for (int i = 1; i < argc; i++) {
        long long *dst = !strcmp(argv[i], "--profiles") ? &profiles
                         : !strcmp(argv[i], "--seed")   ? &seed
                         : !strcmp(argv[i], "--orders") ? &orders
                         : !strcmp(argv[i], "--stores") ? &stores
                                                        : NULL;
        if (!strcmp(argv[i], "--source") && i + 1 < argc) {
            srcname = argv[++i];
            continue;
        }
        char *end;
        if (!dst || i + 1 == argc || (*dst = strtoll(argv[i + 1], &end, 10), *end) || *dst < 0) {
            fprintf(stderr, "usage: baton sample-data [--profiles N] [--orders PER_PROFILE] "
                            "[--stores N] [--seed N] [--source NAME]\n");
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
    if (!ops || !ops->exec || !ops->dialect || strcmp(ops->dialect, "sqlite") != 0) {
        fprintf(stderr,
                "baton sample-data: %s%s%s is not a SQLite source (the generator writes "
                "SQLite)\n",
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
                        {.type = BATON_T_INT, .v.i = (int64_t)time(NULL)},
                        {.type = BATON_T_INT, .v.i = orders},
                        {.type = BATON_T_INT, .v.i = stores}};
    char *sql = xasprintf("BEGIN; %s COMMIT;", sample_sql);
    char err[512];
    if (ops->exec(src->state, sql, p, 5, NULL, NULL, err, sizeof err) != 0) {
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
