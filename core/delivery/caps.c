/* Caps (per-profile frequency caps, quiet hours) and recipient
 * eligibility (address and consent). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delivery/dispatch.h"
#include "delivery/dlog.h"
#include "base/zone.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/record.h"
#include "base/timefmt.h"

int dispatch_quiet_hours(const conf *c, int64_t now, const char *tz, int64_t *until)
{
    if (!c || !c->quiet || c->quiet_from_min == c->quiet_to_min)
        return 0;
    const zone *z = tz && *tz ? zone_find(tz) : NULL;
    if (!z)
        z = c->quiet_tz ? zone_find(c->quiet_tz) : NULL;
    if (!z) /* config checked the setting's zone: this is UTC by choice */
        z = zone_find("UTC");
    int64_t local = now + zone_offset(z, now);
    int64_t day = floor_div(local, 86400) * 86400;
    int m = (int)((local - day) / 60);
    int from = c->quiet_from_min, to = c->quiet_to_min;
    int inside = from < to ? (m >= from && m < to) : (m >= from || m < to);
    if (!inside)
        return 0;
    int64_t end = day + (int64_t)to * 60;
    if (end <= local)
        end += 86400;
    if (until)
        *until = zone_to_utc(z, end);
    return 1;
}

dispatch_cap dispatch_caps_check(store *s, const conf *caps, const char *channel,
                                 const char *profile_id, const char *tz, int64_t now,
                                 int64_t *until, char *reason, size_t reasonlen)
{
    if (!caps)
        return DISPATCH_CAP_OK;
    if (profile_id && *profile_id && s) {
        for (size_t i = 0; i < caps->ncaps; i++) {
            const conf_cap *c = &caps->caps[i];
            int any = !strcmp(c->channel, "*");
            if (!any && strcmp(c->channel, channel) != 0)
                continue;
            long long n = dlog_cap_count(s, profile_id, any ? NULL : channel, now - c->per_s);
            if (n >= c->max) {
                if (reason) {
                    char per[32];
                    duration_format(c->per_s, per, sizeof per);
                    snprintf(reason, reasonlen,
                             "frequency cap: %lld message(s) in %s on %s (max %lld)", n, per,
                             any ? "every channel" : c->channel, c->max);
                }
                return DISPATCH_CAP_CAPPED;
            }
        }
    }
    int64_t end;
    if (dispatch_quiet_hours(caps, now, tz, &end)) {
        if (until)
            *until = end;
        if (reason) {
            char ts[21];
            timestamp_format(end, ts);
            snprintf(reason, reasonlen, "quiet hours: deferred until %s", ts);
        }
        return DISPATCH_CAP_QUIET;
    }
    return DISPATCH_CAP_OK;
}

/* A field by name, then through the profile link. */
static int field(const baton_record *row, const char *name, baton_value *v)
{
    if (!row || !name)
        return -1;
    if (record_get(row, name, v) == 0)
        return 0;
    char dotted[256];
    size_t n = strlen(name);
    if (n + 9 > sizeof dotted)
        return -1;
    memcpy(dotted, "profile.", 8);
    memcpy(dotted + 8, name, n + 1);
    return record_get(row, dotted, v);
}

static int truthy(const baton_value *v)
{
    switch (v->type) {
    case BATON_T_BOOL: return v->v.b != 0;
    case BATON_T_INT: return v->v.i != 0;
    case BATON_T_FLOAT: return v->v.f != 0;
    case BATON_T_STRING:
        return v->v.s.len && !(v->v.s.len == 1 && (v->v.s.ptr[0] == '0' || v->v.s.ptr[0] == 'f')) &&
               !(v->v.s.len == 5 && !strncmp(v->v.s.ptr, "false", 5));
    default: return 0;
    }
}

dispatch_eligibility dispatch_recipient(const instance *inst, const baton_record *row,
                                        char *addrbuf, size_t addrlen)
{
    const char *address = inst->host.channel.address, *consent = inst->host.channel.consent;
    baton_value v;
    if (consent && (field(row, consent, &v) != 0 || !truthy(&v)))
        return DISPATCH_NO_CONSENT;
    int named = address != NULL;
    int have = field(row, named ? address : "recipient", &v) == 0;
    if (!have && !named) {
        if (addrbuf && addrlen)
            addrbuf[0] = '\0';
        return DISPATCH_ELIGIBLE;
    }
    if (!have || v.type == BATON_T_NULL)
        return DISPATCH_NO_ADDRESS;
    char tmp[64];
    const char *p;
    size_t len;
    if (v.type == BATON_T_STRING) {
        p = v.v.s.ptr;
        len = v.v.s.len;
        while (len && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
    } else if (v.type == BATON_T_INT) {
        len = (size_t)snprintf(tmp, sizeof tmp, "%lld", (long long)v.v.i);
        p = tmp;
    } else {
        return DISPATCH_NO_ADDRESS;
    }
    if (!len)
        return DISPATCH_NO_ADDRESS;
    if (addrbuf && addrlen) {
        size_t n = len < addrlen - 1 ? len : addrlen - 1;
        memcpy(addrbuf, p, n);
        addrbuf[n] = '\0';
    }
    return DISPATCH_ELIGIBLE;
}
