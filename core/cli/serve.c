/* baton serve — the command; the process itself is core/daemon/serve. */
#include <stdio.h>

#include "cli/cli.h"
#include "daemon/serve.h"

int cmd_serve(const cli_ctx *ctx, int argc, char **argv)
{
    if (argc > 1) {
        fprintf(stderr, "baton serve: unexpected argument '%s'\n", argv[1]);
        return EXIT_USAGE;
    }
    return daemon_serve(ctx->config);
}
