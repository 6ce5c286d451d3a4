/* daemon/http_journeys — GET /v1/journeys[/NAME] (`journey status
 * --json`), GET /v1/journeys/NAME/dead_letters[?node=ID] (the profiles
 * that failed at its nodes), POST /v1/journeys/NAME/pause|resume|close
 * (`baton journey pause NAME`...) and GET /v1/profiles/ID (`baton profile
 * ID --json`). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/http_int.h"
#include "base/log.h"
#include "journey/engine.h"
#include "journey/report.h"

static json_t *one(http_req *q, store *st, const journey *j)
{
    char err[512];
    int dead_err = 0;
    return jreport_journey(st, j, q->env->a->conf.data_dir, &dead_err, err, sizeof err);
}

void http_journeys_list(http_req *q)
{
    store st;
    if (http_open_store(q, &st) != 0)
        return;
    json_t *list = json_array();
    for (size_t i = 0; i < q->env->njs; i++)
        json_array_append_new(list, one(q, &st, q->env->js[i]));
    store_close(&st);
    http_json(q, 200, json_pack("{s:o}", "journeys", list));
}

/* The running journey the path names, or NULL after answering 404. */
static const journey *named(http_req *q)
{
    const char *name = q->seg[2];
    for (size_t i = 0; i < q->env->njs; i++)
        if (!strcmp(q->env->js[i]->name, name))
            return q->env->js[i];
    http_error(q, 404, "not_found", json_pack("{s:s}", "journey", name),
               "no journey named '%s' is running", name);
    return NULL;
}

void http_journey_get(http_req *q)
{
    const journey *j = named(q);
    if (!j)
        return;
    store st;
    if (http_open_store(q, &st) != 0)
        return;
    json_t *o = one(q, &st, j);
    store_close(&st);
    http_json(q, 200, o);
}

void http_journey_dead_letters(http_req *q)
{
    const journey *j = named(q);
    if (!j)
        return;
    const char *node = http_arg(q, "node"), *limit = http_arg(q, "limit");
    long n = 20;
    if (limit) {
        char *end;
        n = strtol(limit, &end, 10);
        if (!*limit || *end || n < 1 || n > 1000) {
            http_error(q, 400, "bad_request", json_pack("{s:s}", "field", "limit"),
                       "limit: expected 1 to 1000, got '%s'", limit);
            return;
        }
    }
    if (node) {
        size_t i = 0;
        while (i < j->nnodes && strcmp(j->nodes[i].id, node))
            i++;
        if (i == j->nnodes) {
            json_t *ids = json_array();
            for (i = 0; i < j->nnodes; i++)
                json_array_append_new(ids, json_string(j->nodes[i].id));
            http_error(q, 404, "not_found",
                       json_pack("{s:s, s:s, s:o}", "journey", j->name, "node", node, "nodes", ids),
                       "journey '%s' has no node '%s'", j->name, node);
            return;
        }
    }
    store st;
    if (http_open_store(q, &st) != 0)
        return;
    json_t *o = jreport_dead_letters(&st, j, node, (size_t)n);
    store_close(&st);
    http_json(q, 200, o);
}

/* The state goes to the state store, as the command line writes it; the
 * engine reads it in its next transaction (within a second). */
void http_journey_control(http_req *q)
{
    const journey *j = named(q);
    if (!j)
        return;
    const char *verb = q->seg[3];
    const char *state = !strcmp(verb, "pause")    ? "paused"
                        : !strcmp(verb, "resume") ? "running"
                                                  : "closed";
    store st;
    if (http_open_store(q, &st) != 0)
        return;
    char err[512];
    const char *was = jengine_control_get(&st, j->name);
    if (jengine_control_set(&st, j->name, state, (int64_t)time(NULL) * 1000, err, sizeof err)) {
        store_close(&st);
        log_error("http: journey %s %s: %s", verb, j->name, err);
        http_error(q, 503, "unavailable", NULL, "the state store cannot be written");
        return;
    }
    store_close(&st);
    log_info("http: token '%s': journey %s: %s (was %s)", q->token, j->name, state, was);
    http_json(q, 200,
              json_pack("{s:s, s:s, s:s}", "journey", j->name, "control", state, "was", was));
}

void http_profile_get(http_req *q)
{
    store st;
    if (http_open_store(q, &st) != 0)
        return;
    json_t *o = jreport_profile(&st, q->seg[2]);
    store_close(&st);
    http_json(q, 200, o);
}
