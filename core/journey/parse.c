/* journey/parse — reads a journey file with libconfig and checks the graph:
 * names, node types and their keys, links, split percentages, channels and
 * actions against the configuration, and loops that never wait. */
#include <dirent.h>
#include <errno.h>
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "plugin/app.h"
#include "base/buf.h"
#include "config/keymap.h"
#include "lang/template.h"
#include "scope/cond.h"
#include "journey/journey.h"
#include "base/mem.h"
#include "base/suggest.h"
#include "base/timefmt.h"
#include "base/zone.h"
#include "schema/schema.h"
#include "lang/expr.h"
#include "lang/template.h"

static const char *const type_names[] = {"condition", "split", "wait", "wait_event",     "send",
                                         "action",    "end",   "jump", "update_profile", NULL};

const char *jnode_type_name(jnode_type t)
{
    return type_names[t];
}

typedef struct pctx {
    uint64_t hash; /* FNV-1a of the text and of every *_file read */
    const char *file;
    char *dir;
    journey *j;
    struct app *a;
    diag *d;
    jcompile *cc;
    /* links are resolved after every node is known */
    struct link {
        int *slot;
        char *target;
        int line;
        const char *what; /* "next", "on_event", ... */
        const char *node;
    } * links;
    size_t nlinks;
} pctx;

static int line_of(const config_setting_t *s)
{
    return s ? (int)config_setting_source_line(s) : 0;
}

static const char *opt_string(pctx *p, const config_setting_t *g, const char *key,
                              const char *where, int *line)
{
    const config_setting_t *s = config_setting_get_member(g, key);
    if (line)
        *line = line_of(s ? s : g);
    if (!s)
        return NULL;
    if (config_setting_type(s) != CONFIG_TYPE_STRING) {
        diag_error(p->d, p->file, line_of(s), "%s: %s must be a string", where, key);
        return NULL;
    }
    return config_setting_get_string(s);
}

static const char *req_string(pctx *p, const config_setting_t *g, const char *key,
                              const char *where, const char *example, int *line)
{
    int l;
    const char *v = opt_string(p, g, key, where, &l);
    if (line)
        *line = l;
    if (!v && !config_setting_get_member(g, key))
        diag_error(p->d, p->file, line_of(g), "%s: missing required key '%s'%s%s%s", where, key,
                   example ? " (e.g. " : "", example ? example : "", example ? ")" : "");
    return v;
}

/* Unknown keys of a group, with the nearest known one suggested. */
static void check_keys(pctx *p, const config_setting_t *g, const char *where,
                       const char *const *known, int allow_any)
{
    if (allow_any)
        return;
    int n = config_setting_length(g);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(s);
        int ok = 0;
        size_t nk = 0;
        for (const char *const *k = known; *k; k++, nk++)
            ok |= strcmp(*k, name) == 0;
        if (ok)
            continue;
        buf all;
        buf_init(&all);
        for (const char *const *k = known; *k; k++)
            buf_addf(&all, "%s%s", all.len ? ", " : "", *k);
        const char *near = suggest_nearest(name, known, nk);
        diag_error(p->d, p->file, line_of(s), "%s: unknown key '%s'%s%s%s; known keys: %s", where,
                   name, near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "",
                   all.data);
        buf_free(&all);
    }
}

static int64_t duration_key(pctx *p, const config_setting_t *g, const char *key, const char *where,
                            int required)
{
    int line;
    const char *s = required ? req_string(p, g, key, where, "\"1h\"", &line)
                             : opt_string(p, g, key, where, &line);
    if (!s)
        return -1;
    int64_t ms;
    if (duration_parse_ms(s, &ms)) {
        diag_error(p->d, p->file, line,
                   "%s: %s = \"%s\" is not a duration; expected e.g. \"90s\", \"15m\", \"12h\", "
                   "\"7d\", \"2w\"",
                   where, key, s);
        return -1;
    }
    return ms;
}

static void add_link(pctx *p, int *slot, const char *target, int line, const char *what,
                     const char *node)
{
    *slot = -1;
    if (!target)
        return;
    p->links = xrealloc(p->links, (p->nlinks + 1) * sizeof *p->links);
    p->links[p->nlinks++] = (struct link){slot, xstrdup(target), line, what, node};
}

static void link_key(pctx *p, const config_setting_t *g, const char *key, int *slot,
                     const char *where, const char *node, int required)
{
    int line;
    const char *t =
        required ? req_string(p, g, key, where, NULL, &line) : opt_string(p, g, key, where, &line);
    add_link(p, slot, t, line, key, node);
}

static void cond_key(pctx *p, const config_setting_t *g, const char *key, jcond *c,
                     const char *where, const char *scope, int required)
{
    int line;
    const char *t =
        required ? req_string(p, g, key, where, NULL, &line) : opt_string(p, g, key, where, &line);
    if (!t)
        return;
    c->text = xstrdup(t);
    c->line = line;
    jcond_compile(c, p->cc, strcmp(key, "until") != 0 && strcmp(key, "value") != 0, p->file, where,
                  key, p->d);
}

static char *read_whole(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    buf b;
    buf_init(&b);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_add(&b, chunk, n);
    fclose(f);
    return b.data ? buf_steal(&b) : xstrdup("");
}

static uint64_t hash_text(uint64_t h, const char *s)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static const char *const *channel_parts(pctx *p, const char *channel)
{
    if (!p->a)
        return NULL;
    instance *inst = app_find(p->a, "channels", channel);
    const baton_channel_ops *ops = inst ? instance_channel(inst) : NULL;
    return ops ? ops->parts : NULL;
}

/* "HH:MM" as minutes after midnight, or -1. */
static int hhmm(const char *s)
{
    int h, m;
    char end;
    if (!s || strlen(s) != 5 || sscanf(s, "%2d:%2d%c", &h, &m, &end) != 2 || s[2] != ':' || h < 0 ||
        h > 23 || m < 0 || m > 59)
        return -1;
    return h * 60 + m;
}

