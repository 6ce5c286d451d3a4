/* daemon/http_console — what the web console needs beyond the read
 * endpoints: the token's own scopes, the text of a campaign or journey
 * file with its version, a text checked as you type, a save (checked,
 * refused with the difference when the file changed since it was read,
 * the replaced version kept and restorable, then applied like SIGHUP),
 * journey test on posted events, a channel switched on or off in the
 * configuration, and the key maps the editor's forms are made from. The
 * logic lives in the stages that own it (config/cfgfile, campaign/edit,
 * journey/test); this file only maps HTTP onto it. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/mem.h"
#include "base/timefmt.h"
#include "campaign/engine.h"
#include "config/cfgfile.h"
#include "daemon/http_int.h"
#include "journey/test.h"

static json_t *scopes_json(unsigned s)
{
    json_t *a = json_array();
    if (s & HTTP_SCOPE_READ)
        json_array_append_new(a, json_string("read"));
    if (s & HTTP_SCOPE_CAMPAIGNS)
        json_array_append_new(a, json_string("campaigns:run"));
    if (s & HTTP_SCOPE_EVENTS)
        json_array_append_new(a, json_string("events:write"));
    if (s & HTTP_SCOPE_ADMIN)
        json_array_append_new(a, json_string("admin"));
    return a;
}

void http_session_get(http_req *q)
{
    http_json(q, 200, json_pack("{s:s, s:o}", "name", q->token, "scopes", scopes_json(q->scopes)));
}

/* The body's JSON object, or NULL after answering 400. */
static json_t *body_object(http_req *q)
{
    json_error_t je;
    json_t *o = json_loadb(q->body.data ? q->body.data : "", q->body.len, 0, &je);
    if (!o || !json_is_object(o)) {
        http_error(q, 400, "bad_request",
                   json_pack("{s:i, s:i, s:i}", "offset", je.position, "line", je.line, "column",
                             je.column),
                   "the body must be a JSON object%s%s", o ? "" : ": ", o ? "" : je.text);
        json_decref(o);
        return NULL;
    }
    return o;
}

/* A string member of o, or NULL after answering 400 naming it. */
static const char *member_string(http_req *q, json_t *o, const char *key, int required)
{
    json_t *v = json_object_get(o, key);
    if (!v && !required)
        return NULL;
    if (!json_is_string(v)) {
        http_error(q, 400, "bad_request", json_pack("{s:s}", "field", key), "'%s' must be a string",
                   key);
        return NULL;
    }
    return json_string_value(v);
}

typedef enum { K_CAMPAIGN, K_JOURNEY } kind;
static const char *const kind_dir[] = {"campaigns", "journeys"};

/* The file of the campaign or journey named by seg[2], or NULL after 404. */
static char *file_of(http_req *q, kind k)
{
    const char *name = q->seg[2];
    if (!http_name_ok(name)) {
        http_error(q, 404, "not_found", NULL, "no %s named '%s'",
                   k == K_CAMPAIGN ? "campaign" : "journey", name);
        return NULL;
    }
    if (k == K_CAMPAIGN) {
        diag d;
        diag_init(&d);
        char *f = camp_locate(q->env->a, name, &d);
        diag_free(&d);
        if (!f)
            http_error(q, 404, "not_found", json_pack("{s:s}", "campaign", name),
                       "no campaign named '%s'", name);
        return f;
    }
    for (size_t i = 0; i < q->env->njs; i++)
        if (!strcmp(q->env->js[i]->name, name))
            return xstrdup(q->env->js[i]->file);
    http_error(q, 404, "not_found", json_pack("{s:s}", "journey", name), "no journey named '%s'",
               name);
    return NULL;
}

static json_t *messages_json(const diag *d)
{
    json_t *a = json_array();
    for (size_t i = 0; i < d->n; i++) {
        char *m = diag_format(&d->v[i]);
        json_array_append_new(a, json_pack("{s:s, s:i, s:b}", "message", m, "line", d->v[i].line,
                                           "warning", d->v[i].warning));
        free(m);
    }
    return a;
}

/* Check text as file; the messages in d. -1 after answering 503 when the
 * configuration cannot be opened. */
static int check_text(http_req *q, kind k, const char *file, const char *text, size_t n, diag *d)
{
    app a;
    diag ad;
    diag_init(&ad);
    if (app_open(&a, q->env->config, APP_INIT | APP_SECONDARY, &ad) != 0) {
        http_error(q, 503, "unavailable", messages_json(&ad),
                   "the configuration could not be opened to check the text");
        app_close(&a);
        diag_free(&ad);
        return -1;
    }
    diag_free(&ad);
    if (k == K_CAMPAIGN)
        campaign_check_text(&a, file, text, n, d);
    else
        journey_check_text(&a, file, text, n, d);
    app_close(&a);
    return 0;
}

