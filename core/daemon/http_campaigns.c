/* daemon/http_campaigns — GET /v1/campaigns[/NAME], GET .../plan
 * (`campaign plan --json`), GET .../runs[/ID] (`campaign runs --json`)
 * and POST .../runs (a run, answered with its id as soon as it has one).
 *
 * Plans and runs open an app of their own from the configuration file,
 * as serve's scheduler does (their own connections to the data sources:
 * campaign SQL never shares one with journeys), on a thread of their own;
 * runs send through serve's dispatchers and record through its store.
 * The connection waits suspended, never a pool thread. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/mem.h"
#include "campaign/history.h"
#include "campaign/report.h"
#include "daemon/http_int.h"

/* The configured file of the campaign named in the path, or NULL after
 * answering 404. */
static char *campaign_file(http_req *q)
{
    const char *name = q->seg[2];
    char *file = http_name_ok(name) ? campaign_file_named(q->env->a, name) : NULL;
    if (!file)
        http_error(q, 404, "not_found", json_pack("{s:s}", "campaign", name),
                   "no campaign named '%s' in the configured campaigns", name);
    return file;
}

/* diag's errors as [{"file", "line", "message"}]. */
static json_t *diag_json(const diag *d)
{
    json_t *l = json_array();
    for (size_t i = 0; i < d->n; i++)
        if (!d->v[i].warning)
            json_array_append_new(l, json_pack("{s:s?, s:i, s:s}", "file", d->v[i].file, "line",
                                               d->v[i].line, "message", d->v[i].msg));
    return l;
}

static const char *first_msg(const diag *d)
{
    for (size_t i = 0; i < d->n; i++)
        if (!d->v[i].warning)
            return d->v[i].msg;
    return "unknown error";
}

void http_campaigns_list(http_req *q)
{
    store st;
    if (http_open_store(q, &st) != 0)
        return;
    char err[256];
    int hist = history_init(&st, err, sizeof err) == 0;
    json_t *o = campaign_list_json(q->env->a, hist ? &st : NULL);
    store_close(&st);
    http_json(q, 200, o);
}

void http_campaign_get(http_req *q)
{
    char *file = campaign_file(q);
    if (!file)
        return;
    store st;
    if (http_open_store(q, &st) != 0) {
        free(file);
        return;
    }
    char err[256];
    int hist = history_init(&st, err, sizeof err) == 0;
    json_t *all = campaign_list_json(q->env->a, hist ? &st : NULL);
    store_close(&st);
    json_t *hit = NULL, *v;
    size_t i;
    json_array_foreach(json_object_get(all, "campaigns"), i,
                       v) if (!strcmp(json_string_value(json_object_get(v, "file")), file)) hit =
        json_incref(v);
    json_decref(all);
    free(file);
    if (hit)
        http_json(q, 200, hit);
    else
        http_error(q, 404, "not_found", NULL, "no campaign named '%s'", q->seg[2]);
}

static int64_t run_id_of(http_req *q, const char *s)
{
    char *end;
    long long id = strtoll(s, &end, 10);
    if (!*s || *end || id <= 0) {
        http_error(q, 404, "not_found", json_pack("{s:s}", "run", s),
                   "no run '%s' (run ids are "
                   "positive integers)",
                   s);
        return -1;
    }
    return id;
}

static void runs_answer(http_req *q, int64_t id)
{
    char *file = campaign_file(q);
    if (!file)
        return;
    free(file);
    store st;
    if (http_open_store(q, &st) != 0)
        return;
    char err[256];
    json_t *o = history_init(&st, err, sizeof err) == 0 ? campaign_runs_json(&st, q->seg[2], id)
                                                        : json_pack("{s:[]}", "runs");
    store_close(&st);
    if (id == 0) {
        http_json(q, 200, o);
        return;
    }
    json_t *r = json_array_get(json_object_get(o, "runs"), 0);
    if (!r) {
        json_decref(o);
        http_error(q, 404, "not_found",
                   json_pack("{s:s, s:I}", "campaign", q->seg[2], "run", (json_int_t)id),
                   "campaign %s has no run %lld", q->seg[2], (long long)id);
        return;
    }
    json_incref(r);
    json_decref(o);
    http_json(q, 200, r);
}

void http_campaign_runs(http_req *q)
{
    runs_answer(q, 0);
}

void http_campaign_run_get(http_req *q)
{
    int64_t id = run_id_of(q, q->seg[4]);
    if (id > 0)
        runs_answer(q, id);
}

/* ------------------------------------------------------------------ */
/* Plans                                                               */
/* ------------------------------------------------------------------ */