static void parse_send(pctx *p, const config_setting_t *g, jnode *n, const char *where)
{
    int line;
    const char *ch = req_string(p, g, "channel", where, "\"email\"", &line);
    if (ch) {
        n->channel = xstrdup(ch);
        if (p->a && !conf_find(&p->a->conf, "channels", ch)) {
            const char *cands[64];
            size_t nc = 0;
            for (size_t i = 0; i < p->a->conf.nuses && nc < 64; i++)
                if (p->a->conf.uses[i].kind == BATON_KIND_CHANNEL)
                    cands[nc++] = p->a->conf.uses[i].name;
            const char *near = suggest_nearest(ch, cands, nc);
            diag_error(p->d, p->file, line,
                       "%s: channel = \"%s\" names no configured channel%s%s%s", where, ch,
                       near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
        }
    }
    link_key(p, g, "next", &n->next, where, n->id, 1);
    const char *const *parts = ch ? channel_parts(p, ch) : NULL;
    int cnt = config_setting_length(g);
    for (int i = 0; i < cnt; i++) {
        const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
        const char *name = config_setting_name(s);
        if (!strcmp(name, "id") || !strcmp(name, "type") || !strcmp(name, "channel") ||
            !strcmp(name, "next"))
            continue;
        if (!strcmp(name, "local_time")) { /* sent at that time of the profile's day */
            const char *v = opt_string(p, g, "local_time", where, NULL);
            n->wall_min = hhmm(v);
            n->wall_local = 1;
            if (v && n->wall_min < 0)
                diag_error(p->d, p->file, line_of(s),
                           "%s: local_time = \"%s\" is not a time of day; expected \"HH:MM\", "
                           "e.g. \"09:00\"",
                           where, v);
            continue;
        }
        if (config_setting_type(s) != CONFIG_TYPE_STRING) {
            diag_error(p->d, p->file, line_of(s), "%s: %s must be a string (message content)",
                       where, name);
            continue;
        }
        size_t nl = strlen(name);
        int is_file = nl > 5 && !strcmp(name + nl - 5, "_file");
        char *part = xstrndup(name, is_file ? nl - 5 : nl);
        if (parts) {
            int ok = 0;
            size_t np = 0;
            for (const char *const *q = parts; *q; q++, np++)
                ok |= !strcmp(*q, part);
            if (!ok) {
                buf all;
                buf_init(&all);
                for (const char *const *q = parts; *q; q++)
                    buf_addf(&all, "%s%s", all.len ? ", " : "", *q);
                const char *near = suggest_nearest(part, parts, np);
                diag_error(p->d, p->file, line_of(s),
                           "%s: channel '%s' has no content part '%s'%s%s%s; its parts: %s (or "
                           "<part>_file)",
                           where, ch, part, near ? " (did you mean '" : "", near ? near : "",
                           near ? "'?)" : "", all.data ? all.data : "none");
                buf_free(&all);
                free(part);
                continue;
            }
        }
        char *value;
        if (is_file) {
            char *path = path_resolve(p->dir, config_setting_get_string(s));
            value = read_whole(path);
            if (value)
                p->hash = hash_text(p->hash, value);
            if (!value)
                diag_error(p->d, p->file, line_of(s), "%s: %s: cannot read %s: %s", where, name,
                           path, strerror(errno));
            free(path);
            if (!value) {
                free(part);
                continue;
            }
        } else {
            value = xstrdup(config_setting_get_string(s));
        }
        void *t = jtemplate_compile(value, template_part_escape(part), p->cc, p->file, line_of(s),
                                    where, name, p->d);
        n->parts = xrealloc(n->parts, (n->nparts + 1) * sizeof *n->parts);
        n->parts[n->nparts++] = (jpart){part, value, t};
    }
}

static void parse_branches(pctx *p, const config_setting_t *g, jnode *n, const char *where)
{
    const config_setting_t *bl = config_setting_get_member(g, "branches");
    if (!bl) {
        diag_error(p->d, p->file, line_of(g), "%s: missing required key 'branches' (a list of %s)",
                   where,
                   n->type == JN_SPLIT ? "{ percent = 50; next = \"...\"; }"
                                       : "{ when = \"...\"; next = \"...\"; }");
        return;
    }
    if (!config_setting_is_list(bl) && !config_setting_is_array(bl)) {
        diag_error(p->d, p->file, line_of(bl), "%s: branches must be a list ( { ... }, { ... } )",
                   where);
        return;
    }
    int cnt = config_setting_length(bl);
    if (cnt == 0)
        diag_error(p->d, p->file, line_of(bl), "%s: branches is empty", where);
    n->br = xcalloc((size_t)cnt + 1, sizeof *n->br);
    double total = 0;
    for (int i = 0; i < cnt; i++) {
        const config_setting_t *b = config_setting_get_elem(bl, (unsigned)i);
        char bw[256];
        snprintf(bw, sizeof bw, "%s: branches[%d]", where, i);
        if (!config_setting_is_group(b)) {
            diag_error(p->d, p->file, line_of(b), "%s must be a group { ... }", bw);
            continue;
        }
        jbranch *br = &n->br[n->nbr++];
        br->line = line_of(b);
        br->next = -1;
        if (n->type == JN_CONDITION) {
            static const char *const keys[] = {"when", "next", NULL};
            check_keys(p, b, bw, keys, 0);
            cond_key(p, b, "when", &br->when, bw, "journey", 1);
        } else {
            static const char *const keys[] = {"name", "percent", "next", NULL};
            check_keys(p, b, bw, keys, 0);
            const char *nm = opt_string(p, b, "name", bw, NULL);
            br->name = xstrdup(nm ? nm : "");
            const config_setting_t *pc = config_setting_get_member(b, "percent");
            int t = pc ? config_setting_type(pc) : 0;
            if (!pc)
                diag_error(p->d, p->file, br->line, "%s: missing required key 'percent'", bw);
            else if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64 && t != CONFIG_TYPE_FLOAT)
                diag_error(p->d, p->file, line_of(pc), "%s: percent must be a number", bw);
            else {
                br->percent = t == CONFIG_TYPE_FLOAT ? config_setting_get_float(pc)
                                                     : (double)config_setting_get_int64(pc);
                if (br->percent < 0 || br->percent > 100)
                    diag_error(p->d, p->file, line_of(pc), "%s: percent = %g is not within 0..100",
                               bw, br->percent);
                total += br->percent;
            }
        }
        int line;
        const char *next = req_string(p, b, "next", bw, NULL, &line);
        add_link(p, &br->next, next, line, "next", n->id);
    }
    if (n->type == JN_SPLIT && n->nbr && (total < 99.999 || total > 100.001))
        diag_error(p->d, p->file, line_of(bl), "%s: branch percentages add up to %g, not 100",
                   where, total);
}

/* The profiles source must say writable = true for a journey to write
 * it; and a field written must be a field of the profiles entity (when
 * the schema is known), not its key. */
