/* baton feedback dsn FILE — a bounce an MTA returned (an RFC 3464
 * report, delivery/dsn.h), recorded without the HTTP server: what POST
 * /v1/feedback/dsn does to the state store (the delivery bounced, the
 * address suppressed on every channel, the table feedback), for an MTA
 * pipe (`| baton feedback dsn -`). The email_bounced events go to the
 * inbox's spool (jinbox_spool_put), committed before the command ends;
 * serve, running or when it next starts, enters them into journeys. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "cli/cli.h"
#include "delivery/dispatch.h"
#include "delivery/dsn.h"
#include "journey/inbox.h"
#include "plugin/app.h"
#include "store/store.h"

/* A report larger than this is not a bounce (the returned message is
 * cut by MTAs long before). */
#define DSN_MAX (16 * 1024 * 1024)

static int read_all(const char *path, buf *b, char *err, size_t errlen)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b->len + n > DSN_MAX) {
            snprintf(err, errlen, "%s: larger than %d bytes: not a delivery status notification",
                     path, DSN_MAX);
            if (f != stdin)
                fclose(f);
            return -1;
        }
        buf_add(b, chunk, n);
    }
    int bad = ferror(f);
    if (f != stdin)
        fclose(f);
    if (bad) {
        snprintf(err, errlen, "%s: read error", path);
        return -1;
    }
    return 0;
}

static const char *type_name(dispatch_feedback_type t)
{
    return t == FEEDBACK_HARD_BOUNCE   ? "hard_bounce"
           : t == FEEDBACK_SOFT_BOUNCE ? "soft_bounce"
                                       : "complaint";
}

int cmd_feedback(const cli_ctx *ctx, int argc, char **argv)
{
    const char *kind = NULL, *file = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!kind && argv[i][0] != '-')
            kind = argv[i];
        else if (kind && !file && (argv[i][0] != '-' || !strcmp(argv[i], "-")))
            file = argv[i];
        else {
            fprintf(stderr, "baton feedback: unexpected argument '%s'\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!kind || strcmp(kind, "dsn") || !file) {
        if (kind && strcmp(kind, "dsn"))
            fprintf(stderr, "baton feedback: unknown kind '%s' (known: dsn)\n", kind);
        fprintf(stderr, "usage: baton feedback dsn FILE|- [--json]\n");
        return EXIT_USAGE;
    }
    char err[512];
    buf b;
    buf_init(&b);
    if (read_all(file, &b, err, sizeof err) != 0) {
        fprintf(stderr, "baton feedback: %s\n", err);
        buf_free(&b);
        return EXIT_USAGE;
    }
    dsn_report r;
    size_t off = 0;
    int rc = dsn_parse(b.data ? b.data : "", b.len, &r, &off, err, sizeof err);
    buf_free(&b);
    if (rc != 0) {
        fprintf(stderr, "baton feedback: %s: byte %zu: %s\n", strcmp(file, "-") ? file : "stdin",
                off, err);
        return EXIT_USAGE;
    }
    app a;
    if (cli_open_app(ctx, &a) != 0) {
        dsn_report_free(&r);
        return EXIT_USAGE;
    }
    store st;
    if (store_open(&st, a.conf.data_dir, err, sizeof err)) {
        fprintf(stderr, "baton feedback: %s\n", err);
        store_close(&st);
        app_close(&a);
        dsn_report_free(&r);
        return EXIT_RUNTIME;
    }
    sqlite3_busy_timeout(st.db, 5000); /* serve may be writing */
    int64_t now = (int64_t)time(NULL);
    json_t *results = json_array();
    long matched = 0;
    rc = EXIT_OK;
    for (size_t i = 0; i < r.n; i++) {
        dispatch_feedback f = {.type = r.v[i].type,
                               .provider = "dsn",
                               .address = r.v[i].address,
                               .key = *r.key ? r.key : NULL,
                               .message_id = dsn_provider_id(&r),
                               .reason = r.v[i].reason};
        dispatch_log_row row;
        int found = dispatch_feedback_record(&st, &f, now, &row, err, sizeof err);
        if (found < 0) {
            fprintf(stderr, "baton feedback: %s (%zu of %zu recorded)\n", err, i, r.n);
            rc = EXIT_RUNTIME;
            break;
        }
        matched += found;
        json_t *ev = found ? dispatch_feedback_event(&st, f.type, &row) : NULL;
        if (ev) {
            char *s = json_dumps(ev, JSON_COMPACT);
            json_decref(ev);
            int sp = jinbox_spool_put(a.conf.data_dir, s, strlen(s), err, sizeof err);
            free(s);
            if (sp != 0) { /* recorded, but no journey will know: say so, fail */
                fprintf(stderr, "baton feedback: %s (%zu of %zu recorded)\n", err, i + 1, r.n);
                rc = EXIT_RUNTIME;
                break;
            }
        }
        json_t *o = json_pack("{s:s, s:s, s:b}", "type", type_name(f.type), "address", f.address,
                              "suppressed", f.type != FEEDBACK_SOFT_BOUNCE);
        json_object_set_new(o, "delivery", found ? json_string(row.key) : json_null());
        json_array_append_new(results, o);
        if (!json)
            printf("%s %s: %s%s%s\n", type_name(f.type), f.address,
                   f.type != FEEDBACK_SOFT_BOUNCE ? "suppressed" : "recorded",
                   found ? ", delivery " : ", no delivery found", found ? row.key : "");
    }
    store_close(&st);
    app_close(&a);
    if (rc == EXIT_OK && json) {
        json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:o}", "provider", "dsn", "recorded",
                              (json_int_t)r.n, "matched", (json_int_t)matched, "ignored",
                              (json_int_t)r.ignored, "results", results);
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", s);
        free(s);
        json_decref(o);
    } else {
        json_decref(results);
        if (rc == EXIT_OK && r.ignored)
            printf("%ld recipient(s) not bounced (delivered, relayed, expanded): ignored\n",
                   r.ignored);
    }
    dsn_report_free(&r);
    return rc;
}
