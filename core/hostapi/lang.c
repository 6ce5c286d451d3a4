/* expr/host_api — the baton_host expr_* and template_* members: each
 * compiled object carries its own scope; evaluation reads a baton_record
 * by path and the host's clock. */
#include "hostapi/lang.h"
#include "plugin/plugin_host.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/log.h"
#include "lang/expr.h"
#include "base/mem.h"
#include "lang/template.h"

struct baton_expr {
    expr *e;
    expr_scope *sc;
};

struct baton_template {
    template *t;
    expr_scope *sc;
};

static const schema *_Atomic g_schema;
static int64_t (*_Atomic g_clock)(void);

void expr_host_set_schema(const schema *s)
{
    atomic_store(&g_schema, s);
}
void expr_host_set_clock(int64_t (*now)(void))
{
    atomic_store(&g_clock, now);
}

static int64_t host_now(void)
{
    int64_t (*f)(void) = atomic_load(&g_clock);
    if (f)
        return f();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

/* The instance's own schema; the process-wide one only for callers with
 * no instance (tests, tools). */
static expr_scope *scope_for(baton_instance *inst, const char *scope, char *err, size_t errlen)
{
    if (!scope) {
        expr_scope *sc = expr_scope_new(NULL, NULL);
        expr_scope_set_open(sc, 1);
        return sc;
    }
    const schema *s = inst ? inst->schema : atomic_load(&g_schema);
    if (strcmp(scope, "journey") == 0) {
        expr_scope *sc =
            expr_scope_journey(s, s ? schema_entity_find(s, "profiles") : NULL, NULL, 0);
        expr_scope_set_open(sc, 1); /* sources and action results: untyped */
        return sc;
    }
    if (!s) {
        snprintf(err, errlen, "scope '%s': no schema is loaded (use a NULL scope)", scope);
        return NULL;
    }
    const schema_entity *ent = schema_entity_find(s, scope);
    if (!ent) {
        const char *best = schema_suggest(s, NULL, scope);
        if (best)
            snprintf(err, errlen, "unknown scope '%s' (did you mean '%s'?)", scope, best);
        else
            snprintf(err, errlen,
                     "unknown scope '%s' (an entity of the schema, \"journey\" or "
                     "NULL)",
                     scope);
        return NULL;
    }
    return expr_scope_new(s, ent);
}

baton_expr *host_expr_compile(baton_instance *inst, const char *text, const char *scope, char *err,
                              size_t errlen)
{
    char dummy[1];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    if (!text) {
        snprintf(err, errlen, "no expression");
        return NULL;
    }
    expr_scope *sc = scope_for(inst, scope, err, errlen);
    if (!sc)
        return NULL;
    expr *e = expr_compile_msg(text, sc, 0, err, errlen);
    if (!e) {
        expr_scope_free(sc);
        return NULL;
    }
    baton_expr *be = xcalloc(1, sizeof *be);
    be->e = e;
    be->sc = sc;
    return be;
}

int host_expr_eval(const baton_expr *be, const baton_record *r, baton_value *out,
                   baton_buf *scratch)
{
    if (!be || !out)
        return -1;
    expr_env env = expr_env_record(r, host_now());
    expr_arena arena;
    expr_arena_init(&arena);
    int rc = expr_eval(be->e, &env, &arena, out, NULL, 0);
    if (rc == 0 && out->type == BATON_T_STRING) {
        if (!scratch) {
            rc = -1;
        } else {
            buf_reset(scratch);
            buf_add(scratch, out->v.s.ptr, out->v.s.len);
            out->v.s.ptr = scratch->data;
        }
    }
    expr_arena_free(&arena);
    return rc;
}

void host_expr_free(baton_expr *be)
{
    if (!be)
        return;
    expr_free(be->e);
    expr_scope_free(be->sc);
    free(be);
}

baton_template *host_template_compile(baton_instance *inst, const char *text, int html, char *err,
                                      size_t errlen)
{
    return host_template_compile_as(inst, text, html ? BATON_ESCAPE_HTML : BATON_ESCAPE_TEXT, err,
                                    errlen);
}

/* the SDK's contexts are the template's, value for value */
_Static_assert((int)BATON_ESCAPE_TEXT == (int)TEMPLATE_TEXT &&
                   (int)BATON_ESCAPE_HTML == (int)TEMPLATE_HTML &&
                   (int)BATON_ESCAPE_HEADER == (int)TEMPLATE_HEADER &&
                   (int)BATON_ESCAPE_URL_LIST == (int)TEMPLATE_URL_LIST &&
                   (int)BATON_ESCAPE_URL == (int)TEMPLATE_URL &&
                   (int)BATON_ESCAPE_JSON == (int)TEMPLATE_JSON &&
                   (int)BATON_ESCAPE_FORM == (int)TEMPLATE_FORM &&
                   (int)BATON_ESCAPE_TOPIC == (int)TEMPLATE_TOPIC,
               "baton_escape and the template contexts differ");

baton_template *host_template_compile_as(baton_instance *inst, const char *text, int escape,
                                         char *err, size_t errlen)
{
    char dummy[1];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    if (!text) {
        snprintf(err, errlen, "no template");
        return NULL;
    }
    expr_scope *sc = scope_for(inst, NULL, err, errlen);
    if (escape < BATON_ESCAPE_TEXT || escape > BATON_ESCAPE_TOPIC) {
        snprintf(err, errlen, "unknown escaping context %d", escape);
        expr_scope_free(sc);
        return NULL;
    }
    /* the SDK's baton_escape and the template's contexts are one list */
    template *t = template_compile_msg(text, sc, (unsigned)escape, err, errlen);
    if (!t) {
        expr_scope_free(sc);
        return NULL;
    }
    if (template_warning(t))
        log_msg(BATON_LOG_WARN, inst ? inst->who : "template", "%s%s%s", inst ? inst->where : "",
                inst ? ": " : "", template_warning(t));
    baton_template *bt = xcalloc(1, sizeof *bt);
    bt->t = t;
    bt->sc = sc;
    return bt;
}

int host_template_render(const baton_template *bt, const baton_record *r, baton_buf *out)
{
    if (!bt || !out)
        return -1;
    expr_env env = expr_env_record(r, host_now());
    expr_arena arena;
    expr_arena_init(&arena);
    size_t len = out->len;
    int rc = template_render(bt->t, &env, &arena, out, NULL, 0);
    if (rc != 0) {
        out->len = len; /* nothing partial */
        if (out->data)
            out->data[len] = '\0';
    }
    expr_arena_free(&arena);
    return rc;
}

void host_template_free(baton_template *bt)
{
    if (!bt)
        return;
    template_free(bt->t);
    expr_scope_free(bt->sc);
    free(bt);
}