static void parse_update(pctx *p, const config_setting_t *g, jnode *n, const char *where)
{
    static const char *const keys[] = {"id", "type", "set", "next", NULL};
    check_keys(p, g, where, keys, 0);
    link_key(p, g, "next", &n->next, where, n->id, 1);
    if (p->a) {
        conf_use *u =
            p->a->conf.profiles ? conf_find(&p->a->conf, "sources", p->a->conf.profiles) : NULL;
        int writable = 0;
        if (u && u->group)
            config_setting_lookup_bool(u->group, "writable", &writable);
        if (!u)
            diag_error(p->d, p->file, n->line,
                       "%s: update_profile needs a profiles source (profiles = \"...\" in the "
                       "configuration)",
                       where);
        else if (!writable)
            diag_error(p->d, p->file, n->line,
                       "%s: update_profile writes the profiles source %s, which does not say "
                       "writable = true",
                       where, u->where);
    }
    const config_setting_t *sl = config_setting_get_member(g, "set");
    if (!sl || (!config_setting_is_list(sl) && !config_setting_is_array(sl)) ||
        config_setting_length(sl) == 0) {
        diag_error(p->d, p->file, line_of(sl ? sl : g),
                   "%s: set must be a non-empty list ( { field = \"tier\"; value = "
                   "\"'silver'\"; } )",
                   where);
        return;
    }
    const schema_entity *pe =
        p->a && p->a->schema ? schema_entity_find(p->a->schema, "profiles") : NULL;
    int cnt = config_setting_length(sl);
    n->sets = xcalloc((size_t)cnt + 1, sizeof *n->sets);
    for (int i = 0; i < cnt; i++) {
        const config_setting_t *e = config_setting_get_elem(sl, (unsigned)i);
        char sw[300];
        snprintf(sw, sizeof sw, "%s: set[%d]", where, i);
        if (!config_setting_is_group(e)) {
            diag_error(p->d, p->file, line_of(e),
                       "%s must be a group { field = ...; value = ...; }", sw);
            continue;
        }
        static const char *const skeys[] = {"field", "value", NULL};
        check_keys(p, e, sw, skeys, 0);
        int fline;
        const char *field = req_string(p, e, "field", sw, "\"tier\"", &fline);
        jset *js = &n->sets[n->nsets++];
        js->field = xstrdup(field ? field : "");
        cond_key(p, e, "value", &js->value, sw, "journey", 1);
        if (field && pe) {
            const schema_field *f = schema_field_find(pe, field);
            if (!f)
                diag_error(p->d, p->file, fline, "%s: field = \"%s\" is not a field of profiles",
                           sw, field);
            else if (pe->key && f == pe->key)
                diag_error(p->d, p->file, fline, "%s: field = \"%s\" is the profiles key", sw,
                           field);
        }
    }
}

static void parse_node(pctx *p, const config_setting_t *g, size_t idx)
{
    jnode *n = &p->j->nodes[idx];
    n->line = line_of(g);
    n->next = n->otherwise = n->on_event = n->on_timeout = n->on_error = -1;
    n->duration_ms = n->timeout_ms = -1;
    n->wall_min = -1;
    char where[256];
    snprintf(where, sizeof where, "nodes[%zu]", idx);
    if (!config_setting_is_group(g)) {
        diag_error(p->d, p->file, n->line, "%s must be a group { id = \"...\"; type = \"...\"; }",
                   where);
        n->id = xstrdup("");
        return;
    }
    const char *id = req_string(p, g, "id", where, "\"wait1\"", NULL);
    n->id = xstrdup(id ? id : "");
    if (id)
        snprintf(where, sizeof where, "node '%s'", id);
    int tline;
    const char *type = req_string(p, g, "type", where, "\"wait\"", &tline);
    if (!type)
        return;
    int t = -1;
    for (int i = 0; type_names[i]; i++)
        if (!strcmp(type_names[i], type))
            t = i;
    if (t < 0) {
        const char *near = suggest_nearest(type, type_names, 9);
        diag_error(p->d, p->file, tline,
                   "%s: unknown type '%s'%s%s%s; node types: condition, split, wait, wait_event, "
                   "send, action, end, jump, update_profile",
                   where, type, near ? " (did you mean '" : "", near ? near : "",
                   near ? "'?)" : "");
        n->type = JN_END;
        return;
    }
    n->type = (jnode_type)t;
    switch (n->type) {
    case JN_CONDITION: {
        static const char *const keys[] = {"id", "type", "branches", "otherwise", NULL};
        check_keys(p, g, where, keys, 0);
        parse_branches(p, g, n, where);
        link_key(p, g, "otherwise", &n->otherwise, where, n->id, 0);
        break;
    }
    case JN_SPLIT: {
        static const char *const keys[] = {"id", "type", "branches", NULL};
        check_keys(p, g, where, keys, 0);
        parse_branches(p, g, n, where);
        break;
    }
    case JN_WAIT: {
        static const char *const keys[] = {"id",    "type", "duration", "until",
                                           "local", "wait", "next",     NULL};
        check_keys(p, g, where, keys, 0);
        /* wait = { until = "next 09:00"; local = true; } says the same as
         * the two keys on the node */
        const config_setting_t *wg = config_setting_get_member(g, "wait");
        if (wg && !config_setting_is_group(wg)) {
            diag_error(p->d, p->file, line_of(wg),
                       "%s: wait must be a group { until = \"next 09:00\"; local = true; }", where);
            wg = NULL;
        }
        if (wg) {
            static const char *const wkeys[] = {"until", "local", NULL};
            check_keys(p, wg, where, wkeys, 0);
        }
        const config_setting_t *src = wg ? wg : g;
        const config_setting_t *us = config_setting_get_member(src, "until");
        const char *uv = us && config_setting_type(us) == CONFIG_TYPE_STRING
                             ? config_setting_get_string(us)
                             : NULL;
        const config_setting_t *ls = config_setting_get_member(src, "local");
        if (ls && config_setting_type(ls) != CONFIG_TYPE_BOOL)
            diag_error(p->d, p->file, line_of(ls), "%s: local must be true or false", where);
        else if (ls)
            n->wall_local = config_setting_get_bool(ls);
        if (uv && !strncmp(uv, "next ", 5)) { /* a time of day, not an expression */
            n->wall_min = hhmm(uv + 5);
            if (n->wall_min < 0)
                diag_error(p->d, p->file, line_of(us),
                           "%s: until = \"%s\": expected \"next HH:MM\" (e.g. \"next 09:00\") "
                           "or a timestamp expression",
                           where, uv);
            if (config_setting_get_member(g, "duration"))
                diag_error(p->d, p->file, n->line,
                           "%s: a wait needs exactly one of duration = \"1h\" or until = "
                           "\"<timestamp expression>\"",
                           where);
            link_key(p, g, "next", &n->next, where, n->id, 1);
            break;
        }
        if (wg)
            diag_error(p->d, p->file, line_of(wg),
                       "%s: wait = { ... } takes until = \"next HH:MM\" (for a timestamp "
                       "expression, write until = \"...\" on the node)",
                       where);
        else if (ls && n->wall_local)
            diag_error(p->d, p->file, line_of(ls),
                       "%s: local = true needs until = \"next HH:MM\" (a time of the profile's "
                       "day)",
                       where);
        int has_d = config_setting_get_member(g, "duration") != NULL;
        int has_u = config_setting_get_member(g, "until") != NULL;
        if (has_d == has_u)
            diag_error(p->d, p->file, n->line,
                       "%s: a wait needs exactly one of duration = \"1h\" or until = \"<timestamp "
                       "expression>\"",
                       where);
        if (has_d)
            n->duration_ms = duration_key(p, g, "duration", where, 1);
        if (has_u)
            cond_key(p, g, "until", &n->until, where, "journey", 1);
        link_key(p, g, "next", &n->next, where, n->id, 1);
        break;
    }
    case JN_WAIT_EVENT: {
        static const char *const keys[] = {"id",      "type",     "event",      "filter",
                                           "timeout", "on_event", "on_timeout", NULL};
        check_keys(p, g, where, keys, 0);
        const char *ev = req_string(p, g, "event", where, "\"order_placed\"", NULL);
        n->event = ev ? xstrdup(ev) : NULL;
        cond_key(p, g, "filter", &n->filter, where, "journey", 0);
        if (config_setting_get_member(g, "timeout")) {
            n->timeout_ms = duration_key(p, g, "timeout", where, 1);
            link_key(p, g, "on_timeout", &n->on_timeout, where, n->id, 1);
        } else if (config_setting_get_member(g, "on_timeout")) {
            diag_error(p->d, p->file, line_of(config_setting_get_member(g, "on_timeout")),
                       "%s: on_timeout without a timeout = \"24h\"", where);
        }
        link_key(p, g, "on_event", &n->on_event, where, n->id, 1);
        break;
    }
    case JN_SEND: parse_send(p, g, n, where); break;
    case JN_ACTION: {
        static const char *const keys[] = {"id", "type", "action", "next", "on_error", NULL};
        check_keys(p, g, where, keys, 0);
        int line;
        const char *act = req_string(p, g, "action", where, "\"loyalty\"", &line);
        n->action = act ? xstrdup(act) : NULL;
        if (act && p->a && !conf_find(&p->a->conf, "actions", act)) {
            const char *cands[64];
            size_t nc = 0;
            for (size_t i = 0; i < p->a->conf.nuses && nc < 64; i++)
                if (p->a->conf.uses[i].kind == BATON_KIND_ACTION)
                    cands[nc++] = p->a->conf.uses[i].name;
            const char *near = suggest_nearest(act, cands, nc);
            diag_error(p->d, p->file, line, "%s: action = \"%s\" names no configured action%s%s%s",
                       where, act, near ? " (did you mean '" : "", near ? near : "",
                       near ? "'?)" : "");
        }
        link_key(p, g, "next", &n->next, where, n->id, 1);
        link_key(p, g, "on_error", &n->on_error, where, n->id, 0);
        break;
    }
    case JN_END: {
        static const char *const keys[] = {"id", "type", NULL};
        check_keys(p, g, where, keys, 0);
        break;
    }
    case JN_JUMP: {
        static const char *const keys[] = {"id", "type", "journey", NULL};
        check_keys(p, g, where, keys, 0);
        const char *to = req_string(p, g, "journey", where, "\"winback\"", NULL);
        n->jump = to ? xstrdup(to) : NULL;
        break;
    }
    case JN_UPDATE_PROFILE: parse_update(p, g, n, where); break;
    }
}