static void file_get(http_req *q, kind k)
{
    char *file = file_of(q, k);
    if (!file)
        return;
    char *text, err[512], ver[CFGFILE_VERSION_LEN];
    size_t n;
    if (cfgfile_read(file, &text, &n, ver, err, sizeof err) != 0) {
        http_error(q, 500, "internal", NULL, "%s", err);
        free(file);
        return;
    }
    http_json(q, 200,
              json_pack("{s:s, s:s, s:s%, s:s}", "name", q->seg[2], "file", file, "text", text, n,
                        "version", ver));
    free(text);
    free(file);
}

void http_campaign_file_get(http_req *q)
{
    file_get(q, K_CAMPAIGN);
}
void http_journey_file_get(http_req *q)
{
    file_get(q, K_JOURNEY);
}

static void check_post(http_req *q, kind k)
{
    json_t *b = body_object(q);
    if (!b)
        return;
    const char *text = member_string(q, b, "text", 1);
    char *file = text ? file_of(q, k) : NULL;
    if (file) {
        diag d;
        diag_init(&d);
        if (check_text(q, k, file, text, json_string_length(json_object_get(b, "text")), &d) == 0)
            http_json(q, 200,
                      json_pack("{s:b, s:o}", "ok", d.errors == 0, "messages", messages_json(&d)));
        diag_free(&d);
    }
    free(file);
    json_decref(b);
}

void http_campaign_check(http_req *q)
{
    check_post(q, K_CAMPAIGN);
}
void http_journey_check(http_req *q)
{
    check_post(q, K_JOURNEY);
}

/* Ask serve to re-read its configuration, exactly as `kill -HUP` does
 * (the reload waits for this request to end: it must not wait for it). */
static void request_reload(const char *why)
{
    log_info("http: %s: reloading the configuration", why);
    kill(getpid(), SIGHUP);
}

/* Check, then save text over file (base: the version it was read at,
 * NULL to replace whatever is there). Answers. */
static void save_checked(http_req *q, kind k, const char *file, const char *text, size_t n,
                         const char *base)
{
    diag d;
    diag_init(&d);
    if (check_text(q, k, file, text, n, &d) != 0)
        goto done;
    if (d.errors) {
        http_error(q, 422, "check_failed", json_pack("{s:o}", "messages", messages_json(&d)),
                   "the text has %zu error(s): nothing was saved", d.errors);
        goto done;
    }
    cfgfile_saved s;
    char err[512];
    int rc = cfgfile_save(file, q->env->a->conf.data_dir, kind_dir[k], q->seg[2], text, n, base, &s,
                          err, sizeof err);
    if (rc == 1) {
        http_error(q, 409, "conflict",
                   json_pack("{s:s, s:s}", "current", s.current, "version", s.current_version),
                   "%s changed since it was read (version %s, now %s): nothing was saved", file,
                   base, s.current_version);
        free(s.current);
        goto done;
    }
    if (rc != 0) {
        http_error(q, 500, "internal", NULL, "%s", err);
        goto done;
    }
    char why[256];
    snprintf(why, sizeof why, "token '%s' saved %s", q->token, file);
    request_reload(why);
    http_json(q, 200,
              json_pack("{s:s, s:s, s:s, s:o}", "file", file, "version", s.version, "previous",
                        s.previous, "messages", messages_json(&d)));
done:
    diag_free(&d);
}

static void file_put(http_req *q, kind k)
{
    json_t *b = body_object(q);
    if (!b)
        return;
    const char *text = member_string(q, b, "text", 1);
    const char *base = text ? member_string(q, b, "version", 1) : NULL;
    char *file = base ? file_of(q, k) : NULL;
    if (file)
        save_checked(q, k, file, text, json_string_length(json_object_get(b, "text")), base);
    free(file);
    json_decref(b);
}

void http_campaign_file_put(http_req *q)
{
    file_put(q, K_CAMPAIGN);
}
void http_journey_file_put(http_req *q)
{
    file_put(q, K_JOURNEY);
}

static void versions_get(http_req *q, kind k)
{
    char *file = file_of(q, k);
    if (!file)
        return;
    free(file);
    http_json(q, 200, cfgfile_versions(q->env->a->conf.data_dir, kind_dir[k], q->seg[2]));
}

void http_campaign_versions(http_req *q)
{
    versions_get(q, K_CAMPAIGN);
}
void http_journey_versions(http_req *q)
{
    versions_get(q, K_JOURNEY);
}

