/* TZif (RFC 8536) version 2+ reader: the 64-bit transition table, then the
 * footer's POSIX TZ rule ("CET-1CEST,M3.5.0,M10.5.0/3") for instants past
 * the last transition. */
#include "base/zone.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/timefmt.h"

typedef struct rule_date {
    int m, w, d;  /* Mm.w.d */
    int32_t secs; /* local time of the change */
} rule_date;

struct zone {
    int64_t *trans; /* transition instants */
    int32_t *off;   /* offset in force from trans[i] */
    size_t n;
    int32_t first_off; /* before the first transition */
    int has_rule;      /* footer: std/dst with dates */
    int32_t std_off, dst_off;
    rule_date start, end;
};

static int64_t be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return (int64_t)v;
}
static int32_t be32(const unsigned char *p)
{
    return (int32_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
}

/* POSIX offsets are west-positive: "CET-1" is UTC+1. */
static const char *parse_name(const char *s)
{
    if (*s == '<') {
        const char *e = strchr(s, '>');
        return e ? e + 1 : NULL;
    }
    while (isalpha((unsigned char)*s))
        s++;
    return s;
}
static const char *parse_hms(const char *s, int32_t *secs)
{
    int sign = 1;
    if (*s == '+' || *s == '-')
        sign = *s++ == '-' ? -1 : 1;
    if (!isdigit((unsigned char)*s))
        return NULL;
    int h = (int)strtol(s, (char **)&s, 10), m = 0, sec = 0;
    if (*s == ':') {
        m = (int)strtol(s + 1, (char **)&s, 10);
        if (*s == ':')
            sec = (int)strtol(s + 1, (char **)&s, 10);
    }
    *secs = sign * (h * 3600 + m * 60 + sec);
    return s;
}
static const char *parse_date(const char *s, rule_date *r)
{
    if (*s != 'M')
        return NULL; /* Jn and n forms: not used by any current zone */
    char *e;
    r->m = (int)strtol(s + 1, &e, 10);
    if (*e != '.')
        return NULL;
    r->w = (int)strtol(e + 1, &e, 10);
    if (*e != '.')
        return NULL;
    r->d = (int)strtol(e + 1, &e, 10);
    r->secs = 7200;
    s = e;
    if (*s == '/')
        s = parse_hms(s + 1, &r->secs);
    return s;
}

static int parse_rule(zone *z, const char *s)
{
    int32_t std, dst;
    if (!(s = parse_name(s)) || !(s = parse_hms(s, &std)))
        return -1;
    z->std_off = -std;
    if (!*s) {
        z->dst_off = z->std_off;
        z->has_rule = 1; /* fixed offset */
        z->start.m = 0;
        return 0;
    }
    if (!(s = parse_name(s)))
        return -1;
    dst = -std + 3600;
    if (*s && *s != ',') {
        int32_t d;
        if (!(s = parse_hms(s, &d)))
            return -1;
        dst = -d;
    }
    z->dst_off = dst;
    if (*s != ',' || !(s = parse_date(s + 1, &z->start)) || *s != ',' ||
        !(s = parse_date(s + 1, &z->end)))
        return -1;
    z->has_rule = 1;
    return 0;
}

/* The UTC instant of a rule date in year y, the wall clock being off. */
static int64_t rule_instant(const rule_date *r, int64_t y, int32_t off)
{
    int64_t first = days_from_civil(y, (unsigned)r->m, 1);
    int wd = (int)((first % 7 + 11) % 7); /* 1970-01-01 was a Thursday (4) */
    int64_t day = first + (r->d - wd + 7) % 7 + (int64_t)(r->w - 1) * 7;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int len = mdays[r->m - 1] + (r->m == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)));
    while (day >= first + len)
        day -= 7;
    return day * 86400 + r->secs - off;
}

static int32_t rule_offset(const zone *z, int64_t t)
{
    if (!z->start.m)
        return z->std_off;
    int64_t y;
    unsigned m, d;
    civil_from_days(floor_div(t + z->std_off, 86400), &y, &m, &d);
    int64_t s = rule_instant(&z->start, y, z->std_off);
    int64_t e = rule_instant(&z->end, y, z->dst_off);
    int in = s < e ? (t >= s && t < e) : (t >= s || t < e); /* southern zones wrap */
    return in ? z->dst_off : z->std_off;
}