typedef struct plan_job {
    http_req *q;
    char *file;
} plan_job;

static void *plan_main(void *arg)
{
    plan_job *j = arg;
    http_req *q = j->q;
    pthread_setname_np(pthread_self(), "baton-http-plan");
    app a;
    diag d;
    diag_init(&d);
    if (app_open(&a, q->env->config, APP_INIT | APP_SECONDARY, &d) != 0) {
        http_error(q, 409, "configuration_invalid", diag_json(&d),
                   "the configuration has errors: %s", first_msg(&d));
    } else {
        json_t *out = NULL;
        char err[2048];
        int rc = campaign_plan_file(&a, j->file, &out, &d, err, sizeof err);
        if (rc == 0)
            http_json(q, 200, out);
        else if (rc == -1)
            http_error(q, 409, "campaign_invalid", diag_json(&d), "campaign %s has errors: %s",
                       q->seg[2], first_msg(&d));
        else
            http_error(q, 500, "plan_failed", NULL, "the plan failed: %s", err);
    }
    app_close(&a);
    diag_free(&d);
    free(j->file);
    free(j);
    http_async_done(q);
    return NULL;
}

void http_campaign_plan(http_req *q)
{
    char *file = campaign_file(q);
    if (!file)
        return;
    plan_job *j = xcalloc(1, sizeof *j);
    j->q = q;
    j->file = file;
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    http_async_begin(q);
    if (pthread_create(&t, &at, plan_main, j) != 0) {
        free(j->file);
        free(j);
        http_error(q, 503, "unavailable", NULL, "cannot start the plan (no thread)");
        http_async_done(q);
    }
    pthread_attr_destroy(&at);
}

/* ------------------------------------------------------------------ */
/* Runs                                                                */
/* ------------------------------------------------------------------ */

typedef struct run_job {
    http_server *srv;
    const http_env *env; /* held until the run ends */
    http_req *q;         /* until answered */
    char *name, *file;
    int dry_run;
    int resume; /* after a signal: no one waits for the answer */
    char **proof;
    size_t nproof;
    json_t *params; /* the validated parameters (an object) */
} run_job;

static void run_started(void *ud, int64_t run)
{
    run_job *j = ud;
    if (!j->q)
        return;
    http_req *q = j->q;
    json_t *o = json_pack("{s:I, s:s, s:s, s:b}", "run", (json_int_t)run, "campaign", j->name,
                          "status", "running", "dry_run", j->dry_run || j->nproof);
    snprintf(q->location, sizeof q->location, "/v1/campaigns/%.20s/runs/%lld", j->name,
             (long long)run);
    if (strlen(j->name) <= 20)
        json_object_set_new(o, "href", json_string(q->location));
    else
        q->location[0] = 0;
    http_json(q, 202, o);
    j->q = NULL;
    log_info("http: campaign %s: run %lld started%s (token %s)", j->name, (long long)run,
             j->dry_run  ? " (dry run)"
             : j->nproof ? " (proof)"
                         : "",
             q->token);
    http_async_done(q);
}

static void *run_main(void *arg)
{
    run_job *j = arg;
    pthread_setname_np(pthread_self(), "baton-http-run");
    app a;
    diag d;
    diag_init(&d);
    act_registry reg;
    int have_reg = 0;
    if (app_open(&a, j->env->config, APP_INIT | APP_SECONDARY, &d) == 0) {
        have_reg = 1;
        if (act_registry_load(&reg, &a, &d) == 0) {
            camp_run_opts o = {.trigger = j->resume ? "signal" : "http",
                               .resume = j->resume,
                               .dry_run = j->dry_run,
                               .proof = j->proof,
                               .nproof = j->nproof,
                               .dispatcher_for = j->env->dispatcher_for,
                               .dispatcher_ud = j->env->dispatcher_ud,
                               .store = j->env->st,
                               .on_run = run_started,
                               .on_run_ud = j,
                               .params = j->params};
            campaign_run_file(&a, &reg, j->file, &o, &d);
        }
    }
    if (j->q) { /* it never started */
        http_req *q = j->q;
        const char *m = first_msg(&d);
        if (strstr(m, "is being run by another process"))
            http_error(q, 409, "run_in_progress", diag_json(&d), "%s", m);
        else
            http_error(q, 409, "campaign_invalid", diag_json(&d), "campaign %s did not start: %s",
                       j->name, m);
        j->q = NULL;
        http_async_done(q);
    } else if (j->resume && strstr(first_msg(&d), "is being run by another process")) {
        /* after a signal: the run in progress goes on with it */
        log_info("http: campaign %s: %s", j->name, first_msg(&d));
    } else if (d.errors) {
        log_error("http: campaign %s: %s", j->name, first_msg(&d));
    }
    if (have_reg)
        act_registry_free(&reg);
    app_close(&a);
    diag_free(&d);
    http_env_release(j->srv);
    for (size_t i = 0; i < j->nproof; i++)
        free(j->proof[i]);
    free(j->proof);
    json_decref(j->params);
    free(j->name);
    free(j->file);
    free(j);
    return NULL;
}

