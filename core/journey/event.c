#include "journey/event.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/mem.h"
#include "base/timefmt.h"
#include "base/utf8.h"

/* FNV-1a: a stable id for events that carry none, so a source that
 * redelivers the same bytes is still deduplicated. */
static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static int fail(char *reason, size_t reasonlen, const char *msg)
{
    snprintf(reason, reasonlen, "%s", msg);
    return -1;
}

static char *string_member(json_t *o, const char *name, int *bad)
{
    json_t *v = json_object_get(o, name);
    *bad = 0;
    if (!v || json_is_null(v))
        return NULL;
    if (json_is_string(v) && json_string_length(v) > 0)
        return xstrndup(json_string_value(v), json_string_length(v));
    if (json_is_integer(v)) /* numeric profile ids are common enough */
        return xasprintf("%lld", (long long)json_integer_value(v));
    *bad = 1;
    return NULL;
}

/* ---- the envelope's reader -------------------------------------------
 * json_loadb cost an event more than the rest of its intake (its lexer
 * reads through a stream callback byte by byte and saves each token
 * again): most events are plain objects of plain strings and numbers, so
 * those are read here in one pass into the same jansson values. Anything
 * else (an escape, a control character, a number past int64 or double,
 * a duplicate key, deep nesting, anything that is not JSON) is left to
 * json_loadb, which decides and gives the reason: this reader accepts
 * only what jansson accepts, and builds what it builds. */

typedef struct fastrd {
    const char *p, *end;
    int depth;
    const char *data; /* the top object's "data" value, data_len bytes */
    size_t data_len;
} fastrd;

#define FAST_DEPTH 32

static void fast_ws(fastrd *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

/* A string with no escape and no control character: its bytes (the input
 * is valid UTF-8, checked before). 0, or -1 to leave it to jansson. */
static int fast_str(fastrd *r, const char **s, size_t *n)
{
    const char *q = ++r->p; /* past the quote */
    while (q < r->end && *q != '"') {
        if (*q == '\\' || (unsigned char)*q < 0x20)
            return -1;
        q++;
    }
    if (q >= r->end)
        return -1;
    *s = r->p;
    *n = (size_t)(q - r->p);
    r->p = q + 1;
    return 0;
}

static json_t *fast_value(fastrd *r);

/* JSON's number grammar exactly, then strtoll or strtod as jansson does;
 * out of range is jansson's error to give. */
static json_t *fast_number(fastrd *r)
{
    const char *q = r->p;
    int real = 0;
    if (q < r->end && *q == '-')
        q++;
    if (q >= r->end || *q < '0' || *q > '9')
        return NULL;
    if (*q == '0')
        q++;
    else
        while (q < r->end && *q >= '0' && *q <= '9')
            q++;
    if (q < r->end && *q == '.') {
        real = 1;
        if (++q >= r->end || *q < '0' || *q > '9')
            return NULL;
        while (q < r->end && *q >= '0' && *q <= '9')
            q++;
    }
    if (q < r->end && (*q == 'e' || *q == 'E')) {
        real = 1;
        if (++q < r->end && (*q == '+' || *q == '-'))
            q++;
        if (q >= r->end || *q < '0' || *q > '9')
            return NULL;
        while (q < r->end && *q >= '0' && *q <= '9')
            q++;
    }
    size_t n = (size_t)(q - r->p);
    char tmp[64];
    if (n >= sizeof tmp)
        return NULL;
    memcpy(tmp, r->p, n);
    tmp[n] = '\0';
    char *stop;
    errno = 0;
    json_t *v;
    if (real) {
        double d = strtod(tmp, &stop);
        if (errno || stop != tmp + n || !isfinite(d))
            return NULL;
        v = json_real(d);
    } else {
        long long ll = strtoll(tmp, &stop, 10);
        if (errno || stop != tmp + n)
            return NULL;
        v = json_integer(ll);
    }
    r->p = q;
    return v;
}

static json_t *fast_word(fastrd *r, const char *w, size_t n, json_t *v)
{
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, w, n))
        return NULL;
    r->p += n;
    return v;
}

static json_t *fast_object(fastrd *r)
{
    json_t *o = json_object();
    r->p++; /* '{' */
    fast_ws(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        return o;
    }
    for (;;) {
        const char *k;
        size_t kn;
        if (r->p >= r->end || *r->p != '"' || fast_str(r, &k, &kn) || json_object_getn(o, k, kn))
            goto fail;
        fast_ws(r);
        if (r->p >= r->end || *r->p != ':')
            goto fail;
        r->p++;
        fast_ws(r);
        const char *at = r->p;
        json_t *v = fast_value(r);
        if (!v || json_object_setn_new_nocheck(o, k, kn, v))
            goto fail;
        if (r->depth == 1 && kn == 4 && !memcmp(k, "data", 4)) {
            r->data = at;
            r->data_len = (size_t)(r->p - at);
        }
        fast_ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            fast_ws(r);
            continue;
        }
        if (r->p < r->end && *r->p == '}') {
            r->p++;
            return o;
        }
        goto fail;
    }
