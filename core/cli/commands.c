#include "cli/cli.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/diag.h"
#include "plugin/app.h"

const cli_command cli_commands[] = {
    {"check", "", "validate the configuration, plugins, campaigns and journeys",
     "Validate everything: the configuration file, every plugin it names and\n"
     "their settings, the schema, campaigns and journeys. Every error is printed\n"
     "as file:line: message. Exit 0 when all is valid, 2 otherwise.\n",
     cmd_check},
    {"plugins", "[--json] [--describe NAME]", "list plugins, or describe one's settings",
     "List every plugin found on the plugin path: name, kind, version, ABI and\n"
     "the configured entries that use it.\n"
     "  --json           one JSON object: {\"plugins\": [...]}\n"
     "  --describe NAME  the plugin's settings: type, default, range and help\n",
     cmd_plugins},
    {"journey",
     "test NAME|FILE --events FILE [--mocks FILE] [--json] [--until TS] | status NAME [--json] | "
     "pause|resume|close NAME",
     "simulate a journey over an events file, show where profiles are in it, pause or close it",
     "journey test NAME|FILE --events FILE [--mocks FILE] [--json] [--until TS]\n"
     "  Run the journey over a JSON-lines events file (in time order) with a\n"
     "  simulated clock that jumps to each next event or timer, until nothing is\n"
     "  pending or until --until. Nothing is sent: channel and action nodes are\n"
     "  recorded; lookups and actions answer from --mocks FILE (JSON {\"lookups\",\n"
     "  \"actions\"}), never the network. Prints each profile's state, path and\n"
     "  sends; --json adds steps (node, simulated time) and rendered sends; it prints\n"
     "  {\"journey\", \"profiles\": {ID: {\"state\", \"path\", \"sent\"}}, \"dead_letters\"}.\n"
     "journey status NAME [--json]\n"
     "  Profiles at and through each node of a running journey (from the state\n"
     "  store in data_dir), and how many are active, completed, exited, failed;\n"
     "  also the dead letters (events refused for every journey: no type, no\n"
     "  profile, not JSON) and the latest five, with their reason. Works while\n"
     "  serve runs. --json adds \"dead_letters\" (a count) and\n"
     "  \"latest_dead_letters\": [{\"at\", \"source\", \"reason\", \"body\"}].\n"
     "journey pause|resume|close NAME\n"
     "  pause: the journey's events wait in the state store and its waits do not\n"
     "  fire; resume: they are routed in order and overdue waits fire; close: no\n"
     "  new entries, instances go on. A running serve reads it within a second.\n",
     cmd_journey},
    {"profile", "ID [--json]", "the journeys a profile is in, and what it was sent",
     "The journeys the profile entered (state, node, path) and every send and\n"
     "action journeys made for it, with their status, from the state store.\n",
     cmd_profile},
    {"serve", "", "run event sources, journeys and channel delivery until SIGTERM",
     "Run every event source, journey and channel of the configuration until\n"
     "SIGTERM or SIGINT (graceful: queued events are committed, action calls in\n"
     "flight finish, channel queues drain; the rest waits in the state store).\n"
     "SIGHUP re-reads the configuration: channels turned on or off, journeys\n"
     "added or changed, without a restart; a configuration with errors is\n"
     "refused (the errors are printed) and the running one stays in force; one\n"
     "that is valid but fails to start (a plugin's start fails) is logged and\n"
     "the previous one is brought back as it was loaded (exit 1 only when that\n"
     "fails too). One serve per data_dir (it holds data_dir/serve.lock).\n",
     cmd_serve},
    {"campaign", "plan|run|runs|signal NAME|FILE [options]",
     "plan, run, list and signal runs of campaigns",
     "  campaign plan NAME|FILE [--json | --dot]\n"
     "      compute every targeting activity and print the exact count on every\n"
     "      transition and the messages each send would send; nothing is sent.\n"
     "      --json: {\"campaign\", \"counts\": {transition: n}, \"excluded\": {send:\n"
     "      {\"no_consent\", \"no_address\"}}}; --dot: a Graphviz graph with the counts.\n"
     "  campaign run NAME|FILE [--dry-run] [--resume] [--proof ADDRESS...] [--param "
     "NAME=VALUE...]\n"
     "      execute: work tables, then one message per row through each channel.\n"
     "      --dry-run renders everything and delivers nothing; --resume finishes\n"
     "      the latest interrupted run (never delivering a row twice); --proof\n"
     "      sends a few rendered samples to the addresses given, nothing else.\n"
     "  campaign runs [NAME] [--json]\n"
     "      the run history: each run and each activity's counts and timing.\n"
     "  campaign signal NAME RUN_ID [--param NAME=VALUE...]\n"
     "      the external signal a run waiting at a signal activity waits for;\n"
     "      the values are the campaign's parameters from there on. The run is\n"
     "      resumed at once.\n",
     cmd_campaign},
    {"feedback", "dsn FILE|- [--json]", "record a bounce an MTA returned (an RFC 3464 report)",
     "Read a delivery status notification (RFC 3464: multipart/report;\n"
     "report-type=delivery-status), as an MTA returns it, from FILE or stdin (-),\n"
     "and record it in the state store of data_dir as POST /v1/feedback/dsn does:\n"
     "a failed recipient (hard bounce) is suppressed on every channel and its\n"
     "delivery (found by the returned X-Baton-Key, else the baton Message-ID the\n"
     "report quotes, else the provider id) becomes bounced; a delayed one (soft)\n"
     "is noted. Works while serve runs and without the HTTP server; its\n"
     "email_bounced goes to the inbox's spool, entered into journeys by serve\n"
     "(running, or when it starts), once per delivery.\n"
     "Exit 2 for a report that is not one (FILE: byte N: why); 1 when the store\n"
     "or the spool cannot be written.\n"
     "  --json  {\"provider\", \"recorded\", \"matched\", \"ignored\", \"results\"}\n",
     cmd_feedback},
    {"sample-data",
     "[--profiles N] [--orders N] [--stores N] [--seed N] [--now SECONDS] [--source NAME]",
     "fill the profiles source with the sample CRM",
     "Create the tables of conf/schema.cfg (profiles, orders, stores, reservations)\n"
     "in the profiles source, or in --source NAME (SQLite or PostgreSQL sources), and\n"
     "fill them: N profiles (default 1000), --orders orders each (default 5), --stores\n"
     "stores (default 20) and N/2 reservations. The same --seed and --now (the\n"
     "reference time, seconds since 1970; default: now) give the same data, on\n"
     "either kind of source. Replaces those tables.\n",
     cmd_sample_data},
    {0},
};

