#include "config/keymap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/mem.h"
#include "base/suggest.h"
#include "base/timefmt.h"

const char *keymap_type_name(baton_cfg_type t)
{
    switch (t) {
    case BATON_CFG_STRING: return "string";
    case BATON_CFG_INT: return "int";
    case BATON_CFG_FLOAT: return "float";
    case BATON_CFG_BOOL: return "bool";
    case BATON_CFG_DURATION: return "duration";
    case BATON_CFG_ENUM: return "enum";
    case BATON_CFG_LIST: return "list";
    case BATON_CFG_PATH: return "path";
    case BATON_CFG_TEMPLATE: return "template";
    }
    return "?";
}

char *path_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return xstrdup(".");
    if (slash == path)
        return xstrdup("/");
    return xstrndup(path, (size_t)(slash - path));
}

char *path_resolve(const char *dir, const char *path)
{
    if (path[0] == '/' || !dir || strcmp(dir, ".") == 0)
        return xstrdup(path);
    return xasprintf("%s/%s", dir, path);
}

static const char *lc_type_name(int t)
{
    switch (t) {
    case CONFIG_TYPE_GROUP: return "a group";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64: return "an integer";
    case CONFIG_TYPE_FLOAT: return "a number";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "a boolean";
    case CONFIG_TYPE_ARRAY: return "an array";
    case CONFIG_TYPE_LIST: return "a list";
    }
    return "nothing";
}

static const char *expected(const baton_config_key *k)
{
    switch (k->type) {
    case BATON_CFG_INT: return "an integer";
    case BATON_CFG_FLOAT: return "a number";
    case BATON_CFG_BOOL: return "true or false";
    case BATON_CFG_DURATION: return "a duration such as \"90s\", \"15m\", \"12h\", \"7d\"";
    case BATON_CFG_LIST: return "a list of strings such as [ \"a\", \"b\" ]";
    default: return "a string";
    }
}

static int in_choices(const baton_config_key *k, const char *s)
{
    for (const char *const *c = k->choices; c && *c; c++)
        if (strcmp(*c, s) == 0)
            return 1;
    return 0;
}

static void choices_text(const baton_config_key *k, buf *b)
{
    for (const char *const *c = k->choices; c && *c; c++)
        buf_addf(b, "%s%s", c == k->choices ? "" : ", ", *c);
}

int keymap_parse_text(const baton_config_key *k, const char *text, keymap_value *out)
{
    char *end;
    switch (k->type) {
    case BATON_CFG_INT:
        out->i = strtoll(text, &end, 10);
        out->f = (double)out->i;
        return *text && !*end ? 0 : -1;
    case BATON_CFG_FLOAT: out->f = strtod(text, &end); return *text && !*end ? 0 : -1;
    case BATON_CFG_BOOL:
        if (strcmp(text, "true") == 0)
            out->i = 1;
        else if (strcmp(text, "false") == 0)
            out->i = 0;
        else
            return -1;
        return 0;
    case BATON_CFG_DURATION:
        free(out->s);
        out->s = xstrdup(text);
        return duration_parse_ms(text, &out->i);
    case BATON_CFG_LIST:
        /* a default list is written comma-separated */
        for (const char *p = text; *p;) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            out->list = xrealloc(out->list, (out->nlist + 1) * sizeof *out->list);
            out->list[out->nlist++] = xstrndup(p, len);
            p += len + (comma ? 1 : 0);
        }
        return 0;
    case BATON_CFG_ENUM:
        if (!in_choices(k, text))
            return -1;
        /* fall through */
    default:
        free(out->s);
        out->s = xstrdup(text);
        return 0;
    }
}

static int ignored(const char *name, const char *const *ignore)
{
    for (; ignore && *ignore; ignore++)
        if (strcmp(*ignore, name) == 0)
            return 1;
    return 0;
}

static const baton_config_key *find_key(const baton_config_key *const *maps, size_t nmaps,
                                        const char *name)
{
    for (size_t m = 0; m < nmaps; m++)
        for (const baton_config_key *k = maps[m]; k && k->name; k++)
            if (strcmp(k->name, name) == 0)
                return k;
    return NULL;
}

static void unknown_key(const char *file, int line, const char *where, const char *name,
                        const baton_config_key *const *maps, size_t nmaps,
                        const char *const *ignore, diag *d)
{
    const char *cands[256];
    size_t n = 0;
    buf known;
    buf_init(&known);
    for (const char *const *ig = ignore; ig && *ig; ig++) {
        if (n < 256)
            cands[n++] = *ig;
        buf_addf(&known, "%s%s", known.len ? ", " : "", *ig);
    }
    for (size_t m = 0; m < nmaps; m++)
        for (const baton_config_key *k = maps[m]; k && k->name; k++) {
            if (ignored(k->name, ignore))
                continue;
            if (n < 256)
                cands[n++] = k->name;
            buf_addf(&known, "%s%s", known.len ? ", " : "", k->name);
        }
    const char *near = suggest_nearest(name, cands, n);
    if (near)
        diag_error(d, file, line, "%s: unknown key '%s' (did you mean '%s'?); known keys: %s",
                   where, name, near, known.data ? known.data : "none");
    else
        diag_error(d, file, line, "%s: unknown key '%s'; known keys: %s", where, name,
                   known.data ? known.data : "none");
    buf_free(&known);
}

