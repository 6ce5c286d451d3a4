/* daemon/http_journeys — GET /v1/journeys[/NAME] (`journey status
 * --json`) and GET /v1/profiles/ID (`baton profile ID --json`). */
#include <string.h>

#include "daemon/http_int.h"
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

void http_journey_get(http_req *q)
{
    const char *name = q->seg[2];
    const journey *j = NULL;
    for (size_t i = 0; i < q->env->njs && !j; i++)
        if (!strcmp(q->env->js[i]->name, name))
            j = q->env->js[i];
    if (!j) {
        http_error(q, 404, "not_found", json_pack("{s:s}", "journey", name),
                   "no journey named '%s' is running", name);
        return;
    }
    store st;
    if (http_open_store(q, &st) != 0)
        return;
    json_t *o = one(q, &st, j);
    store_close(&st);
    http_json(q, 200, o);
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
