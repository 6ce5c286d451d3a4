/* daemon/http_profiles — GET /v1/profiles?address=ADDR: the profiles
 * whose address field of any channel (its `address` key: email, phone...)
 * holds ADDR, for looking a person up by what a message was sent to. The
 * read goes to the profiles source with bound parameters (scope/source),
 * in a secondary app as plans do. GET /v1/profiles/ID/record (its row,
 * and per channel what decides a send) and GET /v1/profiles/ID/links/LINK
 * (the rows a link reaches from it). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "config/config.h"
#include "delivery/dispatch.h"
#include "daemon/http_int.h"
#include "plugin/plugin_host.h"
#include "schema/schema.h"
#include "scope/source.h"

/* matches answered at most (an address shared by more is a data problem
 * the answer says through "truncated") */
#define MAX_MATCHES 100
#define MAX_ADDRESS 320
/* linked rows answered at most in one request */
#define MAX_LINKED 1000

static void add_id(json_t *ids, json_t *v)
{
    json_t *id = json_is_string(v)    ? json_incref(v)
                 : json_is_integer(v) ? json_sprintf("%lld", (long long)json_integer_value(v))
                                      : NULL;
    if (!id)
        return;
    size_t i;
    json_t *x;
    json_array_foreach(ids, i, x) if (json_equal(x, id))
    {
        json_decref(id);
        return;
    }
    json_array_append_new(ids, id);
}

/* A secondary app with only the profiles source started (no channel, no
 * event source), and the jsource over it; NULL after answering (a and d
 * are set up either way: close them). */
static jsource *open_profiles(http_req *q, app *a, diag *d)
{
    diag_init(d);
    jsource *src = NULL;
    int ok = app_open(a, q->env->config, APP_INIT | APP_SECONDARY, d) == 0;
    instance *pi = ok && a->conf.profiles ? app_find(a, "sources", a->conf.profiles) : NULL;
    if (pi && instance_start(pi) != 0) {
        http_error(q, 502, "source_failed", NULL, "sources.%s: %s", a->conf.profiles, pi->error);
        return NULL;
    }
    if (!ok || !(src = jsource_open(a, d)) || d->errors) {
        jsource_close(src);
        http_error(q, 503, "unavailable", NULL, "the profiles source could not be opened");
        return NULL;
    }
    return src;
}

void http_profiles_search(http_req *q)
{
    const char *addr = http_arg(q, "address");
    if (!addr || !*addr) {
        http_error(q, 400, "bad_request", json_pack("{s:s}", "field", "address"),
                   "address: give the address to look for (GET /v1/profiles?address=...)");
        return;
    }
    if (strlen(addr) > MAX_ADDRESS) {
        http_error(q, 400, "bad_request", json_pack("{s:s}", "field", "address"),
                   "address: longer than %d bytes", MAX_ADDRESS);
        return;
    }
    app a;
    diag d;
    jsource *src = open_profiles(q, &a, &d);
    if (!src)
        goto done;
    const schema_entity *pe = a.schema ? schema_entity_find(a.schema, "profiles") : NULL;
    if (!pe) {
        http_error(q, 409, "configuration_invalid", NULL,
                   "no profiles entity to search (`profiles` and its schema)");
        goto done;
    }
    json_t *ids = json_array(), *fields = json_array();
    baton_value v = {.type = BATON_T_STRING, .v.s = {addr, strlen(addr)}};
    int truncated = 0;
    for (size_t i = 0; i < a.conf.nuses; i++) {
        conf_use *u = &a.conf.uses[i];
        const char *f = NULL;
        if (u->kind != BATON_KIND_CHANNEL || !u->group ||
            !config_setting_lookup_string(u->group, "address", &f))
            continue;
        const schema_field *col = schema_field_find(pe, f);
        if (!col || col->type != BATON_T_STRING)
            continue; /* an address through a link: not a profiles column */
        json_t *one = json_string(f);
        size_t k;
        json_t *x;
        int seen = 0;
        json_array_foreach(fields, k, x) seen |= json_equal(x, one);
        if (seen) {
            json_decref(one);
            continue;
        }
        json_array_append_new(fields, one);
        char err[1024];
        json_t *rows = jsource_rows(src, pe, col, &v, MAX_MATCHES + 1, err, sizeof err);
        if (!rows) {
            json_decref(ids);
            json_decref(fields);
            http_error(q, 502, "source_failed", json_pack("{s:s}", "field", f),
                       "reading profiles.%s: %s", f, err);
            goto done;
        }
        json_array_foreach(rows, k, x) add_id(ids, json_object_get(x, pe->key->name));
        json_decref(rows);
    }
    if (json_array_size(ids) > MAX_MATCHES) {
        truncated = 1;
        while (json_array_size(ids) > MAX_MATCHES)
            json_array_remove(ids, json_array_size(ids) - 1);
    }
    http_json(q, 200,
              json_pack("{s:s, s:o, s:o, s:b}", "address", addr, "fields", fields, "profiles", ids,
                        "truncated", truncated));
done:
    jsource_close(src);
    app_close(&a);
    diag_free(&d);
}

