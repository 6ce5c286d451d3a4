#include "config/config.h"

#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/zone.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/suggest.h"
#include "base/timefmt.h"

static const struct {
    const char *section;
    baton_kind kind;
} sections[] = {
    {"sources", BATON_KIND_SOURCE},
    {"channels", BATON_KIND_CHANNEL},
    {"actions", BATON_KIND_ACTION},
    {"events", BATON_KIND_EVENT},
};

static const char *const top_keys[] = {"baton",     "sources",  "profiles", "profiles_timezone",
                                       "channels",  "actions",  "events",   "caps",
                                       "campaigns", "journeys", "http",     NULL};

const char *conf_kind_name(baton_kind k)
{
    switch (k) {
    case BATON_KIND_ACTIVITY: return "activity";
    case BATON_KIND_SOURCE: return "source";
    case BATON_KIND_CHANNEL: return "channel";
    case BATON_KIND_ACTION: return "action";
    case BATON_KIND_EVENT: return "event";
    }
    return "unknown";
}

/* ${env:NAME} in every string of the tree. A setting that was only a
 * ${env:NAME} keeps the variable's name as its libconfig hook (freed by
 * the destructor conf_load sets): an int, float or bool key then reads
 * the text by its own type (keymap), naming the variable if it is not. */
static void substitute_env(config_setting_t *s, diag *d)
{
    int t = config_setting_type(s);
    if (t == CONFIG_TYPE_GROUP || t == CONFIG_TYPE_LIST || t == CONFIG_TYPE_ARRAY) {
        int n = config_setting_length(s);
        for (int i = 0; i < n; i++)
            substitute_env(config_setting_get_elem(s, (unsigned)i), d);
        return;
    }
    if (t != CONFIG_TYPE_STRING)
        return;
    const char *v = config_setting_get_string(s);
    if (!strstr(v, "${env:"))
        return;
    buf out;
    buf_init(&out);
    const char *p = v;
    int bad = 0;
    while (*p) {
        const char *open = strstr(p, "${env:");
        if (!open) {
            buf_adds(&out, p);
            break;
        }
        buf_add(&out, p, (size_t)(open - p));
        const char *name = open + 6;
        const char *close = strchr(name, '}');
        if (!close) {
            char shown[64];
            diag_error(d, config_setting_source_file(s), (int)config_setting_source_line(s),
                       "unterminated ${env:...} in %s (write \"${env:NAME}\")",
                       keymap_shown(v, shown, sizeof shown));
            bad = 1;
            break;
        }
        char *var = xstrndup(name, (size_t)(close - name));
        const char *val = getenv(var);
        if (!val) {
            diag_error(d, config_setting_source_file(s), (int)config_setting_source_line(s),
                       "environment variable '%s' is not set (used by '%s')", var,
                       config_setting_name(s) ? config_setting_name(s) : "a list item");
            bad = 1;
        } else {
            buf_adds(&out, val);
        }
        free(var);
        p = close + 1;
    }
    size_t vl = strlen(v);
    if (!bad && vl > 7 && !strncmp(v, "${env:", 6) && strchr(v, '}') == v + vl - 1)
        config_setting_set_hook(s, xstrndup(v + 6, vl - 7));
    if (!bad)
        config_setting_set_string(s, out.data ? out.data : "");
    buf_free(&out);
}

static int hhmm(const char *s, int *minutes)
{
    int h, m;
    char tail;
    if (strlen(s) != 5 || sscanf(s, "%2d:%2d%c", &h, &m, &tail) != 2 || h > 23 || m > 59 || h < 0 ||
        m < 0)
        return -1;
    *minutes = h * 60 + m;
    return 0;
}

/* A list of paths, each relative to the file that names it. */
static char **path_list(const keymap_value *v, const char *dir, size_t *n)
{
    char **out = xcalloc(v->nlist + 1, sizeof *out);
    for (size_t i = 0; i < v->nlist; i++)
        out[i] = path_resolve(dir, v->list[i]);
    *n = v->nlist;
    return out;
}

static const char *const level_choices[] = {"error", "warn", "info", "debug", NULL};
static const char *const format_choices[] = {"text", "json", NULL};

