#include "support/instance.h"

#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

instance *test_instance_new(const baton_plugin *desc, const char *section, const char *name,
                            const char *settings, int start, char *err, size_t errlen)
{
    plugin *p = calloc(1, sizeof *p);
    p->name = strdup(desc->name);
    p->path = strdup("(linked into the test)");
    memcpy(&p->desc, desc, desc->size < sizeof p->desc ? desc->size : sizeof p->desc);
    config_t lc;
    config_init(&lc);
    char *text;
    if (asprintf(&text, "%s: { plugin = \"%s\"; %s };", name, desc->name, settings) < 0)
        abort();
    instance *inst = NULL;
    if (!config_read_string(&lc, text)) {
        snprintf(err, errlen, "line %d: %s", config_error_line(&lc), config_error_text(&lc));
        goto out;
    }
    char where[128];
    snprintf(where, sizeof where, "%s.%s", section, name);
    baton_kind kind = strcmp(section, "channels") == 0  ? BATON_KIND_CHANNEL
                      : strcmp(section, "actions") == 0 ? BATON_KIND_ACTION
                      : strcmp(section, "sources") == 0 ? BATON_KIND_SOURCE
                                                        : BATON_KIND_EVENT;
    conf_use u = {.section = section,
                  .name = (char *)name,
                  .where = where,
                  .kind = kind,
                  .plugin = desc->name,
                  .enabled = 1,
                  .group = config_lookup(&lc, name),
                  .file = "test.cfg",
                  .line = 1};
    diag d;
    diag_init(&d);
    inst = instance_create(p, &u, ".", &d);
    if (!inst && d.n)
        snprintf(err, errlen, "%s", d.v[0].msg);
    diag_free(&d);
    if (inst && (instance_init(inst) || (start && instance_start(inst)))) {
        snprintf(err, errlen, "%s", inst->error);
        test_instance_free(inst); /* frees p too */
        inst = NULL;
        p = NULL;
    }
out:
    if (!inst && p) {
        free(p->name);
        free(p->path);
        free(p);
    }
    config_destroy(&lc);
    free(text);
    return inst;
}

void test_instance_free(instance *inst)
{
    if (!inst)
        return;
    plugin *p = inst->plugin;
    instance_destroy(inst);
    free(p->name);
    free(p->path);
    free(p);
}
