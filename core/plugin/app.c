#include "plugin/app.h"

#include <stdlib.h>
#include <string.h>

#include "config/keymap.h"
#include "base/log.h"
#include "base/mem.h"
#include "schema/schema_source.h"

const char *app_default_config(void)
{
    const char *env = getenv("BATON_CONFIG");
    return env && *env ? env : "conf/baton.cfg";
}

static void build_path(app *a)
{
    char **defs;
    size_t ndefs;
    plugin_default_path(&defs, &ndefs);
    a->npath = a->conf.nplugin_path + ndefs;
    a->path = xcalloc(a->npath + 1, sizeof *a->path);
    for (size_t i = 0; i < a->conf.nplugin_path; i++)
        a->path[i] = xstrdup(a->conf.plugin_path[i]);
    for (size_t i = 0; i < ndefs; i++)
        a->path[a->conf.nplugin_path + i] = defs[i];
    free(defs);
    a->reg.path = a->path;
    a->reg.npath = a->npath;
}

/* A plugin named by a path resolves against the configuration's folder,
 * like every other relative path in it. */
static char *plugin_file(app *a, const char *name)
{
    return strchr(name, '/') ? path_resolve(a->conf.dir, name) : xstrdup(name);
}

/* A disabled channel is loaded by no one at run time, but its mistakes
 * should not wait for the day it is turned on: check reports them as
 * warnings. */
static void check_disabled(app *a, const conf_use *u, diag *d)
{
    diag scratch;
    diag_init(&scratch);
    char err[1024];
    char *file = plugin_file(a, u->plugin);
    plugin *p = plugin_load(&a->reg, file, err, sizeof err);
    free(file);
    if (!p) {
        diag_error(&scratch, u->file, u->line, "%s: %s", u->where, err);
    } else {
        instance *inst = instance_create(p, u, a->conf.dir, &scratch);
        instance_destroy(inst);
    }
    for (size_t i = 0; i < scratch.n; i++)
        diag_warn(d, scratch.v[i].file, scratch.v[i].line, "(disabled) %s", scratch.v[i].msg);
    diag_free(&scratch);
}

int app_open(app *a, const char *config_path, unsigned flags, diag *d)
{
    memset(a, 0, sizeof *a);
    size_t before = d->errors;
    if (conf_load(&a->conf, config_path, d) != 0 && !a->conf.path)
        return -1;
    /* a refused configuration (a bad SIGHUP reload) changes nothing */
    if (d->errors == before && !(flags & APP_SECONDARY))
        log_configure(a->conf.log_level, a->conf.log_json);
    build_path(a);
    if (!(flags & (APP_PLUGINS | APP_INIT)))
        return d->errors == before ? 0 : -1;

    /* before any plugin init: plugins compile expressions in entity scopes
     * (each instance against its own app's schema: serve may hold two apps
     * at once); baton check reports the schema's own errors */
    a->schema = schema_load_profiles(&a->conf, NULL);

    a->inst = xcalloc(a->conf.nuses + 1, sizeof *a->inst);
    for (size_t i = 0; i < a->conf.nuses; i++) {
        conf_use *u = &a->conf.uses[i];
        if (u->plugin && !u->enabled && (flags & APP_DISABLED))
            check_disabled(a, u, d);
        if (!u->plugin || !u->enabled)
            continue;
        char err[1024];
        char *file = plugin_file(a, u->plugin);
        plugin *p = plugin_load(&a->reg, file, err, sizeof err);
        free(file);
        if (!p) {
            diag_error(d, u->file, u->line, "%s: %s", u->where, err);
            continue;
        }
        instance *inst = instance_create(p, u, a->conf.dir, d);
        if (inst && inst->kind == BATON_KIND_CHANNEL &&
            (inst->host.channel.track_opens || inst->host.channel.track_clicks) &&
            !a->conf.http.public_url)
            diag_error(d, u->file, u->line,
                       "%s.tracking needs http.public_url (and http.link_secret): the pixel "
                       "and the redirects are links to baton serve",
                       u->where);
        if (inst) {
            inst->schema = a->schema;
            a->inst[a->ninst++] = inst;
        }
    }
    if (d->errors != before || !(flags & APP_INIT))
        return d->errors == before ? 0 : -1;
    for (size_t i = 0; i < a->ninst; i++) {
        instance *inst = a->inst[i];
        if (instance_init(inst) != 0)
            diag_error(d, inst->file, inst->line, "%s: %s: init failed: %s", inst->where,
                       inst->plugin->path, inst->error);
    }
    return d->errors == before ? 0 : -1;
}

instance *app_find(app *a, const char *section, const char *name)
{
    size_t sl = strlen(section);
    for (size_t i = 0; i < a->ninst; i++) {
        const char *w = a->inst[i]->where;
        if (strncmp(w, section, sl) == 0 && w[sl] == '.' && strcmp(a->inst[i]->name, name) == 0)
            return a->inst[i];
    }
    return NULL;
}

/* Events last: their sources push into everything else. */
static int start_rank(baton_kind k)
{
    switch (k) {
    case BATON_KIND_SOURCE: return 0;
    case BATON_KIND_ACTION: return 1;
    case BATON_KIND_CHANNEL: return 2;
    case BATON_KIND_EVENT: return 3;
    default: return 4;
    }
}

int app_start(app *a, diag *d)
{
    for (int rank = 0; rank <= 4; rank++)
        for (size_t i = 0; i < a->ninst; i++) {
            instance *inst = a->inst[i];
            if (start_rank(inst->kind) != rank || inst->phase != INSTANCE_READY)
                continue;
            if (instance_start(inst) != 0) {
                diag_error(d, inst->file, inst->line, "%s: start failed: %s", inst->where,
                           inst->error);
                app_stop(a);
                return -1;
            }
        }
    a->started = 1;
    return 0;
}

void app_stop(app *a)
{
    for (int rank = 4; rank >= 0; rank--)
        for (size_t i = a->ninst; i-- > 0;)
            if (start_rank(a->inst[i]->kind) == rank)
                instance_stop(a->inst[i]);
    a->started = 0;
}

int app_reinit(app *a, diag *d)
{
    app_stop(a);
    size_t before = d->errors, n = 0;
    for (size_t i = 0; i < a->ninst; i++) {
        instance *old = a->inst[i];
        plugin *p = old->plugin; /* stays loaded: the registry is not freed */
        conf_use *u = NULL;
        for (size_t k = 0; k < a->conf.nuses && !u; k++)
            if (strcmp(a->conf.uses[k].where, old->where) == 0)
                u = &a->conf.uses[k];
        instance_destroy(old);
        instance *inst = u ? instance_create(p, u, a->conf.dir, d) : NULL;
        if (!inst)
            continue;
        inst->schema = a->schema;
        if (instance_init(inst) != 0)
            diag_error(d, inst->file, inst->line, "%s: %s: init failed: %s", inst->where,
                       inst->plugin->path, inst->error);
        a->inst[n++] = inst;
    }
    a->ninst = n;
    return d->errors == before ? 0 : -1;
}

void app_close(app *a)
{
    app_stop(a);
    for (size_t i = a->ninst; i-- > 0;)
        instance_destroy(a->inst[i]);
    free(a->inst);
    plugin_registry_free(&a->reg);
    if (a->schema) {
        schema_destroy(a->schema);
    }
    for (size_t i = 0; i < a->npath; i++)
        free(a->path[i]);
    free(a->path);
    conf_free(&a->conf);
    memset(a, 0, sizeof *a);
}
