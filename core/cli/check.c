/* baton check — validate everything, report every error, exit 2 on any. */
#include <stdio.h>
#include <string.h>

#include "plugin/app.h"
#include "cli/cli.h"

int cmd_check(const cli_ctx *ctx, int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "baton check: unexpected argument '%s'\n", argv[1]);
        return EXIT_USAGE;
    }
    diag d;
    diag_init(&d);
    app a;
    app_open(&a, ctx->config, APP_INIT | APP_DISABLED, &d);
    if (d.errors == 0)
        for (const check_hook *h = check_hooks; *h; h++)
            (*h)(&a, &d, stdout);
    /* what event sources can learn of their far end (a broker's limits);
     * warnings only, so check still works offline */
    for (size_t i = 0; i < a.ninst; i++)
        instance_probe(a.inst[i], &d, stdout);
    diag_print(&d, stderr);
    int rc = d.errors ? EXIT_USAGE : EXIT_OK;
    if (!d.errors) {
        size_t n[6] = {0}, disabled = 0;
        for (size_t i = 0; i < a.conf.nuses; i++) {
            n[a.conf.uses[i].kind]++;
            if (!a.conf.uses[i].enabled) {
                disabled++;
                printf("%s: disabled (its plugin is not loaded)\n", a.conf.uses[i].where);
            }
        }
        printf("%s: ok: %zu source(s), %zu channel(s) (%zu disabled), %zu action(s), %zu event "
               "source(s)\n",
               ctx->config, n[BATON_KIND_SOURCE], n[BATON_KIND_CHANNEL], disabled,
               n[BATON_KIND_ACTION], n[BATON_KIND_EVENT]);
    } else {
        fprintf(stderr, "baton check: %zu error(s)\n", d.errors);
    }
    app_close(&a);
    diag_free(&d);
    return rc;
}