static const baton_config_key baton_keys[] = {
    {.name = "data_dir",
     .type = BATON_CFG_PATH,
     .default_value = "var",
     .help = "state, delivery log, run history and exports"},
    {.name = "plugin_path",
     .type = BATON_CFG_LIST,
     .help = "folders where <name>.so plugins are looked up, in order"},
    {0}};
static const baton_config_key log_keys[] = {
    {.name = "level", .type = BATON_CFG_ENUM, .default_value = "info", .choices = level_choices},
    {.name = "format", .type = BATON_CFG_ENUM, .default_value = "text", .choices = format_choices},
    {0}};
static const baton_config_key cap_keys[] = {
    {.name = "channel",
     .type = BATON_CFG_STRING,
     .required = 1,
     .help = "a channel name, or \"*\" for every channel"},
    {.name = "max", .type = BATON_CFG_INT, .required = 1, .has_range = 1, .min = 1, .max = 1e9},
    {.name = "per", .type = BATON_CFG_DURATION, .required = 1, .help = "the window, e.g. \"7d\""},
    {0}};
static const baton_config_key quiet_keys[] = {
    {.name = "from", .type = BATON_CFG_STRING, .required = 1, .help = "\"HH:MM\""},
    {.name = "to", .type = BATON_CFG_STRING, .required = 1, .help = "\"HH:MM\""},
    {.name = "timezone", .type = BATON_CFG_STRING, .default_value = "UTC"},
    {0}};
static const baton_config_key top_lists[] = {{.name = "campaigns", .type = BATON_CFG_LIST},
                                             {.name = "journeys", .type = BATON_CFG_LIST},
                                             {0}};

static void load_baton(conf *c, config_setting_t *g, diag *d)
{
    static const char *const ignore[] = {"log", NULL};
    const baton_config_key *maps[] = {baton_keys};
    keymap_values vals = {0};
    keymap_validate(g, "baton", maps, 1, ignore, c->dir, &vals, d);
    c->data_dir = xstrdup(keymap_get(&vals, "data_dir")->s);
    const keymap_value *pp = keymap_get(&vals, "plugin_path");
    c->plugin_path = path_list(pp, c->dir, &c->nplugin_path);
    /* SQLite's lesson: an empty load path loads from where you did not
     * mean; a folder that is not there silently falls back to the
     * defaults. */
    for (size_t i = 0; i < pp->nlist; i++) {
        struct stat st;
        if (!pp->list[i][0])
            diag_error(d, c->path, pp->line, "baton: plugin_path[%zu] is empty; name a folder", i);
        else if (stat(c->plugin_path[i], &st) != 0 || !S_ISDIR(st.st_mode))
            diag_warn(d, c->path, pp->line, "baton: plugin_path[%zu] \"%s\" is not a folder", i,
                      c->plugin_path[i]);
    }
    keymap_values_free(&vals);

    config_setting_t *lg = g ? config_setting_get_member(g, "log") : NULL;
    if (lg && !config_setting_is_group(lg)) {
        diag_error(d, config_setting_source_file(lg), (int)config_setting_source_line(lg),
                   "baton.log must be a group such as { level = \"info\"; format = \"text\"; }");
        lg = NULL;
    }
    const baton_config_key *lmaps[] = {log_keys};
    keymap_validate(lg, "baton.log", lmaps, 1, NULL, c->dir, &vals, d);
    log_level_parse(keymap_get(&vals, "level")->s, &c->log_level);
    c->log_json = strcmp(keymap_get(&vals, "format")->s, "json") == 0;
    keymap_values_free(&vals);
}

