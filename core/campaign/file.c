/* Campaign files: libconfig structure, ids, inputs and the schedule. The
 * graph's shape (unknown inputs, cycles) is checked in graph.c; settings
 * of each activity by its type (act_host.c). */
#include "campaign/campaign.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config/keymap.h"
#include "base/mem.h"
#include "base/suggest.h"
#include "base/timefmt.h"

static const char *const camp_keys[] = {"name",       "source",    "schedule", "activities",
                                        "parameters", "retention", NULL};
static const char *const sched_keys[] = {"at", "repeat", "timezone", NULL};

static int line_of(const config_setting_t *s)
{
    return (int)config_setting_source_line(s);
}

static void unknown_key(diag *d, const char *file, const config_setting_t *m, const char *where,
                        const char *const *known)
{
    size_t n = 0;
    while (known[n])
        n++;
    const char *near = suggest_nearest(config_setting_name(m), known, n);
    char list[256] = "";
    for (size_t i = 0; i < n; i++) {
        strncat(list, known[i], sizeof list - strlen(list) - 3);
        if (i + 1 < n)
            strcat(list, ", ");
    }
    diag_error(d, file, line_of(m), "%s: unknown key '%s'%s%s%s; known keys: %s", where,
               config_setting_name(m), near ? " (did you mean '" : "", near ? near : "",
               near ? "'?)" : "", list);
}

static int is_known(const char *name, const char *const *known)
{
    for (; *known; known++)
        if (strcmp(*known, name) == 0)
            return 1;
    return 0;
}

static const char *get_string(config_setting_t *g, const char *key, const char *file,
                              const char *where, int required, diag *d)
{
    config_setting_t *s = config_setting_get_member(g, key);
    if (!s) {
        if (required)
            diag_error(d, file, line_of(g), "%s: missing required key '%s'", where, key);
        return NULL;
    }
    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        diag_error(d, file, line_of(s), "%s: %s must be a string", where, key);
        return NULL;
    }
    return config_setting_get_string(s);
}