/* GET /v1/profiles/ID/record: the profile's row in the profiles source,
 * and per channel its address, consent and suppression — what decides
 * whether a message to it is sent. */
void http_profile_record(http_req *q)
{
    const char *id = q->seg[2];
    app a;
    diag d;
    store st;
    int have_st = 0;
    jsource *src = open_profiles(q, &a, &d);
    if (!src)
        goto done;
    if (http_open_store(q, &st) != 0)
        goto done;
    have_st = 1;
    json_t *row = jsource_profile(src, id);
    json_t *chans = json_array();
    for (size_t i = 0; i < a.conf.nuses; i++) {
        conf_use *u = &a.conf.uses[i];
        if (u->kind != BATON_KIND_CHANNEL || !u->group)
            continue;
        const char *af = NULL, *cf = NULL;
        config_setting_lookup_string(u->group, "address", &af);
        config_setting_lookup_string(u->group, "consent", &cf);
        json_t *addr = af && row ? json_object_get(row, af) : NULL;
        json_t *cons = cf && row ? json_object_get(row, cf) : NULL;
        char why[256] = "";
        int sup = dispatch_suppressed(&st, u->name, id,
                                      json_is_string(addr) ? json_string_value(addr) : NULL, why,
                                      sizeof why);
        json_array_append_new(
            chans,
            json_pack("{s:s, s:b, s:s?, s:O?, s:s?, s:O?, s:o}", "channel", u->name, "enabled",
                      u->enabled, "address_field", af, "address", addr ? addr : NULL,
                      "consent_field", cf, "consent", cons ? cons : NULL, "suppressed",
                      sup > 0 ? json_string(*why ? why : "suppressed") : json_null()));
    }
    /* the links GET .../links/LINK reads: one-to-many (orders), then many-to-one */
    json_t *links = json_array();
    const schema_entity *pe = a.schema ? schema_entity_find(a.schema, "profiles") : NULL;
    for (size_t i = 0; pe && i < pe->nreverse; i++)
        json_array_append_new(links, json_pack("{s:s, s:s, s:b}", "name", pe->reverse[i]->reverse,
                                               "entity", pe->reverse[i]->from->name, "many", 1));
    for (size_t i = 0; pe && i < pe->nlinks; i++)
        json_array_append_new(links, json_pack("{s:s, s:s, s:b}", "name", pe->links[i].name,
                                               "entity", pe->links[i].to->name, "many", 0));
    http_json(q, 200,
              json_pack("{s:s, s:o, s:o, s:o}", "profile", id, "fields", row ? row : json_null(),
                        "channels", chans, "links", links));
done:
    if (have_st)
        store_close(&st);
    jsource_close(src);
    app_close(&a);
    diag_free(&d);
}

/* The value v of a key as the column col holds it: the text as it is, or
 * the integer it spells. 0, or -1 when it spells none. */
