/* template — {{ }} templates: compiled into a tree of text runs, values,
 * ifs and eaches whose expressions are compiled by core/expr; rendered by
 * walking it. */
#include "lang/template.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lang/ast.h"
#include "base/escape.h"
#include "base/mem.h"

typedef enum item_kind { I_TEXT = 1, I_VALUE, I_IF, I_EACH, I_INDEX } item_kind;

typedef struct block {
    struct item *v;
    size_t n, cap;
} block;

typedef struct item {
    item_kind kind;
    size_t off, len;      /* I_TEXT: bytes of the template text */
    int raw;              /* I_VALUE: never escape */
    int esc;              /* I_VALUE: how its value is escaped (V_*) */
    expr *e;              /* I_VALUE value, I_IF condition, I_EACH count(rows) */
    const expr_ref *rows; /* I_EACH */
    size_t limit;         /* I_EACH */
    expr *where;          /* I_EACH: rows kept, or NULL */
    expr **order;         /* I_EACH: sort keys, in order */
    int *desc;
    size_t norder;
    int depth;         /* I_EACH: the level its rows get; I_INDEX: the each's */
    block then, other; /* I_IF: then/else; I_EACH: then is the body */
} item;

struct template
{
    char *text;
    unsigned flags;
    block top;
    const expr **exprs; /* every expression, in order */
    size_t nexprs, capexprs;
    int max_depth;
    char *warning; /* the first warning, "line:col: message" */
};

/* --- compiling ----------------------------------------------------------- */

typedef struct tparser {
    template *t;
    const expr_scope *sc;
    expr_errs *E;
    const char *p; /* next byte */
    int line, col; /* of p */
    check_frame frames[EXPR_MAX_LEVEL + 1];
    int level;
    int nest; /* blocks open ({{#if}}, {{#each}}) */
    /* where the literal text so far leaves the next value */
    int in_string, backslash; /* TEMPLATE_JSON: inside a string literal */
    int in_angle;             /* TEMPLATE_URL_LIST: inside <..> */
    int stopped;              /* nested too deeply: nothing more is read */
} tparser;

/* How one value is escaped, by its context and place. */
enum {
    V_NONE,
    V_HTML,
    V_HEADER,
    V_HEADER_LIST, /* a URL list header, outside <..> */
    V_URL,
    V_JSON_IN,  /* inside a JSON string */
    V_JSON_OUT, /* where a JSON value goes */
    V_FORM,
    V_TOPIC,
};

static const char *const context_names[] = {
    "text",  "HTML",        "a header",    "a header of URLs",
    "a URL", "a JSON body", "a form body", "an MQTT topic"};

unsigned template_part_escape(const char *part)
{
    if (!strcmp(part, "html"))
        return TEMPLATE_HTML;
    if (!strcmp(part, "subject"))
        return TEMPLATE_HEADER;
    if (!strcmp(part, "list_unsubscribe"))
        return TEMPLATE_URL_LIST;
    return TEMPLATE_TEXT;
}

/* The literal text s[0..n) moves the lexical state the next value sees. */
static void follow_text(tparser *P, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (P->in_string) {
            if (P->backslash)
                P->backslash = 0;
            else if (c == '\\')
                P->backslash = 1;
            else if (c == '"')
                P->in_string = 0;
        } else if (c == '"') {
            P->in_string = 1;
        }
        if (c == '<')
            P->in_angle = 1;
        else if (c == '>')
            P->in_angle = 0;
    }
}

static int value_escape(const tparser *P)
{
    switch (P->t->flags & TEMPLATE_ESCAPE_MASK) {
    case TEMPLATE_HTML: return V_HTML;
    case TEMPLATE_HEADER: return V_HEADER;
    case TEMPLATE_URL_LIST: return P->in_angle ? V_URL : V_HEADER_LIST;
    case TEMPLATE_URL: return V_URL;
    case TEMPLATE_JSON: return P->in_string ? V_JSON_IN : V_JSON_OUT;
    case TEMPLATE_FORM: return V_FORM;
    case TEMPLATE_TOPIC: return V_TOPIC;
    default: return V_NONE;
    }
}

