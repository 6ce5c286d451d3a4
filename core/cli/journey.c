/* baton journey test|status — a journey over an events file with a
 * simulated clock, and where profiles are in a running one. Also the
 * `baton check` hook that validates every journey file. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "plugin/app.h"
#include "cli/cli.h"
#include "journey/engine.h"
#include "journey/inbox.h"
#include "journey/journey.h"
#include "journey/report.h"
#include "journey/sim.h"
#include "journey/test.h"
#include "scope/source.h"
#include "base/timefmt.h"

static int is_file_arg(const char *s)
{
    size_t l = strlen(s);
    struct stat st;
    return strchr(s, '/') || (l > 4 && !strcmp(s + l - 4, ".cfg")) ||
           (stat(s, &st) == 0 && S_ISREG(st.st_mode));
}

static void print_json(json_t *o)
{
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", s);
    free(s);
}

/* The journey named (or the file given), with the configuration when
 * there is one. */
static journey *open_journey(const cli_ctx *ctx, const char *what, app *a, int *have_app,
                             journey ***all, size_t *nall, diag *d)
{
    *have_app = 0;
    *all = NULL;
    *nall = 0;
    int file = is_file_arg(what);
    if (!file || access(ctx->config, R_OK) == 0) {
        if (app_open(a, ctx->config, 0, d) != 0)
            return NULL;
        *have_app = 1;
    }
    if (file)
        return journey_load(what, *have_app ? a : NULL, d);
    *all = journey_load_all(a->conf.journeys, a->conf.njourneys, a, d, nall);
    journey *j = journey_find(*all, *nall, what);
    if (!j && d->errors == 0) {
        diag_error(d, ctx->config, 0, "no journey named '%s' in the journeys of this configuration",
                   what);
    }
    return j;
}

