/* expr/parse — lexer and recursive-descent parser: text → tree with
 * names and calls still unresolved (expr/check resolves them). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "lang/ast.h"
#include "base/mem.h"
#include "base/timefmt.h"

#define MAX_DEPTH 200
/* The tree every later stage walks recursively (check, eval, SQL, free):
 * an 'or' chain of N terms is N levels deep without a parenthesis, so
 * its height is bounded apart; 500 also keeps the SQL it compiles to
 * under SQLite's own limit (1000). */
#define MAX_HEIGHT EXPR_MAX_HEIGHT
#define MAX_NODES EXPR_MAX_NODES

typedef enum tok_kind {
    T_EOF,
    T_IDENT,
    T_INT,
    T_FLOAT,
    T_DUR,
    T_STRING,
    T_LPAREN,
    T_RPAREN,
    T_LBRACK,
    T_RBRACK,
    T_COMMA,
    T_DOT,
    T_EQ,
    T_NE,
    T_LT,
    T_LE,
    T_GT,
    T_GE,
    T_PLUS,
    T_MINUS,
    T_STAR,
    T_SLASH,
    T_PERCENT,
    /* keywords */
    T_AND,
    T_OR,
    T_NOT,
    T_IN,
    T_IS,
    T_NULL,
    T_TRUE,
    T_FALSE,
    T_WHERE,
    T_ERROR,
} tok_kind;

typedef struct tok {
    tok_kind kind;
    int line, col;
    const char *start;
    size_t len;
    int64_t i; /* INT, DUR (seconds) */
    double f;  /* FLOAT */
    char *s;   /* STRING (owned until taken) */
    size_t slen;
} tok;

typedef struct parser {
    const char *p; /* next byte */
    int line, col; /* of p */
    tok t;         /* current token */
    expr_errs *E;
    int failed;
    int depth;
    size_t nodes;
} parser;

static const struct {
    const char *word;
    tok_kind kind;
} keywords[] = {
    {"and", T_AND},   {"or", T_OR},     {"not", T_NOT},     {"in", T_IN},       {"is", T_IS},
    {"null", T_NULL}, {"true", T_TRUE}, {"false", T_FALSE}, {"where", T_WHERE},
};

