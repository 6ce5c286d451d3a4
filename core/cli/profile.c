/* baton profile ID — the journeys a profile is in, its path through
 * each, and what it was sent. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/app.h"
#include "cli/cli.h"
#include "journey/report.h"
#include "store/store.h"

int cmd_profile(const cli_ctx *ctx, int argc, char **argv)
{
    const char *id = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (argv[i][0] != '-' && !id)
            id = argv[i];
        else {
            fprintf(stderr, "baton profile: unexpected argument '%s'\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!id) {
        fprintf(stderr, "usage: baton profile ID [--json]\n");
        return EXIT_USAGE;
    }
    app a;
    if (cli_open_app(ctx, &a) != 0)
        return EXIT_USAGE;
    store st;
    char err[512];
    int rc = EXIT_OK;
    if (store_open(&st, a.conf.data_dir, err, sizeof err)) {
        fprintf(stderr, "baton profile: %s\n", err);
        rc = EXIT_RUNTIME;
    } else {
        json_t *o = jreport_profile(&st, id);
        store_close(&st);
        if (json) {
            char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            printf("%s\n", s);
            free(s);
        } else {
            json_t *js = json_object_get(o, "journeys"), *sent = json_object_get(o, "sent");
            printf("profile %s: %zu journey instance(s), %zu send(s) and action(s)\n", id,
                   json_array_size(js), json_array_size(sent));
            size_t i, k;
            json_t *v, *p;
            json_array_foreach(js, i, v)
            {
                printf("  %-16s %-10s entered %s  ",
                       json_string_value(json_object_get(v, "journey")),
                       json_string_value(json_object_get(v, "state")),
                       json_string_value(json_object_get(v, "entered")));
                json_array_foreach(json_object_get(v, "path"), k, p)
                    printf("%s%s", k ? " > " : "", json_string_value(p));
                json_t *why = json_object_get(v, "reason");
                printf("%s%s\n", why ? "  — " : "", why ? json_string_value(why) : "");
            }
            json_array_foreach(sent, i, v)
            {
                json_t *ch = json_object_get(v, "channel");
                printf("  %s %s/%s %s %s: %s\n", json_string_value(json_object_get(v, "at")),
                       json_string_value(json_object_get(v, "journey")),
                       json_string_value(json_object_get(v, "node")), ch ? "channel" : "action",
                       json_string_value(ch ? ch : json_object_get(v, "action")),
                       json_string_value(json_object_get(v, "status")));
            }
            json_array_foreach(json_object_get(o, "deliveries"), i, v)
            {
                if (strcmp(json_string_value(json_object_get(v, "source")), "campaign"))
                    continue; /* journey sends are listed above */
                printf("  %s campaign %s channel %s: %s\n",
                       json_string_value(json_object_get(v, "created_at")),
                       json_string_value(json_object_get(v, "key")),
                       json_string_value(json_object_get(v, "channel")),
                       json_string_value(json_object_get(v, "status")));
            }
        }
        json_decref(o);
    }
    app_close(&a);
    return rc;
}