static int key_value(const schema_field *col, const char *text, baton_value *v)
{
    if (col->type == BATON_T_INT) {
        char *end;
        errno = 0;
        long long n = strtoll(text, &end, 10);
        if (!*text || *end || errno)
            return -1;
        *v = (baton_value){.type = BATON_T_INT, .v.i = n};
        return 0;
    }
    *v = (baton_value){.type = BATON_T_STRING, .v.s = {text, strlen(text)}};
    return 0;
}

/* GET /v1/profiles/ID/links/LINK?limit=N: the rows a link of the profiles
 * entity reaches from the profile, read through the profiles source (one
 * bound, quoted, LIMITed query: scope/source): a one-to-many link (orders:
 * rows whose via is the profile's key, in key order) or a many-to-one one
 * (store: the row the profile's via names). */
void http_profile_links(http_req *q)
{
    const char *id = q->seg[2], *name = q->seg[4], *limit = http_arg(q, "limit");
    long n = 20;
    if (limit) {
        char *end;
        n = strtol(limit, &end, 10);
        if (!*limit || *end || n < 1 || n > MAX_LINKED) {
            http_error(q, 400, "bad_request", json_pack("{s:s}", "field", "limit"),
                       "limit: expected 1 to %d, got '%s'", MAX_LINKED, limit);
            return;
        }
    }
    app a;
    diag d;
    json_t *row = NULL;
    jsource *src = open_profiles(q, &a, &d);
    if (!src)
        goto done;
    const schema_entity *pe = a.schema ? schema_entity_find(a.schema, "profiles") : NULL;
    const schema_link *many = pe ? schema_reverse_find(pe, name) : NULL;
    const schema_link *one = pe && !many ? schema_link_find(pe, name) : NULL;
    if (!many && !one) {
        json_t *names = json_array();
        for (size_t i = 0; pe && i < pe->nreverse; i++)
            json_array_append_new(names, json_string(pe->reverse[i]->reverse));
        for (size_t i = 0; pe && i < pe->nlinks; i++)
            json_array_append_new(names, json_string(pe->links[i].name));
        http_error(q, 404, "not_found", json_pack("{s:s, s:o}", "link", name, "links", names),
                   "profiles has no link '%s'", name);
        goto done;
    }
    const schema_entity *ent = many ? many->from : one->to;
    const schema_field *col = many ? many->via : ent->key;
    baton_value v;
    /* many-to-one: the profile's own via field names the row */
    json_t *via = NULL;
    if (one) {
        row = jsource_profile(src, id);
        via = row ? json_object_get(row, one->via->name) : NULL;
    }
    char num[32];
    const char *text = many ? id : json_is_string(via) ? json_string_value(via) : NULL;
    if (one && json_is_integer(via)) {
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(via));
        text = num;
    }
    json_t *rows = NULL;
    char err[1024];
    if (!text || !col || key_value(col, text, &v) != 0) {
        rows = json_array(); /* no row to reach: no profile, a null via, or an id of another type */
    } else if (!(rows = jsource_rows(src, ent, col, &v, (size_t)n + 1, err, sizeof err))) {
        http_error(q, 502, "source_failed", json_pack("{s:s}", "link", name), "reading %s: %s",
                   ent->name, err);
        goto done;
    }
    int truncated = json_array_size(rows) > (size_t)n;
    while (json_array_size(rows) > (size_t)n)
        json_array_remove(rows, json_array_size(rows) - 1);
    json_t *fields = json_array();
    for (size_t i = 0; i < ent->nfields; i++)
        json_array_append_new(fields, json_string(ent->fields[i].name));
    http_json(q, 200,
              json_pack("{s:s, s:s, s:s, s:b, s:o, s:o, s:b}", "profile", id, "link", name,
                        "entity", ent->name, "many", many != NULL, "fields", fields, "rows", rows,
                        "truncated", truncated));
done:
    json_decref(row);
    jsource_close(src);
    app_close(&a);
    diag_free(&d);
}
