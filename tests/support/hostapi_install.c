/* Every test program loads plugins the way baton does: the host table is
 * installed before main, as core/main.c does first thing. */
#include "hostapi/hostapi.h"

__attribute__((constructor)) static void install_host_table(void)
{
    hostapi_install();
}