static void load_uses(conf *c, config_setting_t *root, diag *d)
{
    for (size_t si = 0; si < sizeof sections / sizeof sections[0]; si++) {
        config_setting_t *g = config_setting_get_member(root, sections[si].section);
        if (!g)
            continue;
        if (!config_setting_is_group(g)) {
            diag_error(d, config_setting_source_file(g), (int)config_setting_source_line(g),
                       "%s must be a group of name: { plugin = \"...\"; ... } entries",
                       sections[si].section);
            continue;
        }
        int n = config_setting_length(g);
        for (int i = 0; i < n; i++) {
            config_setting_t *u = config_setting_get_elem(g, (unsigned)i);
            const char *file = config_setting_source_file(u);
            int line = (int)config_setting_source_line(u);
            if (!config_setting_is_group(u)) {
                diag_error(d, file, line, "%s.%s must be a group { plugin = \"...\"; ... }",
                           sections[si].section, config_setting_name(u));
                continue;
            }
            c->uses = xrealloc(c->uses, (c->nuses + 1) * sizeof *c->uses);
            conf_use *use = &c->uses[c->nuses++];
            memset(use, 0, sizeof *use);
            use->section = sections[si].section;
            use->kind = sections[si].kind;
            use->name = xstrdup(config_setting_name(u));
            use->where = xasprintf("%s.%s", use->section, use->name);
            use->group = u;
            use->file = file;
            use->line = line;
            use->enabled = 1;
            config_setting_t *p = config_setting_get_member(u, "plugin");
            if (!p)
                diag_error(
                    d, file, line,
                    "%s: missing required key 'plugin' (the plugin that runs it, e.g. \"%s_...\")",
                    use->where, conf_kind_name(use->kind));
            else if (config_setting_type(p) != CONFIG_TYPE_STRING)
                diag_error(d, file, (int)config_setting_source_line(p),
                           "%s: plugin must be a string", use->where);
            else
                use->plugin = config_setting_get_string(p);
            config_setting_t *en = config_setting_get_member(u, "enabled");
            if (en && use->kind != BATON_KIND_CHANNEL)
                diag_error(d, file, (int)config_setting_source_line(en),
                           "%s: 'enabled' applies to channels only", use->where);
            else if (en && config_setting_type(en) != CONFIG_TYPE_BOOL)
                diag_error(d, file, (int)config_setting_source_line(en),
                           "%s: enabled must be true or false", use->where);
            else if (en)
                use->enabled = config_setting_get_bool(en);
        }
    }
}

