/* app — one running baton: the configuration, the plugins it names and an
 * instance for every configured use, brought up in order and taken down
 * in reverse. Every command starts here. */
#ifndef BATON_APP_H
#define BATON_APP_H

#include "config/config.h"
#include "base/diag.h"
#include "plugin/plugin_host.h"

enum {
    APP_PLUGINS = 1,   /* load plugins and validate their settings */
    APP_INIT = 2,      /* and run init on every instance */
    APP_DISABLED = 4,  /* also check disabled channels' plugin and settings,
                          reported as warnings (baton check) */
    APP_SECONDARY = 8, /* one of several apps in a process (serve's
                          scheduler): leave process-wide settings, such as
                          logging, to the main one */
};

typedef struct app {
    conf conf;
    plugin_registry reg;
    char **path; /* plugin_path, then the defaults */
    size_t npath;
    instance **inst;
    size_t ninst;
    int started;
    struct schema *schema; /* the profiles source's schema (NULL: none or broken);
                              plugins' expression scopes resolve against it */
} app;

/* 0 when the configuration (and what flags ask for) is free of errors;
 * every error goes to d. a must be closed with app_close either way. */
int app_open(app *a, const char *config_path, unsigned flags, diag *d);
/* The instance of section.name, or NULL (disabled channels have none). */
instance *app_find(app *a, const char *section, const char *name);
/* Start every instance (sources, actions, channels, then events); on a
 * failure stop what started and return -1 with the error in d. */
int app_start(app *a, diag *d);
void app_stop(app *a);
/* Make a stopped app startable again (serve's rollback after a reload
 * that failed to start): an instance is started once in its life, so
 * each is destroyed and created again, with the same plugin, from the
 * configuration held in memory (no file is read again), then
 * initialised. 0, or -1 with the errors in d. */
int app_reinit(app *a, diag *d);
void app_close(app *a);

/* The configuration file to read: -c FILE, else $BATON_CONFIG, else
 * conf/baton.cfg. */
const char *app_default_config(void);

#endif
