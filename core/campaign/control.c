/* Control activities of the host: test (if/else on the run's own figures)
 * and or_join. Unlike the flow activities they make work tables of their
 * own, so resume, drop and the run history treat them like any targeting
 * activity. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "campaign/act_host.h"
#include "campaign/engine.h"

/* ------------------------------------------------------------------ */
/* test                                                                */
/* ------------------------------------------------------------------ */

/* The transitions a test may count: its input ("input") and every
 * output of an activity upstream of it (done before it, in any order). */
typedef struct counted {
    char **names; /* "_count_input", "_count_ab.a" */
    int *act, *out;
    size_t n;
} counted;

static void counted_add(counted *c, const char *transition, int act, int out)
{
    c->names = xrealloc(c->names, (c->n + 1) * sizeof *c->names);
    c->act = xrealloc(c->act, (c->n + 1) * sizeof *c->act);
    c->out = xrealloc(c->out, (c->n + 1) * sizeof *c->out);
    c->names[c->n] = xasprintf("_count_%s", transition);
    c->act[c->n] = act;
    c->out[c->n++] = out;
}

static void counted_free(counted *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->names[i]);
    free(c->names);
    free(c->act);
    free(c->out);
}

static void upstream(const campaign *c, int i, char *seen, counted *out)
{
    const camp_activity *a = &c->acts[i];
    for (size_t j = 0; j < a->ninputs; j++) {
        int p = a->inputs[j].act;
        if (p < 0 || seen[p])
            continue;
        seen[p] = 1;
        for (size_t k = 0; k < c->acts[p].nouts; k++)
            counted_add(out, c->acts[p].outs[k].transition, p, (int)k);
        upstream(c, p, seen, out);
    }
}

static counted counted_of(baton_activity_ctx *x)
{
    const campaign *c = x->env->c;
    const camp_input *in = &c->acts[x->idx].inputs[0];
    counted r = {0};
    counted_add(&r, "input", in->act, in->out);
    char *seen = xcalloc(c->nacts + 1, 1);
    upstream(c, (int)x->idx, seen, &r);
    free(seen);
    return r;
}

static int is_name_char(char ch)
{
    return isalnum((unsigned char)ch) || ch == '_' || ch == '.';
}

/* The when text with every count(T) outside quotes written _count_T: of
 * the same length, so the compiler's line:col still point into what the
 * user wrote. A count of what is no transition upstream is an error. */
static char *rewrite_counts(baton_activity_ctx *x, const char *text, const counted *cs)
{
    char *s = xstrdup(text);
    char quote = 0;
    for (size_t i = 0; s[i]; i++) {
        if (quote) {
            if (s[i] == '\\' && s[i + 1])
                i++;
            else if (s[i] == quote)
                quote = 0;
            continue;
        }
        if (s[i] == '\'' || s[i] == '"') {
            quote = s[i];
            continue;
        }
        if (strncmp(s + i, "count(", 6) != 0 || (i > 0 && is_name_char(s[i - 1])))
            continue;
        size_t b = i + 6, e = b;
        while (s[e] == ' ')
            e++;
        size_t nb = e;
        while (is_name_char(s[e]))
            e++;
        size_t ne = e;
        while (s[e] == ' ')
            e++;
        if (s[e] != ')' || ne == nb)
            continue; /* not count(NAME): the compiler says what it is */
        char *name = xstrndup(s + nb, ne - nb);
        int known = 0;
        for (size_t k = 0; k < cs->n; k++)
            known |= strcmp(cs->names[k] + 7, name) == 0;
        if (!known) {
            ah_error(x, "when",
                     "when: %zu:%zu: count(%s): '%s' is no transition before this test "
                     "(count(input), or count(ID) of an activity upstream of it)",
                     (size_t)1, i + 1, name, name);
            free(name);
            free(s);
            return NULL;
        }
        /* "count(" NAME spaces ")" → "_count_" NAME spaces: one shorter */
        size_t len = e + 1 - i;
        char *rep = xasprintf("_count_%s", name);
        memset(s + i, ' ', len);
        memcpy(s + i, rep, strlen(rep));
        free(rep);
        free(name);
        i = e;
    }
    return s;
}