zone *zone_load(const char *name, char *err, size_t errlen)
{
    zone *z = xcalloc(1, sizeof *z);
    if (!strcmp(name, "UTC") || !strcmp(name, "Etc/UTC") || !strcmp(name, "Z"))
        return z;
    if (!*name || name[0] == '/' || strstr(name, "..")) {
        snprintf(err, errlen, "unknown time zone '%s'", name);
        free(z);
        return NULL;
    }
    const char *dir = getenv("TZDIR");
    char *path = xasprintf("%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", name);
    FILE *f = fopen(path, "rb");
    free(path);
    unsigned char *data = NULL;
    size_t len = 0, cap = 0;
    if (f) {
        for (;;) {
            if (len == cap)
                data = xrealloc(data, cap = cap ? cap * 2 : 4096);
            size_t r = fread(data + len, 1, cap - len, f);
            if (!r)
                break;
            len += r;
        }
        fclose(f);
    }
    if (!f || len < 44 || memcmp(data, "TZif", 4) != 0 || data[4] < '2') {
        snprintf(err, errlen, "unknown time zone '%s' (no TZif v2 file for it)", name);
        goto fail;
    }
    /* skip the v1 block */
    const unsigned char *h = data;
    size_t v1 = 44 + (size_t)be32(h + 32) * 5 + (size_t)be32(h + 36) * 6 + (size_t)be32(h + 40) +
                (size_t)be32(h + 28) * 8 + (size_t)be32(h + 24) + (size_t)be32(h + 20);
    if (v1 + 44 > len || memcmp(data + v1, "TZif", 4) != 0)
        goto bad;
    h = data + v1;
    size_t isut = (size_t)be32(h + 20), isstd = (size_t)be32(h + 24), leap = (size_t)be32(h + 28),
           timecnt = (size_t)be32(h + 32), typecnt = (size_t)be32(h + 36),
           charcnt = (size_t)be32(h + 40);
    const unsigned char *p = h + 44;
    size_t body = timecnt * 9 + typecnt * 6 + charcnt + leap * 12 + isstd + isut;
    if (typecnt == 0 || (size_t)(p - data) + body > len)
        goto bad;
    const unsigned char *times = p, *idx = p + timecnt * 8, *types = idx + timecnt;
    z->n = timecnt;
    z->trans = xcalloc(timecnt + 1, sizeof *z->trans);
    z->off = xcalloc(timecnt + 1, sizeof *z->off);
    for (size_t i = 0; i < timecnt; i++) {
        if (idx[i] >= typecnt)
            goto bad;
        z->trans[i] = be64(times + i * 8);
        z->off[i] = be32(types + idx[i] * 6);
    }
    z->first_off = be32(types);
    const char *foot = (const char *)p + body;
    if ((size_t)(foot - (const char *)data) + 2 < len && *foot == '\n') {
        const char *e = memchr(foot + 1, '\n', len - (size_t)(foot + 1 - (const char *)data));
        if (e && e > foot + 1) {
            char rule[128];
            size_t rl =
                (size_t)(e - foot - 1) < sizeof rule - 1 ? (size_t)(e - foot - 1) : sizeof rule - 1;
            memcpy(rule, foot + 1, rl);
            rule[rl] = '\0';
            if (parse_rule(z, rule) != 0)
                z->has_rule = 0; /* fall back to the last transition */
        }
    }
    free(data);
    return z;
bad:
    snprintf(err, errlen, "time zone '%s': malformed TZif file", name);
fail:
    free(data);
    zone_free(z);
    return NULL;
}

void zone_free(zone *z)
{
    if (!z)
        return;
    free(z->trans);
    free(z->off);
    free(z);
}

int32_t zone_offset(const zone *z, int64_t t)
{
    if (!z->n)
        return z->has_rule ? rule_offset(z, t) : z->first_off;
    if (t < z->trans[0])
        return z->first_off;
    if (t >= z->trans[z->n - 1] && z->has_rule)
        return rule_offset(z, t);
    size_t lo = 0, hi = z->n; /* last transition <= t */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (z->trans[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return z->off[lo];
}

int64_t zone_to_utc(const zone *z, int64_t local)
{
    int64_t a = local - zone_offset(z, local - 43200); /* a guess on either side */
    int64_t b = local - zone_offset(z, local + 43200);
    int ok_a = a + zone_offset(z, a) == local, ok_b = b + zone_offset(z, b) == local;
    if (ok_a && ok_b)
        return a < b ? a : b;
    if (ok_a)
        return a;
    if (ok_b)
        return b;
    /* a gap: the clock jumped over local; take the instant of the jump */
    return a < b ? a : b;
}

/* zone_find's memory: an open-addressing table of names, never shrunk
 * (zones live as long as the process, so a pointer handed out stays
 * valid without a lock). */
static pthread_mutex_t find_mu = PTHREAD_MUTEX_INITIALIZER;
static struct found {
    char *name;
    zone *z; /* NULL: unknown */
} found[ZONE_FIND_MAX * 2];
static size_t nfound;

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

const zone *zone_find(const char *name)
{
    if (!name)
        return NULL;
    /* the same zone again on this thread (a row's zone, row after row) */
    static __thread const char *last_name;
    static __thread const zone *last;
    if (last_name && !strcmp(last_name, name))
        return last;
    size_t cap = sizeof found / sizeof found[0];
    size_t i = (size_t)(name_hash(name) % cap);
    pthread_mutex_lock(&find_mu);
    while (found[i].name && strcmp(found[i].name, name))
        i = (i + 1) % cap;
    if (!found[i].name) {
        char err[128];
        zone *z = zone_load(name, err, sizeof err);
        if (nfound >= ZONE_FIND_MAX) { /* full: what is not remembered is unknown */
            pthread_mutex_unlock(&find_mu);
            zone_free(z);
            return NULL;
        }
        found[i].name = xstrdup(name);
        found[i].z = z;
        nfound++;
    }
    const zone *z = found[i].z;
    last_name = found[i].name;
    last = z;
    pthread_mutex_unlock(&find_mu);
    return z;
}

int zone_local(const char *name, int64_t t, int64_t *local)
{
    const zone *z = zone_find(name);
    if (!z)
        return -1;
    *local = t + zone_offset(z, t);
    return 0;
}

int64_t zone_next_wall(const zone *z, int64_t t, int minute_of_day)
{
    int64_t day = floor_div(t + zone_offset(z, t), 86400);
    for (int k = 0; k < 3; k++) { /* today's, else tomorrow's (a skipped day: the next) */
        int64_t at = zone_to_utc(z, (day + k) * 86400 + (int64_t)minute_of_day * 60);
        if (at > t)
            return at;
    }
    return t + 86400;
}
