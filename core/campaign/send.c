/* The send activity: one message per row of its input, on the channel it
 * names. Checked against the channel (configured, enabled, its content
 * parts) and the schema; planned as exact SQL counts of the rows that
 * would be sent and of those left out for want of an address or consent. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "campaign/act_host.h"
#include "campaign/engine.h"
#include "config/keymap.h"
#include "scope/cond.h"
#include "base/mem.h"
#include "base/record.h"
#include "base/suggest.h"
#include "delivery/dispatch.h"
#include "lang/template.h"

void camp_send_free(send_plan *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nparts; i++) {
        free(p->part_names[i]);
        template_free(p->parts[i]);
    }
    free(p->part_names);
    free(p->parts);
    for (size_t i = 0; i < p->npaths; i++)
        free(p->paths[i]);
    free(p->paths);
    free(p->addr_path);
    free(p->tz_path);
    free(p->consent_path);
    free(p->profile_path);
    free(p->addr_field);
    free(p->consent_field);
    free(p->channel);
    free(p);
}

static void add_path(send_plan *p, const char *path)
{
    for (size_t i = 0; i < p->npaths; i++)
        if (strcmp(p->paths[i], path) == 0)
            return;
    p->paths = xrealloc(p->paths, (p->npaths + 1) * sizeof *p->paths);
    p->paths[p->npaths++] = xstrdup(path);
}

static expr_scope *scope_for(camp_env *e, const camp_output *in)
{
    expr_scope *sc = expr_scope_new(&e->sch, schema_entity_find(&e->sch, in->dimension));
    for (size_t i = 0; i < in->ncols; i++)
        expr_scope_add_field(sc, in->cols[i].name, in->cols[i].type, NULL);
    return sc;
}

/* The scope of a send's templates: the input's, and profile.* for the
 * row itself when the rows are profiles (as journeys name them). */
static expr_scope *template_scope(camp_env *e, const camp_output *in, send_plan *p)
{
    expr_scope *sc = scope_for(e, in);
    const schema_entity *en = schema_entity_find(&e->sch, in->dimension);
    if (en && en == schema_entity_find(&e->sch, "profiles")) {
        expr_scope_add_entity(sc, "profile", en);
        p->record_prefix = "profile";
    }
    return sc;
}

/* Collect the names a template reads at the row's level: each is a column
 * of the send's SELECT. Aggregates and {{#each}} read their rows from the
 * source once per message (journey/cond.c): the SELECT carries the key
 * their link starts from. Deeper names are read from those rows. */
static void collect_refs(send_plan *p, const template *t)
{
    for (size_t i = 0; i < template_expr_count(t); i++) {
        const expr *x = template_expr_at(t, i);
        for (size_t r = 0; r < expr_ref_count(x); r++) {
            const expr_ref *ref = expr_ref_at(x, r);
            if (ref->level != 0)
                continue;
            if (ref->kind == EXPR_REF_ROWS) {
                char *kp = jscope_key_path(ref, p->record_prefix);
                add_path(p, kp);
                free(kp);
                p->scoped = 1;
            } else if (p->record_prefix && ref->prefix && !strcmp(ref->prefix, p->record_prefix)) {
                add_path(p, ref->path + strlen(ref->prefix) + 1);
                p->scoped = 1;
            } else {
                add_path(p, ref->path);
            }
        }
    }
}

/* "email" on profiles is "email"; on orders, "profile.email" through the
 * link to profiles. */
static char *to_profile(camp_env *e, const char *dimension, const char *field)
{
    const schema_entity *en = schema_entity_find(&e->sch, dimension);
    const schema_entity *pr = schema_entity_find(&e->sch, "profiles");
    if (!en || !pr)
        return NULL;
    if (en == pr)
        return xstrdup(field);
    /* the shortest path of many-to-one links (a line: order.profile),
     * the first declared on a tie */
    for (int depth = 1; depth <= 4; depth++) {
        char *hit = NULL;
        const schema_entity *at[5] = {en};
        size_t pick[5] = {0};
        int d = 0;
        while (d >= 0 && !hit) {
            if (d == depth) {
                if (at[d] == pr) {
                    buf b;
                    buf_init(&b);
                    for (int k = 0; k < depth; k++)
                        buf_addf(&b, "%s.", at[k]->links[pick[k] - 1].name);
                    buf_adds(&b, field);
                    hit = buf_steal(&b);
                }
                d--;
                continue;
            }
            if (pick[d] >= at[d]->nlinks) {
                pick[d] = 0;
                d--;
                continue;
            }
            at[d + 1] = at[d]->links[pick[d]++].to;
            d++;
            pick[d] = 0;
        }
        if (hit)
            return hit;
    }
    return NULL;
}