static int check_range(const baton_config_key *k, double v, const char *file, int line,
                       const char *where, diag *d, const char *shown)
{
    if (!k->has_range || (v >= k->min && v <= k->max))
        return 0;
    diag_error(d, file, line, "%s: %s = %s is out of range (%g to %g)", where, k->name, shown,
               k->min, k->max);
    return -1;
}

const char *keymap_shown(const char *value, char *out, size_t outlen)
{
    size_t chars = 0;
    int plain = 1;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        chars += (*p & 0xc0) != 0x80;
        plain &= *p >= 0x20 && *p != 0x7f;
    }
    if (chars <= KEYMAP_SHOWN_MAX && plain)
        snprintf(out, outlen, "\"%s\"", value);
    else
        snprintf(out, outlen, "(a value of %zu characters, not shown)", chars);
    return out;
}

static void read_value(const config_setting_t *s, const baton_config_key *k, keymap_value *val,
                       const char *file, const char *where, const char *dir, diag *d)
{
    int t = config_setting_type(s);
    int line = (int)config_setting_source_line(s);
    val->line = line;
    char shown[64];
    /* "${env:PORT}" under an int, float or bool key: the variable's text
     * read as that type (baton.cfg sets the hook, config.c) */
    const char *envvar = t == CONFIG_TYPE_STRING ? config_setting_get_hook(s) : NULL;
    if (envvar &&
        (k->type == BATON_CFG_INT || k->type == BATON_CFG_FLOAT || k->type == BATON_CFG_BOOL)) {
        const char *str = config_setting_get_string(s);
        if (keymap_parse_text(k, str, val) != 0) {
            diag_error(d, file, line,
                       "%s: %s = \"${env:%s}\": the variable holds %s, which is not %s", where,
                       k->name, envvar, keymap_shown(str, shown, sizeof shown), expected(k));
            return;
        }
        if (k->type != BATON_CFG_BOOL) {
            keymap_shown(str, shown, sizeof shown);
            check_range(k, k->type == BATON_CFG_INT ? (double)val->i : val->f, file, line, where, d,
                        shown);
        }
        return;
    }
    switch (k->type) {
    case BATON_CFG_INT:
        if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
            goto wrong_type;
        val->i = config_setting_get_int64(s);
        val->f = (double)val->i;
        snprintf(shown, sizeof shown, "%lld", (long long)val->i);
        check_range(k, (double)val->i, file, line, where, d, shown);
        break;
    case BATON_CFG_FLOAT:
        if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64)
            val->f = (double)config_setting_get_int64(s);
        else if (t == CONFIG_TYPE_FLOAT)
            val->f = config_setting_get_float(s);
        else
            goto wrong_type;
        snprintf(shown, sizeof shown, "%g", val->f);
        check_range(k, val->f, file, line, where, d, shown);
        break;
    case BATON_CFG_BOOL:
        if (t != CONFIG_TYPE_BOOL)
            goto wrong_type;
        val->i = config_setting_get_bool(s);
        break;
    case BATON_CFG_LIST: {
        /* a value set in the file replaces the default list */
        for (size_t i = 0; i < val->nlist; i++)
            free(val->list[i]);
        free(val->list);
        val->list = NULL;
        val->nlist = 0;
        if (t == CONFIG_TYPE_STRING) {
            val->list = xmalloc(sizeof *val->list);
            val->list[0] = xstrdup(config_setting_get_string(s));
            val->nlist = 1;
            break;
        }
        if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
            goto wrong_type;
        int n = config_setting_length(s);
        val->list = xcalloc((size_t)n + 1, sizeof *val->list);
        for (int i = 0; i < n; i++) {
            const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
            if (config_setting_type(e) != CONFIG_TYPE_STRING) {
                diag_error(d, file, (int)config_setting_source_line(e),
                           "%s: %s[%d] must be a string, not %s", where, k->name, i,
                           lc_type_name(config_setting_type(e)));
                continue;
            }
            val->list[val->nlist++] = xstrdup(config_setting_get_string(e));
        }
        break;
    }
    default: {
        if (t != CONFIG_TYPE_STRING)
            goto wrong_type;
        const char *str = config_setting_get_string(s);
        if (k->type == BATON_CFG_DURATION) {
            free(val->s);
            val->s = xstrdup(str);
            keymap_shown(str, shown, sizeof shown);
            if (duration_parse_ms(str, &val->i)) {
                diag_error(d, file, line, "%s: %s = %s is not a duration; expected %s", where,
                           k->name, shown, expected(k));
                break;
            }
            check_range(k, (double)val->i / 1000.0, file, line, where, d, shown);
        } else if (k->type == BATON_CFG_ENUM && !in_choices(k, str)) {
            buf c;
            buf_init(&c);
            choices_text(k, &c);
            diag_error(d, file, line, "%s: %s = %s is not one of: %s", where, k->name,
                       keymap_shown(str, shown, sizeof shown), c.data ? c.data : "");
            buf_free(&c);
        } else if (k->type == BATON_CFG_PATH) {
            free(val->s);
            if (!*str)
                diag_error(d, file, line, "%s: %s must name a file or folder, not be empty", where,
                           k->name);
            val->s = path_resolve(dir, str);
        } else {
            free(val->s);
            val->s = xstrdup(str);
        }
        break;
    }
    }
    return;
