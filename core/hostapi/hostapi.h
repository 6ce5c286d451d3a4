/* hostapi — the assembled host table (see hostapi.c). */
#ifndef BATON_HOSTAPI_H
#define BATON_HOSTAPI_H

#include <baton/baton.h>

/* The table handed to every plugin. */
const baton_host *plugin_host_api(void);
/* Hand the table to the plugin loader; every program that loads plugins
 * calls it once before opening an app (main, and the tests' support). */
void hostapi_install(void);

#endif
