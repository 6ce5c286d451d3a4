/* exit — the process's exit codes, the same for every command. */
#ifndef BATON_BASE_EXIT_H
#define BATON_BASE_EXIT_H

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

#endif
