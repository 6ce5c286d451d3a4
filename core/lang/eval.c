/* expr/eval — the in-memory evaluator: a walk of the checked tree with
 * SQL's NULL semantics, dispatching on run-time types. Allocates nothing:
 * names come from the env by slot, strings made by functions go to the
 * caller's arena. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "lang/ast.h"
#include "lang/text.h"
#include "base/record.h"
#include "base/timefmt.h"
#include "base/zone.h"

typedef struct ev {
    const expr *e;
    const expr_env *env;
    expr_arena *arena;
    const void *rows[EXPR_MAX_LEVEL + 2];
    char *err;
    size_t errlen;
} ev;

#define SET_NULL(o) ((o)->type = BATON_T_NULL)

static int eval(ev *c, const node *n, baton_value *out);

static void set_bool(baton_value *o, int b)
{
    o->type = BATON_T_BOOL;
    o->v.b = b != 0;
}

static void set_float(baton_value *o, double f)
{
    if (isnan(f)) {
        SET_NULL(o); /* as SQLite: a NaN result is NULL */
        return;
    }
    o->type = BATON_T_FLOAT;
    o->v.f = f;
}

/* 1 true, 0 false, -1 unknown (NULL or not a bool). */
static int truth(const baton_value *v)
{
    if (v->type == BATON_T_BOOL)
        return v->v.b != 0;
    return -1;
}

static double as_double(const baton_value *v)
{
    return v->type == BATON_T_INT ? (double)v->v.i : v->v.f;
}

static int is_num(const baton_value *v)
{
    return v->type == BATON_T_INT || v->type == BATON_T_FLOAT;
}

/* A string meeting a typed value becomes that kind of value, if it
 * parses. 0, or -1 (the operation is then NULL). */
static int coerce_string(baton_value *s, const baton_value *other)
{
    if (s->type != BATON_T_STRING || other->type == BATON_T_STRING)
        return 0;
    switch (other->type) {
    case BATON_T_INT:
    case BATON_T_FLOAT: return expr_num_of_string(s->v.s.ptr, s->v.s.len, s);
    case BATON_T_TIMESTAMP:
    case BATON_T_DATE:
    case BATON_T_DURATION: {
        int64_t ts;
        if (timestamp_parse(s->v.s.ptr, s->v.s.len, &ts) != 0)
            return -1;
        s->type = BATON_T_TIMESTAMP;
        s->v.ts = ts;
        return 0;
    }
    default: return -1;
    }
}

static void arith_num(node_kind k, const baton_value *a, const baton_value *b, baton_value *o)
{
    if (a->type == BATON_T_INT && b->type == BATON_T_INT) {
        int64_t x = a->v.i, y = b->v.i, r;
        switch (k) {
        case N_ADD:
            if (__builtin_add_overflow(x, y, &r))
                set_float(o, (double)x + (double)y);
            else
                o->type = BATON_T_INT, o->v.i = r;
            return;
        case N_SUB:
            if (__builtin_sub_overflow(x, y, &r))
                set_float(o, (double)x - (double)y);
            else
                o->type = BATON_T_INT, o->v.i = r;
            return;
        case N_MUL:
            if (__builtin_mul_overflow(x, y, &r))
                set_float(o, (double)x * (double)y);
            else
                o->type = BATON_T_INT, o->v.i = r;
            return;
        case N_DIV:
            if (y == 0)
                SET_NULL(o);
            else if (x == INT64_MIN && y == -1)
                set_float(o, -(double)x);
            else
                o->type = BATON_T_INT, o->v.i = x / y;
            return;
        case N_MOD:
            if (y == 0)
                SET_NULL(o);
            else
                o->type = BATON_T_INT, o->v.i = y == -1 ? 0 : x % y;
            return;
        default: SET_NULL(o); return;
        }
    }
    double x = as_double(a), y = as_double(b);
    switch (k) {
    case N_ADD: set_float(o, x + y); return;
    case N_SUB: set_float(o, x - y); return;
    case N_MUL: set_float(o, x * y); return;
    case N_DIV:
        if (y == 0.0)
            SET_NULL(o);
        else
            set_float(o, x / y);
        return;
    case N_MOD: {
        /* SQLite: both sides cast to integers, the result a float */
        if (!(x > -9.2e18 && x < 9.2e18 && y > -9.2e18 && y < 9.2e18)) {
            SET_NULL(o);
            return;
        }
        int64_t ix = (int64_t)x, iy = (int64_t)y;
        if (iy == 0)
            SET_NULL(o);
        else
            set_float(o, (double)(iy == -1 ? 0 : ix % iy));
        return;
    }
    default: SET_NULL(o); return;
    }
}

