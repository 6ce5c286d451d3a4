/* baton check: every schema a data source names loads without error, and
 * the profiles source's schema has a profiles entity. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/app.h"
#include "cli/cli.h"
#include "config/keymap.h"
#include "schema/schema.h"
#include "schema/schema_source.h"
#include "base/suggest.h"

/* A channel's `address` and `consent` name profiles fields; a consent
 * that is not a bool would let any non-empty value count as yes. */
static void check_channel_fields(struct app *a, const schema_entity *profiles, diag *d)
{
    static const struct {
        const char *key;
        baton_type type;
        const char *what;
    } wants[] = {{"address", BATON_T_STRING, "a string"}, {"consent", BATON_T_BOOL, "a bool"}};
    for (size_t i = 0; i < a->ninst; i++) {
        instance *inst = a->inst[i];
        if (inst->kind != BATON_KIND_CHANNEL)
            continue;
        for (size_t w = 0; w < sizeof wants / sizeof *wants; w++) {
            const keymap_value *v = keymap_get(&inst->values, wants[w].key);
            if (!v || !v->s || !v->present)
                continue;
            const schema_field *f = schema_field_find(profiles, v->s);
            if (!f) {
                const char *cands[256];
                size_t nc = 0;
                for (size_t k = 0; k < profiles->nfields && nc < 256; k++)
                    cands[nc++] = profiles->fields[k].name;
                const char *near = suggest_nearest(v->s, cands, nc);
                diag_error(d, inst->file, v->line,
                           "%s: %s = \"%s\" is not a field of profiles%s%s%s", inst->where,
                           wants[w].key, v->s, near ? " (did you mean '" : "", near ? near : "",
                           near ? "'?)" : "");
            } else if (f->type != wants[w].type) {
                diag_error(d, inst->file, v->line, "%s: %s = \"%s\" must name %s field of profiles",
                           inst->where, wants[w].key, v->s, wants[w].what);
            }
        }
    }
}

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
            } else {
                if (is_profiles)
                    check_channel_fields(a, schema_entity_find(&s, "profiles"), d);
                const schema_field *tz =
                    is_profiles && a->conf.profiles_tz
                        ? schema_field_find(schema_entity_find(&s, "profiles"), a->conf.profiles_tz)
                        : NULL;
                if (is_profiles && a->conf.profiles_tz && (!tz || tz->type != BATON_T_STRING))
                    diag_error(d, a->conf.path, a->conf.profiles_tz_line,
                               "profiles_timezone = \"%s\" must name a string field of profiles "
                               "(%s)",
                               a->conf.profiles_tz, tz ? "it is not a string" : "it has none");
                size_t links = 0;
                for (size_t k = 0; k < s.nentities; k++)
                    links += s.entities[k].nlinks;
                if (out)
                    fprintf(out, "%s: ok: %zu entities, %zu links (source %s)\n", path, s.nentities,
                            links, u->name);
            }
        }
        schema_free(&s);
        free(path);
    }
}
