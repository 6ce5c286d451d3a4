#include "schema/schema_source.h"

#include <libconfig.h>
#include <stdlib.h>
#include <string.h>

#include "config/keymap.h"
#include "base/mem.h"

char *schema_source_path(const conf *c, const char *name, int *line)
{
    conf_use *u = name ? conf_find((conf *)c, "sources", name) : NULL;
    config_setting_t *s = u && u->group ? config_setting_get_member(u->group, "schema") : NULL;
    if (!s || config_setting_type(s) != CONFIG_TYPE_STRING)
        return NULL;
    if (line)
        *line = (int)config_setting_source_line(s);
    const char *file = config_setting_source_file(s);
    char *dir = path_dirname(file ? file : c->path);
    char *path = path_resolve(dir, config_setting_get_string(s));
    free(dir);
    return path;
}

schema *schema_load_profiles(const conf *c, diag *d)
{
    char *path = schema_source_path(c, c->profiles, NULL);
    if (!path)
        return NULL;
    schema *s = xcalloc(1, sizeof *s);
    diag local;
    diag_init(&local);
    int rc = schema_load(s, path, d ? d : &local);
    diag_free(&local);
    free(path);
    if (rc != 0) {
        schema_destroy(s);
        return NULL;
    }
    return s;
}

void schema_destroy(schema *s)
{
    if (!s)
        return;
    schema_free(s);
    free(s);
}