wrong_type:
    diag_error(d, file, line, "%s: %s must be %s, not %s", where, k->name, expected(k),
               lc_type_name(t));
}

size_t keymap_validate(const config_setting_t *group, const char *where,
                       const baton_config_key *const *maps, size_t nmaps, const char *const *ignore,
                       const char *dir, keymap_values *out, diag *d)
{
    size_t before = d->errors;
    const char *file = group ? config_setting_source_file(group) : NULL;
    int gline = group ? (int)config_setting_source_line(group) : 0;
    size_t total = 0;
    for (size_t m = 0; m < nmaps; m++)
        for (const baton_config_key *k = maps[m]; k && k->name; k++)
            total++;
    out->v = xcalloc(total + 1, sizeof *out->v);
    out->n = 0;
    for (size_t m = 0; m < nmaps; m++)
        for (const baton_config_key *k = maps[m]; k && k->name; k++) {
            /* a key declared twice (host and plugin) keeps the first */
            if (keymap_get(out, k->name))
                continue;
            keymap_value *val = &out->v[out->n++];
            val->key = k;
            val->line = gline;
            if (k->default_value && keymap_parse_text(k, k->default_value, val))
                diag_error(d, file, gline, "%s: the plugin's default for '%s' (\"%s\") is not %s",
                           where, k->name, k->default_value, expected(k));
        }

    int n = group ? config_setting_length(group) : 0;
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
        const char *name = config_setting_name(s);
        if (!name || ignored(name, ignore))
            continue;
        const baton_config_key *k = find_key(maps, nmaps, name);
        if (!k) {
            unknown_key(file, (int)config_setting_source_line(s), where, name, maps, nmaps, ignore,
                        d);
            continue;
        }
        keymap_value *val = (keymap_value *)keymap_get(out, name);
        val->present = 1;
        const char *sfile = config_setting_source_file(s);
        char *sdir = sfile ? path_dirname(sfile) : NULL;
        read_value(s, k, val, sfile ? sfile : file, where, sdir ? sdir : dir, d);
        free(sdir);
    }
    for (size_t i = 0; i < out->n; i++) {
        const baton_config_key *k = out->v[i].key;
        if (k->required && !out->v[i].present) {
            if (k->help)
                diag_error(d, file, gline, "%s: missing required key '%s' (%s)", where, k->name,
                           k->help);
            else
                diag_error(d, file, gline, "%s: missing required key '%s'", where, k->name);
        }
        /* defaults of PATH keys resolve like values written in the file */
        if (k->type == BATON_CFG_PATH && !out->v[i].present && out->v[i].s) {
            char *r = path_resolve(dir, out->v[i].s);
            free(out->v[i].s);
            out->v[i].s = r;
        }
    }
    return d->errors - before;
}

void keymap_values_free(keymap_values *vals)
{
    for (size_t i = 0; i < vals->n; i++) {
        free(vals->v[i].s);
        for (size_t j = 0; j < vals->v[i].nlist; j++)
            free(vals->v[i].list[j]);
        free(vals->v[i].list);
    }
    free(vals->v);
    vals->v = NULL;
    vals->n = 0;
}

const keymap_value *keymap_get(const keymap_values *vals, const char *key)
{
    for (size_t i = 0; i < vals->n; i++)
        if (strcmp(vals->v[i].key->name, key) == 0)
            return &vals->v[i];
    return NULL;
}

json_t *keymap_describe_json(const baton_config_key *keys)
{
    json_t *arr = json_array();
    for (const baton_config_key *k = keys; k && k->name; k++) {
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(k->name));
        json_object_set_new(o, "type", json_string(keymap_type_name(k->type)));
        json_object_set_new(o, "required", json_boolean(k->required));
        if (k->default_value)
            json_object_set_new(o, "default", json_string(k->default_value));
        if (k->has_range) {
            json_object_set_new(o, "min", json_real(k->min));
            json_object_set_new(o, "max", json_real(k->max));
        }
        if (k->choices) {
            json_t *c = json_array();
            for (const char *const *s = k->choices; *s; s++)
                json_array_append_new(c, json_string(*s));
            json_object_set_new(o, "choices", c);
        }
        if (k->help)
            json_object_set_new(o, "help", json_string(k->help));
        json_array_append_new(arr, o);
    }
    return arr;
}