/* Blocks one inside another: parsing and rendering recurse per block. */
#define TEMPLATE_MAX_NEST 100

static void terr(tparser *P, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void terr(tparser *P, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    int l0 = P->E->line0;
    P->E->line0 = 0; /* positions here are already the template's */
    expr_err(P->E, line, col, "%s", msg);
    P->E->line0 = l0;
    free(msg);
}

static void twarn(tparser *P, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void twarn(tparser *P, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    if (!P->t->warning)
        P->t->warning = xasprintf("%d:%d: %s", line, col, msg);
    if (P->E->d) {
        const expr_origin *o = P->E->o;
        if (o && o->setting)
            diag_warn(P->E->d, o->file, o->line, "%s: %d:%d: %s", o->setting, line, col, msg);
        else
            diag_warn(P->E->d, o ? o->file : NULL, o ? o->line : 0, "%d:%d: %s", line, col, msg);
    }
    free(msg);
}

static item *add_item(block *b, item_kind k)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 8;
        b->v = xrealloc(b->v, b->cap * sizeof *b->v);
    }
    item *it = &b->v[b->n++];
    memset(it, 0, sizeof *it);
    it->kind = k;
    return it;
}

static void advance(tparser *P, size_t n)
{
    while (n-- && *P->p) {
        if (*P->p == '\n') {
            P->line++;
            P->col = 1;
        } else if (((unsigned char)*P->p & 0xC0) != 0x80) {
            P->col++;
        }
        P->p++;
    }
}

static void note_expr(template *t, const expr *e)
{
    /* doubling: a template of 100,000 tags is not 100,000 copies */
    if (t->nexprs == t->capexprs) {
        t->capexprs = t->capexprs ? t->capexprs * 2 : 8;
        t->exprs = xrealloc(t->exprs, t->capexprs * sizeof *t->exprs);
    }
    t->exprs[t->nexprs++] = e;
}

/* The end of a tag's body: the first "}}" (or "}}}") outside quotes. */
static const char *tag_end(const char *s, const char *close)
{
    size_t cl = strlen(close);
    char q = 0;
    for (; *s; s++) {
        if (q) {
            if (*s == '\\' && s[1])
                s++;
            else if (*s == q)
                q = 0;
        } else if (*s == '\'' || *s == '"') {
            q = *s;
        } else if (strncmp(s, close, cl) == 0) {
            return s;
        }
    }
    return NULL;
}

static expr *compile_at(tparser *P, const char *text, int line, int col, unsigned flags)
{
    int l0 = P->E->line0, c0 = P->E->col0;
    P->E->line0 = line;
    P->E->col0 = col;
    expr *e = expr_compile_frames(text, P->sc, P->frames, P->level, flags, P->E);
    P->E->line0 = l0;
    P->E->col0 = c0;
    if (e)
        note_expr(P->t, e);
    return e;
}

