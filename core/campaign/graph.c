/* The campaign graph: inputs name activities that exist, no cycles, and a
 * topological order to check and run in. Output names ("ab.a") are
 * checked later, once each producer's type has declared its outputs. */
#include <stdlib.h>
#include <string.h>

#include "campaign/campaign.h"
#include "base/mem.h"
#include "base/suggest.h"
#include "base/timefmt.h"

static void resolve_inputs(campaign *c, diag *d)
{
    const char **ids = xcalloc(c->nacts + 1, sizeof *ids);
    for (size_t i = 0; i < c->nacts; i++)
        ids[i] = c->acts[i].id;
    for (size_t i = 0; i < c->nacts; i++) {
        camp_activity *a = &c->acts[i];
        for (size_t j = 0; j < a->ninputs; j++) {
            camp_input *in = &a->inputs[j];
            const char *dot = strchr(in->text, '.');
            char *id = xstrndup(in->text, dot ? (size_t)(dot - in->text) : strlen(in->text));
            in->act = campaign_find(c, id);
            if (in->act < 0) {
                const char *near = suggest_nearest(id, ids, c->nacts);
                diag_error(d, c->file, in->line,
                           "activity '%s': input '%s' names no activity of this campaign%s%s%s",
                           a->id, in->text, near ? " (did you mean '" : "", near ? near : "",
                           near ? "'?)" : "");
            } else if ((size_t)in->act == i) {
                diag_error(d, c->file, in->line, "activity '%s': takes its own output as input",
                           a->id);
                in->act = -1;
            }
            free(id);
        }
    }
    free(ids);
}

/* Kahn's algorithm; what is left over lies on or behind a cycle, and one
 * cycle is walked to name it. */
static void order(campaign *c, diag *d)
{
    size_t n = c->nacts;
    size_t *indeg = xcalloc(n + 1, sizeof *indeg);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < c->acts[i].ninputs; j++)
            if (c->acts[i].inputs[j].act >= 0)
                indeg[i]++;
    c->order = xcalloc(n + 1, sizeof *c->order);
    c->norder = 0;
    size_t head = 0;
    for (size_t i = 0; i < n; i++)
        if (indeg[i] == 0)
            c->order[c->norder++] = i;
    while (head < c->norder) {
        size_t u = c->order[head++];
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < c->acts[i].ninputs; j++)
                if (c->acts[i].inputs[j].act == (int)u && --indeg[i] == 0)
                    c->order[c->norder++] = i;
    }
    if (c->norder < n) {
        /* walk back along inputs from a stuck activity until one repeats */
        size_t start = 0;
        while (indeg[start] == 0)
            start++;
        int *seen = xcalloc(n, sizeof *seen);
        size_t cur = start;
        int step = 1;
        while (!seen[cur]) {
            seen[cur] = step++;
            const camp_activity *a = &c->acts[cur];
            for (size_t j = 0; j < a->ninputs; j++)
                if (a->inputs[j].act >= 0 && indeg[a->inputs[j].act] > 0) {
                    cur = (size_t)a->inputs[j].act;
                    break;
                }
        }
        /* cur is on the cycle: list it in flow order */
        char path[1024] = "";
        size_t node = cur;
        size_t chain[256], nchain = 0;
        do {
            chain[nchain++] = node;
            const camp_activity *a = &c->acts[node];
            for (size_t j = 0; j < a->ninputs; j++)
                if (a->inputs[j].act >= 0 && indeg[a->inputs[j].act] > 0 &&
                    seen[a->inputs[j].act]) {
                    node = (size_t)a->inputs[j].act;
                    break;
                }
        } while (node != cur && nchain < 256);
        /* chain follows inputs backwards from cur: print it in flow order,
         * starting and ending at cur */
        strncat(path, c->acts[chain[0]].id, sizeof path - strlen(path) - 1);
        for (size_t k = nchain; k-- > 1;) {
            strncat(path, " -> ", sizeof path - strlen(path) - 1);
            strncat(path, c->acts[chain[k]].id, sizeof path - strlen(path) - 1);
        }
        strncat(path, " -> ", sizeof path - strlen(path) - 1);
        strncat(path, c->acts[chain[0]].id, sizeof path - strlen(path) - 1);
        diag_error(d, c->file, c->acts[cur].line, "the activities form a cycle: %s", path);
        free(seen);
    }
    free(indeg);
}

int64_t campaign_hold_s(const camp_activity *a)
{
    const char *key = !strcmp(a->type_name, "wait")     ? "duration"
                      : !strcmp(a->type_name, "signal") ? "timeout"
                                                        : NULL;
    config_setting_t *s = key ? config_setting_get_member(a->group, key) : NULL;
    int64_t ms = 0;
    if (!s || config_setting_type(s) != CONFIG_TYPE_STRING ||
        duration_parse_ms(config_setting_get_string(s), &ms) != 0)
        return 0;
    return ms / 1000;
}

/* Rows are held in work tables for at most the campaign's retention: the
 * waits and signal timeouts along any path add up to no more. */
static void check_retention(campaign *c, diag *d)
{
    int64_t *upto = xcalloc(c->nacts + 1, sizeof *upto);
    for (size_t k = 0; k < c->norder; k++) {
        size_t i = c->order[k];
        const camp_activity *a = &c->acts[i];
        int64_t before = 0;
        for (size_t j = 0; j < a->ninputs; j++)
            if (a->inputs[j].act >= 0 && upto[a->inputs[j].act] > before)
                before = upto[a->inputs[j].act];
        upto[i] = before + campaign_hold_s(a);
        if (upto[i] > c->retention_s && before <= c->retention_s) {
            char total[32], ret[32];
            duration_format(upto[i], total, sizeof total);
            duration_format(c->retention_s, ret, sizeof ret);
            diag_error(d, c->file, a->line,
                       "activity '%s': the run would hold its rows %s up to here, past the "
                       "campaign's retention of %s (retention = \"%s\" keeps them longer)",
                       a->id, total, ret, total);
        }
    }
    free(upto);
}

int campaign_graph(campaign *c, diag *d)
{
    size_t before = d->errors;
    resolve_inputs(c, d);
    order(c, d);
    if (d->errors == before)
        check_retention(c, d);
    return d->errors == before ? 0 : -1;
}
