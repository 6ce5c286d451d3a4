/* Test helper: an instance of a plugin linked into the test binary (no
 * .so): its settings parsed from a libconfig group body, validated against
 * the host's and the plugin's keys like a configured use, then init and,
 * if asked, start. */
#ifndef BATON_TEST_INSTANCE_H
#define BATON_TEST_INSTANCE_H

#include <stddef.h>

#include "plugin/plugin_host.h"

/* desc: the plugin's descriptor (e.g. baton_plugin_entry() of the plugin
 * under test). section: "channels", "actions"... settings: the group's
 * body without `plugin = ...` ("host = \"127.0.0.1\"; port = 2525;").
 * NULL with err (the first diagnostic, or the init/start error). */
instance *test_instance_new(const baton_plugin *desc, const char *section, const char *name,
                            const char *settings, int start, char *err, size_t errlen);
/* Stop, destroy, free (also the in-process plugin record). */
void test_instance_free(instance *inst);

#endif
