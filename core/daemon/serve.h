/* daemon/serve — the long-running process behind `baton serve` (see
 * serve.c for what it runs, reload and the data folder's lock). */
#ifndef BATON_DAEMON_SERVE_H
#define BATON_DAEMON_SERVE_H

/* Serve the configuration file config until SIGTERM or SIGINT; SIGHUP
 * reloads it. Returns an exit code (base/exit.h). */
int daemon_serve(const char *config);

#endif
