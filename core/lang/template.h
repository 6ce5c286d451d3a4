/* template — message templates: text with {{ }} tags, compiled once
 * against an expression scope, rendered many times.
 *
 *   {{ expr }}              the value of an expression
 *                           (docs/expressions.md), HTML-escaped (& < > " ') in an
 *                           HTML template, raw in text; NULL renders as
 *                           nothing; formatting as expr_value_format
 *                           (each context escapes as its TEMPLATE_* says)
 *   {{{ expr }}}            the value, never escaped (HTML you trust)
 *   {{#if expr}} a {{else}} b {{/if}}
 *                           a when expr is true, else b (NULL is not
 *                           true); {{else}} is optional; ifs nest
 *   {{#each link}} .. {{/each}}
 *   {{#each link limit 20}} .. {{/each}}
 *   {{#each link where COND order by EXPR desc, EXPR limit 20}} .. {{/each}}
 *                           once per row of a one-to-many link
 *                           (`orders`, `profile.orders`), at most `limit`
 *                           rows (default TEMPLATE_EACH_LIMIT). Inside,
 *                           a name is first a field (or link) of the
 *                           row's entity, else of the enclosing rows,
 *                           else of the record (`first_name`);
 *                           {{@index}} is 0, 1, ... The rows come from
 *                           env->rows (expr_env) for the ROWS ref of the
 *                           block, exactly as aggregates get theirs.
 *   {{! comment }}          nothing
 *
 * A `{{` that opens no tag is an error: write `{{ '{{' }}` for a literal
 * one. Errors say line:col within the template (and, through diag, the
 * file and line of the setting or the template file it came from).
 *
 * Compiled templates are immutable; any number of threads may render one
 * at once, each with its own arena. */
#ifndef BATON_TEMPLATE_H
#define BATON_TEMPLATE_H

#include <stddef.h>

#include "base/buf.h"
#include "base/diag.h"
#include "lang/expr.h"

typedef struct template template;

#define TEMPLATE_EACH_LIMIT 100

/* Where the rendered text goes, and so how each {{ }} value is escaped
 * (the flags' low 3 bits; TEMPLATE_HTML keeps its value). {{{ }}} is
 * never escaped; a warning says where it is used in a context other than
 * text or HTML. The same values as the SDK's baton_escape. */
enum {
    TEMPLATE_TEXT = 0,     /* as is */
    TEMPLATE_HTML = 1,     /* & < > " ' as entities */
    TEMPLATE_HEADER = 2,   /* a header's text: CR, LF and control bytes dropped */
    TEMPLATE_URL_LIST = 3, /* a header of <URL>s (List-Unsubscribe): inside <..>
                            percent-encoded, outside '<' '>' ',' CR LF dropped */
    TEMPLATE_URL = 4,      /* a URL: percent-encoded (RFC 3986 unreserved kept) */
    TEMPLATE_JSON = 5,     /* a JSON text: inside a string escaped as JSON, outside
                              one a JSON value (a string quoted, NULL as null) */
    TEMPLATE_FORM = 6,     /* an application/x-www-form-urlencoded body */
    TEMPLATE_TOPIC = 7,    /* an MQTT topic: '/', '+', '#', '%' percent-encoded */
    TEMPLATE_ESCAPE_MASK = 7,
};
/* The context of a message part a send sets by its name: "html" is HTML,
 * "subject" a header, "list_unsubscribe" a header of URLs, any other text. */
unsigned template_part_escape(const char *part);

/* Compile text in scope. Every error goes to d (o->file, o->line, then
 * the setting and line:col within the text). o may be NULL. Returns NULL
 * when any error was found. */
template *template_compile(const char *text, const expr_scope *sc, const expr_origin *o,
                           unsigned flags, diag *d);
/* The same, with the first error written to err as "2:14: message". */
template *template_compile_msg(const char *text, const expr_scope *sc, unsigned flags, char *err,
                               size_t errlen);
void template_free(template *t);

/* Render t, appending to out. The arena is reset before returning.
 * Returns 0, or -1 with err (an env callback failed, rows unavailable);
 * out then holds a partial rendering the caller should discard. */
int template_render(const template *t, const expr_env *env, expr_arena *arena, buf *out, char *err,
                    size_t errlen);

/* Every expression of the template, in order of appearance ({{ }}
 * values, #if conditions, and each #each's rows as a one-ref
 * expression): campaigns list their refs to know which columns a row must
 * carry, or compile them to SQL. */
size_t template_expr_count(const template *t);
const expr *template_expr_at(const template *t, size_t i);

/* The first warning of the compilation ("1:5: {{{ }}} ..."), or NULL. */
const char *template_warning(const template *t);

/* 1 when the template is plain text with no tags (its text is output
 * verbatim). */
int template_is_static(const template *t);

#endif
