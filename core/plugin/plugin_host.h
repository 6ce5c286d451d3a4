/* plugin_host — finds, loads and checks plugins, runs their lifecycle and
 * hands them the host-API table. The security boundary: only regular
 * files on the configured path are loaded, RTLD_NOW | RTLD_LOCAL, and a
 * plugin is never unloaded while an instance of it is running. */
#ifndef BATON_PLUGIN_HOST_H
#define BATON_PLUGIN_HOST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include <baton/baton.h>

#include "config/config.h"
#include "config/keymap.h"
#include "base/diag.h"

typedef struct plugin {
    char *name; /* the file's base name, without .so */
    char *path;
    void *dl;
    /* Host-side copies, zero-padded past what the plugin was built with:
     * the host reads only these, never the plugin's own structs, so a
     * plugin built for an older 1.x header is never read past its end.
     * desc.ops and desc.activities point into them. */
    baton_plugin desc;
    union {
        baton_channel_ops channel;
        baton_action_ops action;
        baton_source_ops source;
        baton_event_ops event;
    } ops;
    baton_activity_type *types; /* ends with a NULL name */
    size_t live;                /* instances initialised, not yet destroyed */
    size_t running;             /* instances started, not yet stopped */
    struct plugin *next;
} plugin;

typedef struct plugin_registry {
    plugin *head;
    char **path; /* borrowed: folders searched in order */
    size_t npath;
} plugin_registry;

typedef enum instance_phase {
    INSTANCE_NEW,
    INSTANCE_READY,   /* init returned 0 */
    INSTANCE_RUNNING, /* start returned 0 */
    INSTANCE_STOPPED
} instance_phase;

typedef struct instance_counter {
    char *name;
    _Atomic uint64_t value;
} instance_counter;

/* The keys the host itself reads for a kind (plugin_host_keys), bound
 * once into a struct when the instance is created: one table per kind
 * says which key goes where, so no stage looks a host key up by name.
 * Strings point into the instance's values (NULL when unset). */
typedef struct channel_settings {
    double rate; /* messages per second, 0: no limit */
    int connections, batch, retries, queue, resend_uncertain;
    int64_t retry_backoff_ms;
    int64_t retry_for_ms, max_backoff_ms; /* a transient failure's horizon, its longest wait */
    const char *address, *consent;        /* profiles fields */
    /* tracking = { opens; clicks; }: an open pixel in html parts, their
     * links through signed redirects (delivery_send) */
    int track_opens, track_clicks;
} channel_settings;
typedef struct action_settings {
    int64_t timeout_ms;
    int retries;
    double rate; /* calls per second, 0: no limit */
} action_settings;
typedef struct source_settings {
    const char *schema; /* the schema file, resolved */
    int writable;       /* journeys' update_profile may write it */
} source_settings;

struct baton_instance {
    char *name;  /* "email" */
    char *where; /* "channels.email" */
    char *who;   /* log prefix: "channel email" */
    baton_kind kind;
    plugin *plugin;
    keymap_values values;
    union { /* by kind: the host keys, bound (see channel_settings) */
        channel_settings channel;
        action_settings action;
        source_settings source;
    } host;
    /* the schema of the profiles source of the app that made it: the
     * scope of the expressions this instance compiles (NULL: none) */
    const struct schema *schema;
    char *file;
    int line;
    void *state;
    instance_phase phase;
    char error[512];
    pthread_mutex_t counters_lock; /* registration may come from any thread */
    instance_counter *counters[64];
    size_t ncounters;
};
typedef struct baton_instance instance;

/* The folders searched when a configuration names none, or after its own:
 * <dir of the baton binary>/plugins and <that>/../lib/baton/plugins. */
void plugin_default_path(char ***dirs, size_t *n);

/* Pure ABI negotiation, for the loader and its tests: 0 when a plugin
 * built for (major, minor) can run on this host, else -1 with err. */
int plugin_abi_check(unsigned major, unsigned minor, char *err, size_t errlen);

/* Load (once; cached in reg) the plugin called name, or the file at name
 * when it holds a '/'. On failure returns NULL and err says, in one line
 * naming the file, what is wrong. */
plugin *plugin_load(plugin_registry *reg, const char *name, char *err, size_t errlen);
/* Unload every plugin whose instances are all stopped and destroyed. */
void plugin_registry_free(plugin_registry *reg);
/* 0 when the plugin file at path may be loaded; else -1 and why in err:
 * the file or its folder is world-writable, or path is a symlink to a
 * file outside the plugin path (and outside the link's own folder). */
int plugin_file_safe(const plugin_registry *reg, const char *path, char *err, size_t errlen);
/* Every <name>.so found on the path, first folder winning; calls fn with
 * the name. */
void plugin_registry_scan(const plugin_registry *reg,
                          void (*fn)(void *ud, const char *name, const char *path), void *ud);

/* The keys the host itself reads for every use of a kind (plugin; for
 * channels enabled, rate, connections, address, consent, retries...; for
 * actions timeout, retries, rate; for sources schema). */
const baton_config_key *plugin_host_keys(baton_kind kind);

/* Create an instance for a configured use: checks the plugin's kind,
 * validates the group against host and plugin keys. Errors go to d with
 * the use's file:line; returns NULL when there were any. */
instance *instance_create(plugin *p, const conf_use *use, const char *dir, diag *d);
/* Lifecycle. init/start return 0 or -1 with inst->error set. stop and
 * destroy are safe to call in any phase and do only what is due. */
int instance_init(instance *inst);
int instance_start(instance *inst);
void instance_stop(instance *inst);
void instance_destroy(instance *inst);

/* baton check: an initialised event source's probe (SDK 1.5, when its
 * plugin has one) of its far end; each warning goes to d at the
 * instance's file:line, other findings to out as "where: text". */
void instance_probe(instance *inst, diag *d, FILE *out);

/* Kind operations, already checked at load for their mandatory members. */
const baton_channel_ops *instance_channel(const instance *inst);
const baton_action_ops *instance_action(const instance *inst);
const baton_source_ops *instance_source(const instance *inst);

/* The host table handed to every plugin's init: core/hostapi assembles it
 * (it reaches stages above this one) and installs it before any instance
 * is initialised; until then instance_init fails. */
void plugin_host_use(const baton_host *table);

/* Event sink: the journey engine installs where submitted events go.
 * Until one is installed (or after NULL), event_submit answers 1 ("full,
 * retry later"), so a source started first only waits. Installing waits
 * for calls in flight into the previous sink. */
typedef int (*event_sink_fn)(void *ud, instance *from, const char *json, size_t len,
                             void (*ack)(void *), void *ack_ctx);
/* flush (may be NULL) receives event_flush: the source's group is complete. */
void plugin_host_set_event_sink(event_sink_fn fn, void (*flush)(void *ud), void *ud);
/* The host table's event_submit and event_flush: into the installed sink. */
int plugin_event_submit(baton_instance *inst, const char *json, size_t len, void (*ack)(void *),
                        void *ack_ctx);
void plugin_event_flush(baton_instance *inst);

#endif
