/* The delivery log's copy of a message: written by hand (it used to be a
 * jansson tree built and dumped for every message: a malloc per node),
 * read back with jansson (only rows picked up again go through it). The
 * text is what json_dumps(JSON_COMPACT) made of the same tree. */
#include "delivery/content.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/mem.h"

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if none: the
 * rules jansson's utf8_check_string applies (no overlongs, no surrogates,
 * nothing past U+10FFFF). */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

static int utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = p[i] < 0x80 ? 1 : utf8_seq(p + i, n - i);
        if (!k)
            return 0;
        i += k;
    }
    return 1;
}

/* An integer in decimal, without a printf: one per integer field of
 * every message's row. */
static void add_int(buf *b, int64_t v)
{
    char d[24], *p = d + sizeof d;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0)
        *--p = '-';
    buf_add(b, p, (size_t)(d + sizeof d - p));
}

/* A float as jansson writes one: 17 significant digits, always a point
 * or an exponent so that it reads back as a float, and an exponent with
 * no '+' and no leading zeros. */
static void add_real(buf *b, double f)
{
    char tmp[64];
    int k = snprintf(tmp, sizeof tmp, "%.17g", f);
    if (k <= 0 || (size_t)k >= sizeof tmp - 3) { /* cannot happen for a finite double */
        buf_adds(b, "null");
        return;
    }
    if (!strchr(tmp, '.') && !strchr(tmp, 'e')) {
        tmp[k++] = '.';
        tmp[k++] = '0';
        tmp[k] = '\0';
    }
    char *e = strchr(tmp, 'e');
    if (e) {
        char *start = e + 1, *end = start + 1;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start)
            memmove(start, end, strlen(end) + 1);
    }
    buf_adds(b, tmp);
}

static void add_value(buf *b, const baton_value *v)
{
    switch (v->type) {
    case BATON_T_BOOL: buf_adds(b, v->v.b ? "true" : "false"); break;
    case BATON_T_INT: add_int(b, (int64_t)v->v.i); break;
    case BATON_T_FLOAT:
        if (isfinite(v->v.f))
            add_real(b, v->v.f);
        else
            buf_adds(b, "null");
        break;
    case BATON_T_STRING:
        if (utf8_valid(v->v.s.ptr, v->v.s.len))
            buf_add_json_string(b, v->v.s.ptr, v->v.s.len);
        else
            buf_adds(b, "null");
        break;
    case BATON_T_DATE: buf_addf(b, "{\"date\":%" PRId64 "}", (int64_t)v->v.date); break;
    case BATON_T_TIMESTAMP: buf_addf(b, "{\"ts\":%" PRId64 "}", (int64_t)v->v.ts); break;
    case BATON_T_DURATION: buf_addf(b, "{\"dur\":%" PRId64 "}", (int64_t)v->v.dur); break;
    default: buf_adds(b, "null"); break;
    }
}

char *content_json(size_t nparts, char *const *names, char *const *values, const record *row)
{
    buf b;
    buf_init(&b);
    /* room for a usual message at once: growing by doubling from 64 bytes
     * cost a realloc at each step */
    size_t guess = 64;
    for (size_t i = 0; i < nparts; i++)
        guess += strlen(names[i]) + strlen(values[i]) + 8;
    for (size_t i = 0; row && i < row->n; i++)
        guess += strlen(row->v[i].name) + 32 +
                 (row->v[i].value.type == BATON_T_STRING ? row->v[i].value.v.s.len : 0);
    b.data = xmalloc(guess);
    b.cap = guess;
    b.data[0] = '\0';
    buf_adds(&b, "{\"parts\":[");
    int first = 1;
    for (size_t i = 0; i < nparts; i++) {
        size_t nl = strlen(names[i]), vl = strlen(values[i]);
        if (!utf8_valid(names[i], nl) || !utf8_valid(values[i], vl))
            continue;
        if (!first)
            buf_addc(&b, ',');
        first = 0;
        buf_addc(&b, '[');
        buf_add_json_string(&b, names[i], nl);
        buf_addc(&b, ',');
        buf_add_json_string(&b, values[i], vl);
        buf_addc(&b, ']');
    }
    buf_addc(&b, ']');
    if (row) {
        buf_adds(&b, ",\"row\":{");
        first = 1;
        for (size_t i = 0; i < row->n; i++) {
            const char *name = row->v[i].name;
            size_t nl = strlen(name);
            if (!utf8_valid(name, nl))
                continue;
            if (!first)
                buf_addc(&b, ',');
            first = 0;
            buf_add_json_string(&b, name, nl);
            buf_addc(&b, ':');
            add_value(&b, &row->v[i].value);
        }
        buf_addc(&b, '}');
    }
    buf_addc(&b, '}');
    return buf_steal(&b);
}

int content_parse(const char *text, size_t *nparts, char ***names, char ***values, record **rowp)
{
    json_t *o = text ? json_loads(text, 0, NULL) : NULL;
    json_t *parts = json_object_get(o, "parts");
    if (!json_is_array(parts)) {
        json_decref(o);
        return -1;
    }
    size_t n = json_array_size(parts);
    *names = xcalloc(n + 1, sizeof **names);
    *values = xcalloc(n + 1, sizeof **values);
    *nparts = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_array_get(parts, i);
        (*names)[*nparts] = xstrdup(json_string_value(json_array_get(p, 0)) ?: "");
        (*values)[(*nparts)++] = xstrdup(json_string_value(json_array_get(p, 1)) ?: "");
    }
    *rowp = NULL;
    json_t *row = json_object_get(o, "row");
    if (json_is_object(row)) {
        record *r = record_new();
        const char *name;
        json_t *j;
        json_object_foreach(row, name, j)
        {
            baton_value v = {.type = BATON_T_NULL};
            json_t *x;
            if (json_is_boolean(j))
                v = (baton_value){.type = BATON_T_BOOL, .v.b = json_is_true(j)};
            else if (json_is_integer(j))
                v = (baton_value){.type = BATON_T_INT, .v.i = json_integer_value(j)};
            else if (json_is_real(j))
                v = (baton_value){.type = BATON_T_FLOAT, .v.f = json_real_value(j)};
            else if (json_is_string(j))
                v = (baton_value){.type = BATON_T_STRING,
                                  .v.s = {json_string_value(j), json_string_length(j)}};
            else if ((x = json_object_get(j, "date")))
                v = (baton_value){.type = BATON_T_DATE, .v.date = json_integer_value(x)};
            else if ((x = json_object_get(j, "ts")))
                v = (baton_value){.type = BATON_T_TIMESTAMP, .v.ts = json_integer_value(x)};
            else if ((x = json_object_get(j, "dur")))
                v = (baton_value){.type = BATON_T_DURATION, .v.dur = json_integer_value(x)};
            record_set(r, name, &v);
        }
        *rowp = r;
    }
    json_decref(o);
    return 0;
}
