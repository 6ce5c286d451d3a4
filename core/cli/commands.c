#include "cli/cli.h"

#include <string.h>

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
    {0},
};

const check_hook check_hooks[] = {
    NULL,
};

void cli_usage(const cli_command *c, FILE *out)
{
    fprintf(out, "usage: baton [-c FILE] %s%s%s\n\n%s", c->name, c->args[0] ? " " : "", c->args,
            c->help);
}

int cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return 1;
    return 0;
}
