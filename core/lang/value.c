/* expr/value — comparing, formatting and coercing baton_values the way
 * the language does, and the evaluator's string arena. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lang/ast.h"
#include "base/mem.h"
#include "base/timefmt.h"

/* --- arena ----------------------------------------------------------- */

typedef struct expr_chunk {
    struct expr_chunk *next;
    size_t used, cap;
    char data[];
} expr_chunk;

void expr_arena_init(expr_arena *a)
{
    memset(a, 0, sizeof *a);
}

void expr_arena_reset(expr_arena *a)
{
    while (a->head) {
        expr_chunk *c = a->head;
        a->head = c->next;
        c->used = 0;
        c->next = a->free;
        a->free = c;
    }
}

void expr_arena_free(expr_arena *a)
{
    expr_arena_reset(a);
    while (a->free) {
        expr_chunk *c = a->free;
        a->free = c->next;
        free(c);
    }
}

char *expr_arena_alloc(expr_arena *a, size_t len)
{
    expr_chunk *c = a->head;
    if (!c || c->cap - c->used < len) {
        /* take a free chunk big enough, else make one */
        expr_chunk **pp = &a->free;
        while (*pp && (*pp)->cap < len)
            pp = &(*pp)->next;
        if (*pp) {
            c = *pp;
            *pp = c->next;
        } else {
            size_t cap = len > 4096 ? len : 4096;
            c = xmalloc(sizeof *c + cap);
            c->cap = cap;
        }
        c->used = 0;
        c->next = a->head;
        a->head = c;
    }
    char *p = c->data + c->used;
    c->used += len;
    return p;
}

/* --- coercion and comparison ----------------------------------------- */

int expr_num_of_string(const char *s, size_t len, baton_value *out)
{
    char tmp[64];
    if (len == 0 || len >= sizeof tmp)
        return -1;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    char *end;
    errno = 0;
    long long i = strtoll(tmp, &end, 10);
    if (*end == '\0' && errno == 0 && tmp[0] != ' ' && tmp[0] != '+') {
        out->type = BATON_T_INT;
        out->v.i = i;
        return 0;
    }
    errno = 0;
    double f = strtod(tmp, &end);
    if (*end == '\0' && errno == 0 && tmp[0] != ' ' && isfinite(f)) {
        out->type = BATON_T_FLOAT;
        out->v.f = f;
        return 0;
    }
    return -1;
}

static int cmp_i(int64_t a, int64_t b)
{
    return a < b ? -1 : a > b;
}

static int cmp_if(int64_t i, double f)
{
    if (isnan(f))
        return 2;
    double d = (double)i;
    if (d < f)
        return -1;
    if (d > f)
        return 1;
    /* equal as doubles: decide exactly when f is an integer in range */
    if (f >= -9223372036854775808.0 && f < 9223372036854775808.0)
        return cmp_i(i, (int64_t)f);
    return 0;
}

static int is_numv(const baton_value *v)
{
    return v->type == BATON_T_INT || v->type == BATON_T_FLOAT;
}

int expr_value_compare(const baton_value *a, const baton_value *b)
{
    baton_value ca, cb;
    if (a->type == BATON_T_STRING && b->type != BATON_T_STRING) {
        if (b->type == BATON_T_TIMESTAMP || b->type == BATON_T_DATE) {
            if (timestamp_parse(a->v.s.ptr, a->v.s.len, &ca.v.ts) != 0)
                return 2;
            ca.type = BATON_T_TIMESTAMP;
            a = &ca;
        } else if (is_numv(b)) {
            if (expr_num_of_string(a->v.s.ptr, a->v.s.len, &ca) != 0)
                return 2;
            a = &ca;
        } else {
            return 2;
        }
    } else if (b->type == BATON_T_STRING && a->type != BATON_T_STRING) {
        int r = expr_value_compare(b, a);
        return r == 2 ? 2 : -r;
    }
    if (a->type == BATON_T_DATE && b->type == BATON_T_TIMESTAMP) {
        ca.type = BATON_T_TIMESTAMP;
        ca.v.ts = a->v.date * 86400;
        a = &ca;
    } else if (b->type == BATON_T_DATE && a->type == BATON_T_TIMESTAMP) {
        cb.type = BATON_T_TIMESTAMP;
        cb.v.ts = b->v.date * 86400;
        b = &cb;
    }
    switch (a->type) {
    case BATON_T_INT:
        if (b->type == BATON_T_INT)
            return cmp_i(a->v.i, b->v.i);
        if (b->type == BATON_T_FLOAT)
            return cmp_if(a->v.i, b->v.f);
        return 2;
    case BATON_T_FLOAT:
        if (b->type == BATON_T_FLOAT) {
            if (isnan(a->v.f) || isnan(b->v.f))
                return 2;
            return a->v.f < b->v.f ? -1 : a->v.f > b->v.f;
        }
        if (b->type == BATON_T_INT) {
            int r = cmp_if(b->v.i, a->v.f);
            return r == 2 ? 2 : -r;
        }
        return 2;
    case BATON_T_STRING: {
        if (b->type != BATON_T_STRING)
            return 2;
        size_t n = a->v.s.len < b->v.s.len ? a->v.s.len : b->v.s.len;
        int r = n ? memcmp(a->v.s.ptr, b->v.s.ptr, n) : 0;
        if (r)
            return r < 0 ? -1 : 1;
        return cmp_i((int64_t)a->v.s.len, (int64_t)b->v.s.len);
    }
    case BATON_T_BOOL:
        if (b->type != BATON_T_BOOL)
            return 2;
        return cmp_i(a->v.b != 0, b->v.b != 0);
    case BATON_T_DATE: return b->type == BATON_T_DATE ? cmp_i(a->v.date, b->v.date) : 2;
    case BATON_T_TIMESTAMP: return b->type == BATON_T_TIMESTAMP ? cmp_i(a->v.ts, b->v.ts) : 2;
    case BATON_T_DURATION: return b->type == BATON_T_DURATION ? cmp_i(a->v.dur, b->v.dur) : 2;
    default: return 2;
    }
}