static expr *test_compile(baton_activity_ctx *x, counted *cs)
{
    camp_env *e = x->env;
    const char *text = ah_setting_string(x, "when");
    if (!text) {
        ah_error(x, "when", "when must be an expression (a string)");
        return NULL;
    }
    char *rw = rewrite_counts(x, text, cs);
    if (!rw)
        return NULL;
    /* no entity: the run's figures, the parameters (literals by now)
     * and now() are all a test reads */
    expr_scope *sc = expr_scope_new(&e->sch, NULL);
    for (size_t k = 0; k < cs->n; k++)
        expr_scope_add_field(sc, cs->names[k], BATON_T_INT, NULL);
    config_setting_t *w = campaign_setting(e->c->acts[x->idx].group, "when");
    expr_origin o = {e->c->file, w ? (int)config_setting_source_line(w) : 0, "when"};
    expr *ex = NULL;
    if (x->running) {
        char err[512];
        ex = expr_compile_msg(rw, sc, EXPR_WANT_BOOL, err, sizeof err);
        if (!ex)
            ah_error(x, "when", "when: %s", err);
    } else {
        ex = expr_compile(rw, sc, &o, EXPR_WANT_BOOL, e->d);
    }
    if (ex && expr_result_type(ex) != BATON_T_BOOL) {
        ah_error(x, "when", "when must be a condition (true or false), not a %s: \"%s\"",
                 schema_type_name((baton_type)expr_result_type(ex)), text);
        expr_free(ex);
        ex = NULL;
    }
    expr_scope_free(sc);
    free(rw);
    return ex;
}

static int test_check(void *state, baton_activity_ctx *x)
{
    if (ah_input_count(x) != 1 || !ah_input_dimension(x, 0)) {
        ah_error(x, NULL, "a test takes one input (input = \"...\") that carries rows");
        return -1;
    }
    if (ah_setting_string(x, "when") || ah_setting_count(x, "when") >= 0) {
        /* (a missing when is said once, as a missing required key) */
        counted cs = counted_of(x);
        expr *ex = test_compile(x, &cs);
        counted_free(&cs);
        if (!ex)
            return -1;
        expr_free(ex);
    }
    const char *dim = ah_input_dimension(x, 0);
    if (ah_output(x, "then", dim, 0) || ah_output(x, "else", dim, 0))
        return -1;
    return 0;
}

typedef struct count_env {
    camp_env *e;
    const counted *cs;
} count_env;

static int count_get(void *ud, const void *row, const expr_ref *ref, baton_value *out, char *err,
                     size_t errlen)
{
    count_env *c = ud;
    for (size_t k = 0; k < c->cs->n; k++)
        if (!strcmp(c->cs->names[k], ref->path)) {
            const act_state *s = &c->e->s[c->cs->act[k]];
            int64_t n = s->counts ? s->counts[c->cs->out[k]] : -1;
            if (n < 0) {
                snprintf(err, errlen, "count(%s) is not known yet", c->cs->names[k] + 7);
                return -1;
            }
            *out = (baton_value){.type = BATON_T_INT, .v.i = n};
            return 0;
        }
    return 1;
}

static int test_run(void *state, baton_activity_ctx *x)
{
    camp_env *e = x->env;
    counted cs = counted_of(x);
    expr *ex = test_compile(x, &cs);
    if (!ex) {
        counted_free(&cs);
        return -1;
    }
    count_env ce = {e, &cs};
    expr_env env = {.get = count_get, .ud = &ce, .now = e->now};
    expr_arena ar;
    expr_arena_init(&ar);
    char err[512];
    int yes = expr_eval_bool(ex, &env, &ar, err, sizeof err);
    expr_arena_free(&ar);
    expr_free(ex);
    counted_free(&cs);
    if (yes < 0) {
        ah_error(x, "when", "when: %s", err);
        return -1;
    }
    /* the whole input to one output, none of it to the other */
    const char *in = ah_input_table(x, 0);
    const char *names[2] = {"then", "else"};
    for (size_t j = 0; j < 2; j++) {
        char *sql = xasprintf("CREATE TABLE %s AS SELECT * FROM %s%s", ah_output_table(x, names[j]),
                              in, (j == 0) == (yes == 1) ? "" : " WHERE 1 = 0");
        int rc = ah_sql(x, sql, NULL, NULL);
        free(sql);
        if (rc)
            return -1;
    }
    ah_note(x, "when is %s: every row to %s.%s", yes ? "true" : "false", ah_id(x),
            yes ? "then" : "else");
    return 0;
}