static int valid_id(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static void add_input(camp_activity *a, const char *text, int line)
{
    a->inputs = xrealloc(a->inputs, (a->ninputs + 1) * sizeof *a->inputs);
    a->inputs[a->ninputs++] =
        (camp_input){.text = xstrdup(text), .line = line, .act = -1, .out = -1};
}

static void parse_inputs(campaign *c, camp_activity *a, diag *d)
{
    config_setting_t *one = config_setting_get_member(a->group, "input");
    config_setting_t *many = config_setting_get_member(a->group, "inputs");
    if (one && many) {
        diag_error(d, c->file, line_of(many),
                   "activity '%s': give either input or inputs, not both", a->id);
        return;
    }
    if (one) {
        if (config_setting_type(one) != CONFIG_TYPE_STRING)
            diag_error(d, c->file, line_of(one),
                       "activity '%s': input must be a string naming a transition (\"lapsed\" or "
                       "\"ab.a\")",
                       a->id);
        else
            add_input(a, config_setting_get_string(one), line_of(one));
    }
    if (many) {
        if (!config_setting_is_array(many) && !config_setting_is_list(many)) {
            diag_error(d, c->file, line_of(many),
                       "activity '%s': inputs must be a list of transitions [ \"a\", \"b\" ]",
                       a->id);
            return;
        }
        int n = config_setting_length(many);
        for (int i = 0; i < n; i++) {
            config_setting_t *e = config_setting_get_elem(many, (unsigned)i);
            if (config_setting_type(e) != CONFIG_TYPE_STRING)
                diag_error(d, c->file, line_of(many), "activity '%s': inputs[%d] must be a string",
                           a->id, i);
            else
                add_input(a, config_setting_get_string(e), line_of(many));
        }
    }
}

static void parse_schedule(campaign *c, config_setting_t *s, diag *d)
{
    if (!config_setting_is_group(s)) {
        diag_error(d, c->file, line_of(s),
                   "schedule must be a group { at = \"2026-12-01T09:00:00Z\"; repeat = \"1d\"; }");
        return;
    }
    for (int i = 0; i < config_setting_length(s); i++) {
        config_setting_t *m = config_setting_get_elem(s, (unsigned)i);
        if (!is_known(config_setting_name(m), sched_keys))
            unknown_key(d, c->file, m, "schedule", sched_keys);
    }
    const char *at = get_string(s, "at", c->file, "schedule", 1, d);
    if (at && timestamp_parse(at, strlen(at), &c->at) != 0)
        diag_error(
            d, c->file, line_of(config_setting_get_member(s, "at")),
            "schedule: at = \"%s\" is not an ISO 8601 timestamp (e.g. \"2026-12-01T09:00:00Z\")",
            at);
    const char *rep = get_string(s, "repeat", c->file, "schedule", 0, d);
    if (rep) {
        int64_t ms;
        if (duration_parse_ms(rep, &ms) != 0 || ms < 60000)
            diag_error(
                d, c->file, line_of(config_setting_get_member(s, "repeat")),
                "schedule: repeat = \"%s\" is not a duration of a minute or more (\"1d\", \"12h\")",
                rep);
        else
            c->repeat_s = ms / 1000;
    }
    const char *tz = get_string(s, "timezone", c->file, "schedule", 0, d);
    if (tz) {
        char *p = xasprintf("/usr/share/zoneinfo/%s", tz);
        struct stat st;
        if (strstr(tz, "..") || stat(p, &st) != 0 || !S_ISREG(st.st_mode))
            diag_error(d, c->file, line_of(config_setting_get_member(s, "timezone")),
                       "schedule: unknown timezone '%s' (an IANA name such as \"Europe/Paris\")",
                       tz);
        else
            c->timezone = xstrdup(tz);
        free(p);
    }
    c->has_schedule = 1;
}

int campaign_parse(campaign *c, const char *path, diag *d)
{
    size_t before = d->errors;
    memset(c, 0, sizeof *c);
    config_init(&c->lc);
    c->file = xstrdup(path);
    c->dir = path_dirname(path);
    config_set_include_dir(&c->lc, c->dir);
    if (!config_read_file(&c->lc, path)) {
        if (config_error_type(&c->lc) == CONFIG_ERR_FILE_IO)
            diag_error(d, path, 0, "cannot read the campaign file");
        else
            diag_error(d, config_error_file(&c->lc) ? config_error_file(&c->lc) : path,
                       config_error_line(&c->lc), "%s", config_error_text(&c->lc));
        return -1;
    }
    config_setting_t *root = config_root_setting(&c->lc);
    config_setting_t *g = config_setting_get_member(root, "campaign");
    if (!g || !config_setting_is_group(g)) {
        diag_error(
            d, path, g ? line_of(g) : 0,
            "a campaign file holds one group: campaign: { name = \"...\"; activities = ( ... ); }");
        return -1;
    }
    for (int i = 0; i < config_setting_length(root); i++) {
        config_setting_t *m = config_setting_get_elem(root, (unsigned)i);
        if (strcmp(config_setting_name(m), "campaign") != 0)
            diag_error(d, path, line_of(m),
                       "unknown setting '%s'; a campaign file holds only 'campaign'",
                       config_setting_name(m));
    }
    for (int i = 0; i < config_setting_length(g); i++) {
        config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
        if (!is_known(config_setting_name(m), camp_keys))
            unknown_key(d, path, m, "campaign", camp_keys);
    }
    const char *name = get_string(g, "name", path, "campaign", 1, d);
    if (name && !valid_id(name))
        diag_error(d, path, line_of(config_setting_get_member(g, "name")),
                   "campaign: name '%s' may hold only letters, digits, '_' and '-'", name);
    c->name = xstrdup(name ? name : "");
    const char *src = get_string(g, "source", path, "campaign", 0, d);
    c->source = src ? xstrdup(src) : NULL;
    config_setting_t *sch = config_setting_get_member(g, "schedule");
    if (sch)
        parse_schedule(c, sch, d);
    /* how long a run keeps what it holds for later: incremental audiences' keys */
    c->retention_s = 5 * 86400;
    const char *ret = get_string(g, "retention", path, "campaign", 0, d);
    if (ret) {
        int64_t ms;
        if (duration_parse_ms(ret, &ms) != 0 || ms < 1000)
            diag_error(d, path, line_of(config_setting_get_member(g, "retention")),
                       "campaign: retention = \"%s\" is not a duration of a second or more "
                       "(\"5d\", \"12h\")",
                       ret);
        else
            c->retention_s = ms / 1000;
    }
    config_setting_t *params = config_setting_get_member(g, "parameters");
    if (params)
        campaign_params_parse(c, params, d);

    config_setting_t *acts = config_setting_get_member(g, "activities");
    if (!acts) {
        diag_error(d, path, line_of(g), "campaign: missing required key 'activities'");
        return -1;
    }
    if (!config_setting_is_list(acts)) {
        diag_error(
            d, path, line_of(acts),
            "campaign: activities must be a list ( { id = \"...\"; type = \"...\"; }, ... )");
        return -1;
    }
    int n = config_setting_length(acts);
    c->acts = xcalloc((size_t)n + 1, sizeof *c->acts);
    for (int i = 0; i < n; i++) {
        config_setting_t *e = config_setting_get_elem(acts, (unsigned)i);
        if (!config_setting_is_group(e)) {
            diag_error(d, path, line_of(e),
                       "activities[%d] must be a group { id = ...; type = ...; }", i);
            continue;
        }
        char where[48];
        snprintf(where, sizeof where, "activities[%d]", i);
        const char *id = get_string(e, "id", path, where, 1, d);
        const char *type = get_string(e, "type", path, where, 1, d);
        if (!id || !type)
            continue;
        if (!valid_id(id)) {
            diag_error(d, path, line_of(e),
                       "activity id '%s' may hold only letters, digits, '_' and '-'", id);
            continue;
        }
        if (campaign_find(c, id) >= 0) {
            diag_error(d, path, line_of(e), "activity id '%s' is used twice (first at line %d)", id,
                       c->acts[campaign_find(c, id)].line);
            continue;
        }
        camp_activity *a = &c->acts[c->nacts++];
        a->id = xstrdup(id);
        a->type_name = xstrdup(type);
        a->line = line_of(e);
        a->group = e;
        parse_inputs(c, a, d);
    }
    if (n == 0)
        diag_error(d, path, line_of(acts), "campaign: activities is empty");
    return d->errors == before ? 0 : -1;
}

static void free_output(camp_output *o)
{
    free(o->name);
    free(o->transition);
    free(o->dimension);
    for (size_t i = 0; i < o->ncols; i++)
        free(o->cols[i].name);
    free(o->cols);
}

void campaign_free(campaign *c)
{
    campaign_params_free(c);
    for (size_t i = 0; i < c->nacts; i++) {
        camp_activity *a = &c->acts[i];
        free(a->id);
        free(a->type_name);
        for (size_t j = 0; j < a->ninputs; j++)
            free(a->inputs[j].text);
        free(a->inputs);
        for (size_t j = 0; j < a->nouts; j++)
            free_output(&a->outs[j]);
        free(a->outs);
    }
    free(c->acts);
    free(c->order);
    free(c->file);
    free(c->dir);
    free(c->name);
    free(c->source);
    free(c->timezone);
    config_destroy(&c->lc);
    memset(c, 0, sizeof *c);
}

int campaign_find(const campaign *c, const char *id)
{
    for (size_t i = 0; i < c->nacts; i++)
        if (strcmp(c->acts[i].id, id) == 0)
            return (int)i;
    return -1;
}

int campaign_output(const camp_activity *a, const char *name)
{
    for (size_t i = 0; i < a->nouts; i++) {
        const char *n = a->outs[i].name;
        if ((!n && !name) || (n && name && strcmp(n, name) == 0))
            return (int)i;
    }
    return -1;
}

const camp_output *campaign_input_output(const campaign *c, const camp_input *in)
{
    if (in->act < 0 || in->out < 0)
        return NULL;
    return &c->acts[in->act].outs[in->out];
}

config_setting_t *campaign_setting(config_setting_t *g, const char *path)
{
    if (!path)
        return NULL;
    char *copy = xstrdup(path);
    config_setting_t *s = g;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ".", &save); s && tok; tok = strtok_r(NULL, ".", &save)) {
        char *end;
        long idx = strtol(tok, &end, 10);
        if (*end == '\0' && end != tok)
            s = idx >= 0 ? config_setting_get_elem(s, (unsigned)idx) : NULL;
        else
            s = config_setting_is_group(s) ? config_setting_get_member(s, tok) : NULL;
    }
    free(copy);
    return s;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char **campaign_files(char *const *paths, size_t n, size_t *count)
{
    char **out = xcalloc(1, sizeof *out);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(paths[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            DIR *dir = opendir(paths[i]);
            struct dirent *e;
            size_t first = k;
            while (dir && (e = readdir(dir))) {
                size_t l = strlen(e->d_name);
                if (l > 4 && strcmp(e->d_name + l - 4, ".cfg") == 0 && e->d_name[0] != '.') {
                    out = xrealloc(out, (k + 2) * sizeof *out);
                    out[k++] = xasprintf("%s/%s", paths[i], e->d_name);
                }
            }
            if (dir)
                closedir(dir);
            qsort(out + first, k - first, sizeof *out, cmp_str);
        } else {
            out = xrealloc(out, (k + 2) * sizeof *out);
            out[k++] = xstrdup(paths[i]);
        }
    }
    out[k] = NULL;
    if (count)
        *count = k;
    return out;
}

void campaign_files_free(char **files)
{
    for (size_t i = 0; files && files[i]; i++)
        free(files[i]);
    free(files);
}
