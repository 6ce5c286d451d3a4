/* expr/ast — the compiled form shared by the parser, checker, evaluator
 * and SQL compiler of core/expr (and the template compiler). Not part of
 * the public API: see expr.h. */
#ifndef BATON_EXPR_AST_H
#define BATON_EXPR_AST_H

#include <stddef.h>
#include <stdint.h>

#include "base/diag.h"
#include "lang/expr.h"

typedef enum node_kind {
    N_LIT = 1, /* lit */
    N_NAME,    /* parse only: path of a name; becomes N_REF */
    N_REF,     /* ref: slot */
    N_CALL,    /* parse only: name(args); becomes N_FN or N_AGG */
    N_FN,      /* fn(kids) */
    N_AGG,     /* fn: AGG_*; ref: the ROWS slot; kids[0] value or NULL, kids[1] where or NULL */
    N_NEG,
    N_NOT,
    N_AND,
    N_OR,
    N_EQ,
    N_NE,
    N_LT,
    N_LE,
    N_GT,
    N_GE,
    N_ADD,
    N_SUB,
    N_MUL,
    N_DIV,
    N_MOD,
    N_IN, /* kids[0] in kids[1..] */
    N_NOTIN,
    N_ISNULL,
    N_NOTNULL,
} node_kind;

typedef enum fn_id {
    F_NOW = 1,
    F_TODAY,
    F_LOWER,
    F_UPPER,
    F_LENGTH,
    F_TRIM,
    F_CONTAINS,
    F_STARTS_WITH,
    F_ENDS_WITH,
    F_COALESCE,
    F_ABS,
    F_ROUND,
    F_DATE,
    F_TIMESTAMP,
    F_YEAR,
    F_MONTH,
    F_DAY,
    F_HOUR,
    F_WEEKDAY,
} fn_id;

typedef enum agg_id {
    AGG_COUNT = 1,
    AGG_SUM,
    AGG_MIN,
    AGG_MAX,
    AGG_AVG,
    AGG_EXISTS,
} agg_id;

typedef struct node {
    node_kind kind;
    int fn;          /* fn_id or agg_id */
    int type;        /* static type: baton_type or EXPR_T_ANY */
    int line, col;   /* 1-based, within the expression text */
    int height;      /* of the subtree: 1 for a leaf */
    int ref;         /* N_REF, N_AGG: slot */
    int level;       /* N_AGG: the level of its rows (the where's level) */
    int agg;         /* N_AGG: its number in the expression (expr_agg_count) */
    baton_value lit; /* N_LIT; strings owned (NUL-terminated) */
    char *name;      /* N_NAME: dotted path; N_CALL: function name */
    int name_line, name_col;
    size_t nkids;
    struct node **kids;
} node;

/* A ref plus the storage its strings and hops point to. */
typedef struct ref_slot {
    expr_ref pub;
    char *path, *prefix, *field;
    const schema_link **hops;
    const char *column;  /* typed extra field: its SQL column */
    int prefixed_entity; /* resolved through a scope prefix bound to an entity */
} ref_slot;

struct expr {
    char *text;
    node *root;
    ref_slot **refs;
    size_t nrefs;
    const schema *schema;
    const schema_entity *entity; /* the scope's row entity (SQL) */
    int max_level;
    uint64_t id;  /* unique in the process (expr_id) */
    size_t naggs; /* N_AGG nodes, numbered in tree order */
    const node **aggs;
    int owns_refs; /* 0 for the template's expressions sharing a table */
};

typedef struct scope_prefix {
    char *prefix;
    const schema_entity *entity; /* NULL: untyped */
} scope_prefix;

typedef struct scope_field {
    char *name;
    baton_type type;
    char *column;
} scope_field;

struct expr_scope {
    const schema *s;
    const schema_entity *entity;
    scope_prefix *prefixes;
    size_t nprefixes;
    scope_field *fields;
    size_t nfields;
    int open;
};

/* An error found while compiling: line:col within the text. */
typedef struct expr_errs {
    diag *d;
    const expr_origin *o;
    char *first; /* "1:9: message" of the first error */
    size_t n;
    int line0, col0; /* where the text starts inside a larger one (templates); 0: itself */
} expr_errs;

void expr_err(expr_errs *E, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* parse.c: text → tree (N_NAME, N_CALL unresolved); NULL on error. */
node *expr_parse(const char *text, expr_errs *E);
node *node_new(node_kind k, int line, int col);
void node_free(node *n);
void node_add_kid(node *n, node *kid);

/* Row levels open while checking (aggregates, template #each). */
#define EXPR_MAX_LEVEL 8
/* Bounds on one expression's tree (the parser refuses more): its height
 * (every stage after the parser recurses over it) and its node count. */
#define EXPR_MAX_HEIGHT 500
#define EXPR_MAX_NODES 100000
typedef struct check_frame {
    const schema_entity *entity; /* the rows' entity */
    const expr_ref *rows;        /* the ROWS ref that provides them */
} check_frame;

typedef struct check_ctx {
    const expr_scope *sc;
    expr *e;
    expr_errs *E;
    check_frame frames[EXPR_MAX_LEVEL + 1]; /* [0] unused */
    int level;
    /* Levels 1..outer_levels were opened by a template's #each: a name
     * unknown in their rows falls back to the enclosing rows, then to the
     * record. Aggregates' rows never fall back. */
    int outer_levels;
} check_ctx;

/* compile.c: compile text with rows already open (template #each):
 * frames[1..level]. */
expr *expr_compile_frames(const char *text, const expr_scope *sc, const check_frame *frames,
                          int level, unsigned flags, expr_errs *E);

/* check.c: resolve names to refs in ctx->e, compute types; 0 or -1. */
int expr_check(check_ctx *c, node *n);
/* Resolve `path` (a #each's rows) as a ROWS ref at the current level. */
const expr_ref *expr_check_rows(check_ctx *c, const char *path, int line, int col,
                                const schema_entity **entity);
void expr_refs_free(expr *e);

/* eval.c: evaluate with rows already open for levels 1..nrows. */
int expr_eval_at(const expr *e, const expr_env *env, expr_arena *arena, const void *const *rows,
                 int nrows, baton_value *out, char *err, size_t errlen);
/* The arena's bytes for a new string of len bytes. */
char *expr_arena_alloc(expr_arena *a, size_t len);

/* value.c */
const char *expr_type_name(int t);
int expr_num_of_string(const char *s, size_t len, baton_value *out);

#endif