/* Where the expression text of a tag starts: after leading spaces. */
static void skip_space(const char **s, size_t *len, int *line, int *col)
{
    while (*len && isspace((unsigned char)**s)) {
        if (**s == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
        (*s)++;
        (*len)--;
    }
}

static int word_is(const char *s, size_t len, const char *w)
{
    size_t n = strlen(w);
    return len >= n && strncmp(s, w, n) == 0 &&
           (len == n || !(isalnum((unsigned char)s[n]) || s[n] == '_'));
}

typedef struct open_tag {
    item_kind kind;
    int line, col;
} open_tag;

static int parse_block(tparser *P, block *b, const open_tag *open, int *ended_by_else);
static int parse_block_in(tparser *P, block *b, const open_tag *open, int *ended_by_else);

/* Where the next clause of an #each starts (where, order by, limit): a
 * keyword after a space, outside quotes and brackets; len if none. */
static int order_by_at(const char *s, size_t len)
{
    if (!word_is(s, len, "order"))
        return 0;
    size_t i = 5;
    while (i < len && isspace((unsigned char)s[i]))
        i++;
    return i > 5 && word_is(s + i, len - i, "by");
}

static size_t next_clause(const char *s, size_t len, size_t from)
{
    int depth = 0;
    char q = 0;
    for (size_t i = from; i < len; i++) {
        char ch = s[i];
        if (q) {
            if (ch == '\\' && i + 1 < len)
                i++;
            else if (ch == q)
                q = 0;
            continue;
        }
        if (ch == '\'' || ch == '"')
            q = ch;
        else if (ch == '(' || ch == '[')
            depth++;
        else if (ch == ')' || ch == ']')
            depth--;
        else if (!depth && i > 0 && isspace((unsigned char)s[i - 1]) &&
                 (word_is(s + i, len - i, "where") || word_is(s + i, len - i, "limit") ||
                  order_by_at(s + i, len - i)))
            return i;
    }
    return len;
}

typedef struct each_clauses {
    char *where;
    int where_col;
    char *order; /* "a desc, b" */
    int order_col;
} each_clauses;

static void parse_each(tparser *P, block *b, const char *body, size_t len, int line, int col,
                       int tline, int tcol)
{
    /* path [where EXPR] [order by EXPR [asc|desc], ...] [limit N] */
    size_t i = 0;
    while (i < len && (isalnum((unsigned char)body[i]) || body[i] == '_' || body[i] == '.'))
        i++;
    char *path = xstrndup(body, i);
    size_t limit = TEMPLATE_EACH_LIMIT;
    each_clauses cl = {0};
    int bad = 0;
    if (!*path) {
        terr(P, line, col, "{{#each}} needs a one-to-many link: {{#each orders}}");
        bad = 1;
    }
    size_t pos = i;
    while (!bad && pos < len) {
        while (pos < len && isspace((unsigned char)body[pos]))
            pos++;
        if (pos >= len)
            break;
        const char *r = body + pos;
        size_t rl = len - pos;
        int rc = col + (int)pos;
        if (word_is(r, rl, "where") && !cl.where) {
            size_t k = pos + 5;
            while (k < len && isspace((unsigned char)body[k]))
                k++;
            size_t end = next_clause(body, len, k);
            cl.where = xstrndup(body + k, end - k);
            cl.where_col = col + (int)k;
            pos = end;
        } else if (order_by_at(r, rl) && !cl.order) {
            size_t k = pos + 5;
            while (k < len && isspace((unsigned char)body[k]))
                k++;
            k += 2;
            while (k < len && isspace((unsigned char)body[k]))
                k++;
            size_t end = next_clause(body, len, k);
            cl.order = xstrndup(body + k, end - k);
            cl.order_col = col + (int)k;
            pos = end;
        } else if (word_is(r, rl, "limit")) {
            size_t k = pos + 5;
            while (k < len && isspace((unsigned char)body[k]))
                k++;
            size_t end = next_clause(body, len, k);
            while (end > k && isspace((unsigned char)body[end - 1]))
                end--;
            char *num = xstrndup(body + k, end - k), *stop;
            long long v = strtoll(num, &stop, 10);
            if (end == k || *stop || v < 1 || v > 100000) {
                terr(P, line, col + (int)k, "limit takes a number of rows from 1 to 100000");
                bad = 1;
            } else {
                limit = (size_t)v;
            }
            free(num);
            pos = next_clause(body, len, k);
        } else {
            terr(P, line, rc,
                 "unexpected '%.*s' in {{#each}}: write {{#each %s where ... order by ... "
                 "limit 20}}",
                 (int)(rl > 20 ? 20 : rl), r, path);
            bad = 1;
        }
    }
    item *it = NULL;
    if (!bad && P->level >= EXPR_MAX_LEVEL) {
        terr(P, tline, tcol, "{{#each}} nested too deeply (at most %d)", EXPR_MAX_LEVEL);
        bad = 1;
    }
    expr *e = NULL;
    if (!bad) {
        char *text = xasprintf("count(%s)", path);
        e = compile_at(P, text, line, col - 6, 0);
        free(text);
    }
    size_t idx = b->n;
    it = add_item(b, I_EACH);
    it->e = e;
    it->limit = limit;
    open_tag open = {I_EACH, tline, tcol};
    if (e) {
        it->rows = expr_ref_at(e, 0);
        it->depth = P->level + 1;
        P->level++;
        P->frames[P->level].entity = it->rows->rows->from;
        P->frames[P->level].rows = it->rows;
        if (P->level > P->t->max_depth)
            P->t->max_depth = P->level;
        /* where and order by read the linked rows, as the body does */
        if (cl.where)
            b->v[idx].where = compile_at(P, cl.where, line, cl.where_col, EXPR_WANT_BOOL);
        for (size_t k = 0, start = 0, n = cl.order ? strlen(cl.order) : 0; cl.order && k <= n;
             k++) {
            if (k < n && cl.order[k] != ',')
                continue;
            /* one key: text up to a top-level comma (no commas inside
             * calls: a key with one is cut, and its compile error says so) */
            while (start < k && isspace((unsigned char)cl.order[start]))
                start++;
            char *key = xstrndup(cl.order + start, k - start);
            int kcol = cl.order_col + (int)start;
            size_t kl = strlen(key);
            while (kl && isspace((unsigned char)key[kl - 1]))
                key[--kl] = '\0';
            int desc = 0;
            if (kl > 5 && !strcmp(key + kl - 5, " desc")) {
                desc = 1;
                key[kl - 5] = '\0';
            } else if (kl > 4 && !strcmp(key + kl - 4, " asc")) {
                key[kl - 4] = '\0';
            }
            expr *ke = compile_at(P, key, line, kcol, 0);
            free(key);
            item *ei = &b->v[idx];
            ei->order = xrealloc(ei->order, (ei->norder + 1) * sizeof *ei->order);
            ei->desc = xrealloc(ei->desc, (ei->norder + 1) * sizeof *ei->desc);
            ei->order[ei->norder] = ke;
            ei->desc[ei->norder++] = desc;
            start = k + 1;
        }
        block body_blk = {0};
        parse_block(P, &body_blk, &open, NULL);
        P->level--;
        b->v[idx].then = body_blk;
    } else {
        /* still read the body, to find its end and report its errors */
        block body_blk = {0};
        parse_block(P, &body_blk, &open, NULL);
        b->v[idx].then = body_blk;
    }
    free(cl.where);
    free(cl.order);
    free(path);
}

/* Parse until the end of text or the tag that closes `open`. Returns 0
 * at the end of text, 1 at the closing tag. */
static int parse_block(tparser *P, block *b, const open_tag *open, int *ended_by_else)
{
    if (P->stopped)
        return 0;
    if (open && P->nest >= TEMPLATE_MAX_NEST) {
        /* one error, then nothing: the blocks still open are not closed
         * either, and saying so for each would bury it */
        terr(P, open->line, open->col,
             "{{#%s}} nested too deeply (more than %d blocks one inside another)",
             open->kind == I_IF ? "if" : "each", TEMPLATE_MAX_NEST);
        P->stopped = 1;
        return 0;
    }
    P->nest += open != NULL;
    int rc = parse_block_in(P, b, open, ended_by_else);
    P->nest -= open != NULL;
    return P->stopped ? 0 : rc;
}

/* The next "{{" in s, or NULL: found by its first '{', as far as that
 * (strstr, under sanitizers, measures the whole rest at every tag: a
 * template of many tags took quadratic time). */
static const char *next_open(const char *s)
{
    while ((s = strchr(s, '{')))
        if (*++s == '{')
            return s - 1;
    return NULL;
}

static int parse_block_in(tparser *P, block *b, const open_tag *open, int *ended_by_else)
{
    for (;;) {
        if (P->stopped)
            return 0;
        const char *tag = next_open(P->p);
        size_t textlen = tag ? (size_t)(tag - P->p) : strlen(P->p);
        if (textlen) {
            item *it = add_item(b, I_TEXT);
            it->off = (size_t)(P->p - P->t->text);
            it->len = textlen;
            follow_text(P, P->p, textlen);
            advance(P, textlen);
        }
        if (!tag) {
            if (open)
                terr(P, open->line, open->col, "{{#%s}} opened here is never closed with {{/%s}}",
                     open->kind == I_IF ? "if" : "each", open->kind == I_IF ? "if" : "each");
            return 0;
        }
        int tline = P->line, tcol = P->col;
        int raw = strncmp(P->p, "{{{", 3) == 0;
        const char *close = raw ? "}}}" : "}}";
        const char *body = P->p + (raw ? 3 : 2);
        const char *end = tag_end(body, close);
        if (!end) {
            terr(P, tline, tcol, "'%s' is never closed with '%s'", raw ? "{{{" : "{{", close);
            advance(P, strlen(P->p));
            return 0;
        }
        size_t len = (size_t)(end - body);
        advance(P, raw ? 3 : 2);
        int line = P->line, col = P->col;
        const char *s = body;
        skip_space(&s, &len, &line, &col);
        while (len && isspace((unsigned char)s[len - 1]))
            len--;
        /* the whole tag is consumed whatever it holds */
        const char *after = end + strlen(close);
        if (raw) {
            if (!len) {
                terr(P, tline, tcol, "empty tag {{{ }}}: put an expression inside");
            } else {
                char *text = xstrndup(s, len);
                expr *e = compile_at(P, text, line, col, 0);
                free(text);
                item *it = add_item(b, I_VALUE);
                it->e = e;
                it->raw = 1;
                unsigned ctx = P->t->flags & TEMPLATE_ESCAPE_MASK;
                if (ctx > TEMPLATE_HTML)
                    twarn(P, tline, tcol,
                          "{{{ }}} is not escaped: in %s a value could change what is sent"
                          " (write {{ }} unless the value is trusted)",
                          context_names[ctx]);
            }
        } else if (len && s[0] == '!') {
            /* comment */
        } else if (len && s[0] == '#') {
            const char *kw = s + 1;
            size_t kl = len - 1;
            int kline = line, kcol = col + 1;
            if (word_is(kw, kl, "if")) {
                const char *cond = kw + 2;
                size_t cl = kl - 2;
                int cline = kline, ccol = kcol + 2;
                skip_space(&cond, &cl, &cline, &ccol);
                advance(P, (size_t)(after - P->p));
                item *it = NULL;
                size_t idx = b->n;
                expr *e = NULL;
                if (!cl) {
                    terr(P, tline, tcol, "{{#if}} needs a condition: {{#if tier == 'gold'}}");
                } else {
                    char *text = xstrndup(cond, cl);
                    e = compile_at(P, text, cline, ccol, EXPR_WANT_BOOL);
                    free(text);
                }
                it = add_item(b, I_IF);
                it->e = e;
                open_tag o = {I_IF, tline, tcol};
                block then = {0}, other = {0};
                int by_else = 0;
                if (parse_block(P, &then, &o, &by_else) && by_else)
                    parse_block(P, &other, &o, NULL);
                b->v[idx].then = then;
                b->v[idx].other = other;
                continue;
            } else if (word_is(kw, kl, "each")) {
                const char *path = kw + 4;
                size_t pl = kl - 4;
                int pline = kline, pcol = kcol + 4;
                skip_space(&path, &pl, &pline, &pcol);
                advance(P, (size_t)(after - P->p));
                parse_each(P, b, path, pl, pline, pcol, tline, tcol);
                continue;
            } else {
                size_t wl = 0;
                while (wl < kl && (isalnum((unsigned char)kw[wl]) || kw[wl] == '_'))
                    wl++;
                terr(P, tline, tcol,
                     "unknown block '{{#%.*s}}' (known: {{#if ...}}, {{#each ...}})", (int)wl, kw);
            }
        } else if (len && s[0] == '/') {
            const char *kw = s + 1;
            size_t kl = len - 1;
            advance(P, (size_t)(after - P->p));
            item_kind k = word_is(kw, kl, "if") ? I_IF : word_is(kw, kl, "each") ? I_EACH : 0;
            if (!k) {
                terr(P, tline, tcol, "unknown closing tag '{{/%.*s}}' (known: {{/if}}, {{/each}})",
                     (int)(kl > 20 ? 20 : kl), kw);
            } else if (!open) {
                terr(P, tline, tcol, "{{/%s}} closes nothing: no {{#%s}} is open",
                     k == I_IF ? "if" : "each", k == I_IF ? "if" : "each");
            } else if (open->kind != k) {
                terr(P, tline, tcol, "{{/%s}} closes the {{#%s}} opened at %d:%d: expected {{/%s}}",
                     k == I_IF ? "if" : "each", open->kind == I_IF ? "if" : "each", open->line,
                     open->col, open->kind == I_IF ? "if" : "each");
                return 1;
            } else {
                return 1;
            }
            continue;
        } else if (word_is(s, len, "else") && len == 4) {
            advance(P, (size_t)(after - P->p));
            if (open && open->kind == I_IF && ended_by_else) {
                *ended_by_else = 1;
                return 1;
            }
            terr(P, tline, tcol, "{{else}} outside {{#if}}...{{/if}}%s",
                 open && open->kind == I_IF ? " (or a second {{else}})" : "");
            continue;
        } else if (len == 6 && strncmp(s, "@index", 6) == 0) {
            if (P->level == 0)
                terr(P, tline, tcol, "{{@index}} outside {{#each}}");
            item *it = add_item(b, I_INDEX);
            it->depth = P->level;
        } else if (!len) {
            terr(P, tline, tcol,
                 "empty tag {{ }}: put an expression inside (write {{ '{{' }} "
                 "for a literal '{{')");
        } else {
            char *text = xstrndup(s, len);
            expr *e = compile_at(P, text, line, col, 0);
            free(text);
            item *it = add_item(b, I_VALUE);
            it->e = e;
            it->esc = value_escape(P);
        }
        advance(P, (size_t)(after - P->p));
    }
}

static void block_free(block *b)
{
    for (size_t i = 0; i < b->n; i++) {
        expr_free(b->v[i].e);
        expr_free(b->v[i].where);
        for (size_t k = 0; k < b->v[i].norder; k++)
            expr_free(b->v[i].order[k]);
        free(b->v[i].order);
        free(b->v[i].desc);
        block_free(&b->v[i].then);
        block_free(&b->v[i].other);
    }
    free(b->v);
}

static template *compile_template(const char *text, const expr_scope *sc, unsigned flags,
                                  expr_errs *E)
{
    template *t = xcalloc(1, sizeof *t);
    t->text = xstrdup(text ? text : "");
    t->flags = flags;
    tparser P = {.t = t, .sc = sc, .E = E, .p = t->text, .line = 1, .col = 1};
    size_t before = E->n;
    parse_block(&P, &t->top, NULL, NULL);
    if (E->n != before) {
        template_free(t);
        return NULL;
    }
    return t;
}

template *template_compile(const char *text, const expr_scope *sc, const expr_origin *o,
                           unsigned flags, diag *d)
{
    expr_errs E = {.d = d, .o = o};
    template *t = compile_template(text, sc, flags, &E);
    free(E.first);
    return t;
}

template *template_compile_msg(const char *text, const expr_scope *sc, unsigned flags, char *err,
                               size_t errlen)
{
    expr_errs E = {0};
    template *t = compile_template(text, sc, flags, &E);
    if (!t && err && errlen)
        snprintf(err, errlen, "%s", E.first ? E.first : "invalid template");
    free(E.first);
    return t;
}

void template_free(template *t)
{
    if (!t)
        return;
    block_free(&t->top);
    free(t->warning);
    free(t->exprs);
    free(t->text);
    free(t);
}

size_t template_expr_count(const template *t)
{
    return t->nexprs;
}
const expr *template_expr_at(const template *t, size_t i)
{
    return i < t->nexprs ? t->exprs[i] : NULL;
}

const char *template_warning(const template *t)
{
    return t->warning;
}

int template_is_static(const template *t)
{
    return t->top.n == 0 || (t->top.n == 1 && t->top.v[0].kind == I_TEXT);
}

/* --- rendering ------------------------------------------------------------- */

typedef struct rctx {
    const template *t;
    const expr_env *env;
    expr_arena *arena;
    buf *out;
    const void *rows[EXPR_MAX_LEVEL + 1]; /* rows[k-1]: the row at level k */
    size_t index[EXPR_MAX_LEVEL + 1];
    char *err;
    size_t errlen;
} rctx;

static void add_escaped(buf *out, const char *s, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        const char *rep;
        switch (s[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: continue;
        }
        buf_add(out, s + start, i - start);
        buf_adds(out, rep);
        start = i + 1;
    }
    buf_add(out, s + start, len - start);
}

/* Sort keys of one row; NULL last whichever way, then the link's order. */
static int key_cmp(const item *it, const baton_value *a, const baton_value *b)
{
    for (size_t k = 0; k < it->norder; k++) {
        int an = a[k].type == BATON_T_NULL, bn = b[k].type == BATON_T_NULL;
        if (an != bn)
            return an - bn;
        if (an)
            continue;
        int r = expr_value_compare(&a[k], &b[k]);
        if (r == 2 || r == 0)
            continue;
        return it->desc[k] ? -r : r;
    }
    return 0;
}

/* The rows of an #each kept by its where, in its order: a new list in
 * *rows (free it). The keys' strings live in the arena until the sort is
 * done. */
static int each_select(rctx *c, const item *it, const void *const **rows, size_t *n)
{
    const void **keep = xcalloc(*n + 1, sizeof *keep);
    baton_value *keys = it->norder ? xcalloc((*n + 1) * it->norder, sizeof *keys) : NULL;
    size_t m = 0;
    for (size_t k = 0; k < *n; k++) {
        c->rows[it->depth - 1] = (*rows)[k];
        if (it->where) {
            baton_value v;
            if (expr_eval_at(it->where, c->env, c->arena, c->rows, it->depth, &v, c->err,
                             c->errlen))
                goto fail;
            if (!expr_value_true(&v))
                continue;
        }
        for (size_t o = 0; o < it->norder; o++)
            if (expr_eval_at(it->order[o], c->env, c->arena, c->rows, it->depth,
                             &keys[m * it->norder + o], c->err, c->errlen))
                goto fail;
        keep[m++] = (*rows)[k];
    }
    /* insertion sort: stable, and a link's rows are at most a thousand */
    baton_value *tmp = it->norder ? xcalloc(it->norder, sizeof *tmp) : NULL;
    for (size_t k = 1; it->norder && k < m; k++) {
        const void *r = keep[k];
        memcpy(tmp, &keys[k * it->norder], it->norder * sizeof *tmp);
        size_t j = k;
        while (j > 0 && key_cmp(it, &keys[(j - 1) * it->norder], tmp) > 0) {
            keep[j] = keep[j - 1];
            memcpy(&keys[j * it->norder], &keys[(j - 1) * it->norder], it->norder * sizeof *tmp);
            j--;
        }
        keep[j] = r;
        memcpy(&keys[j * it->norder], tmp, it->norder * sizeof *tmp);
    }
    free(tmp);
    free(keys);
    expr_arena_reset(c->arena);
    *rows = (const void *const *)keep;
    *n = m;
    return 0;
fail:
    free(keep);
    free(keys);
    return -1;
}

static void add_value(rctx *c, const item *it, const baton_value *v)
{
    if (it->raw || it->esc == V_NONE || (it->esc == V_HTML && v->type != BATON_T_STRING)) {
        /* numbers, dates, bools hold nothing HTML would read */
        if (v->type == BATON_T_STRING)
            buf_add(c->out, v->v.s.ptr, v->v.s.len);
        else
            expr_value_format(v, c->out);
        return;
    }
    if (it->esc == V_JSON_OUT) {
        /* a JSON value: numbers and bools as they are, NULL as null */
        switch (v->type) {
        case BATON_T_NULL: buf_adds(c->out, "null"); return;
        case BATON_T_BOOL:
        case BATON_T_INT: expr_value_format(v, c->out); return;
        case BATON_T_FLOAT:
            if (isfinite(v->v.f)) {
                expr_value_format(v, c->out);
                return;
            }
            buf_adds(c->out, "null");
            return;
        default: break;
        }
    }
    const char *s;
    size_t n;
    buf tmp;
    buf_init(&tmp);
    if (v->type == BATON_T_STRING) {
        s = v->v.s.ptr;
        n = v->v.s.len;
    } else {
        expr_value_format(v, &tmp);
        s = tmp.data ? tmp.data : "";
        n = tmp.len;
    }
    switch (it->esc) {
    case V_HTML: add_escaped(c->out, s, n); break;
    case V_HEADER: esc_header(c->out, s, n, 0); break;
    case V_HEADER_LIST: esc_header(c->out, s, n, 1); break;
    case V_URL: esc_url(c->out, s, n); break;
    case V_JSON_IN: esc_json_inner(c->out, s, n); break;
    case V_JSON_OUT: buf_add_json_string(c->out, s, n); break;
    case V_FORM: esc_form(c->out, s, n); break;
    case V_TOPIC: esc_topic(c->out, s, n); break;
    default: buf_add(c->out, s, n); break;
    }
    buf_free(&tmp);
}

static int render_block(rctx *c, const block *b, int depth)
{
    for (size_t i = 0; i < b->n; i++) {
        const item *it = &b->v[i];
        baton_value v;
        switch (it->kind) {
        case I_TEXT: buf_add(c->out, c->t->text + it->off, it->len); break;
        case I_INDEX: buf_addf(c->out, "%zu", c->index[it->depth]); break;
        case I_VALUE:
            if (expr_eval_at(it->e, c->env, c->arena, c->rows, depth, &v, c->err, c->errlen))
                return -1;
            add_value(c, it, &v);
            expr_arena_reset(c->arena);
            break;
        case I_IF:
            if (expr_eval_at(it->e, c->env, c->arena, c->rows, depth, &v, c->err, c->errlen))
                return -1;
            expr_arena_reset(c->arena);
            if (render_block(c, expr_value_true(&v) ? &it->then : &it->other, depth))
                return -1;
            break;
        case I_EACH: {
            const expr_ref *ref = it->rows;
            if (!c->env->rows) {
                snprintf(c->err, c->errlen,
                         "{{#each %s}}: rows of a one-to-many link are not available here",
                         ref->path);
                return -1;
            }
            const void *const *rows = NULL;
            size_t n = 0;
            const void *at = ref->level > 0 ? c->rows[ref->level - 1] : NULL;
            if (c->env->rows(c->env->ud, at, ref, &rows, &n, c->err, c->errlen) < 0)
                return -1;
            if (it->where || it->norder) {
                if (each_select(c, it, &rows, &n) != 0)
                    return -1;
            }
            if (n > it->limit)
                n = it->limit;
            int rc = 0;
            for (size_t k = 0; k < n && rc == 0; k++) {
                c->rows[it->depth - 1] = rows[k];
                c->index[it->depth] = k;
                rc = render_block(c, &it->then, it->depth);
            }
            if (it->where || it->norder)
                free((void *)rows);
            if (rc)
                return -1;
            break;
        }
        }
    }
    return 0;
}

int template_render(const template *t, const expr_env *env, expr_arena *arena, buf *out, char *err,
                    size_t errlen)
{
    char dummy[1];
    expr_arena local;
    int own = !arena;
    if (own) {
        expr_arena_init(&local);
        arena = &local;
    }
    rctx c = {.t = t, .env = env, .arena = arena, .out = out};
    c.err = err && errlen ? err : dummy;
    c.errlen = err && errlen ? errlen : sizeof dummy;
    c.err[0] = '\0';
    int rc = render_block(&c, &t->top, 0);
    expr_arena_reset(arena);
    if (own)
        expr_arena_free(&local);
    return rc;
}