int journey_node(const journey *j, const char *id)
{
    for (size_t i = 0; i < j->nnodes; i++)
        if (!strcmp(j->nodes[i].id, id))
            return (int)i;
    return -1;
}

static void resolve_links(pctx *p)
{
    const char **ids = xcalloc(p->j->nnodes + 1, sizeof *ids);
    for (size_t i = 0; i < p->j->nnodes; i++)
        ids[i] = p->j->nodes[i].id;
    for (size_t i = 0; i < p->nlinks; i++) {
        struct link *l = &p->links[i];
        int idx = journey_node(p->j, l->target);
        if (idx < 0) {
            const char *near = suggest_nearest(l->target, ids, p->j->nnodes);
            diag_error(p->d, p->file, l->line, "%s%s%s%s = \"%s\" names no node%s%s%s",
                       l->node ? "node '" : "", l->node ? l->node : "", l->node ? "': " : "",
                       l->what, l->target, near ? " (did you mean '" : "", near ? near : "",
                       near ? "'?)" : "");
        }
        *l->slot = idx;
        free(l->target);
    }
    free(ids);
    free(p->links);
    p->links = NULL;
    p->nlinks = 0;
}

/* The nodes a node leads to without waiting: a loop made only of these
 * would spin forever on one event. */
static size_t immediate_succ(const jnode *n, int *out)
{
    size_t k = 0;
    switch (n->type) {
    case JN_CONDITION:
    case JN_SPLIT:
        for (size_t i = 0; i < n->nbr; i++)
            out[k++] = n->br[i].next;
        if (n->type == JN_CONDITION)
            out[k++] = n->otherwise;
        break;
    case JN_SEND:
    case JN_ACTION:
    case JN_UPDATE_PROFILE:
        out[k++] = n->next;
        if (n->type == JN_ACTION)
            out[k++] = n->on_error;
        break;
    default: break;
    }
    return k;
}

static int find_spin(const journey *j, int v, unsigned char *mark)
{
    mark[v] = 1;
    int *succ = xcalloc(j->nodes[v].nbr + 3, sizeof *succ);
    size_t k = immediate_succ(&j->nodes[v], succ);
    int found = -1;
    for (size_t i = 0; i < k && found < 0; i++) {
        int w = succ[i];
        if (w < 0)
            continue;
        if (mark[w] == 1)
            found = w;
        else if (mark[w] == 0)
            found = find_spin(j, w, mark);
    }
    free(succ);
    mark[v] = 2;
    return found;
}

