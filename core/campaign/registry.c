/* Activity types: the host's own (send and the flow activities) and those
 * of every activity_*.so on the plugin path. An activity plugin has no
 * entry in the configuration: it gets one instance, named after it. */
#include <stdlib.h>
#include <string.h>

#include "campaign/alert.h"
#include "campaign/engine.h"
#include "config/keymap.h"
#include "base/mem.h"

typedef struct scan_ctx {
    act_registry *r;
    app *a;
    diag *d;
} scan_ctx;

static void add(act_registry *r, const char *name, const baton_activity_type *t, instance *inst,
                int flow, int send)
{
    r->v = xrealloc(r->v, (r->n + 1) * sizeof *r->v);
    r->v[r->n++] = (act_type){name, t, inst, flow, send};
}

static void found(void *ud, const char *name, const char *path)
{
    scan_ctx *s = ud;
    if (strncmp(name, "activity_", 9) != 0)
        return;
    char err[1024];
    plugin *p = plugin_load(&s->a->reg, path, err, sizeof err);
    if (!p) {
        diag_error(s->d, path, 0, "%s", err);
        return;
    }
    if (p->desc.kind != BATON_KIND_ACTIVITY) {
        diag_error(s->d, path, 0, "%s: named activity_* but is a %s plugin", path,
                   conf_kind_name(p->desc.kind));
        return;
    }
    /* an activity plugin has no configured entry: give it the one group
     * every use has, { plugin = "<name>"; } */
    config_t lc;
    config_init(&lc);
    config_setting_t *g =
        config_setting_add(config_root_setting(&lc), "activity", CONFIG_TYPE_GROUP);
    config_setting_set_string(config_setting_add(g, "plugin", CONFIG_TYPE_STRING), name);
    conf_use use = {.section = "activities",
                    .name = (char *)name,
                    .where = (char *)name,
                    .kind = BATON_KIND_ACTIVITY,
                    .plugin = name,
                    .enabled = 1,
                    .group = g,
                    .file = path};
    instance *inst = instance_create(p, &use, s->a->conf.dir, s->d);
    config_destroy(&lc);
    if (!inst)
        return;
    if (instance_init(inst) != 0 || instance_start(inst) != 0) {
        diag_error(s->d, path, 0, "%s: %s", name, inst->error);
        instance_destroy(inst);
        return;
    }
    s->r->insts = xrealloc(s->r->insts, (s->r->ninsts + 1) * sizeof *s->r->insts);
    s->r->insts[s->r->ninsts++] = inst;
    for (const baton_activity_type *t = p->desc.activities; t && t->name; t++) {
        if (act_registry_find(s->r, t->name)) {
            diag_warn(s->d, path, 0, "activity type '%s' is provided twice; the first one wins",
                      t->name);
            continue;
        }
        add(s->r, t->name, t, inst, 0, 0);
    }
}

int act_registry_load(act_registry *r, app *a, diag *d)
{
    memset(r, 0, sizeof *r);
    size_t before = d->errors;
    add(r, "send", &camp_send_type, NULL, 0, 1);
    for (const baton_activity_type *t = camp_flow_types; t->name; t++)
        add(r, t->name, t, NULL, 1, 0);
    for (const baton_activity_type *t = camp_control_types; t->name; t++)
        add(r, t->name, t, NULL, 0, 0);
    add(r, "alert", &camp_alert_type, NULL, 0, 0);
    scan_ctx s = {r, a, d};
    plugin_registry_scan(&a->reg, found, &s);
    return d->errors == before ? 0 : -1;
}

const act_type *act_registry_find(const act_registry *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->v[i].name, name) == 0)
            return &r->v[i];
    return NULL;
}

void act_registry_free(act_registry *r)
{
    for (size_t i = r->ninsts; i-- > 0;)
        instance_destroy(r->insts[i]);
    free(r->insts);
    free(r->v);
    memset(r, 0, sizeof *r);
}

json_t *act_registry_describe(const act_registry *r)
{
    json_t *o = json_object();
    for (size_t i = 0; i < r->n; i++) {
        const baton_activity_type *t = r->v[i].t;
        json_t *ty = json_object();
        if (t && t->help)
            json_object_set_new(ty, "help", json_string(t->help));
        json_object_set_new(ty, "keys", keymap_describe_json(t ? t->keys : NULL));
        json_object_set_new(o, r->v[i].name, ty);
    }
    return o;
}
