/* config — the main configuration file (docs/config.md):
 * parsed with libconfig, ${env:NAME} substituted, relative paths resolved
 * against the file's own directory, the host's own sections validated.
 * Plugin settings are validated later, against each plugin's key map, by
 * the plugin host (they need the plugin loaded). */
#ifndef BATON_CONFIG_H
#define BATON_CONFIG_H

#include <libconfig.h>
#include <stddef.h>

#include <baton/baton.h>

#include "config/http_conf.h"
#include "config/keymap.h"
#include "base/diag.h"

/* One entry of sources, channels, actions or events. */
typedef struct conf_use {
    const char *section; /* "channels" */
    char *name;          /* "email" */
    char *where;         /* "channels.email", for messages */
    baton_kind kind;
    const char *plugin; /* plugin = "channel_email" (NULL when missing) */
    int enabled;        /* channels may say enabled = false */
    config_setting_t *group;
    const char *file;
    int line;
} conf_use;

typedef struct conf_cap {
    char *channel; /* "*" for every channel */
    long long max;
    int64_t per_s;
} conf_cap;

typedef struct conf {
    config_t lc;
    char *path; /* as given */
    char *dir;  /* its directory: relative paths resolve against it */

    char *data_dir;
    char **plugin_path;
    size_t nplugin_path;
    baton_log_level log_level;
    int log_json;

    conf_use *uses;
    size_t nuses;
    char *profiles;    /* name of the source holding the profiles entity */
    char *profiles_tz; /* profiles_timezone: the field with a profile's IANA zone */
    int profiles_tz_line;

    conf_cap *caps;
    size_t ncaps;
    int quiet;                        /* quiet hours configured */
    int quiet_from_min, quiet_to_min; /* minutes after midnight */
    char *quiet_tz;

    char **campaigns;
    size_t ncampaigns;
    char **journeys;
    size_t njourneys;

    conf_http http; /* the http block; http.on = 0 when absent */
} conf;

/* Parse and validate path into c. Every error goes to d; returns 0 when
 * none was found. c must be freed with conf_free either way. */
int conf_load(conf *c, const char *path, diag *d);
void conf_free(conf *c);
/* The use named section.name, or NULL. */
conf_use *conf_find(conf *c, const char *section, const char *name);
const char *conf_kind_name(baton_kind k);

#endif