static int journey_test(const cli_ctx *ctx, int argc, char **argv)
{
    const char *what = NULL, *events = NULL;
    int json = 0;
    const char *mocks_path = NULL;
    int64_t until = INT64_MAX;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--events") && i + 1 < argc)
            events = argv[++i];
        else if (!strcmp(argv[i], "--mocks") && i + 1 < argc)
            mocks_path = argv[++i];
        else if (!strcmp(argv[i], "--until") && i + 1 < argc) {
            int64_t s;
            if (timestamp_parse(argv[i + 1], strlen(argv[i + 1]), &s)) {
                fprintf(stderr, "baton journey test: --until %s is not an ISO 8601 timestamp\n",
                        argv[i + 1]);
                return EXIT_USAGE;
            }
            until = s * 1000;
            i++;
        } else if (argv[i][0] != '-' && !what)
            what = argv[i];
        else {
            fprintf(stderr, "baton journey test: unexpected argument '%s'\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!what || !events) {
        fprintf(stderr, "usage: baton journey test NAME|FILE --events FILE [--mocks FILE] [--json] "
                        "[--until TS]\n");
        return EXIT_USAGE;
    }
    json_t *mocks = NULL;
    if (mocks_path) {
        json_error_t je;
        mocks = json_load_file(mocks_path, 0, &je);
        if (!json_is_object(mocks)) {
            if (mocks)
                fprintf(stderr,
                        "%s: the mocks must be a JSON object {\"lookups\": {...}, "
                        "\"actions\": {...}}\n",
                        mocks_path);
            else
                fprintf(stderr, "%s:%d:%d: %s\n", mocks_path, je.line, je.column, je.text);
            json_decref(mocks);
            return EXIT_USAGE;
        }
        const char *k;
        json_t *v;
        json_object_foreach(mocks, k, v) if (strcmp(k, "lookups") && strcmp(k, "actions"))
        {
            fprintf(stderr, "%s: unknown member '%s' (known: lookups, actions)\n", mocks_path, k);
            json_decref(mocks);
            return EXIT_USAGE;
        }
    }
    diag d;
    diag_init(&d);
    app a;
    memset(&a, 0, sizeof a);
    int have_app;
    journey **all;
    size_t nall;
    journey *j = open_journey(ctx, what, &a, &have_app, &all, &nall, &d);
    int rc = EXIT_OK;
    json_t *out = NULL;
    if (j && d.errors == 0) {
        char err[512] = "";
        if (journey_test_run_mocks(have_app ? &a : NULL, j, events, until, mocks, &out, &d, err,
                                   sizeof err) &&
            err[0] && d.errors == 0) {
            fprintf(stderr, "baton journey test: %s\n", err);
            rc = EXIT_RUNTIME;
        }
    }
    diag_print(&d, stderr);
    if (d.errors)
        rc = EXIT_USAGE;
    if (out && rc == EXIT_OK) {
        if (json) {
            print_json(out);
        } else {
            printf("journey %s\n", j->name);
            const char *pid;
            json_t *p;
            json_object_foreach(json_object_get(out, "profiles"), pid, p)
            {
                printf("  %-12s %-10s", pid, json_string_value(json_object_get(p, "state")));
                size_t i;
                json_t *v;
                json_array_foreach(json_object_get(p, "path"), i, v)
                    printf("%s%s", i ? " > " : "", json_string_value(v));
                json_array_foreach(json_object_get(p, "sent"), i, v)
                {
                    json_t *ch = json_object_get(v, "channel");
                    printf("%s%s (%s %s)",
                           i ? ", " : "   sent: ", json_string_value(json_object_get(v, "node")),
                           ch ? "channel" : "action",
                           json_string_value(ch ? ch : json_object_get(v, "action")));
                }
                printf("\n");
            }
            printf("dead letters: %lld\n",
                   (long long)json_integer_value(json_object_get(out, "dead_letters")));
            size_t i;
            json_t *v;
            json_array_foreach(json_object_get(out, "not_entered"), i, v)
                printf("  not entered: %s: %s\n", json_string_value(json_object_get(v, "profile")),
                       json_string_value(json_object_get(v, "reason")));
            json_array_foreach(json_object_get(out, "notes"), i, v)
                printf("note: %s\n", json_string_value(v));
        }
    }
    json_decref(out);
    json_decref(mocks);
    if (all)
        journey_free_all(all, nall);
    else
        journey_free(j);
    if (have_app)
        app_close(&a);
    diag_free(&d);
    return rc;
}

/* The count and the latest few, each on one line, bodies cut short. */
static void print_dead_letters(json_t *o)
{
    json_t *latest = json_object_get(o, "latest_dead_letters");
    long long n = (long long)json_integer_value(json_object_get(o, "dead_letters"));
    printf("dead letters (events refused, every journey): %lld", n);
    if (json_array_size(latest))
        printf("; the latest %zu:", json_array_size(latest));
    printf("\n");
    size_t i;
    json_t *v;
    json_array_foreach(latest, i, v)
    {
        const char *body = json_string_value(json_object_get(v, "body"));
        int cut = (int)strcspn(body, "\n");
        printf("  %s %s: %s: %.*s%s\n", json_string_value(json_object_get(v, "at")),
               json_string_value(json_object_get(v, "source")),
               json_string_value(json_object_get(v, "reason")), cut > 100 ? 100 : cut, body,
               cut > 100 || body[cut] ? "..." : "");
    }
}

static int journey_status(const cli_ctx *ctx, int argc, char **argv)
{
    const char *what = NULL;
    int json = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (argv[i][0] != '-' && !what)
            what = argv[i];
        else {
            fprintf(stderr, "baton journey status: unexpected argument '%s'\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!what) {
        fprintf(stderr, "usage: baton journey status NAME [--json]\n");
        return EXIT_USAGE;
    }
    diag d;
    diag_init(&d);
    app a;
    memset(&a, 0, sizeof a);
    int have_app;
    journey **all;
    size_t nall;
    journey *j = open_journey(ctx, what, &a, &have_app, &all, &nall, &d);
    int rc = EXIT_OK;
    if (!j || d.errors) {
        diag_print(&d, stderr);
        rc = EXIT_USAGE;
        goto out;
    }
    store st;
    char err[512];
    if (store_open(&st, have_app ? a.conf.data_dir : "var", err, sizeof err)) {
        fprintf(stderr, "baton journey status: %s\n", err);
        rc = EXIT_RUNTIME;
        goto out;
    }
    int dead_err = 0;
    json_t *o =
        jreport_journey(&st, j, have_app ? a.conf.data_dir : "var", &dead_err, err, sizeof err);
    store_close(&st);
    if (dead_err) {
        fprintf(stderr, "baton journey status: dead letters: %s\n", err);
        rc = EXIT_RUNTIME;
    }
    if (json) {
        print_json(o);
    } else {
        json_t *s = json_object_get(o, "states");
        long long held = (long long)json_integer_value(json_object_get(o, "held"));
        char held_s[64] = "";
        if (held)
            snprintf(held_s, sizeof held_s, ", %lld event(s) held", held);
        printf("journey %s (%s%s): %lld profile(s): %lld active, %lld completed, %lld exited, %lld "
               "timed out, %lld failed\n",
               j->name, json_string_value(json_object_get(o, "control")), held_s,
               (long long)json_integer_value(json_object_get(o, "profiles")),
               (long long)json_integer_value(json_object_get(s, "active")),
               (long long)json_integer_value(json_object_get(s, "completed")),
               (long long)json_integer_value(json_object_get(s, "exited")),
               (long long)json_integer_value(json_object_get(s, "timed_out")),
               (long long)json_integer_value(json_object_get(s, "failed")));
        const char *ver;
        json_t *vo;
        json_object_foreach(json_object_get(o, "versions"), ver, vo)
        {
            printf("  version %s%s:", ver,
                   atoi(ver) == json_integer_value(json_object_get(o, "version")) ? " (current)"
                                                                                  : "");
            const char *stn;
            json_t *c;
            json_object_foreach(vo, stn, c)
                printf(" %lld %s", (long long)json_integer_value(c), stn);
            printf("\n");
        }
        printf("  %-16s %-11s %10s %10s\n", "node", "type", "at", "through");
        const char *id;
        json_t *n;
        json_object_foreach(json_object_get(o, "nodes"), id, n)
        {
            printf("  %-16s %-11s %10lld %10lld", id, json_string_value(json_object_get(n, "type")),
                   (long long)json_integer_value(json_object_get(n, "at")),
                   (long long)json_integer_value(json_object_get(n, "through")));
            /* a send or action node's steps by outcome, those there are */
            static const char *const outs[] = {"sent",    "failed",  "uncertain",
                                               "pending", "skipped", "capped"};
            int first = 1;
            for (size_t k = 0; json_object_get(n, "sent") && k < sizeof outs / sizeof *outs; k++) {
                long long v = (long long)json_integer_value(json_object_get(n, outs[k]));
                if (v || k == 0) {
                    printf("%s%s %lld", first ? "   " : ", ", outs[k], v);
                    first = 0;
                }
            }
            printf("\n");
        }
        if (!dead_err)
            print_dead_letters(o);
    }
    json_decref(o);
out:
    if (all)
        journey_free_all(all, nall);
    else
        journey_free(j);
    if (have_app)
        app_close(&a);
    diag_free(&d);
    return rc;
}

/* baton journey pause|resume|close NAME: the state goes to the state
 * store, where a running serve reads it within a second. */
static int journey_control(const cli_ctx *ctx, int argc, char **argv)
{
    const char *verb = argv[1];
    if (argc != 3 || argv[2][0] == '-') {
        fprintf(stderr, "usage: baton journey %s NAME\n", verb);
        return EXIT_USAGE;
    }
    diag d;
    diag_init(&d);
    app a;
    memset(&a, 0, sizeof a);
    int have_app = 0;
    journey **all = NULL;
    size_t nall = 0;
    int rc = EXIT_OK;
    journey *j =
        is_file_arg(argv[2]) ? NULL : open_journey(ctx, argv[2], &a, &have_app, &all, &nall, &d);
    if (!j || d.errors) {
        if (!j && !d.errors)
            fprintf(stderr, "baton journey %s: name a journey, not a file\n", verb);
        diag_print(&d, stderr);
        rc = EXIT_USAGE;
        goto out;
    }
    const char *state = !strcmp(verb, "pause")    ? "paused"
                        : !strcmp(verb, "resume") ? "running"
                                                  : "closed";
    store st;
    char err[512];
    if (store_open(&st, a.conf.data_dir, err, sizeof err)) {
        fprintf(stderr, "baton journey %s: %s\n", verb, err);
        rc = EXIT_RUNTIME;
        goto out;
    }
    const char *was = jengine_control_get(&st, j->name);
    if (jengine_control_set(&st, j->name, state, (int64_t)time(NULL) * 1000, err, sizeof err)) {
        fprintf(stderr, "baton journey %s: %s\n", verb, err);
        rc = EXIT_RUNTIME;
    } else {
        printf("journey %s: %s (was %s)\n", j->name, state, was);
    }
    store_close(&st);
out:
    if (have_app) {
        journey_free_all(all, nall);
        app_close(&a);
    }
    diag_free(&d);
    return rc;
}

int cmd_journey(const cli_ctx *ctx, int argc, char **argv)
{
    if (argc >= 2 &&
        (!strcmp(argv[1], "pause") || !strcmp(argv[1], "resume") || !strcmp(argv[1], "close")))
        return journey_control(ctx, argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "test"))
        return journey_test(ctx, argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "status"))
        return journey_status(ctx, argc, argv);
    fprintf(stderr, "baton journey: expected test, status, pause, resume or close%s%s\n",
            argc >= 2 ? ", not " : "", argc >= 2 ? argv[1] : "");
    return EXIT_USAGE;
}

void check_journeys(struct app *a, struct diag *d, FILE *out)
{
    size_t n;
    size_t before = d->errors;
    journey **js = journey_load_all(a->conf.journeys, a->conf.njourneys, a, d, &n);
    if (d->errors == before && a->conf.njourneys)
        fprintf(out, "journeys: ok: %zu journey(s)\n", n);
    journey_free_all(js, n);
}