/* The parameters against the campaign's declarations (require: every one
 * without a default given): 1 after answering 400 naming the bad ones. */
static int params_refused(http_req *q, const char *file, const json_t *params, int require)
{
    json_t *none = json_object();
    campaign c;
    diag d;
    diag_init(&d);
    json_t *problems = NULL;
    if (campaign_parse(&c, file, &d) == 0)
        problems = campaign_params_check(&c, params ? params : none, require);
    json_decref(none);
    campaign_free(&c);
    diag_free(&d);
    if (!problems)
        return 0;
    buf names;
    buf_init(&names);
    const char *kinds[] = {"unknown", "mistyped", "missing"};
    for (int k = 0; k < 3; k++) {
        size_t n;
        json_t *x;
        json_array_foreach(json_object_get(problems, kinds[k]), n, x)
        {
            const char *nm = json_is_string(x) ? json_string_value(x)
                                               : json_string_value(json_object_get(x, "name"));
            buf_addf(&names, "%s%s %s", names.len ? ", " : "", kinds[k], nm);
            if (!json_is_string(x))
                buf_addf(&names, " (a %s)", json_string_value(json_object_get(x, "type")));
        }
    }
    http_error(q, 400, "bad_parameters", problems, "campaign %s: parameters: %s", q->seg[2],
               names.data ? names.data : "");
    buf_free(&names);
    return 1;
}

/* A body that is a JSON object (empty: {}), or NULL after answering 400. */
static json_t *body_object(http_req *q, const char *shape)
{
    json_error_t je;
    json_t *body = q->body.len ? json_loadb(q->body.data, q->body.len, 0, &je) : json_object();
    if (!body) {
        http_error(q, 400, "bad_json",
                   json_pack("{s:i, s:i, s:i}", "offset", je.position > 0 ? je.position - 1 : 0,
                             "line", je.line, "column", je.column),
                   "malformed JSON at byte %d (line %d, column %d): %s",
                   je.position > 0 ? je.position - 1 : 0, je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(body)) {
        http_error(q, 400, "bad_request", NULL, "the body must be an object %s", shape);
        json_decref(body);
        return NULL;
    }
    return body;
}

static void run_job_free(run_job *j)
{
    for (size_t i = 0; i < j->nproof; i++)
        free(j->proof[i]);
    free(j->proof);
    json_decref(j->params);
    free(j->name);
    free(j->file);
    free(j);
}

static int run_job_start(http_req *q, run_job *j)
{
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &at, run_main, j);
    pthread_attr_destroy(&at);
    if (rc != 0) {
        http_env_release(q->srv);
        run_job_free(j);
        return -1;
    }
    return 0;
}

void http_campaign_run_post(http_req *q)
{
    char *file = campaign_file(q);
    if (!file)
        return;
    json_t *body = body_object(q, "{\"parameters\": {...}, \"dry_run\": false, \"proof\": [...]}");
    if (!body) {
        free(file);
        return;
    }
    run_job *j = NULL;
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "parameters") && strcmp(key, "dry_run") && strcmp(key, "proof")) {
            http_error(q, 400, "bad_request", json_pack("{s:s}", "field", key),
                       "unknown field '%s' (parameters, dry_run, proof)", key);
            goto fail;
        }
    }
    json_t *dry = json_object_get(body, "dry_run"), *proof = json_object_get(body, "proof"),
           *params = json_object_get(body, "parameters");
    if (dry && !json_is_boolean(dry)) {
        http_error(q, 400, "bad_request", json_pack("{s:s}", "field", "dry_run"),
                   "dry_run must be true or false");
        goto fail;
    }
    if (proof && (!json_is_array(proof) || json_array_size(proof) > 20)) {
        http_error(q, 400, "bad_request", json_pack("{s:s}", "field", "proof"),
                   "proof must be a list of at most 20 addresses");
        goto fail;
    }
    size_t i;
    json_array_foreach(proof, i, v) if (!json_is_string(v) || !json_string_length(v) ||
                                        json_string_length(v) > 320)
    {
        http_error(q, 400, "bad_request",
                   json_pack("{s:s, s:i}", "field", "proof", "index", (int)i),
                   "proof[%zu] must be an address (a non-empty string)", i);
        goto fail;
    }
    if (params && !json_is_object(params)) {
        http_error(q, 400, "bad_request", json_pack("{s:s}", "field", "parameters"),
                   "parameters must be an object {\"NAME\": value}");
        goto fail;
    }
    if (params_refused(q, file, params, 1))
        goto fail;
    j = xcalloc(1, sizeof *j);
    j->srv = q->srv;
    j->env = http_env_hold(q->srv);
    j->q = q;
    j->name = xstrdup(q->seg[2]);
    j->file = file;
    file = NULL;
    j->dry_run = json_is_true(dry);
    j->nproof = json_array_size(proof);
    j->proof = xcalloc(j->nproof + 1, sizeof *j->proof);
    json_array_foreach(proof, i, v) j->proof[i] = xstrdup(json_string_value(v));
    j->params = params ? json_incref(params) : json_object();
    json_decref(body);
    body = NULL;
    http_async_begin(q);
    if (run_job_start(q, j) != 0) {
        http_error(q, 503, "unavailable", NULL, "cannot start the run (no thread)");
        http_async_done(q);
    }
    return;