static void restore_post(http_req *q, kind k)
{
    char *file = file_of(q, k);
    if (!file)
        return;
    char *text, err[512];
    size_t n;
    if (cfgfile_version_text(q->env->a->conf.data_dir, kind_dir[k], q->seg[2], q->seg[4], &text, &n,
                             err, sizeof err) != 0) {
        http_error(q, 404, "not_found", json_pack("{s:s}", "version", q->seg[4]), "%s", err);
        free(file);
        return;
    }
    save_checked(q, k, file, text, n, NULL);
    free(text);
    free(file);
}

void http_campaign_restore(http_req *q)
{
    restore_post(q, K_CAMPAIGN);
}
void http_journey_restore(http_req *q)
{
    restore_post(q, K_JOURNEY);
}

/* POST /v1/journeys/NAME/test {"events": "<JSON lines>", "until": TS} */
void http_journey_test(http_req *q)
{
    json_t *b = body_object(q);
    if (!b)
        return;
    const char *events = member_string(q, b, "events", 1);
    const char *until_s = events ? member_string(q, b, "until", 0) : NULL;
    int64_t until = INT64_MAX;
    char *file = NULL, *tmp = NULL;
    app a;
    int have_app = 0;
    diag d;
    diag_init(&d);
    if (!events)
        goto done;
    if (until_s) {
        int64_t s;
        if (timestamp_parse(until_s, strlen(until_s), &s)) {
            http_error(q, 400, "bad_request", json_pack("{s:s}", "field", "until"),
                       "until: '%s' is not an ISO 8601 timestamp", until_s);
            goto done;
        }
        until = s * 1000;
    }
    if (!(file = file_of(q, K_JOURNEY)))
        goto done;
    size_t l = strlen(q->env->a->conf.data_dir) + 32;
    tmp = xmalloc(l);
    snprintf(tmp, l, "%s/.journey-test-XXXXXX", q->env->a->conf.data_dir);
    int fd = mkstemp(tmp);
    size_t n = json_string_length(json_object_get(b, "events"));
    if (fd < 0 || write(fd, events, n) != (ssize_t)n) {
        if (fd >= 0)
            close(fd);
        http_error(q, 500, "internal", NULL, "cannot write the events to a scratch file");
        goto done;
    }
    close(fd);
    have_app = 1;
    if (app_open(&a, q->env->config, APP_SECONDARY, &d) != 0) {
        http_error(q, 503, "unavailable", json_pack("{s:o}", "messages", messages_json(&d)),
                   "the configuration could not be opened");
        goto done;
    }
    journey *j = journey_load(file, &a, &d);
    json_t *out = NULL;
    char err[512] = "";
    if (j && journey_test_run(&a, j, tmp, until, &out, &d, err, sizeof err) == 0) {
        http_json(q, 200, out);
    } else if (d.errors) {
        diag_rename(&d, 0, tmp, "events");
        http_error(q, 400, "bad_request", json_pack("{s:o}", "messages", messages_json(&d)),
                   "journey test: %zu error(s)", d.errors);
        json_decref(out);
    } else {
        http_error(q, 500, "internal", NULL, "journey test: %s", err);
        json_decref(out);
    }
    journey_free(j);
done:
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    if (have_app)
        app_close(&a);
    diag_free(&d);
    free(file);
    json_decref(b);
}

/* PUT /v1/channels/NAME {"enabled": bool}: written into the configuration
 * file (comments and layout kept), checked whole, then applied. */