int expr_value_true(const baton_value *v)
{
    return v->type == BATON_T_BOOL && v->v.b;
}

void expr_value_format(const baton_value *v, buf *out)
{
    char tmp[64];
    switch (v->type) {
    case BATON_T_NULL: break;
    case BATON_T_BOOL: buf_adds(out, v->v.b ? "true" : "false"); break;
    case BATON_T_INT: buf_addf(out, "%lld", (long long)v->v.i); break;
    case BATON_T_FLOAT:
        if (isnan(v->v.f)) {
            buf_adds(out, "NaN");
        } else if (isinf(v->v.f)) {
            buf_adds(out, v->v.f < 0 ? "-Inf" : "Inf");
        } else {
            snprintf(tmp, sizeof tmp, "%.15g", v->v.f);
            buf_adds(out, tmp);
        }
        break;
    case BATON_T_STRING: buf_add(out, v->v.s.ptr, v->v.s.len); break;
    case BATON_T_DATE:
        date_format(v->v.date, tmp);
        buf_adds(out, tmp);
        break;
    case BATON_T_TIMESTAMP:
        timestamp_format(v->v.ts, tmp);
        buf_adds(out, tmp);
        break;
    case BATON_T_DURATION:
        duration_format(v->v.dur, tmp, sizeof tmp);
        buf_adds(out, tmp);
        break;
    }
}

int expr_value_stored(baton_value *v, int want)
{
    int64_t x;
    if (want != BATON_T_TIMESTAMP && want != BATON_T_DATE)
        return 0;
    switch (v->type) {
    case BATON_T_INT: x = v->v.i; break;
    case BATON_T_FLOAT:
        if (!(v->v.f > -9.2e18 && v->v.f < 9.2e18))
            return 0;
        x = (int64_t)v->v.f;
        break;
    case BATON_T_STRING:
        if (want == BATON_T_DATE && date_parse(v->v.s.ptr, v->v.s.len, &x) == 0) {
            v->type = BATON_T_DATE;
            v->v.date = x;
            return 1;
        }
        if (timestamp_parse(v->v.s.ptr, v->v.s.len, &x) != 0)
            return 0;
        break;
    default: return 0;
    }
    if (want == BATON_T_DATE) {
        v->type = BATON_T_DATE;
        v->v.date = floor_div(x, 86400);
    } else {
        v->type = BATON_T_TIMESTAMP;
        v->v.ts = x;
    }
    return 1;
}

static int digits_at(const char *s, const char *pat)
{
    for (; *pat; pat++, s++)
        if (*pat == 'd' ? !(*s >= '0' && *s <= '9') : *s != *pat)
            return 0;
    return 1;
}

int expr_value_stored_form(const baton_value *v, int want)
{
    if (v->type == BATON_T_STRING) {
        const char *p = v->v.s.ptr;
        size_t n = v->v.s.len;
        if (want == BATON_T_TIMESTAMP && n == 20 && digits_at(p, "dddd-dd-ddTdd:dd:ddZ"))
            return 0;
        if (want == BATON_T_DATE && n == 10 && digits_at(p, "dddd-dd-dd"))
            return 0;
    }
    baton_value c = *v;
    return expr_value_stored(&c, want) ? 1 : -1;
}