static void load_caps(conf *c, config_setting_t *g, diag *d)
{
    const char *file = config_setting_source_file(g);
    if (!config_setting_is_group(g)) {
        diag_error(d, file, (int)config_setting_source_line(g),
                   "caps must be a group { per_profile = ( ... ); quiet_hours = { ... }; }");
        return;
    }
    int n = config_setting_length(g);
    for (int i = 0; i < n; i++) {
        config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(m);
        if (strcmp(name, "per_profile") && strcmp(name, "quiet_hours")) {
            const char *cands[] = {"per_profile", "quiet_hours"};
            const char *near = suggest_nearest(name, cands, 2);
            diag_error(d, file, (int)config_setting_source_line(m),
                       "caps: unknown key '%s'%s%s%s; known keys: per_profile, quiet_hours", name,
                       near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
        }
    }
    config_setting_t *pp = config_setting_get_member(g, "per_profile");
    if (pp && !config_setting_is_list(pp)) {
        diag_error(
            d, file, (int)config_setting_source_line(pp),
            "caps.per_profile must be a list ( { channel = \"*\"; max = 3; per = \"7d\"; } )");
        pp = NULL;
    }
    for (int i = 0; pp && i < config_setting_length(pp); i++) {
        config_setting_t *e = config_setting_get_elem(pp, (unsigned)i);
        char where[64];
        snprintf(where, sizeof where, "caps.per_profile[%d]", i);
        if (!config_setting_is_group(e)) {
            diag_error(d, file, (int)config_setting_source_line(e), "%s must be a group", where);
            continue;
        }
        const baton_config_key *maps[] = {cap_keys};
        keymap_values vals = {0};
        int eline = (int)config_setting_source_line(e);
        if (keymap_validate(e, where, maps, 1, NULL, c->dir, &vals, d) == 0) {
            const char *ch = keymap_get(&vals, "channel")->s;
            int ok = 1;
            if (keymap_get(&vals, "per")->i < 1000) {
                char shown[64];
                diag_error(d, file, eline, "%s: per = %s is shorter than a second", where,
                           keymap_shown(keymap_get(&vals, "per")->s, shown, sizeof shown));
                ok = 0;
            }
            if (strcmp(ch, "*") != 0 && !conf_find(c, "channels", ch)) {
                const char *cands[64];
                size_t nc = 0;
                for (size_t u = 0; u < c->nuses && nc < 64; u++)
                    if (c->uses[u].kind == BATON_KIND_CHANNEL)
                        cands[nc++] = c->uses[u].name;
                const char *near = suggest_nearest(ch, cands, nc);
                diag_error(d, file, eline, "%s: channel = \"%s\" names no configured channel%s%s%s",
                           where, ch, near ? " (did you mean '" : "", near ? near : "",
                           near ? "'?)" : "");
                ok = 0;
            }
            if (ok) {
                c->caps = xrealloc(c->caps, (c->ncaps + 1) * sizeof *c->caps);
                c->caps[c->ncaps].channel = xstrdup(ch);
                c->caps[c->ncaps].max = keymap_get(&vals, "max")->i;
                c->caps[c->ncaps].per_s = keymap_get(&vals, "per")->i / 1000;
                c->ncaps++;
            }
        }
        keymap_values_free(&vals);
    }
    config_setting_t *q = config_setting_get_member(g, "quiet_hours");
    if (q && !config_setting_is_group(q)) {
        diag_error(d, file, (int)config_setting_source_line(q),
                   "caps.quiet_hours must be a group { from = \"21:00\"; to = \"08:00\"; }");
        q = NULL;
    }
    if (q) {
        const baton_config_key *maps[] = {quiet_keys};
        keymap_values vals = {0};
        if (keymap_validate(q, "caps.quiet_hours", maps, 1, NULL, c->dir, &vals, d) == 0) {
            int line = (int)config_setting_source_line(q);
            char shown[64];
            if (hhmm(keymap_get(&vals, "from")->s, &c->quiet_from_min))
                diag_error(d, file, line,
                           "caps.quiet_hours: from = %s is not a time of day; expected \"HH:MM\"",
                           keymap_shown(keymap_get(&vals, "from")->s, shown, sizeof shown));
            else if (hhmm(keymap_get(&vals, "to")->s, &c->quiet_to_min))
                diag_error(d, file, line,
                           "caps.quiet_hours: to = %s is not a time of day; expected \"HH:MM\"",
                           keymap_shown(keymap_get(&vals, "to")->s, shown, sizeof shown));
            else {
                const char *tz = keymap_get(&vals, "timezone")->s;
                char err[256];
                zone *z = zone_load(tz, err, sizeof err);
                if (!z) {
                    diag_error(d, file, line,
                               "caps.quiet_hours: timezone = \"%s\" is not a known "
                               "time zone; expected a name such as \"Europe/Paris\" or \"UTC\"",
                               tz);
                } else {
                    zone_free(z);
                    c->quiet = 1;
                    c->quiet_tz = xstrdup(tz);
                }
            }
        }
        keymap_values_free(&vals);
    }
}

int conf_load(conf *c, const char *path, diag *d)
{
    size_t before = d->errors;
    memset(c, 0, sizeof *c);
    config_init(&c->lc);
    c->path = xstrdup(path);
    c->dir = path_dirname(path);
    c->log_level = BATON_LOG_INFO;
    config_set_include_dir(&c->lc, c->dir);
    if (!config_read_file(&c->lc, path)) {
        if (config_error_type(&c->lc) == CONFIG_ERR_FILE_IO)
            diag_error(d, path, 0, "cannot read the configuration file: %s",
                       access(path, R_OK) != 0 ? strerror(errno) : "I/O error");
        else
            diag_error(d, config_error_file(&c->lc) ? config_error_file(&c->lc) : path,
                       config_error_line(&c->lc), "%s", config_error_text(&c->lc));
        return -1;
    }
    config_set_destructor(&c->lc, free); /* the hooks substitute_env sets */
    config_setting_t *root = config_root_setting(&c->lc);
    substitute_env(root, d);

    int n = config_setting_length(root);
    for (int i = 0; i < n; i++) {
        config_setting_t *m = config_setting_get_elem(root, (unsigned)i);
        const char *name = config_setting_name(m);
        int known = 0;
        for (const char *const *k = top_keys; *k; k++)
            known |= strcmp(*k, name) == 0;
        if (!known) {
            const char *near =
                suggest_nearest(name, top_keys, sizeof top_keys / sizeof *top_keys - 1);
            diag_error(d, config_setting_source_file(m), (int)config_setting_source_line(m),
                       "unknown setting '%s'%s%s%s; known settings: baton, sources, profiles, "
                       "channels, actions, events, caps, campaigns, journeys, http",
                       name, near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
        }
    }

    config_setting_t *b = config_setting_get_member(root, "baton");
    if (b && !config_setting_is_group(b)) {
        diag_error(d, config_setting_source_file(b), (int)config_setting_source_line(b),
                   "baton must be a group { data_dir = ...; plugin_path = [...]; log = {...}; }");
        b = NULL;
    }
    load_baton(c, b, d);
    load_uses(c, root, d);

    config_setting_t *p = config_setting_get_member(root, "profiles");
    if (p) {
        if (config_setting_type(p) != CONFIG_TYPE_STRING) {
            diag_error(d, config_setting_source_file(p), (int)config_setting_source_line(p),
                       "profiles must name a source, e.g. profiles = \"crm\";");
        } else {
            c->profiles = xstrdup(config_setting_get_string(p));
            if (!conf_find(c, "sources", c->profiles)) {
                const char *cands[64];
                size_t nc = 0;
                for (size_t i = 0; i < c->nuses && nc < 64; i++)
                    if (c->uses[i].kind == BATON_KIND_SOURCE)
                        cands[nc++] = c->uses[i].name;
                const char *near = suggest_nearest(c->profiles, cands, nc);
                diag_error(d, config_setting_source_file(p), (int)config_setting_source_line(p),
                           "profiles = \"%s\" names no configured source%s%s%s", c->profiles,
                           near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
            }
        }
    }

    /* the profiles field holding each profile's IANA zone (journeys'
     * local time); checked against the schema where the schema is read */
    config_setting_t *tzf = config_setting_get_member(root, "profiles_timezone");
    if (tzf) {
        const char *v =
            config_setting_type(tzf) == CONFIG_TYPE_STRING ? config_setting_get_string(tzf) : NULL;
        if (!v || !*v)
            diag_error(d, config_setting_source_file(tzf), (int)config_setting_source_line(tzf),
                       "profiles_timezone must name a field of profiles, e.g. profiles_timezone "
                       "= \"tz\";");
        else
            c->profiles_tz = xstrdup(v);
        c->profiles_tz_line = (int)config_setting_source_line(tzf);
    }

    config_setting_t *caps = config_setting_get_member(root, "caps");
    if (caps)
        load_caps(c, caps, d);
    conf_http_load(&c->http, config_setting_get_member(root, "http"), c->dir, d);

    /* campaigns and journeys: lists of files or folders */
    const baton_config_key *maps[] = {top_lists};
    static const char *const ignore[] = {"baton",    "sources", "profiles", "profiles_timezone",
                                         "channels", "actions", "events",   "caps",
                                         "http",     NULL};
    keymap_values vals = {0};
    diag scratch;
    diag_init(&scratch); /* unknown top-level keys were reported above */
    keymap_validate(root, "configuration", maps, 1, ignore, c->dir, &vals, &scratch);
    for (size_t i = 0; i < scratch.n; i++)
        if (!strstr(scratch.v[i].msg, "unknown key"))
            diag_error(d, scratch.v[i].file, scratch.v[i].line, "%s", scratch.v[i].msg);
    diag_free(&scratch);
    c->campaigns = path_list(keymap_get(&vals, "campaigns"), c->dir, &c->ncampaigns);
    c->journeys = path_list(keymap_get(&vals, "journeys"), c->dir, &c->njourneys);
    keymap_values_free(&vals);
    return d->errors == before ? 0 : -1;
}

conf_use *conf_find(conf *c, const char *section, const char *name)
{
    for (size_t i = 0; i < c->nuses; i++)
        if (strcmp(c->uses[i].section, section) == 0 && strcmp(c->uses[i].name, name) == 0)
            return &c->uses[i];
    return NULL;
}

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

void conf_free(conf *c)
{
    for (size_t i = 0; i < c->nuses; i++) {
        free(c->uses[i].name);
        free(c->uses[i].where);
    }
    free(c->uses);
    for (size_t i = 0; i < c->ncaps; i++)
        free(c->caps[i].channel);
    free(c->caps);
    free(c->quiet_tz);
    free(c->profiles_tz);
    conf_http_free(&c->http);
    free(c->profiles);
    free(c->data_dir);
    free_list(c->plugin_path, c->nplugin_path);
    free_list(c->campaigns, c->ncampaigns);
    free_list(c->journeys, c->njourneys);
    free(c->path);
    free(c->dir);
    config_destroy(&c->lc);
    memset(c, 0, sizeof *c);
}