fail:
    json_decref(o);
    return NULL;
}

static json_t *fast_array(fastrd *r)
{
    json_t *a = json_array();
    r->p++; /* '[' */
    fast_ws(r);
    if (r->p < r->end && *r->p == ']') {
        r->p++;
        return a;
    }
    for (;;) {
        json_t *v = fast_value(r);
        if (!v || json_array_append_new(a, v))
            goto fail;
        fast_ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            fast_ws(r);
            continue;
        }
        if (r->p < r->end && *r->p == ']') {
            r->p++;
            return a;
        }
        goto fail;
    }
fail:
    json_decref(a);
    return NULL;
}

static json_t *fast_value(fastrd *r)
{
    if (r->p >= r->end)
        return NULL;
    json_t *v = NULL;
    switch (*r->p) {
    case '"': {
        const char *s;
        size_t n;
        return fast_str(r, &s, &n) ? NULL : json_stringn_nocheck(s, n);
    }
    case '{':
    case '[':
        if (++r->depth > FAST_DEPTH)
            return NULL;
        v = *r->p == '{' ? fast_object(r) : fast_array(r);
        r->depth--;
        return v;
    case 't': return fast_word(r, "true", 4, json_true());
    case 'f': return fast_word(r, "false", 5, json_false());
    case 'n': return fast_word(r, "null", 4, json_null());
    default: return fast_number(r);
    }
}

/* The event's object read by the reader above, or NULL: then jansson
 * reads it (and says why it is not JSON, when it is not). *data_off and
 * *data_len: where its "data" member's value is (len 0: none). */
static json_t *fast_load(const char *json, size_t len, size_t *data_off, size_t *data_len)
{
    fastrd r = {json, json + len, 0, NULL, 0};
    fast_ws(&r);
    if (r.p >= r.end || *r.p != '{')
        return NULL;
    json_t *root = fast_value(&r);
    fast_ws(&r);
    if (root && r.p != r.end) {
        json_decref(root);
        return NULL;
    }
    *data_off = r.data ? (size_t)(r.data - json) : 0;
    *data_len = r.data ? r.data_len : 0;
    return root;
}

json_t *jevent_read_object(const char *json, size_t len, size_t *used, size_t *data_off,
                           size_t *data_len)
{
    fastrd r = {json, json + len, 0, NULL, 0};
    if (!len || *json != '{')
        return NULL;
    json_t *v = fast_value(&r);
    if (v) {
        *used = (size_t)(r.p - json);
        *data_off = r.data ? (size_t)(r.data - json) : 0;
        *data_len = r.data ? r.data_len : 0;
    }
    return v;
}

int jevent_parse(const char *json, size_t len, int64_t now_ms, jevent *ev, char *reason,
                 size_t reasonlen)
{
    size_t at;
    if (!utf8_text(json, len, &at)) {
        memset(ev, 0, sizeof *ev);
        /* the bytes exactly as they came, NULs included: the dead-letter
         * table keeps them all (a copy that stopped at a NUL, used with the
         * full length, read past its end) */
        ev->raw = xmemdup0(json, len);
        ev->rawlen = len;
        unsigned char c = (unsigned char)json[at];
        if (c)
            snprintf(reason, reasonlen, "not UTF-8: byte 0x%02x at offset %zu", c, at);
        else
            snprintf(reason, reasonlen, "a NUL byte at offset %zu", at);
        return -1;
    }
    json_error_t je;
    /* jansson refuses \u0000 and lone surrogates in strings, and nesting
     * deeper than 2048 (JSON_PARSER_MAX_DEPTH): each is a reason here */
    size_t data_off = 0, data_len = 0;
    json_t *root = fast_load(json, len, &data_off, &data_len);
    if (!root)
        root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        memset(ev, 0, sizeof *ev);
        ev->raw = xmemdup0(json, len);
        ev->rawlen = len;
        jevent_json_error(&je, reason, reasonlen);
        return -1;
    }
    int rc = jevent_from_json(root, json, len, now_ms, ev, reason, reasonlen);
    json_decref(root);
    if (rc == 0 && ev->data && data_len) { /* fast_load read it: its bytes stand for it */
        ev->data_off = data_off;
        ev->data_len = data_len;
    }
    return rc;
}

void jevent_json_error(const json_error_t *je, char *reason, size_t reasonlen)
{
    snprintf(reason, reasonlen, "not JSON: %s at position %d", je->text, je->position);
    utf8_trim(reason);
}