static const baton_config_key test_keys[] = {
    {.name = "when",
     .type = BATON_CFG_STRING,
     .required = 1,
     .help = "a condition on the run's figures: count(input), count(ID), param.NAME, now()"},
    {0}};

/* ------------------------------------------------------------------ */
/* or_join                                                             */
/* ------------------------------------------------------------------ */

static int or_join_check(void *state, baton_activity_ctx *x)
{
    size_t n = ah_input_count(x);
    if (n < 2) {
        ah_error(x, n ? "input" : NULL,
                 "an or_join takes two inputs or more (inputs = [ \"a\", \"b\" ]); with one, "
                 "read that input directly");
        return -1;
    }
    const char *dim = ah_input_dimension(x, 0);
    for (size_t i = 0; i < n; i++) {
        const char *di = ah_input_dimension(x, i);
        if (!dim || !di || strcmp(dim, di) != 0) {
            ah_error(x, "inputs", "every input must be of one dimension ('%s' and '%s')",
                     dim ? dim : "none", di ? di : "none");
            return -1;
        }
    }
    return ah_output(x, NULL, dim, 0);
}

static void ident(buf *b, const char *name)
{
    buf_addc(b, '"');
    for (const char *p = name; *p; p++)
        buf_adds(b, *p == '"' ? "\"\"" : (char[2]){*p, 0});
    buf_addc(b, '"');
}

/* Each row once: from the first input (in `inputs` order) that holds it,
 * with the first input's columns (NULL where that input lacks one). */
static int or_join_run(void *state, baton_activity_ctx *x)
{
    size_t n = ah_input_count(x);
    const camp_activity *a = &x->env->c->acts[x->idx];
    buf b;
    buf_init(&b);
    buf_addf(&b, "CREATE TABLE %s AS ", ah_output_table(x, NULL));
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        /* the inputs arrived so far (another may wait on its branch) */
        if (!x->env->s[a->inputs[i].act].done)
            continue;
        buf_addf(&b, "%sSELECT w%zu._key", first ? "" : " UNION ALL ", i);
        first = 0;
        for (size_t c = 0; c < ah_input_column_count(x, 0); c++) {
            const char *name = ah_input_column(x, 0, c, NULL);
            int has = 0;
            for (size_t k = 0; k < ah_input_column_count(x, i); k++)
                has |= strcmp(ah_input_column(x, i, k, NULL), name) == 0;
            if (has)
                buf_addf(&b, ", w%zu.", i);
            else
                buf_adds(&b, ", NULL AS ");
            ident(&b, name);
        }
        buf_addf(&b, " FROM %s w%zu", ah_input_table(x, i), i);
        int where = 1;
        for (size_t k = 0; k < i; k++)
            if (x->env->s[a->inputs[k].act].done) {
                buf_addf(&b, "%s w%zu._key NOT IN (SELECT _key FROM %s)", where ? " WHERE" : " AND",
                         i, ah_input_table(x, k));
                where = 0;
            }
    }
    int rc = ah_sql(x, b.data, NULL, NULL);
    buf_free(&b);
    return rc;
}

const baton_activity_type camp_control_types[] = {
    {.size = sizeof(baton_activity_type),
     .name = "test",
     .help = "if/else on the run's figures: the whole input to test.then or to test.else",
     .keys = test_keys,
     .check = test_check,
     .run = test_run},
    {.size = sizeof(baton_activity_type),
     .name = "or_join",
     .help = "continue with the rows of every input, each row once",
     .check = or_join_check,
     .run = or_join_run},
    {0},
};