const check_hook check_hooks[] = {
    check_schemas,
    check_journeys,
    campaign_check_hook,
    NULL,
};

void cli_doc_path(const char *page, const char *anchor, char *out, size_t outlen)
{
    /* build/baton of a source tree, then bin/baton of an install */
    static const char *const rel[] = {"../docs", "../share/doc/baton"};
    char exe[PATH_MAX], where[PATH_MAX + 32] = "share/doc/baton", file[PATH_MAX + 160];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = len > 0 ? (exe[len] = '\0', strrchr(exe, '/')) : NULL;
    if (slash) {
        *slash = '\0';
        for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
            snprintf(where, sizeof where, "%s/%s", exe, rel[i]);
            snprintf(file, sizeof file, "%s/%.100s", where, page);
            if (access(file, R_OK) == 0)
                break; /* else the installed place, named even when missing */
        }
    }
    const char *shown = realpath(where, exe) ? exe : where;
    snprintf(out, outlen, "%s/%s%s%s", shown, page, anchor ? "#" : "", anchor ? anchor : "");
}

void cli_usage(const cli_command *c, FILE *out)
{
    char anchor[64], ref[PATH_MAX + 128];
    snprintf(anchor, sizeof anchor, "baton-%s", c->name);
    cli_doc_path("cli.md", anchor, ref, sizeof ref);
    fprintf(out, "usage: baton [-c FILE] %s%s%s\n\n%s\nReference: %s\n", c->name,
            c->args[0] ? " " : "", c->args, c->help, ref);
}

int cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return 1;
    return 0;
}

int cli_open_app(const cli_ctx *ctx, app *a)
{
    diag d;
    diag_init(&d);
    int rc = app_open(a, ctx->config, 0, &d);
    if (rc != 0) {
        diag_print(&d, stderr);
        app_close(a);
    }
    diag_free(&d);
    return rc != 0 ? -1 : 0;
}