static void reach(const journey *j, int v, unsigned char *seen)
{
    if (v < 0 || seen[v])
        return;
    seen[v] = 1;
    const jnode *n = &j->nodes[v];
    for (size_t i = 0; i < n->nbr; i++)
        reach(j, n->br[i].next, seen);
    reach(j, n->next, seen);
    reach(j, n->otherwise, seen);
    reach(j, n->on_event, seen);
    reach(j, n->on_timeout, seen);
    reach(j, n->on_error, seen);
}

static void check_graph(pctx *p)
{
    journey *j = p->j;
    size_t nn = j->nnodes;
    unsigned char *mark = xcalloc(nn + 1, 1);
    for (size_t v = 0; v < nn; v++) {
        if (mark[v])
            continue;
        int w = find_spin(j, (int)v, mark);
        if (w >= 0) {
            diag_error(p->d, p->file, j->nodes[w].line,
                       "node '%s': part of a loop with no wait or wait_event in it (a profile "
                       "would go round it forever)",
                       j->nodes[w].id);
            break;
        }
    }
    memset(mark, 0, nn);
    reach(j, j->start, mark);
    for (size_t v = 0; v < nn && j->start >= 0; v++)
        if (!mark[v])
            diag_warn(p->d, p->file, j->nodes[v].line,
                      "node '%s' cannot be reached from start = \"%s\"", j->nodes[v].id,
                      j->nodes[j->start].id);
    free(mark);
}

/* ------------------------------------------------------------------ */
/* Names of node results: read only where some path defines them       */
/* ------------------------------------------------------------------ */

/* Nodes whose id names a result: an action's response, the event a
 * wait_event received. */
static int defines_result(const jnode *n)
{
    return n->type == JN_ACTION || n->type == JN_WAIT_EVENT;
}

/* The nodes reachable from v's successors (v itself only on a loop). */
static void reach_after(const journey *j, int v, unsigned char *seen)
{
    const jnode *n = &j->nodes[v];
    for (size_t i = 0; i < n->nbr; i++)
        reach(j, n->br[i].next, seen);
    reach(j, n->next, seen);
    reach(j, n->otherwise, seen);
    reach(j, n->on_event, seen);
    reach(j, n->on_timeout, seen);
    reach(j, n->on_error, seen);
}

/* One compiled expression of node `at` (-1: the entry or an exit rule):
 * every name <id>.field whose id is a result-defining node must be
 * defined on some path from start to `at` (after[d][at]); a wait_event's
 * own filter reads the event it is matching. */
static void check_expr_reads(pctx *p, const void *compiled, int at, int self_ok, int line,
                             const char *where, unsigned char **after)
{
    const journey *j = p->j;
    if (!compiled)
        return;
    size_t n = expr_ref_count(compiled);
    for (size_t i = 0; i < n; i++) {
        const expr_ref *r = expr_ref_at(compiled, i);
        if (!r->prefix)
            continue;
        int d = journey_node(j, r->prefix);
        if (d < 0 || !defines_result(&j->nodes[d]))
            continue;
        if (at >= 0 && ((self_ok && d == at) || after[d][at]))
            continue;
        const char *what = j->nodes[d].type == JN_ACTION ? "the response of action node"
                                                         : "the event received by node";
        if (at < 0)
            diag_error(p->d, p->file, line,
                       "%s: '%s' reads %s '%s', which no instance has reached when this runs",
                       where, r->path, what, r->prefix);
        else
            diag_error(p->d, p->file, line,
                       "%s: '%s' reads %s '%s', but no path from start to node '%s' passes "
                       "through '%s'",
                       where, r->path, what, r->prefix, j->nodes[at].id, r->prefix);
    }
}

static void check_reads(pctx *p)
{
    journey *j = p->j;
    size_t nn = j->nnodes;
    unsigned char **after = xcalloc(nn + 1, sizeof *after);
    for (size_t v = 0; v < nn; v++) {
        after[v] = xcalloc(nn + 1, 1);
        if (defines_result(&j->nodes[v]))
            reach_after(j, (int)v, after[v]);
    }
    check_expr_reads(p, j->entry_filter.compiled, -1, 0, j->entry_filter.line, "entry: filter",
                     after);
    for (size_t x = 0; x < j->nexits; x++) {
        char where[64];
        snprintf(where, sizeof where, "exit[%zu]: filter", x);
        check_expr_reads(p, j->exits[x].filter.compiled, -1, 0, j->exits[x].filter.line, where,
                         after);
    }
    for (size_t v = 0; v < nn; v++) {
        const jnode *n = &j->nodes[v];
        char where[300];
        for (size_t b = 0; b < n->nbr; b++) {
            snprintf(where, sizeof where, "node '%s': branches[%zu]: when", n->id, b);
            check_expr_reads(p, n->br[b].when.compiled, (int)v, 0, n->br[b].when.line, where,
                             after);
        }
        for (size_t k = 0; k < n->nsets; k++) {
            snprintf(where, sizeof where, "node '%s': set[%zu]: value", n->id, k);
            check_expr_reads(p, n->sets[k].value.compiled, (int)v, 0, n->sets[k].value.line, where,
                             after);
        }
        snprintf(where, sizeof where, "node '%s': until", n->id);
        check_expr_reads(p, n->until.compiled, (int)v, 0, n->until.line, where, after);
        snprintf(where, sizeof where, "node '%s': filter", n->id);
        check_expr_reads(p, n->filter.compiled, (int)v, 1, n->filter.line, where, after);
        for (size_t k = 0; k < n->nparts; k++) {
            if (!n->parts[k].tmpl)
                continue;
            snprintf(where, sizeof where, "node '%s': %s", n->id, n->parts[k].name);
            size_t ne = template_expr_count(n->parts[k].tmpl);
            for (size_t e = 0; e < ne; e++)
                check_expr_reads(p, template_expr_at(n->parts[k].tmpl, e), (int)v, 0, n->line,
                                 where, after);
        }
    }
    for (size_t v = 0; v < nn; v++)
        free(after[v]);
    free(after);
}

static void parse_exit(pctx *p, const config_setting_t *root)
{
    const config_setting_t *ex = config_setting_get_member(root, "exit");
    if (!ex)
        return;
    /* one exit rule may be written alone, as a group */
    if (!config_setting_is_group(ex) && !config_setting_is_list(ex)) {
        diag_error(p->d, p->file, line_of(ex),
                   "exit must be a list ( { event = \"order_placed\"; } )");
        return;
    }
    int cnt = config_setting_is_group(ex) ? 1 : config_setting_length(ex);
    p->j->exits = xcalloc((size_t)cnt + 1, sizeof *p->j->exits);
    for (int i = 0; i < cnt; i++) {
        const config_setting_t *e =
            config_setting_is_group(ex) ? ex : config_setting_get_elem(ex, (unsigned)i);
        char where[64];
        snprintf(where, sizeof where, "exit[%d]", i);
        if (!config_setting_is_group(e)) {
            diag_error(p->d, p->file, line_of(e), "%s must be a group { event = \"...\"; }", where);
            continue;
        }
        static const char *const keys[] = {"event", "filter", NULL};
        check_keys(p, e, where, keys, 0);
        jexit *x = &p->j->exits[p->j->nexits++];
        x->line = line_of(e);
        const char *ev = req_string(p, e, "event", where, "\"order_placed\"", NULL);
        x->event = xstrdup(ev ? ev : "");
        cond_key(p, e, "filter", &x->filter, where, "journey", 0);
    }
}

