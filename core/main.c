/* baton — campaign and journey orchestration. */
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "hostapi/hostapi.h"
#include "plugin/app.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: baton [-c FILE] <command> [args]\n\n"
                 "  -c FILE     configuration file (default: $BATON_CONFIG or conf/baton.cfg)\n"
                 "  --version   print the version\n\ncommands:\n");
    for (const cli_command *c = cli_commands; c->name; c++)
        fprintf(out, "  %-12s %s\n", c->name, c->summary);
    char ref[4200];
    cli_doc_path("README.md", NULL, ref, sizeof ref);
    fprintf(out,
            "\n'baton COMMAND --help' says more. Exit codes: 0 success, 1 runtime failure,\n"
            "2 usage or configuration error.\nReference: %s\n",
            ref);
}

int main(int argc, char **argv)
{
    /* before any other SQLite call: no global mutex around every SQLite
     * allocation for statistics nobody reads */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    /* a peer that closes its socket (an SMTP server answering 421 and
     * hanging up) is an error on that write, never the end of the
     * process: every command, not serve alone */
    signal(SIGPIPE, SIG_IGN);
    /* what baton writes holds personal data: its own (data_dir 0700,
     * state.db, inbox.db, exports 0600); a channel that shares files on
     * purpose says so with a mode of its own (directmail's export_mode) */
    umask(077);
    hostapi_install();
    cli_ctx ctx = {.config = app_default_config()};
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
            if (++i == argc) {
                fprintf(stderr, "baton: -c needs a file\n");
                return EXIT_USAGE;
            }
            ctx.config = argv[i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return EXIT_OK;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("baton %s (plugin ABI %d.%d)\n", BATON_VERSION, BATON_ABI_MAJOR,
                   BATON_ABI_MINOR);
            return EXIT_OK;
        } else {
            fprintf(stderr, "baton: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (i == argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    for (const cli_command *c = cli_commands; c->name; c++) {
        if (strcmp(c->name, argv[i]) != 0)
            continue;
        if (cli_wants_help(argc - i, argv + i)) {
            cli_usage(c, stdout);
            return EXIT_OK;
        }
        return c->run(&ctx, argc - i, argv + i);
    }
    fprintf(stderr, "baton: unknown command '%s'\n", argv[i]);
    usage(stderr);
    return EXIT_USAGE;
}