static const char *const content_keys[] = {"channel", "columns", NULL};

/* The channel a send names: configured and enabled. Checked even when
 * the send's input has errors, so that every error shows at once. */
int camp_send_channel(camp_env *e, camp_activity *a, conf_use **usep, const char **namep,
                      int *linep)
{
    config_setting_t *cs = config_setting_get_member(a->group, "channel");
    int cline = cs ? (int)config_setting_source_line(cs) : a->line;
    const char *chname =
        cs && config_setting_type(cs) == CONFIG_TYPE_STRING ? config_setting_get_string(cs) : NULL;
    if (!chname) {
        diag_error(e->d, e->c->file, cline, "activity '%s': channel must name a configured channel",
                   a->id);
        return -1;
    }
    conf_use *use = conf_find(&e->a->conf, "channels", chname);
    if (!use) {
        const char *cands[64];
        size_t nc = 0;
        for (size_t i = 0; i < e->a->conf.nuses && nc < 64; i++)
            if (e->a->conf.uses[i].kind == BATON_KIND_CHANNEL)
                cands[nc++] = e->a->conf.uses[i].name;
        const char *near = suggest_nearest(chname, cands, nc);
        diag_error(e->d, e->c->file, cline, "activity '%s': unknown channel '%s'%s%s%s", a->id,
                   chname, near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
        return -1;
    }
    if (!use->enabled) {
        diag_error(e->d, e->c->file, cline,
                   "activity '%s': channel '%s' is disabled (enabled = false at %s:%d); the "
                   "campaign cannot run until it is enabled or the send removed",
                   a->id, chname, use->file, use->line);
        return -1;
    }
    *usep = use;
    *namep = chname;
    *linep = cline;
    return 0;
}

static int send_check(void *state, baton_activity_ctx *x)
{
    camp_env *e = state;
    camp_activity *a = &e->c->acts[x->idx];
    size_t errs = e->d->errors;
    if (a->ninputs != 1) {
        diag_error(e->d, e->c->file, a->line, "activity '%s': a send takes one input", a->id);
        return -1;
    }
    const camp_output *in = campaign_input_output(e->c, &a->inputs[0]);
    if (!in || !in->dimension) {
        diag_error(e->d, e->c->file, a->line, "activity '%s': its input carries no rows", a->id);
        return -1;
    }
    conf_use *use = NULL;
    const char *chname = NULL;
    int cline = a->line;
    if (camp_send_channel(e, a, &use, &chname, &cline))
        return -1;
    instance *inst = app_find(e->a, "channels", chname);
    const baton_channel_ops *ops = inst ? instance_channel(inst) : NULL;
    if (!ops) {
        diag_error(e->d, e->c->file, cline, "activity '%s': channel '%s' is not loaded", a->id,
                   chname);
        return -1;
    }
    send_plan *p = xcalloc(1, sizeof *p);
    p->chan = inst;
    p->ops = ops;
    p->channel = xstrdup(chname);
    expr_scope *sc = template_scope(e, in, p);

    /* settings: channel, columns, and for each content part P of the
     * channel, P (template text) or P_file (a template file) */
    for (int i = 0; i < config_setting_length(a->group); i++) {
        config_setting_t *m = config_setting_get_elem(a->group, (unsigned)i);
        const char *name = config_setting_name(m);
        int line = (int)config_setting_source_line(m);
        if (!strcmp(name, "id") || !strcmp(name, "type") || !strcmp(name, "input") ||
            !strcmp(name, "inputs") || !strcmp(name, "channel"))
            continue;
        if (!strcmp(name, "columns"))
            continue;
        char *part = xstrdup(name);
        int is_file = 0;
        size_t l = strlen(part);
        if (l > 5 && !strcmp(part + l - 5, "_file")) {
            part[l - 5] = '\0';
            is_file = 1;
        }
        int known = 0;
        for (const char *const *pp = ops->parts; pp && *pp; pp++)
            known |= strcmp(*pp, part) == 0;
        if (!known) {
            buf list;
            buf_init(&list);
            const char *cands[32];
            size_t nc = 0;
            for (const char *const *kk = content_keys; *kk; kk++)
                buf_addf(&list, "%s%s", list.len ? ", " : "", *kk), cands[nc++] = *kk;
            for (const char *const *pp = ops->parts; pp && *pp && nc < 30; pp++) {
                buf_addf(&list, ", %s, %s_file", *pp, *pp);
                cands[nc++] = *pp;
            }
            const char *near = suggest_nearest(part, cands, nc);
            diag_error(
                e->d, e->c->file, line,
                "activity '%s': unknown key '%s' for a send on channel '%s'%s%s%s; known keys: %s",
                a->id, name, chname, near ? " (did you mean '" : "", near ? near : "",
                near ? "'?)" : "", list.data);
            buf_free(&list);
            free(part);
            continue;
        }
        if (config_setting_type(m) != CONFIG_TYPE_STRING) {
            diag_error(e->d, e->c->file, line, "activity '%s': %s must be a string", a->id, name);
            free(part);
            continue;
        }
        char *text = NULL;
        const char *tfile = e->c->file;
        int tline = line;
        char *fpath = NULL;
        if (is_file) {
            fpath = path_resolve(e->c->dir, config_setting_get_string(m));
            FILE *f = fopen(fpath, "rb");
            if (!f) {
                diag_error(e->d, e->c->file, line, "activity '%s': %s: cannot read '%s'", a->id,
                           name, fpath);
                free(fpath);
                free(part);
                continue;
            }
            buf b;
            buf_init(&b);
            char chunk[4096];
            size_t r;
            while ((r = fread(chunk, 1, sizeof chunk, f)) > 0)
                buf_add(&b, chunk, r);
            fclose(f);
            text = b.data ? buf_steal(&b) : xstrdup("");
            tfile = fpath;
            tline = 1;
        } else {
            text = xstrdup(config_setting_get_string(m));
        }
        expr_origin o = {tfile, tline, name};
        template *t = template_compile(text, sc, &o, template_part_escape(part), e->d);
        free(text);
        if (t) {
            collect_refs(p, t);
            p->part_names = xrealloc(p->part_names, (p->nparts + 1) * sizeof *p->part_names);
            p->parts = xrealloc(p->parts, (p->nparts + 1) * sizeof *p->parts);
            p->part_names[p->nparts] = part;
            p->parts[p->nparts++] = t;
            part = NULL;
        }
        free(part);
        free(fpath);
    }

    /* export columns: a key of the send activity (a channel's own keys
     * are the plugin's, never read here) */
    config_setting_t *cols = config_setting_get_member(a->group, "columns");
    size_t ncols = cols ? (size_t)config_setting_length(cols) : 0;
    if (cols && !config_setting_is_array(cols) && !config_setting_is_list(cols)) {
        diag_error(e->d, e->c->file, (int)config_setting_source_line(cols),
                   "activity '%s': columns must be a list of expressions [ \"profile.first_name\", "
                   "\"amount\" ]",
                   a->id);
        ncols = 0;
    }
    for (size_t i = 0; i < ncols; i++) {
        config_setting_t *el = config_setting_get_elem(cols, (unsigned)i);
        int line = (int)config_setting_source_line(el ? el : cols);
        if (line <= 0)
            line = (int)config_setting_source_line(cols);
        /* "expr" (its text names the column) or { name = "..."; value = "expr"; } */
        const char *col =
            config_setting_type(el) == CONFIG_TYPE_STRING ? config_setting_get_string(el) : NULL;
        const char *name = col;
        if (!col && config_setting_type(el) == CONFIG_TYPE_GROUP) {
            config_setting_t *nm = config_setting_get_member(el, "name");
            config_setting_t *vl = config_setting_get_member(el, "value");
            name = nm && config_setting_type(nm) == CONFIG_TYPE_STRING
                       ? config_setting_get_string(nm)
                       : NULL;
            col = vl && config_setting_type(vl) == CONFIG_TYPE_STRING
                      ? config_setting_get_string(vl)
                      : NULL;
            for (int k = 0; k < config_setting_length(el); k++) {
                const char *kn = config_setting_name(config_setting_get_elem(el, (unsigned)k));
                if (strcmp(kn, "name") && strcmp(kn, "value")) {
                    diag_error(e->d, e->c->file, line,
                               "activity '%s': columns[%zu]: unknown key '%s' (a column is { "
                               "name = \"...\"; value = \"expression\"; })",
                               a->id, i, kn);
                    col = NULL;
                    name = "";
                }
            }
            if (!name || !*name || !col) {
                if (!name || !col)
                    diag_error(e->d, e->c->file, line,
                               "activity '%s': columns[%zu] needs a name and a value: { name = "
                               "\"spent\"; value = \"sum(orders.amount)\"; }",
                               a->id, i);
                continue;
            }
        }
        if (!col) {
            diag_error(e->d, e->c->file, line,
                       "activity '%s': columns[%zu] must be an expression (a string) or { name "
                       "= \"...\"; value = \"...\"; }",
                       a->id, i);
            continue;
        }
        int dup = 0;
        for (size_t k = 0; k < p->nparts && p->columns; k++)
            dup |= !strcmp(p->part_names[k], name);
        if (dup) {
            diag_error(e->d, e->c->file, line, "activity '%s': columns[%zu]: a second column '%s'",
                       a->id, i, name);
            continue;
        }
        char *text = xasprintf("{{ %s }}", col);
        char setting[64];
        snprintf(setting, sizeof setting, "columns[%zu]", i);
        expr_origin o = {e->c->file, line, setting};
        template *t = template_compile(text, sc, &o, 0, e->d);
        free(text);
        if (!t)
            continue;
        collect_refs(p, t);
        p->part_names = xrealloc(p->part_names, (p->nparts + 1) * sizeof *p->part_names);
        p->parts = xrealloc(p->parts, (p->nparts + 1) * sizeof *p->parts);
        p->part_names[p->nparts] = xstrdup(name);
        p->parts[p->nparts++] = t;
        p->columns = 1;
    }
    if (p->nparts == 0 && e->d->errors == errs) {
        buf list;
        buf_init(&list);
        for (const char *const *pp = ops->parts; pp && *pp; pp++)
            buf_addf(&list, "%s%s", list.len ? ", " : "", *pp);
        diag_error(e->d, e->c->file, a->line, "activity '%s': nothing to send: set %s%s", a->id,
                   list.len ? list.data : "columns", list.len ? " (or columns)" : "");
        buf_free(&list);
    }

    /* address, consent and the profile, reached through the link */
    p->addr_field = inst->host.channel.address ? xstrdup(inst->host.channel.address) : NULL;
    p->consent_field = inst->host.channel.consent ? xstrdup(inst->host.channel.consent) : NULL;
    const schema_entity *pr = schema_entity_find(&e->sch, "profiles");
    p->profile_path = pr ? to_profile(e, in->dimension, pr->key->name) : NULL;
    if (!p->profile_path)
        diag_error(e->d, e->c->file, a->line,
                   "activity '%s': rows of '%s' reach no profile (the schema needs an entity "
                   "'profiles' and a link to it from '%s')",
                   a->id, in->dimension, in->dimension);
    if (p->addr_field) {
        p->addr_path = to_profile(e, in->dimension, p->addr_field);
        if (pr && !schema_field_find(pr, p->addr_field))
            diag_error(e->d, use->file, use->line,
                       "%s: address = \"%s\" is not a field of profiles", use->where,
                       p->addr_field);
    }
    if (!p->addr_field && ops &&
        !(ops->size > offsetof(baton_channel_ops, flags) &&
          (ops->flags & BATON_CHANNEL_NO_RECIPIENT))) {
        /* dispatch_recipient falls back on a `recipient` column */
        char cerr[256];
        expr *rx = expr_compile_msg("recipient", sc, 0, cerr, sizeof cerr);
        if (!rx)
            diag_error(e->d, use->file, use->line,
                       "%s: no `address`: name the profiles field that holds the recipient "
                       "(address = \"email\"), or every message of activity '%s' fails",
                       use->where, a->id);
        expr_free(rx);
    }
    /* the profile's zone, read per row for quiet hours */
    const char *tzf = e->a->conf.profiles_tz;
    if (tzf && pr && schema_field_find(pr, tzf))
        p->tz_path = to_profile(e, in->dimension, tzf);
    if (p->consent_field) {
        p->consent_path = to_profile(e, in->dimension, p->consent_field);
        if (pr && !schema_field_find(pr, p->consent_field))
            diag_error(e->d, use->file, use->line,
                       "%s: consent = \"%s\" is not a field of profiles", use->where,
                       p->consent_field);
    } else if (pr && ops &&
               !(ops->size > offsetof(baton_channel_ops, flags) &&
                 (ops->flags & BATON_CHANNEL_NO_RECIPIENT))) {
        /* profiles keep a consent for this channel (consent_email for the
         * channel email or a channel_email plugin): a channel that does not
         * read it would message those who refused */
        const char *kind = inst->plugin && !strncmp(inst->plugin->name, "channel_", 8)
                               ? inst->plugin->name + 8
                               : NULL;
        const char *names[2] = {inst->name, kind};
        for (size_t k = 0; k < 2; k++) {
            if (!names[k])
                continue;
            char *want = xasprintf("consent_%s", names[k]);
            const schema_field *cf = schema_field_find(pr, want);
            if (cf && cf->type == BATON_T_BOOL) {
                diag_error(e->d, use->file, use->line,
                           "%s: no `consent`, though profiles has the field '%s': set consent = "
                           "\"%s\", or activity '%s' sends to profiles that did not consent",
                           use->where, want, want, a->id);
                free(want);
                break;
            }
            free(want);
        }
    }
    expr_scope_free(sc);
    camp_send_free(e->s[x->idx].send);
    e->s[x->idx].send = p;
    return e->d->errors == errs ? 0 : -1;
}

/* One select column: a name compiled to SQL over the row alias r. */
static int select_path(camp_env *e, const camp_output *in, const char *path, expr_sql *q, char *err,
                       size_t errlen)
{
    expr_scope *sc = scope_for(e, in);
    expr *x = expr_compile_msg(path, sc, 0, err, errlen);
    int rc = -1;
    if (x)
        rc = expr_to_sql(x, "r", e->dialect, e->now, q, err, errlen);
    expr_free(x);
    expr_scope_free(sc);
    return rc;
}

/* FROM over the input's work table joined to its entity's table, as one
 * row alias r carrying both the entity's fields and the work columns. */
static void from_rows(camp_env *e, const camp_output *in, const char *table, expr_sql *q)
{
    const schema_entity *en = schema_entity_find(&e->sch, in->dimension);
    buf_addf(&q->sql, " FROM (SELECT t.*");
    for (size_t i = 0; i < in->ncols; i++) {
        buf_adds(&q->sql, ", w.");
        expr_sql_ident(q, e->dialect, in->cols[i].name);
    }
    buf_addf(&q->sql, ", w._key AS _key FROM %s w JOIN ", table);
    expr_sql_ident(q, e->dialect, en->table);
    buf_adds(&q->sql, " t ON t.");
    expr_sql_ident(q, e->dialect, en->key->name);
    buf_adds(&q->sql, " = w._key) r");
}

int camp_send_select(camp_env *e, size_t idx, expr_sql *q, char *err, size_t errlen)
{
    camp_activity *a = &e->c->acts[idx];
    send_plan *p = e->s[idx].send;
    const camp_input *ci = &a->inputs[0];
    const camp_output *in = campaign_input_output(e->c, ci);
    buf_adds(&q->sql, "SELECT ");
    const char *extra[4] = {p->addr_path, p->consent_path, p->profile_path, p->tz_path};
    for (size_t i = 0; i < p->npaths + 4; i++) {
        const char *path = i < p->npaths ? p->paths[i] : extra[i - p->npaths];
        if (!path) {
            buf_adds(&q->sql, "NULL, ");
            continue;
        }
        if (select_path(e, in, path, q, err, errlen))
            return -1;
        buf_adds(&q->sql, ", ");
    }
    buf_adds(&q->sql, "r._key");
    from_rows(e, in, e->s[ci->act].tables[ci->out], q);
    return 0;
}

static int take_three(void *ud, size_t n, const char *const *names, const baton_value *v)
{
    int64_t *out = ud;
    for (size_t i = 0; i < n && i < 3; i++)
        out[i] = v[i].type == BATON_T_INT     ? v[i].v.i
                 : v[i].type == BATON_T_FLOAT ? (int64_t)v[i].v.f
                                              : 0;
    return 1;
}

/* A plan's count of rows the suppression list holds back (a run counts
 * them in delivery_send): eligible rows, as dispatch_recipient decides,
 * whose profile or address is suppressed. */
typedef struct sup_count {
    send_plan *p;
    suppress_reader *r;
    record *row;
    int64_t n;
} sup_count;

static int count_suppressed(void *ud, size_t n, const char *const *names, const baton_value *v)
{
    sup_count *c = ud;
    send_plan *p = c->p;
    if (n < p->npaths + 3)
        return 1;
    record_clear(c->row);
    const char *fields[2] = {p->addr_field, p->consent_field};
    for (size_t k = 0; k < 2; k++)
        if (fields[k])
            record_set(c->row, fields[k], &v[p->npaths + k]);
    char addr[512], pid[128] = "";
    if (dispatch_recipient(p->chan, c->row, addr, sizeof addr) != DISPATCH_ELIGIBLE)
        return 0;
    const baton_value *pv = &v[p->npaths + 2];
    if (pv->type == BATON_T_STRING)
        snprintf(pid, sizeof pid, "%.*s", (int)pv->v.s.len, pv->v.s.ptr);
    else if (pv->type == BATON_T_INT)
        snprintf(pid, sizeof pid, "%lld", (long long)pv->v.i);
    c->n += dispatch_suppress_reader_check(c->r, pid, addr);
    return 0;
}

int camp_send_execute(camp_env *e, size_t idx)
{
    camp_activity *a = &e->c->acts[idx];
    act_state *s = &e->s[idx];
    send_plan *p = s->send;
    const camp_input *ci = &a->inputs[0];
    const camp_output *in = campaign_input_output(e->c, ci);
    char err[512];
    expr_sql q;
    expr_sql_init(&q);
    /* as the dispatcher decides (dispatch_recipient): consent first, then
     * an address that is not blank */
    char *consent = NULL, *blank = NULL;
    if (p->consent_path) {
        size_t mark = q.sql.len;
        if (select_path(e, in, p->consent_path, &q, err, sizeof err))
            goto fail;
        consent = expr_dialect_cond(e->dialect, EXPR_COND_TRUE, q.sql.data + mark);
        q.sql.len = mark;
        q.sql.data[mark] = '\0';
    }
    if (p->addr_path) {
        size_t mark = q.sql.len;
        if (select_path(e, in, p->addr_path, &q, err, sizeof err)) {
            free(consent);
            goto fail;
        }
        blank = expr_dialect_cond(e->dialect, EXPR_COND_BLANK, q.sql.data + mark);
        q.sql.len = mark;
        q.sql.data[mark] = '\0';
    }
    buf_adds(&q.sql, "SELECT count(*), ");
    if (blank)
        buf_addf(&q.sql, "coalesce(sum(CASE WHEN %s%s%s THEN 1 ELSE 0 END), 0), ",
                 consent ? consent : "", consent ? " AND " : "", blank);
    else
        buf_adds(&q.sql, "0, ");
    if (consent)
        buf_addf(&q.sql, "coalesce(sum(CASE WHEN %s THEN 0 ELSE 1 END), 0)", consent);
    else
        buf_adds(&q.sql, "0");
    free(consent);
    free(blank);
    from_rows(e, in, e->s[ci->act].tables[ci->out], &q);
    int64_t t[3] = {0, 0, 0};
    if (camp_sql(e, q.sql.data, q.params, q.nparams, take_three, t, err, sizeof err))
        goto fail;
    s->no_address = t[1];
    s->no_consent = t[2];
    expr_sql_free(&q);
    s->would_send = t[0] - s->no_address - s->no_consent;
    if (e->plan) {
        sup_count c = {.p = p, .r = dispatch_suppress_reader(e->a->conf.data_dir, p->channel)};
        if (c.r) {
            expr_sql_init(&q);
            c.row = record_new();
            int rc = camp_send_select(e, idx, &q, err, sizeof err);
            if (rc == 0)
                rc = camp_sql(e, q.sql.data, q.params, q.nparams, count_suppressed, &c, err,
                              sizeof err);
            record_free(c.row);
            dispatch_suppress_reader_close(c.r);
            if (rc != 0)
                goto fail;
            expr_sql_free(&q);
            s->suppressed = c.n;
            s->would_send -= c.n;
        }
        return 0;
    }
    return camp_send_deliver(e, idx);
fail:
    snprintf(e->error, sizeof e->error, "%s:%d: activity '%s': %s", e->c->file, a->line, a->id,
             err);
    expr_sql_free(&q);
    return -1;
}

const baton_activity_type camp_send_type = {
    .size = sizeof(baton_activity_type),
    .name = "send",
    .help = "one message per row of its input, on a channel",
    .check = send_check,
};