/* schedule = { at; repeat; timezone; } as a campaign's. */
static void parse_schedule(pctx *p, const config_setting_t *g)
{
    journey *j = p->j;
    if (!config_setting_is_group(g)) {
        diag_error(p->d, p->file, line_of(g),
                   "entry: schedule must be a group { at = \"2026-12-01T09:00:00Z\"; repeat = "
                   "\"1d\"; }");
        return;
    }
    static const char *const keys[] = {"at", "repeat", "timezone", NULL};
    check_keys(p, g, "entry: schedule", keys, 0);
    int line;
    const char *at = req_string(p, g, "at", "entry: schedule", "\"2026-12-01T09:00:00Z\"", &line);
    int64_t sec;
    if (at && timestamp_parse(at, strlen(at), &sec))
        diag_error(p->d, p->file, line, "entry: schedule: at = \"%s\" is not an ISO 8601 timestamp",
                   at);
    else if (at)
        j->sched_at = sec;
    int64_t rep = duration_key(p, g, "repeat", "entry: schedule", 0);
    if (rep >= 0 && rep < 60000)
        diag_error(p->d, p->file, line_of(g), "entry: schedule: repeat is at least \"1m\"");
    j->sched_repeat_s = rep > 0 ? rep / 1000 : 0;
    const char *tz = opt_string(p, g, "timezone", "entry: schedule", &line);
    if (tz) {
        char err[256];
        zone *z = zone_load(tz, err, sizeof err);
        if (!z)
            diag_error(p->d, p->file, line, "entry: schedule: timezone: %s", err);
        zone_free(z);
        j->sched_timezone = xstrdup(tz);
    }
    j->has_schedule = 1;
}

static void parse_entry(pctx *p, const config_setting_t *root)
{
    journey *j = p->j;
    const config_setting_t *en = config_setting_get_member(root, "entry");
    if (!en) {
        diag_error(p->d, p->file, line_of(root),
                   "missing required key 'entry' (e.g. entry = { event = \"cart_updated\"; })");
        return;
    }
    if (!config_setting_is_group(en)) {
        diag_error(
            p->d, p->file, line_of(en),
            "entry must be a group { event = \"...\"; filter = \"...\"; reentry = \"never\"; }");
        return;
    }
    static const char *const keys[] = {"event",    "filter",   "reentry", "missing_profile",
                                       "audience", "schedule", "rate",    "qualifies",
                                       "every",    NULL};
    check_keys(p, en, "entry", keys, 0);
    int mline;
    const char *mp = opt_string(p, en, "missing_profile", "entry", &mline);
    if (mp && !strcmp(mp, "enter"))
        j->missing_profile_enter = 1;
    else if (mp && strcmp(mp, "dead_letter"))
        diag_error(p->d, p->file, mline,
                   "entry: missing_profile = \"%s\" is not one of: dead_letter, enter", mp);
    int has_ev = config_setting_get_member(en, "event") != NULL;
    int has_aud = config_setting_get_member(en, "audience") != NULL;
    int has_q = config_setting_get_member(en, "qualifies") != NULL;
    int has_sched = config_setting_get_member(en, "schedule") != NULL;
    if (has_ev + has_aud + has_q > 1 || (has_ev && has_sched)) {
        diag_error(p->d, p->file, line_of(en),
                   "entry: one of event = \"...\", audience = \"...\" (or filter with schedule), "
                   "qualifies = \"...\"");
        return;
    }
    if (has_ev || (!has_aud && !has_q && !has_sched)) {
        const char *ev = req_string(p, en, "event", "entry", "\"cart_updated\"", NULL);
        j->entry_event = xstrdup(ev ? ev : "");
        cond_key(p, en, "filter", &j->entry_filter, "entry", "journey", 0);
        static const char *const only_read[] = {"rate", "every", NULL};
        for (const char *const *k = only_read; *k; k++)
            if (config_setting_get_member(en, *k))
                diag_error(p->d, p->file, line_of(config_setting_get_member(en, *k)),
                           "entry: %s is for audience and qualifies entries", *k);
    } else {
        /* audience, filter + schedule, or qualifies: each profile enters as
         * if by an event of type "audience" whose data are its columns */
        j->entry_event = xstrdup("audience");
        j->entry_kind = has_q ? JE_QUALIFIES : JE_AUDIENCE;
        const char *fkey = has_q ? "qualifies" : "filter";
        int fline;
        const char *f = opt_string(p, en, fkey, "entry", &fline);
        if (f) {
            j->profiles_filter.text = xstrdup(f);
            j->profiles_filter.line = fline;
            jcond_compile_profiles(&j->profiles_filter, p->cc, p->file, "entry", fkey, p->d);
        }
        if (has_aud) {
            const char *an = opt_string(p, en, "audience", "entry", &fline);
            int ok = an && *an && strlen(an) <= 64;
            for (const char *c = an; ok && *c; c++)
                ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                     (*c >= '0' && *c <= '9') || *c == '_';
            if (!ok)
                diag_error(p->d, p->file, fline,
                           "entry: audience = \"%s\" is not an audience name (letters, digits and "
                           "_, as save_audience names it)",
                           an ? an : "");
            else
                j->audience = xstrdup(an);
        }
        const config_setting_t *rs = config_setting_get_member(en, "rate");
        if (rs) {
            int t = config_setting_type(rs);
            if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64 && t != CONFIG_TYPE_FLOAT)
                diag_error(p->d, p->file, line_of(rs),
                           "entry: rate must be a number (profiles "
                           "per second)");
            else {
                j->rate = t == CONFIG_TYPE_FLOAT ? config_setting_get_float(rs)
                                                 : (double)config_setting_get_int64(rs);
                if (j->rate < 0 || j->rate > 1e7)
                    diag_error(p->d, p->file, line_of(rs), "entry: rate = %g is not within 0..1e7",
                               j->rate);
            }
        }
        if (has_q) {
            if (has_sched)
                diag_error(p->d, p->file, line_of(config_setting_get_member(en, "schedule")),
                           "entry: qualifies is evaluated every so often (every = \"15m\"), not on "
                           "a schedule");
            int64_t ms = duration_key(p, en, "every", "entry", 0);
            j->every_ms = ms > 0 ? ms : 15 * 60000;
            if (ms >= 0 && ms < 1000)
                diag_error(p->d, p->file, line_of(en), "entry: every is at least \"1s\"");
        } else {
            if (!has_sched)
                diag_error(p->d, p->file, line_of(en),
                           "entry: an audience entry needs schedule = { at = \"...\"; repeat = "
                           "\"1d\"; }");
            else
                parse_schedule(p, config_setting_get_member(en, "schedule"));
        }
    }
    int line;
    const char *re = opt_string(p, en, "reentry", "entry", &line);
    j->reentry = JR_NEVER;
    if (!re || !strcmp(re, "never"))
        return;
    if (!strcmp(re, "always")) {
        j->reentry = JR_ALWAYS;
        return;
    }
    if (!strncmp(re, "after ", 6) && duration_parse_ms(re + 6, &j->reentry_after_ms) == 0) {
        j->reentry = JR_AFTER;
        return;
    }
    diag_error(p->d, p->file, line,
               "entry: reentry = \"%s\" is not one of: never, always, after <duration> (e.g. "
               "\"after 7d\")",
               re);
}