static void fail(parser *P, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(parser *P, int line, int col, const char *fmt, ...)
{
    if (P->failed)
        return; /* the first syntax error is the one that means something */
    P->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    char *msg = xvasprintf(fmt, ap);
    va_end(ap);
    expr_err(P->E, line, col, "%s", msg);
    free(msg);
}

/* Every kid the parser attaches goes through here: the tree's height and
 * size stay bounded while it is built (a tree too deep to walk is never
 * made, not even to be freed). */
static void add_kid(parser *P, node *n, node *kid)
{
    node_add_kid(n, kid);
    if (++P->nodes > MAX_NODES)
        fail(P, n->line, n->col, "expression too long (more than %d terms)", MAX_NODES);
    else if (n->height > MAX_HEIGHT)
        fail(P, n->line, n->col,
             "expression too deep (more than %d operators one inside another; a long chain of"
             " 'or' comparing one field can be written 'field in [..]')",
             MAX_HEIGHT);
}

static void advance_char(parser *P)
{
    if (*P->p == '\n') {
        P->line++;
        P->col = 1;
    } else if (((unsigned char)*P->p & 0xC0) != 0x80) {
        P->col++;
    }
    P->p++;
}

/* Continuation bytes do not start a column. */
static void skip_bytes(parser *P, size_t n)
{
    while (n-- && *P->p)
        advance_char(P);
}

static const char *tok_desc(const tok *t, char *tmp, size_t n)
{
    switch (t->kind) {
    case T_EOF: return "the end of the expression";
    case T_STRING: return "a string";
    case T_INT:
    case T_FLOAT: return "a number";
    case T_DUR: return "a duration";
    default: break;
    }
    size_t len = t->len < 24 ? t->len : 24;
    snprintf(tmp, n, "'%.*s'", (int)len, t->start);
    return tmp;
}

static int lex_string(parser *P, tok *t)
{
    char q = *P->p;
    skip_bytes(P, 1);
    buf b;
    buf_init(&b);
    buf_adds(&b, "");
    for (;;) {
        char c = *P->p;
        if (!c) {
            fail(P, t->line, t->col, "unterminated string (add the closing %c)", q);
            buf_free(&b);
            return -1;
        }
        if (c == q) {
            skip_bytes(P, 1);
            break;
        }
        if (c == '\\') {
            int el = P->line, ec = P->col;
            skip_bytes(P, 1);
            char e = *P->p;
            switch (e) {
            case '\\': buf_addc(&b, '\\'); break;
            case '\'': buf_addc(&b, '\''); break;
            case '"': buf_addc(&b, '"'); break;
            case 'n': buf_addc(&b, '\n'); break;
            case 't': buf_addc(&b, '\t'); break;
            case 'r': buf_addc(&b, '\r'); break;
            default:
                fail(P, el, ec,
                     "unknown escape '\\%c' in a string (known: \\\\ \\' \\\" \\n \\t \\r)",
                     e ? e : ' ');
                buf_free(&b);
                return -1;
            }
            skip_bytes(P, 1);
            continue;
        }
        buf_addc(&b, c);
        skip_bytes(P, 1);
    }
    t->kind = T_STRING;
    t->slen = b.len;
    t->s = buf_steal(&b);
    return 0;
}

static int lex_number(parser *P, tok *t)
{
    const char *s = P->p;
    size_t n = 0;
    while (isdigit((unsigned char)s[n]))
        n++;
    int is_float = 0;
    if (s[n] == '.' && isdigit((unsigned char)s[n + 1])) {
        is_float = 1;
        n++;
        while (isdigit((unsigned char)s[n]))
            n++;
    }
    if ((s[n] == 'e' || s[n] == 'E') &&
        (isdigit((unsigned char)s[n + 1]) ||
         ((s[n + 1] == '+' || s[n + 1] == '-') && isdigit((unsigned char)s[n + 2])))) {
        is_float = 1;
        n += 2;
        while (isdigit((unsigned char)s[n]))
            n++;
    }
    if (!is_float && (isalpha((unsigned char)s[n]) || s[n] == '_')) {
        /* a duration: 90d, 12h, 1h30m */
        size_t m = n;
        while (isalnum((unsigned char)s[m]) || s[m] == '_')
            m++;
        char *text = xstrndup(s, m);
        int64_t ms;
        int bad = duration_parse_ms(text, &ms) != 0 || ms % 1000 != 0;
        if (bad) {
            fail(P, t->line, t->col,
                 "invalid number or duration '%s' (durations are like 90s, 30m, 12h, 7d, 2w)",
                 text);
            free(text);
            return -1;
        }
        free(text);
        t->kind = T_DUR;
        t->i = ms / 1000;
        t->len = m;
        skip_bytes(P, m);
        return 0;
    }
    char *text = xstrndup(s, n);
    if (is_float) {
        errno = 0;
        t->f = strtod(text, NULL);
        if (errno == ERANGE && isinf(t->f)) {
            fail(P, t->line, t->col, "number '%s' is too large", text);
            free(text);
            return -1;
        }
        t->kind = T_FLOAT;
    } else {
        errno = 0;
        long long v = strtoll(text, NULL, 10);
        if (errno == ERANGE) {
            fail(P, t->line, t->col, "integer '%s' is too large (at most 9223372036854775807)",
                 text);
            free(text);
            return -1;
        }
        t->i = v;
        t->kind = T_INT;
    }
    free(text);
    t->len = n;
    skip_bytes(P, n);
    return 0;
}

static void next(parser *P)
{
    free(P->t.s);
    memset(&P->t, 0, sizeof P->t);
    tok *t = &P->t;
    if (P->failed) {
        t->kind = T_ERROR;
        t->start = P->p;
        return;
    }
    while (*P->p == ' ' || *P->p == '\t' || *P->p == '\n' || *P->p == '\r')
        advance_char(P);
    t->line = P->line;
    t->col = P->col;
    t->start = P->p;
    char c = *P->p;
    if (!c) {
        t->kind = T_EOF;
        return;
    }
    if (isalpha((unsigned char)c) || c == '_') {
        size_t n = 0;
        while (isalnum((unsigned char)P->p[n]) || P->p[n] == '_')
            n++;
        t->kind = T_IDENT;
        t->len = n;
        for (size_t k = 0; k < sizeof keywords / sizeof keywords[0]; k++)
            if (strlen(keywords[k].word) == n && strncasecmp(P->p, keywords[k].word, n) == 0)
                t->kind = keywords[k].kind;
        skip_bytes(P, n);
        return;
    }
    if (isdigit((unsigned char)c)) {
        if (lex_number(P, t))
            t->kind = T_ERROR;
        return;
    }
    if (c == '\'' || c == '"') {
        if (lex_string(P, t))
            t->kind = T_ERROR;
        t->len = (size_t)(P->p - t->start);
        return;
    }
    char d = P->p[1];
    t->len = 1;
    switch (c) {
    case '(': t->kind = T_LPAREN; break;
    case ')': t->kind = T_RPAREN; break;
    case '[': t->kind = T_LBRACK; break;
    case ']': t->kind = T_RBRACK; break;
    case ',': t->kind = T_COMMA; break;
    case '.': t->kind = T_DOT; break;
    case '+': t->kind = T_PLUS; break;
    case '-': t->kind = T_MINUS; break;
    case '*': t->kind = T_STAR; break;
    case '/': t->kind = T_SLASH; break;
    case '%': t->kind = T_PERCENT; break;
    case '=':
        if (d == '=') {
            t->kind = T_EQ;
            t->len = 2;
        } else {
            fail(P, t->line, t->col, "'=' is not an operator: use '==' to compare");
            t->kind = T_ERROR;
        }
        break;
    case '!':
        if (d == '=') {
            t->kind = T_NE;
            t->len = 2;
        } else {
            fail(P, t->line, t->col, "'!' is not an operator: use 'not'");
            t->kind = T_ERROR;
        }
        break;
    case '<':
        if (d == '=') {
            t->kind = T_LE;
            t->len = 2;
        } else if (d == '>') {
            fail(P, t->line, t->col, "'<>' is not an operator: use '!='");
            t->kind = T_ERROR;
        } else {
            t->kind = T_LT;
        }
        break;
    case '>':
        if (d == '=') {
            t->kind = T_GE;
            t->len = 2;
        } else {
            t->kind = T_GT;
        }
        break;
    case '&':
        fail(P, t->line, t->col, "'%s' is not an operator: use 'and'", d == '&' ? "&&" : "&");
        t->kind = T_ERROR;
        break;
    case '|':
        fail(P, t->line, t->col, "'%s' is not an operator: use 'or'", d == '|' ? "||" : "|");
        t->kind = T_ERROR;
        break;
    default: {
        unsigned char u = (unsigned char)c;
        if (u >= 0x20 && u < 0x7f)
            fail(P, t->line, t->col, "unexpected character '%c'", c);
        else
            fail(P, t->line, t->col, "unexpected byte 0x%02x", u);
        t->kind = T_ERROR;
    }
    }
    if (t->kind != T_ERROR)
        skip_bytes(P, t->len);
}

static void expected(parser *P, const char *what)
{
    char tmp[40];
    fail(P, P->t.line, P->t.col, "expected %s, found %s", what, tok_desc(&P->t, tmp, sizeof tmp));
}

static node *parse_expr(parser *P);

static node *tok_node(parser *P, node_kind k)
{
    return node_new(k, P->t.line, P->t.col);
}

/* name ('.' name)* */
static node *parse_name(parser *P)
{
    node *n = tok_node(P, N_NAME);
    buf b;
    buf_init(&b);
    buf_add(&b, P->t.start, P->t.len);
    next(P);
    while (P->t.kind == T_DOT) {
        next(P);
        if (P->t.kind != T_IDENT) {
            expected(P, "a field name after '.'");
            break;
        }
        buf_addc(&b, '.');
        buf_add(&b, P->t.start, P->t.len);
        next(P);
    }
    n->name = buf_steal(&b);
    return n;
}

static int is_aggregate(const char *name, size_t len)
{
    static const char *const aggs[] = {"count", "sum", "min", "max", "avg", "exists"};
    for (size_t i = 0; i < 6; i++)
        if (strlen(aggs[i]) == len && strncmp(aggs[i], name, len) == 0)
            return 1;
    return 0;
}

static node *parse_call(parser *P)
{
    node *n = tok_node(P, N_CALL);
    n->name = xstrndup(P->t.start, P->t.len);
    n->name_line = P->t.line;
    n->name_col = P->t.col;
    int agg = is_aggregate(P->t.start, P->t.len);
    next(P); /* name */
    next(P); /* ( */
    if (P->t.kind == T_RPAREN) {
        next(P);
        return n;
    }
    for (;;) {
        add_kid(P, n, parse_expr(P));
        if (P->failed)
            return n;
        if (agg && P->t.kind == T_WHERE) {
            next(P);
            add_kid(P, n, parse_expr(P));
            n->fn = 1; /* has a where */
            if (P->failed)
                return n;
            if (P->t.kind != T_RPAREN) {
                expected(P, "')' to close the aggregate");
                return n;
            }
            next(P);
            return n;
        }
        if (P->t.kind == T_COMMA) {
            next(P);
            continue;
        }
        if (P->t.kind == T_RPAREN) {
            next(P);
            return n;
        }
        expected(P, agg ? "',', 'where' or ')'" : "',' or ')'");
        return n;
    }
}

static node *parse_primary(parser *P)
{
    node *n;
    switch (P->t.kind) {
    case T_INT:
        n = tok_node(P, N_LIT);
        n->lit.type = BATON_T_INT;
        n->lit.v.i = P->t.i;
        next(P);
        return n;
    case T_FLOAT:
        n = tok_node(P, N_LIT);
        n->lit.type = BATON_T_FLOAT;
        n->lit.v.f = P->t.f;
        next(P);
        return n;
    case T_DUR:
        n = tok_node(P, N_LIT);
        n->lit.type = BATON_T_DURATION;
        n->lit.v.dur = P->t.i;
        next(P);
        return n;
    case T_STRING:
        n = tok_node(P, N_LIT);
        n->lit.type = BATON_T_STRING;
        n->lit.v.s.ptr = P->t.s;
        n->lit.v.s.len = P->t.slen;
        P->t.s = NULL;
        next(P);
        return n;
    case T_TRUE:
    case T_FALSE:
        n = tok_node(P, N_LIT);
        n->lit.type = BATON_T_BOOL;
        n->lit.v.b = P->t.kind == T_TRUE;
        next(P);
        return n;
    case T_NULL:
        n = tok_node(P, N_LIT);
        n->lit.type = BATON_T_NULL;
        next(P);
        return n;
    case T_LPAREN: {
        int line = P->t.line, col = P->t.col;
        next(P);
        n = parse_expr(P);
        if (!P->failed && P->t.kind != T_RPAREN)
            fail(P, P->t.line, P->t.col, "expected ')' to close the '(' at %d:%d", line, col);
        next(P);
        return n;
    }
    case T_IDENT: {
        /* a call is a plain name and '(' right after it */
        const char *after = P->t.start + P->t.len;
        while (*after == ' ' || *after == '\t')
            after++;
        if (*after == '(')
            return parse_call(P);
        return parse_name(P);
    }
    case T_LBRACK:
        fail(P, P->t.line, P->t.col, "a list [..] only follows 'in' or 'not in'");
        return NULL;
    default: expected(P, "a value, a name or '('"); return NULL;
    }
}

static node *parse_unary(parser *P)
{
    if (P->t.kind == T_MINUS) {
        node *n = tok_node(P, N_NEG);
        next(P);
        if (++P->depth > MAX_DEPTH) {
            fail(P, n->line, n->col, "expression nested too deeply (more than %d levels)",
                 MAX_DEPTH);
            return n;
        }
        add_kid(P, n, parse_unary(P));
        P->depth--;
        return n;
    }
    return parse_primary(P);
}

static node *binary(parser *P, node_kind k, node *a, node *b, int line, int col)
{
    node *n = node_new(k, line, col);
    add_kid(P, n, a);
    add_kid(P, n, b);
    return n;
}

static node *parse_mul(parser *P)
{
    node *a = parse_unary(P);
    while (!P->failed && (P->t.kind == T_STAR || P->t.kind == T_SLASH || P->t.kind == T_PERCENT)) {
        node_kind k = P->t.kind == T_STAR ? N_MUL : P->t.kind == T_SLASH ? N_DIV : N_MOD;
        int line = P->t.line, col = P->t.col;
        next(P);
        a = binary(P, k, a, parse_unary(P), line, col);
    }
    return a;
}

static node *parse_add(parser *P)
{
    node *a = parse_mul(P);
    while (!P->failed && (P->t.kind == T_PLUS || P->t.kind == T_MINUS)) {
        node_kind k = P->t.kind == T_PLUS ? N_ADD : N_SUB;
        int line = P->t.line, col = P->t.col;
        next(P);
        a = binary(P, k, a, parse_mul(P), line, col);
    }
    return a;
}

static node *parse_list(parser *P, node *n)
{
    if (P->t.kind != T_LBRACK) {
        if (P->t.kind == T_LPAREN)
            fail(P, P->t.line, P->t.col, "a list is written in brackets: in ['a', 'b']");
        else
            expected(P, "a list '[' after 'in'");
        return n;
    }
    next(P);
    if (P->t.kind == T_RBRACK) {
        next(P);
        return n;
    }
    for (;;) {
        add_kid(P, n, parse_add(P));
        if (P->failed)
            return n;
        if (P->t.kind == T_COMMA) {
            next(P);
            continue;
        }
        if (P->t.kind == T_RBRACK) {
            next(P);
            return n;
        }
        expected(P, "',' or ']' in the list");
        return n;
    }
}

/* Is the next word `in` (the token after the current `not`)? */
static int peek_in(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return (p[0] == 'i' || p[0] == 'I') && (p[1] == 'n' || p[1] == 'N') &&
           !(isalnum((unsigned char)p[2]) || p[2] == '_');
}

/* add ('in' [..] | 'not' 'in' [..] | 'is' ['not'] 'null')* */
static node *parse_member(parser *P)
{
    node *a = parse_add(P);
    for (;;) {
        if (P->failed)
            return a;
        int line = P->t.line, col = P->t.col;
        if (P->t.kind == T_IN) {
            next(P);
            node *n = node_new(N_IN, line, col);
            add_kid(P, n, a);
            a = parse_list(P, n);
        } else if (P->t.kind == T_NOT && peek_in(P->p)) {
            /* only `not in` continues here; a bare `not` is a syntax error
             * the caller reports */
            next(P);
            next(P);
            node *n = node_new(N_NOTIN, line, col);
            add_kid(P, n, a);
            a = parse_list(P, n);
        } else if (P->t.kind == T_IS) {
            next(P);
            node_kind k = N_ISNULL;
            if (P->t.kind == T_NOT) {
                k = N_NOTNULL;
                next(P);
            }
            if (P->t.kind != T_NULL) {
                expected(P, k == N_ISNULL ? "'null' or 'not null' after 'is'"
                                          : "'null' after 'is not'");
                return a;
            }
            next(P);
            node *n = node_new(k, line, col);
            add_kid(P, n, a);
            a = n;
        } else {
            return a;
        }
    }
}

static int cmp_kind(tok_kind k, node_kind *out)
{
    switch (k) {
    case T_EQ: *out = N_EQ; return 1;
    case T_NE: *out = N_NE; return 1;
    case T_LT: *out = N_LT; return 1;
    case T_LE: *out = N_LE; return 1;
    case T_GT: *out = N_GT; return 1;
    case T_GE: *out = N_GE; return 1;
    default: return 0;
    }
}

static node *parse_cmp(parser *P)
{
    node *a = parse_member(P);
    node_kind k;
    if (P->failed || !cmp_kind(P->t.kind, &k))
        return a;
    int line = P->t.line, col = P->t.col;
    next(P);
    a = binary(P, k, a, parse_member(P), line, col);
    if (!P->failed && cmp_kind(P->t.kind, &k))
        fail(P, P->t.line, P->t.col,
             "comparisons do not chain: write 'a < b and b < c' instead of 'a < b < c'");
    return a;
}

static node *parse_not(parser *P)
{
    if (P->t.kind == T_NOT) {
        node *n = tok_node(P, N_NOT);
        next(P);
        if (++P->depth > MAX_DEPTH) {
            fail(P, n->line, n->col, "expression nested too deeply (more than %d levels)",
                 MAX_DEPTH);
            return n;
        }
        add_kid(P, n, parse_not(P));
        P->depth--;
        return n;
    }
    return parse_cmp(P);
}

static node *parse_and(parser *P)
{
    node *a = parse_not(P);
    while (!P->failed && P->t.kind == T_AND) {
        int line = P->t.line, col = P->t.col;
        next(P);
        a = binary(P, N_AND, a, parse_not(P), line, col);
    }
    return a;
}

static node *parse_expr(parser *P)
{
    if (++P->depth > MAX_DEPTH) {
        fail(P, P->t.line, P->t.col, "expression nested too deeply (more than %d levels)",
             MAX_DEPTH);
        return NULL;
    }
    node *a = parse_and(P);
    while (!P->failed && P->t.kind == T_OR) {
        int line = P->t.line, col = P->t.col;
        next(P);
        a = binary(P, N_OR, a, parse_and(P), line, col);
    }
    P->depth--;
    return a;
}

node *expr_parse(const char *text, expr_errs *E)
{
    parser P = {.p = text, .line = 1, .col = 1, .E = E};
    next(&P);
    if (P.t.kind == T_EOF) {
        fail(&P, 1, 1, "empty expression");
        return NULL;
    }
    node *n = parse_expr(&P);
    if (!P.failed && P.t.kind != T_EOF) {
        char tmp[40];
        const char *hint = "";
        if (P.t.kind == T_WHERE)
            hint = " ('where' only goes inside an aggregate: count(orders where ...))";
        else if (P.t.kind == T_IDENT || P.t.kind == T_STRING || P.t.kind == T_INT)
            hint = " (missing an operator such as 'and' or '=='?)";
        fail(&P, P.t.line, P.t.col, "unexpected %s after a complete expression%s",
             tok_desc(&P.t, tmp, sizeof tmp), hint);
    }
    free(P.t.s);
    if (P.failed) {
        node_free(n);
        return NULL;
    }
    return n;
}

node *node_new(node_kind k, int line, int col)
{
    node *n = xcalloc(1, sizeof *n);
    n->kind = k;
    n->line = line;
    n->col = col;
    n->type = EXPR_T_ANY;
    n->ref = -1;
    n->height = 1;
    return n;
}

void node_add_kid(node *n, node *kid)
{
    /* the capacity doubles at each power of two (a list of 100,000 is
     * not 100,000 copies) */
    if (n->nkids < 2 || !(n->nkids & (n->nkids - 1)))
        n->kids = xrealloc(n->kids, (n->nkids < 2 ? 2 : n->nkids * 2) * sizeof *n->kids);
    n->kids[n->nkids++] = kid;
    if (kid && kid->height >= n->height)
        n->height = kid->height + 1;
}

void node_free(node *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->nkids; i++)
        node_free(n->kids[i]);
    free(n->kids);
    if (n->lit.type == BATON_T_STRING)
        free((char *)n->lit.v.s.ptr);
    free(n->name);
    free(n);
}