int jevent_from_json(json_t *root, const char *json, size_t len, int64_t now_ms, jevent *ev,
                     char *reason, size_t reasonlen)
{
    memset(ev, 0, sizeof *ev);
    ev->raw = xmemdup0(json, len);
    ev->rawlen = len;
    int bad;
    if (!json_is_object(root))
        return fail(reason, reasonlen, "not a JSON object");
    ev->type = string_member(root, "type", &bad);
    if (!ev->type)
        return fail(reason, reasonlen, bad ? "'type' must be a non-empty string" : "no 'type'");
    ev->profile = string_member(root, "profile", &bad);
    if (!ev->profile)
        return fail(reason, reasonlen,
                    bad ? "'profile' must be a non-empty string" : "no 'profile'");
    ev->id = string_member(root, "id", &bad);
    if (bad)
        return fail(reason, reasonlen, "'id' must be a non-empty string");
    if (!ev->id)
        ev->id = xasprintf("h:%016llx", (unsigned long long)fnv1a(json, len));
    json_t *t = json_object_get(root, "time");
    ev->time_ms = now_ms;
    if (t && !json_is_null(t)) {
        int64_t secs;
        if (!json_is_string(t) ||
            timestamp_parse(json_string_value(t), json_string_length(t), &secs) != 0)
            return fail(reason, reasonlen,
                        "'time' must be an ISO 8601 timestamp such as \"2026-11-23T10:00:00Z\"");
        ev->time_ms = secs * 1000;
    }
    json_t *data = json_object_get(root, "data");
    if (data && !json_is_null(data)) {
        if (!json_is_object(data))
            return fail(reason, reasonlen, "'data' must be a JSON object");
        ev->data = json_incref(data);
    }
    return 0;
}

int jevent_from_stored(const char *id, const char *type, const char *profile, int64_t time_ms,
                       const char *raw, size_t rawlen, jevent *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->id = xstrdup(id);
    ev->type = xstrdup(type);
    ev->profile = xstrdup(profile);
    ev->time_ms = time_ms;
    if (!raw) {
        raw = "{}";
        rawlen = 2;
    }
    ev->raw = xmemdup0(raw, rawlen);
    ev->rawlen = rawlen;
    size_t data_off = 0, data_len = 0;
    json_t *root = fast_load(ev->raw, ev->rawlen, &data_off, &data_len);
    if (!root)
        root = json_loadb(ev->raw, ev->rawlen, 0, NULL);
    if (root) {
        json_t *data = json_object_get(root, "data");
        if (json_is_object(data)) {
            ev->data = json_incref(data);
            ev->data_off = data_off;
            ev->data_len = data_len;
        }
        json_decref(root);
    }
    return 0;
}

void jevent_free(jevent *ev)
{
    free(ev->id);
    free(ev->type);
    free(ev->profile);
    free(ev->raw);
    json_decref(ev->data);
    memset(ev, 0, sizeof *ev);
}

json_t *jevent_field(const jevent *ev, const char *name)
{
    if (!ev)
        return NULL;
    if (!strcmp(name, "type"))
        return json_string(ev->type);
    if (!strcmp(name, "id"))
        return json_string(ev->id);
    if (!strcmp(name, "profile"))
        return json_string(ev->profile);
    if (!strcmp(name, "time")) {
        char ts[21];
        timestamp_format(ev->time_ms / 1000, ts);
        return json_string(ts);
    }
    json_t *cur = ev->data;
    const char *p = name;
    while (cur && *p) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        cur = json_is_object(cur) ? json_object_getn(cur, p, l) : NULL;
        p += l + (dot ? 1 : 0);
        if (!dot)
            break;
    }
    return cur ? json_incref(cur) : NULL;
}

/* Written directly: json_dumps of the envelope cost more than the rest of
 * the instance's row. */
char *jevent_text(const jevent *ev)
{
    char ts[21];
    timestamp_format(ev->time_ms / 1000, ts);
    buf b;
    buf_init(&b);
    const char *const name[] = {"{\"id\":", ",\"type\":", ",\"profile\":"};
    const char *const val[] = {ev->id, ev->type, ev->profile};
    for (int i = 0; i < 3; i++) {
        buf_adds(&b, name[i]);
        buf_add_json_string(&b, val[i] ? val[i] : "", val[i] ? strlen(val[i]) : 0);
    }
    buf_adds(&b, ",\"time\":\"");
    buf_adds(&b, ts);
    buf_adds(&b, "\",\"data\":");
    if (ev->data && ev->data_len && ev->data_off + ev->data_len <= ev->rawlen) {
        /* read from these bytes, with no escape in them: they are JSON
         * text of the same object (a dump cost more than the rest) */
        buf_add(&b, ev->raw + ev->data_off, ev->data_len);
    } else {
        char *data = ev->data ? json_dumps(ev->data, JSON_COMPACT) : NULL;
        buf_adds(&b, data ? data : "{}");
        free(data);
    }
    buf_addc(&b, '}');
    return b.data;
}

json_t *jevent_json(const jevent *ev)
{
    /* jevent_parse checked the strings' UTF-8 already: no json_pack
     * format to parse, no second check */
    char ts[21];
    timestamp_format(ev->time_ms / 1000, ts);
    json_t *o = json_object();
    const char *const name[] = {"id", "type", "profile"};
    const char *const val[] = {ev->id, ev->type, ev->profile};
    for (int i = 0; i < 3; i++)
        json_object_set_new_nocheck(o, name[i], json_string_nocheck(val[i] ? val[i] : ""));
    json_object_set_new_nocheck(o, "time", json_string_nocheck(ts));
    json_object_set_new_nocheck(o, "data", ev->data ? json_incref(ev->data) : json_object());
    return o;
}
