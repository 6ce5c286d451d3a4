/* cli — the command line: `baton [-c FILE] <command> [args]`. Each
 * command is one entry of cli_commands (cli/commands.c) and one file. */
#ifndef BATON_CLI_H
#define BATON_CLI_H

#include <stdio.h>

#include "base/exit.h"

typedef struct cli_ctx {
    const char *config; /* -c FILE, or the default */
} cli_ctx;

typedef struct cli_command {
    const char *name;
    const char *args;    /* "NAME|FILE [--json]" */
    const char *summary; /* one line for `baton --help` */
    const char *help;    /* the whole text for `baton NAME --help` */
    /* argv[0] is the command's name. Returns an exit code. */
    int (*run)(const cli_ctx *ctx, int argc, char **argv);
} cli_command;

extern const cli_command cli_commands[]; /* ends with a NULL name */

/* Print the command's usage to out. */
void cli_usage(const cli_command *c, FILE *out);
/* True when argv holds -h or --help. */
int cli_wants_help(int argc, char **argv);
/* The path of a page of the user's reference (a docs/ page), with
 * "#anchor" when anchor is not NULL, written to out: docs/ of the source
 * tree beside the binary's build folder, else share/doc/baton of the
 * prefix the binary is installed in (where `make install` puts them). */
void cli_doc_path(const char *page, const char *anchor, char *out, size_t outlen);

struct app;
struct diag;
/* What `baton check` validates after the configuration and plugins:
 * campaigns, journeys... Each adds its errors to d and may print a line
 * of what it checked to out. Listed in cli/commands.c, NULL-terminated. */
typedef void (*check_hook)(struct app *a, struct diag *d, FILE *out);
extern const check_hook check_hooks[];

int cmd_check(const cli_ctx *ctx, int argc, char **argv);
int cmd_plugins(const cli_ctx *ctx, int argc, char **argv);
int cmd_sample_data(const cli_ctx *ctx, int argc, char **argv);
int cmd_journey(const cli_ctx *ctx, int argc, char **argv);
int cmd_profile(const cli_ctx *ctx, int argc, char **argv);
int cmd_serve(const cli_ctx *ctx, int argc, char **argv);
int cmd_feedback(const cli_ctx *ctx, int argc, char **argv);
/* app_open on ctx's configuration, its errors printed: 0, or -1 with a
 * closed (nothing to free). */
int cli_open_app(const cli_ctx *ctx, struct app *a);
void check_journeys(struct app *a, struct diag *d, FILE *out);
void check_schemas(struct app *a, struct diag *d, FILE *out);
int cmd_campaign(const cli_ctx *ctx, int argc, char **argv);
void campaign_check_hook(struct app *a, struct diag *d, FILE *out);

#endif