/* timeout (default 91d, "never"), start_at, end_at. */
static void parse_lifecycle(pctx *p, const config_setting_t *root)
{
    journey *j = p->j;
    j->timeout_ms = 91 * 86400000LL;
    j->start_at_ms = INT64_MIN;
    j->end_at_ms = INT64_MAX;
    int line;
    const char *t = opt_string(p, root, "timeout", "journey", &line);
    if (t && strcmp(t, "never")) {
        int64_t ms;
        if (duration_parse_ms(t, &ms) || ms <= 0)
            diag_error(p->d, p->file, line,
                       "journey: timeout = \"%s\" is not a duration (e.g. \"91d\", \"12h\") or "
                       "\"never\"",
                       t);
        else
            j->timeout_ms = ms;
    } else if (t) {
        j->timeout_ms = 0;
    }
    const char *keys[] = {"start_at", "end_at"};
    int64_t *slots[] = {&j->start_at_ms, &j->end_at_ms};
    for (int i = 0; i < 2; i++) {
        const char *v = opt_string(p, root, keys[i], "journey", &line);
        if (!v)
            continue;
        int64_t sec;
        if (timestamp_parse(v, strlen(v), &sec))
            diag_error(p->d, p->file, line,
                       "journey: %s = \"%s\" is not an ISO 8601 timestamp (e.g. "
                       "\"2026-12-01T00:00:00Z\")",
                       keys[i], v);
        else
            *slots[i] = sec * 1000;
    }
    if (j->start_at_ms != INT64_MIN && j->end_at_ms != INT64_MAX && j->end_at_ms <= j->start_at_ms)
        diag_error(p->d, p->file, line, "journey: end_at is not after start_at");
}

journey *journey_load(const char *path, struct app *a, diag *d)
{
    char *text = read_whole(path);
    if (!text) {
        diag_error(d, path, 0, "cannot read the journey file: %s", strerror(errno));
        return NULL;
    }
    journey *j = journey_load_text(path, text, a, d);
    free(text);
    return j;
}

journey *journey_load_text(const char *path, const char *text, struct app *a, diag *d)
{
    size_t before = d->errors;
    config_t lc;
    config_init(&lc);
    pctx p = {.file = path, .dir = path_dirname(path), .a = a, .d = d};
    p.hash = hash_text(1469598103934665603ULL, text);
    journey *j = xcalloc(1, sizeof *j);
    j->file = xstrdup(path);
    j->text = xstrdup(text);
    j->version = 1;
    j->start = -1;
    p.j = j;
    config_set_include_dir(&lc, p.dir);
    if (!config_read_string(&lc, text)) {
        diag_error(d, config_error_file(&lc) ? config_error_file(&lc) : path,
                   config_error_line(&lc), "%s", config_error_text(&lc));
        goto out;
    }
    const config_setting_t *root = config_lookup(&lc, "journey");
    if (!root || !config_setting_is_group(root)) {
        diag_error(d, path, root ? line_of(root) : 0,
                   "expected journey: { name = \"...\"; entry = { ... }; start = \"...\"; nodes = "
                   "( ... ); }");
        goto out;
    }
    j->line = line_of(root);
    if (a && a->conf.profiles_tz)
        j->tz_field = xstrdup(a->conf.profiles_tz);
    if (a && a->conf.quiet && a->conf.quiet_tz)
        j->tz_default = xstrdup(a->conf.quiet_tz);
    {
        /* action and wait_event node ids name their results (an action's
         * response, the event a wait received) in expressions: know them
         * before compiling any */
        const config_setting_t *nl = config_setting_get_member(root, "nodes");
        int cnt = nl && config_setting_is_list(nl) ? config_setting_length(nl) : 0;
        const char **ids = xcalloc((size_t)cnt + 1, sizeof *ids);
        size_t na = 0;
        for (int i = 0; i < cnt; i++) {
            const config_setting_t *g = config_setting_get_elem(nl, (unsigned)i);
            const char *id = NULL, *type = NULL;
            if (config_setting_is_group(g) && config_setting_lookup_string(g, "id", &id) &&
                config_setting_lookup_string(g, "type", &type) &&
                (!strcmp(type, "action") || !strcmp(type, "wait_event")))
                ids[na++] = id;
        }
        p.cc = jcompile_new(a, ids, na, d);
        free(ids);
    }
    static const char *const keys[] = {"name",    "entry",    "exit",   "start", "nodes",
                                       "timeout", "start_at", "end_at", NULL};
    check_keys(&p, root, "journey", keys, 0);
    parse_lifecycle(&p, root);
    const char *name = req_string(&p, root, "name", "journey", "\"cart-abandon\"", NULL);
    j->name = xstrdup(name ? name : "");
    parse_entry(&p, root);
    parse_exit(&p, root);
    const config_setting_t *nodes = config_setting_get_member(root, "nodes");
    if (!nodes) {
        diag_error(d, path, j->line,
                   "journey: missing required key 'nodes' (a list of { id = ...; type = ...; })");
    } else if (!config_setting_is_list(nodes)) {
        diag_error(d, path, line_of(nodes), "journey: nodes must be a list ( { ... }, { ... } )");
    } else {
        j->nnodes = (size_t)config_setting_length(nodes);
        j->nodes = xcalloc(j->nnodes + 1, sizeof *j->nodes);
        for (size_t i = 0; i < j->nnodes; i++)
            parse_node(&p, config_setting_get_elem(nodes, (unsigned)i), i);
        for (size_t i = 0; i < j->nnodes; i++)
            for (size_t k = 0; k < i; k++)
                if (j->nodes[i].id[0] && !strcmp(j->nodes[i].id, j->nodes[k].id))
                    diag_error(d, path, j->nodes[i].line,
                               "node '%s' is defined twice (first at line %d)", j->nodes[i].id,
                               j->nodes[k].line);
        if (j->nnodes == 0)
            diag_error(d, path, line_of(nodes), "journey: nodes is empty");
    }
    int sline;
    const char *start =
        req_string(&p, root, "start", "journey", "the id of the first node", &sline);
    if (start)
        add_link(&p, &j->start, start, sline, "start", NULL);
    resolve_links(&p);
    if (d->errors == before && j->start >= 0) {
        check_graph(&p);
        check_reads(&p);
    }
    j->hash = p.hash;
out:
    if (p.cc) {
        j->schema = jcompile_take_schema(p.cc);
        jcompile_free(p.cc);
    }
    for (size_t i = 0; i < p.nlinks; i++)
        free(p.links[i].target);
    free(p.links);
    free(p.dir);
    config_destroy(&lc);
    if (d->errors != before) {
        journey_free(j);
        return NULL;
    }
    return j;
}