void http_channel_put(http_req *q)
{
    json_t *b = body_object(q);
    if (!b)
        return;
    json_t *en = json_object_get(b, "enabled");
    const char *name = q->seg[2];
    char *text = NULL, *nu = NULL, *tmp = NULL, err[512];
    diag d;
    diag_init(&d);
    if (!json_is_boolean(en)) {
        http_error(q, 400, "bad_request", json_pack("{s:s}", "field", "enabled"),
                   "'enabled' must be true or false");
        goto done;
    }
    if (!http_name_ok(name) || !conf_find(&q->env->a->conf, "channels", name)) {
        http_error(q, 404, "not_found", json_pack("{s:s}", "channel", name), "no channel '%s'",
                   name);
        goto done;
    }
    const char *cfg = q->env->config;
    size_t n;
    char ver[CFGFILE_VERSION_LEN];
    if (cfgfile_read(cfg, &text, &n, ver, err, sizeof err) != 0 ||
        cfgtext_set_channel_enabled(text, name, json_is_true(en), &nu, err, sizeof err) != 0) {
        http_error(q, 500, "internal", NULL, "%s", err);
        goto done;
    }
    /* the whole configuration as it will be, checked beside the real one */
    if (cfgfile_scratch(cfg, nu, strlen(nu), &tmp, err, sizeof err) != 0) {
        http_error(q, 500, "internal", NULL, "%s", err);
        goto done;
    }
    app a;
    size_t first = d.n;
    app_open(&a, tmp, APP_INIT | APP_SECONDARY, &d);
    app_close(&a);
    unlink(tmp);
    diag_rename(&d, first, tmp, cfg);
    if (d.errors) {
        http_error(q, 422, "check_failed", json_pack("{s:o}", "messages", messages_json(&d)),
                   "the configuration would have %zu error(s): nothing was changed", d.errors);
        goto done;
    }
    cfgfile_saved s;
    int rc = cfgfile_save(cfg, q->env->a->conf.data_dir, "config", "baton.cfg", nu, strlen(nu), ver,
                          &s, err, sizeof err);
    if (rc == 1) {
        free(s.current);
        http_error(q, 409, "conflict", NULL, "%s changed while it was being edited: try again",
                   cfg);
        goto done;
    }
    if (rc != 0) {
        http_error(q, 500, "internal", NULL, "%s", err);
        goto done;
    }
    char why[256];
    snprintf(why, sizeof why, "token '%s' switched channel %s %s", q->token, name,
             json_is_true(en) ? "on" : "off");
    request_reload(why);
    http_json(q, 200,
              json_pack("{s:s, s:b, s:s, s:s}", "channel", name, "enabled", json_is_true(en),
                        "file", cfg, "previous", s.previous));
done:
    if (tmp)
        free(tmp);
    free(text);
    free(nu);
    diag_free(&d);
    json_decref(b);
}

/* POST /v1/campaigns/NAME/preview {"parameters"?}: a dry run (recorded
 * with trigger "preview", nothing delivered) that answers the first three
 * messages of each send, rendered as a delivery renders them. */
void http_campaign_preview(http_req *q)
{
    json_t *b = body_object(q);
    if (!b)
        return;
    const char *key;
    json_t *v;
    json_object_foreach(b, key, v) if (strcmp(key, "parameters"))
    {
        http_error(q, 400, "bad_request", json_pack("{s:s}", "field", key),
                   "unknown field '%s' (parameters)", key);
        json_decref(b);
        return;
    }
    json_t *params = json_object_get(b, "parameters");
    if (params && !json_is_object(params)) {
        http_error(q, 400, "bad_request", json_pack("{s:s}", "field", "parameters"),
                   "parameters must be an object {\"NAME\": value}");
        json_decref(b);
        return;
    }
    char *file = file_of(q, K_CAMPAIGN);
    if (!file) {
        json_decref(b);
        return;
    }
    app a;
    diag d;
    diag_init(&d);
    act_registry reg;
    memset(&reg, 0, sizeof reg);
    json_t *msgs = json_array();
    if (app_open(&a, q->env->config, APP_INIT | APP_SECONDARY, &d) != 0 ||
        act_registry_load(&reg, &a, &d) != 0) {
        http_error(q, 503, "unavailable", json_pack("{s:o}", "messages", messages_json(&d)),
                   "the configuration could not be opened");
    } else {
        camp_run_opts o = {
            .trigger = "preview", .store = q->env->st, .params = params, .preview = msgs};
        int rc = campaign_run_file(&a, &reg, file, &o, &d);
        if (rc == 0)
            http_json(q, 200, json_pack("{s:s, s:O}", "campaign", q->seg[2], "messages", msgs));
        else
            http_error(q, 409, "campaign_invalid",
                       json_pack("{s:o}", "messages", messages_json(&d)),
                       "the preview of %s failed", q->seg[2]);
    }
    json_decref(msgs);
    act_registry_free(&reg);
    app_close(&a);
    diag_free(&d);
    free(file);
    json_decref(b);
}

/* GET /v1/describe: every activity type's keys and the journey nodes'. */
void http_describe(http_req *q)
{
    app a;
    diag d;
    diag_init(&d);
    act_registry reg;
    memset(&reg, 0, sizeof reg);
    if (app_open(&a, q->env->config, APP_INIT | APP_SECONDARY, &d) != 0 ||
        act_registry_load(&reg, &a, &d) != 0) {
        http_error(q, 503, "unavailable", json_pack("{s:o}", "messages", messages_json(&d)),
                   "the plugins could not be loaded");
    } else {
        http_json(q, 200,
                  json_pack("{s:o, s:o}", "activities", act_registry_describe(&reg), "nodes",
                            journey_describe()));
    }
    act_registry_free(&reg);
    app_close(&a);
    diag_free(&d);
}
