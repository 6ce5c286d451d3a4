/* baton check: every schema a data source names loads without error, and
 * the profiles source's schema has a profiles entity. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "cli/cli.h"
#include "schema_source.h"

void check_schemas(struct app *a, struct diag *d, FILE *out)
{
    for (size_t i = 0; i < a->conf.nuses; i++) {
        conf_use *u = &a->conf.uses[i];
        if (u->kind != BATON_KIND_SOURCE)
            continue;
        int line = 0;
        char *path = schema_source_path(&a->conf, u->name, &line);
        if (!path)
            continue;
        schema s;
        size_t before = d->errors;
        schema_load(&s, path, d);
        if (d->errors == before) {
            int is_profiles = a->conf.profiles && strcmp(a->conf.profiles, u->name) == 0;
            if (is_profiles && !schema_entity_find(&s, "profiles")) {
                diag_error(d, u->file, line,
                           "%s.schema: %s has no 'profiles' entity, and %s is the profiles "
                           "source (profiles = \"%s\")",
                           u->where, path, u->name, a->conf.profiles);
            } else if (out) {
                size_t links = 0;
                for (size_t k = 0; k < s.nentities; k++)
                    links += s.entities[k].nlinks;
                fprintf(out, "%s: ok: %zu entities, %zu links (source %s)\n", path,
                        s.nentities, links, u->name);
            }
        }
        schema_free(&s);
        free(path);
    }
}