static int64_t secs_of(const baton_value *v)
{
    return v->type == BATON_T_DATE ? v->v.date * 86400 : v->v.ts;
}

static int is_time(const baton_value *v)
{
    return v->type == BATON_T_DATE || v->type == BATON_T_TIMESTAMP;
}

static void arith(node_kind k, baton_value a, baton_value b, baton_value *o)
{
    SET_NULL(o);
    if (a.type == BATON_T_NULL || b.type == BATON_T_NULL)
        return;
    if (coerce_string(&a, &b) || coerce_string(&b, &a))
        return;
    if (is_num(&a) && is_num(&b)) {
        arith_num(k, &a, &b, o);
        return;
    }
    int64_t r;
    if (k == N_ADD && a.type == BATON_T_DURATION && is_time(&b)) {
        baton_value t = a;
        a = b;
        b = t;
    }
    if ((k == N_ADD || k == N_SUB) && is_time(&a) && b.type == BATON_T_DURATION) {
        int64_t d = k == N_ADD ? b.v.dur : -b.v.dur;
        if (k == N_SUB && b.v.dur == INT64_MIN)
            return;
        if (__builtin_add_overflow(secs_of(&a), d, &r))
            return;
        if (a.type == BATON_T_DATE) {
            o->type = BATON_T_DATE;
            o->v.date = floor_div(r, 86400);
        } else {
            o->type = BATON_T_TIMESTAMP;
            o->v.ts = r;
        }
        return;
    }
    if (k == N_SUB && is_time(&a) && is_time(&b)) {
        if (__builtin_sub_overflow(secs_of(&a), secs_of(&b), &r))
            return;
        o->type = BATON_T_DURATION;
        o->v.dur = r;
        return;
    }
    if (a.type == BATON_T_DURATION && b.type == BATON_T_DURATION && (k == N_ADD || k == N_SUB)) {
        if (k == N_ADD ? __builtin_add_overflow(a.v.dur, b.v.dur, &r)
                       : __builtin_sub_overflow(a.v.dur, b.v.dur, &r))
            return;
        o->type = BATON_T_DURATION;
        o->v.dur = r;
        return;
    }
    if (k == N_MUL && ((a.type == BATON_T_DURATION && b.type == BATON_T_INT) ||
                       (a.type == BATON_T_INT && b.type == BATON_T_DURATION))) {
        int64_t x = a.type == BATON_T_DURATION ? a.v.dur : a.v.i;
        int64_t y = b.type == BATON_T_DURATION ? b.v.dur : b.v.i;
        if (__builtin_mul_overflow(x, y, &r))
            return;
        o->type = BATON_T_DURATION;
        o->v.dur = r;
    }
}