fail:
    json_decref(body);
    free(file);
}

/* POST /v1/campaigns/NAME/runs/ID/signal {"parameters": {...}}: the
 * signal recorded (history_signal), then the run resumed on a thread of
 * its own; 202 once recorded. */
void http_campaign_signal_post(http_req *q)
{
    int64_t id = run_id_of(q, q->seg[4]);
    if (id <= 0)
        return;
    char *file = campaign_file(q);
    if (!file)
        return;
    json_t *body = body_object(q, "{\"parameters\": {...}}"), *params = NULL;
    const char *key;
    json_t *v;
    if (!body)
        goto out;
    json_object_foreach(body, key, v) if (strcmp(key, "parameters"))
    {
        http_error(q, 400, "bad_request", json_pack("{s:s}", "field", key),
                   "unknown field '%s' (parameters)", key);
        goto out;
    }
    params = json_object_get(body, "parameters");
    if (params && !json_is_object(params)) {
        http_error(q, 400, "bad_request", json_pack("{s:s}", "field", "parameters"),
                   "parameters must be an object {\"NAME\": value}");
        goto out;
    }
    if (params_refused(q, file, params, 0))
        goto out;
    campaign c;
    diag d;
    diag_init(&d);
    json_t *sig = NULL, *none = json_object();
    char err[512];
    int rc = -3;
    if (campaign_parse(&c, file, &d) == 0 && history_init(q->env->st, err, sizeof err) == 0)
        rc = history_signal(q->env->st, &c, id, params ? params : none, (int64_t)time(NULL), &sig,
                            err, sizeof err);
    json_decref(none);
    campaign_free(&c);
    if (rc == -2)
        http_error(q, 404, "not_found",
                   json_pack("{s:s, s:I}", "campaign", q->seg[2], "run", (json_int_t)id), "%s",
                   err);
    else if (rc == -1)
        http_error(q, 409, "not_waiting",
                   json_pack("{s:s, s:I}", "campaign", q->seg[2], "run", (json_int_t)id), "%s",
                   err);
    else if (rc != 0)
        http_error(q, 409, "campaign_invalid", diag_json(&d), "campaign %s: %s", q->seg[2],
                   d.n ? first_msg(&d) : err);
    diag_free(&d);
    if (rc != 0)
        goto out;
    log_info("http: campaign %s: run %lld signaled (token %s)", q->seg[2], (long long)id, q->token);
    run_job *j = xcalloc(1, sizeof *j);
    j->srv = q->srv;
    j->env = http_env_hold(q->srv);
    j->name = xstrdup(q->seg[2]);
    j->file = xstrdup(file);
    j->resume = 1;
    j->proof = xcalloc(1, sizeof *j->proof);
    j->params = json_object();
    int started = run_job_start(q, j) == 0;
    snprintf(q->location, sizeof q->location, "/v1/campaigns/%.20s/runs/%lld", q->seg[2],
             (long long)id);
    json_t *o = json_pack("{s:I, s:s, s:o, s:s}", "run", (json_int_t)id, "campaign", q->seg[2],
                          "signaled", sig, "status", started ? "resuming" : "waiting");
    if (strlen(q->seg[2]) <= 20)
        json_object_set_new(o, "href", json_string(q->location));
    else
        q->location[0] = 0;
    http_json(q, 202, o);
out:
    json_decref(body);
    free(file);
}