static void cond_free(jcond *c)
{
    jcond_release(c);
    free(c->text);
}

void journey_free(journey *j)
{
    if (!j)
        return;
    for (size_t i = 0; i < j->nnodes; i++) {
        jnode *n = &j->nodes[i];
        free(n->id);
        for (size_t b = 0; b < n->nbr; b++) {
            cond_free(&n->br[b].when);
            free(n->br[b].name);
        }
        free(n->br);
        cond_free(&n->until);
        cond_free(&n->filter);
        free(n->event);
        free(n->channel);
        for (size_t k = 0; k < n->nparts; k++) {
            free(n->parts[k].name);
            free(n->parts[k].value);
            jtemplate_free(n->parts[k].tmpl);
        }
        free(n->parts);
        free(n->action);
        free(n->jump);
        for (size_t k = 0; k < n->nsets; k++) {
            free(n->sets[k].field);
            cond_free(&n->sets[k].value);
        }
        free(n->sets);
    }
    free(j->nodes);
    for (size_t i = 0; i < j->nexits; i++) {
        free(j->exits[i].event);
        cond_free(&j->exits[i].filter);
    }
    free(j->exits);
    cond_free(&j->entry_filter);
    cond_free(&j->profiles_filter);
    free(j->audience);
    free(j->sched_timezone);
    free(j->tz_field);
    free(j->tz_default);
    free(j->entry_event);
    free(j->name);
    free(j->file);
    free(j->text);
    jschema_free(j->schema);
    free(j);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void add_file(journey ***js, size_t *n, const char *path, struct app *a, diag *d)
{
    journey *j = journey_load(path, a, d);
    if (!j)
        return;
    for (size_t i = 0; i < *n; i++)
        if (!strcmp((*js)[i]->name, j->name)) {
            diag_error(d, path, j->line, "journey '%s' is already defined in %s", j->name,
                       (*js)[i]->file);
            journey_free(j);
            return;
        }
    *js = xrealloc(*js, (*n + 2) * sizeof **js);
    (*js)[(*n)++] = j;
    (*js)[*n] = NULL;
}

/* A jump names a journey of the same configuration. */
static void check_jumps(journey **js, size_t n, diag *d)
{
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < js[i]->nnodes; k++) {
            const jnode *nd = &js[i]->nodes[k];
            if (nd->type != JN_JUMP || !nd->jump || journey_find(js, n, nd->jump))
                continue;
            const char **names = xcalloc(n + 1, sizeof *names);
            for (size_t m = 0; m < n; m++)
                names[m] = js[m]->name;
            const char *near = suggest_nearest(nd->jump, names, n);
            diag_error(d, js[i]->file, nd->line,
                       "node '%s': journey = \"%s\" names no journey of this configuration%s%s%s",
                       nd->id, nd->jump, near ? " (did you mean '" : "", near ? near : "",
                       near ? "'?)" : "");
            free(names);
        }
}

journey **journey_load_all(char **paths, size_t npaths, struct app *a, diag *d, size_t *n)
{
    journey **js = xcalloc(1, sizeof *js);
    *n = 0;
    for (size_t i = 0; i < npaths; i++) {
        struct stat st;
        if (stat(paths[i], &st) != 0) {
            /* a configured folder not created yet holds no journeys; a
             * file named on its own must exist */
            size_t l = strlen(paths[i]);
            if (errno == ENOENT && !(l > 4 && !strcmp(paths[i] + l - 4, ".cfg")))
                diag_warn(d, paths[i], 0, "journeys: no such folder; no journeys loaded from it");
            else
                diag_error(d, paths[i], 0, "journeys: cannot open: %s", strerror(errno));
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            add_file(&js, n, paths[i], a, d);
            continue;
        }
        DIR *dir = opendir(paths[i]);
        if (!dir) {
            diag_error(d, paths[i], 0, "journeys: cannot open: %s", strerror(errno));
            continue;
        }
        char **names = NULL;
        size_t nn = 0;
        struct dirent *e;
        while ((e = readdir(dir))) {
            size_t l = strlen(e->d_name);
            if (l > 4 && !strcmp(e->d_name + l - 4, ".cfg") && e->d_name[0] != '.') {
                names = xrealloc(names, (nn + 1) * sizeof *names);
                names[nn++] = xasprintf("%s/%s", paths[i], e->d_name);
            }
        }
        closedir(dir);
        if (nn)
            qsort(names, nn, sizeof *names, cmp_str);
        for (size_t k = 0; k < nn; k++) {
            add_file(&js, n, names[k], a, d);
            free(names[k]);
        }
        free(names);
    }
    check_jumps(js, *n, d);
    return js;
}

void journey_free_all(journey **js, size_t n)
{
    for (size_t i = 0; i < n; i++)
        journey_free(js[i]);
    free(js);
}

journey *journey_find(journey **js, size_t n, const char *name_or_file)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(js[i]->name, name_or_file) || !strcmp(js[i]->file, name_or_file))
            return js[i];
    return NULL;
}