static int fail(ev *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(ev *c, const char *fmt, ...)
{
    if (c->err && c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int get_ref(ev *c, const node *n, baton_value *out)
{
    const expr_ref *ref = &c->e->refs[n->ref]->pub;
    if (!c->env->get)
        return fail(c, "no value for '%s': the env has no get()", ref->path);
    int rc = c->env->get(c->env->ud, c->rows[ref->level], ref, out, c->err, c->errlen);
    if (rc < 0)
        return -1;
    if (rc > 0)
        SET_NULL(out);
    return 0;
}

/* The digit of *v before the point, then shift the next one in; '0' once
 * `left` significant digits are spent. */
static char next_digit(long double *v, int *left)
{
    if (*left <= 0)
        return '0';
    (*left)--;
    int d = (int)*v;
    *v = (*v - d) * 10.0L;
    return (char)('0' + d);
}

/* round(x, n) exactly as SQLite computes it: with 0 digits, half away from
 * zero through an int64; with more, SQLite prints "%!.*f" (adding a
 * rounder, plus a nudge of 3e-16 of the value, in long double, then
 * taking at most 26 significant digits) and reads the text back. The
 * same steps here give the same double. */
static double round_like_sqlite(double r, int64_t n)
{
    if (n > 30)
        n = 30;
    if (n < 0)
        n = 0;
    if (r < -4503599627370496.0 || r > 4503599627370496.0)
        return r;
    if (n == 0)
        return (double)((int64_t)(r + (r < 0 ? -0.5 : 0.5)));
    static const double round_by[] = {5.0e-01, 5.0e-02, 5.0e-03, 5.0e-04, 5.0e-05,
                                      5.0e-06, 5.0e-07, 5.0e-08, 5.0e-09, 5.0e-10};
    int neg = r < 0;
    long double v = neg ? -(long double)r : (long double)r;
    int prec = (int)n, idx = prec;
    double rounder = round_by[idx % 10];
    while (idx >= 10) {
        rounder *= 1.0e-10;
        idx -= 10;
    }
    double rx = (double)v;
    uint64_t u;
    memcpy(&u, &rx, sizeof u);
    int ex = -1023 + (int)((u >> 52) & 0x7ff);
    if (prec + ex / 3 < 15)
        rounder = (double)(rounder + v * 3e-16L);
    v += rounder;
    int e10 = 0;
    if (v > 0.0L) {
        long double scale = 1.0L;
        while (v >= 1e100L * scale && e10 <= 350) {
            scale *= 1e100L;
            e10 += 100;
        }
        while (v >= 1e10L * scale && e10 <= 350) {
            scale *= 1e10L;
            e10 += 10;
        }
        while (v >= 10.0L * scale && e10 <= 350) {
            scale *= 10.0L;
            e10++;
        }
        v /= scale;
        while (v < 1e-8L) {
            v *= 1e8L;
            e10 -= 8;
        }
        while (v < 1.0L) {
            v *= 10.0L;
            e10--;
        }
    }
    char tmp[128];
    size_t k = 0;
    int left = 26;
    if (neg)
        tmp[k++] = '-';
    if (e10 < 0)
        tmp[k++] = '0';
    else
        for (; e10 >= 0 && k < 100; e10--)
            tmp[k++] = next_digit(&v, &left);
    tmp[k++] = '.';
    for (e10++; e10 < 0 && prec > 0; prec--, e10++)
        tmp[k++] = '0';
    while (prec-- > 0 && k < 126)
        tmp[k++] = next_digit(&v, &left);
    tmp[k] = '\0';
    return strtod(tmp, NULL);
}

static int time_parts(baton_value v, int64_t *days, int64_t *secs)
{
    if (v.type == BATON_T_STRING) {
        int64_t ts;
        if (timestamp_parse(v.v.s.ptr, v.v.s.len, &ts) != 0)
            return -1;
        v.type = BATON_T_TIMESTAMP;
        v.v.ts = ts;
    }
    if (v.type == BATON_T_DATE) {
        *days = v.v.date;
        *secs = 0;
        return 0;
    }
    if (v.type == BATON_T_TIMESTAMP) {
        *days = floor_div(v.v.ts, 86400);
        *secs = v.v.ts - *days * 86400;
        return 0;
    }
    return -1;
}

/* A zone argument's wall clock at t: 0 with *local, or -1 (not a
 * string, or a zone the tz database does not have: the result is NULL). */
static int local_at(const baton_value *z, int64_t t, int64_t *local)
{
    char name[128];
    if (z->type != BATON_T_STRING || z->v.s.len >= sizeof name || memchr(z->v.s.ptr, 0, z->v.s.len))
        return -1;
    memcpy(name, z->v.s.ptr, z->v.s.len);
    name[z->v.s.len] = '\0';
    return zone_local(name, t, local);
}

static int eval_fn(ev *c, const node *n, baton_value *o)
{
    baton_value a, b;
    SET_NULL(o);
    switch ((fn_id)n->fn) {
    case F_NOW:
        o->type = BATON_T_TIMESTAMP;
        o->v.ts = c->env->now;
        return 0;
    case F_TODAY: {
        int64_t local = c->env->now;
        if (n->nkids == 1) {
            baton_value z;
            if (eval(c, n->kids[0], &z))
                return -1;
            if (local_at(&z, c->env->now, &local) != 0)
                return 0; /* NULL: no zone, or an unknown one */
        }
        o->type = BATON_T_DATE;
        o->v.date = floor_div(local, 86400);
        return 0;
    }
    case F_COALESCE:
        for (size_t i = 0; i < n->nkids; i++) {
            if (eval(c, n->kids[i], o))
                return -1;
            if (o->type != BATON_T_NULL)
                return 0;
        }
        return 0;
    default: break;
    }
    if (eval(c, n->kids[0], &a))
        return -1;
    if (n->nkids > 1 && eval(c, n->kids[1], &b))
        return -1;
    if (a.type == BATON_T_NULL || (n->nkids > 1 && b.type == BATON_T_NULL))
        return 0;
    switch ((fn_id)n->fn) {
    case F_LOWER:
    case F_UPPER: {
        if (a.type != BATON_T_STRING)
            return 0;
        if (!c->arena)
            return fail(c, "%s() needs an arena to make its string",
                        n->fn == F_LOWER ? "lower" : "upper");
        char *p = expr_arena_alloc(c->arena, a.v.s.len + 1);
        size_t len = text_case(a.v.s.ptr, a.v.s.len, p, n->fn == F_UPPER);
        o->type = BATON_T_STRING;
        o->v.s.ptr = p;
        o->v.s.len = len;
        return 0;
    }
    case F_LENGTH:
        if (a.type != BATON_T_STRING)
            return 0;
        o->type = BATON_T_INT;
        o->v.i = (int64_t)text_chars(a.v.s.ptr, a.v.s.len);
        return 0;
    case F_TRIM: {
        if (a.type != BATON_T_STRING)
            return 0;
        const char *p = a.v.s.ptr;
        size_t len = a.v.s.len;
        while (len && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
            p++, len--;
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '\r' ||
                       p[len - 1] == '\n'))
            len--;
        *o = a;
        o->v.s.ptr = p;
        o->v.s.len = len;
        return 0;
    }
    case F_CONTAINS:
    case F_STARTS_WITH:
    case F_ENDS_WITH: {
        if (a.type != BATON_T_STRING || b.type != BATON_T_STRING)
            return 0;
        size_t la = a.v.s.len, lb = b.v.s.len;
        int r;
        if (n->fn == F_CONTAINS)
            r = lb == 0 || (la >= lb && memmem(a.v.s.ptr, la, b.v.s.ptr, lb) != NULL);
        else if (n->fn == F_STARTS_WITH)
            r = la >= lb && (lb == 0 || memcmp(a.v.s.ptr, b.v.s.ptr, lb) == 0);
        else
            r = la >= lb && (lb == 0 || memcmp(a.v.s.ptr + la - lb, b.v.s.ptr, lb) == 0);
        set_bool(o, r);
        return 0;
    }
    case F_ABS:
        if (a.type == BATON_T_INT) {
            if (a.v.i == INT64_MIN)
                set_float(o, 9223372036854775808.0);
            else
                o->type = BATON_T_INT, o->v.i = a.v.i < 0 ? -a.v.i : a.v.i;
        } else if (a.type == BATON_T_FLOAT) {
            set_float(o, fabs(a.v.f));
        } else if (a.type == BATON_T_DURATION && a.v.dur != INT64_MIN) {
            o->type = BATON_T_DURATION;
            o->v.dur = a.v.dur < 0 ? -a.v.dur : a.v.dur;
        } else if (a.type == BATON_T_STRING && expr_num_of_string(a.v.s.ptr, a.v.s.len, &a) == 0) {
            set_float(o, fabs(as_double(&a)));
        }
        return 0;
    case F_ROUND: {
        if (a.type == BATON_T_STRING && expr_num_of_string(a.v.s.ptr, a.v.s.len, &a) != 0)
            return 0;
        if (!is_num(&a))
            return 0;
        int64_t digits = 0;
        if (n->nkids > 1) {
            if (b.type == BATON_T_INT)
                digits = b.v.i;
            else if (b.type == BATON_T_FLOAT && b.v.f > -1e9 && b.v.f < 1e9)
                digits = (int64_t)b.v.f;
            else
                return 0;
        }
        set_float(o, round_like_sqlite(as_double(&a), digits));
        return 0;
    }
    case F_DATE:
    case F_TIMESTAMP: {
        int64_t days, secs;
        if (time_parts(a, &days, &secs) != 0)
            return 0;
        if (n->fn == F_DATE) {
            o->type = BATON_T_DATE;
            o->v.date = days;
        } else {
            o->type = BATON_T_TIMESTAMP;
            o->v.ts = days * 86400 + secs;
        }
        return 0;
    }
    case F_YEAR:
    case F_MONTH:
    case F_DAY:
    case F_HOUR:
    case F_WEEKDAY: {
        int64_t days, secs;
        if (time_parts(a, &days, &secs) != 0)
            return 0;
        if (n->nkids == 2) { /* in a zone: a timestamp's wall clock there (a date has none) */
            int64_t t = days * 86400 + secs, local;
            if (local_at(&b, t, &local) != 0)
                return 0;
            if (a.type != BATON_T_DATE) {
                days = floor_div(local, 86400);
                secs = local - days * 86400;
            }
        }
        int64_t y;
        unsigned m, d;
        civil_from_days(days, &y, &m, &d);
        o->type = BATON_T_INT;
        switch ((fn_id)n->fn) {
        case F_YEAR: o->v.i = y; break;
        case F_MONTH: o->v.i = m; break;
        case F_DAY: o->v.i = d; break;
        case F_HOUR: o->v.i = secs / 3600; break;
        default: o->v.i = ((days % 7) + 7 + 4) % 7; break; /* 1970-01-01 was a Thursday */
        }
        return 0;
    }
    default: return 0;
    }
}

static int eval_agg(ev *c, const node *n, baton_value *o)
{
    const expr_ref *ref = &c->e->refs[n->ref]->pub;
    SET_NULL(o);
    if (!c->env->rows)
        return fail(c, "'%s': rows of a one-to-many link are not available here", ref->path);
    if (ref->level == 0 && c->env->agg && c->env->agg(c->env->ud, c->e, (size_t)n->agg, o) == 0)
        return 0; /* computed by the source */
    const void *const *rows = NULL;
    size_t nrows = 0;
    if (c->env->rows(c->env->ud, c->rows[ref->level], ref, &rows, &nrows, c->err, c->errlen) < 0)
        return -1;
    int level = n->level;
    const node *value = n->kids[0], *where = n->kids[1];
    int64_t count = 0, isum = 0;
    double fsum = 0;
    int approx = 0, found = 0, dur = 0;
    baton_value best = {.type = BATON_T_NULL}, v;
    for (size_t i = 0; i < nrows; i++) {
        c->rows[level] = rows[i];
        if (where) {
            if (eval(c, where, &v))
                return -1;
            if (truth(&v) != 1)
                continue;
        }
        if (n->fn == AGG_EXISTS) {
            set_bool(o, 1);
            return 0;
        }
        if (!value) {
            count++;
            continue;
        }
        if (eval(c, value, &v))
            return -1;
        if (v.type == BATON_T_NULL)
            continue;
        switch ((agg_id)n->fn) {
        case AGG_COUNT: count++; break;
        case AGG_SUM:
        case AGG_AVG:
            if (v.type == BATON_T_STRING && expr_num_of_string(v.v.s.ptr, v.v.s.len, &v) != 0)
                break;
            if (v.type == BATON_T_INT || v.type == BATON_T_DURATION) {
                int64_t x = v.type == BATON_T_INT ? v.v.i : v.v.dur;
                dur |= v.type == BATON_T_DURATION;
                fsum += (double)x;
                if (!approx && __builtin_add_overflow(isum, x, &isum))
                    approx = 1;
            } else if (v.type == BATON_T_FLOAT) {
                fsum += v.v.f;
                approx = 1;
            } else {
                break;
            }
            count++;
            break;
        case AGG_MIN:
        case AGG_MAX: {
            if (best.type == BATON_T_NULL) {
                best = v;
                break;
            }
            int r = expr_value_compare(&v, &best);
            if (r != 2 && (n->fn == AGG_MIN ? r < 0 : r > 0))
                best = v;
            break;
        }
        default: break;
        }
        found = 1;
    }
    switch ((agg_id)n->fn) {
    case AGG_EXISTS: set_bool(o, 0); break;
    case AGG_COUNT:
        o->type = BATON_T_INT;
        o->v.i = count;
        break;
    case AGG_SUM:
        if (!count)
            break;
        if (approx)
            set_float(o, fsum);
        else if (dur)
            o->type = BATON_T_DURATION, o->v.dur = isum;
        else
            o->type = BATON_T_INT, o->v.i = isum;
        break;
    case AGG_AVG:
        if (count)
            set_float(o, fsum / (double)count);
        break;
    case AGG_MIN:
    case AGG_MAX:
        if (found)
            *o = best;
        break;
    }
    return 0;
}

static int eval(ev *c, const node *n, baton_value *o)
{
    baton_value a, b;
    switch (n->kind) {
    case N_LIT: *o = n->lit; return 0;
    case N_REF: return get_ref(c, n, o);
    case N_FN: return eval_fn(c, n, o);
    case N_AGG: return eval_agg(c, n, o);
    case N_AND:
    case N_OR: {
        int stop = n->kind == N_OR; /* the value that decides alone */
        if (eval(c, n->kids[0], &a))
            return -1;
        int ta = truth(&a);
        if (ta == stop) {
            set_bool(o, stop);
            return 0;
        }
        if (eval(c, n->kids[1], &b))
            return -1;
        int tb = truth(&b);
        if (tb == stop)
            set_bool(o, stop);
        else if (ta == -1 || tb == -1)
            SET_NULL(o);
        else
            set_bool(o, !stop);
        return 0;
    }
    case N_NOT:
        if (eval(c, n->kids[0], &a))
            return -1;
        if (truth(&a) < 0)
            SET_NULL(o);
        else
            set_bool(o, !a.v.b);
        return 0;
    case N_EQ:
    case N_NE:
    case N_LT:
    case N_LE:
    case N_GT:
    case N_GE: {
        if (eval(c, n->kids[0], &a) || eval(c, n->kids[1], &b))
            return -1;
        if (a.type == BATON_T_NULL || b.type == BATON_T_NULL) {
            SET_NULL(o);
            return 0;
        }
        int r = expr_value_compare(&a, &b);
        if (r == 2) {
            SET_NULL(o);
            return 0;
        }
        int res;
        switch (n->kind) {
        case N_EQ: res = r == 0; break;
        case N_NE: res = r != 0; break;
        case N_LT: res = r < 0; break;
        case N_LE: res = r <= 0; break;
        case N_GT: res = r > 0; break;
        default: res = r >= 0; break;
        }
        set_bool(o, res);
        return 0;
    }
    case N_ADD:
    case N_SUB:
    case N_MUL:
    case N_DIV:
    case N_MOD:
        if (eval(c, n->kids[0], &a) || eval(c, n->kids[1], &b))
            return -1;
        arith(n->kind, a, b, o);
        return 0;
    case N_NEG:
        if (eval(c, n->kids[0], &a))
            return -1;
        if (a.type == BATON_T_STRING && expr_num_of_string(a.v.s.ptr, a.v.s.len, &a) != 0) {
            SET_NULL(o);
            return 0;
        }
        if (a.type == BATON_T_INT) {
            if (a.v.i == INT64_MIN)
                set_float(o, 9223372036854775808.0);
            else
                o->type = BATON_T_INT, o->v.i = -a.v.i;
        } else if (a.type == BATON_T_FLOAT) {
            set_float(o, -a.v.f);
        } else if (a.type == BATON_T_DURATION && a.v.dur != INT64_MIN) {
            o->type = BATON_T_DURATION;
            o->v.dur = -a.v.dur;
        } else {
            SET_NULL(o);
        }
        return 0;
    case N_IN:
    case N_NOTIN: {
        int neg = n->kind == N_NOTIN;
        if (n->nkids == 1) { /* x in [] is false even for NULL, as in SQLite */
            set_bool(o, neg);
            return 0;
        }
        if (eval(c, n->kids[0], &a))
            return -1;
        if (a.type == BATON_T_NULL) {
            SET_NULL(o);
            return 0;
        }
        int unknown = 0;
        for (size_t i = 1; i < n->nkids; i++) {
            if (eval(c, n->kids[i], &b))
                return -1;
            int r = b.type == BATON_T_NULL ? 2 : expr_value_compare(&a, &b);
            if (r == 0) {
                set_bool(o, !neg);
                return 0;
            }
            if (r == 2)
                unknown = 1;
        }
        if (unknown)
            SET_NULL(o);
        else
            set_bool(o, neg);
        return 0;
    }
    case N_ISNULL:
    case N_NOTNULL:
        if (eval(c, n->kids[0], &a))
            return -1;
        set_bool(o, (a.type == BATON_T_NULL) == (n->kind == N_ISNULL));
        return 0;
    default: SET_NULL(o); return 0;
    }
}

int expr_eval_at(const expr *e, const expr_env *env, expr_arena *arena, const void *const *rows,
                 int nrows, baton_value *out, char *err, size_t errlen)
{
    ev c;
    c.e = e;
    c.env = env;
    c.arena = arena;
    c.err = err;
    c.errlen = errlen;
    c.rows[0] = NULL;
    for (int i = 1; i <= nrows && i <= EXPR_MAX_LEVEL; i++)
        c.rows[i] = rows[i - 1];
    if (err && errlen)
        err[0] = '\0';
    return eval(&c, e->root, out);
}

int expr_eval(const expr *e, const expr_env *env, expr_arena *arena, baton_value *out, char *err,
              size_t errlen)
{
    ev c;
    c.e = e;
    c.env = env;
    c.arena = arena;
    c.err = err;
    c.errlen = errlen;
    c.rows[0] = NULL;
    return eval(&c, e->root, out);
}

int expr_eval_bool(const expr *e, const expr_env *env, expr_arena *arena, char *err, size_t errlen)
{
    baton_value v;
    if (expr_eval(e, env, arena, &v, err, errlen))
        return -1;
    return v.type == BATON_T_BOOL && v.v.b;
}

/* --- the record env ---------------------------------------------------- */

int expr_record_get(void *ud, const void *row, const expr_ref *ref, baton_value *out, char *err,
                    size_t errlen)
{
    const record *r = row ? (const record *)row : (const record *)ud;
    const baton_value *v = r ? record_find(r, ref->path) : NULL;
    if (!v)
        return 1;
    *out = *v;
    return 0;
}

expr_env expr_env_record(const baton_record *r, int64_t now)
{
    expr_env env = {.get = expr_record_get, .rows = NULL, .ud = (void *)r, .now = now};
    return env;
}
